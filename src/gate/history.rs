//! What upkeep remembers, read back from git and the forge: versions reverted or refused, how
//! often a dependency had to be reverted, and how often updates failed lately.
//!
//! No database: upkeep's revert commits carry `Upkeep-Revert: <dependency-id> <version>` and its
//! update commits `Upkeep-Update: <dependency-id> <from> -> <to>` (read by `crate::git`); a PR
//! closed without merging means "not this version" (read by the forge). Each source implements
//! [`HistorySource`]; this module only reasons over the events.

use std::time::Duration;

use jiff::Timestamp;

/// One remembered fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An upkeep update was merged into the default branch.
    Updated {
        /// Dependency id.
        dep: String,
        /// Version it moved from.
        from: String,
        /// Version it moved to.
        to: String,
        /// Commit time.
        at: Timestamp,
        /// Commit id.
        commit: String,
    },
    /// An update was reverted (by upkeep's verifier or by hand with the trailer).
    Reverted {
        /// Dependency id.
        dep: String,
        /// The version that was taken back.
        version: String,
        /// Commit time.
        at: Timestamp,
        /// Commit id.
        commit: String,
    },
    /// upkeep's verifier found a merged update failed in the cluster (before any revert lands).
    VerifyFailed {
        /// Dependency id.
        dep: String,
        /// The version that failed.
        version: String,
        /// When the verdict was reached.
        at: Timestamp,
        /// The merge commit that failed.
        commit: String,
    },
    /// A maintainer closed upkeep's PR for this version without merging it.
    ClosedUnmerged {
        /// Dependency id.
        dep: String,
        /// The version refused.
        version: String,
        /// When it was closed.
        at: Timestamp,
        /// The PR, for messages (`#12`).
        pr: String,
    },
}

/// Where events come from: git history now, forge PRs later.
pub trait HistorySource {
    /// Every event the source knows, in any order.
    fn events(&self) -> Result<Vec<Event>, String>;
}

/// How memory turns into holds; the defaults are the numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPolicy {
    /// Reverts within this window count towards a hold.
    pub revert_window: Duration,
    /// This many reverts within the window hold the dependency for a human.
    pub reverts_to_hold: usize,
    /// Pause non-security updates when at least this share of recent updates was reverted.
    pub failure_rate: f64,
    /// How many recent updates the share is computed over.
    pub failure_sample: usize,
    /// How long a platform step (Longhorn, k3s) upkeep merged must run before the next step of
    /// the chain is proposed: the window the verifier watches it in.
    pub step_soak: Duration,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        MemoryPolicy {
            revert_window: Duration::from_secs(30 * 86_400),
            reverts_to_hold: 2,
            failure_rate: 0.2,
            failure_sample: 10,
            step_soak: Duration::from_secs(86_400),
        }
    }
}

/// Why a version is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The version.
    pub version: String,
    /// `reverted in abc1234` or `PR #12 was closed unmerged`.
    pub why: String,
}

/// All events, newest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    events: Vec<Event>,
}

fn when(e: &Event) -> Timestamp {
    match e {
        Event::Updated { at, .. }
        | Event::Reverted { at, .. }
        | Event::VerifyFailed { at, .. }
        | Event::ClosedUnmerged { at, .. } => *at,
    }
}

impl History {
    /// Gather events from sources.
    pub fn new(mut events: Vec<Event>) -> History {
        events.sort_by_key(|e| std::cmp::Reverse(when(e)));
        History { events }
    }

