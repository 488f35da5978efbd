//! Bad input gets a clear error naming the place, and the scan goes on for everything else.

use std::time::{Duration, Instant};

use upkeep::extract::{ScanOptions, scan};

use super::util::{REPOSITORY, dep, helmrelease, reason, scan_dir, tree};

#[test]
fn a_broken_flux_file_is_an_error_with_its_place_and_the_rest_still_scans() {
    let broken = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: good-before\n  namespace: apps\nspec:\n  chart:\n    spec:\n      chart: a\n      version: 1.0.0\n      sourceRef: {kind: HelmRepository, name: repo, namespace: flux-system}\n---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: broken\n  namespace: apps\nspec:\n  chart: [unclosed\n";
    let good = helmrelease("fine", "2.0.0");
    let dir = tree(&[
        ("broken.yaml", broken.as_bytes()),
        ("good.yaml", good.as_bytes()),
        ("repo.yaml", REPOSITORY.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    let err = scan.errors.iter().find(|e| e.file == "broken.yaml").unwrap_or_else(|| panic!("{:?}", scan.errors));
    // The sequence opened on line 19 is still open when the file ends on line 20.
    assert_eq!(err.line, Some(20), "{err:?}");
    assert!(err.column.is_some() && err.message.starts_with("YAML syntax error"), "{err:?}");
    // The document before the break is read; the broken one is accounted for by name.
    assert_eq!(dep(&scan, "helmrelease/apps/good-before").current.as_deref(), Some("1.0.0"));
    assert_eq!(reason(&scan, "helmrelease/apps/broken"), Some("unparsable"));
    assert_eq!(reason(&scan, "helmrelease/apps/fine"), None);
}

#[test]
fn non_kubernetes_yaml_that_does_not_parse_is_passed_over_quietly() {
    let template = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n  labels:\n    {{- include \"x.labels\" . | nindent 4 }}\n";
    let workflow = "on: [push]\njobs:\n  x: {runs-on: ubuntu-latest\n";
    let dir = tree(&[
        ("chart/templates/deploy.yaml", template.as_bytes()),
        (".github/workflows/ci.yml", workflow.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    assert_eq!(scan.passed_over.len(), 2, "{:?}", scan.passed_over);
    assert!(scan.passed_over.iter().all(|p| p.line.is_some()));
}

#[test]
fn non_utf8_and_utf16_files() {
    let mut latin1 = helmrelease("latin", "1.0.0").into_bytes();
    latin1.extend_from_slice(b"# caf\xe9\n");
    let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain("kind: HelmRelease\n".bytes().flat_map(|b| [b, 0])).collect();
    let junk = b"\xff\xfe\xfd not yaml at all \x80\x81".to_vec();
    let dir = tree(&[("latin.yaml", &latin1), ("utf16.yaml", &utf16), ("junk.yaml", &junk[2..])]);
    let scan = scan_dir(dir.path());
    let latin = scan.errors.iter().find(|e| e.file == "latin.yaml").unwrap_or_else(|| panic!("{:?}", scan.errors));
    assert!(latin.message.contains("not UTF-8") && latin.line == Some(15), "{latin:?}");
    assert!(scan.errors.iter().any(|e| e.file == "utf16.yaml" && e.message.contains("UTF-16")));
    assert!(scan.passed_over.iter().any(|e| e.file == "junk.yaml"), "junk is not a Flux file: quiet");
}

#[test]
fn a_yaml_bomb_costs_milliseconds_and_the_release_is_still_read() {
    let mut bomb = helmrelease("bombed", "3.1.4");
    bomb.push_str("  values:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..30 {
        bomb.push_str(&format!(
            "    a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    let dir = tree(&[("bomb.yaml", bomb.as_bytes()), ("repo.yaml", REPOSITORY.as_bytes())]);
    let started = Instant::now();
    let scan = scan_dir(dir.path());
    // Not a timing assertion: 10^30 expanded nodes would never finish at all.
    assert!(started.elapsed().as_secs() < 60);
    assert_eq!(dep(&scan, "helmrelease/apps/bombed").current.as_deref(), Some("3.1.4"));
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
}

#[test]
fn duplicate_keys_alias_versions_and_substitutions_each_have_an_outcome() {
    let duplicate = helmrelease("dup", "1.0.0").replacen("\nspec:\n", "\nspec:\n  interval: 1h\n  interval: 2h\n", 1);
    let alias = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: aliased\n  namespace: apps\n  annotations:\n    v: &v 1.2.3\nspec:\n  chart:\n    spec:\n      chart: &app aliased\n      version: *v\n      sourceRef: {kind: HelmRepository, name: repo, namespace: flux-system}\n";
    let chart_alias = helmrelease("charted", "0.9.0")
        .replace("chart: charted", "chart: *app")
        .replace("name: charted", "name: &app charted");
    let substituted = helmrelease("subst", "${APP_VERSION}");
    let number = helmrelease("numeric", "1.10");
    let dir = tree(&[
        ("dup.yaml", duplicate.as_bytes()),
        ("alias.yaml", alias.as_bytes()),
        ("chart-alias.yaml", chart_alias.as_bytes()),
        ("subst.yaml", substituted.as_bytes()),
        ("number.yaml", number.as_bytes()),
        ("repo.yaml", REPOSITORY.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    assert_eq!(reason(&scan, "helmrelease/apps/dup"), Some("unparsable"));
    let dup_error = scan.errors.iter().find(|e| e.file == "dup.yaml").unwrap_or_else(|| panic!("{:?}", scan.errors));
    assert!(dup_error.message.contains("duplicate key `interval`") && dup_error.line == Some(8), "{dup_error:?}");
    assert_eq!(reason(&scan, "helmrelease/apps/aliased"), Some("version-alias"));
    assert_eq!(dep(&scan, "helmrelease/apps/aliased").current.as_deref(), Some("1.2.3"));
    assert_eq!(reason(&scan, "helmrelease/apps/charted"), None, "a chart name through an alias is fine");
    assert_eq!(reason(&scan, "helmrelease/apps/subst"), Some("substitution"));
    // A version YAML would read as a float keeps its text.
    assert_eq!(dep(&scan, "helmrelease/apps/numeric").current.as_deref(), Some("1.10"));
}

#[test]
fn bom_and_crlf_files_report_exact_spans() {
    let text = format!("\u{feff}{}", helmrelease("crlf", "\"4.5.6\"").replace('\n', "\r\n"));
    let dir = tree(&[("crlf.yaml", text.as_bytes()), ("repo.yaml", REPOSITORY.as_bytes())]);
    let scan = scan_dir(dir.path());
    let d = dep(&scan, "helmrelease/apps/crlf");
    let loc = d.location.as_ref().unwrap_or_else(|| panic!("no location"));
    assert_eq!(&text[loc.span.clone()], "4.5.6");
    assert_eq!((loc.line, loc.column), (10, 17));
}

#[test]
fn every_skip_reason_for_helmreleases() {
    let local = helmrelease("local", "1.0.0")
        .replace("chart: local", "chart: ./charts/local")
        .replace("kind: HelmRepository", "kind: GitRepository");
    let git = helmrelease("gitchart", "1.0.0").replace("kind: HelmRepository", "kind: GitRepository");
    let missing = helmrelease("orphan", "1.0.0").replace("name: repo", "name: nowhere");
    let floating = helmrelease("floaty", "'6.5.*'");
    let empty = helmrelease("empty", "\"\"");
    let patch = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: patched\n  namespace: apps\nspec:\n  values:\n    replicas: 2\n";
    let dir = tree(&[
        ("local.yaml", local.as_bytes()),
        ("git.yaml", git.as_bytes()),
        ("missing.yaml", missing.as_bytes()),
        ("floating.yaml", floating.as_bytes()),
        ("empty.yaml", empty.as_bytes()),
        ("patch.yaml", patch.as_bytes()),
        ("repo.yaml", REPOSITORY.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    for (id, want) in [
        ("local", "local-chart"),
        ("gitchart", "unsupported-source"),
        ("orphan", "source-not-found"),
        ("floaty", "floating-version"),
        ("empty", "floating-version"),
        ("patched", "values-patch"),
    ] {
        assert_eq!(reason(&scan, &format!("helmrelease/apps/{id}")), Some(want), "{id}");
    }
}

#[test]
fn oversized_files_are_skipped_with_a_warning() {
    let big = format!("{}# {}\n", helmrelease("big", "1.0.0"), "x".repeat(5 * 1024 * 1024));
    let dir = tree(&[("big.yaml", big.as_bytes())]);
    let scan = scan_dir(dir.path());
    assert!(scan.dependencies.is_empty());
    let warning = scan.errors.iter().find(|e| e.file == "big.yaml").unwrap_or_else(|| panic!("no warning"));
    assert!(warning.message.contains("--max-file-size"), "{warning:?}");
}

/// A HelmRelease written as one flow mapping on one line, its values `entries` long, with
/// multibyte text before the version so characters and bytes differ.
fn one_line_release(name: &str, entries: usize) -> String {
    let mut values = String::with_capacity(entries * 16);
    for i in 0..entries {
        values.push_str(&format!("k{i}: [é{i}, \"ü\"], "));
    }
    format!(
        "{{apiVersion: helm.toolkit.fluxcd.io/v2, kind: HelmRelease, metadata: {{name: {name}, namespace: apps, annotations: {{note: café}}}}, spec: {{values: {{{values}end: true}}, chart: {{spec: {{chart: {name}, version: 1.2.3, sourceRef: {{kind: HelmRepository, name: repo, namespace: flux-system}}}}}}}}}}\n"
    )
}

#[test]
fn issue_9_long_single_line_flow_collections_scan_in_linear_time() {
    // 100,000 entries (2.4 MB on one line) and a 300,000-item sequence: with positions counted
    // from the line's start, 40,000 entries took 16 s, so these would take many minutes.
    let mapping = one_line_release("oneline", 100_000);
    let sequence = format!("items: [{}]\n", "ünï, ".repeat(300_000));
    let dir = tree(&[
        ("oneline.yaml", mapping.as_bytes()),
        ("sequence.yaml", sequence.as_bytes()),
        ("repo.yaml", REPOSITORY.as_bytes()),
    ]);
    let started = Instant::now();
    // Time is what is measured here, not the budget: give it more than any machine needs.
    let options = ScanOptions { file_budget: Duration::from_secs(600), ..ScanOptions::default() };
    let scan = scan(dir.path(), &options).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    assert!(elapsed.as_secs() < 60, "a debug build on a loaded machine takes seconds; this took {elapsed:?}");
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let d = dep(&scan, "helmrelease/apps/oneline");
    let loc = d.location.as_ref().unwrap_or_else(|| panic!("no location"));
    assert_eq!(&mapping[loc.span.clone()], "1.2.3");
    // The column counts characters: every `é` and `ü` before the version is one column, two bytes.
    let before = &mapping[..loc.span.start];
    assert_eq!((loc.line, loc.column), (1, before.chars().count() + 1));
    assert!(loc.column < loc.span.start, "multibyte text before the version");
}

#[test]
fn issue_9_a_file_over_the_parse_budget_is_an_error_naming_it_and_the_scan_goes_on() {
    let slow = one_line_release("slow", 5_000);
    let fine = helmrelease("fine", "2.0.0");
    let dir =
        tree(&[("slow.yaml", slow.as_bytes()), ("fine.yaml", fine.as_bytes()), ("repo.yaml", REPOSITORY.as_bytes())]);
    // No time at all: any file long enough to look at the clock (over 1,024 YAML events) is over it.
    let options = ScanOptions { file_budget: Duration::ZERO, ..ScanOptions::default() };
    let scan = scan(dir.path(), &options).unwrap_or_else(|e| panic!("{e}"));
    let err = scan.errors.iter().find(|e| e.file == "slow.yaml").unwrap_or_else(|| panic!("{:?}", scan.errors));
    assert!(err.message.contains("per-file budget") && err.line == Some(1), "{err:?}");
    assert!(scan.dependencies.iter().all(|d| d.id != "helmrelease/apps/slow"), "nothing is read from it");
    assert_eq!(dep(&scan, "helmrelease/apps/fine").current.as_deref(), Some("2.0.0"));
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
}

#[test]
fn issue_9_an_unreadable_git_index_is_a_warning_not_a_silent_walk_of_everything() {
    let dir = tree(&[("tracked.yaml", b"a: 1\n"), ("untracked.yaml", b"b: 2\n")]);
    let repo = git2::Repository::init(dir.path()).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(std::path::Path::new("tracked.yaml")).unwrap();
    index.write().unwrap();
    assert_eq!(
        upkeep::extract::walk::list(dir.path(), upkeep::extract::walk::DEFAULT_MAX_FILE_SIZE).unwrap().files.len(),
        1,
        "only what git tracks"
    );
    std::fs::write(dir.path().join(".git/index"), b"DIRC garbage that is no index").unwrap();
    let listing = upkeep::extract::walk::list(dir.path(), upkeep::extract::walk::DEFAULT_MAX_FILE_SIZE).unwrap();
    let warning = listing.warnings.iter().find(|w| w.message.contains("git index")).unwrap_or_else(|| {
        panic!("no warning: {:?}", listing.warnings);
    });
    assert!(warning.message.contains("untracked ones included"), "{warning:?}");
    assert_eq!(listing.files.len(), 2, "the scan goes on over every file");
}
