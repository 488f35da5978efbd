//! The one HTTP client every datasource shares, and the manners it keeps.
//!
//! - **Retries** follow the one policy upkeep has ([`crate::retry`], shared with the GitHub
//!   forge): backoff with jitter on connection errors, timeouts, truncated bodies, 5xx, 408;
//!   429s and 403 rate limits wait for `Retry-After` (seconds or an HTTP date) or
//!   `x-ratelimit-reset` up to a cap, and past the cap fail with a message saying to run again later.
//! - **Bounds**: a connect timeout, a total timeout per attempt, a cap on body size (checked
//!   while streaming, after gzip decoding, so neither an endless index nor a gzip bomb can
//!   exhaust memory), and a limit on concurrent requests per host.
//! - **Conditional requests**: callers pass the validators they cached; a 304 comes back as
//!   [`Body::NotModified`] without a body.
//! - **`file://`** URLs read from disk, so a registry rewrite can point at a local mirror.
//! - **Secrets** travel only in headers built from [`Auth`]; URLs in errors and logs go through
//!   [`redact`], so a token never shows up in either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use tokio::sync::Semaphore;

use crate::retry::{self, Signal};

/// Limits and manners of the client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for one attempt, body included.
    pub total_timeout: Duration,
    /// Largest body accepted (after decompression).
    pub max_body: u64,
    /// Attempts after the first.
    pub retries: u32,
    /// First backoff; doubles each retry, with up to 50 % jitter.
    pub backoff: Duration,
    /// Longest wait a `Retry-After` or rate-limit reset may impose.
    pub max_wait: Duration,
    /// Concurrent requests per host.
    pub per_host: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
            max_body: 64 * 1024 * 1024,
            retries: 3,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(60),
            per_host: 6,
        }
    }
}

impl HttpConfig {
    /// The defaults, with `UPKEEP_HTTP_TIMEOUT_SECONDS` (per attempt) and `UPKEEP_HTTP_RETRIES`
    /// from the environment: a slow mirror may need more time, a CI job less patience.
    ///
    /// A value that is set but not a number is an error naming the variable: ignored, it would
    /// leave the user believing the setting took effect.
    pub fn from_env() -> Result<HttpConfig, String> {
        let number = |k: &str| -> Result<Option<u64>, String> {
            match std::env::var(k) {
                Err(std::env::VarError::NotPresent) => Ok(None),
                Ok(v) if v.trim().is_empty() => Ok(None),
                Ok(v) => v.trim().parse::<u64>().map(Some).map_err(|_| format!("{k}=`{v}` is not a whole number")),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!("{k} is not valid UTF-8")),
            }
        };
        let mut c = HttpConfig::default();
        match number("UPKEEP_HTTP_TIMEOUT_SECONDS")? {
            Some(0) => return Err("UPKEEP_HTTP_TIMEOUT_SECONDS=`0`: a timeout must be at least one second".into()),
            Some(s) => {
                c.total_timeout = Duration::from_secs(s);
                c.connect_timeout = c.connect_timeout.min(c.total_timeout);
            }
            None => {}
        }
        if let Some(n) = number("UPKEEP_HTTP_RETRIES")? {
            c.retries = u32::try_from(n.min(10)).unwrap_or(3);
        }
        Ok(c)
    }
}

/// Credentials for one request.
#[derive(Clone, Default)]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// `Authorization: Bearer`.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Basic { .. } => "Auth::Basic(..)",
            Auth::Bearer(_) => "Auth::Bearer(..)",
        })
    }
}

/// Validators from a cached response.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

/// A GET to make.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Absolute URL (`http`, `https` or `file`).
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// `Accept` header.
    pub accept: Option<&'static str>,
    /// Extra headers (API versions).
    pub headers: Vec<(&'static str, String)>,
    /// Validators for a conditional request.
    pub validators: Option<Validators>,
    /// Send `HEAD` instead of `GET` (headers only: what a digest lookup needs, and what
    /// registries such as Docker Hub do not count as a pull).
    pub head: bool,
}

