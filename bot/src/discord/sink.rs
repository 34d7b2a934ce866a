//! [`DiscordSink`]: how the engine answers on Discord.
//!
//! An interaction is answered through its own token for 15 minutes, and after that only with
//! the bot token. The dispatcher records every interaction it acknowledged in [`Interactions`]
//! (id → token, never logged), and the engine hands the id back as the request's `origin`:
//!
//! - [`ChatSink::answer`] edits the deferred response (`PATCH …/messages/@original`) into the
//!   first public reply; without a live interaction it posts a channel message.
//! - [`ChatSink::post_private`] sends an ephemeral follow-up (flags 64) that only the requester
//!   sees; a still-deferred public response is deleted first (Discord would otherwise turn the
//!   first follow-up into that public response). Discord has no private channel messages, so
//!   without a live interaction the reply is undeliverable (and audited as such).
//! - [`ChatSink::post`] is a channel message with the bot token.
//! - [`ChatSink::update`] is paced to one edit per message per `update_interval`. A message
//!   whose buttons were just clicked is edited through that click's token (the clicker sees it
//!   at once); one sent through a live interaction through its token; any other with the bot
//!   token. When an interaction's message can no longer be edited (its token expired and the
//!   bot may not edit it), the new state is posted as a channel message, which later edits
//!   replace — a long operation finishes in a channel message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use opsbot_commands::Reply;
use opsbot_policies::Subject;
use serde_json::Value;
use tokio::time::Instant;

use super::render::{render, render_private};
use super::rest::{Auth, Call, DiscordRest};
use super::{DiscordConfig, PLATFORM};
use crate::chat::{ChannelRef, ChatSink, DeliveryError, MessageRef};
use crate::pacing::EditPacer;

/// How long Discord accepts an interaction token.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// A token this close to expiry is not used any more (a call takes time and may be retried).
const TOKEN_MARGIN: Duration = Duration::from_secs(30);
/// Interactions and replaced messages remembered at most.
const CAPACITY: usize = 10_000;

/// The call that fills a deferred response: like `delete_original`, it may reach Discord
/// before the deferral does, and is tried again on a 404 ([`super::rest`]).
pub(super) const FILL_DEFERRED: &str = "fill_deferred_response";

/// What became of an application command's deferred response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Original {
    /// Still "thinking…".
    Deferred,
    /// Edited into a reply, or deleted: no longer ours to fill.
    Settled,
    /// A button click (type 6): its original is the message with the buttons.
    Component,
}

#[derive(Debug, Clone)]
struct Entry {
    token: String,
    received: Instant,
    original: Original,
    /// The message whose button was clicked, for component interactions.
    message: Option<String>,
}

/// The interactions acknowledged within their tokens' lifetime, shared by the dispatcher (who
/// records them) and the sink (who answers through them). Tokens are capabilities: `Debug`
/// shows none, nothing logs them.
#[derive(Clone)]
pub struct Interactions {
    lifetime: Duration,
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Entry>,
    /// Message id → the interaction whose token created it.
    created_by: HashMap<String, String>,
    /// Message id (that could no longer be edited) → the channel message that replaced it.
    replaced: HashMap<String, String>,
}

impl std::fmt::Debug for Interactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interactions")
            .field("lifetime", &self.lifetime)
            .field("tokens", &"***")
            .finish()
    }
}

