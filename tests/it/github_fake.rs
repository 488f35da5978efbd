//! A wire-level fake of the parts of GitHub's REST API upkeep uses, on loopback: pulls (list,
//! create with 422 "already exists", update, close), labels, reviewers, comments, issues (the
//! dashboard, forward-fix issues), commit statuses, the pulls of a commit, and the auto-merge
//! GraphQL mutation. Every answer is built from a real GitHub payload under `fixtures/github/`
//! (see its README), so octocrab's typed models read what GitHub sends. Faults can be queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

use super::util::fixture;

/// One queued fault: the next request matching method and path gets this response. With
/// `processed`, the fake does the work first and then answers with the fault, as GitHub does
/// when a gateway times out on a request it completed (the case that makes naive clients
/// open duplicate PRs on retry).
pub(crate) struct Fault {
    pub(crate) method: &'static str,
    pub(crate) path_contains: &'static str,
    pub(crate) response: ResponseTemplate,
    pub(crate) processed: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) pulls: Vec<Value>,
    pub(crate) issues: Vec<Value>,
    pub(crate) comments: HashMap<u64, Vec<String>>,
    /// Commit statuses by commit, newest first (GitHub's order).
    pub(crate) statuses: HashMap<String, Vec<Value>>,
    /// The pull requests GitHub associates with a commit.
    pub(crate) commit_pulls: HashMap<String, Vec<Value>>,
    pub(crate) writes: Vec<String>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) tokens: Vec<String>,
    /// Every request, `METHOD /path?query`.
    pub(crate) requests: Vec<String>,
    /// Items per page of list answers (GitHub's `per_page`, capped like GitHub at 100).
    pub(crate) page_size: Option<usize>,
}

#[derive(Clone)]
pub(crate) struct FakeGithub {
    pub(crate) state: Arc<Mutex<State>>,
    repo: String,
}

impl FakeGithub {
    pub(crate) fn new(repo: &str) -> FakeGithub {
        FakeGithub { state: Arc::new(Mutex::new(State::default())), repo: repo.into() }
    }

    pub(crate) fn writes(&self) -> Vec<String> {
        self.state.lock().unwrap().writes.clone()
    }

    pub(crate) fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The pull requests whose head branch is `head`.
    pub(crate) fn pulls_for(&self, head: &str) -> Vec<Value> {
        self.state.lock().unwrap().pulls.iter().filter(|p| p["head"]["ref"] == head).cloned().collect()
    }

    /// Close a PR as a maintainer would, without merging.
    pub(crate) fn close_unmerged(&self, head: &str) {
        let mut s = self.state.lock().unwrap();
        for p in s.pulls.iter_mut().filter(|p| p["head"]["ref"] == head) {
            p["state"] = json!("closed");
            p["closed_at"] = json!("2026-11-20T00:00:00Z");
        }
    }

    /// Merge a PR as GitHub does: closed, `merged_at` and `merge_commit_sha` set, and the
    /// commit's associated pulls answering with it.
    pub(crate) fn merge_pr(&self, head: &str, sha: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        let pr = s.pulls.iter_mut().find(|p| p["head"]["ref"] == head).unwrap();
        pr["state"] = json!("closed");
        pr["closed_at"] = json!(jiff::Timestamp::now().to_string());
        pr["merged_at"] = json!(jiff::Timestamp::now().to_string());
        pr["merge_commit_sha"] = json!(sha);
        let (number, merged) = (pr["number"].as_u64().unwrap(), pr.clone());
        s.commit_pulls.insert(sha.to_string(), vec![merged]);
        number
    }

    /// The comments on issue or PR `number`, oldest first.
    pub(crate) fn comments_on(&self, number: u64) -> Vec<String> {
        self.state.lock().unwrap().comments.get(&number).cloned().unwrap_or_default()
    }

