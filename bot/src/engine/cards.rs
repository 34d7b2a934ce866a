//! The replies the engine itself writes: approval cards, denials, refusals, who-am-I.
//! Platform-neutral; adapters render them like any other [`Reply`].

use jiff::Timestamp;
use opsbot_commands::{ButtonStyle, Reply};

use crate::store::{Approval, ApprovalState};

/// Button action ids on approval cards; adapters map clicks on them to `ApprovalClick`s.
pub const APPROVE: &str = "approve";
pub const DENY: &str = "deny";

/// The approval card in its current state: buttons while pending, the outcome once final.
pub fn approval_card(a: &Approval, now: Timestamp) -> Reply {
    let (mut reply, open) = match a.state {
        ApprovalState::Pending => (Reply::warning(format!("Approval needed · {}", a.id)), true),
        ApprovalState::Approved | ApprovalState::Executing => {
            (Reply::info(format!("Approved, running · {}", a.id)), false)
        }
        ApprovalState::Executed => (
            Reply::ok(format!("Approved and executed · {}", a.id)),
            false,
        ),
        ApprovalState::Denied => (Reply::danger(format!("Denied · {}", a.id)), false),
        ApprovalState::Expired => (Reply::danger(format!("Expired · {}", a.id)), false),
        ApprovalState::Failed => (
            Reply::danger(format!("Approved, but failed · {}", a.id)),
            false,
        ),
    };
    reply = reply
        .text(format!("`{}`", a.command))
        .field("Requested by", &a.requester)
        .field("Rule", &a.rule)
        .field("Who can approve", who_can_approve(a));
    let approvers: Vec<&str> = a.approvers.iter().map(|v| v.subject.as_str()).collect();
    reply = reply.field(
        "Approvals",
        format!(
            "{}/{}{}",
            approvers.len(),
            a.requirement.count,
            if approvers.is_empty() {
                String::new()
            } else {
                format!(" ({})", approvers.join(", "))
            }
        ),
    );
    if open {
        reply = reply
            .field(
                "Expires",
                format!("{} ({})", at_second(a.expires), in_words(a.expires, now)),
            )
            .button(APPROVE, "Approve", ButtonStyle::Primary, &a.id)
            .button(DENY, "Deny", ButtonStyle::Danger, &a.id);
    } else {
        reply = reply.field("State", a.state.as_str());
        if let Some(outcome) = &a.outcome {
            reply = reply.field("Outcome", outcome);
        }
    }
    reply
}

fn who_can_approve(a: &Approval) -> String {
    let roles = a.requirement.roles.join(" or ");
    let mut s = format!("{} × {roles}", a.requirement.count);
    if !a.requirement.allow_self {
        s.push_str(", not the requester");
    }
    s
}

/// `2026-11-25 10:15:00 UTC`: always to the second (stored times carry milliseconds).
pub fn at_second(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `in 14m 59s` / `3s ago`, to the second.
pub fn in_words(at: Timestamp, now: Timestamp) -> String {
    let secs = at.as_second() - now.as_second();
    let span = humantime::format_duration(std::time::Duration::from_secs(secs.unsigned_abs()));
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ApprovalRequirement, Approver};

    fn approval(state: ApprovalState) -> Approval {
        let created: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        Approval {
            id: "7f3k2q".into(),
            requester: "console:bob".into(),
            requester_groups: vec![],
            platform: "console".into(),
            channel: "console".into(),
            command: "scale deployment/api 5 -n production".into(),
            rule: "scale-production".into(),
            requirement: ApprovalRequirement {
                roles: vec!["sre-lead".into()],
                count: 2,
                ttl_seconds: 900,
                allow_self: false,
            },
            context: serde_json::Value::Null,
            state,
            created,
            expires: "2026-11-25T10:15:00Z".parse().unwrap(),
            updated: created,
            outcome: None,
            card: None,
            approvers: vec![Approver {
                subject: "console:alice".into(),
                groups: Some(Vec::new()),
                at: created,
            }],
        }
    }

    #[test]
    fn pending_card_has_buttons_and_expiry() {
        let now: Timestamp = "2026-11-25T10:00:01Z".parse().unwrap();
        let card = approval_card(&approval(ApprovalState::Pending), now);
        assert_eq!(card.title, "Approval needed · 7f3k2q");
        assert_eq!(card.buttons.len(), 2);
        assert_eq!(card.buttons[0].action_id, APPROVE);
        assert_eq!(card.buttons[0].value, "7f3k2q");
        let field = |n: &str| {
            card.fields
                .iter()
                .find(|f| f.name == n)
                .map(|f| f.value.clone())
        };
        assert_eq!(field("Approvals").unwrap(), "1/2 (console:alice)");
        assert_eq!(
            field("Who can approve").unwrap(),
            "2 × sre-lead, not the requester"
        );
        assert_eq!(
            field("Expires").unwrap(),
            "2026-11-25 10:15:00 UTC (in 14m 59s)"
        );
    }

    /// Stored times carry milliseconds; the card shows every expiry to the second.
    #[test]
    fn expiry_is_always_shown_to_the_second() {
        let mut a = approval(ApprovalState::Pending);
        a.expires = "2026-11-25T10:15:00.123Z".parse().unwrap();
        let now: Timestamp = "2026-11-25T10:00:01.5Z".parse().unwrap();
        let card = approval_card(&a, now);
        let expires = card.fields.iter().find(|f| f.name == "Expires").unwrap();
        assert_eq!(expires.value, "2026-11-25 10:15:00 UTC (in 14m 59s)");
    }

    #[test]
    fn final_card_has_no_buttons_and_shows_outcome() {
        let mut a = approval(ApprovalState::Failed);
        a.outcome = Some("policy now denies: frozen".into());
        let card = approval_card(&a, a.created);
        assert!(card.buttons.is_empty());
        assert!(
            card.fields
                .iter()
                .any(|f| f.name == "Outcome" && f.value == "policy now denies: frozen")
        );
    }
}
