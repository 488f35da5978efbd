//! `deploy/` kept valid: the manifests parse (with the crate's own YAML reader) and are wired
//! together (ServiceAccount, binding, Secret, probe port, kustomization), the ClusterRole is
//! least-privilege (read-only but for `patch` on Flux sources), and it covers every request
//! the verifier makes: each request the fake Kubernetes API recorded during real verifier runs
//! is mapped to (verb, group, resource) and checked against the rules, plus a static list for
//! the platform reads (nodes, k3s Plans, Longhorn volumes and engine images). The Grafana
//! dashboard is checked to query only the metrics `--listen` serves, and every one of them.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::run::Sandbox;
use super::verify_support::{decision, text, upkeep_in};
use super::verify_watch::{FAMILIES, Flux, bare_remote, merge_branch};

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a manifest file.
fn documents(file: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn one(file: &str, kind: &str) -> Value {
    let docs = documents(file);
    assert_eq!(docs.len(), 1, "deploy/{file} holds one object");
    assert_eq!(docs[0]["kind"], kind, "deploy/{file}");
    docs[0].clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// What one API request needs from RBAC.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Need {
    /// A resource request: verb, API group (empty: core), resource plural.
    Resource(String, String, String),
    /// A non-resource URL (discovery), always `get`.
    Url(String),
}

/// `METHOD /path?query` as the fake API server records it → what RBAC must allow.
fn need(request: &str) -> Need {
    let (method, target) = request.split_once(' ').unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return Need::Url(path.to_string()),
    };
    let (resource, named) = match rest {
        [] => return Need::Url(path.to_string()),
        ["namespaces", _, plural] | [plural] => (*plural, false),
        ["namespaces", _, plural, _] | [plural, _] => (*plural, true),
        _ => panic!("unexpected path {path}"),
    };
    let verb = match (method, watch, named) {
        ("PATCH", _, _) => "patch",
        ("GET", true, _) => "watch",
        ("GET", false, true) => "get",
        ("GET", false, false) => "list",
        (other, _, _) => panic!("the verifier must not {other} anything: {request}"),
    };
    Need::Resource(verb.into(), group.into(), resource.into())
}

fn allows(rules: &[Value], need: &Need) -> bool {
    rules.iter().any(|rule| match need {
        Need::Resource(verb, group, resource) => {
            strings(&rule["verbs"]).contains(verb)
                && strings(&rule["apiGroups"]).contains(group)
                && strings(&rule["resources"]).contains(resource)
        }
        Need::Url(url) => {
            strings(&rule["verbs"]).iter().any(|v| v == "get")
                && strings(&rule["nonResourceURLs"]).iter().any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => url.starts_with(prefix),
                    None => pattern == url,
                })
        }
    })
}

fn rules() -> Vec<Value> {
    one("clusterrole.yaml", "ClusterRole")["rules"].as_array().unwrap().clone()
}

/// Every request (as the fake API server recorded them) is allowed by `deploy/`'s ClusterRole.
pub(crate) fn assert_rbac_covers(requests: &[String]) {
    assert!(!requests.is_empty(), "no request recorded");
    let rules = rules();
    for request in requests {
        let need = need(request);
        assert!(allows(&rules, &need), "deploy/clusterrole.yaml does not allow {need:?} ({request})");
    }
}

