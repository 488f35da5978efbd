//! git, through git2: for now, reading upkeep's memory back from the default branch's history.
//!
//! upkeep writes machine-readable trailers on its commits (DESIGN "State lives in git"):
//! `Upkeep-Update: <dependency-id> <from> -> <to>` on updates and
//! `Upkeep-Revert: <dependency-id> <version>` on reverts. Reading them back is all the state
//! the gate needs; a maintainer can read and write the same lines by hand.

use std::path::Path;

use crate::gate::history::{Event, HistorySource};

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
    fn events(&self) -> Result<Vec<Event>, String> {
        let repo = match git2::Repository::discover(&self.root) {
            Ok(r) => r,
            // Not a git repository: nothing remembered, which is not an error for a scan.
            Err(_) => return Ok(Vec::new()),
        };
        let mut walk = repo.revwalk().map_err(|e| format!("cannot read git history: {}", e.message()))?;
        if walk.push_head().is_err() {
            return Ok(Vec::new()); // an empty repository
        }
        let mut events = Vec::new();
        for oid in walk.take(MAX_COMMITS) {
            let oid = oid.map_err(|e| format!("cannot read git history: {}", e.message()))?;
            let Ok(commit) = repo.find_commit(oid) else { continue };
            let Ok(message) = commit.message() else { continue };
            if !message.contains("Upkeep-") && !message.to_ascii_lowercase().contains("upkeep-") {
                continue;
            }
            let at = jiff::Timestamp::from_second(commit.time().seconds()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            events.extend(trailers(message, at, &oid.to_string()));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_update_and_revert_trailers() {
        let at = jiff::Timestamp::UNIX_EPOCH;
        let msg = "chore(deps): update longhorn to 1.5.4\n\nbody\n\nUpkeep-Update: helmrelease/longhorn-system/longhorn 1.4.1 -> 1.5.4\nUpkeep-Update: broken line\n";
        assert_eq!(trailers(msg, at, "c1").len(), 1);
        let revert = "Revert \"x\"\n\nUpkeep-Revert: plan/system-upgrade/k3s-server v1.30.0+k3s1\n";
        assert!(matches!(&trailers(revert, at, "c2")[0], Event::Reverted { version, .. } if version == "v1.30.0+k3s1"));
    }
}
