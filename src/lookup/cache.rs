//! The lookup cache: what an index or tag list said last time, and its validators.
//!
//! One JSON file per fetched URL, named by the SHA-256 of the (redacted) URL, holding the
//! `ETag`/`Last-Modified` and the *distilled* releases, so a warm run sends conditional
//! requests and, on 304, parses nothing. A file that does not parse is ignored (and refetched);
//! writes go to a temporary file and are renamed into place, so a crash never leaves half an
//! entry. Credentials are never part of a key or an entry: keys are built from redacted URLs.
//! Deleting the directory is always safe.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::http::Validators;
use crate::model::Release;

/// Bumped when the entry layout changes; older entries are then ignored.
const FORMAT: u32 = 1;

/// The upkeep that wrote an entry: releases are stored with their signals already read, so a
/// newer upkeep (better signal reading) must not trust an older one's entries.
const WRITER: &str = env!("CARGO_PKG_VERSION");

/// One cached response, distilled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Layout version.
    pub format: u32,
    /// The upkeep version that wrote it.
    #[serde(default)]
    pub writer: String,
    /// The URL it is for (redacted), to detect hash collisions and for people reading the files.
    pub url: String,
    /// Validators for the next conditional request.
    pub validators: Validators,
    /// When it was fetched.
    pub fetched: jiff::Timestamp,
    /// Releases by package name (chart for Helm indexes; one entry for tag lists and GitHub).
    pub packages: BTreeMap<String, Vec<Release>>,
    /// The packages this entry was distilled for (a Helm index is read only for the charts a
    /// run asks about), or `None` when it holds everything the response listed. A run asking
    /// for a package outside it cannot trust the entry's "not listed".
    #[serde(default)]
    pub scope: Option<BTreeSet<String>>,
}

impl Entry {
    /// A new entry for `url`.
    pub fn new(url: &str, validators: Validators, packages: BTreeMap<String, Vec<Release>>) -> Entry {
        Entry {
            format: FORMAT,
            writer: WRITER.to_string(),
            url: url.to_string(),
            validators,
            fetched: jiff::Timestamp::now(),
            packages,
            scope: None,
        }
    }

    /// The entry, distilled for `scope` only.
    pub fn with_scope(self, scope: Option<BTreeSet<String>>) -> Entry {
        Entry { scope, ..self }
    }
}

/// The cache directory, or none (every lookup fetches).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// A cache in `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: Some(dir.into()) }
    }

    /// No cache.
    pub fn disabled() -> Cache {
        Cache { dir: None }
    }

    /// Where upkeep caches by default: `$RUNNER_TEMP/upkeep-cache` on GitHub Actions, else the
    /// user's cache directory (`$XDG_CACHE_HOME/upkeep`, `~/.cache/upkeep`).
    pub fn default_dir() -> Option<PathBuf> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        env("RUNNER_TEMP")
            .map(|d| d.join("upkeep-cache"))
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("upkeep")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("upkeep")))
    }

    /// The directory, if caching.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path(&self, url: &str) -> Option<PathBuf> {
        let hash = Sha256::digest(url.as_bytes());
        let name: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.dir.as_ref().map(|d| d.join("lookups").join(format!("{name}.json")))
    }

    /// The entry for `url`, if there is a readable one.
    pub fn load(&self, url: &str) -> Option<Entry> {
        let path = self.path(url)?;
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) if entry.format == FORMAT && entry.writer == WRITER && entry.url == url => Some(entry),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("ignoring corrupt cache entry {}: {e}", path.display());
                None
            }
        }
    }

    /// Store `entry`. Failure to cache is logged, never fatal.
    pub fn store(&self, entry: &Entry) {
        let Some(path) = self.path(&entry.url) else { return };
        let result = (|| -> std::io::Result<()> {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
            // Written as it is serialised: an entry for a big index is hundreds of KB of JSON,
            // which a buffer would add to the run's peak memory.
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            serde_json::to_writer(&mut out, entry).map_err(std::io::Error::other)?;
            std::io::Write::flush(&mut out)?;
            drop(out);
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!("cannot write the lookup cache at {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_corrupt_entries() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = Cache::at(dir.path());
        let url = "https://charts.example.com/index.yaml";
        assert_eq!(cache.load(url), None);
        let entry = Entry::new(url, Validators { etag: Some("\"abc\"".into()), last_modified: None }, BTreeMap::new());
        cache.store(&entry);
        assert_eq!(cache.load(url), Some(entry));
        let path = cache.path(url).unwrap_or_default();
        std::fs::write(&path, b"{ not json").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.load(url), None);
    }
}
