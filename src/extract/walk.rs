//! Which files of a repository are scanned.
//!
//! Inside a git work tree the files are the ones git tracks (what Flux would see after a clone),
//! read from the index with git2; outside one, every file, honouring `.gitignore`/`.ignore`
//! files the way ripgrep does. Either way symlinks are never followed, so a link cannot lead the
//! scan out of the root, and files over the size cap are skipped with a warning.

use std::path::{Path, PathBuf};

use super::{git_index, plain_walk};
use crate::model::FileError;

/// Default size cap: the biggest real manifest (Flux's gotk-components.yaml) is under 1 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// Default wall-clock budget for parsing one file. Parsing is linear (a release build reads
/// 10 MB of one-line flow mapping in a fraction of a second), so this only bites when something
/// is wrong; then that file is reported by name and the scan goes on without it.
pub const DEFAULT_FILE_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// A file chosen for scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Absolute (or root-joined) path to read.
    pub path: PathBuf,
    /// Path relative to the root, `/`-separated: the name users see.
    pub relative: String,
}

/// The files to scan, and the files passed over with a warning.
#[derive(Debug, Default)]
pub struct Listing {
    /// YAML files to read, sorted by relative path.
    pub files: Vec<Candidate>,
    /// Oversized files and unreadable directory entries.
    pub warnings: Vec<FileError>,
    /// `.sourceignore` files: what Flux leaves out of a source's artifact.
    pub source_ignores: Vec<Candidate>,
}

/// The file source-controller reads ignore rules from.
const SOURCE_IGNORE: &str = ".sourceignore";

fn is_listed(name: &str) -> bool {
    is_yaml(name) || name == SOURCE_IGNORE
}

