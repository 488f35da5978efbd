//! `upkeep verify` of platform upgrades end to end (issue 11 item 2): the bundled example as a
//! real git repository, its k3s / Longhorn PRs merged (and a Flux upgrade committed as upkeep
//! writes it), the loopback fake Kubernetes API serving nodes, system-upgrade-controller Plans,
//! Longhorn volumes and engine images and Flux's controller Deployments from `fixtures/kube/`
//! on a scripted timeline, and the upkeep binary talking to it through a kubeconfig. Platform
//! components are never reverted: a failure is a forward-fix issue naming what is unhealthy.

use std::time::Duration;

use serde_json::{Value, json};

use super::kube_fake::{Change, FakeKube, flux_applies, load};
use super::run::{LONGHORN, Sandbox, commit_all};
use super::verify_support::{MergeStyle, decision, merge, text, upkeep_in};

const K3S_BRANCH: &str = "upkeep/k3s-clusters-home";
const K3S_OLD: &str = "v1.29.4+k3s1";
const FLUX_DIR: &str = "clusters/home/flux-system";

/// Flux's side of the example cluster, at `old` (the commit before the merge): the
/// GitRepository and the three Kustomizations of `clusters/home`.
struct Cluster {
    fake: FakeKube,
    dir: tempfile::TempDir,
}

const KUSTOMIZATIONS: [(&str, &str); 3] = [
    ("flux-system", "./clusters/home"),
    ("infrastructure", "./infrastructure"),
    ("system-upgrade", "./system-upgrade"),
];

impl Cluster {
    async fn start(old: &str) -> Cluster {
        let fake = FakeKube::start().await;
        let mut git = load("gitrepository-v1-ready.json");
        git["metadata"] = json!({"name": "flux-system", "namespace": "flux-system", "generation": 1});
        git["status"]["artifact"]["revision"] = json!(format!("main@sha1:{old}"));
        fake.apply(Change::Put(git));
        for (name, path) in KUSTOMIZATIONS {
            let mut k = load("kustomization-v1-ready.json");
            k["metadata"] = json!({"name": name, "namespace": "flux-system", "generation": 1});
            k["spec"]["path"] = json!(path);
            k["spec"]["sourceRef"] = json!({"kind": "GitRepository", "name": "flux-system"});
            k["status"]["lastAppliedRevision"] = json!(format!("main@sha1:{old}"));
            k["status"]["lastAttemptedRevision"] = json!(format!("main@sha1:{old}"));
            fake.apply(Change::Put(k));
        }
        Cluster { fake, dir: tempfile::tempdir().unwrap() }
    }

    /// At `at`, Flux fetched `commit` and every Kustomization applied it.
    fn applies(&self, at: Duration, commit: &str) {
        for change in flux_applies(commit, &KUSTOMIZATIONS.map(|(name, _)| name)) {
            self.fake.at(at, change);
        }
    }

    /// `upkeep verify` with short deadlines, as JSON, on a blocking thread (the fake serves here).
    async fn verify(&self, sb: &Sandbox) -> (std::process::Output, Value) {
        self.fake.start_clock();
        let kubeconfig = self.fake.kubeconfig(self.dir.path()).display().to_string();
        let args = ["verify", ".", "--format", "json", "--timeout", "4s", "--soak", "1s", "--kubeconfig", &kubeconfig]
            .map(str::to_string);
        let (root, repo) = (sb.root.clone(), sb.repo.clone());
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            upkeep_in(&root, &repo, &args, &[])
        })
        .await
        .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(&out)));
        (out, report)
    }
}

fn only(report: &Value) -> &Value {
    let all = report["verifications"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{report}");
    &all[0]
}

/// The forward-fix issue of a failed platform verification: its body.
fn forward_fix(out: &std::process::Output, report: &Value, sb: &Sandbox) -> String {
    assert_eq!(out.status.code(), Some(3), "{}", text(out));
    let v = only(report);
    assert_eq!(v["verdict"], "failure", "{v}");
    assert_eq!(v["action"], "forward-fix", "{v}");
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")), "a platform is never reverted");
    std::fs::read_to_string(v["pr"].as_str().unwrap()).unwrap()
}

fn succeeded(out: &std::process::Output, report: &Value) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert_eq!(only(report)["verdict"], "success", "{report}");
}

// ---- k3s ----

