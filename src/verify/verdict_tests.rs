//! The verdict's rules, one test per rule, on plain values (no I/O).

use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::verify::evidence::{
    Blind, Condition, ContainerState, Evidence, FluxKind, FluxObject, KustomizationState, Pod, Workload, WorkloadKind,
};

/// A moment `s` seconds into the tests' day (shared with the platform rules' tests).
pub(super) fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

/// A condition as controllers write it (shared with the platform rules' tests).
pub(super) fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: None,
    }
}

fn obj(kind: FluxKind, ns: &str, name: &str) -> FluxObject {
    FluxObject {
        generation: Some(2),
        observed_generation: Some(2),
        conditions: vec![cond("Ready", "True", "ReconciliationSucceeded", "ok")],
        ..FluxObject::named(kind, ns, name)
    }
}

fn release(version: &str, ready: Condition) -> FluxObject {
    FluxObject {
        history_chart_version: Some(version.into()),
        conditions: vec![ready],
        ..obj(FluxKind::HelmRelease, "apps", "podinfo")
    }
}

fn exp() -> Expectation {
    Expectation { merged_at: t(0), releases: vec![("apps/podinfo".into(), "6.1.0".into())], platform: Vec::new() }
}

/// Everything reconciled at the merge, HelmRelease at `version` with `ready`.
fn reconciled(version: &str, ready: Condition) -> Evidence {
    Evidence {
        source: Some(FluxObject {
            artifact_revision: Some("main@sha1:abc".into()),
            ..obj(FluxKind::GitRepository, "flux-system", "flux-system")
        }),
        source_has_merge: Some(true),
        kustomizations: vec![KustomizationState {
            object: obj(FluxKind::Kustomization, "flux-system", "apps"),
            applied_merge: Some(true),
            attempted_merge: Some(true),
        }],
        helmreleases: vec![(release(version, ready), "6.1.0".into())],
        workloads: vec![Workload {
            kind: WorkloadKind::Deployment,
            namespace: "apps".into(),
            name: "podinfo".into(),
            release: Some("apps/podinfo".into()),
            generation: Some(3),
            observed_generation: Some(3),
            desired: 2,
            updated: 2,
            ready: 2,
            available: 2,
            images: vec![],
        }],
        ..Evidence::default()
    }
}

fn ready() -> Condition {
    cond("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded")
}

fn d() -> Deadlines {
    Deadlines {
        timeout: Duration::from_secs(900),
        soak: Duration::from_secs(300),
        nudge_grace: Duration::from_secs(120),
    }
}

