//! git for the verifier: which commits brought upkeep's updates onto the default branch, what
//! they changed, whether a revision Flux reports contains them, verdict notes, and reverts.
//!
//! "The merge" of an update is the first-parent commit that brought its trailer onto the default
//! branch: a merge commit (the trailer is on its second-parent side), a squash commit or a rebased
//! commit (the trailer is on the commit itself). Verdicts live in git notes under
//! `refs/notes/upkeep` as JSON, one per merge, so a maintainer can read them with
//! `git notes --ref upkeep show <sha>` and the next run reads them back.

use std::path::Path;

use super::{GitError, Writer, callbacks, git_err, trailers};
use crate::gate::history::Event;
use crate::redact::url as redact_url;

/// Where verdicts live.
pub const NOTES_REF: &str = "refs/notes/upkeep";
/// Where the remote's notes are fetched to before they are merged into [`NOTES_REF`].
const REMOTE_NOTES_REF: &str = "refs/upkeep/remote-notes";

/// A file a commit changes: path, text before, text after (`None`: absent).
pub type FileChange = (String, Option<String>, Option<String>);

/// One upkeep update, as its trailer says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Update {
    /// Dependency id.
    pub id: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
}

/// A commit on the default branch that brought upkeep updates (or an upkeep revert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The first-parent commit, full hex.
    pub commit: String,
    /// Its first parent (what a revert goes back to), if any.
    pub parent: Option<String>,
    /// Whether it has more than one parent (revert with mainline 1).
    pub is_merge_commit: bool,
    /// When it reached the branch (committer time of the merge).
    pub merged_at: jiff::Timestamp,
    /// The updates it carries.
    pub updates: Vec<Update>,
    /// The reverts it carries (`Upkeep-Revert` trailers): `(dependency, version)`.
    pub reverts: Vec<(String, String)>,
    /// Subject of the commit carrying the trailers (the PR title for upkeep's own commits).
    pub title: String,
    /// Files the merge changed against its first parent, `/`-separated.
    pub files: Vec<String>,
}

