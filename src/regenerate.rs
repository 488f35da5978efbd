//! Regenerate a `gotk-components.yaml` with the `flux` CLI instead of patching it.
//!
//! The file is the output of `flux install --export` for one Flux version: controllers, CRDs,
//! RBAC and images all change together, so moving the `# Flux Version:` header alone would be a
//! lie. upkeep runs the `flux` CLI of the target version, with the options it can read back
//! from the current file, so custom bootstrap flags survive the update (Renovate regenerates
//! with defaults and loses them: renovatebot/renovate#13952).
//!
//! What can be read back from the file: the components (header), the namespace, network
//! policies (present or not), `--watch-all-namespaces`, `--log-level`, the cluster domain (in
//! `--events-addr`), the image registry, image pull secrets and toleration keys. Flags that leave
//! no trace in the output cannot be recovered; the PR body says which flags were used so a
//! maintainer can compare.
//!
//! Without a `flux` of the target version on PATH (or at `UPKEEP_FLUX`; `UPKEEP_FLUX=off` never
//! runs one), the update is held and the exact command is reported instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::extract::flux::read_header;
use crate::yaml::{Node, parse_stream};

/// The components `flux install` installs by default; the rest go to `--components-extra`.
const DEFAULT_COMPONENTS: [&str; 4] =
    ["source-controller", "kustomize-controller", "helm-controller", "notification-controller"];

/// Why a file could not be regenerated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RegenerateError(pub String);

/// The `flux install --export` flags that reproduce the options visible in `text`.
pub fn install_flags(text: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let components = read_header(text).map(|h| h.components).unwrap_or_default();
    let (base, extra): (Vec<&String>, Vec<&String>) =
        components.iter().partition(|c| DEFAULT_COMPONENTS.contains(&c.as_str()));
    if !base.is_empty() {
        flags.push(format!("--components={}", join(&base)));
    }
    if !extra.is_empty() {
        flags.push(format!("--components-extra={}", join(&extra)));
    }

    let stream = parse_stream(text);
    let docs: Vec<&Node> = stream.documents.iter().map(|d| &d.root).collect();
    let kind = |n: &Node| n.str_at(&["kind"]).unwrap_or("").to_string();
    let namespace = docs.iter().find(|d| kind(d) == "Namespace").and_then(|d| d.str_at(&["metadata", "name"]));
    if let Some(ns) = namespace.filter(|ns| *ns != "flux-system") {
        flags.push(format!("--namespace={ns}"));
    }
    let deployments: Vec<&Node> = docs.iter().copied().filter(|d| kind(d) == "Deployment").collect();
    if !deployments.is_empty() && !docs.iter().any(|d| kind(d) == "NetworkPolicy") {
        flags.push("--network-policy=false".into());
    }

    let pod = |d: &Node| d.path(&["spec", "template", "spec"]).cloned();
    let pods: Vec<Node> = deployments.iter().filter_map(|d| pod(d)).collect();
    let containers: Vec<&Node> = pods.iter().filter_map(|p| p.get("containers")?.as_seq()).flatten().collect();
    let args: Vec<&str> =
        containers.iter().filter_map(|c| c.get("args")?.as_seq()).flatten().filter_map(Node::as_str).collect();
    let arg = |name: &str| args.iter().find_map(|a| a.strip_prefix(name)?.strip_prefix('='));
    if arg("--watch-all-namespaces") == Some("false") {
        flags.push("--watch-all-namespaces=false".into());
    }
    if let Some(level) = arg("--log-level").filter(|l| *l != "info") {
        flags.push(format!("--log-level={level}"));
    }
    if let Some(domain) = arg("--events-addr").and_then(cluster_domain).filter(|d| d != "cluster.local") {
        flags.push(format!("--cluster-domain={domain}"));
    }
    let registry = containers.iter().filter_map(|c| c.str_at(&["image"])).find_map(|image| {
        let name = image.split('@').next()?.rsplit_once(':').map_or(image, |(n, _)| n);
        name.rsplit_once('/').map(|(registry, _)| registry.to_string())
    });
    if let Some(registry) = registry.filter(|r| r != "ghcr.io/fluxcd") {
        flags.push(format!("--registry={registry}"));
    }
    let secret =
        pods.iter().find_map(|p| p.get("imagePullSecrets")?.as_seq()?.first()?.str_at(&["name"]).map(str::to_string));
    if let Some(secret) = secret {
        flags.push(format!("--image-pull-secret={secret}"));
    }
    let mut keys: Vec<String> = pods
        .iter()
        .filter_map(|p| p.get("tolerations")?.as_seq())
        .flatten()
        .filter_map(|t| t.str_at(&["key"]).map(str::to_string))
        .collect();
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        flags.push(format!("--toleration-keys={}", keys.join(",")));
    }
    flags
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// `http://notification-controller.flux-system.svc.cluster.local./` → `cluster.local`.
fn cluster_domain(addr: &str) -> Option<String> {
    let host = addr.split("://").nth(1)?.split(['/', ':']).next()?.trim_end_matches('.');
    host.split_once(".svc.").map(|(_, domain)| domain.to_string())
}

