//! `upkeep run` end to end with the local forge: real git repositories in tempdirs, a local bare
//! remote, the bundled example's offline mirror, and every scenario a maintainer cares about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::util::fixture;

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn sig(name: &str) -> git2::Signature<'static> {
    git2::Signature::now(name, &format!("{}@example.com", name.to_lowercase())).unwrap()
}

/// Commit every file of the work tree on the checked-out branch.
pub(crate) fn commit_all(repo: &git2::Repository, message: &str, who: &str) -> git2::Oid {
    let mut index = repo.index().unwrap();
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let parents: Vec<git2::Commit> = repo.head().ok().and_then(|h| h.peel_to_commit().ok()).into_iter().collect();
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    repo.commit(Some("HEAD"), &sig(who), &sig(who), message, &tree, &refs).unwrap()
}

pub(crate) struct Sandbox {
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) repo: PathBuf,
    cache: PathBuf,
}

impl Sandbox {
    /// The bundled example as a git repository, with the mirror its upkeep.yaml points at.
    pub(crate) fn example() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let repo = root.join("repo");
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example"), &repo);
        for part in ["charts.longhorn.io", "kubernetes.github.io", "oci", "github"] {
            copy_dir(&fixture(&format!("mirror/{part}")), &root.join("fixtures/mirror").join(part));
        }
        let git = git2::Repository::init_opts(&repo, git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
        commit_all(&git, "initial", "Maintainer");
        Sandbox { cache: root.join("cache"), _dir: dir, root, repo }
    }

    pub(crate) fn git(&self) -> git2::Repository {
        git2::Repository::open(&self.repo).unwrap()
    }

    pub(crate) fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.try_run(args, env);
        assert!(
            out.status.success(),
            "upkeep run failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `upkeep run` on the sandbox, successful or not.
    pub(crate) fn try_run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let repo = self.repo.display().to_string();
        let all: Vec<&str> = ["run", repo.as_str()].into_iter().chain(args.iter().copied()).collect();
        super::verify_support::upkeep_in(&self.root, &self.repo, &all, env)
    }

    pub(crate) fn branches(&self) -> BTreeMap<String, git2::Oid> {
        upkeep_branches(&self.git())
    }

    /// Every file upkeep keeps under .upkeep, with its content.
    fn forge_files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.repo.join(".upkeep")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.insert(
                        e.path().strip_prefix(&self.repo).unwrap().display().to_string(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    );
                }
            }
        }
        out
    }

    fn pr(&self, number: u64) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.repo.join(format!(".upkeep/prs/{number}.json"))).unwrap())
            .unwrap()
    }

    fn set_pr(&self, number: u64, key: &str, value: serde_json::Value) {
        let mut pr = self.pr(number);
        pr[key] = value;
        std::fs::write(self.repo.join(format!(".upkeep/prs/{number}.json")), pr.to_string()).unwrap();
    }

    pub(crate) fn main_tip(&self) -> git2::Oid {
        self.git().refname_to_id("refs/heads/main").unwrap()
    }
}

