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
