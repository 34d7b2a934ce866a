//! The Slack adapter: signed HTTP endpoints or Socket Mode in, Block Kit out.
//!
//! - [`verify`]: request signatures (v0), checked before anything is parsed.
//! - [`http`]: the axum routes `/slack/commands`, `/slack/interactions`, `/slack/events`.
//! - [`socket`]: Socket Mode (no public URL needed), feeding the same handlers.
//! - [`dispatch`]: what both share: ack at once, then run the pipeline in a spawned task.
//! - [`groups`]: Slack user groups → `slack-group:` subjects, cached.
//! - [`render`]: `Reply` → Block Kit; [`web`]: the Web API with retries; [`sink`]: [`SlackSink`].
//!
//! Wiring for `opsbot serve`: `slack::router(engine, &cfg)` (HTTP mode; also registers the
//! sink) merged into the server's router, or `slack::socket::run(engine, cfg, shutdown)` for
//! Socket Mode.

pub mod dispatch;
pub mod groups;
pub mod http;
pub mod render;
pub mod response_url;
pub mod sink;
pub mod socket;
pub mod verify;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::chat::{AlertClick, Membership, Platform};
use crate::engine::{Engine, Inbound, Refusal, RejectionKind};

pub use dispatch::Dispatcher;
pub use sink::SlackSink;
pub use verify::Verifier;
pub use web::SlackWeb;

/// The platform name in invocations, message references and the audit log.
pub const PLATFORM: Platform = "slack";

/// Slack's public Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Everything the Slack adapter needs. Secrets are plain strings here; `Debug` masks them.
#[derive(Clone)]
pub struct SlackConfig {
    /// Bot token (`xoxb-…`) for the Web API.
    pub bot_token: String,
    /// Signing secret for the HTTP endpoints.
    pub signing_secret: String,
    /// App-level token (`xapp-…`) for Socket Mode.
    pub app_token: Option<String>,
    /// Web API base URL without trailing slash (a fake in tests).
    pub api_url: String,
    /// Use Socket Mode instead of the HTTP endpoints.
    pub socket_mode: bool,
    /// How long user-group memberships are cached.
    pub group_cache_ttl: Duration,
    /// Retries of Web API calls.
    pub retry: RetryPolicy,
    /// At most one edit of a message per this interval (progress updates).
    pub update_interval: Duration,
    /// How long a slash command's `response_url` is used (Slack accepts it for 30 minutes).
    pub response_url_ttl: Duration,
}

impl SlackConfig {
    /// A configuration with the defaults: Slack's API, HTTP mode, 5-minute group cache,
    /// 5 attempts per Web API call, one edit per second per message.
    pub fn new(bot_token: impl Into<String>, signing_secret: impl Into<String>) -> Self {
        SlackConfig {
            bot_token: bot_token.into(),
            signing_secret: signing_secret.into(),
            app_token: None,
            api_url: DEFAULT_API_URL.to_owned(),
            socket_mode: false,
            group_cache_ttl: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            update_interval: Duration::from_secs(1),
            response_url_ttl: response_url::TTL,
        }
    }

    /// From the `slack:` section of `opsbot.yaml`; `None` when Slack is not configured there.
    pub fn from_config(c: &crate::config::SlackConfig) -> Option<SlackConfig> {
        if !c.is_configured() {
            return None;
        }
        let expose = |s: &Option<crate::config::Secret>| {
            s.as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default()
        };
        let mut cfg = SlackConfig::new(expose(&c.bot_token), expose(&c.signing_secret))
            .with_api_url(c.api_url.clone());
        cfg.app_token = c.app_token.as_ref().map(|s| s.expose().to_owned());
        cfg.socket_mode = c.socket_mode;
        Some(cfg)
    }

