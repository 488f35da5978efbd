//! Reading and parsing the files a scan lists: the one place a file's bytes become a
//! [`SourceFile`], or an [`Unreadable`] that says why not.

use super::{SourceFile, mentions_managed_api, walk};
use crate::model::FileError;

/// A file that could not be read as UTF-8 text, or not parsed within its budget.
#[derive(Debug)]
pub(super) struct Unreadable {
    pub(super) error: FileError,
    /// True when it does not look like a manifest upkeep manages.
    pub(super) quiet: bool,
}

/// Below this many files a repository is read on the calling thread. A thread costs a stack and
/// a malloc arena that stays resident (about 2 MiB of peak memory for two on the corpus) and
/// saves about half of the parse, which for 700 files is some 20 ms: worth it only for large
/// repositories.
const THREADED_FROM: usize = 1_000;

/// The number of threads files are read on, and the chunk of files each takes: one chunk per
/// core (at most eight), or everything on this thread for a small repository.
pub(super) fn chunking(files: usize) -> Option<usize> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    (threads > 1 && files >= THREADED_FROM).then(|| files.div_ceil(threads))
}

/// A scoped thread's answer. Its panic is a bug, raised on this thread as it would have been
/// had the work not been shared out.
pub(super) fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Let go of `value` on a thread of its own when it holds `items` of a large repository's
/// things, so nothing waits for it: freeing what the extractors kept of 10,000 releases (some
/// 100,000 small allocations) took 3.5 ms, on the scan's serial path.
pub(super) fn drop_in_background<T: Send + 'static>(value: T, items: usize) {
    if chunking(items).is_some() {
        // Were no thread to be had, the value goes with the error, here and now.
        let _ = std::thread::Builder::new().name("upkeep-free".into()).spawn(move || drop(value));
    }
}

/// The error a chunk's files get when its thread panicked: said, never passed over.
pub(super) fn internal_error(candidate: &walk::Candidate) -> Unreadable {
    Unreadable {
        error: FileError {
            file: candidate.relative.clone(),
            line: None,
            column: None,
            message: "internal error while parsing this file; please report it".into(),
        },
        quiet: false,
    }
}

/// Read and parse files on every core; order is kept.
pub(super) fn load_all(
    candidates: &[walk::Candidate],
    budget: std::time::Duration,
) -> Vec<Result<SourceFile, Unreadable>> {
    on_threads(candidates, |c| read_text(c).and_then(|text| parse(c, text, budget)), |c| Err(internal_error(c)))
}

/// `look` at every file, a contiguous share of them per core, the answers in file order; a
/// share whose thread panicked gets `failed` for each of its files.
pub(super) fn on_threads<T: Send>(
    candidates: &[walk::Candidate],
    look: impl Fn(&walk::Candidate) -> T + Sync,
    failed: impl Fn(&walk::Candidate) -> T,
) -> Vec<T> {
    let Some(chunk) = chunking(candidates.len()) else { return candidates.iter().map(look).collect() };
    let look = &look;
    std::thread::scope(|s| {
        let handles: Vec<_> =
            candidates.chunks(chunk).map(|part| s.spawn(move || part.iter().map(look).collect::<Vec<_>>())).collect();
        handles
            .into_iter()
            .zip(candidates.chunks(chunk))
            .flat_map(|(h, part)| h.join().unwrap_or_else(|_| part.iter().map(&failed).collect()))
            .collect()
    })
}

/// A file's text: refused when it is UTF-16 or not UTF-8.
pub(super) fn read_text(candidate: &walk::Candidate) -> Result<String, Unreadable> {
    let fail = |message: String, quiet: bool| Unreadable {
        error: FileError { file: candidate.relative.clone(), line: None, column: None, message },
        quiet,
    };
    let bytes = std::fs::read(&candidate.path).map_err(|e| fail(format!("cannot read: {e}"), false))?;
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(fail("UTF-16 text is not supported; save the file as UTF-8".into(), false));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let managed = mentions_managed_api(e.as_bytes());
        let text = String::from_utf8_lossy(&e.as_bytes()[..at]);
        let line = text.matches('\n').count() + 1;
        let mut err = fail(format!("not UTF-8 (invalid byte at offset {at}); save the file as UTF-8"), !managed);
        err.error.line = Some(line);
        err
    })
}

/// Parse a file's text within `budget`.
pub(super) fn parse(
    candidate: &walk::Candidate,
    text: String,
    budget: std::time::Duration,
) -> Result<SourceFile, Unreadable> {
    let file = SourceFile::within(candidate.relative.clone(), text, budget);
    match &file.stream.error {
        // Not the file's fault, or not provably: said as what happened, never passed over
        // quietly, and nothing from it is used.
        Some(e) if file.stream.out_of_time => Err(Unreadable {
            error: FileError {
                file: candidate.relative.clone(),
                line: Some(e.line),
                column: Some(e.column),
                message: format!("not scanned: {} (stopped here); nothing in it was read", e.message),
            },
            quiet: false,
        }),
        _ => Ok(file),
    }
}
