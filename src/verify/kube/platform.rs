//! Platform health through the Kubernetes API: nodes and system-upgrade-controller Plans (k3s),
//! Longhorn's volumes, engine images and workloads, Flux's controller Deployments and every
//! Kustomization and HelmRelease (Flux), read only for the platform targets a merge has, and
//! watched the same way. It never decides; every refused or failed read is blindness.
//!
//! [`API_CALLS`] lists every call the verifier makes (platform and the rest), so the RBAC
//! shipped in `deploy/` can be tested against it.

use ::kube::api::{Api, DynamicObject, ListParams};
use ::kube::discovery::ApiResource;
use ::kube::runtime::watcher;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node as KubeNode;
use serde_json::Value;

use super::access::{Access, blind, is_not_found, is_unserved};
use super::flux::{FluxGroup, HELM, KUSTOMIZE, api_resource, flux_object};
use super::watch::{Tick, Watched, ticks};
use super::{KubeSource, ServedVersions, Want, workloads};
use crate::verify::evidence::{Blind, Condition, Evidence, FluxKind};
use crate::verify::platform::{EngineImage, FLUX_PART_OF, LonghornVolume, Node, Plan, PlatformTarget, VERSION_LABEL};

/// Longhorn's API group (volumes, engine images), read at the newest version served.
pub const LONGHORN: FluxGroup = FluxGroup { name: "longhorn.io", preferred: &["v1beta2", "v1beta1"] };
/// system-upgrade-controller's API group (Plans).
pub const UPGRADE: FluxGroup = FluxGroup { name: "upgrade.cattle.io", preferred: &["v1"] };

/// One kind of API call the verifier makes: what a ClusterRole must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCall {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// URL plural.
    pub resource: &'static str,
    /// Verbs used on it.
    pub verbs: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];

/// Every API call of `upkeep verify` against the cluster (discovery of `/api` and `/apis` aside):
/// the Flux objects it reads and nudges, the workloads, pods and events of changed releases,
/// and the platform (nodes, Plans, Longhorn). Patch is only ever the reconcile annotation of
/// sources.
pub const API_CALLS: &[ApiCall] = &[
    ApiCall {
        group: "source.toolkit.fluxcd.io",
        resource: "gitrepositories",
        verbs: &["get", "list", "watch", "patch"],
    },
    ApiCall {
        group: "source.toolkit.fluxcd.io",
        resource: "helmrepositories",
        verbs: &["get", "list", "watch", "patch"],
    },
    ApiCall {
        group: "source.toolkit.fluxcd.io",
        resource: "ocirepositories",
        verbs: &["get", "list", "watch", "patch"],
    },
    ApiCall { group: "kustomize.toolkit.fluxcd.io", resource: "kustomizations", verbs: READ },
    ApiCall { group: "helm.toolkit.fluxcd.io", resource: "helmreleases", verbs: READ },
    ApiCall { group: "apps", resource: "deployments", verbs: &["list", "watch"] },
    ApiCall { group: "apps", resource: "statefulsets", verbs: &["list", "watch"] },
    ApiCall { group: "apps", resource: "daemonsets", verbs: &["list", "watch"] },
    ApiCall { group: "", resource: "pods", verbs: &["list", "watch"] },
    ApiCall { group: "", resource: "events", verbs: &["list"] },
    ApiCall { group: "", resource: "nodes", verbs: &["list", "watch"] },
    ApiCall { group: "upgrade.cattle.io", resource: "plans", verbs: READ },
    ApiCall { group: "longhorn.io", resource: "volumes", verbs: &["list", "watch"] },
    ApiCall { group: "longhorn.io", resource: "engineimages", verbs: &["list", "watch"] },
];

fn resource(group: FluxGroup, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.name.into(),
        version: version.into(),
        api_version: format!("{}/{version}", group.name),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn conditions(v: &Value) -> Vec<Condition> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// A core Node as the k3s rules see it.
pub fn node(n: &KubeNode) -> Node {
    let status = n.status.clone().unwrap_or_default();
    let ready = status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").map(|c| Condition {
        type_: c.type_,
        status: c.status,
        reason: c.reason.unwrap_or_default(),
        message: c.message.unwrap_or_default(),
        last_transition_time: c.last_transition_time.map(|t| t.0.to_string()),
    });
    Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        ready,
        kubelet_version: status.node_info.map(|i| i.kubelet_version).unwrap_or_default(),
        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

