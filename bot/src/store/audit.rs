//! The audit log: append-only, hash-chained under a key kept outside the database, anchored by
//! signed checkpoints ([`super::anchor`]).
//!
//! Record `n` stores `prev_hash` (the `hash` of record `n - 1`, or [`GENESIS_HASH`] for record 1)
//! and `hash` = lowercase hex HMAC-SHA256, under the [`AuditKey`], of the canonical form, the
//! compact JSON array
//!
//! ```text
//! ["opsbot-audit-v2", id, time_ms, kind, platform, channel, actor, text, command, rule,
//!  outcome, detail, duration_ms, approval_id, prev_hash]
//! ```
//!
//! where absent fields are `null` and `detail` is the stored JSON text (a string), exactly as in
//! the database. Ids are consecutive from 1, so [`Store::verify`] also finds removed records in
//! the middle; removed records at the end, and a replaced database, show against the latest
//! checkpoint. Without the key nobody can re-hash an edited chain.
//!
//! Invariants:
//! - Times never go backwards as ids increase: an append earlier than the head is stored with
//!   the head's time (decided inside the serialised append), and `verify` reports a keyed
//!   record earlier than the one before it.
//! - Logs written before keyed hashing (`opsbot-audit-v1`: plain SHA-256 of the same form with
//!   that tag) stay readable: `verify` accepts v1 records only before the first v2 record (whose
//!   keyed hash covers their chain), or pinned by a checkpoint. A log of v1 records alone and no
//!   checkpoint could have been written by anyone (re-hashing every record without the key):
//!   `verify` reports it ([`Problem::Unpinned`]), `serve` refuses it, and `opsbot audit adopt`
//!   pins it once an operator has checked it.
//!
//! **Secrets never go in the audit log.** Callers pass text that is safe to keep forever: the
//! command text a person typed, subjects, rule names, outcomes; never tokens, signing secrets,
//! passwords or request bodies that might contain them.

use futures::TryStreamExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::anchor::{AuditKey, Checkpoint, Checkpoints, Head};
use super::writer::{Write, Written};
use super::{Result, Store, StoreError, on_pool, timestamp};

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// A command someone typed (who, where, raw text, parsed command).
    Request,
    /// The policy decision on a request (rule, reason in `outcome`).
    Decision,
    /// An approval step: requested, approved by, denied by, expired.
    Approval,
    /// A command ran: result or error, duration.
    Execution,
    /// A request refused before the policy: bad signature, rate limit, parse error.
    Rejection,
    /// A reply could not be delivered to the platform.
    Delivery,
    /// An incident's timeline entry (`bot/src/incidents`).
    Incident,
}

impl AuditKind {
    pub const ALL: [AuditKind; 7] = [
        AuditKind::Request,
        AuditKind::Decision,
        AuditKind::Approval,
        AuditKind::Execution,
        AuditKind::Rejection,
        AuditKind::Delivery,
        AuditKind::Incident,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Request => "request",
            AuditKind::Decision => "decision",
            AuditKind::Approval => "approval",
            AuditKind::Execution => "execution",
            AuditKind::Rejection => "rejection",
            AuditKind::Delivery => "delivery",
            AuditKind::Incident => "incident",
        }
    }

    pub fn parse(s: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened, to be appended. Build with [`AuditEntry::new`] and the setters.
/// Must not contain secrets (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Stored with millisecond precision.
    pub time: Timestamp,
    pub kind: AuditKind,
    /// `console`, `slack`, `discord`, `http`, …
    pub platform: String,
    pub channel: Option<String>,
    /// The subject who acted (`slack:U123`), when known.
    pub actor: Option<String>,
    /// What they typed.
    pub text: Option<String>,
    /// The parsed command, in a normalised form.
    pub command: Option<String>,
    pub rule: Option<String>,
    /// allow / deny / approval / ok / error / rate_limited / …, or a short reason.
    pub outcome: Option<String>,
    /// Anything else, as JSON (`null` when there is nothing).
    pub detail: serde_json::Value,
    pub duration_ms: Option<i64>,
    pub approval_id: Option<String>,
}

impl AuditEntry {
    /// An entry of `kind` on `platform`, timed now, with every other field empty.
    pub fn new(kind: AuditKind, platform: impl Into<String>) -> AuditEntry {
        AuditEntry {
            time: Timestamp::now(),
            kind,
            platform: platform.into(),
            channel: None,
            actor: None,
            text: None,
            command: None,
            rule: None,
            outcome: None,
            detail: serde_json::Value::Null,
            duration_ms: None,
            approval_id: None,
        }
    }

