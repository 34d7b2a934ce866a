//! The engine end to end through the console adapter, against kubesim and both databases:
//! allow, deny and approval flows, ineligible approvers, exactly-once execution under concurrent
//! clicks, expiry, restart with a pending approval, audit tampering, rate limits and policy
//! hot reload.

use std::sync::Arc;

use opsbot::engine::Reload;
use opsbot::store::{ApprovalState, InboxKind};
use opsbot_tests::bot::{BotOptions, Db, TestBot, approval_id};

const POLICY: &str = r#"
version: 1
roles:
  lead: { members: ["console:alice", "console:carol"] }
  eng:  { members: ["console:bob"] }
rules:
  - name: read
    roles: ["*"]
    actions: [status, pods, events, logs, "hpa.show", "backup.status"]
  - name: no-zero
    roles: ["*"]
    actions: [scale]
    when: { replicas: { max: 0 } }
    effect: deny
    reason: "scaling to zero is done by hand"
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

/// Runs `$body` (an async fn taking `TestBot`) on SQLite and on PostgreSQL.
macro_rules! both_databases {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let bot =
                    TestBot::start(Db::Sqlite, stringify!($name), POLICY, BotOptions::default())
                        .await
                        .unwrap();
                let body = $body;
                body(bot).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(bot) = TestBot::start(
                    Db::Postgres,
                    stringify!($name),
                    POLICY,
                    BotOptions::default(),
                )
                .await
                {
                    let body = $body;
                    body(bot).await;
                }
            }
        }
    };
}

async fn audit_outcomes(bot: &TestBot) -> Vec<String> {
    bot.engine
        .store()
        .tail(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "{}:{}",
                r.entry.kind.as_str(),
                r.entry.outcome.unwrap_or_default()
            )
        })
        .collect()
}

both_databases!(
    allowed_scale_runs_and_is_audited,
    |bot: TestBot| async move {
        let before = bot.replicas("api", "rust-webapi");
        assert_ne!(before, 4);
        let out = bot.say("bob", "scale rust-webapi 4 -n api").await;
        assert_eq!(bot.replicas("api", "rust-webapi"), 4, "{out}");
        assert!(out.contains(&format!("{before} → 4")), "{out}");
        let audit = audit_outcomes(&bot).await;
        assert!(audit.contains(&"request:".to_owned()), "{audit:?}");
        assert!(audit.contains(&"decision:allow".to_owned()), "{audit:?}");
        assert!(audit.contains(&"execution:ok".to_owned()), "{audit:?}");
        assert!(bot.engine.store().verify().await.unwrap().is_ok());
    }
);

both_databases!(denied_request_changes_nothing, |bot: TestBot| async move {
    let before = bot.replicas("api", "rust-webapi");
    let out = bot.say("bob", "scale rust-webapi 0 -n api").await;
    assert!(out.contains("Not allowed"), "{out}");
    assert!(out.contains("scaling to zero is done by hand"), "{out}");
    assert!(out.contains("no-zero"), "{out}");
    // Not in any role that may scale: denied with what no rule allowed.
    let out = bot.say("mallory", "restart rust-webapi -n api").await;
    assert!(out.contains("Not allowed"), "{out}");
    assert_eq!(bot.replicas("api", "rust-webapi"), before);
    let audit = audit_outcomes(&bot).await;
    assert_eq!(audit.iter().filter(|a| *a == "decision:deny").count(), 2);
    assert!(
        !audit.iter().any(|a| a.starts_with("execution:")),
        "{audit:?}"
    );
});

both_databases!(
    parse_errors_are_answered_and_audited,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scael rust-webapi 3").await;
        assert!(out.contains("Cannot read that command"), "{out}");
        assert!(out.contains("scale"), "suggests the nearest command: {out}");
        let audit = audit_outcomes(&bot).await;
        assert!(
            audit.contains(&"rejection:parse_error".to_owned()),
            "{audit:?}"
        );
    }
);

