//! The Slack HTTP endpoints on port 0, with signed requests exactly as Slack sends them, in
//! front of a small double of the engine (it records what reaches the pipeline and answers
//! through the real Slack sink, against the fake Slack Web API).

use std::sync::Arc;
use std::time::Duration;

use opsbot::engine::RejectionKind;
use opsbot::slack::{SlackConfig, SlackSink};
use opsbot_tests::pipeline::{Recorder, Seen};
use opsbot_tests::slack_fake::{self, Failure, SignedRequest, SlackFake};
use tokio::sync::mpsc;

const TOKEN: &str = "xoxb-test-token";
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

struct Bot {
    base: String,
    fake: SlackFake,
    seen: mpsc::UnboundedReceiver<Seen>,
    http: reqwest::Client,
}

impl Bot {
    async fn start() -> Bot {
        let fake = SlackFake::start(TOKEN).await;
        fake.set_user_groups(&[("SOPS", &["U1", "U3"]), ("SDEV", &["U2"])]);
        fake.set_deleted_user_groups(&[("SGONE", &["U1", "U2"])]);
        let cfg = SlackConfig::new(TOKEN, SECRET).with_api_url(fake.api_url());
        let sink = SlackSink::new(&cfg);
        let (tx, seen) = mpsc::unbounded_channel();
        let double = Arc::new(Recorder::new(tx, sink.clone()));
        let app = opsbot::slack::router_with(double, sink.web().clone(), &cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Bot {
            base,
            fake,
            seen,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: &SignedRequest) -> reqwest::Response {
        req.send(&self.http, &self.base).await
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("something reached the pipeline")
            .expect("pipeline double alive")
    }

    /// Nothing else reached the pipeline: sends a harmless marker command and checks it is
    /// the very next thing seen.
    async fn assert_nothing_else(&mut self) {
        let marker =
            slack_fake::slash_command(SECRET, "/ops", "marker", "U9", "C9", "marker.trigger");
        assert_eq!(self.send(&marker).await.status(), 200);
        match self.next().await {
            Seen::Handle(inv) if inv.text == "marker" => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_signed_slash_command_is_acked_at_once_and_run_with_the_users_groups() {
    let mut bot = Bot::start().await;
    let req = slack_fake::slash_command(
        SECRET,
        "/ops",
        "scale api 5 -n production",
        "U1",
        "C1",
        "111.222.abc",
    );
    let res = bot.send(&req).await;
    assert_eq!(res.status(), 200);
    let ack: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert_eq!(
        ack["text"],
        "⏳ Working on `/ops scale api 5 -n production`…"
    );

    match bot.next().await {
        Seen::Handle(inv) => {
            assert_eq!(inv.platform, "slack");
            assert_eq!(inv.user.as_str(), "slack:U1");
            let groups: Vec<&str> = inv.groups.iter().map(|g| g.as_str()).collect();
            assert_eq!(groups, ["slack-group:SOPS"]);
            assert_eq!(inv.channel, "C1");
            assert_eq!(inv.text, "scale api 5 -n production");
            assert_eq!(inv.delivery_id.as_deref(), Some("slack:111.222.abc"));
        }
        other => panic!("{other:?}"),
    }
    let posts = bot
        .fake
        .wait_for_ok("chat.postMessage", 1, Duration::from_secs(10))
        .await;
    assert_eq!(posts[0].param("channel"), Some("C1"));
    assert!(
        posts[0]
            .all_text()
            .contains("ran scale api 5 -n production")
    );
    let lookups = bot.fake.calls_to("usergroups.list");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].param("include_users"), Some("true"));
}

#[tokio::test]
async fn forged_stale_altered_and_oversized_requests_run_nothing() {
    let mut bot = Bot::start().await;
    let good = slack_fake::slash_command(SECRET, "/ops", "scale api 0", "U1", "C1", "t.1");

    // Signed with another secret.
    let forged =
        slack_fake::slash_command("not-the-secret", "/ops", "scale api 0", "U1", "C1", "t.2");
    assert_eq!(bot.send(&forged).await.status(), 401);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::BadSignature, _)
    ));

