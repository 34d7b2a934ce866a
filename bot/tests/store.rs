//! The store suite, run on both backends: every case is a function taking a fresh [`Db`], and
//! `both!` makes a `sqlite` and a `postgres` test of it.
//!
//! PostgreSQL comes from `OPSBOT_TEST_POSTGRES_URL` (`scripts/test.sh` starts one), with a new
//! database per test. Without the variable the PostgreSQL tests print a skip message and pass,
//! except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use opsbot::alerts::payload::Notification;
use opsbot::chat::MessageRef;
use opsbot::store::testing::fresh_postgres_url;
use opsbot::store::{
    ApprovalRequirement, ApprovalState, AuditEntry, AuditKind, Backend, GroupChange, MessageTarget,
    NewApproval, Store, StoreError, VerifyReport,
};
use sqlx::Connection;
use tokio::sync::Barrier;

/// A fresh database and a store open on it.
struct Db {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory that does not exist yet: the store creates it.
        let url = format!("sqlite://{}/nested/opsbot.db", dir.path().display());
        let store = Store::open(&url).await.expect("open sqlite store");
        assert_eq!(store.backend(), Backend::Sqlite);
        Db {
            store,
            url,
            _dir: Some(dir),
        }
    }

    async fn postgres(test: &str) -> Option<Db> {
        let url = fresh_postgres_url(test)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL test database for {test}: {e}"))?;
        let store = Store::open(&url).await.expect("open postgres store");
        assert_eq!(store.backend(), Backend::Postgres);
        Some(Db {
            store,
            url,
            _dir: None,
        })
    }

    /// Another store on the same database, as a second process or replica would have.
    async fn second_store(&self) -> Store {
        Store::open(&self.url).await.expect("open second store")
    }

    /// Runs raw SQL behind the store's back (to tamper with it).
    async fn raw(&self, sql: &'static str) -> u64 {
        match self.store.backend() {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("raw sqlite");
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .expect("raw sql")
                    .rows_affected()
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw postgres");
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .expect("raw sql")
                    .rows_affected()
            }
        }
    }
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$case(super::Db::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(db) = super::Db::postgres(concat!("store::", stringify!($case))).await {
                    super::$case(db).await;
                }
            }
        }
    )*};
}

both!(
    audit_chain_verifies_and_reads_back,
    audit_tampered_row_is_found,
    audit_removed_row_is_found,
    audit_concurrent_appends_from_two_stores_stay_linear,
    approval_transitions_have_exactly_one_winner,
    approval_votes_are_idempotent_and_only_while_pending,
    approval_life_cycle_rejects_impossible_transitions,
    approvals_survive_reopening_and_expire,
    deliveries_are_deduplicated_across_stores,
    alert_notifications_are_stored_once_and_regroup,
    alert_messages_are_claimed_by_exactly_one_replica,
);

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).expect("valid time")
}

fn entry(i: i64) -> AuditEntry {
    AuditEntry::new(
        AuditKind::ALL[(i as usize) % AuditKind::ALL.len()],
        "console",
    )
    .at(t(i))
    .channel("#ops")
    .actor(format!("console:user{i}"))
    .text(format!("scale api {i} -n production"))
    .command(format!("scale deployment/api replicas={i}"))
    .rule("scale-production")
    .outcome("allow")
    .detail(serde_json::json!({"i": i, "nested": {"z": 1, "a": [1, 2, "ü"]}}))
    .duration(std::time::Duration::from_millis(i as u64 * 7))
}

