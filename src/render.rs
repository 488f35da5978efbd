//! PR bodies and the dependency dashboard, rendered from `templates/*.hbs` with handlebars in
//! strict mode (a missing variable is an error, not an empty string) and without HTML escaping
//! (the output is Markdown). A repository can override any template by putting a file of the
//! same name in `.github/upkeep/templates/`.
//!
//! Release notes come from upstream and are treated as hostile: [`sanitize_notes`] stops them
//! from pinging people or issues, from breaking the Markdown around them, and from growing
//! without bound.

use std::path::Path;

use handlebars::Handlebars;
use serde::Serialize;

pub mod mermaid;

/// Templates built into the binary.
const BUILTIN: [(&str, &str); 7] = [
    ("pr-body", include_str!("../templates/pr-body.hbs")),
    ("dashboard", include_str!("../templates/dashboard.hbs")),
    ("summary", include_str!("../templates/summary.hbs")),
    ("revert-body", include_str!("../templates/revert-body.hbs")),
    ("forward-fix-body", include_str!("../templates/forward-fix-body.hbs")),
    ("verify-report", include_str!("../templates/verify-report.hbs")),
    ("dashboard-platform", include_str!("../templates/dashboard-platform.hbs")),
];

/// Where a repository may override templates.
pub const OVERRIDE_DIR: &str = ".github/upkeep/templates";

/// A template that cannot be used or rendered.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct RenderError {
    /// Template name (or file).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// The renderer, with built-in and overriding templates registered.
pub struct Renderer {
    hb: Handlebars<'static>,
    problems: Vec<String>,
}

impl Renderer {
    /// Built-in templates, then overrides from `<repo>/.github/upkeep/templates/<name>.hbs`.
    ///
    /// A PR-body override that does not load is an error: PRs would not look as the repository
    /// asked. A broken dashboard or summary override falls back to the built-in one and is
    /// reported through [`Renderer::problems`], so the updates themselves still go out.
    pub fn new(repo: Option<&Path>) -> Result<Renderer, RenderError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let mut problems = Vec::new();
        for (name, builtin) in BUILTIN {
            let source = repo.map(|r| r.join(OVERRIDE_DIR).join(format!("{name}.hbs"))).filter(|p| p.is_file());
            let overridden = source.as_ref().map(|path| {
                std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| hb.register_template_string(name, text).map_err(|e| e.to_string()))
                    .map_err(|message| RenderError { name: path.display().to_string(), message })
            });
            match overridden {
                Some(Ok(())) => {}
                Some(Err(e)) if name == "pr-body" => return Err(e),
                other => {
                    if let Some(Err(e)) = other {
                        problems.push(format!("{e}; the built-in {name} template was used instead"));
                    }
                    hb.register_template_string(name, builtin)
                        .map_err(|e| RenderError { name: name.to_string(), message: e.to_string() })?;
                }
            }
        }
        Ok(Renderer { hb, problems })
    }

    /// Overrides that could not be used, with why.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Render a PR body that GitHub will take: past [`PR_BODY_BUDGET`] characters, release
    /// notes give way (the oldest last section first) and a warning says which were left out.
    pub fn render_pr_body(&self, mut view: PrView, reserve: usize) -> Result<String, RenderError> {
        let budget = PR_BODY_BUDGET.saturating_sub(reserve);
        let mut body = self.render("pr-body", &view)?;
        let mut left_out = Vec::new();
        while body.chars().count() > budget {
            let Some(section) = view.notes.pop() else { break };
            left_out.push(format!("{} {}", section.dependency, section.version));
            body = self.render("pr-body", &view)?;
        }
        if !left_out.is_empty() {
            left_out.reverse();
            let mut note = format!(
                "Release notes left out to keep this PR under GitHub's size limit: {}. Read them upstream.",
                left_out.join(", ")
            );
            if note.chars().count() > 2_000 {
                note = format!(
                    "Release notes of {} versions left out to keep this PR under GitHub's size limit. Read them upstream.",
                    left_out.len()
                );
            }
            view.warnings.push(note);
            body = self.render("pr-body", &view)?;
        }
        // Still too long (a long jump with many signals): warnings give way, security first kept.
        let whole = view.warnings.len();
        let mut keep = whole;
        while body.chars().count() > budget && keep > 1 {
            keep /= 2;
            view.warnings.sort_by_key(|w| !w.starts_with("Security"));
            view.warnings.truncate(keep);
            view.warnings.push(format!("… and {} more warnings, left out for size", whole - keep));
            body = self.render("pr-body", &view)?;
            view.warnings.pop();
        }
        Ok(body)
    }

    /// Render the dashboard within [`PR_BODY_BUDGET`] (GitHub's issue bodies have the same
    /// limit): the longest lists are cut first, least urgent first (not updatable, then blocked,
    /// held, pending), each cut list ending in how many more there are.
    pub fn render_dashboard(&self, mut view: DashboardView) -> Result<String, RenderError> {
        view.counts = DashboardCounts {
            open: view.open.len(),
            pending: view.pending.len(),
            held: view.held.len(),
            blocked: view.blocked.len(),
            errors: view.errors.len(),
            not_updatable: view.not_updatable.len(),
        };
        let mut body = self.render("dashboard", &view)?;
        let original =
            [view.not_updatable.len(), view.blocked.len(), view.held.len(), view.pending.len(), view.errors.len()];
        let mut kept = original;
        while body.chars().count() > PR_BODY_BUDGET {
            // The longest list that can still be cut, least urgent first on ties.
            let Some(i) = (0..kept.len()).filter(|&i| kept[i] > 1).max_by_key(|&i| (kept[i], std::cmp::Reverse(i)))
            else {
                break;
            };
            kept[i] = (kept[i] / 2).max(1);
            let list = match i {
                0 => &mut view.not_updatable,
                1 => &mut view.blocked,
                2 => &mut view.held,
                3 => &mut view.pending,
                _ => &mut view.errors,
            };
            list.truncate(kept[i]);
            list.push(format!("… and {} more, left out to keep this under GitHub's size limit", original[i] - kept[i]));
            body = self.render("dashboard", &view)?;
        }
        Ok(body)
    }

    /// Render `name` with `data`.
    pub fn render<T: Serialize>(&self, name: &str, data: &T) -> Result<String, RenderError> {
        self.hb.render(name, data).map_err(|e| RenderError { name: name.to_string(), message: e.to_string() })
    }
}