/// What came back.
#[derive(Debug)]
pub enum Body {
    /// A full body.
    Full(Vec<u8>),
    /// 304: the cached copy is current.
    NotModified,
    /// A 2xx body handed to a [`BodySink`] as it arrived, never held here.
    Streamed,
}

/// Whether a [`BodySink`] wants the rest of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    More,
    /// Stop: the sink has what it needs, or has given up on this body.
    Stop,
}

/// Where [`Http::get_streamed`] hands a 2xx body, piece by piece, so a caller can distil a large
/// body while it downloads instead of holding it whole.
pub trait BodySink: Send {
    /// A new attempt begins: forget whatever an earlier (failed) attempt fed.
    fn restart(&mut self);
    /// The next piece of the body (after gzip decoding).
    fn chunk(&mut self, bytes: &[u8]) -> Flow;
}

/// The sink an attempt writes to, shared across the retry loop's attempts.
type SharedSink<'s> = Mutex<&'s mut dyn BodySink>;

/// Pieces a `file://` body is read in, like a network body's chunks.
const FILE_CHUNK: usize = 64 * 1024;

/// A response: status, headers, body.
#[derive(Debug)]
pub struct Response {
    /// Final URL after redirects (redacted).
    pub url: String,
    /// HTTP status (200 for a file that exists, 404 for one that does not).
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Validators to cache.
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self.header("etag").map(str::to_string),
            last_modified: self.header("last-modified").map(str::to_string),
        }
    }
}

/// A request that failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {message}")]
pub struct HttpError {
    /// The URL, redacted.
    pub url: String,
    /// What happened and what to do.
    pub message: String,
}

/// Counters for benchmarks and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests sent (each attempt counts).
    pub requests: AtomicU64,
    /// Body bytes received.
    pub bytes: AtomicU64,
    /// 304 responses.
    pub not_modified: AtomicU64,
}

/// The shared client.
#[derive(Debug)]
pub struct Http {
    client: reqwest::Client,
    config: HttpConfig,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// What was sent and received.
    pub stats: Stats,
}

/// Remove credentials and query tokens from a URL before showing it ([`crate::redact::url`]).
pub fn redact(url: &str) -> String {
    crate::redact::url(url)
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, h)| h).to_ascii_lowercase()
}

/// One attempt's outcome for the retry loop: what it says about retrying, and the response or
/// a failure that retrying cannot mend (a body over the cap), when the attempt got that far.
type Attempt = (Signal, Option<Result<Response, String>>);

impl Http {
    /// Build the client. Installs ring as rustls's crypto provider if none is installed yet.
    pub fn new(config: HttpConfig) -> Result<Http, HttpError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("upkeep/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .timeout(config.total_timeout)
            .build()
            .map_err(|e| HttpError { url: String::new(), message: format!("cannot build the HTTP client: {e}") })?;
        Ok(Http { client, config, hosts: Mutex::new(HashMap::new()), stats: Stats::default() })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    fn permit_pool(&self, url: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.entry(host_of(url)).or_insert_with(|| Arc::new(Semaphore::new(self.config.per_host.max(1)))).clone()
    }

    /// GET with retries (the shared policy of [`crate::retry`]). Non-2xx statuses that are not
    /// retried (401, 404, ...) are returned as responses, so callers can act on them (the OCI
    /// token flow reads a 401's challenge).
    pub async fn get(&self, request: &Request) -> Result<Response, HttpError> {
        self.get_inner(request, None).await
    }

    /// [`Http::get`], handing a 2xx body to `sink` as it arrives ([`Body::Streamed`]); other
    /// statuses come back with their body as usual. The cap on body size still applies.
    pub async fn get_streamed(&self, request: &Request, sink: &mut dyn BodySink) -> Result<Response, HttpError> {
        let shared: SharedSink<'_> = Mutex::new(sink);
        self.get_inner(request, Some(&shared)).await
    }

    async fn get_inner(&self, request: &Request, sink: Option<&SharedSink<'_>>) -> Result<Response, HttpError> {
        if let Some(path) = request.url.strip_prefix("file://") {
            return match sink {
                Some(sink) => self.stream_file(&request.url, path, sink).await,
                None => self.read_file(&request.url, path).await,
            };
        }
        let pool = self.permit_pool(&request.url);
        let policy = retry::Policy {
            retries: self.config.retries,
            backoff: self.config.backoff,
            max_wait: self.config.max_wait,
            bare_limit_wait: None,
            server: "the server",
        };
        let answer = retry::retrying(&policy, true, &redact(&request.url), || async {
            // The permit is held for the attempt only, not across the wait before a retry.
            let Ok(_permit) = pool.acquire().await else {
                return (Signal::no_answer("the host's request pool closed"), None);
            };
            self.attempt(request, sink).await
        })
        .await;
        match answer {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(message)) | Err(message) => Err(HttpError { url: redact(&request.url), message }),
        }
    }

