//! Issue 13: the git index read directly (`src/extract/git_index.rs`) lists exactly what
//! libgit2 lists, or declines: on this repository's own index, and on repositories written by
//! libgit2 with the entries that make an index awkward (symlinks, submodules, conflicts,
//! intent-to-add entries that make it version 3, names longer than the length field holds).

use std::path::Path;

use upkeep::extract::git_index::{self, Entry, WorkTree};

use super::util::tree;

/// libgit2's entries for the work tree at `dir`.
fn libgit2_entries(dir: &Path) -> Vec<Entry> {
    let repo = git2::Repository::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let index = repo.index().unwrap_or_else(|e| panic!("{e}"));
    index.iter().map(|e| Entry { mode: e.mode, path: e.path }).collect()
}

fn entry(id: git2::Oid, path: &str, mode: u32, stage: u16, extended: u16) -> git2::IndexEntry {
    git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: (stage << 12) | u16::try_from(path.len().min(0xfff)).unwrap_or(0xfff),
        flags_extended: extended,
        path: path.as_bytes().to_vec(),
    }
}

#[test]
fn this_repositorys_own_index_reads_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().unwrap_or_else(|e| panic!("{e}"));
    let WorkTree::Plain(work_tree) = git_index::find(&root) else {
        panic!("{} is not in a plain work tree", root.display())
    };
    let ours =
        git_index::read(&work_tree).unwrap_or_else(|| panic!("the index of {} was declined", work_tree.display()));
    let theirs = libgit2_entries(&work_tree);
    assert!(ours.len() > 1_000, "only {} entries", ours.len());
    assert!(ours == theirs, "{} entries read, libgit2 has {}", ours.len(), theirs.len());
}

#[test]
fn awkward_entries_read_the_same_and_a_work_tree_is_found_from_below() {
    let dir = tree(&[("apps/a.yaml", b"a: 1\n"), ("apps/deep/b.yml", b"b: 2\n"), ("top.yaml", b"c: 3\n")]);
    let repo = git2::Repository::init(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap_or_else(|e| panic!("{e}"));
    let id = repo.blob(b"x: 1\n").unwrap_or_else(|e| panic!("{e}"));
    let long = format!("{}/long.yaml", "x".repeat(5000));
    for e in [
        entry(id, "link.yaml", 0o120000, 0, 0),
        entry(id, "vendor/sub", 0o160000, 0, 0),
        entry(id, "conflict.yaml", 0o100644, 1, 0),
        entry(id, "conflict.yaml", 0o100644, 2, 0),
        entry(id, "conflict.yaml", 0o100644, 3, 0),
        // Intent to add (`git add -N`): an extended flag, so libgit2 writes version 3.
        entry(id, "planned.yaml", 0o100644, 0, 1 << 13),
        entry(id, &long, 0o100755, 0, 0),
    ] {
        index.add(&e).unwrap_or_else(|err| panic!("{}: {err}", String::from_utf8_lossy(&e.path)));
    }
    index.write().unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(dir.path().join(".git/index")).unwrap_or_default();
    assert_eq!(bytes.get(4..8), Some(3u32.to_be_bytes().as_slice()), "the index should be version 3");

    let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(git_index::find(&root.join("apps/deep")), WorkTree::Plain(root.clone()));
    let ours = git_index::read(&root).unwrap_or_else(|| panic!("declined"));
    assert_eq!(ours, libgit2_entries(&root));
    assert_eq!(ours.iter().filter(|e| e.path == b"conflict.yaml").count(), 3);
}

#[test]
fn what_is_not_the_plain_case_is_left_to_libgit2() {
    // A worktree or submodule's `.git` is a file naming the real one.
    let linked = tree(&[(".git", b"gitdir: /somewhere/else\n"), ("a.yaml", b"a: 1\n")]);
    let root = linked.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(git_index::find(&root), WorkTree::Other);
    // `core.worktree` puts the files somewhere else.
    let dir = tree(&[("a.yaml", b"a: 1\n")]);
    let repo = git2::Repository::init(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    repo.config().and_then(|mut c| c.set_str("core.worktree", "/elsewhere")).unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(git_index::find(&root), WorkTree::Other);
    // A repository with nothing added yet tracks nothing.
    let empty = tree(&[("a.yaml", b"a: 1\n")]);
    git2::Repository::init(empty.path()).unwrap_or_else(|e| panic!("{e}"));
    let root = empty.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(git_index::find(&root), WorkTree::Plain(root.clone()));
    assert_eq!(git_index::read(&root), Some(Vec::new()));
    // Outside any work tree (a temporary folder is not in one here).
    let outside = tree(&[("a.yaml", b"a: 1\n")]);
    let root = outside.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(git_index::find(&root), WorkTree::Outside);
}