impl Writer {
    /// upkeep merges along the checked-out branch's first-parent line, newest first, back to
    /// `since` (commits older than that are not read: the verifier's horizon). Unreadable
    /// commits are errors, never silently skipped: a merge missed is a merge never verified.
    pub fn upkeep_merges(&self, since: jiff::Timestamp, max: usize) -> Result<Vec<Merge>, GitError> {
        let mut walk = self.repo.revwalk().map_err(git_err("revwalk"))?;
        if walk.push_head().is_err() {
            return Ok(Vec::new());
        }
        walk.simplify_first_parent().map_err(git_err("revwalk"))?;
        let mut out = Vec::new();
        for oid in walk.take(max) {
            let oid = oid.map_err(git_err("revwalk"))?;
            let commit = self.repo.find_commit(oid).map_err(git_err("read commit"))?;
            let at = jiff::Timestamp::from_second(commit.time().seconds()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            // Commit dates along a branch are not monotonic (rebases, skewed clocks): an old one
            // is passed over, not taken as the end of the walk.
            if at < since {
                continue;
            }
            if let Some(merge) = self.merge_at(&commit, at)? {
                out.push(merge);
            }
        }
        Ok(out)
    }

    /// The merge at `commit`, if it brought any upkeep trailer.
    fn merge_at(&self, commit: &git2::Commit<'_>, at: jiff::Timestamp) -> Result<Option<Merge>, GitError> {
        let mut carried = vec![commit.clone()];
        if commit.parent_count() > 1 {
            let mut side = self.repo.revwalk().map_err(git_err("revwalk"))?;
            for p in commit.parent_ids().skip(1) {
                side.push(p).map_err(git_err("revwalk"))?;
            }
            side.hide(commit.parent_id(0).map_err(git_err("parent"))?).map_err(git_err("revwalk"))?;
            for id in side.take(200) {
                let id = id.map_err(git_err("revwalk"))?;
                carried.push(self.repo.find_commit(id).map_err(git_err("read commit"))?);
            }
        }
        let (mut updates, mut reverts, mut title) = (Vec::new(), Vec::new(), None);
        for c in &carried {
            let message = String::from_utf8_lossy(c.message_bytes()).to_string();
            let events = trailers(&message, at, &c.id().to_string());
            if !events.is_empty() && title.is_none() {
                title = Some(c.summary_bytes().map(|s| String::from_utf8_lossy(s).to_string()).unwrap_or_default());
            }
            for e in events {
                match e {
                    Event::Updated { dep, from, to, .. } => {
                        let u = Update { id: dep, from, to };
                        if !updates.contains(&u) {
                            updates.push(u);
                        }
                    }
                    Event::Reverted { dep, version, .. } if !reverts.contains(&(dep.clone(), version.clone())) => {
                        reverts.push((dep, version));
                    }
                    _ => {}
                }
            }
        }
        let Some(title) = title else { return Ok(None) };
        Ok(Some(Merge {
            commit: commit.id().to_string(),
            parent: commit.parent_id(0).ok().map(|p| p.to_string()),
            is_merge_commit: commit.parent_count() > 1,
            merged_at: at,
            updates,
            reverts,
            title,
            files: self.changed_files(commit)?,
        }))
    }

    fn changed_files(&self, commit: &git2::Commit<'_>) -> Result<Vec<String>, GitError> {
        let tree = commit.tree().map_err(git_err("tree"))?;
        let parent = match commit.parent(0) {
            Ok(p) => Some(p.tree().map_err(git_err("tree"))?),
            Err(_) => None,
        };
        let diff = self.repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), None).map_err(git_err("diff"))?;
        let mut files = Vec::new();
        for delta in diff.deltas() {
            for f in [delta.old_file(), delta.new_file()] {
                if let Some(p) = f.path().map(|p| p.to_string_lossy().replace('\\', "/"))
                    && !files.contains(&p)
                {
                    files.push(p);
                }
            }
        }
        Ok(files)
    }

    /// Whether `revision` is `merge` or a descendant of it; `None` when git does not know the
    /// revision (not fetched yet, or another repository's).
    pub fn contains(&self, revision: &str, merge: &str) -> Option<bool> {
        let rev = git2::Oid::from_str(revision).ok()?;
        let merge = git2::Oid::from_str(merge).ok()?;
        if rev == merge {
            return Some(true);
        }
        self.repo.find_commit(rev).ok()?;
        self.repo.graph_descendant_of(rev, merge).ok()
    }

    /// The commits of the checked-out branch's first-parent line from its tip down to `merge`
    /// (included), tip first, at most `max`: the commits whose Flux statuses speak for the merge.
    /// An error when `merge` is not on that line within `max` commits.
    pub fn first_parent_down_to(&self, merge: &str, max: usize) -> Result<Vec<String>, GitError> {
        let target = git2::Oid::from_str(merge).map_err(git_err("commit id"))?;
        let mut walk = self.repo.revwalk().map_err(git_err("revwalk"))?;
        walk.push_head().map_err(git_err("HEAD"))?;
        walk.simplify_first_parent().map_err(git_err("revwalk"))?;
        let mut out = Vec::new();
        for oid in walk.take(max) {
            let oid = oid.map_err(git_err("revwalk"))?;
            out.push(oid.to_string());
            if oid == target {
                return Ok(out);
            }
        }
        Err(GitError(format!(
            "{} is not within the newest {max} commits of the checked-out branch's first-parent line",
            &merge[..merge.len().min(12)]
        )))
    }

    /// The verdict note on `commit`, if any.
    pub fn note(&self, commit: &str) -> Result<Option<String>, GitError> {
        let oid = git2::Oid::from_str(commit).map_err(git_err(commit))?;
        match self.repo.find_note(Some(NOTES_REF), oid) {
            Ok(note) => Ok(Some(String::from_utf8_lossy(note.message_bytes()).to_string())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(GitError(format!("cannot read the upkeep note of {commit}: {}", e.message()))),
        }
    }

    /// Write (or replace) the verdict note on `commit`; nothing when it already says `text`.
    pub fn set_note(&self, commit: &str, text: &str) -> Result<bool, GitError> {
        if self.note(commit)?.as_deref() == Some(text) {
            return Ok(false);
        }
        let oid = git2::Oid::from_str(commit).map_err(git_err(commit))?;
        let sig = git2::Signature::now(&self.author.name, &self.author.email).map_err(git_err("author"))?;
        self.repo.note(&sig, &sig, Some(NOTES_REF), oid, text, true).map_err(git_err("write note"))?;
        Ok(true)
    }

    /// Fetch the remote's verdict notes and take them when they are ahead of (or instead of)
    /// the local ones. Returns the remote's notes commit, the lease for [`Writer::push_notes`].
    pub fn fetch_notes(&self, remote: &str, token: Option<&str>) -> Result<Option<git2::Oid>, GitError> {
        let mut r = self.remote(remote)?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(callbacks(token));
        opts.update_fetchhead(false);
        let spec = format!("+{NOTES_REF}:{REMOTE_NOTES_REF}");
        r.fetch(&[spec.as_str()], Some(&mut opts), Some("upkeep: read verdicts")).map_err(|e| {
            GitError(format!("cannot read upkeep's verdict notes from {}: {}", redact_url(remote), e.message()))
        })?;
        let advertised = r.list().map_err(git_err("list remote refs"))?.iter().any(|h| h.name() == NOTES_REF);
        let Some(theirs) = advertised.then(|| self.repo.refname_to_id(REMOTE_NOTES_REF).ok()).flatten() else {
            return Ok(None);
        };
        match self.repo.refname_to_id(NOTES_REF).ok() {
            None => {
                self.repo
                    .reference(NOTES_REF, theirs, true, "upkeep: verdicts from the remote")
                    .map_err(git_err(NOTES_REF))?;
            }
            Some(ours) if ours == theirs || self.repo.graph_descendant_of(ours, theirs).unwrap_or(false) => {}
            Some(ours) if self.repo.graph_descendant_of(theirs, ours).unwrap_or(false) => {
                self.repo
                    .reference_matching(NOTES_REF, theirs, true, ours, "upkeep: verdicts from the remote")
                    .map_err(git_err(NOTES_REF))?;
            }
            Some(_) => {
                return Err(GitError(format!(
                    "the local {NOTES_REF} and {}'s have diverged; run `git fetch {} {NOTES_REF}:{NOTES_REF} --force` to take the remote's verdicts",
                    redact_url(remote),
                    redact_url(remote)
                )));
            }
        }
        Ok(Some(theirs))
    }

    /// Push the verdict notes, only if the remote's are still at `expected` (the lease).
    pub fn push_notes(&self, remote: &str, expected: Option<git2::Oid>, token: Option<&str>) -> Result<(), GitError> {
        if self.repo.refname_to_id(NOTES_REF).ok() == expected {
            return Ok(());
        }
        self.push_refspec(remote, NOTES_REF, NOTES_REF, expected, token)
    }

    /// `git revert` of `merge` (mainline 1 for a merge commit) applied on `onto`: the tree of the
    /// revert, or `Err` naming the conflicting files when it does not apply cleanly.
    pub fn revert_tree(&self, merge: &str, onto: git2::Oid) -> Result<Result<git2::Oid, Vec<String>>, GitError> {
        let merge =
            self.repo.find_commit(git2::Oid::from_str(merge).map_err(git_err(merge))?).map_err(git_err("merge"))?;
        let onto = self.repo.find_commit(onto).map_err(git_err("tip"))?;
        let mainline = u32::from(merge.parent_count() > 1);
        let mut index = self.repo.revert_commit(&merge, &onto, mainline, None).map_err(git_err("revert"))?;
        if index.has_conflicts() {
            let mut files = Vec::new();
            for c in index.conflicts().map_err(git_err("conflicts"))? {
                let c = c.map_err(git_err("conflicts"))?;
                let entry = c.our.or(c.their).or(c.ancestor);
                if let Some(e) = entry {
                    files.push(String::from_utf8_lossy(&e.path).to_string());
                }
            }
            return Ok(Err(files));
        }
        Ok(Ok(index.write_tree_to(&self.repo).map_err(git_err("write tree"))?))
    }

    /// The files of `tree` that differ from `base`'s tree, with both texts (for the revert proof).
    pub fn tree_changes(&self, base: git2::Oid, tree: git2::Oid) -> Result<Vec<FileChange>, GitError> {
        let old = self.repo.find_commit(base).and_then(|c| c.tree()).map_err(git_err("tree"))?;
        let new = self.repo.find_tree(tree).map_err(git_err("tree"))?;
        let diff = self.repo.diff_tree_to_tree(Some(&old), Some(&new), None).map_err(git_err("diff"))?;
        let text = |id: git2::Oid| -> Option<String> {
            if id.is_zero() {
                return None;
            }
            self.repo.find_blob(id).ok().map(|b| String::from_utf8_lossy(b.content()).to_string())
        };
        Ok(diff
            .deltas()
            .filter_map(|d| {
                let path = d.new_file().path().or(d.old_file().path())?.to_string_lossy().replace('\\', "/");
                Some((path, text(d.old_file().id()), text(d.new_file().id())))
            })
            .collect())
    }

    /// The repository's root, for callers that open it again.
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }
}

