//! The verifier's Kubernetes adapter against the loopback fake API server, through a kubeconfig
//! and kube's whole client stack: discovery and version choice, the evidence read from Flux's
//! documented objects, blindness (403, 401, unreachable) with actionable text, the nudge, and
//! waiting on watches (timeline changes, a dropped watch, a watch that keeps failing).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use upkeep::verify::evidence::{Evidence, FluxKind, WorkloadKind};
use upkeep::verify::kube::{KubeOptions, KubeSource, ObjectName, Wake, Want, connect};

use super::kube_fake::{Change, FakeKube, load, unreachable_url, write_kubeconfig};

async fn source_for(kubeconfig: &Path) -> KubeSource {
    let options = KubeOptions { kubeconfig: Some(kubeconfig.to_path_buf()), context: None };
    connect(&options).await.unwrap_or_else(|b| panic!("connect: {b:?}"))
}

/// podinfo as the Flux docs deploy it, upgraded by a merge to chart 6.5.4.
fn want_podinfo() -> Want {
    Want {
        source: ObjectName::new("default", "podinfo"),
        helmreleases: vec![(ObjectName::new("default", "podinfo"), "6.5.4".into())],
        chart_sources: vec![(FluxKind::HelmRepository, ObjectName::new("default", "podinfo"))],
        platform: Vec::new(),
    }
}

/// The fixture objects of a failed podinfo upgrade that helm-controller rolled back.
fn rolled_back(fake: &FakeKube) {
    for name in [
        "gitrepository-v1-ready.json",
        "helmrepository-v1-ready.json",
        "kustomization-v1-ready.json",
        "kustomization-v1-artifact-failed-legacy-revision.json",
        "helmrelease-v2-rollback-succeeded.json",
        "deployment-podinfo-rolled-out.json",
        "pod-podinfo-crashloopbackoff.json",
        "event-helmrelease-upgrade-failed.json",
        "event-helmrelease-test-succeeded.json",
    ] {
        fake.put_fixture(name);
    }
    // A Kustomization of another source: never reported for this one.
    let mut other = load("kustomization-v1-ready.json");
    other["metadata"]["name"] = json!("infra");
    other["spec"]["sourceRef"] = json!({"kind": "GitRepository", "name": "infra", "namespace": "flux-system"});
    fake.apply(Change::Put(other));
}

fn blind_reasons(evidence: &Evidence) -> String {
    evidence.blind.iter().map(|b| format!("{}: {}", b.what, b.reason)).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn discovery_prefers_v2_and_is_asked_once() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let versions = source.served_versions().await.unwrap();
    assert_eq!(versions.helm.as_deref(), Some("v2"));
    assert_eq!(versions.source.as_deref(), Some("v1"));
    assert_eq!(versions.kustomize.as_deref(), Some("v1"));
    source.observe(&want_podinfo()).await;
    source.observe(&want_podinfo()).await;
    let discoveries = fake.requests().iter().filter(|r| *r == "GET /apis").count();
    assert_eq!(discoveries, 1, "one discovery per KubeSource: {:?}", fake.requests());
    let reads = "GET /apis/helm.toolkit.fluxcd.io/v2/namespaces/default/helmreleases/podinfo";
    assert_eq!(fake.requests().iter().filter(|r| r.starts_with(reads)).count(), 2);

    fake.serve_versions("helm.toolkit.fluxcd.io", &["v2beta2", "v2beta1"]);
    let fresh = source_for(&fake.kubeconfig(dir.path())).await;
    assert_eq!(fresh.served_versions().await.unwrap().helm.as_deref(), Some("v2beta2"));
}

