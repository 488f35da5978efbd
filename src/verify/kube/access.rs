//! Why a read failed, in words a maintainer can act on: a refused credential, the RBAC rule to
//! grant (verb, resource, group, namespace), or the API server URL that did not answer. Every
//! failed read becomes a [`Blind`]; blindness is never failure.

use crate::verify::evidence::Blind;

/// What a read tried to do, for the RBAC hint.
#[derive(Debug, Clone)]
pub(super) struct Access {
    /// `get`, `list`, `watch`, `patch`.
    pub(super) verb: &'static str,
    /// The URL plural (`helmreleases`).
    pub(super) resource: String,
    /// The API group (`helm.toolkit.fluxcd.io`; empty for the core group).
    pub(super) group: String,
    /// The namespace, or `None` for a cluster-wide read.
    pub(super) namespace: Option<String>,
}

impl Access {
    /// An access to `resource` of `group`.
    pub(super) fn new(verb: &'static str, resource: &str, group: &str, namespace: Option<&str>) -> Access {
        Access { verb, resource: resource.into(), group: group.into(), namespace: namespace.map(str::to_string) }
    }

    /// The RBAC rule that allows it, as a Role or ClusterRole would say it.
    fn rule(&self) -> String {
        let scope = match &self.namespace {
            Some(ns) => format!("a Role in namespace {ns}"),
            None => "a ClusterRole (cluster-wide)".to_string(),
        };
        format!(
            "grant {scope} the rule apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [\"{}\"] to the identity of upkeep's kubeconfig",
            self.group, self.resource, self.verb
        )
    }
}

/// Whether an error is the API server's 404 for an object (the resource type exists).
pub(super) fn is_not_found(error: &::kube::Error) -> bool {
    matches!(error, ::kube::Error::Api(status) if status.code == 404)
}

/// Whether a 404 is about the resource type itself (an API version no longer served), not an
/// object: the API server names the object in `details.name` only in the second case.
pub(super) fn is_unserved(error: &::kube::Error) -> bool {
    matches!(error, ::kube::Error::Api(status)
        if status.code == 404 && status.details.as_ref().is_none_or(|d| d.name.is_empty()))
}

/// The blindness a failed read leaves: `what` could not be read, and why, with what to do.
pub(super) fn blind(what: String, access: &Access, server: &str, error: &::kube::Error) -> Blind {
    let action = format!("{} {}", access.verb, resource_name(access));
    Blind { what, reason: reason(error, server, &action, &access.rule()) }
}

/// The blindness of a failed discovery (`GET /apis`): a non-resource URL, so another rule.
pub(super) fn discovery_blind(server: &str, error: &::kube::Error) -> Blind {
    let rule = "grant nonResourceURLs: [\"/api\", \"/api/*\", \"/apis\", \"/apis/*\"], verbs: [\"get\"] (Kubernetes' own system:discovery ClusterRole has it)";
    Blind { what: format!("the API server {server}"), reason: reason(error, server, "get /apis (discovery)", rule) }
}

fn reason(error: &::kube::Error, server: &str, action: &str, rule: &str) -> String {
    match error {
        ::kube::Error::Api(status) if status.code == 403 => {
            format!("forbidden: cannot {action} (403: {}); {rule}", status.message)
        }
        ::kube::Error::Api(status) if status.code == 401 => format!(
            "the API server {server} refused the credentials (401 {}): renew the token or client certificate of the kubeconfig context",
            status.message
        ),
        ::kube::Error::Api(status) => {
            format!(
                "the API server {server} answered {} {} to {action}: {}",
                status.code, status.reason, status.message
            )
        }
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => {
            format!("cannot reach the API server {server}: {}", chain(error))
        }
        other => format!("{action} failed: {}", chain(other)),
    }
}

/// `helmreleases.helm.toolkit.fluxcd.io in namespace default`.
fn resource_name(access: &Access) -> String {
    let resource =
        if access.group.is_empty() { access.resource.clone() } else { format!("{}.{}", access.resource, access.group) };
    match &access.namespace {
        Some(ns) => format!("{resource} in namespace {ns}"),
        None => format!("{resource} in all namespaces"),
    }
}

/// An error with its sources, `a: b: c` (a connection refusal is three levels down in hyper).
pub(super) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The kube error under a watcher error, when there is one.
pub(super) fn watcher_error(error: &::kube::runtime::watcher::Error) -> Option<&::kube::Error> {
    use ::kube::runtime::watcher::Error as W;
    match error {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => Some(e),
        W::WatchError(_) | W::NoResourceVersion => None,
    }
}
