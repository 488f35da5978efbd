//! The fast path for Helm indexes: a line scanner for the layout `helm repo index` and
//! chart-releaser write, fed the body chunk by chunk while it downloads.
//!
//! It reads only the charts a run asks for (every chart when it is given no list), keeps their
//! distilled versions and nothing else, and skips every other chart line by line without
//! allocating. It is not a YAML parser: it knows block mappings and sequences, one-line plain
//! and quoted scalars, multi-line plain and quoted scalars it skips, literal block scalars, empty
//! flow collections and comments, and checks each line against what the YAML grammar allows
//! there. The moment a line is anything else (anchors, tags, flow collections, tabs, CRLF,
//! directives, several documents, a quoted key it cannot decode...) it gives up with a
//! [`Bail`], and the caller hands the whole file to the general parser
//! ([`super::helm::parse_index`]): the scanner may decline, but it never answers differently.
//! `tests/it/lookup_helm_fast.rs` holds it to that.

use std::collections::{BTreeMap, BTreeSet};

use super::helm::{Fields, finish_releases};
use crate::model::Release;

/// Longest line the scanner holds while waiting for its end; a longer one is left to the
/// general parser, so a body without line breaks cannot grow the scanner's memory.
const MAX_LINE: usize = 256 * 1024;

/// Why the scanner declined a file: the line and what it did not understand (for debug logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bail {
    /// 1-based line number.
    pub line: usize,
    /// What was outside the layout the scanner reads.
    pub why: &'static str,
}

/// What a collection is, for what the scanner keeps from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The root mapping.
    Top,
    /// `entries:`: chart name → versions.
    Entries,
    /// One chart's sequence of versions.
    Chart,
    /// One version's mapping.
    Version,
    /// A version's `urls:`.
    Urls,
    /// A version's `annotations:`.
    Annotations,
    /// Anything else: validated and skipped.
    Skip,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    indent: usize,
    seq: bool,
    role: Role,
}

/// A field of the current version that the next value goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Version,
    Created,
    Deprecated,
    AppVersion,
    KubeVersion,
    Digest,
    Changes,
    /// The first of `urls`.
    Url,
}

/// A key whose value is on the following lines.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Indentation of the mapping holding the key.
    indent: usize,
    /// What a collection opened under it is.
    role: Role,
    /// Where a scalar (here: null) value goes.
    target: Option<Target>,
}

#[derive(Debug)]
struct Block {
    parent: usize,
    content: Option<usize>,
    chomp: u8,
    literal: bool,
    target: Option<Target>,
    text: String,
    /// Empty lines seen since the last content line.
    blank_run: usize,
}

/// A quoted scalar spanning lines: its quote, the least indentation its continuation lines
/// need, and for a kept one, its text so far and the line breaks waiting to be folded.
#[derive(Debug)]
struct Quoted {
    double: bool,
    min: usize,
    target: Option<Target>,
    text: String,
    breaks: usize,
    escaped_break: bool,
}

#[derive(Debug)]
enum Mode {
    Lines,
    Block(Block),
    /// Inside a quoted scalar spanning lines.
    Quoted(Quoted),
}

/// The scanner's state between chunks.
#[derive(Debug)]
pub struct IndexScanner {
    wanted: Option<BTreeSet<String>>,
    charts: BTreeMap<String, Vec<Release>>,
    stack: Vec<Frame>,
    mode: Mode,
    pending: Option<Pending>,
    /// Indentation a continuation of the last plain scalar needs to exceed, and whether that
    /// scalar was one the scanner keeps (a kept value spanning lines is left to the parser).
    plain: Option<(usize, bool)>,
    chart: Option<String>,
    extracting: bool,
    version: Option<Fields>,
    saw_entries: bool,
    carry: Vec<u8>,
    line: usize,
}

impl IndexScanner {
    /// A scanner keeping the charts in `wanted`, or every chart.
    pub fn new(wanted: Option<BTreeSet<String>>) -> IndexScanner {
        IndexScanner {
            wanted,
            charts: BTreeMap::new(),
            stack: Vec::new(),
            mode: Mode::Lines,
            pending: None,
            plain: None,
            chart: None,
            extracting: false,
            version: None,
            saw_entries: false,
            carry: Vec::new(),
            line: 0,
        }
    }

