//! Gateway mode end to end: `app::start` with `discord.mode: gateway`, the fake Discord's REST
//! API and its local fake gateway (Hello, Identify, Ready, heartbeats and ACKs, dispatched
//! `INTERACTION_CREATE`s, a dropped connection and a Resume), kubesim and SQLite. No HTTP
//! endpoint is mounted for Discord in this mode.

use std::collections::BTreeMap;
use std::time::Duration;

use kubesim::{KubeSim, Seed};
use opsbot::config::Config;
use opsbot_tests::discord_fake::{self, DiscordFake, Member};

const TOKEN: &str = "discord-gateway-bot-token";
const APP: &str = "1000000000000000001";
const GUILD: &str = "2000000000000000001";
const CHANNEL: &str = "3000000000000000001";
const PATIENCE: Duration = Duration::from_secs(60);

fn replicas(sim: &KubeSim, name: &str) -> i64 {
    sim.get("apps/v1", "Deployment", "api", name)
        .and_then(|d| d["spec"]["replicas"].as_i64())
        .unwrap_or(-1)
}

/// Dispatches an interaction once a connection is open (READY may still be on its way).
async fn dispatch(fake: &DiscordFake, interaction: &serde_json::Value) -> bool {
    for _ in 0..500 {
        if fake.gateway_dispatch("INTERACTION_CREATE", interaction.clone()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_arrive_over_the_gateway_and_the_session_resumes_after_a_drop() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    sim.clock().set_speed(30.0);
    let dir = tempfile::tempdir().unwrap();
    let fake = DiscordFake::start(TOKEN, APP).await;
    fake.enable_gateway().await;
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).unwrap();
    let yaml = format!(
        "data_dir: {dir}\npolicy: policy.yaml\nlisten: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n\
         discord:\n  api_url: {api}\n  application_id: \"{APP}\"\n  guilds: [\"{GUILD}\"]\n  mode: gateway\n",
        dir = dir.path().display(),
        api = fake.api_url(),
    );
    let file = dir.path().join("opsbot.yaml");
    std::fs::write(&file, yaml).unwrap();
    let env: BTreeMap<String, String> =
        [("OPSBOT_DISCORD_TOKEN".to_owned(), TOKEN.to_owned())].into();
    let config = Config::load_with_env(Some(&file), &env).unwrap();
    let bot = opsbot::app::start(&config).await.unwrap();

    // Identify with the bot token and the GUILDS intent only.
    fake.wait_for_gateway(PATIENCE, |r| !r.is_empty()).await;
    let identify = &fake.gateway_received()[0];
    assert_eq!(identify["token"], TOKEN);
    assert_eq!(identify["intents"], 1);

    // No HTTP endpoint in gateway mode.
    let res = reqwest::Client::new()
        .post(format!("http://{}/discord/interactions", bot.addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let engineer = Member::new("4000000000000000001", &["1100000000000000002"]);
    let scale = |id: &str, token: &str, n: i64| {
        fake.expect_command(token, CHANNEL);
        discord_fake::run(
            id,
            token,
            GUILD,
            CHANNEL,
            &engineer,
            &format!("scale rust-webapi {n} -n api"),
        )
    };
    let before = replicas(&sim, "rust-webapi");
    let target = if before == 3 { 4 } else { 3 };
    let first = scale("5000000000000000401", "tok-g1", target);
    assert!(dispatch(&fake, &first).await);
    fake.wait_for_text(PATIENCE, &format!("{before} → {target}"))
        .await;
    assert_eq!(replicas(&sim, "rust-webapi"), target);
    // The deferred answer went to the callback endpoint.
    let callbacks: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "callback")
        .collect();
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_eq!(callbacks[0].status, 204);
    assert_eq!(callbacks[0].body["type"], 5);

    // Heartbeats flow (every 300 ms here) and are acknowledged.
    let t0 = fake.gateway_counts().0;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(fake.gateway_counts().0 > t0);

    // The connection drops: opsbot reconnects and resumes the session with its last sequence.
    fake.gateway_drop();
    fake.wait_for_gateway(PATIENCE, |r| {
        r.iter().any(|p| p.get("session_id").is_some())
    })
    .await;
    let resume = fake
        .gateway_received()
        .into_iter()
        .find(|p| p.get("session_id").is_some())
        .unwrap();
    assert_eq!(resume["session_id"], "fake-session");
    assert_eq!(resume["token"], TOKEN);
    assert!(resume["seq"].as_u64().unwrap() >= 2, "{resume}");
    assert_eq!(fake.gateway_counts().1, 2);

    let next = if target == 3 { 5 } else { 6 };
    let second = scale("5000000000000000402", "tok-g2", next);
    assert!(dispatch(&fake, &second).await);
    fake.wait_for_text(PATIENCE, &format!("{target} → {next}"))
        .await;
    assert_eq!(replicas(&sim, "rust-webapi"), next);
    // The same interaction delivered again (a resumed replay) runs once.
    assert!(fake.gateway_dispatch("INTERACTION_CREATE", second));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = bot
        .engine
        .store()
        .tail(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.kind == opsbot::store::AuditKind::Request)
        .count();
    assert_eq!(requests, 2);

    // An interaction made an hour ago (its snowflake says so), delivered now: too late to be
    // acknowledged, and its person was told it failed. Refused and audited, not run.
    let hour_ago = jiff::Timestamp::now().as_millisecond() - 3_600_000 - 1_420_070_400_000;
    let old_id = ((hour_ago as u64) << 22).to_string();
    let stale = scale(&old_id, "tok-g3", 7);
    assert!(dispatch(&fake, &stale).await);
    let audit = opsbot_tests::eventually(
        PATIENCE,
        "the stale interaction's rejection",
        || async { bot.engine.store().tail(1000).await.unwrap() },
        |records| {
            records
                .iter()
                .any(|r| r.entry.outcome.as_deref() == Some("stale_timestamp"))
        },
    )
    .await;
    let requests = audit
        .iter()
        .filter(|r| r.entry.kind == opsbot::store::AuditKind::Request)
        .count();
    assert_eq!(requests, 2, "not taken");
    assert_eq!(replicas(&sim, "rust-webapi"), next);
    assert!(
        fake.calls()
            .iter()
            .all(|c| !c.path.contains(&old_id) && !c.path.contains("tok-g3")),
        "no answer to it"
    );
    bot.stop().await.unwrap();
}
