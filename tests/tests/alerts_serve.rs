//! Alertmanager intake on `opsbot serve`: the bot started through `app::start` with an
//! `alerts:` section, the real Alertmanager delivering to its webhook, and the fake Slack
//! showing the messages. Payload edge cases are posted to the bot directly.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use kubesim::{KubeSim, Seed};
use opsbot::config::Config;
use opsbot_tests::alertmanager::{Alertmanager, alert, free_port};
use opsbot_tests::eventually;
use opsbot_tests::slack_fake::{self, Message, SlackFake};
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-alerts-token";
const SECRET: &str = "alerts-signing-secret";
const WEBHOOK_TOKEN: &str = "am-webhook-token-123";
const PATIENCE: Duration = Duration::from_secs(60);
const EMERGENCY: &str = "C0EMERGENCY";
const ALERTS: &str = "C0ALERTS";

struct Setup {
    _sim: KubeSim,
    dir: std::sync::Arc<tempfile::TempDir>,
    fake: std::sync::Arc<SlackFake>,
    bot: opsbot::app::Bot,
    base: String,
}

async fn start(extra: &str) -> Setup {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let fake = std::sync::Arc::new(SlackFake::start(TOKEN).await);
    start_with(dir, fake, extra, None).await
}

/// A bot in `dir` (its database: a second bot in the same dir is a replica) posting to `fake`.
async fn start_with(
    dir: std::sync::Arc<tempfile::TempDir>,
    fake: std::sync::Arc<SlackFake>,
    extra: &str,
    database_url: Option<&str>,
) -> Setup {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
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
    .chain(database_url.map(|u| ("OPSBOT_DATABASE_URL", u)))
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::load_with_env(Some(&file), &env).unwrap();
    let bot = opsbot::app::start(&config).await.unwrap();
    let base = format!("http://{}", bot.addr);
    Setup {
        _sim: sim,
        dir,
        fake,
        bot,
        base,
    }
}

/// A bot whose silences go to a real Alertmanager that delivers to the bot's webhook; `None`
/// when the Alertmanager binary is missing outside CI (the test is skipped, loudly).
async fn with_alertmanager(test: &str) -> Option<(Setup, Alertmanager)> {
    let am_port = free_port();
    let s = start(&format!(
        "  alertmanagers:\n    - url: http://127.0.0.1:{am_port}\n"
    ))
    .await;
    let am = Alertmanager::start_on(
        test,
        am_port,
        &format!("{}/alertmanager", s.base),
        WEBHOOK_TOKEN,
    )
    .await?;
    Some((s, am))
}

fn text(m: &Message) -> String {
    let mut out = vec![m.params.to_string()];
    if let Some(t) = m.params.get("text").and_then(Value::as_str) {
        out.push(t.to_owned());
    }
    out.join("\n")
}

/// The value of the button `action` on a message.
fn button_value(m: &Message, action: &str) -> String {
    let blocks = m.params["blocks"].as_array().cloned().unwrap_or_default();
    blocks
        .iter()
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find(|e| e["action_id"] == action)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no {action} button on {}", text(m)))
}

fn in_channel(fake: &SlackFake, channel: &str) -> Vec<Message> {
    fake.messages()
        .into_iter()
        .filter(|m| m.channel == channel)
        .collect()
}

/// How many messages were posted in `channel` (edits not counted).
fn posts_in(fake: &SlackFake, channel: &str) -> usize {
    fake.calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.param("channel") == Some(channel))
        .count()
}

