//! Typed commands: what the parser produces, the policy sees, and the operations execute.

use std::time::Duration;

use opsbot_policies::{Action, Request, Severity, Subject};

use crate::alert::AlertCmd;
use crate::incident::{IncidentCmd, IncidentOp};

/// A parsed command: where it applies and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// `--cluster`; `None` until defaults are applied.
    pub cluster: Option<String>,
    /// `-n/--namespace`; `None` until defaults are applied.
    pub namespace: Option<String>,
    pub op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    /// The policy's resource kind: `deployment` or `statefulset`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        }
    }
}

/// `deployment/NAME` or `statefulset/NAME` (a bare name is a deployment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

impl Workload {
    pub fn resource(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSelector {
    /// Pods of a workload (deployment or statefulset) or a pod, by name.
    Name(String),
    /// `-l SELECTOR`, a Kubernetes label selector.
    Labels(String),
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Status {
        workload: Workload,
    },
    Pods {
        /// `None`: every pod of the namespace (`pods` alone, kubectl's `get pods`).
        selector: Option<PodSelector>,
    },
    Logs {
        /// What is read: by name `x` (a deployment), `statefulset/x` or `pod/x`; or the pods
        /// matching a label selector.
        source: PodSelector,
        tail: Option<u32>,
        since: Option<Duration>,
        grep: Option<String>,
        container: Option<String>,
        previous: bool,
    },
    Events {
        name: Option<String>,
        since: Option<Duration>,
        warnings: bool,
    },
    Scale {
        workload: Workload,
        replicas: u32,
        dry_run: bool,
    },
    Restart {
        workload: Workload,
    },
    Rollback {
        name: String,
        to_revision: Option<u64>,
    },
    /// Shows the HPA when neither bound is given, sets them otherwise.
    Hpa {
        name: String,
        min: Option<u32>,
        max: Option<u32>,
    },
    /// `hpa` alone (kubectl's `get hpa`): every autoscaler of the namespace.
    HpaList,
    BackupStatus {
        /// One CronJob; else every CronJob whose name contains `backup` (or every one, `all`).
        cronjob: Option<String>,
        /// `--all` (kubectl's `get cronjobs`): every CronJob of the namespace.
        all: bool,
    },
    BackupRun {
        cronjob: String,
        /// The Job's name (`--job`, kubectl's `create job NAME`); else `CRONJOB-manual-xxxxx`.
        job: Option<String>,
    },
    /// `help [COMMAND]`: `None` for every command, else the canonical name of a command
    /// (`scale`, `backup run`) or group (`backup`); answer with [`crate::help::help_reply`].
    Help {
        command: Option<String>,
    },
    Whoami,
    /// `incident …`: kept by the bot, not the cluster.
    Incident(IncidentCmd),
    /// `alerts`, `silence …`: the bot's stored alerts and Alertmanager's silences.
    Alert(AlertCmd),
}

impl Command {
    /// The policy action this command needs.
    pub fn action(&self) -> Action {
        match &self.op {
            Op::Status { .. } => Action::Status,
            Op::Pods { .. } => Action::Pods,
            Op::Logs { .. } => Action::Logs,
            Op::Events { .. } => Action::Events,
            Op::Scale { .. } => Action::Scale,
            Op::Restart { .. } => Action::Restart,
            Op::Rollback { .. } => Action::Rollback,
            Op::Hpa {
                min: None,
                max: None,
                ..
            }
            | Op::HpaList => Action::HpaShow,
            Op::Hpa { .. } => Action::HpaSet,
            Op::BackupStatus { .. } => Action::BackupStatus,
            Op::BackupRun { .. } => Action::BackupRun,
            Op::Help { .. } => Action::Help,
            Op::Whoami => Action::Whoami,
            Op::Incident(i) => match i.op {
                IncidentOp::Open { .. } => Action::IncidentOpen,
                IncidentOp::Status { .. }
                | IncidentOp::Sev { .. }
                | IncidentOp::Assign { .. }
                | IncidentOp::Note { .. }
                | IncidentOp::Ack => Action::IncidentUpdate,
                IncidentOp::Close { .. } | IncidentOp::Reopen => Action::IncidentClose,
                IncidentOp::List { .. }
                | IncidentOp::Show
                | IncidentOp::Timeline
                | IncidentOp::Export
                | IncidentOp::Stats { .. } => Action::IncidentShow,
            },
            Op::Alert(AlertCmd::List { .. } | AlertCmd::SilenceList) => Action::AlertShow,
            Op::Alert(AlertCmd::SilenceAdd { .. } | AlertCmd::SilenceExpire { .. }) => {
                Action::AlertSilence
            }
        }
    }

    /// Whether the command acts on a cluster (so its `--cluster` must be one opsbot knows).
    pub fn needs_cluster(&self) -> bool {
        !matches!(
            self.op,
            Op::Help { .. } | Op::Whoami | Op::Incident(_) | Op::Alert(_)
        )
    }

    /// The incident severity the command itself names (`incident open P1`, `incident sev P2`);
    /// for other incident commands the bot supplies the incident's.
    pub fn severity(&self) -> Option<Severity> {
        match &self.op {
            Op::Incident(IncidentCmd {
                op: IncidentOp::Open { severity, .. } | IncidentOp::Sev { severity },
                ..
            }) => Some(*severity),
            _ => None,
        }
    }

    /// The `kind/name` the policy's `resources` globs see, if the command names one.
    pub fn resource(&self) -> Option<String> {
        match &self.op {
            Op::Status { workload } | Op::Scale { workload, .. } | Op::Restart { workload } => {
                Some(workload.resource())
            }
            Op::Pods {
                selector: Some(PodSelector::Name(name)),
            } => Some(format!("pod/{name}")),
            Op::Logs {
                source: PodSelector::Name(name),
                ..
            } => Some(log_resource(name)),
            Op::Events {
                name: Some(name), ..
            } => Some(format!("object/{name}")),
            Op::Rollback { name, .. } => Some(format!("deployment/{name}")),
            Op::Hpa { name, .. } => Some(format!("horizontalpodautoscaler/{name}")),
            Op::BackupStatus {
                cronjob: Some(name),
                ..
            }
            | Op::BackupRun { cronjob: name, .. } => Some(format!("cronjob/{name}")),
            _ => None,
        }
    }

    /// Whether the command changes the cluster.
    pub fn is_mutating(&self) -> bool {
        matches!(
            self.action(),
            Action::Scale | Action::Restart | Action::Rollback | Action::HpaSet | Action::BackupRun
        ) && !matches!(self.op, Op::Scale { dry_run: true, .. })
    }

    /// Fills in the namespace and cluster when the user did not give them.
    /// Incident and alert commands act on no cluster: they get no defaults (`alerts -n X`
    /// filters by namespace only when asked).
    pub fn with_defaults(mut self, cluster: Option<&str>, namespace: Option<&str>) -> Self {
        if matches!(self.op, Op::Incident(_) | Op::Alert(_)) {
            return self;
        }
        if self.cluster.is_none() {
            self.cluster = cluster.map(str::to_owned);
        }
        if self.namespace.is_none() {
            self.namespace = namespace.map(str::to_owned);
        }
        self
    }

    /// The policy request for this command, asked by `user` (with `groups`) in `channel`.
    pub fn policy_request(
        &self,
        user: &Subject,
        groups: &[Subject],
        channel: Option<&str>,
    ) -> Request {
        let (replicas, tail_lines) = match &self.op {
            Op::Scale { replicas, .. } => (Some(i64::from(*replicas)), None),
            // The most replicas the new bounds allow (or, with only --min, require): so
            // `when: {replicas: …}` bounds an autoscaler as it bounds a scale.
            Op::Hpa { min, max, .. } => (max.or(*min).map(i64::from), None),
            Op::Logs { tail, .. } => (None, Some(i64::from(tail.unwrap_or(DEFAULT_TAIL)))),
            _ => (None, None),
        };
        Request {
            user: user.clone(),
            groups: groups.to_vec(),
            groups_unknown: false,
            channel: channel.map(str::to_owned),
            action: self.action(),
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            resource: self.resource(),
            replicas,
            tail_lines,
            severity: self.severity(),
        }
    }
}

/// The `kind/name` `logs` reads: its NAME is `pod/x`, `statefulset/x`, or `x`, a deployment.
fn log_resource(name: &str) -> String {
    if name.contains('/') {
        name.to_owned()
    } else {
        format!("deployment/{name}")
    }
}

/// Lines `logs` shows when `--tail` is not given.
pub const DEFAULT_TAIL: u32 = 100;
