//! Flux `HelmRelease`s and the sources that say where their charts come from.
//!
//! What it reads (helm-controller `docs/spec/v2/helmreleases.md`, source-controller v1 specs):
//!
//! - `HelmRelease` (`helm.toolkit.fluxcd.io/v2`, `v2beta2`, `v2beta1`): either
//!   `spec.chart.spec.{chart,version,sourceRef}` or `spec.chartRef{kind,name,namespace}`.
//! - `HelmRepository`: `spec.url` (`https://` or `oci://`) and `spec.type` (`oci`).
//! - `OCIRepository`: `spec.url` and `spec.ref.{tag,semver,digest}`; a chartRef target, or a
//!   dependency of its own when no HelmRelease points at it (OCI artifacts for Kustomizations).
//! - `HelmChart`: `spec.{chart,version,sourceRef}`; a chartRef target, or a dependency of its own.
//!
//! A `sourceRef` without a namespace means the HelmRelease's own namespace, which may be set by a
//! parent kustomization ([`super::kustomize`]). When one side's namespace is unknown, a source is
//! still linked if exactly one source of that kind has that name. The chart named `longhorn` is
//! the Longhorn platform component. A HelmRelease with a chartRef gets the version location of
//! the object it points at, so the edit lands where the version is.
//!
//! A reference nothing in the scanned files answers is looked up in the config's `sources:`
//! ([`ExternalSource`]): repositories often split a platform repository (the HelmRepositories)
//! from an apps repository (the releases). A reference that answers to several same-named
//! sources in different namespaces is reported as ambiguous, with the candidates.
//!
//! What the API server or source-controller would refuse is reported, not updated: an object
//! without `metadata.name`, a field that must be a mapping but is not, an `oci://`
//! HelmRepository without `type: oci`, and an OCIRepository tag that is not a tag.

use std::collections::{HashMap, HashSet};

use super::{Extractor, Findings, ManifestDoc, SourceFile, VersionValue};
use crate::model::{Component, Datasource, Dependency, DigestPin, Kind, Manifest, Package, Skip, SkipReason};
use crate::yaml::Node;

mod external;
mod skips;

pub use external::{ExternalKind, ExternalSource};
use skips::{
    ambiguous, ambiguous_external, broken_source, invalid_tag, not_a_map, not_found, refused_oci, unnamed,
    unsupported_chart_source,
};

/// A source object (`HelmRepository`, `OCIRepository`, `HelmChart`) keyed by kind, namespace, name.
#[derive(Debug, Clone)]
struct Source {
    namespace: Option<String>,
    name: String,
    file: String,
    manifest: Manifest,
    detail: SourceDetail,
    /// Why the API server would refuse it (a field that must be a mapping is not).
    invalid: Option<String>,
}