#[tokio::test]
async fn an_old_cluster_is_read_at_v2beta1_with_last_applied_revision() {
    let fake = FakeKube::start().await;
    fake.serve_versions("helm.toolkit.fluxcd.io", &["v2beta1"]);
    fake.serve_versions("source.toolkit.fluxcd.io", &["v1beta2"]);
    fake.put_fixture("helmrelease-v2beta1-upgrade-failed.json");
    fake.put_fixture("gitrepository-v1-ready.json");
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let evidence = source.observe(&want_podinfo()).await;

    let (release, version) = &evidence.helmreleases[0];
    assert_eq!(version, "6.5.4");
    assert_eq!(release.api_version, "helm.toolkit.fluxcd.io/v2beta1");
    assert_eq!(release.last_applied_revision.as_deref(), Some("4.0.6"));
    assert_eq!(release.history_chart_version, None);
    assert_eq!(release.condition("Ready").unwrap().reason, "UpgradeFailed");
    assert_eq!(evidence.source.as_ref().unwrap().api_version, "source.toolkit.fluxcd.io/v1beta2");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.starts_with("GET /apis/helm.toolkit.fluxcd.io/v2beta1/namespaces/default/helmreleases/podinfo"))
    );
    // The HelmRepository was never stored: seen as missing, not as blindness.
    assert_eq!(evidence.missing, vec!["HelmRepository/default/podinfo".to_string()]);
    assert!(evidence.blind.is_empty(), "{}", blind_reasons(&evidence));
}

#[tokio::test]
async fn observe_reads_the_documented_objects_into_evidence() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let evidence = source.observe(&want_podinfo()).await;
    assert!(evidence.blind.is_empty(), "{}", blind_reasons(&evidence));
    assert!(evidence.observed_at.is_some());

    let git = evidence.source.as_ref().unwrap();
    assert_eq!(git.artifact_revision.as_deref(), Some("master@sha1:132f4e719209eb10b9485302f8593fc0e680f4fc"));
    assert_eq!(git.condition("Ready").unwrap().status, "True");

    let mut kustomizations: Vec<_> = evidence.kustomizations.iter().map(|k| k.object.name.as_str()).collect();
    kustomizations.sort();
    assert_eq!(kustomizations, ["podinfo", "podinfo-invalid"], "the infra Kustomization has another source");
    let invalid = &evidence.kustomizations.iter().find(|k| k.object.name == "podinfo-invalid").unwrap().object;
    assert_eq!(invalid.path.as_deref(), Some("./invalid"));
    assert_eq!(invalid.source_ref.as_deref(), Some("GitRepository/default/podinfo"));
    assert_eq!(invalid.last_applied_revision.as_deref(), Some("master/67e2c98a60dc92283531412a9e604dd4bae005a9"));
    assert_eq!(invalid.condition("Ready").unwrap().reason, "ArtifactFailed");
    assert!(
        evidence.kustomizations.iter().all(|k| k.applied_merge.is_none() && k.attempted_merge.is_none()),
        "ancestry is the caller's"
    );

    let (release, version) = &evidence.helmreleases[0];
    assert_eq!(version, "6.5.4");
    assert_eq!((release.generation, release.observed_generation), (Some(2), Some(2)));
    assert_eq!(release.history_chart_version.as_deref(), Some("6.5.3"));
    assert_eq!(release.history_status.as_deref(), Some("deployed"));
    assert_eq!(release.condition("Remediated").unwrap().reason, "RollbackSucceeded");
    assert_eq!(release.condition("Ready").unwrap().status, "False");
    assert_eq!(evidence.chart_sources[0].kind, FluxKind::HelmRepository);

    let deployment = &evidence.workloads[0];
    assert_eq!((deployment.kind, deployment.name.as_str()), (WorkloadKind::Deployment, "podinfo"));
    assert_eq!((deployment.desired, deployment.updated, deployment.ready, deployment.available), (2, 2, 2, 2));
    assert_eq!(deployment.release.as_deref(), Some("default/podinfo"));
    assert_eq!(deployment.images, ["ghcr.io/stefanprodan/podinfo:6.5.3"]);

    let pod = &evidence.pods[0];
    assert_eq!(pod.name, "podinfo-7f6b8b8b6d-x2k9q");
    let container = &pod.containers[0];
    assert_eq!((container.state.as_str(), container.reason.as_deref()), ("Waiting", Some("CrashLoopBackOff")));
    assert_eq!((container.restarts, container.ready), (5, false));

    assert_eq!(evidence.events.len(), 1, "only the Warning event: {:?}", evidence.events);
    assert_eq!(evidence.events[0].object, "HelmRelease/default/podinfo");
    assert_eq!(evidence.events[0].reason, "UpgradeFailed");
    assert!(evidence.missing.is_empty());
    assert!(fake.authorizations().iter().all(|a| *a == format!("Bearer {}", fake.token())));
}

