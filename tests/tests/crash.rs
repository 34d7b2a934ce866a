//! An acknowledgement is a promise, also across `kill -9`: `opsbot serve` runs as a separate
//! process (the `opsbot-serve` test binary, the same `app::serve`), takes a flood of signed
//! Slack slash commands whose answers Slack holds back (429), is killed with SIGKILL, and is
//! started again on the same SQLite database. Every command that was acknowledged has a record
//! and gets a final answer, from the restarted process.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kubesim::{KubeSim, Seed};
use opsbot_tests::eventually;
use opsbot_tests::process::{ServeConfig, start_and_wait};
use opsbot_tests::slack_fake::{self, Failure, SlackFake};

const TOKEN: &str = "xoxb-crash-test";
const SECRET: &str = "crash-test-signing-secret";
const COMMANDS: usize = 120;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, sim: &KubeSim, fake: &SlackFake, port: u16) -> std::path::PathBuf {
    ServeConfig {
        sim,
        slack_api: fake.api_url(),
        bot_token: TOKEN,
        signing_secret: SECRET,
        port,
        policy: opsbot::app::EXAMPLE_POLICY,
        // Every command of the flood stays in flight (Slack holds its answer back), so the cap
        // on requests in flight is raised above the flood: all of it is taken, none refused.
        extra: "approvals: { sweep_interval: 500ms }\nengine: { max_in_flight: 256 }\n",
    }
    .write(dir)
}

/// Starts `opsbot serve` and waits until it answers `/healthz`.
async fn serve(config: &Path, base: &str) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opsbot-serve"));
    command
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    start_and_wait(command, &format!("{base}/healthz")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_command_is_answered_after_kill_9() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let fake = SlackFake::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = write_config(dir.path(), &sim, &fake, port);
    // Slack holds every private answer back for a while: the acknowledged commands are still
    // unanswered when the process dies.
    for _ in 0..10_000 {
        fake.fail_next(
            "chat.postEphemeral",
            Failure::RateLimited {
                retry_after_secs: 30,
            },
        );
    }
    let mut child = serve(&config, &base).await;

    // The flood: each command from its own user, so each answer can be told apart.
    let http = reqwest::Client::new();
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for i in 0..COMMANDS {
        let (http, base, acked) = (http.clone(), base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let user = format!("U{i:04}");
            let req = slack_fake::slash_command(
                SECRET,
                "/ops",
                "help",
                &user,
                "C0OPS",
                &format!("t.{i}"),
            );
            let res = req.send(&http, &base).await;
            if res.status() == 200
                && let Ok(ack) = res.json::<serde_json::Value>().await
                && ack["text"].as_str().unwrap_or("").contains("Working on")
            {
                acked.lock().unwrap().insert(user);
            }
        }));
        if i == COMMANDS / 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > COMMANDS / 2,
        "most were acknowledged: {}",
        acked.len()
    );
    let answered_before = fake
        .calls_to("chat.postEphemeral")
        .iter()
        .filter(|c| c.error.is_none() && c.status == 200)
        .count();
    assert_eq!(answered_before, 0, "Slack held every answer back");

    // Slack answers again; the next process finds what the killed one left open.
    fake.clear_failures();
    let mut child = serve(&config, &base).await;
    let answered_users = |calls: &[slack_fake::Call]| -> BTreeSet<String> {
        calls
            .iter()
            .filter(|c| c.method == "chat.postEphemeral" && c.error.is_none() && c.status == 200)
            .filter_map(|c| c.param("user").map(str::to_owned))
            .collect()
    };
    let calls = fake
        .wait_until(Duration::from_secs(60), |calls| {
            acked.is_subset(&answered_users(calls))
        })
        .await;
    let answered = answered_users(&calls);
    let missing: Vec<_> = acked.difference(&answered).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never answered: {missing:?}"
    );
    let restarted = calls
        .iter()
        .filter(|c| c.method == "chat.postEphemeral" && c.status == 200)
        .filter(|c| {
            c.all_text()
                .contains("opsbot restarted before running this")
        })
        .count();
    assert!(restarted > 0, "the answers say what happened");

    // On disk: every acknowledged command has its inbox entry, marked answered once its answer
    // went out.
    let store = opsbot::store::Store::open_existing(&format!(
        "sqlite://{}",
        dir.path().join("opsbot.db").display()
    ))
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "every inbox entry marked answered",
        || async { store.open_inbox_count().await.unwrap() },
        |open| *open == 0,
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let inbox = store.inbox().await.unwrap();
    let recorded: BTreeSet<String> = inbox
        .iter()
        .map(|e| e.actor.trim_start_matches("slack:").to_owned())
        .collect();
    assert!(acked.is_subset(&recorded));
    assert!(
        inbox
            .iter()
            .all(|e| e.state == opsbot::store::InboxState::Answered),
        "{:?}",
        inbox
            .iter()
            .filter(|e| e.state != opsbot::store::InboxState::Answered)
            .collect::<Vec<_>>()
    );
}
