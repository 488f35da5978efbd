//! Webhook notifications of failed verifications (`notify:` in the config): one event per
//! failed merge, as a generic JSON event or a Slack-compatible message, posted with retries.
//!
//! **When.** A merge whose verdict is `failure` owes one notification. Its `event` is the most
//! specific of `revert` (a revert PR was opened), `forward-fix` (an issue was opened) and
//! `failure` (neither: acting failed, or a dry run); `notify.on` lists which of the three are
//! sent, and a failure is sent when any kind it has is listed (`on: [failure]` sends every
//! failure, `on: [forward-fix]` only those that opened an issue).
//!
//! **Once.** The verdict note is written first; the notification is sent after it, and its
//! delivery is then recorded in the same note (`notified`). A crash between the two, or a
//! webhook that is down for the whole pass, leaves the note without `notified`, and the next
//! pass sends it: delivery is at least once, never lost, and a note that says `notified` is
//! never sent again. A failure decided longer ago than the verifier's horizon is not sent
//! late (turning `notify:` on does not replay old failures).
//!
//! **Never in the way.** Delivery happens after the verdict and its revert are written; a
//! delivery that finally fails is an error line, not a changed verdict or exit code.
//!
//! **Secret.** The URL (a Slack webhook URL is a credential) comes from the environment variable
//! the config names, and no message, log line or report ever contains it: errors name the
//! variable instead.

use std::time::Duration;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::record::{Action, Record, Word};
use crate::retry::{self, Signal};

/// The `schema` field of a generic event: bumped only for a change that breaks a reader.
pub const EVENT_SCHEMA: &str = "upkeep.notification/v1";
/// Evidence rows carried by an event; the rest are counted in `evidence_omitted`.
pub const MAX_EVIDENCE: usize = 10;
/// Slack drops a section text longer than 3,000 characters.
const SLACK_SECTION_MAX: usize = 2_900;

/// The payload's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// upkeep's own event (documented in the README): for scripts, Alertmanager-style receivers.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` plus blocks); Mattermost and Discord's
    /// `/slack` endpoint take it too.
    Slack,
}

/// What a failure event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Any failed verification.
    Failure,
    /// A failure that opened a revert PR.
    Revert,
    /// A failure that opened a forward-fix issue.
    ForwardFix,
}

impl Trigger {
    /// As the config and the event spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Failure => "failure",
            Trigger::Revert => "revert",
            Trigger::ForwardFix => "forward-fix",
        }
    }
}

/// `notify:` as checked: where the URL is, what shape, on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The environment variable holding the webhook URL.
    pub url_env: String,
    /// The payload's shape.
    pub format: Format,
    /// Which failures are sent.
    pub on: Vec<Trigger>,
}

impl Settings {
    /// The event a record is sent as, if the settings want it.
    pub fn wants(&self, record: &Record) -> Option<Trigger> {
        let kind = kind_of(record)?;
        (self.on.contains(&Trigger::Failure) || self.on.contains(&kind)).then_some(kind)
    }
}

/// The most specific kind of a failed record; `None` for any other verdict.
pub fn kind_of(record: &Record) -> Option<Trigger> {
    if record.verdict != Word::Failure {
        return None;
    }
    Some(match record.action {
        Action::Revert => Trigger::Revert,
        Action::ForwardFix => Trigger::ForwardFix,
        Action::None => Trigger::Failure,
    })
}

/// Whether a record still owes its notification: failed, not delivered yet, and decided within
/// `horizon` of `now` (older ones are not sent late).
pub fn owed(record: &Record, now: Timestamp, horizon: Duration) -> bool {
    let recent = record.decided_at.is_some_and(|at| {
        now.as_second().saturating_sub(at.as_second()) <= i64::try_from(horizon.as_secs()).unwrap_or(i64::MAX)
    });
    record.verdict == Word::Failure && record.notified.is_none() && recent
}

