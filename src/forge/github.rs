//! GitHub as a forge, through its REST API (`GITHUB_API_URL`, default `https://api.github.com`).
//!
//! Built on reqwest rather than octocrab so that PR creation is never retried blindly: octocrab
//! retries POSTs, and a retried "create PR" is how bots open duplicates. Here reads retry with
//! backoff; writes are retried only when GitHub says it did not process them (429, or a 403
//! rate limit); anything else fails the one change, and the next run converges because PRs are
//! found by head branch first and a 422 "A pull request already exists" counts as found.
//!
//! Rate limits: `Retry-After` and `x-ratelimit-reset` are honoured, a bare secondary-limit 403
//! waits at least 60 s (GitHub's guidance), and past the cap (`UPKEEP_MAX_WAIT_SECONDS`, 300)
//! the call fails with a message saying when to retry. 401/403/404 name the permission missing.
//! The token travels only in the `Authorization` header and is never part of a message.

use std::cell::Cell;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Forge, ForgeError, NewPullRequest, PrState, PullRequest};

/// Marks upkeep's dashboard issue in its body (invisible when rendered).
const DASHBOARD_MARKER: &str = "<!-- upkeep-dashboard -->";

/// The GitHub forge for one repository.
pub struct GithubForge {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    api: String,
    graphql: String,
    repo: String,
    token: String,
    max_wait: Duration,
    writes: Cell<usize>,
}

fn fail(message: impl Into<String>) -> ForgeError {
    ForgeError { forge: "github", message: message.into() }
}

