//! A fast front end for the YAML that manifests are written in.
//!
//! Nearly every manifest is the same small part of YAML: block mappings and sequences indented
//! with spaces; plain and simply quoted scalars on one line; `[a, b]` and `{k: v}` on one line;
//! `|` and `>` block scalars; `&anchors` and `*aliases`; comments and `---` between documents.
//! saphyr-parser reads that at about 35 MB/s a core, character by character through a general
//! scanner, and was most of a scan's time: 10,000 HelmReleases took a quarter of a second.
//!
//! This reads that part a line at a time and drives the same [`Builder`] saphyr's events do,
//! with the positions saphyr gives them, so the tree is the same to the byte. The moment it
//! meets anything else (a tag, an escape, a multi-line plain or quoted scalar, a tab, a
//! carriage return, odd indentation, a syntax error) it gives up on the whole file and
//! [`parse`] returns `None`: the file is then parsed by saphyr from the start. It never
//! answers differently; it only answers less often. `tests/it/yaml_block.rs` holds the two
//! front ends to each other on every YAML file of the fixtures (the fast one reads 97% of the
//! corpus), on generated documents, and on mutated and truncated ones.

use std::ops::Range;
use std::time::Instant;

use super::{Builder, Document, Stream, Style};

/// Lines read between two looks at the clock.
const LINES_PER_CLOCK_CHECK: usize = 1024;

/// Longest key read here; YAML caps implicit keys at 1024 characters, and saphyr says so.
const MAX_KEY: usize = 1000;

/// Parse `text` if it is written entirely in the part of YAML this front end reads; `None`
/// otherwise, or when `deadline` passes first.
pub(super) fn parse(text: &str, deadline: Option<Instant>) -> Option<Stream> {
    if !plain_text(text) || deadline.is_some_and(|d| Instant::now() >= d) {
        return None;
    }
    let mut reader = Reader {
        b: text.as_bytes(),
        text,
        next: 0,
        peeked: None,
        lines: 0,
        deadline,
        builder: Builder::new(text),
        anchors: std::collections::HashMap::new(),
        anchors_seen: 0,
    };
    reader.stream().ok()
}

/// Bytes that YAML treats specially, or that saphyr may read differently from this front end:
/// control characters (tabs and carriage returns among them), a byte-order mark, and the
/// non-ASCII line breaks and non-characters.
fn plain_text(text: &str) -> bool {
    // A chunk at a time, without stopping at the first hit inside one, so the compiler can
    // test many bytes in one instruction: a byte at a time, this was a percent of a scan.
    let control = |b: u8| (b < 0x20 && b != b'\n') | (b == 0x7f);
    if text.as_bytes().chunks(64).any(|chunk| chunk.iter().fold(false, |found, &b| found | control(b))) {
        return false;
    }
    text.is_ascii()
        || !text
            .chars()
            .any(|c| matches!(c, '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'))
}

/// Anything outside the part of YAML read here (the file goes to saphyr).
#[derive(Debug)]
struct Unsupported;

type Fast<T> = Result<T, Unsupported>;

impl From<super::YamlError> for Unsupported {
    fn from(_: super::YamlError) -> Self {
        Unsupported
    }
}

/// A line holding something other than blanks and a comment.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    /// Spaces before its content.
    indent: usize,
    /// End of the line, before its `\n`.
    end: usize,
}

impl Line {
    fn content(&self) -> usize {
        self.start + self.indent
    }
}

/// A scalar as written: `event` from its first byte (a quote included) to its last, `value`
/// the bytes that are its value (no escapes and no folding are read here, so it is a slice).
#[derive(Debug, Clone)]
struct Token {
    event: Range<usize>,
    value: Range<usize>,
    style: Style,
}

struct Reader<'a> {
    b: &'a [u8],
    text: &'a str,
    /// Where the next unread line starts.
    next: usize,
    /// The next content line, once looked at.
    peeked: Option<Option<Line>>,
    lines: usize,
    deadline: Option<Instant>,
    builder: Builder<'a>,
    /// This document's anchors by name, and how many the stream has had.
    anchors: std::collections::HashMap<&'a str, usize>,
    anchors_seen: usize,
}

