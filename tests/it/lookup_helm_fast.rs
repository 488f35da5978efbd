//! Issue 13: the line scanner for Helm indexes never answers differently from the YAML parser.
//!
//! For every index in `fixtures/mirror`, for generated indexes in many layouts (reordered keys,
//! flow style, block scalars, anchors, CRLF, comments, odd quoting), for byte-level mutations
//! of real indexes and for truncations of all of them: whenever the scanner answers, its answer
//! equals the parser's (restricted to the charts asked for); where the parser fails, the scanner
//! declines. And on the layout Helm writes, it does answer: every real index in the mirror is
//! read by the scanner, not handed back.

use std::collections::BTreeSet;
use std::path::PathBuf;

use proptest::prelude::*;
use upkeep::lookup::helm::{distil, parse_index, scan_only};

use super::util::fixture;

fn mirror_indexes() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![fixture("mirror")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "index.yaml") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path, text));
            }
        }
    }
    out.sort();
    out
}

type Charts = std::collections::BTreeMap<String, Vec<upkeep::model::Release>>;

/// The parser's answer restricted to `wanted`.
fn only(general: &Result<Charts, String>, wanted: Option<&BTreeSet<String>>) -> Result<Charts, String> {
    general.clone().map(|mut charts| {
        if let Some(w) = wanted {
            charts.retain(|name, _| w.contains(name));
        }
        charts
    })
}

/// The scanner (fed `chunk` bytes at a time) next to the parser's answer `general`: it either
/// declines or agrees. Returns why it declined, if it did.
fn agree_with(
    what: &str,
    text: &str,
    general: &Result<Charts, String>,
    wanted: Option<&BTreeSet<String>>,
    chunk: usize,
) -> Option<String> {
    let general = only(general, wanted);
    match scan_only(text.as_bytes(), wanted, chunk) {
        Ok(fast) => {
            match &general {
                Ok(general) => assert!(*general == fast, "{what}: the scanner and the parser disagree\n{text}"),
                Err(e) => panic!("{what}: the scanner answered where the parser fails ({e})\n{text}"),
            }
            None
        }
        Err(bail) => Some(format!("line {}: {}", bail.line, bail.why)),
    }
}

/// [`agree_with`], parsing `text` here, and [`distil`] gives the parser's answer.
fn agree(what: &str, text: &str, wanted: Option<&BTreeSet<String>>, chunk: usize) -> bool {
    let general = parse_index(text);
    assert_eq!(distil(text, wanted), only(&general, wanted), "{what}: distil is not the parser's answer");
    agree_with(what, text, &general, wanted, chunk).is_none()
}

#[test]
fn every_mirror_index_is_read_by_the_scanner_with_the_parsers_answer() {
    let indexes = mirror_indexes();
    assert!(indexes.len() > 100, "the mirror holds {} indexes", indexes.len());
    let mut declined = Vec::new();
    for (path, text) in &indexes {
        let what = path.strip_prefix(fixture("mirror")).unwrap_or(path).display().to_string();
        let general = parse_index(text);
        if let Some(why) = agree_with(&what, text, &general, None, 64 * 1024) {
            declined.push(format!("{what}: {why}"));
        }
        if text.len() > 300_000 {
            continue;
        }
        // Chunks that split lines and multibyte characters anywhere.
        agree_with(&what, text, &general, None, 4093);
        let charts: Vec<String> = general.as_ref().map(|c| c.keys().cloned().collect()).unwrap_or_default();
        let some: BTreeSet<String> = charts.iter().step_by(3).cloned().chain(["not-a-chart".to_string()]).collect();
        agree_with(&what, text, &general, Some(&some), 64 * 1024);
    }
    assert_eq!(declined, Vec::<String>::new(), "real indexes the scanner handed to the parser");
}

