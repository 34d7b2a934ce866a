//! The handlers behind both HTTP and Socket Mode. Each one records the request durably (the
//! pipeline's `take`: a group-committed inbox write, bounded by the engine's accept budget) and
//! then answers (the ack); the real work — group lookup, the policy, Kubernetes, replies through
//! the Web API — runs in a spawned task, so Slack's three-second deadline never depends on it.
//! An ack is a promise: what is acked is on disk and gets a final answer, also after a crash.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use opsbot_policies::Subject;
use serde::Deserialize;

use super::groups::{GroupResolver, GroupSource};
use super::render::escape;
use super::response_url::ResponseUrls;
use super::{PLATFORM, Pipeline};
use crate::chat::{AlertClick, ApprovalClick, Invocation, Membership};
use crate::engine::{Inbound, Refusal, RejectionKind};

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
    /// Replaces the message the button was on (30 minutes, 5 uses), also where the bot may not
    /// post. A capability: never logged (`Debug` masks it).
    #[serde(default)]
    pub response_url: Option<Capability>,
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// A URL that lets whoever holds it post: shown as `***`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Capability(pub String);

impl std::fmt::Debug for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
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

/// Shared by the HTTP routes and Socket Mode.
pub struct Dispatcher {
    pipeline: Arc<dyn Pipeline>,
    groups: Arc<GroupResolver>,
    /// Where slash commands' `response_url`s are remembered for the sink.
    response_urls: Option<ResponseUrls>,
    /// Events API `event_id`s handled lately: Slack retries an event it got no timely 200 for,
    /// and a retry of one handled here is not handled twice.
    seen_events: Mutex<RecentIds>,
}

/// The latest [`RecentIds::CAPACITY`] ids, oldest forgotten first.
#[derive(Default)]
struct RecentIds {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl RecentIds {
    /// Slack retries within the hour; this outlasts that at any event rate opsbot sees.
    const CAPACITY: usize = 4096;

    /// Whether `id` is new (and remembers it).
    fn first(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        true
    }
}

impl Dispatcher {
    pub fn new(pipeline: Arc<dyn Pipeline>, groups: Arc<dyn GroupSource>, ttl: Duration) -> Self {
        Dispatcher {
            pipeline,
            groups: Arc::new(GroupResolver::new(groups, ttl)),
            response_urls: None,
            seen_events: Mutex::new(RecentIds::default()),
        }
    }

    /// Remembers the `response_url` of every `/ops` command in `urls` (the sink's store), so
    /// replies reach channels the bot is not a member of.
    pub fn with_response_urls(mut self, urls: ResponseUrls) -> Self {
        self.response_urls = Some(urls);
        self
    }

    /// Remembers a `response_url` Slack handed out in `channel` (if it looks like one): a
    /// command's as the channel's newest, a click's for its message only. Returns its entry id.
    fn remember_response_url(&self, channel: &str, url: &str, click: bool) -> Option<String> {
        let urls = self.response_urls.as_ref()?;
        let plausible =
            (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2048;
        plausible.then(|| match click {
            true => urls.remember_for_message(channel, url),
            false => urls.remember(channel, url),
        })
    }

    /// The lookup of `user_id`'s groups, to run after the ack.
    fn groups_of(&self, user_id: &str) -> BoxFuture<'static, Membership> {
        let groups = self.groups.clone();
        let user_id = user_id.to_owned();
        Box::pin(async move { groups.groups_of(&user_id).await })
    }

    /// Records a refused request (in the background: the refusal itself is answered at once).
    pub fn reject(&self, kind: RejectionKind, detail: String) {
        tracing::info!(kind = kind.as_str(), detail = %detail, "refused Slack request");
        let pipeline = self.pipeline.clone();
        self.pipeline.spawn(Box::pin(async move {
            pipeline.reject(PLATFORM, kind, &detail).await
        }));
    }

