//! Versions as upkeep compares them: lenient semver, plus k3s's `+k3sN` builds.
//!
//! Chart and tag versions in the wild are mostly semver with a `v` prefix sometimes and two
//! parts sometimes (`v1.2`, `1.2`). k3s releases look like `v1.30.4+k3s1`; semver ignores build
//! metadata in precedence, but k3s ships fixes as `+k3s2` of the same Kubernetes version, so
//! the build number is ordered here too (Renovate's `k3sKubernetesVersioning` preset does the
//! same with a `compatibility` group). Ordering is total: equal precedence falls back to the
//! k3s build and then to the text, so sorting is deterministic.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

use crate::model::Release;

/// One prerelease identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Numeric(u64),
    Alpha(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        // Semver 2.0 §11.4: numeric identifiers sort below alphanumeric ones.
        match (self, other) {
            (Ident::Numeric(a), Ident::Numeric(b)) => a.cmp(b),
            (Ident::Numeric(_), Ident::Alpha(_)) => Ordering::Less,
            (Ident::Alpha(_), Ident::Numeric(_)) => Ordering::Greater,
            (Ident::Alpha(a), Ident::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor (0 when only one part was given, which is not accepted by [`Version::parse`]).
    pub minor: u64,
    /// Patch (0 for two-part versions).
    pub patch: u64,
    pre: Vec<Ident>,
    /// The build number of a `+k3sN` build, if any.
    pub k3s_build: Option<u64>,
    raw: String,
}

impl Version {
    /// Parse leniently: an optional `v`, two or three numeric parts, an optional `-prerelease`
    /// and `+build`. Anything else (`latest`, `sha-abc`, dates with four parts) is `None`.
    ///
    /// OCI tags cannot hold `+`, so Helm writes a chart version's `+build` as `_build` in its
    /// tag (`1.0.0_build.1`); that spelling is read here, the one parse every stage uses, so
    /// `scan` and `plan` cannot disagree about it (issue 9).
    pub fn parse(text: &str) -> Option<Version> {
        let raw = text.trim();
        let s = raw.strip_prefix(['v', 'V']).unwrap_or(raw);
        let (rest, build) = match s.split_once('+').or_else(|| s.split_once('_')) {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (rest, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let mut nums = [0u64; 3];
        for (slot, part) in nums.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 18 {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some("") => return None,
            Some(p) => p
                .split('.')
                .map(|id| {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                        None
                    } else if id.bytes().all(|b| b.is_ascii_digit()) && id.len() <= 18 {
                        id.parse().ok().map(Ident::Numeric)
                    } else {
                        Some(Ident::Alpha(id.to_string()))
                    }
                })
                .collect::<Option<Vec<_>>>()?,
        };
        if build
            .is_some_and(|b| b.is_empty() || !b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-'))
        {
            return None;
        }
        let k3s_build = build.and_then(|b| b.strip_prefix("k3s")).and_then(|n| n.parse().ok());
        Some(Version { major: nums[0], minor: nums[1], patch: nums[2], pre, k3s_build, raw: raw.to_string() })
    }

    /// Has a prerelease part (`-rc.1`).
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The same version, however it is written (`v1.5.4` and `1.5.4`; a k3s build counts):
    /// what "this version was refused" must compare, not the text.
    pub fn same_as(&self, other: &Version) -> bool {
        self.precedence(other) == Ordering::Equal && self.k3s_build == other.k3s_build
    }

    /// Semver precedence (build metadata ignored).
    fn precedence(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.precedence(other).then_with(|| self.k3s_build.cmp(&other.k3s_build)).then_with(|| self.raw.cmp(&other.raw))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The releases whose versions parse, each with its version, newest first: the one parse and
/// sort the gate, `scan`'s list of updates and PR bodies share.
pub fn newest_first(releases: &[Release]) -> Vec<(Version, &Release)> {
    let mut parsed: Vec<(Version, &Release)> =
        releases.iter().filter_map(|r| Version::parse(&r.version).map(|v| (v, r))).collect();
    parsed.sort_by(|a, b| b.0.cmp(&a.0));
    parsed
}

/// Sort releases newest first in place, those that are not versions last (by text): the order
/// a datasource hands releases on in.
pub fn sort_newest_first(releases: &mut [Release]) {
    releases.sort_by_cached_key(|r| {
        let version = Version::parse(&r.version);
        (version.is_none(), std::cmp::Reverse(version), std::cmp::Reverse(r.version.clone()))
    });
}

/// How big a step an update is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UpdateType {
    /// Same version, newer `+k3sN` build: k3s's own fixes to one Kubernetes release.
    Build,
    /// Only the prerelease part moves (`1.2.0-rc.1` → `1.2.0-rc.2` or `1.2.0`).
    Prerelease,
    /// `x.y.z` → `x.y.(z+n)`.
    Patch,
    /// `x.y` → `x.(y+n)`.
    Minor,
    /// `x` → `x+n`.
    Major,
}

impl UpdateType {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateType::Build => "build",
            UpdateType::Prerelease => "prerelease",
            UpdateType::Patch => "patch",
            UpdateType::Minor => "minor",
            UpdateType::Major => "major",
        }
    }
}

/// Classify the step from `from` to a newer `to`; `None` when `to` is not newer.
pub fn classify(from: &Version, to: &Version) -> Option<UpdateType> {
    if to <= from || to.precedence(from) == Ordering::Less {
        return None;
    }
    Some(if to.major != from.major {
        UpdateType::Major
    } else if to.minor != from.minor {
        UpdateType::Minor
    } else if to.patch != from.patch {
        UpdateType::Patch
    } else if to.pre != from.pre {
        UpdateType::Prerelease
    } else if to.k3s_build > from.k3s_build {
        UpdateType::Build
    } else {
        return None;
    })
}

/// One comparison of a [`Constraint`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A version range in the syntax Helm charts and Flux use (Masterminds semver): comparisons
/// (`>=1.2.0 <2`), `,` or spaces for AND, `||` for OR, hyphen ranges (`1.2 - 1.4`), wildcards
/// (`1.2.x`, `1.*`, `*`), caret (`^1.2`) and tilde (`~1.2.3`). Partial versions fill with zeros.
/// Prereleases are compared by plain precedence (`-0` lower bounds work as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    any_of: Vec<Vec<(Op, Version)>>,
    text: String,
}

fn bound(major: u64, minor: u64, patch: u64) -> Version {
    Version { major, minor, patch, pre: Vec::new(), k3s_build: None, raw: format!("{major}.{minor}.{patch}") }
}

/// A partial version: the numbers given and whether it ended in a wildcard.
fn partial(text: &str) -> Result<(Vec<u64>, Option<Version>), String> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    if t.is_empty() || matches!(t, "*" | "x" | "X") {
        return Ok((Vec::new(), None));
    }
    if let Some(full) =
        Version::parse(t).filter(|_| t.split(['-', '+']).next().is_some_and(|c| c.split('.').count() == 3))
    {
        let nums = vec![full.major, full.minor, full.patch];
        return Ok((nums, Some(full)));
    }
    let core = t.split(['-', '+']).next().unwrap_or(t);
    let mut nums = Vec::new();
    for part in core.split('.') {
        if matches!(part, "*" | "x" | "X") {
            break;
        }
        nums.push(part.parse::<u64>().map_err(|_| format!("`{text}` is not a version"))?);
        if nums.len() == 3 {
            break;
        }
    }
    Ok((nums, None))
}

fn next_of(nums: &[u64]) -> Option<Version> {
    match nums {
        [] => None,
        [m] => Some(bound(m + 1, 0, 0)),
        [m, n] | [m, n, _] => Some(bound(*m, n + 1, 0)),
        _ => None,
    }
}

fn floor(nums: &[u64]) -> Version {
    bound(nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0), nums.get(2).copied().unwrap_or(0))
}