impl<'a> Reader<'a> {
    /// Every document, as saphyr numbers and bounds them: a document starts at its `---` or at
    /// its first node, and ends where the next `---` or the end of the text is.
    fn stream(&mut self) -> Fast<Stream> {
        let mut documents: Vec<Document> = Vec::new();
        let mut marker: Option<usize> = None;
        loop {
            let line = self.peek()?;
            match line {
                Some(line) if self.is_document_marker(line)? => {
                    if let Some(start) = marker {
                        self.empty_document(&mut documents, start, line.start)?;
                    }
                    marker = Some(line.start);
                    self.advance();
                }
                Some(line) => {
                    if line.indent != 0 {
                        return Err(Unsupported);
                    }
                    self.builder.start_document(marker.take().unwrap_or(line.start));
                    self.anchors.clear();
                    self.node(line, None)?;
                    let end = match self.peek()? {
                        None => self.b.len(),
                        Some(next) if self.is_document_marker(next)? => next.start,
                        Some(_) => return Err(Unsupported),
                    };
                    documents.push(self.builder.end_document(documents.len(), end));
                }
                None => {
                    if let Some(start) = marker {
                        self.empty_document(&mut documents, start, self.b.len())?;
                    }
                    return Ok(Stream { documents, error: None, out_of_time: false });
                }
            }
        }
    }

    /// `---` with nothing after it before `end`: a document holding one empty scalar.
    fn empty_document(&mut self, documents: &mut Vec<Document>, start: usize, end: usize) -> Fast<()> {
        self.builder.start_document(start);
        self.builder.scalar(String::new(), Style::Plain, end..end, 0, None)?;
        documents.push(self.builder.end_document(documents.len(), end));
        Ok(())
    }

    /// Is this line `---` (with only a comment after it)? Any other line starting with `---`
    /// or `...`, or a directive, is not read here.
    fn is_document_marker(&self, line: Line) -> Fast<bool> {
        if line.indent != 0 {
            return Ok(false);
        }
        let rest = &self.b[line.start..line.end];
        if rest.starts_with(b"%") || rest.starts_with(b"...") {
            return Err(Unsupported);
        }
        if !rest.starts_with(b"---") {
            return Ok(false);
        }
        match rest.get(3) {
            None => Ok(true),
            Some(b' ') if self.only_comment(line.start + 3, line.end) => Ok(true),
            _ => Err(Unsupported),
        }
    }

