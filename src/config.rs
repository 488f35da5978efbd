//! The repository's upkeep config: `.github/upkeep.yaml` or `upkeep.yaml` at the root (the
//! first found; `--config` overrides). Raw serde types are deserialized strictly (unknown keys
//! are errors with file, line and column) and then checked once into [`Config`].
//!
//! ```yaml
//! maxOpenPRs: 10               # upkeep PRs open at once (security first, then patch, minor, major)
//! timezone: Europe/Berlin      # default zone of schedules (UTC otherwise)
//! memory:                      # what reverts mean (defaults shown)
//!   revertWindow: 30d
//!   stepSoak: 1d               # a Longhorn/k3s step runs this long before the next one
//!   revertsToHold: 2
//!   failureRate: 0.2
//!   failureSample: 10
//! rules:                       # every matching rule applies in order; later ones override
//!   - match: { component: [longhorn] }
//!     schedule: { days: [sat], hours: "02:00-06:00" }
//!   - match: { chart: ["kube-prometheus-*"], updateType: [patch] }
//!     group: monitoring
//!     automerge: true          # GitHub auto-merge once checks pass
//!     labels: [deps]
//!   - match: { component: [k3s] }
//!     draft: true              # open as a draft; reviewers: [alice]
//!     minimumReleaseAge: 3d
//!     ignoreVersions: [">=70.0.0"]
//!   - match: { id: ["helmrelease/apps/podinfo"] }
//!     checks:                  # run through the soak of each merged update; see config/checks.rs
//!       - http: { url: "https://podinfo.example.com/healthz", headers: { Authorization: { env: PODINFO_TOKEN } } }
//!       - tcp: { address: "podinfo.apps.svc:9898" }
//! registryRewrites:            # send lookups for a URL prefix elsewhere (mirrors, air gaps)
//!   - from: https://charts.example.com
//!     to: file://./mirror/charts.example.com   # relative to the folder of upkeep.yaml (above .github/)
//! verify:                      # how merged updates are verified (defaults shown)
//!   timeout: 15m               # from the merge to Ready at the merged revision
//!   soak: 5m                   # healthy this long after Ready
//!   horizon: 7d                # older merges, when first seen, are not verified
//!   gitRepository: flux-system/flux-system
//!   automergeReverts: false
//!   evidence: kube             # or github-status: Flux's commit statuses, no cluster access
//! hostRules:                   # credentials, read from environment variables, never the file
//!   - host: ghcr.io
//!     usernameEnv: GHCR_USER
//!     passwordEnv: GHCR_TOKEN
//! notify:                      # a webhook for failed verifications (optional)
//!   urlEnv: UPKEEP_WEBHOOK_URL # the variable holding the URL: a secret, never in this file
//!   format: slack              # or json (upkeep's event, the default)
//!   on: [failure]              # failure (every one), revert, forward-fix; default all
//! sources:                     # Flux sources another repository defines (platform/apps split)
//!   - kind: HelmRepository     # or OCIRepository (url oci:// only)
//!     name: bitnami
//!     namespace: flux-system   # omitted: answers references from any namespace
//!     url: https://charts.bitnami.com/bitnami   # or oci://registry/path
//! ```

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::extract::helmrelease::{ExternalKind, ExternalSource};
use crate::gate::Policy;
use crate::gate::history::MemoryPolicy;
use crate::gate::rules::{Matcher, Rule, RuleSettings, parse_duration};
use crate::gate::schedule::{Schedule, parse_day, parse_hours, parse_zone};
use crate::gate::versioning::{Constraint, UpdateType};
use crate::lookup::HostRule;
use crate::lookup::rewrite::{Rewrite, Rewrites};
use crate::model::{Component, Kind};
use crate::verify::notify::{Format as NotifyFormat, Settings as NotifySettings, Trigger};

mod checks;

/// Where upkeep looks for its config, in order.
pub const CONFIG_FILES: [&str; 2] = [".github/upkeep.yaml", "upkeep.yaml"];

