//! The post-merge verifier: find upkeep's merged updates that have no verdict yet, gather
//! evidence of how Flux reconciled them, decide, and act (status, revert PR or forward-fix issue).
//!
//! It sits beside `run`, never inside it: it reads the same trailers and markers, and hands the
//! gate its verdicts through git notes (`refs/notes/upkeep`). One pass ([`Verifier::pass`])
//! looks at every unverified merge together, acts on the conclusive ones and, unless told not
//! to wait, waits for the cluster to change (a watch, not a poll) until the rest are conclusive
//! or past their timeout plus soak. Blindness never concludes anything: what cannot be seen
//! stays pending.

pub mod act;
pub mod checks;
pub mod cluster;
pub mod evidence;
pub mod kube;
pub mod metrics;
pub mod notify;
pub mod platform;
pub mod record;
pub mod statuses;
pub mod target;
pub mod timeline;
pub mod verdict;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use self::act::{Actor, Done, Failed, Reverted};
use self::evidence::Evidence;
use self::record::{Action, Record, STATUS_CONTEXT, UpdateView, Word};
use self::target::{DepInfo, Target};
use self::verdict::{Deadlines, Expectation, Progress, Verdict, decide};
use crate::forge::{CommitStatus, StatusState};
use crate::git::Merge;
use crate::model::Component;
use crate::progress::{Event, Progress as ShowProgress};

/// Where evidence comes from: the Kubernetes API ([`cluster`]) or the commit statuses Flux
/// posts on the forge ([`statuses`]). Implementations gather; they never decide.
pub trait Observer {
    /// What the cluster shows for one merge now.
    fn observe(&self, target: &Target) -> impl Future<Output = Evidence>;
    /// Ask Flux to fetch the sources the evidence shows now (`reconcile.fluxcd.io/requestedAt`);
    /// what could not be nudged is returned (a missing RBAC grant is not an error: the verifier
    /// just waits).
    fn nudge(&self, evidence: &Evidence, at: Timestamp) -> impl Future<Output = Vec<String>>;
    /// Return when anything the targets depend on changes, or after `timeout`.
    fn changed(&self, targets: &[Target], timeout: Duration) -> impl Future<Output = ()>;
}

/// How a pass behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timeout, soak and nudge grace.
    pub deadlines: Deadlines,
    /// Merges older than this when first seen are reported, not verified.
    pub horizon: Duration,
    /// Record what is conclusive now and return.
    pub no_wait: bool,
    /// Decide, write nothing.
    pub dry_run: bool,
    /// The Flux GitRepository for this repository: `(namespace, name)`.
    pub source: (String, String),
}

/// What a pass found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One record per merge seen, newest merge first.
    pub records: Vec<Record>,
    /// Things that went wrong without stopping the pass (a push, a forge call).
    pub errors: Vec<String>,
    /// Whether anything was written (notes, statuses, PRs, issues).
    pub wrote: bool,
    /// Webhook notifications that could not be delivered: reported, but they change neither
    /// a verdict nor the exit code (`verify::notify`).
    pub notify_errors: Vec<String>,
}

/// The verifier over one repository.
pub struct Verifier<'a, O: Observer> {
    /// Evidence.
    pub observer: &'a O,
    /// Acting (git, forge, templates, proof).
    pub actor: Actor<'a>,
    /// What upkeep knows about each dependency id from the checkout.
    pub deps: &'a BTreeMap<String, DepInfo>,
    /// The Flux Kustomizations (`namespace/name`) that apply a file, from the repository's own
    /// Flux manifests; empty when unknown (then the cluster's `spec.path`s decide).
    pub applying: &'a dyn Fn(&str) -> Vec<String>,
    /// Options.
    pub options: Options,
    /// The user's checks (`checks:` in the rules), run once a merge is reconciled; `None`
    /// when no rule has any.
    pub checks: Option<&'a checks::Checks>,
    /// Where the pass says which merge it verifies, what it waits for and how long is left.
    pub progress: &'a dyn ShowProgress,
}