#[tokio::test]
async fn an_oci_chart_version_keeps_its_digest_suffix() {
    let fake = FakeKube::start().await;
    fake.put_fixture("helmrelease-v2-oci-chartref-history.json");
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let want = Want {
        source: ObjectName::new("flux-system", "flux-system"),
        helmreleases: vec![(ObjectName::new("podinfo", "podinfo"), "6.6.1".into())],
        chart_sources: Vec::new(),
        platform: Vec::new(),
    };
    let evidence = source.observe(&want).await;
    let (release, _) = &evidence.helmreleases[0];
    assert_eq!(release.history_chart_version.as_deref(), Some("6.6.1+0cc9a8446c95"));
    assert_eq!(evidence.missing, ["GitRepository/flux-system/flux-system"]);
}

#[tokio::test]
async fn a_forbidden_read_names_the_rbac_rule_and_the_rest_is_read() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    fake.forbid(Some("get"), Some("helmreleases"));
    fake.forbid(Some("list"), Some("events"));
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let evidence = source.observe(&want_podinfo()).await;

    assert_eq!(evidence.blind.len(), 1, "{}", blind_reasons(&evidence));
    let blind = &evidence.blind[0];
    assert_eq!(blind.what, "HelmRelease/default/podinfo");
    assert!(
        blind.reason.contains("forbidden: cannot get helmreleases.helm.toolkit.fluxcd.io in namespace default"),
        "{}",
        blind.reason
    );
    assert!(
        blind
            .reason
            .contains("apiGroups: [\"helm.toolkit.fluxcd.io\"], resources: [\"helmreleases\"], verbs: [\"get\"]"),
        "{}",
        blind.reason
    );
    assert!(blind.reason.contains("a Role in namespace default"), "{}", blind.reason);
    // Everything else is still read; the events are a gap, not blindness.
    assert!(evidence.source.is_some());
    assert_eq!(evidence.workloads.len(), 1);
    assert!(evidence.events.is_empty());
    assert_eq!(evidence.gaps.len(), 1);
    assert!(evidence.gaps[0].reason.contains("resources: [\"events\"], verbs: [\"list\"]"), "{:?}", evidence.gaps);
}

#[tokio::test]
async fn forbidden_discovery_and_refused_credentials_are_blind() {
    let fake = FakeKube::start().await;
    fake.forbid_all();
    let dir = tempfile::tempdir().unwrap();
    let evidence = source_for(&fake.kubeconfig(dir.path())).await.observe(&want_podinfo()).await;
    assert_eq!(evidence.blind.len(), 1);
    assert!(evidence.blind[0].reason.contains("nonResourceURLs"), "{}", blind_reasons(&evidence));
    assert!(evidence.blind[0].reason.contains("cannot get path \"/apis\""), "{}", blind_reasons(&evidence));

    let refused = FakeKube::start().await;
    refused.unauthorized();
    let evidence = source_for(&refused.kubeconfig(dir.path())).await.observe(&want_podinfo()).await;
    assert!(evidence.blind[0].reason.contains("refused the credentials (401"), "{}", blind_reasons(&evidence));
    assert!(evidence.blind[0].reason.contains(refused.url()), "{}", blind_reasons(&evidence));
    assert!(!blind_reasons(&evidence).contains(refused.token()), "the token is never reported");
}

