//! What Flux applies: the graph kustomize-controller follows from each cluster's entry point,
//! so a file in `.archive/`, a template or a retired cluster's folder is known to be applied by
//! no cluster, and a live one is known to be applied by which.
//!
//! **Clusters.** A cluster is an entry point, named by the path it syncs (`clusters/production`;
//! `.` for the repository root):
//! - the bootstrap `flux-system` Kustomization (`flux bootstrap` writes it to `gotk-sync.yaml`);
//! - flux-operator's `FluxInstance` `spec.sync` (`kind`, `path`, `name`; the sync objects are named
//!   `spec.sync.name`, else after the instance's namespace), also when written as the values of the
//!   `flux-instance` Helm chart (`spec.values.instance.sync`);
//! - with neither, a Flux Kustomization that applies its own file (a hand-bootstrapped root);
//! - with none of those, every Flux Kustomization no other one reaches.
//!
//! **What a Flux Kustomization applies** (fluxcd/pkg `kustomize/kustomize_generator.go`):
//! `spec.path` is relative to the root of its source. With a `kustomization.yaml` there,
//! kustomize builds it: its `resources`, `components`, `bases` and patch files; a missing entry,
//! or a folder entry without a kustomization file, makes kustomize refuse the build. Without one,
//! Flux generates it: every `.yaml`/`.yml` file below the path, recursively, except that a
//! sub-folder with its own kustomization file is added as one unit and not descended into; a
//! file that does not decode as Kubernetes YAML fails the build. A build that would fail applies
//! nothing, and is reported. Files the source's ignore rules leave out ([`super::sourceignore`])
//! do not exist for the build. A `spec.path` with post-build `${VAR}`s applies every folder it
//! could name: upkeep does not evaluate substitutions, and must not call a live file unapplied.
//!
//! **Sources.** A `GitRepository` is this repository. Any other source (an `OCIRepository` that CI
//! pushes from a sub-folder, a Bucket) is followed when its `spec.path` exists in the repository,
//! or exists below exactly one sub-folder (`./apps` pushed from `./kubernetes` is
//! `kubernetes/apps`); a source synced from its root (`path: ./`, the Flux manifests artifact)
//! is someone else's content and applies nothing from here.
//!
//! A repository with no entry point at all (a plain folder of HelmReleases) has an inactive
//! graph: [`FluxGraph::clusters_applying`] answers `None`, and the scan behaves as before.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde::Serialize;

use super::kustomize::{Kustomization, dir_of, is_kustomization_file, join, read_kustomization};
use super::sourceignore::IgnoreRules;
use crate::model::FileError;
use crate::yaml::{Node, Stream};

/// How deep kustomization chains are followed; real repositories nest a handful of levels.
const MAX_DEPTH: usize = 64;

/// The source a Flux Kustomization builds from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SourceRefName {
    /// `GitRepository`, `OCIRepository` or `Bucket`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace; the Kustomization's own when the reference leaves it out.
    pub namespace: Option<String>,
}

/// A Flux Kustomization, as the verifier looks it up in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FluxKustomizationRef {
    /// `metadata.namespace`, if written.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `spec.path` as written (`./` when absent).
    pub path: String,
    /// `spec.sourceRef`.
    pub source_ref: SourceRefName,
    /// The file that defines it.
    pub file: String,
    /// The line its document starts on.
    pub line: usize,
    /// `spec.wait: true`: kustomize-controller waits for everything it applied to be Ready
    /// before it reports Ready (and posts a `success` commit status).
    pub wait: bool,
    /// A non-empty `spec.healthChecks`: it waits for those objects.
    pub health_checks: bool,
}

impl FluxKustomizationRef {
    /// Whether its Ready (and its commit status) says anything about the health of what it
    /// applies, rather than only that the manifests were accepted by the API server.
    pub fn checks_health(&self) -> bool {
        self.wait || self.health_checks
    }
}

/// How a cluster's entry point was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// The `flux-system` Kustomization `flux bootstrap` writes (`gotk-sync.yaml`).
    Bootstrap,
    /// flux-operator's `FluxInstance` `spec.sync`.
    FluxInstance,
    /// A Flux Kustomization that applies its own file, or that nothing else reaches.
    TopLevel,
}

/// One cluster: an entry point and everything it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// The synced path, `/`-separated without `./` (`.` for the root): stable across runs.
    pub name: String,
    /// How it was recognised.
    pub entry: EntryKind,
    /// The file that defines the entry point.
    pub file: String,
    /// Its line.
    pub line: usize,
}

/// Which files each cluster's Flux Kustomizations apply. Pure data, built from parsed files.
#[derive(Debug, Default, Clone)]
pub struct FluxGraph {
    kustomizations: Vec<FluxKustomizationRef>,
    clusters: Vec<Cluster>,
    applied: HashMap<String, Applied>,
    errors: Vec<FileError>,
    /// Declarations some cluster reaches.
    reached: BTreeSet<usize>,
}

