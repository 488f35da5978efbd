//! The one orchestrator: turns a parsed command line into work on the pipeline stages.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use crate::cli::{Cli, Command, ConfigCommand, ScanArgs};
use crate::config::{self, Config, ConfigError};
use crate::extract::{self, Scan, ScanOptions, WalkError};
use crate::gate::available::{Available, available};
use crate::gate::history::{History, HistorySource};
use crate::gate::{GateInput, Plan};
use crate::git::GitHistory;
use crate::lookup::cache::Cache;
use crate::lookup::http::{Http, HttpConfig, HttpError};
use crate::lookup::{Context, Lookup};
use crate::model::{LookupFailure, Package, SharedReleases};
use crate::progress::Progress;
use crate::report::{self, Format, Report};

pub mod history;
pub mod listen;
pub mod verify;
pub mod watch;

/// A command that finished with something to say through its exit code (a failed
/// verification: a verdict, not a crash).
fn exit_with(code: i32) -> Result<(), AppError> {
    match code {
        0 => Ok(()),
        code => Err(AppError::Verdict(code)),
    }
}

/// What went wrong, by how the process should exit.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The user asked for something impossible (a missing path): exit 2.
    #[error(transparent)]
    Usage(#[from] WalkError),
    /// The config file is wrong: exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// git or the forge failed for the whole run: exit 1.
    #[error("{0}")]
    Run(String),
    /// The machine cannot do what is needed (no async runtime, no TLS): exit 1.
    #[error("{0}")]
    Environment(String),
    /// The command ran and reports a verdict through its exit code (3: an update failed
    /// verification); nothing crashed.
    #[error("an update failed verification (see the report)")]
    Verdict(i32),
    /// Writing the report failed (a closed pipe): exit 1.
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
    /// Flags that cannot go together, beyond what the argument parser knows: exit 2.
    #[error("{0}")]
    Flags(String),
}

impl From<HttpError> for AppError {
    fn from(e: HttpError) -> Self {
        AppError::Environment(e.to_string())
    }
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Usage(_) | AppError::Config(_) | AppError::Flags(_) => 2,
            AppError::Environment(_) | AppError::Output(_) | AppError::Run(_) => 1,
            AppError::Verdict(code) => *code,
        }
    }
}

/// Run a command, writing its report to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), AppError> {
    match &cli.command {
        Command::Scan(args) => scan(args, args.plan, out),
        Command::Plan(args) => scan(args, true, out),
        Command::Run(args) => crate::run::run(args, out),
        Command::Verify(args) if args.watch => exit_with(watch::watch(args, out)?),
        Command::Verify(args) => exit_with(verify::verify(args, out)?),
        Command::Revert(args) => exit_with(verify::revert(args, out)?),
        Command::History(args) => history::history(args, out),
        Command::Config(ConfigCommand::Schema) => {
            serde_json::to_writer_pretty(&mut *out, &config::schema()).map_err(std::io::Error::other)?;
            writeln!(out)?;
            Ok(())
        }
        Command::Config(ConfigCommand::Reference) => {
            write!(out, "{}", crate::config_reference::reference(&config::schema()))?;
            Ok(())
        }
        // `main` replaces `action` with the command its environment names.
        Command::Action => Err(AppError::Run("`upkeep action` reads its command from UPKEEP_COMMAND".into())),
        Command::Config(ConfigCommand::Validate { path, config }) => {
            let loaded = config::load(path, config.as_deref())?;
            match &loaded.file {
                Some(file) => writeln!(out, "{}: valid ({} rules)", file.display(), loaded.policy.rules.len())?,
                None => writeln!(out, "no config file in {}; the defaults apply", path.display())?,
            }
            Ok(())
        }
    }
}

/// Versions learned for a scan.
#[derive(Debug, Default)]
pub struct Versions {
    /// Available versions by dependency id.
    pub available: HashMap<String, Available>,
    /// Failures by dependency.
    pub failures: Vec<LookupFailure>,
    /// Every release by dependency id, or why it is unknown: what the gate decides from.
    pub releases: HashMap<String, Result<SharedReleases, String>>,
}

/// Finds the digest of a tag, for OCIRepositories that pin one next to their tag: `run` asks
/// for the target tag's digest so both move together.
pub struct DigestResolver {
    runtime: tokio::runtime::Runtime,
    registry: crate::lookup::oci::OciRegistry,
}

impl DigestResolver {
    /// A resolver with the config's rewrites and host rules.
    pub fn new(config: &Config, offline: bool) -> Result<DigestResolver, AppError> {
        let ctx = lookup_context(
            config,
            &LookupOptions {
                cache: Cache::disabled(),
                offline,
                http: HttpConfig::from_env().map_err(AppError::Environment)?,
            },
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AppError::Environment(format!("cannot start the async runtime: {e}")))?;
        Ok(DigestResolver { runtime, registry: crate::lookup::oci::OciRegistry::new(std::sync::Arc::new(ctx)) })
    }

