//! The diff gate: turns the versions available for each dependency into a decision (propose,
//! hold, skip, blocked) with a reason a maintainer can read in one line. Pure logic, no I/O:
//! the repository's rules ([`rules`]), version semantics ([`versioning`]), platform upgrade paths
//! ([`paths`]), schedules ([`schedule`]) and memory read back from git ([`history`]) all come in
//! as values, so every decision is reproducible in a test.

pub mod available;
pub mod history;
pub mod paths;
pub mod rules;
pub mod schedule;
pub mod versioning;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use serde::Serialize;

use self::history::{History, MemoryPolicy};
use self::rules::{Rule, Settings, settings_for};
use self::versioning::{Constraint, UpdateType, Version, classify};
use crate::model::{Component, Dependency, Kind, PlanRole, Release, SignalKind};

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
    pub releases: &'a HashMap<String, Result<Vec<Release>, String>>,
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
        let decision = decide_one(dep, input, &kube, pause.as_deref());
        plan.decisions.insert(dep.id.clone(), decision);
    }
    align_k3s(input.dependencies, &mut plan);
    apply_limits(input, &mut plan);
    plan
}

fn decide_one(dep: &Dependency, input: &GateInput<'_>, kube: &[Version], pause: Option<&str>) -> Decision {
    if let Some(skip) = &dep.skip {
        return Decision::new(Action::Skip, format!("{}: {}", skip.reason.as_str(), skip.message));
    }
    let releases = match input.releases.get(&dep.id) {
        None => return Decision::new(Action::Skip, "versions were not looked up"),
        Some(Err(e)) => return Decision::new(Action::Skip, format!("versions unknown: {e}")),
        Some(Ok(r)) => r,
    };
    let current_text = dep.current.as_deref().unwrap_or("");
    // OCI tags spell a version's `+` as `_` (Helm's convention); compare them as versions.
    let Some(current) = Version::parse(&current_text.replace('_', "+")) else {
        return Decision::new(Action::Skip, format!("`{current_text}` is not a version upkeep can compare"));
    };
    let base = settings_for(&input.policy.rules, dep, None);
    if !base.enabled {
        return Decision::new(Action::Skip, "updates are disabled for it by a rule (`enabled: false`)");
    }
    let memory = &input.policy.memory;
    let reverts = input.history.recent_reverts(&dep.id, memory.revert_window, input.now);
    if reverts.len() >= memory.reverts_to_hold {
        return Decision::new(
            Action::Hold,
            format!(
                "held for a human: reverted {} times in the last {} days; update it by hand once the cause is understood",
                reverts.len(),
                memory.revert_window.as_secs() / 86_400
            ),
        );
    }
    let blocked = input.history.blocked(&dep.id);

    let mut parsed: Vec<(Version, &Release)> =
        releases.iter().filter_map(|r| Version::parse(&r.version.replace('_', "+")).map(|v| (v, r))).collect();
    parsed.sort_by(|a, b| b.0.cmp(&a.0));
    let stable: Vec<Version> =
        parsed.iter().filter(|(v, r)| !v.is_prerelease() && !r.prerelease).map(|(v, _)| v.clone()).collect();

    let mut refused: Vec<String> = Vec::new();
    let mut excluded_kube: Vec<String> = Vec::new();
    let mut candidates: Vec<(Version, &Release, UpdateType, Settings)> = Vec::new();
    for (v, r) in &parsed {
        let Some(kind) = classify(&current, v) else { continue };
        let s = settings_for(&input.policy.rules, dep, Some(kind));
        if !s.enabled || !s.allow.contains(&kind) {
            continue;
        }
        if (v.is_prerelease() || r.prerelease) && !(s.prerelease || current.is_prerelease()) {
            continue;
        }
        if s.ignore_versions.iter().any(|c: &Constraint| c.matches(v)) {
            continue;
        }
        if let Some(b) = blocked.iter().find(|b| b.version == r.version) {
            refused.push(format!("{} ({})", b.version, b.why));
            continue;
        }
        if let Some(constraint) = r.kube_version.as_deref()
            && let Ok(c) = Constraint::parse(constraint)
            && let Some(kube) = kube.iter().find(|k| !c.matches(k))
        {
            excluded_kube
                .push(format!("{} needs Kubernetes {constraint}, and a cluster it runs on has {kube}", r.version));
            continue;
        }
        candidates.push((v.clone(), r, kind, s));
    }
    // A refused version is not replaced by an older one: only something newer is proposed.
    let newest_refused =
        parsed.iter().filter(|(_, r)| blocked.iter().any(|b| b.version == r.version)).map(|(v, _)| v).max();
    if let Some(limit) = newest_refused {
        candidates.retain(|c| &c.0 > limit);
    }
    if candidates.is_empty() {
        if !refused.is_empty() {
            return Decision::new(
                Action::Blocked,
                format!("newer versions were refused before: {}; waiting for a newer release", refused.join(", ")),
            );
        }
        if let Some(first) = excluded_kube.first() {
            return Decision::new(Action::Hold, format!("{first} (from its k3s Plan)"));
        }
        let latest = stable.first().map(|v| format!(" (latest {v})")).unwrap_or_default();
        return Decision::new(Action::Skip, format!("up to date{latest}"));
    }

    // Platform upgrade paths.
    let mut step = None;
    let mut path_note = String::new();
    if matches!(dep.component, Component::Longhorn | Component::K3s) {
        let versions: Vec<Version> = candidates.iter().map(|c| c.0.clone()).collect();
        let (allowed, steps) = paths::one_minor_at_a_time(&current, &versions, &stable);
        let newest = versions.iter().max().cloned();
        candidates.retain(|c| allowed.contains(&c.0));
        // The step upkeep merged last runs a while before the next one: it must come back
        // healthy (the verifier's soak) before the chain goes on.
        if let Some(current_text) = dep.current.as_deref()
            && let Some((at, commit)) = input.history.arrived(&dep.id, current_text)
            && !candidates.is_empty()
        {
            let age = input.now.as_second() - at.as_second();
            let soak = i64::try_from(input.policy.memory.step_soak.as_secs()).unwrap_or(i64::MAX);
            if age < soak {
                return Decision::new(
                    Action::Hold,
                    format!(
                        "{current_text} arrived {} (upkeep commit {}); the next step opens at {}, once it has run for {} (memory.stepSoak)",
                        when(at.as_second()),
                        &commit[..commit.len().min(12)],
                        when(at.as_second().saturating_add(soak)),
                        human_age(soak)
                    ),
                );
            }
        }
        if candidates.is_empty() {
            if !refused.is_empty() {
                return Decision::new(
                    Action::Blocked,
                    format!(
                        "newer versions were refused before: {}; the next minor step has nothing newer yet",
                        refused.join(", ")
                    ),
                );
            }
            return Decision::new(Action::Hold, "no version one minor step away is available yet");
        }
        if steps > 1 {
            step = Some((1, steps));
            let what = if dep.component == Component::Longhorn {
                "Longhorn refuses to skip a minor"
            } else {
                "k3s must not skip a minor"
            };
            path_note = format!(
                "; step 1 of {steps} towards {}: {what}, the next step opens once this one is merged and verified",
                newest.map(|v| v.to_string()).unwrap_or_default()
            );
        }
    }
    if dep.component == Component::Flux
        && let Some((newest, ..)) = candidates.first()
        && let Some((removal, files)) = paths::flux_removal(&current, newest, &api_versions_of_cluster(dep, input))
    {
        let list: Vec<&str> = files.iter().map(String::as_str).take(5).collect();
        let more = files.len().saturating_sub(list.len());
        let held = format!(
            "Flux v{}.{} removes {} ({}), still used in {}{}; run `flux migrate -f . --version={}.{}` first",
            removal.flux.0,
            removal.flux.1,
            removal.api_version,
            removal.source,
            list.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            removal.flux.0,
            removal.flux.1
        );
        candidates.retain(|c| (c.0.major, c.0.minor) < removal.flux);
        if candidates.is_empty() {
            return Decision::new(Action::Hold, held);
        }
        path_note = format!("; newer versions held: {held}");
    }

    // Release age: the newest candidate old enough.
    let mut waiting = None;
    let chosen = candidates.iter().find(|(_, r, _, s)| match (s.minimum_release_age, r.published) {
        (Some(min), Some(published)) => {
            let age = input.now.as_second() - published.as_second();
            let ok = age >= i64::try_from(min.as_secs()).unwrap_or(i64::MAX);
            if !ok && waiting.is_none() {
                let min = i64::try_from(min.as_secs()).unwrap_or(i64::MAX);
                waiting = Some(format!(
                    "{} was published {}, rules want it {} old (minimumReleaseAge): it can go at {}",
                    r.version,
                    when(published.as_second()),
                    human_age(min),
                    when(published.as_second().saturating_add(min))
                ));
            }
            ok
        }
        // No date (OCI tags carry none; some index entries lack `created`): the age cannot be
        // shown, so the rule is not met (Renovate's `timestamp-required` default).
        (Some(min), None) => {
            if waiting.is_none() {
                waiting = Some(format!(
                    "{} has no release date upstream, and rules want it {} old (minimumReleaseAge)",
                    r.version,
                    human_age(i64::try_from(min.as_secs()).unwrap_or(i64::MAX))
                ));
            }
            false
        }
        (None, _) => true,
    });
    let Some((target, release, kind, settings)) = chosen else {
        return Decision::new(Action::Hold, format!("waiting: {}", waiting.unwrap_or_default()));
    };
    let security = parsed
        .iter()
        .filter(|(v, _)| v > &current && v <= target)
        .any(|(_, r)| r.signals.iter().any(|s| s.kind == SignalKind::Security));
    let group = if dep.component == Component::K3s && dep.kind == Kind::Plan {
        k3s_group(dep)
    } else {
        settings.group.as_deref().map_or_else(|| slug(&dep.id), slug)
    };
    let mut decision = Decision {
        action: Action::Propose,
        target: Some(release.version.clone()),
        update_type: Some(*kind),
        group: Some(group),
        reason: format!(
            "{} update {current} → {}{}",
            kind.as_str(),
            release.version,
            if security { ", with a security fix" } else { "" }
        ),
        step,
        security,
        automerge: settings.automerge,
        draft: settings.draft,
        labels: settings.labels.clone(),
        reviewers: settings.reviewers.clone(),
        published: release.published,
        bucket: settings.max_open_prs.clone(),
    };
    if let Some(w) = waiting {
        decision.reason.push_str(&format!("; newer: {w}"));
    }
    decision.reason.push_str(&path_note);
    if !refused.is_empty() {
        decision.reason.push_str(&format!("; skipping refused {}", refused.join(", ")));
    }
    if let Some(schedule) = &settings.schedule
        && !schedule.contains(input.now)
        && !security
    {
        decision.action = Action::Hold;
        decision.reason = format!("outside the schedule ({}): {}", schedule.describe(), decision.reason);
    }
    if let Some(p) = pause
        && !security
        && decision.action == Action::Propose
    {
        decision.action = Action::Hold;
        decision.reason = format!("paused: {p}");
    }
    decision
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
