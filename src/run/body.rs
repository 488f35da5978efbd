//! A PR's body: the updates table, release notes between the versions, warnings, and what
//! the verifier will watch after merge.

use std::collections::BTreeMap;

use super::write::Regenerated;
use super::{Change, Ctx, display_name};
use crate::config::EvidenceSource;
use crate::extract::flux_graph::FluxGraph;
use crate::forge::marker;
use crate::gate::versioning::{Version, newest_first};
use crate::model::{Component, Dependency, Kind, SignalKind};
use crate::render::{NOTES_MAX, NotesSection, PrView, UpdateRow, sanitize_inline, sanitize_notes};

/// The release date (a date, not an age: the body must not change from one day to the next).
fn age(published: Option<jiff::Timestamp>) -> String {
    published.map_or_else(|| "-".into(), |p| p.strftime("%Y-%m-%d").to_string())
}

pub(super) fn pr_body(
    ctx: &Ctx<'_>,
    change: &Change<'_>,
    whole: &BTreeMap<String, Regenerated>,
) -> Result<String, crate::render::RenderError> {
    let mut view = PrView {
        updates: Vec::new(),
        plural: change.items.len() > 1,
        warnings: Vec::new(),
        notes: Vec::new(),
        after_merge: Vec::new(),
        security: false,
    };
    for (d, x) in &change.items {
        let from = d.current.clone().unwrap_or_default();
        let to = x.target.clone().unwrap_or_default();
        let releases = match ctx.versions.releases.get(&d.id) {
            Some(Ok(r)) => &r[..],
            _ => &[],
        };
        let between = releases_between(releases, &from, &to);
        let target = releases.iter().find(|r| r.version == to);
        view.updates.push(UpdateRow {
            dependency: d.id.clone(),
            package: if d.kind == Kind::Plan { format!("k3s (Plan {})", d.name) } else { display_name(d) },
            from: from.clone(),
            to: to.clone(),
            update_type: x.update_type.map_or("-", |u| u.as_str()).to_string(),
            age: age(target.and_then(|r| r.published)),
            file: d.location.as_ref().map_or_else(|| d.manifest.file.clone(), |l| format!("{}{}", ctx.prefix, l.file)),
            line: d.line(),
        });
        signal_warnings(&mut view, d, &between);
        if let Some((step, of)) = x.step {
            let why = x
                .reason
                .split("; ")
                .find(|p| p.starts_with("step"))
                .and_then(|p| p.split_once(": "))
                .map_or("", |(_, why)| why);
            view.warnings.push(format!("Upgrade path: step {step} of {of}; {why}"));
        }
        release_notes(&mut view.notes, d, &between);
        if ctx.evidence == EvidenceSource::Kube {
            view.after_merge.extend(after_merge(d, &to));
        }
    }
    for (path, regenerated) in whole {
        view.warnings.push(format!(
            "`{path}` was regenerated with `{}`. The flags were read back from the old file; a bootstrap flag that leaves no trace in it is not carried over, so compare with how you bootstrapped.",
            regenerated.command
        ));
    }
    view.warnings.dedup();
    view.after_merge.extend(what_verify_waits_for(ctx, change));
    view.after_merge.dedup();
    let markers: String = change
        .items
        .iter()
        .map(|(d, x)| {
            format!("{}\n", marker(&d.id, d.current.as_deref().unwrap_or("?"), x.target.as_deref().unwrap_or("?")))
        })
        .collect();
    let mut body = ctx.renderer.render_pr_body(view, markers.chars().count() + 1)?;
    body.push('\n');
    body.push_str(&markers);
    Ok(body)
}

/// The releases after `from` up to and including `to`, newest first (none when either version
/// cannot be read).
fn releases_between<'r>(releases: &'r [crate::model::Release], from: &str, to: &str) -> Vec<&'r crate::model::Release> {
    let (Some(f), Some(t)) = (Version::parse(from), Version::parse(to)) else { return Vec::new() };
    newest_first(releases).into_iter().filter(|(v, _)| *v > f && *v <= t).map(|(_, r)| r).collect()
}

/// Security, breaking-change and deprecation signals of the releases the update crosses.
fn signal_warnings(view: &mut PrView, d: &Dependency, between: &[&crate::model::Release]) {
    for r in between {
        for s in &r.signals {
            let what = match s.kind {
                SignalKind::Security => {
                    view.security = true;
                    "Security"
                }
                SignalKind::Breaking => "Breaking change",
                SignalKind::Deprecated => "Deprecated",
                SignalKind::KubeVersion => continue,
            };
            view.warnings.push(format!("{what} ({} {}): {}", display_name(d), r.version, sanitize_inline(&s.detail)));
        }
    }
}

/// Sanitised release notes of the newest five releases crossed, each version once.
fn release_notes(notes: &mut Vec<NotesSection>, d: &Dependency, between: &[&crate::model::Release]) {
    for r in between.iter().take(5) {
        if notes.iter().any(|n| n.dependency == display_name(d) && n.version == r.version) {
            continue;
        }
        if let Some(text) = &r.notes {
            notes.push(NotesSection {
                dependency: display_name(d),
                version: r.version.clone(),
                // A release page, not a chart archive (a Helm index's `urls[0]` is the .tgz).
                url: r
                    .url
                    .clone()
                    .filter(|u| u.starts_with("https://") && !u.ends_with(".tgz") && !u.contains(['"', '<', '>'])),
                body: sanitize_notes(text, NOTES_MAX, r.url.as_deref()),
            });
        }
    }
}

