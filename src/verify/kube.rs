//! The Kubernetes side of the verifier: read, through the `kube` crate, what Flux and the
//! workload controllers say about one merge, and hand it over as [`Evidence`]. It never decides.
//!
//! It connects like kubectl does (an explicit kubeconfig, else `KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account; plain `http://` servers such as
//! `kubectl proxy` work), reads Flux objects at the newest API version the server serves, and
//! turns every failed read into a [`Blind`] that names what to grant or what did not answer,
//! because upkeep never reverts on its own blindness.

pub mod flux;
pub mod platform;
pub mod workloads;

mod access;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Mutex;

use ::kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config, Resource};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod as KubePod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use self::access::{Access, blind, chain, discovery_blind, is_not_found, is_unserved};
use self::flux::{FluxGroup, HELM, KUSTOMIZE, REQUESTED_AT, SOURCE, api_resource, flux_object, group_of, plural_of};
use crate::verify::evidence::{Blind, Evidence, FluxKind, FluxObject, KustomizationState, Workload};
use crate::verify::platform::PlatformTarget;

pub use self::watch::Wake;

/// How to reach the cluster. Both `None`: `KUBECONFIG`, `~/.kube/config`, then in-cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeOptions {
    /// An explicit kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig other than its current one.
    pub context: Option<String>,
}

/// A namespaced object's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectName {
    /// `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> ObjectName {
        ObjectName { namespace: namespace.into(), name: name.into() }
    }
}

/// What to observe for one merge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Want {
    /// The GitRepository Flux syncs this repository from (usually `flux-system/flux-system`).
    /// Every Kustomization whose sourceRef is this GitRepository is reported.
    pub source: ObjectName,
    /// The HelmReleases the merge changed, with the chart version it set.
    pub helmreleases: Vec<(ObjectName, String)>,
    /// The sources of the changed charts (HelmRepository, OCIRepository).
    pub chart_sources: Vec<(FluxKind, ObjectName)>,
    /// The platform components the merge upgrades: their health is read too.
    pub platform: Vec<PlatformTarget>,
}

/// The API version read for each Flux group; `None` when the server does not serve the group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServedVersions {
    /// `source.toolkit.fluxcd.io`.
    pub source: Option<String>,
    /// `kustomize.toolkit.fluxcd.io`.
    pub kustomize: Option<String>,
    /// `helm.toolkit.fluxcd.io`.
    pub helm: Option<String>,
    /// `longhorn.io` (Longhorn's volumes and engine images).
    pub longhorn: Option<String>,
    /// `upgrade.cattle.io` (system-upgrade-controller's Plans).
    pub upgrade: Option<String>,
}

impl ServedVersions {
    /// The version of `group`.
    pub fn of(&self, group: FluxGroup) -> Option<&str> {
        match group.name {
            n if n == SOURCE.name => self.source.as_deref(),
            n if n == KUSTOMIZE.name => self.kustomize.as_deref(),
            n if n == platform::LONGHORN.name => self.longhorn.as_deref(),
            n if n == platform::UPGRADE.name => self.upgrade.as_deref(),
            _ => self.helm.as_deref(),
        }
    }
}

/// `(Kind, namespace, name)` → the resourceVersion the last [`KubeSource::observe`] read.
type Observed = HashMap<(String, String, String), String>;

/// A connection to one cluster's API server, with its discovery cached.
pub struct KubeSource {
    client: Client,
    server: String,
    /// Discovery's answer, asked again after a read finds its version gone (Flux upgraded).
    versions: Mutex<Option<ServedVersions>>,
    /// What the last observation saw, so that [`KubeSource::changed`] notices a change that
    /// landed between that observation and the start of its watches.
    observed: Mutex<Observed>,
}

/// A workload of a changed release, with the selector of its pods.
struct Found {
    workload: Workload,
    pod_selector: Option<String>,
    resource_version: Option<String>,
}

/// Build a client from the options. No request is made yet: an unreachable server shows as
/// blindness on the first read, not here.
pub async fn connect(options: &KubeOptions) -> Result<KubeSource, Blind> {
    let config = load_config(options).await?;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let client = Client::try_from(config).map_err(|e| Blind {
        what: format!("the API server {server}"),
        reason: format!("cannot build a Kubernetes client: {}", chain(&e)),
    })?;
    Ok(KubeSource { client, server, versions: Mutex::new(None), observed: Mutex::new(HashMap::new()) })
}

