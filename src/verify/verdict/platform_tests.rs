//! The platform rules, one test per rule, on plain values (no I/O).

use std::time::Duration;

use super::super::tests::{cond, t};
use super::super::{Deadlines, Expectation, Progress, Verdict, decide};
use super::*;
use crate::verify::evidence::{Blind, FluxKind, KustomizationState, WorkloadKind};
use crate::verify::platform::{EngineImage, LonghornVolume, Plan, PlatformEvidence};

const K3S_NEW: &str = "v1.30.4+k3s1";
const K3S_OLD: &str = "v1.29.4+k3s1";

fn ready_obj(kind: FluxKind, ns: &str, name: &str) -> FluxObject {
    FluxObject {
        generation: Some(1),
        observed_generation: Some(1),
        conditions: vec![cond("Ready", "True", "ReconciliationSucceeded", "ok")],
        ..FluxObject::named(kind, ns, name)
    }
}

/// The source and the Kustomization applying the change reconciled at the merge.
fn applied(platform: PlatformEvidence) -> Evidence {
    Evidence {
        source: Some(FluxObject {
            artifact_revision: Some("main@sha1:abc".into()),
            ..ready_obj(FluxKind::GitRepository, "flux-system", "flux-system")
        }),
        source_has_merge: Some(true),
        kustomizations: vec![KustomizationState {
            object: ready_obj(FluxKind::Kustomization, "flux-system", "infrastructure"),
            applied_merge: Some(true),
            attempted_merge: Some(true),
        }],
        platform,
        ..Evidence::default()
    }
}

fn expect(target: PlatformTarget) -> Expectation {
    Expectation { merged_at: t(0), releases: Vec::new(), platform: vec![target] }
}

fn k3s() -> PlatformTarget {
    PlatformTarget::K3s { version: K3S_NEW.into(), plans: vec![("system-upgrade".into(), "k3s-agent".into())] }
}

fn node(name: &str, kubelet: &str, ready: bool, cordoned: bool) -> Node {
    let c = if ready {
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")
    } else {
        cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    };
    Node { name: name.into(), ready: Some(c), kubelet_version: kubelet.into(), unschedulable: cordoned }
}

fn plan(latest: &str, complete: &str) -> Plan {
    Plan {
        namespace: "system-upgrade".into(),
        name: "k3s-agent".into(),
        version: Some(K3S_NEW.into()),
        latest_version: Some(latest.into()),
        conditions: vec![cond("Complete", complete, "", "")],
        applying: Vec::new(),
    }
}

fn k3s_evidence(nodes: Vec<Node>, plans: Vec<Plan>) -> Evidence {
    applied(PlatformEvidence { nodes, plans, ..PlatformEvidence::default() })
}

fn deadlines() -> Deadlines {
    Deadlines { timeout: Duration::from_secs(600), soak: Duration::from_secs(60), nudge_grace: Duration::from_secs(60) }
}

/// The verdict after the timeout and the nudge grace, from a pending state that already
/// nudged.
fn after_timeout(exp: &Expectation, ev: &Evidence) -> Verdict {
    let progress = Progress { nudged_at: Some(t(600)), ..Progress::default() };
    decide(exp, ev, &deadlines(), &progress, t(700)).0
}

fn rows_of(v: &Verdict) -> Vec<Row> {
    match v {
        Verdict::Failure { rows, .. } => rows.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_node_still_on_the_old_kubelet_waits_then_fails_naming_the_node() {
    let ev = k3s_evidence(
        vec![node("k3s-server-0", K3S_NEW, true, false), node("k3s-agent-1", K3S_OLD, true, false)],
        vec![plan(K3S_NEW, "True")],
    );
    let (v, _, _) = decide(&expect(k3s()), &ev, &deadlines(), &Progress::default(), t(10));
    assert!(matches!(&v, Verdict::Pending { reason, .. } if reason.contains("Node/k3s-agent-1")), "{v:?}");
    let failed = after_timeout(&expect(k3s()), &ev);
    assert!(
        matches!(&failed, Verdict::Failure { reason, .. } if reason.starts_with("the platform not healthy 10 min after the merge: Node/k3s-agent-1")),
        "{failed:?}"
    );
    let rows = rows_of(&failed);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].object, "Node/k3s-agent-1");
    assert_eq!(rows[0].reason, "NotUpgraded");
    assert!(rows[0].message.contains(K3S_OLD) && rows[0].message.contains("kubelet is posting ready status"));
}

#[test]
fn a_node_left_cordoned_is_named_with_its_condition() {
    let ev = k3s_evidence(vec![node("k3s-agent-1", K3S_NEW, true, true)], vec![plan(K3S_NEW, "True")]);
    let rows = rows_of(&after_timeout(&expect(k3s()), &ev));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].object.as_str(), rows[0].reason.as_str()), ("Node/k3s-agent-1", "Cordoned"));
}

