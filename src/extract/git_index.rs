//! The files git tracks, read straight from the work tree's `.git/index`.
//!
//! Why not libgit2: starting it sets up its TLS, which parses every system CA certificate:
//! about 10 ms and 1.1 MiB of heap held to the end of the run (47,000 allocations), plus the
//! code pages of OpenSSL's certificate parser, for a scan that only wants a list of paths.
//! The index is a simple file (`Documentation/gitformat-index.txt` in git's sources): a header,
//! fixed-size entries with their paths, then extensions.
//!
//! Only the plain case is read here: a `.git` folder (not a `.git` file pointing elsewhere, as
//! worktrees and submodules have), owned by the user running upkeep, whose config sets no
//! `core.worktree`, and an index of version 2 or 3 without the extensions that change what
//! the entries mean (a split or a sparse index). Anything else, or anything that does not add
//! up, returns `None` and the caller asks libgit2, as it always did. The integration tests
//! compare the two on repositories with symlinks, submodules, conflicts, intent-to-add entries
//! and long paths (`tests/it/git_index.rs`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One index entry: its mode (the file type bits say file, symlink or submodule) and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `0o100644`, `0o100755`, `0o120000` (symlink), `0o160000` (submodule).
    pub mode: u32,
    /// The path from the work tree's top, `/`-separated, as git stores it.
    pub path: Vec<u8>,
}

/// Where a folder sits, as far as git goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkTree {
    /// In no work tree (none above it on the same file system).
    Outside,
    /// In the work tree at this folder, in the plain case read here.
    Plain(PathBuf),
    /// In a work tree only libgit2 should read: a `.git` file (a worktree or a submodule), a
    /// `core.worktree`, or a repository someone else owns.
    Other,
}

/// The work tree holding `path` (an existing folder, canonical): the nearest folder at or
/// above it that has a `.git`, without crossing into another file system, as libgit2's
/// discovery does.
pub fn find(path: &Path) -> WorkTree {
    let Ok(device) = std::fs::metadata(path).map(|m| m.dev()) else { return WorkTree::Other };
    for dir in path.ancestors() {
        match std::fs::metadata(dir) {
            Ok(m) if m.dev() == device => {}
            Ok(_) => return WorkTree::Outside,
            Err(_) => return WorkTree::Other,
        }
        let git_dir = dir.join(".git");
        let Ok(meta) = std::fs::symlink_metadata(&git_dir) else { continue };
        let plain = meta.is_dir()
            && Some(meta.uid()) == effective_uid()
            && std::fs::read_to_string(git_dir.join("config"))
                .is_ok_and(|config| !config.to_ascii_lowercase().contains("worktree"));
        return if plain { WorkTree::Plain(dir.to_path_buf()) } else { WorkTree::Other };
    }
    WorkTree::Outside
}

/// The entries of the index of the plain work tree at `work_tree` ([`find`]); `None` when
/// the index is in a form left to libgit2, or cannot be read.
pub fn read(work_tree: &Path) -> Option<Vec<Entry>> {
    match std::fs::read(work_tree.join(".git/index")) {
        Ok(bytes) => parse(&bytes),
        // No index yet (nothing ever added): nothing is tracked, as libgit2 says too.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Err(_) => None,
    }
}

/// The user upkeep runs as, from `/proc/self/status` (std does not expose `geteuid`, and the
/// crate has no `unsafe`). libgit2 refuses a repository someone else owns unless git's
/// `safe.directory` allows it; that case is left to libgit2.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Size of an entry before its path: ten 32-bit fields, a 20-byte object id, 16 bits of flags.
const FIXED: usize = 40 + 20 + 2;
/// Flag bits: an extended flags word follows (version 3), and the path's length (capped).
const EXTENDED: u16 = 0x4000;
const NAME_MASK: u16 = 0x0fff;