    /// All events, newest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Versions of `dep` never to propose again.
    pub fn blocked(&self, dep: &str) -> Vec<Blocked> {
        let all: Vec<(bool, Blocked)> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Reverted { dep: d, version, commit, .. } if d == dep => Some(Blocked {
                    version: version.clone(),
                    why: format!("reverted in {}", &commit[..commit.len().min(12)]),
                }),
                Event::VerifyFailed { dep: d, version, commit, .. } if d == dep => {
                    let merge = commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit());
                    let what = if merge { format!("after merge {}", &commit[..12]) } else { format!("({commit})") };
                    Some(Blocked { version: version.clone(), why: format!("failed verification {what}") })
                }
                Event::ClosedUnmerged { dep: d, version, pr, .. } if d == dep => {
                    Some(Blocked { version: version.clone(), why: format!("PR {pr} was closed without merging") })
                }
                _ => None,
            })
            .map(|b| (b.why.starts_with("reverted in"), b))
            .collect();
        // One line per version, where it was first seen. A version that failed verification
        // and was then reverted is named by its revert, whichever event is dated first (both
        // can fall in the same second).
        let mut out: Vec<Blocked> = Vec::new();
        for (reverted, b) in all {
            match out.iter_mut().find(|o| o.version == b.version) {
                Some(o) if reverted && !o.why.starts_with("reverted in") => o.why = b.why,
                Some(_) => {}
                None => out.push(b),
            }
        }
        out
    }

    /// The newest upkeep update that moved `dep` to `version`: when, and in which commit.
    pub fn arrived(&self, dep: &str, version: &str) -> Option<(Timestamp, &str)> {
        self.events.iter().find_map(|e| match e {
            Event::Updated { dep: d, to, at, commit, .. } if d == dep && to == version => Some((*at, commit.as_str())),
            _ => None,
        })
    }

    /// Reverts of `dep` within the window before `now`, newest first.
    pub fn recent_reverts(&self, dep: &str, window: Duration, now: Timestamp) -> Vec<Timestamp> {
        let since = now.as_second() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Reverted { dep: d, at, .. } if d == dep && at.as_second() >= since => Some(*at),
                _ => None,
            })
            .collect()
    }

    /// `(failed, considered)` over the last `sample` upkeep updates: an update counts as
    /// failed when a later revert or failed verification of the same dependency and version
    /// exists.
    pub fn failure_rate(&self, sample: usize) -> (usize, usize) {
        // One update may be known twice (its commit trailer and its merged PR): count it once,
        // at its newest sighting.
        let mut seen = std::collections::HashSet::new();
        let updates: Vec<(&str, &str, Timestamp)> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Updated { dep, to, at, .. } => Some((dep.as_str(), to.as_str(), *at)),
                _ => None,
            })
            .filter(|(dep, to, _)| seen.insert((*dep, *to)))
            .take(sample)
            .collect();
        let reverted = updates
            .iter()
            .filter(|(dep, to, at)| {
                self.events.iter().any(|e| match e {
                    Event::Reverted { dep: d, version, at: r, .. }
                    | Event::VerifyFailed { dep: d, version, at: r, .. } => d == dep && version == to && r >= at,
                    _ => false,
                })
            })
            .count();
        (reverted, updates.len())
    }

    /// Why non-security updates are paused, if they are.
    pub fn pause(&self, policy: &MemoryPolicy) -> Option<String> {
        let (reverted, considered) = self.failure_rate(policy.failure_sample);
        // The share is taken over the whole sample: updates not made yet count as good, so a
        // young repository's first failure (1 of 1) does not pause everything with no way out
        // but the very updates the pause holds.
        let base = considered.max(policy.failure_sample).max(1);
        if reverted == 0 || (reverted as f64) < policy.failure_rate * base as f64 {
            return None;
        }
        Some(format!(
            "{reverted} of the last {considered} upkeep updates failed verification or were reverted ({:.0}% of {base} ≥ {:.0}%): non-security updates are paused until a human looks",
            100.0 * reverted as f64 / base as f64,
            100.0 * policy.failure_rate
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(day: u32) -> Timestamp {
        format!("2026-11-{day:02}T12:00:00Z").parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn updated(dep: &str, to: &str, day: u32) -> Event {
        Event::Updated { dep: dep.into(), from: "0".into(), to: to.into(), at: t(day), commit: format!("u{day}") }
    }

    fn reverted(dep: &str, version: &str, day: u32) -> Event {
        Event::Reverted {
            dep: dep.into(),
            version: version.into(),
            at: t(day),
            commit: format!("abcdef0123456789{day}"),
        }
    }

    #[test]
    fn blocked_versions_and_repeat_reverts() {
        let h = History::new(vec![
            updated("a", "1.1.0", 1),
            reverted("a", "1.1.0", 2),
            updated("a", "1.1.1", 10),
            reverted("a", "1.1.1", 11),
            reverted("b", "2.0.0", 3),
        ]);
        let blocked: Vec<String> = h.blocked("a").into_iter().map(|b| b.version).collect();
        assert_eq!(blocked, ["1.1.1", "1.1.0"]);
        assert!(h.blocked("a")[0].why.starts_with("reverted in abcdef012345"));
        assert_eq!(h.recent_reverts("a", Duration::from_secs(30 * 86_400), t(20)).len(), 2);
        assert_eq!(h.recent_reverts("a", Duration::from_secs(10 * 86_400), t(20)).len(), 1);
    }

    #[test]
    fn failure_rate_pauses_at_the_threshold() {
        let mut events: Vec<Event> = (1..=10).map(|d| updated(&format!("d{d}"), "1.0.0", d)).collect();
        events.push(reverted("d9", "1.0.0", 20));
        let policy = MemoryPolicy::default();
        assert_eq!(History::new(events.clone()).failure_rate(10), (1, 10));
        assert!(History::new(events.clone()).pause(&policy).is_none(), "10% < 20%");
        events.push(reverted("d10", "1.0.0", 21));
        let pause = History::new(events).pause(&policy).unwrap_or_default();
        assert!(pause.starts_with("2 of the last 10"), "{pause}");
    }

    #[test]
    fn a_young_repository_is_measured_against_the_whole_sample() {
        let policy = MemoryPolicy::default();
        // The first update ever failed: 1 in a sample of 10 is 10%, no pause.
        let one = vec![updated("a", "1.0.0", 1), reverted("a", "1.0.0", 2)];
        assert!(History::new(one).pause(&policy).is_none());
        // Two of three failed: 2 of 10 is 20%, paused.
        let three = vec![
            updated("a", "1.0.0", 1),
            updated("b", "1.0.0", 2),
            updated("c", "1.0.0", 3),
            reverted("a", "1.0.0", 4),
            reverted("b", "1.0.0", 5),
        ];
        let pause = History::new(three).pause(&policy).unwrap_or_default();
        assert!(pause.starts_with("2 of the last 3") && pause.contains("20% of 10"), "{pause}");
    }

    #[test]
    fn a_version_that_failed_and_was_reverted_is_named_by_its_revert_once() {
        let h = History::new(vec![
            Event::VerifyFailed {
                dep: "a".into(),
                version: "1.1.0".into(),
                at: t(2),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
            },
            reverted("a", "1.1.0", 2),
        ]);
        let blocked = h.blocked("a");
        assert_eq!(blocked.len(), 1, "{blocked:?}");
        assert!(blocked[0].why.starts_with("reverted in"), "{blocked:?}");
    }
}
