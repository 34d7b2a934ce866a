//! Incidents, their timelines and their timers.
//!
//! Invariants:
//! - Incident numbers come from the `counters` row, incremented in the transaction that inserts
//!   the incident (with its `opened` entry and audit record): never reused, distinct across
//!   replicas.
//! - Changes that may race (acknowledge, close, reopen) are conditional updates; the caller
//!   that made the change is told so (`true`) and is the one that announces it.
//! - A timer fires once: [`Store::claim_timer`] sets `fired_ms` only where it is still unset and
//!   the timer not cancelled.

use jiff::Timestamp;
use opsbot_commands::IncidentStatus;
use opsbot_policies::Severity;

use super::writer::OpenIncident;
use super::{
    AuditEntry, Result, Store, StoreError, Write, Written, on_pool, on_pool_writing, timestamp,
};
use crate::chat::{ChannelRef, MessageRef};

/// An incident as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub number: u64,
    pub title: String,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub open: bool,
    pub service: Option<String>,
    pub commander: Option<String>,
    pub scribe: Option<String>,
    pub comms: Option<String>,
    pub requester: String,
    pub platform: String,
    pub origin_channel: String,
    pub channel: Option<ChannelRef>,
    pub card: Option<MessageRef>,
    pub announcement: Option<MessageRef>,
    pub opened: Timestamp,
    pub acked: Option<Timestamp>,
    pub acked_by: Option<String>,
    pub resolved: Option<Timestamp>,
    pub closed: Option<Timestamp>,
    /// The last status update (or the opening).
    pub status_at: Timestamp,
    pub resolution: Option<String>,
    pub paged: bool,
}

impl Incident {
    /// `INC-42`.
    pub fn id(&self) -> String {
        opsbot_commands::incident::incident_id(self.number)
    }
}

/// What [`Store::open_incident`] records.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub severity: Severity,
    pub service: Option<String>,
    pub commander: Option<String>,
    pub requester: String,
    pub platform: String,
    pub origin_channel: String,
    pub opened: Timestamp,
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub id: i64,
    pub incident: u64,
    pub at: Timestamp,
    pub actor: String,
    /// opened, severity, status, role, note, follow_up, ack, escalation, page, reminder,
    /// command, approval, alert, pinned, closed, reopened, channel.
    pub kind: String,
    pub text: String,
    pub detail: serde_json::Value,
}

/// A due timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub id: i64,
    pub incident: u64,
    pub kind: TimerKind,
    pub step: u32,
    pub due: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Nobody took commander within the severity's deadline.
    Ack,
    /// An escalation step.
    Escalate,
    /// Ask the commander for a status update.
    Remind,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Ack => "ack",
            TimerKind::Escalate => "escalate",
            TimerKind::Remind => "remind",
        }
    }

    fn parse(s: &str) -> Option<TimerKind> {
        [TimerKind::Ack, TimerKind::Escalate, TimerKind::Remind]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A role's column.
fn role_column(role: opsbot_commands::Role) -> &'static str {
    match role {
        opsbot_commands::Role::Commander => "commander",
        opsbot_commands::Role::Scribe => "scribe",
        opsbot_commands::Role::Comms => "comms",
    }
}

macro_rules! incident_columns {
    () => {
        "number, title, severity, status, state, service, commander, scribe, comms, requester, \
         platform, origin_channel, channel_id, channel_name, card_id, announce_channel, \
         announce_id, opened_ms, acked_ms, acked_by, resolved_ms, closed_ms, status_ms, \
         resolution, paged"
    };
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    number: i64,
    title: String,
    severity: String,
    status: String,
    state: String,
    service: Option<String>,
    commander: Option<String>,
    scribe: Option<String>,
    comms: Option<String>,
    requester: String,
    platform: String,
    origin_channel: String,
    channel_id: Option<String>,
    channel_name: Option<String>,
    card_id: Option<String>,
    announce_channel: Option<String>,
    announce_id: Option<String>,
    opened_ms: i64,
    acked_ms: Option<i64>,
    acked_by: Option<String>,
    resolved_ms: Option<i64>,
    closed_ms: Option<i64>,
    status_ms: i64,
    resolution: Option<String>,
    paged: i64,
}

