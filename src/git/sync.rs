//! Keeping the checkout of a long-running `upkeep verify --watch` current: clone the remote
//! into an empty folder once, then on each new Flux revision fetch the checked-out branch and
//! fast-forward the checkout to it.
//!
//! A fast-forward is the only move: a checkout with uncommitted changes, or a branch with
//! commits the remote does not have, is left exactly as it is (a human's work is never
//! rewritten) and the caller verifies what the checkout already holds. Fetched tips land in a
//! private namespace (`refs/upkeep/fetched/<branch>`), never in a human's remote-tracking refs.

use std::path::Path;

use super::{GitError, Writer, callbacks, git_err};
use crate::redact::url as redact_url;

/// Where a fetched branch tip is kept before the checkout moves to it.
const FETCHED_PREFIX: &str = "refs/upkeep/fetched/";

/// What [`Writer::fast_forward`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The checkout already has the remote's tip (or more).
    UpToDate,
    /// The branch and the work tree moved forward.
    Forwarded {
        /// The old tip.
        from: git2::Oid,
        /// The new tip.
        to: git2::Oid,
    },
    /// Left alone: why (uncommitted changes, diverged history).
    Refused(String),
}

/// Clone `url` into `into` (missing or an empty folder), checking out the remote's default
/// branch. The token goes through the credential callback, never into the remote's URL.
pub fn clone_into(url: &str, into: &Path, token: Option<&str>) -> Result<(), GitError> {
    let mut fetch = git2::FetchOptions::new();
    fetch.remote_callbacks(callbacks(token));
    git2::build::RepoBuilder::new()
        .fetch_options(fetch)
        .clone(url, into)
        .map(|_| ())
        .map_err(|e| GitError(format!("cannot clone {} into {}: {}", redact_url(url), into.display(), e.message())))
}

impl Writer {
    /// Fetch the checked-out branch from `remote` and fast-forward the checkout to it when that
    /// is safe: the work tree is clean and the local branch is an ancestor of the remote's.
    pub fn fast_forward(&self, remote: &str, token: Option<&str>) -> Result<Synced, GitError> {
        let (branch, local) = self.default_branch()?;
        let fetched_ref = format!("{FETCHED_PREFIX}{branch}");
        let mut r = self.remote(remote)?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(callbacks(token));
        opts.update_fetchhead(false);
        let spec = format!("+refs/heads/{branch}:{fetched_ref}");
        r.fetch(&[spec.as_str()], Some(&mut opts), Some("upkeep: fetch the default branch"))
            .map_err(|e| GitError(format!("cannot fetch {branch} from {}: {}", redact_url(remote), e.message())))?;
        let theirs = self.repo.refname_to_id(&fetched_ref).map_err(git_err(&fetched_ref))?;
        if theirs == local || self.repo.graph_descendant_of(local, theirs).map_err(git_err("ancestry"))? {
            return Ok(Synced::UpToDate);
        }
        if !self.repo.graph_descendant_of(theirs, local).map_err(git_err("ancestry"))? {
            return Ok(Synced::Refused(format!(
                "the checkout's {branch} has commits {} does not have; verifying the checkout as it is",
                redact_url(remote)
            )));
        }
        let dirty = self.uncommitted()?;
        if !dirty.is_empty() {
            return Ok(Synced::Refused(format!(
                "the work tree has uncommitted changes ({}); not moving it, verifying the checkout as it is",
                dirty.join(", ")
            )));
        }
        self.move_checkout(&branch, local, theirs)?;
        Ok(Synced::Forwarded { from: local, to: theirs })
    }

    /// Tracked files with changes in the work tree or the index (untracked files do not count:
    /// a safe checkout refuses to overwrite them anyway).
    fn uncommitted(&self) -> Result<Vec<String>, GitError> {
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(false).include_ignored(false);
        let statuses = self.repo.statuses(Some(&mut opts)).map_err(git_err("status"))?;
        Ok(statuses
            .iter()
            .filter(|s| s.status() != git2::Status::CURRENT)
            .filter_map(|s| s.path().ok().map(str::to_string))
            .take(5)
            .collect())
    }

    /// Check out `to`'s tree safely (only files that still match `from` are written), then move
    /// the branch under a lease; if the branch moved meanwhile, put the old tree back.
    fn move_checkout(&self, branch: &str, from: git2::Oid, to: git2::Oid) -> Result<(), GitError> {
        let target = self.repo.find_commit(to).map_err(git_err("fetched commit"))?;
        let mut safe = git2::build::CheckoutBuilder::new();
        safe.safe();
        self.repo
            .checkout_tree(target.as_object(), Some(&mut safe))
            .map_err(|e| GitError(format!("cannot update the work tree to {to}: {}", e.message())))?;
        let refname = format!("refs/heads/{branch}");
        if let Err(e) = self.repo.reference_matching(&refname, to, true, from, "upkeep: fast-forward") {
            let old = self.repo.find_commit(from).map_err(git_err("old tip"))?;
            let mut back = git2::build::CheckoutBuilder::new();
            back.force();
            let _ = self.repo.checkout_tree(old.as_object(), Some(&mut back));
            return Err(GitError(format!("{refname} moved while upkeep fast-forwarded it: {}", e.message())));
        }
        Ok(())
    }
}
