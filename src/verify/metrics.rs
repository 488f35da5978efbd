//! The verifier's Prometheus metrics: counted from the records each pass returns and rendered
//! in the text exposition format (0.0.4). Pure: no I/O; `app::listen` serves the text.
//!
//! Counters count what this process decided (a restart starts them at zero, which Prometheus'
//! `increase()` and `rate()` expect); verdicts read back from earlier notes are not counted
//! again. Exactly these series exist, because the Grafana dashboard in `deploy/` is built on
//! them: `upkeep_verifications_total{verdict}`, `upkeep_pending_merges`,
//! `upkeep_reverts_total`, `upkeep_forward_fixes_total`, `upkeep_merge_to_verdict_seconds`
//! (histogram) and `upkeep_last_pass_timestamp_seconds`.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::record::{Action, Record, Word};

/// Upper bounds (seconds) of the merge-to-verdict histogram: a verdict takes the soak (5 min by
/// default) plus Flux's reconciliation, and up to the timeout (15 min) plus soak when it fails
/// late; the long tail is blindness (an unreachable cluster keeps a merge pending for hours).
pub const BUCKETS: [f64; 12] =
    [60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0, 14_400.0, 43_200.0, 86_400.0];

/// How long without a finished pass before `/healthz` says the loop is stuck: a watching loop
/// passes at least every few minutes even when nothing happens.
pub const STALE_AFTER_SECONDS: i64 = 15 * 60;

/// The metrics of one process.
#[derive(Debug, Clone)]
pub struct Metrics {
    started: Timestamp,
    success: u64,
    failure: u64,
    pending: u64,
    reverts: u64,
    forward_fixes: u64,
    /// Cumulative counts, one per entry of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
    last_pass: Option<Timestamp>,
}

impl Metrics {
    /// Zeroed metrics of a process started at `started`.
    pub fn new(started: Timestamp) -> Metrics {
        Metrics {
            started,
            success: 0,
            failure: 0,
            pending: 0,
            reverts: 0,
            forward_fixes: 0,
            buckets: [0; BUCKETS.len()],
            sum: 0.0,
            count: 0,
            last_pass: None,
        }
    }

