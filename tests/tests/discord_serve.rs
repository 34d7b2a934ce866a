//! Discord on `opsbot serve` as an operator runs it: `app::start` from an `opsbot.yaml` with a
//! `discord:` section (secrets from the environment), the example policy, kubesim, SQLite,
//! port 0, the REST API pointed at the fake Discord, and interactions signed with the test
//! application's Ed25519 key exactly as Discord signs them.
//!
//! Where a reply lands (the edited deferred response, an ephemeral follow-up, a channel
//! message) is the sink's business, tested in `discord_sink.rs`; these tests look at what
//! people see: the visible messages.

use std::collections::BTreeMap;
use std::time::Duration;

use kubesim::{KubeSim, Seed};
use opsbot::config::Config;
use opsbot::store::AuditKind;
use opsbot_tests::discord_fake::{self, DiscordFake, Member, deliver, deliver_signed, signer};
use opsbot_tests::eventually;
use serde_json::{Value, json};

const TOKEN: &str = "discord-serve-bot-token";
const APP: &str = "1000000000000000001";
const GUILD: &str = "2000000000000000001";
const CHANNEL: &str = "3000000000000000001";
const PATIENCE: Duration = Duration::from_secs(60);

/// The example policy's roles on Discord.
const SRE_LEAD: &str = "1100000000000000001";
const PLATFORM: &str = "1100000000000000002";

fn engineer() -> Member {
    Member::new("4000000000000000001", &[PLATFORM, "1999"])
}

fn lead() -> Member {
    Member::new("4000000000000000002", &[SRE_LEAD])
}

