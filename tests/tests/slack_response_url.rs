//! Replies in channels the bot is not a member of (a DM with someone else, a private channel):
//! Slack refuses `chat.postMessage` there, so the reply goes through the slash command's
//! `response_url`. The whole bot (real engine, SQLite, kubesim) behind the HTTP server on port
//! 0, the Web API and the response URLs served by the fake Slack.

use std::sync::Arc;
use std::time::Duration;

use opsbot::engine::Engine;
use opsbot::slack::{RetryPolicy, SlackConfig, SlackSink};
use opsbot_tests::bot::{BotOptions, Db, TestBot};
use opsbot_tests::eventually;
use opsbot_tests::slack_fake::{self, Call, SlackFake};

const TOKEN: &str = "xoxb-resp-token";
const SECRET: &str = "resp-signing-secret";
/// Wait limit for things that happen in the background (not an assertion on speed).
const PATIENCE: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
version: 1
roles:
  lead: { members: ["slack-group:SLEADS"] }
  eng:  { members: ["slack:UENG"] }
rules:
  - name: read
    roles: ["*"]
    actions: [status, pods, events, logs]
  - name: eng-api
    roles: [eng]
    actions: [scale, restart]
    namespaces: [api]
  - name: prod-scale
    roles: [eng, lead]
    actions: [scale]
    namespaces: [production]
    when: { replicas: { min: 1, max: 30 } }
    approval: { roles: [lead], count: 1, ttl: 2h, allow_self: false }
"#;

struct Bot {
    base: String,
    engine: Engine,
    fake: SlackFake,
    sink: SlackSink,
    http: reqwest::Client,
    /// kubesim, the database and the engine, as in the console tests.
    core: TestBot,
}

