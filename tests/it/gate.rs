//! The diff gate, table-driven over real release sequences: Longhorn's published chart index,
//! k3s's and Flux's GitHub release lists (fixtures/mirror), plus memory read from a real git
//! history built in a tempdir.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use upkeep::config;
use upkeep::gate::history::{Event, History, HistorySource};
use upkeep::gate::{Action, GateInput, Plan, Policy, decide};
use upkeep::git::GitHistory;
use upkeep::model::{
    Component, Datasource, Dependency, Kind, Manifest, Package, PlanRole, Release, Signal, SignalKind,
};

use super::util::fixture;

fn longhorn_releases() -> Vec<Release> {
    let text = std::fs::read_to_string(fixture("mirror/charts.longhorn.io/index.yaml")).unwrap();
    upkeep::lookup::helm::parse_index(&text).unwrap().remove("longhorn").unwrap()
}

fn github_releases(repo: &str) -> Vec<Release> {
    let bytes = std::fs::read(fixture(&format!("mirror/github/repos/{repo}/releases"))).unwrap();
    upkeep::lookup::github::parse_page(&bytes).unwrap()
}

fn release(version: &str, published: &str) -> Release {
    Release {
        version: version.into(),
        published: Some(published.parse().unwrap()),
        prerelease: version.contains('-'),
        deprecated: false,
        app_version: None,
        kube_version: None,
        notes: None,
        url: None,
        digest: None,
        signals: Vec::new(),
    }
}

fn dep(id: &str, component: Component, current: &str) -> Dependency {
    let (kind, package, file) = match component {
        Component::K3s => (
            Kind::Plan,
            Package {
                datasource: Datasource::GithubReleases,
                registry: "https://github.com".into(),
                name: "k3s-io/k3s".into(),
            },
            "system-upgrade/plans.yaml",
        ),
        Component::Flux => (
            Kind::FluxComponents,
            Package {
                datasource: Datasource::GithubReleases,
                registry: "https://github.com".into(),
                name: "fluxcd/flux2".into(),
            },
            "clusters/home/flux-system/gotk-components.yaml",
        ),
        _ => (
            Kind::HelmRelease,
            Package {
                datasource: Datasource::Helm,
                registry: "https://charts.example.com".into(),
                name: id.rsplit('/').next().unwrap().into(),
            },
            "apps/release.yaml",
        ),
    };
    Dependency {
        id: id.into(),
        kind,
        component,
        name: id.rsplit('/').next().unwrap().into(),
        namespace: Some("system-upgrade".into()),
        package: Some(package),
        current: Some(current.into()),
        location: None,
        skip: None,
        role: (component == Component::K3s)
            .then(|| if id.contains("server") { PlanRole::Server } else { PlanRole::Agent }),
        manifest: Manifest { file: file.into(), line: 1 },
        clusters: None,
    }
}

struct Case {
    deps: Vec<Dependency>,
    releases: HashMap<String, Result<upkeep::model::SharedReleases, String>>,
    api_versions: BTreeMap<String, BTreeSet<String>>,
    policy: Policy,
    history: History,
    now: Timestamp,
    open_groups: Vec<String>,
}

impl Case {
    fn new(deps: Vec<(Dependency, Vec<Release>)>) -> Case {
        let releases = deps.iter().map(|(d, r)| (d.id.clone(), Ok(r.clone().into()))).collect();
        Case {
            deps: deps.into_iter().map(|(d, _)| d).collect(),
            releases,
            api_versions: BTreeMap::new(),
            policy: Policy::default(),
            history: History::default(),
            now: "2026-11-24T12:00:00Z".parse().unwrap(),
            open_groups: Vec::new(),
        }
    }

    fn config(mut self, yaml: &str) -> Case {
        self.policy =
            config::parse(yaml, std::path::Path::new("."), "upkeep.yaml").unwrap_or_else(|e| panic!("{e}")).policy;
        self
    }

    fn run(&self) -> Plan {
        decide(&GateInput {
            dependencies: &self.deps,
            releases: &self.releases,
            api_versions: &self.api_versions,
            file_clusters: &BTreeMap::new(),
            policy: &self.policy,
            history: &self.history,
            now: self.now,
            open_groups: &self.open_groups,
        })
    }
}

fn summary(plan: &Plan, id: &str) -> (Action, Option<String>) {
    let d = &plan.decisions[id];
    (d.action, d.target.clone())
}

