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

/// Every file under `root` whose name `wanted` accepts, or `None` when ignore rules may apply
/// or anything could not be read. `global_rules` is [`global_rules`]'s answer, passed in so
/// the tests hold the listing to the `ignore` walker's on any machine.
pub(super) fn files(root: &Path, wanted: impl Fn(&str) -> bool, global_rules: bool) -> Option<Vec<Found>> {
    if global_rules || rules_above(root) {
        return None;
    }
    let mut found = Vec::new();
    let mut folders = vec![(root.to_path_buf(), String::new())];
    while let Some((folder, relative)) = folders.pop() {
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
    }
    Some(found)
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
