//! `upkeep verify` end to end: the bundled example as a real git repository, an upkeep PR merged
//! the way GitHub merges it (a merge commit or a squash), the loopback fake Kubernetes API
//! reconciling it on a scripted timeline from Flux's documented objects, and the upkeep binary
//! talking to it through a kubeconfig. Each scenario checks what was written: notes, statuses,
//! revert branches and PRs, forward-fix issues, and that a second pass writes nothing new.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::kube_fake::{
    Change, FakeKube, flux_applies, flux_synced_at, load, retarget, unreachable_url, write_kubeconfig,
};
use super::run::Sandbox;
use super::verify_support::{MergeStyle, decision, local_pr, merge, text, upkeep_in};

pub(crate) const NGINX: &str = "upkeep/helmrelease-ingress-nginx-ingress-nginx";
pub(crate) const NGINX_ID: &str = "helmrelease/ingress-nginx/ingress-nginx";
const LONGHORN: &str = "upkeep/helmrelease-longhorn-system-longhorn";
const OLD_NGINX: &str = "4.10.0";

/// The example's cluster before the merge: Flux at `old_commit`, ingress-nginx at 4.10.0.
/// Shared with the whole-loop test (`whole_loop.rs`).
pub(crate) struct Cluster {
    pub(crate) fake: FakeKube,
    dir: tempfile::TempDir,
    new: String,
}

impl Cluster {
    pub(crate) async fn start(old_commit: &str, new: &str) -> Cluster {
        let fake = FakeKube::start().await;
        flux_synced_at(&fake, old_commit);
        let mut hr = retarget("helmrelease-v2-test-succeeded.json", "ingress-nginx", "ingress-nginx", OLD_NGINX, new);
        hr["status"]["history"][0]["chartVersion"] = json!(OLD_NGINX);
        hr["spec"]["chart"]["spec"]["sourceRef"] =
            json!({"kind": "HelmRepository", "name": "ingress-nginx", "namespace": "flux-system"});
        fake.apply(Change::Put(hr));
        let mut repository = load("helmrepository-v1-ready.json");
        repository["metadata"] = json!({"name": "ingress-nginx", "namespace": "flux-system", "generation": 1});
        fake.apply(Change::Put(repository));
        fake.apply(Change::Put(retarget(
            "deployment-podinfo-rolled-out.json",
            "ingress-nginx",
            "ingress-nginx",
            OLD_NGINX,
            new,
        )));
        let dir = tempfile::tempdir().unwrap();
        Cluster { fake, dir, new: new.to_string() }
    }

    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.fake.kubeconfig(self.dir.path())
    }

    /// Now, Flux has fetched and applied `commit`.
    pub(crate) fn fetched_and_applied(&self, commit: &str) {
        for change in flux_applies(commit, &["infrastructure"]) {
            self.fake.apply(change);
        }
    }

    /// At `at`, Flux fetches `commit` and the Kustomization applies it (the HelmRelease gets
    /// its new generation).
    pub(crate) fn applies(&self, at: Duration, commit: &str) {
        for change in flux_applies(commit, &["infrastructure"]) {
            self.fake.at(at, change);
        }
        self.fake.at(
            at,
            Change::merge("helmreleases", "ingress-nginx", "ingress-nginx", json!({"metadata": {"generation": 2}})),
        );
    }

    /// At `at`, helm-controller upgraded the release to the new chart, Ready.
    pub(crate) fn upgraded(&self, at: Duration) {
        let mut hr =
            retarget("helmrelease-v2-test-succeeded.json", "ingress-nginx", "ingress-nginx", OLD_NGINX, &self.new);
        hr["metadata"]["generation"] = json!(2);
        hr["status"]["observedGeneration"] = json!(2);
        hr["status"]["history"][0]["chartVersion"] = json!(self.new);
        self.fake.at(at, Change::Put(hr));
    }

    /// At `at`, the release is in the state of a (retargeted) helm-controller fixture.
    pub(crate) fn release_state(&self, at: Duration, fixture: &str) {
        let mut hr = retarget(fixture, "ingress-nginx", "ingress-nginx", OLD_NGINX, &self.new);
        hr["metadata"]["generation"] = json!(2);
        hr["status"]["observedGeneration"] = json!(2);
        self.fake.at(at, Change::Put(hr));
    }
}

