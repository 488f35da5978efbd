//! `upkeep run`: the writing half of the orchestrator (`app` does scan → lookup → gate; this
//! does edit → commit → branch → PR → dashboard).
//!
//! Idempotent by construction: a change's commit is compared by *tree and parent* with what its
//! branch already holds, PRs are found by head branch and only rewritten when their title, body
//! or labels differ, and the local forge writes files only when their content changes. So a
//! second run in a row writes nothing. A branch that only upkeep wrote is recreated on the new
//! tip of the default branch when that moves; a branch carrying anyone else's commit is never
//! rewritten: upkeep comments on its PR instead.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::app::{AppError, Versions, history, plan_with, scan_and_look_up};
use crate::cli::{ForgeKind, RunArgs};
use crate::edit::{Edit, apply};
use crate::extract::Scan;
use crate::forge::github::GithubForge;
use crate::forge::local::LocalForge;
use crate::forge::{Forge, NewPullRequest, PrState, PullRequest, closed_unmerged, marker, markers, retired_markers};
use crate::gate::history::History;
use crate::gate::versioning::Version;
use crate::gate::{Action, Decision, Plan};
use crate::git::{Author, GitError, Writer};
use crate::model::{Component, Dependency, Kind, SignalKind};
use crate::regenerate;
use crate::render::{
    DashboardView, NOTES_MAX, NotesSection, PrView, Renderer, UpdateRow, sanitize_inline, sanitize_notes,
};

/// Title of the dashboard.
pub const DASHBOARD_TITLE: &str = "upkeep dependency dashboard";

/// One PR's worth of updates.
struct Change<'a> {
    group: String,
    items: Vec<(&'a Dependency, &'a Decision)>,
}

impl Change<'_> {
    fn branch(&self) -> String {
        format!("upkeep/{}", self.group)
    }

    fn title(&self) -> String {
        match self.items.as_slice() {
            [(d, x)] => format!("chore(deps): update {} to {}", display_name(d), x.target.as_deref().unwrap_or("?")),
            items if items.iter().all(|(d, _)| d.component == Component::K3s) => {
                format!("chore(deps): update k3s to {}", items[0].1.target.as_deref().unwrap_or("?"))
            }
            items => format!("chore(deps): update {} ({} updates)", self.group, items.len()),
        }
    }

    fn message(&self) -> String {
        let mut m = format!("{}\n\n", self.title());
        for (d, x) in &self.items {
            m.push_str(&format!(
                "- {}: {} -> {}\n",
                d.id,
                d.current.as_deref().unwrap_or("?"),
                x.target.as_deref().unwrap_or("?")
            ));
        }
        m.push('\n');
        for (d, x) in &self.items {
            m.push_str(&format!(
                "Upkeep-Update: {} {} -> {}\n",
                d.id,
                d.current.as_deref().unwrap_or("?"),
                x.target.as_deref().unwrap_or("?")
            ));
        }
        m
    }
}

fn display_name(d: &Dependency) -> String {
    match d.kind {
        Kind::FluxComponents | Kind::FluxInstance => "flux".into(),
        Kind::Plan => "k3s".into(),
        _ => d.package.as_ref().map_or_else(|| d.name.clone(), |p| p.name.clone()),
    }
}

/// What a run did, for the report and tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Branches created or moved.
    pub branches: Vec<String>,
    /// PRs opened.
    pub opened: Vec<String>,
    /// PRs whose title/body/labels changed.
    pub updated: Vec<String>,
    /// PRs left alone because someone else committed to their branch.
    pub foreign: Vec<String>,
    /// PRs closed as superseded.
    pub closed: Vec<String>,
    /// Updates that could not be made, with why.
    pub errors: Vec<String>,
    /// Updates held by the writer itself (generated files): `(dependency, why)`.
    pub held: Vec<(String, String)>,
}

