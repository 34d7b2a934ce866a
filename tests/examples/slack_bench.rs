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
//! Options: `--rate N` (requests per second, default 500), `--secs N` (per target, default 10),
//! `--url URL --secret S` (fire at an already running bot instead of the in-process one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::routing::post;
use futures::future::BoxFuture;
use opsbot::chat::{ChatSink, Platform};
use opsbot::engine::{Inbound, Refusal, RejectionKind};
use opsbot::slack::{Pipeline, SlackConfig, SlackSink};
use opsbot_commands::reply::Reply;
use opsbot_policies::Subject;
use opsbot_tests::slack_fake::{self, SignedRequest, SlackFake};

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

struct Args {
    rate: u32,
    secs: u32,
    url: Option<String>,
    secret: String,
}

fn args() -> Args {
    let mut a = Args {
        rate: 500,
        secs: 10,
        url: None,
        secret: SECRET.to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--rate" => a.rate = value.parse().expect("--rate N"),
            "--secs" => a.secs = value.parse().expect("--secs N"),
            "--url" => a.url = Some(value.trim_end_matches('/').to_owned()),
            "--secret" => a.secret = value,
            other => panic!("unknown option {other}"),
        }
    }
    if let Some(url) = &a.url {
        let loopback = [
            "http://127.",
            "http://localhost:",
            "http://localhost/",
            "http://[::1]",
        ];
        assert!(
            loopback.iter().any(|p| url.starts_with(p)),
            "--url must be a loopback address (http://127.0.0.1:PORT): this benchmark only loads this machine"
        );
    }
    a.rate = a.rate.clamp(1, 5000);
    a.secs = a.secs.clamp(1, 60);
    a
}

struct Outcome {
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Fires `requests` at `base` at `rate` per second; each one's latency counts from its due time.
async fn fire(
    http: &reqwest::Client,
    base: &str,
    requests: Vec<SignedRequest>,
    rate: u32,
) -> Outcome {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(requests.len());
    for (i, req) in requests.into_iter().enumerate() {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        let http = http.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let ok = tokio::time::timeout(Duration::from_secs(10), async {
                let res = req.send(&http, &base).await;
                let status = res.status();
                let _ = res.bytes().await;
                status.is_success()
            })
            .await
            .unwrap_or(false);
            (ok, due.elapsed())
        }));
    }
    let mut out = Outcome {
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (ok, latency) = t.await.expect("request task");
        if ok {
            out.ok += 1;
            out.latencies.push(latency);
        } else {
            out.failed += 1;
        }
    }
    out.elapsed = start.elapsed();
    out.latencies.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, rate: u32, o: &Outcome) {
    println!(
        "{:<22} {:>6}/s {:>7} {:>7} {:>12} {:>12} {:>12} {:>10.1}/s",
        name,
        rate,
        o.ok,
        o.failed,
        ms(percentile(&o.latencies, 0.50)),
        ms(percentile(&o.latencies, 0.99)),
        ms(o.latencies.last().copied().unwrap_or_default()),
        o.ok as f64 / o.elapsed.as_secs_f64(),
    );
}

fn commands(n: usize, secret: &str, tag: &str) -> Vec<SignedRequest> {
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
        Some(url) => (url.clone(), "slack (running bot)", args.secret.clone()),
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
        &bare_base,
        commands(50, &secret, "warm-bare"),
        args.rate,
    )
    .await;
    let _ = fire(
        &http,
        &slack_base,
        commands(50, &secret, "warm-slack"),
        args.rate,
    )
    .await;

    println!(
        "{:<22} {:>8} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "target", "rate", "ok", "failed", "p50", "p99", "max", "throughput"
    );
    let started = Instant::now();
    let bare_out = fire(&http, &bare_base, commands(n, &secret, "bare"), args.rate).await;
    report("bare axum handler", args.rate, &bare_out);
    let slack_out = fire(&http, &slack_base, commands(n, &secret, "slack"), args.rate).await;
    report(slack_name, args.rate, &slack_out);
    println!(
        "(replies posted to the fake Slack Web API: {}; total run {:.1} s)",
        fake.calls_to("chat.postMessage").len(),
        started.elapsed().as_secs_f64()
    );
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}
