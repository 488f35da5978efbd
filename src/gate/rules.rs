//! The repository's rules, checked, and how they combine for one dependency and update type.
//!
//! Rules form an ordered list. **Every** rule whose matchers all match applies, in order, and a
//! setting a later rule sets overrides the same setting from an earlier one (settings a rule
//! leaves out are inherited). This is Renovate's `packageRules` semantics, so its users' intuition
//! carries over: put broad rules first and exceptions after them.

use std::time::Duration;

use globset::GlobSet;

use super::checks::CheckSpec;
use super::schedule::Schedule;
use super::versioning::{Constraint, UpdateType};
use crate::model::{Component, Dependency, Kind};

/// What a rule applies to. An absent matcher matches everything; a present one must match.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Dependency id globs (`helmrelease/monitoring/*`).
    pub ids: Option<GlobSet>,
    /// Kinds.
    pub kinds: Option<Vec<Kind>>,
    /// Components.
    pub components: Option<Vec<Component>>,
    /// Chart (package name) globs.
    pub charts: Option<GlobSet>,
    /// Registry URL globs.
    pub registries: Option<GlobSet>,
    /// File path globs (the manifest's file, relative to the repository).
    pub files: Option<GlobSet>,
    /// Update types; a rule with this matcher applies only to candidates of those types.
    pub update_types: Option<Vec<UpdateType>>,
}

impl Matcher {
    /// Does the rule apply to `dep` for a candidate of `update_type` (`None`: any candidate)?
    pub fn matches(&self, dep: &Dependency, update_type: Option<UpdateType>) -> bool {
        let glob = |set: &Option<GlobSet>, value: Option<&str>| {
            set.as_ref().is_none_or(|s| value.is_some_and(|v| s.is_match(v)))
        };
        glob(&self.ids, Some(&dep.id))
            && self.kinds.as_ref().is_none_or(|k| k.contains(&dep.kind))
            && self.components.as_ref().is_none_or(|c| c.contains(&dep.component))
            && glob(&self.charts, dep.package.as_ref().map(|p| p.name.as_str()))
            && glob(&self.registries, dep.package.as_ref().map(|p| p.registry.as_str()))
            && glob(&self.files, Some(&dep.manifest.file))
            && match (&self.update_types, update_type) {
                (None, _) => true,
                (Some(types), Some(t)) => types.contains(&t),
                (Some(_), None) => false,
            }
    }
}

/// Settings one rule sets; `None` leaves the inherited value.
#[derive(Debug, Clone, Default)]
pub struct RuleSettings {
    /// Update types that may be proposed.
    pub allow: Option<Vec<UpdateType>>,
    /// Versions never to propose.
    pub ignore_versions: Option<Vec<Constraint>>,
    /// Whether prereleases are candidates.
    pub prerelease: Option<bool>,
    /// How old a release must be.
    pub minimum_release_age: Option<Duration>,
    /// One PR for every dependency in the group.
    pub group: Option<String>,
    /// Merge automatically when checks pass.
    pub automerge: Option<bool>,
    /// Open PRs as drafts.
    pub draft: Option<bool>,
    /// PR labels.
    pub labels: Option<Vec<String>>,
    /// PR reviewers.
    pub reviewers: Option<Vec<String>>,
    /// When PRs may be opened or updated.
    pub schedule: Option<Schedule>,
    /// Most open PRs for the dependencies this rule matches.
    pub max_open_prs: Option<usize>,
    /// `false` turns updates off.
    pub enabled: Option<bool>,
    /// What a failed verification of the matched dependencies brings.
    pub on_failure: Option<OnFailure>,
}

/// What the verifier does when a merged update fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// A revert PR (the default for application charts).
    Revert,
    /// A "forward fix needed" issue, no revert (always so for Longhorn, Flux and k3s).
    Issue,
}

/// One rule.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Position in the config (0-based), for messages and limit buckets.
    pub index: usize,
    /// What it applies to.
    pub matcher: Matcher,
    /// What it sets.
    pub settings: RuleSettings,
    /// The user's checks for what it matches (`checks:`): unlike settings, these add up over
    /// every matching rule.
    pub checks: Vec<CheckSpec>,
}