impl Writer {
    /// Write the files of `tree` under `dir` (a scratch folder), leaving HEAD, the index and
    /// the work tree alone: reverts are proved by scanning the tree they would produce.
    pub fn export_tree(&self, tree: git2::Oid, dir: &Path) -> Result<(), GitError> {
        let tree = self.repo.find_tree(tree).map_err(git_err("tree"))?;
        let mut opts = git2::build::CheckoutBuilder::new();
        opts.target_dir(dir).force().update_index(false).recreate_missing(true);
        self.repo.checkout_tree(tree.as_object(), Some(&mut opts)).map_err(git_err("export tree"))
    }

    /// The tree of a commit.
    pub fn tree_of(&self, commit: git2::Oid) -> Result<git2::Oid, GitError> {
        Ok(self.repo.find_commit(commit).map_err(git_err("read commit"))?.tree_id())
    }

    /// Resolve a commit named by (a prefix of) its id or a ref.
    pub fn resolve(&self, name: &str) -> Result<git2::Oid, GitError> {
        let obj = self
            .repo
            .revparse_single(name)
            .map_err(|e| GitError(format!("`{name}` is not a commit here: {}", e.message())))?;
        obj.peel_to_commit().map(|c| c.id()).map_err(|e| GitError(format!("`{name}` is not a commit: {}", e.message())))
    }
}

/// Every verdict note in the repository at `root`: `(commit, text)`. No repository or no
/// notes is an empty list; a broken notes ref is an error (memory must not silently shrink).
pub fn verdict_notes(root: &Path) -> Result<Vec<(String, String)>, GitError> {
    let Ok(repo) = git2::Repository::discover(root) else { return Ok(Vec::new()) };
    if repo.refname_to_id(NOTES_REF).is_err() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for pair in repo.notes(Some(NOTES_REF)).map_err(git_err("notes"))? {
        let (_, annotated) = pair.map_err(git_err("notes"))?;
        let note = repo.find_note(Some(NOTES_REF), annotated).map_err(git_err("note"))?;
        out.push((annotated.to_string(), String::from_utf8_lossy(note.message_bytes()).to_string()));
    }
    Ok(out)
}