#[derive(Debug, Default, Clone)]
struct Applied {
    clusters: BTreeSet<String>,
    by: BTreeSet<usize>,
}

impl FluxGraph {
    /// Build the graph from every parsed file (`relative path → stream`) and the repository's
    /// `.sourceignore` files (`(folder, text)`).
    pub fn build<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a Stream)>,
        source_ignores: &[(String, String)],
    ) -> Self {
        let inputs = Inputs::collect(files);
        let built = inputs.build_all(source_ignores);
        let mut graph = FluxGraph {
            kustomizations: inputs.decls.iter().map(|d| d.reference.clone()).collect(),
            ..FluxGraph::default()
        };
        let roots = inputs.roots(&built);
        for (root, entry) in roots {
            graph.walk_cluster(&inputs, &built, root, entry);
        }
        graph.report_refused(&inputs, &built);
        graph
    }

    /// True when the repository has at least one cluster: only then does "not applied" mean
    /// anything.
    pub fn is_active(&self) -> bool {
        !self.clusters.is_empty()
    }

    /// The clusters, in the order they were found.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// Every Flux Kustomization in the scanned files (also those no cluster reaches).
    pub fn kustomizations(&self) -> &[FluxKustomizationRef] {
        &self.kustomizations
    }

    /// The clusters that apply `file`, sorted: `None` when the graph is inactive, empty when no
    /// cluster applies it.
    pub fn clusters_applying(&self, file: &str) -> Option<Vec<String>> {
        self.is_active()
            .then(|| self.applied.get(file).map(|a| a.clusters.iter().cloned().collect()).unwrap_or_default())
    }

    /// The Flux Kustomizations whose own build includes `file` (not the parents that only apply
    /// those Kustomizations): what a verifier waits on after a change to `file`.
    pub fn kustomizations_applying(&self, file: &str) -> Vec<FluxKustomizationRef> {
        self.applied
            .get(file)
            .map(|a| a.by.iter().filter_map(|&i| self.kustomizations.get(i).cloned()).collect())
            .unwrap_or_default()
    }

    /// Every applied file with its clusters (for the gate, which must not depend on this module).
    pub fn clusters_by_file(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.applied.iter().map(|(f, a)| (f.clone(), a.clusters.clone())).collect()
    }

    /// Kustomizations a cluster reaches that kustomize would refuse to build, with why.
    pub fn errors(&self) -> &[FileError] {
        &self.errors
    }

    fn walk_cluster(&mut self, inputs: &Inputs<'_>, built: &[Built], root: usize, entry: EntryKind) {
        let Some(decl) = inputs.decls.get(root) else { return };
        let name = cluster_name(decl.path.as_deref().unwrap_or(""));
        if self.clusters.iter().any(|c| c.name == name) {
            return;
        }
        self.clusters.push(Cluster {
            name: name.clone(),
            entry,
            file: decl.reference.file.clone(),
            line: decl.reference.line,
        });
        let mut queue = VecDeque::from([root]);
        let mut seen = HashSet::from([root]);
        while let Some(i) = queue.pop_front() {
            self.reached.insert(i);
            let Some(Built::Files(files)) = built.get(i) else { continue };
            for file in files {
                let applied = self.applied.entry(file.clone()).or_default();
                applied.clusters.insert(name.clone());
                applied.by.insert(i);
                for &child in inputs.defined_in.get(file.as_str()).map(Vec::as_slice).unwrap_or_default() {
                    if seen.insert(child) {
                        queue.push_back(child);
                    }
                }
            }
        }
    }

    fn report_refused(&mut self, inputs: &Inputs<'_>, built: &[Built]) {
        for (i, (decl, result)) in inputs.decls.iter().zip(built).enumerate() {
            let Built::Refused(why) = result else { continue };
            // Only what a cluster applies matters; an archived Kustomization failing is expected.
            if !self.reached.contains(&i) {
                continue;
            }
            let r = &decl.reference;
            self.errors.push(FileError {
                file: r.file.clone(),
                line: Some(r.line),
                column: None,
                message: format!(
                    "Flux Kustomization {}/{} (path `{}`) applies nothing: {why}",
                    r.namespace.as_deref().unwrap_or("-"),
                    r.name,
                    r.path
                ),
            });
        }
    }
}

/// `clusters/production` for `./clusters/production/`, `.` for the root.
fn cluster_name(path: &str) -> String {
    if path.is_empty() { ".".to_string() } else { path.to_string() }
}

/// What building one Flux Kustomization gives.
#[derive(Debug, Clone)]
enum Built {
    /// The files its build reads.
    Files(BTreeSet<String>),
    /// Content from outside this repository.
    External,
    /// kustomize would refuse the build, and why.
    Refused(String),
}