impl Bot {
    async fn start() -> Bot {
        let core = TestBot::start(
            Db::Sqlite,
            "slack_response_url",
            POLICY,
            BotOptions::default(),
        )
        .await
        .expect("SQLite is never skipped");
        let engine = core.engine.clone();

        let fake = SlackFake::start(TOKEN).await;
        fake.set_user_groups(&[("SLEADS", &["ULEAD"])]);
        let mut cfg = SlackConfig::new(TOKEN, SECRET).with_api_url(fake.api_url());
        cfg.retry = RetryPolicy {
            base_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        // What `opsbot::slack::router` does, keeping the sink to reach its response URLs.
        let sink = SlackSink::new(&cfg);
        engine.register_sink("slack", Arc::new(sink.clone()));
        let app = opsbot::server::base_router(engine.clone()).merge(opsbot::slack::router_with(
            Arc::new(engine.clone()),
            sink.web().clone(),
            &cfg,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Bot {
            base,
            engine,
            fake,
            sink,
            http: reqwest::Client::new(),
            core,
        }
    }

    /// Sends a slash command (with a response URL of the fake) and checks the ack.
    async fn command(&self, user: &str, channel: &str, text: &str, trigger: &str) {
        let req = self
            .fake
            .slash_command(SECRET, "/ops", text, user, channel, trigger);
        let res = req.send(&self.http, &self.base).await;
        assert_eq!(res.status(), 200);
        let ack: serde_json::Value = res.json().await.unwrap();
        assert!(
            ack["text"].as_str().unwrap().contains("Working on"),
            "{ack}"
        );
    }

    fn replicas(&self, ns: &str, name: &str) -> i64 {
        self.core.replicas(ns, name)
    }

    /// The audit log as (kind, outcome, detail).
    async fn audit(&self) -> Vec<(String, String, String)> {
        self.engine
            .store()
            .tail(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.entry.kind.as_str().to_owned(),
                    r.entry.outcome.unwrap_or_default(),
                    r.entry.detail.to_string(),
                )
            })
            .collect()
    }

    /// Waits until the audit log satisfies `pred`, and returns it (fails the test after
    /// `PATIENCE`).
    async fn wait_audit(
        &self,
        pred: impl Fn(&[(String, String, String)]) -> bool,
    ) -> Vec<(String, String, String)> {
        eventually(
            PATIENCE,
            "the audit log to show it",
            || self.audit(),
            |a| pred(a),
        )
        .await
    }

    /// The approval card once it went through a response URL, and its approval id.
    async fn approval_card(&self) -> (Call, String) {
        let calls = self
            .fake
            .wait_until(PATIENCE, |calls| {
                calls
                    .iter()
                    .any(|c| c.method == "response_url" && c.all_text().contains("Approve"))
            })
            .await;
        let card = response_calls(&calls)
            .into_iter()
            .find(|c| c.all_text().contains("Approve"))
            .expect("an approval card")
            .clone();
        let approval_id = card.first_button_value().expect("an approval id");
        (card, approval_id)
    }

    /// No response URL (nor any part of its path) anywhere in the audit log.
    async fn assert_no_url_in_audit(&self) {
        let all = self.engine.store().tail(1000).await.unwrap();
        let dump = serde_json::to_string(&all).unwrap();
        assert!(!dump.contains("/response/"), "{dump}");
        assert!(!dump.contains(&self.fake.addr.to_string()), "{dump}");
    }
}

fn undelivered(audit: &[(String, String, String)]) -> Vec<&str> {
    audit
        .iter()
        .filter(|(k, o, _)| k == "delivery" && o == "undelivered")
        .map(|(_, _, d)| d.as_str())
        .collect()
}

fn response_calls(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| c.method == "response_url")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_in_a_dm_the_bot_is_not_in_replies_through_the_response_url_without_spending_it_on_progress()
 {
    let bot = Bot::start().await;
    bot.fake.refuse_channel("D0DM", "not_in_channel");
    let before = bot.replicas("api", "rust-webapi");
    assert_ne!(before, 4);
    bot.command("UENG", "D0DM", "scale rust-webapi 4 -n api", "resp.scale.1")
        .await;

    let done = format!("{before} → 4");
    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| {
            calls.iter().any(|c| {
                c.method == "response_url" && c.error.is_none() && c.all_text().contains(&done)
            })
        })
        .await;
    assert_eq!(bot.replicas("api", "rust-webapi"), 4);
    // Slack refused the Web API in that channel...
    let posts: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "chat.postMessage")
        .collect();
    assert!(!posts.is_empty());
    assert!(
        posts
            .iter()
            .all(|c| c.error.as_deref() == Some("not_in_channel"))
    );
    // ...so the message went through the command's response URL: posted once, then replaced
    // in place with the final state, all visible in the channel, no bot token. Its five uses
    // are not spent on progress ticks.
    let via = response_calls(&calls);
    assert_eq!(via.len(), 2, "the post and the outcome only: {via:?}");
    assert!(
        via.iter()
            .all(|c| c.status == 200 && c.error.is_none() && c.token.is_none())
    );
    assert!(via.iter().all(|c| c.response_id == via[0].response_id));
    assert!(
        via.iter()
            .all(|c| c.params["response_type"] == "in_channel")
    );
    assert_eq!(via[0].params["replace_original"], false);
    assert_eq!(via[1].params["replace_original"], true);
    assert!(via[0].all_text().contains("Running"));
    assert!(via[1].all_text().contains(&done));
    assert_eq!(via[0].params["blocks"][0]["type"], "header");
    // In the channel: one message, in its final state.
    let messages = bot.fake.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].channel, "D0DM");
    assert_eq!(messages[0].updates, via.len() - 1);
    assert!(
        messages[0].params.to_string().contains(&done),
        "{messages:?}"
    );

    let audit = bot
        .wait_audit(|a| a.iter().any(|(k, o, _)| k == "execution" && o == "ok"))
        .await;
    assert!(undelivered(&audit).is_empty(), "{audit:?}");
    bot.assert_no_url_in_audit().await;

    // A reply to someone else in a channel the bot is in still uses the Web API.
    bot.command(
        "UENG",
        "C0OPS",
        "status rust-webapi -n api",
        "resp.status.1",
    )
    .await;
    let calls = bot.fake.wait_for_ok("chat.postMessage", 1, PATIENCE).await;
    assert_eq!(calls.last().unwrap().param("channel"), Some("C0OPS"));
    assert_eq!(response_calls(&bot.fake.calls()).len(), via.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_card_where_the_bot_cannot_post_is_updated_through_the_clicks_response_url() {
    let bot = Bot::start().await;
    bot.fake.refuse_channel("G0PRIV", "not_in_channel");
    let before = bot.replicas("production", "conea-api");
    assert_ne!(before, 5);
    bot.command(
        "UENG",
        "G0PRIV",
        "scale conea-api 5 -n production",
        "resp.appr.1",
    )
    .await;

    // The approval card went through the response URL.
    let (card, approval_id) = bot.approval_card().await;
    assert_eq!(card.status, 200);
    let card_ts = bot.fake.messages()[0].ts.clone();
    let sent = response_calls(&bot.fake.calls()).len();

    // 31 minutes later (on the sink's clock) the command's URL is no longer valid, and no newer
    // command came from that channel. A lead clicks Approve: the click brings its own URL, which
    // replaces the card.
    bot.sink
        .web()
        .response_urls()
        .advance_clock(Duration::from_secs(31 * 60));
    let click_url = bot.fake.message_response_url("G0PRIV", &card_ts);
    let click = slack_fake::button_click_with_response_url(
        SECRET,
        "approve",
        &approval_id,
        "ULEAD",
        ("G0PRIV", &card_ts),
        "1700000004.000001",
        &click_url,
    );
    assert_eq!(click.send(&bot.http, &bot.base).await.status(), 200);

    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| {
            calls.iter().any(|c| {
                c.method == "response_url"
                    && c.error.is_none()
                    && c.all_text().contains("Approved and executed")
            })
        })
        .await;
    let audit = bot
        .wait_audit(|a| a.iter().any(|(k, _, _)| k == "execution") && !undelivered(a).is_empty())
        .await;
    assert_eq!(bot.replicas("production", "conea-api"), 5, "{audit:?}");
    // The card's final state arrived in place, through the click's URL.
    let card_now = bot
        .fake
        .messages()
        .into_iter()
        .find(|m| m.ts == card_ts)
        .unwrap();
    assert!(
        card_now
            .params
            .to_string()
            .contains("Approved and executed")
    );
    let through_click = response_calls(&calls)
        .into_iter()
        .filter(|c| c.response_id.as_deref() != card.response_id.as_deref())
        .count();
    assert!(through_click >= 1);
    let details = undelivered(&audit);
    assert!(
        !details.iter().any(|d| d.contains("expired or is used up")),
        "no card update was lost: {details:?}"
    );
    // New posts in that channel: refused by the Web API, no response URL to fall back on.
    assert!(
        details
            .iter()
            .any(|d| d.contains("chat.postMessage refused: not_in_channel")),
        "{details:?}"
    );
    // Nothing more went to the expired URL.
    let to_command_url = response_calls(&bot.fake.calls())
        .into_iter()
        .filter(|c| c.response_id == card.response_id)
        .count();
    assert_eq!(to_command_url, sent);
    bot.assert_no_url_in_audit().await;
}