fn pr_from(v: &Value) -> PullRequest {
    let state = if !v["merged_at"].is_null() {
        PrState::Merged
    } else if v["state"] == "open" {
        PrState::Open
    } else {
        PrState::Closed
    };
    PullRequest {
        number: v["number"].as_u64().unwrap_or(0),
        head: v["head"]["ref"].as_str().unwrap_or("").to_string(),
        base: v["base"]["ref"].as_str().unwrap_or("").to_string(),
        title: v["title"].as_str().unwrap_or("").to_string(),
        body: v["body"].as_str().unwrap_or("").to_string(),
        labels: v["labels"]
            .as_array()
            .map(|l| l.iter().filter_map(|x| x["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        state,
        url: v["html_url"].as_str().unwrap_or("").to_string(),
        closed_at: v["closed_at"].as_str().and_then(|t| t.parse().ok()),
        merge_commit: v["merge_commit_sha"].as_str().filter(|_| state == PrState::Merged).map(str::to_string),
    }
}

/// The GraphQL endpoint: `GITHUB_GRAPHQL_URL` (Actions sets it), else next to the REST API
/// (`https://api.github.com/graphql`, or `/api/graphql` beside GHES's `/api/v3`).
fn graphql_url(api: &str) -> String {
    if let Some(url) = std::env::var("GITHUB_GRAPHQL_URL").ok().filter(|v| !v.is_empty()) {
        return url;
    }
    let api = api.trim_end_matches('/');
    match api.strip_suffix("/api/v3") {
        Some(host) => format!("{host}/api/graphql"),
        None => format!("{api}/graphql"),
    }
}

/// What a 401/403/404 means for this call, in terms of the token permission to grant.
fn permission_hint(status: u16, method: &Method, path: &str) -> &'static str {
    let issues = path.contains("/issues") || path.contains("/labels") || path.contains("/comments");
    match status {
        401 => "GITHUB_TOKEN is missing, invalid or expired",
        403 | 404 if *method == Method::GET => {
            "the token cannot read this repository: grant `contents: read`, `pull-requests: read` and `issues: read`, and check GITHUB_REPOSITORY / --repo"
        }
        403 if path.ends_with("/graphql") => {
            "auto-merge needs `pull-requests: write` and auto-merge allowed in the repository settings"
        }
        403 | 404 if issues => "the token lacks `issues: write` (labels, comments and the dashboard issue)",
        403 | 404 => "the token lacks `pull-requests: write` (and `contents: write` to push branches)",
        410 => {
            "that feature is turned off in this repository's settings (issues carry labels, comments and the dashboard)"
        }
        _ => "unexpected answer from GitHub",
    }
}

impl GithubForge {
    /// A forge for `repo` (`owner/name`) at `api`, authenticating with `token`.
    pub fn new(api: &str, repo: &str, token: &str) -> Result<GithubForge, ForgeError> {
        if !repo.contains('/') {
            return Err(fail(format!("`{repo}` is not `owner/name`; set --repo or GITHUB_REPOSITORY")));
        }
        if token.is_empty() {
            return Err(fail(
                "GITHUB_TOKEN is not set; the GitHub forge needs a token with contents, pull-requests and issues write",
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("upkeep/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(e.to_string()))?;
        Ok(GithubForge {
            client,
            runtime,
            api: api.trim_end_matches('/').to_string(),
            graphql: graphql_url(api),
            repo: repo.to_string(),
            token: token.to_string(),
            max_wait: Duration::from_secs(300),
            writes: Cell::new(0),
        })
    }

    /// The longest upkeep waits on one rate limit before giving up (default 300 s).
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> GithubForge {
        self.max_wait = max_wait;
        self
    }

    /// One API call, with GitHub's rate-limit manners. Returns the status and JSON body.
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value, Option<String>), ForgeError> {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.api) };
        let is_write = method != Method::GET;
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .client
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28");
            if let Some(b) = body {
                req = req.json(b);
            }
            let sent = self.runtime.block_on(async {
                let r = req.send().await?;
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let text = r.text().await?;
                Ok::<_, reqwest::Error>((status, headers, text))
            });
            let (status, headers, text) = match sent {
                Ok(x) => x,
                Err(e) if !is_write && attempt < 3 => {
                    tracing::debug!("retrying GET {path}: {}", e.without_url());
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500 << attempt));
                    continue;
                }
                Err(e) => return Err(fail(format!("{method} {path}: {}", e.without_url()))),
            };
            if is_write && status < 400 {
                self.writes.set(self.writes.get() + 1);
            }
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
            let secondary = status == 403
                && json["message"].as_str().is_some_and(|m| m.to_ascii_lowercase().contains("secondary rate limit"));
            let primary = (status == 403 || status == 429) && header("x-ratelimit-remaining") == Some("0");
            let wait = if let Some(s) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(Duration::from_secs(s))
            } else if primary {
                let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                Some(Duration::from_secs(
                    u64::try_from(reset.saturating_sub(jiff::Timestamp::now().as_second()))
                        .unwrap_or(0)
                        .saturating_add(1),
                ))
            } else if secondary || status == 429 {
                Some(Duration::from_secs(60))
            } else {
                None
            };
            if let Some(wait) = wait.filter(|_| status == 403 || status == 429) {
                if wait > self.max_wait || attempt >= 3 {
                    return Err(fail(format!(
                        "{method} {path}: rate limited (HTTP {status}); GitHub asks to wait {}s, more than upkeep waits ({}s): run again later",
                        wait.as_secs(),
                        self.max_wait.as_secs()
                    )));
                }
                tracing::info!("GitHub rate limit on {path}: waiting {}s", wait.as_secs());
                std::thread::sleep(wait);
                attempt += 1;
                continue;
            }
            if status >= 500 && !is_write && attempt < 3 {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500 << attempt));
                continue;
            }
            let next = header("link").and_then(|l| {
                l.split(',')
                    .find(|p| p.contains("rel=\"next\""))
                    .and_then(|p| p.split(';').next())
                    .map(|u| u.trim().trim_matches(['<', '>']).to_string())
            });
            return Ok((status, json, next));
        }
    }

    fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, ForgeError> {
        let (status, json, _) = self.call(method.clone(), path, body)?;
        if (200..300).contains(&status) {
            return Ok(json);
        }
        Err(fail(format!(
            "{method} {path}: HTTP {status}: {}; {}",
            json["message"].as_str().unwrap_or("no message"),
            permission_hint(status, &method, path)
        )))
    }

    fn list(&self, path: &str) -> Result<Vec<Value>, ForgeError> {
        self.list_pages(path, 20).map(|(items, _)| items)
    }

    /// Up to `pages` pages of a list; the flag says whether more were left unread.
    fn list_pages(&self, path: &str, pages: usize) -> Result<(Vec<Value>, bool), ForgeError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        for _ in 0..pages {
            let Some(url) = next.take() else { break };
            let (status, json, link) = self.call(Method::GET, &url, None)?;
            if !(200..300).contains(&status) {
                return Err(fail(format!(
                    "GET {path}: HTTP {status}: {}; {}",
                    json["message"].as_str().unwrap_or("no message"),
                    permission_hint(status, &Method::GET, path)
                )));
            }
            out.extend(json.as_array().cloned().unwrap_or_default());
            // The token goes wherever `next` points: follow only links back to the API itself.
            if let Some(l) = &link
                && !l.starts_with(&format!("{}/", self.api))
            {
                return Err(fail(format!(
                    "GET {path}: the next page is at `{l}`, outside {}; refusing to send the token there",
                    self.api
                )));
            }
            next = link;
        }
        Ok((out, next.is_some()))
    }

    /// A PR whose head branch lives in this repository (not a fork's branch of the same name).
    fn is_this_repositorys(&self, pr: &Value) -> bool {
        pr["head"]["repo"]["full_name"].as_str().is_some_and(|r| r.eq_ignore_ascii_case(&self.repo))
    }

    fn find_open(&self, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        let owner = self.repo.split('/').next().unwrap_or("");
        let prs = self.list(&format!("/repos/{}/pulls?state=open&head={owner}:{head}&per_page=100", self.repo))?;
        Ok(prs.iter().filter(|v| self.is_this_repositorys(v)).map(pr_from).find(|p| p.head == head))
    }
}

