//! Wiring: turns a [`Config`] into a running engine, and the engine into `serve`, `console` and
//! `demo`. The end-to-end tests start the bot through these same functions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsbot_commands::ops::OpOptions;
use opsbot_commands::{Clusters, Operator};
use opsbot_policies::Policy;
use tokio::io::BufReader;

use crate::config::{ClusterSource, Config, Quota, RateLimits};
use crate::console::{self, ConsoleSink};
use crate::engine::{Engine, EngineOptions, PolicyFile};
use crate::incidents::{Clock, Incidents};
use crate::metrics::Metrics;
use crate::server::{self, RunningServer};
use crate::store::anchor::AnchorOptions;
use crate::store::{Anchor, AuditKey, Store};

/// Why the bot could not start. Every message is fit for an operator's terminal, and is said
/// once (`transparent`: the cause is the message, not a repeated `source`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Policy(#[from] opsbot_policies::PolicyErrors),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Cluster(#[from] opsbot_commands::ops::ClusterConfigError),
    #[error(transparent)]
    Slack(#[from] crate::slack::SlackError),
    #[error(transparent)]
    Discord(#[from] crate::discord::DiscordError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Audit(#[from] crate::store::AnchorError),
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
    let store = audited_store(config).await?;
    let operator = Operator::new(clusters(config).await?);
    Ok(Engine::new(
        store,
        policy,
        operator,
        engine_options(config),
        metrics,
    ))
}

/// Opens the store with the audit key (`audit.key_file`, created when absent), refuses a log
/// shorter than its latest checkpoint or rewritten under it, checkpoints the head, and starts
/// the checkpoint writer (stopped by [`finish_audit`]).
pub async fn audited_store(config: &Config) -> Result<Store, StartError> {
    let key = Arc::new(AuditKey::load_or_create(&config.audit.key_file)?);
    let (anchor, checkpoints) = Anchor::open(anchor_options(config), key.clone())?;
    let anchor = Arc::new(anchor);
    let store = Store::open(config.database_url.expose())
        .await?
        .with_audit(key, Some(anchor.clone()));
    anchor.check_log(&store, &checkpoints).await?;
    anchor.checkpoint(&store).await?;
    tokio::spawn(anchor.clone().run(store.clone()));
    Ok(store)
}

/// Where and how often the audit checkpoints of `config` are written.
pub fn anchor_options(config: &Config) -> AnchorOptions {
    AnchorOptions {
        file: config.audit.anchor_file.clone(),
        every_records: config.audit.checkpoint_every_records,
        every: config.audit.checkpoint_every,
    }
}

/// Posts each audit checkpoint in `channel` (`audit.channel`), until the writer is dropped.
/// A failed post is logged, not audited (that would grow the log it announces).
fn announce_checkpoints(engine: &Engine, channel: crate::config::AuditChannel) {
    let Some(anchor) = engine.store().anchor() else {
        return;
    };
    let mut written = anchor.subscribe();
    let engine = engine.clone();
    tokio::spawn(async move {
        while written.changed().await.is_ok() {
            let Some(c) = written.borrow_and_update().clone() else {
                continue;
            };
            let reply = opsbot_commands::Reply::new(
                opsbot_commands::reply::Tone::Info,
                format!("Audit checkpoint: record {}", c.id),
            )
            .text(format!(
                "id {}, time {}, hash {}, signature {}",
                c.id, c.time, c.hash, c.signature
            ));
            if let Err(e) = engine
                .announce(&channel.platform, &channel.channel, &reply)
                .await
            {
                tracing::error!(error = %e, "cannot post the audit checkpoint");
            }
        }
    });
}

/// Stops the checkpoint writer of `store` after a last checkpoint of the head.
pub async fn finish_audit(store: &Store) {
    if let Some(anchor) = store.anchor()
        && let Err(e) = anchor.finish(store).await
    {
        tracing::error!(error = %e, "cannot write the last audit checkpoint");
    }
}

pub fn engine_options(config: &Config) -> EngineOptions {
    EngineOptions {
        channels: config.channels.clone(),
        rate_limits: config.rate_limits,
        sweep_interval: config.approvals.sweep_interval,
        max_in_flight: config.engine.max_in_flight,
        max_command_age: config.engine.max_command_age,
        ..EngineOptions::default()
    }
}

/// `alerts` and `silence …` (stored alerts; silences in `alerts.alertmanagers`).
fn register_alert_commands(engine: &Engine, config: &Config) {
    let desk = crate::alerts::commands::AlertCommands::new(engine.store().clone(), &config.alerts);
    engine.register_desk(crate::engine::DeskFor::Alerts, Arc::new(desk));
}

/// A running bot: HTTP server, adapters and background duties.
pub struct Bot {
    pub addr: std::net::SocketAddr,
    pub engine: Engine,
    server: RunningServer,
    stop_socket: tokio_util::sync::CancellationToken,
    socket: Option<tokio::task::JoinHandle<()>>,
    /// Alertmanager intake, when `alerts:` has webhook credentials.
    pub alerts: Option<crate::alerts::Alerts>,
    /// Incidents: their commands, channels, timelines and escalations.
    pub incidents: Incidents,
    discord_gateway: Option<tokio::task::JoinHandle<()>>,
}

/// Builds the engine from `config`, attaches every configured chat adapter, and starts serving
/// on `config.listen` (port 0 picks a free port).
pub async fn start(config: &Config) -> Result<Bot, StartError> {
    let metrics = Arc::new(Metrics::new());
    let engine = engine(config, metrics).await?;
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
        let discord = discord.with_incidents(
            config.incidents.discord_category.clone(),
            config.incidents.discord_archive_category.clone(),
        );
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
    let alerts = config
        .alerts
        .is_configured()
        .then(|| crate::alerts::Alerts::new(engine.clone(), config.alerts.clone()));
    if let Some(alerts) = &alerts {
        engine.register_alert_actions(alerts.actions());
        alerts.resume();
        router = router.merge(crate::alerts::http::router(alerts.clone()));
    }
    register_alert_commands(&engine, config);
    let incidents = Incidents::new(engine.clone(), config.incidents.clone(), Clock::real());
    incidents.start();
    if let Some(channel) = &config.audit.channel {
        announce_checkpoints(&engine, channel.clone());
    }
    // After the adapters registered their sinks: the first sweep answers what a stopped
    // process left open, through them.
    engine.start_background(Some(POLICY_POLL));
    let server = RunningServer::start(config.listen, router, config.http).await?;
    Ok(Bot {
        addr: server.addr,
        engine,
        server,
        stop_socket,
        socket,
        alerts,
        incidents,
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
        if let Some(alerts) = &self.alerts {
            alerts.stop();
        }
        self.incidents.stop();
        self.engine.shutdown().await;
        finish_audit(self.engine.store()).await;
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
    register_alert_commands(&engine, &config);
    let incidents = Incidents::new(engine.clone(), config.incidents.clone(), Clock::real());
    incidents.start();
    engine.start_background(Some(POLICY_POLL));
    let result = run_console(&engine, speaker).await;
    incidents.stop();
    result
}

async fn run_console(engine: &Engine, speaker: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let sink = Arc::new(ConsoleSink::new(tokio::io::stdout()));
    let interactive = std::io::stdin().is_terminal();
    let stdin = BufReader::new(tokio::io::stdin());
    console::run(engine, sink, stdin, speaker, interactive).await?;
    engine.shutdown().await;
    finish_audit(engine.store()).await;
    Ok(())
}

/// The example policy, built in so `opsbot demo` works from anywhere.
pub const EXAMPLE_POLICY: &str = include_str!("../../deploy/policy.example.yaml");

/// Rate limits of `opsbot demo`: roomy enough for its own examples and a piped script (every
/// speaker shares the one console channel).
pub const DEMO_RATE_LIMITS: RateLimits = RateLimits {
    per_user: Quota::new(120, 30),
    per_channel: Quota::new(240, 60),
    global: Quota::new(600, 100),
};

/// `opsbot demo`: kubesim in-process with its default seed, SQLite in a temporary directory
/// (or in `keep`, kept with an `opsbot.yaml` pointing at it, so `opsbot audit verify` can be
/// tried on it), the example policy, and the console.
pub async fn demo(speaker: &str, keep: Option<&Path>) -> anyhow::Result<()> {
    let sim = kubesim::KubeSim::start(kubesim::Seed::default_seed()).await?;
    let kube_config = kube::Config::new(sim.url().parse()?);
    let mut clusters = Clusters::new();
    clusters.add_config("kubesim", kube_config, Some("production".into()))?;
    let temp = tempfile::tempdir()?;
    let dir = match keep {
        Some(dir) => {
            keep_demo_dir(dir)?;
            dir
        }
        None => temp.path(),
    };
    // A kept demo keeps its audit key beside its database (where `audit verify` looks for it,
    // as `audit.key_file` defaults to DATA_DIR/audit.key); otherwise the key lives as long as
    // the demo. No checkpoints either way.
    let key = match keep {
        Some(dir) => AuditKey::load_or_create(&dir.join("audit.key"))?,
        None => AuditKey::generate(),
    };
    let store = Store::open_sqlite_file(&dir.join("opsbot.db"))
        .await?
        .with_audit(Arc::new(key), None);
    let policy = Policy::from_yaml(EXAMPLE_POLICY, "deploy/policy.example.yaml")?;
    let options = OpOptions {
        rollout_timeout: Duration::from_secs(60),
        ..OpOptions::default()
    };
    let engine = Engine::new(
        store,
        Arc::new(PolicyFile::fixed(policy)),
        Operator::with_options(clusters, options),
        EngineOptions {
            rate_limits: DEMO_RATE_LIMITS,
            ..EngineOptions::default()
        },
        Arc::new(Metrics::new()),
    );
    let alerts = crate::alerts::commands::AlertCommands::new(
        engine.store().clone(),
        &crate::config::AlertsConfig::default(),
    );
    engine.register_desk(crate::engine::DeskFor::Alerts, Arc::new(alerts));
    let incidents = Incidents::new(engine.clone(), demo_incidents(), Clock::sped_up(DEMO_SPEED));
    incidents.start();
    engine.start_background(None);
    println!("{}", demo_intro(speaker, &sim.url(), dir));
    run_console(&engine, speaker).await?;
    incidents.stop();
    engine.store().close().await;
    if keep.is_some() {
        println!(
            "The demo's database is kept in {dir}: try `opsbot --config {config} audit verify`.",
            dir = dir.display(),
            config = dir.join("opsbot.yaml").display()
        );
    }
    Ok(())
}

/// How much faster than real time incidents escalate in the demo: a five-minute deadline
/// passes in five seconds.
pub const DEMO_SPEED: u32 = 60;

/// The demo's incidents: runbook 001's escalation path, with console people (olive is on
/// call, alice the ops lead, dana the dev lead, carol the CTO).
pub fn demo_incidents() -> crate::config::IncidentsConfig {
    use crate::config::{AlertChannel, EscalationStep, IncidentsConfig, SeverityPlan};
    use opsbot_policies::{Severity, Subject};
    let who = |names: &[&str]| -> Vec<Subject> {
        names
            .iter()
            .filter_map(|n| Subject::parse(&format!("console:{n}")).ok())
            .collect()
    };
    let min = |m: u64| Duration::from_secs(60 * m);
    let mut config = IncidentsConfig {
        announce_channel: Some(AlertChannel {
            platform: "console".into(),
            channel: console::CHANNEL.into(),
        }),
        ..IncidentsConfig::default()
    };
    let chains: [(Severity, Vec<Vec<&str>>); 4] = [
        (
            Severity::P1,
            vec![vec!["olive"], vec!["alice", "dana"], vec!["carol"]],
        ),
        (
            Severity::P2,
            vec![vec!["olive"], vec!["alice"], vec!["dana"]],
        ),
        (
            Severity::P3,
            vec![vec!["olive"], vec!["bob"], vec!["alice"]],
        ),
        (Severity::P4, vec![vec!["bob"]]),
    ];
    for (severity, chain) in chains {
        let mut plan = SeverityPlan::default_for(severity);
        plan.responders = who(&chain[0]);
        plan.escalation = chain
            .iter()
            .enumerate()
            .map(|(i, names)| EscalationStep {
                after: if i == 0 { Duration::ZERO } else { min(5) },
                notify: who(names),
                page: false,
            })
            .collect();
        config.severities.insert(severity, plan);
    }
    config
}

/// Makes `dir` a place `opsbot --config DIR/opsbot.yaml audit …` can read: the directory, an
/// `opsbot.yaml` whose data directory is `dir` (the demo's `opsbot.db`), and the example policy.
fn keep_demo_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let policy = dir.join("policy.yaml");
    if !policy.exists() {
        std::fs::write(&policy, EXAMPLE_POLICY)?;
    }
    let config = dir.join("opsbot.yaml");
    if !config.exists() {
        std::fs::write(
            &config,
            "# Written by `opsbot demo --keep`: the demo's database and policy.\n\
             data_dir: .\n\
             policy: policy.yaml\n",
        )?;
    }
    Ok(())
}

fn demo_intro(speaker: &str, url: &str, dir: &Path) -> String {
    format!(
        "opsbot demo: a simulated cluster at {url} (namespaces api, production, gc-storage, …),\n\
         SQLite in {dir}, the example policy (deploy/policy.example.yaml).\n\
         You are console:{speaker}. Try:\n\
         \x20 status conea-api                 read-only: the rollout state of production/conea-api\n\
         \x20 backup status -n gc-storage      the postgres-backup CronJob and its recent Jobs\n\
         \x20 scale conea-api 5                needs an approval: then `as alice` and `approve`\n\
         Also: `help`, `whoami`, `as NAME` to switch speaker, `quit`.\n",
        dir = dir.display()
    )
}