/// Waits until a message in `channel` contains every needle; returns the channel's messages.
async fn wait_for(fake: &SlackFake, channel: &str, needles: &[&str]) -> Vec<Message> {
    eventually(
        PATIENCE,
        &format!("a message in {channel} with {needles:?}"),
        || async { in_channel(fake, channel) },
        |msgs| {
            msgs.iter()
                .any(|m| needles.iter().all(|n| text(m).contains(n)))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_groups_become_one_message_each_edited_in_place() {
    let Some((s, am)) =
        with_alertmanager("alertmanager_groups_become_one_message_each_edited_in_place").await
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

    let ts = msgs[0].ts.clone();
    let group_id = button_value(&msgs[0], "alert_ack");
    let http = reqwest::Client::new();
    let click = |action: &str, user: &str, n: u32| {
        slack_fake::button_click(
            SECRET,
            action,
            &group_id,
            user,
            EMERGENCY,
            &ts,
            &format!("{n}.5"),
        )
    };

    // Ack: the message shows who is looking.
    assert_eq!(
        click("alert_ack", "U01SRELEAD", 1)
            .send(&http, &s.base)
            .await
            .status(),
        200
    );
    wait_for(&s.fake, EMERGENCY, &["<@U01SRELEAD> is looking"]).await;

    // Someone the policy does not allow: told so privately, nothing silenced.
    click("alert_silence_1h", "U0NOBODY", 2)
        .send(&http, &s.base)
        .await;
    s.fake
        .wait_until(PATIENCE, |calls| {
            calls.iter().any(|c| {
                c.method == "chat.postEphemeral"
                    && c.param("user") == Some("U0NOBODY")
                    && c.all_text().contains("Not allowed: alert.silence")
            })
        })
        .await;
    assert!(
        in_channel(&s.fake, EMERGENCY)
            .iter()
            .all(|m| !text(m).contains("Not allowed")),
        "the refusal is not posted in the channel"
    );
    assert!(am.silences().await.is_empty());

    // Silence 1h: a silence in Alertmanager by the clicker, on the group's labels and its
    // namespace (the group is by alertname alone: not the alert in every namespace); shown.
    click("alert_silence_1h", "U01SRELEAD", 3)
        .send(&http, &s.base)
        .await;
    wait_for(
        &s.fake,
        EMERGENCY,
        &["Silenced", "by <@U01SRELEAD> until", "Expire silence"],
    )
    .await;
    let silences = am.silences().await;
    assert_eq!(silences.len(), 1, "{silences:?}");
    assert_eq!(silences[0]["createdBy"], "slack:U01SRELEAD");
    assert_eq!(silences[0]["status"]["state"], "active");
    assert_eq!(
        silences[0]["matchers"],
        json!([
            {"name": "alertname", "value": "KubePodCrashLooping", "isRegex": false, "isEqual": true},
            {"name": "namespace", "value": "production", "isRegex": false, "isEqual": true}
        ])
    );
    // It stops the notifications: a new alert of the group does not reach the message.
    am.post_alerts(&json!([
        crash("api-1", None),
        crash("api-2", None),
        crash("api-3", None)
    ]))
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now = in_channel(&s.fake, EMERGENCY);
    let group_msg = now.iter().find(|m| m.ts == ts).unwrap();
    assert!(
        !text(group_msg).contains("pod=api-3"),
        "silenced: no notification"
    );

    // Expire: the silence ends in Alertmanager, which then notifies the new alert.
    click("alert_expire", "U01SRELEAD", 4)
        .send(&http, &s.base)
        .await;
    wait_for(&s.fake, EMERGENCY, &["FIRING 3", "pod=api-3", "Silence 1h"]).await;
    let silences = am.silences().await;
    assert_eq!(silences[0]["status"]["state"], "expired");

    // All resolve: the same message says so, and for how long it fired.
    am.post_alerts(&json!([
        crash("api-1", Some(-1)),
        crash("api-2", Some(-1)),
        crash("api-3", Some(-1))
    ]))
    .await;
    let msgs = wait_for(&s.fake, EMERGENCY, &["RESOLVED", "fired for"]).await;
    assert_eq!(
        msgs.iter()
            .filter(|m| text(m).contains("KubePodCrashLooping"))
            .count(),
        1,
        "one message for the group"
    );

    // Every alert is in the database, and each notification in the audit log.
    let (firing, resolved) = s.bot.engine.store().count_alerts().await.unwrap();
    assert_eq!((firing, resolved), (1, 3));
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

/// A webhook body as Alertmanager sends it: group `alertname`, one alert per `(pod, status)`.
fn payload(alertname: &str, severity: &str, alerts: &[(&str, &str)]) -> Value {
    let list: Vec<Value> = alerts
        .iter()
        .map(|(pod, status)| {
            json!({
                "status": status,
                "labels": {"alertname": alertname, "severity": severity, "pod": pod},
                "annotations": {"summary": format!("{pod} is unwell")},
                "startsAt": "2026-01-01T10:00:00Z",
                "endsAt": if *status == "resolved" { "2026-01-01T11:30:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus.example/graph",
                "fingerprint": format!("fp-{alertname}-{pod}")
            })
        })
        .collect();
    let firing = alerts.iter().any(|(_, s)| *s == "firing");
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "opsbot",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "severity": severity},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list
    })
}

async fn post(base: &str, auth: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/alertmanager"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn bearer() -> String {
    format!("Bearer {WEBHOOK_TOKEN}")
}

fn chat_writes(fake: &SlackFake, channel: &str) -> Vec<opsbot_tests::slack_fake::Call> {
    fake.calls()
        .into_iter()
        .filter(|c| {
            (c.method == "chat.postMessage" || c.method == "chat.update")
                && c.param("channel") == Some(channel)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_answers_what_makes_alertmanager_do_the_right_thing() {
    // Basic auth as well as the bearer token (Alertmanager's http_config sends either).
    let s = start("  webhook_basic_auth:\n    username: am\n    password: s3cret-basic\n").await;
    let good = payload("Crash", "warning", &[("a", "firing")]).to_string();

    // Credentials: none or wrong → 401, nothing stored.
    assert_eq!(post(&s.base, None, good.clone()).await.0, 401);
    assert_eq!(
        post(&s.base, Some("Bearer nope"), good.clone()).await.0,
        401
    );
    assert_eq!(
        post(&s.base, Some("Basic YW06d3Jvbmc="), good.clone())
            .await
            .0,
        401
    );
    assert_eq!(s.bot.engine.store().count_alerts().await.unwrap(), (0, 0));

    // Stored once; the same state again changes nothing and writes nothing more.
    assert_eq!(
        post(&s.base, Some(&bearer()), good.clone()).await,
        (200, r#"{"status":"stored"}"#.to_owned())
    );
    wait_for(&s.fake, ALERTS, &["Crash", "pod=a"]).await;
    let basic = "Basic YW06czNjcmV0LWJhc2lj"; // am:s3cret-basic
    assert_eq!(
        post(&s.base, Some(basic), good.clone()).await,
        (200, r#"{"status":"unchanged"}"#.to_owned())
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        chat_writes(&s.fake, ALERTS).len(),
        1,
        "a repeat writes nothing"
    );

    // Malformed payloads: 400 (Alertmanager drops them); nothing stored.
    for bad in [
        b"{not json".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        br#"{"version":"3","groupKey":"x","status":"firing","alerts":[]}"#.to_vec(),
        br#"{"version":"4","groupKey":"","status":"firing","alerts":[]}"#.to_vec(),
        br#"{"version":"4","groupKey":"x","status":"exploding","alerts":[]}"#.to_vec(),
    ] {
        let (status, body) = post(&s.base, Some(&bearer()), bad.clone()).await;
        assert_eq!(status, 400, "{}: {body}", String::from_utf8_lossy(&bad));
    }
    // Over 4 MiB: 413.
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5 * 1024 * 1024));
    assert_eq!(post(&s.base, Some(&bearer()), huge).await.0, 413);
    // Without credentials not a byte of the body is read: a body that never ends is answered
    // 401 (reading it first would wait for ever).
    let endless =
        futures::stream::once(async { Ok::<_, std::io::Error>(b"{\"version\":\"4\"".to_vec()) })
            .chain(futures::stream::pending());
    let res = tokio::time::timeout(
        PATIENCE,
        reqwest::Client::new()
            .post(format!("{}/alertmanager", s.base))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(endless))
            .send(),
    )
    .await
    .expect("answered without reading the body")
    .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(s.bot.engine.store().count_alerts().await.unwrap(), (1, 0));

    // A resolved-only group, a truncated group, and an alert with a huge label set.
    let resolved = payload("Gone", "warning", &[("r1", "resolved"), ("r2", "resolved")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), resolved.to_string()).await.0,
        200
    );
    wait_for(&s.fake, ALERTS, &["RESOLVED", "Gone", "fired for 1h 30m"]).await;
    let mut truncated = payload("Many", "warning", &[("m1", "firing")]);
    truncated["truncatedAlerts"] = json!(57);
    assert_eq!(
        post(&s.base, Some(&bearer()), truncated.to_string())
            .await
            .0,
        200
    );
    wait_for(
        &s.fake,
        ALERTS,
        &["Many", "+57 more not sent by Alertmanager"],
    )
    .await;
    let mut wide = payload("Wide", "warning", &[("w1", "firing")]);
    for i in 0..2000 {
        wide["alerts"][0]["labels"][format!("label_{i}")] = json!("v".repeat(100));
    }
    assert_eq!(
        post(&s.base, Some(&bearer()), wide.to_string()).await.0,
        200
    );
    let msgs = wait_for(
        &s.fake,
        ALERTS,
        &["Wide", "label_0=vvvv", "(+1993 more labels)"],
    )
    .await;
    let wide_msg = msgs.iter().find(|m| text(m).contains("Wide")).unwrap();
    assert!(text(wide_msg).len() < 60_000, "cut to Slack's limits");

    // Refusals are audited, without the credentials.
    let audit = s.bot.engine.store().tail(500).await.unwrap();
    let outcomes: Vec<&str> = audit
        .iter()
        .filter(|r| r.entry.platform == "alertmanager")
        .filter_map(|r| r.entry.outcome.as_deref())
        .collect();
    for o in [
        "unauthorized",
        "malformed",
        "too_large",
        "stored",
        "unchanged",
    ] {
        assert!(outcomes.contains(&o), "{o} not audited: {outcomes:?}");
    }
    let all = serde_json::to_string(&audit.iter().map(|r| &r.entry).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains("s3cret-basic") && !all.contains("nope"));

    // The database is gone: 503, so Alertmanager retries.
    s.bot.engine.store().close().await;
    let later = payload("Later", "warning", &[("l1", "firing")]).to_string();
    assert_eq!(post(&s.base, Some(&bearer()), later).await.0, 503);
    let _ = &s.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_becomes_one_digest_with_at_most_one_write_per_second() {
    let s = start("  max_new_messages_per_minute: 3\n").await;
    for i in 0..12 {
        let p = payload(
            &format!("Flood{i:02}"),
            "warning",
            &[("x", "firing"), ("y", "firing")],
        );
        assert_eq!(post(&s.base, Some(&bearer()), p.to_string()).await.0, 200);
    }
    let msgs = wait_for(&s.fake, ALERTS, &["9 groups firing: 9 warning", "top 9"]).await;
    assert_eq!(msgs.len(), 4, "three groups of their own, then one digest");
    let writes = chat_writes(&s.fake, ALERTS);
    for pair in writes.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(900),
            "two writes {gap:?} apart"
        );
    }
    // Every group and every alert is stored, whether it has a message or not.
    assert_eq!(s.bot.engine.store().count_alerts().await.unwrap(), (24, 0));

    // A digested group that resolves leaves the digest (edited in place).
    let p = payload(
        "Flood11",
        "warning",
        &[("x", "resolved"), ("y", "resolved")],
    );
    assert_eq!(post(&s.base, Some(&bearer()), p.to_string()).await.0, 200);
    let msgs = wait_for(&s.fake, ALERTS, &["8 groups firing: 8 warning"]).await;
    assert_eq!(msgs.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_sqlite_post_one_message_per_group() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let fake = std::sync::Arc::new(SlackFake::start(TOKEN).await);
    let a = start_with(dir.clone(), fake.clone(), "", None).await;
    let b = start_with(dir, fake, "", None).await;
    two_replicas(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_post_one_message_per_group() {
    let url = opsbot::store::testing::fresh_postgres_url("alerts_serve::two_replicas_on_postgres")
        .await
        .unwrap();
    let Some(url) = url else { return };
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let fake = std::sync::Arc::new(SlackFake::start(TOKEN).await);
    let a = start_with(dir.clone(), fake.clone(), "", Some(&url)).await;
    let b = start_with(dir, fake, "", Some(&url)).await;
    two_replicas(a, b).await;
}

/// Two replicas on one database behind one Service: every group has one message per channel.
async fn two_replicas(a: Setup, b: Setup) {
    // Alertmanager may deliver a group's notifications to either replica, even both at once.
    let first = payload("Split", "critical", &[("p1", "firing")]).to_string();
    let auth = bearer();
    let (ra, rb) = tokio::join!(
        post(&a.base, Some(&auth), first.clone()),
        post(&b.base, Some(&auth), first),
    );
    assert_eq!((ra.0, rb.0), (200, 200));
    wait_for(&a.fake, EMERGENCY, &["Split", "pod=p1"]).await;
    let second = payload("Split", "critical", &[("p1", "firing"), ("p2", "firing")]);
    assert_eq!(
        post(&b.base, Some(&bearer()), second.to_string()).await.0,
        200
    );
    wait_for(&a.fake, EMERGENCY, &["FIRING 2", "pod=p2"]).await;
    let third = payload(
        "Split",
        "critical",
        &[("p1", "resolved"), ("p2", "resolved")],
    );
    assert_eq!(
        post(&a.base, Some(&bearer()), third.to_string()).await.0,
        200
    );
    let msgs = wait_for(&a.fake, EMERGENCY, &["RESOLVED", "Split"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let posts = posts_in(&a.fake, EMERGENCY);
    assert_eq!(
        (msgs.len(), posts),
        (1, 1),
        "one message for the group, from one replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rate_limits_back_off_and_lose_nothing() {
    let s = start("").await;
    // More 429s than the Slack client retries: the writer backs off and tries again later.
    for _ in 0..7 {
        s.fake.fail_next(
            "chat.postMessage",
            slack_fake::Failure::RateLimited {
                retry_after_secs: 1,
            },
        );
    }
    let first = payload("Throttled", "warning", &[("a", "firing")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), first.to_string()).await.0,
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A newer state arrives while the writer waits: the one message shows the newest.
    let second = payload("Throttled", "warning", &[("a", "firing"), ("b", "firing")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), second.to_string()).await.0,
        200
    );
    let msgs = wait_for(&s.fake, ALERTS, &["FIRING 2", "pod=b"]).await;
    assert_eq!(msgs.len(), 1);
    let refused = s
        .fake
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(refused, 7, "every scripted 429 was met");
    let audit = s.bot.engine.store().tail(100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.entry.outcome.as_deref() == Some("undelivered")),
        "the failed attempt is audited"
    );
}

/// A group whose labels send it to another channel (here its severity rose) is shown there;
/// its message in the first channel keeps following it, to resolved, and is never posted anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_routed_elsewhere_resolves_in_both_channels() {
    let s = start("").await;
    let send = |p: Value| {
        let base = s.base.clone();
        async move { post(&base, Some(&bearer()), p.to_string()).await.0 }
    };
    assert_eq!(
        send(payload("Moved", "warning", &[("a", "firing")])).await,
        200
    );
    wait_for(&s.fake, ALERTS, &["FIRING", "Moved"]).await;
    assert_eq!(
        send(payload("Moved", "critical", &[("a", "firing")])).await,
        200
    );
    wait_for(&s.fake, EMERGENCY, &["FIRING", "Moved"]).await;
    assert_eq!(
        send(payload("Moved", "critical", &[("a", "resolved")])).await,
        200
    );
    wait_for(&s.fake, EMERGENCY, &["RESOLVED", "Moved"]).await;
    let alerts = wait_for(&s.fake, ALERTS, &["RESOLVED", "Moved"]).await;
    assert_eq!(alerts.len(), 1, "one message in the first channel");
    let posts = posts_in(&s.fake, ALERTS);
    assert_eq!(posts, 1, "edited, never posted anew");
}

/// The database fails right after a group's message was posted, before its id is stored: the
/// next try stores that message and edits it; it does not post a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_id_could_not_be_stored_is_not_posted_again() {
    let s = start("").await;
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        s.dir.path().join("opsbot.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_message_id BEFORE UPDATE OF message_id ON alert_groups \
         WHEN NEW.message_id IS NOT NULL BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
    )
    .execute(&db)
    .await
    .unwrap();
    let first = payload("Unrecorded", "warning", &[("a", "firing")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), first.to_string()).await.0,
        200
    );
    wait_for(&s.fake, ALERTS, &["Unrecorded", "pod=a"]).await;
    // The writer stores the id as soon as Slack answers the post: long done after this.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("DROP TRIGGER refuse_message_id")
        .execute(&db)
        .await
        .unwrap();

    let second = payload("Unrecorded", "warning", &[("a", "firing"), ("b", "firing")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), second.to_string()).await.0,
        200
    );
    let msgs = wait_for(&s.fake, ALERTS, &["FIRING 2", "pod=b"]).await;
    let posts = posts_in(&s.fake, ALERTS);
    assert_eq!((msgs.len(), posts), (1, 1), "one message, posted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_posts_what_was_stored_but_never_shown() {
    let a = start("").await;
    a.fake.refuse_channel(ALERTS, "channel_not_found");
    let p = payload("Orphan", "warning", &[("a", "firing")]);
    assert_eq!(post(&a.base, Some(&bearer()), p.to_string()).await.0, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(in_channel(&a.fake, ALERTS).is_empty());
    let dir = a.dir.clone();
    a.bot.stop().await.unwrap();
    // The next process on the same database (and a Slack that takes the channel) shows it.
    let fake = std::sync::Arc::new(SlackFake::start(TOKEN).await);
    let b = start_with(dir, fake, "", None).await;
    wait_for(&b.fake, ALERTS, &["Orphan", "pod=a"]).await;
}

/// An alert button click is on disk when it is acknowledged, even while the clicker's groups
/// are still being looked up (Slack's `usergroups.list` hangs here): a crash then still gets
/// it a final answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_click_is_recorded_before_it_is_acknowledged() {
    let s = start("").await;
    let p = payload("Clicked", "critical", &[("a", "firing")]);
    assert_eq!(post(&s.base, Some(&bearer()), p.to_string()).await.0, 200);
    let msgs = wait_for(&s.fake, EMERGENCY, &["Clicked", "pod=a"]).await;
    let group_id = button_value(&msgs[0], "alert_ack");
    s.fake.fail_next(
        "usergroups.list",
        slack_fake::Failure::Hang(Duration::from_secs(3)),
    );
    let click = slack_fake::button_click(
        SECRET,
        "alert_ack",
        &group_id,
        "U01SRELEAD",
        EMERGENCY,
        &msgs[0].ts,
        "1700000100.000001",
    );
    let http = reqwest::Client::new();
    assert_eq!(click.send(&http, &s.base).await.status(), 200);
    let inbox = s.bot.engine.store().inbox().await.unwrap();
    assert!(
        inbox
            .iter()
            .any(|e| e.text == format!("alert_ack {group_id}") && e.actor == "slack:U01SRELEAD"),
        "{inbox:?}"
    );
    wait_for(&s.fake, EMERGENCY, &["<@U01SRELEAD> is looking"]).await;
    s.bot.stop().await.unwrap();
}

/// One group whose message cannot be edited (someone deleted it, say) does not hold up the
/// channel's other groups: it is tried again after a back-off of its own, behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_cannot_be_written_does_not_hold_up_the_others() {
    let s = start("").await;
    let stuck = payload("Stuck", "warning", &[("a", "firing")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), stuck.to_string()).await.0,
        200
    );
    wait_for(&s.fake, ALERTS, &["Stuck", "pod=a"]).await;
    for _ in 0..20 {
        s.fake.fail_next(
            "chat.update",
            slack_fake::Failure::Error("message_not_found".into()),
        );
    }
    let stuck = payload("Stuck", "warning", &[("a", "firing"), ("b", "firing")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), stuck.to_string()).await.0,
        200
    );
    s.fake
        .wait_until(PATIENCE, |calls| {
            calls
                .iter()
                .any(|c| c.method == "chat.update" && c.error.is_some())
        })
        .await;
    let other = payload("Other", "warning", &[("x", "firing")]);
    assert_eq!(
        post(&s.base, Some(&bearer()), other.to_string()).await.0,
        200
    );
    wait_for(&s.fake, ALERTS, &["Other", "pod=x"]).await;
    s.bot.stop().await.unwrap();
}