both_databases!(
    nobody_is_asked_to_approve_what_could_not_run,
    |bot: TestBot| async move {
        // Each needs an approval by the policy, and each would fail if it ran.
        for (line, says) in [
            (
                "scale conea-apj 5 -n production",
                "deployment `conea-apj` not found in namespace `production`",
            ),
            ("scale sts/conea-api 5 -n production", "not found"),
        ] {
            let out = bot.say("bob", line).await;
            assert!(
                out.starts_with("(only console:bob)"),
                "told privately: {out}"
            );
            assert!(out.contains(says), "{line}: {out}");
            assert!(!out.contains("Approval needed"), "{line}: {out}");
        }
        assert!(
            bot.engine.store().pending().await.unwrap().is_empty(),
            "no approval was asked for"
        );
        let audit = audit_outcomes(&bot).await;
        assert_eq!(
            audit
                .iter()
                .filter(|a| *a == "rejection:cannot_run")
                .count(),
            2,
            "{audit:?}"
        );
        assert!(
            !audit.iter().any(|a| a.starts_with("approval:")),
            "{audit:?}"
        );
        // What could run is still asked for.
        let out = bot.say("bob", "scale conea-api 5 -n production").await;
        assert!(out.contains("Approval needed"), "{out}");
        assert_eq!(bot.engine.store().pending().await.unwrap().len(), 1);
    }
);

both_databases!(
    approval_flow_needs_an_eligible_other_person,
    |bot: TestBot| async move {
        let before = bot.replicas("production", "conea-api");
        let out = bot.say("bob", "scale conea-api 7").await;
        assert!(out.contains("Approval needed"), "{out}");
        assert!(out.contains("prod-scale"), "{out}");
        let id = approval_id(&out).expect("an approval card with buttons");
        assert_eq!(
            bot.replicas("production", "conea-api"),
            before,
            "nothing before approval"
        );

        // The requester cannot approve their own request.
        let out = bot.say("bob", &format!("approve {id}")).await;
        assert!(out.contains("You cannot approve"), "{out}");
        // Nor can someone without the approver role.
        let out = bot.say("mallory", &format!("approve {id}")).await;
        assert!(out.contains("You cannot approve"), "{out}");
        assert_eq!(bot.replicas("production", "conea-api"), before);

        // An eligible approver: it runs, and the card says so.
        let out = bot.say("alice", &format!("approve {id}")).await;
        assert_eq!(bot.replicas("production", "conea-api"), 7, "{out}");
        assert!(out.contains("Approved and executed"), "{out}");
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Executed);
        assert_eq!(a.approvers.len(), 1);
        assert_eq!(a.approvers[0].subject, "console:alice");
        // The click that ran the change is recorded as having run one (after a crash it is
        // answered "outcome unknown", not "nothing was run").
        let inbox = bot.engine.store().inbox().await.unwrap();
        let click = inbox
            .iter()
            .find(|e| e.kind == InboxKind::Click && e.actor == "console:alice")
            .expect("alice's click in the inbox");
        assert!(click.mutating, "{click:?}");

        // A late click changes nothing.
        let out = bot.say("carol", &format!("approve {id}")).await;
        assert!(out.contains("is executed"), "{out}");
        let audit = audit_outcomes(&bot).await;
        assert_eq!(audit.iter().filter(|a| *a == "execution:ok").count(), 1);
        assert_eq!(
            audit.iter().filter(|a| *a == "approval:approved").count(),
            1
        );
        assert!(
            audit.contains(&"approval:approve_refused".to_owned()),
            "{audit:?}"
        );
    }
);

