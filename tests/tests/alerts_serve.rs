//! Alertmanager intake on `opsbot serve`: the bot started through `app::start` with an
//! `alerts:` section, the real Alertmanager delivering to its webhook, and the fake Slack
//! showing the messages. Payload edge cases are posted to the bot directly.

use std::collections::BTreeMap;
use std::time::Duration;

use kubesim::{KubeSim, Seed};
use opsbot::config::Config;
use opsbot_tests::alertmanager::{Alertmanager, alert};
use opsbot_tests::slack_fake::{Message, SlackFake};
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-alerts-token";
const SECRET: &str = "alerts-signing-secret";
const WEBHOOK_TOKEN: &str = "am-webhook-token-123";
const PATIENCE: Duration = Duration::from_secs(60);
const EMERGENCY: &str = "C0EMERGENCY";
const ALERTS: &str = "C0ALERTS";

struct Setup {
    _sim: KubeSim,
    _dir: tempfile::TempDir,
    fake: SlackFake,
    bot: opsbot::app::Bot,
    base: String,
}

async fn start(extra: &str) -> Setup {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = SlackFake::start(TOKEN).await;
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).unwrap();
    let yaml = format!(
        "data_dir: {dir}\n\
         policy: policy.yaml\n\
         listen: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n\
         slack:\n  api_url: {api}\n\
         alerts:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      channel: slack:{EMERGENCY}\n  \
         default_channel: slack:{ALERTS}\n{extra}",
        dir = dir.path().display(),
        api = fake.api_url(),
    );
    let file = dir.path().join("opsbot.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let env: BTreeMap<String, String> = [
        ("OPSBOT_SLACK_BOT_TOKEN", TOKEN),
        ("OPSBOT_SLACK_SIGNING_SECRET", SECRET),
        ("OPSBOT_ALERTS_WEBHOOK_TOKEN", WEBHOOK_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::load_with_env(Some(&file), &env).unwrap();
    let bot = opsbot::app::start(&config).await.unwrap();
    let base = format!("http://{}", bot.addr);
    Setup {
        _sim: sim,
        _dir: dir,
        fake,
        bot,
        base,
    }
}

fn text(m: &Message) -> String {
    let mut out = vec![m.params.to_string()];
    if let Some(t) = m.params.get("text").and_then(Value::as_str) {
        out.push(t.to_owned());
    }
    out.join("\n")
}

fn in_channel(fake: &SlackFake, channel: &str) -> Vec<Message> {
    fake.messages()
        .into_iter()
        .filter(|m| m.channel == channel)
        .collect()
}

/// Waits until a message in `channel` contains every needle; returns the channel's messages.
async fn wait_for(fake: &SlackFake, channel: &str, needles: &[&str]) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let msgs = in_channel(fake, channel);
        if msgs
            .iter()
            .any(|m| needles.iter().all(|n| text(m).contains(n)))
        {
            return msgs;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "no message in {channel} with {needles:?}; messages: {:#?}",
                msgs.iter().map(text).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_groups_become_one_message_each_edited_in_place() {
    let s = start("").await;
    let Some(am) = Alertmanager::start(
        "alertmanager_groups_become_one_message_each_edited_in_place",
        &format!("{}/alertmanager", s.base),
        WEBHOOK_TOKEN,
    )
    .await
    else {
        return;
    };

    // A critical group goes to #emergency-alerts, a warning group to the default channel.
    let crash = |pod: &str, ends| {
        alert(
            &[
                ("alertname", "KubePodCrashLooping"),
                ("severity", "critical"),
                ("namespace", "production"),
                ("pod", pod),
            ],
            "Pod is crash looping",
            ends,
        )
    };
    am.post_alerts(&json!([crash("api-1", None)])).await;
    am.post_alerts(&json!([alert(
        &[
            ("alertname", "DiskFilling"),
            ("severity", "warning"),
            ("namespace", "gc-storage")
        ],
        "Disk 85% full",
        None
    )]))
    .await;
    let first = wait_for(
        &s.fake,
        EMERGENCY,
        &["FIRING 1", "KubePodCrashLooping", "pod=api-1"],
    )
    .await;
    assert_eq!(first.len(), 1);
    for needle in [
        "critical",
        "Pod is crash looping",
        "https://runbooks.example/crashloop",
        "http://prometheus.example/graph",
        "namespace=production",
        "Ack",
    ] {
        assert!(
            text(&first[0]).contains(needle),
            "{needle} missing: {}",
            text(&first[0])
        );
    }
    wait_for(
        &s.fake,
        ALERTS,
        &["DiskFilling", "warning", "Disk 85% full"],
    )
    .await;
    assert!(
        in_channel(&s.fake, ALERTS)
            .iter()
            .all(|m| !text(m).contains("KubePodCrashLooping")),
        "the critical group is not in the default channel"
    );

    // A second alert in the same group edits the same message.
    am.post_alerts(&json!([crash("api-1", None), crash("api-2", None)]))
        .await;
    let msgs = wait_for(&s.fake, EMERGENCY, &["FIRING 2", "pod=api-1", "pod=api-2"]).await;
    assert_eq!(msgs.len(), 1, "one message per group and channel");
    assert!(msgs[0].updates >= 1);

    // Both resolve: the same message says so, and for how long it fired.
    am.post_alerts(&json!([crash("api-1", Some(-1)), crash("api-2", Some(-1))]))
        .await;
    let msgs = wait_for(&s.fake, EMERGENCY, &["RESOLVED", "fired for"]).await;
    assert_eq!(msgs.len(), 1);

    // Every alert is in the database, and each notification in the audit log.
    let (firing, resolved) = s.bot.engine.store().count_alerts().await.unwrap();
    assert_eq!((firing, resolved), (1, 2));
    let audit = s.bot.engine.store().tail(200).await.unwrap();
    let intake: Vec<_> = audit
        .iter()
        .filter(|r| r.entry.platform == "alertmanager")
        .collect();
    assert!(
        intake.len() >= 4,
        "one audit record per notification: {}",
        intake.len()
    );
    let json = serde_json::to_string(&audit.iter().map(|r| &r.entry).collect::<Vec<_>>()).unwrap();
    assert!(
        !json.contains(WEBHOOK_TOKEN),
        "the webhook token is never audited"
    );
    s.bot.stop().await.unwrap();
}
