//! The `response_url`s of recent slash commands, so a reply can still reach people in a channel
//! the bot is not a member of (a DM with someone else, a private channel).
//!
//! Slack hands every slash command a `response_url`, valid for 30 minutes and up to 5 uses. The
//! dispatcher remembers the latest one per channel here; the sink uses it when `chat.postMessage`
//! is refused with `not_in_channel` / `channel_not_found`. A URL is a capability (whoever holds
//! it can post): it is never logged, never put in the audit log, and never put in a
//! [`MessageRef`](crate::chat::MessageRef): messages refer to it by a random id only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long Slack accepts posts to a `response_url`.
pub const TTL: Duration = Duration::from_secs(30 * 60);
/// How many posts Slack accepts per `response_url`.
pub const MAX_USES: u32 = 5;
/// URLs remembered at most (the oldest give way).
pub const CAPACITY: usize = 10_000;
/// The prefix of a [`MessageRef`](crate::chat::MessageRef) id for a message that went through a
/// `response_url`; the rest is the random id of the URL's entry.
pub const ID_PREFIX: &str = "response_url:";

/// Remembered `response_url`s: bounded, expiring, with their use counts. Cheap to clone (shared).
#[derive(Clone)]
pub struct ResponseUrls {
    inner: Arc<Mutex<Inner>>,
    ttl: Duration,
    max_uses: u32,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    /// The newest entry id per channel.
    latest: HashMap<String, String>,
    /// Entry ids in the order they were received (oldest first).
    order: VecDeque<String>,
    /// Added to the clock (test hook: simulates time passing).
    skew: Duration,
}

struct Entry {
    channel: String,
    url: String,
    received: Instant,
    uses: u32,
    /// The title of the last message posted through this URL.
    last_title: Option<String>,
}

/// One use of a remembered URL, taken from the store (counted as used).
pub struct Lease {
    /// The entry's id (what goes into a message reference after [`ID_PREFIX`]).
    pub id: String,
    url: String,
    /// Uses left after this one.
    pub uses_left: u32,
}

impl Lease {
    /// The URL itself. Do not log it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("url", &"***")
            .field("uses_left", &self.uses_left)
            .finish()
    }
}

impl std::fmt::Debug for ResponseUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseUrls")
            .field("remembered", &self.len())
            .field("ttl", &self.ttl)
            .field("max_uses", &self.max_uses)
            .finish()
    }
}

impl Default for ResponseUrls {
    fn default() -> Self {
        ResponseUrls::new(TTL, MAX_USES, CAPACITY)
    }
}

