//! `opsbot serve` as an operator runs it: from a configuration file, on port 0, with health,
//! readiness and metrics endpoints, and a graceful stop.

use std::collections::BTreeMap;

use kubesim::{KubeSim, Seed};
use opsbot::config::Config;

/// Writes a kubeconfig for `sim`, a policy and an `opsbot.yaml` into `dir`; returns the config.
fn config_for(sim: &KubeSim, dir: &std::path::Path) -> Config {
    std::fs::write(dir.join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).unwrap();
    let yaml = format!(
        "data_dir: {dir}\n\
         policy: policy.yaml\n\
         listen: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n",
        dir = dir.display()
    );
    let file = dir.join("opsbot.yaml");
    std::fs::write(&file, &yaml).unwrap();
    Config::load_with_env(Some(&file), &BTreeMap::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_graceful_stop() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&sim, dir.path());
    let bot = opsbot::app::start(&config).await.unwrap();
    let base = format!("http://{}", bot.addr);
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], true, "{body}");
    assert_eq!(body["clusters"]["sim"], true, "{body}");
    assert!(body["policy"].as_str().unwrap().contains("rules"), "{body}");

    // The embedded SQLite default lives in the data directory.
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.ends_with(".db")), "{files:?}");

    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE opsbot_pending_approvals gauge"),
        "{text}"
    );
    assert!(text.contains("opsbot_rate_limited_total 0"), "{text}");

    // Without its cluster the bot is alive but not ready.
    drop(sim);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["clusters"]["sim"], false, "{body}");
    assert_eq!(body["database"], true, "{body}");

    bot.stop().await.unwrap();
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer listening after stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_configured_slack_fails_at_start() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&sim, dir.path());
    // A bot token but no signing secret: HTTP mode could verify nothing.
    config.slack.bot_token = Some(opsbot::config::Secret::new("xoxb-test"));
    let Err(err) = opsbot::app::start(&config).await else {
        panic!("start must refuse a Slack section without a signing secret");
    };
    assert!(err.to_string().contains("signing"), "{err}");
    assert!(!err.to_string().contains("xoxb-test"), "{err}");
}