async fn load_config(options: &KubeOptions) -> Result<Config, Blind> {
    let kube_options = KubeConfigOptions { context: options.context.clone(), ..KubeConfigOptions::default() };
    match (&options.kubeconfig, &options.context) {
        (Some(path), _) => {
            let what = || format!("the kubeconfig {}", path.display());
            let file = Kubeconfig::read_from(path).map_err(|e| Blind { what: what(), reason: chain(&e) })?;
            Config::from_custom_kubeconfig(file, &kube_options)
                .await
                .map_err(|e| Blind { what: what(), reason: chain(&e) })
        }
        (None, Some(context)) => Config::from_kubeconfig(&kube_options)
            .await
            .map_err(|e| Blind { what: format!("the kubeconfig context {context}"), reason: chain(&e) }),
        (None, None) => Config::infer().await.map_err(|e| Blind {
            what: "the Kubernetes configuration".into(),
            reason: format!("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a cluster: {}", chain(&e)),
        }),
    }
}

impl KubeSource {
    /// The API server's URL, as reports name it.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The version each Flux group is read at, from the server's discovery (asked once, and
    /// again only after a read finds the chosen version no longer served).
    pub async fn served_versions(&self) -> Result<ServedVersions, Blind> {
        if let Some(versions) = self.cached_versions().clone() {
            return Ok(versions);
        }
        let groups = self.client.list_api_groups().await.map_err(|e| discovery_blind(&self.server, &e))?;
        let pick = |group: FluxGroup| {
            let found = groups.groups.iter().find(|g| g.name == group.name)?;
            let served: Vec<String> = found.versions.iter().map(|v| v.version.clone()).collect();
            let preferred = found.preferred_version.as_ref().map(|v| v.version.as_str());
            flux::choose_version(group, &served, preferred)
        };
        let versions = ServedVersions {
            source: pick(SOURCE),
            kustomize: pick(KUSTOMIZE),
            helm: pick(HELM),
            longhorn: pick(platform::LONGHORN),
            upgrade: pick(platform::UPGRADE),
        };
        *self.cached_versions() = Some(versions.clone());
        Ok(versions)
    }

