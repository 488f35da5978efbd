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
            Some(Ok(r)) => r.as_slice(),
            _ => &[],
        };
        let (vf, vt) = (Version::parse(&from), Version::parse(&to));
        let between: Vec<&crate::model::Release> = newest_first(releases)
            .into_iter()
            .filter(|(v, _)| match (&vf, &vt) {
                (Some(f), Some(t)) => v > f && v <= t,
                _ => false,
            })
            .map(|(_, r)| r)
            .collect();
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
        for r in &between {
            for s in &r.signals {
                match s.kind {
                    SignalKind::Security => {
                        view.security = true;
                        view.warnings.push(format!(
                            "Security ({} {}): {}",
                            display_name(d),
                            r.version,
                            sanitize_inline(&s.detail)
                        ));
                    }
                    SignalKind::Breaking => view.warnings.push(format!(
                        "Breaking change ({} {}): {}",
                        display_name(d),
                        r.version,
                        sanitize_inline(&s.detail)
                    )),
                    SignalKind::Deprecated => view.warnings.push(format!(
                        "Deprecated ({} {}): {}",
                        display_name(d),
                        r.version,
                        sanitize_inline(&s.detail)
                    )),
                    SignalKind::KubeVersion => {}
                }
            }
        }
        if let Some((step, of)) = x.step {
            let why = x
                .reason
                .split("; ")
                .find(|p| p.starts_with("step"))
                .and_then(|p| p.split_once(": "))
                .map_or("", |(_, why)| why);
            view.warnings.push(format!("Upgrade path: step {step} of {of}; {why}"));
        }
        for r in between.iter().take(5) {
            if view.notes.iter().any(|n| n.dependency == display_name(d) && n.version == r.version) {
                continue;
            }
            if let Some(notes) = &r.notes {
                view.notes.push(NotesSection {
                    dependency: display_name(d),
                    version: r.version.clone(),
                    // A release page, not a chart archive (a Helm index's `urls[0]` is the .tgz).
                    url: r
                        .url
                        .clone()
                        .filter(|u| u.starts_with("https://") && !u.ends_with(".tgz") && !u.contains(['"', '<', '>'])),
                    body: sanitize_notes(notes, NOTES_MAX, r.url.as_deref()),
                });
            }
        }
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
    match ctx.evidence {
        EvidenceSource::Kube => {
            view.after_merge.push("Flux's GitRepository reports an artifact revision that contains the merge commit, and the Kustomizations that apply the changed files become Ready at it.".into());
            view.after_merge.push(format!(
                "Then a soak period of workload health (Deployments, StatefulSets and DaemonSets ready, no crash loops). {}",
                on_failure(change)
            ));
        }
        EvidenceSource::GithubStatus => view.after_merge.extend(status_after_merge(ctx.graph, change)),
    }
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
