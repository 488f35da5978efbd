//! The GitHub forge through a wire-level fake of GitHub's REST API on loopback
//! (`GITHUB_API_URL`): `upkeep run --forge github` end to end against a real git repository and
//! a bare remote, and the client's manners on its own — idempotent creation, "already exists",
//! rate limits, permissions, pagination, and a token that never leaks — and the verifier's calls:
//! commit statuses, forward-fix issues and the PR that merged a commit.

use std::time::Duration;

use upkeep::forge::github::GithubForge;
use upkeep::forge::{CommitStatus, Forge, NewPullRequest, PrState, StatusState};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::github_fake::{FakeGithub, Fault, commit_status, label, template};
use super::run::{LONGHORN, Sandbox, commit_all, stdout};

const TOKEN: &str = "ghp_fakeTokenForTests0123456789";
const REPO: &str = "home-ops/cluster";
const CERT_MANAGER: &str = "upkeep/helmrelease-cert-manager-cert-manager";

/// The fake on a loopback port. The server runs on its own runtime so tests (and the forge,
/// which blocks on its own runtime) stay synchronous.
struct Github {
    server: MockServer,
    fake: FakeGithub,
    _runtime: tokio::runtime::Runtime,
}

impl Github {
    fn start() -> Github {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let fake = FakeGithub::new(REPO);
        let server = runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(any()).respond_with(fake.clone()).mount(&server).await;
            server
        });
        Github { server, fake, _runtime: runtime }
    }

    fn forge(&self) -> GithubForge {
        GithubForge::new(&self.server.uri(), REPO, TOKEN).unwrap().with_max_wait(Duration::from_secs(5))
    }
}

fn new_pr(head: &str, labels: &[&str]) -> NewPullRequest {
    NewPullRequest {
        head: head.into(),
        base: "main".into(),
        title: format!("chore(deps): update {head}"),
        body: "body".into(),
        labels: labels.iter().map(|l| (*l).to_string()).collect(),
        reviewers: Vec::new(),
        automerge: false,
        draft: false,
    }
}

/// The bundled example pointed at the fake: release lookups (k3s, Flux) still read the offline
/// mirror, now found under the fake's URL, and rules ask for labels, reviewers, a draft and
/// auto-merge so every PR option crosses the wire.
fn sandbox(gh: &Github) -> (Sandbox, String) {
    let sb = Sandbox::example();
    let config = sb.repo.join("upkeep.yaml");
    let text = std::fs::read_to_string(&config).unwrap().replace("https://api.github.com", &gh.server.uri());
    let rules = "rules:\n  - match: { component: [longhorn] }\n    labels: [platform]\n    reviewers: [octocat]\n    draft: true\n  - match: { chart: [cert-manager] }\n    automerge: true\n";
    std::fs::write(&config, format!("{text}{rules}")).unwrap();
    commit_all(&sb.git(), "chore: upkeep config for GitHub", "Maintainer");
    let bare = sb.root.join("remote.git");
    git2::Repository::init_bare(&bare).unwrap();
    (sb, bare.to_string_lossy().to_string())
}

fn run_github(sb: &Sandbox, gh: &Github, remote: &str, extra: &[(&str, &str)]) -> std::process::Output {
    let uri = gh.server.uri();
    let mut env = vec![("GITHUB_API_URL", uri.as_str()), ("GITHUB_TOKEN", TOKEN), ("GITHUB_REPOSITORY", REPO)];
    env.extend_from_slice(extra);
    sb.try_run(&["--forge", "github", "--remote", remote], &env)
}

