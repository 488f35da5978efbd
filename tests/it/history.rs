//! `upkeep history` over a scripted history in a real git repository: the bundled example's
//! four upkeep PRs merged the way GitHub merges them — cert-manager ten days ago (past the
//! horizon, never verified), ingress-nginx failed (its verdict note written in the note format,
//! its revert opened by `upkeep revert` and merged), Longhorn verified (only its `upkeep/verify`
//! status on the local forge says so), k3s just merged (pending). Every update, verdict and
//! revert must be listed, in the table, the JSON (field by field) and Markdown (snapshot), and
//! the dashboard's "Recently verified" must show the two verdicts.

use serde_json::{Value, json};

use super::run::Sandbox;
use super::verify_support::{local_pr, text, upkeep, upkeep_in};
use super::verify_watch::merge_as;

const CERT: &str = "upkeep/helmrelease-cert-manager-cert-manager";
const NGINX: &str = "upkeep/helmrelease-ingress-nginx-ingress-nginx";
const LONGHORN: &str = "upkeep/helmrelease-longhorn-system-longhorn";
const K3S: &str = "upkeep/k3s-clusters-home";

/// Merge `branch` into main with a real three-way merge commit dated `when` (Unix seconds),
/// and mark its local PR merged, as GitHub would.
fn merge_pr(sb: &Sandbox, branch: &str, when: i64) -> git2::Oid {
    let (number, mut pr) = local_pr(&sb.repo, branch);
    let sig = git2::Signature::new("Maintainer", "maintainer@example.com", &git2::Time::new(when, 0)).unwrap();
    let message = format!("Merge pull request #{number} from example/{branch}\n\n{}\n", pr["title"].as_str().unwrap());
    let merged = merge_as(sb, branch, &sig, &message);
    pr["state"] = "merged".into();
    pr["merge_commit"] = merged.to_string().into();
    std::fs::write(sb.repo.join(format!(".upkeep/prs/{number}.json")), pr.to_string()).unwrap();
    merged
}

/// The `Upkeep-Update` trailers of a branch's tip: `(id, from, to)`.
fn updates(sb: &Sandbox, branch: &str) -> Vec<(String, String, String)> {
    let git = sb.git();
    let tip = git.find_commit(git.refname_to_id(&format!("refs/heads/{branch}")).unwrap()).unwrap();
    let message = tip.message().unwrap().to_string();
    message
        .lines()
        .filter_map(|l| l.strip_prefix("Upkeep-Update: "))
        .map(|t| {
            let (id, rest) = t.split_once(' ').unwrap();
            let (from, to) = rest.split_once(" -> ").unwrap();
            (id.to_string(), from.to_string(), to.to_string())
        })
        .collect()
}

/// What history must say of one upkeep merge.
struct Expected {
    merge: git2::Oid,
    updates: Vec<(String, String, String)>,
    verdict: &'static str,
    action: &'static str,
    pr: Value,
    reverted_in: Value,
    source: &'static str,
}

impl Expected {
    fn new(
        merge: git2::Oid,
        updates: Vec<(String, String, String)>,
        verdict: &'static str,
        source: &'static str,
    ) -> Self {
        Expected { merge, updates, verdict, action: "none", pr: Value::Null, reverted_in: Value::Null, source }
    }
}

