//! OCI lookups against a real registry (Debian's docker-registry on loopback): tag lists with
//! pagination, non-version tags ignored, htpasswd basic auth; and the bearer-token challenge
//! flow of ghcr.io and Docker Hub against a loopback token endpoint.

use upkeep::lookup::http::HttpConfig;
use upkeep::lookup::{HostRule, Lookup};
use upkeep::model::{Datasource, Package};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::registry::Registry;
use super::servers::{context, test_http};

fn oci(reference: &str) -> Package {
    let (registry, name) = reference.rsplit_once('/').unwrap();
    Package { datasource: Datasource::Oci, registry: registry.into(), name: name.into() }
}

/// `oci://ghcr.io/...` rewritten to the loopback registry, as an air-gapped mirror would be.
fn rewrites(base: &str) -> Vec<(String, String)> {
    vec![("oci://ghcr.io".into(), format!("{base}/ghcr.io"))]
}

fn versions(result: &Result<upkeep::model::SharedReleases, upkeep::lookup::LookupError>) -> Vec<String> {
    result.as_ref().unwrap_or_else(|e| panic!("{e}")).iter().map(|r| r.version.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_from_a_real_registry_keep_only_versions() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None)).await.unwrap();
    let tags = ["1.0.0", "1.1.0", "1.2.0", "1.10.0", "2.0.0-rc.1", "latest", "sha-0a1b2c3", "1.9.3_build.2"];
    registry.push_chart("ghcr.io/org/charts/app", &tags).await;
    let lookup = Lookup::new(context(&rewrites(&registry.base), None, test_http()));
    let result = lookup.all([&oci("oci://ghcr.io/org/charts/app")]).await.into_values().next().unwrap();
    assert_eq!(versions(&result), ["2.0.0-rc.1", "1.10.0", "1.9.3_build.2", "1.2.0", "1.1.0", "1.0.0"]);
    let missing = lookup.all([&oci("oci://ghcr.io/org/charts/nothing")]).await.into_values().next().unwrap();
    assert!(missing.unwrap_err().message.contains("404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registries_need_and_accept_credentials() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(Some(("robot", "s3cret-pass")))).await.unwrap();
    registry.push_chart("ghcr.io/private/app", &["0.1.0", "0.2.0"]).await;
    let package = oci("oci://ghcr.io/private/app");

    let anonymous = Lookup::new(context(&rewrites(&registry.base), None, test_http()));
    let err = anonymous.all([&package]).await.into_values().next().unwrap().unwrap_err();
    assert!(err.message.contains("hostRules"), "{err}");

    let mut ctx = context(&rewrites(&registry.base), None, test_http());
    ctx.host_rules = vec![HostRule {
        host: "ghcr.io/private".into(),
        username: Some("robot".into()),
        password: Some("s3cret-pass".into()),
    }];
    let lookup = Lookup::new(ctx);
    let result = lookup.all([&package]).await.into_values().next().unwrap();
    assert_eq!(versions(&result), ["0.2.0", "0.1.0"]);

    let mut ctx = context(&rewrites(&registry.base), None, test_http());
    ctx.host_rules =
        vec![HostRule { host: "ghcr.io".into(), username: Some("robot".into()), password: Some("bad-pass-9".into()) }];
    let err = Lookup::new(ctx).all([&package]).await.into_values().next().unwrap().unwrap_err();
    assert!(err.message.contains("401") && !err.to_string().contains("bad-pass-9"), "{err}");
}

/// distribution 2.8 (Debian's) returns every tag in one page whatever `n` says, so paging is
/// exercised against a loopback server that pages the way distribution 3 and ghcr.io do.
#[tokio::test]
async fn tag_lists_are_followed_across_link_pages() {
    let server = MockServer::start().await;
    let page = |tags: &str, next: Option<&str>| {
        let mut r = ResponseTemplate::new(200).set_body_string(format!(r#"{{"name":"org/app","tags":[{tags}]}}"#));
        if let Some(next) = next {
            r = r.insert_header("link", format!("<{next}>; rel=\"next\"").as_str());
        }
        r
    };
    Mock::given(path("/v2/org/app/tags/list"))
        .and(query_param("n", "2"))
        .and(query_param("last", "1.1.0"))
        .respond_with(page(r#""1.2.0","latest""#, Some("/v2/org/app/tags/list?n=2&last=latest")))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/org/app/tags/list"))
        .and(query_param("last", "latest"))
        .respond_with(page(r#""2.0.0""#, None))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/org/app/tags/list"))
        .respond_with(page(r#""1.0.0","1.1.0""#, Some("/v2/org/app/tags/list?n=2&last=1.1.0")))
        .with_priority(2)
        .mount(&server)
        .await;
    let mut ctx = context(&[("oci://registry.test".to_string(), server.uri())], None, test_http());
    ctx.oci_page_size = 2;
    let lookup = Lookup::new(ctx);
    let result = lookup.all([&oci("oci://registry.test/org/app")]).await.into_values().next().unwrap();
    assert_eq!(versions(&result), ["2.0.0", "1.2.0", "1.1.0", "1.0.0"]);
    assert_eq!(server.received_requests().await.unwrap_or_default().len(), 3);
}

/// `org/app`'s tag list answers `tags` to `Bearer <token>` and a 401 `challenge` to anyone else.
async fn behind_a_token(server: &MockServer, challenge: &str, token: &str, tags: &str) {
    Mock::given(path("/v2/org/app/tags/list"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string(tags))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(path("/v2/org/app/tags/list"))
        .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", challenge))
        .with_priority(2)
        .mount(server)
        .await;
}

#[tokio::test]
async fn bearer_challenges_are_answered_with_a_token() {
    let server = MockServer::start().await;
    let challenge =
        format!(r#"Bearer realm="{}/token",service="registry.test",scope="repository:org/app:pull""#, server.uri());
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "registry.test"))
        .and(query_param("scope", "repository:org/app:pull"))
        .and(header("authorization", "Basic dXNlcjpwYXQ="))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"tok-123","expires_in":300}"#))
        .mount(&server)
        .await;
    behind_a_token(&server, &challenge, "tok-123", r#"{"name":"org/app","tags":["3.0.0","3.1.0","main"]}"#).await;
    let rules = vec![("oci://registry.test".to_string(), server.uri())];
    let mut ctx = context(&rules, None, HttpConfig { ..test_http() });
    ctx.host_rules =
        vec![HostRule { host: "registry.test".into(), username: Some("user".into()), password: Some("pat".into()) }];
    let result = Lookup::new(ctx).all([&oci("oci://registry.test/org/app")]).await.into_values().next().unwrap();
    assert_eq!(versions(&result), ["3.1.0", "3.0.0"]);
}

/// ghcr.io's flow for public images: a 401 challenge, an anonymous token request (no
/// credentials at all), then the tag list with that token.
#[tokio::test]
async fn anonymous_bearer_challenges_get_an_anonymous_token() {
    let server = MockServer::start().await;
    let challenge =
        format!(r#"Bearer realm="{}/token",service="registry.test",scope="repository:org/app:pull""#, server.uri());
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("scope", "repository:org/app:pull"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"anon-1"}"#))
        .mount(&server)
        .await;
    behind_a_token(&server, &challenge, "anon-1", r#"{"name":"org/app","tags":["0.9.0","1.0.0"]}"#).await;
    let rules = vec![("oci://registry.test".to_string(), server.uri())];
    let result = Lookup::new(context(&rules, None, test_http()))
        .all([&oci("oci://registry.test/org/app")])
        .await
        .into_values()
        .next()
        .unwrap();
    assert_eq!(versions(&result), ["1.0.0", "0.9.0"]);
    let token_requests: Vec<_> =
        server.received_requests().await.unwrap().into_iter().filter(|r| r.url.path() == "/token").collect();
    assert_eq!(token_requests.len(), 1);
    assert!(token_requests[0].headers.get("authorization").is_none(), "no credentials were sent");
}

/// An OCIRepository pinned by tag *and* digest: `upkeep run` asks the registry (a real one) for
/// the new tag's manifest digest and moves both, so Flux pulls what the PR says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_pinned_beside_a_tag_moves_with_it() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None)).await.unwrap();
    registry.push_chart("ghcr.io/stefanprodan/charts/podinfo", &["6.5.3", "6.5.4"]).await;
    let client = reqwest::Client::new();
    let digest_of = |tag: &str| {
        let request = client
            .get(format!("{}/v2/ghcr.io/stefanprodan/charts/podinfo/manifests/{tag}", registry.base))
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        async move {
            let response = request.send().await.unwrap();
            response.headers()["docker-content-digest"].to_str().unwrap().to_string()
        }
    };
    let (old, new) = (digest_of("6.5.3").await, digest_of("6.5.4").await);
    assert_ne!(old, new);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let source = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: podinfo\n  namespace: flux-system\nspec:\n  interval: 10m\n  url: oci://ghcr.io/stefanprodan/charts/podinfo\n  ref:\n    tag: 6.5.3 # with its digest\n    digest: {old}\n"
    );
    std::fs::write(repo.join("podinfo.yaml"), &source).unwrap();
    std::fs::write(
        repo.join("upkeep.yaml"),
        format!("registryRewrites:\n  - {{from: 'oci://ghcr.io', to: '{}/ghcr.io'}}\n", registry.base),
    )
    .unwrap();
    let (repo2, cache) = (repo.clone(), dir.path().join("cache"));
    let (git, _) =
        tokio::task::spawn_blocking(move || super::run_scenarios::commit_and_run(&repo2, &cache)).await.unwrap();
    let branch = git.find_branch("upkeep/ocirepository-flux-system-podinfo", git2::BranchType::Local).unwrap();
    let tree = branch.get().peel_to_commit().unwrap().tree().unwrap();
    let blob = git.find_blob(tree.get_path(std::path::Path::new("podinfo.yaml")).unwrap().id()).unwrap();
    let written = String::from_utf8(blob.content().to_vec()).unwrap();
    assert_eq!(written, source.replace("6.5.3", "6.5.4").replace(&old, &new), "tag and digest, nothing else");
}
