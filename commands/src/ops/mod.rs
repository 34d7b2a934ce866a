//! Guarded Kubernetes operations on kube-rs.
//!
//! [`Operator::execute`] runs a parsed, already-allowed [`Command`] against one of the
//! [`Clusters`] and answers with a [`Reply`]. Long operations (following a rollout or a
//! manual backup Job) report [`crate::Progress`] through a [`ProgressSender`].
//!
//! Every Kubernetes call goes through one retry policy ([`RetryPolicy`]): a conflict is
//! retried once, timeouts, 429 and 5xx answers are retried with exponential backoff, and what
//! still fails becomes an [`OpError`] that [`OpError::to_reply`] turns into something a person
//! can act on (nearest names for "not found", the missing verb and resource for "forbidden").
//!
//! `Help` is rendered by [`crate::help`] when the grammar provides it; `Whoami` is answered by
//! the engine (it knows the user), so `execute` returns [`OpError::NotAnOperation`] for it.

mod backup;
mod errors;
mod events;
mod hpa;
mod logs;
mod mask;
mod pods;
mod rollout;
mod scale;
pub(crate) mod selector;
mod status;
mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::command::{Command, Op};
use crate::reply::{ProgressSender, Reply};

pub use errors::OpError;
pub use mask::{mask_reply, mask_secrets};

/// The clusters opsbot may act on, by name, each with its default namespace.
#[derive(Clone, Default)]
pub struct Clusters {
    clusters: BTreeMap<String, (kube::Client, String)>,
    default: Option<String>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters")
            .field(
                "clusters",
                &self
                    .clusters
                    .iter()
                    .map(|(k, (_, ns))| (k, ns))
                    .collect::<Vec<_>>(),
            )
            .field("default", &self.default)
            .finish()
    }
}

/// One cluster to load from a kubeconfig file: `name` is what users type after `--cluster`,
/// `context` the kubeconfig context (the current context when `None`), `default_namespace`
/// overrides the context's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigCluster {
    pub name: String,
    pub context: Option<String>,
    pub default_namespace: Option<String>,
}

/// A cluster could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    #[error("cluster `{name}`: kubeconfig: {source}")]
    Kubeconfig {
        name: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cluster `{name}`: in-cluster config: {source}")]
    InCluster {
        name: String,
        #[source]
        source: kube::config::InClusterError,
    },
    #[error("cluster `{name}`: client: {source}")]
    Client {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Clusters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cluster; the first one added is the default.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        client: kube::Client,
        default_namespace: impl Into<String>,
    ) {
        let name = name.into();
        if self.default.is_none() {
            self.default = Some(name.clone());
        }
        self.clusters
            .insert(name, (client, default_namespace.into()));
    }

    /// Makes `name` the default cluster (it must have been added).
    pub fn set_default(&mut self, name: &str) -> bool {
        if self.clusters.contains_key(name) {
            self.default = Some(name.to_owned());
            true
        } else {
            false
        }
    }

    /// Adds a cluster from a kube-rs [`kube::Config`]; the namespace defaults to the config's.
    ///
    /// kube-rs' own retry layer is turned off: the operations' [`RetryPolicy`] is the one
    /// place retries happen (it also covers 500s, timeouts and conflicts), so attempts are
    /// counted and reported right.
    pub fn add_config(
        &mut self,
        name: impl Into<String>,
        mut config: kube::Config,
        default_namespace: Option<String>,
    ) -> Result<(), ClusterConfigError> {
        config.default_retry = false;
        let name = name.into();
        let ns = default_namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client =
            kube::Client::try_from(config).map_err(|source| ClusterConfigError::Client {
                name: name.clone(),
                source,
            })?;
        self.add(name, client, ns);
        Ok(())
    }

    /// Loads clusters from kubeconfig contexts: from the file at `path`, or from the default
    /// locations (`$KUBECONFIG`, `~/.kube/config`) when `path` is `None`.
    pub async fn from_kubeconfig(
        path: Option<&Path>,
        wanted: &[KubeconfigCluster],
    ) -> Result<Clusters, ClusterConfigError> {
        let mut out = Clusters::new();
        for c in wanted {
            let options = KubeConfigOptions {
                context: c.context.clone(),
                ..KubeConfigOptions::default()
            };
            let config = match path {
                Some(p) => {
                    let kc = Kubeconfig::read_from(p).map_err(|source| {
                        ClusterConfigError::Kubeconfig {
                            name: c.name.clone(),
                            source,
                        }
                    })?;
                    kube::Config::from_custom_kubeconfig(kc, &options).await
                }
                None => kube::Config::from_kubeconfig(&options).await,
            }
            .map_err(|source| ClusterConfigError::Kubeconfig {
                name: c.name.clone(),
                source,
            })?;
            out.add_config(c.name.clone(), config, c.default_namespace.clone())?;
        }
        Ok(out)
    }

    /// The cluster opsbot runs in, from its service account (`KUBERNETES_SERVICE_HOST`, the
    /// mounted token); the namespace defaults to the service account's.
    pub fn in_cluster(
        name: impl Into<String>,
        default_namespace: Option<String>,
    ) -> Result<Clusters, ClusterConfigError> {
        let name = name.into();
        let config = kube::Config::incluster().map_err(|source| ClusterConfigError::InCluster {
            name: name.clone(),
            source,
        })?;
        let mut out = Clusters::new();
        out.add_config(name, config, default_namespace)?;
        Ok(out)
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

/// How Kubernetes calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts for timeouts, 429 and 5xx answers (the first try included).
    pub attempts: u32,
    /// The first backoff; it doubles on each retry (with up to 50% jitter).
    pub base_delay: Duration,
    /// How long one request may take before it counts as timed out.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            request_timeout: Duration::from_secs(20),
        }
    }
}

