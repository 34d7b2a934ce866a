//! Timers: the acknowledgement deadline, the escalation chain, status reminders, and pages.
//!
//! Each is a row in `incident_timers`, scheduled when an incident opens (or its severity
//! changes, or its status is updated), and fired by whichever process's sweep claims it first
//! (a conditional update): once, also after a restart and with several replicas. A timer that
//! fires after its reason went away (someone acknowledged; the incident closed) does nothing.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use opsbot_commands::Reply;
use opsbot_policies::Subject;
use serde_json::json;

use super::{Incidents, platform_of};
use crate::store::{Incident, Timer, TimerKind};

/// Timers handled per sweep, at most (the rest the next sweep).
const SWEEP_BATCH: u32 = 100;
/// Attempts at a PagerDuty event before it is recorded as failed.
const PAGE_ATTEMPTS: u32 = 3;

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

impl Incidents {
    /// The acknowledgement deadline and the severity's escalation steps, counted from `from`.
    pub(super) async fn schedule_escalation(&self, inc: &Incident, from: Timestamp) {
        let plan = self.plan(inc.severity);
        let mut due = plus(from, plan.ack_within);
        let mut timers = vec![(TimerKind::Ack, 0, due)];
        for (i, step) in plan.escalation.iter().enumerate() {
            due = plus(due, step.after);
            timers.push((
                TimerKind::Escalate,
                u32::try_from(i).unwrap_or(u32::MAX),
                due,
            ));
        }
        for (kind, step, due) in timers {
            if let Err(e) = self
                .store()
                .schedule_timer(inc.number, kind, step, due)
                .await
            {
                tracing::error!(incident = inc.number, error = %e, "cannot schedule a timer");
            }
        }
    }

    /// The next status reminder, `remind_every` after `from` (replacing any pending one).
    pub(super) async fn schedule_reminder(&self, inc: &Incident, from: Timestamp) {
        let plan = self.plan(inc.severity);
        let _ = self
            .store()
            .cancel_timers(inc.number, &[TimerKind::Remind])
            .await;
        let due = plus(from, plan.remind_every);
        if let Err(e) = self
            .store()
            .schedule_timer(inc.number, TimerKind::Remind, 0, due)
            .await
        {
            tracing::error!(incident = inc.number, error = %e, "cannot schedule a reminder");
        }
    }

