//! Ack latency of the Slack slash-command endpoint at a fixed request rate, side by side with a
//! bare axum handler measured in the same run. Run it through `scripts/bench-slack.sh`.
//!
//! Open loop: request *i* is due at `start + i / rate`, and its latency is measured from that
//! due time (so a stalled server cannot hide its queueing delay). Every request is a distinct,
//! correctly signed `/ops` slash command (signed before the clock starts), so each one passes
//! verification, is acked, and starts a pipeline run in the background, which posts a reply to
//! a fake Slack Web API in the same process — the background work competes for the same two
//! cores as the ack path, as it would in production.
//!
//! Options: see [`opsbot_tests::bench::args`].

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::Router;
use axum::routing::post;
use futures::future::BoxFuture;
use opsbot::chat::{ChatSink, Platform};
use opsbot::engine::{Inbound, Refusal, RejectionKind};
use opsbot::slack::{Pipeline, SlackConfig, SlackSink};
use opsbot_commands::reply::Reply;
use opsbot_policies::Subject;
use opsbot_tests::bench::{args, fire, report, serve};
use opsbot_tests::slack_fake::{self, SlackFake};

const TOKEN: &str = "xoxb-bench";
const SECRET: &str = "bench-signing-secret";

/// Stands in for the engine: answers each command with one message through the real sink.
struct Replier {
    sink: SlackSink,
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
                let _ = sink
                    .post(&inv.channel, &Reply::ok(format!("ran {}", inv.text)))
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

fn commands(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    secret: &str,
    tag: &str,
) -> Vec<reqwest::Request> {
    (0..n)
        .map(|i| {
            slack_fake::slash_command(
                secret,
                "/ops",
                "status rust-webapi -n api",
                "UBENCH",
                "C0BENCH",
                &format!("bench.{tag}.{i}.{}", std::process::id()),
            )
            .build(http, base)
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
    let (slack_base, slack_name, secret) = match &args.url {
        Some(url) => (
            url.clone(),
            "slack (running bot)",
            args.secret.clone().unwrap_or_else(|| SECRET.to_owned()),
        ),
        None => {
            let cfg = SlackConfig::new(TOKEN, SECRET).with_api_url(fake.api_url());
            let sink = SlackSink::new(&cfg);
            let pipeline = Arc::new(Replier { sink: sink.clone() });
            let app = opsbot::slack::router_with(pipeline, sink.web().clone(), &cfg);
            (serve(app).await, "slack /slack/commands", SECRET.to_owned())
        }
    };

    println!(
        "Slack ack latency: {} signed slash commands per target at {} requests/s ({} s each), 2 worker threads",
        n, args.rate, args.secs
    );
    // Warm up connections and caches (group lookup) on both.
    let _ = fire(
        &http,
        commands(&http, &bare_base, 50, &secret, "warm-bare"),
        args.rate,
    )
    .await;
    let _ = fire(
        &http,
        commands(&http, &slack_base, 50, &secret, "warm-slack"),
        args.rate,
    )
    .await;

    println!(
        "{:<22} {:>8} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "target", "rate", "ok", "failed", "p50", "p99", "max", "throughput"
    );
    let started = Instant::now();
    let bare_out = fire(
        &http,
        commands(&http, &bare_base, n, &secret, "bare"),
        args.rate,
    )
    .await;
    report("bare axum handler", args.rate, &bare_out);
    let slack_out = fire(
        &http,
        commands(&http, &slack_base, n, &secret, "slack"),
        args.rate,
    )
    .await;
    report(slack_name, args.rate, &slack_out);
    println!(
        "(replies posted to the fake Slack Web API: {}; total run {:.1} s)",
        fake.calls_to("chat.postMessage").len(),
        started.elapsed().as_secs_f64()
    );
}
