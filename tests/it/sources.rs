//! Flux source objects as version carriers: a HelmRelease whose chartRef points at a HelmChart,
//! and OCIRepositories pinned by tag, semver range, digest, or tag and digest together (Flux's
//! precedence: digest, then semver, then tag).

use upkeep::model::{Datasource, Kind, SkipReason};

use super::util::{fixture, scan_dir, tree};

fn scan_of(file: &str) -> upkeep::extract::Scan {
    let text = std::fs::read(fixture(file)).unwrap();
    let dir = tree(&[("sources.yaml", &text)]);
    scan_dir(dir.path())
}

#[test]
fn a_chartref_to_a_helmchart_carries_the_helmcharts_version() {
    let text = std::fs::read_to_string(fixture("flux/helmrelease-chartref-helmchart.yaml")).unwrap();
    let scan = scan_of("flux/helmrelease-chartref-helmchart.yaml");
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let release =
        scan.dependencies.iter().find(|d| d.kind == Kind::HelmChart || d.id.starts_with("helmrelease/apps/podinfo"));
    let d = release.unwrap_or_else(|| panic!("{:#?}", scan.dependencies));
    assert_eq!(d.current.as_deref(), Some("6.5.4"));
    let package = d.package.as_ref().unwrap();
    assert_eq!(
        (package.datasource, package.registry.as_str(), package.name.as_str()),
        (Datasource::Helm, "https://stefanprodan.github.io/podinfo", "podinfo")
    );
    // The version's bytes are in the HelmChart, inside its quotes, before the comment.
    let span = d.location.as_ref().unwrap().span.clone();
    assert_eq!(&text[span.clone()], "6.5.4");
    assert!(text[span.end..].starts_with("\"   # the version lives here"));
    assert_eq!(
        scan.dependencies.iter().filter(|d| d.current.as_deref() == Some("6.5.4")).count(),
        1,
        "one dependency, not two: {:#?}",
        scan.dependencies
    );
}

#[test]
fn oci_repositories_are_read_by_tag_and_reported_when_pinned_otherwise() {
    let scan = scan_of("flux/ocirepository-refs.yaml");
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let by = |name: &str| {
        scan.dependencies.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("{name}: {:#?}", scan.dependencies))
    };
    let tag = by("by-tag");
    assert_eq!((tag.current.as_deref(), tag.skip.as_ref().map(|s| s.reason)), (Some("6.5.4"), None));
    assert_eq!(tag.package.as_ref().unwrap().datasource, Datasource::Oci);
    assert_eq!(by("by-semver").skip.as_ref().map(|s| s.reason), Some(SkipReason::FloatingVersion));
    let digest = by("by-digest");
    assert_eq!(digest.skip.as_ref().map(|s| s.reason), Some(SkipReason::DigestOnly));
    assert!(digest.skip.as_ref().unwrap().message.contains("spec.ref.digest"));
    // A tag next to a digest: Flux pulls the digest, so the tag is the version upkeep follows
    // and the digest is pinned to move with it, with its exact bytes.
    let text = std::fs::read_to_string(fixture("flux/ocirepository-refs.yaml")).unwrap();
    let both = by("tag-and-digest");
    assert_eq!((both.current.as_deref(), both.skip.as_ref().map(|s| s.reason)), (Some("6.5.3"), None));
    let pin = both.location.as_ref().unwrap().digest.clone().unwrap();
    assert_eq!(&text[pin.span.clone()], "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f9001122334455667788990aabbccddeeff");
    assert_eq!(pin.value, &text[pin.span]);

    // A digest filled in by Flux's post-build substitution is not upkeep's to write.
    let substituted = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: subst\n  namespace: flux-system\nspec:\n  url: oci://ghcr.io/o/app\n  ref:\n    tag: 1.0.0\n    digest: ${APP_DIGEST}\n";
    let dir = tree(&[("s.yaml", substituted.as_bytes())]);
    let scan = scan_dir(dir.path());
    assert_eq!(scan.dependencies[0].skip.as_ref().map(|s| s.reason), Some(SkipReason::Substitution));
}

