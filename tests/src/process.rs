//! `opsbot serve` as a separate process, for the crash test (`tests/tests/crash.rs`) and
//! `serve_bench`: started, and waited for until it answers.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Starts `command` and waits until `url` (its `/healthz` or `/readyz`) answers 200; panics,
/// with the process stopped, when it does not within 30 s.
pub async fn start_and_wait(mut command: Command, url: &str) -> Child {
    let mut child = command.spawn().expect("start opsbot serve");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(res) = http.get(url).send().await
            && res.status() == 200
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("opsbot serve did not answer {url} within 30 s");
}
