//! Platform upgrade paths: rules of the platform itself, each with its source.

use std::collections::{BTreeMap, BTreeSet};

use super::versioning::Version;

/// One minor at a time, for Longhorn and k3s.
///
/// - Longhorn enforces its upgrade path since v1.5.0: `x.y.* → x.(y+1).*` and patches are
///   supported, `x.(y-1).* → x.(y+1).*` is not, and a major step only from the last minor before
///   it; downgrades are refused (longhorn/website `content/docs/1.9.0/deploy/upgrade/_index.md`,
///   LEP "Upgrade Path Enforcement").
/// - k3s: "Ensure that your plan does not skip intermediate minor versions when upgrading. The
///   system-upgrade-controller itself will not protect against unsupported changes"
///   (docs.k3s.io/upgrades/manual); Kubernetes' skew policy allows one minor between apiservers.
///
/// Returns the candidates allowed now, and how many steps it takes to reach the newest
/// candidate (1 when the newest is allowed now).
pub fn one_minor_at_a_time(current: &Version, candidates: &[Version], stable: &[Version]) -> (Vec<Version>, usize) {
    let last_minor_of_major = !stable.iter().any(|v| v.major == current.major && v.minor > current.minor);
    let allowed: Vec<Version> = candidates
        .iter()
        .filter(|v| {
            (v.major == current.major && v.minor <= current.minor + 1)
                || (last_minor_of_major && v.major == current.major + 1 && v.minor == 0)
        })
        .cloned()
        .collect();
    let Some(newest) = candidates.iter().max() else { return (allowed, 0) };
    // Stations: every (major, minor) with a stable release after the current minor, up to the newest.
    let stations: BTreeSet<(u64, u64)> = stable
        .iter()
        .chain(std::iter::once(newest))
        .filter(|v| {
            (v.major, v.minor) > (current.major, current.minor) && (v.major, v.minor) <= (newest.major, newest.minor)
        })
        .map(|v| (v.major, v.minor))
        .collect();
    (allowed, stations.len().max(1))
}

/// An API version a Flux release removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRemoval {
    /// The Flux minor that removes it.
    pub flux: (u64, u64),
    /// The apiVersion removed.
    pub api_version: &'static str,
    /// Where this is written down.
    pub source: &'static str,
}

/// What Flux releases remove. New removals are one line here; keep it ordered by Flux minor,
/// so the first removal on the way is the one reported.
pub const FLUX_API_REMOVALS: &[ApiRemoval] = &[
    ApiRemoval {
        flux: (2, 7),
        api_version: "helm.toolkit.fluxcd.io/v2beta1",
        source: "helm-controller v1.4.0 CHANGELOG, shipped in Flux v2.7.0",
    },
    ApiRemoval {
        flux: (2, 7),
        api_version: "kustomize.toolkit.fluxcd.io/v1beta1",
        source: "Flux v2.7.0 upgrade procedure; kustomize-controller#1494 (flux2#5474)",
    },
    ApiRemoval {
        flux: (2, 7),
        api_version: "source.toolkit.fluxcd.io/v1beta1",
        source: "Flux v2.7.0 upgrade procedure (flux2#5474)",
    },
    ApiRemoval {
        flux: (2, 7),
        api_version: "image.toolkit.fluxcd.io/v1beta1",
        source: "Flux v2.7.0 upgrade procedure (flux2#5474)",
    },
    ApiRemoval {
        flux: (2, 7),
        api_version: "notification.toolkit.fluxcd.io/v1beta1",
        source: "Flux v2.7.0 upgrade procedure; Flux roadmap (website#2316)",
    },
    ApiRemoval {
        flux: (2, 8),
        api_version: "helm.toolkit.fluxcd.io/v2beta2",
        source: "helm-controller v1.5.0 CHANGELOG, shipped in Flux v2.8.0",
    },
    ApiRemoval {
        flux: (2, 8),
        api_version: "kustomize.toolkit.fluxcd.io/v1beta2",
        source: "kustomize-controller#1584 (flux2#5711), Flux v2.8.0",
    },
    ApiRemoval {
        flux: (2, 8),
        api_version: "source.toolkit.fluxcd.io/v1beta2",
        source: "source-controller#1983 (flux2#5711), Flux v2.8.0",
    },
];