// Issue 9, item 4: what Flux or the API server refuses is said, not updated; `sources:` answers
// references another repository defines.

const HR: &str = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n";
const OCI: &str = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\n";

/// A HelmRelease of chart `app` 1.0.0 with `metadata` and `sourceRef` as given (YAML flow maps).
fn release(metadata: &str, source_ref: &str) -> String {
    format!(
        "{HR}metadata: {metadata}\nspec:\n  chart:\n    spec:\n      chart: app\n      version: 1.0.0\n      sourceRef: {source_ref}\n"
    )
}

fn repository(namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts\n  namespace: {namespace}\nspec: {spec}\n"
    )
}

/// Scan files with the `sources:` of `config`.
fn scan_with(config: &str, files: &[(&str, &str)]) -> upkeep::extract::Scan {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
    let dir = tree(&files);
    let sources = upkeep::config::parse(config, dir.path(), "upkeep.yaml").unwrap().sources;
    let options = upkeep::extract::ScanOptions { sources, ..Default::default() };
    upkeep::extract::scan(dir.path(), &options).unwrap()
}

fn skip_of(scan: &upkeep::extract::Scan, id: &str) -> (Option<&'static str>, String) {
    let d = super::util::dep(scan, id);
    (d.skip.as_ref().map(|s| s.reason.as_str()), d.skip.as_ref().map(|s| s.message.clone()).unwrap_or_default())
}

#[test]
fn a_helmchart_from_a_git_or_bucket_source_is_unsupported_with_or_without_a_version() {
    // Flux ignores spec.version for these sources: a missing version is not "floating".
    for (kind, version) in [("GitRepository", ""), ("Bucket", ""), ("GitRepository", "\n  version: 1.2.3")] {
        let chart = format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmChart\nmetadata: {{name: app, namespace: apps}}\nspec:\n  chart: ./charts/app\n  sourceRef: {{kind: {kind}, name: repo}}{version}\n"
        );
        let scan = scan_with("", &[("c.yaml", &chart)]);
        let (reason, message) = skip_of(&scan, "helmchart/apps/app");
        assert_eq!(reason, Some("unsupported-source"), "{kind} {version:?}: {message}");
        assert!(message.contains(&format!("{kind} repo")) && message.contains("ignores any version"), "{message}");
    }
}

#[test]
fn an_ocirepository_tag_holding_a_digest_is_an_invalid_ref() {
    let oci = |tag: &str| {
        format!(
            "{OCI}metadata: {{name: app, namespace: flux-system}}\nspec:\n  url: oci://ghcr.io/o/app\n  ref:\n    tag: \"{tag}\"\n"
        )
    };
    let digest = "sha256:761c3189c482d0f1f0ad3735ca05c4c398cae201d2169f6645280c7b7b2ce6fc";
    let scan = scan_with("", &[("o.yaml", &oci(&format!("v1.8.2@{digest}")))]);
    let (reason, message) = skip_of(&scan, "ocirepository/flux-system/app");
    assert_eq!(reason, Some("invalid-ref"), "{message}");
    assert!(message.contains("`tag: v1.8.2`") && message.contains(&format!("`digest: {digest}`")), "{message}");
    // Any other character a registry refuses in a tag (`+` is Helm's, not OCI's).
    let scan = scan_with("", &[("o.yaml", &oci("1.0.0+build.1"))]);
    assert_eq!(skip_of(&scan, "ocirepository/flux-system/app").0, Some("invalid-ref"));
    let scan = scan_with("", &[("o.yaml", &oci("v1.8.2_build-1.x"))]);
    assert_eq!(skip_of(&scan, "ocirepository/flux-system/app").0, None);
}