#[tokio::test]
async fn an_unreachable_server_is_blind_with_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = unreachable_url().await;
    let source = source_for(&write_kubeconfig(dir.path(), &url, "t0ken")).await;
    let evidence = source.observe(&want_podinfo()).await;
    assert_eq!(evidence.blind.len(), 1, "{}", blind_reasons(&evidence));
    assert!(
        evidence.blind[0].reason.starts_with(&format!("cannot reach the API server {url}")),
        "{}",
        blind_reasons(&evidence)
    );
    assert!(blind_reasons(&evidence).to_lowercase().contains("connection refused"), "{}", blind_reasons(&evidence));

    // A server that goes away after discovery: every read is blind, none panics.
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    assert!(source.observe(&want_podinfo()).await.blind.is_empty());
    fake.stop();
    let evidence = source.observe(&want_podinfo()).await;
    assert!(evidence.source.is_none() && evidence.helmreleases.is_empty());
    assert!(evidence.blind.iter().all(|b| b.reason.contains(fake.url())), "{}", blind_reasons(&evidence));
    assert!(evidence.blind.iter().any(|b| b.what == "GitRepository/default/podinfo"));
}

#[tokio::test]
async fn the_nudge_patches_requested_at_once() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let git = source.observe(&want_podinfo()).await.source.unwrap();
    assert_eq!(git.requested_at, None);
    let at: jiff::Timestamp = "2026-12-02T01:00:00Z".parse().unwrap();
    source.nudge(&git, at).await.unwrap();

    let patches = fake.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].0, "/apis/source.toolkit.fluxcd.io/v1/namespaces/default/gitrepositories/podinfo");
    assert_eq!(
        patches[0].1,
        json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "2026-12-02T01:00:00Z"}}})
    );
    let seen = source.observe(&want_podinfo()).await.source.unwrap();
    assert_eq!(seen.requested_at.as_deref(), Some("2026-12-02T01:00:00Z"));
    assert_eq!(seen.artifact_revision, git.artifact_revision, "the patch touched only the annotation");

    fake.forbid(Some("patch"), None);
    let blind = source.nudge(&git, at).await.unwrap_err();
    assert!(
        blind.reason.contains("verbs: [\"patch\"]") && blind.reason.contains("waits for the source's own interval"),
        "{}",
        blind.reason
    );
    assert_eq!(fake.patches().len(), 1);
}

#[tokio::test]
async fn changed_wakes_on_a_timeline_change_and_times_out_when_quiet() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let quiet = Instant::now();
    assert_eq!(source.changed(&want_podinfo(), Duration::from_millis(700)).await, Wake::TimedOut);
    assert!(quiet.elapsed() >= Duration::from_millis(700));

    let status = json!({"status": {"history": [{"chartVersion": "6.5.4", "status": "deployed"}]}});
    fake.at(Duration::from_secs(1), Change::merge("helmreleases", "default", "podinfo", status));
    fake.start_clock();
    let started = Instant::now();
    let wake = source.changed(&want_podinfo(), Duration::from_secs(20)).await;
    assert_eq!(wake, Wake::Changed("HelmRelease/default/podinfo".into()));
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the watch, took {:?}", started.elapsed());
    let watches = fake.requests().iter().filter(|r| r.contains("watch=true")).count();
    assert!(watches >= 3, "watches, not polling: {:?}", fake.requests());
}

#[tokio::test]
async fn changed_wakes_when_a_pod_of_a_release_goes_away() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    fake.at(Duration::from_millis(800), Change::delete("pods", "default", "podinfo-7f6b8b8b6d-x2k9q"));
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    fake.start_clock();
    let wake = source.changed(&want_podinfo(), Duration::from_secs(20)).await;
    assert_eq!(wake, Wake::Changed("Pod/default/podinfo-7f6b8b8b6d-x2k9q".into()));
    // Pods are watched through the Deployment's selector, in its namespace.
    let pod_watch = "GET /api/v1/namespaces/default/pods?&labelSelector=app.kubernetes.io%2Fname%3Dpodinfo";
    assert!(fake.requests().iter().any(|r| r.starts_with(pod_watch)), "{:?}", fake.requests());
}

