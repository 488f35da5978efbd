//! `upkeep verify --evidence github-status` end to end, with no cluster at all: the bundled
//! example as a real git repository with a bare remote, `upkeep run --forge github` opening its
//! PRs on the wire-level fake GitHub API, the ingress-nginx PR merged with a merge commit, and
//! the commit statuses Flux's notification-controller would post on it served by the fake.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::{Mock, MockServer, matchers::any};

use super::github_fake::{FakeGithub, commit_status, flux_status};
use super::run::{Sandbox, commit_all};
use super::verify_support::{text, upkeep_blocking};

const REPO: &str = "home-ops/cluster";
const NGINX: &str = "upkeep/helmrelease-ingress-nginx-ingress-nginx";
/// The Provider's UID in the cluster (its first segment ends every context it posts).
const PROVIDER: &str = "0c9c2e41-6b0e-4d8a-9a43-3f1f7c2d9e10";
const WARNING: &str = "has neither `wait: true` nor `healthChecks`";

/// How the example's Flux Kustomizations are changed before the first run.
#[derive(Clone, Copy)]
enum Layout {
    /// As bundled: `infrastructure` applies ingress-nginx, without `wait`.
    AsIs,
    /// `infrastructure` has `wait: true`.
    Waits,
    /// No Kustomization applies ingress-nginx (and the config updates unapplied files).
    Unapplied,
}

/// The example on the fake GitHub, verified through Flux's statuses, its PRs opened.
struct OnGithub {
    sb: Sandbox,
    fake: FakeGithub,
    _server: MockServer,
    remote: String,
    env: Vec<(String, String)>,
}

impl OnGithub {
    /// `wait`: whether the example's `infrastructure` Kustomization (which applies the
    /// ingress-nginx release) waits for what it applies.
    async fn start(wait: bool) -> OnGithub {
        OnGithub::start_with(if wait { Layout::Waits } else { Layout::AsIs }).await
    }

    async fn start_with(layout: Layout) -> OnGithub {
        let fake = FakeGithub::new(REPO);
        let server = MockServer::start().await;
        Mock::given(any()).respond_with(fake.clone()).mount(&server).await;
        let sb = Sandbox::example();
        let config = sb.repo.join("upkeep.yaml");
        let mut text_now = std::fs::read_to_string(&config).unwrap().replace("https://api.github.com", &server.uri());
        text_now.push_str("verify:\n  evidence: github-status\n");
        std::fs::write(&config, text_now).unwrap();
        let file = sb.repo.join("clusters/home/infrastructure.yaml");
        match layout {
            Layout::AsIs => {}
            Layout::Waits => {
                let yaml = std::fs::read_to_string(&file).unwrap();
                let waits = yaml.replacen("  path: ./infrastructure\n", "  path: ./infrastructure\n  wait: true\n", 1);
                assert_ne!(waits, yaml);
                std::fs::write(&file, waits).unwrap();
            }
            Layout::Unapplied => {
                // No Kustomization applies infrastructure/ any more; upkeep still updates it.
                std::fs::remove_file(&file).unwrap();
                let mut config = std::fs::read_to_string(sb.repo.join("upkeep.yaml")).unwrap();
                config.push_str("includeNotApplied: true\n");
                std::fs::write(sb.repo.join("upkeep.yaml"), config).unwrap();
            }
        }
        commit_all(&sb.git(), "chore: upkeep on GitHub, verified by Flux's statuses", "Maintainer");
        let bare = sb.root.join("remote.git");
        git2::Repository::init_bare(&bare).unwrap();
        let env = vec![
            ("GITHUB_API_URL".to_string(), server.uri()),
            ("GITHUB_TOKEN".to_string(), "ghs_statustoken".to_string()),
            ("GITHUB_REPOSITORY".to_string(), REPO.to_string()),
        ];
        let gh = OnGithub { sb, fake, _server: server, remote: bare.display().to_string(), env };
        let out = gh.upkeep(&["run", ".", "--forge", "github", "--remote", &gh.remote]).await;
        assert!(out.status.success(), "{}", text(&out));
        gh
    }

    async fn upkeep(&self, args: &[&str]) -> Output {
        let (root, repo, env) = (self.sb.root.clone(), self.sb.repo.clone(), self.env.clone());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        upkeep_blocking(&root, &repo, args, env).await
    }

