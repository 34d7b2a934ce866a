//! Ack latency of the Discord interactions endpoint at a fixed rate, Ed25519 verification
//! included, side by side with a bare axum handler measured in the same run. Run it through
//! `scripts/bench-discord.sh`.
//!
//! The bot is the real pipeline: the engine with its durable inbox on SQLite (an interaction is
//! acknowledged only once it is on disk), the policy, kubesim with its default seed, and the
//! real sink and REST client editing each deferred response on a fake Discord in the same
//! process, competing for the same two cores as the ack path, as in production. Every request is
//! a distinct `/ops run` interaction signed with the test key before the clock starts.
//! Options: see [`opsbot_tests::bench::args`] (`--secret` is unused: interactions are signed
//! with the test key, so a running bot must be configured with its public key).

use std::time::Instant;

use axum::Router;
use axum::routing::post;
use opsbot::discord::DiscordConfig;
use opsbot::discord::verify::TestSigner;
use opsbot_tests::bench::{args, fire, report, serve};
use opsbot_tests::bot::{BotOptions, Db, TestBot};
use opsbot_tests::discord_fake::{self, DiscordFake, Member, signer};

const TOKEN: &str = "discord-bench-token";
const APP: &str = "1000000000000000001";
const GUILD: &str = "2000000000000000001";
const CHANNEL: &str = "3000000000000000001";

/// Everyone may read; the bench runs `status`.
const POLICY: &str = r#"
version: 1
rules:
  - name: read
    roles: ["*"]
    actions: [status]
"#;

/// The `i`th signed interaction of run `tag` for `base`, its token registered with the fake.
fn interaction(
    http: &reqwest::Client,
    base: &str,
    fake: &DiscordFake,
    key: &TestSigner,
    (tag, i): (u64, usize),
) -> reqwest::Request {
    let member = Member::new("4000000000000000001", &["1100000000000000002"]);
    let ts = discord_fake::now_secs().to_string();
    let id = (5_000_000_000_000_000_000 + tag * 1_000_000 + i as u64).to_string();
    let token = format!("bench-{tag}-{i}");
    fake.expect_command(&token, CHANNEL);
    let body = serde_json::to_vec(&discord_fake::run(
        &id,
        &token,
        GUILD,
        CHANNEL,
        &member,
        "status rust-webapi -n api",
    ))
    .expect("JSON");
    http.post(format!("{base}/discord/interactions"))
        .header("content-type", "application/json")
        .header("x-signature-ed25519", key.sign(&ts, &body))
        .header("x-signature-timestamp", &ts)
        .body(body)
        .build()
        .expect("a valid request")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let n = (args.rate * args.secs) as usize;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("HTTP client");

    // The bare axum handler: same body read, the same deferred answer, nothing else.
    let bare = Router::new().route(
        "/discord/interactions",
        post(|body: axum::body::Bytes| async move {
            let _ = body.len();
            axum::Json(serde_json::json!({"type": 5}))
        }),
    );
    let bare_base = serve(bare).await;

    let fake = DiscordFake::start(TOKEN, APP).await;
    let mut in_process = None;
    let (bot_base, bot_name) = match &args.url {
        Some(url) => (url.clone(), "discord (running bot)"),
        None => {
            let mut cfg = DiscordConfig::new(TOKEN, signer().public_key_hex(), APP)
                .with_api_url(&fake.api_url());
            cfg.guilds = vec![GUILD.to_owned()];
            let bot = TestBot::start(Db::Sqlite, "discord_bench", POLICY, BotOptions::default())
                .await
                .expect("SQLite is never skipped");
            let app = opsbot::server::base_router(bot.engine.clone()).merge(
                opsbot::discord::router(bot.engine.clone(), &cfg).expect("valid configuration"),
            );
            // Kept alive (kubesim, the database directory) until the end of main.
            in_process = Some(bot);
            (serve(app).await, "opsbot /discord/interactions")
        }
    };

    println!(
        "Discord ack latency: {n} signed interactions per target at {} requests/s ({} s each), Ed25519 verification included, 2 worker threads",
        args.rate, args.secs
    );
    let key = signer();
    let _ = fire(&http, 50, args.rate, |i| {
        interaction(&http, &bare_base, &fake, &key, (1, i))
    })
    .await;
    let _ = fire(&http, 50, args.rate, |i| {
        interaction(&http, &bot_base, &fake, &key, (2, i))
    })
    .await;

    println!(
        "{:<30} {:>8} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "target", "rate", "ok", "failed", "p50", "p99", "max", "throughput"
    );
    let started = Instant::now();
    let bare_out = fire(&http, n, args.rate, |i| {
        interaction(&http, &bare_base, &fake, &key, (3, i))
    })
    .await;
    report("bare axum handler", args.rate, &bare_out);
    let bot_out = fire(&http, n, args.rate, |i| {
        interaction(&http, &bot_base, &fake, &key, (4, i))
    })
    .await;
    report(bot_name, args.rate, &bot_out);
    let answered = fake
        .calls()
        .iter()
        .filter(|c| c.route == "edit_original" && c.status == 200)
        .count();
    println!(
        "(deferred responses filled on the fake Discord: {answered}; total run {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    if let Some(bot) = in_process {
        bot.engine.shutdown().await;
    }
}