#[test]
fn a_node_not_ready_is_named_with_its_condition_message() {
    let ev = k3s_evidence(vec![node("k3s-agent-1", K3S_NEW, false, false)], vec![plan(K3S_NEW, "True")]);
    let rows = rows_of(&after_timeout(&expect(k3s()), &ev));
    assert_eq!(rows[0].type_, "Ready");
    assert_eq!(rows[0].status, "Unknown");
    assert!(rows[0].message.contains("Kubelet stopped posting node status."), "{rows:?}");
}

#[test]
fn a_plan_complete_for_the_old_version_does_not_count() {
    let ev = k3s_evidence(vec![node("k3s-agent-1", K3S_NEW, true, false)], vec![plan("v1.29.4-k3s1", "True")]);
    let rows = waiting(&[k3s()], &ev, t(0));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].object.as_str(), rows[0].reason.as_str()), ("Plan/system-upgrade/k3s-agent", "NotResolved"));
    let not_complete =
        k3s_evidence(vec![node("k3s-agent-1", K3S_NEW, true, false)], vec![plan("v1.30.4-k3s1", "False")]);
    let rows = waiting(&[k3s()], &not_complete, t(0));
    assert_eq!(rows[0].type_, "Complete", "{rows:?}");
}

#[test]
fn upgraded_ready_uncordoned_nodes_and_complete_plans_succeed_after_the_soak() {
    let ev = k3s_evidence(
        vec![node("k3s-server-0", K3S_NEW, true, false), node("k3s-agent-1", "v1.30.4-k3s1", true, false)],
        vec![plan("v1.30.4-k3s1", "True")],
    );
    let progress = Progress { ready_since: Some(t(10)), ..Progress::default() };
    let (v, _, _) = decide(&expect(k3s()), &ev, &deadlines(), &progress, t(100));
    assert!(matches!(v, Verdict::Success { .. }), "{v:?}");
}

#[test]
fn refused_nodes_are_blindness_never_failure() {
    let mut ev = k3s_evidence(Vec::new(), vec![plan(K3S_NEW, "True")]);
    ev.blind.push(Blind { what: "the nodes".into(), reason: "forbidden: cannot list nodes".into() });
    let v = after_timeout(&expect(k3s()), &ev);
    assert!(matches!(v, Verdict::Pending { blind: true, .. }), "{v:?}");
}

fn longhorn() -> PlatformTarget {
    PlatformTarget::Longhorn { namespace: "longhorn-system".into(), version: "1.7.1".into() }
}

fn daemonset(name: &str, image: &str) -> Workload {
    Workload {
        kind: WorkloadKind::DaemonSet,
        namespace: "longhorn-system".into(),
        name: name.into(),
        release: None,
        generation: Some(2),
        observed_generation: Some(2),
        desired: 3,
        updated: 3,
        ready: 3,
        available: 3,
        images: vec![image.into()],
    }
}

fn volume(name: &str, robustness: &str) -> LonghornVolume {
    LonghornVolume {
        namespace: "longhorn-system".into(),
        name: name.into(),
        state: "attached".into(),
        robustness: robustness.into(),
    }
}

fn longhorn_evidence(manager: &str, volumes: Vec<LonghornVolume>, engine_state: &str) -> Evidence {
    applied(PlatformEvidence {
        workloads: vec![daemonset("longhorn-manager", manager)],
        volumes,
        engine_images: vec![EngineImage {
            name: "ei-ac2d5b6e".into(),
            image: "longhornio/longhorn-engine:v1.7.1".into(),
            state: engine_state.into(),
        }],
        ..PlatformEvidence::default()
    })
}

#[test]
fn a_degraded_volume_waits_and_fails_after_the_timeout() {
    let ev = longhorn_evidence("longhornio/longhorn-manager:v1.7.1", vec![volume("pvc-1", "degraded")], "deployed");
    assert!(failures(&[longhorn()], &ev, t(0)).is_empty());
    let rows = rows_of(&after_timeout(&expect(longhorn()), &ev));
    assert_eq!((rows[0].object.as_str(), rows[0].reason.as_str()), ("Volume/longhorn-system/pvc-1", "Degraded"));
}

