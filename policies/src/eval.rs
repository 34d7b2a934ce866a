//! Deciding on a request: [`Policy::decide`] for the engine (only the decision, from the
//! index), [`Policy::evaluate`] for `policy explain` (every rule, with why). Both use the same
//! per-key checks, so they cannot disagree (property-tested).

use crate::index::{Key, Matches};
use crate::load::{BUILTIN_RULE, Effect, Pattern, RoleSel, Rule, When};
use crate::{Decision, Evaluation, Policy, Request, Requirement, RuleTrace, Subject};

fn show_patterns(ps: &[Pattern]) -> String {
    ps.iter()
        .map(|p| format!("`{}`", p.text))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Key {
    /// The rule key, e.g. `namespaces`, and the request field, e.g. `namespace`.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Key::Cluster => ("clusters", "cluster"),
            Key::Namespace => ("namespaces", "namespace"),
            Key::Resource => ("resources", "resource"),
            Key::Channel => ("channels", "channel"),
        }
    }
}

/// Whether `rule` (at index `at`) admits `req` on one glob key.
fn key_ok(rule: &Rule, at: usize, key: Key, req: &Request, m: &Matches) -> bool {
    key.patterns(rule).is_none() || (key.value(req).is_some() && m.first(key, at).is_some())
}

/// Checks one glob key for an explanation; `None` when it matches, else why not.
fn explain_key(
    rule: &Rule,
    at: usize,
    key: Key,
    req: &Request,
    m: &Matches,
    ok: &mut Vec<String>,
) -> Option<String> {
    let patterns = key.patterns(rule)?;
    let (plural, noun) = key.names();
    match key.value(req) {
        None => Some(format!(
            "the rule limits {plural} to {} but the request names no {noun}",
            show_patterns(patterns)
        )),
        Some(v) => match m.first(key, at) {
            Some(p) => {
                ok.push(format!("{noun} {v} matches `{}`", patterns[p].text));
                None
            }
            None => Some(format!(
                "{noun} {v} matches none of {}",
                show_patterns(patterns)
            )),
        },
    }
}

fn replicas_ok(when: &When, req: &Request) -> bool {
    when.replicas.is_none_or(|(min, max)| {
        req.replicas
            .is_some_and(|r| min.is_none_or(|m| r >= m) && max.is_none_or(|m| r <= m))
    })
}

fn tail_lines_ok(when: &When, req: &Request) -> bool {
    when.tail_lines_max
        .is_none_or(|max| req.tail_lines.is_some_and(|t| t <= max))
}

fn severity_ok(when: &When, req: &Request) -> bool {
    when.severity
        .as_ref()
        .is_none_or(|sevs| req.severity.is_some_and(|s| sevs.contains(&s)))
}

/// The first matching rule of each kind, in file order.
#[derive(Default)]
struct Firsts<'p> {
    deny: Option<&'p Rule>,
    allow: Option<&'p Rule>,
    approval: Option<&'p Rule>,
}

impl<'p> Firsts<'p> {
    fn note(&mut self, rule: &'p Rule) {
        let slot = match (&rule.effect, &rule.approval) {
            (Effect::Deny { .. }, _) => &mut self.deny,
            (Effect::Allow, None) => &mut self.allow,
            (Effect::Allow, Some(_)) => &mut self.approval,
        };
        slot.get_or_insert(rule);
    }

    /// Deny rules win; then an allow without approval; then an allow with one; else deny.
    fn decision(self, req: &Request) -> Decision {
        if req.action.always_allowed() {
            Decision::Allow {
                rule: BUILTIN_RULE.to_owned(),
            }
        } else if let Some(rule) = self.deny {
            let reason = match &rule.effect {
                Effect::Deny { reason } => reason.clone(),
                Effect::Allow => String::new(),
            };
            Decision::Deny {
                rule: Some(rule.name.clone()),
                reason,
            }
        } else if let Some(rule) = self.allow {
            Decision::Allow {
                rule: rule.name.clone(),
            }
        } else if let Some((rule, requirement)) = self
            .approval
            .and_then(|r| r.approval.as_ref().map(|a| (r, a)))
        {
            Decision::Approval {
                rule: rule.name.clone(),
                requirement: requirement.clone(),
            }
        } else {
            Decision::Deny {
                rule: None,
                reason: nothing_allows(req),
            }
        }
    }
}

