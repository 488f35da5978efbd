//! The verdict record: what `upkeep verify` concluded about one merge, in the shape of the JSON
//! contract (`upkeep verify --format json`), plus what the next pass needs to go on (progress,
//! first sighting). It is written as a git note on the merge (`refs/notes/upkeep`), read back
//! by the next pass and by the gate, and shown on GitHub as the `upkeep/verify` status.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::verdict::{Progress, Row};
use crate::gate::history::Event;

/// The status context upkeep writes on merge commits.
pub const STATUS_CONTEXT: &str = "upkeep/verify";

/// One update of a merge, as the JSON contract lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateView {
    /// Dependency id.
    pub id: String,
    /// Display name (chart, `k3s`, `flux`).
    pub name: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
}

/// The verdict's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Word {
    /// Reconciled and healthy.
    Success,
    /// Failed in the cluster.
    Failure,
    /// Not conclusive yet.
    Pending,
    /// Not verified (older than the horizon when first seen).
    Skipped,
}

impl Word {
    /// The word as the JSON contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Word::Success => "success",
            Word::Failure => "failure",
            Word::Pending => "pending",
            Word::Skipped => "skipped",
        }
    }

    /// The word in a sentence for people (statuses, comments): "verified", "failed", ...
    pub fn said(self) -> &'static str {
        match self {
            Word::Success => "verified",
            Word::Failure => "failed",
            Word::Pending => "pending",
            Word::Skipped => "skipped",
        }
    }

    /// Whether nothing more will be done for the merge.
    pub fn is_final(self) -> bool {
        matches!(self, Word::Success | Word::Failure)
    }
}

/// What followed a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing.
    None,
    /// A revert PR.
    Revert,
    /// A forward-fix issue.
    ForwardFix,
}

/// One verification, as the JSON contract has it, plus the fields the next pass needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The merge commit.
    pub commit: String,
    /// What it updated.
    pub updates: Vec<UpdateView>,
    /// The verdict.
    pub verdict: Word,
    /// One line a maintainer can act on.
    pub reason: String,
    /// What shows it.
    pub evidence: Vec<Row>,
    /// What followed.
    pub action: Action,
    /// The revert branch, if any.
    pub branch: Option<String>,
    /// The revert PR or forward-fix issue (number or file), if any.
    pub pr: Option<String>,
    /// Carried between passes: when reconciled, when nudged.
    #[serde(default, skip_serializing_if = "is_default")]
    pub progress: Progress,
    /// When upkeep first saw the merge (the horizon is measured against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
    /// When the verdict became final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// What the maintainer should know that changed no verdict (a Kustomization whose commit
    /// status says nothing about health).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When the failure's webhook notification was delivered (`verify::notify`); absent
    /// while it is owed, so a pass that crashed or met a dead webhook sends it next time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<Timestamp>,
}

fn is_default(p: &Progress) -> bool {
    *p == Progress::default()
}

/// The contract's view of a record: exactly the documented fields.
#[derive(Debug, Serialize)]
pub struct RecordView<'a> {
    commit: &'a str,
    updates: &'a [UpdateView],
    verdict: Word,
    reason: &'a str,
    evidence: &'a [Row],
    action: Action,
    branch: Option<&'a str>,
    pr: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

impl Record {
    /// The JSON contract's view.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            commit: &self.commit,
            updates: &self.updates,
            verdict: self.verdict,
            reason: &self.reason,
            evidence: &self.evidence,
            action: self.action,
            branch: self.branch.as_deref(),
            pr: self.pr.as_deref(),
            warnings: &self.warnings,
        }
    }

    /// The note text: pretty JSON, stable for equal records (so a second pass writes nothing).
    pub fn to_note(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// A record from a note; `None` for a note that is not upkeep's (a human may write one).
    pub fn from_note(text: &str) -> Option<Record> {
        serde_json::from_str(text).ok()
    }

    /// The one-line status description (GitHub caps it at 140 characters).
    pub fn status_description(&self) -> String {
        let line = format!("{}: {}", self.verdict.said(), self.reason.lines().next().unwrap_or(""));
        if line.chars().count() <= 140 {
            return line;
        }
        let mut cut: String = line.chars().take(139).collect();
        cut.push('…');
        cut
    }

    /// What a failed record tells the gate: each updated version failed verification.
    pub fn events(&self) -> Vec<Event> {
        if self.verdict != Word::Failure {
            return Vec::new();
        }
        let at = self.decided_at.or(self.first_seen).unwrap_or(Timestamp::UNIX_EPOCH);
        self.updates
            .iter()
            .map(|u| Event::VerifyFailed { dep: u.id.clone(), version: u.to.clone(), at, commit: self.commit.clone() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verdict: Word) -> Record {
        Record {
            commit: "a".repeat(40),
            updates: vec![UpdateView {
                id: "helmrelease/apps/podinfo".into(),
                name: "podinfo".into(),
                from: "6.0.0".into(),
                to: "6.1.0".into(),
            }],
            verdict,
            reason: "HelmRelease/apps/podinfo Ready UpgradeFailed: ".to_string() + &"x".repeat(300),
            evidence: Vec::new(),
            action: Action::Revert,
            branch: Some("upkeep/revert-aaaaaaaaaaaa".into()),
            pr: Some("1".into()),
            progress: Progress::default(),
            first_seen: None,
            decided_at: Some(Timestamp::UNIX_EPOCH),
            warnings: Vec::new(),
            notified: None,
        }
    }

    #[test]
    fn notes_round_trip_and_the_contract_view_has_exactly_its_fields() {
        let r = record(Word::Failure);
        assert_eq!(Record::from_note(&r.to_note()), Some(r.clone()));
        let v = serde_json::to_value(r.view()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["action", "branch", "commit", "evidence", "pr", "reason", "updates", "verdict"]);
        assert_eq!(v["action"], "revert");
        assert_eq!(Record::from_note("a human's note"), None);
    }

    #[test]
    fn the_status_line_fits_githubs_limit_and_only_failures_block() {
        let r = record(Word::Failure);
        assert_eq!(r.status_description().chars().count(), 140);
        assert!(r.status_description().starts_with("failed: HelmRelease/apps/podinfo"));
        assert_eq!(r.events().len(), 1);
        assert!(record(Word::Success).events().is_empty());
    }
}
