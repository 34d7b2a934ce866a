//! From a located YAML tree to a validated [`Policy`], collecting every error on the way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use globset::{Glob, GlobBuilder};

use crate::index::Index;
use crate::yaml::{self, Node, Pos, Value};
use crate::{Action, Policy, PolicyError, PolicyErrors, Requirement, Severity, Subject};

/// Name of the implicit rule that allows `help` and `whoami`.
pub const BUILTIN_RULE: &str = "builtin:always-allowed";

/// Approval time-to-live when a rule does not say.
pub const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(15 * 60);

const TOP_KEYS: &[&str] = &["version", "roles", "rules"];
const ROLE_KEYS: &[&str] = &["members"];
const RULE_KEYS: &[&str] = &[
    "name",
    "roles",
    "actions",
    "clusters",
    "namespaces",
    "resources",
    "channels",
    "when",
    "effect",
    "reason",
    "approval",
];
const WHEN_KEYS: &[&str] = &["replicas", "tail_lines", "severity"];
const REPLICAS_KEYS: &[&str] = &["min", "max"];
const TAIL_LINES_KEYS: &[&str] = &["max"];
const APPROVAL_KEYS: &[&str] = &["roles", "count", "ttl", "allow_self"];

/// A rule's pattern: the text it was written as, and how it is matched. Rules' patterns are
/// matched through the policy's index (one set per key), never one by one.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub text: String,
    pub shape: Shape,
}

/// How a pattern matches. Most patterns are names or name prefixes (`team-a`, `svc-*`): those
/// are compared as text, and only real globs are compiled. globset would answer the simple ones
/// without a regex too, but building a `Glob` costs an allocation per character of the pattern;
/// at a thousand rules that was a fifth of the policy's load.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// No glob characters: the value is the text.
    Exact,
    /// Glob characters only in one `*` at the end: the value starts with the text before it.
    Prefix,
    /// Any other glob, as globset matches it.
    Glob(Glob),
}

/// Characters that make a pattern more than a name or a name prefix (globset's syntax; `}` and
/// `]` too, so a stray one is globset's to accept or report).
const GLOB_CHARS: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("an empty pattern matches nothing".to_owned());
        }
        let shape = if !text.contains(GLOB_CHARS) {
            Shape::Exact
        } else if text
            .strip_suffix('*')
            .is_some_and(|head| !head.contains(GLOB_CHARS))
        {
            Shape::Prefix
        } else {
            Shape::Glob(glob(text)?)
        };
        Ok(Pattern {
            text: text.to_owned(),
            shape,
        })
    }
}