fn all_output(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_github_run_opens_prs_and_a_dashboard_then_a_second_run_writes_nothing() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    let first = run_github(&sb, &gh, &remote, &[]);
    assert!(first.status.success(), "{}", all_output(&first));
    let writes = gh.fake.writes();
    let count = |w: &str| writes.iter().filter(|x| x.as_str() == w).count();
    assert_eq!(count("POST /pulls"), 4, "{writes:?}");
    assert_eq!(count("POST /issues"), 1, "one dashboard issue: {writes:?}");
    assert_eq!(count("POST /graphql"), 1, "auto-merge for cert-manager only: {writes:?}");

    let longhorn = gh.fake.pulls_for(LONGHORN);
    assert_eq!(longhorn.len(), 1);
    let n = longhorn[0]["number"].as_u64().unwrap();
    assert_eq!(longhorn[0]["draft"], true);
    assert_eq!(longhorn[0]["labels"][0]["name"], "platform");
    assert!(writes.contains(&format!("POST /pulls/{n}/requested_reviewers")), "{writes:?}");
    assert_eq!(longhorn[0]["title"], "chore(deps): update longhorn to 1.5.4");
    assert!(
        longhorn[0]["body"]
            .as_str()
            .unwrap()
            .contains("<!-- upkeep-update: helmrelease/longhorn-system/longhorn 1.4.1 -> 1.5.4 -->"),
        "{}",
        longhorn[0]["body"]
    );
    // Branches went to the remote, each the tip upkeep wrote locally.
    let pushed = git2::Repository::open_bare(&remote).unwrap();
    for (name, tip) in sb.branches() {
        assert_eq!(pushed.refname_to_id(&format!("refs/heads/{name}")).unwrap(), tip, "{name}");
    }
    let dashboard = gh.fake.dashboard().unwrap();
    assert_eq!(dashboard["title"], "upkeep dependency dashboard");
    assert!(dashboard["body"].as_str().unwrap().contains(LONGHORN), "{}", dashboard["body"]);

    // Every call carried the token in the header and nowhere else.
    let tokens = gh.fake.state.lock().unwrap().tokens.clone();
    assert!(!tokens.is_empty() && tokens.iter().all(|t| t == &format!("Bearer {TOKEN}")));
    assert!(gh.fake.requests().iter().all(|r| !r.contains(TOKEN)));
    assert!(!all_output(&first).contains(TOKEN));

    // A maintainer labels the PR; upkeep keeps that label and does not fight over it.
    {
        let mut s = gh.fake.state.lock().unwrap();
        let pr = s.pulls.iter_mut().find(|p| p["head"]["ref"] == LONGHORN).unwrap();
        pr["labels"].as_array_mut().unwrap().push(label("needs-maintenance-window"));
    }
    let second = run_github(&sb, &gh, &remote, &[]);
    assert!(second.status.success(), "{}", all_output(&second));
    assert_eq!(gh.fake.writes(), writes, "the second run writes nothing to GitHub");
    assert_eq!(gh.fake.pulls_for(LONGHORN)[0]["labels"].as_array().unwrap().len(), 2);
    let text = stdout(&second);
    assert!(text.contains("PRs opened: none") && text.contains("PRs updated: none"), "{text}");
}

#[test]
fn a_pr_closed_without_merging_on_github_is_not_proposed_again() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    assert!(run_github(&sb, &gh, &remote, &[]).status.success());
    gh.fake.close_unmerged(LONGHORN);
    let before = gh.fake.writes();
    let out = run_github(&sb, &gh, &remote, &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let new: Vec<String> = gh.fake.writes()[before.len()..].to_vec();
    assert!(!new.iter().any(|w| w == "POST /pulls"), "no new PR: {new:?}");
    assert_eq!(gh.fake.pulls_for(LONGHORN).len(), 1);
    let dashboard = gh.fake.dashboard().unwrap();
    let body = dashboard["body"].as_str().unwrap();
    assert!(body.contains("was closed without merging"), "{body}");
    assert!(new.iter().any(|w| w.starts_with("PATCH /issues/")), "the dashboard is edited in place: {new:?}");
}

#[test]
fn pull_requests_from_forks_are_not_upkeeps() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    // A fork's closed PR "refusing" Longhorn 1.5.4, and an open one squatting on the cert-manager branch name.
    gh.fake.fork_pr(LONGHORN, "<!-- upkeep-update: helmrelease/longhorn-system/longhorn 1.4.1 -> 1.5.4 -->", "closed");
    gh.fake.fork_pr(CERT_MANAGER, "not an upkeep PR", "open");
    let out = run_github(&sb, &gh, &remote, &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let ours = |head: &str| {
        gh.fake.pulls_for(head).into_iter().filter(|p| p["head"]["repo"]["full_name"] == REPO).collect::<Vec<_>>()
    };
    assert_eq!(ours(LONGHORN).len(), 1, "the fork's closed PR refuses nothing");
    assert_eq!(ours(CERT_MANAGER).len(), 1, "upkeep opens its own PR beside the fork's");
    let fork = gh.fake.pulls_for(CERT_MANAGER).into_iter().find(|p| p["head"]["repo"]["full_name"] != REPO).unwrap();
    assert_eq!(fork["body"], "not an upkeep PR", "the fork's PR is left untouched");
}

