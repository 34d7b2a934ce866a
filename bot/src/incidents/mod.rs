//! Incidents: open to close in chat, a channel per incident, severities with escalation, and a
//! timeline that writes itself.
//!
//! `incident …` commands pass the engine's pipeline like every command (inbox, rate limit,
//! policy with the incident's severity, approvals, audit); the engine hands their execution to
//! [`Incidents`] through the [`Desk`] seam, and tells it what happens in channels, so commands
//! and approvals in an incident's channel land on its timeline.
//!
//! Invariants:
//! - The incident is recorded before anything is done in chat: a missing scope or permission
//!   costs the channel, topic, invitation or pin, never the incident; the reply says what to
//!   grant.
//! - Every timeline entry is stored with its audit record (kind `incident`), in one commit.
//! - Timers (acknowledgement deadline, escalation steps, status reminders) are database rows;
//!   `escalation.rs` claims each with a conditional update, so it fires once across restarts
//!   and replicas.
//! - Only [`Clock`] tells incidents the time, so tests and the demo can move it.

pub mod clock;
mod escalation;
pub mod render;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use opsbot_commands::incident::incident_id;
use opsbot_commands::ops::mask_secrets;
use opsbot_commands::{Command, IncidentCmd, IncidentOp, IncidentStatus, Op, Reply, Role};
use opsbot_policies::{Severity, Subject};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use clock::Clock;

use crate::chat::{ChannelRef, ChatSink, DeliveryError, Reaction};
use crate::config::{IncidentsConfig, SeverityPlan};
use crate::engine::{Caller, Desk, DeskFor, Engine, Facts, Observation, Observed};
use crate::store::{
    AuditEntry, AuditKind, Incident, NewIncident, NewTimelineEntry, Store, TimerKind,
};

/// Timeline entries shown by `incident list` and the like, at most.
const LIST_LIMIT: u32 = 25;
/// Attempts at a free channel name (`inc-7-db-down`, `inc-7-db-down-2`, …).
const NAME_ATTEMPTS: u32 = 5;

/// The incidents service. Cheap to clone.
#[derive(Clone)]
pub struct Incidents {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: IncidentsConfig,
    clock: Clock,
    http: reqwest::Client,
    stop: CancellationToken,
}

/// Something done in chat for an incident that did not work, and what to do about it.
type Problems = Vec<String>;

