//! The Discord adapter: signed interactions over HTTP (or the gateway) in, embeds out.
//!
//! - [`verify`]: Ed25519 interaction signatures and timestamp freshness, before any parsing.
//! - [`http`]: the axum route `POST /discord/interactions`.
//! - [`gateway`]: gateway mode (a WebSocket, no public URL), feeding the same dispatcher.
//! - [`dispatch`]: what HTTP and the gateway share: ack at once (deferred), run the pipeline in
//!   a spawned task, guild allow-list, identity and roles, repeated deliveries, autocomplete.
//! - [`commands`]: the `/ops` application command generated from the command declarations,
//!   its registration, the install URL, and autocomplete from the clusters.
//! - [`render`]: `Reply` → embeds and buttons; [`rest`]: the REST API with Discord's rate
//!   limits; [`sink`]: [`DiscordSink`] (deferred responses, ephemeral follow-ups, edits);
//!   [`channels`]: incident channels (create, topic, invite, pin, archive) and mentions.
//!
//! Wiring for `opsbot serve`: `discord::router(engine, &cfg)` merged into the server's router
//! (HTTP mode; also registers the sink), or `discord::run_gateway(engine, cfg, stop)`.

pub mod channels;
pub mod commands;
pub mod dispatch;
pub mod gateway;
pub mod http;
pub mod render;
pub mod rest;
pub mod sink;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use crate::chat::Platform;
use crate::engine::Engine;
use crate::slack::{Pipeline, RetryPolicy};

pub use dispatch::Dispatcher;
pub use sink::{DiscordSink, Interactions};
pub use verify::Verifier;

/// The platform name in invocations, message references and the audit log.
pub const PLATFORM: Platform = "discord";

/// Discord's REST API.
pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";

/// How interactions reach opsbot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Discord POSTs them to `/discord/interactions` (needs a public HTTPS URL).
    #[default]
    Http,
    /// opsbot keeps a WebSocket to Discord's gateway (no public URL needed).
    Gateway,
}

/// Everything the Discord adapter needs. Secrets are plain strings here; `Debug` masks them.
#[derive(Clone)]
pub struct DiscordConfig {
    /// The bot token, for the REST API and the gateway.
    pub token: String,
    /// The application's Ed25519 public key (hex), for HTTP interactions.
    pub public_key: String,
    pub application_id: String,
    /// REST base URL without trailing slash (a fake in tests).
    pub api_url: String,
    pub mode: Mode,
    /// The guild (server) ids served; interactions from elsewhere are refused.
    pub guilds: Vec<String>,
    pub retry: RetryPolicy,
    /// At most one edit of a message per this interval (progress updates).
    pub update_interval: Duration,
    /// How long an interaction token is used (Discord accepts it for 15 minutes).
    pub interaction_lifetime: Duration,
    /// How long autocomplete waits for the cluster (Discord allows 3 s for the whole answer).
    pub autocomplete_timeout: Duration,
    /// The category incident channels are created in (`incidents.discord_category`).
    pub incident_category: Option<String>,
    /// The category closed incidents' channels move to (`incidents.discord_archive_category`).
    pub archive_category: Option<String>,
    /// Gateway mode: also ask for the `GUILD_MESSAGE_REACTIONS` intent and hand reactions in
    /// served guilds to the engine (incident timelines). Set by [`DiscordConfig::with_incidents`].
    pub reactions: bool,
}

impl DiscordConfig {
    /// A configuration with the defaults: Discord's API, HTTP mode, one edit per second.
    pub fn new(
        token: impl Into<String>,
        public_key: impl Into<String>,
        application_id: impl Into<String>,
    ) -> Self {
        DiscordConfig {
            token: token.into(),
            public_key: public_key.into(),
            application_id: application_id.into(),
            api_url: DEFAULT_API_URL.to_owned(),
            mode: Mode::Http,
            guilds: Vec::new(),
            retry: RetryPolicy::default(),
            update_interval: Duration::from_secs(1),
            interaction_lifetime: sink::TOKEN_LIFETIME,
            autocomplete_timeout: Duration::from_millis(1500),
            incident_category: None,
            archive_category: None,
            reactions: false,
        }
    }

