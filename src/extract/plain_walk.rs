//! Listing a folder outside git that no ignore file touches, without the `ignore` crate.
//!
//! The `ignore` walker looks for `.gitignore`, `.ignore`, `.git` and `.git/info/exclude` in
//! every folder it enters: four failed `stat`s a folder, which on a repository of 2,000 folders
//! was a third of the walk and a quarter of the whole scan. `read_dir` already names every
//! entry of a folder, so an ignore file shows itself for free. This walker lists the common
//! case (no ignore file in the tree, above it or configured globally) and gives up the moment
//! it meets one, an unreadable folder or a name that is not UTF-8: the caller then walks with
//! `ignore`, which honours them the way ripgrep does, so the listing is never different.

use std::path::{Path, PathBuf};

/// A file found: where to read it, its path from the root (`/`-separated) and its size.
pub(super) type Found = (PathBuf, String, u64);

/// Names that make the `ignore` walker's answer differ from a plain listing.
const IGNORE_NAMES: [&str; 3] = [".gitignore", ".ignore", ".git"];

/// Files found before the rest of the walk is shared out over the cores. A thread costs about
/// a megabyte of peak memory (its stack and malloc arena), which a repository of a few hundred
/// files, listed in a few milliseconds, does not earn back; listing 4,000 files in 2,000
/// folders took 30 ms on one core, the scan's largest serial stage.
const SHARED_FROM: usize = 1_000;

/// A folder still to list: where it is, and its path from the root (`/`-separated).
type Folder = (PathBuf, String);

/// Every file under `root` whose name `wanted` accepts, or `None` when ignore rules may apply
/// or anything could not be read. `global_rules` is [`global_rules`]'s answer, passed in so
/// the tests hold the listing to the `ignore` walker's on any machine. The files come in no
/// particular order.
pub(super) fn files(root: &Path, wanted: impl Fn(&str) -> bool + Sync, global_rules: bool) -> Option<Vec<Found>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    files_on(root, wanted, global_rules, threads)
}

/// [`files`] on at most `threads` threads, this one included (the tests ask for several
/// whatever the machine has).
pub(super) fn files_on(
    root: &Path,
    wanted: impl Fn(&str) -> bool + Sync,
    global_rules: bool,
    threads: usize,
) -> Option<Vec<Found>> {
    if global_rules || rules_above(root) {
        return None;
    }
    let mut found = Vec::new();
    let mut folders = vec![(root.to_path_buf(), String::new())];
    // Alone until the repository shows itself large and there is work to share.
    while threads < 2 || found.len() < SHARED_FROM || folders.len() < threads {
        let Some(folder) = folders.pop() else { return Some(found) };
        list_folder(folder, &wanted, &mut folders, &mut found)?;
    }
    // Dealt out in turn: the stack holds the folders beside and above the one just listed,
    // siblings of alike size next to each other. This thread walks the first share.
    let mut shares: Vec<Vec<Folder>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, folder) in folders.into_iter().enumerate() {
        shares[i % threads].push(folder);
    }
    let mut shares = shares.into_iter();
    let mine = shares.next().unwrap_or_default();
    // Set by the first share to give up, so the others stop too: the `ignore` walker lists
    // the tree again anyway.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (wanted, stop) = (&wanted, &stop);
    let (mine, theirs) = std::thread::scope(|s| {
        let handles: Vec<_> = shares.map(|share| s.spawn(move || walk_all(share, wanted, stop))).collect();
        let mine = walk_all(mine, wanted, stop);
        let theirs: Vec<_> = handles.into_iter().map(super::load::joined).collect();
        (mine, theirs)
    });
    found.extend(mine?);
    for part in theirs {
        found.extend(part?);
    }
    Some(found)
}

/// Every file under these folders; `None`, and `stop` set, when one cannot be listed plainly
/// or another share has given up.
fn walk_all(
    mut folders: Vec<Folder>,
    wanted: &impl Fn(&str) -> bool,
    stop: &std::sync::atomic::AtomicBool,
) -> Option<Vec<Found>> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut found = Vec::new();
    while let Some(folder) = folders.pop() {
        if stop.load(Relaxed) || list_folder(folder, wanted, &mut folders, &mut found).is_none() {
            stop.store(true, Relaxed);
            return None;
        }
    }
    Some(found)
}

/// One folder's entries: its files to `found`, its folders to `folders`.
fn list_folder(
    (folder, relative): Folder,
    wanted: &impl Fn(&str) -> bool,
    folders: &mut Vec<Folder>,
    found: &mut Vec<Found>,
) -> Option<()> {
    for entry in std::fs::read_dir(&folder).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name().into_string().ok()?;
        if IGNORE_NAMES.contains(&name.as_str()) {
            return None;
        }
        let path_from_root = if relative.is_empty() { name.clone() } else { format!("{relative}/{name}") };
        // Not followed: a symlink is neither a folder nor a file here, as in the `ignore`
        // walker without `follow_links`.
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            folders.push((entry.path(), path_from_root));
        } else if kind.is_file() && wanted(&name) {
            found.push((entry.path(), path_from_root, entry.metadata().ok()?.len()));
        }
    }
    Some(())
}

/// Is there an ignore file, or a repository, in a folder above the root? The `ignore` walker
/// reads those of every parent; both spellings of the root are looked at.
fn rules_above(root: &Path) -> bool {
    let spellings = [std::path::absolute(root).ok(), root.canonicalize().ok()];
    spellings
        .iter()
        .flatten()
        .flat_map(|path| path.ancestors().skip(1))
        .any(|dir| IGNORE_NAMES.iter().any(|name| std::fs::symlink_metadata(dir.join(name)).is_ok()))
}

/// May a global gitignore apply? Git's default one exists, or a git config names one
/// (`core.excludesFile`).
pub(super) fn global_rules() -> bool {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg =
        std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".config")));
    let default_file = xdg.as_ref().map(|x| x.join("git/ignore"));
    let configs =
        [xdg.map(|x| x.join("git/config")), home.map(|h| h.join(".gitconfig")), Some(PathBuf::from("/etc/gitconfig"))];
    default_file.is_some_and(|f| f.exists())
        || configs.iter().flatten().any(|config| {
            std::fs::read_to_string(config).is_ok_and(|text| text.to_ascii_lowercase().contains("excludesfile"))
        })
}
