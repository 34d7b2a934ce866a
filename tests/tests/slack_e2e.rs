//! The whole bot as Slack sees it: the real engine (SQLite, kubesim with its default seed, a
//! policy keyed on Slack users and user groups) behind the HTTP server on port 0, the Slack
//! routes merged in, the Web API pointed at the fake Slack. Requests are signed exactly as
//! Slack signs them.

use std::time::Duration;

use opsbot::engine::Engine;
use opsbot::slack::{RetryPolicy, SlackConfig};
use opsbot_tests::bot::{BotOptions, Db, TestBot};
use opsbot_tests::eventually;
use opsbot_tests::slack_fake::{self, Call, Failure, SignedRequest, SlackFake};

const TOKEN: &str = "xoxb-e2e-token";
const SECRET: &str = "e2e-signing-secret";
/// Wait limit for things that happen in the background (not an assertion on speed).
const PATIENCE: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
version: 1
roles:
  lead: { members: ["slack-group:SLEADS"] }
  eng:  { members: ["slack:UENG"] }
rules:
  - name: read
    roles: ["*"]
    actions: [status, pods, events, logs, "hpa.show", "backup.status"]
  - name: eng-api
    roles: [eng]
    actions: [scale, restart]
    namespaces: [api]
  - name: prod-scale
    roles: [eng, lead]
    actions: [scale]
    namespaces: [production]
    when: { replicas: { min: 1, max: 30 } }
    approval: { roles: [lead], count: 1, ttl: 15m, allow_self: false }
"#;

struct Bot {
    base: String,
    engine: Engine,
    fake: SlackFake,
    http: reqwest::Client,
    /// kubesim, the database and the engine, as in the console tests.
    core: TestBot,
}

impl Bot {
    async fn start() -> Bot {
        Bot::start_with(BotOptions::default()).await
    }

