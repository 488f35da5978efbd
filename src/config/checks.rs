//! `checks:` of a rule, as written, and their one-time check into [`CheckSpec`]s: a URL that
//! cannot be requested, a status range that means nothing or a secret header written in the
//! file is a config error naming the file and line, like every other key.
//!
//! ```yaml
//! rules:
//!   - match: {id: ["helmrelease/apps/podinfo"]}
//!     checks:
//!       - http: {url: "https://podinfo.example.com/healthz", method: GET, status: "200-399",
//!                body: "ok", timeout: 5s, retries: 2, insecureSkipVerify: false,
//!                headers: {Authorization: {env: PODINFO_TOKEN}, Accept: application/json}}
//!       - tcp: {address: "podinfo.apps.svc:9898", timeout: 3s}
//! ```
//!
//! Header values come from environment variables (`{env: VAR}`); a plain string is allowed only
//! for a header whose name carries no secret (`Accept`, `Host`), so a token never sits in git.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ConfigError, at};
use crate::gate::checks::{
    Check, CheckSpec, HTTP_TIMEOUT, HeaderSource, HttpCheck, RETRIES, StatusSet, TCP_TIMEOUT, TcpCheck,
    is_secret_header,
};
use crate::gate::rules::parse_duration;

/// One check: exactly one of `http` or `tcp`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    /// An HTTP request that must answer with an expected status (and body).
    http: Option<RawHttp>,
    /// A TCP connection that must be accepted.
    tcp: Option<RawTcp>,
}

/// An HTTP check; only `url` is required.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHttp {
    /// `http://` or `https://` URL.
    #[schemars(with = "String")]
    url: Spanned<String>,
    /// HTTP method (`GET`).
    #[schemars(with = "Option<String>")]
    method: Option<Spanned<String>>,
    /// Statuses that pass: `200-399` (default), `200`, `200,204`.
    #[schemars(with = "Option<StatusText>")]
    status: Option<Spanned<StatusText>>,
    /// A substring the response body must contain.
    body: Option<String>,
    /// Per attempt (`5s`).
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
    /// Further attempts after a failed one (2).
    retries: Option<u32>,
    /// Request headers: `{env: VAR}` for secrets; plain strings only for headers that carry none.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawHeader>")]
    headers: BTreeMap<String, Spanned<RawHeader>>,
    /// Do not verify the server's TLS certificate (verified by default).
    #[serde(default)]
    insecure_skip_verify: bool,
}

/// A status written as a number (`200`) or as text (`"200-399"`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum StatusText {
    /// A single code.
    Code(u64),
    /// Ranges and codes.
    Text(String),
}

/// A header value.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum RawHeader {
    /// `{env: VAR}`: read from the environment when upkeep verifies.
    Env {
        /// The environment variable.
        env: String,
    },
    /// A value written in the file (headers that carry no secret only).
    Plain(String),
}

/// A TCP check; only `address` is required.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTcp {
    /// `host:port`.
    #[schemars(with = "String")]
    address: Spanned<String>,
    /// Connect timeout (`3s`).
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
}

/// Check the `checks:` of rule `index`.
pub(super) fn checks(file: &str, index: usize, raw: Vec<Spanned<RawCheck>>) -> Result<Vec<CheckSpec>, ConfigError> {
    let mut out = Vec::new();
    for (j, c) in raw.into_iter().enumerate() {
        let path = format!("rules[{index}].checks[{j}]");
        let origin = format!("{file}:{}", c.referenced.line());
        let check = match c.value {
            RawCheck { http: Some(h), tcp: None } => Check::Http(http(file, &path, h)?),
            RawCheck { http: None, tcp: Some(t) } => Check::Tcp(tcp(file, &path, t)?),
            _ => {
                return Err(at(
                    file,
                    &c.referenced,
                    format!("{path}: a check is either `http:` or `tcp:`, exactly one"),
                ));
            }
        };
        out.push(CheckSpec { check, origin, path });
    }
    Ok(out)
}

