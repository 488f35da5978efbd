//! `upkeep verify --watch`: the verifier as a long-running process (an in-cluster Deployment).
//!
//! The loop is a series of short passes of the ordinary verifier, each one [`Verifier::pass`]
//! with `no_wait`: it records what is conclusive now and leaves the rest pending in its note,
//! so pending merges carry over from pass to pass (and from process to process) exactly as
//! they do between two cron runs. Between passes the loop waits on the cluster: a watch on the
//! Flux GitRepository and on what the pending merges depend on, or the next deadline (end of a
//! soak, a timeout), or at most [`RESYNC`].
//!
//! The checkout: with a remote (`--remote`, or `origin` on the GitHub forge), when Flux's artifact revision changes (and every [`RESYNC`]
//! in case Flux itself is stuck), the checked-out branch is fetched and the checkout
//! fast-forwarded, never anything else: a work tree with uncommitted changes or a branch with
//! commits the remote lacks is verified as it is (`git::Synced::Refused`). An empty or missing
//! PATH is cloned from a `--remote` URL first, so the Deployment needs only an emptyDir.
//!
//! SIGTERM or SIGINT: the pass in flight finishes (its writes — a note, a status, a revert PR —
//! are synchronous and never cut in half; an observation still waiting on the API server after
//! [`SHUTDOWN_GRACE`] is dropped: what it wrote whole stands, what it had not reached keeps its
//! earlier note), the notes are pushed, and the process exits 0. A merge interrupted mid-soak stays pending in its note, with the
//! time it became ready, and the next run resumes the soak from there.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::watch;

use super::AppError;
use super::listen;
use super::verify::{
    Setup, applying, checks_of, dep_infos, merges_since, notify_owed, pass_options, prover, runtime, setup,
    write_report,
};
use crate::cli::VerifyArgs;
use crate::git::{Merge, Synced, clone_into};
use crate::verify::cluster::Cluster;
use crate::verify::kube::KubeOptions;
use crate::verify::metrics::Metrics;
use crate::verify::record::{Record, Word};
use crate::verify::target::{self, Target};
use crate::verify::verdict::Deadlines;
use crate::verify::{Observer, Options, Outcome, Verifier};

/// The longest wait between passes, and between fetches when Flux's revision does not move.
pub const RESYNC: Duration = Duration::from_secs(5 * 60);

/// How long a pass in flight may still take after SIGTERM (Kubernetes' default grace is 30 s;
/// the Deployment in `deploy/` gives 60).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// `upkeep verify --watch` against the cluster.
pub fn watch(args: &VerifyArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    // In the cluster the API is at hand; commit statuses are for runs that cannot reach it.
    if args.evidence == Some(crate::config::EvidenceSource::GithubStatus) {
        return Err(AppError::Flags(
            "--watch runs in the cluster and reads the Kubernetes API: --evidence github-status is for a \
             scheduled `upkeep verify` without cluster access"
                .into(),
        ));
    }
    let options = KubeOptions { kubeconfig: args.kubeconfig.clone(), context: args.context.clone() };
    watch_with(args, async || Cluster::connect(&options).await, out)
}

/// `upkeep verify --watch`, with evidence from `observer`.
pub fn watch_with<O: Observer>(
    args: &VerifyArgs,
    observer: impl AsyncFnOnce() -> O,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty());
    clone_if_empty(&args.path, args.write.remote.as_deref(), token.as_deref())?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let stop = on_signal()?;
        let metrics = Arc::new(Mutex::new(Metrics::new(Timestamp::now())));
        if let Some(addr) = args.listen {
            let (listener, bound) = listen::bind(addr)
                .await
                .map_err(|e| AppError::Environment(format!("--listen {addr}: cannot listen: {e}")))?;
            tracing::info!("serving /healthz and /metrics on http://{bound}");
            tokio::spawn(listen::serve(listener, metrics.clone()));
        }
        let observer = observer().await;
        let mut watcher = Watcher { args, token, observer: &observer, metrics, stop, out, unpushed: false };
        watcher.run().await
    })
}

/// Clone `remote` into `path` when `path` is missing or an empty folder (the Deployment's
/// emptyDir); anything else is left to `Writer::open`.
fn clone_if_empty(path: &Path, remote: Option<&str>, token: Option<&str>) -> Result<(), AppError> {
    let empty = match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => false,
    };
    if !empty {
        return Ok(());
    }
    let url = remote.filter(|r| r.contains('/') || r.contains(':')).ok_or_else(|| {
        AppError::Run(format!(
            "{} is empty: give --remote the repository's URL to clone it there, or check it out first",
            path.display()
        ))
    })?;
    tracing::info!("cloning {} into {}", crate::redact::url(url), path.display());
    // Into a sibling first, renamed into place when complete: a container killed mid-clone
    // must not leave a half repository its restart would refuse. Where no sibling can be
    // written (PATH is the volume's mount point), in place.
    let partial = path.with_extension("upkeep-partial");
    let _ = std::fs::remove_dir_all(&partial);
    if clone_into(url, &partial, token).is_ok() && std::fs::rename(&partial, path).is_ok() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&partial);
    clone_into(url, path, token).map_err(|e| AppError::Run(e.to_string()))
}