impl ResponseUrls {
    pub fn new(ttl: Duration, max_uses: u32, capacity: usize) -> Self {
        ResponseUrls {
            inner: Arc::new(Mutex::new(Inner::default())),
            ttl,
            max_uses,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `url` as the newest for `channel`; returns its entry id. The same URL again
    /// keeps its entry (and its use count).
    pub fn remember(&self, channel: &str, url: &str) -> String {
        self.insert(channel, url, true)
    }

    /// Remembers a click's `url`, which replaces the message the button was on: reachable by
    /// its entry id only, never taken for new posts in the channel.
    pub fn remember_for_message(&self, channel: &str, url: &str) -> String {
        self.insert(channel, url, false)
    }

    fn insert(&self, channel: &str, url: &str, newest: bool) -> String {
        let mut inner = self.lock();
        let now = Instant::now() + inner.skew;
        self.prune(&mut inner, now);
        if let Some(id) = inner.latest.get(channel)
            && inner.by_id.get(id).is_some_and(|e| e.url == url)
        {
            return id.clone();
        }
        while inner.by_id.len() >= self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            remove(&mut inner, &old);
        }
        let id = format!("{:016x}", rand::random::<u64>());
        inner.by_id.insert(
            id.clone(),
            Entry {
                channel: channel.to_owned(),
                url: url.to_owned(),
                received: now,
                uses: 0,
                last_title: None,
            },
        );
        inner.order.push_back(id.clone());
        if newest {
            inner.latest.insert(channel.to_owned(), id.clone());
        }
        id
    }

    /// Takes a use of the newest valid URL for `channel`.
    pub fn take_latest(&self, channel: &str, title: &str) -> Option<Lease> {
        let mut inner = self.lock();
        let id = inner.latest.get(channel)?.clone();
        self.take_locked(&mut inner, channel, &id, title)
    }

    /// Takes a use of the URL with entry `id` (it must belong to `channel` and still be valid).
    pub fn take(&self, channel: &str, id: &str, title: &str) -> Option<Lease> {
        let mut inner = self.lock();
        self.take_locked(&mut inner, channel, id, title)
    }

    /// Whether an edit titled `title` of the message sent through entry `id` should be skipped
    /// to keep the URL's few uses for what matters: true when the edit keeps the title of what
    /// was last posted through it (a progress tick, not the outcome).
    pub fn is_progress_tick(&self, id: &str, title: &str) -> bool {
        let inner = self.lock();
        inner
            .by_id
            .get(id)
            .is_some_and(|e| e.last_title.as_deref() == Some(title))
    }

    fn take_locked(
        &self,
        inner: &mut Inner,
        channel: &str,
        id: &str,
        title: &str,
    ) -> Option<Lease> {
        let now = Instant::now() + inner.skew;
        let entry = inner.by_id.get_mut(id)?;
        if entry.channel != channel
            || now.saturating_duration_since(entry.received) >= self.ttl
            || entry.uses >= self.max_uses
        {
            return None;
        }
        entry.uses += 1;
        entry.last_title = Some(title.to_owned());
        Some(Lease {
            id: id.to_owned(),
            url: entry.url.clone(),
            uses_left: self.max_uses - entry.uses,
        })
    }

    /// Drops expired entries (they are in receiving order).
    fn prune(&self, inner: &mut Inner, now: Instant) {
        while let Some(id) = inner.order.front() {
            let expired = inner
                .by_id
                .get(id)
                .is_none_or(|e| now.saturating_duration_since(e.received) >= self.ttl);
            if !expired {
                break;
            }
            if let Some(id) = inner.order.pop_front() {
                remove(inner, &id);
            }
        }
    }

    /// How many URLs are remembered (expired ones may still count until the next `remember`).
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Test hook: lets `by` pass on this store's clock (e.g. 30 minutes, to expire every URL).
    pub fn advance_clock(&self, by: Duration) {
        self.lock().skew += by;
    }
}

fn remove(inner: &mut Inner, id: &str) {
    if let Some(e) = inner.by_id.remove(id)
        && inner.latest.get(&e.channel).map(String::as_str) == Some(id)
    {
        inner.latest.remove(&e.channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_url_per_channel_is_used_up_to_max_uses() {
        let urls = ResponseUrls::new(TTL, 3, 100);
        let a = urls.remember("C1", "https://hooks.example/a");
        assert_eq!(urls.remember("C1", "https://hooks.example/a"), a);
        assert!(urls.take_latest("C2", "t").is_none());
        let l = urls.take_latest("C1", "t").unwrap();
        assert_eq!(
            (l.id.as_str(), l.url(), l.uses_left),
            (a.as_str(), "https://hooks.example/a", 2)
        );
        assert!(!format!("{l:?}").contains("hooks.example"));
        let b = urls.remember("C1", "https://hooks.example/b");
        assert_ne!(a, b);
        assert_eq!(
            urls.take_latest("C1", "t").unwrap().url(),
            "https://hooks.example/b"
        );
        // The older URL is still there by its id, for edits of what went through it.
        assert_eq!(urls.take("C1", &a, "t").unwrap().uses_left, 1);
        assert!(urls.take("C2", &a, "t").is_none(), "another channel's id");
        assert!(urls.is_progress_tick(&a, "t"));
        assert!(!urls.is_progress_tick(&a, "outcome"));
        assert_eq!(urls.take("C1", &a, "t").unwrap().uses_left, 0);
        assert!(urls.take("C1", &a, "t").is_none(), "used up");
        assert!(!format!("{urls:?}").contains("hooks.example"));
    }

    #[test]
    fn urls_expire_after_the_ttl() {
        let urls = ResponseUrls::new(Duration::from_secs(60), 5, 100);
        let a = urls.remember("C1", "https://hooks.example/a");
        urls.advance_clock(Duration::from_secs(59));
        assert!(urls.take("C1", &a, "t").is_some());
        urls.advance_clock(Duration::from_secs(1));
        assert!(urls.take("C1", &a, "t").is_none());
        assert!(urls.take_latest("C1", "t").is_none());
        assert_eq!(urls.len(), 1);
        // Expired entries are dropped when the next one comes in.
        urls.remember("C2", "https://hooks.example/b");
        assert_eq!(urls.len(), 1);
        assert!(urls.take_latest("C2", "t").is_some());
    }

    #[test]
    fn the_store_is_bounded_and_the_oldest_give_way() {
        let urls = ResponseUrls::new(TTL, 5, 3);
        let ids: Vec<String> = (0..5)
            .map(|i| urls.remember(&format!("C{i}"), &format!("https://hooks.example/{i}")))
            .collect();
        assert_eq!(urls.len(), 3);
        assert!(urls.take_latest("C0", "t").is_none());
        assert!(urls.take("C1", &ids[1], "t").is_none());
        for (i, id) in ids.iter().enumerate().skip(2) {
            assert!(urls.take(&format!("C{i}"), id, "t").is_some());
        }
    }
}