    fn cached_versions(&self) -> std::sync::MutexGuard<'_, Option<ServedVersions>> {
        self.versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Everything the verdict needs about `want`, now. Failed reads are in `blind` (or, for the
    /// report-only events, `gaps`); nothing here panics or stops at the first failure.
    pub async fn observe(&self, want: &Want) -> Evidence {
        let mut evidence = Evidence { observed_at: Some(jiff::Timestamp::now()), ..Evidence::default() };
        self.memory().clear();
        let versions = match self.served_versions().await {
            Ok(versions) => versions,
            Err(blind) => {
                evidence.blind.push(blind);
                return evidence;
            }
        };
        evidence.source = self.read_flux(&mut evidence, &versions, FluxKind::GitRepository, &want.source).await;
        let kustomizations = self.read_kustomizations(&mut evidence, &versions, &want.source).await;
        evidence.kustomizations = kustomizations
            .into_iter()
            .map(|object| KustomizationState { object, applied_merge: None, attempted_merge: None })
            .collect();
        for (name, version) in &want.helmreleases {
            if let Some(release) = self.read_flux(&mut evidence, &versions, FluxKind::HelmRelease, name).await {
                evidence.helmreleases.push((release, version.clone()));
            }
        }
        for (kind, name) in &want.chart_sources {
            if let Some(source) = self.read_flux(&mut evidence, &versions, *kind, name).await {
                evidence.chart_sources.push(source);
            }
        }
        let (found, blind) = self.release_workloads(want).await;
        evidence.blind.extend(blind);
        for f in &found {
            let key = (format!("{:?}", f.workload.kind), f.workload.namespace.clone(), f.workload.name.clone());
            self.memory().insert(key, f.resource_version.clone().unwrap_or_default());
        }
        self.read_pods(&mut evidence, &found).await;
        evidence.workloads = found.into_iter().map(|f| f.workload).collect();
        self.observe_platform(&mut evidence, want, &versions).await;
        self.read_events(&mut evidence).await;
        evidence
    }

    /// Ask Flux to reconcile `object` now: a merge patch of `reconcile.fluxcd.io/requestedAt`,
    /// as `flux reconcile` does. Without RBAC to patch, the blindness says to wait instead.
    pub async fn nudge(&self, object: &FluxObject, at: jiff::Timestamp) -> Result<(), Blind> {
        let group = group_of(object.kind);
        let version = match object.api_version.rsplit_once('/') {
            Some((_, version)) => version.to_string(),
            None => self.served_versions().await?.of(group).map(str::to_string).ok_or_else(|| self.unserved(group))?,
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &object.namespace, &api_resource(object.kind, &version));
        let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT: at.to_string()}}});
        match api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let access = Access::new("patch", plural_of(object.kind), group.name, Some(&object.namespace));
                let mut blind = blind(object.reference(), &access, &self.server, &error);
                blind.reason.push_str("; until then upkeep waits for the source's own interval");
                Err(blind)
            }
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Observed> {
        // A poisoned memory only means a panic elsewhere; what it holds is still a valid hint.
        self.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, kind: &str, meta: &ObjectMeta) {
        let key = (kind.to_string(), meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
        self.memory().insert(key, meta.resource_version.clone().unwrap_or_default());
    }

    /// The resourceVersions the last observation read for `kind`, by (namespace, name).
    fn observed_of(&self, kind: &str) -> HashMap<(String, String), String> {
        let memory = self.memory();
        memory
            .iter()
            .filter(|((k, _, _), _)| k == kind)
            .map(|((_, ns, n), rv)| ((ns.clone(), n.clone()), rv.clone()))
            .collect()
    }

    fn unserved(&self, group: FluxGroup) -> Blind {
        Blind {
            what: format!("{} on {}", group.name, self.server),
            reason: format!(
                "the API server serves no version of {} that upkeep reads ({}): is this Flux controller installed?",
                group.name,
                group.preferred.join(", ")
            ),
        }
    }

    /// Get one Flux object; 404 goes to `missing`, other failures to `blind`.
    async fn read_flux(
        &self,
        evidence: &mut Evidence,
        versions: &ServedVersions,
        kind: FluxKind,
        name: &ObjectName,
    ) -> Option<FluxObject> {
        let group = group_of(kind);
        let reference = format!("{}/{}/{}", kind.as_str(), name.namespace, name.name);
        let Some(version) = versions.of(group) else {
            evidence.blind.push(self.unserved(group));
            return None;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &name.namespace, &api_resource(kind, version));
        match api.get(&name.name).await {
            Ok(object) => self.narrow(evidence, kind, reference, &object),
            Err(error) if is_unserved(&error) => {
                *self.cached_versions() = None;
                let reason = format!(
                    "{}/{version} is no longer served by {}: discovery is asked again on the next read",
                    group.name, self.server
                );
                evidence.blind.push(Blind { what: reference, reason });
                None
            }
            Err(error) if is_not_found(&error) => {
                evidence.missing.push(reference);
                None
            }
            Err(error) => {
                let access = Access::new("get", plural_of(kind), group.name, Some(&name.namespace));
                evidence.blind.push(blind(reference, &access, &self.server, &error));
                None
            }
        }
    }

    /// A DynamicObject as a FluxObject; an object whose fields do not parse is blindness.
    fn narrow(
        &self,
        evidence: &mut Evidence,
        kind: FluxKind,
        reference: String,
        object: &DynamicObject,
    ) -> Option<FluxObject> {
        self.remember(kind.as_str(), &object.metadata);
        let parsed = serde_json::to_value(object).and_then(|json| flux_object(kind, json));
        match parsed {
            Ok(object) => Some(object),
            Err(error) => {
                let reason = format!("the API server {} served fields upkeep cannot read: {error}", self.server);
                evidence.blind.push(Blind { what: reference, reason });
                None
            }
        }
    }

    /// Every Kustomization, in any namespace, whose sourceRef is `source`.
    async fn read_kustomizations(
        &self,
        evidence: &mut Evidence,
        versions: &ServedVersions,
        source: &ObjectName,
    ) -> Vec<FluxObject> {
        let Some(version) = versions.of(KUSTOMIZE) else {
            evidence.blind.push(self.unserved(KUSTOMIZE));
            return Vec::new();
        };
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &api_resource(FluxKind::Kustomization, version));
        let access = Access::new("list", "kustomizations", KUSTOMIZE.name, None);
        let what = format!("the Kustomizations of GitRepository/{}/{}", source.namespace, source.name);
        let listed = match self.list(api, &ListParams::default(), &access, what).await {
            Ok(listed) => listed,
            Err(blind) => {
                evidence.blind.push(blind);
                return Vec::new();
            }
        };
        let wanted = format!("GitRepository/{}/{}", source.namespace, source.name);
        let mut kustomizations = Vec::new();
        for object in &listed {
            let reference = format!(
                "Kustomization/{}/{}",
                object.metadata.namespace.as_deref().unwrap_or_default(),
                object.metadata.name.as_deref().unwrap_or_default()
            );
            if let Some(k) = self.narrow(evidence, FluxKind::Kustomization, reference, object)
                && k.source_ref.as_deref() == Some(wanted.as_str())
            {
                kustomizations.push(k);
            }
        }
        kustomizations
    }

    /// List `api`, naming `what` and the RBAC rule when it fails.
    async fn list<K>(&self, api: Api<K>, params: &ListParams, access: &Access, what: String) -> Result<Vec<K>, Blind>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        match api.list(params).await {
            Ok(list) => Ok(list.items),
            Err(error) => Err(blind(what, access, &self.server, &error)),
        }
    }

    /// The Deployments, StatefulSets and DaemonSets of the changed releases (by helm-controller's
    /// two labels, in any namespace: a release may target another namespace), and the reads that
    /// failed.
    async fn release_workloads(&self, want: &Want) -> (Vec<Found>, Vec<Blind>) {
        let mut found = Vec::new();
        let mut blinds = Vec::new();
        for (release, _) in &want.helmreleases {
            let params = ListParams::default().labels(&workloads::release_selector(&release.namespace, &release.name));
            let what = |kind: &str| format!("the {kind} of HelmRelease/{}/{}", release.namespace, release.name);
            let client = &self.client;
            let access = |plural: &str| Access::new("list", plural, "apps", None);
            match self
                .list(Api::<Deployment>::all(client.clone()), &params, &access("deployments"), what("Deployments"))
                .await
            {
                Ok(items) => found.extend(items.iter().map(|d| Found {
                    workload: workloads::from_deployment(d),
                    pod_selector: workloads::pod_selector(d.spec.as_ref().map(|s| &s.selector)),
                    resource_version: d.metadata.resource_version.clone(),
                })),
                Err(blind) => blinds.push(blind),
            }
            match self
                .list(Api::<StatefulSet>::all(client.clone()), &params, &access("statefulsets"), what("StatefulSets"))
                .await
            {
                Ok(items) => found.extend(items.iter().map(|s| Found {
                    workload: workloads::from_statefulset(s),
                    pod_selector: workloads::pod_selector(s.spec.as_ref().map(|s| &s.selector)),
                    resource_version: s.metadata.resource_version.clone(),
                })),
                Err(blind) => blinds.push(blind),
            }
            match self
                .list(Api::<DaemonSet>::all(client.clone()), &params, &access("daemonsets"), what("DaemonSets"))
                .await
            {
                Ok(items) => found.extend(items.iter().map(|d| Found {
                    workload: workloads::from_daemonset(d),
                    pod_selector: workloads::pod_selector(d.spec.as_ref().map(|s| &s.selector)),
                    resource_version: d.metadata.resource_version.clone(),
                })),
                Err(blind) => blinds.push(blind),
            }
        }
        (found, blinds)
    }

    /// The pods of the workloads, through each workload's own selector (pod templates rarely
    /// carry helm-controller's labels), each pod once.
    async fn read_pods(&self, evidence: &mut Evidence, found: &[Found]) {
        let mut seen = BTreeSet::new();
        for Found { workload, pod_selector, .. } in found {
            let Some(selector) = pod_selector else { continue };
            let api: Api<KubePod> = Api::namespaced(self.client.clone(), &workload.namespace);
            let access = Access::new("list", "pods", "", Some(&workload.namespace));
            let what = format!("the pods of {:?}/{}/{}", workload.kind, workload.namespace, workload.name);
            match self.list(api, &ListParams::default().labels(selector), &access, what).await {
                Ok(pods) => {
                    for pod in &pods {
                        self.remember("Pod", &pod.metadata);
                        let pod = workloads::from_pod(pod, workload.release.clone());
                        if seen.insert((pod.namespace.clone(), pod.name.clone())) {
                            evidence.pods.push(pod);
                        }
                    }
                }
                Err(blind) => evidence.blind.push(blind),
            }
        }
    }

    /// Warning events about the observed objects, newest first. Report only: a failed read is a
    /// gap, not blindness.
    async fn read_events(&self, evidence: &mut Evidence) {
        let mut objects = BTreeSet::new();
        let flux = evidence.source.iter().chain(evidence.kustomizations.iter().map(|k| &k.object));
        for object in flux.chain(evidence.helmreleases.iter().map(|(h, _)| h)).chain(&evidence.chart_sources) {
            objects.insert(object.reference());
        }
        for w in &evidence.workloads {
            objects.insert(format!("{:?}/{}/{}", w.kind, w.namespace, w.name));
        }
        for p in &evidence.pods {
            objects.insert(format!("Pod/{}/{}", p.namespace, p.name));
        }
        let namespaces: BTreeSet<String> =
            objects.iter().filter_map(|o| o.split('/').nth(1).map(str::to_string)).collect();
        let mut events = Vec::new();
        for namespace in &namespaces {
            let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
            let access = Access::new("list", "events", "", Some(namespace));
            let what = format!("the events of namespace {namespace}");
            match self.list(api, &ListParams::default().fields("type=Warning"), &access, what).await {
                Ok(listed) => events.extend(listed.into_iter().filter(|e| objects.contains(&workloads::involved(e)))),
                Err(gap) => evidence.gaps.push(gap),
            }
        }
        events.sort_by_key(|e| std::cmp::Reverse(workloads::event_time(e)));
        evidence.events =
            events.iter().filter(|e| e.type_.as_deref() == Some("Warning")).map(workloads::from_event).collect();
    }
}
