//! YAML that knows where every byte is.
//!
//! upkeep edits version strings in place, so it must know the exact byte range of every scalar
//! it reads. This module parses a YAML stream (all of its documents) into a small tree whose
//! scalars carry their **byte span in the original text**, their quoting style and whether the
//! source bytes are exactly the value (`verbatim`), which is what makes a one-scalar splice safe.
//!
//! Why saphyr-parser: it is the maintained pure-Rust YAML 1.2 parser (serde_yaml is archived,
//! serde_yml is unsound), it streams events with a [`saphyr_parser::Span`] for each, and it does
//! not expand aliases itself. Its markers count *characters*, not bytes, and a span starts at a
//! node's properties (`&anchor`, `!tag`) and includes quotes, so [`parse_stream`] maps characters
//! to bytes and re-locates each scalar's content itself.
//!
//! Aliases are kept as references and never expanded, so a "billion laughs" document costs time
//! and memory linear in its size. Nesting depth and node count are bounded; duplicate keys are
//! recorded (Kubernetes' own YAML loaders reject them) so callers can refuse such documents.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

mod block;

/// Deepest nesting of collections accepted. Kubernetes manifests rarely pass 30; the bound keeps
/// a hostile `[[[[…` from exhausting the stack when the tree is walked or dropped.
pub const MAX_DEPTH: usize = 256;

/// Most nodes accepted in one file, a guard against pathological inputs that pass the size cap.
pub const MAX_NODES: usize = 4_000_000;

/// Most bytes of scalar text that aliases may copy in one file. Collections are never expanded,
/// but an alias of a scalar reads as a copy of it; without a bound, a 2 MiB anchored string
/// aliased 500,000 times would ask for a terabyte.
pub const MAX_ALIAS_BYTES: usize = 16 * 1024 * 1024;

/// A parse failure, located in the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What the parser objected to.
    pub message: String,
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `value`
    Plain,
    /// `'value'`
    SingleQuoted,
    /// `"value"`
    DoubleQuoted,
    /// `|` block
    Literal,
    /// `>` block
    Folded,
}

impl From<ScalarStyle> for Style {
    fn from(s: ScalarStyle) -> Self {
        match s {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            ScalarStyle::Literal => Style::Literal,
            ScalarStyle::Folded => Style::Folded,
        }
    }
}

/// A scalar with its exact place in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The value as YAML reads it (escapes resolved, lines folded).
    pub value: String,
    /// How it was written.
    pub style: Style,
    /// Byte range of the scalar's content: inside the quotes for quoted scalars.
    pub span: Range<usize>,
    /// True when `source[span] == value`, i.e. the bytes can be replaced by a new value of the
    /// same style without re-escaping. Block scalars and folded or escaped text are not.
    pub verbatim: bool,
    /// Anchor id (0 = none), so aliases can be resolved.
    pub anchor: usize,
    /// Explicit tag, if any (`!!str`).
    pub tag: Option<String>,
    /// True when this node is an `*alias` of an anchored scalar: the value and span are the
    /// anchor's, so editing it would change every use of the anchor.
    pub alias: bool,
}

impl Scalar {
    /// A plain `~`, `null` or empty scalar: YAML's null.
    pub fn is_null(&self) -> bool {
        self.style == Style::Plain
            && self.tag.is_none()
            && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order (duplicates kept; see [`Document::duplicate_keys`]).
    Map(Vec<(Node, Node)>),
    /// `*alias` of a collection with this anchor id (aliases of scalars become
    /// [`NodeKind::Scalar`] with [`Scalar::alias`] set; collections are never expanded).
    Alias(usize),
}

/// A node and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Byte offset of its first character (properties included).
    pub start: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// 1-based column of `start`, in characters.
    pub column: usize,
}

