//! Helm repositories over HTTP(S): `<url>/index.yaml`.
//!
//! An index is distilled while it downloads: [`super::index_scan`] reads the layout Helm writes
//! line by line, keeping only the charts this run asks for, so neither the body nor the charts
//! nobody asked about are ever held. When the scanner meets anything outside that layout it
//! declines, and the index is fetched again and read by the general path below.
//!
//! The general path reads the index as a stream of parser events, keeping only what a decision
//! needs per version (`version`, `created`, `deprecated`, `appVersion`, `kubeVersion`, `urls[0]`,
//! `digest`, the `artifacthub.io/changes` annotation) and skipping everything else without
//! building a tree. Aliases are never expanded, so a hostile index cannot multiply itself; its
//! size is capped by the HTTP layer. One fetch serves every chart of the repository: the
//! in-flight fetch is memoised per index URL, so 100 releases sharing a repository cost one
//! request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use saphyr_parser::{Event, Parser};

use super::cache::Entry;
use super::http::{Body, BodySink, Flow, Request};
use super::index_scan::{Bail, IndexScanner};
use super::{Context, Datasource, LookupError, signals};
use crate::gate::versioning::{Version, sort_newest_first};
use crate::model::{Package, Release, SharedReleases, Signal, SignalKind};

type Charts = BTreeMap<String, Vec<Release>>;
/// An index's charts as lookups hand them out: each chart's releases shared, not copied per
/// dependency.
type SharedCharts = BTreeMap<String, SharedReleases>;
type IndexResult = Result<Arc<SharedCharts>, LookupError>;

/// Charts to distil from an index: `None` for all of them.
pub type Scope = Option<BTreeSet<String>>;

/// One fetch of an index, shared by every chart it was started for.
struct InFlight {
    /// The charts its answer covers at least.
    scope: Scope,
    future: Shared<BoxFuture<'static, IndexResult>>,
}

/// The Helm datasource.
pub struct HelmIndex {
    ctx: Arc<Context>,
    /// Charts the run will ask for, per index URL ([`HelmIndex::want`]).
    wanted: Mutex<HashMap<String, BTreeSet<String>>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
}

impl HelmIndex {
    /// A datasource sharing `ctx`.
    pub fn new(ctx: Arc<Context>) -> HelmIndex {
        HelmIndex { ctx, wanted: Mutex::new(HashMap::new()), in_flight: Mutex::new(HashMap::new()) }
    }

    /// Announce the charts a run will ask for, so each index is read once for all of them and
    /// for nothing else. A chart asked for without being announced still gets its answer, at
    /// the cost of a second read of its index.
    pub fn want<'p>(&self, packages: impl IntoIterator<Item = &'p Package>) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        for p in packages {
            let url = index_url(&self.ctx.rewrites.apply(&p.registry));
            wanted.entry(url).or_default().insert(p.name.clone());
        }
    }

    fn index(&self, repository: &str, chart: &str) -> Shared<BoxFuture<'static, IndexResult>> {
        let url = index_url(&self.ctx.rewrites.apply(repository));
        let covers = |scope: &Scope| scope.as_ref().is_none_or(|s| s.contains(chart));
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let (key, scope) = match in_flight.get(&url) {
            Some(f) if covers(&f.scope) => return f.future.clone(),
            // Announced charts are read; one asked for past them needs the whole index.
            Some(_) => (format!("{url}\n*"), None),
            None => {
                let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
                let mut scope = wanted.get(&url).cloned().unwrap_or_default();
                scope.insert(chart.to_string());
                (url.clone(), Some(scope))
            }
        };
        if let Some(f) = in_flight.get(&key) {
            return f.future.clone();
        }
        let ctx = self.ctx.clone();
        let auth = ctx.auth_for(repository);
        let wanted = scope.clone();
        let future = async move {
            let charts = fetch_index(ctx, url, auth, wanted).await?;
            Ok(Arc::new(charts.into_iter().map(|(name, releases)| (name, SharedReleases::from(releases))).collect()))
        }
        .boxed()
        .shared();
        in_flight.insert(key, InFlight { scope, future: future.clone() });
        future
    }
}

