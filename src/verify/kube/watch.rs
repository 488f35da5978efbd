//! Waiting for the cluster to move: watches (never polling) on the source, its Kustomizations,
//! the changed HelmReleases and chart sources, and the workloads and pods of those releases,
//! until one of them changes or the time is up.
//!
//! kube's runtime watcher resumes a dropped watch from its last resourceVersion and relists
//! when that is too old; a change seen only in a relist still counts (resourceVersions are
//! compared). A watch that keeps failing is reported as blindness rather than retried forever.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

use ::kube::Resource;
use ::kube::api::{Api, DynamicObject};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;

use super::access::{Access, blind, watcher_error};
use super::flux::{HELM, KUSTOMIZE, SOURCE, api_resource, group_of, plural_of};
use super::{KubeSource, ObjectName, ServedVersions, Want, workloads};
use crate::verify::evidence::{Blind, FluxKind};

/// Consecutive failures of one watch (kube's backoff between them) after which the wait gives
/// up as blind.
const FAILURES_BEFORE_BLIND: usize = 3;

/// Why [`KubeSource::changed`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// This object (`Kind/namespace/name`) changed.
    Changed(String),
    /// Nothing changed before the timeout.
    TimedOut,
    /// The watches could not be kept open: what could not be watched, and why.
    Blind(Blind),
}

/// One step of a watch, reduced to what the wait needs.
pub(super) enum Tick {
    Quiet,
    Changed(String),
    Failed(Blind),
}

/// A watch's description, for the change it reports and the blindness it may leave.
pub(super) struct Watched {
    pub(super) server: String,
    pub(super) kind: &'static str,
    pub(super) access: Access,
    pub(super) what: String,
    /// (namespace, name) → resourceVersion as the last observation read it.
    pub(super) observed: HashMap<(String, String), String>,
}

impl KubeSource {
    /// Return when any watched object of `want` changes, or after `timeout`.
    pub async fn changed(&self, want: &Want, timeout: Duration) -> Wake {
        let versions = match self.served_versions().await {
            Ok(versions) => versions,
            Err(blind) => return Wake::Blind(blind),
        };
        let wait = async {
            let streams = match self.watches(want, &versions).await {
                Ok(streams) => streams,
                Err(blind) => return Wake::Blind(blind),
            };
            first_change(futures::stream::select_all(streams)).await
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(Wake::TimedOut)
    }

    async fn watches(&self, want: &Want, versions: &ServedVersions) -> Result<Vec<BoxStream<'static, Tick>>, Blind> {
        let mut streams = Vec::new();
        if versions.of(SOURCE).is_some() {
            streams.push(self.watch_flux(FluxKind::GitRepository, versions, &want.source));
            for (kind, name) in &want.chart_sources {
                streams.push(self.watch_flux(*kind, versions, name));
            }
        }
        if let Some(version) = versions.of(KUSTOMIZE) {
            let resource = api_resource(FluxKind::Kustomization, version);
            let api = Api::<DynamicObject>::all_with(self.client.clone(), &resource);
            let watched = Watched {
                server: self.server.clone(),
                kind: "Kustomization",
                access: Access::new("watch", "kustomizations", KUSTOMIZE.name, None),
                what: format!("the Kustomizations of GitRepository/{}/{}", want.source.namespace, want.source.name),
                observed: self.observed_of("Kustomization"),
            };
            let source = want.source.clone();
            let relevant = move |k: &DynamicObject| built_from(k, &source);
            streams.push(ticks_of(api, watcher::Config::default(), watched, relevant));
        }
        if versions.of(HELM).is_some() {
            for (name, _) in &want.helmreleases {
                streams.push(self.watch_flux(FluxKind::HelmRelease, versions, name));
            }
        }
        streams.extend(self.workload_watches(want).await?);
        streams.extend(self.platform_watches(want, versions));
        Ok(streams)
    }

