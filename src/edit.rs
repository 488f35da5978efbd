//! Edits by span, proved.
//!
//! An update replaces exactly the bytes of each version scalar and nothing else: quoting
//! style, comments, line endings and a BOM stay as they were (the complaint against Flux's own
//! image automation, fluxcd/image-automation-controller#616). Then the edited text is parsed and
//! extracted again, and the edit is accepted only if (1) every intended dependency now carries
//! its new version at the new span, (2) every other dependency of the file is unchanged, and
//! (3) putting the old bytes back into the new spans gives the original text. Otherwise the
//! whole file's edit is refused and nothing is written (Renovate re-extracts after each write
//! for the same reason: `update/branch/auto-replace.ts`).

use std::ops::Range;

use crate::extract::{SourceFile, extract_files};
use crate::model::Location;

/// One version to replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The dependency it updates (for messages).
    pub dependency: String,
    /// Where the version is.
    pub location: Location,
    /// The version there now.
    pub from: String,
    /// The version to write.
    pub to: String,
    /// This is the digest pinned next to a tag (it moves with the tag), not a version itself.
    pub pin: bool,
}

/// Why an edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: cannot update {dependency}: {reason}")]
pub struct EditError {
    /// The file.
    pub file: String,
    /// The dependency.
    pub dependency: String,
    /// What went wrong.
    pub reason: String,
}

/// `target` written the way the manifest writes `current`: with or without a leading `v`.
/// Releases are named after their tags (`v2.4.0`) while a FluxInstance may say `2.3.0`; the
/// edit keeps the manifest's own spelling. (Only for such tag-named releases: a chart version
/// is written exactly as the index has it, which may drop a `v` the old one had.)
pub fn in_style_of(current: &str, target: &str) -> String {
    let digit_after = |s: &str, n: usize| s[n..].starts_with(|c: char| c.is_ascii_digit());
    let current_v = current.starts_with('v') && digit_after(current, 1);
    let target_v = target.starts_with('v') && digit_after(target, 1);
    match (current_v, target_v) {
        (false, true) if digit_after(current, 0) => target[1..].to_string(),
        (true, false) if digit_after(target, 0) => format!("v{target}"),
        _ => target.to_string(),
    }
}

/// Would YAML read this plain scalar as something other than a string (`1.10` is a float,
/// `true` a bool)? Such a value must be quoted to stay a version.
pub fn needs_quotes(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty()
        || matches!(
            v.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "~" | "yes" | "no" | "on" | "off" | ".inf" | "-.inf" | ".nan"
        )
    {
        return true;
    }
    if v.starts_with("0x") || v.starts_with("0o") {
        return true;
    }
    // A YAML 1.2 core-schema number: [-+] digits [. digits] [e[-+]digits].
    let body = v.trim_start_matches(['-', '+']);
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.trim_start_matches(['-', '+']))),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => (digits(a) || a.is_empty()) && (digits(b) || b.is_empty()) && !(a.is_empty() && b.is_empty()),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
        || value.contains(": ")
        || value.contains(" #")
        || value.starts_with(['&', '*', '!', '%', '@', '`', '{', '[', '\'', '"'])
}

/// The replacement bytes for a span written in `style_quote` (`None` for plain scalars).
fn replacement(edit: &Edit, quote: Option<char>) -> Result<String, String> {
    let to = &edit.to;
    if to.chars().any(|c| c.is_control() || c == '\n') {
        return Err(format!("`{}` is not a plain version string", to.escape_debug()));
    }
    match quote {
        Some('\'') if to.contains('\'') => Err(format!("`{to}` contains a quote")),
        Some('"') if to.contains(['"', '\\']) => Err(format!("`{to}` contains a quote or backslash")),
        Some(_) => Ok(to.clone()),
        None if needs_quotes(to) => Ok(format!("\"{to}\"")),
        None => Ok(to.clone()),
    }
}

