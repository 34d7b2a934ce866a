//! Configuration: one YAML file (`opsbot.yaml`) plus `OPSBOT_*` environment overrides.
//!
//! Where the file comes from: `--config PATH`, else `OPSBOT_CONFIG`, else `./opsbot.yaml` if it
//! exists, else none (every setting has a default, so an empty or missing file is valid).
//! Relative paths in the file are relative to the file's directory; relative paths in the
//! environment are relative to the working directory.
//!
//! Environment overrides (they win over the file):
//!
//! | variable | setting |
//! |---|---|
//! | `OPSBOT_DATA_DIR` | `data_dir` |
//! | `OPSBOT_DATABASE_URL` (or `…_FILE`) | `database.url` |
//! | `OPSBOT_POLICY` | `policy` |
//! | `OPSBOT_LISTEN` | `listen` |
//! | `OPSBOT_SLACK_BOT_TOKEN` (or `…_FILE`) | `slack.bot_token` |
//! | `OPSBOT_SLACK_SIGNING_SECRET` (or `…_FILE`) | `slack.signing_secret` |
//! | `OPSBOT_SLACK_APP_TOKEN` (or `…_FILE`) | `slack.app_token` |
//! | `OPSBOT_DISCORD_TOKEN` (or `…_FILE`) | `discord.token` |
//! | `OPSBOT_DISCORD_PUBLIC_KEY` (or `…_FILE`) | `discord.public_key` |
//! | `OPSBOT_AUDIT_KEY_FILE` | `audit.key_file` |
//! | `OPSBOT_ALERTS_WEBHOOK_TOKEN` (or `…_FILE`) | `alerts.webhook_token` |
//! | `OPSBOT_DISCORD_APPLICATION_ID` | `discord.application_id` |
//! | `OPSBOT_DISCORD_MODE` | `discord.mode` (`http` or `gateway`) |
//! | `OPSBOT_DISCORD_GUILDS` (comma-separated) | `discord.guilds` |
//!
//! Secrets (tokens, signing secrets, the database URL, which may hold a password) can be given
//! inline, as `*_file` keys naming a file that holds them, or by environment. They are held in
//! [`Secret`], whose `Debug` and `Display` print `***`; read them with [`Secret::expose`] only
//! where they are used. A bad file fails with `FILE:LINE:COL: message` errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use opsbot_policies::{Severity, Subject};
use serde::{Deserialize, Deserializer};
use serde_saphyr::{DefaultMessageFormatter, Location, MessageFormatter, Spanned};

/// The file looked for in the working directory when no path is given.
pub const DEFAULT_FILE: &str = "opsbot.yaml";
/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "OPSBOT_CONFIG";

// ---------------------------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------------------------

/// A secret value. `Debug` and `Display` print `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call it where the secret is used, never to print or log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `url` with the password in it, if any, replaced by `***` (for Alertmanager URLs in
/// `check-config` and errors). A URL that cannot be parsed is not shown at all.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// What may be shown of a database URL: its scheme, user, host, port and database, and
/// nothing else, wherever the URL holds them (`postgres://user@host:port/db` or the query's
/// `user`, `host`, `port`, `dbname`); a SQLite URL shows its path. Passwords, wherever they
/// are (`user:pw@`, `?password=`, `?sslpassword=`) and every other option are left out. A URL
/// that cannot be parsed is not shown at all.
pub fn describe_database_url(url: &str) -> String {
    const UNPARSEABLE: &str = "<unparseable database URL>";
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        return format!("sqlite:{path}");
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return UNPARSEABLE.to_owned();
    };
    let query = |key: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    let user = Some(parsed.username().to_owned())
        .filter(|u| !u.is_empty())
        .or_else(|| query("user"));
    let host = parsed
        .host_str()
        .map(str::to_owned)
        .filter(|h| !h.is_empty())
        .or_else(|| query("host"));
    let port = parsed
        .port()
        .map(|p| p.to_string())
        .or_else(|| query("port"));
    let database = Some(parsed.path().trim_start_matches('/').to_owned())
        .filter(|d| !d.is_empty())
        .or_else(|| query("dbname"));
    let mut out = format!("{}://", parsed.scheme());
    if let Some(user) = user {
        out.push_str(&format!("{user}@"));
    }
    out.push_str(host.as_deref().unwrap_or(""));
    if let Some(port) = port {
        out.push_str(&format!(":{port}"));
    }
    if let Some(database) = database {
        out.push_str(&format!("/{database}"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Where a configuration problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// In the file, at a position (1-based; 0 when unknown).
    File {
        file: String,
        line: u64,
        column: u64,
    },
    /// In an environment variable.
    Env(String),
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { file, line, column } if *line > 0 => {
                write!(f, "{file}:{line}:{column}: {}", self.message)
            }
            Origin::File { file, .. } => write!(f, "{file}: {}", self.message),
            Origin::Env(var) => write!(f, "{var}: {}", self.message),
        }
    }
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
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

// ---------------------------------------------------------------------------------------------
// The resolved configuration
// ---------------------------------------------------------------------------------------------

/// The configuration opsbot runs with, defaults filled in, secrets resolved, paths absolute or
/// relative to the working directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// Where opsbot keeps its files (the default SQLite database). Default `./data`.
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…`. Default: `sqlite://DATA_DIR/opsbot.db`.
    pub database_url: Secret,
    /// The policy file. Default `policy.yaml` (next to the config file).
    pub policy: PathBuf,
    pub clusters: Vec<ClusterConfig>,
    /// Channel id or name → defaults for commands typed there.
    pub channels: BTreeMap<String, ChannelDefaults>,
    pub rate_limits: RateLimits,
    pub approvals: ApprovalDefaults,
    pub engine: EngineLimits,
    /// The HTTP server's address. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    pub http: HttpLimits,
    pub slack: SlackConfig,
    pub discord: DiscordConfig,
    pub alerts: AlertsConfig,
    pub audit: AuditConfig,
    pub incidents: IncidentsConfig,
}