/// The first removal between `current` (exclusive) and `target` (inclusive) of an API the
/// repository still uses, with the files that use it.
pub fn flux_removal<'a>(
    current: &Version,
    target: &Version,
    used: &'a BTreeMap<String, BTreeSet<String>>,
) -> Option<(&'static ApiRemoval, &'a BTreeSet<String>)> {
    FLUX_API_REMOVALS.iter().find_map(|r| {
        let crosses = (current.major, current.minor) < r.flux && (target.major, target.minor) >= r.flux;
        used.get(r.api_version).filter(|files| crosses && !files.is_empty()).map(|files| (r, files))
    })
}

/// The Kubernetes version of a k3s version (`v1.29.4+k3s1` → `1.29.4`).
pub fn kubernetes_of_k3s(k3s: &Version) -> Version {
    Version::parse(&format!("{}.{}.{}", k3s.major, k3s.minor, k3s.patch)).unwrap_or_else(|| k3s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_are_ordered_so_the_first_on_the_way_is_reported() {
        assert!(FLUX_API_REMOVALS.windows(2).all(|w| w[0].flux <= w[1].flux));
    }

    fn vs(list: &[&str]) -> Vec<Version> {
        list.iter().map(|s| Version::parse(s).unwrap_or_else(|| panic!("{s}"))).collect()
    }

    #[test]
    fn longhorn_moves_one_minor_and_counts_the_chain() {
        let stable = vs(&["1.4.1", "1.4.4", "1.5.0", "1.5.4", "1.6.0", "1.6.3", "1.7.2"]);
        let current = &vs(&["1.4.1"])[0];
        let candidates: Vec<Version> = stable.iter().filter(|v| *v > current).cloned().collect();
        let (allowed, steps) = one_minor_at_a_time(current, &candidates, &stable);
        assert_eq!(allowed.iter().max().map(Version::as_str), Some("1.5.4"));
        assert_eq!(steps, 3, "1.5, then 1.6, then 1.7");
    }

    #[test]
    fn a_major_step_only_from_the_last_minor() {
        let stable = vs(&["1.8.0", "1.9.0", "1.9.2", "2.0.0", "2.1.0"]);
        let (allowed, _) = one_minor_at_a_time(&vs(&["1.8.0"])[0], &vs(&["1.9.0", "1.9.2", "2.0.0", "2.1.0"]), &stable);
        assert_eq!(allowed.iter().max().map(Version::as_str), Some("1.9.2"));
        let (allowed, steps) = one_minor_at_a_time(&vs(&["1.9.2"])[0], &vs(&["2.0.0", "2.1.0"]), &stable);
        assert_eq!((allowed.iter().max().map(Version::as_str), steps), (Some("2.0.0"), 2));
    }

    #[test]
    fn flux_removals_cross_only_when_used() {
        let mut used = BTreeMap::new();
        used.insert("helm.toolkit.fluxcd.io/v2beta2".to_string(), BTreeSet::from(["apps/a.yaml".to_string()]));
        let v = |s: &str| Version::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(flux_removal(&v("v2.6.4"), &v("v2.7.0"), &used), None, "v2beta1 is not used");
        let (removal, files) = flux_removal(&v("v2.6.4"), &v("v2.8.1"), &used).unwrap_or_else(|| panic!("removal"));
        assert_eq!((removal.flux, files.len()), ((2, 8), 1));
        assert_eq!(flux_removal(&v("v2.8.0"), &v("v2.9.0"), &used), None, "already past it");
    }
}