    /// A slash command: for `/ops`, takes it durably and returns the ack (the answer follows
    /// from the pipeline in the background, or the ack says why it was not taken).
    pub async fn command(&self, cmd: SlashCommand) -> Result<Ack, Malformed> {
        let user = slack_subject("slack", &cmd.user_id)
            .ok_or_else(|| Malformed("slash command without a valid user_id".into()))?;
        if !valid_id(&cmd.channel_id) {
            return Err(Malformed("slash command without a valid channel_id".into()));
        }
        if cmd.trigger_id.is_empty() || cmd.trigger_id.len() > 200 {
            return Err(Malformed("slash command without a valid trigger_id".into()));
        }
        let text = match cmd.command.as_str() {
            "/ops" => cmd.text.trim().to_owned(),
            // `/incident …` is `/ops incident …`.
            "/incident" => format!("incident {}", cmd.text.trim()).trim().to_owned(),
            other => {
                return Ok(Ack {
                    text: format!(
                        "opsbot does not know the command `{}`; try `/ops help`.",
                        escape(&other.chars().take(40).collect::<String>())
                    ),
                });
            }
        };
        // The command's own response_url: where its private replies go when the bot cannot
        // post in the channel (Slack shows an ephemeral response to that command's author).
        let origin = cmd
            .response_url
            .as_deref()
            .and_then(|url| self.remember_response_url(&cmd.channel_id, url, false));
        let invocation = Invocation {
            platform: PLATFORM,
            user,
            groups: Vec::new(),
            groups_unknown: false,
            channel: cmd.channel_id.clone(),
            text: text.clone(),
            delivery_id: Some(format!("slack:{}", cmd.trigger_id)),
            origin,
        };
        let groups = self.groups_of(&cmd.user_id);
        let text = match self
            .pipeline
            .take(Inbound::Command(invocation), groups)
            .await
        {
            Ok(()) => format!(
                "⏳ Working on `/ops {}`…",
                escape(&text.chars().take(200).collect::<String>())
            ),
            Err(refusal) => refusal.message(),
        };
        Ok(Ack { text })
    }

    /// An interaction payload: Approve / Deny clicks are taken durably by the pipeline before
    /// the ack (a click not taken is told why, privately); anything else is acknowledged and
    /// ignored.
    pub async fn interaction(&self, ev: Interaction) -> Result<(), Malformed> {
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
        // The click's own response_url replaces the card it was on (where the bot may not post,
        // the only way to update it); the engine hands its entry back as the click's origin.
        let origin = ev
            .response_url
            .as_ref()
            .and_then(|url| self.remember_response_url(&channel, &url.0, true));
        for action in &ev.actions {
            if crate::alerts::render::ACTIONS.contains(&action.action_id.as_str()) {
                let click = (action, ev.trigger_id.as_deref(), origin.clone());
                self.alert_click(&user, &user_id, &channel, click).await;
                continue;
            }
            if action.action_id == crate::incidents::render::COMMAND_BUTTON {
                let click = (action, ev.trigger_id.as_deref(), origin.clone());
                self.command_button(&user, &user_id, &channel, click).await;
                continue;
            }
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
            let click = Inbound::Click(ApprovalClick {
                platform: PLATFORM,
                user: user.clone(),
                groups: Vec::new(),
                groups_unknown: false,
                channel: channel.clone(),
                approval_id,
                approve,
                delivery_id: Some(format!("slack:{user_id}:{}:{stamp}", action.action_id)),
                origin: origin.clone(),
            });
            let groups = self.groups_of(&user_id);
            if let Err(refusal) = self.pipeline.take(click.clone(), groups).await
                && refusal != Refusal::Duplicate
            {
                let pipeline = self.pipeline.clone();
                self.pipeline.spawn(Box::pin(async move {
                    pipeline.tell_refused(&click, refusal).await
                }));
            }
        }
        Ok(())
    }
}

impl Dispatcher {
    /// A button that runs a command (an incident card's "Take command"): the command is the
    /// button's action id and value (`incident` + `ack --id INC-7`), run as if the clicker
    /// typed it, through the whole pipeline. A click not taken is told why, privately.
    /// `click`: the button's action, the trigger id and the click's response_url entry.
    async fn command_button(
        &self,
        user: &Subject,
        user_id: &str,
        channel: &str,
        (action, trigger, origin): (&Action, Option<&str>, Option<String>),
    ) {
        let Some(value) = action.value.as_deref().filter(|v| v.len() <= 200) else {
            return;
        };
        let stamp = action
            .action_ts
            .clone()
            .or_else(|| trigger.map(str::to_owned))
            .unwrap_or_default();
        let inbound = Inbound::Command(Invocation {
            platform: PLATFORM,
            user: user.clone(),
            groups: Vec::new(),
            groups_unknown: false,
            channel: channel.to_owned(),
            text: format!("{} {value}", action.action_id),
            delivery_id: Some(format!("slack:{user_id}:{}:{stamp}", action.action_id)),
            origin,
        });
        let groups = self.groups_of(user_id);
        if let Err(refusal) = self.pipeline.take(inbound.clone(), groups).await
            && refusal != Refusal::Duplicate
        {
            let pipeline = self.pipeline.clone();
            self.pipeline.spawn(Box::pin(async move {
                pipeline.tell_refused(&inbound, refusal).await
            }));
        }
    }