/// Parse an index file; `None` for anything but a well-formed version 2 or 3 index with
/// SHA-1 object ids and only optional extensions.
pub fn parse(bytes: &[u8]) -> Option<Vec<Entry>> {
    if bytes.get(..4)? != b"DIRC" {
        return None;
    }
    let version = be32(bytes, 4)?;
    if !(2..=3).contains(&version) {
        return None;
    }
    let count = usize::try_from(be32(bytes, 8)?).ok()?;
    // The trailing checksum; every entry takes at least 64 bytes, so a count the file cannot
    // hold is refused before anything is allocated for it.
    let body_end = bytes.len().checked_sub(20)?;
    if count > body_end / 64 {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    let mut at = 12;
    for _ in 0..count {
        let (entry, next) = parse_entry(bytes, at, body_end)?;
        entries.push(entry);
        at = next;
    }
    extensions_are_optional(&bytes[at..body_end]).then_some(entries)
}

/// One entry at `at`; returns it and where the next one starts.
fn parse_entry(bytes: &[u8], at: usize, end: usize) -> Option<(Entry, usize)> {
    let mode = be32(bytes, at + 24)?;
    let flags = u16::from_be_bytes(bytes.get(at + 60..at + 62)?.try_into().ok()?);
    let mut path_at = at + FIXED;
    if flags & EXTENDED != 0 {
        path_at += 2;
    }
    let nul = bytes.get(path_at..end)?.iter().position(|&b| b == 0)?;
    let path = bytes[path_at..path_at + nul].to_vec();
    let length = usize::from(flags & NAME_MASK);
    if path.is_empty() || (length < usize::from(NAME_MASK) && length != path.len()) {
        return None;
    }
    // Entries are padded with 1 to 8 NULs to a multiple of 8 bytes from their start.
    let unpadded = path_at + nul - at;
    let next = at + (unpadded + 8) / 8 * 8;
    if next > end || bytes[path_at + nul..next].iter().any(|&b| b != 0) {
        return None;
    }
    Some((Entry { mode, path }, next))
}

/// Do the extensions (a four-byte signature, a 32-bit size, the data) fill `rest` exactly,
/// and may each be ignored? Git marks those with an upper-case first letter; a lower-case one
/// (`link` for a split index, `sdir` for a sparse one) changes what the entries mean.
fn extensions_are_optional(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        let (Some(signature), Some(size)) = (rest.get(..4), be32(rest, 4)) else { return false };
        if !signature[0].is_ascii_uppercase() {
            return false;
        }
        let Some(next) = usize::try_from(size).ok().and_then(|s| s.checked_add(8)).filter(|&n| n <= rest.len()) else {
            return false;
        };
        rest = &rest[next..];
    }
    true
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index of version `version` holding `entries` (mode, path, extended flags).
    fn index(version: u32, entries: &[(u32, &str, bool)], extensions: &[u8]) -> Vec<u8> {
        let mut out = b"DIRC".to_vec();
        out.extend(version.to_be_bytes());
        out.extend(u32::try_from(entries.len()).unwrap_or(0).to_be_bytes());
        for &(mode, path, extended) in entries {
            let start = out.len();
            out.extend([0u8; 24]);
            out.extend(mode.to_be_bytes());
            out.extend([0u8; 12 + 20]);
            let length = u16::try_from(path.len().min(0xfff)).unwrap_or(0);
            out.extend((length | if extended { EXTENDED } else { 0 }).to_be_bytes());
            if extended {
                out.extend(0x2000u16.to_be_bytes());
            }
            out.extend(path.as_bytes());
            let len = out.len() - start;
            out.extend(std::iter::repeat_n(0u8, (len + 8) / 8 * 8 - len));
        }
        out.extend(extensions);
        out.extend([0u8; 20]);
        out
    }

    #[test]
    fn entries_are_read_with_their_modes_and_paths() {
        let long = "a/".repeat(2100) + "x.yaml";
        let bytes = index(3, &[(0o100644, "a.yaml", false), (0o120000, "link", true), (0o100644, &long, false)], b"");
        let entries = parse(&bytes).unwrap_or_default();
        let read: Vec<(u32, String)> =
            entries.into_iter().map(|e| (e.mode, String::from_utf8(e.path).unwrap_or_default())).collect();
        assert_eq!(read, vec![(0o100644, "a.yaml".into()), (0o120000, "link".into()), (0o100644, long)]);
    }

    #[test]
    fn optional_extensions_are_skipped_and_others_are_left_to_libgit2() {
        let tree = [b"TREE".as_slice(), &3u32.to_be_bytes(), b"abc"].concat();
        assert_eq!(parse(&index(2, &[(0o100644, "a", false)], &tree)).map(|e| e.len()), Some(1));
        let link = [b"link".as_slice(), &0u32.to_be_bytes()].concat();
        assert_eq!(parse(&index(2, &[(0o100644, "a", false)], &link)), None);
        let short = [b"TREE".as_slice(), &99u32.to_be_bytes()].concat();
        assert_eq!(parse(&index(2, &[(0o100644, "a", false)], &short)), None);
    }

    #[test]
    fn anything_that_does_not_add_up_is_refused() {
        let good = index(2, &[(0o100644, "a.yaml", false), (0o100644, "b.yaml", false)], b"");
        assert!(parse(&good).is_some());
        assert_eq!(parse(&index(4, &[(0o100644, "a", false)], b"")), None, "version 4 compresses paths");
        for cut in 0..good.len() {
            assert_eq!(parse(&good[..cut]), None, "truncated at {cut}");
        }
        let mut count = good.clone();
        count[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse(&count), None);
        let mut padding = good.clone();
        padding[12 + FIXED + 6] = b'!';
        assert_eq!(parse(&padding), None);
        let mut length = good;
        length[12 + 61] = 3;
        assert_eq!(parse(&length), None);
    }
}
