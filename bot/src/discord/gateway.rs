//! Gateway mode: interactions over Discord's WebSocket gateway, so no public URL is needed.
//!
//! One connection with the `GUILDS` intent (no privileged intents): Hello → Identify (or
//! Resume) → heartbeats at the interval Discord asks for; `INTERACTION_CREATE` dispatches go
//! through the same [`Dispatcher`] as HTTP interactions, and its answer is sent back with
//! `POST /interactions/{id}/{token}/callback`. When incidents are in use on Discord
//! ([`DiscordConfig::reactions`]) it also asks for `GUILD_MESSAGE_REACTIONS` (not privileged)
//! and hands each `MESSAGE_REACTION_ADD` in a served guild (not opsbot's own) to the engine, in
//! the order they came, without holding up the read loop. A dropped connection, a missed heartbeat ACK or
//! a Reconnect (op 7) resumes the session (`resume_gateway_url`, session id, last sequence);
//! an Invalid Session that cannot be resumed identifies afresh. Closes that retrying cannot fix
//! (authentication failed, intents not allowed) end the loop with an error.
//!
//! Why not serenity's client: see ARCHITECTURE.md (its HTTP client could not be pointed at the
//! fake with its ratelimiter on); this is the small part of the gateway opsbot uses, tested
//! against a local fake gateway (`tests/tests/discord_gateway.rs`).

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use super::dispatch::{Dispatcher, Interaction};
use super::rest::{Auth, Call};
use super::{DiscordConfig, DiscordError, DiscordSink, PLATFORM};
use crate::chat::{Reaction, ReactionObserver};

/// `GUILDS`: the intent opsbot always asks for (interactions need none).
pub const INTENTS: u64 = 1;
/// `GUILD_MESSAGE_REACTIONS`: reactions in guild channels, for incident timelines.
pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
/// Reactions waiting for the engine at most; more are dropped (and logged).
const REACTION_QUEUE: usize = 1024;

/// The intents to identify with.
pub fn intents(reactions: bool) -> u64 {
    if reactions {
        INTENTS | GUILD_MESSAGE_REACTIONS
    } else {
        INTENTS
    }
}

/// A `MESSAGE_REACTION_ADD` as the engine hears it; `None` outside the served `guilds` (DMs
/// included) and for reactions by opsbot itself (`me`).
pub fn reaction(d: &Value, guilds: &[String], me: Option<&str>) -> Option<Reaction> {
    let guild = d["guild_id"]
        .as_str()
        .filter(|g| guilds.iter().any(|s| s == g))?;
    let user = d["user_id"].as_str().filter(|u| super::is_snowflake(u))?;
    if Some(user) == me {
        return None;
    }
    let channel = d["channel_id"].as_str()?;
    let message = d["message_id"].as_str()?;
    Some(Reaction {
        platform: PLATFORM,
        user: opsbot_policies::Subject::parse(&format!("discord:{user}")).ok()?,
        channel: channel.to_owned(),
        message_id: message.to_owned(),
        emoji: d["emoji"]["name"].as_str()?.to_owned(),
        text: None,
        author: None,
        link: Some(format!(
            "https://discord.com/channels/{guild}/{channel}/{message}"
        )),
    })
}
const API_VERSION: &str = "v=10&encoding=json";
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The session a dropped connection resumes.
#[derive(Debug, Clone, Default)]
struct Session {
    id: Option<String>,
    resume_url: Option<String>,
    seq: Option<u64>,
    /// opsbot's own user id, from READY.
    me: Option<String>,
}

/// Why one connection ended.
enum Ended {
    /// Stop was requested.
    Stopped,
    /// Reconnect; `resume` says whether the session may be resumed.
    Reconnect { resume: bool, why: String },
    /// Retrying cannot help (e.g. 4004 Authentication failed).
    Fatal(String),
}

