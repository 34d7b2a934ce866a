//! What evaluation looks up instead of scanning: built once when a policy is loaded.
//!
//! - rules by action (file order kept), so a request only visits the rules that name its action;
//! - roles by member, so the roles a requester holds are a few hash look-ups;
//! - per glob key (clusters, namespaces, resources, channels), every pattern of every rule: names
//!   and name prefixes (`team-a`, `team-a-*`) in hash maps, the other globs compiled once,
//!   together, into one [`GlobSet`]. A set matches exactly as each glob would on its own.
//!
//! Matches are `(rule, pattern)` pairs, sorted, each once.

use std::collections::{BTreeMap, HashMap};

use globset::{Candidate, GlobSet, GlobSetBuilder};

use crate::load::{Pattern, Role, RoleSel, Rule, Shape};
use crate::{Action, Request, Subject};

/// The request fields rules can limit with globs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key {
    Cluster,
    Namespace,
    Resource,
    Channel,
}

impl Key {
    pub const ALL: [Key; 4] = [Key::Cluster, Key::Namespace, Key::Resource, Key::Channel];

    /// The rule's patterns for this key; `None` when the rule does not limit it.
    pub fn patterns(self, rule: &Rule) -> Option<&[Pattern]> {
        match self {
            Key::Cluster => rule.clusters.as_deref(),
            Key::Namespace => rule.namespaces.as_deref(),
            Key::Resource => rule.resources.as_deref(),
            Key::Channel => rule.channels.as_deref(),
        }
    }

    pub fn value(self, req: &Request) -> Option<&str> {
        match self {
            Key::Cluster => req.cluster.as_deref(),
            Key::Namespace => req.namespace.as_deref(),
            Key::Resource => req.resource.as_deref(),
            Key::Channel => req.channel.as_deref(),
        }
    }
}

/// Which rule, and which of its patterns for the key.
type Owner = (u32, u32);

/// Every pattern of one key, across all rules: names and name prefixes in hash maps, the other
/// globs in one [`GlobSet`].
#[derive(Debug, Clone, Default)]
struct KeySet {
    /// Exact patterns: text → owners.
    exact: HashMap<String, Vec<Owner>>,
    /// Prefix patterns: the text before the final `*` → owners.
    prefixes: HashMap<String, Vec<Owner>>,
    /// The lengths of those prefixes, ascending: the only lengths at which a value is cut.
    prefix_lens: Vec<usize>,
    globs: GlobSet,
    /// Glob index → owner.
    glob_owner: Vec<Owner>,
}

#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Indexed by `Action as usize`: the rules covering that action, in file order.
    by_action: Vec<Vec<u32>>,
    /// Member subject → indices (in role-name order) of the roles listing it.
    roles_of_member: HashMap<Subject, Vec<u32>>,
    /// Per rule: where its roles' indices are in `role_ids`, `None` for `*`. One array for
    /// all rules, so that a decision reads them without a pointer per rule.
    rule_roles: Vec<Option<std::ops::Range<u32>>>,
    role_ids: Vec<u32>,
    keys: [KeySet; 4],
}

/// Which patterns one request's values matched, per key: `(rule, pattern)` sorted.
pub(crate) struct Matches([Vec<(u32, u32)>; 4]);

impl Matches {
    /// The position of the first of rule `rule`'s patterns for `key` that matched, if any.
    pub fn first(&self, key: Key, rule: usize) -> Option<usize> {
        let hits = &self.0[key as usize];
        let at = hits.partition_point(|&(r, _)| (r as usize) < rule);
        hits.get(at)
            .filter(|&&(r, _)| r as usize == rule)
            .map(|&(_, p)| p as usize)
    }
}