    fn bail(&self, why: &'static str) -> Bail {
        Bail { line: self.line + 1, why }
    }

    /// Read the next piece of the body. Only the unfinished last line is kept.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Bail> {
        if !self.carry.is_empty() {
            let Some(end) = chunk.iter().position(|&b| b == b'\n') else {
                self.carry.extend_from_slice(chunk);
                return self.check_carry();
            };
            let mut line = std::mem::take(&mut self.carry);
            line.extend_from_slice(&chunk[..=end]);
            self.region(&line)?;
            chunk = &chunk[end + 1..];
        }
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.region(&chunk[..=last])?;
                self.carry.extend_from_slice(&chunk[last + 1..]);
            }
            None => self.carry.extend_from_slice(chunk),
        }
        self.check_carry()
    }

    fn check_carry(&self) -> Result<(), Bail> {
        if self.carry.len() > MAX_LINE { Err(self.bail("a line longer than the scanner holds")) } else { Ok(()) }
    }

    /// The distilled charts, once the whole body has been fed.
    pub fn finish(mut self) -> Result<BTreeMap<String, Vec<Release>>, Bail> {
        if !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry);
            self.region(&last)?;
        }
        match std::mem::replace(&mut self.mode, Mode::Lines) {
            Mode::Block(block) => self.end_block(block)?,
            Mode::Quoted(_) => return Err(self.bail("the file ends inside a quoted scalar")),
            Mode::Lines => {}
        }
        self.close_pending()?;
        self.pop_to(0, true);
        if !self.saw_entries {
            return Err(self.bail("no `entries:`"));
        }
        finish_releases(&mut self.charts);
        Ok(self.charts)
    }

    /// Whole lines (the last one may lack its line break at the end of the body).
    fn region(&mut self, bytes: &[u8]) -> Result<(), Bail> {
        // One branch-free pass over the region decides the common case (printable ASCII and
        // line breaks; the check vectorises), so only other text pays for the finer checks.
        let unusual = bytes.iter().fold(false, |seen, &b| seen | ((b < 0x20 && b != b'\n') | (b >= 0x7f)));
        if unusual {
            if bytes.iter().any(|&b| (b < 0x20 && b != b'\n') || b == 0x7f) {
                return Err(self.bail("a tab, carriage return or control character"));
            }
            let Ok(text) = std::str::from_utf8(bytes) else { return Err(self.bail("not UTF-8")) };
            if text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{feff}') {
                return Err(self.bail("a byte-order mark or C1 control character"));
            }
        }
        let Ok(text) = std::str::from_utf8(bytes) else { return Err(self.bail("not UTF-8")) };
        for line in text.split_terminator('\n') {
            self.one_line(line)?;
            self.line += 1;
        }
        Ok(())
    }

    fn one_line(&mut self, line: &str) -> Result<(), Bail> {
        match &mut self.mode {
            Mode::Lines => {}
            Mode::Block(_) => {
                if self.block_line(line)? {
                    return Ok(());
                }
            }
            Mode::Quoted(_) => return self.quoted_line(line),
        }
        let indent = line.bytes().take_while(|&b| b == b' ').count();
        let rest = &line[indent..];
        if rest.is_empty() {
            return Ok(());
        }
        if rest.starts_with('#') {
            self.plain = None;
            return Ok(());
        }
        if indent == 0 && (rest.starts_with("---") || rest.starts_with("...") || rest.starts_with('%')) {
            return Err(self.bail("a document marker or directive"));
        }
        if let Some((above, kept)) = self.plain {
            if indent > above {
                if kept {
                    return Err(self.bail("a kept value spanning lines"));
                }
                let (_, comment) = check_plain(rest, true).map_err(|why| self.bail(why))?;
                if comment {
                    self.plain = None;
                }
                return Ok(());
            }
            self.plain = None;
        }
        let dash = rest == "-" || rest.starts_with("- ");
        self.open_pending(indent, dash)?;
        self.pop_to(indent, dash);
        let Some(top) = self.stack.last().copied() else {
            if indent != 0 || dash {
                return Err(self.bail("the root is not a mapping at column 0"));
            }
            self.stack.push(Frame { indent: 0, seq: false, role: Role::Top });
            return self.key_line(rest, 0, Role::Top);
        };
        if top.indent != indent {
            return Err(self.bail("indentation that matches no open collection"));
        }
        match (top.seq, dash) {
            (true, true) => self.item(rest, indent, top.role),
            (false, false) => self.key_line(rest, indent, top.role),
            _ => Err(self.bail("a sequence item where a key belongs, or a key in a sequence")),
        }
    }

    /// Resolve a key left waiting for its value by the line at `indent`.
    fn open_pending(&mut self, indent: usize, dash: bool) -> Result<(), Bail> {
        let Some(p) = self.pending else { return Ok(()) };
        if indent > p.indent || (indent == p.indent && dash) {
            self.pending = None;
            self.open_collection(p, indent, dash);
            Ok(())
        } else {
            self.close_pending()
        }
    }

    fn open_collection(&mut self, p: Pending, indent: usize, seq: bool) {
        let role = match (p.role, seq) {
            (Role::Chart | Role::Urls, true) | (Role::Entries | Role::Annotations, false) => p.role,
            _ => Role::Skip,
        };
        if role == Role::Chart {
            self.chart_present();
        }
        // A collection where a kept scalar belongs: the general parser reads it as no value.
        if let Some(target) = p.target {
            self.assign(target, None);
        }
        self.stack.push(Frame { indent, seq, role });
    }

    /// A key with nothing after it and nothing under it: a null, which the parser reads as "".
    fn close_pending(&mut self) -> Result<(), Bail> {
        if let Some(p) = self.pending.take()
            && let Some(target) = p.target
        {
            self.assign(target, Some(String::new()));
        }
        Ok(())
    }

    /// Close every collection deeper than `indent` (and a sequence at `indent` when the line
    /// is not one of its items: an indentless sequence ends at its parent's next key).
    fn pop_to(&mut self, indent: usize, dash: bool) {
        while let Some(top) = self.stack.last().copied() {
            if top.indent > indent || (top.indent == indent && top.seq && !dash) {
                self.stack.pop();
                self.closed(top.role);
            } else {
                break;
            }
        }
    }

    fn closed(&mut self, role: Role) {
        match role {
            Role::Version => {
                if let Some(fields) = self.version.take()
                    && let Some(release) = fields.release()
                    && let Some(chart) = &self.chart
                    && let Some(list) = self.charts.get_mut(chart)
                {
                    list.push(release);
                }
            }
            Role::Chart => self.extracting = false,
            _ => {}
        }
    }

    fn chart_present(&mut self) {
        if self.extracting
            && let Some(chart) = &self.chart
            && !self.charts.contains_key(chart)
        {
            self.charts.insert(chart.clone(), Vec::new());
        }
    }

    /// `- ...` in a sequence of `role`, the dash at `indent`.
    fn item(&mut self, rest: &str, indent: usize, role: Role) -> Result<(), Bail> {
        let after = &rest[1..];
        let gap = after.bytes().take_while(|&b| b == b' ').count();
        let content = &after[gap..];
        if content.is_empty() || content.starts_with('#') {
            return Err(self.bail("an empty sequence item"));
        }
        if content == "-" || content.starts_with("- ") {
            return Err(self.bail("a sequence nested on one line"));
        }
        let column = indent + 1 + gap;
        if split_key(content).map_err(|why| self.bail(why))?.is_some() {
            let map = if role == Role::Chart { Role::Version } else { Role::Skip };
            if map == Role::Version && self.extracting {
                self.version = Some(Fields::default());
            }
            self.stack.push(Frame { indent: column, seq: false, role: map });
            return self.key_line(content, column, map);
        }
        let target = (role == Role::Urls && self.extracting).then_some(Target::Url);
        self.scalar_value(content, indent, target, true)
    }

    /// `key: value` or `key:` in a mapping of `role` at `indent`.
    fn key_line(&mut self, rest: &str, indent: usize, role: Role) -> Result<(), Bail> {
        let Some((key, value)) = split_key(rest).map_err(|why| self.bail(why))? else {
            return Err(self.bail("a line that is not `key: value` inside a mapping"));
        };
        let (child, target) = self.roles(role, &key);
        let value = value.trim_start_matches(' ');
        if value.is_empty() || value.starts_with('#') {
            self.pending = Some(Pending { indent, role: child, target });
            return Ok(());
        }
        match value.as_bytes()[0] {
            b'|' | b'>' => self.start_block(value, indent, target),
            b'{' | b'[' => {
                let open = value.get(..2).unwrap_or(value);
                if (open != "{}" && open != "[]") || !is_blank_or_comment(&value[open.len()..]) {
                    return Err(self.bail("a flow collection"));
                }
                if let Some(t) = target {
                    self.assign(t, None);
                }
                if child == Role::Chart && open == "[]" {
                    self.chart_present();
                }
                Ok(())
            }
            _ => self.scalar_value(value, indent, target, false),
        }
    }

    /// What the value of `key` in a mapping of `role` is: the role of a collection there, and
    /// the field a scalar there goes to.
    fn roles(&mut self, role: Role, key: &str) -> (Role, Option<Target>) {
        match role {
            Role::Top if key == "entries" => {
                self.saw_entries = true;
                (Role::Entries, None)
            }
            Role::Entries => {
                self.extracting = self.wanted.as_ref().is_none_or(|w| w.contains(key));
                self.chart = self.extracting.then(|| key.to_string());
                (Role::Chart, None)
            }
            Role::Version if self.extracting => match key {
                "version" => (Role::Skip, Some(Target::Version)),
                "created" => (Role::Skip, Some(Target::Created)),
                "deprecated" => (Role::Skip, Some(Target::Deprecated)),
                "appVersion" => (Role::Skip, Some(Target::AppVersion)),
                "kubeVersion" => (Role::Skip, Some(Target::KubeVersion)),
                "digest" => (Role::Skip, Some(Target::Digest)),
                "urls" => (Role::Urls, None),
                "annotations" => (Role::Annotations, None),
                _ => (Role::Skip, None),
            },
            Role::Annotations if self.extracting && key == "artifacthub.io/changes" => {
                (Role::Skip, Some(Target::Changes))
            }
            _ => (Role::Skip, None),
        }
    }

    fn assign(&mut self, target: Target, value: Option<String>) {
        let Some(f) = self.version.as_mut() else { return };
        match target {
            Target::Version => f.version = value,
            Target::Created => f.created = value,
            Target::Deprecated => f.deprecated = value.is_some_and(|v| v == "true"),
            Target::AppVersion => f.app_version = value,
            Target::KubeVersion => f.kube_version = value.filter(|v| !v.trim().is_empty()),
            Target::Digest => f.digest = value.filter(|d| !d.trim().is_empty()),
            Target::Changes => f.changes = value,
            Target::Url => {
                if f.url.is_none() {
                    f.url = value;
                }
            }
        }
    }

    /// A scalar value starting at `value`, in a collection at `indent`.
    fn scalar_value(&mut self, value: &str, indent: usize, target: Option<Target>, item: bool) -> Result<(), Bail> {
        match value.as_bytes()[0] {
            q @ (b'"' | b'\'') => {
                let double = q == b'"';
                match close_quote(value, double).map_err(|why| self.bail(why))? {
                    Some(end) => {
                        if !is_blank_or_comment(&value[end + 1..]) {
                            return Err(self.bail("text after a closing quote"));
                        }
                        if let Some(t) = target {
                            let mut text = String::new();
                            decode(&value[1..end], double, true, &mut text).ok_or_else(|| self.bail("an escape"))?;
                            self.assign(t, Some(text));
                        }
                        Ok(())
                    }
                    None => {
                        let mut quoted = Quoted {
                            double,
                            min: indent + 1,
                            target,
                            text: String::new(),
                            breaks: 0,
                            escaped_break: false,
                        };
                        if target.is_some() {
                            quoted.escaped_break = decode(&value[1..], double, false, &mut quoted.text)
                                .ok_or_else(|| self.bail("an escape"))?;
                        }
                        self.mode = Mode::Quoted(quoted);
                        Ok(())
                    }
                }
            }
            b'|' | b'>' if item => Err(self.bail("a block scalar as a sequence item")),
            _ => {
                let (text, comment) = check_plain(value, false).map_err(|why| self.bail(why))?;
                if let Some(t) = target {
                    self.assign(t, Some(text.to_string()));
                }
                self.plain = (!comment).then_some((indent, target.is_some()));
                Ok(())
            }
        }
    }

    fn start_block(&mut self, header: &str, indent: usize, target: Option<Target>) -> Result<(), Bail> {
        let literal = header.starts_with('|');
        let mut chomp = b' ';
        let mut explicit = None;
        let mut rest = &header[1..];
        // Chomping and indentation indicators, in either order (`|2-`, `|-2`).
        for _ in 0..2 {
            match rest.as_bytes().first() {
                Some(&c @ (b'-' | b'+')) if chomp == b' ' => chomp = c,
                Some(&d @ b'1'..=b'9') if explicit.is_none() => explicit = Some(indent + usize::from(d - b'0')),
                _ => break,
            }
            rest = &rest[1..];
        }
        if !is_blank_or_comment(rest) {
            return Err(self.bail("a block scalar header the scanner does not read"));
        }
        if target.is_some() && !literal {
            return Err(self.bail("a kept folded block scalar"));
        }
        self.mode = Mode::Block(Block {
            parent: indent,
            content: explicit,
            chomp,
            literal,
            target,
            text: String::new(),
            blank_run: 0,
        });
        Ok(())
    }

    /// A line while in a block scalar: `true` if it belonged to it.
    fn block_line(&mut self, line: &str) -> Result<bool, Bail> {
        let Mode::Block(block) = &mut self.mode else { return Ok(false) };
        if line.is_empty() {
            block.blank_run += 1;
            return Ok(true);
        }
        let indent = line.bytes().take_while(|&b| b == b' ').count();
        if indent == line.len() {
            return Err(Bail { line: self.line + 1, why: "a line of spaces in a block scalar" });
        }
        let content = *block.content.get_or_insert(indent);
        if indent >= content && content > block.parent {
            if block.target.is_some() {
                if !block.text.is_empty() || block.blank_run > 0 {
                    let breaks = if block.text.is_empty() { block.blank_run } else { block.blank_run + 1 };
                    block.text.extend(std::iter::repeat_n('\n', breaks));
                }
                block.text.push_str(&line[content..]);
            }
            block.blank_run = 0;
            return Ok(true);
        }
        if indent > block.parent && !line[indent..].starts_with('#') {
            return Err(Bail { line: self.line + 1, why: "a line indented less than its block scalar" });
        }
        if let Mode::Block(block) = std::mem::replace(&mut self.mode, Mode::Lines) {
            self.end_block(block)?;
        }
        Ok(false)
    }

    fn end_block(&mut self, block: Block) -> Result<(), Bail> {
        let Some(target) = block.target else { return Ok(()) };
        let mut text = block.text;
        let had_content = block.content.is_some_and(|c| c > block.parent) && !text.is_empty();
        match block.chomp {
            b'-' => {}
            b'+' => {
                if !had_content {
                    return Err(self.bail("a kept block scalar with no content"));
                }
                text.extend(std::iter::repeat_n('\n', block.blank_run + 1));
            }
            _ if had_content => text.push('\n'),
            _ => {}
        }
        debug_assert!(block.literal);
        self.assign(target, Some(text));
        Ok(())
    }

    /// A line inside a quoted scalar spanning lines: line breaks fold into a space, empty lines
    /// into line breaks, an escaped break into nothing; leading and trailing blanks go.
    fn quoted_line(&mut self, line: &str) -> Result<(), Bail> {
        let bail = Bail { line: self.line + 1, why: "a quoted scalar's line that is not indented enough" };
        let Mode::Quoted(q) = &mut self.mode else { return Ok(()) };
        if line.is_empty() {
            q.breaks += 1;
            return Ok(());
        }
        let indent = line.bytes().take_while(|&b| b == b' ').count();
        if line.len() == indent || indent < q.min {
            return Err(bail);
        }
        let end = close_quote_from(line, indent, q.double).map_err(|why| Bail { line: self.line + 1, why })?;
        if let Some(end) = end
            && !is_blank_or_comment(&line[end + 1..])
        {
            return Err(Bail { line: self.line + 1, why: "text after a closing quote" });
        }
        if q.target.is_some() {
            match (q.escaped_break, q.breaks) {
                (true, _) => {}
                (false, 0) => q.text.push(' '),
                (false, n) => q.text.extend(std::iter::repeat_n('\n', n)),
            }
            q.breaks = 0;
            let segment = &line[indent..end.unwrap_or(line.len())];
            q.escaped_break = decode(segment, q.double, end.is_some(), &mut q.text)
                .ok_or(Bail { line: self.line + 1, why: "an escape" })?;
        }
        if end.is_some()
            && let Mode::Quoted(q) = std::mem::replace(&mut self.mode, Mode::Lines)
            && let Some(target) = q.target
        {
            self.assign(target, Some(q.text));
        }
        Ok(())
    }
}

