//! The scan report in three shapes: a table for people at a terminal, JSON for programs (the
//! contract in `docs/scan-json.md`), and Markdown for job summaries and issues.
//!
//! Pure formatting: it takes a finished [`Scan`] and writes text; it reads no files.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use serde::Serialize;

use crate::extract::Scan;
use crate::gate::available::{Available, Update};
use crate::gate::{Action, Decision, Plan};
use crate::model::{Component, Dependency, FileError, Kind, LookupFailure, Manifest, Package, PlanRole, Skip};

/// Everything a scan report shows: what was found and, when lookups ran, what it could move to.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The extraction.
    pub scan: &'a Scan,
    /// Available versions by dependency id (empty when lookups did not run).
    pub versions: &'a HashMap<String, Available>,
    /// Dependencies whose lookups failed.
    pub lookup_errors: &'a [LookupFailure],
    /// The gate's decisions, when planning.
    pub plan: Option<&'a Plan>,
}

/// Output format of `upkeep scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, for a terminal.
    Table,
    /// The documented JSON contract.
    Json,
    /// A Markdown table.
    Markdown,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    dependencies: Vec<JsonDependency<'a>>,
    errors: &'a [FileError],
    lookup_errors: &'a [LookupFailure],
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<&'a [String]>,
}

/// One dependency as the JSON contract spells it.
#[derive(Serialize)]
struct JsonDependency<'a> {
    id: &'a str,
    kind: Kind,
    component: Component,
    file: &'a str,
    line: usize,
    column: usize,
    name: &'a str,
    namespace: Option<&'a str>,
    package: Option<&'a Package>,
    current: Option<&'a str>,
    skip: Option<&'a Skip>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<PlanRole>,
    manifest: &'a Manifest,
    #[serde(skip_serializing_if = "Option::is_none")]
    clusters: Option<&'a [String]>,
    latest: Option<&'a str>,
    updates: &'a [Update],
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a Decision>,
}

impl<'a> JsonDependency<'a> {
    fn new(d: &'a Dependency, available: Option<&'a Available>, decision: Option<&'a Decision>) -> Self {
        JsonDependency {
            id: &d.id,
            kind: d.kind,
            component: d.component,
            file: d.file(),
            line: d.line(),
            column: d.column(),
            name: &d.name,
            namespace: d.namespace.as_deref(),
            package: d.package.as_ref(),
            current: d.current.as_deref(),
            skip: d.skip.as_ref(),
            role: d.role,
            manifest: &d.manifest,
            clusters: d.clusters.as_deref(),
            latest: available.and_then(|a| a.latest.as_deref()),
            updates: available.map_or(&[], |a| a.updates.as_slice()),
            decision,
        }
    }
}

/// Write the report in `format`.
///
/// Buffered here: stdout is line-buffered, and a pretty-printed report of 10,000 dependencies
/// is 300,000 lines, one `write` system call each (a seventh of a large scan's time).
pub fn write(report: &Report<'_>, format: Format, out: &mut dyn Write) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    match format {
        Format::Json => write_json(report, &mut out),
        Format::Table => write_table(report, &mut out),
        Format::Markdown => write_markdown(report, &mut out),
    }?;
    out.flush()
}

/// A report of a scan without lookups.
pub fn scan_only(scan: &Scan) -> Report<'_> {
    static EMPTY: std::sync::OnceLock<HashMap<String, Available>> = std::sync::OnceLock::new();
    Report { scan, versions: EMPTY.get_or_init(HashMap::new), lookup_errors: &[], plan: None }
}

/// The JSON contract.
pub fn write_json(report: &Report<'_>, out: &mut dyn Write) -> io::Result<()> {
    let json = JsonReport {
        dependencies: report
            .scan
            .dependencies
            .iter()
            .map(|d| {
                JsonDependency::new(d, report.versions.get(&d.id), report.plan.and_then(|p| p.decisions.get(&d.id)))
            })
            .collect(),
        errors: &report.scan.errors,
        lookup_errors: report.lookup_errors,
        notes: report.plan.map(|p| p.notes.as_slice()),
    };
    serde_json::to_writer_pretty(&mut *out, &json)?;
    writeln!(out)
}

