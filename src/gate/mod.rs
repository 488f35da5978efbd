//! The diff gate: turns the versions available for each dependency into a decision (propose,
//! hold, skip, blocked) with a reason a maintainer can read in one line. Pure logic, no I/O:
//! the repository's rules ([`rules`]), version semantics ([`versioning`]), platform upgrade paths
//! ([`paths`]), schedules ([`schedule`]) and memory read back from git ([`history`]) all come in
//! as values, so every decision is reproducible in a test.

pub mod available;
pub mod checks;
mod decide;
pub mod history;
pub mod paths;
pub mod rules;
pub mod schedule;
pub mod versioning;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use serde::Serialize;

use self::history::{History, MemoryPolicy};
use self::rules::Rule;
use self::versioning::{UpdateType, Version};
use crate::model::{Component, Dependency, Kind, PlanRole, SharedReleases};

/// The repository's policy, checked.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Ordered rules.
    pub rules: Vec<Rule>,
    /// Most upkeep PRs open at once.
    pub max_open_prs: Option<usize>,
    /// How memory turns into holds.
    pub memory: MemoryPolicy,
}

/// What to do about a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Open or update a PR.
    Propose,
    /// Not now (schedule, limits, release age, a platform path, a pause); will be proposed later.
    Hold,
    /// Nothing to do (up to date, not updatable).
    Skip,
    /// Newer versions exist but were refused earlier (reverted, or PR closed unmerged).
    Blocked,
}

impl Action {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Propose => "propose",
            Action::Hold => "hold",
            Action::Skip => "skip",
            Action::Blocked => "blocked",
        }
    }
}

/// The gate's answer for one dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The version to move to (also for holds: what would be proposed).
    pub target: Option<String>,
    /// The step size.
    #[serde(rename = "type")]
    pub update_type: Option<UpdateType>,
    /// The PR it goes into (branch `upkeep/<group>`).
    pub group: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// `[step, of]` on a platform upgrade path with more than one step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<(usize, usize)>,
    /// The update carries a security fix.
    #[serde(skip)]
    pub security: bool,
    /// Merge automatically.
    #[serde(skip)]
    pub automerge: bool,
    /// Open as a draft.
    #[serde(skip)]
    pub draft: bool,
    /// PR labels.
    #[serde(skip)]
    pub labels: Vec<String>,
    /// PR reviewers.
    #[serde(skip)]
    pub reviewers: Vec<String>,
    /// A failed verification opens an issue, not a revert (`onFailure: issue`).
    #[serde(skip)]
    pub on_failure_issue: bool,
    #[serde(skip)]
    published: Option<Timestamp>,
    #[serde(skip)]
    bucket: Option<(String, usize)>,
}

impl Decision {
    fn new(action: Action, reason: impl Into<String>) -> Decision {
        Decision {
            action,
            target: None,
            update_type: None,
            group: None,
            reason: reason.into(),
            step: None,
            security: false,
            automerge: false,
            draft: false,
            labels: Vec::new(),
            reviewers: Vec::new(),
            on_failure_issue: false,
            published: None,
            bucket: None,
        }
    }
}

/// Everything the gate decides from.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// The scan's dependencies.
    pub dependencies: &'a [Dependency],
    /// Releases by dependency id; an error when the lookup failed; absent when not looked up.
    pub releases: &'a HashMap<String, Result<SharedReleases, String>>,
    /// apiVersions used in the repository, with the files using them.
    pub api_versions: &'a BTreeMap<String, BTreeSet<String>>,
    /// The clusters that apply each file (`Scan::flux_graph`); empty when the repository has no
    /// Flux entry point. A Flux upgrade is held only for removed APIs its own cluster applies.
    pub file_clusters: &'a BTreeMap<String, BTreeSet<String>>,
    /// The policy.
    pub policy: &'a Policy,
    /// Memory.
    pub history: &'a History,
    /// Now (a value, so schedules and ages are testable).
    pub now: Timestamp,
    /// Groups that already have an open upkeep PR (count towards limits).
    pub open_groups: &'a [String],
}

