//! Find every versioned thing in a Flux repository.
//!
//! The scan reads each YAML file once, parses every document with byte spans ([`crate::yaml`]),
//! works out which namespace kustomize or Flux will give each file ([`kustomize`]), and hands
//! every Kubernetes document to each [`Extractor`]. Extractors keep what they need and link
//! across documents when the walk is done (a HelmRelease and the HelmRepository it names are
//! usually in different files). Every HelmRelease ends up either as a dependency or with a
//! [`Skip`] that says why: nothing is dropped silently.
//!
//! After the extractors, [`flux_graph`] works out which cluster's Flux Kustomizations apply
//! each file; a dependency in a file no cluster applies is skipped as `not-applied`.
//!
//! One manager per file: [`helmrelease`] (HelmRelease and its Flux sources), [`flux`] (Flux
//! itself), [`k3s`] (system-upgrade-controller Plans). Adding one is a file, a type that
//! implements [`Extractor`], and a line in [`extractors`].

pub mod flux;
pub mod flux_graph;
pub mod git_index;
pub mod helmrelease;
pub mod k3s;
pub mod kustomize;
mod load;
mod plain_walk;
pub mod sourceignore;
mod streamed;
pub mod walk;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::model::{Dependency, FileError, Location, Manifest, Skip, SkipReason};
use crate::yaml::{Document, Node, NodeKind, Stream, parse_stream, parse_stream_within};
use flux_graph::FluxGraph;

pub use walk::{DEFAULT_MAX_FILE_SIZE, WalkError};

/// Options of a scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files bigger than this are skipped with a warning.
    pub max_file_size: u64,
    /// Sources defined outside the scanned files (the config's `sources:`).
    pub sources: Vec<helmrelease::ExternalSource>,
    /// Parsing one file may take this long; a file that takes longer is reported as an error.
    pub file_budget: std::time::Duration,
    /// Keep dependencies in files no cluster applies updatable (config `includeNotApplied`);
    /// by default they are skipped with reason `not-applied`.
    pub include_not_applied: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            sources: Vec::new(),
            file_budget: walk::DEFAULT_FILE_BUDGET,
            include_not_applied: false,
        }
    }
}

/// The result of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Everything found, sorted by file, line and id; ids are unique.
    pub dependencies: Vec<Dependency>,
    /// Problems a user should fix: broken Flux or Plan manifests, oversized files.
    pub errors: Vec<FileError>,
    /// Files passed over quietly (not Kubernetes YAML, chart templates): shown with `--verbose`.
    pub passed_over: Vec<FileError>,
    /// How many YAML files were read.
    pub files_scanned: usize,
    /// Flux apiVersions in use, with the files using them (the gate holds Flux upgrades that
    /// would remove one).
    pub api_versions: BTreeMap<String, BTreeSet<String>>,
    /// What each cluster's Flux Kustomizations apply ([`flux_graph`]); inactive when the
    /// repository has no Flux entry point.
    pub flux_graph: FluxGraph,
}

/// One YAML file, read and parsed.
#[derive(Debug)]
pub struct SourceFile {
    /// Path relative to the scan root, `/`-separated.
    pub relative: String,
    /// Its text (UTF-8, BOM kept so byte offsets match the file).
    pub text: String,
    /// Its documents.
    pub stream: Stream,
}

impl SourceFile {
    /// Parse `text` as the file `relative`.
    pub fn new(relative: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let stream = parse_stream(&text);
        SourceFile { relative: relative.into(), text, stream }
    }

    /// [`SourceFile::new`], giving up on parsing after `budget` (see [`Stream::out_of_time`]).
    pub fn within(relative: impl Into<String>, text: impl Into<String>, budget: std::time::Duration) -> Self {
        let text = text.into();
        let stream = parse_stream_within(&text, Some(budget));
        SourceFile { relative: relative.into(), text, stream }
    }

    /// Does the text name a Flux or system-upgrade-controller API? Such files must parse;
    /// other YAML (CI workflows, chart templates with `{{ }}`) may fail quietly.
    pub fn looks_like_manifest(&self) -> bool {
        mentions_managed_api(self.text.as_bytes())
    }
}

