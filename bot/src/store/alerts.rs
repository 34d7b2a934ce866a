//! Alert groups, their alerts, and the one chat message per (group, channel).
//!
//! Invariants:
//! - [`Store::record_notification`] stores a notification in one transaction: every alert
//!   (upserted by group and fingerprint) and the group's row per channel. A delivery whose
//!   content hash equals the stored one changes nothing.
//! - A group's message is posted by the one caller that wins [`Store::claim_message`] (a
//!   conditional update on a row without a message), also across replicas; a claim older than
//!   the stale limit may be taken over (its holder died between claim and post).
//! - A group that fires again more than `regroup_after` after it resolved starts a new
//!   generation: a new message, acks and silences forgotten.

use jiff::Timestamp;
use serde_json::json;

use super::{Result, Store, StoreError, on_pool, on_pool_writing};
use crate::alerts::payload::{Alert, Notification, Status, group_id};

/// Alerts per multi-row insert (13 binds each stays under both backends' bind limits).
const ALERT_CHUNK: usize = 400;

/// A group's state in one channel, as stored.
#[derive(Debug, Clone)]
pub struct AlertGroup {
    pub group_key: String,
    pub channel: String,
    pub group_id: String,
    pub generation: i64,
    pub status: Status,
    pub notification: Notification,
    pub firing: Timestamp,
    pub resolved: Option<Timestamp>,
    pub message_id: Option<String>,
    pub rendered_hash: Option<String>,
    pub digested: bool,
    pub acked_by: Option<String>,
    pub silence_id: Option<String>,
    pub silenced_by: Option<String>,
    pub silenced_until: Option<Timestamp>,
}

/// One stored alert (for `alerts`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredAlert {
    pub group_key: String,
    pub fingerprint: String,
    pub status: String,
    pub alertname: Option<String>,
    pub severity: Option<String>,
    pub namespace: Option<String>,
    pub starts_ms: Option<i64>,
}

/// What [`Store::record_notification`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Per routed channel, in order: whether its message must change.
    pub changes: Vec<GroupChange>,
    /// The channels the group was shown in before and is no longer routed to (their rows
    /// follow it too, so their messages must be brought up to date).
    pub unrouted: Vec<String>,
}

/// What a notification did to one channel's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupChange {
    /// The same content as before: nothing to show.
    Unchanged,
    /// Changed (or new): the message must show it.
    Changed,
}

type GroupRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

const GROUP_COLUMNS: &str = "group_key, channel, group_id, generation, status, notification, \
     firing_ms, resolved_ms, message_id, rendered_hash, digested, acked_by, silence_id, \
     silenced_by, silenced_until_ms";

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table: "alert_groups",
        message: message.into(),
    }
}

fn ts(ms: i64) -> Result<Timestamp> {
    super::timestamp("alert_groups", ms)
}

fn into_group(r: GroupRow) -> Result<AlertGroup> {
    let notification: Notification =
        serde_json::from_str(&r.5).map_err(|e| corrupt(format!("notification: {e}")))?;
    let status = match r.4.as_str() {
        "firing" => Status::Firing,
        "resolved" => Status::Resolved,
        other => return Err(corrupt(format!("status {other:?}"))),
    };
    Ok(AlertGroup {
        group_key: r.0,
        channel: r.1,
        group_id: r.2,
        generation: r.3,
        status,
        notification,
        firing: ts(r.6)?,
        resolved: r.7.map(ts).transpose()?,
        message_id: r.8,
        rendered_hash: r.9,
        digested: r.10 != 0,
        acked_by: r.11,
        silence_id: r.12,
        silenced_by: r.13,
        silenced_until: r.14.map(ts).transpose()?,
    })
}

fn label<'a>(a: &'a Alert, n: &'a Notification, name: &str) -> Option<&'a str> {
    a.labels
        .get(name)
        .or_else(|| n.common_labels.get(name))
        .map(String::as_str)
}

