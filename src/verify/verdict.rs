//! The verdict: a pure function of what was expected, what was observed and what time it is.
//! No I/O, no clock: the caller passes `now` and carries [`Progress`] from one observation to
//! the next, so every rule below is tested with plain values.
//!
//! The rules, in the order they are applied:
//! 1. A failure signal about the merged change is conclusive at once (a HelmRelease that failed
//!    to upgrade or was rolled back, a Kustomization that cannot build or apply it, a pod of a
//!    changed release crash-looping or unable to pull its image).
//! 2. Blindness is never failure: with anything unseen, a merge that is not conclusive stays
//!    pending, whatever the time.
//! 3. Reconciliation: the source reached the merge, every Kustomization applying a changed file
//!    applied it and is Ready, every changed HelmRelease is Ready at the new chart version.
//!    Missing past the timeout (after one nudge of the sources) is a failure naming what was
//!    still missing.
//! 4. Soak: once reconciled, workloads must roll out, pods stay out of failing states and
//!    containers must not restart, for the soak period. Then it is a success.
//! 5. Checks: once reconciled, a user check (`checks:` in the rules) that failed after its
//!    retries fails the update at once, naming the check and what it got.
//!
//! Evidence from Flux's commit statuses ([`Evidence::statuses`]) sees only Kustomizations: a
//! `failure` status is conclusive whatever its reason, reconciled means every applying
//! Kustomization posted `success` for the merge or a later commit, and no status at all past
//! the timeout names the likely cause (notification-controller not set up to post them).
//!
//! Platform upgrades (k3s, Longhorn, Flux) add their own rows (`verdict/platform.rs`): what is
//! not healthy yet waits like rule 3 (at the timeout, "the platform not healthy"), and what
//! failed for sure (a faulted volume, a Kustomization broken by the new controllers) is
//! conclusive like rule 1.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::evidence::{CheckResult, Condition, Evidence, FluxObject, KustomizationState, Pod, Workload};
use super::platform::PlatformTarget;

mod platform;

/// Reasons with which helm-controller and kustomize-controller say an attempt failed.
pub const FAILURE_REASONS: &[&str] = &[
    "UpgradeFailed",
    "InstallFailed",
    "TestFailed",
    "ArtifactFailed",
    "BuildFailed",
    "HealthCheckFailed",
    "ReconciliationFailed",
];

/// Reasons meaning the cluster undid the release: git says "new", the cluster runs "old".
pub const ROLLBACK_REASONS: &[&str] = &["RollbackSucceeded", "UninstallSucceeded"];

/// Container waiting reasons that mean the new version does not run.
pub const BAD_WAITING_REASONS: &[&str] =
    &["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"];

/// What the merge should have brought about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expectation {
    /// When the merge reached the default branch: timeouts count from here.
    pub merged_at: Timestamp,
    /// The HelmReleases whose chart version the merge set: `(namespace/name, version)`.
    pub releases: Vec<(String, String)>,
    /// The platform components the merge upgrades (k3s, Longhorn, Flux), judged by their own rules.
    pub platform: Vec<PlatformTarget>,
}

/// How long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From the merge to Ready at the merged revision.
    pub timeout: Duration,
    /// From Ready to success, watching workload health.
    pub soak: Duration,
    /// After nudging the sources, how long they get before a timeout is final.
    pub nudge_grace: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            timeout: Duration::from_secs(15 * 60),
            soak: Duration::from_secs(5 * 60),
            nudge_grace: Duration::from_secs(2 * 60),
        }
    }
}

/// What the verdict remembers between observations of one merge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Progress {
    /// When everything was first seen reconciled: the soak runs from here.
    pub ready_since: Option<Timestamp>,
    /// When the sources were nudged (once per merge).
    pub nudged_at: Option<Timestamp>,
    /// When the source was first seen at the merge (for the merge's timeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_at: Option<Timestamp>,
    /// When every Kustomization applying the change was first seen to have applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Timestamp>,
    /// When every changed HelmRelease was first seen Ready at its new chart version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgraded_at: Option<Timestamp>,
}

impl Progress {
    /// Note the first observation at which each step of the merge's way through Flux was
    /// reached. Only the timeline reads these; no rule of the verdict does.
    fn mark_steps(&mut self, exp: &Expectation, ev: &Evidence, now: Timestamp) {
        if ev.source_has_merge == Some(true) {
            self.source_at.get_or_insert(now);
        }
        if applied(ev) {
            self.applied_at.get_or_insert(now);
        }
        let upgraded = exp.releases.iter().all(|(id, version)| {
            release(ev, id)
                .is_some_and(|hr| release_missing(hr, version).is_none() && is(hr.condition("Ready"), "True"))
        });
        if !exp.releases.is_empty() && upgraded {
            self.upgraded_at.get_or_insert(now);
        }
    }
}

