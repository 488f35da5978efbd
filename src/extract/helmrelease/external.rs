//! Sources another repository defines, declared in the config's `sources:`.
//!
//! A platform repository often holds the HelmRepositories and an apps repository the releases;
//! scanning the apps repository alone, a `sourceRef` finds nothing. An entry here answers it,
//! by kind, name and namespace (Renovate's Flux manager uses `registryAliases` for this, keyed
//! by name alone). Entries answer only what the scanned files do not.

/// A source defined outside the scanned files, declared in the config's `sources:` so the
/// references to it resolve (what Renovate's `registryAliases` does for its Flux manager).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSource {
    /// What kind of Flux source it stands for.
    pub kind: ExternalKind,
    /// Its `metadata.name`.
    pub name: String,
    /// Its namespace; `None` matches a reference from any namespace.
    pub namespace: Option<String>,
    /// Its `spec.url`: `https://` (a Helm repository) or `oci://`.
    pub url: String,
    /// Where it is declared (`.github/upkeep.yaml:12`), for messages.
    pub origin: String,
}

/// The kinds of source `sources:` can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
pub enum ExternalKind {
    /// A Flux `HelmRepository` (`https://` index or `oci://` registry).
    HelmRepository,
    /// A Flux `OCIRepository` (`oci://`), the target of a HelmRelease `chartRef`.
    #[serde(rename = "OCIRepository")]
    OciRepository,
}

/// The entry answering a reference: one in the reference's namespace, else one declared for
/// any namespace; `Err` lists several that fit equally.
pub(super) fn pick<'a>(
    entries: &'a [ExternalSource],
    kind: ExternalKind,
    name: &str,
    namespace: Option<&str>,
) -> Result<Option<&'a ExternalSource>, Vec<&'a ExternalSource>> {
    let fits: Vec<&ExternalSource> = entries
        .iter()
        .filter(|e| e.kind == kind && e.name == name)
        .filter(|e| e.namespace.is_none() || namespace.is_none() || e.namespace.as_deref() == namespace)
        .collect();
    let exact: Vec<&ExternalSource> =
        fits.iter().copied().filter(|e| namespace.is_some() && e.namespace.as_deref() == namespace).collect();
    let pool = if exact.is_empty() { fits } else { exact };
    match pool.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(pool),
    }
}
