//! A wire-level fake Kubernetes API server on loopback, for the verifier's tests: hand-rolled
//! HTTP/1.1 over tokio, the real paths (`/api/v1/...`, `/apis/<group>/<version>/...`),
//! discovery, list, get, watch (chunked newline-delimited events with resourceVersions) and JSON
//! merge patch, serving objects loaded from `fixtures/kube/` on scripted timelines.
//!
//! upkeep reaches it through a kubeconfig, exactly as it reaches a cluster, so kube's whole
//! client stack (config, auth header, hyper, discovery, the runtime watcher) is exercised.
//! Objects are stored independently of API version and served at whichever version of their
//! group the request names, provided the fake is told that version is served.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::util::fixture;

/// One resource type the fake knows: its group, plural, Kind and scope.
struct Resource {
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
}

const RESOURCES: &[Resource] = &[
    Resource { group: "", plural: "pods", kind: "Pod", namespaced: true },
    Resource { group: "", plural: "events", kind: "Event", namespaced: true },
    Resource { group: "", plural: "nodes", kind: "Node", namespaced: false },
    Resource { group: "", plural: "namespaces", kind: "Namespace", namespaced: false },
    Resource { group: "apps", plural: "deployments", kind: "Deployment", namespaced: true },
    Resource { group: "apps", plural: "statefulsets", kind: "StatefulSet", namespaced: true },
    Resource { group: "apps", plural: "daemonsets", kind: "DaemonSet", namespaced: true },
    Resource { group: "source.toolkit.fluxcd.io", plural: "gitrepositories", kind: "GitRepository", namespaced: true },
    Resource {
        group: "source.toolkit.fluxcd.io",
        plural: "helmrepositories",
        kind: "HelmRepository",
        namespaced: true,
    },
    Resource { group: "source.toolkit.fluxcd.io", plural: "ocirepositories", kind: "OCIRepository", namespaced: true },
    Resource {
        group: "kustomize.toolkit.fluxcd.io",
        plural: "kustomizations",
        kind: "Kustomization",
        namespaced: true,
    },
    Resource { group: "helm.toolkit.fluxcd.io", plural: "helmreleases", kind: "HelmRelease", namespaced: true },
    Resource { group: "upgrade.cattle.io", plural: "plans", kind: "Plan", namespaced: true },
    Resource { group: "longhorn.io", plural: "volumes", kind: "Volume", namespaced: true },
    Resource { group: "longhorn.io", plural: "engineimages", kind: "EngineImage", namespaced: true },
];

fn resource_by_plural(plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

fn resource_by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// Where an object lives: (plural, namespace or "" when cluster-scoped, name).
type Key = (String, String, String);

/// A change to the fake's objects, applied now (`FakeKube::apply`) or on the timeline.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    /// Create or replace an object (its Kind, namespace and name say which).
    Put(Value),
    /// JSON merge patch (RFC 7386) an existing object.
    Merge { plural: String, namespace: String, name: String, patch: Value },
    /// Delete an object.
    Delete { plural: String, namespace: String, name: String },
    /// Answer the next watch of `plural` that resumes from a resourceVersion with 410 Expired
    /// (as an API server does once etcd compacted that version), forcing a relist.
    ExpireNextWatch { plural: String },
}

impl Change {
    /// The deletion of `plural` `namespace/name`.
    pub(crate) fn delete(plural: &str, namespace: &str, name: &str) -> Change {
        Change::Delete { plural: plural.into(), namespace: namespace.into(), name: name.into() }
    }

    /// A merge patch of `plural` `namespace/name`.
    pub(crate) fn merge(plural: &str, namespace: &str, name: &str, patch: Value) -> Change {
        Change::Merge { plural: plural.into(), namespace: namespace.into(), name: name.into(), patch }
    }
}

/// An access rule that answers 403: any field left `None` matches everything.
#[derive(Clone, Debug)]
struct Forbid {
    verb: Option<String>,
    plural: Option<String>,
}