    /// An Events API event (`event_callback`): a `reaction_added` on a message goes to the
    /// pipeline (a 📌 marks the message for an incident's timeline); other events are ignored.
    pub fn event(&self, body: &serde_json::Value) {
        if body["type"] != "event_callback" || body["event"]["type"] != "reaction_added" {
            return;
        }
        if let Some(id) = body["event_id"].as_str().filter(|id| id.len() <= 100) {
            let mut seen = self.seen_events.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.first(id) {
                tracing::debug!(event_id = id, "Slack event seen before: not handled again");
                return;
            }
        }
        let ev = &body["event"];
        let (Some(user), Some(channel), Some(ts), Some(emoji)) = (
            ev["user"].as_str().and_then(|u| slack_subject("slack", u)),
            ev["item"]["channel"].as_str().filter(|c| valid_id(c)),
            ev["item"]["ts"].as_str().filter(|t| t.len() <= 40),
            ev["reaction"].as_str().filter(|r| r.len() <= 100),
        ) else {
            return;
        };
        if ev["item"]["type"] != "message" {
            return;
        }
        let reaction = crate::chat::Reaction {
            platform: PLATFORM,
            user,
            channel: channel.to_owned(),
            message_id: ts.to_owned(),
            emoji: emoji.to_owned(),
            text: None,
            author: ev["item_user"]
                .as_str()
                .and_then(|u| slack_subject("slack", u)),
            link: None,
        };
        let pipeline = self.pipeline.clone();
        self.pipeline
            .spawn(Box::pin(async move { pipeline.reaction(reaction).await }));
    }

    /// A Silence / Ack / Expire click on an alert message: recorded by the alerts service
    /// before the ack (once per delivery), handled in the background.
    async fn alert_click(
        &self,
        user: &Subject,
        user_id: &str,
        channel: &str,
        (action, trigger_id, origin): (&Action, Option<&str>, Option<String>),
    ) {
        let Some(group_id) = action
            .value
            .clone()
            .filter(|v| !v.is_empty() && v.len() <= 64)
        else {
            return;
        };
        let stamp = action
            .action_ts
            .as_deref()
            .or(trigger_id)
            .unwrap_or_default();
        // Repeated deliveries are recognised durably by the alerts service (the inbox).
        let delivery_id = format!("slack:{user_id}:{}:{stamp}", action.action_id);
        let click = AlertClick {
            platform: PLATFORM,
            user: user.clone(),
            groups: Vec::new(),
            groups_unknown: false,
            channel: channel.to_owned(),
            action: action.action_id.clone(),
            group_id,
            delivery_id: Some(delivery_id),
            origin,
        };
        let groups = self.groups_of(user_id);
        self.pipeline.take_alert_click(click, groups).await;
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
        Told(Refusal),
    }

    /// Takes each delivery once (a repeat is a duplicate, as the engine's inbox says), or
    /// refuses everything with `refuse`; records what it was handed.
    struct Double {
        seen: mpsc::UnboundedSender<Seen>,
        delivered: std::sync::Mutex<std::collections::HashSet<String>>,
        refuse: Option<Refusal>,
    }

    #[async_trait]
    impl Pipeline for Double {
        async fn take(
            &self,
            inbound: Inbound,
            groups: BoxFuture<'static, Membership>,
        ) -> Result<(), Refusal> {
            if let Some(refusal) = self.refuse {
                return Err(refusal);
            }
            let id = match &inbound {
                Inbound::Command(i) => i.delivery_id.clone(),
                Inbound::Click(c) => c.delivery_id.clone(),
            };
            if !self
                .delivered
                .lock()
                .unwrap()
                .insert(id.unwrap_or_default())
            {
                return Err(Refusal::Duplicate);
            }
            let _ = self.seen.send(match inbound.with_groups(groups.await) {
                Inbound::Command(i) => Seen::Handle(i),
                Inbound::Click(c) => Seen::Click(c),
            });
            Ok(())
        }
        async fn tell_refused(&self, _: &Inbound, refusal: Refusal) {
            let _ = self.seen.send(Seen::Told(refusal));
        }
        async fn reject(&self, _p: Platform, _k: RejectionKind, _d: &str) {}
    }

    struct Groups;
    #[async_trait]
    impl GroupSource for Groups {
        async fn memberships(&self) -> Result<Vec<(String, Vec<String>)>, DeliveryError> {
            Ok(vec![("SOPS".into(), vec!["U1".into()])])
        }
    }

    fn dispatcher() -> (Dispatcher, mpsc::UnboundedReceiver<Seen>) {
        refusing(None)
    }

