//! What a platform upgrade (k3s, Longhorn, Flux itself) is expected to bring about, and the
//! platform as observed, as plain data: the targets come from the merge's trailers (and, for
//! Flux, the controller images of the merged `gotk-components.yaml`); the observation comes from
//! the kube adapter; the verdict's platform rules read both.
//!
//! Platform health is not a HelmRelease condition: k3s is healthy when every node is Ready, on
//! the new kubelet and schedulable again, and the system-upgrade-controller's Plans say
//! `Complete`; Longhorn when its workloads rolled out at the new manager image and no volume is
//! degraded or faulted; Flux when its controllers run the new version and everything they
//! reconcile is still Ready.

use std::collections::BTreeMap;

use serde::Serialize;

use super::evidence::{Condition, FluxObject, Workload};
use super::target::{DepInfo, component_of};
use crate::git::Merge;
use crate::model::Component;

/// The namespace Longhorn is installed in (its chart and manifests require it).
pub const LONGHORN_NAMESPACE: &str = "longhorn-system";

/// The label `flux install` (and flux-operator) puts on every object of the distribution.
pub const FLUX_PART_OF: &str = "app.kubernetes.io/part-of=flux";

/// The label carrying the Flux distribution version (`v2.4.0`) on every Flux object.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// A platform component a merge upgrades, with what the cluster should show afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PlatformTarget {
    /// k3s through system-upgrade-controller Plans.
    K3s {
        /// The k3s version the Plans now name (`v1.30.4+k3s1`).
        version: String,
        /// The Plans the merge changed: `(namespace, name)`.
        plans: Vec<(String, String)>,
    },
    /// Longhorn.
    Longhorn {
        /// Its namespace (`longhorn-system`).
        namespace: String,
        /// The chart version the merge set (`1.7.1`; images are tagged `v1.7.1`).
        version: String,
    },
    /// Flux's own controllers.
    Flux {
        /// The Flux namespace (that of the GitRepository upkeep follows, `flux-system`).
        namespace: String,
        /// The Flux distribution version (`v2.4.0`); a range such as `2.x` checks no version.
        version: String,
        /// The controller images the merged `gotk-components.yaml` names
        /// (`ghcr.io/fluxcd/helm-controller:v1.1.0`): the controllers' own tags differ from
        /// the distribution version, so the merged file is what says which ones to expect.
        images: Vec<String>,
    },
}

/// A node as the k3s rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Name.
    pub name: String,
    /// The `Ready` condition, if reported.
    pub ready: Option<Condition>,
    /// `status.nodeInfo.kubeletVersion` (`v1.30.4+k3s1`).
    pub kubelet_version: String,
    /// `spec.unschedulable`: cordoned.
    pub unschedulable: bool,
}

/// A system-upgrade-controller Plan (`upgrade.cattle.io/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.version`.
    pub version: Option<String>,
    /// `status.latestVersion`: the version the `Complete` condition is about.
    pub latest_version: Option<String>,
    /// `status.conditions` (`LatestResolved`, `Validated`, `Complete`).
    pub conditions: Vec<Condition>,
    /// `status.applying`: nodes the Plan is being applied on now.
    pub applying: Vec<String>,
}

impl Plan {
    /// `Plan/namespace/name`.
    pub fn reference(&self) -> String {
        format!("Plan/{}/{}", self.namespace, self.name)
    }
}

/// A Longhorn volume (`volumes.longhorn.io`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LonghornVolume {
    /// Namespace.
    pub namespace: String,
    /// Name (`pvc-<uid>`).
    pub name: String,
    /// `status.state`: `attached`, `detached`, ...
    pub state: String,
    /// `status.robustness`: `healthy`, `degraded`, `faulted` or `unknown` (detached).
    pub robustness: String,
}

/// A Longhorn engine image (`engineimages.longhorn.io`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineImage {
    /// Name (`ei-<hash>`).
    pub name: String,
    /// `spec.image` (`longhornio/longhorn-engine:v1.7.1`).
    pub image: String,
    /// `status.state`: `deploying`, `deployed`, `incompatible` or `error`.
    pub state: String,
}

/// What was observed of the platform components a merge upgrades (empty for application
/// updates: nothing here is read unless a [`PlatformTarget`] asks for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PlatformEvidence {
    /// Every node (k3s).
    pub nodes: Vec<Node>,
    /// The Plans the merge changed (k3s).
    pub plans: Vec<Plan>,
    /// Longhorn's volumes.
    pub volumes: Vec<LonghornVolume>,
    /// Longhorn's engine images.
    pub engine_images: Vec<EngineImage>,
    /// The Deployments and DaemonSets of the platform namespaces (Longhorn's, Flux's).
    pub workloads: Vec<Workload>,
    /// `Kind/namespace/name` of a platform workload → its `app.kubernetes.io/version` label.
    pub version_labels: BTreeMap<String, String>,
    /// Every Kustomization and HelmRelease in the cluster (Flux upgrades).
    pub flux_objects: Vec<FluxObject>,
}

/// `repo:tag` → (`repo`, `tag`); a digest or a missing tag gives no tag.
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (image, None),
    }
}

/// The last path element of an image repository (`longhornio/longhorn-manager` → `longhorn-manager`).
pub fn image_name(image: &str) -> &str {
    let (repo, _) = split_image(image);
    repo.rsplit('/').next().unwrap_or(repo)
}