    async fn attempt(&self, request: &Request, sink: Option<&SharedSink<'_>>) -> Attempt {
        let mut builder = if request.head { self.client.head(&request.url) } else { self.client.get(&request.url) };
        if let Some(accept) = request.accept {
            builder = builder.header(header::ACCEPT, accept);
        }
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        builder = match &request.auth {
            Auth::None => builder,
            Auth::Basic { username, password } => builder.basic_auth(username, Some(password)),
            Auth::Bearer(token) => builder.bearer_auth(token),
        };
        if let Some(v) = &request.validators {
            if let Some(etag) = &v.etag {
                builder = builder.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                builder = builder.header(header::IF_MODIFIED_SINCE, lm);
            }
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return (Signal::no_answer(describe(&e)), None),
        };
        let status = response.status();
        let url = redact(response.url().as_str());
        let headers = response.headers().clone();
        if status == StatusCode::NOT_MODIFIED {
            self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
            let signal = Signal::answer(304, &headers);
            return (signal, Some(Ok(Response { url, status: 304, headers, body: Body::NotModified })));
        }
        let signal = Signal::answer(status.as_u16(), &headers);
        if signal.may_retry() {
            // Its body is an error page: not worth reading when the request goes again.
            return (signal, None);
        }
        if let Some(len) = response.content_length()
            && len > self.config.max_body
        {
            return (signal, Some(Err(format!("body of {len} bytes is over the {}-byte cap", self.config.max_body))));
        }
        let sink = sink.filter(|_| status.is_success());
        if let Some(sink) = sink {
            lock(sink).restart();
        }
        let mut body = Vec::new();
        let mut read = 0u64;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    self.stats.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    read += chunk.len() as u64;
                    if read > self.config.max_body {
                        let message = format!(
                            "body is over the {}-byte cap; the server sent more than any real index needs",
                            self.config.max_body
                        );
                        return (signal, Some(Err(message)));
                    }
                    match sink {
                        // The lock is taken and released within the chunk: never across an await.
                        Some(sink) if lock(sink).chunk(&chunk) == Flow::Stop => break,
                        Some(_) => {}
                        None => body.extend_from_slice(&chunk),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return (Signal::no_answer(format!("reading the body failed: {}", describe(&e))), None);
                }
            }
        }
        let body = if sink.is_some() { Body::Streamed } else { Body::Full(body) };
        (signal, Some(Ok(Response { url, status: status.as_u16(), headers, body })))
    }

    /// A `file://` body read piece by piece into `sink`, as a download would arrive.
    async fn stream_file(&self, url: &str, path: &str, sink: &SharedSink<'_>) -> Result<Response, HttpError> {
        use tokio::io::AsyncReadExt;
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let fail = |message: String| HttpError { url: redact(url), message };
        let mut file = match tokio::fs::File::open(path).await {
            Ok(f) if f.metadata().await.is_ok_and(|m| m.is_file()) => f,
            _ => {
                return Ok(Response {
                    url: redact(url),
                    status: 404,
                    headers: HeaderMap::new(),
                    body: Body::Full(Vec::new()),
                });
            }
        };
        lock(sink).restart();
        let mut buf = vec![0u8; FILE_CHUNK];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(|e| fail(format!("cannot read: {e}")))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if read > self.config.max_body {
                return Err(fail(format!("file is over the {}-byte cap", self.config.max_body)));
            }
            if lock(sink).chunk(&buf[..n]) == Flow::Stop {
                break;
            }
        }
        Ok(Response { url: redact(url), status: 200, headers: HeaderMap::new(), body: Body::Streamed })
    }

    async fn read_file(&self, url: &str, path: &str) -> Result<Response, HttpError> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let (status, body) = match tokio::fs::metadata(path).await {
            Ok(m) if m.len() > self.config.max_body => {
                return Err(HttpError {
                    url: redact(url),
                    message: format!("file of {} bytes is over the {}-byte cap", m.len(), self.config.max_body),
                });
            }
            Ok(m) if m.is_file() => match tokio::fs::read(path).await {
                Ok(bytes) => (200, bytes),
                Err(e) => return Err(HttpError { url: redact(url), message: format!("cannot read: {e}") }),
            },
            _ => (404, Vec::new()),
        };
        self.stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(Response { url: redact(url), status, headers: HeaderMap::new(), body: Body::Full(body) })
    }
}