    pub(super) async fn sweep_forever(&self) {
        let every = self.inner.config.sweep_interval;
        let every = self
            .inner
            .clock
            .real_duration(every)
            .max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.sweep().await;
        }
    }

    /// Fires every due timer this process claims. Returns how many it fired.
    pub async fn sweep(&self) -> usize {
        let now = self.now();
        let due = match self.store().due_timers(now, SWEEP_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read due incident timers");
                return 0;
            }
        };
        let mut fired = 0;
        for timer in due {
            match self
                .store()
                .claim_timer(timer.id, self.inner.engine.instance(), now)
                .await
            {
                Ok(true) => {
                    fired += 1;
                    self.fire(timer).await;
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot claim an incident timer"),
            }
        }
        fired
    }

    async fn fire(&self, timer: Timer) {
        let inc = match self.store().incident(timer.incident).await {
            Ok(Some(inc)) if inc.open => inc,
            _ => return,
        };
        match timer.kind {
            TimerKind::Ack if inc.acked.is_none() => {
                let plan = self.plan(inc.severity);
                let text = format!(
                    "nobody took command within {}",
                    opsbot_commands::grammar::format_duration(plan.ack_within)
                );
                self.record(&inc, "opsbot", "ack_overdue", &text, json!({}))
                    .await;
                let reply = Reply::warning(format!("{} is not acknowledged", inc.id()))
                    .text(format!("{text}. Take command with `incident ack`."));
                self.post_in_channel(&inc, &reply).await;
            }
            TimerKind::Escalate if inc.acked.is_none() => self.escalate(&inc, timer.step).await,
            TimerKind::Remind => {
                let plan = self.plan(inc.severity);
                let who = self.who(&inc.platform);
                let whom = inc
                    .commander
                    .as_deref()
                    .map_or_else(|| "Commander".to_owned(), &who);
                let since = super::render::elapsed(inc.status_at, self.now());
                let mut reply = Reply::info(format!("{}: status update?", inc.id())).text(format!(
                    "{whom}: the last status update was {since} ago. \
                     `incident status <investigating|identified|monitoring|resolved> …`"
                ));
                if let Some(c) = &inc.commander {
                    reply = reply.notify(c.clone());
                }
                self.post_in_channel(&inc, &reply).await;
                self.record(
                    &inc,
                    "opsbot",
                    "reminder",
                    &format!("asked for a status update ({since} since the last)"),
                    json!({}),
                )
                .await;
                let next = plus(self.now(), plan.remind_every);
                let _ = self
                    .store()
                    .schedule_timer(inc.number, TimerKind::Remind, 0, next)
                    .await;
            }
            // Acknowledged since it was scheduled: nothing to do.
            TimerKind::Ack | TimerKind::Escalate => {}
        }
    }

    async fn escalate(&self, inc: &Incident, step: u32) {
        let plan = self.plan(inc.severity);
        let Some(s) = plan.escalation.get(step as usize) else {
            return;
        };
        let of = plan.escalation.len();
        let names: Vec<String> = s.notify.iter().map(|x| x.as_str().to_owned()).collect();
        let text = format!(
            "escalated to {} (step {} of {of})",
            if names.is_empty() {
                "nobody configured".to_owned()
            } else {
                names.join(", ")
            },
            step + 1
        );
        self.record(
            inc,
            "opsbot",
            "escalation",
            &text,
            json!({ "step": step + 1, "notify": names }),
        )
        .await;
        let mut problems = Vec::new();
        self.invite(inc, &s.notify, &mut problems).await;
        for p in problems {
            tracing::warn!(incident = inc.number, problem = %p, "escalation");
        }
        // In the channel, and in the announcement's channel.
        let mut places = Vec::new();
        if let Some(c) = &inc.channel {
            places.push((inc.platform.clone(), c.id.clone()));
        }
        if let Some(a) = &self.inner.config.announce_channel {
            places.push((a.platform.clone(), a.channel.clone()));
        }
        for (platform, channel) in places {
            let who = self.who(&platform);
            let here: Vec<&Subject> = s
                .notify
                .iter()
                .filter(|x| platform_of(x) == platform)
                .collect();
            let mentions: Vec<String> = here.iter().map(|x| who(x.as_str())).collect();
            let mut reply = Reply::danger(format!(
                "{} · {} escalated (step {} of {of})",
                inc.id(),
                inc.severity,
                step + 1
            ))
            .text(format!(
                "{} — {} has no commander yet. Take command with `incident ack --id {}`.",
                mentions.join(" "),
                inc.title,
                inc.id()
            ));
            for x in here {
                reply = reply.notify(x.as_str());
            }
            let _ = self.inner.engine.post_in(&platform, &channel, &reply).await;
        }
        if s.page {
            self.page(inc).await;
        }
    }

    /// Sends a PagerDuty trigger for the incident (deduplicated per incident).
    async fn page(&self, inc: &Incident) {
        let Some(pd) = &self.inner.config.pagerduty else {
            return;
        };
        let severity = match inc.severity {
            opsbot_policies::Severity::P1 => "critical",
            opsbot_policies::Severity::P2 => "error",
            opsbot_policies::Severity::P3 => "warning",
            opsbot_policies::Severity::P4 => "info",
        };
        let body = json!({
            "routing_key": pd.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": dedup_key(inc),
            "payload": {
                "summary": format!("{} {}: {}", inc.id(), inc.severity, inc.title),
                "source": "opsbot",
                "severity": severity,
                "custom_details": { "service": inc.service, "status": inc.status.as_str() },
            },
        });
        match self.send_event(&pd.url, &body).await {
            Ok(()) => {
                let _ = self.store().set_incident_paged(inc.number).await;
                self.record(inc, "opsbot", "page", "PagerDuty triggered", json!({}))
                    .await;
            }
            Err(e) => {
                self.record(
                    inc,
                    "opsbot",
                    "page",
                    &format!("PagerDuty trigger failed: {e}"),
                    json!({}),
                )
                .await
            }
        }
    }

    /// Resolves the incident's PagerDuty alert (on close).
    pub(super) async fn resolve_page(&self, inc: &Incident) {
        let Some(pd) = &self.inner.config.pagerduty else {
            return;
        };
        let body = json!({
            "routing_key": pd.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": dedup_key(inc),
        });
        let text = match self.send_event(&pd.url, &body).await {
            Ok(()) => "PagerDuty resolved".to_owned(),
            Err(e) => format!("PagerDuty resolve failed: {e}"),
        };
        self.record(inc, "opsbot", "page", &text, json!({})).await;
    }

    /// POSTs one Events API v2 event: retried on 429 and 5xx; an error names the status, never
    /// the routing key.
    async fn send_event(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=PAGE_ATTEMPTS {
            match self.inner.http.post(url).json(body).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    last = format!("HTTP {}", r.status().as_u16());
                }
                Ok(r) => return Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => {
                    last = if e.is_timeout() {
                        "timeout".into()
                    } else {
                        "unreachable".into()
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        Err(last)
    }
}

fn dedup_key(inc: &Incident) -> String {
    format!("opsbot-{}", inc.id())
}
