//! GitHub as a forge, through octocrab's typed routes and models against its REST API
//! (`GITHUB_API_URL`, default `https://api.github.com`), with upkeep's own rules on top.
//!
//! octocrab's retry layer is off (`RetryConfig::None`): its default retries POSTs, and a retried
//! "create PR" is how bots open duplicates. Every call goes through one loop, the policy of
//! [`crate::retry`] (shared with the lookup client): reads retry with backoff; writes are retried
//! only when GitHub says it did not process them (429, or a 403 rate limit); anything else fails
//! the one change, and the next run converges because PRs are found by head branch before one is
//! created and a 422 "A pull request already exists" counts as found. Issues upkeep opens carry a
//! hidden marker and are looked up by it first, and again after a create that failed in a way
//! that may have been done (a 5xx, no answer), so a 502 after GitHub did it opens no second one.
//! A commit status is posted only when the newest one of its context says something else.
//!
//! Rate limits: `Retry-After` and `x-ratelimit-reset` are honoured, a bare secondary-limit 403
//! waits at least 60 s (GitHub's guidance), and past the cap (`UPKEEP_MAX_WAIT_SECONDS`, 300)
//! the call fails with a message saying to run again later. 401/403/404 name the permission
//! missing. Pagination follows `Link: rel="next"` only back to the API itself. The token travels
//! only in the `Authorization` header (octocrab sends it on relative routes alone) and is never
//! part of a message.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use octocrab::models::issues::Issue as GhIssue;
use octocrab::models::pulls::PullRequest as GhPull;
use octocrab::models::{IssueState, Status as GhStatus, StatusState as GhState};
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::{Octocrab, OctocrabBuilder, Page, params};
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use super::{CommitStatus, Forge, ForgeError, Issue, NewPullRequest, PrState, PullRequest, StatusState};
use crate::retry::{self, Signal};

/// Marks upkeep's dashboard issue in its body (invisible when rendered).
const DASHBOARD_MARKER: &str = "<!-- upkeep-dashboard -->";

/// GitHub's limit on a status description: a longer one is refused with a 422.
const STATUS_DESCRIPTION_MAX: usize = 140;

/// The GitHub forge for one repository.
pub struct GithubForge {
    crab: Octocrab,
    /// A client whose base is the GraphQL endpoint's parent, so the token goes there too
    /// (octocrab only authenticates relative routes).
    graphql: Octocrab,
    graphql_route: String,
    runtime: tokio::runtime::Runtime,
    api: String,
    repo: String,
    owner: String,
    name: String,
    max_wait: Duration,
    writes: Cell<usize>,
}

/// A call that did not succeed.
enum Failed {
    /// GitHub answered with this status; `detail` holds its message and error list.
    Status { status: u16, message: String, detail: String },
    /// upkeep stopped: a rate limit past the cap, no answer to a write, retries exhausted, or
    /// an answer it could not read.
    Gave(String),
}

fn fail(message: impl Into<String>) -> ForgeError {
    ForgeError { forge: "github", message: message.into() }
}

/// A time from octocrab's models (chrono), as upkeep keeps it (jiff).
fn timestamp(seconds: i64, nanos: u32) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(seconds, i32::try_from(nanos).unwrap_or(0)).ok()
}

fn pr_from(p: &GhPull) -> PullRequest {
    let state = if p.merged_at.is_some() {
        PrState::Merged
    } else if p.state == Some(IssueState::Open) {
        PrState::Open
    } else {
        PrState::Closed
    };
    PullRequest {
        number: p.number,
        head: p.head.ref_field.clone(),
        base: p.base.ref_field.clone(),
        title: p.title.clone().unwrap_or_default(),
        body: p.body.clone().unwrap_or_default(),
        labels: p.labels.iter().flatten().map(|l| l.name.clone()).collect(),
        state,
        url: p.html_url.as_ref().map(ToString::to_string).unwrap_or_default(),
        closed_at: p.closed_at.as_ref().and_then(|t| timestamp(t.timestamp(), t.timestamp_subsec_nanos())),
        merge_commit: p.merge_commit_sha.clone().filter(|_| state == PrState::Merged),
    }
}

fn issue_from(i: &GhIssue) -> Issue {
    Issue { number: i.number, title: i.title.clone(), url: i.html_url.to_string(), open: i.state == IssueState::Open }
}