impl Interactions {
    pub fn new(lifetime: Duration) -> Self {
        Interactions {
            lifetime,
            inner: Arc::new(Mutex::new(Registry::default())),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn usable(&self, e: &Entry) -> bool {
        e.received.elapsed() + TOKEN_MARGIN.min(self.lifetime / 2) < self.lifetime
    }

    /// An application command whose response was deferred.
    pub fn deferred(&self, id: &str, token: &str) {
        self.insert(id, token, Original::Deferred, None);
    }

    /// A button click on `message`, acknowledged with a deferred update.
    pub fn clicked(&self, id: &str, token: &str, message: &str) {
        self.insert(id, token, Original::Component, Some(message.to_owned()));
    }

    fn insert(&self, id: &str, token: &str, original: Original, message: Option<String>) {
        let mut r = self.registry();
        if r.by_id.len() >= CAPACITY {
            let lifetime = self.lifetime;
            r.by_id.retain(|_, e| e.received.elapsed() < lifetime);
            let live: std::collections::HashSet<String> = r.by_id.keys().cloned().collect();
            r.created_by.retain(|_, i| live.contains(i));
            if r.replaced.len() >= CAPACITY {
                r.replaced.clear();
            }
        }
        r.by_id.insert(
            id.to_owned(),
            Entry {
                token: token.to_owned(),
                received: Instant::now(),
                original,
                message,
            },
        );
    }

    fn live(&self, id: &str) -> Option<Entry> {
        let r = self.registry();
        r.by_id.get(id).filter(|e| self.usable(e)).cloned()
    }

    fn settle(&self, id: &str) {
        if let Some(e) = self.registry().by_id.get_mut(id) {
            e.original = Original::Settled;
        }
    }

    /// The token of `id`'s deferred response if it is still "thinking…" (the dispatcher
    /// removes it when the engine is done with a request without answering it publicly).
    pub fn still_deferred(&self, id: &str) -> Option<String> {
        self.live(id)
            .filter(|e| e.original == Original::Deferred)
            .map(|e| e.token)
    }

    /// Marks the deferred response of `id` as dealt with.
    pub fn mark_settled(&self, id: &str) {
        self.settle(id)
    }

    /// The freshest live click token on `message`.
    fn click_on(&self, message: &str) -> Option<String> {
        let r = self.registry();
        r.by_id
            .values()
            .filter(|e| e.message.as_deref() == Some(message) && self.usable(e))
            .max_by_key(|e| e.received)
            .map(|e| e.token.clone())
    }

    /// The live token that created `message`, if any.
    fn creator_of(&self, message: &str) -> Option<String> {
        let r = self.registry();
        let id = r.created_by.get(message)?;
        r.by_id
            .get(id)
            .filter(|e| self.usable(e))
            .map(|e| e.token.clone())
    }
}

/// Posts, answers and edits opsbot's messages on Discord; creates, archives and manages
/// incident channels ([`super::channels`]).
#[derive(Clone, Debug)]
pub struct DiscordSink {
    rest: DiscordRest,
    application_id: String,
    interactions: Interactions,
    pacer: EditPacer,
    /// The server incident channels are created in: the first of `discord.guilds`.
    guild: Option<String>,
    incident_category: Option<String>,
    archive_category: Option<String>,
    /// The bot's user id, once asked for.
    me: Arc<tokio::sync::OnceCell<String>>,
}

impl DiscordSink {
    pub fn new(cfg: &DiscordConfig, interactions: Interactions) -> Self {
        DiscordSink {
            rest: DiscordRest::new(&cfg.api_url, &cfg.token, cfg.retry.clone()),
            application_id: cfg.application_id.clone(),
            interactions,
            pacer: EditPacer::new(cfg.update_interval),
            guild: cfg.guilds.first().cloned(),
            incident_category: cfg.incident_category.clone(),
            archive_category: cfg.archive_category.clone(),
            me: Arc::default(),
        }
    }

    pub(super) fn guild(&self) -> Option<&str> {
        self.guild.as_deref()
    }

    pub(super) fn incident_category(&self) -> Option<&str> {
        self.incident_category.as_deref()
    }

    pub(super) fn archive_category(&self) -> Option<&str> {
        self.archive_category.as_deref()
    }

    pub(super) fn me_cell(&self) -> &tokio::sync::OnceCell<String> {
        &self.me
    }

    pub fn interactions(&self) -> &Interactions {
        &self.interactions
    }

    pub fn rest(&self) -> &DiscordRest {
        &self.rest
    }

    fn webhook(&self, token: &str) -> String {
        format!("/webhooks/{}/{token}", self.application_id)
    }

    /// `PATCH /webhooks/{app}/{token}/messages/{message}` (`@original` or an id), logged as
    /// `name`.
    async fn edit_webhook_message(
        &self,
        name: &'static str,
        token: &str,
        message: &str,
        body: Value,
    ) -> Result<Value, DeliveryError> {
        let base = self.webhook(token);
        self.rest
            .call(&Call {
                name,
                method: Method::PATCH,
                path: format!("{base}/messages/{message}"),
                route: format!("PATCH {base}/messages/:id"),
                auth: Auth::None,
                body: Some(body),
            })
            .await
    }

    async fn delete_original(&self, token: &str) -> Result<Value, DeliveryError> {
        let base = self.webhook(token);
        self.rest
            .call(&Call {
                name: "delete_original",
                method: Method::DELETE,
                path: format!("{base}/messages/@original"),
                route: format!("DELETE {base}/messages/:id"),
                auth: Auth::None,
                body: None,
            })
            .await
    }

    /// Removes a deferred response that will not be filled (the request was answered
    /// privately, or not at all), so it does not stay "thinking…" until it fails.
    pub async fn withdraw_deferred(&self, origin: &str) {
        if let Err(e) = self.try_withdraw_deferred(origin).await {
            tracing::info!(error = %e, "could not remove a deferred response");
        }
    }

    /// [`DiscordSink::withdraw_deferred`], saying whether the response is gone.
    async fn try_withdraw_deferred(&self, origin: &str) -> Result<(), DeliveryError> {
        let Some(token) = self.interactions.still_deferred(origin) else {
            return Ok(());
        };
        self.interactions.mark_settled(origin);
        self.delete_original(&token).await.map(drop)
    }

    /// `POST /interactions/{id}/{token}/callback`: the immediate answer to an interaction that
    /// arrived over the gateway (over HTTP it is the response body).
    pub async fn callback(&self, id: &str, token: &str, body: Value) -> Result<(), DeliveryError> {
        self.rest
            .call(&Call {
                name: "interaction_callback",
                method: Method::POST,
                path: format!("/interactions/{id}/{token}/callback"),
                route: format!("POST /interactions/{id}/{token}/callback"),
                auth: Auth::None,
                body: Some(body),
            })
            .await
            .map(|_| ())
    }

    async fn channel_message(&self, channel: &str, body: Value) -> Result<String, DeliveryError> {
        let res = self
            .rest
            .call(&Call {
                name: "create_message",
                method: Method::POST,
                path: format!("/channels/{channel}/messages"),
                route: format!("POST /channels/{channel}/messages"),
                auth: Auth::Bot,
                body: Some(body),
            })
            .await?;
        message_id(&res, "create_message")
    }

    async fn edit_channel_message(
        &self,
        channel: &str,
        id: &str,
        body: Value,
    ) -> Result<(), DeliveryError> {
        self.rest
            .call(&Call {
                name: "edit_message",
                method: Method::PATCH,
                path: format!("/channels/{channel}/messages/{id}"),
                route: format!("PATCH /channels/{channel}/messages/:id"),
                auth: Auth::Bot,
                body: Some(body),
            })
            .await
            .map(|_| ())
    }

    /// One edit, now, by the best means still open (see the module docs).
    async fn send_update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        let body = render(reply);
        let replaced = self
            .interactions
            .registry()
            .replaced
            .get(&message.id)
            .cloned();
        if let Some(replacement) = replaced {
            return self
                .edit_channel_message(&message.channel, &replacement, body)
                .await;
        }
        if let Some(token) = self.interactions.click_on(&message.id) {
            match self
                .edit_webhook_message(
                    "edit_interaction_message",
                    &token,
                    "@original",
                    body.clone(),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => tracing::info!(error = %e, "editing through the click failed"),
            }
        }
        if let Some(token) = self.interactions.creator_of(&message.id) {
            match self
                .edit_webhook_message(
                    "edit_interaction_message",
                    &token,
                    &message.id,
                    body.clone(),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => tracing::info!(error = %e, "editing through the interaction failed"),
            }
        }
        match self
            .edit_channel_message(&message.channel, &message.id, body.clone())
            .await
        {
            Err(DeliveryError::Refused { error, .. }) => {
                tracing::info!(error = %error, "message cannot be edited; posting its new state");
                let id = self.channel_message(&message.channel, body).await?;
                self.interactions
                    .registry()
                    .replaced
                    .insert(message.id.clone(), id);
                Ok(())
            }
            other => other,
        }
    }
}

fn message_id(res: &Value, method: &str) -> Result<String, DeliveryError> {
    res["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| DeliveryError::Refused {
            method: method.to_owned(),
            error: "the answer carries no message id".to_owned(),
        })
}

