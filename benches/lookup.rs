//! `cargo bench --bench lookup`: cost of lookups. For each corpus repository, `scan` plus the
//! Helm index lookups through the loopback mirror, cold and then warm cache: wall time, peak
//! memory, requests and bytes. Then, for a generated 20 MB index, distil time and peak memory
//! through the line scanner (a few charts, then every chart) and through the YAML parser, and
//! a 60 MiB index looked up over loopback HTTP: what streaming adds to the peak.
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
    let lookup = Lookup::new(servers::context(&rewrites(base), Some(Path::new(cache)), servers::mirror_http()));
    // As `upkeep scan` runs its lookups (`app::look_up_reporting`): on one thread.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
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

/// Distil the index at `path` by `how`: `general` (read whole, YAML parser), `fast` (streamed
/// from the file through the line scanner, every chart) or `fast-few` (three charts).
fn child_index(how: &str, path: &str) {
    let before = peak_rss_mib();
    let started = Instant::now();
    let (bytes, charts) = match how {
        "general" => {
            let text = std::fs::read_to_string(path).unwrap();
            (text.len(), upkeep::lookup::helm::parse_index(&text).unwrap())
        }
        _ => {
            use std::io::Read;
            let wanted: Option<std::collections::BTreeSet<String>> =
                (how == "fast-few").then(|| ["chart-1", "chart-200", "chart-400"].map(String::from).into());
            let mut scanner = upkeep::lookup::index_scan::IndexScanner::new(wanted);
            let mut file = std::fs::File::open(path).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                scanner.feed(&buf[..n]).unwrap();
            }
            (total, scanner.finish().unwrap())
        }
    };
    let elapsed = started.elapsed();
    let versions: usize = charts.values().map(Vec::len).sum();
    println!(
        "{how:<8} {:.1} MB, {} charts, {versions} versions kept: {elapsed:.1?} ({:.0} MB/s), peak RSS {:.1} MiB ({:+.1} MiB over the {before:.1} MiB before reading)",
        bytes as f64 / 1e6,
        charts.len(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        peak_rss_mib(),
        peak_rss_mib() - before,
    );
}

/// Look up one chart of the big index served at `base/big` through the whole HTTP path.
fn child_stream(base: &str) {
    let lookup = Lookup::new(servers::context(&[], None, upkeep::lookup::http::HttpConfig::default()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let package = upkeep::model::Package {
        datasource: Datasource::Helm,
        registry: format!("{base}/big"),
        name: "chart-200".into(),
    };
    let before = peak_rss_mib();
    let started = Instant::now();
    let results = runtime.block_on(lookup.all([&package]));
    let elapsed = started.elapsed();
    let bytes = lookup.context().http.stats.bytes.load(Ordering::Relaxed);
    let found = results.values().next().and_then(|r| r.as_ref().ok()).map_or(0, |r| r.len());
    println!(
        "{:.1} MB over HTTP, {found} versions of one chart: {elapsed:.1?} ({:.0} MB/s), peak RSS {:.1} MiB ({:+.1} MiB over the {before:.1} MiB before the lookup)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        peak_rss_mib(),
        peak_rss_mib() - before,
    );
}

fn generate_index(path: &Path, size: usize) {
    let mut out = String::from("apiVersion: v1\nentries:\n");
    let mut n = 0;
    while out.len() < size {
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
            "stream" => child_stream(&args[i + 2]),
            how => child_index(how, &args[i + 2]),
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
    generate_index(&index, 20_000_000);
    use std::io::Write;
    println!("generated 20 MB index (each run in its own process):");
    for how in ["fast-few", "fast", "general"] {
        std::io::stdout().flush().unwrap();
        Command::new(&me).args(["--child", how, &index.to_string_lossy()]).status().unwrap();
    }
    let big = dir.path().join("big.yaml");
    generate_index(&big, 60 * 1024 * 1024);
    runtime.block_on(
        wiremock::Mock::given(wiremock::matchers::path("/big/index.yaml"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_bytes(std::fs::read(&big).unwrap()))
            .with_priority(1)
            .mount(&server),
    );
    print!("generated 60 MiB index, looked up: ");
    std::io::stdout().flush().unwrap();
    Command::new(&me).args(["--child", "stream", &server.uri()]).status().unwrap();
    drop(server);
}