fn config(sim: &KubeSim, dir: &std::path::Path, fake: &DiscordFake) -> Config {
    std::fs::write(dir.join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).unwrap();
    let yaml = format!(
        "data_dir: {dir}\n\
         policy: policy.yaml\n\
         listen: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n\
         discord:\n  api_url: {api}\n  application_id: \"{APP}\"\n  guilds: [\"{GUILD}\"]\n",
        dir = dir.display(),
        api = fake.api_url(),
    );
    let file = dir.join("opsbot.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let env: BTreeMap<String, String> = [
        ("OPSBOT_DISCORD_TOKEN", TOKEN.to_owned()),
        ("OPSBOT_DISCORD_PUBLIC_KEY", signer().public_key_hex()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Config::load_with_env(Some(&file), &env).unwrap()
}

fn replicas(sim: &KubeSim, ns: &str, name: &str) -> i64 {
    sim.get("apps/v1", "Deployment", ns, name)
        .and_then(|d| d["spec"]["replicas"].as_i64())
        .unwrap_or(-1)
}

struct Setup {
    sim: KubeSim,
    fake: DiscordFake,
    bot: opsbot::app::Bot,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    sim.clock().set_speed(30.0);
    let dir = tempfile::tempdir().unwrap();
    let fake = DiscordFake::start(TOKEN, APP).await;
    let bot = opsbot::app::start(&config(&sim, dir.path(), &fake))
        .await
        .unwrap();
    let base = format!("http://{}", bot.addr);
    Setup {
        sim,
        fake,
        bot,
        base,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

async fn json_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Audit records of `kind` so far.
async fn audited(bot: &opsbot::app::Bot, kind: AuditKind) -> Vec<opsbot::store::AuditRecord> {
    let all = bot.engine.store().tail(10_000).await.unwrap();
    all.into_iter().filter(|r| r.entry.kind == kind).collect()
}

/// The deferred response of `token` has been dealt with (edited into a reply, or removed).
fn settled(fake: &DiscordFake, token_path_calls: usize) -> bool {
    fake.calls()
        .iter()
        .filter(|c| matches!(c.route, "edit_original" | "delete_original") && c.status < 300)
        .count()
        >= token_path_calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_approvals_run_over_signed_interactions() {
    let s = setup().await;

    // Discord checks the URL with a PING.
    let (status, body) = json_of(
        deliver(
            &s.http,
            &s.base,
            &json!({"id": "1", "type": 1, "application_id": APP, "token": "t", "version": 1}),
        )
        .await,
    )
    .await;
    assert_eq!((status, body), (200, json!({"type": 1})));

    // A platform engineer (by role) scales a service in `api` with typed options: allowed.
    let before = replicas(&s.sim, "api", "rust-webapi");
    let target = if before == 3 { 4 } else { 3 };
    s.fake.expect_command("tok-1", CHANNEL);
    let scale = discord_fake::command(
        "5000000000000000001",
        "tok-1",
        Some(GUILD),
        CHANNEL,
        &engineer(),
        json!([{"type": 1, "name": "scale", "options": [
            {"type": 3, "name": "workload", "value": "rust-webapi"},
            {"type": 4, "name": "replicas", "value": target},
            {"type": 3, "name": "namespace", "value": "api"}]}]),
    );
    let (status, body) = json_of(deliver(&s.http, &s.base, &scale).await).await;
    assert_eq!(
        (status, body),
        (200, json!({"type": 5})),
        "deferred at once"
    );
    s.fake
        .wait_for_text(PATIENCE, &format!("{before} → {target}"))
        .await;
    assert_eq!(replicas(&s.sim, "api", "rust-webapi"), target);
    // No message can ping anyone.
    for c in s.fake.calls() {
        if c.body.get("embeds").is_some() {
            assert_eq!(c.body["allowed_mentions"], json!({"parse": []}), "{c:?}");
        }
    }
    // The deferred response does not stay "thinking…".
    s.fake.wait_for(PATIENCE, |_| settled(&s.fake, 1)).await;

    // Production needs an SRE lead's approval: the free-text form, as typed in Slack.
    let before = replicas(&s.sim, "production", "conea-api");
    let target = if before == 6 { 7 } else { 6 };
    s.fake.expect_command("tok-2", CHANNEL);
    let run = discord_fake::run(
        "5000000000000000002",
        "tok-2",
        GUILD,
        CHANNEL,
        &engineer(),
        &format!("scale conea-api {target} -n production"),
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &run).await).await.1,
        json!({"type": 5})
    );
    let card = s.fake.wait_for_text(PATIENCE, "Approval needed").await;
    let ids = card.custom_ids();
    let approve = ids
        .iter()
        .find(|c| c.starts_with("approve:"))
        .unwrap()
        .clone();
    assert!(ids.iter().any(|c| c.starts_with("deny:")), "{ids:?}");

    // The requester may not approve their own request.
    s.fake.expect_click("tok-3", CHANNEL, &card.id);
    let own = discord_fake::click(
        "5000000000000000003",
        "tok-3",
        GUILD,
        CHANNEL,
        &engineer(),
        &card.id,
        &approve,
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &own).await).await.1,
        json!({"type": 6})
    );
    s.fake.wait_for_text(PATIENCE, "You cannot approve").await;
    assert_eq!(replicas(&s.sim, "production", "conea-api"), before);

    // An SRE lead's click runs it; the card is edited in place for everyone.
    s.fake.expect_click("tok-4", CHANNEL, &card.id);
    let ok = discord_fake::click(
        "5000000000000000004",
        "tok-4",
        GUILD,
        CHANNEL,
        &lead(),
        &card.id,
        &approve,
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &ok).await).await.1,
        json!({"type": 6})
    );
    let done = s
        .fake
        .wait_for(PATIENCE, |ms| {
            ms.iter()
                .any(|m| m.id == card.id && m.text().contains("Approved and executed"))
        })
        .await;
    let edited = done.iter().find(|m| m.id == card.id).unwrap();
    assert!(
        edited.text().contains("Approved and executed"),
        "{}",
        edited.text()
    );
    assert!(edited.custom_ids().is_empty(), "no buttons once decided");
    assert_eq!(replicas(&s.sim, "production", "conea-api"), target);
    // The click edited the card through its own token (the clicker sees it at once).
    assert!(
        s.fake
            .calls()
            .iter()
            .any(|c| c.route == "edit_original" && c.message.as_deref() == Some(card.id.as_str()))
    );

    // Another click (a new interaction) runs nothing again.
    s.fake.expect_click("tok-5", CHANNEL, &card.id);
    let again = discord_fake::click(
        "5000000000000000005",
        "tok-5",
        GUILD,
        CHANNEL,
        &lead(),
        &card.id,
        &approve,
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &again).await).await.1,
        json!({"type": 6})
    );
    s.fake
        .wait_for_text(PATIENCE, "can no longer be approved")
        .await;
    let runs: Vec<_> = audited(&s.bot, AuditKind::Execution)
        .await
        .into_iter()
        .filter(|r| {
            r.entry
                .command
                .as_deref()
                .is_some_and(|c| c.contains("conea-api"))
        })
        .collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    s.bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_altered_oversized_replayed_and_foreign_interactions_run_nothing() {
    let s = setup().await;
    let before = replicas(&s.sim, "api", "rust-webapi");
    let target = if before == 5 { 6 } else { 5 };
    s.fake.expect_command("tok-r", CHANNEL);
    let scale = discord_fake::run(
        "5000000000000000101",
        "tok-r",
        GUILD,
        CHANNEL,
        &engineer(),
        &format!("scale rust-webapi {target} -n api"),
    );
    let body = serde_json::to_vec(&scale).unwrap();
    let now = discord_fake::now_secs();

    // Another key; six minutes old; one byte changed after signing; no headers; 2 MiB.
    let forged = opsbot::discord::verify::TestSigner::from_seed([9; 32]);
    assert_eq!(
        deliver_signed(&s.http, &s.base, &forged, now, &body)
            .await
            .status(),
        401
    );
    assert_eq!(
        deliver_signed(&s.http, &s.base, &signer(), now - 360, &body)
            .await
            .status(),
        401
    );
    let ts = now.to_string();
    let sig = signer().sign(&ts, &body);
    let altered = String::from_utf8(body.clone())
        .unwrap()
        .replace("rust-webapi", "rust-webapj");
    let res = s
        .http
        .post(format!("{}/discord/interactions", s.base))
        .header("x-signature-ed25519", &sig)
        .header("x-signature-timestamp", &ts)
        .body(altered)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = s
        .http
        .post(format!("{}/discord/interactions", s.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(
        deliver_signed(&s.http, &s.base, &signer(), now, &huge)
            .await
            .status(),
        413
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replicas(&s.sim, "api", "rust-webapi"), before);

    // The real one runs; the same interaction again (signed afresh) is answered, not run.
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &scale).await).await.1,
        json!({"type": 5})
    );
    let (status, again) = json_of(deliver(&s.http, &s.base, &scale).await).await;
    assert_eq!(status, 200);
    assert_eq!(again["type"], 4);
    assert_eq!(again["data"]["flags"], 64, "only the requester sees it");
    s.fake
        .wait_for_text(PATIENCE, &format!("{before} → {target}"))
        .await;

    // A DM and a server opsbot does not serve: an ephemeral refusal, nothing runs.
    for (id, guild) in [
        ("5000000000000000102", None),
        ("5000000000000000103", Some("2999")),
    ] {
        let i = discord_fake::command(
            id,
            "tok-x",
            guild,
            CHANNEL,
            &engineer(),
            json!([{"type": 1, "name": "run", "options": [{"type": 3, "name": "command", "value": "scale rust-webapi 9 -n api"}]}]),
        );
        let (status, refusal) = json_of(deliver(&s.http, &s.base, &i).await).await;
        assert_eq!(status, 200);
        assert_eq!(refusal["type"], 4);
        assert_eq!(refusal["data"]["flags"], 64);
        assert!(
            refusal["data"]["content"]
                .as_str()
                .unwrap()
                .contains("does not take commands here")
        );
    }

    // Every refusal is in the audit log; one request ran.
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        outcomes = audited(&s.bot, AuditKind::Rejection)
            .await
            .into_iter()
            .filter_map(|r| r.entry.outcome)
            .collect::<Vec<_>>();
        if outcomes.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "bad_signature",
            "bad_signature",
            "malformed",
            "not_served",
            "not_served",
            "replay",
            "stale_timestamp",
            "too_large"
        ]
    );
    let requests = audited(&s.bot, AuditKind::Request).await;
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(replicas(&s.sim, "api", "rust-webapi"), target);
    s.bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocomplete_answers_names_from_the_cluster() {
    let s = setup().await;
    let ask = |focused: &str, typed: &str, ns: Option<&str>| {
        let mut options =
            vec![json!({"type": 3, "name": focused, "value": typed, "focused": true})];
        if let Some(ns) = ns {
            options.push(json!({"type": 3, "name": "namespace", "value": ns}));
        }
        let mut i = discord_fake::command(
            "5000000000000000201",
            "tok-a",
            Some(GUILD),
            CHANNEL,
            &engineer(),
            json!([{"type": 1, "name": "scale", "options": options}]),
        );
        i["type"] = 4.into();
        i
    };
    let names = |v: &Value| -> Vec<String> {
        v["data"]["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, answer) =
        json_of(deliver(&s.http, &s.base, &ask("workload", "rust", Some("api"))).await).await;
    assert_eq!(status, 200);
    assert_eq!(answer["type"], 8);
    assert_eq!(names(&answer), ["rust-webapi"]);
    let (_, answer) =
        json_of(deliver(&s.http, &s.base, &ask("namespace", "prod", None)).await).await;
    assert_eq!(names(&answer), ["production"]);
    let (_, answer) = json_of(deliver(&s.http, &s.base, &ask("cluster", "", None)).await).await;
    assert_eq!(names(&answer), ["sim"]);
    // Autocomplete runs nothing and is not a request.
    assert!(audited(&s.bot, AuditKind::Request).await.is_empty());
    s.bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_edits_are_paced_and_undeliverable_replies_are_audited() {
    let s = setup().await;
    let before = replicas(&s.sim, "api", "rust-webapi");
    let target = before + 3;
    s.fake.expect_command("tok-p", CHANNEL);
    let scale = discord_fake::run(
        "5000000000000000301",
        "tok-p",
        GUILD,
        CHANNEL,
        &engineer(),
        &format!("scale rust-webapi {target} -n api"),
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &scale).await).await.1,
        json!({"type": 5})
    );
    s.fake
        .wait_for_text(PATIENCE, &format!("{before} → {target}"))
        .await;
    // Edits of any one message are at least the update interval (1s) apart.
    let calls = s.fake.calls();
    let mut edits: BTreeMap<String, Vec<std::time::Instant>> = BTreeMap::new();
    for c in calls.iter().filter(|c| {
        matches!(
            c.route,
            "edit_message" | "edit_webhook_message" | "edit_original"
        ) && c.status == 200
    }) {
        edits
            .entry(c.message.clone().unwrap())
            .or_default()
            .push(c.at);
    }
    assert!(
        edits.values().any(|e| e.len() >= 2),
        "progress was edited: {calls:#?}"
    );
    for times in edits.values() {
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_millis(900),
                "{:?}",
                w[1] - w[0]
            );
        }
    }

    // A channel the bot may not post in, and an interaction whose token is gone: nowhere to
    // answer, so the reply is audited as undelivered.
    let other = "3000000000000000009";
    s.fake.refuse_channel(other);
    s.fake.expect_command("tok-u", other);
    s.fake.expire("tok-u");
    let status = discord_fake::run(
        "5000000000000000302",
        "tok-u",
        GUILD,
        other,
        &engineer(),
        "status rust-webapi -n api",
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &status).await).await.1,
        json!({"type": 5})
    );
    let mut undelivered = Vec::new();
    for _ in 0..600 {
        undelivered = audited(&s.bot, AuditKind::Delivery).await;
        if !undelivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(undelivered.len(), 1, "{undelivered:#?}");
    assert_eq!(undelivered[0].entry.outcome.as_deref(), Some("undelivered"));
    assert_eq!(undelivered[0].entry.channel.as_deref(), Some(other));
    s.bot.stop().await.unwrap();
}

