//! Approval requests: the card, the votes (approver roles, distinct people, expiry), and the
//! one execution of an approved request (a conditional claim; the policy is asked again first).

use jiff::Timestamp;
use opsbot_commands::{Command, Reply};
use opsbot_policies::{Decision, Subject};
use serde_json::json;

use super::{Caller, Ctx, Engine, Observation, Observed, cards, platform_name};
use crate::chat::{ApprovalClick, Invocation};
use crate::store::{
    Approval, ApprovalRequirement, ApprovalState, AuditEntry, AuditKind, InboxState, NewApproval,
};

impl Engine {
    pub(super) async fn ask_for_approval(
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
            // Whether the requester's groups were unknown goes with them: the policy in force
            // when it runs must keep a group ban then too.
            context: json!({
                "typed": opsbot_commands::ops::mask_secrets(&inv.text),
                "requester_groups_unknown": inv.groups_unknown,
            }),
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

    /// An Approve / Deny click (already recorded by [`Engine::accept`]); updates the approval
    /// card through the platform's sink, and tells only the clicker what concerns only them.
    #[tracing::instrument(skip_all, fields(platform = click.platform, user = %click.user, approval = %click.approval_id))]
    /// `inbox`: the click's inbox entry, marked running (a change) before the click runs the
    /// approved request, so a crash meanwhile is answered "outcome unknown", not "nothing ran".
    pub(super) async fn run_click(&self, click: ApprovalClick, inbox: i64) {
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
                let why = with_unknown_groups(why, click.groups_unknown);
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
            let why = with_unknown_groups(why, click.groups_unknown);
            return self.refuse_vote(&ctx, &approval.id, verb, &why).await;
        }
        let groups: Vec<String> = click.groups.iter().map(|g| g.as_str().to_owned()).collect();
        let vote = match self
            .inner
            .store
            .add_approval(&approval.id, click.user.as_str(), &groups)
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
            Ok(true) => {
                if let Err(e) = self
                    .inner
                    .store
                    .mark(inbox, InboxState::Running, true, None)
                    .await
                {
                    tracing::error!(inbox, error = %e, "cannot mark an approving click running");
                }
                // Boxed: the operation's future is large, and clicks run on small stacks.
                Box::pin(self.run_approved(&approval.id, ctx.origin)).await
            }
            Ok(false) => {} // someone else's click completed it; they run it
            Err(e) => self.store_failed(&ctx, &e).await,
        }
    }

    pub(super) async fn refuse_vote(&self, ctx: &Ctx<'_>, id: &str, verb: &str, why: &str) {
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

    /// Runs an approved request, if this caller wins the claim: the policy is evaluated again
    /// first, and a request it now denies fails with that reason.
    /// `origin`: the click that approved it, if it runs now (not after a restart).
    pub(super) async fn run_approved(&self, id: &str, origin: Option<&str>) {
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
            groups_unknown: approval.context["requester_groups_unknown"] == true,
        };
        let request = match self.policy_request(&caller, &cmd).await {
            Ok(r) => r,
            Err(reply) => {
                let why = reply.text.unwrap_or(reply.title);
                return self.fail_approval(&approval, &why).await;
            }
        };
        let policy = self.inner.policy.current();
        // Whether the votes still matter: a request the policy now allows outright runs on
        // the requester's own standing.
        let needs_votes = match policy.decide(&request) {
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
            Decision::Approval { .. } => true,
            Decision::Allow { .. } => false,
        };
        // The votes count under the policy it runs under: a reload that took an approver's
        // role away since they voted voids the approval.
        if needs_votes {
            let lost = approvers_without_standing(&policy, &approval, &requester);
            if !lost.is_empty() {
                let why = format!(
                    "the policy no longer lets {} approve it, so nothing was run; ask again",
                    lost.join(", ")
                );
                return self.fail_approval(&approval, &why).await;
            }
        }
        match self.inner.store.claim_execution(id).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(approval = id, error = %e, "cannot claim approved request");
                return;
            }
        }
        // Nothing runs without its decision on record: the approval that lets it run (who
        // approved it, under which rule) is audited first, whatever became of the votes' own
        // records; when that fails, it fails and nothing runs.
        let approvers: Vec<&str> = approval
            .approvers
            .iter()
            .map(|v| v.subject.as_str())
            .collect();
        let recorded = self
            .audit(
                AuditEntry::new(AuditKind::Approval, &approval.platform)
                    .channel(&approval.channel)
                    .actor(&approval.requester)
                    .approval_id(id)
                    .command(&approval.command)
                    .rule(&approval.rule)
                    .outcome("approved")
                    .detail(json!({ "approvers": approvers })),
            )
            .await;
        if !recorded {
            let why = "its approval could not be written to the audit log, so nothing was run; \
                       ask again";
            if let Err(e) = self
                .inner
                .store
                .finish(id, ApprovalState::Failed, why)
                .await
            {
                tracing::error!(approval = id, error = %e, "cannot record the end of an approval");
            }
            self.observe_approval(&approval, "opsbot", "failed").await;
            return self.refresh_card(id, origin).await;
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

    pub(super) async fn fail_approval(&self, approval: &Approval, why: &str) {
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
    pub(super) async fn settle(
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

    pub(super) async fn expire(&self, approval: Approval) {
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

    /// Re-renders an approval card from the database and updates it where it was posted.
    pub(super) async fn refresh_card(&self, id: &str, origin: Option<&str>) {
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

    /// Tells the incidents service about a step of `approval`, taken by `actor`.
    pub(super) async fn observe_approval(&self, approval: &Approval, actor: &str, outcome: &str) {
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

    pub(super) async fn update_pending_gauge(&self) {
        if let Ok(pending) = self.inner.store.pending().await {
            self.inner
                .metrics
                .pending_approvals
                .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        }
    }
}

/// The approvers of `approval` whom `policy` would not let approve it now (with the groups they
/// held when they voted; a vote cast before those were recorded is not re-checked).
fn approvers_without_standing<'a>(
    policy: &opsbot_policies::Policy,
    approval: &'a Approval,
    requester: &Subject,
) -> Vec<&'a str> {
    let requirement: opsbot_policies::Requirement = (&approval.requirement).into();
    approval
        .approvers
        .iter()
        .filter(|v| {
            let Some(groups) = &v.groups else {
                return false;
            };
            let Ok(approver) = Subject::parse(&v.subject) else {
                return true;
            };
            let groups: Vec<Subject> = groups
                .iter()
                .filter_map(|g| Subject::parse(g).ok())
                .collect();
            policy
                .may_approve(&requirement, requester, &approver, &groups, &[])
                .is_err()
        })
        .map(|v| v.subject.as_str())
        .collect()
}

/// Why a vote was refused, saying so when the clicker's groups could not be read (an approver
/// role a group gives was then missing: trying again later may work).
fn with_unknown_groups(why: String, unknown: bool) -> String {
    if unknown {
        format!(
            "{why} (your groups could not be read just now: if a group makes you an approver, \
             try again in a minute)"
        )
    } else {
        why
    }
}
