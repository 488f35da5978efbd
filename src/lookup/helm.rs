//! Helm repositories over HTTP(S): `<url>/index.yaml`.
//!
//! The index is read as a stream of parser events, keeping only what a decision needs per
//! version (`version`, `created`, `deprecated`, `appVersion`, `kubeVersion`, `urls[0]`, `digest`, the
//! `artifacthub.io/changes` annotation) and skipping everything else without building a tree.
//! Aliases are never expanded, so a hostile index cannot multiply itself; its size is capped by
//! the HTTP layer. One fetch serves every chart of the repository: the in-flight fetch is
//! memoised per index URL, so 100 releases sharing a repository cost one request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use saphyr_parser::{Event, Parser};

use super::cache::Entry;
use super::http::{Body, Request};
use super::{Context, Datasource, LookupError, signals};
use crate::gate::versioning::{Version, sort_newest_first};
use crate::model::{Package, Release, Signal, SignalKind};

type IndexResult = Result<Arc<BTreeMap<String, Vec<Release>>>, LookupError>;

/// The Helm datasource.
pub struct HelmIndex {
    ctx: Arc<Context>,
    in_flight: Mutex<HashMap<String, Shared<BoxFuture<'static, IndexResult>>>>,
}

impl HelmIndex {
    /// A datasource sharing `ctx`.
    pub fn new(ctx: Arc<Context>) -> HelmIndex {
        HelmIndex { ctx, in_flight: Mutex::new(HashMap::new()) }
    }

    fn index(&self, repository: &str) -> Shared<BoxFuture<'static, IndexResult>> {
        let url = index_url(&self.ctx.rewrites.apply(repository));
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight
            .entry(url.clone())
            .or_insert_with(|| {
                let ctx = self.ctx.clone();
                let auth = ctx.auth_for(repository);
                async move { fetch_index(ctx, url, auth).await.map(Arc::new) }.boxed().shared()
            })
            .clone()
    }
}

impl Datasource for HelmIndex {
    fn name(&self) -> &'static str {
        "helm"
    }

    fn releases<'a>(&'a self, package: &'a Package) -> BoxFuture<'a, Result<Vec<Release>, LookupError>> {
        async move {
            let index = self.index(&package.registry).await?;
            index.get(&package.name).cloned().ok_or_else(|| LookupError {
                url: super::http::redact(&index_url(&self.ctx.rewrites.apply(&package.registry))),
                message: format!("chart `{}` is not in this repository's index", package.name),
            })
        }
        .boxed()
    }
}

async fn fetch_index(
    ctx: Arc<Context>,
    url: String,
    auth: super::http::Auth,
) -> Result<BTreeMap<String, Vec<Release>>, LookupError> {
    let key = super::http::redact(&url);
    let cached = ctx.cache.load(&key);
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
    let response = ctx.http.get(&request).await.map_err(LookupError::from)?;
    let validators = response.validators();
    match (response.status, response.body) {
        (304, _) => cached.map(|e| e.packages).ok_or_else(|| LookupError {
            url: key.clone(),
            message: "the server answered 304 Not Modified to an unconditional request".into(),
        }),
        (200..=299, Body::Full(bytes)) => {
            let parsed = tokio::task::spawn_blocking(move || {
                let text = String::from_utf8(bytes).map_err(|e| format!("the index is not UTF-8: {e}"))?;
                parse_index(&text)
            })
            .await
            .map_err(|e| LookupError { url: key.clone(), message: format!("index parser crashed: {e}") })?
            .map_err(|message| LookupError { url: key.clone(), message })?;
            ctx.cache.store(&Entry::new(&key, validators, parsed.clone()));
            Ok(parsed)
        }
        (status, _) => Err(LookupError::status(&key, status, "Helm repository index")),
    }
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
    for releases in charts.values_mut() {
        sort_newest_first(releases);
    }
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
    let mut version = None;
    let mut created = None;
    let mut deprecated = false;
    let mut app_version = None;
    let mut kube_version = None;
    let mut url = None;
    let mut digest = None;
    let mut changes = None;
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
            "version" => version = events.scalar()?,
            "created" => created = events.scalar()?,
            "deprecated" => deprecated = events.scalar()?.is_some_and(|v| v == "true"),
            "appVersion" => app_version = events.scalar()?,
            "digest" => digest = events.scalar()?.filter(|d| !d.trim().is_empty()),
            "kubeVersion" => kube_version = events.scalar()?.filter(|v| !v.trim().is_empty()),
            "urls" => match events.next()? {
                Event::SequenceStart(..) => loop {
                    match events.next()? {
                        Event::SequenceEnd => break,
                        Event::Scalar(u, ..) if url.is_none() => url = Some(u.into_owned()),
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
                        Event::Scalar(k, ..) if k == "artifacthub.io/changes" => changes = events.scalar()?,
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
    let Some(version) = version else { return Ok(None) };
    let parsed_changes = changes.as_deref().map(signals::parse_changes).unwrap_or_default();
    let mut signals = signals::from_changes(&parsed_changes);
    if deprecated {
        signals.push(Signal {
            kind: SignalKind::Deprecated,
            detail: "the chart is marked deprecated in its index".into(),
        });
    }
    if let Some(kv) = &kube_version {
        signals.push(Signal { kind: SignalKind::KubeVersion, detail: kv.clone() });
    }
    Ok(Some(Release {
        prerelease: Version::parse(&version).is_some_and(|v| v.is_prerelease()),
        published: created.and_then(|c| c.parse::<jiff::Timestamp>().ok()),
        deprecated,
        app_version,
        kube_version,
        notes: (!parsed_changes.is_empty()).then(|| signals::changes_as_notes(&parsed_changes)),
        url,
        digest,
        signals,
        version,
    }))
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