    pub fn at(mut self, time: Timestamp) -> Self {
        self.time = time;
        self
    }
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = Some(outcome.into());
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
    pub fn duration(mut self, duration: std::time::Duration) -> Self {
        self.duration_ms = Some(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        self
    }
    pub fn approval_id(mut self, id: impl Into<String>) -> Self {
        self.approval_id = Some(id.into());
        self
    }
}

/// A stored audit record. Serialises (for `audit export`) as one flat JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// What sealed the newest audit record ([`Store::head_sealed_here`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSeal {
    /// The log is empty.
    Empty,
    /// This store's key.
    ThisKey,
    /// No key: a log from before keyed hashing (the next append is keyed).
    Unkeyed,
    /// Neither: another key, or the record was altered.
    Other { id: i64 },
}

/// The result of [`Store::verify`]: what was checked, and everything found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read.
    pub count: u64,
    /// Of those, records hashed without a key (`opsbot-audit-v1`, before keyed hashing).
    pub legacy: u64,
    /// The latest valid checkpoint the log was checked against.
    pub checkpoint: Option<Checkpoint>,
    /// Empty when the log is intact.
    pub problems: Vec<Problem>,
    /// Worth saying, not tampering (no checkpoint file yet, a torn last checkpoint line).
    pub notes: Vec<String>,
}

/// One thing found wrong by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The chain breaks at record `id` (the first such record; later ones are not checked).
    Link { id: i64, problem: String },
    /// Records `from..=to` are gone from the end: the checkpoint of `time` names record `to`.
    Missing { from: i64, to: i64, time: Timestamp },
    /// Record `id` has another hash than the checkpoint of `time` says: the log was rewritten
    /// (only the first such checkpoint is reported).
    Rewritten {
        id: i64,
        time: Timestamp,
        stored: String,
        checkpoint: String,
    },
    /// A line of the checkpoint file is forged or edited.
    Checkpoint(String),
    /// Records `1..=head` are all hashed without a key and no checkpoint pins them.
    Unpinned { head: i64 },
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_ok() {
            write!(f, "chain OK, {} records", self.count)?;
            if self.legacy > 0 {
                write!(f, " ({} before keyed hashing)", self.legacy)?;
            }
            if let Some(c) = &self.checkpoint {
                write!(f, "; checkpoint of {} at record {} matches", c.time, c.id)?;
            }
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Link { id, problem } => write!(f, "chain broken at record {id}: {problem}"),
            Problem::Missing { from: 1, to, time } => write!(
                f,
                "the log has no records but the checkpoint of {time} names record {to}: \
                 records 1..{to} are missing (the database was emptied or replaced)"
            ),
            Problem::Missing { from, to, time } => write!(
                f,
                "the log ends at record {} but the checkpoint of {time} names record {to}: \
                 records {from}..{to} are missing",
                from - 1
            ),
            Problem::Rewritten {
                id,
                time,
                stored,
                checkpoint,
            } => write!(
                f,
                "record {id} has hash {stored} but the checkpoint of {time} says {checkpoint}: \
                 the log was rewritten"
            ),
            Problem::Checkpoint(problem) => f.write_str(problem),
            Problem::Unpinned { head } => write!(
                f,
                "records 1..{head} are all hashed without the key (opsbot-audit-v1) and no \
                 checkpoint pins them: anyone who can write the database could have written \
                 them; if this log predates keyed hashing, check it (`opsbot audit export`) and \
                 pin it with `opsbot audit adopt`"
            ),
        }
    }
}

/// The tag of the keyed canonical form.
const V2: &str = "opsbot-audit-v2";
/// The tag of the unkeyed canonical form of logs written before keyed hashing.
const V1: &str = "opsbot-audit-v1";

/// A row as stored.
#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    pub(super) id: i64,
    pub(super) time_ms: i64,
    pub(super) kind: String,
    pub(super) platform: String,
    pub(super) channel: Option<String>,
    pub(super) actor: Option<String>,
    pub(super) text: Option<String>,
    pub(super) command: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) outcome: Option<String>,
    pub(super) detail: String,
    pub(super) duration_ms: Option<i64>,
    pub(super) approval_id: Option<String>,
    pub(super) prev_hash: String,
    pub(super) hash: String,
}

/// The columns of `audit_log`, in [`AuditRow`] order (a macro so queries stay `&'static str`).
macro_rules! columns {
    () => {
        "id, time_ms, kind, platform, channel, actor, text, command, rule, outcome, detail, \
         duration_ms, approval_id, prev_hash, hash"
    };
}
pub(super) use columns;

