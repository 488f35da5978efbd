//! `upkeep verify` and `upkeep revert`: the orchestration around `crate::verify`. This is where
//! the verifier meets the rest of upkeep (the scan that names dependencies, the config, the
//! forge, the revert proof), so `verify` itself depends on none of them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;

use super::AppError;
use crate::cli::{ForgeKind, RevertArgs, VerifyArgs, WriteArgs};
use crate::config::{self, Config, EvidenceSource};
use crate::extract::{self, Scan, ScanOptions};
use crate::forge::Forge;
use crate::gate::checks::CheckSpec;
use crate::gate::rules::{OnFailure, checks_for, parse_duration, settings_for};
use crate::gate::versioning::{Version, classify};
use crate::git::{Author, FileChange, Merge, Update, Writer};
use crate::lookup::http::HttpConfig;
use crate::model::Kind;
use crate::render::Renderer;
use crate::report::Format;
use crate::verify::act::{Actor, Failed, Reverted};
use crate::verify::checks::Checks;
use crate::verify::cluster::Cluster;
use crate::verify::evidence::FluxKind;
use crate::verify::kube::KubeOptions;
use crate::verify::notify;
use crate::verify::record::{Action as RecordAction, Record, UpdateView, Word};
use crate::verify::statuses::{Applier, StatusSource};
use crate::verify::target::DepInfo;
use crate::verify::verdict::Deadlines;
use crate::verify::{Observer, Options, Outcome, Verifier};

/// How far back the verifier reads the default branch, at most.
pub(super) const MAX_MERGES_READ: usize = 2_000;

/// The exit code of a pass that found an update failed (a verdict, not a crashed run).
pub const EXIT_FAILED_VERIFICATION: i32 = 3;

/// Everything both commands open.
pub(super) struct Setup {
    pub(super) writer: Writer,
    forge: Box<dyn Forge>,
    pub(super) remote: Option<String>,
    pub(super) token: Option<String>,
    renderer: Renderer,
    pub(super) config: Config,
    pub(super) scan: Scan,
}

impl Setup {
    /// The actor over this setup's repository and forge.
    pub(super) fn actor<'a>(&'a self, prove: crate::verify::act::Prove<'a>, automerge: bool) -> Actor<'a> {
        Actor {
            writer: &self.writer,
            forge: self.forge.as_ref(),
            renderer: &self.renderer,
            prove,
            remote: self.remote.as_deref(),
            token: self.token.as_deref(),
            automerge,
        }
    }
}

pub(super) fn setup(path: &Path, w: &WriteArgs) -> Result<Setup, AppError> {
    let author = match &w.author {
        Some(a) => Author::parse(a).ok_or_else(|| AppError::Run(format!("--author `{a}` is not `Name <email>`")))?,
        None => Author::default(),
    };
    let writer = Writer::open(path, author).map_err(|e| AppError::Run(e.to_string()))?;
    let workdir = writer
        .workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| AppError::Run("the repository has no work tree".into()))?;
    let config = config::load(&workdir, w.config.as_deref())?;
    let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty());
    let (forge, remote) = crate::run::open_forge(
        w.forge,
        w.prs_dir.as_deref(),
        w.repo.as_deref(),
        w.remote.as_deref(),
        &workdir,
        token.as_deref(),
    )?;
    let renderer = Renderer::new(Some(&workdir)).map_err(|e| AppError::Run(e.to_string()))?;
    // Every dependency the verifier may meet, with the config's `sources:`; whether a cluster
    // applies a file does not change what a merged update was.
    let options = ScanOptions { sources: config.sources.clone(), include_not_applied: true, ..ScanOptions::default() };
    let scan = extract::scan(&workdir, &options)?;
    Ok(Setup { writer, forge, remote, token, renderer, config, scan })
}

/// What the verifier needs to know of each dependency in the checkout.
pub(super) fn dep_infos(scan: &Scan, config: &Config) -> BTreeMap<String, DepInfo> {
    scan.dependencies
        .iter()
        .map(|d| {
            let release = (d.kind == Kind::HelmRelease)
                .then(|| d.namespace.as_ref().map(|ns| format!("{ns}/{}", d.name)))
                .flatten();
            let on_failure = settings_for(&config.policy.rules, d, None).on_failure;
            let info = DepInfo {
                name: crate::run::display_name(d),
                component: d.component,
                release,
                chart_source: None::<(FluxKind, String, String)>,
                current: d.current.clone(),
                on_failure_issue: on_failure == Some(OnFailure::Issue),
            };
            (d.id.clone(), info)
        })
        .collect()
}