/// Nothing runs without its decision on record: when the approval that lets a change run
/// cannot be audited, the request fails and the cluster is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_cannot_be_audited_runs_nothing() {
    let bot = TestBot::start(Db::Sqlite, "unaudited", POLICY, BotOptions::default())
        .await
        .unwrap();
    let before = bot.replicas("production", "conea-api");
    let out = bot.say("bob", "scale conea-api 7").await;
    let id = approval_id(&out).expect("an approval card");
    // The database refuses exactly the record of the approval.
    bot.raw_sql(
        "CREATE TRIGGER refuse_approved BEFORE INSERT ON audit_log \
         WHEN NEW.outcome = 'approved' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
    )
    .await;
    let out = bot.say("alice", &format!("approve {id}")).await;
    assert!(out.contains("Approved, but failed"), "{out}");
    assert_eq!(bot.replicas("production", "conea-api"), before);
    let a = bot.engine.store().get(&id).await.unwrap().unwrap();
    assert_eq!(a.state, ApprovalState::Failed);
    assert!(a.outcome.unwrap().contains("audit log"));
    let audit = audit_outcomes(&bot).await;
    assert!(
        !audit.iter().any(|a| a.starts_with("execution:")),
        "{audit:?}"
    );
}

both_databases!(deny_click_closes_the_request, |bot: TestBot| async move {
    let before = bot.replicas("production", "conea-api");
    let out = bot.say("bob", "scale conea-api 9").await;
    let id = approval_id(&out).unwrap();
    // Someone without standing cannot deny either.
    let out = bot.say("mallory", &format!("deny {id}")).await;
    assert!(out.contains("You cannot deny"), "{out}");
    let out = bot.say("carol", &format!("deny {id}")).await;
    assert!(out.contains("Denied"), "{out}");
    let out = bot.say("alice", &format!("approve {id}")).await;
    assert!(out.contains("is denied"), "{out}");
    assert_eq!(bot.replicas("production", "conea-api"), before);
});

both_databases!(
    fifty_concurrent_approvals_execute_once,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scale conea-api 11").await;
        let id = approval_id(&out).unwrap();
        let bot = Arc::new(bot);
        let mut clicks = Vec::new();
        for i in 0..50 {
            let bot = bot.clone();
            let id = id.clone();
            let who = if i % 2 == 0 { "alice" } else { "carol" };
            clicks.push(tokio::spawn(async move {
                bot.say(who, &format!("approve {id}")).await
            }));
        }
        for c in clicks {
            c.await.unwrap();
        }
        assert_eq!(bot.replicas("production", "conea-api"), 11);
        let audit = audit_outcomes(&bot).await;
        assert_eq!(
            audit.iter().filter(|a| a.starts_with("execution:")).count(),
            1,
            "{audit:?}"
        );
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Executed);
    }
);

both_databases!(expired_requests_do_not_run, |bot: TestBot| async move {
    let before = bot.replicas("production", "conea-api");
    let out = bot.say("bob", "scale conea-api 12").await;
    let id = approval_id(&out).unwrap();
    // Let the request run out: move its expiry into the past.
    expire_now(&bot, &id).await;
    let out = bot.say("alice", &format!("approve {id}")).await;
    assert!(out.contains("has expired"), "{out}");
    assert!(
        out.contains(&format!("Expired · {id}")),
        "the card is updated: {out}"
    );
    assert_eq!(bot.replicas("production", "conea-api"), before);

    // The sweeper expires requests nobody clicks on.
    let out = bot.say("bob", "scale conea-api 13").await;
    let id = approval_id(&out).unwrap();
    expire_now(&bot, &id).await;
    let mark = bot.out.len();
    bot.engine.sweep().await;
    assert!(bot.out.since(mark).contains(&format!("Expired · {id}")));
    let a = bot.engine.store().get(&id).await.unwrap().unwrap();
    assert_eq!(a.state, ApprovalState::Expired);
});

/// Sets an approval's expiry to now, as if its time had passed.
async fn expire_now(bot: &TestBot, id: &str) {
    let now = jiff::Timestamp::now().as_millisecond() - 1;
    bot.raw_sql(&format!(
        "UPDATE approvals SET expires_ms = {now} WHERE id = '{id}'"
    ))
    .await;
}