#[test]
fn truncated_mirror_indexes_are_declined_or_read_alike() {
    // Every index, cut at a few places each: mid-line, just before and just after a line break.
    for (n, (path, text)) in mirror_indexes().iter().enumerate() {
        let what = path.display().to_string();
        let len = text.len().min(16_000);
        for k in 1..3 {
            let mut cut = (len * k) / 3 + n % 13;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let newline = text[cut..].find('\n').map_or(text.len(), |i| cut + i);
            for at in [cut, newline, (newline + 1).min(text.len())] {
                agree(&format!("{what} cut at {at}"), &text[..at], None, 1 << 16);
            }
        }
    }
}

/// One chart version as the generator writes it.
#[derive(Debug, Clone)]
struct Version {
    version: String,
    created: Option<String>,
    deprecated: Option<String>,
    kube: Option<String>,
    digest: Option<String>,
    urls: Vec<String>,
    changes: Option<String>,
    description: String,
}

/// How the generator writes an index.
#[derive(Debug, Clone)]
struct Layout {
    indented_sequences: bool,
    reorder: u8,
    quoting: u8,
    flow: u8,
    block: u8,
    anchors: bool,
    crlf: bool,
    comments: u8,
    long_description: bool,
    extras: bool,
}

fn scalar(value: &str, quoting: u8, salt: usize) -> String {
    match (quoting + salt as u8) % 5 {
        0 | 1 => value.to_string(),
        2 => format!("'{}'", value.replace('\'', "''")),
        3 => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        _ if quoting % 2 == 1 => format!("\"{}\"", value.replace('.', "\\x2e")),
        _ => format!("\"{value}\""),
    }
}

fn render(charts: &[(String, Vec<Version>)], l: &Layout) -> String {
    let mut out = String::new();
    if l.comments > 0 {
        out.push_str("# generated\n");
    }
    let mut top = vec!["apiVersion: v1\n".to_string(), "generated: \"2024-05-01T10:00:00Z\"\n".to_string()];
    if l.extras {
        top.push("serverInfo:\n  contextPath: /v2\n".into());
    }
    let mut entries = String::from("entries:\n");
    let dash = if l.indented_sequences { "    - " } else { "  - " };
    let inner = " ".repeat(dash.len());
    for (c, (name, versions)) in charts.iter().enumerate() {
        let key = if l.quoting % 3 == 2 && c % 2 == 0 { format!("\"{name}\"") } else { name.clone() };
        if versions.is_empty() {
            entries.push_str(&format!("  {key}: []\n"));
            continue;
        }
        entries.push_str(&format!("  {key}:"));
        if l.comments > 1 {
            entries.push_str(" # a chart");
        }
        entries.push('\n');
        for (i, v) in versions.iter().enumerate() {
            if l.flow == 1 && i % 3 == 1 {
                entries.push_str(&format!("{dash}{{version: {}, urls: [{}]}}\n", v.version, v.urls.join(", ")));
                continue;
            }
            let mut fields: Vec<String> = Vec::new();
            fields.push(format!("version: {}\n", scalar(&v.version, l.quoting, i)));
            if let Some(created) = &v.created {
                fields.push(format!("created: {}\n", scalar(created, l.quoting, i + 1)));
            }
            if let Some(d) = &v.deprecated {
                fields.push(format!("deprecated: {d}\n"));
            }
            if let Some(k) = &v.kube {
                fields.push(format!("kubeVersion: {}\n", scalar(k, l.quoting, i + 2)));
            }
            if let Some(d) = &v.digest {
                let anchor = if l.anchors && i == 0 { "&dig " } else { "" };
                let value = if l.anchors && i == 1 { "*dig".to_string() } else { format!("{anchor}{d}") };
                fields.push(format!("digest: {value}\n"));
            }
            fields.push(if l.flow == 2 {
                format!("urls: [{}]\n", v.urls.join(", "))
            } else if v.urls.is_empty() {
                "urls: []\n".to_string()
            } else {
                let seq_dash = if l.indented_sequences { format!("{inner}  - ") } else { format!("{inner}- ") };
                let items: String = v.urls.iter().map(|u| format!("{seq_dash}{}\n", scalar(u, l.quoting, i))).collect();
                format!("urls:\n{items}")
            });
            if let Some(changes) = &v.changes {
                let header = ["|", "|-", "|+", ">", "|2", "|-4"][l.block as usize % 6];
                let body: String = changes
                    .lines()
                    .map(|line| if line.is_empty() { "\n".to_string() } else { format!("{inner}    {line}\n") })
                    .collect();
                let other = if l.extras { format!("{inner}  category: Database\n") } else { String::new() };
                fields.push(format!("annotations:\n{other}{inner}  artifacthub.io/changes: {header}\n{body}"));
            }
            if l.long_description {
                fields.push(format!("description: {}\n{inner}  continued on a second line\n", v.description));
            } else {
                fields.push(format!("description: {}\n", scalar(&v.description, l.quoting, i)));
            }
            if l.extras {
                fields.push(format!(
                    "maintainers:\n{inner}- email: someone@example.com\n{inner}  name: someone\ndependencies: []\n"
                ));
            }
            let n = fields.len();
            fields.rotate_left(l.reorder as usize % n);
            if l.reorder % 2 == 1 {
                fields.reverse();
            }
            for (j, f) in fields.iter().enumerate() {
                let lead = if j == 0 { dash.to_string() } else { inner.clone() };
                // Continuation lines of a field are written already indented past `inner`.
                let mut lines = f.split_inclusive('\n');
                if let Some(first) = lines.next() {
                    entries.push_str(&lead);
                    entries.push_str(first);
                }
                for rest in lines {
                    if rest.starts_with(&inner) || rest == "\n" {
                        entries.push_str(rest);
                    } else {
                        entries.push_str(&inner);
                        entries.push_str(rest);
                    }
                }
                if l.comments > 2 && j == 0 {
                    entries.push_str(&format!("{inner}# a comment between keys\n"));
                }
            }
        }
    }
    top.insert(l.reorder as usize % 3, entries);
    out.push_str(&top.concat());
    if l.crlf { out.replace('\n', "\r\n") } else { out }
}

