//! Wiring: turns a [`Config`] into a running engine, and the engine into `serve`, `console` and
//! `demo`. The end-to-end tests start the bot through these same functions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsbot_commands::ops::OpOptions;
use opsbot_commands::{Clusters, Operator};
use opsbot_policies::Policy;
use tokio::io::BufReader;

use crate::config::{ClusterSource, Config};
use crate::console::{self, ConsoleSink};
use crate::engine::{Engine, EngineOptions, PolicyFile};
use crate::metrics::Metrics;
use crate::server::{self, RunningServer};
use crate::store::Store;

/// Why the bot could not start. Every message is fit for an operator's terminal.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Policy(#[from] opsbot_policies::PolicyErrors),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Cluster(#[from] opsbot_commands::ops::ClusterConfigError),
    #[error("{0}")]
    Slack(#[from] crate::slack::SlackError),
    #[error("{0}")]
    Discord(#[from] crate::discord::DiscordError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How often the policy file is looked at for changes.
pub const POLICY_POLL: Duration = Duration::from_secs(2);

/// The clusters named in the configuration; with none, the current kubeconfig context as
/// `default`.
pub async fn clusters(config: &Config) -> Result<Clusters, StartError> {
    let mut clusters = Clusters::new();
    if config.clusters.is_empty() {
        let kc = kube::Config::infer().await.map_err(|e| {
            std::io::Error::other(format!(
                "no clusters configured and no kubeconfig or in-cluster config found: {e}"
            ))
        })?;
        clusters.add_config("default", kc, None)?;
        return Ok(clusters);
    }
    for c in &config.clusters {
        let kc = match &c.source {
            ClusterSource::InCluster => kube::Config::incluster().map_err(|source| {
                opsbot_commands::ops::ClusterConfigError::InCluster {
                    name: c.name.clone(),
                    source,
                }
            })?,
            ClusterSource::Kubeconfig { path, context } => {
                let options = kube::config::KubeConfigOptions {
                    context: context.clone(),
                    ..Default::default()
                };
                let loaded = match path {
                    Some(p) => match kube::config::Kubeconfig::read_from(p) {
                        Ok(kc) => kube::Config::from_custom_kubeconfig(kc, &options).await,
                        Err(e) => Err(e),
                    },
                    None => kube::Config::from_kubeconfig(&options).await,
                };
                loaded.map_err(
                    |source| opsbot_commands::ops::ClusterConfigError::Kubeconfig {
                        name: c.name.clone(),
                        source,
                    },
                )?
            }
        };
        clusters.add_config(c.name.clone(), kc, Some(c.default_namespace.clone()))?;
    }
    Ok(clusters)
}

/// Opens the store (running migrations), loads the policy and connects the clusters.
pub async fn engine(config: &Config, metrics: Arc<Metrics>) -> Result<Engine, StartError> {
    let policy = Arc::new(PolicyFile::load_with_default_ttl(
        &config.policy,
        config.approvals.default_ttl,
    )?);
    let store = Store::open(config.database_url.expose()).await?;
    let operator = Operator::new(clusters(config).await?);
    Ok(Engine::new(
        store,
        policy,
        operator,
        engine_options(config),
        metrics,
    ))
}

pub fn engine_options(config: &Config) -> EngineOptions {
    EngineOptions {
        channels: config.channels.clone(),
        rate_limits: config.rate_limits,
        sweep_interval: config.approvals.sweep_interval,
        ..EngineOptions::default()
    }
}

/// A running bot: HTTP server, adapters and background duties.
pub struct Bot {
    pub addr: std::net::SocketAddr,
    pub engine: Engine,
    server: RunningServer,
    stop_socket: tokio_util::sync::CancellationToken,
    socket: Option<tokio::task::JoinHandle<()>>,
    discord_gateway: Option<tokio::task::JoinHandle<()>>,
}

/// Builds the engine from `config`, attaches every configured chat adapter, and starts serving
/// on `config.listen` (port 0 picks a free port).
pub async fn start(config: &Config) -> Result<Bot, StartError> {
    let metrics = Arc::new(Metrics::new());
    let engine = engine(config, metrics).await?;
    engine.start_background(Some(POLICY_POLL));
    let mut router = server::base_router(engine.clone());
    let stop_socket = tokio_util::sync::CancellationToken::new();
    let mut socket = None;
    if let Some(slack) = crate::slack::SlackConfig::from_config(&config.slack) {
        slack.validate()?;
        if slack.socket_mode {
            let (engine, stop) = (engine.clone(), stop_socket.clone());
            socket = Some(tokio::spawn(async move {
                let stopped = async move { stop.cancelled().await };
                if let Err(e) = crate::slack::socket::run(engine, slack, stopped).await {
                    tracing::error!(error = %e, "Slack Socket Mode stopped");
                }
            }));
        } else {
            router = router.merge(crate::slack::router(engine.clone(), &slack));
        }
    }
    let mut discord_gateway = None;
    if let Some(discord) = crate::discord::DiscordConfig::from_config(&config.discord) {
        discord.validate()?;
        match discord.mode {
            crate::discord::Mode::Http => {
                router = router.merge(crate::discord::router(engine.clone(), &discord)?);
            }
            crate::discord::Mode::Gateway => {
                let (engine, stop) = (engine.clone(), stop_socket.clone());
                discord_gateway = Some(tokio::spawn(async move {
                    let stopped = async move { stop.cancelled().await };
                    if let Err(e) = crate::discord::run_gateway(engine, discord, stopped).await {
                        tracing::error!(error = %e, "Discord gateway stopped");
                    }
                }));
            }
        }
    }
    let server = RunningServer::start(config.listen, router).await?;
    Ok(Bot {
        addr: server.addr,
        engine,
        server,
        stop_socket,
        socket,
        discord_gateway,
    })
}

impl Bot {
    /// Stops accepting requests, finishes in-flight work, closes the database.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop_socket.cancel();
        if let Some(socket) = self.socket {
            let _ = socket.await;
        }
        if let Some(gateway) = self.discord_gateway {
            let _ = gateway.await;
        }
        self.server.stop().await?;
        self.engine.shutdown().await;
        self.engine.store().close().await;
        Ok(())
    }
}

/// `opsbot serve`: the bot until SIGTERM / Ctrl-C; then it stops accepting, finishes in-flight
/// work, and returns.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bot = start(&config).await?;
    tracing::info!(
        addr = %bot.addr,
        policy = %bot.engine.policy().current().summary(),
        "opsbot serving"
    );
    server::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight work");
    bot.stop().await?;
    Ok(())
}