    // Correctly signed, but six minutes old (a captured request replayed later).
    let stale = good.clone().at(slack_fake::now_secs() - 360, SECRET);
    assert_eq!(bot.send(&stale).await.status(), 401);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::StaleTimestamp, _)
    ));

    // Body altered after signing.
    let mut altered = good.clone();
    altered.body = String::from_utf8(altered.body)
        .unwrap()
        .replace("scale+api+0", "scale+api+9")
        .into_bytes();
    assert_eq!(bot.send(&altered).await.status(), 401);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::BadSignature, _)
    ));

    // Over 1 MiB, even when correctly signed.
    let mut big = String::from_utf8(good.body.clone()).unwrap();
    big.push_str("&padding=");
    big.push_str(&"a".repeat(1024 * 1024));
    let oversized = SignedRequest::new(good.path, good.content_type, big.into_bytes(), SECRET);
    assert_eq!(bot.send(&oversized).await.status(), 413);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::TooLarge, _)
    ));

    // No signature headers at all.
    let res = bot
        .http
        .post(format!("{}/slack/commands", bot.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(good.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::Malformed, _)
    ));

    bot.assert_nothing_else().await;
    // Only the marker command's reply was posted.
    let posts = bot
        .fake
        .wait_for_ok("chat.postMessage", 1, Duration::from_secs(10))
        .await;
    assert_eq!(posts.len(), 1);
    assert!(posts[0].all_text().contains("ran marker"));
}

#[tokio::test]
async fn a_replayed_delivery_runs_once() {
    let mut bot = Bot::start().await;
    let req = slack_fake::slash_command(SECRET, "/ops", "restart api", "U1", "C1", "t.replay");
    assert_eq!(bot.send(&req).await.status(), 200);
    assert!(matches!(bot.next().await, Seen::Handle(_)));

    // The identical signed request again (as a retry or an attacker would send it).
    let mut again = req.clone();
    again.retry_num = Some(1);
    let res = bot.send(&again).await;
    assert_eq!(res.status(), 200);
    let ack: serde_json::Value = res.json().await.unwrap();
    assert!(ack["text"].as_str().unwrap().contains("Already received"));
    match bot.next().await {
        Seen::Reject(RejectionKind::Replay, detail) => assert!(detail.contains("t.replay")),
        other => panic!("{other:?}"),
    }
    bot.assert_nothing_else().await;
}

#[tokio::test]
async fn approve_and_deny_clicks_reach_the_pipeline_once() {
    let mut bot = Bot::start().await;
    let click = slack_fake::button_click(
        SECRET,
        "approve",
        "7f3k",
        "U2",
        "C1",
        "1700000000.000001",
        "1700000100.000200",
    );
    let res = bot.send(&click).await;
    assert_eq!(res.status(), 200);
    match bot.next().await {
        Seen::Click(c) => {
            assert!(c.approve);
            assert_eq!(c.approval_id, "7f3k");
            assert_eq!(c.user.as_str(), "slack:U2");
            let groups: Vec<&str> = c.groups.iter().map(|g| g.as_str()).collect();
            assert_eq!(groups, ["slack-group:SDEV"]);
            assert_eq!(c.channel, "C1");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bot.send(&click).await.status(), 200);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::Replay, _)
    ));

    let deny = slack_fake::button_click(
        SECRET,
        "deny",
        "7f3k",
        "U3",
        "C1",
        "1700000000.000001",
        "1700000101.000300",
    );
    assert_eq!(bot.send(&deny).await.status(), 200);
    assert!(
        matches!(bot.next().await, Seen::Click(c) if !c.approve && c.user.as_str() == "slack:U3")
    );

    // A click with a forged signature is refused.
    let forged = slack_fake::button_click(
        "wrong",
        "approve",
        "7f3k",
        "U3",
        "C1",
        "1.1",
        "1700000102.1",
    );
    assert_eq!(bot.send(&forged).await.status(), 401);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::BadSignature, _)
    ));

    // A signed body that is not an interaction payload.
    let junk = SignedRequest::new(
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        b"payload=%7Bnot+json".to_vec(),
        SECRET,
    );
    assert_eq!(bot.send(&junk).await.status(), 400);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::Malformed, _)
    ));
    bot.assert_nothing_else().await;
}