impl Datasource for HelmIndex {
    fn name(&self) -> &'static str {
        "helm"
    }

    fn releases<'a>(&'a self, package: &'a Package) -> BoxFuture<'a, Result<SharedReleases, LookupError>> {
        async move {
            let index = self.index(&package.registry, &package.name).await?;
            index.get(&package.name).cloned().ok_or_else(|| LookupError {
                url: super::http::redact(&index_url(&self.ctx.rewrites.apply(&package.registry))),
                message: format!("chart `{}` is not in this repository's index", package.name),
            })
        }
        .boxed()
    }
}

/// Whether a cached entry read with `cached` answers for every chart in `wanted`.
fn covers(cached: &Scope, wanted: &Scope) -> bool {
    match (cached, wanted) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(c), Some(w)) => w.is_subset(c),
    }
}

async fn fetch_index(
    ctx: Arc<Context>,
    url: String,
    auth: super::http::Auth,
    wanted: Scope,
) -> Result<Charts, LookupError> {
    let key = super::http::redact(&url);
    let entry = ctx.cache.load(&key);
    // Keep what the cache already answered for, so runs asking for different charts of one
    // index (a fleet sharing a cache) grow the entry instead of evicting each other.
    let scope = match (&wanted, entry.as_ref().map(|e| &e.scope)) {
        (Some(w), Some(Some(c))) => Some(w.union(c).cloned().collect()),
        _ => wanted.clone(),
    };
    let cached = entry.filter(|e| covers(&e.scope, &wanted));
    if ctx.offline {
        return cached.map(|e| e.packages).ok_or_else(|| LookupError::offline(&key));
    }
    let request = Request {
        url: url.clone(),
        auth,
        accept: Some("application/x-yaml, text/yaml, */*"),
        validators: cached.as_ref().map(|e| e.validators.clone()),
        ..Request::default()
    };
    let mut sink = Distiller::new(scope.clone());
    let response = ctx.http.get_streamed(&request, &mut sink).await.map_err(LookupError::from)?;
    let validators = response.validators();
    let charts = match (response.status, response.body) {
        (304, _) => {
            return cached.map(|e| e.packages).ok_or_else(|| LookupError {
                url: key.clone(),
                message: "the server answered 304 Not Modified to an unconditional request".into(),
            });
        }
        (200..=299, Body::Streamed) => match sink.finish() {
            Ok(charts) => charts,
            Err(bail) => {
                tracing::debug!("{key}: line {}: {}; reading the index with the YAML parser", bail.line, bail.why);
                return general_path(&ctx, request, key, scope).await;
            }
        },
        (status, _) => return Err(LookupError::status(&key, status, "Helm repository index")),
    };
    Ok(stored(&ctx, Entry::new(&key, validators, charts).with_scope(scope)))
}

/// Fetch the index again, whole, and read it with the YAML parser: for the files the line
/// scanner declines (a layout Helm does not write), where correctness beats memory.
async fn general_path(ctx: &Context, request: Request, key: String, scope: Scope) -> Result<Charts, LookupError> {
    let request = Request { validators: None, ..request };
    let response = ctx.http.get(&request).await.map_err(LookupError::from)?;
    let validators = response.validators();
    let (200..=299, Body::Full(bytes)) = (response.status, response.body) else {
        return Err(LookupError::status(&key, response.status, "Helm repository index"));
    };
    let wanted = scope.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let text = String::from_utf8(bytes).map_err(|e| format!("the index is not UTF-8: {e}"))?;
        parse_index(&text).map(|charts| only(charts, wanted.as_ref()))
    })
    .await
    .map_err(|e| LookupError { url: key.clone(), message: format!("index parser crashed: {e}") })?
    .map_err(|message| LookupError { url: key.clone(), message })?;
    Ok(stored(ctx, Entry::new(&key, validators, parsed).with_scope(scope)))
}

/// The entry's charts, once it is in the cache (moved out, not copied: an index's distilled
/// charts can be a few hundred KB).
fn stored(ctx: &Context, entry: Entry) -> Charts {
    ctx.cache.store(&entry);
    entry.packages
}

/// `charts` restricted to `wanted`.
fn only(mut charts: Charts, wanted: Option<&BTreeSet<String>>) -> Charts {
    if let Some(w) = wanted {
        charts.retain(|name, _| w.contains(name));
    }
    charts
}

/// The line scanner as a body sink: fed while the index downloads.
struct Distiller {
    scope: Scope,
    scanner: Option<IndexScanner>,
    bail: Option<Bail>,
}

