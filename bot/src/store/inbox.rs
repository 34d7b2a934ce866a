//! The inbox: every request opsbot acknowledged, written before the acknowledgement goes out.
//!
//! An entry is `received` when it is acknowledged, `running` while a command that may change
//! the cluster runs, and `answered` once the person has their final answer. Each entry belongs to
//! the process that acknowledged it (its *owner*, an instance id); processes keep a heartbeat in
//! `instances`. Entries left open by a process whose heartbeat stopped (a crash, `kill -9`, a
//! lost node) are taken over by another process, or by the same deployment after its restart,
//! with a conditional update, so exactly one process answers each.
//!
//! `(platform, delivery_id)` is unique: the inbox is also how repeated deliveries are dropped.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::writer::{Write, Written};
use super::{AuditEntry, Result, Store, StoreError, on_pool, on_pool_writing, timestamp};

/// What kind of request an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxKind {
    /// A command someone typed.
    Command,
    /// An Approve / Deny click.
    Click,
}

impl InboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxKind::Command => "command",
            InboxKind::Click => "click",
        }
    }

    fn parse(s: &str) -> Option<InboxKind> {
        [InboxKind::Command, InboxKind::Click]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxState {
    Received,
    Running,
    Answered,
}

impl InboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxState::Received => "received",
            InboxState::Running => "running",
            InboxState::Answered => "answered",
        }
    }

    fn parse(s: &str) -> Option<InboxState> {
        [
            InboxState::Received,
            InboxState::Running,
            InboxState::Answered,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A request to record before acknowledging it.
#[derive(Debug, Clone)]
pub struct NewInboxEntry {
    pub platform: String,
    pub delivery_id: String,
    pub kind: InboxKind,
    pub actor: String,
    pub channel: String,
    /// What was typed (or clicked), secrets masked.
    pub text: String,
    /// The instance that acknowledges it.
    pub owner: String,
    pub received: Timestamp,
}

/// A recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub id: i64,
    pub platform: String,
    pub delivery_id: String,
    pub kind: InboxKind,
    pub actor: String,
    pub channel: String,
    pub text: String,
    pub mutating: bool,
    pub owner: String,
    pub state: InboxState,
    pub outcome: Option<String>,
    pub received: Timestamp,
    pub updated: Timestamp,
}

#[derive(sqlx::FromRow)]
struct InboxRow {
    id: i64,
    platform: String,
    delivery_id: String,
    kind: String,
    actor: String,
    channel: String,
    text: String,
    mutating: bool,
    owner: String,
    state: String,
    outcome: Option<String>,
    received_ms: i64,
    updated_ms: i64,
}

/// The columns of `inbox`, in [`InboxRow`] order (a macro so queries stay `&'static str`).
macro_rules! columns {
    () => {
        "id, platform, delivery_id, kind, actor, channel, text, mutating, owner, state, outcome, \
         received_ms, updated_ms"
    };
}

impl InboxRow {
    fn into_entry(self) -> Result<InboxEntry> {
        let corrupt = |message: String| StoreError::Corrupt {
            table: "inbox",
            message: format!("entry {}: {message}", self.id),
        };
        Ok(InboxEntry {
            id: self.id,
            kind: InboxKind::parse(&self.kind)
                .ok_or_else(|| corrupt(format!("unknown kind {:?}", self.kind)))?,
            state: InboxState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("unknown state {:?}", self.state)))?,
            received: timestamp("inbox", self.received_ms)?,
            updated: timestamp("inbox", self.updated_ms)?,
            platform: self.platform,
            delivery_id: self.delivery_id,
            actor: self.actor,
            channel: self.channel,
            text: self.text,
            mutating: self.mutating,
            owner: self.owner,
            outcome: self.outcome,
        })
    }
}

/// What [`Store::receive`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Recorded, with this inbox id.
    New(i64),
    /// Delivered before (by this or another process): nothing was recorded but the replay.
    Duplicate,
}

