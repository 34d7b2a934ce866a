//! Slack on `opsbot serve` as an operator runs it: `app::start` from an `opsbot.yaml` with a
//! `slack:` section (secrets from the environment), the example policy, kubesim, port 0, and
//! the Web API pointed at the fake Slack — once over HTTP, once over Socket Mode.

use std::collections::BTreeMap;
use std::time::Duration;

use kubesim::{KubeSim, Seed};
use opsbot::config::Config;
use opsbot_tests::slack_fake::{self, SlackFake};

const TOKEN: &str = "xoxb-serve-token";
const SECRET: &str = "serve-signing-secret";
const APP_TOKEN: &str = "xapp-1-serve-app-token";
const PATIENCE: Duration = Duration::from_secs(60);

/// The example policy's groups: platform engineers and SRE leads.
fn groups(fake: &SlackFake) {
    fake.set_user_groups(&[("S01PLATFORM", &["UPLAT"]), ("S01SRELEADS", &["ULEAD"])]);
}

fn config(sim: &KubeSim, dir: &std::path::Path, fake: &SlackFake, socket_mode: bool) -> Config {
    std::fs::write(dir.join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).unwrap();
    let yaml = format!(
        "data_dir: {dir}\n\
         policy: policy.yaml\n\
         listen: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n\
         slack:\n  api_url: {api}\n  socket_mode: {socket_mode}\n",
        dir = dir.display(),
        api = fake.api_url(),
    );
    let file = dir.join("opsbot.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let env: BTreeMap<String, String> = [
        ("OPSBOT_SLACK_BOT_TOKEN", TOKEN),
        ("OPSBOT_SLACK_SIGNING_SECRET", SECRET),
        ("OPSBOT_SLACK_APP_TOKEN", APP_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Config::load_with_env(Some(&file), &env).unwrap()
}

fn replicas(sim: &KubeSim, ns: &str, name: &str) -> i64 {
    sim.get("apps/v1", "Deployment", ns, name)
        .and_then(|d| d["spec"]["replicas"].as_i64())
        .unwrap_or(-1)
}

async fn wait_for_text(fake: &SlackFake, needle: &str) -> bool {
    let needle = needle.to_owned();
    let found = |calls: &[slack_fake::Call]| {
        calls
            .iter()
            .any(|c| c.status == 200 && c.error.is_none() && c.all_text().contains(&needle))
    };
    let calls = fake.wait_until(PATIENCE, found).await;
    found(&calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_http_runs_commands_and_approvals_with_the_example_policy() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    sim.clock().set_speed(30.0);
    let dir = tempfile::tempdir().unwrap();
    let fake = SlackFake::start(TOKEN).await;
    groups(&fake);
    let bot = opsbot::app::start(&config(&sim, dir.path(), &fake, false))
        .await
        .unwrap();
    let base = format!("http://{}", bot.addr);
    let http = reqwest::Client::new();

    // A platform engineer (by user group) scales a service in `api`: allowed outright.
    let before = replicas(&sim, "api", "rust-webapi");
    let target = if before == 3 { 4 } else { 3 };
    let req = slack_fake::slash_command(
        SECRET,
        "/ops",
        &format!("scale rust-webapi {target} -n api"),
        "UPLAT",
        "C0OPS",
        "serve.1",
    );
    let res = req.send(&http, &base).await;
    assert_eq!(res.status(), 200);
    assert!(wait_for_text(&fake, &format!("{before} → {target}")).await);
    assert_eq!(replicas(&sim, "api", "rust-webapi"), target);

    // Production needs an SRE lead's approval: the card, then a signed click by the lead.
    let before = replicas(&sim, "production", "conea-api");
    let target = if before == 6 { 7 } else { 6 };
    let req = slack_fake::slash_command(
        SECRET,
        "/ops",
        &format!("scale conea-api {target} -n production"),
        "UPLAT",
        "C0OPS",
        "serve.2",
    );
    assert_eq!(req.send(&http, &base).await.status(), 200);
    let calls = fake
        .wait_until(PATIENCE, |calls| {
            calls
                .iter()
                .any(|c| c.method == "chat.postMessage" && c.all_text().contains("Approval needed"))
        })
        .await;
    let card = calls
        .iter()
        .find(|c| c.method == "chat.postMessage" && c.all_text().contains("Approval needed"))
        .expect("approval card posted");
    let actions = card.params["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("buttons");
    let approval_id = actions["elements"][0]["value"].as_str().unwrap().to_owned();
    let card_ts = fake
        .messages()
        .into_iter()
        .find(|m| m.params.to_string().contains(&approval_id))
        .unwrap()
        .ts;
    assert_eq!(replicas(&sim, "production", "conea-api"), before);
    let click = slack_fake::button_click(
        SECRET,
        "approve",
        &approval_id,
        "ULEAD",
        "C0OPS",
        &card_ts,
        "1700000100.000001",
    );
    assert_eq!(click.send(&http, &base).await.status(), 200);
    assert!(wait_for_text(&fake, &format!("{before} → {target}")).await);
    assert_eq!(replicas(&sim, "production", "conea-api"), target);

    // A forged request is refused at the door.
    let forged = slack_fake::slash_command(
        "forged",
        "/ops",
        "scale rust-webapi 9 -n api",
        "UPLAT",
        "C0OPS",
        "serve.3",
    );
    assert_eq!(forged.send(&http, &base).await.status(), 401);

    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_socket_mode_needs_no_public_endpoint() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    sim.clock().set_speed(30.0);
    let dir = tempfile::tempdir().unwrap();
    let fake = SlackFake::start(TOKEN).await;
    fake.enable_socket_mode(APP_TOKEN).await;
    groups(&fake);
    let bot = opsbot::app::start(&config(&sim, dir.path(), &fake, true))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    fake.wait_for_socket(PATIENCE).await;

    // The HTTP endpoints are not mounted in Socket Mode.
    let req = slack_fake::slash_command(
        SECRET,
        "/ops",
        "status rust-webapi -n api",
        "UPLAT",
        "C0OPS",
        "sock.0",
    );
    assert_eq!(
        req.send(&http, &format!("http://{}", bot.addr))
            .await
            .status(),
        404
    );

    let before = replicas(&sim, "api", "rust-webapi");
    let target = if before == 5 { 6 } else { 5 };
    let env = fake.socket_send(
        "slash_commands",
        slack_fake::socket_slash_command(
            "/ops",
            &format!("scale rust-webapi {target} -n api"),
            "UPLAT",
            "C0OPS",
            "sock.1",
        ),
    );
    let ack = fake.socket_ack(&env, PATIENCE).await;
    assert!(
        ack["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("Working on"),
        "{ack}"
    );
    assert!(wait_for_text(&fake, &format!("{before} → {target}")).await);
    assert_eq!(replicas(&sim, "api", "rust-webapi"), target);

    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_checkpoints_are_posted_in_the_audit_channel() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = SlackFake::start(TOKEN).await;
    let mut config = config(&sim, dir.path(), &fake, false);
    config.audit.channel = Some(opsbot::config::AuditChannel {
        platform: "slack".to_owned(),
        channel: "C0AUDIT".to_owned(),
    });
    config.audit.checkpoint_every = Duration::from_millis(200);
    let bot = opsbot::app::start(&config).await.unwrap();
    let entry = opsbot::store::AuditEntry::new(opsbot::store::AuditKind::Request, "slack")
        .text("status rust-webapi -n api");
    bot.engine.store().append(entry).await.unwrap();
    assert!(wait_for_text(&fake, "Audit checkpoint: record 1").await);

    let posted = fake
        .calls_to("chat.postMessage")
        .into_iter()
        .find(|c| c.all_text().contains("Audit checkpoint"))
        .unwrap();
    assert_eq!(posted.param("channel"), Some("C0AUDIT"));
    // What is posted is the checkpoint in the file, signature and all.
    let anchors = std::fs::read_to_string(dir.path().join("audit.anchors")).unwrap();
    let line: serde_json::Value = serde_json::from_str(anchors.lines().last().unwrap()).unwrap();
    let text = posted.all_text();
    for field in ["hash", "signature"] {
        assert!(
            text.contains(line[field].as_str().unwrap()),
            "{field}: {text}"
        );
    }
    bot.stop().await.unwrap();
}

/// The endpoints face the internet: a client that sends a request's head or its body too
/// slowly is cut off (the body with a 408, and nothing of it is run), and connections beyond
/// the limit wait for a free one instead of taking more of the server's sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = SlackFake::start(TOKEN).await;
    let mut config = config(&sim, dir.path(), &fake, false);
    config.http = opsbot::config::HttpLimits {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        max_connections: 2,
    };
    let bot = opsbot::app::start(&config).await.unwrap();

    // What a connection answered (empty when it was closed without an answer), and when.
    async fn answer(mut conn: TcpStream) -> (String, tokio::time::Instant) {
        let mut got = Vec::new();
        let read = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the connection is still open");
        (
            String::from_utf8_lossy(&got).into_owned(),
            tokio::time::Instant::now(),
        )
    }

    // A head that never ends.
    let mut silent = TcpStream::connect(bot.addr).await.unwrap();
    silent
        .write_all(b"POST /slack/commands HTTP/1.1\r\nHost: opsbot\r\n")
        .await
        .unwrap();
    // A body that never ends (a tenth of what its length promises).
    let mut trickle = TcpStream::connect(bot.addr).await.unwrap();
    let head = "POST /slack/commands HTTP/1.1\r\nHost: opsbot\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n";
    trickle.write_all(head.as_bytes()).await.unwrap();
    trickle.write_all(b"command=%2Fops").await.unwrap();
    // Both connections are being served: a third one waits for one of them to end.
    let http = reqwest::Client::new();
    let health = async {
        let res = http
            .get(format!("http://{}/healthz", bot.addr))
            .send()
            .await
            .unwrap();
        (res.status(), tokio::time::Instant::now())
    };
    let ((silent_got, silent_at), (trickle_got, trickle_at), (health, health_at)) =
        tokio::join!(answer(silent), answer(trickle), health);

    assert!(
        !silent_got.contains(" 200 "),
        "an unfinished head is not answered: {silent_got}"
    );
    assert!(
        trickle_got.starts_with("HTTP/1.1 408"),
        "a body too slow is answered 408: {trickle_got}"
    );
    assert_eq!(health, 200);
    assert!(
        health_at >= silent_at.min(trickle_at),
        "the third connection was served while both slots were taken"
    );

    bot.stop().await.unwrap();
}