impl Distiller {
    fn new(scope: Scope) -> Distiller {
        Distiller { scanner: Some(IndexScanner::new(scope.clone())), scope, bail: None }
    }

    fn finish(self) -> Result<Charts, Bail> {
        if let Some(bail) = self.bail {
            return Err(bail);
        }
        match self.scanner {
            Some(scanner) => scanner.finish(),
            None => Err(Bail { line: 0, why: "no body" }),
        }
    }
}

impl BodySink for Distiller {
    fn restart(&mut self) {
        self.scanner = Some(IndexScanner::new(self.scope.clone()));
        self.bail = None;
    }

    fn chunk(&mut self, bytes: &[u8]) -> Flow {
        let Some(scanner) = self.scanner.as_mut() else { return Flow::Stop };
        match scanner.feed(bytes) {
            Ok(()) => Flow::More,
            Err(bail) => {
                self.bail = Some(bail);
                self.scanner = None;
                Flow::Stop
            }
        }
    }
}

/// Distil an index held in memory: the line scanner, or the YAML parser where it declines.
/// Both give the same answer (`tests/it/lookup_helm_fast.rs`); this is what benchmarks and
/// tests call.
pub fn distil(text: &str, wanted: Option<&BTreeSet<String>>) -> Result<Charts, String> {
    let mut scanner = IndexScanner::new(wanted.cloned());
    match scanner.feed(text.as_bytes()).and_then(|()| scanner.finish()) {
        Ok(charts) => Ok(charts),
        Err(_) => parse_index(text).map(|charts| only(charts, wanted)),
    }
}

/// The line scanner alone over `text` fed in pieces of `chunk` bytes: `Err` when it declines.
pub fn scan_only(text: &[u8], wanted: Option<&BTreeSet<String>>, chunk: usize) -> Result<Charts, Bail> {
    let mut scanner = IndexScanner::new(wanted.cloned());
    for piece in text.chunks(chunk.max(1)) {
        scanner.feed(piece)?;
    }
    scanner.finish()
}

/// `<repository>/index.yaml`, keeping a query string where it belongs (after the path): an
/// Azure Blob or S3 repository URL may carry its signature there, as Helm and Flux keep it.
pub fn index_url(repository: &str) -> String {
    match repository.split_once('?') {
        Some((path, query)) => format!("{}/index.yaml?{query}", path.trim_end_matches('/')),
        None => format!("{}/index.yaml", repository.trim_end_matches('/')),
    }
}

/// Read an `index.yaml` into releases per chart, newest first.
pub fn parse_index(text: &str) -> Result<BTreeMap<String, Vec<Release>>, String> {
    let mut events = Events { parser: Parser::new_from_str(text), text };
    let mut charts = BTreeMap::new();
    // Stream, document, root mapping.
    loop {
        match events.next()? {
            Event::StreamStart | Event::DocumentStart(_) => continue,
            Event::MappingStart(..) => break,
            Event::StreamEnd => return Err("the index is empty".into()),
            _ => return Err("the index is not a mapping (no `entries:`)".into()),
        }
    }
    let mut saw_entries = false;
    loop {
        match events.next()? {
            Event::MappingEnd => break,
            Event::Scalar(key, ..) if key == "entries" => {
                saw_entries = true;
                read_entries(&mut events, &mut charts)?;
            }
            Event::Scalar(..) | Event::Alias(_) => events.skip_value()?,
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                events.skip_open()?;
                events.skip_value()?;
            }
            other => return Err(format!("unexpected {other:?} at the top of the index")),
        }
    }
    if !saw_entries {
        return Err("the index has no `entries:`; is this a Helm repository?".into());
    }
    finish_releases(&mut charts);
    Ok(charts)
}

struct Events<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    text: &'a str,
}