both_databases!(
    pending_approval_survives_a_restart,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scale conea-api 14").await;
        let id = approval_id(&out).unwrap();
        let bot = bot.restart().await;
        let out = bot.say("alice", &format!("approve {id}")).await;
        assert!(out.contains("Approved and executed"), "{out}");
        assert_eq!(bot.replicas("production", "conea-api"), 14);
    }
);

both_databases!(
    policy_is_checked_again_before_running,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scale conea-api 15").await;
        let id = approval_id(&out).unwrap();
        // Production is frozen while the request waits.
        let frozen = POLICY.replace(
        "rules:\n",
        "rules:\n  - name: freeze\n    roles: [\"*\"]\n    actions: [scale]\n    namespaces: [production]\n    effect: deny\n    reason: \"change freeze\"\n",
    );
        std::fs::write(&bot.policy_path, frozen).unwrap();
        assert_eq!(bot.engine.policy().reload(), Reload::Loaded);
        let before = bot.replicas("production", "conea-api");
        let out = bot.say("alice", &format!("approve {id}")).await;
        assert!(out.contains("change freeze"), "{out}");
        assert_eq!(bot.replicas("production", "conea-api"), before);
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Failed);
    }
);

both_databases!(
    an_approver_a_reload_took_the_role_from_no_longer_counts,
    |bot: TestBot| async move {
        let two = POLICY.replace("count: 1,", "count: 2,");
        std::fs::write(&bot.policy_path, &two).unwrap();
        assert_eq!(bot.engine.policy().reload(), Reload::Loaded);
        let before = bot.replicas("production", "conea-api");
        let out = bot.say("bob", "scale conea-api 16").await;
        let id = approval_id(&out).unwrap();
        let out = bot.say("alice", &format!("approve {id}")).await;
        assert!(!out.contains("executed"), "{out}");
        // Alice leaves the leads after her vote; Dave joins them.
        let moved = two.replace(
            r#"lead: { members: ["console:alice", "console:carol"] }"#,
            r#"lead: { members: ["console:carol", "console:dave"] }"#,
        );
        assert_ne!(moved, two);
        std::fs::write(&bot.policy_path, moved).unwrap();
        assert_eq!(bot.engine.policy().reload(), Reload::Loaded);
        let out = bot.say("carol", &format!("approve {id}")).await;
        assert!(
            out.contains("the policy no longer lets console:alice approve it"),
            "{out}"
        );
        assert_eq!(bot.replicas("production", "conea-api"), before);
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Failed);

        // Asked again, the leads of now approve it, and it runs.
        let out = bot.say("bob", "scale conea-api 16").await;
        let id = approval_id(&out).unwrap();
        bot.say("dave", &format!("approve {id}")).await;
        let out = bot.say("carol", &format!("approve {id}")).await;
        assert!(out.contains("Approved and executed"), "{out}");
        assert_eq!(bot.replicas("production", "conea-api"), 16);
    }
);

both_databases!(
    a_group_ban_holds_when_an_approval_asked_with_unknown_groups_runs,
    |bot: TestBot| async move {
        // UBOB is a Slack user whose groups could not be read when he asked.
        let with_slack_bob = POLICY.replace(
            r#"eng:  { members: ["console:bob"] }"#,
            r#"eng:  { members: ["console:bob", "slack:UBOB"] }"#,
        );
        assert_ne!(with_slack_bob, POLICY);
        std::fs::write(&bot.policy_path, &with_slack_bob).unwrap();
        assert_eq!(bot.engine.policy().reload(), Reload::Loaded);
        let before = bot.replicas("production", "conea-api");
        bot.engine
            .handle(opsbot::chat::Invocation {
                platform: "console",
                user: opsbot_policies::Subject::parse("slack:UBOB").unwrap(),
                groups: Vec::new(),
                groups_unknown: true,
                channel: "console".into(),
                text: "scale conea-api 17".into(),
                delivery_id: Some("unknown-groups-1".into()),
                origin: None,
            })
            .await;
        let pending = bot
            .engine
            .store()
            .approvals_in(ApprovalState::Pending)
            .await
            .unwrap();
        let id = pending[0].id.clone();
        // While it waits, a Slack group is banned from scaling in production.
        let banned = with_slack_bob
            .replace(
                "  eng:",
                "  contractors: { members: [\"slack-group:SCONTRACT\"] }\n  eng:",
            )
            .replace(
                "rules:\n",
                "rules:\n  - name: no-contractors\n    roles: [contractors]\n    actions: [scale]\n    \
                 namespaces: [production]\n    effect: deny\n    reason: not from contractors\n",
            );
        std::fs::write(&bot.policy_path, banned).unwrap();
        assert_eq!(bot.engine.policy().reload(), Reload::Loaded);
        bot.say("alice", &format!("approve {id}")).await;
        assert_eq!(bot.replicas("production", "conea-api"), before);
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Failed);
        let why = a.outcome.unwrap_or_default();
        assert!(why.contains("groups could not be read"), "{why}");
    }
);

