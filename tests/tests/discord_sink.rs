//! The Discord sink and REST client against the wire-level fake: where each kind of reply goes
//! (the deferred response, ephemeral follow-ups, channel messages), edits after a token is
//! gone, Discord's rate limits (buckets, 429 `retry_after`), retries and refusals; and
//! `opsbot discord register|invite-url`.

use std::time::Duration;

use opsbot::chat::{ChatSink, DeliveryError};
use opsbot::discord::{DiscordConfig, DiscordSink, Interactions};
use opsbot_commands::Reply;
use opsbot_policies::Subject;
use opsbot_tests::discord_fake::{DiscordFake, Failure, signer};

const TOKEN: &str = "discord-sink-bot-token";
const APP: &str = "1000000000000000001";
const CH: &str = "3000000000000000001";

fn sink(fake: &DiscordFake, token: &str) -> DiscordSink {
    let mut cfg =
        DiscordConfig::new(token, signer().public_key_hex(), APP).with_api_url(&fake.api_url());
    cfg.retry.base_backoff = Duration::from_millis(10);
    cfg.update_interval = Duration::from_millis(10);
    DiscordSink::new(&cfg, Interactions::new(cfg.interaction_lifetime))
}

fn routes(fake: &DiscordFake) -> Vec<(&'static str, u16)> {
    fake.calls().iter().map(|c| (c.route, c.status)).collect()
}

fn user() -> Subject {
    Subject::parse("discord:4000000000000000001").unwrap()
}

#[tokio::test]
async fn answers_fill_the_deferred_response_and_private_replies_are_ephemeral() {
    let fake = DiscordFake::start(TOKEN, APP).await;
    let sink = sink(&fake, TOKEN);

    // The first public reply becomes the deferred response itself.
    fake.expect_command("tok-1", CH);
    sink.interactions().deferred("9001", "tok-1");
    let msg = sink
        .answer(CH, Some("9001"), &Reply::ok("Scaled"))
        .await
        .unwrap();
    let m = fake.message(&msg.id).expect("the original response");
    assert!(m.text().contains("Scaled") && !m.ephemeral);
    assert_eq!(msg.channel, CH);
    // Edits go through the interaction's token while it lives...
    sink.update(&msg, &Reply::ok("Scaled").text("3/3 ready"))
        .await
        .unwrap();
    // ...and with the bot token once Discord refuses it (after 15 minutes).
    fake.expire("tok-1");
    sink.update(&msg, &Reply::ok("Scaled").text("done"))
        .await
        .unwrap();
    assert_eq!(
        routes(&fake),
        [
            ("edit_original", 200),
            ("edit_webhook_message", 200),
            ("edit_webhook_message", 401),
            ("edit_message", 200)
        ]
    );
    let m = fake.message(&msg.id).unwrap();
    assert!(m.text().contains("done") && m.edits == 2, "{m:?}");

    // A private reply: the public "thinking…" is removed, the reply is ephemeral.
    fake.expect_command("tok-2", CH);
    sink.interactions().deferred("9002", "tok-2");
    sink.post_private(CH, &user(), Some("9002"), &Reply::danger("Not allowed"))
        .await
        .unwrap();
    let calls = fake.calls();
    let tail: Vec<_> = calls[4..].iter().map(|c| (c.route, c.status)).collect();
    assert_eq!(tail, [("delete_original", 204), ("followup", 200)]);
    let private = fake.message(calls[5].message.as_ref().unwrap()).unwrap();
    assert!(private.ephemeral && private.text().contains("Not allowed"));
    assert_eq!(
        calls[5].body["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    // Answering again after that posts in the channel (the deferred response is settled).
    let later = sink
        .answer(CH, Some("9002"), &Reply::ok("x"))
        .await
        .unwrap();
    assert_eq!(fake.calls().last().unwrap().route, "create_message");
    assert!(fake.message(&later.id).is_some());

    // Without a live interaction nothing can be private on Discord: refused, not leaked.
    let err = sink
        .post_private(CH, &user(), None, &Reply::danger("Not allowed"))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Refused { .. }), "{err}");
    let err = sink
        .post_private(CH, &user(), Some("9999"), &Reply::danger("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no live interaction"), "{err}");
}

