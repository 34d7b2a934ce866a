//! What the ack benchmarks (`scripts/bench-slack.sh`, `scripts/bench-discord.sh`) share: an
//! open-loop firing of signed requests at a fixed rate and the report line.
//!
//! Open loop: request *i* is due at `start + i / rate`, and its latency is measured from that
//! due time (so a stalled server cannot hide its queueing delay).

use std::time::Duration;

use axum::Router;

/// Common options: `--rate N` (requests per second, default 500), `--secs N` (per target,
/// default 10), `--clients N` (closed loops, default 32), `--url URL` and `--secret S` (fire at
/// an already running bot on loopback).
pub struct Args {
    pub rate: u32,
    pub secs: u32,
    pub clients: u32,
    pub url: Option<String>,
    pub secret: Option<String>,
}

/// Parses the command line (bounded: at most 5,000 requests/s for 60 s, loopback only).
pub fn args() -> Args {
    let mut a = Args {
        rate: 500,
        secs: 10,
        clients: 32,
        url: None,
        secret: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--rate" => a.rate = value.parse().expect("--rate N"),
            "--secs" => a.secs = value.parse().expect("--secs N"),
            "--clients" => a.clients = value.parse().expect("--clients N"),
            "--url" => a.url = Some(value.trim_end_matches('/').to_owned()),
            "--secret" => a.secret = Some(value),
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
    a.clients = a.clients.clamp(1, 512);
    a
}

pub struct Outcome {
    pub ok: usize,
    pub failed: usize,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// Fires `n` requests at `rate` per second, each built by `make(i)` just before it is due (so
/// the generator holds no prepared batch, and the process's memory figures are the bot's);
/// each one's latency counts from its due time. Answered requests are reaped as the run goes,
/// so the generator's memory does not grow with the run either.
pub async fn fire(
    http: &reqwest::Client,
    n: usize,
    rate: u32,
    mut make: impl FnMut(usize) -> reqwest::Request,
) -> Outcome {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut out = Outcome {
        ok: 0,
        failed: 0,
        latencies: Vec::with_capacity(n),
        elapsed: Duration::ZERO,
    };
    let mut running = tokio::task::JoinSet::new();
    for i in 0..n {
        let req = make(i);
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        while let Some(done) = running.try_join_next() {
            out.count(done.expect("request task"));
        }
        let http = http.clone();
        running.spawn(async move {
            let ok = tokio::time::timeout(Duration::from_secs(10), async {
                let Ok(res) = http.execute(req).await else {
                    return false;
                };
                let status = res.status();
                let _ = res.bytes().await;
                status.is_success()
            })
            .await
            .unwrap_or(false);
            (ok, due.elapsed())
        });
    }
    while let Some(done) = running.join_next().await {
        out.count(done.expect("request task"));
    }
    out.elapsed = start.elapsed();
    out.latencies.sort();
    out
}

/// What the closed loops got back.
#[derive(Default)]
pub struct Answers {
    /// Acked and taken.
    pub ok: usize,
    /// Acked, but refused as busy: nothing ran.
    pub busy: usize,
    /// No answer, or not a success.
    pub failed: usize,
}

/// `clients` closed loops for `secs`: each sends its next request, built by `make(client, i)`,
/// as soon as the last one is answered.
pub async fn closed_loop<F>(http: &reqwest::Client, clients: u32, secs: u64, make: F) -> Answers
where
    F: Fn(u32, usize) -> reqwest::Request + Clone + Send + 'static,
{
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let loops: Vec<_> = (0..clients)
        .map(|c| {
            let (http, make) = (http.clone(), make.clone());
            tokio::spawn(async move {
                let mut got = Answers::default();
                for i in 0.. {
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    let res =
                        tokio::time::timeout(Duration::from_secs(10), http.execute(make(c, i)));
                    let body = match res.await {
                        Ok(Ok(r)) if r.status().is_success() => r.bytes().await.ok(),
                        _ => None,
                    };
                    match body {
                        Some(b) if String::from_utf8_lossy(&b).contains("is busy") => got.busy += 1,
                        Some(_) => got.ok += 1,
                        None => got.failed += 1,
                    }
                }
                got
            })
        })
        .collect();
    let mut all = Answers::default();
    for l in loops {
        let got = l.await.expect("closed loop task");
        all.ok += got.ok;
        all.busy += got.busy;
        all.failed += got.failed;
    }
    all
}

/// A `/proc/PID/status` figure of process `pid` (`None`: this one) in MiB (`VmRSS`: now,
/// `VmHWM`: the peak so far); NaN when it cannot be read.
pub fn memory_mib(pid: Option<u32>, field: &str) -> f64 {
    let path = pid.map_or("/proc/self/status".to_owned(), |p| {
        format!("/proc/{p}/status")
    });
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

impl Outcome {
    fn count(&mut self, (ok, latency): (bool, Duration)) {
        if ok {
            self.ok += 1;
            self.latencies.push(latency);
        } else {
            self.failed += 1;
        }
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

pub fn report(name: &str, rate: u32, o: &Outcome) {
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

/// Serves `app` on a free loopback port; returns its base URL.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}
