//! Socket Mode: Slack delivers slash commands and interactions over a WebSocket opened with the
//! app-level token, so opsbot needs no public URL. The envelopes are fed to the same
//! [`Dispatcher`] as the HTTP endpoints (signatures are not used: the connection itself is
//! authenticated by the token).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slack_morphism::errors::{SlackClientError, SlackClientProtocolError};
use slack_morphism::prelude::*;

use super::dispatch::{Dispatcher, Interaction, SlashCommand};
use super::web::{Client, SlackWeb};
use super::{PLATFORM, Pipeline, SlackConfig, SlackError, SlackSink};
use crate::engine::Engine;

/// Registers a [`SlackSink`] on the engine and serves Socket Mode until `shutdown` completes.
/// The longest wait between two attempts to open the Socket Mode connection.
const MAX_CONNECT_WAIT: Duration = Duration::from_secs(60);

pub async fn run(
    engine: Engine,
    cfg: SlackConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SlackError> {
    let sink = SlackSink::new(&cfg);
    engine.register_sink(PLATFORM, Arc::new(sink.clone()));
    run_with(Arc::new(engine), sink.web().clone(), &cfg, shutdown).await
}

/// Socket Mode on any [`Pipeline`].
pub async fn run_with(
    pipeline: Arc<dyn Pipeline>,
    web: SlackWeb,
    cfg: &SlackConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SlackError> {
    let app_token = cfg
        .app_token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or(SlackError::MissingAppToken)?;
    let dispatcher = Arc::new(
        Dispatcher::new(pipeline.clone(), Arc::new(web.clone()), cfg.group_cache_ttl)
            .with_response_urls(web.response_urls().clone()),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_interaction_events(on_interaction)
        .with_push_events(on_push_event);
    let env = Arc::new(
        SlackClientEventsListenerEnvironment::new(web.client())
            .with_error_handler(on_error)
            .with_user_state(dispatcher),
    );
    let listener =
        SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), env, callbacks);
    let token = SlackApiToken::new(app_token.into());
    let mut shutdown = std::pin::pin!(shutdown);
    // A connection that cannot be opened (Slack or the network down at start, a revoked
    // token) is tried again, reported by `/readyz` meanwhile: it must not leave the process
    // running deaf to Slack until someone restarts it.
    let mut wait = Duration::from_secs(1);
    while let Err(e) = listener.listen_for(&token).await {
        let e = loggable(&e);
        tracing::error!(error = %e, retry_s = wait.as_secs(), "Slack Socket Mode could not connect; trying again");
        pipeline.set_trouble(Some(format!("Socket Mode is not connected: {e}")));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => return Ok(()),
        }
        wait = (wait * 2).min(MAX_CONNECT_WAIT);
    }
    pipeline.set_trouble(None);
    listener.start().await;
    tracing::info!("Slack Socket Mode connected");
    shutdown.await;
    listener.shutdown().await;
    Ok(())
}

async fn dispatcher(state: &SlackClientEventsUserState) -> Option<Arc<Dispatcher>> {
    state
        .read()
        .await
        .get_user_state::<Arc<Dispatcher>>()
        .cloned()
}

/// Converts a Socket Mode slash command into the form the HTTP endpoint receives.
pub fn slash_command(ev: &SlackCommandEvent) -> SlashCommand {
    SlashCommand {
        command: ev.command.to_string(),
        text: ev.text.clone().unwrap_or_default(),
        user_id: ev.user_id.to_string(),
        channel_id: ev.channel_id.to_string(),
        trigger_id: ev.trigger_id.to_string(),
        response_url: Some(ev.response_url.value().to_string()),
        ssl_check: None,
    }
}

/// Converts a Socket Mode interaction into the payload the HTTP endpoint receives.
pub fn interaction(ev: &SlackInteractionEvent) -> Option<Interaction> {
    serde_json::to_value(ev)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

async fn on_command(
    ev: SlackCommandEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let d = dispatcher(&state)
        .await
        .ok_or_else(|| boxed("Slack dispatcher missing"))?;
    let ack = d.command(slash_command(&ev)).await.map_err(|e| {
        d.reject(crate::engine::RejectionKind::Malformed, e.to_string());
        boxed(&e.to_string())
    })?;
    Ok(
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(ack.text))
            .with_response_type(SlackMessageResponseType::Ephemeral),
    )
}

async fn on_interaction(
    ev: SlackInteractionEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let d = dispatcher(&state)
        .await
        .ok_or_else(|| boxed("Slack dispatcher missing"))?;
    let Some(ev) = interaction(&ev) else {
        return Ok(());
    };
    d.interaction(ev).await.map_err(|e| {
        d.reject(crate::engine::RejectionKind::Malformed, e.to_string());
        boxed(&e.to_string())
    })
}

async fn on_push_event(
    ev: SlackPushEventCallback,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let (Some(d), Some(body)) = (dispatcher(&state).await, event_callback(&ev)) {
        d.event(&body);
    }
    Ok(())
}

