//! Progress a person sees (issue 12.7), asserted without a terminal: the lookups report "n of
//! m sources" through the `Progress` seam (a `Recorded` here), and the binary draws nothing
//! on stderr when it is not a terminal, while `UPKEEP_PROGRESS=log` shows what a bar would say.

use upkeep::lookup::Lookup;
use upkeep::model::{Datasource, Package};
use upkeep::progress::{Event, Recorded};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::servers::{context, test_http};
use super::util::fixture;

fn helm(registry: &str, name: &str) -> Package {
    Package { datasource: Datasource::Helm, registry: registry.into(), name: name.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_report_n_of_m_distinct_sources_then_finish() {
    let server = MockServer::start().await;
    for (route, file) in [
        ("/nginx/index.yaml", "mirror/kubernetes.github.io/ingress-nginx/index.yaml"),
        ("/longhorn/index.yaml", "mirror/charts.longhorn.io/index.yaml"),
    ] {
        let body = std::fs::read_to_string(fixture(file)).unwrap();
        Mock::given(path(route)).respond_with(ResponseTemplate::new(200).set_body_string(body)).mount(&server).await;
    }
    let lookup = Lookup::new(context(&[], None, test_http()));
    let (nginx, longhorn) = (format!("{}/nginx", server.uri()), format!("{}/longhorn", server.uri()));
    // Three dependencies, two distinct sources: the count is of sources, each asked once.
    let packages = [helm(&nginx, "ingress-nginx"), helm(&longhorn, "longhorn"), helm(&nginx, "ingress-nginx")];
    let recorded = Recorded::default();
    let results = lookup.all_reporting(packages.iter(), &recorded).await;
    assert_eq!(results.len(), 2);
    let events = recorded.events();
    assert_eq!(events.len(), 3, "{events:?}");
    for (i, e) in events[..2].iter().enumerate() {
        match e {
            Event::Lookup { done, total, source } => {
                assert_eq!((*done, *total), (i + 1, 2), "{events:?}");
                assert!(["ingress-nginx", "longhorn"].contains(&source.as_str()), "a name, never a URL: {source}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(events[2], Event::Finished);
}

#[test]
fn a_scan_into_a_pipe_draws_nothing_and_the_log_mode_says_what_a_bar_would() {
    let sb = super::run::Sandbox::example();
    let scan = |env: &[(&str, &str)]| super::verify_support::upkeep(&sb, &["scan", ".", "--format", "table"], env);
    let quiet = scan(&[]);
    assert!(quiet.status.success(), "{}", super::verify_support::text(&quiet));
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains('\r'), "no bar on a pipe: {stderr:?}");
    assert!(!stderr.contains("looked up"), "{stderr}");

    let logged = scan(&[("UPKEEP_PROGRESS", "log"), ("RUST_LOG", "info")]);
    let stderr = String::from_utf8_lossy(&logged.stderr);
    assert!(stderr.contains("progress: looked up 1 of "), "{stderr}");
}
