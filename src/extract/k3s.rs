//! k3s, as upgraded by rancher's system-upgrade-controller `Plan`s (`upgrade.cattle.io/v1`).
//!
//! A Plan upgrades k3s when its upgrade image is `rancher/k3s-upgrade` (k3s docs, "Automated
//! Upgrades"). `spec.version` (`v1.30.4+k3s1`) pins the release; `spec.channel` makes the
//! controller follow a channel URL and "providing a value for version will prevent
//! polling/resolution of the channel" (SUC `pkg/apis/upgrade.cattle.io/v1/types.go`), so a
//! channel-only Plan upgrades the cluster with no commit: it is reported as floating, never bumped.
//!
//! Server Plans must run before agent Plans (k3s docs); the role is read from the node selector
//! (control-plane/master label `In`/`Exists` = server, `NotIn`/`DoesNotExist` = agent), else from
//! an agent's `prepare` step waiting on `k3s-server`, else from the Plan's name.

use super::{Extractor, Findings, ManifestDoc, VersionValue};
use crate::model::{Component, Datasource, Dependency, Kind, Package, PlanRole, Skip, SkipReason};
use crate::yaml::Node;

/// The Plan manager.
#[derive(Debug, Default)]
pub struct Plans;

const CONTROL_PLANE_LABELS: [&str; 2] = ["node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"];

/// Does this image upgrade k3s? (`rancher/k3s-upgrade`, with any registry and tag.)
pub fn is_k3s_upgrade_image(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo = last.split(':').next().unwrap_or(last);
    repo == "k3s-upgrade"
}

/// Work out whether a Plan upgrades servers or agents.
pub fn role_of(spec: &Node, name: &str) -> PlanRole {
    if let Some(exprs) = spec.path(&["nodeSelector", "matchExpressions"]).and_then(Node::as_seq) {
        for expr in exprs {
            let Some(key) = expr.str_at(&["key"]) else { continue };
            if !CONTROL_PLANE_LABELS.contains(&key) {
                continue;
            }
            let values: Vec<&str> = expr
                .get("values")
                .and_then(Node::as_seq)
                .map(|v| v.iter().filter_map(Node::as_str).collect())
                .unwrap_or_default();
            let truthy = values.is_empty() || values.contains(&"true");
            match expr.str_at(&["operator"]) {
                Some("Exists") => return PlanRole::Server,
                Some("In") if truthy => return PlanRole::Server,
                Some("DoesNotExist") => return PlanRole::Agent,
                Some("NotIn") if truthy => return PlanRole::Agent,
                _ => {}
            }
        }
    }
    if let Some(labels) = spec.path(&["nodeSelector", "matchLabels"])
        && CONTROL_PLANE_LABELS.iter().any(|l| labels.str_at(&[l]) == Some("true"))
    {
        return PlanRole::Server;
    }
    let waits_for_server = spec
        .path(&["prepare", "args"])
        .and_then(Node::as_seq)
        .is_some_and(|args| args.iter().filter_map(Node::as_str).any(|a| a == "k3s-server"));
    if waits_for_server {
        return PlanRole::Agent;
    }
    let lower = name.to_ascii_lowercase();
    if lower.contains("server") || lower.contains("control") || lower.contains("master") {
        PlanRole::Server
    } else if lower.contains("agent") || lower.contains("worker") {
        PlanRole::Agent
    } else {
        PlanRole::Unknown
    }
}