/// One watch event in the log, replayed to watches that resume from an older resourceVersion.
struct Logged {
    rv: u64,
    key: Key,
    type_: &'static str,
    object: Value,
}

struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Logged>,
    versions: BTreeMap<String, Vec<String>>,
    forbid: Vec<Forbid>,
    unauthorized: bool,
    close_watches_after: Option<usize>,
    expire_next_watch: Vec<String>,
    requests: Vec<String>,
    patches: Vec<(String, Value)>,
    authorizations: Vec<String>,
    timeline: Vec<(Duration, Change)>,
}

/// The fake API server. Dropping it does not stop it; call [`FakeKube::stop`] for that.
#[derive(Clone)]
pub(crate) struct FakeKube {
    url: String,
    token: String,
    state: Arc<Mutex<State>>,
    notify: Arc<watch::Sender<u64>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl FakeKube {
    /// Start on 127.0.0.1 with a random port, serving source and kustomize v1 + v1beta2,
    /// helm v2 + v2beta2 + v2beta1, system-upgrade-controller's Plans (upgrade.cattle.io/v1) and
    /// Longhorn's volumes and engine images (longhorn.io v1beta2 + v1beta1), no objects.
    pub(crate) async fn start() -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let versions = BTreeMap::from([
            (String::new(), vec!["v1".to_string()]),
            ("apps".to_string(), vec!["v1".to_string()]),
            ("source.toolkit.fluxcd.io".to_string(), vec!["v1".to_string(), "v1beta2".to_string()]),
            ("kustomize.toolkit.fluxcd.io".to_string(), vec!["v1".to_string(), "v1beta2".to_string()]),
            ("helm.toolkit.fluxcd.io".to_string(), vec!["v2".into(), "v2beta2".into(), "v2beta1".into()]),
            ("upgrade.cattle.io".to_string(), vec!["v1".into()]),
            ("longhorn.io".to_string(), vec!["v1beta2".into(), "v1beta1".into()]),
        ]);
        let state = State {
            rv: 1000,
            objects: BTreeMap::new(),
            log: Vec::new(),
            versions,
            forbid: Vec::new(),
            unauthorized: false,
            close_watches_after: None,
            expire_next_watch: Vec::new(),
            requests: Vec::new(),
            patches: Vec::new(),
            authorizations: Vec::new(),
            timeline: Vec::new(),
        };
        let fake = FakeKube {
            url,
            token: "fake-token-7f3a9c".into(),
            state: Arc::new(Mutex::new(state)),
            notify: Arc::new(watch::channel(1000).0),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        let server = fake.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = server.clone();
                let task = tokio::spawn(async move { conn.serve(stream).await });
                server.tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        fake.tasks.lock().unwrap().push(accept.abort_handle());
        fake
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token the kubeconfig carries.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Write a kubeconfig for this server (context `fake`, a token user) into `dir`.
    pub(crate) fn kubeconfig(&self, dir: &Path) -> PathBuf {
        write_kubeconfig(dir, &self.url, &self.token)
    }

    /// Stop listening and drop every open connection: the server becomes unreachable.
    pub(crate) fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Serve only these versions of `group` (newest first, as discovery lists them).
    pub(crate) fn serve_versions(&self, group: &str, versions: &[&str]) {
        let versions = versions.iter().map(|v| v.to_string()).collect();
        self.state.lock().unwrap().versions.insert(group.into(), versions);
    }

    /// Answer every request with 403 Forbidden.
    pub(crate) fn forbid_all(&self) {
        self.state.lock().unwrap().forbid.push(Forbid { verb: None, plural: None });
    }

    /// Answer 403 to `verb` (get, list, watch, patch) on `plural` (either may be `None`: any).
    pub(crate) fn forbid(&self, verb: Option<&str>, plural: Option<&str>) {
        let rule = Forbid { verb: verb.map(str::to_string), plural: plural.map(str::to_string) };
        self.state.lock().unwrap().forbid.push(rule);
    }

    /// Answer every request with 401 Unauthorized (the credentials are refused).
    pub(crate) fn unauthorized(&self) {
        self.state.lock().unwrap().unauthorized = true;
    }

    /// End every watch response after `n` events (bookmarks not counted).
    pub(crate) fn close_watches_after(&self, n: usize) {
        self.state.lock().unwrap().close_watches_after = Some(n);
    }

    /// Every request so far, `METHOD /path?query`.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Every accepted patch, (path, patch body).
    pub(crate) fn patches(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().patches.clone()
    }

    /// Every Authorization header received.
    pub(crate) fn authorizations(&self) -> Vec<String> {
        self.state.lock().unwrap().authorizations.clone()
    }

    /// The stored object, if any.
    pub(crate) fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        self.state.lock().unwrap().objects.get(&key).cloned()
    }

    /// Load `fixtures/kube/<name>` and store it.
    pub(crate) fn put_fixture(&self, name: &str) {
        self.apply(Change::Put(load(name)));
    }

    /// Apply a change now: bumps the resourceVersion and wakes the watches.
    pub(crate) fn apply(&self, change: Change) {
        let rv = self.state.lock().unwrap().apply(change);
        self.notify.send_replace(rv);
    }

    /// Schedule `change` at `offset` after [`FakeKube::start_clock`].
    pub(crate) fn at(&self, offset: Duration, change: Change) {
        self.state.lock().unwrap().timeline.push((offset, change));
    }

    /// Start the timeline: a background task applies each scheduled change at its offset.
    pub(crate) fn start_clock(&self) {
        let mut timeline = std::mem::take(&mut self.state.lock().unwrap().timeline);
        timeline.sort_by_key(|(offset, _)| *offset);
        let fake = self.clone();
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut due = timeline.into_iter().peekable();
            while let Some((offset, change)) = due.next() {
                tokio::time::sleep_until(start + offset).await;
                // Changes at the same offset land together, as one controller write burst.
                fake.apply(change);
                while let Some((_, change)) = due.next_if(|(next, _)| *next == offset) {
                    fake.apply(change);
                }
            }
        });
        self.tasks.lock().unwrap().push(task.abort_handle());
    }

    async fn serve(&self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        while let Some(request) = read_request(&mut reader).await {
            if !self.handle(request, &mut write).await {
                return;
            }
        }
    }

    /// Answer one request; false when the connection must close (after a watch).
    async fn handle(&self, request: Request, out: &mut tokio::net::tcp::OwnedWriteHalf) -> bool {
        let route = route(&request);
        let refusal = {
            let mut state = self.state.lock().unwrap();
            state.requests.push(format!("{} {}", request.method, request.target));
            if let Some(auth) = request.header("authorization") {
                state.authorizations.push(auth.to_string());
            }
            state.refusal(&route)
        };
        if let Some((code, body)) = refusal {
            return respond(out, code, &body).await;
        }
        match route {
            Route::Discovery(path) => {
                let answer = self.state.lock().unwrap().discovery(&path);
                match answer {
                    Some(body) => respond(out, 200, &body).await,
                    None => {
                        respond(out, 404, &status(404, "NotFound", "the server could not find the requested resource"))
                            .await
                    }
                }
            }
            Route::Object(at) if !self.state.lock().unwrap().serves(&at) => {
                respond(out, 404, &status(404, "NotFound", "the server could not find the requested resource")).await
            }
            Route::Object(at)
                if request.method == "GET" && at.query("watch").is_some_and(|w| w == "1" || w == "true") =>
            {
                self.stream_watch(&at, out).await;
                false
            }
            Route::Object(at) => {
                let (code, body) = self.state.lock().unwrap().object_request(&request, &at);
                if code == 200 && request.method == "PATCH" {
                    let rv = self.state.lock().unwrap().rv;
                    self.notify.send_replace(rv);
                }
                respond(out, code, &body).await
            }
            Route::Unknown => respond(out, 404, &status(404, "NotFound", "404 page not found")).await,
        }
    }

    /// Stream watch events as chunked JSON lines, from the requested resourceVersion on.
    async fn stream_watch(&self, at: &At, out: &mut tokio::net::tcp::OwnedWriteHalf) {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if out.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut updates = self.notify.subscribe();
        let bookmarks = at.query("allowWatchBookmarks").is_some_and(|b| b == "true" || b == "1");
        let (mut cursor, initial, limit, expired) = {
            let mut state = self.state.lock().unwrap();
            let from = at.query("resourceVersion").and_then(|rv| rv.parse::<u64>().ok()).filter(|rv| *rv > 0);
            let expire = state.expire_next_watch.iter().position(|p| p == at.resource.plural);
            let expired = match (from, expire) {
                (Some(from), Some(index)) => {
                    state.expire_next_watch.remove(index);
                    let message = format!("too old resource version: {from} ({})", state.rv);
                    Some(json!({"type": "ERROR", "object": status(410, "Expired", &message)}))
                }
                _ => None,
            };
            let initial: Vec<Value> = match from {
                Some(_) => Vec::new(),
                None => state.matching(at).into_iter().map(|o| json!({"type": "ADDED", "object": o})).collect(),
            };
            (from.unwrap_or(state.rv), initial, state.close_watches_after, expired)
        };
        if let Some(expired) = expired {
            if write_chunk(out, &expired).await {
                let _ = out.write_all(b"0\r\n\r\n").await;
            }
            return;
        }
        let mut sent = 0;
        for event in initial {
            if !write_chunk(out, &event).await {
                return;
            }
            sent += 1;
        }
        loop {
            if limit.is_some_and(|n| sent >= n) {
                let _ = out.write_all(b"0\r\n\r\n").await;
                return;
            }
            let (events, rv) = self.state.lock().unwrap().events_since(at, cursor);
            for (event_rv, event) in events {
                if limit.is_some_and(|n| sent >= n) {
                    break;
                }
                if !write_chunk(out, &event).await {
                    return;
                }
                cursor = event_rv;
                sent += 1;
            }
            if limit.is_some_and(|n| sent >= n) {
                continue;
            }
            cursor = cursor.max(rv);
            if tokio::time::timeout(Duration::from_millis(500), updates.changed()).await.is_err() && bookmarks {
                let bookmark = json!({"type": "BOOKMARK", "object": {
                    "kind": at.resource.kind, "apiVersion": at.api_version(),
                    "metadata": {"resourceVersion": cursor.to_string()}}});
                if !write_chunk(out, &bookmark).await {
                    return;
                }
            }
        }
    }
}