    /// Merge the ingress-nginx PR with a merge commit, on GitHub and in the checkout.
    fn merge(&self) -> String {
        let git = self.sb.git();
        let side = git.find_commit(git.refname_to_id(&format!("refs/heads/{NGINX}")).unwrap()).unwrap();
        let main = git.find_commit(self.sb.main_tip()).unwrap();
        let sig = git2::Signature::now("GitHub", "noreply@github.com").unwrap();
        let message = "Merge pull request #2 from home-ops/upkeep/helmrelease-ingress-nginx-ingress-nginx";
        let m =
            git.commit(Some("refs/heads/main"), &sig, &sig, message, &side.tree().unwrap(), &[&main, &side]).unwrap();
        git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
        self.fake.merge_pr(NGINX, &m.to_string());
        m.to_string()
    }

    /// A maintainer's commit after the merge (Flux applies the tip).
    fn later_commit(&self) -> String {
        std::fs::write(self.sb.repo.join("NOTES.md"), "later\n").unwrap();
        commit_all(&self.sb.git(), "docs: a later commit", "Maintainer").to_string()
    }

    /// `upkeep verify` on GitHub with short deadlines, as JSON.
    async fn verify(&self, extra: &[&str]) -> (Output, Value) {
        let mut args = vec!["verify", ".", "--forge", "github", "--remote", &self.remote, "--format", "json"];
        for (flag, default) in [("--timeout", "30s"), ("--soak", "1s")] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend(extra);
        let out = self.upkeep(&args).await;
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(&out)));
        (out, json)
    }

    fn revert_prs(&self, merge: &str) -> Vec<Value> {
        self.fake.pulls_for(&format!("upkeep/revert-{}", &merge[..12]))
    }
}