/// The user's checks of each merge: those of every rule matching one of its updates (with the
/// update's type, so `updateType` matchers hold) or one of the dependencies it reverts.
///
/// Each check's origin is made relative to the work tree: it ends up in PR bodies, where the
/// runner's own folders mean nothing.
pub(super) fn checks_of(
    scan: &Scan,
    config: &Config,
    merges: &[Merge],
    workdir: &Path,
) -> Result<Option<Checks>, AppError> {
    if config.policy.rules.iter().all(|r| r.checks.is_empty()) {
        return Ok(None);
    }
    let by_id: BTreeMap<&str, &crate::model::Dependency> =
        scan.dependencies.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut per_commit = Vec::new();
    for merge in merges {
        let wanted = merge
            .updates
            .iter()
            .map(|u| {
                let step = Version::parse(&u.from).zip(Version::parse(&u.to)).and_then(|(a, b)| classify(&a, &b));
                (u.id.as_str(), step)
            })
            .chain(merge.reverts.iter().map(|(id, _)| (id.as_str(), None)));
        let mut specs: Vec<CheckSpec> = Vec::new();
        for (id, step) in wanted {
            let Some(dep) = by_id.get(id) else { continue };
            for spec in checks_for(&config.policy.rules, dep, step) {
                if !specs.iter().any(|s| s.check == spec.check) {
                    let origin = Path::new(&spec.origin)
                        .strip_prefix(workdir)
                        .map_or_else(|_| spec.origin.clone(), |p| p.display().to_string());
                    specs.push(CheckSpec { origin, ..spec.clone() });
                }
            }
        }
        per_commit.push((merge.commit.clone(), specs));
    }
    Checks::new(per_commit).map(Some).map_err(|e| AppError::Environment(e.to_string()))
}

/// The revert proof: scan the tree the revert would produce and the tip's, and require every
/// reverted dependency back at its old version and every other dependency unchanged.
pub(super) fn prover<'a>(writer: &'a Writer) -> impl Fn(&[FileChange], &[Update]) -> Result<(), String> + 'a {
    move |changes, updates| {
        let (_, tip) = writer.default_branch().map_err(|e| e.to_string())?;
        let before = scan_tree(writer, writer.tree_of(tip).map_err(|e| e.to_string())?, &[])?;
        let after = scan_tree(writer, writer.tree_of(tip).map_err(|e| e.to_string())?, changes)?;
        prove_revert(&before, &after, updates)
    }
}

/// Scan `tree` with `changes` laid over it, in a scratch folder.
fn scan_tree(writer: &Writer, tree: git2::Oid, changes: &[FileChange]) -> Result<Scan, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    writer.export_tree(tree, dir.path()).map_err(|e| e.to_string())?;
    for (path, _, after) in changes {
        let file = dir.path().join(path);
        match after {
            Some(text) => {
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(&file, text).map_err(|e| format!("{path}: {e}"))?;
            }
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
    }
    extract::scan(dir.path(), &ScanOptions::default()).map_err(|e| e.to_string())
}

/// The proof itself, on two scans.
pub fn prove_revert(before: &Scan, after: &Scan, updates: &[Update]) -> Result<(), String> {
    let versions = |s: &Scan| -> BTreeMap<String, Option<String>> {
        s.dependencies.iter().map(|d| (d.id.clone(), d.current.clone())).collect()
    };
    let (old, new) = (versions(before), versions(after));
    for u in updates {
        match new.get(&u.id) {
            Some(Some(v)) if v == &u.from => {}
            Some(v) => {
                return Err(format!(
                    "{} would be at {}, not back at {}",
                    u.id,
                    v.as_deref().unwrap_or("no version"),
                    u.from
                ));
            }
            None => return Err(format!("{} is not found after the revert", u.id)),
        }
    }
    for (id, version) in &old {
        if updates.iter().any(|u| &u.id == id) {
            continue;
        }
        if new.get(id) != Some(version) {
            return Err(format!(
                "{id} would change too ({:?} → {:?}); a revert must move only the failed updates",
                version,
                new.get(id)
            ));
        }
    }
    Ok(())
}