/// Runs the gateway until `stop` resolves (or a fatal close). With `cfg.reactions`, reactions
/// go to `reactions` (without an observer they are not asked for).
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    sink: DiscordSink,
    mut cfg: DiscordConfig,
    reactions: Option<Arc<dyn ReactionObserver>>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DiscordError> {
    tokio::pin!(stop);
    let reactions = match reactions.filter(|_| cfg.reactions) {
        Some(observer) => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Reaction>(REACTION_QUEUE);
            tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    observer.reaction(r).await;
                }
            });
            Some(tx)
        }
        None => {
            cfg.reactions = false;
            None
        }
    };
    let mut session = Session::default();
    let mut failures = 0u32;
    loop {
        let url = match &session.resume_url {
            Some(url) if session.id.is_some() => url.clone(),
            _ => {
                match tokio::select! {
                    u = gateway_url(&sink) => u,
                    _ = &mut stop => return Ok(()),
                } {
                    Ok(url) => url,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot get the Discord gateway URL");
                        failures += 1;
                        if backoff(failures, &mut stop).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
        };
        let ended = connection(
            &url,
            &mut session,
            &dispatcher,
            &sink,
            &cfg,
            reactions.as_ref(),
            &mut stop,
        )
        .await;
        match ended {
            Ended::Stopped => return Ok(()),
            Ended::Fatal(why) => return Err(DiscordError::Gateway(why)),
            Ended::Reconnect { resume, why } => {
                tracing::info!(why = %why, resume, "Discord gateway reconnecting");
                if !resume {
                    session = Session::default();
                }
                failures += 1;
                if backoff(failures.min(3), &mut stop).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Waits before reconnecting; true when stop was requested meanwhile.
async fn backoff(
    failures: u32,
    stop: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> bool {
    let wait = Duration::from_millis(250)
        .saturating_mul(1 << failures.min(8))
        .min(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop => true,
    }
}

/// `GET /gateway/bot`: where to connect.
async fn gateway_url(sink: &DiscordSink) -> Result<String, String> {
    let res = sink
        .rest()
        .call(&Call {
            name: "get_gateway_bot",
            method: Method::GET,
            path: "/gateway/bot".to_owned(),
            route: "GET /gateway/bot".to_owned(),
            auth: Auth::Bot,
            body: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    res["url"]
        .as_str()
        .filter(|u| u.starts_with("wss://") || u.starts_with("ws://"))
        .map(str::to_owned)
        .ok_or_else(|| "the answer carries no gateway URL".to_owned())
}

/// One WebSocket connection, from Hello to its end.
async fn connection(
    url: &str,
    session: &mut Session,
    dispatcher: &Arc<Dispatcher>,
    sink: &DiscordSink,
    cfg: &DiscordConfig,
    reactions: Option<&tokio::sync::mpsc::Sender<Reaction>>,
    stop: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Ended {
    let address = format!("{}/?{API_VERSION}", url.trim_end_matches('/'));
    let ws = tokio::select! {
        c = tokio_tungstenite::connect_async(address.as_str()) => c,
        _ = &mut *stop => return Ended::Stopped,
    };
    let (mut ws, _) = match ws {
        Ok(ws) => ws,
        Err(e) => return reconnect(true, format!("connect: {e}")),
    };
    let mut interval: Option<tokio::time::Interval> = None;
    let mut acked = true;
    loop {
        let tick = async {
            match interval.as_mut() {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = tick => {
                if !acked {
                    let _ = ws.close(None).await;
                    return reconnect(true, "no heartbeat ACK".into());
                }
                acked = false;
                if send(&mut ws, json!({"op": 1, "d": session.seq})).await.is_err() {
                    return reconnect(true, "heartbeat send failed".into());
                }
                continue;
            }
            _ = &mut *stop => {
                let _ = ws.close(None).await;
                return Ended::Stopped;
            }
        };
        let text = match frame {
            Some(Ok(Frame::Text(t))) => t,
            Some(Ok(Frame::Close(c))) => {
                let code = c.as_ref().map(|c| u16::from(c.code)).unwrap_or(1000);
                return closed(code);
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return reconnect(true, format!("read: {e}")),
            None => return reconnect(true, "connection closed".into()),
        };
        let Ok(msg) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(s) = msg["s"].as_u64() {
            session.seq = Some(s);
        }
        match msg["op"].as_u64() {
            // Hello: start heartbeating, then identify or resume.
            Some(10) => {
                let every = msg["d"]["heartbeat_interval"]
                    .as_u64()
                    .unwrap_or(41_250)
                    .max(100);
                let mut i = tokio::time::interval(Duration::from_millis(every));
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i.tick().await;
                interval = Some(i);
                let hello = match (&session.id, session.seq) {
                    (Some(id), Some(seq)) => json!({"op": 6, "d": {
                        "token": cfg.token, "session_id": id, "seq": seq}}),
                    _ => json!({"op": 2, "d": {
                        "token": cfg.token,
                        "intents": intents(cfg.reactions),
                        "properties": {"os": std::env::consts::OS, "browser": "opsbot", "device": "opsbot"},
                    }}),
                };
                if send(&mut ws, hello).await.is_err() {
                    return reconnect(true, "identify send failed".into());
                }
            }
            Some(11) => acked = true,
            Some(1) => {
                let _ = send(&mut ws, json!({"op": 1, "d": session.seq})).await;
            }
            Some(7) => {
                let _ = ws.close(None).await;
                return reconnect(true, "Discord asked to reconnect".into());
            }
            Some(9) => {
                let resumable = msg["d"].as_bool() == Some(true);
                let _ = ws.close(None).await;
                return reconnect(resumable, "invalid session".into());
            }
            Some(0) => match msg["t"].as_str() {
                Some("READY") => {
                    session.id = msg["d"]["session_id"].as_str().map(str::to_owned);
                    session.resume_url = msg["d"]["resume_gateway_url"].as_str().map(str::to_owned);
                    session.me = msg["d"]["user"]["id"].as_str().map(str::to_owned);
                    tracing::info!("Discord gateway ready");
                }
                Some("RESUMED") => tracing::info!("Discord gateway session resumed"),
                Some("INTERACTION_CREATE") => interaction(dispatcher, sink, &msg["d"]),
                Some("MESSAGE_REACTION_ADD") => {
                    let seen = reaction(&msg["d"], &cfg.guilds, session.me.as_deref());
                    if let (Some(tx), Some(r)) = (reactions, seen)
                        && tx.try_send(r).is_err()
                    {
                        tracing::warn!("too many reactions waiting for the engine: one dropped");
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}

fn reconnect(resume: bool, why: String) -> Ended {
    Ended::Reconnect { resume, why }
}

/// What a close code means: 4004 (authentication), 4010–4014 (shard, version, intents) cannot
/// be fixed by retrying; 4007/4009 (bad sequence, session timed out) need a new session.
fn closed(code: u16) -> Ended {
    match code {
        4004 | 4010 | 4011 | 4012 | 4013 | 4014 => {
            Ended::Fatal(format!("the gateway closed the connection with {code}"))
        }
        4007 | 4009 => reconnect(false, format!("closed with {code}")),
        _ => reconnect(true, format!("closed with {code}")),
    }
}

async fn send<S>(ws: &mut S, v: Value) -> Result<(), ()>
where
    S: futures::Sink<Frame> + Unpin,
{
    ws.send(Frame::text(v.to_string())).await.map_err(|_| ())
}

/// Discord takes an interaction's first answer within 3 s of its creation. One older than
/// this (replayed after a resumed session, say) cannot be acknowledged any more, and its person
/// was already told it failed: it is not run. (2 s more than Discord's limit, for clock skew.)
const INTERACTION_MAX_AGE: Duration = Duration::from_secs(5);
/// Discord's epoch, 2015-01-01, in Unix milliseconds: snowflakes count from it.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// How old the interaction with snowflake `id` is (negative: from a clock ahead of ours).
fn age_of(id: &str, now: jiff::Timestamp) -> Option<i64> {
    let created = i64::try_from(id.parse::<u64>().ok()? >> 22).ok()? + DISCORD_EPOCH_MS;
    Some(now.as_millisecond() - created)
}

/// Answers one `INTERACTION_CREATE` through the dispatcher and the callback endpoint, in the
/// background (the read loop never waits on it).
fn interaction(dispatcher: &Arc<Dispatcher>, sink: &DiscordSink, d: &Value) {
    let Ok(i) = serde_json::from_value::<Interaction>(d.clone()) else {
        tracing::info!("gateway interaction that is not an interaction: ignored");
        return;
    };
    let max_age = i64::try_from(INTERACTION_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
    if let Some(age) = age_of(&i.id, jiff::Timestamp::now()).filter(|a| *a > max_age) {
        dispatcher.reject(
            crate::engine::RejectionKind::StaleTimestamp,
            format!(
                "interaction {} arrived {} ms after it was made: too late to answer, not run",
                i.id, age
            ),
        );
        return;
    }
    let (dispatcher, sink) = (dispatcher.clone(), sink.clone());
    tokio::spawn(async move {
        let (id, token) = (i.id.clone(), i.token.clone());
        match dispatcher.interaction(i).await {
            Ok(answer) => {
                if let Err(e) = sink.callback(&id, &token, answer).await {
                    tracing::warn!(error = %e, "interaction callback failed");
                }
            }
            Err(e) => dispatcher.reject(crate::engine::RejectionKind::Malformed, e.to_string()),
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn interaction_ages_come_from_their_snowflakes() {
        let now: jiff::Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let made = |ms_ago: i64| {
            (((now.as_millisecond() - ms_ago - super::DISCORD_EPOCH_MS) as u64) << 22).to_string()
        };
        assert_eq!(super::age_of(&made(1500), now), Some(1500));
        assert_eq!(super::age_of(&made(3_600_000), now), Some(3_600_000));
        assert!(super::age_of("not a snowflake", now).is_none());
    }

    use super::*;

    fn add(guild: Option<&str>, user: &str) -> Value {
        let mut d = json!({
            "user_id": user, "channel_id": "30", "message_id": "40",
            "emoji": {"id": null, "name": "📌"}, "burst": false, "type": 0,
            "message_author_id": "50",
        });
        if let Some(g) = guild {
            d["guild_id"] = g.into();
        }
        d
    }

    #[test]
    fn reactions_in_served_guilds_by_others_reach_the_engine() {
        let guilds = vec!["20".to_owned()];
        let r = reaction(&add(Some("20"), "10"), &guilds, Some("99")).unwrap();
        assert_eq!(r.platform, "discord");
        assert_eq!(r.user.to_string(), "discord:10");
        assert_eq!((r.channel.as_str(), r.message_id.as_str()), ("30", "40"));
        assert_eq!(r.emoji, "📌");
        assert_eq!(
            r.link.as_deref(),
            Some("https://discord.com/channels/20/30/40")
        );
        assert!(r.text.is_none() && r.author.is_none());
        assert!(reaction(&add(Some("21"), "10"), &guilds, None).is_none());
        assert!(reaction(&add(None, "10"), &guilds, None).is_none());
        assert!(reaction(&add(Some("20"), "99"), &guilds, Some("99")).is_none());
    }

    #[test]
    fn the_reactions_intent_only_when_asked() {
        assert_eq!(intents(false), 1);
        assert_eq!(intents(true), 1025);
    }
}
