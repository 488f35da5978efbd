//! Command-line definitions, nothing else: parsing is clap's job, acting on it is `app`'s.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;

/// upkeep keeps a Flux repository's Helm charts, k3s, Flux and Longhorn up to date through pull
/// requests, and verifies each merged update in the cluster.
#[derive(Debug, Parser)]
#[command(name = "upkeep", version, about, long_about = None)]
pub struct Cli {
    /// Log more: files passed over, timings (repeat for debug output).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How log lines on stderr look: `text` for people, `json` (one object a line, with the
    /// dependency, commit or URL as fields) for log aggregation.
    #[arg(long, value_enum, global = true, default_value = "text", env = "UPKEEP_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to log, as a tracing filter (`info`, `debug`, `upkeep=debug,warn`); overrides `-v`.
    #[arg(long, global = true, env = "UPKEEP_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Also write the report (what goes to stdout) to this file; on GitHub Actions its path is
    /// the step's `report` output.
    #[arg(long, global = true, env = "UPKEEP_REPORT_FILE")]
    pub report_file: Option<PathBuf>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`).
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find every versioned thing in a Flux repository and report it, with available versions.
    Scan(ScanArgs),
    /// Decide, for every dependency, whether to propose, hold, skip or block an update, and why.
    Plan(ScanArgs),
    /// Scan, look up, decide, then write branches and open or update PRs, and the dashboard.
    Run(RunArgs),
    /// Verify merged upkeep updates in the cluster; on failure open a revert PR, or a
    /// forward-fix issue where a revert is unsafe.
    Verify(VerifyArgs),
    /// Revert an upkeep merge by hand: the same branch, trailers and PR as the verifier's.
    Revert(RevertArgs),
    /// Check or describe the repository's upkeep config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List every update upkeep made: when it merged, its verdict, and the revert or
    /// forward-fix that followed (from trailers, verdict notes and statuses).
    History(HistoryArgs),
    /// The GitHub Action's entry point: read the command and its options from
    /// `UPKEEP_INPUT_*` environment variables (action.yml sets them from its inputs), then run it.
    Action,
}

/// Where PRs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForgeKind {
    /// Branches in the local repository, PR bodies as files (no GitHub needed).
    Local,
    /// Pull requests on GitHub (`GITHUB_API_URL`, `GITHUB_TOKEN`, `GITHUB_REPOSITORY`).
    Github,
}

/// Arguments of `upkeep run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What `scan` takes.
    #[command(flatten)]
    pub scan: ScanArgs,
    /// Where PRs go.
    #[arg(long, value_enum, default_value = "local", env = "UPKEEP_FORGE")]
    pub forge: ForgeKind,
    /// Directory of the local forge's PR files (default: `.upkeep/prs` in the repository).
    #[arg(long)]
    pub prs_dir: Option<PathBuf>,
    /// Push upkeep's branches to this remote (name or URL); the token comes from `GITHUB_TOKEN`.
    /// Default: none for the local forge, `origin` for GitHub.
    #[arg(long)]
    pub remote: Option<String>,
    /// The GitHub repository, `owner/name`.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repo: Option<String>,
    /// Print the branches, diffs and PR titles it would produce; write nothing.
    #[arg(long, env = "UPKEEP_DRY_RUN")]
    pub dry_run: bool,
    /// Commit author, `Name <email>`.
    #[arg(long, env = "UPKEEP_AUTHOR")]
    pub author: Option<String>,
}

