//! A YAML document as a tree of located nodes, read from granit-parser's event stream.
//!
//! The loader validates this tree by hand (rather than deriving `Deserialize` for the policy
//! types) so that it can report *every* problem, each at the line and column of the node it
//! concerns, with a hint.
//!
//! The tree is built straight from the parser's events (granit-parser is the YAML parser
//! serde-saphyr reads with): going through serde to get a located node for every scalar took
//! half of a large policy's load time. Scalars resolve as serde-saphyr resolves them for an
//! untyped value: YAML 1.2's core schema (null, integers, floats) and YAML 1.1's booleans
//! (`yes`, `on`, …); quoted and block scalars are strings. Aliases are expanded and merge keys
//! (`<<`) applied, within a budget of nodes, so a small hostile file cannot grow large.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use granit_parser::{
    ErrorKind, Event, Marker, Options, Parser, ScalarStyle, ScanError, Span, StrInput, Tag,
};

/// 1-based line and column of a node; `0:0` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn at(span: &Span) -> Pos {
        Pos::of(&span.start)
    }

    fn of(mark: &Marker) -> Pos {
        Pos {
            line: mark.line().max(1),
            column: mark.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Value {
    /// How the loader names this kind of value in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The text of a scalar key or value, for names (`Str`, or an integer written plainly).
    pub fn as_text(&self) -> Option<String> {
        self.text().map(Cow::into_owned)
    }

    /// [`Node::as_text`], borrowed where it can be.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            _ => None,
        }
    }

    /// Nodes in this tree.
    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
            _ => 0,
        }
    }
}

/// A syntax error from the YAML reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    pub hint: String,
}

impl SyntaxError {
    fn invalid(pos: Pos, message: impl std::fmt::Display) -> SyntaxError {
        SyntaxError {
            pos,
            message: format!("invalid YAML: {message}"),
            hint: "fix the YAML syntax first".to_owned(),
        }
    }

    fn too_deep(pos: Pos) -> SyntaxError {
        SyntaxError {
            pos,
            message: format!("the policy nests deeper than {MAX_DEPTH} levels"),
            hint:
                "a policy needs at most 6 levels: top, `rules`, a rule, `when`, `replicas`, a bound"
                    .to_owned(),
        }
    }

    fn too_large(pos: Pos, what: &str) -> SyntaxError {
        SyntaxError {
            pos,
            message: format!("the policy is too large to read ({what})"),
            hint: "a policy needs few nodes; check for runaway anchors and aliases (`&a`, `*a`)"
                .to_owned(),
        }
    }
}

impl From<ScanError> for SyntaxError {
    fn from(e: ScanError) -> SyntaxError {
        let pos = Pos::of(e.marker());
        if matches!(e.kind(), ErrorKind::RecursionLimitExceeded) {
            return SyntaxError::too_deep(pos);
        }
        let message = e
            .info()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>();
        SyntaxError::invalid(pos, message)
    }
}

/// How deep a policy may nest. A policy needs 6 levels (top, `rules`, a rule, `when`,
/// `replicas`, a bound); the limit keeps the recursive reader well inside a 2 MiB thread stack
/// (tokio workers, test threads) whatever the input.
pub(crate) const MAX_DEPTH: usize = 16;
/// Nodes a document may have, aliases expanded.
const MAX_NODES: usize = 400_000;
/// Aliases (`*a`) a document may use.
const MAX_ALIASES: usize = 1_000;

/// Parses one YAML document into a located tree.
pub(crate) fn parse(src: &str) -> Result<Node, SyntaxError> {
    // The parser refuses deeper nesting itself, before it has read the collection's contents.
    let mut options = Options::default();
    // Another crate may have the parser's `comments` feature on: the tree has no use for them.
    options.set_emit_comments(false);
    options.flow_nesting_limit = MAX_DEPTH;
    options.block_nesting_limit = MAX_DEPTH + 1;
    let mut reader = Reader {
        parser: Parser::new_from_str_with_options(src, options),
        anchors: HashMap::new(),
        nodes: 0,
        aliases: 0,
    };
    reader.document()
}