fn comparators(term: &str) -> Result<Vec<(Op, Version)>, String> {
    let term = term.trim();
    if let Some((low, high)) = term.split_once(" - ") {
        let (lo, lo_full) = partial(low)?;
        let (hi, hi_full) = partial(high)?;
        let mut out = vec![(Op::Ge, lo_full.unwrap_or_else(|| floor(&lo)))];
        match hi_full {
            Some(v) => out.push((Op::Le, v)),
            None => out.extend(next_of(&hi).map(|v| (Op::Lt, v))),
        }
        return Ok(out);
    }
    let (op, rest) = [">=", "<=", "!=", "~>", ">", "<", "=", "^", "~"]
        .iter()
        .find_map(|op| term.strip_prefix(op).map(|r| (*op, r.trim())))
        .unwrap_or(("", term));
    let (nums, full) = partial(rest)?;
    let exact = || full.clone().unwrap_or_else(|| floor(&nums));
    Ok(match op {
        ">=" => vec![(Op::Ge, exact())],
        ">" => match (&full, next_of(&nums)) {
            (None, Some(next)) if nums.len() < 3 => vec![(Op::Ge, next)],
            _ => vec![(Op::Gt, exact())],
        },
        "<=" => match (&full, next_of(&nums)) {
            (None, Some(next)) if nums.len() < 3 => vec![(Op::Lt, next)],
            _ => vec![(Op::Le, exact())],
        },
        "<" => vec![(Op::Lt, exact())],
        "!=" => vec![(Op::Ne, exact())],
        "^" => {
            let lo = exact();
            let hi = match nums.as_slice() {
                [0, 0, p] => bound(0, 0, p + 1),
                [0, n, ..] if nums.len() >= 2 => bound(0, n + 1, 0),
                [m, ..] => bound(m + 1, 0, 0),
                [] => return Ok(Vec::new()),
            };
            vec![(Op::Ge, lo), (Op::Lt, hi)]
        }
        "~" | "~>" => {
            let hi = match nums.as_slice() {
                [m] => bound(m + 1, 0, 0),
                [m, n, ..] => bound(*m, n + 1, 0),
                [] => return Ok(Vec::new()),
            };
            vec![(Op::Ge, exact()), (Op::Lt, hi)]
        }
        // No operator, or `=`: a full version is exact, a partial one is a wildcard range.
        _ => match (&full, nums.len()) {
            (Some(v), _) => vec![(Op::Eq, v.clone())],
            (None, 0) => Vec::new(),
            (None, _) => {
                let mut out = vec![(Op::Ge, floor(&nums))];
                out.extend(next_of(&nums).map(|v| (Op::Lt, v)));
                out
            }
        },
    })
}

