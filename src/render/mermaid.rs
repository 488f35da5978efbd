//! Mermaid flowcharts that GitHub draws in PR bodies, comments and issues: one chain of steps
//! (a merge's way through Flux, a platform's upgrade path), each step done, failed, current or
//! later. Pure text, no I/O.
//!
//! Labels carry untrusted text (a controller's message, a chart name from someone's index), so
//! node ids are generated here and never taken from input, every label is quoted, and every
//! character outside a small safe set is written as a Mermaid entity code (`#35;`): a `"` cannot
//! end the label, a `;` or newline cannot start a statement, `%%` cannot open a directive, and a
//! backtick cannot close the Markdown fence around the diagram. [`check`] is the structural
//! parser the tests hold every diagram to.

/// How far a step got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Happened.
    Done,
    /// Happened and failed: the chain stops here.
    Failed,
    /// Happening now, or the one a maintainer acts on next (an open PR, a soak under way).
    Current,
    /// Not reached (yet).
    Later,
}

impl Mark {
    fn class(self) -> &'static str {
        match self {
            Mark::Done => "done",
            Mark::Failed => "failed",
            Mark::Current => "current",
            Mark::Later => "later",
        }
    }
}

/// One box of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step is (`merged`, `Longhorn 1.5.4`); untrusted text is fine.
    pub label: String,
    /// A second line: a time, a state, a reason; untrusted text is fine.
    pub detail: Option<String>,
    /// How far it got.
    pub mark: Mark,
}

impl Step {
    /// A step with a label, a detail and a mark.
    pub fn new(label: impl Into<String>, detail: Option<String>, mark: Mark) -> Step {
        Step { label: label.into(), detail, mark }
    }
}

/// Punctuation a quoted label keeps as it is (a colon is safe inside quotes, and times read
/// better with it); everything else outside letters and digits becomes an entity code.
const SAFE: &str = " .,:-_/+=@";

/// The longest line a label keeps, in characters: a box is read at a glance, the evidence
/// table below the diagram has the whole text.
const LINE_MAX: usize = 60;

const CLASSES: [(&str, &str); 4] = [
    ("done", "fill:#dafbe1,stroke:#1a7f37,color:#1f2328"),
    ("failed", "fill:#ffebe9,stroke:#cf222e,color:#1f2328"),
    ("current", "fill:#fff8c5,stroke:#9a6700,color:#1f2328"),
    ("later", "fill:#f6f8fa,stroke:#8c959f,color:#57606a,stroke-dasharray:4"),
];

/// The chain as a left-to-right Mermaid flowchart (without the Markdown fence).
pub fn flowchart(steps: &[Step]) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, step) in steps.iter().enumerate() {
        let mut label = escape(&step.label);
        if let Some(detail) = &step.detail {
            label.push_str("<br/>");
            label.push_str(&escape(detail));
        }
        out.push_str(&format!("    s{i}[\"{label}\"]\n"));
    }
    if steps.len() > 1 {
        let ids: Vec<String> = (0..steps.len()).map(|i| format!("s{i}")).collect();
        out.push_str(&format!("    {}\n", ids.join(" --> ")));
    }
    for (name, style) in CLASSES {
        out.push_str(&format!("    classDef {name} {style}\n"));
    }
    for (name, _) in CLASSES {
        let ids: Vec<String> =
            steps.iter().enumerate().filter(|(_, s)| s.mark.class() == name).map(|(i, _)| format!("s{i}")).collect();
        if !ids.is_empty() {
            out.push_str(&format!("    class {} {name}\n", ids.join(",")));
        }
    }
    out
}

/// The chain in a fenced block, as Markdown embeds it.
pub fn fenced(steps: &[Step]) -> String {
    format!("```mermaid\n{}```", flowchart(steps))
}

/// Untrusted text as the inside of a quoted label: one line, clipped, and every character
/// outside letters, digits and [`SAFE`] written as `#<code point>;`.
pub fn escape(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clipped: String = if one_line.chars().count() > LINE_MAX {
        one_line.chars().take(LINE_MAX - 1).chain(['…']).collect()
    } else {
        one_line
    };
    let mut out = String::with_capacity(clipped.len());
    for c in clipped.chars() {
        if c.is_ascii_alphanumeric() || SAFE.contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("#{};", u32::from(c)));
        }
    }
    out
}

