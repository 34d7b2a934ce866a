//! Channel automation for incidents on Discord: create, topic, invite, pin, archive.
//!
//! Every call goes through the sink's [`super::rest::DiscordRest`] (buckets, 429s, retries) with the
//! permission it needs, so a 403 `50013 Missing Permissions` comes back as
//! [`DeliveryError::NotPermitted`] naming exactly that permission:
//!
//! | what | call | permission |
//! |---|---|---|
//! | create | `GET /guilds/{guild}/channels` (a taken name), `POST /guilds/{guild}/channels` | Manage Channels |
//! | topic | `PATCH /channels/{id}` `{topic}` | Manage Channels |
//! | invite | `PUT /channels/{id}/permissions/{user or role}` (View Channel + Send Messages) | Manage Roles |
//! | pin | `PUT /channels/{id}/messages/pins/{message}` | Pin Messages |
//! | archive | `PATCH /channels/{id}` `{parent_id}` | Manage Channels |
//! | archive | `PUT /channels/{id}/permissions/{…}` (read-only) | Manage Roles |
//!
//! Discord allows two channels with one name, so `create` looks for the name first and answers
//! [`DeliveryError::NameTaken`] itself. Archiving makes the channel read-only: @everyone (the
//! role whose id is the guild's) is denied Send Messages, the Send Messages that invitations
//! allowed is taken back (a member's or role's allow would beat the @everyone deny), and opsbot
//! itself keeps it, so it can still post in the channel (a reopened incident).

use http::Method;
use opsbot_policies::Subject;
use serde_json::{Value, json};

use super::rest::{Auth, Call};
use super::{DiscordSink, PLATFORM};
use crate::chat::{ChannelRef, DeliveryError, MessageRef};

/// Discord permission bits opsbot uses (`developers/topics/permissions`).
pub mod bits {
    pub const MANAGE_CHANNELS: u64 = 1 << 4;
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    pub const SEND_MESSAGES: u64 = 1 << 11;
    pub const EMBED_LINKS: u64 = 1 << 14;
    pub const MANAGE_ROLES: u64 = 1 << 28;
    /// Split from Manage Messages in 2025; required to pin since February 2026.
    pub const PIN_MESSAGES: u64 = 1 << 51;
}

/// The permissions as the Discord client names them, for [`DeliveryError::NotPermitted`].
pub const MANAGE_CHANNELS: &str = "the Manage Channels permission";
pub const MANAGE_ROLES: &str = "the Manage Roles permission (Manage Permissions on a channel)";
pub const PIN_MESSAGES: &str = "the Pin Messages permission";

/// Channel types (`developers/resources/channel#channel-object-channel-types`).
const GUILD_TEXT: u64 = 0;
const GUILD_CATEGORY: u64 = 4;
/// Overwrite types.
const ROLE: u8 = 0;
const MEMBER: u8 = 1;
/// Discord's longest channel topic.
const TOPIC_CHARS: usize = 1024;

/// What invited people and roles may do in an incident channel.
pub const INVITED: u64 = bits::VIEW_CHANNEL | bits::SEND_MESSAGES;

/// A permission overwrite as Discord holds it (`allow` and `deny` are decimal strings).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Overwrite {
    id: String,
    kind: u8,
    allow: u64,
    deny: u64,
}

impl Overwrite {
    fn from_json(v: &Value) -> Option<Overwrite> {
        let bits = |k: &str| match &v[k] {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => Some(0),
        };
        Some(Overwrite {
            id: v["id"].as_str()?.to_owned(),
            kind: u8::try_from(v["type"].as_u64()?).ok()?,
            allow: bits("allow")?,
            deny: bits("deny")?,
        })
    }
}

/// Where a subject goes in a channel's overwrites: a member (`discord:<id>`) or a role
/// (`discord-role:<id>`); subjects of other platforms have no place on Discord.
fn overwrite_target(who: &Subject) -> Option<(u8, &str)> {
    let id = who.id();
    if !super::is_snowflake(id) {
        return None;
    }
    match who.kind() {
        "discord" => Some((MEMBER, id)),
        "discord-role" => Some((ROLE, id)),
        _ => None,
    }
}

/// `<@id>` for a person, `<@&id>` for a role; other subjects as they are written.
pub fn mention(who: &Subject) -> String {
    match overwrite_target(who) {
        Some((MEMBER, id)) => format!("<@{id}>"),
        Some((_, id)) => format!("<@&{id}>"),
        None => who.to_string(),
    }
}

/// `<#id>`: Discord shows it as the channel's name, a link.
pub fn channel_link(channel: &ChannelRef) -> String {
    format!("<#{}>", channel.id)
}