pub(crate) const LONGHORN: &str = "upkeep/helmrelease-longhorn-system-longhorn";

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn a_first_run_opens_one_pr_per_update_and_a_second_changes_nothing() {
    let sb = Sandbox::example();
    let first = sb.run(&[], &[]);
    let text = stdout(&first);
    assert!(text.contains("PRs opened: upkeep/helmrelease-cert-manager-cert-manager, upkeep/helmrelease-ingress-nginx-ingress-nginx, upkeep/helmrelease-longhorn-system-longhorn, upkeep/k3s-clusters-home"), "{text}");
    assert!(
        text.contains("held: `flux-components/clusters/home/flux-system` is generated")
            && text.contains("flux install --export --components=source-controller"),
        "{text}"
    );
    let branches = sb.branches();
    assert_eq!(branches.len(), 4);
    // Every branch is one upkeep commit on main's tip, with its trailer.
    let git = sb.git();
    for tip in branches.values() {
        let c = git.find_commit(*tip).unwrap();
        assert_eq!(c.parent_id(0).unwrap(), sb.main_tip());
        assert!(c.message().unwrap().contains("\nUpkeep-Update: "));
        assert_eq!(c.author().name().unwrap(), "upkeep[bot]");
    }
    let longhorn = std::fs::read_to_string(sb.repo.join(".upkeep/prs/3.md")).unwrap();
    insta::assert_snapshot!("pr-body-longhorn", longhorn);
    let dashboard = std::fs::read_to_string(sb.repo.join(".upkeep/dashboard.md")).unwrap();
    insta::assert_snapshot!("dashboard-example", dashboard);
    let k3s = std::fs::read_to_string(sb.repo.join(".upkeep/prs/4.md")).unwrap();
    insta::assert_snapshot!("pr-body-k3s", k3s);

    let files = sb.forge_files();
    let second = sb.run(&[], &[]);
    let text = stdout(&second);
    assert!(
        text.contains("branches written: none")
            && text.contains("PRs opened: none")
            && text.contains("PRs updated: none"),
        "{text}"
    );
    assert_eq!(sb.branches(), branches, "no commit");
    assert_eq!(sb.forge_files(), files, "no forge write");
    let git = sb.git();
    let statuses = git.statuses(None).unwrap();
    let dirty: Vec<String> = statuses
        .iter()
        .filter(|s| !s.status().contains(git2::Status::IGNORED))
        .map(|s| format!("{:?} {}", s.status(), s.path().unwrap_or("")))
        .collect();
    assert!(dirty.is_empty(), "the work tree is untouched: {dirty:?}");
}

#[test]
fn a_newer_upstream_version_updates_the_existing_pr() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    let before = sb.branches()[LONGHORN];
    let index = sb.root.join("fixtures/mirror/charts.longhorn.io/index.yaml");
    let text = std::fs::read_to_string(&index).unwrap();
    let newer = "  longhorn:\n  - apiVersion: v1\n    created: \"2024-03-20T00:00:00Z\"\n    kubeVersion: '>=1.21.0-0'\n    name: longhorn\n    urls:\n    - https://github.com/longhorn/charts/releases/download/longhorn-1.5.5/longhorn-1.5.5.tgz\n    version: 1.5.5\n";
    std::fs::write(&index, text.replacen("  longhorn:\n", newer, 1)).unwrap();
    let out = sb.run(&[], &[]);
    assert!(stdout(&out).contains(&format!("PRs updated: {LONGHORN}")), "{}", stdout(&out));
    assert_eq!(sb.pr(3)["title"], "chore(deps): update longhorn to 1.5.5");
    assert_ne!(sb.branches()[LONGHORN], before);
    assert!(!sb.repo.join(".upkeep/prs/5.json").exists(), "no new PR");
}

#[test]
fn a_moved_default_branch_rebases_branches_only_upkeep_wrote_and_leaves_human_work_alone() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    let git = sb.git();
    // A maintainer commits on the longhorn branch...
    let human_tip = {
        let tip = git.find_commit(sb.branches()[LONGHORN]).unwrap();
        let tree = tip.tree().unwrap();
        let mut builder = git.treebuilder(Some(&tree)).unwrap();
        let blob = git.blob(b"notes\n").unwrap();
        builder.insert("NOTES.md", blob, 0o100644).unwrap();
        let tree = git.find_tree(builder.write().unwrap()).unwrap();
        let oid =
            git.commit(None, &sig("Maintainer"), &sig("Maintainer"), "docs: note the upgrade", &tree, &[&tip]).unwrap();
        git.reference(&format!("refs/heads/{LONGHORN}"), oid, true, "human").unwrap();
        oid
    };
    // ...and main moves on.
    std::fs::write(sb.repo.join("README.md"), "moved\n").unwrap();
    let new_main = commit_all(&git, "docs: move main", "Maintainer");
    let out = sb.run(&[], &[]);
    let text = stdout(&out);
    assert!(text.contains(&format!("branches left alone (commits by others): {LONGHORN}")), "{text}");
    for (name, tip) in sb.branches() {
        if name == LONGHORN {
            assert_eq!(tip, human_tip, "never rewritten");
        } else {
            assert_eq!(
                git.find_commit(tip).unwrap().parent_id(0).unwrap(),
                new_main,
                "{name} recreated on the new tip"
            );
        }
    }
    let comments = std::fs::read_to_string(sb.repo.join(".upkeep/prs/3.comments.json")).unwrap();
    assert!(comments.contains("commits upkeep did not write") && comments.contains("Maintainer"), "{comments}");
    sb.run(&[], &[]);
    let again = std::fs::read_to_string(sb.repo.join(".upkeep/prs/3.comments.json")).unwrap();
    assert_eq!(again, comments, "the comment is not repeated");
}

