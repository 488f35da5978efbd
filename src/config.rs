//! The repository's upkeep config: `.github/upkeep.yaml` or `upkeep.yaml` at the root (the
//! first found; `--config` overrides). Raw serde types are deserialized strictly (unknown keys
//! are errors with file, line and column) and then checked once into [`Config`].
//!
//! ```yaml
//! registryRewrites:            # send lookups for a URL prefix elsewhere (mirrors, air gaps)
//!   - from: https://charts.example.com
//!     to: file://./mirror/charts.example.com   # relative file:// paths are from the repo root
//! hostRules:                   # credentials, read from environment variables, never the file
//!   - host: ghcr.io
//!     usernameEnv: GHCR_USER
//!     passwordEnv: GHCR_TOKEN
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::lookup::HostRule;
use crate::lookup::rewrite::{Rewrite, Rewrites};

/// Where upkeep looks for its config, in order.
pub const CONFIG_FILES: [&str; 2] = [".github/upkeep.yaml", "upkeep.yaml"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    registry_rewrites: Vec<RawRewrite>,
    #[serde(default)]
    host_rules: Vec<RawHostRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRewrite {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHostRule {
    host: String,
    username_env: Option<String>,
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// Registry rewrites, `file://` targets made absolute.
    pub rewrites: Rewrites,
    /// Credentials by host.
    pub host_rules: Vec<HostRuleSpec>,
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

/// Load the config for the repository at `root` (or from `explicit`).
pub fn load(root: &Path, explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => CONFIG_FILES.iter().map(|f| root.join(f)).find(|p| p.is_file()),
    };
    let Some(path) = path else { return Ok(Config::default()) };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError { file: shown.clone(), message: format!("cannot read: {e}") })?;
    parse(&text, root, &shown).map(|mut c| {
        c.file = Some(path);
        c
    })
}

/// Parse and check config text; `root` anchors relative `file://` rewrites.
pub fn parse(text: &str, root: &Path, file: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError { file: file.to_string(), message: e.to_string() })?
    };
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
    Ok(Config { file: None, rewrites: Rewrites(rewrites), host_rules })
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