#[tokio::test]
async fn changed_resumes_a_dropped_watch_from_its_resource_version() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    fake.close_watches_after(1);
    // t=0.5 s: a Kustomization of another source changes: one event on the Kustomization watch,
    // which the server then drops. t=2 s: ours is applied, seen only on the resumed watch.
    let other = json!({"status": {"lastAttemptedRevision": "main@sha1:0000000000000000000000000000000000000001"}});
    fake.at(Duration::from_millis(500), Change::merge("kustomizations", "default", "infra", other));
    let ours = json!({"status": {"lastAppliedRevision": "master@sha1:1111111111111111111111111111111111111111"}});
    fake.at(Duration::from_secs(2), Change::merge("kustomizations", "default", "podinfo", ours));
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    fake.start_clock();
    let wake = source.changed(&want_podinfo(), Duration::from_secs(20)).await;
    assert_eq!(wake, Wake::Changed("Kustomization/default/podinfo".into()));

    let infra_rv = fake.object("kustomizations", "default", "infra").unwrap()["metadata"]["resourceVersion"].clone();
    let resumed = format!("resourceVersion={}", infra_rv.as_str().unwrap());
    let kustomization_watches: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("GET /apis/kustomize.toolkit.fluxcd.io/v1/kustomizations?") && r.contains("watch=true")
        })
        .collect();
    assert!(kustomization_watches.len() >= 2, "{kustomization_watches:?}");
    assert!(kustomization_watches[1].contains(&resumed), "resumed at {resumed}: {kustomization_watches:?}");
}

#[tokio::test]
async fn a_watch_that_keeps_failing_is_blind_not_a_spin() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    fake.forbid(Some("watch"), Some("helmreleases"));
    // Busy neighbours: another source's Kustomization keeps changing. Their quiet events must
    // not hide that the HelmRelease watch keeps failing.
    for step in 1..40u32 {
        let status = json!({"status": {"lastAttemptedRevision": format!("main@sha1:{step:040}")}});
        fake.at(
            Duration::from_millis(u64::from(step) * 150),
            Change::merge("kustomizations", "default", "infra", status),
        );
    }
    fake.start_clock();
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let wake = source.changed(&want_podinfo(), Duration::from_secs(30)).await;
    let Wake::Blind(blind) = wake else { panic!("expected blindness, got {wake:?}") };
    assert_eq!(blind.what, "HelmRelease/default/podinfo");
    assert!(blind.reason.contains("verbs: [\"watch\"]"), "{}", blind.reason);
    let attempts = fake.requests().iter().filter(|r| r.contains("/helmreleases?") && r.contains("watch=true")).count();
    assert!((3..10).contains(&attempts), "backed off, not spinning: {attempts} watch attempts");
}

#[tokio::test]
async fn the_fake_serves_cluster_scoped_objects_label_selectors_and_unserved_versions() {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, ListParams};
    let fake = FakeKube::start().await;
    fake.put_fixture("node-k3s-ready.json");
    fake.put_fixture("deployment-podinfo-rolled-out.json");
    let dir = tempfile::tempdir().unwrap();
    let options = KubeOptions { kubeconfig: Some(fake.kubeconfig(dir.path())), context: None };
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(options.kubeconfig.unwrap()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get("k3s-server-0").await.unwrap();
    assert_eq!(node.status.unwrap().node_info.unwrap().kubelet_version, "v1.28.5+k3s1");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::all(client.clone());
    let matching =
        deployments.list(&ListParams::default().labels("helm.toolkit.fluxcd.io/name=podinfo")).await.unwrap();
    assert_eq!(matching.items.len(), 1);
    assert!(matching.metadata.resource_version.is_some());
    let other = deployments.list(&ListParams::default().labels("helm.toolkit.fluxcd.io/name=other")).await.unwrap();
    assert!(other.items.is_empty());
    let beta = upkeep::verify::kube::flux::api_resource(FluxKind::HelmRelease, "v2beta9");
    let unserved: Api<kube::api::DynamicObject> = Api::all_with(client, &beta);
    let error = unserved.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(error, kube::Error::Api(status) if status.code == 404));
}