    /// Checks that the mode chosen has what it needs: a bot token always; a signing secret for
    /// HTTP mode (without one no request could be verified); an app-level token for Socket Mode.
    pub fn validate(&self) -> Result<(), SlackError> {
        if self.bot_token.trim().is_empty() {
            return Err(SlackError::Missing("slack.bot_token"));
        }
        if self.socket_mode {
            if self
                .app_token
                .as_deref()
                .is_none_or(|t| t.trim().is_empty())
            {
                return Err(SlackError::MissingAppToken);
            }
        } else if self.signing_secret.trim().is_empty() {
            return Err(SlackError::Missing("slack.signing_secret"));
        }
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            return Err(SlackError::BadApiUrl(self.api_url.clone()));
        }
        Ok(())
    }

    pub fn with_api_url(mut self, api_url: impl Into<String>) -> Self {
        self.api_url = api_url.into().trim_end_matches('/').to_owned();
        self
    }

    pub fn with_app_token(mut self, app_token: impl Into<String>) -> Self {
        self.app_token = Some(app_token.into());
        self
    }
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |s: &str| if s.is_empty() { "" } else { "***" };
        f.debug_struct("SlackConfig")
            .field("bot_token", &mask(&self.bot_token))
            .field("signing_secret", &mask(&self.signing_secret))
            .field("app_token", &self.app_token.as_deref().map(mask))
            .field("api_url", &self.api_url)
            .field("socket_mode", &self.socket_mode)
            .field("group_cache_ttl", &self.group_cache_ttl)
            .field("retry", &self.retry)
            .field("update_interval", &self.update_interval)
            .field("response_url_ttl", &self.response_url_ttl)
            .finish()
    }
}

/// How Web API calls are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// The first backoff; doubled for every further attempt.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; longer ones wait this long.
    pub max_retry_after: Duration,
    /// How long one attempt may take before it counts as failed (and is retried): a Slack
    /// that does not answer must not hold a reply, and what waits on it, forever.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors starting the Slack adapter.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("Socket Mode needs an app-level token (slack.app_token)")]
    MissingAppToken,
    #[error("Slack is configured without {0}")]
    Missing(&'static str),
    #[error("slack.api_url must be an http(s) URL, not {0:?}")]
    BadApiUrl(String),
    #[error("Socket Mode connection failed: {0}")]
    SocketMode(String),
}

/// What the adapter hands requests to: the engine in production, a double in tests of this
/// layer alone.
#[async_trait]
pub trait Pipeline: Send + Sync + 'static {
    /// Takes a request durably (see [`Engine::accept`]): `Ok` only once it is on disk, and
    /// then it is answered in the background, with the person's groups from `groups`.
    async fn take(
        &self,
        inbound: Inbound,
        groups: BoxFuture<'static, Membership>,
    ) -> Result<(), Refusal>;
    /// Tells the person behind a request that was not taken why, privately.
    async fn tell_refused(&self, inbound: &Inbound, refusal: Refusal);
    async fn reject(&self, platform: Platform, kind: RejectionKind, detail: &str);
    /// A click on an alert message's button (Silence, Ack, Expire): recorded durably before
    /// this returns, then handled in the background with the clicker's groups from `groups`
    /// (see [`Engine::take_alert_click`]).
    async fn take_alert_click(&self, click: AlertClick, groups: BoxFuture<'static, Membership>) {
        drop(groups);
        tracing::warn!(action = %click.action, "alert button clicked but not handled here");
    }
    /// A reaction added to a message (see [`Engine::reaction`]).
    async fn reaction(&self, reaction: crate::chat::Reaction) {
        let _ = reaction;
    }
    /// Runs background work (the engine tracks it, so a graceful shutdown waits for it).
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        tokio::spawn(work);
    }
    /// Reports what is wrong with the connection to Slack (`None`: nothing any more).
    fn set_trouble(&self, trouble: Option<String>) {
        let _ = trouble;
    }
}

#[async_trait]
impl Pipeline for Engine {
    async fn take(
        &self,
        inbound: Inbound,
        groups: BoxFuture<'static, Membership>,
    ) -> Result<(), Refusal> {
        let ticket = self.accept(&inbound).await?;
        let engine = self.clone();
        self.spawn(async move {
            let inbound = inbound.with_groups(groups.await);
            engine.run(ticket, inbound).await
        });
        Ok(())
    }
    async fn tell_refused(&self, inbound: &Inbound, refusal: Refusal) {
        Engine::tell_refused(self, inbound, refusal).await
    }
    async fn reaction(&self, reaction: crate::chat::Reaction) {
        Engine::reaction(self, reaction).await
    }
    async fn reject(&self, platform: Platform, kind: RejectionKind, detail: &str) {
        Engine::reject(self, platform, kind, detail).await
    }
    async fn take_alert_click(&self, click: AlertClick, groups: BoxFuture<'static, Membership>) {
        Engine::take_alert_click(self, click, groups).await;
    }
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        Engine::spawn(self, work)
    }
    fn set_trouble(&self, trouble: Option<String>) {
        Engine::set_trouble(self, PLATFORM, trouble)
    }
}