const TABLE: &str = "incidents";

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt {
        table: TABLE,
        message,
    }
}

fn opt_time(ms: Option<i64>) -> Result<Option<Timestamp>> {
    ms.map(|ms| timestamp(TABLE, ms)).transpose()
}

impl IncidentRow {
    fn into_incident(self) -> Result<Incident> {
        let severity = Severity::parse(&self.severity)
            .ok_or_else(|| corrupt(format!("severity {:?}", self.severity)))?;
        let status = IncidentStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("status {:?}", self.status)))?;
        let channel = match (self.channel_id, self.channel_name) {
            (Some(id), Some(name)) => Some(ChannelRef {
                platform: self.platform.clone(),
                id,
                name,
            }),
            _ => None,
        };
        let card = match (&channel, self.card_id) {
            (Some(c), Some(id)) => Some(MessageRef {
                platform: self.platform.clone(),
                channel: c.id.clone(),
                id,
            }),
            _ => None,
        };
        let announcement = match (self.announce_channel, self.announce_id) {
            (Some(place), Some(id)) => {
                let (platform, channel) = place
                    .split_once(':')
                    .ok_or_else(|| corrupt(format!("announce_channel {place:?}")))?;
                Some(MessageRef {
                    platform: platform.to_owned(),
                    channel: channel.to_owned(),
                    id,
                })
            }
            _ => None,
        };
        Ok(Incident {
            number: u64::try_from(self.number).map_err(|_| corrupt("negative number".into()))?,
            title: self.title,
            severity,
            status,
            open: self.state == "open",
            service: self.service,
            commander: self.commander,
            scribe: self.scribe,
            comms: self.comms,
            requester: self.requester,
            platform: self.platform,
            origin_channel: self.origin_channel,
            channel,
            card,
            announcement,
            opened: timestamp(TABLE, self.opened_ms)?,
            acked: opt_time(self.acked_ms)?,
            acked_by: self.acked_by,
            resolved: opt_time(self.resolved_ms)?,
            closed: opt_time(self.closed_ms)?,
            status_at: timestamp(TABLE, self.status_ms)?,
            resolution: self.resolution,
            paged: self.paged != 0,
        })
    }
}

fn rows_into(rows: Vec<IncidentRow>) -> Result<Vec<Incident>> {
    rows.into_iter().map(IncidentRow::into_incident).collect()
}

pub(super) fn num(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A timeline entry to add ([`Store::add_timeline`]).
#[derive(Debug, Clone)]
pub struct NewTimelineEntry {
    pub incident: u64,
    pub at: Timestamp,
    pub actor: String,
    pub kind: String,
    pub text: String,
    pub detail: serde_json::Value,
}

/// Which incidents an update may change.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// Open or closed (the bot's own bookkeeping: channel, card, announcement).
    AnyState,
    /// Open only: what people change (so one racing a `close` cannot land on it).
    OpenOnly,
}

impl Store {
    /// Records a new incident with the next number, its `opened` timeline entry (`text`) and
    /// `audit` (given the incident's id), committed together by the one writer. Needs the
    /// audit key.
    pub async fn open_incident(
        &self,
        new: NewIncident,
        text: &str,
        audit: AuditEntry,
    ) -> Result<Incident> {
        self.audit_key()?;
        let open = OpenIncident {
            new,
            text: text.to_owned(),
            audit,
        };
        let number = match self
            .write(vec![Write::OpenIncident(Box::new(open))])
            .await?[..]
        {
            [Written::Id(number)] => number,
            ref other => {
                return Err(corrupt(format!(
                    "the writer answered {other:?} to an opened incident"
                )));
            }
        };
        self.incident(u64::try_from(number).unwrap_or_default())
            .await?
            .ok_or_else(|| corrupt(format!("incident {number} vanished after insert")))
    }