fn status_from(s: &GhStatus) -> CommitStatus {
    CommitStatus {
        context: s.context.clone().unwrap_or_default(),
        state: match s.state {
            GhState::Pending => StatusState::Pending,
            GhState::Success => StatusState::Success,
            GhState::Failure => StatusState::Failure,
            _ => StatusState::Error,
        },
        description: s.description.clone().unwrap_or_default(),
        target_url: s.target_url.clone(),
        created_at: s.created_at.as_ref().and_then(|t| timestamp(t.timestamp(), t.timestamp_subsec_nanos())),
    }
}

fn gh_state(state: StatusState) -> GhState {
    match state {
        StatusState::Pending => GhState::Pending,
        StatusState::Success => GhState::Success,
        StatusState::Failure => GhState::Failure,
        StatusState::Error => GhState::Error,
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
fn permission_hint(status: u16, method: &str, path: &str) -> &'static str {
    let issues = path.contains("/issues") || path.contains("/labels") || path.contains("/comments");
    match status {
        401 => "GITHUB_TOKEN is missing, invalid or expired",
        403 | 404 if method == "GET" => {
            "the token cannot read this repository: grant `contents: read`, `pull-requests: read` and `issues: read`, and check GITHUB_REPOSITORY / --repo"
        }
        403 if path.ends_with("/graphql") => {
            "auto-merge needs `pull-requests: write` and auto-merge allowed in the repository settings"
        }
        403 | 404 if path.contains("/statuses") => "the token lacks `statuses: write` (the verifier's commit status)",
        403 | 404 if issues => "the token lacks `issues: write` (labels, comments and the dashboard issue)",
        403 | 404 => "the token lacks `pull-requests: write` (and `contents: write` to push branches)",
        410 => {
            "that feature is turned off in this repository's settings (issues carry labels, comments and the dashboard)"
        }
        _ => "unexpected answer from GitHub",
    }
}

/// A next-page `link` as a route relative to `api`, or `None` when it points anywhere else
/// (another host, or outside GHES's `/api/v3`): octocrab joins routes to its base URI, and
/// sends the token only with relative ones.
fn route_within(api: &str, link: &str) -> Option<String> {
    link.strip_prefix(api)?.strip_prefix('/').map(|rest| format!("/{rest}"))
}

/// What one octocrab call tells the retry loop, and its result.
fn classify<T>(result: octocrab::Result<T>) -> (Signal, Option<Result<T, Failed>>) {
    let read = Signal::answer(200, &HeaderMap::new());
    match result {
        Ok(value) => (read, Some(Ok(value))),
        Err(octocrab::Error::GitHub { source, .. }) => {
            let status = source.status_code.as_u16();
            let mut signal = Signal::answer(status, source.headers.as_ref().unwrap_or(&HeaderMap::new()));
            signal.secondary_limit =
                status == 403 && source.message.to_ascii_lowercase().contains("secondary rate limit");
            let errors = source.errors.as_ref().map(|e| serde_json::Value::from(e.clone()).to_string());
            let detail = format!("{} {}", source.message, errors.unwrap_or_default());
            (signal, Some(Err(Failed::Status { status, message: source.message, detail })))
        }
        // No complete answer: the connection, a timeout, or the body cut short.
        Err(e @ (octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. })) => {
            (Signal::no_answer(format!("no answer from GitHub: {}", e.to_string().lines().next().unwrap_or(""))), None)
        }
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or("").to_string();
            (read, Some(Err(Failed::Gave(format!("cannot read GitHub's answer: {first}")))))
        }
    }
}

/// An octocrab client for `base`: token, API version, timeouts, and its own retries off.
fn client(base: &str, token: &str) -> Result<Octocrab, ForgeError> {
    OctocrabBuilder::new()
        .add_retry_config(RetryConfig::None)
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .add_header(reqwest::header::HeaderName::from_static("x-github-api-version"), "2022-11-28".into())
        .base_uri(base)
        .map_err(|e| fail(format!("`{base}` is not a usable API URL: {e}")))?
        .personal_token(token.to_string())
        .build()
        .map_err(|e| fail(format!("cannot build the GitHub client: {e}")))
}

