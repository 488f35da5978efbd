//! Issue 9: what Flux applies. Each test builds a small repository on disk the way a home lab
//! lays one out and checks which cluster applies each dependency, what is skipped as
//! `not-applied`, and that the gate asks the cluster that applies a file.

use std::collections::{BTreeMap, HashMap};

use upkeep::extract::{ScanOptions, scan as scan_with};
use upkeep::gate::history::History;
use upkeep::gate::{Action, GateInput, Policy, decide};
use upkeep::model::Release;

use super::util::{REPOSITORY, dep, helmrelease, reason, scan_dir, tree};

/// The `flux bootstrap` sync objects for a cluster folder.
fn gotk_sync(path: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  url: ssh://git@github.com/example/home-ops\n  ref:\n    branch: main\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  path: ./{path}\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
    )
}

/// A Flux Kustomization of `path` from the GitRepository `flux-system`.
fn flux_ks(name: &str, path: &str) -> String {
    format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  path: {path}\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
    )
}

fn gotk_components(version: &str) -> String {
    format!(
        "# Flux Version: {version}\n# Components: source-controller,kustomize-controller,helm-controller\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n"
    )
}

fn plan(name: &str, role_selector: &str, version: &str) -> String {
    format!(
        "apiVersion: upgrade.cattle.io/v1\nkind: Plan\nmetadata:\n  name: {name}\n  namespace: system-upgrade\nspec:\n  nodeSelector:\n    matchExpressions:\n      - key: node-role.kubernetes.io/control-plane\n        operator: {role_selector}\n  upgrade:\n    image: rancher/k3s-upgrade\n  version: {version}\n"
    )
}

fn clusters_of(scan: &upkeep::extract::Scan, id: &str) -> Option<Vec<String>> {
    dep(scan, id).clusters.clone()
}

