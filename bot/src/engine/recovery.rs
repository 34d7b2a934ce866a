//! The sweep, every `sweep_interval`: approvals expire, approved requests nobody claimed run,
//! abandoned executions fail, and requests acknowledged by a process that stopped get their one
//! final answer.

use std::time::Duration;

use jiff::Timestamp;
use opsbot_commands::Reply;
use opsbot_policies::Subject;
use serde_json::json;

use super::{Ctx, Engine};
use crate::store::{ApprovalState, AuditKind, InboxEntry, InboxState};

/// How long past the longest operation timeout an execution may stay unfinished before it is
/// taken for abandoned by a stopped process.
const ABANDON_GRACE: Duration = Duration::from_secs(300);

impl Engine {
    /// One pass of the background duties: expire overdue requests, run approved requests that
    /// nobody claimed (their process stopped between approval and execution), fail abandoned
    /// executions, forget delivery ids older than a day (platforms retry within minutes), and
    /// record the rejections held back from the audit log, counted.
    pub async fn sweep(&self) {
        match self.inner.store.expired_pending(Timestamp::now()).await {
            Ok(expired) => {
                for a in expired {
                    self.expire(a).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot look for expired approvals"),
        }
        match self.inner.store.approvals_in(ApprovalState::Approved).await {
            Ok(approved) => {
                for a in approved {
                    let engine = self.clone();
                    self.spawn(async move { engine.run_approved(&a.id, None).await });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot look for approved requests"),
        }
        self.fail_abandoned().await;
        self.answer_orphans().await;
        let forget_before = Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .unwrap_or(Timestamp::MIN);
        if let Err(e) = self.inner.store.prune_inbox(forget_before).await {
            tracing::error!(error = %e, "cannot prune the inbox");
        }
        self.inner.limiter.retain_recent();
        self.record_held_rejections().await;
        self.update_pending_gauge().await;
    }

    /// Requests still `executing` long after any operation could have finished were being run
    /// by a process that stopped. Their outcome is unknown: they fail, saying so, so nobody
    /// waits on them and the card tells people to look at the cluster.
    pub(super) async fn fail_abandoned(&self) {
        let options = &self.inner.operator.options;
        let longest = options.rollout_timeout.max(options.job_timeout) + ABANDON_GRACE;
        let cutoff = Timestamp::now()
            .checked_sub(
                jiff::SignedDuration::try_from(longest).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(Timestamp::MIN);
        let executing = match self
            .inner
            .store
            .approvals_in(ApprovalState::Executing)
            .await
        {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "cannot look for abandoned executions");
                return;
            }
        };
        for a in executing.into_iter().filter(|a| a.updated < cutoff) {
            let why =
                "opsbot stopped while running this; its outcome is unknown: check the cluster";
            let change = self
                .inner
                .store
                .finish(&a.id, ApprovalState::Failed, why)
                .await;
            self.settle(
                &a,
                change,
                AuditKind::Execution,
                "abandoned",
                serde_json::Value::Null,
            )
            .await;
        }
    }

    /// Writes this process's heartbeat, then answers the requests that a stopped process
    /// (no heartbeat for three sweeps) acknowledged but never answered: nothing was run if it
    /// had not started; the outcome is unknown if a change was running. Exactly one process
    /// takes each over (a conditional update), so each gets one final answer.
    pub(super) async fn answer_orphans(&self) {
        let me = &self.inner.instance;
        if let Err(e) = self.inner.store.heartbeat(me).await {
            return tracing::error!(error = %e, "cannot write the heartbeat");
        }
        let silence = (self.inner.options.sweep_interval * 3).max(Duration::from_secs(3));
        let alive_since = Timestamp::now()
            .checked_sub(jiff::SignedDuration::try_from(silence).unwrap_or_default())
            .unwrap_or(Timestamp::MIN);
        let orphans = match self.inner.store.orphaned(me, alive_since).await {
            Ok(list) => list,
            Err(e) => return tracing::error!(error = %e, "cannot look for orphaned requests"),
        };
        for entry in orphans {
            if self.sink(&entry.platform).is_none() {
                continue; // its adapter is not running here (yet): another process answers it
            }
            match self.inner.store.adopt(entry.id, &entry.owner, me).await {
                Ok(true) => self.answer_orphan(entry).await,
                Ok(false) => {}
                Err(e) => tracing::error!(inbox = entry.id, error = %e, "cannot adopt a request"),
            }
        }
    }

    pub(super) async fn answer_orphan(&self, entry: InboxEntry) {
        let Ok(user) = Subject::parse(&entry.actor) else {
            tracing::error!(inbox = entry.id, "orphaned request with an invalid actor");
            return;
        };
        let ctx = Ctx {
            platform: &entry.platform,
            channel: &entry.channel,
            user: &user,
            origin: None,
        };
        let (outcome, reply) = if entry.state == InboxState::Running && entry.mutating {
            (
                "outcome_unknown",
                Reply::danger("opsbot stopped while running this").text(format!(
                    "`{}` was running when opsbot stopped; its outcome is unknown. Check the \
                     cluster before you try again.",
                    entry.text
                )),
            )
        } else {
            (
                "not_run",
                Reply::warning("opsbot restarted before running this")
                    .text(format!("`{}`: nothing was run. Try again.", entry.text)),
            )
        };
        self.audit(
            self.entry(&ctx, AuditKind::Rejection)
                .text(&entry.text)
                .outcome(format!("orphaned_{outcome}"))
                .detail(json!({ "inbox": entry.id, "owner": entry.owner })),
        )
        .await;
        self.say(&ctx, &reply).await;
        if let Err(e) = self
            .inner
            .store
            .mark(
                entry.id,
                InboxState::Answered,
                entry.mutating,
                Some(outcome),
            )
            .await
        {
            tracing::error!(inbox = entry.id, error = %e, "cannot mark an orphaned request answered");
        }
    }

    /// Writes this process's heartbeat every sweep interval, on its own: a sweep can take long
    /// (chat calls waiting out rate limits), and a process whose heartbeat lapses is taken for
    /// stopped, its requests answered by another.
    pub(super) async fn heartbeat_forever(&self) {
        let mut tick = tokio::time::interval(self.inner.options.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.inner.store.heartbeat(&self.inner.instance).await {
                tracing::error!(error = %e, "cannot write the heartbeat");
            }
        }
    }

    pub(super) async fn sweep_forever(&self) {
        let mut tick = tokio::time::interval(self.inner.options.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep().await;
        }
    }
}