/// A node from the recorded k3s node: `name`, on `kubelet`.
fn node(name: &str, kubelet: &str) -> Value {
    let mut n = load("node-k3s-ready.json");
    n["metadata"]["name"] = json!(name);
    n["metadata"]["labels"]["kubernetes.io/hostname"] = json!(name);
    n["status"]["nodeInfo"]["kubeletVersion"] = json!(kubelet);
    n["status"]["nodeInfo"]["kubeProxyVersion"] = json!(kubelet);
    n
}

fn plan(name: &str, latest: &str, complete: &str) -> Value {
    let mut p = load("plan-v1-k3s-agent-complete.json");
    p["metadata"]["name"] = json!(name);
    p["status"]["latestVersion"] = json!(latest);
    p["status"]["conditions"][2]["status"] = json!(complete);
    p
}

/// The example's k3s PR merged, on a cluster of two nodes at the old version.
async fn k3s_merged() -> (Sandbox, Cluster, String, git2::Oid) {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    sb.run(&[], &[]);
    let target = decision(&sb, "plan/system-upgrade/k3s-server")["target"].as_str().unwrap().to_string();
    let m = merge(&sb, K3S_BRANCH, MergeStyle::MergeCommit);
    let cluster = Cluster::start(&before.to_string()).await;
    for name in ["k3s-server-0", "k3s-agent-1"] {
        cluster.fake.apply(Change::Put(node(name, K3S_OLD)));
    }
    for name in ["k3s-server", "k3s-agent"] {
        cluster.fake.apply(Change::Put(plan(name, "v1.29.4-k3s1", "True")));
    }
    cluster.applies(Duration::from_millis(300), &m.to_string());
    (sb, cluster, target, m)
}

