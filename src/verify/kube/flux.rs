//! Flux's API groups and the few fields of their objects the verdict needs: which served version
//! to read each group at, and how a Flux object's JSON becomes a [`FluxObject`]. Pure: no I/O.
//!
//! Objects are read as `DynamicObject`s and narrowed to the small serde structs below, so an
//! older or newer API version with extra fields still reads, and a missing field is `None`
//! rather than an error (v2beta1 HelmReleases have no `status.history`, for instance).

use std::collections::BTreeMap;

use ::kube::discovery::ApiResource;
use serde::Deserialize;

use crate::verify::evidence::{Condition, FluxKind, FluxObject};

/// One Flux API group and the versions upkeep can read, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FluxGroup {
    /// `source.toolkit.fluxcd.io`, ...
    pub name: &'static str,
    /// Versions upkeep reads, most preferred first.
    pub preferred: &'static [&'static str],
}

/// source-controller: GitRepository, HelmRepository, OCIRepository.
pub const SOURCE: FluxGroup = FluxGroup { name: "source.toolkit.fluxcd.io", preferred: &["v1", "v1beta2"] };
/// kustomize-controller: Kustomization.
pub const KUSTOMIZE: FluxGroup = FluxGroup { name: "kustomize.toolkit.fluxcd.io", preferred: &["v1", "v1beta2"] };
/// helm-controller: HelmRelease.
pub const HELM: FluxGroup = FluxGroup { name: "helm.toolkit.fluxcd.io", preferred: &["v2", "v2beta2", "v2beta1"] };

/// The group a kind lives in.
pub fn group_of(kind: FluxKind) -> FluxGroup {
    match kind {
        FluxKind::GitRepository | FluxKind::OciRepository | FluxKind::HelmRepository => SOURCE,
        FluxKind::Kustomization => KUSTOMIZE,
        FluxKind::HelmRelease => HELM,
    }
}

/// The URL plural of a kind.
pub fn plural_of(kind: FluxKind) -> &'static str {
    match kind {
        FluxKind::GitRepository => "gitrepositories",
        FluxKind::OciRepository => "ocirepositories",
        FluxKind::HelmRepository => "helmrepositories",
        FluxKind::Kustomization => "kustomizations",
        FluxKind::HelmRelease => "helmreleases",
    }
}

/// The version to read `group` at, given the versions the API server serves for it: the first
/// of upkeep's preferences that is served, else the server's own preferred version (a newer
/// API upkeep does not know yet still carries the fields it reads), else `None` (not installed).
pub fn choose_version(group: FluxGroup, served: &[String], server_preferred: Option<&str>) -> Option<String> {
    group
        .preferred
        .iter()
        .find(|want| served.iter().any(|s| s == *want))
        .map(|v| v.to_string())
        .or_else(|| server_preferred.map(str::to_string))
}

/// The API resource of `kind` at `version`, for kube's dynamic API.
pub fn api_resource(kind: FluxKind, version: &str) -> ApiResource {
    let group = group_of(kind).name;
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: format!("{group}/{version}"),
        kind: kind.as_str().to_string(),
        plural: plural_of(kind).to_string(),
    }
}

/// The annotation Flux controllers watch to reconcile now (`flux reconcile` sets it too).
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FluxDoc {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    source_ref: Option<SourceRef>,
    /// HelmRelease: `spec.chart` (its `spec.sourceRef` names the HelmRepository).
    #[serde(default)]
    chart: Option<ChartTemplate>,
    /// HelmRelease: `spec.chartRef` (an OCIRepository or HelmChart).
    #[serde(default)]
    chart_ref: Option<SourceRef>,
}

/// A HelmRelease's `spec.chart`.
#[derive(Debug, Default, Deserialize)]
struct ChartTemplate {
    #[serde(default)]
    spec: Option<ChartSpec>,
}

/// A HelmRelease's `spec.chart.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartSpec {
    #[serde(default)]
    source_ref: Option<SourceRef>,
}

/// A Kustomization's `spec.sourceRef`.
#[derive(Debug, Default, Deserialize)]
struct SourceRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    observed_generation: Option<i64>,
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    artifact: Option<Artifact>,
    #[serde(default)]
    last_applied_revision: Option<String>,
    #[serde(default)]
    last_attempted_revision: Option<String>,
    #[serde(default)]
    history: Vec<Snapshot>,
}

#[derive(Debug, Default, Deserialize)]
struct Artifact {
    #[serde(default)]
    revision: Option<String>,
}

/// One entry of a v2 HelmRelease's `status.history`, newest first.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    #[serde(default)]
    chart_version: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// Read a Flux object's JSON (as the API server served it) into a [`FluxObject`].