/// A Flux Kustomization as declared, or one a FluxInstance creates.
#[derive(Debug)]
struct Decl {
    reference: FluxKustomizationRef,
    /// `spec.path` normalised, `None` when it cannot be resolved (escapes the root, `${VAR}`).
    path: Option<String>,
    entry: Option<EntryKind>,
    /// The repository URL a FluxInstance syncs (`spec.sync.url`).
    url: Option<String>,
}

type SourceKey = (String, Option<String>, String);

/// One copy of an ArtifactGenerator: `(folder in the repository, folder in the artifact)`.
type ArtifactCopy = (String, String);

/// One ArtifactGenerator's copies for an artifact, and the file that declares it.
type Generator<'a> = (&'a str, Vec<ArtifactCopy>);

/// What the graph needs of a declared Flux source.
#[derive(Debug, Default)]
struct SourceDecl {
    ignore: Option<String>,
    url: Option<String>,
}

/// A Git URL in one spelling: `https://github.com/o/r.git` and `git@github.com:o/r` agree.
fn normal_url(url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    let rest = ["https://", "http://", "ssh://", "git://"].iter().find_map(|p| lower.strip_prefix(p)).unwrap_or(&lower);
    let rest = rest.strip_prefix("git@").unwrap_or(rest).replacen(':', "/", 1);
    rest.trim_end_matches('/').trim_end_matches(".git").to_string()
}

/// Everything the graph is built from, collected in one pass over the files.
#[derive(Debug, Default)]
struct Inputs<'a> {
    decls: Vec<Decl>,
    /// `(kind, namespace, name)` of each Flux source → its `spec.ignore` and `spec.url`.
    sources: HashMap<SourceKey, SourceDecl>,
    kustomizations: BTreeMap<String, Kustomization>,
    files: BTreeSet<&'a str>,
    /// Files with a YAML syntax error: a generated kustomization cannot decode them.
    broken: HashSet<&'a str>,
    /// Which declarations each file defines.
    defined_in: HashMap<&'a str, Vec<usize>>,
    /// `flux-system` folders `flux bootstrap` wrote (`gotk-sync.yaml` or `gotk-components.yaml`).
    bootstrap_dirs: BTreeSet<&'a str>,
    /// ArtifactGenerator outputs by `(namespace, name)`: `(folder in the repository, folder in
    /// the artifact)` per copy.
    /// Several clusters may each declare the same artifact name: the file says whose it is.
    artifacts: HashMap<(Option<String>, String), Vec<Generator<'a>>>,
}

/// What the graph takes from one document.
enum Read<'n> {
    FluxKustomization,
    /// A GitRepository, OCIRepository or Bucket, with its name.
    Source {
        kind: &'n str,
        name: &'n str,
    },
    ArtifactGenerator,
    /// A FluxInstance's `spec.sync`, or what the flux-instance chart renders one from.
    FluxInstance(&'n Node),
    KustomizeConfig,
}

/// What the graph reads from this document, if anything: the one place that decides, so
/// [`reads_document`] and the graph can never disagree.
fn reads<'n>(relative: &str, root: &'n Node) -> Option<Read<'n>> {
    let api = root.str_at(&["apiVersion"]).unwrap_or("");
    let kind = root.str_at(&["kind"]).unwrap_or("");
    if api.starts_with("kustomize.toolkit.fluxcd.io/") && kind == "Kustomization" {
        Some(Read::FluxKustomization)
    } else if api.starts_with("source.toolkit.fluxcd.io/")
        && matches!(kind, "GitRepository" | "OCIRepository" | "Bucket")
    {
        root.str_at(&["metadata", "name"]).map(|name| Read::Source { kind, name })
    } else if api.starts_with("source.extensions.fluxcd.io/") && kind == "ArtifactGenerator" {
        Some(Read::ArtifactGenerator)
    } else if api.starts_with("fluxcd.controlplane.io/") && kind == "FluxInstance" {
        root.path(&["spec", "sync"]).map(Read::FluxInstance)
    } else if api.starts_with("helm.toolkit.fluxcd.io/") && kind == "HelmRelease" {
        // The flux-instance chart renders a FluxInstance from `values.instance`.
        root.path(&["spec", "values", "instance", "sync"]).map(Read::FluxInstance)
    } else if is_kustomization_file(relative) && (api.is_empty() || api.starts_with("kustomize.config.k8s.io/")) {
        Some(Read::KustomizeConfig)
    } else {
        None
    }
}

/// Does [`FluxGraph::build`] read anything from this document? A file none of whose documents
/// it reads may be handed to it with its documents dropped (its name and syntax error are
/// all the graph takes from it), which is how the scan frees each file's tree early.
pub fn reads_document(relative: &str, root: &Node) -> bool {
    reads(relative, root).is_some()
}

