//! The cluster as an [`Observer`]: the kube adapter behind the verifier's trait, or, when no
//! client can even be built (no kubeconfig, a broken one), a cluster that is not seen at all:
//! every observation is blindness naming what to fix, so every merge stays pending.

use std::time::Duration;

use jiff::Timestamp;

use super::Observer;
use super::evidence::{Blind, Evidence, FluxKind, FluxObject};
use super::kube::{KubeOptions, KubeSource, ObjectName, Wake, Want, connect};
use super::target::Target;

/// The cluster upkeep verifies against.
pub enum Cluster {
    /// Reached through the Kubernetes API.
    Api(Box<KubeSource>),
    /// Not reachable: why.
    Unseen(Blind),
}

impl Cluster {
    /// Build the client (no request yet); a configuration that cannot be read is blindness.
    pub async fn connect(options: &KubeOptions) -> Cluster {
        match connect(options).await {
            Ok(source) => Cluster::Api(Box::new(source)),
            Err(blind) => Cluster::Unseen(blind),
        }
    }
}

fn name(pair: &str) -> ObjectName {
    let (ns, name) = pair.split_once('/').unwrap_or(("", pair));
    ObjectName::new(ns, name)
}

/// What the kube adapter reads for a target.
fn want(target: &Target) -> Want {
    Want {
        source: ObjectName::new(&target.source.0, &target.source.1),
        helmreleases: target.releases.iter().map(|(r, v)| (name(r), v.clone())).collect(),
        chart_sources: target.chart_sources.iter().map(|(k, ns, n)| (*k, ObjectName::new(ns, n))).collect(),
        platform: target.platform.clone(),
    }
}

/// One watch for several targets: the union of what they read.
fn union(targets: &[Target]) -> Option<Want> {
    let mut all = want(targets.first()?);
    for t in &targets[1..] {
        let w = want(t);
        for r in w.helmreleases {
            if !all.helmreleases.contains(&r) {
                all.helmreleases.push(r);
            }
        }
        for s in w.chart_sources {
            if !all.chart_sources.contains(&s) {
                all.chart_sources.push(s);
            }
        }
        for p in w.platform {
            if !all.platform.contains(&p) {
                all.platform.push(p);
            }
        }
    }
    Some(all)
}

/// A HelmRepository or OCIRepository named by a release's `Kind/namespace/name` source ref.
fn chart_source(reference: &str) -> Option<FluxObject> {
    let mut parts = reference.splitn(3, '/');
    let kind = match parts.next()? {
        "HelmRepository" => FluxKind::HelmRepository,
        "OCIRepository" => FluxKind::OciRepository,
        _ => return None,
    };
    let (namespace, name) = (parts.next()?, parts.next()?);
    Some(FluxObject::named(kind, namespace, name))
}

impl Observer for Cluster {
    async fn observe(&self, target: &Target) -> Evidence {
        match self {
            Cluster::Api(source) => source.observe(&want(target)).await,
            Cluster::Unseen(blind) => Evidence { blind: vec![blind.clone()], ..Evidence::default() },
        }
    }

    async fn nudge(&self, evidence: &Evidence, at: Timestamp) -> Vec<String> {
        let Cluster::Api(source) = self else { return Vec::new() };
        // The chart sources of the changed releases, as the releases name them: a nudge needs
        // only kind, namespace and name (the served version is discovered).
        let charts: Vec<FluxObject> = evidence
            .helmreleases
            .iter()
            .filter_map(|(hr, _)| hr.source_ref.as_deref())
            .filter_map(chart_source)
            .filter(|c| !evidence.chart_sources.iter().any(|s| s.reference() == c.reference()))
            .collect();
        let objects: Vec<&FluxObject> =
            evidence.source.iter().chain(evidence.chart_sources.iter()).chain(charts.iter()).collect();
        let mut problems = Vec::new();
        for object in objects {
            if let Err(b) = source.nudge(object, at).await {
                problems.push(format!(
                    "could not nudge {}: {} ({}); waiting for its interval instead",
                    object.reference(),
                    b.reason,
                    b.what
                ));
            }
        }
        problems
    }

    async fn changed(&self, targets: &[Target], timeout: Duration) {
        match (self, union(targets)) {
            (Cluster::Api(source), Some(want)) => {
                if let Wake::Blind(b) = source.changed(&want, timeout).await {
                    tracing::warn!("watching the cluster failed ({}: {}); looking again", b.what, b.reason);
                    tokio::time::sleep(timeout.min(Duration::from_secs(5))).await;
                }
            }
            _ => tokio::time::sleep(timeout).await,
        }
    }
}
