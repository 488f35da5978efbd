//! GitHub releases of the platform components (k3s-io/k3s, fluxcd/flux2, longhorn/longhorn).
//!
//! `GET {api}/repos/{owner}/{repo}/releases?per_page=100`, following `Link: rel="next"` up to a
//! page limit (releases come newest first, so the limit only drops old history). The API base
//! comes from `GITHUB_API_URL` (set by GitHub Actions, and by GHES users), the token from
//! `GITHUB_TOKEN` when present. Drafts are dropped, prereleases kept and marked, `published_at`
//! and the body kept as release notes. The first page is requested conditionally with the cached
//! ETag: GitHub does not count a 304 against the rate limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};

use super::cache::Entry;
use super::http::{Auth, Body, Request, next_link, redact};
use super::{Context, Datasource, LookupError, signals};
use crate::gate::versioning::Version;
use crate::model::{Package, Release};

/// The GitHub releases datasource.
pub struct GithubReleases {
    ctx: Arc<Context>,
}

#[derive(serde::Deserialize)]
struct ApiRelease {
    tag_name: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    prerelease: bool,
    published_at: Option<String>,
    body: Option<String>,
    html_url: Option<String>,
}

/// Turn one page of the API's JSON into releases (drafts dropped).
pub fn parse_page(bytes: &[u8]) -> Result<Vec<Release>, String> {
    let page: Vec<ApiRelease> = serde_json::from_slice(bytes).map_err(|e| format!("not a list of releases: {e}"))?;
    Ok(page
        .into_iter()
        .filter(|r| !r.draft)
        .map(|r| {
            let notes = r.body.filter(|b| !b.trim().is_empty());
            Release {
                prerelease: r.prerelease || Version::parse(&r.tag_name).is_some_and(|v| v.is_prerelease()),
                published: r.published_at.and_then(|p| p.parse().ok()),
                deprecated: false,
                app_version: None,
                kube_version: None,
                signals: notes.as_deref().map(signals::from_notes).unwrap_or_default(),
                notes,
                url: r.html_url,
                digest: None,
                version: r.tag_name,
            }
        })
        .collect())
}

impl GithubReleases {
    /// A datasource sharing `ctx`.
    pub fn new(ctx: Arc<Context>) -> GithubReleases {
        GithubReleases { ctx }
    }

    async fn fetch(&self, package: &Package) -> Result<Vec<Release>, LookupError> {
        let api = self.ctx.rewrites.apply(&self.ctx.github_api);
        let first = format!("{}/repos/{}/releases?per_page=100", api.trim_end_matches('/'), package.name);
        let key = redact(&first);
        let cached = self.ctx.cache.load(&key);
        if self.ctx.offline {
            return cached.and_then(|e| e.packages.into_values().next()).ok_or_else(|| LookupError::offline(&key));
        }
        // The token is for GitHub itself: a rewrite to a mirror does not get it (give a mirror
        // its own credentials with hostRules).
        let auth = match &self.ctx.github_token {
            Some(token) if api == self.ctx.github_api => Auth::Bearer(token.clone()),
            _ => self.ctx.auth_for(&api),
        };
        let mut url = first;
        let mut releases = Vec::new();
        let mut validators = None;
        for page in 0..self.ctx.github_max_pages.max(1) {
            let request = Request {
                url: url.clone(),
                auth: auth.clone(),
                accept: Some("application/vnd.github+json"),
                headers: vec![("x-github-api-version", "2022-11-28".into())],
                validators: if page == 0 { cached.as_ref().map(|e| e.validators.clone()) } else { None },
                head: false,
            };
            let response = self.ctx.http.get(&request).await?;
            if page == 0 {
                validators = Some(response.validators());
            }
            match (response.status, &response.body) {
                (304, _) => match cached {
                    Some(entry) => return Ok(entry.packages.into_values().next().unwrap_or_default()),
                    None => {
                        return Err(LookupError { url: key, message: "304 Not Modified without a cached copy".into() });
                    }
                },
                (200..=299, Body::Full(bytes)) => {
                    releases.extend(parse_page(bytes).map_err(|message| LookupError { url: key.clone(), message })?);
                }
                (401, _) => {
                    return Err(LookupError {
                        url: key,
                        message:
                            "HTTP 401: GITHUB_TOKEN is invalid or expired; unset it for anonymous access or renew it"
                                .into(),
                    });
                }
                (403, _) => {
                    return Err(LookupError {
                        url: key,
                        message:
                            "HTTP 403: the token cannot read this repository's releases (it needs `contents: read`)"
                                .into(),
                    });
                }
                (status, _) => return Err(LookupError::status(&key, status, "GitHub releases")),
            }
            // Links point at GitHub itself (rewritten below) or at the mirror serving them.
            match next_link(&response.headers, &self.ctx.github_api).or_else(|| next_link(&response.headers, &api)) {
                Some(next) if next != url => url = self.ctx.rewrites.apply(&next),
                _ => break,
            }
        }
        let mut packages = BTreeMap::new();
        packages.insert(package.name.clone(), releases.clone());
        self.ctx.cache.store(&Entry::new(&key, validators.unwrap_or_default(), packages));
        Ok(releases)
    }
}

impl Datasource for GithubReleases {
    fn name(&self) -> &'static str {
        "github-releases"
    }

    fn releases<'a>(
        &'a self,
        package: &'a Package,
    ) -> BoxFuture<'a, Result<crate::model::SharedReleases, LookupError>> {
        async move { self.fetch(package).await.map(crate::model::SharedReleases::from) }.boxed()
    }
}