    async fn start_with(options: BotOptions) -> Bot {
        let core = TestBot::start(Db::Sqlite, "slack_e2e", POLICY, options)
            .await
            .expect("SQLite is never skipped");
        let engine = core.engine.clone();

        let fake = SlackFake::start(TOKEN).await;
        fake.set_user_groups(&[("SLEADS", &["ULEAD", "ULEAD2"]), ("SOTHER", &["UENG"])]);
        let mut cfg = SlackConfig::new(TOKEN, SECRET).with_api_url(fake.api_url());
        cfg.retry = RetryPolicy {
            base_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let app = opsbot::server::base_router(engine.clone())
            .merge(opsbot::slack::router(engine.clone(), &cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Bot {
            base,
            engine,
            fake,
            http: reqwest::Client::new(),
            core,
        }
    }

    async fn send(&self, req: &SignedRequest) -> reqwest::Response {
        req.send(&self.http, &self.base).await
    }

    /// Sends a slash command and checks the immediate ack.
    async fn command(&self, user: &str, text: &str, trigger: &str) {
        let req = self
            .fake
            .slash_command(SECRET, "/ops", text, user, "C0OPS", trigger);
        let res = self.send(&req).await;
        assert_eq!(res.status(), 200);
        let ack: serde_json::Value = res.json().await.unwrap();
        assert_eq!(ack["response_type"], "ephemeral");
        assert!(
            ack["text"].as_str().unwrap().contains("Working on"),
            "{ack}"
        );
    }

    fn replicas(&self, ns: &str, name: &str) -> i64 {
        self.core.replicas(ns, name)
    }

    /// Waits until a posted or updated message (its latest state) contains `needle`.
    async fn wait_for_text(&self, needle: &str) -> Vec<Call> {
        let needle = needle.to_owned();
        self.fake
            .wait_until(PATIENCE, move |calls| {
                calls.iter().any(|c| {
                    (c.method == "chat.postMessage" || c.method == "chat.update")
                        && c.status == 200
                        && c.error.is_none()
                        && c.all_text().contains(&needle)
                })
            })
            .await
    }

    async fn audit(&self) -> Vec<(String, String)> {
        self.engine
            .store()
            .tail(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.entry.kind.as_str().to_owned(),
                    r.entry.outcome.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn executions(&self) -> usize {
        self.audit()
            .await
            .iter()
            .filter(|(k, _)| k == "execution")
            .count()
    }

    /// Waits until the audit log satisfies `pred`, and returns it (fails the test after
    /// `PATIENCE`).
    async fn wait_audit(
        &self,
        pred: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        eventually(
            PATIENCE,
            "the audit log to show it",
            || self.audit(),
            |a| pred(a),
        )
        .await
    }
}

fn ok_calls<'a>(calls: &'a [Call], method: &str) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|c| c.method == method && c.status == 200 && c.error.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_scales_in_kubesim_with_progress_and_a_final_state() {
    let bot = Bot::start().await;
    let before = bot.replicas("api", "rust-webapi");
    assert_ne!(before, 4);
    bot.command("UENG", "scale rust-webapi 4 -n api", "e2e.scale.1")
        .await;

    let calls = bot.wait_for_text(&format!("{before} → 4")).await;
    assert_eq!(bot.replicas("api", "rust-webapi"), 4);
    // One message, posted in the channel, then edited in place as the rollout progressed.
    let posts = ok_calls(&calls, "chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].param("channel"), Some("C0OPS"));
    let updates = ok_calls(&calls, "chat.update");
    assert!(!updates.is_empty());
    let ts = bot.fake.messages()[0].ts.clone();
    assert!(updates.iter().all(|u| u.param("ts") == Some(ts.as_str())));
    // Progress came first, as a text bar (`▓▓▓▓▓░░░░░ 2/4 ready`); the last edit
    // is the final state.
    let (last, progress) = updates.split_last().unwrap();
    assert!(
        progress.iter().any(|u| {
            let t = u.all_text();
            (t.contains('▓') || t.contains('░')) && t.contains("/4 ready")
        }),
        "{updates:?}"
    );
    assert!(last.all_text().contains(&format!("{before} → 4")));
    // Edits of one message are paced: at least a second apart (the engine offers them every
    // 100 ms here).
    for pair in updates.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_secs(1),
            "{updates:?}"
        );
    }
    // Every post and edit is Block Kit with a header.
    for c in posts.iter().chain(updates.iter()) {
        assert_eq!(c.params["blocks"][0]["type"], "header");
    }
    let audit = bot.audit().await;
    assert!(
        audit.contains(&("execution".into(), "ok".into())),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_needs_a_second_eligible_users_signed_click_and_executes_once() {
    let bot = Bot::start().await;
    let before = bot.replicas("production", "conea-api");
    assert_ne!(before, 5);
    bot.command("UENG", "scale conea-api 5 -n production", "e2e.appr.1")
        .await;

    // The approval card: Approve / Deny buttons carrying the approval id.
    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| {
            calls.iter().any(|c| {
                c.method == "chat.postMessage"
                    && c.params["blocks"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|b| b["type"] == "actions"))
            })
        })
        .await;
    let card = calls
        .iter()
        .find(|c| c.method == "chat.postMessage" && c.all_text().contains("Approve"))
        .expect("an approval card");
    let actions = card.params["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap();
    let approve = &actions["elements"][0];
    assert_eq!(approve["action_id"], "approve");
    assert_eq!(actions["elements"][1]["action_id"], "deny");
    let approval_id = approve["value"].as_str().unwrap().to_owned();
    let card_ts = bot.fake.messages()[0].ts.clone();
    // Who asked, the exact command, the rule, who can approve, and when it expires.
    let text = card.all_text();
    for part in [
        "conea-api 5 -n production",
        "<@UENG>",
        "prod-scale",
        "1 × lead, not the requester",
        "*Expires*",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert_eq!(bot.replicas("production", "conea-api"), before);

    // The requester cannot approve their own request.
    let own = slack_fake::button_click(
        SECRET,
        "approve",
        &approval_id,
        "UENG",
        "C0OPS",
        &card_ts,
        "1700000001.000001",
    );
    assert_eq!(bot.send(&own).await.status(), 200);
    // Someone outside the approving role cannot either.
    let outsider = slack_fake::button_click(
        SECRET,
        "approve",
        &approval_id,
        "UNOBODY",
        "C0OPS",
        &card_ts,
        "1700000002.000001",
    );
    assert_eq!(bot.send(&outsider).await.status(), 200);
    let audit = bot
        .wait_audit(|a| a.iter().filter(|(k, _)| k == "approval").count() >= 2)
        .await;
    assert_eq!(bot.replicas("production", "conea-api"), before, "{audit:?}");
    assert_eq!(bot.executions().await, 0);

    // A forged click (wrong signing secret) from an eligible user does nothing.
    let forged = slack_fake::button_click(
        "not-the-secret",
        "approve",
        &approval_id,
        "ULEAD",
        "C0OPS",
        &card_ts,
        "1700000003.000001",
    );
    assert_eq!(bot.send(&forged).await.status(), 401);

    // A lead (by Slack user group) approves: it runs, once, and the card says so.
    let lead = slack_fake::button_click(
        SECRET,
        "approve",
        &approval_id,
        "ULEAD",
        "C0OPS",
        &card_ts,
        "1700000004.000001",
    );
    assert_eq!(bot.send(&lead).await.status(), 200);
    // The same click delivered again, and a second lead clicking too.
    assert_eq!(bot.send(&lead).await.status(), 200);
    let second = slack_fake::button_click(
        SECRET,
        "approve",
        &approval_id,
        "ULEAD2",
        "C0OPS",
        &card_ts,
        "1700000005.000001",
    );
    assert_eq!(bot.send(&second).await.status(), 200);

    let audit = bot
        .wait_audit(|a| a.iter().any(|(k, _)| k == "execution"))
        .await;
    assert_eq!(bot.replicas("production", "conea-api"), 5, "{audit:?}");
    bot.wait_for_text(&format!("{before} → 5")).await;
    // The card was edited in place: the approval by a lead (whichever click landed first),
    // the final state, the outcome. Card edits are paced (the newest state wins), so one may
    // follow the result: waited for, not looked for in the calls so far.
    bot.fake
        .wait_until(PATIENCE, |calls| {
            ok_calls(calls, "chat.update")
                .iter()
                .filter(|u| u.param("ts") == Some(card_ts.as_str()))
                .any(|u| {
                    u.all_text()
                        .split("*Approvals*\n")
                        .nth(1)
                        .and_then(|rest| rest.lines().next())
                        .is_some_and(|approvals| approvals.contains("(<@ULEAD"))
                })
        })
        .await;
    let card_now = bot
        .fake
        .wait_until(PATIENCE, |calls| {
            calls.iter().any(|c| {
                c.method == "chat.update"
                    && c.param("ts") == Some(card_ts.as_str())
                    && c.all_text().contains("Approved and executed")
            })
        })
        .await;
    let final_card = card_now
        .iter()
        .rev()
        .find(|c| c.method == "chat.update" && c.param("ts") == Some(card_ts.as_str()))
        .unwrap()
        .all_text();
    for part in ["Approved and executed", "*State*\nexecuted", "*Outcome*"] {
        assert!(final_card.contains(part), "{part}: {final_card}");
    }
    // Give any straggling click time to land, then check it ran exactly once.
    bot.wait_audit(|a| a.iter().filter(|(k, _)| k == "approval").count() >= 4)
        .await;
    assert_eq!(bot.executions().await, 1, "{:?}", bot.audit().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_execute_nothing_and_are_audited() {
    let bot = Bot::start().await;
    let before = bot.replicas("api", "rust-webapi");
    let good = slack_fake::slash_command(
        SECRET,
        "/ops",
        "scale rust-webapi 7 -n api",
        "UENG",
        "C0OPS",
        "e2e.ref.1",
    );

    let forged = slack_fake::slash_command(
        "forged",
        "/ops",
        "scale rust-webapi 7 -n api",
        "UENG",
        "C0OPS",
        "e2e.ref.2",
    );
    assert_eq!(bot.send(&forged).await.status(), 401);
    let stale = good.clone().at(slack_fake::now_secs() - 600, SECRET);
    assert_eq!(bot.send(&stale).await.status(), 401);
    let mut altered = good.clone();
    altered.body = String::from_utf8(altered.body)
        .unwrap()
        .replace("rust-webapi+7", "rust-webapi+9")
        .into_bytes();
    assert_eq!(bot.send(&altered).await.status(), 401);
    let mut big = String::from_utf8(good.body.clone()).unwrap();
    big.push_str(&format!("&pad={}", "x".repeat(1024 * 1024 + 1)));
    let oversized = SignedRequest::new(good.path, good.content_type, big.into_bytes(), SECRET);
    assert_eq!(bot.send(&oversized).await.status(), 413);

    let audit = bot
        .wait_audit(|a| a.iter().filter(|(k, _)| k == "rejection").count() >= 4)
        .await;
    for kind in ["bad_signature", "stale_timestamp", "too_large"] {
        assert!(
            audit.contains(&("rejection".into(), kind.into())),
            "{kind}: {audit:?}"
        );
    }
    assert_eq!(bot.replicas("api", "rust-webapi"), before);
    assert_eq!(bot.executions().await, 0);
    // Counted in the metrics, too.
    let metrics = bot
        .http
        .get(format!("{}/metrics", bot.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (kind, n) in [
        ("bad_signature", 2),
        ("stale_timestamp", 1),
        ("too_large", 1),
    ] {
        let line = format!(r#"opsbot_rejections_total{{platform="slack",kind="{kind}"}} {n}"#);
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }

    // The genuine request runs; replaying it (same trigger, within the window) does not.
    assert_eq!(bot.send(&good).await.status(), 200);
    bot.wait_for_text(&format!("{before} → 7")).await;
    assert_eq!(bot.replicas("api", "rust-webapi"), 7);
    let mut replay = good.clone();
    replay.retry_num = Some(1);
    let res = bot.send(&replay).await;
    assert_eq!(res.status(), 200);
    let audit = bot
        .wait_audit(|a| a.contains(&("rejection".into(), "replay".into())))
        .await;
    assert!(
        audit.contains(&("rejection".into(), "replay".into())),
        "{audit:?}"
    );
    assert_eq!(bot.executions().await, 1, "{audit:?}");
    assert!(bot.engine.store().verify().await.unwrap().is_ok());
    // Nothing Slack-secret reached the audit log.
    let all = bot.engine.store().tail(1000).await.unwrap();
    let dump = serde_json::to_string(&all).unwrap();
    assert!(!dump.contains(SECRET) && !dump.contains(TOKEN));
}

/// Anyone who can reach the endpoint can send forged requests at any rate: each is refused and
/// counted, but past a quota a minute they reach the audit log as one summary with their count,
/// not one record each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_requests_is_counted_not_recorded_one_by_one() {
    let bot = Bot::start().await;
    const FLOOD: usize = 60;
    for i in 0..FLOOD {
        let forged = slack_fake::slash_command(
            "forged",
            "/ops",
            "status rust-webapi -n api",
            "UENG",
            "C0OPS",
            &format!("e2e.flood.{i}"),
        );
        assert_eq!(bot.send(&forged).await.status(), 401);
    }
    let line =
        format!(r#"opsbot_rejections_total{{platform="slack",kind="bad_signature"}} {FLOOD}"#);
    eventually(
        PATIENCE,
        "every forged request counted",
        || async {
            let res = bot.http.get(format!("{}/metrics", bot.base)).send().await;
            res.unwrap().text().await.unwrap()
        },
        |m| m.contains(&line),
    )
    .await;

    // The sweep records what the quota held back; the records add up to the flood.
    let records = eventually(
        PATIENCE,
        "the held-back rejections summarised",
        || async {
            bot.engine.sweep().await;
            let tail = bot.engine.store().tail(1000).await.unwrap();
            tail.into_iter()
                .filter(|r| r.entry.outcome.as_deref() == Some("bad_signature"))
                .map(|r| r.entry.detail)
                .collect::<Vec<_>>()
        },
        |records| {
            let held: u64 = records.iter().filter_map(|d| d["count"].as_u64()).sum();
            let single = records.iter().filter(|d| d.get("count").is_none()).count();
            single as u64 + held == FLOOD as u64
        },
    )
    .await;
    let singles = records.iter().filter(|d| d.get("count").is_none()).count();
    assert_eq!(singles, 10, "{records:?}");
    assert!(records.len() < 15, "{records:?}");
    let summary = records.iter().find(|d| d.get("count").is_some()).unwrap();
    assert!(
        summary["detail"]
            .as_str()
            .unwrap()
            .contains("more rejected since"),
        "{summary}"
    );
    assert!(bot.engine.store().verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_from_slack_delays_and_then_delivers() {
    let bot = Bot::start().await;
    bot.fake.fail_next(
        "chat.postMessage",
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    bot.command("UENG", "status rust-webapi -n api", "e2e.429.1")
        .await;
    let calls = bot.fake.wait_for_ok("chat.postMessage", 1, PATIENCE).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].status, 429);
    assert_eq!(calls[1].status, 200);
    assert!(calls[1].at.duration_since(calls[0].at) >= Duration::from_secs(1));
    assert!(
        calls[1].all_text().contains("rust-webapi"),
        "{}",
        calls[1].all_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_slack_will_not_take_are_audited_as_undelivered() {
    let bot = Bot::start().await;
    // Slack keeps failing: every one of the five attempts answers 503.
    for _ in 0..5 {
        bot.fake.fail_next("chat.postMessage", Failure::Status(503));
    }
    bot.command("UENG", "status rust-webapi -n api", "e2e.undelivered.1")
        .await;
    let undelivered = |a: &[(String, String)]| {
        a.iter()
            .filter(|(k, o)| k == "delivery" && o == "undelivered")
            .count()
    };
    let audit = bot.wait_audit(|a| undelivered(a) >= 1).await;
    assert_eq!(undelivered(&audit), 1, "{audit:?}");
    let posts = bot.fake.calls_to("chat.postMessage");
    assert_eq!(posts.len(), 5, "{posts:?}");
    assert!(posts.iter().all(|c| c.status == 503));

    // Refused for good (`ok:false`): not retried; the fallback through the command's
    // response URL fails as well (gone): audited as well.
    bot.fake.fail_next(
        "chat.postMessage",
        Failure::Error("channel_not_found".into()),
    );
    bot.fake.fail_next("response_url", Failure::Status(404));
    bot.command("UENG", "status rust-webapi -n api", "e2e.undelivered.2")
        .await;
    let audit = bot.wait_audit(|a| undelivered(a) >= 2).await;
    assert_eq!(undelivered(&audit), 2, "{audit:?}");
    assert_eq!(bot.fake.calls_to("chat.postMessage").len(), 6);

    // The entries name the method and Slack's error; the metric counts them.
    let details: Vec<String> = bot
        .engine
        .store()
        .tail(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.outcome.as_deref() == Some("undelivered"))
        .map(|r| r.entry.detail.to_string())
        .collect();
    assert!(
        details[0].contains("chat.postMessage failed after retries: HTTP 503"),
        "{details:?}"
    );
    assert!(
        details[1].contains("chat.postMessage refused: channel_not_found"),
        "{details:?}"
    );
    assert!(
        details[1].contains("response_url refused: HTTP 404"),
        "{details:?}"
    );
    assert!(!details[1].contains("/response/"), "{details:?}");
    let metrics = bot
        .http
        .get(format!("{}/metrics", bot.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("opsbot_undelivered_total 2"), "{metrics}");
}

/// `/incident` is `/ops incident`, through the pipeline. This harness runs no incidents service
/// (`tests/incidents.rs` does): the engineer is told so privately, and it is audited as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_command_without_the_incidents_service_is_refused_privately() {
    let bot = Bot::start().await;
    let req = slack_fake::slash_command(
        SECRET,
        "/incident",
        "open P1 api down",
        "UENG",
        "C0OPS",
        "e2e.inc.1",
    );
    let res = bot.send(&req).await;
    assert_eq!(res.status(), 200);
    let ack: serde_json::Value = res.json().await.unwrap();
    assert!(
        ack["text"].as_str().unwrap().contains("Working on"),
        "{ack}"
    );
    let audit = bot
        .wait_audit(|a| {
            a.iter()
                .any(|(k, o)| k == "rejection" && o == "not_applicable")
        })
        .await;
    assert!(
        audit
            .iter()
            .any(|(k, o)| k == "rejection" && o == "not_applicable"),
        "{audit:?}"
    );
    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| {
            calls
                .iter()
                .any(|c| c.method == "chat.postEphemeral" && c.all_text().contains("not enabled"))
        })
        .await;
    assert!(ok_calls(&calls, "chat.postMessage").is_empty());
}

/// What concerns one person goes to that person only: 100 clicks at once on one card give one
/// run, one vote counted, and no public message but the card's edits and the run's own
/// message; help, a denial and every refused click are ephemeral; the result says who asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_things_stay_private_under_a_hundred_clicks() {
    // All hundred clicks are in flight at once: the cap on requests in flight is raised above
    // them, so each is taken (none refused as busy) and each is audited.
    let bot = Bot::start_with(BotOptions {
        max_in_flight: 256,
        ..BotOptions::default()
    })
    .await;
    bot.command("UENG", "help", "e2e.priv.1").await;
    bot.command("UNOBODY", "scale rust-webapi 3 -n api", "e2e.priv.2")
        .await;
    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| {
            ok_calls(calls, "chat.postEphemeral").len() >= 2
        })
        .await;
    let private = ok_calls(&calls, "chat.postEphemeral");
    assert!(
        private
            .iter()
            .any(|c| c.param("user") == Some("UENG") && c.all_text().contains("opsbot commands"))
    );
    assert!(
        private
            .iter()
            .any(|c| c.param("user") == Some("UNOBODY") && c.all_text().contains("Not allowed"))
    );
    assert!(
        ok_calls(&calls, "chat.postMessage").is_empty(),
        "nothing public yet"
    );

    bot.command("UENG", "scale conea-api 6 -n production", "e2e.priv.3")
        .await;
    let calls = bot
        .fake
        .wait_until(PATIENCE, |calls| {
            !ok_calls(calls, "chat.postMessage").is_empty()
        })
        .await;
    let card = ok_calls(&calls, "chat.postMessage")[0].clone();
    let card_ts = bot.fake.messages()[0].ts.clone();
    let approval_id = card.first_button_value().expect("an approval id");

    let mut clicks = Vec::new();
    for i in 0..100 {
        let user = match i % 4 {
            0 => "ULEAD",
            1 => "ULEAD2",
            2 => "UENG",
            _ => "UNOBODY",
        };
        let req = slack_fake::button_click(
            SECRET,
            "approve",
            &approval_id,
            user,
            "C0OPS",
            &card_ts,
            &format!("1700000100.{i:06}"),
        );
        let (http, base) = (bot.http.clone(), bot.base.clone());
        clicks.push(tokio::spawn(async move {
            req.send(&http, &base).await.status()
        }));
    }
    for click in clicks {
        assert_eq!(click.await.unwrap(), 200);
    }
    let clicked = |a: &[(String, String)]| {
        a.iter()
            .filter(|(k, o)| k == "approval" && o == "approve_clicked")
            .count()
    };
    let audit = bot
        .wait_audit(|a| clicked(a) >= 100 && a.iter().any(|(k, _)| k == "execution"))
        .await;
    assert_eq!(clicked(&audit), 100, "every click is taken and audited");
    let calls = bot.wait_for_text("requested by <@UENG>").await;
    assert!(
        ok_calls(&calls, "chat.update")
            .iter()
            .any(|c| c.all_text().contains("requested by <@UENG>")),
        "the result says who asked, as a mention"
    );
    assert_eq!(bot.executions().await, 1);
    let approval = bot.engine.store().get(&approval_id).await.unwrap().unwrap();
    assert_eq!(approval.approvers.len(), 1, "votes stop at the one needed");
    let public: Vec<String> = ok_calls(&calls, "chat.postMessage")
        .iter()
        .map(|c| c.all_text())
        .collect();
    assert_eq!(
        public.len(),
        2,
        "the card and the run's message only: {public:#?}"
    );
    assert!(public[1].contains("Running"), "{public:#?}");
    let edits_elsewhere = ok_calls(&calls, "chat.update")
        .iter()
        .filter(|c| c.param("ts") != Some(card_ts.as_str()))
        .filter(|c| !c.all_text().contains("conea-api"))
        .count();
    assert_eq!(edits_elsewhere, 0);
}

/// While Slack's user groups cannot be read (here the app lacks the scope), a ban on a group
/// still holds: the person might be in it. What no group's rule denies works as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_ban_holds_while_slacks_user_groups_cannot_be_read() {
    let bot = Bot::start().await;
    let banned = POLICY.replace(
        "rules:\n",
        "  contractors: { members: [\"slack-group:SCONTRACT\"] }\n\
         rules:\n  - name: no-contractors-in-api\n    roles: [contractors]\n    actions: [scale]\n\
         \x20   namespaces: [api]\n    effect: deny\n    reason: contractors do not scale\n",
    );
    std::fs::write(&bot.core.policy_path, banned).unwrap();
    assert_eq!(bot.engine.policy().reload(), opsbot::engine::Reload::Loaded);
    bot.fake
        .fail_next("usergroups.list", Failure::Error("missing_scope".into()));
    let before = bot.replicas("api", "rust-webapi");
    bot.command("UENG", "scale rust-webapi 9 -n api", "e2e.ban.1")
        .await;
    let denied = |calls: &[Call]| {
        ok_calls(calls, "chat.postEphemeral").into_iter().any(|c| {
            c.param("user") == Some("UENG") && c.all_text().contains("groups could not be read")
        })
    };
    let calls = bot.fake.wait_until(PATIENCE, denied).await;
    assert!(denied(&calls), "{calls:?}");
    assert_eq!(bot.replicas("api", "rust-webapi"), before);

    // A status is no group's to deny.
    bot.command("UENG", "status rust-webapi -n api", "e2e.ban.2")
        .await;
    bot.wait_for_text("rust-webapi").await;
    assert_eq!(bot.replicas("api", "rust-webapi"), before);
}

/// An allowed change that cannot run (here: no such deployment) is the requester's business:
/// told privately, and nothing is posted in the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_change_that_cannot_run_is_refused_privately() {
    let bot = Bot::start().await;
    bot.command("UENG", "scale rust-webapii 3 -n api", "e2e.typo.1")
        .await;
    let refused = |calls: &[Call]| {
        ok_calls(calls, "chat.postEphemeral")
            .into_iter()
            .any(|c| c.param("user") == Some("UENG") && c.all_text().contains("rust-webapi"))
    };
    let calls = bot.fake.wait_until(PATIENCE, refused).await;
    assert!(refused(&calls), "{calls:?}");
    assert!(ok_calls(&calls, "chat.postMessage").is_empty(), "{calls:?}");
    let audit = bot
        .wait_audit(|a| a.contains(&("rejection".into(), "cannot_run".into())))
        .await;
    assert!(!audit.iter().any(|(k, _)| k == "execution"), "{audit:?}");
}