/// `1.4.4 (patch), 2.0.0 (major, breaking)`.
fn updates_cell(available: Option<&Available>) -> String {
    let Some(a) = available else { return "-".into() };
    if a.updates.is_empty() {
        return "up to date".into();
    }
    a.updates
        .iter()
        .map(|u| {
            let mut tags = vec![u.update_type.as_str()];
            let mut kinds: Vec<&str> = u.signals.iter().map(|s| s.kind.as_str()).collect();
            kinds.dedup();
            tags.extend(kinds);
            format!("{} ({})", u.version, tags.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn package_cell(d: &Dependency) -> String {
    match &d.package {
        Some(p) => match p.datasource {
            crate::model::Datasource::Oci => format!("{}/{}", p.registry, p.name),
            crate::model::Datasource::Helm => format!("{} @ {}", p.name, p.registry),
            crate::model::Datasource::GithubReleases => format!("github:{}", p.name),
        },
        None => "-".into(),
    }
}

fn status_cell(d: &Dependency, report: &Report<'_>) -> String {
    if let Some(s) = &d.skip {
        return format!("skip {}: {}", s.reason.as_str(), s.message);
    }
    match report.lookup_errors.iter().find(|e| e.id == d.id) {
        Some(e) => format!("lookup failed: {}: {}", e.url, e.message),
        None => format!("ok ({})", package_cell(d)),
    }
}

/// One line per count: the summary people read first.
pub fn summary(report: &Report<'_>) -> String {
    let scan = report.scan;
    let skipped = scan.dependencies.iter().filter(|d| d.skip.is_some()).count();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &scan.dependencies {
        if let Some(s) = &d.skip {
            *by_reason.entry(s.reason.as_str()).or_default() += 1;
        }
    }
    let reasons: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let lookups = if report.versions.is_empty() && report.lookup_errors.is_empty() {
        String::new()
    } else {
        let outdated = report.versions.values().filter(|a| !a.updates.is_empty()).count();
        format!(", {outdated} with updates, {} lookup errors", report.lookup_errors.len())
    };
    format!(
        "{} files, {} dependencies ({} updatable, {} skipped{}){lookups}, {} errors",
        scan.files_scanned,
        scan.dependencies.len(),
        scan.dependencies.len() - skipped,
        skipped,
        if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join(", ")) },
        scan.errors.len()
    )
}

/// `propose 1.5.4 (minor) [step 1/3]`.
pub fn decision_cell(d: &Decision) -> String {
    let mut cell = d.action.as_str().to_string();
    if let Some(t) = &d.target {
        cell.push_str(&format!(" {t}"));
    }
    if let Some(u) = d.update_type {
        cell.push_str(&format!(" ({})", u.as_str()));
    }
    if let Some((step, of)) = d.step {
        cell.push_str(&format!(" [step {step}/{of}]"));
    }
    cell
}

/// Counts of decisions by action.
pub fn plan_summary(plan: &Plan) -> String {
    let count = |a: Action| plan.decisions.values().filter(|d| d.action == a).count();
    let groups: std::collections::BTreeSet<&str> =
        plan.decisions.values().filter(|d| d.action == Action::Propose).filter_map(|d| d.group.as_deref()).collect();
    format!(
        "{} propose ({} PRs), {} hold, {} blocked, {} skip",
        count(Action::Propose),
        groups.len(),
        count(Action::Hold),
        count(Action::Blocked),
        count(Action::Skip)
    )
}

fn write_plan_table(report: &Report<'_>, plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let header = ["DEPENDENCY", "CURRENT", "DECISION", "PR", "REASON"];
    let rows: Vec<[String; 5]> = report
        .scan
        .dependencies
        .iter()
        .map(|d| {
            let decision = plan.decisions.get(&d.id);
            [
                d.id.clone(),
                d.current.clone().unwrap_or_else(|| "-".into()),
                decision.map_or_else(|| "-".into(), decision_cell),
                decision.and_then(|x| x.group.as_deref()).map_or_else(|| "-".into(), |g| format!("upkeep/{g}")),
                decision.map_or_else(String::new, |x| x.reason.clone()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()).take(4) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 4 { s.push_str(&format!("{cell:<w$}  ", w = widths[i])) } else { s.push_str(cell) }
        }
        s.trim_end().to_string()
    };
    for note in &plan.notes {
        writeln!(out, "NOTE: {note}")?;
    }
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]))?;
    }
    writeln!(out)?;
    writeln!(out, "{}", plan_summary(plan))?;
    writeln!(out, "{}", summary(report))
}

