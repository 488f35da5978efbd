//! The shared nouns every stage speaks: what a dependency is, where its version bytes are,
//! why it was skipped, and what went wrong in a file.
//!
//! These types are the scan's JSON contract (see `docs/scan-json.md`); renaming a field or a
//! variant here is a breaking change for users who script against `upkeep scan --format json`.

use std::ops::Range;

use serde::Serialize;

/// What kind of object carries the version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A Flux `HelmRelease` (its version may live in the `OCIRepository` or `HelmChart` it refers to).
    HelmRelease,
    /// A Flux `OCIRepository` that no HelmRelease refers to.
    OciRepository,
    /// A Flux `HelmChart` that no HelmRelease refers to.
    HelmChart,
    /// Flux itself, installed from a `gotk-components.yaml`.
    #[serde(rename = "flux-components")]
    FluxComponents,
    /// Flux itself, installed by flux-operator's `FluxInstance`.
    #[serde(rename = "fluxinstance")]
    FluxInstance,
    /// A system-upgrade-controller `Plan`.
    Plan,
}

impl Kind {
    /// The lowercase name used in ids and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::HelmRelease => "helmrelease",
            Kind::OciRepository => "ocirepository",
            Kind::HelmChart => "helmchart",
            Kind::FluxComponents => "flux-components",
            Kind::FluxInstance => "fluxinstance",
            Kind::Plan => "plan",
        }
    }
}

/// Which part of the platform a dependency is; platform components have their own upgrade rules.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// An application chart.
    App,
    /// Flux itself.
    Flux,
    /// The k3s distribution (system-upgrade-controller Plans).
    K3s,
    /// Longhorn storage, which refuses to skip a minor or downgrade.
    Longhorn,
}

impl Component {
    /// The lowercase name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::App => "app",
            Component::Flux => "flux",
            Component::K3s => "k3s",
            Component::Longhorn => "longhorn",
        }
    }
}

/// Where new versions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Datasource {
    /// A Helm repository `index.yaml` over HTTP(S).
    Helm,
    /// An OCI registry's tag list.
    Oci,
    /// GitHub releases of a repository.
    GithubReleases,
}

impl Datasource {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Datasource::Helm => "helm",
            Datasource::Oci => "oci",
            Datasource::GithubReleases => "github-releases",
        }
    }
}

/// The upstream package a dependency follows.
///
/// For `oci`, `<registry>/<name>` is the full OCI reference (`oci://ghcr.io/org/charts/app`);
/// for `helm`, `registry` is the repository URL and `name` the chart; for `github-releases`,
/// `registry` is `https://github.com` and `name` is `owner/repo`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Package {
    /// The datasource that knows its versions.
    pub datasource: Datasource,
    /// Repository or registry URL, as written in the manifest.
    pub registry: String,
    /// Chart, repository path or GitHub repository.
    pub name: String,
}

/// Exactly where a version scalar is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// File relative to the scanned root, with `/` separators.
    pub file: String,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column of the value (inside quotes), in characters.
    pub column: usize,
    /// Byte range of the value in the file (inside quotes).
    #[serde(skip)]
    pub span: Range<usize>,
    /// True when the bytes at `span` are exactly the value, so a splice is a faithful edit.
    #[serde(skip)]
    pub verbatim: bool,
    /// The value sits in a comment (the gotk-components header), not a YAML scalar: it is never
    /// quoted.
    #[serde(skip)]
    pub in_comment: bool,
    /// The value is the one line of a block scalar (`|`/`>`): always a string, never quoted.
    #[serde(skip)]
    pub block: bool,
    /// The value is a registry tag taken literally (an OCIRepository's `spec.ref.tag`), not a
    /// chart version: Helm's `_`-for-`+` spelling stays as the registry has it.
    #[serde(skip)]
    pub literal_tag: bool,
    /// A digest pinned next to the tag (`spec.ref.digest`), which must move with it.
    #[serde(skip)]
    pub digest: Option<DigestPin>,
}

/// A digest written next to a tag: Flux pulls the digest, so an update rewrites both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestPin {
    /// The digest as written (`sha256:…`).
    pub value: String,
    /// Its bytes in the file.
    pub span: Range<usize>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Why a dependency will not be updated, in words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// The chart is a path in a Git or Bucket source, versioned with the source, not a chart repo.
    LocalChart,
    /// The chart comes from a `GitRepository` or `Bucket`.
    UnsupportedSource,
    /// The referenced `HelmRepository`/`OCIRepository`/`HelmChart` is not in the scanned tree.
    SourceNotFound,
    /// The version (or what locates the chart) uses Flux post-build `${VAR}` substitution.
    Substitution,
    /// A range, wildcard, channel or missing version: it moves without a commit.
    FloatingVersion,
    /// The version is a YAML alias; upkeep edits only literal values.
    VersionAlias,
    /// A kustomize patch of a HelmRelease defined elsewhere (no chart of its own).
    ValuesPatch,
    /// The document could not be read (syntax error, duplicate keys, wrong types).
    Unparsable,
    /// A Plan that upgrades something other than k3s.
    OtherSystem,
    /// Pinned by digest only; upkeep follows tags.
    DigestOnly,
    /// A digest next to a tag, written so upkeep cannot rewrite it (an alias, escapes).
    DigestPinned,
    /// No version is recorded where upkeep can read it.
    NoVersion,
    /// The reference cannot be pulled as written (an OCIRepository `ref.tag` holding
    /// `tag@sha256:…`, which source-controller sends to the registry as one tag).
    InvalidRef,
    /// The source exists but source-controller refuses it (an `oci://` HelmRepository without
    /// `type: oci`).
    InvalidSource,
    /// A reference without a namespace matches same-named sources in several namespaces.
    AmbiguousSource,
    /// The object has no `metadata.name`: the API server never creates it, so it is never applied.
    Unnamed,
    /// No cluster's Flux Kustomizations apply the file (`.archive/`, templates, retired clusters).
    NotApplied,
}

