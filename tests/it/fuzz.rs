//! No input makes the extractor panic, and generated manifests round-trip their spans.

use proptest::prelude::*;
use upkeep::extract::{SourceFile, extract_files};

fn extract(name: &str, text: String) -> upkeep::extract::Findings {
    let files = vec![SourceFile::new(name, text)];
    extract_files(&files, &mut Vec::new())
}

fn corpus_samples() -> Vec<String> {
    [
        "corpus/flux2-kustomize-helm-example/infrastructure/controllers/cert-manager.yaml",
        "corpus/onedr0p-home-ops-2022/cluster/apps/system-upgrade/system-upgrade-controller/plans/agent.yaml",
        "corpus/bjw-s-home-ops/kubernetes/main/apps/system-upgrade/system-upgrade-controller/plans/kubernetes.yaml",
        "corpus/carpenike-k8s-gitops-2021/cluster/flux-system/gotk-components.yaml",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(super::util::fixture(p)).unwrap_or_else(|e| panic!("{p}: {e}")))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = extract("random.yaml", String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn yamlish_noise_never_panics(text in "[-:{}\\[\\],&*!|>'\"#? \n\tA-Za-z0-9.$]{0,400}") {
        let _ = extract("noise.yaml", text.clone());
        let _ = extract("gotk-components.yaml", text);
    }

    #[test]
    fn mutated_corpus_files_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = corpus_samples()[which].clone().into_bytes();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        let name = if which == 3 { "gotk-components.yaml" } else { "mutated.yaml" };
        let _ = extract(name, String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn generated_releases_report_exact_spans(
        version in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-rc\\.[0-9])?",
        quote in prop::sample::select(vec!["", "'", "\""]),
        comment in prop::sample::select(vec!["", " # pinned", "  #comment"]),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        flow in any::<bool>(),
        prefix in "(# [a-zé☕ ]{0,20}\n){0,3}",
    ) {
        let chart = if flow {
            format!("  chart: {{spec: {{chart: app, version: {quote}{version}{quote}, sourceRef: {{kind: HelmRepository, name: repo}}}}}}{comment}\n")
        } else {
            format!("  chart:\n    spec:\n      chart: app\n      version: {quote}{version}{quote}{comment}\n      sourceRef:\n        kind: HelmRepository\n        name: repo\n")
        };
        let mut text = format!("{prefix}---\napiVersion: helm.toolkit.fluxcd.io/v2beta2\nkind: HelmRelease\nmetadata:\n  name: app\n  namespace: x\nspec:\n{chart}---\napiVersion: source.toolkit.fluxcd.io/v1beta2\nkind: HelmRepository\nmetadata:\n  name: repo\n  namespace: x\nspec:\n  url: https://e.example\n");
        if crlf { text = text.replace('\n', "\r\n"); }
        if bom { text.insert(0, '\u{feff}'); }
        let found = extract("gen.yaml", text.clone());
        prop_assert_eq!(found.dependencies.len(), 1);
        let dep = &found.dependencies[0];
        prop_assert!(dep.skip.is_none(), "{:?}", dep.skip);
        prop_assert_eq!(dep.current.as_deref(), Some(version.as_str()));
        let loc = dep.location.as_ref().map(|l| l.span.clone()).unwrap_or(0..0);
        prop_assert_eq!(&text[loc], version.as_str());
    }
}

fn version_text() -> impl Strategy<Value = String> {
    (
        0u64..4,
        0u64..12,
        0u64..12,
        proptest::option::of(proptest::collection::vec(prop_oneof!["[a-z]{1,5}", "[0-9]{1,2}"], 1..3)),
        proptest::option::of(1u64..4),
        any::<bool>(),
    )
        .prop_map(|(major, minor, patch, pre, k3s, v)| {
            let mut s = format!("{}{major}.{minor}.{patch}", if v { "v" } else { "" });
            if let Some(pre) = pre {
                // Semver forbids leading zeros in numeric identifiers.
                let ids: Vec<String> =
                    pre.into_iter().map(|i| i.parse::<u64>().map_or(i.clone(), |n| n.to_string())).collect();
                s.push('-');
                s.push_str(&ids.join("."));
            }
            if let Some(b) = k3s {
                s.push_str(&format!("+k3s{b}"));
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Version ordering is a total order, consistent with semver precedence and, where that
    /// ties, with the k3s build number.
    #[test]
    fn version_order_is_total_and_consistent_with_semver(a in version_text(), b in version_text(), c in version_text()) {
        use std::cmp::Ordering;
        use upkeep::gate::versioning::Version;
        let (va, vb, vc) = (Version::parse(&a).unwrap(), Version::parse(&b).unwrap(), Version::parse(&c).unwrap());
        prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
        prop_assert_eq!(va.cmp(&vb) == Ordering::Equal, a == b);
        if va <= vb && vb <= vc {
            prop_assert!(va <= vc);
        }
        let sa = semver::Version::parse(a.trim_start_matches('v')).unwrap();
        let sb = semver::Version::parse(b.trim_start_matches('v')).unwrap();
        match sa.cmp_precedence(&sb) {
            Ordering::Equal => {
                if va.k3s_build != vb.k3s_build {
                    prop_assert_eq!(va.cmp(&vb), va.k3s_build.cmp(&vb.k3s_build));
                }
            }
            other => prop_assert_eq!(va.cmp(&vb), other),
        }
    }
}

/// Every version found in the corpus can be replaced in place: the edit is proved and the
/// edited text differs from the original only inside the version's span.
#[test]
fn every_corpus_version_can_be_edited_in_place() {
    let mut edited = 0;
    for repo in ["billimek-k8s-gitops", "bjw-s-home-ops", "carpenike-k8s-gitops-2021", "onedr0p-home-ops-2022"] {
        let root = super::util::fixture(&format!("corpus/{repo}"));
        let scan = super::util::scan_dir(&root);
        for dep in scan.dependencies.iter().filter(|d| d.location.is_some()) {
            let loc = dep.location.clone().unwrap();
            let text = std::fs::read_to_string(root.join(&loc.file)).unwrap();
            let from = dep.current.clone().unwrap();
            for to in ["99.1.2", "1.10"] {
                let edit = upkeep::edit::Edit {
                    dependency: dep.id.clone(),
                    location: loc.clone(),
                    from: from.clone(),
                    to: to.into(),
                    pin: false,
                };
                let out = upkeep::edit::apply(&loc.file, &text, &[edit]).unwrap_or_else(|e| panic!("{repo}: {e}"));
                assert_eq!(&out[..loc.span.start], &text[..loc.span.start], "{repo} {}: bytes before the span", dep.id);
                let tail = &text[loc.span.end..];
                assert!(out.ends_with(tail), "{repo} {}: bytes after the span", dep.id);
                let written = &out[loc.span.start..out.len() - tail.len()];
                assert!(written == to || written == format!("\"{to}\""), "{repo} {}: wrote `{written}`", dep.id);
            }
            edited += 1;
        }
    }
    assert!(edited > 250, "{edited}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Generated manifests in every quoting style, flow or block, CRLF or not, with a BOM or
    /// not: an edit writes the new version and the file re-extracts to it.
    #[test]
    fn generated_manifests_edit_and_re_extract(
        version in "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
        target in "[0-9]{1,2}\\.[0-9]{1,2}(\\.[0-9]{1,2})?",
        quote in prop::sample::select(vec!["", "'", "\""]),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        flow in any::<bool>(),
    ) {
        let chart = if flow {
            format!("  chart: {{spec: {{chart: app, version: {quote}{version}{quote}, sourceRef: {{kind: HelmRepository, name: repo}}}}}} # c\n")
        } else {
            format!("  chart:\n    spec:\n      chart: app\n      version: {quote}{version}{quote} # c\n      sourceRef:\n        kind: HelmRepository\n        name: repo\n")
        };
        let mut text = format!("apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: app\n  namespace: x\nspec:\n{chart}");
        if crlf { text = text.replace('\n', "\r\n"); }
        if bom { text.insert(0, '\u{feff}'); }
        let dep = extract("gen.yaml", text.clone()).dependencies.remove(0);
        let edit = upkeep::edit::Edit { dependency: dep.id.clone(), location: dep.location.clone().unwrap(), from: version.clone(), to: target.clone(), pin: false };
        let out = upkeep::edit::apply("gen.yaml", &text, &[edit]).unwrap();
        let again = extract("gen.yaml", out.clone()).dependencies.remove(0);
        prop_assert_eq!(again.current.as_deref(), Some(target.as_str()));
        prop_assert_eq!(out.matches('\n').count(), text.matches('\n').count());
        prop_assert_eq!(out.starts_with('\u{feff}'), bom);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Issue 9: positions on one long line, multibyte text before the version in any amount,
    /// land exactly (spans in bytes, columns in characters), whatever the flow layout.
    #[test]
    fn one_line_flow_manifests_report_exact_spans(
        fillers in proptest::collection::vec("[a-zé☕ü]{1,6}", 0..300),
        version in "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
    ) {
        let values: String = fillers.iter().enumerate().map(|(i, f)| format!("k{i}: [{f}, '{f}'], ")).collect();
        let text = format!(
            "{{apiVersion: helm.toolkit.fluxcd.io/v2, kind: HelmRelease, metadata: {{name: app, namespace: apps}}, spec: {{values: {{{values}end: 1}}, chart: {{spec: {{chart: app, version: \"{version}\", sourceRef: {{kind: HelmRepository, name: repo, namespace: flux-system}}}}}}}}}}\n"
        );
        let findings = extract("one-line.yaml", text.clone());
        let dep = findings.dependencies.iter().find(|d| d.id == "helmrelease/apps/app");
        let loc = dep.and_then(|d| d.location.as_ref());
        prop_assert!(loc.is_some(), "{:?}", findings.errors);
        let loc = loc.unwrap_or_else(|| unreachable!());
        prop_assert_eq!(&text[loc.span.clone()], version.as_str());
        prop_assert_eq!((loc.line, loc.column), (1, text[..loc.span.start].chars().count() + 1));
    }
}