/// Where a maintainer clicks: the merge and the revert PR or forward-fix issue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The merge commit's page.
    pub merge: Option<String>,
    /// The revert PR's or forward-fix issue's page (or file, on the local forge).
    pub followup: Option<String>,
}

impl Links {
    /// Links on GitHub: `server` is `https://github.com` (or an Enterprise server), `repo` is
    /// `owner/name`.
    pub fn github(server: &str, repo: &str, record: &Record) -> Links {
        let base = format!("{}/{repo}", server.trim_end_matches('/'));
        let followup = record.pr.as_deref().map(|n| match record.action {
            Action::ForwardFix => format!("{base}/issues/{n}"),
            _ => format!("{base}/pull/{n}"),
        });
        Links { merge: Some(format!("{base}/commit/{}", record.commit)), followup }
    }

    /// Links on the local forge: the PR or issue file.
    pub fn local(record: &Record) -> Links {
        let followup = record
            .pr
            .as_deref()
            .map(|p| if p.chars().all(|c| c.is_ascii_digit()) { format!(".upkeep/prs/{p}.md") } else { p.to_string() });
        Links { merge: None, followup }
    }
}

/// The body to post for `record`, sent as `kind`.
pub fn payload(format: Format, record: &Record, kind: Trigger, links: &Links) -> Value {
    match format {
        Format::Json => event(record, kind, links),
        Format::Slack => slack(record, kind, links),
    }
}

/// The generic event: a stable shape, documented in the README.
pub fn event(record: &Record, kind: Trigger, links: &Links) -> Value {
    let shown = record.evidence.len().min(MAX_EVIDENCE);
    json!({
        "schema": EVENT_SCHEMA,
        "id": format!("{}/{}", record.commit, kind.as_str()),
        "event": kind.as_str(),
        "commit": record.commit,
        "updates": record.updates,
        "verdict": record.verdict,
        "reason": record.reason,
        "action": record.action,
        "branch": record.branch,
        "pr": record.pr,
        "evidence": record.evidence[..shown],
        "evidence_omitted": record.evidence.len() - shown,
        "decided_at": record.decided_at.map(|t| t.to_string()),
        "links": {"merge": links.merge, "pr": links.followup},
    })
}

/// One line saying what failed and what upkeep did about it.
pub fn headline(record: &Record, kind: Trigger) -> String {
    let updates: Vec<String> = record.updates.iter().map(|u| format!("{} {} → {}", u.name, u.from, u.to)).collect();
    let what = if updates.is_empty() { format!("the revert {}", short(&record.commit)) } else { updates.join(", ") };
    let label = |p: &str| if p.chars().all(|c| c.is_ascii_digit()) { format!("#{p}") } else { p.to_string() };
    let then = match (kind, record.pr.as_deref()) {
        (Trigger::Revert, Some(pr)) => format!("; upkeep opened revert PR {}", label(pr)),
        (Trigger::ForwardFix, Some(issue)) => format!("; upkeep opened forward-fix issue {}", label(issue)),
        _ => String::new(),
    };
    format!("upkeep: {what} failed verification{then}")
}

/// A Slack incoming-webhook message: `text` (the notification line) and blocks.
pub fn slack(record: &Record, kind: Trigger, links: &Links) -> Value {
    let headline = headline(record, kind);
    // Slack's own escapes are enough: without `<`, text can neither mention nor link.
    let reason = record.reason.replace(['\r', '\n'], " ");
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": cap(&format!("*{}*\n{}", mrkdwn(&headline), mrkdwn(&reason)))},
    })];
    if !record.evidence.is_empty() {
        let mut lines = vec!["*Evidence*".to_string()];
        for r in record.evidence.iter().take(MAX_EVIDENCE) {
            let message = r.message.replace(['\r', '\n'], " ");
            lines.push(format!(
                "• `{}` {}={} {}: {}",
                mrkdwn(&r.object),
                mrkdwn(&r.type_),
                mrkdwn(&r.status),
                mrkdwn(&r.reason),
                mrkdwn(&message)
            ));
        }
        if record.evidence.len() > MAX_EVIDENCE {
            lines.push(format!("… and {} more", record.evidence.len() - MAX_EVIDENCE));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cap(&lines.join("\n"))}}));
    }
    let mut context = Vec::new();
    let merge = short(&record.commit);
    context.push(match &links.merge {
        Some(url) => format!("merge <{url}|{merge}>"),
        None => format!("merge `{merge}`"),
    });
    if let Some(pr) = &links.followup {
        let what = if kind == Trigger::ForwardFix { "forward-fix issue" } else { "revert PR" };
        context.push(if pr.starts_with("http") { format!("{what} <{pr}|open>") } else { format!("{what} `{pr}`") });
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]}));
    json!({"text": headline, "blocks": blocks})
}