/// A URL on loopback that nobody listens on.
pub(crate) async fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// Write a kubeconfig pointing at `server` with a bearer-token user.
pub(crate) fn write_kubeconfig(dir: &Path, server: &str, token: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: upkeep\n    namespace: default\ncurrent-context: fake\nusers:\n- name: upkeep\n  user:\n    token: {token}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A fixture object, without its `_source` note.
pub(crate) fn load(name: &str) -> Value {
    let path = fixture(&format!("kube/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    value.as_object_mut().unwrap().remove("_source");
    value
}

/// A fixture object retargeted from the Flux docs' `default/podinfo` to the example's release.
pub(crate) fn retarget(fixture: &str, ns: &str, name: &str, old: &str, new: &str) -> Value {
    let text = load(fixture).to_string();
    let text = text
        .replace("default/podinfo", &format!("{ns}/{name}"))
        .replace("\"namespace\":\"default\"", &format!("\"namespace\":\"{ns}\""))
        .replace("fluxcd.io/namespace\":\"default\"", &format!("fluxcd.io/namespace\":\"{ns}\""))
        .replace("podinfo", name)
        .replace("6.5.3", old)
        .replace("6.5.4", new);
    serde_json::from_str(&text).unwrap()
}

/// The example's Flux: the GitRepository and the `infrastructure` Kustomization, both at
/// `old_commit` and Ready.
pub(crate) fn flux_synced_at(fake: &FakeKube, old_commit: &str) {
    let mut git = load("gitrepository-v1-ready.json");
    git["metadata"] = json!({"name": "flux-system", "namespace": "flux-system", "generation": 1});
    git["status"]["artifact"]["revision"] = json!(format!("main@sha1:{old_commit}"));
    fake.apply(Change::Put(git));
    let mut k = load("kustomization-v1-ready.json");
    k["metadata"] = json!({"name": "infrastructure", "namespace": "flux-system", "generation": 1});
    k["spec"]["path"] = json!("./infrastructure");
    k["spec"]["sourceRef"] = json!({"kind": "GitRepository", "name": "flux-system"});
    k["status"]["lastAppliedRevision"] = json!(format!("main@sha1:{old_commit}"));
    k["status"]["lastAttemptedRevision"] = json!(format!("main@sha1:{old_commit}"));
    fake.apply(Change::Put(k));
}

/// Flux fetches `commit` and each named Kustomization of `flux-system` applies it: the
/// source's and the Kustomizations' statuses, in that order.
pub(crate) fn flux_applies(commit: &str, kustomizations: &[&str]) -> Vec<Change> {
    let rev = format!("main@sha1:{commit}");
    let source = json!({"status": {"artifact": {"revision": rev}}});
    let applied = json!({"status": {"lastAppliedRevision": rev, "lastAttemptedRevision": rev}});
    std::iter::once(Change::merge("gitrepositories", "flux-system", "flux-system", source))
        .chain(kustomizations.iter().map(|name| Change::merge("kustomizations", "flux-system", name, applied.clone())))
        .collect()
}

impl State {
    fn apply(&mut self, change: Change) -> u64 {
        if let Change::ExpireNextWatch { plural } = change {
            self.expire_next_watch.push(plural);
            return self.rv;
        }
        self.rv += 1;
        let rv = self.rv;
        let (key, type_, object) = match change {
            Change::Put(object) => {
                let kind = object["kind"].as_str().unwrap_or_default();
                let resource = resource_by_kind(kind).unwrap_or_else(|| panic!("fake kube: unknown kind {kind}"));
                let namespace = if resource.namespaced {
                    object["metadata"]["namespace"].as_str().unwrap_or("default")
                } else {
                    ""
                };
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let key = (resource.plural.to_string(), namespace.to_string(), name.to_string());
                let type_ = if self.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
                (key, type_, object)
            }
            Change::Merge { plural, namespace, name, patch } => {
                let key = (plural, namespace, name);
                let mut object =
                    self.objects.get(&key).cloned().unwrap_or_else(|| panic!("fake kube: no {key:?} to merge"));
                merge_patch(&mut object, &patch);
                (key, "MODIFIED", object)
            }
            Change::ExpireNextWatch { .. } => return self.rv,
            Change::Delete { plural, namespace, name } => {
                let key = (plural, namespace, name);
                let object = self.objects.remove(&key).unwrap_or_else(|| panic!("fake kube: no {key:?} to delete"));
                self.log.push(Logged { rv, key, type_: "DELETED", object });
                return rv;
            }
        };
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.log.push(Logged { rv, key, type_, object });
        rv
    }

    /// 401 or 403 with a Kubernetes Status body, when the access rules say so.
    fn refusal(&self, route: &Route) -> Option<(u16, Value)> {
        if self.unauthorized {
            return Some((401, status(401, "Unauthorized", "Unauthorized")));
        }
        let user = "system:serviceaccount:flux-system:upkeep";
        let (verb, plural, message) = match route {
            Route::Object(at) => {
                let r = at.resource;
                let scope = match &at.namespace {
                    Some(ns) => format!("in the namespace \"{ns}\""),
                    None => "at the cluster scope".into(),
                };
                let target = match &at.name {
                    Some(name) => format!("{}.{} \"{name}\"", r.plural, r.group),
                    None => format!("{}.{}", r.plural, r.group),
                };
                let verb = at.verb();
                let message = format!(
                    "{target} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
                    r.plural, r.group
                );
                (verb, Some(r.plural), message)
            }
            Route::Discovery(path) => ("get", None, format!("forbidden: User \"{user}\" cannot get path \"{path}\"")),
            Route::Unknown => return None,
        };
        let forbidden = self.forbid.iter().any(|rule| {
            rule.verb.as_deref().is_none_or(|v| v == verb) && rule.plural.as_deref().is_none_or(|p| Some(p) == plural)
        });
        forbidden.then(|| (403, status(403, "Forbidden", &message)))
    }

    fn discovery(&self, path: &str) -> Option<Value> {
        let served = |group: &str| self.versions.get(group).cloned().unwrap_or_default();
        match path {
            "/version" => Some(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.4+k3s1", "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2025-08-20T00:00:00Z", "goVersion": "go1.24.5",
                "compiler": "gc", "platform": "linux/amd64"})),
            "/api" => Some(json!({"kind": "APIVersions", "versions": served(""),
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.10:6443"}]})),
            "/apis" => {
                let groups: Vec<Value> = self
                    .versions
                    .iter()
                    .filter(|(group, versions)| !group.is_empty() && !versions.is_empty())
                    .map(|(group, versions)| {
                        let list: Vec<Value> = versions
                            .iter()
                            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                            .collect();
                        json!({"name": group, "versions": list, "preferredVersion": list[0]})
                    })
                    .collect();
                Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
            }
            _ => {
                let (group, version) = match path.strip_prefix("/api/") {
                    Some(version) => ("", version),
                    None => path.strip_prefix("/apis/")?.split_once('/')?,
                };
                if !served(group).iter().any(|v| v == version) {
                    return None;
                }
                let resources: Vec<Value> = RESOURCES
                    .iter()
                    .filter(|r| r.group == group)
                    .map(|r| {
                        json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "list", "watch", "patch", "create", "update", "delete"]})
                    })
                    .collect();
                let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
                Some(
                    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
                )
            }
        }
    }

    /// Objects under `at` that its namespace and selectors match, served at its version.
    fn matching(&self, at: &At) -> Vec<Value> {
        self.objects.iter().filter(|(key, object)| at.matches(key, object)).map(|(_, o)| at.serve(o)).collect()
    }

    /// Watch events after `cursor` under `at`, and the current resourceVersion.
    fn events_since(&self, at: &At, cursor: u64) -> (Vec<(u64, Value)>, u64) {
        let events = self
            .log
            .iter()
            .filter(|e| e.rv > cursor && at.matches(&e.key, &e.object))
            .map(|e| (e.rv, json!({"type": e.type_, "object": at.serve(&e.object)})))
            .collect();
        (events, self.rv)
    }

    /// Whether the version `at` names is served for its group.
    fn serves(&self, at: &At) -> bool {
        self.versions.get(at.resource.group).is_some_and(|v| v.contains(&at.version))
    }

    /// get, list or patch.
    fn object_request(&mut self, request: &Request, at: &At) -> (u16, Value) {
        let Some(name) = &at.name else {
            if request.method != "GET" {
                return (
                    405,
                    status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"),
                );
            }
            let items = self.matching(at);
            let list = json!({"kind": format!("{}List", at.resource.kind), "apiVersion": at.api_version(),
                "metadata": {"resourceVersion": self.rv.to_string()}, "items": items});
            return (200, list);
        };
        let key = (at.resource.plural.to_string(), at.namespace.clone().unwrap_or_default(), name.clone());
        let not_found = || {
            let message = format!("{}.{} \"{name}\" not found", at.resource.plural, at.resource.group);
            let mut body = status(404, "NotFound", &message);
            body["details"] = json!({"name": name, "group": at.resource.group, "kind": at.resource.plural});
            (404, body)
        };
        match request.method.as_str() {
            "GET" => match self.objects.get(&key) {
                Some(object) => (200, at.serve(object)),
                None => not_found(),
            },
            "PATCH" => {
                if request.header("content-type") != Some("application/merge-patch+json") {
                    return (
                        415,
                        status(415, "UnsupportedMediaType", "the body of the request was in an unknown format"),
                    );
                }
                let Ok(patch) = serde_json::from_slice::<Value>(&request.body) else {
                    return (400, status(400, "BadRequest", "invalid JSON in merge patch"));
                };
                if !self.objects.contains_key(&key) {
                    return not_found();
                }
                self.patches.push((at.path.clone(), patch.clone()));
                self.apply(Change::Merge {
                    plural: key.0.clone(),
                    namespace: key.1.clone(),
                    name: key.2.clone(),
                    patch,
                });
                (200, at.serve(&self.objects[&key]))
            }
            _ => (
                405,
                status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"),
            ),
        }
    }
}

/// A Kubernetes `Status` failure body.
fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
        "reason": reason, "code": code})
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().unwrap();
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

