//! The config file: defaults, errors that point at file:line with a hint, the JSON Schema, and
//! `upkeep config validate|schema`.

use std::path::Path;
use std::process::Command;

use upkeep::config;

#[test]
fn error_messages_point_at_the_line_with_a_hint() {
    let cases = [
        ("unknown top-level key", "maxOpenPR: 3\n"),
        ("unknown rule key", "rules:\n  - match: {component: [longhorn]}\n    automerg: true\n"),
        ("unknown matcher", "rules:\n  - match:\n      charts: [x]\n"),
        ("bad update type", "rules:\n  - allow: [patches]\n"),
        ("bad component", "rules:\n  - match: {component: [longhorns]}\n"),
        ("bad range", "rules:\n  - ignoreVersions: ['>=1.0', 'banana']\n"),
        ("bad duration", "rules:\n  - minimumReleaseAge: 3 days\n"),
        ("bad day", "rules:\n  - schedule: {days: [funday]}\n"),
        ("bad hours", "rules:\n  - schedule:\n      hours: '9'\n"),
        ("bad zone", "timezone: Mars/Olympus\n"),
        ("bad glob", "rules:\n  - match: {file: ['clusters/[prod']}\n"),
        ("bad rate", "memory:\n  failureRate: 20\n"),
        ("wrong type", "maxOpenPRs: many\n"),
    ];
    let mut out = String::new();
    for (what, yaml) in cases {
        let err = config::parse(yaml, Path::new("/repo"), ".github/upkeep.yaml")
            .err()
            .unwrap_or_else(|| panic!("{what} should fail"));
        out.push_str(&format!("## {what}\n{err}\n\n"));
    }
    insta::assert_snapshot!("config-errors", out);
}

#[test]
fn an_empty_or_missing_config_is_a_sensible_setup() {
    let dir = tempfile::tempdir().unwrap();
    let missing = config::load(dir.path(), None).unwrap();
    assert!(missing.file.is_none() && missing.policy.rules.is_empty() && missing.policy.max_open_prs.is_none());
    std::fs::create_dir_all(dir.path().join(".github")).unwrap();
    std::fs::write(dir.path().join(".github/upkeep.yaml"), "# all defaults\n").unwrap();
    std::fs::write(dir.path().join("upkeep.yaml"), "maxOpenPRs: 3\n").unwrap();
    let found = config::load(dir.path(), None).unwrap();
    assert!(found.file.unwrap().ends_with(".github/upkeep.yaml"), ".github/upkeep.yaml is found first");
    assert_eq!(config::load(dir.path(), Some(&dir.path().join("upkeep.yaml"))).unwrap().policy.max_open_prs, Some(3));
}

/// Scanning a sub-folder still obeys the repository's config, and relative `file://` rewrites
/// are anchored where the config lives (above `.github/`), not where the scan starts.
#[test]
fn a_sub_folder_scan_uses_the_repository_config_and_its_anchor() {
    let dir = tempfile::tempdir().unwrap();
    git2::Repository::init(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join(".github")).unwrap();
    std::fs::create_dir_all(dir.path().join("clusters/prod")).unwrap();
    std::fs::write(
        dir.path().join(".github/upkeep.yaml"),
        "maxOpenPRs: 2\nregistryRewrites:\n  - {from: 'https://x.example', to: 'file://./mirror/x'}\n",
    )
    .unwrap();
    let found = config::load(&dir.path().join("clusters/prod"), None).unwrap();
    assert_eq!(found.policy.max_open_prs, Some(2));
    let to = &found.rewrites.0[0].to;
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(to, &format!("file://{}", root.join("./mirror/x").display()), "anchored above .github/");
}

#[test]
fn the_schema_describes_every_key() {
    let schema = config::schema();
    let text = schema.to_string();
    for key in [
        "rules",
        "maxOpenPRs",
        "registryRewrites",
        "hostRules",
        "minimumReleaseAge",
        "ignoreVersions",
        "updateType",
        "schedule",
        "notify",
        "urlEnv",
        "forward-fix",
    ] {
        assert!(text.contains(&format!("\"{key}\"")), "schema lacks {key}");
    }
    assert!(text.contains("\"longhorn\"") && text.contains("\"patch\""), "enums are listed");
}

#[test]
fn config_commands() {
    let bin = env!("CARGO_BIN_EXE_upkeep");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("example");
    let ok = Command::new(bin).args(["config", "validate"]).arg(&example).output().unwrap();
    assert!(ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("upkeep.yaml: valid"), "{ok:?}");
    let dir = super::util::tree(&[("upkeep.yaml", b"rules:\n  - alow: [patch]\n")]);
    let bad = Command::new(bin).args(["config", "validate"]).arg(dir.path()).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("did you mean `allow`?"), "{stderr}");
    let schema = Command::new(bin).args(["config", "schema"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(json["title"], "upkeep configuration");
}

/// The README's configuration reference is generated from the schema: when a config key is
/// added, renamed or redocumented, this fails until `scripts/config-reference.sh` is run.
#[test]
fn readme_config_reference_matches_the_schema() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (start, end) = ("<!-- config-reference:start -->\n", "<!-- config-reference:end -->");
    let from = readme.find(start).expect("README.md has the config-reference start marker") + start.len();
    let to = readme[from..].find(end).expect("README.md has the config-reference end marker") + from;
    let out = Command::new(env!("CARGO_BIN_EXE_upkeep")).args(["config", "reference"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(
        readme[from..to] == generated,
        "README.md's configuration reference differs from `upkeep config reference`: run scripts/config-reference.sh"
    );
    // Every top-level key of the schema is in the README's table.
    let schema = config::schema();
    for key in schema["properties"].as_object().unwrap().keys() {
        assert!(readme[from..to].contains(&format!("| `{key}` |")), "{key} is not in the README reference");
    }
}
