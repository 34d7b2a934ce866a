//! The seam between the pipeline and the features that keep their own state: incidents
//! (`crate::incidents`) and alerts (`crate::alerts`).
//!
//! Their commands (`incident …`, `alerts`, `silence …`) pass the pipeline like every other
//! command (inbox, rate limit, parse, policy, approval, audit); only their execution is the
//! feature's, which keeps its state in the database (or Alertmanager) instead of a cluster. The
//! pipeline also tells desks what happens in channels ([`Observation`]), so an incident's
//! timeline records the commands run and the approvals given in its channel without the
//! pipeline knowing what an incident is.

use async_trait::async_trait;
use opsbot_commands::{Command, Reply};
use opsbot_policies::{Severity, Subject};

use crate::chat::{Platform, Reaction};

/// Who asked, where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub platform: Platform,
    pub channel: String,
    pub user: Subject,
    pub groups: Vec<Subject>,
    /// As [`crate::chat::Invocation::groups_unknown`].
    pub groups_unknown: bool,
}

/// Something the pipeline did in a channel.
#[derive(Debug, Clone)]
pub struct Observation {
    pub platform: String,
    pub channel: String,
    /// Who did it (the requester, the approver).
    pub actor: String,
    pub kind: Observed,
    /// The command (canonical text).
    pub command: String,
    /// `allow` / `deny` / `approval`, `ok` / `error`, `requested` / `approved_by` / `denied` …
    pub outcome: String,
    /// A one-line summary (a result's title, a denial's reason).
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// A command was decided and, if allowed, run.
    Command,
    /// A step of an approval: requested, approved by, denied, expired, executed, failed.
    Approval,
}

/// What a desk adds to a command's policy request: what the command does not say itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The incident's severity (for `when: {severity: …}`).
    pub severity: Option<Severity>,
    /// The namespace acted in (a silence's `namespace=` matcher).
    pub namespace: Option<String>,
}

/// Which commands a desk answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeskFor {
    /// `incident …`
    Incidents,
    /// `alerts`, `silence …`
    Alerts,
}

/// A feature, as the pipeline uses it.
#[async_trait]
pub trait Desk: Send + Sync {
    /// Before the policy: what the request needs that the command does not say (the incident's
    /// severity; the namespace). `Err` is the answer for the caller alone (no such incident,
    /// not in an incident channel, a malformed matcher).
    async fn prepare(&self, caller: &Caller, cmd: &Command) -> Result<Facts, Reply>;
    /// Executes an allowed command; `Err` is a failure to report like a failed operation.
    async fn execute(&self, caller: &Caller, cmd: &Command) -> Result<Reply, Reply>;
    /// Something happened in a channel (every desk hears it; incidents record it).
    async fn observe(&self, seen: Observation) {
        let _ = seen;
    }
    /// A reaction was added to a message (📌 marks it for an incident's timeline).
    async fn reaction(&self, reaction: Reaction) {
        let _ = reaction;
    }
}