/// One line of evidence in a report: the JSON contract's `evidence` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Row {
    /// `HelmRelease/apps/podinfo`, `Pod/apps/podinfo-7d9c`.
    pub object: String,
    /// Condition type or state (`Ready`, `Waiting`, `Revision`, `Rollout`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Its status (`False`, `CrashLoopBackOff`, `2/3`).
    pub status: String,
    /// Reason.
    pub reason: String,
    /// Message (untrusted: sanitised when rendered).
    pub message: String,
}

/// The outcome of one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reconciled and healthy through the soak.
    Success {
        /// One line.
        reason: String,
    },
    /// Conclusively failed.
    Failure {
        /// One line a maintainer can act on.
        reason: String,
        /// What shows it.
        rows: Vec<Row>,
    },
    /// Not conclusive yet.
    Pending {
        /// What it waits for, or what it cannot see.
        reason: String,
        /// True when the reason is blindness, not waiting.
        blind: bool,
    },
}

/// What the caller should do besides recording the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ask {
    /// Nudge the sources now (the timeout is near and they have not been nudged).
    pub nudge: bool,
}

/// Decide, from one observation.
pub fn decide(
    exp: &Expectation,
    ev: &Evidence,
    deadlines: &Deadlines,
    progress: &Progress,
    now: Timestamp,
) -> (Verdict, Progress, Ask) {
    let mut progress = progress.clone();
    progress.mark_steps(exp, ev, now);
    if let Some(failure) = failure_signal(exp, ev, &progress) {
        return (failure, progress, Ask::default());
    }
    if !ev.blind.is_empty() {
        let what: Vec<String> = ev.blind.iter().map(|b| format!("{}: {}", b.what, b.reason)).collect();
        let reason = format!("cannot see the cluster, so no verdict yet ({})", what.join("; "));
        return (Verdict::Pending { reason, blind: true }, progress, Ask::default());
    }
    let mut missing = missing(exp, ev);
    let unreconciled = !missing.is_empty();
    missing.extend(platform::waiting(&exp.platform, ev, exp.merged_at));
    if !missing.is_empty() {
        progress.ready_since = None;
        let what = if unreconciled { "not reconciled" } else { "the platform not healthy" };
        return waiting(exp, ev, deadlines, progress, now, missing, what);
    }
    let ready_since = *progress.ready_since.get_or_insert(now);
    if let Some(failure) = soak_failure(ev, ready_since) {
        return (failure, progress, Ask::default());
    }
    if let Some(failure) = check_failure(&ev.checks) {
        return (failure, progress, Ask::default());
    }
    let soak_end = add(ready_since, deadlines.soak);
    if now < soak_end {
        let left = soak_end.as_second() - now.as_second();
        let reason = format!("reconciled; soaking until {soak_end} ({left}s left)");
        return (Verdict::Pending { reason, blind: false }, progress, Ask::default());
    }
    let unrolled = not_rolled_out(&ev.workloads);
    if !unrolled.is_empty() {
        let names: Vec<&str> = unrolled.iter().map(|r| r.object.as_str()).collect();
        let reason = format!("the soak ended with workloads not rolled out: {}", names.join(", "));
        return (Verdict::Failure { reason, rows: unrolled }, progress, Ask::default());
    }
    let reason = if ev.statuses.is_some() {
        let names: Vec<String> = ev.kustomizations.iter().map(|k| k.object.reference()).collect();
        format!(
            "{} posted success for the merge or a later commit, and no failure through a {}s soak",
            names.join(", "),
            deadlines.soak.as_secs()
        )
    } else {
        format!("reconciled at the merge and healthy through a {}s soak", deadlines.soak.as_secs())
    };
    (Verdict::Success { reason }, progress, Ask::default())
}