#[test]
fn a_pr_closed_without_merging_blocks_its_version() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    sb.set_pr(3, "state", serde_json::json!("closed"));
    sb.set_pr(3, "closed_at", serde_json::json!("2026-11-20T00:00:00Z"));
    let out = sb.run(&[], &[]);
    assert!(!stdout(&out).contains("PRs opened: upkeep/helmrelease-longhorn"), "{}", stdout(&out));
    assert!(!sb.repo.join(".upkeep/prs/5.json").exists());
    let dashboard = std::fs::read_to_string(sb.repo.join(".upkeep/dashboard.md")).unwrap();
    assert!(
        dashboard.contains("## Blocked (1)") && dashboard.contains("1.5.4 (PR #3 was closed without merging)"),
        "{dashboard}"
    );
    // `upkeep plan` reads the same forge, so it agrees with `run`.
    let plan = Command::new(env!("CARGO_BIN_EXE_upkeep"))
        .args(["plan", "--format", "json"])
        .arg(&sb.repo)
        .env("UPKEEP_CACHE_DIR", sb.root.join("cache"))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let longhorn = json["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "helmrelease/longhorn-system/longhorn")
        .unwrap();
    assert_eq!(longhorn["decision"]["action"], "blocked", "{longhorn}");
}

/// Every `upkeep/*` branch of a repository, with its tip.
fn upkeep_branches(git: &git2::Repository) -> BTreeMap<String, git2::Oid> {
    let mut out = BTreeMap::new();
    for b in git.branches(Some(git2::BranchType::Local)).unwrap().flatten() {
        let name = b.0.name().unwrap().unwrap_or("").to_string();
        if name.starts_with("upkeep/") {
            out.insert(name, b.0.get().target().unwrap());
        }
    }
    out
}

/// Every `upkeep/*` branch on a bare remote, with its tip.
fn remote_branches(bare: &Path) -> BTreeMap<String, git2::Oid> {
    upkeep_branches(&git2::Repository::open_bare(bare).unwrap())
}

/// Push the sandbox's main to `bare` (what the maintainer's repository on a forge has).
fn push_main(sb: &Sandbox, bare: &Path) {
    let git = sb.git();
    let mut remote = git.remote_anonymous(&bare.to_string_lossy()).unwrap();
    remote.push(&["+refs/heads/main:refs/heads/main"], None).unwrap();
}

