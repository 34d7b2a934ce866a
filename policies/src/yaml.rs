//! A YAML document as a tree of located nodes, read with serde-saphyr.
//!
//! The loader validates this tree by hand (rather than deriving `Deserialize` for the policy
//! types) so that it can report *every* problem, each at the line and column of the node it
//! concerns, with a hint.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter, Spanned};

/// 1-based line and column of a node; `0:0` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn from_location(l: &serde_saphyr::Location) -> Pos {
        let line = usize::try_from(l.line()).unwrap_or(usize::MAX);
        let column = usize::try_from(l.column()).unwrap_or(usize::MAX);
        Pos { line, column }
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
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

/// Reads the YAML node with its location.
struct RawNode(Value);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor).map(RawNode)
    }
}

fn located(s: Spanned<RawNode>) -> Node {
    Node {
        pos: Pos::from_location(&s.referenced),
        value: s.value.0,
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(located(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawNode>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((located(key), located(value)));
        }
        Ok(Value::Map(entries))
    }
}

/// A syntax error from the YAML reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    pub hint: String,
}

/// How deep a policy may nest. A policy needs 6 levels (top, `rules`, a rule, `when`,
/// `replicas`, a bound); the limit keeps the recursive reader well inside a 2 MiB thread stack
/// (tokio workers, test threads) whatever the input.
pub(crate) const MAX_DEPTH: usize = 16;

/// Parses one YAML document into a located tree.
pub(crate) fn parse(src: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_events: 1_000_000,
            max_nodes: 400_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
        },
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(src, options) {
        Ok(node) => {
            let mut node = located(node);
            if node.pos.line == 0 {
                node.pos = Pos::START;
            }
            Ok(node)
        }
        Err(err) => {
            let pos = err
                .location()
                .map(|l| Pos::from_location(&l))
                .filter(|p| p.line > 0)
                .unwrap_or(Pos::START);
            let message = DefaultMessageFormatter
                .format_message(err.without_snippet())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>();
            // Drop advice meant for Rust developers, not for policy authors.
            let message = match message.split_once(", set DuplicateKeyPolicy") {
                Some((head, _)) => head.to_owned(),
                None => message,
            };
            let (message, hint) = if message.contains("Depth")
                || message.contains("recursion limit")
                || message.contains("nesting")
            {
                (
                    format!("the policy nests deeper than {MAX_DEPTH} levels"),
                    "a policy needs at most 6 levels: top, `rules`, a rule, `when`, `replicas`, a bound",
                )
            } else if message.contains("budget breached") {
                (
                    format!("the policy is too large to read ({message})"),
                    "a policy needs few nodes; check for runaway anchors and aliases (`&a`, `*a`)",
                )
            } else {
                (
                    format!("invalid YAML: {message}"),
                    "fix the YAML syntax first",
                )
            };
            Err(SyntaxError {
                pos,
                message,
                hint: hint.to_owned(),
            })
        }
    }
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

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
    }
}