/// Incidents (`bot/src/incidents`): where they are announced, how each severity escalates.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentsConfig {
    /// Where new incidents are announced with a link (the runbooks' `#incidents`).
    pub announce_channel: Option<AlertChannel>,
    /// The Discord category incident channels are created in.
    pub discord_category: Option<String>,
    /// The Discord category closed incidents' channels move to (read-only there).
    pub discord_archive_category: Option<String>,
    /// What each severity means and how it escalates; every severity has an entry.
    pub severities: BTreeMap<Severity, SeverityPlan>,
    /// PagerDuty Events API v2, for escalation steps that page.
    pub pagerduty: Option<PagerDutyConfig>,
    /// How often due escalations and reminders are looked for. Default 5 seconds.
    pub sweep_interval: Duration,
}

/// One severity's response: who is brought in, how fast, and who is told next.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityPlan {
    /// What the severity means (runbook 001, 4.1), shown on the card and in the export.
    pub description: String,
    /// Invited to the channel and mentioned when the incident opens (groups, roles, people).
    pub responders: Vec<Subject>,
    /// Someone should take commander within this; after it the escalation runs.
    pub ack_within: Duration,
    /// Until someone takes commander: step by step, each after its delay since the previous
    /// one (the first since the acknowledgement deadline).
    pub escalation: Vec<EscalationStep>,
    /// The commander is asked for a status update when none came for this long.
    pub remind_every: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EscalationStep {
    pub after: Duration,
    /// Mentioned in the incident channel and the announcement, and invited.
    pub notify: Vec<Subject>,
    /// Also sends a PagerDuty trigger (resolved when the incident closes).
    pub page: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyConfig {
    /// `https://events.pagerduty.com/v2/enqueue` unless set.
    pub url: String,
    pub routing_key: Secret,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            announce_channel: None,
            discord_category: None,
            discord_archive_category: None,
            severities: Severity::ALL
                .into_iter()
                .map(|s| (s, SeverityPlan::default_for(s)))
                .collect(),
            pagerduty: None,
            sweep_interval: Duration::from_secs(5),
        }
    }
}

impl SeverityPlan {
    /// Runbook 001's meaning and response time of `severity`, with nobody to notify.
    pub fn default_for(severity: Severity) -> SeverityPlan {
        let min = |m: u64| Duration::from_secs(60 * m);
        let (description, ack, remind) = match severity {
            Severity::P1 => ("The whole service is unavailable.", min(5), min(15)),
            Severity::P2 => (
                "A major function is unavailable or badly degraded.",
                min(15),
                min(30),
            ),
            Severity::P3 => (
                "A part of a function is affected; there is a workaround.",
                min(60),
                min(120),
            ),
            Severity::P4 => ("No impact; planned work.", min(240), min(24 * 60)),
        };
        SeverityPlan {
            description: description.to_owned(),
            responders: Vec::new(),
            ack_within: ack,
            escalation: Vec::new(),
            remind_every: remind,
        }
    }
}

/// Where the audit log's key and checkpoints live (`bot/src/store/anchor.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The chain key (64 hex characters), created with mode 0600 on first start when absent.
    /// Every process writing the same database needs the same key. Default `DATA_DIR/audit.key`.
    pub key_file: PathBuf,
    /// Signed checkpoints of the log's head, one JSON line each. Default
    /// `DATA_DIR/audit.anchors`.
    pub anchor_file: PathBuf,
    /// A checkpoint at the latest after this many records. Default 100.
    pub checkpoint_every_records: u64,
    /// … and at the latest this long after the log grew. Default 10 seconds.
    pub checkpoint_every: Duration,
    /// Where each checkpoint is also posted, e.g. `slack:C0AUDIT` (`PLATFORM:CHANNEL`). None by
    /// default.
    pub channel: Option<AuditChannel>,
}

/// A channel on a chat platform (`slack:C0AUDIT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditChannel {
    pub platform: String,
    pub channel: String,
}

/// Where a cluster's API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSource {
    /// The service account of the pod opsbot runs in.
    InCluster,
    /// A kubeconfig (`None`: the default, `$KUBECONFIG` or `~/.kube/config`) and a context
    /// in it (`None`: its current context).
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    pub source: ClusterSource,
    /// Default `default`.
    pub default_namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelDefaults {
    pub namespace: Option<String>,
    /// A name from `clusters`.
    pub cluster: Option<String>,
}

