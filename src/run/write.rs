//! Writing one change: edit the files (or regenerate gotk-components.yaml), commit on the
//! default branch's tip, publish the branch under a lease, and open or update its PR.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use super::body::pr_body;
use super::{Change, Ctx, Outcome};
use crate::edit::{Edit, apply};
use crate::forge::{NewPullRequest, PrState, PullRequest};
use crate::gate::Decision;
use crate::git::GitError;
use crate::model::{Dependency, Kind};
use crate::regenerate;

/// Move `branch` from `expected` to `commit`: with a remote, push first (with the lease) and
/// mirror the local branch only once the remote took it, so a failed push leaves nothing
/// behind that a later run would mistake for done; without one, move the local branch with
/// the same lease.
fn publish(ctx: &Ctx<'_>, branch: &str, commit: git2::Oid, expected: Option<git2::Oid>) -> Result<(), GitError> {
    match ctx.remote {
        Some(remote) => {
            ctx.writer.push_commit(remote, branch, commit, expected, ctx.token)?;
            ctx.writer.mirror_branch(branch, commit)
        }
        None => ctx.writer.set_branch(branch, commit, expected, "upkeep: update branch"),
    }
}

/// A regenerated file: its new text and the command that produced it.
pub(super) struct Regenerated {
    pub(super) text: String,
    pub(super) command: String,
}

/// Regenerate the gotk-components file of `d` for the target of `x`, or say why not, with the
/// exact command a maintainer can run instead.
pub(super) fn regenerate_components(
    ctx: &Ctx<'_>,
    base: git2::Oid,
    d: &Dependency,
    x: &Decision,
) -> Result<(String, Regenerated), String> {
    let path = format!("{}{}", ctx.prefix, d.manifest.file);
    let target = x.target.as_deref().unwrap_or("?");
    let current = ctx.writer.read(base, &path).map_err(|e| e.to_string())?.unwrap_or_default();
    let flags = regenerate::install_flags(&current);
    let command = regenerate::command(&flags, &path);
    let held = |why: &str| {
        format!("`{}` is generated, not patched ({why}): with flux {target} on PATH run `{command}` and commit", d.id)
    };
    let Some(flux) = regenerate::find_flux() else {
        return Err(held("no flux CLI on PATH"));
    };
    match regenerate::regenerate(&flux, target, &current, &flags) {
        Ok(text) => Ok((path, Regenerated { text, command })),
        Err(e) => Err(held(&e.0)),
    }
}

/// What a change is written against: the default branch and the forge's PRs.
pub(super) struct Base<'a> {
    /// The default branch's name.
    pub(super) name: &'a str,
    /// Its tip.
    pub(super) commit: git2::Oid,
    /// upkeep's PRs, as the forge listed them at the start of the run.
    pub(super) prs: &'a [PullRequest],
}

/// What the run prepared for a change before writing it.
#[derive(Default)]
pub(super) struct Prepared {
    /// Files regenerated whole (gotk-components.yaml), by path.
    pub(super) whole: BTreeMap<String, Regenerated>,
    /// Digests to pin beside tags, by dependency id.
    pub(super) pins: BTreeMap<String, String>,
}

/// A file as the default branch has it and as the change leaves it.
struct EditedFile {
    path: String,
    before: String,
    after: String,
}

/// Write one change, phase by phase: plan the edits, apply them to the default branch's files,
/// then (unless a dry run only prints the diffs) commit and publish the branch and open or
/// update its PR.
pub(super) fn write_change(
    ctx: &Ctx<'_>,
    change: &Change<'_>,
    prepared: &Prepared,
    base: &Base<'_>,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<Outcome, String> {
    let edits = planned_edits(ctx, change, &prepared.pins)?;
    let files = edited_files(ctx, base, &edits, &prepared.whole)?;
    if dry_run {
        print_diffs(out, change, &files, &prepared.whole).map_err(|e| e.to_string())?;
        return Ok(Outcome::default());
    }
    let mut outcome = Outcome::default();
    let existing_pr = base.prs.iter().find(|p| p.head == change.branch() && p.state == PrState::Open);
    if !commit_to_branch(ctx, change, base, &files, existing_pr, &mut outcome)? {
        return Ok(outcome);
    }
    open_or_update_pr(ctx, change, &prepared.whole, base.name, existing_pr, &mut outcome)?;
    Ok(outcome)
}

