//! Alert intake benchmark. Run it through `scripts/bench-alerts.sh`; it prints figures and
//! asserts nothing.
//!
//! 1. Intake throughput: webhook notifications (`--alerts-per` alerts each, distinct groups) are
//!    posted by `--clients` concurrent clients for `--secs` seconds to the whole bot (`app::start`,
//!    SQLite, no chat channel routed, so only parsing, grouping and persisting count), and the
//!    same requests to a bare axum handler that only parses the JSON, in the same run.
//! 2. Storm: 10,000 alerts in 500 groups within 10 s into one Slack channel (the fake Web API);
//!    reports chat writes per channel per second (the most in any one-second window, target ≤ 1)
//!    and whether every group is visible at the end (its own message, or counted in the digest).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use kubesim::{KubeSim, Seed};
use opsbot::config::Config;
use opsbot_tests::slack_fake::SlackFake;
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-bench";
const WEBHOOK: &str = "bench-webhook-token";
const CHANNEL: &str = "C0STORM";

struct Args {
    secs: u64,
    clients: usize,
    alerts_per: usize,
}

fn args() -> Args {
    let mut a = Args {
        secs: 5,
        clients: 8,
        alerts_per: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--secs" => a.secs = value.parse::<u64>().expect("--secs N").clamp(1, 30),
            "--clients" => a.clients = value.parse().expect("--clients N"),
            "--alerts-per" => a.alerts_per = value.parse().expect("--alerts-per N"),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// Stands for the group's name in the prepared intake body.
const GROUP: &str = "GROUP-NAME";

/// A webhook body: group `name` with `n` firing alerts.
fn notification(name: &str, severity: &str, n: usize) -> Vec<u8> {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {"alertname": name, "severity": severity, "namespace": "production",
                           "pod": format!("api-{i}"), "instance": format!("10.0.{}.{}:9100", i / 256, i % 256)},
                "annotations": {"summary": "Pod is crash looping", "runbook_url": "https://runbooks.example/x"},
                "startsAt": "2026-01-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": format!("{:016x}", i)
            })
        })
        .collect();
    json!({
        "version": "4", "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"), "truncatedAlerts": 0,
        "status": "firing", "receiver": "opsbot", "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": severity, "namespace": "production"},
        "commonAnnotations": {"summary": "Pod is crash looping"},
        "externalURL": "http://alertmanager:9093", "alerts": alerts
    })
    .to_string()
    .into_bytes()
}

struct Bot {
    bot: opsbot::app::Bot,
    _sim: KubeSim,
    _dir: tempfile::TempDir,
}

async fn start_bot(fake: &SlackFake, alerts_yaml: &str) -> Bot {
    let sim = KubeSim::start(Seed::default_seed()).await.expect("kubesim");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml()).expect("kubeconfig");
    std::fs::write(dir.path().join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).expect("policy");
    let yaml = format!(
        "data_dir: {dir}\npolicy: policy.yaml\nlisten: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n\
         slack:\n  api_url: {api}\n  bot_token: {TOKEN}\n  signing_secret: s\n\
         alerts:\n  webhook_token: {WEBHOOK}\n{alerts_yaml}",
        dir = dir.path().display(),
        api = fake.api_url()
    );
    let file = dir.path().join("opsbot.yaml");
    std::fs::write(&file, yaml).expect("config");
    let config = Config::load_with_env(Some(&file), &std::collections::BTreeMap::new())
        .expect("config loads");
    let bot = opsbot::app::start(&config).await.expect("bot starts");
    Bot {
        bot,
        _sim: sim,
        _dir: dir,
    }
}

/// Posts distinct notifications from `clients` loops for `secs`; returns (alerts/s, errors).
async fn drive(url: &str, args: &Args) -> (f64, u64) {
    let http = reqwest::Client::new();
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.secs);
    // One body serialised up front; each request only puts its group's name in (building 100
    // alerts as JSON values per request took half of the two cores from the server measured).
    let template =
        String::from_utf8(notification(GROUP, "warning", args.alerts_per)).expect("JSON is UTF-8");
    let template = Arc::new(template);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let template = template.clone();
        let (http, url, sent, errors) =
            (http.clone(), url.to_owned(), sent.clone(), errors.clone());
        let per = args.alerts_per;
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let body = template.replace(GROUP, &format!("Bench-{c}-{i}"));
                i += 1;
                let r = http
                    .post(&url)
                    .bearer_auth(WEBHOOK)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        sent.fetch_add(per as u64, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    (
        sent.load(Ordering::Relaxed) as f64 / secs,
        errors.load(Ordering::Relaxed),
    )
}