fn message_ref(channel: &str, id: String) -> MessageRef {
    MessageRef {
        platform: PLATFORM.to_owned(),
        channel: channel.to_owned(),
        id,
    }
}

#[async_trait]
impl ChatSink for DiscordSink {
    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, DeliveryError> {
        let id = self.channel_message(channel, render(reply)).await?;
        Ok(message_ref(channel, id))
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        let key = format!("{}/{}", message.channel, message.id);
        self.pacer
            .paced(&key, || self.send_update(message, reply))
            .await
    }

    async fn post_private(
        &self,
        _channel: &str,
        _user: &Subject,
        origin: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        let refused = || DeliveryError::Refused {
            method: "ephemeral_followup".to_owned(),
            error: "no live interaction to answer privately (Discord has no private channel \
                    messages)"
                .to_owned(),
        };
        let origin = origin.ok_or_else(refused)?;
        let entry = self.interactions.live(origin).ok_or_else(refused)?;
        // Discord makes the first follow-up to a deferred response that response, public as
        // the deferral was, whatever its own flags: so no follow-up unless it is gone.
        if entry.original == Original::Deferred {
            self.try_withdraw_deferred(origin)
                .await
                .map_err(|e| DeliveryError::Refused {
                    method: "ephemeral_followup".to_owned(),
                    error: format!(
                        "not sent: the public \"thinking…\" response could not be removed \
                         ({e}), and a follow-up would have replaced it for everyone to see"
                    ),
                })?;
        }
        let base = self.webhook(&entry.token);
        self.rest
            .call(&Call {
                name: "ephemeral_followup",
                method: Method::POST,
                path: base.clone(),
                route: format!("POST {base}"),
                auth: Auth::None,
                body: Some(render_private(reply)),
            })
            .await
            .map(|_| ())
    }

