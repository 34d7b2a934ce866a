//! Label selectors, matched on our side too (so results are right even when a server ignores
//! the `labelSelector` parameter).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (`app=api,tier!=db,env in (a,b),!legacy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Selector(Vec<Req>);

impl Selector {
    /// Parses the kubectl `-l` syntax as the API server does; `None` when it is not a valid
    /// selector (an empty requirement, unbalanced parentheses, a key or value Kubernetes would
    /// refuse).
    pub fn parse(s: &str) -> Option<Selector> {
        let mut reqs = Vec::new();
        for term in split_terms(s)? {
            let term = term.trim();
            if term.is_empty() {
                return None;
            }
            reqs.push(parse_term(term)?);
        }
        Some(Selector(reqs))
    }

    /// A workload's `spec.selector` (matchLabels and matchExpressions).
    pub fn from_label_selector(sel: &LabelSelector) -> Selector {
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Req::Eq(k.clone(), v.clone()));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            reqs.push(match e.operator.as_str() {
                "In" => Req::In(e.key.clone(), values),
                "NotIn" => Req::NotIn(e.key.clone(), values),
                "Exists" => Req::Exists(e.key.clone()),
                _ => Req::NotExists(e.key.clone()),
            });
        }
        Selector(reqs)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// The selector in the API's syntax, for the `labelSelector` parameter.
    pub fn to_query(&self) -> String {
        self.0
            .iter()
            .map(|r| match r {
                Req::Eq(k, v) => format!("{k}={v}"),
                Req::NotEq(k, v) => format!("{k}!={v}"),
                Req::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Req::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Req::Exists(k) => k.clone(),
                Req::NotExists(k) => format!("!{k}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Splits on commas outside parentheses; `None` when they do not balance (or nest).
fn split_terms(s: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return None;
        }
    }
    out.push(&s[start..]);
    (depth == 0).then_some(out)
}

/// A label key: `[PREFIX/]NAME`, PREFIX a DNS subdomain, NAME a non-empty label value.
fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|l| {
                let b = l.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
            })
    });
    prefix_ok && !name.is_empty() && valid_value(name)
}

/// A label value: empty, or at most 63 letters, digits, `-_.`, starting and ending with a
/// letter or digit.
fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}

fn parse_term(term: &str) -> Option<Req> {
    if let Some(k) = term.strip_prefix('!') {
        let k = k.trim();
        return valid_key(k).then(|| Req::NotExists(k.to_owned()));
    }
    for (op, neg) in [(" notin ", true), (" in ", false)] {
        if let Some(pos) = term.find(op) {
            let k = term[..pos].trim();
            let rest = term[pos + op.len()..].trim();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
            if !valid_key(k) || !values.iter().all(|v| valid_value(v)) {
                return None;
            }
            return Some(if neg {
                Req::NotIn(k.to_owned(), values)
            } else {
                Req::In(k.to_owned(), values)
            });
        }
    }
    let (k, v, neg) = if let Some((k, v)) = term.split_once("!=") {
        (k, v, true)
    } else if let Some((k, v)) = term.split_once("==") {
        (k, v, false)
    } else if let Some((k, v)) = term.split_once('=') {
        (k, v, false)
    } else {
        return valid_key(term).then(|| Req::Exists(term.to_owned()));
    };
    let (k, v) = (k.trim(), v.trim());
    if !valid_key(k) || !valid_value(v) {
        return None;
    }
    Some(if neg {
        Req::NotEq(k.to_owned(), v.to_owned())
    } else {
        Req::Eq(k.to_owned(), v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_and_matches() {
        let s = Selector::parse("app=api,tier!=db,env in (prod, staging),!legacy").unwrap();
        assert!(s.matches(Some(&labels(&[("app", "api"), ("env", "prod")]))));
        assert!(!s.matches(Some(&labels(&[("app", "api"), ("env", "dev")]))));
        assert!(!s.matches(Some(&labels(&[
            ("app", "api"),
            ("env", "prod"),
            ("legacy", "")
        ]))));
        assert!(!s.matches(Some(&labels(&[
            ("app", "api"),
            ("env", "prod"),
            ("tier", "db")
        ]))));
        assert_eq!(
            s.to_query(),
            "app=api,tier!=db,env in (prod,staging),!legacy"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(Selector::parse("app=a b").is_none());
        assert!(Selector::parse("env in prod").is_none());
        assert!(Selector::parse("=x").is_none());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC*") {
            if let Some(sel) = Selector::parse(&s) {
                let _ = sel.matches(None);
                // What we send the server parses back to the same selector.
                proptest::prop_assert_eq!(Selector::parse(&sel.to_query()), Some(sel));
            }
        }
    }
}