#[test]
fn branches_go_to_the_remote_and_follow_the_default_branch_there() {
    let sb = Sandbox::example();
    let bare = sb.root.join("remote.git");
    git2::Repository::init_bare(&bare).unwrap();
    let remote = bare.to_string_lossy().to_string();
    sb.run(&["--remote", &remote], &[]);
    let pushed = remote_branches(&bare);
    assert_eq!(pushed, sb.branches(), "every branch pushed as written");

    // main moves; the remote branches are upkeep's own, so they are recreated on the new tip
    // and pushed over the old ones (the lease matches what the remote has).
    std::fs::write(sb.repo.join("README.md"), "moved\n").unwrap();
    let main = commit_all(&sb.git(), "docs: move main", "Maintainer");
    let out = sb.run(&["--remote", &remote], &[]);
    assert!(stdout(&out).contains("branches written: upkeep/"), "{}", stdout(&out));
    let moved = remote_branches(&bare);
    let git = sb.git();
    for (name, tip) in &moved {
        assert_ne!(Some(tip), pushed.get(name), "{name} was recreated");
        assert_eq!(git.find_commit(*tip).unwrap().parent_id(0).unwrap(), main, "{name} sits on the new main");
        assert_eq!(sb.branches()[name], *tip, "the local branch mirrors the remote");
    }

    // A maintainer pushes a fix onto upkeep's branch on the remote: upkeep leaves it alone
    // and says so on the PR, once.
    let human = {
        let bare_git = git2::Repository::open_bare(&bare).unwrap();
        let tip = bare_git.find_commit(moved[LONGHORN]).unwrap();
        let who = sig("Maintainer");
        bare_git
            .commit(Some(&format!("refs/heads/{LONGHORN}")), &who, &who, "fix: values", &tip.tree().unwrap(), &[&tip])
            .unwrap()
    };
    std::fs::write(sb.repo.join("README.md"), "moved again\n").unwrap();
    commit_all(&sb.git(), "docs: move main again", "Maintainer");
    for _ in 0..2 {
        let out = sb.run(&["--remote", &remote], &[]);
        assert!(
            stdout(&out).contains(&format!("branches left alone (commits by others): {LONGHORN}")),
            "{}",
            stdout(&out)
        );
    }
    assert_eq!(remote_branches(&bare)[LONGHORN], human, "the maintainer's commit stays");
    let pr: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.repo.join(".upkeep/prs/3.json")).unwrap()).unwrap();
    assert_eq!(pr["head"], LONGHORN);
    let comments = std::fs::read_to_string(sb.repo.join(".upkeep/prs/3.comments.json")).unwrap_or_default();
    assert_eq!(comments.matches("upkeep did not update this branch").count(), 1, "{comments}");
}

#[test]
fn a_fresh_clone_finds_the_branches_on_the_remote_and_writes_nothing() {
    let sb = Sandbox::example();
    let bare = sb.root.join("remote.git");
    git2::Repository::init_opts(&bare, git2::RepositoryInitOptions::new().bare(true).initial_head("main")).unwrap();
    push_main(&sb, &bare);
    let remote = bare.to_string_lossy().to_string();
    sb.run(&["--remote", &remote], &[]);
    let pushed = remote_branches(&bare);
    assert_eq!(pushed.len(), 4);

    // CI checks out a clone: no local upkeep branches, the same forge state.
    let clone_dir = sb.root.join("ci-checkout");
    let clone = git2::Repository::clone(&remote, &clone_dir).unwrap();
    let prs = sb.repo.join(".upkeep/prs");
    let run_clone = || {
        Command::new(env!("CARGO_BIN_EXE_upkeep"))
            .args(["run"])
            .arg(&clone_dir)
            .args(["--remote", "origin", "--prs-dir"])
            .arg(&prs)
            .env("UPKEEP_CACHE_DIR", sb.root.join("cache"))
            .env("UPKEEP_FLUX", "off")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_API_URL")
            .output()
            .unwrap()
    };
    // The clone's upkeep.yaml points at ../fixtures/mirror, which sits beside it too.
    let out = run_clone();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("branches written: none") && text.contains("PRs opened: none"), "{text}");
    assert_eq!(remote_branches(&bare), pushed, "nothing pushed");

    // Branches are cut only from the remote's default branch at its tip: not from a commit
    // nobody pushed, not from another branch.
    std::fs::write(clone_dir.join("README.md"), "local only\n").unwrap();
    commit_all(&clone, "wip: not pushed", "Maintainer");
    let out = run_clone();
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("fetch and check out its tip first"), "{all}");
    let head = clone.head().unwrap().peel_to_commit().unwrap();
    clone.branch("feature", &head, false).unwrap();
    clone.set_head("refs/heads/feature").unwrap();
    let out = run_clone();
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("`feature` is checked out, but origin's default branch is `main`"), "{all}");
    assert_eq!(remote_branches(&bare), pushed, "nothing pushed from either");
}

