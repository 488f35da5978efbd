//! Workloads, pods and events as the health soak sees them: k8s-openapi's typed objects narrowed
//! to the evidence types (rollout counters, container states, warning events). Pure: no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod as KubePod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::verify::evidence::{ContainerState, KubeEvent, Pod, Workload, WorkloadKind};

/// The label helm-controller puts on every object of a release: the HelmRelease's name.
pub const RELEASE_NAME_LABEL: &str = "helm.toolkit.fluxcd.io/name";
/// The label helm-controller puts on every object of a release: the HelmRelease's namespace.
pub const RELEASE_NAMESPACE_LABEL: &str = "helm.toolkit.fluxcd.io/namespace";

/// The label selector for the objects of HelmRelease `namespace/name`.
pub fn release_selector(namespace: &str, name: &str) -> String {
    format!("{RELEASE_NAME_LABEL}={name},{RELEASE_NAMESPACE_LABEL}={namespace}")
}

/// `namespace/name` of the HelmRelease an object belongs to, from its two labels.
fn release_of(meta: &ObjectMeta) -> Option<String> {
    let labels = meta.labels.as_ref()?;
    Some(format!("{}/{}", labels.get(RELEASE_NAMESPACE_LABEL)?, labels.get(RELEASE_NAME_LABEL)?))
}

fn images(template: &PodTemplateSpec) -> Vec<String> {
    template.spec.iter().flat_map(|s| &s.containers).filter_map(|c| c.image.clone()).collect()
}

fn workload(kind: WorkloadKind, meta: &ObjectMeta, template: &PodTemplateSpec) -> Workload {
    Workload {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        release: release_of(meta),
        generation: meta.generation,
        observed_generation: None,
        desired: 0,
        updated: 0,
        ready: 0,
        available: 0,
        images: images(template),
    }
}

/// A Deployment's rollout counters (`spec.replicas` defaults to 1).
pub fn from_deployment(d: &Deployment) -> Workload {
    let template = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    Workload {
        observed_generation: status.observed_generation,
        desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).into(),
        updated: status.updated_replicas.unwrap_or(0).into(),
        ready: status.ready_replicas.unwrap_or(0).into(),
        available: status.available_replicas.unwrap_or(0).into(),
        ..workload(WorkloadKind::Deployment, &d.metadata, &template)
    }
}

/// A StatefulSet's rollout counters (`spec.replicas` defaults to 1).
pub fn from_statefulset(s: &StatefulSet) -> Workload {
    let template = s.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let status = s.status.clone().unwrap_or_default();
    Workload {
        observed_generation: status.observed_generation,
        desired: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).into(),
        updated: status.updated_replicas.unwrap_or(0).into(),
        ready: status.ready_replicas.unwrap_or(0).into(),
        available: status.available_replicas.unwrap_or(0).into(),
        ..workload(WorkloadKind::StatefulSet, &s.metadata, &template)
    }
}

/// A DaemonSet's rollout counters, in the Workload's terms (see its doc).
pub fn from_daemonset(d: &DaemonSet) -> Workload {
    let template = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    Workload {
        observed_generation: status.observed_generation,
        desired: status.desired_number_scheduled.into(),
        updated: status.updated_number_scheduled.unwrap_or(0).into(),
        ready: status.number_ready.into(),
        available: status.number_available.unwrap_or(0).into(),
        ..workload(WorkloadKind::DaemonSet, &d.metadata, &template)
    }
}

/// The equality part of a workload's pod selector, as a label selector string (`None` when it
/// has none: such a selector would match every pod of the namespace).
pub fn pod_selector(selector: Option<&LabelSelector>) -> Option<String> {
    let labels: &BTreeMap<String, String> = selector?.match_labels.as_ref()?;
    if labels.is_empty() {
        return None;
    }
    Some(labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

fn container(status: &ContainerStatus) -> ContainerState {
    let state = status.state.clone().unwrap_or_default();
    let (name, reason, message) = if let Some(w) = state.waiting {
        ("Waiting", w.reason, w.message)
    } else if let Some(t) = state.terminated {
        ("Terminated", t.reason, t.message)
    } else if state.running.is_some() {
        ("Running", None, None)
    } else {
        ("Unknown", None, None)
    };
    ContainerState {
        name: status.name.clone(),
        state: name.to_string(),
        reason,
        message,
        restarts: status.restart_count.into(),
        ready: status.ready,
        last_terminated_at: status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .and_then(|t| t.0.to_string().parse().ok()),
    }
}

/// A pod of a release (`release` from the workload that owns it: pod templates rarely carry
/// helm-controller's labels, so the caller finds pods through their workload's selector).
pub fn from_pod(pod: &KubePod, release: Option<String>) -> Pod {
    let status = pod.status.clone().unwrap_or_default();
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    Pod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        release: release_of(&pod.metadata).or(release),
        phase: status.phase.unwrap_or_default(),
        containers: containers.map(container).collect(),
    }
}

/// `Kind/namespace/name` of the object an event is about.
pub fn involved(event: &Event) -> String {
    let o = &event.involved_object;
    format!(
        "{}/{}/{}",
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default()
    )
}

/// When an event last happened: `lastTimestamp`, else `eventTime`, else its creation.
pub fn event_time(event: &Event) -> Option<jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The evidence form of an event.
pub fn from_event(event: &Event) -> KubeEvent {
    KubeEvent {
        object: involved(event),
        type_: event.type_.clone().unwrap_or_default(),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
    }
}
