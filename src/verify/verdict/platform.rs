//! The platform rules of the verdict: what k3s, Longhorn and Flux must show after an upgrade
//! the merge made. Pure, like the rest of the verdict.
//!
//! Each rule gives rows of two kinds: `waiting` rows (not healthy *yet*: a node still on the
//! old kubelet, a cordoned node, a Plan not `Complete`, a degraded volume rebuilding, a
//! controller not rolled out) keep the merge pending until the timeout, after which they are
//! the failure's evidence; `failures` rows are conclusive at once (a faulted volume, an engine
//! image in error, a Kustomization or HelmRelease that failed after Flux's controllers were
//! upgraded). A failure is blamed on the upgrade only once the upgraded component runs the new
//! version, and a Flux object that was already failing before the merge is not its fault.

use jiff::Timestamp;

use super::{FAILURE_REASONS, ROLLBACK_REASONS, Row, is, missing_row, not_rolled_out, row, same_version};
use crate::verify::evidence::{Condition, Evidence, FluxObject, Workload};
use crate::verify::platform::{EngineImage, Node, PlatformTarget, image_name, split_image};

/// Rows that keep the merge pending (and fail it after the timeout).
pub(super) fn waiting(targets: &[PlatformTarget], ev: &Evidence, merged_at: Timestamp) -> Vec<Row> {
    let mut rows = Vec::new();
    for target in targets {
        match target {
            PlatformTarget::K3s { version, plans } => {
                rows.extend(k3s_nodes(ev, version));
                rows.extend(k3s_plans(ev, version, plans));
            }
            PlatformTarget::Longhorn { namespace, version } => rows.extend(longhorn_waiting(ev, namespace, version)),
            PlatformTarget::Flux { namespace, version, images } => {
                let controllers = flux_controllers(ev, namespace, version, images);
                let upgraded = controllers.is_empty();
                rows.extend(controllers);
                if upgraded {
                    rows.extend(flux_objects(ev, merged_at).1);
                }
            }
        }
    }
    rows
}

/// Rows that fail the merge now.
pub(super) fn failures(targets: &[PlatformTarget], ev: &Evidence, merged_at: Timestamp) -> Vec<Row> {
    let mut rows = Vec::new();
    for target in targets {
        match target {
            PlatformTarget::K3s { .. } => {}
            PlatformTarget::Longhorn { namespace, version } => rows.extend(longhorn_failures(ev, namespace, version)),
            PlatformTarget::Flux { namespace, version, images } => {
                if super::applied(ev) && flux_controllers(ev, namespace, version, images).is_empty() {
                    rows.extend(flux_objects(ev, merged_at).0);
                }
            }
        }
    }
    rows
}

/// k3s writes `v1.30.4+k3s1`; image tags and some channels write `v1.30.4-k3s1`.
fn same_k3s(version: &str, want: &str) -> bool {
    let norm = |v: &str| v.trim_start_matches('v').replace("-k3s", "+k3s");
    norm(version) == norm(want)
}

fn node_row(node: &Node, type_: &str, status: &str, reason: &str, what: &str) -> Row {
    let ready = match &node.ready {
        Some(c) => format!(" (Ready={} {}: {})", c.status, c.reason, c.message),
        None => " (no Ready condition reported)".to_string(),
    };
    Row {
        object: format!("Node/{}", node.name),
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{what}{ready}"),
    }
}

/// Every node Ready, on the target kubelet, and schedulable again.
fn k3s_nodes(ev: &Evidence, version: &str) -> Vec<Row> {
    let nodes = &ev.platform.nodes;
    if nodes.is_empty() {
        return vec![Row {
            object: "Node/*".into(),
            type_: "Listed".into(),
            status: "0".into(),
            reason: "NoNodes".into(),
            message: "the API server listed no nodes".into(),
        }];
    }
    let mut rows = Vec::new();
    for node in nodes {
        if !same_k3s(&node.kubelet_version, version) {
            let what = format!("still runs kubelet {}, not {version}", node.kubelet_version);
            rows.push(node_row(node, "KubeletVersion", &node.kubelet_version, "NotUpgraded", &what));
        }
        if !is(node.ready.as_ref(), "True") {
            let c = node.ready.clone().unwrap_or_default();
            let status = if c.status.is_empty() { "Unknown" } else { c.status.as_str() };
            rows.push(node_row(node, "Ready", status, &c.reason, "is not Ready"));
        }
        if node.unschedulable {
            let what = "is still cordoned (spec.unschedulable): the upgrade did not uncordon it";
            rows.push(node_row(node, "Unschedulable", "True", "Cordoned", what));
        }
    }
    rows
}