async fn read_request(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Request { method, target, headers, body })
}

async fn respond(out: &mut tokio::net::tcp::OwnedWriteHalf, code: u16, body: &Value) -> bool {
    let body = body.to_string();
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        _ => "Bad Request",
    };
    let head =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    out.write_all(head.as_bytes()).await.is_ok() && out.write_all(body.as_bytes()).await.is_ok()
}

async fn write_chunk(out: &mut tokio::net::tcp::OwnedWriteHalf, event: &Value) -> bool {
    let line = format!("{event}\n");
    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
    out.write_all(chunk.as_bytes()).await.is_ok() && out.flush().await.is_ok()
}

/// What a request addresses.
enum Route {
    Discovery(String),
    Object(At),
    Unknown,
}

/// A resource path: which resource, at which version, in which namespace, which object.
struct At {
    resource: &'static Resource,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    path: String,
    query: Vec<(String, String)>,
    method: String,
}

impl At {
    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn api_version(&self) -> String {
        if self.resource.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.resource.group, self.version)
        }
    }

    fn verb(&self) -> &'static str {
        match (self.method.as_str(), &self.name) {
            ("PATCH", _) => "patch",
            _ if self.query("watch").is_some_and(|w| w == "1" || w == "true") => "watch",
            (_, Some(_)) => "get",
            (_, None) => "list",
        }
    }

    /// The object as served at this version.
    fn serve(&self, object: &Value) -> Value {
        let mut object = object.clone();
        object["apiVersion"] = json!(self.api_version());
        object
    }

    fn matches(&self, key: &Key, object: &Value) -> bool {
        key.0 == self.resource.plural
            && self.namespace.as_ref().is_none_or(|ns| *ns == key.1)
            && self.name.as_ref().is_none_or(|name| *name == key.2)
            && self.query("labelSelector").is_none_or(|s| labels_match(s, &object["metadata"]["labels"]))
            && self.query("fieldSelector").is_none_or(|s| fields_match(s, object))
    }
}

/// Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
fn labels_match(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k].as_str() == Some(v)
        } else if let Some(k) = term.strip_prefix('!') {
            labels.get(k).is_none()
        } else {
            labels.get(term).is_some()
        }
    })
}

/// Field selectors `a.b=v` / `a.b!=v` over the object's JSON.
fn fields_match(selector: &str, object: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let field = |path: &str| path.split('.').fold(object, |v, k| &v[k]).as_str().map(str::to_string);
        if let Some((path, v)) = term.split_once("!=") {
            field(path).as_deref() != Some(v)
        } else if let Some((path, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            field(path).as_deref() == Some(v)
        } else {
            true
        }
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(request: &Request) -> Route {
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    if matches!(path, "/version" | "/api" | "/apis" | "/api/v1") {
        return Route::Discovery(path.to_string());
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Unknown,
    };
    if rest.is_empty() {
        return Route::Discovery(path.to_string());
    }
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural, None),
        ["namespaces", ns, plural, name] => (Some(ns.to_string()), *plural, Some(name.to_string())),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(name.to_string())),
        _ => return Route::Unknown,
    };
    let Some(resource) = resource_by_plural(plural).filter(|r| r.group == group) else { return Route::Unknown };
    Route::Object(At {
        resource,
        version: version.to_string(),
        namespace,
        name,
        path: path.to_string(),
        query,
        method: request.method.clone(),
    })
}
