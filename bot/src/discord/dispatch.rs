//! What HTTP interactions and the gateway share: one interaction in, the immediate answer out.
//!
//! Every answer is immediate: PONG for a ping, a deferred response (type 5) for a command, a
//! deferred update (type 6) for a button click, the choices for autocomplete (from a bounded,
//! cached cluster lookup). The real work — the pipeline, Kubernetes, replies through the REST
//! API — runs in a spawned task, so Discord's three-second deadline never depends on it.
//!
//! Invariants: only guilds in `discord.guilds` are served (DMs and other guilds get an
//! ephemeral refusal, audited); the same interaction id delivered twice runs once; identity is
//! `discord:<user id>` and the member's role ids become `discord-role:<id>` subjects, taken
//! from the interaction itself (no extra API call).

use std::collections::HashSet;
use std::sync::Arc;

use opsbot_policies::Subject;
use serde::Deserialize;
use serde_json::{Value, json};

use super::commands::{self, CommandOption, NameSource, ROOT};
use super::render::EPHEMERAL;
use super::sink::DiscordSink;
use super::{PLATFORM, is_snowflake};
use crate::chat::{AlertClick, ApprovalClick, Invocation, Membership};
use crate::engine::cards::{APPROVE, DENY};
use crate::engine::{Inbound, Refusal as EngineRefusal, RejectionKind};
use crate::slack::Pipeline;

/// Interaction types.
const PING: u8 = 1;
const APPLICATION_COMMAND: u8 = 2;
const MESSAGE_COMPONENT: u8 = 3;
const AUTOCOMPLETE: u8 = 4;

/// The parts of an interaction opsbot uses. The token is a capability: `Debug` hides it.
#[derive(Clone, Deserialize)]
pub struct Interaction {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub guild_id: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub channel: Option<IdOnly>,
    #[serde(default)]
    pub member: Option<Member>,
    #[serde(default)]
    pub user: Option<IdOnly>,
    #[serde(default)]
    pub data: Option<Data>,
    #[serde(default)]
    pub message: Option<IdOnly>,
}

impl std::fmt::Debug for Interaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interaction")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("token", &"***")
            .field("guild_id", &self.guild_id)
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub user: IdOnly,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Data {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub options: Vec<CommandOption>,
    #[serde(default)]
    pub custom_id: Option<String>,
}

/// An interaction that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Discord interaction: {0}")]
pub struct Malformed(pub String);

/// An immediate message only the person who triggered the interaction sees.
fn ephemeral(text: &str) -> Value {
    json!({
        "type": 4,
        "data": { "content": text, "flags": EPHEMERAL, "allowed_mentions": { "parse": [] } },
    })
}

/// Shared by the HTTP route and the gateway.
pub struct Dispatcher {
    pipeline: Arc<dyn Pipeline>,
    sink: DiscordSink,
    guilds: HashSet<String>,
    names: Arc<dyn NameSource>,
}

/// Who acted, where.
struct Actor {
    user: Subject,
    groups: Vec<Subject>,
    channel: String,
}

impl Dispatcher {
    pub fn new(
        pipeline: Arc<dyn Pipeline>,
        sink: DiscordSink,
        guilds: &[String],
        names: Arc<dyn NameSource>,
    ) -> Self {
        Dispatcher {
            pipeline,
            sink,
            guilds: guilds.iter().cloned().collect(),
            names,
        }
    }

    /// Records a refused request (in the background: the refusal itself is answered at once).
    pub fn reject(&self, kind: RejectionKind, detail: String) {
        tracing::info!(kind = kind.as_str(), detail = %detail, "refused Discord interaction");
        let pipeline = self.pipeline.clone();
        self.pipeline.spawn(Box::pin(async move {
            pipeline.reject(PLATFORM, kind, &detail).await
        }));
    }