/// A fast answer can reach Discord before the deferral it removes or fills does (over HTTP the
/// deferral is the response body, taken on Discord's own time): the `@original` call is tried
/// again, and the answer arrives.
#[tokio::test]
async fn an_answer_faster_than_its_deferral_is_delivered() {
    let fake = DiscordFake::start(TOKEN, APP).await;
    let sink = sink(&fake, TOKEN);
    let not_yet = |code, message| Failure::Error {
        status: 404,
        code,
        message,
    };
    fake.expect_command("tok-6", CH);
    sink.interactions().deferred("9006", "tok-6");
    fake.fail_next("delete_original", not_yet(10015, "Unknown Webhook"));
    sink.post_private(CH, &user(), Some("9006"), &Reply::danger("Not allowed"))
        .await
        .unwrap();
    assert_eq!(
        routes(&fake),
        [
            ("delete_original", 404),
            ("delete_original", 204),
            ("followup", 200)
        ]
    );
    let reply = fake
        .messages()
        .into_iter()
        .find(|m| m.text().contains("Not allowed"));
    assert!(reply.unwrap().ephemeral, "only the requester sees it");

    fake.expect_command("tok-7", CH);
    sink.interactions().deferred("9007", "tok-7");
    fake.fail_next(
        "edit_interaction_message",
        not_yet(10008, "Unknown Message"),
    );
    sink.answer(CH, Some("9007"), &Reply::ok("Done"))
        .await
        .unwrap();
    assert!(fake.messages().iter().any(|m| m.text().contains("Done")));
}

/// Discord makes the first follow-up to a deferred response that response, public as the
/// deferral was: when the "thinking…" response cannot be removed, the private reply is not
/// sent (and the engine audits it as undelivered) rather than shown to everyone.
#[tokio::test]
async fn a_private_reply_is_not_sent_when_the_public_deferral_cannot_be_removed() {
    let fake = DiscordFake::start(TOKEN, APP).await;
    let sink = sink(&fake, TOKEN);
    fake.expect_command("tok-4", CH);
    sink.interactions().deferred("9004", "tok-4");
    fake.fail_next(
        "delete_original",
        Failure::Error {
            status: 403,
            code: 50001,
            message: "Missing Access",
        },
    );
    let err = sink
        .post_private(CH, &user(), Some("9004"), &Reply::danger("Not allowed"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not sent"), "{err}");
    assert_eq!(routes(&fake), [("delete_original", 403)]);
    assert!(
        fake.messages()
            .iter()
            .all(|m| !m.text().contains("Not allowed"))
    );

    // What the fake does with a follow-up to a deferred response, as Discord does: it becomes
    // the public response, whatever its flags (why the sink never sends one).
    fake.expect_command("tok-5", CH);
    let url = format!("{}/webhooks/{APP}/tok-5", fake.api_url());
    let res = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({ "content": "secret-ish", "flags": 64 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shown = fake
        .messages()
        .into_iter()
        .find(|m| m.text().contains("secret-ish"))
        .unwrap();
    assert!(!shown.ephemeral);
}

#[tokio::test]
async fn a_message_that_cannot_be_edited_any_more_is_replaced_by_a_channel_message() {
    let fake = DiscordFake::start(TOKEN, APP).await;
    let sink = sink(&fake, TOKEN);
    fake.expect_command("tok-3", CH);
    sink.interactions().deferred("9003", "tok-3");
    let msg = sink
        .answer(CH, Some("9003"), &Reply::info("Running"))
        .await
        .unwrap();
    fake.expire("tok-3");
    fake.fail_next(
        "edit_message",
        Failure::Error {
            status: 403,
            code: 50005,
            message: "Cannot edit a message authored by another user",
        },
    );
    sink.update(&msg, &Reply::ok("Finished")).await.unwrap();
    let replacement = fake
        .messages()
        .into_iter()
        .find(|m| m.id != msg.id)
        .expect("a channel message with the outcome");
    assert!(replacement.text().contains("Finished"));
    // Later edits replace the replacement.
    sink.update(&msg, &Reply::ok("Finished").text("again"))
        .await
        .unwrap();
    let last = fake.calls().last().unwrap().clone();
    assert_eq!(
        (last.route, last.message.as_deref()),
        ("edit_message", Some(replacement.id.as_str()))
    );
}

#[tokio::test]
async fn rate_limits_are_honoured_and_failures_retried_or_refused() {
    let fake = DiscordFake::start(TOKEN, APP).await;
    let sink = sink(&fake, TOKEN);

    // A 429 waits retry_after (fractional seconds), then delivers.
    fake.fail_next(
        "create_message",
        Failure::RateLimited {
            retry_after: 0.35,
            global: false,
        },
    );
    sink.post(CH, &Reply::ok("one")).await.unwrap();
    let calls = fake.calls();
    assert_eq!(
        routes(&fake),
        [("create_message", 429), ("create_message", 200)]
    );
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(350));

    // An empty bucket holds the next request until its reset, without earning a 429.
    fake.exhaust_bucket("create_message", 0.4);
    sink.post(CH, &Reply::ok("two")).await.unwrap();
    sink.post(CH, &Reply::ok("three")).await.unwrap();
    let calls = fake.calls();
    let n = calls.len();
    assert!(calls[n - 2..].iter().all(|c| c.status == 200));
    assert!(calls[n - 1].at - calls[n - 2].at >= Duration::from_millis(350));

    // A global 429 also waits, then delivers.
    fake.fail_next(
        "create_message",
        Failure::RateLimited {
            retry_after: 0.2,
            global: true,
        },
    );
    sink.post(CH, &Reply::ok("four")).await.unwrap();

    // 5xx is retried.
    fake.fail_next("create_message", Failure::ServerError);
    sink.post(CH, &Reply::ok("five")).await.unwrap();
    let statuses: Vec<u16> = fake.calls()[n..].iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200, 500, 200]);

    // Refusals come back with Discord's code and are not retried.
    fake.refuse_channel("3000000000000000009");
    let err = sink
        .post("3000000000000000009", &Reply::ok("x"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "create_message refused: HTTP 403: 50001 Missing Access"
    );
    let wrong = self::sink(&fake, "not-the-token");
    let err = wrong.post(CH, &Reply::ok("x")).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 401"), "{err}");

    // A rate limit that never ends: undeliverable after the retries.
    for _ in 0..5 {
        fake.fail_next(
            "create_message",
            Failure::RateLimited {
                retry_after: 0.01,
                global: false,
            },
        );
    }
    let err = sink.post(CH, &Reply::ok("x")).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Failed { .. }), "{err}");
}

