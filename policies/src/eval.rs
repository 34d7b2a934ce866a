//! Deciding on a request.

use crate::load::{BUILTIN_RULE, Effect, Pattern, RoleSel, Rule};
use crate::{Decision, Evaluation, Policy, Request, Requirement, RuleTrace, Subject};

fn show_patterns(ps: &[Pattern]) -> String {
    ps.iter()
        .map(|p| format!("`{}`", p.text))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one glob-list key; `None` when it matches, else why not.
fn check_patterns(
    key: &str,
    noun: &str,
    patterns: &Option<Vec<Pattern>>,
    value: Option<&str>,
    ok: &mut Vec<String>,
) -> Option<String> {
    let patterns = patterns.as_ref()?;
    match value {
        None => Some(format!(
            "the rule limits {key} to {} but the request names no {noun}",
            show_patterns(patterns)
        )),
        Some(v) => match patterns.iter().find(|p| p.is_match(v)) {
            Some(p) => {
                ok.push(format!("{noun} {v} matches `{}`", p.text));
                None
            }
            None => Some(format!(
                "{noun} {v} matches none of {}",
                show_patterns(patterns)
            )),
        },
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

    /// Whether `rule` matches `req`: `Ok(what matched)` or `Err(every key that did not)`.
    fn match_rule(&self, rule: &Rule, req: &Request) -> Result<String, String> {
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
        let checks = [
            (
                "clusters",
                "cluster",
                &rule.clusters,
                req.cluster.as_deref(),
            ),
            (
                "namespaces",
                "namespace",
                &rule.namespaces,
                req.namespace.as_deref(),
            ),
            (
                "resources",
                "resource",
                &rule.resources,
                req.resource.as_deref(),
            ),
            (
                "channels",
                "channel",
                &rule.channels,
                req.channel.as_deref(),
            ),
        ];
        for (key, noun, pats, value) in checks {
            if let Some(why) = check_patterns(key, noun, pats, value, &mut ok) {
                fail.push(why);
            }
        }
        if let Some((min, max)) = rule.when.replicas {
            let range = bounds_text(min, max);
            match req.replicas {
                None => fail.push(format!(
                    "the rule needs replicas {range} but the request carries no replica count"
                )),
                Some(r) if min.is_none_or(|m| r >= m) && max.is_none_or(|m| r <= m) => {
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

    pub(crate) fn evaluate_impl(&self, req: &Request) -> Evaluation {
        let mut evaluated = Vec::with_capacity(self.rules.len());
        let mut deny: Option<&Rule> = None;
        let mut allow: Option<&Rule> = None;
        let mut approval: Option<&Rule> = None;
        for rule in &self.rules {
            let (matched, why) = match self.match_rule(rule, req) {
                Ok(why) => (true, why),
                Err(why) => (false, why),
            };
            if matched {
                let slot = match (&rule.effect, &rule.approval) {
                    (Effect::Deny { .. }, _) => &mut deny,
                    (Effect::Allow, None) => &mut allow,
                    (Effect::Allow, Some(_)) => &mut approval,
                };
                if slot.is_none() {
                    *slot = Some(rule);
                }
            }
            evaluated.push(RuleTrace {
                rule: rule.name.clone(),
                matched,
                why,
            });
        }
        let decision = if req.action.always_allowed() {
            Decision::Allow {
                rule: BUILTIN_RULE.to_owned(),
            }
        } else if let Some(rule) = deny {
            let reason = match &rule.effect {
                Effect::Deny { reason } => reason.clone(),
                Effect::Allow => String::new(),
            };
            Decision::Deny {
                rule: Some(rule.name.clone()),
                reason,
            }
        } else if let Some(rule) = allow {
            Decision::Allow {
                rule: rule.name.clone(),
            }
        } else if let Some((rule, requirement)) =
            approval.and_then(|r| r.approval.as_ref().map(|a| (r, a)))
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
        };
        Evaluation {
            decision,
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
