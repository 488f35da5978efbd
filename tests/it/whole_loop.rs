//! The whole loop a maintainer is promised (issue 12.6), through the real binary and real HTTP
//! only: the bundled example as a git repository with a bare remote → `upkeep run` on the
//! wire-level fake GitHub API, its chart index served on loopback → the PR merged in git the
//! way GitHub merges it (a merge commit, or a squash) → the fake cluster reconciles the merge
//! and the upgrade fails → `upkeep verify` opens the revert PR with the evidence → the revert
//! is merged → the next `upkeep run` leaves the failed version alone, and proposes a newer one
//! once the chart index lists it. The happy path ends with one success status and a comment,
//! and nothing else: no PR, no issue, no branch, and a second verify writes nothing.

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::{any, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::github_fake::FakeGithub;
use super::run::{Sandbox, commit_all};
use super::verify_scenarios::Cluster;
use super::verify_support::{MergeStyle, decision, text, upkeep_blocking};

const REPO: &str = "home-ops/cluster";
const TOKEN: &str = "ghs_wholeLoopToken0123456789";
const NGINX: &str = "upkeep/helmrelease-ingress-nginx-ingress-nginx";
const NGINX_ID: &str = "helmrelease/ingress-nginx/ingress-nginx";
const MIRRORED_INDEX: &str = "mirror/kubernetes.github.io/ingress-nginx/index.yaml";
/// A version newer than any in the mirrored index, published during the test.
const NEWER: &str = "4.16.0";

/// ingress-nginx's Helm repository on loopback: the mirrored `index.yaml`, an `ETag` per
/// version of it and 304 on a match, so runs after the first one revalidate their cache.
#[derive(Clone)]
struct ChartIndex(Arc<Mutex<(u32, String)>>);

impl Respond for ChartIndex {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (generation, body) = self.0.lock().unwrap().clone();
        let etag = format!("\"index-{generation}\"");
        if req.headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            return ResponseTemplate::new(304).insert_header("etag", etag.as_str());
        }
        ResponseTemplate::new(200).insert_header("etag", etag.as_str()).set_body_string(body)
    }
}

impl ChartIndex {
    /// The chart maintainers release `version`: a copy of the newest entry, renamed, whose
    /// Artifact Hub change log lists `fix` as a security change (the structured form).
    fn publish(&self, version: &str, fix: &str) {
        let mut guard = self.0.lock().unwrap();
        let (generation, body) = &mut *guard;
        let start = body.find("  ingress-nginx:\n").unwrap() + "  ingress-nginx:\n".len();
        let end = start + 1 + body[start + 1..].find("\n  - ").unwrap();
        let newest = &body[start..end];
        let old = newest.lines().find_map(|l| l.strip_prefix("    version: ")).unwrap().to_string();
        let created = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 30);
        let entry = newest
            .replace(&old, version)
            .lines()
            .map(|l| match l {
                _ if l.starts_with("    created: ") => format!("    created: \"{created}\""),
                _ if l.starts_with("        - ") => format!("        - kind: security\n          description: {fix}"),
                _ => l.into(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        body.insert_str(start, &format!("{entry}\n"));
        *generation += 1;
    }
}

/// The example on GitHub: the fake API, the chart index, a bare remote, and the upkeep
/// commands with GitHub's environment.
struct Loop {
    sb: Sandbox,
    github: FakeGithub,
    index: ChartIndex,
    remote: String,
    env: Vec<(String, String)>,
    _servers: (MockServer, MockServer),
}

impl Loop {
    async fn start() -> Loop {
        let github = FakeGithub::new(REPO);
        let api = MockServer::start().await;
        Mock::given(any()).respond_with(github.clone()).mount(&api).await;
        let mirrored = std::fs::read_to_string(super::util::fixture(MIRRORED_INDEX)).unwrap();
        let index = ChartIndex(Arc::new(Mutex::new((1, mirrored))));
        let charts = MockServer::start().await;
        Mock::given(path("/ingress-nginx/index.yaml")).respond_with(index.clone()).mount(&charts).await;

        let sb = Sandbox::example();
        let config = sb.repo.join("upkeep.yaml");
        let text = std::fs::read_to_string(&config).unwrap().replace("https://api.github.com", &api.uri()).replace(
            "file://../fixtures/mirror/kubernetes.github.io/ingress-nginx",
            &format!("{}/ingress-nginx", charts.uri()),
        );
        std::fs::write(&config, text).unwrap();
        commit_all(&sb.git(), "chore: upkeep on GitHub, charts from the loopback index", "Maintainer");
        let bare = sb.root.join("remote.git");
        git2::Repository::init_bare(&bare).unwrap();
        let env = [("GITHUB_API_URL", api.uri()), ("GITHUB_TOKEN", TOKEN.into()), ("GITHUB_REPOSITORY", REPO.into())]
            .map(|(k, v)| (k.to_string(), v));
        Loop { sb, github, index, remote: bare.display().to_string(), env: env.to_vec(), _servers: (api, charts) }
    }

    /// An upkeep command on a blocking thread (the fakes answer on this runtime).
    async fn upkeep(&self, args: &[&str]) -> Output {
        let (root, repo, env) = (self.sb.root.clone(), self.sb.repo.clone(), self.env.clone());
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--forge", "github", "--remote", &self.remote].map(String::from));
        upkeep_blocking(&root, &repo, args, env).await
    }

    async fn run(&self) -> Output {
        let out = self.upkeep(&["run", "."]).await;
        assert!(out.status.success(), "{}", text(&out));
        assert!(!text(&out).contains(TOKEN), "the token is never printed");
        out
    }

    async fn verify(&self, cluster: &Cluster) -> (Output, Value) {
        let kubeconfig = cluster.kubeconfig().display().to_string();
        let args = ["verify", ".", "--format", "json", "--timeout", "6s", "--soak", "2s", "--kubeconfig", &kubeconfig];
        let out = self.upkeep(&args).await;
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(&out)));
        (out, report)
    }

