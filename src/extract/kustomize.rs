//! Which namespace a manifest lands in when kustomize or Flux sets it from outside the file.
//!
//! Many Flux repositories leave `metadata.namespace` off their HelmReleases and let a parent set
//! it: a kustomize `kustomization.yaml` with `namespace:`, or a Flux `Kustomization` with
//! `spec.targetNamespace` pointing `spec.path` at the folder. Renovate does not follow either and
//! reports such releases as `unknown-registry` (its flux readme, "Namespaces are not inferred").
//!
//! Both transformers *override* a namespace already in the file (kustomize docs, "namespace":
//! "will override the existing namespace if it is set on a resource"; Flux docs,
//! `targetNamespace`: "sets or overrides the namespace"), and the outermost one wins because it
//! runs last. So the namespace computed here takes precedence over `metadata.namespace`.
//!
//! A file reached through chains that disagree (one base in two overlays with different
//! namespaces) gets no inferred namespace; its own `metadata.namespace` is used instead.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::yaml::{Node, Stream};

/// How deep resource chains are followed; real repositories nest a handful of levels.
const MAX_DEPTH: usize = 64;

/// What kustomize and Flux Kustomizations say about each file.
#[derive(Debug, Default)]
pub struct Layout {
    namespaces: HashMap<String, String>,
    patches: HashMap<String, String>,
}

impl Layout {
    /// The namespace a parent forces on every object of `file`, if exactly one does.
    pub fn namespace_of(&self, file: &str) -> Option<&str> {
        self.namespaces.get(file).map(String::as_str)
    }

    /// The kustomization that uses `file` as a patch, if one does.
    pub fn patched_by(&self, file: &str) -> Option<&str> {
        self.patches.get(file).map(String::as_str)
    }
}

/// What one `kustomization.yaml` lists, resolved against its folder.
#[derive(Debug)]
pub(crate) struct Kustomization {
    pub(crate) namespace: Option<String>,
    /// `resources`, `components` and `bases`: files or folders.
    pub(crate) resources: Vec<String>,
    /// Patch files (`patchesStrategicMerge`, `patches[].path`).
    pub(crate) patches: Vec<String>,
}

/// Is this the file name kustomize looks for in a folder?
pub fn is_kustomization_file(relative: &str) -> bool {
    matches!(file_name(relative), "kustomization.yaml" | "kustomization.yml" | "Kustomization")
}

fn file_name(relative: &str) -> &str {
    relative.rsplit('/').next().unwrap_or(relative)
}

pub(crate) fn dir_of(relative: &str) -> &str {
    relative.rfind('/').map_or("", |i| &relative[..i])
}

/// Resolve `entry` (as written in a kustomization or a Flux `spec.path`) against `dir`.
/// Remote and out-of-root references give `None`.
pub fn join(dir: &str, entry: &str) -> Option<String> {
    let entry = entry.trim();
    if entry.is_empty() || entry.contains("://") || entry.starts_with("github.com/") || entry.starts_with("git@") {
        return None;
    }
    let mut parts: Vec<&str> =
        if entry.starts_with('/') { Vec::new() } else { dir.split('/').filter(|p| !p.is_empty()).collect() };
    for part in entry.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Work out the layout from every parsed file (`relative path → stream`).
pub fn layout<'a>(files: impl IntoIterator<Item = (&'a str, &'a Stream)>) -> Layout {
    let files: Vec<(&str, &Stream)> = files.into_iter().collect();
    layout_of(files.iter().map(|(relative, _)| *relative), files.iter().copied())
}

/// Does this document shape the layout (a Flux `Kustomization`, or a kustomize
/// `kustomization.yaml`)? Only such documents are read by [`layout_of`].
pub fn shapes_layout(relative: &str, root: &Node) -> bool {
    let api = root.str_at(&["apiVersion"]).unwrap_or("");
    let kind = root.str_at(&["kind"]).unwrap_or("");
    is_flux_kustomization(api, kind) || is_kustomize_config(relative, api)
}

fn is_flux_kustomization(api: &str, kind: &str) -> bool {
    api.starts_with("kustomize.toolkit.fluxcd.io/") && kind == "Kustomization"
}

fn is_kustomize_config(relative: &str, api: &str) -> bool {
    is_kustomization_file(relative) && (api.is_empty() || api.starts_with("kustomize.config.k8s.io/"))
}

