//! Role policies: pure data in, decision out.
//!
//! A [`Policy`] is loaded from YAML (`version: 1`) and answers one question for a [`Request`]:
//! allow, ask for approval (with a [`Requirement`]), or deny. Nothing here does I/O except
//! [`Policy::load`], which reads one file.
//!
//! Loading reports every problem in a file at once, each as `FILE:LINE:COL: message (hint: ...)`
//! ([`PolicyErrors`]). Neither loading nor evaluating panics, whatever the input.
//!
//! ```
//! use opsbot_policies::{Action, Decision, Policy, Request, Subject};
//!
//! let policy = Policy::from_yaml(
//!     "version: 1\nroles:\n  oncall: { members: [\"slack:U1\"] }\nrules:\n  - { name: look, roles: [oncall], actions: [status] }\n",
//!     "policy.yaml",
//! ).unwrap();
//! let user = Subject::parse("slack:U1").unwrap();
//! let eval = policy.evaluate(&Request::new(user, Action::Status));
//! assert_eq!(eval.decision, Decision::Allow { rule: "look".into() });
//! ```

mod eval;
mod explain;
mod index;
mod load;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Who is asking or approving: `slack:USER`, `slack-group:GROUP`, `discord:USER`,
/// `discord-role:ROLE` or `console:NAME`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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

    /// The part before the `:`, e.g. `slack-group`.
    pub fn kind(&self) -> &str {
        self.0.split_once(':').map_or("", |(k, _)| k)
    }

    /// The part after the `:`.
    pub fn id(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, id)| id)
    }

    /// Whether this names a group of people (`slack-group:` or `discord-role:`). Only group
    /// subjects count when passed as a request's or approver's groups.
    pub fn is_group(&self) -> bool {
        matches!(self.kind(), "slack-group" | "discord-role")
    }
}

impl std::str::FromStr for Subject {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
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
    AlertShow,
    Help,
    Whoami,
}

impl Action {
    pub const ALL: [Action; 20] = [
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
        Action::AlertShow,
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
            Action::AlertShow => "alert.show",
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

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::parse(s).ok_or_else(|| {
            let names = Action::ALL.iter().map(|a| a.as_str());
            let hint = match load::nearest(s, names.clone()) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("actions are: {}", names.collect::<Vec<_>>().join(", ")),
            };
            format!("unknown action `{s}` ({hint})")
        })
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

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::P1, Severity::P2, Severity::P3, Severity::P4];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
            Severity::P4 => "P4",
        }
    }

    /// `P1`..`P4` (also lower case).
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::parse(s)
            .ok_or_else(|| format!("unknown severity `{s}` (expected P1, P2, P3 or P4)"))
    }
}

/// One request to decide on. Fields the request does not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The person asking.
    pub user: Subject,
    /// Groups / roles the platform reported for that person.
    pub groups: Vec<Subject>,
    /// The platform could not say which groups the person is in (Slack's user groups could not
    /// be read). `groups` is then what was last known, maybe nothing, and a deny rule that a
    /// group of the person's platform could bring in denies: an outage must not lift a ban.
    pub groups_unknown: bool,
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

impl Request {
    /// A request by `user` for `action`, with no groups and no other fields.
    pub fn new(user: Subject, action: Action) -> Request {
        Request {
            user,
            groups: Vec::new(),
            groups_unknown: false,
            channel: None,
            action,
            cluster: None,
            namespace: None,
            resource: None,
            replicas: None,
            tail_lines: None,
            severity: None,
        }
    }
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

/// Name of the implicit rule under which `help` and `whoami` are allowed.
pub use load::{BUILTIN_RULE, DEFAULT_APPROVAL_TTL};

impl Decision {
    /// `"allow"`, `"approval"` or `"deny"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Approval { .. } => "approval",
            Decision::Deny { .. } => "deny",
        }
    }

    /// The rule that decided, if any (`None` only for a deny that no rule allowed).
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow { rule } | Decision::Approval { rule, .. } => Some(rule),
            Decision::Deny { rule, .. } => rule.as_deref(),
        }
    }

    /// One sentence for a person, e.g. "allowed by rule `read-anything`".
    pub fn reason(&self) -> String {
        match self {
            Decision::Allow { rule } if rule == BUILTIN_RULE => {
                "`help` and `whoami` are always allowed".to_owned()
            }
            Decision::Allow { rule } => format!("allowed by rule `{rule}`"),
            Decision::Approval { rule, requirement } => {
                format!("rule `{rule}` allows this after {}", requirement.describe())
            }
            Decision::Deny { reason, .. } => reason.clone(),
        }
    }
}

