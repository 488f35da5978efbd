//! The scan's reading pass: every file read, parsed and handed to the extractors (on every
//! core, for a repository of a thousand files or more), its parsed tree dropped as soon as
//! they have read it.
//!
//! Holding every file's tree until the end made a scan's memory grow with the repository: a
//! tree is ten to forty times its text (136 MiB for a repository of 10,000 HelmReleases in
//! 3 MB of YAML). Only two things need more than one file at a time:
//!
//! - the namespaces kustomize and Flux give each file ([`kustomize::layout_of`]), which the
//!   extractors need as they read. They come only from `kustomization.yaml` files and Flux
//!   `Kustomization`s, so those files are parsed first, and kept;
//! - the Flux graph, built at the end ([`super::flux_graph`]). It reads a few kinds of Flux
//!   objects, so a file holding one keeps its tree; every other file keeps its name and syntax
//!   error only, which is all the graph takes from it.
//!
//! Which files go first is decided from their text (`kustomize.toolkit.fluxcd.io`, or the
//! file's name), before they are parsed. A Flux `Kustomization` whose apiVersion the text
//! does not spell out (escapes in a double-quoted string) would have been missed: the pass
//! notices it, gives up, and the scan holds every tree instead ([`super::scan_holding_all`]),
//! so the answer is never different.

use super::load::{self, Unreadable};
use super::{Extraction, ScanOptions, SourceFile, flux_graph, kustomize, walk};

/// What the pass read.
pub(super) struct Read {
    /// Every listed file in order: parsed (with its documents dropped unless the Flux graph
    /// reads one), or why it could not be.
    pub(super) files: Vec<Result<SourceFile, Unreadable>>,
    /// The extractors' findings, every file read, not linked yet.
    pub(super) extraction: Extraction,
}

/// One listed file on its way through the pass.
enum Slot {
    /// Read once (it is UTF-8 text), and let go: read again when its turn comes, so a small
    /// repository's pass never holds more than one file's text. Reading a file twice costs a
    /// few microseconds; holding every text costs the size of the repository in memory.
    Unread,
    /// Read once, and held for its turn: see [`HELD_TEXT`].
    Held(String),
    /// Parsed: early, because it may shape the layout, or once the layout was known.
    Parsed(SourceFile),
    /// Not readable or not parsable within its budget.
    Failed(Unreadable),
}

/// Read, parse and extract every file. `None` when a layout document turned up in a file the
/// first look passed by: the caller then scans holding every tree.
///
/// The layout is worked out over the files that read as text. A file that then fails to parse
/// within its budget is still among them, where the scan holding every tree would not count it;
/// that changes only the namespace given to that file, which nothing reads.
pub(super) fn read(candidates: &[walk::Candidate], options: &ScanOptions) -> Option<Read> {
    let started = std::time::Instant::now();
    let mut slots = first_looks(candidates, options.file_budget);
    tracing::debug!("read every file and the layout files first in {:?}", started.elapsed());
    let layout = kustomize::layout_of(
        candidates.iter().zip(&slots).filter(|(_, s)| !matches!(s, Slot::Failed(_))).map(|(c, _)| c.relative.as_str()),
        slots.iter().filter_map(|s| match s {
            Slot::Parsed(file) => Some((file.relative.as_str(), &file.stream)),
            _ => None,
        }),
    );
    tracing::debug!("worked out the layout by {:?}", started.elapsed());
    let extraction = second_looks(candidates, &mut slots, &layout, options)?;
    let files = slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Parsed(file) => Some(Ok(file)),
            Slot::Failed(why) => Some(Err(why)),
            Slot::Unread | Slot::Held(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Read { files, extraction })
}

/// May this file shape the layout? Decided from its name and text, before parsing; a superset
/// of [`kustomize::shapes_layout`] for every file whose text spells out its apiVersion.
fn may_shape_layout(relative: &str, text: &str) -> bool {
    kustomize::is_kustomization_file(relative) || text.contains("kustomize.toolkit.fluxcd.io")
}

/// How much text a large repository's pass holds from the first look to the second, where a
/// small one's reads each file again. Reading 2,000 files a second time was a tenth of the
/// scan of a repository of 10,000 HelmReleases (open, stat, read, close: some 18 ms of CPU);
/// their 6 MB of text is a few percent of what their trees took before the pass was streamed.
/// A repository small enough to be read on one thread re-reads in a millisecond or two, and
/// there memory is the cost that shows (the corpus's peak RSS), so nothing is held. The bound
/// keeps a huge repository's memory from growing with it: past it, files are read again.
const HELD_TEXT: usize = 64 * 1024 * 1024;

/// Read every file, on every core for a large repository (is it text, may it shape the
/// layout?), and parse the ones that may.
fn first_looks(candidates: &[walk::Candidate], budget: std::time::Duration) -> Vec<Slot> {
    let threaded = load::chunking(candidates.len()).is_some();
    let held = std::sync::atomic::AtomicUsize::new(0);
    let hold = |text: String| {
        let size = text.len();
        let fits = threaded && held.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size <= HELD_TEXT;
        if fits { Slot::Held(text) } else { Slot::Unread }
    };
    let look = |candidate: &walk::Candidate| match load::read_text(candidate) {
        Err(why) => Slot::Failed(why),
        Ok(text) if may_shape_layout(&candidate.relative, &text) => match load::parse(candidate, text, budget) {
            Ok(file) => Slot::Parsed(file),
            Err(why) => Slot::Failed(why),
        },
        Ok(text) => hold(text),
    };
    load::on_threads(candidates, look, |c| Slot::Failed(load::internal_error(c)))
}

