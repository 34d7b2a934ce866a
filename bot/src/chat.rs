//! What every chat adapter and the engine agree on: who said what where, and how to answer.
//!
//! Adapters (console, Slack, later Discord) turn platform requests into [`Invocation`]s and
//! [`ApprovalClick`]s for the engine, and implement [`ChatSink`] so the engine can post and
//! update messages. Only `slack*` modules know Block Kit; only `discord*` modules know Discord.

use async_trait::async_trait;
use opsbot_commands::Reply;
use opsbot_policies::Subject;
use serde::{Deserialize, Serialize};

/// A platform name as used in the audit log and message references: `console`, `slack`, `discord`.
pub type Platform = &'static str;

/// A message opsbot posted, so it can be updated later (also after a restart: it is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub platform: String,
    pub channel: String,
    /// The platform's message id (Slack `ts`, Discord message id, console sequence number).
    pub id: String,
}

/// One command typed by a person.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub platform: Platform,
    pub user: Subject,
    /// Groups / roles the platform reported (`slack-group:…`, `discord-role:…`).
    pub groups: Vec<Subject>,
    pub channel: String,
    /// What the user typed after the slash command, e.g. `scale api 5 -n production`.
    pub text: String,
    /// The platform's id for this delivery (Slack trigger id, Discord interaction id), used to
    /// drop repeated deliveries; `None` where the platform has no retries.
    pub delivery_id: Option<String>,
    /// The adapter's own handle of this request, handed back to its sink with every answer
    /// ([`ChatSink::answer`], [`ChatSink::post_private`]) so adapters that answer through the
    /// request itself (a Discord interaction token, a Slack `response_url`) can. Opaque to the
    /// engine, never logged or audited.
    pub origin: Option<String>,
}

/// An Approve or Deny click on an approval card.
#[derive(Debug, Clone)]
pub struct ApprovalClick {
    pub platform: Platform,
    pub user: Subject,
    pub groups: Vec<Subject>,
    pub channel: String,
    pub approval_id: String,
    pub approve: bool,
    pub delivery_id: Option<String>,
    /// As [`Invocation::origin`]: the adapter's handle of this click.
    pub origin: Option<String>,
}

/// A click on a button of an alert group's message (Silence, Ack, Expire).
#[derive(Debug, Clone)]
pub struct AlertClick {
    pub platform: Platform,
    pub user: Subject,
    pub groups: Vec<Subject>,
    pub channel: String,
    /// The button's action id, e.g. `alert_silence_1h` (`crate::alerts::render::ACTIONS`).
    pub action: String,
    /// The alert group's short id (the button's value).
    pub group_id: String,
    pub delivery_id: Option<String>,
}

/// Who handles [`AlertClick`]s (the alerts service, registered on the engine by `app::start`).
#[async_trait]
pub trait AlertActions: Send + Sync {
    async fn click(&self, click: AlertClick);
}

/// Why a message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The platform said no for good (e.g. Slack `ok:false` with `channel_not_found`).
    #[error("{method} refused: {error}")]
    Refused { method: String, error: String },
    /// Still failing after retries (network, 5xx, 429).
    #[error("{method} failed after retries: {error}")]
    Failed { method: String, error: String },
}

/// How the engine talks back to a platform.
///
/// Public messages (results, approval cards, progress) go through [`ChatSink::answer`] /
/// [`ChatSink::post`] and [`ChatSink::update`]; what concerns one person only (a refusal, help,
/// a rate-limit notice, a parse error) goes through [`ChatSink::post_private`] and nobody else
/// sees it.
#[async_trait]
pub trait ChatSink: Send + Sync {
    /// Posts a new message in `channel`, for everyone there.
    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, DeliveryError>;
    /// Replaces a message opsbot posted earlier.
    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError>;
    /// Replaces a message opsbot posted, on behalf of the request `origin` that changed it
    /// (e.g. a click on that message's button: Slack hands each click a `response_url` that
    /// replaces the message, also where the bot may not post). Without one, [`ChatSink::update`].
    async fn update_for(
        &self,
        message: &MessageRef,
        origin: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        let _ = origin;
        self.update(message, reply).await
    }
    /// Shows `reply` to `user` only, in `channel` (Slack `chat.postEphemeral`, a Discord
    /// ephemeral follow-up, the console's speaker). `origin` is the request's
    /// [`Invocation::origin`] / [`ApprovalClick::origin`], if any.
    async fn post_private(
        &self,
        channel: &str,
        user: &Subject,
        origin: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError>;
    /// The first public answer to the request `origin` (e.g. a Discord deferred response is
    /// edited into it). Adapters without such a thing post a new message.
    async fn answer(
        &self,
        channel: &str,
        origin: Option<&str>,
        reply: &Reply,
    ) -> Result<MessageRef, DeliveryError> {
        let _ = origin;
        self.post(channel, reply).await
    }
}