struct Reader<'a> {
    parser: Parser<'a, StrInput<'a>>,
    /// Anchored nodes by the parser's anchor id, with their sizes.
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    aliases: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(e)) => Ok(e),
            Some(Err(e)) => Err(e.into()),
            None => Err(SyntaxError::invalid(Pos::START, "unexpected end of input")),
        }
    }

    /// The one document of the stream; `Null` at the start when the stream is empty.
    fn document(&mut self) -> Result<Node, SyntaxError> {
        let empty = Node {
            pos: Pos::START,
            value: Value::Null,
        };
        let root = loop {
            match self.next()? {
                (Event::StreamStart, _) => {}
                (Event::StreamEnd, _) => return Ok(empty),
                (Event::DocumentStart(..), _) => {
                    let (event, span) = self.next()?;
                    break self.node(event, span, 0)?;
                }
                (_, span) => {
                    return Err(SyntaxError::invalid(Pos::at(&span), "expected a document"));
                }
            }
        };
        loop {
            match self.next()? {
                (Event::DocumentEnd, _) => {}
                (Event::StreamEnd, _) => break,
                (_, span) => {
                    return Err(SyntaxError::invalid(
                        Pos::at(&span),
                        "the file holds more than one YAML document",
                    ));
                }
            }
        }
        Ok(root)
    }

    /// The node that starts with `event`, `depth` collections deep.
    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        let pos = Pos::at(&span);
        self.count(1, pos)?;
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                (scalar(text.into_owned(), style, tag.as_deref()), anchor)
            }
            Event::SequenceStart(_, anchor, _) => {
                let items = self.collection(pos, depth, |r, event, span| {
                    r.node(event, span, depth + 1).map(Some)
                })?;
                (Value::Seq(items), anchor)
            }
            Event::MappingStart(_, anchor, _) => {
                let entries = self.mapping(pos, depth)?;
                (Value::Map(entries), anchor)
            }
            Event::Alias(id) => {
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    return Err(SyntaxError::too_large(pos, "too many aliases"));
                }
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err(SyntaxError::invalid(pos, "an alias to an unknown anchor"));
                };
                let (node, size) = (node.clone(), *size);
                self.count(size.saturating_sub(1), pos)?;
                return Ok(node);
            }
            _ => return Err(SyntaxError::invalid(pos, "expected a value")),
        };
        let node = Node { pos, value };
        if anchor != 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(node)
    }

    /// The entries of a sequence or mapping opened at `pos`, up to its end event; `item`
    /// reads one entry starting with the event it is given (`None`: nothing to keep).
    fn collection<T>(
        &mut self,
        pos: Pos,
        depth: usize,
        mut item: impl FnMut(&mut Self, Event<'a>, Span) -> Result<Option<T>, SyntaxError>,
    ) -> Result<Vec<T>, SyntaxError> {
        if depth + 1 > MAX_DEPTH {
            return Err(SyntaxError::too_deep(pos));
        }
        let mut out = Vec::new();
        loop {
            match self.next()? {
                (Event::SequenceEnd | Event::MappingEnd, _) => return Ok(out),
                (event, span) => out.extend(item(self, event, span)?),
            }
        }
    }

    /// A mapping's entries: duplicate keys are an error, merge keys (`<<: *base`) add the
    /// entries of the merged mappings that the mapping does not have itself.
    fn mapping(&mut self, pos: Pos, depth: usize) -> Result<Vec<(Node, Node)>, SyntaxError> {
        let mut merged: Vec<(Node, Node)> = Vec::new();
        let mut entries = self.collection(pos, depth, |r, event, span| {
            let merge =
                matches!(&event, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = r.node(event, span, depth + 1)?;
            let (event, span) = r.next()?;
            let value = r.node(event, span, depth + 1)?;
            if merge {
                match value.value {
                    Value::Map(entries) => merged.extend(entries),
                    Value::Seq(items) => {
                        for item in items {
                            let Value::Map(entries) = item.value else {
                                return Err(SyntaxError::invalid(
                                    item.pos,
                                    "a merge key (`<<`) takes mappings",
                                ));
                            };
                            merged.extend(entries);
                        }
                    }
                    _ => {
                        return Err(SyntaxError::invalid(
                            value.pos,
                            "a merge key (`<<`) takes mappings",
                        ));
                    }
                }
                return Ok(None);
            }
            Ok(Some((key, value)))
        })?;
        let mut seen: HashSet<Cow<str>> = HashSet::with_capacity(entries.len());
        for (key, _) in &entries {
            if let Some(text) = key_text(key)
                && let Some(text) = seen.replace(text)
            {
                return Err(SyntaxError::invalid(
                    key.pos,
                    format!("duplicate mapping key: {text}"),
                ));
            }
        }
        // Of merged mappings, the first to have a key wins (YAML's merge key).
        let mut taken: HashSet<String> = HashSet::new();
        let merged: Vec<(Node, Node)> = merged
            .into_iter()
            .filter(|(key, _)| {
                key_text(key)
                    .is_none_or(|text| !seen.contains(&text) && taken.insert(text.into_owned()))
            })
            .collect();
        entries.extend(merged);
        Ok(entries)
    }

    /// Counts `n` more nodes against the budget.
    fn count(&mut self, n: usize, pos: Pos) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError::too_large(
                pos,
                &format!("more than {MAX_NODES} nodes, aliases expanded"),
            ));
        }
        Ok(())
    }
}