/// `opsbot console`: a chat in the terminal against the configured clusters and database.
pub async fn console(config: Config, speaker: &str) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let engine = engine(&config, metrics).await?;
    engine.start_background(Some(POLICY_POLL));
    run_console(&engine, speaker).await
}

async fn run_console(engine: &Engine, speaker: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let sink = Arc::new(ConsoleSink::new(tokio::io::stdout()));
    let interactive = std::io::stdin().is_terminal();
    let stdin = BufReader::new(tokio::io::stdin());
    console::run(engine, sink, stdin, speaker, interactive).await?;
    engine.shutdown().await;
    Ok(())
}

/// The example policy, built in so `opsbot demo` works from anywhere.
pub const EXAMPLE_POLICY: &str = include_str!("../../deploy/policy.example.yaml");

/// `opsbot demo`: kubesim in-process with its default seed, SQLite in a temporary directory,
/// the example policy, and the console.
pub async fn demo(speaker: &str) -> anyhow::Result<()> {
    let sim = kubesim::KubeSim::start(kubesim::Seed::default_seed()).await?;
    let kube_config = kube::Config::new(sim.url().parse()?);
    let mut clusters = Clusters::new();
    clusters.add_config("kubesim", kube_config, Some("production".into()))?;
    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite_file(&dir.path().join("opsbot.db")).await?;
    let policy = Policy::from_yaml(EXAMPLE_POLICY, "deploy/policy.example.yaml")?;
    let options = OpOptions {
        rollout_timeout: Duration::from_secs(60),
        ..OpOptions::default()
    };
    let engine = Engine::new(
        store,
        Arc::new(PolicyFile::fixed(policy)),
        Operator::with_options(clusters, options),
        EngineOptions::default(),
        Arc::new(Metrics::new()),
    );
    engine.start_background(None);
    println!("{}", demo_intro(speaker, &sim.url(), dir.path()));
    run_console(&engine, speaker).await
}

fn demo_intro(speaker: &str, url: &str, dir: &Path) -> String {
    format!(
        "opsbot demo: a simulated cluster at {url} (namespaces api, production, gc-storage, …),\n\
         SQLite in {dir}, the example policy (deploy/policy.example.yaml).\n\
         You are console:{speaker}. Try:\n\
         \x20 status conea-api                 read-only: the rollout state of production/conea-api\n\
         \x20 backup status -n gc-storage      the postgres-backup CronJob and its recent Jobs\n\
         \x20 scale conea-api 5                needs an approval: then `as alice` and `approve ID`\n\
         Also: `help`, `whoami`, `as NAME` to switch speaker, `quit`.\n",
        dir = dir.display()
    )
}
