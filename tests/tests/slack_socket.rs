//! Socket Mode against the fake Slack: opsbot opens the WebSocket with the app-level token
//! (`apps.connections.open`), and slash commands and button clicks arriving as envelopes go
//! through the same handlers as over HTTP: acked on the socket at once (the ephemeral answer
//! in the ack payload), the pipeline run in the background, repeated envelopes run once.

use std::sync::Arc;
use std::time::Duration;

use opsbot::engine::RejectionKind;
use opsbot::slack::{SlackConfig, SlackSink};
use opsbot_tests::pipeline::{Recorder, Seen};
use opsbot_tests::slack_fake::{self, SlackFake};
use tokio::sync::mpsc;

const TOKEN: &str = "xoxb-socket-token";
const APP_TOKEN: &str = "xapp-1-socket-app-token";
const PATIENCE: Duration = Duration::from_secs(30);

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("something reached the pipeline")
        .expect("double alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_feeds_the_same_handlers() {
    let fake = SlackFake::start(TOKEN).await;
    fake.enable_socket_mode(APP_TOKEN).await;
    fake.set_user_groups(&[("SOPS", &["U1"])]);
    let mut cfg = SlackConfig::new(TOKEN, "unused-in-socket-mode")
        .with_api_url(fake.api_url())
        .with_app_token(APP_TOKEN);
    cfg.socket_mode = true;
    let sink = SlackSink::new(&cfg);
    let (tx, mut seen) = mpsc::unbounded_channel();
    let double = Arc::new(Recorder::new(tx, sink.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let web = sink.web().clone();
    let run_cfg = cfg.clone();
    let socket = tokio::spawn(async move {
        opsbot::slack::socket::run_with(double, web, &run_cfg, async {
            let _ = stop_rx.await;
        })
        .await
    });

    fake.wait_for_socket(PATIENCE).await;
    let opens = fake.calls_to("apps.connections.open");
    assert!(!opens.is_empty());
    assert_eq!(opens[0].token.as_deref(), Some(APP_TOKEN));

    // A slash command: the ack carries the ephemeral answer; the pipeline runs with identity.
    let env = fake.socket_send(
        "slash_commands",
        slack_fake::socket_slash_command(
            "/ops",
            "scale api 3 -n api",
            "U1",
            "C1",
            "sock.trigger.1",
        ),
    );
    let ack = fake.socket_ack(&env, PATIENCE).await;
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    assert!(
        ack["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("Working on"),
        "{ack}"
    );
    match next(&mut seen).await {
        Seen::Handle(inv) => {
            assert_eq!(inv.user.as_str(), "slack:U1");
            let groups: Vec<&str> = inv.groups.iter().map(|g| g.as_str()).collect();
            assert_eq!(groups, ["slack-group:SOPS"]);
            assert_eq!(inv.text, "scale api 3 -n api");
            assert_eq!(inv.delivery_id.as_deref(), Some("slack:sock.trigger.1"));
        }
        other => panic!("{other:?}"),
    }
    let posts = fake.wait_for_ok("chat.postMessage", 1, PATIENCE).await;
    assert!(posts[0].all_text().contains("ran scale api 3 -n api"));

    // The same envelope content redelivered (Slack retries unacked envelopes): not run again.
    let env = fake.socket_send(
        "slash_commands",
        slack_fake::socket_slash_command(
            "/ops",
            "scale api 3 -n api",
            "U1",
            "C1",
            "sock.trigger.1",
        ),
    );
    let ack = fake.socket_ack(&env, PATIENCE).await;
    assert!(
        ack["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("Already received")
    );
    assert!(matches!(
        next(&mut seen).await,
        Seen::Reject(RejectionKind::Replay, _)
    ));

    // /incident over the socket, too.
    let env = fake.socket_send(
        "slash_commands",
        slack_fake::socket_slash_command("/incident", "open P1", "U1", "C1", "sock.trigger.2"),
    );
    let ack = fake.socket_ack(&env, PATIENCE).await;
    assert!(
        ack["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("Working on"),
        "{ack}"
    );
    match next(&mut seen).await {
        Seen::Handle(inv) => assert_eq!(inv.text, "incident open P1"),
        other => panic!("{other:?}"),
    }

    // An Approve click.
    let env = fake.socket_send(
        "interactive",
        slack_fake::socket_button_click(
            "approve",
            "7f3k",
            "U1",
            "C1",
            "1700000000.000001",
            "1700000009.000001",
        ),
    );
    let ack = fake.socket_ack(&env, PATIENCE).await;
    assert_eq!(ack["envelope_id"], env);
    match next(&mut seen).await {
        Seen::Click(c) => {
            assert!(c.approve);
            assert_eq!(c.approval_id, "7f3k");
            assert_eq!(c.user.as_str(), "slack:U1");
            assert_eq!(c.channel, "C1");
        }
        other => panic!("{other:?}"),
    }

    let _ = stop_tx.send(());
    let result = tokio::time::timeout(PATIENCE, socket).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
}

/// A Socket Mode connection that cannot be opened at start (Slack answering an error) is tried
/// again until it opens: the process does not stay deaf to Slack until someone restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_cannot_open_is_tried_again() {
    let fake = SlackFake::start(TOKEN).await;
    fake.enable_socket_mode(APP_TOKEN).await;
    fake.fail_next(
        "apps.connections.open",
        slack_fake::Failure::Error("internal_error".into()),
    );
    let mut cfg = SlackConfig::new(TOKEN, "unused-in-socket-mode")
        .with_api_url(fake.api_url())
        .with_app_token(APP_TOKEN);
    cfg.socket_mode = true;
    let sink = SlackSink::new(&cfg);
    let (tx, _seen) = mpsc::unbounded_channel();
    let double = Arc::new(Recorder::new(tx, sink.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let web = sink.web().clone();
    let socket = tokio::spawn(async move {
        opsbot::slack::socket::run_with(double, web, &cfg, async {
            let _ = stop_rx.await;
        })
        .await
    });
    fake.wait_for_socket(PATIENCE).await;
    let opens = fake.calls_to("apps.connections.open");
    assert!(opens.len() >= 2, "{opens:?}");
    assert_eq!(opens[0].error.as_deref(), Some("internal_error"));
    let _ = stop_tx.send(());
    socket.await.unwrap().unwrap();
}