/// The decisions, by dependency id, and notes for the whole run (a pause).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// One decision per dependency.
    pub decisions: BTreeMap<String, Decision>,
    /// Run-wide notes.
    pub notes: Vec<String>,
}

/// Turn an id or group name into a branch-safe slug.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    // Git refuses a ref component ending in `.` or `.lock`: strip both until neither is left.
    let mut out = out.trim_matches('-').to_string();
    loop {
        let trimmed = out.trim_end_matches('.').trim_end_matches(".lock").trim_end_matches('-');
        if trimmed.len() == out.len() {
            break;
        }
        out = trimmed.to_string();
    }
    if out.is_empty() {
        // Nothing ASCII to keep (`監視`): a short hash keeps the name a valid, distinct ref.
        use sha2::Digest;
        let hash = sha2::Sha256::digest(text.as_bytes());
        out = format!("group-{}", hash.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>());
    }
    out
}

/// A k3s Plan's Kubernetes version, with where it is: its folders and the clusters applying it.
struct PlanKube<'a> {
    folders: Vec<String>,
    clusters: Option<&'a [String]>,
    version: Version,
}

/// The Kubernetes version of the cluster, from its k3s Plans (the lowest, if they differ).
fn cluster_kubernetes(deps: &[Dependency]) -> Vec<PlanKube<'_>> {
    deps.iter()
        .filter(|d| d.component == Component::K3s && d.skip.is_none())
        .filter_map(|d| {
            let v = d.current.as_deref().and_then(Version::parse)?;
            Some(PlanKube {
                folders: folders(&d.manifest.file),
                clusters: d.clusters.as_deref(),
                version: paths::kubernetes_of_k3s(&v),
            })
        })
        .collect()
}

/// Do two cluster lists share a cluster? (`None` when either is not known.)
fn same_cluster(a: Option<&[String]>, b: Option<&[String]>) -> Option<bool> {
    let (a, b) = (a.filter(|a| !a.is_empty())?, b.filter(|b| !b.is_empty())?);
    Some(a.iter().any(|c| b.contains(c)))
}

fn folders(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.split('/').map(str::to_string).collect();
    parts.pop();
    parts
}