/// Where the verifier and reverts write: shared by `verify` and `revert`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Where PRs, issues and statuses go.
    #[arg(long, value_enum, default_value = "local", env = "UPKEEP_FORGE")]
    pub forge: ForgeKind,
    /// Directory of the local forge's PR files (default: `.upkeep/prs` in the repository).
    #[arg(long)]
    pub prs_dir: Option<PathBuf>,
    /// Push revert branches and verdict notes to this remote (name or URL); the token comes
    /// from `GITHUB_TOKEN`. Default: none for the local forge, `origin` for GitHub.
    #[arg(long)]
    pub remote: Option<String>,
    /// The GitHub repository, `owner/name`.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repo: Option<String>,
    /// Decide and report; write nothing.
    #[arg(long, env = "UPKEEP_DRY_RUN")]
    pub dry_run: bool,
    /// Commit author, `Name <email>`.
    #[arg(long, env = "UPKEEP_AUTHOR")]
    pub author: Option<String>,
    /// The upkeep config file (default: `.github/upkeep.yaml` or `upkeep.yaml`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format; `table` on a terminal, `json` otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// Arguments of `upkeep verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The repository.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Where to write.
    #[command(flatten)]
    pub write: WriteArgs,
    /// From the merge to Ready at the merged revision (`15m`; config `verify.timeout`).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Healthy this long after Ready (`5m`; config `verify.soak`).
    #[arg(long)]
    pub soak: Option<String>,
    /// Record what is conclusive now, leave the rest pending, and return (for a cron job).
    #[arg(long)]
    pub no_wait: bool,
    /// The kubeconfig (default: `KUBECONFIG`, then `~/.kube/config`, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Where evidence comes from: `kube` (the Kubernetes API, the default) or `github-status`
    /// (the commit statuses Flux's notification-controller posts; no cluster credentials).
    /// Config `verify.evidence`.
    #[arg(long, value_enum)]
    pub evidence: Option<crate::config::EvidenceSource>,
    /// Keep running (an in-cluster Deployment): watch Flux's GitRepository and verify each new
    /// merge as it arrives. With `--remote`, fetch and fast-forward the checkout on each new
    /// revision (an empty or missing PATH is cloned from a `--remote` URL). SIGTERM or SIGINT
    /// finishes what is being written and exits 0.
    #[arg(long, conflicts_with_all = ["no_wait", "dry_run"])]
    pub watch: bool,
    /// With `--watch`: serve `/healthz` and Prometheus `/metrics` on ADDR (`0.0.0.0:9090`;
    /// port 0 picks a free one).
    #[arg(long, requires = "watch", value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Arguments of `upkeep revert`.
#[derive(Debug, Args)]
pub struct RevertArgs {
    /// The merge commit to revert (an upkeep merge: it carries `Upkeep-Update` trailers).
    pub commit: String,
    /// The repository.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Where to write.
    #[command(flatten)]
    pub write: WriteArgs,
}

/// `upkeep config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the config file; errors name file, line and column.
    Validate {
        /// The repository whose config to check.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// A config file elsewhere.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the config's JSON Schema (point your editor's YAML language server at it).
    Schema,
    /// Print the configuration reference (a Markdown table generated from the schema; the
    /// README's copy is checked against it).
    Reference,
}

/// Arguments of `upkeep scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The repository (or a folder of it) to scan.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Output format; `table` on a terminal, `json` otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Skip files bigger than this many bytes.
    #[arg(long, default_value_t = crate::extract::DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
    /// Only find dependencies; do not look up their versions.
    #[arg(long, conflicts_with = "plan")]
    pub no_lookup: bool,
    /// Add the gate's decision to each dependency (what `upkeep plan` shows).
    #[arg(long)]
    pub plan: bool,
    /// Use only the lookup cache; fetch nothing.
    #[arg(long, conflicts_with = "no_lookup")]
    pub offline: bool,
    /// Where lookups are cached between runs (default: `$RUNNER_TEMP/upkeep-cache` on GitHub
    /// Actions, else the user's cache directory).
    #[arg(long, env = "UPKEEP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The upkeep config file (default: `.github/upkeep.yaml` or `upkeep.yaml` in PATH).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Arguments of `upkeep history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The repository.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Where statuses are read for merges without a verdict note.
    #[arg(long, value_enum, default_value = "local", env = "UPKEEP_FORGE")]
    pub forge: ForgeKind,
    /// Directory of the local forge's PR files (default: `.upkeep/prs` in the repository).
    #[arg(long)]
    pub prs_dir: Option<PathBuf>,
    /// The GitHub repository, `owner/name`.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repo: Option<String>,
    /// The upkeep config file (default: `.github/upkeep.yaml` or `upkeep.yaml`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format; `table` on a terminal, `json` otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}
