//! The rules the gate applies to one dependency, in the order it applies them. Each rule either
//! passes the dependency on to the next or ends with a skip, hold or block that says why, so
//! [`rules`] reads as the list of rules itself.

use jiff::Timestamp;

use super::history::{Blocked, Event};
use super::paths;
use super::rules::{Settings, settings_for};
use super::versioning::{Constraint, UpdateType, Version, classify, newest_first};
use super::{Action, Decision, GateInput, human_age, k3s_group, slug, when};
use crate::model::{Component, Datasource, Dependency, Kind, Release, SignalKind};

/// A decision that ends the rules early. Boxed: a decision is large and most rules pass.
type Ended = Box<Decision>;

fn end(action: Action, reason: impl Into<String>) -> Ended {
    Box::new(Decision::new(action, reason))
}

/// Decide for one dependency.
pub(super) fn decide_one(dep: &Dependency, input: &GateInput<'_>, kube: &[Version], pause: Option<&str>) -> Decision {
    rules(dep, input, kube, pause).unwrap_or_else(|ended| *ended)
}

/// The rules, in order.
fn rules(dep: &Dependency, input: &GateInput<'_>, kube: &[Version], pause: Option<&str>) -> Result<Decision, Ended> {
    not_skipped_by_the_scan(dep)?;
    let releases = looked_up(dep, input)?;
    let current = comparable(dep)?;
    pinned_the_way_flux_reads_it(dep, releases)?;
    enabled_by_the_rules(dep, input)?;
    not_reverted_too_often(dep, input)?;
    let parsed = newest_first(releases);
    let mut found = Candidates::gather(dep, input, &current, &parsed, kube);
    found.any_left()?;
    let path = match dep.component {
        Component::Longhorn | Component::K3s => one_minor_at_a_time(dep, input, &current, &parsed, &mut found)?,
        Component::Flux => no_api_removal_in_use(dep, input, &current, &mut found)?,
        _ => Path::default(),
    };
    let (chosen, waiting) = old_enough(&found, input.now)?;
    let mut decision = proposal(dep, &current, &parsed, chosen, path.step);
    for note in waiting.iter().map(|w| format!("; newer: {w}")).chain([path.note]) {
        decision.reason.push_str(&note);
    }
    if !found.refused.is_empty() {
        decision.reason.push_str(&format!("; skipping refused {}", found.refused.join(", ")));
    }
    for unread in &found.unread_kube {
        decision.reason.push_str(&format!("; {unread}"));
    }
    outside_the_schedule(&mut decision, &chosen.settings, input.now);
    paused(&mut decision, pause);
    Ok(decision)
}

fn not_skipped_by_the_scan(dep: &Dependency) -> Result<(), Ended> {
    match &dep.skip {
        Some(skip) => Err(end(Action::Skip, format!("{}: {}", skip.reason.as_str(), skip.message))),
        None => Ok(()),
    }
}

fn looked_up<'a>(dep: &Dependency, input: &GateInput<'a>) -> Result<&'a [Release], Ended> {
    match input.releases.get(&dep.id) {
        None => Err(end(Action::Skip, "versions were not looked up")),
        Some(Err(e)) => Err(end(Action::Skip, format!("versions unknown: {e}"))),
        Some(Ok(r)) => Ok(&r[..]),
    }
}

fn comparable(dep: &Dependency) -> Result<Version, Ended> {
    let text = dep.current.as_deref().unwrap_or("");
    Version::parse(text).ok_or_else(|| end(Action::Skip, format!("`{text}` is not a version upkeep can compare")))
}