#[test]
fn a_push_whose_lease_no_longer_holds_is_refused() {
    let sb = Sandbox::example();
    let bare = sb.root.join("remote.git");
    git2::Repository::init_bare(&bare).unwrap();
    let remote = bare.to_string_lossy().to_string();
    sb.run(&["--remote", &remote], &[]);
    let writer = upkeep::git::Writer::open(&sb.repo, upkeep::git::Author::default()).unwrap();
    let tip = remote_branches(&bare)[LONGHORN];
    let main = sb.main_tip();
    // Someone else moved the remote branch after upkeep read it (upkeep expects `main`).
    let err = writer.push_commit(&remote, LONGHORN, tip, Some(main), None).unwrap_err().to_string();
    assert!(err.contains("the remote branch moved since upkeep read it"), "{err}");
    // A branch upkeep believes absent but that exists is not overwritten either.
    let err = writer.push_commit(&remote, LONGHORN, main, None, None).unwrap_err().to_string();
    assert!(err.contains("moved"), "{err}");
    assert_eq!(remote_branches(&bare)[LONGHORN], tip);
    // The lease that holds goes through.
    writer.push_commit(&remote, LONGHORN, main, Some(tip), None).unwrap();
    assert_eq!(remote_branches(&bare)[LONGHORN], main);
}

/// `upkeep run --remote <remote> -v` with a token, from a blocking thread.
async fn run_with_token(sb: &Sandbox, remote: &str, token: &str, server_url: Option<String>) -> Output {
    let (repo, cache, remote, token) = (sb.repo.clone(), sb.root.join("cache"), remote.to_string(), token.to_string());
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_upkeep"));
        cmd.arg("run")
            .arg(&repo)
            .args(["--remote", &remote, "-v"])
            .env("UPKEEP_CACHE_DIR", cache)
            .env("UPKEEP_FLUX", "off")
            .env("GITHUB_TOKEN", token)
            .env_remove("GITHUB_API_URL")
            .env_remove("GITHUB_SERVER_URL");
        if let Some(url) = server_url {
            cmd.env("GITHUB_SERVER_URL", url);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

async fn demanding_server() -> wiremock::MockServer {
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", "Basic realm=\"GitHub\""))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_goes_only_into_the_credential_exchange_with_the_github_server() {
    const TOKEN: &str = "ghp_supersecret123";
    let server = demanding_server().await;
    let sb = Sandbox::example();
    let remote = format!("{}/org/repo.git", server.uri());
    let out = run_with_token(&sb, &remote, TOKEN, Some(server.uri())).await;
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("cannot read upkeep's branches from") && all.contains("`contents: write`"), "{all}");
    // The server was offered the token once, as Basic credentials, and it appears nowhere else.
    let requests = server.received_requests().await.unwrap();
    let basic: Vec<String> = requests
        .iter()
        .filter_map(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string))
        .collect();
    let expected = format!("Basic {}", base64_of(&format!("x-access-token:{TOKEN}")));
    assert_eq!(basic, vec![expected.clone()], "one attempt with the token, no loop");
    assert!(requests.iter().all(|r| !r.url.as_str().contains(TOKEN)), "never in a URL");
    assert!(!all.contains(TOKEN) && !all.contains(&expected[6..]), "never in output: {all}");
    assert!(sb.branches().is_empty() && !sb.repo.join(".upkeep/prs").exists(), "nothing half-written");

    // Any other host asking for credentials gets none (GITHUB_SERVER_URL defaults to github.com).
    let other = demanding_server().await;
    let out = run_with_token(&sb, &format!("{}/org/repo.git", other.uri()), TOKEN, None).await;
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("upkeep offers GITHUB_TOKEN only to https://github.com"), "{all}");
    let offered =
        other.received_requests().await.unwrap().iter().filter(|r| r.headers.get("authorization").is_some()).count();
    assert_eq!(offered, 0);
}

fn base64_of(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn on_github_actions_the_run_is_added_to_the_job_summary() {
    let sb = Sandbox::example();
    let summary = sb.root.join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    sb.run(&[], &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())]);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("earlier step\n### upkeep\n"), "appended, not replaced: {text}");
    assert!(text.contains("| PRs opened | 4 |") && text.contains(&format!("`{LONGHORN}`")), "{text}");
    assert!(text.contains("**Held:**\n- `flux-components/clusters/home/flux-system` is generated"), "{text}");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let sb = Sandbox::example();
    let out = sb.run(&["--dry-run"], &[]);
    let text = stdout(&out);
    assert!(text.contains(&format!("branch {LONGHORN}: chore(deps): update longhorn to 1.5.4")), "{text}");
    assert!(
        text.contains("-      version: \"1.4.1\" # pinned on purpose\n+      version: \"1.5.4\" # pinned on purpose"),
        "{text}"
    );
    assert!(sb.branches().is_empty() && !sb.repo.join(".upkeep").exists());
}