    /// Answers one interaction (the body of the HTTP response, or of the gateway's callback)
    /// and starts its work in the background.
    pub async fn interaction(&self, i: Interaction) -> Result<Value, Malformed> {
        if i.kind == PING {
            return Ok(json!({ "type": 1 }));
        }
        if !is_snowflake(&i.id) {
            return Err(Malformed("interaction without a valid id".into()));
        }
        if !matches!(
            i.kind,
            APPLICATION_COMMAND | MESSAGE_COMPONENT | AUTOCOMPLETE
        ) {
            return Err(Malformed(format!("unknown interaction type {}", i.kind)));
        }
        let actor = match self.actor(&i) {
            Ok(a) => a,
            Err(Refusal::NotServed(why)) => {
                self.reject(
                    RejectionKind::NotServed,
                    format!("interaction {}: {why}", i.id),
                );
                if i.kind == AUTOCOMPLETE {
                    return Ok(json!({ "type": 8, "data": { "choices": [] } }));
                }
                return Ok(ephemeral(&format!(
                    "🛑 opsbot does not take commands here: {why}. Use it in a channel of a \
                     server it serves."
                )));
            }
            Err(Refusal::Malformed(why)) => return Err(Malformed(why)),
        };
        if i.token.is_empty() || i.token.len() > 500 {
            return Err(Malformed("interaction without a valid token".into()));
        }
        if i.kind == AUTOCOMPLETE {
            return Ok(self.autocomplete(&i).await);
        }
        // Repeated deliveries are recognised durably when the pipeline takes them (the inbox).
        match i.kind {
            APPLICATION_COMMAND => self.command(i, actor).await,
            _ => self.click(i, actor).await,
        }
    }

    fn actor(&self, i: &Interaction) -> Result<Actor, Refusal> {
        let Some(guild) = i.guild_id.as_deref() else {
            return Err(Refusal::NotServed("direct messages are not served".into()));
        };
        if !self.guilds.contains(guild) {
            return Err(Refusal::NotServed(format!(
                "this server ({}) is not one opsbot serves",
                guild.chars().take(20).collect::<String>()
            )));
        }
        let member = i
            .member
            .as_ref()
            .ok_or_else(|| Refusal::Malformed("guild interaction without a member".into()))?;
        let user = subject("discord", &member.user.id)
            .ok_or_else(|| Refusal::Malformed("interaction with an invalid user id".into()))?;
        let groups = member
            .roles
            .iter()
            .take(250)
            .filter_map(|r| subject("discord-role", r))
            .collect();
        let channel = i
            .channel_id
            .clone()
            .or_else(|| i.channel.as_ref().map(|c| c.id.clone()))
            .filter(|c| is_snowflake(c))
            .ok_or_else(|| Refusal::Malformed("interaction without a channel".into()))?;
        Ok(Actor {
            user,
            groups,
            channel,
        })
    }

    /// Takes the command durably, then defers (type 5); a command not taken is answered at once,
    /// privately, with why.
    async fn command(&self, i: Interaction, actor: Actor) -> Result<Value, Malformed> {
        let data = i.data.as_ref();
        if data.and_then(|d| d.name.as_deref()) != Some(ROOT) {
            return Ok(ephemeral("opsbot only knows `/ops`; try `/ops help`."));
        }
        let text = commands::invocation_text(data.map_or(&[][..], |d| &d.options));
        Ok(self.take_command(&i, actor, text).await)
    }

    /// Takes `text` as a command typed by `actor` in interaction `i`, durably, then defers
    /// (type 5); a command not taken is answered at once, privately, with why.
    async fn take_command(&self, i: &Interaction, actor: Actor, text: String) -> Value {
        self.sink.interactions().deferred(&i.id, &i.token);
        let invocation = Invocation {
            platform: PLATFORM,
            user: actor.user,
            groups: Vec::new(),
            groups_unknown: false,
            channel: actor.channel,
            text,
            delivery_id: Some(format!("discord:{}", i.id)),
            origin: Some(i.id.clone()),
        };
        // The roles come with the interaction: nothing to look up after the ack.
        let groups = Box::pin(std::future::ready(Membership::known(actor.groups)));
        match self
            .pipeline
            .take(Inbound::Command(invocation), groups)
            .await
        {
            Ok(()) => json!({ "type": 5 }),
            Err(refusal) => {
                self.sink.interactions().mark_settled(&i.id);
                ephemeral(&refusal.message())
            }
        }
    }