fn mentions_managed_api(bytes: &[u8]) -> bool {
    const NEEDLES: [&[u8]; 3] = [b"toolkit.fluxcd.io", b"upgrade.cattle.io", b"fluxcd.controlplane.io"];
    NEEDLES.iter().any(|n| bytes.windows(n.len()).any(|w| w == *n))
}

/// A Kubernetes document, as extractors see it.
#[derive(Debug, Clone, Copy)]
pub struct ManifestDoc<'a> {
    /// The file it is in.
    pub file: &'a SourceFile,
    /// The document.
    pub doc: &'a Document,
    /// `apiVersion`.
    pub api_version: &'a str,
    /// `kind`.
    pub kind: &'a str,
    /// `metadata.name`.
    pub name: Option<&'a str>,
    /// The namespace it lands in: a parent's override, else `metadata.namespace`.
    pub namespace: Option<&'a str>,
    /// The kustomization that uses this file as a patch, if any.
    pub patched_by: Option<&'a str>,
    /// Why the document cannot be trusted (duplicate keys), if so.
    pub invalid: Option<&'a str>,
}

impl<'a> ManifestDoc<'a> {
    /// The document's root node.
    pub fn root(&self) -> &'a Node {
        &self.doc.root
    }

    /// `metadata.name`, or a placeholder that still makes a readable id.
    pub fn name_or_unnamed(&self) -> &'a str {
        self.name.unwrap_or("<unnamed>")
    }

    /// Where the document starts.
    pub fn manifest(&self) -> Manifest {
        Manifest { file: self.file.relative.clone(), line: self.doc.root.line }
    }

    /// Read the version scalar at `path` under the root.
    pub fn version_at(&self, path: &[&str]) -> VersionValue {
        version_value(self.file, self.doc.root.path(path))
    }
}

/// What a version field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionValue {
    /// The field is absent, empty or null.
    Missing,
    /// A literal scalar and where it is.
    Literal {
        /// The value.
        value: String,
        /// Its exact place.
        location: Location,
    },
    /// `*alias` of another scalar (resolved when possible).
    Alias {
        /// The aliased value, if it is a scalar in the same document.
        value: Option<String>,
        /// Line of the alias.
        line: usize,
    },
    /// A mapping or sequence where a version should be.
    NotScalar {
        /// Line of the node.
        line: usize,
    },
}

impl VersionValue {
    /// The textual value, when there is one.
    pub fn value(&self) -> Option<&str> {
        match self {
            VersionValue::Literal { value, .. } => Some(value),
            VersionValue::Alias { value, .. } => value.as_deref(),
            _ => None,
        }
    }

    /// The location, when the value is a literal.
    pub fn location(&self) -> Option<&Location> {
        match self {
            VersionValue::Literal { location, .. } => Some(location),
            _ => None,
        }
    }

    /// Why this value cannot be updated, if it cannot. `what` names the field for messages.
    pub fn problem(&self, what: &str) -> Option<Skip> {
        match self {
            VersionValue::Missing => Some(Skip {
                reason: SkipReason::FloatingVersion,
                message: format!(
                    "no {what}: Flux takes the newest version on every reconcile; pin one so updates go through PRs"
                ),
            }),
            VersionValue::Alias { value, line } => Some(Skip {
                reason: SkipReason::VersionAlias,
                message: format!(
                    "{what} at line {line} is a YAML alias{}; upkeep edits only literal values, so write the version there",
                    value.as_deref().map(|v| format!(" of `{v}`")).unwrap_or_default()
                ),
            }),
            VersionValue::NotScalar { line } => {
                Some(Skip { reason: SkipReason::Unparsable, message: format!("{what} at line {line} is not a string") })
            }
            VersionValue::Literal { value, .. } => {
                if value.contains("${") {
                    Some(Skip {
                        reason: SkipReason::Substitution,
                        message: format!(
                            "{what} `{value}` is filled in by Flux post-build substitution, which upkeep cannot follow; pin the version here, or update the variable by hand"
                        ),
                    })
                } else {
                    floating(value).map(|why| Skip {
                        reason: SkipReason::FloatingVersion,
                        message: format!(
                            "{what} `{value}` is {why}: the cluster moves without a commit; pin an exact version to get update PRs"
                        ),
                    })
                }
            }
        }
    }
}