impl GithubForge {
    /// A forge for `repo` (`owner/name`) at `api`, authenticating with `token`.
    pub fn new(api: &str, repo: &str, token: &str) -> Result<GithubForge, ForgeError> {
        let Some((owner, name)) = repo.split_once('/').filter(|(o, n)| !o.is_empty() && !n.is_empty()) else {
            return Err(fail(format!("`{repo}` is not `owner/name`; set --repo or GITHUB_REPOSITORY")));
        };
        if token.is_empty() {
            return Err(fail(
                "GITHUB_TOKEN is not set; the GitHub forge needs a token with contents, pull-requests and issues write",
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(e.to_string()))?;
        let api = api.trim_end_matches('/').to_string();
        let graphql = graphql_url(&api);
        let (graphql_base, graphql_route) = graphql.rsplit_once('/').unwrap_or((graphql.as_str(), "graphql"));
        // octocrab spawns its client's worker on the runtime it is built in: ours.
        let (crab, graphql) =
            runtime.block_on(async { Ok::<_, ForgeError>((client(&api, token)?, client(graphql_base, token)?)) })?;
        Ok(GithubForge {
            crab,
            graphql,
            graphql_route: format!("/{graphql_route}"),
            runtime,
            api,
            repo: repo.to_string(),
            owner: owner.to_string(),
            name: name.to_string(),
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

    /// One API call through the shared retry loop. `path` names the call in messages; only
    /// GETs count as idempotent, and a write that succeeded is counted.
    fn send<T, F, Fut>(&self, method: &'static str, path: &str, mut call: F) -> Result<T, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        let policy = retry::Policy {
            retries: 3,
            backoff: Duration::from_millis(500),
            max_wait: self.max_wait,
            bare_limit_wait: Some(Duration::from_secs(60)),
            server: "GitHub",
        };
        let idempotent = method == "GET";
        let what = format!("{method} {path}");
        let answer = self.runtime.block_on(retry::retrying(&policy, idempotent, &what, || {
            let call = call();
            async move { classify(call.await) }
        }));
        let answer = answer.unwrap_or_else(|message| Err(Failed::Gave(message)));
        if !idempotent && answer.is_ok() {
            self.writes.set(self.writes.get() + 1);
        }
        answer
    }

    /// [`send`](Self::send), with a failure said as one line naming the call and the permission.
    fn ok<T, F, Fut>(&self, method: &'static str, path: &str, call: F) -> Result<T, ForgeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        self.send(method, path, call).map_err(|f| self.said(f, method, path))
    }

    fn said(&self, failed: Failed, method: &str, path: &str) -> ForgeError {
        match failed {
            Failed::Status { status, message, .. } => {
                fail(format!("{method} {path}: HTTP {status}: {message}; {}", permission_hint(status, method, path)))
            }
            Failed::Gave(message) => fail(format!("{method} {path}: {message}")),
        }
    }

    /// The first page (from a typed route) and the ones after it, up to `pages` in all; the
    /// flag says whether more were left unread.
    fn pages<T, F, Fut>(&self, path: &str, pages: usize, first: F) -> Result<(Vec<T>, bool), ForgeError>
    where
        T: DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: Future<Output = octocrab::Result<Page<T>>>,
    {
        let mut page = self.ok("GET", path, first)?;
        let mut items = std::mem::take(&mut page.items);
        for _ in 1..pages {
            let Some(next) = page.next.take() else { return Ok((items, false)) };
            // The token goes wherever `next` points: follow only links back to the API itself,
            // as a route relative to it (the only kind octocrab sends the token with).
            let link = next.to_string();
            let Some(route) = route_within(&self.api, &link) else {
                return Err(fail(format!(
                    "GET {path}: the next page is at `{link}`, outside {}; refusing to send the token there",
                    self.api
                )));
            };
            page = self.ok("GET", path, || self.crab.get::<Page<T>, _, ()>(route.as_str(), None))?;
            items.append(&mut page.items);
        }
        Ok((items, page.next.is_some()))
    }

    fn issues(&self) -> octocrab::issues::IssueHandler<'_> {
        self.crab.issues(&self.owner, &self.name)
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}{rest}", self.repo)
    }

    /// A PR whose head branch lives in this repository (not a fork's branch of the same name).
    fn is_this_repositorys(&self, pr: &GhPull) -> bool {
        pr.head.repo.as_ref().and_then(|r| r.full_name.as_deref()).is_some_and(|r| r.eq_ignore_ascii_case(&self.repo))
    }

    fn find_open(&self, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        let (prs, _) = self.pages(&self.route("/pulls"), 20, || async move {
            let pulls = self.crab.pulls(&self.owner, &self.name);
            pulls.list().state(params::State::Open).head(format!("{}:{head}", self.owner)).per_page(100).send().await
        })?;
        Ok(prs.iter().filter(|p| self.is_this_repositorys(p)).map(pr_from).find(|p| p.head == head))
    }

    /// Every issue (not PR) of the repository in `state`, oldest first, whose body holds `marker`.
    fn issues_marked(&self, state: params::State, marker: &str) -> Result<Vec<GhIssue>, ForgeError> {
        let (issues, _) = self.pages(&self.route("/issues"), 100, || async move {
            let issues = self.crab.issues(&self.owner, &self.name);
            let list = issues.list().state(state).sort(params::issues::Sort::Created);
            list.direction(params::Direction::Ascending).per_page(100).send().await
        })?;
        let mut marked: Vec<GhIssue> = issues
            .into_iter()
            .filter(|i| i.pull_request.is_none())
            .filter(|i| i.body.as_deref().is_some_and(|b| b.contains(marker)))
            .collect();
        marked.sort_by_key(|i| i.number);
        Ok(marked)
    }

    /// Turn on auto-merge (GraphQL). Failing to is not fatal, but it is said: it needs
    /// auto-merge allowed in the repository settings. GraphQL reports errors with HTTP 200.
    fn enable_automerge(&self, number: u64, node_id: &str) {
        let mutation = serde_json::json!({
            "query": "mutation($id: ID!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: SQUASH}) { clientMutationId } }",
            "variables": {"id": node_id}
        });
        let answer: Result<GraphqlAnswer, _> =
            self.ok("POST", "/graphql", || self.graphql.post(self.graphql_route.as_str(), Some(&mutation)));
        match answer {
            Ok(answer) if !answer.errors.is_empty() => {
                let messages: Vec<&str> = answer.errors.iter().map(|e| e.message.as_str()).collect();
                tracing::warn!("could not enable auto-merge on #{number}: {}", messages.join("; "));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not enable auto-merge on #{number}: {e}"),
        }
    }
}

/// The part of a GraphQL answer upkeep reads: its errors.
#[derive(serde::Deserialize)]
struct GraphqlAnswer {
    #[serde(default)]
    errors: Vec<GraphqlMessage>,
}

#[derive(serde::Deserialize)]
struct GraphqlMessage {
    message: String,
}

impl Forge for GithubForge {
    fn name(&self) -> &'static str {
        "github"
    }

    fn upkeep_prs(&self) -> Result<Vec<PullRequest>, ForgeError> {
        // Every open PR (an old open upkeep PR missed would be opened again and never closed),
        // and the newest 2,000 of all states for the closed ones memory reads.
        let path = self.route("/pulls");
        let (open, more) = self.pages(&path, 100, || async move {
            self.crab.pulls(&self.owner, &self.name).list().state(params::State::Open).per_page(100).send().await
        })?;
        if more {
            return Err(fail(
                "more than 10,000 open pull requests: upkeep cannot see all of its own; close some first",
            ));
        }
        let (recent, _) = self.pages(&path, 20, || async move {
            let pulls = self.crab.pulls(&self.owner, &self.name);
            let list = pulls.list().state(params::State::All).sort(params::pulls::Sort::Created);
            list.direction(params::Direction::Descending).per_page(100).send().await
        })?;
        let mut prs = open;
        let known: std::collections::HashSet<u64> = prs.iter().map(|p| p.number).collect();
        prs.extend(recent.into_iter().filter(|p| !known.contains(&p.number)));
        prs.sort_by_key(|p| std::cmp::Reverse(p.number));
        // Only branches of this repository: a fork's PR on a branch it named `upkeep/…` is not
        // upkeep's, and must neither refuse versions nor be taken over.
        Ok(prs
            .iter()
            .filter(|p| self.is_this_repositorys(p))
            .map(pr_from)
            .filter(|p| p.head.starts_with("upkeep/"))
            .collect())
    }

    fn create(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        if let Some(open) = self.find_open(&pr.head)? {
            return Ok(open);
        }
        let path = self.route("/pulls");
        let created = self.send("POST", &path, || async move {
            let pulls = self.crab.pulls(&self.owner, &self.name);
            pulls.create(&pr.title, &pr.head, &pr.base).body(&pr.body).draft(pr.draft).send().await
        });
        let created = match created {
            Ok(created) => created,
            Err(Failed::Status { status: 422, detail, .. }) if detail.contains("already exists") => {
                return self
                    .find_open(&pr.head)?
                    .ok_or_else(|| fail(format!("GitHub says a PR for {} exists but none is open", pr.head)));
            }
            Err(Failed::Status { status, message, .. }) => {
                return Err(fail(format!(
                    "POST pulls: HTTP {status}: {message}; {}",
                    permission_hint(status, "POST", "/pulls")
                )));
            }
            Err(gave) => return Err(self.said(gave, "POST", &path)),
        };
        let n = created.number;
        if !pr.labels.is_empty() {
            let path = self.route(&format!("/issues/{n}/labels"));
            self.ok("POST", &path, || async move { self.issues().add_labels(n, &pr.labels).await })?;
        }
        if !pr.reviewers.is_empty() {
            // `org/team` is a team (by slug), anything else a user. GitHub answers with the PR
            // (octocrab's `request_reviews` expects a review), so the route is called typed here.
            let (teams, users): (Vec<&String>, Vec<&String>) = pr.reviewers.iter().partition(|r| r.contains('/'));
            let teams: Vec<&str> = teams.iter().filter_map(|t| t.rsplit('/').next()).collect();
            let body = serde_json::json!({"reviewers": users, "team_reviewers": teams});
            let path = self.route(&format!("/pulls/{n}/requested_reviewers"));
            let _: GhPull = self.ok("POST", &path, || self.crab.post(path.as_str(), Some(&body)))?;
        }
        if pr.automerge
            && let Some(node) = &created.node_id
        {
            self.enable_automerge(n, node);
        }
        Ok(pr_from(&created))
    }

    fn update(&self, number: u64, title: &str, body: &str, labels: &[String]) -> Result<(), ForgeError> {
        let path = self.route(&format!("/pulls/{number}"));
        self.ok("PATCH", &path, || async move {
            self.crab.pulls(&self.owner, &self.name).update(number).title(title).body(body).send().await
        })?;
        if !labels.is_empty() {
            // POST adds; PUT would drop the labels a maintainer put on the PR.
            let path = self.route(&format!("/issues/{number}/labels"));
            self.ok("POST", &path, || async move { self.issues().add_labels(number, labels).await })?;
        }
        Ok(())
    }

    fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let path = self.route(&format!("/issues/{number}/comments"));
        self.ok("POST", &path, || async move { self.issues().create_comment(number, body).await })?;
        Ok(())
    }

    fn comments(&self, number: u64) -> Result<Vec<String>, ForgeError> {
        let path = self.route(&format!("/issues/{number}/comments"));
        let (list, _) =
            self.pages(&path, 20, || async move { self.issues().list_comments(number).per_page(100).send().await })?;
        Ok(list.into_iter().filter_map(|c| c.body).collect())
    }

    fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        self.comment(number, comment)?;
        let path = self.route(&format!("/pulls/{number}"));
        self.ok("PATCH", &path, || async move {
            self.crab.pulls(&self.owner, &self.name).update(number).state(params::pulls::State::Closed).send().await
        })?;
        Ok(())
    }