fn duration(
    file: &str,
    path: &str,
    raw: Option<Spanned<String>>,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    let Some(d) = raw else { return Ok(default) };
    let value = parse_duration(&d.value).map_err(|e| at(file, &d.referenced, format!("{path}.timeout: {e}")))?;
    if value.is_zero() {
        return Err(at(file, &d.referenced, format!("{path}.timeout: a timeout of zero never lets a check pass")));
    }
    Ok(value)
}

fn http(file: &str, path: &str, raw: RawHttp) -> Result<HttpCheck, ConfigError> {
    let path = format!("{path}.http");
    let url = raw.url.value.trim().to_string();
    let parsed = reqwest::Url::parse(&url).map_err(|e| {
        at(
            file,
            &raw.url.referenced,
            format!("{path}.url: `{}` is not a URL: {e}", crate::gate::checks::shown_url(&url)),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(at(
            file,
            &raw.url.referenced,
            format!(
                "{path}.url: `{}` must be an http:// or https:// URL with a host",
                crate::gate::checks::shown_url(&url)
            ),
        ));
    }
    let method = match raw.method {
        Some(m) => {
            let upper = m.value.trim().to_ascii_uppercase();
            if reqwest::Method::from_bytes(upper.as_bytes()).is_err() || upper.is_empty() {
                return Err(at(file, &m.referenced, format!("{path}.method: `{}` is not an HTTP method", m.value)));
            }
            upper
        }
        None => "GET".into(),
    };
    let status = match raw.status {
        Some(s) => {
            let text = match &s.value {
                StatusText::Code(c) => c.to_string(),
                StatusText::Text(t) => t.clone(),
            };
            StatusSet::parse(&text).map_err(|e| at(file, &s.referenced, format!("{path}.status: {e}")))?
        }
        None => StatusSet::default(),
    };
    let mut headers = Vec::new();
    for (name, value) in raw.headers {
        let source = header(file, &path, &name, value)?;
        headers.push((name, source));
    }
    Ok(HttpCheck {
        url,
        method,
        status,
        body: raw.body.filter(|b| !b.is_empty()),
        timeout: duration(file, &path, raw.timeout, HTTP_TIMEOUT)?,
        retries: raw.retries.unwrap_or(RETRIES).min(10),
        headers,
        insecure_skip_verify: raw.insecure_skip_verify,
    })
}

/// One header: a valid name, and a value from `{env: VAR}`, or written in the file when the
/// header carries no secret.
fn header(file: &str, path: &str, name: &str, value: Spanned<RawHeader>) -> Result<HeaderSource, ConfigError> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(at(file, &value.referenced, format!("{path}.headers: `{name}` is not a header name")));
    }
    let source = match value.value {
        RawHeader::Env { env } if !env.trim().is_empty() => HeaderSource::Env(env.trim().to_string()),
        RawHeader::Env { .. } => {
            return Err(at(file, &value.referenced, format!("{path}.headers.{name}: `env` names no variable")));
        }
        RawHeader::Plain(_) if is_secret_header(name) => {
            // The value is not echoed: it is the very secret that must not be in git.
            return Err(at(
                file,
                &value.referenced,
                format!(
                    "{path}.headers.{name}: this header carries a secret, so its value must come from the \
                     environment: write `{name}: {{env: VARIABLE}}`"
                ),
            ));
        }
        RawHeader::Plain(v) => {
            if reqwest::header::HeaderValue::from_str(&v).is_err() {
                return Err(at(file, &value.referenced, format!("{path}.headers.{name}: not a valid header value")));
            }
            HeaderSource::Plain(v)
        }
    };
    Ok(source)
}

