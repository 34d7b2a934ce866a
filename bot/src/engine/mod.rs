//! The pipeline every chat platform uses:
//! dedupe → audit → rate limit → parse → defaults → policy → execute / ask for approval / deny.
//!
//! Invariants:
//! - Nothing runs without a decision on record: the request and the decision are appended to the
//!   audit log *before* anything executes; if the audit log cannot be written, nothing runs.
//! - An approved request runs exactly once: the state change `approved → executing` is a
//!   conditional update in the database, and only its one winner executes (also across replicas).
//! - The policy is evaluated again right before an approved request runs.
//! - The user always gets a reply, also when Kubernetes or the database fails; a reply that cannot
//!   be delivered is recorded in the audit log as undelivered.
//! - The engine knows no platform format: it posts [`Reply`]s through each platform's
//!   [`ChatSink`].
//!
//! Here: the engine, and taking a request ([`Engine::accept`]) and answering it
//! ([`Engine::run`]). The steps: `command.rs` (a command from text to answer), `approvals.rs`
//! (cards, votes, the one execution of an approved request), `delivery.rs` (replies through the
//! sinks), `recovery.rs` (the sweep: expiry, unclaimed and abandoned executions, requests left
//! by a stopped process).

mod approvals;
mod busy_log;
pub mod cards;
mod command;
mod delivery;
pub mod desk;
pub mod policy_file;
pub mod ratelimit;
mod recovery;
mod rejection_log;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use opsbot_commands::grammar::MAX_INPUT_BYTES;
use opsbot_commands::{Command, Op, Operator, Reply};
use opsbot_policies::Subject;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::chat::{
    AlertActions, AlertClick, ApprovalClick, ChatSink, Invocation, Membership, Platform,
};
use crate::config::{ChannelDefaults, RateLimits};
use crate::metrics::Metrics;
use crate::store::{AuditEntry, AuditKind, InboxKind, InboxState, NewInboxEntry, Receipt, Store};
pub use desk::{Caller, Desk, DeskFor, Facts, Observation, Observed};
pub use policy_file::{PolicyFile, Reload};
pub use ratelimit::RateLimiter;

/// Why an inbound request was refused before it reached the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectionKind {
    BadSignature,
    StaleTimestamp,
    TooLarge,
    Malformed,
    Replay,
    /// Missing or wrong credentials (the Alertmanager webhook).
    Unauthorized,
    /// From a place opsbot does not serve (a Discord DM or a guild not configured).
    NotServed,
}

impl RejectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::BadSignature => "bad_signature",
            RejectionKind::StaleTimestamp => "stale_timestamp",
            RejectionKind::TooLarge => "too_large",
            RejectionKind::Malformed => "malformed",
            RejectionKind::Replay => "replay",
            RejectionKind::Unauthorized => "unauthorized",
            RejectionKind::NotServed => "not_served",
        }
    }
}

/// How the engine behaves; everything has a sensible default.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Channel id → default namespace / cluster.
    pub channels: BTreeMap<String, ChannelDefaults>,
    pub rate_limits: RateLimits,
    /// At most one progress edit per message per this interval.
    pub progress_interval: Duration,
    /// How often expired approvals are looked for (and this process's heartbeat is written).
    pub sweep_interval: Duration,
    /// Requests taken but not answered yet, at most; beyond it requests are refused as busy.
    pub max_in_flight: usize,
    /// A command that may change the cluster and is older than this when it would start is
    /// refused as stale (an approved one counts from its approval).
    pub max_command_age: Duration,
    /// How long taking a request (recording it in the inbox) may take before it is refused as
    /// unrecorded, so acknowledgements stay within the platforms' deadlines (Slack: 3 s).
    pub accept_budget: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            channels: BTreeMap::new(),
            rate_limits: RateLimits::default(),
            progress_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(5),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_command_age: Duration::from_secs(30),
            accept_budget: Duration::from_millis(1500),
        }
    }
}

