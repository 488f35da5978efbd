//! Runs the user's HTTP and TCP checks (`checks:` in the rules) for a merge, and says what each
//! got: a second evidence source beside the cluster, consulted by the verifier once an update is
//! reconciled. It only probes and reports; the verdict decides.
//!
//! Each check is tried once plus its retries within one observation, with a short pause between
//! attempts, and its last result is what lands in the evidence. Header values read from the
//! environment are marked sensitive and never appear in a result, a log line or an error: a
//! result names the check by its URL without user info or query values.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::evidence::{Blind, CheckResult};
use crate::gate::checks::{Check, CheckSpec, HeaderSource, HttpCheck, RETRIES, TcpCheck, display_name};

/// The most body read to look for the expected substring.
const BODY_MAX: usize = 1 << 20;
/// The pause after a failed attempt grows by this much per attempt, up to [`PAUSE_MAX`].
const PAUSE_STEP: Duration = Duration::from_millis(500);
const PAUSE_MAX: Duration = Duration::from_secs(3);

/// Why the checks cannot run at all.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP client for the checks cannot be built: {0}")]
pub struct ChecksError(String);

/// One check, ready to run: its headers read from the environment, or why they could not be.
struct Probe {
    spec: CheckSpec,
    name: String,
    headers: Result<HeaderMap, String>,
}

/// The checks of every merge a pass looks at.
pub struct Checks {
    probes: Vec<Probe>,
    by_commit: BTreeMap<String, Vec<usize>>,
    client: reqwest::Client,
    insecure: reqwest::Client,
    /// Why checks that were due could not run, each once: a merge already verified does not
    /// make a missing variable an error on every later pass.
    problems: std::sync::Mutex<Vec<String>>,
}

impl Checks {
    /// The checks for each merge commit (the rules matching its updates, as the caller found
    /// them). A check named by several merges is built once. Header variables are read now.
    pub fn new(per_commit: Vec<(String, Vec<CheckSpec>)>) -> Result<Checks, ChecksError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .user_agent(concat!("upkeep/", env!("CARGO_PKG_VERSION"), " (check)"))
                // A 3xx is an answer like any other (the default range passes it), as with
                // Kubernetes' httpGet probes; following it could leave the host the user named.
                .redirect(reqwest::redirect::Policy::none())
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| ChecksError(e.to_string()))
        };
        let mut probes: Vec<Probe> = Vec::new();
        let mut by_commit = BTreeMap::new();
        for (commit, specs) in per_commit {
            let mut indices: Vec<usize> = Vec::new();
            for spec in specs {
                let index = match probes.iter().position(|p| p.spec.check == spec.check) {
                    Some(i) => i,
                    None => {
                        probes.push(Probe { name: display_name(&spec.check), headers: headers(&spec), spec });
                        probes.len() - 1
                    }
                };
                if !indices.contains(&index) {
                    indices.push(index);
                }
            }
            if !indices.is_empty() {
                by_commit.insert(commit, indices);
            }
        }
        Ok(Checks { probes, by_commit, client: build(false)?, insecure: build(true)?, problems: Default::default() })
    }

    /// Whether any check applies to the merge.
    pub fn applies(&self, commit: &str) -> bool {
        self.by_commit.contains_key(commit)
    }

    /// Checks that were due and could not run because a header variable is missing: one line
    /// each, naming the rule and the variable (never a value).
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Run the merge's checks now, concurrently. A check that cannot run (a missing variable)
    /// is blindness, not failure: the update is not at fault.
    pub async fn run(&self, commit: &str) -> (Vec<CheckResult>, Vec<Blind>) {
        let Some(indices) = self.by_commit.get(commit) else { return (Vec::new(), Vec::new()) };
        let mut blind = Vec::new();
        let mut runs = Vec::new();
        for probe in indices.iter().filter_map(|i| self.probes.get(*i)) {
            match &probe.headers {
                Ok(headers) => runs.push(self.probe(probe, headers)),
                Err(why) => {
                    if let Ok(mut seen) = self.problems.lock()
                        && !seen.contains(why)
                    {
                        seen.push(why.clone());
                    }
                    blind.push(Blind { what: format!("check {}", probe.name), reason: why.clone() });
                }
            }
        }
        (futures::future::join_all(runs).await, blind)
    }

    /// One check with its retries; the last attempt's result.
    async fn probe(&self, probe: &Probe, headers: &HeaderMap) -> CheckResult {
        let retries = match &probe.spec.check {
            Check::Http(h) => h.retries,
            Check::Tcp(_) => RETRIES,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let got = match &probe.spec.check {
                Check::Http(h) => self.http_once(h, headers).await,
                Check::Tcp(t) => tcp_once(t).await,
            };
            let done = got.ok || attempts > retries;
            if done {
                tracing::debug!(check = %probe.name, ok = got.ok, detail = %got.detail, attempts, "check");
                return CheckResult {
                    name: probe.name.clone(),
                    origin: probe.spec.origin.clone(),
                    ok: got.ok,
                    status: got.status,
                    detail: got.detail,
                    attempts,
                    at: Some(Timestamp::now()),
                };
            }
            tokio::time::sleep((PAUSE_STEP * attempts).min(PAUSE_MAX)).await;
        }
    }

    async fn http_once(&self, h: &HttpCheck, headers: &HeaderMap) -> Got {
        let client = if h.insecure_skip_verify { &self.insecure } else { &self.client };
        let method = reqwest::Method::from_bytes(h.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let sent = client.request(method, &h.url).headers(headers.clone()).timeout(h.timeout).send().await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Got::failed(None, describe(&e, h.timeout)),
        };
        let status = response.status();
        let code = status.as_u16();
        let said = format!("{code} {}", status.canonical_reason().unwrap_or("")).trim_end().to_string();
        if !h.status.contains(code) {
            return Got::failed(Some(code), format!("expected status {}, got {said}", h.status));
        }
        let Some(want) = &h.body else { return Got { ok: true, status: Some(code), detail: format!("status {said}") } };
        let mut body: Vec<u8> = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(BODY_MAX - body.len())]);
                    if body.len() >= BODY_MAX {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return Got::failed(Some(code), format!("status {said}, then {}", describe(&e, h.timeout))),
            }
        }
        if String::from_utf8_lossy(&body).contains(want.as_str()) {
            Got { ok: true, status: Some(code), detail: format!("status {said}, body contains `{want}`") }
        } else {
            Got::failed(Some(code), format!("status {said}, but the body does not contain `{want}`"))
        }
    }
}

