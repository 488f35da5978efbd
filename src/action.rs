//! upkeep as a GitHub Action: the command line built from `UPKEEP_*` environment variables,
//! step outputs appended to `$GITHUB_OUTPUT`, and `::error` annotations for manifests upkeep
//! could not read.
//!
//! A Docker action has no shell to expand its inputs into, and interpolating `${{ inputs.* }}`
//! into a command line is how workflows get injected. So `action.yml` hands every input over
//! as an environment variable (`UPKEEP_INPUT_*`) and runs `upkeep action`, which reads them here. Nothing in this
//! module runs unless GitHub Actions set the variables it reads.

use std::io::Write;
use std::path::Path;

use crate::model::FileError;

/// The commands the Action may run.
pub const COMMANDS: [&str; 4] = ["run", "plan", "scan", "verify"];

/// An Action input that cannot be turned into a command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    /// `command:` names no command the Action runs.
    #[error("input `command` is `{0}`: use one of run, plan, scan, verify")]
    Command(String),
    /// `evidence:` set for a command that does not verify.
    #[error("input `evidence` is `{evidence}`, but only `verify` reads evidence (command is `{command}`)")]
    Evidence {
        /// The evidence mode given.
        evidence: String,
        /// The command given.
        command: String,
    },
    /// `dry-run:` is neither true nor false, or true for a command that writes nothing.
    #[error("input `dry-run` is `{0}`: use true or false (true only with run or verify; command is `{1}`)")]
    DryRun(String, String),
    /// `args:` has a quote that is never closed.
    #[error("input `args` has an unclosed {0} quote: {1}")]
    Quote(char, String),
}

/// Is this process a step of a GitHub Actions job?
pub fn on_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// The command line (program name first) that the Action's inputs ask for. `var` reads one
/// environment variable; action.yml sets `UPKEEP_INPUT_<INPUT>` for each input, and an empty
/// value is an input left unset (an empty variable given to clap's own `env` options would be
/// an empty value, not a missing one, so the inputs use names of their own).
///
/// `COMMAND` (default `run`), `PATH`, `FORMAT`, `CONFIG`, `FORGE` and `DRY_RUN` (run and
/// verify), `CACHE_DIR` (run, plan, scan), `EVIDENCE` (verify), `LOG_LEVEL`, `LOG_FORMAT`,
/// `REPORT_FILE`, and `ARGS` (extra arguments, split on whitespace, quotes group words).
/// The token comes as `GITHUB_TOKEN`, which upkeep reads itself.
pub fn argv_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ActionError> {
    let input = |k: &str| var(&format!("UPKEEP_INPUT_{k}")).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let command = input("COMMAND").unwrap_or_else(|| "run".into());
    if !COMMANDS.contains(&command.as_str()) {
        return Err(ActionError::Command(command));
    }
    let writes = matches!(command.as_str(), "run" | "verify");
    let mut argv = vec!["upkeep".to_string()];
    for (name, flag) in [("LOG_LEVEL", "--log-level"), ("LOG_FORMAT", "--log-format"), ("REPORT_FILE", "--report-file")]
    {
        argv.extend(input(name).map(|v| [flag.to_string(), v]).into_iter().flatten());
    }
    argv.extend([command.clone(), input("PATH").unwrap_or_else(|| ".".into())]);
    let mut flags = vec![("FORMAT", "--format"), ("CONFIG", "--config")];
    if writes {
        flags.push(("FORGE", "--forge"));
    }
    if command != "verify" {
        flags.push(("CACHE_DIR", "--cache-dir"));
    }
    for (name, flag) in flags {
        argv.extend(input(name).map(|v| [flag.to_string(), v]).into_iter().flatten());
    }
    match input("DRY_RUN").as_deref() {
        None | Some("false") => {}
        Some("true") if writes => argv.push("--dry-run".into()),
        Some(other) => return Err(ActionError::DryRun(other.to_string(), command)),
    }
    if let Some(evidence) = input("EVIDENCE") {
        if command != "verify" {
            return Err(ActionError::Evidence { evidence, command });
        }
        argv.extend(["--evidence".to_string(), evidence]);
    }
    if let Some(extra) = input("ARGS") {
        argv.extend(split_words(&extra)?);
    }
    Ok(argv)
}

/// Split `text` into words at whitespace; `'…'` and `"…"` keep spaces inside a word. No
/// escapes and no expansion: this is a list of arguments, not a shell.
fn split_words(text: &str) -> Result<Vec<String>, ActionError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(ActionError::Quote(q, text.to_string()));
    }
    words.extend(word);
    Ok(words)
}

