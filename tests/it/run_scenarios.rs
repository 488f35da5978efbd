//! More of `upkeep run` with the local forge: regrouping supersedes PRs, repository template
//! overrides, a FluxInstance edit, and a configurable commit author.

use std::path::Path;

use super::run::{LONGHORN, Sandbox, commit_all, stdout};
use super::util::fixture;

const CERT_MANAGER: &str = "upkeep/helmrelease-cert-manager-cert-manager";
const INGRESS: &str = "upkeep/helmrelease-ingress-nginx-ingress-nginx";

fn pr(sb: &Sandbox, n: u64) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(sb.repo.join(format!(".upkeep/prs/{n}.json"))).unwrap()).unwrap()
}

fn add_to_config(sb: &Sandbox, yaml: &str) {
    let path = sb.repo.join("upkeep.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}{yaml}")).unwrap();
    commit_all(&sb.git(), "chore: upkeep config", "Maintainer");
}

#[test]
fn a_new_group_supersedes_single_prs_without_refusing_their_versions() {
    let sb = Sandbox::example();
    let bare = sb.root.join("remote.git");
    git2::Repository::init_bare(&bare).unwrap();
    let remote = bare.to_string_lossy().to_string();
    let args = ["--remote", remote.as_str()];
    sb.run(&args, &[]);
    assert_eq!((pr(&sb, 1)["head"].as_str(), pr(&sb, 2)["head"].as_str()), (Some(CERT_MANAGER), Some(INGRESS)));
    add_to_config(&sb, "rules:\n  - match: { chart: [cert-manager, ingress-nginx] }\n    group: web\n");
    // As if an earlier run retired PR 1's markers and then failed to close it: this run finishes.
    let body = sb.repo.join(".upkeep/prs/1.md");
    let text = std::fs::read_to_string(&body).unwrap();
    std::fs::write(&body, text.replace("<!-- upkeep-update: ", "<!-- upkeep-superseded: ")).unwrap();

    let out = sb.run(&args, &[]);
    let text = stdout(&out);
    assert!(text.contains("PRs opened: upkeep/web"), "{text}");
    let closed = text.lines().find(|l| l.starts_with("PRs closed as superseded: ")).unwrap();
    assert!(closed.contains(CERT_MANAGER) && closed.contains(INGRESS), "{text}");
    for n in [1, 2] {
        assert_eq!(pr(&sb, n)["state"], "closed");
        let comments = std::fs::read_to_string(sb.repo.join(format!(".upkeep/prs/{n}.comments.json"))).unwrap();
        assert!(comments.contains("Superseded, closing"), "{comments}");
    }
    // Their branches go too, here and on the remote, as Renovate does with autoclosed PRs.
    let pushed = git2::Repository::open_bare(&bare).unwrap();
    for branch in [CERT_MANAGER, INGRESS] {
        assert!(!sb.branches().contains_key(branch), "{branch} deleted locally");
        assert!(pushed.find_reference(&format!("refs/heads/{branch}")).is_err(), "{branch} deleted on the remote");
    }
    assert!(pushed.find_reference("refs/heads/upkeep/web").is_ok());
    let web = std::fs::read_to_string(sb.repo.join(".upkeep/prs/5.md")).unwrap();
    assert!(web.contains("cert-manager") && web.contains("ingress-nginx"), "{web}");

    // upkeep closed them, nobody refused the versions: the grouped PR stays, nothing is blocked.
    let again = stdout(&sb.run(&args, &[]));
    assert!(again.contains("PRs opened: none") && again.contains("PRs closed as superseded: none"), "{again}");
    assert!(again.contains("0 blocked"), "{again}");
    assert_eq!(pr(&sb, 5)["state"], "open");
}

