//! The command grammar, the platform-neutral reply model and the guarded Kubernetes operations.
//!
//! This crate knows no Slack or Discord JSON: chat adapters translate [`Reply`] and
//! [`Progress`] into their own formats.

pub mod alert;
pub mod command;
pub mod grammar;
pub mod help;
pub mod incident;
pub mod kubectl;
pub mod ops;
pub mod reply;
pub mod spec;

pub use alert::AlertCmd;
pub use command::{Command, DEFAULT_TAIL, Op, PodSelector, Workload, WorkloadKind};
pub use grammar::{ParseError, parse, parse_tokens};
pub use help::{help_reply, reference_markdown};
pub use incident::{IncidentCmd, IncidentOp, IncidentStatus, Role};
pub use ops::{Clusters, OpError, Operator};
pub use reply::{
    Button, ButtonStyle, Field, Limits, Monospace, Progress, ProgressReceiver, ProgressSender,
    Reply, Tone,
};
pub use spec::{
    AppCommand, AppOption, COMMANDS, CommandSpec, OptionKind, OptionValue, Risk, app_commands,
};