/// What one attempt got.
struct Got {
    ok: bool,
    status: Option<u16>,
    detail: String,
}

impl Got {
    fn failed(status: Option<u16>, detail: String) -> Got {
        Got { ok: false, status, detail }
    }
}

async fn tcp_once(t: &TcpCheck) -> Got {
    match tokio::time::timeout(t.timeout, tokio::net::TcpStream::connect(t.address.as_str())).await {
        Ok(Ok(_)) => Got { ok: true, status: None, detail: "connected".into() },
        Ok(Err(e)) => Got::failed(None, io_said(&e)),
        Err(_) => Got::failed(None, format!("no connection within {}s", t.timeout.as_secs())),
    }
}

fn io_said(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// A request error in a few words, without the URL (which may carry a query secret): the
/// innermost cause (`connection refused`, a certificate problem), or the timeout.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", timeout.as_secs());
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut last = None;
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io_said(io);
        }
        last = Some(c.to_string());
        cause = c.source();
    }
    let kind = if e.is_connect() { "cannot connect" } else { "request failed" };
    match last {
        Some(why) => format!("{kind}: {why}"),
        None => kind.to_string(),
    }
}

/// The request headers of a check: plain values as written, environment values read now and
/// marked sensitive (so no debug output of the request shows them).
fn headers(spec: &CheckSpec) -> Result<HeaderMap, String> {
    let Check::Http(h) = &spec.check else { return Ok(HeaderMap::new()) };
    let mut map = HeaderMap::new();
    for (name, source) in &h.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{} ({}): `{name}` is not a header name", spec.path, spec.origin))?;
        let value = match source {
            HeaderSource::Plain(v) => HeaderValue::from_str(v)
                .map_err(|_| format!("{} ({}): header {name} has an invalid value", spec.path, spec.origin))?,
            HeaderSource::Env(var) => {
                let text = std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!(
                        "{} ({}): header {name} reads the environment variable {var}, which is not set",
                        spec.path, spec.origin
                    )
                })?;
                let mut value = HeaderValue::from_str(&text).map_err(|_| {
                    format!(
                        "{} ({}): the environment variable {var} does not hold a valid value for header {name}",
                        spec.path, spec.origin
                    )
                })?;
                value.set_sensitive(true);
                value
            }
        };
        map.append(header, value);
    }
    Ok(map)
}
