//! `upkeep run`: the writing half of the orchestrator (`app` does scan → lookup → gate; this
//! does edit → commit → branch → PR → dashboard).
//!
//! Idempotent by construction: a change's commit is compared by *tree and parent* with what its
//! branch already holds, PRs are found by head branch and only rewritten when their title, body
//! or labels differ, and the local forge writes files only when their content changes. So a
//! second run in a row writes nothing. A branch that only upkeep wrote is recreated on the new
//! tip of the default branch when that moves; a branch carrying anyone else's commit is never
//! rewritten: upkeep comments on its PR instead.

mod body;
mod dashboard;
mod platform_chain;
mod supersede;
mod write;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use self::dashboard::dashboard;
use self::supersede::close_superseded;
use self::write::{Base, Prepared, regenerate_components, write_change};
use crate::app::{AppError, Versions, history, plan_with, scan_and_look_up};
use crate::cli::{ForgeKind, RunArgs};
use crate::extract::Scan;
use crate::forge::github::GithubForge;
use crate::forge::local::LocalForge;
use crate::forge::{Forge, PullRequest};
use crate::gate::history::History;
use crate::gate::{Action, Decision, Plan};
use crate::git::{Author, Writer};
use crate::model::{Component, Dependency, Kind};
use crate::render::Renderer;

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

/// How a dependency is named in titles and reports: the chart, `flux` or `k3s`.
pub fn display_name(d: &Dependency) -> String {
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
    let (forge, remote) = open_forge(
        args.forge,
        args.prs_dir.as_deref(),
        args.repo.as_deref(),
        args.remote.as_deref(),
        &workdir,
        token.as_deref(),
    )?;
    let forge = forge.as_ref();
    let prs = forge.upkeep_prs().map_err(|e| AppError::Run(e.to_string()))?;
    let (git_history, note) = history(&args.scan.path);
    let (mut events, open_groups) = crate::forge::memory(&prs);
    events.extend(git_history.events().iter().cloned());
    let memory = History::new(events);
    let mut plan = plan_with(&scan, &versions, &config, &memory, &open_groups);
    plan.notes.extend(note);
    let renderer = Renderer::new(Some(&workdir)).map_err(|e| AppError::Run(e.to_string()))?;
    // Without knowing what the remote has, nothing can be pushed safely: stop before writing.
    let remote_heads = match remote.as_deref() {
        Some(r) if !args.dry_run => {
            let state = writer.remote_branches(r, token.as_deref()).map_err(|e| AppError::Run(e.to_string()))?;
            check_base(&writer, r, &state)?;
            state.branches
        }
        _ => BTreeMap::new(),
    };
    let prefix = scan_prefix(&args.scan.path, &workdir);
    // Built on first need: most repositories pin no digest beside a tag.
    let resolver = std::cell::OnceCell::new();
    let digests =
        |package: &crate::model::Package, tag: &str| digest_of(&resolver, &config, args.scan.offline, package, tag);
    let ctx = Ctx {
        writer: &writer,
        forge,
        renderer: &renderer,
        prefix,
        versions: &versions,
        remote: remote.as_deref(),
        remote_heads,
        digests: &digests,
        token: token.as_deref(),
        evidence: config.verify.evidence,
        graph: &scan.flux_graph,
    };
    let mut outcome = write_changes(&ctx, &scan, &plan, &prs, args.dry_run, out)?;
    outcome.errors.extend(renderer.problems().iter().cloned());
    outcome.errors.extend(all_lookups_failed(&versions));
    if !args.dry_run {
        // The updates are written by now: a dashboard that cannot be (issues turned off, a
        // broken template override) is one more error to report, not a reason to hide the rest.
        let mut view = dashboard(&scan, &versions, &plan, &outcome, forge);
        self::dashboard::recently_verified(&writer, forge, config.verify.horizon, &mut view);
        let written = renderer
            .render_dashboard(view)
            .map_err(|e| e.to_string())
            .and_then(|body| forge.dashboard(DASHBOARD_TITLE, &body).map_err(|e| e.to_string()));
        if let Err(e) = written {
            outcome.errors.push(format!("dependency dashboard: {e}"));
        }
    }
    report(&outcome, &plan, args.dry_run, out)?;
    crate::action::set_outputs(&[
        ("prs-opened", outcome.opened.len().to_string()),
        ("prs-updated", outcome.updated.len().to_string()),
    ]);
    job_summary(&renderer, &outcome, &plan, versions.failures.len(), args.dry_run);
    if !outcome.errors.is_empty() {
        return Err(AppError::Run(format!(
            "{} update(s) could not be written (listed above and on the dashboard); the rest were",
            outcome.errors.len()
        )));
    }
    Ok(())
}

/// Nothing learned at all (a bad token, a dead mirror) is a failed run, not a quiet one.
fn all_lookups_failed(versions: &crate::app::Versions) -> Option<String> {
    let looked_up = versions.releases.len();
    (looked_up > 0 && versions.releases.values().all(Result::is_err)).then(|| {
        format!(
            "every one of {looked_up} lookups failed (first: {}); check credentials, rewrites and the network",
            versions.failures.first().map_or_else(String::new, |f| format!("{}: {}", f.url, f.message))
        )
    })
}

