use super::*;

fn status(context: &str, state: StatusState, description: &str) -> CommitStatus {
    CommitStatus {
        context: context.into(),
        state,
        description: description.into(),
        target_url: None,
        created_at: Some(Timestamp::UNIX_EPOCH),
    }
}

fn applier(name: &str, checks_health: bool) -> Applier {
    Applier {
        namespace: Some("flux-system".into()),
        name: name.into(),
        checks_health,
        file: "clusters/home/infrastructure.yaml".into(),
        line: 2,
    }
}

const TIP: &str = "1111111111111111111111111111111111111111";
const MERGE: &str = "2222222222222222222222222222222222222222";

#[test]
fn contexts_are_read_in_notification_controllers_format_only() {
    let c = parse_context("kustomization/apps/0c9c2e41").unwrap();
    assert_eq!((c.kind.as_str(), c.name.as_str(), c.provider.as_deref()), ("kustomization", "apps", Some("0c9c2e41")));
    let legacy = parse_context("kustomization/infra-controllers").unwrap();
    assert_eq!((legacy.name.as_str(), legacy.provider), ("infra-controllers", None), "Flux before v0.37");
    assert_eq!(parse_context("helmrelease/podinfo/0c9c2e41").unwrap().kind, "helmrelease");
    for other in [
        "upkeep/verify",
        "continuous-integration/jenkins",
        "kustomization",
        "kustomization//0c9c2e41",
        "kustomization/apps/0c9c2e41/extra",
        "kustomization/Apps/0c9c2e41",
        "kustomization/apps/not-hex!",
        "Kustomization/apps/0c9c2e41",
        "gitrepository/flux-system/0c9c2e41",
    ] {
        assert_eq!(parse_context(other), None, "{other}");
    }
}

#[test]
fn descriptions_give_back_flux_reasons() {
    assert_eq!(reason_of("health check failed"), "HealthCheckFailed");
    assert_eq!(reason_of("reconciliation succeeded"), "ReconciliationSucceeded");
    assert_eq!(reason_of(""), "");
}

#[test]
fn a_success_on_a_descendant_is_applied_at_that_commit() {
    let commits = vec![
        (
            TIP.to_string(),
            vec![status("kustomization/infrastructure/0c9c2e41", StatusState::Success, "reconciliation succeeded")],
        ),
        (MERGE.to_string(), Vec::new()),
    ];
    let ev = evidence_from(&[applier("infrastructure", true)], &commits);
    let k = &ev.kustomizations[0].object;
    assert_eq!(k.reference(), "Kustomization/flux-system/infrastructure");
    assert_eq!(k.last_applied_revision.as_deref(), Some(format!("sha1:{TIP}").as_str()));
    let ready = k.condition("Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "ReconciliationSucceeded"));
    assert_eq!(ev.statuses, Some(StatusEvidence { commits: 2, flux_statuses: 1 }));
    assert!(ev.warnings.is_empty(), "it waits: {:?}", ev.warnings);
}

#[test]
fn the_newest_status_of_a_context_stands_and_a_failure_carries_its_description() {
    // A failure on the tip after a success on the merge: the cluster is failing now.
    let commits = vec![
        (
            TIP.to_string(),
            vec![status("kustomization/infrastructure/0c9c2e41", StatusState::Failure, "health check failed")],
        ),
        (
            MERGE.to_string(),
            vec![status("kustomization/infrastructure/0c9c2e41", StatusState::Success, "reconciliation succeeded")],
        ),
    ];
    let ev = evidence_from(&[applier("infrastructure", true)], &commits);
    let k = &ev.kustomizations[0].object;
    assert_eq!(k.last_applied_revision, None);
    assert_eq!(k.last_attempted_revision.as_deref(), Some(format!("sha1:{TIP}").as_str()));
    let ready = k.condition("Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "HealthCheckFailed"));
    assert_eq!(
        ready.message,
        "kustomization/infrastructure/0c9c2e41 posted failure on 111111111111: health check failed"
    );

    // And a success on the tip after a failure on the merge: fixed since.
    let mut reversed = commits.clone();
    reversed[0].1[0].state = StatusState::Success;
    reversed[1].1[0].state = StatusState::Failure;
    let ev = evidence_from(&[applier("infrastructure", true)], &reversed);
    assert_eq!(ev.kustomizations[0].object.condition("Ready").unwrap().status, "True");
}

#[test]
fn every_provider_posting_for_a_name_must_succeed_and_others_are_ignored() {
    let commits = vec![(
        TIP.to_string(),
        vec![
            status("kustomization/infrastructure/0c9c2e41", StatusState::Success, "reconciliation succeeded"),
            status("kustomization/infrastructure/7f3a1b22", StatusState::Error, "build failed"),
            status("kustomization/apps/0c9c2e41", StatusState::Failure, "health check failed"),
            status("ci/build", StatusState::Failure, "tests failed"),
            status("upkeep/verify", StatusState::Pending, "pending: waiting"),
        ],
    )];
    let ev = evidence_from(&[applier("infrastructure", true)], &commits);
    let ready = ev.kustomizations[0].object.condition("Ready").unwrap().clone();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "BuildFailed"), "another cluster's failure");
    assert!(ready.message.starts_with("kustomization/infrastructure/7f3a1b22"), "{}", ready.message);
    assert_eq!(ev.statuses.unwrap().flux_statuses, 3, "only Flux's Kustomization statuses count");

    // A provider still pending leaves it unapplied; nothing posted at all too.
    let pending = vec![(
        TIP.to_string(),
        vec![
            status("kustomization/infrastructure/0c9c2e41", StatusState::Success, "reconciliation succeeded"),
            status("kustomization/infrastructure/7f3a1b22", StatusState::Pending, "progressing"),
        ],
    )];
    let ev = evidence_from(&[applier("infrastructure", true), applier("apps", true)], &pending);
    assert!(
        ev.kustomizations.iter().all(|k| k.object.conditions.is_empty() && k.object.last_applied_revision.is_none())
    );
}

#[test]
fn an_applier_without_wait_or_health_checks_is_warned_about() {
    let ev = evidence_from(&[applier("infrastructure", false)], &[]);
    assert_eq!(ev.warnings.len(), 1);
    assert!(ev.warnings[0].starts_with("Kustomization flux-system/infrastructure (clusters/home/infrastructure.yaml:2) has neither `wait: true` nor `healthChecks`"), "{}", ev.warnings[0]);
}