/// The Kubernetes versions a dependency may run on: those of the k3s Plans that share the most
/// folders with its file (`clusters/prod/...`), or every Plan's when none is nearer than the
/// rest (a shared `apps/` tree): then a chart must fit them all.
///
/// When Flux's graph says which clusters apply the dependency and the Plans, the Plans of those
/// clusters decide, and only they: another cluster's k3s version says nothing about this one.
fn kubernetes_for(dep: &Dependency, plans: &[PlanKube<'_>]) -> Vec<Version> {
    if plans.iter().any(|p| same_cluster(dep.clusters.as_deref(), p.clusters).is_some()) {
        let mut versions: Vec<Version> = plans
            .iter()
            .filter(|p| same_cluster(dep.clusters.as_deref(), p.clusters) == Some(true))
            .map(|p| p.version.clone())
            .collect();
        versions.sort();
        versions.dedup();
        return versions;
    }
    let own = folders(&dep.manifest.file);
    let shared = |dirs: &Vec<String>| dirs.iter().zip(&own).take_while(|(a, b)| a == b).count();
    let best = plans.iter().map(|p| shared(&p.folders)).max().unwrap_or(0);
    let mut versions: Vec<Version> =
        plans.iter().filter(|p| best == 0 || shared(&p.folders) == best).map(|p| p.version.clone()).collect();
    versions.sort();
    versions.dedup();
    versions
}

/// k3s Plans of one cluster move together: the cluster is the one Flux's graph says applies
/// the Plan (server and agent Plans in sibling folders are still one cluster); without a graph,
/// Plans sharing a folder and namespace are taken to be one cluster.
fn k3s_group(dep: &Dependency) -> String {
    if let Some(clusters) = dep.clusters.as_deref().filter(|c| !c.is_empty()) {
        return slug(&format!("k3s-{}", clusters.join("-")));
    }
    let dir = dep.manifest.file.rsplit_once('/').map_or("", |(d, _)| d);
    slug(&format!("k3s-{}-{}", dep.namespace.as_deref().unwrap_or("-"), dir))
}

/// The apiVersions in files the dependency's own clusters apply (all of them when the graph
/// does not say): an archived file, or another cluster's, does not hold this Flux.
fn api_versions_of_cluster(dep: &Dependency, input: &GateInput<'_>) -> BTreeMap<String, BTreeSet<String>> {
    let Some(clusters) = dep.clusters.as_deref().filter(|c| !c.is_empty()) else {
        return input.api_versions.clone();
    };
    let applies =
        |file: &String| input.file_clusters.get(file).is_some_and(|cs| clusters.iter().any(|c| cs.contains(c)));
    input
        .api_versions
        .iter()
        .map(|(api, files)| (api.clone(), files.iter().filter(|f| applies(f)).cloned().collect()))
        .collect()
}

/// Decide for every dependency.
pub fn decide(input: &GateInput<'_>) -> Plan {
    let mut plan = Plan::default();
    let pause = input.history.pause(&input.policy.memory);
    if let Some(p) = &pause {
        plan.notes.push(p.clone());
    }
    let plans = cluster_kubernetes(input.dependencies);
    for dep in input.dependencies {
        let kube = kubernetes_for(dep, &plans);
        let decision = decide::decide_one(dep, input, &kube, pause.as_deref());
        plan.decisions.insert(dep.id.clone(), decision);
    }
    align_k3s(input.dependencies, &mut plan);
    apply_limits(input, &mut plan);
    plan
}

/// A moment in words that do not go stale: reasons end up in the dashboard, which must not
/// change between two runs unless something happened (`2026-11-24 10:00 UTC`).
fn when(second: i64) -> String {
    Timestamp::from_second(second)
        .map_or_else(|_| "a far-off date".into(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

fn human_age(seconds: i64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s => format!("{}m", s.max(0) / 60),
    }
}

/// All k3s Plans of a cluster move together to the same version: the lowest target proposed
/// among them, and if one of them cannot move, none does.
fn align_k3s(deps: &[Dependency], plan: &mut Plan) {
    let mut groups: BTreeMap<String, Vec<&Dependency>> = BTreeMap::new();
    for d in deps.iter().filter(|d| d.component == Component::K3s && d.kind == Kind::Plan && d.skip.is_none()) {
        groups.entry(k3s_group(d)).or_default().push(d);
    }
    for (group, members) in groups {
        let decisions: Vec<(&Dependency, Decision)> =
            members.iter().filter_map(|d| plan.decisions.get(&d.id).map(|x| (*d, x.clone()))).collect();
        let stuck = decisions.iter().find(|(_, x)| matches!(x.action, Action::Hold | Action::Blocked));
        let lowest = decisions
            .iter()
            .filter(|(_, x)| x.action == Action::Propose)
            .filter_map(|(_, x)| x.target.as_deref().and_then(Version::parse).map(|v| (v, x.clone())))
            .min_by(|a, b| a.0.cmp(&b.0));
        let servers = decisions.iter().filter(|(d, _)| d.role == Some(PlanRole::Server)).count();
        for (d, _) in &decisions {
            let Some(x) = plan.decisions.get_mut(&d.id) else { continue };
            if let Some((other, why)) = stuck.map(|(o, x)| (o, x.reason.clone())) {
                if other.id != d.id && x.action == Action::Propose {
                    x.action = Action::Hold;
                    x.reason = format!("k3s Plans move together and {} is held: {why}", other.id);
                }
            } else if let Some((target, lowest)) = &lowest {
                // A Plan already at or past the group's target never moves back: it waits.
                if d.current.as_deref().and_then(Version::parse).is_some_and(|c| c >= *target) {
                    if x.action == Action::Propose {
                        x.action = Action::Hold;
                        x.reason = format!(
                            "already at {}, at or past {}, where the cluster's other k3s Plans move now; it waits for them",
                            d.current.as_deref().unwrap_or("?"),
                            lowest.target.as_deref().unwrap_or("?")
                        );
                        x.target = None;
                        x.group = None;
                    }
                    continue;
                }
                let role = if d.role == Some(PlanRole::Server) { "servers" } else { "agents" };
                x.target = lowest.target.clone();
                x.update_type = lowest.update_type;
                x.step = lowest.step;
                x.group = Some(group.clone());
                x.reason = format!(
                    "{}; the cluster's {} k3s Plans ({} server, {} agent) move together in one PR, this one upgrades {role}",
                    lowest.reason,
                    decisions.len(),
                    servers,
                    decisions.len() - servers,
                );
            }
        }
    }
}

/// Priority when limits bite: security first, then patch, minor, major, then the oldest release.
fn apply_limits(input: &GateInput<'_>, plan: &mut Plan) {
    // One entry per PR (group), with the decisions in it.
    let mut units: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, d) in &plan.decisions {
        if let (Action::Propose, Some(group)) = (d.action, &d.group) {
            units.entry(group.clone()).or_default().push(id.clone());
        }
    }
    let key = |ids: &Vec<String>| {
        let ds: Vec<&Decision> = ids.iter().filter_map(|i| plan.decisions.get(i)).collect();
        let security = ds.iter().any(|d| d.security);
        let kind = ds.iter().filter_map(|d| d.update_type).max().unwrap_or(UpdateType::Major);
        let oldest = ds.iter().filter_map(|d| d.published).min().map_or(i64::MAX, |t| t.as_second());
        (!security, kind, oldest)
    };
    let mut ordered: Vec<(String, Vec<String>)> = units.into_iter().collect();
    ordered.sort_by(|a, b| key(&a.1).cmp(&key(&b.1)).then_with(|| a.0.cmp(&b.0)));
    let mut open: usize = input.open_groups.len();
    let bucket_of =
        |plan: &Plan, ids: &[String]| ids.iter().filter_map(|i| plan.decisions.get(i)).find_map(|d| d.bucket.clone());
    // PRs already open hold their slots, in the global limit and in their rule's limit alike:
    // a new proposal never displaces an open PR.
    let mut buckets: HashMap<String, usize> = HashMap::new();
    for (group, ids) in &ordered {
        if input.open_groups.contains(group)
            && let Some((name, _)) = bucket_of(plan, ids)
        {
            *buckets.entry(name).or_default() += 1;
        }
    }
    for (group, ids) in ordered {
        let already_open = input.open_groups.contains(&group);
        let bucket = bucket_of(plan, &ids);
        let over_global = input.policy.max_open_prs.is_some_and(|max| !already_open && open >= max);
        let over_bucket =
            !already_open && bucket.as_ref().is_some_and(|(name, max)| buckets.get(name).copied().unwrap_or(0) >= *max);
        if over_global || over_bucket {
            let why = if over_global {
                format!(
                    "PR limit: {open} upkeep PRs open or planned (maxOpenPRs {})",
                    input.policy.max_open_prs.unwrap_or(0)
                )
            } else {
                let (name, max) = bucket.clone().unwrap_or_default();
                format!("PR limit of {name}: {max} open (maxOpenPRs)")
            };
            for id in &ids {
                if let Some(d) = plan.decisions.get_mut(id) {
                    d.action = Action::Hold;
                    d.reason = format!("{why}; would be: {}", d.reason);
                }
            }
            continue;
        }
        if !already_open {
            open += 1;
            if let Some((name, _)) = bucket {
                *buckets.entry(name).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_branch_safe() {
        assert_eq!(
            slug("helmrelease/monitoring/kube-prometheus-stack"),
            "helmrelease-monitoring-kube-prometheus-stack"
        );
        assert_eq!(slug("Plan/Sys Upgrade//x"), "plan-sys-upgrade-x");
        assert_eq!(slug("web.lock"), "web");
        assert_eq!(slug("web.lock."), "web");
        assert!(slug("監視").starts_with("group-") && slug("監視") != slug("監査"));
    }
}