/// A Plan's JSON as the k3s rules see it.
pub fn plan(o: &Value) -> Plan {
    let s = &o["status"];
    Plan {
        namespace: text(&o["metadata"]["namespace"]),
        name: text(&o["metadata"]["name"]),
        version: o["spec"]["version"].as_str().map(str::to_string),
        latest_version: s["latestVersion"].as_str().map(str::to_string),
        conditions: conditions(&s["conditions"]),
        applying: s["applying"].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default(),
    }
}

/// A Longhorn volume's JSON.
pub fn volume(o: &Value) -> LonghornVolume {
    LonghornVolume {
        namespace: text(&o["metadata"]["namespace"]),
        name: text(&o["metadata"]["name"]),
        state: text(&o["status"]["state"]),
        robustness: text(&o["status"]["robustness"]),
    }
}

/// A Longhorn engine image's JSON.
pub fn engine_image(o: &Value) -> EngineImage {
    EngineImage {
        name: text(&o["metadata"]["name"]),
        image: text(&o["spec"]["image"]),
        state: text(&o["status"]["state"]),
    }
}

/// Whether a Flux object is suspended (`spec.suspend: true`): no controller reconciles it, so
/// its conditions say nothing about the new controllers, whatever they are.
pub fn suspended(o: &DynamicObject) -> bool {
    o.data["spec"]["suspend"].as_bool() == Some(true)
}

impl KubeSource {
    /// Read what the platform targets of `want` need into `evidence.platform`.
    pub(super) async fn observe_platform(&self, evidence: &mut Evidence, want: &Want, versions: &ServedVersions) {
        for target in &want.platform {
            match target {
                PlatformTarget::K3s { plans, .. } => {
                    self.read_nodes(evidence).await;
                    self.read_plans(evidence, versions, plans).await;
                }
                PlatformTarget::Longhorn { namespace, .. } => {
                    self.read_longhorn(evidence, versions, namespace).await;
                    self.namespace_workloads(evidence, namespace, None).await;
                }
                PlatformTarget::Flux { namespace, .. } => {
                    self.namespace_workloads(evidence, namespace, Some(FLUX_PART_OF)).await;
                    self.read_all_flux(evidence, versions).await;
                }
            }
        }
    }

    fn platform_unserved(&self, group: FluxGroup, what: &str) -> Blind {
        Blind {
            what: format!("{} on {}", group.name, self.server),
            reason: format!("the API server serves no version of {}: is {what} installed?", group.name),
        }
    }

    async fn read_nodes(&self, evidence: &mut Evidence) {
        if !evidence.platform.nodes.is_empty() {
            return;
        }
        let api: Api<KubeNode> = Api::all(self.client.clone());
        let access = Access::new("list", "nodes", "", None);
        match self.list(api, &ListParams::default(), &access, "the nodes".into()).await {
            Ok(nodes) => {
                for n in &nodes {
                    self.remember("Node", &n.metadata);
                }
                evidence.platform.nodes = nodes.iter().map(node).collect();
            }
            Err(b) => evidence.blind.push(b),
        }
    }

