//! An acknowledgement is a promise, through the console adapter against kubesim and both
//! databases: what is taken is on disk before it is answered, work in flight is bounded, a
//! change that waited too long is refused, requests left open by a stopped process get a final
//! answer from the next one, and what concerns one person is told to that person only.

use std::time::Duration;

use opsbot::chat::Invocation;
use opsbot::engine::{Inbound, Refusal};
use opsbot::store::{ApprovalState, AuditEntry, AuditKind, InboxKind, InboxState, NewInboxEntry};
use opsbot_commands::grammar::MAX_INPUT_BYTES;
use opsbot_policies::Subject;
use opsbot_tests::bot::{BotOptions, Db, TestBot, approval_id};

const POLICY: &str = r#"
version: 1
roles:
  lead: { members: ["console:alice"] }
  eng:  { members: ["console:bob"] }
rules:
  - name: read
    roles: ["*"]
    actions: [status, pods, events, logs, help, whoami]
  - name: eng-api
    roles: [eng]
    actions: [scale, restart]
    namespaces: [api]
  - name: prod-scale
    roles: [eng]
    actions: [scale]
    namespaces: [production]
    approval: { roles: [lead], count: 1, ttl: 15m }
"#;

/// A bot whose console sink is registered (as a session does), so the engine can answer.
async fn start(db: Db, test: &str, options: BotOptions) -> Option<TestBot> {
    let bot = TestBot::start(db, test, POLICY, options).await?;
    bot.session("bob");
    Some(bot)
}

fn command(user: &str, text: &str, delivery: &str) -> Inbound {
    Inbound::Command(Invocation {
        platform: "console",
        user: Subject::parse(&format!("console:{user}")).unwrap(),
        groups: Vec::new(),
        groups_unknown: false,
        channel: "console".into(),
        text: text.into(),
        delivery_id: Some(delivery.into()),
        origin: None,
    })
}

opsbot_tests::both_databases!(
    "",
    a_request_is_on_disk_before_it_is_answered,
    |db, test| async move {
        let Some(bot) = start(db, test, BotOptions::default()).await else {
            return;
        };
        let engine = &bot.engine;
        let request = command("bob", "scale rust-webapi 4 -n api", "d-1");
        let ticket = engine.accept(&request).await.expect("taken");
        // Taken, not answered yet: the inbox has it, the audit log has the request.
        let inbox = engine.store().inbox().await.unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].state, InboxState::Received);
        assert_eq!(inbox[0].text, "scale rust-webapi 4 -n api");
        let last = engine.store().tail(1).await.unwrap();
        assert_eq!(last[0].entry.kind, AuditKind::Request);
        assert_eq!(bot.out.text(), "", "nothing answered before run");

        engine.run(ticket, request.clone()).await;
        assert_eq!(bot.replicas("api", "rust-webapi"), 4);
        let entry = engine
            .store()
            .inbox_entry(inbox[0].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entry.state, InboxState::Answered);
        assert!(entry.mutating);

        // The same delivery again: a duplicate, recorded as a replay, never run twice.
        assert_eq!(
            engine.accept(&request).await.unwrap_err(),
            Refusal::Duplicate
        );
        assert_eq!(engine.store().inbox().await.unwrap().len(), 1);
        assert!(engine.store().verify().await.unwrap().is_ok());
    }
);

opsbot_tests::both_databases!(
    "",
    a_request_another_process_answered_is_not_run,
    |db, test| async move {
        let Some(bot) = start(db, test, BotOptions::default()).await else {
            return;
        };
        let engine = &bot.engine;
        let before = bot.replicas("api", "rust-webapi");
        assert_ne!(before, 4);
        let request = command("bob", "scale rust-webapi 4 -n api", "d-1");
        let ticket = engine.accept(&request).await.expect("taken");
        // Another process took it for a stopped one's, and told bob nothing ran.
        let id = engine.store().inbox().await.unwrap()[0].id;
        engine
            .store()
            .mark(id, InboxState::Answered, false, Some("orphaned_not_run"))
            .await
            .unwrap();
        engine.run(ticket, request).await;
        assert_eq!(bot.replicas("api", "rust-webapi"), before, "nothing ran");
        let entry = engine.store().inbox_entry(id).await.unwrap().unwrap();
        assert_eq!(entry.outcome.as_deref(), Some("orphaned_not_run"));
    }
);