/// The edited text of one file, proved, or why not.
pub fn apply(file: &str, text: &str, edits: &[Edit]) -> Result<String, EditError> {
    let refuse = |dependency: &str, reason: String| EditError {
        file: file.to_string(),
        dependency: dependency.to_string(),
        reason,
    };
    let mut edits: Vec<&Edit> = edits.iter().collect();
    edits.sort_by_key(|e| e.location.span.start);
    edits.dedup_by(|a, b| a.location.span == b.location.span && a.to == b.to);
    for pair in edits.windows(2) {
        if pair[0].location.span.end > pair[1].location.span.start {
            return Err(refuse(&pair[1].dependency, "two updates overlap".into()));
        }
    }
    // Check every span still holds the version it held at scan time.
    for e in &edits {
        if !e.location.verbatim {
            return Err(refuse(
                &e.dependency,
                "the version is written with escapes or across lines; edit it by hand".into(),
            ));
        }
        if text.get(e.location.span.clone()) != Some(e.from.as_str()) {
            return Err(refuse(
                &e.dependency,
                format!("the file changed since the scan: `{}` is no longer at line {}", e.from, e.location.line),
            ));
        }
    }
    // Splice back to front so earlier spans stay valid; remember the new spans.
    let mut out = text.to_string();
    let mut new_spans: Vec<(Range<usize>, &Edit, String)> = Vec::new();
    for e in edits.iter().rev() {
        let span = e.location.span.clone();
        let quote = span
            .start
            .checked_sub(1)
            .and_then(|i| text.as_bytes().get(i))
            .map(|b| *b as char)
            .filter(|c| *c == '\'' || *c == '"')
            .filter(|_| text.as_bytes().get(span.end).is_some_and(|b| *b == b'\'' || *b == b'"'));
        let bytes = if e.location.block {
            // The one line of a block scalar: always a string, so never quoted.
            replacement(e, Some('|')).map_err(|r| refuse(&e.dependency, r))?
        } else if e.location.in_comment {
            if e.to.contains(char::is_whitespace) || e.to.is_empty() {
                return Err(refuse(&e.dependency, format!("`{}` cannot stand in a comment header", e.to)));
            }
            e.to.clone()
        } else {
            replacement(e, quote).map_err(|r| refuse(&e.dependency, r))?
        };
        out.replace_range(span.clone(), &bytes);
        new_spans.push((span, e, bytes));
    }
    // New spans in the edited text, front to back.
    new_spans.reverse();
    let mut shift: isize = 0;
    let mut placed: Vec<(Range<usize>, &Edit, String)> = Vec::new();
    for (span, e, bytes) in new_spans {
        let start = (span.start as isize + shift) as usize;
        placed.push((start..start + bytes.len(), e, bytes.clone()));
        shift += bytes.len() as isize - span.len() as isize;
    }
    prove(file, text, &out, &placed).map_err(|(dep, reason)| refuse(&dep, reason))?;
    Ok(out)
}

