//! Registry rewrites: send requests for one URL prefix somewhere else.
//!
//! Air-gapped users mirror chart repositories and registries (`https://charts.example.com/` →
//! `https://mirror.internal/charts.example.com/`, or a `file://` directory); tests and the
//! bundled example use the same feature to run offline. The longest matching prefix wins;
//! trailing slashes do not matter. The rewritten URL is what is fetched and cached; the
//! manifest keeps the upstream URL.

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Upstream prefix (`https://charts.example.com`, `oci://ghcr.io/org`).
    pub from: String,
    /// Replacement prefix (`http://127.0.0.1:18080/charts.example.com`, `file:///srv/mirror`).
    pub to: String,
}

/// The rules of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrites(pub Vec<Rewrite>);

impl Rewrites {
    /// Apply the longest matching rule to `url`.
    pub fn apply(&self, url: &str) -> String {
        let url_trimmed = url.trim_end_matches('/');
        let best = self
            .0
            .iter()
            .filter(|r| {
                let from = r.from.trim_end_matches('/');
                url_trimmed == from
                    || url_trimmed.strip_prefix(from).is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
            })
            .max_by_key(|r| r.from.trim_end_matches('/').len());
        match best {
            Some(rule) => {
                let rest = &url_trimmed[rule.from.trim_end_matches('/').len()..];
                format!("{}{rest}", rule.to.trim_end_matches('/'))
            }
            None => url_trimmed.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_on_path_boundaries() {
        let rules = Rewrites(vec![
            Rewrite {
                from: "https://charts.example.com/".into(),
                to: "http://127.0.0.1:18080/charts.example.com".into(),
            },
            Rewrite { from: "https://charts.example.com/sub".into(), to: "file:///mirror/sub".into() },
        ]);
        assert_eq!(rules.apply("https://charts.example.com"), "http://127.0.0.1:18080/charts.example.com");
        assert_eq!(rules.apply("https://charts.example.com/other/"), "http://127.0.0.1:18080/charts.example.com/other");
        assert_eq!(rules.apply("https://charts.example.com/sub"), "file:///mirror/sub");
        assert_eq!(
            rules.apply("https://charts.example.com/subway"),
            "http://127.0.0.1:18080/charts.example.com/subway"
        );
        assert_eq!(rules.apply("https://elsewhere.example.com/"), "https://elsewhere.example.com");
    }
}
