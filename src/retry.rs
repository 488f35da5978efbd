//! When a request is tried again, and how long upkeep waits first: the one retry policy and the
//! one retry loop that the lookup client (`lookup::http`) and the GitHub forge (`forge::github`)
//! share. No I/O of its own beyond sleeping between attempts.
//!
//! - **Rate limits** (429, or a 403 carrying `Retry-After`, `x-ratelimit-remaining: 0`, or
//!   GitHub's "secondary rate limit" message) are waited out whatever the method: the server
//!   said it did not process the request. The wait is `Retry-After` (seconds or an HTTP date),
//!   else until `x-ratelimit-reset`, else the policy's bare-limit wait (GitHub asks for at least
//!   60 s), else the backoff. A wait longer than the cap gives up at once with a message saying
//!   to run again later.
//! - **Transient failures** (no answer, a timeout, a cut-short body, 408, 5xx) are retried with
//!   exponential backoff and jitter, but only for idempotent requests: a POST that timed out or
//!   met a 502 may have been done, and repeating it is how bots open duplicates.
//! - Everything else **stands**: the caller reads the answer (404, 422, ...) itself.

use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap};

/// How patient to be.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts after the first.
    pub retries: u32,
    /// First backoff; doubles each retry, with up to 50 % jitter.
    pub backoff: Duration,
    /// Longest wait a server may impose before upkeep gives up instead.
    pub max_wait: Duration,
    /// The wait for a rate limit that names no time (GitHub: 60 s); `None` uses the backoff.
    pub bare_limit_wait: Option<Duration>,
    /// Who asks for the wait, in messages ("the server", "GitHub").
    pub server: &'static str,
}

/// What one attempt came back with, as far as retrying is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signal {
    /// The HTTP status; `None` when no complete answer arrived (connection, timeout, cut body).
    pub status: Option<u16>,
    /// `Retry-After`, as a wait from now.
    pub retry_after: Option<Duration>,
    /// `x-ratelimit-remaining: 0`: the quota is spent (a 403 saying so is a rate limit).
    pub quota_spent: bool,
    /// Until `x-ratelimit-reset`, when the quota is spent.
    pub rate_limit_reset: Option<Duration>,
    /// The answer's message says it is a secondary rate limit (GitHub's bare 403).
    pub secondary_limit: bool,
    /// What happened, for messages ("server error (502)", "could not connect: ...").
    pub why: String,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The answer stands: hand it to the caller.
    Stand,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Stop; this message says why and what to do.
    GiveUp(String),
}

impl Signal {
    /// An answer: its status and what its headers say about waiting.
    pub fn answer(status: u16, headers: &HeaderMap) -> Signal {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let retry_after = text(header::RETRY_AFTER.as_str()).and_then(|v| match v.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => httpdate::parse_http_date(v)
                .ok()
                .map(|date| date.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)),
        });
        let quota_spent = text("x-ratelimit-remaining") == Some("0");
        let rate_limit_reset =
            text("x-ratelimit-reset").filter(|_| quota_spent).and_then(|r| r.parse::<u64>().ok()).map(until);
        let why = match status {
            408 => "request timeout (408)".to_string(),
            429 | 403 => format!("rate limited (HTTP {status})"),
            s if s >= 500 => format!("server error ({s})"),
            s => format!("HTTP {s}"),
        };
        Signal { status: Some(status), retry_after, quota_spent, rate_limit_reset, secondary_limit: false, why }
    }

    /// No complete answer: the connection failed, timed out, or the body was cut short.
    pub fn no_answer(why: impl Into<String>) -> Signal {
        Signal { why: why.into(), ..Signal::default() }
    }

    /// Whether the server said it is rate limiting this request (and so did not process it).
    pub fn is_rate_limit(&self) -> bool {
        match self.status {
            Some(429) => true,
            Some(403) => self.retry_after.is_some() || self.quota_spent || self.secondary_limit,
            _ => false,
        }
    }

    /// Whether the policy may send the request again (for an idempotent request): a rate limit
    /// or a transient failure. Callers skip reading an error body that will not be used.
    pub fn may_retry(&self) -> bool {
        self.is_rate_limit() || self.is_transient()
    }

    fn is_transient(&self) -> bool {
        self.status.is_none_or(|s| s == 408 || s >= 500)
    }
}

/// The wait until a Unix time `reset`, plus a second so the window has surely turned. A reset
/// absurdly far away (a broken or hostile server) is simply longer than anyone waits.
fn until(reset: u64) -> Duration {
    let Some(reset) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(reset)) else {
        return Duration::MAX;
    };
    reset.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).saturating_add(Duration::from_secs(1))
}

impl Policy {
    /// Decide after attempt number `attempt` (0 for the first) of a request that is
    /// `idempotent` (GET, HEAD) or not (POST, PATCH).
    pub fn decide(&self, attempt: u32, idempotent: bool, signal: &Signal) -> Decision {
        let why = &signal.why;
        let wait = if signal.is_rate_limit() {
            signal.retry_after.or(signal.rate_limit_reset).or(self.bare_limit_wait).unwrap_or(self.backoff(attempt))
        } else if signal.is_transient() && idempotent {
            self.backoff(attempt)
        } else if signal.status.is_none() {
            // No answer to a write: it may have been done, so it is not sent again.
            return Decision::GiveUp(format!("{why} (not retried: the request may have been carried out)"));
        } else {
            return Decision::Stand;
        };
        if wait > self.max_wait {
            return Decision::GiveUp(format!(
                "{why}; {} asks to wait {}s, more than the {}s upkeep waits: run again later",
                self.server,
                wait.as_secs(),
                self.max_wait.as_secs()
            ));
        }
        if attempt >= self.retries {
            return Decision::GiveUp(format!("{why} (gave up after {} attempts)", attempt + 1));
        }
        Decision::RetryAfter(wait)
    }