impl<'a> Inputs<'a> {
    fn collect(files: impl IntoIterator<Item = (&'a str, &'a Stream)>) -> Self {
        let mut inputs = Inputs::default();
        for (relative, stream) in files {
            inputs.files.insert(relative);
            if matches!(relative.rsplit('/').next(), Some("gotk-sync.yaml" | "gotk-components.yaml"))
                && dir_of(relative).rsplit('/').next() == Some("flux-system")
            {
                inputs.bootstrap_dirs.insert(dir_of(relative));
            }
            if stream.error.is_some() {
                inputs.broken.insert(relative);
            }
            for doc in &stream.documents {
                inputs.document(relative, &doc.root);
            }
        }
        inputs.bootstrap_without_sync();
        inputs
    }

    /// A `flux-system` folder whose `gotk-sync.yaml` holds no Kustomization (the bootstrap writes
    /// it later, as in fluxcd/flux2-kustomize-helm-example) still marks a cluster: `flux
    /// bootstrap --path=<folder above it>`.
    fn bootstrap_without_sync(&mut self) {
        let declared: BTreeSet<String> = self
            .decls
            .iter()
            .filter(|d| d.entry == Some(EntryKind::Bootstrap))
            .map(|d| dir_of(&d.reference.file).to_string())
            .collect();
        let dirs: Vec<&'a str> = self.bootstrap_dirs.iter().copied().filter(|d| !declared.contains(*d)).collect();
        for dir in dirs {
            let file = [format!("{dir}/gotk-sync.yaml"), format!("{dir}/gotk-components.yaml")]
                .into_iter()
                .find(|f| self.files.contains(f.as_str()))
                .unwrap_or_default();
            let path = dir_of(dir).to_string();
            self.push(Decl {
                reference: FluxKustomizationRef {
                    namespace: Some("flux-system".into()),
                    name: "flux-system".into(),
                    path: format!("./{path}"),
                    source_ref: SourceRefName {
                        kind: "GitRepository".into(),
                        name: "flux-system".into(),
                        namespace: Some("flux-system".into()),
                    },
                    file,
                    line: 1,
                    wait: false,
                    health_checks: false,
                },
                path: Some(path),
                entry: Some(EntryKind::Bootstrap),
                url: None,
            });
        }
    }

    fn document(&mut self, relative: &'a str, root: &Node) {
        let Some(what) = reads(relative, root) else { return };
        let namespace = root.str_at(&["metadata", "namespace"]).map(str::to_string);
        match what {
            Read::FluxKustomization => self.flux_kustomization(relative, root, namespace),
            Read::Source { kind, name } => {
                let source = SourceDecl {
                    ignore: root.str_at(&["spec", "ignore"]).map(str::to_string),
                    url: root.str_at(&["spec", "url"]).map(normal_url),
                };
                self.sources.insert((kind.to_string(), namespace, name.to_string()), source);
            }
            Read::ArtifactGenerator => self.artifact_generator(relative, root, namespace),
            Read::FluxInstance(sync) => self.flux_instance(relative, root, sync, namespace),
            Read::KustomizeConfig => {
                let dir = dir_of(relative);
                self.kustomizations.insert(dir.to_string(), read_kustomization(dir, root));
            }
        }
    }

    fn flux_kustomization(&mut self, relative: &'a str, root: &Node, namespace: Option<String>) {
        let written = root.str_at(&["spec", "path"]).unwrap_or("./");
        let source = SourceRefName {
            kind: root.str_at(&["spec", "sourceRef", "kind"]).unwrap_or("GitRepository").to_string(),
            name: root.str_at(&["spec", "sourceRef", "name"]).unwrap_or_default().to_string(),
            namespace: root.str_at(&["spec", "sourceRef", "namespace"]).map(str::to_string).or(namespace.clone()),
        };
        let name = root.str_at(&["metadata", "name"]).unwrap_or("<unnamed>").to_string();
        let bootstrap = relative.rsplit('/').next() == Some("gotk-sync.yaml")
            || (name == "flux-system" && dir_of(relative).rsplit('/').next() == Some("flux-system"));
        self.push(Decl {
            reference: FluxKustomizationRef {
                namespace,
                name,
                path: written.to_string(),
                source_ref: source,
                file: relative.to_string(),
                line: root.line,
                // YAML 1.2 core booleans, as Kubernetes' decoder reads them.
                wait: matches!(root.str_at(&["spec", "wait"]), Some("true" | "True" | "TRUE")),
                health_checks: root
                    .path(&["spec", "healthChecks"])
                    .and_then(Node::as_seq)
                    .is_some_and(|s| !s.is_empty()),
            },
            path: resolvable(written),
            entry: bootstrap.then_some(EntryKind::Bootstrap),
            url: None,
        });
    }

