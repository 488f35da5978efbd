//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use upkeep::extract::{Scan, ScanOptions, scan};

/// A path under `fixtures/`.
pub(crate) fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

/// The five real repositories under `fixtures/corpus`.
pub(crate) const REPOS: [&str; 5] = [
    "billimek-k8s-gitops",
    "bjw-s-home-ops",
    "carpenike-k8s-gitops-2021",
    "flux2-kustomize-helm-example",
    "onedr0p-home-ops-2022",
];

/// Scan a directory with default options, panicking on a walk error.
pub(crate) fn scan_dir(root: &Path) -> Scan {
    scan(root, &ScanOptions::default()).unwrap_or_else(|e| panic!("scan of {} failed: {e}", root.display()))
}

/// Write files (relative path, content) under a new temporary directory.
pub(crate) fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (path, content) in files {
        let full = dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&full, content).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    dir
}

/// The dependency with this id.
pub(crate) fn dep<'a>(scan: &'a Scan, id: &str) -> &'a upkeep::model::Dependency {
    scan.dependencies.iter().find(|d| d.id == id).unwrap_or_else(|| {
        panic!("no dependency {id}; have {:?}", scan.dependencies.iter().map(|d| &d.id).collect::<Vec<_>>())
    })
}

/// The skip reason of a dependency, as its kebab-case name.
pub(crate) fn reason(scan: &Scan, id: &str) -> Option<&'static str> {
    dep(scan, id).skip.as_ref().map(|s| s.reason.as_str())
}

/// A minimal HelmRelease manifest pointing at `repo` in flux-system.
pub(crate) fn helmrelease(name: &str, version: &str) -> String {
    format!(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  chart:\n    spec:\n      chart: {name}\n      version: {version}\n      sourceRef:\n        kind: HelmRepository\n        name: repo\n        namespace: flux-system\n"
    )
}

/// The HelmRepository `helmrelease` points at.
pub(crate) const REPOSITORY: &str = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: repo\n  namespace: flux-system\nspec:\n  url: https://charts.example.com\n";
