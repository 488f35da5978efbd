//! `upkeep verify --watch` as a real process: the bundled example merged in a sandbox and
//! pushed to a local bare remote, the watching verifier cloning that remote into an empty
//! folder (as the Deployment in `deploy/` does), the loopback fake Kubernetes API moving Flux's
//! GitRepository to each merge, `/metrics` scraped over HTTP and parsed as Prometheus text,
//! and a real SIGTERM sent with `kill`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::deploy_rbac::assert_rbac_covers;
use super::kube_fake::{Change, FakeKube, load};
use super::kube_fake::{flux_applies, flux_synced_at, retarget};
use super::run::Sandbox;
use super::verify_support::{decision, text, upkeep_in};

const NGINX: &str = "upkeep/helmrelease-ingress-nginx-ingress-nginx";
const NGINX_ID: &str = "helmrelease/ingress-nginx/ingress-nginx";
const LONGHORN: &str = "upkeep/helmrelease-longhorn-system-longhorn";
const OLD_NGINX: &str = "4.10.0";

/// The metric families `--listen` serves, exactly (the Grafana dashboard is built on them).
pub(crate) const FAMILIES: [&str; 6] = [
    "upkeep_verifications_total",
    "upkeep_pending_merges",
    "upkeep_reverts_total",
    "upkeep_forward_fixes_total",
    "upkeep_merge_to_verdict_seconds",
    "upkeep_last_pass_timestamp_seconds",
];

/// The example's cluster: Flux synced at `old_commit`, ingress-nginx Ready at 4.10.0.
pub(crate) struct Flux {
    pub(crate) fake: FakeKube,
    dir: tempfile::TempDir,
}

impl Flux {
    pub(crate) async fn start(old_commit: &str) -> Flux {
        let fake = FakeKube::start().await;
        flux_synced_at(&fake, old_commit);
        let mut hr =
            retarget("helmrelease-v2-test-succeeded.json", "ingress-nginx", "ingress-nginx", OLD_NGINX, OLD_NGINX);
        hr["status"]["history"][0]["chartVersion"] = json!(OLD_NGINX);
        hr["spec"]["chart"]["spec"]["sourceRef"] =
            json!({"kind": "HelmRepository", "name": "ingress-nginx", "namespace": "flux-system"});
        fake.apply(Change::Put(hr));
        let mut repository = load("helmrepository-v1-ready.json");
        repository["metadata"] = json!({"name": "ingress-nginx", "namespace": "flux-system", "generation": 1});
        fake.apply(Change::Put(repository));
        let deployment = "deployment-podinfo-rolled-out.json";
        fake.apply(Change::Put(retarget(deployment, "ingress-nginx", "ingress-nginx", OLD_NGINX, OLD_NGINX)));
        Flux { fake, dir: tempfile::tempdir().unwrap() }
    }

    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.fake.kubeconfig(self.dir.path())
    }

    /// Flux fetched `commit` and the Kustomization applied it.
    pub(crate) fn fetched(&self, commit: git2::Oid) {
        for change in flux_applies(&commit.to_string(), &["infrastructure"]) {
            self.fake.apply(change);
        }
    }

    /// helm-controller upgraded ingress-nginx to `new`, Ready.
    pub(crate) fn nginx_upgraded(&self, new: &str) {
        let mut hr = retarget("helmrelease-v2-test-succeeded.json", "ingress-nginx", "ingress-nginx", OLD_NGINX, new);
        hr["metadata"]["generation"] = json!(2);
        hr["status"]["observedGeneration"] = json!(2);
        hr["status"]["history"][0]["chartVersion"] = json!(new);
        self.fake.apply(Change::Put(hr));
    }

    /// helm-controller failed to upgrade Longhorn to `new`.
    fn longhorn_failed(&self, new: &str) {
        let mut hr = retarget("helmrelease-v2-upgrade-failed.json", "longhorn-system", "longhorn", "1.5.0", new);
        hr["status"]["observedGeneration"] = json!(2);
        self.fake.apply(Change::Put(hr));
    }
}