#[test]
fn issue_9_archived_and_retired_folders_are_not_applied() {
    let (live, archived, retired) =
        (helmrelease("live", "1.0.0"), helmrelease("old", "1.0.0"), helmrelease("gone", "1.0.0"));
    let archived_ks = flux_ks("old", "./apps/old");
    let dir = tree(&[
        ("clusters/prod/flux-system/gotk-sync.yaml", gotk_sync("clusters/prod").as_bytes()),
        ("clusters/prod/apps.yaml", flux_ks("apps", "./apps/live").as_bytes()),
        ("apps/live/release.yaml", live.as_bytes()),
        ("apps/live/repository.yaml", REPOSITORY.as_bytes()),
        (".archive/old/ks.yaml", archived_ks.as_bytes()),
        (".archive/old/release.yaml", archived.as_bytes()),
        ("clusters-retired/old/release.yaml", retired.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    assert_eq!(clusters_of(&scan, "helmrelease/apps/live"), Some(vec!["clusters/prod".to_string()]));
    assert_eq!(reason(&scan, "helmrelease/apps/live"), None);
    for id in ["helmrelease/apps/old", "helmrelease/apps/gone"] {
        assert_eq!(reason(&scan, id), Some("not-applied"), "{id}");
        assert_eq!(clusters_of(&scan, id), Some(vec![]), "{id}");
    }
    // An archived Kustomization whose path is gone is not a cluster and not an error.
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    assert_eq!(scan.flux_graph.clusters().len(), 1);

    // The config switch keeps them updatable, still saying no cluster applies them.
    let all = scan_with(dir.path(), &ScanOptions { include_not_applied: true, ..ScanOptions::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(&all, "helmrelease/apps/old"), None);
    assert_eq!(clusters_of(&all, "helmrelease/apps/old"), Some(vec![]));
}

#[test]
fn issue_9_a_plain_folder_of_helmreleases_keeps_todays_behaviour() {
    let release = helmrelease("plain", "1.0.0");
    let dir = tree(&[("release.yaml", release.as_bytes()), ("repo.yaml", REPOSITORY.as_bytes())]);
    let scan = scan_dir(dir.path());
    assert_eq!(clusters_of(&scan, "helmrelease/apps/plain"), None);
    assert_eq!(reason(&scan, "helmrelease/apps/plain"), None);
    assert!(!scan.flux_graph.is_active());
}

#[test]
fn issue_9_sourceignore_and_spec_ignore_leave_files_out_of_the_artifact() {
    let (kept, ignored, template) =
        (helmrelease("kept", "1.0.0"), helmrelease("ignored", "1.0.0"), helmrelease("template", "1.0.0"));
    let sync =
        gotk_sync("clusters/prod").replace("    branch: main\n", "    branch: main\n  ignore: |\n    /templates\n");
    let dir = tree(&[
        ("clusters/prod/flux-system/gotk-sync.yaml", sync.as_bytes()),
        ("clusters/prod/apps.yaml", flux_ks("apps", "./apps").as_bytes()),
        ("apps/.sourceignore", b"*.draft.yaml\n"),
        ("apps/kept.yaml", kept.as_bytes()),
        ("apps/wip.draft.yaml", ignored.as_bytes()),
        ("apps/repo.yaml", REPOSITORY.as_bytes()),
        ("templates/template.yaml", template.as_bytes()),
        ("clusters/prod/templates.yaml", flux_ks("templates", "./templates").as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    assert_eq!(reason(&scan, "helmrelease/apps/kept"), None);
    assert_eq!(reason(&scan, "helmrelease/apps/ignored"), Some("not-applied"));
    assert_eq!(reason(&scan, "helmrelease/apps/template"), Some("not-applied"));
    // The Kustomization of an ignored folder would fail in the cluster: said, with its place.
    let error = scan.errors.iter().find(|e| e.file == "clusters/prod/templates.yaml").unwrap_or_else(|| {
        panic!("no error for the ignored path: {:?}", scan.errors);
    });
    assert_eq!(error.line, Some(1));
    assert!(error.message.contains("ignore rules"), "{}", error.message);
}

#[test]
fn issue_9_a_fluxinstance_sync_path_is_a_cluster() {
    let instance = "apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\nmetadata:\n  name: flux\n  namespace: flux-system\nspec:\n  distribution:\n    version: 2.6.x\n  sync:\n    kind: GitRepository\n    url: https://github.com/example/home-ops.git\n    ref: refs/heads/main\n    path: kubernetes/flux\n";
    let (live, stray) = (helmrelease("live", "1.0.0"), helmrelease("stray", "1.0.0"));
    let dir = tree(&[
        ("bootstrap/instance.yaml", instance.as_bytes()),
        ("kubernetes/flux/apps.yaml", flux_ks("apps", "./kubernetes/apps").as_bytes()),
        ("kubernetes/apps/live.yaml", live.as_bytes()),
        ("kubernetes/apps/repo.yaml", REPOSITORY.as_bytes()),
        ("kubernetes/unused/stray.yaml", stray.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    assert_eq!(clusters_of(&scan, "helmrelease/apps/live"), Some(vec!["kubernetes/flux".to_string()]));
    assert_eq!(reason(&scan, "helmrelease/apps/stray"), Some("not-applied"));
    // What the verifier asks: which Flux Kustomizations apply a changed file.
    let applying = scan.flux_graph.kustomizations_applying("kubernetes/apps/live.yaml");
    assert_eq!(applying.len(), 1);
    let ks = &applying[0];
    assert_eq!(
        (ks.namespace.as_deref(), ks.name.as_str(), ks.path.as_str()),
        (Some("flux-system"), "apps", "./kubernetes/apps")
    );
    assert_eq!((ks.source_ref.kind.as_str(), ks.source_ref.name.as_str()), ("GitRepository", "flux-system"));
    assert_eq!(ks.file, "kubernetes/flux/apps.yaml");
}

#[test]
fn issue_9_an_oci_artifact_pushed_from_a_sub_folder_is_followed() {
    // CI runs `flux push artifact --path=./kubernetes`: in the artifact `./apps` is the
    // repository's `kubernetes/apps`.
    let entry = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: home-ops\n  namespace: flux-system\nspec:\n  url: oci://ghcr.io/example/home-ops-manifests\n  ref:\n    tag: main\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  path: ./flux\n  sourceRef:\n    kind: OCIRepository\n    name: home-ops\n";
    let apps = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: apps\n  namespace: flux-system\nspec:\n  path: ./apps\n  sourceRef:\n    kind: OCIRepository\n    name: home-ops\n";
    let (live, other) = (helmrelease("live", "1.0.0"), helmrelease("other", "1.0.0"));
    let dir = tree(&[
        ("kubernetes/flux/flux-system/gotk-sync.yaml", entry.as_bytes()),
        ("kubernetes/flux/apps.yaml", apps.as_bytes()),
        ("kubernetes/apps/live.yaml", live.as_bytes()),
        ("kubernetes/apps/repo.yaml", REPOSITORY.as_bytes()),
        ("other/other.yaml", other.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    assert_eq!(clusters_of(&scan, "helmrelease/apps/live"), Some(vec!["flux".to_string()]));
    assert_eq!(reason(&scan, "helmrelease/apps/other"), Some("not-applied"));
}

#[test]
fn issue_9_a_kustomization_kustomize_would_refuse_applies_nothing_and_says_so() {
    let release = helmrelease("broken", "1.0.0");
    let dir = tree(&[
        ("clusters/prod/flux-system/gotk-sync.yaml", gotk_sync("clusters/prod").as_bytes()),
        ("clusters/prod/apps.yaml", flux_ks("apps", "./apps").as_bytes()),
        ("apps/kustomization.yaml", b"resources:\n  - release.yaml\n  - missing.yaml\n"),
        ("apps/release.yaml", release.as_bytes()),
        ("apps/repo.yaml", REPOSITORY.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    assert_eq!(reason(&scan, "helmrelease/apps/broken"), Some("not-applied"));
    let error =
        scan.errors.iter().find(|e| e.file == "clusters/prod/apps.yaml").unwrap_or_else(|| panic!("{:?}", scan.errors));
    assert!(error.message.contains("apps/missing.yaml"), "{}", error.message);
    assert!(error.message.contains("flux-system/apps"), "{}", error.message);
}

#[test]
fn issue_9_k3s_plans_of_one_cluster_in_sibling_folders_share_one_pr() {
    let dir = tree(&[
        ("clusters/prod/flux-system/gotk-sync.yaml", gotk_sync("clusters/prod").as_bytes()),
        ("clusters/prod/k3s.yaml", flux_ks("k3s", "./k3s").as_bytes()),
        ("k3s/server/plan.yaml", plan("k3s-server", "In", "v1.30.4+k3s1").as_bytes()),
        ("k3s/agent/plan.yaml", plan("k3s-agent", "DoesNotExist", "v1.30.4+k3s1").as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    let releases: HashMap<String, Result<upkeep::model::SharedReleases, String>> = scan
        .dependencies
        .iter()
        .map(|d| (d.id.clone(), Ok(vec![release("v1.30.4+k3s1"), release("v1.30.5+k3s1")].into())))
        .collect();
    let plan = decide(&GateInput {
        dependencies: &scan.dependencies,
        releases: &releases,
        api_versions: &scan.api_versions,
        file_clusters: &scan.flux_graph.clusters_by_file(),
        policy: &Policy::default(),
        history: &History::default(),
        now: jiff::Timestamp::now(),
        open_groups: &[],
    });
    let groups: Vec<Option<&str>> = plan.decisions.values().map(|d| d.group.as_deref()).collect();
    assert_eq!(plan.decisions.len(), 2);
    assert!(plan.decisions.values().all(|d| d.action == Action::Propose), "{:#?}", plan.decisions);
    assert_eq!(groups, vec![Some("k3s-clusters-prod"), Some("k3s-clusters-prod")]);
}

#[test]
fn issue_9_a_removed_api_in_a_file_no_cluster_applies_does_not_hold_flux() {
    let old_api = helmrelease("legacy", "1.0.0").replace("helm.toolkit.fluxcd.io/v2", "helm.toolkit.fluxcd.io/v2beta1");
    let dir = tree(&[
        ("clusters/prod/flux-system/gotk-sync.yaml", gotk_sync("clusters/prod").as_bytes()),
        ("clusters/prod/flux-system/gotk-components.yaml", gotk_components("v2.6.0").as_bytes()),
        ("clusters/prod/flux-system/kustomization.yaml", b"resources: [gotk-components.yaml, gotk-sync.yaml]\n"),
        (".archive/legacy.yaml", old_api.as_bytes()),
    ]);
    let scan = scan_dir(dir.path());
    let flux = scan
        .dependencies
        .iter()
        .find(|d| d.kind == upkeep::model::Kind::FluxComponents)
        .unwrap_or_else(|| panic!("{:#?}", scan.dependencies));
    let releases: HashMap<String, Result<upkeep::model::SharedReleases, String>> =
        HashMap::from([(flux.id.clone(), Ok(vec![release("v2.6.0"), release("v2.7.0")].into()))]);
    let decide_with = |file_clusters: &BTreeMap<String, std::collections::BTreeSet<String>>| {
        decide(&GateInput {
            dependencies: std::slice::from_ref(flux),
            releases: &releases,
            api_versions: &scan.api_versions,
            file_clusters,
            policy: &Policy::default(),
            history: &History::default(),
            now: jiff::Timestamp::now(),
            open_groups: &[],
        })
        .decisions[&flux.id]
            .clone()
    };
    let decision = decide_with(&scan.flux_graph.clusters_by_file());
    assert_eq!((decision.action, decision.target.as_deref()), (Action::Propose, Some("v2.7.0")), "{}", decision.reason);
    // The same file applied by the cluster holds the upgrade.
    let mut applied = scan.flux_graph.clusters_by_file();
    applied.insert(".archive/legacy.yaml".into(), ["clusters/prod".to_string()].into());
    let held = decide_with(&applied);
    assert_eq!(held.action, Action::Hold, "{}", held.reason);
    assert!(held.reason.contains(".archive/legacy.yaml"), "{}", held.reason);
}

#[test]
fn issue_9_a_source_in_another_folder_is_not_linked_by_name_alone() {
    // Neither object has a namespace and nothing sets one: the name alone links them only in
    // the same folder.
    let release = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: app\nspec:\n  chart:\n    spec:\n      chart: app\n      version: 1.0.0\n      sourceRef:\n        kind: HelmRepository\n        name: charts\n";
    let repository = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts\nspec:\n  url: https://charts.example.com\n";
    let apart = tree(&[("apps/app.yaml", release.as_bytes()), ("sources/charts.yaml", repository.as_bytes())]);
    let scan = scan_dir(apart.path());
    assert_eq!(reason(&scan, "helmrelease/-/app"), Some("source-not-found"));
    let message = &dep(&scan, "helmrelease/-/app").skip.as_ref().unwrap_or_else(|| panic!("skip")).message;
    assert!(message.contains("namespace unknown"), "{message}");
    let together = tree(&[("apps/app.yaml", release.as_bytes()), ("apps/charts.yaml", repository.as_bytes())]);
    let scan = scan_dir(together.path());
    assert_eq!(reason(&scan, "helmrelease/-/app"), None);
}

fn release(version: &str) -> Release {
    Release {
        version: version.into(),
        published: Some(jiff::Timestamp::UNIX_EPOCH),
        prerelease: false,
        deprecated: false,
        app_version: None,
        kube_version: None,
        notes: None,
        url: None,
        digest: None,
        signals: Vec::new(),
    }
}

#[test]
fn issue_9_include_not_applied_in_upkeep_yaml_turns_the_skip_off() {
    let (live, archived) = (helmrelease("live", "1.0.0"), helmrelease("old", "1.0.0"));
    let files = |config: &'static [u8]| {
        tree(&[
            ("upkeep.yaml", config),
            ("clusters/prod/flux-system/gotk-sync.yaml", gotk_sync("clusters/prod").as_bytes()),
            ("clusters/prod/apps.yaml", flux_ks("apps", "./apps").as_bytes()),
            ("apps/live.yaml", live.as_bytes()),
            ("apps/repo.yaml", REPOSITORY.as_bytes()),
            (".archive/old.yaml", archived.as_bytes()),
        ])
    };
    let skip_of_old = |dir: &tempfile::TempDir| -> serde_json::Value {
        let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_upkeep"))
            .args(["scan", "--offline", "--format", "json", "--cache-dir"])
            .arg(cache.path())
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run upkeep: {e}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        let deps = json["dependencies"].as_array().cloned().unwrap_or_default();
        let old = deps.iter().find(|d| d["id"] == "helmrelease/apps/old").cloned().unwrap_or_else(|| panic!("{json}"));
        assert_eq!(old["clusters"], serde_json::json!([]));
        old["skip"].clone()
    };
    assert_eq!(skip_of_old(&files(b"{}\n"))["reason"], "not-applied");
    assert_eq!(skip_of_old(&files(b"includeNotApplied: true\n")), serde_json::Value::Null);
}