#[test]
fn a_field_that_must_be_a_mapping_but_is_not_is_unparsable_and_named() {
    let scan = scan_with(
        "",
        &[(
            "o.yaml",
            &format!(
                "{OCI}metadata: {{name: app, namespace: flux-system}}\nspec:\n  url: oci://ghcr.io/o/app\n  ref: \"not-a-map\"\n"
            ),
        )],
    );
    let (reason, message) = skip_of(&scan, "ocirepository/flux-system/app");
    assert_eq!(reason, Some("unparsable"), "{message}");
    assert!(message.starts_with("spec.ref at line 6 is a string, not a mapping"), "{message}");
    // A null ref is an absent one: Flux follows `latest`.
    let scan = scan_with(
        "",
        &[(
            "o.yaml",
            &format!(
                "{OCI}metadata: {{name: app, namespace: flux-system}}\nspec:\n  url: oci://ghcr.io/o/app\n  ref:\n"
            ),
        )],
    );
    assert_eq!(skip_of(&scan, "ocirepository/flux-system/app").0, Some("floating-version"));
    // A HelmRelease's chartRef, or a HelmChart's sourceRef, given as a string.
    let scan = scan_with(
        "",
        &[("r.yaml", &format!("{HR}metadata: {{name: app, namespace: apps}}\nspec:\n  chartRef: app\n"))],
    );
    let (reason, message) = skip_of(&scan, "helmrelease/apps/app");
    assert_eq!(reason, Some("unparsable"), "{message}");
    assert!(message.starts_with("spec.chartRef at line 5 is a string"), "{message}");
    let chart = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmChart\nmetadata: {name: app, namespace: apps}\nspec:\n  chart: app\n  version: 1.0.0\n  sourceRef: [charts]\n";
    let (reason, message) = skip_of(&scan_with("", &[("c.yaml", chart)]), "helmchart/apps/app");
    assert_eq!(reason, Some("unparsable"), "{message}");
    assert!(message.starts_with("spec.sourceRef at line 7 is a list"), "{message}");
}

#[test]
fn a_helmrelease_or_fluxinstance_without_a_name_is_never_applied() {
    let text = release("{namespace: apps}", "{kind: HelmRepository, name: charts, namespace: flux-system}");
    let scan = scan_with(
        "",
        &[("r.yaml", &text), ("repo.yaml", &repository("flux-system", "{url: 'https://charts.example.com'}"))],
    );
    let (reason, message) = skip_of(&scan, "helmrelease/apps/<unnamed>");
    assert_eq!(reason, Some("unnamed"), "{message}");
    assert!(message.contains("r.yaml:1") && message.contains("metadata.name"), "{message}");
    // A kustomize patch file is not applied by itself: without a name it is still a values patch.
    let patch = format!("{HR}metadata: {{namespace: apps}}\nspec:\n  values: {{replicas: 2}}\n");
    let kustomization = "resources: [r.yaml]\npatches:\n  - path: patch.yaml\n    target: {kind: HelmRelease}\n";
    let scan = scan_with("", &[("r.yaml", &text), ("patch.yaml", &patch), ("kustomization.yaml", kustomization)]);
    let patched: Vec<_> = scan.dependencies.iter().filter(|d| d.manifest.file == "patch.yaml").collect();
    assert_eq!(patched.len(), 1, "{:#?}", scan.dependencies);
    assert_eq!(patched[0].skip.as_ref().map(|s| s.reason.as_str()), Some("values-patch"));
    let instance = "apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\nmetadata: {namespace: flux-system}\nspec:\n  distribution: {version: 2.4.0}\n";
    let scan = scan_with("", &[("i.yaml", instance)]);
    assert_eq!(skip_of(&scan, "fluxinstance/flux-system/<unnamed>").0, Some("unnamed"));
}

