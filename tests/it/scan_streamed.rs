//! The streamed scan (each file's tree dropped once read, files read on every core) gives
//! exactly what the scan holding every tree gives (issue 13: "no behaviour visible in the scan
//! JSON changes"): on every corpus repository, on a generated repository with the awkward
//! cases, and when the streamed pass has to give up and fall back.

use upkeep::extract::{Scan, ScanOptions, scan, scan_holding_all, walk};
use upkeep::report;

use super::util::{REPOS, fixture, tree};

/// Everything a scan shows: the JSON report, the problems, and the Flux graph.
fn everything(scan: &Scan) -> String {
    let mut json = Vec::new();
    report::write(&report::scan_only(scan), report::Format::Json, &mut json).unwrap_or_else(|e| panic!("{e}"));
    format!(
        "{}\nerrors: {:#?}\npassed over: {:#?}\nfiles: {}\napi versions: {:#?}\nclusters: {:#?}\nkustomizations: {:#?}\nby file: {:#?}",
        String::from_utf8_lossy(&json),
        scan.errors,
        scan.passed_over,
        scan.files_scanned,
        scan.api_versions,
        scan.flux_graph.clusters(),
        scan.flux_graph.kustomizations(),
        scan.flux_graph.clusters_by_file(),
    )
}

fn both(root: &std::path::Path, options: &ScanOptions) -> (String, String) {
    let streamed = scan(root, options).unwrap_or_else(|e| panic!("{e}"));
    let listing = walk::list(root, options.max_file_size).unwrap_or_else(|e| panic!("{e}"));
    let held = scan_holding_all(listing, options);
    (everything(&streamed), everything(&held))
}

#[test]
fn every_corpus_repository_scans_the_same_streamed() {
    for repo in REPOS {
        let (streamed, held) = both(&fixture(&format!("corpus/{repo}")), &ScanOptions::default());
        assert!(streamed.contains("\"dependencies\""), "{repo}: no report");
        assert_eq!(streamed, held, "{repo}: the streamed scan differs from the one holding every tree");
    }
}

/// A HelmRelease file with a release that takes its namespace from the folder's
/// kustomization, and its source in another file.
fn release(n: usize) -> String {
    format!(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: app-{n}\nspec:\n  chart:\n    spec:\n      chart: app\n      version: 1.{n}.0\n      sourceRef:\n        kind: HelmRepository\n        name: charts-{m}\n        namespace: flux-system\n",
        m = n % 7
    )
}

/// More than enough files and releases for the threaded paths (a thousand of each), with:
/// sources after the releases that use them, so linking crosses the threads' shares, a YAML
/// error, a file that is not UTF-8 listed as a resource, a flux-instance chart the graph reads,
/// duplicate keys, and a cluster entry point.
fn awkward_repository() -> tempfile::TempDir {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for n in 0..1_010 {
        let mut text = release(n);
        if n % 250 == 0 {
            // A release whose chart is an OCIRepository's, in both threads' shares.
            text.push_str(&format!("---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: oci-app-{n}\nspec:\n  chartRef:\n    kind: OCIRepository\n    name: oci-{n}\n    namespace: flux-system\n"));
        }
        files.push((format!("apps/app-{n}/release.yaml"), text.into_bytes()));
        files.push((
            format!("apps/app-{n}/kustomization.yaml"),
            format!("namespace: team-{}\nresources: [release.yaml, broken.yaml]\n", n % 3).into_bytes(),
        ));
    }
    files.push(("apps/app-3/broken.yaml".into(), b"kind: ConfigMap\n\xff\xfe not text\n".to_vec()));
    files.push((
        "apps/app-4/bad.yaml".into(),
        b"apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: x\n".to_vec(),
    ));
    files.push((
        "apps/app-5/dup.yaml".into(),
        b"apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: d\n  name: e\n".to_vec(),
    ));
    let sources: String = (0..7)
        .map(|m| format!("---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts-{m}\n  namespace: flux-system\nspec:\n  url: https://charts-{m}.example.com\n"))
        .collect();
    files.push(("zz/sources.yaml".into(), sources.into_bytes()));
    let oci: String = ["0", "250", "500", "750", "1000", "lonely"]
        .iter()
        .map(|n| format!("---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: oci-{n}\n  namespace: flux-system\nspec:\n  url: oci://ghcr.io/example/{n}\n  ref:\n    tag: 1.0.0\n"))
        .collect();
    files.push(("zz/oci.yaml".into(), oci.into_bytes()));
    files.push((
        "zz/flux-operator.yaml".into(),
        b"apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: flux\n  namespace: flux-system\nspec:\n  chart:\n    spec:\n      chart: flux-instance\n      version: 0.20.0\n      sourceRef: {kind: HelmRepository, name: charts-0, namespace: flux-system}\n  values:\n    instance:\n      sync:\n        kind: GitRepository\n        url: https://github.com/example/fleet\n        path: clusters/prod\n".to_vec(),
    ));
    files.push((
        "clusters/prod/apps.yaml".into(),
        b"apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: apps\n  namespace: flux-system\nspec:\n  path: ./apps\n  sourceRef: {kind: GitRepository, name: flux-system}\n".to_vec(),
    ));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (p.as_str(), t.as_slice())).collect();
    tree(&refs)
}

