//! Flux's commit statuses as an [`Observer`] (`--evidence github-status`): what
//! notification-controller posted on the merge commit and its descendants, read through the
//! forge, turned into the same [`Evidence`] the cluster gives, so the verdict is unchanged and
//! upkeep needs no cluster credentials at all.
//!
//! **What Flux posts.** A `Provider` of type `github` with an `Alert` on Kustomization events
//! makes notification-controller post one status per event that carries a commit revision
//! (fluxcd/notification-controller `internal/notifier/github.go`): state `success` for an info
//! event, `failure` for an error event; `Progressing` events are skipped. kustomize-controller
//! marks the event it sends on Ready as a commit status update, so `success` means Ready at that
//! revision (after its health checks, when it has `wait: true` or `healthChecks`). The context
//! is `<kind>/<name>/<first segment of the Provider's UID>`, lowercased
//! (`internal/server/provider_commit_status.go`, `generateDefaultCommitStatus`): e.g.
//! `kustomization/apps/0c9c2e41`; Flux before v0.37 wrote `kustomization/apps`. The description
//! is the event's reason split at capitals and lowercased (`health check failed`). A Provider
//! with `spec.commitStatusExpr` writes its own contexts: those are not read.
//!
//! **Which statuses count.** The statuses of every commit on the branch's first-parent line from
//! its tip down to the merge (each contains the merge); per context, the newest status on the
//! newest such commit stands, as the cluster's current state would. A Kustomization is matched
//! by name only: the context has no namespace. So a name stands for every Kustomization of that
//! name that applies a changed file, and when several Providers post for one name (several
//! clusters, or one per namespace: another UID segment), each one's newest status counts: any
//! `failure` fails the merge, and success needs every one of them at `success`. Statuses of
//! other Kustomizations, of other kinds and of other tools are ignored.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use super::Observer;
use super::evidence::{Blind, Condition, Evidence, FluxKind, FluxObject, KustomizationState, StatusEvidence};
use super::target::Target;
use crate::forge::{CommitStatus, Forge, StatusState};
use crate::git::Writer;

/// How many commits above the merge are read, at most: Flux applies the tip, so its statuses
/// are near it; a merge buried deeper is past any timeout anyway.
const MAX_COMMITS: usize = 200;

/// How often the forge is asked again while waiting (statuses cannot be watched).
const POLL: Duration = Duration::from_secs(20);

/// A Flux Kustomization that applies a changed file, from the repository's own Flux manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applier {
    /// `metadata.namespace`, when the manifest says it.
    pub namespace: Option<String>,
    /// `metadata.name`: what the status context names.
    pub name: String,
    /// `wait: true` or `healthChecks`: its Ready covers the health of what it applies.
    pub checks_health: bool,
    /// Where it is defined, for the warning.
    pub file: String,
    /// Its line.
    pub line: usize,
}

impl Applier {
    /// `namespace/name` (`*/name` when the namespace is left to kustomize).
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace.as_deref().unwrap_or("*"), self.name)
    }
}

/// A status context notification-controller wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluxContext {
    /// The involved object's kind, lowercased (`kustomization`).
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The first segment of the Provider's UID; `None` in the pre-v0.37 format.
    pub provider: Option<String>,
}

/// Read a context in notification-controller's format; anything else is not Flux's.
pub fn parse_context(context: &str) -> Option<FluxContext> {
    let mut parts = context.split('/');
    let kind = parts.next()?;
    let name = parts.next()?;
    let provider = parts.next();
    if parts.next().is_some() || !matches!(kind, "kustomization" | "helmrelease") {
        return None;
    }
    // Kubernetes names are DNS subdomains; the UID segment is hex.
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let uid = |s: &str| !s.is_empty() && s.len() <= 36 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !dns(name) || provider.is_some_and(|p| !uid(p)) {
        return None;
    }
    Some(FluxContext { kind: kind.to_string(), name: name.to_string(), provider: provider.map(str::to_string) })
}

/// The Flux reason a description was made from: `health check failed` → `HealthCheckFailed`.
pub fn reason_of(description: &str) -> String {
    description
        .split_whitespace()
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

/// The newest status of one context, and the commit it is on.
struct Newest<'a> {
    context: &'a str,
    sha: &'a str,
    status: &'a CommitStatus,
}

/// What the statuses say, as evidence: one Kustomization per applier, with a Ready condition
/// from its contexts' newest statuses. `commits` are tip first, each with its statuses newest
/// first (GitHub's order).
pub fn evidence_from(appliers: &[Applier], commits: &[(String, Vec<CommitStatus>)]) -> Evidence {
    let mut newest: BTreeMap<&str, Newest<'_>> = BTreeMap::new();
    let mut flux_statuses = 0;
    for (sha, statuses) in commits {
        for status in statuses {
            if parse_context(&status.context).is_none_or(|c| c.kind != "kustomization") {
                continue;
            }
            flux_statuses += 1;
            newest.entry(status.context.as_str()).or_insert(Newest { context: &status.context, sha, status });
        }
    }
    let kustomizations = appliers
        .iter()
        .map(|a| {
            let mine: Vec<&Newest<'_>> =
                newest.values().filter(|n| parse_context(n.context).is_some_and(|c| c.name == a.name)).collect();
            KustomizationState { object: object_of(a, &mine), applied_merge: None, attempted_merge: None }
        })
        .collect();
    let warnings = appliers.iter().filter(|a| !a.checks_health).map(warning).collect();
    Evidence {
        observed_at: Some(Timestamp::now()),
        kustomizations,
        statuses: Some(StatusEvidence { commits: commits.len(), flux_statuses }),
        warnings,
        ..Evidence::default()
    }
}

