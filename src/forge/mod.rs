//! Where pull requests live: a trait, and two implementations — [`local`] (files on disk, the
//! embedded default, so everything works without GitHub) and [`github`] (the REST API).
//!
//! PRs are found by their head branch (`upkeep/<group>`), which is what makes runs idempotent:
//! a re-run updates the PR it finds instead of opening another. Every PR body ends with hidden
//! markers (`<!-- upkeep-update: <dependency-id> <from> -> <to> -->`) so a PR closed without
//! merging can be read back as "not this version".

pub mod github;
pub mod local;

use crate::gate::history::Event;

/// The state of a PR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrState {
    /// Open.
    Open,
    /// Closed without merging.
    Closed,
    /// Merged.
    Merged,
}

/// A pull request as upkeep sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PullRequest {
    /// Number.
    pub number: u64,
    /// Head branch (`upkeep/<group>`).
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Labels.
    pub labels: Vec<String>,
    /// State.
    pub state: PrState,
    /// Where a person sees it.
    pub url: String,
    /// When it was closed, if it was.
    pub closed_at: Option<jiff::Timestamp>,
    /// The commit that brought it onto the base branch, once merged (GitHub's
    /// `merge_commit_sha`; the local forge's `"merge_commit"` field).
    #[serde(default)]
    pub merge_commit: Option<String>,
}

/// A PR to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    /// Head branch.
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Reviewers.
    pub reviewers: Vec<String>,
    /// Turn on auto-merge.
    pub automerge: bool,
    /// Open as a draft.
    pub draft: bool,
}

/// A forge call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{forge}: {message}")]
pub struct ForgeError {
    /// Which forge.
    pub forge: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

/// The state of a commit status, as GitHub's statuses API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    /// Still running.
    Pending,
    /// Passed.
    Success,
    /// Failed.
    Failure,
    /// Could not run.
    Error,
}

/// A commit status: upkeep's own `upkeep/verify`, or the `kustomization/<name>/<uid>` statuses
/// Flux's notification-controller posts on the commits it applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitStatus {
    /// The context (`upkeep/verify`, `kustomization/apps/0c9c2e41`).
    pub context: String,
    /// The state.
    pub state: StatusState,
    /// One line saying why (GitHub caps it at 140 characters).
    pub description: String,
    /// Where the full story is, if anywhere.
    pub target_url: Option<String>,
    /// When it was posted (None for one being written).
    pub created_at: Option<jiff::Timestamp>,
}

/// An issue upkeep opened (a forward-fix request).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Issue {
    /// Number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Where a person sees it (URL, or the file of the local forge).
    pub url: String,
    /// Whether it is open.
    pub open: bool,
}

/// What a forge can do.
pub trait Forge {
    /// Short name for messages.
    fn name(&self) -> &'static str;
    /// Every PR upkeep opened (head `upkeep/*`), open or not, newest first.
    fn upkeep_prs(&self) -> Result<Vec<PullRequest>, ForgeError>;
    /// Open a PR; if one for the head already exists, return it.
    fn create(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError>;
    /// Change a PR's title and body and add any of `labels` it lacks (labels a maintainer put
    /// on the PR stay).
    fn update(&self, number: u64, title: &str, body: &str, labels: &[String]) -> Result<(), ForgeError>;
    /// Comment on a PR.
    fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError>;
    /// The comments on a PR, oldest first (to avoid repeating one).
    fn comments(&self, number: u64) -> Result<Vec<String>, ForgeError>;
    /// Close a PR with a comment.
    fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError>;
    /// Create or update the dependency dashboard.
    fn dashboard(&self, title: &str, body: &str) -> Result<(), ForgeError>;
    /// How many writes this forge has made (tests check that a second run makes none).
    fn writes(&self) -> usize;
    /// The statuses of a commit, newest first, every page (GitHub:
    /// `GET /repos/{owner}/{repo}/commits/{sha}/statuses`).
    fn statuses(&self, sha: &str) -> Result<Vec<CommitStatus>, ForgeError> {
        let _ = sha;
        Err(ForgeError { forge: self.name(), message: "this forge keeps no commit statuses".into() })
    }
    /// Post a commit status, unless the newest status of that context already says the same
    /// (state and description), so a second pass writes nothing.
    fn set_status(&self, sha: &str, status: &CommitStatus) -> Result<(), ForgeError> {
        let _ = (sha, status);
        Err(ForgeError { forge: self.name(), message: "this forge keeps no commit statuses".into() })
    }
    /// Open an issue, or return the one (open or closed) whose body contains `marker`, so a
    /// second pass opens nothing.
    fn open_issue(&self, title: &str, body: &str, labels: &[String], marker: &str) -> Result<Issue, ForgeError> {
        let _ = (title, body, labels, marker);
        Err(ForgeError { forge: self.name(), message: "this forge cannot open issues".into() })
    }
    /// The merged PR that brought `sha` onto the default branch, if a PR did (GitHub:
    /// `GET /repos/{owner}/{repo}/commits/{sha}/pulls`, the merged one whose merge commit is `sha`).
    fn pr_for_commit(&self, sha: &str) -> Result<Option<PullRequest>, ForgeError> {
        let _ = sha;
        Ok(None)
    }
}

/// The hidden marker line for one update in a PR body.
pub fn marker(dependency: &str, from: &str, to: &str) -> String {
    format!("<!-- upkeep-update: {dependency} {from} -> {to} -->")
}

/// The updates a PR body carries, from its markers: `(dependency, from, to)`.
pub fn markers(body: &str) -> Vec<(String, String, String)> {
    markers_with(body, "<!-- upkeep-update: ")
}

/// The updates of a PR upkeep retired (closing it as superseded): same form, other prefix.
pub fn retired_markers(body: &str) -> Vec<(String, String, String)> {
    markers_with(body, "<!-- upkeep-superseded: ")
}

fn markers_with(body: &str, prefix: &str) -> Vec<(String, String, String)> {
    body.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix)?.strip_suffix(" -->").map(str::to_string))
        .filter_map(|m| {
            let words: Vec<&str> = m.split_whitespace().collect();
            match words.as_slice() {
                [dep, from, "->", to] => Some(((*dep).to_string(), (*from).to_string(), (*to).to_string())),
                _ => None,
            }
        })
        .collect()
}

