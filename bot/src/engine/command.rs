//! A command, from its text to its answer: rate limit, parse, channel defaults, the policy,
//! then a denial, an approval request ([`super::approvals`]), or the execution with its
//! progress edits.

use std::time::Instant;

use jiff::Timestamp;
use opsbot_commands::ops::OpError;
use opsbot_commands::{Command, Op, Progress, ProgressReceiver, ProgressSender, Reply};
use opsbot_policies::{Decision, Subject};
use serde_json::json;

use super::{Caller, Ctx, Desk, Engine, Observation, Observed, Ticket, platform_name};
use crate::chat::{Invocation, MessageRef};
use crate::store::{AuditKind, InboxState};

impl Engine {
    /// Runs one command to its final answer; returns the inbox outcome.
    #[tracing::instrument(skip_all, fields(platform = inv.platform, user = %inv.user, channel = %inv.channel))]
    pub(super) async fn run_command(&self, ticket: &Ticket, inv: Invocation) -> &'static str {
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
            Ok(cmd) => {
                let cmd = self.apply_defaults(cmd, &inv.channel);
                // What it changes, named as the cluster names it, before the policy judges it.
                self.inner.operator.canonical(cmd).await
            }
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
            groups_unknown: inv.groups_unknown,
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
                if !self.could_run(&ctx, &cmd).await {
                    self.inner.metrics.count_request(
                        inv.platform,
                        action.as_str(),
                        "approval",
                        "refused",
                    );
                    return "refused";
                }
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
                // A change that cannot run (a typo, a revision that is gone, bounds that make
                // no sense) is the requester's business: told privately, before anything is
                // posted in the channel.
                if cmd.is_mutating() && !self.could_run(&ctx, &cmd).await {
                    self.inner.metrics.count_request(
                        inv.platform,
                        action.as_str(),
                        "allow",
                        "refused",
                    );
                    return "refused";
                }
                match self
                    .inner
                    .store
                    .mark(ticket.inbox, InboxState::Running, changes_state(&cmd), None)
                    .await
                {
                    Ok(true) => {}
                    // Already answered: another process took this request for a stopped one's
                    // and told the person nothing ran. So nothing runs.
                    Ok(false) => {
                        tracing::warn!(inbox = ticket.inbox, "request answered elsewhere; not run");
                        return "taken_over";
                    }
                    Err(e) => {
                        self.store_failed(&ctx, &e).await;
                        return "unrecorded";
                    }
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
    /// severity (asked of the incidents service): the more severe of it and the one the
    /// command names, so `incident sev P4` on a P1 is judged as P1. `Err`: the answer for the
    /// caller alone.
    pub(super) async fn policy_request(
        &self,
        caller: &Caller,
        cmd: &Command,
    ) -> Result<opsbot_policies::Request, Reply> {
        let mut request = cmd.policy_request(&caller.user, &caller.groups, Some(&caller.channel));
        request.groups_unknown = caller.groups_unknown;
        if let Some(desk) = self.desk_for(cmd).map_err(|r| *r)? {
            let facts = desk.prepare(caller, cmd).await?;
            request.severity = match (request.severity, facts.severity) {
                (Some(named), Some(has)) => Some(named.min(has)),
                (named, has) => named.or(has),
            };
            // What the feature acts on, not what was typed: `silence add namespace="prod" -n
            // staging` silences in prod, so the policy sees prod (and a silence without a
            // namespace matcher, no namespace at all).
            request.namespace = facts.namespace;
        }
        Ok(request)
    }

    /// Tells the incidents service a command was decided (and run) in the context's channel.
    /// Incident commands write their own timeline entries; help and whoami are nobody's business.
    pub(super) async fn observe_command(
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

    /// Whether `cmd` could run on the cluster as it is now, asked before anyone is asked to
    /// approve it: a name that does not exist, a revision that is gone or bounds that make no
    /// sense are refused here (audited, and the requester told privately), so approvers are
    /// never paged for a typo. A cluster that does not answer is no verdict: the approval is
    /// asked for, and execution checks again.
    pub(super) async fn could_run(&self, ctx: &Ctx<'_>, cmd: &Command) -> bool {
        let e = match self.inner.operator.precheck(cmd).await {
            Ok(()) => return true,
            Err(e @ (OpError::NotFound { .. } | OpError::Refused(_))) => e,
            Err(e) => {
                tracing::warn!(error = %e, command = %cmd.to_text(), "could not check a command before asking for its approval");
                return true;
            }
        };
        self.audit(
            self.entry(ctx, AuditKind::Rejection)
                .command(cmd.to_text())
                .outcome("cannot_run")
                .detail(json!({ "error": e.to_string() })),
        )
        .await;
        self.say(ctx, &e.to_reply()).await;
        false
    }

    /// Whether a command that may change the cluster, taken at `since`, may still start; if
    /// not, it is refused as stale (audited, and the person told).
    pub(super) async fn fresh_enough(
        &self,
        ctx: &Ctx<'_>,
        cmd: &Command,
        since: Timestamp,
    ) -> bool {
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

    /// Executes an allowed `cmd`, streaming progress into a message for long operations, audits
    /// the execution, posts the result, and returns (succeeded, one-line summary).
    pub(super) async fn execute(
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
    pub(super) async fn execute_on_desk(
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
            groups_unknown: false,
        };
        desk.execute(&caller, cmd).await.map_err(|reply| {
            let summary = reply.text.clone().unwrap_or_else(|| reply.title.clone());
            (reply, summary)
        })
    }

    /// Turns progress into message edits, at most one per `progress_interval`; the newest
    /// progress wins. Ends when the operation drops its sender.
    pub(super) async fn forward_progress(
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

    pub(super) fn apply_defaults(&self, cmd: Command, channel: &str) -> Command {
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
}

/// Whether running `cmd` changes anything (the cluster, or an incident): such a request left
/// running by a crash has an unknown outcome.
fn changes_state(cmd: &Command) -> bool {
    use opsbot_policies::Action;
    cmd.is_mutating()
        || matches!(cmd.op, Op::Incident(_) | Op::Alert(_))
            && !matches!(cmd.action(), Action::IncidentShow | Action::AlertShow)
}

/// The footer of every public result: who asked for it.
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