/// What a reference finds among the scanned sources.
enum Found<'a> {
    One(&'a Source),
    Missing,
    /// Same-named sources in several namespaces, and the reference names none.
    Ambiguous(Vec<&'a Source>),
}

#[derive(Debug, Clone)]
enum SourceDetail {
    /// `refused`: an `oci://` URL without `type: oci`, which source-controller rejects.
    HelmRepository {
        url: Option<String>,
        oci: bool,
        refused: bool,
    },
    OciRepository {
        url: Option<String>,
        version: VersionValue,
        field: &'static str,
        digest: VersionValue,
    },
    HelmChart {
        chart: Option<String>,
        version: VersionValue,
        source: Option<SourceRef>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceRef {
    kind: String,
    name: String,
    namespace: Option<String>,
}

/// How a release names its chart.
#[derive(Debug, Clone)]
enum ChartSource {
    /// `spec.chart.spec`.
    Spec { chart: Option<String>, version: VersionValue, source: Option<SourceRef> },
    /// `spec.chartRef`.
    Ref(SourceRef),
    /// Neither: a patch of a release defined elsewhere.
    None { version: VersionValue },
}

#[derive(Debug, Clone)]
struct Release {
    name: String,
    namespace: Option<String>,
    manifest: Manifest,
    patched_by: Option<String>,
    chart: ChartSource,
    invalid: Option<String>,
    unsupported_api: Option<String>,
    /// No `metadata.name`: the API server never creates it.
    unnamed: bool,
}

impl Release {
    /// Why the API server or Flux would not take this release at all, if so.
    fn refused(&self) -> Option<Skip> {
        if let Some(message) = &self.unsupported_api {
            return Some(Skip { reason: SkipReason::UnsupportedSource, message: message.clone() });
        }
        if let Some(message) = &self.invalid {
            return Some(Skip { reason: SkipReason::Unparsable, message: message.clone() });
        }
        // A kustomize patch is never applied on its own (and one with a `target:` may leave the
        // name out): it is a values patch, whatever its name.
        (self.unnamed && self.patched_by.is_none()).then(|| unnamed("HelmRelease", &self.manifest))
    }
}

/// The HelmRelease manager.
#[derive(Debug, Default)]
pub struct HelmReleases {
    /// By kind, then name: looked up without building a key.
    sources: HashMap<&'static str, HashMap<String, Vec<Source>>>,
    /// In file order, one share per thread that read files: joined by moving the shares, not
    /// the releases, and resolved a share per thread.
    releases: Vec<Vec<Release>>,
    unparsable: Vec<Dependency>,
    external: Vec<ExternalSource>,
}

/// The files of patches that set a release's version, by its namespace and name.
type VersionedPatches = HashMap<(Option<String>, String), Vec<String>>;

/// The sources releases point at, by kind, file, namespace and name: the others are
/// dependencies of their own.
type Referenced = HashSet<(&'static str, String, Option<String>, String)>;

const HELM_REPOSITORY: &str = "HelmRepository";
const OCI_REPOSITORY: &str = "OCIRepository";
const HELM_CHART: &str = "HelmChart";

impl Extractor for HelmReleases {
    fn id(&self) -> &'static str {
        "helmrelease"
    }

    fn file(&mut self, file: &SourceFile, _out: &mut Findings) {
        let Some(error) = &file.stream.error else { return };
        // The documents from the broken one on could not be read; account for the HelmReleases
        // among them by their text, so none disappears from the report.
        let from = file.stream.documents.last().map_or(0, |d| d.range.end);
        let rest = file.text.get(from..).unwrap_or("");
        let first_line = file.text[..from.min(file.text.len())].matches('\n').count() + 1;
        for (offset, chunk) in split_documents(rest) {
            if !chunk.lines().any(|l| l.trim_end() == "kind: HelmRelease") {
                continue;
            }
            let name = metadata_field(chunk, "name").unwrap_or("<unnamed>").to_string();
            let namespace = metadata_field(chunk, "namespace").map(str::to_string);
            let line = first_line + offset;
            self.unparsable.push(Dependency {
                id: format!("helmrelease/{}/{}", namespace.as_deref().unwrap_or("-"), name),
                kind: Kind::HelmRelease,
                component: Component::App,
                name,
                namespace,
                package: None,
                current: None,
                location: None,
                skip: Some(Skip {
                    reason: SkipReason::Unparsable,
                    message: format!(
                        "the YAML stream breaks at line {}, column {} ({}); fix it to have this release updated",
                        error.line, error.column, error.message
                    ),
                }),
                role: None,
                manifest: Manifest { file: file.relative.clone(), line },
                clusters: None,
            });
        }
    }

    fn merge(&mut self, later: Box<dyn Extractor>) {
        // Trait upcasting: every manager is `Any`; `later` is this manager from another thread.
        let later: Box<dyn std::any::Any> = later;
        let Ok(later) = later.downcast::<HelmReleases>() else { return };
        let HelmReleases { sources, releases, unparsable, external: _ } = *later;
        for (kind, by_name) in sources {
            let mine = self.sources.entry(kind).or_default();
            for (name, found) in by_name {
                mine.entry(name).or_default().extend(found);
            }
        }
        self.releases.extend(releases);
        self.unparsable.extend(unparsable);
    }

    fn document(&mut self, doc: &ManifestDoc<'_>, _out: &mut Findings) {
        let flux_source = doc.api_version.starts_with("source.toolkit.fluxcd.io/");
        match doc.kind {
            "HelmRelease"
                if doc.api_version.starts_with("helm.toolkit.fluxcd.io/")
                    || doc.api_version.starts_with("helm.fluxcd.io/") =>
            {
                let release = read_release(doc);
                match self.releases.last_mut() {
                    Some(share) => share.push(release),
                    None => self.releases.push(vec![release]),
                }
            }
            HELM_REPOSITORY if flux_source => {
                self.add_source(HELM_REPOSITORY, doc, read_helm_repository(doc), &[&["spec"]])
            }
            OCI_REPOSITORY if flux_source => {
                self.add_source(OCI_REPOSITORY, doc, read_oci_repository(doc), &[&["spec"], &["spec", "ref"]])
            }
            HELM_CHART if flux_source => {
                self.add_source(HELM_CHART, doc, read_helm_chart(doc), &[&["spec"], &["spec", "sourceRef"]])
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Findings) {
        out.dependencies.append(&mut self.unparsable);
        let referenced = self.resolve_all(&self.versioned_patches(), &mut out.dependencies);
        // Sources no release points at are versioned things of their own.
        for kind in [OCI_REPOSITORY, HELM_CHART] {
            for sources in self.sources.get(kind).into_iter().flat_map(HashMap::values) {
                for source in sources {
                    let key = (kind, source.file.clone(), source.namespace.clone(), source.name.clone());
                    if !referenced.contains(&key) {
                        out.dependencies.push(self.standalone_source(source));
                    }
                }
            }
        }
    }
}

impl HelmReleases {
    /// The manager, with sources declared outside the scanned files.
    pub fn with_sources(external: Vec<ExternalSource>) -> Self {
        HelmReleases { external, ..HelmReleases::default() }
    }

    fn add_source(&mut self, kind: &'static str, doc: &ManifestDoc<'_>, detail: SourceDetail, maps: &[&[&str]]) {
        let Some(name) = doc.name else { return };
        self.sources.entry(kind).or_default().entry(name.to_string()).or_default().push(Source {
            namespace: doc.namespace.map(str::to_string),
            name: name.to_string(),
            file: doc.file.relative.clone(),
            manifest: doc.manifest(),
            detail,
            invalid: doc.invalid.map(str::to_string).or_else(|| not_a_map(doc.root(), maps)),
        });
    }

    /// Every release resolved, in order, onto `deps`; returns the sources they point at. Each
    /// release is resolved on its own, so the shares read on several threads are resolved on
    /// as many.
    fn resolve_all(&self, versioned_patches: &VersionedPatches, deps: &mut Vec<Dependency>) -> Referenced {
        let resolve = |releases: &[Release], deps: &mut Vec<Dependency>, referenced: &mut Referenced| {
            deps.extend(releases.iter().map(|r| self.resolve_release(r, versioned_patches, referenced)));
        };
        let total = self.releases.iter().map(Vec::len).sum();
        deps.reserve(total);
        let mut referenced = Referenced::new();
        // A thread per share only when there are releases enough to earn one (a large
        // repository of few releases still reads in several shares).
        let threaded = self.releases.len() > 1 && super::load::chunking(total).is_some();
        let Some((first, later)) = self.releases.split_first().filter(|_| threaded) else {
            for share in &self.releases {
                resolve(share, deps, &mut referenced);
            }
            return referenced;
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = later
                .iter()
                .map(|share| {
                    s.spawn(move || {
                        let (mut deps, mut referenced) = (Vec::with_capacity(share.len()), Referenced::new());
                        resolve(share, &mut deps, &mut referenced);
                        (deps, referenced)
                    })
                })
                .collect();
            resolve(first, deps, &mut referenced);
            for handle in handles {
                let (theirs, found) = super::load::joined(handle);
                deps.extend(theirs);
                referenced.extend(found);
            }
        });
        referenced
    }

    /// Find a source by kind, name and namespace. Several candidates (the same repository
    /// declared per cluster) resolve to the one nearest the referring file.
    fn find(&self, kind: &'static str, name: &str, namespace: Option<&str>, from_file: &str) -> Found<'_> {
        let Some(candidates) = self.sources.get(kind).and_then(|by_name| by_name.get(name)) else {
            return Found::Missing;
        };
        let exact: Vec<&Source> =
            candidates.iter().filter(|s| namespace.is_some() && s.namespace.as_deref() == namespace).collect();
        let pool: Vec<&Source> = if !exact.is_empty() {
            exact
        } else {
            // Only when a namespace is unknown on one side may the name alone decide, and only in
            // the same folder: kustomize or Flux gives both the same namespace there, while a
            // unique name elsewhere is a guess (issue 9, item 4).
            let here = super::kustomize::dir_of(from_file);
            let loose: Vec<&Source> = candidates
                .iter()
                .filter(|s| namespace.is_none() || s.namespace.is_none())
                .filter(|s| super::kustomize::dir_of(&s.file) == here)
                .collect();
            let distinct: HashSet<Option<&str>> = loose.iter().map(|s| s.namespace.as_deref()).collect();
            if distinct.len() > 1 {
                return Found::Ambiguous(loose);
            }
            // Nothing in this folder, the reference's namespace unknown, and same-named sources
            // in several namespaces elsewhere: not "missing" but ambiguous, naming them.
            if loose.is_empty() && namespace.is_none() {
                let elsewhere: HashSet<Option<&str>> = candidates.iter().map(|s| s.namespace.as_deref()).collect();
                if elsewhere.len() > 1 {
                    return Found::Ambiguous(candidates.iter().collect());
                }
            }
            loose
        };
        pool.into_iter()
            .max_by_key(|&s: &&Source| (common_prefix(&s.file, from_file), std::cmp::Reverse(s.file.as_str())))
            .map_or(Found::Missing, Found::One)
    }

    /// The package of chart `chart` from the HelmRepository `name`, or why there is none.
    fn helm_package(&self, chart: &str, name: &str, namespace: Option<&str>, from: &str) -> Result<Package, Skip> {
        let package = |url: &str, oci: bool| Package {
            datasource: if oci { Datasource::Oci } else { Datasource::Helm },
            registry: url.to_string(),
            name: chart.to_string(),
        };
        match self.find(HELM_REPOSITORY, name, namespace, from) {
            Found::One(source) => {
                if let Some(why) = &source.invalid {
                    return Err(broken_source(HELM_REPOSITORY, source, why));
                }
                match &source.detail {
                    SourceDetail::HelmRepository { url: Some(_), refused: true, .. } => Err(refused_oci(source)),
                    SourceDetail::HelmRepository { url: Some(url), oci, .. } => Ok(package(url, *oci)),
                    _ => Err(Skip {
                        reason: SkipReason::SourceNotFound,
                        message: format!("HelmRepository {name} has no spec.url"),
                    }),
                }
            }
            Found::Ambiguous(candidates) => Err(ambiguous(HELM_REPOSITORY, name, &candidates)),
            Found::Missing => match external::pick(&self.external, ExternalKind::HelmRepository, name, namespace) {
                Ok(Some(e)) => Ok(package(&e.url, e.url.starts_with("oci://"))),
                Ok(None) => Err(not_found(HELM_REPOSITORY, name, namespace)),
                Err(several) => Err(ambiguous_external(HELM_REPOSITORY, name, &several)),
            },
        }
    }

    /// Files of patches that set a version, by the release they patch.
    fn versioned_patches(&self) -> VersionedPatches {
        let mut map = VersionedPatches::new();
        for r in self.releases.iter().flatten() {
            if let ChartSource::None { version } | ChartSource::Spec { chart: None, version, .. } = &r.chart
                && let Some(v) = version.value()
            {
                map.entry((r.namespace.clone(), r.name.clone()))
                    .or_default()
                    .push(format!("{} (`{v}`)", r.manifest.file));
            }
        }
        map
    }

    /// The base release a versioned patch applies to: same name and namespace, has a chart.
    fn base_of(&self, patch: &Release) -> Option<&Release> {
        self.releases
            .iter()
            .flatten()
            .filter(|r| r.name == patch.name && r.namespace == patch.namespace)
            .filter(|r| matches!(r.chart, ChartSource::Spec { chart: Some(_), .. } | ChartSource::Ref(_)))
            .max_by_key(|r| common_prefix(&r.manifest.file, &patch.manifest.file))
    }

    fn resolve_release(
        &self,
        release: &Release,
        versioned_patches: &VersionedPatches,
        referenced: &mut Referenced,
    ) -> Dependency {
        let mut dep = Dependency {
            id: format!("helmrelease/{}/{}", release.namespace.as_deref().unwrap_or("-"), release.name),
            kind: Kind::HelmRelease,
            component: Component::App,
            name: release.name.clone(),
            namespace: release.namespace.clone(),
            package: None,
            current: None,
            location: None,
            skip: None,
            role: None,
            manifest: release.manifest.clone(),
            clusters: None,
        };
        if let Some(skip) = release.refused() {
            dep.skip = Some(skip);
            return dep;
        }
        let (chart, version, source) = match &release.chart {
            ChartSource::Ref(chart_ref) => return self.resolve_chart_ref(dep, release, chart_ref, referenced),
            ChartSource::None { version } | ChartSource::Spec { chart: None, version, .. } => {
                // A patch document. With a version it is where the version really lives: take the
                // chart and source from the release it patches.
                let base = match version {
                    VersionValue::Missing => None,
                    _ => self.base_of(release),
                };
                let Some(ChartSource::Spec { chart: Some(chart), source, .. }) = base.map(|b| &b.chart) else {
                    let used_by =
                        release.patched_by.as_deref().map(|k| format!(" (a patch in {k})")).unwrap_or_default();
                    dep.skip = Some(Skip {
                        reason: SkipReason::ValuesPatch,
                        message: format!(
                            "no chart of its own{used_by}: it patches HelmRelease {}/{} defined elsewhere",
                            release.namespace.as_deref().unwrap_or("-"),
                            release.name
                        ),
                    });
                    dep.current = version.value().map(str::to_string);
                    // Where the bytes are, even unlinked: an edit of this file alone (the proof
                    // re-extracts one file) must still find the version it wrote.
                    dep.location = version.location().cloned();
                    return dep;
                };
                (chart, version, source.as_ref())
            }
            ChartSource::Spec { chart: Some(chart), version, source } => (chart, version, source.as_ref()),
        };
        self.resolve_chart(dep, release, chart, version, source, versioned_patches)
    }

    /// A release's chart, version and HelmRepository, once the version's document is known.
    fn resolve_chart(
        &self,
        mut dep: Dependency,
        release: &Release,
        chart: &str,
        version: &VersionValue,
        source: Option<&SourceRef>,
        versioned_patches: &VersionedPatches,
    ) -> Dependency {
        dep.current = version.value().map(str::to_string);
        dep.location = version.location().cloned();
        if chart == "longhorn" {
            dep.component = Component::Longhorn;
        }
        if chart.starts_with("./") || chart.starts_with("../") || chart.starts_with('/') {
            dep.skip = Some(Skip {
                reason: SkipReason::LocalChart,
                message: format!(
                    "chart `{chart}` is a path in its source; it changes with that source, not by version"
                ),
            });
            return dep;
        }
        let Some(source) = source else {
            dep.skip = Some(Skip {
                reason: SkipReason::SourceNotFound,
                message: "spec.chart.spec.sourceRef is missing".into(),
            });
            return dep;
        };
        if source.kind != HELM_REPOSITORY {
            dep.skip = Some(unsupported_chart_source(source));
            return dep;
        }
        if chart.contains("${") || source.name.contains("${") {
            dep.skip = Some(Skip {
                reason: SkipReason::Substitution,
                message: "the chart or its source is named through Flux post-build substitution (`${...}`)".into(),
            });
            return dep;
        }
        let ns = source.namespace.as_deref().or(release.namespace.as_deref());
        let unlinked = match self.helm_package(chart, &source.name, ns, &release.manifest.file) {
            Ok(package) => {
                dep.package = Some(package);
                None
            }
            Err(skip) => Some(skip),
        };
        if let Some(mut skip) = version.problem("spec.chart.spec.version") {
            if *version == VersionValue::Missing
                && let Some(patches) = versioned_patches.get(&(release.namespace.clone(), release.name.clone()))
            {
                skip.message = format!("no version here; patches set it: {}", patches.join(", "));
                skip.reason = SkipReason::NoVersion;
            }
            dep.skip = Some(skip);
            return dep;
        }
        dep.skip = unlinked;
        dep
    }

    fn resolve_chart_ref(
        &self,
        mut dep: Dependency,
        release: &Release,
        chart_ref: &SourceRef,
        referenced: &mut Referenced,
    ) -> Dependency {
        let kind = match chart_ref.kind.as_str() {
            OCI_REPOSITORY => OCI_REPOSITORY,
            HELM_CHART => HELM_CHART,
            other => {
                dep.skip = Some(Skip {
                    reason: SkipReason::UnsupportedSource,
                    message: format!("chartRef points at a {other}, which has no chart versions to follow"),
                });
                return dep;
            }
        };
        if chart_ref.name.contains("${") {
            dep.skip = Some(Skip {
                reason: SkipReason::Substitution,
                message: "chartRef is named through Flux post-build substitution (`${...}`)".into(),
            });
            return dep;
        }
        let ns = chart_ref.namespace.as_deref().or(release.namespace.as_deref());
        let source = match self.find(kind, &chart_ref.name, ns, &release.manifest.file) {
            Found::One(source) => source,
            Found::Ambiguous(candidates) => {
                dep.skip = Some(ambiguous(kind, &chart_ref.name, &candidates));
                return dep;
            }
            Found::Missing => return self.external_chart_ref(dep, kind, &chart_ref.name, ns),
        };
        referenced.insert((kind, source.file.clone(), source.namespace.clone(), source.name.clone()));
        let linked = self.standalone_source(source);
        dep.component = linked.component;
        dep.package = linked.package;
        dep.current = linked.current;
        dep.location = linked.location;
        dep.skip = linked.skip;
        dep
    }

    /// A chartRef nothing scanned answers: an OCIRepository declared in `sources:` names the
    /// package, but its version is in the other repository.
    fn external_chart_ref(&self, mut dep: Dependency, kind: &str, name: &str, ns: Option<&str>) -> Dependency {
        let found = if kind == OCI_REPOSITORY {
            external::pick(&self.external, ExternalKind::OciRepository, name, ns)
        } else {
            Ok(None)
        };
        dep.skip = Some(match found {
            Ok(Some(e)) => {
                dep.package = oci_package(&e.url);
                Skip {
                    reason: SkipReason::NoVersion,
                    message: format!(
                        "the version is the spec.ref of OCIRepository {name}, which another repository defines (`sources:` at {}); update it there",
                        e.origin
                    ),
                }
            }
            Ok(None) => not_found(kind, name, ns),
            Err(several) => ambiguous_external(kind, name, &several),
        });
        dep
    }

    /// A dependency for an `OCIRepository` or `HelmChart`, on its own or as a chartRef target.
    fn standalone_source(&self, source: &Source) -> Dependency {
        let mut dep = Dependency {
            id: String::new(),
            kind: Kind::OciRepository,
            component: Component::App,
            name: source.name.clone(),
            namespace: source.namespace.clone(),
            package: None,
            current: None,
            location: None,
            skip: None,
            role: None,
            manifest: source.manifest.clone(),
            clusters: None,
        };
        let ns = source.namespace.as_deref().unwrap_or("-");
        match &source.detail {
            SourceDetail::OciRepository { .. } => dep.id = format!("ocirepository/{ns}/{}", source.name),
            SourceDetail::HelmChart { .. } => {
                dep.id = format!("helmchart/{ns}/{}", source.name);
                dep.kind = Kind::HelmChart;
            }
            SourceDetail::HelmRepository { .. } => {}
        }
        if let Some(why) = &source.invalid {
            dep.skip = Some(Skip { reason: SkipReason::Unparsable, message: why.clone() });
            return dep;
        }
        match &source.detail {
            SourceDetail::OciRepository { url, version, field, digest } => {
                oci_dependency(&mut dep, url.as_deref().unwrap_or(""), version, field, digest);
            }
            SourceDetail::HelmChart { chart, version, source: chart_source } => {
                self.helmchart_dependency(&mut dep, source, chart.as_deref().unwrap_or(""), version, chart_source);
            }
            SourceDetail::HelmRepository { .. } => {}
        }
        dep
    }

    fn helmchart_dependency(
        &self,
        dep: &mut Dependency,
        source: &Source,
        chart: &str,
        version: &VersionValue,
        chart_source: &Option<SourceRef>,
    ) {
        dep.current = version.value().map(str::to_string);
        dep.location = version.location().cloned();
        if chart == "longhorn" {
            dep.component = Component::Longhorn;
        }
        dep.skip = match chart_source {
            // Flux ignores spec.version for these sources, so whether one is written or not, there
            // is nothing to follow (source-controller api/v1 helmchart_types.go, `Version`).
            Some(s) if s.kind != HELM_REPOSITORY => Some(unsupported_chart_source(s)),
            None => Some(Skip { reason: SkipReason::SourceNotFound, message: "spec.sourceRef is missing".into() }),
            Some(s) => {
                let ns = s.namespace.as_deref().or(source.namespace.as_deref());
                let package = self.helm_package(chart, &s.name, ns, &source.file);
                dep.package = package.as_ref().ok().cloned();
                version.problem("spec.version").or(package.err())
            }
        };
    }
}

/// Fill in an OCIRepository's dependency: its tag, the digest pinned beside it, its package.
fn oci_dependency(dep: &mut Dependency, url: &str, version: &VersionValue, field: &str, digest: &VersionValue) {
    // An OCIRepository names a tag, byte for byte as the registry lists it.
    dep.current = version.value().map(str::to_string);
    let pin = match (digest.value(), digest.location()) {
        (Some(value), Some(at)) if at.verbatim => {
            Some(DigestPin { value: value.to_string(), span: at.span.clone(), line: at.line, column: at.column })
        }
        _ => None,
    };
    let substituted_digest = pin.as_ref().is_some_and(|p| p.value.contains("${"));
    let unpinnable = *digest != VersionValue::Missing && pin.is_none();
    dep.location = version.location().cloned().map(|mut l| {
        l.literal_tag = true;
        l.digest = pin;
        l
    });
    dep.package = oci_package(url);
    if dep.package.as_ref().is_some_and(|p| p.name == "longhorn") {
        dep.component = Component::Longhorn;
    }
    let skip = |reason, message: &str| Some(Skip { reason, message: message.to_string() });
    dep.skip = if url.contains("${") {
        skip(SkipReason::Substitution, "spec.url uses Flux post-build substitution")
    } else if dep.package.is_none() {
        skip(SkipReason::Unparsable, &format!("spec.url `{url}` is not an oci:// URL"))
    } else if field == "spec.ref.digest" && *version == VersionValue::Missing {
        skip(SkipReason::DigestOnly, "pinned by spec.ref.digest only; upkeep follows tags")
    } else if substituted_digest {
        skip(
            SkipReason::Substitution,
            "spec.ref.digest is filled in by Flux post-build substitution, which upkeep cannot follow",
        )
    } else if unpinnable {
        skip(
            SkipReason::DigestPinned,
            "spec.ref.digest is written in a way upkeep cannot rewrite (an alias or escapes): write it plainly",
        )
    } else if *version == VersionValue::Missing {
        skip(
            SkipReason::FloatingVersion,
            "no spec.ref: Flux follows the `latest` tag; pin spec.ref.tag to get update PRs",
        )
    } else {
        version.problem(field).or_else(|| if field == "spec.ref.tag" { invalid_tag(version) } else { None })
    };
}

/// `oci://registry/path/name` as a package: registry `oci://registry/path`, name `name`.
fn oci_package(url: &str) -> Option<Package> {
    let (registry, name) = url.trim_end_matches('/').rsplit_once('/').filter(|_| url.starts_with("oci://"))?;
    Some(Package { datasource: Datasource::Oci, registry: registry.to_string(), name: name.to_string() })
}

fn read_source_ref(node: Option<&Node>) -> Option<SourceRef> {
    let node = node?;
    Some(SourceRef {
        kind: node.str_at(&["kind"]).unwrap_or(HELM_REPOSITORY).to_string(),
        name: node.str_at(&["name"])?.to_string(),
        namespace: node.str_at(&["namespace"]).map(str::to_string),
    })
}

fn read_release(doc: &ManifestDoc<'_>) -> Release {
    let root = doc.root();
    let unsupported_api = doc
        .api_version
        .starts_with("helm.fluxcd.io/")
        .then(|| format!("{} is Flux v1's Helm Operator; migrate to helm.toolkit.fluxcd.io/v2", doc.api_version));
    let chart = if let Some(chart_ref) = root.path(&["spec", "chartRef"]) {
        match read_source_ref(Some(chart_ref)) {
            Some(r) => ChartSource::Ref(r),
            None => ChartSource::None { version: VersionValue::Missing },
        }
    } else if root.path(&["spec", "chart", "spec", "chart"]).is_some() {
        ChartSource::Spec {
            chart: root.str_at(&["spec", "chart", "spec", "chart"]).map(str::to_string),
            version: doc.version_at(&["spec", "chart", "spec", "version"]),
            source: read_source_ref(root.path(&["spec", "chart", "spec", "sourceRef"])),
        }
    } else {
        ChartSource::None { version: doc.version_at(&["spec", "chart", "spec", "version"]) }
    };
    Release {
        name: doc.name_or_unnamed().to_string(),
        namespace: doc.namespace.map(str::to_string),
        manifest: doc.manifest(),
        patched_by: doc.patched_by.map(str::to_string),
        chart,
        invalid: doc.invalid.map(str::to_string).or_else(|| {
            let maps: [&[&str]; 5] = [
                &["spec"],
                &["spec", "chart"],
                &["spec", "chart", "spec"],
                &["spec", "chart", "spec", "sourceRef"],
                &["spec", "chartRef"],
            ];
            not_a_map(root, &maps)
        }),
        unsupported_api,
        unnamed: doc.name.is_none(),
    }
}

fn read_helm_repository(doc: &ManifestDoc<'_>) -> SourceDetail {
    let root = doc.root();
    let url = root.str_at(&["spec", "url"]).map(str::to_string);
    let typed_oci = root.str_at(&["spec", "type"]) == Some("oci");
    let oci_url = url.as_deref().is_some_and(|u| u.starts_with("oci://"));
    SourceDetail::HelmRepository { url, oci: typed_oci || oci_url, refused: oci_url && !typed_oci }
}

fn read_oci_repository(doc: &ManifestDoc<'_>) -> SourceDetail {
    let root = doc.root();
    let url = root.str_at(&["spec", "url"]).map(str::to_string);
    // Flux's precedence: digest, then semver, then tag (source-controller ocirepositories.md).
    // Flux uses the digest when there is one: a tag beside it is followed and the digest moved
    // with it (run asks the registry); a tag beside a semver range is decoration.
    let has = |key: &str| root.path(&["spec", "ref", key]).is_some();
    let digest = if has("digest") { doc.version_at(&["spec", "ref", "digest"]) } else { VersionValue::Missing };
    let (version, field) = if has("digest") && has("tag") {
        // Flux pulls the digest; upkeep moves the tag and the digest together.
        (doc.version_at(&["spec", "ref", "tag"]), "spec.ref.tag")
    } else if has("digest") {
        (VersionValue::Missing, "spec.ref.digest")
    } else if has("semver") {
        (doc.version_at(&["spec", "ref", "semver"]), "spec.ref.semver")
    } else if has("tag") {
        (doc.version_at(&["spec", "ref", "tag"]), "spec.ref.tag")
    } else {
        (VersionValue::Missing, "spec.ref.tag")
    };
    SourceDetail::OciRepository { url, version, field, digest }
}

fn read_helm_chart(doc: &ManifestDoc<'_>) -> SourceDetail {
    let root = doc.root();
    SourceDetail::HelmChart {
        chart: root.str_at(&["spec", "chart"]).map(str::to_string),
        version: doc.version_at(&["spec", "version"]),
        source: read_source_ref(root.path(&["spec", "sourceRef"])),
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.split('/').zip(b.split('/')).take_while(|(x, y)| x == y).count()
}

/// Split text into documents at `---` lines; yields (line offset, chunk).
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut start_line = 0;
    let mut pos = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with("---") && pos > start {
            out.push((start_line, &text[start..pos]));
            start = pos;
            start_line = i;
        }
        pos += line.len();
    }
    if pos > start {
        out.push((start_line, &text[start..pos]));
    }
    out
}

/// A `metadata.<field>` value read from raw text, for documents the parser could not read.
fn metadata_field<'a>(chunk: &'a str, field: &str) -> Option<&'a str> {
    let mut in_metadata = false;
    for line in chunk.lines() {
        if line.starts_with("metadata:") {
            in_metadata = true;
            continue;
        }
        if in_metadata {
            if !line.starts_with([' ', '\t']) && !line.trim().is_empty() {
                in_metadata = false;
                continue;
            }
            let trimmed = line.trim();
            if let Some(value) = trimmed.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
                let value = value.split(" #").next().unwrap_or("").trim().trim_matches(['"', '\'']);
                if !value.is_empty() {
                    return Some(value);
                }
            }
        }
    }
    None
}