fn is_blank_or_comment(tail: &str) -> bool {
    let t = tail.trim_start_matches(' ');
    t.is_empty() || (t.starts_with('#') && t.len() < tail.len())
}

/// Split `key: value` / `key:`; `None` if the line holds a scalar, not a key.
fn split_key(rest: &str) -> Result<Option<(std::borrow::Cow<'_, str>, &str)>, &'static str> {
    let bytes = rest.as_bytes();
    if let q @ (b'"' | b'\'') = bytes[0] {
        let double = q == b'"';
        let Some(end) = close_quote(rest, double)? else { return Ok(None) };
        let tail = &rest[end + 1..];
        let t = tail.trim_start_matches(' ');
        if let Some(value) = t.strip_prefix(':')
            && (value.is_empty() || value.starts_with(' '))
        {
            let mut key = String::new();
            decode(&rest[1..end], double, true, &mut key).ok_or("an escape in a key")?;
            return Ok(Some((std::borrow::Cow::Owned(key), value)));
        }
        return Ok(None);
    }
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b':' || b == b'#') {
        let at = i + off;
        if bytes[at] == b'#' {
            if at > 0 && bytes[at - 1] == b' ' {
                // A comment before any `: `: the line is a scalar, checked as one.
                return Ok(None);
            }
        } else if at + 1 == bytes.len() || bytes[at + 1] == b' ' {
            let key = rest[..at].trim_end_matches(' ');
            check_key(key)?;
            return Ok(Some((std::borrow::Cow::Borrowed(key), &rest[at + 1..])));
        }
        i = at + 1;
    }
    Ok(None)
}

