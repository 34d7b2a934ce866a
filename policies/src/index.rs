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

use crate::load::{Pattern, Role, RoleSel, Rule};
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
                // invariant must not rest on that.
                hits.sort_unstable();
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
                builder.add(pattern.glob.clone());
                owner.push((r as u32, p as u32));
            }
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(KeySet { set, owner })
    }
}