#[test]
fn a_repository_template_overrides_the_pr_body_and_a_broken_one_is_named() {
    let sb = Sandbox::example();
    let dir = sb.repo.join(".github/upkeep/templates");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pr-body.hbs"),
        "Platform team update.\n\n{{#each updates}}- {{package}}: {{from}} → {{to}} ({{update_type}})\n{{/each}}",
    )
    .unwrap();
    commit_all(&sb.git(), "chore: our PR template", "Maintainer");
    sb.run(&[], &[]);
    let body = std::fs::read_to_string(sb.repo.join(".upkeep/prs/3.md")).unwrap();
    assert!(body.starts_with("Platform team update.\n\n- longhorn: 1.4.1 → 1.5.4 (minor)\n"), "{body}");
    assert!(
        body.contains("<!-- upkeep-update: helmrelease/longhorn-system/longhorn 1.4.1 -> 1.5.4 -->"),
        "markers stay"
    );

    // A template naming a variable that does not exist fails loudly (strict mode), by file.
    std::fs::write(dir.join("pr-body.hbs"), "{{#each updates}}{{no_such_field}}{{/each}}").unwrap();
    std::fs::write(sb.repo.join("README.md"), "moved\n").unwrap();
    commit_all(&sb.git(), "docs: move main", "Maintainer");
    let out = sb.try_run(&[], &[]);
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("template pr-body") && all.contains("no_such_field"), "{all}");
}

#[test]
fn a_flux_instance_is_a_plain_edit_in_the_manifests_own_spelling() {
    let sb = Sandbox::example();
    let target = sb.repo.join("clusters/home/flux-operator/instance.yaml");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(fixture("flux/fluxinstance-pinned.yaml"), &target).unwrap();
    commit_all(&sb.git(), "feat: flux-operator", "Maintainer");
    let out = stdout(&sb.run(&[], &[]));
    let branch = "upkeep/fluxinstance-flux-system-flux";
    assert!(out.contains(branch), "{out}");
    let git = sb.git();
    let tip = git.find_commit(sb.branches()[branch]).unwrap();
    let entry = tip.tree().unwrap().get_path(Path::new("clusters/home/flux-operator/instance.yaml")).unwrap();
    let after = String::from_utf8(git.find_blob(entry.id()).unwrap().content().to_vec()).unwrap();
    let before = std::fs::read_to_string(&target).unwrap();
    assert_eq!(
        after,
        before.replace("version: \"2.3.0\"   # bump with care", "version: \"2.4.0\"   # bump with care"),
        "only the version bytes moved, without a `v` the manifest never had"
    );
    assert!(tip.message().unwrap().contains("Upkeep-Update: fluxinstance/flux-system/flux 2.3.0 -> v2.4.0"));
}

#[test]
fn the_commit_author_is_configurable_and_stays_upkeeps() {
    let sb = Sandbox::example();
    let author = "Cluster Bot <cluster-bot@example.com>";
    sb.run(&["--author", author], &[]);
    let git = sb.git();
    let c = git.find_commit(sb.branches()[LONGHORN]).unwrap();
    assert_eq!((c.author().name(), c.author().email()), (Ok("Cluster Bot"), Ok("cluster-bot@example.com")));
    // Its own commits are recognised as its own when main moves.
    std::fs::write(sb.repo.join("README.md"), "moved\n").unwrap();
    commit_all(&git, "docs: move main", "Maintainer");
    let out = stdout(&sb.run(&[], &[("UPKEEP_AUTHOR", author)]));
    assert!(
        out.contains(&format!("branches written: {CERT_MANAGER}"))
            && out.contains("left alone (commits by others): none"),
        "{out}"
    );
    let bad = sb.try_run(&["--author", "no email"], &[]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not `Name <email>`"));
}

#[test]
fn a_failed_lookup_never_closes_an_open_pr() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    assert_eq!(pr(&sb, 3)["head"], LONGHORN);
    // Longhorn's chart repository is down this run.
    std::fs::remove_file(sb.root.join("fixtures/mirror/charts.longhorn.io/index.yaml")).unwrap();
    let text = stdout(&sb.run(&[], &[]));
    assert!(text.contains("PRs closed as superseded: none"), "{text}");
    assert_eq!(pr(&sb, 3)["state"], "open");
    assert!(sb.branches().contains_key(LONGHORN));
}