/// A change stored but not yet shown when the process stopped (a resolved notification, which
/// Alertmanager does not send again) is shown by the next process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_shows_a_change_that_was_stored_but_not_yet_written() {
    let a = start("").await;
    let firing = payload("Flappy", "warning", &[("a", "firing")]);
    assert_eq!(
        post(&a.base, Some(&bearer()), firing.to_string()).await.0,
        200
    );
    wait_for(&a.fake, ALERTS, &["Flappy", "FIRING"]).await;
    // Slack refuses the edits for now: the resolved state stays in the database only.
    for _ in 0..5 {
        a.fake.fail_next(
            "chat.update",
            slack_fake::Failure::Error("cant_update_message".into()),
        );
    }
    let resolved = payload("Flappy", "warning", &[("a", "resolved")]);
    assert_eq!(
        post(&a.base, Some(&bearer()), resolved.to_string()).await.0,
        200
    );
    a.fake
        .wait_until(PATIENCE, |calls| {
            calls
                .iter()
                .any(|c| c.method == "chat.update" && c.error.is_some())
        })
        .await;
    let (dir, fake) = (a.dir.clone(), a.fake.clone());
    a.bot.stop().await.unwrap();
    assert!(text(&in_channel(&fake, ALERTS)[0]).contains("FIRING"));
    // The next process on the same database brings the message up to date.
    let b = start_with(dir, fake, "", None).await;
    wait_for(&b.fake, ALERTS, &["Flappy", "RESOLVED"]).await;
    assert_eq!(
        in_channel(&b.fake, ALERTS).len(),
        1,
        "the same message, edited"
    );
}