/// `upkeep verify` with short deadlines, as JSON, on a blocking thread (the fake serves here).
async fn verify(sb: &Sandbox, kubeconfig: &std::path::Path, extra: &[&str]) -> (std::process::Output, Value) {
    let mut args: Vec<String> =
        ["verify", ".", "--format", "json", "--kubeconfig"].iter().map(|s| s.to_string()).collect();
    args.push(kubeconfig.display().to_string());
    for (flag, default) in [("--timeout", "6s"), ("--soak", "2s")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), default.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let repo = sb.repo.clone();
    let root = sb.root.clone();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        upkeep_in(&root, &repo, &args, &[])
    })
    .await
    .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(&out)));
    (out, json)
}

pub(crate) fn only(report: &Value) -> &Value {
    let all = report["verifications"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{report}");
    &all[0]
}

pub(crate) fn note(sb: &Sandbox, commit: git2::Oid) -> Option<Value> {
    let git = sb.git();
    let note = git.find_note(Some("refs/notes/upkeep"), commit).ok()?;
    serde_json::from_str(note.message().unwrap()).ok()
}

/// The merge of the ingress-nginx PR, and the version it set.
pub(crate) fn merged(sb: &Sandbox, style: MergeStyle) -> (git2::Oid, String) {
    sb.run(&[], &[]);
    let target = decision(sb, NGINX_ID)["target"].as_str().unwrap().to_string();
    (merge(sb, NGINX, style), target)
}

async fn succeeds(style: MergeStyle) {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    let (m, new) = merged(&sb, style);
    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(800), &m.to_string());
    cluster.upgraded(Duration::from_millis(1500));
    cluster.fake.start_clock();
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["commit"], m.to_string());
    assert_eq!(v["verdict"], "success", "{v}");
    assert_eq!(v["action"], "none");
    assert_eq!(v["updates"][0]["id"], NGINX_ID);
    assert_eq!(v["updates"][0]["to"], new.as_str());
    assert_eq!(note(&sb, m).unwrap()["verdict"], "success");
    let statuses = std::fs::read_to_string(sb.repo.join(format!(".upkeep/statuses/{m}.json"))).unwrap();
    assert!(statuses.contains("\"state\": \"success\"") && statuses.contains("upkeep/verify"), "{statuses}");
    let (number, _) = local_pr(&sb.repo, NGINX);
    let comments = std::fs::read_to_string(sb.repo.join(format!(".upkeep/prs/{number}.comments.json"))).unwrap();
    assert!(comments.contains("verified") && comments.contains(&format!("upkeep-verify: {m}")), "{comments}");
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")), "nothing else written");
    let soaked = cluster.fake.requests();
    assert!(
        soaked.iter().any(|r| r.contains("/deployments?") && r.contains("helm.toolkit.fluxcd.io")),
        "the release's workloads were watched through the soak: {soaked:?}"
    );

    // A second pass reads the verdict back and writes nothing.
    let files = forge_files(&sb);
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success");
    assert_eq!(forge_files(&sb), files, "no new write");
}