#[test]
fn longhorn_moves_one_minor_at_a_time_on_its_real_index() {
    type Row = (&'static str, Action, Option<&'static str>, Option<(usize, usize)>);
    let table: [Row; 5] = [
        ("1.4.1", Action::Propose, Some("1.5.4"), Some((1, 2))),
        ("1.3.3", Action::Propose, Some("1.4.4"), Some((1, 3))),
        ("1.5.1", Action::Propose, Some("1.6.0"), None),
        ("1.5.4", Action::Propose, Some("1.6.0"), None),
        ("1.6.0", Action::Skip, None, None),
    ];
    for (current, action, target, step) in table {
        let plan = Case::new(vec![(
            dep("helmrelease/longhorn-system/longhorn", Component::Longhorn, current),
            longhorn_releases(),
        )])
        .run();
        let d = &plan.decisions["helmrelease/longhorn-system/longhorn"];
        assert_eq!((d.action, d.target.as_deref(), d.step), (action, target, step), "from {current}: {}", d.reason);
    }
    let plan = Case::new(vec![(
        dep("helmrelease/longhorn-system/longhorn", Component::Longhorn, "1.4.1"),
        longhorn_releases(),
    )])
    .run();
    assert!(plan.decisions["helmrelease/longhorn-system/longhorn"].reason.contains("step 1 of 2 towards 1.6.0"));

    // On Longhorn's real release tags through 1.7: a 1.4 -> 1.7 gap is a three-step chain, and a
    // version ahead of everything listed is never moved back.
    let id_tags = "helmrelease/longhorn-system/longhorn";
    let tags = github_releases("longhorn/longhorn");
    for (current, action, target, step) in [
        ("v1.4.4", Action::Propose, Some("v1.5.5"), Some((1, 3))),
        ("v1.5.5", Action::Propose, Some("v1.6.3"), Some((1, 2))),
        ("v1.6.3", Action::Propose, Some("v1.7.2"), None),
        ("v1.8.0", Action::Skip, None, None),
    ] {
        let plan = Case::new(vec![(dep(id_tags, Component::Longhorn, current), tags.clone())]).run();
        let d = &plan.decisions[id_tags];
        assert_eq!((d.action, d.target.as_deref(), d.step), (action, target, step), "from {current}: {}", d.reason);
    }

    // Step 1 (1.4.1 -> 1.5.4) merged two hours ago: step 2 waits for it to run a day first.
    let id = "helmrelease/longhorn-system/longhorn";
    let mut case = Case::new(vec![(dep(id, Component::Longhorn, "1.5.4"), longhorn_releases())]);
    let merged: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    case.history = History::new(vec![Event::Updated {
        dep: id.into(),
        from: "1.4.1".into(),
        to: "1.5.4".into(),
        at: merged,
        commit: "0123456789abcdef".into(),
    }]);
    let d = case.run().decisions[id].clone();
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert!(
        d.reason.contains(
            "1.5.4 arrived 2026-11-24 10:00 UTC (upkeep commit 0123456789ab); the next step opens at 2026-11-25 10:00 UTC"
        ),
        "{}",
        d.reason
    );
    case.now = "2026-11-25T10:00:01Z".parse().unwrap();
    let d = case.run().decisions[id].clone();
    assert_eq!((d.action, d.target.as_deref()), (Action::Propose, Some("1.6.0")), "{}", d.reason);
    case.now = "2026-11-24T12:00:00Z".parse().unwrap();
    let case = case.config("memory:\n  stepSoak: 1h\n");
    assert_eq!(case.run().decisions[id].action, Action::Propose, "the soak is configurable");
}

#[test]
fn k3s_plans_move_together_one_minor_at_a_time() {
    let k3s = github_releases("k3s-io/k3s");
    let server = dep("plan/system-upgrade/k3s-server", Component::K3s, "v1.29.4+k3s1");
    let agent = dep("plan/system-upgrade/k3s-agent", Component::K3s, "v1.29.4+k3s1");
    let plan = Case::new(vec![(server.clone(), k3s.clone()), (agent.clone(), k3s.clone())]).run();
    for id in [&server.id, &agent.id] {
        let d = &plan.decisions[id];
        assert_eq!(
            (d.action, d.target.as_deref(), d.step),
            (Action::Propose, Some("v1.30.6+k3s1"), Some((1, 2))),
            "{}",
            d.reason
        );
    }
    assert_eq!(plan.decisions[&server.id].group, plan.decisions[&agent.id].group, "one PR");

    // An agent behind the server moves to the same version as the server.
    let behind = dep("plan/system-upgrade/k3s-agent", Component::K3s, "v1.30.2+k3s1");
    let ahead = dep("plan/system-upgrade/k3s-server", Component::K3s, "v1.30.5+k3s1");
    let plan = Case::new(vec![(ahead.clone(), k3s.clone()), (behind.clone(), k3s.clone())]).run();
    assert_eq!(summary(&plan, &ahead.id), summary(&plan, &behind.id));
    assert_eq!(summary(&plan, &ahead.id).1.as_deref(), Some("v1.31.2+k3s1"));

    // A Plan already past where the others move now is never moved back: it waits.
    let ahead = dep("plan/system-upgrade/k3s-agent", Component::K3s, "v1.31.0+k3s1");
    let plan = Case::new(vec![(server.clone(), k3s.clone()), (ahead.clone(), k3s.clone())]).run();
    assert_eq!(summary(&plan, &server.id), (Action::Propose, Some("v1.30.6+k3s1".into())));
    let waiting = &plan.decisions[&ahead.id];
    assert_eq!((waiting.action, waiting.target.as_deref()), (Action::Hold, None), "{}", waiting.reason);
    assert!(waiting.reason.contains("already at v1.31.0+k3s1"), "{}", waiting.reason);

    // Only patches and k3s builds allowed; a build bump is its own kind of update.
    let only_patch = Case::new(vec![(server.clone(), k3s.clone())])
        .config("rules:\n  - match: {component: [k3s]}\n    allow: [patch, build]\n")
        .run();
    assert_eq!(summary(&only_patch, &server.id), (Action::Propose, Some("v1.29.10+k3s1".into())));
    let build = dep("plan/system-upgrade/k3s-server", Component::K3s, "v1.30.2+k3s1");
    let only_build = Case::new(vec![(build.clone(), k3s.clone())]).config("rules:\n  - allow: [build]\n").run();
    assert_eq!(summary(&only_build, &build.id), (Action::Propose, Some("v1.30.2+k3s2".into())));

    // When one Plan of the cluster is held, none moves.
    let mut case = Case::new(vec![(server.clone(), k3s.clone()), (agent.clone(), k3s)]);
    let at: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
    case.history = History::new(vec![
        Event::Reverted { dep: server.id.clone(), version: "v1.30.5+k3s1".into(), at, commit: "c1".into() },
        Event::Reverted { dep: server.id.clone(), version: "v1.30.6+k3s1".into(), at, commit: "c2".into() },
    ]);
    let plan = case.run();
    assert_eq!(plan.decisions[&server.id].action, Action::Hold);
    assert_eq!(plan.decisions[&agent.id].action, Action::Hold, "{}", plan.decisions[&agent.id].reason);
}