async fn audit_chain_verifies_and_reads_back(db: Db) {
    let s = &db.store;
    assert_eq!(s.verify().await.unwrap(), VerifyReport::Ok { count: 0 });
    let mut ids = Vec::new();
    for i in 1..=20 {
        ids.push(s.append(entry(i)).await.unwrap());
    }
    // An entry with every optional field empty is fine too.
    ids.push(
        s.append(AuditEntry::new(AuditKind::Rejection, "slack").at(t(21)))
            .await
            .unwrap(),
    );
    assert_eq!(ids, (1..=21).collect::<Vec<i64>>());
    assert_eq!(s.audit_count().await.unwrap(), 21);

    let report = s.verify().await.unwrap();
    assert_eq!(report, VerifyReport::Ok { count: 21 });
    assert_eq!(report.to_string(), "chain OK, 21 records");

    let tail = s.tail(5).await.unwrap();
    assert_eq!(
        tail.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![17, 18, 19, 20, 21]
    );
    assert_eq!(tail[0].entry, entry(17));
    assert_eq!(tail[4].entry.kind, AuditKind::Rejection);
    assert_eq!(tail[4].entry.channel, None);
    assert_eq!(tail[4].entry.detail, serde_json::Value::Null);
    for pair in tail.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_ne!(pair[1].hash, pair[0].hash);
    }
    assert_eq!(s.tail(100).await.unwrap().len(), 21);
    assert_eq!(
        s.tail(100).await.unwrap()[0].prev_hash,
        opsbot::store::GENESIS_HASH
    );

    let since = s.since(t(19)).await.unwrap();
    assert_eq!(
        since.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![19, 20, 21]
    );
    assert!(s.since(t(22)).await.unwrap().is_empty());

    // Export form: one flat JSON object per record.
    let json = serde_json::to_value(&since[0]).unwrap();
    assert_eq!(json["id"], 19);
    assert_eq!(json["kind"], "decision");
    assert_eq!(json["text"], "scale api 19 -n production");
    assert_eq!(json["detail"]["nested"]["a"][2], "ü");
    assert_eq!(json["hash"], since[0].hash.as_str());
}

async fn audit_tampered_row_is_found(db: Db) {
    for i in 1..=10 {
        db.store.append(entry(i)).await.unwrap();
    }
    assert!(db.store.verify().await.unwrap().is_ok());
    let changed = db
        .raw("UPDATE audit_log SET text = 'scale api 0 -n production' WHERE id = 4")
        .await;
    assert_eq!(changed, 1);
    match db.store.verify().await.unwrap() {
        VerifyReport::Broken { id, problem } => {
            assert_eq!(id, 4);
            assert!(problem.contains("modified"), "{problem}");
        }
        ok => panic!("tampering not found: {ok:?}"),
    }
    // Rewriting the stored hash too breaks the link to the next record instead.
    db.raw("UPDATE audit_log SET hash = 'ffff' WHERE id = 4")
        .await;
    match db.store.verify().await.unwrap() {
        VerifyReport::Broken { id, .. } => assert_eq!(id, 4),
        ok => panic!("tampering not found: {ok:?}"),
    }
}

async fn audit_removed_row_is_found(db: Db) {
    for i in 1..=10 {
        db.store.append(entry(i)).await.unwrap();
    }
    assert_eq!(db.raw("DELETE FROM audit_log WHERE id = 7").await, 1);
    match db.store.verify().await.unwrap() {
        VerifyReport::Broken { id, problem } => {
            assert_eq!(id, 8);
            assert!(problem.contains("missing"), "{problem}");
        }
        ok => panic!("removal not found: {ok:?}"),
    }
}

async fn audit_concurrent_appends_from_two_stores_stay_linear(db: Db) {
    let other = db.second_store().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move { store.append(entry(i)).await }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(ids, (1..=50).collect::<BTreeSet<i64>>());
    assert_eq!(
        db.store.verify().await.unwrap(),
        VerifyReport::Ok { count: 50 }
    );
}

fn new_approval(created: Timestamp, ttl_seconds: i64) -> NewApproval {
    NewApproval {
        requester: "slack:U1".to_owned(),
        requester_groups: vec!["slack-group:S0PLAT".to_owned()],
        platform: "slack".to_owned(),
        channel: "C0OPS".to_owned(),
        command: "scale api 5 -n production".to_owned(),
        rule: "scale-production".to_owned(),
        requirement: ApprovalRequirement {
            roles: vec!["sre-lead".to_owned()],
            count: 2,
            ttl_seconds: ttl_seconds as u64,
            allow_self: false,
        },
        context: serde_json::json!({"action": "scale", "replicas": 5}),
        created,
        expires: created + SignedDuration::from_secs(ttl_seconds),
    }
}

/// Runs `f` 50 times at once (half on each store) and returns how many calls returned true.
async fn race<F, Fut>(a: &Store, b: &Store, f: F) -> usize
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let call = f(store);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            call.await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    winners
}