async fn bare_server() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new().route(
        "/alertmanager",
        post(|body: Bytes| async move {
            match serde_json::from_slice::<Value>(&body) {
                Ok(_) => axum::http::StatusCode::OK,
                Err(_) => axum::http::StatusCode::BAD_REQUEST,
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/alertmanager"), task)
}

async fn intake(args: &Args) {
    let fake = SlackFake::start(TOKEN).await;
    let bot = start_bot(&fake, "").await;
    let url = format!("http://{}/alertmanager", bot.bot.addr);
    let (bot_rate, bot_errors) = drive(&url, args).await;
    let (firing, _) = bot
        .bot
        .engine
        .store()
        .count_alerts()
        .await
        .unwrap_or((0, 0));
    bot.bot.stop().await.expect("stop");
    let (bare_url, bare) = bare_server().await;
    let (bare_rate, bare_errors) = drive(&bare_url, args).await;
    bare.abort();
    println!(
        "intake ({} clients, {} alerts per notification, {} s each, SQLite):",
        args.clients, args.alerts_per, args.secs
    );
    println!(
        "  opsbot /alertmanager   {bot_rate:>10.0} alerts/s parsed, grouped and persisted ({bot_errors} errors, {firing} alerts in the database)"
    );
    println!("  bare axum, JSON only   {bare_rate:>10.0} alerts/s ({bare_errors} errors)");
    println!("  target: >= 50,000 alerts/s on a 2-core machine");
}

async fn storm() {
    const GROUPS: usize = 500;
    const PER_GROUP: usize = 20;
    let fake = SlackFake::start(TOKEN).await;
    let bot = start_bot(&fake, &format!("  default_channel: slack:{CHANNEL}\n")).await;
    let url = format!("http://{}/alertmanager", bot.bot.addr);
    let http = reqwest::Client::new();
    let started = Instant::now();
    for g in 0..GROUPS {
        let due = started + Duration::from_millis((g as u64 * 10_000) / GROUPS as u64);
        tokio::time::sleep_until(due.into()).await;
        let severity = if g % 10 == 0 { "critical" } else { "warning" };
        let body = notification(&format!("Storm{g:03}"), severity, PER_GROUP);
        let _ = http.post(&url).bearer_auth(WEBHOOK).body(body).send().await;
    }
    let posted_in = started.elapsed();
    // Wait until the channel is quiet for 3 s (at most 60 s).
    let mut last = 0;
    let mut quiet_since = Instant::now();
    while started.elapsed() < Duration::from_secs(70)
        && quiet_since.elapsed() < Duration::from_secs(3)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = fake.calls().len();
        if n != last {
            last = n;
            quiet_since = Instant::now();
        }
    }
    let writes: Vec<Instant> = fake
        .calls()
        .into_iter()
        .filter(|c| matches!(c.method.as_str(), "chat.postMessage" | "chat.update"))
        .map(|c| c.at)
        .collect();
    let max_per_second = writes
        .iter()
        .map(|t| {
            writes
                .iter()
                .filter(|u| **u >= *t && u.duration_since(*t) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let messages = fake.messages();
    let digest_count: usize = messages
        .iter()
        .filter_map(|m| m.params.get("text").and_then(Value::as_str))
        .filter_map(|t| {
            t.split(" groups firing")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let own = messages
        .iter()
        .filter(|m| {
            m.params
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains("FIRING"))
        })
        .count();
    let (firing, _) = bot
        .bot
        .engine
        .store()
        .count_alerts()
        .await
        .unwrap_or((0, 0));
    bot.bot.stop().await.expect("stop");
    println!(
        "storm ({} alerts in {GROUPS} groups, posted in {:.1} s, one channel):",
        GROUPS * PER_GROUP,
        posted_in.as_secs_f64()
    );
    println!(
        "  chat writes: {} in total; at most {max_per_second} in any one second (target <= 1)",
        writes.len()
    );
    println!(
        "  visible: {own} groups with their own message + {digest_count} in the digest = {} of {GROUPS} ({})",
        own + digest_count,
        if own + digest_count == GROUPS {
            "all"
        } else {
            "NOT all"
        }
    );
    println!(
        "  alerts in the database: {firing} of {}",
        GROUPS * PER_GROUP
    );
}

#[tokio::main]
async fn main() {
    let args = args();
    intake(&args).await;
    storm().await;
}