both_databases!(
    a_vote_refused_while_the_approvers_groups_are_unknown_says_so,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scale conea-api 18").await;
        let id = approval_id(&out).unwrap();
        // mallory holds no approver role; her groups could not be read.
        bot.engine
            .click(opsbot::chat::ApprovalClick {
                platform: "console",
                user: opsbot_policies::Subject::parse("console:mallory").unwrap(),
                groups: Vec::new(),
                groups_unknown: true,
                channel: "console".into(),
                approval_id: id.clone(),
                approve: true,
                delivery_id: Some("unknown-groups-vote".into()),
                origin: None,
            })
            .await;
        let records = bot.engine.store().tail(20).await.unwrap();
        let refused = records
            .iter()
            .find(|r| r.entry.outcome.as_deref() == Some("approve_refused"))
            .expect("the vote is refused, on record");
        let reason = refused.entry.detail["reason"].as_str().unwrap();
        assert!(reason.contains("groups could not be read"), "{reason}");
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert!(a.approvers.is_empty());
    }
);

both_databases!(
    policy_hot_reload_refuses_a_broken_file,
    |bot: TestBot| async move {
        // A broken file is refused and the old policy stays in force.
        std::fs::write(
            &bot.policy_path,
            "version: 1\nrules:\n  - name: x\n    roles: [nobody]\n",
        )
        .unwrap();
        let Reload::Refused(errors) = bot.engine.policy().reload() else {
            panic!("a broken policy must be refused");
        };
        assert!(errors.contains("policy.yaml:4:"), "{errors}");
        let out = bot.say("bob", "scale rust-webapi 3 -n api").await;
        assert_eq!(bot.replicas("api", "rust-webapi"), 3, "{out}");

        // A good new file takes over: bob may no longer scale in api.
        let stricter = POLICY.replace("actions: [scale, restart]", "actions: [restart]");
        std::fs::write(&bot.policy_path, stricter).unwrap();
        assert_eq!(bot.engine.policy().reload(), Reload::Loaded);
        let out = bot.say("bob", "scale rust-webapi 5 -n api").await;
        assert!(out.contains("Not allowed"), "{out}");
        assert_eq!(bot.replicas("api", "rust-webapi"), 3);
    }
);

both_databases!(
    tampering_with_the_audit_log_is_found,
    |bot: TestBot| async move {
        bot.say("bob", "status rust-webapi -n api").await;
        bot.say("bob", "scale rust-webapi 2 -n api").await;
        assert!(bot.engine.store().verify().await.unwrap().is_ok());
        let records = bot.engine.store().tail(100).await.unwrap();
        let victim = records
            .iter()
            .find(|r| r.entry.outcome.as_deref() == Some("allow"))
            .unwrap()
            .id;
        bot.raw_sql(&format!(
            "UPDATE audit_log SET outcome = 'deny' WHERE id = {victim}"
        ))
        .await;
        let report = bot.engine.store().verify().await.unwrap();
        assert!(!report.is_ok());
        assert!(report.to_string().contains(&victim.to_string()), "{report}");
    }
);