/// The closing "after merge" lines: what the verifier waits for, by its evidence.
fn what_verify_waits_for(ctx: &Ctx<'_>, change: &Change<'_>) -> Vec<String> {
    match ctx.evidence {
        EvidenceSource::Kube => vec![
            "Flux's GitRepository reports an artifact revision that contains the merge commit, and the Kustomizations that apply the changed files become Ready at it.".into(),
            format!(
                "Then a soak period of workload health (Deployments, StatefulSets and DaemonSets ready, no crash loops). {}",
                on_failure(change)
            ),
        ],
        EvidenceSource::GithubStatus => status_after_merge(ctx.graph, change),
    }
}

/// What the verifier waits for when its evidence is Flux's commit statuses: the Kustomizations
/// that apply each changed file, with a warning for those whose status says nothing about health
/// and for files no Kustomization applies (then nothing can be verified).
fn status_after_merge(graph: &FluxGraph, change: &Change<'_>) -> Vec<String> {
    let mut lines = vec!["upkeep reads the commit statuses Flux's notification-controller posts on the merge commit and later commits (`verify.evidence: github-status`): a `failure` fails the update, and so does no status within the timeout.".to_string()];
    let mut warnings = Vec::new();
    for (d, x) in &change.items {
        let file = d.file();
        let appliers = graph.kustomizations_applying(file);
        if appliers.is_empty() {
            warnings.push(format!(
                "⚠️ No Flux Kustomization in this repository applies `{file}`: with commit statuses as evidence upkeep cannot verify this update, and its merge stays pending."
            ));
        }
        let what = match d.kind {
            Kind::HelmRelease => format!(
                "HelmRelease {}/{} became Ready at chart {}",
                d.namespace.as_deref().unwrap_or("-"),
                d.name,
                x.target.as_deref().unwrap_or("?")
            ),
            _ => format!("{} {} runs {}", d.kind.as_str(), d.name, x.target.as_deref().unwrap_or("?")),
        };
        for k in appliers {
            let name = format!("{}/{}", k.namespace.as_deref().unwrap_or("*"), k.name);
            lines.push(format!(
                "Kustomization {name} posts `success` (context `kustomization/{}/…`) on the merge commit or a later one.",
                k.name
            ));
            if !k.checks_health() {
                warnings.push(format!(
                    "⚠️ Kustomization {name} (`{}:{}`) has neither `wait: true` nor `healthChecks`: its commit status says its manifests were applied, not that {what}. Add `wait: true` so that its status covers it.",
                    k.file, k.line
                ));
            }
        }
    }
    lines.push(format!("Then a soak period during which none of them posts a failure. {}", on_failure(change)));
    lines.extend(warnings);
    lines
}

/// What a failed verification of this PR brings: a revert where one is safe, else an issue.
fn on_failure(change: &Change<'_>) -> String {
    let platform: Vec<&str> = change
        .items
        .iter()
        .filter_map(|(d, _)| match d.component {
            Component::Longhorn => Some("Longhorn refuses downgrades"),
            Component::Flux => Some("Flux's controllers and CRDs are not downgraded safely"),
            Component::K3s => Some("k3s is not downgraded in place"),
            Component::App => None,
        })
        .collect();
    if let Some(why) = platform.first() {
        return format!(
            "If anything fails, upkeep does **not** revert ({why}): it opens a \"Forward fix needed\" issue with the evidence."
        );
    }
    if change.items.iter().any(|(_, x)| x.on_failure_issue) {
        return "If anything fails, upkeep opens a \"Forward fix needed\" issue with the evidence (this repository's `onFailure: issue`), not a revert.".into();
    }
    "If anything fails, upkeep opens a revert PR with the evidence, and the failed version is not proposed again."
        .into()
}

fn after_merge(d: &Dependency, to: &str) -> Vec<String> {
    let ns = d.namespace.as_deref().unwrap_or("-");
    match d.component {
        Component::K3s => vec![format!(
            "The system-upgrade-controller Plan {ns}/{} reaches Complete and its nodes report k3s {to} and Ready.",
            d.name
        )],
        Component::Longhorn => vec![
            format!("HelmRelease {ns}/{} reports Ready with chart {to} at the top of its history.", d.name),
            "Longhorn volumes stay healthy (no degraded or faulted volumes).".into(),
        ],
        Component::Flux => vec![
            "Every Flux controller reports the new version and all Kustomizations and HelmReleases return to Ready."
                .into(),
        ],
        Component::App => match d.kind {
            Kind::HelmRelease => vec![format!(
                "HelmRelease {ns}/{} reports Ready (UpgradeSucceeded) with chart {to} at the top of its history.",
                d.name
            )],
            _ => {
                vec![format!("{} {ns}/{} serves {to} and everything that uses it reconciles.", d.kind.as_str(), d.name)]
            }
        },
    }
}