    /// The digest of `tag` of `package`, or why not.
    pub fn digest(&self, package: &Package, tag: &str) -> Result<String, String> {
        self.runtime.block_on(self.registry.manifest_digest(package, tag)).map_err(|e| e.to_string())
    }
}

/// Options of the lookup stage.
#[derive(Debug, Clone)]
pub struct LookupOptions {
    /// Cache directory, or none.
    pub cache: Cache,
    /// Use only the cache.
    pub offline: bool,
    /// HTTP limits.
    pub http: HttpConfig,
}

/// Build the lookup context from config, options and the environment (`GITHUB_API_URL`,
/// `GITHUB_TOKEN`, the host rules' variables).
pub fn lookup_context(config: &Config, options: &LookupOptions) -> Result<Context, AppError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Ok(Context {
        http: Http::new(options.http.clone())?,
        cache: options.cache.clone(),
        rewrites: config.rewrites.clone(),
        host_rules: config.host_rules.iter().map(|h| h.resolve()).collect(),
        offline: options.offline,
        github_api: env("GITHUB_API_URL")
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "https://api.github.com".into()),
        github_token: env("GITHUB_TOKEN"),
        github_max_pages: 3,
        oci_page_size: 1000,
    })
}

/// Look up the versions of every dependency that can be updated.
pub fn look_up(scan: &Scan, lookup: &Lookup) -> Result<Versions, AppError> {
    look_up_reporting(scan, lookup, &crate::progress::Silent)
}

/// [`look_up`], reporting "n of m sources" to `progress`.
pub fn look_up_reporting(scan: &Scan, lookup: &Lookup, progress: &dyn Progress) -> Result<Versions, AppError> {
    let wanted: Vec<(&str, &Package, Option<&str>)> = scan
        .dependencies
        .iter()
        .filter(|d| d.skip.is_none())
        .filter_map(|d| d.package.as_ref().map(|p| (d.id.as_str(), p, d.current.as_deref())))
        .collect();
    // One thread: lookups wait on the network, and the indexes are distilled as they arrive at
    // a few hundred MB/s. Worker threads would each add a stack and a malloc arena (about
    // 5 MiB of peak memory for two) and save nothing measurable.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Environment(format!("cannot start the async runtime: {e}")))?;
    let results = runtime.block_on(lookup.all_reporting(wanted.iter().map(|(_, p, _)| *p), progress));
    let mut versions = Versions::default();
    for (id, package, current) in wanted {
        match results.get(package) {
            Some(Ok(releases)) => {
                versions.available.insert(id.to_string(), available(current.unwrap_or(""), releases));
                versions.releases.insert(id.to_string(), Ok(releases.clone()));
            }
            Some(Err(e)) => {
                tracing::warn!(dependency = %id, url = %e.url, "lookup failed: {}", e.message);
                versions.failures.push(LookupFailure {
                    id: id.to_string(),
                    url: e.url.clone(),
                    message: e.message.clone(),
                });
                versions.releases.insert(id.to_string(), Err(e.to_string()));
            }
            None => {}
        }
    }
    Ok(versions)
}

/// Read memory from git history; a repository that cannot be read remembers nothing (noted).
pub fn history(root: &std::path::Path) -> (History, Option<String>) {
    let (history, note) = trailer_history(root);
    match crate::git::verdict_notes(root) {
        Ok(notes) => {
            let mut events = history.events().to_vec();
            events.extend(
                notes
                    .iter()
                    .filter_map(|(_, text)| crate::verify::record::Record::from_note(text))
                    .flat_map(|r| r.events()),
            );
            (History::new(events), note)
        }
        Err(e) => {
            (history, Some(format!("upkeep's verdict notes were not read, so failed versions may not be blocked: {e}")))
        }
    }
}

/// Memory from commit trailers alone.
fn trailer_history(root: &std::path::Path) -> (History, Option<String>) {
    match GitHistory::at(root).events() {
        // A shallow clone (actions/checkout's default fetch-depth of 1) hides the trailers that
        // hold reverts: say so, or a reverted version would quietly be proposed again.
        Ok(events) if git2::Repository::discover(root).is_ok_and(|r| r.is_shallow()) => (
            History::new(events),
            Some(
                "git history is shallow, so reverts and merged steps upkeep remembers may be missing: check out with full history (actions/checkout `fetch-depth: 0`)"
                    .into(),
            ),
        ),
        Ok(events) => (History::new(events), None),
        Err(e) => (History::default(), Some(format!("git history was not read: {e}"))),
    }
}

/// Memory from a forge: events, and the groups with an open PR.
type ForgeMemory = (Vec<crate::gate::history::Event>, Vec<String>);