struct Open {
    merge: Merge,
    record: Record,
    target: Target,
}

impl<O: Observer> Verifier<'_, O> {
    /// One pass over the merges since the horizon (`now` is the clock, passed in for tests).
    pub async fn pass(&self, merges: Vec<Merge>, now: impl Fn() -> Timestamp) -> Outcome {
        let mut outcome = Outcome::default();
        // Records are reported in the order the merges came: newest first.
        let order: BTreeMap<String, usize> = merges.iter().enumerate().map(|(i, m)| (m.commit.clone(), i)).collect();
        let mut open = Vec::new();
        for merge in merges {
            match self.existing(&merge) {
                // State that cannot be read is never guessed at: acting on it could act twice.
                Err(e) => outcome
                    .errors
                    .push(format!("{}: the verdict note cannot be read ({e}); skipped", act::short(&merge.commit))),
                Ok(Some(record)) if record.verdict.is_final() => outcome.records.push(record),
                Ok(previous) => {
                    let record = self.start(&merge, previous, now());
                    if record.verdict == Word::Skipped {
                        outcome.records.push(record);
                    } else {
                        let mut target = target::target(&merge, self.deps, &self.options.source);
                        target.platform = self.platform_targets(&merge);
                        open.push(Open { merge, record, target });
                    }
                }
            }
        }
        let give_up = now().as_second() + self.patience(&open);
        while !open.is_empty() {
            let mut still = Vec::new();
            for mut o in open {
                self.observe_once(&mut o, now(), &mut outcome).await;
                if o.record.verdict.is_final() {
                    outcome.records.push(o.record);
                } else {
                    still.push(o);
                }
            }
            open = still;
            self.report(&open, now());
            if open.is_empty() || self.options.no_wait || now().as_second() >= give_up {
                break;
            }
            let targets: Vec<Target> = open.iter().map(|o| o.target.clone()).collect();
            let wake = self.next_wake(&open, now());
            self.observer.changed(&targets, wake).await;
        }
        self.progress.event(Event::Finished);
        for o in open {
            blocking(|| self.save(&o.merge, &o.record, &mut outcome));
            outcome.records.push(o.record);
        }
        outcome.records.sort_by_key(|r| order.get(&r.commit).copied());
        outcome
    }

    /// The platform components `merge` upgrades; Flux's expected controller images are read
    /// from the merged tree.
    fn platform_targets(&self, merge: &Merge) -> Vec<platform::PlatformTarget> {
        let commit = git2::Oid::from_str(&merge.commit).ok();
        let read = |path: &str| {
            let commit = commit?;
            blocking(|| self.actor.writer.read(commit, path)).ok().flatten()
        };
        platform::targets(merge, self.deps, &self.options.source.0, &read)
    }

    /// Tell the person watching about each merge still open: what it waits for, and how long
    /// until the deadline it waits against (the end of the soak once reconciled, else the
    /// timeout).
    fn report(&self, open: &[Open], now: Timestamp) {
        let d = &self.options.deadlines;
        for o in open {
            let deadline = match o.record.progress.ready_since {
                Some(ready) => ready.as_second() + secs(d.soak),
                None => o.merge.merged_at.as_second() + secs(d.timeout),
            };
            let left = u64::try_from(deadline - now.as_second()).ok().map(Duration::from_secs);
            self.progress.event(Event::Verify {
                merge: act::short(&o.merge.commit).to_string(),
                waiting_for: o.record.reason.clone(),
                left,
            });
        }
    }

    /// How long a waiting pass may run: the longest timeout plus soak plus grace among the open
    /// merges, from now (a blind pass gives up then and leaves them pending).
    fn patience(&self, open: &[Open]) -> i64 {
        let d = &self.options.deadlines;
        let per = d.timeout.as_secs() + d.soak.as_secs() + d.nudge_grace.as_secs() + 5;
        if open.is_empty() { 0 } else { i64::try_from(per).unwrap_or(i64::MAX / 4) }
    }

    /// When to look again without a change: at the next deadline, at most every 30 s.
    fn next_wake(&self, open: &[Open], now: Timestamp) -> Duration {
        let d = &self.options.deadlines;
        let mut next = 30_i64;
        for o in open {
            let times = [
                o.merge.merged_at.as_second() + secs(d.timeout),
                o.record.progress.ready_since.map_or(i64::MAX, |t| t.as_second() + secs(d.soak)),
                o.record.progress.nudged_at.map_or(i64::MAX, |t| t.as_second() + secs(d.nudge_grace)),
            ];
            for t in times {
                let left = t - now.as_second();
                if left > 0 {
                    next = next.min(left);
                }
            }
        }
        Duration::from_secs(u64::try_from(next.max(1)).unwrap_or(1))
    }

    /// The record a previous pass left, from the note (and, on a forge, the status).
    /// A note a human wrote instead (not upkeep's JSON) counts as no record.
    fn existing(&self, merge: &Merge) -> Result<Option<Record>, String> {
        let note = self.actor.writer.note(&merge.commit).map_err(|e| e.to_string())?;
        Ok(note.as_deref().and_then(Record::from_note))
    }

    fn start(&self, merge: &Merge, previous: Option<Record>, now: Timestamp) -> Record {
        if let Some(r) = previous {
            return r;
        }
        let updates = merge
            .updates
            .iter()
            .map(|u| UpdateView {
                id: u.id.clone(),
                name: self.deps.get(&u.id).map_or_else(|| target::name_of(&u.id), |d| d.name.clone()),
                from: u.from.clone(),
                to: u.to.clone(),
            })
            .collect();
        let old = now.as_second() - merge.merged_at.as_second() > secs(self.options.horizon);
        Record {
            commit: merge.commit.clone(),
            updates,
            verdict: if old { Word::Skipped } else { Word::Pending },
            reason: if old {
                format!(
                    "merged {} ago, before upkeep first looked (horizon {}): not verified",
                    human(now.as_second() - merge.merged_at.as_second()),
                    human(secs(self.options.horizon))
                )
            } else {
                "not looked at yet".into()
            },
            evidence: Vec::new(),
            action: Action::None,
            branch: None,
            pr: None,
            progress: Progress::default(),
            first_seen: Some(now),
            decided_at: None,
            warnings: Vec::new(),
            notified: None,
        }
    }

    /// Observe one merge, decide, and act on a conclusive verdict.
    async fn observe_once(&self, o: &mut Open, now: Timestamp, outcome: &mut Outcome) {
        let raw = self.observer.observe(&o.target).await;
        let mut evidence = target::annotate(raw, &o.merge, self.actor.writer, self.applying);
        o.record.warnings.clone_from(&evidence.warnings);
        let exp = Expectation {
            merged_at: o.merge.merged_at,
            releases: o.target.releases.clone(),
            platform: o.target.platform.clone(),
        };
        let deadlines = &self.options.deadlines;
        let (mut verdict, mut progress, mut ask) = decide(&exp, &evidence, deadlines, &o.record.progress, now);
        // The user's checks speak once the update is reconciled (soaking, or at the soak's end):
        // probe now and decide again on the same observation with their results in it.
        if let Some(checks) = self.checks.filter(|c| c.applies(&o.merge.commit))
            && progress.ready_since.is_some()
            && !matches!(verdict, Verdict::Failure { .. })
        {
            let (results, blind) = checks.run(&o.merge.commit).await;
            evidence.checks = results;
            evidence.blind.extend(blind);
            (verdict, progress, ask) = decide(&exp, &evidence, deadlines, &o.record.progress, now);
        }
        o.record.progress = progress;
        if ask.nudge && !self.options.dry_run {
            for problem in self.observer.nudge(&evidence, now).await {
                tracing::warn!(commit = %o.merge.commit, "{problem}");
            }
        }
        match verdict {
            Verdict::Pending { reason, .. } => o.record.reason = reason,
            Verdict::Success { reason } => {
                o.record.verdict = Word::Success;
                o.record.reason = reason;
                // What the user's checks got at the end, so the report shows they ran.
                o.record.evidence = verdict::check_rows(&evidence.checks);
                o.record.decided_at = Some(now);
                blocking(|| self.conclude(o, outcome));
            }
            Verdict::Failure { reason, rows } => {
                o.record.verdict = Word::Failure;
                o.record.reason = reason;
                o.record.evidence = rows;
                o.record.decided_at = Some(now);
                blocking(|| {
                    self.fail(o, outcome);
                    self.conclude(o, outcome);
                });
            }
        }
    }

    /// Revert or open a forward-fix issue.
    fn fail(&self, o: &mut Open, outcome: &mut Outcome) {
        let failed = Failed {
            merge: &o.merge,
            updates: &o.record.updates,
            reason: &o.record.reason,
            evidence: &o.record.evidence,
            no_revert: self.no_revert(&o.merge),
            timeline: timeline::diagram(&moments(
                &o.merge,
                &o.record,
                !o.target.releases.is_empty(),
                &short_reason(&o.record),
            )),
        };
        match self.actor.act(&failed, self.options.dry_run) {
            Ok(Done::Revert(Reverted { branch, pr })) => {
                o.record.action = Action::Revert;
                o.record.branch = Some(branch);
                o.record.pr = Some(pr);
            }
            Ok(Done::ForwardFix { issue }) => {
                o.record.action = Action::ForwardFix;
                o.record.pr = Some(issue);
            }
            Err(e) => {
                // The verdict stands; the action is retried by hand (`upkeep revert`) or noted.
                outcome.errors.push(format!(
                    "{}: the update failed, but acting on it failed too: {e}",
                    act::short(&o.merge.commit)
                ));
            }
        }
    }

    /// Why a failed merge must not be reverted, if it must not.
    fn no_revert(&self, merge: &Merge) -> Option<String> {
        if merge.updates.is_empty() {
            return Some("this merge was itself upkeep's revert, and a failed revert is never reverted again: a human has to look.".into());
        }
        for u in &merge.updates {
            let info = self.deps.get(&u.id);
            let component = info.map_or_else(|| target::component_of(&u.id), |d| d.component);
            match component {
                Component::Longhorn => {
                    return Some(
                        "Longhorn refuses downgrades: reverting the chart would not bring the old version back safely."
                            .into(),
                    );
                }
                Component::Flux => {
                    return Some(
                        "Flux's controllers and CRDs are not downgraded safely: Flux has to be fixed forward.".into(),
                    );
                }
                Component::K3s => {
                    return Some("k3s cannot be downgraded in place by the system-upgrade-controller.".into());
                }
                Component::App => {}
            }
            if info.is_some_and(|d| d.on_failure_issue) {
                return Some(format!(
                    "the configuration asks for an issue, not a revert, when `{}` fails (`onFailure: issue`).",
                    u.id
                ));
            }
        }
        None
    }

    /// Record a final verdict: the note, the status and (on a forge) a comment on the PR.
    fn conclude(&self, o: &Open, outcome: &mut Outcome) {
        self.save(&o.merge, &o.record, outcome);
        if self.options.dry_run {
            return;
        }
        let forge = self.actor.forge;
        match forge.pr_for_commit(&o.merge.commit) {
            Ok(Some(pr)) => {
                let marker = format!("<!-- upkeep-verify: {} -->", o.merge.commit);
                let seen = forge.comments(pr.number).map(|c| c.iter().any(|c| c.contains(&marker)));
                match seen {
                    Ok(true) => {}
                    Ok(false) => {
                        let body = report_comment(&self.actor, &o.record, &o.merge, &marker);
                        match body.and_then(|b| forge.comment(pr.number, &b).map_err(|e| e.to_string())) {
                            Ok(()) => outcome.wrote = true,
                            Err(e) => outcome.errors.push(format!("comment on PR #{}: {e}", pr.number)),
                        }
                    }
                    Err(e) => outcome.errors.push(format!("comments of PR #{}: {e}", pr.number)),
                }
            }
            Ok(None) => {}
            Err(e) => outcome.errors.push(format!("the PR of {}: {e}", act::short(&o.merge.commit))),
        }
    }

    /// Write the note and the status, each only when it changes.
    fn save(&self, merge: &Merge, record: &Record, outcome: &mut Outcome) {
        if self.options.dry_run {
            return;
        }
        match self.actor.writer.set_note(&merge.commit, &record.to_note()) {
            Ok(true) => outcome.wrote = true,
            Ok(false) => {}
            Err(e) => outcome.errors.push(format!("note on {}: {e}", act::short(&merge.commit))),
        }
        let state = match record.verdict {
            Word::Success => StatusState::Success,
            Word::Failure => StatusState::Failure,
            Word::Pending | Word::Skipped => StatusState::Pending,
        };
        if record.verdict == Word::Skipped {
            return;
        }
        let status = CommitStatus {
            context: STATUS_CONTEXT.into(),
            state,
            description: record.status_description(),
            target_url: None,
            created_at: None,
        };
        let before = self.actor.forge.writes();
        if let Err(e) = self.actor.forge.set_status(&merge.commit, &status) {
            outcome.errors.push(format!("status on {}: {e}", act::short(&merge.commit)));
        }
        outcome.wrote |= self.actor.forge.writes() > before;
    }
}