impl Policy {
    pub(crate) fn holds(&self, role: &str, user: &Subject, groups: &[Subject]) -> Option<Subject> {
        let r = self.roles.get(role)?;
        if r.members.contains(user) {
            return Some(user.clone());
        }
        groups
            .iter()
            .filter(|g| g.is_group())
            .find(|g| r.members.contains(g))
            .cloned()
    }

    /// Whether rule `at` matches `req`, given the roles held and the patterns matched.
    fn matches(&self, at: usize, req: &Request, held: &[bool], m: &Matches) -> bool {
        let rule = &self.rules[at];
        self.index.admits(at, held)
            && rule.actions.contains(&req.action)
            && Key::ALL
                .into_iter()
                .all(|key| key_ok(rule, at, key, req, m))
            && replicas_ok(&rule.when, req)
            && tail_lines_ok(&rule.when, req)
            && severity_ok(&rule.when, req)
    }

    pub(crate) fn decide_impl(&self, req: &Request) -> Decision {
        let mut firsts = Firsts::default();
        let candidates = self.index.rules_for(req.action);
        if !req.action.always_allowed() && !candidates.is_empty() {
            let held = self
                .index
                .held_roles(self.roles.len(), &req.user, &req.groups);
            let m = self.index.matches(req);
            for &at in candidates {
                let at = at as usize;
                if self.matches(at, req, &held, &m) {
                    firsts.note(&self.rules[at]);
                    if firsts.deny.is_some() {
                        break;
                    }
                }
            }
        }
        firsts.decision(req)
    }

    /// Whether rule `at` matches `req`: `Ok(what matched)` or `Err(every key that did not)`.
    fn explain_rule(&self, at: usize, req: &Request, m: &Matches) -> Result<String, String> {
        let rule = &self.rules[at];
        let mut ok: Vec<String> = Vec::new();
        let mut fail: Vec<String> = Vec::new();
        match &rule.roles {
            RoleSel::Any => ok.push("any subject".to_owned()),
            RoleSel::Named(names) => {
                match names
                    .iter()
                    .find_map(|n| self.holds(n, &req.user, &req.groups).map(|via| (n, via)))
                {
                    Some((role, via)) if via == req.user => ok.push(format!("{via} is {role}")),
                    Some((role, via)) => ok.push(format!("{} is {role} via {via}", req.user)),
                    None => fail.push(format!(
                        "{} holds none of the roles {}",
                        req.user,
                        names.join(", ")
                    )),
                }
            }
        }
        if rule.actions.contains(&req.action) {
            ok.push(format!("action {}", req.action));
        } else {
            fail.push(format!(
                "action {} is not in [{}]",
                req.action,
                rule.action_patterns.join(", ")
            ));
        }
        for key in Key::ALL {
            if let Some(why) = explain_key(rule, at, key, req, m, &mut ok) {
                fail.push(why);
            }
        }
        if let Some((min, max)) = rule.when.replicas {
            let range = bounds_text(min, max);
            match req.replicas {
                None => fail.push(format!(
                    "the rule needs replicas {range} but the request carries no replica count"
                )),
                Some(r) if replicas_ok(&rule.when, req) => {
                    ok.push(format!("replicas {r} is {range}"))
                }
                Some(r) => fail.push(format!("replicas {r} is not {range}")),
            }
        }
        if let Some(max) = rule.when.tail_lines_max {
            match req.tail_lines {
                None => fail.push(format!(
                    "the rule needs tail_lines at most {max} but the request carries no line count"
                )),
                Some(t) if t <= max => ok.push(format!("tail_lines {t} ≤ {max}")),
                Some(t) => fail.push(format!("tail_lines {t} is above {max}")),
            }
        }
        if let Some(sevs) = &rule.when.severity {
            let list = sevs
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            match req.severity {
                None => fail.push(format!(
                    "the rule needs severity {list} but the request carries none"
                )),
                Some(s) if sevs.contains(&s) => ok.push(format!("severity {s}")),
                Some(s) => fail.push(format!("severity {s} is not one of {list}")),
            }
        }
        if fail.is_empty() {
            Ok(format!("matched: {}", ok.join("; ")))
        } else {
            Err(fail.join("; "))
        }
    }