/// Work out the layout from the names of every file and the parsed files that may shape it:
/// documents for which [`shapes_layout`] is false are ignored, so a caller may leave them out.
pub fn layout_of<'a>(
    all_files: impl IntoIterator<Item = &'a str>,
    shaping: impl IntoIterator<Item = (&'a str, &'a Stream)>,
) -> Layout {
    let mut kustomizations: BTreeMap<String, Kustomization> = BTreeMap::new();
    let mut flux_roots: Vec<(String, Option<String>)> = Vec::new();
    let all_files: BTreeSet<&str> = all_files.into_iter().collect();

    for (relative, stream) in shaping {
        for doc in &stream.documents {
            let root = &doc.root;
            let api = root.str_at(&["apiVersion"]).unwrap_or("");
            let kind = root.str_at(&["kind"]).unwrap_or("");
            if is_flux_kustomization(api, kind) {
                if let Some(path) = root.str_at(&["spec", "path"]).and_then(|p| join("", p)) {
                    let target =
                        root.str_at(&["spec", "targetNamespace"]).filter(|t| !t.contains("${")).map(str::to_string);
                    flux_roots.push((path, target));
                }
            } else if is_kustomize_config(relative, api) {
                let dir = dir_of(relative);
                kustomizations.insert(dir.to_string(), read_kustomization(dir, root));
            }
        }
    }

    let mut assigned: HashMap<String, BTreeSet<Option<String>>> = HashMap::new();
    let mut patches = HashMap::new();
    let mut walker = Walker {
        kustomizations: &kustomizations,
        all_files: &all_files,
        assigned: &mut assigned,
        patches: &mut patches,
        seen: HashSet::new(),
    };

    for (path, target) in &flux_roots {
        walker.visit(path, target.as_deref(), 0, &mut Vec::new());
    }
    let included: BTreeSet<&String> = kustomizations.values().flat_map(|k| k.resources.iter()).collect();
    for dir in kustomizations.keys() {
        if !included.contains(dir) {
            walker.visit(dir, None, 0, &mut Vec::new());
        }
    }

    let namespaces = assigned
        .into_iter()
        .filter_map(|(file, seen)| {
            let named: Vec<String> = seen.into_iter().flatten().collect();
            (named.len() == 1).then(|| (file, named.into_iter().next().unwrap_or_default()))
        })
        .collect();
    Layout { namespaces, patches }
}