impl Store {
    /// Records `entry` and its audit `request` record in one commit, or (a repeated delivery)
    /// only `on_duplicate`. Returns once it is on disk.
    pub async fn receive(
        &self,
        entry: NewInboxEntry,
        request: AuditEntry,
        on_duplicate: AuditEntry,
    ) -> Result<Receipt> {
        let written = self
            .write(vec![Write::Receive(Box::new(super::writer::Receive {
                entry,
                audit: request,
                on_duplicate,
            }))])
            .await?;
        match written.as_slice() {
            [Written::Id(id)] => Ok(Receipt::New(*id)),
            [Written::Duplicate] => Ok(Receipt::Duplicate),
            other => Err(StoreError::Corrupt {
                table: "inbox",
                message: format!("the writer answered {other:?} to a receive"),
            }),
        }
    }

    /// Moves entry `id` to `state`, together with the audit records `audit` in the same commit.
    /// An answered entry stays answered. Returns whether the entry changed.
    pub async fn mark(
        &self,
        id: i64,
        state: InboxState,
        mutating: bool,
        outcome: Option<&str>,
    ) -> Result<bool> {
        let written = self
            .write(vec![Write::Inbox {
                id,
                state,
                mutating,
                outcome: outcome.map(str::to_owned),
            }])
            .await?;
        Ok(matches!(written.as_slice(), [Written::Changed(true)]))
    }

    /// One inbox entry.
    pub async fn inbox_entry(&self, id: i64) -> Result<Option<InboxEntry>> {
        let sql = concat!("SELECT ", columns!(), " FROM inbox WHERE id = $1");
        let row: Option<InboxRow> = on_pool!(self, |pool| {
            sqlx::query_as(sql).bind(id).fetch_optional(pool).await?
        });
        row.map(InboxRow::into_entry).transpose()
    }

    /// Every entry, oldest first (for tests and `opsbot audit`-style inspection).
    pub async fn inbox(&self) -> Result<Vec<InboxEntry>> {
        let sql = concat!("SELECT ", columns!(), " FROM inbox ORDER BY id");
        let rows: Vec<InboxRow> =
            on_pool!(self, |pool| sqlx::query_as(sql).fetch_all(pool).await?);
        rows.into_iter().map(InboxRow::into_entry).collect()
    }

    /// How many entries are not answered yet (all processes).
    pub async fn open_inbox_count(&self) -> Result<i64> {
        let (n,): (i64,) = on_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM inbox WHERE state <> 'answered'")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Records that `instance` is alive now (first call: registers it).
    pub async fn heartbeat(&self, instance: &str) -> Result<()> {
        let now = Timestamp::now().as_millisecond();
        on_pool_writing!(self, |pool| {
            sqlx::query(
                "INSERT INTO instances (id, started_ms, heartbeat_ms) VALUES ($1, $2, $2) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_ms = $2",
            )
            .bind(instance)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Open entries whose owner has not been heard of since `alive_since` (or never), other than
    /// `me`'s: their process stopped before answering them.
    pub async fn orphaned(&self, me: &str, alive_since: Timestamp) -> Result<Vec<InboxEntry>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM inbox WHERE state <> 'answered' AND owner <> $1 \
             AND owner NOT IN (SELECT id FROM instances WHERE heartbeat_ms >= $2) \
             ORDER BY id LIMIT 500"
        );
        let rows: Vec<InboxRow> = on_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(me)
                .bind(alive_since.as_millisecond())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(InboxRow::into_entry).collect()
    }

    /// Takes over the open entry `id` from `from` for `to`; `true` for exactly one caller.
    pub async fn adopt(&self, id: i64, from: &str, to: &str) -> Result<bool> {
        let changed = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE inbox SET owner = $3, updated_ms = $4 \
                 WHERE id = $1 AND owner = $2 AND state <> 'answered'",
            )
            .bind(id)
            .bind(from)
            .bind(to)
            .bind(Timestamp::now().as_millisecond())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Forgets answered entries last changed before `before`, and instances silent since then
    /// (platforms retry within minutes, not days). Returns how many entries were removed.
    pub async fn prune_inbox(&self, before: Timestamp) -> Result<u64> {
        let before = before.as_millisecond();
        let removed = on_pool_writing!(self, |pool| {
            sqlx::query("DELETE FROM instances WHERE heartbeat_ms < $1")
                .bind(before)
                .execute(pool)
                .await?;
            sqlx::query("DELETE FROM inbox WHERE state = 'answered' AND updated_ms < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed)
    }
}