    /// Incidents on Discord: channels are created in `category` and archived into
    /// `archive_category`. Incidents are in use on Discord when `category` is set: then the
    /// gateway also receives reactions (📌 marks a message for the timeline).
    pub fn with_incidents(
        mut self,
        category: Option<String>,
        archive_category: Option<String>,
    ) -> Self {
        self.reactions = category.is_some();
        self.incident_category = category;
        self.archive_category = archive_category;
        self
    }

    /// From the `discord:` section of `opsbot.yaml`; `None` when Discord is not configured.
    pub fn from_config(c: &crate::config::DiscordConfig) -> Option<DiscordConfig> {
        if !c.is_configured() {
            return None;
        }
        let expose = |s: &Option<crate::config::Secret>| {
            s.as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default()
        };
        let mut cfg = DiscordConfig::new(
            expose(&c.token),
            expose(&c.public_key),
            c.application_id.clone().unwrap_or_default(),
        )
        .with_api_url(&c.api_url);
        cfg.mode = match c.mode {
            crate::config::DiscordMode::Http => Mode::Http,
            crate::config::DiscordMode::Gateway => Mode::Gateway,
        };
        cfg.guilds = c.guilds.clone();
        Some(cfg)
    }

    pub fn with_api_url(mut self, api_url: &str) -> Self {
        self.api_url = api_url.trim_end_matches('/').to_owned();
        self
    }

