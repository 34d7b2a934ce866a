//! `opsbot serve` as an operator runs it: the real binary in its own process, on SQLite against
//! kubesim, replying to a fake Slack Web API (both in this process, so they do not count).
//! Signed `/ops status` slash commands are fired at it at each rate in turn (open loop, as in
//! `slack_bench`: ack latency from each request's due time), then in a burst
//! (`--burst-clients` closed loops for 2 s). After each run the bot's resident memory is read
//! from `/proc/PID/status`: its peak so far (`VmHWM`) and now (`VmRSS`), and once more after a
//! quiet spell. Run it through `scripts/bench.sh`; measured, never asserted.
//!
//! Options: `--bin PATH` (the `opsbot` binary, required), `--rates 1000,2000,5000`, `--secs N`
//! (per rate, default 5), `--burst-clients N` (default 512; 0: no burst), `--max-in-flight N`
//! (the bot's `engine.max_in_flight`; default: the bot's default), `--policy FILE` (the bot's
//! policy: FILE, which must end with its `rules:` list, plus a rule that lets everyone run
//! `status`; default: that rule alone), `--edit-policy` (rewrite the policy file every second
//! during the runs, so the bot reloads it while it answers).
//!
//! The bot's rate limits are raised out of the way, so every command that is not refused as busy
//! runs the whole pipeline.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kubesim::{KubeSim, Seed};
use opsbot_tests::bench::{closed_loop, fire, memory_mib, report};
use opsbot_tests::process::{ServeConfig, start_and_wait};
use opsbot_tests::slack_fake::{self, SlackFake};

const TOKEN: &str = "xoxb-bench";
const SECRET: &str = "bench-signing-secret";
/// A policy without rules of its own (the benchmark adds [`READ_RULE`]).
const NO_RULES: &str = "version: 1\nrules:\n";
/// The rule every policy of this benchmark ends with: anyone may run `status`.
const READ_RULE: &str = "  - { name: bench-read, roles: [\"*\"], actions: [status] }\n";

struct Args {
    bin: String,
    rates: Vec<u32>,
    secs: u32,
    burst_clients: u32,
    /// The bot's `engine.max_in_flight`; its default when `None`.
    max_in_flight: Option<usize>,
    /// The policy's rules before [`READ_RULE`]: a file's text, or none.
    policy: Option<String>,
    edit_policy: bool,
}

fn args() -> Args {
    let mut a = Args {
        bin: String::new(),
        rates: vec![1000, 2000, 5000],
        secs: 5,
        burst_clients: 512,
        max_in_flight: None,
        policy: None,
        edit_policy: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--edit-policy" {
            a.edit_policy = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--bin" => a.bin = value,
            "--rates" => {
                a.rates = value
                    .split(',')
                    .map(|r| r.parse::<u32>().expect("--rates N,N,…").clamp(1, 5000))
                    .collect();
            }
            "--secs" => a.secs = value.parse::<u32>().expect("--secs N").clamp(1, 60),
            "--burst-clients" => {
                a.burst_clients = value.parse::<u32>().expect("--burst-clients N").min(1024);
            }
            "--policy" => {
                a.policy = Some(std::fs::read_to_string(&value).expect("--policy FILE"));
            }
            "--max-in-flight" => a.max_in_flight = Some(value.parse().expect("--max-in-flight N")),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        !a.bin.is_empty(),
        "--bin PATH (the opsbot binary) is required"
    );
    a
}

fn write_config(
    dir: &Path,
    sim: &KubeSim,
    fake: &SlackFake,
    port: u16,
    args: &Args,
) -> std::path::PathBuf {
    let engine = args
        .max_in_flight
        .map(|n| format!("engine: {{ max_in_flight: {n} }}\n"))
        .unwrap_or_default();
    ServeConfig {
        sim,
        slack_api: fake.api_url(),
        bot_token: TOKEN,
        signing_secret: SECRET,
        port,
        policy: &policy(args.policy.as_deref(), 0),
        extra: &engine,
    }
    .write(dir)
}