impl Requirement {
    /// E.g. "1 approval from sre-lead within 15m (not by the requester)".
    pub fn describe(&self) -> String {
        format!(
            "{} approval{} from {} within {}{}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.roles.join(" or "),
            humantime::format_duration(self.ttl),
            if self.allow_self {
                " (the requester may approve)"
            } else {
                " (not by the requester)"
            }
        )
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    file: String,
    roles: BTreeMap<String, load::Role>,
    rules: Vec<load::Rule>,
    index: index::Index,
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
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PolicyError {
    /// `FILE:LINE:COL: message (hint: ...)`; `FILE: message` when the error concerns the
    /// whole file (line 0, e.g. it cannot be read).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

impl Policy {
    /// Parses and validates policy YAML; `file` names the source in error locations.
    pub fn from_yaml(src: &str, file: &str) -> Result<Policy, PolicyErrors> {
        load::from_yaml(src, file, DEFAULT_APPROVAL_TTL)
    }

    /// [`Policy::from_yaml`] where approvals whose rule gives no `ttl` expire after
    /// `default_ttl` (the configuration's `approvals.default_ttl`) instead of 15 minutes.
    pub fn from_yaml_with_default_ttl(
        src: &str,
        file: &str,
        default_ttl: Duration,
    ) -> Result<Policy, PolicyErrors> {
        load::from_yaml(src, file, default_ttl)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyErrors> {
        let file = path.display().to_string();
        let whole = |message: String| {
            PolicyErrors(vec![PolicyError {
                file: file.clone(),
                line: 0,
                column: 0,
                message,
                hint: None,
            }])
        };
        let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read: {e}")))?;
        match String::from_utf8(bytes) {
            Ok(src) => Self::from_yaml(&src, &file),
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let text = String::from_utf8_lossy(good);
                let line = text.matches('\n').count() + 1;
                let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                Err(PolicyErrors(vec![PolicyError {
                    file: file.clone(),
                    line,
                    column,
                    message: "the file is not UTF-8".to_owned(),
                    hint: Some("save the policy as UTF-8 text".to_owned()),
                }]))
            }
        }
    }

    /// Decides on a request and explains how every rule related to it (for `policy explain`).
    /// Never panics. Its decision is always [`Policy::decide`]'s.
    pub fn evaluate(&self, request: &Request) -> Evaluation {
        let mut evaluation = self.evaluate_impl(request);
        evaluation.decision = self.unless_a_group_could_deny(request, evaluation.decision);
        evaluation
    }

    /// Only the decision on a request: what the engine needs, without the explanation. Visits
    /// only the rules naming the request's action, and stops at the first deny. Never panics.
    pub fn decide(&self, request: &Request) -> Decision {
        self.unless_a_group_could_deny(request, self.decide_impl(request))
    }

    /// Whether `approver` (with its groups) may approve a request made by `requester` under
    /// `requirement`, given the subjects that approved it already. `Err` says why not.
    pub fn may_approve(
        &self,
        requirement: &Requirement,
        requester: &Subject,
        approver: &Subject,
        approver_groups: &[Subject],
        earlier_approvers: &[Subject],
    ) -> Result<(), String> {
        self.may_approve_impl(
            requirement,
            requester,
            approver,
            approver_groups,
            earlier_approvers,
        )
    }

    /// The roles a subject (with its groups) holds.
    ///
    /// Sorted by name. A role is held when its members list the user, or one of `groups` that
    /// is a group subject ([`Subject::is_group`]).
    pub fn roles_of(&self, user: &Subject, groups: &[Subject]) -> Vec<String> {
        self.roles
            .keys()
            .filter(|r| self.holds(r, user, groups).is_some())
            .cloned()
            .collect()
    }

    /// One line: how many roles and rules, e.g. for `policy check`.
    pub fn summary(&self) -> String {
        let deny = self
            .rules
            .iter()
            .filter(|r| matches!(r.effect, load::Effect::Deny { .. }))
            .count();
        let approval = self.rules.iter().filter(|r| r.approval.is_some()).count();
        format!(
            "{}: ok, {} role{}, {} rule{} ({} deny, {} with approval)",
            self.file,
            self.roles.len(),
            if self.roles.len() == 1 { "" } else { "s" },
            self.rules.len(),
            if self.rules.len() == 1 { "" } else { "s" },
            deny,
            approval
        )
    }

    /// The file name given when loading.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The defined role names, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// The members of a role, or `None` if it is not defined.
    pub fn role_members(&self, role: &str) -> Option<&[Subject]> {
        self.roles.get(role).map(|r| r.members.as_slice())
    }

    /// The rule names in file order.
    pub fn rule_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }
}
