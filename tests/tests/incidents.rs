//! Incidents, end to end on SQLite and PostgreSQL: the real engine and incidents service
//! against kubesim, the Slack routes on port 0 with signed requests, and the fake Slack Web API
//! (which learns `conversations.create/setTopic/invite/archive`, `pins.add`, `reactions.get`,
//! `name_taken` and `missing_scope`). Escalations run on a test clock that the tests move.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use opsbot::chat::Invocation;
use opsbot::config::{AlertChannel, EscalationStep, IncidentsConfig, PagerDutyConfig};
use opsbot::engine::Engine;
use opsbot::incidents::{Clock, Incidents};
use opsbot::slack::{RetryPolicy, SlackConfig};
use opsbot_policies::{Severity, Subject};
use opsbot_tests::bot::{BotOptions, Db, TestBot};
use opsbot_tests::eventually;
use opsbot_tests::slack_fake::{self, SignedRequest, SlackFake};
use serde_json::Value;

const TOKEN: &str = "xoxb-incidents";
const SECRET: &str = "incidents-signing-secret";
/// Wait limit for background work (not an assertion on speed).
const PATIENCE: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
version: 1
roles:
  oncall: { members: ["slack-group:S0ONCALL", "console:olive", "console:otto"] }
  lead:   { members: ["slack:U0ALICE", "console:alice"] }
  eng:    { members: ["slack:U0BOB", "console:bob"] }
rules:
  - name: read
    roles: ["*"]
    actions: [status, pods, events, "incident.show"]
  - name: oncall-incidents
    roles: [oncall, lead]
    actions: ["incident.open", "incident.update"]
  - name: eng-opens-minor
    roles: [eng]
    actions: ["incident.open"]
    when: { severity: [P3, P4] }
  # Incidents name no namespace: a typed `-n staging` does not make this rule match.
  - name: eng-opens-in-staging
    roles: [eng]
    actions: ["incident.open"]
    namespaces: [staging]
  - name: lead-closes
    roles: [lead]
    actions: ["incident.close"]
  - name: oncall-closes-minor
    roles: [oncall]
    actions: ["incident.close"]
    when: { severity: [P3, P4] }
  - name: prod-scale
    roles: [oncall]
    actions: [scale]
    namespaces: [production]
    approval: { roles: [lead], count: 1, ttl: 15m }
"#;

fn subjects(list: &[&str]) -> Vec<Subject> {
    list.iter().map(|s| Subject::parse(s).unwrap()).collect()
}

/// Runbook 001's P1 path in small: on-call, then the leads, then the CTO; the deadline for
/// taking command 5 minutes, steps 10 minutes apart, reminders hourly.
fn config(pagerduty: Option<PagerDutyConfig>) -> IncidentsConfig {
    let mut config = IncidentsConfig {
        announce_channel: Some(AlertChannel::parse("slack:C0INCIDENTS").unwrap()),
        pagerduty,
        // The loop stays out of the way: the tests sweep themselves.
        sweep_interval: Duration::from_secs(3600),
        ..IncidentsConfig::default()
    };
    for sev in Severity::ALL {
        let plan = config.severities.get_mut(&sev).unwrap();
        plan.responders = subjects(&["slack-group:S0ONCALL", "console:olive"]);
        plan.ack_within = Duration::from_secs(300);
        plan.remind_every = Duration::from_secs(3600);
        plan.escalation = vec![
            EscalationStep {
                after: Duration::ZERO,
                notify: subjects(&["slack-group:S0ONCALL", "console:olive"]),
                page: true,
            },
            EscalationStep {
                after: Duration::from_secs(600),
                notify: subjects(&["slack:U0ALICE", "console:alice"]),
                page: false,
            },
            EscalationStep {
                after: Duration::from_secs(600),
                notify: subjects(&["slack:U0CTO", "console:carol"]),
                page: false,
            },
        ];
    }
    config
}

struct Bot {
    core: TestBot,
    fake: SlackFake,
    base: String,
    http: reqwest::Client,
    incidents: Incidents,
}