/// The policy's text: `rules` (else none) and [`READ_RULE`]; `edit` makes each edit's text differ.
fn policy(rules: Option<&str>, edit: u64) -> String {
    format!("{}{READ_RULE}# edit {edit}\n", rules.unwrap_or(NO_RULES))
}

/// Starts `opsbot serve` and waits until it answers `/readyz`.
async fn start(bin: &str, config: &Path, base: &str) -> Child {
    let mut command = Command::new(bin);
    command
        .args(["--config".as_ref(), config.as_os_str(), "serve".as_ref()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    start_and_wait(command, &format!("{base}/readyz")).await
}

/// A signed `/ops status` slash command, distinct by `tag`.
fn command(http: &reqwest::Client, base: &str, tag: &str) -> reqwest::Request {
    slack_fake::slash_command(
        SECRET,
        "/ops",
        "status rust-webapi -n api",
        "UBENCH",
        "C0BENCH",
        &format!("serve.{tag}.{}", std::process::id()),
    )
    .build(http, base)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let sim = KubeSim::start(Seed::default_seed()).await.expect("kubesim");
    let fake = SlackFake::start(TOKEN).await;
    // Only the bot's memory is measured, but this process should not grow without end either.
    fake.keep_recent(64);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = write_config(dir.path(), &sim, &fake, port, &args);
    let mut child = start(&args.bin, &config, &base).await;
    let pid = child.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("HTTP client");

    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "opsbot serve (pid {pid}, SQLite, kubesim, fake Slack Web API): idle {:.1} MiB",
        memory_mib(Some(pid), "VmRSS:")
    );
    // Warm up (connections, caches, the database's pages), unreported, as slack_bench does.
    let _ = fire(&http, 250, 500, |i| {
        command(&http, &base, &format!("warm.{i}"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "{:<22} {:>8} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "target", "rate", "ok", "failed", "p50", "p99", "max", "throughput"
    );
    if args.edit_policy {
        let (file, rules) = (dir.path().join("policy.yaml"), args.policy.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for edit in 1.. {
                tick.tick().await;
                let text = policy(rules.as_deref(), edit);
                // Written whole and renamed into place, as an editor or a ConfigMap update does.
                let next = file.with_extension("yaml.next");
                if std::fs::write(&next, text).is_ok() {
                    let _ = std::fs::rename(&next, &file);
                }
            }
        });
        println!("the policy file is rewritten every second");
    }
    let mut replies = fake.count_of("chat.postMessage");
    for &rate in &args.rates {
        let n = (rate * args.secs) as usize;
        let out = fire(&http, n, rate, |i| {
            command(&http, &base, &format!("{rate}.{i}"))
        })
        .await;
        report("opsbot serve", rate, &out);
        // Let the accepted commands finish (each is answered through the fake Web API).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let answered = fake.count_of("chat.postMessage");
        println!(
            "memory at {rate}/s: peak {:.1} MiB, after {:.1} MiB ({} commands run to their answer, the rest refused as busy)",
            memory_mib(Some(pid), "VmHWM:"),
            memory_mib(Some(pid), "VmRSS:"),
            answered - replies,
        );
        replies = answered;
    }
    if args.burst_clients == 0 {
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    let got = closed_loop(&http, args.burst_clients, 2, {
        let (http, base) = (http.clone(), base.clone());
        move |c, i| command(&http, &base, &format!("burst.{c}.{i}"))
    })
    .await;
    let acks = got.ok + got.busy;
    let peak = memory_mib(Some(pid), "VmHWM:");
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "memory after a burst ({} clients, 2 s, {acks} acks): peak {peak:.1} MiB, 5 s later {:.1} MiB ({} commands run to their answer)",
        args.burst_clients,
        memory_mib(Some(pid), "VmRSS:"),
        fake.count_of("chat.postMessage") - replies,
    );
    let _ = child.kill();
    let _ = child.wait();
}
