//! The buttons on an alert group's message: Silence 1h / 4h, Ack, Expire silence.
//!
//! Invariants:
//! - Each click is deduplicated through the store's delivery table, decided by the policy
//!   (`alert.silence` / `alert.ack`, the namespace taken from the alert labels) and the decision
//!   audited before anything happens; the outcome is audited after.
//! - A decision that needs an approval silences nothing (the clicker is told); a denial says
//!   which rule.
//! - Silences are created in Alertmanager first and only then recorded; the group's messages
//!   are then re-rendered by their channel writers (who silenced it until when, Expire button).

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use opsbot_commands::Reply;
use opsbot_policies::{Action, Decision, Request};
use serde_json::json;

use super::matcher::ApiMatcher;
use super::render::{ACK, EXPIRE, SILENCE_1H, SILENCE_4H};
use super::{Alerts, Inner};
use crate::chat::{AlertActions, AlertClick};
use crate::store::{
    AlertGroup, AuditEntry, AuditKind, InboxKind, InboxState, NewInboxEntry, Receipt,
};

/// The service as the engine holds it: weakly, so engine and service do not keep each other.
pub(super) struct Handle(pub(super) Weak<Inner>);

#[async_trait]
impl AlertActions for Handle {
    async fn record(&self, click: &AlertClick) -> Option<i64> {
        let inner = self.0.upgrade()?;
        Alerts { inner }.record(click).await
    }

    async fn handle(&self, click: AlertClick, inbox: i64) {
        if let Some(inner) = self.0.upgrade() {
            Alerts { inner }.handle(click, inbox).await;
        }
    }
}

impl Alerts {
    /// Records one button click in the inbox before it is acknowledged (a repeated delivery is
    /// dropped there, by any replica): its inbox id, or `None` when it is a repeat or cannot be
    /// recorded (then the clicker is told, and nothing runs).
    pub async fn record(&self, click: &AlertClick) -> Option<i64> {
        let engine = &self.inner.engine;
        // Every click is recorded; one without a platform delivery id gets one of its own.
        let id = click
            .delivery_id
            .clone()
            .unwrap_or_else(|| format!("local:{:032x}", rand::random::<u128>()));
        let text = format!("{} {}", click.action, click.group_id);
        let entry = NewInboxEntry {
            platform: click.platform.to_owned(),
            delivery_id: id.clone(),
            kind: InboxKind::Click,
            actor: click.user.as_str().to_owned(),
            channel: click.channel.clone(),
            text: text.clone(),
            owner: engine.instance().to_owned(),
            received: Timestamp::now(),
        };
        let request = AuditEntry::new(AuditKind::Request, click.platform)
            .channel(&click.channel)
            .actor(click.user.as_str())
            .text(&text);
        let replay = AuditEntry::new(AuditKind::Rejection, click.platform)
            .outcome("replay")
            .detail(json!({ "detail": format!("delivery {id} seen before") }));
        match engine.store().receive(entry, request, replay).await {
            Ok(Receipt::New(inbox)) => Some(inbox),
            Ok(Receipt::Duplicate) => None,
            Err(e) => {
                self.say(click, &unrecorded(&e.to_string())).await;
                None
            }
        }
    }

    /// Decides and runs a recorded click: every outcome is an audit record, and either the
    /// alert's message changes or the clicker alone is told why not. Then its inbox entry
    /// `inbox` is answered.
    pub async fn handle(&self, click: AlertClick, inbox: i64) {
        self.decide(&click).await;
        if let Err(e) = self
            .inner
            .engine
            .store()
            .mark(inbox, InboxState::Answered, false, Some("answered"))
            .await
        {
            tracing::error!(inbox, error = %e, "cannot mark an alert click answered");
        }
    }