impl Bot {
    async fn start(db: Db, test: &str, config: IncidentsConfig) -> Option<Bot> {
        let core = TestBot::start(db, test, POLICY, BotOptions::default()).await?;
        core.session("olive");
        let fake = SlackFake::start(TOKEN).await;
        fake.set_user_groups(&[("S0ONCALL", &["U0OLIVE", "U0OTTO"])]);
        let mut cfg = SlackConfig::new(TOKEN, SECRET).with_api_url(fake.api_url());
        cfg.retry = RetryPolicy {
            base_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let engine = core.engine.clone();
        let app = opsbot::server::base_router(engine.clone())
            .merge(opsbot::slack::router(engine.clone(), &cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let incidents = Incidents::new(engine, config, Clock::real());
        incidents.start();
        Some(Bot {
            core,
            fake,
            base,
            http: reqwest::Client::new(),
            incidents,
        })
    }

    fn engine(&self) -> &Engine {
        &self.core.engine
    }

    async fn send(&self, req: &SignedRequest) -> reqwest::Response {
        req.send(&self.http, &self.base).await
    }

    /// A slash command, acknowledged as taken.
    async fn slash(&self, command: &str, user: &str, channel: &str, text: &str, trigger: &str) {
        let req = self
            .fake
            .slash_command(SECRET, command, text, user, channel, trigger);
        let res = self.send(&req).await;
        assert_eq!(res.status(), 200);
        let ack: Value = res.json().await.unwrap();
        assert!(
            ack["text"].as_str().unwrap().contains("Working on"),
            "{ack}"
        );
    }

    /// Waits until a message in `channel` (its latest state) contains `needle`; returns it.
    async fn wait_message(&self, channel: &str, needle: &str) -> String {
        let found = |messages: &[slack_fake::Message]| {
            messages
                .iter()
                .map(|m| (m.channel.as_str(), m.params.to_string()))
                .find(|(c, text)| *c == channel && text.contains(needle))
                .map(|(_, text)| text)
        };
        let what = format!("a message with {needle:?} in {channel}");
        let messages = eventually(
            PATIENCE,
            &what,
            || async { self.fake.messages() },
            |ms| found(ms).is_some(),
        )
        .await;
        found(&messages).expect("eventually returns once a message matches")
    }

    /// Waits until an ephemeral reply to `user` contains `needle`.
    async fn wait_private(&self, user: &str, needle: &str) -> String {
        let needle = needle.to_owned();
        let user = user.to_owned();
        let calls = self
            .fake
            .wait_until(PATIENCE, move |calls| {
                calls.iter().any(|c| {
                    c.method == "chat.postEphemeral"
                        && c.param("user") == Some(user.as_str())
                        && c.all_text().contains(&needle)
                })
            })
            .await;
        calls
            .iter()
            .rev()
            .find(|c| c.method == "chat.postEphemeral")
            .map(|c| c.all_text())
            .unwrap_or_default()
    }

    async fn timeline_kinds(&self, number: u64) -> Vec<String> {
        self.engine()
            .store()
            .timeline(number)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// Waits until the incident's timeline has an entry of `kind` whose text has `needle`.
    async fn wait_timeline(&self, number: u64, kind: &str, needle: &str) {
        eventually(
            PATIENCE,
            &format!("a {kind} entry with {needle:?} in INC-{number}'s timeline"),
            || async { self.engine().store().timeline(number).await.unwrap() },
            |entries| {
                entries
                    .iter()
                    .any(|e| e.kind == kind && e.text.contains(needle))
            },
        )
        .await;
    }
}

fn console(user: &str, channel: &str, text: &str) -> Invocation {
    Invocation {
        platform: "console",
        user: Subject::parse(&format!("console:{user}")).unwrap(),
        groups: Vec::new(),
        groups_unknown: false,
        channel: channel.into(),
        text: text.into(),
        delivery_id: None,
        origin: None,
    }
}

opsbot_tests::both_databases!(
    "inc_",
    open_to_close_in_slack_with_every_step_on_the_timeline,
    |db, test| async move {
        let Some(bot) = Bot::start(db, test, config(None)).await else {
            return;
        };
        // `/incident` is `/ops incident`.
        bot.slash(
            "/incident",
            "U0OLIVE",
            "C0OPS",
            "open P1 checkout returns 500 --service conea-api",
            "inc.1",
        )
        .await;
        let opened = bot.wait_message("C0OPS", "INC-1 opened").await;
        assert!(opened.contains("<#C0INC0001>"), "{opened}");

        // The channel: named, topic set, requester and the on-call group invited, card pinned.
        let channel = bot.fake.channels().remove(0);
        assert_eq!(channel.name, "inc-1-checkout-returns-500");
        assert!(
            channel.topic.contains("INC-1 P1 · investigating"),
            "{channel:?}"
        );
        assert!(
            channel.topic.contains("checkout returns 500"),
            "{channel:?}"
        );
        for member in ["U0OLIVE", "U0OTTO"] {
            assert!(channel.members.iter().any(|m| m == member), "{channel:?}");
        }
        assert_eq!(channel.pins.len(), 1, "{channel:?}");
        let card = bot
            .wait_message("C0INC0001", "INC-1 · P1 · investigating")
            .await;
        assert!(card.contains("Take command"), "{card}");
        let announced = bot.wait_message("C0INCIDENTS", "<#C0INC0001>").await;
        assert!(announced.contains("<!subteam^S0ONCALL>"), "{announced}");

        // Inside the channel the incident is implied.
        bot.slash("/ops", "U0OLIVE", "C0INC0001", "incident ack", "inc.2")
            .await;
        bot.wait_timeline(1, "ack", "escalation stopped").await;
        bot.slash(
            "/ops",
            "U0OLIVE",
            "C0INC0001",
            "incident note connection pool exhausted since 10:02",
            "inc.3",
        )
        .await;
        bot.wait_timeline(1, "note", "pool exhausted").await;
        bot.slash("/ops", "U0OLIVE", "C0INC0001", "status conea-api", "inc.4")
            .await;
        bot.wait_timeline(1, "command", "status deployment/conea-api")
            .await;

        // A scale with approval, inside the channel: asked, approved, executed, all on the timeline.
        bot.slash("/ops", "U0OLIVE", "C0INC0001", "scale conea-api 5", "inc.5")
            .await;
        bot.wait_timeline(1, "approval", "requested").await;
        let pending = bot.engine().store().pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        let card_ts = pending[0].card.as_ref().unwrap().id.clone();
        let click = slack_fake::button_click(
            SECRET,
            "approve",
            &pending[0].id,
            "U0ALICE",
            "C0INC0001",
            &card_ts,
            "1700000100.000001",
        );
        assert_eq!(bot.send(&click).await.status(), 200);
        bot.wait_timeline(1, "approval", "executed").await;
        assert_eq!(bot.core.replicas("production", "conea-api"), 5);

        bot.slash("/ops", "U0OLIVE", "C0INC0001", "incident sev P2", "inc.6")
            .await;
        bot.wait_timeline(1, "severity", "P1 → P2").await;
        eventually(
            PATIENCE,
            "the channel's topic to show the new severity",
            || async { bot.fake.channels() },
            |channels| channels[0].topic.contains("INC-1 P2"),
        )
        .await;
        bot.slash(
            "/ops",
            "U0OLIVE",
            "C0INC0001",
            "incident status monitoring rolled back to revision 41",
            "inc.7",
        )
        .await;
        bot.wait_timeline(1, "status", "monitoring: rolled back")
            .await;
        bot.slash(
            "/ops",
            "U0OLIVE",
            "C0INC0001",
            "incident note --follow-up alert on pool saturation",
            "inc.8",
        )
        .await;
        bot.wait_timeline(1, "follow_up", "pool saturation").await;

        // On-call may not close a major incident (the policy asks for a lead), also not after
        // lowering its severity: close is judged at the most severe it has been (P1). Told
        // privately, nothing closed.
        bot.slash("/ops", "U0OLIVE", "C0INC0001", "incident sev P4", "inc.8b")
            .await;
        bot.wait_timeline(1, "severity", "P2 → P4").await;
        bot.slash("/ops", "U0OLIVE", "C0INC0001", "incident close", "inc.9")
            .await;
        bot.wait_private("U0OLIVE", "Not allowed").await;
        assert!(
            bot.engine()
                .store()
                .incident(1)
                .await
                .unwrap()
                .unwrap()
                .open
        );

        bot.slash(
            "/ops",
            "U0ALICE",
            "C0INC0001",
            "incident close --resolution rolled back the deploy",
            "inc.10",
        )
        .await;
        bot.wait_timeline(1, "closed", "rolled back the deploy")
            .await;
        bot.wait_message("C0INC0001", "INC-1 closed").await;
        eventually(
            PATIENCE,
            "the incident's channel to be archived",
            || async { bot.fake.channels() },
            |channels| channels[0].archived,
        )
        .await;
        bot.wait_message("C0INCIDENTS", "closed").await;
        let inc = bot.engine().store().incident(1).await.unwrap().unwrap();
        assert!(!inc.open);
        assert!(inc.acked.is_some() && inc.resolved.is_some() && inc.closed.is_some());

        let kinds = bot.timeline_kinds(1).await;
        for kind in [
            "opened",
            "channel",
            "ack",
            "note",
            "command",
            "approval",
            "severity",
            "status",
            "follow_up",
            "closed",
        ] {
            assert!(
                kinds.iter().any(|k| k == kind),
                "{kind} missing from {kinds:?}"
            );
        }

        // The export, asked for elsewhere with --id: every command run in the channel is in it.
        bot.slash(
            "/ops",
            "U0ALICE",
            "C0OPS",
            "incident export --id INC-1",
            "inc.11",
        )
        .await;
        let export = bot.wait_message("C0OPS", "Postmortem draft").await;
        for needle in [
            "# INC-1",
            "## Severity history",
            "## Open follow-ups",
            "alert on pool saturation",
            "status deployment/conea-api",
            "scale deployment/conea-api 5",
            "executed",
            "rolled back the deploy",
        ] {
            assert!(
                export.contains(needle),
                "{needle} not in the export: {export}"
            );
        }

        // Every timeline entry is in the audit log too, and the chain verifies.
        let audited = bot
            .engine()
            .store()
            .tail(10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.entry.kind.as_str() == "incident")
            .count();
        assert_eq!(audited, kinds.len());
        assert!(bot.engine().store().verify().await.unwrap().is_ok());
        let metrics = bot.engine().metrics().render();
        assert!(
            metrics.contains("opsbot_incident_time_to_ack_seconds_count{severity=\"P1\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("opsbot_open_incidents{severity=\"P2\"} 0"),
            "{metrics}"
        );
    }
);

opsbot_tests::both_databases!(
    "inc_",
    the_policy_sees_the_severity,
    |db, test| async move {
        let Some(bot) = Bot::start(db, test, config(None)).await else {
            return;
        };
        // An engineer may open a P3 but not a P1.
        bot.slash(
            "/ops",
            "U0BOB",
            "C0OPS",
            "incident open P1 all down",
            "pol.1",
        )
        .await;
        let denied = bot.wait_private("U0BOB", "Not allowed").await;
        assert!(denied.contains("incident.open"), "{denied}");
        assert!(bot.engine().store().incident(1).await.unwrap().is_none());
        // What a feature acts on decides, not a typed namespace: an incident has none.
        bot.slash(
            "/ops",
            "U0BOB",
            "C0OPS",
            "incident open P1 all down -n staging",
            "pol.1b",
        )
        .await;
        bot.fake
            .wait_until(PATIENCE, |calls| {
                calls
                    .iter()
                    .filter(|c| {
                        c.method == "chat.postEphemeral"
                            && c.param("user") == Some("U0BOB")
                            && c.all_text().contains("Not allowed")
                    })
                    .count()
                    == 2
            })
            .await;
        assert!(bot.engine().store().incident(1).await.unwrap().is_none());
        bot.slash(
            "/ops",
            "U0BOB",
            "C0OPS",
            "incident open P3 slow search",
            "pol.2",
        )
        .await;
        bot.wait_message("C0OPS", "INC-1 opened").await;
        // Not in an incident channel and no --id: told privately which.
        bot.slash("/ops", "U0BOB", "C0OPS", "incident timeline", "pol.3")
            .await;
        bot.wait_private("U0BOB", "--id INC-N").await;
    }
);

opsbot_tests::both_databases!(
    "inc_",
    a_missing_scope_still_records_the_incident,
    |db, test| async move {
        let Some(bot) = Bot::start(db, test, config(None)).await else {
            return;
        };
        bot.fake
            .deny_scope("conversations.create", "channels:manage");
        bot.slash(
            "/ops",
            "U0OLIVE",
            "C0OPS",
            "incident open P2 queue backlog",
            "scope.1",
        )
        .await;
        let reply = bot.wait_message("C0OPS", "INC-1 opened").await;
        assert!(reply.contains("channels:manage"), "{reply}");
        let inc = bot.engine().store().incident(1).await.unwrap().unwrap();
        assert!(inc.open && inc.channel.is_none());
        assert!(bot.fake.channels().is_empty());

        // A channel but no pins: the incident and its channel are there, the reply says pins:write.
        bot.fake.clear_failures();
        bot.fake.deny_scope("pins.add", "pins:write");
        bot.slash(
            "/ops",
            "U0OLIVE",
            "C0OPS",
            "incident open P2 queue backlog",
            "scope.2",
        )
        .await;
        let reply = bot.wait_message("C0OPS", "INC-2 opened").await;
        assert!(reply.contains("pins:write"), "{reply}");
        assert_eq!(bot.fake.channels()[0].name, "inc-2-queue-backlog");
        // A taken name gets a suffix.
        bot.fake.clear_failures();
        bot.fake.add_channel("C0TAKEN", "inc-3-queue-backlog");
        bot.slash(
            "/ops",
            "U0OLIVE",
            "C0OPS",
            "incident open P2 queue backlog",
            "scope.3",
        )
        .await;
        bot.wait_message("C0OPS", "INC-3 opened").await;
        assert!(
            bot.fake
                .channels()
                .iter()
                .any(|c| c.name == "inc-3-queue-backlog-2")
        );
    }
);

opsbot_tests::both_databases!(
    "inc_",
    a_pushpin_reaction_lands_on_the_timeline,
    |db, test| async move {
        let Some(bot) = Bot::start(db, test, config(None)).await else {
            return;
        };
        bot.slash(
            "/ops",
            "U0OLIVE",
            "C0OPS",
            "incident open P2 checkout slow",
            "pin.1",
        )
        .await;
        bot.wait_message("C0OPS", "INC-1 opened").await;
        let ts = bot
            .fake
            .human_message("C0INC0001", "U0BOB", "found it: the pool max is 10");
        let req = slack_fake::reaction_added(SECRET, "U0ALICE", "C0INC0001", &ts, "pushpin");
        assert_eq!(bot.send(&req).await.status(), 200);
        bot.wait_timeline(1, "pinned", "found it: the pool max is 10")
            .await;
        // Other reactions are not pins.
        let req = slack_fake::reaction_added(SECRET, "U0ALICE", "C0INC0001", &ts, "eyes");
        assert_eq!(bot.send(&req).await.status(), 200);
        let pinned = |kinds: &[String]| kinds.iter().filter(|k| *k == "pinned").count();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pinned(&bot.timeline_kinds(1).await), 1);

        // Slack retries an event whose first delivery failed (opsbot was restarting, say):
        // the retry is handled, and a retry of one handled already is not handled again.
        let ts2 = bot
            .fake
            .human_message("C0INC0001", "U0BOB", "rolled back the pool change");
        let mut retry = slack_fake::reaction_added(SECRET, "U0ALICE", "C0INC0001", &ts2, "pushpin");
        retry.retry_num = Some(1);
        assert_eq!(bot.send(&retry).await.status(), 200);
        bot.wait_timeline(1, "pinned", "rolled back the pool change")
            .await;
        retry.retry_num = Some(2);
        assert_eq!(bot.send(&retry).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pinned(&bot.timeline_kinds(1).await), 2);
    }
);

/// A PagerDuty Events API v2 stand-in: records every event, answers 202 as PagerDuty does.
async fn pagerduty() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v2/enqueue",
        post(move |axum::Json(body): axum::Json<Value>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(body);
                (
                    axum::http::StatusCode::ACCEPTED,
                    axum::Json(serde_json::json!({
                        "status": "success", "message": "Event processed",
                        "dedup_key": "x"
                    })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

opsbot_tests::both_databases!(
    "inc_",
    escalation_fires_on_the_clock_and_stops_with_a_commander,
    |db, test| async move {
        let (url, paged) = pagerduty().await;
        let pd = PagerDutyConfig {
            url,
            routing_key: serde_yaml_secret("R0UTINGKEY"),
        };
        let Some(bot) = Bot::start(db, test, config(Some(pd))).await else {
            return;
        };
        let engine = bot.engine().clone();
        engine
            .handle(console("olive", "console", "incident open P1 db down"))
            .await;
        let clock = bot.incidents.clock();
        assert_eq!(bot.incidents.sweep().await, 0, "nothing due yet");

        // The deadline passes: overdue, and the first step (on-call, paged).
        clock.advance(Duration::from_secs(301));
        assert_eq!(bot.incidents.sweep().await, 2);
        bot.wait_timeline(1, "escalation", "step 1 of 3").await;
        bot.wait_timeline(1, "page", "PagerDuty triggered").await;
        {
            let paged = paged.lock().unwrap();
            assert_eq!(paged.len(), 1);
            assert_eq!(paged[0]["event_action"], "trigger");
            assert_eq!(paged[0]["routing_key"], "R0UTINGKEY");
            assert_eq!(paged[0]["dedup_key"], "opsbot-INC-1");
            assert_eq!(paged[0]["payload"]["severity"], "critical");
        }
        // Pinged in the channel and in the announcement channel.
        let out = bot.core.out.text();
        assert!(out.contains("escalated (step 1 of 3)"), "{out}");
        bot.wait_message("C0INCIDENTS", "escalated (step 1 of 3)")
            .await;

        clock.advance(Duration::from_secs(600));
        assert_eq!(bot.incidents.sweep().await, 1);
        bot.wait_timeline(1, "escalation", "step 2 of 3").await;
        assert_eq!(bot.incidents.sweep().await, 0, "each step fires once");

        // A commander stops the rest.
        engine
            .handle(console(
                "alice",
                "inc-1-db-down",
                "incident assign commander @alice",
            ))
            .await;
        bot.wait_timeline(1, "ack", "console:alice has command")
            .await;
        clock.advance(Duration::from_secs(3000));
        // Only the hourly status reminder is left.
        assert_eq!(bot.incidents.sweep().await, 1);
        bot.wait_timeline(1, "reminder", "status update").await;
        let fired = engine.store().fired_timers(1).await.unwrap();
        let kinds: Vec<(&str, u32)> = fired.iter().map(|(k, s, _)| (k.as_str(), *s)).collect();
        assert_eq!(
            kinds,
            [("ack", 0), ("escalate", 0), ("escalate", 1), ("remind", 0)]
        );

        // Closing resolves the page.
        engine
            .handle(console(
                "alice",
                "inc-1-db-down",
                "incident close --resolution failed over",
            ))
            .await;
        bot.wait_timeline(1, "page", "PagerDuty resolved").await;
        let paged = paged.lock().unwrap();
        assert_eq!(paged.last().unwrap()["event_action"], "resolve");
        assert_eq!(paged.last().unwrap()["dedup_key"], "opsbot-INC-1");
    }
);

opsbot_tests::both_databases!(
    "inc_",
    a_restart_in_the_middle_of_an_escalation_goes_on,
    |db, test| async move {
        let Some(bot) = Bot::start(db, test, config(None)).await else {
            return;
        };
        bot.engine()
            .handle(console(
                "olive",
                "console",
                "incident open P2 payments failing",
            ))
            .await;
        bot.incidents.clock().advance(Duration::from_secs(301));
        assert_eq!(bot.incidents.sweep().await, 2);
        bot.incidents.stop();

        // A new process: the timers are rows, the next step is still due at its time.
        let Bot { core, fake, .. } = bot;
        let core = core.restart().await;
        core.session("olive");
        let incidents = Incidents::new(core.engine.clone(), config(None), Clock::real());
        incidents.start();
        assert_eq!(
            incidents.sweep().await,
            0,
            "what fired before does not fire again"
        );
        // The first process's clock had moved 301 s; this one starts from real time again.
        incidents.clock().advance(Duration::from_secs(902));
        assert_eq!(incidents.sweep().await, 1);
        assert_eq!(incidents.sweep().await, 0);
        let fired = core.engine.store().fired_timers(1).await.unwrap();
        let kinds: Vec<(&str, u32)> = fired.iter().map(|(k, s, _)| (k.as_str(), *s)).collect();
        assert_eq!(kinds, [("ack", 0), ("escalate", 0), ("escalate", 1)]);
        // Fired by two different processes.
        assert_ne!(fired[0].2, fired[2].2);
        drop(fake);
    }
);

opsbot_tests::both_databases!(
    "inc_",
    two_replicas_open_at_once_and_fire_each_timer_once,
    |db, test| async move {
        let Some(bot) = Bot::start(db, test, config(None)).await else {
            return;
        };
        let a = bot.engine().clone();
        let b = bot.core.replica().await;
        b.register_sink("console", bot.core.sink.clone());
        let other = Incidents::new(b.clone(), config(None), Clock::real());
        other.start();

        let mut opens = Vec::new();
        for i in 0..6 {
            let (a, b) = (a.clone(), b.clone());
            opens.push(tokio::spawn(async move {
                let text = format!("incident open P3 replica race {i}");
                a.handle(console("olive", "console", &text)).await;
                b.handle(console("otto", "console", &text)).await;
            }));
        }
        for o in opens {
            o.await.unwrap();
        }
        let list = a.store().list_incidents(false, None, 100).await.unwrap();
        let mut numbers: Vec<u64> = list.iter().map(|i| i.number).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=12).collect::<Vec<u64>>());

        // Both replicas sweep at the same moment: every due timer fires exactly once.
        bot.incidents.clock().advance(Duration::from_secs(301));
        other.clock().advance(Duration::from_secs(301));
        let (x, y) = tokio::join!(bot.incidents.sweep(), other.sweep());
        assert_eq!(x + y, 24, "12 deadlines and 12 first steps");
        for n in 1..=12 {
            let fired = a.store().fired_timers(n).await.unwrap();
            let mut kinds: Vec<(&str, u32)> =
                fired.iter().map(|(k, s, _)| (k.as_str(), *s)).collect();
            kinds.sort_unstable();
            assert_eq!(kinds, [("ack", 0), ("escalate", 0)], "INC-{n}");
        }
        other.stop();
    }
);

/// A secret as the configuration would hold it.
fn serde_yaml_secret(value: &str) -> opsbot::config::Secret {
    serde_json::from_value(Value::String(value.to_owned())).unwrap()
}

opsbot_tests::both_databases!(
    "inc_",
    open_incident_from_an_alert_links_the_group,
    |db, test| async move {
        let Some(bot) = Bot::start(db, test, config(None)).await else {
            return;
        };
        let body = serde_json::json!({
            "version": "4", "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}", "status": "firing",
            "receiver": "opsbot", "groupLabels": {"alertname": "KubePodCrashLooping"},
            "commonLabels": {"alertname": "KubePodCrashLooping", "severity": "critical",
                             "namespace": "production"},
            "commonAnnotations": {"summary": "conea-api restarts"}, "externalURL": "http://am",
            "alerts": [{"status": "firing", "labels": {"alertname": "KubePodCrashLooping",
                "severity": "critical", "namespace": "production", "pod": "conea-api-1"},
                "annotations": {}, "startsAt": "2026-12-04T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom", "fingerprint": "f1"}]
        });
        let n = opsbot::alerts::payload::Notification::parse(body.to_string().as_bytes()).unwrap();
        let store = bot.engine().store();
        store
            .record_notification(
                &n,
                &["slack:C0ALERTS".to_owned()],
                Duration::from_secs(6 * 3600),
                jiff::Timestamp::now(),
            )
            .await
            .unwrap();
        let group = store
            .alert_group(&n.group_key, "slack:C0ALERTS")
            .await
            .unwrap()
            .unwrap();
        // The button on the alert's message, clicked by the on-call engineer.
        let command = opsbot::alerts::render::open_incident_command(&group);
        assert!(
            command.starts_with("open P1 KubePodCrashLooping"),
            "{command}"
        );
        let click = slack_fake::button_click(
            SECRET,
            "incident",
            &command,
            "U0OLIVE",
            "C0ALERTS",
            "1700000000.000042",
            "1700000200.000001",
        );
        assert_eq!(bot.send(&click).await.status(), 200);
        bot.wait_message("C0ALERTS", "INC-1 opened").await;
        bot.wait_timeline(
            1,
            "alert",
            "KubePodCrashLooping (1 firing, severity critical)",
        )
        .await;
        let inc = store.incident(1).await.unwrap().unwrap();
        assert_eq!(inc.severity, Severity::P1);
        assert_eq!(inc.title, "KubePodCrashLooping");
        // The same click delivered again opens nothing more.
        assert_eq!(bot.send(&click).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.incident(2).await.unwrap().is_none());
    }
);