/// Check a flowchart written by [`flowchart`] the way a parser would: a header, node
/// statements with generated ids and quoted labels whose only markup is entity codes and
/// `<br/>`, one arrow chain over declared nodes, class definitions and assignments. Returns
/// what is wrong, with the line.
pub fn check(diagram: &str) -> Result<(), String> {
    let mut lines = diagram.lines();
    if lines.next() != Some("flowchart LR") {
        return Err("line 1: not `flowchart LR`".into());
    }
    let mut nodes: Vec<&str> = Vec::new();
    let mut classes: Vec<&str> = Vec::new();
    for (n, line) in lines.enumerate().map(|(i, l)| (i + 2, l)) {
        let stmt = line.strip_prefix("    ").ok_or(format!("line {n}: not indented: {line}"))?;
        let at = |why: &str| format!("line {n}: {why}: {line}");
        if let Some((id, rest)) = stmt.split_once("[\"") {
            let label = rest.strip_suffix("\"]").ok_or_else(|| at("a label that does not end in \"]"))?;
            check_id(id).map_err(|e| at(&e))?;
            check_label(label).map_err(|e| at(&e))?;
            nodes.push(id);
        } else if stmt.contains(" --> ") {
            for id in stmt.split(" --> ") {
                if !nodes.contains(&id) {
                    return Err(at(&format!("an arrow to `{id}`, which is not a node")));
                }
            }
        } else if let Some(def) = stmt.strip_prefix("classDef ") {
            let (name, style) = def.split_once(' ').ok_or_else(|| at("a classDef without a style"))?;
            if style.contains([';', '"', ' ']) {
                return Err(at("a style with a separator"));
            }
            classes.push(name);
        } else if let Some(assign) = stmt.strip_prefix("class ") {
            let (ids, name) = assign.split_once(' ').ok_or_else(|| at("a class without a name"))?;
            if !classes.contains(&name) || ids.split(',').any(|id| !nodes.contains(&id)) {
                return Err(at("a class of unknown nodes or name"));
            }
        } else {
            return Err(at("not a statement of this diagram"));
        }
    }
    if nodes.is_empty() { Err("no nodes".into()) } else { Ok(()) }
}

fn check_id(id: &str) -> Result<(), String> {
    let ok = id.strip_prefix('s').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok { Ok(()) } else { Err(format!("`{id}` is not a generated node id")) }
}

fn check_label(label: &str) -> Result<(), String> {
    let mut rest = label;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("<br/>") {
            rest = after;
        } else if c == '#' {
            let end = rest.find(';').ok_or("a `#` that starts no entity code")?;
            if rest[1..end].is_empty() || !rest[1..end].bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("`{}` is not a numeric entity code", &rest[..=end]));
            }
            rest = &rest[end + 1..];
        } else if c.is_ascii_alphanumeric() || SAFE.contains(c) {
            rest = &rest[c.len_utf8()..];
        } else {
            return Err(format!("an unescaped `{c}` in a label"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(diagram: &str) {
        if let Err(e) = check(diagram) {
            panic!("{e}\n{diagram}");
        }
    }

    #[test]
    fn hostile_text_stays_inside_its_label() {
        let hostile =
            "a\"] --> x[\"pwned\"]; click s0 call alert() %%{init: {}}%% #quot; `` ``` \n\nclass s0 done <script>";
        let diagram = flowchart(&[
            Step::new(hostile, Some("chart: \"ingress#nginx\"; next".into()), Mark::Failed),
            Step::new("ok", None, Mark::Later),
        ]);
        ok(&diagram);
        assert_eq!(diagram.lines().filter(|l| l.contains("-->")).count(), 1, "one arrow, ours: {diagram}");
        for line in diagram.lines().filter(|l| l.contains("[\"")) {
            let content = &line[line.find("[\"").unwrap_or(0) + 2..line.rfind("\"]").unwrap_or(line.len())];
            let bare = strip_entities(content);
            for bad in ["\"", ";", "%%", "`", "<script", "\n"] {
                assert!(!bare.contains(bad), "{bad} escaped in {content}");
            }
        }
        assert!(diagram.contains("#34;") && diagram.contains("#59;") && diagram.contains("#35;"), "{diagram}");
        // Kept as a snapshot so the Mermaid parser check (tests/mermaid) reads it too.
        insta::assert_snapshot!(fenced(&[Step::new(hostile, None, Mark::Failed)]));
    }

    /// The label with its entity codes taken out.
    fn strip_entities(label: &str) -> String {
        let mut out = String::new();
        let mut rest = label;
        while let Some(start) = rest.find('#') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find(';').map_or(rest.len(), |e| start + e + 1);
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn a_long_message_is_clipped_to_one_short_line() {
        let label = escape(&"word ".repeat(100));
        assert!(label.chars().count() < LINE_MAX + 10, "{label}");
        assert!(label.ends_with("#8230;"), "an ellipsis says it was cut: {label}");
    }

    #[test]
    fn the_checker_refuses_what_would_break_a_diagram() {
        let good = flowchart(&[Step::new("a", None, Mark::Done), Step::new("b", None, Mark::Current)]);
        ok(&good);
        for (broken, why) in [
            (good.replace("s1[\"b\"]", "s1[\"b\"c\"]"), "unescaped `\"`"),
            (good.replace("s1[\"b\"]", "s1[\"b;c\"]"), "unescaped `;`"),
            (good.replace("s1[\"b\"]", "s1[\"b#c\"]"), "`#`"),
            (good.replace("s0 --> s1", "s0 --> s9"), "not a node"),
            (good.replace("s1[\"b\"]", "evil[\"b\"]"), "generated node id"),
            (format!("{good}    click s0 href\n"), "not a statement"),
            (good.replace("flowchart LR", "graph TD"), "flowchart LR"),
        ] {
            let err = check(&broken).err().unwrap_or_else(|| panic!("accepted: {broken}"));
            assert!(err.contains(why), "{why} in {err}");
        }
    }

    #[test]
    fn a_chain_snapshot() {
        let diagram = fenced(&[
            Step::new("merged", Some("2026-12-02 02:59:49 UTC".into()), Mark::Done),
            Step::new("source at 0123456789ab", Some("+4s".into()), Mark::Done),
            Step::new("HelmRelease upgraded", None, Mark::Failed),
            Step::new("soaked", None, Mark::Later),
        ]);
        insta::assert_snapshot!(diagram);
    }
}