/// The proof: re-extract both texts and compare.
fn prove(
    file: &str,
    before: &str,
    after: &str,
    placed: &[(Range<usize>, &Edit, String)],
) -> Result<(), (String, String)> {
    // (3) Only the spans changed.
    let mut restored = after.to_string();
    for (span, e, _) in placed.iter().rev() {
        restored.replace_range(span.clone(), &e.from);
    }
    if restored != before {
        return Err((
            placed.first().map(|p| p.1.dependency.clone()).unwrap_or_default(),
            "bytes outside the version spans would change".into(),
        ));
    }
    let extract = |text: &str| {
        let files = vec![SourceFile::new(file, text)];
        if let Some(err) = &files[0].stream.error {
            return Err(format!("the edited file no longer parses (line {}: {})", err.line, err.message));
        }
        Ok(extract_files(&files, &mut Vec::new()).dependencies)
    };
    let old = extract(before).map_err(|r| (String::new(), r))?;
    let new = extract(after).map_err(|r| (placed.first().map(|p| p.1.dependency.clone()).unwrap_or_default(), r))?;
    // (1) Each intended dependency carries its new version where the new bytes are. A quoted
    // replacement puts the value one byte inside the bytes written.
    for (span, e, bytes) in placed {
        let value_start = if bytes.starts_with('"') && !e.to.starts_with('"') { span.start + 1 } else { span.start };
        let found = new.iter().any(|d| {
            if e.pin {
                return d
                    .location
                    .as_ref()
                    .and_then(|l| l.digest.as_ref())
                    .is_some_and(|p| p.span.start == value_start && p.value == e.to);
            }
            d.location.as_ref().is_some_and(|l| l.span.start == value_start && l.file == file)
                && d.current.as_deref() == Some(e.to.as_str())
        });
        if !found {
            return Err((
                e.dependency.clone(),
                format!("after the edit, no dependency reads `{}` at line {}", e.to, e.location.line),
            ));
        }
    }
    // (2) Every other version of the file is unchanged.
    let edited: Vec<usize> = placed.iter().map(|p| p.1.location.span.start).collect();
    let mut untouched_old: Vec<(String, Option<String>)> = old
        .iter()
        .filter(|d| !d.location.as_ref().is_some_and(|l| edited.contains(&l.span.start)))
        .map(|d| (d.id.clone(), d.current.clone()))
        .collect();
    let new_starts: Vec<usize> = placed.iter().map(|p| p.0.start).collect();
    let mut untouched_new: Vec<(String, Option<String>)> = new
        .iter()
        .filter(|d| {
            !d.location.as_ref().is_some_and(|l| {
                new_starts.contains(&l.span.start) || new_starts.contains(&(l.span.start.saturating_sub(1)))
            })
        })
        .map(|d| (d.id.clone(), d.current.clone()))
        .collect();
    untouched_old.sort();
    untouched_new.sort();
    if untouched_old != untouched_new {
        return Err((
            placed.first().map(|p| p.1.dependency.clone()).unwrap_or_default(),
            "another version in the file would change".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_manifests_v_prefix_or_its_absence() {
        assert_eq!(in_style_of("2.3.0", "v2.4.0"), "2.4.0");
        assert_eq!(in_style_of("v1.2.0", "1.3.0"), "v1.3.0");
        assert_eq!(in_style_of("v1.29.4+k3s1", "v1.30.6+k3s1"), "v1.30.6+k3s1");
        assert_eq!(in_style_of("1.4.1", "1.5.4"), "1.5.4");
        assert_eq!(in_style_of("latest", "v2.4.0"), "v2.4.0");
    }

    fn hr(version: &str) -> String {
        format!(
            "# keep me\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: app\n  namespace: x\nspec:\n  chart:\n    spec:\n      chart: app\n      version: {version} # pinned\n      sourceRef: {{kind: HelmRepository, name: repo}}\n"
        )
    }

    fn edit_of(text: &str, to: &str) -> Edit {
        let files = vec![SourceFile::new("hr.yaml", text)];
        let dep = extract_files(&files, &mut Vec::new()).dependencies.remove(0);
        Edit {
            dependency: dep.id.clone(),
            location: dep.location.clone().unwrap_or_else(|| panic!("location")),
            from: dep.current.unwrap_or_default(),
            to: to.into(),
            pin: false,
        }
    }

    #[test]
    fn keeps_quotes_comments_and_everything_else() {
        for (written, to, expected) in [
            ("1.2.3", "1.3.0", "1.3.0"),
            ("'1.2.3'", "1.3.0", "'1.3.0'"),
            ("\"1.2.3\"", "1.3.0", "\"1.3.0\""),
            ("1.9.0", "1.10", "\"1.10\""),
            ("v1.2.3", "v1.2.4", "v1.2.4"),
        ] {
            let text = hr(written);
            let out = apply("hr.yaml", &text, &[edit_of(&text, to)]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(out, hr(expected), "{written} -> {to}");
        }
    }

    #[test]
    fn a_one_line_block_scalar_is_edited_in_place_and_never_quoted() {
        let block = |v: &str| hr("|").replace("version: | # pinned\n", &format!("version: | # pinned\n        {v}\n"));
        let text = block("1.9.0");
        let out = apply("hr.yaml", &text, &[edit_of(&text, "1.10")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, block("1.10"), "a block scalar is a string already: no quotes");
    }

    #[test]
    fn crlf_and_bom_survive() {
        let text = format!("\u{feff}{}", hr("1.2.3").replace('\n', "\r\n"));
        let out = apply("hr.yaml", &text, &[edit_of(&text, "2.0.0")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, format!("\u{feff}{}", hr("2.0.0").replace('\n', "\r\n")));
    }

    #[test]
    fn refuses_stale_spans_and_unsafe_values() {
        let text = hr("1.2.3");
        let edit = edit_of(&text, "1.3.0");
        let changed = hr("1.2.4");
        assert!(
            apply("hr.yaml", &changed, std::slice::from_ref(&edit))
                .unwrap_err()
                .reason
                .contains("changed since the scan")
        );
        let bad = Edit { to: "1.3.0\nkind: Secret".into(), ..edit.clone() };
        assert!(apply("hr.yaml", &text, &[bad]).is_err());
        let quoted = hr("'1.2.3'");
        let quote = Edit { to: "1.3'0".into(), ..edit_of(&quoted, "x") };
        assert!(apply("hr.yaml", &quoted, &[quote]).unwrap_err().reason.contains("quote"));
    }

    #[test]
    fn numbers_and_words_yaml_would_retype_are_quoted() {
        for v in ["1.10", "1", "1e3", "true", "null", "0x1f", ".5"] {
            assert!(needs_quotes(v), "{v}");
        }
        for v in ["1.2.3", "v1.10", "1.2.3+k3s1", "2024.1.0", "latest"] {
            assert!(!needs_quotes(v), "{v}");
        }
    }
}
