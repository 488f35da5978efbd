//! The dependency dashboard's view: open, pending, held, blocked, errored, recently verified
//! and not updatable.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Outcome;
use crate::app::Versions;
use crate::app::history;
use crate::extract::Scan;
use crate::forge::{Forge, PrState, PullRequest};
use crate::gate::{Action, Plan};
use crate::git::Writer;
use crate::render::DashboardView;

pub(super) fn dashboard(
    scan: &Scan,
    versions: &Versions,
    plan: &Plan,
    outcome: &Outcome,
    forge: &dyn Forge,
) -> DashboardView {
    let mut view = DashboardView { notes: plan.notes.clone(), ..DashboardView::default() };
    // PRs that cannot be listed leave the list short, and the dashboard says so.
    let open: Vec<PullRequest> = match forge.upkeep_prs() {
        Ok(prs) => prs.into_iter().filter(|p| p.state == PrState::Open).collect(),
        Err(e) => {
            view.notes.push(format!("upkeep's open PRs could not be listed, so this list may be incomplete: {e}"));
            Vec::new()
        }
    };
    for pr in &open {
        view.open.push(format!("#{} {} (`{}`)", pr.number, pr.title, pr.head));
    }
    let open_heads: BTreeSet<&str> = open.iter().map(|p| p.head.as_str()).collect();
    for (id, x) in &plan.decisions {
        if outcome.held.iter().any(|(held, _)| held == id) {
            continue;
        }
        let line = format!("`{id}`: {}", x.reason);
        match x.action {
            Action::Propose
                if !x.group.as_ref().is_some_and(|g| open_heads.contains(format!("upkeep/{g}").as_str())) =>
            {
                view.pending.push(line)
            }
            Action::Hold => view.held.push(line),
            Action::Blocked => view.blocked.push(line),
            _ => {}
        }
    }
    view.held.extend(outcome.held.iter().map(|(_, why)| why.clone()));
    view.not_updatable.extend(scan.dependencies.iter().filter_map(|d| {
        d.skip.as_ref().map(|s| {
            format!("`{}` (`{}:{}`): {}", d.id, d.manifest.file, d.manifest.line, s.message.replace(['\n', '\r'], " "))
        })
    }));
    view.errors.extend(scan.errors.iter().map(|e| format!("`{}`: {}", crate::report::error_place(e), e.message)));
    view.errors.extend(versions.failures.iter().map(|f| format!("`{}`: {}: {}", f.id, f.url, f.message)));
    view.errors.extend(outcome.errors.iter().cloned());
    view.platform_chains = super::platform_chain::chains(scan, versions, plan, &open_heads);
    view
}

/// How many verdicts "Recently verified" shows.
pub(super) const RECENTLY_VERIFIED: usize = 10;
/// Merges read for it: few, so a GitHub forge is asked for few statuses per run.
const RECENT_MERGES: usize = 30;

/// Fill "Recently verified" from the same lines as `upkeep history`: the newest final verdicts
/// (verified or failed), with the revert or issue that followed. Dates, not ages, so an
/// unchanged history is an unchanged dashboard.
pub(super) fn recently_verified(writer: &Writer, forge: &dyn Forge, horizon: Duration, view: &mut DashboardView) {
    let found = history::lines(writer, forge, horizon, jiff::Timestamp::now(), RECENT_MERGES);
    let lines = match found {
        Ok((lines, problems)) => {
            view.notes.extend(problems.into_iter().map(|p| format!("recent verdicts: {p}")));
            lines
        }
        Err(e) => {
            view.notes.push(format!("recent verdicts could not be read: {e}"));
            return;
        }
    };
    let done = lines.iter().filter(|l| matches!(l.verdict, history::Verdict::Success | history::Verdict::Failure));
    view.recently_verified = done
        .take(RECENTLY_VERIFIED)
        .map(|l| {
            let word = if l.verdict == history::Verdict::Success { "verified" } else { "**failed**" };
            let follow = history::follow_up(l);
            let follow = if follow.is_empty() { String::new() } else { format!(", {follow}") };
            format!(
                "{} `{}` `{}` {} → {}: {word}{follow}",
                history::date(l.merged_at),
                &l.commit[..l.commit.len().min(12)],
                l.dependency,
                l.from,
                l.to
            )
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::local::LocalForge;

    #[test]
    fn open_prs_that_cannot_be_listed_are_a_note_not_an_empty_list() {
        // A real local forge whose PR record is broken: listing its PRs fails.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("1.json"), "{ not a PR").unwrap_or_else(|e| panic!("{e}"));
        let forge = LocalForge::new(dir.path());
        let view = dashboard(&Scan::default(), &Versions::default(), &Plan::default(), &Outcome::default(), &forge);
        assert!(view.open.is_empty());
        assert!(
            view.notes.iter().any(|n| n.contains("could not be listed") && n.contains("is not a PR record")),
            "{:?}",
            view.notes
        );
    }
}