/// Test doubles of the pipeline.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Takes everything and does nothing with it.
    pub struct Nop;

    #[async_trait]
    impl Pipeline for Nop {
        async fn take(&self, _: Inbound, _: BoxFuture<'static, Membership>) -> Result<(), Refusal> {
            Ok(())
        }
        async fn tell_refused(&self, _: &Inbound, _: Refusal) {}
        async fn reject(&self, _: Platform, _: RejectionKind, _: &str) {}
    }
}

/// HTTP mode: registers a [`SlackSink`] for `slack` on the engine and returns the routes
/// (`POST /slack/commands`, `/slack/interactions`, `/slack/events`) to merge into the server.
pub fn router(engine: Engine, cfg: &SlackConfig) -> axum::Router {
    let sink = SlackSink::new(cfg);
    engine.register_sink(PLATFORM, Arc::new(sink.clone()));
    router_with(Arc::new(engine), sink.web().clone(), cfg)
}

/// The routes on any [`Pipeline`]; `web` is used for user-group lookups, and the slash
/// commands' `response_url`s are remembered in its store (shared with the sink built on it).
pub fn router_with(pipeline: Arc<dyn Pipeline>, web: SlackWeb, cfg: &SlackConfig) -> axum::Router {
    let response_urls = web.response_urls().clone();
    let dispatcher = Arc::new(
        Dispatcher::new(pipeline, Arc::new(web), cfg.group_cache_ttl)
            .with_response_urls(response_urls),
    );
    http::routes(dispatcher, Verifier::new(&cfg.signing_secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_what_is_missing() {
        assert!(SlackConfig::new("xoxb", "sig").validate().is_ok());
        let err = SlackConfig::new("", "sig").validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Slack is configured without slack.bot_token"
        );
        let err = SlackConfig::new("xoxb", " ").validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Slack is configured without slack.signing_secret"
        );
        let mut socket = SlackConfig::new("xoxb", "");
        socket.socket_mode = true;
        assert!(matches!(
            socket.validate(),
            Err(SlackError::MissingAppToken)
        ));
        assert!(socket.with_app_token("xapp-1").validate().is_ok());
        let bad = SlackConfig::new("xoxb", "sig").with_api_url("slack.com/api");
        assert!(matches!(bad.validate(), Err(SlackError::BadApiUrl(_))));
    }

    #[test]
    fn debug_masks_secrets() {
        let cfg = SlackConfig::new("xoxb-123-secret", "signing-secret-456")
            .with_app_token("xapp-789-secret")
            .with_api_url("http://127.0.0.1:9/api/");
        let s = format!("{cfg:?}");
        for secret in ["123-secret", "signing-secret-456", "789-secret"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.contains("http://127.0.0.1:9/api\""), "{s}");
    }
}

#[cfg(test)]
mod log_tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::response::IntoResponse;
    use tower::ServiceExt;

    use super::*;

    const BOT_TOKEN: &str = "xoxb-1111-never-log-me";
    const SIGNING_SECRET: &str = "signing-2222-never-log-me";
    const APP_TOKEN: &str = "xapp-3333-never-log-me";

    use super::testing::Nop;

    /// Every Slack path that logs (refused requests, a command, Web API refusals and retries,
    /// the configuration itself) runs with every log level on; no secret shows up.
    #[test]
    fn secrets_never_reach_the_logs() {
        let ((), logs) = crate::log_capture::capture(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // A Web API that refuses every call, then answers 500 to the next ones.
                let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let api = axum::Router::new().fallback(move || {
                    let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            axum::Json(serde_json::json!({"ok": false, "error": "invalid_auth"}))
                                .into_response()
                        } else {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                        }
                    }
                });
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move { axum::serve(listener, api).await });

                let mut cfg = SlackConfig::new(BOT_TOKEN, SIGNING_SECRET)
                    .with_api_url(format!("http://{addr}/api"))
                    .with_app_token(APP_TOKEN);
                cfg.retry = RetryPolicy {
                    max_attempts: 2,
                    base_backoff: Duration::from_millis(1),
                    max_backoff: Duration::from_millis(1),
                    max_retry_after: Duration::from_millis(1),
                    ..RetryPolicy::default()
                };
                tracing::info!(config = ?cfg, "Slack configured");
                let web = SlackWeb::new(&cfg);
                let sink = SlackSink::with_web(web.clone(), cfg.update_interval);
                use crate::chat::ChatSink;
                let reply = opsbot_commands::Reply::ok("x");
                assert!(sink.post("C1", &reply).await.is_err());
                assert!(sink.post("C1", &reply).await.is_err());

                let app = router_with(Arc::new(Nop), web, &cfg);
                let verifier = Verifier::new(SIGNING_SECRET);
                let send = |body: &'static str, ts: i64, sig: Option<String>| {
                    let ts = ts.to_string();
                    let sig = sig.unwrap_or_else(|| verifier.sign(&ts, body.as_bytes()));
                    axum::http::Request::post("/slack/commands")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header(verify::TIMESTAMP_HEADER, ts)
                        .header(verify::SIGNATURE_HEADER, sig)
                        .body(Body::from(body))
                        .unwrap()
                };
                let now = verify::unix_now();
                let cmd = "command=%2Fops&text=status&user_id=U1&channel_id=C1&trigger_id=t.1";
                for req in [
                    send(cmd, now, Some("v0=00".into())),
                    send(cmd, now - 3600, None),
                    send("user_id=U1", now, None),
                    send(cmd, now, None),
                    send(cmd, now, None),
                ] {
                    let _ = app.clone().oneshot(req).await.unwrap();
                }
                // Let the background work (group lookup, audits) finish.
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        });
        // The paths did log (so the check below means something)...
        for expected in [
            "chat.postMessage",
            "invalid_auth",
            "refused Slack request",
            "Slack configured",
        ] {
            assert!(logs.contains(expected), "{expected} not logged:\n{logs}");
        }
        // ...and no secret, nor any part of one, is in there.
        for secret in [BOT_TOKEN, SIGNING_SECRET, APP_TOKEN] {
            let tail = &secret[5..];
            assert!(!logs.contains(tail), "{secret} logged:\n{logs}");
        }
    }
}