    fn refusing(refuse: Option<Refusal>) -> (Dispatcher, mpsc::UnboundedReceiver<Seen>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let double = Double {
            seen: tx,
            delivered: Default::default(),
            refuse,
        };
        let d = Dispatcher::new(Arc::new(double), Arc::new(Groups), Duration::from_secs(60));
        (d, rx)
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
        let ack = d
            .command(cmd("/ops", " scale api 5 ", "T.1"))
            .await
            .unwrap();
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
        // The same trigger again: the pipeline says it is a duplicate; acked, not run.
        let ack = d.command(cmd("/ops", "scale api 5", "T.1")).await.unwrap();
        assert!(ack.text.contains("Already received"));
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_command_not_taken_is_acked_with_why_and_nothing_else() {
        for (refusal, says) in [
            (Refusal::Unrecorded, "could not record"),
            (
                Refusal::Busy {
                    retry_after: Duration::from_secs(5),
                },
                "busy",
            ),
        ] {
            let (d, mut rx) = refusing(Some(refusal));
            let ack = d.command(cmd("/ops", "scale api 5", "T.1")).await.unwrap();
            assert!(ack.text.contains(says), "{}", ack.text);
            assert!(ack.text.contains("Nothing was run") || ack.text.contains("did nothing"));
            tokio::task::yield_now().await;
            assert!(
                rx.try_recv().is_err(),
                "a refused command is not answered again"
            );
        }
    }

    #[tokio::test]
    async fn a_click_not_taken_is_told_privately_why() {
        let (d, mut rx) = refusing(Some(Refusal::Unrecorded));
        d.interaction(click_payload("approve", "U1", "1.1"))
            .await
            .unwrap();
        assert!(matches!(
            rx.recv().await.unwrap(),
            Seen::Told(Refusal::Unrecorded)
        ));
    }

    #[tokio::test]
    async fn incident_is_an_alias_of_ops_incident_and_unknown_commands_run_nothing() {
        let (d, mut rx) = dispatcher();
        let ack = d
            .command(cmd("/incident", " open P1 db down ", "T.2"))
            .await
            .unwrap();
        assert!(
            ack.text.contains("incident open P1 db down"),
            "{}",
            ack.text
        );
        match rx.recv().await.unwrap() {
            Seen::Handle(i) => assert_eq!(i.text, "incident open P1 db down"),
            other => panic!("{other:?}"),
        }
        let ack = d.command(cmd("/other", "x", "T.3")).await.unwrap();
        assert!(ack.text.contains("/ops help"));
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_command_button_runs_its_command_as_the_clicker() {
        let (d, mut rx) = dispatcher();
        let mut click = click_payload("incident", "U2", "9.9");
        click.actions[0].value = Some("ack --id INC-7".into());
        d.interaction(click).await.unwrap();
        match rx.recv().await.unwrap() {
            Seen::Handle(i) => {
                assert_eq!(i.text, "incident ack --id INC-7");
                assert_eq!(i.user.as_str(), "slack:U2");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn malformed_commands_are_refused() {
        let (d, _rx) = dispatcher();
        let mut c = cmd("/ops", "x", "T");
        c.user_id = "U1 evil".into();
        assert!(d.command(c).await.is_err());
        let mut c = cmd("/ops", "x", "T");
        c.channel_id = String::new();
        assert!(d.command(c).await.is_err());
        assert!(d.command(cmd("/ops", "x", "")).await.is_err());
    }

    #[tokio::test]
    async fn the_response_url_is_remembered_per_channel_and_never_shown() {
        let (d, mut rx) = dispatcher();
        let urls = ResponseUrls::default();
        let d = d.with_response_urls(urls.clone());
        let c = cmd("/ops", "status", "T.9");
        assert!(!format!("{c:?}").contains("secret"));
        d.command(c).await.unwrap();
        assert!(matches!(rx.recv().await.unwrap(), Seen::Handle(_)));
        let lease = urls.take_latest("C1", "x").unwrap();
        assert_eq!(lease.url(), "https://hooks.slack.com/commands/T1/1/secret");
        // Not a URL: not remembered.
        let mut c = cmd("/ops", "status", "T.10");
        c.channel_id = "C2".into();
        c.response_url = Some("javascript:alert(1)".into());
        d.command(c).await.unwrap();
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
            .await
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
        // A repeated delivery: a duplicate, about which nobody is told twice.
        d.interaction(click_payload("approve", "U1", "1.1"))
            .await
            .unwrap();
        d.interaction(click_payload("deny", "U2", "1.2"))
            .await
            .unwrap();
        match rx.recv().await.unwrap() {
            Seen::Click(c) => {
                assert!(!c.approve);
                assert!(c.groups.is_empty());
            }
            other => panic!("{other:?}"),
        }
        d.interaction(click_payload("something_else", "U2", "1.3"))
            .await
            .unwrap();
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
    }
}