#[test]
fn an_oci_helmrepository_without_type_oci_is_refused_as_flux_refuses_it() {
    let text = release("{name: app, namespace: apps}", "{kind: HelmRepository, name: charts, namespace: flux-system}");
    let untyped = repository("flux-system", "{url: 'oci://ghcr.io/o/charts'}");
    let scan = scan_with("", &[("r.yaml", &text), ("repo.yaml", &untyped)]);
    let (reason, message) = skip_of(&scan, "helmrelease/apps/app");
    assert_eq!(reason, Some("invalid-source"), "{message}");
    assert!(message.contains("'oci' URL scheme cannot be used with 'default' HelmRepository type"), "{message}");
    assert!(message.contains("repo.yaml:1") && message.contains("`spec.type: oci`"), "{message}");
    assert!(scan.errors.is_empty(), "a skip, not a file error: {:?}", scan.errors);
    let typed = repository("flux-system", "{type: oci, url: 'oci://ghcr.io/o/charts'}");
    let scan = scan_with("", &[("r.yaml", &text), ("repo.yaml", &typed)]);
    let d = super::util::dep(&scan, "helmrelease/apps/app");
    assert_eq!((d.skip.as_ref(), d.package.as_ref().map(|p| p.datasource)), (None, Some(Datasource::Oci)));
}

#[test]
fn a_namespace_less_reference_to_same_named_repositories_is_ambiguous_and_lists_them() {
    let text = release("{name: app}", "{kind: HelmRepository, name: charts}");
    let scan = scan_with(
        "",
        &[
            ("app.yaml", &text),
            ("a/repo.yaml", &repository("team-a", "{url: 'https://a.example.com'}")),
            ("b/repo.yaml", &repository("team-b", "{url: 'https://b.example.com'}")),
        ],
    );
    let (reason, message) = skip_of(&scan, "helmrelease/-/app");
    assert_eq!(reason, Some("ambiguous-source"), "{message}");
    assert!(message.contains("team-a (a/repo.yaml:1), team-b (b/repo.yaml:1)"), "{message}");
    // With the namespace known, the one in it is taken.
    let text = release("{name: app, namespace: team-b}", "{kind: HelmRepository, name: charts}");
    let scan = scan_with(
        "",
        &[
            ("app.yaml", &text),
            ("a/repo.yaml", &repository("team-a", "{url: 'https://a.example.com'}")),
            ("b/repo.yaml", &repository("team-b", "{url: 'https://b.example.com'}")),
        ],
    );
    let d = super::util::dep(&scan, "helmrelease/team-b/app");
    assert_eq!(d.package.as_ref().map(|p| p.registry.as_str()), Some("https://b.example.com"));
}

const SOURCES: &str = "sources:
  - kind: HelmRepository
    name: charts
    namespace: flux-system
    url: https://charts.example.com
  - {kind: HelmRepository, name: oci-charts, url: 'oci://ghcr.io/o/charts'}
  - {kind: OCIRepository, name: podinfo, namespace: apps, url: 'oci://ghcr.io/stefanprodan/charts/podinfo'}
";

