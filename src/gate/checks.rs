//! The user's own checks (`checks:` in a rule): what to probe after a matched update merged, as
//! plain checked data. Parsing status ranges and telling secret headers apart live here, with no
//! I/O, so the config can refuse a bad check at load time and the verifier's runner
//! (`crate::verify::checks`) only ever sees checks that can be built.

use std::time::Duration;

/// How long an HTTP check may take per attempt, unless it says otherwise.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TCP connect may take, unless the check says otherwise.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(3);
/// Further attempts after a failed one, within one observation, unless the check says otherwise.
pub const RETRIES: u32 = 2;

/// A header value: from an environment variable (secrets), or written in the file (only for
/// headers that carry no secret, such as `Accept` or `Host`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderSource {
    /// Read from this environment variable when the verifier starts; never printed.
    Env(String),
    /// Written in the config file.
    Plain(String),
}

/// An HTTP check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// The URL, `http://` or `https://`.
    pub url: String,
    /// The method (`GET` by default), upper case.
    pub method: String,
    /// The statuses that pass.
    pub status: StatusSet,
    /// A substring the body must contain.
    pub body: Option<String>,
    /// Per attempt.
    pub timeout: Duration,
    /// Further attempts after a failed one.
    pub retries: u32,
    /// Extra request headers, in the file's order.
    pub headers: Vec<(String, HeaderSource)>,
    /// Skip TLS certificate verification (`insecureSkipVerify: true`); verified otherwise.
    pub insecure_skip_verify: bool,
}

/// A TCP check: a connection must be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpCheck {
    /// `host:port`.
    pub address: String,
    /// Connect timeout.
    pub timeout: Duration,
}

/// One check of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Check {
    /// `- http: {...}`.
    Http(HttpCheck),
    /// `- tcp: {...}`.
    Tcp(TcpCheck),
}

/// A check with where it was written, for messages (`upkeep.yaml:12`, `rules[0].checks[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// The check.
    pub check: Check,
    /// `file:line`.
    pub origin: String,
    /// `rules[i].checks[j]`.
    pub path: String,
}

/// Inclusive status ranges: `200-399`, `200`, `200,204`, `200-299,304`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl Default for StatusSet {
    /// `200-399`: success and redirects that were not followed.
    fn default() -> Self {
        StatusSet(vec![(200, 399)])
    }
}

impl StatusSet {
    /// Parse `200-399`, `200` or `200,204` (ranges and single codes, comma separated).
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let code = |t: &str| -> Result<u16, String> {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("`{}` is not an HTTP status (100 to 599)", t.trim()))
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("`{text}` has an empty entry; write e.g. `200-399`, `200` or `200,204`"));
            }
            let (low, high) = match part.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => (code(part)?, code(part)?),
            };
            if low > high {
                return Err(format!("`{part}` is an empty range: {low} is above {high}"));
            }
            ranges.push((low, high));
        }
        Ok(StatusSet(ranges))
    }

    /// Whether `status` passes.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(low, high)| (*low..=*high).contains(&status))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> =
            self.0.iter().map(|(l, h)| if l == h { l.to_string() } else { format!("{l}-{h}") }).collect();
        f.write_str(&parts.join(","))
    }
}

/// Whether a header carries a secret by its name, so its value must come from the environment:
/// credentials, cookies, and anything named like a token, key or password.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["authorization", "cookie", "token", "secret", "key", "password", "auth", "session", "signature"]
        .iter()
        .any(|s| n.contains(s))
}

/// What a check is called in reports: `http GET https://host/path` or `tcp host:port`. The URL
/// is shown without user info and with every query value replaced, since a query can carry a
/// secret under any name.
pub fn display_name(check: &Check) -> String {
    match check {
        Check::Http(h) => format!("http {} {}", h.method, shown_url(&h.url)),
        Check::Tcp(t) => format!("tcp {}", t.address),
    }
}

/// `url` fit to show: no `user:password@`, and query values replaced by `REDACTED`.
pub fn shown_url(url: &str) -> String {
    let clean = crate::redact::url(url);
    let (head, fragment) = match clean.split_once('#') {
        Some((h, _)) => (h.to_string(), "#…"),
        None => (clean, ""),
    };
    match head.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) => format!("{k}=REDACTED"),
                    None => p.to_string(),
                })
                .collect();
            format!("{path}?{}{fragment}", pairs.join("&"))
        }
        None => format!("{head}{fragment}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets_take_ranges_single_codes_and_lists() {
        let default = StatusSet::default();
        assert!(default.contains(200) && default.contains(302) && default.contains(399));
        assert!(!default.contains(404) && !default.contains(503) && !default.contains(199));
        let one = StatusSet::parse("200").unwrap();
        assert!(one.contains(200) && !one.contains(204));
        let list = StatusSet::parse("200, 204").unwrap();
        assert!(list.contains(204) && !list.contains(201));
        let mixed = StatusSet::parse("200-299,304").unwrap();
        assert!(mixed.contains(250) && mixed.contains(304) && !mixed.contains(301));
        assert_eq!(mixed.to_string(), "200-299,304");
    }

    #[test]
    fn bad_status_sets_say_why() {
        for (text, why) in [
            ("ok", "`ok` is not an HTTP status"),
            ("200-", "`` is not an HTTP status"),
            ("399-200", "empty range"),
            ("200,,204", "empty entry"),
            ("42", "`42` is not an HTTP status"),
            ("700", "`700` is not an HTTP status"),
        ] {
            let err = StatusSet::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn secret_headers_are_told_by_name() {
        for secret in ["Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "PRIVATE-TOKEN"] {
            assert!(is_secret_header(secret), "{secret}");
        }
        for plain in ["Accept", "Host", "User-Agent", "X-Forwarded-Proto"] {
            assert!(!is_secret_header(plain), "{plain}");
        }
    }

    #[test]
    fn shown_urls_carry_no_credentials_and_no_query_values() {
        assert_eq!(
            shown_url("https://u:p@h.example/healthz?apikey=s3cret&x"),
            "https://h.example/healthz?apikey=REDACTED&x"
        );
        assert_eq!(shown_url("http://127.0.0.1:8080/ready"), "http://127.0.0.1:8080/ready");
        let check = Check::Tcp(TcpCheck { address: "db:5432".into(), timeout: TCP_TIMEOUT });
        assert_eq!(display_name(&check), "tcp db:5432");
    }
}