    /// The next line with content, skipping blank and comment lines; not consumed.
    fn peek(&mut self) -> Fast<Option<Line>> {
        if let Some(line) = self.peeked {
            return Ok(line);
        }
        let found = loop {
            if self.next >= self.b.len() {
                break None;
            }
            self.lines += 1;
            if self.lines.is_multiple_of(LINES_PER_CLOCK_CHECK) && self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Unsupported);
            }
            let start = self.next;
            let end = self.b[start..].iter().position(|&b| b == b'\n').map_or(self.b.len(), |i| start + i);
            let indent = self.b[start..end].iter().take_while(|&&b| b == b' ').count();
            match self.b.get(start + indent) {
                None | Some(b'\n' | b'#') => self.next = end + 1,
                // Unread until `advance`.
                Some(_) => break Some(Line { start, indent, end }),
            }
        };
        self.peeked = Some(found);
        Ok(found)
    }

    /// The peeked line is read.
    fn advance(&mut self) {
        if let Some(Some(line)) = self.peeked.take() {
            self.next = line.end + 1;
        }
    }

    /// A block node whose first line is `line` (more indented than its parent), starting at
    /// `props` when an anchor stands before it.
    fn node(&mut self, line: Line, props: Option<usize>) -> Fast<()> {
        let at = line.content();
        if self.is_entry(at, line.end) {
            self.sequence(line, props.unwrap_or(at), false)
        } else if let Some(key) = self.key(at, line.end)? {
            self.mapping(line.indent, key, props.unwrap_or(at))
        } else {
            Err(Unsupported)
        }
    }

    /// Is there a block sequence entry (`-` then a space or the end of the line) at `at`?
    fn is_entry(&self, at: usize, end: usize) -> bool {
        self.b.get(at) == Some(&b'-') && (at + 1 == end || self.b.get(at + 1) == Some(&b' '))
    }

    /// A block sequence whose first `-` is on `line`, starting at `start`. saphyr starts it at
    /// that `-` or at its anchor, or, for a sequence at its key's own indentation
    /// (`key:\n- a`, `indentless`) without an anchor, at the first entry's content.
    fn sequence(&mut self, line: Line, start: usize, indentless: bool) -> Fast<()> {
        self.builder.open(start, false)?;
        let mut line = line;
        loop {
            self.entry(line)?;
            match self.peek()? {
                Some(next) if next.indent == line.indent && self.is_entry(next.content(), next.end) => line = next,
                Some(next) if next.indent > line.indent => return Err(Unsupported),
                Some(next) if next.indent == line.indent && !indentless && !self.is_document_marker(next)? => {
                    return Err(Unsupported);
                }
                _ => break,
            }
        }
        Ok(self.builder.close_and_push()?)
    }

    /// One `- …` entry of a sequence, its line not yet read.
    fn entry(&mut self, line: Line) -> Fast<()> {
        let at = self.skip_spaces(line.content() + 1, line.end);
        if at < line.end
            && let Some(key) = self.key(at, line.end)?
        {
            return self.mapping(at - line.start, key, at);
        }
        self.value(line, at, line.indent, None)
    }

    /// A block mapping whose keys are `indent` spaces in, the first one `first` (with its
    /// colon); it starts at `start` (its anchor, or its first key).
    fn mapping(&mut self, indent: usize, first: (Token, usize), start: usize) -> Fast<()> {
        self.builder.open(start, true)?;
        let mut key = first;
        loop {
            self.pair(indent, key)?;
            match self.peek()? {
                Some(next) if next.indent == indent && !self.is_document_marker(next)? => {
                    // Anything but a key here (a `- ` entry among them) is left to saphyr.
                    key = self.key(next.content(), next.end)?.ok_or(Unsupported)?;
                }
                Some(next) if next.indent > indent => return Err(Unsupported),
                _ => break,
            }
        }
        Ok(self.builder.close_and_push()?)
    }

    /// `key: value` on the peeked line, the key read already, the value on that line or
    /// nested below it.
    fn pair(&mut self, indent: usize, (key, colon): (Token, usize)) -> Fast<()> {
        let Some(line) = self.peek()? else { return Err(Unsupported) };
        self.scalar(&key, None)?;
        let value = self.skip_spaces(colon + 1, line.end);
        self.value(line, value, indent, Some(colon))
    }

    /// The value of a pair (whose colon is at `colon`) or of a sequence entry, from `at` on the
    /// peeked `line`: on the line, or nested below it when the line ends there. `indent` is the
    /// parent's: what is nested must be indented further.
    fn value(&mut self, line: Line, at: usize, indent: usize, colon: Option<usize>) -> Fast<()> {
        let (at, anchor) = match self.b.get(at) {
            Some(b'&') if at < line.end => {
                let (id, next) = self.anchor(at, line.end)?;
                (next, Some((id, at)))
            }
            _ => (at, None),
        };
        if at == line.end || self.b[at] == b'#' {
            self.advance();
            return self.nested(indent, colon, anchor.map(|(_, at)| at));
        }
        if self.is_entry(at, line.end) {
            return Err(Unsupported);
        }
        match self.b[at] {
            b'|' | b'>' if anchor.is_none() => self.block_scalar(line, at, indent),
            b'*' if anchor.is_none() => {
                let end = self.alias(at, line.end)?;
                if !self.only_comment(end, line.end) {
                    return Err(Unsupported);
                }
                self.advance();
                Ok(())
            }
            _ => {
                self.inline_value(at, line.end, anchor)?;
                self.advance();
                Ok(())
            }
        }
    }

    /// What a key or an entry holds when its line ends: a block node below it, more indented
    /// (from `props`, its anchor, when it has one), an indentless sequence under a key, or
    /// nothing: a null, which saphyr places at the key's colon.
    fn nested(&mut self, indent: usize, colon: Option<usize>, props: Option<usize>) -> Fast<()> {
        match (self.peek()?, colon) {
            (Some(next), _) if next.indent > indent => self.node(next, props),
            (Some(next), Some(_)) if next.indent == indent && self.is_entry(next.content(), next.end) => {
                let first = self.skip_spaces(next.content() + 1, next.end);
                if first == next.end || self.b[first] == b'#' {
                    return Err(Unsupported);
                }
                self.sequence(next, props.unwrap_or(first), true)
            }
            (_, Some(colon)) if props.is_none() => {
                Ok(self.builder.scalar(String::new(), Style::Plain, colon..colon, 0, None)?)
            }
            _ => Err(Unsupported),
        }
    }

    /// A key at `at` and the colon after it, if the line holds `key:` (followed by a space or
    /// the end of the line) there.
    fn key(&self, at: usize, end: usize) -> Fast<Option<(Token, usize)>> {
        let token = match self.b.get(at) {
            Some(b'"' | b'\'') => self.quoted(at, end)?,
            Some(_) if self.plain_may_start(at, end, false) => self.plain(at, end, false)?,
            _ => return Ok(None),
        };
        let colon = token.event.end;
        let is_key = self.b.get(colon) == Some(&b':') && (colon + 1 == end || self.b.get(colon + 1) == Some(&b' '));
        if is_key && token.event.len() > MAX_KEY {
            return Err(Unsupported);
        }
        Ok(is_key.then_some((token, colon)))
    }

    /// `&name` at `at`: a new anchor id (saphyr numbers anchors in the order they appear,
    /// across the stream) and where the node it names starts.
    fn anchor(&mut self, at: usize, end: usize) -> Fast<(usize, usize)> {
        let name = self.name(at, end, false)?;
        self.anchors_seen += 1;
        self.anchors.insert(&self.text[name.clone()], self.anchors_seen);
        Ok((self.anchors_seen, self.skip_spaces(name.end, end)))
    }

    /// `*name` at `at`, of an anchor of this document; returns where it ends.
    fn alias(&mut self, at: usize, end: usize) -> Fast<usize> {
        let name = self.name(at, end, true)?;
        let Some(&id) = self.anchors.get(&self.text[name.clone()]) else { return Err(Unsupported) };
        self.builder.alias(id, at)?;
        Ok(name.end)
    }

    /// The name after `&` or `*` at `at`: letters, digits, `_`, `-` and `.` only here, ending
    /// at a space, the end of the line or (in a flow collection) a flow indicator.
    fn name(&self, at: usize, end: usize, flow_ends: bool) -> Fast<Range<usize>> {
        let from = at + 1;
        let mut i = from;
        while i < end && (self.b[i].is_ascii_alphanumeric() || matches!(self.b[i], b'_' | b'-' | b'.')) {
            i += 1;
        }
        let ends = i == end || self.b[i] == b' ' || (flow_ends && matches!(self.b[i], b',' | b']' | b'}'));
        if i == from || !ends {
            return Err(Unsupported);
        }
        Ok(from..i)
    }

    /// A scalar or a flow collection as a block value, alone on the rest of its line.
    fn inline_value(&mut self, at: usize, end: usize, anchor: Option<(usize, usize)>) -> Fast<()> {
        let after = match self.b[at] {
            b'[' | b'{' => self.flow(at, end, anchor.map_or(at, |(_, amp)| amp))?,
            b'"' | b'\'' => {
                let token = self.quoted(at, end)?;
                self.scalar(&token, anchor)?;
                token.event.end
            }
            _ if self.plain_may_start(at, end, false) => {
                let token = self.plain(at, end, false)?;
                if self.b.get(token.event.end) == Some(&b':') {
                    return Err(Unsupported);
                }
                self.scalar(&token, anchor)?;
                token.event.end
            }
            _ => return Err(Unsupported),
        };
        match self.b.get(after) {
            _ if after == end => Ok(()),
            Some(b' ') if self.only_comment(after, end) => Ok(()),
            _ => Err(Unsupported),
        }
    }

    /// A block scalar whose header (`|`, `>`, with `-` or `+`) is at `at`, its lines below,
    /// indented further than `indent`. Only the plain cases are read here: no indentation
    /// digit, no leading blank line, no blank line with spaces past the content's indentation,
    /// and, folded, no more-indented line (where folding keeps line breaks).
    fn block_scalar(&mut self, line: Line, at: usize, indent: usize) -> Fast<()> {
        let folded = self.b[at] == b'>';
        let (chomp, header_end) = match self.b.get(at + 1) {
            Some(&c @ (b'-' | b'+')) if at + 1 < line.end => (c, at + 2),
            _ => (b' ', at + 1),
        };
        if !self.only_comment(header_end, line.end) {
            return Err(Unsupported);
        }
        let block = block_lines(self.b, line.end + 1, indent, folded)?;
        let mut value = String::with_capacity(block.end - block.start);
        for (i, &(range, blanks_before)) in block.lines.iter().enumerate() {
            if i > 0 {
                // Folded, a line break becomes a space, or is dropped before blank lines (each
                // of which is a line break); literal, every line break is kept.
                match (folded, blanks_before) {
                    (true, 0) => value.push(' '),
                    (true, _) => {}
                    (false, _) => value.push('\n'),
                }
                (0..blanks_before).for_each(|_| value.push('\n'));
            }
            value.push_str(&self.text[range.0..range.1]);
        }
        match chomp {
            b'-' => {}
            b'+' => (0..=block.trailing_blanks).for_each(|_| value.push('\n')),
            _ => value.push('\n'),
        }
        let style = if folded { Style::Folded } else { Style::Literal };
        self.builder.scalar(value, style, block.start..block.end, 0, None)?;
        self.peeked = None;
        self.next = block.end;
        Ok(())
    }

    /// A `[…]` or `{…}` at `at` that closes on its line, starting at `start` (its anchor or
    /// its bracket); returns where it ends.
    fn flow(&mut self, at: usize, end: usize, start: usize) -> Fast<usize> {
        let map = self.b[at] == b'{';
        let close = if map { b'}' } else { b']' };
        self.builder.open(start, map)?;
        let mut i = self.skip_spaces(at + 1, end);
        if self.b.get(i) == Some(&close) {
            self.builder.close_and_push()?;
            return Ok(i + 1);
        }
        loop {
            if map {
                let key = self.flow_scalar(i, end)?;
                if self.b.get(key.event.end) != Some(&b':') || self.b.get(key.event.end + 1) != Some(&b' ') {
                    return Err(Unsupported);
                }
                self.scalar(&key, None)?;
                i = self.skip_spaces(key.event.end + 1, end);
            }
            i = self.flow_node(i, end)?;
            i = self.skip_spaces(i, end);
            match self.b.get(i) {
                Some(b',') if i < end => {
                    i = self.skip_spaces(i + 1, end);
                    if matches!(self.b.get(i), Some(b']' | b'}')) {
                        return Err(Unsupported);
                    }
                }
                Some(&c) if c == close && i < end => break,
                _ => return Err(Unsupported),
            }
        }
        self.builder.close_and_push()?;
        Ok(i + 1)
    }

    /// A value inside a flow collection; returns where it ends.
    fn flow_node(&mut self, at: usize, end: usize) -> Fast<usize> {
        match self.b.get(at) {
            Some(b'[' | b'{') if at < end => return self.flow(at, end, at),
            Some(b'*') if at < end => return self.alias(at, end),
            _ => {}
        }
        let token = self.flow_scalar(at, end)?;
        if self.b.get(token.event.end) == Some(&b':') {
            return Err(Unsupported);
        }
        self.scalar(&token, None)?;
        Ok(token.event.end)
    }

    /// A scalar inside a flow collection, quoted or plain.
    fn flow_scalar(&self, at: usize, end: usize) -> Fast<Token> {
        match self.b.get(at) {
            Some(b'"' | b'\'') if at < end => self.quoted(at, end),
            Some(_) if at < end && self.plain_may_start(at, end, true) => self.plain(at, end, true),
            _ => Err(Unsupported),
        }
    }

    /// May a plain scalar start at `at`? Not at an indicator, except `-`, `?` and `:` that a
    /// character other than a space (or, in a flow collection, a flow indicator) follows.
    fn plain_may_start(&self, at: usize, end: usize, flow: bool) -> bool {
        match self.b[at] {
            b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"' | b'%' | b'@'
            | b'`' | b' ' => false,
            b'-' | b'?' | b':' => {
                at + 1 < end
                    && self.b[at + 1] != b' '
                    && !(flow && matches!(self.b[at + 1], b',' | b'[' | b']' | b'{' | b'}'))
            }
            _ => true,
        }
    }

    /// A plain scalar on one line: up to a `: `, a ` #`, the end of the line, or in a flow
    /// collection a flow indicator; trailing spaces are not part of it. A colon inside a flow
    /// scalar, or a comment inside a flow collection, is left to saphyr.
    fn plain(&self, at: usize, end: usize, flow: bool) -> Fast<Token> {
        let mut i = at;
        while i < end {
            match self.b[i] {
                b':' if i + 1 == end || self.b[i + 1] == b' ' => break,
                b':' if flow => return Err(Unsupported),
                b'#' if self.b[i - 1] == b' ' => {
                    if flow {
                        return Err(Unsupported);
                    }
                    break;
                }
                b',' | b'[' | b']' | b'{' | b'}' if flow => break,
                _ => i += 1,
            }
        }
        let mut last = i;
        while last > at && self.b[last - 1] == b' ' {
            last -= 1;
        }
        if i < end && self.b[i] == b':' && last != i {
            // `key :` — a space before the colon; saphyr reads it, but rarely seen: left to it.
            return Err(Unsupported);
        }
        Ok(Token { event: at..last, value: at..last, style: Style::Plain })
    }

    /// A quoted scalar that closes on its line, with no escapes (`\` or `''`) in it.
    fn quoted(&self, at: usize, end: usize) -> Fast<Token> {
        let quote = self.b[at];
        let close = self.b[at + 1..end].iter().position(|&b| b == quote || b == b'\\').map(|i| at + 1 + i);
        match close {
            Some(close) if self.b[close] == quote && self.b.get(close + 1) != Some(&b'\'') => {
                let style = if quote == b'"' { Style::DoubleQuoted } else { Style::SingleQuoted };
                Ok(Token { event: at..close + 1, value: at + 1..close, style })
            }
            _ => Err(Unsupported),
        }
    }

    /// A scalar event, from its anchor when it has one (`(id, where its & is)`).
    fn scalar(&mut self, token: &Token, anchor: Option<(usize, usize)>) -> Fast<()> {
        let value = self.text[token.value.clone()].to_string();
        let (id, start) = anchor.unwrap_or((0, token.event.start));
        Ok(self.builder.scalar(value, token.style, start..token.event.end, id, None)?)
    }

    fn skip_spaces(&self, mut at: usize, end: usize) -> usize {
        while at < end && self.b[at] == b' ' {
            at += 1;
        }
        at
    }

    /// Are `at..end` spaces, then nothing or a comment that a space precedes?
    fn only_comment(&self, at: usize, end: usize) -> bool {
        let first = self.skip_spaces(at, end);
        first == end || (self.b[first] == b'#' && first > at)
    }
}

