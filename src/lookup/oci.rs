//! OCI registries: tag lists from the distribution API (`GET /v2/<name>/tags/list`).
//!
//! Used for `oci://` HelmRepositories and for OCIRepositories. Pagination follows the `Link`
//! header (`n`/`last`, distribution spec "Listing Tags"). Authentication follows the registry's
//! `WWW-Authenticate` challenge: `Bearer realm=…,service=…,scope=…` gets a token from the realm
//! (anonymously, or with the host rule's credentials as basic auth: the flow of ghcr.io and
//! Docker Hub, "Token Authentication Specification"); `Basic` is answered with the host rule's
//! credentials. Tags that are not versions (`latest`, `sha-…`) are ignored; Helm writes a
//! version's `+` as `_` in OCI tags, which is undone for ordering only.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};

use super::cache::Entry;
use super::http::{Auth, Body, Request, Response, next_link, redact};
use super::{Context, Datasource, LookupError};
use crate::gate::versioning::{Version, sort_newest_first};
use crate::model::{Package, Release};

/// Most tag-list pages read per repository.
const MAX_PAGES: usize = 100;

/// The OCI datasource.
pub struct OciRegistry {
    ctx: Arc<Context>,
}

/// Where a repository's tags are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port]` (or a `file://` directory for a mirror).
    pub base: String,
    /// Repository name inside the registry.
    pub repository: String,
}