    fn flux_instance(&mut self, relative: &'a str, root: &Node, sync: &Node, namespace: Option<String>) {
        let Some(written) = sync.str_at(&["path"]) else { return };
        let name = sync
            .str_at(&["name"])
            .map(str::to_string)
            .or_else(|| namespace.clone())
            .unwrap_or_else(|| "flux-system".to_string());
        let kind = sync.str_at(&["kind"]).unwrap_or("GitRepository").to_string();
        self.push(Decl {
            reference: FluxKustomizationRef {
                namespace: namespace.clone(),
                name: name.clone(),
                path: written.to_string(),
                source_ref: SourceRefName { kind, name, namespace },
                file: relative.to_string(),
                line: root.line,
                // flux-operator's sync Kustomization is not written here: nothing is known of it.
                wait: false,
                health_checks: false,
            },
            path: resolvable(written),
            entry: Some(EntryKind::FluxInstance),
            url: sync.str_at(&["url"]).map(normal_url),
        });
    }

    /// Flux 2.7's ArtifactGenerator: each artifact copies folders of a source into an
    /// `ExternalArtifact` (`from: "@alias/apps/base/**"`, `to: "@artifact/base/"`).
    fn artifact_generator(&mut self, relative: &'a str, root: &Node, namespace: Option<String>) {
        let strip = |text: &str| -> String {
            let text = text.trim().trim_end_matches("**").trim_end_matches('/');
            let rest = text.split_once('/').map_or("", |(_, rest)| rest);
            join("", rest).unwrap_or_default()
        };
        for artifact in root.path(&["spec", "artifacts"]).and_then(Node::as_seq).unwrap_or_default() {
            let Some(name) = artifact.str_at(&["name"]) else { continue };
            let copies: Vec<ArtifactCopy> = artifact
                .get("copy")
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| Some((strip(c.str_at(&["from"])?), strip(c.str_at(&["to"])?))))
                .collect();
            self.artifacts.entry((namespace.clone(), name.to_string())).or_default().push((relative, copies));
        }
    }

    /// The repository folder an ExternalArtifact path comes from: the copy whose target holds
    /// it, the longest target first.
    fn artifact_folder(&self, source: &SourceRefName, path: &str, from_file: &str) -> Option<String> {
        let generators = self.artifacts.get(&(source.namespace.clone(), source.name.clone()))?;
        let shared = |file: &str| file.split('/').zip(from_file.split('/')).take_while(|(a, b)| a == b).count();
        let (_, copies) = generators.iter().max_by_key(|(file, _)| (shared(file), std::cmp::Reverse(*file)))?;
        copies
            .iter()
            .filter_map(|(from, to)| {
                let rest = if to.is_empty() {
                    path
                } else if path == to {
                    ""
                } else {
                    path.strip_prefix(&format!("{to}/"))?
                };
                let repo = if rest.is_empty() { from.clone() } else { join(from, rest)? };
                Some((to.len(), repo))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, p)| p)
    }

    fn push(&mut self, decl: Decl) {
        let file = self.files.get(decl.reference.file.as_str()).copied();
        if let Some(file) = file {
            self.defined_in.entry(file).or_default().push(self.decls.len());
        }
        self.decls.push(decl);
    }

    fn exists(&self, path: &str) -> bool {
        if path.is_empty() || self.files.contains(path) {
            return true;
        }
        let prefix = format!("{path}/");
        self.files.range(prefix.as_str()..).next().is_some_and(|f| f.starts_with(&prefix))
    }

    /// Build every declaration once; declarations sharing a path and source share the work.
    fn build_all(&self, source_ignores: &[(String, String)]) -> Vec<Built> {
        let home = self.home_urls();
        let mut rules: HashMap<Option<SourceKey>, IgnoreRules> = HashMap::new();
        let mut memo: HashMap<(String, Option<SourceKey>), Built> = HashMap::new();
        self.decls
            .iter()
            .map(|decl| {
                let key = source_key(&decl.reference.source_ref);
                let declared = self.sources.get(&key);
                // A GitRepository of another repository (upstream CRDs) is not this one.
                if let Some(url) = declared.and_then(|s| s.url.as_ref())
                    && key.0 == "GitRepository"
                    && !home.is_empty()
                    && !home.contains(url)
                {
                    return Built::External;
                }
                let rules_key = declared.is_some().then(|| key.clone());
                let ignore = rules
                    .entry(rules_key.clone())
                    .or_insert_with(|| IgnoreRules::new(source_ignores, declared.and_then(|s| s.ignore.as_deref())));
                if decl.reference.path.contains("${") {
                    return self.build_substituted(&decl.reference.path, ignore);
                }
                let Some(path) = self.resolve(decl) else { return self.unresolved(decl) };
                memo.entry((path.clone(), rules_key)).or_insert_with(|| self.build(&path, ignore)).clone()
            })
            .collect()
    }

    /// The URLs of the repositories the entry points sync: GitRepositories with another URL
    /// hold someone else's files.
    fn home_urls(&self) -> HashSet<String> {
        self.decls
            .iter()
            .filter(|d| d.entry.is_some())
            .filter_map(|d| {
                d.url
                    .clone()
                    .or_else(|| self.sources.get(&source_key(&d.reference.source_ref)).and_then(|s| s.url.clone()))
            })
            .collect()
    }

    /// Where in the repository a declaration's path is, `None` when it is not here at all.
    fn resolve(&self, decl: &Decl) -> Option<String> {
        let path = decl.path.clone()?;
        if decl.reference.source_ref.kind == "GitRepository" {
            return self.exists(&path).then_some(path);
        }
        if decl.reference.source_ref.kind == "ExternalArtifact" {
            return self
                .artifact_folder(&decl.reference.source_ref, &path, &decl.reference.file)
                .filter(|p| self.exists(p));
        }
        if path.is_empty() {
            return None;
        }
        if self.exists(&path) {
            return Some(path);
        }
        // An artifact pushed from a sub-folder: `./apps` is `<folder>/apps` for exactly one folder.
        let needle = format!("/{path}/");
        let folders: BTreeSet<&str> = self
            .files
            .iter()
            .filter_map(|f| f.find(&needle).map(|at| &f[..at]))
            .chain(self.files.iter().filter_map(|f| f.strip_suffix(&format!("/{path}"))))
            .collect();
        (folders.len() == 1).then(|| folders.into_iter().next().map(|f| format!("{f}/{path}"))).flatten()
    }

    /// A `spec.path` with post-build `${VAR}`s (filled in by the parent's substitution, which
    /// upkeep does not evaluate): every folder the path could name is taken as applied, so
    /// nothing is called unapplied on a guess.
    fn build_substituted(&self, written: &str, ignore: &IgnoreRules) -> Built {
        let mut pattern = String::new();
        let mut rest = written;
        while let Some(start) = rest.find("${") {
            pattern.push_str(&globset::escape(&rest[..start]));
            pattern.push('*');
            rest = rest[start..].find('}').map_or("", |end| &rest[start + end + 1..]);
        }
        pattern.push_str(&globset::escape(rest));
        let Some(pattern) = join("", &pattern) else {
            return Built::Refused(format!("spec.path `{written}` leads out of the source"));
        };
        let Ok(glob) = globset::GlobBuilder::new(&pattern).literal_separator(true).build() else {
            return Built::Refused(format!("spec.path `{written}` cannot be read as a path"));
        };
        let matcher = glob.compile_matcher();
        let folders: BTreeSet<&str> = self
            .files
            .iter()
            .flat_map(|f| f.match_indices('/').map(move |(i, _)| &f[..i]))
            .filter(|d| matcher.is_match(d))
            .collect();
        let mut files = BTreeSet::new();
        for folder in &folders {
            if let Built::Files(found) = self.build(folder, ignore) {
                files.extend(found);
            }
        }
        if folders.is_empty() {
            return Built::Refused(format!("no folder matches spec.path `{written}` (post-build substitution)"));
        }
        Built::Files(files)
    }

    fn unresolved(&self, decl: &Decl) -> Built {
        let written = &decl.reference.path;
        match &decl.path {
            None if written.contains("${") => Built::Refused(format!(
                "spec.path `{written}` uses post-build substitution, which upkeep cannot follow"
            )),
            None => Built::Refused(format!("spec.path `{written}` leads out of the source")),
            Some(path) if decl.reference.source_ref.kind == "GitRepository" => {
                Built::Refused(format!("`{path}` does not exist in the repository"))
            }
            Some(_) => Built::External,
        }
    }

    fn build(&self, path: &str, ignore: &IgnoreRules) -> Built {
        let mut builder =
            Builder { inputs: self, ignore, out: BTreeSet::new(), stack: Vec::new(), done: HashSet::new() };
        let result = if self.files.contains(path) {
            // A path to a single file: kustomize refuses it (it wants a folder), Flux too.
            Err(format!("`{path}` is a file; spec.path must be a folder"))
        } else if !path.is_empty() && ignore.is_ignored(path, true) {
            Err(format!("`{path}` is excluded by the source's ignore rules"))
        } else {
            builder.unit(path, 0)
        };
        match result {
            Ok(()) => Built::Files(builder.out),
            Err(why) => Built::Refused(why),
        }
    }

    /// The entry points, in a stable order, with how each was recognised.
    fn roots(&self, built: &[Built]) -> Vec<(usize, EntryKind)> {
        let explicit: Vec<(usize, EntryKind)> =
            self.decls.iter().enumerate().filter_map(|(i, d)| d.entry.map(|e| (i, e))).collect();
        if !explicit.is_empty() {
            return explicit;
        }
        let builds = |i: usize| match built.get(i) {
            Some(Built::Files(files)) => Some(files),
            _ => None,
        };
        let self_applying: Vec<(usize, EntryKind)> = (0..self.decls.len())
            .filter(|&i| builds(i).is_some_and(|f| f.contains(&self.decls[i].reference.file)))
            .map(|i| (i, EntryKind::TopLevel))
            .collect();
        if !self_applying.is_empty() {
            return self_applying;
        }
        let mut reached: HashSet<usize> = HashSet::new();
        for i in 0..self.decls.len() {
            for file in builds(i).into_iter().flatten() {
                let children = self.defined_in.get(file.as_str()).map(Vec::as_slice).unwrap_or_default();
                reached.extend(children.iter().filter(|&&c| c != i));
            }
        }
        (0..self.decls.len())
            .filter(|i| !reached.contains(i) && builds(*i).is_some_and(|f| !f.is_empty()))
            .map(|i| (i, EntryKind::TopLevel))
            .collect()
    }
}

