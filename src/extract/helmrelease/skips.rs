//! The skips a Flux source reference can end in, worded once: each says what Flux or the API
//! server does with the object and what to change, naming the file and line it is about.

use super::external::ExternalSource;
use super::{Source, SourceRef};
use crate::extract::VersionValue;
use crate::model::{Manifest, Skip, SkipReason};
use crate::yaml::{Node, NodeKind};

/// Why an OCIRepository's `spec.ref.tag` cannot be pulled, if it cannot.
///
/// source-controller builds the reference with go-containerregistry's `Repository.Tag(tag)`,
/// which takes the string unparsed (`internal/controller/ocirepository_controller.go`,
/// `getArtifactRef`), so `v1.8.2@sha256:…` is asked for as one tag, and the registry refuses
/// it: the distribution spec allows tags of `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` only.
pub(super) fn invalid_tag(version: &VersionValue) -> Option<Skip> {
    let tag = version.value()?;
    let mut chars = tag.chars();
    let valid = tag.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        return None;
    }
    let message = match tag.split_once('@') {
        Some((tag, digest)) => format!(
            "spec.ref.tag `{tag}@{digest}` holds a digest: source-controller sends the whole value to the registry as one tag, which no registry accepts; write `tag: {tag}` and `digest: {digest}` under spec.ref"
        ),
        None => format!(
            "spec.ref.tag `{tag}` is not an OCI tag (letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`): the registry refuses it"
        ),
    };
    Some(Skip { reason: SkipReason::InvalidRef, message })
}

pub(super) fn unsupported_chart_source(source: &SourceRef) -> Skip {
    Skip {
        reason: SkipReason::UnsupportedSource,
        message: format!(
            "the chart comes from {} {}: Flux takes whatever chart that source holds and ignores any version, so there is no version to follow",
            source.kind, source.name
        ),
    }
}

pub(super) fn unnamed(kind: &str, manifest: &Manifest) -> Skip {
    Skip {
        reason: SkipReason::Unnamed,
        message: format!(
            "the {kind} at {}:{} has no metadata.name: the Kubernetes API server refuses an object without a name, so Flux never applies it; name it",
            manifest.file, manifest.line
        ),
    }
}

pub(super) fn broken_source(kind: &str, source: &Source, why: &str) -> Skip {
    Skip {
        reason: SkipReason::Unparsable,
        message: format!(
            "{kind} {} ({}:{}) cannot be applied: {why}",
            source.name, source.manifest.file, source.manifest.line
        ),
    }
}

/// An `oci://` HelmRepository without `type: oci`: source-controller's HelmRepository
/// reconciler stalls on it (`internal/controller/helmrepository_controller.go`, reconcileSource).
pub(super) fn refused_oci(source: &Source) -> Skip {
    Skip {
        reason: SkipReason::InvalidSource,
        message: format!(
            "HelmRepository {} ({}:{}) has an oci:// URL but no `type: oci`; source-controller refuses it (\"'oci' URL scheme cannot be used with 'default' HelmRepository type\"): add `spec.type: oci`",
            source.name, source.manifest.file, source.manifest.line
        ),
    }
}

pub(super) fn ambiguous(kind: &str, name: &str, candidates: &[&Source]) -> Skip {
    let mut places: Vec<String> = candidates
        .iter()
        .map(|s| {
            format!("{} ({}:{})", s.namespace.as_deref().unwrap_or("no namespace"), s.manifest.file, s.manifest.line)
        })
        .collect();
    places.sort();
    places.dedup();
    Skip {
        reason: SkipReason::AmbiguousSource,
        message: format!(
            "{kind} {name} is defined in several namespaces: {}; this reference names no namespace and neither does its object, so set the reference's namespace",
            places.join(", ")
        ),
    }
}

pub(super) fn ambiguous_external(kind: &str, name: &str, candidates: &[&ExternalSource]) -> Skip {
    let places: Vec<String> = candidates
        .iter()
        .map(|e| format!("{} ({})", e.namespace.as_deref().unwrap_or("any namespace"), e.origin))
        .collect();
    Skip {
        reason: SkipReason::AmbiguousSource,
        message: format!(
            "`sources:` declares {kind} {name} more than once for this reference: {}; give the reference or the entries a namespace",
            places.join(", ")
        ),
    }
}

pub(super) fn not_found(kind: &str, name: &str, namespace: Option<&str>) -> Skip {
    let place = namespace.map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " (namespace unknown)".into());
    Skip {
        reason: SkipReason::SourceNotFound,
        message: format!(
            "{kind} {name}{place} is not in the scanned files; scan the folder that defines it too, or declare it under `sources:` in the upkeep config"
        ),
    }
}

/// The first of `paths` present but not a mapping (nor null): the API server rejects the
/// object, so nothing in it reaches the cluster. Flux's CRDs declare these fields
/// `type: object` (source-controller `config/crd/bases/…_ocirepositories.yaml`, `spec.ref`).
pub(super) fn not_a_map(root: &Node, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| {
        let node = root.path(path)?;
        let what = match &node.kind {
            NodeKind::Scalar(s) if !s.is_null() => "a string",
            NodeKind::Seq(_) => "a list",
            _ => return None,
        };
        Some(format!(
            "{} at line {} is {what}, not a mapping; the Kubernetes API server rejects the object",
            path.join("."),
            node.line
        ))
    })
}
