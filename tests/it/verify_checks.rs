//! The user's own checks (`checks:` in the rules, issue 11 item 3) end to end: the bundled
//! example with a rule whose checks probe a REAL HTTP server (wiremock) and REAL TCP ports on
//! 127.0.0.1, an upkeep PR merged, the loopback fake Kubernetes API reconciling it, and the
//! upkeep binary deciding. A check failing during the soak brings a revert PR naming the check
//! and what it got; passing checks let the update succeed; a header read from the environment
//! reaches the server and appears in no output.

use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::run::{Sandbox, commit_all};
use super::verify_scenarios::{Cluster, NGINX_ID, forge_files, merged, note, only};
use super::verify_support::{MergeStyle, local_pr, text, upkeep_blocking};

/// The example with a rule on ingress-nginx carrying `checks` (YAML list items), the upkeep PR
/// merged, and a cluster that reconciles it at 0.8 s and upgrades the release at 1.5 s.
async fn merged_with_checks(checks: &str) -> (Sandbox, git2::Oid, Cluster) {
    let sb = Sandbox::example();
    let config = sb.repo.join("upkeep.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("rules:\n  - match: {{id: [\"{NGINX_ID}\"]}}\n    checks:\n{checks}"));
    std::fs::write(&config, text).unwrap();
    commit_all(&sb.git(), "checks for ingress-nginx", "Maintainer");
    let before = sb.main_tip();
    let (m, new) = merged(&sb, MergeStyle::MergeCommit);
    let cluster = Cluster::start(&before.to_string(), &new).await;
    cluster.applies(Duration::from_millis(800), &m.to_string());
    cluster.upgraded(Duration::from_millis(1500));
    cluster.fake.start_clock();
    (sb, m, cluster)
}

/// `upkeep verify` with short deadlines, as JSON, with `env`.
async fn verify(
    sb: &Sandbox,
    cluster: &Cluster,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (std::process::Output, Value) {
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let mut args: Vec<String> = ["verify", ".", "--format", "json", "--timeout", "6s", "--soak", "2s", "--kubeconfig"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(kubeconfig);
    args.extend(extra.iter().map(|s| s.to_string()));
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (root, repo) = (sb.root.clone(), sb.repo.clone());
    let out = upkeep_blocking(&root, &repo, args, env).await;
    // The report comes first; problems follow it as `error:` lines.
    let json = serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>().next();
    let json = json.and_then(Result::ok).unwrap_or_else(|| panic!("no JSON report: {}", text(&out)));
    (out, json)
}

/// The revert PR's body of a failed verification, after the common assertions on it.
fn revert_body(sb: &Sandbox, v: &Value) -> String {
    assert_eq!(v["verdict"], "failure", "{v}");
    assert_eq!(v["action"], "revert", "{v}");
    let branch = v["branch"].as_str().unwrap().to_string();
    let (number, _) = local_pr(&sb.repo, &branch);
    std::fs::read_to_string(sb.repo.join(format!(".upkeep/prs/{number}.md"))).unwrap()
}

/// A port on 127.0.0.1 nothing listens on: bound, then closed.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_answering_503_during_the_soak_brings_a_revert_naming_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/healthz")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let url = format!("{}/healthz", server.uri());
    let (sb, m, cluster) = merged_with_checks(&format!("      - http: {{url: \"{url}\", retries: 1}}\n")).await;
    let (out, report) = verify(&sb, &cluster, &[], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("check http GET {url} failed")) && reason.contains("503"), "{v}");
    let body = revert_body(&sb, v);
    assert!(body.contains(&format!("`http GET {url}`")), "the check and its URL: {body}");
    assert!(body.contains("| Check | 503 | CheckFailed |") && body.contains("2 attempts"), "{body}");
    assert!(body.contains("; upkeep.yaml:"), "where the check is written, in the repository: {body}");
    let port = server.address().port().to_string();
    let scrubbed = super::verify_scenarios::scrub_times(
        &body.replace(&m.to_string(), "<merge>").replace(&m.to_string()[..12], "<merge12>").replace(&port, "<port>"),
    );
    insta::assert_snapshot!("revert-body-http-check-503", scrubbed);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "one attempt and its one retry, then the verdict");
    // Probed only once reconciled: the note of the failure carries the check.
    assert_eq!(note(&sb, m).unwrap()["evidence"][0]["object"], format!("http GET {url}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tcp_check_brings_a_revert() {
    let address = format!("127.0.0.1:{}", closed_port());
    let (sb, _, cluster) = merged_with_checks(&format!("      - tcp: {{address: \"{address}\", timeout: 2s}}\n")).await;
    let (out, report) = verify(&sb, &cluster, &[], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    assert!(v["reason"].as_str().unwrap().contains(&format!("check tcp {address} failed: connection refused")), "{v}");
    let body = revert_body(&sb, v);
    assert!(body.contains(&format!("`tcp {address}`")) && body.contains("connection refused"), "{body}");
    assert!(body.contains("3 attempts"), "the default two retries: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_http_and_tcp_checks_let_the_update_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD")).and(path("/readyz")).respond_with(ResponseTemplate::new(204)).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .respond_with(ResponseTemplate::new(200).set_body_string("status: ok\n"))
        .mount(&server)
        .await;
    // A real listener: the kernel completes the handshake from its backlog.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let checks = format!(
        "      - http: {{url: \"{0}/healthz\", body: \"status: ok\"}}\n      - http: {{url: \"{0}/readyz\", method: HEAD, status: 204}}\n      - tcp: {{address: \"{address}\"}}\n",
        server.uri()
    );
    let (sb, m, cluster) = merged_with_checks(&checks).await;
    let (out, report) = verify(&sb, &cluster, &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "success", "{v}");
    let shown: Vec<(String, String)> = v["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["object"].as_str().unwrap().to_string(), format!("{} {}", r["status"], r["reason"])))
        .collect();
    let expected = [
        (format!("http GET {}/healthz", server.uri()), "\"200\" \"CheckPassed\"".to_string()),
        (format!("http HEAD {}/readyz", server.uri()), "\"204\" \"CheckPassed\"".to_string()),
        (format!("tcp {address}"), "\"connected\" \"CheckPassed\"".to_string()),
    ];
    assert_eq!(shown, expected, "the report shows what each check got at the end of the soak");
    assert_eq!(note(&sb, m).unwrap()["verdict"], "success");
    let requests = server.received_requests().await.unwrap();
    for (verb, p) in [("GET", "/healthz"), ("HEAD", "/readyz")] {
        assert!(requests.iter().any(|r| r.method.as_str() == verb && r.url.path() == p), "{verb} {p} was probed");
    }
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")), "no revert");
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_check_fails_even_with_a_passing_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .respond_with(ResponseTemplate::new(200).set_body_string("degraded"))
        .mount(&server)
        .await;
    let checks = format!("      - http: {{url: \"{}/healthz\", body: ok, retries: 0}}\n", server.uri());
    let (sb, _, cluster) = merged_with_checks(&checks).await;
    let (out, report) = verify(&sb, &cluster, &[], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let body = revert_body(&sb, only(&report));
    assert!(body.contains("status 200 OK, but the body does not contain 'ok'"), "{body}");
    assert!(body.contains("1 attempt;"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_then_200_passes_on_a_retry() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/healthz")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let checks = format!("      - http: {{url: \"{}/healthz\", retries: 2}}\n", server.uri());
    let (sb, _, cluster) = merged_with_checks(&checks).await;
    let (out, report) = verify(&sb, &cluster, &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success", "{report}");
    let requests = server.received_requests().await.unwrap();
    assert!(requests.len() >= 2, "the 503 was retried: {} requests", requests.len());
    assert!(sb.branches().keys().all(|b| !b.starts_with("upkeep/revert-")), "no revert");
}

/// Everything upkeep wrote or printed: the report, its logs at trace level, notes, statuses,
/// PRs, comments and the revert commit.
fn all_outputs(sb: &Sandbox, out: &std::process::Output) -> String {
    let mut all = text(out);
    for (file, content) in forge_files(sb) {
        all.push_str(&format!("\n{file}\n{content}"));
    }
    let git = sb.git();
    if let Ok(notes) = git.notes(Some("refs/notes/upkeep")) {
        for (note_id, _) in notes.flatten() {
            all.push_str(&String::from_utf8_lossy(git.find_blob(note_id).unwrap().content()));
        }
    }
    for (_, oid) in sb.branches() {
        all.push_str(git.find_commit(oid).unwrap().message().unwrap_or(""));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_the_environment_reaches_the_server_and_no_output() {
    const TOKEN: &str = "s3cr3t-header-value-7f1c";
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "text/plain"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/healthz")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    Mock::given(method("GET")).and(path("/ready")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    // A second check fails, so the revert PR, its commit and the report all get written; its URL
    // carries user info and a query secret, neither of which may be shown either.
    let port = server.address().port();
    let checks = format!(
        "      - http: {{url: \"{}/healthz\", retries: 0, headers: {{Authorization: {{env: UPKEEP_TEST_CHECK_TOKEN}}, Accept: text/plain}}}}\n      - http: {{url: \"http://probe:pw-9d2e@127.0.0.1:{port}/ready?token=q-4b7a&zone=a\", retries: 0}}\n",
        server.uri()
    );
    let (sb, _, cluster) = merged_with_checks(&checks).await;
    let env = [("UPKEEP_TEST_CHECK_TOKEN", format!("Bearer {TOKEN}")), ("RUST_LOG", "trace".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (out, report) = verify(&sb, &cluster, &env, &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    let body = revert_body(&sb, v);
    let shown = format!("`http GET http://127.0.0.1:{port}/ready?token=REDACTED&amp;zone=REDACTED`");
    assert!(body.contains(&shown), "no user info, no query values: {body}");
    assert!(!body.contains("/healthz"), "the check with the header passed, so it is no evidence: {body}");
    let requests = server.received_requests().await.unwrap();
    let probed = requests.iter().find(|r| r.url.path() == "/healthz").expect("the header check was probed");
    assert_eq!(probed.headers.get("authorization").unwrap(), format!("Bearer {TOKEN}").as_str());
    let all = all_outputs(&sb, &out);
    assert!(all.contains("Upkeep-Revert"), "the outputs were gathered: {all}");
    for secret in [TOKEN, "pw-9d2e", "q-4b7a"] {
        assert!(!all.contains(secret), "{secret} leaked into the outputs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_header_variable_keeps_the_merge_pending_and_names_the_rule_and_variable() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let checks = format!(
        "      - http: {{url: \"{}/healthz\", headers: {{X-Api-Key: {{env: UPKEEP_TEST_UNSET_KEY}}}}}}\n",
        server.uri()
    );
    let (sb, m, cluster) = merged_with_checks(&checks).await;
    // Reconciled before the pass looks, so the one look of --no-wait gets to the checks.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (out, report) = verify(&sb, &cluster, &[], &["--no-wait"]).await;
    assert_eq!(out.status.code(), Some(1), "a problem, not a verdict: {}", text(&out));
    let v = only(&report);
    assert_eq!(v["verdict"], "pending", "blindness is never failure: {v}");
    let said = text(&out);
    assert!(
        said.contains("rules[0].checks[0]") && said.contains("UPKEEP_TEST_UNSET_KEY") && said.contains("is not set"),
        "{said}"
    );
    assert_eq!(note(&sb, m).unwrap()["verdict"], "pending");
    assert!(server.received_requests().await.unwrap().is_empty(), "a check without its header is not sent");
    // With the variable, the next pass verifies the merge...
    let (out, report) = verify(&sb, &cluster, &[("UPKEEP_TEST_UNSET_KEY", "k-51e0")], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success", "{report}");
    let probed = server.received_requests().await.unwrap();
    assert!(probed.iter().all(|r| r.headers.get("x-api-key").is_some_and(|v| v == "k-51e0")), "the header was sent");
    // ...and once it is verified, a pass without the variable has nothing to complain about.
    let (out, report) = verify(&sb, &cluster, &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(only(&report)["verdict"], "success");
    assert!(!text(&out).contains("UPKEEP_TEST_UNSET_KEY"), "{}", text(&out));
}

#[test]
fn the_readme_example_of_checks_is_a_valid_config() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("### Checks").nth(1).expect("a Checks section");
    let yaml = section.split("```yaml\n").nth(1).and_then(|s| s.split("```").next()).expect("its example");
    let config = upkeep::config::parse(yaml, std::path::Path::new("/r"), "README.md").unwrap();
    assert_eq!(config.policy.rules[0].checks.len(), 2, "{yaml}");
}

/// `openssl s_server -www` on 127.0.0.1 with a fresh self-signed certificate: a real TLS server
/// whose certificate no trust store knows. Killed when dropped.
struct SelfSignedServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl SelfSignedServer {
    fn start() -> SelfSignedServer {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl command line (Debian's openssl package) makes the test certificate");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let port = closed_port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = SelfSignedServer { child, _dir: dir, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "openssl s_server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for SelfSignedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_unless_the_check_opts_out() {
    let tls = SelfSignedServer::start();
    let url = format!("https://127.0.0.1:{}/", tls.port);
    let checks = format!(
        "      - http: {{url: \"{url}\", retries: 0}}\n      - http: {{url: \"{url}\", retries: 0, insecureSkipVerify: true}}\n"
    );
    let (sb, _, cluster) = merged_with_checks(&checks).await;
    let (out, report) = verify(&sb, &cluster, &[], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v = only(&report);
    let evidence = v["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "only the verifying check failed; the opted-out one passed: {v}");
    assert_eq!(evidence[0]["object"], format!("http GET {url}"));
    assert!(evidence[0]["message"].as_str().unwrap().contains("certificate"), "{v}");
    drop(tls);
}

#[test]
fn the_schema_describes_checks_with_only_url_and_address_required() {
    let schema = upkeep::config::schema();
    let defs = &schema["$defs"];
    assert!(defs["RawRule"]["properties"]["checks"].is_object(), "rules take checks");
    assert_eq!(defs["RawHttp"]["required"], serde_json::json!(["url"]), "{}", defs["RawHttp"]);
    assert_eq!(defs["RawTcp"]["required"], serde_json::json!(["address"]), "{}", defs["RawTcp"]);
    for key in ["method", "status", "body", "timeout", "retries", "headers", "insecureSkipVerify"] {
        assert!(defs["RawHttp"]["properties"][key].is_object(), "http.{key}");
    }
}