    /// A PR from someone's fork whose branch happens to be called `head`.
    pub(crate) fn fork_pr(&self, head: &str, body: &str, state: &str) {
        let mut s = self.state.lock().unwrap();
        let mut pr = template();
        pr["number"] = json!(900 + s.pulls.len() as u64);
        pr["head"]["ref"] = json!(head);
        pr["head"]["repo"]["full_name"] = json!("mallory/cluster-fork");
        pr["body"] = json!(body);
        pr["state"] = json!(state);
        if state == "closed" {
            pr["closed_at"] = json!("2026-11-20T00:00:00Z");
        }
        s.pulls.push(pr);
    }

    pub(crate) fn dashboard(&self) -> Option<Value> {
        self.state.lock().unwrap().issues.first().cloned()
    }

    /// An issue someone else opened, in GitHub's real shape.
    pub(crate) fn foreign_issue(&self, title: &str, body: &str, state: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        let number = 500 + s.issues.len() as u64;
        let mut issue = issue_template();
        issue["number"] = json!(number);
        issue["title"] = json!(title);
        issue["body"] = json!(body);
        issue["state"] = json!(state);
        s.issues.push(issue);
        number
    }

    /// GitHub's answer to `GET /repos/{o}/{r}/commits/{sha}/pulls`.
    pub(crate) fn associate(&self, sha: &str, pulls: Vec<Value>) {
        self.state.lock().unwrap().commit_pulls.insert(sha.to_string(), pulls);
    }

    /// The statuses posted on `sha`, newest first.
    pub(crate) fn statuses(&self, sha: &str) -> Vec<Value> {
        self.state.lock().unwrap().statuses.get(sha).cloned().unwrap_or_default()
    }
}

/// A label object as GitHub sends it.
pub(crate) fn label(name: &str) -> Value {
    let mut label: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("github/label.json")).unwrap()).unwrap();
    label["name"] = json!(name);
    label["url"] = json!(format!("https://api.github.com/repos/home-ops/cluster/labels/{name}"));
    label
}

/// A commit status object as GitHub sends it; `n` orders them in time.
pub(crate) fn commit_status(context: &str, state: &str, description: &str, n: usize) -> Value {
    let mut status: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("github/commit-status.json")).unwrap()).unwrap();
    status["id"] = json!(n);
    status["context"] = json!(context);
    status["state"] = json!(state);
    status["description"] = json!(description);
    let at = format!("2026-11-24T{:02}:{:02}:00Z", n / 60 % 24, n % 60);
    status["created_at"] = json!(at);
    status["updated_at"] = json!(at);
    status
}

fn comment(body: &str, n: usize) -> Value {
    let mut comment: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("github/issue-comment.json")).unwrap()).unwrap();
    comment["id"] = json!(n);
    comment["body"] = json!(body);
    comment
}

/// One page of `items` as GitHub serves it, with a `Link: rel="next"` header when more follow.
fn page(items: Vec<Value>, url: &wiremock::http::Url, size: usize, port: u16) -> ResponseTemplate {
    let per_page: usize =
        url.query_pairs().find(|(k, _)| k == "per_page").and_then(|(_, v)| v.parse().ok()).unwrap_or(30).min(size);
    let number: usize = url.query_pairs().find(|(k, _)| k == "page").and_then(|(_, v)| v.parse().ok()).unwrap_or(1);
    let chunk: Vec<Value> = items.iter().skip((number - 1) * per_page).take(per_page).cloned().collect();
    let mut response = ResponseTemplate::new(200).set_body_json(chunk);
    if number * per_page < items.len() {
        // wiremock hands over the path with a placeholder host; GitHub's links are absolute.
        let mut url = url.clone();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        let mut next = url.clone();
        let pairs: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != "page").map(|(k, v)| (k.to_string(), v.to_string())).collect();
        next.query_pairs_mut().clear().extend_pairs(pairs).append_pair("page", &(number + 1).to_string());
        response = response.insert_header("link", format!("<{next}>; rel=\"next\", <{url}>; rel=\"first\"").as_str());
    }
    response
}

