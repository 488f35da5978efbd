//! Every Mermaid diagram upkeep writes (the timeline of a merge, the platform chains) is
//! snapshot-tested; this test hands each snapshot to Mermaid's own parser
//! (`tests/mermaid/parse.mjs`, the `mermaid` npm package under jsdom), so a diagram GitHub
//! would refuse to draw fails here. The parser needs `npm ci --prefix tests/mermaid` first
//! (`.ci/run` does it and sets `UPKEEP_MERMAID_PARSER=required`); without it the test says so
//! and leaves the diagrams to the structural check (`upkeep::render::mermaid::check`) that the
//! other tests apply.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Snapshot files holding a Mermaid diagram, under `dir`.
fn snapshots_with_diagrams(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("node_modules") {
            snapshots_with_diagrams(&path, out);
        } else if path.extension().is_some_and(|e| e == "snap")
            && std::fs::read_to_string(&path).unwrap().contains("```mermaid\n")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_snapshot_diagram_parses_with_mermaids_own_parser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    snapshots_with_diagrams(&root.join("src"), &mut files);
    snapshots_with_diagrams(&root.join("tests"), &mut files);
    files.sort();
    // The timeline (failed and soaked), the platform chain, the hostile labels, the dashboard.
    assert!(files.len() >= 6, "{files:?}");
    // (The structural check runs on the unscrubbed diagrams, in the tests that write them.)
    let installed = root.join("tests/mermaid/node_modules/mermaid").is_dir();
    let required = std::env::var("UPKEEP_MERMAID_PARSER").is_ok_and(|v| v == "required");
    if !installed {
        assert!(!required, "UPKEEP_MERMAID_PARSER=required, but `npm ci --prefix tests/mermaid` was not run");
        eprintln!("Mermaid's parser is not installed (npm ci --prefix tests/mermaid): structural check only");
        return;
    }
    let out = Command::new("node")
        .arg(root.join("tests/mermaid/parse.mjs"))
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("node, to run Mermaid's parser: {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.lines().count() >= files.len() && report.lines().all(|l| l.starts_with("ok flowchart")), "{report}");
}