/// Append step outputs to the file `$GITHUB_OUTPUT` names, if it names one. A value with a
/// line break is written in the multi-line form, with a delimiter the value does not contain.
/// An output that cannot be written is a warning: the work itself is done.
pub fn set_outputs(outputs: &[(&str, String)]) {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) else { return };
    let text: String = outputs.iter().map(|(name, value)| output_line(name, value)).collect();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(file = %Path::new(&path).display(), "could not write the step outputs: {e}");
    }
}

/// One output in `$GITHUB_OUTPUT`'s format.
pub fn output_line(name: &str, value: &str) -> String {
    if !value.contains(['\n', '\r']) {
        return format!("{name}={value}\n");
    }
    let mut delimiter = "UPKEEP_EOF".to_string();
    while value.contains(&delimiter) {
        delimiter.push('_');
    }
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// Write an `::error` workflow command for each file upkeep could not read, so GitHub shows it
/// on the file and line. `root` is the scanned folder: annotations name files from the
/// repository's root, which is the workspace (`GITHUB_WORKSPACE`) or the working directory.
pub fn annotate(errors: &[FileError], root: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let workspace = std::env::var_os("GITHUB_WORKSPACE").map(std::path::PathBuf::from);
    for e in errors {
        let full = root.join(&e.file);
        let relative = workspace.as_deref().and_then(|w| full.strip_prefix(w).ok()).unwrap_or(&full);
        let file = relative.to_string_lossy().replace('\\', "/");
        let file = file.trim_start_matches("./");
        let mut properties = format!("file={}", property(file));
        if let Some(line) = e.line {
            properties.push_str(&format!(",line={line}"));
        }
        if let Some(col) = e.column {
            properties.push_str(&format!(",col={col}"));
        }
        properties.push_str(",title=upkeep could not read this manifest");
        writeln!(out, "::error {properties}::{}", data(&e.message))?;
    }
    out.flush()
}

/// A workflow command's message, escaped as the runner unescapes it.
pub fn data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value, escaped as the runner unescapes it.
pub fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(vars: &[(&str, &str)]) -> Result<Vec<String>, ActionError> {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| (format!("UPKEEP_INPUT_{k}"), v.to_string())).collect();
        argv_from_env(|k| vars.get(k).cloned())
    }

    #[test]
    fn inputs_become_arguments_without_a_shell() {
        assert_eq!(argv(&[]), Ok(vec!["upkeep".into(), "run".into(), ".".into()]));
        let got = argv(&[
            ("COMMAND", "verify"),
            ("PATH", "clusters/home"),
            ("FORMAT", "markdown"),
            ("CONFIG", ""),
            ("FORGE", "github"),
            ("DRY_RUN", "true"),
            ("CACHE_DIR", ".cache"),
            ("LOG_LEVEL", "info"),
            ("LOG_FORMAT", ""),
            ("EVIDENCE", "github-status"),
            ("ARGS", "--no-wait  --timeout '20m' \"a b\" $(id)"),
        ]);
        // Empty inputs add nothing; verify takes no cache directory.
        let want = "upkeep --log-level info verify clusters/home --format markdown --forge github --dry-run --evidence github-status --no-wait --timeout 20m";
        let mut want: Vec<String> = want.split(' ').map(String::from).collect();
        // A quoted space stays in its word; `$(id)` is a word, never run.
        want.extend(["a b".to_string(), "$(id)".to_string()]);
        assert_eq!(got, Ok(want));
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(argv(&[("COMMAND", "revert")]), Err(ActionError::Command("revert".into())));
        assert!(matches!(argv(&[("COMMAND", "run"), ("EVIDENCE", "kube")]), Err(ActionError::Evidence { .. })));
        assert_eq!(argv(&[("DRY_RUN", "yes")]), Err(ActionError::DryRun("yes".into(), "run".into())));
        assert_eq!(
            argv(&[("COMMAND", "scan"), ("DRY_RUN", "true")]),
            Err(ActionError::DryRun("true".into(), "scan".into()))
        );
        assert_eq!(argv(&[("ARGS", "--x 'y")]), Err(ActionError::Quote('\'', "--x 'y".into())));
    }

    #[test]
    fn outputs_and_annotations_are_escaped() {
        assert_eq!(output_line("prs-opened", "2"), "prs-opened=2\n");
        assert_eq!(output_line("r", "a\nUPKEEP_EOF"), "r<<UPKEEP_EOF_\na\nUPKEEP_EOF\nUPKEEP_EOF_\n");
        let error =
            FileError { file: "a,b:c.yaml".into(), line: Some(3), column: None, message: "100% bad\nyes".into() };
        let mut out = Vec::new();
        annotate(&[error], Path::new("./sub"), &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "::error file=sub/a%2Cb%3Ac.yaml,line=3,title=upkeep could not read this manifest::100%25 bad%0Ayes\n"
        );
    }
}