fn issue_template() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("github/issue.json")).unwrap()).unwrap()
}

/// A fresh open pull request: the documented one of `commit-pulls.json`, not yet merged.
pub(crate) fn template() -> Value {
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("github/commit-pulls.json")).unwrap()).unwrap();
    let mut pr = list[0].clone();
    pr["state"] = json!("open");
    for key in ["merged_at", "closed_at", "merge_commit_sha"] {
        pr[key] = Value::Null;
    }
    pr["labels"] = json!([]);
    pr
}

impl Respond for FakeGithub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        let method = req.method.as_str().to_string();
        let path = req.url.path().to_string();
        if let Some(auth) = req.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            s.tokens.push(auth.to_string());
        }
        s.requests.push(format!("{method} {path}{}", req.url.query().map(|q| format!("?{q}")).unwrap_or_default()));
        let mut fault = None;
        // `path_contains` matches anywhere in the path, or only at its end when it ends in `$`.
        let matches = |p: &str| match p.strip_suffix('$') {
            Some(end) => path.ends_with(end),
            None => path.contains(p),
        };
        if let Some(i) = s.faults.iter().position(|f| f.method == method && matches(f.path_contains)) {
            let f = s.faults.remove(i);
            if !f.processed {
                return f.response;
            }
            fault = Some(f.response);
        }
        drop(s);
        let answer = self.answer(req, &method, &path);
        fault.unwrap_or(answer)
    }
}

/// One request to a repository route, as the route handlers read it.
struct Call<'r> {
    method: &'r str,
    url: &'r wiremock::http::Url,
    query: HashMap<String, String>,
    body: Value,
    /// Items per page.
    size: usize,
    /// The fake's port, for absolute `Link` URLs.
    port: u16,
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))
}