/// upkeep's repository configuration (`.github/upkeep.yaml` or `upkeep.yaml`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "upkeep configuration")]
pub struct RawConfig {
    /// Ordered rules: every matching rule applies, later ones override earlier settings.
    #[serde(default)]
    rules: Vec<RawRule>,
    /// Most upkeep PRs open at once.
    #[serde(rename = "maxOpenPRs")]
    max_open_prs: Option<usize>,
    /// Default time zone of schedules (IANA name); UTC when absent.
    #[schemars(with = "Option<String>")]
    timezone: Option<Spanned<String>>,
    /// What reverts mean for future updates.
    memory: Option<RawMemory>,
    /// Send lookups for a URL prefix elsewhere (mirrors, air gaps); longest prefix wins.
    #[serde(default)]
    registry_rewrites: Vec<RawRewrite>,
    /// Credentials by host, read from environment variables.
    #[serde(default)]
    host_rules: Vec<RawHostRule>,
    /// How merged updates are verified.
    verify: Option<RawVerify>,
    /// Flux sources defined in another repository, for references the scanned files do not
    /// answer (a platform repository holding the HelmRepositories, an apps repository the releases).
    #[serde(default)]
    sources: Vec<RawSource>,
    /// Also update dependencies in files no cluster's Flux Kustomizations apply (`.archive/`,
    /// templates, retired clusters); by default they are skipped as `not-applied`.
    #[serde(default)]
    include_not_applied: bool,
    /// A webhook told about failed verifications (revert PRs, forward-fix issues).
    notify: Option<RawNotify>,
}

/// `notify:`: a webhook for failed verifications. The URL is a secret (a Slack webhook URL is a
/// credential), so the file names the environment variable that holds it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNotify {
    /// The environment variable holding the webhook URL (e.g. `UPKEEP_WEBHOOK_URL`).
    #[schemars(with = "String")]
    url_env: Spanned<String>,
    /// `json` (upkeep's event, the default) or `slack` (a Slack incoming-webhook message).
    #[serde(default)]
    format: NotifyFormat,
    /// Which failures are sent: `failure` (every one), `revert`, `forward-fix`. Default: all.
    on: Option<Vec<Trigger>>,
    /// Refused: the URL never goes in the file (see `urlEnv`).
    #[schemars(skip)]
    url: Option<Spanned<String>>,
}

fn notify_settings(file: &str, raw: Option<RawNotify>) -> Result<Option<NotifySettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if let Some(url) = &raw.url {
        return Err(at(
            file,
            &url.referenced,
            "notify.url: a webhook URL is a secret and does not go in the file; put it in an environment variable and name that with `urlEnv`",
        ));
    }
    let var = raw.url_env.value.trim();
    let valid = var.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(at(
            file,
            &raw.url_env.referenced,
            format!("notify.urlEnv: `{var}` is not an environment variable name (e.g. `UPKEEP_WEBHOOK_URL`)"),
        ));
    }
    let mut on = raw.on.unwrap_or_else(|| vec![Trigger::Failure, Trigger::Revert, Trigger::ForwardFix]);
    on.sort();
    on.dedup();
    Ok(Some(NotifySettings { url_env: var.to_string(), format: raw.format, on }))
}

/// How merged updates are verified (`upkeep verify`); command-line flags override.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVerify {
    /// From the merge to Ready at the merged revision (`15m`).
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
    /// Healthy this long after Ready (`5m`).
    #[schemars(with = "Option<String>")]
    soak: Option<Spanned<String>>,
    /// Merges older than this when first seen are not verified (`7d`).
    #[schemars(with = "Option<String>")]
    horizon: Option<Spanned<String>>,
    /// The Flux GitRepository that syncs this repository, `namespace/name` (`flux-system/flux-system`).
    #[schemars(with = "Option<String>")]
    git_repository: Option<Spanned<String>>,
    /// Turn on auto-merge for revert PRs.
    automerge_reverts: Option<bool>,
    /// Where the verifier's evidence comes from: `kube` (the Kubernetes API) or `github-status`
    /// (the commit statuses Flux's notification-controller posts); `--evidence` overrides.
    evidence: Option<EvidenceSource>,
}

/// Where the verifier's evidence comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceSource {
    /// The Kubernetes API: Flux objects, workloads, pods (needs cluster credentials).
    #[default]
    Kube,
    /// The commit statuses Flux's notification-controller posts on GitHub (a `github`
    /// Provider and an Alert on Kustomization events): no cluster credentials at all.
    GithubStatus,
}

