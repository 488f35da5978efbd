//! `cargo bench --bench scan`: how long `upkeep scan` takes on a generated repository of
//! 10,000 HelmReleases, on each corpus repository and on one file holding a 10 MB flow mapping
//! on a single line (issue 9: once quadratic), and the process's peak memory.
//!
//! A benchmark, not a test: it prints figures (recorded in BENCHMARKS.md) and asserts nothing.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use upkeep::extract::{ScanOptions, scan};

const RELEASES: usize = 10_000;
const PER_FILE: usize = 5;

fn generate(root: &Path) {
    let apps = root.join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    let mut repos = String::new();
    for r in 0..50 {
        repos.push_str(&format!(
            "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: repo-{r}\n  namespace: flux-system\nspec:\n  interval: 1h\n  url: https://charts-{r}.example.com\n"
        ));
    }
    std::fs::write(root.join("repositories.yaml"), repos).unwrap();
    for f in 0..RELEASES / PER_FILE {
        let dir = apps.join(format!("ns-{}", f % 40)).join(format!("app-{f}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        for i in 0..PER_FILE {
            let n = f * PER_FILE + i;
            text.push_str(&format!(
                "---\n# release {n}\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: release-{n}\nspec:\n  interval: 30m\n  chart:\n    spec:\n      chart: chart-{n}\n      version: \"1.{}.{}\"\n      sourceRef:\n        kind: HelmRepository\n        name: repo-{}\n        namespace: flux-system\n  values:\n    replicaCount: 2\n    image:\n      repository: ghcr.io/example/app-{n}\n      tag: v1.2.3\n    resources:\n      requests: {{cpu: 10m, memory: 64Mi}}\n    ingress:\n      enabled: true\n      hosts: [\"app-{n}.example.com\"]\n",
                n % 30,
                n % 7,
                n % 50
            ));
        }
        std::fs::write(dir.join("helmrelease.yaml"), text).unwrap();
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ns-{}\nresources:\n  - helmrelease.yaml\n", f % 40),
        )
        .unwrap();
    }
}

/// One HelmRelease written as a single line of about `bytes` bytes: a flow mapping whose values
/// hold the bulk, multibyte text included so character and byte positions differ.
fn one_line(root: &Path, bytes: usize) {
    let mut values = String::with_capacity(bytes + 256);
    let mut i = 0;
    while values.len() < bytes {
        values.push_str(&format!("k{i}: [é{i}, v{i}], "));
        i += 1;
    }
    let text = format!(
        "{{apiVersion: helm.toolkit.fluxcd.io/v2, kind: HelmRelease, metadata: {{name: big, namespace: apps}}, spec: {{values: {{{values}end: true}}, chart: {{spec: {{chart: big, version: 1.2.3, sourceRef: {{kind: HelmRepository, name: repo-0, namespace: flux-system}}}}}}}}}}\n"
    );
    std::fs::write(root.join("one-line.yaml"), text).unwrap();
}

fn time(root: &Path, runs: usize) -> (Duration, Duration, usize) {
    time_with(root, runs, &ScanOptions::default())
}

fn time_with(root: &Path, runs: usize, options: &ScanOptions) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut deps = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let result = scan(root, options).unwrap();
        times.push(started.elapsed());
        deps = result.dependencies.len();
    }
    times.sort();
    (times[0], times[times.len() / 2], deps)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus");
    println!("{:<34} {:>8} {:>10} {:>10}", "repository", "deps", "min", "median");
    for repo in [
        "billimek-k8s-gitops",
        "bjw-s-home-ops",
        "carpenike-k8s-gitops-2021",
        "flux2-kustomize-helm-example",
        "onedr0p-home-ops-2022",
    ] {
        let (min, median, deps) = time(&corpus.join(repo), 20);
        println!("{repo:<34} {deps:>8} {min:>10.2?} {median:>10.2?}");
    }
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let (min, median, deps) = time(dir.path(), 10);
    println!("{:<34} {deps:>8} {min:>10.2?} {median:>10.2?}", format!("generated ({RELEASES} releases)"));
    let dir = tempfile::tempdir().unwrap();
    one_line(dir.path(), 10 * 1024 * 1024);
    // Over the default size cap, which is a separate guard: raise it to time the parse itself.
    let options = ScanOptions { max_file_size: 64 * 1024 * 1024, ..ScanOptions::default() };
    let (min, median, deps) = time_with(dir.path(), 5, &options);
    println!("{:<34} {deps:>8} {min:>10.2?} {median:>10.2?}", "one 10 MB line");
    println!("peak RSS of the whole benchmark: {:.1} MiB", peak_rss_mib());
}