/// The controller images named in a `gotk-components.yaml` (`image: ghcr.io/fluxcd/...:vX`),
/// each once, in file order. Read line by line: the file is Flux's own generated output.
pub fn flux_images(text: &str) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(value) = line.trim_start().trim_start_matches("- ").strip_prefix("image:") else { continue };
        let image = value.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        if image.contains("fluxcd/") && !images.contains(&image) {
            images.push(image);
        }
    }
    images
}

/// The platform targets of a merge. `flux_namespace` is the namespace of the GitRepository
/// upkeep follows; `read` gives a file of the merged tree (for the gotk-components images).
pub fn targets(
    merge: &Merge,
    deps: &BTreeMap<String, DepInfo>,
    flux_namespace: &str,
    read: &dyn Fn(&str) -> Option<String>,
) -> Vec<PlatformTarget> {
    let mut out: Vec<PlatformTarget> = Vec::new();
    for u in &merge.updates {
        let component = deps.get(&u.id).map_or_else(|| component_of(&u.id), |d| d.component);
        match component {
            Component::K3s => {
                let plan = plan_of(&u.id);
                let existing = out.iter_mut().find_map(|t| match t {
                    PlatformTarget::K3s { version, plans } if *version == u.to => Some(plans),
                    _ => None,
                });
                match existing {
                    Some(plans) => plans.extend(plan),
                    None => out.push(PlatformTarget::K3s { version: u.to.clone(), plans: plan.into_iter().collect() }),
                }
            }
            Component::Longhorn => {
                out.push(PlatformTarget::Longhorn { namespace: LONGHORN_NAMESPACE.to_string(), version: u.to.clone() })
            }
            Component::Flux => {
                let images =
                    u.id.strip_prefix("flux-components/")
                        .and_then(|dir| {
                            ["gotk-components.yaml", "gotk-components.yml"]
                                .iter()
                                .find_map(|file| read(format!("{dir}/{file}").trim_start_matches('/')))
                        })
                        .map(|text| flux_images(&text))
                        .unwrap_or_default();
                out.push(PlatformTarget::Flux { namespace: flux_namespace.to_string(), version: u.to.clone(), images });
            }
            Component::App => {}
        }
    }
    out
}

/// `(namespace, name)` of a `plan/<namespace>/<name>` id.
fn plan_of(id: &str) -> Option<(String, String)> {
    let (ns, name) = id.strip_prefix("plan/")?.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::Update;

    fn merge(updates: &[(&str, &str, &str)]) -> Merge {
        Merge {
            commit: "c".repeat(40),
            parent: None,
            is_merge_commit: false,
            merged_at: jiff::Timestamp::UNIX_EPOCH,
            updates: updates
                .iter()
                .map(|(id, from, to)| Update { id: id.to_string(), from: from.to_string(), to: to.to_string() })
                .collect(),
            reverts: Vec::new(),
            title: String::new(),
            files: Vec::new(),
        }
    }

    #[test]
    fn two_plans_at_one_version_are_one_k3s_target() {
        let m = merge(&[
            ("plan/system-upgrade/k3s-server", "v1.29.4+k3s1", "v1.30.4+k3s1"),
            ("plan/system-upgrade/k3s-agent", "v1.29.4+k3s1", "v1.30.4+k3s1"),
            ("helmrelease/apps/podinfo", "6.5.3", "6.5.4"),
        ]);
        let t = targets(&m, &BTreeMap::new(), "flux-system", &|_| None);
        assert_eq!(
            t,
            vec![PlatformTarget::K3s {
                version: "v1.30.4+k3s1".into(),
                plans: vec![
                    ("system-upgrade".into(), "k3s-server".into()),
                    ("system-upgrade".into(), "k3s-agent".into())
                ],
            }]
        );
    }

    #[test]
    fn a_flux_target_expects_the_images_of_the_merged_components_file() {
        let m = merge(&[("flux-components/clusters/home/flux-system", "v2.3.0", "v2.4.0")]);
        let file = "# Flux Version: v2.4.0\n        image: ghcr.io/fluxcd/helm-controller:v1.1.0\n        image: \"ghcr.io/fluxcd/source-controller:v1.4.1\"\n        image: ghcr.io/fluxcd/helm-controller:v1.1.0\n        image: busybox:1\n";
        let read = |path: &str| (path == "clusters/home/flux-system/gotk-components.yaml").then(|| file.to_string());
        let t = targets(&m, &BTreeMap::new(), "flux-system", &read);
        assert_eq!(
            t,
            vec![PlatformTarget::Flux {
                namespace: "flux-system".into(),
                version: "v2.4.0".into(),
                images: vec![
                    "ghcr.io/fluxcd/helm-controller:v1.1.0".into(),
                    "ghcr.io/fluxcd/source-controller:v1.4.1".into()
                ],
            }]
        );
    }

    #[test]
    fn longhorn_is_a_target_in_its_namespace() {
        let m = merge(&[("helmrelease/longhorn-system/longhorn", "1.6.2", "1.7.1")]);
        let t = targets(&m, &BTreeMap::new(), "flux-system", &|_| None);
        assert_eq!(t, vec![PlatformTarget::Longhorn { namespace: "longhorn-system".into(), version: "1.7.1".into() }]);
    }

    #[test]
    fn images_split_into_repository_and_tag() {
        assert_eq!(
            split_image("ghcr.io/fluxcd/helm-controller:v1.1.0"),
            ("ghcr.io/fluxcd/helm-controller", Some("v1.1.0"))
        );
        assert_eq!(
            split_image("registry:5000/longhornio/longhorn-manager"),
            ("registry:5000/longhornio/longhorn-manager", None)
        );
        assert_eq!(image_name("docker.io/longhornio/longhorn-manager:v1.7.1@sha256:ab"), "longhorn-manager");
    }
}