/// What the local forge of the repository containing `path` remembers, if it has one. Its PRs
/// that cannot be read are an error, not an empty memory: a refused version would be proposed
/// again without a word.
fn local_forge_memory(path: &std::path::Path) -> Result<ForgeMemory, String> {
    use crate::forge::Forge;
    let Some(workdir) =
        git2::Repository::discover(path).ok().and_then(|r| r.workdir().map(std::path::Path::to_path_buf))
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    let dir = crate::run::default_prs_dir(&workdir);
    if !dir.is_dir() {
        return Ok((Vec::new(), Vec::new()));
    }
    let prs = crate::forge::local::LocalForge::new(dir.clone()).upkeep_prs().map_err(|e| {
        format!(
            "the local forge's PRs in {} were not read, so versions refused there may be proposed again: {e}",
            dir.display()
        )
    })?;
    Ok(crate::forge::memory(&prs))
}

/// Run the gate over a scan and its versions.
pub fn plan(scan: &Scan, versions: &Versions, config: &Config, history: &History) -> Plan {
    plan_with(scan, versions, config, history, &[])
}

/// Run the gate, counting PRs already open for some groups against the limits.
pub fn plan_with(scan: &Scan, versions: &Versions, config: &Config, history: &History, open_groups: &[String]) -> Plan {
    let file_clusters = scan.flux_graph.clusters_by_file();
    let input = GateInput {
        dependencies: &scan.dependencies,
        releases: &versions.releases,
        api_versions: &scan.api_versions,
        file_clusters: &file_clusters,
        policy: &config.policy,
        history,
        now: jiff::Timestamp::now(),
        open_groups,
    };
    crate::gate::decide(&input)
}

/// Scan, load the config and look up versions: the first half of `scan`, `plan` and `run`.
pub fn scan_and_look_up(args: &ScanArgs) -> Result<(Scan, Config, Versions), AppError> {
    let started = std::time::Instant::now();
    // The config comes first: its `sources:` answer references the scanned files do not, and
    // `includeNotApplied` decides what the scan skips.
    let config = config::load(&args.path, args.config.as_deref())?;
    let options = ScanOptions {
        max_file_size: args.max_file_size,
        sources: config.sources.clone(),
        include_not_applied: config.include_not_applied,
        ..ScanOptions::default()
    };
    let scan = extract::scan(&args.path, &options)?;
    if crate::action::on_actions() {
        crate::action::annotate(&scan.errors, &args.path, &mut std::io::stderr())?;
    }
    for note in &scan.passed_over {
        tracing::info!("passed over {}: {}", report::error_place(note), note.message);
    }
    tracing::info!("scanned {} files in {:?}", scan.files_scanned, started.elapsed());
    let versions = if args.no_lookup {
        Versions::default()
    } else {
        let cache = match args.cache_dir.clone().or_else(Cache::default_dir) {
            Some(dir) => Cache::at(dir),
            None => Cache::disabled(),
        };
        let lookup = Lookup::new(lookup_context(
            &config,
            &LookupOptions {
                cache,
                offline: args.offline,
                http: HttpConfig::from_env().map_err(AppError::Environment)?,
            },
        )?);
        let json = args.format.map_or(!std::io::stdout().is_terminal(), |f| f == Format::Json);
        let versions = look_up_reporting(&scan, &lookup, crate::progress::for_stderr(json).as_ref())?;
        let stats = &lookup.context().http.stats;
        tracing::info!(
            "looked up in {:?}: {} requests, {} bytes, {} not modified",
            started.elapsed(),
            stats.requests.load(std::sync::atomic::Ordering::Relaxed),
            stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
            stats.not_modified.load(std::sync::atomic::Ordering::Relaxed),
        );
        versions
    };
    Ok((scan, config, versions))
}

fn scan(args: &ScanArgs, with_plan: bool, out: &mut dyn Write) -> Result<(), AppError> {
    let (scan, config, versions) = scan_and_look_up(args)?;
    let decided = with_plan.then(|| {
        let (git, note) = history(&args.path);
        // What the local forge knows (`upkeep run`'s default) counts too, so plan and run agree:
        // a PR closed without merging refuses its version, an open one counts against limits.
        let (mut events, open_groups, forge_note) = match local_forge_memory(&args.path) {
            Ok((events, open)) => (events, open, None),
            Err(note) => (Vec::new(), Vec::new(), Some(note)),
        };
        events.extend(git.events().iter().cloned());
        let mut plan = plan_with(&scan, &versions, &config, &History::new(events), &open_groups);
        plan.notes.extend(note);
        plan.notes.extend(forge_note);
        plan
    });
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json });
    let report = Report {
        scan: &scan,
        versions: &versions.available,
        lookup_errors: &versions.failures,
        plan: decided.as_ref(),
    };
    report::write(&report, format, out)?;
    out.flush()?;
    Ok(())
}
