//! The one writer: audit appends, inbox changes and incident timeline entries go through a
//! single task that gathers what arrives while it is busy and writes it in one transaction
//! (group commit).
//!
//! Why: on SQLite every commit is a WAL write and an fsync-ordered checkpoint of work, and
//! several connections competing for `BEGIN IMMEDIATE` sleep on the busy timeout; on PostgreSQL
//! every append takes the table lock. One writer that batches turns N commits into one, reads the
//! audit head once per batch, and keeps the acknowledgement path (which waits for its inbox
//! record to be committed) within its latency budget under load.
//!
//! Invariants:
//! - A [`Store::write`] returns only after its writes are committed (or failed): callers may
//!   promise what it returns.
//! - Writes of one call are committed together, in order; calls are committed in arrival order.
//! - The audit chain stays linear across processes: each batch holds the database's append lock
//!   (SQLite `BEGIN IMMEDIATE`, PostgreSQL `LOCK TABLE audit_log IN EXCLUSIVE MODE`) and reads
//!   the head inside it.
//! - One failing call does not fail the others: when a batch fails on a constraint, its calls
//!   are retried one transaction each, so only the failing one sees the error. When the database
//!   itself fails (locked, down, read-only), the whole batch fails at once: nobody waits for a
//!   retry per call.
//! - Memory is bounded: the queue holds at most [`QUEUE`] calls; callers beyond it wait.
//! - On SQLite no commit checkpoints the WAL: a task beside the writer does ([`checkpoint`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::anchor::AuditKey;
use super::audit::{AuditEntry, AuditRow, INSERT_CHUNK, insert_rows};
use super::inbox::{InboxState, NewInboxEntry};
use super::incidents::{NewIncident, NewTimelineEntry, num};
use super::{AuditSeal, Pool, Result, Store, StoreError};

/// Calls waiting for the writer at most; further callers wait for room.
const QUEUE: usize = 4096;
/// Calls written in one transaction at most.
const MAX_BATCH: usize = 512;
/// SQLite: how often the WAL is checkpointed, beside the commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// One change the writer makes.
#[derive(Debug, Clone)]
pub enum Write {
    /// Appends an audit record; yields its id.
    Audit(Box<AuditEntry>),
    /// Records an acknowledged request; yields its inbox id, or [`Written::Duplicate`] when the
    /// platform delivered it before (then nothing else of this call is written, except
    /// `on_duplicate`).
    Receive(Box<Receive>),
    /// Adds an entry to an incident's timeline; yields its id.
    Timeline(Box<NewTimelineEntry>),
    /// Opens an incident with the next number, its `opened` timeline entry and its audit
    /// record (naming the incident); yields the number.
    OpenIncident(Box<OpenIncident>),
    /// Moves an inbox entry to `state` (with an outcome), if it is not answered yet.
    Inbox {
        id: i64,
        state: InboxState,
        mutating: bool,
        outcome: Option<String>,
    },
}

/// A request to record, with its audit records.
#[derive(Debug, Clone)]
pub struct Receive {
    pub entry: NewInboxEntry,
    /// Audited with the request (its `Request` record).
    pub audit: AuditEntry,
    /// Audited instead when it is a repeated delivery.
    pub on_duplicate: AuditEntry,
}

/// An incident to open, with what its timeline and the audit log say about it.
#[derive(Debug, Clone)]
pub struct OpenIncident {
    pub new: NewIncident,
    /// The `opened` timeline entry's text (secrets masked).
    pub text: String,
    /// Audited with it, with `"incident": "INC-N"` added to its detail.
    pub audit: AuditEntry,
}

/// What one [`Write`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// An audit record id, or an inbox id.
    Id(i64),
    /// [`Write::Receive`] of a delivery seen before.
    Duplicate,
    /// [`Write::Inbox`]: whether the entry changed.
    Changed(bool),
}

struct Call {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<Vec<Written>>>,
}

/// The handle every [`Store`] clone shares; the task ends when the last one is dropped.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Call>,
}

impl Writer {
    /// Starts the writer task on `pool`, sealing audit records with `seal`.
    /// On SQLite each batch first takes `turn`, the store's write turn.
    pub(super) fn start(pool: Pool, seal: AuditSeal, turn: Arc<Mutex<()>>) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Pool::Sqlite(sqlite) = &pool {
            tokio::spawn(checkpoint(sqlite.clone(), tx.downgrade()));
        }
        tokio::spawn(run(pool, seal, turn, rx));
        Writer { tx }
    }
}

