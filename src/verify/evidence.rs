//! The evidence a verification rests on: what the cluster (or the forge's commit statuses, or the
//! user's checks) said, at one moment, as plain data. Sources fill it in; the verdict reads it.
//!
//! This is the only thing evidence sources hand over, so the verdict stays a pure function that
//! is tested without I/O, and a source never decides anything. Fields keep the cluster's own
//! words (condition types, reasons, messages) because they end up, sanitised, in revert PRs.

use serde::Serialize;

use super::platform::PlatformEvidence;

/// A Kubernetes-style condition, as Flux and the workload controllers report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
pub struct Condition {
    /// `Ready`, `Stalled`, `Reconciling`, `Remediated`, `Released`, `TestSuccess`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason (`UpgradeFailed`, `ReconciliationSucceeded`).
    #[serde(default)]
    pub reason: String,
    /// Human message, as the controller wrote it (untrusted text).
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last transition, as written.
    #[serde(default, rename = "lastTransitionTime")]
    pub last_transition_time: Option<String>,
}

/// Which Flux object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FluxKind {
    /// source.toolkit.fluxcd.io GitRepository.
    GitRepository,
    /// source.toolkit.fluxcd.io OCIRepository.
    OciRepository,
    /// source.toolkit.fluxcd.io HelmRepository.
    HelmRepository,
    /// kustomize.toolkit.fluxcd.io Kustomization.
    Kustomization,
    /// helm.toolkit.fluxcd.io HelmRelease.
    HelmRelease,
}

impl FluxKind {
    /// The Kind as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FluxKind::GitRepository => "GitRepository",
            FluxKind::OciRepository => "OCIRepository",
            FluxKind::HelmRepository => "HelmRepository",
            FluxKind::Kustomization => "Kustomization",
            FluxKind::HelmRelease => "HelmRelease",
        }
    }
}

/// One Flux object as observed: the handful of fields the verdict needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FluxObject {
    /// Which kind.
    pub kind: FluxKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The API version it was read at (`helm.toolkit.fluxcd.io/v2`).
    pub api_version: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.conditions`.
    pub conditions: Vec<Condition>,
    /// Sources: `status.artifact.revision` (`main@sha1:<sha>`, older `main/<sha>`).
    pub artifact_revision: Option<String>,
    /// Kustomizations (and HelmReleases of older APIs): `status.lastAppliedRevision`.
    pub last_applied_revision: Option<String>,
    /// Kustomizations: `status.lastAttemptedRevision`.
    pub last_attempted_revision: Option<String>,
    /// Kustomizations: `spec.path`; HelmReleases: none.
    pub path: Option<String>,
    /// Kustomizations: `spec.sourceRef` as `Kind/namespace/name`.
    pub source_ref: Option<String>,
    /// HelmReleases: `status.history[0].chartVersion` (v2), newest first.
    pub history_chart_version: Option<String>,
    /// HelmReleases: `status.history[0].status` (`deployed`, `failed`, `superseded`, ...).
    pub history_status: Option<String>,
    /// `metadata.annotations["reconcile.fluxcd.io/requestedAt"]`, to nudge only once.
    pub requested_at: Option<String>,
}

impl FluxObject {
    /// An object known only by kind, namespace and name (nothing observed yet): what a nudge
    /// of a source a release names needs.
    pub fn named(kind: FluxKind, namespace: &str, name: &str) -> FluxObject {
        FluxObject {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            api_version: String::new(),
            generation: None,
            observed_generation: None,
            conditions: Vec::new(),
            artifact_revision: None,
            last_applied_revision: None,
            last_attempted_revision: None,
            path: None,
            source_ref: None,
            history_chart_version: None,
            history_status: None,
            requested_at: None,
        }
    }

    /// `Kind/namespace/name`, how reports name an object.
    pub fn reference(&self) -> String {
        format!("{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }

    /// The condition of this type, if reported.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// Which workload controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

/// A Deployment, StatefulSet or DaemonSet of a changed release, with its rollout counters.
///
/// For a DaemonSet, `desired` is `desiredNumberScheduled`, `updated` `updatedNumberScheduled`,
/// `ready` `numberReady` and `available` `numberAvailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Which kind.
    pub kind: WorkloadKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The HelmRelease it belongs to (`helm.toolkit.fluxcd.io/namespace` + `/name` labels).
    pub release: Option<String>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// Replicas wanted (`spec.replicas`, default 1; DaemonSets: desiredNumberScheduled).
    pub desired: i64,
    /// Replicas at the current template.
    pub updated: i64,
    /// Replicas ready.
    pub ready: i64,
    /// Replicas available.
    pub available: i64,
    /// The container images of its pod template (`repo:tag`), for platform version checks.
    pub images: Vec<String>,
}