/// The changed Plans resolved the target and report `Complete=True` for it.
fn k3s_plans(ev: &Evidence, version: &str, plans: &[(String, String)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (namespace, name) in plans {
        let object = format!("Plan/{namespace}/{name}");
        let Some(plan) = ev.platform.plans.iter().find(|p| p.namespace == *namespace && p.name == *name) else {
            rows.push(missing_row(&object, "Exists", "False", "was not found in the cluster"));
            continue;
        };
        let latest = plan.latest_version.clone().unwrap_or_else(|| "none".into());
        let complete = plan.conditions.iter().find(|c| c.type_ == "Complete");
        let applying = if plan.applying.is_empty() {
            String::new()
        } else {
            format!(" (applying on {})", plan.applying.join(", "))
        };
        if !same_k3s(&latest, version) {
            rows.push(Row {
                object,
                type_: "LatestVersion".into(),
                status: latest.clone(),
                reason: "NotResolved".into(),
                message: format!("has not resolved {version} yet (at {latest})"),
            });
        } else if !is(complete, "True") {
            let c = complete.cloned().unwrap_or_else(|| Condition {
                type_: "Complete".into(),
                status: "Unknown".into(),
                message: "reports no Complete condition yet".into(),
                ..Condition::default()
            });
            rows.push(Row {
                object,
                type_: c.type_,
                status: c.status,
                reason: c.reason,
                message: format!("{}{applying}", c.message),
            });
        }
    }
    rows
}

fn workload_ref(w: &Workload) -> String {
    format!("{:?}/{}/{}", w.kind, w.namespace, w.name)
}

/// Images of `w` named `name` whose tag is not `version`, as rows.
fn stale_images(w: &Workload, name: &str, version: &str) -> Vec<Row> {
    w.images
        .iter()
        .filter(|i| image_name(i) == name)
        .filter(|i| !split_image(i).1.is_some_and(|tag| same_version(tag, version)))
        .map(|i| Row {
            object: workload_ref(w),
            type_: "Image".into(),
            status: i.clone(),
            reason: "NotUpgraded".into(),
            message: format!("runs {i}, not {name} v{}", version.trim_start_matches('v')),
        })
        .collect()
}

fn in_namespace<'a>(ev: &'a Evidence, namespace: &'a str) -> impl Iterator<Item = &'a Workload> {
    ev.platform.workloads.iter().filter(move |w| w.namespace == namespace)
}

/// Whether the Longhorn manager runs the target everywhere (failures are blamed only then).
fn longhorn_manager_rows(ev: &Evidence, namespace: &str, version: &str) -> Vec<Row> {
    let managers: Vec<&Workload> =
        in_namespace(ev, namespace).filter(|w| w.images.iter().any(|i| image_name(i) == "longhorn-manager")).collect();
    if managers.is_empty() {
        return vec![missing_row(
            &format!("DaemonSet/{namespace}/longhorn-manager"),
            "Exists",
            "False",
            &format!("no workload in {namespace} runs longhorn-manager"),
        )];
    }
    managers.iter().flat_map(|w| stale_images(w, "longhorn-manager", version)).collect()
}

fn longhorn_waiting(ev: &Evidence, namespace: &str, version: &str) -> Vec<Row> {
    let workloads: Vec<Workload> = in_namespace(ev, namespace).cloned().collect();
    let mut rows = not_rolled_out(&workloads);
    rows.extend(longhorn_manager_rows(ev, namespace, version));
    match target_engines(ev, version).next() {
        None => rows.push(Row {
            object: format!("EngineImage/{namespace}/*"),
            type_: "Exists".into(),
            status: "False".into(),
            reason: "NotDeployed".into(),
            message: format!("no engine image of longhorn-engine v{} yet", version.trim_start_matches('v')),
        }),
        Some(e) if e.state != "deployed" && !matches!(e.state.as_str(), "error" | "incompatible") => rows.push(Row {
            object: format!("EngineImage/{namespace}/{}", e.name),
            type_: "State".into(),
            status: e.state.clone(),
            reason: "NotDeployed".into(),
            message: format!("{} is {}, not deployed", e.image, e.state),
        }),
        Some(_) => {}
    }
    rows.extend(volumes(ev, "degraded", "Degraded", "a replica is missing or rebuilding"));
    rows
}

/// The engine images of longhorn-engine at the target version.
fn target_engines<'a>(ev: &'a Evidence, version: &'a str) -> impl Iterator<Item = &'a EngineImage> {
    ev.platform.engine_images.iter().filter(move |e| {
        image_name(&e.image) == "longhorn-engine" && split_image(&e.image).1.is_some_and(|t| same_version(t, version))
    })
}

/// A row for each volume at `robustness`, saying what that means.
fn volumes<'a>(
    ev: &'a Evidence,
    robustness: &'a str,
    reason: &'a str,
    means: &'a str,
) -> impl Iterator<Item = Row> + 'a {
    ev.platform.volumes.iter().filter(move |v| v.robustness == robustness).map(move |v| Row {
        object: format!("Volume/{}/{}", v.namespace, v.name),
        type_: "Robustness".into(),
        status: v.robustness.clone(),
        reason: reason.into(),
        message: format!("is {} and {robustness}: {means}", v.state),
    })
}