#[cfg(test)]
mod manifest_tests {
    use serde_json::Value;

    const HTTP: &str = include_str!("../../../deploy/slack-app-manifest.yaml");
    const SOCKET: &str = include_str!("../../../deploy/slack-app-manifest.socket-mode.yaml");
    /// The Web API methods opsbot calls need exactly these (plus `commands` for the slash
    /// commands): chat.postMessage / chat.update → chat:write (+ .public for channels the bot
    /// has not joined), usergroups.list / usergroups.users.list → usergroups:read; incidents:
    /// conversations.create / setTopic / invite / archive → channels:manage, pins.add →
    /// pins:write, reaction_added and reactions.get → reactions:read.
    const SCOPES: [&str; 7] = [
        "commands",
        "chat:write",
        "chat:write.public",
        "usergroups:read",
        "channels:manage",
        "pins:write",
        "reactions:read",
    ];

    fn parse(yaml: &str) -> Value {
        serde_saphyr::from_str(yaml).expect("manifest parses")
    }

    fn common(m: &Value) {
        let commands: Vec<&str> = m["features"]["slash_commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["command"].as_str().unwrap())
            .collect();
        assert_eq!(commands, ["/ops", "/incident"]);
        let scopes: Vec<&str> = m["oauth_config"]["scopes"]["bot"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(scopes, SCOPES);
        assert!(m["oauth_config"]["scopes"]["user"].is_null());
        assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
        assert_eq!(
            m["settings"]["event_subscriptions"]["bot_events"],
            serde_json::json!(["reaction_added"])
        );
        for c in m["features"]["slash_commands"].as_array().unwrap() {
            assert_eq!(c["should_escape"], true, "mentions arrive as <@U…>");
        }
    }

    #[test]
    fn http_manifest_points_at_the_routes() {
        let m = parse(HTTP);
        common(&m);
        for c in m["features"]["slash_commands"].as_array().unwrap() {
            assert!(c["url"].as_str().unwrap().ends_with("/slack/commands"));
        }
        let s = &m["settings"];
        assert!(
            s["interactivity"]["request_url"]
                .as_str()
                .unwrap()
                .ends_with("/slack/interactions")
        );
        assert!(
            s["event_subscriptions"]["request_url"]
                .as_str()
                .unwrap()
                .ends_with("/slack/events")
        );
        assert_eq!(s["socket_mode_enabled"], false);
    }

    #[test]
    fn socket_mode_manifest_needs_no_url() {
        let m = parse(SOCKET);
        common(&m);
        assert_eq!(m["settings"]["socket_mode_enabled"], true);
        assert!(
            !SOCKET
                .lines()
                .any(|l| l.trim_start().starts_with("url:") || l.contains("request_url"))
        );
    }
}