/// The Kustomization as its statuses show it: a failure anywhere wins, then all-success.
fn object_of(a: &Applier, mine: &[&Newest<'_>]) -> FluxObject {
    let mut object = FluxObject::named(FluxKind::Kustomization, a.namespace.as_deref().unwrap_or("*"), &a.name);
    let said = |n: &Newest<'_>| {
        let description = n.status.description.lines().next().unwrap_or("");
        let description: String = description.chars().take(140).collect();
        let state = format!("{:?}", n.status.state).to_lowercase();
        format!("{} posted {state} on {}: {description}", n.context, &n.sha[..n.sha.len().min(12)])
    };
    let failed = mine.iter().find(|n| matches!(n.status.state, StatusState::Failure | StatusState::Error));
    if let Some(n) = failed {
        object.last_attempted_revision = Some(format!("sha1:{}", n.sha));
        object.conditions.push(Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: reason_of(&n.status.description),
            message: said(n),
            last_transition_time: n.status.created_at.map(|t| t.to_string()),
        });
        return object;
    }
    if !mine.is_empty() && mine.iter().all(|n| n.status.state == StatusState::Success) {
        // A commit one of them succeeded on: every commit read contains the merge.
        let first = mine[0];
        object.last_applied_revision = Some(format!("sha1:{}", first.sha));
        object.last_attempted_revision = object.last_applied_revision.clone();
        object.conditions.push(Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: reason_of(&first.status.description),
            message: mine.iter().map(|n| said(n)).collect::<Vec<_>>().join("; "),
            last_transition_time: first.status.created_at.map(|t| t.to_string()),
        });
    }
    object
}

fn warning(a: &Applier) -> String {
    format!(
        "Kustomization {} ({}:{}) has neither `wait: true` nor `healthChecks`: its commit status says its manifests were applied, not that the HelmReleases they define became Ready. Add `wait: true` so that its status covers them.",
        a.key(),
        a.file,
        a.line
    )
}

/// Flux's commit statuses on the forge, as evidence for the merges of one repository.
pub struct StatusSource<'a> {
    forge: &'a dyn Forge,
    writer: &'a Writer,
    applying: &'a dyn Fn(&str) -> Vec<Applier>,
    /// Statuses read since the last wait, by commit: open merges share the commits near the
    /// tip, and each is read once per round, not once per merge.
    round: RefCell<HashMap<String, Vec<CommitStatus>>>,
}

impl<'a> StatusSource<'a> {
    /// Statuses from `forge` for the merges of `writer`'s repository; `applying` names the
    /// Flux Kustomizations of the repository's own manifests that apply a file.
    pub fn new(forge: &'a dyn Forge, writer: &'a Writer, applying: &'a dyn Fn(&str) -> Vec<Applier>) -> Self {
        StatusSource { forge, writer, applying, round: RefCell::new(HashMap::new()) }
    }

    fn statuses(&self, sha: &str) -> Result<Vec<CommitStatus>, crate::forge::ForgeError> {
        if let Some(known) = self.round.borrow().get(sha) {
            return Ok(known.clone());
        }
        let read = self.forge.statuses(sha)?;
        self.round.borrow_mut().insert(sha.to_string(), read.clone());
        Ok(read)
    }

    /// Read everything for one merge (blocking: git and the forge).
    fn read(&self, target: &Target) -> Evidence {
        let mut appliers: Vec<Applier> = Vec::new();
        let mut blind = Vec::new();
        for file in &target.files {
            let found = (self.applying)(file);
            if found.is_empty() {
                blind.push(Blind {
                    what: format!("`{file}`"),
                    reason: "no Flux Kustomization in this repository applies it, so no commit status speaks for it: --evidence github-status cannot verify this merge (--evidence kube can)".into(),
                });
            }
            for a in found {
                if !appliers.contains(&a) {
                    appliers.push(a);
                }
            }
        }
        let short = &target.commit[..target.commit.len().min(12)];
        let commits = self.writer.first_parent_down_to(&target.commit, MAX_COMMITS).unwrap_or_else(|e| {
            blind.push(Blind { what: format!("merge {short}"), reason: e.to_string() });
            Vec::new()
        });
        let mut read = Vec::new();
        for sha in commits {
            match self.statuses(&sha) {
                Ok(statuses) => read.push((sha, statuses)),
                Err(e) => {
                    // One failed read is enough to know: the next observation asks again.
                    let what = format!("the commit statuses of {}", &sha[..sha.len().min(12)]);
                    blind.push(Blind { what, reason: e.to_string() });
                    break;
                }
            }
        }
        let mut evidence = evidence_from(&appliers, &read);
        evidence.blind.extend(blind);
        evidence
    }
}

impl Observer for StatusSource<'_> {
    async fn observe(&self, target: &Target) -> Evidence {
        // The GitHub forge blocks on its own runtime: off the async workers.
        tokio::task::block_in_place(|| self.read(target))
    }

    async fn nudge(&self, _evidence: &Evidence, _at: Timestamp) -> Vec<String> {
        // Without cluster access nothing can be nudged: the GitRepository's interval applies.
        Vec::new()
    }

    async fn changed(&self, _targets: &[Target], timeout: Duration) {
        // Statuses cannot be watched: ask again after a while, afresh.
        tokio::time::sleep(timeout.min(POLL)).await;
        self.round.borrow_mut().clear();
    }
}

#[cfg(test)]
#[path = "statuses_tests.rs"]
mod tests;