/// How merged updates are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySettings {
    /// From the merge to Ready at the merged revision.
    pub timeout: std::time::Duration,
    /// Healthy this long after Ready.
    pub soak: std::time::Duration,
    /// Merges older than this when first seen are reported, not verified.
    pub horizon: std::time::Duration,
    /// The GitRepository Flux syncs this repository from: `(namespace, name)`.
    pub git_repository: (String, String),
    /// Auto-merge revert PRs.
    pub automerge_reverts: bool,
    /// Where the evidence comes from (`verify.evidence`).
    pub evidence: EvidenceSource,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            timeout: std::time::Duration::from_secs(15 * 60),
            soak: std::time::Duration::from_secs(5 * 60),
            horizon: std::time::Duration::from_secs(7 * 86_400),
            git_repository: ("flux-system".into(), "flux-system".into()),
            automerge_reverts: false,
            evidence: EvidenceSource::Kube,
        }
    }
}

fn verify_settings(file: &str, raw: Option<RawVerify>) -> Result<VerifySettings, ConfigError> {
    let mut v = VerifySettings::default();
    let Some(raw) = raw else { return Ok(v) };
    let duration = |d: &Spanned<String>, field: &str| {
        parse_duration(&d.value).map_err(|e| at(file, &d.referenced, format!("verify.{field}: {e}")))
    };
    if let Some(d) = &raw.timeout {
        v.timeout = duration(d, "timeout")?;
    }
    if let Some(d) = &raw.soak {
        v.soak = duration(d, "soak")?;
    }
    if let Some(d) = &raw.horizon {
        v.horizon = duration(d, "horizon")?;
    }
    if let Some(g) = &raw.git_repository {
        v.git_repository = match g.value.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => (ns.into(), name.into()),
            _ => {
                return Err(at(
                    file,
                    &g.referenced,
                    format!(
                        "verify.gitRepository: `{}` is not `namespace/name` (e.g. `flux-system/flux-system`)",
                        g.value
                    ),
                ));
            }
        };
    }
    v.automerge_reverts = raw.automerge_reverts.unwrap_or(false);
    v.evidence = raw.evidence.unwrap_or_default();
    Ok(v)
}

/// A Flux source another repository defines.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSource {
    /// `HelmRepository` or `OCIRepository`.
    kind: ExternalKind,
    /// Its `metadata.name`, as references name it.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Its namespace; when omitted it answers references from any namespace.
    namespace: Option<String>,
    /// Its `spec.url`: `https://` for a Helm repository index, `oci://` for a registry
    /// (an OCIRepository's is always `oci://`).
    #[schemars(with = "String")]
    url: Spanned<String>,
}

/// One rule.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    /// What the rule applies to; every matcher given must match.
    #[serde(rename = "match", default)]
    matcher: RawMatch,
    /// Update types that may be proposed: build, prerelease, patch, minor, major.
    allow: Option<Vec<UpdateType>>,
    /// Version ranges never to propose (`>=3.0.0`, `2.5.1`, `1.x`).
    #[schemars(with = "Option<Vec<String>>")]
    ignore_versions: Option<Vec<Spanned<String>>>,
    /// Propose prereleases.
    prerelease: Option<bool>,
    /// How old a release must be before it is proposed (`3d`, `12h`).
    #[schemars(with = "Option<String>")]
    minimum_release_age: Option<Spanned<String>>,
    /// Put the matched dependencies into one PR with this name.
    group: Option<String>,
    /// Enable GitHub auto-merge on the PR.
    automerge: Option<bool>,
    /// Open the PR as a draft.
    draft: Option<bool>,
    /// PR labels.
    labels: Option<Vec<String>>,
    /// PR reviewers.
    reviewers: Option<Vec<String>>,
    /// When PRs may be opened or updated.
    schedule: Option<RawSchedule>,
    /// Most PRs open at once for the dependencies this rule matches.
    #[serde(rename = "maxOpenPRs")]
    max_open_prs: Option<usize>,
    /// `false` turns updates off for what the rule matches.
    enabled: Option<bool>,
    /// What a failed verification brings: `revert` (a revert PR) or `issue` (a forward-fix
    /// issue, no revert). Longhorn, Flux and k3s always get an issue.
    on_failure: Option<crate::gate::rules::OnFailure>,
    /// The user's own HTTP and TCP checks, run through the soak of every merged update of what
    /// the rule matches; a failing one fails the update.
    #[schemars(with = "Option<Vec<checks::RawCheck>>")]
    checks: Option<Vec<Spanned<checks::RawCheck>>>,
}

