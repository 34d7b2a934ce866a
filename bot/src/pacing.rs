//! Paced edits: at most one edit of a message per interval, newest state wins.
//!
//! Chat platforms rate-limit message edits, and progress can arrive faster than that. An edit
//! that arrives sooner than `interval` after the last one sent for the same message waits; if
//! a newer edit of that message arrives while it waits, the older one is dropped (superseded,
//! not lost: the message ends in the newest state). Edits of one message are sent one at a
//! time, in order. Shared by the Slack and Discord sinks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Entries kept before idle ones are pruned.
const PRUNE_AT: usize = 256;

/// Paces edits per message key.
#[derive(Debug, Clone)]
pub struct EditPacer {
    interval: Duration,
    messages: Arc<Mutex<HashMap<String, Pace>>>,
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

impl Pace {
    /// The pacing of the message `key`, new if it has none yet.
    fn of<'a>(messages: &'a mut HashMap<String, Pace>, key: &str) -> &'a mut Pace {
        messages.entry(key.to_owned()).or_insert_with(|| Pace {
            generation: 0,
            in_flight: 0,
            last_sent: None,
            send: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}

/// The right to send one edit now; dropping it records the send time.
struct Turn<'a> {
    in_flight: InFlight<'a>,
    _send: tokio::sync::OwnedMutexGuard<()>,
}

impl EditPacer {
    pub fn new(interval: Duration) -> Self {
        EditPacer {
            interval,
            messages: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn messages(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pace>> {
        self.messages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one edit of the message `key` through `send` when its turn comes. An edit
    /// superseded while it waited is not sent: the newer one carries the newest state.
    pub async fn paced<E, F>(&self, key: &str, send: impl FnOnce() -> F) -> Result<(), E>
    where
        F: std::future::Future<Output = Result<(), E>>,
    {
        match self.turn(key).await {
            Some(_turn) => send().await,
            None => Ok(()),
        }
    }

    /// Records that the message `key` was just written outside [`EditPacer::paced`] (e.g. a
    /// deferred response filled in), so its next edit keeps the interval from that write.
    pub fn written(&self, key: &str) {
        let mut messages = self.messages();
        let pace = Pace::of(&mut messages, key);
        pace.last_sent = Some(Instant::now());
    }

    /// Waits until an edit of `key` may be sent. `None` when a newer edit of the same message
    /// arrived meanwhile: then this one must not be sent.
    async fn turn(&self, key: &str) -> Option<Turn<'_>> {
        let interval = self.interval;
        let (mine, send) = {
            let mut messages = self.messages();
            if messages.len() >= PRUNE_AT {
                messages.retain(|_, p| {
                    p.in_flight > 0 || p.last_sent.is_some_and(|t| t.elapsed() < interval)
                });
            }
            let pace = Pace::of(&mut messages, key);
            pace.generation += 1;
            pace.in_flight += 1;
            (pace.generation, pace.send.clone())
        };
        let in_flight = InFlight {
            pacer: self,
            key: key.to_owned(),
        };
        let guard = send.lock_owned().await;
        let last_sent = self.messages().get(key).and_then(|p| p.last_sent);
        if let Some(last) = last_sent {
            tokio::time::sleep_until(last + interval).await;
        }
        let superseded = self
            .messages()
            .get(key)
            .is_some_and(|p| p.generation != mine);
        (!superseded).then_some(Turn {
            in_flight,
            _send: guard,
        })
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let InFlight { pacer, key } = &self.in_flight;
        if let Some(p) = pacer.messages().get_mut(key) {
            p.last_sent = Some(Instant::now());
        }
    }
}

/// Counts an edit out when it stops waiting (also when its future is dropped).
struct InFlight<'a> {
    pacer: &'a EditPacer,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pacer.messages().get_mut(&self.key) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn edits_are_spaced_and_the_newest_wins() {
        let pacer = EditPacer::new(INTERVAL);
        let start = Instant::now();
        drop(pacer.turn("m").await.expect("the first edit goes at once"));
        // Two more edits arrive together: the older gives way, the newer goes an interval on.
        let (a, b) = tokio::join!(pacer.turn("m"), async {
            tokio::task::yield_now().await;
            pacer.turn("m").await.map(|_| Instant::now())
        });
        assert!(a.is_none());
        assert!(b.unwrap() - start >= INTERVAL);
        // Another message has its own pace: its first edit is not superseded by `m`'s.
        assert!(pacer.turn("n").await.is_some());
    }
}
