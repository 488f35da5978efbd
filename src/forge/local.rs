//! The local forge: PRs as files on disk, so upkeep runs end to end without GitHub.
//!
//! Under `<dir>` (default `.upkeep/prs/` in the repository, kept out of git by a `.gitignore`
//! upkeep writes there): `<n>.json` holds a PR's metadata (edit `"state"` to `"closed"` to
//! refuse its versions, or `"merged"`), `<n>.md` its body, `<n>.comments.json` its comments (a JSON
//! array of strings, so no text a comment holds can split it), and `../dashboard.md` the
//! dashboard. Writes happen only when content changes, so a second run writes nothing.
//!
//! Earlier versions kept comments in `<n>.comments.md`, separated by `---` lines, which broke
//! apart any comment holding such a line. That file is still read, and the first new comment
//! moves its comments into the JSON file before it is removed, so none is lost.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use super::{CommitStatus, Forge, ForgeError, Issue, NewPullRequest, PrState, PullRequest};

/// The local forge.
#[derive(Debug)]
pub struct LocalForge {
    dir: PathBuf,
    writes: Cell<usize>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    number: u64,
    head: String,
    base: String,
    title: String,
    labels: Vec<String>,
    #[serde(default)]
    reviewers: Vec<String>,
    #[serde(default)]
    automerge: bool,
    #[serde(default)]
    draft: bool,
    state: PrState,
    closed_at: Option<jiff::Timestamp>,
    /// Set by whoever merges a local PR (the example script, a test): the merge commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    merge_commit: Option<String>,
}

fn fail(message: String) -> ForgeError {
    ForgeError { forge: "local", message }
}

impl LocalForge {
    /// PRs under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> LocalForge {
        LocalForge { dir: dir.into(), writes: Cell::new(0) }
    }

    /// The directory PRs are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues (forward-fix requests) live beside the PRs: `.upkeep/issues/<n>.md`.
    pub fn issues_dir(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join("issues")
    }

    /// Commit statuses live beside the PRs: `.upkeep/statuses/<sha>.json`, newest first.
    pub fn statuses_dir(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join("statuses")
    }

    fn write(&self, path: &Path, content: &str) -> Result<(), ForgeError> {
        if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| fail(format!("cannot create {}: {e}", self.dir.display())))?;
        let ignore = self.dir.parent().unwrap_or(&self.dir).join(".gitignore");
        if self.dir.parent().is_some_and(|p| p.file_name().is_some_and(|n| n == ".upkeep")) && !ignore.exists() {
            std::fs::write(&ignore, "# upkeep's local forge: not part of the repository\n*\n")
                .map_err(|e| fail(e.to_string()))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }

    fn meta(&self, number: u64) -> Result<Meta, ForgeError> {
        let path = self.dir.join(format!("{number}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("no PR {number}: {e}")))?;
        serde_json::from_str(&text).map_err(|e| fail(format!("{} is not a PR record: {e}", path.display())))
    }

    fn save(&self, meta: &Meta) -> Result<(), ForgeError> {
        let text = serde_json::to_string_pretty(meta).map_err(|e| fail(e.to_string()))?;
        self.write(&self.dir.join(format!("{}.json", meta.number)), &format!("{text}\n"))
    }

    /// A PR from its record and body. A body that cannot be read is an error: read as empty,
    /// it would look changed and be overwritten. A missing body is an empty one.
    fn load(&self, meta: Meta) -> Result<PullRequest, ForgeError> {
        let path = self.dir.join(format!("{}.md", meta.number));
        let body = read_if_present(&path)?.unwrap_or_default();
        Ok(PullRequest {
            url: self.dir.join(format!("{}.md", meta.number)).display().to_string(),
            number: meta.number,
            head: meta.head,
            base: meta.base,
            title: meta.title,
            body,
            labels: meta.labels,
            state: meta.state,
            closed_at: meta.closed_at,
            merge_commit: meta.merge_commit,
        })
    }

    fn comments_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number}.comments.json"))
    }

    /// The file earlier versions kept comments in.
    fn old_comments_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number}.comments.md"))
    }
}

/// The text of `path`, `None` when there is no such file; any other failure is an error.
fn read_if_present(path: &Path) -> Result<Option<String>, ForgeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(format!("cannot read {}: {e}", path.display()))),
    }
}