/// The settings in force for one dependency and update type.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Update types that may be proposed.
    pub allow: Vec<UpdateType>,
    /// Versions never to propose.
    pub ignore_versions: Vec<Constraint>,
    /// Whether prereleases are candidates.
    pub prerelease: bool,
    /// How old a release must be.
    pub minimum_release_age: Option<Duration>,
    /// Group name, if grouped.
    pub group: Option<String>,
    /// Merge automatically.
    pub automerge: bool,
    /// Open PRs as drafts.
    pub draft: bool,
    /// PR labels.
    pub labels: Vec<String>,
    /// PR reviewers.
    pub reviewers: Vec<String>,
    /// When PRs may be opened or updated.
    pub schedule: Option<Schedule>,
    /// `(bucket, limit)`: the last rule that set `maxOpenPRs`.
    pub max_open_prs: Option<(String, usize)>,
    /// Updates on at all.
    pub enabled: bool,
    /// What a failed verification brings; `None`: the component's default.
    pub on_failure: Option<OnFailure>,
}

impl Default for Settings {
    /// The sensible setup of an empty config: every update type, stable releases only, no
    /// waiting, one PR per dependency, no schedule.
    fn default() -> Self {
        Settings {
            allow: vec![
                UpdateType::Build,
                UpdateType::Prerelease,
                UpdateType::Patch,
                UpdateType::Minor,
                UpdateType::Major,
            ],
            ignore_versions: Vec::new(),
            prerelease: false,
            minimum_release_age: None,
            group: None,
            automerge: false,
            draft: false,
            labels: Vec::new(),
            reviewers: Vec::new(),
            schedule: None,
            max_open_prs: None,
            enabled: true,
            on_failure: None,
        }
    }
}

/// Combine every matching rule, in order, over the defaults.
pub fn settings_for(rules: &[Rule], dep: &Dependency, update_type: Option<UpdateType>) -> Settings {
    let mut s = Settings::default();
    for rule in rules.iter().filter(|r| r.matcher.matches(dep, update_type)) {
        let r = &rule.settings;
        if let Some(v) = &r.allow {
            s.allow = v.clone();
        }
        if let Some(v) = &r.ignore_versions {
            s.ignore_versions = v.clone();
        }
        if let Some(v) = r.prerelease {
            s.prerelease = v;
        }
        if let Some(v) = r.minimum_release_age {
            s.minimum_release_age = Some(v);
        }
        if let Some(v) = &r.group {
            s.group = Some(v.clone());
        }
        if let Some(v) = r.automerge {
            s.automerge = v;
        }
        if let Some(v) = r.draft {
            s.draft = v;
        }
        if let Some(v) = &r.labels {
            s.labels = v.clone();
        }
        if let Some(v) = &r.reviewers {
            s.reviewers = v.clone();
        }
        if let Some(v) = &r.schedule {
            s.schedule = Some(v.clone());
        }
        if let Some(v) = r.max_open_prs {
            s.max_open_prs = Some((format!("rules[{}]", rule.index), v));
        }
        if let Some(v) = r.on_failure {
            s.on_failure = Some(v);
        }
        if let Some(v) = r.enabled {
            s.enabled = v;
        }
    }
    s
}

/// The checks of every rule matching `dep` for an update of `update_type`, in rule order, each
/// check once (two rules naming the same probe run it once).
pub fn checks_for<'a>(rules: &'a [Rule], dep: &Dependency, update_type: Option<UpdateType>) -> Vec<&'a CheckSpec> {
    let mut out: Vec<&CheckSpec> = Vec::new();
    for rule in rules.iter().filter(|r| r.matcher.matches(dep, update_type)) {
        for spec in &rule.checks {
            if !out.iter().any(|c| c.check == spec.check) {
                out.push(spec);
            }
        }
    }
    out
}