fn source_key(source: &SourceRefName) -> SourceKey {
    (source.kind.clone(), source.namespace.clone(), source.name.clone())
}

/// `spec.path` normalised against the source root, unless it cannot be followed.
fn resolvable(written: &str) -> Option<String> {
    if written.contains("${") {
        return None;
    }
    join("", written)
}

/// Is `entry` a file the scan does not read (`patch.json`), whose existence it cannot check?
fn not_scanned(entry: &str) -> bool {
    let name = entry.rsplit('/').next().unwrap_or(entry);
    name.rsplit_once('.').is_some_and(|(_, ext)| !matches!(ext.to_ascii_lowercase().as_str(), "yaml" | "yml"))
}

/// Walks one kustomize build the way kustomize-controller runs it.
struct Builder<'b, 'a> {
    inputs: &'b Inputs<'a>,
    ignore: &'b IgnoreRules,
    out: BTreeSet<String>,
    stack: Vec<String>,
    done: HashSet<String>,
}

impl Builder<'_, '_> {
    /// Build the folder `dir`: its kustomization file, or the one Flux generates.
    fn unit(&mut self, dir: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH || self.stack.iter().any(|d| d == dir) {
            return Err(format!("`{dir}` includes itself"));
        }
        if !self.done.insert(dir.to_string()) {
            return Ok(());
        }
        self.stack.push(dir.to_string());
        let result = match self.inputs.kustomizations.get(dir) {
            Some(k) => self.kustomize(dir, k, depth),
            None => self.generate(dir, depth),
        };
        self.stack.pop();
        result
    }

