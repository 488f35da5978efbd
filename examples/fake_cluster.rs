//! A stand-in Kubernetes cluster for the README's main job: the loopback fake API server of the
//! verifier's tests (`tests/it/kube_fake.rs`, the same file), serving the bundled example's Flux
//! objects from Flux's documented status examples, so a newcomer sees `upkeep verify` close the
//! loop offline, with no cluster at all.
//!
//! `cargo run --example fake_cluster -- <kubeconfig dir> <old commit> <merge commit> <from> <to>`
//!
//! Timeline: at once, Flux is at the old commit and ingress-nginx at `<from>`; after 1 s Flux
//! fetches and applies the merge; after 2 s helm-controller's upgrade to `<to>` fails
//! (UpgradeFailed, as in `fixtures/kube/helmrelease-v2-upgrade-failed.json`). It writes
//! `<dir>/kubeconfig` once it listens and serves until it is stopped (at most ten minutes).
//! Stopped by SIGTERM or SIGINT, it writes `<dir>/stats.json` for `scripts/bench.sh`: when the
//! failure became visible (Unix milliseconds) and every API request it answered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr, missing_docs, unreachable_pub, dead_code)]

use std::time::Duration;

use serde_json::json;

/// What `kube_fake.rs` needs of the test helpers.
mod util {
    use std::path::{Path, PathBuf};

    /// A path under `fixtures/`.
    pub(crate) fn fixture(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
    }
}

#[path = "../tests/it/kube_fake.rs"]
mod kube_fake;

use kube_fake::{Change, FakeKube, flux_applies, flux_synced_at, retarget};

/// The example's release: ingress-nginx in its own namespace.
const NS: &str = "ingress-nginx";

fn before(fake: &FakeKube, old: &str, from: &str, to: &str) {
    flux_synced_at(fake, old);
    let mut hr = retarget("helmrelease-v2-test-succeeded.json", NS, NS, from, to);
    hr["status"]["history"][0]["chartVersion"] = json!(from);
    fake.apply(Change::Put(hr));
    fake.apply(Change::Put(retarget("deployment-podinfo-rolled-out.json", NS, NS, from, to)));
}

fn timeline(fake: &FakeKube, merge: &str, from: &str, to: &str) {
    for change in flux_applies(merge, &["infrastructure"]) {
        fake.at(Duration::from_secs(1), change);
    }
    let mut failed = retarget("helmrelease-v2-upgrade-failed.json", NS, NS, from, to);
    failed["status"]["observedGeneration"] = json!(2);
    fake.at(Duration::from_secs(2), Change::Put(failed));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, old, merge, from, to] = args.as_slice() else {
        eprintln!("usage: fake_cluster <kubeconfig dir> <old commit> <merge commit> <from> <to>");
        std::process::exit(2);
    };
    let fake = FakeKube::start().await;
    before(&fake, old, from, to);
    timeline(&fake, merge, from, to);
    std::fs::create_dir_all(dir).unwrap();
    // Written last, atomically: its presence means the server listens.
    let written = fake.kubeconfig(std::path::Path::new(dir));
    eprintln!("fake cluster at {}, kubeconfig {}", fake.url(), written.display());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    fake.start_clock();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(600)) => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let failed_at = started + Duration::from_secs(2);
    let stats = json!({
        "failed_at_ms": u64::try_from(failed_at.as_millis()).unwrap(),
        "requests": fake.requests(),
    });
    std::fs::write(std::path::Path::new(dir).join("stats.json"), stats.to_string()).unwrap();
}