/// A private reply where the bot cannot post goes through the response URL of the request it
/// answers, which Slack shows to that request's author alone: never through someone else's
/// (its ephemeral response would show to them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_reply_where_the_bot_cannot_post_goes_to_its_own_author_only() {
    let bot = Bot::start().await;
    bot.fake.refuse_channel("G0PRIV", "not_in_channel");
    bot.command(
        "UENG",
        "G0PRIV",
        "scale conea-api 5 -n production",
        "resp.priv.1",
    )
    .await;
    let (card, approval_id) = bot.approval_card().await;
    let card_ts = bot.fake.messages()[0].ts.clone();
    let ephemeral = |calls: &[Call]| -> Vec<Call> {
        response_calls(calls)
            .into_iter()
            .filter(|c| c.params["response_type"] == "ephemeral")
            .cloned()
            .collect()
    };

    // UOUT may not approve: told so through the click's own URL, not UENG's command's.
    let click_url = bot.fake.message_response_url("G0PRIV", &card_ts);
    let click_id = click_url.rsplit('/').next().unwrap().to_owned();
    let click = slack_fake::button_click_with_response_url(
        SECRET,
        "approve",
        &approval_id,
        "UOUT",
        ("G0PRIV", &card_ts),
        "1700000005.000001",
        &click_url,
    );
    assert_eq!(click.send(&bot.http, &bot.base).await.status(), 200);
    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| !ephemeral(calls).is_empty())
        .await;
    let told = ephemeral(&calls);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].response_id.as_deref(), Some(click_id.as_str()));

    // UOUT's refused command: through UOUT's command's URL, not the card's (UENG's).
    bot.command(
        "UOUT",
        "G0PRIV",
        "restart rust-webapi -n api",
        "resp.priv.2",
    )
    .await;
    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| ephemeral(calls).len() == 2)
        .await;
    let told = ephemeral(&calls);
    assert!(told[1].all_text().contains("Not allowed"), "{told:?}");
    assert_ne!(told[1].response_id, card.response_id);
    assert_ne!(told[1].response_id.as_deref(), Some(click_id.as_str()));
    // Nothing private ever went through UENG's URL.
    assert!(told.iter().all(|c| c.response_id != card.response_id));
}