#[test]
fn the_manifests_parse_and_are_wired_together() {
    let kustomization = one("kustomization.yaml", "Kustomization");
    let namespace = kustomization["namespace"].as_str().unwrap().to_string();
    assert_eq!(one("namespace.yaml", "Namespace")["metadata"]["name"], namespace.as_str());
    // Every manifest in deploy/ is applied, and everything applied exists.
    let listed = strings(&kustomization["resources"]);
    let mut files: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, files);
    for file in &listed {
        for doc in documents(file) {
            let name = doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{file}: no name"));
            assert!(!name.is_empty(), "{file}");
        }
    }
    let account = one("serviceaccount.yaml", "ServiceAccount");
    let binding = one("clusterrolebinding.yaml", "ClusterRoleBinding");
    let role = one("clusterrole.yaml", "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], account["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], namespace.as_str());

    let deployment = one("deployment.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert!(container["resources"]["requests"].is_object() && container["resources"]["limits"].is_object());
    let args = strings(&container["args"]);
    assert_eq!(&args[..2], ["verify", "--watch"]);
    // The probe's port is the one --listen serves, and the checkout is on a writable volume.
    let listen = &args[args.iter().position(|a| a == "--listen").unwrap() + 1];
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(container["ports"][0]["containerPort"], port);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], container["ports"][0]["name"]);
    let checkout = args.last().unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let volumes = pod["volumes"].as_array().unwrap();
    for dir in [checkout.as_str(), "/tmp"] {
        let mount = mounts
            .iter()
            .find(|m| dir.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{dir} is not on a volume"));
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
        assert!(volume["emptyDir"].is_object(), "{dir} on an emptyDir");
    }
    // The token comes from the Secret, by a key it has.
    let secret = one("secret.yaml", "Secret");
    let env = container["env"].as_array().unwrap();
    let token = env.iter().find(|e| e["name"] == "GITHUB_TOKEN").unwrap();
    let reference = &token["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], secret["metadata"]["name"]);
    assert!(secret["stringData"][reference["key"].as_str().unwrap()].as_str() == Some(""), "a template, no value");
    // Scraping: annotations name the same port.
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
}

#[test]
fn the_cluster_role_is_read_only_but_for_nudging_sources() {
    for rule in rules() {
        for field in ["verbs", "apiGroups", "resources"] {
            assert!(!strings(&rule[field]).contains(&"*".to_string()), "no wildcard {field}: {rule}");
        }
        let writes: Vec<String> =
            strings(&rule["verbs"]).into_iter().filter(|v| !["get", "list", "watch"].contains(&v.as_str())).collect();
        if writes.is_empty() {
            continue;
        }
        assert_eq!(writes, ["patch"], "{rule}");
        assert_eq!(strings(&rule["apiGroups"]), ["source.toolkit.fluxcd.io"], "{rule}");
        for resource in strings(&rule["resources"]) {
            assert!(["gitrepositories", "helmrepositories", "ocirepositories"].contains(&resource.as_str()), "{rule}");
        }
    }
    // Secrets are never readable.
    assert!(!allows(&rules(), &Need::Resource("get".into(), String::new(), "secrets".into())));
}

#[test]
fn the_cluster_role_covers_the_platform_reads() {
    let rules = rules();
    for (group, resource) in [
        ("", "nodes"),
        ("upgrade.cattle.io", "plans"),
        ("longhorn.io", "volumes"),
        ("longhorn.io", "engineimages"),
        ("apps", "deployments"),
        ("apps", "daemonsets"),
        ("kustomize.toolkit.fluxcd.io", "kustomizations"),
        ("helm.toolkit.fluxcd.io", "helmreleases"),
    ] {
        for verb in ["get", "list", "watch"] {
            let need = Need::Resource(verb.into(), group.into(), resource.into());
            assert!(allows(&rules, &need), "{need:?}");
        }
    }
    // Every call the verifier's code declares it makes (`kube::platform::API_CALLS`).
    for call in upkeep::verify::kube::platform::API_CALLS {
        for verb in call.verbs {
            let need = Need::Resource((*verb).into(), call.group.into(), call.resource.into());
            assert!(allows(&rules, &need), "API_CALLS: {need:?}");
        }
    }
    for url in ["/api", "/apis", "/apis/source.toolkit.fluxcd.io/v1", "/version"] {
        assert!(allows(&rules, &Need::Url(url.into())), "{url}");
    }
}

#[test]
fn requests_map_to_the_rbac_they_need() {
    let n = |r: &str| need(r);
    assert_eq!(
        n("GET /apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/podinfo"),
        Need::Resource("get".into(), "helm.toolkit.fluxcd.io".into(), "helmreleases".into())
    );
    assert_eq!(
        n("GET /api/v1/namespaces/apps/pods?labelSelector=a%3Db&watch=true&resourceVersion=1"),
        Need::Resource("watch".into(), String::new(), "pods".into())
    );
    assert_eq!(n("GET /apis/apps/v1/deployments?"), Need::Resource("list".into(), "apps".into(), "deployments".into()));
    assert_eq!(
        n("PATCH /apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system"),
        Need::Resource("patch".into(), "source.toolkit.fluxcd.io".into(), "gitrepositories".into())
    );
    assert_eq!(n("GET /apis"), Need::Url("/apis".into()));
    // A rule that lacks the verb does not cover it.
    let rules = rules();
    assert!(!allows(&rules, &Need::Resource("patch".into(), "helm.toolkit.fluxcd.io".into(), "helmreleases".into())));
}

#[test]
fn the_dashboard_queries_exactly_the_served_metrics() {
    let dashboard: Value = serde_json::from_str(&deploy("grafana-dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("upkeep_") {
            let name: String =
                rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            let family =
                ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(FAMILIES.contains(&family), "{name} in `{expr}` is not a metric upkeep serves");
            used.insert(family.to_string());
            rest = &rest[i + name.len()..];
        }
    }
    for family in FAMILIES {
        assert!(used.contains(family), "the dashboard never shows {family}");
    }
    // The kustomization ships it as a ConfigMap for Grafana's sidecar.
    let kustomization = one("kustomization.yaml", "Kustomization");
    let generated = &kustomization["configMapGenerator"][0];
    assert_eq!(strings(&generated["files"]), ["grafana-dashboard.json"]);
}

/// The verifier's calls in the scenarios that make the most of them: a success watched
/// through its soak (sources, Kustomizations, the release, its workloads, pods and events), and
/// a source that never reaches the merge (nudged with a patch, then reverted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_covers_every_call_the_verifier_makes() {
    for nudge in [false, true] {
        let sb = Sandbox::example();
        let before = sb.main_tip();
        sb.run(&[], &[]);
        let target = decision(&sb, "helmrelease/ingress-nginx/ingress-nginx")["target"].as_str().unwrap().to_string();
        let merged = merge_branch(&sb, "upkeep/helmrelease-ingress-nginx-ingress-nginx");
        let _ = bare_remote(&sb);
        let flux = Flux::start(&before.to_string()).await;
        if !nudge {
            flux.fetched(merged);
            flux.nginx_upgraded(&target);
        }
        let kubeconfig = flux.kubeconfig().display().to_string();
        let (root, repo) = (sb.root.clone(), sb.repo.clone());
        let timeout = if nudge { "1s" } else { "30s" };
        let out = tokio::task::spawn_blocking(move || {
            let args = ["verify", ".", "--format", "json", "--kubeconfig", &kubeconfig, "--timeout", timeout];
            let args: Vec<&str> = args.into_iter().chain(["--soak", "2s"]).collect();
            upkeep_in(&root, &repo, &args, &[])
        })
        .await
        .unwrap();
        // Nudged, then reverted after the grace (3), or still pending when a loaded machine
        // made the pass give up first (0): either way the nudge's patch was sent.
        let codes: &[i32] = if nudge { &[0, 3] } else { &[0] };
        assert!(out.status.code().is_some_and(|c| codes.contains(&c)), "{}", text(&out));
        let requests = flux.fake.requests();
        if nudge {
            assert!(requests.iter().any(|r| r.starts_with("PATCH ")), "nudged: {requests:?}");
        } else {
            assert!(requests.iter().any(|r| r.contains("watch=")), "watched: {requests:?}");
            assert!(requests.iter().any(|r| r.contains("/pods")), "pods read: {requests:?}");
        }
        assert_rbac_covers(&requests);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