/// A chart version without a patch (`1.2`) is pinned only when the repository has a chart
/// versioned exactly `1.2`; otherwise Flux reads it as a range and the cluster moves without a
/// commit. source-controller looks for an exact version string first and only then parses the
/// text as a Masterminds semver constraint (fluxcd/source-controller
/// `internal/helm/repository/chart_repository.go`, `getChartVersion`; for OCI repositories Helm's
/// `pkg/registry/util.go`, `GetTagMatchingVersionOrConstraint`, does the same with tags), and
/// Masterminds reads a version missing its patch as "dirty", which `constraintTildeOrEqual`
/// turns into `~1.2`: `>=1.2.0 <1.3.0` (Masterminds/semver `constraints.go`).
/// An OCIRepository's `ref.tag` is a tag, never a range, so it is not affected.
fn pinned_the_way_flux_reads_it(dep: &Dependency, releases: &[Release]) -> Result<(), Ended> {
    let chart_version = matches!(dep.kind, Kind::HelmRelease | Kind::HelmChart)
        && dep.package.as_ref().is_some_and(|p| matches!(p.datasource, Datasource::Helm | Datasource::Oci))
        && !dep.location.as_ref().is_some_and(|l| l.literal_tag);
    let text = dep.current.as_deref().unwrap_or("").trim();
    let core = text.trim_start_matches(['v', 'V']).split(['-', '+', '_']).next().unwrap_or("");
    if !chart_version || core.split('.').count() != 2 || releases.iter().any(|r| r.version == text) {
        return Ok(());
    }
    let (major, minor) = core.split_once('.').unwrap_or((core, "0"));
    Err(end(
        Action::Skip,
        format!(
            "floating-version: `{text}` is a range to Flux: no chart is versioned exactly `{text}`, so source-controller reads it as `~{core}` (>={major}.{minor}.0 <{major}.{}.0) and the cluster moves without a commit; pin an exact version to get update PRs",
            minor.parse::<u64>().map_or_else(|_| "?".to_string(), |m| (m + 1).to_string())
        ),
    ))
}

fn enabled_by_the_rules(dep: &Dependency, input: &GateInput<'_>) -> Result<(), Ended> {
    if settings_for(&input.policy.rules, dep, None).enabled {
        Ok(())
    } else {
        Err(end(Action::Skip, "updates are disabled for it by a rule (`enabled: false`)"))
    }
}

fn not_reverted_too_often(dep: &Dependency, input: &GateInput<'_>) -> Result<(), Ended> {
    let memory = &input.policy.memory;
    let reverts = input.history.recent_reverts(&dep.id, memory.revert_window, input.now);
    if reverts.len() < memory.reverts_to_hold {
        return Ok(());
    }
    Err(end(
        Action::Hold,
        format!(
            "held for a human: reverted {} times in the last {} days; update it by hand once the cause is understood",
            reverts.len(),
            memory.revert_window.as_secs() / 86_400
        ),
    ))
}

/// A version the rules allow, with the settings of its step size.
struct Candidate<'a> {
    version: Version,
    release: &'a Release,
    kind: UpdateType,
    settings: Settings,
}

/// The versions the rules allow, newest first, and what was left out for reasons to tell.
struct Candidates<'a> {
    list: Vec<Candidate<'a>>,
    /// Versions refused before (reverted, or their PR closed unmerged), with why.
    refused: Vec<String>,
    /// Versions whose `kubeVersion` excludes a cluster they would run on.
    excluded_kube: Vec<String>,
    /// `kubeVersion` constraints upkeep could not read: not checked, and said so.
    unread_kube: Vec<String>,
    /// Every stable version, newest first.
    stable: Vec<Version>,
    /// The version in the repository is itself blocked (it failed verification after its
    /// merge): why, until a revert takes it back or a newer release arrives.
    current_blocked: Option<String>,
}