/// Where operations get "now" from (ages, staleness, the restart annotation). Tests point it
/// at kubesim's clock.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// Tunables of the operations.
#[derive(Clone)]
pub struct OpOptions {
    pub retry: RetryPolicy,
    /// How long to follow a rollout after scale, restart and rollback before saying
    /// "timed out" (the change itself stays in place).
    pub rollout_timeout: Duration,
    /// How long to follow a manual backup Job.
    pub job_timeout: Duration,
    /// While following, how often the object is re-read when the watch is quiet.
    pub poll_interval: Duration,
    /// Most log lines shown (caps `--tail`).
    pub max_log_lines: u32,
    /// Most log bytes fetched per pod.
    pub max_log_bytes: i64,
    /// `logs` of a workload shows all its pods (prefixed, newest pods first, at most
    /// `max_log_pods`) when true, only its newest pod when false.
    pub logs_all_pods: bool,
    pub max_log_pods: usize,
    /// Most events listed by `events`.
    pub max_events: usize,
    /// Recent warning events shown by `status`.
    pub status_warnings: usize,
    /// Jobs listed per CronJob by `backup status`.
    pub backup_jobs: usize,
    /// Most characters of a table (pods, events): rows that do not fit are left out from the
    /// bottom and counted, so the rows that matter (unhealthy pods, newest events) stay.
    pub table_chars: usize,
    pub clock: Clock,
}

impl std::fmt::Debug for OpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpOptions")
            .field("retry", &self.retry)
            .field("rollout_timeout", &self.rollout_timeout)
            .field("job_timeout", &self.job_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("max_log_lines", &self.max_log_lines)
            .field("max_log_bytes", &self.max_log_bytes)
            .field("logs_all_pods", &self.logs_all_pods)
            .field("max_log_pods", &self.max_log_pods)
            .field("max_events", &self.max_events)
            .field("status_warnings", &self.status_warnings)
            .field("backup_jobs", &self.backup_jobs)
            .field("table_chars", &self.table_chars)
            .finish_non_exhaustive()
    }
}

impl Default for OpOptions {
    fn default() -> Self {
        OpOptions {
            retry: RetryPolicy::default(),
            rollout_timeout: Duration::from_secs(300),
            job_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(2),
            max_log_lines: 500,
            max_log_bytes: 256 * 1024,
            logs_all_pods: true,
            max_log_pods: 5,
            max_events: 30,
            status_warnings: 5,
            backup_jobs: 5,
            table_chars: 2800,
            clock: Arc::new(jiff::Timestamp::now),
        }
    }
}

/// Runs commands against the clusters.
#[derive(Clone, Debug)]
pub struct Operator {
    pub clusters: Clusters,
    pub options: OpOptions,
}

/// Everything one operation needs: the cluster's client, the namespace, the options.
pub(crate) struct Ctx<'a> {
    pub client: kube::Client,
    pub ns: String,
    pub cluster: String,
    pub opts: &'a OpOptions,
    pub progress: ProgressSender,
}

impl Operator {
    pub fn new(clusters: Clusters) -> Self {
        Operator {
            clusters,
            options: OpOptions::default(),
        }
    }

    pub fn with_options(clusters: Clusters, options: OpOptions) -> Self {
        Operator { clusters, options }
    }

    /// Executes a parsed, allowed command, reporting progress of long operations to `progress`.
    pub async fn execute(&self, cmd: &Command, progress: ProgressSender) -> Result<Reply, OpError> {
        match &cmd.op {
            Op::Help { command } => return Ok(help_reply(command.as_deref())),
            Op::Whoami => return Err(OpError::NotAnOperation("whoami".into())),
            Op::Incident(_) | Op::Alert(_) => {
                return Err(OpError::NotAnOperation(cmd.to_text()));
            }
            _ => {}
        }
        let ctx = self.ctx(cmd, progress)?;
        Self::dispatch(&ctx, cmd).await.map(mask_reply)
    }

