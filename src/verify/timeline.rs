//! The picture of one merge's way through Flux, for the revert PR, the forward-fix issue and the
//! verification comment: merged → source at the merge → Kustomization applied → HelmRelease
//! upgraded → soaked (or failed), each with the time it was first seen, as a Mermaid flowchart.
//! Pure: it reads the record's times and the verdict, and draws nothing it did not see.

use jiff::Timestamp;

use super::record::Word;
use super::verdict::Progress;
use crate::render::mermaid::{Mark, Step, fenced};

/// What the picture is drawn from.
#[derive(Debug, Clone, Copy)]
pub struct Moments<'a> {
    /// The merge commit.
    pub commit: &'a str,
    /// When it reached the default branch.
    pub merged_at: Timestamp,
    /// What the passes saw, and when.
    pub progress: &'a Progress,
    /// Whether the merge changed HelmReleases (k3s and Flux merges have none to wait for).
    pub releases: bool,
    /// The verdict so far.
    pub verdict: Word,
    /// When the verdict became final.
    pub decided_at: Option<Timestamp>,
    /// Why it failed, in a few words: the first evidence row's reason and message, else the
    /// verdict's reason (untrusted: the diagram escapes and clips it).
    pub reason: &'a str,
}

/// The steps, marked: the ones seen are done, the first one not seen is where it failed (or
/// what it waits for), and the rest were not reached.
pub fn steps(m: &Moments<'_>) -> Vec<Step> {
    let short = &m.commit[..m.commit.len().min(12)];
    let mut seen: Vec<(String, Option<Timestamp>)> = vec![
        (format!("source at {short}"), m.progress.source_at),
        ("Kustomization applied".into(), m.progress.applied_at),
    ];
    if m.releases {
        seen.push(("HelmRelease upgraded".into(), m.progress.upgraded_at));
    }
    let soaked = match m.verdict {
        Word::Success => m.decided_at.or(Some(m.merged_at)),
        _ => None,
    };
    seen.push((if m.verdict == Word::Pending { "soak".into() } else { "soaked".into() }, soaked));
    let mut out =
        vec![Step::new("merged", Some(format!("{} UTC", m.merged_at.strftime("%Y-%m-%d %H:%M:%S"))), Mark::Done)];
    let mut stopped = false;
    for (label, at) in seen {
        let step = match at {
            Some(at) if !stopped => Step::new(label, Some(since(m.merged_at, at)), Mark::Done),
            // A success passed every step, even one no observation timed (no Kustomization
            // applying the change was known, say).
            None if m.verdict == Word::Success => Step::new(label, None, Mark::Done),
            _ if stopped => Step::new(label, None, Mark::Later),
            _ => {
                stopped = true;
                match m.verdict {
                    Word::Failure => Step::new(format!("{label}: failed"), Some(m.reason.to_string()), Mark::Failed),
                    Word::Pending => Step::new(label, Some("waiting".into()), Mark::Current),
                    Word::Success | Word::Skipped => Step::new(label, None, Mark::Later),
                }
            }
        };
        out.push(step);
    }
    out
}

/// The picture as a fenced Mermaid block.
pub fn diagram(m: &Moments<'_>) -> String {
    fenced(&steps(m))
}

/// `+42s`, `+3m 12s`, `+1h 5m` after the merge.
fn since(merged: Timestamp, at: Timestamp) -> String {
    let s = (at.as_second() - merged.as_second()).max(0);
    match s {
        s if s >= 3600 => format!("+{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("+{}m {}s", s / 60, s % 60),
        s => format!("+{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::mermaid::check;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_796_000_000 + s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn moments<'a>(progress: &'a Progress, verdict: Word, reason: &'a str) -> Moments<'a> {
        Moments { commit: COMMIT, merged_at: t(0), progress, releases: true, verdict, decided_at: Some(t(400)), reason }
    }

    fn drawn(m: &Moments<'_>) -> String {
        let d = diagram(m);
        let inner = d.trim_start_matches("```mermaid\n").trim_end_matches("```");
        check(inner).unwrap_or_else(|e| panic!("{e}\n{d}"));
        d
    }

    #[test]
    fn a_failed_upgrade_is_drawn_where_it_failed_with_the_times_seen() {
        let progress = Progress { source_at: Some(t(12)), applied_at: Some(t(75)), ..Progress::default() };
        let reason = "UpgradeFailed: \"context deadline\"; #1 `x` %%";
        insta::assert_snapshot!(drawn(&moments(&progress, Word::Failure, reason)));
    }

    #[test]
    fn a_soaked_merge_is_done_all_the_way() {
        let progress = Progress {
            source_at: Some(t(3)),
            applied_at: Some(t(5)),
            upgraded_at: Some(t(100)),
            ready_since: Some(t(100)),
            ..Progress::default()
        };
        let d = drawn(&moments(&progress, Word::Success, "healthy"));
        assert!(d.contains("class s0,s1,s2,s3,s4 done"), "{d}");
        assert!(d.contains("s4[\"soaked<br/>+6m 40s\"]"), "{d}");
    }

    #[test]
    fn a_success_with_a_step_no_observation_timed_is_still_done_all_the_way() {
        let progress = Progress { source_at: Some(t(3)), upgraded_at: Some(t(9)), ..Progress::default() };
        let d = drawn(&moments(&progress, Word::Success, "healthy"));
        assert!(d.contains("s2[\"Kustomization applied\"]"), "{d}");
        assert!(d.contains("class s0,s1,s2,s3,s4 done") && !d.contains(" later\n"), "{d}");
    }

    #[test]
    fn a_pending_merge_shows_what_it_waits_for_and_a_k3s_merge_has_no_helmrelease() {
        let progress = Progress { source_at: Some(t(3)), ..Progress::default() };
        let mut m = moments(&progress, Word::Pending, "waiting for Flux");
        m.releases = false;
        let d = drawn(&m);
        assert!(d.contains("s2[\"Kustomization applied<br/>waiting\"]") && d.contains("class s2 current"), "{d}");
        assert!(!d.contains("HelmRelease"), "{d}");
        assert!(d.contains("class s3 later"), "{d}");
    }
}