#[test]
fn flux_is_held_before_an_api_removal_the_repo_still_needs() {
    let flux = vec![
        release("v2.8.1", "2026-03-01T00:00:00Z"),
        release("v2.7.0", "2025-10-01T00:00:00Z"),
        release("v2.6.4", "2025-07-01T00:00:00Z"),
        release("v2.6.0", "2025-05-01T00:00:00Z"),
    ];
    let used = |api: &str| BTreeMap::from([(api.to_string(), BTreeSet::from(["apps/old.yaml".to_string()]))]);
    let id = "flux-components/clusters/home/flux-system";

    let mut case = Case::new(vec![(dep(id, Component::Flux, "v2.6.0"), flux.clone())]);
    case.api_versions = used("helm.toolkit.fluxcd.io/v2beta1");
    let plan = case.run();
    let d = &plan.decisions[id];
    assert_eq!((d.action, d.target.as_deref()), (Action::Propose, Some("v2.6.4")));
    assert!(d.reason.contains("helm.toolkit.fluxcd.io/v2beta1") && d.reason.contains("apps/old.yaml"), "{}", d.reason);

    let mut case = Case::new(vec![(dep(id, Component::Flux, "v2.6.4"), flux.clone())]);
    case.api_versions = used("helm.toolkit.fluxcd.io/v2beta1");
    let d = case.run().decisions[id].clone();
    assert_eq!(d.action, Action::Hold);
    assert!(d.reason.contains("flux migrate -f . --version=2.7"), "{}", d.reason);

    let mut case = Case::new(vec![(dep(id, Component::Flux, "v2.6.4"), flux.clone())]);
    case.api_versions = used("helm.toolkit.fluxcd.io/v2beta2");
    assert_eq!(summary(&case.run(), id), (Action::Propose, Some("v2.7.0".into())));

    // The other groups' removals hold Flux the same way: OCIRepositories and HelmRepositories
    // at source v1beta2 stop it before 2.8; Kustomizations at v1beta1 before 2.7.
    let mut case = Case::new(vec![(dep(id, Component::Flux, "v2.7.0"), flux.clone())]);
    case.api_versions = used("source.toolkit.fluxcd.io/v1beta2");
    let d = case.run().decisions[id].clone();
    assert_eq!(d.action, Action::Hold, "{}", d.reason);
    assert!(
        d.reason.contains("source.toolkit.fluxcd.io/v1beta2") && d.reason.contains("--version=2.8"),
        "{}",
        d.reason
    );
    let mut case = Case::new(vec![(dep(id, Component::Flux, "v2.6.0"), flux.clone())]);
    case.api_versions = used("kustomize.toolkit.fluxcd.io/v1beta1");
    assert_eq!(summary(&case.run(), id), (Action::Propose, Some("v2.6.4".into())));

    let real = Case::new(vec![(dep(id, Component::Flux, "v2.1.0"), github_releases("fluxcd/flux2"))]).run();
    assert_eq!(summary(&real, id), (Action::Propose, Some("v2.4.0".into())), "drafts and prereleases are not proposed");
}

#[test]
fn kube_version_constraints_hold_charts_the_cluster_cannot_run() {
    let mut new = release("2.0.0", "2026-01-01T00:00:00Z");
    new.kube_version = Some(">=1.30.0-0".into());
    let chart = vec![new, release("1.0.0", "2025-01-01T00:00:00Z")];
    let k3s = github_releases("k3s-io/k3s");
    let plan = Case::new(vec![
        (dep("helmrelease/apps/app", Component::App, "1.0.0"), chart.clone()),
        (dep("plan/system-upgrade/k3s-server", Component::K3s, "v1.29.4+k3s1"), k3s.clone()),
    ])
    .run();
    let d = &plan.decisions["helmrelease/apps/app"];
    assert_eq!(d.action, Action::Hold);
    assert!(d.reason.contains("needs Kubernetes >=1.30.0-0") && d.reason.contains("1.29.4"), "{}", d.reason);
    let plan = Case::new(vec![
        (dep("helmrelease/apps/app", Component::App, "1.0.0"), chart),
        (dep("plan/system-upgrade/k3s-server", Component::K3s, "v1.30.2+k3s1"), k3s),
    ])
    .run();
    assert_eq!(plan.decisions["helmrelease/apps/app"].action, Action::Propose);

    // Two clusters in one repository: each chart is checked against its own cluster's
    // Kubernetes (the Plan sharing its folders); a shared one must fit both.
    let at = |mut d: Dependency, file: &str| {
        d.manifest.file = file.into();
        d
    };
    let new_chart = chart_with_kube(">=1.30.0-0");
    let plan = Case::new(vec![
        (
            at(dep("helmrelease/staging/app", Component::App, "1.0.0"), "clusters/staging/apps/app.yaml"),
            new_chart.clone(),
        ),
        (at(dep("helmrelease/prod/app", Component::App, "1.0.0"), "clusters/prod/apps/app.yaml"), new_chart.clone()),
        (at(dep("helmrelease/shared/app", Component::App, "1.0.0"), "apps/base/app.yaml"), new_chart),
        (
            at(dep("plan/staging/k3s-server", Component::K3s, "v1.31.2+k3s1"), "clusters/staging/system/plans.yaml"),
            vec![],
        ),
        (at(dep("plan/prod/k3s-server", Component::K3s, "v1.29.4+k3s1"), "clusters/prod/system/plans.yaml"), vec![]),
    ])
    .run();
    assert_eq!(plan.decisions["helmrelease/staging/app"].action, Action::Propose, "staging runs 1.31");
    assert_eq!(plan.decisions["helmrelease/prod/app"].action, Action::Hold, "prod runs 1.29");
    let shared = &plan.decisions["helmrelease/shared/app"];
    assert_eq!(shared.action, Action::Hold);
    assert!(shared.reason.contains("a cluster it runs on has 1.29.4"), "{}", shared.reason);
}

