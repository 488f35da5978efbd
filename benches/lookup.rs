//! `cargo bench --bench lookup`: cost of lookups. For each corpus repository, `scan` plus the
//! Helm index lookups through the loopback mirror, cold and then warm cache: wall time, peak
//! memory, requests and bytes. Then parse time and peak memory for a generated 20 MB index.
//!
//! Each measurement runs in a child process (this binary with `--child`), so peak RSS is that
//! measurement's own. Prints figures for BENCHMARKS.md; asserts nothing.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

#[path = "../tests/it/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

use upkeep::extract::{ScanOptions, scan};
use upkeep::lookup::Lookup;
use upkeep::model::Datasource;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn rewrites(base: &str) -> Vec<(String, String)> {
    let sources = std::fs::read_to_string(fixtures().join("mirror/SOURCES.tsv")).unwrap();
    sources
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .map(|url| {
            (url.to_string(), format!("{base}/{}", url.split_once("://").map_or(url, |(_, r)| r).trim_end_matches('/')))
        })
        .collect()
}

fn child_scan(repo: &str, base: &str, cache: &str) {
    let started = Instant::now();
    let found = scan(&fixtures().join("corpus").join(repo), &ScanOptions::default()).unwrap();
    let packages: Vec<_> = found
        .dependencies
        .iter()
        .filter(|d| d.skip.is_none())
        .filter_map(|d| d.package.clone())
        .filter(|p| p.datasource == Datasource::Helm)
        .collect();
    let lookup = Lookup::new(servers::context(&rewrites(base), Some(Path::new(cache)), servers::test_http()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results = runtime.block_on(lookup.all(&packages));
    let elapsed = started.elapsed();
    let stats = &lookup.context().http.stats;
    println!(
        "{:>9.1?} {:>8.1} MiB {:>5} req {:>9} B {:>4} 304 {:>4} ok",
        elapsed,
        peak_rss_mib(),
        stats.requests.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
        stats.not_modified.load(Ordering::Relaxed),
        results.values().filter(|r| r.is_ok()).count()
    );
}

fn child_index(path: &str) {
    let before = peak_rss_mib();
    let text = std::fs::read_to_string(path).unwrap();
    let started = Instant::now();
    let charts = upkeep::lookup::helm::parse_index(&text).unwrap();
    let elapsed = started.elapsed();
    let versions: usize = charts.values().map(Vec::len).sum();
    println!(
        "{:.1} MB, {} charts, {versions} versions: parsed in {elapsed:.1?}, peak RSS {:.1} MiB (before reading: {before:.1} MiB)",
        text.len() as f64 / 1e6,
        charts.len(),
        peak_rss_mib()
    );
}

fn generate_index(path: &Path) {
    let mut out = String::from("apiVersion: v1\nentries:\n");
    let mut n = 0;
    while out.len() < 20_000_000 {
        out.push_str(&format!("  chart-{n}:\n"));
        for v in 0..60 {
            out.push_str(&format!(
                "  - apiVersion: v2\n    appVersion: {v}.0.0\n    created: \"2024-0{}-1{}T10:00:00.000000000Z\"\n    description: A generated chart used to measure index parsing speed and memory use.\n    digest: 5b0d7e2f9c1a4b3e8d6f0a1c2b3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d\n    home: https://example.com/chart-{n}\n    kubeVersion: '>=1.25.0-0'\n    maintainers:\n    - email: someone@example.com\n      name: someone\n    name: chart-{n}\n    sources:\n    - https://github.com/example/chart-{n}\n    annotations:\n      artifacthub.io/changes: |\n        - kind: fixed\n          description: Fix a bug in version {v}\n    urls:\n    - https://example.com/charts/chart-{n}-1.{v}.0.tgz\n    version: 1.{v}.0\n",
                v % 9 + 1,
                v % 10
            ));
        }
        n += 1;
    }
    out.push_str("generated: \"2024-05-01T10:00:00Z\"\n");
    std::fs::write(path, out).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        match args[i + 1].as_str() {
            "scan" => child_scan(&args[i + 2], &args[i + 3], &args[i + 4]),
            _ => child_index(&args[i + 2]),
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = runtime.block_on(async {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(servers::Mirror { root: fixtures().join("mirror") })
            .mount(&server)
            .await;
        server
    });
    let me = std::env::current_exe().unwrap();
    println!(
        "scan + Helm index lookups through the loopback mirror (wall, peak RSS, requests, body bytes, 304s, packages resolved)"
    );
    for repo in [
        "billimek-k8s-gitops",
        "bjw-s-home-ops",
        "carpenike-k8s-gitops-2021",
        "flux2-kustomize-helm-example",
        "onedr0p-home-ops-2022",
    ] {
        let cache = tempfile::tempdir().unwrap();
        for label in ["cold", "warm"] {
            print!("{repo:<30} {label}  ");
            use std::io::Write;
            std::io::stdout().flush().unwrap();
            let status = Command::new(&me)
                .args(["--child", "scan", repo, &server.uri(), &cache.path().to_string_lossy()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index.yaml");
    generate_index(&index);
    print!("generated index: ");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    Command::new(&me).args(["--child", "index", &index.to_string_lossy()]).status().unwrap();
    drop(server);
}
