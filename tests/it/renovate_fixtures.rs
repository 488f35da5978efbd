//! Renovate's own Flux manager tests, run through upkeep's scan (issue 9, item 4).
//!
//! Every YAML input of Renovate's `lib/modules/manager/flux/extract.spec.ts` (its
//! `__fixtures__` files and the inline cases, kept as data under `fixtures/renovate-flux/`, see
//! its README) is scanned the way the spec feeds it to Renovate: one case, one tree. The scan
//! must not fail and must report no error. Each dependency within upkeep's scope (Helm charts,
//! OCIRepositories, Flux itself; not Git sources, Kustomization images or container images in
//! values) is compared with what the spec expects, written here by hand from the spec. Where
//! upkeep differs, the row says what upkeep reports, why, and who is right.
//!
//! The two tools speak different words for the same facts; [`normal`] maps Renovate's
//! (`docker` datasource, `unknown-registry`, `unversioned-reference`, `unsupported-datasource`,
//! `invalid-value`) onto upkeep's (`oci`, `source-not-found`, `floating-version`,
//! `unsupported-source`, `version-alias`). A digest is compared only for a dependency both would
//! update: for a skipped one, the reason is what matters.

use std::collections::BTreeSet;

use upkeep::extract::{Scan, ScanOptions, scan};
use upkeep::model::{Datasource, Dependency};

use super::util::{fixture, tree};

/// The digest Renovate's OCIRepository cases use.
const DIGEST: &str = "sha256:761c3189c482d0f1f0ad3735ca05c4c398cae201d2169f6645280c7b7b2ce6fc";