/// The state of one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerState {
    /// Container name.
    pub name: String,
    /// `Running`, `Waiting` or `Terminated`.
    pub state: String,
    /// For Waiting/Terminated: the reason (`CrashLoopBackOff`, `ImagePullBackOff`, `Error`).
    pub reason: Option<String>,
    /// For Waiting/Terminated: the message (untrusted text).
    pub message: Option<String>,
    /// `restartCount`.
    pub restarts: i64,
    /// `ready`.
    pub ready: bool,
    /// `lastState.terminated.finishedAt`: a restart after the soak began fails the update
    /// (compared by time, so no restart-count baseline has to survive between passes).
    pub last_terminated_at: Option<jiff::Timestamp>,
}

/// A pod of a changed release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The HelmRelease it belongs to, as for workloads.
    pub release: Option<String>,
    /// `status.phase`.
    pub phase: String,
    /// Init and regular containers.
    pub containers: Vec<ContainerState>,
}

/// A Kubernetes event about an object of the update (for the report, never for the verdict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeEvent {
    /// `Kind/namespace/name` of the involved object.
    pub object: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// Reason.
    pub reason: String,
    /// Message (untrusted text).
    pub message: String,
}

/// Why a source could not see the cluster. Blindness is never failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blind {
    /// What could not be read (`GitRepository/flux-system/flux-system`, `the API server`).
    pub what: String,
    /// Why, and what to do (the permission to grant, the connection that failed).
    pub reason: String,
}

/// A Kustomization with where it stands against the merge (decided by the caller with git:
/// `None` when a revision is absent or unknown to git).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KustomizationState {
    /// The object.
    pub object: FluxObject,
    /// Whether `lastAppliedRevision` is the merge or a descendant.
    pub applied_merge: Option<bool>,
    /// Whether `lastAttemptedRevision` is the merge or a descendant.
    pub attempted_merge: Option<bool>,
}

/// Everything observed about one merge at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Evidence {
    /// When it was observed.
    pub observed_at: Option<jiff::Timestamp>,
    /// What could not be seen; any entry makes a not-yet-conclusive verdict `pending`.
    pub blind: Vec<Blind>,
    /// The GitRepository (or other source) Flux syncs this repository from.
    pub source: Option<FluxObject>,
    /// Whether the source's artifact revision is the merge or a descendant of it (decided by
    /// the caller with git; `None` when unknown, for a revision git does not have).
    pub source_has_merge: Option<bool>,
    /// Flux Kustomizations that apply a file the merge changed.
    pub kustomizations: Vec<KustomizationState>,
    /// HelmReleases the merge changed, with the chart version the merge set.
    pub helmreleases: Vec<(FluxObject, String)>,
    /// Sources of changed charts (HelmRepository, OCIRepository), for nudging and the report.
    pub chart_sources: Vec<FluxObject>,
    /// Workloads of the changed releases.
    pub workloads: Vec<Workload>,
    /// Pods of the changed releases.
    pub pods: Vec<Pod>,
    /// Warning events about the objects above, newest first (report only).
    pub events: Vec<KubeEvent>,
    /// Objects looked for and not found (404), as `Kind/namespace/name`: seen, not blind. A
    /// HelmRelease the merge adds is missing until Flux applies it; one that stays missing
    /// means its Kustomization did not apply it.
    pub missing: Vec<String>,
    /// Reads for the report only (events) that failed: shown to the maintainer, never a reason
    /// to keep a verdict pending (missing RBAC for events must not stall every verification).
    pub gaps: Vec<Blind>,
    /// The user's HTTP/TCP checks for the merged updates (`checks:` in the rules), each with
    /// its last result; run only once the update is reconciled, so empty before that.
    pub checks: Vec<CheckResult>,
    /// Set when the evidence is the commit statuses Flux's notification-controller posted on the
    /// forge (`--evidence github-status`), not the cluster: the source, HelmReleases and
    /// workloads are then not seen, and each Kustomization's status is the whole story.
    pub statuses: Option<StatusEvidence>,
    /// What the maintainer should know that changes no verdict (a Kustomization whose status
    /// says nothing about the health of what it applies); shown in the report.
    pub warnings: Vec<String>,
    /// Platform health (nodes and Plans, Longhorn, Flux's controllers), read only for merges
    /// that upgrade k3s, Longhorn or Flux; empty otherwise.
    pub platform: PlatformEvidence,
}

/// The last result of one of the user's checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CheckResult {
    /// What was probed, fit to show: `http GET https://host/healthz` or `tcp host:port` (no
    /// user info, no query values).
    pub name: String,
    /// Where the check is written (`upkeep.yaml:12`).
    pub origin: String,
    /// Whether it passed (after its retries).
    pub ok: bool,
    /// The HTTP status of the last answer, if one came.
    pub status: Option<u16>,
    /// What it got: `status 200`, `expected status 200-399, got 503`, `connection refused`.
    pub detail: String,
    /// Attempts made in this observation.
    pub attempts: u32,
    /// When the last attempt ended.
    pub at: Option<jiff::Timestamp>,
}

/// What was read of the forge's commit statuses for one merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StatusEvidence {
    /// Commits read, from the branch tip down to the merge.
    pub commits: usize,
    /// Flux Kustomization statuses found on them (of any Kustomization): none at all past the
    /// timeout means notification-controller is not posting statuses here.
    pub flux_statuses: usize,
}
