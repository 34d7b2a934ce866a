//! [`SlackSink`]: how the engine posts and edits messages in Slack.
//!
//! Posting is `chat.postMessage`, editing `chat.update`. Edits of one message are paced to at
//! most one per `update_interval` (a second by default): an edit that arrives sooner waits, and
//! if a newer edit of the same message arrives while it waits, only the newer one is sent (the
//! older is superseded, not lost: the message ends in the newest state; see [`crate::pacing`]).
//!
//! Where the bot is not a member (a DM with someone else, a private channel), Slack refuses
//! `chat.postMessage` with `not_in_channel` / `channel_not_found`; the reply then goes through
//! the `response_url` of the channel's latest slash command (see [`super::response_url`]), and
//! its [`MessageRef`] id says so (`response_url:{entry id}`, never the URL). Edits of such a
//! message replace it through the same URL while it is valid, or become a new post through a
//! newer one. Only when no valid URL is left is the reply reported undelivered.

use std::time::Duration;

use async_trait::async_trait;
use opsbot_commands::Reply;
use opsbot_policies::Subject;

use super::render::render;
use super::response_url::ID_PREFIX;
use super::web::SlackWeb;
use super::{PLATFORM, SlackConfig};
use crate::chat::{ChannelRef, ChatSink, DeliveryError, MessageRef};
use crate::pacing::EditPacer;

/// Posts and updates opsbot's messages in Slack.
#[derive(Clone, Debug)]
pub struct SlackSink {
    web: SlackWeb,
    pacer: EditPacer,
}

impl SlackSink {
    pub fn new(cfg: &SlackConfig) -> Self {
        Self::with_web(SlackWeb::new(cfg), cfg.update_interval)
    }

    pub fn with_web(web: SlackWeb, update_interval: Duration) -> Self {
        SlackSink {
            web,
            pacer: EditPacer::new(update_interval),
        }
    }

    pub fn web(&self) -> &SlackWeb {
        &self.web
    }
}

#[async_trait]
impl ChatSink for SlackSink {
    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, DeliveryError> {
        match self.web.post_message(channel, render(reply)).await {
            Ok(ts) => Ok(MessageRef {
                platform: PLATFORM.to_owned(),
                channel: channel.to_owned(),
                id: ts,
            }),
            Err(e) if not_a_member(&e) => self.post_via_response_url(channel, reply, e).await,
            Err(e) => Err(e),
        }
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        let key = format!("{}/{}", message.channel, message.id);
        self.pacer
            .paced(&key, || self.send_update(message, reply))
            .await
    }

    /// A message that went through a `response_url`, changed by a click on it: replaced through
    /// the click's own `response_url` (entry `origin`), which Slack made for that message.
    async fn update_for(
        &self,
        message: &MessageRef,
        origin: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        if message.id.starts_with(ID_PREFIX)
            && let Some(lease) = origin.and_then(|id| {
                self.web
                    .response_urls()
                    .take(&message.channel, id, &reply.title)
            })
        {
            return self
                .web
                .post_response_url(lease.url(), render(reply), true)
                .await;
        }
        self.update(message, reply).await
    }