/// Work out the registry endpoint of `oci://host/path` after rewrites.
pub fn endpoint(rewritten: &str) -> Option<Endpoint> {
    let (scheme, rest) = rewritten.split_once("://")?;
    if scheme == "file" {
        // A mirror directory: `<dir>/<repository>/tags/list` holds the tag list JSON.
        return Some(Endpoint { base: "file://".into(), repository: rest.trim_end_matches('/').to_string() });
    }
    let (host, path) = rest.split_once('/')?;
    let path = path.trim_matches('/');
    if host.is_empty() || path.is_empty() {
        return None;
    }
    match scheme {
        "oci" => {
            // Docker Hub's API host and implicit `library/` namespace.
            let (host, path) = match host {
                "docker.io" | "index.docker.io" => (
                    "registry-1.docker.io",
                    if path.contains('/') { path.to_string() } else { format!("library/{path}") },
                ),
                h => (h, path.to_string()),
            };
            Some(Endpoint { base: format!("https://{host}"), repository: path })
        }
        "http" | "https" => Some(Endpoint { base: format!("{scheme}://{host}"), repository: path.to_string() }),
        _ => None,
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lowercase).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`).
    pub params: BTreeMap<String, String>,
}

/// Parse `Bearer realm="…",service="…",scope="…"`; quoted values may hold commas.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        params.insert(key, val);
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl OciRegistry {
    /// A datasource sharing `ctx`.
    pub fn new(ctx: Arc<Context>) -> OciRegistry {
        OciRegistry { ctx }
    }

    /// The `oci://` reference of `package` and where its registry answers, after rewrites.
    fn locate(&self, package: &Package) -> Result<(String, Endpoint), LookupError> {
        let reference = format!("{}/{}", package.registry.trim_end_matches('/'), package.name);
        match endpoint(&self.ctx.rewrites.apply(&reference)) {
            Some(ep) => Ok((reference, ep)),
            None => Err(LookupError { url: redact(&reference), message: "not an oci:// reference".into() }),
        }
    }

    async fn tags(&self, package: &Package) -> Result<Vec<Release>, LookupError> {
        let (reference, ep) = self.locate(package)?;
        let first = if ep.base.starts_with("file://") {
            format!("{}{}/tags/list", ep.base, ep.repository)
        } else {
            format!("{}/v2/{}/tags/list?n={}", ep.base, ep.repository, self.ctx.oci_page_size.max(1))
        };
        let key = redact(&first);
        let cached = self.ctx.cache.load(&key);
        if self.ctx.offline {
            return cached.and_then(|e| e.packages.into_values().next()).ok_or_else(|| LookupError::offline(&key));
        }
        let credentials = self.ctx.auth_for(&reference);
        let mut auth = Auth::None;
        let mut url = first.clone();
        let mut tags = Vec::new();
        let mut validators = None;
        for page in 0..MAX_PAGES {
            let conditional = if page == 0 { cached.as_ref().map(|e| e.validators.clone()) } else { None };
            let mut response = self.get(&url, &auth, conditional.clone()).await?;
            if response.status == 401 {
                auth = self.authenticate(&response, &credentials, &key).await?;
                response = self.get(&url, &auth, conditional).await?;
            }
            if page == 0 {
                validators = Some(response.validators());
            }
            match (response.status, &response.body) {
                (304, _) => {
                    if let Some(entry) = cached {
                        return Ok(entry.packages.into_values().next().unwrap_or_default());
                    }
                    return Err(LookupError { url: key, message: "304 Not Modified without a cached copy".into() });
                }
                (200..=299, Body::Full(bytes)) => {
                    let list: TagList = serde_json::from_slice(bytes)
                        .map_err(|e| LookupError { url: key.clone(), message: format!("not a tag list: {e}") })?;
                    tags.extend(list.tags.unwrap_or_default());
                }
                (status, _) => return Err(LookupError::status(&key, status, "OCI tag list")),
            }
            match next_link(&response.headers, &ep.base) {
                Some(next) if next != url => {
                    if page + 1 == MAX_PAGES {
                        return Err(LookupError {
                            url: key,
                            message: format!(
                                "more than {MAX_PAGES} pages of tags; the versions may be on the unread ones"
                            ),
                        });
                    }
                    // Validators cover page one only: a new tag lands on any page, so a list of
                    // several pages is fetched whole next time rather than revalidated.
                    validators = None;
                    url = next;
                }
                _ => break,
            }
        }
        let releases = releases_from_tags(tags);
        let mut packages = BTreeMap::new();
        packages.insert(package.name.clone(), releases.clone());
        self.ctx.cache.store(&Entry::new(&key, validators.unwrap_or_default(), packages));
        Ok(releases)
    }

    /// The digest of `tag`'s manifest (`sha256:…`), as Flux would pin it: the registry's
    /// `Docker-Content-Digest`, else the SHA-256 of the manifest bytes it serves.
    pub async fn manifest_digest(&self, package: &Package, tag: &str) -> Result<String, LookupError> {
        let (reference, ep) = self.locate(package)?;
        let url = if ep.base.starts_with("file://") {
            format!("{}{}/manifests/{tag}", ep.base, ep.repository)
        } else {
            format!("{}/v2/{}/manifests/{tag}", ep.base, ep.repository)
        };
        let key = redact(&url);
        if self.ctx.offline {
            return Err(LookupError::offline(&key));
        }
        let credentials = self.ctx.auth_for(&reference);
        let request = |auth: &Auth, head: bool| Request {
            url: url.clone(),
            auth: auth.clone(),
            accept: Some(
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json",
            ),
            head,
            ..Request::default()
        };
        // HEAD first (headers are all a digest needs, and Docker Hub does not count it as a
        // pull); GET only when the registry gives no digest header.
        let head = !ep.base.starts_with("file://");
        let mut auth = Auth::None;
        let mut response = self.ctx.http.get(&request(&auth, head)).await?;
        if response.status == 401 {
            auth = self.authenticate(&response, &credentials, &key).await?;
            response = self.ctx.http.get(&request(&auth, head)).await?;
        }
        if head && (200..300).contains(&response.status) {
            if let Some(digest) = response.header("docker-content-digest").filter(|d| valid_digest(d)) {
                return Ok(digest.to_string());
            }
            response = self.ctx.http.get(&request(&auth, false)).await?;
        }
        match (response.status, &response.body) {
            (200..=299, Body::Full(bytes)) => match response.header("docker-content-digest") {
                Some(d) if valid_digest(d) => Ok(d.to_string()),
                Some(d) => {
                    Err(LookupError { url: key, message: format!("the registry sent a malformed digest `{d}`") })
                }
                None => {
                    use sha2::Digest;
                    let hex: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
                    Ok(format!("sha256:{hex}"))
                }
            },
            (status, _) => Err(LookupError::status(&key, status, "OCI manifest")),
        }
    }

    async fn get(
        &self,
        url: &str,
        auth: &Auth,
        validators: Option<super::http::Validators>,
    ) -> Result<Response, LookupError> {
        let request = Request {
            url: url.to_string(),
            auth: auth.clone(),
            accept: Some("application/json"),
            validators,
            ..Request::default()
        };
        Ok(self.ctx.http.get(&request).await?)
    }

    /// Answer a 401's challenge with a bearer token or basic credentials.
    async fn authenticate(&self, response: &Response, credentials: &Auth, key: &str) -> Result<Auth, LookupError> {
        let challenge = response.header("www-authenticate").and_then(parse_challenge);
        let denied = |message: String| LookupError { url: key.to_string(), message };
        match challenge {
            Some(c) if c.scheme == "bearer" => {
                let realm = c.params.get("realm").ok_or_else(|| denied("Bearer challenge without a realm".into()))?;
                let mut query: Vec<String> = Vec::new();
                for name in ["service", "scope"] {
                    if let Some(v) = c.params.get(name) {
                        query.push(format!("{name}={}", encode(v)));
                    }
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let token_url =
                    if query.is_empty() { realm.clone() } else { format!("{realm}{sep}{}", query.join("&")) };
                let token_auth = match credentials {
                    Auth::Bearer(token) => Auth::Basic { username: "token".into(), password: token.clone() },
                    other => other.clone(),
                };
                let answer = self.get(&token_url, &token_auth, None).await?;
                let Body::Full(bytes) = &answer.body else { return Err(denied("token endpoint sent no body".into())) };
                if !(200..300).contains(&answer.status) {
                    return Err(LookupError::status(&redact(&token_url), answer.status, "registry token"));
                }
                let token: TokenResponse =
                    serde_json::from_slice(bytes).map_err(|e| denied(format!("token endpoint answered: {e}")))?;
                token
                    .token
                    .or(token.access_token)
                    .map(Auth::Bearer)
                    .ok_or_else(|| denied("token endpoint returned no token".into()))
            }
            Some(c) if c.scheme == "basic" => match credentials {
                Auth::None => Err(denied("the registry requires credentials: add a hostRules entry for it".into())),
                other => Ok(other.clone()),
            },
            _ => Err(LookupError::status(key, 401, "OCI tag list")),
        }
    }
}

/// `sha256:` and 64 lowercase hex digits: the only digest form Flux accepts in `spec.ref.digest`
/// that upkeep writes.
fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Percent-encode a query value (scopes hold `:` and `/`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Version tags as releases, newest first; other tags dropped.
pub fn releases_from_tags(tags: Vec<String>) -> Vec<Release> {
    let mut releases: Vec<Release> = tags
        .into_iter()
        .filter_map(|tag| {
            let version = Version::parse(&tag)?;
            Some(Release {
                prerelease: version.is_prerelease(),
                version: tag,
                published: None,
                deprecated: false,
                app_version: None,
                kube_version: None,
                notes: None,
                url: None,
                digest: None,
                signals: Vec::new(),
            })
        })
        .collect();
    sort_newest_first(&mut releases);
    releases.dedup_by(|a, b| a.version == b.version);
    releases
}

impl Datasource for OciRegistry {
    fn name(&self) -> &'static str {
        "oci"
    }

    fn releases<'a>(
        &'a self,
        package: &'a Package,
    ) -> BoxFuture<'a, Result<crate::model::SharedReleases, LookupError>> {
        async move { self.tags(package).await.map(crate::model::SharedReleases::from) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_for_registries_and_rewrites() {
        assert_eq!(
            endpoint("oci://ghcr.io/bjw-s/helm/app-template"),
            Some(Endpoint { base: "https://ghcr.io".into(), repository: "bjw-s/helm/app-template".into() })
        );
        assert_eq!(
            endpoint("oci://docker.io/bitnami"),
            Some(Endpoint { base: "https://registry-1.docker.io".into(), repository: "library/bitnami".into() })
        );
        assert_eq!(
            endpoint("http://127.0.0.1:5000/ghcr.io/org/chart"),
            Some(Endpoint { base: "http://127.0.0.1:5000".into(), repository: "ghcr.io/org/chart".into() })
        );
        assert_eq!(endpoint("oci://ghcr.io"), None);
    }

    #[test]
    fn parses_challenges_with_commas_in_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap_or_else(|| panic!("challenge"));
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        assert_eq!(c.params["service"], "ghcr.io");
        assert_eq!(parse_challenge(r#"Basic realm="basic-realm""#).map(|c| c.scheme), Some("basic".into()));
    }

    #[test]
    fn keeps_version_tags_newest_first() {
        let r = releases_from_tags(
            ["latest", "1.2.0", "v1.10.0", "sha-abc", "1.9.0_build.1", "2.0.0-rc.1"].map(String::from).to_vec(),
        );
        let tags: Vec<&str> = r.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(tags, ["2.0.0-rc.1", "v1.10.0", "1.9.0_build.1", "1.2.0"]);
        assert!(r[0].prerelease);
    }
}