/// Requests in flight at most, by default (`engine.max_in_flight`). A request in flight holds
/// its pipeline's state and its HTTP connections (to the cluster, to the chat's API), about
/// 150 KiB each at saturation, so this cap is what bounds the bot's memory under any load.
/// Measured on `opsbot serve`, release build (`serve_bench`): at 5,000 requests/s, 64 keep its
/// peak at 42 MiB and the ack p99 at 16 ms; 256 took them to 73 MiB and 85 ms, and completed no
/// more commands. Two cores run 1,500-2,000 full commands a second, so 64 is ~40 ms of queued
/// work; beyond it, a request is refused as busy at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// The engine, cheap to clone and share between adapters.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// This process, as the owner of the inbox entries it takes (see [`crate::store::InboxEntry`]).
    instance: String,
    /// One permit per request taken and not answered yet.
    in_flight: Arc<Semaphore>,
    /// Requests refused as busy, logged at most once a second.
    busy_log: busy_log::BusyLog,
    rejections: rejection_log::RejectionLog,
    /// What adapters report wrong with their connection (e.g. Slack Socket Mode not
    /// connected), by adapter: `/readyz` shows it as degraded.
    troubles: std::sync::Mutex<BTreeMap<&'static str, String>>,
    store: Store,
    policy: Arc<PolicyFile>,
    operator: Operator,
    options: EngineOptions,
    limiter: RateLimiter,
    sinks: RwLock<HashMap<String, Arc<dyn ChatSink>>>,
    /// Handles clicks on alert messages, when alert intake runs.
    alert_actions: RwLock<Option<Arc<dyn AlertActions>>>,
    /// The features that execute their own commands (incidents, alerts), when they run.
    desks: RwLock<Vec<(DeskFor, Arc<dyn Desk>)>>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
}

/// Who asked, where: what every step of one request needs to know.
struct Ctx<'a> {
    platform: &'a str,
    channel: &'a str,
    user: &'a Subject,
    /// The adapter's handle of the request ([`Invocation::origin`]).
    origin: Option<&'a str>,
}

/// A request arriving from a chat adapter.
#[derive(Debug, Clone)]
pub enum Inbound {
    Command(Invocation),
    Click(ApprovalClick),
}

impl Inbound {
    /// The same request with the person's groups (adapters look them up after the ack).
    pub fn with_groups(mut self, membership: Membership) -> Inbound {
        match &mut self {
            Inbound::Command(i) => {
                i.groups = membership.groups;
                i.groups_unknown = membership.unknown;
            }
            // Unknown groups hold no approver role: an approver they would have made is
            // refused (and told why), never wrongly counted.
            Inbound::Click(c) => {
                c.groups = membership.groups;
                c.groups_unknown = membership.unknown;
            }
        }
        self
    }

    fn platform(&self) -> &'static str {
        match self {
            Inbound::Command(i) => i.platform,
            Inbound::Click(c) => c.platform,
        }
    }
    fn ctx(&self) -> Ctx<'_> {
        match self {
            Inbound::Command(i) => Ctx {
                platform: i.platform,
                channel: &i.channel,
                user: &i.user,
                origin: i.origin.as_deref(),
            },
            Inbound::Click(c) => Ctx {
                platform: c.platform,
                channel: &c.channel,
                user: &c.user,
                origin: c.origin.as_deref(),
            },
        }
    }
}

/// Why a request was not taken (see [`Engine::accept`]); the adapter acknowledges with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Delivered before (a platform retry); nothing more happens.
    Duplicate,
    /// Too many requests in flight: nothing was recorded or run; try again after this.
    Busy { retry_after: Duration },
    /// Could not be recorded (the database is unavailable): nothing was run.
    Unrecorded,
    /// A command longer than the grammar takes ([`MAX_INPUT_BYTES`]): nothing was recorded or
    /// run.
    TooLong { bytes: usize },
}

