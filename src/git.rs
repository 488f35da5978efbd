//! git, through git2: for now, reading upkeep's memory back from the default branch's history.
//!
//! upkeep writes machine-readable trailers on its commits (DESIGN "State lives in git"):
//! `Upkeep-Update: <dependency-id> <from> -> <to>` on updates and
//! `Upkeep-Revert: <dependency-id> <version>` on reverts. Reading them back is all the state
//! the gate needs; a maintainer can read and write the same lines by hand.

use std::path::Path;

use crate::gate::history::{Event, HistorySource};
use crate::lookup::http::origin;

mod merges;
mod sync;

pub use merges::{FileChange, Merge, NOTES_REF, Update, verdict_notes};
pub use sync::{Synced, clone_into};

/// How far back history is read; older facts no longer steer decisions.
pub const MAX_COMMITS: usize = 5_000;

/// The history of the branch checked out in a repository.
#[derive(Debug, Clone)]
pub struct GitHistory {
    root: std::path::PathBuf,
}

impl GitHistory {
    /// History of the repository containing `path`.
    pub fn at(path: &Path) -> GitHistory {
        GitHistory { root: path.to_path_buf() }
    }
}

/// Parse upkeep's trailers out of one commit message.
pub fn trailers(message: &str, at: jiff::Timestamp, commit: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for line in message.lines() {
        // A squash merge that keeps the PR description carries its hidden markers
        // (`<!-- upkeep-update: <dep> <from> -> <to> -->`) instead of the trailers.
        let line = match line.trim().strip_prefix("<!-- ").and_then(|l| l.strip_suffix(" -->")) {
            Some(marker) => marker,
            None => line,
        };
        let Some((key, value)) = line.split_once(':') else { continue };
        let words: Vec<&str> = value.split_whitespace().collect();
        match key.trim().to_ascii_lowercase().as_str() {
            "upkeep-update" => {
                if let [dep, from, "->", to] = words.as_slice() {
                    out.push(Event::Updated {
                        dep: (*dep).into(),
                        from: (*from).into(),
                        to: (*to).into(),
                        at,
                        commit: commit.into(),
                    });
                }
            }
            "upkeep-revert" => {
                if let [dep, version] = words.as_slice() {
                    out.push(Event::Reverted {
                        dep: (*dep).into(),
                        version: (*version).into(),
                        at,
                        commit: commit.into(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

impl HistorySource for GitHistory {
    /// Events along the default branch's first-parent line, each dated by the commit that
    /// brought it there: a squash or rebase commit itself, or for a merge commit, every commit
    /// it merged (so an update opened Monday and merged Thursday counts from Thursday).
    fn events(&self) -> Result<Vec<Event>, String> {
        let repo = match git2::Repository::discover(&self.root) {
            Ok(r) => r,
            // Not a git repository: nothing remembered, which is not an error for a scan.
            Err(_) => return Ok(Vec::new()),
        };
        let failed = |e: git2::Error| format!("cannot read git history: {}", e.message());
        let mut walk = repo.revwalk().map_err(failed)?;
        match repo.head() {
            Err(e) if matches!(e.code(), git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound) => {
                return Ok(Vec::new()); // an empty repository
            }
            Err(e) => return Err(failed(e)),
            Ok(_) => walk.push_head().map_err(failed)?,
        }
        walk.simplify_first_parent().map_err(failed)?;
        let mut events = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for oid in walk.take(MAX_COMMITS) {
            // A commit that cannot be read is an error, not a gap: memory missing a revert
            // would propose the reverted version again.
            let oid = oid.map_err(failed)?;
            let commit = repo.find_commit(oid).map_err(failed)?;
            let at = jiff::Timestamp::from_second(commit.time().seconds()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let mut carried = vec![oid];
            if commit.parent_count() > 1 {
                let mut side = repo.revwalk().map_err(failed)?;
                for p in commit.parent_ids().skip(1) {
                    side.push(p).map_err(failed)?;
                }
                side.hide(commit.parent_id(0).map_err(failed)?).map_err(failed)?;
                for id in side.take(200) {
                    carried.push(id.map_err(failed)?);
                }
            }
            for id in carried {
                let c = repo.find_commit(id).map_err(failed)?;
                let message = String::from_utf8_lossy(c.message_bytes());
                if !message.to_ascii_lowercase().contains("upkeep-") {
                    continue;
                }
                for event in trailers(&message, at, &id.to_string()) {
                    // A squash message may carry both the trailers and the PR body's markers.
                    if seen.insert(format!("{event:?}")) {
                        events.push(event);
                    }
                }
            }
        }
        Ok(events)
    }
}

/// A unified diff of one file, for dry runs of whole-file changes (regenerated files).
pub fn unified_diff(path: &str, before: &str, after: &str) -> Result<String, GitError> {
    let mut patch = git2::Patch::from_buffers(
        before.as_bytes(),
        Some(Path::new(path)),
        after.as_bytes(),
        Some(Path::new(path)),
        None,
    )
    .map_err(git_err("diff"))?;
    let buf = patch.to_buf().map_err(git_err("diff"))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_with_default_ports_written_out() {
        assert_eq!(origin("https://github.com:443/o/r.git"), origin("https://github.com"));
        assert_eq!(origin("https://x-access-token:t@GitHub.com/o/r"), origin("https://github.com/"));
        assert_ne!(origin("http://github.com/o/r"), origin("https://github.com"));
        assert_ne!(origin("https://github.com:8443/o/r"), origin("https://github.com"));
    }

    #[test]
    fn reads_update_and_revert_trailers() {
        let at = jiff::Timestamp::UNIX_EPOCH;
        let msg = "chore(deps): update longhorn to 1.5.4\n\nbody\n\nUpkeep-Update: helmrelease/longhorn-system/longhorn 1.4.1 -> 1.5.4\nUpkeep-Update: broken line\n";
        assert_eq!(trailers(msg, at, "c1").len(), 1);
        let revert = "Revert \"x\"\n\nUpkeep-Revert: plan/system-upgrade/k3s-server v1.30.0+k3s1\n";
        assert!(matches!(&trailers(revert, at, "c2")[0], Event::Reverted { version, .. } if version == "v1.30.0+k3s1"));
    }
}

/// A git operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("git: {0}")]
pub struct GitError(pub String);

fn git_err(what: &str) -> impl Fn(git2::Error) -> GitError + '_ {
    move |e| GitError(format!("{what}: {}", e.message()))
}

/// Who upkeep commits as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// Name.
    pub name: String,
    /// Email; also how upkeep recognises its own commits.
    pub email: String,
}

impl Default for Author {
    fn default() -> Self {
        Author { name: "upkeep[bot]".into(), email: "upkeep[bot]@users.noreply.github.com".into() }
    }
}

impl Author {
    /// Parse `Name <email>`.
    pub fn parse(text: &str) -> Option<Author> {
        let (name, rest) = text.split_once('<')?;
        let email = rest.strip_suffix('>')?.trim();
        (!email.is_empty()).then(|| Author { name: name.trim().to_string(), email: email.to_string() })
    }
}

/// How an existing upkeep branch relates to the default branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchState {
    /// Its tip.
    pub tip: git2::Oid,
    /// The default branch's tip is not in its history.
    pub behind: bool,
    /// Commits on it that upkeep did not write (author or trailers differ), newest first.
    pub foreign: Vec<String>,
}

/// What a remote holds that upkeep cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteState {
    /// upkeep's branches (`upkeep/*`) and their tips.
    pub branches: std::collections::BTreeMap<String, git2::Oid>,
    /// The default branch (where the remote's HEAD points) and its tip, when advertised.
    pub default: Option<(String, git2::Oid)>,
}

/// Writes upkeep's branches and commits, without touching the work tree or index.
pub struct Writer {
    repo: git2::Repository,
    author: Author,
}

impl Writer {
    /// Open the repository containing `path`.
    pub fn open(path: &Path, author: Author) -> Result<Writer, GitError> {
        let repo = git2::Repository::discover(path).map_err(git_err("not a git repository"))?;
        Ok(Writer { repo, author })
    }

    /// The work tree's root.
    pub fn workdir(&self) -> Option<&Path> {
        self.repo.workdir()
    }

    /// The branch checked out (the default branch upkeep works against) and its tip.
    pub fn default_branch(&self) -> Result<(String, git2::Oid), GitError> {
        let head = self.repo.head().map_err(git_err("HEAD"))?;
        let name = head
            .shorthand()
            .ok()
            .filter(|_| head.is_branch())
            .ok_or_else(|| GitError("HEAD is detached; check out the default branch".into()))?;
        let tip = head.target().ok_or_else(|| GitError("HEAD has no commit".into()))?;
        Ok((name.to_string(), tip))
    }

    /// A file's text at a commit.
    pub fn read(&self, commit: git2::Oid, path: &str) -> Result<Option<String>, GitError> {
        let tree = self.repo.find_commit(commit).and_then(|c| c.tree()).map_err(git_err("read commit"))?;
        let Ok(entry) = tree.get_path(Path::new(path)) else { return Ok(None) };
        let blob = self.repo.find_blob(entry.id()).map_err(git_err(path))?;
        Ok(std::str::from_utf8(blob.content()).ok().map(str::to_string))
    }

    /// The tree a commit on `parent` with `files` replaced would have.
    pub fn tree_with(&self, parent: git2::Oid, files: &[(String, String)]) -> Result<git2::Oid, GitError> {
        let base = self.repo.find_commit(parent).and_then(|c| c.tree()).map_err(git_err("read parent"))?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = self.repo.blob(content.as_bytes()).map_err(git_err("write blob"))?;
            let mode = base.get_path(Path::new(path)).map(|e| e.filemode()).unwrap_or(0o100644);
            let mode = if mode == 0o100755 { git2::FileMode::BlobExecutable } else { git2::FileMode::Blob };
            update.upsert(path.as_str(), blob, mode);
        }
        update.create_updated(&self.repo, &base).map_err(git_err("write tree"))
    }

    /// Commit `tree` on `parent` as upkeep.
    pub fn commit(&self, parent: git2::Oid, tree: git2::Oid, message: &str) -> Result<git2::Oid, GitError> {
        let sig = git2::Signature::now(&self.author.name, &self.author.email).map_err(git_err("author"))?;
        let parent = self.repo.find_commit(parent).map_err(git_err("parent"))?;
        let tree = self.repo.find_tree(tree).map_err(git_err("tree"))?;
        self.repo.commit(None, &sig, &sig, message, &tree, &[&parent]).map_err(git_err("commit"))
    }

    /// The tip of local branch `name`.
    pub fn branch_tip(&self, name: &str) -> Option<git2::Oid> {
        self.repo.find_reference(&format!("refs/heads/{name}")).ok()?.target()
    }

    /// Tree and first parent of a commit.
    pub fn tree_and_parent(&self, commit: git2::Oid) -> Result<(git2::Oid, Option<git2::Oid>), GitError> {
        let c = self.repo.find_commit(commit).map_err(git_err("read commit"))?;
        Ok((c.tree_id(), c.parent_id(0).ok()))
    }

    /// Point `name` at `to`, only if it still points at `expected` (a lease: never a blind move).
    pub fn set_branch(
        &self,
        name: &str,
        to: git2::Oid,
        expected: Option<git2::Oid>,
        log: &str,
    ) -> Result<(), GitError> {
        let refname = format!("refs/heads/{name}");
        match expected {
            None => self.repo.reference(&refname, to, false, log).map(|_| ()),
            Some(old) => self.repo.reference_matching(&refname, to, true, old, log).map(|_| ()),
        }
        .map_err(git_err(&refname))
    }

    /// How branch `tip` stands against the default branch's `base`.
    pub fn branch_state(&self, tip: git2::Oid, base: git2::Oid) -> Result<BranchState, GitError> {
        let behind = !(tip == base || self.repo.graph_descendant_of(tip, base).map_err(git_err("ancestry"))?);
        let merge_base = self.repo.merge_base(tip, base).map_err(git_err("merge base"))?;
        let mut walk = self.repo.revwalk().map_err(git_err("revwalk"))?;
        walk.push(tip).map_err(git_err("revwalk"))?;
        walk.hide(merge_base).map_err(git_err("revwalk"))?;
        let mut foreign = Vec::new();
        for oid in walk {
            let oid = oid.map_err(git_err("revwalk"))?;
            let c = self.repo.find_commit(oid).map_err(git_err("read commit"))?;
            // Author, committer and trailer all upkeep's: `git commit --amend` keeps the author
            // and the message but makes the maintainer the committer, and their work must stay.
            let ours = c.author().email().ok() == Some(self.author.email.as_str())
                && c.committer().email().ok() == Some(self.author.email.as_str())
                && c.message().is_ok_and(|m| m.contains("Upkeep-Update:"));
            if !ours {
                foreign.push(format!("{} by {}", &oid.to_string()[..12], c.author().name().unwrap_or("?")));
            }
        }
        Ok(BranchState { tip, behind, foreign })
    }

    /// upkeep's branches on `remote` (`upkeep/*` → tip), with their commits fetched into a
    /// private namespace (`refs/upkeep/remote/*`) so they can be inspected. The remote, not the
    /// local repository, is the truth when there is one: a CI checkout has no local `upkeep/*`
    /// branches, and deciding from local state alone would re-push every branch every run.
    pub fn remote_branches(&self, remote: &str, token: Option<&str>) -> Result<RemoteState, GitError> {
        let mut r = self.remote(remote)?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(callbacks(token));
        opts.update_fetchhead(false);
        opts.prune(git2::FetchPrune::On);
        r.fetch(&["+refs/heads/upkeep/*:refs/upkeep/remote/*"], Some(&mut opts), Some("upkeep: read update branches"))
            .map_err(|e| {
                GitError(format!("cannot read upkeep's branches from {}: {}", crate::redact::url(remote), e.message()))
            })?;
        let list = r.list().map_err(git_err("list remote refs"))?;
        let branches = list
            .iter()
            .filter_map(|h| {
                h.name()
                    .strip_prefix("refs/heads/")
                    .filter(|n| n.starts_with("upkeep/"))
                    .map(|n| (n.to_string(), h.oid()))
            })
            .collect();
        // The remote's default branch: what its HEAD points at, and that branch's tip.
        let default = list.iter().find(|h| h.name() == "HEAD").and_then(|h| {
            h.symref_target().and_then(|t| t.strip_prefix("refs/heads/")).map(|b| (b.to_string(), h.oid()))
        });
        Ok(RemoteState { branches, default })
    }

    fn remote(&self, remote: &str) -> Result<git2::Remote<'_>, GitError> {
        self.repo.find_remote(remote).or_else(|_| self.repo.remote_anonymous(remote)).map_err(git_err("remote"))
    }

    /// Push `commit` to `branch` on `remote`, only if the remote branch is still at `expected`
    /// (`None`: it must not exist). The check runs in push negotiation against what the server
    /// advertises — a lease, never a blind force — and a ref the server refuses is an error.
    pub fn push_commit(
        &self,
        remote: &str,
        branch: &str,
        commit: git2::Oid,
        expected: Option<git2::Oid>,
        token: Option<&str>,
    ) -> Result<(), GitError> {
        let staging = format!("refs/upkeep/push/{branch}");
        self.repo.reference(&staging, commit, true, "upkeep: stage a push").map_err(git_err(&staging))?;
        let result = self.push_ref(remote, branch, Some(&staging), expected, token);
        if let Ok(mut r) = self.repo.find_reference(&staging) {
            let _ = r.delete();
        }
        result
    }

    /// Delete `branch` on `remote`, only if it is still at `expected` (the same lease).
    pub fn delete_remote_branch(
        &self,
        remote: &str,
        branch: &str,
        expected: git2::Oid,
        token: Option<&str>,
    ) -> Result<(), GitError> {
        self.push_ref(remote, branch, None, Some(expected), token)
    }

    /// Delete local `branch` if it still points at `expected`.
    pub fn delete_branch(&self, branch: &str, expected: git2::Oid) -> Result<(), GitError> {
        let refname = format!("refs/heads/{branch}");
        if self.repo.head().ok().and_then(|h| h.name().ok().map(str::to_string)) == Some(refname.clone()) {
            return Err(GitError(format!("{branch} is checked out; left in place")));
        }
        match self.repo.find_reference(&refname) {
            Ok(mut r) if r.target() == Some(expected) => r.delete().map_err(git_err(&refname)),
            Ok(_) => Err(GitError(format!("{branch} moved; left in place"))),
            Err(_) => Ok(()),
        }
    }

    /// Push `source` (or a deletion, with `None`) to `branch` under the lease `expected`.
    fn push_ref(
        &self,
        remote: &str,
        branch: &str,
        source: Option<&str>,
        expected: Option<git2::Oid>,
        token: Option<&str>,
    ) -> Result<(), GitError> {
        let refname = format!("refs/heads/{branch}");
        self.push_refspec(remote, source.unwrap_or(""), &refname, expected, token)
            .map_err(|e| GitError(e.0.replace(&format!("push {refname}"), &format!("push {branch}"))))
    }

    /// Push local ref `source` (empty: delete) to remote ref `refname` under the lease
    /// `expected`: push negotiation compares it with what the server advertises.
    fn push_refspec(
        &self,
        remote: &str,
        source: &str,
        refname: &str,
        expected: Option<git2::Oid>,
        token: Option<&str>,
    ) -> Result<(), GitError> {
        let mut r = self.remote(remote)?;
        let rejected = std::cell::RefCell::new(None::<String>);
        let mut cb = callbacks(token);
        cb.push_negotiation(|updates| {
            for u in updates.iter().filter(|u| u.dst_refname().ok() == Some(refname)) {
                // `src` is what the remote has now, `dst` what upkeep is about to put there.
                let current = (!u.src().is_zero()).then(|| u.src());
                if current != expected {
                    return Err(git2::Error::from_str("the remote branch moved since upkeep read it"));
                }
            }
            Ok(())
        });
        cb.push_update_reference(|name, status| {
            if let Some(s) = status {
                *rejected.borrow_mut() = Some(format!("{name}: {s}"));
            }
            Ok(())
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(cb);
        let spec = if source.is_empty() { format!(":{refname}") } else { format!("+{source}:{refname}") };
        let pushed = r.push(&[spec.as_str()], Some(&mut opts));
        drop(opts);
        pushed.map_err(|e| GitError(format!("push {refname} was rejected: {}", e.message())))?;
        if let Some(why) = rejected.borrow().clone() {
            return Err(GitError(format!("push rejected: {why}")));
        }
        Ok(())
    }

    /// Point local `name` at `to` whatever it was: the local branch mirrors what was pushed.
    /// Refuses to move the checked-out branch, whose work tree would no longer match.
    pub fn mirror_branch(&self, name: &str, to: git2::Oid) -> Result<(), GitError> {
        let refname = format!("refs/heads/{name}");
        if self.repo.head().ok().and_then(|h| h.name().ok().map(str::to_string)) == Some(refname.clone()) {
            return Err(GitError(format!("{name} is checked out; check out the default branch before running upkeep")));
        }
        if self.branch_tip(name) == Some(to) {
            return Ok(());
        }
        self.repo
            .reference(&refname, to, true, "upkeep: mirror the pushed branch")
            .map(|_| ())
            .map_err(git_err(&refname))
    }
}

/// Credentials: a token over HTTPS as `x-access-token` (GitHub's convention), never in a URL.
fn callbacks<'a>(token: Option<&str>) -> git2::RemoteCallbacks<'a> {
    let token = token.map(str::to_string);
    let server = std::env::var("GITHUB_SERVER_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "https://github.com".into());
    let mut cb = git2::RemoteCallbacks::new();
    let mut tried = false;
    cb.credentials(move |url, _user, allowed| {
        // The token is GitHub's: offered only to the GitHub server (GITHUB_SERVER_URL, as
        // Actions sets it), never to another host or over a downgraded scheme.
        if token.is_some() && origin(url) != origin(&server) {
            return Err(git2::Error::from_str(&format!(
                "authentication required by {}; upkeep offers GITHUB_TOKEN only to {server} (set GITHUB_SERVER_URL for GitHub Enterprise)",
                origin(url).unwrap_or_default()
            )));
        }
        match &token {
            Some(t) if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) && !tried => {
                tried = true;
                git2::Cred::userpass_plaintext("x-access-token", t)
            }
            // Never loop on bad credentials; never print the token.
            _ => Err(git2::Error::from_str("authentication failed: check the token's `contents: write` permission")),
        }
    });
    cb
}