    async fn create_channel(&self, name: &str) -> Result<ChannelRef, DeliveryError> {
        let body = serde_json::json!({ "name": name, "is_private": false });
        match self.web.api("conversations.create", body).await {
            Ok(res) => {
                let id = res["channel"]["id"].as_str().unwrap_or_default();
                if id.is_empty() {
                    return Err(DeliveryError::Refused {
                        method: "conversations.create".into(),
                        error: "the answer has no channel id".into(),
                    });
                }
                Ok(ChannelRef {
                    platform: PLATFORM.to_owned(),
                    id: id.to_owned(),
                    name: res["channel"]["name"].as_str().unwrap_or(name).to_owned(),
                })
            }
            Err(DeliveryError::Refused { error, .. }) if error == "name_taken" => {
                Err(DeliveryError::NameTaken {
                    name: name.to_owned(),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), DeliveryError> {
        let body = serde_json::json!({ "channel": channel, "topic": topic });
        self.web
            .api("conversations.setTopic", body)
            .await
            .map(|_| ())
    }

    /// People are invited by id; a user group (`slack-group:S…`) by its members.
    async fn invite(&self, channel: &str, who: &[Subject]) -> Result<(), DeliveryError> {
        let mut users: Vec<String> = Vec::new();
        for w in who {
            match w.kind() {
                "slack" => users.push(w.id().to_owned()),
                "slack-group" => users.extend(self.web.group_members(w.id()).await?),
                _ => {}
            }
        }
        users.sort();
        users.dedup();
        if users.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({ "channel": channel, "users": users.join(",") });
        match self.web.api("conversations.invite", body).await {
            Ok(_) => Ok(()),
            // Everyone named is there already (the creator is, from the start).
            Err(DeliveryError::Refused { error, .. })
                if error == "already_in_channel" || error == "cant_invite_self" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn pin(&self, message: &MessageRef) -> Result<(), DeliveryError> {
        let body = serde_json::json!({ "channel": message.channel, "timestamp": message.id });
        match self.web.api("pins.add", body).await {
            Ok(_) => Ok(()),
            Err(DeliveryError::Refused { error, .. }) if error == "already_pinned" => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn archive(&self, channel: &str) -> Result<(), DeliveryError> {
        let body = serde_json::json!({ "channel": channel });
        match self.web.api("conversations.archive", body).await {
            Ok(_) => Ok(()),
            Err(DeliveryError::Refused { error, .. }) if error == "already_archived" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `reactions.get`: the message a reaction was added to, with its text.
    async fn message_text(
        &self,
        channel: &str,
        message_id: &str,
    ) -> Result<Option<String>, DeliveryError> {
        let body =
            serde_json::json!({ "channel": channel, "timestamp": message_id, "full": false });
        let res = self.web.api("reactions.get", body).await?;
        Ok(res["message"]["text"].as_str().map(str::to_owned))
    }

    /// The subject itself: the renderer turns `slack:U…` into a mention, and `slack-group:S…`
    /// into a group mention where the reply means to notify the group ([`Reply::notify`]).
    fn mention(&self, who: &Subject) -> String {
        who.to_string()
    }

    /// `slack-channel:C…`, which the renderer turns into a channel link.
    fn channel_link(&self, channel: &ChannelRef) -> String {
        format!("slack-channel:{}", channel.id)
    }

    /// `chat.postEphemeral`; where the bot is not a member, an ephemeral response through the
    /// request's own `response_url` (entry `origin`), which Slack shows to that request's
    /// author alone. Never another request's URL: its ephemeral response would show to
    /// whoever made that one.
    async fn post_private(
        &self,
        channel: &str,
        user: &Subject,
        origin: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        let Some(user_id) = user.as_str().strip_prefix("slack:") else {
            return Err(DeliveryError::Refused {
                method: "chat.postEphemeral".to_owned(),
                error: format!("{user} is not a Slack user"),
            });
        };
        match self
            .web
            .post_ephemeral(channel, user_id, render(reply))
            .await
        {
            Err(e) if not_a_member(&e) => {
                let Some(lease) =
                    origin.and_then(|id| self.web.response_urls().take(channel, id, &reply.title))
                else {
                    return Err(e);
                };
                self.web
                    .post_response_url_privately(lease.url(), render(reply))
                    .await
                    .map_err(|fallback| with_fallback_error(e, &fallback))
            }
            other => other,
        }
    }
}

impl SlackSink {
    /// One edit, now: `chat.update`, or through a `response_url` for messages that went that way.
    async fn send_update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        if let Some(id) = message.id.strip_prefix(ID_PREFIX) {
            return self.update_via_response_url(message, id, reply).await;
        }
        match self
            .web
            .update_message(&message.channel, &message.id, render(reply))
            .await
        {
            Err(e) if not_a_member(&e) => self
                .post_via_response_url(&message.channel, reply, e)
                .await
                .map(|_| ()),
            other => other,
        }
    }

    /// Posts `reply` through the channel's latest valid `response_url` after `refused` (the
    /// Web API's refusal, returned when there is none or it fails too).
    async fn post_via_response_url(
        &self,
        channel: &str,
        reply: &Reply,
        refused: DeliveryError,
    ) -> Result<MessageRef, DeliveryError> {
        let Some(lease) = self.web.response_urls().take_latest(channel, &reply.title) else {
            tracing::info!(channel, error = %refused, "no valid response_url to fall back on");
            return Err(refused);
        };
        match self
            .web
            .post_response_url(lease.url(), render(reply), false)
            .await
        {
            Ok(()) => {
                tracing::debug!(
                    channel,
                    uses_left = lease.uses_left,
                    "reply posted through response_url"
                );
                Ok(MessageRef {
                    platform: PLATFORM.to_owned(),
                    channel: channel.to_owned(),
                    id: format!("{ID_PREFIX}{}", lease.id),
                })
            }
            Err(e) => Err(with_fallback_error(refused, &e)),
        }
    }

    /// Replaces a message that went through the `response_url` entry `id`, or (that URL used
    /// up or expired) posts the new state through the channel's latest valid one.
    async fn update_via_response_url(
        &self,
        message: &MessageRef,
        id: &str,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        let urls = self.web.response_urls();
        if urls.is_progress_tick(id, &reply.title) {
            // Five uses are few: they go to what changes the message's meaning (the outcome),
            // not to progress ticks.
            tracing::debug!(channel = %message.channel, "progress edit skipped to keep the response_url's uses");
            return Ok(());
        }
        if let Some(lease) = urls.take(&message.channel, id, &reply.title) {
            return self
                .web
                .post_response_url(lease.url(), render(reply), true)
                .await;
        }
        let gone = DeliveryError::Refused {
            method: "response_url".to_owned(),
            error: "the message's response_url expired or is used up".to_owned(),
        };
        self.post_via_response_url(&message.channel, reply, gone)
            .await
            .map(|_| ())
    }
}

/// Slack's answers when the bot is not in the channel (or cannot see it).
fn not_a_member(e: &DeliveryError) -> bool {
    matches!(e, DeliveryError::Refused { error, .. }
        if error == "not_in_channel" || error == "channel_not_found")
}

/// The Web API's refusal, with why the `response_url` fallback failed too.
fn with_fallback_error(refused: DeliveryError, fallback: &DeliveryError) -> DeliveryError {
    match refused {
        DeliveryError::Refused { method, error } => DeliveryError::Refused {
            method,
            error: format!("{error}; fallback: {fallback}"),
        },
        DeliveryError::Failed { method, error } => DeliveryError::Failed {
            method,
            error: format!("{error}; fallback: {fallback}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::response::IntoResponse;
    use serde_json::{Value, json};

    use super::*;
    use crate::slack::{RetryPolicy, SlackConfig};

    /// A Web API where the bot is in no channel, and response URLs: `/hook/ok-…` accept,
    /// `/hook/broken-…` answer 500. Returns the base URL and what the hooks received.
    async fn slack() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let seen = hooks.clone();
        let app = axum::Router::new()
            .route(
                "/api/{method}",
                axum::routing::post(|| async {
                    axum::Json(json!({"ok": false, "error": "not_in_channel"}))
                }),
            )
            .route(
                "/hook/{id}",
                axum::routing::post(
                    move |axum::extract::Path(id): axum::extract::Path<String>,
                          axum::Json(body): axum::Json<Value>| {
                        let seen = seen.clone();
                        async move {
                            seen.lock().unwrap().push((id.clone(), body));
                            if id.starts_with("broken") {
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                            } else {
                                axum::Json(json!({"ok": true})).into_response()
                            }
                        }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), hooks)
    }

    /// Posts and edits fall back to the channel's response URL, edits replace what went through
    /// it, an expired one is not used, and the URL shows up in no log line, message reference
    /// or error, at any log level.
    #[test]
    fn replies_fall_back_to_the_response_url_which_is_never_logged() {
        let (errors, logs) = crate::log_capture::capture(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (base, hooks) = slack().await;
                let mut cfg = SlackConfig::new("xoxb-t", "sig").with_api_url(format!("{base}/api"));
                cfg.retry = RetryPolicy {
                    max_attempts: 2,
                    base_backoff: Duration::from_millis(1),
                    max_backoff: Duration::from_millis(1),
                    max_retry_after: Duration::from_millis(1),
                    ..RetryPolicy::default()
                };
                cfg.update_interval = Duration::from_millis(1);
                let sink = SlackSink::new(&cfg);
                let urls = sink.web().response_urls().clone();
                let mut errors = Vec::new();

                // No URL known: the Web API's refusal comes back.
                let e = sink.post("D1", &Reply::ok("first")).await.unwrap_err();
                assert_eq!(e.to_string(), "chat.postMessage refused: not_in_channel");

                urls.remember("D1", &format!("{base}/hook/ok-secret-1"));
                let msg = sink.post("D1", &Reply::info("Running")).await.unwrap();
                assert!(msg.id.starts_with(ID_PREFIX), "{msg:?}");
                assert!(!msg.id.contains("hook"), "{msg:?}");
                sink.update(&msg, &Reply::info("Running").text("1/2"))
                    .await
                    .unwrap();
                sink.update(&msg, &Reply::ok("Done")).await.unwrap();
                {
                    let hooks = hooks.lock().unwrap();
                    let replace: Vec<&Value> =
                        hooks.iter().map(|(_, b)| &b["replace_original"]).collect();
                    // The progress tick (same title) was not sent: the five uses are kept for
                    // what changes the message's meaning.
                    assert_eq!(replace, [&json!(false), &json!(true)]);
                    assert!(hooks.iter().all(|(id, b)| id == "ok-secret-1"
                        && b["response_type"] == "in_channel"
                        && b["blocks"][0]["type"] == "header"));
                }
                sink.update(&msg, &Reply::ok("Done").text("x"))
                    .await
                    .unwrap();
                assert_eq!(hooks.lock().unwrap().len(), 2, "a tick again");
                for title in ["Failed", "Retried", "Done again"] {
                    sink.update(&msg, &Reply::danger(title)).await.unwrap();
                }
                assert_eq!(hooks.lock().unwrap().len(), 5);
                // Used up, no other URL: undelivered.
                let e = sink.update(&msg, &Reply::ok("late")).await.unwrap_err();
                errors.push(e.to_string());

                // A newer command's URL takes an edit of the old message as a new post.
                urls.remember("D1", &format!("{base}/hook/ok-secret-2"));
                sink.update(&msg, &Reply::ok("again")).await.unwrap();
                assert_eq!(
                    hooks.lock().unwrap().last().unwrap().1["replace_original"],
                    false
                );

                // A broken URL: the refusal and why the fallback failed, without the URL.
                urls.remember("D2", &format!("{base}/hook/broken-secret-3"));
                let e = sink.post("D2", &Reply::ok("x")).await.unwrap_err();
                errors.push(e.to_string());

                // Expired: not used.
                urls.remember("D3", &format!("{base}/hook/ok-secret-4"));
                urls.advance_clock(super::super::response_url::TTL);
                let n = hooks.lock().unwrap().len();
                let e = sink.post("D3", &Reply::ok("x")).await.unwrap_err();
                errors.push(e.to_string());
                assert_eq!(hooks.lock().unwrap().len(), n);
                errors
            })
        });
        assert_eq!(
            errors[0],
            "response_url refused: the message's response_url expired or is used up"
        );
        assert!(
            errors[1].starts_with("chat.postMessage refused: not_in_channel; fallback: response_url failed after retries: HTTP 500"),
            "{errors:?}"
        );
        assert_eq!(errors[2], "chat.postMessage refused: not_in_channel");
        assert!(logs.contains("response_url"), "{logs}");
        assert!(logs.contains("HTTP 500"), "{logs}");
        for e in &errors {
            assert!(!e.contains("secret") && !e.contains("hook"), "{e}");
        }
        assert!(
            !logs.contains("secret-") && !logs.contains("/hook"),
            "{logs}"
        );
    }
}