#[test]
fn a_leftover_branch_with_a_maintainers_commit_is_started_again_for_a_new_pr() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    // A maintainer pushes a commit onto the Longhorn branch, then closes the PR unmerged.
    let git = sb.git();
    let tip = git.find_commit(sb.branches()[LONGHORN]).unwrap();
    let who = git2::Signature::now("Maintainer", "maintainer@example.com").unwrap();
    git.commit(Some(&format!("refs/heads/{LONGHORN}")), &who, &who, "fix: values", &tip.tree().unwrap(), &[&tip])
        .unwrap();
    let meta = sb.repo.join(".upkeep/prs/3.json");
    let mut json = pr(&sb, 3);
    json["state"] = serde_json::json!("closed");
    json["closed_at"] = serde_json::json!("2026-11-20T00:00:00Z");
    std::fs::write(&meta, json.to_string()).unwrap();
    // A newer patch appears: it gets a fresh branch and a new PR.
    let index = sb.root.join("fixtures/mirror/charts.longhorn.io/index.yaml");
    let text = std::fs::read_to_string(&index).unwrap();
    let newer = "  longhorn:\n  - apiVersion: v1\n    created: \"2024-03-20T00:00:00Z\"\n    name: longhorn\n    urls:\n    - https://github.com/longhorn/charts/releases/download/longhorn-1.5.5/longhorn-1.5.5.tgz\n    version: 1.5.5\n";
    std::fs::write(&index, text.replacen("  longhorn:\n", newer, 1)).unwrap();
    let out = stdout(&sb.run(&[], &[]));
    assert!(out.contains(&format!("PRs opened: {LONGHORN}")), "{out}");
    let fresh = git.find_commit(sb.branches()[LONGHORN]).unwrap();
    assert_eq!(fresh.parent_id(0).unwrap(), sb.main_tip());
    assert_eq!(pr(&sb, 5)["title"], "chore(deps): update longhorn to 1.5.5");
}

#[test]
fn a_maintainers_amend_of_upkeeps_commit_is_their_work_and_stays() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    // `git commit --amend` on the Longhorn branch: author and message stay upkeep's, the
    // committer and the tree are the maintainer's.
    let git = sb.git();
    let tip = git.find_commit(sb.branches()[LONGHORN]).unwrap();
    let mut index = git2::Index::new().unwrap();
    index.read_tree(&tip.tree().unwrap()).unwrap();
    let blob = git.blob(b"values tuned by hand\n").unwrap();
    let mut entry = index.get_path(Path::new("README.md"), 0).unwrap();
    entry.id = blob;
    entry.path = b"NOTES.md".to_vec();
    index.add(&entry).unwrap();
    let tree = git.find_tree(index.write_tree_to(&git).unwrap()).unwrap();
    let maintainer = git2::Signature::now("Maintainer", "maintainer@example.com").unwrap();
    let amended = tip.amend(None, None, Some(&maintainer), None, None, Some(&tree)).unwrap();
    git.reference(&format!("refs/heads/{LONGHORN}"), amended, true, "amend").unwrap();
    std::fs::write(sb.repo.join("README.md"), "moved\n").unwrap();
    commit_all(&git, "docs: move main", "Maintainer");
    let out = stdout(&sb.run(&[], &[]));
    assert!(out.contains(&format!("branches left alone (commits by others): {LONGHORN}")), "{out}");
    assert_eq!(sb.branches()[LONGHORN], amended);
}

/// Flux's own layout: the base HelmRelease names the chart, an overlay's values patch pins the
/// version. The update edits the patch, and the proof (which re-reads that one file) holds.
#[test]
fn a_version_pinned_in_an_overlay_patch_is_updated_there() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    super::run::copy_dir(&fixture("corpus/flux2-kustomize-helm-example"), &repo);
    let mirror = dir.path().join("fixtures/mirror/stefanprodan.github.io");
    super::run::copy_dir(&fixture("mirror/stefanprodan.github.io"), &mirror);
    let patch = repo.join("apps/production/podinfo-values.yaml");
    let text = std::fs::read_to_string(&patch).unwrap().replace("version: \">=1.0.0\"", "version: \"0.0.9\"");
    std::fs::write(&patch, &text).unwrap();
    std::fs::write(
        repo.join("upkeep.yaml"),
        "registryRewrites:\n  - from: https://stefanprodan.github.io\n    to: file://../fixtures/mirror/stefanprodan.github.io\n",
    )
    .unwrap();
    let (git, _) = commit_and_run(&repo, &dir.path().join("cache"));
    let after = file_on(
        &git,
        "upkeep/helmrelease-podinfo-podinfo-apps-production-podinfo-values.yaml",
        "apps/production/podinfo-values.yaml",
    );
    // (The mirrored podinfo index is synthetic and lists 0.1.0.)
    assert_eq!(after, text.replace("version: \"0.0.9\"", "version: \"0.1.0\""));
    assert_eq!(after.lines().count(), text.lines().count());
}

