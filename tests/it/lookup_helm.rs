//! Helm repository lookups over real HTTP on loopback: the corpus through its mirror (one request
//! per index, all 304 on a warm run), and every fault a chart repository can throw.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use upkeep::lookup::Lookup;
use upkeep::model::{Datasource, Package};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::servers::{Mirror, context, mirror_http, once_then, raw_server, test_http};
use super::util::{REPOS, fixture, scan_dir};

/// Rewrites from every upstream URL in the mirror's SOURCES.tsv to the loopback server.
fn mirror_rewrites(base: &str) -> Vec<(String, String)> {
    let sources = std::fs::read_to_string(fixture("mirror/SOURCES.tsv")).unwrap_or_else(|e| panic!("{e}"));
    sources
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .map(|url| {
            let hostpath = url.split_once("://").map_or(url, |(_, r)| r).trim_end_matches('/');
            (url.to_string(), format!("{base}/{hostpath}"))
        })
        .collect()
}

fn helm(registry: &str, name: &str) -> Package {
    Package { datasource: Datasource::Helm, registry: registry.into(), name: name.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_indexes_are_fetched_once_each_and_revalidated_with_304s() {
    for repo in REPOS {
        let scan = tokio::task::spawn_blocking(move || scan_dir(&fixture(&format!("corpus/{repo}")))).await.unwrap();
        let packages: Vec<Package> = scan
            .dependencies
            .iter()
            .filter(|d| d.skip.is_none())
            .filter_map(|d| d.package.clone())
            .filter(|p| p.datasource == Datasource::Helm)
            .collect();
        if packages.is_empty() {
            continue;
        }
        let distinct: BTreeSet<&str> = packages.iter().map(|p| p.registry.trim_end_matches('/')).collect();
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(Mirror { root: fixture("mirror") }).mount(&server).await;
        let cache = tempfile::tempdir().unwrap();
        let rewrites = mirror_rewrites(&server.uri());

        let cold = Lookup::new(context(&rewrites, Some(cache.path()), mirror_http()));
        let results = cold.all(&packages).await;
        // The mirror is what the upstream indexes hold: a chart an index no longer lists (an
        // archived repository) is a per-dependency error naming the index, and only that.
        let mut missing = Vec::new();
        for (package, result) in &results {
            match result {
                Ok(releases) => assert!(!releases.is_empty(), "{repo}: {} has no releases", package.name),
                Err(e) if e.message.contains("is not in this repository's index") => missing.push(package.name.clone()),
                Err(e) => panic!("{repo}: {} {}: {e}", package.registry, package.name),
            }
        }
        missing.sort();
        missing.dedup();
        assert_eq!(missing, expected_missing(repo), "{repo}: charts missing from their index");
        let stats = &cold.context().http.stats;
        assert_eq!(stats.requests.load(Ordering::Relaxed) as usize, distinct.len(), "{repo}: one request per index");
        assert_eq!(server.received_requests().await.unwrap_or_default().len(), distinct.len());

        let warm = Lookup::new(context(&rewrites, Some(cache.path()), mirror_http()));
        let again = warm.all(&packages).await;
        assert_eq!(again, results, "{repo}: the warm run answers the same");
        let stats = &warm.context().http.stats;
        assert_eq!(stats.not_modified.load(Ordering::Relaxed) as usize, distinct.len(), "{repo}: all 304");
        assert_eq!(stats.bytes.load(Ordering::Relaxed), 0, "{repo}: no index body transferred");
    }
}

/// Charts the corpus pins that their repository's published index does not list (checked
/// against the real index files in the mirror): each is a per-dependency error, and no others.
fn expected_missing(repo: &str) -> Vec<String> {
    let names: &[&str] = match repo {
        // k8s-at-home published its library chart from a separate repository
        // (library-charts.k8s-at-home.com); https://k8s-at-home.com/charts never listed it.
        "onedr0p-home-ops-2022" => &["kah-common-chart"],
        _ => &[],
    };
    names.iter().map(|n| (*n).to_string()).collect()
}

async fn serve(index: &'static str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/good/index.yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(INDEX))
        .mount(&server)
        .await;
    let _ = index;
    server
}

const INDEX: &str =
    "apiVersion: v1\nentries:\n  app:\n  - version: 1.1.0\n    created: \"2024-01-02T00:00:00Z\"\n  - version: 1.0.0\n";

async fn lookup_one(base: &str, sub: &str) -> Result<upkeep::model::SharedReleases, upkeep::lookup::LookupError> {
    let lookup = Lookup::new(context(&[], None, test_http()));
    let results = lookup.all([&helm(&format!("{base}/{sub}"), "app")]).await;
    results.into_values().next().unwrap_or_else(|| panic!("no result"))
}

#[tokio::test]
async fn a_500_then_200_is_retried() {
    let server = serve(INDEX).await;
    let index = ResponseTemplate::new(200).set_body_string(INDEX);
    once_then(&server, "/flaky/index.yaml", ResponseTemplate::new(500), index).await;
    let releases = lookup_one(&server.uri(), "flaky").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(releases[0].version, "1.1.0");
    assert_eq!(server.received_requests().await.unwrap_or_default().len(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_long_one_gives_up_with_advice() {
    let server = serve(INDEX).await;
    let limited = ResponseTemplate::new(429).insert_header("retry-after", "1");
    once_then(&server, "/limited/index.yaml", limited, ResponseTemplate::new(200).set_body_string(INDEX)).await;
    let started = Instant::now();
    assert!(lookup_one(&server.uri(), "limited").await.is_ok());
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());

    Mock::given(path("/closed/index.yaml"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let err = lookup_one(&server.uri(), "closed").await.unwrap_err();
    assert!(err.message.contains("3600s") && err.message.contains("run again later"), "{err}");
}

#[tokio::test]
async fn a_stall_past_the_timeout_is_an_error() {
    let server = serve(INDEX).await;
    Mock::given(path("/slow/index.yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(INDEX).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let err = lookup_one(&server.uri(), "slow").await.unwrap_err();
    assert!(err.message.contains("timed out"), "{err}");
}

#[tokio::test]
async fn gzip_and_redirects_are_followed() {
    let server = serve(INDEX).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(INDEX.as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    Mock::given(path("/gz/index.yaml"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-encoding", "gzip").set_body_bytes(body))
        .mount(&server)
        .await;
    assert_eq!(lookup_one(&server.uri(), "gz").await.map(|r| r.len()).ok(), Some(2));
    Mock::given(path("/moved/index.yaml"))
        .respond_with(
            ResponseTemplate::new(301).insert_header("location", format!("{}/good/index.yaml", server.uri()).as_str()),
        )
        .mount(&server)
        .await;
    assert_eq!(lookup_one(&server.uri(), "moved").await.map(|r| r.len()).ok(), Some(2));
}

#[tokio::test]
async fn truncated_endless_and_bomb_indexes_are_errors_or_harmless() {
    let truncated = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
        false,
        b"apiVersion: v1\nentries:\n",
    );
    let err = lookup_one(&truncated, "x").await.unwrap_err();
    assert!(err.message.contains("cut short") || err.message.contains("body"), "{err}");

    let endless = raw_server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", true, b"apiVersion: v1\n");
    let lookup =
        Lookup::new(context(&[], None, upkeep::lookup::http::HttpConfig { max_body: 1024 * 1024, ..test_http() }));
    let result = lookup.all([&helm(&format!("{endless}/x"), "app")]).await.into_values().next().unwrap();
    assert!(result.unwrap_err().message.contains("cap"));

    let server = serve(INDEX).await;
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..40 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    bomb.push_str("entries:\n  app:\n  - version: 2.0.0\n");
    Mock::given(path("/bomb/index.yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(bomb))
        .mount(&server)
        .await;
    assert_eq!(lookup_one(&server.uri(), "bomb").await.map(|r| r[0].version.clone()).ok().as_deref(), Some("2.0.0"));
    Mock::given(path("/notyaml/index.yaml"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops"))
        .mount(&server)
        .await;
    assert!(lookup_one(&server.uri(), "notyaml").await.unwrap_err().message.contains("entries"));
    let missing = lookup_one(&server.uri(), "nowhere").await.unwrap_err();
    assert!(missing.message.contains("404") && missing.url.ends_with("/nowhere/index.yaml"), "{missing}");
}

#[tokio::test]
async fn a_hundred_releases_of_one_repository_cost_one_request() {
    let server = serve(INDEX).await;
    let lookup = Lookup::new(context(&[], None, test_http()));
    let packages: Vec<Package> =
        (0..100).map(|i| helm(&format!("{}/good{}", server.uri(), if i % 2 == 0 { "" } else { "/" }), "app")).collect();
    let results = lookup.all(&packages).await;
    assert!(results.values().all(Result::is_ok));
    assert_eq!(server.received_requests().await.unwrap_or_default().len(), 1);
}

/// `upkeep plan` on each corpus repository with the mirror on loopback: a decision for every
/// dependency, summarised by action and reason. OCI and GitHub lookups point at a closed
/// loopback port, so they fail fast and deterministically as "versions unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_gives_every_corpus_dependency_a_decision() {
    use upkeep::app::{Versions, plan};
    use upkeep::gate::available::available;
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(Mirror { root: fixture("mirror") }).mount(&server).await;
    let mut rewrites = mirror_rewrites(&server.uri());
    rewrites.push(("oci://".into(), "http://127.0.0.1:9".into()));
    for repo in REPOS {
        let root = fixture(&format!("corpus/{repo}"));
        let scan = tokio::task::spawn_blocking({
            let root = root.clone();
            move || scan_dir(&root)
        })
        .await
        .unwrap();
        let lookup = Lookup::new(context(&rewrites, None, mirror_http()));
        let wanted: Vec<&upkeep::model::Dependency> =
            scan.dependencies.iter().filter(|d| d.skip.is_none() && d.package.is_some()).collect();
        let results = lookup.all(wanted.iter().filter_map(|d| d.package.as_ref())).await;
        let mut versions = Versions::default();
        for d in &wanted {
            let Some(p) = &d.package else { continue };
            match &results[p] {
                Ok(r) => {
                    versions.available.insert(d.id.clone(), available(d.current.as_deref().unwrap_or(""), r));
                    versions.releases.insert(d.id.clone(), Ok(r.clone()));
                }
                Err(e) => {
                    versions.releases.insert(d.id.clone(), Err(e.message.clone()));
                }
            }
        }
        let config = upkeep::config::Config::default();
        let plan = plan(&scan, &versions, &config, &upkeep::gate::history::History::default());
        assert_eq!(plan.decisions.len(), scan.dependencies.len(), "{repo}: a decision for every dependency");
        let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for d in plan.decisions.values() {
            // The reason's first words name its kind (`up to date`, `minor update`, `versions unknown`...).
            let head: String = match d.reason.split_whitespace().take(2).collect::<Vec<_>>().as_slice() {
                [kind, "update"] => format!("{kind} update"),
                _ => d.reason.split([':', '(', ';']).next().unwrap_or("").trim().chars().take(40).collect(),
            };
            *counts.entry(format!("{} — {head}", d.action.as_str())).or_default() += 1;
        }
        let text: String = counts.iter().map(|(k, v)| format!("{v:>4}  {k}\n")).collect();
        insta::assert_snapshot!(format!("plan-{repo}"), text);
    }
}

#[tokio::test]
async fn basic_auth_comes_from_host_rules_and_never_reaches_the_cache() {
    use wiremock::matchers::header;
    let server = MockServer::start().await;
    // "chartuser:s3cret-pass" in Basic.
    Mock::given(path("/private/index.yaml"))
        .and(header("authorization", "Basic Y2hhcnR1c2VyOnMzY3JldC1wYXNz"))
        .respond_with(ResponseTemplate::new(200).set_body_string(INDEX))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/private/index.yaml"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(2)
        .mount(&server)
        .await;
    let cache = tempfile::tempdir().unwrap();
    let rewrites = vec![("https://charts.private.test".to_string(), format!("{}/private", server.uri()))];
    let package = helm("https://charts.private.test", "app");

    let anonymous = Lookup::new(context(&rewrites, None, test_http()));
    let err = anonymous.all([&package]).await.into_values().next().unwrap().unwrap_err();
    assert!(err.message.contains("401"), "{err}");

    let mut ctx = context(&rewrites, Some(cache.path()), test_http());
    ctx.host_rules = vec![upkeep::lookup::HostRule {
        host: "charts.private.test".into(),
        username: Some("chartuser".into()),
        password: Some("s3cret-pass".into()),
    }];
    let releases = Lookup::new(ctx).all([&package]).await.into_values().next().unwrap().unwrap();
    assert!(!releases.is_empty());
    let mut stack = vec![cache.path().to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            files += 1;
            let bytes = std::fs::read(e.path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let name = e.file_name().to_string_lossy().to_string();
            for secret in ["s3cret-pass", "chartuser", "Y2hhcnR1c2VyOnMzY3JldC1wYXNz"] {
                assert!(!text.contains(secret) && !name.contains(secret), "{name} holds a credential");
            }
        }
    }
    assert!(files > 0, "the index was cached");
}

#[tokio::test]
async fn a_408_is_retried() {
    let server = serve(INDEX).await;
    let index = ResponseTemplate::new(200).set_body_string(INDEX);
    once_then(&server, "/slow/index.yaml", ResponseTemplate::new(408), index).await;
    assert!(lookup_one(&server.uri(), "slow").await.is_ok());
}

/// A server that answers after a pause and records how many requests it served at once.
fn concurrency_server(peak: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> String {
    use std::io::Read;
    use std::sync::atomic::AtomicUsize;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let now = std::sync::Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(64) {
            let (peak, now) = (peak.clone(), now.clone());
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(current, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(150));
                let body = INDEX.as_bytes();
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_one_host_are_bounded_but_parallel() {
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = concurrency_server(peak.clone());
    let packages: Vec<Package> = (0..8).map(|i| helm(&format!("{base}/repo{i}"), "app")).collect();
    let lookup = Lookup::new(context(&[], None, upkeep::lookup::http::HttpConfig { per_host: 3, ..test_http() }));
    let results = lookup.all(&packages).await;
    assert!(results.values().all(Result::is_ok));
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "at most 3 at once, and more than one: {peak}");
}