fn bot(
    name: &'static str,
    method: Method,
    path: String,
    route: String,
    body: Option<Value>,
) -> Call {
    Call {
        name,
        method,
        path,
        route,
        auth: Auth::Bot,
        body,
    }
}

impl DiscordSink {
    /// `POST /guilds/{guild}/channels`, after `GET` showed no channel of that name.
    pub(super) async fn create_incident_channel(
        &self,
        name: &str,
    ) -> Result<ChannelRef, DeliveryError> {
        let guild = self.guild().ok_or_else(|| DeliveryError::Refused {
            method: "create_channel".to_owned(),
            error: "no server to create it in (discord.guilds is empty)".to_owned(),
        })?;
        let existing = self
            .rest()
            .call_needing(
                &bot(
                    "get_guild_channels",
                    Method::GET,
                    format!("/guilds/{guild}/channels"),
                    format!("GET /guilds/{guild}/channels"),
                    None,
                ),
                super::rest::VIEW_CHANNEL_GRANT,
            )
            .await?;
        // Discord keeps text channel names in lower case.
        let wanted = name.to_lowercase();
        let taken = existing.as_array().into_iter().flatten().any(|c| {
            c["type"].as_u64() != Some(GUILD_CATEGORY)
                && c["name"].as_str().map(str::to_lowercase).as_deref() == Some(wanted.as_str())
        });
        if taken {
            return Err(DeliveryError::NameTaken {
                name: name.to_owned(),
            });
        }
        let mut body = json!({ "name": name, "type": GUILD_TEXT });
        if let Some(category) = self.incident_category() {
            body["parent_id"] = category.into();
        }
        let created = self
            .rest()
            .call_needing(
                &bot(
                    "create_channel",
                    Method::POST,
                    format!("/guilds/{guild}/channels"),
                    format!("POST /guilds/{guild}/channels"),
                    Some(body),
                ),
                MANAGE_CHANNELS,
            )
            .await?;
        let id = created["id"]
            .as_str()
            .filter(|id| super::is_snowflake(id))
            .ok_or_else(|| DeliveryError::Refused {
                method: "create_channel".to_owned(),
                error: "the answer carries no channel id".to_owned(),
            })?;
        Ok(ChannelRef {
            platform: PLATFORM.to_owned(),
            id: id.to_owned(),
            name: created["name"].as_str().unwrap_or(name).to_owned(),
        })
    }

    /// `PATCH /channels/{id}` with the fields in `body`.
    async fn modify_channel(
        &self,
        name: &'static str,
        channel: &str,
        body: Value,
    ) -> Result<Value, DeliveryError> {
        self.rest()
            .call_needing(
                &bot(
                    name,
                    Method::PATCH,
                    format!("/channels/{channel}"),
                    format!("PATCH /channels/{channel}"),
                    Some(body),
                ),
                MANAGE_CHANNELS,
            )
            .await
    }

    pub(super) async fn set_channel_topic(
        &self,
        channel: &str,
        topic: &str,
    ) -> Result<(), DeliveryError> {
        let topic: String = topic.chars().take(TOPIC_CHARS).collect();
        self.modify_channel("set_topic", channel, json!({ "topic": topic }))
            .await
            .map(|_| ())
    }

    /// `PUT /channels/{channel}/permissions/{id}`.
    async fn put_overwrite(&self, channel: &str, o: &Overwrite) -> Result<(), DeliveryError> {
        self.rest()
            .call_needing(
                &bot(
                    "edit_channel_permissions",
                    Method::PUT,
                    format!("/channels/{channel}/permissions/{}", o.id),
                    format!("PUT /channels/{channel}/permissions/:id"),
                    Some(json!({
                        "type": o.kind,
                        "allow": o.allow.to_string(),
                        "deny": o.deny.to_string(),
                    })),
                ),
                MANAGE_ROLES,
            )
            .await
            .map(|_| ())
    }

