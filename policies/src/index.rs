//! What evaluation looks up instead of scanning: built once when a policy is loaded.
//!
//! - rules by action (file order kept), so a request only visits the rules that name its action;
//! - roles by member, so the roles a requester holds are a few hash look-ups;
//! - one [`GlobSet`] per glob key (clusters, namespaces, resources, channels) holding every
//!   pattern of every rule. globset matches literals, prefixes and suffixes without regexes and
//!   compiles the rest once, together; it matches exactly as each glob would on its own.
//!
//! Invariant: the glob indices of a set are in rule order, then pattern order within a rule, so
//! the matches of one value, mapped to `(rule, pattern)`, come out sorted.

use std::collections::{BTreeMap, HashMap};

use globset::{Candidate, GlobSet, GlobSetBuilder};

use crate::load::{Pattern, Role, RoleSel, Rule, compile_glob};
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

/// Every pattern of one key, across all rules.
#[derive(Debug, Clone)]
struct KeySet {
    set: GlobSet,
    /// Glob index → (rule index, position of the pattern in the rule's list).
    owner: Vec<(u32, u32)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Indexed by `Action as usize`: the rules covering that action, in file order.
    by_action: Vec<Vec<u32>>,
    /// Member subject → indices (in role-name order) of the roles listing it.
    roles_of_member: HashMap<Subject, Vec<u32>>,
    /// Per rule: the indices of its roles, `None` for `*`.
    rule_roles: Vec<Option<Vec<u32>>>,
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
        let role_ids: HashMap<&str, u32> = roles
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
        let rule_roles = rules
            .iter()
            .map(|rule| match &rule.roles {
                RoleSel::Any => None,
                RoleSel::Named(names) => Some(
                    names
                        .iter()
                        .filter_map(|n| role_ids.get(n.as_str()).copied())
                        .collect(),
                ),
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
            Some(ids) => ids.iter().any(|&r| held[r as usize]),
        }
    }

    /// The patterns `req`'s values match, per key.
    pub fn matches(&self, req: &Request) -> Matches {
        Matches(Key::ALL.map(|key| {
            let keyset = &self.keys[key as usize];
            let mut hits = Vec::new();
            if let Some(value) = key.value(req)
                && !keyset.set.is_empty()
            {
                let mut globs = Vec::new();
                keyset
                    .set
                    .matches_candidate_into(&Candidate::new(value), &mut globs);
                hits.extend(globs.into_iter().map(|g| keyset.owner[g]));
                // matches_candidate_into returns glob indices in ascending order, but the
                // invariant must not rest on that. Two expansions of one brace glob may both
                // match: the pattern counts once.
                hits.sort_unstable();
                hits.dedup();
            }
            hits
        }))
    }
}

impl KeySet {
    fn build(key: Key, rules: &[Rule]) -> Result<KeySet, String> {
        let mut builder = GlobSetBuilder::new();
        let mut owner = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            for (p, pattern) in key.patterns(rule).into_iter().flatten().enumerate() {
                match expand_braces(&pattern.text) {
                    // `statefulset/{db,cache}-1` as the globs `statefulset/db-1` and
                    // `statefulset/cache-1`: the same strings match, and globset answers
                    // literals and prefixes without compiling a regex (compiling the regexes
                    // of a large policy's brace globs together was a third of its load).
                    Some(globs) => {
                        for glob in globs {
                            builder.add(glob);
                            owner.push((r as u32, p as u32));
                        }
                    }
                    None => {
                        builder.add(pattern.glob.clone());
                        owner.push((r as u32, p as u32));
                    }
                }
            }
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(KeySet { set, owner })
    }
}

/// Most globs one brace pattern is expanded into; past this it stays one (regex) glob.
const MAX_EXPANSIONS: usize = 16;

/// The globs a pattern with simple brace groups stands for (`a{b,c}d` → `abd`, `acd`), when
/// that is exactly the same set of strings: braces not nested, every alternative non-empty,
/// and no escapes or character classes anywhere (where a brace could be literal). `None` when
/// there is nothing to expand or the pattern is not that simple.
fn expand_braces(text: &str) -> Option<Vec<globset::Glob>> {
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
        .map(|g| compile_glob(&format!("{g}{rest}")).ok().map(|p| p.glob))
        .collect()
}

#[cfg(test)]
mod brace_tests {
    use super::*;

    fn texts(pattern: &str) -> Option<Vec<String>> {
        expand_braces(pattern).map(|gs| gs.iter().map(|g| g.glob().to_owned()).collect())
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
    fn expansions_match_what_the_brace_glob_matches() {
        let patterns = [
            "statefulset/{db,cache}-1",
            "{a,b}-{x*,y}",
            "x{1,2,3}?z",
            "*{-a,-b}",
        ];
        let candidates = [
            "statefulset/db-1",
            "statefulset/cache-1",
            "statefulset/dc-1",
            "a-x",
            "a-xyz",
            "b-y",
            "c-y",
            "a-",
            "x1qz",
            "x4qz",
            "x2z",
            "foo-a",
            "foo-b",
            "foo-c",
            "-a",
            "",
        ];
        for p in patterns {
            let whole = compile_glob(p).unwrap().glob.compile_matcher();
            let parts: Vec<_> = expand_braces(p)
                .unwrap()
                .into_iter()
                .map(|g| g.compile_matcher())
                .collect();
            for c in candidates {
                assert_eq!(
                    whole.is_match(c),
                    parts.iter().any(|m| m.is_match(c)),
                    "{p} on {c:?}"
                );
            }
        }
    }
}
