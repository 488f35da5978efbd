//! Which files a Flux source leaves out of its artifact: source-controller's ignore rules.
//!
//! source-controller archives a GitRepository without the files its ignore rules match, so a
//! Kustomization never sees them (fluxcd/pkg `sourceignore/sourceignore.go`, source-controller
//! `docs/spec/v1/gitrepositories.md` "Excluding files"). The rules, lowest priority first:
//!
//! 1. the defaults: VCS files (`.git/`, `.gitignore`, ...), CI folders and files (`.github/`,
//!    `.circleci/`, `.gitlab-ci.yml`, ...) and `**/.sops.yaml`, `**/.flux.yaml`, ...;
//! 2. every `.sourceignore` file in the repository, each scoped to its own folder;
//! 3. the GitRepository's `spec.ignore`, in the same gitignore format.
//!
//! The last rule that matches decides, as in gitignore. `flux push artifact` (the OCI artifacts
//! CI pushes) reads `.sourceignore` the same way, so OCI sources get 1 and 2.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// source-controller's `ExcludeVCS`, `ExcludeCI` and `ExcludeExtra`, in that order.
const DEFAULTS: &[&str] = &[
    ".git/",
    ".gitignore",
    ".gitmodules",
    ".gitattributes",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.goreleaser.brew.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
    "**/.golangci.yaml",
];

/// A made-up absolute root: the `ignore` crate matches absolute paths under a root, and the
/// scan's paths are relative.
const ROOT: &str = "/flux-source";

/// The ignore rules of one source.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    /// `(folder the rules are scoped to, rules)`, lowest priority first.
    layers: Vec<(String, Gitignore)>,
    /// Folders already decided: every file below a folder shares its answer, so each folder is
    /// matched once, keeping a scan linear in the number of files.
    folders: RefCell<HashMap<String, bool>>,
}

impl IgnoreRules {
    /// The rules of a source: the defaults, the repository's `.sourceignore` files
    /// (`(folder, text)`), then `spec.ignore` if the source has one.
    pub fn new(source_ignores: &[(String, String)], spec_ignore: Option<&str>) -> IgnoreRules {
        let mut layers = vec![(String::new(), layer("", DEFAULTS.iter().copied()))];
        let mut files: Vec<&(String, String)> = source_ignores.iter().collect();
        // Shallow folders first: a deeper `.sourceignore` is more specific and wins.
        files.sort_by_key(|(dir, _)| (dir.matches('/').count() + usize::from(!dir.is_empty()), dir.clone()));
        for (dir, text) in files {
            layers.push((dir.clone(), layer(dir, text.lines())));
        }
        if let Some(text) = spec_ignore {
            layers.push((String::new(), layer("", text.lines())));
        }
        IgnoreRules { layers, folders: RefCell::default() }
    }

    /// Is `relative` (a file, or a folder when `is_dir`) left out of the artifact? Everything
    /// below an ignored folder is, as in gitignore: a file cannot be re-included under it.
    pub fn is_ignored(&self, relative: &str, is_dir: bool) -> bool {
        if is_dir {
            return self.folder_ignored(relative);
        }
        let parent = relative.rfind('/').map(|i| &relative[..i]);
        parent.is_some_and(|p| self.folder_ignored(p)) || self.matches(relative, false)
    }

    fn folder_ignored(&self, folder: &str) -> bool {
        if folder.is_empty() {
            return false;
        }
        if let Some(&known) = self.folders.borrow().get(folder) {
            return known;
        }
        let parent = folder.rfind('/').map_or("", |i| &folder[..i]);
        let ignored = self.folder_ignored(parent) || self.matches(folder, true);
        self.folders.borrow_mut().insert(folder.to_string(), ignored);
        ignored
    }

    /// The path's own rules, parents aside: the last layer that matches decides.
    fn matches(&self, relative: &str, is_dir: bool) -> bool {
        let mut ignored = false;
        for (dir, rules) in &self.layers {
            if !(dir.is_empty() || relative.strip_prefix(dir.as_str()).is_some_and(|r| r.starts_with('/'))) {
                continue;
            }
            let m = rules.matched(Path::new(ROOT).join(relative), is_dir);
            if m.is_ignore() {
                ignored = true;
            } else if m.is_whitelist() {
                ignored = false;
            }
        }
        ignored
    }
}

fn layer<'a>(dir: &str, lines: impl Iterator<Item = &'a str>) -> Gitignore {
    let root: PathBuf = if dir.is_empty() { PathBuf::from(ROOT) } else { Path::new(ROOT).join(dir) };
    let mut builder = GitignoreBuilder::new(&root);
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A pattern the gitignore syntax refuses matches nothing, as in go-git.
        let _ = builder.add_line(None, line);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_leave_out_ci_and_sops_config() {
        let rules = IgnoreRules::new(&[], None);
        assert!(rules.is_ignored(".github/workflows/ci.yaml", false));
        assert!(rules.is_ignored("kubernetes/.sops.yaml", false));
        assert!(!rules.is_ignored("kubernetes/apps/app.yaml", false));
    }

    #[test]
    fn spec_ignore_excludes_all_but_a_folder() {
        let rules = IgnoreRules::new(&[], Some("# exclude all\n/*\n# include gitops dirs\n!/kubernetes\n"));
        assert!(!rules.is_ignored("kubernetes/main/apps/x/ks.yaml", false));
        assert!(rules.is_ignored(".archive/kubernetes/x/ks.yaml", false));
        assert!(rules.is_ignored("README.yaml", false));
    }

    #[test]
    fn a_sourceignore_is_scoped_to_its_folder() {
        let rules = IgnoreRules::new(&[("apps".into(), "*.tmpl.yaml\n".into())], None);
        assert!(rules.is_ignored("apps/x/a.tmpl.yaml", false));
        assert!(!rules.is_ignored("infra/a.tmpl.yaml", false));
    }
}
