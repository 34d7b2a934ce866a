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

/// A person's groups (`slack-group:…`, `discord-role:…`), as far as the platform could tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub groups: Vec<Subject>,
    /// The platform could not say (Slack's user groups could not be read): `groups` is what
    /// was last known, maybe nothing. The policy then keeps group bans in force
    /// ([`opsbot_policies::Request::groups_unknown`]).
    pub unknown: bool,
}

impl Membership {
    /// Groups the platform reported.
    pub fn known(groups: Vec<Subject>) -> Membership {
        Membership {
            groups,
            unknown: false,
        }
    }
}

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
    /// The platform could not say which groups the user is in ([`Membership::unknown`]).
    pub groups_unknown: bool,
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
    /// As [`Invocation::groups_unknown`]: an approver role a group would give is then missing.
    pub groups_unknown: bool,
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
    /// As [`Invocation::groups_unknown`].
    pub groups_unknown: bool,
    pub channel: String,
    /// The button's action id, e.g. `alert_silence_1h` (`crate::alerts::render::ACTIONS`).
    pub action: String,
    /// The alert group's short id (the button's value).
    pub group_id: String,
    pub delivery_id: Option<String>,
    /// As [`Invocation::origin`]: the adapter's handle of this click, for private replies.
    pub origin: Option<String>,
}

/// Who handles [`AlertClick`]s (the alerts service, registered on the engine by `app::start`).
#[async_trait]
pub trait AlertActions: Send + Sync {
    /// Records `click` in the inbox, before it is acknowledged: its inbox id, `None` for a
    /// repeated delivery (or when it cannot be recorded: the clicker is told so, and it is not
    /// run).
    async fn record(&self, click: &AlertClick) -> Option<i64>;
    /// Decides and runs a recorded click (with the clicker's groups by now), then marks its
    /// inbox entry answered.
    async fn handle(&self, click: AlertClick, inbox: i64);
}

/// A 📌 (or other) reaction someone added to a message, for incident timelines.
#[derive(Debug, Clone)]
pub struct Reaction {
    pub platform: Platform,
    pub user: Subject,
    pub channel: String,
    /// The platform's message id (Slack `ts`, Discord message id).
    pub message_id: String,
    /// The emoji's name without colons (`pushpin`, or the character `📌` on Discord).
    pub emoji: String,
    /// The message's text, where the adapter could read it.
    pub text: Option<String>,
    /// The message's author, where known.
    pub author: Option<Subject>,
    /// A link to the message, where the platform has one.
    pub link: Option<String>,
}

/// Who hears about reactions (the incidents service, registered on the engine).
#[async_trait]
pub trait ReactionObserver: Send + Sync {
    async fn reaction(&self, reaction: Reaction);
}

/// A channel opsbot created for an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRef {
    pub platform: String,
    /// The platform's channel id.
    pub id: String,
    /// Its name, without `#`.
    pub name: String,
}

/// Why a message could not be delivered, or a channel action not done.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The platform said no for good (e.g. Slack `ok:false` with `channel_not_found`).
    #[error("{method} refused: {error}")]
    Refused { method: String, error: String },
    /// Still failing after retries (network, 5xx, 429).
    #[error("{method} failed after retries: {error}")]
    Failed { method: String, error: String },
    /// The bot lacks a scope (Slack) or permission (Discord); `grant` names it.
    #[error("{method} needs {grant}, which the bot does not have")]
    NotPermitted { method: String, grant: String },
    /// A channel with this name exists already.
    #[error("the channel name {name} is taken")]
    NameTaken { name: String },
    /// The platform adapter cannot do this (e.g. the console has no channel topics).
    #[error("{what} is not supported here")]
    Unsupported { what: String },
}

impl DeliveryError {
    /// What an operator should do about a channel action that failed, when there is something
    /// (grant a scope or permission).
    pub fn remedy(&self) -> Option<String> {
        match self {
            DeliveryError::NotPermitted { grant, .. } => Some(format!(
                "give the bot {grant} (and reinstall the app if it asks)"
            )),
            _ => None,
        }
    }
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

    // Channel automation (incidents). The defaults say the adapter cannot do it.

    /// Creates a public channel named `name`; [`DeliveryError::NameTaken`] if it exists.
    async fn create_channel(&self, name: &str) -> Result<ChannelRef, DeliveryError> {
        let _ = name;
        Err(unsupported("creating channels"))
    }
    /// Sets the channel's topic.
    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), DeliveryError> {
        let _ = (channel, topic);
        Err(unsupported("channel topics"))
    }
    /// Brings `who` into the channel: people, and groups or roles (everyone in them).
    async fn invite(&self, channel: &str, who: &[Subject]) -> Result<(), DeliveryError> {
        let _ = (channel, who);
        Err(unsupported("inviting to channels"))
    }
    /// Pins a message opsbot posted.
    async fn pin(&self, message: &MessageRef) -> Result<(), DeliveryError> {
        let _ = message;
        Err(unsupported("pinning messages"))
    }
    /// Archives the channel (Discord: moves it to the archive category, read-only).
    async fn archive(&self, channel: &str) -> Result<(), DeliveryError> {
        let _ = channel;
        Err(unsupported("archiving channels"))
    }
    /// The text of a message in `channel` (for a message marked for a timeline), where the
    /// platform lets the bot read it.
    async fn message_text(
        &self,
        channel: &str,
        message_id: &str,
    ) -> Result<Option<String>, DeliveryError> {
        let _ = (channel, message_id);
        Ok(None)
    }
    /// How `who` (a person, group or role) is written in a message so they are notified.
    fn mention(&self, who: &Subject) -> String {
        who.to_string()
    }
    /// How a link to a channel is written in a message.
    fn channel_link(&self, channel: &ChannelRef) -> String {
        format!("#{}", channel.name)
    }
}

fn unsupported(what: &str) -> DeliveryError {
    DeliveryError::Unsupported {
        what: what.to_owned(),
    }
}