impl<'a> Events<'a> {
    fn next(&mut self) -> Result<Event<'a>, String> {
        match self.parser.next_event() {
            Some(Ok((event, _))) => Ok(event),
            Some(Err(e)) => {
                let line = e.marker().line();
                Err(format!("invalid YAML at line {line}: {}", e.info()))
            }
            None => Err(format!("the index ends early ({} bytes)", self.text.len())),
        }
    }

    /// Skip the value that follows a key (or the next sequence item).
    fn skip_value(&mut self) -> Result<(), String> {
        match self.next()? {
            Event::MappingStart(..) | Event::SequenceStart(..) => self.skip_open(),
            Event::MappingEnd | Event::SequenceEnd => Err("unexpected end of a collection".into()),
            _ => Ok(()),
        }
    }

    /// Skip to the end of a collection whose start was just read.
    fn skip_open(&mut self) -> Result<(), String> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()? {
                Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
                Event::MappingEnd | Event::SequenceEnd => depth -= 1,
                Event::StreamEnd => return Err("the index ends inside a collection".into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The next value as a scalar string, skipping it if it is a collection.
    fn scalar(&mut self) -> Result<Option<String>, String> {
        match self.next()? {
            Event::Scalar(v, ..) => Ok(Some(v.into_owned())),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                self.skip_open()?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

fn read_entries(events: &mut Events<'_>, charts: &mut BTreeMap<String, Vec<Release>>) -> Result<(), String> {
    match events.next()? {
        Event::MappingStart(..) => {}
        Event::SequenceStart(..) => return events.skip_open(),
        _ => return Ok(()),
    }
    loop {
        let chart = match events.next()? {
            Event::MappingEnd => return Ok(()),
            Event::Scalar(name, ..) => name.into_owned(),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                events.skip_open()?;
                events.skip_value()?;
                continue;
            }
            _ => {
                events.skip_value()?;
                continue;
            }
        };
        match events.next()? {
            Event::SequenceStart(..) => {}
            Event::MappingStart(..) => {
                events.skip_open()?;
                continue;
            }
            _ => continue,
        }
        let releases = charts.entry(chart).or_default();
        loop {
            match events.next()? {
                Event::SequenceEnd => break,
                Event::MappingStart(..) => {
                    if let Some(release) = read_version(events)? {
                        releases.push(release);
                    }
                }
                Event::SequenceStart(..) => events.skip_open()?,
                _ => {}
            }
        }
    }
}

fn read_version(events: &mut Events<'_>) -> Result<Option<Release>, String> {
    let mut f = Fields::default();
    loop {
        let key = match events.next()? {
            Event::MappingEnd => break,
            Event::Scalar(k, ..) => k.into_owned(),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                events.skip_open()?;
                events.skip_value()?;
                continue;
            }
            _ => {
                events.skip_value()?;
                continue;
            }
        };
        match key.as_str() {
            "version" => f.version = events.scalar()?,
            "created" => f.created = events.scalar()?,
            "deprecated" => f.deprecated = events.scalar()?.is_some_and(|v| v == "true"),
            "appVersion" => f.app_version = events.scalar()?,
            "digest" => f.digest = events.scalar()?.filter(|d| !d.trim().is_empty()),
            "kubeVersion" => f.kube_version = events.scalar()?.filter(|v| !v.trim().is_empty()),
            "urls" => match events.next()? {
                Event::SequenceStart(..) => loop {
                    match events.next()? {
                        Event::SequenceEnd => break,
                        Event::Scalar(u, ..) if f.url.is_none() => f.url = Some(u.into_owned()),
                        Event::MappingStart(..) | Event::SequenceStart(..) => events.skip_open()?,
                        _ => {}
                    }
                },
                Event::MappingStart(..) => events.skip_open()?,
                _ => {}
            },
            "annotations" => match events.next()? {
                Event::MappingStart(..) => loop {
                    match events.next()? {
                        Event::MappingEnd => break,
                        Event::Scalar(k, ..) if k == "artifacthub.io/changes" => f.changes = events.scalar()?,
                        Event::MappingStart(..) | Event::SequenceStart(..) => {
                            events.skip_open()?;
                            events.skip_value()?;
                        }
                        _ => events.skip_value()?,
                    }
                },
                Event::SequenceStart(..) => events.skip_open()?,
                _ => {}
            },
            _ => events.skip_value()?,
        }
    }
    Ok(f.release())
}

/// What an index says about one chart version, as read (by either path) before it becomes a
/// [`Release`]: the one place both paths meet, so they cannot disagree on what a field means.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) version: Option<String>,
    pub(crate) created: Option<String>,
    pub(crate) deprecated: bool,
    pub(crate) app_version: Option<String>,
    pub(crate) kube_version: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) digest: Option<String>,
    pub(crate) changes: Option<String>,
}

