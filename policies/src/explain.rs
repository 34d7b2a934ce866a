//! Rendering an [`Evaluation`] for `opsbot policy explain`: JSON for machines, text for people.

use serde_json::{Value, json};

use crate::{Decision, Evaluation, Requirement};

fn requirement_json(r: &Requirement) -> Value {
    json!({
        "roles": r.roles,
        "count": r.count,
        "ttl_seconds": r.ttl.as_secs(),
        "allow_self": r.allow_self,
    })
}

impl Evaluation {
    /// One JSON object:
    /// `{"decision":"allow"|"approval"|"deny","rule":NAME|null,"reason":TEXT,
    ///   "approval":{"roles":[...],"count":N,"ttl_seconds":N,"allow_self":BOOL}|null,
    ///   "evaluated":[{"rule":NAME,"matched":BOOL,"why":TEXT}]}`.
    pub fn to_json(&self) -> Value {
        let approval = match &self.decision {
            Decision::Approval { requirement, .. } => requirement_json(requirement),
            _ => Value::Null,
        };
        let evaluated: Vec<Value> = self
            .evaluated
            .iter()
            .map(|t| json!({"rule": t.rule, "matched": t.matched, "why": t.why}))
            .collect();
        json!({
            "decision": self.decision.kind(),
            "rule": self.decision.rule(),
            "reason": self.decision.reason(),
            "approval": approval,
            "evaluated": evaluated,
        })
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