    /// The open PR for `head`, the newest if GitHub has several.
    fn pr(&self, head: &str) -> Value {
        let pulls = self.github.pulls_for(head);
        pulls.into_iter().rev().find(|p| p["state"] == "open").unwrap_or_else(|| panic!("no open PR for {head}"))
    }

    /// Merge the open PR for `head` as GitHub does, on main and in the fake, and pull it.
    fn merge(&self, head: &str, style: MergeStyle) -> git2::Oid {
        let pr = self.pr(head);
        let (number, title, body) =
            (pr["number"].as_u64().unwrap(), pr["title"].as_str().unwrap(), pr["body"].as_str().unwrap());
        let git = self.sb.git();
        let side = git.find_commit(git.refname_to_id(&format!("refs/heads/{head}")).unwrap()).unwrap();
        let main = git.find_commit(self.sb.main_tip()).unwrap();
        let who = git2::Signature::now("GitHub", "noreply@github.com").unwrap();
        let merged = match style {
            MergeStyle::MergeCommit => {
                let message = format!("Merge pull request #{number} from {REPO}/{head}\n\n{title}\n");
                git.commit(Some("refs/heads/main"), &who, &who, &message, &side.tree().unwrap(), &[&main, &side])
            }
            MergeStyle::Squash => {
                let message = format!("{title} (#{number})\n\n{body}");
                git.commit(Some("refs/heads/main"), &who, &who, &message, &side.tree().unwrap(), &[&main])
            }
        }
        .unwrap();
        git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
        self.github.merge_pr(head, &merged.to_string());
        merged
    }

    fn remote_branches(&self) -> Vec<String> {
        let remote = git2::Repository::open_bare(&self.remote).unwrap();
        let mut names: Vec<String> =
            remote.branches(None).unwrap().map(|b| b.unwrap().0.name().unwrap().unwrap().to_string()).collect();
        names.sort();
        names
    }

    /// The version the open ingress-nginx PR proposes (its title ends with it).
    fn proposed(&self) -> Option<String> {
        let pulls = self.github.pulls_for(NGINX);
        let open = pulls.iter().rev().find(|p| p["state"] == "open")?;
        open["title"].as_str()?.rsplit(' ').next().map(String::from)
    }
}

/// The one Mermaid diagram in a Markdown text, held to the structural check.
fn only_diagram(markdown: &str) -> String {
    let blocks: Vec<&str> =
        markdown.split("```mermaid\n").skip(1).filter_map(|b| b.split_once("```")).map(|b| b.0).collect();
    assert_eq!(blocks.len(), 1, "{markdown}");
    upkeep::render::mermaid::check(blocks[0]).unwrap_or_else(|e| panic!("{e}\n{markdown}"));
    blocks[0].to_string()
}