impl Constraint {
    /// Parse a constraint; the error names the part that is not understood.
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let mut any_of = Vec::new();
        for alternative in text.split("||") {
            let alternative = alternative.trim();
            if alternative.is_empty() {
                return Err(format!("`{text}` has an empty alternative"));
            }
            // Hyphen ranges contain spaces; split on commas and on spaces outside them.
            let mut all = Vec::new();
            let normalized = alternative.replace(" - ", "\u{0}");
            for term in normalized.split([',', ' ']).filter(|t| !t.trim().is_empty()) {
                let term = term.replace('\u{0}', " - ");
                // `>= 1.2` written with a space: the operator and version arrive apart.
                all.push(term);
            }
            let mut merged: Vec<String> = Vec::new();
            for term in all {
                match merged.last_mut() {
                    Some(last) if matches!(last.as_str(), ">=" | "<=" | ">" | "<" | "=" | "!=" | "^" | "~" | "~>") => {
                        last.push_str(&term)
                    }
                    _ => merged.push(term),
                }
            }
            let mut comps = Vec::new();
            for term in merged {
                comps.extend(comparators(&term)?);
            }
            any_of.push(comps);
        }
        Ok(Constraint { any_of, text: text.trim().to_string() })
    }

    /// Does `version` satisfy the constraint?
    pub fn matches(&self, version: &Version) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|(op, bound)| {
                let ord = version.precedence(bound);
                match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                }
            })
        })
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn parses_leniently_and_rejects_non_versions() {
        assert_eq!((v("v1.30.4+k3s1").minor, v("v1.30.4+k3s1").k3s_build), (30, Some(1)));
        assert_eq!(v("1.2").patch, 0);
        assert!(v("2.0.0-rc.1").is_prerelease());
        for bad in ["latest", "sha-1234abc", "1", "1.2.3.4", "v1..2", "1.2.3-", "1.2.3+", "main", "", "1.2.x"] {
            assert!(Version::parse(bad).is_none(), "{bad} should not parse");
        }
    }

    #[test]
    fn oci_tags_spell_build_metadata_with_an_underscore() {
        let tag = v("1.0.0_build.1");
        assert!(tag.same_as(&v("1.0.0+build.1")) && tag.as_str() == "1.0.0_build.1");
        assert_eq!(classify(&tag, &v("1.1.0_build.1")), Some(UpdateType::Minor));
        assert!(v("v1.5.4").same_as(&v("1.5.4")) && !v("v1.30.4+k3s1").same_as(&v("v1.30.4+k3s2")));
    }

    #[test]
    fn orders_by_semver_then_k3s_build() {
        let mut list: Vec<Version> =
            ["v1.30.4+k3s2", "v1.30.4+k3s1", "v1.31.0-rc1+k3s1", "v1.30.10+k3s1", "v1.31.0+k3s1"].map(v).to_vec();
        list.sort();
        let sorted: Vec<&str> = list.iter().map(Version::as_str).collect();
        assert_eq!(sorted, ["v1.30.4+k3s1", "v1.30.4+k3s2", "v1.30.10+k3s1", "v1.31.0-rc1+k3s1", "v1.31.0+k3s1"]);
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.1") < v("1.0.0-alpha.beta"));
        assert!(v("1.0.0-beta.2") < v("1.0.0-beta.11"));
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
    }

    #[test]
    fn constraints_in_helm_syntax() {
        let m = |c: &str, version: &str| Constraint::parse(c).unwrap_or_else(|e| panic!("{e}")).matches(&v(version));
        assert!(m(">=1.25.0-0", "1.29.4"));
        assert!(!m(">=1.25.0-0", "1.24.9"));
        assert!(m(">= 1.21, < 1.30", "1.29.9") && !m(">=1.21 <1.30", "1.30.0"));
        assert!(m("1.2.x", "1.2.9") && !m("1.2.x", "1.3.0"));
        assert!(m("^1.2", "1.9.0") && !m("^1.2", "2.0.0") && !m("^0.2.3", "0.3.0"));
        assert!(m("~1.2.3", "1.2.9") && !m("~1.2.3", "1.3.0"));
        assert!(m("1.0 - 1.4", "1.4.9") && !m("1.0 - 1.4", "1.5.0"));
        assert!(m("2.5.1 || >=3", "3.1.0") && m("2.5.1 || >=3", "2.5.1") && !m("2.5.1 || >=3", "2.5.2"));
        assert!(m("*", "9.9.9") && m("!=1.0.0", "1.0.1") && !m("!=1.0.0", "1.0.0"));
        assert!(Constraint::parse("banana").is_err());
    }

    #[test]
    fn classifies_steps() {
        let c = |a: &str, b: &str| classify(&v(a), &v(b));
        assert_eq!(c("1.4.1", "1.4.4"), Some(UpdateType::Patch));
        assert_eq!(c("1.4.1", "1.5.0"), Some(UpdateType::Minor));
        assert_eq!(c("1.4.1", "2.0.0"), Some(UpdateType::Major));
        assert_eq!(c("v1.30.4+k3s1", "v1.30.4+k3s2"), Some(UpdateType::Build));
        assert_eq!(c("2.0.0-rc.1", "2.0.0"), Some(UpdateType::Prerelease));
        assert_eq!(c("1.4.1", "1.4.1"), None);
        assert_eq!(c("1.5.0", "1.4.9"), None);
        assert_eq!(c("v1.2", "1.2.0"), None, "the same version written differently is not an update");
    }
}
