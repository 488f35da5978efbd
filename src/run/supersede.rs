//! PRs no change proposes any more: closed on evidence, their branches deleted.

use std::collections::BTreeSet;

use super::{Change, Ctx, Outcome};
use crate::extract::Scan;
use crate::forge::{PrState, PullRequest, markers, retired_markers};
use crate::gate::{Action, Plan};
use crate::git::GitError;

/// Close open upkeep PRs none of whose updates is still proposed or held in their group.
pub(super) fn close_superseded(
    ctx: &Ctx<'_>,
    scan: &Scan,
    changes: &[Change<'_>],
    plan: &Plan,
    prs: &[PullRequest],
    base: git2::Oid,
    outcome: &mut Outcome,
) {
    let live: BTreeSet<String> = changes.iter().map(Change::branch).collect();
    // Without the whole repository in view (a sub-folder scan, a file that failed to parse),
    // a dependency missing from the scan may still exist: only a full, clean scan may say
    // "no longer found".
    let whole_scan = ctx.prefix.is_empty() && scan.errors.is_empty();
    // The verifier's revert PRs are never superseded by updates: a human decides on them.
    let open_updates = prs.iter().filter(|p| p.state == PrState::Open && p.head.starts_with("upkeep/"));
    for pr in open_updates.filter(|p| !p.head.starts_with("upkeep/revert-")) {
        if live.contains(&pr.head) {
            continue;
        }
        let group = pr.head.trim_start_matches("upkeep/");
        // A half-finished close from an earlier run has only retired markers: finish it.
        let updates = match markers(&pr.body) {
            m if m.is_empty() => retired_markers(&pr.body),
            m => m,
        };
        if updates.is_empty() {
            continue;
        }
        // Close only on evidence: every dependency was found and looked up, and none is still
        // proposed or held for this PR. A failed lookup ("versions unknown") proves nothing.
        let keep = updates.iter().any(|(dep, _, _)| match plan.decisions.get(dep) {
            None => !whole_scan,
            Some(x) => {
                !matches!(ctx.versions.releases.get(dep), Some(Ok(_)))
                    || (matches!(x.action, Action::Hold | Action::Propose) && x.group.as_deref() == Some(group))
                    || (x.action == Action::Hold && x.group.is_none())
            }
        });
        if keep {
            continue;
        }
        let why = updates
            .iter()
            .map(|(dep, _, _)| {
                format!("{dep}: {}", plan.decisions.get(dep).map_or("no longer found", |x| x.reason.as_str()))
            })
            .collect::<Vec<_>>()
            .join("; ");
        // Closed by upkeep is not "refused by a maintainer": retire the markers first so the
        // versions stay proposable (in the PR that replaces this one).
        let retired = pr.body.replace("<!-- upkeep-update: ", "<!-- upkeep-superseded: ");
        let closed = ctx
            .forge
            .update(pr.number, &pr.title, &retired, &[])
            .and_then(|()| ctx.forge.close(pr.number, &format!("Superseded, closing: {why}")));
        match closed {
            Ok(()) => {
                outcome.closed.push(pr.head.clone());
                if let Err(e) = delete_superseded_branch(ctx, &pr.head, base) {
                    outcome.errors.push(format!("{}: closed, but its branch stays: {e}", pr.head));
                }
            }
            Err(e) => outcome.errors.push(format!("{}: {e}", pr.head)),
        }
    }
}

/// Delete the branch of a PR upkeep closed, as Renovate does, unless someone else committed
/// to it; remote first (under a lease), then the local mirror.
fn delete_superseded_branch(ctx: &Ctx<'_>, branch: &str, base: git2::Oid) -> Result<(), GitError> {
    let tip = match ctx.remote {
        Some(_) => ctx.remote_heads.get(branch).copied(),
        None => ctx.writer.branch_tip(branch),
    };
    let Some(tip) = tip else { return Ok(()) };
    if !ctx.writer.branch_state(tip, base)?.foreign.is_empty() {
        return Ok(()); // someone's work is on it: leave it for them
    }
    if let Some(remote) = ctx.remote {
        ctx.writer.delete_remote_branch(remote, branch, tip, ctx.token)?;
    }
    match ctx.writer.branch_tip(branch) {
        Some(local) => ctx.writer.delete_branch(branch, local),
        None => Ok(()),
    }
}