/// Why a root could not be listed at all.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The root does not exist or is not a directory.
    #[error("cannot scan {path}: {source}")]
    Root {
        /// The root as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Is this a file name upkeep reads?
pub fn is_yaml(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// List the YAML files under `root`.
pub fn list(root: &Path, max_size: u64) -> Result<Listing, WalkError> {
    let meta =
        std::fs::metadata(root).map_err(|source| WalkError::Root { path: root.display().to_string(), source })?;
    if !meta.is_dir() {
        return Err(WalkError::Root {
            path: root.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory"),
        });
    }
    let mut listing = match tracked(root) {
        Ok(Some(paths)) => from_paths(root, paths, max_size),
        Ok(None) => walk(root, max_size),
        // Said, then the next best thing: every file, as outside a work tree.
        Err(message) => {
            let mut listing = walk(root, max_size);
            listing.warnings.push(FileError { file: String::new(), line: None, column: None, message });
            listing
        }
    };
    listing.files.sort_by(|a, b| a.relative.cmp(&b.relative));
    listing.source_ignores.sort_by(|a, b| a.relative.cmp(&b.relative));
    // By file, then message: the parallel walk finds them in no fixed order.
    listing.warnings.sort_by(|a, b| (&a.file, &a.message).cmp(&(&b.file, &b.message)));
    Ok(listing)
}

/// Relative paths git tracks under `root`, or `None` when `root` is not in a work tree. An
/// index that cannot be read is an error: the files git tracks are then unknown.
fn tracked(root: &Path) -> Result<Option<Vec<String>>, String> {
    // The index read directly when it is the plain case; libgit2 for everything else. (Its
    // start-up loads every system CA certificate: time and memory a list of paths has no use
    // for; see `git_index`.) Both look from the real path: a root spelt through `..` or a
    // symlink from inside a work tree, but not in one, is outside.
    let Some(root) = root.canonicalize().ok() else { return Ok(None) };
    match git_index::find(&root) {
        git_index::WorkTree::Outside => return Ok(None),
        git_index::WorkTree::Plain(work_tree) => {
            if let (Some(entries), Some(prefix)) = (git_index::read(&work_tree), prefix_in(&root, &work_tree)) {
                return Ok(Some(listed(entries.into_iter().map(|e| (e.mode, e.path)), &prefix)));
            }
        }
        git_index::WorkTree::Other => {}
    }
    let Ok(repo) = git2::Repository::discover(&root) else { return Ok(None) };
    let Some(workdir) = repo.workdir().and_then(|w| w.canonicalize().ok()) else { return Ok(None) };
    let Some(prefix) = prefix_in(&root, &workdir) else { return Ok(None) };
    let index = repo.index().map_err(|e| {
        format!(
            "the git index of {} could not be read ({}): every file under the root was scanned instead, untracked ones included",
            workdir.display(),
            e.message()
        )
    })?;
    Ok(Some(listed(index.iter().map(|e| (e.mode, e.path)), &prefix)))
}

/// `root`'s place in the work tree, as a path prefix (`apps/` or empty).
fn prefix_in(root: &Path, work_tree: &Path) -> Option<String> {
    let prefix = root.strip_prefix(work_tree).ok()?.to_string_lossy().replace('\\', "/");
    Some(if prefix.is_empty() { String::new() } else { format!("{prefix}/") })
}

/// The index entries under `prefix` that upkeep reads, relative to it: files only (neither
/// symlinks nor submodules), with UTF-8 names.
fn listed(entries: impl Iterator<Item = (u32, Vec<u8>)>, prefix: &str) -> Vec<String> {
    const LINK: u32 = 0o120000;
    const GITLINK: u32 = 0o160000;
    entries
        .filter(|(mode, _)| mode & 0o170000 != LINK && mode & 0o170000 != GITLINK)
        .filter_map(|(_, path)| String::from_utf8(path).ok())
        .filter_map(|p| p.strip_prefix(prefix).map(str::to_string))
        .filter(|p| p.rsplit('/').next().is_some_and(is_listed))
        .collect()
}

/// The tracked files as candidates, each looked at on disk: on every core for a large
/// repository (4,000 files and their 2,000 folders took 22-26 ms on one). The index lists
/// paths in order, so each share is whole folders, and its own cache of real folders serves.
fn from_paths(root: &Path, paths: Vec<String>, max_size: u64) -> Listing {
    let chunk = super::load::chunking(paths.len());
    shared_out(root, paths, max_size, chunk)
}

/// [`from_paths`] with `chunk` paths a thread, or all of them on this one. The paths are
/// handed over, not copied: each share's are its candidates' names.
fn shared_out(root: &Path, mut paths: Vec<String>, max_size: u64, chunk: Option<usize>) -> Listing {
    let Some(chunk) = chunk.filter(|&c| c > 0) else { return looked_at(root, paths, max_size) };
    let mut parts = Vec::new();
    while paths.len() > chunk {
        let rest = paths.split_off(chunk);
        parts.push(std::mem::replace(&mut paths, rest));
    }
    parts.push(paths);
    std::thread::scope(|s| {
        let handles: Vec<_> = parts.into_iter().map(|part| s.spawn(move || looked_at(root, part, max_size))).collect();
        let mut listing = Listing::default();
        for handle in handles {
            let part = super::load::joined(handle);
            listing.files.extend(part.files);
            listing.warnings.extend(part.warnings);
            listing.source_ignores.extend(part.source_ignores);
        }
        listing
    })
}

/// [`from_paths`] for one share of the paths.
fn looked_at(root: &Path, paths: Vec<String>, max_size: u64) -> Listing {
    let mut listing = Listing::default();
    let mut real_dirs = std::collections::HashSet::new();
    for relative in paths {
        let path = root.join(&relative);
        // A tracked file may be deleted in the work tree, or sit under a directory that is a
        // symlink; symlink_metadata on each component is what keeps the scan inside the root.
        if crosses_symlink(root, &relative, &mut real_dirs) {
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => push_sized(&mut listing, path, relative, m.len(), max_size),
            // Tracked but not on disk (a sparse checkout, a local delete): what it holds is
            // unknown, which is an error, not an absence: nothing may be closed for lack of it.
            Err(_) => listing.warnings.push(FileError {
                file: relative,
                line: None,
                column: None,
                message: "tracked by git but missing from the work tree (sparse checkout, or deleted and not committed): not scanned".into(),
            }),
            _ => continue,
        }
    }
    listing
}

/// Is any component of `relative` a symlink? Folders already found to be real are not looked
/// at again (`real_dirs`), so a repository costs one `lstat` per folder and file, not one per
/// path component of every file.
fn crosses_symlink(root: &Path, relative: &str, real_dirs: &mut std::collections::HashSet<String>) -> bool {
    let mut path = root.to_path_buf();
    let mut end = 0;
    relative.split('/').any(|part| {
        end += part.len();
        let prefix = &relative[..end];
        end += 1;
        path.push(part);
        if real_dirs.contains(prefix) {
            return false;
        }
        let link = std::fs::symlink_metadata(&path).map(|m| m.file_type().is_symlink()).unwrap_or(false);
        if !link && prefix.len() < relative.len() {
            real_dirs.insert(prefix.to_string());
        }
        link
    })
}

/// Every file under `root`, honouring ignore files: listed plainly when none can apply (see
/// `plain_walk`), else by the `ignore` crate.
fn walk(root: &Path, max_size: u64) -> Listing {
    match plain_walk::files(root, is_listed, plain_walk::global_rules()) {
        Some(found) => sized(found, max_size),
        None => walk_with_ignore(root, max_size),
    }
}

/// The plain walk's files as a listing: each under the size cap a candidate, the others warned.
fn sized(found: Vec<plain_walk::Found>, max_size: u64) -> Listing {
    let mut listing = Listing::default();
    for (path, relative, size) in found {
        push_sized(&mut listing, path, relative, size, max_size);
    }
    listing
}

/// [`walk`] with the `ignore` crate. One thread: walking on two saved 25 ms on a repository of
/// 2,000 folders, but its threads cost about 3 MiB of peak memory on every scan.
fn walk_with_ignore(root: &Path, max_size: u64) -> Listing {
    let mut listing = Listing::default();
    let walker = ignore::WalkBuilder::new(root)
        .follow_links(false)
        .hidden(false)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                listing.warnings.push(FileError {
                    file: String::new(),
                    line: None,
                    column: None,
                    message: err.to_string(),
                });
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) || !is_listed(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else { continue };
        let relative = rel.to_string_lossy().replace('\\', "/");
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        push_sized(&mut listing, entry.path().to_path_buf(), relative, size, max_size);
    }
    listing
}

fn push_sized(listing: &mut Listing, path: PathBuf, relative: String, size: u64, max_size: u64) {
    if relative.rsplit('/').next() == Some(SOURCE_IGNORE) {
        listing.source_ignores.push(Candidate { path, relative });
    } else if size > max_size {
        listing.warnings.push(FileError {
            file: relative,
            line: None,
            column: None,
            message: format!("skipped: {size} bytes is over the {max_size}-byte cap (raise it with --max-file-size)"),
        });
    } else {
        listing.files.push(Candidate { path, relative });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
        for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).flatten() {
            let kind = entry.file_type().unwrap_or_else(|e| panic!("{e}"));
            if kind.is_dir() {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            } else if kind.is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    fn sorted(mut listing: Listing) -> Listing {
        listing.files.sort_by(|a, b| a.relative.cmp(&b.relative));
        listing.source_ignores.sort_by(|a, b| a.relative.cmp(&b.relative));
        listing.warnings.sort_by(|a, b| (&a.file, &a.message).cmp(&(&b.file, &b.message)));
        listing
    }

    /// The plain listing took place (no fallback) and equals the `ignore` walker's.
    fn same_as_ignore(root: &Path, max_size: u64) -> usize {
        // Three threads past the first thousand files, whatever the machine's cores.
        let found = plain_walk::files_on(root, is_listed, false, 3);
        let found = found.unwrap_or_else(|| panic!("{} fell back to the ignore walker", root.display()));
        let plain = sorted(sized(found, max_size));
        let ignore = sorted(walk_with_ignore(root, max_size));
        assert_eq!(plain.files, ignore.files, "{}", root.display());
        assert_eq!(plain.source_ignores, ignore.source_ignores);
        assert_eq!(plain.warnings, ignore.warnings);
        plain.files.len()
    }

    #[test]
    fn the_corpus_outside_git_lists_the_same_without_the_ignore_crate() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus");
        let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut listed = 0;
        for repo in std::fs::read_dir(&corpus).unwrap_or_else(|e| panic!("{e}")).flatten() {
            if repo.path().is_dir() {
                let copy = scratch.path().join(repo.file_name());
                copy_tree(&repo.path(), &copy);
                listed += same_as_ignore(&copy, DEFAULT_MAX_FILE_SIZE);
            }
        }
        assert!(listed > 500, "only {listed} files listed");
    }

    #[cfg(unix)]
    #[test]
    fn links_hidden_files_empty_folders_and_oversized_files_list_the_same() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        for (path, text) in [
            ("a.yaml", "a: 1\n"),
            (".hidden/b.yml", "b: 2\n"),
            ("deep/er/still/c.YAML", "c: 3\n"),
            ("big.yaml", "x: 0123456789\n"),
            ("notes.txt", "not listed\n"),
            ("apps/.sourceignore", "*.txt\n"),
        ] {
            let full = root.join(path);
            std::fs::create_dir_all(full.parent().unwrap_or(root)).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(full, text).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::create_dir_all(root.join("empty")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(root.join("a.yaml"), root.join("link.yaml")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(root.join("deep"), root.join("linked-folder")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same_as_ignore(root, 10), 3, "a, b and c; big.yaml is over the cap");
        assert_eq!(walk_with_ignore(root, 10).warnings.len(), 1);
    }

    /// Over a thousand files in folders of several depths: what is left after the first
    /// thousand is listed on every core.
    fn large_tree(root: &Path) {
        for n in 0..1_300 {
            let folder = root.join(format!("team-{}/app-{n}", n % 13));
            let deeper = if n % 5 == 0 { folder.join("overlays/prod") } else { folder.clone() };
            std::fs::create_dir_all(&deeper).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(folder.join("release.yaml"), format!("name: app-{n}\n")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(deeper.join("values.yml"), "x: 1\n").unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(folder.join("README.md"), "not listed\n").unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_large_tree_listed_on_every_core_lists_the_same() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        large_tree(dir.path());
        assert_eq!(same_as_ignore(dir.path(), DEFAULT_MAX_FILE_SIZE), 2_600);
        // Once more with a cap every release is over, so sizes from every thread count.
        assert_eq!(same_as_ignore(dir.path(), 8), 1_300, "the values files only");
    }

    /// A large work tree whose tracked files are looked at on every core gives what one core
    /// gives: a file deleted since, a folder swapped for a symlink, an oversized file.
    #[cfg(unix)]
    #[test]
    fn tracked_files_of_a_large_tree_are_looked_at_the_same_on_every_core() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        large_tree(root);
        std::fs::write(root.join("team-4/app-4/big.yaml"), "x".repeat(64)).unwrap_or_else(|e| panic!("{e}"));
        let repo = git2::Repository::init(root).unwrap_or_else(|e| panic!("{e}"));
        let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap_or_else(|e| panic!("{e}"));
        index.write().unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_file(root.join("team-7/app-7/release.yaml")).unwrap_or_else(|e| panic!("{e}"));
        // app-1000 holds a release and, in overlays/prod, a values file.
        std::fs::rename(root.join("team-12/app-1000"), root.join("moved")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(root.join("moved"), root.join("team-12/app-1000")).unwrap_or_else(|e| panic!("{e}"));
        let paths = match tracked(root) {
            Ok(Some(paths)) => paths,
            other => panic!("not tracked: {other:?}"),
        };
        // Shared out in three, whatever the machine's cores.
        let shared = sorted(shared_out(root, paths.clone(), 32, Some(paths.len().div_ceil(3))));
        let alone = sorted(looked_at(root, paths, 32));
        assert_eq!(shared.files, alone.files);
        assert_eq!(shared.warnings, alone.warnings);
        assert_eq!(shared.files.len(), 2_600 - 3, "the deleted file and the two behind the symlink");
        let warned: Vec<&str> = shared.warnings.iter().map(|w| w.file.as_str()).collect();
        assert_eq!(warned, ["team-4/app-4/big.yaml", "team-7/app-7/release.yaml"]);
    }

    #[test]
    fn an_ignore_file_deep_in_a_large_tree_hands_the_walk_to_the_ignore_crate() {
        for ignore_file in ["team-0/app-0/.gitignore", "team-12/app-25/overlays/.ignore", "team-6/app-1293/.git"] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            large_tree(dir.path());
            std::fs::write(dir.path().join(ignore_file), "values.yml\n").unwrap_or_else(|e| panic!("{e}"));
            assert!(plain_walk::files_on(dir.path(), is_listed, false, 3).is_none(), "{ignore_file}");
        }
    }

    #[test]
    fn an_ignore_file_anywhere_in_the_tree_hands_the_walk_to_the_ignore_crate() {
        for ignore_file in [".gitignore", "sub/.ignore", "nested/.git/HEAD"] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            for (path, text) in
                [("kept.yaml", "a: 1\n"), ("sub/skipped.yaml", "b: 2\n"), (ignore_file, "skipped.yaml\n")]
            {
                let full = dir.path().join(path);
                std::fs::create_dir_all(full.parent().unwrap_or(dir.path())).unwrap_or_else(|e| panic!("{e}"));
                std::fs::write(full, text).unwrap_or_else(|e| panic!("{e}"));
            }
            assert!(plain_walk::files(dir.path(), is_listed, false).is_none(), "{ignore_file}");
            assert_eq!(
                sorted(walk(dir.path(), DEFAULT_MAX_FILE_SIZE)).files,
                sorted(walk_with_ignore(dir.path(), DEFAULT_MAX_FILE_SIZE)).files
            );
        }
    }
}