/// Each corpus repository as a git repository with a bare remote and the index mirror on
/// loopback: `upkeep run --forge local` writes branches whose diffs change only version
/// scalars, and PR bodies that are sane Markdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_runs_change_only_version_scalars() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer};
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(super::servers::Mirror { root: fixture("mirror") }).mount(&server).await;
    let sources = std::fs::read_to_string(fixture("mirror/SOURCES.tsv")).unwrap();
    let mut config = String::from(
        "registryRewrites:\n  - {from: 'oci://', to: 'http://127.0.0.1:9'}\n  - {from: 'https://api.github.com', to: 'http://127.0.0.1:9'}\n",
    );
    for url in sources.lines().skip(1).filter_map(|l| l.split('\t').next()) {
        let hostpath = url.split_once("://").map_or(url, |(_, r)| r).trim_end_matches('/');
        config.push_str(&format!("  - {{from: '{url}', to: '{}/{hostpath}'}}\n", server.uri()));
    }
    let mut total_branches = 0;
    // billimek's charts all come from OCI registries, which the offline mirror does not hold:
    // its run writes nothing and lists every failed lookup on the dashboard instead. Flux's
    // example pins nothing (every version is a range), so there is nothing to write.
    for (repo, expect) in [
        ("bjw-s-home-ops", "writes"),
        ("billimek-k8s-gitops", "lookups fail"),
        ("carpenike-k8s-gitops-2021", "writes"),
        ("flux2-kustomize-helm-example", "all floating"),
        ("onedr0p-home-ops-2022", "writes"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("repo");
        copy_dir(&fixture(&format!("corpus/{repo}")), &work);
        std::fs::write(work.join("upkeep.yaml"), &config).unwrap();
        let git = git2::Repository::init_opts(&work, git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
        commit_all(&git, "initial", "Maintainer");
        let bare = dir.path().join("remote.git");
        git2::Repository::init_bare(&bare).unwrap();
        let (work2, bare2, cache) = (work.clone(), bare.clone(), dir.path().join("cache"));
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_upkeep"))
                .arg("run")
                .arg(&work2)
                .args(["--forge", "local", "--remote"])
                .arg(&bare2)
                .env("UPKEEP_CACHE_DIR", cache)
                .env("UPKEEP_FLUX", "off")
                .env_remove("GITHUB_TOKEN")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if expect == "lookups fail" {
            // Nothing learned at all is a failed run, said once, not a quiet one.
            assert_eq!(out.status.code(), Some(1), "{repo}: {text}");
            assert!(text.contains("error: every one of"), "{repo}: {text}");
        } else {
            assert!(
                out.status.success() && !text.contains("error:"),
                "{repo}: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let main = git.refname_to_id("refs/heads/main").unwrap();
        let main_tree = git.find_commit(main).unwrap().tree().unwrap();
        let remote = git2::Repository::open_bare(&bare).unwrap();
        let mut branches = 0;
        for b in git.branches(Some(git2::BranchType::Local)).unwrap().flatten() {
            let name = b.0.name().unwrap().unwrap_or("").to_string();
            if !name.starts_with("upkeep/") {
                continue;
            }
            branches += 1;
            let tip = git.find_commit(b.0.get().target().unwrap()).unwrap();
            assert_eq!(remote.refname_to_id(&format!("refs/heads/{name}")).unwrap(), tip.id(), "{name} pushed");
            let updates: Vec<(String, String)> = tip
                .message()
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("Upkeep-Update: "))
                .map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    (w[1].to_string(), w[3].to_string())
                })
                .collect();
            assert!(!updates.is_empty(), "{name} has trailers");
            let diff = git.diff_tree_to_tree(Some(&main_tree), Some(&tip.tree().unwrap()), None).unwrap();
            for delta in diff.deltas() {
                let path = delta.new_file().path().unwrap().to_path_buf();
                let old = String::from_utf8(git.find_blob(delta.old_file().id()).unwrap().content().to_vec()).unwrap();
                let new = String::from_utf8(git.find_blob(delta.new_file().id()).unwrap().content().to_vec()).unwrap();
                assert_eq!(old.lines().count(), new.lines().count(), "{name} {}: line count", path.display());
                for (a, b) in old.lines().zip(new.lines()).filter(|(a, b)| a != b) {
                    let explained = updates.iter().any(|(from, to)| {
                        b == a.replacen(from.as_str(), to, 1) || b == a.replacen(from.as_str(), &format!("\"{to}\""), 1)
                    });
                    assert!(explained, "{repo} {name} {}: `{a}` -> `{b}` is not a version edit", path.display());
                }
            }
        }
        let dashboard = std::fs::read_to_string(work.join(".upkeep/dashboard.md")).unwrap();
        match expect {
            "writes" => assert!(branches > 0, "{repo}: some updates were written"),
            "lookups fail" => {
                assert_eq!(branches, 0, "{repo}");
                assert!(dashboard.contains("http://127.0.0.1:9"), "{repo}: failed lookups are listed: {dashboard}");
            }
            _ => {
                assert_eq!(branches, 0, "{repo}");
                assert!(text.contains("0 propose"), "{repo}: {text}");
            }
        }
        total_branches += branches;
        for entry in std::fs::read_dir(work.join(".upkeep/prs")).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "md") && !p.to_string_lossy().ends_with(".comments.md") {
                markdown_is_sane(&std::fs::read_to_string(&p).unwrap(), &p.display().to_string());
            }
        }
    }
    assert!(total_branches > 20, "{total_branches}");
}