/// One row of the updates table.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateRow {
    /// Dependency id.
    pub dependency: String,
    /// Package name as users know it.
    pub package: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
    /// patch/minor/major/build/prerelease.
    pub update_type: String,
    /// `3 days ago`, or `-`.
    pub age: String,
    /// File with the version.
    pub file: String,
    /// Line of the version.
    pub line: usize,
}

/// Release notes of one version, sanitized.
#[derive(Debug, Clone, Serialize)]
pub struct NotesSection {
    /// Dependency id.
    pub dependency: String,
    /// The version.
    pub version: String,
    /// Release page, if any.
    pub url: Option<String>,
    /// Sanitized Markdown.
    pub body: String,
}

/// Everything a PR body shows.
#[derive(Debug, Clone, Serialize)]
pub struct PrView {
    /// The updates.
    pub updates: Vec<UpdateRow>,
    /// More than one update.
    pub plural: bool,
    /// Breaking, security and upgrade-path warnings.
    pub warnings: Vec<String>,
    /// Release notes between from and to.
    pub notes: Vec<NotesSection>,
    /// What the verifier will watch after merge.
    pub after_merge: Vec<String>,
    /// A security fix is included.
    pub security: bool,
}

/// Everything the dashboard shows, one line per entry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DashboardView {
    /// Run-wide notes (a pause).
    pub notes: Vec<String>,
    /// Open PRs.
    pub open: Vec<String>,
    /// Proposed but not opened (dry run, or a failure).
    pub pending: Vec<String>,
    /// Held, with reasons.
    pub held: Vec<String>,
    /// Blocked, with reasons.
    pub blocked: Vec<String>,
    /// Errors: files, lookups, edits, forge.
    pub errors: Vec<String>,
    /// Versions upkeep cannot update (floating ranges, substitutions, ...), with what to do.
    pub not_updatable: Vec<String>,
    /// How many entries each list had before any was cut for size (set when rendering).
    pub counts: DashboardCounts,
    /// The newest verdicts on upkeep's merged updates (from `upkeep history`'s lines).
    pub recently_verified: Vec<String>,
    /// Each platform upgrade chain (k3s, Longhorn) as a Mermaid diagram
    /// (`templates/dashboard-platform.hbs`).
    pub platform_chains: Vec<PlatformChain>,
}