/// Merge `branch` into main with a real merge commit (a three-way merge of the trees, so an
/// earlier merge stays), as GitHub's "Create a merge commit" does.
pub(crate) fn merge_branch(sb: &Sandbox, branch: &str) -> git2::Oid {
    let sig = git2::Signature::now("Maintainer", "maintainer@example.com").unwrap();
    merge_as(sb, branch, &sig, &format!("Merge pull request from example/{branch}"))
}

/// [`merge_branch`] with the merge commit's signature and message given.
pub(crate) fn merge_as(sb: &Sandbox, branch: &str, sig: &git2::Signature<'_>, message: &str) -> git2::Oid {
    let git = sb.git();
    let side = git.find_commit(git.refname_to_id(&format!("refs/heads/{branch}")).unwrap()).unwrap();
    let main = git.find_commit(sb.main_tip()).unwrap();
    let mut index = git.merge_commits(&main, &side, None).unwrap();
    assert!(!index.has_conflicts(), "{branch} merges cleanly");
    let tree = git.find_tree(index.write_tree_to(&git).unwrap()).unwrap();
    let merged = git.commit(Some("refs/heads/main"), sig, sig, message, &tree, &[&main, &side]).unwrap();
    git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
    merged
}

/// A bare remote with `main` as its default branch, holding the sandbox's main.
pub(crate) fn bare_remote(sb: &Sandbox) -> PathBuf {
    let bare = sb.root.join("remote.git");
    git2::Repository::init_opts(&bare, git2::RepositoryInitOptions::new().bare(true).initial_head("main")).unwrap();
    push_main(sb, &bare);
    bare
}

pub(crate) fn push_main(sb: &Sandbox, bare: &Path) {
    let git = sb.git();
    let mut remote = git.remote_anonymous(bare.to_str().unwrap()).unwrap();
    remote.push(&["+refs/heads/main:refs/heads/main"], None).unwrap();
}

fn note(repo: &Path, commit: git2::Oid) -> Option<Value> {
    let git = git2::Repository::open(repo).ok()?;
    let note = git.find_note(Some("refs/notes/upkeep"), commit).ok()?;
    serde_json::from_str(note.message().unwrap()).ok()
}