    fn dashboard(&self, title: &str, body: &str) -> Result<(), ForgeError> {
        // Found by a hidden marker, not by title (anyone can open an issue with that title), and
        // the oldest such issue wins: one opened later by someone else cannot take its place.
        let body = &format!("{body}\n{DASHBOARD_MARKER}\n");
        let existing = self.issues_marked(params::State::Open, DASHBOARD_MARKER)?.into_iter().next();
        match existing {
            Some(issue) if issue.body.as_deref() == Some(body) => Ok(()),
            Some(issue) => {
                let path = self.route(&format!("/issues/{}", issue.number));
                let number = issue.number;
                self.ok("PATCH", &path, || async move { self.issues().update(number).body(body).send().await })
                    .map(|_| ())
            }
            None => {
                let path = self.route("/issues");
                self.ok("POST", &path, || async move { self.issues().create(title).body(body).send().await })
                    .map(|_| ())
            }
        }
    }

    fn writes(&self) -> usize {
        self.writes.get()
    }

    fn statuses(&self, sha: &str) -> Result<Vec<CommitStatus>, ForgeError> {
        let path = self.route(&format!("/commits/{sha}/statuses"));
        let (list, _) = self.pages(&path, 100, || async move {
            self.crab.repos(&self.owner, &self.name).list_statuses(sha.to_string()).per_page(100).send().await
        })?;
        let mut statuses: Vec<CommitStatus> = list.iter().map(status_from).collect();
        // GitHub lists newest first already; a stable sort keeps that promise whatever it sends.
        statuses.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(statuses)
    }