fn only(report: &Value) -> &Value {
    let all = report["verifications"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{report}");
    &all[0]
}

fn infrastructure(severity: &str, reason: &str, n: usize) -> Value {
    flux_status("infrastructure", PROVIDER, severity, reason, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_status_from_the_applying_kustomization_verifies_the_merge_without_a_cluster() {
    let gh = OnGithub::start(true).await;
    let body = gh.fake.pulls_for(NGINX)[0]["body"].as_str().unwrap().to_string();
    assert!(body.contains("Kustomization flux-system/infrastructure posts `success`"), "{body}");
    assert!(!body.contains(WARNING), "it waits: no warning\n{body}");
    let m = gh.merge();
    gh.fake.post_status(&m, infrastructure("info", "ReconciliationSucceeded", 1));
    let (out, report) = gh.verify(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!((v["commit"].as_str(), v["verdict"].as_str()), (Some(m.as_str()), Some("success")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("Kustomization/flux-system/infrastructure posted success"), "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    let statuses = gh.fake.statuses(&m);
    assert_eq!(
        (statuses[0]["context"].as_str(), statuses[0]["state"].as_str()),
        (Some("upkeep/verify"), Some("success"))
    );
    assert!(gh.revert_prs(&m).is_empty());
    assert_eq!(gh.fake.comments_on(gh.fake.pulls_for(NGINX)[0]["number"].as_u64().unwrap()).len(), 1);

    // A second pass reads the verdict back and writes nothing.
    let writes = gh.fake.writes();
    let (out, report) = gh.verify(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success");
    assert_eq!(gh.fake.writes(), writes, "no new write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_status_reverts_the_merge_with_its_description_as_evidence() {
    let gh = OnGithub::start(true).await;
    let m = gh.merge();
    gh.fake.post_status(&m, infrastructure("error", "HealthCheckFailed", 1));
    let started = Instant::now();
    let (out, report) = gh.verify(&[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(20), "conclusive at once, not after the timeout");
    let v = only(&report);
    assert_eq!((v["verdict"].as_str(), v["action"].as_str()), (Some("failure"), Some("revert")), "{v}");
    let row = &v["evidence"][0];
    assert_eq!(row["object"], "Kustomization/flux-system/infrastructure", "{v}");
    assert_eq!((row["status"].as_str(), row["reason"].as_str()), (Some("False"), Some("HealthCheckFailed")), "{v}");
    assert!(
        row["message"].as_str().unwrap().ends_with(&format!("posted failure on {}: health check failed", &m[..12])),
        "{v}"
    );
    let reverts = gh.revert_prs(&m);
    assert_eq!(reverts.len(), 1, "one revert PR");
    let body = reverts[0]["body"].as_str().unwrap();
    assert!(body.contains("health check failed") && body.contains("kustomization/infrastructure/0c9c2e41"), "{body}");
    assert_eq!(v["pr"], reverts[0]["number"].to_string());
    assert_eq!(gh.fake.statuses(&m)[0]["state"], "failure", "upkeep/verify says so on the merge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flux_status_at_all_fails_after_the_timeout_and_says_what_to_set_up() {
    let gh = OnGithub::start(true).await;
    let m = gh.merge();
    // Only other tools' statuses: the CI's and upkeep's own.
    gh.fake.post_status(&m, commit_status("ci/build", "success", "tests passed", 1));
    let started = Instant::now();
    let (out, report) = gh.verify(&["--timeout", "2s"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited for the timeout");
    let v = only(&report);
    assert_eq!(v["verdict"], "failure", "{v}");
    assert_eq!(
        v["reason"],
        "no Flux commit status arrived within 2s: is notification-controller's github Provider/Alert set up?"
    );
    assert_eq!(v["evidence"][0]["object"], "Kustomization/flux-system/infrastructure", "{v}");
    assert_eq!(gh.revert_prs(&m).len(), 1, "a revert, as with the cluster's evidence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kustomization_without_wait_or_health_checks_is_warned_about_in_the_pr_and_the_report() {
    let gh = OnGithub::start(false).await;
    let body = gh.fake.pulls_for(NGINX)[0]["body"].as_str().unwrap().to_string();
    let after = &body[body.find("### What happens after merge").unwrap()..];
    assert!(
        after.contains(&format!(
            "Kustomization flux-system/infrastructure (`clusters/home/infrastructure.yaml:2`) {WARNING}: its commit status says its manifests were applied, not that HelmRelease ingress-nginx/ingress-nginx became Ready at chart"
        )),
        "{after}"
    );
    let m = gh.merge();
    gh.fake.post_status(&m, infrastructure("info", "ReconciliationSucceeded", 1));
    let (out, report) = gh.verify(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "success", "{v}");
    let warnings = v["warnings"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(warnings[0].as_str().unwrap().starts_with(&format!(
        "Kustomization flux-system/infrastructure (clusters/home/infrastructure.yaml:2) {WARNING}"
    )));
    // So does the comment on the merged PR.
    let comments = gh.fake.comments_on(gh.fake.pulls_for(NGINX)[0]["number"].as_u64().unwrap());
    assert!(
        comments[0].contains("> ⚠️ Kustomization flux-system/infrastructure") && comments[0].contains(WARNING),
        "{comments:?}"
    );
    // The table says it on its own line too.
    let out = gh.upkeep(&["verify", ".", "--forge", "github", "--format", "table", "--dry-run"]).await;
    assert!(
        text(&out).lines().any(|l| l.trim_start().starts_with("warning: Kustomization flux-system/infrastructure")),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_on_a_later_commit_counts_for_the_merge() {
    let gh = OnGithub::start(true).await;
    let m = gh.merge();
    let later = gh.later_commit();
    // Flux applied only the later commit: the merge itself carries no Flux status.
    gh.fake.post_status(&later, infrastructure("info", "ReconciliationSucceeded", 1));
    let (out, report) = gh.verify(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!((v["commit"].as_str(), v["verdict"].as_str()), (Some(m.as_str()), Some("success")), "{v}");
    let read = gh.fake.requests();
    for sha in [&m, &later] {
        assert!(read.iter().any(|r| r.starts_with(&format!("GET /repos/{REPO}/commits/{sha}/statuses"))), "{read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_of_other_kustomizations_and_other_tools_are_ignored() {
    let gh = OnGithub::start(true).await;
    let m = gh.merge();
    for status in [
        flux_status("apps", PROVIDER, "error", "HealthCheckFailed", 1),
        commit_status("ci/build", "failure", "tests failed", 2),
        commit_status("kustomization/infrastructure/extra/segment", "failure", "not Flux's format", 3),
        infrastructure("info", "ReconciliationSucceeded", 4),
    ] {
        gh.fake.post_status(&m, status);
    }
    let (out, report) = gh.verify(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success", "{report}");
    assert!(gh.revert_prs(&m).is_empty());

    // Without the infrastructure status, the others do not stand in for it.
    let gh = OnGithub::start(true).await;
    let m = gh.merge();
    gh.fake.post_status(&m, flux_status("apps", PROVIDER, "info", "ReconciliationSucceeded", 1));
    let (out, report) = gh.verify(&["--no-wait"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "pending", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("Kustomization/flux-system/infrastructure has posted no success status"),
        "{v}"
    );
}

#[test]
fn the_evidence_is_chosen_in_the_config_and_a_wrong_value_names_its_line() {
    let root = std::path::Path::new("/repo");
    let parse = |yaml: &str| upkeep::config::parse(yaml, root, ".github/upkeep.yaml");
    use upkeep::config::EvidenceSource;
    assert_eq!(parse("").unwrap().verify.evidence, EvidenceSource::Kube, "the default");
    assert_eq!(parse("verify:\n  evidence: github-status\n").unwrap().verify.evidence, EvidenceSource::GithubStatus);
    let err = parse("verify:\n  timeout: 10m\n  evidence: github-statuses\n").err().unwrap().to_string();
    assert!(err.contains(".github/upkeep.yaml:3"), "{err}");
    assert!(err.contains("github-status") && err.contains("kube"), "the choices are named: {err}");
}

#[test]
fn the_flux_graph_knows_which_kustomizations_wait_or_check_health() {
    let ks = |name: &str, extra: &str| {
        format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  path: ./{name}\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n{extra}"
        )
    };
    let release = super::util::helmrelease("podinfo", "6.5.0");
    let (waits, checks, neither, off) = (
        ks("waits", "  wait: true\n"),
        ks("checks", "  healthChecks:\n    - kind: HelmRelease\n      name: podinfo\n      namespace: apps\n"),
        ks("neither", "  healthChecks: []\n"),
        ks("off", "  wait: false\n"),
    );
    let all = format!("{waits}---\n{checks}---\n{neither}---\n{off}");
    let dir = super::util::tree(&[
        ("clusters/prod/apps.yaml", all.as_bytes()),
        ("waits/release.yaml", release.as_bytes()),
        ("checks/release.yaml", release.as_bytes()),
        ("neither/release.yaml", release.as_bytes()),
        ("off/release.yaml", release.as_bytes()),
    ]);
    let scan = super::util::scan_dir(dir.path());
    let facts = |file: &str| {
        let found = scan.flux_graph.kustomizations_applying(file);
        assert_eq!(found.len(), 1, "{file}: {found:?}");
        (found[0].wait, found[0].health_checks, found[0].checks_health())
    };
    assert_eq!(facts("waits/release.yaml"), (true, false, true));
    assert_eq!(facts("checks/release.yaml"), (false, true, true));
    assert_eq!(facts("neither/release.yaml"), (false, false, false), "an empty list checks nothing");
    assert_eq!(facts("off/release.yaml"), (false, false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_no_kustomization_applies_cannot_be_verified_and_stays_pending() {
    let gh = OnGithub::start_with(Layout::Unapplied).await;
    let body = gh.fake.pulls_for(NGINX)[0]["body"].as_str().unwrap().to_string();
    assert!(
        body.contains("No Flux Kustomization in this repository applies `infrastructure/ingress-nginx/release.yaml`"),
        "{body}"
    );
    let m = gh.merge();
    // The root Kustomization reconciled the merge fine; it does not apply the release.
    gh.fake.post_status(&m, flux_status("flux-system", PROVIDER, "info", "ReconciliationSucceeded", 1));
    let (out, report) = gh.verify(&["--timeout", "1s", "--no-wait"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "pending", "never decided blind: {v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "`infrastructure/ingress-nginx/release.yaml`: no Flux Kustomization in this repository applies it"
        ),
        "{reason}"
    );
    assert!(gh.revert_prs(&m).is_empty(), "no revert");
    assert_eq!(gh.fake.statuses(&m)[0]["state"], "pending", "upkeep/verify says pending");
}

/// The flag overrides the config, and any forge that keeps statuses serves them: the local
/// forge's `.upkeep/statuses/<sha>.json` here.
#[test]
fn the_flag_chooses_the_evidence_and_the_local_forge_serves_statuses_too() {
    use super::verify_support::{MergeStyle, merge, upkeep};
    let sb = Sandbox::example();
    let file = sb.repo.join("clusters/home/infrastructure.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, yaml.replacen("  path: ./infrastructure\n", "  path: ./infrastructure\n  wait: true\n", 1))
        .unwrap();
    commit_all(&sb.git(), "infrastructure waits", "Maintainer");
    sb.run(&[], &[]);
    let m = merge(&sb, NGINX, MergeStyle::Squash);
    std::fs::create_dir_all(sb.repo.join(".upkeep/statuses")).unwrap();
    let posted = serde_json::json!([{
        "context": "kustomization/infrastructure/0c9c2e41",
        "state": "success",
        "description": "reconciliation succeeded",
        "target_url": null,
        "created_at": "2026-11-24T00:01:00Z"
    }]);
    std::fs::write(sb.repo.join(format!(".upkeep/statuses/{m}.json")), posted.to_string()).unwrap();

    // The config says kube (the default) and there is no cluster: blind, pending.
    let args = ["verify", ".", "--format", "json", "--soak", "0s", "--no-wait", "--dry-run"];
    let out = upkeep(&sb, &args, &[]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(only(&report)["verdict"], "pending", "{report}");
    assert!(only(&report)["reason"].as_str().unwrap().contains("cannot see the cluster"), "{report}");

    let with_flag: Vec<&str> = args.iter().copied().chain(["--evidence", "github-status"]).collect();
    let out = upkeep(&sb, &with_flag, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let v = only(&report);
    assert_eq!((v["commit"].as_str(), v["verdict"].as_str()), (Some(m.to_string().as_str()), Some("success")), "{v}");
}

#[test]
fn the_commits_that_speak_for_a_merge_are_its_first_parent_descendants() {
    use upkeep::git::{Author, Writer};
    let dir = tempfile::tempdir().unwrap();
    let repo =
        git2::Repository::init_opts(dir.path(), git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
    let sig = git2::Signature::now("M", "m@example.com").unwrap();
    let tree = repo.find_tree(repo.treebuilder(None).unwrap().write().unwrap()).unwrap();
    let a = repo.commit(Some("HEAD"), &sig, &sig, "a", &tree, &[]).unwrap();
    let a_commit = repo.find_commit(a).unwrap();
    let side = repo.commit(None, &sig, &sig, "side", &tree, &[&a_commit]).unwrap();
    let side_commit = repo.find_commit(side).unwrap();
    let m = repo.commit(Some("HEAD"), &sig, &sig, "merge", &tree, &[&a_commit, &side_commit]).unwrap();
    let m_commit = repo.find_commit(m).unwrap();
    let tip = repo.commit(Some("HEAD"), &sig, &sig, "later", &tree, &[&m_commit]).unwrap();
    let writer = Writer::open(dir.path(), Author::default()).unwrap();
    assert_eq!(writer.first_parent_down_to(&m.to_string(), 10).unwrap(), vec![tip.to_string(), m.to_string()]);
    let err = writer.first_parent_down_to(&side.to_string(), 10).unwrap_err().to_string();
    assert!(err.contains("is not within the newest 10 commits"), "a side commit is not on the line: {err}");
    assert!(writer.first_parent_down_to(&a.to_string(), 2).is_err(), "bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_open_together_read_the_commits_they_share_once() {
    const CERT_MANAGER: &str = "upkeep/helmrelease-cert-manager-cert-manager";
    let gh = OnGithub::start(true).await;
    let nginx = gh.merge();
    // The cert-manager PR merged after it, then a maintainer's commit: Flux applied the tip.
    let git = gh.sb.git();
    let side = git.find_commit(git.refname_to_id(&format!("refs/heads/{CERT_MANAGER}")).unwrap()).unwrap();
    let main = git.find_commit(gh.sb.main_tip()).unwrap();
    let sig = git2::Signature::now("GitHub", "noreply@github.com").unwrap();
    let merged = git.merge_commits(&main, &side, None).unwrap();
    assert!(!merged.has_conflicts());
    let mut index = merged;
    let tree = git.find_tree(index.write_tree_to(&git).unwrap()).unwrap();
    let cert =
        git.commit(Some("refs/heads/main"), &sig, &sig, "Merge pull request #3", &tree, &[&main, &side]).unwrap();
    git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
    gh.fake.merge_pr(CERT_MANAGER, &cert.to_string());
    let tip = gh.later_commit();
    gh.fake.post_status(&tip, infrastructure("info", "ReconciliationSucceeded", 1));
    let (out, report) = gh.verify(&["--soak", "0s", "--no-wait"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = report["verifications"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{report}");
    assert!(all.iter().all(|v| v["verdict"] == "success"), "{report}");
    assert!(
        all.iter().any(|v| v["commit"] == nginx.as_str())
            && all.iter().any(|v| v["commit"] == cert.to_string().as_str())
    );
    let reads = |sha: &str| {
        let route = format!("GET /repos/{REPO}/commits/{sha}/statuses");
        gh.fake.requests().iter().filter(|r| r.starts_with(&route)).count()
    };
    assert_eq!(reads(&tip), 1, "both merges looked at the tip in one round; it was read once");
}