/// The scripted timeline: t=0 the old revision is deployed, t=1 s the source has the
/// merge, t=2 s helm-controller reports the upgrade failed; each wake is followed by a read.
#[tokio::test]
async fn a_scripted_upgrade_failure_is_seen_step_by_step() {
    let fake = FakeKube::start().await;
    fake.put_fixture("gitrepository-v1-ready.json");
    fake.put_fixture("helmrelease-v2-test-succeeded.json");
    let merge = "master@sha1:2222222222222222222222222222222222222222";
    fake.at(
        Duration::from_secs(1),
        Change::merge("gitrepositories", "default", "podinfo", json!({"status": {"artifact": {"revision": merge}}})),
    );
    fake.at(Duration::from_secs(2), Change::Put(load("helmrelease-v2-upgrade-failed.json")));
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    let want = want_podinfo();

    let before = source.observe(&want).await;
    assert_eq!(before.helmreleases[0].0.history_chart_version.as_deref(), Some("6.5.3"));
    assert_eq!(before.helmreleases[0].0.condition("Ready").unwrap().status, "True");
    fake.start_clock();
    let mut wakes = Vec::new();
    let mut after = before;
    for _ in 0..4 {
        match source.changed(&want, Duration::from_secs(10)).await {
            Wake::Changed(what) => wakes.push(what),
            other => panic!("expected a change, got {other:?}"),
        }
        after = source.observe(&want).await;
        if after.helmreleases[0].0.condition("Ready").is_some_and(|c| c.status == "False") {
            break;
        }
    }
    assert_eq!(wakes, ["GitRepository/default/podinfo", "HelmRelease/default/podinfo"]);
    assert_eq!(after.source.as_ref().unwrap().artifact_revision.as_deref(), Some(merge));
    let (release, _) = &after.helmreleases[0];
    assert_eq!(release.condition("Ready").unwrap().reason, "UpgradeFailed");
    assert!(
        release
            .condition("Ready")
            .unwrap()
            .message
            .starts_with("Helm upgrade failed for release default/podinfo with chart podinfo@6.5.4")
    );
    assert_eq!(
        (release.history_chart_version.as_deref(), release.history_status.as_deref()),
        (Some("6.5.4"), Some("failed"))
    );
}

#[tokio::test]
async fn a_stalled_release_reports_stalled_and_the_test_failure() {
    let fake = FakeKube::start().await;
    fake.put_fixture("helmrelease-v2-test-failed-stalled.json");
    let dir = tempfile::tempdir().unwrap();
    let evidence = source_for(&fake.kubeconfig(dir.path())).await.observe(&want_podinfo()).await;
    let (release, _) = &evidence.helmreleases[0];
    let stalled = release.condition("Stalled").unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "RetriesExceeded"));
    assert_eq!(release.condition("Ready").unwrap().reason, "TestFailed");
    assert!(release.condition("Ready").unwrap().message.contains("pod podinfo-fault-test-a0tew failed"));
}

#[tokio::test]
async fn a_named_context_is_used_instead_of_the_current_one() {
    let fake = FakeKube::start().await;
    fake.put_fixture("gitrepository-v1-ready.json");
    let dir = tempfile::tempdir().unwrap();
    let dead = unreachable_url().await;
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: {dead}\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: dead\n  context:\n    cluster: dead\n    user: upkeep\n- name: fake\n  context:\n    cluster: fake\n    user: upkeep\ncurrent-context: dead\nusers:\n- name: upkeep\n  user:\n    token: {}\n",
        fake.url(),
        fake.token()
    );
    let path = dir.path().join("two-contexts");
    std::fs::write(&path, text).unwrap();
    let options = KubeOptions { kubeconfig: Some(path.clone()), context: Some("fake".into()) };
    let source = connect(&options).await.unwrap_or_else(|b| panic!("{b:?}"));
    assert_eq!(source.server(), fake.url());
    assert!(source.observe(&want_podinfo()).await.source.is_some());
    let current = source_for(&path).await;
    assert_eq!(current.server(), dead);

    let missing = KubeOptions { kubeconfig: Some(dir.path().join("nope")), context: None };
    let Err(blind) = connect(&missing).await else { panic!("a missing kubeconfig connects") };
    assert!(blind.what.contains("nope"), "{blind:?}");
}