fn chart_with_kube(constraint: &str) -> Vec<Release> {
    let mut new = release("2.0.0", "2026-01-01T00:00:00Z");
    new.kube_version = Some(constraint.into());
    vec![new, release("1.0.0", "2025-01-01T00:00:00Z")]
}

#[test]
fn every_rule_setting() {
    let releases = vec![
        release("3.0.0", "2026-11-23T12:00:00Z"),
        release("2.6.0-rc.1", "2026-11-01T00:00:00Z"),
        release("2.5.1", "2026-10-01T00:00:00Z"),
        release("2.5.0", "2026-09-01T00:00:00Z"),
        release("2.4.1", "2026-08-01T00:00:00Z"),
        release("2.4.0", "2026-07-01T00:00:00Z"),
    ];
    let id = "helmrelease/apps/app";
    let run = |yaml: &str| {
        summary(&Case::new(vec![(dep(id, Component::App, "2.4.0"), releases.clone())]).config(yaml).run(), id)
    };
    let table: [(&str, Action, Option<&str>); 9] = [
        ("", Action::Propose, Some("3.0.0")),
        ("rules:\n  - allow: [patch, minor]\n", Action::Propose, Some("2.5.1")),
        ("rules:\n  - allow: [patch]\n", Action::Propose, Some("2.4.1")),
        ("rules:\n  - ignoreVersions: ['>=3.0.0', '2.5.1']\n", Action::Propose, Some("2.5.0")),
        ("rules:\n  - {allow: [minor], prerelease: true}\n", Action::Propose, Some("2.6.0-rc.1")),
        ("rules:\n  - minimumReleaseAge: 3d\n", Action::Propose, Some("2.5.1")),
        ("rules:\n  - {allow: [major], minimumReleaseAge: 3d}\n", Action::Hold, Some("").filter(|_| false)),
        ("rules:\n  - match: {id: ['helmrelease/apps/*']}\n    enabled: false\n", Action::Skip, None),
        ("rules:\n  - enabled: false\n  - match: {chart: [app]}\n    enabled: true\n", Action::Propose, Some("3.0.0")),
    ];
    for (yaml, action, target) in table {
        assert_eq!(run(yaml), (action, target.map(String::from)), "config:\n{yaml}");
    }
    let waiting = Case::new(vec![(dep(id, Component::App, "2.4.0"), releases.clone())])
        .config("rules:\n  - {allow: [major], minimumReleaseAge: 3d}\n")
        .run();
    assert!(
        waiting.decisions[id].reason.contains(
            "3.0.0 was published 2026-11-23 12:00 UTC, rules want it 3d old (minimumReleaseAge): it can go at 2026-11-26 12:00 UTC"
        ),
        "{}",
        waiting.decisions[id].reason
    );

    // Groups put several dependencies into one PR; labels and automerge travel with it.
    let plan = Case::new(vec![
        (dep("helmrelease/apps/a", Component::App, "2.4.0"), releases.clone()),
        (dep("helmrelease/apps/b", Component::App, "2.4.0"), releases.clone()),
    ])
    .config(
        "rules:\n  - match: {id: ['helmrelease/apps/*']}\n    group: apps\n    labels: [deps]\n    automerge: true\n",
    )
    .run();
    let a = &plan.decisions["helmrelease/apps/a"];
    assert_eq!((a.group.as_deref(), a.labels.as_slice(), a.automerge), (Some("apps"), &["deps".to_string()][..], true));
    assert_eq!(plan.decisions["helmrelease/apps/b"].group.as_deref(), Some("apps"));
    // A release without a date cannot show its age: the rule holds it (OCI tags carry no date).
    let mut undated = releases.clone();
    for r in &mut undated {
        r.published = None;
    }
    let plan = Case::new(vec![(dep(id, Component::App, "2.4.0"), undated.clone())])
        .config("rules:\n  - minimumReleaseAge: 3d\n")
        .run();
    assert_eq!(plan.decisions[id].action, Action::Hold);
    assert!(plan.decisions[id].reason.contains("3.0.0 has no release date upstream"), "{}", plan.decisions[id].reason);
    let plan = Case::new(vec![(dep(id, Component::App, "2.4.0"), undated)]).run();
    assert_eq!(summary(&plan, id), (Action::Propose, Some("3.0.0".into())), "no rule, no wait");
}

#[test]
fn schedules_hold_outside_the_window_except_for_security() {
    let mut fix = release("1.0.1", "2026-11-01T00:00:00Z");
    fix.signals.push(Signal { kind: SignalKind::Security, detail: "CVE-2026-12345".into() });
    let plain = vec![release("1.1.0", "2026-11-01T00:00:00Z"), release("1.0.0", "2026-01-01T00:00:00Z")];
    let yaml = "timezone: Europe/Berlin\nrules:\n  - schedule: {days: [sat, sun], hours: '00:00-06:00'}\n";
    // 2026-11-24 is a Tuesday.
    let tuesday =
        Case::new(vec![(dep("helmrelease/apps/a", Component::App, "1.0.0"), plain.clone())]).config(yaml).run();
    let d = &tuesday.decisions["helmrelease/apps/a"];
    assert_eq!(d.action, Action::Hold);
    assert!(d.reason.starts_with("outside the schedule (sat,sun 00:00-06:00 Europe/Berlin)"), "{}", d.reason);
    let mut saturday = Case::new(vec![(dep("helmrelease/apps/a", Component::App, "1.0.0"), plain)]).config(yaml);
    saturday.now = "2026-11-28T04:59:00Z".parse().unwrap(); // 05:59 in Berlin
    assert_eq!(saturday.run().decisions["helmrelease/apps/a"].action, Action::Propose);
    saturday.now = "2026-11-28T05:00:00Z".parse().unwrap(); // 06:00 in Berlin: closed
    assert_eq!(saturday.run().decisions["helmrelease/apps/a"].action, Action::Hold);
    let security = Case::new(vec![(
        dep("helmrelease/apps/s", Component::App, "1.0.0"),
        vec![fix, release("1.0.0", "2026-01-01T00:00:00Z")],
    )])
    .config(yaml)
    .run();
    assert_eq!(security.decisions["helmrelease/apps/s"].action, Action::Propose, "security bypasses schedules");
}