impl Index {
    pub fn build(roles: &BTreeMap<String, Role>, rules: &[Rule]) -> Result<Index, String> {
        let role_ids_by_name: HashMap<&str, u32> = roles
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i as u32))
            .collect();
        let mut roles_of_member: HashMap<Subject, Vec<u32>> = HashMap::new();
        for (i, role) in roles.values().enumerate() {
            for member in &role.members {
                roles_of_member
                    .entry(member.clone())
                    .or_default()
                    .push(i as u32);
            }
        }
        let mut role_ids = Vec::new();
        let rule_roles = rules
            .iter()
            .map(|rule| match &rule.roles {
                RoleSel::Any => None,
                RoleSel::Named(names) => {
                    let start = role_ids.len() as u32;
                    let ids = names
                        .iter()
                        .filter_map(|n| role_ids_by_name.get(n.as_str()));
                    role_ids.extend(ids);
                    Some(start..role_ids.len() as u32)
                }
            })
            .collect();
        let mut by_action = vec![Vec::new(); Action::ALL.len()];
        for (i, rule) in rules.iter().enumerate() {
            for action in &rule.actions {
                by_action[*action as usize].push(i as u32);
            }
        }
        let keys = [
            KeySet::build(Key::Cluster, rules)?,
            KeySet::build(Key::Namespace, rules)?,
            KeySet::build(Key::Resource, rules)?,
            KeySet::build(Key::Channel, rules)?,
        ];
        Ok(Index {
            by_action,
            roles_of_member,
            rule_roles,
            role_ids,
            keys,
        })
    }

    /// The rules covering `action`, in file order.
    pub fn rules_for(&self, action: Action) -> &[u32] {
        &self.by_action[action as usize]
    }

    /// Per role index: whether `user`, or one of its group subjects, is a member.
    pub fn held_roles(&self, role_count: usize, user: &Subject, groups: &[Subject]) -> Vec<bool> {
        let mut held = vec![false; role_count];
        let subjects = std::iter::once(user).chain(groups.iter().filter(|g| g.is_group()));
        for subject in subjects {
            for &r in self.roles_of_member.get(subject).into_iter().flatten() {
                held[r as usize] = true;
            }
        }
        held
    }

    /// Whether rule `rule`'s roles admit someone holding `held`.
    pub fn admits(&self, rule: usize, held: &[bool]) -> bool {
        match &self.rule_roles[rule] {
            None => true,
            Some(ids) => self.role_ids[ids.start as usize..ids.end as usize]
                .iter()
                .any(|&r| held[r as usize]),
        }
    }

    /// The patterns `req`'s values match, per key.
    pub fn matches(&self, req: &Request) -> Matches {
        Matches(Key::ALL.map(|key| {
            let mut hits = Vec::new();
            if let Some(value) = key.value(req) {
                self.keys[key as usize].matches(value, &mut hits);
                // Collected from three places, and two expansions of one brace glob may both
                // match: sorted, and each pattern once.
                hits.sort_unstable();
                hits.dedup();
            }
            hits
        }))
    }
}

impl KeySet {
    fn build(key: Key, rules: &[Rule]) -> Result<KeySet, String> {
        KeySet::of(rules.iter().enumerate().flat_map(|(r, rule)| {
            let patterns = key.patterns(rule).into_iter().flatten().enumerate();
            patterns.map(move |(p, pattern)| ((r as u32, p as u32), pattern))
        }))
    }

    fn of<'p>(patterns: impl Iterator<Item = (Owner, &'p Pattern)>) -> Result<KeySet, String> {
        let mut set = KeySet::default();
        let mut globs = GlobSetBuilder::new();
        for (owner, pattern) in patterns {
            match expand_braces(&pattern.text) {
                // `statefulset/{db,cache}-1` as `statefulset/db-1` and `statefulset/cache-1`:
                // the same strings match, and names need no regex (compiling the regexes of a
                // large policy's brace globs together was a third of its load).
                Some(parts) => {
                    for part in &parts {
                        set.add(part, owner, &mut globs);
                    }
                }
                None => set.add(pattern, owner, &mut globs),
            }
        }
        set.prefix_lens.sort_unstable();
        set.prefix_lens.dedup();
        set.globs = globs.build().map_err(|e| e.to_string())?;
        Ok(set)
    }

    fn add(&mut self, pattern: &Pattern, owner: Owner, globs: &mut GlobSetBuilder) {
        match &pattern.shape {
            Shape::Exact => self
                .exact
                .entry(pattern.text.clone())
                .or_default()
                .push(owner),
            Shape::Prefix => {
                let head = &pattern.text[..pattern.text.len() - 1];
                self.prefix_lens.push(head.len());
                self.prefixes
                    .entry(head.to_owned())
                    .or_default()
                    .push(owner);
            }
            Shape::Glob(glob) => {
                globs.add(glob.clone());
                self.glob_owner.push(owner);
            }
        }
    }

    /// Appends the owners of the patterns `value` matches (in no particular order).
    fn matches(&self, value: &str, hits: &mut Vec<Owner>) {
        hits.extend(self.exact.get(value).into_iter().flatten());
        for &len in &self.prefix_lens {
            if len > value.len() {
                break;
            }
            if let Some(owners) = value.get(..len).and_then(|head| self.prefixes.get(head)) {
                hits.extend(owners);
            }
        }
        if !self.globs.is_empty() {
            let mut globs = Vec::new();
            self.globs
                .matches_candidate_into(&Candidate::new(value), &mut globs);
            hits.extend(globs.into_iter().map(|g| self.glob_owner[g]));
        }
    }
}