    fn set_status(&self, sha: &str, status: &CommitStatus) -> Result<(), ForgeError> {
        let description: String = status.description.chars().take(STATUS_DESCRIPTION_MAX).collect();
        let newest = self.statuses(sha)?.into_iter().find(|s| s.context == status.context);
        if newest.is_some_and(|s| s.state == status.state && s.description == description) {
            return Ok(());
        }
        let path = self.route(&format!("/statuses/{sha}"));
        let description = &description;
        self.ok("POST", &path, || async move {
            let repos = self.crab.repos(&self.owner, &self.name);
            let builder = repos
                .create_status(sha.to_string(), gh_state(status.state))
                .context(status.context.clone())
                .description(description.clone());
            match &status.target_url {
                Some(url) => builder.target(url.clone()).send().await,
                None => builder.send().await,
            }
        })?;
        Ok(())
    }

    fn open_issue(&self, title: &str, body: &str, labels: &[String], marker: &str) -> Result<Issue, ForgeError> {
        if let Some(issue) = self.issues_marked(params::State::All, marker)?.first() {
            return Ok(issue_from(issue));
        }
        // Without the marker in its body the issue could not be found again: add it if missing.
        let body = if body.contains(marker) { body.to_string() } else { format!("{body}\n{marker}\n") };
        let path = self.route("/issues");
        let body = &body;
        let created = self.send("POST", &path, || async move {
            self.issues().create(title).body(body).labels(labels.to_vec()).send().await
        });
        match created {
            Ok(issue) => Ok(issue_from(&issue)),
            // A 5xx or no answer may still have been done: look again before saying it failed,
            // so the next pass does not open a second one either way.
            Err(failed @ (Failed::Status { status: 500.., .. } | Failed::Gave(_))) => {
                match self.issues_marked(params::State::All, marker)?.first() {
                    Some(issue) => Ok(issue_from(issue)),
                    None => Err(self.said(failed, "POST", &path)),
                }
            }
            Err(failed) => Err(self.said(failed, "POST", &path)),
        }
    }