/// Slack's mrkdwn escapes: `&`, `<` and `>` (so text cannot forge a link or a mention).
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cap(text: &str) -> String {
    if text.chars().count() <= SLACK_SECTION_MAX {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(SLACK_SECTION_MAX - 1).collect();
    cut.push('…');
    cut
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Why a notification was not delivered. None of these carries the URL.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The variable the config names is not set.
    #[error(
        "notify: the webhook URL variable {0} is not set (or empty); no notification was sent, the next pass tries again"
    )]
    Unset(String),
    /// The variable holds something that is not an http(s) URL.
    #[error("notify: {0} does not hold an http:// or https:// URL; no notification was sent")]
    NotAUrl(String),
    /// The HTTP client could not be built.
    #[error("notify: cannot build the HTTP client: {0}")]
    Client(String),
    /// The webhook did not take the event.
    #[error(
        "notify: the webhook in {var} did not take the event for {commit}: {why}; the verdict stands and the next pass tries again"
    )]
    Delivery {
        /// The variable naming the webhook.
        var: String,
        /// The merge, short.
        commit: String,
        /// What happened (no URL).
        why: String,
    },
}

/// A webhook ready to post to. Its `Debug` never shows the URL.
pub struct Webhook {
    url: String,
    var: String,
    client: reqwest::Client,
    policy: retry::Policy,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &format_args!("${}", self.var)).finish_non_exhaustive()
    }
}