#[test]
fn max_open_prs_keeps_security_then_smallest_then_oldest() {
    let with = |versions: &[(&str, &str)], security: bool| -> Vec<Release> {
        let mut out: Vec<Release> = versions.iter().map(|(v, p)| release(v, p)).collect();
        if security {
            out[0].signals.push(Signal { kind: SignalKind::Security, detail: "GHSA-aaaa-bbbb-cccc".into() });
        }
        out
    };
    let deps = vec![
        (dep("helmrelease/apps/major", Component::App, "1.0.0"), with(&[("2.0.0", "2026-01-01T00:00:00Z")], false)),
        (dep("helmrelease/apps/minor", Component::App, "1.0.0"), with(&[("1.1.0", "2026-01-01T00:00:00Z")], false)),
        (dep("helmrelease/apps/patch-new", Component::App, "1.0.0"), with(&[("1.0.1", "2026-06-01T00:00:00Z")], false)),
        (dep("helmrelease/apps/patch-old", Component::App, "1.0.0"), with(&[("1.0.1", "2026-02-01T00:00:00Z")], false)),
        (
            dep("helmrelease/apps/secure-major", Component::App, "1.0.0"),
            with(&[("2.0.0", "2026-03-01T00:00:00Z")], true),
        ),
    ];
    let plan = Case::new(deps.clone()).config("maxOpenPRs: 2\n").run();
    let proposed: Vec<&str> =
        plan.decisions.iter().filter(|(_, d)| d.action == Action::Propose).map(|(id, _)| id.as_str()).collect();
    assert_eq!(proposed, ["helmrelease/apps/patch-old", "helmrelease/apps/secure-major"]);
    let held = &plan.decisions["helmrelease/apps/minor"];
    assert!(held.reason.starts_with("PR limit: 2 upkeep PRs open or planned (maxOpenPRs 2)"), "{}", held.reason);
    // With room for four, the minor update goes before the major one.
    let plan = Case::new(deps).config("maxOpenPRs: 4\n").run();
    assert_eq!(plan.decisions["helmrelease/apps/minor"].action, Action::Propose);
    assert_eq!(plan.decisions["helmrelease/apps/major"].action, Action::Hold);
}

#[test]
fn a_rules_pr_limit_keeps_open_prs_and_holds_new_ones() {
    let deps: Vec<(Dependency, Vec<Release>)> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            (
                dep(&format!("helmrelease/apps/{n}"), Component::App, "1.0.0"),
                vec![release("1.0.1", "2026-06-01T00:00:00Z")],
            )
        })
        .collect();
    let mut case = Case::new(deps).config("rules:\n  - match: {id: ['helmrelease/apps/*']}\n    maxOpenPRs: 1\n");
    let plan = case.run();
    let proposed: Vec<&str> =
        plan.decisions.iter().filter(|(_, d)| d.action == Action::Propose).map(|(id, _)| id.as_str()).collect();
    assert_eq!(proposed, ["helmrelease/apps/a"]);
    assert!(plan.decisions["helmrelease/apps/b"].reason.starts_with("PR limit of rules[0]: 1 open (maxOpenPRs)"));
    // c's PR is already open: it keeps the slot, a is held instead of displacing it.
    case.open_groups = vec![plan_group(&plan, "helmrelease/apps/c")];
    let plan = case.run();
    assert_eq!(plan.decisions["helmrelease/apps/c"].action, Action::Propose);
    assert_eq!(plan.decisions["helmrelease/apps/a"].action, Action::Hold);
}

fn plan_group(plan: &Plan, id: &str) -> String {
    plan.decisions[id].group.clone().unwrap_or_else(|| {
        // Held decisions carry no group; the slug is the id's.
        id.replace('/', "-")
    })
}

#[test]
fn kind_and_registry_matchers_pick_their_dependencies() {
    let k3s = github_releases("k3s-io/k3s");
    let server = dep("plan/system-upgrade/k3s-server", Component::K3s, "v1.29.4+k3s1");
    let app = dep("helmrelease/apps/app", Component::App, "1.0.0");
    let app_releases = vec![release("1.1.0", "2026-06-01T00:00:00Z"), release("1.0.1", "2026-05-01T00:00:00Z")];
    let case = Case::new(vec![(server.clone(), k3s), (app.clone(), app_releases)]).config(
        "rules:\n  - match: {kind: [plan]}\n    enabled: false\n  - match: {registry: ['https://charts.example.com*']}\n    allow: [patch]\n",
    );
    let plan = case.run();
    assert_eq!(plan.decisions[&server.id].action, Action::Skip, "{}", plan.decisions[&server.id].reason);
    assert!(plan.decisions[&server.id].reason.contains("enabled: false"));
    assert_eq!(
        summary(&plan, &app.id),
        (Action::Propose, Some("1.0.1".into())),
        "the registry rule allows patches only"
    );
}