    async fn read_plans(&self, evidence: &mut Evidence, versions: &ServedVersions, plans: &[(String, String)]) {
        let Some(version) = versions.of(UPGRADE) else {
            evidence.blind.push(self.platform_unserved(UPGRADE, "the system-upgrade-controller"));
            return;
        };
        for (namespace, name) in plans {
            let reference = format!("Plan/{namespace}/{name}");
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &resource(UPGRADE, version, "Plan", "plans"));
            match api.get(name).await {
                Ok(o) => {
                    self.remember("Plan", &o.metadata);
                    evidence.platform.plans.push(plan(&serde_json::to_value(&o).unwrap_or_default()));
                }
                Err(e) if is_unserved(&e) => {
                    evidence.blind.push(self.platform_unserved(UPGRADE, "the system-upgrade-controller"))
                }
                Err(e) if is_not_found(&e) => evidence.missing.push(reference),
                Err(e) => {
                    let access = Access::new("get", "plans", UPGRADE.name, Some(namespace));
                    evidence.blind.push(blind(reference, &access, &self.server, &e));
                }
            }
        }
    }

    /// Longhorn's volumes and engine images in `namespace`, at the served version of longhorn.io.
    async fn read_longhorn(&self, evidence: &mut Evidence, versions: &ServedVersions, namespace: &str) {
        let Some(version) = versions.of(LONGHORN) else {
            evidence.blind.push(self.platform_unserved(LONGHORN, "Longhorn"));
            return;
        };
        for (kind, plural) in [("Volume", "volumes"), ("EngineImage", "engineimages")] {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &resource(LONGHORN, version, kind, plural));
            let access = Access::new("list", plural, LONGHORN.name, Some(namespace));
            let what = format!("the Longhorn {plural} of {namespace}");
            match self.list(api, &ListParams::default(), &access, what).await {
                Ok(items) => {
                    for o in &items {
                        self.remember(kind, &o.metadata);
                        let json = serde_json::to_value(o).unwrap_or_default();
                        match kind {
                            "Volume" => evidence.platform.volumes.push(volume(&json)),
                            _ => evidence.platform.engine_images.push(engine_image(&json)),
                        }
                    }
                }
                Err(b) => evidence.blind.push(b),
            }
        }
    }

    /// The Deployments and DaemonSets of a platform namespace (optionally by label), with their
    /// version labels.
    async fn namespace_workloads(&self, evidence: &mut Evidence, namespace: &str, labels: Option<&str>) {
        let params = labels.map_or_else(ListParams::default, |l| ListParams::default().labels(l));
        let what = |plural: &str| format!("the {plural} of namespace {namespace}");
        let access = |plural: &str| Access::new("list", plural, "apps", Some(namespace));
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        match self.list(api, &params, &access("deployments"), what("deployments")).await {
            Ok(items) => {
                for d in &items {
                    self.remember("Deployment", &d.metadata);
                    self.platform_workload(evidence, workloads::from_deployment(d), &d.metadata);
                }
            }
            Err(b) => evidence.blind.push(b),
        }
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
        match self.list(api, &params, &access("daemonsets"), what("daemonsets")).await {
            Ok(items) => {
                for d in &items {
                    self.remember("DaemonSet", &d.metadata);
                    self.platform_workload(evidence, workloads::from_daemonset(d), &d.metadata);
                }
            }
            Err(b) => evidence.blind.push(b),
        }
    }

    fn platform_workload(
        &self,
        evidence: &mut Evidence,
        w: crate::verify::evidence::Workload,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) {
        let reference = format!("{:?}/{}/{}", w.kind, w.namespace, w.name);
        if let Some(version) = meta.labels.as_ref().and_then(|l| l.get(VERSION_LABEL)) {
            evidence.platform.version_labels.insert(reference, version.clone());
        }
        evidence.platform.workloads.push(w);
    }

    /// Every Kustomization and HelmRelease in the cluster but the suspended ones: after a Flux
    /// upgrade, all of them must still reconcile.
    async fn read_all_flux(&self, evidence: &mut Evidence, versions: &ServedVersions) {
        for (kind, group, plural) in
            [(FluxKind::Kustomization, KUSTOMIZE, "kustomizations"), (FluxKind::HelmRelease, HELM, "helmreleases")]
        {
            let Some(version) = versions.of(group) else {
                evidence.blind.push(self.unserved(group));
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &api_resource(kind, version));
            let access = Access::new("list", plural, group.name, None);
            let what = format!("every {} in the cluster", kind.as_str());
            match self.list(api, &ListParams::default(), &access, what).await {
                Ok(items) => {
                    for o in items.iter().filter(|o| !suspended(o)) {
                        self.remember(kind.as_str(), &o.metadata);
                        let parsed = serde_json::to_value(o).and_then(|json| flux_object(kind, json));
                        match parsed {
                            Ok(object) => evidence.platform.flux_objects.push(object),
                            Err(e) => evidence.blind.push(Blind {
                                what: format!(
                                    "{}/{}/{}",
                                    kind.as_str(),
                                    o.metadata.namespace.clone().unwrap_or_default(),
                                    o.metadata.name.clone().unwrap_or_default()
                                ),
                                reason: format!("the API server {} served fields upkeep cannot read: {e}", self.server),
                            }),
                        }
                    }
                }
                Err(b) => evidence.blind.push(b),
            }
        }
    }

    /// Watches on what [`KubeSource::observe_platform`] reads, so a node coming back or a
    /// volume healing wakes the verifier at once.
    pub(super) fn platform_watches(&self, want: &Want, versions: &ServedVersions) -> Vec<BoxStream<'static, Tick>> {
        let mut streams = Vec::new();
        let watched = |kind: &'static str, plural: &str, group: &str, namespace: Option<&str>, what: String| Watched {
            server: self.server.clone(),
            kind,
            access: Access::new("watch", plural, group, namespace),
            what,
            observed: self.observed_of(kind),
        };
        let all = watcher::Config::default();
        for target in &want.platform {
            match target {
                PlatformTarget::K3s { plans, .. } => {
                    let w = watched("Node", "nodes", "", None, "the nodes".into());
                    streams.push(ticks(Api::<KubeNode>::all(self.client.clone()), all.clone(), w));
                    let Some(version) = versions.of(UPGRADE) else { continue };
                    for (namespace, name) in plans {
                        let api = Api::<DynamicObject>::namespaced_with(
                            self.client.clone(),
                            namespace,
                            &resource(UPGRADE, version, "Plan", "plans"),
                        );
                        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
                        let w =
                            watched("Plan", "plans", UPGRADE.name, Some(namespace), format!("Plan/{namespace}/{name}"));
                        streams.push(ticks(api, config, w));
                    }
                }
                PlatformTarget::Longhorn { namespace, .. } => {
                    if let Some(version) = versions.of(LONGHORN) {
                        for (kind, plural) in [("Volume", "volumes"), ("EngineImage", "engineimages")] {
                            let api = Api::<DynamicObject>::namespaced_with(
                                self.client.clone(),
                                namespace,
                                &resource(LONGHORN, version, kind, plural),
                            );
                            let w = watched(
                                kind,
                                plural,
                                LONGHORN.name,
                                Some(namespace),
                                format!("the {plural} of {namespace}"),
                            );
                            streams.push(ticks(api, all.clone(), w));
                        }
                    }
                    streams.extend(self.namespace_watches(namespace, all.clone()));
                }
                PlatformTarget::Flux { namespace, .. } => {
                    streams.extend(self.namespace_watches(namespace, all.clone().labels(FLUX_PART_OF)));
                    for (kind, group, plural) in [
                        (FluxKind::Kustomization, KUSTOMIZE, "kustomizations"),
                        (FluxKind::HelmRelease, HELM, "helmreleases"),
                    ] {
                        let Some(version) = versions.of(group) else { continue };
                        let api = Api::<DynamicObject>::all_with(self.client.clone(), &api_resource(kind, version));
                        let w = watched(kind.as_str(), plural, group.name, None, format!("every {}", kind.as_str()));
                        streams.push(ticks(api, all.clone(), w));
                    }
                }
            }
        }
        streams
    }

    fn namespace_watches(&self, namespace: &str, config: watcher::Config) -> Vec<BoxStream<'static, Tick>> {
        let of = |kind: &'static str, plural: &str| Watched {
            server: self.server.clone(),
            kind,
            access: Access::new("watch", plural, "apps", Some(namespace)),
            what: format!("the {plural} of namespace {namespace}"),
            observed: self.observed_of(kind),
        };
        vec![
            ticks(
                Api::<Deployment>::namespaced(self.client.clone(), namespace),
                config.clone(),
                of("Deployment", "deployments"),
            ),
            ticks(Api::<DaemonSet>::namespaced(self.client.clone(), namespace), config, of("DaemonSet", "daemonsets")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plan_reads_its_complete_condition_and_the_nodes_it_applies_on() {
        let p = plan(&json!({
            "metadata": {"name": "k3s-agent", "namespace": "system-upgrade"},
            "spec": {"version": "v1.30.4+k3s1"},
            "status": {"latestVersion": "v1.30.4-k3s1", "applying": ["k3s-agent-1"],
                "conditions": [{"type": "Complete", "status": "False", "reason": "JobFailed", "message": "Job was active longer than specified deadline", "lastUpdateTime": "2024-09-01T10:00:00Z"}]}
        }));
        assert_eq!(p.latest_version.as_deref(), Some("v1.30.4-k3s1"));
        assert_eq!(p.applying, vec!["k3s-agent-1".to_string()]);
        assert_eq!(p.conditions[0].reason, "JobFailed");
    }

    #[test]
    fn a_suspended_flux_object_is_left_out() {
        let object = |spec: Value| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "metadata": {"name": "apps", "namespace": "flux-system"}, "spec": spec}))
            .unwrap()
        };
        assert!(suspended(&object(json!({"suspend": true, "path": "./apps"}))));
        assert!(!suspended(&object(json!({"suspend": false}))));
        assert!(!suspended(&object(json!({"path": "./apps"}))));
    }

    #[test]
    fn the_api_calls_name_every_platform_resource() {
        for (group, resource) in
            [("", "nodes"), ("upgrade.cattle.io", "plans"), ("longhorn.io", "volumes"), ("longhorn.io", "engineimages")]
        {
            assert!(API_CALLS.iter().any(|c| c.group == group && c.resource == resource), "{group}/{resource}");
        }
    }
}
