//! Loopback servers for lookup tests: a static mirror with ETags (wiremock), raw TCP servers for
//! faults wiremock cannot produce (a truncated body, an endless body), and a lookup context
//! with short timeouts pointed at them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use upkeep::lookup::cache::Cache;
use upkeep::lookup::http::{Http, HttpConfig};
use upkeep::lookup::rewrite::{Rewrite, Rewrites};
use upkeep::lookup::{Context, HostRule};
use wiremock::{Request, Respond, ResponseTemplate};

/// Serves files under `root` at their relative path, with a content ETag and 304 on match.
pub(crate) struct Mirror {
    pub(crate) root: PathBuf,
}

impl Respond for Mirror {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = self.root.join(request.url.path().trim_start_matches('/'));
        let Ok(body) = std::fs::read(&path) else { return ResponseTemplate::new(404) };
        let etag =
            format!("\"{}\"", Sha256::digest(&body).iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
        let matches = request.headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str());
        if matches {
            ResponseTemplate::new(304).insert_header("etag", etag.as_str())
        } else {
            ResponseTemplate::new(200).insert_header("etag", etag.as_str()).set_body_bytes(body)
        }
    }
}

/// At `path`, answer `first` once, then `then` for good: a fault the client must retry past.
pub(crate) async fn once_then(
    server: &wiremock::MockServer,
    at: &str,
    first: ResponseTemplate,
    then: ResponseTemplate,
) {
    use wiremock::Mock;
    use wiremock::matchers::path;
    Mock::given(path(at)).respond_with(first).up_to_n_times(1).with_priority(1).mount(server).await;
    Mock::given(path(at)).respond_with(then).with_priority(2).mount(server).await;
}

/// HTTP limits small enough for tests to hit them quickly.
pub(crate) fn test_http() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(2),
        max_body: 8 * 1024 * 1024,
        retries: 2,
        backoff: Duration::from_millis(20),
        max_wait: Duration::from_secs(3),
        per_host: 4,
    }
}

/// [`test_http`] with time to distil whole corpus indexes: an index is read while it downloads,
/// inside the attempt's time, and a debug build on a busy machine needs more than 2 s for the
/// largest mirror indexes (a release build needs milliseconds).
pub(crate) fn mirror_http() -> HttpConfig {
    HttpConfig { total_timeout: Duration::from_secs(30), ..test_http() }
}

/// A lookup context: rewrites `(from, to)`, an optional cache dir, test HTTP limits.
pub(crate) fn context(rewrites: &[(String, String)], cache: Option<&Path>, http: HttpConfig) -> Context {
    Context {
        http: Http::new(http).unwrap_or_else(|e| panic!("{e}")),
        cache: cache.map_or_else(Cache::disabled, Cache::at),
        rewrites: Rewrites(rewrites.iter().map(|(f, t)| Rewrite { from: f.clone(), to: t.clone() }).collect()),
        host_rules: Vec::<HostRule>::new(),
        offline: false,
        github_api: "http://127.0.0.1:9".into(),
        github_token: None,
        github_max_pages: 3,
        oci_page_size: 1000,
    }
}

/// A server that answers every connection with `head` and then `body_for_connection`, on a
/// thread; returns its base URL. Used for a body cut short and for an endless body.
pub(crate) fn raw_server(head: &'static str, endless: bool, body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(8) {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
            if endless {
                // Bounded: stops after 64 MiB or when the client hangs up at its cap.
                let chunk = [b'#'; 64 * 1024];
                for _ in 0..1024 {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
        }
    });
    format!("http://{addr}")
}