/// Checkpoints the SQLite WAL (copies its pages into the database file, and syncs) every
/// [`CHECKPOINT_EVERY`] until the writer is gone.
///
/// SQLite's own automatic checkpoint runs inside the commit that crosses its page threshold:
/// every few hundred commits one took about 5 ms, and every acknowledgement waiting for that
/// batch waited too; that was the ack latency's p99. So the connections have it off
/// (`wal_autocheckpoint = 0`, set where the store opens) and this task runs a passive
/// checkpoint, which never blocks a commit, beside them. It keeps a connection of its own,
/// opened without `create_if_missing`, so it never takes one from the pool and never creates
/// a database file that was removed. An in-memory database has no WAL.
async fn checkpoint(pool: SqlitePool, writer: mpsc::WeakSender<Call>) {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .create_if_missing(false);
    if super::in_memory(options.get_filename()) {
        return;
    }
    let mut connection: Option<SqliteConnection> = None;
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if writer.upgrade().is_none() || pool.is_closed() {
            return;
        }
        let c = match connection.as_mut() {
            Some(c) => c,
            None => match SqliteConnection::connect_with(&options).await {
                Ok(c) => connection.insert(c),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot open the database to checkpoint it");
                    continue;
                }
            },
        };
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *c)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; the next one retries");
            connection = None;
        }
    }
}