/// Balanced fences and details, tables with as many cells as their header, no live mention.
fn markdown_is_sane(body: &str, name: &str) {
    let fences = body.lines().filter(|l| l.trim_start().trim_start_matches("> ").starts_with("```")).count();
    assert_eq!(fences % 2, 0, "{name}: unbalanced code fences");
    assert_eq!(body.matches("<details>").count(), body.matches("</details>").count(), "{name}: details");
    let mut columns = None;
    for line in body.lines() {
        if line.starts_with('|') {
            let cells = line.replace("\\|", "").matches('|').count();
            assert_eq!(*columns.get_or_insert(cells), cells, "{name}: ragged table row {line}");
        } else {
            columns = None;
        }
    }
    for (i, _) in body.match_indices('@') {
        let next = body[i + 1..].chars().next().unwrap_or(' ');
        let prev = body[..i].chars().last().unwrap_or(' ');
        assert!(
            !next.is_ascii_alphanumeric() || prev.is_ascii_alphanumeric(),
            "{name}: a live @mention: {}",
            &body[i.saturating_sub(80)..(i + 40).min(body.len())]
        );
    }
}

/// The README's main-job command itself, offline, twice: the second run changes nothing.
#[test]
fn the_readme_main_job_runs_the_bundled_example_and_is_idempotent() {
    let git = Command::new("git").arg("--version").output();
    assert!(git.is_ok_and(|o| o.status.success()), "scripts/example.sh needs git on PATH");
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/example.sh");
    // `cargo test` builds the examples next to the binaries: the stand-in cluster of the loop.
    let cluster = Path::new(env!("CARGO_BIN_EXE_upkeep")).parent().unwrap().join("examples/fake_cluster");
    assert!(cluster.is_file(), "{} is built by a plain `cargo test` (examples are part of it)", cluster.display());
    let run = || {
        Command::new("bash")
            .arg(&script)
            .env("UPKEEP_EXAMPLE_DIR", dir.path())
            .env("UPKEEP_BIN", env!("CARGO_BIN_EXE_upkeep"))
            .env("UPKEEP_FAKE_CLUSTER", &cluster)
            .env("UPKEEP_CACHE_DIR", dir.path().join("cache"))
            .env("UPKEEP_FLUX", "off")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_API_URL")
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap()
    };
    let first = run();
    let text = stdout(&first);
    assert!(first.status.success(), "{text}{}", String::from_utf8_lossy(&first.stderr));
    assert!(text.contains("PRs opened: upkeep/"), "{text}");
    let pushed = remote_branches(&dir.path().join("remote.git"));
    // The loop closed offline: the merged ingress-nginx update failed in the stand-in cluster,
    // and its revert PR is there with the evidence, pushed like any upkeep branch.
    assert!(text.contains("failure") && text.contains("revert"), "{text}");
    let revert = pushed.keys().find(|b| b.starts_with("upkeep/revert-")).unwrap_or_else(|| panic!("{pushed:?}"));
    let prs = std::fs::read_dir(dir.path().join("repo/.upkeep/prs")).unwrap();
    let bodies: Vec<String> = prs.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap()).collect();
    assert!(bodies.iter().any(|b| b.contains(&format!("\"head\": \"{revert}\""))), "a local PR for {revert}");
    assert!(bodies.iter().any(|b| b.contains("UpgradeFailed") && b.contains("### Evidence")), "the evidence");
    assert_eq!(pushed.len(), 5, "four update branches and the revert: {pushed:?}");
    let second = run();
    let text = stdout(&second);
    assert!(text.contains("branches written: none") && text.contains("PRs opened: none"), "{text}");
    assert_eq!(remote_branches(&dir.path().join("remote.git")), pushed);
    assert!(dir.path().join("repo/.upkeep/dashboard.md").is_file());
}

