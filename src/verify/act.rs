//! Acting on a failed verdict: a revert PR (`git revert` of the merge on the current tip, on
//! branch `upkeep/revert-<12 hex>`, proved like any upkeep edit) or, where a revert is unsafe or
//! impossible, a "Forward fix needed" issue. Both carry the evidence, sanitised: a chart's hooks
//! can write anything into a condition message, and it must not ping, link or break Markdown.

use serde::Serialize;

use super::record::UpdateView;
use super::verdict::Row;
use crate::forge::{Forge, NewPullRequest};
use crate::git::{FileChange, Merge, Update, Writer};
use crate::render::{Renderer, sanitize_inline};

/// The longest evidence message kept in a table cell.
const MESSAGE_MAX: usize = 400;
/// Evidence rows kept (the rest is summarised).
const ROWS_MAX: usize = 40;

/// Proves a revert: given the files it changes (`path`, before, after) and the updates it
/// takes back, checks the dependencies are back at their old versions and nothing else moved.
pub type Prove<'a> = &'a dyn Fn(&[FileChange], &[Update]) -> Result<(), String>;

/// Where and how to act.
pub struct Actor<'a> {
    /// The repository.
    pub writer: &'a Writer,
    /// Where PRs and issues go.
    pub forge: &'a dyn Forge,
    /// Templates.
    pub renderer: &'a Renderer,
    /// The revert proof.
    pub prove: Prove<'a>,
    /// Push revert branches here, if anywhere.
    pub remote: Option<&'a str>,
    /// Token for the push.
    pub token: Option<&'a str>,
    /// Turn on auto-merge for revert PRs.
    pub automerge: bool,
}

/// A revert PR that was opened (or found again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reverted {
    /// The branch.
    pub branch: String,
    /// The PR number.
    pub pr: String,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// A revert PR.
    Revert(Reverted),
    /// A forward-fix issue.
    ForwardFix {
        /// The issue (number or file).
        issue: String,
    },
}

/// A failed merge to act on.
pub struct Failed<'a> {
    /// The merge.
    pub merge: &'a Merge,
    /// Its updates with display names.
    pub updates: &'a [UpdateView],
    /// The verdict's reason.
    pub reason: &'a str,
    /// The evidence rows.
    pub evidence: &'a [Row],
    /// When set, no revert: why (a platform component, a rule, a failed revert).
    pub no_revert: Option<String>,
    /// The merge's way through Flux as a fenced Mermaid diagram, or empty when nothing was
    /// observed (a revert by hand).
    pub timeline: String,
}

#[derive(Serialize)]
struct BodyView {
    merge_short: String,
    original_title: String,
    reason: String,
    updates: Vec<UpdateView>,
    plural: bool,
    evidence: Vec<Row>,
    evidence_note: String,
    pods: Vec<String>,
    why_no_revert: String,
    advice: Vec<String>,
    /// The platform objects of the evidence (nodes, Plans, Longhorn volumes and engine images),
    /// each once, with what is wrong and the command that shows it.
    platform: Vec<String>,
    timeline: String,
}

/// The short form of a commit id used in branch names and messages.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// The branch a revert of `commit` lives on.
pub fn revert_branch(commit: &str) -> String {
    format!("upkeep/revert-{}", short(commit))
}

/// Evidence made safe for a Markdown table: one line, neutralised, capped, no cell breaks.
pub fn sanitize_rows(rows: &[Row]) -> Vec<Row> {
    let cell = |t: &str, max: usize| {
        let mut s: String = sanitize_inline(t).replace('|', "\\|").replace('`', "'");
        if s.chars().count() > max {
            s = s.chars().take(max).collect::<String>() + "…";
        }
        s
    };
    let mut out: Vec<Row> = rows
        .iter()
        .take(ROWS_MAX)
        .map(|r| Row {
            object: cell(&r.object, 200),
            type_: cell(&r.type_, 80),
            status: cell(&r.status, 80),
            reason: cell(&r.reason, 80),
            message: cell(&r.message, MESSAGE_MAX),
        })
        .collect();
    if rows.len() > ROWS_MAX {
        out.push(Row {
            object: "…".into(),
            type_: String::new(),
            status: String::new(),
            reason: String::new(),
            message: format!("{} more rows left out", rows.len() - ROWS_MAX),
        });
    }
    out
}

