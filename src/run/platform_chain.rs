//! The dashboard's picture of each platform upgrade chain (k3s, Longhorn): both move one minor
//! at a time, so reaching the newest release is a chain of PRs. Each chain is drawn as a
//! Mermaid flowchart: the version in git (done), the step upkeep proposes now (its PR open, or
//! why it waits), and the later steps, the newest patch of each minor after it.

use std::collections::BTreeSet;

use crate::app::Versions;
use crate::extract::Scan;
use crate::gate::versioning::Version;
use crate::gate::{Action, Decision, Plan};
use crate::model::Component;
use crate::render::PlatformChain;
use crate::render::mermaid::{Mark, Step, fenced};

/// Later steps drawn before the rest are summed up in one box.
const LATER_MAX: usize = 4;

/// One chain per Longhorn release and k3s Plan that has a version in git.
pub(super) fn chains(scan: &Scan, versions: &Versions, plan: &Plan, open_heads: &BTreeSet<&str>) -> Vec<PlatformChain> {
    scan.dependencies
        .iter()
        .filter(|d| matches!(d.component, Component::Longhorn | Component::K3s) && d.skip.is_none())
        .filter_map(|d| {
            let current = Version::parse(d.current.as_deref()?)?;
            let released = match versions.releases.get(&d.id) {
                Some(Ok(releases)) => releases.iter().filter_map(|r| Version::parse(&r.version)).collect(),
                _ => Vec::new(),
            };
            let name = if d.component == Component::K3s { "k3s" } else { "Longhorn" };
            let proposed = plan.decisions.get(&d.id).and_then(|x| proposed(x, open_heads));
            let steps = steps(name, &current, &released, proposed.as_ref());
            Some(PlatformChain { id: d.id.clone(), diagram: fenced(&steps) })
        })
        .collect()
}

/// The step the gate chose, and where it stands.
#[derive(Debug, Clone)]
struct Proposed {
    target: Version,
    detail: String,
    mark: Mark,
}

/// The chain of one dependency: in git, the step proposed now, the later stations.
fn steps(name: &str, current: &Version, released: &[Version], proposed: Option<&Proposed>) -> Vec<Step> {
    let mut out = vec![Step::new(format!("{name} {}", current.as_str()), Some("in git".into()), Mark::Done)];
    let target = proposed.map(|p| p.target.clone());
    let mut stations = stations(current, released);
    if let Some(t) = &target
        && !stations.iter().any(|s| s.same_as(t))
    {
        stations.push(t.clone());
        stations.sort();
    }
    let mut later = 0;
    for station in stations.iter().filter(|s| target.as_ref().is_none_or(|t| *s >= t)) {
        if target.as_ref().is_some_and(|t| station.same_as(t)) {
            if let Some(p) = proposed {
                out.push(Step::new(format!("{name} {}", station.as_str()), Some(p.detail.clone()), p.mark));
            }
        } else if later < LATER_MAX {
            later += 1;
            out.push(Step::new(format!("{name} {}", station.as_str()), Some("later".into()), Mark::Later));
        } else {
            later += 1;
        }
    }
    if later > LATER_MAX {
        out.push(Step::new(format!("{} more", later - LATER_MAX), None, Mark::Later));
    }
    out
}

/// Where the gate's step stands: its PR is open, or why it is not.
fn proposed(d: &Decision, open_heads: &BTreeSet<&str>) -> Option<Proposed> {
    let target = Version::parse(d.target.as_deref()?)?;
    let open = d.group.as_ref().is_some_and(|g| open_heads.contains(format!("upkeep/{g}").as_str()));
    let (detail, mark) = match d.action {
        Action::Propose if open => ("PR open".into(), Mark::Current),
        Action::Propose => ("next: proposed".into(), Mark::Current),
        Action::Hold => (format!("held: {}", d.reason), Mark::Later),
        _ => ("next".into(), Mark::Later),
    };
    Some(Proposed { target, detail, mark })
}

/// The newest stable patch of each minor after the current version, oldest first.
fn stations(current: &Version, released: &[Version]) -> Vec<Version> {
    let mut newer: Vec<&Version> = released.iter().filter(|v| !v.is_prerelease() && *v > current).collect();
    newer.sort();
    let mut out: Vec<Version> = Vec::new();
    for v in newer.into_iter().rev() {
        if !out.iter().any(|s| (s.major, s.minor) == (v.major, v.minor)) {
            out.push(v.clone());
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::mermaid::check;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    fn drawn(steps: &[Step]) -> String {
        let d = fenced(steps);
        check(d.trim_start_matches("```mermaid\n").trim_end_matches("```")).unwrap_or_else(|e| panic!("{e}\n{d}"));
        d
    }

    #[test]
    fn a_longhorn_chain_shows_git_the_open_pr_and_one_minor_after_another() {
        let released: Vec<Version> =
            ["1.4.1", "1.4.4", "1.5.0", "1.5.4", "1.6.0-rc.1", "1.6.3", "1.7.2", "1.7.1"].map(v).to_vec();
        let open = Proposed { target: v("1.5.4"), detail: "PR open".into(), mark: Mark::Current };
        let d = drawn(&steps("Longhorn", &v("1.4.1"), &released, Some(&open)));
        insta::assert_snapshot!(d);
    }

    #[test]
    fn a_held_k3s_step_says_why_and_a_long_chain_is_summed_up() {
        let released: Vec<Version> = (29..=36).map(|m| v(&format!("v1.{m}.2+k3s1"))).collect();
        let held = Proposed {
            target: v("v1.29.2+k3s1"),
            detail: "held: outside the schedule (sat 02:00-06:00): \"weekend\"; #ops".into(),
            mark: Mark::Later,
        };
        let d = drawn(&steps("k3s", &v("v1.28.5+k3s1"), &released, Some(&held)));
        assert!(d.contains("s1[\"k3s v1.29.2+k3s1<br/>held: outside the schedule"), "{d}");
        assert!(d.contains("#34;weekend#34;#59; #35;"), "the reason is escaped: {d}");
        assert!(d.contains("s6[\"3 more\"]"), "{d}");
    }
}
