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