    fn kustomize(&mut self, dir: &str, k: &Kustomization, depth: usize) -> Result<(), String> {
        let file = self.kustomization_file(dir);
        self.out.insert(file.clone());
        for entry in k.resources.iter().chain(&k.patches) {
            if not_scanned(entry) {
                // A JSON patch or another file the scan does not list: its presence is unknown,
                // so it neither applies anything here nor refuses the build.
                continue;
            }
            if !self.inputs.exists(entry) || self.ignore.is_ignored(entry, !self.inputs.files.contains(entry.as_str()))
            {
                return Err(format!("`{file}` lists `{entry}`, which is not in the source"));
            }
            if self.inputs.files.contains(entry.as_str()) {
                self.out.insert(entry.clone());
            } else if self.inputs.kustomizations.contains_key(entry) {
                self.unit(entry, depth + 1)?;
            } else {
                return Err(format!("`{file}` lists the folder `{entry}`, which has no kustomization.yaml"));
            }
        }
        Ok(())
    }

    fn kustomization_file(&self, dir: &str) -> String {
        let name = ["kustomization.yaml", "kustomization.yml"]
            .into_iter()
            .find(|n| self.inputs.files.contains(join(dir, n).unwrap_or_default().as_str()))
            .unwrap_or("kustomization.yaml");
        join(dir, name).unwrap_or_default()
    }