/// Read a version node into a [`VersionValue`].
pub fn version_value(file: &SourceFile, node: Option<&Node>) -> VersionValue {
    let Some(node) = node else { return VersionValue::Missing };
    match &node.kind {
        NodeKind::Scalar(s) if s.alias => VersionValue::Alias { value: Some(s.value.clone()), line: node.line },
        NodeKind::Scalar(s) if s.is_null() || s.value.trim().is_empty() => VersionValue::Missing,
        NodeKind::Scalar(s) => VersionValue::Literal {
            // A one-line block scalar's value ends in the line break chomping keeps; the version
            // is the line itself (what its span covers).
            value: if s.verbatim && matches!(s.style, crate::yaml::Style::Literal | crate::yaml::Style::Folded) {
                s.value.trim_end_matches(['\n', '\r']).to_string()
            } else {
                s.value.clone()
            },
            location: Location {
                file: file.relative.clone(),
                line: node.line,
                column: node.column,
                span: s.span.clone(),
                verbatim: s.verbatim,
                in_comment: false,
                block: matches!(s.style, crate::yaml::Style::Literal | crate::yaml::Style::Folded),
                literal_tag: false,
                digest: None,
            },
        },
        NodeKind::Alias(_) => VersionValue::Alias { value: None, line: node.line },
        NodeKind::Seq(_) | NodeKind::Map(_) => VersionValue::NotScalar { line: node.line },
    }
}

/// Why a version string is a range rather than one version, if it is.
///
/// Helm and Flux read `spec.chart.spec.version` and `ref.semver` as Masterminds semver
/// constraints: `*`, `x` parts, `^`, `~`, comparisons and `||` all float.
pub fn floating(version: &str) -> Option<&'static str> {
    let v = version.trim();
    if v.is_empty() {
        return Some("empty");
    }
    if v.contains("||") || v.contains(',') || v.contains(" - ") {
        return Some("a range");
    }
    if v.starts_with(['>', '<', '^', '~', '=', '!']) {
        return Some("a constraint");
    }
    let core = v.trim_start_matches(['v', 'V']);
    let core = core.split(['-', '+']).next().unwrap_or(core);
    if core.split('.').any(|part| matches!(part, "*" | "x" | "X")) || v == "latest" {
        return Some("a wildcard");
    }
    None
}

/// Where an extractor puts what it finds.
#[derive(Debug, Default)]
pub struct Findings {
    /// Dependencies, skipped ones included.
    pub dependencies: Vec<Dependency>,
    /// Problems to show the user.
    pub errors: Vec<FileError>,
    /// Flux apiVersions seen, with their files.
    pub api_versions: BTreeMap<String, BTreeSet<String>>,
}

impl Findings {
    /// Append what was found in the files after these.
    fn append(&mut self, later: Findings) {
        self.dependencies.extend(later.dependencies);
        self.errors.extend(later.errors);
        for (api, files) in later.api_versions {
            self.api_versions.entry(api).or_default().extend(files);
        }
    }
}

