//! `upkeep history`: one line per update upkeep made, newest merge first — what it changed,
//! when it merged, the verdict, and the revert or forward-fix that followed. Everything is read
//! back from where upkeep keeps state: the `Upkeep-Update`/`Upkeep-Revert` trailers on the
//! default branch (`git/merges.rs`), the verdict notes (`refs/notes/upkeep`) and, for a merge
//! without a note (a checkout that did not fetch the notes), the forge's `upkeep/verify` status.
//! The dependency dashboard's "Recently verified" section is made from the same lines.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::AppError;
use crate::cli::HistoryArgs;
use crate::forge::{Forge, StatusState};
use crate::git::Writer;
use crate::report::Format;
use crate::verify::record::{Action, Record, STATUS_CONTEXT, Word};

/// How far back history reads the default branch, at most.
const MAX_MERGES_READ: usize = 2_000;

/// A verdict as history reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Reconciled and healthy.
    Success,
    /// Failed in the cluster.
    Failure,
    /// Being verified, or not looked at yet.
    Pending,
    /// Never verified: merged before the verifier's horizon when it first looked (or since).
    NotVerified,
}

impl Verdict {
    /// As the JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::Pending => "pending",
            Verdict::NotVerified => "not-verified",
        }
    }
}

/// Where a line's verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The verdict note on the merge.
    Note,
    /// The forge's `upkeep/verify` commit status.
    Status,
    /// Nothing: no verdict was recorded.
    None,
}

/// One update upkeep made: the JSON contract of `upkeep history --format json` (README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Dependency id.
    pub dependency: String,
    /// Display name (chart, `k3s`, `flux`).
    pub name: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
    /// The merge that brought it onto the default branch.
    pub commit: String,
    /// When it merged.
    pub merged_at: Timestamp,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one line.
    pub reason: String,
    /// What followed a failure.
    pub action: Action,
    /// The revert branch, if any.
    pub branch: Option<String>,
    /// The revert PR or forward-fix issue (number or file), if any.
    pub pr: Option<String>,
    /// The merge that reverted this update (an `Upkeep-Revert` trailer naming it), if merged.
    pub reverted_in: Option<String>,
    /// Where the verdict came from.
    pub source: Source,
}

