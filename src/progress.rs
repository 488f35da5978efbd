//! What a person sees while long work runs: lookups ("n of m sources") and `verify` (which
//! merge, what it waits for, how long is left). Stages report [`Event`]s to a [`Progress`];
//! they never draw, so they do not depend on the terminal library, and tests read the events
//! from a [`Recorded`].
//!
//! Drawing is [`Bar`] (indicatif) on stderr, and only when stderr is a terminal, `CI` is not
//! set and the output is not JSON: CI logs and machine-read output never get control codes.
//! `UPKEEP_PROGRESS=off` turns it off; `UPKEEP_PROGRESS=log` writes each event as a log line
//! instead (for a terminal-less look at what the bar would say).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// One thing worth showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `done` of `total` distinct sources answered; `source` is the package that just did.
    Lookup {
        /// Sources answered so far.
        done: usize,
        /// Sources asked.
        total: usize,
        /// The package that answered (its name, never a URL: URLs may carry credentials).
        source: String,
    },
    /// A merge under verification, after an observation.
    Verify {
        /// The merge, short.
        merge: String,
        /// What it waits for (the verdict's pending reason, one line).
        waiting_for: String,
        /// Until the deadline it waits against (the timeout, or the end of the soak).
        left: Option<Duration>,
    },
    /// The stage is over: clear what was drawn.
    Finished,
}

/// Where stages report progress. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// Something happened.
    fn event(&self, _event: Event) {}
}

/// Shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

/// Keeps every event, for tests.
#[derive(Debug, Default)]
pub struct Recorded(Mutex<Vec<Event>>);

impl Recorded {
    /// The events so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Progress for Recorded {
    fn event(&self, event: Event) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }
}

/// Each event as an info log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Log;

impl Progress for Log {
    fn event(&self, event: Event) {
        if event != Event::Finished {
            tracing::info!("progress: {}", describe(&event));
        }
    }
}

/// A bar on stderr (indicatif).
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Bar {
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }
}

impl Progress for Bar {
    fn event(&self, event: Event) {
        match &event {
            Event::Lookup { done, total, .. } => {
                self.0.set_length(*total as u64);
                self.0.set_position(*done as u64);
            }
            Event::Verify { .. } => self.0.unset_length(),
            Event::Finished => return self.0.finish_and_clear(),
        }
        self.0.set_message(describe(&event));
    }
}

/// The event in words.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Lookup { done, total, source } => format!("looked up {done} of {total} sources ({source})"),
        Event::Verify { merge, waiting_for, left } => {
            let what: String = waiting_for.chars().filter(|c| !c.is_control()).take(100).collect();
            match left {
                Some(left) => format!("verifying {merge}: {what} ({} left)", human(*left)),
                None => format!("verifying {merge}: {what}"),
            }
        }
        Event::Finished => "done".into(),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m {:02}s", s / 60, s % 60) } else { format!("{s}s") }
}

/// Whether to draw a bar: stderr is a terminal, not in CI, not JSON output.
pub fn should_draw(stderr_is_terminal: bool, ci: Option<&str>, json: bool) -> bool {
    let in_ci = ci.is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    stderr_is_terminal && !in_ci && !json
}

/// Set once stderr carries structured logs (`--log-format json`): no bar from then on.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Never draw a bar in this process (stderr is a JSON log stream).
pub fn quiet() {
    QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The progress for this process: `UPKEEP_PROGRESS` (`off`, `log`), else a bar when
/// [`should_draw`] says so, else nothing.
pub fn for_stderr(json: bool) -> Box<dyn Progress> {
    let json = json || QUIET.load(std::sync::atomic::Ordering::Relaxed);
    match std::env::var("UPKEEP_PROGRESS").as_deref() {
        Ok("off") => Box::new(Silent),
        Ok("log") => Box::new(Log),
        _ => {
            let ci = std::env::var("CI").ok();
            if should_draw(std::io::stderr().is_terminal(), ci.as_deref(), json) {
                Box::new(Bar::new())
            } else {
                Box::new(Silent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_only_on_a_terminal_outside_ci_and_json() {
        assert!(should_draw(true, None, false));
        assert!(should_draw(true, Some("false"), false), "CI=false is not CI");
        assert!(!should_draw(false, None, false), "a pipe or a file");
        assert!(!should_draw(true, Some("true"), false), "GitHub Actions sets CI=true");
        assert!(!should_draw(true, Some("1"), false));
        assert!(!should_draw(true, None, true), "JSON output");
    }

    #[test]
    fn events_read_as_a_person_needs_them() {
        let lookup = Event::Lookup { done: 3, total: 7, source: "ingress-nginx".into() };
        assert_eq!(describe(&lookup), "looked up 3 of 7 sources (ingress-nginx)");
        let verify = Event::Verify {
            merge: "0123456789ab".into(),
            waiting_for: "waiting for Flux:\nGitRepository/flux-system/flux-system\x1b[2J".into(),
            left: Some(Duration::from_secs(754)),
        };
        assert_eq!(
            describe(&verify),
            "verifying 0123456789ab: waiting for Flux:GitRepository/flux-system/flux-system[2J (12m 34s left)"
        );
    }

    #[test]
    fn recorded_keeps_the_order() {
        let r = Recorded::default();
        r.event(Event::Lookup { done: 1, total: 2, source: "a".into() });
        r.event(Event::Finished);
        assert_eq!(r.events().len(), 2);
        assert_eq!(r.events()[1], Event::Finished);
    }
}