/// The engineer types `text`, an `incident open …` that opens INC-`n` (1 to 9), in [`CHANNEL`]:
/// deferred at once; returns the first message naming the incident (its card) and its channel.
async fn open_incident(
    s: &Setup,
    n: &str,
    text: &str,
) -> (discord_fake::Message, discord_fake::Channel) {
    let token = format!("tok-open-{n}");
    s.fake.expect_command(&token, CHANNEL);
    let open = discord_fake::run(
        &format!("500000000000000020{n}"),
        &token,
        GUILD,
        CHANNEL,
        &engineer(),
        text,
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &open).await).await.1,
        json!({"type": 5})
    );
    let card = s.fake.wait_for_text(PATIENCE, &format!("INC-{n} · ")).await;
    let prefix = format!("inc-{n}-");
    let channel = s
        .fake
        .channels()
        .into_iter()
        .find(|c| c.name.starts_with(&prefix))
        .expect("the incident's channel");
    (card, channel)
}

/// An incident on Discord: opened with `/ops run`, its channel created and its card posted
/// there; the card's Take command button runs `incident ack` as the clicker (a new deferred
/// answer, not an edit of the card).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_opens_a_channel_and_its_card_button_acknowledges() {
    let s = setup().await;
    s.fake.add_guild(GUILD);
    let (card, channel) = open_incident(&s, "1", "incident open P2 checkout slow").await;
    assert_eq!(channel.name, "inc-1-checkout-slow");
    assert_eq!(card.channel, channel.id);
    let take = card
        .custom_ids()
        .into_iter()
        .find(|c| c.starts_with("incident:"))
        .expect("a Take command button");
    assert_eq!(take, "incident:ack --id INC-1");

    s.fake.expect_command("tok-i2", &channel.id);
    let click = discord_fake::click(
        "5000000000000000102",
        "tok-i2",
        GUILD,
        &channel.id,
        &engineer(),
        &card.id,
        &take,
    );
    assert_eq!(
        json_of(deliver(&s.http, &s.base, &click).await).await.1,
        json!({"type": 5})
    );
    eventually(
        PATIENCE,
        "INC-1 acknowledged by the clicker",
        || async { s.bot.engine.store().incident(1).await.unwrap().unwrap() },
        |inc| inc.acked_by.as_deref() == Some("discord:4000000000000000001"),
    )
    .await;
    s.fake.wait_for_text(PATIENCE, "INC-1 acknowledged").await;

    // Requester and commander at once: invited once, so one overwrite written once.
    let (_, channel) = open_incident(&s, "2", "incident open P3 disk full --commander me").await;
    assert_eq!(channel.name, "inc-2-disk-full");
    let me = format!("/channels/{}/permissions/4000000000000000001", channel.id);
    let invited: Vec<_> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "edit_permissions" && c.path.ends_with(&me))
        .collect();
    assert_eq!(invited.len(), 1, "{invited:#?}");
}