opsbot_tests::both_databases!(
    "",
    an_overlong_command_is_refused_before_it_is_recorded,
    |db, test| async move {
        let Some(bot) = start(db, test, BotOptions::default()).await else {
            return;
        };
        let engine = &bot.engine;
        let long = format!("incident note {}", "x".repeat(MAX_INPUT_BYTES));
        let refused = engine
            .accept(&command("bob", &long, "d-1"))
            .await
            .unwrap_err();
        assert_eq!(refused, Refusal::TooLong { bytes: long.len() });
        assert!(
            refused
                .message()
                .contains("at most 8192). Nothing was run.")
        );
        assert!(engine.store().inbox().await.unwrap().is_empty());
        assert_eq!(engine.store().audit_count().await.unwrap(), 0);
        // At the limit it is taken (the grammar then reads it).
        let fits = "é".repeat(MAX_INPUT_BYTES / 2);
        assert!(engine.accept(&command("bob", &fits, "d-2")).await.is_ok());
        // Through the console the refusal reaches the person, privately.
        let out = bot.say("bob", &long).await;
        assert!(out.starts_with("(only console:bob)"), "{out}");
        assert!(out.contains("too long"), "{out}");
    }
);

opsbot_tests::both_databases!("", work_in_flight_is_bounded, |db, test| async move {
    let options = BotOptions {
        max_in_flight: 2,
        ..BotOptions::default()
    };
    let Some(bot) = start(db, test, options).await else {
        return;
    };
    let engine = &bot.engine;
    let first = engine.accept(&command("bob", "help", "d-1")).await.unwrap();
    let _second = engine.accept(&command("bob", "help", "d-2")).await.unwrap();
    assert_eq!(engine.in_flight(), (2, 2));
    let refused = engine
        .accept(&command("bob", "help", "d-3"))
        .await
        .unwrap_err();
    assert!(matches!(refused, Refusal::Busy { .. }));
    assert!(
        refused
            .message()
            .contains("busy. Nothing was run; try again in")
    );
    assert_eq!(
        engine.store().inbox().await.unwrap().len(),
        2,
        "the busy one is not taken"
    );

    // Answering one frees its place.
    engine.run(first, command("bob", "help", "d-1")).await;
    assert_eq!(engine.in_flight(), (1, 2));
    let _third = engine.accept(&command("bob", "help", "d-3")).await.unwrap();

    // Through the console the busy refusal reaches the person, privately.
    let out = bot.say("bob", "help").await;
    assert!(out.starts_with("(only console:bob)"), "{out}");
    assert!(out.contains("busy"), "{out}");
});