/// The span edits of a change, grouped by file (regenerated files are written whole instead).
fn planned_edits(
    ctx: &Ctx<'_>,
    change: &Change<'_>,
    pins: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Vec<Edit>>, String> {
    let mut by_file: BTreeMap<String, Vec<Edit>> = BTreeMap::new();
    for (d, x) in &change.items {
        if d.kind == Kind::FluxComponents {
            continue; // regenerated whole
        }
        let location = d.location.clone().ok_or_else(|| format!("{} has no version location", d.id))?;
        let path = format!("{}{}", ctx.prefix, location.file);
        // A digest pinned beside the tag moves with it: the target tag's digest, from the registry.
        if let Some(pin) = &location.digest {
            let digest = pins.get(&d.id).cloned().ok_or_else(|| format!("{}: no digest was found to pin", d.id))?;
            by_file.entry(path.clone()).or_default().push(Edit {
                dependency: d.id.clone(),
                location: crate::model::Location {
                    span: pin.span.clone(),
                    line: pin.line,
                    column: pin.column,
                    digest: None,
                    ..location.clone()
                },
                from: pin.value.clone(),
                to: digest,
                pin: true,
            });
        }
        let to = written_version(d, x, location.literal_tag);
        by_file.entry(path).or_default().push(Edit {
            pin: false,
            dependency: d.id.clone(),
            location,
            from: d.current.clone().unwrap_or_default(),
            to,
        });
    }
    Ok(by_file)
}

/// The target version as the file should spell it.
fn written_version(d: &Dependency, x: &Decision, literal_tag: bool) -> String {
    let target = x.target.clone().unwrap_or_default();
    match d.kind {
        // A FluxInstance names a Flux release (a tag, `v2.4.0`) in its own spelling; every
        // other version is written exactly as its index or registry names it.
        Kind::FluxInstance => crate::edit::in_style_of(d.current.as_deref().unwrap_or(""), &target),
        // A chart version learned from an OCI tag: Helm writes `+` as `_` in tags only; a chart
        // version field takes the semver (`1.2.3+build.2`), an OCIRepository's tag the tag itself.
        _ if d.package.as_ref().is_some_and(|p| p.datasource == crate::model::Datasource::Oci) && !literal_tag => {
            target.replace('_', "+")
        }
        _ => target,
    }
}

/// Every file the change touches, before and after, starting from the default branch's blobs.
fn edited_files(
    ctx: &Ctx<'_>,
    base: &Base<'_>,
    by_file: &BTreeMap<String, Vec<Edit>>,
    whole: &BTreeMap<String, Regenerated>,
) -> Result<Vec<EditedFile>, String> {
    let read = |path: &str| {
        ctx.writer
            .read(base.commit, path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{path} is not in {}", base.name))
    };
    let mut files = Vec::new();
    for (path, edits) in by_file {
        let before = read(path)?;
        // The scan read the work tree, edits apply to the committed blob: they differ in bytes
        // when git converts line endings (core.autocrlf). Find each version again by its line
        // and column there; the proof in `apply` still checks every byte.
        // The work tree is read only when the blob disagrees with a recorded span.
        let stale = edits.iter().any(|e| before.get(e.location.span.clone()) != Some(e.from.as_str()));
        let worktree =
            stale.then(|| ctx.writer.workdir().and_then(|w| std::fs::read_to_string(w.join(path)).ok())).flatten();
        let edits: Vec<Edit> = edits.iter().map(|e| relocate(&before, worktree.as_deref(), e)).collect();
        let after = apply(path, &before, &edits).map_err(|e| e.to_string())?;
        files.push(EditedFile { path: path.clone(), before, after });
    }
    for (path, regenerated) in whole {
        files.push(EditedFile { path: path.clone(), before: read(path)?, after: regenerated.text.clone() });
    }
    Ok(files)
}

/// A dry run's output: the branch, and the diff of each file.
fn print_diffs(
    out: &mut dyn Write,
    change: &Change<'_>,
    files: &[EditedFile],
    whole: &BTreeMap<String, Regenerated>,
) -> Result<(), Box<dyn std::error::Error>> {
    writeln!(out, "branch {}: {}", change.branch(), change.title())?;
    for f in files {
        let diff = if whole.contains_key(&f.path) {
            crate::git::unified_diff(&f.path, &f.before, &f.after)?
        } else {
            line_diff(&f.path, &f.before, &f.after)
        };
        write!(out, "{diff}")?;
    }
    writeln!(out)?;
    Ok(())
}

/// Commit the files on the change's branch and publish it, unless the branch already holds
/// exactly that, or holds someone else's commits (then say so on the PR and return false).
fn commit_to_branch(
    ctx: &Ctx<'_>,
    change: &Change<'_>,
    base: &Base<'_>,
    files: &[EditedFile],
    existing_pr: Option<&PullRequest>,
    outcome: &mut Outcome,
) -> Result<bool, String> {
    let contents: Vec<(String, String)> = files.iter().map(|f| (f.path.clone(), f.after.clone())).collect();
    let tree = ctx.writer.tree_with(base.commit, &contents).map_err(|e| e.to_string())?;
    let branch = change.branch();
    // Where the branch stands: on the remote when there is one (a CI checkout has no local
    // upkeep branches), else locally.
    let current = match ctx.remote {
        Some(_) => ctx.remote_heads.get(&branch).copied(),
        None => ctx.writer.branch_tip(&branch),
    };
    let Some(current) = current else {
        let commit = ctx.writer.commit(base.commit, tree, &change.message()).map_err(|e| e.to_string())?;
        publish(ctx, &branch, commit, None).map_err(|e| e.to_string())?;
        outcome.branches.push(branch);
        return Ok(true);
    };
    let (t, parent) = ctx.writer.tree_and_parent(current).map_err(|e| e.to_string())?;
    if t == tree && parent == Some(base.commit) {
        if ctx.remote.is_some() {
            ctx.writer.mirror_branch(&branch, current).map_err(|e| e.to_string())?;
        }
        return Ok(true);
    }
    if let Some(note) = foreign_work(ctx, base, &branch, current, existing_pr)? {
        if let Some(pr) = existing_pr
            && !ctx.forge.comments(pr.number).map_err(|e| e.to_string())?.contains(&note)
        {
            ctx.forge.comment(pr.number, &note).map_err(|e| e.to_string())?;
        }
        outcome.foreign.push(branch);
        return Ok(false);
    }
    let commit = ctx.writer.commit(base.commit, tree, &change.message()).map_err(|e| e.to_string())?;
    publish(ctx, &branch, commit, Some(current)).map_err(|e| e.to_string())?;
    outcome.branches.push(branch);
    Ok(true)
}

/// Someone's commits on the branch of an open PR are theirs to keep: the note to leave, if the
/// branch has such commits. A branch left over from a merged or closed PR is upkeep's to start
/// again (its commits stay reachable from that PR). A branch whose PR was never opened
/// (creating it failed) is protected too: no PR refers to the commits someone put on it.
fn foreign_work(
    ctx: &Ctx<'_>,
    base: &Base<'_>,
    branch: &str,
    current: git2::Oid,
    existing_pr: Option<&PullRequest>,
) -> Result<Option<String>, String> {
    let state = ctx.writer.branch_state(current, base.commit).map_err(|e| e.to_string())?;
    let finished = base.prs.iter().any(|p| p.head == branch && p.state != PrState::Open);
    if state.foreign.is_empty() || (existing_pr.is_none() && finished) {
        return Ok(None);
    }
    Ok(Some(format!(
        "upkeep did not update this branch: it has commits upkeep did not write ({}). Rebase or close it yourself; upkeep will not rewrite your work.",
        state.foreign.join(", ")
    )))
}

/// Open the change's PR, or bring an open one's title, body and labels up to date.
fn open_or_update_pr(
    ctx: &Ctx<'_>,
    change: &Change<'_>,
    whole: &BTreeMap<String, Regenerated>,
    base_name: &str,
    existing_pr: Option<&PullRequest>,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let branch = change.branch();
    let title = change.title();
    let body = pr_body(ctx, change, whole).map_err(|e| e.to_string())?;
    let labels: Vec<String> =
        change.items.iter().flat_map(|(_, x)| x.labels.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    if let Some(pr) = existing_pr {
        if pr.title != title || pr.body != body || !labels.iter().all(|l| pr.labels.contains(l)) {
            ctx.forge.update(pr.number, &title, &body, &labels).map_err(|e| e.to_string())?;
            outcome.updated.push(branch);
        }
        return Ok(());
    }
    let reviewers = change
        .items
        .iter()
        .flat_map(|(_, x)| x.reviewers.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ctx.forge
        .create(&NewPullRequest {
            head: branch.clone(),
            base: base_name.to_string(),
            title,
            body,
            labels,
            reviewers,
            automerge: change.items.iter().all(|(_, x)| x.automerge),
            draft: change.items.iter().any(|(_, x)| x.draft),
        })
        .map_err(|e| e.to_string())?;
    outcome.opened.push(branch);
    Ok(())
}

/// A unified-style diff of a version edit (edits never add or remove lines).
fn line_diff(path: &str, before: &str, after: &str) -> String {
    let mut out = format!("--- a/{path}\n+++ b/{path}\n");
    for (i, (a, b)) in before.split_inclusive('\n').zip(after.split_inclusive('\n')).enumerate() {
        if a != b {
            out.push_str(&format!(
                "@@ -{n} +{n} @@\n-{}\n+{}\n",
                a.trim_end_matches(['\n', '\r']),
                b.trim_end_matches(['\n', '\r']),
                n = i + 1
            ));
        }
    }
    out
}

/// `edit` with its span moved to the same line and column of `text` (the committed blob), when
/// the recorded span (from the work tree) does not hold the version there. Only when that line
/// is the work tree's line but for its line ending: a line that differs in content (uncommitted
/// edits) is not the same place, and the edit is left to fail as "the file changed".
fn relocate(text: &str, worktree: Option<&str>, edit: &Edit) -> Edit {
    if text.get(edit.location.span.clone()) == Some(edit.from.as_str()) || edit.from.is_empty() {
        return edit.clone();
    }
    let index = edit.location.line.saturating_sub(1);
    let line_of = |t: &str| t.split_inclusive('\n').nth(index).map(|l| l.trim_end_matches(['\n', '\r']).to_string());
    let (Some(committed), Some(scanned)) = (line_of(text), worktree.and_then(line_of)) else { return edit.clone() };
    if committed != scanned {
        return edit.clone();
    }
    let line_start: usize = text.split_inclusive('\n').take(index).map(str::len).sum();
    let column_bytes: usize = committed.chars().take(edit.location.column.saturating_sub(1)).map(char::len_utf8).sum();
    let start = line_start + column_bytes;
    if text.get(start..start + edit.from.len()) != Some(edit.from.as_str()) {
        return edit.clone();
    }
    let mut moved = edit.clone();
    moved.location.span = start..start + edit.from.len();
    moved
}