/// A watch channel that turns true on SIGTERM or SIGINT.
fn on_signal() -> Result<watch::Receiver<bool>, AppError> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AppError::Environment(format!("cannot handle SIGTERM: {e}")))?;
    tokio::spawn(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping: finishing what is being written");
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Resolves once a stop was asked for (never, if the signal task is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The loop's state.
struct Watcher<'a, O: Observer> {
    args: &'a VerifyArgs,
    token: Option<String>,
    observer: &'a O,
    metrics: listen::Shared,
    stop: watch::Receiver<bool>,
    out: &'a mut dyn Write,
    /// Notes were written and not pushed yet (a failed push is retried after the next pass).
    unpushed: bool,
}

/// What the loop remembers between passes.
#[derive(Default)]
struct Memory {
    revision: Option<String>,
    fetched: Option<Instant>,
    setup: Option<(git2::Oid, Setup)>,
}

impl<O: Observer> Watcher<'_, O> {
    async fn run(&mut self) -> Result<i32, AppError> {
        let mut memory = Memory::default();
        loop {
            if *self.stop.borrow() {
                return Ok(0);
            }
            // The GitRepository to watch is the config's, read from the checkout.
            self.refresh_setup(&mut memory)?;
            // The remote is the setup's: `--remote`, or `origin` for the GitHub forge.
            let source = memory.setup.as_ref().map(|(_, s)| (s.config.verify.git_repository.clone(), s.remote.clone()));
            if let Some((source, Some(remote))) = source {
                self.sync(&mut memory, &source, &remote).await;
                self.refresh_setup(&mut memory)?;
            }
            let Some((_, s)) = memory.setup.as_ref() else { return Ok(0) };
            // The loop waits between passes; in the cluster the API is the evidence.
            let options = pass_options(self.args, s, crate::config::EvidenceSource::Kube, true)?;
            let started = Timestamp::now();
            let merges = self.merges(s, started, &options)?;
            let merged_at: BTreeMap<String, Timestamp> =
                merges.iter().map(|m| (m.commit.clone(), m.merged_at)).collect();
            let mut stop = self.stop.clone();
            let pass = one_pass(s, self.observer, merges.clone(), options.clone());
            tokio::pin!(pass);
            let outcome = tokio::select! {
                outcome = &mut pass => Some(outcome),
                () = stopped(&mut stop) => tokio::time::timeout(SHUTDOWN_GRACE, &mut pass).await.ok(),
            };
            let Some(outcome) = outcome else {
                tracing::warn!(
                    "the pass in flight did not finish within {SHUTDOWN_GRACE:?}; the notes written so far stand"
                );
                // What the dropped pass wrote whole (a verdict and its revert) still goes out.
                self.unpushed = true;
                self.push(s);
                return Ok(0);
            };
            let mut outcome = outcome;
            // Owed webhook notifications go out after their verdict notes, before the push.
            notify_owed(s, &self.args.write, &mut outcome).await;
            for e in &outcome.notify_errors {
                tracing::error!("{e}");
            }
            self.finish(s, &outcome, &merged_at, started)?;
            if *self.stop.borrow() {
                return Ok(0);
            }
            let wake = next_wake(&outcome.records, &merged_at, &options.deadlines, Timestamp::now());
            let targets = self.pending_targets(s, &outcome, &merges, &options);
            let mut stop = self.stop.clone();
            tokio::select! {
                () = self.observer.changed(&targets, wake) => {}
                () = stopped(&mut stop) => return Ok(0),
            }
        }
    }

    /// Fetch and fast-forward when Flux's revision moved, on the first pass, and every
    /// [`RESYNC`]. Without a remote (the local forge and no `--remote`) the checkout is read as
    /// it is: someone else moves it.
    async fn sync(&self, memory: &mut Memory, source: &(String, String), remote: &str) {
        let probe = Target {
            commit: String::new(),
            source: source.clone(),
            releases: Vec::new(),
            chart_sources: Vec::new(),
            files: Vec::new(),
            platform: Vec::new(),
        };
        let revision = self.observer.observe(&probe).await.source.and_then(|s| s.artifact_revision);
        let moved = revision.is_some() && revision != memory.revision;
        let due = memory.fetched.is_none_or(|at| at.elapsed() >= RESYNC);
        if !(moved || due) {
            return;
        }
        memory.revision = revision.or(memory.revision.take());
        memory.fetched = Some(Instant::now());
        let synced = crate::git::Writer::open(&self.args.path, crate::git::Author::default())
            .and_then(|writer| tokio::task::block_in_place(|| writer.fast_forward(remote, self.token.as_deref())));
        match synced {
            Ok(Synced::UpToDate) => {}
            Ok(Synced::Forwarded { from, to }) => tracing::info!("fast-forwarded the checkout {from} → {to}"),
            Ok(Synced::Refused(why)) => tracing::warn!("{why}"),
            Err(e) => tracing::error!("{e}; verifying the checkout as it is"),
        }
    }

    /// Open the repository, config, forge and scan again when HEAD moved (the config and the
    /// dependencies are the checkout's). A broken config merged later is reported and the last
    /// good setup kept: the loop must not crash on a commit it is there to verify.
    fn refresh_setup(&self, memory: &mut Memory) -> Result<(), AppError> {
        let head = git2::Repository::discover(&self.args.path)
            .and_then(|r| r.head().and_then(|h| h.peel_to_commit()).map(|c| c.id()))
            .map_err(|e| AppError::Run(format!("{}: {}", self.args.path.display(), e.message())))?;
        if memory.setup.as_ref().is_some_and(|(at, _)| *at == head) {
            return Ok(());
        }
        match tokio::task::block_in_place(|| setup(&self.args.path, &self.args.write)) {
            Ok(s) => memory.setup = Some((head, s)),
            Err(e) if memory.setup.is_some() => {
                tracing::error!("{e}; verifying with the configuration read before {head}");
                if let Some((at, _)) = memory.setup.as_mut() {
                    *at = head;
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The upkeep merges the pass looks at, after the remote's verdict notes were fetched.
    fn merges(&self, s: &Setup, now: Timestamp, options: &Options) -> Result<Vec<Merge>, AppError> {
        if let Some(remote) = s.remote.as_deref()
            && let Err(e) = tokio::task::block_in_place(|| s.writer.fetch_notes(remote, s.token.as_deref()))
        {
            tracing::error!("{e}");
        }
        merges_since(s, now, options)
    }

    /// Push the notes, report what this pass decided, and count it.
    fn finish(
        &mut self,
        s: &Setup,
        outcome: &Outcome,
        merged_at: &BTreeMap<String, Timestamp>,
        started: Timestamp,
    ) -> Result<(), AppError> {
        self.unpushed |= outcome.wrote;
        self.push(s);
        for e in &outcome.errors {
            tracing::error!("{e}");
        }
        let decided: Vec<Record> = outcome
            .records
            .iter()
            .filter(|r| r.verdict.is_final() && r.decided_at.is_some_and(|t| t >= started))
            .cloned()
            .collect();
        if !decided.is_empty() {
            write_report(&decided, self.args.write.format, self.out)?;
            self.out.flush()?;
        }
        let mut metrics = self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        metrics.record_pass(&outcome.records, &|c| merged_at.get(c).copied(), started, Timestamp::now());
        Ok(())
    }

    /// Push the verdict notes when a pass wrote some since the last push.
    fn push(&mut self, s: &Setup) {
        let Some(remote) = s.remote.as_deref().filter(|_| self.unpushed) else { return };
        let pushed = tokio::task::block_in_place(|| {
            let lease = s.writer.fetch_notes(remote, s.token.as_deref())?;
            s.writer.push_notes(remote, lease, s.token.as_deref())
        });
        match pushed {
            Ok(()) => self.unpushed = false,
            Err(e) => tracing::error!("verdict notes were not pushed (retried after the next pass): {e}"),
        }
    }

    /// What the wait between passes watches: the pending merges' objects, and always the source.
    fn pending_targets(&self, s: &Setup, outcome: &Outcome, merges: &[Merge], options: &Options) -> Vec<Target> {
        let deps = dep_infos(&s.scan, &s.config);
        let mut targets: Vec<Target> = outcome
            .records
            .iter()
            .filter(|r| r.verdict == Word::Pending)
            .filter_map(|r| merges.iter().find(|m| m.commit == r.commit))
            .map(|m| {
                let mut t = target::target(m, &deps, &options.source);
                // What a platform upgrade waits for (nodes, Plans, volumes) is watched too.
                let commit = git2::Oid::from_str(&m.commit).ok();
                let read = |path: &str| s.writer.read(commit?, path).ok().flatten();
                t.platform = crate::verify::platform::targets(m, &deps, &options.source.0, &read);
                t
            })
            .collect();
        if targets.is_empty() {
            targets.push(Target {
                commit: String::new(),
                source: options.source.clone(),
                releases: Vec::new(),
                chart_sources: Vec::new(),
                files: Vec::new(),
                platform: Vec::new(),
            });
        }
        targets
    }
}

/// One pass of the ordinary verifier over `merges`.
async fn one_pass<O: Observer>(s: &Setup, observer: &O, merges: Vec<Merge>, options: Options) -> Outcome {
    let deps = dep_infos(&s.scan, &s.config);
    let prove = prover(&s.writer);
    let actor = s.actor(&prove, s.config.verify.automerge_reverts);
    // The repository's own Flux graph names the Kustomizations that apply a changed file.
    let applying = |file: &str| applying(&s.scan.flux_graph, file);
    // The user's checks of the merged updates (`checks:` in the rules); a check that cannot run
    // keeps its merge pending and is reported.
    let workdir = s.writer.workdir().map(Path::to_path_buf).unwrap_or_default();
    let checks = match checks_of(&s.scan, &s.config, &merges, &workdir) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}; verifying without the checks");
            None
        }
    };
    // A long-running process logs its verdicts; a progress bar redrawn forever would only
    // fill a container's log.
    let progress = crate::progress::Silent;
    let verifier = Verifier {
        observer,
        actor,
        deps: &deps,
        applying: &applying,
        options,
        checks: checks.as_ref(),
        progress: &progress,
    };
    let mut outcome = verifier.pass(merges, Timestamp::now).await;
    outcome.errors.extend(checks.iter().flat_map(|c| c.problems()));
    outcome
}

/// When to pass again without a change in the cluster: at the next deadline of a pending merge
/// (its timeout, the end of its soak, the end of the grace after a nudge), at most [`RESYNC`].
fn next_wake(
    records: &[Record],
    merged_at: &BTreeMap<String, Timestamp>,
    deadlines: &Deadlines,
    now: Timestamp,
) -> Duration {
    let mut next = secs(RESYNC);
    for r in records.iter().filter(|r| r.verdict == Word::Pending) {
        let times = [
            merged_at.get(&r.commit).map(|t| t.as_second() + secs(deadlines.timeout)),
            r.progress.ready_since.map(|t| t.as_second() + secs(deadlines.soak)),
            r.progress.nudged_at.map(|t| t.as_second() + secs(deadlines.nudge_grace)),
        ];
        for left in times.into_iter().flatten().map(|t| t - now.as_second()) {
            if left >= 0 {
                next = next.min(left + 1);
            }
        }
    }
    Duration::from_secs(u64::try_from(next.max(1)).unwrap_or(1))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::record::Action;
    use crate::verify::verdict::Progress;

    fn pending(commit: &str, progress: Progress) -> Record {
        Record {
            commit: commit.into(),
            updates: Vec::new(),
            verdict: Word::Pending,
            reason: String::new(),
            evidence: Vec::new(),
            action: Action::None,
            branch: None,
            pr: None,
            progress,
            first_seen: None,
            decided_at: None,
            warnings: Vec::new(),
            notified: None,
        }
    }

    #[test]
    fn the_loop_wakes_at_the_next_deadline_and_at_most_every_resync() {
        let d = Deadlines {
            timeout: Duration::from_secs(900),
            soak: Duration::from_secs(300),
            nudge_grace: Duration::from_secs(120),
        };
        let now = Timestamp::from_second(10_000).unwrap();
        let merged = BTreeMap::from([("a".to_string(), Timestamp::from_second(9_500).unwrap())]);
        // Nothing pending: the resync interval.
        assert_eq!(next_wake(&[], &merged, &d, now), RESYNC);
        // Soaking since 9,900: the soak ends at 10,200, before the timeout at 10,400.
        let soaking = Progress { ready_since: Some(Timestamp::from_second(9_900).unwrap()), ..Progress::default() };
        assert_eq!(next_wake(&[pending("a", soaking)], &merged, &d, now), Duration::from_secs(201));
        // Waiting for Flux: the timeout at 10,400 is further than the resync interval.
        assert_eq!(next_wake(&[pending("a", Progress::default())], &merged, &d, now), RESYNC);
        // Merged at 9,200: the timeout at 10,100.
        let earlier = BTreeMap::from([("a".to_string(), Timestamp::from_second(9_200).unwrap())]);
        assert_eq!(next_wake(&[pending("a", Progress::default())], &earlier, &d, now), Duration::from_secs(101));
    }
}