/// PRs closed without merging, as memory: "not this version".
pub fn closed_unmerged(prs: &[PullRequest]) -> Vec<Event> {
    prs.iter()
        .filter(|p| p.state == PrState::Closed)
        .flat_map(|p| {
            markers(&p.body).into_iter().map(move |(dep, _, to)| Event::ClosedUnmerged {
                dep,
                version: to,
                at: p.closed_at.unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                pr: format!("#{}", p.number),
            })
        })
        .collect()
}

/// What upkeep's PRs tell the gate: refusals and merge times as memory events, and the groups
/// whose PR is open (they count against PR limits). `run` and `plan` read the same.
pub fn memory(prs: &[PullRequest]) -> (Vec<Event>, Vec<String>) {
    let mut events = closed_unmerged(prs);
    events.extend(merged_updates(prs));
    events.extend(failed_versions(prs));
    // Revert PRs are the verifier's, not updates: they count against no update limit.
    let open = prs
        .iter()
        .filter(|p| p.state == PrState::Open)
        .filter_map(|p| p.head.strip_prefix("upkeep/").map(str::to_string))
        .filter(|group| !group.starts_with("revert-"))
        .collect();
    (events, open)
}

/// The marker line of a revert PR: which version of which dependency it takes back.
pub fn revert_marker(dependency: &str, version: &str) -> String {
    format!("<!-- upkeep-revert: {dependency} {version} -->")
}

/// Versions that failed verification, from the verifier's revert PRs, open or merged: the gate
/// blocks them before the revert lands (after it lands, its trailer says the same). A revert PR
/// closed unmerged still means the version failed, so it counts too.
pub fn failed_versions(prs: &[PullRequest]) -> Vec<Event> {
    prs.iter()
        .filter(|p| p.head.starts_with("upkeep/revert-"))
        .flat_map(|p| {
            p.body.lines().filter_map(move |l| {
                let m = l.trim().strip_prefix("<!-- upkeep-revert: ")?.strip_suffix(" -->")?;
                let (dep, version) = m.split_once(' ')?;
                Some(Event::VerifyFailed {
                    dep: dep.to_string(),
                    version: version.trim().to_string(),
                    at: p.closed_at.unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    commit: format!("revert PR #{}", p.number),
                })
            })
        })
        .collect()
}

/// Merged PRs as memory: when each update reached the default branch. A fast-forward or a
/// merge keeps upkeep's own commit time in git; the forge knows the merge time.
pub fn merged_updates(prs: &[PullRequest]) -> Vec<Event> {
    prs.iter()
        .filter(|p| p.state == PrState::Merged)
        .filter_map(|p| p.closed_at.map(|at| (p, at)))
        .flat_map(|(p, at)| {
            markers(&p.body).into_iter().map(move |(dep, from, to)| Event::Updated {
                dep,
                from,
                to,
                at,
                commit: format!("PR #{}", p.number),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_prs_date_their_updates_by_the_merge() {
        let merged: jiff::Timestamp = "2026-11-20T09:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let pr = PullRequest {
            merge_commit: None,
            number: 7,
            head: "upkeep/x".into(),
            base: "main".into(),
            title: "t".into(),
            body: marker("helmrelease/a/b", "1.0.0", "1.1.0"),
            labels: Vec::new(),
            state: PrState::Merged,
            url: String::new(),
            closed_at: Some(merged),
        };
        let open = PullRequest { state: PrState::Open, closed_at: None, ..pr.clone() };
        assert!(matches!(
            merged_updates(&[pr, open]).as_slice(),
            [Event::Updated { dep, to, at, .. }] if dep == "helmrelease/a/b" && to == "1.1.0" && *at == merged
        ));
    }

    #[test]
    fn markers_round_trip() {
        let body = format!(
            "text\n{}\n{}\n",
            marker("helmrelease/a/b", "1.0.0", "1.1.0"),
            marker("plan/x/y", "v1.29.4+k3s1", "v1.30.6+k3s1")
        );
        assert_eq!(markers(&body).len(), 2);
        assert_eq!(markers(&body)[1].2, "v1.30.6+k3s1");
        assert!(markers("<!-- upkeep-update: broken -->").is_empty());
    }
}