/// The text a scalar key is compared by for duplicates.
fn key_text(key: &Node) -> Option<Cow<'_, str>> {
    match &key.value {
        Value::Null => Some(Cow::Borrowed("null")),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Int(i) => Some(Cow::Owned(i.to_string())),
        Value::Float(f) => Some(Cow::Owned(f.to_string())),
        Value::Str(s) => Some(Cow::Borrowed(s)),
        Value::Seq(_) | Value::Map(_) => None,
    }
}

/// A scalar's value: quoted and block scalars are strings, plain ones resolve to null, a
/// boolean, an integer or a float when they spell one; `!!str` and friends decide alone.
fn scalar(text: String, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    match tag.filter(|t| t.is_yaml_core_schema()) {
        Some(t) if t.is_yaml_core_schema_tag("str") => Value::Str(text),
        Some(t) if t.is_yaml_core_schema_tag("null") => Value::Null,
        None if style != ScalarStyle::Plain => Value::Str(text),
        _ => resolve(text),
    }
}

/// A plain scalar's value.
fn resolve(text: String) -> Value {
    let t = text.trim_matches([' ', '\t', '\r', '\n']);
    if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = boolean(t) {
        return Value::Bool(b);
    }
    if let Some(i) = integer(t) {
        return Value::Int(i);
    }
    if let Some(f) = float(t) {
        return Value::Float(f);
    }
    Value::Str(text)
}

/// YAML 1.1's booleans, in any case.
fn boolean(t: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "yes", "y", "on"];
    const FALSE: [&str; 4] = ["false", "no", "n", "off"];
    if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// A 64-bit integer: decimal without a redundant leading zero, or `0x`, `0o`, `0b`.
