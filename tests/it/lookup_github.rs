//! GitHub releases through a wire-level fake of the REST API on loopback (`GITHUB_API_URL`),
//! serving the recorded release lists in `fixtures/mirror/github`: pagination, drafts,
//! prereleases, tokens, conditional requests and rate limits.

use std::sync::atomic::Ordering;

use upkeep::lookup::Lookup;
use upkeep::model::{Datasource, Package, SignalKind};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::servers::{context, test_http};
use super::util::fixture;

fn github(name: &str) -> Package {
    Package { datasource: Datasource::GithubReleases, registry: "https://github.com".into(), name: name.into() }
}

/// Pages a recorded release list 8 at a time with GitHub's `Link` header and a fixed ETag.
struct Releases {
    all: Vec<serde_json::Value>,
    base: String,
    repo: &'static str,
}

impl Respond for Releases {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some("\"v1\"") {
            return ResponseTemplate::new(304).insert_header("etag", "\"v1\"");
        }
        let page: usize =
            request.url.query_pairs().find(|(k, _)| k == "page").and_then(|(_, v)| v.parse().ok()).unwrap_or(1);
        let items: Vec<&serde_json::Value> = self.all.iter().skip((page - 1) * 8).take(8).collect();
        let mut response = ResponseTemplate::new(200).insert_header("etag", "\"v1\"").set_body_json(&items);
        if page * 8 < self.all.len() {
            let next =
                format!("<{}/repos/{}/releases?per_page=100&page={}>; rel=\"next\"", self.base, self.repo, page + 1);
            response = response.insert_header("link", next.as_str());
        }
        response
    }
}

async fn fake_github(repo: &'static str) -> MockServer {
    let server = MockServer::start().await;
    let text = std::fs::read_to_string(fixture(&format!("mirror/github/repos/{repo}/releases"))).unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    Mock::given(method("GET"))
        .and(path(format!("/repos/{repo}/releases")))
        .respond_with(Releases { all, base: server.uri(), repo })
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn pages_drafts_prereleases_and_notes() {
    let server = fake_github("fluxcd/flux2").await;
    let mut ctx = context(&[], None, test_http());
    ctx.github_api = server.uri();
    let lookup = Lookup::new(ctx);
    let releases = lookup.all([&github("fluxcd/flux2")]).await.into_values().next().unwrap().unwrap();
    let tags: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
    assert!(!tags.contains(&"v2.5.0-draft"), "drafts are dropped");
    assert_eq!(tags.len(), 10);
    assert!(releases.iter().find(|r| r.version == "v2.5.0-rc.1").is_some_and(|r| r.prerelease));
    let v223 = releases.iter().find(|r| r.version == "v2.2.3").unwrap();
    assert!(v223.published.is_some() && v223.notes.as_deref().is_some_and(|n| n.contains("patch release")));
    assert!(v223.signals.iter().any(|s| s.kind == SignalKind::Security && s.detail.contains("GHSA-2xgv-5xw7-qx8f")));
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "11 releases at 8 a page");
}