/// `15 min`, or `40s` under a minute.
fn minutes(d: Duration) -> String {
    match d.as_secs() {
        s if s < 60 => format!("{s}s"),
        s => format!("{} min", s / 60),
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    t.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap_or(t)
}

/// Not reconciled yet: wait, nudge once near the deadline, fail after it.
fn waiting(
    exp: &Expectation,
    ev: &Evidence,
    deadlines: &Deadlines,
    mut progress: Progress,
    now: Timestamp,
    missing: Vec<Row>,
    what: &str,
) -> (Verdict, Progress, Ask) {
    let summary: Vec<String> = missing.iter().map(|r| format!("{} {}", r.object, r.message)).collect();
    let deadline = add(exp.merged_at, deadlines.timeout);
    if now < deadline {
        let reason = format!("waiting for Flux: {}", summary.join("; "));
        return (Verdict::Pending { reason, blind: false }, progress, Ask::default());
    }
    match progress.nudged_at {
        // No grace, nothing to nudge (commit statuses): the timeout is final at once.
        None if !deadlines.nudge_grace.is_zero() => {
            progress.nudged_at = Some(now);
            let reason = format!("past the timeout, sources nudged once: {}", summary.join("; "));
            (Verdict::Pending { reason, blind: false }, progress, Ask { nudge: true })
        }
        Some(at) if now < add(at, deadlines.nudge_grace) => {
            let reason = format!("past the timeout, waiting after the nudge: {}", summary.join("; "));
            (Verdict::Pending { reason, blind: false }, progress, Ask::default())
        }
        _ => {
            let reason = match &ev.statuses {
                Some(s) if s.flux_statuses == 0 => format!(
                    "no Flux commit status arrived within {}: is notification-controller's github Provider/Alert set up?",
                    span(deadlines.timeout)
                ),
                _ => format!("{what} {} after the merge: {}", minutes(deadlines.timeout), summary.join("; ")),
            };
            (Verdict::Failure { reason, rows: missing }, progress, Ask::default())
        }
    }
}

/// A duration as people write it: `15m`, `90s`, `2h`.
fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn row(obj: &FluxObject, c: &Condition) -> Row {
    Row {
        object: obj.reference(),
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
    }
}

fn is(c: Option<&Condition>, status: &str) -> bool {
    c.is_some_and(|c| c.status == status)
}

/// Whether `version` (as the cluster reports it) is `want`: `+<digest>` of an OCI chartRef and
/// a leading `v` are not differences.
pub fn same_version(version: &str, want: &str) -> bool {
    let norm = |v: &str| v.trim_start_matches('v').to_string();
    let version = norm(version);
    let want = norm(want);
    version == want || version.strip_prefix(&want).is_some_and(|rest| rest.starts_with('+') && !want.contains('+'))
}

/// The changed release as observed, if it was.
fn release<'a>(ev: &'a Evidence, id: &str) -> Option<&'a FluxObject> {
    ev.helmreleases.iter().map(|(o, _)| o).find(|o| format!("{}/{}", o.namespace, o.name) == id)
}

/// Whether the controller has acted on the spec the merge wrote (so its conditions are about
/// the new version, not an older attempt).
fn attempted_new(obj: &FluxObject, version: &str, applied: bool) -> bool {
    let observed = obj.generation.is_some() && obj.generation == obj.observed_generation;
    let tried = [&obj.history_chart_version, &obj.last_applied_revision, &obj.last_attempted_revision]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| same_version(v, version)));
    observed && (tried || applied)
}

/// Whether every Kustomization applying the change has applied the merge.
fn applied(ev: &Evidence) -> bool {
    !ev.kustomizations.is_empty() && ev.kustomizations.iter().all(|k| k.applied_merge == Some(true))
}

fn failure_signal(exp: &Expectation, ev: &Evidence, progress: &Progress) -> Option<Verdict> {
    let mut rows = Vec::new();
    for state in &ev.kustomizations {
        // A Kustomization's failure is about the merge only once it attempted the merge.
        let k = &state.object;
        let attempted = state.attempted_merge == Some(true) || state.applied_merge == Some(true);
        let ready = k.condition("Ready");
        // A posted `failure` status is conclusive whatever its reason: Flux posts one only for
        // an error event.
        let conclusive = |c: &Condition| ev.statuses.is_some() || FAILURE_REASONS.contains(&c.reason.as_str());
        if attempted && is(ready, "False") && ready.is_some_and(conclusive) {
            rows.extend(ready.map(|c| row(k, c)));
        }
        if attempted && is(k.condition("Stalled"), "True") {
            rows.extend(k.condition("Stalled").map(|c| row(k, c)));
        }
    }
    let applied = applied(ev);
    let mut all_attempted = true;
    for (id, version) in &exp.releases {
        match release(ev, id) {
            Some(hr) if attempted_new(hr, version, applied) => rows.extend(release_failure(hr)),
            _ => all_attempted = false,
        }
    }
    // Pods speak for the new version only once it was rolled out to them; a pod that was
    // already crash-looping before the merge is not the merge's fault.
    if all_attempted && (applied || !exp.releases.is_empty()) {
        rows.extend(pod_failures(&ev.pods, progress.ready_since.unwrap_or(Timestamp::MAX)));
    }
    rows.extend(platform::failures(&exp.platform, ev, exp.merged_at));
    if rows.is_empty() {
        return None;
    }
    let reason = failure_reason(&rows);
    Some(Verdict::Failure { reason, rows })
}

