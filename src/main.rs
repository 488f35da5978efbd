//! The `upkeep` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use upkeep::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = match resolve(Cli::parse()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Err(e) = init_logging(&cli) {
        let _ = writeln!(std::io::stderr(), "error: --log-level: {e}");
        return ExitCode::from(2);
    }
    let stdout = std::io::stdout();
    let mut out = Report { stdout: stdout.lock(), copy: None };
    if let Some(path) = &cli.report_file {
        match std::fs::File::create(path) {
            Ok(file) => out.copy = Some(file),
            Err(e) => {
                tracing::error!(file = %path.display(), "cannot write the report file: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let result = upkeep::app::run(&cli, &mut out);
    if let Some(path) = &cli.report_file {
        upkeep::action::set_outputs(&[("report", path.to_string_lossy().into_owned())]);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A verdict carried by the exit code was already reported on stdout.
        Err(err @ upkeep::app::AppError::Verdict(_)) => ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1)),
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}

/// `upkeep action` becomes the command its `UPKEEP_*` variables name; any other command stays.
/// A bad input is reported as a workflow error annotation, exit code 2.
fn resolve(outer: Cli) -> Result<Cli, ExitCode> {
    if !matches!(outer.command, Command::Action) {
        return Ok(outer);
    }
    let fail = |message: String| {
        let _ = writeln!(std::io::stderr(), "::error title=upkeep action::{}", upkeep::action::data(&message));
        ExitCode::from(2)
    };
    let argv = upkeep::action::argv_from_env(|k| std::env::var(k).ok()).map_err(|e| fail(e.to_string()))?;
    let mut inner = Cli::try_parse_from(&argv).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
        fail(format!("{first} (in `{}`)", argv.join(" ")))
    })?;
    // Options given before `action` on the command line still count.
    inner.verbose = inner.verbose.max(outer.verbose);
    if outer.log_format == LogFormat::Json {
        inner.log_format = LogFormat::Json;
    }
    inner.log_level = inner.log_level.or(outer.log_level);
    inner.report_file = inner.report_file.or(outer.report_file);
    Ok(inner)
}

/// Logs go to stderr, as text or one JSON object a line; `--log-level` (or `RUST_LOG`) beats `-v`.
fn init_logging(cli: &Cli) -> Result<(), String> {
    // octocrab's tracing logs every 4xx/5xx as a bare ERROR line; upkeep reports each failure
    // itself, with what it was doing, so octocrab speaks only at -vv.
    let level = match cli.verbose {
        0 => "warn,octocrab=off",
        1 => "info,octocrab=off",
        _ => "debug",
    };
    let filter = match &cli.log_level {
        Some(directive) => tracing_subscriber::EnvFilter::try_new(directive).map_err(|e| e.to_string())?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        // Colours only for a person at a terminal, never as escape codes in a CI log.
        LogFormat::Text => builder.with_target(false).with_ansi(std::io::stderr().is_terminal()).init(),
        // Flattened, so a log pipeline finds `dependency`, `commit` or `url` at the top level.
        LogFormat::Json => {
            // stderr is a log stream now: no bar may be drawn into it.
            upkeep::progress::quiet();
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init()
        }
    }
    Ok(())
}

/// stdout, and a copy of everything written to it in the `--report-file`.
struct Report<'a> {
    stdout: std::io::StdoutLock<'a>,
    copy: Option<std::fs::File>,
}

impl Write for Report<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stdout.write_all(buf)?;
        if let Some(file) = &mut self.copy {
            file.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdout.flush()?;
        if let Some(file) = &mut self.copy {
            file.flush()?;
        }
        Ok(())
    }
}