pub(crate) fn read_kustomization(dir: &str, root: &Node) -> Kustomization {
    let list = |key: &str| -> Vec<String> {
        root.get(key)
            .and_then(Node::as_seq)
            .map(|items| {
                // An inline patch (`patchesStrategicMerge: [|- ...]`) is YAML, not a path.
                items
                    .iter()
                    .filter_map(Node::as_str)
                    .filter(|e| !e.contains('\n'))
                    .filter_map(|e| join(dir, e))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut resources = list("resources");
    resources.extend(list("components"));
    resources.extend(list("bases"));
    let mut patches = list("patchesStrategicMerge");
    // `patches:` entries are mappings; only those with a `path:` name a file.
    if let Some(items) = root.get("patches").and_then(Node::as_seq) {
        patches.extend(items.iter().filter_map(|p| p.str_at(&["path"])).filter_map(|p| join(dir, p)));
    }
    let namespace = root.str_at(&["namespace"]).filter(|n| !n.contains("${")).map(str::to_string);
    Kustomization { namespace, resources, patches }
}

struct Walker<'a> {
    kustomizations: &'a BTreeMap<String, Kustomization>,
    all_files: &'a BTreeSet<&'a str>,
    assigned: &'a mut HashMap<String, BTreeSet<Option<String>>>,
    patches: &'a mut HashMap<String, String>,
    /// `(path, namespace carried in)` already walked: the same folder reached again through
    /// another parent with the same namespace adds nothing, and without this a diamond of
    /// `resources:` 64 levels deep would take 2^64 steps.
    seen: HashSet<(String, Option<String>)>,
}

impl Walker<'_> {
    fn visit(&mut self, path: &str, carry: Option<&str>, depth: usize, stack: &mut Vec<String>) {
        if depth > MAX_DEPTH || stack.iter().any(|p| p == path) {
            return;
        }
        if !self.seen.insert((path.to_string(), carry.map(str::to_string))) {
            return;
        }
        if let Some(k) = self.kustomizations.get(path) {
            // The outer namespace wins: it is applied after the inner one.
            let ns = carry.or(k.namespace.as_deref()).map(str::to_string);
            stack.push(path.to_string());
            for patch in &k.patches {
                self.assign(patch, ns.as_deref());
                let file = if path.is_empty() {
                    "kustomization.yaml".to_string()
                } else {
                    format!("{path}/kustomization.yaml")
                };
                self.patches.entry(patch.clone()).or_insert(file);
            }
            for resource in &k.resources {
                self.visit(resource, ns.as_deref(), depth + 1, stack);
            }
            stack.pop();
        } else if self.all_files.contains(path) {
            self.assign(path, carry);
        } else {
            // A folder without kustomization.yaml: Flux generates one that takes every manifest
            // below it, recursively.
            let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
            let all_files = self.all_files;
            let below = (std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded);
            for file in all_files.range::<str, _>(below).take_while(|f| f.starts_with(&prefix)) {
                self.assign(file, carry);
            }
        }
    }

    fn assign(&mut self, file: &str, namespace: Option<&str>) {
        self.assigned.entry(file.to_string()).or_default().insert(namespace.map(str::to_string));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    fn layout_of(files: &[(&str, &str)]) -> Layout {
        let streams: Vec<(String, Stream)> = files.iter().map(|(p, t)| (p.to_string(), parse_stream(t))).collect();
        layout(streams.iter().map(|(p, s)| (p.as_str(), s)))
    }

    #[test]
    fn joins_relative_entries_and_refuses_escapes() {
        assert_eq!(join("apps/staging", "../base/podinfo").as_deref(), Some("apps/base/podinfo"));
        assert_eq!(join("a", "./b.yaml").as_deref(), Some("a/b.yaml"));
        assert_eq!(join("", "../x"), None);
        assert_eq!(join("a", "https://example.com/x.yaml"), None);
    }

    #[test]
    fn a_deep_diamond_of_resources_is_walked_once_per_folder() {
        // Level i lists level i+1 twice (as `./n` and `n/`): 2^60 paths, 60 folders.
        let mut files: Vec<(String, String)> = (0..60)
            .map(|i| {
                let dir = (0..=i).map(|j| format!("d{j}")).collect::<Vec<_>>().join("/");
                (format!("{dir}/kustomization.yaml"), format!("resources: [./d{n}, d{n}/, release.yaml]\n", n = i + 1))
            })
            .collect();
        files.push(("kustomization.yaml".into(), "namespace: top\nresources: [./d0, d0]\n".into()));
        let deepest = format!("{}/release.yaml", (0..60).map(|j| format!("d{j}")).collect::<Vec<_>>().join("/"));
        files.push((deepest.clone(), "kind: HelmRelease\n".into()));
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let layout = layout_of(&refs);
        assert_eq!(layout.namespace_of(&deepest), Some("top"));
    }

    #[test]
    fn outer_kustomization_namespace_wins_through_folders() {
        let layout = layout_of(&[
            ("apps/kustomization.yaml", "namespace: outer\nresources: [./app]\n"),
            (
                "apps/app/kustomization.yaml",
                "namespace: inner\nresources: [release.yaml]\npatches:\n  - path: values.yaml\n",
            ),
            ("apps/app/release.yaml", "kind: HelmRelease\n"),
            ("apps/app/values.yaml", "kind: HelmRelease\n"),
        ]);
        assert_eq!(layout.namespace_of("apps/app/release.yaml"), Some("outer"));
        assert_eq!(layout.patched_by("apps/app/values.yaml"), Some("apps/app/kustomization.yaml"));
    }

    #[test]
    fn flux_target_namespace_covers_folders_without_kustomization() {
        let layout = layout_of(&[
            (
                "clusters/ks.yaml",
                "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nspec:\n  path: ./apps/x\n  targetNamespace: media\n",
            ),
            ("apps/x/sub/hr.yaml", "kind: HelmRelease\n"),
            ("apps/y/hr.yaml", "kind: HelmRelease\n"),
        ]);
        assert_eq!(layout.namespace_of("apps/x/sub/hr.yaml"), Some("media"));
        assert_eq!(layout.namespace_of("apps/y/hr.yaml"), None);
    }

    #[test]
    fn disagreeing_chains_infer_nothing_and_cycles_end() {
        let layout = layout_of(&[
            ("a/kustomization.yaml", "namespace: one\nresources: [../base]\n"),
            ("b/kustomization.yaml", "namespace: two\nresources: [../base]\n"),
            ("base/kustomization.yaml", "resources: [hr.yaml, ../base]\n"),
            ("base/hr.yaml", "kind: HelmRelease\n"),
        ]);
        assert_eq!(layout.namespace_of("base/hr.yaml"), None);
    }
}