#[test]
fn issue_9_local_forge_comments_keep_their_dashes_and_old_comments_move_over() {
    use upkeep::forge::Forge;
    let dir = tempfile::tempdir().unwrap();
    let forge = upkeep::forge::local::LocalForge::new(dir.path());
    // A comments file as earlier versions wrote it.
    std::fs::write(dir.path().join("1.comments.md"), "---\nfirst\n---\nsecond\nline two\n").unwrap();
    let ruled = "before the rule\n---\nafter the rule";
    forge.comment(1, ruled).unwrap();
    assert_eq!(forge.comments(1).unwrap(), ["first", "second\nline two", ruled]);
    assert!(!dir.path().join("1.comments.md").exists(), "the old file moved into the new one");
    forge.comment(1, "---").unwrap();
    assert_eq!(forge.comments(1).unwrap().len(), 4, "a comment that is only a rule is one comment");
}

#[test]
fn issue_9_local_forge_files_that_cannot_be_read_are_errors_and_are_not_overwritten() {
    use upkeep::forge::{Forge, NewPullRequest};
    let dir = tempfile::tempdir().unwrap();
    let forge = upkeep::forge::local::LocalForge::new(dir.path());
    let pr = NewPullRequest {
        head: "upkeep/x".into(),
        base: "main".into(),
        title: "t".into(),
        body: "body".into(),
        labels: Vec::new(),
        reviewers: Vec::new(),
        automerge: false,
        draft: false,
    };
    forge.create(&pr).unwrap();
    // A body that cannot be read (here a directory where the file should be; tests run as
    // root, so permissions would not stop the read) is an error, not an empty body.
    std::fs::remove_file(dir.path().join("1.md")).unwrap();
    std::fs::create_dir(dir.path().join("1.md")).unwrap();
    let err = forge.upkeep_prs().unwrap_err().to_string();
    assert!(err.contains("1.md"), "{err}");
    // Comments that cannot be read are not replaced by a list without them.
    std::fs::create_dir(dir.path().join("2.comments.json")).unwrap();
    assert!(forge.comment(2, "new").is_err());
    assert!(dir.path().join("2.comments.json").is_dir(), "left as it was");
}

#[test]
fn issue_9_a_local_forge_that_cannot_be_read_is_a_note_in_the_plan() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    std::fs::write(sb.repo.join(".upkeep/prs/1.json"), "{ not json").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_upkeep"))
        .args(["plan", "--format", "json"])
        .arg(&sb.repo)
        .env("UPKEEP_CACHE_DIR", &sb.cache)
        .env("UPKEEP_FLUX", "off")
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("the local forge's PRs in") && text.contains("1.json is not a PR record"), "{text}");
}

#[test]
fn issue_9_a_bad_environment_value_is_an_error_naming_it() {
    let sb = Sandbox::example();
    let out = sb.try_run(&[], &[("UPKEEP_HTTP_RETRIES", "lots")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UPKEEP_HTTP_RETRIES=`lots` is not a whole number"), "{err}");
    assert!(sb.branches().is_empty(), "nothing was written");
}