#[test]
fn an_awkward_repository_scans_the_same_streamed() {
    let dir = awkward_repository();
    let (streamed, held) = both(dir.path(), &ScanOptions::default());
    // The cases are there: linked across files, a namespace from the folder, the problems.
    assert!(streamed.contains("helmrelease/team-1/app-100"), "{streamed}");
    assert!(streamed.contains("not UTF-8"), "{streamed}");
    assert!(streamed.contains("YAML syntax error"), "{streamed}");
    assert!(streamed.contains("duplicate key `name`"), "{streamed}");
    assert!(streamed.contains("clusters/prod"), "{streamed}");
    let files = streamed.split("\nfiles: ").nth(1).and_then(|rest| rest.split('\n').next()).unwrap_or_default();
    assert_eq!(files, "2026", "the threaded paths read over a thousand files and resolve over a thousand releases");
    // Sources are linked from every share of the releases: only the one no release points at
    // is a dependency of its own.
    assert!(streamed.contains("\"ocirepository/flux-system/oci-lonely\""), "{streamed}");
    for n in [0, 250, 500, 750, 1000] {
        assert!(streamed.contains(&format!("helmrelease/team-{}/oci-app-{n}", n % 3)), "{streamed}");
        assert!(!streamed.contains(&format!("\"ocirepository/flux-system/oci-{n}\"")), "oci-{n} linked");
    }
    assert_eq!(streamed, held);
}

/// A Flux Kustomization whose apiVersion is written with escapes: the text never says
/// `kustomize.toolkit.fluxcd.io`, so the streamed pass cannot know the namespace it sets
/// until it has read the file. It notices, and the scan falls back: same answer, namespace
/// included.
#[test]
fn a_kustomization_hidden_by_escapes_still_sets_the_namespace() {
    let mut files: Vec<(String, Vec<u8>)> =
        (0..80).map(|n| (format!("apps/app-{n}.yaml"), release(n).into_bytes())).collect();
    files.push((
        "clusters/prod/apps.yaml".into(),
        b"apiVersion: \"kustomize\\x2etoolkit.fluxcd.io/v1\"\nkind: Kustomization\nmetadata:\n  name: apps\n  namespace: flux-system\nspec:\n  path: ./apps\n  targetNamespace: media\n  sourceRef: {kind: GitRepository, name: flux-system}\n".to_vec(),
    ));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (p.as_str(), t.as_slice())).collect();
    let dir = tree(&refs);
    let (streamed, held) = both(dir.path(), &ScanOptions::default());
    assert!(streamed.contains("helmrelease/media/app-42"), "{streamed}");
    assert_eq!(streamed, held);
}
