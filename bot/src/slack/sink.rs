//! [`SlackSink`]: how the engine posts and edits messages in Slack.
//!
//! Posting is `chat.postMessage`, editing `chat.update`. Edits of one message are paced to at
//! most one per `update_interval` (a second by default): an edit that arrives sooner waits, and
//! if a newer edit of the same message arrives while it waits, only the newer one is sent (the
//! older is superseded, not lost: the message ends in the newest state).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opsbot_commands::Reply;
use tokio::time::Instant;

use super::render::render;
use super::web::SlackWeb;
use super::{PLATFORM, SlackConfig};
use crate::chat::{ChatSink, DeliveryError, MessageRef};

/// Posts and updates opsbot's messages in Slack.
#[derive(Clone, Debug)]
pub struct SlackSink {
    web: SlackWeb,
    update_interval: Duration,
    pacing: Arc<Mutex<HashMap<(String, String), Pace>>>,
}

#[derive(Debug)]
struct Pace {
    /// Bumped by every edit request; an edit that waited and finds a newer one gives way.
    generation: u64,
    /// Edits waiting or sending.
    in_flight: usize,
    /// When the last edit of this message was sent.
    last_sent: Option<Instant>,
    /// Serializes the sends for one message.
    send: Arc<tokio::sync::Mutex<()>>,
}

/// Pacing entries kept before idle ones are pruned.
const PACING_PRUNE_AT: usize = 256;

impl SlackSink {
    pub fn new(cfg: &SlackConfig) -> Self {
        Self::with_web(SlackWeb::new(cfg), cfg.update_interval)
    }

    pub fn with_web(web: SlackWeb, update_interval: Duration) -> Self {
        SlackSink {
            web,
            update_interval,
            pacing: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn web(&self) -> &SlackWeb {
        &self.web
    }

    fn pacing(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Pace>> {
        self.pacing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ChatSink for SlackSink {
    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, DeliveryError> {
        let ts = self.web.post_message(channel, render(reply)).await?;
        Ok(MessageRef {
            platform: PLATFORM.to_owned(),
            channel: channel.to_owned(),
            id: ts,
        })
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        let key = (message.channel.clone(), message.id.clone());
        let interval = self.update_interval;
        let (my_generation, send) = {
            let mut pacing = self.pacing();
            if pacing.len() >= PACING_PRUNE_AT {
                pacing.retain(|_, p| {
                    p.in_flight > 0 || p.last_sent.is_some_and(|t| t.elapsed() < interval)
                });
            }
            let pace = pacing.entry(key.clone()).or_insert_with(|| Pace {
                generation: 0,
                in_flight: 0,
                last_sent: None,
                send: Arc::new(tokio::sync::Mutex::new(())),
            });
            pace.generation += 1;
            pace.in_flight += 1;
            (pace.generation, pace.send.clone())
        };
        let _in_flight = InFlight {
            sink: self,
            key: &key,
        };

        let _turn = send.lock().await;
        let last_sent = self.pacing().get(&key).and_then(|p| p.last_sent);
        if let Some(last) = last_sent {
            let next = last + interval;
            if next > Instant::now() {
                tokio::time::sleep_until(next).await;
            }
        }
        let superseded = self
            .pacing()
            .get(&key)
            .is_some_and(|p| p.generation != my_generation);
        if superseded {
            // A newer edit of this message is waiting behind us and carries the newest state.
            return Ok(());
        }
        let result = self
            .web
            .update_message(&message.channel, &message.id, render(reply))
            .await;
        if let Some(p) = self.pacing().get_mut(&key) {
            p.last_sent = Some(Instant::now());
        }
        result
    }
}

/// Counts an edit out when it is done (also when its future is dropped).
struct InFlight<'a> {
    sink: &'a SlackSink,
    key: &'a (String, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.sink.pacing().get_mut(self.key) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }
}
