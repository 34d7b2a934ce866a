//! `opsbot serve` as an operator runs it: from a configuration file, on port 0, with health,
//! readiness and metrics endpoints, and a graceful stop.

use std::collections::BTreeMap;

use kubesim::{KubeSim, Seed};
use opsbot::config::Config;
use opsbot_tests::eventually;

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

    // Right after start the pool can be busy for a moment (migrations done, the first sweep and
    // checkpoint running): saturation is a passing degradation, so wait for it to pass.
    let (status, body) = readyz_until(&http, &base, |_, b| b["degraded"] == false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], true, "{body}");
    assert_eq!(body["clusters"]["sim"], true, "{body}");
    assert!(body["policy"].as_str().unwrap().contains("rules"), "{body}");
    assert_eq!(body["degraded"], false, "{body}");
    assert_eq!(body["problems"], serde_json::json!([]), "{body}");
    assert_eq!(body["policy_refused"], serde_json::Value::Null, "{body}");
    assert_eq!(body["pool"]["max"], 4, "{body}");
    assert_eq!(body["pool"]["saturated"], false, "{body}");
    assert_eq!(
        body["backlog"],
        serde_json::json!({"len": 0, "cap": 64, "open_in_inbox": 0}),
        "the default cap on requests in flight"
    );

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

    // Without its cluster the bot is degraded, not unready: alerts and incidents still work,
    // and an API server outage must not take every replica out of the Service.
    drop(sim);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["clusters"]["sim"], false, "{body}");
    assert_eq!(body["database"], true, "{body}");
    assert_eq!(
        (&body["ready"], &body["degraded"]),
        (&true.into(), &true.into())
    );
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("cluster sim: the API server is unreachable"),
        "{body}"
    );

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

/// `/readyz` once the bot has had time to notice: polls until `until` holds (the policy is
/// re-read every 2 s), or fails after 20 s with the last answer.
async fn readyz_until(
    http: &reqwest::Client,
    base: &str,
    until: impl Fn(u16, &serde_json::Value) -> bool,
) -> (u16, serde_json::Value) {
    let probe = || async {
        let res = http.get(format!("{base}/readyz")).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    };
    let limit = std::time::Duration::from_secs(20);
    eventually(limit, "/readyz to show it", probe, |(s, b)| until(*s, b)).await
}

/// Makes `path` read-only for this process, also when it runs as root (then with the immutable
/// attribute, which root's writes respect too). Undone on drop.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn make(path: &std::path::Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let writable = || std::fs::OpenOptions::new().write(true).open(path).is_ok();
        if writable() {
            // Root ignores file modes.
            let _ = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status();
        }
        assert!(
            !writable(),
            "cannot make {} read-only here (root without chattr?)",
            path.display()
        );
        ReadOnly(path.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o644));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_refused_policy_a_full_backlog_and_an_unwritable_database() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&sim, dir.path());
    config.engine.max_in_flight = 2;
    let bot = opsbot::app::start(&config).await.unwrap();
    let base = format!("http://{}", bot.addr);
    let http = reqwest::Client::new();

    // A broken policy edit: still ready on the old policy, but degraded, with the file's error.
    std::fs::write(dir.path().join("policy.yaml"), "version: 1\nrules: 5\n").unwrap();
    let (status, body) = readyz_until(&http, &base, |_, b| !b["policy_refused"].is_null()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["ready"], &body["degraded"]),
        (&true.into(), &true.into())
    );
    let refused = body["policy_refused"].as_str().unwrap();
    assert!(refused.contains("policy.yaml:2:"), "{body}");
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("previous policy")
    );
    std::fs::write(dir.path().join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).unwrap();
    let (status, body) = readyz_until(&http, &base, |_, b| b["degraded"] == false).await;
    assert_eq!(
        (status, &body["policy_refused"]),
        (200, &serde_json::Value::Null)
    );

    // As many requests in flight as the engine takes (the config says 2): not ready.
    let take = |n: usize| {
        opsbot::engine::Inbound::Command(opsbot::chat::Invocation {
            platform: "console",
            user: opsbot_policies::Subject::parse("console:bob").unwrap(),
            groups: Vec::new(),
            groups_unknown: false,
            channel: "console".into(),
            text: "help".into(),
            delivery_id: Some(format!("readyz-{n}")),
            origin: None,
        })
    };
    let held = (
        bot.engine.accept(&take(1)).await.unwrap(),
        bot.engine.accept(&take(2)).await.unwrap(),
    );
    let (status, body) = readyz_until(&http, &base, |_, _| true).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["backlog"],
        serde_json::json!({"len": 2, "cap": 2, "open_in_inbox": 2})
    );
    assert!(body["problems"][0].as_str().unwrap().contains("backlog"));
    drop(held);

    // The database file made read-only: it still answers, but takes no writes.
    let db = dir.path().join("opsbot.db");
    {
        let _read_only = ReadOnly::make(&db);
        let (status, body) = readyz_until(&http, &base, |_, _| true).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["database"], false, "{body}");
        let problem = body["problems"][0].as_str().unwrap();
        assert!(problem.contains("does not take writes"), "{body}");
        assert!(problem.contains("cannot be written"), "{body}");
    }
    let (status, body) = readyz_until(&http, &base, |_, _| true).await;
    assert_eq!(status, 200, "writable again: {body}");

    // Another process holds the database's write lock (an outage as opsbot sees it): not
    // ready while it lasts, ready again as soon as it ends.
    {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", db.display());
        let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut locker)
            .await
            .unwrap();
        let (status, body) = readyz_until(&http, &base, |status, _| status == 503).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["database"], false, "{body}");
        sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
        locker.close().await.unwrap();
    }
    let (status, body) = readyz_until(&http, &base, |status, _| status == 200).await;
    assert_eq!(status, 200, "the lock is gone: {body}");

    // The database file deleted under the running bot (its open handles still work).
    std::fs::remove_file(&db).unwrap();
    let (status, body) = readyz_until(&http, &base, |_, _| true).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], false, "{body}");
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_log_shorter_than_its_last_checkpoint() {
    use sqlx::Connection as _;
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&sim, dir.path());
    let bot = opsbot::app::start(&config).await.unwrap();
    for i in 0..3 {
        let entry = opsbot::store::AuditEntry::new(opsbot::store::AuditKind::Request, "console")
            .text(format!("status api-{i}"));
        bot.engine.store().append(entry).await.unwrap();
    }
    // A clean stop checkpoints the head.
    bot.stop().await.unwrap();
    let key = dir.path().join("audit.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }
    let anchors = std::fs::read_to_string(dir.path().join("audit.anchors")).unwrap();
    let last: serde_json::Value = serde_json::from_str(anchors.lines().last().unwrap()).unwrap();
    assert_eq!(last["id"], 3, "{anchors}");

    // It starts again on the untouched log (and keeps the key).
    let key_text = std::fs::read_to_string(&key).unwrap();
    let bot = opsbot::app::start(&config).await.unwrap();
    bot.stop().await.unwrap();
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_text);

    let url = format!("sqlite://{}", dir.path().join("opsbot.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE id > 1")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let Err(err) = opsbot::app::start(&config).await else {
        panic!("serve must refuse a truncated audit log");
    };
    let text = err.to_string();
    assert!(text.contains("records 2..3 are missing"), "{text}");
    assert!(text.contains("refusing to start"), "{text}");
    assert!(!text.contains(key_text.trim()), "{text}");
}