impl AuditRow {
    /// The record after `head` (the last record's id, hash and time; `None` for an empty log),
    /// hashed under `key`; moves `head` to it. Time never goes backwards as ids increase: an
    /// entry timed before the head is stored with the head's time. Without a key nothing can be
    /// appended ([`StoreError::NoAuditKey`]).
    pub(super) fn chained(
        head: &mut Option<(i64, String, i64)>,
        entry: &AuditEntry,
        key: Option<&AuditKey>,
    ) -> Result<AuditRow> {
        let key = key.ok_or(StoreError::NoAuditKey)?;
        let (prev_id, prev_hash, prev_time_ms) =
            head.take()
                .unwrap_or((0, GENESIS_HASH.to_owned(), i64::MIN));
        let mut row = AuditRow {
            id: prev_id + 1,
            time_ms: entry.time.as_millisecond().max(prev_time_ms),
            kind: entry.kind.as_str().to_owned(),
            platform: entry.platform.clone(),
            channel: entry.channel.clone(),
            actor: entry.actor.clone(),
            text: entry.text.clone(),
            command: entry.command.clone(),
            rule: entry.rule.clone(),
            outcome: entry.outcome.clone(),
            detail: entry.detail.to_string(),
            duration_ms: entry.duration_ms,
            approval_id: entry.approval_id.clone(),
            prev_hash,
            hash: String::new(),
        };
        row.hash = row.compute_hash(key);
        *head = Some((row.id, row.hash.clone(), row.time_ms));
        Ok(row)
    }

    /// The canonical form under `version` (see the module docs).
    fn canonical(&self, version: &str) -> Vec<u8> {
        serde_json::json!([
            version,
            self.id,
            self.time_ms,
            self.kind,
            self.platform,
            self.channel,
            self.actor,
            self.text,
            self.command,
            self.rule,
            self.outcome,
            self.detail,
            self.duration_ms,
            self.approval_id,
            self.prev_hash,
        ])
        .to_string()
        .into_bytes()
    }

    /// The hash this row should have, from its stored fields, under `key`.
    fn compute_hash(&self, key: &AuditKey) -> String {
        key.sign(&self.canonical(V2))
    }

    /// Whether the stored hash is the keyed hash of the stored fields.
    fn keyed_hash_matches(&self, key: &AuditKey) -> bool {
        key.verifies(&self.canonical(V2), &self.hash)
    }

    /// Whether the stored hash is the unkeyed v1 hash of the stored fields.
    fn v1_hash_matches(&self) -> bool {
        hex::encode(Sha256::digest(self.canonical(V1))) == self.hash
    }

