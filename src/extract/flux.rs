//! Flux itself.
//!
//! - `gotk-components.yaml`, written by `flux bootstrap`/`flux install --export`, starts with a
//!   comment header `# Flux Version: v2.4.0` and `# Components: source-controller,...`
//!   (Renovate's flux manager reads the same header: `lib/modules/manager/flux/common.ts`;
//!   older files spell it `Flux version:`). The version is in a comment, so it is found in the
//!   text, not the YAML tree; its span is the version token itself.
//! - flux-operator's `FluxInstance` (`fluxcd.controlplane.io/v1`): `spec.distribution.version`,
//!   often a range such as `2.x`.
//!
//! Versions come from GitHub releases of fluxcd/flux2.

use super::{Extractor, Findings, ManifestDoc, SourceFile};
use crate::model::{Component, Datasource, Dependency, Kind, Location, Manifest, Package, Skip, SkipReason};

/// The Flux manager.
#[derive(Debug, Default)]
pub struct Flux;

fn flux_package() -> Package {
    Package {
        datasource: Datasource::GithubReleases,
        registry: "https://github.com".into(),
        name: "fluxcd/flux2".into(),
    }
}

/// Is this the file Flux bootstrap generates?
pub fn is_components_file(relative: &str) -> bool {
    matches!(relative.rsplit('/').next(), Some("gotk-components.yaml" | "gotk-components.yml"))
}

/// The header fields of a gotk-components file: version (with its byte span) and components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The version as written (`v2.4.0`).
    pub version: String,
    /// Byte range of the version in the file.
    pub span: std::ops::Range<usize>,
    /// 1-based line of the version.
    pub line: usize,
    /// 1-based column of the version.
    pub column: usize,
    /// The `# Components:` list, if present.
    pub components: Vec<String>,
}

/// Read the `# Flux Version:` header from the leading comment block.
pub fn read_header(text: &str) -> Option<Header> {
    let mut offset = 0;
    let mut found: Option<Header> = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_start_matches('\u{feff}').trim_end();
        let is_header = content.is_empty() || content.starts_with('#') || content == "---";
        if !is_header {
            break;
        }
        if let Some(rest) = content.strip_prefix('#') {
            let body = rest.trim_start();
            if let Some(value) = strip_prefix_ci(body, "flux version:") {
                let version = value.split_whitespace().next().unwrap_or("");
                if !version.is_empty() {
                    let col_in_line = line.find(version).unwrap_or(0);
                    let start = offset + col_in_line;
                    found = Some(Header {
                        version: version.to_string(),
                        span: start..start + version.len(),
                        line: i + 1,
                        column: line[..col_in_line].chars().filter(|&c| c != '\u{feff}').count() + 1,
                        components: Vec::new(),
                    });
                }
            } else if let (Some(header), Some(value)) = (found.as_mut(), strip_prefix_ci(body, "components:")) {
                header.components = value.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
            }
        }
        offset += line.len();
    }
    found
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn dir_of(relative: &str) -> &str {
    relative.rfind('/').map_or(".", |i| &relative[..i])
}

impl Extractor for Flux {
    fn id(&self) -> &'static str {
        "flux"
    }

    /// Nothing kept between documents: every finding goes straight to `Findings`.
    fn merge(&mut self, _later: Box<dyn Extractor>) {}

    fn file(&mut self, file: &SourceFile, out: &mut Findings) {
        if !is_components_file(&file.relative) {
            return;
        }
        let dir = dir_of(&file.relative).to_string();
        let mut dep = Dependency {
            id: format!("flux-components/{dir}"),
            kind: Kind::FluxComponents,
            component: Component::Flux,
            name: dir,
            namespace: Some("flux-system".into()),
            package: Some(flux_package()),
            current: None,
            location: None,
            skip: None,
            role: None,
            manifest: Manifest { file: file.relative.clone(), line: 1 },
            clusters: None,
        };
        match read_header(&file.text) {
            Some(header) => {
                dep.current = Some(header.version.clone());
                dep.location = Some(Location {
                    file: file.relative.clone(),
                    line: header.line,
                    column: header.column,
                    span: header.span,
                    verbatim: true,
                    in_comment: true,
                    block: false,
                    literal_tag: false,
                    digest: None,
                });
            }
            None => {
                dep.skip = Some(Skip {
                    reason: SkipReason::NoVersion,
                    message: "no `# Flux Version:` header; regenerate the file with `flux install --export` so the version is recorded".into(),
                });
            }
        }
        out.dependencies.push(dep);
    }

    fn document(&mut self, doc: &ManifestDoc<'_>, out: &mut Findings) {
        if doc.kind != "FluxInstance" || !doc.api_version.starts_with("fluxcd.controlplane.io/") {
            return;
        }
        let version = doc.version_at(&["spec", "distribution", "version"]);
        let name = doc.name_or_unnamed().to_string();
        let skip = match &doc.invalid {
            Some(message) => Some(Skip { reason: SkipReason::Unparsable, message: message.to_string() }),
            // The API server refuses an object without a name: it never reaches the cluster.
            None if doc.name.is_none() => Some(Skip {
                reason: SkipReason::Unnamed,
                message: format!(
                    "the FluxInstance at {}:{} has no metadata.name: the Kubernetes API server refuses an object without a name, so it is never applied; name it",
                    doc.file.relative, doc.doc.root.line
                ),
            }),
            None => version.problem("spec.distribution.version"),
        };
        out.dependencies.push(Dependency {
            id: format!("fluxinstance/{}/{}", doc.namespace.unwrap_or("-"), name),
            kind: Kind::FluxInstance,
            component: Component::Flux,
            name,
            namespace: doc.namespace.map(str::to_string),
            package: Some(flux_package()),
            current: version.value().map(str::to_string),
            location: version.location().cloned(),
            skip,
            role: None,
            manifest: doc.manifest(),
            clusters: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_spellings_of_the_header() {
        let text = "---\n# This manifest was generated by flux. DO NOT EDIT.\n# Flux Version: v0.31.3\n# Components: source-controller,helm-controller\napiVersion: v1\n";
        let h = read_header(text).unwrap_or_else(|| panic!("header expected"));
        assert_eq!(h.version, "v0.31.3");
        assert_eq!(&text[h.span.clone()], "v0.31.3");
        assert_eq!((h.line, h.column), (3, 17));
        assert_eq!(h.components, vec!["source-controller", "helm-controller"]);
        let old = "# Flux version: v0.13.4\n";
        assert_eq!(read_header(old).map(|h| h.version), Some("v0.13.4".into()));
    }

    #[test]
    fn a_version_comment_after_the_first_document_is_not_a_header() {
        assert_eq!(read_header("apiVersion: v1\n# Flux Version: v1.0.0\n"), None);
    }
}