/// The registry digest of `tag`, through a resolver built on first need.
fn digest_of(
    resolver: &std::cell::OnceCell<crate::app::DigestResolver>,
    config: &crate::config::Config,
    offline: bool,
    package: &crate::model::Package,
    tag: &str,
) -> Result<String, String> {
    let resolver = match resolver.get() {
        Some(r) => r,
        None => {
            let built = crate::app::DigestResolver::new(config, offline).map_err(|e| e.to_string())?;
            resolver.get_or_init(|| built)
        }
    };
    resolver.digest(package, tag)
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
    /// The digest of a tag, for OCIRepositories that pin one beside their tag.
    digests: &'a dyn Fn(&crate::model::Package, &str) -> Result<String, String>,
    token: Option<&'a str>,
    /// Where the verifier's evidence will come from (`verify.evidence`): PR bodies say what it
    /// will wait for.
    evidence: crate::config::EvidenceSource,
    /// What the repository's Flux Kustomizations apply.
    graph: &'a crate::extract::flux_graph::FluxGraph,
}

/// Branches are cut from the checked-out commit, so it must be the remote's default branch at
/// its tip: not a feature branch (a `workflow_dispatch` from elsewhere), not an old commit (a
/// re-run of an old job), not local commits nobody pushed.
fn check_base(writer: &Writer, remote: &str, state: &crate::git::RemoteState) -> Result<(), AppError> {
    let Some((default, tip)) = &state.default else { return Ok(()) };
    let (name, local) = writer.default_branch().map_err(|e| AppError::Run(e.to_string()))?;
    if &name != default {
        return Err(AppError::Run(format!(
            "`{name}` is checked out, but {remote}'s default branch is `{default}`: upkeep cuts its branches from the default branch, so check that out"
        )));
    }
    if local != *tip {
        let short = |o: &git2::Oid| o.to_string()[..12].to_string();
        return Err(AppError::Run(format!(
            "the checkout of `{name}` is at {}, {remote} has {}: fetch and check out its tip first (an old job re-run, or unpushed commits)",
            short(&local),
            short(tip)
        )));
    }
    Ok(())
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
        // A digest pinned beside a tag moves with it: find the target's digest now, and hold
        // just that update (offline, a mirror without manifests, a registry error) if it cannot be.
        let mut pins = BTreeMap::new();
        items.retain(|(d, x)| {
            let (Some(location), Some(package), Some(target)) = (&d.location, &d.package, x.target.as_deref()) else {
                return true;
            };
            if location.digest.is_none() {
                return true;
            }
            match (ctx.digests)(package, target) {
                Ok(digest) => {
                    pins.insert(d.id.clone(), digest);
                    true
                }
                Err(e) => {
                    outcome.held.push((
                        d.id.clone(),
                        format!("`{}` pins a digest beside its tag, and the digest of {target} could not be found ({e}): the update waits", d.id),
                    ));
                    false
                }
            }
        });
        if items.is_empty() {
            continue;
        }
        let change = Change { group: change.group.clone(), items };
        let prepared = Prepared { whole, pins };
        let on = Base { name: &base_name, commit: base, prs };
        let ids: Vec<&str> = change.items.iter().map(|(d, _)| d.id.as_str()).collect();
        let ids = ids.join(",");
        match write_change(ctx, &change, &prepared, &on, dry_run, out) {
            Ok(done) => {
                for pr in &done.opened {
                    tracing::info!(dependency = %ids, branch = %change.branch(), pr = %pr, "opened a PR");
                }
                merge(&mut outcome, done)
            }
            Err(e) => {
                tracing::warn!(dependency = %ids, branch = %change.branch(), "update not written: {e}");
                outcome.errors.push(format!("{}: {e}", change.branch()))
            }
        }
    }
    if !dry_run {
        close_superseded(ctx, scan, &changes, plan, prs, base, &mut outcome);
    }
    Ok(outcome)
}

fn merge(into: &mut Outcome, from: Outcome) {
    into.branches.extend(from.branches);
    into.opened.extend(from.opened);
    into.updated.extend(from.updated);
    into.foreign.extend(from.foreign);
    into.errors.extend(from.errors);
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
fn job_summary(renderer: &Renderer, outcome: &Outcome, plan: &Plan, lookup_errors: usize, dry_run: bool) {
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
        lookup_errors,
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

/// The forge for `kind`, and the remote upkeep pushes to (none by default for the local forge,
/// `origin` for GitHub). `run`, `verify` and `revert` share it.
pub fn open_forge(
    kind: ForgeKind,
    prs_dir: Option<&Path>,
    repo: Option<&str>,
    remote: Option<&str>,
    workdir: &Path,
    token: Option<&str>,
) -> Result<(Box<dyn Forge>, Option<String>), AppError> {
    match kind {
        ForgeKind::Local => Ok((
            Box::new(LocalForge::new(prs_dir.map_or_else(|| default_prs_dir(workdir), Path::to_path_buf))),
            remote.map(str::to_string),
        )),
        ForgeKind::Github => {
            let api = std::env::var("GITHUB_API_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://api.github.com".into());
            let repo = repo
                .ok_or_else(|| AppError::Run("--forge github needs --repo owner/name or GITHUB_REPOSITORY".into()))?;
            let max_wait = std::env::var("UPKEEP_MAX_WAIT_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
            let forge = GithubForge::new(&api, repo, token.unwrap_or(""))
                .map_err(|e| AppError::Run(e.to_string()))?
                .with_max_wait(std::time::Duration::from_secs(max_wait));
            Ok((Box::new(forge), Some(remote.unwrap_or("origin").to_string())))
        }
    }
}

/// The PR directory the local forge uses for a repository.
pub fn default_prs_dir(workdir: &Path) -> PathBuf {
    workdir.join(".upkeep").join("prs")
}