/// Alerts routed to a Discord channel: their buttons work there as on Slack. A click the policy
/// refuses is told to the clicker alone (an ephemeral follow-up); an allowed Ack changes the
/// alert's message for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_buttons_work_on_discord_and_refusals_stay_private() {
    const WEBHOOK_TOKEN: &str = "discord-alerts-webhook-token";
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = DiscordFake::start(TOKEN, APP).await;
    let policy = format!(
        "version: 1\nroles:\n  platform: {{ members: [\"discord-role:{PLATFORM}\"] }}\n\
         rules:\n  - name: platform-acks\n    roles: [platform]\n    actions: [\"alert.ack\"]\n"
    );
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let yaml = format!(
        "data_dir: {dir}\n\
         policy: policy.yaml\n\
         listen: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n\
         discord:\n  api_url: {api}\n  application_id: \"{APP}\"\n  guilds: [\"{GUILD}\"]\n\
         alerts:\n  default_channel: discord:{CHANNEL}\n",
        dir = dir.path().display(),
        api = fake.api_url(),
    );
    let file = dir.path().join("opsbot.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let env: BTreeMap<String, String> = [
        ("OPSBOT_DISCORD_TOKEN", TOKEN.to_owned()),
        ("OPSBOT_DISCORD_PUBLIC_KEY", signer().public_key_hex()),
        ("OPSBOT_ALERTS_WEBHOOK_TOKEN", WEBHOOK_TOKEN.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let bot = opsbot::app::start(&Config::load_with_env(Some(&file), &env).unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", bot.addr);
    let http = reqwest::Client::new();

    let notification = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "opsbot",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "namespace": "production"},
        "commonAnnotations": {"summary": "api is crash looping"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "namespace": "production", "pod": "api-0"},
            "annotations": {"summary": "api is crash looping"},
            "startsAt": "2026-01-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": "fp-api-0"
        }]
    });
    let res = http
        .post(format!("{base}/alertmanager"))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let with = |needle: &'static str| {
        let fake = fake.clone();
        move || {
            let fake = fake.clone();
            async move {
                fake.messages()
                    .into_iter()
                    .filter(|m| m.channel == CHANNEL && !m.ephemeral && !m.deleted)
                    .find(|m| m.text().contains(needle))
            }
        }
    };
    let alert = eventually(
        PATIENCE,
        "the alert's message",
        with("KubePodCrashLooping"),
        |m| m.is_some(),
    )
    .await
    .unwrap();
    let ack = alert
        .custom_ids()
        .into_iter()
        .find(|c| c.starts_with("alert_ack:"))
        .expect("an Ack button");

    // Someone the policy does not allow: told privately; the message does not change.
    fake.expect_click("tok-a1", CHANNEL, &alert.id);
    let refused = discord_fake::click(
        "5000000000000000201",
        "tok-a1",
        GUILD,
        CHANNEL,
        &Member::new("4000000000000000009", &["1999"]),
        &alert.id,
        &ack,
    );
    assert_eq!(
        json_of(deliver(&http, &base, &refused).await).await.1,
        json!({"type": 6})
    );
    let told = eventually(
        PATIENCE,
        "a private refusal",
        || async {
            fake.messages()
                .into_iter()
                .find(|m| m.text().contains("Not allowed: alert.ack"))
        },
        |m| m.is_some(),
    )
    .await
    .unwrap();
    assert!(told.ephemeral, "{told:?}");

    // Someone allowed: the alert's message shows who is looking.
    fake.expect_click("tok-a2", CHANNEL, &alert.id);
    let allowed = discord_fake::click(
        "5000000000000000202",
        "tok-a2",
        GUILD,
        CHANNEL,
        &engineer(),
        &alert.id,
        &ack,
    );
    assert_eq!(
        json_of(deliver(&http, &base, &allowed).await).await.1,
        json!({"type": 6})
    );
    let acked = eventually(
        PATIENCE,
        "the Ack on the message",
        with("is looking"),
        |m| m.is_some(),
    )
    .await
    .unwrap();
    assert_eq!(acked.id, alert.id);
    let decisions = audited(&bot, AuditKind::Decision).await;
    let outcomes: Vec<&str> = decisions
        .iter()
        .filter_map(|r| r.entry.outcome.as_deref())
        .collect();
    assert!(
        outcomes.contains(&"deny") && outcomes.contains(&"allow"),
        "{outcomes:?}"
    );
    bot.stop().await.unwrap();
}