fn view(f: &Failed<'_>, why_no_revert: &str, title: &str) -> BodyView {
    let evidence = sanitize_rows(f.evidence);
    let pods = evidence
        .iter()
        .filter(|r| r.object.starts_with("Pod/"))
        .map(|r| format!("{}: {} {}", r.object, r.type_, r.reason))
        .collect();
    let platform = platform_objects(&evidence);
    BodyView {
        merge_short: short(&f.merge.commit).to_string(),
        original_title: sanitize_inline(title),
        reason: sanitize_inline(f.reason),
        updates: f.updates.to_vec(),
        plural: f.updates.len() > 1,
        evidence,
        evidence_note: "requested by hand".into(),
        pods,
        why_no_revert: why_no_revert.to_string(),
        advice: advice(f.updates),
        platform,
        timeline: f.timeline.clone(),
    }
}

/// The platform objects among the (sanitised) evidence rows: one line each, naming every problem
/// the rows show for it and the `kubectl` command that shows more.
fn platform_objects(rows: &[Row]) -> Vec<String> {
    let mut objects: Vec<(String, Vec<String>)> = Vec::new();
    for r in rows {
        let Some((kind, rest)) = r.object.split_once('/') else { continue };
        if !matches!(kind, "Node" | "Plan" | "Volume" | "EngineImage") {
            continue;
        }
        let problem = format!("{} {}", r.type_, r.reason).trim().to_string();
        match objects.iter_mut().find(|(o, _)| *o == r.object) {
            Some((_, problems)) => problems.push(problem),
            None => objects.push((format!("{kind}/{rest}"), vec![problem])),
        }
    }
    objects
        .into_iter()
        .map(|(object, problems)| {
            let (kind, rest) = object.split_once('/').unwrap_or((&object, ""));
            let (namespace, name) = rest.split_once('/').unwrap_or(("", rest));
            let command = match kind {
                "Node" => format!("kubectl describe node {name}"),
                "Plan" => format!("kubectl -n {namespace} describe plans.upgrade.cattle.io {name}"),
                "Volume" => format!("kubectl -n {namespace} describe volumes.longhorn.io {name}"),
                _ => format!("kubectl -n {namespace} get engineimages.longhorn.io"),
            };
            format!("`{object}`: {} (`{command}`)", problems.join(", "))
        })
        .collect()
}

/// What a maintainer can try when upkeep will not revert.
fn advice(updates: &[UpdateView]) -> Vec<String> {
    let mut out = Vec::new();
    for u in updates {
        let id = &u.id;
        if id.starts_with("plan/") {
            out.push(format!("k3s cannot be downgraded in place: look at the nodes still on the old version or NotReady (`kubectl get nodes -o wide`), and the Plan's jobs (`kubectl -n system-upgrade get jobs`) for {}.", u.to));
        } else if id.starts_with("flux-components/") || id.starts_with("fluxinstance/") {
            out.push("Flux's CRDs moved with its controllers: fix forward (`flux check`, `flux get all -A --status-selector ready=false`) rather than downgrading the controllers.".into());
        } else if u.name == "longhorn" {
            out.push(format!("Longhorn refuses downgrades: check `kubectl -n longhorn-system get volumes.longhorn.io` for degraded or faulted volumes, and the upgrade notes of {}.", u.to));
        } else {
            out.push(format!("`flux get helmreleases -A` and `kubectl describe helmrelease` for {id}: fix the values or pin {} and let upkeep propose the next release.", u.from));
        }
    }
    out.dedup();
    out
}