#[test]
fn a_faulted_volume_fails_at_once_but_only_after_the_manager_is_upgraded() {
    let ev = longhorn_evidence("longhornio/longhorn-manager:v1.7.1", vec![volume("pvc-1", "faulted")], "deployed");
    let (v, _, _) = decide(&expect(longhorn()), &ev, &deadlines(), &Progress::default(), t(5));
    assert_eq!(rows_of(&v)[0].reason, "Faulted");
    let before = longhorn_evidence("longhornio/longhorn-manager:v1.6.2", vec![volume("pvc-1", "faulted")], "deployed");
    assert!(failures(&[longhorn()], &before, t(0)).is_empty());
    let rows = waiting(&[longhorn()], &before, t(0));
    assert!(rows.iter().any(|r| r.reason == "NotUpgraded" && r.status.ends_with(":v1.6.2")), "{rows:?}");
}

#[test]
fn the_new_engine_image_in_error_fails_and_deploying_waits() {
    let ev = longhorn_evidence("longhornio/longhorn-manager:v1.7.1", Vec::new(), "error");
    assert_eq!(failures(&[longhorn()], &ev, t(0))[0].reason, "EngineImageFailed");
    let ev = longhorn_evidence("longhornio/longhorn-manager:v1.7.1", Vec::new(), "deploying");
    assert_eq!(waiting(&[longhorn()], &ev, t(0))[0].reason, "NotDeployed");
    let ev = longhorn_evidence("longhornio/longhorn-manager:v1.7.1", vec![volume("pvc-1", "healthy")], "deployed");
    assert!(waiting(&[longhorn()], &ev, t(0)).is_empty());
}

fn flux() -> PlatformTarget {
    PlatformTarget::Flux {
        namespace: "flux-system".into(),
        version: "v2.4.0".into(),
        images: vec!["ghcr.io/fluxcd/helm-controller:v1.1.0".into()],
    }
}

fn controller(image: &str) -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        namespace: "flux-system".into(),
        name: "helm-controller".into(),
        desired: 1,
        updated: 1,
        ready: 1,
        available: 1,
        ..daemonset("helm-controller", image)
    }
}

fn flux_evidence(image: &str, label: &str, objects: Vec<FluxObject>) -> Evidence {
    let mut platform =
        PlatformEvidence { workloads: vec![controller(image)], flux_objects: objects, ..PlatformEvidence::default() };
    platform.version_labels.insert("Deployment/flux-system/helm-controller".into(), label.into());
    applied(platform)
}

fn kustomization(ready: Condition) -> FluxObject {
    FluxObject { conditions: vec![ready], ..ready_obj(FluxKind::Kustomization, "apps", "podinfo") }
}

#[test]
fn a_kustomization_failing_after_the_flux_upgrade_fails_it() {
    let mut broken = cond("Ready", "False", "BuildFailed", "kustomize build failed: no matches for kind");
    broken.last_transition_time = Some(t(30).to_string());
    let ev = flux_evidence("ghcr.io/fluxcd/helm-controller:v1.1.0", "v2.4.0", vec![kustomization(broken)]);
    let (v, _, _) = decide(&expect(flux()), &ev, &deadlines(), &Progress::default(), t(40));
    let rows = rows_of(&v);
    assert_eq!((rows[0].object.as_str(), rows[0].reason.as_str()), ("Kustomization/apps/podinfo", "BuildFailed"));
}

#[test]
fn a_kustomization_already_failing_before_the_merge_is_not_the_upgrades_fault() {
    let mut broken = cond("Ready", "False", "BuildFailed", "old breakage");
    broken.last_transition_time = Some(t(-3600).to_string());
    let ev = flux_evidence("ghcr.io/fluxcd/helm-controller:v1.1.0", "v2.4.0", vec![kustomization(broken)]);
    assert!(failures(&[flux()], &ev, t(0)).is_empty());
    assert!(waiting(&[flux()], &ev, t(0)).is_empty());
}

#[test]
fn controllers_not_at_the_new_version_wait_and_are_not_blamed_yet() {
    let broken = cond("Ready", "False", "BuildFailed", "during the upgrade");
    let ev = flux_evidence("ghcr.io/fluxcd/helm-controller:v1.0.1", "v2.3.0", vec![kustomization(broken)]);
    assert!(failures(&[flux()], &ev, t(0)).is_empty());
    let rows = waiting(&[flux()], &ev, t(0));
    let reasons: Vec<(&str, &str)> = rows.iter().map(|r| (r.type_.as_str(), r.reason.as_str())).collect();
    assert_eq!(reasons, vec![("Version", "NotUpgraded"), ("Image", "NotUpgraded")], "{rows:?}");
}

#[test]
fn a_flux_instance_range_checks_no_version_label() {
    let target = PlatformTarget::Flux { namespace: "flux-system".into(), version: "2.x".into(), images: Vec::new() };
    let ev = flux_evidence("ghcr.io/fluxcd/helm-controller:v1.1.0", "v2.4.0", Vec::new());
    assert!(waiting(&[target], &ev, t(0)).is_empty());
}
