//! One writer task per chat channel: the only place alert messages are posted or edited.
//!
//! Invariants:
//! - At most one chat write per channel per `interval` (from this process): groups marked
//!   changed while a write waits are coalesced, and each write renders the newest stored state.
//! - Past `max_new_per_minute` new messages in the last minute, a new group goes into the
//!   channel's digest (one message, edited in place) instead of getting its own.
//! - A message is posted only by the winner of the store's claim, so replicas on one database
//!   post one message per group. A loser looks again later and edits the winner's message.
//! - Nothing is lost on a failed write: the state is in the database; the group is tried again
//!   after a back-off of its own (doubling up to [`MAX_GROUP_BACKOFF`]), behind the channel's
//!   other groups, and the writer backs off (doubling up to [`MAX_BACKOFF`]), e.g. on Slack 429s.
//! - Nothing is posted twice by one process: a message posted whose id could not be stored is
//!   remembered ([`Unrecorded`]), stored on the next try and edited, not posted again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use opsbot_commands::Reply;

use super::render::{digest_reply, group_reply, reply_hash};
use crate::chat::{DeliveryError, MessageRef};
use crate::config::AlertChannel;
use crate::engine::Engine;
use crate::store::{MessageTarget, StoreError};

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest a group whose own write keeps failing waits before it is tried again.
const MAX_GROUP_BACKOFF: Duration = Duration::from_secs(600);
/// How long another replica's claim on a message is honoured before it is taken over.
const CLAIM_STALE: Duration = Duration::from_secs(60);

/// How a writer paces itself.
#[derive(Debug, Clone)]
pub struct Pacing {
    pub interval: Duration,
    pub max_new_per_minute: u32,
    /// How long to wait before looking again at a group another replica is posting.
    pub retry_claimed: Duration,
}

/// What one writer needs.
pub struct Writer {
    pub engine: Engine,
    pub channel: AlertChannel,
    pub owner: String,
    pub pacing: Pacing,
    pub silences: bool,
    pub stop: CancellationToken,
}

/// Messages this writer posted whose ids could not be stored yet (the database failed right
/// after the post): by target, the message id and the hash of what it shows.
#[derive(Default)]
struct Unrecorded(HashMap<String, (String, String)>);

impl Unrecorded {
    fn key(target: &MessageTarget<'_>) -> String {
        match target {
            MessageTarget::Group {
                group_key,
                generation,
                ..
            } => format!("group {generation} {group_key}"),
            MessageTarget::Digest { .. } => "digest".to_owned(),
        }
    }
}