/// A real git history in a tempdir, written the way upkeep and its verifier write commits.
fn history_repo(commits: &[(&str, i64)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let mut parent: Option<git2::Oid> = None;
    for (message, time) in commits {
        let sig = git2::Signature::new("upkeep", "upkeep@example.com", &git2::Time::new(*time, 0)).unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let parents: Vec<git2::Commit> = parent.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        parent = Some(repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &refs).unwrap());
    }
    dir
}

#[test]
fn memory_from_git_blocks_reverted_versions_and_holds_repeat_offenders() {
    let day = |d: i64| 1_795_000_000 + d * 86_400; // around 2026-11
    let repo = history_repo(&[
        ("chore(deps): update app to 1.1.0\n\nUpkeep-Update: helmrelease/apps/app 1.0.0 -> 1.1.0\n", day(0)),
        ("Revert \"chore(deps): update app to 1.1.0\"\n\nUpkeep-Revert: helmrelease/apps/app 1.1.0\n", day(1)),
        ("chore(deps): update flaky to 2.0.0\n\nUpkeep-Update: helmrelease/apps/flaky 1.0.0 -> 2.0.0\n", day(2)),
        ("Revert\n\nUpkeep-Revert: helmrelease/apps/flaky 2.0.0\n", day(3)),
        ("Revert\n\nUpkeep-Revert: helmrelease/apps/flaky 2.0.1\n", day(4)),
        ("docs: unrelated\n", day(5)),
    ]);
    let events = GitHistory::at(repo.path()).events().unwrap();
    assert_eq!(events.len(), 5);
    let now = Timestamp::from_second(day(6)).unwrap();
    let mut blocked = Case::new(vec![(
        dep("helmrelease/apps/app", Component::App, "1.0.0"),
        vec![release("1.1.0", "2026-01-01T00:00:00Z"), release("1.0.0", "2025-01-01T00:00:00Z")],
    )]);
    blocked.history = History::new(events.clone());
    blocked.now = now;
    let d = blocked.run().decisions["helmrelease/apps/app"].clone();
    assert_eq!(d.action, Action::Blocked);
    assert!(d.reason.contains("1.1.0 (reverted in"), "{}", d.reason);

    // With two of two recent updates reverted, everything non-security pauses...
    let mut newer = Case::new(vec![(
        dep("helmrelease/apps/app", Component::App, "1.0.0"),
        vec![release("1.1.1", "2026-02-01T00:00:00Z"), release("1.1.0", "2026-01-01T00:00:00Z")],
    )]);
    newer.history = History::new(events.clone());
    newer.now = now;
    assert_eq!(summary(&newer.run(), "helmrelease/apps/app"), (Action::Hold, Some("1.1.1".into())));
    // ...and once enough updates went well, the newer version is proposed; the reverted one never.
    let mut healthy = events.clone();
    healthy.extend((0..9).map(|i| Event::Updated {
        dep: format!("helmrelease/apps/ok{i}"),
        from: "1".into(),
        to: "2".into(),
        at: Timestamp::from_second(day(5) + i).unwrap(),
        commit: format!("ok{i}"),
    }));
    newer.history = History::new(healthy);
    assert_eq!(summary(&newer.run(), "helmrelease/apps/app"), (Action::Propose, Some("1.1.1".into())));

    let mut flaky = Case::new(vec![(
        dep("helmrelease/apps/flaky", Component::App, "1.0.0"),
        vec![release("2.0.2", "2026-02-01T00:00:00Z")],
    )]);
    flaky.history = History::new(events);
    flaky.now = now;
    let d = flaky.run().decisions["helmrelease/apps/flaky"].clone();
    assert!(
        d.action == Action::Hold && d.reason.starts_with("held for a human: reverted 2 times in the last 30 days"),
        "{}",
        d.reason
    );
}

#[test]
fn a_high_revert_rate_pauses_everything_but_security() {
    let mut events: Vec<Event> = (0..10)
        .map(|i| Event::Updated {
            dep: format!("helmrelease/apps/d{i}"),
            from: "1".into(),
            to: "2.0.0".into(),
            at: Timestamp::from_second(1_790_000_000 + i).unwrap(),
            commit: format!("u{i}"),
        })
        .collect();
    for i in 0..2 {
        events.push(Event::Reverted {
            dep: format!("helmrelease/apps/d{i}"),
            version: "2.0.0".into(),
            at: Timestamp::from_second(1_790_001_000 + i).unwrap(),
            commit: format!("r{i}"),
        });
    }
    let mut fix = release("1.0.1", "2026-01-01T00:00:00Z");
    fix.signals.push(Signal { kind: SignalKind::Security, detail: "CVE-2026-0001".into() });
    let mut case = Case::new(vec![
        (dep("helmrelease/apps/plain", Component::App, "1.0.0"), vec![release("1.1.0", "2026-01-01T00:00:00Z")]),
        (dep("helmrelease/apps/secure", Component::App, "1.0.0"), vec![fix]),
    ]);
    case.history = History::new(events);
    let plan = case.run();
    assert!(
        plan.notes[0]
            .starts_with("2 of the last 10 upkeep updates failed verification or were reverted (20% of 10 ≥ 20%)"),
        "{:?}",
        plan.notes
    );
    assert_eq!(plan.decisions["helmrelease/apps/plain"].action, Action::Hold);
    assert_eq!(plan.decisions["helmrelease/apps/secure"].action, Action::Propose);
}

