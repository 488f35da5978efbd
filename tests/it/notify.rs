//! Webhook notifications (`notify:`) end to end: the upkeep binary verifies a merge whose
//! upgrade fails against the loopback fake Kubernetes API, and posts to a real HTTP server on
//! loopback (wiremock) that fails first. One event per failure arrives, in the configured shape;
//! the URL, a secret, appears in no output; a second pass sends nothing; a dead webhook changes
//! neither the verdict nor the exit code, and the next pass delivers what it owed.

use std::path::Path;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::run::Sandbox;
use super::verify_scenarios::{NGINX_ID, forge_files, merged_then_upgrade_fails, note, only};
use super::verify_support::{local_pr, text, upkeep_blocking};

const VAR: &str = "UPKEEP_TEST_WEBHOOK";
/// The path carries the secret, as a Slack webhook URL's does.
const HOOK_PATH: &str = "/services/T000/B000/s3cr3t-t0ken";

/// A webhook that answers `first` once, then `then`.
async fn webhook(first: u16, then: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(first))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(then))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

/// A config with `notify:` beside the repository (not in it: the work tree stays clean).
fn config(sb: &Sandbox, format: &str) -> String {
    let file = sb.root.join(format!("notify-{format}.yaml"));
    std::fs::write(&file, format!("notify:\n  urlEnv: {VAR}\n  format: {format}\n")).unwrap();
    file.display().to_string()
}

/// `upkeep verify` with the webhook URL in the environment; the output and its JSON report.
async fn verify(
    sb: &Sandbox,
    kubeconfig: &Path,
    config: &str,
    url: &str,
    env: &[(&str, &str)],
) -> (std::process::Output, Value) {
    let args: Vec<String> = [
        "verify",
        ".",
        "--format",
        "json",
        "--timeout",
        "6s",
        "--soak",
        "2s",
        "--config",
        config,
        "--kubeconfig",
        &kubeconfig.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push((VAR.into(), url.into()));
    let (root, repo) = (sb.root.clone(), sb.repo.clone());
    let out = upkeep_blocking(&root, &repo, args, env).await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(&out)));
    (out, json)
}

/// The bodies the webhook received, with the status each was answered.
async fn received(server: &MockServer) -> Vec<Value> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

fn url(server: &MockServer) -> String {
    format!("{}{HOOK_PATH}", server.uri())
}