/// What one tool reports for one dependency: version, package, skip reason, pinned digest.
/// `package` is (datasource, registry, name); for `docker`/`oci` the name is the full reference
/// without `oci://` and the registry is empty.
#[derive(Debug, Clone, Copy)]
struct Expect {
    current: Option<&'static str>,
    package: Option<(&'static str, &'static str, &'static str)>,
    skip: Option<&'static str>,
    digest: Option<&'static str>,
}

/// One dependency of a case: upkeep's id for it, what Renovate's spec expects (`None`: Renovate
/// reports nothing), and, where upkeep differs, what upkeep reports and why.
struct Row {
    id: &'static str,
    renovate: Option<Expect>,
    differs: Option<(Expect, &'static str)>,
}

/// One `it(...)` of the spec: its title, the files scanned together (path in the scanned tree,
/// fixture under `fixtures/renovate-flux/`), the upkeep config standing in for the spec's
/// `registryAliases`, and the dependencies.
struct Case {
    title: &'static str,
    files: &'static [(&'static str, &'static str)],
    config: Option<&'static str>,
    rows: &'static [Row],
}

const fn helm(current: &'static str, url: &'static str, chart: &'static str) -> Expect {
    Expect { current: Some(current), package: Some(("helm", url, chart)), skip: None, digest: None }
}

const fn docker(current: Option<&'static str>, reference: &'static str) -> Expect {
    Expect { current, package: Some(("docker", "", reference)), skip: None, digest: None }
}

const fn pinned(current: &'static str, reference: &'static str) -> Expect {
    Expect { current: Some(current), package: Some(("docker", "", reference)), skip: None, digest: Some(DIGEST) }
}

const fn skipped(current: Option<&'static str>, reason: &'static str) -> Expect {
    Expect { current, package: None, skip: Some(reason), digest: None }
}

const fn with_skip(e: Expect, reason: &'static str) -> Expect {
    Expect { skip: Some(reason), ..e }
}

const fn flux(current: &'static str) -> Expect {
    Expect { current: Some(current), package: Some(("github-releases", "", "fluxcd/flux2")), skip: None, digest: None }
}

const fn agree(id: &'static str, renovate: Expect) -> Row {
    Row { id, renovate: Some(renovate), differs: None }
}

const KYVERNO: &str = "ghcr.io/kyverno/manifests/kyverno";
const SEALED: &str = "https://bitnami-labs.github.io/sealed-secrets";
const GOTK: &str = "renovate-flux/__fixtures__/flux-system/gotk-components.yaml";

/// The inline cases' YAML, one file each, named for the spec's title.
macro_rules! spec {
    ($name:literal) => {
        &[("test.yaml", concat!("renovate-flux/spec/", $name, ".yaml"))]
    };
}

/// A dependency upkeep reports from a file Renovate drops without a word.
const NOT_SILENT: &str = "upkeep reports what it cannot update instead of dropping it; both agree nothing is updated";

const CASES: &[Case] = &[
    Case {
        title: "extracts multiple resources",
        files: &[("multidoc.yaml", "renovate-flux/__fixtures__/multidoc.yaml")],
        config: None,
        // Renovate also reports the values image and the GitRepository: out of upkeep's scope.
        rows: &[
            agree(
                "helmrelease/kube-system/external-dns",
                helm("1.7.0", "https://kubernetes-sigs.github.io/external-dns/", "external-dns"),
            ),
            agree("ocirepository/flux-system/kyverno-controller", docker(Some("v1.8.2"), KYVERNO)),
        ],
    },
    Case {
        title: "keeps HelmRelease values image replacement in inline tag@digest format",
        files: spec!("keeps-helmrelease-values-image-replacement-in-inline-tag-digest-format"),
        config: None,
        // The spec asserts the values image (out of scope); extract.ts reports this chart beside it.
        rows: &[agree("helmrelease/kube-system/sealed-secrets", helm("2.0.2", SEALED, "sealed-secrets"))],
    },
    Case {
        title: "extracts version and components from system manifest at clusters/my-cluster/flux-system/gotk-components.yaml",
        files: &[("clusters/my-cluster/flux-system/gotk-components.yaml", GOTK)],
        config: None,
        rows: &[agree("flux-components/clusters/my-cluster/flux-system", flux("v0.24.1"))],
    },
    Case {
        title: "extracts version and components from system manifest at clusters/my-cluster/flux-system/gotk-components.yml",
        files: &[("clusters/my-cluster/flux-system/gotk-components.yml", GOTK)],
        config: None,
        rows: &[agree("flux-components/clusters/my-cluster/flux-system", flux("v0.24.1"))],
    },
    Case {
        title: "extracts version and components from system manifest at clusters/my-cluster/gotk-components.yaml",
        files: &[("clusters/my-cluster/gotk-components.yaml", GOTK)],
        config: None,
        rows: &[agree("flux-components/clusters/my-cluster", flux("v0.24.1"))],
    },
    Case {
        title: "extracts version and components from system manifest at clusters/my-cluster/gotk-components.yml",
        files: &[("clusters/my-cluster/gotk-components.yml", GOTK)],
        config: None,
        rows: &[agree("flux-components/clusters/my-cluster", flux("v0.24.1"))],
    },
    Case {
        title: "extracts version and components from system manifest at gotk-components.yaml",
        files: &[("gotk-components.yaml", GOTK)],
        config: None,
        rows: &[agree("flux-components/.", flux("v0.24.1"))],
    },
    Case {
        title: "considers components optional in system manifests",
        files: &[(
            "clusters/my-cluster/flux-system/gotk-components.yaml",
            "renovate-flux/spec/considers-components-optional-in-system-manifests/gotk-components.yaml",
        )],
        config: None,
        rows: &[agree("flux-components/clusters/my-cluster/flux-system", flux("v0.27.0"))],
    },
    Case {
        title: "ignores system manifests without a version",
        files: &[(
            "clusters/my-cluster/flux-system/gotk-components.yaml",
            "renovate-flux/spec/ignores-system-manifests-without-a-version/gotk-components.yaml",
        )],
        config: None,
        rows: &[Row {
            id: "flux-components/clusters/my-cluster/flux-system",
            renovate: None,
            // A file named gotk-components.yaml without its header is either not Flux's or lost
            // the line that records the version; upkeep says which line to restore. Renovate's
            // silence is defensible for a file that is not Flux's; upkeep's note costs nothing.
            differs: Some((
                Expect { skip: Some("no-version"), current: None, ..flux("") },
                "reports a gotk-components.yaml without its `# Flux Version:` header (no-version)",
            )),
        }],
    },
    Case {
        title: "extracts releases without repositories",
        files: &[("helmRelease.yaml", "renovate-flux/__fixtures__/helmRelease.yaml")],
        config: None,
        rows: &[agree("helmrelease/kube-system/sealed-secrets", skipped(Some("2.0.2"), "unknown-registry"))],
    },
    Case {
        title: "falls back to unknown-registry when registryAliases has no matching HelmRelease sourceRef name",
        files: &[("helmRelease.yaml", "renovate-flux/__fixtures__/helmRelease.yaml")],
        config: Some("sources:\n  - {kind: HelmRepository, name: other-repo, url: 'https://example.com/charts'}\n"),
        rows: &[agree("helmrelease/kube-system/sealed-secrets", skipped(Some("2.0.2"), "unknown-registry"))],
    },
    Case {
        title: "uses registryAliases to resolve HelmRelease sourceRef name when repository is missing",
        files: &[("helmRelease.yaml", "renovate-flux/__fixtures__/helmRelease.yaml")],
        config: Some("sources:\n  - {kind: HelmRepository, name: sealed-secrets, url: 'https://example.com/charts'}\n"),
        rows: &[agree(
            "helmrelease/kube-system/sealed-secrets",
            helm("2.0.2", "https://example.com/charts", "sealed-secrets"),
        )],
    },
    Case {
        title: "uses registryAliases with an OCI URL for HelmRelease sourceRef name",
        files: &[("helmRelease.yaml", "renovate-flux/__fixtures__/helmRelease.yaml")],
        config: Some("sources:\n  - {kind: HelmRepository, name: sealed-secrets, url: 'oci://ghcr.io/charts'}\n"),
        rows: &[agree(
            "helmrelease/kube-system/sealed-secrets",
            docker(Some("2.0.2"), "ghcr.io/charts/sealed-secrets"),
        )],
    },
    Case {
        title: "ignores HelmRelease resources without an apiVersion",
        files: spec!("ignores-helmrelease-resources-without-an-apiversion"),
        config: None,
        rows: &[],
    },
    Case {
        title: "ignores HelmRepository resources without an apiVersion",
        files: spec!("ignores-helmrepository-resources-without-an-apiversion"),
        config: None,
        rows: &[],
    },
    Case {
        title: "ignores HelmRepository resources without metadata",
        files: spec!("ignores-helmrepository-resources-without-metadata"),
        config: None,
        rows: &[agree("helmrelease/kube-system/sealed-secrets", skipped(Some("2.0.2"), "unknown-registry"))],
    },
    Case {
        title: "ignores HelmRelease resources without any chart reference",
        files: spec!("ignores-helmrelease-resources-without-any-chart-reference"),
        config: None,
        rows: &[Row {
            id: "helmrelease/kube-system/sealed-secrets",
            renovate: None,
            // In a kustomize tree a HelmRelease without a chart is a patch of one defined
            // elsewhere; upkeep says so (values-patch). Both are right that nothing is updated.
            differs: Some((skipped(None, "values-patch"), NOT_SILENT)),
        }],
    },
    Case {
        title: "ignores HelmRelease resources without a chart name",
        files: spec!("ignores-helmrelease-resources-without-a-chart-name"),
        config: None,
        rows: &[Row {
            id: "helmrelease/kube-system/sealed-secrets",
            renovate: None,
            // As above: a version without a chart is what a kustomize patch that bumps a
            // release defined elsewhere looks like.
            differs: Some((skipped(Some("2.0.2"), "values-patch"), NOT_SILENT)),
        }],
    },
    Case {
        title: "skip HelmRelease with local chart",
        files: spec!("skip-helmrelease-with-local-chart"),
        config: None,
        rows: &[agree("helmrelease/kube-system/cert-manager-config", skipped(None, "local-chart"))],
    },
    Case {
        title: "does not match HelmRelease resources without a namespace to HelmRepository resources without a namespace",
        files: spec!(
            "does-not-match-helmrelease-resources-without-a-namespace-to-helmrepository-resources-without-a-namespace"
        ),
        config: None,
        rows: &[Row {
            id: "helmrelease/-/<unnamed>",
            renovate: None,
            // The release has no metadata.name: the API server refuses it, so it never installs.
            // Renovate drops it silently; upkeep states it (unnamed). upkeep used to link and
            // update it (issue 9).
            differs: Some((skipped(None, "unnamed"), NOT_SILENT)),
        }],
    },
    Case {
        title: "does not match HelmRelease resources without a sourceRef",
        files: spec!("does-not-match-helmrelease-resources-without-a-sourceref"),
        config: None,
        rows: &[agree("helmrelease/test/sealed-secrets", skipped(Some("2.0.2"), "unknown-registry"))],
    },
    Case {
        title: "does not match HelmRelease resources without a namespace",
        files: spec!("does-not-match-helmrelease-resources-without-a-namespace"),
        config: None,
        rows: &[Row {
            id: "helmrelease/-/<unnamed>",
            renovate: None,
            // No metadata at all: unnamed, as above.
            differs: Some((skipped(None, "unnamed"), NOT_SILENT)),
        }],
    },
    Case {
        title: "ignores HelmRepository resources without a namespace",
        files: spec!("ignores-helmrepository-resources-without-a-namespace"),
        config: None,
        rows: &[agree("helmrelease/kube-system/sealed-secrets", skipped(Some("2.0.2"), "unknown-registry"))],
    },
    Case {
        title: "ignores HelmRepository resources without a URL",
        files: spec!("ignores-helmrepository-resources-without-a-url"),
        config: None,
        rows: &[agree("helmrelease/kube-system/sealed-secrets", skipped(Some("2.0.2"), "unknown-registry"))],
    },
    Case {
        title: "ignores HelmRelease resources using an invalid chartRef",
        files: &[("test.yaml", "renovate-flux/__fixtures__/helmChartRefRelease.yaml")],
        config: None,
        rows: &[Row {
            id: "helmrelease/kube-system/sealed-secrets",
            renovate: None,
            // Renovate ignores every chartRef release (its HelmChart or OCIRepository is the
            // dependency); here that target is missing and upkeep names it (source-not-found).
            differs: Some((skipped(None, "source-not-found"), NOT_SILENT)),
        }],
    },
    Case {
        title: "ignores HelmRelease resources using a chartRef targetting a HelmChart",
        files: spec!("ignores-helmrelease-resources-using-a-chartref-targetting-a-helmchart"),
        config: None,
        // One dependency either way: Renovate's is the HelmChart, upkeep's the release that
        // carries the HelmChart's version location.
        rows: &[agree("helmrelease/kube-system/sealed-secrets", helm("2.0.2", SEALED, "sealed-secrets"))],
    },
    Case {
        title: "ignores HelmRelease resources using a chartRef targetting an OCIRepository",
        files: spec!("ignores-helmrelease-resources-using-a-chartref-targetting-an-ocirepository"),
        config: None,
        rows: &[
            agree("ocirepository/flux-system/kyverno-controller", docker(Some("v1.8.2"), KYVERNO)),
            Row {
                id: "helmrelease/kube-system/kyverno-controller",
                renovate: None,
                // The chartRef names namespace kube-system; the OCIRepository is in flux-system,
                // so Flux would not find it either. upkeep says so; Renovate cannot, since it
                // ignores chartRef releases. upkeep is right.
                differs: Some((
                    skipped(None, "source-not-found"),
                    "the chartRef points at a namespace the OCIRepository is not in",
                )),
            },
        ],
    },
    Case {
        title: "extracts HelmChart version",
        files: spec!("extracts-helmchart-version"),
        config: None,
        rows: &[agree("helmchart/kube-system/sealed-secrets", helm("2.0.2", SEALED, "sealed-secrets"))],
    },
    Case {
        title: "does not match HelmChart resources without a namespace",
        files: spec!("does-not-match-helmchart-resources-without-a-namespace"),
        config: None,
        rows: &[Row {
            id: "helmchart/-/sealed-secrets",
            renovate: Some(skipped(Some("2.0.2"), "unknown-registry")),
            // upkeep links a namespace-less object to the only source of that name: applied
            // through a Kustomization it lands in that namespace more often than not, yet this
            // file alone cannot prove it. How namespace-less objects link is another engineer's
            // item of issue 9; until it lands upkeep's guess stands, Renovate's caution is safer.
            differs: Some((
                helm("2.0.2", SEALED, "sealed-secrets"),
                "links a namespace-less HelmChart by its unique name",
            )),
        }],
    },
    Case {
        title: "falls back to unknown-registry when registryAliases has no matching HelmChart sourceRef name",
        files: &[("helmChart.yaml", "renovate-flux/__fixtures__/helmChart.yaml")],
        config: Some("sources:\n  - {kind: HelmRepository, name: other-repo, url: 'https://example.com/charts'}\n"),
        rows: &[agree("helmchart/kube-system/sealed-secrets", skipped(Some("2.0.2"), "unknown-registry"))],
    },
    Case {
        title: "uses registryAliases to resolve HelmChart sourceRef name when repository is missing",
        files: &[("helmChart.yaml", "renovate-flux/__fixtures__/helmChart.yaml")],
        config: Some("sources:\n  - {kind: HelmRepository, name: sealed-secrets, url: 'https://example.com/charts'}\n"),
        rows: &[agree(
            "helmchart/kube-system/sealed-secrets",
            helm("2.0.2", "https://example.com/charts", "sealed-secrets"),
        )],
    },
    Case {
        title: "ignores HelmChart resources using git sources",
        files: spec!("ignores-helmchart-resources-using-git-sources"),
        config: None,
        rows: &[Row {
            id: "helmchart/kube-system/sealed-secrets",
            renovate: None,
            // Flux ignores spec.version for Git and Bucket sources; upkeep says the source is one
            // it cannot follow (it used to call the missing version floating, issue 9).
            differs: Some((skipped(None, "unsupported-source"), NOT_SILENT)),
        }],
    },
    Case {
        title: "ignores HelmChart resources using bucket sources",
        files: spec!("ignores-helmchart-resources-using-bucket-sources"),
        config: None,
        rows: &[agree("helmchart/kube-system/sealed-secrets", skipped(None, "unsupported-datasource"))],
    },
    // GitRepository refs are outside upkeep's scope (charts, Flux, k3s): nothing is reported.
    Case {
        title: "ignores GitRepository without a tag nor a commit",
        files: spec!("ignores-gitrepository-without-a-tag-nor-a-commit"),
        config: None,
        rows: &[],
    },
    Case {
        title: "extracts GitRepository with a commit",
        files: spec!("extracts-gitrepository-with-a-commit"),
        config: None,
        rows: &[],
    },
    Case {
        title: "extracts GitRepository with both commit and branch",
        files: spec!("extracts-gitrepository-with-both-commit-and-branch"),
        config: None,
        rows: &[],
    },
    Case {
        title: "extracts GitRepository with a tag from github with ssh",
        files: spec!("extracts-gitrepository-with-a-tag-from-github-with-ssh"),
        config: None,
        rows: &[],
    },
    Case {
        title: "extracts GitRepository with a tag from github",
        files: spec!("extracts-gitrepository-with-a-tag-from-github"),
        config: None,
        rows: &[],
    },
    Case {
        title: "extracts GitRepository with a tag from gitlab",
        files: spec!("extracts-gitrepository-with-a-tag-from-gitlab"),
        config: None,
        rows: &[],
    },
    Case {
        title: "extracts GitRepository with a tag from bitbucket",
        files: spec!("extracts-gitrepository-with-a-tag-from-bitbucket"),
        config: None,
        rows: &[],
    },
    Case {
        title: "extracts GitRepository with a tag from an unkown domain",
        files: spec!("extracts-gitrepository-with-a-tag-from-an-unkown-domain"),
        config: None,
        rows: &[],
    },
    Case {
        title: "ignores OCIRepository with no tag and no digest",
        files: spec!("ignores-ocirepository-with-no-tag-and-no-digest"),
        config: None,
        rows: &[agree(
            "ocirepository/flux-system/kyverno-controller",
            with_skip(docker(None, KYVERNO), "unversioned-reference"),
        )],
    },
    Case {
        title: "extracts OCIRepository with a tag",
        files: spec!("extracts-ocirepository-with-a-tag"),
        // The spec's registryAliases (ghcr.io → a proxy) changes where Renovate looks versions
        // up; upkeep's registryRewrites does that at lookup. The package as written is the same.
        config: None,
        rows: &[agree("ocirepository/flux-system/kyverno-controller", docker(Some("v1.8.2"), KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository with a quoted tag",
        files: spec!("extracts-ocirepository-with-a-quoted-tag"),
        config: None,
        rows: &[agree("ocirepository/flux-system/kyverno-controller", docker(Some("v1.8.2"), KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository with a tag and preserves 4-space ref indentation",
        files: spec!("extracts-ocirepository-with-a-tag-and-preserves-4-space-ref-indentation"),
        config: None,
        rows: &[agree("ocirepository/flux-system/kyverno-controller", docker(Some("v1.8.2"), KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository with a tag when ref is after url",
        files: spec!("extracts-ocirepository-with-a-tag-when-ref-is-after-url"),
        config: None,
        rows: &[agree("ocirepository/flux-system/kyverno-controller", docker(Some("v1.8.2"), KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository with a tag and preserves CRLF newlines in replacement template",
        files: spec!("extracts-ocirepository-with-a-tag-and-preserves-crlf-newlines-in-replacement-template"),
        config: None,
        rows: &[agree("ocirepository/-/kyverno-controller", docker(Some("v1.8.2"), KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository with a digest",
        files: spec!("extracts-ocirepository-with-a-digest"),
        config: None,
        rows: &[Row {
            id: "ocirepository/flux-system/kyverno-controller",
            renovate: Some(Expect { digest: Some(DIGEST), ..docker(None, KYVERNO) }),
            // Renovate moves a lone digest to the newest digest of the default tag; upkeep
            // proposes versions, not digests, and says so. A difference of scope, not an error.
            differs: Some((with_skip(docker(None, KYVERNO), "digest-only"), "follows tags, not lone digests")),
        }],
    },
    Case {
        title: "repairs OCIRepository with a tag that contains an inline digest by emitting a separate digest line",
        files: spec!(
            "repairs-ocirepository-with-a-tag-that-contains-an-inline-digest-by-emitting-a-separate-digest-line"
        ),
        config: None,
        rows: &[Row {
            id: "ocirepository/flux-system/kyverno-controller",
            renovate: Some(pinned("v1.8.2", KYVERNO)),
            // Flux cannot pull this: source-controller hands the whole value to
            // go-containerregistry's Repository.Tag unparsed, and no registry accepts `@` in a
            // tag. Renovate reads tag and digest and its next update writes the valid two-field
            // form; upkeep reports the object as broken now (invalid-ref), since the cluster is
            // failing until someone fixes it. upkeep is right about Flux; Renovate's repair is fair.
            differs: Some((
                with_skip(
                    docker(
                        Some("v1.8.2@sha256:761c3189c482d0f1f0ad3735ca05c4c398cae201d2169f6645280c7b7b2ce6fc"),
                        KYVERNO,
                    ),
                    "invalid-ref",
                ),
                "a tag holding a digest is an invalid ref for Flux",
            )),
        }],
    },
    Case {
        title: "extracts OCIRepository with a digest and tag",
        files: spec!("extracts-ocirepository-with-a-digest-and-tag"),
        config: None,
        rows: &[agree("ocirepository/flux-system/kyverno-controller", pinned("v1.8.2", KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository with quoted digest and tag",
        files: spec!("extracts-ocirepository-with-quoted-digest-and-tag"),
        config: None,
        rows: &[agree("ocirepository/flux-system/kyverno-controller", pinned("v1.8.2", KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository with quoted keys",
        files: spec!("extracts-ocirepository-with-quoted-keys"),
        config: None,
        rows: &[agree("ocirepository/-/kyverno-controller", pinned("v1.8.2", KYVERNO))],
    },
    Case {
        title: "extracts OCIRepository when ref key is quoted",
        files: spec!("extracts-ocirepository-when-ref-key-is-quoted"),
        config: None,
        rows: &[agree("ocirepository/-/kyverno-controller", pinned("v1.8.2", KYVERNO))],
    },
    Case {
        title: "skips OCIRepository when tag value is a YAML alias",
        files: spec!("skips-ocirepository-when-tag-value-is-a-yaml-alias"),
        config: None,
        rows: &[agree(
            "ocirepository/-/kyverno-controller",
            Expect { digest: Some(DIGEST), ..with_skip(docker(Some("v1.8.2"), KYVERNO), "invalid-value") },
        )],
    },
    Case {
        title: "extracts OCIRepository with tag and digest preceded by other document types",
        files: spec!("extracts-ocirepository-with-tag-and-digest-preceded-by-other-document-types"),
        config: None,
        rows: &[
            agree("ocirepository/flux-system/other-oci", docker(Some("v1.0.0"), "ghcr.io/other/repo")),
            agree("ocirepository/flux-system/kyverno-controller", pinned("v1.8.2", KYVERNO)),
        ],
    },
    Case {
        title: "extracts OCIRepository with tag and digest when preceded by same-named resource with scalar ref",
        files: spec!("extracts-ocirepository-with-tag-and-digest-when-preceded-by-same-named-resource-with-scalar-ref"),
        config: None,
        rows: &[
            Row {
                id: "ocirepository/flux-system/kyverno-controller@test.yaml#2",
                renovate: None,
                // `ref: "not-a-map"`: the API server rejects the object (ref is an object in the
                // CRD schema). upkeep names the field (unparsable); it used to read it as "no ref,
                // follows latest" (issue 9). Renovate skips it silently.
                differs: Some((skipped(None, "unparsable"), "names spec.ref, which must be a mapping")),
            },
            agree("ocirepository/flux-system/kyverno-controller@test.yaml#11", pinned("v1.8.2", KYVERNO)),
        ],
    },
    Case {
        title: "extracts OCIRepository with tag and digest when preceded by same-named resource with scalar spec",
        files: spec!(
            "extracts-ocirepository-with-tag-and-digest-when-preceded-by-same-named-resource-with-scalar-spec"
        ),
        config: None,
        rows: &[
            Row {
                id: "ocirepository/flux-system/kyverno-controller@test.yaml#2",
                renovate: None,
                // `spec: "not-a-map"`: rejected by the API server, as above.
                differs: Some((skipped(None, "unparsable"), "names spec, which must be a mapping")),
            },
            agree("ocirepository/flux-system/kyverno-controller@test.yaml#9", pinned("v1.8.2", KYVERNO)),
        ],
    },
    Case {
        title: "extracts OCIRepository with tag-only ref when tag value is a YAML alias without digest pinning",
        files: spec!("extracts-ocirepository-with-tag-only-ref-when-tag-value-is-a-yaml-alias-without-digest-pinning"),
        config: None,
        rows: &[Row {
            id: "ocirepository/-/kyverno-controller",
            renovate: Some(docker(Some("v1.8.2"), KYVERNO)),
            // Renovate rewrites the anchored value, which also changes `x-tag` and every other
            // alias of the anchor; upkeep edits literals only and says so (version-alias). With
            // a digest beside the tag Renovate skips it too (the case above): upkeep is consistent.
            differs: Some((
                with_skip(docker(Some("v1.8.2"), KYVERNO), "version-alias"),
                "edits only literal values, never an anchor",
            )),
        }],
    },
    Case {
        title: "extracts OCIRepository with tag and digest when ref contains a non-scalar key",
        files: spec!("extracts-ocirepository-with-tag-and-digest-when-ref-contains-a-non-scalar-key"),
        config: None,
        rows: &[agree("ocirepository/flux-system/kyverno-controller", pinned("v1.8.2", KYVERNO))],
    },
    // Kustomization images are container images: outside upkeep's scope.
    Case { title: "extracts Kustomization", files: spec!("extracts-kustomization"), config: None, rows: &[] },
    Case {
        title: "ignores resources of an unknown kind",
        files: spec!("ignores-resources-of-an-unknown-kind"),
        config: None,
        rows: &[],
    },
    Case {
        title: "ignores resources without a kind",
        files: spec!("ignores-resources-without-a-kind"),
        config: None,
        rows: &[],
    },
    Case { title: "ignores bad manifests", files: spec!("ignores-bad-manifests"), config: None, rows: &[] },
    Case { title: "ignores null resources", files: spec!("ignores-null-resources"), config: None, rows: &[] },
    Case {
        title: "extracts multiple files",
        files: &[
            ("helmRelease.yaml", "renovate-flux/__fixtures__/helmRelease.yaml"),
            ("helmSource.yaml", "renovate-flux/__fixtures__/helmSource.yaml"),
            ("gitSource.yaml", "renovate-flux/__fixtures__/gitSource.yaml"),
            ("ociSource.yaml", "renovate-flux/__fixtures__/ociSource.yaml"),
            ("flux-system/gotk-components.yaml", GOTK),
        ],
        config: None,
        rows: &[
            agree("helmrelease/kube-system/sealed-secrets", helm("2.0.2", SEALED, "sealed-secrets")),
            agree("ocirepository/flux-system/kyverno-controller", docker(Some("v1.8.2"), KYVERNO)),
            agree("flux-components/flux-system", flux("v0.24.1")),
        ],
    },
    Case {
        title: "should handle HelmRepository with type OCI",
        files: &[
            ("helmOCISource.yaml", "renovate-flux/__fixtures__/helmOCISource.yaml"),
            ("helmOCIRelease.yaml", "renovate-flux/__fixtures__/helmOCIRelease.yaml"),
        ],
        // registryAliases again rewrites only where Renovate looks up (see above).
        config: None,
        rows: &[agree(
            "helmrelease/dev/arc-assets",
            docker(Some("0.4.0"), "ghcr.io/actions/actions-runner-controller-charts/gha-runner-scale-set"),
        )],
    },
    Case {
        title: "should handle HelmRepository w/o type oci and url starts with oci",
        files: &[
            ("helmOCISource2.yaml", "renovate-flux/__fixtures__/helmOCISource2.yaml"),
            ("helmOCIRelease2.yaml", "renovate-flux/__fixtures__/helmOCIRelease2.yaml"),
        ],
        config: None,
        rows: &[Row {
            id: "helmrelease/flux-system/kyverno",
            renovate: Some(docker(Some("2.6.0"), "ghcr.io/kyverno/charts/kyverno")),
            // source-controller refuses an oci:// URL on a HelmRepository without `type: oci`
            // ("'oci' URL scheme cannot be used with 'default' HelmRepository type",
            // helmrepository_controller.go), so this release never installs. Renovate's test
            // accepts it; upkeep flags it (invalid-source). upkeep is right.
            differs: Some((skipped(Some("2.6.0"), "invalid-source"), "flags a HelmRepository Flux refuses")),
        }],
    },
    Case {
        title: "ignores system manifest files without valid Flux version header",
        files: &[(
            "flux-system-invalid/gotk-components.yaml",
            "renovate-flux/__fixtures__/flux-system-invalid/gotk-components.yaml",
        )],
        config: None,
        rows: &[Row {
            id: "flux-components/flux-system-invalid",
            renovate: None,
            // As "ignores system manifests without a version".
            differs: Some((
                Expect { skip: Some("no-version"), current: None, ..flux("") },
                "reports a gotk-components.yaml without its header (no-version)",
            )),
        }],
    },
    Case {
        title: "should pick correct package file when using HelmRepository with chartRef",
        files: &[
            ("helmChartRefRelease.yaml", "renovate-flux/__fixtures__/helmChartRefRelease.yaml"),
            ("helmChart.yaml", "renovate-flux/__fixtures__/helmChart.yaml"),
            ("helmSource.yaml", "renovate-flux/__fixtures__/helmSource.yaml"),
        ],
        config: None,
        rows: &[agree("helmrelease/kube-system/sealed-secrets", helm("2.0.2", SEALED, "sealed-secrets"))],
    },
];

/// One dependency as both tools can be compared: (current, package, skip, digest).
type Normal = (Option<String>, Option<String>, Option<String>, Option<String>);

/// An expectation in upkeep's words (Renovate's names mapped onto upkeep's).
fn normal(e: &Expect) -> Normal {
    let package = e.package.map(|(datasource, registry, name)| match datasource {
        "docker" | "oci" => format!("oci {name}"),
        "helm" => format!("helm {registry} {name}"),
        other => format!("{other} {name}"),
    });
    let skip = e.skip.map(|s| {
        match s {
            "unknown-registry" => "source-not-found",
            "unversioned-reference" => "floating-version",
            "unsupported-datasource" => "unsupported-source",
            "invalid-value" => "version-alias",
            other => other,
        }
        .to_string()
    });
    let digest = e.digest.filter(|_| skip.is_none()).map(str::to_string);
    (e.current.map(str::to_string), package, skip, digest)
}

/// What upkeep reported, in the same shape.
fn seen(d: &Dependency) -> Normal {
    let package = d.package.as_ref().map(|p| match p.datasource {
        Datasource::Oci => format!("oci {}/{}", p.registry.trim_start_matches("oci://"), p.name),
        Datasource::Helm => format!("helm {} {}", p.registry, p.name),
        Datasource::GithubReleases => format!("github-releases {}", p.name),
    });
    let skip = d.skip.as_ref().map(|s| s.reason.as_str().to_string());
    let digest =
        d.location.as_ref().and_then(|l| l.digest.as_ref()).filter(|_| skip.is_none()).map(|p| p.value.clone());
    (d.current.clone(), package, skip, digest)
}

fn scan_case(case: &Case) -> Scan {
    let contents: Vec<(&str, Vec<u8>)> = case
        .files
        .iter()
        .map(|(at, from)| (*at, std::fs::read(fixture(from)).unwrap_or_else(|e| panic!("{from}: {e}"))))
        .collect();
    let files: Vec<(&str, &[u8])> = contents.iter().map(|(at, text)| (*at, text.as_slice())).collect();
    let dir = tree(&files);
    let sources = case.config.map_or_else(Vec::new, |yaml| {
        upkeep::config::parse(yaml, dir.path(), "upkeep.yaml").unwrap_or_else(|e| panic!("{}: {e}", case.title)).sources
    });
    let options = ScanOptions { sources, ..ScanOptions::default() };
    scan(dir.path(), &options).unwrap_or_else(|e| panic!("{}: {e}", case.title))
}

#[test]
fn renovates_flux_fixtures_scan_cleanly_and_agree_where_upkeep_is_not_knowingly_different() {
    let (mut rows, mut renovate_deps, mut agreed) = (0, 0, 0);
    for case in CASES {
        let scan = scan_case(case);
        assert!(scan.errors.is_empty(), "{}: {:?}", case.title, scan.errors);
        let listed: BTreeSet<&str> = case.rows.iter().map(|r| r.id).collect();
        let reported: BTreeSet<&str> = scan.dependencies.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(reported, listed, "{}: every dependency upkeep reports is in the table", case.title);
        for row in case.rows {
            let d = scan.dependencies.iter().find(|d| d.id == row.id).unwrap_or_else(|| panic!("{}", row.id));
            let expected = match (&row.differs, &row.renovate) {
                (Some((upkeep, _why)), _) => normal(upkeep),
                (None, Some(renovate)) => normal(renovate),
                (None, None) => panic!("{}: a row needs Renovate's or upkeep's expectation", case.title),
            };
            assert_eq!(seen(d), expected, "{} / {}", case.title, row.id);
            if let (Some(renovate), Some((upkeep, _))) = (&row.renovate, &row.differs) {
                assert_ne!(normal(renovate), normal(upkeep), "{} / {}: a difference that is none", case.title, row.id);
            }
            rows += 1;
            renovate_deps += usize::from(row.renovate.is_some());
            agreed += usize::from(row.renovate.is_some() && row.differs.is_none());
        }
    }
    // 50 dependencies Renovate expects are within upkeep's scope (the 49 the spec asserts, and
    // the chart extract.ts reports beside the values image it asserts); upkeep reports 45 the
    // same (the issue asks for 39 of 49 at least; before issue 9 it was 41: the `sources:` and
    // Bucket rows differed). The 5 others are marked above with their reason: a lone digest
    // (scope), a tag holding a digest and an `oci://` HelmRepository without `type: oci` (Flux
    // refuses both: upkeep is right), an anchored tag (upkeep edits literals only), and a
    // namespace-less HelmChart (linked by its unique name; another item of issue 9). upkeep
    // also reports 11 objects Renovate drops without a word, each with its skip reason.
    assert_eq!((renovate_deps, agreed, rows), (50, 45, 61));
}