/// The conditions of a HelmRelease that say the new version failed or was rolled back.
fn release_failure(hr: &FluxObject) -> Vec<Row> {
    let mut rows = Vec::new();
    let ready = hr.condition("Ready");
    if is(ready, "False")
        && ready.is_some_and(|c| {
            FAILURE_REASONS.contains(&c.reason.as_str()) || ROLLBACK_REASONS.contains(&c.reason.as_str())
        })
    {
        rows.extend(ready.map(|c| row(hr, c)));
    }
    for c in &hr.conditions {
        let rolled_back = c.type_ == "Remediated" && c.status == "True";
        let stalled = c.type_ == "Stalled" && c.status == "True";
        let undone = c.type_ != "Ready" && ROLLBACK_REASONS.contains(&c.reason.as_str());
        if rolled_back || stalled || undone {
            rows.push(row(hr, c));
        }
    }
    rows.dedup();
    rows
}

fn failure_reason(rows: &[Row]) -> String {
    let first = &rows[0];
    let rolled_back = rows.iter().any(|r| ROLLBACK_REASONS.contains(&r.reason.as_str()) || r.type_ == "Remediated");
    if rolled_back {
        return format!("{} was rolled back by the cluster ({}): git must follow", first.object, first.reason);
    }
    let message = first.message.lines().next().unwrap_or("");
    let short: String = message.chars().take(160).collect();
    format!("{} {} {}: {}", first.object, first.type_, first.reason, short)
}

/// Pods of changed releases that cannot run the new version; restarts after `since`.
fn pod_failures(pods: &[Pod], since: Timestamp) -> Vec<Row> {
    let mut rows = Vec::new();
    for pod in pods {
        for c in &pod.containers {
            let object = format!("Pod/{}/{}", pod.namespace, pod.name);
            if let Some(reason) = c.reason.as_deref().filter(|r| BAD_WAITING_REASONS.contains(r)) {
                rows.push(Row {
                    object,
                    type_: format!("container {}", c.name),
                    status: c.state.clone(),
                    reason: reason.to_string(),
                    message: c.message.clone().unwrap_or_default(),
                });
            } else if c.last_terminated_at.is_some_and(|t| t > since) {
                rows.push(Row {
                    object,
                    type_: format!("container {}", c.name),
                    status: format!("restarts {}", c.restarts),
                    reason: "Restarted".into(),
                    message: format!(
                        "restarted during the soak (last termination at {})",
                        c.last_terminated_at.unwrap_or(since)
                    ),
                });
            }
        }
    }
    rows
}

/// Failures found only once reconciled: restarts during the soak.
fn soak_failure(ev: &Evidence, ready_since: Timestamp) -> Option<Verdict> {
    let rows = pod_failures(&ev.pods, ready_since);
    if rows.is_empty() {
        return None;
    }
    let reason = format!("during the soak: {}", failure_reason(&rows));
    Some(Verdict::Failure { reason, rows })
}

/// The user's checks that failed (after their retries), once reconciled.
fn check_failure(checks: &[CheckResult]) -> Option<Verdict> {
    let failed: Vec<&CheckResult> = checks.iter().filter(|c| !c.ok).collect();
    let first = failed.first()?;
    let more = if failed.len() > 1 { format!(" (and {} more)", failed.len() - 1) } else { String::new() };
    let reason = format!("check {} failed: {}{more}", first.name, first.detail);
    Some(Verdict::Failure { reason, rows: failed.into_iter().map(check_row).collect() })
}

/// The evidence rows of check results: what a success shows it probed, or what failed.
pub fn check_rows(checks: &[CheckResult]) -> Vec<Row> {
    checks.iter().map(check_row).collect()
}

fn check_row(c: &CheckResult) -> Row {
    let status = match (c.status, c.ok) {
        (Some(s), _) => s.to_string(),
        (None, true) => "connected".into(),
        (None, false) => "no answer".into(),
    };
    let plural = if c.attempts == 1 { "" } else { "s" };
    Row {
        object: c.name.clone(),
        type_: "Check".into(),
        status,
        reason: if c.ok { "CheckPassed" } else { "CheckFailed" }.into(),
        message: format!("{} ({} attempt{plural}; {})", c.detail, c.attempts, c.origin),
    }
}

