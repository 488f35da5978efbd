//! Which files a scan reads: tracked files in git, `.gitignore` elsewhere, never via symlinks.

use super::util::{REPOSITORY, helmrelease, scan_dir, tree};

fn ids(scan: &upkeep::extract::Scan) -> Vec<&str> {
    scan.dependencies.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn gitignore_is_respected_outside_git() {
    let a = helmrelease("kept", "1.0.0");
    let b = helmrelease("ignored", "1.0.0");
    let dir = tree(&[
        (".gitignore", b"generated/\n"),
        ("apps/a.yaml", a.as_bytes()),
        ("generated/b.yaml", b.as_bytes()),
        ("repo.yaml", REPOSITORY.as_bytes()),
    ]);
    assert_eq!(ids(&scan_dir(dir.path())), vec!["helmrelease/apps/kept"]);
}

#[cfg(unix)]
#[test]
fn symlinks_are_not_followed_out_of_the_root() {
    let outside = tree(&[("secret.yaml", helmrelease("outside", "9.9.9").as_bytes())]);
    let inside = tree(&[("in.yaml", helmrelease("inside", "1.0.0").as_bytes())]);
    std::os::unix::fs::symlink(outside.path(), inside.path().join("link")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(outside.path().join("secret.yaml"), inside.path().join("file-link.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&scan_dir(inside.path())), vec!["helmrelease/apps/inside"]);
}

/// In a git work tree the files come from the index, which records symlinks as links: a tracked
/// link to a file or a folder outside the root is still never read through.
#[cfg(unix)]
#[test]
fn tracked_symlinks_are_not_followed_out_of_the_root_either() {
    let outside = tree(&[("secret.yaml", helmrelease("outside", "9.9.9").as_bytes())]);
    let dir = tree(&[("in.yaml", helmrelease("inside", "1.0.0").as_bytes()), ("repo.yaml", REPOSITORY.as_bytes())]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(outside.path().join("secret.yaml"), dir.path().join("file-link.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = git2::Repository::init(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap_or_else(|e| panic!("{e}"));
    index.write().unwrap_or_else(|e| panic!("{e}"));
    assert!(index.get_path(std::path::Path::new("file-link.yaml"), 0).is_some(), "the link is tracked");
    assert_eq!(ids(&scan_dir(dir.path())), vec!["helmrelease/apps/inside"]);
}

#[test]
fn in_a_git_work_tree_only_tracked_files_are_scanned() {
    let dir = tree(&[
        ("clusters/tracked.yaml", helmrelease("tracked", "1.0.0").as_bytes()),
        ("clusters/untracked.yaml", helmrelease("untracked", "1.0.0").as_bytes()),
        ("clusters/repo.yaml", REPOSITORY.as_bytes()),
    ]);
    let repo = git2::Repository::init(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
    for path in ["clusters/tracked.yaml", "clusters/repo.yaml"] {
        index.add_path(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    }
    index.write().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&scan_dir(dir.path())), vec!["helmrelease/apps/tracked"]);
    // Scanning a sub-folder of the work tree reads the tracked files under it, paths relative to it.
    let sub = scan_dir(&dir.path().join("clusters"));
    assert_eq!(sub.dependencies[0].manifest.file, "tracked.yaml");
}

/// Flux's `.sourceignore` is not YAML, but it decides what a source's artifact holds: in a git
/// work tree the tracked one is read, and what it excludes is applied by no cluster.
#[test]
fn a_tracked_sourceignore_is_read_in_a_git_work_tree() {
    let sync = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  path: ./clusters/prod\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n";
    let (kept, drafted) = (helmrelease("kept", "1.0.0"), helmrelease("drafted", "1.0.0"));
    let dir = tree(&[
        (".sourceignore", b"drafts/\n"),
        ("clusters/prod/flux-system/gotk-sync.yaml", sync.as_bytes()),
        ("clusters/prod/apps/kept.yaml", kept.as_bytes()),
        ("clusters/prod/drafts/drafted.yaml", drafted.as_bytes()),
        ("clusters/prod/repo.yaml", REPOSITORY.as_bytes()),
    ]);
    let repo = git2::Repository::init(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap_or_else(|e| panic!("{e}"));
    index.write().unwrap_or_else(|e| panic!("{e}"));
    let scan = scan_dir(dir.path());
    let reason = |id: &str| super::util::reason(&scan, id);
    assert_eq!(reason("helmrelease/apps/kept"), None);
    assert_eq!(reason("helmrelease/apps/drafted"), Some("not-applied"));
}

/// A root spelt through `..` from inside a work tree but lying outside any: every file is
/// listed (the folder is not in git), and neither the index reader nor libgit2 is asked.
#[test]
fn a_root_reached_through_dotdot_from_a_work_tree_is_walked() {
    let repo = tree(&[("in-git.yaml", b"a: 1\n")]);
    git2::Repository::init(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let outside = tree(&[("apps/a.yaml", b"a: 1\n"), ("b.yml", b"b: 2\n")]);
    let name = outside.path().file_name().unwrap_or_default();
    let spelt = repo.path().join("..").join(name);
    let listing = upkeep::extract::walk::list(&spelt, upkeep::extract::walk::DEFAULT_MAX_FILE_SIZE)
        .unwrap_or_else(|e| panic!("{e}"));
    let files: Vec<&str> = listing.files.iter().map(|c| c.relative.as_str()).collect();
    assert_eq!(files, vec!["apps/a.yaml", "b.yml"]);
    assert!(listing.warnings.is_empty(), "{:?}", listing.warnings);
}
