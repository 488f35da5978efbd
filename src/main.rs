//! The `upkeep` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use upkeep::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // octocrab's tracing logs every 4xx/5xx as a bare ERROR line; upkeep reports each failure
    // itself, with what it was doing, so octocrab speaks only at -vv.
    let level = match cli.verbose {
        0 => "warn,octocrab=off",
        1 => "info,octocrab=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match upkeep::app::run(&cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // A verdict carried by the exit code was already reported on stdout.
        Err(err @ upkeep::app::AppError::Verdict(_)) => ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1)),
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}