/// The lines of the newest `max` upkeep merges on the checked-out branch, newest first, and
/// the problems met on the way (a status that could not be read: the line says "pending").
/// A merge older than `horizon` with no verdict is "not verified".
pub fn lines(
    writer: &Writer,
    forge: &dyn Forge,
    horizon: Duration,
    now: Timestamp,
    max: usize,
) -> Result<(Vec<Line>, Vec<String>), String> {
    let merges = writer.upkeep_merges(Timestamp::UNIX_EPOCH, max).map_err(|e| e.to_string())?;
    // Which merge reverted (dependency, version); the walk is newest first, so the last one
    // written is the oldest revert: the one that undid the update.
    let mut reverted_in: HashMap<(String, String), String> = HashMap::new();
    for m in &merges {
        for (dep, version) in &m.reverts {
            reverted_in.insert((dep.clone(), version.clone()), m.commit.clone());
        }
    }
    let horizon = i64::try_from(horizon.as_secs()).unwrap_or(i64::MAX);
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    for m in merges.iter().filter(|m| !m.updates.is_empty()) {
        let note = match writer.note(&m.commit) {
            Ok(text) => text.as_deref().and_then(Record::from_note),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        let (verdict, reason, source) = match &note {
            Some(r) => (from_word(r.verdict), r.reason.clone(), Source::Note),
            None => match status(forge, &m.commit) {
                Ok(Some(found)) => (found.0, found.1, Source::Status),
                Ok(None) if now.as_second() - m.merged_at.as_second() > horizon => {
                    (Verdict::NotVerified, "merged before the verifier's horizon: never verified".into(), Source::None)
                }
                Ok(None) => (Verdict::Pending, "no verdict yet".into(), Source::None),
                Err(e) => {
                    problems.push(format!("the upkeep/verify status of {}: {e}", short(&m.commit)));
                    (Verdict::Pending, "the verdict could not be read".into(), Source::None)
                }
            },
        };
        for u in &m.updates {
            let name = note
                .as_ref()
                .and_then(|r| r.updates.iter().find(|v| v.id == u.id).map(|v| v.name.clone()))
                .unwrap_or_else(|| crate::verify::target::name_of(&u.id));
            out.push(Line {
                dependency: u.id.clone(),
                name,
                from: u.from.clone(),
                to: u.to.clone(),
                commit: m.commit.clone(),
                merged_at: m.merged_at,
                verdict,
                reason: reason.clone(),
                action: note.as_ref().map_or(Action::None, |r| r.action),
                branch: note.as_ref().and_then(|r| r.branch.clone()),
                pr: note.as_ref().and_then(|r| r.pr.clone()),
                reverted_in: reverted_in.get(&(u.id.clone(), u.to.clone())).cloned(),
                source,
            });
        }
    }
    Ok((out, problems))
}

fn from_word(w: Word) -> Verdict {
    match w {
        Word::Success => Verdict::Success,
        Word::Failure => Verdict::Failure,
        Word::Pending => Verdict::Pending,
        Word::Skipped => Verdict::NotVerified,
    }
}

/// The newest `upkeep/verify` status of `commit`: its verdict and description.
fn status(forge: &dyn Forge, commit: &str) -> Result<Option<(Verdict, String)>, String> {
    let all = forge.statuses(commit).map_err(|e| e.to_string())?;
    Ok(all.into_iter().find(|s| s.context == STATUS_CONTEXT).map(|s| {
        let verdict = match s.state {
            StatusState::Success => Verdict::Success,
            StatusState::Failure => Verdict::Failure,
            StatusState::Pending | StatusState::Error => Verdict::Pending,
        };
        (verdict, s.description)
    }))
}

/// What followed, in words: "revert PR #3, merged in `abc`", "forward-fix issue #7".
pub fn follow_up(line: &Line) -> String {
    let label = |p: &str| if p.chars().all(|c| c.is_ascii_digit()) { format!("#{p}") } else { p.to_string() };
    let merged = line.reverted_in.as_deref().map(|c| format!("merged in `{}`", short(c)));
    match (line.action, line.pr.as_deref(), merged) {
        (Action::Revert, Some(pr), Some(m)) => format!("revert PR {}, {m}", label(pr)),
        (Action::Revert, Some(pr), None) => format!("revert PR {} (open)", label(pr)),
        (Action::ForwardFix, Some(issue), _) => format!("forward-fix issue {}", label(issue)),
        (_, _, Some(_)) => format!("reverted in `{}`", line.reverted_in.as_deref().map_or("", short)),
        _ => String::new(),
    }
}

/// The merge date as the table shows it (UTC, to the minute).
pub fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M").to_string()
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// `upkeep history [PATH]`.
pub fn history(args: &HistoryArgs, out: &mut dyn Write) -> Result<(), AppError> {
    let writer = Writer::open(&args.path, crate::git::Author::default()).map_err(|e| AppError::Run(e.to_string()))?;
    let workdir = writer
        .workdir()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| AppError::Run("the repository has no work tree".into()))?;
    let config = crate::config::load(&workdir, args.config.as_deref())?;
    let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty());
    let (forge, _) = crate::run::open_forge(
        args.forge,
        args.prs_dir.as_deref(),
        args.repo.as_deref(),
        None,
        &workdir,
        token.as_deref(),
    )?;
    let (lines, problems) = lines(&writer, forge.as_ref(), config.verify.horizon, Timestamp::now(), MAX_MERGES_READ)
        .map_err(AppError::Run)?;
    for p in &problems {
        tracing::warn!("{p}");
    }
    write(&lines, args.format, out)?;
    Ok(())
}

/// The history in `format` (JSON when not a terminal).
pub fn write(lines: &[Line], format: Option<Format>, out: &mut dyn Write) -> std::io::Result<()> {
    use std::io::IsTerminal;
    let format = format.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json });
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "history": lines }))
                .map_err(std::io::Error::other)?;
            writeln!(out)
        }
        Format::Table => {
            if lines.is_empty() {
                return writeln!(out, "no upkeep merges on this branch");
            }
            writeln!(
                out,
                "MERGED            MERGE         UPDATE                                  VERDICT       FOLLOW-UP"
            )?;
            for l in lines {
                let update = format!("{} {} → {}", l.name, l.from, l.to);
                writeln!(
                    out,
                    "{:<16}  {:<12}  {:<38}  {:<12}  {}",
                    date(l.merged_at),
                    short(&l.commit),
                    update,
                    l.verdict.as_str(),
                    follow_up(l).replace('`', "")
                )?;
            }
            Ok(())
        }
        Format::Markdown => {
            writeln!(out, "| Merged | Merge | Update | Verdict | Follow-up | Reason |")?;
            writeln!(out, "| --- | --- | --- | --- | --- | --- |")?;
            for l in lines {
                writeln!(
                    out,
                    "| {} | `{}` | `{}` {} → {} | {} | {} | {} |",
                    date(l.merged_at),
                    short(&l.commit),
                    l.dependency,
                    l.from,
                    l.to,
                    l.verdict.as_str(),
                    follow_up(l),
                    crate::render::sanitize_inline(&l.reason).replace('|', "\\|")
                )?;
            }
            Ok(())
        }
    }
}