async fn approval_transitions_have_exactly_one_winner(db: Db) {
    let other = db.second_store().await;
    let a = db
        .store
        .create_approval(new_approval(Timestamp::now(), 900))
        .await
        .unwrap();
    let id = a.id.clone();

    let approve = {
        let id = id.clone();
        move |s: Store| {
            let id = id.clone();
            async move {
                s.try_transition(&id, ApprovalState::Pending, ApprovalState::Approved)
                    .await
            }
        }
    };
    assert_eq!(race(&db.store, &other, approve).await, 1);
    assert_eq!(
        db.store.get(&id).await.unwrap().unwrap().state,
        ApprovalState::Approved
    );

    // Late expiry / deny lose: the request is no longer pending.
    assert!(
        !db.store
            .try_transition(&id, ApprovalState::Pending, ApprovalState::Expired)
            .await
            .unwrap()
    );

    let claim = {
        let id = id.clone();
        move |s: Store| {
            let id = id.clone();
            async move { s.claim_execution(&id).await }
        }
    };
    assert_eq!(race(&db.store, &other, claim).await, 1);
    assert_eq!(
        db.store.get(&id).await.unwrap().unwrap().state,
        ApprovalState::Executing
    );

    assert!(
        db.store
            .finish(&id, ApprovalState::Executed, "scaled to 5")
            .await
            .unwrap()
    );
    assert!(
        !other
            .finish(&id, ApprovalState::Failed, "too late")
            .await
            .unwrap()
    );
    let done = other.get(&id).await.unwrap().unwrap();
    assert_eq!(done.state, ApprovalState::Executed);
    assert_eq!(done.outcome.as_deref(), Some("scaled to 5"));
    assert!(done.updated >= done.created);

    // Unknown ids never win.
    assert!(!db.store.claim_execution("nope00").await.unwrap());
    assert!(db.store.get("nope00").await.unwrap().is_none());
}

