//! The real Alertmanager (Debian's `prometheus-alertmanager`) as a peer: started on a free
//! loopback port with storage in a temp dir, no gossip, and one webhook receiver pointing at
//! the bot with a bearer token and short group timers.
//!
//! When the binary is missing the test is skipped with a loud message on stderr, except under
//! `CI=true`, where that is a failure (`.ci/run` installs it).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

/// Where Debian installs it; `OPSBOT_TEST_ALERTMANAGER` overrides.
pub const DEFAULT_BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// A running Alertmanager, killed on drop.
pub struct Alertmanager {
    pub url: String,
    child: Child,
    _dir: TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    std::env::var("OPSBOT_TEST_ALERTMANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(DEFAULT_BINARY))
}

/// A free loopback port (bound and released: good enough for a child process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl Alertmanager {
    /// Starts Alertmanager with a receiver posting to `webhook` with `Authorization: Bearer
    /// {token}`, grouping by `alertname`, `group_wait`/`group_interval` 1s. `None` (after a
    /// loud message) when the binary is missing outside CI.
    pub async fn start(test: &str, webhook: &str, token: &str) -> Option<Alertmanager> {
        Alertmanager::start_on(test, free_port(), webhook, token).await
    }

    /// [`Alertmanager::start`] on `port` (chosen beforehand, so the bot's configuration can
    /// name it before Alertmanager runs).
    pub async fn start_on(
        test: &str,
        port: u16,
        webhook: &str,
        token: &str,
    ) -> Option<Alertmanager> {
        let bin = binary();
        if !bin.exists() {
            assert!(
                !crate::in_ci(),
                "{} is missing but CI=true: .ci/run installs prometheus-alertmanager",
                bin.display()
            );
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test}: {} not found; install Debian's prometheus-alertmanager \
                 (apt-get install prometheus-alertmanager) to run the Alertmanager tests ***\n",
                bin.display()
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "route:\n  receiver: opsbot\n  group_by: [alertname]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: opsbot\n    webhook_configs:\n      - url: {webhook}\n        \
             send_resolved: true\n        http_config:\n          authorization:\n            \
             credentials: {token}\n"
        );
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config).expect("write alertmanager.yml");
        let url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let am = Alertmanager {
            url,
            child,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                return Some(am);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log =
            std::fs::read_to_string(am._dir.path().join("alertmanager.log")).unwrap_or_default();
        panic!("Alertmanager did not become ready; its log:\n{log}");
    }

    /// Posts alerts through API v2 (`POST /api/v2/alerts`).
    pub async fn post_alerts(&self, alerts: &Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(alerts)
            .send()
            .await
            .expect("post alerts");
        assert!(r.status().is_success(), "post alerts: {}", r.status());
    }

    /// `GET /api/v2/silences`.
    pub async fn silences(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("{}/api/v2/silences", self.url))
            .send()
            .await
            .expect("get silences")
            .json()
            .await
            .expect("silences JSON")
    }
}

/// One alert as API v2 takes it; `ends_in` sets `endsAt` relative to now (negative: resolved).
pub fn alert(labels: &[(&str, &str)], summary: &str, ends_in: Option<i64>) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    let now = jiff::Timestamp::now();
    let mut a = json!({
        "labels": labels,
        "annotations": {"summary": summary, "runbook_url": "https://runbooks.example/crashloop"},
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "startsAt": (now - jiff::SignedDuration::from_secs(60)).to_string(),
    });
    if let Some(secs) = ends_in {
        a["endsAt"] = Value::from((now + jiff::SignedDuration::from_secs(secs)).to_string());
    }
    a
}
