//! The dependency dashboard's view: open, pending, held, blocked, errored and not updatable.

use std::collections::BTreeSet;

use super::Outcome;
use crate::app::Versions;
use crate::extract::Scan;
use crate::forge::{Forge, PrState, PullRequest};
use crate::gate::{Action, Plan};
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
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::{ForgeError, NewPullRequest};

    /// A forge whose PR list cannot be read; nothing else is asked of it here.
    struct Unlistable;

    impl Forge for Unlistable {
        fn name(&self) -> &'static str {
            "unlistable"
        }
        fn upkeep_prs(&self) -> Result<Vec<PullRequest>, ForgeError> {
            Err(ForgeError { forge: "unlistable", message: "HTTP 502 listing pulls".into() })
        }
        fn create(&self, _: &NewPullRequest) -> Result<PullRequest, ForgeError> {
            unimplemented!("not used by the dashboard")
        }
        fn update(&self, _: u64, _: &str, _: &str, _: &[String]) -> Result<(), ForgeError> {
            unimplemented!("not used by the dashboard")
        }
        fn comment(&self, _: u64, _: &str) -> Result<(), ForgeError> {
            unimplemented!("not used by the dashboard")
        }
        fn comments(&self, _: u64) -> Result<Vec<String>, ForgeError> {
            unimplemented!("not used by the dashboard")
        }
        fn close(&self, _: u64, _: &str) -> Result<(), ForgeError> {
            unimplemented!("not used by the dashboard")
        }
        fn dashboard(&self, _: &str, _: &str) -> Result<(), ForgeError> {
            unimplemented!("not used by the dashboard")
        }
        fn writes(&self) -> usize {
            0
        }
    }

    #[test]
    fn open_prs_that_cannot_be_listed_are_a_note_not_an_empty_list() {
        let view =
            dashboard(&Scan::default(), &Versions::default(), &Plan::default(), &Outcome::default(), &Unlistable);
        assert!(view.open.is_empty());
        assert!(
            view.notes.iter().any(|n| n.contains("could not be listed") && n.contains("HTTP 502 listing pulls")),
            "{:?}",
            view.notes
        );
    }
}
