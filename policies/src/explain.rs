//! Rendering an [`Evaluation`] for `opsbot policy explain`: JSON for machines, text for people.

use serde_json::Value;

use crate::{Decision, Evaluation};

/// The JSON object, with its keys in the documented order.
#[derive(serde::Serialize)]
struct ExplainJson<'a> {
    decision: &'static str,
    rule: Option<&'a str>,
    reason: String,
    approval: Option<ApprovalJson<'a>>,
    evaluated: Vec<TraceJson<'a>>,
}

#[derive(serde::Serialize)]
struct ApprovalJson<'a> {
    roles: &'a [String],
    count: u32,
    ttl_seconds: u64,
    allow_self: bool,
}

#[derive(serde::Serialize)]
struct TraceJson<'a> {
    rule: &'a str,
    matched: bool,
    why: &'a str,
}

impl Evaluation {
    fn explain_json(&self) -> ExplainJson<'_> {
        ExplainJson {
            decision: self.decision.kind(),
            rule: self.decision.rule(),
            reason: self.decision.reason(),
            approval: match &self.decision {
                Decision::Approval { requirement: r, .. } => Some(ApprovalJson {
                    roles: &r.roles,
                    count: r.count,
                    ttl_seconds: r.ttl.as_secs(),
                    allow_self: r.allow_self,
                }),
                _ => None,
            },
            evaluated: self
                .evaluated
                .iter()
                .map(|t| TraceJson {
                    rule: &t.rule,
                    matched: t.matched,
                    why: &t.why,
                })
                .collect(),
        }
    }

    /// [`Evaluation::to_json`] as one line of text, keys in the documented order
    /// (`decision`, `rule`, `reason`, `approval`, `evaluated`).
    pub fn to_json_string(&self) -> String {
        // Serializing plain strings, numbers and booleans cannot fail; stay total anyway.
        serde_json::to_string(&self.explain_json()).unwrap_or_else(|_| "{}".to_owned())
    }

    /// One JSON object:
    /// `{"decision":"allow"|"approval"|"deny","rule":NAME|null,"reason":TEXT,
    ///   "approval":{"roles":[...],"count":N,"ttl_seconds":N,"allow_self":BOOL}|null,
    ///   "evaluated":[{"rule":NAME,"matched":BOOL,"why":TEXT}]}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.explain_json()).unwrap_or(Value::Null)
    }

    /// The same as [`Evaluation::to_json`], written for a person; ends with a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("decision: {}\n", self.decision.kind()));
        out.push_str(&format!(
            "rule:     {}\n",
            self.decision.rule().unwrap_or("(none)")
        ));
        out.push_str(&format!("reason:   {}\n", self.decision.reason()));
        if let Decision::Approval { requirement: r, .. } = &self.decision {
            out.push_str(&format!(
                "approval: {} of {} within {} ({}s), {}\n",
                r.count,
                r.roles.join(", "),
                humantime::format_duration(r.ttl),
                r.ttl.as_secs(),
                if r.allow_self {
                    "the requester may approve"
                } else {
                    "the requester may not approve"
                }
            ));
        }
        if self.evaluated.is_empty() {
            out.push_str("rules:    (the policy has no rules)\n");
        } else {
            out.push_str("rules, in file order:\n");
            for t in &self.evaluated {
                let mark = if t.matched { "match" } else { "no   " };
                out.push_str(&format!("  [{mark}] {}: {}\n", t.rule, t.why));
            }
        }
        out
    }
}