#[tokio::test]
async fn incident_is_ops_incident() {
    let mut bot = Bot::start().await;
    let req = slack_fake::slash_command(
        SECRET,
        "/incident",
        "open P2 db is down",
        "U1",
        "C1",
        "t.inc",
    );
    let res = bot.send(&req).await;
    assert_eq!(res.status(), 200);
    let ack: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(
        ack["text"].as_str().unwrap().contains("Working on"),
        "{ack}"
    );
    match bot.next().await {
        Seen::Handle(inv) => assert_eq!(inv.text, "incident open P2 db is down"),
        other => panic!("{other:?}"),
    }
    bot.assert_nothing_else().await;
}

#[tokio::test]
async fn url_verification_is_answered_only_when_signed() {
    let mut bot = Bot::start().await;
    let res = bot
        .send(&slack_fake::url_verification(
            SECRET,
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        ))
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        body["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    let res = bot.send(&slack_fake::url_verification("wrong", "x")).await;
    assert_eq!(res.status(), 401);
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::BadSignature, _)
    ));
}

#[tokio::test]
async fn an_oversized_body_without_content_length_is_refused_while_streaming() {
    let mut bot = Bot::start().await;
    // 2 MiB in 64 KiB chunks, no Content-Length: the limit is enforced as the body arrives.
    let chunks = (0..32).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 64 * 1024]));
    let res = bot
        .http
        .post(format!("{}/slack/commands", bot.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-slack-request-timestamp",
            slack_fake::now_secs().to_string(),
        )
        .header("x-slack-signature", "v0=00")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The bot answers 413 (the client may also see the connection closed mid-upload).
    if let Ok(res) = res {
        assert_eq!(res.status(), 413);
    }
    assert!(matches!(
        bot.next().await,
        Seen::Reject(RejectionKind::TooLarge, _)
    ));
    bot.assert_nothing_else().await;
}

#[tokio::test]
async fn slacks_ssl_check_is_answered_and_runs_nothing() {
    let mut bot = Bot::start().await;
    let body =
        slack_fake::form_encode(&[("ssl_check", "1"), ("token", "gIkuvaNzQIHg97ATvDxqgjtO")]);
    let req = SignedRequest::new(
        "/slack/commands",
        "application/x-www-form-urlencoded",
        body.into_bytes(),
        SECRET,
    );
    assert_eq!(bot.send(&req).await.status(), 200);
    bot.assert_nothing_else().await;
}

#[tokio::test]
async fn the_ack_does_not_wait_for_slacks_web_api() {
    let mut bot = Bot::start().await;
    // The user-group lookup every command needs is rate limited for an hour (waited out for at
    // most a minute): the command cannot reach the pipeline before then.
    bot.fake.fail_next(
        "usergroups.list",
        Failure::RateLimited {
            retry_after_secs: 3600,
        },
    );
    let req = slack_fake::slash_command(SECRET, "/ops", "restart api", "U1", "C1", "t.slow");
    let res = bot.send(&req).await;
    assert_eq!(res.status(), 200);
    let ack: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ack["text"], "⏳ Working on `/ops restart api`…");
    // The lookup was made and answered 429; the command is still waiting for it, and the
    // ack has been given all the same.
    let calls = bot
        .fake
        .wait_until(Duration::from_secs(10), |calls| {
            calls
                .iter()
                .any(|c| c.method == "usergroups.list" && c.status == 429)
        })
        .await;
    assert!(
        calls
            .iter()
            .any(|c| c.method == "usergroups.list" && c.status == 429),
        "{calls:?}"
    );
    assert!(bot.seen.try_recv().is_err());
    assert!(bot.fake.calls_to("chat.postMessage").is_empty());
}