/// Parse `3d`, `12h`, `90m`, `2w`, `45s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration; write e.g. `3d`, `12h` or `30m`"))?;
    let secs = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("`{text}` has an unknown unit; use s, m, h, d or w")),
    };
    n.checked_mul(secs)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is longer than a hundred years"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Datasource, Manifest, Package};

    fn glob(patterns: &[&str]) -> GlobSet {
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            b.add(globset::Glob::new(p).unwrap_or_else(|e| panic!("{e}")));
        }
        b.build().unwrap_or_else(|e| panic!("{e}"))
    }

    fn dep(id: &str, chart: &str, file: &str) -> Dependency {
        Dependency {
            id: id.into(),
            kind: Kind::HelmRelease,
            component: Component::App,
            name: chart.into(),
            namespace: None,
            package: Some(Package {
                datasource: Datasource::Helm,
                registry: "https://charts.example.com".into(),
                name: chart.into(),
            }),
            current: Some("1.0.0".into()),
            location: None,
            skip: None,
            role: None,
            manifest: Manifest { file: file.into(), line: 1 },
            clusters: None,
        }
    }

    #[test]
    fn every_matching_rule_applies_and_later_ones_win() {
        let rules = vec![
            Rule {
                index: 0,
                matcher: Matcher::default(),
                settings: RuleSettings {
                    labels: Some(vec!["deps".into()]),
                    automerge: Some(false),
                    ..Default::default()
                },
                checks: Vec::new(),
            },
            Rule {
                index: 1,
                matcher: Matcher { charts: Some(glob(&["kube-prometheus-*"])), ..Default::default() },
                settings: RuleSettings { group: Some("monitoring".into()), ..Default::default() },
                checks: Vec::new(),
            },
            Rule {
                index: 2,
                matcher: Matcher {
                    update_types: Some(vec![UpdateType::Patch]),
                    files: Some(glob(&["clusters/dev/**"])),
                    ..Default::default()
                },
                settings: RuleSettings { automerge: Some(true), ..Default::default() },
                checks: Vec::new(),
            },
        ];
        let d = dep("helmrelease/monitoring/kps", "kube-prometheus-stack", "clusters/dev/kps.yaml");
        let patch = settings_for(&rules, &d, Some(UpdateType::Patch));
        assert!(patch.automerge && patch.labels == ["deps"] && patch.group.as_deref() == Some("monitoring"));
        let minor = settings_for(&rules, &d, Some(UpdateType::Minor));
        assert!(!minor.automerge, "rule 2 only matches patch updates");
        let other = settings_for(&rules, &dep("helmrelease/a/b", "b", "clusters/prod/b.yaml"), Some(UpdateType::Patch));
        assert!(other.group.is_none() && !other.automerge);
    }

    #[test]
    fn checks_add_up_over_matching_rules_each_probe_once() {
        use crate::gate::checks::{Check, CheckSpec, TCP_TIMEOUT, TcpCheck};
        let spec = |address: &str, origin: &str| CheckSpec {
            check: Check::Tcp(TcpCheck { address: address.into(), timeout: TCP_TIMEOUT }),
            origin: origin.into(),
            path: String::new(),
        };
        let rules = vec![
            Rule { index: 0, checks: vec![spec("db:5432", "a:1")], ..Default::default() },
            Rule {
                index: 1,
                matcher: Matcher { charts: Some(glob(&["podinfo"])), ..Default::default() },
                checks: vec![spec("db:5432", "a:9"), spec("podinfo:9898", "a:10")],
                ..Default::default()
            },
            Rule {
                index: 2,
                matcher: Matcher { update_types: Some(vec![UpdateType::Major]), ..Default::default() },
                checks: vec![spec("smoke:80", "a:20")],
                ..Default::default()
            },
        ];
        let d = dep("helmrelease/apps/podinfo", "podinfo", "apps/podinfo.yaml");
        let origins = |t| checks_for(&rules, &d, t).iter().map(|c| c.origin.clone()).collect::<Vec<_>>();
        assert_eq!(origins(Some(UpdateType::Minor)), ["a:1", "a:10"], "the same probe twice runs once");
        assert_eq!(origins(Some(UpdateType::Major)), ["a:1", "a:10", "a:20"]);
        let other = dep("helmrelease/apps/other", "other", "apps/other.yaml");
        assert_eq!(checks_for(&rules, &other, None).len(), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(259_200)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("3 days").is_err() && parse_duration("d").is_err());
        let absurd = parse_duration("18446744073709551615w").unwrap_err();
        assert!(absurd.contains("longer than a hundred years"), "{absurd}");
    }
}