#[test]
fn sources_in_the_config_answer_references_no_scanned_file_does() {
    let https = release("{name: a, namespace: apps}", "{kind: HelmRepository, name: charts, namespace: flux-system}");
    let oci = release("{name: b, namespace: apps}", "{kind: HelmRepository, name: oci-charts, namespace: anywhere}");
    let wrong_ns = release("{name: c, namespace: apps}", "{kind: HelmRepository, name: charts, namespace: other}");
    let chart_ref = format!(
        "{HR}metadata: {{name: d, namespace: apps}}\nspec:\n  chartRef: {{kind: OCIRepository, name: podinfo}}\n"
    );
    let files = [("a.yaml", https.as_str()), ("b.yaml", &oci), ("c.yaml", &wrong_ns), ("d.yaml", &chart_ref)];
    let without = scan_with("", &files);
    assert_eq!(skip_of(&without, "helmrelease/apps/a").0, Some("source-not-found"));
    let scan = scan_with(SOURCES, &files);
    let package = |id: &str| {
        let d = super::util::dep(&scan, id);
        d.package.as_ref().map(|p| (p.datasource, p.registry.clone(), p.name.clone()))
    };
    assert_eq!(skip_of(&scan, "helmrelease/apps/a").0, None);
    assert_eq!(
        package("helmrelease/apps/a"),
        Some((Datasource::Helm, "https://charts.example.com".into(), "app".into()))
    );
    assert_eq!(package("helmrelease/apps/b"), Some((Datasource::Oci, "oci://ghcr.io/o/charts".into(), "app".into())));
    // An entry for another namespace does not answer.
    assert_eq!(skip_of(&scan, "helmrelease/apps/c").0, Some("source-not-found"));
    // A chartRef to an OCIRepository elsewhere: the package is known, the version is there.
    let (reason, message) = skip_of(&scan, "helmrelease/apps/d");
    assert_eq!((reason, package("helmrelease/apps/d").map(|p| p.2)), (Some("no-version"), Some("podinfo".into())));
    assert!(message.contains("upkeep.yaml:7"), "names the entry: {message}");
    // A HelmRepository in the scanned files wins over an entry.
    let local = repository("flux-system", "{url: 'https://local.example.com'}");
    let scan = scan_with(SOURCES, &[("a.yaml", &https), ("repo.yaml", &local)]);
    let d = super::util::dep(&scan, "helmrelease/apps/a");
    assert_eq!(d.package.as_ref().map(|p| p.registry.as_str()), Some("https://local.example.com"));
}

#[test]
fn bad_sources_entries_name_the_line() {
    let cases = [
        (
            "sources:\n  - {kind: HelmRepository, name: x, url: 'ftp://x'}\n",
            "line 2",
            "must start with https:// or http:// or oci://",
        ),
        (
            "sources:\n  - kind: OCIRepository\n    name: x\n    url: https://x.example\n",
            "line 4",
            "must start with oci://",
        ),
        ("sources:\n  - {kind: HelmRepositry, name: x, url: 'https://x'}\n", "line 2", "did you mean `HelmRepository`"),
        ("sources:\n  - {kind: HelmRepository, name: '', url: 'https://x'}\n", "line 2", "needs a name"),
        (
            "sources:\n  - {kind: HelmRepository, name: x, url: 'https://x'}\n  - {kind: HelmRepository, name: x, url: 'https://y'}\n",
            "line 3",
            "declared twice (first at .github/upkeep.yaml:2)",
        ),
        ("sources:\n  - {kind: HelmRepository, name: x}\n", "line 2", "missing field `url`"),
    ];
    for (yaml, line, words) in cases {
        let err = upkeep::config::parse(yaml, std::path::Path::new("/r"), ".github/upkeep.yaml").err();
        let message = err.map(|e| e.to_string()).unwrap_or_else(|| panic!("{yaml} should fail"));
        assert!(message.starts_with(".github/upkeep.yaml: ") && message.contains(line), "{yaml}: {message}");
        assert!(message.contains(words), "{yaml}: {message}");
    }
    let schema = upkeep::config::schema().to_string();
    assert!(schema.contains("\"sources\"") && schema.contains("OCIRepository"), "{schema}");
}

#[test]
fn upkeep_scan_reads_sources_from_the_repository_config() {
    let text = release("{name: a, namespace: apps}", "{kind: HelmRepository, name: charts, namespace: flux-system}");
    let dir = tree(&[("a.yaml", text.as_bytes()), ("upkeep.yaml", SOURCES.as_bytes())]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_upkeep"))
        .args(["scan", "--no-lookup", "--format", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dep = &json["dependencies"][0];
    assert_eq!(
        (dep["id"].as_str(), dep["package"]["registry"].as_str()),
        (Some("helmrelease/apps/a"), Some("https://charts.example.com"))
    );
    assert_eq!(dep["skip"], serde_json::Value::Null);
}