/// Run it all.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<(), AppError> {
    let (scan, config, versions) = scan_and_look_up(&args.scan)?;
    let author = match &args.author {
        Some(a) => Author::parse(a).ok_or_else(|| AppError::Run(format!("--author `{a}` is not `Name <email>`")))?,
        None => Author::default(),
    };
    let writer = Writer::open(&args.scan.path, author).map_err(|e| AppError::Run(e.to_string()))?;
    let workdir = writer
        .workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| AppError::Run("the repository has no work tree".into()))?;
    let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty());
    let (forge, remote): (Box<dyn Forge>, Option<String>) = match args.forge {
        ForgeKind::Local => (
            Box::new(LocalForge::new(args.prs_dir.clone().unwrap_or_else(|| default_prs_dir(&workdir)))),
            args.remote.clone(),
        ),
        ForgeKind::Github => {
            let api = std::env::var("GITHUB_API_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://api.github.com".into());
            let repo = args
                .repo
                .clone()
                .ok_or_else(|| AppError::Run("--forge github needs --repo owner/name or GITHUB_REPOSITORY".into()))?;
            let max_wait = std::env::var("UPKEEP_MAX_WAIT_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
            let forge = GithubForge::new(&api, &repo, token.as_deref().unwrap_or(""))
                .map_err(|e| AppError::Run(e.to_string()))?
                .with_max_wait(std::time::Duration::from_secs(max_wait));
            (Box::new(forge), Some(args.remote.clone().unwrap_or_else(|| "origin".into())))
        }
    };
    let forge = forge.as_ref();
    let prs = forge.upkeep_prs().map_err(|e| AppError::Run(e.to_string()))?;
    let (git_history, note) = history(&args.scan.path);
    let mut events = closed_unmerged(&prs);
    events.extend(git_history.events().iter().cloned());
    let memory = History::new(events);
    let open_groups: Vec<String> = prs
        .iter()
        .filter(|p| p.state == PrState::Open)
        .filter_map(|p| p.head.strip_prefix("upkeep/").map(str::to_string))
        .collect();
    let mut plan = plan_with(&scan, &versions, &config, &memory, &open_groups);
    plan.notes.extend(note);
    let renderer = Renderer::new(Some(&workdir)).map_err(|e| AppError::Run(e.to_string()))?;
    // Without knowing what the remote has, nothing can be pushed safely: stop before writing.
    let remote_heads = match remote.as_deref() {
        Some(r) if !args.dry_run => {
            writer.remote_branches(r, token.as_deref()).map_err(|e| AppError::Run(e.to_string()))?
        }
        _ => BTreeMap::new(),
    };
    let prefix = scan_prefix(&args.scan.path, &workdir);
    let ctx = Ctx {
        writer: &writer,
        forge,
        renderer: &renderer,
        prefix,
        versions: &versions,
        remote: remote.as_deref(),
        remote_heads,
        token: token.as_deref(),
    };
    let mut outcome = write_changes(&ctx, &scan, &plan, &prs, args.dry_run, out)?;
    if !args.dry_run {
        // The updates are written by now: a dashboard that cannot be (issues turned off, a
        // broken template override) is one more error to report, not a reason to hide the rest.
        let view = dashboard(&scan, &versions, &plan, &outcome, forge);
        let written = renderer
            .render("dashboard", &view)
            .map_err(|e| e.to_string())
            .and_then(|body| forge.dashboard(DASHBOARD_TITLE, &body).map_err(|e| e.to_string()));
        if let Err(e) = written {
            outcome.errors.push(format!("dependency dashboard: {e}"));
        }
    }
    report(&outcome, &plan, args.dry_run, out)?;
    job_summary(&renderer, &outcome, &plan, args.dry_run);
    if !outcome.errors.is_empty() {
        return Err(AppError::Run(format!(
            "{} update(s) could not be written (listed above and on the dashboard); the rest were",
            outcome.errors.len()
        )));
    }
    Ok(())
}

struct Ctx<'a> {
    writer: &'a Writer,
    forge: &'a dyn Forge,
    renderer: &'a Renderer,
    prefix: String,
    versions: &'a Versions,
    remote: Option<&'a str>,
    /// upkeep's branches on the remote, read once per run.
    remote_heads: BTreeMap<String, git2::Oid>,
    token: Option<&'a str>,
}