impl Forge for LocalForge {
    fn name(&self) -> &'static str {
        "local"
    }

    fn upkeep_prs(&self) -> Result<Vec<PullRequest>, ForgeError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(fail(format!("cannot list {}: {e}", self.dir.display()))),
        };
        let mut prs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| fail(format!("cannot list {}: {e}", self.dir.display())))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(number) = name.strip_suffix(".json").and_then(|n| n.parse::<u64>().ok()) else { continue };
            prs.push(self.load(self.meta(number)?)?);
        }
        prs.sort_by_key(|p| std::cmp::Reverse(p.number));
        Ok(prs)
    }

    fn create(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let existing = self.upkeep_prs()?;
        if let Some(open) = existing.iter().find(|p| p.head == pr.head && p.state == PrState::Open) {
            return Ok(open.clone());
        }
        let number = existing.iter().map(|p| p.number).max().unwrap_or(0) + 1;
        let meta = Meta {
            number,
            head: pr.head.clone(),
            base: pr.base.clone(),
            title: pr.title.clone(),
            labels: pr.labels.clone(),
            reviewers: pr.reviewers.clone(),
            automerge: pr.automerge,
            draft: pr.draft,
            state: PrState::Open,
            closed_at: None,
            merge_commit: None,
        };
        self.write(&self.dir.join(format!("{number}.md")), &pr.body)?;
        self.save(&meta)?;
        self.load(meta)
    }

    fn update(&self, number: u64, title: &str, body: &str, labels: &[String]) -> Result<(), ForgeError> {
        let mut meta = self.meta(number)?;
        meta.title = title.to_string();
        for label in labels {
            if !meta.labels.contains(label) {
                meta.labels.push(label.clone());
            }
        }
        self.write(&self.dir.join(format!("{number}.md")), body)?;
        self.save(&meta)
    }

    fn comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        // Every comment so far, old file included; a read that fails stops here rather than
        // writing back a list without them.
        let mut comments = self.comments(number)?;
        comments.push(body.to_string());
        let text = serde_json::to_string_pretty(&comments).map_err(|e| fail(e.to_string()))?;
        self.write(&self.comments_path(number), &format!("{text}\n"))?;
        let old = self.old_comments_path(number);
        if old.exists() {
            std::fs::remove_file(&old).map_err(|e| fail(format!("cannot remove {}: {e}", old.display())))?;
        }
        Ok(())
    }

    fn comments(&self, number: u64) -> Result<Vec<String>, ForgeError> {
        let path = self.comments_path(number);
        let mut comments: Vec<String> = match read_if_present(&path)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| fail(format!("{} is not a JSON list of comments: {e}", path.display())))?,
            None => Vec::new(),
        };
        // The old format, read as it was written (before any newer comment).
        if let Some(text) = read_if_present(&self.old_comments_path(number))? {
            let old = text.split("---\n").map(|c| c.trim_end_matches('\n').to_string()).filter(|c| !c.is_empty());
            comments.splice(0..0, old);
        }
        Ok(comments)
    }

    fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        self.comment(number, comment)?;
        let mut meta = self.meta(number)?;
        meta.state = PrState::Closed;
        meta.closed_at = Some(jiff::Timestamp::now());
        self.save(&meta)
    }

    fn dashboard(&self, title: &str, body: &str) -> Result<(), ForgeError> {
        let path = self.dir.parent().unwrap_or(&self.dir).join("dashboard.md");
        self.write(&path, &format!("# {title}\n\n{body}"))
    }

    fn writes(&self) -> usize {
        self.writes.get()
    }

    fn statuses(&self, sha: &str) -> Result<Vec<CommitStatus>, ForgeError> {
        let path = self.statuses_dir().join(format!("{sha}.json"));
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| fail(format!("{} is not a list of commit statuses: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(fail(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn set_status(&self, sha: &str, status: &CommitStatus) -> Result<(), ForgeError> {
        let mut all = self.statuses(sha)?;
        let newest = all.iter().find(|s| s.context == status.context);
        if newest.is_some_and(|s| s.state == status.state && s.description == status.description) {
            return Ok(());
        }
        let mut status = status.clone();
        status.created_at = Some(jiff::Timestamp::now());
        all.insert(0, status);
        let text = serde_json::to_string_pretty(&all).map_err(|e| fail(e.to_string()))?;
        std::fs::create_dir_all(self.statuses_dir())
            .map_err(|e| fail(format!("cannot create {}: {e}", self.statuses_dir().display())))?;
        self.write(&self.statuses_dir().join(format!("{sha}.json")), &format!("{text}\n"))
    }

    fn open_issue(&self, title: &str, body: &str, labels: &[String], marker: &str) -> Result<Issue, ForgeError> {
        let dir = self.issues_dir();
        let mut highest = 0;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let Some(number) = name.strip_suffix(".md").and_then(|n| n.parse::<u64>().ok()) else { continue };
                highest = highest.max(number);
                let text = std::fs::read_to_string(entry.path())
                    .map_err(|e| fail(format!("cannot read {}: {e}", entry.path().display())))?;
                if text.contains(marker) {
                    let title = text.lines().next().unwrap_or("").trim_start_matches("# ").to_string();
                    return Ok(Issue { number, title, url: entry.path().display().to_string(), open: true });
                }
            }
        }
        let number = highest + 1;
        let path = dir.join(format!("{number}.md"));
        std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let labels = if labels.is_empty() { String::new() } else { format!("labels: {}\n\n", labels.join(", ")) };
        self.write(&path, &format!("# {title}\n\n{labels}{body}"))?;
        Ok(Issue { number, title: title.to_string(), url: path.display().to_string(), open: true })
    }

    fn pr_for_commit(&self, sha: &str) -> Result<Option<PullRequest>, ForgeError> {
        Ok(self.upkeep_prs()?.into_iter().find(|p| p.merge_commit.as_deref() == Some(sha)))
    }
}