impl<'a> Candidates<'a> {
    fn gather(
        dep: &Dependency,
        input: &GateInput<'_>,
        current: &Version,
        parsed: &[(Version, &'a Release)],
        kube: &[Version],
    ) -> Candidates<'a> {
        let blocked = input.history.blocked(&dep.id);
        let stable = parsed.iter().filter(|(v, r)| !v.is_prerelease() && !r.prerelease).map(|(v, _)| v.clone());
        let mut found = Candidates {
            list: Vec::new(),
            refused: Vec::new(),
            excluded_kube: Vec::new(),
            unread_kube: Vec::new(),
            stable: stable.collect(),
            current_blocked: refused_as(&blocked, current).map(|b| format!("{} {}", b.version, b.why)),
        };
        for (v, r) in parsed {
            let Some(kind) = classify(current, v) else { continue };
            let settings = settings_for(&input.policy.rules, dep, Some(kind));
            if !wanted(&settings, kind, v, r, current) {
                continue;
            }
            if let Some(b) = refused_as(&blocked, v) {
                found.refused.push(format!("{} ({})", b.version, b.why));
                continue;
            }
            if !found.runs_on(r, kube) {
                continue;
            }
            found.list.push(Candidate { version: v.clone(), release: r, kind, settings });
        }
        // A refused version is not replaced by an older one: only something newer is proposed.
        let newest_refused = parsed.iter().map(|(v, _)| v).filter(|v| refused_as(&blocked, v).is_some()).max();
        if let Some(limit) = newest_refused {
            found.list.retain(|c| classify(limit, &c.version).is_some());
        }
        found
    }

    /// Does the release's `kubeVersion` admit every cluster it would run on? An unreadable
    /// constraint is not held against it, but is said in the reason.
    fn runs_on(&mut self, r: &Release, kube: &[Version]) -> bool {
        let Some(constraint) = r.kube_version.as_deref() else { return true };
        match Constraint::parse(constraint) {
            Err(e) => {
                self.unread_kube.push(format!("{} declares kubeVersion `{constraint}`, which upkeep cannot read ({e}): not checked against the cluster", r.version));
                true
            }
            Ok(c) => match kube.iter().find(|k| !c.matches(k)) {
                Some(k) => {
                    self.excluded_kube
                        .push(format!("{} needs Kubernetes {constraint}, and a cluster it runs on has {k}", r.version));
                    false
                }
                None => true,
            },
        }
    }

    /// Nothing left to propose ends here: blocked, held or up to date.
    fn any_left(&self) -> Result<(), Ended> {
        if !self.list.is_empty() {
            return Ok(());
        }
        if !self.refused.is_empty() {
            return Err(end(
                Action::Blocked,
                format!("newer versions were refused before: {}; waiting for a newer release", self.refused.join(", ")),
            ));
        }
        if let Some(first) = self.excluded_kube.first() {
            return Err(end(Action::Hold, format!("{first} (from its k3s Plan)")));
        }
        if let Some(why) = &self.current_blocked {
            return Err(end(
                Action::Blocked,
                format!("{why}: its revert (or a forward fix) is pending; waiting for a newer release"),
            ));
        }
        let latest = self.stable.first().map(|v| format!(" (latest {v})")).unwrap_or_default();
        Err(end(Action::Skip, format!("up to date{latest}")))
    }
}

/// Do the rules of this step size want this version at all?
fn wanted(settings: &Settings, kind: UpdateType, v: &Version, r: &Release, current: &Version) -> bool {
    settings.enabled
        && settings.allow.contains(&kind)
        && (!(v.is_prerelease() || r.prerelease) || settings.prerelease || current.is_prerelease())
        && !settings.ignore_versions.iter().any(|c| c.matches(v))
}

/// The refusal of this version, compared as versions: `v1.5.4` refused is `1.5.4` refused.
fn refused_as<'b>(blocked: &'b [Blocked], v: &Version) -> Option<&'b Blocked> {
    blocked.iter().find(|b| b.version == v.as_str() || Version::parse(&b.version).is_some_and(|bv| bv.same_as(v)))
}

/// Where a proposal stands on a platform upgrade path, and the words for it.
#[derive(Default)]
struct Path {
    step: Option<(usize, usize)>,
    note: String,
}