struct Script {
    sb: Sandbox,
    /// Per upkeep merge, newest first.
    expected: Vec<Expected>,
    /// Every merge commit, for scrubbing: `(oid, placeholder)`.
    names: Vec<(git2::Oid, &'static str)>,
}

fn scripted() -> Script {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    let now = jiff::Timestamp::now().as_second();
    let (cert, nginx, longhorn, k3s) =
        (updates(&sb, CERT), updates(&sb, NGINX), updates(&sb, LONGHORN), updates(&sb, K3S));
    assert!(!k3s.is_empty() && nginx.len() == 1, "the example's PRs carry their trailers");

    let old = merge_pr(&sb, CERT, now - 10 * 86_400);
    let failed = merge_pr(&sb, NGINX, now - 400);
    // The verifier's revert, by the command a maintainer would use, then its verdict note.
    let out = upkeep(&sb, &["revert", &failed.to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let branch = format!("upkeep/revert-{}", &failed.to_string()[..12]);
    let (revert_pr, _) = local_pr(&sb.repo, &branch);
    let (id, from, to) = nginx[0].clone();
    let note = json!({
        "commit": failed.to_string(),
        "updates": [{"id": id, "name": "ingress-nginx", "from": from, "to": to}],
        "verdict": "failure",
        "reason": "HelmRelease/ingress-nginx/ingress-nginx Ready=False UpgradeFailed: context deadline exceeded",
        "evidence": [],
        "action": "revert",
        "branch": branch,
        "pr": revert_pr.to_string(),
        "decided_at": jiff::Timestamp::from_second(now - 300).unwrap().to_string(),
    });
    let git = sb.git();
    let sig = git2::Signature::now("upkeep", "upkeep@example.com").unwrap();
    git.note(&sig, &sig, Some("refs/notes/upkeep"), failed, &format!("{note:#}\n"), false).unwrap();
    let revert = merge_pr(&sb, &branch, now - 300);
    let verified = merge_pr(&sb, LONGHORN, now - 200);
    // Verified on the forge only: the checkout has no note for it.
    let statuses = sb.repo.join(".upkeep/statuses");
    std::fs::create_dir_all(&statuses).unwrap();
    let status = json!([{"context": "upkeep/verify", "state": "success",
        "description": "verified: HelmRelease/longhorn-system/longhorn Ready at the merge, healthy for 5m",
        "target_url": null, "created_at": null}]);
    std::fs::write(statuses.join(format!("{verified}.json")), status.to_string()).unwrap();
    let pending = merge_pr(&sb, K3S, now - 100);

    let pr = Value::String(revert_pr.to_string());
    let reverted = Expected {
        action: "revert",
        pr,
        reverted_in: Value::String(revert.to_string()),
        ..Expected::new(failed, nginx, "failure", "note")
    };
    let expected = vec![
        Expected::new(pending, k3s, "pending", "none"),
        Expected::new(verified, longhorn, "success", "status"),
        reverted,
        Expected::new(old, cert, "not-verified", "none"),
    ];
    let names = vec![
        (pending, "<k3s-merge>"),
        (verified, "<longhorn-merge>"),
        (revert, "<revert-merge>"),
        (failed, "<nginx-merge>"),
        (old, "<cert-merge>"),
    ];
    Script { sb, expected, names }
}

/// Merge ids and dates (they change every run) replaced by names.
fn scrub(script: &Script, text: &str) -> String {
    let git = script.sb.git();
    let mut text = text.to_string();
    for (oid, name) in &script.names {
        let full = oid.to_string();
        text = text.replace(&full, name).replace(&full[..12], name);
        let when = jiff::Timestamp::from_second(git.find_commit(*oid).unwrap().time().seconds()).unwrap();
        text = text.replace(&when.strftime("%Y-%m-%d %H:%M").to_string(), "<date>");
    }
    text
}

#[test]
fn history_lists_every_update_verdict_and_revert_of_a_scripted_history() {
    let script = scripted();
    let sb = &script.sb;

    let out = upkeep(sb, &["history", ".", "--format", "json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let lines = report["history"].as_array().unwrap();
    let want: usize = script.expected.iter().map(|e| e.updates.len()).sum();
    assert_eq!(lines.len(), want, "one line per update: {report:#}");
    let mut i = 0;
    for e in &script.expected {
        for (id, from, to) in &e.updates {
            let l = &lines[i];
            i += 1;
            assert_eq!(l["dependency"], id.as_str(), "{l}");
            assert_eq!(l["from"], from.as_str(), "{l}");
            assert_eq!(l["to"], to.as_str(), "{l}");
            assert_eq!(l["commit"], e.merge.to_string(), "{l}");
            assert_eq!(l["verdict"], e.verdict, "{l}");
            assert_eq!(l["action"], e.action, "{l}");
            assert_eq!(l["pr"], e.pr, "{l}");
            assert_eq!(l["reverted_in"], e.reverted_in, "{l}");
            assert_eq!(l["source"], e.source, "{l}");
            assert!(l["merged_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
            assert!(!l["reason"].as_str().unwrap().is_empty(), "{l}");
            let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "action",
                    "branch",
                    "commit",
                    "dependency",
                    "from",
                    "merged_at",
                    "name",
                    "pr",
                    "reason",
                    "reverted_in",
                    "source",
                    "to",
                    "verdict"
                ],
                "the documented fields, no more"
            );
        }
    }
    assert_eq!(lines[want - 2]["name"], "ingress-nginx");
    assert!(lines[want - 2]["branch"].as_str().unwrap().starts_with("upkeep/revert-"));

    let out = upkeep(sb, &["history", ".", "--format", "table"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(table.lines().count(), want + 1, "{table}");
    for e in &script.expected {
        let row = table.lines().find(|l| l.contains(&e.merge.to_string()[..12])).unwrap_or_else(|| panic!("{table}"));
        assert!(row.contains(&format!(" {} ", e.verdict)) || row.ends_with(e.verdict), "{row}");
        assert!(row.contains(&format!("{} → {}", e.updates[0].1, e.updates[0].2)), "{row}");
    }
    assert!(table.contains("revert PR #") && table.contains(", merged in "), "{table}");

    let out = upkeep(sb, &["history", ".", "--format", "markdown"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    insta::assert_snapshot!("history-markdown", scrub(&script, &String::from_utf8_lossy(&out.stdout)));
}

#[test]
fn the_dashboard_shows_the_recent_verdicts() {
    let script = scripted();
    let sb = &script.sb;
    sb.run(&[], &[]);
    let dashboard = std::fs::read_to_string(sb.repo.join(".upkeep/dashboard.md")).unwrap();
    let start = dashboard.find("## Recently verified").unwrap_or_else(|| panic!("{dashboard}"));
    let section: String =
        dashboard[start..].lines().take_while(|l| !l.starts_with("## Not")).collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!("dashboard-recently-verified", scrub(&script, section.trim_end()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_merge_without_a_note_takes_its_verdict_from_the_upkeep_verify_status() {
    use super::github_fake::{FakeGithub, commit_status};
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer};
    const REPO: &str = "home-ops/cluster";
    let script = tokio::task::spawn_blocking(scripted).await.unwrap();
    let fake = FakeGithub::new(REPO);
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(fake.clone()).mount(&server).await;
    // GitHub's recorded status payloads: the newest `upkeep/verify` wins over an older one,
    // and Flux's own statuses on the same commit are not upkeep's verdict.
    let (k3s, longhorn) = (script.expected[0].merge.to_string(), script.expected[1].merge.to_string());
    {
        let mut state = fake.state.lock().unwrap();
        state.statuses.insert(
            k3s.clone(),
            vec![
                commit_status("kustomization/flux-system/2c9c2e41", "success", "ReconciliationSucceeded", 3),
                commit_status("upkeep/verify", "failure", "failed: Plan/system-upgrade/k3s-server not Complete", 2),
                commit_status("upkeep/verify", "pending", "pending: not looked at yet", 1),
            ],
        );
        state
            .statuses
            .insert(longhorn.clone(), vec![commit_status("upkeep/verify", "success", "verified: healthy", 4)]);
    }
    let uri = server.uri();
    let (root, repo) = (script.sb.root.clone(), script.sb.repo.clone());
    let out = tokio::task::spawn_blocking(move || {
        let env = [("GITHUB_API_URL", uri.as_str()), ("GITHUB_TOKEN", "ghs_historytoken"), ("GITHUB_REPOSITORY", REPO)];
        upkeep_in(&root, &repo, &["history", ".", "--forge", "github", "--format", "json"], &env)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = report["history"].as_array().unwrap();
    let of = |commit: &str| lines.iter().filter(|l| l["commit"] == commit).cloned().collect::<Vec<_>>();
    for l in of(&k3s) {
        assert_eq!((l["verdict"].as_str(), l["source"].as_str()), (Some("failure"), Some("status")), "{l}");
        assert_eq!(l["reason"], "failed: Plan/system-upgrade/k3s-server not Complete");
    }
    let l = &of(&longhorn)[0];
    assert_eq!((l["verdict"].as_str(), l["source"].as_str()), (Some("success"), Some("status")), "{l}");
    // The note still wins where there is one: no status was asked for the failed merge.
    let failed = script.expected[2].merge.to_string();
    assert_eq!(of(&failed)[0]["source"], "note");
    let asked = fake.requests();
    assert!(asked.iter().any(|r| r.contains(&k3s)) && !asked.iter().any(|r| r.contains(&failed)), "{asked:?}");
    assert!(fake.writes().is_empty(), "history writes nothing: {:?}", fake.writes());
}