impl Incidents {
    pub fn new(engine: Engine, config: IncidentsConfig, clock: Clock) -> Incidents {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Incidents {
            inner: Arc::new(Inner {
                engine,
                config,
                clock,
                http,
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Registers with the engine and starts the timer sweep (until [`Incidents::stop`]).
    pub fn start(&self) {
        self.inner
            .engine
            .register_desk(DeskFor::Incidents, Arc::new(self.clone()));
        let me = self.clone();
        tokio::spawn(async move { me.sweep_forever().await });
    }

    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// The clock timers run on (tests move it ahead).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    fn store(&self) -> &Store {
        self.inner.engine.store()
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn plan(&self, severity: Severity) -> SeverityPlan {
        self.inner
            .config
            .severities
            .get(&severity)
            .cloned()
            .unwrap_or_else(|| SeverityPlan::default_for(severity))
    }

    fn sink(&self, platform: &str) -> Option<Arc<dyn ChatSink>> {
        self.inner.engine.chat(platform)
    }

    /// How `subject` is written on `platform` (a mention), falling back to the subject.
    fn who(&self, platform: &str) -> impl Fn(&str) -> String + Send + Sync + use<> {
        let sink = self.sink(platform);
        move |s: &str| match (&sink, Subject::parse(s)) {
            (Some(sink), Ok(subject)) => sink.mention(&subject),
            _ => s.to_owned(),
        }
    }

    /// Adds a timeline entry, stored together with its audit record. What people wrote is
    /// masked like every audited text.
    async fn record(&self, inc: &Incident, actor: &str, kind: &str, text: &str, detail: Value) {
        let text = mask_secrets(text);
        let mut audit = AuditEntry::new(AuditKind::Incident, &inc.platform)
            .actor(actor)
            .outcome(kind)
            .text(&text)
            .detail(json!({ "incident": inc.id(), "detail": detail }));
        if let Some(c) = &inc.channel {
            audit = audit.channel(&c.id);
        }
        let entry = NewTimelineEntry {
            incident: inc.number,
            at: self.now(),
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            text,
            detail,
        };
        if let Err(e) = self.store().add_timeline(entry, audit).await {
            tracing::error!(incident = inc.number, error = %e, "cannot store a timeline entry");
        }
    }

    async fn load(&self, number: u64) -> Result<Incident, Reply> {
        match self.store().incident(number).await {
            Ok(Some(inc)) => Ok(inc),
            Ok(None) => Err(
                Reply::warning(format!("There is no {}", incident_id(number)))
                    .text("`incident list` shows the incidents there are."),
            ),
            Err(e) => Err(store_failed(&e)),
        }
    }

    /// The incident a command is about: `--id`, else the channel's.
    async fn target(&self, caller: &Caller, id: Option<u64>) -> Result<Incident, Reply> {
        if let Some(n) = id {
            return self.load(n).await;
        }
        match self
            .store()
            .incident_by_channel(caller.platform, &caller.channel)
            .await
        {
            Ok(Some(inc)) => Ok(inc),
            Ok(None) => Err(Reply::warning("Which incident?").text(
                "This is not an incident's channel: add `--id INC-N` (`incident list` shows them).",
            )),
            Err(e) => Err(store_failed(&e)),
        }
    }

    /// The most severe `inc` has been: when opened, set since (its timeline), or now.
    async fn peak_severity(&self, inc: &Incident) -> Result<Severity, Reply> {
        let entries = self
            .store()
            .timeline(inc.number)
            .await
            .map_err(|e| store_failed(&e))?;
        Ok(entries
            .iter()
            .filter(|e| e.kind == "opened" || e.kind == "severity")
            .filter_map(|e| e.detail.get("severity")?.as_str().and_then(Severity::parse))
            .fold(inc.severity, Severity::min))
    }

    /// Edits the card, the topic and the announcement to the incident's current state.
    async fn refresh(&self, number: u64) {
        let inc = match self.store().incident(number).await {
            Ok(Some(inc)) => inc,
            _ => return,
        };
        let who = self.who(&inc.platform);
        let now = self.now();
        let plan = self.plan(inc.severity);
        if let Some(card) = &inc.card {
            let _ = self
                .inner
                .engine
                .edit(card, &render::card(&inc, &plan, now, &who))
                .await;
        }
        if let (Some(channel), Some(sink)) = (&inc.channel, self.sink(&inc.platform))
            && inc.open
            && let Err(e) = sink
                .set_topic(&channel.id, &render::topic(&inc, &who))
                .await
        {
            tracing::warn!(incident = number, error = %e, "cannot set the channel topic");
        }
        if let Some(msg) = &inc.announcement {
            let link = self.link(&inc);
            let announce_who = self.who(&msg.platform);
            let notify = self.responders_on(&plan, &msg.platform);
            let reply = render::announcement(&inc, &link, &notify, &announce_who);
            let _ = self.inner.engine.edit(msg, &reply).await;
        }
        self.update_gauge().await;
    }

    /// The severity's responders who are on `platform`.
    fn responders_on(&self, plan: &SeverityPlan, platform: &str) -> Vec<String> {
        plan.responders
            .iter()
            .filter(|s| platform_of(s) == platform)
            .map(|s| s.as_str().to_owned())
            .collect()
    }

    /// How to get to the incident's channel from elsewhere.
    fn link(&self, inc: &Incident) -> String {
        match (&inc.channel, self.sink(&inc.platform)) {
            (Some(c), Some(sink)) => sink.channel_link(c),
            (Some(c), None) => format!("#{}", c.name),
            (None, _) => format!("(no channel: `incident show {}`)", inc.id()),
        }
    }

    async fn update_gauge(&self) {
        let Ok(counts) = self.store().open_incident_counts().await else {
            return;
        };
        let metrics = self.inner.engine.metrics();
        for sev in Severity::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == sev)
                .map_or(0, |(_, n)| *n);
            metrics
                .open_incidents
                .get_or_create(&crate::metrics::SeverityLabels {
                    severity: sev.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Posts `reply` in the incident's channel (if it has one).
    async fn post_in_channel(&self, inc: &Incident, reply: &Reply) {
        if let Some(c) = &inc.channel {
            let _ = self.inner.engine.post_in(&inc.platform, &c.id, reply).await;
        }
    }

    /// Brings `who` into the incident's channel, each once (the requester may also be the
    /// commander and a responder); a problem if the platform refused.
    async fn invite(&self, inc: &Incident, who: &[Subject], problems: &mut Problems) {
        let (Some(c), Some(sink)) = (&inc.channel, self.sink(&inc.platform)) else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        let who: Vec<Subject> = who
            .iter()
            .filter(|s| platform_of(s) == inc.platform && seen.insert(*s))
            .cloned()
            .collect();
        if who.is_empty() {
            return;
        }
        if let Err(e) = sink.invite(&c.id, &who).await {
            problems.push(problem("invite people to the channel", &e));
        }
    }

    async fn open(&self, caller: &Caller, op: OpenArgs) -> Result<Reply, Reply> {
        let commander = match &op.commander {
            Some(typed) => Some(resolve_person(caller, typed).map_err(|r| *r)?),
            None => None,
        };
        let now = self.now();
        let new = NewIncident {
            title: op.title.clone(),
            severity: op.severity,
            service: op.service.clone(),
            commander: commander.as_ref().map(|c| c.as_str().to_owned()),
            requester: caller.user.as_str().to_owned(),
            platform: caller.platform.to_owned(),
            origin_channel: caller.channel.clone(),
            opened: now,
        };
        let opened_text = mask_secrets(&format!("opened {}: {}", op.severity, op.title));
        let audit = AuditEntry::new(AuditKind::Incident, caller.platform)
            .actor(caller.user.as_str())
            .outcome("opened")
            .text(opened_text.clone());
        let inc = self
            .store()
            .open_incident(new, &opened_text, audit)
            .await
            .map_err(|e| store_failed(&e))?;
        let plan = self.plan(inc.severity);
        let mut problems = Problems::new();
        let mut inc = inc;
        if let Some(group) = &op.alert {
            self.link_alert_group(&inc, caller.user.as_str(), group, &mut problems)
                .await;
        }

        // The channel: created, topic set, people invited, the card posted and pinned.
        if let Some(sink) = self.sink(&inc.platform) {
            match self.create_channel(sink.as_ref(), &inc).await {
                Ok(channel) => {
                    if let Err(e) = self
                        .store()
                        .set_incident_channel(inc.number, &channel)
                        .await
                    {
                        return Err(store_failed(&e));
                    }
                    self.record(
                        &inc,
                        "opsbot",
                        "channel",
                        &format!("created #{}", channel.name),
                        json!({ "channel": channel.id }),
                    )
                    .await;
                    inc.channel = Some(channel);
                }
                Err(e) => problems.push(problem("create the incident channel", &e)),
            }
        }
        if let Some(channel) = inc.channel.clone() {
            let who = self.who(&inc.platform);
            if let Some(sink) = self.sink(&inc.platform)
                && let Err(e) = sink
                    .set_topic(&channel.id, &render::topic(&inc, &who))
                    .await
            {
                problems.push(problem("set the channel topic", &e));
            }
            let mut people = vec![caller.user.clone()];
            people.extend(commander.clone());
            people.extend(plan.responders.iter().cloned());
            self.invite(&inc, &people, &mut problems).await;
            let card = render::card(&inc, &plan, now, &who);
            match self
                .inner
                .engine
                .post_in(&inc.platform, &channel.id, &card)
                .await
            {
                Ok(msg) => {
                    if let Err(e) = self.store().set_incident_card(inc.number, &msg).await {
                        tracing::error!(error = %e, "cannot store the incident card");
                    }
                    if let Some(sink) = self.sink(&inc.platform)
                        && let Err(e) = sink.pin(&msg).await
                    {
                        problems.push(problem("pin the incident card", &e));
                    }
                    inc.card = Some(msg);
                }
                Err(e) => problems.push(problem("post the incident card", &e)),
            }
            let here: Vec<&Subject> = plan
                .responders
                .iter()
                .filter(|s| platform_of(s) == inc.platform)
                .collect();
            if !here.is_empty() {
                let names: Vec<String> = here.iter().map(|s| who(s.as_str())).collect();
                let mut hello = Reply::warning(format!("{} responders", inc.id())).text(format!(
                    "{} — {} opened by {}. Take command with `incident ack`.",
                    names.join(" "),
                    inc.severity,
                    who(caller.user.as_str())
                ));
                for r in here {
                    hello = hello.notify(r.as_str());
                }
                self.post_in_channel(&inc, &hello).await;
            }
        }

        // The announcement, with a link to the channel.
        if let Some(place) = &self.inner.config.announce_channel {
            let who = self.who(&place.platform);
            let notify = self.responders_on(&plan, &place.platform);
            let reply = render::announcement(&inc, &self.link(&inc), &notify, &who);
            match self
                .inner
                .engine
                .post_in(&place.platform, &place.channel, &reply)
                .await
            {
                Ok(msg) => {
                    if let Err(e) = self
                        .store()
                        .set_incident_announcement(inc.number, &msg)
                        .await
                    {
                        tracing::error!(error = %e, "cannot store the announcement");
                    }
                }
                Err(e) => problems.push(problem("announce the incident", &e)),
            }
        }

        // Acknowledged at once when it has a commander; escalating until then otherwise.
        if let Some(c) = &commander {
            self.acknowledge(&inc, c.as_str(), caller.user.as_str())
                .await;
        } else {
            self.schedule_escalation(&inc, now).await;
        }
        self.schedule_reminder(&inc, now).await;
        self.refresh(inc.number).await;

        let who = self.who(caller.platform);
        let mut reply = Reply::danger(format!("{} opened · {}", inc.id(), inc.severity))
            .text(inc.title.clone())
            .field("Channel", self.link(&inc))
            .field(
                "Commander",
                commander.map_or_else(
                    || "nobody yet: `incident ack` takes it".to_owned(),
                    |c| who(c.as_str()),
                ),
            );
        if !problems.is_empty() {
            reply = reply.field("Could not", problems.join("\n"));
        }
        Ok(reply)
    }

    async fn create_channel(
        &self,
        sink: &dyn ChatSink,
        inc: &Incident,
    ) -> Result<ChannelRef, DeliveryError> {
        let base = format!("inc-{}-{}", inc.number, render::slug(&inc.title));
        let mut last = None;
        for attempt in 1..=NAME_ATTEMPTS {
            let name = if attempt == 1 {
                base.clone()
            } else {
                format!("{base}-{attempt}")
            };
            match sink.create_channel(&name).await {
                Err(e @ DeliveryError::NameTaken { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(DeliveryError::NameTaken { name: base }))
    }

    /// Records the first acknowledgement: the escalation stops. `commander` takes command if
    /// nobody has it.
    async fn acknowledge(&self, inc: &Incident, commander: &str, actor: &str) -> bool {
        let now = self.now();
        match self.store().ack_incident(inc.number, commander, now).await {
            Ok(true) => {
                let _ = self
                    .store()
                    .cancel_timers(inc.number, &[TimerKind::Ack, TimerKind::Escalate])
                    .await;
                let after = now.duration_since(inc.opened).as_secs_f64().max(0.0);
                self.inner
                    .engine
                    .metrics()
                    .time_to_ack
                    .get_or_create(&crate::metrics::SeverityLabels {
                        severity: inc.severity.to_string(),
                    })
                    .observe(after);
                self.record(
                    inc,
                    actor,
                    "ack",
                    &format!("acknowledged; {commander} has command, escalation stopped"),
                    json!({ "commander": commander }),
                )
                .await;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(error = %e, "cannot record an acknowledgement");
                false
            }
        }
    }

    async fn run(&self, caller: &Caller, cmd: &IncidentCmd) -> Result<Reply, Reply> {
        let actor = caller.user.as_str();
        let now = self.now();
        let who = self.who(caller.platform);
        match &cmd.op {
            IncidentOp::Open {
                severity,
                title,
                service,
                commander,
                alert,
            } => {
                self.open(
                    caller,
                    OpenArgs {
                        severity: *severity,
                        title: title.clone(),
                        service: service.clone(),
                        commander: commander.clone(),
                        alert: alert.clone(),
                    },
                )
                .await
            }
            IncidentOp::List { open, sev } => {
                let list = self
                    .store()
                    .list_incidents(*open, *sev, LIST_LIMIT)
                    .await
                    .map_err(|e| store_failed(&e))?;
                Ok(render::list(&list, now, &who))
            }
            IncidentOp::Stats { since } => {
                let since = since.unwrap_or(Duration::from_secs(30 * 24 * 3600));
                let from = now
                    .saturating_sub(jiff::SignedDuration::try_from(since).unwrap_or_default())
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                let list = self
                    .store()
                    .incidents_since(from)
                    .await
                    .map_err(|e| store_failed(&e))?;
                Ok(render::stats(
                    &list,
                    &opsbot_commands::grammar::format_duration(since),
                ))
            }
            op => {
                let inc = self.target(caller, cmd.id).await?;
                self.run_on(caller, actor, inc, op, &who).await
            }
        }
    }

    async fn run_on(
        &self,
        caller: &Caller,
        actor: &str,
        inc: Incident,
        op: &IncidentOp,
        who: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<Reply, Reply> {
        let now = self.now();
        let id = inc.id();
        let changes = !matches!(
            op,
            IncidentOp::Show | IncidentOp::Timeline | IncidentOp::Export | IncidentOp::Reopen
        );
        if changes && !inc.open {
            return Err(closed_meanwhile(&id));
        }
        let mut problems = Problems::new();
        let reply = match op {
            IncidentOp::Show => {
                return Ok(render::card(&inc, &self.plan(inc.severity), now, who));
            }
            IncidentOp::Timeline => {
                let entries = self
                    .store()
                    .timeline(inc.number)
                    .await
                    .map_err(|e| store_failed(&e))?;
                return Ok(render::timeline(&inc, &entries, who));
            }
            IncidentOp::Export => {
                let entries = self
                    .store()
                    .timeline(inc.number)
                    .await
                    .map_err(|e| store_failed(&e))?;
                let md = render::export(&inc, &self.plan(inc.severity), &entries, now);
                return Ok(Reply::info(format!("Postmortem draft · {id}"))
                    .block(Some(format!("{id}.md")), md));
            }
            IncidentOp::Status { status, message } => {
                let changed = self
                    .store()
                    .set_incident_status(inc.number, *status, now)
                    .await
                    .map_err(|e| store_failed(&e))?;
                if !changed {
                    return Err(closed_meanwhile(&id));
                }
                let text = match message {
                    Some(m) => format!("{status}: {m}"),
                    None => status.to_string(),
                };
                self.record(
                    &inc,
                    actor,
                    "status",
                    &text,
                    json!({ "status": status.as_str() }),
                )
                .await;
                if *status == IncidentStatus::Resolved && inc.resolved.is_none() {
                    self.observe_resolved(&inc, now);
                }
                self.schedule_reminder(&inc, now).await;
                let post = render::status_post(&inc, *status, message.as_deref());
                if inc.channel.as_ref().is_some_and(|c| c.id != caller.channel) {
                    self.post_in_channel(&inc, &post).await;
                }
                post
            }
            IncidentOp::Sev { severity } => {
                if *severity == inc.severity {
                    return Ok(Reply::info(format!("{id} is {severity} already")));
                }
                let changed = self
                    .store()
                    .set_incident_severity(inc.number, *severity)
                    .await
                    .map_err(|e| store_failed(&e))?;
                if !changed {
                    return Err(closed_meanwhile(&id));
                }
                self.record(
                    &inc,
                    actor,
                    "severity",
                    &format!("{} → {severity}", inc.severity),
                    json!({ "severity": severity.as_str(), "from": inc.severity.as_str() }),
                )
                .await;
                let plan = self.plan(*severity);
                self.invite(&inc, &plan.responders, &mut problems).await;
                if inc.acked.is_none() {
                    // The new severity's chain, from now.
                    let _ = self
                        .store()
                        .cancel_timers(inc.number, &[TimerKind::Ack, TimerKind::Escalate])
                        .await;
                    let mut updated = inc.clone();
                    updated.severity = *severity;
                    self.schedule_escalation(&updated, now).await;
                }
                Reply::warning(format!("{id} is now {severity}"))
                    .text(format!("was {}: {}", inc.severity, plan.description))
            }
            IncidentOp::Assign { role, person } => {
                let subject = resolve_person(caller, person).map_err(|r| *r)?;
                let changed = self
                    .store()
                    .set_incident_role(inc.number, *role, subject.as_str())
                    .await
                    .map_err(|e| store_failed(&e))?;
                if !changed {
                    return Err(closed_meanwhile(&id));
                }
                self.record(
                    &inc,
                    actor,
                    "role",
                    &format!("{role}: {subject}"),
                    json!({ "role": role.as_str(), "who": subject.as_str() }),
                )
                .await;
                self.invite(&inc, std::slice::from_ref(&subject), &mut problems)
                    .await;
                if *role == Role::Commander {
                    self.acknowledge(&inc, subject.as_str(), actor).await;
                }
                Reply::ok(format!("{id}: {} is {role}", who(subject.as_str())))
            }
            IncidentOp::Note { text, follow_up } => {
                let kind = if *follow_up { "follow_up" } else { "note" };
                self.record(&inc, actor, kind, text, Value::Null).await;
                return Ok(Reply::ok(format!(
                    "{} added to {id}",
                    if *follow_up { "Follow-up" } else { "Note" }
                ))
                .text(mask_secrets(text)));
            }
            IncidentOp::Ack => {
                if !self.acknowledge(&inc, actor, actor).await {
                    let by = inc
                        .acked_by
                        .as_deref()
                        .map_or_else(|| "someone".into(), who);
                    return Err(Reply::info(format!("{id} was acknowledged already"))
                        .text(format!("by {by}")));
                }
                let commander = inc.commander.clone().unwrap_or_else(|| actor.to_owned());
                Reply::ok(format!("{id} acknowledged")).text(format!(
                    "{} has command; escalation stopped.",
                    who(&commander)
                ))
            }
            IncidentOp::Close { resolution } => {
                let closed = self
                    .store()
                    .close_incident(inc.number, resolution.as_deref(), now)
                    .await
                    .map_err(|e| store_failed(&e))?;
                if !closed {
                    return Err(Reply::warning(format!("{id} is closed already")));
                }
                let _ = self
                    .store()
                    .cancel_timers(
                        inc.number,
                        &[TimerKind::Ack, TimerKind::Escalate, TimerKind::Remind],
                    )
                    .await;
                if inc.resolved.is_none() {
                    self.observe_resolved(&inc, now);
                }
                let text = match resolution {
                    Some(r) => format!("closed: {r}"),
                    None => "closed".to_owned(),
                };
                self.record(&inc, actor, "closed", &text, Value::Null).await;
                if inc.paged {
                    self.resolve_page(&inc).await;
                }
                let summary = Reply::ok(format!("{id} closed · {}", inc.severity))
                    .text(inc.title.clone())
                    .field("Lasted", render::elapsed(inc.opened, now))
                    .field(
                        "Resolution",
                        resolution.clone().unwrap_or_else(|| "—".to_owned()),
                    )
                    .field(
                        "Postmortem draft",
                        format!("`incident export {id}` (timeline: `incident timeline {id}`)"),
                    );
                if inc.channel.as_ref().is_some_and(|c| c.id != caller.channel) {
                    self.post_in_channel(&inc, &summary).await;
                }
                // The card and announcement show the end before the channel is archived.
                self.refresh(inc.number).await;
                if let (Some(c), Some(sink)) = (&inc.channel, self.sink(&inc.platform))
                    && let Err(e) = sink.archive(&c.id).await
                {
                    problems.push(problem("archive the channel", &e));
                }
                return Ok(with_problems(summary, problems));
            }
            IncidentOp::Reopen => {
                let reopened = self
                    .store()
                    .reopen_incident(inc.number, now)
                    .await
                    .map_err(|e| store_failed(&e))?;
                if !reopened {
                    return Err(Reply::warning(format!("{id} is open")));
                }
                self.record(&inc, actor, "reopened", "reopened", Value::Null)
                    .await;
                self.schedule_reminder(&inc, now).await;
                Reply::warning(format!("{id} reopened")).text(format!(
                    "{} (its channel stays archived; work in {})",
                    inc.title,
                    self.link(&inc)
                ))
            }
            IncidentOp::Open { .. } | IncidentOp::List { .. } | IncidentOp::Stats { .. } => {
                return Err(Reply::warning("Not about one incident"));
            }
        };
        self.refresh(inc.number).await;
        Ok(with_problems(reply, problems))
    }

    fn observe_resolved(&self, inc: &Incident, at: Timestamp) {
        let secs = at.duration_since(inc.opened).as_secs_f64().max(0.0);
        self.inner
            .engine
            .metrics()
            .time_to_resolve
            .get_or_create(&crate::metrics::SeverityLabels {
                severity: inc.severity.to_string(),
            })
            .observe(secs);
    }

    /// Links the alert group `group` (its short id) into the incident's timeline.
    async fn link_alert_group(
        &self,
        inc: &Incident,
        actor: &str,
        group: &str,
        problems: &mut Problems,
    ) {
        let groups = match self.store().alert_groups_by_id(group).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the alert group");
                Vec::new()
            }
        };
        let Some(g) = groups.first() else {
            problems.push(format!(
                "link alert group {group}: there is no such alert group"
            ));
            return;
        };
        let n = &g.notification;
        let alertname = n.common("alertname").unwrap_or("alerts");
        let text = format!(
            "alert group {group}: {alertname} ({} firing, severity {})",
            n.alerts
                .iter()
                .filter(|a| a.status == crate::alerts::payload::Status::Firing)
                .count(),
            n.severity().unwrap_or("none"),
        );
        let detail = json!({ "group": group, "group_key": g.group_key, "labels": n.common_labels });
        self.record(inc, actor, "alert", &text, detail).await;
    }
}

struct OpenArgs {
    severity: Severity,
    title: String,
    service: Option<String>,
    commander: Option<String>,
    alert: Option<String>,
}

#[async_trait]
impl Desk for Incidents {
    async fn prepare(&self, caller: &Caller, cmd: &Command) -> Result<Facts, Reply> {
        let Op::Incident(cmd) = &cmd.op else {
            return Ok(Facts::default());
        };
        if !cmd.op.names_one() {
            return Ok(Facts::default());
        }
        let inc = self.target(caller, cmd.id).await?;
        // Closing (or reopening) and changing the severity are judged at the most severe the
        // incident has been: lowering a P1 first does not make it a minor one to close.
        let severity = match cmd.op {
            IncidentOp::Close { .. } | IncidentOp::Reopen | IncidentOp::Sev { .. } => {
                self.peak_severity(&inc).await?
            }
            _ => inc.severity,
        };
        Ok(Facts {
            severity: Some(severity),
            namespace: None,
        })
    }

    async fn execute(&self, caller: &Caller, cmd: &Command) -> Result<Reply, Reply> {
        match &cmd.op {
            Op::Incident(inc) => self.run(caller, inc).await,
            _ => Err(Reply::warning("Not an incident command")),
        }
    }

    async fn observe(&self, seen: Observation) {
        let inc = match self
            .store()
            .incident_by_channel(&seen.platform, &seen.channel)
            .await
        {
            Ok(Some(inc)) => inc,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot look up the channel's incident");
                return;
            }
        };
        let (kind, text) = match seen.kind {
            Observed::Command => (
                "command",
                match &seen.summary {
                    Some(s) => format!("`{}` → {}: {s}", seen.command, seen.outcome),
                    None => format!("`{}` → {}", seen.command, seen.outcome),
                },
            ),
            Observed::Approval => (
                "approval",
                format!(
                    "{} {}: `{}`",
                    seen.outcome,
                    seen.summary.as_deref().unwrap_or(""),
                    seen.command
                ),
            ),
        };
        let detail = json!({ "command": seen.command, "outcome": seen.outcome });
        self.record(&inc, &seen.actor, kind, &text, detail).await;
    }

    async fn reaction(&self, reaction: Reaction) {
        if !matches!(
            reaction.emoji.as_str(),
            "pushpin" | "round_pushpin" | "📌" | "📍"
        ) {
            return;
        }
        let Ok(Some(inc)) = self
            .store()
            .incident_by_channel(reaction.platform, &reaction.channel)
            .await
        else {
            return;
        };
        let mut reaction = reaction;
        if reaction.text.is_none()
            && let Some(sink) = self.sink(reaction.platform)
        {
            match sink
                .message_text(&reaction.channel, &reaction.message_id)
                .await
            {
                Ok(text) => reaction.text = text,
                Err(e) => tracing::warn!(error = %e, "cannot read the pinned message"),
            }
        }
        let what = reaction
            .text
            .as_deref()
            .map(|t| opsbot_commands::reply::cut_chars(t, 300))
            .or_else(|| reaction.link.clone())
            .unwrap_or_else(|| format!("message {}", reaction.message_id));
        let text = match &reaction.author {
            Some(a) => format!("{a}: {what}"),
            None => what,
        };
        let detail = json!({
            "message": reaction.message_id,
            "link": reaction.link,
            "author": reaction.author.as_ref().map(Subject::as_str),
        });
        self.record(&inc, reaction.user.as_str(), "pinned", &text, detail)
            .await;
    }
}

/// `slack:U1` → `slack`; `slack-group:S1` → `slack`; `discord-role:1` → `discord`.
fn platform_of(s: &Subject) -> &str {
    s.kind().split('-').next().unwrap_or("")
}

/// A typed person (`me`, `<@U123>`, `@alice`) as a subject on the caller's platform.
fn resolve_person(caller: &Caller, typed: &str) -> Result<Subject, Box<Reply>> {
    let platform = caller.platform;
    let subject = if typed == "me" {
        return Ok(caller.user.clone());
    } else if let Some(id) = typed.strip_prefix("<@").and_then(|r| r.strip_suffix('>')) {
        format!("{platform}:{id}")
    } else if let Some(name) = typed.strip_prefix('@')
        && platform == "console"
    {
        format!("console:{name}")
    } else {
        return Err(Box::new(
            Reply::warning(format!("Who is {typed}?"))
                .text("Mention them (type @ and pick the person) or write `me`."),
        ));
    };
    Subject::parse(&subject)
        .map_err(|e| Box::new(Reply::warning(format!("Who is {typed}?")).text(e.0)))
}

/// What a failed channel action means for the operator.
fn problem(what: &str, e: &DeliveryError) -> String {
    match e.remedy() {
        Some(remedy) => format!("{what}: {remedy}"),
        None => format!("{what}: {e}"),
    }
}

fn with_problems(reply: Reply, problems: Problems) -> Reply {
    if problems.is_empty() {
        reply
    } else {
        reply.field("Could not", problems.join("\n"))
    }
}

fn store_failed(e: &crate::store::StoreError) -> Reply {
    tracing::error!(error = %e, "incident store failure");
    Reply::danger("Nothing was changed")
        .text("opsbot's database did not answer. Try again in a moment.")
}

/// The answer to a change of a closed incident (also one closed while the change was made).
fn closed_meanwhile(id: &str) -> Reply {
    Reply::warning(format!("{id} is closed"))
        .text(format!("Reopen it first: `incident reopen {id}`."))
}
