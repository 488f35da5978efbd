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
    pub fn parse(text: &str) -> Option<Version> {
        let raw = text.trim();
        let s = raw.strip_prefix(['v', 'V']).unwrap_or(raw);
        let (rest, build) = match s.split_once('+') {
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

/// How big a step an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