    fn into_record(self) -> Result<AuditRecord> {
        let corrupt = |message: String| StoreError::Corrupt {
            table: "audit_log",
            message: format!("record {}: {message}", self.id),
        };
        let kind = AuditKind::parse(&self.kind)
            .ok_or_else(|| corrupt(format!("unknown kind {:?}", self.kind)))?;
        let detail = serde_json::from_str(&self.detail)
            .map_err(|e| corrupt(format!("detail is not JSON: {e}")))?;
        Ok(AuditRecord {
            id: self.id,
            entry: AuditEntry {
                time: timestamp("audit_log", self.time_ms)?,
                kind,
                platform: self.platform,
                channel: self.channel,
                actor: self.actor,
                text: self.text,
                command: self.command,
                rule: self.rule,
                outcome: self.outcome,
                detail,
                duration_ms: self.duration_ms,
                approval_id: self.approval_id,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// Rows in one `INSERT INTO audit_log` at most (15 parameters each: well under SQLite's 32,766
/// and PostgreSQL's 65,535 per statement).
pub(super) const INSERT_CHUNK: usize = 64;

/// Inserts `$rows` (a slice of [`AuditRow`]s chained by [`AuditRow::chained`], at most
/// [`INSERT_CHUNK`]) with one statement, in an open transaction that holds the append lock.
/// `$anonymous`: `?` parameters (SQLite), else `$N` (see [`super::values_list`]).
macro_rules! insert_rows {
    ($tx:ident, $rows:expr, $anonymous:expr) => {{
        let rows: &[$crate::store::audit::AuditRow] = $rows;
        let sql = format!(
            concat!(
                "INSERT INTO audit_log (",
                $crate::store::audit::columns!(),
                ") VALUES {}"
            ),
            $crate::store::values_list(rows.len(), 15, $anonymous)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for row in rows {
            q = q
                .bind(row.id)
                .bind(row.time_ms)
                .bind(&row.kind)
                .bind(&row.platform)
                .bind(&row.channel)
                .bind(&row.actor)
                .bind(&row.text)
                .bind(&row.command)
                .bind(&row.rule)
                .bind(&row.outcome)
                .bind(&row.detail)
                .bind(row.duration_ms)
                .bind(&row.approval_id)
                .bind(&row.prev_hash)
                .bind(&row.hash);
        }
        q.execute(&mut *$tx).await?;
    }};
}
pub(super) use insert_rows;

impl Store {
    /// Appends `entry` to the audit log and returns its id, once it is committed. Appends go
    /// through the one writer (`writer.rs`), batched with whatever else is being written.
    /// Needs the audit key ([`Store::with_audit`]).
    pub async fn append(&self, entry: AuditEntry) -> Result<i64> {
        self.audit_key()?;
        match self
            .write(vec![Write::Audit(Box::new(entry))])
            .await?
            .as_slice()
        {
            [Written::Id(id)] => Ok(*id),
            other => Err(StoreError::Corrupt {
                table: "audit_log",
                message: format!("the writer answered {other:?} to an append"),
            }),
        }
    }

    /// Walks the whole chain in id order under the audit key and reports the first broken link
    /// (no checkpoints: records missing from the end cannot be seen; see
    /// [`Store::verify_against`]).
    pub async fn verify(&self) -> Result<VerifyReport> {
        self.verify_against(&Checkpoints::default()).await
    }

    /// [`Store::verify`], and checks the log against `checkpoints`: also reports records
    /// missing from the end, records that differ from a checkpoint, and forged checkpoints.
    pub async fn verify_against(&self, checkpoints: &Checkpoints) -> Result<VerifyReport> {
        let key = self.audit_key()?;
        let pinned: std::collections::BTreeMap<i64, &Checkpoint> =
            checkpoints.valid.iter().map(|c| (c.id, c)).collect();
        let mut report = VerifyReport {
            count: 0,
            legacy: 0,
            checkpoint: checkpoints.latest().cloned(),
            problems: checkpoints
                .problems
                .iter()
                .cloned()
                .map(Problem::Checkpoint)
                .collect(),
            notes: checkpoints.notes.clone(),
        };
        let sql = concat!("SELECT ", columns!(), " FROM audit_log ORDER BY id");
        let mut walk = Walk::default();
        on_pool!(self, |pool| {
            let mut rows = sqlx::query_as::<_, AuditRow>(sql).fetch(pool);
            while let Some(row) = rows.try_next().await? {
                report.count += 1;
                // The first differing checkpoint says it all: later ones follow from it.
                if let Some(c) = pinned.get(&row.id)
                    && c.hash != row.hash
                    && !matches!(report.problems.last(), Some(Problem::Rewritten { .. }))
                {
                    report.problems.push(Problem::Rewritten {
                        id: row.id,
                        time: c.time,
                        stored: row.hash.clone(),
                        checkpoint: c.hash.clone(),
                    });
                }
                walk.step(&row, key);
            }
        });
        report.legacy = walk.legacy;
        let unkeyed_head = walk.broken.is_none() && !walk.keyed && walk.legacy > 0;
        if unkeyed_head && !pinned.keys().any(|&id| id >= walk.last_id) {
            report
                .problems
                .push(Problem::Unpinned { head: walk.last_id });
        }
        report.problems.extend(walk.broken);
        if let Some(latest) = &report.checkpoint
            && walk.last_id < latest.id
        {
            report.problems.push(Problem::Missing {
                from: walk.last_id + 1,
                to: latest.id,
                time: latest.time,
            });
        }
        Ok(report)
    }

    /// The last record's id, hash and time.
    pub async fn audit_head(&self) -> Result<Option<Head>> {
        let head: Option<(i64, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, hash, time_ms FROM audit_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(pool)
                .await?
        });
        head.map(|(id, hash, ms)| {
            Ok(Head {
                id,
                hash,
                time: timestamp("audit_log", ms)?,
            })
        })
        .transpose()
    }

    /// The stored hash of record `id`, if there is one.
    pub async fn audit_hash(&self, id: i64) -> Result<Option<String>> {
        let hash: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT hash FROM audit_log WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(hash.map(|(h,)| h))
    }

    /// The last `n` records, oldest first.
    pub async fn tail(&self, n: u32) -> Result<Vec<AuditRecord>> {
        let sql = concat!(
            "SELECT * FROM (SELECT ",
            columns!(),
            " FROM audit_log ORDER BY id DESC LIMIT $1) AS last ORDER BY id"
        );
        let rows: Vec<AuditRow> = on_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(i64::from(n))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(AuditRow::into_record).collect()
    }

    /// Whether the newest record was sealed with this store's key (start-up check: a key file
    /// that was lost and made anew, or replaced, would seal new records the log cannot verify).
    pub async fn head_sealed_here(&self) -> Result<HeadSeal> {
        let key = self.audit_key()?;
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log ORDER BY id DESC LIMIT 1"
        );
        let row: Option<AuditRow> = on_pool!(self, |pool| sqlx::query_as(sql)
            .fetch_optional(pool)
            .await?);
        Ok(match row {
            None => HeadSeal::Empty,
            Some(r) if r.keyed_hash_matches(key) => HeadSeal::ThisKey,
            Some(r) if r.v1_hash_matches() => HeadSeal::Unkeyed,
            Some(r) => HeadSeal::Other { id: r.id },
        })
    }

    /// Every record timed at or after `time`, oldest first (for export).
    pub async fn since(&self, time: Timestamp) -> Result<Vec<AuditRecord>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE time_ms >= $1 ORDER BY id"
        );
        let rows: Vec<AuditRow> = on_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(time.as_millisecond())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(AuditRow::into_record).collect()
    }

    /// How many records the log holds.
    pub async fn audit_count(&self) -> Result<i64> {
        let (n,): (i64,) = on_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM audit_log")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }
}

/// The state of a walk along the chain in id order.
#[derive(Default)]
struct Walk {
    /// Id, hash and time of the record before (id 0 before the first).
    last_id: i64,
    last_hash: Option<String>,
    last_time_ms: i64,
    /// Whether a keyed record was seen: after one, unkeyed records are not accepted.
    keyed: bool,
    legacy: u64,
    /// The first broken link; later records only advance `last_id`.
    broken: Option<Problem>,
}

impl Walk {
    fn step(&mut self, row: &AuditRow, key: &AuditKey) {
        if self.broken.is_none()
            && let Some(problem) = self.link_problem(row, key)
        {
            self.broken = Some(Problem::Link {
                id: row.id,
                problem,
            });
        }
        self.last_id = row.id;
        self.last_hash = Some(row.hash.clone());
        self.last_time_ms = row.time_ms;
    }

    /// What is wrong with `row` as the successor of the record before, if anything.
    fn link_problem(&mut self, row: &AuditRow, key: &AuditKey) -> Option<String> {
        let expected_id = self.last_id + 1;
        let expected_prev = self.last_hash.as_deref().unwrap_or(GENESIS_HASH);
        let prev = self.last_id;
        if row.id != expected_id {
            return Some(if prev == 0 {
                format!("the log starts at record {} instead of 1", row.id)
            } else {
                format!(
                    "record {} follows record {prev}: records {expected_id}..{} are missing",
                    row.id,
                    row.id - 1
                )
            });
        }
        if row.prev_hash != expected_prev {
            return Some(if prev == 0 {
                format!(
                    "prev_hash {} of the first record is not the genesis hash",
                    row.prev_hash
                )
            } else {
                format!(
                    "prev_hash {} does not match the hash of record {prev} ({expected_prev})",
                    row.prev_hash
                )
            });
        }
        if row.keyed_hash_matches(key) {
            self.keyed = true;
            if prev > 0 && row.time_ms < self.last_time_ms {
                return Some(format!(
                    "its time ({}) is earlier than that of record {prev} ({}): time went \
                     backwards",
                    show_ms(row.time_ms),
                    show_ms(self.last_time_ms)
                ));
            }
        } else if row.v1_hash_matches() {
            if self.keyed {
                return Some(
                    "it is hashed without the key (opsbot-audit-v1) after keyed records: it \
                     was modified and re-hashed by someone without the audit key"
                        .to_owned(),
                );
            }
            self.legacy += 1;
        } else {
            return Some(format!(
                "contents do not match the stored hash {} under the audit key: the record \
                 was modified (or re-hashed without the key, or written under another key)",
                row.hash
            ));
        }
        if AuditKind::parse(&row.kind).is_none() {
            return Some(format!("unknown kind {:?}", row.kind));
        }
        if serde_json::from_str::<serde_json::Value>(&row.detail).is_err() {
            return Some("detail is not valid JSON".to_owned());
        }
        None
    }
}

fn show_ms(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| format!("{ms} ms"), |t| t.to_string())
}
