//! The Slack sink and Web API client against the fake Slack: Slack's wire format, the bearer
//! token, `ok:false` errors, 429 with Retry-After, retries of transient failures, and edits
//! paced to one per second per message.

use std::time::Duration;

use opsbot::chat::{ChatSink, DeliveryError, MessageRef};
use opsbot::slack::{RetryPolicy, SlackConfig, SlackSink};
use opsbot_commands::reply::{ButtonStyle, Reply};
use opsbot_tests::slack_fake::{self, Failure, SlackFake};
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-test-token";

fn config(fake: &SlackFake) -> SlackConfig {
    let mut cfg = SlackConfig::new(TOKEN, "signing-secret").with_api_url(fake.api_url());
    cfg.retry = RetryPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        attempt_timeout: Duration::from_millis(500),
    };
    cfg
}

#[tokio::test]
async fn post_and_update_speak_slacks_format() {
    let fake = SlackFake::start(TOKEN).await;
    let sink = SlackSink::new(&config(&fake));
    let card = Reply::warning("Approval needed")
        .text("`scale api 5 -n production`")
        .field("Requested by", "slack:U1")
        .button("approve", "Approve", ButtonStyle::Primary, "7f3k")
        .button("deny", "Deny", ButtonStyle::Danger, "7f3k");
    let msg = sink.post("C1", &card).await.unwrap();
    assert_eq!(msg.platform, "slack");
    assert_eq!(msg.channel, "C1");

    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.token.as_deref(), Some(TOKEN));
    assert_eq!(post.param("channel"), Some("C1"));
    let blocks = post.params["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(actions["elements"][0]["action_id"], "approve");
    assert_eq!(actions["elements"][0]["value"], "7f3k");
    assert_eq!(actions["elements"][1]["action_id"], "deny");

    sink.update(&msg, &Reply::ok("Approved and executed"))
        .await
        .unwrap();
    let updates = fake.calls_to("chat.update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].param("ts"), Some(msg.id.as_str()));
    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].updates, 1);
    assert!(
        messages[0].params["text"]
            .as_str()
            .unwrap()
            .contains("Approved and executed")
    );
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_delivers() {
    let fake = SlackFake::start(TOKEN).await;
    fake.fail_next(
        "chat.postMessage",
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    let sink = SlackSink::new(&config(&fake));
    sink.post("C1", &Reply::ok("done")).await.unwrap();
    let posts = fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].status, 429);
    assert_eq!(posts[1].status, 200);
    // Retry-After is honoured: the retry came no sooner than a second later.
    assert!(posts[1].at.duration_since(posts[0].at) >= Duration::from_secs(1));
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let fake = SlackFake::start(TOKEN).await;
    fake.fail_next("chat.postMessage", Failure::Status(500));
    fake.fail_next("chat.postMessage", Failure::Error("internal_error".into()));
    fake.fail_next("chat.postMessage", Failure::Status(503));
    let sink = SlackSink::new(&config(&fake));
    sink.post("C1", &Reply::ok("done")).await.unwrap();
    assert_eq!(fake.calls_to("chat.postMessage").len(), 4);
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn persistent_failures_give_up_after_the_attempts() {
    let fake = SlackFake::start(TOKEN).await;
    for _ in 0..10 {
        fake.fail_next("chat.postMessage", Failure::Status(503));
    }
    let sink = SlackSink::new(&config(&fake));
    let err = sink.post("C1", &Reply::ok("done")).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Failed { method, .. } if method == "chat.postMessage"),
        "{err:?}"
    );
    assert_eq!(fake.calls_to("chat.postMessage").len(), 4);
}

/// A Slack that does not answer: each attempt ends at the policy's timeout, then it is retried
/// like any failure, and a reply is never held for ever.
#[tokio::test]
async fn a_call_slack_does_not_answer_times_out_and_is_retried() {
    let fake = SlackFake::start(TOKEN).await;
    fake.fail_next("chat.postMessage", Failure::Hang(Duration::from_secs(30)));
    let sink = SlackSink::new(&config(&fake));
    sink.post("C1", &Reply::ok("after a hang")).await.unwrap();
    // The hung attempt never answered (the fake records calls it answers): the one recorded is
    // the retry that posted.
    assert_eq!(fake.calls_to("chat.postMessage").len(), 1);
    assert!(
        fake.messages()[0]
            .params
            .to_string()
            .contains("after a hang")
    );

    for _ in 0..4 {
        fake.fail_next("chat.postMessage", Failure::Hang(Duration::from_secs(30)));
    }
    let err = sink.post("C1", &Reply::ok("never")).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Failed { error, .. } if error.contains("no answer within 500 ms")),
        "{err:?}"
    );
}