/// One manager: reads documents, and links what it read when the walk is done.
///
/// Files are read on several threads, each with its own managers; [`Extractor::merge`] joins
/// them in file order before [`Extractor::finish`], so a manager sees the same as if one
/// thread had read every file.
pub trait Extractor: Any + Send {
    /// Short name, for logs.
    fn id(&self) -> &'static str;
    /// Look at a whole file (for comment headers, or the text of documents that did not parse).
    fn file(&mut self, _file: &SourceFile, _out: &mut Findings) {}
    /// Look at one Kubernetes document; keep what is needed for [`Extractor::finish`].
    fn document(&mut self, doc: &ManifestDoc<'_>, out: &mut Findings);
    /// Take over what the same manager kept from the files after this one's. Required, so a
    /// manager that starts keeping state cannot lose another thread's share by forgetting it;
    /// one that writes straight to [`Findings`] has nothing to merge.
    fn merge(&mut self, later: Box<dyn Extractor>);
    /// Called once after every file, to link across documents.
    fn finish(&mut self, _out: &mut Findings) {}
}

/// The registry of managers, in the order they run.
pub fn extractors() -> Vec<Box<dyn Extractor>> {
    extractors_with(&[])
}

/// The registry of managers, with sources declared outside the scanned files.
pub fn extractors_with(sources: &[helmrelease::ExternalSource]) -> Vec<Box<dyn Extractor>> {
    vec![
        Box::new(helmrelease::HelmReleases::with_sources(sources.to_vec())),
        Box::<flux::Flux>::default(),
        Box::<k3s::Plans>::default(),
    ]
}

/// Scan the repository at `root`.
///
/// Each file is read, parsed and handed to the extractors on every core, and its parsed tree
/// dropped as soon as nothing needs it again ([`streamed`]), so memory follows the largest
/// file rather than the whole repository. When that pass finds the repository outside what it
/// can do that way, the scan holds every tree instead ([`scan_holding_all`]): same answer.
pub fn scan(root: &Path, options: &ScanOptions) -> Result<Scan, WalkError> {
    let started = std::time::Instant::now();
    let listing = walk::list(root, options.max_file_size)?;
    tracing::debug!("listed {} files in {:?}", listing.files.len(), started.elapsed());
    let Some(read) = streamed::read(&listing.files, options) else { return Ok(scan_holding_all(listing, options)) };
    tracing::debug!("read, parsed and extracted them by {:?}", started.elapsed());
    let mut scan = Scan { errors: listing.warnings, ..Scan::default() };
    let files = sort_loaded(read.files, &mut scan);
    let (findings, passed_over) = read.extraction.finish();
    tracing::debug!("resolved {} dependencies by {:?}", findings.dependencies.len(), started.elapsed());
    scan.passed_over.extend(passed_over);
    let scan = finish_scan(scan, findings, &files, &listing.source_ignores, options);
    tracing::debug!("built the Flux graph by {:?}", started.elapsed());
    load::drop_in_background((files, listing.files), scan.files_scanned);
    Ok(scan)
}

/// [`scan`] the simple way: every file parsed and held until the Flux graph is built. The
/// reference the streamed pass is tested against, and its fallback.
pub fn scan_holding_all(listing: walk::Listing, options: &ScanOptions) -> Scan {
    let mut scan = Scan { errors: listing.warnings, ..Scan::default() };
    let files = sort_loaded(load::load_all(&listing.files, options.file_budget), &mut scan);
    let findings = extract_files_with(&files, &mut scan.passed_over, &options.sources);
    finish_scan(scan, findings, &files, &listing.source_ignores, options)
}

/// The files that loaded, in order; the others reported (quietly when they are not manifests).
fn sort_loaded(loaded: Vec<Result<SourceFile, load::Unreadable>>, scan: &mut Scan) -> Vec<SourceFile> {
    let mut files = Vec::with_capacity(loaded.len());
    for result in loaded {
        match result {
            Ok(file) => files.push(file),
            Err(load::Unreadable { error, quiet: true }) => scan.passed_over.push(error),
            Err(load::Unreadable { error, quiet: false }) => scan.errors.push(error),
        }
    }
    scan.files_scanned = files.len();
    files
}

/// What follows the extractors: the Flux graph, and which dependencies it applies.
fn finish_scan(
    mut scan: Scan,
    findings: Findings,
    files: &[SourceFile],
    source_ignores: &[walk::Candidate],
    options: &ScanOptions,
) -> Scan {
    scan.errors.extend(findings.errors);
    scan.dependencies = findings.dependencies;
    scan.api_versions = findings.api_versions;
    let ignores = read_source_ignores(source_ignores, &mut scan.errors);
    scan.flux_graph = FluxGraph::build(files.iter().map(|f| (f.relative.as_str(), &f.stream)), &ignores);
    scan.errors.extend(scan.flux_graph.errors().iter().cloned());
    mark_applied(&mut scan.dependencies, &scan.flux_graph, options.include_not_applied);
    scan
}

/// The `.sourceignore` files as `(folder, text)`; an unreadable one is reported.
fn read_source_ignores(candidates: &[walk::Candidate], errors: &mut Vec<FileError>) -> Vec<(String, String)> {
    candidates
        .iter()
        .filter_map(|c| match std::fs::read_to_string(&c.path) {
            Ok(text) => Some((kustomize::dir_of(&c.relative).to_string(), text)),
            Err(e) => {
                errors.push(FileError {
                    file: c.relative.clone(),
                    line: None,
                    column: None,
                    message: format!("cannot read: {e}"),
                });
                None
            }
        })
        .collect()
}

/// Record which clusters apply each dependency's object, and skip those none applies (unless
/// the config switch keeps them). An inactive graph changes nothing.
pub fn mark_applied(deps: &mut [Dependency], graph: &FluxGraph, include_not_applied: bool) {
    for dep in deps.iter_mut() {
        let Some(clusters) = graph.clusters_applying(&dep.manifest.file) else { continue };
        if clusters.is_empty() && !include_not_applied {
            let earlier =
                dep.skip.as_ref().map(|s| format!(" (also: {}: {})", s.reason.as_str(), s.message)).unwrap_or_default();
            dep.skip = Some(Skip {
                reason: SkipReason::NotApplied,
                message: format!(
                    "no cluster's Flux Kustomizations apply {}, so an update would change nothing that runs; set `includeNotApplied: true` to update it anyway{earlier}",
                    dep.manifest.file
                ),
            });
        }
        dep.clusters = Some(clusters);
    }
}

/// Run every extractor over already-loaded files.
pub fn extract_files(files: &[SourceFile], passed_over: &mut Vec<FileError>) -> Findings {
    extract_files_with(files, passed_over, &[])
}

/// Run every extractor over already-loaded files, with sources declared outside them.
pub fn extract_files_with(
    files: &[SourceFile],
    passed_over: &mut Vec<FileError>,
    sources: &[helmrelease::ExternalSource],
) -> Findings {
    let layout = kustomize::layout(files.iter().map(|f| (f.relative.as_str(), &f.stream)));
    let mut extraction = Extraction::new(sources);
    for file in files {
        extraction.file(file, &layout);
    }
    let (findings, quiet) = extraction.finish();
    passed_over.extend(quiet);
    findings
}

/// The extractors part-way through the files: what one thread has found so far.
pub(crate) struct Extraction {
    out: Findings,
    managers: Vec<Box<dyn Extractor>>,
    /// Syntax errors in files that are not manifests: shown with `--verbose` only.
    passed_over: Vec<FileError>,
}

impl Extraction {
    fn new(sources: &[helmrelease::ExternalSource]) -> Self {
        Extraction { out: Findings::default(), managers: extractors_with(sources), passed_over: Vec::new() }
    }