/// A running `upkeep verify --watch`.
struct Watch {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Watch {
    /// Start it on an empty `clone` folder (it clones `bare`), with short deadlines.
    fn start(sb: &Sandbox, clone: &Path, bare: &Path, kubeconfig: &Path, soak: &str, name: &str) -> Watch {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = sb.root.join(format!("{name}.log"));
        let out = std::fs::File::create(sb.root.join(format!("{name}.out"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_upkeep"))
            .args(["-v", "verify", "--watch", "--listen", &format!("127.0.0.1:{port}"), "--format", "json"])
            .args(["--remote", bare.to_str().unwrap(), "--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(["--timeout", "60s", "--soak", soak, clone.to_str().unwrap()])
            .current_dir(&sb.root)
            .env("UPKEEP_CACHE_DIR", sb.root.join("cache"))
            .env_remove("GITHUB_TOKEN")
            .env_remove("KUBECONFIG")
            .env_remove("GITHUB_REPOSITORY")
            .env_remove("RUST_LOG")
            .env("UPKEEP_FLUX", "off")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Watch { child, log, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A real SIGTERM, then the exit code (within 30 s).
    async fn terminate(&mut self) -> Option<i32> {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        panic!("no exit within 30 s of SIGTERM:\n{}", self.log());
    }

    /// The parsed `/metrics`, when the server answers.
    async fn metrics(&self) -> Option<BTreeMap<String, f64>> {
        let (status, head, body) = get(self.port, "/metrics").await?;
        assert_eq!(status, 200);
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        Some(parse_exposition(&body))
    }

    /// Wait (up to 60 s) until `check` holds for the metrics.
    async fn metrics_until(&self, what: &str, check: impl Fn(&BTreeMap<String, f64>) -> bool) -> BTreeMap<String, f64> {
        let mut last = None;
        for _ in 0..600 {
            if let Some(m) = self.metrics().await {
                if check(&m) {
                    return m;
                }
                last = Some(m);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("metrics never showed {what}: {last:?}\n{}", self.log());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET over a real socket: status, head, body.
async fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/plain\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.ok()?;
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap();
    assert_eq!(length, body.len(), "Content-Length matches the body");
    Some((status, head.to_string(), body.to_string()))
}

fn valid_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(|c| ok(c) && !c.is_ascii_digit()) && chars.all(ok)
}

fn value(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("`{v}` is not a sample value")),
    }
}

/// `{a="b",c="d"}` → labels; panics on anything the 0.0.4 format does not allow.
fn labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label without =\" in {text}"));
        assert!(valid_name(name, false), "label name `{name}`");
        let mut val = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => val.push('\\'),
                    Some((_, '"')) => val.push('"'),
                    Some((_, 'n')) => val.push('\n'),
                    other => panic!("bad escape {other:?} in {text}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => val.push(c),
                None => panic!("unterminated label value in {text}"),
            }
        };
        out.push((name.to_string(), val));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

/// Parse the text exposition format 0.0.4, checking every line: `# HELP`/`# TYPE` comments
/// with valid names and types, each family's TYPE before its samples, samples
/// `name{label="value",...} value [timestamp]`, no series twice, and histograms with
/// cumulative buckets ending at `+Inf` = `_count`. Returns every series and its value.
pub(crate) fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: BTreeMap<String, f64> = BTreeMap::new();
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, _help] => assert!(valid_name(name, true), "{line}"),
                ["TYPE", name, kind] => {
                    assert!(valid_name(name, true), "{line}");
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(kind), "{line}");
                    assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice: {line}");
                }
                _ => {}
            }
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(_) => {
                let close = line.rfind('}').unwrap_or_else(|| panic!("no closing brace: {line}"));
                (&line[..=close], line[close + 1..].trim_start_matches(' '))
            }
            None => line.split_once(' ').unwrap_or_else(|| panic!("no value: {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name, true), "metric name `{name}` in {line}");
        let label_list = series.find('{').map(|i| labels(&series[i + 1..series.len() - 1])).unwrap_or_default();
        let mut words = rest.split(' ');
        let v = value(words.next().unwrap_or_default());
        if let Some(ts) = words.next() {
            ts.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp in {line}"));
        }
        assert!(words.next().is_none(), "trailing text: {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| types.get(*base).is_some_and(|t| t == "histogram" || t == "summary"))
            .unwrap_or(name);
        assert!(types.contains_key(family), "a sample before its TYPE: {line}");
        if name.ends_with("_bucket") && types[family] == "histogram" {
            let le = label_list.iter().find(|(k, _)| k == "le").unwrap_or_else(|| panic!("bucket without le: {line}"));
            buckets.entry(family.to_string()).or_default().push((value(&le.1), v));
        }
        assert!(samples.insert(series.to_string(), v).is_none(), "series twice: {line}");
    }
    for (family, list) in &buckets {
        assert!(list.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family} buckets: {list:?}");
        let last = list.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{family} ends with le=\"+Inf\"");
        assert_eq!(Some(&last.1), samples.get(&format!("{family}_count")), "{family}: +Inf = _count");
    }
    samples
}

fn families(metrics: &BTreeMap<String, f64>) -> Vec<String> {
    let mut names: Vec<String> = metrics
        .keys()
        .map(|k| k.split('{').next().unwrap())
        .map(|n| ["_bucket", "_sum", "_count"].iter().fold(n, |n, s| n.strip_suffix(s).unwrap_or(n)).to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

const SUCCESS: &str = "upkeep_verifications_total{verdict=\"success\"}";
const FAILURE: &str = "upkeep_verifications_total{verdict=\"failure\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_verifies_two_merges_in_a_row_and_its_metrics_show_the_verdicts() {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    sb.run(&[], &[]);
    let nginx = decision(&sb, NGINX_ID)["target"].as_str().unwrap().to_string();
    let longhorn = decision(&sb, "helmrelease/longhorn-system/longhorn")["target"].as_str().unwrap().to_string();
    let first = merge_branch(&sb, NGINX);
    let bare = bare_remote(&sb);
    let flux = Flux::start(&before.to_string()).await;
    let clone = sb.root.join("in-cluster");
    // A clone a killed container left half done is started over, not taken for the checkout.
    let partial = sb.root.join("in-cluster.upkeep-partial");
    std::fs::create_dir_all(partial.join(".git")).unwrap();
    std::fs::write(partial.join(".git/HEAD"), "garbage").unwrap();
    let started = jiff::Timestamp::now().as_second() as f64;
    let watch = Watch::start(&sb, &clone, &bare, &flux.kubeconfig(), "2s", "watch");

    let health = async {
        for _ in 0..600 {
            if let Some(answer) = get(watch.port, "/healthz").await {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("/healthz never answered:\n{}", watch.log());
    };
    let (status, _, body) = health.await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(!partial.exists() && clone.join(".git").is_dir(), "cloned whole, then moved into place");
    let (status, _, _) = get(watch.port, "/nope").await.unwrap();
    assert_eq!(status, 404);
    let mut post = tokio::net::TcpStream::connect(("127.0.0.1", watch.port)).await.unwrap();
    post.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    post.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 405 ") && answer.contains("Allow: GET, HEAD"), "{answer}");

    // The first merge reconciles and soaks: verified.
    flux.fetched(first);
    flux.nginx_upgraded(&nginx);
    let m = watch.metrics_until("the first verdict", |m| m[SUCCESS] == 1.0).await;
    assert_eq!(m[FAILURE], 0.0);
    assert_eq!(note(&bare, first).unwrap()["verdict"], "success", "the note went to the remote");

    // The second arrives after the first's verdict: Longhorn's upgrade fails, a forward fix.
    let second = merge_branch(&sb, LONGHORN);
    push_main(&sb, &bare);
    flux.fetched(second);
    flux.longhorn_failed(&longhorn);
    let m = watch.metrics_until("the second verdict", |m| m[FAILURE] == 1.0).await;
    assert_eq!(m[SUCCESS], 1.0);
    assert_eq!(m["upkeep_forward_fixes_total"], 1.0);
    assert_eq!(m["upkeep_reverts_total"], 0.0);
    assert_eq!(m["upkeep_pending_merges"], 0.0);
    assert_eq!(m["upkeep_merge_to_verdict_seconds_count"], 2.0);
    assert_eq!(m["upkeep_merge_to_verdict_seconds_bucket{le=\"+Inf\"}"], 2.0);
    assert_eq!(m["upkeep_merge_to_verdict_seconds_bucket{le=\"120\"}"], 2.0, "both within two minutes");
    assert!(m["upkeep_merge_to_verdict_seconds_sum"] > 0.0);
    assert!(m["upkeep_last_pass_timestamp_seconds"] >= started, "{m:?}");
    assert_eq!(families(&m), {
        let mut f: Vec<String> = FAMILIES.iter().map(|s| s.to_string()).collect();
        f.sort();
        f
    });
    let verdict = note(&clone, second).unwrap();
    assert_eq!((verdict["verdict"].as_str(), verdict["action"].as_str()), (Some("failure"), Some("forward-fix")));
    let issue = std::fs::read_to_string(clone.join(".upkeep/issues/1.md")).unwrap();
    assert!(issue.starts_with(&format!("# Forward fix needed: longhorn {longhorn}")), "{issue}");
    // The checkout was fast-forwarded to the second merge, never rewritten.
    let checkout = git2::Repository::open(&clone).unwrap();
    assert_eq!(checkout.refname_to_id("refs/heads/main").unwrap(), second);
    assert_eq!(changed(&checkout), Vec::<String>::new(), "the work tree is clean");

    let mut watch = watch;
    assert_eq!(watch.terminate().await, Some(0), "{}", watch.log());
    assert_rbac_covers(&flux.fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_soak_exits_cleanly_and_the_next_run_concludes_the_pending_merge() {
    let sb = Sandbox::example();
    let before = sb.main_tip();
    sb.run(&[], &[]);
    let nginx = decision(&sb, NGINX_ID)["target"].as_str().unwrap().to_string();
    let merged = merge_branch(&sb, NGINX);
    let bare = bare_remote(&sb);
    let flux = Flux::start(&before.to_string()).await;
    flux.fetched(merged);
    flux.nginx_upgraded(&nginx);
    let clone = sb.root.join("in-cluster");
    let mut watch = Watch::start(&sb, &clone, &bare, &flux.kubeconfig(), "10m", "first");
    watch.metrics_until("the merge soaking", |m| m["upkeep_pending_merges"] == 1.0).await;
    let soaking = note(&clone, merged).unwrap_or_else(|| panic!("no note:\n{}", watch.log()));
    assert_eq!(soaking["verdict"], "pending", "{soaking}");
    assert!(soaking["reason"].as_str().unwrap().contains("soaking"), "{soaking}");
    let ready_since = soaking["progress"]["ready_since"].clone();
    assert!(ready_since.is_string(), "{soaking}");

    assert_eq!(watch.terminate().await, Some(0), "{}", watch.log());
    // No half state: the note says pending, no lock left, the work tree clean, nothing reverted.
    let left = note(&clone, merged).unwrap();
    assert_eq!(left["verdict"], "pending");
    assert_eq!(note(&bare, merged).unwrap()["verdict"], "pending", "pushed before exiting");
    let locks: Vec<_> = walk(&clone.join(".git")).into_iter().filter(|p| p.ends_with(".lock")).collect();
    assert!(locks.is_empty(), "{locks:?}");
    let checkout = git2::Repository::open(&clone).unwrap();
    assert_eq!(changed(&checkout), Vec::<String>::new(), "the work tree is clean");
    assert!(checkout.branches(None).unwrap().all(|b| !b.unwrap().0.name().unwrap().unwrap().contains("revert")));

    // The next run picks the pending merge up where the soak was and concludes it.
    let watch = Watch::start(&sb, &clone, &bare, &flux.kubeconfig(), "1s", "second");
    let m = watch.metrics_until("the verdict", |m| m[SUCCESS] == 1.0).await;
    assert_eq!(m["upkeep_pending_merges"], 0.0);
    let done = note(&clone, merged).unwrap();
    assert_eq!(done["verdict"], "success", "{done}");
    assert_eq!(done["progress"]["ready_since"], ready_since, "the soak resumed, not restarted");
    let mut watch = watch;
    assert_eq!(watch.terminate().await, Some(0), "{}", watch.log());

    // A plain pass afterwards reads the verdict back.
    let (root, dir) = (sb.root.clone(), clone.clone());
    let kubeconfig = flux.kubeconfig().display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        upkeep_in(&root, &dir, &["verify", ".", "--format", "json", "--kubeconfig", &kubeconfig], &[])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"verdict\": \"success\""), "{}", text(&out));
}

#[test]
fn listen_without_watch_and_watch_with_no_wait_are_usage_errors() {
    let sb = Sandbox::example();
    let out = upkeep_in(&sb.root, &sb.repo, &["verify", ".", "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--watch"), "{}", text(&out));
    let out = upkeep_in(&sb.root, &sb.repo, &["verify", ".", "--watch", "--no-wait"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // An empty folder and no remote URL to clone: a clear error, not a crash.
    let empty = sb.root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = upkeep_in(&sb.root, &sb.root, &["verify", empty.to_str().unwrap(), "--watch"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is empty: give --remote"), "{}", text(&out));
}

/// Files of the work tree git sees as changed or untracked (ignored ones, like `.upkeep/`, not).
fn changed(repo: &git2::Repository) -> Vec<String> {
    let mut options = git2::StatusOptions::new();
    options.include_untracked(true).include_ignored(false);
    let statuses = repo.statuses(Some(&mut options)).unwrap();
    statuses.iter().map(|s| format!("{:?} {}", s.status(), s.path().unwrap_or("?"))).collect()
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{verdict=\"x\\\"y\"} 1\n";
    assert_eq!(parse_exposition(good)["a_total{verdict=\"x\\\"y\"}"], 1.0);
    for bad in [
        "a_total 1\n",                                                                    // no TYPE
        "# TYPE a gauge\na 1 2 3\n",                                                      // trailing text
        "# TYPE a gauge\na{b=c} 1\n",                                                     // unquoted label
        "# TYPE 1a gauge\n",                                                              // bad name
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
    ] {
        assert!(std::panic::catch_unwind(|| parse_exposition(bad)).is_err(), "accepted: {bad}");
    }
}

/// A clone of `bare` at `dir`, and a commit pushed to `bare` after it (from the sandbox).
fn clone_then_advance(sb: &Sandbox, bare: &Path, dir: &Path) -> git2::Oid {
    upkeep::git::clone_into(bare.to_str().unwrap(), dir, None).unwrap();
    std::fs::write(sb.repo.join("apps/NOTES.md"), "a maintainer's note\n").unwrap();
    let tip = super::run::commit_all(&sb.git(), "docs: a note", "Maintainer");
    push_main(sb, bare);
    tip
}

#[test]
fn the_checkout_only_ever_fast_forwards_and_a_humans_work_is_left_alone() {
    use upkeep::git::{Author, Synced, Writer};
    let sb = Sandbox::example();
    let bare = bare_remote(&sb);
    let remote = bare.to_str().unwrap();

    // Clean and behind: forwarded, work tree and branch together.
    let clean = sb.root.join("clean");
    let tip = clone_then_advance(&sb, &bare, &clean);
    let writer = Writer::open(&clean, Author::default()).unwrap();
    assert!(matches!(writer.fast_forward(remote, None).unwrap(), Synced::Forwarded { to, .. } if to == tip));
    assert_eq!(std::fs::read_to_string(clean.join("apps/NOTES.md")).unwrap(), "a maintainer's note\n");
    assert_eq!(changed(&git2::Repository::open(&clean).unwrap()), Vec::<String>::new());
    assert_eq!(writer.fast_forward(remote, None).unwrap(), Synced::UpToDate);

    // Uncommitted changes: nothing moves, the edit stays.
    let dirty = sb.root.join("dirty");
    upkeep::git::clone_into(remote, &dirty, None).unwrap();
    let head = git2::Repository::open(&dirty).unwrap().refname_to_id("refs/heads/main").unwrap();
    let edited = dirty.join("upkeep.yaml");
    std::fs::write(&edited, "# work in progress\n").unwrap();
    std::fs::write(sb.repo.join("apps/NOTES.md"), "a second note\n").unwrap();
    super::run::commit_all(&sb.git(), "docs: another note", "Maintainer");
    push_main(&sb, &bare);
    let writer = Writer::open(&dirty, Author::default()).unwrap();
    match writer.fast_forward(remote, None).unwrap() {
        Synced::Refused(why) => assert!(why.contains("uncommitted changes (upkeep.yaml)"), "{why}"),
        other => panic!("moved a dirty work tree: {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), "# work in progress\n");
    assert_eq!(git2::Repository::open(&dirty).unwrap().refname_to_id("refs/heads/main").unwrap(), head);

    // A local commit the remote lacks: diverged, left alone.
    let diverged = sb.root.join("diverged");
    upkeep::git::clone_into(remote, &diverged, None).unwrap();
    let local = super::run::commit_all(&git2::Repository::open(&diverged).unwrap(), "local work", "Maintainer");
    std::fs::write(sb.repo.join("apps/NOTES.md"), "a third note\n").unwrap();
    super::run::commit_all(&sb.git(), "docs: a third note", "Maintainer");
    push_main(&sb, &bare);
    let writer = Writer::open(&diverged, Author::default()).unwrap();
    match writer.fast_forward(remote, None).unwrap() {
        Synced::Refused(why) => assert!(why.contains("has commits"), "{why}"),
        other => panic!("moved a diverged branch: {other:?}"),
    }
    assert_eq!(git2::Repository::open(&diverged).unwrap().refname_to_id("refs/heads/main").unwrap(), local);
}