fn longhorn_failures(ev: &Evidence, namespace: &str, version: &str) -> Vec<Row> {
    if !longhorn_manager_rows(ev, namespace, version).is_empty() {
        return Vec::new();
    }
    let mut rows: Vec<Row> = volumes(ev, "faulted", "Faulted", "no healthy replica is left").collect();
    let broken = target_engines(ev, version).filter(|e| matches!(e.state.as_str(), "error" | "incompatible"));
    for e in broken {
        rows.push(Row {
            object: format!("EngineImage/{namespace}/{}", e.name),
            type_: "State".into(),
            status: e.state.clone(),
            reason: "EngineImageFailed".into(),
            message: format!("{} is {}", e.image, e.state),
        });
    }
    rows
}

/// A version Flux's labels can be held to: `v2.4.0`, not a range such as `2.x`.
fn exact(version: &str) -> bool {
    !version.contains(['x', 'X', '*', '>', '<', '~', '^', ' '])
}

/// Flux's controllers rolled out at the new version: every Deployment of the namespace rolled
/// out, carrying the version label, and running the images the merged file names.
fn flux_controllers(ev: &Evidence, namespace: &str, version: &str, images: &[String]) -> Vec<Row> {
    let controllers: Vec<Workload> = in_namespace(ev, namespace).cloned().collect();
    if controllers.is_empty() {
        return vec![missing_row(
            &format!("Deployment/{namespace}/*"),
            "Exists",
            "False",
            &format!("no Flux controller Deployment found in {namespace}"),
        )];
    }
    let mut rows = not_rolled_out(&controllers);
    for w in &controllers {
        let object = workload_ref(w);
        let label = ev.platform.version_labels.get(&object);
        if exact(version) && label.is_some_and(|l| !same_version(l, version)) {
            let at = label.cloned().unwrap_or_default();
            rows.push(Row {
                object: object.clone(),
                type_: "Version".into(),
                status: at.clone(),
                reason: "NotUpgraded".into(),
                message: format!("is labelled Flux {at}, not {version}"),
            });
        }
        for want in images {
            let (repo, tag) = split_image(want);
            let Some(tag) = tag else { continue };
            let name = image_name(repo);
            if w.images.iter().any(|i| image_name(i) == name) {
                rows.extend(stale_images(w, name, tag));
            }
        }
    }
    for want in images {
        let name = image_name(want);
        if !controllers.iter().any(|w| w.images.iter().any(|i| image_name(i) == name)) {
            rows.push(missing_row(
                &format!("Deployment/{namespace}/{name}"),
                "Exists",
                "False",
                &format!("no Deployment runs {want}"),
            ));
        }
    }
    rows
}

/// Whether a condition changed after the merge (an unreadable time counts as after: a condition
/// is blamed on the merge unless it provably predates it).
fn since_merge(c: &Condition, merged_at: Timestamp) -> bool {
    c.last_transition_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).is_none_or(|t| t >= merged_at)
}

/// Every Kustomization and HelmRelease after a Flux upgrade: `(failed, not Ready yet)`. Objects
/// already failing before the merge are neither.
fn flux_objects(ev: &Evidence, merged_at: Timestamp) -> (Vec<Row>, Vec<Row>) {
    let mut failed = Vec::new();
    let mut waiting = Vec::new();
    for o in &ev.platform.flux_objects {
        if let Some(stalled) = o.condition("Stalled").filter(|c| c.status == "True" && since_merge(c, merged_at)) {
            failed.push(row(o, stalled));
            continue;
        }
        match o.condition("Ready") {
            Some(c) if c.status == "True" => {}
            Some(c) if !since_merge(c, merged_at) => {}
            Some(c) if c.status == "False" && failing(c) => failed.push(row(o, c)),
            _ => waiting.push(not_ready_after(o)),
        }
    }
    (failed, waiting)
}

fn failing(c: &Condition) -> bool {
    FAILURE_REASONS.contains(&c.reason.as_str()) || ROLLBACK_REASONS.contains(&c.reason.as_str())
}

fn not_ready_after(o: &FluxObject) -> Row {
    let mut r = super::not_ready(o);
    r.message = format!("{} (after the Flux upgrade)", r.message);
    r
}

#[cfg(test)]
#[path = "platform_tests.rs"]
mod tests;