pub(super) fn duration(
    flag: Option<&str>,
    name: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration, AppError> {
    match flag {
        Some(text) => parse_duration(text).map_err(|e| AppError::Run(format!("--{name}: {e}"))),
        None => Ok(default),
    }
}

/// The options of a pass from `verify`'s flags and config. Commit statuses give nothing to
/// nudge, so with them the timeout is final when it passes.
pub(super) fn pass_options(
    args: &VerifyArgs,
    s: &Setup,
    evidence: EvidenceSource,
    no_wait: bool,
) -> Result<Options, AppError> {
    let settings = &s.config.verify;
    let timeout = duration(args.timeout.as_deref(), "timeout", settings.timeout)?;
    let nudge_grace = match evidence {
        EvidenceSource::Kube => Deadlines::default().nudge_grace.min(timeout),
        EvidenceSource::GithubStatus => std::time::Duration::ZERO,
    };
    let deadlines = Deadlines { timeout, soak: duration(args.soak.as_deref(), "soak", settings.soak)?, nudge_grace };
    Ok(Options {
        deadlines,
        horizon: settings.horizon,
        no_wait,
        dry_run: args.write.dry_run,
        source: settings.git_repository.clone(),
    })
}

/// upkeep's merges a pass must look at from `now`: back past the horizon, the timeout and the
/// soak, and a month more for reverts of older merges.
pub(super) fn merges_since(s: &Setup, now: jiff::Timestamp, options: &Options) -> Result<Vec<Merge>, AppError> {
    let d = &options.deadlines;
    let reach = options.horizon + d.timeout + d.soak + std::time::Duration::from_secs(30 * 86_400);
    let since =
        now.checked_sub(jiff::SignedDuration::from_secs(i64::try_from(reach.as_secs()).unwrap_or(0))).unwrap_or(now);
    s.writer.upkeep_merges(since, MAX_MERGES_READ).map_err(|e| AppError::Run(e.to_string()))
}

/// The Flux Kustomizations (`namespace/name`) that apply `file`, from the repository's own Flux
/// graph.
pub(super) fn applying(graph: &crate::extract::flux_graph::FluxGraph, file: &str) -> Vec<String> {
    graph
        .kustomizations_applying(file)
        .into_iter()
        .map(|k| format!("{}/{}", k.namespace.as_deref().unwrap_or("*"), k.name))
        .collect()
}

/// A multi-threaded runtime: the verifier runs blocking git and forge calls in place
/// (`block_in_place`), which a current-thread runtime forbids.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AppError::Environment(format!("cannot start the async runtime: {e}")))
}

/// `upkeep verify`, with evidence from `observer` (the cluster, in production).
pub fn verify_with<O: Observer>(
    args: &VerifyArgs,
    observer: impl AsyncFnOnce() -> O,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let s = setup(&args.path, &args.write)?;
    if let Some(remote) = s.remote.as_deref().filter(|_| !args.write.dry_run) {
        s.writer.fetch_notes(remote, s.token.as_deref()).map_err(|e| AppError::Run(e.to_string()))?;
    }
    let evidence = args.evidence.unwrap_or(s.config.verify.evidence);
    let options = pass_options(args, &s, evidence, args.no_wait)?;
    let started = jiff::Timestamp::now();
    let merges = merges_since(&s, started, &options)?;
    let deps = dep_infos(&s.scan, &s.config);
    let workdir = s.writer.workdir().map(Path::to_path_buf).unwrap_or_default();
    let checks = checks_of(&s.scan, &s.config, &merges, &workdir)?;
    let prove = prover(&s.writer);
    let actor = s.actor(&prove, s.config.verify.automerge_reverts);
    let runtime = runtime()?;
    let graph = &s.scan.flux_graph;
    let applying = |file: &str| applying(graph, file);
    let checks = checks.as_ref();
    let json = args.write.format.map_or(!std::io::stdout().is_terminal(), |f| f == Format::Json);
    let progress = crate::progress::for_stderr(json);
    let progress = progress.as_ref();
    let mut outcome = runtime.block_on(async {
        match evidence {
            EvidenceSource::Kube => {
                let observer = observer().await;
                let verifier = Verifier {
                    observer: &observer,
                    actor,
                    deps: &deps,
                    applying: &applying,
                    options,
                    checks,
                    progress,
                };
                verifier.pass(merges, jiff::Timestamp::now).await
            }
            EvidenceSource::GithubStatus => {
                let appliers = |file: &str| appliers(graph, file);
                let source = StatusSource::new(s.forge.as_ref(), &s.writer, &appliers);
                let verifier =
                    Verifier { observer: &source, actor, deps: &deps, applying: &applying, options, checks, progress };
                verifier.pass(merges, jiff::Timestamp::now).await
            }
        }
    });
    // A check that cannot run (its header variable is missing) kept its merges pending; say why.
    outcome.errors.extend(checks.iter().flat_map(|c| c.problems()));
    if !args.write.dry_run {
        runtime.block_on(notify_owed(&s, &args.write, &mut outcome));
    }
    finish(&s, outcome, args.write.dry_run, args.write.format, started, out)
}