async fn approval_votes_are_idempotent_and_only_while_pending(db: Db) {
    let s = &db.store;
    let a = s
        .create_approval(new_approval(Timestamp::now(), 900))
        .await
        .unwrap();
    assert_eq!(a.id.len(), 6);
    assert!(
        a.id.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert_eq!(a.state, ApprovalState::Pending);
    assert!(a.approvers.is_empty());
    assert!(!a.has_enough_approvals());

    let v = s.add_approval(&a.id, "slack:U2").await.unwrap();
    assert!(v.added);
    let v = s.add_approval(&a.id, "slack:U2").await.unwrap();
    assert!(!v.added, "the same approver counts once");
    assert_eq!(v.approval.approvers.len(), 1);
    let v = s.add_approval(&a.id, "discord:42").await.unwrap();
    assert!(v.added);
    let subjects: Vec<_> = v
        .approval
        .approvers
        .iter()
        .map(|a| a.subject.as_str())
        .collect();
    assert_eq!(subjects, ["slack:U2", "discord:42"]);
    assert!(v.approval.has_enough_approvals());

    // Concurrent duplicate votes from one person still count once.
    let other = db.second_store().await;
    let id = a.id.clone();
    let vote = move |st: Store| {
        let id = id.clone();
        async move { st.add_approval(&id, "slack:U9").await.map(|v| v.added) }
    };
    assert_eq!(race(s, &other, vote).await, 1);

    // Once denied, votes are not recorded.
    let b = s
        .create_approval(new_approval(Timestamp::now(), 900))
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert!(
        s.try_transition(&b.id, ApprovalState::Pending, ApprovalState::Denied)
            .await
            .unwrap()
    );
    let v = s.add_approval(&b.id, "slack:U2").await.unwrap();
    assert!(!v.added);
    assert_eq!(v.approval.state, ApprovalState::Denied);
    assert!(v.approval.approvers.is_empty());

    // Past its expiry (not yet swept), votes are not recorded either.
    let old = Timestamp::now() - SignedDuration::from_secs(7200);
    let c = s.create_approval(new_approval(old, 60)).await.unwrap();
    let v = s.add_approval(&c.id, "slack:U2").await.unwrap();
    assert!(!v.added);
    assert_eq!(v.approval.state, ApprovalState::Pending);
    assert!(v.approval.approvers.is_empty());

    assert!(matches!(
        s.add_approval("nope00", "slack:U2").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn approval_life_cycle_rejects_impossible_transitions(db: Db) {
    let s = &db.store;
    let a = s
        .create_approval(new_approval(Timestamp::now(), 900))
        .await
        .unwrap();
    assert!(matches!(
        s.try_transition(&a.id, ApprovalState::Executed, ApprovalState::Pending)
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        s.try_transition(&a.id, ApprovalState::Pending, ApprovalState::Executed)
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));
    // Not approved yet: nobody can claim it.
    assert!(!s.claim_execution(&a.id).await.unwrap());
    // A pending request can fail (e.g. the policy now denies it), with the reason kept.
    assert!(
        s.fail(&a.id, ApprovalState::Pending, "policy now denies")
            .await
            .unwrap()
    );
    let a = s.get(&a.id).await.unwrap().unwrap();
    assert_eq!(a.state, ApprovalState::Failed);
    assert!(a.state.is_final());
    assert_eq!(a.outcome.as_deref(), Some("policy now denies"));
}

async fn approvals_survive_reopening_and_expire(db: Db) {
    let created = Timestamp::now();
    let a = db
        .store
        .create_approval(new_approval(created, 600))
        .await
        .unwrap();
    let short = db
        .store
        .create_approval(new_approval(created, 60))
        .await
        .unwrap();
    db.store.add_approval(&a.id, "slack:U2").await.unwrap();
    let card = MessageRef {
        platform: "slack".to_owned(),
        channel: "C0OPS".to_owned(),
        id: "1700000000.000100".to_owned(),
    };
    db.store.set_card(&a.id, &card).await.unwrap();
    assert!(matches!(
        db.store.set_card("nope00", &card).await,
        Err(StoreError::NotFound(_))
    ));
    let before = db.store.get(&a.id).await.unwrap().unwrap();

    db.store.close().await;
    let store = Store::open(&db.url).await.expect("reopen");

    let after = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.card, Some(card));
    assert_eq!(after.requester, "slack:U1");
    assert_eq!(after.requester_groups, ["slack-group:S0PLAT"]);
    assert_eq!(after.requirement.roles, ["sre-lead"]);
    assert_eq!(after.requirement.count, 2);
    assert_eq!(after.context["replicas"], 5);
    assert_eq!(after.created.as_millisecond(), created.as_millisecond());
    assert_eq!(after.approvers.len(), 1);

    let pending: Vec<_> = store
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.contains(&a.id) && pending.contains(&short.id));

    assert!(store.expired_pending(created).await.unwrap().is_empty());
    let later = created + SignedDuration::from_secs(120);
    let expired = store.expired_pending(later).await.unwrap();
    assert_eq!(
        expired.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [short.id.as_str()]
    );
    let much_later = created + SignedDuration::from_secs(601);
    assert_eq!(store.expired_pending(much_later).await.unwrap().len(), 2);

    // Two sweepers (e.g. two replicas) expire it once.
    let other = Store::open(&db.url).await.unwrap();
    let id = short.id.clone();
    let expire = move |s: Store| {
        let id = id.clone();
        async move {
            s.try_transition(&id, ApprovalState::Pending, ApprovalState::Expired)
                .await
        }
    };
    assert_eq!(race(&store, &other, expire).await, 1);
    assert!(store.expired_pending(later).await.unwrap().is_empty());
    assert_eq!(
        store
            .approvals_in(ApprovalState::Expired)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.pending().await.unwrap().len(), 1);
}

async fn deliveries_are_deduplicated_across_stores(db: Db) {
    let s = &db.store;
    assert!(!s.seen_delivery("slack", "T1").await.unwrap());
    assert!(s.seen_delivery("slack", "T1").await.unwrap());
    assert!(
        !s.seen_delivery("discord", "T1").await.unwrap(),
        "per platform"
    );

    let other = db.second_store().await;
    let first_time =
        |st: Store| async move { st.seen_delivery("slack", "T2").await.map(|seen| !seen) };
    assert_eq!(race(s, &other, first_time).await, 1);
    assert!(other.seen_delivery("slack", "T1").await.unwrap());

    // Pruning forgets old deliveries only.
    let past = Timestamp::now() - SignedDuration::from_secs(3600);
    assert_eq!(s.prune_deliveries(past).await.unwrap(), 0);
    let future = Timestamp::now() + SignedDuration::from_secs(60);
    assert_eq!(s.prune_deliveries(future).await.unwrap(), 3);
    assert!(!s.seen_delivery("slack", "T1").await.unwrap());
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let err = Store::open("mysql://root:hunter2@db/opsbot")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(Store::open("no-scheme").await.is_err());
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported_without_the_password() {
    // Port 1 on loopback: nothing listens there.
    let err = Store::open("postgres://opsbot:hunter2@127.0.0.1:1/opsbot")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn sqlite_file_store_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/opsbot.db");
    let store = Store::open_sqlite_file(&path).await.unwrap();
    store.ping().await.unwrap();
    assert!(path.is_file());
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Store futures can be spawned (they are `Send + 'static` when their inputs are owned).
#[test]
fn store_futures_are_send() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    fn check(s: Store, id: String, entry: AuditEntry, new: NewApproval, card: MessageRef) {
        let st = s.clone();
        spawnable(async move { st.append(entry).await });
        let st = s.clone();
        spawnable(async move { st.verify().await });
        let st = s.clone();
        spawnable(async move { st.tail(5).await });
        let st = s.clone();
        spawnable(async move { st.since(Timestamp::now()).await });
        let st = s.clone();
        spawnable(async move { st.create_approval(new).await });
        let (st, i) = (s.clone(), id.clone());
        spawnable(async move { st.add_approval(&i, "slack:U1").await });
        let (st, i) = (s.clone(), id.clone());
        spawnable(async move {
            st.try_transition(&i, ApprovalState::Pending, ApprovalState::Approved)
                .await
        });
        let (st, i) = (s.clone(), id.clone());
        spawnable(async move { st.claim_execution(&i).await });
        let (st, i) = (s.clone(), id.clone());
        spawnable(async move { st.finish(&i, ApprovalState::Executed, "ok").await });
        let (st, i) = (s.clone(), id.clone());
        spawnable(async move { st.set_card(&i, &card).await });
        let (st, i) = (s.clone(), id.clone());
        spawnable(async move { st.get(&i).await });
        let st = s.clone();
        spawnable(async move { st.pending().await });
        let st = s.clone();
        spawnable(async move { st.expired_pending(Timestamp::now()).await });
        let st = s.clone();
        spawnable(async move { st.seen_delivery("slack", &id).await });
        spawnable(async move { s.ping().await });
    }
    let _ = check;
}

fn notification(status: &str, pods: &[(&str, &str)]) -> Notification {
    let alerts: Vec<serde_json::Value> = pods
        .iter()
        .map(|(pod, st)| {
            serde_json::json!({
                "status": st, "labels": {"alertname": "Crash", "pod": pod, "severity": "critical"},
                "annotations": {}, "startsAt": "2026-01-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z", "fingerprint": format!("fp-{pod}")
            })
        })
        .collect();
    let body = serde_json::json!({
        "version": "4", "groupKey": "{}:{alertname=\"Crash\"}", "status": status,
        "receiver": "opsbot", "groupLabels": {"alertname": "Crash"},
        "commonLabels": {"alertname": "Crash", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://am", "alerts": alerts
    });
    Notification::parse(body.to_string().as_bytes()).unwrap()
}

async fn alert_notifications_are_stored_once_and_regroup(db: Db) {
    let s = &db.store;
    let channels = ["slack:C1".to_owned(), "slack:C2".to_owned()];
    let six_hours = std::time::Duration::from_secs(6 * 3600);
    let firing = notification("firing", &[("a", "firing"), ("b", "firing")]);
    let changes = s
        .record_notification(&firing, &channels, six_hours, t(0))
        .await
        .unwrap();
    assert_eq!(changes, [GroupChange::Changed, GroupChange::Changed]);
    let again = s
        .record_notification(&firing, &channels, six_hours, t(10))
        .await
        .unwrap();
    assert_eq!(again, [GroupChange::Unchanged, GroupChange::Unchanged]);
    assert_eq!(s.count_alerts().await.unwrap(), (2, 0));

    let g = s
        .alert_group(&firing.group_key, "slack:C1")
        .await
        .unwrap()
        .unwrap();
    let target = MessageTarget::Group {
        group_key: &g.group_key,
        channel: "slack:C1",
        generation: 1,
    };
    assert!(s.claim_message(&target, "me", t(20), t(0)).await.unwrap());
    s.set_message(&target, "1.0001", "h1").await.unwrap();

    // Resolved: the same generation, with the time it resolved; alerts kept.
    let resolved = notification("resolved", &[("a", "resolved"), ("b", "resolved")]);
    s.record_notification(&resolved, &channels, six_hours, t(100))
        .await
        .unwrap();
    let g = s
        .alert_group(&firing.group_key, "slack:C1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((g.generation, g.resolved), (1, Some(t(100))));
    assert_eq!(g.message_id.as_deref(), Some("1.0001"));
    assert_eq!(s.count_alerts().await.unwrap(), (0, 2));

    // Firing again soon: the same message. Firing again after six hours: a new generation.
    s.record_notification(&firing, &channels, six_hours, t(200))
        .await
        .unwrap();
    let g = s
        .alert_group(&firing.group_key, "slack:C1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((g.generation, g.message_id.as_deref()), (1, Some("1.0001")));
    s.record_notification(&resolved, &channels, six_hours, t(300))
        .await
        .unwrap();
    s.record_notification(&firing, &channels, six_hours, t(300 + 6 * 3600))
        .await
        .unwrap();
    let g = s
        .alert_group(&firing.group_key, "slack:C1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((g.generation, g.message_id), (2, None));
    assert_eq!(g.firing, t(300 + 6 * 3600));

    // Ack and silence reach every channel of the group by its short id.
    assert_eq!(s.ack_alert_group(&g.group_id, "slack:U1").await.unwrap(), 2);
    let until = t(4000);
    s.silence_alert_group(&g.group_id, Some(("sil-1", "slack:U1", until)))
        .await
        .unwrap();
    let rows = s.alert_groups_by_id(&g.group_id).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.acked_by.as_deref() == Some("slack:U1")
                && r.silence_id.as_deref() == Some("sil-1")
                && r.silenced_until == Some(until))
    );
    let listed = s.list_alerts(Some("critical"), None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        s.list_alerts(Some("warning"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn alert_messages_are_claimed_by_exactly_one_replica(db: Db) {
    let other = db.second_store().await;
    let n = notification("firing", &[("a", "firing")]);
    let channels = ["slack:C1".to_owned()];
    let regroup = std::time::Duration::from_secs(3600);
    // Both replicas take the same notification at once: one row, one generation.
    let (a, b) = tokio::join!(
        db.store.record_notification(&n, &channels, regroup, t(0)),
        other.record_notification(&n, &channels, regroup, t(0)),
    );
    a.unwrap();
    b.unwrap();
    let key = n.group_key.clone();
    let winners = race(&db.store, &other, move |s| {
        let key = key.clone();
        async move {
            let owner = format!("replica-{:p}", &s);
            let target = MessageTarget::Group {
                group_key: &key,
                channel: "slack:C1",
                generation: 1,
            };
            s.claim_message(&target, &owner, t(10), t(0)).await
        }
    })
    .await;
    assert_eq!(winners, 1, "exactly one replica posts the message");
    let digest = MessageTarget::Digest {
        channel: "slack:C1",
    };
    assert_eq!(
        db.store.digest_message("slack:C1").await.unwrap(),
        (None, None)
    );
    assert!(
        db.store
            .claim_message(&digest, "a", t(10), t(0))
            .await
            .unwrap()
    );
    assert!(
        !other
            .claim_message(&digest, "b", t(11), t(0))
            .await
            .unwrap()
    );
    // A claim given up (its post failed) is free again at once, but only its owner gives it up.
    other.release_claim(&digest, "b").await.unwrap();
    assert!(
        !other
            .claim_message(&digest, "b", t(12), t(0))
            .await
            .unwrap()
    );
    db.store.release_claim(&digest, "a").await.unwrap();
    assert!(
        other
            .claim_message(&digest, "b", t(13), t(0))
            .await
            .unwrap()
    );
    other.release_claim(&digest, "b").await.unwrap();
    assert!(
        db.store
            .claim_message(&digest, "a", t(14), t(0))
            .await
            .unwrap()
    );
    // A claim older than the stale limit is taken over (its holder died before posting).
    assert!(
        other
            .claim_message(&digest, "b", t(100), t(50))
            .await
            .unwrap()
    );
    other.set_message(&digest, "9.9", "h").await.unwrap();
    assert!(
        !db.store
            .claim_message(&digest, "a", t(1000), t(999))
            .await
            .unwrap()
    );
}
