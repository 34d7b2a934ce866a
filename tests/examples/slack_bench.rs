//! Ack latency of the Slack slash-command endpoint at a fixed request rate, and its closed-loop
//! maximum throughput, side by side with a bare axum handler measured in the same run; and the
//! process's resident memory, idle and at its peak. Run it through `scripts/bench-slack.sh`.
//!
//! In-process, the bot is the real one: the engine with its SQLite audit store, the policy,
//! kubesim with its default seed (through kube-rs) and the Slack adapter posting replies to a
//! fake Slack Web API (the `TestBot` harness), all in this process — the background work
//! competes for the same two cores as the ack path, as it would in production.
//!
//! Open loop: request *i* is due at `start + i / rate`, and its latency is measured from that
//! due time (so a stalled server cannot hide its queueing delay). Closed loop: `--clients`
//! connections each send the next request as soon as the last one is acked, for `--secs`.
//! Every request is a distinct, correctly signed `/ops status` slash command, so each one passes
//! verification, is acked, and runs the whole pipeline in the background.
//!
//! Options: `--rate N` (requests per second, default 500), `--secs N` (per target and loop,
//! default 10), `--clients N` (closed loop, default 32), `--url URL --secret S` (fire at an
//! already running bot instead of the in-process one; memory is then not reported).

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use opsbot::slack::SlackConfig;
use opsbot_tests::bench::{self, Args, args, fire, memory_mib, report, serve};
use opsbot_tests::bot::{BotOptions, Db, TestBot};
use opsbot_tests::slack_fake::{self, SignedRequest, SlackFake};

const TOKEN: &str = "xoxb-bench";
const SECRET: &str = "bench-signing-secret";
const POLICY: &str = "version: 1\nrules:\n  - { name: read, roles: [\"*\"], actions: [status] }\n";

/// Closed loop: `--clients` senders, each sending its next request when the last is answered,
/// for `--secs`; prints what came back under `name` and returns the requests taken (acked and
/// not refused as busy: a busy answer runs nothing, so it is no throughput) per second.
async fn closed_loop(
    http: &reqwest::Client,
    name: &str,
    base: &str,
    secret: &str,
    tag: &str,
    args: &Args,
) -> f64 {
    let start = Instant::now();
    let (client, base, secret, tag) = (
        http.clone(),
        base.to_owned(),
        secret.to_owned(),
        tag.to_owned(),
    );
    let got = bench::closed_loop(http, args.clients, u64::from(args.secs), move |c, i| {
        command(&secret, &format!("{tag}.{c}.{i}")).build(&client, &base)
    })
    .await;
    let rate = got.ok as f64 / start.elapsed().as_secs_f64();
    let (ok, busy, failed) = (got.ok, got.busy, got.failed);
    println!("{name:<22} {ok:>8} ok {busy:>6} busy {failed:>6} failed {rate:>10.1}/s");
    rate
}

/// A signed `/ops status` slash command, distinct by `tag`.
fn command(secret: &str, tag: &str) -> SignedRequest {
    slack_fake::slash_command(
        secret,
        "/ops",
        "status rust-webapi -n api",
        "UBENCH",
        "C0BENCH",
        &format!("bench.{tag}.{}", std::process::id()),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let n = (args.rate * args.secs) as usize;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("HTTP client");

    // The bare axum handler: same body read, same JSON answer, nothing else.
    let bare = Router::new().route(
        "/slack/commands",
        post(|body: axum::body::Bytes| async move {
            let _ = body.len();
            axum::Json(
                serde_json::json!({"response_type": "ephemeral", "text": "⏳ Working on it…"}),
            )
        }),
    );
    let bare_base = serve(bare).await;

    let fake = SlackFake::start(TOKEN).await;
    // Only the bot's memory should grow with the requests, not the fake's record of them.
    fake.keep_recent(64);
    let mut in_process = None;
    let (slack_base, slack_name, secret) = match &args.url {
        Some(url) => (
            url.clone(),
            "slack (running bot)",
            args.secret.clone().unwrap_or_else(|| SECRET.to_owned()),
        ),
        None => {
            let cfg = SlackConfig::new(TOKEN, SECRET).with_api_url(fake.api_url());
            let starting = Instant::now();
            let bot = TestBot::start(Db::Sqlite, "slack_bench", POLICY, BotOptions::default())
                .await
                .expect("SQLite is never skipped");
            println!(
                "ready in {:.2} s (kubesim with its default seed, SQLite and its migrations, the engine)",
                starting.elapsed().as_secs_f64()
            );
            let app = opsbot::server::base_router(bot.engine.clone())
                .merge(opsbot::slack::router(bot.engine.clone(), &cfg));
            // Kept alive (kubesim, the database directory) until the end of main.
            in_process = Some(bot);
            (
                serve(app).await,
                "opsbot /slack/commands",
                SECRET.to_owned(),
            )
        }
    };
    let idle_rss = memory_mib(None, "VmRSS:");

    println!(
        "Slack ack latency: {} signed slash commands per target at {} requests/s ({} s each), 2 worker threads",
        n, args.rate, args.secs
    );
    // Warm up connections and caches (group lookup) on both.
    let _ = fire(&http, 50, args.rate, |i| {
        command(&secret, &format!("warm-bare.{i}")).build(&http, &bare_base)
    })
    .await;
    let _ = fire(&http, 50, args.rate, |i| {
        command(&secret, &format!("warm-slack.{i}")).build(&http, &slack_base)
    })
    .await;

    println!(
        "{:<22} {:>8} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "target", "rate", "ok", "failed", "p50", "p99", "max", "throughput"
    );
    let started = Instant::now();
    let bare_out = fire(&http, n, args.rate, |i| {
        command(&secret, &format!("bare.{i}")).build(&http, &bare_base)
    })
    .await;
    report("bare axum handler", args.rate, &bare_out);
    let slack_out = fire(&http, n, args.rate, |i| {
        command(&secret, &format!("slack.{i}")).build(&http, &slack_base)
    })
    .await;
    report(slack_name, args.rate, &slack_out);
    println!(
        "Closed loop, {} clients, {} s each: maximum throughput",
        args.clients, args.secs
    );
    let bare_rate = closed_loop(
        &http,
        "bare axum handler",
        &bare_base,
        &secret,
        "bare-cl",
        &args,
    )
    .await;
    let bot_rate = closed_loop(&http, slack_name, &slack_base, &secret, "slack-cl", &args).await;
    println!(
        "throughput ratio (bot / bare handler): {:.2}",
        bot_rate / bare_rate.max(f64::MIN_POSITIVE)
    );
    if in_process.is_some() {
        // Let the background pipeline runs finish before reading the memory figures.
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "memory (whole process: bot, kubesim, fake Slack keeping its latest 64 calls, load generator): idle {:.1} MiB, peak {:.1} MiB, after the runs {:.1} MiB",
            idle_rss,
            memory_mib(None, "VmHWM:"),
            memory_mib(None, "VmRSS:")
        );
    }
    println!(
        "(replies posted to the fake Slack Web API: {}; total run {:.1} s)",
        fake.count_of("chat.postMessage"),
        started.elapsed().as_secs_f64()
    );
    drop(in_process);
}