/// Helm spells a chart version's `+` as `_` in OCI tags. A HelmRelease's chart version gets the
/// semver back (`+`); an OCIRepository's tag stays the tag (`_`).
#[test]
fn oci_build_tags_are_written_as_each_field_expects() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let tags = dir.path().join("mirror/charts/app/tags");
    std::fs::create_dir_all(&tags).unwrap();
    std::fs::write(tags.join("list"), r#"{"name":"charts/app","tags":["1.0.0_build.1","1.1.0_build.7","latest"]}"#)
        .unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    let release = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts\n  namespace: flux-system\nspec:\n  type: oci\n  url: oci://registry.test/charts\n---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  chart:\n    spec:\n      chart: app\n      version: 1.0.0+build.1\n      sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}\n";
    let source = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: app-artifact\n  namespace: flux-system\nspec:\n  url: oci://registry.test/charts/app\n  ref:\n    tag: 1.0.0_build.1\n";
    std::fs::write(repo.join("release.yaml"), release).unwrap();
    std::fs::write(repo.join("source.yaml"), source).unwrap();
    std::fs::write(
        repo.join("upkeep.yaml"),
        "registryRewrites:\n  - from: oci://registry.test\n    to: file://../mirror\n",
    )
    .unwrap();
    let (git, _) = commit_and_run(&repo, &dir.path().join("cache"));
    let file_on = |branch: &str, file: &str| file_on(&git, branch, file);
    assert_eq!(
        file_on("upkeep/helmrelease-apps-app", "release.yaml"),
        release.replace("1.0.0+build.1", "1.1.0+build.7")
    );
    assert_eq!(
        file_on("upkeep/ocirepository-flux-system-app-artifact", "source.yaml"),
        source.replace("1.0.0_build.1", "1.1.0_build.7")
    );
}

/// With `core.autocrlf`, the work tree has CRLF while the committed blob has LF: the scan's
/// byte offsets are off by a byte a line in the blob. The edit finds the version again by its
/// line and column, and the commit keeps the blob's LF.
#[test]
fn a_crlf_work_tree_over_lf_blobs_still_edits_the_right_bytes() {
    let sb = Sandbox::example();
    let file = sb.repo.join("infrastructure/longhorn/release.yaml");
    let lf = std::fs::read_to_string(&file).unwrap();
    assert!(!lf.contains('\r'));
    std::fs::write(&file, lf.replace('\n', "\r\n")).unwrap(); // what autocrlf checks out
    let out = sb.run(&[], &[]);
    assert!(stdout(&out).contains(&format!("PRs opened: upkeep/helmrelease-cert-manager-cert-manager, upkeep/helmrelease-ingress-nginx-ingress-nginx, {LONGHORN}")), "{}", stdout(&out));
    let git = sb.git();
    let tree = git.find_commit(sb.branches()[LONGHORN]).unwrap().tree().unwrap();
    let blob = git.find_blob(tree.get_path(Path::new("infrastructure/longhorn/release.yaml")).unwrap().id()).unwrap();
    let written = String::from_utf8(blob.content().to_vec()).unwrap();
    assert_eq!(written, lf.replace("version: \"1.4.1\"", "version: \"1.5.4\""));
}

/// A sparse checkout (or a local delete) leaves tracked files off the disk: what they hold is
/// unknown, so their PRs are not closed as "no longer found".
#[test]
fn a_tracked_file_missing_from_the_work_tree_closes_nothing() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    std::fs::remove_file(sb.repo.join("infrastructure/longhorn/release.yaml")).unwrap();
    let out = sb.try_run(&[], &[]);
    let text = stdout(&out);
    assert!(text.contains("PRs closed as superseded: none"), "{text}");
    assert_eq!(pr(&sb, 3)["state"], "open");
    let dashboard = std::fs::read_to_string(sb.repo.join(".upkeep/dashboard.md")).unwrap();
    assert!(
        dashboard.contains("infrastructure/longhorn/release.yaml") && dashboard.contains("missing from the work tree"),
        "{dashboard}"
    );
}

