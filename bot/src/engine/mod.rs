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

mod busy_log;
pub mod cards;
pub mod desk;
pub mod policy_file;
pub mod ratelimit;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use opsbot_commands::ops::mask_reply;
use opsbot_commands::{Command, Op, Operator, Progress, ProgressReceiver, ProgressSender, Reply};
use opsbot_policies::{Decision, Subject};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::chat::{
    AlertActions, AlertClick, ApprovalClick, ChatSink, DeliveryError, Invocation, MessageRef,
    Platform,
};
use crate::config::{ChannelDefaults, RateLimits};
use crate::metrics::Metrics;
use crate::store::{
    Approval, ApprovalRequirement, ApprovalState, AuditEntry, AuditKind, InboxEntry, InboxKind,
    InboxState, NewApproval, NewInboxEntry, Receipt, Store,
};
pub use desk::{Caller, Desk, DeskFor, Facts, Observation, Observed};
pub use policy_file::{PolicyFile, Reload};
pub use ratelimit::RateLimiter;

/// Why an inbound request was refused before it reached the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// How long past the longest operation timeout an execution may stay unfinished before it is
/// taken for abandoned by a stopped process.
const ABANDON_GRACE: Duration = Duration::from_secs(300);

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
    pub fn with_groups(mut self, groups: Vec<Subject>) -> Inbound {
        match &mut self {
            Inbound::Command(i) => i.groups = groups,
            Inbound::Click(c) => c.groups = groups,
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

    /// A click on an alert message's button, handed to the alerts service; ignored (logged)
    /// when alert intake is not running.
    pub async fn alert_click(&self, click: AlertClick) {
        let actions = self
            .inner
            .alert_actions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match actions {
            Some(a) => a.click(click).await,
            None => {
                tracing::warn!(action = %click.action, "alert button clicked, but alert intake is not configured")
            }
        }
    }

    /// Stops taking background work and waits for what is in flight.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Starts the background duties: approval expiry, resuming approved requests left by a
    /// restart, policy reload, and rate-limiter housekeeping. They end with the runtime.
    pub fn start_background(&self, policy_poll: Option<Duration>) {
        let engine = self.clone();
        tokio::spawn(async move { engine.sweep_forever().await });
        if let Some(every) = policy_poll {
            tokio::spawn(self.inner.policy.clone().watch(every));
        }
    }

    /// Records an inbound request refused before parsing (bad signature, stale, too large, …).
    pub async fn reject(&self, platform: &str, kind: RejectionKind, detail: &str) {
        self.inner.metrics.count_rejection(platform, kind.as_str());
        tracing::warn!(platform, kind = kind.as_str(), detail, "request rejected");
        self.audit(
            AuditEntry::new(AuditKind::Rejection, platform)
                .outcome(kind.as_str())
                .detail(json!({ "detail": detail })),
        )
        .await;
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
                Box::pin(self.run_click(click)).await;
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

    /// Runs one command to its final answer; returns the inbox outcome.
    #[tracing::instrument(skip_all, fields(platform = inv.platform, user = %inv.user, channel = %inv.channel))]
    async fn run_command(&self, ticket: &Ticket, inv: Invocation) -> &'static str {
        let started = Instant::now();
        let ctx = Ctx {
            platform: inv.platform,
            channel: &inv.channel,
            user: &inv.user,
            origin: inv.origin.as_deref(),
        };
        if let Err(limited) = self.inner.limiter.check(inv.user.as_str(), &inv.channel) {
            self.inner.metrics.rate_limited.inc();
            self.inner
                .metrics
                .count_request(inv.platform, "-", "rate_limited", "refused");
            let wait = limited.retry_after.as_secs().max(1);
            self.audit(
                self.entry(&ctx, AuditKind::Rejection)
                    .text(&inv.text)
                    .outcome("rate_limited")
                    .detail(json!({ "scope": limited.scope.as_str(), "retry_after_s": wait })),
            )
            .await;
            let reply = Reply::warning("Slow down")
                .text(format!(
                    "You are over the {} rate limit. Nothing was run; try again in {wait}s.",
                    limited.scope.as_str()
                ))
                .footer(format!("retry after {wait}s"));
            self.say(&ctx, &reply).await;
            return "refused";
        }

        let cmd = match opsbot_commands::parse(&inv.text) {
            Ok(cmd) => self.apply_defaults(cmd, &inv.channel),
            Err(e) => {
                self.inner
                    .metrics
                    .count_request(inv.platform, "-", "parse_error", "refused");
                self.audit(
                    self.entry(&ctx, AuditKind::Rejection)
                        .text(&inv.text)
                        .outcome("parse_error")
                        .detail(json!({ "error": e.message, "token": e.token })),
                )
                .await;
                self.say(&ctx, &parse_error_reply(&e)).await;
                return "refused";
            }
        };
        let action = cmd.action();
        let policy = self.inner.policy.current();

        if cmd.needs_cluster()
            && let Err(e) = self.inner.operator.check_cluster(&cmd)
        {
            self.audit(
                self.entry(&ctx, AuditKind::Rejection)
                    .command(cmd.to_text())
                    .outcome("unknown_cluster")
                    .detail(json!({ "error": e.to_string() })),
            )
            .await;
            self.say(&ctx, &e.to_reply()).await;
            return "refused";
        }

        let caller = Caller {
            platform: inv.platform,
            channel: inv.channel.clone(),
            user: inv.user.clone(),
            groups: inv.groups.clone(),
        };
        let request = match self.policy_request(&caller, &cmd).await {
            Ok(request) => request,
            Err(reply) => {
                self.audit(
                    self.entry(&ctx, AuditKind::Rejection)
                        .command(cmd.to_text())
                        .outcome("not_applicable")
                        .detail(json!({ "error": reply.text })),
                )
                .await;
                self.say(&ctx, &reply).await;
                return "refused";
            }
        };
        let verdict = policy.decide(&request);
        let (decision, rule, reason) = match &verdict {
            Decision::Allow { rule } => ("allow", Some(rule.clone()), None),
            Decision::Approval { rule, .. } => ("approval", Some(rule.clone()), None),
            Decision::Deny { rule, reason } => ("deny", rule.clone(), Some(reason.clone())),
        };
        let mut entry = self
            .entry(&ctx, AuditKind::Decision)
            .command(cmd.to_text())
            .outcome(decision)
            .detail(json!({ "action": action.as_str(), "reason": reason }));
        if let Some(rule) = &rule {
            entry = entry.rule(rule);
        }
        if !self.audit(entry).await {
            self.refuse_unrecorded(&ctx).await;
            return "unrecorded";
        }

        match verdict {
            Decision::Deny { rule, reason } => {
                self.inner
                    .metrics
                    .count_request(inv.platform, action.as_str(), "deny", "refused");
                let mut reply = Reply::danger("Not allowed").text(reason);
                if let Some(rule) = rule {
                    reply = reply.field("Rule", rule);
                }
                reply = reply.field("Command", format!("`{}`", cmd.to_text()));
                self.say(&ctx, &reply).await;
                self.observe_command(&ctx, &cmd, "denied", reply.text.clone())
                    .await;
            }
            Decision::Approval { rule, requirement } => {
                self.inner.metrics.count_request(
                    inv.platform,
                    action.as_str(),
                    "approval",
                    "pending",
                );
                self.ask_for_approval(&ctx, &inv, &cmd, rule, &requirement)
                    .await;
            }
            Decision::Allow { .. } if matches!(cmd.op, Op::Whoami) => {
                let reply = whoami_reply(&policy, &inv.user, &inv.groups);
                self.say(&ctx, &reply).await;
                self.inner
                    .metrics
                    .count_request(inv.platform, action.as_str(), "allow", "ok");
            }
            Decision::Allow { .. } if matches!(cmd.op, Op::Help { .. }) => {
                match self
                    .inner
                    .operator
                    .execute(&cmd, ProgressSender::none())
                    .await
                {
                    Ok(reply) => self.say(&ctx, &reply).await,
                    Err(e) => self.say(&ctx, &e.to_reply()).await,
                }
                self.inner
                    .metrics
                    .count_request(inv.platform, action.as_str(), "allow", "ok");
            }
            Decision::Allow { .. } => {
                if cmd.is_mutating() && !self.fresh_enough(&ctx, &cmd, ticket.received).await {
                    return "stale";
                }
                if let Err(e) = self
                    .inner
                    .store
                    .mark(ticket.inbox, InboxState::Running, changes_state(&cmd), None)
                    .await
                {
                    self.store_failed(&ctx, &e).await;
                    return "unrecorded";
                }
                let (ok, summary) = self.execute(&ctx, &cmd, None).await;
                let outcome = if ok { "ok" } else { "error" };
                self.observe_command(&ctx, &cmd, outcome, Some(summary))
                    .await;
                self.inner.metrics.count_request(
                    inv.platform,
                    action.as_str(),
                    "allow",
                    if ok { "ok" } else { "error" },
                );
            }
        }
        self.inner
            .metrics
            .observe_duration(action.as_str(), started.elapsed().as_secs_f64());
        "answered"
    }

    /// The policy request for `cmd` by `caller`; incident commands carry their incident's
    /// severity (asked of the incidents service). `Err`: the answer for the caller alone.
    async fn policy_request(
        &self,
        caller: &Caller,
        cmd: &Command,
    ) -> Result<opsbot_policies::Request, Reply> {
        let mut request = cmd.policy_request(&caller.user, &caller.groups, Some(&caller.channel));
        if let Some(desk) = self.desk_for(cmd).map_err(|r| *r)? {
            let facts = desk.prepare(caller, cmd).await?;
            request.severity = request.severity.or(facts.severity);
            request.namespace = request.namespace.or(facts.namespace);
        }
        Ok(request)
    }

    /// Tells the incidents service a command was decided (and run) in the context's channel.
    /// Incident commands write their own timeline entries; help and whoami are nobody's business.
    async fn observe_command(
        &self,
        ctx: &Ctx<'_>,
        cmd: &Command,
        outcome: &str,
        summary: Option<String>,
    ) {
        if matches!(
            cmd.op,
            Op::Incident(_) | Op::Alert(_) | Op::Help { .. } | Op::Whoami
        ) {
            return;
        }
        self.observe(Observation {
            platform: ctx.platform.to_owned(),
            channel: ctx.channel.to_owned(),
            actor: ctx.user.as_str().to_owned(),
            kind: Observed::Command,
            command: cmd.to_text(),
            outcome: outcome.to_owned(),
            summary,
        })
        .await;
    }

    /// Tells the incidents service about a step of `approval`, taken by `actor`.
    async fn observe_approval(&self, approval: &Approval, actor: &str, outcome: &str) {
        self.observe(Observation {
            platform: approval.platform.clone(),
            channel: approval.channel.clone(),
            actor: actor.to_owned(),
            kind: Observed::Approval,
            command: approval.command.clone(),
            outcome: outcome.to_owned(),
            summary: Some(approval.id.clone()),
        })
        .await;
    }

    /// Whether a command that may change the cluster, taken at `since`, may still start; if
    /// not, it is refused as stale (audited, and the person told).
    async fn fresh_enough(&self, ctx: &Ctx<'_>, cmd: &Command, since: Timestamp) -> bool {
        let max = self.inner.options.max_command_age;
        let age = Timestamp::now().duration_since(since).unsigned_abs();
        if age <= max {
            return true;
        }
        self.audit(
            self.entry(ctx, AuditKind::Rejection)
                .command(cmd.to_text())
                .outcome("stale")
                .detail(json!({ "age_ms": age.as_millis() as u64, "max_age_s": max.as_secs() })),
        )
        .await;
        let reply = Reply::warning("Too late: nothing was run").text(format!(
            "`{}` waited {}s before it could start, longer than the {}s opsbot allows for \
             commands that change the cluster. Check the current state and ask again.",
            cmd.to_text(),
            age.as_secs(),
            max.as_secs()
        ));
        self.say(ctx, &reply).await;
        false
    }

    /// An Approve / Deny click (already recorded by [`Engine::accept`]); updates the approval
    /// card through the platform's sink, and tells only the clicker what concerns only them.
    #[tracing::instrument(skip_all, fields(platform = click.platform, user = %click.user, approval = %click.approval_id))]
    async fn run_click(&self, click: ApprovalClick) {
        let ctx = Ctx {
            platform: click.platform,
            channel: &click.channel,
            user: &click.user,
            origin: click.origin.as_deref(),
        };
        let verb = if click.approve { "approve" } else { "deny" };
        let approval = match self.inner.store.get(&click.approval_id).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                let reply = Reply::warning("No such approval request").text(format!(
                    "There is no approval request `{}`.",
                    click.approval_id
                ));
                return self.say(&ctx, &reply).await;
            }
            Err(e) => return self.store_failed(&ctx, &e).await,
        };
        if approval.state != ApprovalState::Pending {
            let reply = Reply::info(format!("Approval {} is {}", approval.id, approval.state))
                .text("It can no longer be approved or denied.");
            return self.say(&ctx, &reply).await;
        }
        if Timestamp::now() >= approval.expires {
            self.expire(approval).await;
            let reply = Reply::warning(format!("Approval {} has expired", click.approval_id))
                .text("Nothing was run. Ask again if it is still needed.");
            return self.say(&ctx, &reply).await;
        }

        let policy = self.inner.policy.current();
        let requirement: opsbot_policies::Requirement = (&approval.requirement).into();
        let Ok(requester) = Subject::parse(&approval.requester) else {
            return self
                .store_failed(&ctx, &format!("stored requester {:?}", approval.requester))
                .await;
        };
        let earlier: Vec<Subject> = approval
            .approvers
            .iter()
            .filter_map(|v| Subject::parse(&v.subject).ok())
            .collect();

        if !click.approve {
            // The requester may withdraw; otherwise denying takes the same standing as approving.
            let standing = if click.user == requester {
                Ok(())
            } else {
                policy
                    .may_approve(&requirement, &requester, &click.user, &click.groups, &[])
                    .map_err(|why| why.to_string())
            };
            if let Err(why) = standing {
                return self.refuse_vote(&ctx, &approval.id, verb, &why).await;
            }
            match self
                .inner
                .store
                .try_transition(&approval.id, ApprovalState::Pending, ApprovalState::Denied)
                .await
            {
                Ok(true) => {
                    self.audit(
                        self.entry(&ctx, AuditKind::Approval)
                            .approval_id(&approval.id)
                            .command(&approval.command)
                            .outcome("denied"),
                    )
                    .await;
                    self.observe_approval(&approval, click.user.as_str(), "denied")
                        .await;
                    self.refresh_card(&approval.id, ctx.origin).await;
                }
                Ok(false) => self.refresh_card(&approval.id, ctx.origin).await,
                Err(e) => self.store_failed(&ctx, &e).await,
            }
            return;
        }

        if let Err(why) = policy.may_approve(
            &requirement,
            &requester,
            &click.user,
            &click.groups,
            &earlier,
        ) {
            return self.refuse_vote(&ctx, &approval.id, verb, &why).await;
        }
        let vote = match self
            .inner
            .store
            .add_approval(&approval.id, click.user.as_str())
            .await
        {
            Ok(v) => v,
            Err(e) => return self.store_failed(&ctx, &e).await,
        };
        if vote.added {
            self.audit(
                self.entry(&ctx, AuditKind::Approval)
                    .approval_id(&approval.id)
                    .command(&approval.command)
                    .outcome("approved_by")
                    .detail(json!({
                        "approvals": vote.approval.approvers.len(),
                        "needed": vote.approval.requirement.count,
                    })),
            )
            .await;
            self.observe_approval(&vote.approval, click.user.as_str(), "approved_by")
                .await;
        }
        if !vote.approval.has_enough_approvals() {
            return self.refresh_card(&approval.id, ctx.origin).await;
        }
        match self
            .inner
            .store
            .try_transition(
                &approval.id,
                ApprovalState::Pending,
                ApprovalState::Approved,
            )
            .await
        {
            // Boxed: the operation's future is large, and clicks run on small stacks.
            Ok(true) => Box::pin(self.run_approved(&approval.id, ctx.origin)).await,
            Ok(false) => {} // someone else's click completed it; they run it
            Err(e) => self.store_failed(&ctx, &e).await,
        }
    }

    /// Runs an approved request, if this caller wins the claim: the policy is evaluated again
    /// first, and a request it now denies fails with that reason.
    /// `origin`: the click that approved it, if it runs now (not after a restart).
    async fn run_approved(&self, id: &str, origin: Option<&str>) {
        let approval = match self.inner.store.get(id).await {
            Ok(Some(a)) if a.state == ApprovalState::Approved => a,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(approval = id, error = %e, "cannot load approved request");
                return;
            }
        };
        let Ok(requester) = Subject::parse(&approval.requester) else {
            return self
                .fail_approval(&approval, "stored requester is invalid")
                .await;
        };
        let groups: Vec<Subject> = approval
            .requester_groups
            .iter()
            .filter_map(|g| Subject::parse(g).ok())
            .collect();
        let cmd = match opsbot_commands::parse(&approval.command) {
            Ok(cmd) => cmd,
            Err(e) => {
                return self
                    .fail_approval(&approval, &format!("stored command no longer parses: {e}"))
                    .await;
            }
        };
        let max_age = self.inner.options.max_command_age;
        let waited = Timestamp::now()
            .duration_since(approval.updated)
            .unsigned_abs();
        if waited > max_age {
            let why = format!(
                "it could not start within {}s of its approval (it waited {}s), so nothing was \
                 run; check the current state and ask again",
                max_age.as_secs(),
                waited.as_secs()
            );
            return self.fail_approval(&approval, &why).await;
        }
        let caller = Caller {
            platform: platform_name(&approval.platform),
            channel: approval.channel.clone(),
            user: requester.clone(),
            groups: groups.clone(),
        };
        let request = match self.policy_request(&caller, &cmd).await {
            Ok(r) => r,
            Err(reply) => {
                let why = reply.text.unwrap_or(reply.title);
                return self.fail_approval(&approval, &why).await;
            }
        };
        match self.inner.policy.current().decide(&request) {
            Decision::Deny { reason, rule } => {
                let why = match rule {
                    Some(rule) => format!("the policy now denies it (rule {rule}): {reason}"),
                    None => format!("the policy now denies it: {reason}"),
                };
                return self.fail_approval(&approval, &why).await;
            }
            Decision::Approval { requirement, .. }
                if ApprovalRequirement::from(&requirement) != approval.requirement =>
            {
                let why = format!(
                    "the policy now asks for a different approval ({}); ask again",
                    requirement.describe()
                );
                return self.fail_approval(&approval, &why).await;
            }
            Decision::Approval { .. } | Decision::Allow { .. } => {}
        }
        match self.inner.store.claim_execution(id).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(approval = id, error = %e, "cannot claim approved request");
                return;
            }
        }
        self.refresh_card(id, origin).await;
        let ctx = Ctx {
            platform: &approval.platform,
            channel: &approval.channel,
            user: &requester,
            origin: None,
        };
        let (ok, summary) = self.execute(&ctx, &cmd, Some(id)).await;
        let to = if ok {
            ApprovalState::Executed
        } else {
            ApprovalState::Failed
        };
        if let Err(e) = self.inner.store.finish(id, to, &summary).await {
            tracing::error!(approval = id, error = %e, "cannot record the end of an execution");
        }
        let outcome = if ok { "executed" } else { "failed" };
        self.observe_approval(&approval, &approval.requester, outcome)
            .await;
        self.inner.metrics.count_request(
            &approval.platform,
            cmd.action().as_str(),
            "approval",
            if ok { "ok" } else { "error" },
        );
        self.refresh_card(id, origin).await;
    }

    async fn fail_approval(&self, approval: &Approval, why: &str) {
        let change = self
            .inner
            .store
            .fail(&approval.id, ApprovalState::Approved, why)
            .await;
        let detail = json!({ "reason": why });
        self.settle(approval, change, AuditKind::Approval, "failed", detail)
            .await;
    }

    /// After a conditional state change of `approval`: the one caller that made it records it
    /// in the audit log and updates the card; everyone else does nothing.
    async fn settle(
        &self,
        approval: &Approval,
        change: Result<bool, crate::store::StoreError>,
        kind: AuditKind,
        outcome: &str,
        detail: serde_json::Value,
    ) {
        match change {
            Ok(true) => {
                self.audit(
                    AuditEntry::new(kind, &approval.platform)
                        .channel(&approval.channel)
                        .approval_id(&approval.id)
                        .command(&approval.command)
                        .outcome(outcome)
                        .detail(detail),
                )
                .await;
                self.observe_approval(approval, "opsbot", outcome).await;
                self.refresh_card(&approval.id, None).await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(approval = %approval.id, outcome, error = %e, "cannot change approval state")
            }
        }
    }

    async fn ask_for_approval(
        &self,
        ctx: &Ctx<'_>,
        inv: &Invocation,
        cmd: &Command,
        rule: String,
        requirement: &opsbot_policies::Requirement,
    ) {
        let now = Timestamp::now();
        let ttl =
            jiff::SignedDuration::try_from(requirement.ttl).unwrap_or(jiff::SignedDuration::MAX);
        let expires = now.saturating_add(ttl).unwrap_or(Timestamp::MAX);
        let new = NewApproval {
            requester: inv.user.as_str().to_owned(),
            requester_groups: inv.groups.iter().map(|g| g.as_str().to_owned()).collect(),
            platform: inv.platform.to_owned(),
            channel: inv.channel.clone(),
            command: cmd.to_text(),
            rule,
            requirement: ApprovalRequirement::from(requirement),
            context: json!({ "typed": opsbot_commands::ops::mask_secrets(&inv.text) }),
            created: now,
            expires,
        };
        let approval = match self.inner.store.create_approval(new).await {
            Ok(a) => a,
            Err(e) => return self.store_failed(ctx, &e).await,
        };
        self.audit(
            self.entry(ctx, AuditKind::Approval)
                .approval_id(&approval.id)
                .command(&approval.command)
                .rule(&approval.rule)
                .outcome("requested")
                .detail(json!({ "expires": approval.expires.to_string() })),
        )
        .await;
        self.update_pending_gauge().await;
        self.observe_approval(&approval, inv.user.as_str(), "requested")
            .await;
        let card = cards::approval_card(&approval, now);
        if let Some(msg) = self.post(ctx, &card).await
            && let Err(e) = self.inner.store.set_card(&approval.id, &msg).await
        {
            tracing::error!(approval = %approval.id, error = %e, "cannot store approval card reference");
        }
    }

    /// Executes an allowed `cmd`, streaming progress into a message for long operations, audits
    /// the execution, posts the result, and returns (succeeded, one-line summary).
    async fn execute(
        &self,
        ctx: &Ctx<'_>,
        cmd: &Command,
        approval: Option<&str>,
    ) -> (bool, String) {
        let started = Instant::now();
        let text = cmd.to_text();
        // Long operations get a message first, then edits as they progress.
        let asked = requested_by(ctx.user);
        let progress_msg = if cmd.is_mutating() {
            self.post(
                ctx,
                &Reply::info(format!("Running `{text}`"))
                    .text("Started…")
                    .footer(&asked),
            )
            .await
        } else {
            None
        };
        let (tx, rx) = ProgressSender::channel();
        let forwarder = progress_msg.clone().map(|msg| {
            let engine = self.clone();
            let title = format!("Running `{text}`");
            let asked = asked.clone();
            tokio::spawn(async move { engine.forward_progress(msg, title, asked, rx).await })
        });
        // Boxed: Kubernetes operations make large futures; keep callers' frames small.
        let result = match self.desk_for(cmd) {
            Ok(Some(desk)) => {
                drop(tx);
                self.execute_on_desk(ctx, desk.as_ref(), cmd).await
            }
            Ok(None) => Box::pin(self.inner.operator.execute(cmd, tx))
                .await
                .map_err(|e| (e.to_reply(), e.to_string())),
            Err(reply) => {
                let summary = reply.title.clone();
                Err((*reply, summary))
            }
        };
        if let Some(f) = forwarder {
            let _ = f.await;
        }
        let (ok, reply, summary) = match result {
            Ok(reply) => {
                let summary = reply.title.clone();
                (true, reply, summary)
            }
            Err((reply, summary)) => (false, reply, summary),
        };
        let reply = with_footer(reply, &asked);
        let mut entry = self
            .entry(ctx, AuditKind::Execution)
            .command(&text)
            .outcome(if ok { "ok" } else { "error" })
            .duration(started.elapsed())
            .detail(json!({ "summary": summary }));
        if let Some(id) = approval {
            entry = entry.approval_id(id);
        }
        self.audit(entry).await;
        match progress_msg {
            Some(msg) => self.update(&msg, &reply).await,
            None => {
                self.post(ctx, &reply).await;
            }
        }
        (ok, summary)
    }

    /// Runs a feature's command on its desk; `Err` is (reply, summary).
    async fn execute_on_desk(
        &self,
        ctx: &Ctx<'_>,
        desk: &dyn Desk,
        cmd: &Command,
    ) -> Result<Reply, (Reply, String)> {
        let caller = Caller {
            platform: platform_name(ctx.platform),
            channel: ctx.channel.to_owned(),
            user: ctx.user.clone(),
            groups: Vec::new(),
        };
        desk.execute(&caller, cmd).await.map_err(|reply| {
            let summary = reply.text.clone().unwrap_or_else(|| reply.title.clone());
            (reply, summary)
        })
    }

    /// Turns progress into message edits, at most one per `progress_interval`; the newest
    /// progress wins. Ends when the operation drops its sender.
    async fn forward_progress(
        &self,
        msg: MessageRef,
        title: String,
        footer: String,
        mut rx: ProgressReceiver,
    ) {
        let interval = self.inner.options.progress_interval;
        let mut last_edit: Option<Instant> = None;
        let mut newest: Option<Progress> = None;
        loop {
            let due = last_edit.map(|t| t + interval);
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => newest = Some(p),
                    None => break,
                },
                _ = sleep_until(due), if newest.is_some() => {}
            }
            let ready = last_edit.is_none_or(|t| t.elapsed() >= interval);
            if ready && let Some(p) = newest.take() {
                let reply = Reply::info(&title).text(p.bar(10)).footer(&footer);
                self.update(&msg, &reply).await;
                last_edit = Some(Instant::now());
            }
        }
    }

    fn apply_defaults(&self, cmd: Command, channel: &str) -> Command {
        let defaults = self.inner.options.channels.get(channel);
        let clusters = &self.inner.operator.clusters;
        let cluster = cmd
            .cluster
            .clone()
            .or_else(|| defaults.and_then(|d| d.cluster.clone()))
            .or_else(|| clusters.default_name().map(str::to_owned));
        let namespace = cmd
            .namespace
            .clone()
            .or_else(|| defaults.and_then(|d| d.namespace.clone()))
            .or_else(|| {
                clusters
                    .get(cluster.as_deref())
                    .map(|(_, ns)| ns.to_owned())
            });
        cmd.with_defaults(cluster.as_deref(), namespace.as_deref())
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

    async fn refuse_unrecorded(&self, ctx: &Ctx<'_>) {
        let reply = Reply::danger("Nothing was run").text(
            "opsbot could not record this request in its audit log (database unavailable), \
             so it did nothing. Try again in a moment.",
        );
        self.say(ctx, &reply).await;
    }

    async fn refuse_vote(&self, ctx: &Ctx<'_>, id: &str, verb: &str, why: &str) {
        self.audit(
            self.entry(ctx, AuditKind::Approval)
                .approval_id(id)
                .outcome(format!("{verb}_refused"))
                .detail(json!({ "reason": why })),
        )
        .await;
        let reply = Reply::warning(format!("You cannot {verb} {id}")).text(why);
        self.say(ctx, &reply).await;
    }

    async fn store_failed(&self, ctx: &Ctx<'_>, error: &(dyn std::fmt::Display + Sync)) {
        tracing::error!(error = %error, "store failure");
        let reply = Reply::danger("Nothing was run")
            .text("opsbot's database did not answer; nothing was changed. Try again in a moment.");
        self.say(ctx, &reply).await;
    }

    /// Posts `reply` in `channel` of `platform`, masked like every reply, for the bot's own
    /// announcements (audit checkpoints). Not audited when it fails, so an unreachable channel
    /// cannot feed the log it announces; the caller logs the error.
    pub async fn announce(
        &self,
        platform: &str,
        channel: &str,
        reply: &Reply,
    ) -> Result<MessageRef, crate::chat::DeliveryError> {
        let Some(sink) = self.sink(platform) else {
            return Err(crate::chat::DeliveryError::Refused {
                method: "post".to_owned(),
                error: format!("no chat adapter for platform {platform:?} is running"),
            });
        };
        sink.post(channel, &mask_reply(reply.clone())).await
    }

    /// Shows `reply` only to the person in `ctx` (refusals, denials, help, notices): nobody
    /// else in the channel sees it. An undeliverable reply is audited.
    async fn say(&self, ctx: &Ctx<'_>, reply: &Reply) {
        let Some(sink) = self.sink(ctx.platform) else {
            tracing::error!(platform = ctx.platform, "no chat sink registered");
            return;
        };
        let reply = &mask_reply(reply.clone());
        if let Err(e) = sink
            .post_private(ctx.channel, ctx.user, ctx.origin, reply)
            .await
        {
            self.undelivered(ctx.platform, ctx.channel, reply, &e.to_string())
                .await;
        }
    }

    /// Posts `reply` for everyone in the context's channel, as an answer to the context's
    /// request; an undeliverable reply is audited. Every reply leaves with secret-looking
    /// values masked (commands echo what people typed).
    async fn post(&self, ctx: &Ctx<'_>, reply: &Reply) -> Option<MessageRef> {
        let Some(sink) = self.sink(ctx.platform) else {
            tracing::error!(platform = ctx.platform, "no chat sink registered");
            return None;
        };
        let reply = &mask_reply(reply.clone());
        match sink.answer(ctx.channel, ctx.origin, reply).await {
            Ok(msg) => Some(msg),
            Err(e) => {
                self.undelivered(ctx.platform, ctx.channel, reply, &e.to_string())
                    .await;
                None
            }
        }
    }

    /// Replaces a message opsbot posted; an undeliverable update is audited.
    async fn update(&self, msg: &MessageRef, reply: &Reply) {
        self.update_for(msg, None, reply).await
    }

    /// [`Engine::update`] on behalf of the request `origin` that changed the message (see
    /// [`ChatSink::update_for`]).
    async fn update_for(&self, msg: &MessageRef, origin: Option<&str>, reply: &Reply) {
        let Some(sink) = self.sink(&msg.platform) else {
            return;
        };
        let reply = &mask_reply(reply.clone());
        if let Err(e) = sink.update_for(msg, origin, reply).await {
            self.undelivered(&msg.platform, &msg.channel, reply, &e.to_string())
                .await;
        }
    }

    /// Posts `reply` in `channel` on `platform` for features outside the request pipeline
    /// (alert messages). Masked like every reply; an undeliverable one is audited, and the
    /// error returned so the caller can retry.
    pub async fn post_in(
        &self,
        platform: &str,
        channel: &str,
        reply: &Reply,
    ) -> Result<MessageRef, DeliveryError> {
        let reply = &mask_reply(reply.clone());
        let result = match self.sink(platform) {
            Some(sink) => sink.post(channel, reply).await,
            None => Err(no_sink(platform)),
        };
        if let Err(e) = &result {
            self.undelivered(platform, channel, reply, &e.to_string())
                .await;
        }
        result
    }

    /// Replaces a message opsbot posted, like [`Engine::post_in`].
    pub async fn edit(&self, msg: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        let reply = &mask_reply(reply.clone());
        let result = match self.sink(&msg.platform) {
            Some(sink) => sink.update(msg, reply).await,
            None => Err(no_sink(&msg.platform)),
        };
        if let Err(e) = &result {
            self.undelivered(&msg.platform, &msg.channel, reply, &e.to_string())
                .await;
        }
        result
    }

    async fn undelivered(&self, platform: &str, channel: &str, reply: &Reply, error: &str) {
        self.inner.metrics.undelivered.inc();
        tracing::error!(platform, channel, error, "reply not delivered");
        self.audit(
            AuditEntry::new(AuditKind::Delivery, platform)
                .channel(channel)
                .outcome("undelivered")
                .detail(json!({ "error": error, "title": reply.title, "text": reply.text })),
        )
        .await;
    }

    /// Re-renders an approval card from the database and updates it where it was posted.
    async fn refresh_card(&self, id: &str, origin: Option<&str>) {
        let approval = match self.inner.store.get(id).await {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(approval = id, error = %e, "cannot load approval for its card");
                return;
            }
        };
        self.update_pending_gauge().await;
        let Some(card) = &approval.card else {
            return;
        };
        let reply = cards::approval_card(&approval, Timestamp::now());
        self.update_for(card, origin, &reply).await;
    }

    async fn expire(&self, approval: Approval) {
        let change = self
            .inner
            .store
            .try_transition(&approval.id, ApprovalState::Pending, ApprovalState::Expired)
            .await;
        self.settle(
            &approval,
            change,
            AuditKind::Approval,
            "expired",
            serde_json::Value::Null,
        )
        .await;
    }

    /// One pass of the background duties: expire overdue requests, run approved requests that
    /// nobody claimed (their process stopped between approval and execution), fail abandoned
    /// executions, and forget delivery ids older than a day (platforms retry within minutes).
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
        self.update_pending_gauge().await;
    }

    /// Requests still `executing` long after any operation could have finished were being run
    /// by a process that stopped. Their outcome is unknown: they fail, saying so, so nobody
    /// waits on them and the card tells people to look at the cluster.
    async fn fail_abandoned(&self) {
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
    async fn answer_orphans(&self) {
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

    async fn answer_orphan(&self, entry: InboxEntry) {
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

    async fn sweep_forever(&self) {
        let mut tick = tokio::time::interval(self.inner.options.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep().await;
        }
    }

    async fn update_pending_gauge(&self) {
        if let Ok(pending) = self.inner.store.pending().await {
            self.inner
                .metrics
                .pending_approvals
                .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        }
    }
}

/// The footer of every public result: who asked for it.
/// Whether running `cmd` changes anything (the cluster, or an incident): such a request left
/// running by a crash has an unknown outcome.
fn changes_state(cmd: &Command) -> bool {
    use opsbot_policies::Action;
    cmd.is_mutating()
        || matches!(cmd.op, Op::Incident(_) | Op::Alert(_))
            && !matches!(cmd.action(), Action::IncidentShow | Action::AlertShow)
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

fn requested_by(user: &Subject) -> String {
    format!("requested by {user}")
}

/// `reply` with `line` added to its footer.
fn with_footer(reply: Reply, line: &str) -> Reply {
    let footer = match &reply.footer {
        Some(f) if !f.is_empty() => format!("{f} · {line}"),
        _ => line.to_owned(),
    };
    reply.footer(footer)
}

/// `entry` with what people typed masked for secrets.
fn mask_entry(mut entry: AuditEntry) -> AuditEntry {
    let mask = |s: Option<String>| s.map(|s| opsbot_commands::ops::mask_secrets(&s));
    entry.text = mask(entry.text);
    entry.command = mask(entry.command);
    entry
}

/// Who the user is to opsbot: subject, roles, and the groups the platform reported.
fn whoami_reply(policy: &opsbot_policies::Policy, user: &Subject, groups: &[Subject]) -> Reply {
    let roles = policy.roles_of(user, groups);
    let mut reply = Reply::info(format!("You are {user}")).field(
        "Roles",
        if roles.is_empty() {
            "none".to_owned()
        } else {
            roles.join(", ")
        },
    );
    if !groups.is_empty() {
        let groups: Vec<&str> = groups.iter().map(Subject::as_str).collect();
        reply = reply.field("Groups", groups.join(", "));
    }
    reply
}

fn no_sink(platform: &str) -> DeliveryError {
    DeliveryError::Refused {
        method: "post".to_owned(),
        error: format!("no chat adapter for {platform} is running"),
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn parse_error_reply(e: &opsbot_commands::ParseError) -> Reply {
    let mut reply = Reply::warning("Cannot read that command").text(&e.message);
    if let Some(usage) = &e.usage {
        reply = reply.block(Some("usage".into()), usage);
    }
    if let Some(s) = &e.suggestion {
        reply = reply.footer(format!("did you mean `{s}`?"));
    }
    reply
}