pub(crate) fn forge_files(sb: &Sandbox) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![sb.repo.join(".upkeep")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path().display().to_string(), std::fs::read_to_string(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_commit_that_reconciles_and_soaks_is_verified() {
    succeeds(MergeStyle::MergeCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squash_merge_that_reconciles_and_soaks_is_verified() {
    succeeds(MergeStyle::Squash).await;
}

/// A failure that brings a revert PR: checks the branch, trailer, body and blocked version.
async fn reverted(style: MergeStyle, fixture: &str, expect: &[&str]) -> (String, String) {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    let (m, new) = merged(&sb, style);
    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(500), &m.to_string());
    cluster.release_state(Duration::from_millis(1200), fixture);
    cluster.fake.start_clock();
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(3), "a failed verification exits 3: {}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "failure", "{v}");
    assert_eq!(v["action"], "revert", "{v}");
    let branch = format!("upkeep/revert-{}", &m.to_string()[..12]);
    assert_eq!(v["branch"], branch.as_str());
    for e in expect {
        assert!(v.to_string().contains(e), "{e} in {v}");
    }
    let git = sb.git();
    let tip = git.find_commit(git.refname_to_id(&format!("refs/heads/{branch}")).unwrap()).unwrap();
    assert!(tip.message().unwrap().contains(&format!("Upkeep-Revert: {NGINX_ID} {new}")));
    let (number, pr) = local_pr(&sb.repo, &branch);
    assert_eq!(v["pr"], number.to_string());
    assert!(pr["title"].as_str().unwrap().starts_with("Revert \"chore(deps): update ingress-nginx"), "{pr}");
    let body = std::fs::read_to_string(sb.repo.join(format!(".upkeep/prs/{number}.md"))).unwrap();
    assert!(body.contains("### Evidence") && body.contains("`HelmRelease/ingress-nginx/ingress-nginx`"), "{body}");
    // Blocked in the plan at once.
    let d = decision(&sb, NGINX_ID);
    assert_eq!(d["action"], "blocked", "{d}");
    // A second pass writes nothing new.
    let files = forge_files(&sb);
    let (_, again) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(only(&again)["verdict"], "failure");
    assert_eq!(forge_files(&sb), files, "no new write");
    assert_eq!(git.refname_to_id(&format!("refs/heads/{branch}")).unwrap(), tip.id());
    (body, m.to_string())
}

/// The timeline's clock times and durations, which differ per run, as placeholders.
pub(crate) fn scrub_times(body: &str) -> String {
    body.lines()
        .map(|line| match line.split_once("<br/>") {
            Some((head, tail)) if tail.ends_with(" UTC\"]") => format!("{head}<br/><time>\"]"),
            Some((head, tail)) if tail.starts_with('+') => format!("{head}<br/>+<elapsed>\"]"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if body.ends_with('\n') { "\n" } else { "" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_failed_release_is_reverted_with_the_evidence() {
    let (body, merge) =
        reverted(MergeStyle::MergeCommit, "helmrelease-v2-upgrade-failed.json", &["UpgradeFailed"]).await;
    assert!(body.contains("context deadline exceeded"), "{body}");
    let scrubbed = scrub_times(&body.replace(&merge, "<merge>").replace(&merge[..12], "<merge12>"));
    insta::assert_snapshot!("revert-body-upgrade-failed", scrubbed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squash_merge_rolled_back_by_helm_controller_is_reverted() {
    reverted(MergeStyle::Squash, "helmrelease-v2-rollback-succeeded.json", &["RollbackSucceeded", "rolled back"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_never_reaches_the_merge_is_nudged_then_reverted_after_the_timeout() {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    let (m, new) = merged(&sb, MergeStyle::MergeCommit);
    let cluster = Cluster::start(&before.to_string(), &new).await;
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "failure", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("has not fetched the merge"), "{v}");
    assert_eq!(v["action"], "revert");
    let patches = cluster.fake.patches();
    for plural in ["gitrepositories/flux-system", "helmrepositories/ingress-nginx"] {
        let nudges: Vec<_> = patches.iter().filter(|(p, _)| p.contains(plural)).collect();
        assert_eq!(nudges.len(), 1, "{plural} nudged once: {patches:?}");
        assert!(nudges[0].1.to_string().contains("reconcile.fluxcd.io/requestedAt"));
    }
    let _ = m;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_crash_looping_during_the_soak_bring_a_revert() {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    let (m, new) = merged(&sb, MergeStyle::MergeCommit);
    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(500), &m.to_string());
    cluster.upgraded(Duration::from_millis(1000));
    let mut pod = retarget("pod-podinfo-crashloopbackoff.json", "ingress-nginx", "ingress-nginx", OLD_NGINX, &new);
    let selector = retarget("deployment-podinfo-rolled-out.json", "ingress-nginx", "ingress-nginx", OLD_NGINX, &new)["spec"]["selector"]["matchLabels"].clone();
    pod["metadata"]["labels"] = selector;
    cluster.fake.at(Duration::from_millis(2200), Change::Put(pod));
    cluster.fake.start_clock();
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &["--soak", "5s"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "failure", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("CrashLoopBackOff"), "{v}");
    assert_eq!(v["action"], "revert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_leaves_the_merge_pending_and_writes_only_that() {
    let sb = Sandbox::example();
    let (m, _) = merged(&sb, MergeStyle::MergeCommit);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &unreachable_url().await, "t");
    let (out, report) = verify(&sb, &kubeconfig, &["--timeout", "1s", "--soak", "1s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "pending", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("cannot see the cluster"), "{v}");
    assert_eq!(v["action"], "none");
    assert_eq!(note(&sb, m).unwrap()["verdict"], "pending");
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")), "no revert on blindness");
    assert!(!sb.repo.join(".upkeep/issues").exists(), "no issue on blindness");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_longhorn_upgrade_opens_a_forward_fix_issue_and_no_revert() {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    sb.run(&[], &[]);
    let target = decision(&sb, "helmrelease/longhorn-system/longhorn")["target"].as_str().unwrap().to_string();
    let m = merge(&sb, LONGHORN, MergeStyle::MergeCommit);
    let cluster = Cluster::start(&before.to_string(), "0.0.0").await;
    cluster.fetched_and_applied(&m.to_string());
    let mut hr = retarget("helmrelease-v2-upgrade-failed.json", "longhorn-system", "longhorn", "1.5.0", &target);
    hr["status"]["observedGeneration"] = json!(2);
    cluster.fake.apply(Change::Put(hr));
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "failure", "{v}");
    assert_eq!(v["action"], "forward-fix", "{v}");
    assert!(v["branch"].is_null());
    let issue = v["pr"].as_str().unwrap();
    let body = std::fs::read_to_string(issue).unwrap();
    assert!(body.starts_with(&format!("# Forward fix needed: longhorn {target}")), "{body}");
    assert!(body.contains("Longhorn refuses downgrades"), "{body}");
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")), "never a revert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_that_conflicts_with_a_later_commit_becomes_a_forward_fix_issue() {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    let (m, new) = merged(&sb, MergeStyle::MergeCommit);
    // A maintainer edits the same line after the merge.
    let path = sb.repo.join("infrastructure/ingress-nginx/release.yaml");
    let text_now = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text_now.replace(&format!("version: {new}"), &format!("version: {new} # pinned by hand")))
        .unwrap();
    super::run::commit_all(&sb.git(), "pin ingress-nginx by hand", "Maintainer");
    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(300), &m.to_string());
    cluster.release_state(Duration::from_millis(600), "helmrelease-v2-upgrade-failed.json");
    cluster.fake.start_clock();
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["action"], "forward-fix", "{v}");
    let body = std::fs::read_to_string(v["pr"].as_str().unwrap()).unwrap();
    assert!(body.contains("does not apply to the current default branch"), "{body}");
    assert!(body.contains("infrastructure/ingress-nginx/release.yaml"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_leaves_an_in_progress_merge_pending_and_a_later_pass_concludes_it() {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    let (m, new) = merged(&sb, MergeStyle::Squash);
    let cluster = Cluster::start(&before.to_string(), &new).await;
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &["--no-wait"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "pending");
    assert!(only(&report)["reason"].as_str().unwrap().contains("waiting for Flux"), "{report}");
    assert_eq!(note(&sb, m).unwrap()["verdict"], "pending");
    // Flux catches up; the next pass concludes.
    cluster.applies(Duration::from_millis(100), &m.to_string());
    cluster.upgraded(Duration::from_millis(200));
    cluster.fake.start_clock();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success", "{report}");
}

/// The same loop on GitHub: PRs through the wire-level fake GitHub API, verdicts as the
/// `upkeep/verify` status and a comment on the merged PR, the revert as a PR there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_failed_merge_gets_a_failure_status_a_comment_and_a_revert_pr() {
    use super::github_fake::FakeGithub;
    use wiremock::{Mock, MockServer, matchers::any};
    const REPO: &str = "home-ops/cluster";
    let fake = FakeGithub::new(REPO);
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(fake.clone()).mount(&server).await;
    let sb = Sandbox::example();
    let config = sb.repo.join("upkeep.yaml");
    let text_now = std::fs::read_to_string(&config).unwrap().replace("https://api.github.com", &server.uri());
    std::fs::write(&config, text_now).unwrap();
    super::run::commit_all(&sb.git(), "chore: upkeep config for GitHub", "Maintainer");
    let bare = sb.root.join("remote.git");
    git2::Repository::init_bare(&bare).unwrap();
    let remote = bare.display().to_string();
    let uri = server.uri();
    let env = [("GITHUB_API_URL", uri.as_str()), ("GITHUB_TOKEN", "ghs_verifytoken"), ("GITHUB_REPOSITORY", REPO)];
    let (root, repo) = (sb.root.clone(), sb.repo.clone());
    let run_env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let on_github = move |args: Vec<String>| {
        let (root, repo, run_env) = (root.clone(), repo.clone(), run_env.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let env: Vec<(&str, &str)> = run_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                upkeep_in(&root, &repo, &args, &env)
            })
            .await
            .unwrap()
        }
    };
    let out =
        on_github(vec!["run".into(), ".".into(), "--forge".into(), "github".into(), "--remote".into(), remote.clone()])
            .await;
    assert!(out.status.success(), "{}", text(&out));
    let before = sb.main_tip();
    let new = fake.pulls_for(NGINX)[0]["title"].as_str().unwrap().rsplit(' ').next().unwrap().to_string();
    // Merged with a merge commit on GitHub; the checkout is at the merge.
    let git = sb.git();
    let side = git.find_commit(git.refname_to_id(&format!("refs/heads/{NGINX}")).unwrap()).unwrap();
    let main = git.find_commit(before).unwrap();
    let sig = git2::Signature::now("GitHub", "noreply@github.com").unwrap();
    let m = git
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "Merge pull request #2 from home-ops/x",
            &side.tree().unwrap(),
            &[&main, &side],
        )
        .unwrap();
    git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
    let number = fake.merge_pr(NGINX, &m.to_string());

    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(300), &m.to_string());
    cluster.release_state(Duration::from_millis(700), "helmrelease-v2-upgrade-failed.json");
    cluster.fake.start_clock();
    let verify_args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "verify",
            ".",
            "--forge",
            "github",
            "--remote",
            &remote,
            "--format",
            "json",
            "--timeout",
            "6s",
            "--soak",
            "2s",
            "--kubeconfig",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(cluster.kubeconfig().display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out = on_github(verify_args(&[])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = only(&report);
    assert_eq!((v["verdict"].as_str(), v["action"].as_str()), (Some("failure"), Some("revert")), "{v}");
    let statuses = fake.statuses(&m.to_string());
    assert_eq!(statuses[0]["context"], "upkeep/verify", "{statuses:?}");
    assert_eq!(statuses[0]["state"], "failure", "{statuses:?}");
    assert!(statuses[0]["description"].as_str().unwrap().chars().count() <= 140);
    let revert = fake.pulls_for(&format!("upkeep/revert-{}", &m.to_string()[..12]));
    assert_eq!(revert.len(), 1, "one revert PR");
    assert!(
        revert[0]["title"].as_str().unwrap().starts_with("Revert \"chore(deps): update ingress-nginx"),
        "{}",
        revert[0]
    );
    assert_eq!(v["pr"], revert[0]["number"].to_string());
    let comments = fake.comments_on(number);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].contains("UpgradeFailed") && comments[0].contains("revert PR"), "{}", comments[0]);
    // The revert branch and the verdict note went to the remote.
    let pushed = git2::Repository::open_bare(&bare).unwrap();
    assert!(pushed.find_reference(&format!("refs/heads/upkeep/revert-{}", &m.to_string()[..12])).is_ok());
    assert!(pushed.find_reference("refs/notes/upkeep").is_ok());

    // A second pass writes nothing new on GitHub.
    let writes = fake.writes();
    let out = on_github(verify_args(&[])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fake.writes(), writes, "no new write");
}

/// The ingress-nginx PR merged with a merge commit; Flux applies it and the upgrade fails.
pub(super) async fn merged_then_upgrade_fails(sb: &Sandbox) -> (git2::Oid, String, Cluster) {
    let before = sb.main_tip();
    let (m, new) = merged(sb, MergeStyle::MergeCommit);
    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(300), &m.to_string());
    cluster.release_state(Duration::from_millis(600), "helmrelease-v2-upgrade-failed.json");
    cluster.fake.start_clock();
    (m, new, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_decides_and_writes_nothing() {
    let sb = Sandbox::example();
    let (m, _, cluster) = merged_then_upgrade_fails(&sb).await;
    let files = forge_files(&sb);
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &["--dry-run"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    assert_eq!((v["verdict"].as_str(), v["action"].as_str()), (Some("failure"), Some("revert")), "{v}");
    assert!(note(&sb, m).is_none(), "no note");
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")), "no branch");
    assert_eq!(forge_files(&sb), files, "no forge write");
    assert!(cluster.fake.patches().is_empty(), "no nudge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_older_than_the_horizon_when_first_seen_is_skipped_not_reverted() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    // Merged ten days ago (the horizon is seven), before upkeep ever verified anything here.
    let git = sb.git();
    let side = git.find_commit(git.refname_to_id(&format!("refs/heads/{NGINX}")).unwrap()).unwrap();
    let main = git.find_commit(sb.main_tip()).unwrap();
    let when = git2::Time::new(jiff::Timestamp::now().as_second() - 10 * 86_400, 0);
    let sig = git2::Signature::new("Maintainer", "m@example.com", &when).unwrap();
    git.commit(Some("refs/heads/main"), &sig, &sig, "Merge pull request #2", &side.tree().unwrap(), &[&main, &side])
        .unwrap();
    git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
    let cluster = Cluster::start(&main.id().to_string(), "9.9.9").await;
    cluster.release_state(Duration::ZERO, "helmrelease-v2-upgrade-failed.json");
    cluster.fake.start_clock();
    let files = forge_files(&sb);
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "skipped", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("before upkeep first looked"), "{v}");
    assert_eq!(forge_files(&sb), files, "nothing written");
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_that_fails_too_is_escalated_by_an_issue_and_never_reverted_again() {
    let sb = Sandbox::example();
    let (_, new, cluster) = merged_then_upgrade_fails(&sb).await;
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let branch = only(&report)["branch"].as_str().unwrap().to_string();
    // The revert is merged, and rolling back to the old chart fails as well.
    let r = merge(&sb, &branch, MergeStyle::MergeCommit);
    cluster.fetched_and_applied(&r.to_string());
    let mut hr = retarget("helmrelease-v2-upgrade-failed.json", "ingress-nginx", "ingress-nginx", &new, OLD_NGINX);
    hr["metadata"]["generation"] = json!(3);
    hr["status"]["observedGeneration"] = json!(3);
    cluster.fake.apply(Change::Put(hr));
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = report["verifications"].as_array().unwrap();
    let revert = all.iter().find(|v| v["commit"] == r.to_string()).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        (revert["verdict"].as_str(), revert["action"].as_str()),
        (Some("failure"), Some("forward-fix")),
        "{revert}"
    );
    let body = std::fs::read_to_string(revert["pr"].as_str().unwrap()).unwrap();
    assert!(body.contains("a failed revert is never reverted again"), "{body}");
    assert_eq!(sb.branches().keys().filter(|b| b.starts_with("upkeep/revert-")).count(), 1, "no revert of the revert");
}

/// `upkeep verify` as a GitHub Actions step: the reverts it opened are the `reverts` output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_actions_the_reverts_a_pass_opens_are_its_step_outputs() {
    let sb = Sandbox::example();
    let (_, _, cluster) = merged_then_upgrade_fails(&sb).await;
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let output = sb.root.join("github_output");
    let (repo, root, file) = (sb.repo.clone(), sb.root.clone(), output.display().to_string());
    let pass = move || {
        let args = ["verify", ".", "--format", "json", "--kubeconfig", &kubeconfig, "--timeout", "6s", "--soak", "2s"];
        upkeep_in(&root, &repo, &args, &[("GITHUB_ACTIONS", "true"), ("GITHUB_OUTPUT", &file)])
    };
    let out = tokio::task::spawn_blocking(pass.clone()).await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "reverts=1\nforward-fixes=0\n");
    // The next pass reads the verdict back and opens nothing: its outputs say 0.
    std::fs::remove_file(&output).unwrap();
    let again = tokio::task::spawn_blocking(pass).await.unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "reverts=0\nforward-fixes=0\n");
}