fn not_rolled_out(workloads: &[Workload]) -> Vec<Row> {
    workloads
        .iter()
        .filter(|w| {
            let current = w.generation.is_none() || w.generation == w.observed_generation;
            !(current && w.updated == w.desired && w.ready == w.desired && w.available == w.desired)
        })
        .map(|w| Row {
            object: format!("{:?}/{}/{}", w.kind, w.namespace, w.name),
            type_: "Rollout".into(),
            status: format!("{}/{} ready", w.ready, w.desired),
            reason: "NotRolledOut".into(),
            message: format!(
                "updated {}, ready {}, available {}, desired {} (generation {:?}, observed {:?})",
                w.updated, w.ready, w.available, w.desired, w.generation, w.observed_generation
            ),
        })
        .collect()
}

/// What is still missing for "reconciled at the merge", as rows for the report.
fn missing(exp: &Expectation, ev: &Evidence) -> Vec<Row> {
    if ev.statuses.is_some() {
        // Commit statuses show no source and no release: the Kustomizations are all there is.
        return ev.kustomizations.iter().filter_map(status_missing).collect();
    }
    let mut rows = Vec::new();
    let revision = |o: &FluxObject| o.artifact_revision.clone().unwrap_or_else(|| "none".into());
    match (&ev.source, ev.source_has_merge) {
        (None, _) => rows.push(missing_row("GitRepository", "Source", "is not there", "the source was not found")),
        (Some(src), has) if has != Some(true) => rows.push(Row {
            object: src.reference(),
            type_: "Revision".into(),
            status: revision(src),
            reason: "MergeNotFetched".into(),
            message: format!("has not fetched the merge (at {})", revision(src)),
        }),
        (Some(src), _) if !is(src.condition("Ready"), "True") => rows.push(not_ready(src)),
        _ => {}
    }
    rows.extend(ev.kustomizations.iter().filter_map(kustomization_missing));
    for (id, version) in &exp.releases {
        match release(ev, id) {
            None => {
                rows.push(missing_row(&format!("HelmRelease/{id}"), "Exists", "False", "was not found in the cluster"))
            }
            Some(hr) => rows.extend(release_missing(hr, version)),
        }
    }
    rows
}

fn kustomization_missing(state: &KustomizationState) -> Option<Row> {
    let k = &state.object;
    if state.applied_merge != Some(true) {
        let at = k.last_applied_revision.clone().unwrap_or_else(|| "none".into());
        return Some(Row {
            object: k.reference(),
            type_: "Revision".into(),
            status: at.clone(),
            reason: "MergeNotApplied".into(),
            message: format!("stopped at revision {at}"),
        });
    }
    (!is(k.condition("Ready"), "True")).then(|| not_ready(k))
}

/// A Kustomization that has not posted `success` for the merge or a later commit.
fn status_missing(state: &KustomizationState) -> Option<Row> {
    if state.applied_merge == Some(true) && is(state.object.condition("Ready"), "True") {
        return None;
    }
    Some(Row {
        object: state.object.reference(),
        type_: "CommitStatus".into(),
        status: "none".into(),
        reason: "NoStatus".into(),
        message: "has posted no success status on the merge or a later commit".into(),
    })
}

fn release_missing(hr: &FluxObject, version: &str) -> Option<Row> {
    if hr.generation.is_some() && hr.generation != hr.observed_generation {
        return Some(Row {
            object: hr.reference(),
            type_: "ObservedGeneration".into(),
            status: format!("{:?}", hr.observed_generation),
            reason: "NotObserved".into(),
            message: format!("has not observed generation {:?} yet", hr.generation),
        });
    }
    // v2 keeps a history; v2beta1/v2beta2 say `lastAppliedRevision` (the chart version).
    let at = hr
        .history_chart_version
        .as_deref()
        .or(hr.last_applied_revision.as_deref())
        .or(hr.last_attempted_revision.as_deref())
        .unwrap_or("none");
    if !same_version(at, version) {
        return Some(Row {
            object: hr.reference(),
            type_: "ChartVersion".into(),
            status: at.to_string(),
            reason: "NotUpgraded".into(),
            message: format!("runs chart {at}, not {version}"),
        });
    }
    (!is(hr.condition("Ready"), "True")).then(|| not_ready(hr))
}

fn not_ready(obj: &FluxObject) -> Row {
    match obj.condition("Ready") {
        Some(c) => Row { message: format!("is not Ready: {}", c.message), ..row(obj, c) },
        None => Row {
            object: obj.reference(),
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: String::new(),
            message: "reports no Ready condition yet".into(),
        },
    }
}

fn missing_row(object: &str, type_: &str, status: &str, message: &str) -> Row {
    Row {
        object: object.into(),
        type_: type_.into(),
        status: status.into(),
        reason: "NotFound".into(),
        message: message.into(),
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
