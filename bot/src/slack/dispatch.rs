//! The handlers behind both HTTP and Socket Mode. Each one answers at once (the ack) and runs
//! the real work — group lookup, the pipeline, Kubernetes, replies through the Web API — in a
//! spawned task, so Slack's three-second deadline never depends on any of it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsbot_policies::Subject;
use serde::Deserialize;

use super::groups::{GroupResolver, GroupSource};
use super::render::escape;
use super::response_url::ResponseUrls;
use super::{PLATFORM, Pipeline};
use crate::chat::{ApprovalClick, Invocation};
use crate::engine::RejectionKind;

/// A slash command as Slack sends it (form fields of `/slack/commands`, or a Socket Mode
/// `slash_commands` envelope). Unknown fields are ignored; missing required ones are refused.
#[derive(Clone, Default, Deserialize)]
pub struct SlashCommand {
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub channel_id: String,
    #[serde(default)]
    pub trigger_id: String,
    /// Where replies to this command can be posted (30 minutes, 5 uses). A capability: never
    /// logged (`Debug` masks it).
    #[serde(default)]
    pub response_url: Option<String>,
    /// `1` on Slack's periodic certificate checks of the command URL (no command to run).
    #[serde(default)]
    pub ssl_check: Option<String>,
}

impl std::fmt::Debug for SlashCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlashCommand")
            .field("command", &self.command)
            .field("text", &self.text)
            .field("user_id", &self.user_id)
            .field("channel_id", &self.channel_id)
            .field("trigger_id", &self.trigger_id)
            .field("response_url", &self.response_url.as_ref().map(|_| "***"))
            .field("ssl_check", &self.ssl_check)
            .finish()
    }
}

/// The parts of an interaction payload opsbot uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: Option<IdOnly>,
    pub channel: Option<IdOnly>,
    pub container: Option<Container>,
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Container {
    pub channel_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub action_id: String,
    pub value: Option<String>,
    pub action_ts: Option<String>,
}

/// The immediate answer to a slash command (shown only to the user who typed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub text: String,
}

impl Ack {
    /// The JSON body Slack expects for an ephemeral answer.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "response_type": "ephemeral", "text": self.text })
    }
}

/// A request that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Slack request: {0}")]
pub struct Malformed(pub String);

/// How long delivery ids are remembered here (the engine remembers them durably as well).
const SEEN_TTL: Duration = Duration::from_secs(15 * 60);
const SEEN_MAX: usize = 100_000;

/// Recently seen delivery ids, so a repeated delivery is answered without a second run.
#[derive(Default)]
pub(crate) struct Seen {
    set: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Seen {
    /// Records `id`; false when it was already there.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        let now = Instant::now();
        while let Some((t, _)) = self.order.front() {
            if now.duration_since(*t) < SEEN_TTL && self.order.len() < SEEN_MAX {
                break;
            }
            if let Some((t, old)) = self.order.pop_front()
                && self.set.get(&old) == Some(&t)
            {
                self.set.remove(&old);
            }
        }
        if self.set.contains_key(id) {
            return false;
        }
        self.set.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }
}

/// Shared by the HTTP routes and Socket Mode.
pub struct Dispatcher {
    pipeline: Arc<dyn Pipeline>,
    groups: Arc<GroupResolver>,
    seen: Mutex<Seen>,
    /// Where slash commands' `response_url`s are remembered for the sink.
    response_urls: Option<ResponseUrls>,
}

/// The answer to `/incident` until the incidents work lands.
pub const INCIDENT_NOT_YET: &str = "🚧 `/incident` is not yet available: incident management is coming in a later opsbot release. `/ops help` lists what works today.";

impl Dispatcher {
    pub fn new(pipeline: Arc<dyn Pipeline>, groups: Arc<dyn GroupSource>, ttl: Duration) -> Self {
        Dispatcher {
            pipeline,
            groups: Arc::new(GroupResolver::new(groups, ttl)),
            seen: Mutex::new(Seen::default()),
            response_urls: None,
        }
    }

