//! `upkeep revert <sha>` on real git: a merge commit and a squash merge of an upkeep PR are
//! reverted on `upkeep/revert-<12 hex>` with the trailer, proved, opened as a PR once, and the
//! failed version is blocked in the next plan, before and after the revert lands.

use super::run::Sandbox;
use super::verify_support::{MergeStyle, decision, local_pr, merge, text, upkeep};

const NGINX: &str = "upkeep/helmrelease-ingress-nginx-ingress-nginx";
const NGINX_ID: &str = "helmrelease/ingress-nginx/ingress-nginx";

fn file_at(sb: &Sandbox, commit: git2::Oid, path: &str) -> String {
    let git = sb.git();
    let tree = git.find_commit(commit).unwrap().tree().unwrap();
    let blob = git.find_blob(tree.get_path(std::path::Path::new(path)).unwrap().id()).unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

fn reverts_by_hand(style: MergeStyle) {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    let target = decision(&sb, NGINX_ID)["target"].as_str().unwrap().to_string();
    let before = sb.main_tip();
    let merged = merge(&sb, NGINX, style);
    let release = "infrastructure/ingress-nginx/release.yaml";
    assert_ne!(file_at(&sb, merged, release), file_at(&sb, before, release));

    let out = upkeep(&sb, &["revert", &merged.to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let branch = format!("upkeep/revert-{}", &merged.to_string()[..12]);
    assert!(text(&out).contains(&branch), "{}", text(&out));

    let git = sb.git();
    let tip = git.refname_to_id(&format!("refs/heads/{branch}")).unwrap();
    let commit = git.find_commit(tip).unwrap();
    assert_eq!(commit.parent_id(0).unwrap(), merged, "cut from the tip of main");
    let message = commit.message().unwrap();
    assert!(message.contains(&format!("This reverts commit {merged}.")), "{message}");
    assert!(message.contains(&format!("Upkeep-Revert: {NGINX_ID} {target}")), "{message}");
    assert_eq!(file_at(&sb, tip, release), file_at(&sb, before, release), "back to the old bytes exactly");

    let (number, pr) = local_pr(&sb.repo, &branch);
    let title = local_pr(&sb.repo, NGINX).1["title"].as_str().unwrap().to_string();
    assert_eq!(pr["title"], format!("Revert \"{title}\""));
    let body = std::fs::read_to_string(sb.repo.join(format!(".upkeep/prs/{number}.md"))).unwrap();
    assert!(body.contains(&format!("<!-- upkeep-revert: {NGINX_ID} {target} -->")), "{body}");
    assert!(body.contains("requested by hand"), "{body}");

    // The failed version is blocked while the revert PR is open…
    let d = decision(&sb, NGINX_ID);
    assert_eq!(d["action"], "blocked", "{d}");
    assert!(d["reason"].as_str().unwrap().contains(&format!("{target} failed verification")), "{d}");

    // …a second revert writes nothing new…
    let again = upkeep(&sb, &["revert", &merged.to_string()], &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(git.refname_to_id(&format!("refs/heads/{branch}")).unwrap(), tip, "same commit");
    assert_eq!(local_pr(&sb.repo, &branch).0, number, "same PR");
    assert!(!sb.repo.join(format!(".upkeep/prs/{}.json", number + 1)).exists(), "no second PR");

    // …and once the revert is merged, its trailer keeps the version blocked.
    merge(&sb, &branch, MergeStyle::MergeCommit);
    std::fs::remove_file(sb.repo.join(format!(".upkeep/prs/{number}.json"))).unwrap();
    let d = decision(&sb, NGINX_ID);
    assert_eq!(d["action"], "blocked", "{d}");
    assert!(d["reason"].as_str().unwrap().contains(&format!("{target} (reverted in")), "{d}");
}

#[test]
fn a_merge_commit_is_reverted_by_hand_with_mainline_one() {
    reverts_by_hand(MergeStyle::MergeCommit);
}

#[test]
fn a_squash_merge_is_reverted_by_hand() {
    reverts_by_hand(MergeStyle::Squash);
}

#[test]
fn a_commit_that_is_not_an_upkeep_merge_is_refused_and_nothing_is_written() {
    let sb = Sandbox::example();
    let out = upkeep(&sb, &["revert", "HEAD"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not an upkeep merge"), "{}", text(&out));
    assert!(!sb.repo.join(".upkeep").exists(), "nothing written");
}