fn integer(t: &str) -> Option<i128> {
    let (negative, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(d) = digits.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = digits.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = digits.strip_prefix("0b") {
        (2, d)
    } else if digits.len() > 1 && digits.starts_with('0') {
        return None;
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        i64::try_from(i128::from(magnitude).checked_neg()?)
            .ok()
            .map(i128::from)
    } else {
        Some(i128::from(magnitude))
    }
}

/// A float as YAML 1.2 writes one: digits with a point or an exponent, or `.inf` / `.nan`.
fn float(t: &str) -> Option<f64> {
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    let negative = t.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == t.len() => return Some(f64::NAN),
        _ => {}
    }
    let numeric = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !numeric || !unsigned.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_positions() {
        let n = parse("a: 1\nb:\n  - x\n  - {c: true}\n").expect("parses");
        let Value::Map(entries) = &n.value else {
            panic!("not a map: {n:?}")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, column: 4 });
        assert_eq!(entries[0].1.value, Value::Int(1));
        assert_eq!(entries[1].0.pos, Pos { line: 2, column: 1 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
        assert_eq!(items[0].value, Value::Str("x".into()));
        let Value::Map(inner) = &items[1].value else {
            panic!("not a map")
        };
        assert_eq!(inner[0].0.pos, Pos { line: 4, column: 6 });
        assert_eq!(inner[0].1.value, Value::Bool(true));
    }

    fn value(src: &str) -> Value {
        let n = parse(&format!("k: {src}\n")).expect("parses");
        let Value::Map(mut entries) = n.value else {
            panic!("not a map: {n:?}")
        };
        entries.remove(0).1.value
    }

    #[test]
    fn scalars_resolve_as_serde_saphyr_reads_an_untyped_value() {
        assert_eq!(value("~"), Value::Null);
        assert_eq!(value("null"), Value::Null);
        assert_eq!(value(""), Value::Null);
        assert_eq!(value("yes"), Value::Bool(true));
        assert_eq!(value("Off"), Value::Bool(false));
        assert_eq!(value("42"), Value::Int(42));
        assert_eq!(value("-7"), Value::Int(-7));
        assert_eq!(value("0x1f"), Value::Int(31));
        assert_eq!(value("0o17"), Value::Int(15));
        assert_eq!(value("1.5"), Value::Float(1.5));
        assert_eq!(value("1e3"), Value::Float(1000.0));
        assert_eq!(value("-.inf"), Value::Float(f64::NEG_INFINITY));
        // Beyond 64 bits an integer is read as a float, as serde-saphyr does.
        assert_eq!(
            value("99999999999999999999999999"),
            Value::Float(99999999999999999999999999.0)
        );
        // A redundant leading zero is no integer; Rust reads it as a float, as serde-saphyr does.
        assert_eq!(value("007"), Value::Float(7.0));
        for text in ["0X1F", "-.nan", "P1", "15m", "prod-*", "1.2.3"] {
            assert_eq!(value(text), Value::Str(text.into()), "{text}");
        }
        for quoted in ["'yes'", "\"42\"", "!!str 42"] {
            assert!(matches!(value(quoted), Value::Str(_)), "{quoted}");
        }
        assert_eq!(value("!!null x"), Value::Null);
        assert_eq!(value("|\n  a\n  b"), Value::Str("a\nb\n".into()));
    }

    #[test]
    fn aliases_expand_and_merge_keys_merge() {
        let n = parse("base: &b {a: 1, c: 2}\ncopy: *b\nmerged: {<<: [*b, {a: 9, d: 4}], c: 3}\n")
            .expect("parses");
        let Value::Map(entries) = &n.value else {
            panic!("not a map")
        };
        assert_eq!(entries[1].1.value, entries[0].1.value);
        let Value::Map(merged) = &entries[2].1.value else {
            panic!("not a map")
        };
        let pairs: Vec<(String, Value)> = merged
            .iter()
            .map(|(k, v)| (k.as_text().unwrap(), v.value.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("c".into(), Value::Int(3)),
                ("a".into(), Value::Int(1)),
                ("d".into(), Value::Int(4))
            ]
        );
    }

    #[test]
    fn duplicate_keys_unknown_aliases_and_second_documents_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(e.pos, Pos { line: 3, column: 1 });
        assert_eq!(e.message, "invalid YAML: duplicate mapping key: a");
        let e = parse("a: *nope\n").expect_err("unknown alias");
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
        let e = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(e.pos.line, 2, "{e:?}");
        assert!(e.message.contains("more than one YAML document"), "{e:?}");
        assert_eq!(parse("").expect("empty").value, Value::Null);
        assert_eq!(
            parse("# only a comment\n").expect("empty").value,
            Value::Null
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
    }
}