#[tokio::test]
async fn the_token_is_sent_as_a_header_and_never_shown() {
    let server = MockServer::start().await;
    Mock::given(path("/repos/k3s-io/k3s/releases"))
        .and(header("authorization", "Bearer ghp_secret123"))
        .respond_with(ResponseTemplate::new(404).set_body_string(r#"{"message":"Not Found"}"#))
        .mount(&server)
        .await;
    let mut ctx = context(&[], None, test_http());
    ctx.github_api = server.uri();
    ctx.github_token = Some("ghp_secret123".into());
    let err = Lookup::new(ctx).all([&github("k3s-io/k3s")]).await.into_values().next().unwrap().unwrap_err();
    assert!(err.message.contains("404"), "{err}");
    assert!(!err.to_string().contains("ghp_secret123") && !format!("{err:?}").contains("ghp_secret123"));
}

#[tokio::test]
async fn a_mirror_reached_by_a_rewrite_never_gets_the_github_token() {
    let server = fake_github("k3s-io/k3s").await;
    let mut ctx = context(&[("https://api.github.com".into(), server.uri())], None, test_http());
    ctx.github_api = "https://api.github.com".into();
    ctx.github_token = Some("ghp_secret123".into());
    let releases = Lookup::new(ctx).all([&github("k3s-io/k3s")]).await.into_values().next().unwrap().unwrap();
    assert_eq!(releases.len(), 21, "every page read through the mirror");
    let requests = server.received_requests().await.unwrap();
    assert!(requests.len() > 1);
    assert!(requests.iter().all(|r| r.headers.get("authorization").is_none()), "no credentials sent to the mirror");
}

#[tokio::test]
async fn a_warm_run_is_one_conditional_request() {
    let server = fake_github("k3s-io/k3s").await;
    let cache = tempfile::tempdir().unwrap();
    let mut ctx = context(&[], Some(cache.path()), test_http());
    ctx.github_api = server.uri();
    let cold = Lookup::new(ctx).all([&github("k3s-io/k3s")]).await.into_values().next().unwrap().unwrap();
    assert_eq!(cold.len(), 21);
    let mut ctx = context(&[], Some(cache.path()), test_http());
    ctx.github_api = server.uri();
    let lookup = Lookup::new(ctx);
    let warm = lookup.all([&github("k3s-io/k3s")]).await.into_values().next().unwrap().unwrap();
    assert_eq!(warm, cold);
    assert_eq!(lookup.context().http.stats.not_modified.load(Ordering::Relaxed), 1);
    assert_eq!(lookup.context().http.stats.requests.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn rate_limits_wait_for_the_reset_or_give_up_with_advice() {
    let server = fake_github("longhorn/longhorn").await;
    let reset = jiff::Timestamp::now().as_second() + 1;
    Mock::given(path("/repos/longhorn/longhorn/releases"))
        .and(query_param("per_page", "100"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_string(r#"{"message":"API rate limit exceeded"}"#),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let mut ctx = context(&[], None, test_http());
    ctx.github_api = server.uri();
    let releases = Lookup::new(ctx).all([&github("longhorn/longhorn")]).await.into_values().next().unwrap().unwrap();
    assert_eq!(releases.len(), 13);

    let limited = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600"))
        .mount(&limited)
        .await;
    let mut ctx = context(&[], None, test_http());
    ctx.github_api = limited.uri();
    let err = Lookup::new(ctx).all([&github("k3s-io/k3s")]).await.into_values().next().unwrap().unwrap_err();
    assert!(err.message.contains("600s") && err.message.contains("run again later"), "{err}");
    assert_eq!(limited.received_requests().await.unwrap().len(), 1, "no retry when the wait is past the cap");
}

/// A recorded, unedited GitHub "List releases" response (see fixtures/github/README.md): every
/// field GitHub sends, real bodies, real dates.
#[tokio::test]
async fn a_recorded_github_response_parses_with_dates_notes_and_signals() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/XAMPPRocky/octocrab/releases"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json; charset=utf-8")
                .set_body_string(std::fs::read_to_string(fixture("github/releases-recorded.json")).unwrap()),
        )
        .mount(&server)
        .await;
    let mut ctx = context(&[], None, test_http());
    ctx.github_api = server.uri();
    let releases = Lookup::new(ctx).all([&github("XAMPPRocky/octocrab")]).await.into_values().next().unwrap().unwrap();
    let tags: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(tags, ["v0.38.0", "v0.37.0"]);
    let v037 = &releases[1];
    assert_eq!(v037.published.map(|t| t.to_string()).as_deref(), Some("2024-03-27T13:57:59Z"));
    assert_eq!(v037.url.as_deref(), Some("https://github.com/XAMPPRocky/octocrab/releases/tag/v0.37.0"));
    assert!(v037.notes.as_deref().is_some_and(|n| n.contains("Change `Rate::reset` to `u64`")));
    assert!(
        v037.signals.iter().any(|s| s.kind == SignalKind::Breaking),
        "`[**breaking**]` is read: {:?}",
        v037.signals
    );
    assert!(!releases[0].signals.iter().any(|s| s.kind == SignalKind::Breaking));
}