impl Fields {
    /// The release, or none for a version mapping without a `version`.
    pub(crate) fn release(self) -> Option<Release> {
        let version = self.version?;
        let parsed_changes = self.changes.as_deref().map(signals::parse_changes).unwrap_or_default();
        let mut signals = signals::from_changes(&parsed_changes);
        if self.deprecated {
            signals.push(Signal {
                kind: SignalKind::Deprecated,
                detail: "the chart is marked deprecated in its index".into(),
            });
        }
        if let Some(kv) = &self.kube_version {
            signals.push(Signal { kind: SignalKind::KubeVersion, detail: kv.clone() });
        }
        Some(Release {
            prerelease: Version::parse(&version).is_some_and(|v| v.is_prerelease()),
            published: self.created.and_then(|c| c.parse::<jiff::Timestamp>().ok()),
            deprecated: self.deprecated,
            app_version: self.app_version,
            kube_version: self.kube_version,
            notes: (!parsed_changes.is_empty()).then(|| signals::changes_as_notes(&parsed_changes)),
            url: self.url,
            digest: self.digest,
            signals,
            version,
        })
    }
}

/// Order every chart's releases newest first (both paths end here).
pub(crate) fn finish_releases(charts: &mut BTreeMap<String, Vec<Release>>) {
    for releases in charts.values_mut() {
        sort_newest_first(releases);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls_keep_a_query_after_the_path() {
        assert_eq!(index_url("https://charts.example.com/"), "https://charts.example.com/index.yaml");
        assert_eq!(
            index_url("https://acct.blob.core.windows.net/charts?sv=2024&sig=abc%3D"),
            "https://acct.blob.core.windows.net/charts/index.yaml?sv=2024&sig=abc%3D"
        );
    }

    #[test]
    fn reads_only_what_it_needs_and_skips_the_rest() {
        let index = r#"apiVersion: v1
entries:
  app:
  - apiVersion: v2
    version: 1.2.0
    created: "2024-05-01T10:00:00.123456789Z"
    appVersion: "2.0"
    kubeVersion: ">=1.25.0-0"
    urls: [https://example.com/app-1.2.0.tgz]
    digest: 0f3a1c2e9b7d4a6f8e5c3b1a0d9f7e6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e
    maintainers: [{name: x, email: y}]
    annotations:
      artifacthub.io/changes: |
        - kind: security
          description: Fix CVE-2024-0001
      other: [1, 2]
  - version: 1.10.0
    deprecated: true
    dependencies: [{name: redis, version: 1.x}]
  - {name: noversion}
  other: []
generated: "2024-05-01T10:00:00Z"
"#;
        let charts = parse_index(index).unwrap_or_else(|e| panic!("{e}"));
        let app = &charts["app"];
        assert_eq!(app.iter().map(|r| r.version.as_str()).collect::<Vec<_>>(), ["1.10.0", "1.2.0"]);
        let r = &app[1];
        assert_eq!(r.published.map(|t| t.as_second()), Some(1714557600));
        assert_eq!(r.kube_version.as_deref(), Some(">=1.25.0-0"));
        assert_eq!(r.url.as_deref(), Some("https://example.com/app-1.2.0.tgz"));
        assert_eq!(r.digest.as_deref(), Some("0f3a1c2e9b7d4a6f8e5c3b1a0d9f7e6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e"));
        assert_eq!(app[0].digest, None);
        let kinds: Vec<SignalKind> = r.signals.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [SignalKind::Security, SignalKind::KubeVersion]);
        assert!(app[0].deprecated && app[0].signals.iter().any(|s| s.kind == SignalKind::Deprecated));
        assert!(charts["other"].is_empty());
    }

    #[test]
    fn hostile_indexes_are_errors_not_explosions() {
        assert!(parse_index("").is_err());
        assert!(parse_index("- a list").is_err());
        assert!(parse_index("apiVersion: v1\n").unwrap_err().contains("entries"));
        assert!(parse_index("entries:\n  app:\n  - version: [unclosed\n").is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..40 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        bomb.push_str("entries:\n  app:\n  - version: 1.0.0\n    x: *a39\n");
        let charts = parse_index(&bomb).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(charts["app"].len(), 1);
    }
}
