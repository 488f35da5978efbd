//! upkeep as a GitHub Action: `upkeep action` reads its command from `UPKEEP_*` variables,
//! writes the step outputs to `$GITHUB_OUTPUT` and an `::error` annotation for each manifest it
//! could not read; `--log-format json` writes one JSON object a line; the image's git config
//! lets libgit2 open a workspace owned by another user.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use super::run::{Sandbox, commit_all};
use super::verify_support::{text, upkeep_in};

/// `KEY=value` lines of a `$GITHUB_OUTPUT` file (the multi-line form is not used here).
fn outputs(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const BROKEN: &str =
    "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: broken\nspec: [unclosed\n";

#[test]
fn the_action_runs_from_env_writes_outputs_and_annotates_unreadable_manifests() {
    let sb = Sandbox::example();
    std::fs::write(sb.repo.join("apps/broken.yaml"), BROKEN).unwrap();
    commit_all(&sb.git(), "a manifest upkeep cannot read", "Maintainer");
    let output = sb.root.join("github_output");
    let report = sb.root.join("report.md");
    let workspace = sb.repo.display().to_string();
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ("GITHUB_WORKSPACE", workspace.as_str()),
        // As action.yml sets them, defaults and empty inputs included.
        ("UPKEEP_INPUT_COMMAND", "run"),
        ("UPKEEP_INPUT_PATH", workspace.as_str()),
        ("UPKEEP_INPUT_FORMAT", "markdown"),
        ("UPKEEP_INPUT_FORGE", "local"),
        ("UPKEEP_INPUT_DRY_RUN", "false"),
        ("UPKEEP_INPUT_CONFIG", ""),
        ("UPKEEP_INPUT_LOG_LEVEL", ""),
        ("UPKEEP_INPUT_LOG_FORMAT", "text"),
        ("UPKEEP_INPUT_CACHE_DIR", ""),
        ("UPKEEP_INPUT_EVIDENCE", ""),
        ("UPKEEP_INPUT_REPORT_FILE", report.to_str().unwrap()),
        ("UPKEEP_INPUT_ARGS", "--max-file-size 1000000"),
    ];
    let out = upkeep_in(&sb.root, &sb.repo, &["action"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let annotation = stderr.lines().find(|l| l.starts_with("::error ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        annotation.starts_with("::error file=apps/broken.yaml,line=6,col=1,")
            && annotation.contains("title=upkeep could not read this manifest::"),
        "{annotation}"
    );
    // The run itself went on: four PRs opened, as without the broken file.
    let got = outputs(&output);
    assert_eq!(got.get("prs-opened").map(String::as_str), Some("4"), "{got:?}");
    assert_eq!(got.get("prs-updated").map(String::as_str), Some("0"), "{got:?}");
    assert_eq!(got.get("report").map(String::as_str), report.to_str(), "{got:?}");
    assert_eq!(std::fs::read(&report).unwrap(), out.stdout, "the report file is a copy of stdout");

    // A second run updates nothing and says so; outputs are appended, the last one wins.
    let again = upkeep_in(&sb.root, &sb.repo, &["action"], &env);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(outputs(&output).get("prs-opened").map(String::as_str), Some("0"));
}

#[test]
fn a_bad_action_input_is_an_error_annotation_and_exit_2() {
    let sb = Sandbox::example();
    let out = upkeep_in(&sb.root, &sb.repo, &["action"], &[("UPKEEP_INPUT_COMMAND", "revert")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("::error title=upkeep action::input `command` is `revert`: use one of run, plan, scan, verify"),
        "{}",
        text(&out)
    );
    let out = upkeep_in(
        &sb.root,
        &sb.repo,
        &["action"],
        &[("UPKEEP_INPUT_COMMAND", "scan"), ("UPKEEP_INPUT_ARGS", "--bogus")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upkeep scan . --bogus"), "{}", text(&out));
}

/// A HelmRelease whose repository answers 404, so the lookup logs a failure.
fn repo_with_failing_lookup(url: &str) -> tempfile::TempDir {
    let release = super::util::helmrelease("podinfo", "6.0.0");
    let source = super::util::REPOSITORY.replace("https://charts.example.com", url);
    super::util::tree(&[("release.yaml", release.as_bytes()), ("source.yaml", source.as_bytes())])
}

#[test]
fn json_logs_are_one_object_a_line_with_the_dependency_and_url_as_fields() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(wiremock::MockServer::start());
    runtime.block_on(
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(wiremock::ResponseTemplate::new(404))
            .mount(&server),
    );
    let dir = repo_with_failing_lookup(&server.uri());
    let cache = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_upkeep"))
            .args(args)
            .arg(dir.path())
            .env("UPKEEP_CACHE_DIR", cache.path())
            .env_remove("RUST_LOG")
            .env_remove("UPKEEP_LOG_FORMAT")
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap()
    };
    let out = run(&["--log-format", "json", "--log-level", "info", "scan", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{stderr}");
    let failure = lines
        .iter()
        .find(|l| l["dependency"] == "helmrelease/apps/podinfo")
        .unwrap_or_else(|| panic!("no line names the dependency: {stderr}"));
    assert_eq!(failure["level"], "WARN", "{failure}");
    assert!(failure["url"].as_str().is_some_and(|u| u.starts_with(&server.uri())), "{failure}");
    assert!(failure["message"].as_str().is_some_and(|m| m.starts_with("lookup failed")), "{failure}");
    assert!(lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.starts_with("scanned 2 files"))), "{stderr}");

    // The default stays text for people: the same event, not JSON.
    let out = run(&["--log-level", "info", "scan", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("lookup failed")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(serde_json::from_str::<serde_json::Value>(line).is_err(), "{line}");
    assert!(line.contains("dependency=helmrelease/apps/podinfo"), "{line}");
}

#[test]
fn a_workspace_owned_by_another_user_opens_with_the_images_git_config() {
    let sb = Sandbox::example();
    // Give the repository to another user; only root can, so elsewhere there is nothing to show.
    if std::os::unix::fs::chown(&sb.repo, Some(4242), Some(4242)).is_err() {
        return;
    }
    std::os::unix::fs::chown(sb.repo.join(".git"), Some(4242), Some(4242)).unwrap();
    let home = sb.root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let home = home.to_str().unwrap();
    let plain = [("HOME", home), ("XDG_CONFIG_HOME", home)];
    let refused = sb.try_run(&["--dry-run"], &plain);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("not owned by current user"), "{}", text(&refused));

    // The image sets XDG_CONFIG_HOME=/etc/upkeep and copies docker/gitconfig to /etc/upkeep/git/config.
    let xdg = sb.root.join("etc-upkeep");
    std::fs::create_dir_all(xdg.join("git")).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/gitconfig"), xdg.join("git/config")).unwrap();
    let image = [("HOME", home), ("XDG_CONFIG_HOME", xdg.to_str().unwrap())];
    let opened = sb.try_run(&["--dry-run"], &image);
    assert!(opened.status.success(), "{}", text(&opened));
}

/// action.yml, read as YAML.
fn action_yml() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

#[test]
fn every_action_input_reaches_upkeep_through_env_and_every_output_is_written() {
    let action = action_yml();
    let env = action["runs"]["env"].as_object().unwrap();
    let inputs = action["inputs"].as_object().unwrap();
    for name in inputs.keys() {
        let var = match name.as_str() {
            "token" => "GITHUB_TOKEN".to_string(),
            other => format!("UPKEEP_INPUT_{}", other.to_uppercase().replace('-', "_")),
        };
        assert_eq!(env.get(&var).and_then(|v| v.as_str()), Some(format!("${{{{ inputs.{name} }}}}").as_str()), "{var}");
    }
    assert_eq!(env.len(), inputs.len(), "an env entry for each input, nothing else: {env:?}");
    // Every input but the token changes the command line `upkeep action` builds.
    for name in inputs.keys().filter(|n| *n != "token") {
        let var = format!("UPKEEP_INPUT_{}", name.to_uppercase().replace('-', "_"));
        let value = match name.as_str() {
            "command" => "verify",
            "dry-run" => "true",
            "format" => "json",
            "log-format" => "json",
            "evidence" => "github-status",
            _ => "x",
        };
        let base = upkeep::action::argv_from_env(|k| (k == "UPKEEP_INPUT_COMMAND").then(|| "verify".to_string()));
        let with = upkeep::action::argv_from_env(|k| {
            if k == var { Some(value.to_string()) } else { (k == "UPKEEP_INPUT_COMMAND").then(|| "verify".to_string()) }
        });
        // cache-dir is not a verify option: check it with run.
        if name == "cache-dir" {
            let run = upkeep::action::argv_from_env(|k| (k == var).then(|| "x".to_string())).unwrap();
            assert!(run.windows(2).any(|w| w == ["--cache-dir", "x"]), "{run:?}");
            continue;
        }
        if name != "command" {
            assert_ne!(base, with, "input {name} is read");
        }
    }
    let outputs: Vec<&String> = action["outputs"].as_object().unwrap().keys().collect();
    assert_eq!(outputs, ["forward-fixes", "prs-opened", "prs-updated", "report", "reverts"]);
    // The published image's major tag is this crate's.
    let major = env!("CARGO_PKG_VERSION").split('.').next().unwrap();
    assert_eq!(action["runs"]["image"], format!("docker://ghcr.io/upkeep-bot/upkeep:v{major}"));
    assert_eq!(action["runs"]["args"], serde_json::json!(["action"]));
}

#[test]
fn the_example_workflows_use_only_inputs_and_outputs_action_yml_declares() {
    let action = action_yml();
    let inputs = action["inputs"].as_object().unwrap();
    let outputs = action["outputs"].as_object().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/workflows");
    let mut uses = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let workflow: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for job in workflow["jobs"].as_object().unwrap().values() {
            for step in job["steps"].as_array().unwrap() {
                if !step["uses"].as_str().is_some_and(|u| u.starts_with("upkeep-bot/upkeep@")) {
                    continue;
                }
                uses += 1;
                for key in step["with"].as_object().map(|w| w.keys().collect::<Vec<_>>()).unwrap_or_default() {
                    assert!(inputs.contains_key(key), "{name}: input `{key}` is not in action.yml");
                }
            }
        }
        for (at, _) in text.match_indices("steps.upkeep.outputs.") {
            let rest = &text[at + "steps.upkeep.outputs.".len()..];
            let output: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_').collect();
            assert!(outputs.contains_key(&output), "{name}: output `{output}` is not in action.yml");
        }
    }
    assert!(uses >= 3, "the examples use the Action ({uses} steps)");
}