#[test]
fn non_versions_and_failed_lookups_are_skipped_with_reasons() {
    let mut case = Case::new(vec![(
        dep("helmrelease/apps/odd", Component::App, "main"),
        vec![release("1.0.0", "2026-01-01T00:00:00Z")],
    )]);
    case.deps.push(dep("helmrelease/apps/down", Component::App, "1.0.0"));
    case.releases.insert("helmrelease/apps/down".into(), Err("https://x/index.yaml: HTTP 503".into()));
    let plan = case.run();
    assert_eq!(plan.decisions["helmrelease/apps/odd"].reason, "`main` is not a version upkeep can compare");
    assert!(
        plan.decisions["helmrelease/apps/down"].reason.starts_with("versions unknown: https://x/index.yaml: HTTP 503")
    );
}

/// Updates are dated by when they reached the default branch: a merge commit dates what it
/// merged; a squash commit that kept the PR description is read through its markers.
#[test]
fn updates_are_dated_by_their_merge_and_read_from_squashed_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let day = |d: i64| 1_795_000_000 + d * 86_400;
    let commit = |message: &str, time: i64, parents: &[git2::Oid], update_ref: Option<&str>| {
        let sig = git2::Signature::new("someone", "someone@example.com", &git2::Time::new(time, 0)).unwrap();
        let tree = repo.find_tree(repo.treebuilder(None).unwrap().write().unwrap()).unwrap();
        let parents: Vec<git2::Commit> = parents.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(update_ref, &sig, &sig, message, &tree, &refs).unwrap()
    };
    let base = commit("initial", day(0), &[], Some("HEAD"));
    let upkeep = commit(
        "chore(deps): update longhorn to 1.5.4\n\nUpkeep-Update: helmrelease/longhorn-system/longhorn 1.4.1 -> 1.5.4\n",
        day(1),
        &[base],
        None,
    );
    let other = commit("docs", day(2), &[base], Some("HEAD"));
    commit("Merge pull request #3 from upkeep/longhorn", day(4), &[other, upkeep], Some("HEAD"));
    let head = repo.head().unwrap().target().unwrap();
    commit(
        "chore(deps): update k3s to v1.30.6+k3s1 (#4)\n\nbody of the PR\n<!-- upkeep-update: plan/system-upgrade/k3s-server v1.29.4+k3s1 -> v1.30.6+k3s1 -->\n",
        day(6),
        &[head],
        Some("HEAD"),
    );
    let history = History::new(GitHistory::at(dir.path()).events().unwrap());
    let (at, _) = history.arrived("helmrelease/longhorn-system/longhorn", "1.5.4").unwrap();
    assert_eq!(at.as_second(), day(4), "dated by the merge, not by the branch commit");
    let (at, _) = history.arrived("plan/system-upgrade/k3s-server", "v1.30.6+k3s1").unwrap();
    assert_eq!(at.as_second(), day(6));
    assert_eq!(history.events().len(), 2);
}