#[test]
fn a_create_that_github_completed_but_answered_502_is_not_duplicated() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    gh.fake.fault(Fault {
        method: "POST",
        path_contains: "/pulls",
        response: ResponseTemplate::new(502).set_body_string("Bad Gateway"),
        processed: true,
    });
    let first = run_github(&sb, &gh, &remote, &[]);
    let text = all_output(&first);
    assert!(text.contains(&format!("error: {CERT_MANAGER}: github: POST pulls: HTTP 502")), "{text}");
    // upkeep says it once, with the update it concerns: no bare line from octocrab's tracing.
    assert!(!text.contains("failed with status"), "{text}");
    assert_eq!(gh.fake.pulls_for(CERT_MANAGER).len(), 1, "upkeep did not retry the POST");
    let second = run_github(&sb, &gh, &remote, &[]);
    assert!(second.status.success(), "{}", all_output(&second));
    assert_eq!(gh.fake.pulls_for(CERT_MANAGER).len(), 1, "the next run found it by head branch");
    assert!(!stdout(&second).contains("error:"), "{}", stdout(&second));
    assert_converged(&gh, &sb, &remote);
}

#[test]
fn a_long_secondary_rate_limit_stops_the_run_with_a_clear_message() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    gh.fake.fault(Fault {
        method: "GET",
        path_contains: "/pulls",
        response: ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
        })),
        processed: false,
    });
    let out = run_github(&sb, &gh, &remote, &[("UPKEEP_MAX_WAIT_SECONDS", "1")]);
    assert!(!out.status.success());
    let text = all_output(&out);
    assert!(
        text.contains("rate limited (HTTP 403); GitHub asks to wait 60s") && text.contains("run again later"),
        "{text}"
    );
    assert!(gh.fake.writes().is_empty() && sb.branches().is_empty(), "nothing half-written");
}

#[test]
fn a_secondary_limit_mid_run_is_waited_out_or_fails_only_that_update() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    // A PR creation meets a secondary limit that asks for one second: upkeep waits and goes on.
    let limited = || Fault {
        method: "POST",
        path_contains: "/pulls",
        response: ResponseTemplate::new(403).insert_header("retry-after", "1").set_body_json(serde_json::json!({
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        })),
        processed: false,
    };
    gh.fake.fault(limited());
    let out = run_github(&sb, &gh, &remote, &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    assert_eq!(gh.fake.writes().iter().filter(|w| *w == "POST /pulls").count(), 4, "every PR opened after the wait");

    // Past the cap, only the update that met the limit fails; the run says so and exits 1.
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    let mut fault = limited();
    fault.response = ResponseTemplate::new(403)
        .insert_header("retry-after", "120")
        .set_body_json(serde_json::json!({"message": "You have exceeded a secondary rate limit."}));
    gh.fake.fault(fault);
    let out = run_github(&sb, &gh, &remote, &[("UPKEEP_MAX_WAIT_SECONDS", "5")]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("error: {CERT_MANAGER}: github: POST /repos/home-ops/cluster/pulls: rate limited")),
        "{text}"
    );
    assert!(text.contains("run again later"), "{text}");
    assert_eq!(gh.fake.writes().iter().filter(|w| *w == "POST /pulls").count(), 3, "the other three PRs opened");
    assert!(gh.fake.dashboard().unwrap()["body"].as_str().unwrap().contains(CERT_MANAGER), "the dashboard lists it");
    // Once the limit has passed, the next run converges: one PR per branch, every branch pushed.
    let again = run_github(&sb, &gh, &remote, &[]);
    assert!(again.status.success(), "{}", all_output(&again));
    assert_converged(&gh, &sb, &remote);
}