    /// The backoff before retry `attempt + 1`: doubling, with jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.backoff.saturating_mul(1u32 << attempt.min(10));
        // Jitter from the clock's sub-second noise: spreads retries without another dependency.
        let noise = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        base + base.mul_f64(f64::from(noise % 500) / 1000.0)
    }
}

/// Run `attempt` until its answer stands or the policy gives up. Each attempt returns what
/// it learnt about retrying and, when something came back, the answer itself; an answer that
/// stands is returned, a give-up is the policy's message. `what` names the request in logs.
pub async fn retrying<T, F, Fut>(policy: &Policy, idempotent: bool, what: &str, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (Signal, Option<T>)>,
{
    let mut tries = 0u32;
    loop {
        let (signal, answer) = attempt().await;
        match (policy.decide(tries, idempotent, &signal), answer) {
            (Decision::Stand, Some(answer)) => return Ok(answer),
            (Decision::Stand, None) => return Err(signal.why),
            (Decision::GiveUp(message), _) => return Err(message),
            (Decision::RetryAfter(wait), _) => {
                if signal.is_rate_limit() {
                    tracing::info!("{what}: {}; waiting {}s", signal.why, wait.as_secs());
                } else {
                    tracing::debug!("retrying {what} in {wait:?}: {}", signal.why);
                }
                tokio::time::sleep(wait).await;
                tries += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn github() -> Policy {
        Policy {
            retries: 3,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(300),
            bare_limit_wait: Some(Duration::from_secs(60)),
            server: "GitHub",
        }
    }

    fn status(s: u16) -> Signal {
        Signal::answer(s, &HeaderMap::new())
    }

    #[test]
    fn writes_are_retried_only_when_the_server_says_it_did_not_process_them() {
        let p = github();
        assert_eq!(p.decide(0, false, &status(502)), Decision::Stand, "a 502 POST may have been done");
        assert!(
            matches!(p.decide(0, false, &Signal::no_answer("timed out")), Decision::GiveUp(m) if m.contains("not retried"))
        );
        assert!(matches!(p.decide(0, true, &status(502)), Decision::RetryAfter(_)), "a GET is retried");
        assert_eq!(p.decide(0, false, &status(429)), Decision::RetryAfter(Duration::from_secs(60)));
        let mut secondary = status(403);
        assert_eq!(p.decide(0, false, &secondary), Decision::Stand, "a plain 403 is a permission problem");
        secondary.secondary_limit = true;
        assert_eq!(p.decide(0, false, &secondary), Decision::RetryAfter(Duration::from_secs(60)));
    }

    #[test]
    fn waits_past_the_cap_and_exhausted_retries_give_up_with_a_message() {
        let p = Policy { max_wait: Duration::from_secs(5), ..github() };
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        let Decision::GiveUp(m) = p.decide(0, true, &Signal::answer(403, &h)) else { panic!("gave up") };
        assert_eq!(
            m,
            "rate limited (HTTP 403); GitHub asks to wait 120s, more than the 5s upkeep waits: run again later"
        );
        let Decision::GiveUp(m) = p.decide(3, true, &status(503)) else { panic!("gave up") };
        assert_eq!(m, "server error (503) (gave up after 4 attempts)");
        let lookup = Policy { bare_limit_wait: None, ..p };
        assert!(matches!(lookup.decide(0, true, &status(429)), Decision::RetryAfter(d) if d < Duration::from_secs(1)));
    }

    #[test]
    fn reads_retry_after_and_the_rate_limit_reset() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(Signal::answer(429, &h).retry_after, Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&date).unwrap_or(HeaderValue::from_static("0")));
        let wait = Signal::answer(429, &h).retry_after.unwrap_or_default();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        let mut h = HeaderMap::new();
        let reset = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 30;
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap_or(HeaderValue::from_static("0")),
        );
        let wait = Signal::answer(403, &h).rate_limit_reset.unwrap_or_default();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(32), "{wait:?}");
        assert!(Signal::answer(403, &h).is_rate_limit());
        h.remove("x-ratelimit-reset");
        assert!(Signal::answer(403, &h).is_rate_limit(), "a spent quota is a rate limit even without its reset");
    }

    #[test]
    fn an_absurd_rate_limit_reset_is_a_long_wait_not_a_panic() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("18446744073709551615"));
        assert_eq!(Signal::answer(403, &h).rate_limit_reset, Some(Duration::MAX));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("0"));
        assert_eq!(
            Signal::answer(403, &h).rate_limit_reset,
            Some(Duration::from_secs(1)),
            "a reset in the past waits a second"
        );
    }

    #[tokio::test]
    async fn the_loop_retries_until_the_answer_stands() {
        let p = github();
        let mut calls = 0;
        let answer = retrying(&p, true, "GET /x", || {
            calls += 1;
            let status = if calls < 3 { 503 } else { 200 };
            async move { (Signal::answer(status, &HeaderMap::new()), Some(status)) }
        })
        .await;
        assert_eq!(answer, Ok(200));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let answer = retrying(&p, false, "POST /x", || {
            calls += 1;
            async { (Signal::answer(502, &HeaderMap::new()), Some(502)) }
        })
        .await;
        assert_eq!((answer, calls), (Ok(502), 1), "a write is sent once");
    }
}