/// The Flux Kustomizations of the repository's own manifests that apply `file`, as the status
/// observer matches them.
fn appliers(graph: &crate::extract::flux_graph::FluxGraph, file: &str) -> Vec<Applier> {
    graph
        .kustomizations_applying(file)
        .into_iter()
        .map(|k| Applier {
            checks_health: k.checks_health(),
            namespace: k.namespace,
            name: k.name,
            file: k.file,
            line: k.line,
        })
        .collect()
}

/// Send the webhook notification each failed record still owes (`verify::notify`), after its
/// verdict note is written, and record each delivery in that note. Nothing here changes a
/// verdict: an undelivered notification is an error line, and the next pass tries again.
pub(super) async fn notify_owed(s: &Setup, w: &WriteArgs, outcome: &mut Outcome) {
    let Some(settings) = &s.config.notify else { return };
    let now = jiff::Timestamp::now();
    let owed: Vec<usize> = (0..outcome.records.len())
        .filter(|&i| {
            let r = &outcome.records[i];
            notify::owed(r, now, s.config.verify.horizon) && settings.wants(r).is_some()
        })
        .collect();
    if owed.is_empty() {
        return;
    }
    let http = match HttpConfig::from_env() {
        Ok(h) => h,
        Err(e) => return outcome.notify_errors.push(format!("notify: {e}")),
    };
    let policy = crate::retry::Policy {
        retries: http.retries,
        backoff: http.backoff,
        max_wait: http.max_wait,
        bare_limit_wait: None,
        server: "the webhook",
    };
    let lookup = |var: &str| std::env::var(var).ok();
    let hook = match notify::Webhook::new(&settings.url_env, lookup, policy, http.total_timeout) {
        Ok(h) => h,
        Err(e) => return outcome.notify_errors.push(e.to_string()),
    };
    let server = std::env::var("GITHUB_SERVER_URL").ok().filter(|v| !v.is_empty());
    let server = server.as_deref().unwrap_or("https://github.com");
    for i in owed {
        let record = &mut outcome.records[i];
        let Some(kind) = settings.wants(record) else { continue };
        let links = match (w.forge, w.repo.as_deref()) {
            (ForgeKind::Github, Some(repo)) => notify::Links::github(server, repo, record),
            _ => notify::Links::local(record),
        };
        let body = notify::payload(settings.format, record, kind, &links);
        if let Err(e) = hook.deliver(&record.commit, &body).await {
            outcome.notify_errors.push(e.to_string());
            continue;
        }
        record.notified = Some(jiff::Timestamp::now());
        if let Err(e) = tokio::task::block_in_place(|| s.writer.set_note(&record.commit, &record.to_note())) {
            // Delivered but not recorded: the next pass sends it again (at least once).
            outcome
                .notify_errors
                .push(format!("notify: the delivery to {} was not recorded: {e}", short(&record.commit)));
        }
    }
}

/// Push the notes, print the report, and choose the exit code.
fn finish(
    s: &Setup,
    mut outcome: Outcome,
    dry_run: bool,
    format: Option<Format>,
    started: jiff::Timestamp,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    if let Some(remote) = s.remote.as_deref().filter(|_| !dry_run) {
        let lease = s.writer.fetch_notes(remote, s.token.as_deref());
        match lease.and_then(|lease| s.writer.push_notes(remote, lease, s.token.as_deref())) {
            Ok(()) => {}
            Err(e) => outcome.errors.push(format!("verdict notes were not pushed: {e}")),
        }
    }
    let decided_now: Vec<&Record> =
        outcome.records.iter().filter(|r| r.decided_at.is_some_and(|t| t >= started)).collect();
    for r in &decided_now {
        tracing::info!(commit = %r.commit, verdict = ?r.verdict, action = ?r.action, "{}", r.reason);
    }
    let count = |action: RecordAction| decided_now.iter().filter(|r| r.action == action).count().to_string();
    crate::action::set_outputs(&[
        ("reverts", count(RecordAction::Revert)),
        ("forward-fixes", count(RecordAction::ForwardFix)),
    ]);
    write_report(&outcome.records, format, out)?;
    // On stderr: they change neither a verdict nor the exit code, and the JSON report on stdout
    // stays parseable.
    for e in &outcome.notify_errors {
        tracing::error!("{e}");
    }
    for e in &outcome.errors {
        writeln!(out, "error: {e}")?;
    }
    if !outcome.errors.is_empty() {
        return Err(AppError::Run(format!("{} problem(s) while verifying (listed above)", outcome.errors.len())));
    }
    // A failure decided in this pass is worth a red step; one read back from an earlier pass is not.
    let failed_now =
        outcome.records.iter().any(|r| r.verdict == Word::Failure && r.decided_at.is_some_and(|t| t >= started));
    Ok(if failed_now { EXIT_FAILED_VERIFICATION } else { 0 })
}

