//! The incident commands' vocabulary: what `incident …` says, platform-neutral. The bot keeps
//! incidents (`bot/src/incidents/`); this crate only parses and prints the commands.

use std::fmt;
use std::time::Duration;

use opsbot_policies::Severity;

/// `incident … [--id INC-42]`: which incident (`None`: the one of the channel it is typed in)
/// and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentCmd {
    pub id: Option<u64>,
    pub op: IncidentOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentOp {
    Open {
        severity: Severity,
        title: String,
        service: Option<String>,
        /// A mention as typed (`<@U123>`, `<@123>`, `@alice`) or `me`.
        commander: Option<String>,
        /// The alert group (its short id) the incident is opened from, linked into the timeline.
        alert: Option<String>,
    },
    Status {
        status: IncidentStatus,
        message: Option<String>,
    },
    Sev {
        severity: Severity,
    },
    Assign {
        role: Role,
        person: String,
    },
    Note {
        text: String,
        follow_up: bool,
    },
    /// Takes the commander role if nobody has it, and stops the escalation.
    Ack,
    List {
        open: bool,
        sev: Option<Severity>,
    },
    Show,
    Timeline,
    Close {
        resolution: Option<String>,
    },
    Reopen,
    Export,
    Stats {
        since: Option<Duration>,
    },
}

impl IncidentOp {
    /// The subcommand word (`open`, `sev`, …).
    pub fn word(&self) -> &'static str {
        match self {
            IncidentOp::Open { .. } => "open",
            IncidentOp::Status { .. } => "status",
            IncidentOp::Sev { .. } => "sev",
            IncidentOp::Assign { .. } => "assign",
            IncidentOp::Note { .. } => "note",
            IncidentOp::Ack => "ack",
            IncidentOp::List { .. } => "list",
            IncidentOp::Show => "show",
            IncidentOp::Timeline => "timeline",
            IncidentOp::Close { .. } => "close",
            IncidentOp::Reopen => "reopen",
            IncidentOp::Export => "export",
            IncidentOp::Stats { .. } => "stats",
        }
    }

    /// Whether the command concerns one incident (and so takes `--id` or the channel's).
    pub fn names_one(&self) -> bool {
        !matches!(
            self,
            IncidentOp::Open { .. } | IncidentOp::List { .. } | IncidentOp::Stats { .. }
        )
    }
}

/// Where an incident stands, as its commander reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub const WORDS: &'static [&'static str] =
        &["investigating", "identified", "monitoring", "resolved"];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentStatus> {
        [
            IncidentStatus::Investigating,
            IncidentStatus::Identified,
            IncidentStatus::Monitoring,
            IncidentStatus::Resolved,
        ]
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Commander,
    Scribe,
    Comms,
}

impl Role {
    pub const WORDS: &'static [&'static str] = &["commander", "scribe", "comms"];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Commander => "commander",
            Role::Scribe => "scribe",
            Role::Comms => "comms",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Commander, Role::Scribe, Role::Comms]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `INC-42`.
pub fn incident_id(number: u64) -> String {
    format!("INC-{number}")
}

/// `INC-42`, `inc-42`, `#42` or `42` → 42.
pub fn parse_incident_id(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s
        .strip_prefix("INC-")
        .or_else(|| s.strip_prefix("inc-"))
        .or_else(|| s.strip_prefix("Inc-"))
        .or_else(|| s.strip_prefix('#'))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// A person as typed: a platform mention (`<@U123>`, `<@U123|alice>`, `<@!123>`, `<@123>`), a
/// console `@name`, or `me`. Returns the canonical form (`<@U123>`, `@alice`, `me`).
pub fn parse_person(s: &str) -> Option<String> {
    if s.eq_ignore_ascii_case("me") {
        return Some("me".to_owned());
    }
    let ok_id = |id: &str| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if let Some(inner) = s.strip_prefix("<@").and_then(|r| r.strip_suffix('>')) {
        let inner = inner.strip_prefix('!').unwrap_or(inner);
        let id = inner.split('|').next().unwrap_or("");
        return ok_id(id).then(|| format!("<@{id}>"));
    }
    let name = s.strip_prefix('@')?;
    ok_id(name).then(|| format!("@{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_in_every_spelling_people_use() {
        for s in ["INC-42", "inc-42", "#42", "42"] {
            assert_eq!(parse_incident_id(s), Some(42), "{s}");
        }
        for s in ["", "INC-", "INC-x", "0", "-1", "INC-99999999999999999999"] {
            assert_eq!(parse_incident_id(s), None, "{s}");
        }
        assert_eq!(incident_id(7), "INC-7");
    }

    #[test]
    fn people_are_mentions_or_names() {
        assert_eq!(parse_person("<@U0ALICE>").as_deref(), Some("<@U0ALICE>"));
        assert_eq!(
            parse_person("<@U0ALICE|alice>").as_deref(),
            Some("<@U0ALICE>")
        );
        assert_eq!(parse_person("<@!1234>").as_deref(), Some("<@1234>"));
        assert_eq!(parse_person("@bob").as_deref(), Some("@bob"));
        assert_eq!(parse_person("ME").as_deref(), Some("me"));
        for bad in ["bob", "<@>", "@", "<@U 1>", "@a b", "<#C123>"] {
            assert_eq!(parse_person(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_and_roles_round_trip() {
        for w in IncidentStatus::WORDS {
            assert_eq!(IncidentStatus::parse(w).map(|s| s.as_str()), Some(*w));
        }
        for w in Role::WORDS {
            assert_eq!(Role::parse(w).map(|r| r.as_str()), Some(*w));
        }
    }
}