fn version_strategy() -> impl Strategy<Value = Version> {
    (
        (0u32..3, 0u32..20, 0u32..20, prop::option::of("-(rc|beta)\\.[0-9]")),
        prop::option::of(Just("2024-05-01T10:00:00.123456789Z".to_string())),
        prop::option::of(prop::sample::select(vec!["true", "false", "\"true\"", "True", ""])),
        prop::option::of(prop::sample::select(vec![">=1.25.0-0", ">= 1.21", " "])),
        prop::option::of("[0-9a-f]{8}"),
        prop::collection::vec("https://example\\.com/[a-z]{1,6}(-[0-9])?\\.tgz", 0..3),
        prop::option::of(prop::sample::select(vec![
            "- kind: security\n  description: Fix CVE-2024-0001",
            "- kind: fixed\n  description: a bug\n\n- kind: added\n  description: \"a: feature\"",
            "- kind: changed\n  description: it's #1",
        ])),
        prop::sample::select(vec!["A chart", "it's: odd", "50% # off", "x:y", "- dash", "@at", "é ✓"]),
    )
        .prop_map(|((major, minor, patch, pre), created, deprecated, kube, digest, urls, changes, description)| {
            Version {
                version: format!("{major}.{minor}.{patch}{}", pre.unwrap_or_default()),
                created,
                deprecated: deprecated.map(str::to_string),
                kube: kube.map(str::to_string),
                digest,
                urls,
                changes: changes.map(str::to_string),
                description: description.to_string(),
            }
        })
}

fn layout_strategy() -> impl Strategy<Value = Layout> {
    (any::<bool>(), 0u8..8, 0u8..6, 0u8..3, 0u8..6, any::<bool>(), any::<bool>(), 0u8..4, any::<bool>(), any::<bool>())
        .prop_map(
            |(indented_sequences, reorder, quoting, flow, block, anchors, crlf, comments, long_description, extras)| {
                Layout {
                    indented_sequences,
                    reorder,
                    quoting,
                    flow,
                    block,
                    anchors: anchors && reorder % 4 == 0,
                    crlf: crlf && quoting == 0,
                    comments,
                    long_description,
                    extras,
                }
            },
        )
}