/// One platform upgrade chain on the dashboard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlatformChain {
    /// The dependency id.
    pub id: String,
    /// The chain as a fenced Mermaid flowchart.
    pub diagram: String,
}

/// The size of each dashboard list, whole.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DashboardCounts {
    /// Open PRs.
    pub open: usize,
    /// Pending updates.
    pub pending: usize,
    /// Held updates.
    pub held: usize,
    /// Blocked updates.
    pub blocked: usize,
    /// Errors.
    pub errors: usize,
    /// Not updatable.
    pub not_updatable: usize,
}

/// What one `upkeep run` did, for the GitHub Actions job summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SummaryView {
    /// Nothing was written: a dry run.
    pub dry_run: bool,
    /// Decisions counted: `6 propose (5 PRs), 0 hold, ...`.
    pub counts: String,
    /// Branches written.
    pub branches: Vec<String>,
    /// PRs opened.
    pub opened: Vec<String>,
    /// PRs updated.
    pub updated: Vec<String>,
    /// PRs closed as superseded.
    pub closed: Vec<String>,
    /// Branches left alone (commits by others).
    pub foreign: Vec<String>,
    /// Held by the writer, with why.
    pub held: Vec<String>,
    /// Updates that could not be written.
    pub errors: Vec<String>,
    /// Dependencies whose versions could not be looked up (listed on the dashboard).
    pub lookup_errors: usize,
}

/// Most characters of a rendered PR body (GitHub takes 65,536; the markers need a little room).
pub const PR_BODY_BUDGET: usize = 60_000;

/// Longest notes kept per version.
pub const NOTES_MAX: usize = 6_000;