impl Forge for GithubForge {
    fn name(&self) -> &'static str {
        "github"
    }

    fn upkeep_prs(&self) -> Result<Vec<PullRequest>, ForgeError> {
        // Every open PR (an old open upkeep PR missed would be opened again and never closed),
        // and the newest 2,000 of all states for the closed ones memory reads.
        let (open, more) = self.list_pages(&format!("/repos/{}/pulls?state=open&per_page=100", self.repo), 100)?;
        if more {
            return Err(fail(
                "more than 10,000 open pull requests: upkeep cannot see all of its own; close some first",
            ));
        }
        let mut prs = open;
        let (recent, _) = self.list_pages(
            &format!("/repos/{}/pulls?state=all&sort=created&direction=desc&per_page=100", self.repo),
            20,
        )?;
        let known: std::collections::HashSet<u64> = prs.iter().filter_map(|p| p["number"].as_u64()).collect();
        prs.extend(recent.into_iter().filter(|p| p["number"].as_u64().is_some_and(|n| !known.contains(&n))));
        prs.sort_by_key(|p| std::cmp::Reverse(p["number"].as_u64().unwrap_or(0)));
        // Only branches of this repository: a fork's PR on a branch it named `upkeep/…` is not
        // upkeep's, and must neither refuse versions nor be taken over.
        Ok(prs
            .iter()
            .filter(|v| self.is_this_repositorys(v))
            .map(pr_from)
            .filter(|p| p.head.starts_with("upkeep/"))
            .collect())
    }

    fn create(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        if let Some(open) = self.find_open(&pr.head)? {
            return Ok(open);
        }
        let body = json!({"title": pr.title, "head": pr.head, "base": pr.base, "body": pr.body, "draft": pr.draft});
        let (status, json, _) = self.call(Method::POST, &format!("/repos/{}/pulls", self.repo), Some(&body))?;
        let created = match status {
            201 => pr_from(&json),
            422 if json.to_string().contains("already exists") => {
                return self
                    .find_open(&pr.head)?
                    .ok_or_else(|| fail(format!("GitHub says a PR for {} exists but none is open", pr.head)));
            }
            s => {
                return Err(fail(format!(
                    "POST pulls: HTTP {s}: {}; {}",
                    json["message"].as_str().unwrap_or("no message"),
                    permission_hint(s, &Method::POST, "/pulls")
                )));
            }
        };
        let n = created.number;
        if !pr.labels.is_empty() {
            self.ok(
                Method::POST,
                &format!("/repos/{}/issues/{n}/labels", self.repo),
                Some(&json!({"labels": pr.labels})),
            )?;
        }
        if !pr.reviewers.is_empty() {
            // `org/team` is a team (by slug), anything else a user.
            let (teams, users): (Vec<&String>, Vec<&String>) = pr.reviewers.iter().partition(|r| r.contains('/'));
            let teams: Vec<&str> = teams.iter().filter_map(|t| t.rsplit('/').next()).collect();
            self.ok(
                Method::POST,
                &format!("/repos/{}/pulls/{n}/requested_reviewers", self.repo),
                Some(&json!({"reviewers": users, "team_reviewers": teams})),
            )?;
        }
        if pr.automerge
            && let Some(node) = json["node_id"].as_str()
        {
            let mutation = json!({
                "query": "mutation($id: ID!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: SQUASH}) { clientMutationId } }",
                "variables": {"id": node}
            });
            // Auto-merge needs it allowed in the repository settings; failing to turn it on is
            // not fatal, but it is said. GraphQL reports errors with HTTP 200 and `errors`.
            let graphql = self.graphql.clone();
            match self.ok(Method::POST, &graphql, Some(&mutation)) {
                Ok(answer) if answer["errors"].as_array().is_some_and(|e| !e.is_empty()) => {
                    let messages: Vec<&str> = answer["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["message"].as_str())
                        .collect();
                    tracing::warn!("could not enable auto-merge on #{n}: {}", messages.join("; "));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("could not enable auto-merge on #{n}: {e}"),
            }
        }
        Ok(created)
    }

    fn update(&self, number: u64, title: &str, body: &str, labels: &[String]) -> Result<(), ForgeError> {
        self.ok(
            Method::PATCH,
            &format!("/repos/{}/pulls/{number}", self.repo),
            Some(&json!({"title": title, "body": body})),
        )?;
        if !labels.is_empty() {
            // POST adds; PUT would drop the labels a maintainer put on the PR.
            self.ok(
                Method::POST,
                &format!("/repos/{}/issues/{number}/labels", self.repo),
                Some(&json!({"labels": labels})),
            )?;
        }
        Ok(())
    }

    fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        self.ok(Method::POST, &format!("/repos/{}/issues/{number}/comments", self.repo), Some(&json!({"body": body})))?;
        Ok(())
    }

    fn comments(&self, number: u64) -> Result<Vec<String>, ForgeError> {
        let list = self.list(&format!("/repos/{}/issues/{number}/comments?per_page=100", self.repo))?;
        Ok(list.iter().filter_map(|c| c["body"].as_str().map(str::to_string)).collect())
    }

    fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        self.comment(number, comment)?;
        self.ok(Method::PATCH, &format!("/repos/{}/pulls/{number}", self.repo), Some(&json!({"state": "closed"})))?;
        Ok(())
    }

    fn dashboard(&self, title: &str, body: &str) -> Result<(), ForgeError> {
        // Found by a hidden marker, not by title (anyone can open an issue with that title), and
        // the oldest such issue wins: one opened later by someone else cannot take its place.
        let body = &format!("{body}\n{DASHBOARD_MARKER}\n");
        let (issues, _) = self.list_pages(
            &format!("/repos/{}/issues?state=open&sort=created&direction=asc&per_page=100", self.repo),
            100,
        )?;
        let existing = issues
            .iter()
            .filter(|i| i.get("pull_request").is_none())
            .filter(|i| i["body"].as_str().is_some_and(|b| b.contains(DASHBOARD_MARKER)))
            .min_by_key(|i| i["number"].as_u64().unwrap_or(u64::MAX));
        match existing {
            Some(issue) if issue["body"].as_str() == Some(body) => Ok(()),
            Some(issue) => {
                let n = issue["number"].as_u64().unwrap_or(0);
                self.ok(Method::PATCH, &format!("/repos/{}/issues/{n}", self.repo), Some(&json!({"body": body})))
                    .map(|_| ())
            }
            None => self
                .ok(Method::POST, &format!("/repos/{}/issues", self.repo), Some(&json!({"title": title, "body": body})))
                .map(|_| ()),
        }
    }

    fn writes(&self) -> usize {
        self.writes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_sits_beside_the_rest_api() {
        assert_eq!(graphql_url("https://api.github.com"), "https://api.github.com/graphql");
        assert_eq!(graphql_url("https://ghes.example.com/api/v3/"), "https://ghes.example.com/api/graphql");
    }
}
