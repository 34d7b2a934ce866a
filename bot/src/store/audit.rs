//! The audit log: append-only, hash-chained.
//!
//! Record `n` stores `prev_hash` (the `hash` of record `n - 1`, or [`GENESIS_HASH`] for record 1)
//! and `hash` = lowercase hex SHA-256 of the canonical form, the compact JSON array
//!
//! ```text
//! ["opsbot-audit-v1", id, time_ms, kind, platform, channel, actor, text, command, rule,
//!  outcome, detail, duration_ms, approval_id, prev_hash]
//! ```
//!
//! where absent fields are `null` and `detail` is the stored JSON text (a string), exactly as in
//! the database. Ids are consecutive from 1, so [`Store::verify`] also finds removed records in
//! the middle. (Removing records at the end is not visible in the chain itself; export it
//! elsewhere, e.g. `opsbot audit export`, if that matters.)
//!
//! **Secrets never go in the audit log.** Callers pass text that is safe to keep forever: the
//! command text a person typed, subjects, rule names, outcomes; never tokens, signing secrets,
//! passwords or request bodies that might contain them.

use futures::TryStreamExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
}

impl AuditKind {
    pub const ALL: [AuditKind; 6] = [
        AuditKind::Request,
        AuditKind::Decision,
        AuditKind::Approval,
        AuditKind::Execution,
        AuditKind::Rejection,
        AuditKind::Delivery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Request => "request",
            AuditKind::Decision => "decision",
            AuditKind::Approval => "approval",
            AuditKind::Execution => "execution",
            AuditKind::Rejection => "rejection",
            AuditKind::Delivery => "delivery",
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

/// The result of [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyReport {
    /// Every record links to the one before and matches its hash.
    Ok { count: u64 },
    /// The first record (in id order) where the chain breaks, and what is wrong with it.
    Broken { id: i64, problem: String },
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        matches!(self, VerifyReport::Ok { .. })
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyReport::Ok { count } => write!(f, "chain OK, {count} records"),
            VerifyReport::Broken { id, problem } => {
                write!(f, "chain broken at record {id}: {problem}")
            }
        }
    }
}

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
    /// The record that follows the one with `prev_id` and `prev_hash`, hashed.
    /// Its time is the entry's, or the previous record's (`prev_time_ms`) if that is later.
    pub(super) fn next(
        prev_id: i64,
        prev_hash: String,
        prev_time_ms: i64,
        entry: &AuditEntry,
    ) -> AuditRow {
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
        row.hash = row.compute_hash();
        row
    }

    /// The hash this row should have, from its stored fields.
    fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            "opsbot-audit-v1",
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
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
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

/// Inserts the next record after `$head` (the last record's id and hash, `None` for an empty
/// log) in an open transaction that holds the append lock, and moves `$head` to it. Yields the
/// new record's id. Time never goes backwards as ids increase: an entry timed before the head
/// is stored with the head's time.
macro_rules! append_in_tx {
    ($tx:ident, $head:expr, $entry:expr) => {{
        let head: &mut Option<(i64, String, i64)> = $head;
        let entry: &$crate::store::AuditEntry = $entry;
        let (prev_id, prev_hash, prev_time) =
            head.clone()
                .unwrap_or((0, $crate::store::GENESIS_HASH.to_owned(), i64::MIN));
        let mut row = $crate::store::audit::AuditRow::next(prev_id, prev_hash, prev_time, entry);
        sqlx::query(concat!(
            "INSERT INTO audit_log (",
            $crate::store::audit::columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
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
        .bind(&row.hash)
        .execute(&mut *$tx)
        .await?;
        *head = Some((row.id, std::mem::take(&mut row.hash), row.time_ms));
        row.id
    }};
}
pub(super) use append_in_tx;

impl Store {
    /// Appends `entry` to the audit log and returns its id, once it is committed. Appends go
    /// through the one writer ([`super::writer`]), batched with whatever else is being written.
    pub async fn append(&self, entry: AuditEntry) -> Result<i64> {
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

    /// Walks the whole chain in id order and reports the first broken link.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let sql = concat!("SELECT ", columns!(), " FROM audit_log ORDER BY id");
        on_pool!(self, |pool| {
            let mut rows = sqlx::query_as::<_, AuditRow>(sql).fetch(pool);
            let mut count = 0u64;
            let mut prev: Option<(i64, String)> = None;
            while let Some(row) = rows.try_next().await? {
                if let Some(problem) = link_problem(&row, prev.as_ref()) {
                    return Ok(VerifyReport::Broken {
                        id: row.id,
                        problem,
                    });
                }
                count += 1;
                prev = Some((row.id, row.hash));
            }
            Ok(VerifyReport::Ok { count })
        })
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

/// What is wrong with `row` given the record before it (`None` for the first), if anything.
fn link_problem(row: &AuditRow, prev: Option<&(i64, String)>) -> Option<String> {
    let (expected_id, expected_prev) = match prev {
        Some((id, hash)) => (id + 1, hash.as_str()),
        None => (1, GENESIS_HASH),
    };
    if row.id != expected_id {
        return Some(match prev {
            Some((id, _)) => format!(
                "record {} follows record {id}: records {expected_id}..{} are missing",
                row.id,
                row.id - 1
            ),
            None => format!("the log starts at record {} instead of 1", row.id),
        });
    }
    if row.prev_hash != expected_prev {
        return Some(match prev {
            Some((id, _)) => format!(
                "prev_hash {} does not match the hash of record {id} ({expected_prev})",
                row.prev_hash
            ),
            None => format!(
                "prev_hash {} of the first record is not the genesis hash",
                row.prev_hash
            ),
        });
    }
    let computed = row.compute_hash();
    if row.hash != computed {
        return Some(format!(
            "contents do not match the stored hash (stored {}, computed {computed}): \
             the record was modified",
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