/// The command a maintainer runs to regenerate the file at `path`.
pub fn command(flags: &[String], path: &str) -> String {
    let mut c = String::from("flux install --export");
    for f in flags {
        c.push(' ');
        c.push_str(f);
    }
    format!("{c} > {path}")
}

/// Where the `flux` CLI is: `UPKEEP_FLUX` (a path, or `off` to never regenerate), else the
/// first `flux` on PATH.
pub fn find_flux() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("UPKEEP_FLUX").filter(|v| !v.is_empty()) {
        return (explicit != "off").then(|| PathBuf::from(explicit));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("flux")).find(|candidate| candidate.is_file())
}

fn bare(version: &str) -> &str {
    version.trim().trim_start_matches('v')
}

/// The version `flux version --client` reports (`flux: v2.4.0`, or `flux version 0.31.3`).
pub fn flux_version(flux: &Path) -> Result<String, RegenerateError> {
    let out = Command::new(flux)
        .args(["version", "--client"])
        .output()
        .map_err(|e| RegenerateError(format!("cannot run {}: {e}", flux.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .map(|w| w.trim_start_matches('v'))
        .find(|w| {
            w.split('.').count() == 3 && w.split('.').all(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()))
        })
        .map(str::to_string)
        .ok_or_else(|| {
            RegenerateError(format!("`{} version --client` printed no version: {}", flux.display(), text.trim()))
        })
}

/// Run `flux install --export` with `flags` and check that the output is the file for
/// `target` with the same components. Returns the new file text.
pub fn regenerate(flux: &Path, target: &str, current: &str, flags: &[String]) -> Result<String, RegenerateError> {
    let have = flux_version(flux)?;
    if have != bare(target) {
        return Err(RegenerateError(format!(
            "the flux CLI at {} is v{have}; this update needs v{}",
            flux.display(),
            bare(target)
        )));
    }
    let out = Command::new(flux)
        .args(["install", "--export"])
        .args(flags)
        .output()
        .map_err(|e| RegenerateError(format!("cannot run {}: {e}", flux.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(RegenerateError(format!(
            "`flux install --export` failed ({}): {}",
            out.status,
            stderr.lines().last().unwrap_or("").trim()
        )));
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| RegenerateError("`flux install --export` printed text that is not UTF-8".into()))?;
    let header = read_header(&text)
        .ok_or_else(|| RegenerateError("`flux install --export` printed no `# Flux Version:` header".into()))?;
    if bare(&header.version) != bare(target) {
        return Err(RegenerateError(format!(
            "`flux install --export` wrote version {} instead of {target}",
            header.version
        )));
    }
    let mut want = read_header(current).map(|h| h.components).unwrap_or_default();
    let mut got = header.components;
    want.sort();
    got.sort();
    if !want.is_empty() && want != got {
        return Err(RegenerateError(format!(
            "`flux install --export` installed components {} instead of {}",
            got.join(","),
            want.join(",")
        )));
    }
    if let Some(e) = parse_stream(&text).error {
        return Err(RegenerateError(format!("`flux install --export` printed YAML that does not parse: {e}")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_domains_come_from_the_events_address() {
        assert_eq!(
            cluster_domain("http://notification-controller.flux-system.svc.cluster.local./").as_deref(),
            Some("cluster.local")
        );
        assert_eq!(
            cluster_domain("http://notification-controller.flux.svc.k8s.example:80/").as_deref(),
            Some("k8s.example")
        );
        assert_eq!(cluster_domain("http://notification-controller/"), None);
    }

    #[test]
    fn the_command_lists_the_flags_in_order() {
        let flags = vec!["--components=source-controller".to_string(), "--network-policy=false".to_string()];
        assert_eq!(
            command(&flags, "clusters/x/gotk-components.yaml"),
            "flux install --export --components=source-controller --network-policy=false > clusters/x/gotk-components.yaml"
        );
    }
}
