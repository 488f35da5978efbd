//! The one orchestrator: turns a parsed command line into work on the pipeline stages.

use std::io::{IsTerminal, Write};

use crate::cli::{Cli, Command, ScanArgs};
use crate::extract::{self, ScanOptions, WalkError};
use crate::report::{self, Format};

/// What went wrong, by how the process should exit.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The user asked for something impossible (a missing path): exit 2.
    #[error(transparent)]
    Usage(#[from] WalkError),
    /// Writing the report failed (a closed pipe): exit 1.
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Usage(_) => 2,
            AppError::Output(_) => 1,
        }
    }
}

/// Run a command, writing its report to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), AppError> {
    match &cli.command {
        Command::Scan(args) => scan(args, out),
    }
}

fn scan(args: &ScanArgs, out: &mut dyn Write) -> Result<(), AppError> {
    let started = std::time::Instant::now();
    let options = ScanOptions { max_file_size: args.max_file_size };
    let scan = extract::scan(&args.path, &options)?;
    for note in &scan.passed_over {
        tracing::info!("passed over {}: {}", report::error_place(note), note.message);
    }
    tracing::info!("scanned {} files in {:?}", scan.files_scanned, started.elapsed());
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json });
    report::write(&scan, format, out)?;
    out.flush()?;
    Ok(())
}