/// Parse what is left and hand every file to the extractors, a contiguous share of the files
/// per core, each share's findings joined in file order. `None` when a share found a layout
/// document the first look missed, or its thread panicked.
fn second_looks(
    candidates: &[walk::Candidate],
    slots: &mut [Slot],
    layout: &kustomize::Layout,
    options: &ScanOptions,
) -> Option<Extraction> {
    let share = |candidates: &[walk::Candidate], slots: &mut [Slot]| {
        let mut extraction = Extraction::new(&options.sources);
        let mut complete = true;
        for (candidate, slot) in candidates.iter().zip(slots.iter_mut()) {
            complete &= second_look(candidate, slot, layout, options.file_budget, &mut extraction);
        }
        complete.then_some(extraction)
    };
    let Some(chunk) = load::chunking(candidates.len()) else { return share(candidates, slots) };
    let shares: Vec<Option<Extraction>> = std::thread::scope(|s| {
        let handles: Vec<_> = candidates
            .chunks(chunk)
            .zip(slots.chunks_mut(chunk))
            .map(|(candidates, slots)| s.spawn(move || share(candidates, slots)))
            .collect();
        handles.into_iter().map(|h| h.join().ok().flatten()).collect()
    });
    let mut shares = shares.into_iter();
    let mut first = shares.next()??;
    for later in shares {
        first.merge(later?);
    }
    Some(first)
}

/// One file: parsed if it was not yet, extracted, and left with only what the Flux graph
/// reads. False when it holds a layout document the first look passed by.
fn second_look(
    candidate: &walk::Candidate,
    slot: &mut Slot,
    layout: &kustomize::Layout,
    budget: std::time::Duration,
    extraction: &mut Extraction,
) -> bool {
    // The file, and whether it was parsed only now (only then may it hold a layout document
    // the first look passed by).
    let parsed = match std::mem::replace(slot, Slot::Unread) {
        Slot::Parsed(file) => Ok((file, false)),
        Slot::Held(text) => load::parse(candidate, text, budget).map(|file| (file, true)),
        Slot::Unread => {
            load::read_text(candidate).and_then(|text| load::parse(candidate, text, budget)).map(|file| (file, true))
        }
        Slot::Failed(why) => Err(why),
    };
    let (file, late) = match parsed {
        Ok((file, now)) => {
            let late = now && file.stream.documents.iter().any(|d| kustomize::shapes_layout(&file.relative, &d.root));
            (file, late)
        }
        Err(why) => {
            *slot = Slot::Failed(why);
            return true;
        }
    };
    extraction.file(&file, layout);
    *slot = Slot::Parsed(keep_for_graph(file));
    !late
}

/// Drop what nothing after the extractors reads: the text, and the documents unless the Flux
/// graph reads one of them (then the whole stream, which it walks).
fn keep_for_graph(mut file: SourceFile) -> SourceFile {
    file.text = String::new();
    if !file.stream.documents.iter().any(|d| flux_graph::reads_document(&file.relative, &d.root)) {
        file.stream.documents = Vec::new();
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<walk::Candidate>) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (relative, text) in files {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path())).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        }
        let listing = walk::list(dir.path(), walk::DEFAULT_MAX_FILE_SIZE).unwrap_or_else(|e| panic!("{e}"));
        (dir, listing.files)
    }

    fn releases(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                (
                    format!("apps/app-{i}.yaml"),
                    format!("apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: app-{i}\n"),
                )
            })
            .collect()
    }

    #[test]
    fn trees_are_dropped_except_what_the_graph_reads() {
        let mut files = releases(100);
        files.push((
            "clusters/prod/git.yaml".into(),
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n".into(),
        ));
        files.push(("apps/kustomization.yaml".into(), "namespace: apps\nresources: [app-1.yaml]\n".into()));
        let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
        let (_dir, candidates) = repository(&refs);
        let read = read(&candidates, &ScanOptions::default()).unwrap_or_else(|| panic!("the streamed pass gave up"));
        let kept: Vec<(&str, usize)> = read
            .files
            .iter()
            .filter_map(|f| f.as_ref().ok())
            .filter(|f| !f.stream.documents.is_empty())
            .map(|f| (f.relative.as_str(), f.stream.documents.len()))
            .collect();
        assert_eq!(kept, [("apps/kustomization.yaml", 1), ("clusters/prod/git.yaml", 1)]);
        assert!(read.files.iter().flatten().all(|f| f.text.is_empty()), "texts are dropped too");
        assert_eq!(read.files.len(), 102);
    }

    #[test]
    fn a_layout_document_the_first_look_missed_gives_up() {
        let mut files = releases(70);
        files.push((
            "clusters/prod/apps.yaml".into(),
            "apiVersion: \"kustomize.toolkit.\\x66luxcd.io/v1\"\nkind: Kustomization\nspec:\n  path: ./apps\n".into(),
        ));
        let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
        let (_dir, candidates) = repository(&refs);
        assert!(read(&candidates, &ScanOptions::default()).is_none());
        // Spelled out, the same file is read first and the pass goes through.
        files.last_mut().unwrap_or_else(|| panic!("no file")).1 =
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nspec:\n  path: ./apps\n".into();
        let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
        let (_dir, candidates) = repository(&refs);
        assert!(read(&candidates, &ScanOptions::default()).is_some());
    }
}