fn assert_no_secret(out: &std::process::Output) {
    let all = text(out);
    assert!(!all.contains("s3cr3t"), "the webhook URL leaked: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_sends_one_json_event_even_when_the_webhook_first_answers_500() {
    let sb = Sandbox::example();
    let hook = webhook(500, 200).await;
    let (m, new, cluster) = merged_then_upgrade_fails(&sb).await;
    let config = config(&sb, "json");
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &config, &url(&hook), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_no_secret(&out);
    let v = only(&report);
    assert_eq!((v["verdict"].as_str(), v["action"].as_str()), (Some("failure"), Some("revert")), "{v}");

    // The 500 was retried: two deliveries of one event, the second taken.
    let bodies = received(&hook).await;
    assert_eq!(bodies.len(), 2, "one 500, one 200: {bodies:?}");
    assert_eq!(bodies[0], bodies[1], "the retry carries the same event");
    let e = &bodies[1];
    let (number, _) = local_pr(&sb.repo, v["branch"].as_str().unwrap());
    assert_eq!(e["schema"], "upkeep.notification/v1");
    assert_eq!(e["id"], format!("{m}/revert"));
    assert_eq!(e["event"], "revert");
    assert_eq!(e["commit"], m.to_string());
    assert_eq!(e["verdict"], "failure");
    assert_eq!(e["action"], "revert");
    assert_eq!(e["reason"], v["reason"]);
    assert_eq!(e["updates"][0]["id"], NGINX_ID);
    assert_eq!(e["updates"][0]["from"], "4.10.0");
    assert_eq!(e["updates"][0]["to"], new.as_str());
    assert_eq!(e["branch"], v["branch"]);
    assert_eq!(e["pr"], number.to_string());
    assert_eq!(e["links"]["pr"], format!(".upkeep/prs/{number}.md"));
    assert_eq!(e["links"]["merge"], Value::Null, "the local forge has no web page");
    assert!(e["evidence"].to_string().contains("UpgradeFailed"), "{e}");
    assert_eq!(e["evidence_omitted"], 0);
    assert!(e["decided_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");

    // Delivery is recorded in the verdict note; a second pass sends nothing.
    let recorded = note(&sb, m).unwrap();
    assert!(recorded["notified"].is_string(), "{recorded}");
    for (file, content) in forge_files(&sb) {
        assert!(!content.contains("s3cr3t"), "the webhook URL is in {file}");
    }
    assert!(!recorded.to_string().contains("s3cr3t"));
    let (out, again) = verify(&sb, &cluster.kubeconfig(), &config, &url(&hook), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&again)["verdict"], "failure");
    assert_eq!(received(&hook).await.len(), 2, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_webhook_gets_text_and_blocks_naming_the_update_and_the_revert() {
    let sb = Sandbox::example();
    let hook = webhook(200, 200).await;
    let (m, new, cluster) = merged_then_upgrade_fails(&sb).await;
    let config = config(&sb, "slack");
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &config, &url(&hook), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_no_secret(&out);
    let (number, _) = local_pr(&sb.repo, only(&report)["branch"].as_str().unwrap());
    let bodies = received(&hook).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let slack = &bodies[0];
    assert_eq!(
        slack["text"],
        format!("upkeep: ingress-nginx 4.10.0 → {new} failed verification; upkeep opened revert PR #{number}")
    );
    let blocks = slack["blocks"].as_array().unwrap();
    assert_eq!(
        blocks.iter().map(|b| b["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["section", "section", "context"]
    );
    assert!(blocks[0]["text"]["text"].as_str().unwrap().starts_with("*upkeep: ingress-nginx"), "{slack}");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert!(blocks[1]["text"]["text"].as_str().unwrap().contains("`HelmRelease/ingress-nginx/ingress-nginx`"));
    let context = blocks[2]["elements"][0]["text"].as_str().unwrap();
    assert!(context.contains(&format!("merge `{}`", &m.to_string()[..12])), "{context}");
    assert!(context.contains(&format!("revert PR `.upkeep/prs/{number}.md`")), "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_changes_no_verdict_and_the_next_pass_delivers() {
    let sb = Sandbox::example();
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&hook).await;
    let (m, _, cluster) = merged_then_upgrade_fails(&sb).await;
    let config = config(&sb, "json");
    let fast = [("UPKEEP_HTTP_RETRIES", "1")];
    let (out, report) = verify(&sb, &cluster.kubeconfig(), &config, &url(&hook), &fast).await;
    assert_eq!(out.status.code(), Some(3), "still 3 for a failure: {}", text(&out));
    assert_no_secret(&out);
    let v = only(&report);
    assert_eq!((v["verdict"].as_str(), v["action"].as_str()), (Some("failure"), Some("revert")), "{v}");
    assert!(sb.branches().contains_key(v["branch"].as_str().unwrap()), "the revert was opened first");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("notify: the webhook in {VAR} did not take the event for {}", &m.to_string()[..12]))
            && stderr.contains("server error (503) (gave up after 2 attempts)"),
        "{stderr}"
    );
    assert_eq!(received(&hook).await.len(), 2, "tried, retried once, given up");
    let recorded = note(&sb, m).unwrap();
    assert_eq!(recorded["verdict"], "failure");
    assert!(recorded.get("notified").is_none(), "still owed: {recorded}");

    // The webhook comes back: the next pass sends what was owed, once.
    hook.reset().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let (out, _) = verify(&sb, &cluster.kubeconfig(), &config, &url(&hook), &fast).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let bodies = received(&hook).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["commit"], m.to_string());
    assert!(note(&sb, m).unwrap()["notified"].is_string());
}

#[test]
fn the_url_never_goes_in_the_file_and_the_variable_must_be_a_name() {
    let dir = Path::new(".");
    let e = upkeep::config::parse("notify:\n  urlEnv: HOOK\n  url: https://hooks.slack.com/x\n", dir, "upkeep.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("upkeep.yaml: line 3") && e.contains("does not go in the file"), "{e}");
    let e = upkeep::config::parse("notify:\n  urlEnv: https://hooks.slack.com/x\n", dir, "upkeep.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("is not an environment variable name"), "{e}");
    let e = upkeep::config::parse("notify:\n  urlEnv: HOOK\n  on: [success]\n", dir, "upkeep.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("success"), "{e}");
    let c = upkeep::config::parse("notify:\n  urlEnv: HOOK\n", dir, "upkeep.yaml").unwrap();
    let n = c.notify.unwrap();
    assert_eq!(n.on.len(), 3, "every failure by default");
    assert_eq!(n.format, upkeep::verify::notify::Format::Json);
}