/// The JSON of the Events API's HTTP delivery. slack-morphism keeps the `type` on the enum
/// around the callback, so the callback alone serialises without it: put it back.
fn event_callback(ev: &SlackPushEventCallback) -> Option<serde_json::Value> {
    let mut body = serde_json::to_value(ev).ok()?;
    body.as_object_mut()?
        .insert("type".to_owned(), "event_callback".into());
    Some(body)
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _state: SlackClientEventsUserState,
) -> http::StatusCode {
    tracing::warn!(error = %loggable(err.as_ref()), "Slack Socket Mode error");
    http::StatusCode::OK
}

/// What of a Socket Mode error may be logged: a payload that did not parse comes with its body,
/// which can hold a `response_url` and what someone typed, so of that only the parse error.
fn loggable(err: &(dyn std::error::Error + 'static)) -> String {
    let protocol = err.downcast_ref::<SlackClientProtocolError>().or(
        match err.downcast_ref::<SlackClientError>() {
            Some(SlackClientError::ProtocolError(p)) => Some(p),
            _ => None,
        },
    );
    match protocol {
        Some(p) => format!("a payload opsbot could not read: {}", p.json_error),
        None => err.to_string(),
    }
}

fn boxed(msg: &str) -> Box<dyn std::error::Error + Send + Sync> {
    msg.to_owned().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_mode_payloads_convert_to_the_http_forms() {
        let ev: SlackCommandEvent = serde_json::from_value(serde_json::json!({
            "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/ops",
            "text": "status api", "response_url": "https://hooks.slack.com/x",
            "trigger_id": "tr.1"
        }))
        .unwrap();
        let c = slash_command(&ev);
        assert_eq!(
            (
                c.command.as_str(),
                c.text.as_str(),
                c.user_id.as_str(),
                c.channel_id.as_str(),
                c.trigger_id.as_str()
            ),
            ("/ops", "status api", "U1", "C1", "tr.1")
        );
        assert_eq!(c.response_url.as_deref(), Some("https://hooks.slack.com/x"));

        let ev: SlackInteractionEvent = serde_json::from_value(serde_json::json!({
            "type": "block_actions",
            "team": {"id": "T1"},
            "user": {"id": "U2"},
            "api_app_id": "A1",
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1"},
            "trigger_id": "tr.2",
            "channel": {"id": "C1"},
            "actions": [{"type": "button", "action_id": "approve", "value": "7f3k", "action_ts": "1.3"}]
        }))
        .unwrap();
        let i = interaction(&ev).unwrap();
        assert_eq!(i.kind, "block_actions");
        assert_eq!(i.user.unwrap().id, "U2");
        assert_eq!(i.channel.unwrap().id, "C1");
        assert_eq!(i.actions[0].action_id, "approve");
        assert_eq!(i.actions[0].value.as_deref(), Some("7f3k"));
        assert_eq!(i.actions[0].action_ts.as_deref(), Some("1.3"));
    }

    #[test]
    fn socket_mode_events_read_as_the_http_delivery() {
        let ev: SlackPushEventCallback = serde_json::from_value(serde_json::json!({
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "Ev1",
            "event_time": 1_700_000_000,
            "event": {
                "type": "reaction_added",
                "user": "U2",
                "reaction": "pushpin",
                "item_user": "U3",
                "item": {"type": "message", "channel": "C1", "ts": "1700000000.000100"},
                "event_ts": "1700000001.000200"
            }
        }))
        .unwrap();
        let body = event_callback(&ev).unwrap();
        assert_eq!(body["type"], "event_callback");
        assert_eq!(body["event"]["type"], "reaction_added");
        assert_eq!(body["event"]["item"]["channel"], "C1");
        assert_eq!(body["event"]["reaction"], "pushpin");
    }

    #[test]
    fn unreadable_payloads_are_logged_without_their_body() {
        let body = r#"{"response_url":"https://hooks.slack.com/commands/T1/secret","text":"x""#;
        let json_error = serde_json::from_str::<serde_json::Value>(body).unwrap_err();
        let err: Box<dyn std::error::Error + Send + Sync> =
            SlackClientProtocolError::new(json_error)
                .with_json_body(body.to_owned())
                .into();
        let logged = loggable(err.as_ref());
        assert!(
            logged.starts_with("a payload opsbot could not read"),
            "{logged}"
        );
        assert!(!logged.contains("hooks.slack.com"), "{logged}");
        let wrapped: Box<dyn std::error::Error + Send + Sync> =
            Box::new(SlackClientError::ProtocolError(
                SlackClientProtocolError::new(serde_json::from_str::<u8>("x").unwrap_err())
                    .with_json_body(body.to_owned()),
            ));
        assert!(!loggable(wrapped.as_ref()).contains("hooks.slack.com"));
    }

    #[tokio::test]
    async fn socket_mode_needs_an_app_token() {
        use crate::slack::testing::Nop;
        let cfg = SlackConfig::new("xoxb", "sig");
        let err = run_with(Arc::new(Nop), SlackWeb::new(&cfg), &cfg, async {})
            .await
            .unwrap_err();
        assert!(matches!(err, SlackError::MissingAppToken));
    }
}
