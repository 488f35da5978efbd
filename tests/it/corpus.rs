//! The five real repositories in `fixtures/corpus`: summaries, full JSON for two, no silent
//! drops, and spans that hold exactly the reported versions.

use std::collections::BTreeMap;
use std::path::Path;

use upkeep::extract::Scan;
use upkeep::model::Kind;

use super::util::{REPOS, fixture, scan_dir};

fn summary(scan: &Scan) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut components: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &scan.dependencies {
        *kinds.entry(d.kind.as_str()).or_default() += 1;
        *components.entry(d.component.as_str()).or_default() += 1;
        *reasons.entry(d.skip.as_ref().map_or("(updatable)", |s| s.reason.as_str())).or_default() += 1;
    }
    let list = |m: &BTreeMap<&str, usize>| m.iter().map(|(k, v)| format!("  {k}: {v}")).collect::<Vec<_>>().join("\n");
    let errors: Vec<String> =
        scan.errors.iter().map(|e| format!("  {}: {}", upkeep::report::error_place(e), e.message)).collect();
    format!(
        "files: {}\ndependencies: {}\nkinds:\n{}\ncomponents:\n{}\nstatus:\n{}\napplied by:\n{}\nerrors:\n{}\n",
        scan.files_scanned,
        scan.dependencies.len(),
        list(&kinds),
        list(&components),
        list(&reasons),
        list(&applied_by(scan)),
        errors.join("\n")
    )
}

/// Dependencies per cluster that applies them (a dependency two clusters apply counts for
/// each), and those no cluster applies.
fn applied_by(scan: &Scan) -> BTreeMap<&str, usize> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &scan.dependencies {
        match d.clusters.as_deref() {
            None => *counts.entry("(no Flux entry point)").or_default() += 1,
            Some([]) => *counts.entry("(not applied)").or_default() += 1,
            Some(clusters) => {
                for c in clusters {
                    *counts.entry(c.as_str()).or_default() += 1;
                }
            }
        }
    }
    counts
}

/// Checked by hand against each repository's files.
///
/// - flux2-kustomize-helm-example: `clusters/{production,staging}/flux-system` are bootstrap
///   folders (gotk-sync.yaml still empty); each cluster's ArtifactGenerator copies
///   `infrastructure/**` and `apps/{base,<cluster>}/**` into ExternalArtifacts its Kustomizations
///   build. So both clusters apply the two controllers and the podinfo base, each its own values
///   patch and gotk-components: 5 dependencies each, nothing unapplied.
/// - bjw-s-home-ops: no bootstrap folder; the Kustomization `cluster`
///   (`kubernetes/main/flux/config/cluster.yaml`) applies its own folder, so it is the cluster
///   `kubernetes/main/flux`. Its GitRepository ignores everything but `/kubernetes`, and the
///   `.archive/kubernetes/*/ks.yaml` Kustomizations point at paths that no longer exist: the 49
///   releases under `.archive/` are not applied, the other 85 are.
#[test]
fn corpus_applied_dependencies_by_cluster() {
    let counts = |repo: &str| -> Vec<(String, usize)> {
        let scan = scan_dir(&fixture(&format!("corpus/{repo}")));
        applied_by(&scan).into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    assert_eq!(
        counts("flux2-kustomize-helm-example"),
        vec![("clusters/production".to_string(), 5), ("clusters/staging".to_string(), 5)]
    );
    assert_eq!(
        counts("bjw-s-home-ops"),
        vec![("(not applied)".to_string(), 49), ("kubernetes/main/flux".to_string(), 85)]
    );
    let bjw = scan_dir(&fixture("corpus/bjw-s-home-ops"));
    for d in &bjw.dependencies {
        let archived = d.manifest.file.starts_with(".archive/");
        assert_eq!(d.skip.as_ref().is_some_and(|s| s.reason.as_str() == "not-applied"), archived, "{}", d.id);
    }
}

#[test]
fn corpus_summaries() {
    for repo in REPOS {
        let scan = scan_dir(&fixture(&format!("corpus/{repo}")));
        insta::assert_snapshot!(format!("summary-{repo}"), summary(&scan));
    }
}

#[test]
fn corpus_full_json() {
    for repo in ["flux2-kustomize-helm-example", "bjw-s-home-ops"] {
        let scan = scan_dir(&fixture(&format!("corpus/{repo}")));
        let mut out = Vec::new();
        upkeep::report::write_json(&upkeep::report::scan_only(&scan), &mut out).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(format!("json-{repo}"), String::from_utf8_lossy(&out));
    }
}

/// Count top-level `kind: HelmRelease` documents per file by reading the text, independently of
/// the YAML parser the scan uses.
fn helmrelease_documents(root: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")).flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.to_string_lossy();
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let n = text.lines().filter(|l| l.trim_end() == "kind: HelmRelease").count();
            if n > 0 {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                counts.insert(rel, n);
            }
        }
    }
    counts
}

#[test]
fn every_helmrelease_is_extracted_or_skipped_with_a_reason() {
    for repo in REPOS {
        let root = fixture(&format!("corpus/{repo}"));
        let expected = helmrelease_documents(&root);
        let scan = scan_dir(&root);
        let mut found: BTreeMap<String, usize> = BTreeMap::new();
        for d in scan.dependencies.iter().filter(|d| d.kind == Kind::HelmRelease) {
            *found.entry(d.manifest.file.clone()).or_default() += 1;
            if let Some(skip) = &d.skip {
                assert!(!skip.message.is_empty(), "{}: a skip needs words", d.id);
            }
        }
        assert_eq!(found, expected, "{repo}: HelmReleases per file (scan vs text)");
        assert!(expected.values().sum::<usize>() > 0, "{repo} has HelmReleases");
    }
}

#[test]
fn every_span_holds_the_reported_version() {
    let mut checked = 0;
    for repo in REPOS {
        let root = fixture(&format!("corpus/{repo}"));
        let scan = scan_dir(&root);
        for d in &scan.dependencies {
            let Some(loc) = &d.location else { continue };
            let text = std::fs::read_to_string(root.join(&loc.file)).unwrap_or_else(|e| panic!("{e}"));
            let current = d.current.as_deref().unwrap_or_else(|| panic!("{}: location without current", d.id));
            assert_eq!(&text[loc.span.clone()], current, "{repo} {}", d.id);
            // Line and column computed independently from the byte offset.
            let before = &text[..loc.span.start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().filter(|&c| c != '\u{feff}').count() + 1;
            assert_eq!((loc.line, loc.column), (line, column), "{repo} {}", d.id);
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} spans checked");
}

#[test]
fn namespaces_set_by_parents_link_sources() {
    // flux2-kustomize-helm-example: the base HelmRelease has a namespace only through its
    // kustomization; bjw-s: most releases get theirs from a Flux Kustomization's targetNamespace.
    let scan = scan_dir(&fixture("corpus/bjw-s-home-ops"));
    // Only the archived folders, which no Flux Kustomization reaches, have no namespace.
    let unknown = scan
        .dependencies
        .iter()
        .filter(|d| d.kind == Kind::HelmRelease && d.namespace.is_none() && !d.manifest.file.starts_with(".archive/"))
        .count();
    let linked = scan.dependencies.iter().filter(|d| d.kind == Kind::HelmRelease && d.package.is_some()).count();
    assert!(linked >= 125, "only {linked} releases linked to a source");
    assert_eq!(unknown, 0, "{unknown} releases without a namespace");
}