fn charts_strategy() -> impl Strategy<Value = Vec<(String, Vec<Version>)>> {
    prop::collection::vec(("[a-z][a-z0-9-]{0,8}", prop::collection::vec(version_strategy(), 0..4)), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_layouts_are_declined_or_read_alike(
        charts in charts_strategy(),
        layout in layout_strategy(),
        chunk in 1usize..200,
        cut in any::<prop::sample::Index>(),
    ) {
        let text = render(&charts, &layout);
        let wanted: BTreeSet<String> = charts.iter().step_by(2).map(|(n, _)| n.clone()).collect();
        agree("generated", &text, None, chunk);
        agree("generated, some charts", &text, Some(&wanted), 4096);
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        agree("generated, truncated", &text[..at], None, chunk);
    }

    #[test]
    fn mutated_real_indexes_are_declined_or_read_alike(
        which in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
            vec![":", ": ", " ", "\n", "  ", "- ", "#", " #", "\"", "'", "|", ">", "&a ", "*a", "{", "[]", "\\", "\t", "\r\n", "---\n", "é"]
        ), any::<bool>()), 1..4),
    ) {
        let samples = [
            "charts.jetstack.io/index.yaml",
            "kubernetes-sigs.github.io/metrics-server/index.yaml",
            "charts.longhorn.io/index.yaml",
            "bjw-s-labs.github.io/helm-charts/index.yaml",
            "kubernetes-sigs.github.io/external-dns/index.yaml",
            "coredns.github.io/helm/index.yaml",
        ];
        let mut text = std::fs::read_to_string(fixture(&format!("mirror/{}", samples[which])))
            .unwrap_or_else(|e| panic!("{e}"));
        // Keep the mutated file small: a window around the edits is what matters.
        text.truncate(text.char_indices().nth(4000).map_or(text.len(), |(i, _)| i));
        for (at, what, replace) in edits {
            let mut i = at.index(text.len());
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            if replace && i < text.len() {
                let end = text[i..].chars().next().map_or(i, |c| i + c.len_utf8());
                text.replace_range(i..end, what);
            } else {
                text.insert_str(i, what);
            }
        }
        agree("mutated", &text, None, 977);
    }
}

#[test]
fn the_scanner_reads_block_scalars_quotes_and_comments_like_the_parser() {
    let text = "# comment\napiVersion: v1\nentries:\n  \"app\":\n  - annotations:\n      artifacthub.io/changes: |-\n        - kind: security\n\n          description: \"Fix: CVE-1\"\n      other: >\n        folded\n    version: '1.0.0' # trailing\n    created: \"2024-05-01T10:00:00Z\"\n    description: a long\n      description\n    urls:\n    - https://example.com/app-1.0.0.tgz\n    kubeVersion: \">=1.25.0-0\"\n    digest: \"\"\n  - version: 0.9.0\n    deprecated: \"true\"\n    urls: []\n  empty: []\n  scalar: x\ngenerated: \"2024-05-01T10:00:00Z\"\n";
    assert!(agree("hand-written", text, None, 5), "the scanner declined a layout it reads");
    let charts = scan_only(text.as_bytes(), None, 5).unwrap_or_else(|b| panic!("{b:?}"));
    assert_eq!(charts.keys().collect::<Vec<_>>(), ["app", "empty"]);
    assert_eq!(charts["app"][0].version, "1.0.0");
    assert!(charts["app"][1].deprecated);
    assert!(charts["app"][0].notes.as_deref().is_some_and(|n| n.contains("Fix: CVE-1")));
}

#[test]
fn layouts_outside_the_scanners_are_declined_not_misread() {
    for (what, text) in [
        ("an anchor", "apiVersion: v1\nentries:\n  app:\n  - version: &v 1.0.0\n"),
        ("flow style", "apiVersion: v1\nentries:\n  app:\n  - {version: 1.0.0}\n"),
        ("CRLF", "apiVersion: v1\r\nentries:\r\n  app:\r\n  - version: 1.0.0\r\n"),
        ("a tab", "apiVersion: v1\nentries:\n  app:\n  - version:\t1.0.0\n"),
        ("two documents", "---\napiVersion: v1\nentries:\n  app:\n  - version: 1.0.0\n"),
        ("a kept value on two lines", "entries:\n  app:\n  - version: 1.0.0\n      -rc.1\n"),
        ("`: ` in a plain scalar", "entries:\n  app:\n  - description: a: b\n    version: 1.0.0\n"),
        ("an unclosed quote", "entries:\n  app:\n  - version: \"1.0.0\n"),
        ("no entries", "apiVersion: v1\n"),
    ] {
        assert!(scan_only(text.as_bytes(), None, 64).is_err(), "{what}: the scanner should decline");
        agree(what, text, None, 3);
    }
}