/// Longhorn and k3s move one minor at a time, and each step runs a while before the next.
fn one_minor_at_a_time(
    dep: &Dependency,
    input: &GateInput<'_>,
    current: &Version,
    parsed: &[(Version, &Release)],
    found: &mut Candidates<'_>,
) -> Result<Path, Ended> {
    let versions: Vec<Version> = found.list.iter().map(|c| c.version.clone()).collect();
    let (allowed, steps) = paths::one_minor_at_a_time(current, &versions, &found.stable);
    let newest = versions.iter().max().cloned();
    found.list.retain(|c| allowed.contains(&c.version));
    if !found.list.is_empty() {
        step_has_soaked(dep, input)?;
    }
    if found.list.is_empty() {
        if !found.refused.is_empty() {
            return Err(end(
                Action::Blocked,
                format!(
                    "newer versions were refused before: {}; the next minor step has nothing newer yet",
                    found.refused.join(", ")
                ),
            ));
        }
        return Err(end(Action::Hold, "no version one minor step away is available yet"));
    }
    // Count from where the chain started, so the PR after a merged step says "step 2 of 3".
    let (done, total) = match chain_start(dep, input, current, parsed) {
        Some(start) => {
            (stations(&start, current, &found.stable), paths::one_minor_at_a_time(&start, &versions, &found.stable).1)
        }
        None => (0, steps),
    };
    if total <= 1 {
        return Ok(Path::default());
    }
    let what = if dep.component == Component::Longhorn {
        "Longhorn refuses to skip a minor"
    } else {
        "k3s must not skip a minor"
    };
    let step = (done + 1).min(total);
    let next =
        if step < total { ", the next step opens once this one is merged and verified" } else { ", the last step" };
    let towards = newest.map(|v| v.to_string()).unwrap_or_default();
    Ok(Path { step: Some((step, total)), note: format!("; step {step} of {total} towards {towards}: {what}{next}") })
}

/// The step upkeep merged last runs a while before the next one: it must come back healthy (the
/// verifier's soak) before the chain goes on.
fn step_has_soaked(dep: &Dependency, input: &GateInput<'_>) -> Result<(), Ended> {
    let Some(current_text) = dep.current.as_deref() else { return Ok(()) };
    let Some((at, commit)) = input.history.arrived(&dep.id, current_text) else { return Ok(()) };
    let age = input.now.as_second() - at.as_second();
    let soak = i64::try_from(input.policy.memory.step_soak.as_secs()).unwrap_or(i64::MAX);
    if age >= soak {
        return Ok(());
    }
    Err(end(
        Action::Hold,
        format!(
            "{current_text} arrived {} (upkeep commit {}); the next step opens at {}, once it has run for {} (memory.stepSoak)",
            when(at.as_second()),
            &commit[..commit.len().min(12)],
            when(at.as_second().saturating_add(soak)),
            human_age(soak)
        ),
    ))
}

/// Where the upgrade chain that brought `dep` to `current` started, read from upkeep's memory:
/// follow upkeep's own updates back while each moved exactly one minor and a newer minor than
/// the one it reached was already published when it merged (so it was a step of a longer path,
/// not the whole way). `None` when `current` did not arrive as such a step.
fn chain_start(
    dep: &Dependency,
    input: &GateInput<'_>,
    current: &Version,
    parsed: &[(Version, &Release)],
) -> Option<Version> {
    let events = input.history.events();
    let mut reached = current.clone();
    let mut start = None;
    // Each step goes one minor down, so the walk ends; the bound only makes that plain.
    for _ in 0..events.len() {
        let (from, merged) = events.iter().find_map(|e| match e {
            Event::Updated { dep: d, from, to, at, .. }
                if *d == dep.id && Version::parse(to).is_some_and(|t| t.same_as(&reached)) =>
            {
                Some((Version::parse(from), *at))
            }
            _ => None,
        })?;
        let Some(from) = from else { break };
        let one_minor = (from.major == reached.major && from.minor + 1 == reached.minor)
            || (from.major + 1 == reached.major && reached.minor == 0);
        let further_out = parsed.iter().any(|(v, r)| {
            !v.is_prerelease()
                && (v.major, v.minor) > (reached.major, reached.minor)
                && r.published.is_some_and(|p| p <= merged)
        });
        if !one_minor || !further_out {
            break;
        }
        start = Some(from.clone());
        reached = from;
    }
    start
}

/// Minors passed on the way from `start` to `current` (`current`'s own included).
fn stations(start: &Version, current: &Version, stable: &[Version]) -> usize {
    let mut minors: Vec<(u64, u64)> = stable
        .iter()
        .chain([current])
        .map(|v| (v.major, v.minor))
        .filter(|m| *m > (start.major, start.minor) && *m <= (current.major, current.minor))
        .collect();
    minors.sort_unstable();
    minors.dedup();
    minors.len()
}