/// A branch whose PR was never opened (creating it failed) carries nobody's review, but may
/// carry somebody's commits: those are never rewritten.
#[test]
fn a_branch_whose_pr_never_opened_keeps_a_maintainers_commit() {
    let sb = Sandbox::example();
    sb.run(&[], &[]);
    for ext in ["md", "json"] {
        std::fs::remove_file(sb.repo.join(format!(".upkeep/prs/3.{ext}"))).unwrap(); // as if creation failed
    }
    let git = sb.git();
    let tip = git.find_commit(sb.branches()[LONGHORN]).unwrap();
    let who = git2::Signature::now("Maintainer", "maintainer@example.com").unwrap();
    let fix = git
        .commit(Some(&format!("refs/heads/{LONGHORN}")), &who, &who, "fix: values", &tip.tree().unwrap(), &[&tip])
        .unwrap();
    std::fs::write(sb.repo.join("README.md"), "moved\n").unwrap();
    commit_all(&git, "docs: move main", "Maintainer");
    let out = stdout(&sb.run(&[], &[]));
    assert!(out.contains(&format!("branches left alone (commits by others): {LONGHORN}")), "{out}");
    assert_eq!(sb.branches()[LONGHORN], fix);
}

/// Make `repo` a git repository with everything committed on `main`, and run `upkeep run` on it
/// (local forge, offline). Returns the repository and the run's report.
pub(crate) fn commit_and_run(repo: &Path, cache: &Path) -> (git2::Repository, String) {
    let git = git2::Repository::init_opts(repo, git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
    commit_all(&git, "initial", "Maintainer");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_upkeep"))
        .arg("run")
        .arg(repo)
        .env("UPKEEP_CACHE_DIR", cache)
        .env("UPKEEP_FLUX", "off")
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    (git, text)
}

/// A file as it stands on a branch.
fn file_on(git: &git2::Repository, branch: &str, file: &str) -> String {
    let tip = git.find_branch(branch, git2::BranchType::Local).unwrap_or_else(|_| panic!("no branch {branch}"));
    let tree = tip.get().peel_to_commit().unwrap().tree().unwrap();
    String::from_utf8(git.find_blob(tree.get_path(Path::new(file)).unwrap().id()).unwrap().content().to_vec()).unwrap()
}

/// A broken dashboard override does not stop the updates: the built-in dashboard is used and
/// the run says which file to fix. (A broken PR-body override does stop them: see above.)
#[test]
fn a_broken_dashboard_override_falls_back_and_is_reported() {
    let sb = Sandbox::example();
    let dir = sb.repo.join(".github/upkeep/templates");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.hbs"), "{{#each open}}unclosed").unwrap();
    commit_all(&sb.git(), "chore: a dashboard template", "Maintainer");
    let out = sb.try_run(&[], &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PRs opened: upkeep/"), "the updates went out: {text}");
    assert!(
        text.contains("dashboard.hbs") && text.contains("the built-in dashboard template was used instead"),
        "{text}"
    );
    let dashboard = std::fs::read_to_string(sb.repo.join(".upkeep/dashboard.md")).unwrap();
    assert!(dashboard.starts_with("# upkeep dependency dashboard"), "{dashboard}");
}

/// A digest beside a tag that cannot be refreshed (here a mirror that has tag lists but no
/// manifests, as in an air gap) holds that update with the reason; nothing half-written.
#[test]
fn a_pinned_digest_that_cannot_be_found_holds_only_that_update() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let tags = dir.path().join("mirror/charts/app/tags");
    std::fs::create_dir_all(&tags).unwrap();
    std::fs::write(tags.join("list"), r#"{"name":"charts/app","tags":["1.0.0","1.1.0"]}"#).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    std::fs::write(
        repo.join("source.yaml"),
        format!("apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: app\n  namespace: flux-system\nspec:\n  url: oci://registry.test/charts/app\n  ref:\n    tag: 1.0.0\n    digest: {digest}\n"),
    )
    .unwrap();
    std::fs::write(
        repo.join("upkeep.yaml"),
        "registryRewrites:\n  - from: oci://registry.test\n    to: file://../mirror\n",
    )
    .unwrap();
    let (git, text) = commit_and_run(&repo, &dir.path().join("cache"));
    assert!(text.contains("held: `ocirepository/flux-system/app` pins a digest beside its tag, and the digest of 1.1.0 could not be found"), "{text}");
    assert!(git.find_branch("upkeep/ocirepository-flux-system-app", git2::BranchType::Local).is_err());
}