fn write_table(report: &Report<'_>, out: &mut dyn Write) -> io::Result<()> {
    if let Some(plan) = report.plan {
        return write_plan_table(report, plan, out);
    }
    let scan = report.scan;
    let header = ["DEPENDENCY", "COMPONENT", "CURRENT", "UPDATES", "LOCATION", "STATUS"];
    let rows: Vec<[String; 6]> = scan
        .dependencies
        .iter()
        .map(|d| {
            let component = match d.role {
                Some(role) if role != PlanRole::Unknown => format!("{} ({})", d.component.as_str(), role_name(role)),
                _ => d.component.as_str().to_string(),
            };
            [
                d.id.clone(),
                component,
                d.current.clone().unwrap_or_else(|| "-".into()),
                updates_cell(report.versions.get(&d.id)),
                format!("{}:{}:{}", d.file(), d.line(), d.column()),
                status_cell(d, report),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()).take(5) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 5 {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header))?;
    for row in &rows {
        writeln!(out, "{}", line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]))?;
    }
    if !scan.errors.is_empty() {
        writeln!(out)?;
        writeln!(out, "ERRORS")?;
        for e in &scan.errors {
            writeln!(out, "{}: {}", error_place(e), e.message)?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", summary(report))
}

fn role_name(role: PlanRole) -> &'static str {
    match role {
        PlanRole::Server => "server",
        PlanRole::Agent => "agent",
        PlanRole::Unknown => "unknown",
    }
}

/// `file:line:column` of an error, as much of it as is known.
pub fn error_place(e: &FileError) -> String {
    match (e.line, e.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", e.file),
        (Some(l), None) => format!("{}:{l}", e.file),
        _ => e.file.clone(),
    }
}

/// Make text safe inside a Markdown table cell.
fn md(text: &str) -> String {
    text.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn write_plan_markdown(report: &Report<'_>, plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "## upkeep plan")?;
    writeln!(out)?;
    for note in &plan.notes {
        writeln!(out, "> **Note:** {}", md(note))?;
        writeln!(out)?;
    }
    writeln!(out, "{}", plan_summary(plan))?;
    writeln!(out)?;
    writeln!(out, "| Dependency | Current | Decision | PR | Reason |")?;
    writeln!(out, "| --- | --- | --- | --- | --- |")?;
    for d in &report.scan.dependencies {
        let decision = plan.decisions.get(&d.id);
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            md(&d.id),
            d.current.as_deref().map(|c| format!("`{}`", md(c))).unwrap_or_else(|| "-".into()),
            decision.map_or_else(|| "-".into(), |x| md(&decision_cell(x))),
            decision.and_then(|x| x.group.as_deref()).map_or_else(|| "-".into(), |g| format!("`upkeep/{}`", md(g))),
            decision.map_or_else(String::new, |x| md(&x.reason)),
        )?;
    }
    Ok(())
}

fn write_markdown(report: &Report<'_>, out: &mut dyn Write) -> io::Result<()> {
    if let Some(plan) = report.plan {
        return write_plan_markdown(report, plan, out);
    }
    let scan = report.scan;
    writeln!(out, "## upkeep scan")?;
    writeln!(out)?;
    writeln!(out, "{}", summary(report))?;
    writeln!(out)?;
    writeln!(out, "| Dependency | Component | Current | Updates | Location | Status |")?;
    writeln!(out, "| --- | --- | --- | --- | --- | --- |")?;
    for d in &scan.dependencies {
        writeln!(
            out,
            "| `{}` | {} | {} | {} | `{}:{}` | {} |",
            md(&d.id),
            d.component.as_str(),
            d.current.as_deref().map(|c| format!("`{}`", md(c))).unwrap_or_else(|| "-".into()),
            md(&updates_cell(report.versions.get(&d.id))),
            md(d.file()),
            d.line(),
            md(&status_cell(d, report)),
        )?;
    }
    if !scan.errors.is_empty() {
        writeln!(out)?;
        writeln!(out, "### Errors")?;
        writeln!(out)?;
        for e in &scan.errors {
            writeln!(out, "- `{}`: {}", md(&error_place(e)), md(&e.message))?;
        }
    }
    Ok(())
}