    pub async fn incident(&self, number: u64) -> Result<Option<Incident>> {
        let row: Option<IncidentRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                incident_columns!(),
                " FROM incidents WHERE number = $1"
            ))
            .bind(num(number))
            .fetch_optional(pool)
            .await?
        });
        row.map(IncidentRow::into_incident).transpose()
    }

    /// The incident whose channel `channel` is on `platform`, if any.
    pub async fn incident_by_channel(
        &self,
        platform: &str,
        channel: &str,
    ) -> Result<Option<Incident>> {
        let row: Option<IncidentRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                incident_columns!(),
                " FROM incidents WHERE platform = $1 AND channel_id = $2"
            ))
            .bind(platform)
            .bind(channel)
            .fetch_optional(pool)
            .await?
        });
        row.map(IncidentRow::into_incident).transpose()
    }

    /// The newest incidents first, at most `limit`.
    pub async fn list_incidents(
        &self,
        open_only: bool,
        severity: Option<Severity>,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        let rows: Vec<IncidentRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                incident_columns!(),
                " FROM incidents WHERE ($1 = 0 OR state = 'open') AND ($2 = '' OR severity = $2) \
                 ORDER BY number DESC LIMIT $3"
            ))
            .bind(i64::from(open_only))
            .bind(severity.map_or("", Severity::as_str))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows_into(rows)
    }

    /// Every incident opened at or after `since`, oldest first (for statistics).
    pub async fn incidents_since(&self, since: Timestamp) -> Result<Vec<Incident>> {
        let rows: Vec<IncidentRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                incident_columns!(),
                " FROM incidents WHERE opened_ms >= $1 ORDER BY number"
            ))
            .bind(since.as_millisecond())
            .fetch_all(pool)
            .await?
        });
        rows_into(rows)
    }

    /// Open incidents per severity (for the gauge).
    pub async fn open_incident_counts(&self) -> Result<Vec<(Severity, u64)>> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT severity, COUNT(*) FROM incidents WHERE state = 'open' GROUP BY severity",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((Severity::parse(&s)?, u64::try_from(n).ok()?)))
            .collect())
    }

    /// Sets the incident's channel (once it is created).
    pub async fn set_incident_channel(&self, number: u64, channel: &ChannelRef) -> Result<()> {
        let values = [
            ("channel_id", Some(channel.id.as_str())),
            ("channel_name", Some(channel.name.as_str())),
        ];
        self.set_incident_texts(number, values).await
    }

    pub async fn set_incident_card(&self, number: u64, card: &MessageRef) -> Result<()> {
        self.set_incident_text(number, "card_id", Some(&card.id))
            .await
    }

    pub async fn set_incident_announcement(&self, number: u64, msg: &MessageRef) -> Result<()> {
        let place = format!("{}:{}", msg.platform, msg.channel);
        let values = [
            ("announce_channel", Some(place.as_str())),
            ("announce_id", Some(msg.id.as_str())),
        ];
        self.set_incident_texts(number, values).await
    }

    /// Sets the severity of an open incident; `false` (nothing changed) when it is closed.
    pub async fn set_incident_severity(&self, number: u64, severity: Severity) -> Result<bool> {
        let value = [("severity", Some(severity.as_str()))];
        self.update_incident_texts(number, value, Scope::OpenOnly)
            .await
    }

    /// Gives `role` to `who` in an open incident; `false` (nothing changed) when it is closed.
    pub async fn set_incident_role(
        &self,
        number: u64,
        role: opsbot_commands::Role,
        who: &str,
    ) -> Result<bool> {
        let value = [(role_column(role), Some(who))];
        self.update_incident_texts(number, value, Scope::OpenOnly)
            .await
    }

    pub async fn set_incident_paged(&self, number: u64) -> Result<()> {
        on_pool_writing!(self, |pool| {
            sqlx::query("UPDATE incidents SET paged = 1 WHERE number = $1")
                .bind(num(number))
                .execute(pool)
                .await
                .map(|_| ())?
        });
        Ok(())
    }

    /// Sets the status of an open incident; `resolved` also stamps the resolution time (once).
    /// `false` (nothing changed) when it is closed.
    pub async fn set_incident_status(
        &self,
        number: u64,
        status: IncidentStatus,
        at: Timestamp,
    ) -> Result<bool> {
        let resolved = (status == IncidentStatus::Resolved).then_some(at.as_millisecond());
        let changed = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE incidents SET status = $1, status_ms = $2, updated_ms = $2, \
                 resolved_ms = COALESCE(resolved_ms, $3) WHERE number = $4 AND state = 'open'",
            )
            .bind(status.as_str())
            .bind(at.as_millisecond())
            .bind(resolved)
            .bind(num(number))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Records the first acknowledgement (by `who`, who becomes commander if there is none).
    /// `false` when it was acknowledged before.
    pub async fn ack_incident(&self, number: u64, who: &str, at: Timestamp) -> Result<bool> {
        let done = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE incidents SET acked_ms = $1, acked_by = $2, \
                 commander = COALESCE(commander, $2), updated_ms = $1 \
                 WHERE number = $3 AND acked_ms IS NULL",
            )
            .bind(at.as_millisecond())
            .bind(who)
            .bind(num(number))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Closes an open incident; `false` if it was not open.
    pub async fn close_incident(
        &self,
        number: u64,
        resolution: Option<&str>,
        at: Timestamp,
    ) -> Result<bool> {
        let at = at.as_millisecond();
        let done = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE incidents SET state = 'closed', closed_ms = $1, updated_ms = $1, \
                 resolved_ms = COALESCE(resolved_ms, $1), status = 'resolved', \
                 resolution = COALESCE($2, resolution) WHERE number = $3 AND state = 'open'",
            )
            .bind(at)
            .bind(resolution)
            .bind(num(number))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Reopens a closed incident; `false` if it was not closed.
    pub async fn reopen_incident(&self, number: u64, at: Timestamp) -> Result<bool> {
        let at = at.as_millisecond();
        let done = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE incidents SET state = 'open', closed_ms = NULL, resolved_ms = NULL, \
                 status = 'investigating', status_ms = $1, updated_ms = $1 \
                 WHERE number = $2 AND state = 'closed'",
            )
            .bind(at)
            .bind(num(number))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    async fn set_incident_text(
        &self,
        number: u64,
        column: &'static str,
        value: Option<&str>,
    ) -> Result<()> {
        self.set_incident_texts(number, [(column, value)]).await
    }

    /// Sets text columns of one incident in one statement (so a reader never sees half of a
    /// pair such as a channel's id without its name).
    async fn set_incident_texts<const N: usize>(
        &self,
        number: u64,
        values: [(&'static str, Option<&str>); N],
    ) -> Result<()> {
        self.update_incident_texts(number, values, Scope::AnyState)
            .await
            .map(drop)
    }

    /// [`Store::set_incident_texts`] within `scope`: whether the incident changed.
    async fn update_incident_texts<const N: usize>(
        &self,
        number: u64,
        values: [(&'static str, Option<&str>); N],
        scope: Scope,
    ) -> Result<bool> {
        // The columns are this module's constants, never input.
        let sets: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (column, _))| format!("{column} = ${}", i + 3))
            .collect();
        let open_only = match scope {
            Scope::AnyState => "",
            Scope::OpenOnly => " AND state = 'open'",
        };
        let sql = format!(
            "UPDATE incidents SET {}, updated_ms = $1 WHERE number = $2{open_only}",
            sets.join(", ")
        );
        let changed = on_pool_writing!(self, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(Timestamp::now().as_millisecond())
                .bind(num(number));
            for (_, value) in values {
                q = q.bind(value);
            }
            q.execute(pool).await?.rows_affected()
        });
        Ok(changed == 1)
    }

    /// Adds a timeline entry and its audit record, committed together by the one writer (so
    /// neither exists without the other, and the entry never waits on a lock another
    /// connection holds). Needs the audit key.
    pub async fn add_timeline(&self, entry: NewTimelineEntry, audit: AuditEntry) -> Result<i64> {
        self.audit_key()?;
        let writes = vec![
            Write::Timeline(Box::new(entry)),
            Write::Audit(Box::new(audit)),
        ];
        match self.write(writes).await?.as_slice() {
            [Written::Id(id), Written::Id(_)] => Ok(*id),
            other => Err(StoreError::Corrupt {
                table: "incident_events",
                message: format!("the writer answered {other:?} to a timeline entry"),
            }),
        }
    }

    /// The whole timeline, in order.
    pub async fn timeline(&self, incident: u64) -> Result<Vec<TimelineEntry>> {
        let rows: Vec<(i64, i64, String, String, String, String)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, at_ms, actor, kind, text, detail FROM incident_events \
                 WHERE incident = $1 ORDER BY id",
            )
            .bind(num(incident))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, at, actor, kind, text, detail)| {
                Ok(TimelineEntry {
                    id,
                    incident,
                    at: timestamp("incident_events", at)?,
                    actor,
                    kind,
                    text,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// Schedules a timer.
    pub async fn schedule_timer(
        &self,
        incident: u64,
        kind: TimerKind,
        step: u32,
        due: Timestamp,
    ) -> Result<()> {
        on_pool_writing!(self, |pool| {
            sqlx::query(
                "INSERT INTO incident_timers (incident, kind, step, due_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(num(incident))
            .bind(kind.as_str())
            .bind(i64::from(step))
            .bind(due.as_millisecond())
            .execute(pool)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    /// Timers due at `now`, not fired, not cancelled; the earliest first.
    pub async fn due_timers(&self, now: Timestamp, limit: u32) -> Result<Vec<Timer>> {
        let rows: Vec<(i64, i64, String, i64, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, incident, kind, step, due_ms FROM incident_timers \
                 WHERE fired_ms IS NULL AND cancelled = 0 AND due_ms <= $1 \
                 ORDER BY due_ms, id LIMIT $2",
            )
            .bind(now.as_millisecond())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, incident, kind, step, due)| {
                Ok(Timer {
                    id,
                    incident: u64::try_from(incident).unwrap_or_default(),
                    kind: TimerKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                        table: "incident_timers",
                        message: format!("kind {kind:?}"),
                    })?,
                    step: u32::try_from(step).unwrap_or_default(),
                    due: timestamp("incident_timers", due)?,
                })
            })
            .collect()
    }

    /// Claims a due timer for `owner`; `true` for exactly one caller.
    pub async fn claim_timer(&self, id: i64, owner: &str, now: Timestamp) -> Result<bool> {
        let done = on_pool_writing!(self, |pool| {
            sqlx::query(
                "UPDATE incident_timers SET fired_ms = $1, fired_by = $2 \
                 WHERE id = $3 AND fired_ms IS NULL AND cancelled = 0",
            )
            .bind(now.as_millisecond())
            .bind(owner)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Cancels the incident's pending timers of `kinds`.
    pub async fn cancel_timers(&self, incident: u64, kinds: &[TimerKind]) -> Result<()> {
        for kind in kinds {
            on_pool_writing!(self, |pool| {
                sqlx::query(
                    "UPDATE incident_timers SET cancelled = 1 \
                     WHERE incident = $1 AND kind = $2 AND fired_ms IS NULL",
                )
                .bind(num(incident))
                .bind(kind.as_str())
                .execute(pool)
                .await
                .map(|_| ())?
            });
        }
        Ok(())
    }

    /// How many times each timer was fired (for tests and `incident show`): (kind, step,
    /// fired_by) of every fired timer of the incident, in firing order.
    pub async fn fired_timers(&self, incident: u64) -> Result<Vec<(String, u32, String)>> {
        let rows: Vec<(String, i64, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, step, fired_by FROM incident_timers \
                 WHERE incident = $1 AND fired_ms IS NOT NULL ORDER BY fired_ms, id",
            )
            .bind(num(incident))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(k, s, by)| {
                (
                    k,
                    u32::try_from(s).unwrap_or_default(),
                    by.unwrap_or_default(),
                )
            })
            .collect())
    }
}