    /// Takes the click durably and acknowledges it (type 6); a click not taken is told why,
    /// privately.
    async fn click(&self, i: Interaction, actor: Actor) -> Result<Value, Malformed> {
        let custom_id = i.data.as_ref().and_then(|d| d.custom_id.as_deref());
        let Some((action, approval_id)) = custom_id.and_then(|c| c.split_once(':')) else {
            return Ok(json!({ "type": 6 }));
        };
        if action == crate::incidents::render::COMMAND_BUTTON {
            return Ok(self
                .command_button(&i, actor, custom_id.unwrap_or_default())
                .await);
        }
        if crate::alerts::render::ACTIONS.contains(&action) {
            let (action, group_id) = (action.to_owned(), approval_id.to_owned());
            return self.alert_click(i, actor, &action, &group_id).await;
        }
        let approve = match action {
            APPROVE => true,
            DENY => false,
            _ => return Ok(json!({ "type": 6 })),
        };
        if approval_id.is_empty() || approval_id.len() > 100 {
            return Err(Malformed("button with an invalid approval id".into()));
        }
        self.register_click(&i)?;
        let click = Inbound::Click(ApprovalClick {
            platform: PLATFORM,
            user: actor.user,
            groups: Vec::new(),
            groups_unknown: false,
            channel: actor.channel,
            approval_id: approval_id.to_owned(),
            approve,
            delivery_id: Some(format!("discord:{}", i.id)),
            origin: Some(i.id),
        });
        let groups = Box::pin(std::future::ready(Membership::known(actor.groups)));
        if let Err(refusal) = self.pipeline.take(click.clone(), groups).await
            && refusal != EngineRefusal::Duplicate
        {
            let pipeline = self.pipeline.clone();
            self.pipeline.spawn(Box::pin(async move {
                pipeline.tell_refused(&click, refusal).await
            }));
        }
        Ok(json!({ "type": 6 }))
    }

    /// Records a button click's interaction with the message it is on, so replies to it go
    /// through its token (see [`DiscordSink`]).
    fn register_click(&self, i: &Interaction) -> Result<(), Malformed> {
        let message = i
            .message
            .as_ref()
            .map(|m| m.id.clone())
            .filter(|m| is_snowflake(m))
            .ok_or_else(|| Malformed("button click without its message".into()))?;
        self.sink.interactions().clicked(&i.id, &i.token, &message);
        Ok(())
    }

    /// An Ack / Silence / Expire click on an alert message (its custom id `ACTION:GROUP`):
    /// recorded by the alerts service before the ack (once per delivery), then handled in the
    /// background: the message changes, or the clicker alone is told why not (an ephemeral
    /// follow-up to the click).
    async fn alert_click(
        &self,
        i: Interaction,
        actor: Actor,
        action: &str,
        group_id: &str,
    ) -> Result<Value, Malformed> {
        if group_id.is_empty() || group_id.len() > 64 {
            return Err(Malformed("alert button with an invalid group id".into()));
        }
        self.register_click(&i)?;
        let mut click = AlertClick {
            platform: PLATFORM,
            user: actor.user,
            groups: actor.groups,
            groups_unknown: false,
            channel: actor.channel,
            action: action.to_owned(),
            group_id: group_id.to_owned(),
            delivery_id: Some(format!("discord:{}", i.id)),
            origin: Some(i.id),
        };
        let groups = Box::pin(std::future::ready(Membership::known(std::mem::take(
            &mut click.groups,
        ))));
        self.pipeline.take_alert_click(click, groups).await;
        Ok(json!({ "type": 6 }))
    }

    /// A button that runs a command (an incident card's "Take command", an alert's "Open
    /// incident"): its custom id `incident:ack --id INC-7` is the command, run as if the clicker
    /// typed it. Deferred like a typed command (type 5), so the answer is a new message, not an
    /// edit of the message the button is on.
    async fn command_button(&self, i: &Interaction, actor: Actor, custom_id: &str) -> Value {
        self.take_command(i, actor, custom_id.replacen(':', " ", 1))
            .await
    }

    /// Choices for the focused option, from the cluster (bounded by the name source's timeout;
    /// a failure answers no choices rather than an error).
    async fn autocomplete(&self, i: &Interaction) -> Value {
        let options = i.data.as_ref().map_or(&[][..], |d| &d.options);
        let (path, leaf) = commands::flatten(options);
        let value = |name: &str| {
            leaf.iter()
                .find(|o| o.name == name && !o.focused)
                .and_then(|o| o.value.as_ref()?.as_str())
                .map(str::to_owned)
        };
        let choices = match leaf.iter().find(|o| o.focused) {
            Some(focused) => match commands::name_kind(&path, &focused.name) {
                Some(kind) => {
                    let typed = focused.value.as_ref().and_then(Value::as_str).unwrap_or("");
                    let (cluster, namespace) = (value("cluster"), value("namespace"));
                    match self
                        .names
                        .names(kind, cluster.as_deref(), namespace.as_deref())
                        .await
                    {
                        Ok(names) => commands::choices(&names, typed),
                        Err(e) => {
                            tracing::info!(error = %e, "autocomplete found no names");
                            Vec::new()
                        }
                    }
                }
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        json!({ "type": 8, "data": { "choices": choices } })
    }
}

enum Refusal {
    NotServed(String),
    Malformed(String),
}

fn subject(kind: &str, id: &str) -> Option<Subject> {
    is_snowflake(id)
        .then(|| Subject::parse(&format!("{kind}:{id}")).ok())
        .flatten()
}
