//! `opsbot serve` as a separate process, for the crash test (`tests/tests/crash.rs`) and
//! `serve_bench`: its configuration written, started, and waited for until it answers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kubesim::KubeSim;

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

/// What `opsbot serve` runs on, in a test or a benchmark: kubesim, the fake Slack Web API, a
/// policy, and a port on loopback. The rate limits are out of the way.
pub struct ServeConfig<'a> {
    pub sim: &'a KubeSim,
    /// The fake's `api_url`.
    pub slack_api: String,
    pub bot_token: &'a str,
    pub signing_secret: &'a str,
    pub port: u16,
    /// The policy file's text.
    pub policy: &'a str,
    /// Further top-level configuration, YAML lines (`engine: …`, `approvals: …`).
    pub extra: &'a str,
}

impl ServeConfig<'_> {
    /// Writes the kubeconfig, the policy and `opsbot.yaml` into `dir`; returns the last's path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::write(dir.join("kubeconfig"), self.sim.kubeconfig_yaml()).expect("kubeconfig");
        std::fs::write(dir.join("policy.yaml"), self.policy).expect("policy");
        let yaml = format!(
            "data_dir: {dir}\n\
             policy: policy.yaml\n\
             listen: 127.0.0.1:{port}\n\
             rate_limits:\n\
             \x20 per_user: {{ per_minute: 10000000, burst: 100000 }}\n\
             \x20 per_channel: {{ per_minute: 10000000, burst: 100000 }}\n\
             \x20 global: {{ per_minute: 10000000, burst: 100000 }}\n\
             clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n\
             slack:\n  bot_token: {token}\n  signing_secret: {secret}\n  api_url: {api}\n{extra}",
            dir = dir.display(),
            port = self.port,
            token = self.bot_token,
            secret = self.signing_secret,
            api = self.slack_api,
            extra = self.extra,
        );
        let file = dir.join("opsbot.yaml");
        std::fs::write(&file, yaml).expect("configuration");
        file
    }
}
