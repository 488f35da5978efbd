//! Regenerating gotk-components.yaml: the bootstrap flags read back from real files, and
//! `upkeep run` driving a `flux` CLI. The real CLI cannot be installed in CI (no network but
//! package registries, and Debian does not package it), so a stand-in script speaks its two
//! commands: `flux version --client` prints its version, `flux install --export` records its
//! flags and prints the example's manifest for that version.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use upkeep::extract::flux::read_header;
use upkeep::regenerate::{install_flags, regenerate};

use super::run::{Sandbox, stdout};
use super::util::fixture;

fn flags(file: &str) -> Vec<String> {
    install_flags(&std::fs::read_to_string(fixture(file)).unwrap())
}

#[test]
fn bootstrap_flags_are_read_back_from_real_files() {
    assert_eq!(
        flags("corpus/onedr0p-home-ops-2022/cluster/base/flux-system/gotk-components.yaml"),
        [
            "--components=source-controller,kustomize-controller,helm-controller,notification-controller",
            "--components-extra=image-reflector-controller,image-automation-controller",
        ]
    );
    assert_eq!(
        flags("corpus/carpenike-k8s-gitops-2021/cluster/flux-system/gotk-components.yaml"),
        [
            "--components=source-controller,kustomize-controller,helm-controller,notification-controller",
            "--network-policy=false",
        ]
    );
    assert_eq!(
        flags("flux/gotk-components-custom-flags.yaml"),
        [
            "--components=source-controller,kustomize-controller,helm-controller,notification-controller",
            "--components-extra=image-reflector-controller",
            "--namespace=flux",
            "--network-policy=false",
            "--watch-all-namespaces=false",
            "--log-level=debug",
            "--cluster-domain=k8s.internal",
            "--registry=registry.example.com/fluxcd",
            "--image-pull-secret=regcred",
            "--toleration-keys=CriticalAddonsOnly,node-role.kubernetes.io/control-plane",
        ]
    );
}

/// A `flux` stand-in of `version` in `dir` that prints `template` with v2.3.0 replaced, and
/// appends its install arguments to `dir/args.log`.
fn fake_flux(dir: &Path, version: &str, template: &Path) -> PathBuf {
    let path = dir.join("flux");
    let log = dir.join("args.log");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  version) echo \"flux: v{version}\" ;;\n  install) shift; echo \"$@\" >> '{}'; sed 's/v2\\.3\\.0/v{version}/g' '{}' ;;\n  *) echo \"unknown command $1\" >&2; exit 1 ;;\nesac\n",
        log.display(),
        template.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn regenerate_checks_the_cli_version_and_what_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let template = fixture("flux/gotk-components-custom-flags.yaml");
    let current = std::fs::read_to_string(&template).unwrap();
    let flags = install_flags(&current);

    let right = fake_flux(dir.path(), "2.4.0", &template);
    let text = regenerate(&right, "v2.4.0", &current, &flags).unwrap();
    assert_eq!(read_header(&text).unwrap().version, "v2.4.0");
    assert!(text.contains("registry.example.com/fluxcd/source-controller:v1.3.0"));
    let log = std::fs::read_to_string(dir.path().join("args.log")).unwrap();
    assert_eq!(log.trim(), format!("--export {}", flags.join(" ")));

    let wrong = fake_flux(dir.path(), "2.2.3", &template);
    let err = regenerate(&wrong, "v2.4.0", &current, &flags).unwrap_err().0;
    assert!(err.contains("is v2.2.3; this update needs v2.4.0"), "{err}");

    // A CLI that claims the version but installs other components is caught.
    let other = dir.path().join("other-components.yaml");
    std::fs::write(&other, current.replace(",image-reflector-controller", "")).unwrap();
    let liar = fake_flux(dir.path(), "2.4.0", &other);
    let err = regenerate(&liar, "v2.4.0", &current, &flags).unwrap_err().0;
    assert!(err.contains("installed components"), "{err}");

    let missing = regenerate(&dir.path().join("nope"), "v2.4.0", &current, &flags).unwrap_err().0;
    assert!(missing.contains("cannot run"), "{missing}");
}

const FLUX_BRANCH: &str = "upkeep/flux-components-clusters-home-flux-system";

#[test]
fn upkeep_run_regenerates_gotk_components_with_the_flux_cli_of_the_target_version() {
    let sb = Sandbox::example();
    let bin = tempfile::tempdir().unwrap();
    let template = sb.repo.join("clusters/home/flux-system/gotk-components.yaml");
    let template_copy = bin.path().join("template.yaml");
    std::fs::copy(&template, &template_copy).unwrap();
    let flux = fake_flux(bin.path(), "2.4.0", &template_copy);
    let flux = flux.to_string_lossy().to_string();

    let dry = stdout(&sb.run(&["--dry-run"], &[("UPKEEP_FLUX", &flux)]));
    assert!(
        dry.contains("--- a/clusters/home/flux-system/gotk-components.yaml")
            && dry.contains("-# Flux Version: v2.3.0\n+# Flux Version: v2.4.0"),
        "{dry}"
    );
    assert!(sb.branches().is_empty());

    let first = sb.run(&[], &[("UPKEEP_FLUX", &flux)]);
    let text = stdout(&first);
    assert!(text.contains(&format!("PRs opened: {FLUX_BRANCH}")), "{text}");
    assert!(!text.contains("held: `flux-components"), "{text}");
    let git = sb.git();
    let tip = git.find_commit(sb.branches()[FLUX_BRANCH]).unwrap();
    let blob = tip.tree().unwrap().get_path(Path::new("clusters/home/flux-system/gotk-components.yaml")).unwrap();
    let written = String::from_utf8(git.find_blob(blob.id()).unwrap().content().to_vec()).unwrap();
    assert_eq!(read_header(&written).unwrap().version, "v2.4.0");
    assert!(written.contains("app.kubernetes.io/version: v2.4.0"), "the whole file is the new version's");
    assert!(
        tip.message().unwrap().contains("Upkeep-Update: flux-components/clusters/home/flux-system v2.3.0 -> v2.4.0")
    );
    let args = std::fs::read_to_string(bin.path().join("args.log")).unwrap();
    assert_eq!(
        args.lines().next().unwrap(),
        "--export --components=source-controller,kustomize-controller,helm-controller,notification-controller"
    );
    let prs: Vec<String> = std::fs::read_dir(sb.repo.join(".upkeep/prs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let body = prs.iter().find(|b| b.contains("flux-components/clusters/home/flux-system")).unwrap();
    assert!(body.contains("was regenerated with `flux install --export --components=source-controller"), "{body}");

    let tips = sb.branches();
    let second = sb.run(&[], &[("UPKEEP_FLUX", &flux)]);
    assert!(stdout(&second).contains("branches written: none"), "{}", stdout(&second));
    assert_eq!(sb.branches(), tips);
}

#[test]
fn a_flux_cli_of_another_version_holds_the_update_with_the_command() {
    let sb = Sandbox::example();
    let bin = tempfile::tempdir().unwrap();
    let flux = fake_flux(bin.path(), "2.2.3", &sb.repo.join("clusters/home/flux-system/gotk-components.yaml"));
    let out = sb.run(&[], &[("UPKEEP_FLUX", &flux.to_string_lossy())]);
    let text = stdout(&out);
    assert!(
        text.contains("is v2.2.3; this update needs v2.4.0): with flux v2.4.0 on PATH run `flux install --export --components=source-controller,kustomize-controller,helm-controller,notification-controller > clusters/home/flux-system/gotk-components.yaml`"),
        "{text}"
    );
    assert!(!sb.branches().contains_key(FLUX_BRANCH));
}