impl Refusal {
    /// The answer for the person whose request this was.
    pub fn message(&self) -> String {
        match self {
            Refusal::Duplicate => "Already received; it is not run a second time.".to_owned(),
            Refusal::Busy { retry_after } => format!(
                "opsbot is busy. Nothing was run; try again in {}s.",
                retry_after.as_secs().max(1)
            ),
            Refusal::Unrecorded => "opsbot could not record this request in its database \
                                    (unavailable), so it did nothing. Try again in a moment."
                .to_owned(),
            Refusal::TooLong { bytes } => format!(
                "That command is too long ({bytes} bytes; at most {MAX_INPUT_BYTES}). Nothing \
                 was run."
            ),
        }
    }
}

/// A request on disk and counted in flight, until [`Engine::run`] answers it.
#[derive(Debug)]
pub struct Ticket {
    inbox: i64,
    received: Timestamp,
    _permit: OwnedSemaphorePermit,
}

impl Engine {
    pub fn new(
        store: Store,
        policy: Arc<PolicyFile>,
        operator: Operator,
        options: EngineOptions,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let limiter = RateLimiter::new(&options.rate_limits);
        Engine {
            inner: Arc::new(Inner {
                instance: format!("opsbot-{}", uuid::Uuid::new_v4().simple()),
                in_flight: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
                busy_log: busy_log::BusyLog::default(),
                rejections: rejection_log::RejectionLog::default(),
                troubles: std::sync::Mutex::default(),
                store,
                policy,
                operator,
                options,
                limiter,
                sinks: RwLock::new(HashMap::new()),
                alert_actions: RwLock::new(None),
                desks: RwLock::new(Vec::new()),
                metrics,
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn policy(&self) -> &Arc<PolicyFile> {
        &self.inner.policy
    }

    pub fn operator(&self) -> &Operator {
        &self.inner.operator
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Reports what is wrong with `adapter`'s connection (`None`: nothing any more); shown by
    /// `/readyz` as degraded.
    pub fn set_trouble(&self, adapter: &'static str, trouble: Option<String>) {
        let mut troubles = self
            .inner
            .troubles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match trouble {
            Some(t) => troubles.insert(adapter, t),
            None => troubles.remove(adapter),
        };
    }

    /// What adapters reported wrong, as `adapter: trouble` lines.
    pub fn troubles(&self) -> Vec<String> {
        let troubles = self
            .inner
            .troubles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        troubles.iter().map(|(a, t)| format!("{a}: {t}")).collect()
    }

    /// Registers how to talk back to `platform`. Replies for invocations from that platform, and
    /// updates of approval cards posted there, go through `sink`.
    pub fn register_sink(&self, platform: Platform, sink: Arc<dyn ChatSink>) {
        self.inner
            .sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(platform.to_owned(), sink);
    }

    /// The sink registered for `platform` (for features that act on channels: incidents).
    pub fn chat(&self, platform: &str) -> Option<Arc<dyn ChatSink>> {
        self.sink(platform)
    }

    fn sink(&self, platform: &str) -> Option<Arc<dyn ChatSink>> {
        self.inner
            .sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(platform)
            .cloned()
    }

    /// Runs `fut` in the background as in-flight work that [`Engine::shutdown`] waits for.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(fut);
    }

    /// Registers who handles clicks on alert messages (the alerts service).
    pub fn register_alert_actions(&self, actions: Arc<dyn AlertActions>) {
        *self
            .inner
            .alert_actions
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(actions);
    }

    /// Registers a feature's desk: it executes its commands and hears what happens in
    /// channels (see [`desk`]). A second registration for the same commands replaces the first.
    pub fn register_desk(&self, what: DeskFor, desk: Arc<dyn Desk>) {
        let mut desks = self.inner.desks.write().unwrap_or_else(|e| e.into_inner());
        desks.retain(|(w, _)| *w != what);
        desks.push((what, desk));
    }

    fn desks(&self) -> Vec<Arc<dyn Desk>> {
        let desks = self.inner.desks.read().unwrap_or_else(|e| e.into_inner());
        desks.iter().map(|(_, d)| d.clone()).collect()
    }

    /// The desk that answers `cmd`, if `cmd` is a feature's and the feature runs: `Err` when it
    /// does not run (the answer for the caller), `Ok(None)` for cluster commands.
    fn desk_for(&self, cmd: &Command) -> Result<Option<Arc<dyn Desk>>, Box<Reply>> {
        let (what, name) = match cmd.op {
            Op::Incident(_) => (DeskFor::Incidents, "Incidents are"),
            Op::Alert(_) => (DeskFor::Alerts, "Alerts are"),
            _ => return Ok(None),
        };
        let desks = self.inner.desks.read().unwrap_or_else(|e| e.into_inner());
        match desks.iter().find(|(w, _)| *w == what) {
            Some((_, d)) => Ok(Some(d.clone())),
            None => Err(Box::new(
                Reply::warning(format!("{name} not enabled")).text(format!(
                    "This opsbot does not run that feature, so `{}` cannot be done here.",
                    cmd.to_text()
                )),
            )),
        }
    }

    /// Tells every desk what happened in a channel.
    async fn observe(&self, seen: Observation) {
        for desk in self.desks() {
            desk.observe(seen.clone()).await;
        }
    }

    /// A reaction someone added to a message (adapters that receive them call this).
    pub async fn reaction(&self, reaction: crate::chat::Reaction) {
        for desk in self.desks() {
            desk.reaction(reaction.clone()).await;
        }
    }

    /// Takes a click on an alert message's button as [`Engine::accept`] takes a request: once
    /// the alerts service has recorded it (`true`), it is handled in the background with the
    /// clicker's groups from `groups`. A repeat, a click that cannot be recorded (the clicker is
    /// told) or one while alert intake is not running (logged) is `false`.
    pub async fn take_alert_click(
        &self,
        click: AlertClick,
        groups: futures::future::BoxFuture<'static, Membership>,
    ) -> bool {
        let actions = self
            .inner
            .alert_actions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(actions) = actions else {
            tracing::warn!(action = %click.action, "alert button clicked, but alert intake is not configured");
            return false;
        };
        let Some(inbox) = actions.record(&click).await else {
            return false;
        };
        self.spawn(async move {
            let mut click = click;
            let membership = groups.await;
            click.groups = membership.groups;
            click.groups_unknown = membership.unknown;
            actions.handle(click, inbox).await
        });
        true
    }

    /// Stops taking background work and waits for what is in flight.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.record_held_rejections().await;
    }

    /// Starts the background duties: approval expiry, resuming approved requests left by a
    /// restart, policy reload, and rate-limiter housekeeping. They end with the runtime.
    pub fn start_background(&self, policy_poll: Option<Duration>) {
        let engine = self.clone();
        tokio::spawn(async move { engine.sweep_forever().await });
        let engine = self.clone();
        tokio::spawn(async move { engine.heartbeat_forever().await });
        if let Some(every) = policy_poll {
            tokio::spawn(self.inner.policy.clone().watch(every));
        }
    }

    /// Records an inbound request refused before parsing (bad signature, stale, too large, …):
    /// counted always, audited and logged one by one up to a quota a minute per platform and
    /// kind, beyond it in a summary at the next sweep (`engine/rejection_log.rs`).
    pub async fn reject(&self, platform: &str, kind: RejectionKind, detail: &str) {
        self.inner.metrics.count_rejection(platform, kind.as_str());
        if !self.inner.rejections.admit(platform, kind) {
            return;
        }
        tracing::warn!(platform, kind = kind.as_str(), detail, "request rejected");
        self.audit(
            AuditEntry::new(AuditKind::Rejection, platform)
                .outcome(kind.as_str())
                .detail(json!({ "detail": detail })),
        )
        .await;
    }

    /// Records the rejections held back by the per-minute quota of [`Engine::reject`]: one
    /// summary record (and log line) per platform and kind, with their count.
    pub(super) async fn record_held_rejections(&self) {
        for (platform, kind, held) in self.inner.rejections.take_held() {
            let detail = format!(
                "{} more rejected since {} (over the quota of {} a minute recorded one by one)",
                held.count,
                held.since,
                rejection_log::PER_MINUTE
            );
            tracing::warn!(
                platform,
                kind = kind.as_str(),
                count = held.count,
                "requests rejected"
            );
            let recorded = self
                .audit(
                    AuditEntry::new(AuditKind::Rejection, &platform)
                        .outcome(kind.as_str())
                        .detail(json!({ "detail": detail, "count": held.count })),
                )
                .await;
            if !recorded {
                // Not lost: told with the next summary.
                self.inner.rejections.hold_again(platform, kind, held);
            }
        }
    }

    /// Requests taken and not answered yet, and the most there may be.
    pub fn in_flight(&self) -> (usize, usize) {
        let max = self.inner.options.max_in_flight.max(1);
        (max - self.inner.in_flight.available_permits(), max)
    }

    /// This process's instance id (the owner of the inbox entries it takes).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Takes a request: counts it in flight and records it (inbox entry and audit record) on
    /// disk. Only a request that yields a [`Ticket`] may be acknowledged as taken; the adapter
    /// then hands the ticket to [`Engine::run`] (in the background). Never waits longer than
    /// the accept budget.
    pub async fn accept(&self, inbound: &Inbound) -> Result<Ticket, Refusal> {
        // A command the grammar would refuse for its length is refused before it is recorded:
        // it fills neither the inbox nor the audit log.
        if let Inbound::Command(inv) = inbound
            && inv.text.len() > MAX_INPUT_BYTES
        {
            self.inner
                .metrics
                .count_request(inv.platform, "-", "too_long", "refused");
            return Err(Refusal::TooLong {
                bytes: inv.text.len(),
            });
        }
        let Ok(permit) = self.inner.in_flight.clone().try_acquire_owned() else {
            self.inner
                .metrics
                .count_request(inbound.platform(), "-", "busy", "refused");
            self.inner.busy_log.refused(inbound.platform());
            return Err(Refusal::Busy {
                retry_after: Duration::from_secs(5),
            });
        };
        let ctx = inbound.ctx();
        let (kind, text, request) = match inbound {
            Inbound::Command(inv) => (
                InboxKind::Command,
                inv.text.clone(),
                self.entry(&ctx, AuditKind::Request).text(&inv.text),
            ),
            Inbound::Click(c) => {
                let verb = if c.approve { "approve" } else { "deny" };
                (
                    InboxKind::Click,
                    format!("{verb} {}", c.approval_id),
                    self.entry(&ctx, AuditKind::Approval)
                        .approval_id(&c.approval_id)
                        .outcome(format!("{verb}_clicked")),
                )
            }
        };
        let delivery_id = match inbound {
            Inbound::Command(Invocation { delivery_id, .. })
            | Inbound::Click(ApprovalClick { delivery_id, .. }) => delivery_id.clone(),
        }
        .unwrap_or_else(|| format!("local:{}", uuid::Uuid::new_v4().simple()));
        let received = Timestamp::now();
        let replay = AuditEntry::new(AuditKind::Rejection, ctx.platform)
            .outcome(RejectionKind::Replay.as_str())
            .detail(json!({ "detail": format!("delivery {delivery_id} seen before") }));
        let entry = NewInboxEntry {
            platform: ctx.platform.to_owned(),
            delivery_id,
            kind,
            actor: ctx.user.as_str().to_owned(),
            channel: ctx.channel.to_owned(),
            text: opsbot_commands::ops::mask_secrets(&text),
            owner: self.inner.instance.clone(),
            received,
        };
        let store = self.inner.store.clone();
        let request = mask_entry(request.at(received));
        let mut receive = Box::pin(async move { store.receive(entry, request, replay).await });
        match tokio::time::timeout(self.inner.options.accept_budget, &mut receive).await {
            Ok(Ok(Receipt::New(inbox))) => Ok(Ticket {
                inbox,
                received,
                _permit: permit,
            }),
            Ok(Ok(Receipt::Duplicate)) => {
                self.inner
                    .metrics
                    .count_rejection(ctx.platform, RejectionKind::Replay.as_str());
                Err(Refusal::Duplicate)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot record a request; nothing runs");
                Err(Refusal::Unrecorded)
            }
            Err(_) => {
                // It may still be committed: then it is answered as refused, not left open.
                let store = self.inner.store.clone();
                tokio::spawn(async move {
                    if let Ok(Receipt::New(id)) = receive.await {
                        let why = Some("refused: not recorded within the accept budget");
                        let _ = store.mark(id, InboxState::Answered, false, why).await;
                    }
                });
                tracing::error!("recording a request took too long; nothing runs");
                Err(Refusal::Unrecorded)
            }
        }
    }

    /// Answers an accepted request to the end (every reply through the platform's sink) and
    /// marks it answered. Never fails: problems become replies and audit records.
    pub async fn run(&self, ticket: Ticket, inbound: Inbound) {
        let outcome = match inbound {
            Inbound::Command(inv) => Box::pin(self.run_command(&ticket, inv)).await,
            Inbound::Click(click) => {
                Box::pin(self.run_click(click, ticket.inbox)).await;
                "answered"
            }
        };
        if let Err(e) = self
            .inner
            .store
            .mark(ticket.inbox, InboxState::Answered, false, Some(outcome))
            .await
        {
            tracing::error!(inbox = ticket.inbox, error = %e, "cannot mark a request answered");
        }
    }

    /// [`Engine::accept`] and [`Engine::run`] in one, for adapters that wait for the answer
    /// (the console, tests); a request not accepted is answered privately with why.
    pub async fn handle(&self, inv: Invocation) {
        self.take(Inbound::Command(inv)).await
    }

    /// An Approve / Deny click, as [`Engine::handle`].
    pub async fn click(&self, click: ApprovalClick) {
        self.take(Inbound::Click(click)).await
    }

    async fn take(&self, inbound: Inbound) {
        match self.accept(&inbound).await {
            Ok(ticket) => self.run(ticket, inbound).await,
            Err(refusal) => self.tell_refused(&inbound, refusal).await,
        }
    }

    /// Tells the person behind a request that was not taken why (privately). A repeated
    /// delivery gets no second answer.
    pub async fn tell_refused(&self, inbound: &Inbound, refusal: Refusal) {
        if refusal != Refusal::Duplicate {
            let reply = Reply::warning("Nothing was run").text(refusal.message());
            self.say(&inbound.ctx(), &reply).await;
        }
    }

    /// Appends to the audit log; `false` (and an error log) when the database refused.
    /// What people typed is recorded, but never a secret they pasted by mistake.
    async fn audit(&self, entry: AuditEntry) -> bool {
        match self.inner.store.append(mask_entry(entry)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "audit append failed");
                false
            }
        }
    }

    fn entry(&self, ctx: &Ctx<'_>, kind: AuditKind) -> AuditEntry {
        AuditEntry::new(kind, ctx.platform)
            .channel(ctx.channel)
            .actor(ctx.user.as_str())
    }
}

/// The static name of a platform stored as text (approvals keep theirs in the database).
fn platform_name(platform: &str) -> Platform {
    match platform {
        "slack" => "slack",
        "discord" => "discord",
        "console" => "console",
        _ => "unknown",
    }
}

/// `entry` with what people typed masked for secrets.
fn mask_entry(mut entry: AuditEntry) -> AuditEntry {
    let mask = |s: Option<String>| s.map(|s| opsbot_commands::ops::mask_secrets(&s));
    entry.text = mask(entry.text);
    entry.command = mask(entry.command);
    mask_json(&mut entry.detail);
    entry
}

/// Every string in `value` masked: a detail can quote what was typed (a parse error's token).
fn mask_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = opsbot_commands::ops::mask_secrets(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(mask_json),
        _ => {}
    }
}