    /// Lets each Discord person and role in `who` see and write in the channel. Everyone is
    /// tried; the first failure is the answer.
    pub(super) async fn invite_to_channel(
        &self,
        channel: &str,
        who: &[Subject],
    ) -> Result<(), DeliveryError> {
        let mut first_error = None;
        for subject in who {
            let Some((kind, id)) = overwrite_target(subject) else {
                tracing::debug!(subject = %subject, "not a Discord person or role: not invited");
                continue;
            };
            let o = Overwrite {
                id: id.to_owned(),
                kind,
                allow: INVITED,
                deny: 0,
            };
            if let Err(e) = self.put_overwrite(channel, &o).await {
                // Without the permission every other one fails the same way.
                let stop = matches!(e, DeliveryError::NotPermitted { .. });
                first_error.get_or_insert(e);
                if stop {
                    break;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub(super) async fn pin_message(&self, message: &MessageRef) -> Result<(), DeliveryError> {
        let channel = &message.channel;
        self.rest()
            .call_needing(
                &bot(
                    "pin_message",
                    Method::PUT,
                    format!("/channels/{channel}/messages/pins/{}", message.id),
                    format!("PUT /channels/{channel}/messages/pins/:id"),
                    None,
                ),
                PIN_MESSAGES,
            )
            .await
            .map(|_| ())
    }

    /// The bot's own user id (`GET /users/@me`, asked once).
    async fn me(&self) -> Result<String, DeliveryError> {
        self.me_cell()
            .get_or_try_init(|| async {
                let me = self
                    .rest()
                    .call(&bot(
                        "get_current_user",
                        Method::GET,
                        "/users/@me".to_owned(),
                        "GET /users/@me".to_owned(),
                        None,
                    ))
                    .await?;
                me["id"]
                    .as_str()
                    .filter(|id| super::is_snowflake(id))
                    .map(str::to_owned)
                    .ok_or_else(|| DeliveryError::Refused {
                        method: "get_current_user".to_owned(),
                        error: "the answer carries no user id".to_owned(),
                    })
            })
            .await
            .cloned()
    }

    /// Moves the channel to the archive category (when one is configured) and makes it
    /// read-only (see the module docs).
    pub(super) async fn archive_channel(&self, channel: &str) -> Result<(), DeliveryError> {
        let current = self
            .rest()
            .call_needing(
                &bot(
                    "get_channel",
                    Method::GET,
                    format!("/channels/{channel}"),
                    format!("GET /channels/{channel}"),
                    None,
                ),
                super::rest::VIEW_CHANNEL_GRANT,
            )
            .await?;
        let guild = current["guild_id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| self.guild().map(str::to_owned))
            .ok_or_else(|| DeliveryError::Refused {
                method: "archive_channel".to_owned(),
                error: "not a server channel".to_owned(),
            })?;
        let overwrites: Vec<Overwrite> = current["permission_overwrites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Overwrite::from_json)
            .collect();
        if let Some(archive) = self.archive_category() {
            self.modify_channel("archive_channel", channel, json!({ "parent_id": archive }))
                .await?;
        }
        // opsbot first, so it is never locked out of the channel half-way.
        let me = self.me().await?;
        let mine = overwrites.iter().find(|o| o.kind == MEMBER && o.id == me);
        let keep = Overwrite {
            id: me.clone(),
            kind: MEMBER,
            allow: mine.map_or(0, |o| o.allow) | INVITED,
            deny: mine.map_or(0, |o| o.deny) & !INVITED,
        };
        if mine != Some(&keep) {
            self.put_overwrite(channel, &keep).await?;
        }
        let everyone = overwrites
            .iter()
            .find(|o| o.kind == ROLE && o.id == guild)
            .cloned()
            .unwrap_or(Overwrite {
                id: guild.clone(),
                kind: ROLE,
                allow: 0,
                deny: 0,
            });
        let read_only = Overwrite {
            allow: everyone.allow & !bits::SEND_MESSAGES,
            deny: everyone.deny | bits::SEND_MESSAGES,
            ..everyone
        };
        self.put_overwrite(channel, &read_only).await?;
        for o in &overwrites {
            let everyone_or_me =
                (o.kind == ROLE && o.id == guild) || (o.kind == MEMBER && o.id == me);
            if !everyone_or_me && o.allow & bits::SEND_MESSAGES != 0 {
                let taken_back = Overwrite {
                    allow: o.allow & !bits::SEND_MESSAGES,
                    ..o.clone()
                };
                self.put_overwrite(channel, &taken_back).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_of_people_roles_and_channels() {
        let s = |s: &str| Subject::parse(s).unwrap();
        assert_eq!(mention(&s("discord:123")), "<@123>");
        assert_eq!(mention(&s("discord-role:42")), "<@&42>");
        assert_eq!(mention(&s("slack:U1")), "slack:U1");
        assert_eq!(mention(&s("discord:not-an-id")), "discord:not-an-id");
        let c = ChannelRef {
            platform: "discord".into(),
            id: "77".into(),
            name: "inc-1-db".into(),
        };
        assert_eq!(channel_link(&c), "<#77>");
    }

    #[test]
    fn overwrites_read_discords_strings() {
        let o = Overwrite::from_json(&json!({"id": "5", "type": 1, "allow": "3072", "deny": "0"}));
        assert_eq!(
            o,
            Some(Overwrite {
                id: "5".into(),
                kind: MEMBER,
                allow: INVITED,
                deny: 0
            })
        );
        assert_eq!(INVITED, 3072);
        assert!(Overwrite::from_json(&json!({"id": "5", "type": 0, "allow": "x"})).is_none());
    }
}