fn lock<'a, 's>(sink: &'a SharedSink<'s>) -> std::sync::MutexGuard<'a, &'s mut dyn BodySink> {
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

/// A reqwest error without its URL (reqwest's `Display` includes it, and a URL can carry a
/// secret): what kind of failure, then the innermost cause.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body was cut short or malformed"
    } else {
        "request failed"
    };
    // reqwest's Display includes the URL; keep only the cause chain, which does not.
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { kind.to_string() } else { format!("{kind}: {cause}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_and_token_parameters() {
        assert_eq!(
            redact("https://user:secret@charts.example.com/index.yaml"),
            "https://charts.example.com/index.yaml"
        );
        assert_eq!(
            redact("https://auth.example.com/token?service=x&token=abc&scope=repo"),
            "https://auth.example.com/token?service=x&token=REDACTED&scope=repo"
        );
    }
}

/// The `rel="next"` target of a `Link` header, resolved against `base` (`scheme://host`) when
/// it is a path (the distribution API returns paths; GitHub returns absolute URLs).
pub fn next_link(headers: &HeaderMap, base: &str) -> Option<String> {
    let value = headers.get(header::LINK)?.to_str().ok()?;
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        if !is_next {
            return None;
        }
        if target.starts_with('/') {
            return Some(format!("{}{target}", base.trim_end_matches('/')));
        }
        // Credentials go with every page: never follow a link to another origin.
        if origin(target) != origin(base) {
            tracing::warn!("not following a next-page link to another host: {}", redact(target));
            return None;
        }
        Some(target.to_string())
    })
}

/// `scheme://host:port` of a URL, for same-origin checks.
/// `scheme://host:port` of a URL (the scheme's default port written out, user info dropped),
/// for same-origin checks before credentials go anywhere.
pub fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(format!("{}://{}:{}", u.scheme(), u.host_str()?, u.port_or_known_default()?))
}

#[cfg(test)]
mod link_tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn next_links_to_another_host_are_not_followed() {
        let mut h = HeaderMap::new();
        h.insert(header::LINK, HeaderValue::from_static("<https://evil.example/steal?page=2>; rel=\"next\""));
        assert_eq!(next_link(&h, "https://api.github.com"), None);
        h.insert(
            header::LINK,
            HeaderValue::from_static("<https://api.github.com/repositories/1/releases?page=2>; rel=\"next\""),
        );
        assert!(next_link(&h, "https://api.github.com").is_some());
    }

    #[test]
    fn follows_relative_and_absolute_next_links() {
        let mut h = HeaderMap::new();
        h.insert(header::LINK, HeaderValue::from_static("</v2/app/tags/list?last=b&n=2>; rel=\"next\""));
        assert_eq!(
            next_link(&h, "http://127.0.0.1:5000").as_deref(),
            Some("http://127.0.0.1:5000/v2/app/tags/list?last=b&n=2")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(next_link(&h, "https://api.github.com").as_deref(), Some("https://api.github.com/x?page=2"));
        assert_eq!(next_link(&HeaderMap::new(), ""), None);
    }
}