    /// Checks that the mode chosen has what it needs: a bot token and application id always;
    /// a valid public key for HTTP mode; at least one guild; an http(s) API URL.
    pub fn validate(&self) -> Result<(), DiscordError> {
        if self.token.trim().is_empty() {
            return Err(DiscordError::Missing("discord.token"));
        }
        if !is_snowflake(&self.application_id) {
            return Err(DiscordError::Missing("discord.application_id"));
        }
        if self.mode == Mode::Http {
            Verifier::new(&self.public_key).map_err(|e| DiscordError::PublicKey(e.to_string()))?;
        }
        if self.guilds.is_empty() {
            return Err(DiscordError::Missing("discord.guilds"));
        }
        if let Some(g) = self.guilds.iter().find(|g| !is_snowflake(g)) {
            return Err(DiscordError::BadGuild(g.clone()));
        }
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            return Err(DiscordError::BadApiUrl(self.api_url.clone()));
        }
        for (key, id) in [
            ("incidents.discord_category", &self.incident_category),
            ("incidents.discord_archive_category", &self.archive_category),
        ] {
            if let Some(id) = id.as_ref().filter(|id| !is_snowflake(id)) {
                return Err(DiscordError::BadCategory(key, id.clone()));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |s: &str| if s.is_empty() { "" } else { "***" };
        f.debug_struct("DiscordConfig")
            .field("token", &mask(&self.token))
            .field("public_key", &mask(&self.public_key))
            .field("application_id", &self.application_id)
            .field("api_url", &self.api_url)
            .field("mode", &self.mode)
            .field("guilds", &self.guilds)
            .field("retry", &self.retry)
            .field("update_interval", &self.update_interval)
            .field("interaction_lifetime", &self.interaction_lifetime)
            .field("autocomplete_timeout", &self.autocomplete_timeout)
            .field("incident_category", &self.incident_category)
            .field("archive_category", &self.archive_category)
            .field("reactions", &self.reactions)
            .finish()
    }
}

/// Discord ids (users, guilds, channels, roles, interactions) are decimal snowflakes.
pub fn is_snowflake(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Errors starting the Discord adapter.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("Discord is configured without {0}")]
    Missing(&'static str),
    #[error("{0}")]
    PublicKey(String),
    #[error("discord.guilds: {0:?} is not a guild id (a number)")]
    BadGuild(String),
    #[error("discord.api_url must be an http(s) URL, not {0:?}")]
    BadApiUrl(String),
    #[error("{0}: {1:?} is not a Discord category id (a number)")]
    BadCategory(&'static str, String),
    #[error("Discord gateway: {0}")]
    Gateway(String),
}

/// HTTP mode: registers a [`DiscordSink`] for `discord` on the engine and returns the route
/// (`POST /discord/interactions`) to merge into the server.
pub fn router(engine: Engine, cfg: &DiscordConfig) -> Result<axum::Router, DiscordError> {
    let sink = DiscordSink::new(cfg, Interactions::new(cfg.interaction_lifetime));
    engine.register_sink(PLATFORM, Arc::new(sink.clone()));
    let names = Arc::new(commands::ClusterNames::new(
        engine.operator().clone(),
        cfg.autocomplete_timeout,
    ));
    router_with(Arc::new(engine), sink, names, cfg)
}

/// Gateway mode: registers a [`DiscordSink`] for `discord` on the engine and receives
/// interactions over the gateway until `stop` resolves.
pub async fn run_gateway(
    engine: Engine,
    cfg: DiscordConfig,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DiscordError> {
    let sink = DiscordSink::new(&cfg, Interactions::new(cfg.interaction_lifetime));
    engine.register_sink(PLATFORM, Arc::new(sink.clone()));
    let names = Arc::new(commands::ClusterNames::new(
        engine.operator().clone(),
        cfg.autocomplete_timeout,
    ));
    let reactions: Arc<dyn crate::chat::ReactionObserver> =
        Arc::new(EngineReactions(engine.clone()));
    let dispatcher = Dispatcher::new(Arc::new(engine), sink.clone(), &cfg.guilds, names);
    gateway::run(Arc::new(dispatcher), sink, cfg, Some(reactions), stop).await
}

/// Reactions from the gateway, for the engine (which hands them to the incidents service).
struct EngineReactions(Engine);

#[async_trait::async_trait]
impl crate::chat::ReactionObserver for EngineReactions {
    async fn reaction(&self, reaction: crate::chat::Reaction) {
        self.0.reaction(reaction).await;
    }
}

/// The route on any [`Pipeline`] and name source; `sink` must be the one the pipeline answers
/// through (the dispatcher records interactions in it).
pub fn router_with(
    pipeline: Arc<dyn Pipeline>,
    sink: DiscordSink,
    names: Arc<dyn commands::NameSource>,
    cfg: &DiscordConfig,
) -> Result<axum::Router, DiscordError> {
    let verifier =
        Verifier::new(&cfg.public_key).map_err(|e| DiscordError::PublicKey(e.to_string()))?;
    let dispatcher = Dispatcher::new(pipeline, sink, &cfg.guilds, names);
    Ok(http::routes(Arc::new(dispatcher), verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DiscordConfig {
        let key = verify::TestSigner::from_seed([1; 32]).public_key_hex();
        let mut cfg = DiscordConfig::new("bot-token", key, "1100");
        cfg.guilds = vec!["2200".into()];
        cfg
    }

    #[test]
    fn validation_names_what_is_missing() {
        assert!(valid().validate().is_ok());
        let mut c = valid();
        c.token = " ".into();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "Discord is configured without discord.token"
        );
        let mut c = valid();
        c.application_id = "abc".into();
        assert!(matches!(c.validate(), Err(DiscordError::Missing(_))));
        let mut c = valid();
        c.public_key = "00".into();
        assert!(matches!(c.validate(), Err(DiscordError::PublicKey(_))));
        c.mode = Mode::Gateway;
        assert!(c.validate().is_ok(), "the gateway needs no public key");
        let mut c = valid();
        c.guilds.clear();
        assert!(matches!(
            c.validate(),
            Err(DiscordError::Missing("discord.guilds"))
        ));
        c.guilds = vec!["my-server".into()];
        assert!(matches!(c.validate(), Err(DiscordError::BadGuild(_))));
        let c = valid().with_api_url("discord.com/api");
        assert!(matches!(c.validate(), Err(DiscordError::BadApiUrl(_))));
        let c = valid().with_incidents(Some("Incidents".into()), None);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "incidents.discord_category: \"Incidents\" is not a Discord category id (a number)"
        );
        let c = valid().with_incidents(Some("7".into()), Some("#archive".into()));
        assert!(matches!(
            c.validate(),
            Err(DiscordError::BadCategory(
                "incidents.discord_archive_category",
                _
            ))
        ));
    }

    #[test]
    fn incidents_in_a_category_turn_reactions_on() {
        assert!(!valid().reactions);
        let c = valid().with_incidents(None, Some("8".into()));
        assert!(!c.reactions && c.archive_category.as_deref() == Some("8"));
        let c = valid().with_incidents(Some("7".into()), Some("8".into()));
        assert!(c.reactions && c.validate().is_ok());
        assert_eq!(c.incident_category.as_deref(), Some("7"));
    }

    #[test]
    fn debug_masks_secrets() {
        let mut c = valid().with_api_url("http://127.0.0.1:9/api/");
        c.token = "bot-token-never-shown".into();
        let s = format!("{c:?}");
        assert!(
            !s.contains("never-shown") && !s.contains(&valid().public_key),
            "{s}"
        );
        assert!(s.contains("http://127.0.0.1:9/api\""), "{s}");
    }
}

#[cfg(test)]
mod log_tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::chat::ChatSink;

    const BOT_TOKEN: &str = "bot-1111-never-log-me";
    const INTERACTION_TOKEN: &str = "interaction-2222-never-log-me";

    /// Refusals, retries, a deferred response withdrawn and a private reply, every log level
    /// on: neither the bot token nor an interaction token shows up.
    #[test]
    fn tokens_never_reach_the_logs() {
        let ((), logs) = crate::log_capture::capture(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // Webhook routes: Unknown interaction; channel routes: 500 every time.
                let api = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
                    if uri.path().contains("/webhooks/") {
                        (
                            axum::http::StatusCode::NOT_FOUND,
                            axum::Json(serde_json::json!({"code": 10062, "message": "Unknown interaction"})),
                        )
                            .into_response()
                    } else {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                });
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move { axum::serve(listener, api).await });

                let mut cfg = DiscordConfig::new(BOT_TOKEN, "", "11")
                    .with_api_url(&format!("http://{addr}/api/v10"));
                cfg.retry.max_attempts = 2;
                cfg.retry.base_backoff = Duration::from_millis(1);
                tracing::info!(config = ?cfg, "Discord configured");
                let sink = DiscordSink::new(&cfg, Interactions::new(cfg.interaction_lifetime));
                let reply = opsbot_commands::Reply::ok("x");
                assert!(sink.post("31", &reply).await.is_err());
                sink.interactions().deferred("41", INTERACTION_TOKEN);
                tracing::debug!(interactions = ?sink.interactions(), "registry");
                let user = opsbot_policies::Subject::parse("discord:5").unwrap();
                assert!(sink.post_private("31", &user, Some("41"), &reply).await.is_err());
                sink.interactions().deferred("42", INTERACTION_TOKEN);
                assert!(sink.answer("31", Some("42"), &reply).await.is_err());
            });
        });
        for expected in [
            "create_message",
            "Unknown interaction",
            "Discord configured",
            "HTTP 500",
        ] {
            assert!(logs.contains(expected), "{expected} not logged:\n{logs}");
        }
        for secret in [BOT_TOKEN, INTERACTION_TOKEN] {
            assert!(!logs.contains(&secret[5..]), "{secret} logged:\n{logs}");
        }
    }
}
