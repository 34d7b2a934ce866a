//! The seam between the pipeline and the incidents service (`crate::incidents`).
//!
//! Incident commands pass the pipeline like every other command (inbox, rate limit, parse,
//! policy, approval, audit); only their execution is the incidents service's, which keeps its
//! state in the database instead of a cluster. The pipeline also tells the service what happens
//! in channels ([`Observation`]), so an incident's timeline records the commands run and the
//! approvals given in its channel without the pipeline knowing what an incident is.

use async_trait::async_trait;
use opsbot_commands::{IncidentCmd, Reply};
use opsbot_policies::{Severity, Subject};

use crate::chat::{Platform, Reaction};

/// Who asked, where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub platform: Platform,
    pub channel: String,
    pub user: Subject,
    pub groups: Vec<Subject>,
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

/// The incidents service, as the pipeline uses it.
#[async_trait]
pub trait Desk: Send + Sync {
    /// Before the policy: finds the incident the command is about (`--id`, else the channel's)
    /// and returns its severity for the policy (`None` for commands about no one incident).
    /// `Err` is the answer for the caller alone (no such incident, not in an incident channel).
    async fn prepare(&self, caller: &Caller, cmd: &IncidentCmd) -> Result<Option<Severity>, Reply>;
    /// Executes an allowed command; `Err` is a failure to report like a failed operation.
    async fn execute(&self, caller: &Caller, cmd: &IncidentCmd) -> Result<Reply, Reply>;
    /// Something happened in a channel: recorded if the channel is an incident's.
    async fn observe(&self, seen: Observation);
    /// A reaction was added to a message (📌 marks it for the timeline).
    async fn reaction(&self, reaction: Reaction);
}
