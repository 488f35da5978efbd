//! Signals read from what upstream says about a release: security fixes, breaking changes,
//! deprecations, and Kubernetes version constraints.
//!
//! Two inputs: free-text release notes (GitHub release bodies), and the structured
//! `artifacthub.io/changes` chart annotation (kinds `added`, `changed`, `deprecated`, `removed`,
//! `fixed`, `security`; artifacthub docs, "Artifact Hub annotations"), which Renovate does not
//! read (renovate#13385). Detection is deliberately plain: ids and phrases a maintainer would
//! search for, with the line that matched as the evidence.

use crate::model::{Signal, SignalKind};
use crate::yaml::{Node, parse_stream};

/// Longest evidence kept per signal.
const DETAIL_MAX: usize = 160;

fn clip(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= DETAIL_MAX {
        return text.to_string();
    }
    let cut: String = text.chars().take(DETAIL_MAX).collect();
    format!("{cut}…")
}

/// CVE and GHSA identifiers in `text`.
pub fn advisory_ids(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let upper = text.to_ascii_uppercase();
    for (start, _) in upper.match_indices("CVE-") {
        let rest = &upper[start + 4..];
        let year: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if year.len() != 4 || rest.as_bytes().get(4) != Some(&b'-') {
            continue;
        }
        let num: String = rest[5..].chars().take_while(char::is_ascii_digit).collect();
        if num.len() >= 4 {
            ids.push(format!("CVE-{year}-{num}"));
        }
    }
    for (start, _) in upper.match_indices("GHSA-") {
        let id: String = upper[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if id.len() == 19 && id.matches('-').count() == 3 {
            ids.push(id.to_ascii_lowercase().replacen("ghsa", "GHSA", 1));
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

const BREAKING_PHRASES: [&str; 9] = [
    "breaking change",
    "breaking:",
    // release-plz / git-cliff changelogs mark entries `[**breaking**]`; conventional commits `feat!:`.
    "[**breaking**]",
    "**breaking**",
    "[breaking]",
    "action required",
    "upgrade notes",
    "migration required",
    "backwards incompatible",
];

/// Signals in free-text release notes.
pub fn from_notes(notes: &str) -> Vec<Signal> {
    let mut out = Vec::new();
    let ids = advisory_ids(notes);
    if !ids.is_empty() {
        out.push(Signal { kind: SignalKind::Security, detail: ids.join(", ") });
    } else if let Some(line) = notes.lines().find(|l| mentions_a_security_fix(l)) {
        out.push(Signal { kind: SignalKind::Security, detail: clip(line) });
    }
    let breaking = notes.lines().find(|line| {
        let lower = line.to_ascii_lowercase();
        let negated = lower.contains("no breaking") || lower.contains("non-breaking") || lower.contains("not breaking");
        !negated && (line.contains("BREAKING") || BREAKING_PHRASES.iter().any(|p| lower.contains(p)))
    });
    if let Some(line) = breaking {
        out.push(Signal { kind: SignalKind::Breaking, detail: clip(line) });
    }
    out
}

/// One entry of `artifacthub.io/changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `added`, `changed`, `deprecated`, `removed`, `fixed`, `security` (or empty for plain strings).
    pub kind: String,
    /// What changed.
    pub description: String,
}

/// Parse the `artifacthub.io/changes` annotation: a YAML list of `{kind, description}` maps or
/// of plain strings. Anything else gives no changes.
pub fn parse_changes(annotation: &str) -> Vec<Change> {
    let stream = parse_stream(annotation);
    let Some(items) = stream.documents.first().and_then(|d| d.root.as_seq()) else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| match item.as_str() {
            Some(text) => Some(Change { kind: String::new(), description: text.to_string() }),
            // `- Fix CVE-2026-1234: the webhook` is a one-entry mapping to YAML, but a line of
            // prose to the chart's author: read it back as that line, not drop it (and its
            // security signal with it).
            None if item.get("description").is_none() => {
                let [(key, value)] = item.as_map()? else { return None };
                let (key, value) = (key.as_str()?, value.as_str()?);
                Some(Change { kind: String::new(), description: format!("{key}: {value}") })
            }
            None => Some(Change {
                kind: item.str_at(&["kind"]).unwrap_or("").to_ascii_lowercase(),
                description: item
                    .str_at(&["description"])
                    .map(str::to_string)
                    .or_else(|| item.get("description").and_then(Node::as_scalar).map(|s| s.value.clone()))?,
            }),
        })
        .collect()
}

/// Release notes as Markdown list items, from changes.
pub fn changes_as_notes(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| {
            if c.kind.is_empty() { format!("- {}", c.description) } else { format!("- [{}] {}", c.kind, c.description) }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Does this line talk about fixing a security problem? A security signal lets an update skip
/// schedules and pauses, so wording about security *features* must not count: Pod Security
/// Admission, `securityContext`, a `SECURITY.md`, a security-policy template.
fn mentions_a_security_fix(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    const FEATURES: [&str; 8] = [
        "security context",
        "securitycontext",
        "security-context",
        "pod security",
        "podsecurity",
        "security.md",
        "security policy",
        "securitypolicy",
    ];
    if FEATURES.iter().any(|f| l.contains(f)) {
        return false;
    }
    const FIXES: [&str; 7] = [
        "vulnerabilit",
        "security fix",
        "security issue",
        "security update",
        "security patch",
        "security release",
        "security advisory",
    ];
    FIXES.iter().any(|f| l.contains(f))
        || l.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "security") && l.contains("fix")
}

/// Signals from structured changes.
pub fn from_changes(changes: &[Change]) -> Vec<Signal> {
    let mut out = Vec::new();
    for c in changes {
        let kind = match c.kind.as_str() {
            "security" => Some(SignalKind::Security),
            "removed" => Some(SignalKind::Breaking),
            "deprecated" => Some(SignalKind::Deprecated),
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(Signal { kind, detail: clip(&c.description) });
        } else {
            out.extend(from_notes(&c.description));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.kind == b.kind);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_advisories_and_security_wording() {
        let s = from_notes("## Fixes\n- bump x for CVE-2024-24790 and GHSA-xr7r-f8xq-vfvv\n");
        assert_eq!(
            s,
            vec![Signal { kind: SignalKind::Security, detail: "CVE-2024-24790, GHSA-xr7r-f8xq-vfvv".into() }]
        );
        assert_eq!(from_notes("Fixed a security issue in the webhook")[0].kind, SignalKind::Security);
        assert!(from_notes("Allow setting podSecurityContext... no: security context docs").is_empty());
        for feature in [
            "Add PodSecurityPolicy template",
            "Support Pod Security Admission labels",
            "Update SECURITY.md",
            "New security-context defaults",
            "Document the security policy",
        ] {
            assert!(from_notes(feature).is_empty(), "{feature}");
        }
        assert_eq!(from_notes("Security: fix token leak in logs")[0].kind, SignalKind::Security);
        assert_eq!(from_notes("Patched a vulnerability in the parser")[0].kind, SignalKind::Security);
    }

    #[test]
    fn finds_breaking_changes_but_not_their_negation() {
        let s = from_notes("### ⚠ BREAKING CHANGES\n* drop v1beta1");
        assert_eq!(s[0].kind, SignalKind::Breaking);
        assert!(from_notes("No breaking changes in this release").is_empty());
        assert_eq!(from_notes("- [**breaking**] Change `Rate::reset` to `u64`").len(), 1);
        assert_eq!(from_notes("- [breaking] drop the v1 API").len(), 1);
        assert_eq!(from_notes("**Action required**: run flux migrate")[0].kind, SignalKind::Breaking);
    }

    #[test]
    fn reads_artifacthub_changes_in_both_shapes() {
        let structured = "- kind: security\n  description: Fix CVE-2023-1234 in the proxy\n- kind: removed\n  description: Dropped the legacy values\n- kind: added\n  description: New option\n";
        let changes = parse_changes(structured);
        assert_eq!(changes.len(), 3);
        let kinds: Vec<SignalKind> = from_changes(&changes).into_iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![SignalKind::Security, SignalKind::Breaking]);
        assert_eq!(changes_as_notes(&changes[2..]), "- [added] New option");
        let plain = parse_changes("- Upgrade to 1.2\n- Fix bug\n");
        assert_eq!(plain.len(), 2);
        assert!(parse_changes("not: a list").is_empty());
    }

    #[test]
    fn a_plain_change_with_a_colon_is_kept_as_the_line_it_was() {
        let changes =
            parse_changes("- Fix CVE-2026-41234: admission webhook bypass\n- kind: fixed\n  description: other\n");
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].description, "Fix CVE-2026-41234: admission webhook bypass");
        assert_eq!(changes[1].kind, "fixed");
    }
}