/// `text` as a glob: `*` matches `/` too, `\\` escapes.
pub(crate) fn glob(text: &str) -> Result<Glob, String> {
    GlobBuilder::new(text)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{', '\\'])
}

#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub members: Vec<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoleSel {
    Any,
    Named(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny { reason: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct When {
    pub replicas: Option<(Option<i64>, Option<i64>)>,
    pub tail_lines_max: Option<i64>,
    pub severity: Option<Vec<Severity>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub name: String,
    pub roles: RoleSel,
    /// The actions as written (for explanations).
    pub action_patterns: Vec<String>,
    /// Every action the patterns cover.
    pub actions: BTreeSet<Action>,
    pub clusters: Option<Vec<Pattern>>,
    pub namespaces: Option<Vec<Pattern>>,
    pub resources: Option<Vec<Pattern>>,
    pub channels: Option<Vec<Pattern>>,
    pub when: When,
    pub effect: Effect,
    pub approval: Option<Requirement>,
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit && *d < word.chars().count().max(1) + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match nearest(word, candidates.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            let all: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            if all.is_empty() {
                "nothing is defined yet".to_owned()
            } else {
                format!("expected one of {}", all.join(", "))
            }
        }
    }
}

struct Loader<'f> {
    file: &'f str,
    errors: Vec<PolicyError>,
    /// Expiry of approvals whose rule gives no `ttl`.
    default_ttl: Duration,
    /// The actions each action glob seen so far covers (a policy repeats a few globs often).
    action_globs: HashMap<String, Vec<Action>>,
}

impl Loader<'_> {
    /// The actions an action glob covers, compiled once per distinct text.
    fn action_glob(&mut self, text: &str) -> Result<Vec<Action>, String> {
        if let Some(hits) = self.action_globs.get(text) {
            return Ok(hits.clone());
        }
        let matcher = glob(text)?.compile_matcher();
        let hits: Vec<Action> = Action::ALL
            .into_iter()
            .filter(|a| matcher.is_match(a.as_str()))
            .collect();
        self.action_globs.insert(text.to_owned(), hits.clone());
        Ok(hits)
    }

    fn err(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint,
        });
    }

    /// The entries of a mapping with known keys; reports unknown and non-text keys.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<BTreeMap<&'static str, (Pos, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.err(
                node.pos,
                format!("{what} must be a mapping, found {}", node.value.kind()),
                Some(format!("valid keys: {}", allowed.join(", "))),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let Some(key) = k.text() else {
                self.err(
                    k.pos,
                    format!("keys of {what} must be names, found {}", k.value.kind()),
                    Some(format!("valid keys: {}", allowed.join(", "))),
                );
                continue;
            };
            let Some(&name) = allowed.iter().find(|&&a| a == key) else {
                let hint = match nearest(&key, allowed.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`? valid keys: {}", allowed.join(", ")),
                    None => format!("valid keys: {}", allowed.join(", ")),
                };
                self.err(k.pos, format!("unknown key `{key}` in {what}"), Some(hint));
                continue;
            };
            out.insert(name, (k.pos, v));
        }
        Some(out)
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_text() {
            Some(s) => Some(s),
            None => {
                self.err(
                    node.pos,
                    format!("{what} must be a string, found {}", node.value.kind()),
                    Some(match &node.value {
                        Value::Null => "write a value, or leave the key out".to_owned(),
                        _ => "quote it if it is meant as text, e.g. `\"yes\"`".to_owned(),
                    }),
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) if items.is_empty() => {
                let hint = if ["roles", "actions"].contains(&what) {
                    "list at least one entry".to_owned()
                } else {
                    format!("list at least one entry, or leave `{what}` out to match any")
                };
                self.err(
                    node.pos,
                    format!("`{what}` is an empty list, which matches nothing"),
                    Some(hint),
                );
                None
            }
            Value::Seq(items) => Some(items),
            other => {
                let hint = node
                    .as_text()
                    .map(|t| format!("write a list: `{what}: [{t}]`"))
                    .unwrap_or_else(|| format!("write a list: `{what}: [a, b]`"));
                self.err(
                    node.pos,
                    format!("`{what}` must be a list, found {}", other.kind()),
                    Some(hint),
                );
                None
            }
        }
    }

    fn int(&mut self, node: &Node, what: &str) -> Option<i128> {
        match &node.value {
            Value::Int(i) => Some(*i),
            other => {
                self.err(
                    node.pos,
                    format!("`{what}` must be an integer, found {}", other.kind()),
                    Some("write a whole number without quotes, e.g. `3`".to_owned()),
                );
                None
            }
        }
    }

    fn patterns(&mut self, node: &Node, key: &str) -> Option<Vec<Pattern>> {
        let items = self.list(node, key)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.text(item, &format!("an entry of `{key}`")) else {
                ok = false;
                continue;
            };
            match Pattern::new(&text) {
                Ok(p) => {
                    if key == "channels" && text.starts_with('#') {
                        ok = false;
                        self.err(
                            item.pos,
                            format!(
                                "channel pattern `{text}` is a name: channels match the channel's \
                                 id, never its name"
                            ),
                            Some(
                                "anyone in a workspace can rename a channel or create one by a \
                                 name; write the id: Slack `C0123ABCD`, Discord `123456789012345678` \
                                 (the console's channels are their names without `#`)"
                                    .to_owned(),
                            ),
                        );
                    }
                    if key == "resources" && !text.contains('/') && text != "*" && text != "**" {
                        ok = false;
                        self.err(
                            item.pos,
                            format!("resource pattern `{text}` has no `/`, so it can never match"),
                            Some(format!(
                                "resources are `kind/name`, e.g. `deployment/{text}` or `*/{text}`"
                            )),
                        );
                    }
                    out.push(p);
                }
                Err(why) => {
                    ok = false;
                    self.err(
                        item.pos,
                        format!("bad glob `{text}` in `{key}`: {why}"),
                        Some("globs use `*`, `?`, `[abc]` and `{a,b}`".to_owned()),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn role_refs(
        &mut self,
        node: &Node,
        what: &str,
        defined: &BTreeMap<String, Role>,
        allow_any: bool,
    ) -> Option<RoleSel> {
        let items = self.list(node, what)?;
        let mut names = Vec::new();
        let mut any = false;
        let mut ok = true;
        for item in items {
            let Some(name) = self.text(item, &format!("an entry of `{what}`")) else {
                ok = false;
                continue;
            };
            if name == "*" {
                if allow_any {
                    any = true;
                } else {
                    ok = false;
                    self.err(
                        item.pos,
                        "`*` cannot approve: approvals need named roles",
                        Some(format!(
                            "name a role defined under `roles`: {}",
                            defined.keys().cloned().collect::<Vec<_>>().join(", ")
                        )),
                    );
                }
                continue;
            }
            if !defined.contains_key(&name) {
                ok = false;
                let hint = did_you_mean(&name, defined.keys().map(String::as_str));
                self.err(
                    item.pos,
                    format!("role `{name}` used but not defined"),
                    Some(format!(
                        "{hint} (roles are defined under the top-level `roles`)"
                    )),
                );
                continue;
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if !ok {
            return None;
        }
        Some(if any {
            RoleSel::Any
        } else {
            RoleSel::Named(names)
        })
    }

    fn actions(&mut self, node: &Node) -> Option<(Vec<String>, BTreeSet<Action>)> {
        let items = self.list(node, "actions")?;
        let mut written = Vec::new();
        let mut set = BTreeSet::new();
        let mut ok = true;
        let names = || Action::ALL.iter().map(|a| a.as_str());
        for item in items {
            let Some(text) = self.text(item, "an entry of `actions`") else {
                ok = false;
                continue;
            };
            if is_glob(&text) {
                match self.action_glob(&text) {
                    Ok(hits) => {
                        if hits.is_empty() {
                            ok = false;
                            self.err(
                                item.pos,
                                format!("action pattern `{text}` matches no action"),
                                Some(format!(
                                    "actions are: {}",
                                    names().collect::<Vec<_>>().join(", ")
                                )),
                            );
                        }
                        set.extend(hits.iter().copied());
                    }
                    Err(why) => {
                        ok = false;
                        self.err(
                            item.pos,
                            format!("bad glob `{text}` in `actions`: {why}"),
                            Some(
                                "globs use `*`, `?`, `[abc]` and `{a,b}`, e.g. `incident.*`".into(),
                            ),
                        );
                    }
                }
            } else {
                match Action::parse(&text) {
                    Some(a) => {
                        set.insert(a);
                    }
                    None => {
                        ok = false;
                        self.err(
                            item.pos,
                            format!("unknown action `{text}`"),
                            Some(did_you_mean(&text, names())),
                        );
                    }
                }
            }
            written.push(text);
        }
        ok.then_some((written, set))
    }

    fn when(&mut self, node: &Node) -> Option<When> {
        let fields = self.fields(node, "`when`", WHEN_KEYS)?;
        let mut when = When::default();
        let mut ok = true;
        if let Some((_, n)) = fields.get("replicas") {
            match self.bounds(n, "replicas", REPLICAS_KEYS) {
                Some((min, max)) => when.replicas = Some((min, max)),
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("tail_lines") {
            match self.bounds(n, "tail_lines", TAIL_LINES_KEYS) {
                Some((_, max)) => when.tail_lines_max = max,
                None => ok = false,
            }
        }
        if let Some((_, n)) = fields.get("severity") {
            match self.list(n, "severity") {
                Some(items) => {
                    let mut sev = Vec::new();
                    for item in items {
                        let Some(text) = self.text(item, "a severity") else {
                            ok = false;
                            continue;
                        };
                        match Severity::parse(&text) {
                            Some(s) => sev.push(s),
                            None => {
                                ok = false;
                                self.err(
                                    item.pos,
                                    format!("unknown severity `{text}`"),
                                    Some("severities are P1, P2, P3 and P4".to_owned()),
                                );
                            }
                        }
                    }
                    when.severity = Some(sev);
                }
                None => ok = false,
            }
        }
        ok.then_some(when)
    }

    /// `{min, max}` (or only the keys in `allowed`), non-negative, at least one, min ≤ max.
    fn bounds(
        &mut self,
        node: &Node,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<(Option<i64>, Option<i64>)> {
        let fields = self.fields(node, &format!("`{what}`"), allowed)?;
        if fields.is_empty() {
            self.err(
                node.pos,
                format!("`{what}` states no bound"),
                Some(format!("give {}", allowed.join(" and/or "))),
            );
            return None;
        }
        let mut ok = true;
        let mut get = |this: &mut Self, key: &str| -> Option<i64> {
            let (_, n) = fields.get(key)?;
            let v = this.int(n, &format!("{what}.{key}"));
            match v.map(i64::try_from) {
                Some(Ok(v)) if v >= 0 => Some(v),
                Some(_) => {
                    ok = false;
                    this.err(
                        n.pos,
                        format!("`{what}.{key}` must be between 0 and {}", i64::MAX),
                        Some("bounds are counts, so they cannot be negative".to_owned()),
                    );
                    None
                }
                None => {
                    ok = false;
                    None
                }
            }
        };
        let min = get(self, "min");
        let max = get(self, "max");
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            self.err(
                node.pos,
                format!("`{what}` has min {lo} above max {hi}, so it can never match"),
                Some(format!("swap them: `{{ min: {hi}, max: {lo} }}`")),
            );
            return None;
        }
        ok.then_some((min, max))
    }

    fn approval(&mut self, node: &Node, defined: &BTreeMap<String, Role>) -> Option<Requirement> {
        let fields = self.fields(node, "`approval`", APPROVAL_KEYS)?;
        let mut ok = true;
        let roles = match fields.get("roles") {
            Some((_, n)) => match self.role_refs(n, "roles", defined, false) {
                Some(RoleSel::Named(names)) => names,
                _ => {
                    ok = false;
                    Vec::new()
                }
            },
            None => {
                self.err(
                    node.pos,
                    "`approval` is missing `roles`",
                    Some("say who may approve, e.g. `roles: [sre-lead]`".to_owned()),
                );
                return None;
            }
        };
        let mut count = 1u32;
        if let Some((_, n)) = fields.get("count") {
            match self.int(n, "count") {
                Some(c) if c < 1 => {
                    ok = false;
                    self.err(
                        n.pos,
                        format!("`count` is {c}, below 1"),
                        Some(
                            "count is how many distinct approvers are needed; use 1 or more".into(),
                        ),
                    );
                }
                Some(c) => match u32::try_from(c) {
                    Ok(c) => count = c,
                    Err(_) => {
                        ok = false;
                        self.err(
                            n.pos,
                            format!("`count` {c} is too large"),
                            Some(format!("at most {} approvals", u32::MAX)),
                        );
                    }
                },
                None => ok = false,
            }
        }
        let mut ttl = self.default_ttl;
        if let Some((_, n)) = fields.get("ttl") {
            match &n.value {
                Value::Str(s) => match humantime::parse_duration(s) {
                    Ok(d) if d.is_zero() => {
                        ok = false;
                        self.err(
                            n.pos,
                            "bad duration `ttl`: it must be longer than 0s",
                            Some("e.g. `30s`, `15m`, `1h`".into()),
                        );
                    }
                    Ok(d) => ttl = d,
                    Err(e) => {
                        ok = false;
                        self.err(
                            n.pos,
                            format!("bad duration `{s}`: {e}"),
                            Some("write a number and a unit, e.g. `30s`, `15m`, `1h`".into()),
                        );
                    }
                },
                other => {
                    ok = false;
                    let hint = match other {
                        Value::Int(i) => format!("add a unit, e.g. `{i}s` or `{i}m`"),
                        _ => "e.g. `30s`, `15m`, `1h`".to_owned(),
                    };
                    self.err(
                        n.pos,
                        format!(
                            "bad duration: `ttl` must be a duration, found {}",
                            other.kind()
                        ),
                        Some(hint),
                    );
                }
            }
        }
        let mut allow_self = false;
        if let Some((_, n)) = fields.get("allow_self") {
            match n.value {
                Value::Bool(b) => allow_self = b,
                ref other => {
                    ok = false;
                    self.err(
                        n.pos,
                        format!("`allow_self` must be true or false, found {}", other.kind()),
                        Some(
                            "write `allow_self: true` or `allow_self: false`, unquoted".to_owned(),
                        ),
                    );
                }
            }
        }
        ok.then_some(Requirement {
            roles,
            count,
            ttl,
            allow_self,
        })
    }

    fn roles(&mut self, node: &Node) -> BTreeMap<String, Role> {
        let mut out = BTreeMap::new();
        let Value::Map(entries) = &node.value else {
            if node.value != Value::Null {
                self.err(
                    node.pos,
                    format!("`roles` must be a mapping, found {}", node.value.kind()),
                    Some("e.g. `roles: { sre-lead: { members: [\"slack:U01\"] } }`".into()),
                );
            }
            return out;
        };
        for (k, v) in entries {
            let Some(name) = self.text(k, "a role name") else {
                continue;
            };
            if name.is_empty()
                || name == "*"
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                self.err(
                    k.pos,
                    format!("`{name}` cannot be a role name"),
                    Some(
                        "role names are words like `sre-lead`; `*` is reserved for any subject"
                            .into(),
                    ),
                );
                continue;
            }
            let mut members = Vec::new();
            if let Some(fields) = self.fields(v, &format!("role `{name}`"), ROLE_KEYS) {
                match fields.get("members") {
                    None => self.err(
                        v.pos,
                        format!("role `{name}` is missing `members`"),
                        Some("e.g. `members: [\"slack:U01ABC\", \"slack-group:S01XYZ\"]`".into()),
                    ),
                    Some((_, m)) => match &m.value {
                        Value::Seq(items) => {
                            for item in items {
                                let Some(text) = self.text(item, "a member") else {
                                    continue;
                                };
                                match Subject::parse(&text) {
                                    Ok(s) if !members.contains(&s) => members.push(s),
                                    Ok(_) => {}
                                    Err(e) => {
                                        self.err(item.pos, e.to_string(), Some(subject_hint(&text)))
                                    }
                                }
                            }
                        }
                        Value::Null => {}
                        other => self.err(
                            m.pos,
                            format!("`members` must be a list, found {}", other.kind()),
                            Some("e.g. `members: [\"slack:U01ABC\"]`".to_owned()),
                        ),
                    },
                }
            }
            out.insert(name, Role { members });
        }
        out
    }

    fn rule(
        &mut self,
        index: usize,
        node: &Node,
        roles: &BTreeMap<String, Role>,
        names: &mut HashMap<String, Pos>,
    ) -> Option<Rule> {
        let fields = self.fields(node, &format!("rule #{}", index + 1), RULE_KEYS)?;
        let mut ok = true;
        let name = match fields.get("name") {
            Some((_, n)) => match self.text(n, "`name`") {
                Some(name) if name.trim().is_empty() => {
                    self.err(
                        n.pos,
                        "rule `name` is empty",
                        Some("name the rule, e.g. `scale-production`".to_owned()),
                    );
                    None
                }
                Some(name) if name.starts_with("builtin:") => {
                    self.err(
                        n.pos,
                        format!("rule name `{name}` is reserved"),
                        Some("names starting with `builtin:` belong to opsbot".into()),
                    );
                    None
                }
                Some(name) => {
                    if let Some(first) = names.get(&name) {
                        self.err(
                            n.pos,
                            format!("duplicate rule name `{name}`"),
                            Some(format!(
                                "first used at {}:{}:{}; rule names must be unique",
                                self.file, first.line, first.column
                            )),
                        );
                        ok = false;
                    } else {
                        names.insert(name.clone(), n.pos);
                    }
                    Some(name)
                }
                None => None,
            },
            None => {
                self.err(
                    node.pos,
                    format!("rule #{} has no `name`", index + 1),
                    Some("every rule needs a unique `name`, shown in decisions and audits".into()),
                );
                None
            }
        };
        let what = name
            .clone()
            .unwrap_or_else(|| format!("rule #{}", index + 1));
        let sel = match fields.get("roles") {
            Some((_, n)) => self.role_refs(n, "roles", roles, true),
            None => {
                self.err(
                    node.pos,
                    format!("rule `{what}` has no `roles`"),
                    Some(
                        "say who it is for, e.g. `roles: [oncall]`, or `roles: [\"*\"]` for anyone"
                            .into(),
                    ),
                );
                None
            }
        };
        let actions = match fields.get("actions") {
            Some((_, n)) => self.actions(n),
            None => {
                self.err(
                    node.pos,
                    format!("rule `{what}` has no `actions`"),
                    Some("e.g. `actions: [status, logs]`".into()),
                );
                None
            }
        };
        let pats = |this: &mut Self, key: &str| -> Option<Option<Vec<Pattern>>> {
            match fields.get(key) {
                None => Some(None),
                Some((_, n)) => this.patterns(n, key).map(Some),
            }
        };
        let clusters = pats(self, "clusters");
        let namespaces = pats(self, "namespaces");
        let resources = pats(self, "resources");
        let channels = pats(self, "channels");
        let when = match fields.get("when") {
            None => Some(When::default()),
            Some((_, n)) => self.when(n),
        };
        let reason = match fields.get("reason") {
            None => None,
            Some((_, n)) => match self.text(n, "`reason`") {
                Some(r) if r.trim().is_empty() => {
                    ok = false;
                    self.err(
                        n.pos,
                        "`reason` is empty",
                        Some("say why, for whoever is denied".to_owned()),
                    );
                    None
                }
                Some(r) => Some((n.pos, r)),
                None => {
                    ok = false;
                    None
                }
            },
        };
        let deny = match fields.get("effect") {
            None => false,
            Some((_, n)) => match n.as_text().as_deref() {
                Some("allow") => false,
                Some("deny") => true,
                other => {
                    ok = false;
                    self.err(
                        n.pos,
                        match other {
                            Some(t) => format!("unknown effect `{t}`"),
                            None => format!("`effect` must be a string, found {}", n.value.kind()),
                        },
                        Some("effect is `allow` (the default) or `deny`".into()),
                    );
                    false
                }
            },
        };
        let effect = if deny {
            match &reason {
                Some((_, r)) => Effect::Deny { reason: r.clone() },
                None => {
                    ok = false;
                    let pos = fields.get("effect").map(|(_, n)| n.pos).unwrap_or(node.pos);
                    self.err(
                        pos,
                        format!("deny rule `{what}` has no `reason`"),
                        Some("add `reason: ...`; it is shown to whoever is denied".into()),
                    );
                    Effect::Allow
                }
            }
        } else {
            if let Some((pos, _)) = &reason {
                ok = false;
                self.err(
                    *pos,
                    format!("`reason` on allow rule `{what}` is never shown"),
                    Some(
                        "`reason` belongs to `effect: deny` rules; use a YAML comment instead"
                            .into(),
                    ),
                );
            }
            Effect::Allow
        };
        let approval = match fields.get("approval") {
            None => Some(None),
            Some((kpos, n)) => {
                if deny {
                    self.err(
                        *kpos,
                        format!("deny rule `{what}` cannot have an `approval`"),
                        Some("approvals only make sense on allow rules".into()),
                    );
                    None
                } else {
                    self.approval(n, roles).map(Some)
                }
            }
        };
        let (Some(name), Some(roles), Some((action_patterns, actions))) = (name, sel, actions)
        else {
            return None;
        };
        let (Some(clusters), Some(namespaces), Some(resources), Some(channels)) =
            (clusters, namespaces, resources, channels)
        else {
            return None;
        };
        let (Some(when), Some(approval)) = (when, approval) else {
            return None;
        };
        ok.then_some(Rule {
            name,
            roles,
            action_patterns,
            actions,
            clusters,
            namespaces,
            resources,
            channels,
            when,
            effect,
            approval,
        })
    }
}

fn subject_hint(text: &str) -> String {
    const KINDS: [&str; 5] = ["slack", "slack-group", "discord", "discord-role", "console"];
    match text.split_once(':') {
        Some((kind, _)) if !KINDS.contains(&kind) => {
            format!(
                "{} (kinds: {})",
                did_you_mean(kind, KINDS),
                KINDS.join(", ")
            )
        }
        Some(_) => "the id after `:` must be non-empty, without spaces".to_owned(),
        None => format!("write `kind:id`, e.g. `slack:{text}` or `console:{text}`"),
    }
}

pub(crate) fn from_yaml(
    src: &str,
    file: &str,
    default_ttl: Duration,
) -> Result<Policy, PolicyErrors> {
    let mut l = Loader {
        file,
        errors: Vec::new(),
        default_ttl,
        action_globs: HashMap::new(),
    };
    let root = match yaml::parse(src) {
        Ok(root) => root,
        Err(e) => {
            l.err(e.pos, e.message, Some(e.hint));
            return Err(PolicyErrors(l.errors));
        }
    };
    if root.value == Value::Null {
        l.err(
            Pos::START,
            "the policy is empty",
            Some("start with `version: 1`, then `roles:` and `rules:`".into()),
        );
        return Err(PolicyErrors(l.errors));
    }
    let Some(top) = l.fields(&root, "the policy", TOP_KEYS) else {
        return Err(PolicyErrors(l.errors));
    };
    match top.get("version") {
        None => l.err(
            root.pos,
            "missing `version`",
            Some("add `version: 1` at the top".into()),
        ),
        Some((_, n)) if n.value == Value::Int(1) => {}
        Some((_, n)) => l.err(
            n.pos,
            format!(
                "unsupported version {}",
                n.as_text().unwrap_or_else(|| n.value.kind().to_owned())
            ),
            Some("this opsbot reads `version: 1`".into()),
        ),
    }
    let roles = match top.get("roles") {
        Some((_, n)) => l.roles(n),
        None => BTreeMap::new(),
    };
    let mut rules = Vec::new();
    match top.get("rules") {
        None => l.err(
            root.pos,
            "missing `rules`",
            Some("without rules nothing but `help` and `whoami` is allowed; add `rules:`".into()),
        ),
        Some((_, n)) => match &n.value {
            Value::Seq(items) => {
                let mut names = HashMap::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(rule) = l.rule(i, item, &roles, &mut names) {
                        rules.push(rule);
                    }
                }
            }
            Value::Null => {}
            other => l.err(
                n.pos,
                format!("`rules` must be a list, found {}", other.kind()),
                Some("each rule is a list item starting with `- name: ...`".into()),
            ),
        },
    }
    // The tree is not needed any more: free it before the index takes its memory (the peak
    // of a large policy's load is lower, and so is the number of fresh pages it touches).
    let root_pos = root.pos;
    drop(top);
    drop(root);
    if l.errors.is_empty() {
        match Index::build(&roles, &rules) {
            Ok(index) => {
                return Ok(Policy {
                    file: file.to_owned(),
                    roles,
                    rules,
                    index,
                });
            }
            Err(e) => l.err(
                root_pos,
                format!("the policy's patterns cannot be compiled together: {e}"),
                Some("use fewer or simpler globs".into()),
            ),
        }
    }
    l.errors.sort_by_key(|e| (e.line, e.column));
    Err(PolicyErrors(l.errors))
}