/// At `at`, the Plans resolved `target`; `complete` says whether they finished.
fn plans_at(cluster: &Cluster, at: Duration, target: &str, complete: &str) {
    for name in ["k3s-server", "k3s-agent"] {
        let mut p = plan(name, &target.replace('+', "-"), complete);
        p["spec"]["version"] = json!(target);
        if complete != "True" {
            p["status"]["conditions"][2]["reason"] = json!("JobFailed");
            p["status"]["conditions"][2]["message"] = json!("Job was active longer than specified deadline");
            p["status"]["applying"] = json!(["k3s-agent-1"]);
        }
        cluster.fake.at(at, Change::Put(p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3s_with_every_node_upgraded_and_uncordoned_is_verified() {
    let (sb, cluster, target, _) = k3s_merged().await;
    plans_at(&cluster, Duration::from_millis(500), &target, "False");
    // The agent is cordoned while it upgrades, then uncordoned; the Plans complete.
    let mut cordoned = node("k3s-agent-1", K3S_OLD);
    cordoned["spec"]["unschedulable"] = json!(true);
    cluster.fake.at(Duration::from_millis(600), Change::Put(cordoned));
    cluster.fake.at(Duration::from_millis(900), Change::Put(node("k3s-server-0", &target)));
    cluster.fake.at(Duration::from_millis(1200), Change::Put(node("k3s-agent-1", &target)));
    plans_at(&cluster, Duration::from_millis(1300), &target, "True");
    let (out, report) = cluster.verify(&sb).await;
    succeeded(&out, &report);
    // It waited on watches of the nodes and the Plans, not by polling.
    let requests = cluster.fake.requests();
    let watched = |prefix: &str| requests.iter().any(|r| r.starts_with(prefix) && r.contains("watch=true"));
    assert!(watched("GET /api/v1/nodes?"), "{requests:?}");
    assert!(watched("GET /apis/upgrade.cattle.io/v1/namespaces/system-upgrade/plans?"), "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3s_with_one_node_stuck_on_the_old_version_opens_a_forward_fix_naming_it() {
    let (sb, cluster, target, _) = k3s_merged().await;
    plans_at(&cluster, Duration::from_millis(500), &target, "False");
    cluster.fake.at(Duration::from_millis(900), Change::Put(node("k3s-server-0", &target)));
    let (out, report) = cluster.verify(&sb).await;
    let body = forward_fix(&out, &report, &sb);
    assert!(body.starts_with(&format!("# Forward fix needed: k3s {target}\n")), "both Plans, one k3s: {body}");
    assert!(body.contains("the platform not healthy 4s after the merge: Node/k3s-agent-1"), "{body}");
    assert!(body.contains("k3s cannot be downgraded"), "{body}");
    assert!(body.contains("`Node/k3s-agent-1` | KubeletVersion"), "{body}");
    assert!(body.contains(&format!("still runs kubelet {K3S_OLD}, not {target}")), "{body}");
    assert!(body.contains("kubelet is posting ready status"), "the node's condition message: {body}");
    assert!(!body.contains("`Node/k3s-server-0`"), "the upgraded node is not named: {body}");
    assert!(body.contains("Job was active longer than specified deadline"), "the Plan's message: {body}");
    assert!(body.contains("#### Platform objects to look at"), "{body}");
    assert!(
        body.contains("- `Node/k3s-agent-1`: KubeletVersion NotUpgraded (`kubectl describe node k3s-agent-1`)"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3s_leaving_a_node_cordoned_or_not_ready_opens_a_forward_fix_naming_each() {
    let (sb, cluster, target, _) = k3s_merged().await;
    plans_at(&cluster, Duration::from_millis(500), &target, "True");
    let mut cordoned = node("k3s-agent-1", &target);
    cordoned["spec"]["unschedulable"] = json!(true);
    cluster.fake.at(Duration::from_millis(900), Change::Put(cordoned));
    let mut down = node("k3s-server-0", &target);
    down["status"]["conditions"][0] = json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": "2024-05-02T10:04:00Z", "lastTransitionTime": "2024-05-02T10:05:00Z"});
    cluster.fake.at(Duration::from_millis(900), Change::Put(down));
    let (out, report) = cluster.verify(&sb).await;
    let body = forward_fix(&out, &report, &sb);
    assert!(body.contains("`Node/k3s-agent-1` | Unschedulable | True | Cordoned"), "{body}");
    assert!(body.contains("`Node/k3s-server-0` | Ready | Unknown | NodeStatusUnknown"), "{body}");
    assert!(body.contains("Kubelet stopped posting node status."), "{body}");
    assert!(
        body.contains("- `Node/k3s-server-0`: Ready NodeStatusUnknown (`kubectl describe node k3s-server-0`)"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_the_verifier_may_not_list_leave_a_k3s_merge_pending_not_failed() {
    let (sb, cluster, target, m) = k3s_merged().await;
    plans_at(&cluster, Duration::from_millis(500), &target, "True");
    cluster.fake.forbid(None, Some("nodes"));
    let (out, report) = cluster.verify(&sb).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "pending", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("resources: [\"nodes\"], verbs: [\"list\"]"), "{v}");
    assert!(!sb.repo.join(".upkeep/issues").exists(), "no issue on blindness");
    let _ = m;
}

// ---- Longhorn ----

fn with_version(fixture: &str, version: &str) -> Value {
    let text = load(fixture).to_string().replace("v1.4.1", &format!("v{version}"));
    serde_json::from_str(&text).unwrap()
}

/// The example's Longhorn PR merged on a cluster with one healthy volume at 1.4.1; at 0.5 s
/// helm-controller upgrades the release and the manager and engine image roll out.
async fn longhorn_merged() -> (Sandbox, Cluster, String) {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    sb.run(&[], &[]);
    let target = decision(&sb, "helmrelease/longhorn-system/longhorn")["target"].as_str().unwrap().to_string();
    let m = merge(&sb, LONGHORN, MergeStyle::MergeCommit);
    let cluster = Cluster::start(&before.to_string()).await;
    let mut hr = load("helmrelease-v2-test-succeeded.json");
    let text = hr.to_string().replace("podinfo", "longhorn").replace("\"default\"", "\"longhorn-system\"");
    hr = serde_json::from_str(&text).unwrap();
    hr["status"]["history"][0]["chartVersion"] = json!("1.4.1");
    cluster.fake.apply(Change::Put(hr.clone()));
    cluster.fake.apply(Change::Put(load("daemonset-longhorn-manager-rolled-out.json")));
    cluster.fake.apply(Change::Put(load("engineimage-longhorn-v1beta2-deployed.json")));
    cluster.fake.apply(Change::Put(load("volume-longhorn-v1beta2-healthy.json")));
    cluster.applies(Duration::from_millis(300), &m.to_string());
    hr["metadata"]["generation"] = json!(2);
    hr["status"]["observedGeneration"] = json!(2);
    hr["status"]["history"][0]["chartVersion"] = json!(target);
    cluster.fake.at(Duration::from_millis(500), Change::Put(hr));
    let mut manager = with_version("daemonset-longhorn-manager-rolled-out.json", &target);
    manager["metadata"]["generation"] = json!(2);
    manager["status"]["observedGeneration"] = json!(2);
    cluster.fake.at(Duration::from_millis(600), Change::Put(manager));
    let mut engine = with_version("engineimage-longhorn-v1beta2-deployed.json", &target);
    engine["metadata"]["name"] = json!("ei-5cefaf2b");
    cluster.fake.at(Duration::from_millis(700), Change::Put(engine));
    (sb, cluster, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longhorn_rolled_out_with_healthy_volumes_is_verified() {
    let (sb, cluster, _) = longhorn_merged().await;
    let (out, report) = cluster.verify(&sb).await;
    succeeded(&out, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longhorn_with_a_degraded_volume_opens_a_forward_fix() {
    let (sb, cluster, _) = longhorn_merged().await;
    let volume = "pvc-3f0d7b8a-1c2e-4d5f-9a6b-7c8d9e0f1a2b";
    let patch = json!({"status": {"robustness": "degraded"}});
    cluster.fake.at(Duration::from_millis(800), Change::merge("volumes", "longhorn-system", volume, patch));
    let (out, report) = cluster.verify(&sb).await;
    let body = forward_fix(&out, &report, &sb);
    assert!(body.contains("Longhorn refuses downgrades"), "{body}");
    assert!(body.contains(&format!("`Volume/longhorn-system/{volume}` | Robustness | degraded | Degraded")), "{body}");
    let look = format!("(`kubectl -n longhorn-system describe volumes.longhorn.io {volume}`)");
    assert!(body.contains(&look), "{body}");
}

// ---- Flux ----

const HELM_CONTROLLER_NEW: &str = "ghcr.io/fluxcd/helm-controller:v1.1.0";

/// Flux v2.3.0 → v2.4.0 committed as upkeep writes it (the regenerated components file with
/// its new controller images, and the trailer), on a cluster whose helm-controller and one
/// application Kustomization are healthy; at 0.6 s the controller rolls out at the new version.
async fn flux_merged() -> (Sandbox, Cluster, git2::Oid) {
    flux_merged_with(true).await
}

/// As [`flux_merged`]; `rolls_out` false leaves helm-controller at the old version.
async fn flux_merged_with(rolls_out: bool) -> (Sandbox, Cluster, git2::Oid) {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    let path = sb.repo.join(FLUX_DIR).join("gotk-components.yaml");
    let file = std::fs::read_to_string(&path).unwrap().replace("v2.3.0", "v2.4.0");
    let deployment = format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: helm-controller\n  namespace: flux-system\nspec:\n  template:\n    spec:\n      containers:\n      - name: manager\n        image: {HELM_CONTROLLER_NEW}\n"
    );
    std::fs::write(&path, file + &deployment).unwrap();
    let message = format!("Update flux to v2.4.0\n\nUpkeep-Update: flux-components/{FLUX_DIR} v2.3.0 -> v2.4.0\n");
    let m = commit_all(&sb.git(), &message, "upkeep");
    let cluster = Cluster::start(&before.to_string()).await;
    cluster.fake.apply(Change::Put(load("deployment-flux-helm-controller-rolled-out.json")));
    let mut app = load("kustomization-v1-ready.json");
    app["metadata"] = json!({"name": "podinfo", "namespace": "apps", "generation": 1});
    app["spec"]["sourceRef"] = json!({"kind": "GitRepository", "name": "podinfo"});
    cluster.fake.apply(Change::Put(app));
    cluster.applies(Duration::from_millis(300), &m.to_string());
    let text = load("deployment-flux-helm-controller-rolled-out.json")
        .to_string()
        .replace("helm-controller:v1.0.1", "helm-controller:v1.1.0")
        .replace("v2.3.0", "v2.4.0");
    let mut upgraded: Value = serde_json::from_str(&text).unwrap();
    upgraded["metadata"]["generation"] = json!(2);
    upgraded["status"]["observedGeneration"] = json!(2);
    if rolls_out {
        cluster.fake.at(Duration::from_millis(600), Change::Put(upgraded));
    }
    (sb, cluster, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_controllers_at_the_new_version_with_everything_ready_is_verified() {
    let (sb, cluster, _) = flux_merged().await;
    // A Kustomization suspended mid-reconciliation says nothing about the new controllers.
    let mut paused = load("kustomization-v1-ready.json");
    paused["metadata"] = json!({"name": "paused", "namespace": "apps", "generation": 1});
    paused["spec"]["suspend"] = json!(true);
    paused["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown", "reason": "Progressing",
        "message": "Reconciliation in progress", "lastTransitionTime": jiff::Timestamp::now().to_string()}]);
    cluster.fake.apply(Change::Put(paused));
    let (out, report) = cluster.verify(&sb).await;
    succeeded(&out, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_controllers_left_at_the_old_version_open_a_forward_fix_naming_them() {
    let (sb, cluster, _) = flux_merged_with(false).await;
    let (out, report) = cluster.verify(&sb).await;
    let body = forward_fix(&out, &report, &sb);
    assert!(body.contains("`Deployment/flux-system/helm-controller` | Version | v2.3.0 | NotUpgraded"), "{body}");
    let image =
        "`Deployment/flux-system/helm-controller` | Image | ghcr.io/fluxcd/helm-controller:v1.0.1 | NotUpgraded";
    assert!(body.contains(image), "the image the merged file names: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_upgrade_after_which_a_kustomization_fails_opens_a_forward_fix() {
    let (sb, cluster, _) = flux_merged().await;
    let now = jiff::Timestamp::now().to_string();
    let failed = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "BuildFailed",
        "message": "kustomize build failed: no matches for kind \"HelmRelease\" in version \"helm.toolkit.fluxcd.io/v2beta1\"",
        "lastTransitionTime": now, "observedGeneration": 1}]}});
    cluster.fake.at(Duration::from_millis(900), Change::merge("kustomizations", "apps", "podinfo", failed));
    let (out, report) = cluster.verify(&sb).await;
    let body = forward_fix(&out, &report, &sb);
    assert!(body.contains("Flux has to be fixed forward"), "{body}");
    assert!(body.contains("`Kustomization/apps/podinfo` | Ready | False | BuildFailed"), "{body}");
}

/// Every request the verifier made to the fake is one of `API_CALLS` (what the ClusterRole in
/// `deploy/` must allow).
fn assert_calls_listed(cluster: &Cluster) {
    use upkeep::verify::kube::platform::API_CALLS;
    let requests = cluster.fake.requests();
    for request in &requests {
        let (method, target) = request.split_once(' ').unwrap();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match segments.as_slice() {
            ["api", _, rest @ ..] => ("", rest),
            ["apis", group, _, rest @ ..] => (*group, rest),
            _ => continue,
        };
        let (resource, named) = match rest {
            [] => continue,
            ["namespaces", _, resource] | [resource] => (*resource, false),
            ["namespaces", _, resource, _] | [resource, _] => (*resource, true),
            _ => panic!("unexpected path {path}"),
        };
        let verb = match (method, named) {
            ("PATCH", _) => "patch",
            _ if query.contains("watch=true") || query.contains("watch=1") => "watch",
            (_, true) => "get",
            (_, false) => "list",
        };
        let listed = API_CALLS.iter().any(|c| c.group == group && c.resource == resource && c.verbs.contains(&verb));
        assert!(listed, "{verb} {group}/{resource} ({request}) is not in API_CALLS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_call_the_verifier_makes_is_in_the_published_list() {
    let (sb, cluster, _) = flux_merged().await;
    let (out, _) = cluster.verify(&sb).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_calls_listed(&cluster);
    let requests = cluster.fake.requests();
    assert!(requests.iter().any(|r| r.contains("/apis/apps/v1/namespaces/flux-system/deployments")), "{requests:?}");
    let (sb, cluster, _) = longhorn_merged().await;
    cluster.verify(&sb).await;
    assert_calls_listed(&cluster);
    assert!(
        cluster
            .fake
            .requests()
            .iter()
            .any(|r| r.contains("/apis/longhorn.io/v1beta2/namespaces/longhorn-system/engineimages"))
    );
    let (sb, cluster, target, _) = k3s_merged().await;
    plans_at(&cluster, Duration::from_millis(500), &target, "True");
    cluster.verify(&sb).await;
    assert_calls_listed(&cluster);
    assert!(cluster.fake.requests().iter().any(|r| r.starts_with("GET /api/v1/nodes")));
}