/// The report, in the chosen format.
pub fn write_report(records: &[Record], format: Option<Format>, out: &mut dyn Write) -> std::io::Result<()> {
    let format = format.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json });
    match format {
        Format::Json => {
            let views: Vec<_> = records.iter().map(Record::view).collect();
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "verifications": views }))
                .map_err(std::io::Error::other)?;
            writeln!(out)
        }
        Format::Table => {
            if records.is_empty() {
                return writeln!(out, "no upkeep merges to verify");
            }
            writeln!(out, "MERGE         VERDICT   ACTION        REASON")?;
            for r in records {
                let action = format!("{:?}", r.action).to_lowercase();
                writeln!(out, "{:<12}  {:<8}  {:<12}  {}", short(&r.commit), r.verdict.as_str(), action, r.reason)?;
                for w in &r.warnings {
                    writeln!(out, "{:<38}  warning: {w}", "")?;
                }
            }
            Ok(())
        }
        Format::Markdown => {
            writeln!(out, "| Merge | Updates | Verdict | Action | Reason |\n| --- | --- | --- | --- | --- |")?;
            for r in records {
                let updates: Vec<String> =
                    r.updates.iter().map(|u| format!("{} {} → {}", u.name, u.from, u.to)).collect();
                let action = match (&r.pr, r.action) {
                    (Some(pr), a) => format!("{a:?} {pr}"),
                    (None, a) => format!("{a:?}"),
                };
                writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} |",
                    short(&r.commit),
                    updates.join(", "),
                    r.verdict.as_str(),
                    action.to_lowercase(),
                    with_warnings(r).replace('|', "\\|")
                )?;
            }
            Ok(())
        }
    }
}

/// A record's reason with its warnings, for one Markdown cell.
fn with_warnings(r: &Record) -> String {
    let mut cell = crate::render::sanitize_inline(&r.reason);
    for w in &r.warnings {
        cell.push_str(&format!("<br>⚠️ {}", crate::render::sanitize_inline(w)));
    }
    cell
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// `upkeep revert <sha>`: revert an upkeep merge by hand, as the verifier would.
pub fn revert(args: &RevertArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let s = setup(&args.path, &args.write)?;
    let oid = s.writer.resolve(&args.commit).map_err(|e| AppError::Run(e.to_string()))?;
    let merge = find_merge(&s.writer, &oid.to_string())?;
    let deps = dep_infos(&s.scan, &s.config);
    let updates: Vec<UpdateView> = merge
        .updates
        .iter()
        .map(|u| UpdateView {
            id: u.id.clone(),
            name: deps.get(&u.id).map_or_else(|| crate::verify::target::name_of(&u.id), |d| d.name.clone()),
            from: u.from.clone(),
            to: u.to.clone(),
        })
        .collect();
    let prove = prover(&s.writer);
    let actor = s.actor(&prove, false);
    let failed = Failed {
        merge: &merge,
        updates: &updates,
        reason: "requested by hand",
        evidence: &[],
        no_revert: None,
        timeline: String::new(),
    };
    let done = actor.revert(&failed, args.write.dry_run).map_err(AppError::Run)?;
    match done {
        Ok(Reverted { branch, pr }) => writeln!(out, "revert of {}: branch {branch}, PR {pr}", short(&merge.commit))?,
        Err(conflicts) => {
            return Err(AppError::Run(format!(
                "`git revert` of {} conflicts with later commits in {}: revert it by hand",
                short(&merge.commit),
                conflicts.join(", ")
            )));
        }
    }
    Ok(0)
}

/// The upkeep merge at `commit` on the default branch.
fn find_merge(writer: &Writer, commit: &str) -> Result<Merge, AppError> {
    let merges =
        writer.upkeep_merges(jiff::Timestamp::UNIX_EPOCH, MAX_MERGES_READ).map_err(|e| AppError::Run(e.to_string()))?;
    merges.into_iter().find(|m| m.commit == commit && !m.updates.is_empty()).ok_or_else(|| {
        AppError::Run(format!(
            "{} is not an upkeep merge on the checked-out branch (no `Upkeep-Update` trailer reached it)",
            short(commit)
        ))
    })
}

/// `upkeep verify` against the cluster.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let options = KubeOptions { kubeconfig: args.kubeconfig.clone(), context: args.context.clone() };
    verify_with(args, async || Cluster::connect(&options).await, out)
}