/// Serves the mirror twice: under `/fast/` verbatim (the layout the scanner reads), under
/// `/general/` behind an explicit document start, which the scanner declines at line 1 (the
/// parser reads the same document), so the same lookups take the general path.
struct TwoPathMirror {
    root: PathBuf,
}

impl wiremock::Respond for TwoPathMirror {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let path = request.url.path();
        let (prefix, rest) = match (path.strip_prefix("/fast/"), path.strip_prefix("/general/")) {
            (Some(rest), _) => ("", rest),
            (_, Some(rest)) => ("---\n", rest),
            _ => return wiremock::ResponseTemplate::new(404),
        };
        match std::fs::read(self.root.join(rest)) {
            Ok(body) => wiremock::ResponseTemplate::new(200).set_body_bytes([prefix.as_bytes(), &body].concat()),
            Err(_) => wiremock::ResponseTemplate::new(404),
        }
    }
}

/// `upkeep scan --format json` of `repo` with every Helm repository rewritten to
/// `base` (OCI and GitHub to where the server answers 404, so they fail the same way every
/// time, at once).
fn scan_report(repo: &str, base: &str, cache: &std::path::Path) -> String {
    use clap::Parser;
    let sources = std::fs::read_to_string(fixture("mirror/SOURCES.tsv")).unwrap_or_else(|e| panic!("{e}"));
    let mut config = String::from("registryRewrites:\n");
    for url in sources.lines().skip(1).filter_map(|l| l.split('\t').next()) {
        let hostpath = url.split_once("://").map_or(url, |(_, r)| r).trim_end_matches('/');
        config.push_str(&format!("  - {{from: '{url}', to: '{base}/{hostpath}'}}\n"));
    }
    let nowhere = format!("{}/nowhere", base.rsplit_once('/').map_or(base, |(server, _)| server));
    config.push_str(&format!(
        "  - {{from: 'oci://', to: '{nowhere}'}}\n  - {{from: 'https://api.github.com', to: '{nowhere}'}}\n"
    ));
    let file = cache.join("upkeep.yaml");
    std::fs::write(&file, config).unwrap_or_else(|e| panic!("{e}"));
    let root = fixture(&format!("corpus/{repo}"));
    let args = ["upkeep", "scan", "--format", "json", "--config"];
    let cli = upkeep::cli::Cli::try_parse_from(args.iter().map(std::ffi::OsStr::new).chain([
        file.as_os_str(),
        std::ffi::OsStr::new("--cache-dir"),
        cache.join("cache").as_os_str(),
        root.as_os_str(),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    upkeep::app::run(&cli, &mut out).unwrap_or_else(|e| panic!("{repo}: {e}"));
    String::from_utf8(out).unwrap_or_else(|e| panic!("{e}")).replace(base, "<mirror>")
}

/// Issue 13's "no behaviour visible in the scan JSON changes": every corpus repository's
/// report (dependencies, available versions, lookup errors) is the same whether its indexes
/// were read by the scanner, cold or from the cache it wrote, or by the YAML parser.
#[test]
fn corpus_reports_are_the_same_through_the_scanner_and_the_parser() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    let runtime = runtime.unwrap_or_else(|e| panic!("{e}"));
    let server = runtime.block_on(async {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(TwoPathMirror { root: fixture("mirror") })
            .mount(&server)
            .await;
        server
    });
    let repos = std::fs::read_dir(fixture("corpus")).unwrap_or_else(|e| panic!("{e}"));
    let mut repos: Vec<String> =
        repos.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    repos.sort();
    assert!(repos.len() >= 5, "{repos:?}");
    for repo in &repos {
        let (fast_dir, general_dir) = (tempfile::tempdir(), tempfile::tempdir());
        let (fast_dir, general_dir) =
            (fast_dir.unwrap_or_else(|e| panic!("{e}")), general_dir.unwrap_or_else(|e| panic!("{e}")));
        let fast = scan_report(repo, &format!("{}/fast", server.uri()), fast_dir.path());
        let general = scan_report(repo, &format!("{}/general", server.uri()), general_dir.path());
        assert!(fast.contains("\"dependencies\""), "{repo}: {fast}");
        assert_eq!(fast, general, "{repo}: the report differs between the scanner and the parser");
        let warm = scan_report(repo, &format!("{}/fast", server.uri()), fast_dir.path());
        assert_eq!(warm, fast, "{repo}: the report differs when read back from the cache");
    }
    drop(server);
}

/// A cache entry holds only the charts it was distilled for: a later run asking for another
/// chart of the same index must not read "not listed" from it, and the entry grows to cover
/// both (a fleet sharing one cache does not evict itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_entry_answers_only_for_the_charts_it_was_distilled_for() {
    use std::sync::atomic::Ordering;
    use upkeep::lookup::Lookup;
    use upkeep::model::{Datasource, Package};
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(root.path().join("repo")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        root.path().join("repo/index.yaml"),
        "apiVersion: v1\nentries:\n  app:\n  - version: 1.0.0\n  other:\n  - version: 2.0.0\n  - version: 2.1.0\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(super::servers::Mirror { root: root.path().to_path_buf() })
        .mount(&server)
        .await;
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let chart = |name: &str| Package {
        datasource: Datasource::Helm,
        registry: format!("{}/repo", server.uri()),
        name: name.into(),
    };
    let run = |names: &[&str]| {
        let packages: Vec<Package> = names.iter().map(|n| chart(n)).collect();
        let cache = cache.path().to_path_buf();
        async move {
            let lookup = Lookup::new(super::servers::context(&[], Some(&cache), super::servers::test_http()));
            let results = lookup.all(&packages).await;
            let not_modified = lookup.context().http.stats.not_modified.load(Ordering::Relaxed);
            let versions: Vec<usize> = packages.iter().map(|p| results[p].as_ref().map_or(0, |r| r.len())).collect();
            (versions, not_modified)
        }
    };
    assert_eq!(run(&["app"]).await, (vec![1], 0));
    // Without the entry's scope this would be a 304 and "`other` is not in this index".
    assert_eq!(run(&["other"]).await, (vec![2], 0), "a chart outside the cached entry is fetched");
    assert_eq!(run(&["app", "other"]).await, (vec![1, 2], 1), "the entry now covers both: one 304");
}

/// A chart asked for after the run announced its charts still gets its answer (the index is
/// read again for it), never a false "not listed".
#[tokio::test]
async fn a_chart_asked_for_past_the_announced_ones_is_still_found() {
    use std::sync::Arc;
    use upkeep::lookup::Datasource as _;
    use upkeep::lookup::helm::HelmIndex;
    use upkeep::model::{Datasource, Package};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/repo/index.yaml"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_string(
                "apiVersion: v1\nentries:\n  app:\n  - version: 1.0.0\n  other:\n  - version: 2.0.0\n",
            ),
        )
        .expect(2)
        .mount(&server)
        .await;
    let chart = |name: &str| Package {
        datasource: Datasource::Helm,
        registry: format!("{}/repo", server.uri()),
        name: name.into(),
    };
    let helm = HelmIndex::new(Arc::new(super::servers::context(&[], None, super::servers::test_http())));
    helm.want([&chart("app")]);
    let app = helm.releases(&chart("app")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app[0].version, "1.0.0");
    let other = helm.releases(&chart("other")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other[0].version, "2.0.0");
    let missing = helm.releases(&chart("nope")).await.unwrap_err();
    assert!(missing.message.contains("not in this repository's index"), "{missing}");
}