/// Make upstream release notes safe to embed in a PR body:
/// - `@user` and `#123` / `owner/repo#123` cannot ping or cross-reference (a zero-width space is
///   inserted, as Renovate does), and `https://github.com/` links go through
///   `redirect.github.com` so the upstream issue gets no backlink;
/// - raw HTML cannot close the surrounding `<details>` (`<` is escaped), headings stay inside a
///   blockquote, an unclosed code fence is closed;
/// - text past `max` characters is cut at a line with a link to the full notes.
pub fn sanitize_notes(text: &str, max: usize, url: Option<&str>) -> String {
    let mut cut = false;
    let mut kept = String::new();
    for line in text.lines() {
        if kept.chars().count() + line.chars().count() > max {
            cut = true;
            if kept.is_empty() {
                // One enormous line: keep its beginning rather than nothing.
                kept.extend(line.chars().take(max));
                kept.push('\n');
            }
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    let mut out = String::with_capacity(kept.len() + 64);
    let chars: Vec<char> = kept.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = if i == 0 { ' ' } else { chars[i - 1] };
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        let gh_ref = c == '-'
            && next.is_ascii_digit()
            && i >= 2
            && chars[i - 2].eq_ignore_ascii_case(&'g')
            && chars[i - 1].eq_ignore_ascii_case(&'h')
            && (i < 3 || !chars[i - 3].is_ascii_alphanumeric());
        match c {
            '@' if next.is_ascii_alphanumeric() && !prev.is_ascii_alphanumeric() => out.push_str("@&#8203;"),
            '#' if next.is_ascii_digit() => out.push_str("#&#8203;"),
            // `GH-123` links and backlinks like `#123`.
            '-' if gh_ref => out.push_str("-&#8203;"),
            '<' => out.push_str("&lt;"),
            // Upstream entities (`&#x40;`, `&commat;`, `&#35;`) would turn back into `@` and `#`
            // after the checks above: shown as written instead.
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
        i += 1;
    }
    let out = no_backlinks(&out);
    let fences = out.lines().filter(|l| l.trim_start().starts_with("```")).count();
    let mut body: String = out
        .lines()
        .map(|l| if l.is_empty() { ">".to_string() } else { format!("> {l}") })
        .collect::<Vec<_>>()
        .join("\n");
    if fences % 2 == 1 {
        body.push_str("\n> ```");
    }
    if cut {
        match url.filter(|u| u.starts_with("https://") && !u.contains(|c: char| c.is_whitespace() || c == ')')) {
            Some(u) => body.push_str(&format!("\n>\n> … cut here; [read the full notes]({})", no_backlinks(u))),
            None => body.push_str("\n>\n> … cut here"),
        }
    }
    body
}

/// Links to GitHub go through `redirect.github.com`, so the issue or PR they name gets no
/// backlink from this PR: any case, with or without `www.`, http or https.
fn no_backlinks(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &lower[i..];
        let matched =
            ["https://www.github.com/", "http://www.github.com/", "https://github.com/", "http://github.com/"]
                .into_iter()
                .find(|p| rest.starts_with(p));
        match matched {
            Some(p) => {
                out.push_str("https://redirect.github.com/");
                i += p.len();
            }
            None => {
                let c = text[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// Make one line of upstream text (a signal's evidence) safe inside a list item: the same
/// neutralising as [`sanitize_notes`], on one line, without the blockquote.
pub fn sanitize_inline(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    sanitize_notes(&one_line, NOTES_MAX, None).trim_start_matches("> ").trim_start_matches('>').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashboard_of_a_huge_repository_stays_under_githubs_limit() {
        let many =
            |what: &str| (0..3000).map(|i| format!("`helmrelease/apps/{what}-{i}`: a reason of some length")).collect();
        let view =
            DashboardView { not_updatable: many("floating"), pending: many("pending"), ..DashboardView::default() };
        let renderer = Renderer::new(None).unwrap_or_else(|e| panic!("{e}"));
        let body = renderer.render_dashboard(view).unwrap_or_else(|e| panic!("{e}"));
        assert!(body.chars().count() <= PR_BODY_BUDGET, "{}", body.chars().count());
        assert!(body.contains("`helmrelease/apps/pending-0`"), "the first entries stay");
        // Counted against the whole list, however many cuts it took.
        let line = body.lines().find(|l| l.contains("more, left out")).unwrap_or_default();
        let left: usize =
            line.trim_start_matches("- … and ").split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let kept = body.lines().filter(|l| l.contains("`helmrelease/apps/pending-")).count();
        assert_eq!(kept + left, 3000, "{line}");
        assert!(body.contains("## Pending (3000)"), "headings count the whole list");
    }

    #[test]
    fn a_long_jump_with_many_warnings_still_fits_and_keeps_security_first() {
        let mut warnings: Vec<String> =
            (0..2000).map(|i| format!("Breaking change (app 1.{i}.0): {}", "renamed a value ".repeat(5))).collect();
        warnings.push("Security (app 1.999.0): GHSA-xxxx-yyyy-zzzz".into());
        let view = PrView {
            updates: Vec::new(),
            plural: false,
            warnings,
            notes: Vec::new(),
            after_merge: Vec::new(),
            security: true,
        };
        let renderer = Renderer::new(None).unwrap_or_else(|e| panic!("{e}"));
        let body = renderer.render_pr_body(view, 5_000).unwrap_or_else(|e| panic!("{e}"));
        assert!(body.chars().count() <= PR_BODY_BUDGET - 5_000, "{}", body.chars().count());
        assert!(body.contains("GHSA-xxxx-yyyy-zzzz"), "the security warning is kept");
        assert!(body.contains("more warnings, left out for size"));
    }

    #[test]
    fn entities_gh_references_and_any_github_spelling_are_neutralised() {
        let out = sanitize_notes(
            "thanks &#x40;octocat and &commat;org/team, fixes &#35;12 and GH-34, see https://WWW.GitHub.com/o/r/issues/5",
            NOTES_MAX,
            None,
        );
        assert!(out.contains("&amp;#x40;octocat") && out.contains("&amp;commat;org/team"), "{out}");
        assert!(out.contains("fixes &amp;#") && !out.contains("fixes &#35;"), "{out}");
        assert!(out.contains("GH-&#8203;34"), "{out}");
        assert!(out.contains("https://redirect.github.com/o/r/issues/5"), "{out}");
        let cut = sanitize_notes(&"line\n".repeat(100), 20, Some("https://github.com/o/r/releases/tag/v1"));
        assert!(cut.ends_with("(https://redirect.github.com/o/r/releases/tag/v1)"), "{cut}");
        let hostile = sanitize_notes(&"line\n".repeat(100), 20, Some("javascript:alert(1)"));
        assert!(hostile.ends_with("… cut here"), "{hostile}");
    }

    #[test]
    fn one_enormous_line_keeps_its_beginning() {
        let out = sanitize_notes(&"x".repeat(10_000), 100, Some("https://example.com/notes"));
        assert!(out.starts_with(&format!("> {}", "x".repeat(100))), "{out}");
        assert!(out.ends_with("[read the full notes](https://example.com/notes)"));
    }

    #[test]
    fn a_pr_body_full_of_notes_stays_under_githubs_limit() {
        let notes: Vec<NotesSection> = (0..20)
            .map(|i| NotesSection {
                dependency: format!("chart-{}", i / 5),
                version: format!("1.{i}.0"),
                url: None,
                body: sanitize_notes(&"- a line of release notes with <b>markup</b>\n".repeat(400), NOTES_MAX, None),
            })
            .collect();
        let view = PrView {
            updates: Vec::new(),
            plural: true,
            warnings: Vec::new(),
            notes,
            after_merge: Vec::new(),
            security: false,
        };
        let renderer = Renderer::new(None).unwrap_or_else(|e| panic!("{e}"));
        let body = renderer.render_pr_body(view, 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(body.chars().count() <= PR_BODY_BUDGET, "{}", body.chars().count());
        assert!(body.contains("Release notes left out to keep this PR under GitHub's size limit: chart-"), "{body}");
        assert!(body.contains("chart-3 1.19.0"), "the last sections went first");
        assert!(body.contains("1.0.0"), "the first sections stay");
    }

    #[test]
    fn hostile_notes_are_defused() {
        let notes = "## Thanks @octocat for #123 and fluxcd/flux2#42\n</details><script>x</script>\n```sh\nrm -rf /\nSee https://github.com/org/repo/issues/9 and mail me@example.com";
        let out = sanitize_notes(notes, 10_000, None);
        assert!(out.contains("@&#8203;octocat") && out.contains("#&#8203;123") && out.contains("flux2#&#8203;42"));
        assert!(out.contains("&lt;/details>") && !out.contains("</details>"));
        assert!(out.contains("https://redirect.github.com/org/repo/issues/9"));
        assert!(out.contains("me@example.com"), "an email is not a mention");
        assert!(out.lines().all(|l| l.starts_with('>')), "everything stays inside the quote");
        assert!(out.ends_with("> ```"), "the open fence is closed");
    }

    #[test]
    fn inline_text_is_defused_too() {
        let out = sanitize_inline("fix by [@johngmyers](https://github.com/x) in #3764\nnext");
        assert_eq!(out, "fix by [@&#8203;johngmyers](https://redirect.github.com/x) in #&#8203;3764 next");
    }

    #[test]
    fn long_notes_are_cut_with_a_link() {
        let notes = "line of text\n".repeat(1_000);
        let out = sanitize_notes(&notes, 100, Some("https://example.com/r"));
        assert!(out.len() < 400 && out.ends_with("[read the full notes](https://example.com/r)"));
    }

    #[test]
    fn strict_mode_refuses_missing_variables() {
        let r = Renderer::new(None).unwrap_or_else(|e| panic!("{e}"));
        let err = r.render("pr-body", &serde_json::json!({"updates": []})).unwrap_err();
        assert!(err.message.contains("strict mode"), "{err}");
    }
}