impl Store {
    /// Commits `writes` together (in one transaction, possibly with other callers' writes) and
    /// returns what each came to, in order.
    pub async fn write(&self, writes: Vec<Write>) -> Result<Vec<Written>> {
        let (done, answer) = oneshot::channel();
        self.writer
            .tx
            .send(Call { writes, done })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run(pool: Pool, seal: AuditSeal, turn: Arc<Mutex<()>>, mut rx: mpsc::Receiver<Call>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let key = seal.key.as_deref();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let calls: Vec<&[Write]> = batch.iter().map(|c| c.writes.as_slice()).collect();
        match commit(&pool, &turn, key, &seal, &calls).await {
            Ok(results) => {
                for (call, result) in batch.drain(..).zip(results) {
                    let _ = call.done.send(Ok(result));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(call) = batch.pop() {
                    let _ = call.done.send(Err(e));
                }
            }
            Err(e) if !is_constraint(&e) => {
                // The database is unavailable (locked, down, read-only): so is it for everyone.
                let message = e.to_string();
                for call in batch.drain(..) {
                    let _ = call
                        .done
                        .send(Err(StoreError::Unavailable(message.clone())));
                }
            }
            Err(_) => {
                // Somebody's write broke a constraint: each call on its own, so only it fails.
                for call in batch.drain(..) {
                    let result = commit(&pool, &turn, key, &seal, &[call.writes.as_slice()])
                        .await
                        .map(|mut r| r.pop().unwrap_or_default());
                    let _ = call.done.send(result);
                }
            }
        }
    }
}

/// The body of [`commit`], once per backend: `$tx` is an open transaction holding the lock;
/// `$anonymous`: the backend's multi-row inserts take `?` parameters (SQLite).
///
/// Audit records are chained in memory and inserted together at the end, up to
/// [`INSERT_CHUNK`] rows a statement: on SQLite every statement is a round trip to the
/// connection's own thread, and a batch under load holds dozens of records.
macro_rules! write_all {
    ($tx:ident, $key:expr, $calls:expr, $anonymous:expr) => {{
        let mut head: Option<(i64, String, i64)> =
            sqlx::query_as("SELECT id, hash, time_ms FROM audit_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *$tx)
                .await?;
        let mut rows: Vec<AuditRow> = Vec::new();
        let mut results = Vec::with_capacity($calls.len());
        for writes in $calls {
            let mut written = Vec::with_capacity(writes.len());
            for write in writes.iter() {
                match write {
                    Write::Audit(entry) => {
                        let row = AuditRow::chained(&mut head, entry, $key)?;
                        written.push(Written::Id(row.id));
                        rows.push(row);
                    }
                    Write::Receive(receive) => {
                        let Receive {
                            entry,
                            audit,
                            on_duplicate,
                        } = receive.as_ref();
                        let id: Option<(i64,)> = sqlx::query_as(
                            "INSERT INTO inbox (platform, delivery_id, kind, actor, channel, text, \
                             mutating, owner, state, received_ms, updated_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'received', $9, $9) \
                             ON CONFLICT (platform, delivery_id) DO NOTHING RETURNING id",
                        )
                        .bind(&entry.platform)
                        .bind(&entry.delivery_id)
                        .bind(entry.kind.as_str())
                        .bind(&entry.actor)
                        .bind(&entry.channel)
                        .bind(&entry.text)
                        .bind(false)
                        .bind(&entry.owner)
                        .bind(entry.received.as_millisecond())
                        .fetch_optional(&mut *$tx)
                        .await?;
                        match id {
                            Some((id,)) => {
                                let audit =
                                    audit.clone().detail(with_field(&audit.detail, "inbox", id.into()));
                                rows.push(AuditRow::chained(&mut head, &audit, $key)?);
                                written.push(Written::Id(id));
                            }
                            None => {
                                rows.push(AuditRow::chained(&mut head, on_duplicate, $key)?);
                                written.push(Written::Duplicate);
                                break;
                            }
                        }
                    }
                    Write::Timeline(entry) => {
                        let (id,): (i64,) = sqlx::query_as(
                            "INSERT INTO incident_events (incident, at_ms, actor, kind, text, \
                             detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        )
                        .bind(num(entry.incident))
                        .bind(entry.at.as_millisecond())
                        .bind(&entry.actor)
                        .bind(&entry.kind)
                        .bind(&entry.text)
                        .bind(entry.detail.to_string())
                        .fetch_one(&mut *$tx)
                        .await?;
                        written.push(Written::Id(id));
                    }
                    Write::OpenIncident(open) => {
                        let OpenIncident { new, text, audit } = open.as_ref();
                        let at = new.opened.as_millisecond();
                        let (number,): (i64,) = sqlx::query_as(
                            "UPDATE counters SET value = value + 1 WHERE name = 'incident' \
                             RETURNING value",
                        )
                        .fetch_one(&mut *$tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO incidents (number, title, severity, status, state, \
                             service, commander, requester, platform, origin_channel, opened_ms, \
                             status_ms, updated_ms) VALUES ($1, $2, $3, 'investigating', 'open', \
                             $4, $5, $6, $7, $8, $9, $9, $9)",
                        )
                        .bind(number)
                        .bind(&new.title)
                        .bind(new.severity.as_str())
                        .bind(&new.service)
                        .bind(&new.commander)
                        .bind(&new.requester)
                        .bind(&new.platform)
                        .bind(&new.origin_channel)
                        .bind(at)
                        .execute(&mut *$tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO incident_events (incident, at_ms, actor, kind, text, \
                             detail) VALUES ($1, $2, $3, 'opened', $4, $5)",
                        )
                        .bind(number)
                        .bind(at)
                        .bind(&new.requester)
                        .bind(text)
                        .bind(serde_json::json!({ "severity": new.severity.as_str() }).to_string())
                        .execute(&mut *$tx)
                        .await?;
                        let id = opsbot_commands::incident::incident_id(
                            u64::try_from(number).unwrap_or_default(),
                        );
                        let audit =
                            audit.clone().detail(with_field(&audit.detail, "incident", id.into()));
                        rows.push(AuditRow::chained(&mut head, &audit, $key)?);
                        written.push(Written::Id(number));
                    }
                    Write::Inbox {
                        id,
                        state,
                        mutating,
                        outcome,
                    } => {
                        let changed = sqlx::query(
                            "UPDATE inbox SET state = $2, mutating = (mutating OR $3), outcome = $4, \
                             updated_ms = $5 WHERE id = $1 AND state <> 'answered'",
                        )
                        .bind(id)
                        .bind(state.as_str())
                        .bind(mutating)
                        .bind(outcome)
                        .bind(jiff::Timestamp::now().as_millisecond())
                        .execute(&mut *$tx)
                        .await?
                        .rows_affected();
                        written.push(Written::Changed(changed == 1));
                    }
                }
            }
            results.push(written);
        }
        for chunk in super::insert_chunks(&rows, INSERT_CHUNK) {
            insert_rows!($tx, chunk, $anonymous);
        }
        (results, head)
    }};
}

/// Whether `e` is one write's fault (a constraint it broke), not the database's.
fn is_constraint(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(db))
        if db.kind() != sqlx::error::ErrorKind::Other)
}

/// Commits every call's writes in one transaction holding the append lock, audit records
/// hashed under `key`, then tells the checkpoint writer about the new head.
async fn commit(
    pool: &Pool,
    turn: &Mutex<()>,
    key: Option<&AuditKey>,
    seal: &AuditSeal,
    calls: &[&[Write]],
) -> Result<Vec<Vec<Written>>> {
    let (results, head) = match pool {
        Pool::Sqlite(pool) => {
            let _turn = turn.lock().await;
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let done = write_all!(tx, key, calls, true);
            tx.commit().await?;
            done
        }
        Pool::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            let done = write_all!(tx, key, calls, false);
            tx.commit().await?;
            done
        }
    };
    if let (Some(anchor), Some((id, _, _))) = (&seal.anchor, head) {
        anchor.observe(id);
    }
    Ok(results)
}

/// An audit detail with `key` (a request's inbox id, an incident's id) added, so the record and
/// what it is about can be matched.
fn with_field(
    detail: &serde_json::Value,
    key: &str,
    value: serde_json::Value,
) -> serde_json::Value {
    let mut detail = match detail {
        serde_json::Value::Object(m) => m.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("detail".into(), other.clone());
            m
        }
    };
    detail.insert(key.into(), value);
    serde_json::Value::Object(detail)
}