/// What a step did with the chat platform.
enum Step {
    /// No chat write (the message already shows this, or the group went to the digest).
    Nothing,
    /// Edited a message.
    Wrote,
    /// Posted a new message.
    Posted,
    /// Try this group again later.
    Later,
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Delivery(#[from] DeliveryError),
}

impl Writer {
    /// Runs until `stop`: receives group keys that changed and writes them out, paced.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<String>) {
        let key = self.channel.to_string();
        let mut queue: VecDeque<String> = VecDeque::new();
        let mut queued: HashSet<String> = HashSet::new();
        let mut later: Vec<(Instant, String)> = Vec::new();
        let mut digest_dirty = false;
        let mut digest_owed = false;
        let mut next_write = Instant::now();
        let mut posted: VecDeque<Instant> = VecDeque::new();
        let mut backoff = self.pacing.interval;
        let mut failing: HashMap<String, u32> = HashMap::new();
        let mut unrecorded = Unrecorded::default();
        loop {
            let now = Instant::now();
            for (_, k) in later.extract_if(.., |(due, _)| *due <= now) {
                if queued.insert(k.clone()) {
                    queue.push_back(k);
                }
            }
            let work = !queue.is_empty() || digest_dirty;
            let next_later = later.iter().map(|(due, _)| *due).min();
            tokio::select! {
                _ = self.stop.cancelled() => return,
                got = rx.recv() => match got {
                    Some(k) => {
                        if queued.insert(k.clone()) {
                            queue.push_back(k);
                        }
                        continue;
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(next_write), if work => {}
                _ = sleep_until(next_later), if !work && next_later.is_some() => continue,
            }
            // Coalesce whatever else arrived before writing.
            while let Ok(k) = rx.try_recv() {
                if queued.insert(k.clone()) {
                    queue.push_back(k);
                }
            }
            // The digest takes every other write while groups keep the queue busy, so a flood
            // of edits cannot starve it.
            let digest_turn = digest_dirty && (queue.is_empty() || digest_owed);
            let result = if !digest_turn && let Some(group_key) = queue.pop_front() {
                queued.remove(&group_key);
                let result = self
                    .group_step(&group_key, &mut posted, &mut digest_dirty, &mut unrecorded)
                    .await;
                match &result {
                    Ok(Step::Wrote | Step::Posted) => digest_owed = digest_dirty,
                    Ok(Step::Later) => {
                        later.push((Instant::now() + self.pacing.retry_claimed, group_key))
                    }
                    // Tried again after a back-off of its own, behind the others: a group whose
                    // write keeps failing (its message deleted, its content refused) must not
                    // hold up the rest of the channel.
                    Err(_) => {
                        let n = failing.entry(group_key.clone()).or_insert(0u32);
                        *n = n.saturating_add(1);
                        let wait = self
                            .pacing
                            .interval
                            .saturating_mul(1 << (*n).min(16))
                            .min(MAX_GROUP_BACKOFF);
                        later.push((Instant::now() + wait, group_key));
                    }
                    Ok(_) => {
                        failing.remove(&group_key);
                    }
                }
                result
            } else {
                digest_owed = false;
                let result = self.digest_step(&mut unrecorded).await;
                digest_dirty = !matches!(result, Ok(Step::Nothing | Step::Wrote | Step::Posted));
                if matches!(result, Ok(Step::Later)) {
                    next_write = Instant::now() + self.pacing.retry_claimed;
                }
                result
            };
            match result {
                Ok(Step::Wrote | Step::Posted) => {
                    backoff = self.pacing.interval;
                    next_write = Instant::now() + self.pacing.interval;
                }
                Ok(Step::Nothing | Step::Later) => {}
                Err(e) => {
                    tracing::warn!(channel = %key, error = %e, backoff_s = backoff.as_secs_f64(), "alert message write failed; backing off");
                    next_write = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn group_step(
        &self,
        group_key: &str,
        posted: &mut VecDeque<Instant>,
        digest_dirty: &mut bool,
        unrecorded: &mut Unrecorded,
    ) -> Result<Step, StepError> {
        let channel = self.channel.to_string();
        let store = self.engine.store();
        let Some(g) = store.alert_group(group_key, &channel).await? else {
            return Ok(Step::Nothing);
        };
        if g.digested {
            *digest_dirty = true;
            return Ok(Step::Nothing);
        }
        let target = MessageTarget::Group {
            group_key,
            channel: &channel,
            generation: g.generation,
        };
        if g.message_id.is_none() {
            let minute_ago = Instant::now() - Duration::from_secs(60);
            while posted.front().is_some_and(|t| *t < minute_ago) {
                posted.pop_front();
            }
            if posted.len() >= self.pacing.max_new_per_minute as usize {
                store
                    .set_digested(group_key, &channel, g.generation)
                    .await?;
                *digest_dirty = true;
                return Ok(Step::Nothing);
            }
        }
        let reply = group_reply(&g, self.silences);
        let step = self
            .show(&target, g.message_id, g.rendered_hash, &reply, unrecorded)
            .await?;
        if matches!(step, Step::Posted) {
            posted.push_back(Instant::now());
        }
        Ok(step)
    }

    async fn digest_step(&self, unrecorded: &mut Unrecorded) -> Result<Step, StepError> {
        let channel = self.channel.to_string();
        let store = self.engine.store();
        let groups = store.digested_groups(&channel).await?;
        let (message_id, shown) = store.digest_message(&channel).await?;
        let target = MessageTarget::Digest { channel: &channel };
        // An empty digest needs no message, unless one was posted (and not recorded yet).
        let posted = unrecorded.0.contains_key(&Unrecorded::key(&target));
        if message_id.is_none() && groups.is_empty() && !posted {
            return Ok(Step::Nothing);
        }
        self.show(
            &target,
            message_id,
            shown,
            &digest_reply(&groups),
            unrecorded,
        )
        .await
    }

    /// Makes the message of `target` show `reply`: nothing if it already does, an edit if it
    /// exists (also one this writer posted but could not record), else a post by the winner of
    /// the claim (`Later` for the others).
    async fn show(
        &self,
        target: &MessageTarget<'_>,
        mut message_id: Option<String>,
        mut shown: Option<String>,
        reply: &Reply,
        unrecorded: &mut Unrecorded,
    ) -> Result<Step, StepError> {
        let store = self.engine.store();
        let hash = reply_hash(reply);
        let key = Unrecorded::key(target);
        match (&message_id, unrecorded.0.get(&key)) {
            // Recorded after all (the store failed after its commit, or another replica).
            (Some(_), Some(_)) => {
                unrecorded.0.remove(&key);
            }
            (None, Some((id, posted))) => {
                store.set_message(target, id, posted).await?;
                (message_id, shown) = (Some(id.clone()), Some(posted.clone()));
                unrecorded.0.remove(&key);
            }
            _ => {}
        }
        if let Some(id) = message_id {
            if shown.as_deref() == Some(hash.as_str()) {
                return Ok(Step::Nothing);
            }
            self.engine.edit(&self.message(&id), reply).await?;
            store.set_message(target, &id, &hash).await?;
            return Ok(Step::Wrote);
        }
        let now = Timestamp::now();
        let stale = now
            .checked_sub(jiff::SignedDuration::try_from(CLAIM_STALE).unwrap_or_default())
            .unwrap_or(Timestamp::MIN);
        if !store.claim_message(target, &self.owner, now, stale).await? {
            return Ok(Step::Later);
        }
        let msg = match self
            .engine
            .post_in(&self.channel.platform, &self.channel.channel, reply)
            .await
        {
            Ok(msg) => msg,
            Err(e) => {
                store.release_claim(target, &self.owner).await?;
                return Err(e.into());
            }
        };
        if let Err(e) = store.set_message(target, &msg.id, &hash).await {
            unrecorded.0.insert(key, (msg.id, hash));
            return Err(e.into());
        }
        Ok(Step::Posted)
    }

    fn message(&self, id: &str) -> MessageRef {
        MessageRef {
            platform: self.channel.platform.clone(),
            channel: self.channel.channel.clone(),
            id: id.to_owned(),
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