impl FakeGithub {
    fn answer(&self, req: &Request, method: &str, path: &str) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        let port = req
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(80);
        let c = Call {
            method,
            url: &req.url,
            query: req.url.query_pairs().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
            size: s.page_size.unwrap_or(100),
            port,
        };
        let base = format!("/repos/{}", self.repo);
        let Some(rest) = path.strip_prefix(base.as_str()) else {
            if path == "/graphql" {
                s.writes.push("POST /graphql".into());
                return ResponseTemplate::new(200)
                    .set_body_json(json!({"data": {"enablePullRequestAutoMerge": {"clientMutationId": null}}}));
            }
            return not_found();
        };
        if method != "GET" {
            s.writes.push(format!("{method} {rest}"));
        }
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match segments.first().copied() {
            Some("pulls") => self.pulls(&mut s, &c, &segments),
            Some("issues") => self.issues(&mut s, &c, &segments),
            Some("commits" | "statuses") => commits(&mut s, &c, &segments),
            _ => not_found(),
        }
    }

    /// Pull requests: list (state, head, direction), create (422 when one is open), update,
    /// request reviewers.
    fn pulls(&self, s: &mut State, c: &Call, segments: &[&str]) -> ResponseTemplate {
        match (c.method, segments) {
            ("GET", ["pulls"]) => {
                let state = c.query.get("state").cloned().unwrap_or_else(|| "open".into());
                // `head=owner:branch` filters by the head repository's owner and the branch.
                let head =
                    c.query.get("head").and_then(|h| h.split_once(':').map(|(o, b)| (o.to_string(), b.to_string())));
                let list: Vec<Value> = s
                    .pulls
                    .iter()
                    .filter(|p| state == "all" || p["state"] == state.as_str())
                    .filter(|p| {
                        head.as_ref().is_none_or(|(owner, branch)| {
                            p["head"]["ref"] == branch.as_str()
                                && p["head"]["repo"]["full_name"]
                                    .as_str()
                                    .is_some_and(|r| r.split('/').next() == Some(owner.as_str()))
                        })
                    })
                    .cloned()
                    .collect();
                // GitHub's default order is oldest first; `direction=desc` is newest first.
                let mut list = list;
                if c.query.get("direction").map(String::as_str) == Some("desc") {
                    list.reverse();
                }
                page(list, c.url, c.size, c.port)
            }
            ("POST", ["pulls"]) => {
                let head = c.body["head"].as_str().unwrap_or("").to_string();
                // GitHub's uniqueness is per head `owner:branch`: a fork's branch of the same name is another head.
                let ours = |p: &Value| p["head"]["repo"]["full_name"] == self.repo.as_str();
                if s.pulls.iter().any(|p| p["head"]["ref"] == head.as_str() && p["state"] == "open" && ours(p)) {
                    return ResponseTemplate::new(422).set_body_json(json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for owner:{head}.")}],
                        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
                    }));
                }
                let number = 100 + s.pulls.len() as u64 + s.issues.len() as u64;
                let mut pr = template();
                pr["number"] = json!(number);
                pr["title"] = c.body["title"].clone();
                pr["body"] = c.body["body"].clone();
                pr["head"]["ref"] = json!(head);
                pr["base"]["ref"] = c.body["base"].clone();
                pr["draft"] = json!(c.body["draft"].as_bool().unwrap_or(false));
                pr["head"]["repo"]["full_name"] = json!(self.repo);
                pr["base"]["repo"]["full_name"] = json!(self.repo);
                pr["node_id"] = json!(format!("PR_node{number}"));
                pr["html_url"] = json!(format!("https://github.com/{}/pull/{number}", self.repo));
                s.pulls.push(pr.clone());
                ResponseTemplate::new(201).set_body_json(pr)
            }
            ("PATCH", ["pulls", n]) => {
                let n: u64 = n.parse().unwrap_or(0);
                let Some(pr) = s.pulls.iter_mut().find(|p| p["number"] == n) else { return ResponseTemplate::new(404) };
                for key in ["title", "body", "state"] {
                    if !c.body[key].is_null() {
                        pr[key] = c.body[key].clone();
                    }
                }
                if c.body["state"] == "closed" {
                    pr["closed_at"] = json!("2026-11-24T00:00:00Z");
                }
                ResponseTemplate::new(200).set_body_json(pr.clone())
            }
            ("POST", ["pulls", _, "requested_reviewers"]) => ResponseTemplate::new(201).set_body_json(template()),
            _ => not_found(),
        }
    }

    /// Issues: labels (on PRs), comments, the issue list (by state), create, update.
    fn issues(&self, s: &mut State, c: &Call, segments: &[&str]) -> ResponseTemplate {
        match (c.method, segments) {
            // GitHub's "Add labels": POST appends to what the issue has.
            ("POST", ["issues", n, "labels"]) => {
                let n: u64 = n.parse().unwrap_or(0);
                let Some(pr) = s.pulls.iter_mut().find(|p| p["number"] == n) else { return ResponseTemplate::new(404) };
                let mut labels: Vec<Value> = pr["labels"].as_array().cloned().unwrap_or_default();
                for l in c.body["labels"].as_array().cloned().unwrap_or_default() {
                    if !labels.iter().any(|x| x["name"] == l) {
                        labels.push(label(l.as_str().unwrap_or("")));
                    }
                }
                pr["labels"] = json!(labels);
                ResponseTemplate::new(200).set_body_json(labels)
            }
            ("GET", ["issues", n, "comments"]) => {
                let n: u64 = n.parse().unwrap_or(0);
                let list: Vec<Value> = s
                    .comments
                    .get(&n)
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(i, b)| comment(b, i))
                    .collect();
                page(list, c.url, c.size, c.port)
            }
            ("POST", ["issues", n, "comments"]) => {
                let n: u64 = n.parse().unwrap_or(0);
                let text = c.body["body"].as_str().unwrap_or("").to_string();
                let list = s.comments.entry(n).or_default();
                list.push(text.clone());
                ResponseTemplate::new(201).set_body_json(comment(&text, list.len()))
            }
            ("GET", ["issues"]) => {
                let state = c.query.get("state").cloned().unwrap_or_else(|| "open".into());
                let list =
                    s.issues.iter().filter(|i| state == "all" || i["state"] == state.as_str()).cloned().collect();
                page(list, c.url, c.size, c.port)
            }
            ("POST", ["issues"]) => {
                let number = 500 + s.issues.len() as u64;
                let mut issue = issue_template();
                issue["number"] = json!(number);
                issue["title"] = c.body["title"].clone();
                issue["body"] = c.body["body"].clone();
                issue["html_url"] = json!(format!("https://github.com/{}/issues/{number}", self.repo));
                let labels: Vec<Value> = c.body["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| label(l.as_str().unwrap_or("")))
                    .collect();
                issue["labels"] = json!(labels);
                s.issues.push(issue.clone());
                ResponseTemplate::new(201).set_body_json(issue)
            }
            ("PATCH", ["issues", n]) => {
                let n: u64 = n.parse().unwrap_or(0);
                let Some(issue) = s.issues.iter_mut().find(|i| i["number"] == n) else {
                    return ResponseTemplate::new(404);
                };
                issue["body"] = c.body["body"].clone();
                ResponseTemplate::new(200).set_body_json(issue.clone())
            }
            _ => not_found(),
        }
    }
}