impl Actor<'_> {
    /// Revert, or open a forward-fix issue when reverting is unsafe or does not apply.
    pub fn act(&self, f: &Failed<'_>, dry_run: bool) -> Result<Done, String> {
        if let Some(why) = &f.no_revert {
            return self.forward_fix(f, why, dry_run);
        }
        match self.revert(f, dry_run)? {
            Ok(reverted) => Ok(Done::Revert(reverted)),
            Err(conflicts) => {
                let why = format!(
                    "`git revert` of {} does not apply to the current default branch (conflicts in {}): a later commit changed the same lines.",
                    short(&f.merge.commit),
                    conflicts.join(", ")
                );
                self.forward_fix(f, &why, dry_run)
            }
        }
    }

    /// The revert PR; `Ok(Err(files))` when it conflicts.
    pub fn revert(&self, f: &Failed<'_>, dry_run: bool) -> Result<Result<Reverted, Vec<String>>, String> {
        let (base_name, tip) = self.writer.default_branch().map_err(|e| e.to_string())?;
        let tree = match self.writer.revert_tree(&f.merge.commit, tip).map_err(|e| e.to_string())? {
            Ok(tree) => tree,
            Err(conflicts) => return Ok(Err(conflicts)),
        };
        let changes = self.writer.tree_changes(tip, tree).map_err(|e| e.to_string())?;
        if changes.is_empty() {
            return Err(format!(
                "reverting {} changes nothing on {base_name}: it was already undone",
                short(&f.merge.commit)
            ));
        }
        (self.prove)(&changes, &f.merge.updates).map_err(|e| format!("the revert failed its proof: {e}"))?;
        let branch = revert_branch(&f.merge.commit);
        let original = self.original_title(f.merge);
        let title = format!("Revert \"{original}\"");
        if dry_run {
            return Ok(Ok(Reverted { branch, pr: "(dry run)".into() }));
        }
        let commit = self.commit(f, tip, tree, &title)?;
        self.publish(&branch, commit)?;
        let mut body = self.renderer.render("revert-body", &view(f, "", &original)).map_err(|e| e.to_string())?;
        body.push('\n');
        for u in &f.merge.updates {
            body.push_str(&crate::forge::revert_marker(&u.id, &u.to));
            body.push('\n');
        }
        let pr = self
            .forge
            .create(&NewPullRequest {
                head: branch.clone(),
                base: base_name,
                title,
                body,
                labels: vec!["upkeep".into(), "revert".into()],
                reviewers: Vec::new(),
                automerge: self.automerge,
                draft: false,
            })
            .map_err(|e| e.to_string())?;
        Ok(Ok(Reverted { branch, pr: pr.number.to_string() }))
    }

    /// The merged PR's title where the forge knows it, else the subject of the commit that
    /// carried the trailers (a squash adds ` (#12)`, which the PR title does not have).
    fn original_title(&self, merge: &Merge) -> String {
        match self.forge.pr_for_commit(&merge.commit) {
            Ok(Some(pr)) if !pr.title.is_empty() => pr.title,
            _ => merge.title.clone(),
        }
    }

    /// The revert commit on the tip, reusing the branch's commit when it already is that revert.
    fn commit(&self, f: &Failed<'_>, tip: git2::Oid, tree: git2::Oid, title: &str) -> Result<git2::Oid, String> {
        let branch = revert_branch(&f.merge.commit);
        if let Some(existing) = self.writer.branch_tip(&branch)
            && self.writer.tree_and_parent(existing).map_err(|e| e.to_string())? == (tree, Some(tip))
        {
            return Ok(existing);
        }
        let mut message = format!("{title}\n\nThis reverts commit {}.\n\n{}\n\n", f.merge.commit, one_line(f.reason));
        for u in &f.merge.updates {
            message.push_str(&format!("Upkeep-Revert: {} {}\n", u.id, u.to));
        }
        self.writer.commit(tip, tree, &message).map_err(|e| e.to_string())
    }

    /// Point the branch at the commit, locally and on the remote (under a lease).
    fn publish(&self, branch: &str, commit: git2::Oid) -> Result<(), String> {
        match self.remote {
            Some(remote) => {
                let state = self.writer.remote_branches(remote, self.token).map_err(|e| e.to_string())?;
                let expected = state.branches.get(branch).copied();
                if expected != Some(commit) {
                    self.writer.push_commit(remote, branch, commit, expected, self.token).map_err(|e| e.to_string())?;
                }
                self.writer.mirror_branch(branch, commit).map_err(|e| e.to_string())
            }
            None => {
                let current = self.writer.branch_tip(branch);
                if current == Some(commit) {
                    return Ok(());
                }
                self.writer
                    .set_branch(branch, commit, current, "upkeep: revert a failed update")
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The forward-fix issue (found again by its marker, so never opened twice).
    pub fn forward_fix(&self, f: &Failed<'_>, why: &str, dry_run: bool) -> Result<Done, String> {
        let mut names: Vec<String> = Vec::new();
        // Two k3s Plans moved to one version are one k3s upgrade in the title.
        for name in f.updates.iter().map(|u| format!("{} {}", u.name, u.to)) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let title = format!("Forward fix needed: {}", names.join(", "));
        if dry_run {
            return Ok(Done::ForwardFix { issue: "(dry run)".into() });
        }
        let marker = format!("<!-- upkeep-forward-fix: {} -->", f.merge.commit);
        let mut body = self
            .renderer
            .render("forward-fix-body", &view(f, why, &self.original_title(f.merge)))
            .map_err(|e| e.to_string())?;
        body.push('\n');
        body.push_str(&marker);
        body.push('\n');
        let labels = vec!["upkeep".into(), "forward-fix".into()];
        let issue = self.forge.open_issue(&title, &body, &labels, &marker).map_err(|e| e.to_string())?;
        // The contract names an issue by number on a forge, by file on the local one.
        let issue = if self.forge.name() == "local" { issue.url } else { issue.number.to_string() };
        Ok(Done::ForwardFix { issue })
    }
}

fn one_line(text: &str) -> String {
    let line = text.replace(['\n', '\r'], " ");
    line.chars().take(300).collect()
}