/// A shallow clone hides the trailers memory is made of: the plan says so instead of quietly
/// forgetting reverts.
#[test]
fn a_shallow_clone_is_reported_as_incomplete_memory() {
    let git = std::process::Command::new("git").arg("--version").output();
    assert!(git.is_ok_and(|o| o.status.success()), "this test needs git on PATH (as actions/checkout does)");
    let day = |d: i64| 1_795_000_000 + d * 86_400;
    let full = history_repo(&[
        ("initial", day(0)),
        ("fix: values\n\nUpkeep-Revert: helmrelease/apps/app 2.0.0\n", day(1)),
        ("docs", day(2)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let shallow = dir.path().join("shallow");
    let status = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1"])
        .arg(format!("file://{}", full.path().display()))
        .arg(&shallow)
        .status()
        .unwrap();
    assert!(status.success());
    let (_, note) = upkeep::app::history(&shallow);
    assert!(note.is_some_and(|n| n.contains("fetch-depth: 0")));
    let (memory, note) = upkeep::app::history(full.path());
    assert!(note.is_none());
    assert_eq!(memory.blocked("helmrelease/apps/app").len(), 1, "the full history remembers the revert");
}

#[test]
fn issue_9_two_part_chart_versions_float_unless_the_index_has_them_exactly() {
    let id = "helmrelease/apps/two";
    let index = vec![
        release("1.3.0", "2026-01-03T00:00:00Z"),
        release("1.2.3", "2026-01-02T00:00:00Z"),
        release("1.2.0", "2026-01-01T00:00:00Z"),
    ];
    // No chart is versioned `1.2`: Flux reads it as `~1.2` and installs 1.2.3 on its own.
    let d = Case::new(vec![(dep(id, Component::App, "1.2"), index.clone())]).run().decisions[id].clone();
    assert_eq!(d.action, Action::Skip, "{}", d.reason);
    assert!(d.reason.starts_with("floating-version: `1.2` is a range to Flux"), "{}", d.reason);
    assert!(d.reason.contains("`~1.2` (>=1.2.0 <1.3.0)"), "{}", d.reason);
    // A chart versioned exactly `1.2` is what Flux installs: a pin, updated like any other.
    let mut exact = index;
    exact.push(release("1.2", "2025-12-01T00:00:00Z"));
    let plan = Case::new(vec![(dep(id, Component::App, "1.2"), exact)]).run();
    assert_eq!(summary(&plan, id), (Action::Propose, Some("1.3.0".into())));
}

#[test]
fn issue_9_refused_versions_are_compared_as_versions() {
    let id = "helmrelease/apps/app";
    let mut case = Case::new(vec![(
        dep(id, Component::App, "1.5.3"),
        vec![release("1.5.4", "2026-01-02T00:00:00Z"), release("1.5.3", "2026-01-01T00:00:00Z")],
    )]);
    case.history = History::new(vec![Event::Reverted {
        dep: id.into(),
        version: "v1.5.4".into(),
        at: "2026-11-01T00:00:00Z".parse().unwrap(),
        commit: "0123456789abcdef".into(),
    }]);
    let d = case.run().decisions[id].clone();
    assert_eq!(d.action, Action::Blocked, "`v1.5.4` refused is `1.5.4` refused: {}", d.reason);
}

#[test]
fn issue_9_the_next_step_of_a_chain_counts_from_where_it_started() {
    let id = "helmrelease/longhorn-system/longhorn";
    let step = |from: &str, to: &str, at: &str| Event::Updated {
        dep: id.into(),
        from: from.into(),
        to: to.into(),
        at: at.parse().unwrap(),
        commit: format!("{from}-{to}"),
    };
    // 1.3.3 -> 1.6.0 is three steps; the first one (to 1.4.4) was merged and has soaked.
    let mut case = Case::new(vec![(dep(id, Component::Longhorn, "1.4.4"), longhorn_releases())]);
    case.history = History::new(vec![step("1.3.3", "1.4.4", "2026-11-20T00:00:00Z")]);
    let d = case.run().decisions[id].clone();
    assert_eq!((d.action, d.target.as_deref(), d.step), (Action::Propose, Some("1.5.4"), Some((2, 3))), "{}", d.reason);
    assert!(d.reason.contains("step 2 of 3 towards 1.6.0"), "{}", d.reason);
    // After the second step, the third is the last.
    let mut case = Case::new(vec![(dep(id, Component::Longhorn, "1.5.4"), longhorn_releases())]);
    case.history = History::new(vec![
        step("1.3.3", "1.4.4", "2026-11-10T00:00:00Z"),
        step("1.4.4", "1.5.4", "2026-11-20T00:00:00Z"),
    ]);
    let d = case.run().decisions[id].clone();
    assert_eq!((d.target.as_deref(), d.step), (Some("1.6.0"), Some((3, 3))), "{}", d.reason);
    assert!(d.reason.contains("step 3 of 3 towards 1.6.0: Longhorn refuses to skip a minor, the last step"));
    // An update that went all the way when it merged (nothing newer was out) starts no chain.
    let mut case = Case::new(vec![(dep(id, Component::Longhorn, "1.4.4"), longhorn_releases())]);
    case.history = History::new(vec![step("1.3.3", "1.4.4", "2020-01-01T00:00:00Z")]);
    assert_eq!(case.run().decisions[id].step, Some((1, 2)));
}

#[test]
fn issue_9_an_unreadable_kube_version_is_said_not_ignored() {
    let id = "helmrelease/apps/app";
    let mut odd = release("1.1.0", "2026-01-01T00:00:00Z");
    odd.kube_version = Some("banana".into());
    let plan = Case::new(vec![
        (dep(id, Component::App, "1.0.0"), vec![odd]),
        (dep("plan/system-upgrade/k3s-server", Component::K3s, "v1.30.4+k3s1"), Vec::new()),
    ])
    .run();
    let d = &plan.decisions[id];
    assert_eq!(d.action, Action::Propose);
    assert!(d.reason.contains("1.1.0 declares kubeVersion `banana`, which upkeep cannot read"), "{}", d.reason);
}

#[test]
fn issue_9_oci_tag_versions_are_read_alike_by_scan_and_plan() {
    let id = "helmrelease/apps/oci";
    let tags = vec![release("1.1.0_build.1", "2026-01-02T00:00:00Z"), release("1.0.0_build.1", "2026-01-01T00:00:00Z")];
    let plan = Case::new(vec![(dep(id, Component::App, "1.0.0_build.1"), tags.clone())]).run();
    let available = upkeep::gate::available::available("1.0.0_build.1", &tags);
    let scanned: Vec<&str> = available.updates.iter().map(|u| u.version.as_str()).collect();
    assert_eq!(summary(&plan, id), (Action::Propose, Some("1.1.0_build.1".into())));
    assert_eq!(scanned, ["1.1.0_build.1"], "scan shows the update plan proposes");
}

/// A commit memory cannot read is an error, not a gap: before, a merged branch whose commits
/// could not be walked simply lost their trailers (and a reverted version came back).
#[test]
fn issue_9_git_history_that_cannot_be_walked_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let day = |d: i64| 1_795_000_000 + d * 86_400;
    let commit = |message: &str, time: i64, parents: &[git2::Oid], update_ref: Option<&str>| {
        let sig = git2::Signature::new("someone", "someone@example.com", &git2::Time::new(time, 0)).unwrap();
        let tree = repo.find_tree(repo.treebuilder(None).unwrap().write().unwrap()).unwrap();
        let parents: Vec<git2::Commit> = parents.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(update_ref, &sig, &sig, message, &tree, &refs).unwrap()
    };
    let base = commit("initial", day(0), &[], Some("HEAD"));
    let reverted = commit("Revert\n\nUpkeep-Revert: helmrelease/apps/app 2.0.0\n", day(1), &[base], None);
    let side = commit("fix\n\nUpkeep-Update: helmrelease/apps/app 1.0.0 -> 1.0.1\n", day(2), &[reverted], None);
    commit("Merge branch 'fixes'", day(3), &[base, side], Some("HEAD"));
    assert_eq!(GitHistory::at(dir.path()).events().unwrap().len(), 2);
    // The revert commit's object goes missing (a broken clone, a bad object store).
    let hex = reverted.to_string();
    std::fs::remove_file(dir.path().join(".git/objects").join(&hex[..2]).join(&hex[2..])).unwrap();
    let err = GitHistory::at(dir.path()).events().unwrap_err();
    assert!(err.starts_with("cannot read git history"), "{err}");
    let (memory, note) = upkeep::app::history(dir.path());
    assert!(note.is_some_and(|n| n.contains("git history was not read")));
    assert!(memory.events().is_empty());
}