/// The lines of a block scalar: each content line's bytes past the indentation, and the blank
/// lines before it.
#[derive(Debug)]
struct BlockLines {
    lines: Vec<((usize, usize), usize)>,
    trailing_blanks: usize,
    /// The first content byte.
    start: usize,
    /// Where the line after the block scalar (and its trailing blank lines) starts.
    end: usize,
}

/// The lines from `from` that belong to a block scalar under a parent `indent` spaces in.
fn block_lines(b: &[u8], from: usize, indent: usize, folded: bool) -> Fast<BlockLines> {
    let mut lines = Vec::new();
    let (mut at, mut blanks, mut width) = (from, 0, None);
    let mut start = from;
    while at < b.len() {
        let end = b[at..].iter().position(|&c| c == b'\n').map_or(b.len(), |i| at + i);
        let spaces = b[at..end].iter().take_while(|&&c| c == b' ').count();
        if at + spaces == end {
            // A blank line: only between or after content lines, no wider than them, and with
            // its line break (saphyr does not count the spaces ending a file as a line).
            match width {
                Some(w) if spaces <= w && end < b.len() => blanks += 1,
                _ => return Err(Unsupported),
            }
            at = end + 1;
            continue;
        }
        let w = match width {
            None if spaces > indent => *width.insert(spaces),
            None => return Err(Unsupported),
            Some(w) if spaces < w => break,
            Some(w) if folded && spaces > w => return Err(Unsupported),
            Some(w) => w,
        };
        if end == b.len() {
            // No line break after the last line: chomping reads differently; left to saphyr.
            return Err(Unsupported);
        }
        if lines.is_empty() {
            start = at + w;
        }
        lines.push(((at + w, end), blanks));
        blanks = 0;
        at = end + 1;
    }
    if lines.is_empty() {
        return Err(Unsupported);
    }
    Ok(BlockLines { lines, trailing_blanks: blanks, start, end: at.min(b.len()) })
}