impl Store {
    /// Stores `n` for each of `channels` (`platform:channel`) and says, per channel, whether the
    /// message must change. All or nothing. A channel the group was shown in before and is no
    /// longer routed to (its labels changed, or the routes) keeps following it, so its message
    /// does not stay firing for ever; but it gets no new message (a regroup). They are
    /// [`Recorded::unrouted`].
    pub async fn record_notification(
        &self,
        n: &Notification,
        channels: &[String],
        regroup_after: std::time::Duration,
        now: Timestamp,
    ) -> Result<Recorded> {
        let now_ms = now.as_millisecond();
        let regroup_ms = i64::try_from(regroup_after.as_millis()).unwrap_or(i64::MAX);
        let (body, hash) = n.stored();
        let status = n.status.as_str();
        let severity = n.severity();
        let gid = group_id(&n.group_key);
        // Anonymous parameters on SQLite: see `values_list`.
        let anonymous = self.backend() == super::Backend::Sqlite;
        // The transaction reads before it writes: on SQLite it takes the write lock up front,
        // or two processes holding read locks could not both upgrade (SQLITE_BUSY at once).
        let begin = if anonymous {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        on_pool_writing!(self, |pool| {
            let mut tx = pool.begin_with(begin).await?;
            let mut changes = Vec::with_capacity(channels.len());
            let shown: Vec<(String,)> =
                sqlx::query_as("SELECT channel FROM alert_groups WHERE group_key = $1")
                    .bind(&n.group_key)
                    .fetch_all(&mut *tx)
                    .await?;
            let unrouted: Vec<String> = shown
                .into_iter()
                .map(|(c,)| c)
                .filter(|c| !channels.contains(c))
                .collect();
            let routed = channels.iter().map(|c| (c, true));
            for (channel, routed) in routed.chain(unrouted.iter().map(|c| (c, false))) {
                // A channel no longer routed to keeps its row; it gets no new one.
                let inserted = routed
                    && sqlx::query(
                    "INSERT INTO alert_groups (group_key, channel, group_id, generation, receiver, \
                     status, severity, alertname, namespace, notification, content_hash, \
                     firing_ms, resolved_ms, updated_ms) \
                     VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11) \
                     ON CONFLICT (group_key, channel) DO NOTHING",
                )
                .bind(&n.group_key)
                .bind(channel)
                .bind(&gid)
                .bind(&n.receiver)
                .bind(status)
                .bind(severity)
                .bind(n.common("alertname"))
                .bind(n.common("namespace"))
                .bind(&body)
                .bind(&hash)
                .bind(now_ms)
                .bind((n.status == Status::Resolved).then_some(now_ms))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    changes.push(GroupChange::Changed);
                    continue;
                }
                let (old_hash, old_status, resolved_ms, generation): (
                    String,
                    String,
                    Option<i64>,
                    i64,
                ) = sqlx::query_as(
                    "SELECT content_hash, status, resolved_ms, generation FROM alert_groups \
                     WHERE group_key = $1 AND channel = $2",
                )
                .bind(&n.group_key)
                .bind(channel)
                .fetch_one(&mut *tx)
                .await?;
                let fires_again = old_status == "resolved" && n.status == Status::Firing;
                let regroup = fires_again
                    && resolved_ms.is_some_and(|r| now_ms.saturating_sub(r) >= regroup_ms);
                if old_hash == hash || (!routed && regroup) {
                    if routed {
                        changes.push(GroupChange::Unchanged);
                    }
                    continue;
                }
                let resolved = match (n.status, resolved_ms) {
                    (Status::Firing, _) => None,
                    (Status::Resolved, Some(r)) if old_status == "resolved" => Some(r),
                    (Status::Resolved, _) => Some(now_ms),
                };
                let common = "status = $3, severity = $4, alertname = $5, namespace = $6, \
                     notification = $7, content_hash = $8, resolved_ms = $9, updated_ms = $10, \
                     receiver = $11";
                let sql = if regroup {
                    format!(
                        "UPDATE alert_groups SET {common}, generation = generation + 1, \
                         firing_ms = $10, message_id = NULL, claim_owner = NULL, \
                         claim_ms = NULL, rendered_hash = NULL, digested = 0, acked_by = NULL, \
                         silence_id = NULL, silenced_by = NULL, silenced_until_ms = NULL \
                         WHERE group_key = $1 AND channel = $2 AND generation = $12"
                    )
                } else {
                    format!(
                        "UPDATE alert_groups SET {common} \
                         WHERE group_key = $1 AND channel = $2 AND generation = $12"
                    )
                };
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&n.group_key)
                    .bind(channel)
                    .bind(status)
                    .bind(severity)
                    .bind(n.common("alertname"))
                    .bind(n.common("namespace"))
                    .bind(&body)
                    .bind(&hash)
                    .bind(resolved)
                    .bind(now_ms)
                    .bind(&n.receiver)
                    .bind(generation)
                    .execute(&mut *tx)
                    .await?;
                if routed {
                    changes.push(GroupChange::Changed);
                }
            }
            for chunk in super::insert_chunks(&n.alerts, ALERT_CHUNK) {
                let mut sql = String::from(
                    "INSERT INTO alerts (group_key, fingerprint, status, alertname, severity, \
                     namespace, labels, annotations, starts_ms, ends_ms, generator_url, \
                     updated_ms) VALUES ",
                );
                sql.push_str(&super::values_list(chunk.len(), 12, anonymous));
                sql.push_str(
                    " ON CONFLICT (group_key, fingerprint) DO UPDATE SET status = excluded.status, \
                     alertname = excluded.alertname, severity = excluded.severity, \
                     namespace = excluded.namespace, labels = excluded.labels, \
                     annotations = excluded.annotations, starts_ms = excluded.starts_ms, \
                     ends_ms = excluded.ends_ms, generator_url = excluded.generator_url, \
                     updated_ms = excluded.updated_ms",
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for a in chunk {
                    q = q
                        .bind(&n.group_key)
                        .bind(&a.fingerprint)
                        .bind(a.status.as_str())
                        .bind(label(a, n, "alertname"))
                        .bind(label(a, n, "severity"))
                        .bind(label(a, n, "namespace"))
                        .bind(json!(a.labels).to_string())
                        .bind(json!(a.annotations).to_string())
                        .bind(a.starts_at.map(|t| t.as_millisecond()))
                        .bind(a.ends_at.map(|t| t.as_millisecond()))
                        .bind(&a.generator_url)
                        .bind(now_ms);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Recorded { changes, unrouted })
        })
    }

    /// The group's row in `channel`.
    pub async fn alert_group(&self, group_key: &str, channel: &str) -> Result<Option<AlertGroup>> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM alert_groups WHERE group_key = $1 AND channel = $2"
        );
        let row: Option<GroupRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(group_key)
                .bind(channel)
                .fetch_optional(pool)
                .await?
        });
        row.map(into_group).transpose()
    }

    /// The group's rows (one per channel) by its short id.
    pub async fn alert_groups_by_id(&self, id: &str) -> Result<Vec<AlertGroup>> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM alert_groups WHERE group_id = $1");
        let rows: Vec<GroupRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(into_group).collect()
    }

    /// (group key, channel) of every group whose message may not show its stored state: never
    /// posted (nor digested), or changed since `since`. What a process that stopped between
    /// storing and writing left behind (a resolved notification is not sent again); a message
    /// that already shows its state is not written again.
    pub async fn alert_groups_to_show(&self, since: Timestamp) -> Result<Vec<(String, String)>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT group_key, channel FROM alert_groups \
                 WHERE (message_id IS NULL AND digested = 0) OR updated_ms >= $1 \
                 ORDER BY updated_ms",
            )
            .bind(since.as_millisecond())
            .fetch_all(pool)
            .await?
        }))
    }

    /// Groups firing in `channel` that are shown in its digest, most recent first.
    pub async fn digested_groups(&self, channel: &str) -> Result<Vec<AlertGroup>> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM alert_groups \
             WHERE channel = $1 AND digested = 1 AND status = 'firing' ORDER BY updated_ms DESC"
        );
        let rows: Vec<GroupRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(channel)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(into_group).collect()
    }

    /// Claims the right to post the message of a group (this generation, in one channel) or
    /// of a channel's digest. True for the one winner; a claim of its own is renewed.
    pub async fn claim_message(
        &self,
        target: &MessageTarget<'_>,
        owner: &str,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> Result<bool> {
        let (table, filter) = target.table_and_filter(4);
        let sql = format!(
            "UPDATE {table} SET claim_owner = $1, claim_ms = $2 WHERE {filter} \
             AND message_id IS NULL AND (claim_owner IS NULL OR claim_ms < $3 OR claim_owner = $1)"
        );
        let won = on_pool_writing!(self, |pool| {
            target
                .bind(
                    sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(owner)
                        .bind(now.as_millisecond())
                        .bind(stale_before.as_millisecond()),
                )
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(won == 1)
    }

    /// Gives up a claim of `owner` whose post failed, so another replica (or a restart) may post.
    pub async fn release_claim(&self, target: &MessageTarget<'_>, owner: &str) -> Result<()> {
        let (table, filter) = target.table_and_filter(2);
        let sql = format!(
            "UPDATE {table} SET claim_owner = NULL, claim_ms = NULL \
             WHERE claim_owner = $1 AND message_id IS NULL AND {filter}"
        );
        on_pool_writing!(self, |pool| {
            target
                .bind(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(owner))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records the message posted (after winning the claim) or what an update now shows.
    pub async fn set_message(
        &self,
        target: &MessageTarget<'_>,
        message_id: &str,
        rendered_hash: &str,
    ) -> Result<()> {
        let (table, filter) = target.table_and_filter(3);
        let sql = format!("UPDATE {table} SET message_id = $1, rendered_hash = $2 WHERE {filter}");
        on_pool_writing!(self, |pool| {
            target
                .bind(
                    sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(message_id)
                        .bind(rendered_hash),
                )
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Makes sure the channel has a digest row; returns its message id and what it shows.
    pub async fn digest_message(&self, channel: &str) -> Result<(Option<String>, Option<String>)> {
        on_pool_writing!(self, |pool| {
            sqlx::query(
                "INSERT INTO alert_digests (channel) VALUES ($1) ON CONFLICT (channel) DO NOTHING",
            )
            .bind(channel)
            .execute(pool)
            .await?;
            Ok(sqlx::query_as(
                "SELECT message_id, rendered_hash FROM alert_digests WHERE channel = $1",
            )
            .bind(channel)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Moves a group (this generation) into its channel's digest instead of its own message.
    pub async fn set_digested(
        &self,
        group_key: &str,
        channel: &str,
        generation: i64,
    ) -> Result<()> {
        on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE alert_groups SET digested = 1 \
                 WHERE group_key = $1 AND channel = $2 AND generation = $3 AND message_id IS NULL",
            )
            .bind(group_key)
            .bind(channel)
            .bind(generation)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records who acknowledged the group (all its channels).
    pub async fn ack_alert_group(&self, group_id: &str, who: &str) -> Result<u64> {
        Ok(on_pool_writing!(self, |pool| {
            sqlx::query("UPDATE alert_groups SET acked_by = $1 WHERE group_id = $2")
                .bind(who)
                .bind(group_id)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Records a silence of the group (`None`: expired).
    pub async fn silence_alert_group(
        &self,
        group_id: &str,
        silence: Option<(&str, &str, Timestamp)>,
    ) -> Result<u64> {
        let (id, by, until) = match silence {
            Some((id, by, until)) => (Some(id), Some(by), Some(until.as_millisecond())),
            None => (None, None, None),
        };
        Ok(on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE alert_groups SET silence_id = $1, silenced_by = $2, \
                 silenced_until_ms = $3 WHERE group_id = $4",
            )
            .bind(id)
            .bind(by)
            .bind(until)
            .bind(group_id)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Stored alerts, firing first, then newest; filtered by severity and namespace.
    pub async fn list_alerts(
        &self,
        severity: Option<&str>,
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAlert>> {
        let sql = "SELECT group_key, fingerprint, status, alertname, severity, namespace, \
             starts_ms FROM alerts WHERE ($1 IS NULL OR severity = $1) \
             AND ($2 IS NULL OR namespace = $2) \
             ORDER BY CASE status WHEN 'firing' THEN 0 ELSE 1 END, updated_ms DESC, \
             fingerprint LIMIT $3";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(severity)
                .bind(namespace)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }))
    }

    /// How many stored alerts there are by status (firing, resolved).
    pub async fn count_alerts(&self) -> Result<(i64, i64)> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT status, COUNT(*) FROM alerts GROUP BY status")
                .fetch_all(pool)
                .await?
        });
        let get = |s: &str| rows.iter().find(|r| r.0 == s).map_or(0, |r| r.1);
        Ok((get("firing"), get("resolved")))
    }
}

/// Which message a claim or an update is about.
#[derive(Debug, Clone, Copy)]
pub enum MessageTarget<'a> {
    Group {
        group_key: &'a str,
        channel: &'a str,
        generation: i64,
    },
    Digest {
        channel: &'a str,
    },
}

impl<'a> MessageTarget<'a> {
    /// The table and a WHERE clause whose binds start at `$first` (after the statement's own).
    fn table_and_filter(&self, first: usize) -> (&'static str, String) {
        let (a, b, c) = (first, first + 1, first + 2);
        match self {
            MessageTarget::Group { .. } => (
                "alert_groups",
                format!("group_key = ${a} AND channel = ${b} AND generation = ${c}"),
            ),
            MessageTarget::Digest { .. } => ("alert_digests", format!("channel = ${a}")),
        }
    }

    /// Binds the filter's values, in the order of [`MessageTarget::table_and_filter`].
    fn bind<'q, DB: sqlx::Database>(
        &self,
        q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
    where
        'a: 'q,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        match *self {
            MessageTarget::Group {
                group_key,
                channel,
                generation,
            } => q.bind(group_key).bind(channel).bind(generation),
            MessageTarget::Digest { channel } => q.bind(channel),
        }
    }
}