/// The scanned folder's path inside the repository (`""` at the root, else `sub/dir/`).
fn scan_prefix(scan_root: &Path, workdir: &Path) -> String {
    let root = scan_root.canonicalize().unwrap_or_else(|_| scan_root.to_path_buf());
    let work = workdir.canonicalize().unwrap_or_else(|_| workdir.to_path_buf());
    match root.strip_prefix(&work) {
        Ok(p) if p.as_os_str().is_empty() => String::new(),
        Ok(p) => format!("{}/", p.to_string_lossy().replace('\\', "/")),
        Err(_) => String::new(),
    }
}

fn changes<'a>(scan: &'a Scan, plan: &'a Plan) -> Vec<Change<'a>> {
    let mut by_group: BTreeMap<String, Vec<(&Dependency, &Decision)>> = BTreeMap::new();
    for d in &scan.dependencies {
        if let Some(x) = plan.decisions.get(&d.id).filter(|x| x.action == Action::Propose)
            && let Some(group) = &x.group
        {
            by_group.entry(group.clone()).or_default().push((d, x));
        }
    }
    by_group.into_iter().map(|(group, items)| Change { group, items }).collect()
}

fn write_changes(
    ctx: &Ctx<'_>,
    scan: &Scan,
    plan: &Plan,
    prs: &[PullRequest],
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<Outcome, AppError> {
    let mut outcome = Outcome::default();
    let (base_name, base) = ctx.writer.default_branch().map_err(|e| AppError::Run(e.to_string()))?;
    let changes = changes(scan, plan);
    for change in &changes {
        // A gotk-components.yaml is generated, not patched: regenerate it with the flux CLI of
        // the target version, or hold it with the exact command to run.
        let (generated, mut items): (Vec<_>, Vec<_>) =
            change.items.iter().copied().partition(|(d, _)| d.kind == Kind::FluxComponents);
        let mut whole = BTreeMap::new();
        for (d, x) in generated {
            match regenerate_components(ctx, base, d, x) {
                Ok((path, file)) => {
                    whole.insert(path, file);
                    items.push((d, x));
                }
                Err(why) => outcome.held.push((d.id.clone(), why)),
            }
        }
        if items.is_empty() {
            continue;
        }
        let change = Change { group: change.group.clone(), items };
        match write_change(ctx, &change, &whole, &base_name, base, prs, dry_run, out) {
            Ok(done) => merge(&mut outcome, done),
            Err(e) => outcome.errors.push(format!("{}: {e}", change.branch())),
        }
    }
    if !dry_run {
        close_superseded(ctx, scan, &changes, plan, prs, base, &mut outcome);
    }
    Ok(outcome)
}

/// Move `branch` from `expected` to `commit`: with a remote, push first (with the lease) and
/// mirror the local branch only once the remote took it, so a failed push leaves nothing
/// behind that a later run would mistake for done; without one, move the local branch with
/// the same lease.
fn publish(ctx: &Ctx<'_>, branch: &str, commit: git2::Oid, expected: Option<git2::Oid>) -> Result<(), GitError> {
    match ctx.remote {
        Some(remote) => {
            ctx.writer.push_commit(remote, branch, commit, expected, ctx.token)?;
            ctx.writer.mirror_branch(branch, commit)
        }
        None => ctx.writer.set_branch(branch, commit, expected, "upkeep: update branch"),
    }
}

/// A regenerated file: its new text and the command that produced it.
struct Regenerated {
    text: String,
    command: String,
}

/// Regenerate the gotk-components file of `d` for the target of `x`, or say why not, with the
/// exact command a maintainer can run instead.
fn regenerate_components(
    ctx: &Ctx<'_>,
    base: git2::Oid,
    d: &Dependency,
    x: &Decision,
) -> Result<(String, Regenerated), String> {
    let path = format!("{}{}", ctx.prefix, d.manifest.file);
    let target = x.target.as_deref().unwrap_or("?");
    let current = ctx.writer.read(base, &path).map_err(|e| e.to_string())?.unwrap_or_default();
    let flags = regenerate::install_flags(&current);
    let command = regenerate::command(&flags, &path);
    let held = |why: &str| {
        format!("`{}` is generated, not patched ({why}): with flux {target} on PATH run `{command}` and commit", d.id)
    };
    let Some(flux) = regenerate::find_flux() else {
        return Err(held("no flux CLI on PATH"));
    };
    match regenerate::regenerate(&flux, target, &current, &flags) {
        Ok(text) => Ok((path, Regenerated { text, command })),
        Err(e) => Err(held(&e.0)),
    }
}

fn merge(into: &mut Outcome, from: Outcome) {
    into.branches.extend(from.branches);
    into.opened.extend(from.opened);
    into.updated.extend(from.updated);
    into.foreign.extend(from.foreign);
    into.errors.extend(from.errors);
}

#[allow(clippy::too_many_arguments)]
fn write_change(
    ctx: &Ctx<'_>,
    change: &Change<'_>,
    whole: &BTreeMap<String, Regenerated>,
    base_name: &str,
    base: git2::Oid,
    prs: &[PullRequest],
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<Outcome, String> {
    let mut outcome = Outcome::default();
    // Edits grouped by file, applied to the file as the default branch has it.
    let mut by_file: BTreeMap<String, Vec<Edit>> = BTreeMap::new();
    for (d, x) in &change.items {
        if d.kind == Kind::FluxComponents {
            continue; // regenerated whole, below
        }
        let location = d.location.clone().ok_or_else(|| format!("{} has no version location", d.id))?;
        let path = format!("{}{}", ctx.prefix, location.file);
        by_file.entry(path).or_default().push(Edit {
            dependency: d.id.clone(),
            location,
            from: d.current.clone().unwrap_or_default(),
            // A FluxInstance names a Flux release (a tag, `v2.4.0`) in its own spelling; every
            // other version is written exactly as its index or registry names it.
            to: if d.kind == Kind::FluxInstance {
                crate::edit::in_style_of(d.current.as_deref().unwrap_or(""), x.target.as_deref().unwrap_or(""))
            } else {
                x.target.clone().unwrap_or_default()
            },
        });
    }
    let mut files = Vec::new();
    for (path, edits) in &by_file {
        let before = ctx
            .writer
            .read(base, path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{path} is not in {base_name}"))?;
        let after = apply(path, &before, edits).map_err(|e| e.to_string())?;
        files.push((path.clone(), before, after));
    }
    for (path, regenerated) in whole {
        let before = ctx
            .writer
            .read(base, path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{path} is not in {base_name}"))?;
        files.push((path.clone(), before, regenerated.text.clone()));
    }
    let branch = change.branch();
    let title = change.title();
    if dry_run {
        writeln!(out, "branch {branch}: {title}").map_err(|e| e.to_string())?;
        for (path, before, after) in &files {
            let diff = if whole.contains_key(path) {
                crate::git::unified_diff(path, before, after).map_err(|e| e.to_string())?
            } else {
                line_diff(path, before, after)
            };
            write!(out, "{diff}").map_err(|e| e.to_string())?;
        }
        writeln!(out).map_err(|e| e.to_string())?;
        return Ok(outcome);
    }
    let contents: Vec<(String, String)> = files.iter().map(|(p, _, a)| (p.clone(), a.clone())).collect();
    let tree = ctx.writer.tree_with(base, &contents).map_err(|e| e.to_string())?;
    let existing_pr = prs.iter().find(|p| p.head == branch && p.state == PrState::Open);
    // Where the branch stands: on the remote when there is one (a CI checkout has no local
    // upkeep branches), else locally.
    let current = match ctx.remote {
        Some(_) => ctx.remote_heads.get(&branch).copied(),
        None => ctx.writer.branch_tip(&branch),
    };
    match current {
        Some(current) => {
            let (t, parent) = ctx.writer.tree_and_parent(current).map_err(|e| e.to_string())?;
            if t == tree && parent == Some(base) {
                if ctx.remote.is_some() {
                    ctx.writer.mirror_branch(&branch, current).map_err(|e| e.to_string())?;
                }
            } else {
                let state = ctx.writer.branch_state(current, base).map_err(|e| e.to_string())?;
                // Someone's commits on the branch of an open PR are theirs to keep. A branch left
                // over from a merged or closed PR is upkeep's to start again (its commits stay
                // reachable from that PR).
                if !state.foreign.is_empty() && existing_pr.is_some() {
                    let note = format!(
                        "upkeep did not update this branch: it has commits upkeep did not write ({}). Rebase or close it yourself; upkeep will not rewrite your work.",
                        state.foreign.join(", ")
                    );
                    if let Some(pr) = existing_pr
                        && !ctx.forge.comments(pr.number).map_err(|e| e.to_string())?.contains(&note)
                    {
                        ctx.forge.comment(pr.number, &note).map_err(|e| e.to_string())?;
                    }
                    outcome.foreign.push(branch);
                    return Ok(outcome);
                }
                let commit = ctx.writer.commit(base, tree, &change.message()).map_err(|e| e.to_string())?;
                publish(ctx, &branch, commit, Some(current)).map_err(|e| e.to_string())?;
                outcome.branches.push(branch.clone());
            }
        }
        None => {
            let commit = ctx.writer.commit(base, tree, &change.message()).map_err(|e| e.to_string())?;
            publish(ctx, &branch, commit, None).map_err(|e| e.to_string())?;
            outcome.branches.push(branch.clone());
        }
    }
    let body = pr_body(ctx, change, whole).map_err(|e| e.to_string())?;
    let labels = change
        .items
        .iter()
        .flat_map(|(_, x)| x.labels.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>();
    match existing_pr {
        Some(pr) => {
            if pr.title != title || pr.body != body || !labels.iter().all(|l| pr.labels.contains(l)) {
                ctx.forge.update(pr.number, &title, &body, &labels).map_err(|e| e.to_string())?;
                outcome.updated.push(branch);
            }
        }
        None => {
            let reviewers = change
                .items
                .iter()
                .flat_map(|(_, x)| x.reviewers.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let automerge = change.items.iter().all(|(_, x)| x.automerge);
            let draft = change.items.iter().any(|(_, x)| x.draft);
            ctx.forge
                .create(&NewPullRequest {
                    head: branch.clone(),
                    base: base_name.to_string(),
                    title,
                    body,
                    labels,
                    reviewers,
                    automerge,
                    draft,
                })
                .map_err(|e| e.to_string())?;
            outcome.opened.push(branch);
        }
    }
    Ok(outcome)
}

/// A unified-style diff of a version edit (edits never add or remove lines).
fn line_diff(path: &str, before: &str, after: &str) -> String {
    let mut out = format!("--- a/{path}\n+++ b/{path}\n");
    for (i, (a, b)) in before.split_inclusive('\n').zip(after.split_inclusive('\n')).enumerate() {
        if a != b {
            out.push_str(&format!(
                "@@ -{n} +{n} @@\n-{}\n+{}\n",
                a.trim_end_matches(['\n', '\r']),
                b.trim_end_matches(['\n', '\r']),
                n = i + 1
            ));
        }
    }
    out
}

/// The release date (a date, not an age: the body must not change from one day to the next).
fn age(published: Option<jiff::Timestamp>) -> String {
    published.map_or_else(|| "-".into(), |p| p.strftime("%Y-%m-%d").to_string())
}

fn pr_body(
    ctx: &Ctx<'_>,
    change: &Change<'_>,
    whole: &BTreeMap<String, Regenerated>,
) -> Result<String, crate::render::RenderError> {
    let mut view = PrView {
        updates: Vec::new(),
        plural: change.items.len() > 1,
        warnings: Vec::new(),
        notes: Vec::new(),
        after_merge: Vec::new(),
        security: false,
    };
    for (d, x) in &change.items {
        let from = d.current.clone().unwrap_or_default();
        let to = x.target.clone().unwrap_or_default();
        let releases = match ctx.versions.releases.get(&d.id) {
            Some(Ok(r)) => r.as_slice(),
            _ => &[],
        };
        let (vf, vt) = (Version::parse(&from), Version::parse(&to));
        let mut between: Vec<(Version, &crate::model::Release)> = releases
            .iter()
            .filter_map(|r| Version::parse(&r.version.replace('_', "+")).map(|v| (v, r)))
            .filter(|(v, _)| match (&vf, &vt) {
                (Some(f), Some(t)) => v > f && v <= t,
                _ => false,
            })
            .collect();
        between.sort_by(|a, b| b.0.cmp(&a.0));
        let between: Vec<&crate::model::Release> = between.into_iter().map(|(_, r)| r).collect();
        let target = releases.iter().find(|r| r.version == to);
        view.updates.push(UpdateRow {
            dependency: d.id.clone(),
            package: if d.kind == Kind::Plan { format!("k3s (Plan {})", d.name) } else { display_name(d) },
            from: from.clone(),
            to: to.clone(),
            update_type: x.update_type.map_or("-", |u| u.as_str()).to_string(),
            age: age(target.and_then(|r| r.published)),
            file: d.location.as_ref().map_or_else(|| d.manifest.file.clone(), |l| format!("{}{}", ctx.prefix, l.file)),
            line: d.line(),
        });
        for r in &between {
            for s in &r.signals {
                match s.kind {
                    SignalKind::Security => {
                        view.security = true;
                        view.warnings.push(format!(
                            "Security ({} {}): {}",
                            display_name(d),
                            r.version,
                            sanitize_inline(&s.detail)
                        ));
                    }
                    SignalKind::Breaking => view.warnings.push(format!(
                        "Breaking change ({} {}): {}",
                        display_name(d),
                        r.version,
                        sanitize_inline(&s.detail)
                    )),
                    SignalKind::Deprecated => view.warnings.push(format!(
                        "Deprecated ({} {}): {}",
                        display_name(d),
                        r.version,
                        sanitize_inline(&s.detail)
                    )),
                    SignalKind::KubeVersion => {}
                }
            }
        }
        if let Some((step, of)) = x.step {
            let why = x
                .reason
                .split("; ")
                .find(|p| p.starts_with("step"))
                .and_then(|p| p.split_once(": "))
                .map_or("", |(_, why)| why);
            view.warnings.push(format!("Upgrade path: step {step} of {of}; {why}"));
        }
        for r in between.iter().take(5) {
            if view.notes.iter().any(|n| n.dependency == display_name(d) && n.version == r.version) {
                continue;
            }
            if let Some(notes) = &r.notes {
                view.notes.push(NotesSection {
                    dependency: display_name(d),
                    version: r.version.clone(),
                    url: r.url.clone().filter(|u| u.starts_with("https://")),
                    body: sanitize_notes(notes, NOTES_MAX, r.url.as_deref()),
                });
            }
        }
        view.after_merge.extend(after_merge(d, &to));
    }
    for (path, regenerated) in whole {
        view.warnings.push(format!(
            "`{path}` was regenerated with `{}`. The flags were read back from the old file; a bootstrap flag that leaves no trace in it is not carried over, so compare with how you bootstrapped.",
            regenerated.command
        ));
    }
    view.warnings.dedup();
    view.after_merge.push("Flux's GitRepository reports an artifact revision that contains the merge commit, and the Kustomizations that apply the changed files become Ready at it.".into());
    view.after_merge.push("Then a soak period of workload health (Deployments, StatefulSets and DaemonSets ready, no crash loops). If anything fails, upkeep opens a revert PR with the evidence.".into());
    view.after_merge.dedup();
    let mut body = ctx.renderer.render_pr_body(view)?;
    body.push('\n');
    for (d, x) in &change.items {
        body.push_str(&marker(&d.id, d.current.as_deref().unwrap_or("?"), x.target.as_deref().unwrap_or("?")));
        body.push('\n');
    }
    Ok(body)
}

fn after_merge(d: &Dependency, to: &str) -> Vec<String> {
    let ns = d.namespace.as_deref().unwrap_or("-");
    match d.component {
        Component::K3s => vec![format!(
            "The system-upgrade-controller Plan {ns}/{} reaches Complete and its nodes report k3s {to} and Ready.",
            d.name
        )],
        Component::Longhorn => vec![
            format!("HelmRelease {ns}/{} reports Ready with chart {to} at the top of its history.", d.name),
            "Longhorn volumes stay healthy (no degraded or faulted volumes). Longhorn cannot be downgraded: if this fails, upkeep opens a forward-fix issue instead of a revert.".into(),
        ],
        Component::Flux => vec!["Every Flux controller reports the new version and all Kustomizations and HelmReleases return to Ready.".into()],
        Component::App => match d.kind {
            Kind::HelmRelease => vec![format!("HelmRelease {ns}/{} reports Ready (UpgradeSucceeded) with chart {to} at the top of its history.", d.name)],
            _ => vec![format!("{} {ns}/{} serves {to} and everything that uses it reconciles.", d.kind.as_str(), d.name)],
        },
    }
}

/// Close open upkeep PRs none of whose updates is still proposed or held in their group.
fn close_superseded(
    ctx: &Ctx<'_>,
    scan: &Scan,
    changes: &[Change<'_>],
    plan: &Plan,
    prs: &[PullRequest],
    base: git2::Oid,
    outcome: &mut Outcome,
) {
    let live: BTreeSet<String> = changes.iter().map(Change::branch).collect();
    // Without the whole repository in view (a sub-folder scan, a file that failed to parse),
    // a dependency missing from the scan may still exist: only a full, clean scan may say
    // "no longer found".
    let whole_scan = ctx.prefix.is_empty() && scan.errors.is_empty();
    for pr in prs.iter().filter(|p| p.state == PrState::Open && p.head.starts_with("upkeep/")) {
        if live.contains(&pr.head) {
            continue;
        }
        let group = pr.head.trim_start_matches("upkeep/");
        // A half-finished close from an earlier run has only retired markers: finish it.
        let updates = match markers(&pr.body) {
            m if m.is_empty() => retired_markers(&pr.body),
            m => m,
        };
        if updates.is_empty() {
            continue;
        }
        // Close only on evidence: every dependency was found and looked up, and none is still
        // proposed or held for this PR. A failed lookup ("versions unknown") proves nothing.
        let keep = updates.iter().any(|(dep, _, _)| match plan.decisions.get(dep) {
            None => !whole_scan,
            Some(x) => {
                !matches!(ctx.versions.releases.get(dep), Some(Ok(_)))
                    || (matches!(x.action, Action::Hold | Action::Propose) && x.group.as_deref() == Some(group))
                    || (x.action == Action::Hold && x.group.is_none())
            }
        });
        if keep {
            continue;
        }
        let why = updates
            .iter()
            .map(|(dep, _, _)| {
                format!("{dep}: {}", plan.decisions.get(dep).map_or("no longer found", |x| x.reason.as_str()))
            })
            .collect::<Vec<_>>()
            .join("; ");
        // Closed by upkeep is not "refused by a maintainer": retire the markers first so the
        // versions stay proposable (in the PR that replaces this one).
        let retired = pr.body.replace("<!-- upkeep-update: ", "<!-- upkeep-superseded: ");
        let closed = ctx
            .forge
            .update(pr.number, &pr.title, &retired, &[])
            .and_then(|()| ctx.forge.close(pr.number, &format!("Superseded, closing: {why}")));
        match closed {
            Ok(()) => {
                outcome.closed.push(pr.head.clone());
                if let Err(e) = delete_superseded_branch(ctx, &pr.head, base) {
                    outcome.errors.push(format!("{}: closed, but its branch stays: {e}", pr.head));
                }
            }
            Err(e) => outcome.errors.push(format!("{}: {e}", pr.head)),
        }
    }
}

/// Delete the branch of a PR upkeep closed, as Renovate does, unless someone else committed
/// to it; remote first (under a lease), then the local mirror.
fn delete_superseded_branch(ctx: &Ctx<'_>, branch: &str, base: git2::Oid) -> Result<(), GitError> {
    let tip = match ctx.remote {
        Some(_) => ctx.remote_heads.get(branch).copied(),
        None => ctx.writer.branch_tip(branch),
    };
    let Some(tip) = tip else { return Ok(()) };
    if !ctx.writer.branch_state(tip, base)?.foreign.is_empty() {
        return Ok(()); // someone's work is on it: leave it for them
    }
    if let Some(remote) = ctx.remote {
        ctx.writer.delete_remote_branch(remote, branch, tip, ctx.token)?;
    }
    match ctx.writer.branch_tip(branch) {
        Some(local) => ctx.writer.delete_branch(branch, local),
        None => Ok(()),
    }
}

fn dashboard(scan: &Scan, versions: &Versions, plan: &Plan, outcome: &Outcome, forge: &dyn Forge) -> DashboardView {
    let mut view = DashboardView { notes: plan.notes.clone(), ..DashboardView::default() };
    let open: Vec<PullRequest> =
        forge.upkeep_prs().unwrap_or_default().into_iter().filter(|p| p.state == PrState::Open).collect();
    for pr in &open {
        view.open.push(format!("#{} {} (`{}`)", pr.number, pr.title, pr.head));
    }
    let open_heads: BTreeSet<&str> = open.iter().map(|p| p.head.as_str()).collect();
    for (id, x) in &plan.decisions {
        if outcome.held.iter().any(|(held, _)| held == id) {
            continue;
        }
        let line = format!("`{id}`: {}", x.reason);
        match x.action {
            Action::Propose
                if !x.group.as_ref().is_some_and(|g| open_heads.contains(format!("upkeep/{g}").as_str())) =>
            {
                view.pending.push(line)
            }
            Action::Hold => view.held.push(line),
            Action::Blocked => view.blocked.push(line),
            _ => {}
        }
    }
    view.held.extend(outcome.held.iter().map(|(_, why)| why.clone()));
    view.not_updatable.extend(scan.dependencies.iter().filter_map(|d| {
        d.skip.as_ref().map(|s| {
            format!("`{}` (`{}:{}`): {}", d.id, d.manifest.file, d.manifest.line, s.message.replace(['\n', '\r'], " "))
        })
    }));
    view.errors.extend(scan.errors.iter().map(|e| format!("`{}`: {}", crate::report::error_place(e), e.message)));
    view.errors.extend(versions.failures.iter().map(|f| format!("`{}`: {}: {}", f.id, f.url, f.message)));
    view.errors.extend(outcome.errors.iter().cloned());
    view
}

fn report(outcome: &Outcome, plan: &Plan, dry_run: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    if !dry_run {
        writeln!(out, "branches written: {}", list(&outcome.branches))?;
        writeln!(out, "PRs opened: {}", list(&outcome.opened))?;
        writeln!(out, "PRs updated: {}", list(&outcome.updated))?;
        writeln!(out, "PRs closed as superseded: {}", list(&outcome.closed))?;
        writeln!(out, "branches left alone (commits by others): {}", list(&outcome.foreign))?;
    }
    for (_, h) in &outcome.held {
        writeln!(out, "held: {h}")?;
    }
    for e in &outcome.errors {
        writeln!(out, "error: {e}")?;
    }
    writeln!(out, "{}", crate::report::plan_summary(plan))
}

/// On GitHub Actions, append what this run did to the job summary (`GITHUB_STEP_SUMMARY`).
/// A summary that cannot be written is a warning: the run itself went through.
fn job_summary(renderer: &Renderer, outcome: &Outcome, plan: &Plan, dry_run: bool) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else { return };
    let view = crate::render::SummaryView {
        dry_run,
        counts: crate::report::plan_summary(plan),
        branches: outcome.branches.clone(),
        opened: outcome.opened.clone(),
        updated: outcome.updated.clone(),
        closed: outcome.closed.clone(),
        foreign: outcome.foreign.clone(),
        held: outcome.held.iter().map(|(_, why)| why.clone()).collect(),
        errors: outcome.errors.clone(),
    };
    let written = renderer.render("summary", &view).map_err(|e| e.to_string()).and_then(|text| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = written {
        tracing::warn!("could not write the job summary to {}: {e}", std::path::Path::new(&path).display());
    }
}

/// The PR directory the local forge uses for a repository.
pub fn default_prs_dir(workdir: &Path) -> PathBuf {
    workdir.join(".upkeep").join("prs")
}
