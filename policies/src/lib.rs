//! Role policies: pure data in, decision out.
//!
//! A [`Policy`] is loaded from YAML (`version: 1`) and answers one question for a [`Request`]:
//! allow, ask for approval (with a [`Requirement`]), or deny. Nothing here does I/O except
//! [`Policy::load`], which reads one file.
//!
//! (API stub laid down by the workspace skeleton; the policies work fills in the bodies.)

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Who is asking or approving: `slack:USER`, `slack-group:GROUP`, `discord:USER`,
/// `discord-role:ROLE` or `console:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

impl Subject {
    /// Parses `kind:id`; the kind must be one of the five known kinds and the id non-empty.
    pub fn parse(s: &str) -> Result<Self, SubjectError> {
        const KINDS: [&str; 5] = ["slack", "slack-group", "discord", "discord-role", "console"];
        match s.split_once(':') {
            Some((kind, id))
                if KINDS.contains(&kind)
                    && !id.is_empty()
                    && !id.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                Ok(Self(s.to_owned()))
            }
            _ => Err(SubjectError(s.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Subject {
    type Error = SubjectError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a subject: expected slack:USER, slack-group:GROUP, discord:USER, discord-role:ROLE or console:NAME"
)]
pub struct SubjectError(pub String);

/// Everything a rule can allow. `help` and `whoami` are always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Status,
    Pods,
    Logs,
    Events,
    Scale,
    Restart,
    Rollback,
    HpaShow,
    HpaSet,
    BackupStatus,
    BackupRun,
    IncidentOpen,
    IncidentUpdate,
    IncidentClose,
    IncidentShow,
    AlertSilence,
    AlertAck,
    Help,
    Whoami,
}

impl Action {
    pub const ALL: [Action; 19] = [
        Action::Status,
        Action::Pods,
        Action::Logs,
        Action::Events,
        Action::Scale,
        Action::Restart,
        Action::Rollback,
        Action::HpaShow,
        Action::HpaSet,
        Action::BackupStatus,
        Action::BackupRun,
        Action::IncidentOpen,
        Action::IncidentUpdate,
        Action::IncidentClose,
        Action::IncidentShow,
        Action::AlertSilence,
        Action::AlertAck,
        Action::Help,
        Action::Whoami,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::Pods => "pods",
            Action::Logs => "logs",
            Action::Events => "events",
            Action::Scale => "scale",
            Action::Restart => "restart",
            Action::Rollback => "rollback",
            Action::HpaShow => "hpa.show",
            Action::HpaSet => "hpa.set",
            Action::BackupStatus => "backup.status",
            Action::BackupRun => "backup.run",
            Action::IncidentOpen => "incident.open",
            Action::IncidentUpdate => "incident.update",
            Action::IncidentClose => "incident.close",
            Action::IncidentShow => "incident.show",
            Action::AlertSilence => "alert.silence",
            Action::AlertAck => "alert.ack",
            Action::Help => "help",
            Action::Whoami => "whoami",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// `help` and `whoami` need no rule.
    pub fn always_allowed(self) -> bool {
        matches!(self, Action::Help | Action::Whoami)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Incident severity, P1 (worst) to P4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    P1,
    P2,
    P3,
    P4,
}

/// One request to decide on. Fields the request does not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The person asking.
    pub user: Subject,
    /// Groups / roles the platform reported for that person.
    pub groups: Vec<Subject>,
    pub channel: Option<String>,
    pub action: Action,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// `kind/name`, e.g. `deployment/api`, `statefulset/postgres-replica`, `cronjob/postgres-backup`.
    pub resource: Option<String>,
    pub replicas: Option<i64>,
    pub tail_lines: Option<i64>,
    pub severity: Option<Severity>,
}

/// What an approval needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub roles: Vec<String>,
    pub count: u32,
    pub ttl: Duration,
    pub allow_self: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        rule: String,
    },
    Approval {
        rule: String,
        requirement: Requirement,
    },
    Deny {
        /// The deny rule that matched, or `None` when no rule allowed the request.
        rule: Option<String>,
        reason: String,
    },
}

/// How one rule related to a request, for `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule: String,
    pub matched: bool,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    pub evaluated: Vec<RuleTrace>,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    _private: (),
}

/// One problem in a policy file, located as `FILE:LINE:COL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Every problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", e.file, e.line, e.column, e.message)?;
            if let Some(hint) = &e.hint {
                write!(f, " (hint: {hint})")?;
            }
        }
        Ok(())
    }
}

impl Policy {
    /// Parses and validates policy YAML; `file` names the source in error locations.
    pub fn from_yaml(_src: &str, _file: &str) -> Result<Policy, PolicyErrors> {
        unimplemented!("policies work in progress")
    }

    /// Reads and parses a policy file.
    pub fn load(_path: &Path) -> Result<Policy, PolicyErrors> {
        unimplemented!("policies work in progress")
    }

    /// Decides on a request. Never panics.
    pub fn evaluate(&self, _request: &Request) -> Evaluation {
        unimplemented!("policies work in progress")
    }

    /// Whether `approver` (with its groups) may approve a request made by `requester` under
    /// `requirement`, given the subjects that approved it already. `Err` says why not.
    pub fn may_approve(
        &self,
        _requirement: &Requirement,
        _requester: &Subject,
        _approver: &Subject,
        _approver_groups: &[Subject],
        _earlier_approvers: &[Subject],
    ) -> Result<(), String> {
        unimplemented!("policies work in progress")
    }

    /// The roles a subject (with its groups) holds.
    pub fn roles_of(&self, _user: &Subject, _groups: &[Subject]) -> Vec<String> {
        unimplemented!("policies work in progress")
    }

    /// One line: how many roles and rules, e.g. for `policy check`.
    pub fn summary(&self) -> String {
        unimplemented!("policies work in progress")
    }
}