opsbot_tests::both_databases!(
    "",
    a_change_that_waited_too_long_is_refused,
    |db, test| async move {
        let options = BotOptions {
            max_command_age: Duration::from_millis(300),
            ..BotOptions::default()
        };
        let Some(bot) = start(db, test, options).await else {
            return;
        };
        let engine = &bot.engine;
        let before = bot.replicas("api", "rust-webapi");
        let request = command("bob", "scale rust-webapi 7 -n api", "d-1");
        let ticket = engine.accept(&request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        engine.run(ticket, request).await;
        let out = bot.out.text();
        assert!(out.starts_with("(only console:bob)"), "{out}");
        assert!(out.contains("Too late: nothing was run"), "{out}");
        assert_eq!(bot.replicas("api", "rust-webapi"), before);
        let log = engine.store().tail(5).await.unwrap();
        assert!(
            log.iter()
                .any(|r| r.entry.outcome.as_deref() == Some("stale"))
        );
        let inbox = engine.store().inbox().await.unwrap();
        assert_eq!(inbox[0].outcome.as_deref(), Some("stale"));

        // A read is not a change: it is answered however long it waited.
        let request = command("bob", "status rust-webapi -n api", "d-2");
        let ticket = engine.accept(&request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mark = bot.out.len();
        engine.run(ticket, request).await;
        assert!(bot.out.since(mark).contains("rust-webapi"));

        // An approved change counts from its approval: approved, then not started in time (as
        // after a restart), it fails and nothing runs.
        let card = bot.say("bob", "scale conea-api 9 -n production").await;
        let id = approval_id(&card).expect("an approval card");
        let store = engine.store();
        assert!(
            store
                .add_approval(&id, "console:alice", &[])
                .await
                .unwrap()
                .added
        );
        assert!(
            store
                .try_transition(&id, ApprovalState::Pending, ApprovalState::Approved)
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        let replicas = bot.replicas("production", "conea-api");
        engine.sweep().await; // resumes approved requests in the background
        let mut approval = store.get(&id).await.unwrap().unwrap();
        for _ in 0..100 {
            if approval.state != ApprovalState::Approved {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            approval = store.get(&id).await.unwrap().unwrap();
        }
        assert_eq!(approval.state, ApprovalState::Failed);
        assert!(
            approval
                .outcome
                .as_deref()
                .unwrap_or("")
                .contains("could not start within"),
            "{approval:?}"
        );
        assert_eq!(bot.replicas("production", "conea-api"), replicas);
    }
);

opsbot_tests::both_databases!(
    "",
    requests_of_a_stopped_process_get_a_final_answer,
    |db, test| async move {
        let Some(bot) = start(db, test, BotOptions::default()).await else {
            return;
        };
        let store = bot.engine.store().clone();
        // What a process that was killed left behind: one request taken but not started, one
        // change running, one answered. That process never wrote a heartbeat again.
        let mut ids = Vec::new();
        for (delivery, text) in [
            ("k-1", "status rust-webapi"),
            ("k-2", "scale rust-webapi 3"),
            ("k-3", "pods"),
        ] {
            let entry = NewInboxEntry {
                platform: "console".into(),
                delivery_id: delivery.into(),
                kind: InboxKind::Command,
                actor: "console:bob".into(),
                channel: "console".into(),
                text: text.into(),
                owner: "opsbot-killed".into(),
                received: jiff::Timestamp::now(),
            };
            let request = AuditEntry::new(AuditKind::Request, "console").text(text);
            let replay = AuditEntry::new(AuditKind::Rejection, "console");
            match store.receive(entry, request, replay).await.unwrap() {
                opsbot::store::Receipt::New(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        store
            .mark(ids[1], InboxState::Running, true, None)
            .await
            .unwrap();
        store
            .mark(ids[2], InboxState::Answered, false, Some("ok"))
            .await
            .unwrap();
        bot.engine.sweep().await;
        let out = bot.out.text();
        assert!(
            out.contains("(only console:bob) ⚠️  opsbot restarted before running this"),
            "{out}"
        );
        assert!(
            out.contains("`status rust-webapi`: nothing was run"),
            "{out}"
        );
        assert!(
            out.contains("(only console:bob) ⛔ opsbot stopped while running this"),
            "{out}"
        );
        assert!(out.contains("its outcome is unknown"), "{out}");
        assert!(
            !out.contains("pods"),
            "answered requests are left alone: {out}"
        );
        let inbox = store.inbox().await.unwrap();
        assert!(
            inbox.iter().all(|e| e.state == InboxState::Answered),
            "{inbox:?}"
        );
        assert_eq!(inbox[0].outcome.as_deref(), Some("not_run"));
        assert_eq!(inbox[1].outcome.as_deref(), Some("outcome_unknown"));

        // A second sweep (or a second replica) does not answer them again.
        let mark = bot.out.len();
        bot.engine.sweep().await;
        assert_eq!(bot.out.since(mark), "");
    }
);

opsbot_tests::both_databases!(
    "",
    what_concerns_one_person_is_told_to_that_person_only,
    |db, test| async move {
        let Some(bot) = start(db, test, BotOptions::default()).await else {
            return;
        };
        for line in [
            "help",
            "whoami",
            "scale",
            "restart rust-webapi -n production",
        ] {
            let out = bot.say("bob", line).await;
            assert!(out.starts_with("(only console:bob)"), "{line}: {out}");
        }
        // Results are public and say who asked.
        let out = bot.say("bob", "status rust-webapi -n api").await;
        assert!(out.starts_with('#'), "{out}");
        assert!(out.contains("requested by console:bob"), "{out}");
        // A vote refused, and a click on a decided request, go to the clicker only.
        let card = bot.say("bob", "scale conea-api 4 -n production").await;
        let id = approval_id(&card).unwrap();
        let out = bot.say("bob", &format!("approve {id}")).await;
        assert!(out.starts_with("(only console:bob)"), "{out}");
        bot.say("alice", &format!("approve {id}")).await;
        let out = bot.say("alice", &format!("approve {id}")).await;
        assert!(out.starts_with("(only console:alice)"), "{out}");
        assert!(!out.contains('#'), "no public message: {out}");
    }
);

/// A database that takes no writes for a while (another process holds SQLite's write lock, as
/// a stuck migration or backup would): under a flood of changes, every request is refused at
/// once as unrecorded, none waits for the database to return, nothing runs then or later, and
/// requests are taken again once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_at_once_and_nothing_runs_late() {
    use sqlx::Connection as _;
    let options = BotOptions {
        max_in_flight: 32,
        ..BotOptions::default()
    };
    let bot = start(Db::Sqlite, "outage", options).await.unwrap();
    let engine = bot.engine.clone();
    let before = bot.replicas("api", "rust-webapi");

    let mut locker = sqlx::SqliteConnection::connect(&bot.db_url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let mut flood = Vec::new();
    for i in 0..200 {
        let engine = engine.clone();
        flood.push(tokio::spawn(async move {
            let request = command("bob", "scale rust-webapi 9 -n api", &format!("o-{i}"));
            match engine.accept(&request).await {
                Ok(ticket) => {
                    engine.run(ticket, request).await;
                    None
                }
                Err(refusal) => Some(refusal),
            }
        }));
    }
    let mut refusals = Vec::new();
    for task in flood {
        refusals.push(task.await.unwrap());
    }
    // Every one was refused while the lock was held (the lock is still held here).
    assert!(
        refusals
            .iter()
            .all(|r| matches!(r, Some(Refusal::Unrecorded | Refusal::Busy { .. }))),
        "{refusals:?}"
    );
    assert!(refusals.contains(&Some(Refusal::Unrecorded)));
    assert_eq!(engine.in_flight().0, 0, "nothing is held in memory");
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    locker.close().await.unwrap();

    // Back: a request is taken and runs; none of the refused ones ever does.
    let request = command("bob", "scale rust-webapi 5 -n api", "after");
    let mut taken = None;
    for _ in 0..50 {
        if let Ok(ticket) = engine.accept(&request).await {
            taken = Some(ticket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine
        .run(taken.expect("taken once the database is back"), request)
        .await;
    assert_eq!(bot.replicas("api", "rust-webapi"), 5);
    assert_ne!(before, 9);
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.sweep().await;
    assert_eq!(
        bot.replicas("api", "rust-webapi"),
        5,
        "no refused scale ran late"
    );
    let inbox = engine.store().inbox().await.unwrap();
    assert!(
        inbox.iter().all(|e| e.state == InboxState::Answered),
        "what was committed after its refusal is closed, not run: {inbox:?}"
    );
}