    /// Remembers the `response_url` of every `/ops` command in `urls` (the sink's store), so
    /// replies reach channels the bot is not a member of.
    pub fn with_response_urls(mut self, urls: ResponseUrls) -> Self {
        self.response_urls = Some(urls);
        self
    }

    fn first_time(&self, delivery_id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(delivery_id)
    }

    /// Records a refused request (in the background: the refusal itself is answered at once).
    pub fn reject(&self, kind: RejectionKind, detail: String) {
        tracing::info!(kind = kind.as_str(), detail = %detail, "refused Slack request");
        let pipeline = self.pipeline.clone();
        self.pipeline.spawn(Box::pin(async move {
            pipeline.reject(PLATFORM, kind, &detail).await
        }));
    }

    /// A slash command: returns the ack and, for `/ops`, starts the pipeline in the background.
    pub fn command(&self, cmd: SlashCommand) -> Result<Ack, Malformed> {
        let user = slack_subject("slack", &cmd.user_id)
            .ok_or_else(|| Malformed("slash command without a valid user_id".into()))?;
        if !valid_id(&cmd.channel_id) {
            return Err(Malformed("slash command without a valid channel_id".into()));
        }
        if cmd.trigger_id.is_empty() || cmd.trigger_id.len() > 200 {
            return Err(Malformed("slash command without a valid trigger_id".into()));
        }
        let text = cmd.text.trim().to_owned();
        match cmd.command.as_str() {
            "/ops" => {}
            "/incident" => {
                return Ok(Ack {
                    text: INCIDENT_NOT_YET.to_owned(),
                });
            }
            other => {
                return Ok(Ack {
                    text: format!(
                        "opsbot does not know the command `{}`; try `/ops help`.",
                        escape(&other.chars().take(40).collect::<String>())
                    ),
                });
            }
        }
        let delivery_id = format!("slack:{}", cmd.trigger_id);
        if !self.first_time(&delivery_id) {
            self.reject(
                RejectionKind::Replay,
                format!("repeated slash command delivery {delivery_id}"),
            );
            return Ok(Ack {
                text: "Already received; it is not run a second time.".to_owned(),
            });
        }
        let ack = Ack {
            text: format!(
                "⏳ Working on `/ops {}`…",
                escape(&text.chars().take(200).collect::<String>())
            ),
        };
        if let (Some(urls), Some(url)) = (&self.response_urls, cmd.response_url.as_deref())
            && (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= 2048
        {
            urls.remember(&cmd.channel_id, url);
        }
        let pipeline = self.pipeline.clone();
        let groups = self.groups.clone();
        let user_id = cmd.user_id.clone();
        let channel = cmd.channel_id.clone();
        self.pipeline.spawn(Box::pin(async move {
            let groups = groups.groups_of(&user_id).await;
            pipeline
                .handle(Invocation {
                    platform: PLATFORM,
                    user,
                    groups,
                    channel,
                    text,
                    delivery_id: Some(delivery_id),
                    origin: None,
                })
                .await;
        }));
        Ok(ack)
    }

    /// An interaction payload: Approve / Deny clicks go to the pipeline in the background;
    /// anything else is acknowledged and ignored.
    pub fn interaction(&self, ev: Interaction) -> Result<(), Malformed> {
        if ev.kind != "block_actions" {
            return Ok(());
        }
        let user_id = ev
            .user
            .as_ref()
            .map(|u| u.id.clone())
            .ok_or_else(|| Malformed("block_actions without a user".into()))?;
        let user = slack_subject("slack", &user_id)
            .ok_or_else(|| Malformed("block_actions with an invalid user id".into()))?;
        let channel = ev
            .channel
            .as_ref()
            .map(|c| c.id.clone())
            .or_else(|| ev.container.as_ref().and_then(|c| c.channel_id.clone()))
            .filter(|c| valid_id(c))
            .ok_or_else(|| Malformed("block_actions without a channel".into()))?;
        for action in &ev.actions {
            let approve = match action.action_id.as_str() {
                "approve" => true,
                "deny" => false,
                _ => continue,
            };
            let Some(approval_id) = action
                .value
                .clone()
                .filter(|v| !v.is_empty() && v.len() <= 200)
            else {
                continue;
            };
            let stamp = action
                .action_ts
                .clone()
                .or_else(|| ev.trigger_id.clone())
                .unwrap_or_default();
            let delivery_id = format!("slack:{user_id}:{}:{stamp}", action.action_id);
            if !self.first_time(&delivery_id) {
                self.reject(
                    RejectionKind::Replay,
                    format!("repeated button click delivery {delivery_id}"),
                );
                continue;
            }
            let click = ApprovalClick {
                platform: PLATFORM,
                user: user.clone(),
                groups: Vec::new(),
                channel: channel.clone(),
                approval_id,
                approve,
                delivery_id: Some(delivery_id),
                origin: None,
            };
            let pipeline = self.pipeline.clone();
            let groups = self.groups.clone();
            let user_id = user_id.clone();
            self.pipeline.spawn(Box::pin(async move {
                let mut click = click;
                click.groups = groups.groups_of(&user_id).await;
                pipeline.click(click).await;
            }));
        }
        Ok(())
    }
}

/// Slack ids (users, channels) are short and alphanumeric.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn slack_subject(kind: &str, id: &str) -> Option<Subject> {
    if !valid_id(id) {
        return None;
    }
    Subject::parse(&format!("{kind}:{id}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{DeliveryError, Platform};
    use async_trait::async_trait;
    use tokio::sync::mpsc;

    #[derive(Debug)]
    enum Seen {
        Handle(Invocation),
        Click(ApprovalClick),
        Reject(RejectionKind),
    }

    struct Double(mpsc::UnboundedSender<Seen>);

    #[async_trait]
    impl Pipeline for Double {
        async fn handle(&self, i: Invocation) {
            let _ = self.0.send(Seen::Handle(i));
        }
        async fn click(&self, c: ApprovalClick) {
            let _ = self.0.send(Seen::Click(c));
        }
        async fn reject(&self, _p: Platform, k: RejectionKind, _d: &str) {
            let _ = self.0.send(Seen::Reject(k));
        }
    }

    struct Groups;
    #[async_trait]
    impl GroupSource for Groups {
        async fn memberships(&self) -> Result<Vec<(String, Vec<String>)>, DeliveryError> {
            Ok(vec![("SOPS".into(), vec!["U1".into()])])
        }
    }

    fn dispatcher() -> (Dispatcher, mpsc::UnboundedReceiver<Seen>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Dispatcher::new(
                Arc::new(Double(tx)),
                Arc::new(Groups),
                Duration::from_secs(60),
            ),
            rx,
        )
    }

    fn cmd(command: &str, text: &str, trigger: &str) -> SlashCommand {
        SlashCommand {
            command: command.into(),
            text: text.into(),
            user_id: "U1".into(),
            channel_id: "C1".into(),
            trigger_id: trigger.into(),
            response_url: Some("https://hooks.slack.com/commands/T1/1/secret".into()),
            ssl_check: None,
        }
    }

    #[tokio::test]
    async fn ops_command_acks_and_runs_once_with_identity() {
        let (d, mut rx) = dispatcher();
        let ack = d.command(cmd("/ops", " scale api 5 ", "T.1")).unwrap();
        assert_eq!(ack.text, "⏳ Working on `/ops scale api 5`…");
        match rx.recv().await.unwrap() {
            Seen::Handle(i) => {
                assert_eq!(i.platform, "slack");
                assert_eq!(i.user.as_str(), "slack:U1");
                assert_eq!(i.groups[0].as_str(), "slack-group:SOPS");
                assert_eq!(i.channel, "C1");
                assert_eq!(i.text, "scale api 5");
                assert_eq!(i.delivery_id.as_deref(), Some("slack:T.1"));
            }
            other => panic!("{other:?}"),
        }
        // The same trigger again: acked, audited as a replay, not run.
        let ack = d.command(cmd("/ops", "scale api 5", "T.1")).unwrap();
        assert!(ack.text.contains("Already received"));
        assert!(matches!(
            rx.recv().await.unwrap(),
            Seen::Reject(RejectionKind::Replay)
        ));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn incident_is_not_yet_available_and_runs_nothing() {
        let (d, mut rx) = dispatcher();
        let ack = d.command(cmd("/incident", "open db down", "T.2")).unwrap();
        assert_eq!(ack.text, INCIDENT_NOT_YET);
        let ack = d.command(cmd("/other", "x", "T.3")).unwrap();
        assert!(ack.text.contains("/ops help"));
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn malformed_commands_are_refused() {
        let (d, _rx) = dispatcher();
        let mut c = cmd("/ops", "x", "T");
        c.user_id = "U1 evil".into();
        assert!(d.command(c).is_err());
        let mut c = cmd("/ops", "x", "T");
        c.channel_id = String::new();
        assert!(d.command(c).is_err());
        assert!(d.command(cmd("/ops", "x", "")).is_err());
    }

    #[tokio::test]
    async fn the_response_url_is_remembered_per_channel_and_never_shown() {
        let (d, mut rx) = dispatcher();
        let urls = ResponseUrls::default();
        let d = d.with_response_urls(urls.clone());
        let c = cmd("/ops", "status", "T.9");
        assert!(!format!("{c:?}").contains("secret"));
        d.command(c).unwrap();
        assert!(matches!(rx.recv().await.unwrap(), Seen::Handle(_)));
        let lease = urls.take_latest("C1", "x").unwrap();
        assert_eq!(lease.url(), "https://hooks.slack.com/commands/T1/1/secret");
        // Not a URL: not remembered.
        let mut c = cmd("/ops", "status", "T.10");
        c.channel_id = "C2".into();
        c.response_url = Some("javascript:alert(1)".into());
        d.command(c).unwrap();
        assert!(urls.take_latest("C2", "x").is_none());
    }

    fn click_payload(action: &str, user: &str, ts: &str) -> Interaction {
        serde_json::from_value(serde_json::json!({
            "type": "block_actions",
            "user": {"id": user, "username": "u"},
            "channel": {"id": "C1"},
            "container": {"type": "message", "channel_id": "C1"},
            "trigger_id": "tr",
            "actions": [{"action_id": action, "value": "7f3k", "action_ts": ts, "type": "button"}]
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn approve_and_deny_clicks_become_approval_clicks_once() {
        let (d, mut rx) = dispatcher();
        d.interaction(click_payload("approve", "U1", "1.1"))
            .unwrap();
        match rx.recv().await.unwrap() {
            Seen::Click(c) => {
                assert!(c.approve);
                assert_eq!(c.approval_id, "7f3k");
                assert_eq!(c.user.as_str(), "slack:U1");
                assert_eq!(c.groups[0].as_str(), "slack-group:SOPS");
                assert_eq!(c.channel, "C1");
            }
            other => panic!("{other:?}"),
        }
        d.interaction(click_payload("approve", "U1", "1.1"))
            .unwrap();
        assert!(matches!(
            rx.recv().await.unwrap(),
            Seen::Reject(RejectionKind::Replay)
        ));
        d.interaction(click_payload("deny", "U2", "1.2")).unwrap();
        match rx.recv().await.unwrap() {
            Seen::Click(c) => {
                assert!(!c.approve);
                assert!(c.groups.is_empty());
            }
            other => panic!("{other:?}"),
        }
        d.interaction(click_payload("something_else", "U2", "1.3"))
            .unwrap();
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
    }
}