/// PR titles and states, for assertion messages.
fn titles(pulls: &[Value]) -> Vec<String> {
    pulls.iter().map(|p| format!("#{} {} ({})", p["number"], p["title"], p["state"])).collect()
}

fn only(report: &Value) -> &Value {
    let all = report["verifications"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{report}");
    &all[0]
}

/// The failure loop, for one merge style of the update PR.
async fn fails_is_reverted_and_stays_blocked(style: MergeStyle) {
    let lp = Loop::start().await;
    lp.run().await;
    let failed = lp.proposed().expect("run opened the ingress-nginx PR");
    let body = lp.pr(NGINX)["body"].as_str().unwrap().to_string();
    assert!(body.contains(&format!("<!-- upkeep-update: {NGINX_ID} 4.10.0 -> {failed} -->")), "{body}");
    let before = lp.sb.main_tip();
    let m = lp.merge(NGINX, style);

    // Flux fetches and applies the merge; helm-controller fails the upgrade.
    let cluster = Cluster::start(&before.to_string(), &failed).await;
    cluster.applies(Duration::from_millis(300), &m.to_string());
    cluster.release_state(Duration::from_millis(700), "helmrelease-v2-upgrade-failed.json");
    cluster.fake.start_clock();
    let (out, report) = lp.verify(&cluster).await;
    assert_eq!(out.status.code(), Some(3), "a failed verification exits 3: {}", text(&out));
    let v = only(&report);
    assert_eq!((v["verdict"].as_str(), v["action"].as_str()), (Some("failure"), Some("revert")), "{v}");
    assert_eq!(v["commit"], m.to_string());
    assert_eq!(lp.github.statuses(&m.to_string())[0]["state"], "failure");

    // The revert PR carries the evidence and the marker the gate reads.
    let revert_branch = format!("upkeep/revert-{}", &m.to_string()[..12]);
    let revert = lp.pr(&revert_branch);
    let revert_body = revert["body"].as_str().unwrap();
    for evidence in ["UpgradeFailed", &format!("<!-- upkeep-revert: {NGINX_ID} {failed} -->")] {
        assert!(revert_body.contains(evidence), "{evidence} in the revert PR body:\n{revert_body}");
    }
    // Its timeline: merged, the source and the Kustomization seen at the merge, the release failed.
    let timeline = only_diagram(revert_body);
    assert!(timeline.contains(&format!("source at {}<br/>+", &m.to_string()[..12])), "{timeline}");
    assert!(
        timeline.contains("HelmRelease upgraded: failed<br/>UpgradeFailed") && timeline.contains("class s3 failed")
    );
    assert!(lp.remote_branches().contains(&revert_branch), "the revert branch was pushed");

    // The revert is merged (in the same style); Flux rolls back.
    let r = lp.merge(&revert_branch, style);
    cluster.fetched_and_applied(&r.to_string());

    // The next run does not propose the failed version again…
    let writes = lp.github.writes().len();
    lp.run().await;
    let d = decision(&lp.sb, NGINX_ID);
    assert_eq!(d["action"], "blocked", "{d}");
    assert!(d["reason"].as_str().unwrap().contains(&format!("{failed} (reverted in")), "{d}");
    assert_eq!(lp.proposed(), None, "no PR for {failed} again: {:?}", &lp.github.writes()[writes..]);
    assert!(!lp.github.writes()[writes..].iter().any(|w| w == "POST /pulls"), "{:?}", lp.github.writes());

    // …and proposes a newer one once it exists upstream (a security fix, so the PR names it).
    lp.index.publish(NEWER, "Fix CVE-2026-41234 in the admission webhook");
    let out = lp.run().await;
    assert_eq!(
        lp.proposed().as_deref(),
        Some(NEWER),
        "{}\n{:?}\n{}",
        text(&out),
        titles(&lp.github.pulls_for(NGINX)),
        decision(&lp.sb, NGINX_ID)
    );
    let body = lp.pr(NGINX)["body"].as_str().unwrap().to_string();
    assert!(body.contains(&format!("<!-- upkeep-update: {NGINX_ID} 4.10.0 -> {NEWER} -->")), "{body}");
    assert!(body.contains("CVE-2026-41234"), "the security fix is named: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_commit_that_fails_is_reverted_and_its_version_stays_blocked_until_a_newer_one() {
    fails_is_reverted_and_stays_blocked(MergeStyle::MergeCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squash_merge_that_fails_is_reverted_and_its_version_stays_blocked_until_a_newer_one() {
    fails_is_reverted_and_stays_blocked(MergeStyle::Squash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_that_reconciles_and_soaks_ends_with_a_success_status_and_nothing_else() {
    let mut lp = Loop::start().await;
    lp.run().await;
    let new = lp.proposed().unwrap();
    let before = lp.sb.main_tip();
    let m = lp.merge(NGINX, MergeStyle::MergeCommit);
    let number = lp.github.pulls_for(NGINX)[0]["number"].as_u64().unwrap();
    let (writes, branches) = (lp.github.writes(), lp.remote_branches());

    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(300), &m.to_string());
    cluster.upgraded(Duration::from_millis(700));
    cluster.fake.start_clock();
    // What a bar would say on a terminal, as log lines: the merge, what it waits for, time left.
    lp.env.extend([("UPKEEP_PROGRESS", "log"), ("RUST_LOG", "info,octocrab=off")].map(|(k, v)| (k.into(), v.into())));
    let (out, report) = lp.verify(&cluster).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let short = &m.to_string()[..12];
    assert!(stderr.contains(&format!("progress: verifying {short}: reconciled; soaking until")), "{stderr}");
    assert!(stderr.contains("s left)"), "{stderr}");
    lp.env.truncate(3);
    assert_eq!(only(&report)["verdict"], "success", "{report}");
    let statuses = lp.github.statuses(&m.to_string());
    assert_eq!((statuses.len(), statuses[0]["state"].as_str()), (1, Some("success")), "{statuses:?}");
    assert_eq!(statuses[0]["context"], "upkeep/verify");
    // One status and the verification comment on the merged PR; no PR, issue or branch.
    let new_writes = lp.github.writes()[writes.len()..].to_vec();
    assert_eq!(new_writes, [format!("POST /statuses/{m}"), format!("POST /issues/{number}/comments")]);
    let comment = &lp.github.comments_on(number)[0];
    assert!(comment.contains("verified"), "{comment}");
    let scrubbed = comment.replace(&m.to_string(), "<merge>").replace(&m.to_string()[..12], "<merge12>");
    insta::assert_snapshot!("verify-comment-success", super::verify_scenarios::scrub_times(&scrubbed));
    let timeline = only_diagram(comment);
    assert!(timeline.contains("class s0,s1,s2,s3,s4 done") && timeline.contains("s4[\"soaked<br/>+"), "{timeline}");
    let branches_now: Vec<String> = lp.remote_branches();
    assert_eq!(branches_now, branches, "no new branch");

    // A second verify reads the verdict back and writes nothing.
    let writes = lp.github.writes();
    let (out, report) = lp.verify(&cluster).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success", "{report}");
    assert_eq!(lp.github.writes(), writes, "the second verify writes nothing");
    assert_eq!(lp.remote_branches(), branches, "no new branch");
}

/// The dashboard of the example's first run draws each platform chain (Longhorn and the k3s
/// Plans): the version in git, the open PR's step, and the minors after it. (Its text is in
/// the `dashboard-example` snapshot of `run.rs`.)
#[test]
fn the_dashboard_draws_each_platform_upgrade_chain() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    let dashboard = std::fs::read_to_string(sb.repo.join(".upkeep/dashboard.md")).unwrap();
    let (_, section) = dashboard.split_once("## Platform upgrade paths").unwrap_or_else(|| panic!("{dashboard}"));
    let diagrams: Vec<&str> =
        section.split("```mermaid\n").skip(1).filter_map(|b| b.split_once("```")).map(|b| b.0).collect();
    assert!(diagrams.len() >= 2, "Longhorn and k3s: {section}");
    for d in &diagrams {
        upkeep::render::mermaid::check(d).unwrap_or_else(|e| panic!("{e}\n{d}"));
    }
    assert!(section.contains("Longhorn 1.4.1<br/>in git") && section.contains("PR open"), "{section}");
}