#[test]
fn register_is_idempotent_and_the_invite_asks_only_for_what_is_used() {
    use opsbot::cli::discord::{DiscordCmd, execute};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(DiscordFake::start(TOKEN, APP));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("opsbot.yaml");
    std::fs::write(
        &file,
        format!(
            "discord:\n  token: {TOKEN}\n  application_id: \"{APP}\"\n  guilds: [\"2000000000000000001\"]\n  api_url: {}\n",
            fake.api_url()
        ),
    )
    .unwrap();
    let register = |guild: Option<&str>| {
        execute(
            Some(&file),
            DiscordCmd::Register {
                guild: guild.map(str::to_owned),
            },
        )
        .unwrap()
    };
    assert_eq!(
        register(Some("2000000000000000001")),
        ["created /ops (in guild 2000000000000000001)"]
    );
    assert_eq!(
        register(Some("2000000000000000001")),
        ["unchanged /ops (in guild 2000000000000000001)"]
    );
    assert_eq!(register(None), ["created /ops (globally)"]);
    let registered = fake.registered(Some("2000000000000000001")).unwrap();
    assert_eq!(registered[0]["name"], "ops");
    assert_eq!(
        registered[0]["options"],
        opsbot::discord::commands::ops_command()["options"]
    );
    let err = execute(
        Some(&file),
        DiscordCmd::Register {
            guild: Some("not-a-guild".into()),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a guild id"), "{err}");

    // View Channel, Send Messages, Embed Links; Manage Channels, Manage Roles and Pin
    // Messages for incident channels. Nothing else (no Administrator, no Manage Messages).
    let url = execute(Some(&file), DiscordCmd::InviteUrl).unwrap();
    let permissions: u64 = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 4) | (1 << 28) | (1 << 51);
    assert_eq!(
        url,
        [format!(
            "https://discord.com/oauth2/authorize?client_id={APP}&scope=bot%20applications.commands&permissions={permissions}"
        )]
    );
    drop(rt);
}