    fn pr_for_commit(&self, sha: &str) -> Result<Option<PullRequest>, ForgeError> {
        use octocrab::commits::PullRequestTarget;
        let path = self.route(&format!("/commits/{sha}/pulls"));
        let (prs, _) = self.pages(&path, 10, || async move {
            let commits = self.crab.commits(&self.owner, &self.name);
            commits.associated_pull_requests(PullRequestTarget::Sha(sha.to_string())).per_page(100).send().await
        })?;
        let merged: Vec<&GhPull> = prs.iter().filter(|p| p.merged_at.is_some()).collect();
        let pr = merged.iter().find(|p| p.merge_commit_sha.as_deref() == Some(sha)).or(merged.first());
        Ok(pr.map(|p| pr_from(p)))
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

    #[test]
    fn next_pages_are_followed_only_within_the_api() {
        let api = "https://api.github.com";
        assert_eq!(
            route_within(api, "https://api.github.com/repositories/1300192/pulls?page=2").as_deref(),
            Some("/repositories/1300192/pulls?page=2")
        );
        let ghes = "https://ghes.example.com/api/v3";
        assert_eq!(
            route_within(ghes, "https://ghes.example.com/api/v3/repos/o/r/issues?page=3").as_deref(),
            Some("/repos/o/r/issues?page=3"),
            "the base path is octocrab's to add"
        );
        assert_eq!(route_within(ghes, "https://ghes.example.com/api/graphql?page=2"), None);
        assert_eq!(route_within(api, "https://api.github.com.evil.example/steal?page=2"), None);
        assert_eq!(route_within(api, "http://api.github.com/repos/o/r/pulls?page=2"), None, "not downgraded to http");
    }
}