/// A token bucket: `per_minute` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Quota {
    pub const fn new(per_minute: u32, burst: u32) -> Quota {
        match (NonZeroU32::new(per_minute), NonZeroU32::new(burst)) {
            (Some(per_minute), Some(burst)) => Quota { per_minute, burst },
            _ => panic!("quota constants must be non-zero"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Default 20/min, burst 5.
    pub per_user: Quota,
    /// Default 60/min, burst 10.
    pub per_channel: Quota,
    /// Default 300/min, burst 50.
    pub global: Quota,
}

impl Default for RateLimits {
    fn default() -> Self {
        const PER_USER: Quota = Quota::new(20, 5);
        const PER_CHANNEL: Quota = Quota::new(60, 10);
        const GLOBAL: Quota = Quota::new(300, 50);
        RateLimits {
            per_user: PER_USER,
            per_channel: PER_CHANNEL,
            global: GLOBAL,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalDefaults {
    /// Expiry of an approval request whose rule gives no `ttl`. Default 15 minutes.
    pub default_ttl: Duration,
    /// How often expired requests are looked for. Default 30 seconds.
    pub sweep_interval: Duration,
}

impl Default for ApprovalDefaults {
    fn default() -> Self {
        ApprovalDefaults {
            default_ttl: Duration::from_secs(15 * 60),
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// How much work the engine takes on, and how old a change may be when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Requests taken and not answered yet, at most; more are refused as busy. Default 64
    /// ([`crate::engine::DEFAULT_MAX_IN_FLIGHT`]: what bounds the bot's memory under load).
    pub max_in_flight: usize,
    /// A command that changes the cluster and is older than this when it would start is
    /// refused as stale (approved ones count from the approval). Default 30 seconds.
    pub max_command_age: Duration,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_in_flight: crate::engine::DEFAULT_MAX_IN_FLIGHT,
            max_command_age: Duration::from_secs(30),
        }
    }
}

/// What one HTTP client may hold of the server ([`crate::server::RunningServer`]): the
/// endpoints face the internet, so silent and trickling clients are cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's head must arrive within this; a kept-alive connection idle this long is
    /// closed. Default 10 seconds (Slack and Discord want an answer within 3).
    pub header_timeout: Duration,
    /// A request's body must arrive whole within this of its head, else it is answered 408.
    /// Default 10 seconds.
    pub body_timeout: Duration,
    /// Connections served at once, at most; more wait until one closes. Default 512.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackConfig {
    /// `xoxb-…`, for the Web API.
    pub bot_token: Option<Secret>,
    /// Verifies that HTTP requests come from Slack.
    pub signing_secret: Option<Secret>,
    /// `xapp-…`, for Socket Mode.
    pub app_token: Option<Secret>,
    /// Receive events over a WebSocket instead of HTTP. Default false.
    pub socket_mode: bool,
    /// Default `https://slack.com/api` (tests point it at a fake).
    pub api_url: String,
}

impl SlackConfig {
    /// Whether Slack is configured at all (any secret given).
    pub fn is_configured(&self) -> bool {
        self.bot_token.is_some() || self.signing_secret.is_some() || self.app_token.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordConfig {
    pub token: Option<Secret>,
    /// The application's Ed25519 public key (hex), for verifying interactions.
    pub public_key: Option<Secret>,
    pub application_id: Option<String>,
    /// Default `https://discord.com/api/v10`.
    pub api_url: String,
    /// How interactions arrive. Default `http`.
    pub mode: DiscordMode,
    /// The guild (server) ids opsbot serves; interactions from anywhere else are refused.
    pub guilds: Vec<String>,
}

/// `discord.mode`: interactions POSTed to `/discord/interactions` (`http`), or received over
/// the gateway WebSocket (`gateway`, no public URL needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscordMode {
    #[default]
    Http,
    Gateway,
}

impl DiscordConfig {
    pub fn is_configured(&self) -> bool {
        self.token.is_some() || self.public_key.is_some()
    }
}

/// Alertmanager intake (`bot/src/alerts`): webhook auth, routing to chat channels, flood
/// control, and the Alertmanagers to silence alerts in.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// The bearer token Alertmanager's `http_config` sends (`authorization: {credentials}`).
    pub webhook_token: Option<Secret>,
    /// Or basic auth (`http_config.basic_auth`).
    pub webhook_basic_auth: Option<BasicAuth>,
    /// Ordered; the first match wins unless it says `continue: true`.
    pub routes: Vec<AlertRoute>,
    /// Where groups no route matched go (`None`: they are stored, listed, but not posted).
    pub default_channel: Option<AlertChannel>,
    /// A group that fires again this long after it resolved gets a new message.
    pub regroup_after: Duration,
    /// New messages per channel per minute before new groups go to the channel's digest.
    pub max_new_messages_per_minute: u32,
    /// Alertmanager API bases (one HA cluster), tried in order for silences.
    pub alertmanagers: Vec<AlertmanagerApi>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_token: None,
            webhook_basic_auth: None,
            routes: Vec::new(),
            default_channel: None,
            regroup_after: Duration::from_secs(6 * 3600),
            max_new_messages_per_minute: 20,
            alertmanagers: Vec::new(),
        }
    }
}

impl AlertsConfig {
    /// Whether the webhook may be served: it needs credentials to check.
    pub fn is_configured(&self) -> bool {
        self.webhook_token.is_some() || self.webhook_basic_auth.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

/// A chat channel on a platform: `slack:C0ALERTS`, `discord:1234`, `console:alerts`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertChannel {
    pub platform: String,
    pub channel: String,
}

impl AlertChannel {
    pub const PLATFORMS: [&str; 3] = ["slack", "discord", "console"];

    pub fn parse(text: &str) -> Result<AlertChannel, String> {
        let (platform, channel) = text.trim().split_once(':').ok_or_else(|| {
            format!("channel {text:?} must name its platform: slack:C0ALERTS, discord:1234")
        })?;
        if !AlertChannel::PLATFORMS.contains(&platform) {
            return Err(format!(
                "channel {text:?}: unknown platform {platform:?} (one of {})",
                AlertChannel::PLATFORMS.join(", ")
            ));
        }
        if channel.is_empty() || channel.len() > 80 || channel.contains(char::is_whitespace) {
            return Err(format!(
                "channel {text:?}: the channel id is missing or invalid"
            ));
        }
        Ok(AlertChannel {
            platform: platform.to_owned(),
            channel: channel.to_owned(),
        })
    }
}

impl fmt::Display for AlertChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.channel)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRoute {
    pub matchers: Vec<crate::alerts::matcher::Matcher>,
    pub channel: AlertChannel,
    pub continue_matching: bool,
}

/// One Alertmanager's API base URL and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerApi {
    pub url: String,
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<BasicAuth>,
}

// ---------------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------------

type Sp<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    database: RawDatabase,
    policy: Option<PathBuf>,
    clusters: Vec<Sp<RawCluster>>,
    channels: BTreeMap<String, Sp<RawChannel>>,
    rate_limits: RateLimits,
    approvals: RawApprovals,
    engine: RawEngine,
    #[serde(deserialize_with = "de_listen")]
    listen: Option<SocketAddr>,
    http: RawHttp,
    slack: RawSlack,
    discord: RawDiscord,
    alerts: RawAlerts,
    audit: RawAudit,
    incidents: RawIncidents,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawIncidents {
    announce_channel: Option<Sp<String>>,
    discord_category: Option<String>,
    discord_archive_category: Option<String>,
    severities: BTreeMap<String, Sp<RawSeverity>>,
    pagerduty: Option<Sp<RawPagerDuty>>,
    #[serde(deserialize_with = "de_duration")]
    sweep_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSeverity {
    description: Option<String>,
    responders: Vec<Sp<String>>,
    #[serde(deserialize_with = "de_duration")]
    ack_within: Option<Duration>,
    #[serde(deserialize_with = "de_duration")]
    remind_every: Option<Duration>,
    escalation: Vec<Sp<RawStep>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawStep {
    #[serde(deserialize_with = "de_duration")]
    after: Option<Duration>,
    notify: Vec<Sp<String>>,
    page: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawPagerDuty {
    url: Option<String>,
    routing_key: Option<Secret>,
    routing_key_file: Option<Sp<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    key_file: Option<PathBuf>,
    anchor_file: Option<PathBuf>,
    checkpoint_every_records: Option<std::num::NonZeroU64>,
    #[serde(deserialize_with = "de_duration")]
    checkpoint_every: Option<Duration>,
    channel: Option<Sp<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: Option<Secret>,
    url_file: Option<Sp<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Sp<String>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    in_cluster: bool,
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    default_namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawChannel {
    namespace: Option<String>,
    cluster: Option<Sp<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawEngine {
    max_in_flight: Option<usize>,
    #[serde(deserialize_with = "de_duration")]
    max_command_age: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    #[serde(deserialize_with = "de_http_timeout")]
    header_timeout: Option<Duration>,
    #[serde(deserialize_with = "de_http_timeout")]
    body_timeout: Option<Duration>,
    #[serde(deserialize_with = "de_max_connections")]
    max_connections: Option<NonZeroUsize>,
}

/// The longest `http.*_timeout` taken: a client held longer is no longer "slow".
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most connections `http.max_connections` takes (each costs a file descriptor).
const MAX_HTTP_CONNECTIONS: usize = 100_000;

fn de_http_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let duration = de_duration(d)?;
    if duration.is_some_and(|t| t > MAX_HTTP_TIMEOUT) {
        return Err(serde::de::Error::custom("at most 1h"));
    }
    Ok(duration)
}

fn de_max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NonZeroUsize>, D::Error> {
    let n = Option::<NonZeroUsize>::deserialize(d)?;
    if n.is_some_and(|n| n.get() > MAX_HTTP_CONNECTIONS) {
        return Err(serde::de::Error::custom(format!(
            "at most {MAX_HTTP_CONNECTIONS}"
        )));
    }
    Ok(n)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawApprovals {
    #[serde(deserialize_with = "de_duration")]
    default_ttl: Option<Duration>,
    #[serde(deserialize_with = "de_duration")]
    sweep_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSlack {
    bot_token: Option<Secret>,
    bot_token_file: Option<Sp<PathBuf>>,
    signing_secret: Option<Secret>,
    signing_secret_file: Option<Sp<PathBuf>>,
    app_token: Option<Secret>,
    app_token_file: Option<Sp<PathBuf>>,
    socket_mode: bool,
    api_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawDiscord {
    token: Option<Secret>,
    token_file: Option<Sp<PathBuf>>,
    public_key: Option<Secret>,
    public_key_file: Option<Sp<PathBuf>>,
    application_id: Option<String>,
    api_url: Option<String>,
    mode: Option<DiscordMode>,
    guilds: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAlerts {
    webhook_token: Option<Secret>,
    webhook_token_file: Option<Sp<PathBuf>>,
    webhook_basic_auth: Option<Sp<RawBasicAuth>>,
    routes: Vec<Sp<RawAlertRoute>>,
    default_channel: Option<Sp<String>>,
    #[serde(deserialize_with = "de_duration")]
    regroup_after: Option<Duration>,
    max_new_messages_per_minute: Option<Sp<u32>>,
    alertmanagers: Vec<Sp<RawAlertmanager>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<Sp<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertRoute {
    #[serde(default)]
    matchers: Vec<Sp<String>>,
    channel: Sp<String>,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    url: Sp<String>,
    #[serde(default)]
    bearer_token: Option<Secret>,
    #[serde(default)]
    bearer_token_file: Option<Sp<PathBuf>>,
    #[serde(default)]
    basic_auth: Option<Sp<RawBasicAuth>>,
}

/// `15m`, `30s`, `1h 30m` (humantime); must be above zero.
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e} (write e.g. 30s, 15m, 1h)"
        ))
    })?;
    if duration.is_zero() {
        return Err(serde::de::Error::custom("duration must be above zero"));
    }
    Ok(Some(duration))
}

/// `HOST:PORT` with an IP address host.
fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.trim().parse().map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid listen address {text:?}: {e} (write e.g. 127.0.0.1:8080 or 0.0.0.0:8080)"
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Reads environment variables; [`std::env::var`] in production, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Loads the configuration from `path` (from `--config`), or as described in the module
    /// docs when `None`, with the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        Config::load_with_env(path, &ProcessEnv)
    }

    /// [`Config::load`] with the environment given.
    pub fn load_with_env(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigErrors> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => match env.var(CONFIG_ENV) {
                Some(p) => Some(PathBuf::from(p)),
                None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
            },
        };
        let Some(path) = path else {
            return Config::from_yaml_with_env("", None, env);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                origin: Origin::File {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                },
                message: format!("cannot read the configuration file: {e}"),
            }])
        })?;
        Config::from_yaml_with_env(&text, Some(&path), env)
    }

    /// Parses configuration YAML. `file` names it in errors and anchors relative paths (`None`:
    /// the working directory, errors say `<config>`).
    pub fn from_yaml_with_env(
        text: &str,
        file: Option<&Path>,
        env: &dyn Env,
    ) -> Result<Config, ConfigErrors> {
        let name = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<config>".to_owned());
        let raw = parse(text, &name).map_err(|e| ConfigErrors(vec![e]))?;
        let base = file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut r = Resolver {
            file: name,
            base,
            env,
            errors: Vec::new(),
        };
        let config = r.resolve(raw, file);
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// What `check-config` prints: every setting, secrets masked.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let set = |s: &Option<Secret>| {
            if s.is_some() {
                "*** (set)"
            } else {
                "(not set)"
            }
        };
        let mut out = String::new();
        let source = match &self.source {
            Some(p) => p.display().to_string(),
            None => "(none: defaults and environment)".to_owned(),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "config file:     {source}");
        let _ = writeln!(out, "data_dir:        {}", self.data_dir.display());
        let _ = writeln!(
            out,
            "database:        {}",
            describe_database_url(self.database_url.expose())
        );
        let _ = writeln!(out, "policy:          {}", self.policy.display());
        let _ = writeln!(out, "listen:          {}", self.listen);
        let _ = writeln!(
            out,
            "http:            heads within {}, bodies within {}, at most {} connections",
            humantime::format_duration(self.http.header_timeout),
            humantime::format_duration(self.http.body_timeout),
            self.http.max_connections
        );
        if self.clusters.is_empty() {
            let _ = writeln!(out, "clusters:        (none)");
        } else {
            let _ = writeln!(out, "clusters:");
            for c in &self.clusters {
                let source = match &c.source {
                    ClusterSource::InCluster => "in-cluster".to_owned(),
                    ClusterSource::Kubeconfig { path, context } => format!(
                        "kubeconfig {} context {}",
                        path.as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "(default)".to_owned()),
                        context.as_deref().unwrap_or("(current)")
                    ),
                };
                let _ = writeln!(
                    out,
                    "  - {}: {source}, default namespace {}",
                    c.name, c.default_namespace
                );
            }
        }
        if self.channels.is_empty() {
            let _ = writeln!(out, "channels:        (none)");
        } else {
            let _ = writeln!(out, "channels:");
            for (name, d) in &self.channels {
                let _ = writeln!(
                    out,
                    "  - {name}: namespace {}, cluster {}",
                    d.namespace.as_deref().unwrap_or("(default)"),
                    d.cluster.as_deref().unwrap_or("(default)")
                );
            }
        }
        let q = |q: &Quota| format!("{}/min, burst {}", q.per_minute, q.burst);
        let _ = writeln!(
            out,
            "rate limits:     per user {}",
            q(&self.rate_limits.per_user)
        );
        let _ = writeln!(
            out,
            "                 per channel {}",
            q(&self.rate_limits.per_channel)
        );
        let _ = writeln!(
            out,
            "                 global {}",
            q(&self.rate_limits.global)
        );
        let _ = writeln!(
            out,
            "approvals:       default ttl {}, sweep every {}",
            humantime::format_duration(self.approvals.default_ttl),
            humantime::format_duration(self.approvals.sweep_interval)
        );
        let _ = writeln!(
            out,
            "engine:          at most {} requests in flight, changes start within {}",
            self.engine.max_in_flight,
            humantime::format_duration(self.engine.max_command_age)
        );
        let _ = writeln!(
            out,
            "audit:           key {}, checkpoints {} every {} records or {}, posted to {}",
            self.audit.key_file.display(),
            self.audit.anchor_file.display(),
            self.audit.checkpoint_every_records,
            humantime::format_duration(self.audit.checkpoint_every),
            self.audit
                .channel
                .as_ref()
                .map_or("(no channel)".to_owned(), |c| format!(
                    "{}:{}",
                    c.platform, c.channel
                ))
        );
        let _ = writeln!(
            out,
            "slack:           bot_token {}, signing_secret {}, app_token {}, socket_mode {}, api {}",
            set(&self.slack.bot_token),
            set(&self.slack.signing_secret),
            set(&self.slack.app_token),
            self.slack.socket_mode,
            self.slack.api_url
        );
        let _ = writeln!(
            out,
            "discord:         token {}, public_key {}, application_id {}, mode {}, guilds {}, api {}",
            set(&self.discord.token),
            set(&self.discord.public_key),
            self.discord
                .application_id
                .as_deref()
                .unwrap_or("(not set)"),
            match self.discord.mode {
                DiscordMode::Http => "http",
                DiscordMode::Gateway => "gateway",
            },
            if self.discord.guilds.is_empty() {
                "(none)".to_owned()
            } else {
                self.discord.guilds.join(", ")
            },
            self.discord.api_url
        );
        let a = &self.alerts;
        let _ = writeln!(
            out,
            "alerts:          webhook_token {}, webhook_basic_auth {}, default channel {}, \
             regroup after {}, at most {} new messages/min/channel",
            set(&a.webhook_token),
            a.webhook_basic_auth
                .as_ref()
                .map(|b| format!("{} / ***", b.username))
                .unwrap_or_else(|| "(not set)".to_owned()),
            a.default_channel
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "(none)".to_owned()),
            humantime::format_duration(a.regroup_after),
            a.max_new_messages_per_minute
        );
        for r in &a.routes {
            let matchers: Vec<String> = r.matchers.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  route {{{}}} -> {}{}",
                matchers.join(", "),
                r.channel,
                if r.continue_matching {
                    " (continue)"
                } else {
                    ""
                }
            );
        }
        for am in &a.alertmanagers {
            let auth = match (&am.bearer_token, &am.basic_auth) {
                (Some(_), _) => "bearer ***".to_owned(),
                (None, Some(b)) => format!("basic {} / ***", b.username),
                (None, None) => "no auth".to_owned(),
            };
            let _ = writeln!(out, "  alertmanager {} ({auth})", mask_url(&am.url));
        }
        out
    }
}

fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    serde_saphyr::from_str::<Option<RawConfig>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|err| {
            let (line, column) = err
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let message = DefaultMessageFormatter
                .format_message(err.without_snippet())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>();
            ConfigError {
                origin: Origin::File {
                    file: file.to_owned(),
                    line,
                    column,
                },
                message: with_nearest_field(message),
            }
        })
}

/// serde's "unknown field `slak`, expected one of …" with the nearest known key named first,
/// as the policy's errors do: "unknown field `slak` (did you mean `slack`?), expected …".
fn with_nearest_field(message: String) -> String {
    let Some((typed, expected)) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    else {
        return message;
    };
    let known = expected
        .trim_start_matches(", expected one of ")
        .trim_start_matches(", expected ")
        .split(", ")
        .map(|k| k.trim_matches('`'));
    match opsbot_commands::grammar::nearest(typed, known) {
        Some(near) => format!("unknown field `{typed}` (did you mean `{near}`?){expected}"),
        None => message,
    }
}

/// Turns the file as written plus the environment into a [`Config`], collecting errors.
struct Resolver<'a> {
    file: String,
    base: PathBuf,
    env: &'a dyn Env,
    errors: Vec<ConfigError>,
}

impl Resolver<'_> {
    fn at(&mut self, loc: &Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: Origin::File {
                file: self.file.clone(),
                line: loc.line(),
                column: loc.column(),
            },
            message: message.into(),
        });
    }

    /// A namespace commands will be sent to must be one Kubernetes could have.
    fn check_namespace(&mut self, loc: &Location, whose: &str, namespace: &str) {
        if let Err(e) = opsbot_commands::grammar::check_dns(namespace, "namespace", false) {
            self.at(loc, format!("{whose}: {}", e.message));
        }
    }

    fn env_error(&mut self, var: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: Origin::Env(var.to_owned()),
            message: message.into(),
        });
    }

    /// A path from the file, anchored at the file's directory.
    fn file_path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() || self.base.as_os_str().is_empty() {
            p
        } else {
            self.base.join(p)
        }
    }

    /// Reads a secret from a file: its content without trailing whitespace / newlines.
    fn read_secret(&self, path: &Path) -> Result<Secret, String> {
        match std::fs::read_to_string(path) {
            Ok(s) if s.trim().is_empty() => Err(format!("{} is empty", path.display())),
            Ok(s) => Ok(Secret(s.trim_end().to_owned())),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Resolves one secret: `ENV` > `ENV_FILE` > `key_file` > `key`.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<Secret>,
        file: Option<Sp<PathBuf>>,
        env_var: &str,
    ) -> Option<Secret> {
        if let Some(value) = self.env.var(env_var) {
            return Some(Secret(value));
        }
        let env_file = format!("{env_var}_FILE");
        if let Some(path) = self.env.var(&env_file) {
            return match self.read_secret(Path::new(&path)) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.env_error(&env_file, e);
                    None
                }
            };
        }
        self.file_secret(key, inline, file)
    }

    /// Resolves a secret given only in the file: `key_file` > `key`.
    fn file_secret(
        &mut self,
        key: &str,
        inline: Option<Secret>,
        file: Option<Sp<PathBuf>>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(file)) => {
                self.at(
                    &file.referenced,
                    format!("set either {key} or {key}_file, not both"),
                );
                None
            }
            (Some(s), None) => Some(s),
            (None, Some(file)) => {
                let path = self.file_path(file.value);
                match self.read_secret(&path) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.at(&file.referenced, format!("{key}_file: {e}"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn resolve(&mut self, raw: RawConfig, source: Option<&Path>) -> Config {
        let data_dir = match self.env.var("OPSBOT_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => self.file_path(raw.data_dir.unwrap_or_else(|| PathBuf::from("data"))),
        };
        let database_url = self
            .secret(
                "database.url",
                raw.database.url,
                raw.database.url_file,
                "OPSBOT_DATABASE_URL",
            )
            .unwrap_or_else(|| {
                Secret(format!("sqlite://{}", data_dir.join("opsbot.db").display()))
            });
        let scheme = database_url.expose().split_once(':').map(|(s, _)| s);
        if !matches!(scheme, Some("sqlite" | "postgres" | "postgresql")) {
            let message = "database URL must start with sqlite: or postgres:// (value not shown)";
            match self.env.var("OPSBOT_DATABASE_URL") {
                Some(_) => self.env_error("OPSBOT_DATABASE_URL", message),
                None => self.errors.push(ConfigError {
                    origin: Origin::File {
                        file: self.file.clone(),
                        line: 0,
                        column: 0,
                    },
                    message: format!("database.url: {message}"),
                }),
            }
        }
        let policy = match self.env.var("OPSBOT_POLICY") {
            Some(p) => PathBuf::from(p),
            None => self.file_path(raw.policy.unwrap_or_else(|| PathBuf::from("policy.yaml"))),
        };
        let listen = match self.env.var("OPSBOT_LISTEN") {
            Some(l) => match l.trim().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(e) => {
                    self.env_error(
                        "OPSBOT_LISTEN",
                        format!("invalid address {l:?}: {e} (write e.g. 127.0.0.1:8080)"),
                    );
                    default_listen()
                }
            },
            None => raw.listen.unwrap_or_else(default_listen),
        };

        let mut clusters = Vec::new();
        let mut names = BTreeSet::new();
        for c in raw.clusters {
            let loc = c.referenced;
            let c = c.value;
            let name = c.name.value.trim().to_owned();
            if name.is_empty() {
                self.at(&c.name.referenced, "cluster name must not be empty");
            } else if !names.insert(name.clone()) {
                self.at(
                    &c.name.referenced,
                    format!("duplicate cluster name {name:?}"),
                );
            }
            let source = if c.in_cluster {
                if c.context.is_some() || c.kubeconfig.is_some() {
                    self.at(
                        &loc,
                        format!(
                            "cluster {name:?}: in_cluster: true cannot be combined with \
                             context or kubeconfig"
                        ),
                    );
                }
                ClusterSource::InCluster
            } else {
                ClusterSource::Kubeconfig {
                    path: c.kubeconfig.map(|p| self.file_path(p)),
                    context: c.context,
                }
            };
            let default_namespace = c.default_namespace.unwrap_or_else(|| "default".to_owned());
            self.check_namespace(&loc, &format!("cluster {name:?}"), &default_namespace);
            clusters.push(ClusterConfig {
                name,
                source,
                default_namespace,
            });
        }

        let mut channels = BTreeMap::new();
        for (name, ch) in raw.channels {
            let (loc, ch) = (ch.referenced, ch.value);
            if let Some(ns) = &ch.namespace {
                self.check_namespace(&loc, &format!("channel {name:?}"), ns);
            }
            let cluster = match ch.cluster {
                Some(c) => {
                    if !names.contains(&c.value) {
                        let known = if names.is_empty() {
                            "no clusters are defined".to_owned()
                        } else {
                            format!(
                                "defined: {}",
                                names.iter().cloned().collect::<Vec<_>>().join(", ")
                            )
                        };
                        self.at(
                            &c.referenced,
                            format!("channel {name:?}: unknown cluster {:?} ({known})", c.value),
                        );
                    }
                    Some(c.value)
                }
                None => None,
            };
            channels.insert(
                name,
                ChannelDefaults {
                    namespace: ch.namespace,
                    cluster,
                },
            );
        }

        let defaults = ApprovalDefaults::default();
        let approvals = ApprovalDefaults {
            default_ttl: raw.approvals.default_ttl.unwrap_or(defaults.default_ttl),
            sweep_interval: raw
                .approvals
                .sweep_interval
                .unwrap_or(defaults.sweep_interval),
        };

        let defaults = EngineLimits::default();
        let engine = EngineLimits {
            max_in_flight: raw
                .engine
                .max_in_flight
                .unwrap_or(defaults.max_in_flight)
                .max(1),
            max_command_age: raw
                .engine
                .max_command_age
                .unwrap_or(defaults.max_command_age),
        };

        let defaults = HttpLimits::default();
        let http = HttpLimits {
            header_timeout: raw.http.header_timeout.unwrap_or(defaults.header_timeout),
            body_timeout: raw.http.body_timeout.unwrap_or(defaults.body_timeout),
            max_connections: raw
                .http
                .max_connections
                .map_or(defaults.max_connections, NonZeroUsize::get),
        };

        let s = raw.slack;
        let slack = SlackConfig {
            bot_token: self.secret(
                "slack.bot_token",
                s.bot_token,
                s.bot_token_file,
                "OPSBOT_SLACK_BOT_TOKEN",
            ),
            signing_secret: self.secret(
                "slack.signing_secret",
                s.signing_secret,
                s.signing_secret_file,
                "OPSBOT_SLACK_SIGNING_SECRET",
            ),
            app_token: self.secret(
                "slack.app_token",
                s.app_token,
                s.app_token_file,
                "OPSBOT_SLACK_APP_TOKEN",
            ),
            socket_mode: s.socket_mode,
            api_url: s
                .api_url
                .unwrap_or_else(|| "https://slack.com/api".to_owned()),
        };
        let d = raw.discord;
        let discord = DiscordConfig {
            token: self.secret(
                "discord.token",
                d.token,
                d.token_file,
                "OPSBOT_DISCORD_TOKEN",
            ),
            public_key: self.secret(
                "discord.public_key",
                d.public_key,
                d.public_key_file,
                "OPSBOT_DISCORD_PUBLIC_KEY",
            ),
            application_id: self
                .env
                .var("OPSBOT_DISCORD_APPLICATION_ID")
                .or(d.application_id),
            api_url: d
                .api_url
                .unwrap_or_else(|| "https://discord.com/api/v10".to_owned()),
            mode: match self.env.var("OPSBOT_DISCORD_MODE") {
                Some(m) => match m.trim() {
                    "http" => DiscordMode::Http,
                    "gateway" => DiscordMode::Gateway,
                    other => {
                        self.env_error(
                            "OPSBOT_DISCORD_MODE",
                            format!("unknown mode {other:?} (write http or gateway)"),
                        );
                        DiscordMode::Http
                    }
                },
                None => d.mode.unwrap_or_default(),
            },
            guilds: match self.env.var("OPSBOT_DISCORD_GUILDS") {
                Some(list) => list
                    .split(',')
                    .map(|g| g.trim().to_owned())
                    .filter(|g| !g.is_empty())
                    .collect(),
                None => d.guilds,
            },
        };
        let audit = AuditConfig {
            key_file: match self.env.var("OPSBOT_AUDIT_KEY_FILE") {
                Some(p) => PathBuf::from(p),
                None => raw
                    .audit
                    .key_file
                    .map(|p| self.file_path(p))
                    .unwrap_or_else(|| data_dir.join("audit.key")),
            },
            anchor_file: raw
                .audit
                .anchor_file
                .map(|p| self.file_path(p))
                .unwrap_or_else(|| data_dir.join("audit.anchors")),
            checkpoint_every_records: raw.audit.checkpoint_every_records.map_or(100, |n| n.get()),
            checkpoint_every: raw
                .audit
                .checkpoint_every
                .unwrap_or(Duration::from_secs(10)),
            channel: raw.audit.channel.and_then(|c| {
                let parsed = c.value.split_once(':').and_then(|(platform, channel)| {
                    let (platform, channel) = (platform.trim(), channel.trim());
                    (!platform.is_empty() && !channel.is_empty()).then(|| AuditChannel {
                        platform: platform.to_owned(),
                        channel: channel.to_owned(),
                    })
                });
                if parsed.is_none() {
                    self.at(
                        &c.referenced,
                        format!(
                            "audit.channel {:?} is not PLATFORM:CHANNEL (write e.g. slack:C0AUDIT)",
                            c.value
                        ),
                    );
                }
                parsed
            }),
        };
        let alerts = self.alerts(raw.alerts);
        let incidents = self.incidents(raw.incidents);

        Config {
            source: source.map(Path::to_path_buf),
            data_dir,
            database_url,
            policy,
            clusters,
            channels,
            rate_limits: raw.rate_limits,
            approvals,
            engine,
            listen,
            http,
            slack,
            discord,
            alerts,
            audit,
            incidents,
        }
    }

    fn subjects(&mut self, key: &str, raw: &[Sp<String>]) -> Vec<Subject> {
        let mut out = Vec::new();
        for s in raw {
            match Subject::parse(s.value.trim()) {
                Ok(subject) => out.push(subject),
                Err(e) => self.at(&s.referenced, format!("{key}: {e}")),
            }
        }
        out
    }

    fn incidents(&mut self, raw: RawIncidents) -> IncidentsConfig {
        let announce_channel = raw.announce_channel.as_ref().and_then(|c| {
            AlertChannel::parse(&c.value)
                .map_err(|e| self.at(&c.referenced, format!("incidents.announce_channel: {e}")))
                .ok()
        });
        let mut config = IncidentsConfig {
            announce_channel,
            discord_category: raw.discord_category,
            discord_archive_category: raw.discord_archive_category,
            ..IncidentsConfig::default()
        };
        if let Some(every) = raw.sweep_interval {
            config.sweep_interval = every;
        }
        for (name, plan) in raw.severities {
            let Some(severity) = Severity::parse(&name) else {
                self.at(
                    &plan.referenced,
                    format!("incidents.severities: unknown severity {name:?} (P1, P2, P3 or P4)"),
                );
                continue;
            };
            let key = format!("incidents.severities.{severity}");
            let raw = plan.value;
            let defaults = SeverityPlan::default_for(severity);
            let mut escalation = Vec::new();
            for step in raw.escalation {
                let step = step.value;
                escalation.push(EscalationStep {
                    after: step.after.unwrap_or_default(),
                    notify: self.subjects(&format!("{key}.escalation.notify"), &step.notify),
                    page: step.page,
                });
            }
            let plan = SeverityPlan {
                description: raw.description.unwrap_or(defaults.description),
                responders: self.subjects(&format!("{key}.responders"), &raw.responders),
                ack_within: raw.ack_within.unwrap_or(defaults.ack_within),
                escalation,
                remind_every: raw.remind_every.unwrap_or(defaults.remind_every),
            };
            config.severities.insert(severity, plan);
        }
        if let Some(pd) = raw.pagerduty {
            let (at, pd) = (pd.referenced, pd.value);
            let key = self.secret(
                "incidents.pagerduty.routing_key",
                pd.routing_key,
                pd.routing_key_file,
                "OPSBOT_PAGERDUTY_ROUTING_KEY",
            );
            match key {
                Some(routing_key) => {
                    config.pagerduty = Some(PagerDutyConfig {
                        url: pd
                            .url
                            .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into()),
                        routing_key,
                    })
                }
                None => self.at(
                    &at,
                    "incidents.pagerduty needs routing_key or routing_key_file",
                ),
            }
        }
        let pages = config
            .severities
            .values()
            .any(|p| p.escalation.iter().any(|s| s.page));
        if pages && config.pagerduty.is_none() {
            self.errors.push(ConfigError {
                origin: Origin::File {
                    file: self.file.clone(),
                    line: 0,
                    column: 0,
                },
                message: "incidents: an escalation step has `page: true` but incidents.pagerduty                           is not configured"
                    .to_owned(),
            });
        }
        config
    }

    fn basic_auth(&mut self, key: &str, raw: Option<Sp<RawBasicAuth>>) -> Option<BasicAuth> {
        let raw = raw?;
        let (loc, b) = (raw.referenced, raw.value);
        let key = format!("{key}.password");
        let Some(password) = self.file_secret(&key, b.password, b.password_file) else {
            self.at(&loc, format!("{key} or {key}_file is required"));
            return None;
        };
        Some(BasicAuth {
            username: b.username,
            password,
        })
    }

    fn alert_channel(&mut self, raw: &Sp<String>) -> Option<AlertChannel> {
        AlertChannel::parse(&raw.value)
            .map_err(|e| self.at(&raw.referenced, format!("alerts: {e}")))
            .ok()
    }

    fn alerts(&mut self, raw: RawAlerts) -> AlertsConfig {
        let defaults = AlertsConfig::default();
        let webhook_token = self.secret(
            "alerts.webhook_token",
            raw.webhook_token,
            raw.webhook_token_file,
            "OPSBOT_ALERTS_WEBHOOK_TOKEN",
        );
        let webhook_basic_auth =
            self.basic_auth("alerts.webhook_basic_auth", raw.webhook_basic_auth);
        let routed = raw.routes.first().map(|r| r.referenced);
        if let Some(at) = routed.or(raw.default_channel.as_ref().map(|c| c.referenced))
            && webhook_token.is_none()
            && webhook_basic_auth.is_none()
        {
            self.at(
                &at,
                "alerts: routes need webhook credentials: set alerts.webhook_token(_file) or \
                 alerts.webhook_basic_auth (the webhook refuses requests without them)",
            );
        }
        let mut routes = Vec::new();
        for route in raw.routes {
            let r = route.value;
            let mut matchers = Vec::new();
            for m in &r.matchers {
                match crate::alerts::matcher::parse(&m.value) {
                    Ok(list) => matchers.extend(list),
                    Err(e) => self.at(
                        &m.referenced,
                        format!("alerts.routes: {e} in {:?}", m.value),
                    ),
                }
            }
            if let Some(channel) = self.alert_channel(&r.channel) {
                routes.push(AlertRoute {
                    matchers,
                    channel,
                    continue_matching: r.continue_matching,
                });
            }
        }
        let default_channel = raw
            .default_channel
            .as_ref()
            .and_then(|c| self.alert_channel(c));
        let max_new_messages_per_minute = match raw.max_new_messages_per_minute {
            Some(n) if n.value == 0 => {
                self.at(
                    &n.referenced,
                    "alerts.max_new_messages_per_minute must be above zero",
                );
                defaults.max_new_messages_per_minute
            }
            Some(n) => n.value,
            None => defaults.max_new_messages_per_minute,
        };
        let mut alertmanagers = Vec::new();
        for am in raw.alertmanagers {
            let am = am.value;
            let url = am.url.value.trim().trim_end_matches('/').to_owned();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                self.at(
                    &am.url.referenced,
                    format!(
                        "alerts.alertmanagers: url {url:?} must start with http:// or https://"
                    ),
                );
                continue;
            }
            let bearer_token = self.file_secret(
                "alerts.alertmanagers.bearer_token",
                am.bearer_token,
                am.bearer_token_file,
            );
            let basic_auth = self.basic_auth("alerts.alertmanagers.basic_auth", am.basic_auth);
            alertmanagers.push(AlertmanagerApi {
                url,
                bearer_token,
                basic_auth,
            });
        }
        AlertsConfig {
            webhook_token,
            webhook_basic_auth,
            routes,
            default_channel,
            regroup_after: raw.regroup_after.unwrap_or(defaults.regroup_after),
            max_new_messages_per_minute,
            alertmanagers,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for Config {
    /// The configuration of an empty file with an empty environment.
    fn default() -> Self {
        let empty: BTreeMap<String, String> = BTreeMap::new();
        // An empty document with no environment has no way to fail.
        Config::from_yaml_with_env("", None, &empty).unwrap_or_else(|e| {
            unreachable!("the empty configuration is valid: {e}");
        })
    }
}
