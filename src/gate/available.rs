//! What a dependency could move to: the newest stable version overall, and the newest version
//! of each step size (patch, minor, major; k3s builds and prerelease steps too) above the
//! current one, with the signals of every release it would take in.

use serde::Serialize;

use super::versioning::{UpdateType, Version, classify, newest_first};
use crate::model::{Release, Signal};

/// One possible update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Update {
    /// The target version, as upstream writes it.
    pub version: String,
    /// The step size.
    #[serde(rename = "type")]
    pub update_type: UpdateType,
    /// When the target was published, if known.
    pub published: Option<jiff::Timestamp>,
    /// Signals of every release after the current one up to and including the target.
    pub signals: Vec<Signal>,
}

/// The versions a dependency could move to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Available {
    /// The newest stable release, whether or not it is newer than the current one.
    pub latest: Option<String>,
    /// The newest release of each step size, smallest step first.
    pub updates: Vec<Update>,
}

/// Work out what `current` could move to among `releases`.
///
/// Prereleases are candidates only when the current version is itself a prerelease; a
/// current version that is not a version (`latest`, a digest) gets no updates.
pub fn available(current: &str, releases: &[Release]) -> Available {
    let parsed = newest_first(releases);
    let latest = parsed.iter().find(|(v, r)| !v.is_prerelease() && !r.prerelease).map(|(_, r)| r.version.clone());
    let Some(from) = Version::parse(current) else { return Available { latest, updates: Vec::new() } };
    let allow_pre = from.is_prerelease();
    let mut updates: Vec<Update> = Vec::new();
    for (v, release) in &parsed {
        if (v.is_prerelease() || release.prerelease) && !allow_pre {
            continue;
        }
        let Some(kind) = classify(&from, v) else { continue };
        if updates.iter().any(|u| u.update_type == kind) {
            continue; // newest first: the first of each kind is the newest
        }
        let mut signals: Vec<Signal> =
            parsed.iter().filter(|(w, _)| w > &from && w <= v).flat_map(|(_, r)| r.signals.iter().cloned()).collect();
        signals.sort();
        signals.dedup();
        updates.push(Update {
            version: release.version.clone(),
            update_type: kind,
            published: release.published,
            signals,
        });
    }
    updates.sort_by_key(|u| u.update_type);
    Available { latest, updates }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalKind;

    fn release(version: &str, signals: &[SignalKind]) -> Release {
        Release {
            version: version.into(),
            published: None,
            prerelease: false,
            deprecated: false,
            app_version: None,
            kube_version: None,
            notes: None,
            url: None,
            digest: None,
            signals: signals.iter().map(|k| Signal { kind: *k, detail: version.into() }).collect(),
        }
    }

    #[test]
    fn newest_of_each_step_with_signals_along_the_way() {
        let releases = [
            release("2.0.0", &[SignalKind::Breaking]),
            release("1.6.0", &[]),
            release("1.5.4", &[]),
            release("1.4.4", &[]),
            release("1.4.3", &[SignalKind::Security]),
            release("1.4.1", &[]),
            release("1.4.0", &[SignalKind::Security]),
            release("2.1.0-rc.1", &[]),
        ];
        let a = available("1.4.1", &releases);
        assert_eq!(a.latest.as_deref(), Some("2.0.0"));
        let got: Vec<(&str, UpdateType)> = a.updates.iter().map(|u| (u.version.as_str(), u.update_type)).collect();
        assert_eq!(got, [("1.4.4", UpdateType::Patch), ("1.6.0", UpdateType::Minor), ("2.0.0", UpdateType::Major)]);
        assert_eq!(a.updates[0].signals.len(), 1, "1.4.3's security fix travels with the patch update");
        assert_eq!(a.updates[2].signals.len(), 2);
    }

    #[test]
    fn an_oci_tag_current_version_gets_its_updates() {
        // `plan` read `1.0.0_build.1` as a version and `scan` did not (issue 9): one parse now.
        let releases = [release("1.1.0_build.1", &[]), release("1.0.0_build.1", &[])];
        let a = available("1.0.0_build.1", &releases);
        let got: Vec<(&str, UpdateType)> = a.updates.iter().map(|u| (u.version.as_str(), u.update_type)).collect();
        assert_eq!(got, [("1.1.0_build.1", UpdateType::Minor)]);
    }

    #[test]
    fn k3s_builds_and_unparsable_currents() {
        let releases = [release("v1.30.4+k3s2", &[]), release("v1.30.4+k3s1", &[]), release("v1.31.0+k3s1", &[])];
        let a = available("v1.30.4+k3s1", &releases);
        let kinds: Vec<UpdateType> = a.updates.iter().map(|u| u.update_type).collect();
        assert_eq!(kinds, [UpdateType::Build, UpdateType::Minor]);
        let none = available("latest", &releases);
        assert!(none.updates.is_empty() && none.latest.as_deref() == Some("v1.31.0+k3s1"));
    }
}
