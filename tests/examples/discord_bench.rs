//! Ack latency of the Discord interactions endpoint at a fixed rate, Ed25519 verification
//! included, side by side with a bare axum handler measured in the same run. Run it through
//! `scripts/bench-discord.sh`.
//!
//! Every request is a distinct `/ops run` interaction signed with the test key before the clock
//! starts, so each one passes verification, is deferred (type 5), and starts background work
//! that edits the deferred response through the real sink and REST client on a fake Discord
//! in the same process — competing for the same two cores as the ack path, as in production.
//! Options: see [`opsbot_tests::bench::args`] (`--secret` is unused: interactions are signed
//! with the test key, so a running bot must be configured with its public key).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::Router;
use axum::routing::post;
use futures::future::BoxFuture;
use opsbot::chat::{ChatSink, Platform};
use opsbot::discord::commands::{NameKind, NameSource};
use opsbot::discord::{DiscordConfig, DiscordSink, Interactions};
use opsbot::engine::{Inbound, Refusal, RejectionKind};
use opsbot::slack::Pipeline;
use opsbot_commands::reply::Reply;
use opsbot_policies::Subject;
use opsbot_tests::bench::{args, fire, report, serve};
use opsbot_tests::discord_fake::{self, DiscordFake, Member, signer};

const TOKEN: &str = "discord-bench-token";
const APP: &str = "1000000000000000001";
const GUILD: &str = "2000000000000000001";
const CHANNEL: &str = "3000000000000000001";

/// Stands in for the engine: answers each command by filling its deferred response.
struct Replier {
    sink: DiscordSink,
}

#[async_trait]
impl Pipeline for Replier {
    async fn take(
        &self,
        inbound: Inbound,
        _groups: BoxFuture<'static, Vec<Subject>>,
    ) -> Result<(), Refusal> {
        if let Inbound::Command(inv) = inbound {
            let sink = self.sink.clone();
            tokio::spawn(async move {
                let reply = Reply::ok(format!("ran {}", inv.text));
                let _ = sink
                    .answer(&inv.channel, inv.origin.as_deref(), &reply)
                    .await;
            });
        }
        Ok(())
    }
    async fn tell_refused(&self, _inbound: &Inbound, _refusal: Refusal) {}
    async fn reject(&self, _platform: Platform, kind: RejectionKind, detail: &str) {
        eprintln!("rejected ({}): {detail}", kind.as_str());
    }
}

struct NoNames;

#[async_trait]
impl NameSource for NoNames {
    async fn names(
        &self,
        _kind: NameKind,
        _cluster: Option<&str>,
        _namespace: Option<&str>,
    ) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// `n` signed interactions for `base`, their tokens registered with the fake.
fn interactions(
    http: &reqwest::Client,
    base: &str,
    fake: &DiscordFake,
    n: usize,
    tag: u64,
) -> Vec<reqwest::Request> {
    let member = Member::new("4000000000000000001", &["1100000000000000002"]);
    let key = signer();
    let ts = discord_fake::now_secs().to_string();
    (0..n as u64)
        .map(|i| {
            let id = (5_000_000_000_000_000_000 + tag * 1_000_000 + i).to_string();
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
        })
        .collect()
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
    let (bot_base, bot_name) = match &args.url {
        Some(url) => (url.clone(), "discord (running bot)"),
        None => {
            let mut cfg = DiscordConfig::new(TOKEN, signer().public_key_hex(), APP)
                .with_api_url(&fake.api_url());
            cfg.guilds = vec![GUILD.to_owned()];
            let sink = DiscordSink::new(&cfg, Interactions::new(cfg.interaction_lifetime));
            let pipeline = Arc::new(Replier { sink: sink.clone() });
            let app = opsbot::discord::router_with(pipeline, sink, Arc::new(NoNames), &cfg)
                .expect("valid configuration");
            (serve(app).await, "discord /discord/interactions")
        }
    };

    println!(
        "Discord ack latency: {n} signed interactions per target at {} requests/s ({} s each), Ed25519 verification included, 2 worker threads",
        args.rate, args.secs
    );
    let _ = fire(
        &http,
        interactions(&http, &bare_base, &fake, 50, 1),
        args.rate,
    )
    .await;
    let _ = fire(
        &http,
        interactions(&http, &bot_base, &fake, 50, 2),
        args.rate,
    )
    .await;

    println!(
        "{:<30} {:>8} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "target", "rate", "ok", "failed", "p50", "p99", "max", "throughput"
    );
    let started = Instant::now();
    let bare_out = fire(
        &http,
        interactions(&http, &bare_base, &fake, n, 3),
        args.rate,
    )
    .await;
    report("bare axum handler", args.rate, &bare_out);
    let bot_out = fire(
        &http,
        interactions(&http, &bot_base, &fake, n, 4),
        args.rate,
    )
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
}