pub fn flux_object(kind: FluxKind, json: serde_json::Value) -> Result<FluxObject, serde_json::Error> {
    let doc: FluxDoc = serde_json::from_value(json)?;
    let namespace = doc.metadata.namespace.unwrap_or_default();
    // A Kustomization's source, or a HelmRelease's chart source (what a nudge reaches).
    let spec = doc.spec;
    let chart_source = spec.chart.and_then(|c| c.spec).and_then(|s| s.source_ref);
    let source_ref = spec.source_ref.or(chart_source).or(spec.chart_ref).map(|r| {
        let ns = r.namespace.unwrap_or_else(|| namespace.clone());
        format!("{}/{ns}/{}", r.kind, r.name)
    });
    let newest = doc.status.history.into_iter().next();
    Ok(FluxObject {
        kind,
        namespace,
        name: doc.metadata.name,
        api_version: doc.api_version,
        generation: doc.metadata.generation,
        observed_generation: doc.status.observed_generation,
        conditions: doc.status.conditions,
        artifact_revision: doc.status.artifact.and_then(|a| a.revision),
        last_applied_revision: doc.status.last_applied_revision,
        last_attempted_revision: doc.status.last_attempted_revision,
        path: spec.path,
        source_ref,
        history_chart_version: newest.as_ref().and_then(|s| s.chart_version.clone()),
        history_status: newest.and_then(|s| s.status),
        requested_at: doc.metadata.annotations.get(REQUESTED_AT).cloned(),
    })
}

/// The commit of a Flux source revision: `<ref>@sha1:<sha>` (Flux 2.0 on, also `sha256:`),
/// the older `<branch>/<sha>`, or a bare `sha1:<sha>`. `None` for anything else (an OCI digest
/// alone, an empty status), so the caller never mistakes a non-commit for a commit.
pub fn revision_commit(revision: &str) -> Option<&str> {
    let candidate = match revision.rsplit_once('@') {
        Some((_, digest)) => commit_digest(digest)?,
        None if revision.contains(':') => commit_digest(revision)?,
        None => revision.rsplit_once('/')?.1,
    };
    let is_commit = matches!(candidate.len(), 40 | 64) && candidate.bytes().all(|b| b.is_ascii_hexdigit());
    is_commit.then_some(candidate)
}

fn commit_digest(digest: &str) -> Option<&str> {
    match digest.split_once(':')? {
        ("sha1" | "sha256", sha) => Some(sha),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_commit_reads_every_revision_form_flux_writes() {
        let sha = "363a6a8fe6a7f13e05d34c163b0ef02a777da20a";
        assert_eq!(revision_commit(&format!("master@sha1:{sha}")), Some(sha));
        assert_eq!(revision_commit(&format!("refs/heads/feature/x@sha1:{sha}")), Some(sha));
        assert_eq!(revision_commit(&format!("v1.0.1@sha1:{sha}")), Some(sha));
        assert_eq!(revision_commit(&format!("master/{sha}")), Some(sha));
        assert_eq!(revision_commit(&format!("feature/x/{sha}")), Some(sha));
        assert_eq!(revision_commit(&format!("sha1:{sha}")), Some(sha));
        assert_eq!(revision_commit("master@sha1:abc"), None);
        assert_eq!(revision_commit("6.5.3"), None);
        assert_eq!(revision_commit(""), None);
        assert_eq!(revision_commit(&format!("master@md5:{sha}")), None);
    }

    #[test]
    fn upkeep_preference_wins_over_the_server_preference() {
        let served = vec!["v2beta1".to_string(), "v2beta2".to_string(), "v2".to_string()];
        assert_eq!(choose_version(HELM, &served, Some("v2beta1")).as_deref(), Some("v2"));
        let old = vec!["v2beta1".to_string()];
        assert_eq!(choose_version(HELM, &old, Some("v2beta1")).as_deref(), Some("v2beta1"));
        assert_eq!(choose_version(HELM, &[], None), None);
        let future = vec!["v3".to_string()];
        assert_eq!(choose_version(HELM, &future, Some("v3")).as_deref(), Some("v3"));
    }

    #[test]
    fn source_ref_namespace_defaults_to_the_object_namespace() {
        let json = serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {"path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}
        });
        let object = flux_object(FluxKind::Kustomization, json).unwrap();
        assert_eq!(object.source_ref.as_deref(), Some("GitRepository/flux-system/flux-system"));
        assert_eq!(object.path.as_deref(), Some("./apps"));
        assert!(object.conditions.is_empty());
    }
}