/// One open PR per upkeep branch, and the remote holds exactly the branches upkeep wrote.
fn assert_converged(gh: &Github, sb: &Sandbox, remote: &str) {
    let pushed = git2::Repository::open_bare(remote).unwrap();
    let branches = sb.branches();
    assert_eq!(branches.len(), 4);
    for (name, tip) in &branches {
        assert_eq!(gh.fake.pulls_for(name).len(), 1, "{name}");
        assert_eq!(pushed.refname_to_id(&format!("refs/heads/{name}")).unwrap(), *tip, "{name}");
    }
}

#[test]
fn an_auto_merge_graphql_error_is_reported_not_swallowed() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    gh.fake.fault(Fault {
        method: "POST",
        path_contains: "/graphql",
        response: ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "data": {"enablePullRequestAutoMerge": null},
            "errors": [{"type": "UNPROCESSABLE", "message": "Pull request Auto merge is not allowed for this repository"}]
        })),
        processed: false,
    });
    let out = run_github(&sb, &gh, &remote, &[]);
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("could not enable auto-merge on #100: Pull request Auto merge is not allowed"), "{text}");
}

#[test]
fn a_repository_without_issues_still_gets_its_prs_and_the_report() {
    let gh = Github::start();
    let (sb, remote) = sandbox(&gh);
    gh.fake.fault(Fault {
        method: "POST",
        path_contains: "/issues$",
        response: ResponseTemplate::new(410).set_body_json(serde_json::json!({
            "message": "Issues are disabled for this repo",
            "documentation_url": "https://docs.github.com/v3/issues/"
        })),
        processed: false,
    });
    let out = run_github(&sb, &gh, &remote, &[]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PRs opened: upkeep/"), "the report is printed: {text}");
    assert!(
        text.contains(
            "error: dependency dashboard: github: POST /repos/home-ops/cluster/issues: HTTP 410: Issues are disabled"
        ),
        "{text}"
    );
    assert_converged(&gh, &sb, &remote);
}

#[test]
fn already_exists_is_treated_as_found() {
    let gh = Github::start();
    let forge = gh.forge();
    let first = forge.create(&new_pr("upkeep/a", &[])).unwrap();
    // A stale search misses the open PR, so upkeep POSTs and GitHub answers 422.
    gh.fake.fault(Fault {
        method: "GET",
        path_contains: "/pulls",
        response: ResponseTemplate::new(200).set_body_json(serde_json::json!([])),
        processed: false,
    });
    let again = forge.create(&new_pr("upkeep/a", &[])).unwrap();
    assert_eq!(again.number, first.number);
    assert_eq!(gh.fake.pulls_for("upkeep/a").len(), 1);
    assert_eq!(gh.fake.writes().iter().filter(|w| *w == "POST /pulls").count(), 2, "the 422 happened");
}

/// GitHub's primary rate limit on listing PRs: none left, reset `seconds` from now.
fn primary_limit(seconds: i64) -> Fault {
    let reset = (jiff::Timestamp::now().as_second() + seconds).to_string();
    Fault {
        method: "GET",
        path_contains: "/pulls",
        response: ResponseTemplate::new(403)
            .insert_header("x-ratelimit-remaining", "0")
            .insert_header("x-ratelimit-reset", reset.as_str())
            .set_body_json(serde_json::json!({"message": "API rate limit exceeded for installation ID 1."})),
        processed: false,
    }
}

#[test]
fn retry_after_and_the_rate_limit_reset_are_waited_out() {
    let gh = Github::start();
    let forge = gh.forge();
    forge.create(&new_pr("upkeep/a", &[])).unwrap();
    gh.fake.fault(Fault {
        method: "GET",
        path_contains: "/pulls",
        response: ResponseTemplate::new(429).insert_header("retry-after", "1"),
        processed: false,
    });
    gh.fake.fault(primary_limit(1));
    let before = gh.fake.requests().len();
    let prs = forge.upkeep_prs().unwrap();
    assert_eq!(prs.len(), 1);
    assert_eq!(gh.fake.requests().len() - before, 4, "two limits waited out, then the open and the recent lists");

    // A reset an hour away is past the cap: a clear error, at once.
    gh.fake.fault(primary_limit(3600));
    let err = forge.upkeep_prs().unwrap_err().to_string();
    assert!(err.contains("rate limited (HTTP 403)") && err.contains("run again later"), "{err}");
}

#[test]
fn permission_errors_name_the_missing_permission_and_never_the_token() {
    let gh = Github::start();
    let forge = gh.forge();
    let cases = [
        ("GET", "/pulls", 401, "Bad credentials", "GITHUB_TOKEN is missing, invalid or expired"),
        ("GET", "/pulls", 404, "Not Found", "check GITHUB_REPOSITORY"),
        ("POST", "/pulls", 403, "Resource not accessible by integration", "`pull-requests: write`"),
    ];
    for (method, path, status, message, hint) in cases {
        gh.fake.fault(Fault {
            method,
            path_contains: path,
            response: ResponseTemplate::new(status).set_body_json(serde_json::json!({"message": message})),
            processed: false,
        });
        let err = forge.create(&new_pr("upkeep/b", &["deps"])).unwrap_err().to_string();
        assert!(err.contains(hint) && err.contains(message), "{status}: {err}");
        assert!(!err.contains(TOKEN));
    }
    gh.fake.fault(Fault {
        method: "POST",
        path_contains: "/labels",
        response: ResponseTemplate::new(403)
            .set_body_json(serde_json::json!({"message": "Resource not accessible by integration"})),
        processed: false,
    });
    let err = forge.create(&new_pr("upkeep/b", &["deps"])).unwrap_err().to_string();
    assert!(err.contains("`issues: write`"), "{err}");
    // The PR exists without its label; updating it (as the next run does) puts the label on.
    let pr = forge.upkeep_prs().unwrap().into_iter().find(|p| p.head == "upkeep/b").unwrap();
    assert!(pr.labels.is_empty() && pr.state == PrState::Open);
    forge.update(pr.number, &pr.title, &pr.body, &["deps".to_string()]).unwrap();
    assert_eq!(gh.fake.pulls_for("upkeep/b")[0]["labels"][0]["name"], "deps");
}

#[test]
fn every_page_of_pull_requests_is_read() {
    let gh = Github::start();
    let forge = gh.forge();
    for i in 0..7 {
        forge.create(&new_pr(&format!("upkeep/p{i}"), &[])).unwrap();
    }
    forge.create(&new_pr("feature/not-ours", &[])).unwrap();
    gh.fake.state.lock().unwrap().page_size = Some(3);
    let prs = forge.upkeep_prs().unwrap();
    assert_eq!(prs.len(), 7, "three pages, the human branch left out");
    assert!(gh.fake.requests().iter().any(|r| r.contains("page=3")));

    // A `next` link to another host would carry the token there: upkeep refuses.
    gh.fake.fault(Fault {
        method: "GET",
        path_contains: "/pulls",
        response: ResponseTemplate::new(200)
            .set_body_json(serde_json::json!([]))
            .insert_header("link", "<http://127.0.0.1:9/steal?page=2>; rel=\"next\""),
        processed: false,
    });
    let err = forge.upkeep_prs().unwrap_err().to_string();
    assert!(err.contains("refusing to send the token there"), "{err}");
}

/// Busy repositories have thousands of PRs: an old open upkeep PR past the newest 2,000 is still
/// seen (open PRs are listed whole), so it is neither opened again nor left unclosed.
#[test]
fn an_old_open_pr_beyond_the_recent_window_is_still_seen() {
    let gh = Github::start();
    let forge = gh.forge();
    let old = forge.create(&new_pr("upkeep/old-group", &[])).unwrap();
    for i in 0..44 {
        let pr = forge.create(&new_pr(&format!("feature/{i}"), &[])).unwrap();
        forge.close(pr.number, "done").unwrap();
    }
    gh.fake.state.lock().unwrap().page_size = Some(2); // 20 pages of 2: the old PR is past them
    let prs = forge.upkeep_prs().unwrap();
    assert!(prs.iter().any(|p| p.number == old.number && p.state == PrState::Open), "{prs:?}");
}

#[test]
fn the_dashboard_issue_is_edited_in_place_and_left_alone_when_unchanged() {
    let gh = Github::start();
    let forge = gh.forge();
    forge.dashboard("upkeep dependency dashboard", "one").unwrap();
    forge.dashboard("upkeep dependency dashboard", "one").unwrap();
    // Someone opens an issue with the same title, even copying the marker: it is not the dashboard.
    gh.fake.foreign_issue("upkeep dependency dashboard", "pwned\n<!-- upkeep-dashboard -->\n", "open");
    forge.dashboard("upkeep dependency dashboard", "two").unwrap();
    let writes = gh.fake.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    let issues = gh.fake.state.lock().unwrap().issues.clone();
    assert!(issues[0]["body"].as_str().unwrap().starts_with("two\n"), "{issues:?}");
    assert!(issues[1]["body"].as_str().unwrap().starts_with("pwned"), "the newer look-alike is untouched");
    assert_eq!(forge.writes(), 2);
}

#[test]
fn closing_comments_and_reading_comments_go_through_the_issues_api() {
    let gh = Github::start();
    let forge = gh.forge();
    let pr = forge.create(&new_pr("upkeep/old-group", &[])).unwrap();
    forge.comment(pr.number, "upkeep did not update this branch").unwrap();
    assert_eq!(forge.comments(pr.number).unwrap(), ["upkeep did not update this branch"]);
    forge.close(pr.number, "Superseded, closing: moved into upkeep/web").unwrap();
    let stored = &gh.fake.pulls_for("upkeep/old-group")[0];
    assert_eq!(stored["state"], "closed");
    assert!(stored["merged_at"].is_null(), "closed, not merged");
    assert_eq!(
        forge.comments(pr.number).unwrap().last().map(String::as_str),
        Some("Superseded, closing: moved into upkeep/web")
    );
    let listed = forge.upkeep_prs().unwrap();
    assert_eq!(listed[0].state, PrState::Closed);
    assert!(listed[0].closed_at.is_some());
}

const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

/// Flux's notification-controller posts one status per Kustomization on the commits it applies.
fn flux_statuses(gh: &Github, count: usize) {
    // Newest first, as GitHub lists them: the highest `n` is the latest.
    let statuses = (1..=count)
        .rev()
        .map(|n| {
            commit_status(
                &format!("kustomization/app{n}/0c9c2e41"),
                "success",
                "Applied revision: main@sha1:6dcb09b5",
                n,
            )
        })
        .collect();
    gh.fake.state.lock().unwrap().statuses.insert(SHA.to_string(), statuses);
}

#[test]
fn commit_statuses_are_read_from_every_page_newest_first() {
    let gh = Github::start();
    flux_statuses(&gh, 5);
    gh.fake.state.lock().unwrap().page_size = Some(2);
    let statuses = gh.forge().statuses(SHA).unwrap();
    let contexts: Vec<&str> = statuses.iter().map(|s| s.context.as_str()).collect();
    assert_eq!(contexts.len(), 5, "three pages read: {contexts:?}");
    assert_eq!(contexts[0], "kustomization/app5/0c9c2e41", "newest first");
    assert_eq!(contexts[4], "kustomization/app1/0c9c2e41");
    assert!(gh.fake.requests().iter().any(|r| r.contains(&format!("/commits/{SHA}/statuses")) && r.contains("page=3")));
    let newest = &statuses[0];
    assert_eq!(newest.state, StatusState::Success);
    assert_eq!(newest.description, "Applied revision: main@sha1:6dcb09b5");
    assert_eq!(
        newest.target_url.as_deref(),
        Some("https://ci.example.com/1000/output"),
        "the recorded payload's field"
    );
    assert!(newest.created_at.unwrap() > statuses[1].created_at.unwrap());
}

fn verify(state: StatusState, description: &str) -> CommitStatus {
    CommitStatus {
        context: "upkeep/verify".into(),
        state,
        description: description.into(),
        target_url: Some("https://github.com/home-ops/cluster/pull/7".into()),
        created_at: None,
    }
}

#[test]
fn a_commit_status_is_posted_only_when_it_says_something_new() {
    let gh = Github::start();
    flux_statuses(&gh, 3);
    let forge = gh.forge();
    forge.set_status(SHA, &verify(StatusState::Pending, "waiting for Flux")).unwrap();
    forge.set_status(SHA, &verify(StatusState::Pending, "waiting for Flux")).unwrap();
    assert_eq!(gh.fake.writes(), [format!("POST /statuses/{SHA}")], "the second pass writes nothing");
    forge.set_status(SHA, &verify(StatusState::Pending, "soaking: 4 of 10 minutes")).unwrap();
    forge.set_status(SHA, &verify(StatusState::Success, "healthy after 10 minutes")).unwrap();
    // Pending again, as it was two statuses ago: only the newest of the context counts.
    forge.set_status(SHA, &verify(StatusState::Pending, "waiting for Flux")).unwrap();
    assert_eq!(gh.fake.writes().len(), 4, "{:?}", gh.fake.writes());
    assert_eq!(forge.writes(), 4);
    let posted = gh.fake.statuses(SHA);
    assert_eq!(posted[0]["context"], "upkeep/verify");
    assert_eq!(posted[0]["state"], "pending");
    assert_eq!(posted[1]["state"], "success");
    assert_eq!(posted[1]["target_url"], "https://github.com/home-ops/cluster/pull/7");
    // GitHub refuses descriptions over 140 characters: upkeep cuts them, and still sees them as unchanged.
    let long = "x".repeat(200);
    forge.set_status(SHA, &verify(StatusState::Failure, &long)).unwrap();
    forge.set_status(SHA, &verify(StatusState::Failure, &long)).unwrap();
    assert_eq!(gh.fake.statuses(SHA)[0]["description"].as_str().unwrap().len(), 140);
    assert_eq!(forge.writes(), 5);
}

const FIX_MARKER: &str = "<!-- upkeep-forward-fix: helmrelease/longhorn-system/longhorn 1.6.0 -->";

#[test]
fn a_forward_fix_issue_is_opened_once_even_when_github_answered_502_after_doing_it() {
    let gh = Github::start();
    let forge = gh.forge();
    gh.fake.fault(Fault {
        method: "POST",
        path_contains: "/issues$",
        response: ResponseTemplate::new(502).set_body_string("Bad Gateway"),
        processed: true,
    });
    let body = format!("Longhorn 1.6.0 failed verification; it cannot be downgraded.\n{FIX_MARKER}\n");
    let labels = vec!["upkeep".to_string(), "forward-fix".to_string()];
    let issue = forge.open_issue("Forward fix needed: longhorn 1.6.0", &body, &labels, FIX_MARKER).unwrap();
    assert_eq!(gh.fake.state.lock().unwrap().issues.len(), 1, "one issue, though the create answered 502");
    assert!(issue.open && issue.title == "Forward fix needed: longhorn 1.6.0", "{issue:?}");
    let stored = gh.fake.state.lock().unwrap().issues[0].clone();
    assert_eq!(stored["labels"][1]["name"], "forward-fix");
    assert_eq!(issue.url, stored["html_url"].as_str().unwrap());

    let writes = gh.fake.writes();
    let again = forge.open_issue("Forward fix needed: longhorn 1.6.0", &body, &labels, FIX_MARKER).unwrap();
    assert_eq!(again, issue);
    assert_eq!(gh.fake.writes(), writes, "the second pass writes nothing");
    assert_eq!(gh.fake.writes().iter().filter(|w| *w == "POST /issues").count(), 1, "the POST was not retried");
}

#[test]
fn a_closed_forward_fix_issue_on_a_later_page_is_found_not_opened_again() {
    let gh = Github::start();
    for i in 0..5 {
        gh.fake.foreign_issue(&format!("unrelated {i}"), "nothing to see", "open");
    }
    // A maintainer fixed it and closed the issue; the marker still says what it was about.
    let closed = gh.fake.foreign_issue("Forward fix needed: longhorn 1.6.0", &format!("done\n{FIX_MARKER}"), "closed");
    gh.fake.state.lock().unwrap().page_size = Some(2);
    let issue = gh.forge().open_issue("Forward fix needed", "body", &[], FIX_MARKER).unwrap();
    assert_eq!(issue.number, closed);
    assert!(!issue.open);
    assert!(gh.fake.writes().is_empty(), "{:?}", gh.fake.writes());
    assert!(
        gh.fake.requests().iter().any(|r| r.contains("/issues?") && r.contains("state=all") && r.contains("page=3"))
    );
}

/// GitHub's recorded answer for the documented merged PR (octocat/Hello-World#1347).
fn documented_merged_pr() -> serde_json::Value {
    let text = std::fs::read_to_string(super::util::fixture("github/commit-pulls.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
}

#[test]
fn the_pr_for_a_commit_is_the_merged_one_whose_merge_commit_it_is() {
    let gh = Github::start();
    let forge = gh.forge();
    let documented = documented_merged_pr();
    // The recorded payload read as is: merged, with its merge commit.
    gh.fake.associate("e5bd3914e2e596debea16f433f57875b5b90bcd6", vec![documented.clone()]);
    let pr = forge.pr_for_commit("e5bd3914e2e596debea16f433f57875b5b90bcd6").unwrap().unwrap();
    assert_eq!((pr.number, pr.head.as_str(), pr.base.as_str()), (1347, "new-topic", "master"));
    assert_eq!(pr.state, PrState::Merged);
    assert_eq!(pr.merge_commit.as_deref(), Some("e5bd3914e2e596debea16f433f57875b5b90bcd6"));
    assert_eq!(pr.labels, ["bug"]);

    // An open PR that contains the commit, another merged PR, then the one it merged, on three pages.
    let mut open = template();
    open["number"] = serde_json::json!(7);
    let mut ours = documented.clone();
    ours["number"] = serde_json::json!(8);
    ours["head"]["ref"] = serde_json::json!("upkeep/longhorn");
    ours["merge_commit_sha"] = serde_json::json!(SHA);
    gh.fake.associate(SHA, vec![open.clone(), documented, ours]);
    gh.fake.state.lock().unwrap().page_size = Some(1);
    let pr = forge.pr_for_commit(SHA).unwrap().unwrap();
    assert_eq!((pr.number, pr.head.as_str()), (8, "upkeep/longhorn"), "the exact merge wins over any merged one");
    assert_eq!(pr.merge_commit.as_deref(), Some(SHA));

    gh.fake.associate("0000000000000000000000000000000000000000", vec![open]);
    assert_eq!(
        forge.pr_for_commit("0000000000000000000000000000000000000000").unwrap(),
        None,
        "unmerged PRs are not it"
    );
    assert_eq!(forge.pr_for_commit("1111111111111111111111111111111111111111").unwrap(), None);
}

/// octocrab's own retry layer is off: a read that met a 502 is retried by upkeep's loop (once
/// here), and a write that met one is sent once and reported, never repeated behind its back.
#[test]
fn reads_are_retried_after_a_502_and_writes_are_not() {
    let gh = Github::start();
    let forge = gh.forge();
    let pr = forge.create(&new_pr("upkeep/a", &[])).unwrap();
    let bad_gateway = |method| Fault {
        method,
        path_contains: "/comments",
        response: ResponseTemplate::new(502).set_body_string("Bad Gateway"),
        processed: false,
    };
    gh.fake.fault(bad_gateway("POST"));
    let err = forge.comment(pr.number, "verified").unwrap_err().to_string();
    assert!(err.contains(&format!("POST /repos/{REPO}/issues/{}/comments: HTTP 502", pr.number)), "{err}");
    let posts =
        |gh: &Github| gh.fake.requests().iter().filter(|r| r.starts_with("POST") && r.ends_with("/comments")).count();
    assert_eq!(posts(&gh), 1, "the comment was not sent again");
    assert!(forge.comments(pr.number).unwrap().is_empty());

    gh.fake.fault(bad_gateway("GET"));
    forge.comment(pr.number, "verified").unwrap();
    let before = gh.fake.requests().len();
    assert_eq!(forge.comments(pr.number).unwrap(), ["verified"]);
    assert_eq!(gh.fake.requests().len() - before, 2, "one 502, one retry");
}