    /// Watches on the workloads of the changed releases (by helm-controller's labels) and on
    /// the pods of those that exist now (by each workload's selector).
    async fn workload_watches(&self, want: &Want) -> Result<Vec<BoxStream<'static, Tick>>, Blind> {
        let mut streams = Vec::new();
        for (release, _) in &want.helmreleases {
            let labels = workloads::release_selector(&release.namespace, &release.name);
            let config = watcher::Config::default().labels(&labels);
            let of = |plural: &str, kind: &'static str| Watched {
                server: self.server.clone(),
                kind,
                access: Access::new("watch", plural, "apps", None),
                what: format!("the {plural} of HelmRelease/{}/{}", release.namespace, release.name),
                observed: self.observed_of(kind),
            };
            let client = self.client.clone();
            streams.push(ticks(
                Api::<Deployment>::all(client.clone()),
                config.clone(),
                of("deployments", "Deployment"),
            ));
            streams.push(ticks(
                Api::<StatefulSet>::all(client.clone()),
                config.clone(),
                of("statefulsets", "StatefulSet"),
            ));
            streams.push(ticks(Api::<DaemonSet>::all(client), config, of("daemonsets", "DaemonSet")));
        }
        let (found, mut blinds) = self.release_workloads(want).await;
        if !blinds.is_empty() {
            return Err(blinds.remove(0));
        }
        for found in found {
            let Some(selector) = found.pod_selector else { continue };
            let namespace = found.workload.namespace;
            let watched = Watched {
                server: self.server.clone(),
                kind: "Pod",
                access: Access::new("watch", "pods", "", Some(&namespace)),
                what: format!("the pods of {:?}/{namespace}/{}", found.workload.kind, found.workload.name),
                observed: self.observed_of("Pod"),
            };
            let api = Api::<Pod>::namespaced(self.client.clone(), &namespace);
            streams.push(ticks(api, watcher::Config::default().labels(&selector), watched));
        }
        Ok(streams)
    }

    /// A watch on one Flux object, by name.
    fn watch_flux(&self, kind: FluxKind, versions: &ServedVersions, name: &ObjectName) -> BoxStream<'static, Tick> {
        let group = group_of(kind);
        let version = versions.of(group).unwrap_or_default();
        let api =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &name.namespace, &api_resource(kind, version));
        let config = watcher::Config::default().fields(&format!("metadata.name={}", name.name));
        let watched = Watched {
            server: self.server.clone(),
            kind: kind.as_str(),
            access: Access::new("watch", plural_of(kind), group.name, Some(&name.namespace)),
            what: format!("{}/{}/{}", kind.as_str(), name.namespace, name.name),
            observed: self.observed_of(kind.as_str()),
        };
        ticks(api, config, watched)
    }
}

/// The watch of `api` as ticks: changes after the first full listing, by resourceVersion.
pub(super) fn ticks<K>(api: Api<K>, config: watcher::Config, watched: Watched) -> BoxStream<'static, Tick>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    ticks_of(api, config, watched, |_: &K| true)
}

/// As [`ticks`], counting only objects `relevant` accepts.
fn ticks_of<K, F>(api: Api<K>, config: watcher::Config, watched: Watched, relevant: F) -> BoxStream<'static, Tick>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(&K) -> bool + Send + 'static,
{
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    let mut listed = false;
    let mut failures = 0;
    let server = watched.server.clone();
    watcher::watcher(api, config)
        .default_backoff()
        .map(move |event| {
            let mut note = |object: &K, initial: bool| {
                if !relevant(object) {
                    return Tick::Quiet;
                }
                let meta = object.meta();
                let key = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
                let rv = meta.resource_version.clone().unwrap_or_default();
                // Before the first listing completes, compare with what the caller last observed:
                // a change between its observation and these watches is still a change.
                let before = if listed { seen.get(&key) } else { watched.observed.get(&key) }.cloned();
                seen.insert(key.clone(), rv.clone());
                let moved = before.as_ref().is_some_and(|b| *b != rv);
                if moved || (listed && (!initial || before.is_none())) {
                    Tick::Changed(format!("{}/{}/{}", watched.kind, key.0, key.1))
                } else {
                    Tick::Quiet
                }
            };
            if event.is_ok() {
                failures = 0;
            }
            match event {
                Ok(Event::Apply(object)) => note(&object, false),
                Ok(Event::InitApply(object)) => note(&object, true),
                Ok(Event::Delete(object)) if !relevant(&object) => Tick::Quiet,
                Ok(Event::Delete(object)) => {
                    let meta = object.meta();
                    let name = format!(
                        "{}/{}",
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default()
                    );
                    Tick::Changed(format!("{}/{name}", watched.kind))
                }
                Ok(Event::Init) => Tick::Quiet,
                Ok(Event::InitDone) => {
                    listed = true;
                    Tick::Quiet
                }
                Err(error) => {
                    failures += 1;
                    if failures >= FAILURES_BEFORE_BLIND {
                        Tick::Failed(failed(&watched, &server, &error))
                    } else {
                        Tick::Quiet
                    }
                }
            }
        })
        .boxed()
}

fn failed(watched: &Watched, server: &str, error: &watcher::Error) -> Blind {
    match watcher_error(error) {
        Some(kube_error) => blind(watched.what.clone(), &watched.access, server, kube_error),
        None => Blind { what: watched.what.clone(), reason: format!("the watch failed: {error}") },
    }
}

/// The first change of the merged watches, or the blindness of one that kept failing.
async fn first_change(mut ticks: futures::stream::SelectAll<BoxStream<'static, Tick>>) -> Wake {
    while let Some(tick) = ticks.next().await {
        match tick {
            Tick::Quiet => {}
            Tick::Changed(what) => return Wake::Changed(what),
            Tick::Failed(blind) => return Wake::Blind(blind),
        }
    }
    std::future::pending().await
}

/// Whether a Kustomization's sourceRef is the GitRepository `source` (its namespace defaults to
/// the Kustomization's own).
fn built_from(kustomization: &DynamicObject, source: &ObjectName) -> bool {
    let reference = &kustomization.data["spec"]["sourceRef"];
    let namespace = reference["namespace"].as_str().or(kustomization.metadata.namespace.as_deref());
    reference["kind"].as_str() == Some("GitRepository")
        && reference["name"].as_str() == Some(source.name.as_str())
        && namespace == Some(source.namespace.as_str())
}
