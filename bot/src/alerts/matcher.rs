//! Alertmanager's label matchers: `severity="critical"`, `namespace=~"prod.*"`, `team!=db`,
//! `pod!~"canary-.*"`, one or several separated by commas, optionally in `{…}`.
//!
//! Written here because the maintained Rust parsers (`promql-parser`) read PromQL selectors
//! (quoted values only, a grammar generator and a date library along), not Alertmanager's
//! matcher lists. As in Alertmanager: values may be quoted (`\"`, `\\`, `\n` escapes) or bare,
//! regexes are anchored at both ends, and a missing label matches as the empty string.

use std::fmt;

use regex::Regex;
use serde::Serialize;

use super::payload::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One matcher, its regex compiled.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// A matcher as Alertmanager's API v2 takes and gives it (silences).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ApiMatcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    /// Absent in answers of old Alertmanagers: then it is an equality.
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl fmt::Display for ApiMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

/// Why a matcher list could not be read; `at` is the character offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid matcher at character {at}: {message}")]
pub struct MatcherError {
    pub at: usize,
    pub message: String,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError {
                    at: 0,
                    message: format!("{name}: invalid regex {value:?}: {e}"),
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// Whether `labels` satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            (_, None) => false,
        }
    }

    pub fn to_api(&self) -> ApiMatcher {
        ApiMatcher {
            name: self.name.clone(),
            value: self.value.clone(),
            is_regex: matches!(self.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(self.op, MatchOp::Equal | MatchOp::Regex),
        }
    }
}

/// Whether every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Parses `a="1", b=~"x.*"` or `{a="1",b!=2}`.
pub fn parse(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    let mut p = Parser {
        chars: input.char_indices().collect(),
        pos: 0,
    };
    p.skip_ws();
    let braced = p.eat('{');
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        if p.done() || (braced && p.peek() == Some('}')) {
            break;
        }
        out.push(p.matcher(braced)?);
        p.skip_ws();
        if !p.eat(',') {
            break;
        }
    }
    p.skip_ws();
    if braced && !p.eat('}') {
        return Err(p.error("expected `}` to close the matcher list"));
    }
    p.skip_ws();
    if !p.done() {
        return Err(p.error("expected `,` between matchers"));
    }
    if out.is_empty() {
        return Err(p.error("no matchers (write e.g. severity=\"critical\")"));
    }
    Ok(out)
}

struct Parser {
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|(_, c)| *c)
    }

    fn done(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error(&self, message: impl Into<String>) -> MatcherError {
        MatcherError {
            at: self.pos + 1,
            message: message.into(),
        }
    }

    fn matcher(&mut self, braced: bool) -> Result<Matcher, MatcherError> {
        let start = self.pos;
        let mut name = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            name.push(c);
            self.pos += 1;
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error("expected a label name (letters, digits, `_`)"));
        }
        self.skip_ws();
        let op = if self.eat('=') {
            if self.eat('~') {
                MatchOp::Regex
            } else {
                MatchOp::Equal
            }
        } else if self.eat('!') {
            if self.eat('=') {
                MatchOp::NotEqual
            } else if self.eat('~') {
                MatchOp::NotRegex
            } else {
                return Err(self.error("expected `!=` or `!~`"));
            }
        } else {
            return Err(self.error(format!("expected `=`, `!=`, `=~` or `!~` after {name:?}")));
        };
        self.skip_ws();
        let value = if self.eat('"') {
            self.quoted()?
        } else {
            self.bare(braced)
        };
        Matcher::new(&name, op, &value).map_err(|mut e| {
            e.at = start + 1;
            e
        })
    }

    fn quoted(&mut self) -> Result<String, MatcherError> {
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated quoted value")),
                Some('"') => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some('\\') => {
                    self.pos += 1;
                    let escaped = match self.peek() {
                        Some('n') => '\n',
                        Some(c @ ('"' | '\\')) => c,
                        _ => return Err(self.error("unknown escape (use \\\", \\\\ or \\n)")),
                    };
                    value.push(escaped);
                    self.pos += 1;
                }
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn bare(&mut self, braced: bool) -> String {
        let mut value = String::new();
        while let Some(c) = self.peek().filter(|c| *c != ',' && !(braced && *c == '}')) {
            value.push(c);
            self.pos += 1;
        }
        value.trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_every_operator_quoted_bare_and_braced() {
        let m =
            parse(r#"{severity="critical", namespace=~"prod.*",team!=db , pod!~"canary-\"x\""}"#)
                .unwrap();
        let got: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                r#"severity="critical""#,
                r#"namespace=~"prod.*""#,
                r#"team!="db""#,
                r#"pod!~"canary-\"x\"""#
            ]
        );
        assert_eq!(parse("a=1,b=2").unwrap().len(), 2);
    }

    #[test]
    fn matches_as_alertmanager_does() {
        let m = parse(r#"severity="critical", namespace=~"prod.*""#).unwrap();
        assert!(all_match(
            &m,
            &labels(&[("severity", "critical"), ("namespace", "production")])
        ));
        assert!(
            !all_match(
                &m,
                &labels(&[("severity", "critical"), ("namespace", "staging-prod")])
            ),
            "regexes are anchored"
        );
        let absent = parse(r#"team="""#).unwrap();
        assert!(all_match(&absent, &labels(&[])), "a missing label is empty");
        let ne = parse("team!~db|cache").unwrap();
        assert!(!all_match(&ne, &labels(&[("team", "db")])));
        assert!(all_match(&ne, &labels(&[("team", "web")])));
    }

    #[test]
    fn errors_say_where_and_what() {
        for (input, at, needle) in [
            ("severity", 9, "expected `=`"),
            (r#"a="x"#, 5, "unterminated"),
            (r#"{a="x""#, 7, "`}`"),
            (r#"a="x" b="y""#, 7, "`,`"),
            ("=x", 1, "label name"),
            ("a=~(", 1, "invalid regex"),
            ("", 1, "no matchers"),
            ("a!x", 3, "`!=` or `!~`"),
        ] {
            let e = parse(input).unwrap_err();
            assert_eq!(e.at, at, "{input}: {e}");
            assert!(e.message.contains(needle), "{input}: {e}");
        }
    }

    #[test]
    fn api_form_of_each_operator() {
        let m = parse("a=1,b!=2,c=~3,d!~4").unwrap();
        let flags: Vec<(bool, bool)> = m
            .iter()
            .map(|m| {
                let a = m.to_api();
                (a.is_regex, a.is_equal)
            })
            .collect();
        assert_eq!(
            flags,
            [(false, true), (false, false), (true, true), (true, false)]
        );
    }
}