/// The comment on the merged PR: the full report, with a marker so it is posted once.
fn report_comment(actor: &Actor<'_>, record: &Record, merge: &Merge, marker: &str) -> Result<String, String> {
    let releases = record.updates.iter().any(|u| u.id.starts_with("helmrelease/"));
    let followed = match (record.action, &record.pr) {
        (Action::Revert, Some(pr)) => format!("upkeep opened the revert PR #{pr}."),
        (Action::ForwardFix, Some(issue)) => format!("upkeep opened the forward-fix issue {issue}."),
        _ => String::new(),
    };
    let view = serde_json::json!({
        "merge_short": act::short(&record.commit),
        "word": record.verdict.said(),
        "reason": crate::render::sanitize_inline(&record.reason),
        "updates": record.updates,
        "evidence": act::sanitize_rows(&record.evidence),
        "followed": followed,
        "warnings": record.warnings.iter().map(|w| crate::render::sanitize_inline(w)).collect::<Vec<_>>(),
        "timeline": timeline::diagram(&moments(merge, record, releases, &short_reason(record))),
    });
    let body = actor.renderer.render("verify-report", &view).map_err(|e| e.to_string())?;
    Ok(format!("{body}\n{marker}\n"))
}

/// Why a merge failed in a few words, for its box in the timeline: the first evidence row
/// (`UpgradeFailed: Helm upgrade failed …`), else the verdict's reason.
fn short_reason(record: &Record) -> String {
    match record.evidence.first() {
        Some(row) if !row.reason.is_empty() => format!("{}: {}", row.reason, row.message),
        _ => record.reason.clone(),
    }
}

/// What the merge's timeline is drawn from: the record's times and verdict.
fn moments<'a>(merge: &'a Merge, record: &'a Record, releases: bool, reason: &'a str) -> timeline::Moments<'a> {
    timeline::Moments {
        commit: &merge.commit,
        merged_at: merge.merged_at,
        progress: &record.progress,
        releases,
        verdict: record.verdict,
        decided_at: record.decided_at,
        reason,
    }
}

/// Git and the forge are blocking (the GitHub forge drives its own runtime): run them off the
/// async workers. The verifier's runtime is multi-threaded for this.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

fn human(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s => format!("{}m", s / 60),
    }
}