impl Node {
    /// The scalar, if this is one.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar's value, if this is a non-null scalar.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().filter(|s| !s.is_null()).map(|s| s.value.as_str())
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` in a mapping (the last one, as Kubernetes' decoders would take).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().rev().find(|(k, _)| k.as_scalar().is_some_and(|s| s.value == key)).map(|(_, v)| v)
    }

    /// The value at a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The string at a path, if it is a non-null scalar.
    pub fn str_at(&self, keys: &[&str]) -> Option<&str> {
        self.path(keys)?.as_str()
    }
}

/// A duplicate mapping key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The key.
    pub key: String,
    /// Line of its first occurrence.
    pub first_line: usize,
    /// Line of the repeat.
    pub line: usize,
}

/// One document of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 0-based position in the stream.
    pub index: usize,
    /// The root node (a null scalar for an empty document).
    pub root: Node,
    /// Byte range the document occupies (from its first event to its end).
    pub range: Range<usize>,
    /// Keys that appear twice in one mapping.
    pub duplicate_keys: Vec<DuplicateKey>,
}

/// The documents parsed from one stream, and the error that stopped parsing, if one did.
///
/// Documents completed before a syntax error are kept: YAML streams are read document by
/// document, and one broken document should not hide the good ones before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Documents completed before any error.
    pub documents: Vec<Document>,
    /// The error that ended parsing early.
    pub error: Option<YamlError>,
    /// Parsing stopped because it ran past its time budget ([`parse_stream_within`]); `error`
    /// says where it was.
    pub out_of_time: bool,
}

/// Bytes per block of the character index in [`Positions`]: each lookup scans at most this many.
const BLOCK: usize = 64;

/// Maps parser character indices to byte offsets, and byte offsets to lines and columns, each in
/// time independent of where in the text (or how far into one long line) the position is.
///
/// A lookup that counted characters from the start of the line made a file of one long line
/// quadratic (a 2 MB flow mapping on one line held a scan for minutes; issue 9). Here the text
/// is indexed once: for every [`BLOCK`] bytes, how many characters start before it, so a
/// lookup is a binary search (or a division) and a scan of one block.
#[derive(Debug)]
pub struct Positions<'a> {
    text: &'a str,
    ascii: bool,
    /// `blocks[i]`: characters starting before byte `i * BLOCK` (empty for ASCII text, where
    /// characters and bytes are the same).
    blocks: Vec<usize>,
    line_starts: Vec<usize>,
    /// The text starts with a byte-order mark, which no column counts.
    bom: bool,
    /// (character index, byte offset) of the last character found: parser positions mostly
    /// move forward a little at a time, so the next lookup usually starts here instead of
    /// searching the index (a 10 MB line has 160,000 blocks).
    cursor: std::cell::Cell<(usize, usize)>,
    /// The 1-based line [`Positions::line_col`] found last.
    last_line: std::cell::Cell<usize>,
}

/// Does this byte start a character (is it not a UTF-8 continuation byte)?
fn starts_char(byte: u8) -> bool {
    byte & 0xC0 != 0x80
}

impl<'a> Positions<'a> {
    /// Index `text` for position lookups, in one pass.
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        // `match_indices` of a `char` searches with memchr, a word at a time.
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let ascii = text.is_ascii();
        let mut blocks = Vec::new();
        if !ascii {
            blocks.reserve(text.len() / BLOCK + 1);
            let mut chars = 0;
            for chunk in text.as_bytes().chunks(BLOCK) {
                blocks.push(chars);
                chars += chunk.iter().filter(|b| starts_char(**b)).count();
            }
            blocks.push(chars);
        }
        Positions {
            text,
            ascii,
            blocks,
            line_starts,
            bom: text.starts_with('\u{feff}'),
            cursor: std::cell::Cell::new((0, 0)),
            last_line: std::cell::Cell::new(1),
        }
    }

    /// Byte offset of the character at `char_index` (clamped to the end).
    pub fn byte_of(&self, char_index: usize) -> usize {
        let bytes = self.text.as_bytes();
        if self.ascii {
            return char_index.min(bytes.len());
        }
        let (mut chars, from) = match self.cursor.get() {
            (c, b) if c <= char_index && char_index - c <= BLOCK => (c, b),
            _ => {
                // The last block that starts at or before the character; `blocks[0]` is 0.
                let block = self.blocks.partition_point(|&c| c <= char_index).saturating_sub(1);
                (self.blocks[block], (block * BLOCK).min(bytes.len()))
            }
        };
        for (i, byte) in bytes[from..].iter().enumerate() {
            if starts_char(*byte) {
                if chars == char_index {
                    self.cursor.set((chars, from + i));
                    return from + i;
                }
                chars += 1;
            }
        }
        bytes.len()
    }

    /// Characters that start before `byte`.
    fn chars_before(&self, byte: usize) -> usize {
        let bytes = self.text.as_bytes();
        let byte = byte.min(bytes.len());
        if self.ascii {
            return byte;
        }
        let (chars, from) = match self.cursor.get() {
            (c, b) if b <= byte && byte - b <= BLOCK => (c, b),
            _ => (self.blocks[byte / BLOCK], byte / BLOCK * BLOCK),
        };
        chars + bytes[from..byte].iter().filter(|b| starts_char(**b)).count()
    }

    /// 1-based line and 1-based character column of a byte offset. A leading BOM is not counted.
    pub fn line_col(&self, byte: usize) -> (usize, usize) {
        // Parsers mostly ask about the line they asked about last, or the next one: try those
        // before searching every line.
        let last = self.last_line.get();
        let on = |line: usize| {
            line >= 1
                && self.line_starts.get(line - 1).is_some_and(|&s| s <= byte)
                && self.line_starts.get(line).is_none_or(|&next| byte < next)
        };
        let line = if on(last) {
            last
        } else if on(last + 1) {
            last + 1
        } else {
            self.line_starts.partition_point(|&s| s <= byte)
        };
        self.last_line.set(line);
        let start = self.line_starts[line - 1];
        let mut column = self.chars_before(byte) - self.chars_before(start) + 1;
        if line == 1 && self.bom && byte > 0 {
            column -= 1;
        }
        (line, column)
    }
}

/// Mappings up to this many keys are checked for duplicates pairwise, bigger ones with a table.
const SMALL_MAPPING: usize = 16;

/// An open collection. Its children so far sit at `children..` of [`Builder::pending`]: one
/// stack shared by every open collection, so a collection's `Vec` is allocated once, at its
/// exact size, when it closes, rather than grown (and copied) item by item while it is read.
/// That growth was most of the tree's cost.
struct Frame {
    start: usize,
    children: usize,
    map: bool,
}

struct Builder<'a> {
    text: &'a str,
    pos: Positions<'a>,
    stack: Vec<Frame>,
    /// The children of every open collection, innermost last (a mapping's as key, value, …).
    pending: Vec<Node>,
    nodes: usize,
    /// Bytes of scalar text copied by aliases so far (bounded by [`MAX_ALIAS_BYTES`]).
    alias_bytes: usize,
    doc_start: usize,
    root: Option<Node>,
    duplicate_keys: Vec<DuplicateKey>,
    /// Anchored scalars, so `*alias` of a scalar reads as that scalar (one copy per alias, which
    /// stays linear: collections are never copied).
    scalar_anchors: std::collections::HashMap<usize, Scalar>,
}

/// Parse every document of a YAML stream.
///
/// Never panics and never expands aliases; see the module docs for the bounds.
pub fn parse_stream(text: &str) -> Stream {
    parse_stream_within(text, None)
}

/// Events parsed between two looks at the clock: often enough to stop within milliseconds of
/// the budget, rarely enough to cost nothing (a stream shorter than this never looks).
const EVENTS_PER_CLOCK_CHECK: usize = 1024;

/// [`parse_stream`], giving up once parsing has taken longer than `budget`.
///
/// Parsing is linear in the text, so no file should come near a budget of seconds; the budget
/// is the second line of defence, so that one file a parser handles badly costs that file and
/// not the whole run.
///
/// Most manifests are read by a fast front end for the block YAML they are written in
/// ([`parse_stream_fast`]); any other file, or one it stops short in, is read by saphyr-parser
/// ([`parse_stream_general`]). The two build the same tree.
pub fn parse_stream_within(text: &str, budget: Option<std::time::Duration>) -> Stream {
    let deadline = budget.map(|b| (b, std::time::Instant::now() + b));
    block::parse(text, deadline.map(|(_, at)| at)).unwrap_or_else(|| general(text, deadline))
}

/// The fast front end alone: `None` when `text` uses anything it leaves to saphyr-parser.
/// Public for the tests that hold it to [`parse_stream_general`].
pub fn parse_stream_fast(text: &str) -> Option<Stream> {
    block::parse(text, None)
}

/// saphyr-parser alone, never the fast front end: the reference the fast one is tested against.
pub fn parse_stream_general(text: &str) -> Stream {
    general(text, None)
}

/// Parse through saphyr-parser's events, within the deadline if one is given.
fn general(text: &str, deadline: Option<(std::time::Duration, std::time::Instant)>) -> Stream {
    let mut b = Builder::new(text);
    let mut documents = Vec::new();
    let mut parser = Parser::new_from_str(text);
    let mut events: usize = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(e) => e,
            Err(e) => {
                let byte = b.pos.byte_of(e.marker().index());
                let (line, column) = b.pos.line_col(byte);
                let error = YamlError { line, column, message: e.info().to_string() };
                return Stream { documents, error: Some(error), out_of_time: false };
            }
        };
        if let Some((budget, deadline)) = deadline
            && events > 0
            && events.is_multiple_of(EVENTS_PER_CLOCK_CHECK)
            && std::time::Instant::now() >= deadline
        {
            let error = b.error_at(
                b.pos.byte_of(span.start.index()),
                format!("gave up: parsing took longer than the {budget:?} per-file budget"),
            );
            return Stream { documents, error: Some(error), out_of_time: true };
        }
        events += 1;
        match b.on_event(event, span) {
            Ok(Some(doc_end)) => {
                let document = b.end_document(documents.len(), doc_end);
                documents.push(document);
            }
            Ok(None) => {}
            Err(error) => return Stream { documents, error: Some(error), out_of_time: false },
        }
    }
    Stream { documents, error: None, out_of_time: false }
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        Builder {
            text,
            pos: Positions::new(text),
            stack: Vec::new(),
            pending: Vec::new(),
            nodes: 0,
            alias_bytes: 0,
            doc_start: 0,
            root: None,
            duplicate_keys: Vec::new(),
            scalar_anchors: std::collections::HashMap::new(),
        }
    }

    /// A document starts at `start` (its `---`, or its first node).
    fn start_document(&mut self, start: usize) {
        self.doc_start = start;
        self.root = None;
    }

    /// The document that started last ends at `end`: it is taken out, numbered `index`.
    fn end_document(&mut self, index: usize, end: usize) -> Document {
        let root = self.root.take().unwrap_or_else(|| self.null_at(self.doc_start));
        self.scalar_anchors.clear();
        Document {
            index,
            root,
            range: self.doc_start..end.max(self.doc_start),
            duplicate_keys: std::mem::take(&mut self.duplicate_keys),
        }
    }

    fn error_at(&self, byte: usize, message: impl Into<String>) -> YamlError {
        let (line, column) = self.pos.line_col(byte);
        YamlError { line, column, message: message.into() }
    }

    fn null_at(&self, byte: usize) -> Node {
        let (line, column) = self.pos.line_col(byte);
        Node {
            kind: NodeKind::Scalar(Scalar {
                value: String::new(),
                style: Style::Plain,
                span: byte..byte,
                verbatim: true,
                anchor: 0,
                tag: None,
                alias: false,
            }),
            start: byte,
            line,
            column,
        }
    }

    fn node(&self, kind: NodeKind, start: usize) -> Node {
        let (line, column) = self.pos.line_col(start);
        Node { kind, start, line, column }
    }

    /// Returns the end byte of a document when one completes.
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<Option<usize>, YamlError> {
        let start = self.pos.byte_of(span.start.index());
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => Ok(None),
            Event::DocumentStart(_) => {
                self.start_document(start);
                Ok(None)
            }
            Event::DocumentEnd => Ok(Some(start)),
            Event::SequenceStart(..) => {
                self.open(start, false)?;
                Ok(None)
            }
            Event::MappingStart(..) => {
                self.open(start, true)?;
                Ok(None)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.close_and_push()?;
                Ok(None)
            }
            Event::Alias(id) => {
                self.alias(id, start)?;
                Ok(None)
            }
            Event::Scalar(value, style, anchor, tag) => {
                let end = self.pos.byte_of(span.end.index());
                self.scalar(value.into_owned(), style.into(), start..end, anchor, tag.map(|t| t.to_string()))?;
                Ok(None)
            }
        }
    }

    /// A scalar event: `value` as YAML reads it, written at `event` (properties and quotes
    /// included).
    fn scalar(
        &mut self,
        value: String,
        style: Style,
        event: Range<usize>,
        anchor: usize,
        tag: Option<String>,
    ) -> Result<(), YamlError> {
        let scalar = self.locate_scalar(value, style, event.start, event.end, anchor, tag);
        let content_start = scalar.span.start;
        if anchor != 0 {
            self.scalar_anchors.insert(anchor, scalar.clone());
        }
        // A scalar's line and column are those of its content, where an editor's cursor goes.
        let node = self.node(NodeKind::Scalar(scalar), content_start);
        self.push(node)
    }

    /// `*alias` of the node anchored as `id`, written at `start`: a copy of an anchored scalar,
    /// or a reference to a collection (never expanded).
    fn alias(&mut self, id: usize, start: usize) -> Result<(), YamlError> {
        let kind = match self.scalar_anchors.get(&id) {
            Some(scalar) => {
                self.alias_bytes = self.alias_bytes.saturating_add(scalar.value.len());
                if self.alias_bytes > MAX_ALIAS_BYTES {
                    return Err(self.error_at(
                        start,
                        format!("aliases copy more than {} MiB of text in one file", MAX_ALIAS_BYTES >> 20),
                    ));
                }
                NodeKind::Scalar(Scalar { alias: true, ..scalar.clone() })
            }
            None => NodeKind::Alias(id),
        };
        let node = self.node(kind, start);
        self.push(node)
    }

    /// The innermost collection is complete: it becomes a node of its parent.
    fn close_and_push(&mut self) -> Result<(), YamlError> {
        match self.close() {
            Some(node) => self.push(node),
            None => Ok(()),
        }
    }

    fn open(&mut self, start: usize, map: bool) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error_at(start, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.stack.push(Frame { start, children: self.pending.len(), map });
        Ok(())
    }

    /// Close the innermost collection: its children leave the shared stack in one exact-size
    /// `Vec`. (A mapping always closes with a value for every key; a key left over would be a
    /// parser bug, and is dropped as the old per-mapping `pending_key` was.)
    fn close(&mut self) -> Option<Node> {
        let frame = self.stack.pop()?;
        let mut children = self.pending.drain(frame.children..);
        let kind = if frame.map {
            let mut entries = Vec::with_capacity(children.len() / 2);
            while let (Some(key), Some(value)) = (children.next(), children.next()) {
                entries.push((key, value));
            }
            drop(children);
            self.check_duplicates(&entries);
            NodeKind::Map(entries)
        } else {
            NodeKind::Seq(children.collect())
        };
        Some(self.node(kind, frame.start))
    }

    fn push(&mut self, node: Node) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error_at(node.start, format!("more than {MAX_NODES} YAML nodes in one file")));
        }
        if self.stack.is_empty() {
            self.root = Some(node);
        } else {
            self.pending.push(node);
        }
        Ok(())
    }

    fn check_duplicates(&mut self, entries: &[(Node, Node)]) {
        let keys = || entries.iter().filter_map(|(k, _)| k.as_scalar().map(|s| (s.value.as_str(), k.line)));
        // Most mappings have a handful of keys, where comparing each with the ones before it
        // is cheaper than hashing them all (it was 3% of a scan), or even than listing them
        // first (an allocation per mapping); a big one gets the table.
        if entries.len() <= SMALL_MAPPING {
            for (i, (key, line)) in keys().enumerate() {
                if let Some((_, first_line)) = keys().take(i).find(|&(k, _)| k == key) {
                    self.duplicate_keys.push(DuplicateKey { key: key.to_string(), first_line, line });
                }
            }
            return;
        }
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(entries.len());
        for (key, line) in keys() {
            if let Some(&first_line) = seen.get(key) {
                self.duplicate_keys.push(DuplicateKey { key: key.to_string(), first_line, line });
            } else {
                seen.insert(key, line);
            }
        }
    }

    /// Find the exact content bytes of a scalar whose event span runs from `start` to `end`.
    fn locate_scalar(
        &self,
        value: String,
        style: Style,
        start: usize,
        end: usize,
        anchor: usize,
        tag: Option<String>,
    ) -> Scalar {
        let bytes = self.text.as_bytes();
        let end = end.clamp(start, bytes.len());
        // Skip node properties (`&anchor`, `!tag`) and the whitespace after them.
        let mut s = start;
        while s < end && matches!(bytes[s], b'&' | b'!') {
            while s < end && !bytes[s].is_ascii_whitespace() {
                s += 1;
            }
            while s < end && bytes[s].is_ascii_whitespace() {
                s += 1;
            }
        }
        let (span, verbatim) = match style {
            Style::Plain => {
                if self.text.get(s..).is_some_and(|rest| rest.starts_with(value.as_str())) {
                    (s..s + value.len(), true)
                } else {
                    (s..trim_end(bytes, s, end), false)
                }
            }
            Style::SingleQuoted | Style::DoubleQuoted => {
                let quote = if style == Style::SingleQuoted { b'\'' } else { b'"' };
                if bytes.get(s) == Some(&quote) {
                    let close = closing_quote(bytes, s + 1, quote);
                    let content = s + 1..close;
                    let verbatim = self.text.get(content.clone()) == Some(value.as_str());
                    (content, verbatim)
                } else {
                    (s..trim_end(bytes, s, end), false)
                }
            }
            Style::Literal | Style::Folded => {
                // `|` / `>` header, then the content from its indentation. A one-line value is
                // exactly the first content line's bytes, which makes it safe to splice.
                // (The parser's span for a block scalar may stop short of its content, so look
                // past it; the equality check below is what makes the span trustworthy.)
                let limit = bytes.len();
                let header_end = match bytes.get(s) {
                    Some(b'|' | b'>') => self.text[s..limit].find('\n').map_or(limit, |i| s + i + 1),
                    _ => s, // the parser already points at the content
                };
                let mut c = header_end;
                while c < limit && bytes[c] == b' ' {
                    c += 1;
                }
                let line_end = self.text[c..limit].find('\n').map_or(limit, |i| c + i);
                let line_end = if line_end > c && bytes[line_end - 1] == b'\r' { line_end - 1 } else { line_end };
                let one_line = value.trim_end_matches(['\n', '\r']);
                if !one_line.is_empty() && !one_line.contains('\n') && self.text.get(c..line_end) == Some(one_line) {
                    (c..line_end, true)
                } else {
                    (s..trim_end(bytes, s, end), false)
                }
            }
        };
        Scalar { value, style, span, verbatim, anchor, tag, alias: false }
    }
}

fn trim_end(bytes: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && bytes[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

/// Position of the quote closing a quoted scalar whose content starts at `from`.
fn closing_quote(bytes: &[u8], from: usize, quote: u8) -> usize {
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        if quote == b'"' && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// Replace `span` of `text` with `replacement`: the one primitive edits are built from.
pub fn splice(text: &str, span: Range<usize>, replacement: &str) -> String {
    let mut out = String::with_capacity(text.len() + replacement.len());
    out.push_str(&text[..span.start]);
    out.push_str(replacement);
    out.push_str(&text[span.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar<'a>(doc: &'a Document, path: &[&str]) -> &'a Scalar {
        doc.root.path(path).and_then(Node::as_scalar).unwrap_or_else(|| panic!("no scalar at {path:?}"))
    }

    #[test]
    fn spans_are_exact_for_every_style() {
        let text =
            "a: plain\nb: 'single'\nc: \"double\"\nd: &x anchored\ne: !!str tagged\nf: [1.2, \"3.4\"]\ng: {h: '5'}\n";
        let stream = parse_stream(text);
        assert!(stream.error.is_none());
        let doc = &stream.documents[0];
        for (key, want) in [("a", "plain"), ("b", "single"), ("c", "double"), ("d", "anchored"), ("e", "tagged")] {
            let s = scalar(doc, &[key]);
            assert_eq!(&text[s.span.clone()], want, "key {key}");
            assert!(s.verbatim);
        }
        let seq = doc.root.get("f").and_then(Node::as_seq).unwrap_or_default();
        assert_eq!(&text[seq[1].as_scalar().map(|s| s.span.clone()).unwrap_or(0..0)], "3.4");
        assert_eq!(&text[scalar(doc, &["g", "h"]).span.clone()], "5");
    }

    #[test]
    fn bom_crlf_and_multibyte_text_keep_byte_spans() {
        let text = "\u{feff}# café ☕\r\nkey: \"ünï\"\r\n---\r\nother: 'v1.2.3'\r\n";
        let stream = parse_stream(text);
        assert!(stream.error.is_none(), "{:?}", stream.error);
        let first = scalar(&stream.documents[0], &["key"]);
        assert_eq!(&text[first.span.clone()], "ünï");
        let second = &stream.documents[1];
        let s = scalar(second, &["other"]);
        assert_eq!(&text[s.span.clone()], "v1.2.3");
        let node = second.root.get("other").map(|n| (n.line, n.column));
        assert_eq!(node, Some((4, 9)));
    }

    #[test]
    fn escaped_and_multi_line_block_scalars_are_not_verbatim() {
        let text = "a: \"x\\ty\"\nb: 'it''s'\nc: |\n  block\nd: >\n  folded\n  text\n";
        let doc = &parse_stream(text).documents[0];
        for key in ["a", "b", "d"] {
            assert!(!scalar(doc, &[key]).verbatim, "{key} should not be verbatim");
        }
        assert_eq!(&text[scalar(doc, &["b"]).span.clone()], "it''s");
        // A one-line block scalar is exactly its content line.
        let c = scalar(doc, &["c"]);
        assert!(c.verbatim);
        assert_eq!(&text[c.span.clone()], "block");
    }

    #[test]
    fn one_line_block_scalars_have_exact_spans_with_any_header_and_line_ending() {
        for text in [
            "version: |\n  1.2.3\n",
            "version: >-\n    1.2.3\nnext: x\n",
            "version: |+ # keep\r\n  1.2.3\r\n",
            "\u{feff}version: &v |2\n  1.2.3\n",
        ] {
            let doc = &parse_stream(text).documents[0];
            let s = scalar(doc, &["version"]);
            assert!(s.verbatim, "{text:?}");
            assert_eq!(&text[s.span.clone()], "1.2.3", "{text:?}");
        }
    }

    #[test]
    fn scalar_aliases_read_as_their_anchor_and_collections_stay_aliases() {
        let text = "v: &ver 1.2.3\nw: *ver\nm: &map {a: 1}\nn: *map\n";
        let doc = &parse_stream(text).documents[0];
        let w = scalar(doc, &["w"]);
        assert!(w.alias);
        assert_eq!(w.value, "1.2.3");
        assert_eq!(&text[w.span.clone()], "1.2.3");
        assert_eq!(doc.root.get("w").map(|n| n.line), Some(2));
        assert!(matches!(doc.root.get("n").map(|n| &n.kind), Some(NodeKind::Alias(_))));
    }

    #[test]
    fn billion_laughs_is_linear() {
        let mut text =
            String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for i in 1..40 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev}]\n"
            ));
        }
        let stream = parse_stream(&text);
        assert!(stream.error.is_none());
        let count = |n: &Node| n.as_map().map(|m| m.len()).unwrap_or(0);
        assert_eq!(count(&stream.documents[0].root), 40);
    }

    #[test]
    fn aliases_of_a_big_scalar_are_bounded() {
        let big = "x".repeat(1 << 20);
        let mut text = format!("a: &big {big}\nb: [");
        text.push_str(&"*big, ".repeat(100_000));
        text.push_str("]\n");
        let stream = parse_stream(&text);
        let err = stream.error.expect("copying 100 GB of aliases is refused");
        assert!(err.to_string().contains("aliases copy more than 16 MiB"), "{err}");
        // A handful of aliases of a big scalar are fine.
        let ok = parse_stream(&format!("a: &big {big}\nb: [*big, *big]\n"));
        assert!(ok.error.is_none());
    }

    #[test]
    fn duplicate_keys_are_recorded() {
        let doc = &parse_stream("a: 1\nb: 2\na: 3\n").documents[0];
        assert_eq!(doc.duplicate_keys, vec![DuplicateKey { key: "a".into(), first_line: 1, line: 3 }]);
        assert_eq!(doc.root.str_at(&["a"]), Some("3"));
        // Small and big mappings (pairwise and table checks) report the same way: each repeat
        // against the key's first line, in order.
        for size in [3, SMALL_MAPPING, SMALL_MAPPING + 1, 40] {
            let mut text: String = (0..size).map(|i| format!("k{i}: {i}\n")).collect();
            text.push_str("k1: again\nk0: again\nk1: thrice\n");
            let doc = &parse_stream(&text).documents[0];
            let want = vec![
                DuplicateKey { key: "k1".into(), first_line: 2, line: size + 1 },
                DuplicateKey { key: "k0".into(), first_line: 1, line: size + 2 },
                DuplicateKey { key: "k1".into(), first_line: 2, line: size + 3 },
            ];
            assert_eq!(doc.duplicate_keys, want, "{size} keys");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        let stream = parse_stream(&text);
        let err = stream.error.unwrap_or_else(|| panic!("expected an error"));
        // saphyr-parser has its own recursion limit; either bound is fine as long as it is an error.
        assert!(err.message.contains("nesting") || err.message.contains("recursion"), "{err}");
    }

    #[test]
    fn syntax_errors_keep_earlier_documents_and_locate_the_fault() {
        let stream = parse_stream("a: 1\n---\nb: [unclosed\n");
        assert_eq!(stream.documents.len(), 1);
        let err = stream.error.unwrap_or_else(|| panic!("expected an error"));
        assert_eq!(err.line, 4, "{err}");
    }

    #[test]
    fn positions_agree_with_counting_from_the_start() {
        // Multibyte characters straddling the index's block boundaries, a BOM, CRLF lines.
        let text = format!("\u{feff}a: é\r\n{}\nb: ☕{}\n", "ü".repeat(100), "x".repeat(70));
        let pos = Positions::new(&text);
        for (char_index, (byte, _)) in text.char_indices().enumerate() {
            assert_eq!(pos.byte_of(char_index), byte, "char {char_index}");
            let line_start = text[..byte].rfind('\n').map_or(0, |i| i + 1);
            let line = text[..byte].matches('\n').count() + 1;
            let column = text[line_start..byte].chars().filter(|&c| c != '\u{feff}').count() + 1;
            assert_eq!(pos.line_col(byte), (line, column), "byte {byte}");
        }
        assert_eq!(pos.byte_of(text.chars().count() + 5), text.len(), "clamped to the end");
        // Backwards and jumping about, past the cursor the forward lookups leave behind.
        let starts: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        for char_index in (0..starts.len()).rev().step_by(7).chain([3, 150, 2, 151, 90]) {
            assert_eq!(pos.byte_of(char_index), starts[char_index], "char {char_index}");
            let byte = starts[char_index];
            let line_start = text[..byte].rfind('\n').map_or(0, |i| i + 1);
            let column = text[line_start..byte].chars().filter(|&c| c != '\u{feff}').count() + 1;
            assert_eq!(pos.line_col(byte).1, column, "byte {byte}");
        }
    }

    #[test]
    fn a_long_line_costs_time_linear_in_its_length() {
        // 40,000 entries on one line: counting columns from the line's start took about 16 s.
        let mut text = String::from("a: {");
        for i in 0..40_000 {
            text.push_str(&format!("k{i}: é{i}, "));
        }
        text.push_str("last: x}\n");
        let started = std::time::Instant::now();
        let stream = parse_stream(&text);
        assert!(stream.error.is_none(), "{:?}", stream.error);
        let last = scalar(&stream.documents[0], &["a", "last"]);
        assert_eq!(&text[last.span.clone()], "x");
        assert!(started.elapsed().as_secs() < 30, "took {:?}", started.elapsed());
    }

    #[test]
    fn a_parse_over_its_budget_stops_with_an_error() {
        let text = format!("a: 1\n---\nb: [{}]\n", "x, ".repeat(5_000));
        let text = text.as_str();
        let stream = parse_stream_within(text, Some(std::time::Duration::ZERO));
        assert!(stream.out_of_time);
        let err = stream.error.unwrap_or_else(|| panic!("expected an error"));
        assert!(err.message.contains("per-file budget") && err.line == 3, "{err}");
        assert_eq!(stream.documents.len(), 1, "the document read before the deadline is kept");
        let within = parse_stream_within(text, Some(std::time::Duration::from_secs(60)));
        assert!(!within.out_of_time && within.error.is_none() && within.documents.len() == 2);
    }

    #[test]
    fn splice_replaces_only_the_span() {
        let text = "version: \"1.2.3\" # keep\n";
        let doc = &parse_stream(text).documents[0];
        let s = scalar(doc, &["version"]);
        assert_eq!(splice(text, s.span.clone(), "1.3.0"), "version: \"1.3.0\" # keep\n");
    }
}