fn check_key(key: &str) -> Result<(), &'static str> {
    match key.as_bytes().first() {
        None => Err("an empty key"),
        Some(b'-' | b'?' | b':') if key.len() == 1 || key.as_bytes()[1] == b' ' => Err("an indicator as a key"),
        Some(b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`') => {
            Err("a key starting with an indicator")
        }
        _ => Ok(()),
    }
}

/// Check a plain scalar (or a continuation line of one) and return its text with a trailing
/// comment cut, and whether there was one (a comment ends a scalar: no line may continue it).
fn check_plain(value: &str, continuation: bool) -> Result<(&str, bool), &'static str> {
    let bytes = value.as_bytes();
    match bytes[0] {
        b'-' | b'?' | b':' if continuation || bytes.len() == 1 || bytes[1] == b' ' => {
            return Err("an indicator starting a scalar");
        }
        b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'"'
        | b'\'' => return Err("a scalar starting with an indicator"),
        _ => {}
    }
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b':' || b == b'#') {
        let at = i + off;
        if bytes[at] == b'#' {
            if bytes[at - 1] == b' ' {
                return Ok((value[..at].trim_end_matches(' '), true));
            }
        } else if at + 1 == bytes.len() || bytes[at + 1] == b' ' {
            return Err("`: ` inside a plain scalar");
        }
        i = at + 1;
    }
    Ok((value.trim_end_matches(' '), false))
}

/// The index of the closing quote of a scalar opening at byte 0 of `text`, if on this line.
fn close_quote(text: &str, double: bool) -> Result<Option<usize>, &'static str> {
    close_quote_from(text, 1, double)
}

fn close_quote_from(text: &str, from: usize, double: bool) -> Result<Option<usize>, &'static str> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if double => {
                let n = escape_len(&bytes[i + 1..]).ok_or("an invalid escape")?;
                i += 1 + n;
            }
            b'"' if double => return Ok(Some(i)),
            b'\'' if !double => {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return Ok(Some(i));
                }
            }
            _ => i += 1,
        }
    }
    Ok(None)
}

/// Bytes an escape takes after its backslash (0 for an escaped line break at the line's end).
fn escape_len(after: &[u8]) -> Option<usize> {
    let hex = |n: usize| after.len() > n && after[1..=n].iter().all(u8::is_ascii_hexdigit);
    match after.first() {
        None => Some(0),
        Some(b'0' | b'a' | b'b' | b't' | b'n' | b'v' | b'f' | b'r' | b'e' | b' ' | b'"' | b'/' | b'\\') => Some(1),
        Some(b'N' | b'_' | b'L' | b'P') => Some(1),
        Some(b'x') if hex(2) => Some(3),
        Some(b'u') if hex(4) => Some(5),
        Some(b'U') if hex(8) => Some(9),
        _ => None,
    }
}

/// Append the text of one line's piece of a quoted scalar to `out`, escapes decoded. Unless
/// it is the `last` piece (the one closed by the quote), blanks before the line break go.
/// Returns whether the piece ends in an escaped line break; `None` for an invalid escape.
fn decode(segment: &str, double: bool, last: bool, out: &mut String) -> Option<bool> {
    let mut keep = out.len();
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if double => {
                let decoded = match chars.next() {
                    // An escaped line break keeps the blanks before it.
                    None => return Some(true),
                    Some(e) => escape(e, &mut chars)?,
                };
                out.push(decoded);
                keep = out.len();
            }
            '\'' if !double => {
                // Inside single quotes a quote only appears doubled (`close_quote` checked).
                chars.next();
                out.push('\'');
                keep = out.len();
            }
            ' ' => out.push(' '),
            c => {
                out.push(c);
                keep = out.len();
            }
        }
    }
    if !last {
        out.truncate(keep);
    }
    Some(false)
}

/// The character a double-quoted escape `\e` stands for (hex escapes read from `rest`).
fn escape(e: char, rest: &mut std::str::Chars<'_>) -> Option<char> {
    let hex = |rest: &mut std::str::Chars<'_>, n: usize| -> Option<char> {
        let digits: String = rest.take(n).collect();
        if digits.len() != n {
            return None;
        }
        char::from_u32(u32::from_str_radix(&digits, 16).ok()?)
    };
    Some(match e {
        '0' => '\0',
        'a' => '\u{7}',
        'b' => '\u{8}',
        't' | '\t' => '\t',
        'n' => '\n',
        'v' => '\u{b}',
        'f' => '\u{c}',
        'r' => '\r',
        'e' => '\u{1b}',
        ' ' => ' ',
        '"' => '"',
        '/' => '/',
        '\\' => '\\',
        'N' => '\u{85}',
        '_' => '\u{a0}',
        'L' => '\u{2028}',
        'P' => '\u{2029}',
        'x' => hex(rest, 2)?,
        'u' => hex(rest, 4)?,
        'U' => hex(rest, 8)?,
        _ => return None,
    })
}