    /// Hand one file to every extractor.
    fn file(&mut self, file: &SourceFile, layout: &kustomize::Layout) {
        if let Some(err) = &file.stream.error {
            let error = FileError {
                file: file.relative.clone(),
                line: Some(err.line),
                column: Some(err.column),
                message: format!("YAML syntax error: {}", err.message),
            };
            if file.looks_like_manifest() { self.out.errors.push(error) } else { self.passed_over.push(error) }
        }
        for manager in self.managers.iter_mut() {
            manager.file(file, &mut self.out);
        }
        for doc in &file.stream.documents {
            visit_document(file, doc, layout, &mut self.managers, &mut self.out);
        }
    }

    /// Take over what another thread found in the files after this one's.
    fn merge(&mut self, later: Extraction) {
        self.out.append(later.out);
        self.passed_over.extend(later.passed_over);
        for (manager, theirs) in self.managers.iter_mut().zip(later.managers) {
            manager.merge(theirs);
        }
    }

    /// Link across files; the dependencies sorted, with unique ids.
    fn finish(mut self) -> (Findings, Vec<FileError>) {
        for manager in self.managers.iter_mut() {
            manager.finish(&mut self.out);
        }
        let Extraction { mut out, managers, passed_over } = self;
        load::drop_in_background(managers, out.dependencies.len());
        let deps = &mut out.dependencies;
        // Usually in order already (the extractors run in file order), and a stable sort of
        // 10,000 dependencies of 368 bytes takes a 3.7 MB scratch buffer first.
        if !deps.is_sorted_by(|a, b| order_key(a) <= order_key(b)) {
            deps.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        }
        disambiguate_ids(deps);
        (out, passed_over)
    }
}

/// The order of a scan's dependencies: by file, line and id.
fn order_key(d: &Dependency) -> (&str, usize, &str) {
    (d.file(), d.line(), d.id.as_str())
}

fn visit_document(
    file: &SourceFile,
    doc: &Document,
    layout: &kustomize::Layout,
    managers: &mut [Box<dyn Extractor>],
    out: &mut Findings,
) {
    let root = &doc.root;
    let (Some(api_version), Some(kind)) = (root.str_at(&["apiVersion"]), root.str_at(&["kind"])) else { return };
    if api_version.contains(".toolkit.fluxcd.io/") {
        // Looked up before anything is copied: most documents add nothing new (a file's second
        // HelmRelease, the thousandth file of one apiVersion).
        match out.api_versions.get_mut(api_version) {
            Some(files) if files.contains(&file.relative) => {}
            Some(files) => {
                files.insert(file.relative.clone());
            }
            None => {
                out.api_versions.insert(api_version.to_string(), [file.relative.clone()].into());
            }
        }
    }
    let invalid = (!doc.duplicate_keys.is_empty() && mentions_managed_api(api_version.as_bytes())).then(|| {
        let d = &doc.duplicate_keys[0];
        format!("duplicate key `{}` at line {} (first at line {}); Flux (kustomize, yaml.v3) refuses documents with duplicate keys; remove one", d.key, d.line, d.first_line)
    });
    if let Some(message) = &invalid {
        let line = doc.duplicate_keys[0].line;
        out.errors.push(FileError {
            file: file.relative.clone(),
            line: Some(line),
            column: None,
            message: message.clone(),
        });
    }
    let namespace = layout.namespace_of(&file.relative).or_else(|| root.str_at(&["metadata", "namespace"]));
    let manifest = ManifestDoc {
        file,
        doc,
        api_version,
        kind,
        name: root.str_at(&["metadata", "name"]),
        namespace,
        patched_by: layout.patched_by(&file.relative),
        invalid: invalid.as_deref(),
    };
    for manager in managers.iter_mut() {
        manager.document(&manifest, out);
    }
}

/// Ids are `<kind>/<namespace>/<name>`; when two dependencies share one (the same release in
/// two clusters' folders), each gets `@<file>` appended, and `#<line>` if that is not enough.
fn disambiguate_ids(deps: &mut [Dependency]) {
    let shared = shared_ids(deps);
    if !shared.contains(&true) {
        return;
    }
    for (d, shared) in deps.iter_mut().zip(shared) {
        if shared {
            d.id = format!("{}@{}", d.id, d.manifest.file);
        }
    }
    let shared = shared_ids(deps);
    for (d, shared) in deps.iter_mut().zip(shared) {
        if shared {
            d.id = format!("{}#{}", d.id, d.manifest.line);
        }
    }
}

/// For each dependency, does another have the same id?
fn shared_ids(deps: &[Dependency]) -> Vec<bool> {
    let mut counts: HashMap<&str, usize> = HashMap::with_capacity(deps.len());
    for d in deps {
        *counts.entry(d.id.as_str()).or_default() += 1;
    }
    deps.iter().map(|d| counts[d.id.as_str()] > 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floating_versions_are_recognised() {
        for v in ["", "*", "6.5.*", "1.x", ">=1.0.0", "^1", "~1.2", "1.0 - 2.0", ">=1 <2", "1.2 || 1.3", "latest"] {
            assert!(floating(v).is_some(), "{v:?} should float");
        }
        for v in ["1.2.3", "v1.30.4+k3s1", "2.0.0-rc.1", "1.2", "0.31.3"] {
            assert_eq!(floating(v), None, "{v:?} is exact");
        }
    }
}