/// Matchers; globs use `*`, `**`, `?`, `[...]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMatch {
    /// Dependency id globs (`helmrelease/monitoring/*`).
    #[schemars(with = "Option<Vec<String>>")]
    id: Option<Vec<Spanned<String>>>,
    /// helmrelease, ocirepository, helmchart, flux-components, fluxinstance, plan.
    kind: Option<Vec<Kind>>,
    /// app, flux, k3s, longhorn.
    component: Option<Vec<Component>>,
    /// Chart or package name globs.
    #[schemars(with = "Option<Vec<String>>")]
    chart: Option<Vec<Spanned<String>>>,
    /// Registry URL globs.
    #[schemars(with = "Option<Vec<String>>")]
    registry: Option<Vec<Spanned<String>>>,
    /// Manifest file path globs, relative to the repository.
    #[schemars(with = "Option<Vec<String>>")]
    file: Option<Vec<Spanned<String>>>,
    /// Update types the rule applies to.
    update_type: Option<Vec<UpdateType>>,
}

/// A weekly window.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSchedule {
    /// Days: mon, tue, wed, thu, fri, sat, sun.
    #[schemars(with = "Option<Vec<String>>")]
    days: Option<Vec<Spanned<String>>>,
    /// `HH:MM-HH:MM`; an end before the start runs past midnight.
    #[schemars(with = "Option<String>")]
    hours: Option<Spanned<String>>,
    /// IANA time zone; the config's `timezone` or UTC when absent.
    #[schemars(with = "Option<String>")]
    timezone: Option<Spanned<String>>,
}

/// What reverts mean.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMemory {
    /// Window for counting reverts of one dependency (`30d`).
    #[schemars(with = "Option<String>")]
    revert_window: Option<Spanned<String>>,
    /// Reverts within the window that hold a dependency for a human (2).
    reverts_to_hold: Option<usize>,
    /// Share of recent updates reverted that pauses non-security updates (0.2).
    #[schemars(with = "Option<f64>")]
    failure_rate: Option<Spanned<f64>>,
    /// How many recent updates the share is computed over (10).
    failure_sample: Option<usize>,
    /// How long a Longhorn or k3s step upkeep merged runs before the next step is proposed (`1d`).
    #[schemars(with = "Option<String>")]
    step_soak: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRewrite {
    /// Upstream URL prefix.
    from: String,
    /// Replacement prefix (`https://`, `http://` or `file://`).
    to: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHostRule {
    /// Host, optionally with a path prefix.
    host: String,
    /// Environment variable holding the user name.
    username_env: Option<String>,
    /// Environment variable holding the password or token.
    password_env: Option<String>,
}

/// Credentials for a host, by the names of the environment variables that hold them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRuleSpec {
    /// Host, optionally with a path prefix.
    pub host: String,
    /// Variable holding the user name.
    pub username_env: Option<String>,
    /// Variable holding the password or token.
    pub password_env: Option<String>,
}

impl HostRuleSpec {
    /// Read the credentials from the environment.
    pub fn resolve(&self) -> HostRule {
        let var = |name: &Option<String>| name.as_ref().and_then(|n| std::env::var(n).ok()).filter(|v| !v.is_empty());
        HostRule { host: self.host.clone(), username: var(&self.username_env), password: var(&self.password_env) }
    }
}

/// The checked config.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// Registry rewrites, `file://` targets made absolute.
    pub rewrites: Rewrites,
    /// Credentials by host.
    pub host_rules: Vec<HostRuleSpec>,
    /// Rules, limits and memory for the gate.
    pub policy: Policy,
    /// How merged updates are verified.
    pub verify: VerifySettings,
    /// Flux sources defined outside the scanned files (`sources:`).
    pub sources: Vec<ExternalSource>,
    /// `includeNotApplied`: update dependencies no cluster applies, too.
    pub include_not_applied: bool,
    /// `notify:`: the webhook for failed verifications, if any.
    pub notify: Option<NotifySettings>,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The config file.
    pub file: String,
    /// What is wrong, with line and column where known.
    pub message: String,
}