    /// `decision` on `req`, unless the person's groups are unknown and a deny rule would match
    /// were they in every group of their platform that a role names: that deny stands then.
    pub(crate) fn unless_a_group_could_deny(&self, req: &Request, decision: Decision) -> Decision {
        if !req.groups_unknown || matches!(decision, Decision::Deny { .. }) {
            return decision;
        }
        let group_kind = match req.user.kind() {
            "slack" => "slack-group",
            "discord" => "discord-role",
            _ => return decision,
        };
        let mut in_every_group = req.clone();
        in_every_group.groups_unknown = false;
        in_every_group.groups.extend(
            self.roles
                .values()
                .flat_map(|role| role.members.iter())
                .filter(|m| m.kind() == group_kind)
                .cloned(),
        );
        match self.decide_impl(&in_every_group) {
            Decision::Deny {
                rule: Some(rule), ..
            } => Decision::Deny {
                reason: format!(
                    "{}'s groups could not be read, and rule {rule} denies this to members of \
                     some groups; try again in a minute",
                    req.user
                ),
                rule: Some(rule),
            },
            _ => decision,
        }
    }

    pub(crate) fn evaluate_impl(&self, req: &Request) -> Evaluation {
        let m = self.index.matches(req);
        let mut firsts = Firsts::default();
        let mut evaluated = Vec::with_capacity(self.rules.len());
        for (at, rule) in self.rules.iter().enumerate() {
            let (matched, why) = match self.explain_rule(at, req, &m) {
                Ok(why) => (true, why),
                Err(why) => (false, why),
            };
            if matched {
                firsts.note(rule);
            }
            evaluated.push(RuleTrace {
                rule: rule.name.clone(),
                matched,
                why,
            });
        }
        Evaluation {
            decision: firsts.decision(req),
            evaluated,
        }
    }

    pub(crate) fn may_approve_impl(
        &self,
        requirement: &Requirement,
        requester: &Subject,
        approver: &Subject,
        approver_groups: &[Subject],
        earlier_approvers: &[Subject],
    ) -> Result<(), String> {
        if approver == requester && !requirement.allow_self {
            return Err(format!(
                "{approver} asked for this and may not approve it too; another {} must approve",
                requirement.roles.join(" or ")
            ));
        }
        if earlier_approvers.contains(approver) {
            return Err(format!(
                "{approver} has already approved this; approvers must be distinct"
            ));
        }
        if requirement
            .roles
            .iter()
            .any(|r| self.holds(r, approver, approver_groups).is_some())
        {
            Ok(())
        } else {
            Err(format!(
                "{approver} holds none of the approval roles {}",
                requirement.roles.join(", ")
            ))
        }
    }
}

fn bounds_text(min: Option<i64>, max: Option<i64>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
        (Some(lo), None) => format!("at least {lo}"),
        (None, Some(hi)) => format!("at most {hi}"),
        (None, None) => "of any count".to_owned(),
    }
}

/// "no rule allows `scale` on deployment/api in namespace production for slack:U1".
pub(crate) fn nothing_allows(req: &Request) -> String {
    let mut s = format!("no rule allows `{}`", req.action);
    if let Some(r) = &req.resource {
        s.push_str(&format!(" on {r}"));
    }
    if let Some(n) = &req.namespace {
        s.push_str(&format!(" in namespace {n}"));
    }
    if let Some(c) = &req.cluster {
        s.push_str(&format!(" in cluster {c}"));
    }
    if let Some(r) = req.replicas {
        s.push_str(&format!(" to {r} replicas"));
    }
    if let Some(t) = req.tail_lines {
        s.push_str(&format!(" with {t} tail lines"));
    }
    if let Some(sev) = req.severity {
        s.push_str(&format!(" at severity {sev}"));
    }
    s.push_str(&format!(" for {}", req.user));
    if !req.groups.is_empty() {
        let groups: Vec<&str> = req.groups.iter().map(Subject::as_str).collect();
        s.push_str(&format!(" (groups: {})", groups.join(", ")));
    }
    if let Some(c) = &req.channel {
        s.push_str(&format!(" in channel {c}"));
    }
    s
}