#[tokio::test]
async fn ok_false_errors_are_refusals_and_not_retried() {
    let fake = SlackFake::start(TOKEN).await;
    fake.fail_next(
        "chat.postMessage",
        Failure::Error("channel_not_found".into()),
    );
    let sink = SlackSink::new(&config(&fake));
    let err = sink.post("C404", &Reply::ok("x")).await.unwrap_err();
    match err {
        DeliveryError::Refused { method, error } => {
            assert_eq!(method, "chat.postMessage");
            assert_eq!(error, "channel_not_found");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.calls_to("chat.postMessage").len(), 1);

    let missing = MessageRef {
        platform: "slack".into(),
        channel: "C1".into(),
        id: "1.2".into(),
    };
    let err = sink.update(&missing, &Reply::ok("x")).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Refused { error, .. } if error == "message_not_found"));
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_slack() {
    let fake = SlackFake::start(TOKEN).await;
    let mut cfg = config(&fake);
    cfg.bot_token = "xoxb-wrong".into();
    let err = SlackSink::new(&cfg)
        .post("C1", &Reply::ok("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Refused { error, .. } if error == "invalid_auth"));
    // The error says nothing about the token itself.
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].error.as_deref(), Some("invalid_auth"));
}

#[tokio::test]
async fn rapid_edits_of_one_message_are_paced_and_end_in_the_newest_state() {
    let fake = SlackFake::start(TOKEN).await;
    let sink = SlackSink::new(&config(&fake));
    let msg = sink.post("C1", &Reply::info("Rollout api")).await.unwrap();
    let edits: Vec<Reply> = (1..=5)
        .map(|i| Reply::info("Rollout api").text(format!("{i}/5 updated")))
        .collect();
    let results = futures::future::join_all(edits.iter().map(|r| sink.update(&msg, r))).await;
    assert!(results.iter().all(Result::is_ok));
    let updates = fake.calls_to("chat.update");
    // The first edit goes out at once; the three that were overtaken while waiting are
    // dropped; the newest goes out a second after the first.
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(updates[1].at.duration_since(updates[0].at) >= Duration::from_millis(990));
    let final_text = fake.messages()[0].params["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(final_text.contains("5/5 updated"), "{final_text}");
}

/// The fake itself, spoken to directly as a Slack client would: form and JSON bodies, the
/// bearer token checked, `ok:false` errors with HTTP 200, 429 with `Retry-After`.
#[tokio::test]
async fn the_fake_speaks_slacks_wire_format() {
    let fake = SlackFake::start(TOKEN).await;
    let http = reqwest::Client::new();
    let url = |method: &str| format!("{}/{method}", fake.api_url());
    assert!(url("chat.postMessage").ends_with("/api/chat.postMessage"));

    // A form body, `blocks` as a JSON string, as Slack's SDKs send it.
    let res = http
        .post(url("chat.postMessage"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(slack_fake::form_encode(&[
            ("channel", "C1"),
            ("text", "hi there"),
            (
                "blocks",
                r#"[{"type":"section","text":{"type":"mrkdwn","text":"hi"}}]"#,
            ),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["ok"].clone(), v["channel"].clone()),
        (json!(true), json!("C1"))
    );
    let ts = v["ts"].as_str().unwrap().to_owned();
    let post = &fake.calls_to("chat.postMessage")[0];
    assert_eq!(post.token.as_deref(), Some(TOKEN));
    assert_eq!(post.param("text"), Some("hi there"));
    assert_eq!(post.params["blocks"][0]["type"], "section");

    // A JSON body.
    let res = http
        .post(url("chat.update"))
        .bearer_auth(TOKEN)
        .json(&json!({"channel": "C1", "ts": ts, "text": "edited"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(fake.messages()[0].updates, 1);
    assert_eq!(fake.messages()[0].params["text"], "edited");

    // No token, a wrong token, an unknown method: HTTP 200 with ok:false, as Slack answers.
    let body = json!({"channel": "C1", "text": "x"});
    for (req, error) in [
        (http.post(url("chat.postMessage")), "not_authed"),
        (
            http.post(url("chat.postMessage")).bearer_auth("xoxb-wrong"),
            "invalid_auth",
        ),
        (
            http.post(url("chat.nope")).bearer_auth(TOKEN),
            "unknown_method",
        ),
    ] {
        let res = req.json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v, json!({"ok": false, "error": error}));
    }

    // A scripted 429 carries Retry-After.
    fake.fail_next(
        "chat.postMessage",
        Failure::RateLimited {
            retry_after_secs: 7,
        },
    );
    let res = http
        .post(url("chat.postMessage"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "7");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "ratelimited");
    // Only the first post landed in a channel.
    assert_eq!(fake.messages().len(), 1);
}