impl SkipReason {
    /// The kebab-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::LocalChart => "local-chart",
            SkipReason::UnsupportedSource => "unsupported-source",
            SkipReason::SourceNotFound => "source-not-found",
            SkipReason::Substitution => "substitution",
            SkipReason::FloatingVersion => "floating-version",
            SkipReason::VersionAlias => "version-alias",
            SkipReason::ValuesPatch => "values-patch",
            SkipReason::Unparsable => "unparsable",
            SkipReason::OtherSystem => "other-system",
            SkipReason::DigestOnly => "digest-only",
            SkipReason::DigestPinned => "digest-pinned",
            SkipReason::NoVersion => "no-version",
            SkipReason::InvalidRef => "invalid-ref",
            SkipReason::InvalidSource => "invalid-source",
            SkipReason::AmbiguousSource => "ambiguous-source",
            SkipReason::Unnamed => "unnamed",
            SkipReason::NotApplied => "not-applied",
        }
    }
}

/// A skip and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// The machine-readable reason.
    pub reason: SkipReason,
    /// What it means for this dependency and what to do about it.
    pub message: String,
}

/// The role of a k3s Plan: servers must be upgraded before agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanRole {
    /// Upgrades control-plane nodes.
    Server,
    /// Upgrades worker nodes (usually waits for the server plan).
    Agent,
    /// Could not tell from node selectors, `prepare` or name.
    Unknown,
}

/// Where the object that owns a dependency is defined (may differ from where its version is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// File relative to the scanned root.
    pub file: String,
    /// 1-based line where the document starts.
    pub line: usize,
}

/// One versioned thing found in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// Stable identifier: `<kind>/<namespace>/<name>` (see `docs/scan-json.md`).
    pub id: String,
    /// What carries the version.
    pub kind: Kind,
    /// Which part of the platform it is.
    pub component: Component,
    /// The object's `metadata.name` (for Flux components: the directory).
    pub name: String,
    /// The object's effective namespace, if one is known.
    pub namespace: Option<String>,
    /// What to look versions up in; absent when not even that is known.
    pub package: Option<Package>,
    /// The version as written; absent when there is none.
    pub current: Option<String>,
    /// Where the version scalar is; absent when there is no version scalar.
    #[serde(skip)]
    pub location: Option<Location>,
    /// Why it will not be updated, if so.
    pub skip: Option<Skip>,
    /// For Plans: server or agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<PlanRole>,
    /// Where the owning object is defined.
    pub manifest: Manifest,
    /// The clusters whose Flux Kustomizations apply the owning object's file (named by their
    /// synced path, `clusters/production`): empty when none does, `None` when the repository
    /// has no Flux entry point to tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
}

impl Dependency {
    /// The file the version is in, else the manifest's.
    pub fn file(&self) -> &str {
        self.location.as_ref().map_or(&self.manifest.file, |l| &l.file)
    }

    /// Line of the version, else of the manifest.
    pub fn line(&self) -> usize {
        self.location.as_ref().map_or(self.manifest.line, |l| l.line)
    }

    /// Column of the version, else 1.
    pub fn column(&self) -> usize {
        self.location.as_ref().map_or(1, |l| l.column)
    }
}

/// A problem in one file that did not stop the scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// File relative to the scanned root.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

/// What a release says about itself that matters for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignalKind {
    /// Fixes a vulnerability (CVE/GHSA ids, "security" wording, artifacthub `kind: security`).
    Security,
    /// Needs attention when upgrading ("BREAKING", "action required", artifacthub `removed`).
    Breaking,
    /// The chart or version is deprecated (index `deprecated: true`, artifacthub `deprecated`).
    Deprecated,
    /// The chart declares a Kubernetes version constraint (`kubeVersion`).
    KubeVersion,
}

impl SignalKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Security => "security",
            SignalKind::Breaking => "breaking",
            SignalKind::Deprecated => "deprecated",
            SignalKind::KubeVersion => "kube-version",
        }
    }
}

/// One signal and the words that raised it (a CVE id, the constraint, the matching line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct Signal {
    /// What kind.
    pub kind: SignalKind,
    /// The evidence, short.
    pub detail: String,
}

/// A package's releases, shared: every dependency on the same chart reads one list (forty
/// HelmReleases on one app-template chart held forty copies, 3 MiB of a scan's peak).
pub type SharedReleases = std::sync::Arc<[Release]>;

/// One upstream release of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Release {
    /// The version or tag, as upstream writes it.
    pub version: String,
    /// When it was published, if the datasource knows.
    pub published: Option<jiff::Timestamp>,
    /// Marked as a prerelease upstream (GitHub) or by its version.
    pub prerelease: bool,
    /// Marked deprecated upstream.
    pub deprecated: bool,
    /// The application version a chart ships.
    pub app_version: Option<String>,
    /// The chart's `kubeVersion` constraint.
    pub kube_version: Option<String>,
    /// Release notes: a GitHub release body, or a chart's artifacthub changes as a list.
    pub notes: Option<String>,
    /// A page about this release (GitHub release page, chart download URL).
    pub url: Option<String>,
    /// The chart archive's digest as the index lists it (`sha256` hex), for a verifier or a
    /// PR body to pin against.
    #[serde(default)]
    pub digest: Option<String>,
    /// Signals read from the notes and metadata.
    pub signals: Vec<Signal>,
}

/// A dependency whose versions could not be learned this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupFailure {
    /// The dependency.
    pub id: String,
    /// What was asked (credentials removed).
    pub url: String,
    /// What went wrong.
    pub message: String,
}
