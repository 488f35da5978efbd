//! The `upkeep` binary: formats, the JSON contract, exit codes.

use std::process::Command;

use super::util::fixture;

fn upkeep(args: &[&str]) -> std::process::Output {
    // A cache of its own per call, so runs never share state through the user's cache.
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    Command::new(env!("CARGO_BIN_EXE_upkeep"))
        .args(args)
        .env("UPKEEP_CACHE_DIR", cache.path())
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_API_URL")
        .output()
        .unwrap_or_else(|e| panic!("run upkeep: {e}"))
}

fn example() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example").to_string_lossy().into_owned()
}

#[test]
fn json_is_the_default_when_piped_and_follows_the_contract() {
    let out = upkeep(&["scan", &example()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON: {e}"));
    let deps = json["dependencies"].as_array().unwrap_or_else(|| panic!("no dependencies array"));
    assert!(json["errors"].is_array());
    assert!(deps.len() >= 8);
    for d in deps {
        for key in
            ["id", "kind", "component", "file", "line", "column", "name", "namespace", "package", "current", "skip"]
        {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
    }
    let longhorn =
        deps.iter().find(|d| d["id"] == "helmrelease/longhorn-system/longhorn").unwrap_or_else(|| panic!("longhorn"));
    assert_eq!(longhorn["component"], "longhorn");
    assert_eq!(longhorn["package"]["datasource"], "helm");
    assert_eq!(longhorn["current"], "1.4.1");
    assert_eq!(longhorn["skip"], serde_json::Value::Null);
    // Lookups ran offline through example/upkeep.yaml's file:// rewrites.
    assert_eq!(longhorn["latest"], "1.6.0");
    let updates: Vec<(&str, &str)> = longhorn["updates"]
        .as_array()
        .map(|u| u.iter().map(|u| (u["version"].as_str().unwrap_or(""), u["type"].as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    assert_eq!(updates, [("1.4.4", "patch"), ("1.6.0", "minor")]);
    assert_eq!(json["lookup_errors"].as_array().map(Vec::len), Some(0), "{}", json["lookup_errors"]);
    let server = deps.iter().find(|d| d["id"] == "plan/system-upgrade/k3s-server").unwrap_or_else(|| panic!("plan"));
    assert_eq!(
        (server["role"].as_str(), server["package"]["datasource"].as_str()),
        (Some("server"), Some("github-releases"))
    );
}

#[test]
fn table_and_markdown_formats() {
    let table = upkeep(&["scan", &example(), "--format", "table"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("DEPENDENCY"), "{text}");
    assert!(text.contains("k3s (agent)") && text.trim_end().ends_with("0 lookup errors, 0 errors"), "{text}");
    let md = upkeep(&["scan", &example(), "--format", "markdown"]);
    let text = String::from_utf8_lossy(&md.stdout);
    let rows = text.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, 8, "{text}");
    assert!(text.lines().filter(|l| l.starts_with('|')).all(|l| l.matches(" | ").count() == 5), "{text}");
}

#[test]
fn an_unreadable_path_exits_2_and_per_file_errors_exit_0() {
    let out = upkeep(&["scan", "/nonexistent/upkeep-path"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/upkeep-path"));
    let usage = upkeep(&["scan", "--format", "yaml"]);
    assert_eq!(usage.status.code(), Some(2));
    // carpenike has a document with duplicate keys: reported, and the scan still succeeds.
    let out = upkeep(&["scan", "--no-lookup", &fixture("corpus/carpenike-k8s-gitops-2021").to_string_lossy()]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(1));
}

#[test]
fn verbose_lists_files_passed_over() {
    let dir = super::util::tree(&[("chart/templates/x.yaml", b"a: {{ .Values.x }\n")]);
    let out = upkeep(&["-v", "scan", "--no-lookup", &dir.path().to_string_lossy()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passed over chart/templates/x.yaml"));
    let quiet = upkeep(&["scan", "--no-lookup", &dir.path().to_string_lossy()]);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("passed over"));
}

/// A repository whose releases use a good, a failing and a hostile chart repository, all on a
/// loopback server: the scan exits 0, reports each broken lookup against its dependency, and
/// still resolves the good one; `--offline` then answers from the cache alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstreams_are_per_dependency_errors_and_offline_uses_the_cache() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let index = "apiVersion: v1\nentries:\n  good:\n  - version: 1.2.0\n  - version: 1.1.0\n";
    Mock::given(path("/good/index.yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(index))
        .mount(&server)
        .await;
    Mock::given(path("/down/index.yaml")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    Mock::given(path("/junk/index.yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{{{ not yaml"))
        .mount(&server)
        .await;
    let release = |name: &str, repo: &str| {
        format!(
            "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: {repo}\n  namespace: flux-system\nspec:\n  url: https://{repo}.example.com\n---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  chart:\n    spec:\n      chart: {name}\n      version: 1.1.0\n      sourceRef: {{kind: HelmRepository, name: {repo}, namespace: flux-system}}\n"
        )
    };
    let config = format!(
        "registryRewrites:\n  - {{from: 'https://good.example.com', to: '{u}/good'}}\n  - {{from: 'https://down.example.com', to: '{u}/down'}}\n  - {{from: 'https://junk.example.com', to: '{u}/junk'}}\n",
        u = server.uri()
    );
    let dir = super::util::tree(&[
        ("good.yaml", release("good", "good").as_bytes()),
        ("down.yaml", release("down", "down").as_bytes()),
        ("junk.yaml", release("junk", "junk").as_bytes()),
        ("upkeep.yaml", config.as_bytes()),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let run = |extra: &'static [&'static str]| {
        let root = dir.path().to_path_buf();
        let cache = cache.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_upkeep"))
                .arg("scan")
                .arg(&root)
                .args(extra)
                .env("UPKEEP_CACHE_DIR", &cache)
                .output()
                .unwrap()
        })
    };
    let out = run(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = json["lookup_errors"].as_array().unwrap();
    let ids: Vec<&str> = errors.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{errors:?}");
    assert!(ids.contains(&"helmrelease/apps/down") && ids.contains(&"helmrelease/apps/junk"));
    assert!(errors.iter().any(|e| e["message"].as_str().unwrap_or("").contains("503")));
    let good = json["dependencies"].as_array().unwrap().iter().find(|d| d["id"] == "helmrelease/apps/good").unwrap();
    assert_eq!(good["latest"], "1.2.0");
    assert_eq!(good["updates"][0]["version"], "1.2.0");

    let offline = run(&["--offline"]).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    let good = json["dependencies"].as_array().unwrap().iter().find(|d| d["id"] == "helmrelease/apps/good").unwrap();
    assert_eq!(good["latest"], "1.2.0", "answered from the cache");
    let messages: Vec<&str> =
        json["lookup_errors"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(messages.iter().all(|m| m.contains("--offline")), "{messages:?}");
}

#[test]
fn plan_adds_a_decision_to_every_dependency() {
    let out = upkeep(&["plan", &example(), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deps = json["dependencies"].as_array().unwrap();
    for d in deps {
        let decision = &d["decision"];
        for key in ["action", "target", "type", "group", "reason"] {
            assert!(decision.get(key).is_some(), "{key} missing in {}", d["id"]);
        }
        assert!(!decision["reason"].as_str().unwrap_or("").is_empty());
    }
    let find = |id: &str| deps.iter().find(|d| d["id"] == id).unwrap()["decision"].clone();
    let longhorn = find("helmrelease/longhorn-system/longhorn");
    assert_eq!((longhorn["action"].as_str(), longhorn["target"].as_str()), (Some("propose"), Some("1.5.4")));
    assert_eq!(longhorn["step"], serde_json::json!([1, 2]));
    assert_eq!(find("plan/system-upgrade/k3s-agent")["group"], find("plan/system-upgrade/k3s-server")["group"]);
    assert_eq!(find("helmrelease/apps/redis")["action"], "skip");
    // `scan --plan` is the same report.
    let scan = upkeep(&["scan", "--plan", &example(), "--format", "json"]);
    let again: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    assert_eq!(again["dependencies"], json["dependencies"]);
    let table = upkeep(&["plan", &example(), "--format", "table"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("propose 1.5.4 (minor) [step 1/2]") && text.contains("6 propose (5 PRs)"), "{text}");
}

/// Every upstream fault the lookups know, through the real binary: each is one dependency's
/// error in the report, the scan exits 0, and every other dependency still gets its versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_is_one_dependencys_error_and_the_scan_goes_on() {
    use std::io::Write as _;
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let index = |chart: &str| format!("apiVersion: v1\nentries:\n  {chart}:\n  - version: 1.2.0\n  - version: 1.1.0\n");
    let ok = |chart: &str| ResponseTemplate::new(200).set_body_string(index(chart));
    // 500 once, then the index; 429 with Retry-After once, then the index.
    super::servers::once_then(&server, "/flaky/index.yaml", ResponseTemplate::new(500), ok("flaky")).await;
    let limited = ResponseTemplate::new(429).insert_header("retry-after", "1");
    super::servers::once_then(&server, "/limited/index.yaml", limited, ok("limited")).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(index("zipped").as_bytes()).unwrap();
    Mock::given(path("/zipped/index.yaml"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("content-encoding", "gzip").set_body_bytes(gz.finish().unwrap()),
        )
        .mount(&server)
        .await;
    Mock::given(path("/moved/index.yaml"))
        .respond_with(
            ResponseTemplate::new(301)
                .insert_header("location", format!("{}/moved-here/index.yaml", server.uri()).as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(path("/moved-here/index.yaml")).respond_with(ok("moved")).mount(&server).await;
    Mock::given(path("/stall/index.yaml"))
        .respond_with(ok("stall").set_delay(std::time::Duration::from_secs(30)))
        .mount(&server)
        .await;
    let mut bomb = String::from(
        "apiVersion: v1\nentries:\n  a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..30 {
        let p = i - 1;
        bomb.push_str(&format!("  a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"));
    }
    Mock::given(path("/bomb/index.yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(bomb))
        .mount(&server)
        .await;
    let truncated = super::servers::raw_server(
        "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nContent-Type: text/yaml\r\n\r\n",
        false,
        b"apiVersion: v1\nentries:\n  cut:\n  - version: 1.",
    );
    let endless =
        super::servers::raw_server("HTTP/1.1 200 OK\r\nContent-Type: text/yaml\r\n\r\n", true, b"apiVersion: v1\n");

    let good = ["flaky", "limited", "zipped", "moved"];
    let bad = ["stall", "bomb", "cut", "endless"];
    let release = |name: &str| {
        format!(
            "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  url: https://{name}.example.com\n---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  chart:\n    spec:\n      chart: {name}\n      version: 1.1.0\n      sourceRef: {{kind: HelmRepository, name: {name}, namespace: flux-system}}\n"
        )
    };
    let mut config = String::from("registryRewrites:\n");
    for name in good.iter().chain(["stall", "bomb"].iter()) {
        config.push_str(&format!("  - {{from: 'https://{name}.example.com', to: '{}/{name}'}}\n", server.uri()));
    }
    config.push_str(&format!("  - {{from: 'https://cut.example.com', to: '{truncated}'}}\n"));
    config.push_str(&format!("  - {{from: 'https://endless.example.com', to: '{endless}'}}\n"));
    let mut files: Vec<(String, Vec<u8>)> =
        good.iter().chain(bad.iter()).map(|n| (format!("{n}.yaml"), release(n).into_bytes())).collect();
    files.push(("upkeep.yaml".into(), config.into_bytes()));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let dir = super::util::tree(&refs);
    let cache = tempfile::tempdir().unwrap();
    let (root, cache_dir) = (dir.path().to_path_buf(), cache.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_upkeep"))
            .arg("scan")
            .arg(&root)
            .env("UPKEEP_CACHE_DIR", &cache_dir)
            .env("UPKEEP_HTTP_TIMEOUT_SECONDS", "2")
            .env("UPKEEP_HTTP_RETRIES", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in good {
        let d = json["dependencies"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap();
        assert_eq!(d["latest"], "1.2.0", "{name}: {d}");
    }
    let errors = json["lookup_errors"].as_array().unwrap();
    let mut failed: Vec<&str> = errors.iter().filter_map(|e| e["id"].as_str()).collect();
    failed.sort();
    assert_eq!(
        failed,
        ["helmrelease/apps/bomb", "helmrelease/apps/cut", "helmrelease/apps/endless", "helmrelease/apps/stall"]
    );
    for e in errors {
        assert!(e["url"].as_str().is_some_and(|u| u.ends_with("/index.yaml")), "every error names its URL: {e}");
    }
}
