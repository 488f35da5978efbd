//! Making a URL fit to show: the one place credentials are taken out of URLs before they reach
//! a message, a log line or a cache key (git remotes and HTTP lookups alike).

/// Query parameters whose values are secrets.
const SECRET_PARAMETERS: [&str; 6] = ["token", "access_token", "password", "sig", "signature", "key"];

/// `url` with any `user:password@` dropped and secret query values replaced by `REDACTED`;
/// anything else (a remote's name, a path) comes back unchanged.
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let tail = match tail.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => tail.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{tail}"),
        None => format!("{host}{tail}"),
    }
}

fn redact_query(query: &str) -> String {
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            if SECRET_PARAMETERS.iter().any(|s| key.eq_ignore_ascii_case(s)) {
                format!("{key}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect();
    redacted.join("&")
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn credentials_go_and_everything_else_stays() {
        assert_eq!(url("https://user:secret@charts.example.com/index.yaml"), "https://charts.example.com/index.yaml");
        assert_eq!(
            url("https://auth.example.com/token?service=x&token=abc&scope=repo"),
            "https://auth.example.com/token?service=x&token=REDACTED&scope=repo"
        );
        assert_eq!(url("https://x-access-token:ghp_abc@github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(url("https://github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(url("https://github.com"), "https://github.com");
        assert_eq!(url("origin"), "origin");
        assert_eq!(url("https://t:s@host?Token=x"), "https://host?Token=REDACTED");
    }
}