impl Webhook {
    /// The webhook whose URL is in the variable `var` (read through `lookup`, the environment
    /// in production), posting with `policy` and at most `timeout` per attempt.
    pub fn new(
        var: &str,
        lookup: impl Fn(&str) -> Option<String>,
        policy: retry::Policy,
        timeout: Duration,
    ) -> Result<Webhook, NotifyError> {
        let url = lookup(var).map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        let url = url.ok_or_else(|| NotifyError::Unset(var.to_string()))?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(NotifyError::NotAUrl(var.to_string()));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("upkeep/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // A redirect would send the event (and maybe the path's secret) somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Client(crate::lookup::http::describe(&e)))?;
        Ok(Webhook { url, var: var.to_string(), client, policy })
    }

    /// Post `body` for the merge `commit`. 5xx answers, rate limits and lost connections are
    /// retried with backoff: a webhook POST is treated as repeatable, since a lost alert is
    /// worse than a repeated one and the generic event's `id` lets a receiver drop a repeat.
    pub async fn deliver(&self, commit: &str, body: &Value) -> Result<(), NotifyError> {
        let what = format!("webhook ${}", self.var);
        let answer = retry::retrying(&self.policy, true, &what, || async {
            match self.client.post(&self.url).json(body).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (Signal::answer(status, response.headers()), Some(status))
                }
                Err(e) => (Signal::no_answer(crate::lookup::http::describe(&e)), None),
            }
        })
        .await;
        let failed = |why: String| NotifyError::Delivery { var: self.var.clone(), commit: short(commit).into(), why };
        match answer {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => Err(failed(format!("HTTP {status}"))),
            Err(why) => Err(failed(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::record::UpdateView;
    use crate::verify::verdict::{Progress, Row};

    fn failed(action: Action, pr: Option<&str>) -> Record {
        Record {
            commit: "c".repeat(40),
            updates: vec![UpdateView {
                id: "helmrelease/apps/podinfo".into(),
                name: "podinfo".into(),
                from: "6.0.0".into(),
                to: "6.1.0".into(),
            }],
            verdict: Word::Failure,
            reason: "HelmRelease/apps/podinfo Ready=False UpgradeFailed <@U123> & more".into(),
            evidence: (0..12)
                .map(|i| Row {
                    object: format!("Pod/apps/podinfo-{i}"),
                    type_: "Waiting".into(),
                    status: "CrashLoopBackOff".into(),
                    reason: "BackOff".into(),
                    message: "<!channel> back-off".into(),
                })
                .collect(),
            action,
            branch: None,
            pr: pr.map(str::to_string),
            progress: Progress::default(),
            first_seen: None,
            decided_at: Some(Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)),
            warnings: Vec::new(),
            notified: None,
        }
    }

    #[test]
    fn on_lists_kinds_and_failure_covers_them_all() {
        let s = |on: Vec<Trigger>| Settings { url_env: "X".into(), format: Format::Json, on };
        let revert = failed(Action::Revert, Some("3"));
        assert_eq!(s(vec![Trigger::Failure]).wants(&revert), Some(Trigger::Revert));
        assert_eq!(s(vec![Trigger::ForwardFix]).wants(&revert), None);
        assert_eq!(s(vec![Trigger::ForwardFix]).wants(&failed(Action::ForwardFix, None)), Some(Trigger::ForwardFix));
        let mut ok = revert.clone();
        ok.verdict = Word::Success;
        assert_eq!(s(vec![Trigger::Failure]).wants(&ok), None, "only failures are sent");
    }

    #[test]
    fn owed_until_notified_and_only_within_the_horizon() {
        let r = failed(Action::Revert, Some("3"));
        let at = r.decided_at.unwrap_or(Timestamp::UNIX_EPOCH);
        let week = Duration::from_secs(7 * 86_400);
        assert!(owed(&r, at, week));
        let late = Timestamp::from_second(at.as_second() + 8 * 86_400).unwrap_or(at);
        assert!(!owed(&r, late, week), "not replayed after the horizon");
        let mut sent = r.clone();
        sent.notified = Some(at);
        assert!(!owed(&sent, at, week));
    }

    #[test]
    fn slack_text_cannot_mention_or_link_and_evidence_is_capped() {
        let r = failed(Action::Revert, Some("3"));
        let links = Links::github("https://github.com/", "o/r", &r);
        assert_eq!(links.followup.as_deref(), Some("https://github.com/o/r/pull/3"));
        let body = slack(&r, Trigger::Revert, &links).to_string();
        assert!(!body.contains("<@U123>") && !body.contains("<!channel>"), "{body}");
        assert!(body.contains("&lt;@U123&gt; &amp; more"), "{body}");
        assert!(body.contains("… and 2 more"), "{body}");
        assert!(body.contains("<https://github.com/o/r/pull/3|open>"), "{body}");
        let e = event(&r, Trigger::Revert, &links);
        assert_eq!(e["evidence"].as_array().map(Vec::len), Some(MAX_EVIDENCE));
        assert_eq!(e["evidence_omitted"], 2);
        assert_eq!(e["id"], format!("{}/revert", r.commit));
    }

    #[test]
    fn a_url_that_is_missing_or_not_http_names_the_variable_only() {
        let p = retry::Policy {
            retries: 0,
            backoff: Duration::from_millis(1),
            max_wait: Duration::from_secs(1),
            bare_limit_wait: None,
            server: "the webhook",
        };
        let e = Webhook::new("HOOK", |_| None, p.clone(), Duration::from_secs(1)).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("HOOK is not set"), "{e}");
        let e = Webhook::new("HOOK", |_| Some("hooks.slack.com/T0/B0/secret".into()), p, Duration::from_secs(1))
            .unwrap_err();
        assert!(!e.to_string().contains("secret") && e.to_string().contains("HOOK"), "{e}");
    }
}
