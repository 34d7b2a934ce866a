//! Guarded Kubernetes operations on kube-rs. (Stub laid down by the workspace skeleton.)

use std::collections::BTreeMap;

use crate::command::Command;
use crate::reply::{ProgressSender, Reply};

/// The clusters opsbot may act on, by name, each with its default namespace.
#[derive(Clone, Default)]
pub struct Clusters {
    clusters: BTreeMap<String, (kube::Client, String)>,
    default: Option<String>,
}

impl Clusters {
    /// Adds a cluster; the first one added is the default.
    pub fn add(&mut self, name: impl Into<String>, client: kube::Client, default_namespace: impl Into<String>) {
        let name = name.into();
        if self.default.is_none() {
            self.default = Some(name.clone());
        }
        self.clusters.insert(name, (client, default_namespace.into()));
    }

    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The client and default namespace of `name`, or of the default cluster.
    pub fn get(&self, name: Option<&str>) -> Option<(&kube::Client, &str)> {
        let name = name.or(self.default.as_deref())?;
        self.clusters.get(name).map(|(c, ns)| (c, ns.as_str()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }
}

/// An operation that failed, in terms a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Other(String),
}

impl OpError {
    /// The reply that tells the user what went wrong and what to do.
    pub fn to_reply(&self) -> Reply {
        Reply::danger("Command failed").text(self.to_string())
    }
}

/// Runs commands against the clusters.
#[derive(Clone)]
pub struct Operator {
    pub clusters: Clusters,
}

impl Operator {
    pub fn new(clusters: Clusters) -> Self {
        Operator { clusters }
    }

    /// Executes a parsed, allowed command, reporting progress of long operations to `progress`.
    pub async fn execute(&self, _cmd: &Command, _progress: ProgressSender) -> Result<Reply, OpError> {
        unimplemented!("operations work in progress")
    }
}
