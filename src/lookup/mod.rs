//! Learn every available version of every dependency: one request per distinct index or tag
//! list, all concurrent, cached between runs, and a clear error per dependency when an upstream
//! is broken, never a failed run.
//!
//! One file per datasource, each behind [`Datasource`]: [`helm`] (HTTP `index.yaml`), [`oci`]
//! (distribution API tag lists), [`github`] (GitHub releases of the platform components).
//! They share one [`Context`]: the HTTP client ([`http`]), the cache ([`cache`]), the registry
//! rewrites ([`rewrite`]) and credentials.

pub mod cache;
pub mod github;
pub mod helm;
pub mod http;
pub mod index_scan;
pub mod oci;
pub mod rewrite;
pub mod signals;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use crate::model::{Datasource as DatasourceKind, Package, SharedReleases};
use crate::progress::{Event, Progress};

/// A lookup that failed, for one package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {message}")]
pub struct LookupError {
    /// What was asked (redacted).
    pub url: String,
    /// What went wrong and, where possible, what to do.
    pub message: String,
}

impl From<http::HttpError> for LookupError {
    fn from(e: http::HttpError) -> Self {
        LookupError { url: e.url, message: e.message }
    }
}

impl LookupError {
    fn offline(url: &str) -> LookupError {
        LookupError { url: url.to_string(), message: "not in the cache, and --offline forbids fetching it".into() }
    }

    /// An error for an HTTP status, with the permission hint a user needs.
    pub fn status(url: &str, status: u16, what: &str) -> LookupError {
        let hint = match status {
            401 => "credentials are missing or wrong: configure hostRules for this host",
            403 => "access denied: the credentials lack read permission",
            404 => "not found: check the URL, or the registry rewrite",
            _ => "unexpected answer",
        };
        LookupError { url: url.to_string(), message: format!("{what}: HTTP {status}, {hint}") }
    }
}

/// Credentials for one host, resolved from the environment.
#[derive(Clone)]
pub struct HostRule {
    /// Host, optionally with a path prefix (`ghcr.io`, `charts.example.com/private`).
    pub host: String,
    /// User name.
    pub username: Option<String>,
    /// Password or token.
    pub password: Option<String>,
}

impl std::fmt::Debug for HostRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRule").field("host", &self.host).field("username", &self.username).finish_non_exhaustive()
    }
}

/// Everything datasources share.
#[derive(Debug)]
pub struct Context {
    /// The HTTP client.
    pub http: http::Http,
    /// The cache.
    pub cache: cache::Cache,
    /// Registry rewrites.
    pub rewrites: rewrite::Rewrites,
    /// Credentials by host.
    pub host_rules: Vec<HostRule>,
    /// Use only the cache.
    pub offline: bool,
    /// GitHub API base (`GITHUB_API_URL`).
    pub github_api: String,
    /// GitHub token (`GITHUB_TOKEN`).
    pub github_token: Option<String>,
    /// Most release pages read per GitHub repository (100 releases a page).
    pub github_max_pages: usize,
    /// Tags asked for per page of an OCI tag list (`n`).
    pub oci_page_size: usize,
}

impl Context {
    /// Basic credentials for a URL, from the most specific host rule that matches it.
    pub fn auth_for(&self, url: &str) -> http::Auth {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        self.host_rules
            .iter()
            .filter(|r| {
                let host = r.host.trim_end_matches('/');
                rest == host || rest.strip_prefix(host).is_some_and(|tail| tail.starts_with('/'))
            })
            .max_by_key(|r| r.host.len())
            .and_then(|r| match (&r.username, &r.password) {
                (Some(u), Some(p)) => Some(http::Auth::Basic { username: u.clone(), password: p.clone() }),
                (None, Some(p)) => Some(http::Auth::Bearer(p.clone())),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// A source of releases.
pub trait Datasource: Send + Sync {
    /// Short name.
    fn name(&self) -> &'static str;
    /// Every release of `package`, newest first, shared: the dependencies on one package (and
    /// the gate after them) read the one copy.
    fn releases<'a>(&'a self, package: &'a Package) -> BoxFuture<'a, Result<SharedReleases, LookupError>>;
}

/// All datasources of a run.
pub struct Lookup {
    ctx: Arc<Context>,
    helm: helm::HelmIndex,
    oci: oci::OciRegistry,
    github: github::GithubReleases,
}

impl Lookup {
    /// Datasources over one shared context.
    pub fn new(ctx: Context) -> Lookup {
        let ctx = Arc::new(ctx);
        Lookup {
            helm: helm::HelmIndex::new(ctx.clone()),
            oci: oci::OciRegistry::new(ctx.clone()),
            github: github::GithubReleases::new(ctx.clone()),
            ctx,
        }
    }

    /// The shared context (for statistics).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    fn datasource(&self, kind: DatasourceKind) -> &dyn Datasource {
        match kind {
            DatasourceKind::Helm => &self.helm,
            DatasourceKind::Oci => &self.oci,
            DatasourceKind::GithubReleases => &self.github,
        }
    }

    /// Look up every distinct package, concurrently.
    pub async fn all(
        &self,
        packages: impl IntoIterator<Item = &Package>,
    ) -> HashMap<Package, Result<SharedReleases, LookupError>> {
        self.all_reporting(packages, &crate::progress::Silent).await
    }

    /// [`Lookup::all`], reporting "n of m sources" as each distinct package is answered.
    pub async fn all_reporting(
        &self,
        packages: impl IntoIterator<Item = &Package>,
        progress: &dyn Progress,
    ) -> HashMap<Package, Result<SharedReleases, LookupError>> {
        let distinct: BTreeMap<(DatasourceKind, &str, &str), &Package> =
            packages.into_iter().map(|p| ((p.datasource, p.registry.as_str(), p.name.as_str()), p)).collect();
        self.helm.want(distinct.values().copied().filter(|p| p.datasource == DatasourceKind::Helm));
        let total = distinct.len();
        let done = AtomicUsize::new(0);
        let futures = distinct.into_values().map(|p| {
            let done = &done;
            async move {
                let releases = self.datasource(p.datasource).releases(p).await;
                let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress.event(Event::Lookup { done, total, source: p.name.clone() });
                (p.clone(), releases)
            }
        });
        let out = futures::future::join_all(futures).await.into_iter().collect();
        progress.event(Event::Finished);
        out
    }
}