async fn rate_limit_refuses_and_runs_nothing(db: Db) {
    let one = opsbot::config::Quota {
        per_minute: 1.try_into().unwrap(),
        burst: 2.try_into().unwrap(),
    };
    let mut limits = opsbot_tests::bot::wide_limits();
    limits.per_user = one;
    let Some(bot) = TestBot::start(
        db,
        "rate_limit",
        POLICY,
        BotOptions {
            rate_limits: limits,
            ..BotOptions::default()
        },
    )
    .await
    else {
        return;
    };
    bot.say("bob", "status rust-webapi -n api").await;
    bot.say("bob", "status rust-webapi -n api").await;
    let out = bot.say("bob", "scale rust-webapi 6 -n api").await;
    assert!(out.contains("Slow down"), "{out}");
    assert!(out.contains("try again in"), "{out}");
    assert_ne!(bot.replicas("api", "rust-webapi"), 6);
    // Someone else is not limited.
    let out = bot.say("alice", "status rust-webapi -n api").await;
    assert!(!out.contains("Slow down"), "{out}");
    let audit = audit_outcomes(&bot).await;
    assert!(
        audit.contains(&"rejection:rate_limited".to_owned()),
        "{audit:?}"
    );
    let metrics = bot.engine.metrics().render();
    assert!(metrics.contains("opsbot_rate_limited_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_sqlite() {
    rate_limit_refuses_and_runs_nothing(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_postgres() {
    rate_limit_refuses_and_runs_nothing(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_reports_rollout_progress_and_a_verdict() {
    let bot = TestBot::start(Db::Sqlite, "progress", POLICY, BotOptions::default())
        .await
        .unwrap();
    let out = bot.say("bob", "scale rust-webapi 6 -n api").await;
    assert!(
        out.contains("Running `scale"),
        "a progress message first: {out}"
    );
    assert!(out.contains("(updated)"), "then edits: {out}");
    assert_eq!(bot.replicas("api", "rust-webapi"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_means_a_reply_and_nothing_run() {
    let bot = TestBot::start(Db::Sqlite, "db_down", POLICY, BotOptions::default())
        .await
        .unwrap();
    let before = bot.replicas("api", "rust-webapi");
    bot.engine.store().close().await;
    let out = bot.say("bob", "scale rust-webapi 8 -n api").await;
    assert!(out.contains("Nothing was run"), "{out}");
    assert!(out.contains("could not record this request"), "{out}");
    assert!(
        out.starts_with("(only console:bob)"),
        "told privately: {out}"
    );
    assert_eq!(bot.replicas("api", "rust-webapi"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_failure_is_a_reply_and_audited() {
    let bot = TestBot::start(Db::Sqlite, "kube_down", POLICY, BotOptions::default())
        .await
        .unwrap();
    bot.sim.faults().forbid("patch", "deployments/scale");
    bot.sim.faults().forbid("update", "deployments/scale");
    let out = bot.say("bob", "scale rust-webapi 8 -n api").await;
    assert!(out.contains("⛔"), "a danger reply: {out}");
    assert_ne!(bot.replicas("api", "rust-webapi"), 8);
    let audit = audit_outcomes(&bot).await;
    assert!(audit.contains(&"execution:error".to_owned()), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_typed_by_mistake_stay_out_of_the_audit_log() {
    let bot = TestBot::start(Db::Sqlite, "secrets", POLICY, BotOptions::default())
        .await
        .unwrap();
    bot.say(
        "bob",
        "logs rust-webapi -n api --grep 'Authorization: Bearer s3cr3t-t0ken-value'",
    )
    .await;
    // Nor in what opsbot says back: an unknown command echoes what was typed.
    bot.say("bob", "logz --grep 'token=s3cr3t-t0ken-value'")
        .await;
    // A parse error quotes the word it stopped at, in the record's detail too.
    bot.say("bob", "scale conea-api 3 password=s3cr3t-t0ken-value")
        .await;
    assert!(
        !bot.out.text().contains("s3cr3t-t0ken-value"),
        "{}",
        bot.out.text()
    );
    let records = bot.engine.store().tail(100).await.unwrap();
    assert!(!records.is_empty());
    for r in records {
        let all = serde_json::to_string(&r.entry.detail).unwrap()
            + r.entry.text.as_deref().unwrap_or("")
            + r.entry.command.as_deref().unwrap_or("");
        assert!(!all.contains("s3cr3t-t0ken-value"), "{all}");
    }
}

both_databases!(
    abandoned_executions_fail_visibly,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scale conea-api 16").await;
        let id = approval_id(&out).unwrap();
        // As if a replica had claimed it two hours ago and then died.
        let long_ago = jiff::Timestamp::now().as_millisecond() - 2 * 3600 * 1000;
        bot.raw_sql(&format!(
            "UPDATE approvals SET state = 'executing', updated_ms = {long_ago} WHERE id = '{id}'"
        ))
        .await;
        let mark = bot.out.len();
        bot.engine.sweep().await;
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Failed);
        assert!(a.outcome.unwrap().contains("outcome is unknown"));
        assert!(
            bot.out
                .since(mark)
                .contains(&format!("Approved, but failed · {id}"))
        );

        // A fresh execution is left alone.
        let out = bot.say("bob", "scale conea-api 17").await;
        let id = approval_id(&out).unwrap();
        bot.raw_sql(&format!(
            "UPDATE approvals SET state = 'executing' WHERE id = '{id}'"
        ))
        .await;
        bot.engine.sweep().await;
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Executing);
    }
);

both_databases!(
    pending_approval_expires_after_a_restart,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scale conea-api 18").await;
        let id = approval_id(&out).unwrap();
        let bot = bot.restart().await;
        expire_now(&bot, &id).await;
        bot.engine.sweep().await;
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Expired);
        let out = bot.say("alice", &format!("approve {id}")).await;
        assert!(out.contains("is expired"), "{out}");
        assert_ne!(bot.replicas("production", "conea-api"), 18);
    }
);

both_databases!(
    a_stricter_approval_rule_means_asking_again,
    |bot: TestBot| async move {
        let out = bot.say("bob", "scale conea-api 19").await;
        let id = approval_id(&out).unwrap();
        // While it waits, production scaling starts to need two approvals.
        let stricter = POLICY.replace("count: 1", "count: 2");
        std::fs::write(&bot.policy_path, stricter).unwrap();
        assert_eq!(bot.engine.policy().reload(), Reload::Loaded);
        let before = bot.replicas("production", "conea-api");
        let out = bot.say("alice", &format!("approve {id}")).await;
        assert!(out.contains("asks for a different approval"), "{out}");
        assert_eq!(bot.replicas("production", "conea-api"), before);
        let a = bot.engine.store().get(&id).await.unwrap().unwrap();
        assert_eq!(a.state, ApprovalState::Failed);
    }
);

both_databases!(whoami_is_answered_and_audited, |bot: TestBot| async move {
    let out = bot.say("alice", "whoami").await;
    assert!(out.contains("You are console:alice"), "{out}");
    assert!(out.contains("lead"), "{out}");
    let audit = audit_outcomes(&bot).await;
    assert!(audit.contains(&"decision:allow".to_owned()), "{audit:?}");
});

both_databases!(
    unknown_clusters_are_refused_before_the_policy,
    |bot: TestBot| async move {
        let out = bot
            .say("bob", "scale rust-webapi 7 -n api --cluster kubesm")
            .await;
        assert!(out.contains("Unknown cluster"), "{out}");
        assert!(
            out.contains("kubesim"),
            "suggests the configured one: {out}"
        );
        assert_ne!(bot.replicas("api", "rust-webapi"), 7);
        let audit = audit_outcomes(&bot).await;
        assert!(
            audit.contains(&"rejection:unknown_cluster".to_owned()),
            "{audit:?}"
        );
        assert!(
            !audit.iter().any(|a| a.starts_with("decision:")),
            "{audit:?}"
        );
    }
);