/// The top of the git work tree holding `root`. Found without libgit2 in the plain case: its
/// start-up loads every CA certificate, which a scan has no use for (see `git_index`).
fn work_tree(root: &Path) -> Option<PathBuf> {
    use crate::extract::git_index::{WorkTree, find};
    match find(&root.canonicalize().ok()?) {
        WorkTree::Plain(dir) => Some(dir),
        WorkTree::Outside => None,
        WorkTree::Other => git2::Repository::discover(root).ok().and_then(|r| r.workdir().map(Path::to_path_buf)),
    }
}

/// Load the config for the repository at `root` (or from `explicit`).
///
/// The config is looked for in `root` (the scanned folder), then at the top of the git work
/// tree holding it, so `upkeep run clusters/prod` still obeys the repository's
/// `.github/upkeep.yaml`. Relative `file://` rewrites are anchored where the config lives: the
/// folder of `upkeep.yaml`, or the folder above `.github/`.
pub fn load(root: &Path, explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let find = |dir: &Path| CONFIG_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file());
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => find(root).or_else(|| find(&work_tree(root)?)),
    };
    let Some(path) = path else { return Ok(Config::default()) };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError { file: shown.clone(), message: format!("cannot read: {e}") })?;
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
    let anchor = if folder.file_name().is_some_and(|n| n == ".github") {
        folder.parent().map(Path::to_path_buf).unwrap_or(folder)
    } else {
        folder
    };
    let anchor = if anchor.as_os_str().is_empty() { Path::new(".").to_path_buf() } else { anchor };
    parse(&text, &anchor, &shown).map(|mut c| {
        c.file = Some(path);
        c
    })
}

/// The JSON Schema of the config file, for editors.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default()
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Add a "did you mean" to serde's "unknown field `x`, expected one of a, b" (or `variant`).
fn with_hint(message: String) -> String {
    let first = message.lines().next().unwrap_or("");
    // A value of the wrong type: say what the setting takes.
    let wants = [
        (["invalid u64", "invalid usize", "invalid u32"], "a whole number, such as `5`"),
        (["invalid f64", "invalid f32", "invalid float"], "a number, such as `0.2`"),
        (["invalid bool", "invalid boolean", "expected a boolean"], "`true` or `false`"),
    ];
    if let Some((_, what)) = wants.iter().find(|(markers, _)| markers.iter().any(|m| first.contains(m))) {
        return format!("{message}\nhint: this setting takes {what}");
    }
    let Some(rest) =
        first.split_once("unknown field `").or_else(|| first.split_once("unknown variant `")).map(|(_, r)| r)
    else {
        return message;
    };
    let Some((unknown, expected)) = rest.split_once('`') else { return message };
    let options: Vec<&str> = expected
        .trim_start_matches(", expected one of ")
        .trim_start_matches(", expected ")
        .split(", ")
        .map(|o| o.trim_matches('`').trim())
        .filter(|o| !o.is_empty())
        .collect();
    let best = options.iter().map(|o| (distance(&unknown.to_ascii_lowercase(), &o.to_ascii_lowercase()), *o)).min();
    match best {
        Some((d, option)) if d <= 3 && d < unknown.len() => format!("{message}\nhint: did you mean `{option}`?"),
        _ => message,
    }
}

fn at(file: &str, span: &serde_saphyr::Location, message: impl std::fmt::Display) -> ConfigError {
    ConfigError { file: file.to_string(), message: format!("line {} column {}: {message}", span.line(), span.column()) }
}

fn globs(
    file: &str,
    field: &str,
    patterns: Option<Vec<Spanned<String>>>,
) -> Result<Option<globset::GlobSet>, ConfigError> {
    let Some(patterns) = patterns else { return Ok(None) };
    let mut builder = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(&p.value)
            .literal_separator(field == "file")
            .build()
            .map_err(|e| at(file, &p.referenced, format!("{field}: `{}` is not a glob: {}", p.value, e.kind())))?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| ConfigError { file: file.to_string(), message: format!("{field}: {e}") })
}

fn schedule(
    file: &str,
    raw: RawSchedule,
    default_zone: &(jiff::tz::TimeZone, String),
) -> Result<Schedule, ConfigError> {
    let mut days = Vec::new();
    for d in raw.days.unwrap_or_default() {
        days.push(parse_day(&d.value).map_err(|e| at(file, &d.referenced, e))?);
    }
    let hours = match raw.hours {
        Some(h) => Some(parse_hours(&h.value).map_err(|e| at(file, &h.referenced, e))?),
        None => None,
    };
    let (zone, zone_name) = match raw.timezone {
        Some(z) => (parse_zone(&z.value).map_err(|e| at(file, &z.referenced, e))?, z.value),
        None => default_zone.clone(),
    };
    Ok(Schedule { days, hours, zone, zone_name })
}