    /// No kustomization file: every YAML file below `dir`, and sub-folders with one as units.
    fn generate(&mut self, dir: &str, depth: usize) -> Result<(), String> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let below: Vec<&str> =
            self.inputs.files.range(prefix.as_str()..).take_while(|f| f.starts_with(&prefix)).copied().collect();
        let mut units: BTreeSet<String> = BTreeSet::new();
        for file in below {
            if self.ignore.is_ignored(file, false) {
                continue;
            }
            if let Some(unit) = self.nearest_unit(&prefix, file) {
                units.insert(unit);
            } else if self.inputs.broken.contains(file) {
                return Err(format!("`{file}` does not decode as Kubernetes YAML"));
            } else {
                self.out.insert(file.to_string());
            }
        }
        for unit in units {
            self.unit(&unit, depth + 1)?;
        }
        Ok(())
    }

    /// The shallowest folder between `prefix` and `file` that has a kustomization file.
    fn nearest_unit(&self, prefix: &str, file: &str) -> Option<String> {
        let rest = &file[prefix.len()..];
        let mut at = prefix.len();
        for part in rest.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            at += part.len();
            let folder = &file[..at];
            if self.inputs.kustomizations.contains_key(folder) {
                return Some(folder.to_string());
            }
            at += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    fn graph(files: &[(&str, &str)], ignores: &[(String, String)]) -> FluxGraph {
        let streams: Vec<(String, Stream)> = files.iter().map(|(p, t)| (p.to_string(), parse_stream(t))).collect();
        FluxGraph::build(streams.iter().map(|(p, s)| (p.as_str(), s)), ignores)
    }

    fn ks(name: &str, path: &str) -> String {
        format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  path: {path}\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        )
    }

    #[test]
    fn generator_takes_sub_folders_with_a_kustomization_as_units() {
        let entry = ks("flux-system", "./clusters/prod");
        let apps = ks("apps", "./apps");
        let g = graph(
            &[
                ("clusters/prod/flux-system/gotk-sync.yaml", &entry),
                ("clusters/prod/apps.yaml", &apps),
                ("apps/a/hr.yaml", "kind: HelmRelease\n"),
                ("apps/b/kustomization.yaml", "resources: [hr.yaml]\n"),
                ("apps/b/hr.yaml", "kind: HelmRelease\n"),
                ("apps/b/unlisted.yaml", "kind: HelmRelease\n"),
                (".archive/old/hr.yaml", "kind: HelmRelease\n"),
            ],
            &[],
        );
        assert_eq!(g.clusters_applying("apps/a/hr.yaml"), Some(vec!["clusters/prod".to_string()]));
        assert_eq!(g.clusters_applying("apps/b/hr.yaml"), Some(vec!["clusters/prod".to_string()]));
        assert_eq!(g.clusters_applying("apps/b/unlisted.yaml"), Some(vec![]));
        assert_eq!(g.clusters_applying(".archive/old/hr.yaml"), Some(vec![]));
        let by: Vec<String> = g.kustomizations_applying("apps/b/hr.yaml").into_iter().map(|k| k.name).collect();
        assert_eq!(by, vec!["apps"]);
    }

    #[test]
    fn a_missing_resource_makes_the_build_apply_nothing_and_says_so() {
        let entry = ks("flux-system", "./clusters/prod");
        let apps = ks("apps", "./apps");
        let g = graph(
            &[
                ("clusters/prod/flux-system/gotk-sync.yaml", &entry),
                ("clusters/prod/apps.yaml", &apps),
                ("apps/kustomization.yaml", "resources: [hr.yaml, gone.yaml]\n"),
                ("apps/hr.yaml", "kind: HelmRelease\n"),
            ],
            &[],
        );
        assert_eq!(g.clusters_applying("apps/hr.yaml"), Some(vec![]));
        assert_eq!(g.errors().len(), 1, "{:?}", g.errors());
        assert!(g.errors()[0].message.contains("apps/gone.yaml"), "{}", g.errors()[0].message);
        assert_eq!(g.errors()[0].file, "clusters/prod/apps.yaml");
    }

    #[test]
    fn a_json_patch_the_scan_does_not_list_does_not_refuse_the_build() {
        let entry = ks("flux-system", "./apps");
        let g = graph(
            &[
                ("apps/flux-system/gotk-sync.yaml", &entry),
                ("apps/kustomization.yaml", "resources: [hr.yaml]\npatches:\n  - path: replicas.json\n"),
                ("apps/hr.yaml", "kind: HelmRelease\n"),
            ],
            &[],
        );
        assert!(g.errors().is_empty(), "{:?}", g.errors());
        assert_eq!(g.clusters_applying("apps/hr.yaml"), Some(vec!["apps".to_string()]));
    }

    #[test]
    fn a_substituted_path_applies_every_folder_it_could_name() {
        let entry = ks("flux-system", "./clusters/prod");
        let apps = ks("apps", "./apps/${CLUSTER_NAME}");
        let g = graph(
            &[
                ("clusters/prod/flux-system/gotk-sync.yaml", &entry),
                ("clusters/prod/apps.yaml", &apps),
                ("apps/prod/hr.yaml", "kind: HelmRelease\n"),
                ("apps/lab/hr.yaml", "kind: HelmRelease\n"),
                ("apps/prod/deep/hr.yaml", "kind: HelmRelease\n"),
                ("other/hr.yaml", "kind: HelmRelease\n"),
            ],
            &[],
        );
        assert!(g.errors().is_empty(), "{:?}", g.errors());
        let prod = Some(vec!["clusters/prod".to_string()]);
        assert_eq!(g.clusters_applying("apps/prod/hr.yaml"), prod);
        assert_eq!(g.clusters_applying("apps/lab/hr.yaml"), prod);
        assert_eq!(g.clusters_applying("apps/prod/deep/hr.yaml"), prod);
        assert_eq!(g.clusters_applying("other/hr.yaml"), Some(vec![]));
    }

    #[test]
    fn no_flux_kustomization_means_an_inactive_graph() {
        let g = graph(&[("apps/hr.yaml", "kind: HelmRelease\n")], &[]);
        assert!(!g.is_active());
        assert_eq!(g.clusters_applying("apps/hr.yaml"), None);
    }
}