/// `alerts` and `silence list|add|expire` through Slack, against the real Alertmanager: the
/// policy decides (`alert.show` for everyone, `alert.silence` for the SRE lead), silences are
/// Alertmanager's, created by the person who asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_and_silence_commands_work_against_the_real_alertmanager() {
    let Some((s, am)) =
        with_alertmanager("alert_and_silence_commands_work_against_the_real_alertmanager").await
    else {
        return;
    };
    am.post_alerts(&json!([alert(
        &[
            ("alertname", "KubePodCrashLooping"),
            ("severity", "critical"),
            ("namespace", "production"),
            ("pod", "api-1"),
        ],
        "Pod is crash looping",
        None,
    )]))
    .await;
    wait_for(&s.fake, EMERGENCY, &["FIRING 1", "KubePodCrashLooping"]).await;

    let http = reqwest::Client::new();
    let slash = |user: &str, text: &str, trigger: &str| {
        let req = slack_fake::slash_command(SECRET, "/ops", text, user, "C0OPS", trigger);
        let http = http.clone();
        let base = s.base.clone();
        async move {
            let res = req.send(&http, &base).await;
            assert_eq!(res.status(), 200);
        }
    };
    slash(
        "U0NOBODY",
        "alerts --severity critical -n production",
        "cmd.1",
    )
    .await;
    wait_for(
        &s.fake,
        "C0OPS",
        &["Alerts: 1 firing", "KubePodCrashLooping", "production"],
    )
    .await;

    // Someone without alert.silence: told privately, nothing silenced.
    slash(
        "U0NOBODY",
        "silence add alertname=KubePodCrashLooping namespace=production --for 2h --comment x",
        "cmd.2",
    )
    .await;
    s.fake
        .wait_until(PATIENCE, |calls| {
            calls.iter().any(|c| {
                c.method == "chat.postEphemeral"
                    && c.all_text().contains("Not allowed")
                    && c.all_text().contains("alert.silence")
            })
        })
        .await;
    assert!(am.silences().await.is_empty());

    slash(
        "U01SRELEAD",
        "silence add alertname=KubePodCrashLooping, namespace=\"production\" --for 2h --comment deploy in progress",
        "cmd.3",
    )
    .await;
    wait_for(&s.fake, "C0OPS", &["Silenced until", "deploy in progress"]).await;
    let silences = am.silences().await;
    assert_eq!(silences.len(), 1, "{silences:?}");
    assert_eq!(silences[0]["createdBy"], "slack:U01SRELEAD");
    assert_eq!(silences[0]["comment"], "deploy in progress");
    assert_eq!(silences[0]["status"]["state"], "active");
    let id = silences[0]["id"].as_str().unwrap().to_owned();

    slash("U0NOBODY", "silence list", "cmd.4").await;
    wait_for(
        &s.fake,
        "C0OPS",
        &["Silences (1)", &id, "alertname=\\\"KubePodCrashLooping\\\""],
    )
    .await;

    slash("U01SRELEAD", &format!("silence expire {id}"), "cmd.5").await;
    wait_for(&s.fake, "C0OPS", &[&format!("Silence {id} expired")]).await;
    let silences = am.silences().await;
    assert_eq!(silences[0]["status"]["state"], "expired");

    // A malformed id never reaches Alertmanager's URL.
    slash("U01SRELEAD", "silence expire ../silences", "cmd.6").await;
    s.fake
        .wait_until(PATIENCE, |calls| {
            calls.iter().any(|c| {
                c.method == "chat.postEphemeral" && c.all_text().contains("is not a silence id")
            })
        })
        .await;
    s.bot.stop().await.unwrap();
}
