//! What to look at for one merge (the [`Target`]) and how the raw observation relates to it
//! ([`annotate`]): which Kustomizations apply the changed files, and whether the revisions Flux
//! reports contain the merge (ancestry checked with git, so a later commit counts too).

use std::collections::BTreeMap;

use super::evidence::{Evidence, FluxKind, KustomizationState};
use super::kube::flux::revision_commit;
use super::platform::PlatformTarget;
use crate::git::{Merge, Writer};
use crate::model::Component;

/// What upkeep knows about a dependency id from the checkout (a scan without lookups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepInfo {
    /// Display name (chart, `k3s`, `flux`).
    pub name: String,
    /// Platform component or application.
    pub component: Component,
    /// The HelmRelease, `namespace/name`, for charts.
    pub release: Option<String>,
    /// The chart's source object (HelmRepository or OCIRepository), to nudge.
    pub chart_source: Option<(FluxKind, String, String)>,
    /// The version in the checkout.
    pub current: Option<String>,
    /// A rule says `onFailure: issue`.
    pub on_failure_issue: bool,
}

/// What one merge is expected to change in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The merge commit.
    pub commit: String,
    /// The GitRepository Flux syncs from: `(namespace, name)`.
    pub source: (String, String),
    /// HelmReleases and the chart version the merge set: `(namespace/name, version)`.
    pub releases: Vec<(String, String)>,
    /// Sources of the changed charts, to nudge: `(kind, namespace, name)`.
    pub chart_sources: Vec<(FluxKind, String, String)>,
    /// Files the merge changed.
    pub files: Vec<String>,
    /// The platform components the merge upgrades (k3s, Longhorn, Flux), with what to expect.
    pub platform: Vec<PlatformTarget>,
}

/// The display name of an id upkeep no longer finds in the checkout.
pub fn name_of(id: &str) -> String {
    match id.split('/').next() {
        Some("plan") => "k3s".into(),
        Some("flux-components" | "fluxinstance") => "flux".into(),
        _ => id.rsplit('/').next().unwrap_or(id).to_string(),
    }
}

/// The component of an id upkeep no longer finds in the checkout.
pub fn component_of(id: &str) -> Component {
    match id.split('/').next() {
        Some("plan") => Component::K3s,
        Some("flux-components" | "fluxinstance") => Component::Flux,
        _ if id.ends_with("/longhorn") => Component::Longhorn,
        _ => Component::App,
    }
}

/// The HelmRelease of a dependency id: from the scan, else from a `helmrelease/<ns>/<name>` id.
fn release_of(id: &str, deps: &BTreeMap<String, DepInfo>) -> Option<String> {
    if let Some(info) = deps.get(id) {
        return info.release.clone();
    }
    let rest = id.strip_prefix("helmrelease/")?;
    let (ns, name) = rest.split_once('/')?;
    (!name.contains('/')).then(|| format!("{ns}/{name}"))
}

/// The target of a merge. A revert merge expects its releases back at the checkout's versions.
pub fn target(merge: &Merge, deps: &BTreeMap<String, DepInfo>, source: &(String, String)) -> Target {
    let mut releases = Vec::new();
    let mut chart_sources = Vec::new();
    let expected = merge
        .updates
        .iter()
        .map(|u| (u.id.clone(), Some(u.to.clone())))
        .chain(merge.reverts.iter().map(|(id, _)| (id.clone(), deps.get(id).and_then(|d| d.current.clone()))));
    for (id, version) in expected {
        if let (Some(release), Some(version)) = (release_of(&id, deps), version) {
            releases.push((release, version));
        }
        if let Some(src) = deps.get(&id).and_then(|d| d.chart_source.clone())
            && !chart_sources.contains(&src)
        {
            chart_sources.push(src);
        }
    }
    Target {
        commit: merge.commit.clone(),
        source: source.clone(),
        releases,
        chart_sources,
        files: merge.files.clone(),
        platform: Vec::new(),
    }
}

/// `spec.path` as a repository folder: `./clusters/prod/` → `clusters/prod`, `./` → ``.
fn folder(path: &str) -> String {
    path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').trim_start_matches('.').to_string()
}

/// Whether a Kustomization with this `spec.path` holds `file`.
pub fn holds(path: &str, file: &str) -> bool {
    let dir = folder(path);
    dir.is_empty() || file.starts_with(&format!("{dir}/"))
}

/// Relate an observation to the merge: keep the Kustomizations that apply a changed file (by
/// the repository's own Flux graph when it names ones the cluster has, else by `spec.path`),
/// and decide, with git, whether the revisions Flux reports contain the merge.
///
/// `applying` answers `namespace/name` of the Flux Kustomizations that apply a file (`*/name`
/// when the manifest leaves the namespace to kustomize).
pub fn annotate(mut ev: Evidence, merge: &Merge, writer: &Writer, applying: &dyn Fn(&str) -> Vec<String>) -> Evidence {
    let contains =
        |rev: Option<&str>| rev.and_then(revision_commit).and_then(|sha| writer.contains(sha, &merge.commit));
    ev.source_has_merge = ev.source.as_ref().and_then(|s| contains(s.artifact_revision.as_deref()));
    let named: Vec<String> = merge.files.iter().flat_map(|f| applying(f)).collect();
    let by_name = |o: &super::evidence::FluxObject| {
        named.iter().any(|n| *n == format!("{}/{}", o.namespace, o.name) || *n == format!("*/{}", o.name))
    };
    let by_path =
        |o: &super::evidence::FluxObject| o.path.as_deref().is_some_and(|p| merge.files.iter().any(|f| holds(p, f)));
    let graph_knows = ev.kustomizations.iter().any(|k| by_name(&k.object));
    let kept: Vec<KustomizationState> = ev
        .kustomizations
        .into_iter()
        .filter(|k| if graph_knows { by_name(&k.object) } else { by_path(&k.object) })
        .map(|k| KustomizationState {
            applied_merge: contains(k.object.last_applied_revision.as_deref()),
            attempted_merge: contains(k.object.last_attempted_revision.as_deref()),
            object: k.object,
        })
        .collect();
    ev.kustomizations = kept;
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kustomization_holds_the_files_below_its_path() {
        assert!(holds("./apps/production", "apps/production/podinfo.yaml"));
        assert!(holds("./", "anything/at/all.yaml"));
        assert!(holds(".", "x.yaml"));
        assert!(!holds("./apps/prod", "apps/production/podinfo.yaml"));
        assert!(!holds("./clusters/prod", "apps/podinfo.yaml"));
    }

    #[test]
    fn ids_without_a_scan_still_name_their_platform() {
        assert_eq!(component_of("plan/system-upgrade/server-plan"), Component::K3s);
        assert_eq!(component_of("flux-components/flux-system/flux"), Component::Flux);
        assert_eq!(component_of("helmrelease/longhorn-system/longhorn"), Component::Longhorn);
        assert_eq!(component_of("helmrelease/apps/podinfo"), Component::App);
        assert_eq!(release_of("helmrelease/apps/podinfo", &BTreeMap::new()).as_deref(), Some("apps/podinfo"));
    }
}