#[test]
fn reconciled_then_soaked_is_success() {
    let ev = reconciled("6.1.0", ready());
    let (v, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    assert!(matches!(v, Verdict::Pending { blind: false, .. }), "{v:?}");
    assert_eq!(p.ready_since, Some(t(60)));
    let (v, _, _) = decide(&exp(), &ev, &d(), &p, t(359));
    assert!(matches!(v, Verdict::Pending { .. }), "still soaking: {v:?}");
    let (v, _, _) = decide(&exp(), &ev, &d(), &p, t(360));
    assert!(matches!(v, Verdict::Success { .. }), "{v:?}");
}

#[test]
fn upgrade_failed_is_conclusive_at_once() {
    let failed = cond("Ready", "False", "UpgradeFailed", "Helm upgrade failed: timed out waiting for the condition");
    let ev = reconciled("6.1.0", failed);
    let (v, _, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(10));
    let Verdict::Failure { reason, rows } = v else { panic!("{v:?}") };
    assert!(reason.contains("UpgradeFailed"), "{reason}");
    assert_eq!(rows[0].object, "HelmRelease/apps/podinfo");
}

#[test]
fn a_rollback_by_the_cluster_fails_even_though_ready_is_true() {
    let mut hr =
        release("6.0.0", cond("Ready", "True", "RollbackSucceeded", "Helm rollback to previous release succeeded"));
    hr.conditions.push(cond("Remediated", "True", "RollbackSucceeded", "Helm rollback succeeded"));
    hr.last_attempted_revision = Some("6.1.0".into());
    let mut ev = reconciled("6.0.0", ready());
    ev.helmreleases = vec![(hr, "6.1.0".into())];
    let (v, _, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(10));
    let Verdict::Failure { reason, .. } = v else { panic!("{v:?}") };
    assert!(reason.contains("rolled back"), "{reason}");
}

#[test]
fn an_old_failure_before_the_merge_is_applied_is_not_the_merges() {
    let mut ev = reconciled("6.0.0", cond("Ready", "False", "UpgradeFailed", "an older failure"));
    ev.kustomizations[0].applied_merge = Some(false);
    ev.kustomizations[0].attempted_merge = Some(false);
    ev.helmreleases[0].0.observed_generation = Some(1);
    let (v, _, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(10));
    assert!(matches!(v, Verdict::Pending { blind: false, .. }), "{v:?}");
}

#[test]
fn blindness_is_pending_even_past_the_timeout() {
    let mut ev = Evidence::default();
    ev.blind.push(Blind { what: "the API server".into(), reason: "connection refused".into() });
    let (v, _, ask) = decide(&exp(), &ev, &d(), &Progress::default(), t(100_000));
    let Verdict::Pending { blind, reason } = v else { panic!("{v:?}") };
    assert!(blind && reason.contains("connection refused"), "{reason}");
    assert!(!ask.nudge);
}

#[test]
fn a_source_that_never_reaches_the_merge_is_nudged_once_then_fails() {
    let mut ev = reconciled("6.0.0", ready());
    ev.source_has_merge = Some(false);
    let (v, p, ask) = decide(&exp(), &ev, &d(), &Progress::default(), t(100));
    assert!(matches!(v, Verdict::Pending { .. }) && !ask.nudge);
    let (v, p, ask) = decide(&exp(), &ev, &d(), &p, t(901));
    assert!(matches!(v, Verdict::Pending { .. }) && ask.nudge, "{v:?}");
    let (_, p2, ask) = decide(&exp(), &ev, &d(), &p, t(960));
    assert!(!ask.nudge, "nudged once only");
    let (v, _, _) = decide(&exp(), &ev, &d(), &p2, t(1021));
    let Verdict::Failure { reason, .. } = v else { panic!("{v:?}") };
    assert!(reason.contains("has not fetched the merge"), "{reason}");
}

#[test]
fn a_kustomization_stopped_at_an_old_revision_is_named_after_the_timeout() {
    let mut ev = reconciled("6.0.0", ready());
    ev.kustomizations[0].applied_merge = Some(false);
    ev.kustomizations[0].object.last_applied_revision = Some("main@sha1:0ld".into());
    let p = Progress { nudged_at: Some(t(900)), ..Progress::default() };
    let (v, _, _) = decide(&exp(), &ev, &d(), &p, t(2000));
    let Verdict::Failure { reason, .. } = v else { panic!("{v:?}") };
    assert!(reason.contains("Kustomization/flux-system/apps stopped at revision main@sha1:0ld"), "{reason}");
}

#[test]
fn crash_loop_after_ready_fails_during_the_soak() {
    let mut ev = reconciled("6.1.0", ready());
    let (_, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    ev.pods.push(Pod {
        namespace: "apps".into(),
        name: "podinfo-7d9c".into(),
        release: Some("apps/podinfo".into()),
        phase: "Running".into(),
        containers: vec![ContainerState {
            name: "podinfo".into(),
            state: "Waiting".into(),
            reason: Some("CrashLoopBackOff".into()),
            message: Some("back-off 40s restarting failed container".into()),
            restarts: 3,
            ready: false,
            last_terminated_at: Some(t(100)),
        }],
    });
    let (v, _, _) = decide(&exp(), &ev, &d(), &p, t(120));
    let Verdict::Failure { rows, .. } = v else { panic!("{v:?}") };
    assert_eq!(rows[0].reason, "CrashLoopBackOff");
}

#[test]
fn a_restart_during_the_soak_fails_but_one_before_it_does_not() {
    let mut ev = reconciled("6.1.0", ready());
    let restarted = |at: i64| Pod {
        namespace: "apps".into(),
        name: "p".into(),
        release: None,
        phase: "Running".into(),
        containers: vec![ContainerState {
            name: "c".into(),
            state: "Running".into(),
            reason: None,
            message: None,
            restarts: 1,
            ready: true,
            last_terminated_at: Some(t(at)),
        }],
    };
    ev.pods.push(restarted(30));
    let (v, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    assert!(matches!(v, Verdict::Pending { .. }), "a restart before Ready is the rollout: {v:?}");
    ev.pods[0] = restarted(200);
    let (v, _, _) = decide(&exp(), &ev, &d(), &p, t(250));
    assert!(matches!(v, Verdict::Failure { .. }), "{v:?}");
}

#[test]
fn workloads_not_rolled_out_when_the_soak_ends_fail() {
    let mut ev = reconciled("6.1.0", ready());
    ev.workloads[0].ready = 1;
    let (_, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    let (v, _, _) = decide(&exp(), &ev, &d(), &p, t(400));
    let Verdict::Failure { reason, .. } = v else { panic!("{v:?}") };
    assert!(reason.contains("Deployment/apps/podinfo"), "{reason}");
}

#[test]
fn oci_digest_suffix_and_v_prefix_are_the_same_version() {
    assert!(same_version("6.1.0+a1b2c3d4e5f6", "6.1.0"));
    assert!(same_version("v6.1.0", "6.1.0"));
    assert!(!same_version("6.1.01", "6.1.0"));
    assert!(!same_version("6.1.0+a", "6.1.0+b"));
}

#[test]
fn losing_ready_restarts_the_soak() {
    let ev = reconciled("6.1.0", ready());
    let (_, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    let flapping = reconciled("6.1.0", cond("Ready", "Unknown", "Progressing", "reconciling"));
    let (v, p, _) = decide(&exp(), &flapping, &d(), &p, t(200));
    assert!(matches!(v, Verdict::Pending { .. }) && p.ready_since.is_none(), "{v:?}");
}

#[test]
fn an_older_helmrelease_api_reports_its_chart_as_last_applied_revision() {
    let mut hr = release("", ready());
    hr.history_chart_version = None;
    hr.last_applied_revision = Some("6.1.0".into());
    let mut ev = reconciled("6.1.0", ready());
    ev.helmreleases = vec![(hr.clone(), "6.1.0".into())];
    let (v, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    assert!(matches!(v, Verdict::Pending { .. }) && p.ready_since.is_some(), "reconciled: {v:?}");
    hr.last_applied_revision = Some("6.0.0".into());
    ev.helmreleases = vec![(hr, "6.1.0".into())];
    let (v, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    assert!(p.ready_since.is_none(), "still at 6.0.0: {v:?}");
}

fn check(ok: bool, status: Option<u16>, detail: &str) -> crate::verify::evidence::CheckResult {
    crate::verify::evidence::CheckResult {
        name: "http GET https://podinfo.example.com/healthz".into(),
        origin: "upkeep.yaml:7".into(),
        ok,
        status,
        detail: detail.into(),
        attempts: 3,
        at: Some(t(70)),
    }
}

#[test]
fn a_failing_check_during_the_soak_fails_naming_the_check_and_what_it_got() {
    let mut ev = reconciled("6.1.0", ready());
    ev.checks =
        vec![check(true, Some(200), "status 200 OK"), check(false, Some(503), "expected status 200-399, got 503")];
    let (v, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    assert_eq!(p.ready_since, Some(t(60)));
    let Verdict::Failure { reason, rows } = v else { panic!("{v:?}") };
    assert!(reason.contains("check http GET https://podinfo.example.com/healthz failed") && reason.contains("503"));
    assert_eq!(rows.len(), 1, "only the failing check is evidence: {rows:?}");
    assert_eq!((rows[0].type_.as_str(), rows[0].status.as_str()), ("Check", "503"));
    assert!(rows[0].message.contains("3 attempts") && rows[0].message.contains("upkeep.yaml:7"), "{rows:?}");
}

#[test]
fn a_refused_check_has_no_status_and_still_fails() {
    let mut ev = reconciled("6.1.0", ready());
    ev.checks = vec![crate::verify::evidence::CheckResult {
        name: "tcp db:5432".into(),
        ..check(false, None, "connection refused")
    }];
    let (v, _, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    let Verdict::Failure { reason, rows } = v else { panic!("{v:?}") };
    assert!(reason.contains("tcp db:5432") && reason.contains("connection refused"), "{reason}");
    assert_eq!(rows[0].status, "no answer");
}

#[test]
fn passing_checks_let_the_soak_end_in_success_and_a_failing_one_before_reconcile_is_not_counted() {
    let mut ev = reconciled("6.1.0", ready());
    ev.checks = vec![check(true, Some(200), "status 200 OK")];
    let (_, p, _) = decide(&exp(), &ev, &d(), &Progress::default(), t(60));
    let (v, _, _) = decide(&exp(), &ev, &d(), &p, t(360));
    assert!(matches!(v, Verdict::Success { .. }), "{v:?}");
    // Not reconciled yet (the HelmRelease still runs the old chart): a check result says nothing.
    let mut early = reconciled("6.0.0", ready());
    early.checks = vec![check(false, Some(503), "expected status 200-399, got 503")];
    let (v, _, _) = decide(&exp(), &early, &d(), &Progress::default(), t(60));
    assert!(matches!(v, Verdict::Pending { blind: false, .. }), "{v:?}");
}

/// Evidence from commit statuses: one Kustomization, in the state its statuses give.
fn from_statuses(state: Option<Condition>, applied: Option<bool>, flux_statuses: usize) -> Evidence {
    let mut k = FluxObject::named(FluxKind::Kustomization, "flux-system", "infrastructure");
    k.conditions.extend(state);
    Evidence {
        kustomizations: vec![KustomizationState { object: k, applied_merge: applied, attempted_merge: applied }],
        statuses: Some(crate::verify::evidence::StatusEvidence { commits: 2, flux_statuses }),
        ..Evidence::default()
    }
}

fn status_deadlines() -> Deadlines {
    Deadlines { timeout: Duration::from_secs(15 * 60), soak: Duration::from_secs(60), nudge_grace: Duration::ZERO }
}

#[test]
fn with_statuses_a_success_soaks_without_a_source_or_release_in_sight() {
    let ev = from_statuses(Some(cond("Ready", "True", "ReconciliationSucceeded", "posted success")), Some(true), 1);
    let (v, p, _) = decide(&exp(), &ev, &status_deadlines(), &Progress::default(), t(10));
    assert!(matches!(v, Verdict::Pending { .. }), "soaking: {v:?}");
    let (v, _, _) = decide(&exp(), &ev, &status_deadlines(), &p, t(71));
    match v {
        Verdict::Success { reason } => {
            assert!(reason.contains("Kustomization/flux-system/infrastructure posted success"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_statuses_any_failure_reason_is_conclusive() {
    // `SomethingNew` is no failure reason upkeep knows in the cluster; posted as `failure`, it is one.
    let failed = cond("Ready", "False", "ArtifactFailed", "kustomization/infrastructure/0c9c2e41 posted failure");
    for reason in ["HealthCheckFailed", "SomethingNew"] {
        let c = Condition { reason: reason.into(), ..failed.clone() };
        let (v, _, _) =
            decide(&exp(), &from_statuses(Some(c), Some(true), 1), &status_deadlines(), &Progress::default(), t(5));
        assert!(matches!(&v, Verdict::Failure { rows, .. } if rows[0].reason == reason), "{reason}: {v:?}");
    }
    // The same condition read from the cluster with an unknown reason is not conclusive.
    let mut cluster = from_statuses(Some(Condition { reason: "SomethingNew".into(), ..failed }), Some(true), 1);
    cluster.statuses = None;
    let (v, _, _) = decide(&exp(), &cluster, &status_deadlines(), &Progress::default(), t(5));
    assert!(!matches!(v, Verdict::Failure { .. }), "{v:?}");
}

#[test]
fn with_statuses_no_status_at_all_fails_at_the_timeout_naming_the_likely_cause() {
    let ev = from_statuses(None, None, 0);
    let (v, _, ask) = decide(&exp(), &ev, &status_deadlines(), &Progress::default(), t(60));
    assert!(matches!(&v, Verdict::Pending { reason, .. } if reason.contains("has posted no success status")), "{v:?}");
    assert!(!ask.nudge);
    let (v, p, ask) = decide(&exp(), &ev, &status_deadlines(), &Progress::default(), t(15 * 60 + 1));
    assert!(!ask.nudge && p.nudged_at.is_none(), "nothing to nudge, no grace");
    match v {
        Verdict::Failure { reason, rows } => {
            assert_eq!(
                reason,
                "no Flux commit status arrived within 15m: is notification-controller's github Provider/Alert set up?"
            );
            assert_eq!(rows[0].object, "Kustomization/flux-system/infrastructure");
        }
        other => panic!("{other:?}"),
    }
    // Statuses of other Kustomizations arrived: the timeout names the one that stayed silent.
    let (v, _, _) =
        decide(&exp(), &from_statuses(None, None, 3), &status_deadlines(), &Progress::default(), t(15 * 60 + 1));
    assert!(
        matches!(&v, Verdict::Failure { reason, .. } if reason.starts_with("not reconciled 15 min after the merge: Kustomization/flux-system/infrastructure")),
        "{v:?}"
    );
}