fn tcp(file: &str, path: &str, raw: RawTcp) -> Result<TcpCheck, ConfigError> {
    let path = format!("{path}.tcp");
    let address = raw.address.value.trim().to_string();
    let port = address.rsplit_once(':').filter(|(host, _)| !host.trim_matches(['[', ']']).is_empty());
    if port.and_then(|(_, p)| p.parse::<u16>().ok()).is_none_or(|p| p == 0) {
        return Err(at(
            file,
            &raw.address.referenced,
            format!("{path}.address: `{address}` is not `host:port` (e.g. `podinfo.apps.svc:9898`)"),
        ));
    }
    Ok(TcpCheck { address, timeout: duration(file, &path, raw.timeout, TCP_TIMEOUT)? })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::gate::checks::{Check, HeaderSource, StatusSet};

    fn rules(text: &str) -> Result<Vec<crate::gate::rules::Rule>, String> {
        crate::config::parse(text, Path::new("/r"), "upkeep.yaml").map(|c| c.policy.rules).map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_example_reads_with_its_defaults() {
        let text = r#"rules:
  - match: {id: ["helmrelease/apps/podinfo"]}
    checks:
      - http: {url: "https://podinfo.example.com/healthz", method: get, status: "200-399",
               body: "ok", timeout: 5s, retries: 3, headers: {Authorization: {env: PODINFO_TOKEN}, Accept: text/plain}}
      - tcp: {address: "podinfo.apps.svc:9898", timeout: 3s}
      - http: {url: "http://podinfo.apps.svc:9898/readyz", status: 204}
"#;
        let r = rules(text).unwrap();
        let checks = &r[0].checks;
        assert_eq!(checks.len(), 3);
        let Check::Http(h) = &checks[0].check else { panic!() };
        assert_eq!((h.method.as_str(), h.retries, h.body.as_deref()), ("GET", 3, Some("ok")));
        assert!(h.headers.contains(&("Authorization".into(), HeaderSource::Env("PODINFO_TOKEN".into()))));
        assert!(h.headers.contains(&("Accept".into(), HeaderSource::Plain("text/plain".into()))));
        assert!(!h.insecure_skip_verify, "TLS is verified unless the check says otherwise");
        assert_eq!(checks[0].origin, "upkeep.yaml:4");
        let Check::Tcp(t) = &checks[1].check else { panic!() };
        assert_eq!(t.timeout.as_secs(), 3);
        let Check::Http(bare) = &checks[2].check else { panic!() };
        assert_eq!((bare.method.as_str(), bare.retries, bare.timeout.as_secs()), ("GET", 2, 5));
        assert_eq!(bare.status, StatusSet(vec![(204, 204)]));
    }

    #[test]
    fn bad_checks_name_the_line_and_never_echo_a_secret() {
        let cases = [
            ("- http: {url: 'ftp://x.example/a'}", "line 4", "must be an http:// or https:// URL"),
            ("- http: {url: 'not a url'}", "line 4", "is not a URL"),
            ("- http: {url: 'https://x.example', status: '500-200'}", "line 4", "empty range"),
            ("- http: {url: 'https://x.example', method: 'G T'}", "line 4", "is not an HTTP method"),
            ("- http: {url: 'https://x.example', timeout: 5 seconds}", "line 4", "http.timeout"),
            ("- tcp: {address: 'db.apps.svc'}", "line 4", "is not `host:port`"),
            ("- tcp: {address: 'db:5432'}\n        http: {url: 'https://x'}", "line 4", "exactly one"),
            (
                "- http: {url: 'https://x.example', headers: {Authorization: 'Bearer hunter2'}}",
                "line 4",
                "{env: VARIABLE}",
            ),
            ("- http: {uri: 'https://x.example'}", "line 4", "unknown field `uri`"),
        ];
        for (check, line, why) in cases {
            let text = format!("rules:\n  - match: {{id: [x]}}\n    checks:\n      {check}\n");
            let err = rules(&text).map(|_| ()).unwrap_err();
            assert!(err.starts_with("upkeep.yaml: ") && err.contains(line) && err.contains(why), "{check}: {err}");
            assert!(!err.contains("hunter2"), "the secret is not echoed: {err}");
        }
    }
}