    async fn dispatch(ctx: &Ctx<'_>, cmd: &Command) -> Result<Reply, OpError> {
        match &cmd.op {
            Op::Status { workload } => status::status(ctx, workload).await,
            Op::Pods { selector } => pods::pods(ctx, selector.as_ref()).await,
            Op::Logs {
                source,
                tail,
                since,
                grep,
                container,
                previous,
            } => {
                let q = logs::LogQuery {
                    source,
                    tail: *tail,
                    since: *since,
                    grep: grep.as_deref(),
                    container: container.as_deref(),
                    previous: *previous,
                };
                logs::logs(ctx, &q).await
            }
            Op::Events {
                name,
                since,
                warnings,
            } => events::events(ctx, name.as_deref(), *since, *warnings).await,
            Op::Scale {
                workload,
                replicas,
                dry_run,
            } => scale::scale(ctx, workload, *replicas, *dry_run).await,
            Op::Restart { workload } => rollout::restart(ctx, workload).await,
            Op::Rollback { name, to_revision } => rollout::rollback(ctx, name, *to_revision).await,
            Op::Hpa { name, min, max } => hpa::hpa(ctx, name, *min, *max).await,
            Op::HpaList => hpa::list(ctx).await,
            Op::BackupStatus { cronjob, all } => {
                backup::status(ctx, cronjob.as_deref(), *all).await
            }
            Op::BackupRun { cronjob, job } => backup::run(ctx, cronjob, job.as_deref()).await,
            Op::Help { .. } | Op::Whoami | Op::Incident(_) | Op::Alert(_) => {
                Err(OpError::NotAnOperation(cmd.to_text()))
            }
        }
    }

    /// `cmd` naming what it acts on as the cluster does: `hpa WORKLOAD --min/--max` becomes
    /// `hpa AUTOSCALER …`, so the policy judges the object that changes (a rule on the
    /// autoscaler's name cannot be side-stepped by naming its workload). Anything else, and
    /// any error (the change then fails on the name as given), is `cmd` unchanged.
    pub async fn canonical(&self, mut cmd: Command) -> Command {
        if let Op::Hpa { name, min, max } = &cmd.op
            && (min.is_some() || max.is_some())
            && let Ok(ctx) = self.ctx(&cmd, ProgressSender::none())
            && let Ok(Some(hpa)) = hpa::workload_hpa(&ctx, name).await
            && let Op::Hpa { name, .. } = &mut cmd.op
        {
            *name = hpa;
        }
        cmd
    }

    /// Checks, before anyone is asked to approve `cmd`, that it could run: what it changes
    /// exists (the workload, autoscaler or CronJob; for `rollback`, the revision to return to)
    /// and its values make sense. Fails as [`Operator::execute`] would fail on the same cluster
    /// state; `Ok` for commands that change nothing in the cluster. Changes nothing itself.
    pub async fn precheck(&self, cmd: &Command) -> Result<(), OpError> {
        let ctx = || self.ctx(cmd, ProgressSender::none());
        match &cmd.op {
            Op::Scale { workload, .. } => status::get_workload(&ctx()?, workload).await.map(drop),
            Op::Restart { workload } => {
                let obj = status::get_workload(&ctx()?, workload).await?;
                rollout::cannot_restart(&obj, workload).map_or(Ok(()), Err)
            }
            Op::Rollback { name, to_revision } => {
                rollout::plan_rollback(&ctx()?, name, *to_revision)
                    .await
                    .map(drop)
            }
            Op::Hpa { name, min, max } if min.is_some() || max.is_some() => {
                hpa::check_change(&ctx()?, name, *min, *max).await
            }
            Op::BackupRun { cronjob, job } => {
                backup::check_run(&ctx()?, cronjob, job.as_deref()).await
            }
            _ => Ok(()),
        }
    }

    /// Whether the cluster `cmd` names (or the default) is configured; `execute` fails the same
    /// way. The engine asks first, so the policy never decides on a cluster that does not exist.
    pub fn check_cluster(&self, cmd: &Command) -> Result<(), OpError> {
        self.target(cmd).map(|_| ())
    }

    /// The cluster's name, client and default namespace for `cmd`.
    fn target(&self, cmd: &Command) -> Result<(String, &kube::Client, &str), OpError> {
        if self.clusters.clusters.is_empty() {
            return Err(OpError::NoCluster);
        }
        let name = match cmd.cluster.as_deref().or(self.clusters.default_name()) {
            Some(n) => n.to_owned(),
            None => return Err(OpError::NoCluster),
        };
        let Some((client, default_ns)) = self.clusters.get(Some(&name)) else {
            let known: Vec<String> = self.clusters.names().map(str::to_owned).collect();
            return Err(OpError::UnknownCluster {
                suggestions: util::nearest(&name, known.iter().map(String::as_str)),
                name,
                known,
            });
        };
        Ok((name, client, default_ns))
    }

    fn ctx(&self, cmd: &Command, progress: ProgressSender) -> Result<Ctx<'_>, OpError> {
        let (cluster, client, default_ns) = self.target(cmd)?;
        Ok(Ctx {
            client: client.clone(),
            ns: cmd
                .namespace
                .clone()
                .unwrap_or_else(|| default_ns.to_owned()),
            cluster,
            opts: &self.options,
            progress,
        })
    }
}

/// `help`: the grammar's help rendering.
fn help_reply(command: Option<&str>) -> Reply {
    crate::help::help_reply(command)
}

/// The engine spawns `execute` on a multi-threaded runtime: its future must stay `Send`.
#[allow(dead_code)]
fn execute_is_send(op: &Operator, cmd: &Command) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&op.execute(cmd, ProgressSender::none()));
}