impl Extractor for Plans {
    fn id(&self) -> &'static str {
        "k3s"
    }

    /// Nothing kept between documents: every finding goes straight to `Findings`.
    fn merge(&mut self, _later: Box<dyn Extractor>) {}

    fn document(&mut self, doc: &ManifestDoc<'_>, out: &mut Findings) {
        if doc.kind != "Plan" || !doc.api_version.starts_with("upgrade.cattle.io/") {
            return;
        }
        let root = doc.root();
        let name = doc.name_or_unnamed().to_string();
        let spec = root.get("spec");
        // `upgrade.image` is the upgrader; Plans that inherit it with a `<<:` merge key from
        // `prepare` (Talos examples) are recognised by `prepare.image`.
        let image = root
            .str_at(&["spec", "upgrade", "image"])
            .or_else(|| root.str_at(&["spec", "prepare", "image"]))
            .unwrap_or("");
        let is_k3s = is_k3s_upgrade_image(image);
        let version = doc.version_at(&["spec", "version"]);
        let channel = root.str_at(&["spec", "channel"]);
        let skip = if let Some(message) = doc.invalid {
            Some(Skip { reason: SkipReason::Unparsable, message: message.to_string() })
        } else if !is_k3s {
            Some(Skip {
                reason: SkipReason::OtherSystem,
                message: if image.is_empty() {
                    "Plan has no spec.upgrade.image; only rancher/k3s-upgrade Plans are k3s".into()
                } else {
                    format!("Plan upgrades with `{image}`, not rancher/k3s-upgrade")
                },
            })
        } else {
            match (&version, channel) {
                (VersionValue::Missing, Some(channel)) => Some(Skip {
                    reason: SkipReason::FloatingVersion,
                    message: format!(
                        "follows channel {channel}: nodes upgrade without a commit; set spec.version to pin k3s and get update PRs"
                    ),
                }),
                (VersionValue::Missing, None) => Some(Skip {
                    reason: SkipReason::NoVersion,
                    message: "neither spec.version nor spec.channel is set".into(),
                }),
                _ => version.problem("spec.version"),
            }
        };
        out.dependencies.push(Dependency {
            id: format!("plan/{}/{}", doc.namespace.unwrap_or("-"), name),
            kind: Kind::Plan,
            component: if is_k3s { Component::K3s } else { Component::App },
            role: is_k3s.then(|| spec.map_or(PlanRole::Unknown, |s| role_of(s, &name))),
            name,
            namespace: doc.namespace.map(str::to_string),
            package: is_k3s.then(|| Package {
                datasource: Datasource::GithubReleases,
                registry: "https://github.com".into(),
                name: "k3s-io/k3s".into(),
            }),
            current: version.value().map(str::to_string),
            location: version.location().cloned(),
            skip,
            manifest: doc.manifest(),
            clusters: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    #[test]
    fn recognises_k3s_upgrade_images() {
        for image in [
            "rancher/k3s-upgrade",
            "docker.io/rancher/k3s-upgrade:v1.30.4-k3s1",
            "reg.local/mirror/k3s-upgrade@sha256:abc",
        ] {
            assert!(is_k3s_upgrade_image(image), "{image}");
        }
        for image in ["ghcr.io/siderolabs/talosctl:v1.7", "rancher/rke2-upgrade", ""] {
            assert!(!is_k3s_upgrade_image(image), "{image}");
        }
    }

    #[test]
    fn roles_from_selectors_prepare_and_names() {
        let role = |yaml: &str, name: &str| {
            let stream = parse_stream(yaml);
            role_of(&stream.documents[0].root, name)
        };
        let server = "nodeSelector:\n  matchExpressions:\n    - {key: node-role.kubernetes.io/control-plane, operator: Exists}\n";
        let agent = "nodeSelector:\n  matchExpressions:\n    - {key: node-role.kubernetes.io/master, operator: NotIn, values: [\"true\"]}\n";
        let prepare = "prepare:\n  image: rancher/k3s-upgrade\n  args: [prepare, k3s-server]\n";
        assert_eq!(role(server, "x"), PlanRole::Server);
        assert_eq!(role(agent, "x"), PlanRole::Agent);
        assert_eq!(role(prepare, "x"), PlanRole::Agent);
        assert_eq!(role("concurrency: 1\n", "k3s-agent"), PlanRole::Agent);
        assert_eq!(role("concurrency: 1\n", "upgrade"), PlanRole::Unknown);
    }
}