/// Commits: their statuses (list, post) and the pull requests associated with them.
fn commits(s: &mut State, c: &Call, segments: &[&str]) -> ResponseTemplate {
    match (c.method, segments) {
        ("GET", ["commits", sha, "statuses"]) => {
            page(s.statuses.get(*sha).cloned().unwrap_or_default(), c.url, c.size, c.port)
        }
        ("POST", ["statuses", sha]) => {
            let n = s.statuses.values().map(Vec::len).sum::<usize>() + 1;
            let description = c.body["description"].as_str().unwrap_or("");
            let mut status = commit_status(
                c.body["context"].as_str().unwrap_or("default"),
                c.body["state"].as_str().unwrap_or(""),
                description,
                n,
            );
            status["target_url"] = c.body["target_url"].clone();
            s.statuses.entry((*sha).to_string()).or_default().insert(0, status.clone());
            ResponseTemplate::new(201).set_body_json(status)
        }
        ("GET", ["commits", sha, "pulls"]) => {
            page(s.commit_pulls.get(*sha).cloned().unwrap_or_default(), c.url, c.size, c.port)
        }
        _ => not_found(),
    }
}

/// A commit status as Flux's notification-controller posts it for a Kustomization event
/// (fluxcd/notification-controller `internal/notifier/github.go` and
/// `internal/server/provider_commit_status.go`): the context is `kustomization/<name>/<first
/// segment of the Provider's UID>`, lowercased; the state `success` for an info event and
/// `failure` for an error event; the description the event's reason split at its capitals and
/// lowercased; no target URL. `n` orders them in time.
pub(crate) fn flux_status(kustomization: &str, provider_uid: &str, severity: &str, reason: &str, n: usize) -> Value {
    let uid = provider_uid.split('-').next().unwrap_or_default();
    let context = format!("Kustomization/{kustomization}/{uid}").to_lowercase();
    let state = match severity {
        "info" => "success",
        "error" => "failure",
        other => panic!("notification-controller posts no status for severity {other}"),
    };
    let mut words: Vec<String> = Vec::new();
    for c in reason.chars() {
        if c.is_uppercase() || words.is_empty() {
            words.push(String::new());
        }
        if let Some(w) = words.last_mut() {
            w.push(c);
        }
    }
    let mut status = commit_status(&context, state, &words.join(" ").to_lowercase(), n);
    status["target_url"] = Value::Null;
    status
}

impl FakeGithub {
    /// notification-controller posts `status` on `sha` (it becomes the newest there).
    pub(crate) fn post_status(&self, sha: &str, status: Value) {
        self.state.lock().unwrap().statuses.entry(sha.to_string()).or_default().insert(0, status);
    }
}