/// Most globs one brace pattern is expanded into; past this it stays one (regex) glob.
const MAX_EXPANSIONS: usize = 16;

/// The patterns a pattern with simple brace groups stands for (`a{b,c}d` → `abd`, `acd`), when
/// that is exactly the same set of strings: braces not nested, every alternative non-empty,
/// and no escapes or character classes anywhere (where a brace could be literal). `None` when
/// there is nothing to expand or the pattern is not that simple.
fn expand_braces(text: &str) -> Option<Vec<Pattern>> {
    if !text.contains('{') || text.contains(['\\', '[', ']']) {
        return None;
    }
    let mut out = vec![String::new()];
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return None;
        }
        let close = open + rest[open..].find('}')?;
        let group = &rest[open + 1..close];
        if group.contains('{') {
            return None;
        }
        let alternatives: Vec<&str> = group.split(',').collect();
        if alternatives.iter().any(|a| a.is_empty())
            || out.len() * alternatives.len() > MAX_EXPANSIONS
        {
            return None;
        }
        let head = &rest[..open];
        out = out
            .iter()
            .flat_map(|done| {
                alternatives
                    .iter()
                    .map(move |alt| format!("{done}{head}{alt}"))
            })
            .collect();
        rest = &rest[close + 1..];
    }
    out.iter()
        .map(|g| Pattern::new(&format!("{g}{rest}")).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::glob;

    fn texts(pattern: &str) -> Option<Vec<String>> {
        expand_braces(pattern).map(|ps| ps.into_iter().map(|p| p.text).collect())
    }

    #[test]
    fn simple_brace_groups_expand_into_the_same_strings() {
        assert_eq!(
            texts("statefulset/{db,cache}-1").unwrap(),
            ["statefulset/db-1", "statefulset/cache-1"]
        );
        assert_eq!(
            texts("{a,b}-{x*,y}").unwrap(),
            ["a-x*", "a-y", "b-x*", "b-y"]
        );
        assert_eq!(texts("{only}").unwrap(), ["only"]);
        for kept in [
            "plain",
            "team-*",
            "{a,{b,c}}",
            "{a,}",
            "a\\{b,c}",
            "[{]a,b}",
            "a}b",
            "{a,b",
        ] {
            assert_eq!(texts(kept), None, "{kept}");
        }
        let many = "{a,b}{c,d}{e,f}{g,h}{i,j}";
        assert_eq!(texts(many), None, "past the limit");
    }

    #[test]
    fn a_key_set_matches_what_each_glob_matches_on_its_own() {
        // Names, prefixes, brace groups (expanded or not) and other globs, some overlapping.
        let patterns = [
            "statefulset/{db,cache}-1",
            "{a,b}-{x*,y}",
            "x{1,2,3}?z",
            "*{-a,-b}",
            "team-a",
            "team-a-*",
            "team-*",
            "*",
            "a-x",
            "a\\*",
            "[ab]-y",
            "*-b",
            "é*",
            "{a,{b,c}}",
        ];
        let candidates = [
            "statefulset/db-1",
            "statefulset/cache-1",
            "statefulset/dc-1",
            "a-x",
            "a-xyz",
            "a*",
            "a-",
            "b-y",
            "c-y",
            "x1qz",
            "x4qz",
            "x2z",
            "foo-a",
            "foo-b",
            "foo-c",
            "-a",
            "team-a",
            "team-a-system",
            "team-b",
            "team-",
            "é",
            "éa",
            "c",
            "",
        ];
        let compiled: Vec<Pattern> = patterns.iter().map(|p| Pattern::new(p).unwrap()).collect();
        let owned = compiled.iter().enumerate().map(|(i, p)| ((i as u32, 0), p));
        let set = KeySet::of(owned).unwrap();
        for c in candidates {
            let mut hits = Vec::new();
            set.matches(c, &mut hits);
            hits.sort_unstable();
            hits.dedup();
            let alone: Vec<(u32, u32)> = (0..patterns.len())
                .filter(|&i| glob(patterns[i]).unwrap().compile_matcher().is_match(c))
                .map(|i| (i as u32, 0))
                .collect();
            assert_eq!(hits, alone, "{c:?}");
        }
        // Not everything went to the glob set.
        assert!(set.exact.contains_key("team-a") && set.prefixes.contains_key("team-a-"));
        assert!(set.prefixes.contains_key("") && set.exact.contains_key("statefulset/db-1"));
    }
}
