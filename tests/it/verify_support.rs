//! Shared by the verifier's tests: merge an upkeep branch the way GitHub does (a merge commit,
//! or a squash carrying the PR title and body), and run any upkeep command on a sandbox.

use std::path::Path;
use std::process::{Command, Output};

use super::run::Sandbox;

fn sig(name: &str) -> git2::Signature<'static> {
    git2::Signature::now(name, &format!("{}@example.com", name.to_lowercase())).unwrap()
}

/// How a PR reaches the default branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MergeStyle {
    /// "Create a merge commit": two parents, the upkeep commit on the side.
    MergeCommit,
    /// "Squash and merge": one commit, the PR title as subject and its body as message.
    Squash,
}

/// Merge `branch` into main as GitHub would, mark its local PR merged, and return the merge.
pub(crate) fn merge(sb: &Sandbox, branch: &str, style: MergeStyle) -> git2::Oid {
    let git = sb.git();
    let tip = git.refname_to_id(&format!("refs/heads/{branch}")).unwrap();
    let side = git.find_commit(tip).unwrap();
    let main = git.find_commit(sb.main_tip()).unwrap();
    let tree = side.tree().unwrap();
    let (number, pr) = local_pr(&sb.repo, branch);
    let title = pr["title"].as_str().unwrap().to_string();
    let merged = match style {
        MergeStyle::MergeCommit => {
            let message = format!("Merge pull request #{number} from example/{branch}\n\n{title}\n");
            git.commit(Some("refs/heads/main"), &sig("Maintainer"), &sig("GitHub"), &message, &tree, &[&main, &side])
        }
        MergeStyle::Squash => {
            let body = std::fs::read_to_string(sb.repo.join(format!(".upkeep/prs/{number}.md"))).unwrap();
            let message = format!("{title} (#{number})\n\n{body}");
            git.commit(Some("refs/heads/main"), &sig("Maintainer"), &sig("GitHub"), &message, &tree, &[&main])
        }
    }
    .unwrap();
    git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
    let mut pr = pr;
    pr["state"] = "merged".into();
    pr["closed_at"] = jiff::Timestamp::now().to_string().into();
    pr["merge_commit"] = merged.to_string().into();
    std::fs::write(sb.repo.join(format!(".upkeep/prs/{number}.json")), pr.to_string()).unwrap();
    merged
}

/// The local forge's PR for `branch`: number and metadata.
pub(crate) fn local_pr(repo: &Path, branch: &str) -> (u64, serde_json::Value) {
    for entry in std::fs::read_dir(repo.join(".upkeep/prs")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(n) = name.strip_suffix(".json").and_then(|n| n.parse::<u64>().ok()) else { continue };
        let pr: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        if pr["head"] == branch {
            return (n, pr);
        }
    }
    panic!("no local PR for {branch}")
}

/// Any upkeep command on the sandbox, with a clean environment.
pub(crate) fn upkeep(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    upkeep_in(&sb.root, &sb.repo, args, env)
}

/// Any upkeep command in `repo` (a sandbox's, by its paths, for threads that cannot borrow it).
pub(crate) fn upkeep_in(root: &Path, repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upkeep"))
        .args(args)
        .current_dir(repo)
        .env("UPKEEP_CACHE_DIR", root.join("cache"))
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_API_URL")
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("GITHUB_GRAPHQL_URL")
        .env_remove("GITHUB_SERVER_URL")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("KUBECONFIG")
        .env("UPKEEP_FLUX", "off")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// [`upkeep_in`] off the async workers (the binary may wait on a fake server the test runs).
pub(crate) async fn upkeep_blocking(root: &Path, repo: &Path, args: Vec<String>, env: Vec<(String, String)>) -> Output {
    let (root, repo) = (root.to_path_buf(), repo.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        upkeep_in(&root, &repo, &args, &env)
    })
    .await
    .unwrap()
}

/// Both streams, for assertion messages.
pub(crate) fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The version of `id` in the plan of `upkeep plan --format json`, with its action and reason.
pub(crate) fn decision(sb: &Sandbox, id: &str) -> serde_json::Value {
    let out = upkeep(sb, &["plan", ".", "--format", "json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deps = report["dependencies"].as_array().unwrap();
    let dep = deps.iter().find(|d| d["id"] == id).unwrap_or_else(|| panic!("no {id} in the plan"));
    dep["decision"].clone()
}