/// A change that lands after `observe` but before `changed` opens its watches is not lost to
/// the watches' initial listing: the wait returns at once instead of at its timeout.
#[tokio::test]
async fn a_change_between_observe_and_changed_still_wakes() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    source.observe(&want_podinfo()).await;
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "UpgradeSucceeded", "message": "", "lastTransitionTime": "2023-12-04T15:10:00Z"}]}});
    fake.apply(Change::merge("helmreleases", "default", "podinfo", ready));
    let started = Instant::now();
    let wake = source.changed(&want_podinfo(), Duration::from_secs(10)).await;
    assert_eq!(wake, Wake::Changed("HelmRelease/default/podinfo".into()));
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());

    // Without anything new since the last observation, the listing alone wakes nobody.
    source.observe(&want_podinfo()).await;
    assert_eq!(source.changed(&want_podinfo(), Duration::from_millis(800)).await, Wake::TimedOut);
}

/// Flux upgraded under a running verifier: the version discovery chose is gone. That read is
/// blind (not "missing"), and the next one asks discovery again and reads the new version.
#[tokio::test]
async fn a_version_that_stops_being_served_is_rediscovered() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    assert_eq!(source.observe(&want_podinfo()).await.helmreleases[0].0.api_version, "helm.toolkit.fluxcd.io/v2");

    fake.serve_versions("helm.toolkit.fluxcd.io", &["v2beta2"]);
    let evidence = source.observe(&want_podinfo()).await;
    assert!(evidence.missing.is_empty(), "{:?}", evidence.missing);
    assert_eq!(evidence.blind.len(), 1, "{}", blind_reasons(&evidence));
    assert!(
        evidence.blind[0].reason.contains("helm.toolkit.fluxcd.io/v2 is no longer served"),
        "{}",
        blind_reasons(&evidence)
    );

    let evidence = source.observe(&want_podinfo()).await;
    assert!(evidence.blind.is_empty(), "{}", blind_reasons(&evidence));
    assert_eq!(evidence.helmreleases[0].0.api_version, "helm.toolkit.fluxcd.io/v2beta2");
}

/// A watch resumed too late gets 410 Expired; kube's watcher relists, and a change that only
/// shows in that relist still wakes the wait.
#[tokio::test]
async fn a_change_seen_only_in_a_relist_after_410_still_wakes() {
    let fake = FakeKube::start().await;
    rolled_back(&fake);
    fake.close_watches_after(1);
    let half = Duration::from_millis(500);
    fake.at(half, Change::ExpireNextWatch { plural: "kustomizations".into() });
    let other = json!({"status": {"lastAttemptedRevision": "main@sha1:0000000000000000000000000000000000000001"}});
    fake.at(half, Change::merge("kustomizations", "default", "infra", other));
    let ours = json!({"status": {"lastAppliedRevision": "master@sha1:1111111111111111111111111111111111111111"}});
    fake.at(half, Change::merge("kustomizations", "default", "podinfo", ours));
    let dir = tempfile::tempdir().unwrap();
    let source = source_for(&fake.kubeconfig(dir.path())).await;
    fake.start_clock();
    let wake = source.changed(&want_podinfo(), Duration::from_secs(20)).await;
    assert_eq!(wake, Wake::Changed("Kustomization/default/podinfo".into()));
    let lists = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("GET /apis/kustomize.toolkit.fluxcd.io/v1/kustomizations?") && !r.contains("watch=true")
        })
        .count();
    assert_eq!(lists, 2, "listed, then relisted after 410: {:?}", fake.requests());
}