    async fn answer(
        &self,
        channel: &str,
        origin: Option<&str>,
        reply: &Reply,
    ) -> Result<MessageRef, DeliveryError> {
        let deferred = origin.and_then(|o| {
            self.interactions
                .still_deferred(o)
                .map(|token| (o.to_owned(), token))
        });
        let Some((origin, token)) = deferred else {
            return self.post(channel, reply).await;
        };
        self.interactions.mark_settled(&origin);
        let res = self
            .edit_webhook_message(FILL_DEFERRED, &token, "@original", render(reply))
            .await?;
        let id = message_id(&res, FILL_DEFERRED)?;
        self.interactions
            .registry()
            .created_by
            .insert(id.clone(), origin);
        let channel = res["channel_id"].as_str().unwrap_or(channel);
        // Filling the deferred response was this message's first edit: pace the next from it.
        self.pacer.written(&format!("{channel}/{id}"));
        Ok(message_ref(channel, id))
    }

    async fn create_channel(&self, name: &str) -> Result<ChannelRef, DeliveryError> {
        self.create_incident_channel(name).await
    }

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), DeliveryError> {
        self.set_channel_topic(channel, topic).await
    }

    async fn invite(&self, channel: &str, who: &[Subject]) -> Result<(), DeliveryError> {
        self.invite_to_channel(channel, who).await
    }

    async fn pin(&self, message: &MessageRef) -> Result<(), DeliveryError> {
        self.pin_message(message).await
    }

    async fn archive(&self, channel: &str) -> Result<(), DeliveryError> {
        self.archive_channel(channel).await
    }

    fn mention(&self, who: &Subject) -> String {
        super::channels::mention(who)
    }

    fn channel_link(&self, channel: &ChannelRef) -> String {
        super::channels::channel_link(channel)
    }
}