/// Flux upgrades that remove an apiVersion the repository still uses wait for `flux migrate`.
/// Only the files this Flux's own clusters apply count (an archived file does not hold it).
fn no_api_removal_in_use(
    dep: &Dependency,
    input: &GateInput<'_>,
    current: &Version,
    found: &mut Candidates<'_>,
) -> Result<Path, Ended> {
    let Some(newest) = found.list.first() else { return Ok(Path::default()) };
    let in_use = super::api_versions_of_cluster(dep, input);
    let Some((removal, files)) = paths::flux_removal(current, &newest.version, &in_use) else {
        return Ok(Path::default());
    };
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
    found.list.retain(|c| (c.version.major, c.version.minor) < removal.flux);
    if found.list.is_empty() {
        return Err(end(Action::Hold, held));
    }
    Ok(Path { step: None, note: format!("; newer versions held: {held}") })
}

/// The newest candidate old enough for `minimumReleaseAge`, and what newer one is waiting.
fn old_enough<'c, 'a>(found: &'c Candidates<'a>, now: Timestamp) -> Result<(&'c Candidate<'a>, Option<String>), Ended> {
    let mut waiting = None;
    for c in &found.list {
        match too_young(c, now) {
            None => return Ok((c, waiting)),
            Some(why) => {
                waiting.get_or_insert(why);
            }
        }
    }
    Err(end(Action::Hold, format!("waiting: {}", waiting.unwrap_or_default())))
}

/// Why `c` is too young to propose, if it is.
fn too_young(c: &Candidate<'_>, now: Timestamp) -> Option<String> {
    let min = c.settings.minimum_release_age?;
    let min = i64::try_from(min.as_secs()).unwrap_or(i64::MAX);
    match c.release.published {
        Some(published) if now.as_second() - published.as_second() >= min => None,
        Some(published) => Some(format!(
            "{} was published {}, rules want it {} old (minimumReleaseAge): it can go at {}",
            c.release.version,
            when(published.as_second()),
            human_age(min),
            when(published.as_second().saturating_add(min))
        )),
        // No date (OCI tags carry none; some index entries lack `created`): the age cannot be
        // shown, so the rule is not met (Renovate's `timestamp-required` default).
        None => Some(format!(
            "{} has no release date upstream, and rules want it {} old (minimumReleaseAge)",
            c.release.version,
            human_age(min)
        )),
    }
}

/// The proposal for the chosen candidate.
fn proposal(
    dep: &Dependency,
    current: &Version,
    parsed: &[(Version, &Release)],
    chosen: &Candidate<'_>,
    step: Option<(usize, usize)>,
) -> Decision {
    let Candidate { version: target, release, kind, settings } = chosen;
    let security = parsed
        .iter()
        .filter(|(v, _)| v > current && v <= target)
        .any(|(_, r)| r.signals.iter().any(|s| s.kind == SignalKind::Security));
    let group = if dep.component == Component::K3s && dep.kind == Kind::Plan {
        k3s_group(dep)
    } else {
        settings.group.as_deref().map_or_else(|| slug(&dep.id), slug)
    };
    Decision {
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
        on_failure_issue: settings.on_failure == Some(crate::gate::rules::OnFailure::Issue),
        published: release.published,
        bucket: settings.max_open_prs.clone(),
    }
}

/// Outside its schedule a proposal waits, unless it carries a security fix.
fn outside_the_schedule(decision: &mut Decision, settings: &Settings, now: Timestamp) {
    if let Some(schedule) = &settings.schedule
        && !schedule.contains(now)
        && !decision.security
    {
        decision.action = Action::Hold;
        decision.reason = format!("outside the schedule ({}): {}", schedule.describe(), decision.reason);
    }
}

/// A high revert rate pauses everything but security fixes.
fn paused(decision: &mut Decision, pause: Option<&str>) {
    if let Some(p) = pause
        && !decision.security
        && decision.action == Action::Propose
    {
        decision.action = Action::Hold;
        decision.reason = format!("paused: {p}");
    }
}