    /// Count a finished pass: the verdicts it decided (final, decided at or after `started`),
    /// what followed them, and the merges still pending. `merged_at` names when each merge
    /// reached the default branch.
    pub fn record_pass(
        &mut self,
        records: &[Record],
        merged_at: &dyn Fn(&str) -> Option<Timestamp>,
        started: Timestamp,
        finished: Timestamp,
    ) {
        self.pending = records.iter().filter(|r| r.verdict == Word::Pending).count() as u64;
        self.last_pass = Some(finished);
        for r in records {
            let Some(decided) = r.decided_at.filter(|t| *t >= started && r.verdict.is_final()) else { continue };
            match r.verdict {
                Word::Success => self.success += 1,
                _ => self.failure += 1,
            }
            match r.action {
                Action::Revert => self.reverts += 1,
                Action::ForwardFix => self.forward_fixes += 1,
                Action::None => {}
            }
            if let Some(merged) = merged_at(&r.commit) {
                let seconds = (decided.as_millisecond() - merged.as_millisecond()).max(0) as f64 / 1000.0;
                self.observe(seconds);
            }
        }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// `Ok` while the loop is alive: a pass finished (or the process started) within
    /// [`STALE_AFTER_SECONDS`] of `now`; else why not.
    pub fn health(&self, now: Timestamp) -> Result<(), String> {
        let beat = self.last_pass.unwrap_or(self.started);
        let quiet = now.as_second() - beat.as_second();
        if quiet > STALE_AFTER_SECONDS {
            return Err(format!("no verifier pass finished for {quiet}s (last at {beat})"));
        }
        Ok(())
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (series, value) in samples {
                let _ = writeln!(out, "{series} {value}");
            }
        };
        let n = |v: u64| v.to_string();
        family(
            "upkeep_verifications_total",
            "counter",
            "Final verdicts on merged upkeep updates reached by this process, by verdict.",
            &[
                ("upkeep_verifications_total{verdict=\"success\"}".into(), n(self.success)),
                ("upkeep_verifications_total{verdict=\"failure\"}".into(), n(self.failure)),
            ],
        );
        family(
            "upkeep_pending_merges",
            "gauge",
            "Merged upkeep updates without a final verdict after the last pass.",
            &[("upkeep_pending_merges".into(), n(self.pending))],
        );
        family(
            "upkeep_reverts_total",
            "counter",
            "Revert PRs opened for failed updates by this process.",
            &[("upkeep_reverts_total".into(), n(self.reverts))],
        );
        family(
            "upkeep_forward_fixes_total",
            "counter",
            "Forward-fix issues opened for failed updates that cannot be reverted, by this process.",
            &[("upkeep_forward_fixes_total".into(), n(self.forward_fixes))],
        );
        let mut histogram: Vec<(String, String)> = BUCKETS
            .iter()
            .zip(self.buckets.iter())
            .map(|(bound, count)| (format!("upkeep_merge_to_verdict_seconds_bucket{{le=\"{bound}\"}}"), n(*count)))
            .collect();
        histogram.push(("upkeep_merge_to_verdict_seconds_bucket{le=\"+Inf\"}".into(), n(self.count)));
        histogram.push(("upkeep_merge_to_verdict_seconds_sum".into(), format!("{}", self.sum)));
        histogram.push(("upkeep_merge_to_verdict_seconds_count".into(), n(self.count)));
        family(
            "upkeep_merge_to_verdict_seconds",
            "histogram",
            "Seconds from a merge reaching the default branch to its final verdict.",
            &histogram,
        );
        let last = self.last_pass.map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0);
        family(
            "upkeep_last_pass_timestamp_seconds",
            "gauge",
            "Unix time the last verifier pass finished (0 before the first).",
            &[("upkeep_last_pass_timestamp_seconds".into(), format!("{last}"))],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verdict::Progress;

    fn record(commit: &str, verdict: Word, action: Action, decided_at: Option<Timestamp>) -> Record {
        Record {
            commit: commit.into(),
            updates: Vec::new(),
            verdict,
            reason: String::new(),
            evidence: Vec::new(),
            action,
            branch: None,
            pr: None,
            progress: Progress::default(),
            first_seen: None,
            decided_at,
            warnings: Vec::new(),
            notified: None,
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_pass_counts_only_what_it_decided() {
        let mut m = Metrics::new(at(1_000));
        let records = [
            record("a", Word::Success, Action::None, Some(at(1_500))),
            record("b", Word::Failure, Action::Revert, Some(at(1_600))),
            // Read back from an earlier pass's note: not counted again.
            record("c", Word::Failure, Action::ForwardFix, Some(at(900))),
            record("d", Word::Pending, Action::None, None),
        ];
        let merged = |c: &str| match c {
            "a" => Some(at(1_450)),
            "b" => Some(at(1_000)),
            _ => None,
        };
        m.record_pass(&records, &merged, at(1_400), at(1_700));
        let text = m.render();
        assert!(text.contains("upkeep_verifications_total{verdict=\"success\"} 1\n"), "{text}");
        assert!(text.contains("upkeep_verifications_total{verdict=\"failure\"} 1\n"), "{text}");
        assert!(text.contains("upkeep_reverts_total 1\n") && text.contains("upkeep_forward_fixes_total 0\n"));
        assert!(text.contains("upkeep_pending_merges 1\n"), "{text}");
        // 50 s and 600 s: one in the first bucket, both by 600.
        assert!(text.contains("upkeep_merge_to_verdict_seconds_bucket{le=\"60\"} 1\n"), "{text}");
        assert!(text.contains("upkeep_merge_to_verdict_seconds_bucket{le=\"300\"} 1\n"), "{text}");
        assert!(text.contains("upkeep_merge_to_verdict_seconds_bucket{le=\"600\"} 2\n"), "{text}");
        assert!(text.contains("upkeep_merge_to_verdict_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("upkeep_merge_to_verdict_seconds_sum 650\n"), "{text}");
        assert!(text.contains("upkeep_merge_to_verdict_seconds_count 2\n"), "{text}");
        assert!(text.contains("upkeep_last_pass_timestamp_seconds 1700\n"), "{text}");
        // The same records again (the next pass reads the notes back): nothing new.
        m.record_pass(&records, &merged, at(1_800), at(1_900));
        assert!(m.render().contains("upkeep_verifications_total{verdict=\"success\"} 1\n"));
    }

    #[test]
    fn health_goes_stale_without_passes() {
        let mut m = Metrics::new(at(0));
        assert!(m.health(at(60)).is_ok());
        assert!(m.health(at(STALE_AFTER_SECONDS + 1)).is_err());
        m.record_pass(&[], &|_| None, at(2_000), at(2_000));
        assert!(m.health(at(2_000 + STALE_AFTER_SECONDS)).is_ok());
        assert!(m.render().contains("upkeep_last_pass_timestamp_seconds 2000\n"));
    }
}