    async fn decide(&self, click: &AlertClick) {
        let click = click.clone();
        let engine = &self.inner.engine;
        let store = engine.store();
        let groups = match store.alert_groups_by_id(&click.group_id).await {
            Ok(g) if !g.is_empty() => g,
            Ok(_) => {
                let reply = Reply::warning("No such alert group")
                    .text(format!("There is no alert group `{}`.", click.group_id));
                return self.say(&click, &reply).await;
            }
            Err(e) => return self.say(&click, &unrecorded(&e.to_string())).await,
        };
        let group = &groups[0];
        let action = if click.action == ACK {
            Action::AlertAck
        } else {
            Action::AlertSilence
        };
        let labels = &group.notification.common_labels;
        let mut request = Request::new(click.user.clone(), action);
        request.groups = click.groups.clone();
        request.groups_unknown = click.groups_unknown;
        request.channel = Some(click.channel.clone());
        request.namespace = labels.get("namespace").cloned();
        request.resource = Some(format!("alertgroup/{}", group.group_id));
        let evaluation = engine.policy().current().evaluate(&request);
        let (outcome, rule, refusal) = match &evaluation.decision {
            Decision::Allow { rule } => ("allow", Some(rule.clone()), None),
            Decision::Approval { rule, .. } => (
                "approval",
                Some(rule.clone()),
                Some(format!(
                    "The policy (rule `{rule}`) needs an approval for `{}`; buttons on alert \
                     messages do not ask for approvals, so nothing was done.",
                    action.as_str()
                )),
            ),
            Decision::Deny { rule, reason } => ("deny", rule.clone(), Some(reason.clone())),
        };
        let mut entry = self
            .entry(&click, AuditKind::Decision)
            .command(format!("{} {}", click.action, click.group_id))
            .outcome(outcome)
            .detail(json!({ "action": action.as_str(), "namespace": request.namespace }));
        if let Some(rule) = &rule {
            entry = entry.rule(rule);
        }
        if let Err(e) = store.append(entry).await {
            return self.say(&click, &unrecorded(&e.to_string())).await;
        }
        if let Some(why) = refusal {
            let reply = Reply::danger(format!("Not allowed: {}", action.as_str())).text(why);
            return self.say(&click, &reply).await;
        }
        let result = match click.action.as_str() {
            ACK => store
                .ack_alert_group(&group.group_id, click.user.as_str())
                .await
                .map(|_| format!("acknowledged by {}", click.user))
                .map_err(|e| e.to_string()),
            SILENCE_1H => self.silence(group, &click, Duration::from_secs(3600)).await,
            SILENCE_4H => {
                self.silence(group, &click, Duration::from_secs(4 * 3600))
                    .await
            }
            EXPIRE => self.expire(group).await,
            other => Err(format!("unknown action {other}")),
        };
        let ok = result.is_ok();
        let summary = result.unwrap_or_else(|e| e);
        let entry = self
            .entry(&click, AuditKind::Execution)
            .command(format!("{} {}", click.action, click.group_id))
            .outcome(if ok { "ok" } else { "error" })
            .detail(json!({ "summary": summary }));
        if let Err(e) = store.append(entry).await {
            tracing::error!(error = %e, "cannot audit an alert action");
        }
        if ok {
            for g in &groups {
                self.refresh(g);
            }
        } else {
            let reply = Reply::danger("The alert action failed").text(summary);
            self.say(&click, &reply).await;
        }
    }

    /// Silences the group in Alertmanager for `d`: its group labels as equal matchers, and its
    /// namespace. The policy allowed the silence in that namespace (`commonLabels`), and groups
    /// are often by `alertname` alone: without it the silence would hide the alert everywhere.
    async fn silence(
        &self,
        g: &AlertGroup,
        click: &AlertClick,
        d: Duration,
    ) -> Result<String, String> {
        let n = &g.notification;
        let mut labels = if n.group_labels.is_empty() {
            n.common_labels.clone()
        } else {
            n.group_labels.clone()
        };
        if let Some(ns) = n.common_labels.get("namespace") {
            labels
                .entry("namespace".to_owned())
                .or_insert_with(|| ns.clone());
        }
        let matchers: Vec<ApiMatcher> = labels
            .iter()
            .map(|(k, v)| ApiMatcher {
                name: k.clone(),
                value: v.clone(),
                is_regex: false,
                is_equal: true,
            })
            .collect();
        if matchers.is_empty() {
            return Err("the group has no labels to silence it by".to_owned());
        }
        let until = Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let comment = format!(
            "Silenced from chat ({} {}) through opsbot, alert group {}",
            click.platform, click.channel, g.group_id
        );
        let id = self
            .inner
            .am
            .create_silence(&matchers, until, click.user.as_str(), &comment)
            .await
            .map_err(|e| e.to_string())?;
        self.inner
            .engine
            .store()
            .silence_alert_group(&g.group_id, Some((&id, click.user.as_str(), until)))
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("silenced as {id} until {until}"))
    }

    async fn expire(&self, g: &AlertGroup) -> Result<String, String> {
        let Some(id) = g.silence_id.as_deref() else {
            return Err("the group is not silenced".to_owned());
        };
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("the stored silence id is not one Alertmanager gives".to_owned());
        }
        self.inner
            .am
            .expire_silence(id)
            .await
            .map_err(|e| e.to_string())?;
        self.inner
            .engine
            .store()
            .silence_alert_group(&g.group_id, None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("silence {id} expired"))
    }

    fn entry(&self, click: &AlertClick, kind: AuditKind) -> AuditEntry {
        AuditEntry::new(kind, click.platform)
            .channel(&click.channel)
            .actor(click.user.as_str())
    }

    /// Tells the clicker alone (a refusal, a failure): the channel sees the outcome on the
    /// alert's message.
    async fn say(&self, click: &AlertClick, reply: &Reply) {
        self.inner
            .engine
            .tell(
                click.platform,
                &click.channel,
                &click.user,
                click.origin.as_deref(),
                reply,
            )
            .await;
    }
}

fn unrecorded(error: &str) -> Reply {
    tracing::error!(error, "alert action not recorded");
    Reply::danger("Nothing was done").text(
        "opsbot could not record this click in its database, so it did nothing. Try again in a \
         moment.",
    )
}