fn policy(
    file: &str,
    raw_rules: Vec<RawRule>,
    max_open_prs: Option<usize>,
    timezone: Option<Spanned<String>>,
    memory: Option<RawMemory>,
) -> Result<Policy, ConfigError> {
    let default_zone = match timezone {
        Some(z) => (parse_zone(&z.value).map_err(|e| at(file, &z.referenced, e))?, z.value),
        None => (jiff::tz::TimeZone::UTC, "UTC".to_string()),
    };
    let rules = raw_rules
        .into_iter()
        .enumerate()
        .map(|(index, r)| rule(file, index, r, &default_zone))
        .collect::<Result<Vec<_>, _>>()?;
    let mem = memory_policy(file, memory)?;
    Ok(Policy { rules, max_open_prs, memory: mem })
}

/// One rule of the config, its values checked (errors name the file and line).
fn rule(
    file: &str,
    index: usize,
    r: RawRule,
    default_zone: &(jiff::tz::TimeZone, String),
) -> Result<Rule, ConfigError> {
    let m = r.matcher;
    let matcher = Matcher {
        ids: globs(file, "id", m.id)?,
        kinds: m.kind,
        components: m.component,
        charts: globs(file, "chart", m.chart)?,
        registries: globs(file, "registry", m.registry)?,
        files: globs(file, "file", m.file)?,
        update_types: m.update_type,
    };
    let ignore_versions = match r.ignore_versions {
        Some(list) => Some(
            list.into_iter()
                .map(|c| {
                    Constraint::parse(&c.value).map_err(|e| at(file, &c.referenced, format!("ignoreVersions: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let minimum_release_age = match r.minimum_release_age {
        Some(a) => {
            Some(parse_duration(&a.value).map_err(|e| at(file, &a.referenced, format!("minimumReleaseAge: {e}")))?)
        }
        None => None,
    };
    let schedule = match r.schedule {
        Some(s) => Some(schedule(file, s, default_zone)?),
        None => None,
    };
    let checks = checks::checks(file, index, r.checks.unwrap_or_default())?;
    Ok(Rule {
        index,
        matcher,
        settings: RuleSettings {
            allow: r.allow,
            ignore_versions,
            prerelease: r.prerelease,
            minimum_release_age,
            group: r.group,
            automerge: r.automerge,
            draft: r.draft,
            labels: r.labels,
            reviewers: r.reviewers,
            schedule,
            max_open_prs: r.max_open_prs,
            enabled: r.enabled,
            on_failure: r.on_failure,
        },
        checks,
    })
}

/// `memory:`, over the defaults.
fn memory_policy(file: &str, memory: Option<RawMemory>) -> Result<MemoryPolicy, ConfigError> {
    let mut mem = MemoryPolicy::default();
    if let Some(m) = memory {
        if let Some(w) = m.revert_window {
            mem.revert_window =
                parse_duration(&w.value).map_err(|e| at(file, &w.referenced, format!("revertWindow: {e}")))?;
        }
        if let Some(n) = m.reverts_to_hold {
            mem.reverts_to_hold = n.max(1);
        }
        if let Some(w) = m.step_soak {
            mem.step_soak = parse_duration(&w.value).map_err(|e| at(file, &w.referenced, format!("stepSoak: {e}")))?;
        }
        if let Some(r) = m.failure_rate {
            if !(0.0..=1.0).contains(&r.value) {
                return Err(at(
                    file,
                    &r.referenced,
                    format!("memory.failureRate: {} is not a share between 0 and 1 (20% is 0.2)", r.value),
                ));
            }
            mem.failure_rate = r.value;
        }
        if let Some(n) = m.failure_sample {
            mem.failure_sample = n.max(1);
        }
    }
    Ok(mem)
}

/// Parse and check config text; `root` anchors relative `file://` rewrites.
pub fn parse(text: &str, root: &Path, file: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            // The excerpt names the file the user edits, not the parser's `<input>`.
            message: with_hint(e.to_string().replace(" --> <input>:", &format!(" --> {file}:"))),
        })?
    };
    let policy = policy(file, raw.rules, raw.max_open_prs, raw.timezone, raw.memory)?;
    let verify = verify_settings(file, raw.verify)?;
    let mut rewrites = Vec::new();
    for r in raw.registry_rewrites {
        let to = match r.to.strip_prefix("file://") {
            Some(path) if !path.starts_with('/') => {
                let abs = root.canonicalize().unwrap_or_else(|_| root.to_path_buf()).join(path);
                format!("file://{}", abs.display())
            }
            _ => r.to,
        };
        if r.from.trim().is_empty() {
            return Err(ConfigError {
                file: file.to_string(),
                message: "a registryRewrites entry has an empty `from`".into(),
            });
        }
        rewrites.push(Rewrite { from: r.from, to });
    }
    let host_rules = raw
        .host_rules
        .into_iter()
        .map(|h| HostRuleSpec { host: h.host, username_env: h.username_env, password_env: h.password_env })
        .collect();
    let sources = sources(file, raw.sources)?;
    let include_not_applied = raw.include_not_applied;
    let notify = notify_settings(file, raw.notify)?;
    Ok(Config {
        file: None,
        rewrites: Rewrites(rewrites),
        host_rules,
        policy,
        verify,
        sources,
        include_not_applied,
        notify,
    })
}

/// Check `sources:` entries: a name, a URL Flux would accept for the kind, no entry twice.
fn sources(file: &str, raw: Vec<RawSource>) -> Result<Vec<ExternalSource>, ConfigError> {
    let mut out: Vec<ExternalSource> = Vec::new();
    for r in raw {
        let (name, url) = (r.name.value.trim().to_string(), r.url.value.trim().to_string());
        let kind = match r.kind {
            ExternalKind::HelmRepository => "HelmRepository",
            ExternalKind::OciRepository => "OCIRepository",
        };
        if name.is_empty() {
            return Err(at(file, &r.name.referenced, format!("sources: a {kind} needs a name")));
        }
        let schemes: &[&str] = match r.kind {
            ExternalKind::HelmRepository => &["https://", "http://", "oci://"],
            ExternalKind::OciRepository => &["oci://"],
        };
        let rest = schemes.iter().find_map(|s| url.strip_prefix(s));
        if rest.is_none_or(|r| r.trim_matches('/').is_empty()) {
            return Err(at(
                file,
                &r.url.referenced,
                format!(
                    "sources: {kind} {name}: url `{url}` must start with {}, as Flux requires",
                    schemes.join(" or ")
                ),
            ));
        }
        let namespace = r.namespace.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(first) = out.iter().find(|e| e.kind == r.kind && e.name == name && e.namespace == namespace) {
            return Err(at(
                file,
                &r.name.referenced,
                format!("sources: {kind} {name} is declared twice (first at {})", first.origin),
            ));
        }
        let line = r.name.referenced.line();
        out.push(ExternalSource { kind: r.kind, name, namespace, url, origin: format!("{file}:{line}") });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_missing_configs_are_defaults() {
        assert_eq!(parse("", Path::new("/r"), "upkeep.yaml").map(|c| c.rewrites.0.len()).ok(), Some(0));
        assert_eq!(parse("# nothing\n", Path::new("/r"), "upkeep.yaml").map(|c| c.host_rules.len()).ok(), Some(0));
    }

    #[test]
    fn include_not_applied_is_off_unless_asked_for() {
        let read = |text: &str| parse(text, Path::new("/r"), "upkeep.yaml").map(|c| c.include_not_applied).ok();
        assert_eq!(read(""), Some(false));
        assert_eq!(read("includeNotApplied: true\n"), Some(true));
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let err = parse("registryRewrites:\n  - from: a\n    too: b\n", Path::new("/r"), "upkeep.yaml").err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.starts_with("upkeep.yaml: ") && message.contains("line 3"), "{message}");
    }

    #[test]
    fn relative_file_rewrites_are_anchored_at_the_root() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let c = parse(
            "registryRewrites:\n  - {from: 'https://x.example', to: 'file://./mirror/x'}\n",
            dir.path(),
            "u.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let to = &c.rewrites.0[0].to;
        assert!(to.starts_with("file:///") && to.ends_with("/./mirror/x"), "{to}");
    }
}
