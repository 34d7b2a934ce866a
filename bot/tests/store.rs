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
use opsbot::store::anchor::AnchorOptions;
use opsbot::store::testing::fresh_postgres_url;
use opsbot::store::{
    Anchor, AnchorError, AnchorFile, ApprovalRequirement, ApprovalState, AuditEntry, AuditKey,
    AuditKind, Backend, Checkpoint, Checkpoints, GroupChange, Head, InboxKind, InboxState,
    MessageTarget, NewApproval, NewInboxEntry, NewIncident, NewTimelineEntry, Problem, Receipt,
    Store, StoreError, VerifyReport, Write, Written,
};
use sqlx::Connection;
use tokio::sync::Barrier;

mod support;
use support::{canonical, unkeyed_hash};

/// A fresh database and a store open on it, sealed with a key, with a checkpoint file in a temp
/// dir (checkpoints only when a test asks for one).
struct Db {
    store: Store,
    url: String,
    key: Arc<AuditKey>,
    anchor: Arc<Anchor>,
    dir: tempfile::TempDir,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory that does not exist yet: the store creates it.
        let url = format!("sqlite://{}/nested/opsbot.db", dir.path().display());
        let db = Db::on(url, dir).await;
        assert_eq!(db.store.backend(), Backend::Sqlite);
        db
    }

    async fn postgres(test: &str) -> Option<Db> {
        let url = fresh_postgres_url(test)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL test database for {test}: {e}"))?;
        let db = Db::on(url, tempfile::tempdir().expect("temp dir")).await;
        assert_eq!(db.store.backend(), Backend::Postgres);
        Some(db)
    }

    async fn on(url: String, dir: tempfile::TempDir) -> Db {
        let key = Arc::new(AuditKey::generate());
        let (anchor, _) = Anchor::open(anchor_options(&dir), key.clone()).expect("anchor");
        let anchor = Arc::new(anchor);
        let store = Store::open(&url)
            .await
            .expect("open store")
            .with_audit(key.clone(), Some(anchor.clone()));
        Db {
            store,
            url,
            key,
            anchor,
            dir,
        }
    }

    /// Another store on the same database, as a second process or replica would have.
    async fn second_store(&self) -> Store {
        Store::open(&self.url)
            .await
            .expect("open second store")
            .with_audit(self.key.clone(), None)
    }

    /// A checkpoint of the head now.
    async fn checkpoint(&self) -> Checkpoint {
        self.anchor
            .checkpoint(&self.store)
            .await
            .expect("checkpoint")
            .expect("the head moved")
    }

    fn checkpoints(&self) -> Checkpoints {
        AnchorFile::new(anchor_options(&self.dir).file)
            .read(&self.key)
            .expect("read checkpoints")
    }

    /// What `opsbot audit verify` would say.
    async fn verify(&self) -> VerifyReport {
        self.store
            .verify_against(&self.checkpoints())
            .await
            .expect("verify")
    }

    /// Rewrites a record's time and hashes behind the store's back.
    async fn rewrite(&self, id: i64, time_ms: i64, prev_hash: &str, hash: &str) {
        let sql = "UPDATE audit_log SET time_ms = $1, prev_hash = $2, hash = $3 WHERE id = $4";
        let changed = match self.store.backend() {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                let q = sqlx::query(sql).bind(time_ms).bind(prev_hash).bind(hash);
                q.bind(id).execute(&mut c).await.unwrap().rows_affected()
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let q = sqlx::query(sql).bind(time_ms).bind(prev_hash).bind(hash);
                q.bind(id).execute(&mut c).await.unwrap().rows_affected()
            }
        };
        assert_eq!(changed, 1);
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

fn anchor_options(dir: &tempfile::TempDir) -> AnchorOptions {
    AnchorOptions {
        file: dir.path().join("audit.anchors"),
        every_records: 1000,
        every: std::time::Duration::from_secs(3600),
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
    closed_incidents_take_no_status_severity_or_role,
    pooled_writes_succeed_beside_a_stream_of_appends,
    audit_chain_verifies_and_reads_back,
    audit_tampered_row_is_found,
    audit_removed_row_is_found,
    audit_concurrent_appends_from_two_stores_stay_linear,
    audit_records_of_one_large_batch_are_chained_in_order,
    audit_records_deleted_at_the_end_are_found_against_the_checkpoint,
    audit_rehashing_without_the_key_is_found,
    audit_replaced_database_is_found,
    audit_sealed_with_another_key_is_refused_at_start,
    audit_forged_checkpoints_are_found_and_ignored,
    audit_time_never_goes_backwards,
    audit_unkeyed_v1_log_is_accepted_before_keyed_records,
    audit_needs_the_key_to_append_and_verify,
    write_probe_sees_a_database_that_takes_no_writes,
    audit_checkpoints_follow_the_log,
    approval_transitions_have_exactly_one_winner,
    approval_votes_are_idempotent_and_only_while_pending,
    approval_life_cycle_rejects_impossible_transitions,
    approvals_survive_reopening_and_expire,
    inbox_records_each_delivery_once_with_its_request,
    inbox_orphans_of_a_silent_process_are_adopted_once,
    approval_votes_stop_at_the_count_needed,
    alert_notifications_are_stored_once_and_regroup,
    alert_groups_follow_into_channels_no_longer_routed_to,
    alert_messages_are_claimed_by_exactly_one_replica,
    incident_timeline_entries_are_committed_with_their_audit_record,
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
    let empty = db.verify().await;
    assert!(empty.is_ok() && empty.count == 0, "{empty}");
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

    let report = db.verify().await;
    assert!(report.is_ok() && report.count == 21, "{report}");
    assert_eq!(report.legacy, 0);
    assert!(
        report
            .to_string()
            .starts_with("chain OK, 21 records\nnote: no checkpoint file at "),
        "{report}"
    );
    let checkpoint = db.checkpoint().await;
    assert_eq!((checkpoint.id, checkpoint.time), (21, t(21)));
    let report = db.verify().await;
    assert_eq!(report.checkpoint, Some(checkpoint));
    assert_eq!(
        report.to_string(),
        format!(
            "chain OK, 21 records; checkpoint of {} at record 21 matches",
            t(21)
        )
    );

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
    assert_eq!(
        json["kind"],
        AuditKind::ALL[19 % AuditKind::ALL.len()].as_str()
    );
    assert_eq!(json["text"], "scale api 19 -n production");
    assert_eq!(json["detail"]["nested"]["a"][2], "ü");
    assert_eq!(json["hash"], since[0].hash.as_str());
}

/// The only problem `report` found.
fn only_problem(report: &VerifyReport) -> &Problem {
    assert_eq!(report.problems.len(), 1, "{report}");
    &report.problems[0]
}

async fn audit_tampered_row_is_found(db: Db) {
    for i in 1..=10 {
        db.store.append(entry(i)).await.unwrap();
    }
    assert!(db.verify().await.is_ok());
    let changed = db
        .raw("UPDATE audit_log SET text = 'scale api 0 -n production' WHERE id = 4")
        .await;
    assert_eq!(changed, 1);
    let report = db.verify().await;
    match only_problem(&report) {
        Problem::Link { id: 4, problem } => assert!(problem.contains("modified"), "{problem}"),
        other => panic!("tampering not found: {other:?}"),
    }
    assert!(report.to_string().starts_with("chain broken at record 4: "));
    // Rewriting the stored hash too breaks the link to the next record instead.
    db.raw("UPDATE audit_log SET hash = 'ffff' WHERE id = 4")
        .await;
    assert!(matches!(
        only_problem(&db.verify().await),
        Problem::Link { id: 4, .. }
    ));
}

async fn audit_removed_row_is_found(db: Db) {
    for i in 1..=10 {
        db.store.append(entry(i)).await.unwrap();
    }
    assert_eq!(db.raw("DELETE FROM audit_log WHERE id = 7").await, 1);
    match only_problem(&db.verify().await) {
        Problem::Link { id: 8, problem } => assert!(problem.contains("missing"), "{problem}"),
        other => panic!("removal not found: {other:?}"),
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
    let report = db.verify().await;
    assert!(report.is_ok() && report.count == 50, "{report}");
}

/// The writer inserts a batch's records several hundred to a statement: a batch of more than
/// one statement's worth (with a record before it, so the batch continues a chain) is stored
/// in order, chained, and read back as written.
async fn audit_records_of_one_large_batch_are_chained_in_order(db: Db) {
    let s = &db.store;
    assert_eq!(s.append(entry(0)).await.unwrap(), 1);
    let writes = (1..=600)
        .map(|i| Write::Audit(Box::new(entry(i))))
        .collect();
    let written = s.write(writes).await.unwrap();
    assert_eq!(
        written,
        (2..=601).map(Written::Id).collect::<Vec<_>>(),
        "ids in the order written"
    );
    let report = db.verify().await;
    assert!(report.is_ok() && report.count == 601, "{report}");
    let all = s.tail(1000).await.unwrap();
    assert_eq!(all.len(), 601);
    for (i, record) in all.iter().enumerate() {
        assert_eq!(record.id, i as i64 + 1);
        assert_eq!(record.entry, entry(i as i64), "record {}", record.id);
    }
    // The chain goes on after the batch.
    assert_eq!(s.append(entry(601)).await.unwrap(), 602);
    let report = db.verify().await;
    assert!(report.is_ok() && report.count == 602, "{report}");
}

async fn audit_records_deleted_at_the_end_are_found_against_the_checkpoint(db: Db) {
    for i in 1..=10 {
        db.store.append(entry(i)).await.unwrap();
    }
    db.checkpoint().await;
    assert_eq!(db.raw("DELETE FROM audit_log WHERE id > 7").await, 3);
    // The chain itself is intact: only the checkpoint shows what is gone.
    let report = db.verify().await;
    assert_eq!(
        only_problem(&report),
        &Problem::Missing {
            from: 8,
            to: 10,
            time: t(10)
        }
    );
    let text = report.to_string();
    assert!(text.contains("records 8..10 are missing"), "{text}");
    // serve would refuse to start on it.
    let err = db
        .anchor
        .check_log(&db.store, &db.checkpoints())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AnchorError::Truncated {
            head: 7,
            checkpoint: 10,
            ..
        }
    ));
    assert!(
        err.to_string().contains("records 8..10 are missing"),
        "{err}"
    );
}

/// Re-hashes records `from..` with plain SHA-256 of the canonical form under `tag`, relinking
/// them: what someone who can write the database but has no key can do.
async fn rehash_without_key(db: &Db, from: i64, tag: &str) {
    let records = db.store.tail(1000).await.unwrap();
    let mut prev = match records.iter().find(|r| r.id == from - 1) {
        Some(r) => r.hash.clone(),
        None => opsbot::store::GENESIS_HASH.to_owned(),
    };
    for r in records.iter().filter(|r| r.id >= from) {
        let time_ms = r.entry.time.as_millisecond();
        let hash = unkeyed_hash(tag, r, time_ms, &prev);
        db.rewrite(r.id, time_ms, &prev, &hash).await;
        prev = hash;
    }
}

async fn audit_rehashing_without_the_key_is_found(db: Db) {
    for i in 1..=10 {
        db.store.append(entry(i)).await.unwrap();
        if i % 5 == 0 {
            db.checkpoint().await;
        }
    }
    db.raw("UPDATE audit_log SET outcome = 'deny' WHERE id = 4")
        .await;
    for tag in ["opsbot-audit-v2", "opsbot-audit-v1"] {
        rehash_without_key(&db, 4, tag).await;
        let report = db.verify().await;
        assert_eq!(report.problems.len(), 2, "{report}");
        // The first checkpoint after the edit (at 5) says it; the one at 10 follows from it.
        match &report.problems[0] {
            Problem::Rewritten { id: 5, .. } => {}
            other => panic!("{tag}: the checkpoint mismatch is not reported: {other:?}"),
        }
        match &report.problems[1] {
            Problem::Link { id: 4, problem } => assert!(
                problem.contains("without the key") || problem.contains("under the audit key"),
                "{tag}: {problem}"
            ),
            other => panic!("{tag}: re-hashing not found: {other:?}"),
        }
        // Without any checkpoint the key alone finds it.
        let alone = db.store.verify().await.unwrap();
        assert!(
            matches!(only_problem(&alone), Problem::Link { id: 4, .. }),
            "{alone}"
        );
    }
    // Re-hashing the whole log as an unkeyed (v1) one passes the chain, not the checkpoint.
    rehash_without_key(&db, 1, "opsbot-audit-v1").await;
    let report = db.verify().await;
    assert!(
        matches!(only_problem(&report), Problem::Rewritten { id: 5, .. }),
        "{report}"
    );
    assert!(report.to_string().contains("the log was rewritten"));
    // serve would refuse to start on it.
    let err = db
        .anchor
        .check_log(&db.store, &db.checkpoints())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AnchorError::Rewritten { id: 10, .. }),
        "{err}"
    );
}

/// A key file lost and made anew (or replaced): `serve` refuses to start rather than seal new
/// records under a key the log's earlier records cannot be verified with.
async fn audit_sealed_with_another_key_is_refused_at_start(db: Db) {
    let (anchor, checkpoints) =
        Anchor::open(anchor_options(&db.dir), db.key.clone()).expect("anchor");
    // Empty, and then sealed with this key: fine.
    anchor.check_log(&db.store, &checkpoints).await.unwrap();
    for i in 1..=3 {
        db.store.append(entry(i)).await.unwrap();
    }
    anchor.check_log(&db.store, &checkpoints).await.unwrap();
    let other_key = Arc::new(AuditKey::generate());
    let other = db.second_store().await.with_audit(other_key.clone(), None);
    let (anchor, checkpoints) = Anchor::open(
        AnchorOptions {
            file: db.dir.path().join("other.anchors"),
            ..anchor_options(&db.dir)
        },
        other_key,
    )
    .expect("anchor");
    let err = anchor.check_log(&other, &checkpoints).await.unwrap_err();
    assert!(matches!(err, AnchorError::OtherKey { id: 3 }), "{err}");
    assert!(err.to_string().contains("audit.key_file"), "{err}");
}

async fn audit_replaced_database_is_found(db: Db) {
    for i in 1..=10 {
        db.store.append(entry(i)).await.unwrap();
    }
    db.checkpoint().await;
    // Another, empty database in its place, with the same key and checkpoint file.
    let url = match db.store.backend() {
        Backend::Sqlite => format!("sqlite://{}/other.db", db.dir.path().display()),
        Backend::Postgres => fresh_postgres_url("store::audit_replaced_database_is_found")
            .await
            .unwrap()
            .unwrap(),
    };
    let empty = Store::open(&url)
        .await
        .unwrap()
        .with_audit(db.key.clone(), None);
    let report = empty.verify_against(&db.checkpoints()).await.unwrap();
    assert_eq!(
        only_problem(&report),
        &Problem::Missing {
            from: 1,
            to: 10,
            time: t(10)
        }
    );
    let text = report.to_string();
    assert!(text.contains("records 1..10 are missing"), "{text}");
    assert!(text.contains("replaced"), "{text}");
    // Emptied in place: the same.
    db.raw("DELETE FROM audit_log").await;
    assert!(matches!(
        only_problem(&db.verify().await),
        Problem::Missing {
            from: 1,
            to: 10,
            ..
        }
    ));
}

async fn audit_forged_checkpoints_are_found_and_ignored(db: Db) {
    for i in 1..=5 {
        db.store.append(entry(i)).await.unwrap();
    }
    let genuine = db.checkpoint().await;
    let file = anchor_options(&db.dir).file;
    let append = |line: String| {
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(&line);
        text.push('\n');
        std::fs::write(&file, text).unwrap();
    };
    // Someone without the key claims a longer log, and edits the genuine line's id.
    let forged = Checkpoint::sign(
        &Head {
            id: 9,
            hash: genuine.hash.clone(),
            time: t(9),
        },
        &AuditKey::generate(),
    );
    append(serde_json::to_string(&forged).unwrap());
    let edited = Checkpoint {
        id: 4,
        ..genuine.clone()
    };
    append(serde_json::to_string(&edited).unwrap());
    let report = db.verify().await;
    assert_eq!(report.checkpoint, Some(genuine), "forgeries do not count");
    assert_eq!(report.problems.len(), 2, "{report}");
    for (problem, line) in report.problems.iter().zip([2, 3]) {
        match problem {
            Problem::Checkpoint(text) => {
                assert!(text.contains(&format!("line {line} ")), "{text}");
                assert!(text.contains("does not verify"), "{text}");
            }
            other => panic!("forgery not found: {other:?}"),
        }
    }
    // A torn last line (a crash while writing) is only a note.
    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
            + "\n{\"id\":6,",
    )
    .unwrap();
    let report = db.verify().await;
    assert!(report.is_ok(), "{report}");
    assert!(report.to_string().contains("line 2 is torn"), "{report}");
}

async fn audit_time_never_goes_backwards(db: Db) {
    db.store.append(entry(10)).await.unwrap();
    // Timed before the head (a slow caller): stored with the head's time.
    let id = db.store.append(entry(5)).await.unwrap();
    let stored = db.store.tail(1).await.unwrap().remove(0);
    assert_eq!((stored.id, stored.entry.time), (id, t(10)));
    assert_eq!(stored.entry.text, entry(5).text);
    db.store.append(entry(11)).await.unwrap();
    assert!(db.verify().await.is_ok());
    // A keyed record dated back (only the key holder could sign it) is still reported.
    let records = db.store.tail(3).await.unwrap();
    let last = &records[2];
    let earlier = t(1).as_millisecond();
    let hash = db
        .key
        .sign(canonical("opsbot-audit-v2", last, earlier, &last.prev_hash).as_bytes());
    db.rewrite(3, earlier, &last.prev_hash, &hash).await;
    match only_problem(&db.verify().await) {
        Problem::Link { id: 3, problem } => assert!(problem.contains("backwards"), "{problem}"),
        other => panic!("backwards time not found: {other:?}"),
    }
}

async fn audit_unkeyed_v1_log_is_accepted_before_keyed_records(db: Db) {
    for i in 1..=4 {
        db.store.append(entry(i)).await.unwrap();
    }
    // What an older opsbot wrote: the same form under v1, plain SHA-256. Anyone could have
    // written that: until a checkpoint pins it, it does not verify.
    rehash_without_key(&db, 1, "opsbot-audit-v1").await;
    let report = db.verify().await;
    assert_eq!(only_problem(&report), &Problem::Unpinned { head: 4 });
    assert!(
        report.to_string().contains("`opsbot audit adopt`"),
        "{report}"
    );
    db.checkpoint().await;
    let report = db.verify().await;
    assert!(report.is_ok() && report.legacy == 4, "{report}");
    // The upgraded bot carries on with keyed records.
    db.store.append(entry(5)).await.unwrap();
    let report = db.verify().await;
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.count, report.legacy), (5, 4));
    assert!(
        report
            .to_string()
            .starts_with("chain OK, 5 records (4 before keyed hashing)"),
        "{report}"
    );
}

async fn audit_needs_the_key_to_append_and_verify(db: Db) {
    let reader = Store::open(&db.url).await.unwrap();
    assert!(matches!(
        reader.append(entry(1)).await,
        Err(StoreError::NoAuditKey)
    ));
    assert!(matches!(reader.verify().await, Err(StoreError::NoAuditKey)));
    assert_eq!(
        reader.audit_count().await.unwrap(),
        0,
        "nothing was written"
    );
    // Another key is not the key.
    db.store.append(entry(1)).await.unwrap();
    let wrong = reader.with_audit(Arc::new(AuditKey::generate()), None);
    let report = wrong.verify().await.unwrap();
    assert!(
        matches!(only_problem(&report), Problem::Link { id: 1, .. }),
        "{report}"
    );
}

/// The ids the checkpoint file names once it names `id` (fails the test if the writer has not
/// written it within 20 s).
async fn checkpoint_ids_once(file: &std::path::Path, key: &AuditKey, id: i64) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let read = AnchorFile::new(file).read(key).unwrap();
        let ids: Vec<i64> = read.valid.iter().map(|c| c.id).collect();
        if ids.contains(&id) {
            return ids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint of record {id} within 20 s; checkpoints: {ids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A store on `db` whose checkpoint writer writes to `name` every `records` or `every`.
async fn anchored(
    db: &Db,
    name: &str,
    records: u64,
    every: std::time::Duration,
) -> (Store, Arc<Anchor>, std::path::PathBuf) {
    let file = db.dir.path().join(name);
    let options = AnchorOptions {
        file: file.clone(),
        every_records: records,
        every,
    };
    let (anchor, read) = Anchor::open(options, db.key.clone()).unwrap();
    assert_eq!(read.latest(), None);
    let anchor = Arc::new(anchor);
    let store = db
        .second_store()
        .await
        .with_audit(db.key.clone(), Some(anchor.clone()));
    tokio::spawn(anchor.clone().run(store.clone()));
    (store, anchor, file)
}

async fn audit_checkpoints_follow_the_log(db: Db) {
    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
    // Every 3 records: the append path wakes the writer.
    let (store, anchor, file) = anchored(&db, "count.anchors", 3, HOUR).await;
    for i in 1..=3 {
        store.append(entry(i)).await.unwrap();
    }
    assert_eq!(checkpoint_ids_once(&file, &db.key, 3).await, [3]);
    // Nothing new: no checkpoint; at shutdown the head is checkpointed once more.
    assert_eq!(anchor.checkpoint(&store).await.unwrap(), None);
    store.append(entry(4)).await.unwrap();
    let last = anchor
        .finish(&store)
        .await
        .unwrap()
        .expect("a last checkpoint");
    assert_eq!((last.id, last.time), (4, t(4)));
    let report = store
        .verify_against(&AnchorFile::new(&file).read(&db.key).unwrap())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.checkpoint, Some(last));

    // Every 200 ms when the log grew (1000 records would take long).
    let every = std::time::Duration::from_millis(200);
    let (store, anchor, file) = anchored(&db, "time.anchors", 1000, every).await;
    store.append(entry(5)).await.unwrap();
    let ids = checkpoint_ids_once(&file, &db.key, 5).await;
    assert_eq!(ids.last(), Some(&5), "{ids:?}");
    anchor.finish(&store).await.unwrap();
}

async fn write_probe_sees_a_database_that_takes_no_writes(db: Db) {
    db.store.probe_write().await.unwrap();
    assert_eq!(
        db.raw("SELECT 1 FROM instances WHERE id LIKE 'readyz-probe-%'")
            .await,
        0,
        "the probe leaves nothing"
    );
    let expected = match db.store.backend() {
        Backend::Sqlite => {
            // Deleted under the running store: its open connections still work on the old file.
            std::fs::remove_file(db.dir.path().join("nested/opsbot.db")).unwrap();
            "No such file"
        }
        Backend::Postgres => {
            // What a failover to a standby, or an operator freezing the database, looks like.
            db.raw(
                "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET \
                 default_transaction_read_only = on', current_database()); END $$",
            )
            .await;
            "read-only transaction"
        }
    };
    let err = db.store.probe_write().await.unwrap_err().to_string();
    assert!(err.contains(expected), "{err}");
    assert!(!err.contains(&db.url), "{err}");
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

    let v = s.add_approval(&a.id, "slack:U2", &[]).await.unwrap();
    assert!(v.added);
    let v = s.add_approval(&a.id, "slack:U2", &[]).await.unwrap();
    assert!(!v.added, "the same approver counts once");
    assert_eq!(v.approval.approvers.len(), 1);
    let v = s
        .add_approval(&a.id, "discord:42", &["discord-role:7".to_owned()])
        .await
        .unwrap();
    assert!(v.added);
    assert_eq!(
        v.approval.approvers[1].groups.as_deref(),
        Some(&["discord-role:7".to_owned()][..])
    );
    assert_eq!(v.approval.approvers[0].groups.as_deref(), Some(&[][..]));
    // A vote from before the groups were recorded: not known, not "none".
    db.raw("UPDATE approval_votes SET approver_groups = NULL WHERE approver = 'slack:U2'")
        .await;
    let a2 = s.get(&a.id).await.unwrap().unwrap();
    assert_eq!(a2.approvers[0].groups, None);
    let subjects: Vec<_> = v
        .approval
        .approvers
        .iter()
        .map(|a| a.subject.as_str())
        .collect();
    assert_eq!(subjects, ["slack:U2", "discord:42"]);
    assert!(v.approval.has_enough_approvals());
    let v = s.add_approval(&a.id, "slack:U3", &[]).await.unwrap();
    assert!(!v.added, "votes stop at the count needed");

    // Concurrent duplicate votes from one person still count once.
    let other = db.second_store().await;
    let fresh = s
        .create_approval(new_approval(Timestamp::now(), 900))
        .await
        .unwrap();
    let id = fresh.id.clone();
    let vote = move |st: Store| {
        let id = id.clone();
        async move { st.add_approval(&id, "slack:U9", &[]).await.map(|v| v.added) }
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
    let v = s.add_approval(&b.id, "slack:U2", &[]).await.unwrap();
    assert!(!v.added);
    assert_eq!(v.approval.state, ApprovalState::Denied);
    assert!(v.approval.approvers.is_empty());

    // Past its expiry (not yet swept), votes are not recorded either.
    let old = Timestamp::now() - SignedDuration::from_secs(7200);
    let c = s.create_approval(new_approval(old, 60)).await.unwrap();
    let v = s.add_approval(&c.id, "slack:U2", &[]).await.unwrap();
    assert!(!v.added);
    assert_eq!(v.approval.state, ApprovalState::Pending);
    assert!(v.approval.approvers.is_empty());

    assert!(matches!(
        s.add_approval("nope00", "slack:U2", &[]).await,
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
    db.store.add_approval(&a.id, "slack:U2", &[]).await.unwrap();
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
    let store = db.second_store().await;

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
    let other = db.second_store().await;
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

fn inbox_entry(delivery: &str, owner: &str) -> NewInboxEntry {
    NewInboxEntry {
        platform: "slack".to_owned(),
        delivery_id: delivery.to_owned(),
        kind: InboxKind::Command,
        actor: "slack:U1".to_owned(),
        channel: "C0OPS".to_owned(),
        text: "scale api 5".to_owned(),
        owner: owner.to_owned(),
        received: Timestamp::now(),
    }
}

async fn receive(s: &Store, delivery: &str, owner: &str) -> Receipt {
    s.receive(
        inbox_entry(delivery, owner),
        AuditEntry::new(AuditKind::Request, "slack").text("scale api 5"),
        AuditEntry::new(AuditKind::Rejection, "slack").outcome("replay"),
    )
    .await
    .expect("receive")
}

async fn inbox_records_each_delivery_once_with_its_request(db: Db) {
    let s = &db.store;
    let Receipt::New(id) = receive(s, "T1", "me").await else {
        panic!("first delivery not new");
    };
    assert_eq!(receive(s, "T1", "me").await, Receipt::Duplicate);
    let entry = s.inbox_entry(id).await.unwrap().unwrap();
    assert_eq!(
        (entry.state, entry.owner.as_str()),
        (InboxState::Received, "me")
    );
    // The request and the replay are in the audit log, the request carrying its inbox id.
    let log = s.tail(10).await.unwrap();
    let kinds: Vec<_> = log.iter().map(|r| r.entry.kind).collect();
    assert_eq!(kinds, [AuditKind::Request, AuditKind::Rejection]);
    assert_eq!(log[0].entry.detail["inbox"], id);
    assert!(s.verify().await.unwrap().is_ok());

    // Two stores (two replicas) receiving the same delivery at once: one takes it.
    let other = db.second_store().await;
    let first = |st: Store| async move {
        receive(&st, "T2", "me").await;
        Ok::<_, StoreError>(true)
    };
    race(s, &other, first).await;
    let t2: Vec<_> = s
        .inbox()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.delivery_id == "T2")
        .collect();
    assert_eq!(t2.len(), 1);
    let requests = s
        .tail(200)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.entry.kind == AuditKind::Request)
        .count();
    assert_eq!(requests, 2, "one request record per delivery taken");
    assert!(s.verify().await.unwrap().is_ok(), "the chain stays linear");

    // States move forward; an answered entry stays answered.
    assert!(s.mark(id, InboxState::Running, true, None).await.unwrap());
    assert!(
        s.mark(id, InboxState::Answered, true, Some("ok"))
            .await
            .unwrap()
    );
    assert!(!s.mark(id, InboxState::Received, false, None).await.unwrap());
    let entry = s.inbox_entry(id).await.unwrap().unwrap();
    assert_eq!(entry.state, InboxState::Answered);
    assert!(entry.mutating);
    assert_eq!(entry.outcome.as_deref(), Some("ok"));
    assert_eq!(s.open_inbox_count().await.unwrap(), 1, "T2 is still open");

    // Pruning forgets old answered entries only.
    let future = Timestamp::now() + SignedDuration::from_secs(60);
    assert_eq!(s.prune_inbox(future).await.unwrap(), 1);
    assert_eq!(s.inbox().await.unwrap().len(), 1);
}

async fn inbox_orphans_of_a_silent_process_are_adopted_once(db: Db) {
    let s = &db.store;
    let other = db.second_store().await;
    s.heartbeat("alive").await.unwrap();
    let Receipt::New(dead) = receive(s, "T1", "dead").await else {
        panic!()
    };
    let Receipt::New(_) = receive(s, "T2", "alive").await else {
        panic!()
    };
    let Receipt::New(answered) = receive(s, "T3", "dead").await else {
        panic!()
    };
    s.mark(answered, InboxState::Answered, false, None)
        .await
        .unwrap();
    let since = Timestamp::now() - SignedDuration::from_secs(30);
    let orphans = s.orphaned("me", since).await.unwrap();
    assert_eq!(
        orphans.iter().map(|e| e.id).collect::<Vec<_>>(),
        [dead],
        "open, and owned by a process not heard of"
    );
    // Many takers at once (two replicas): one wins.
    let adopt = |st: Store| async move { st.adopt(dead, "dead", "me").await };
    assert_eq!(race(s, &other, adopt).await, 1);
    assert!(s.orphaned("me", since).await.unwrap().is_empty());
    // A heartbeat older than the window makes a process's entries orphans too.
    let later = Timestamp::now() + SignedDuration::from_secs(60);
    assert_eq!(s.orphaned("me", later).await.unwrap().len(), 1);
}

async fn approval_votes_stop_at_the_count_needed(db: Db) {
    let other = db.second_store().await;
    let a = db
        .store
        .create_approval(new_approval(Timestamp::now(), 900))
        .await
        .unwrap();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let vote = |st: Store| {
        let id = a.id.clone();
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            st.add_approval(&id, &format!("slack:U{n}"), &[])
                .await
                .map(|v| v.added)
        }
    };
    assert_eq!(
        race(&db.store, &other, vote).await,
        2,
        "the request needs 2"
    );
    let a = db.store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(a.approvers.len(), 2);
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

/// Commits do not checkpoint the WAL (that stalled the acks); the writer's checkpoint task does,
/// beside them: every page committed reaches the database file itself while the store runs.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_beside_the_commits() {
    let db = Db::sqlite().await;
    let file = db.dir.path().join("nested/opsbot.db");
    for i in 0..600 {
        db.store.append(entry(i)).await.unwrap();
    }
    let mut reader = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    let (needed,): (i64,) = sqlx::query_as(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
    )
    .fetch_one(&mut reader)
    .await
    .unwrap();
    let needed = needed as u64;
    let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < needed {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file has {} of its {needed} bytes: the WAL is not checkpointed",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report = db.store.verify().await.unwrap();
    assert_eq!((report.count, report.problems.len()), (600, 0));
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
        spawnable(async move { st.add_approval(&i, "slack:U1", &[]).await });
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
        spawnable(async move { st.orphaned(&id, Timestamp::now()).await });
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
        .unwrap()
        .changes;
    assert_eq!(changes, [GroupChange::Changed, GroupChange::Changed]);
    let again = s
        .record_notification(&firing, &channels, six_hours, t(10))
        .await
        .unwrap()
        .changes;
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

/// A channel the group is no longer routed to keeps following its state, but gets no new
/// message when it fires again after `regroup_after`.
async fn alert_groups_follow_into_channels_no_longer_routed_to(db: Db) {
    let s = &db.store;
    let six_hours = std::time::Duration::from_secs(6 * 3600);
    let (first, now) = (["slack:C1".to_owned()], ["slack:C2".to_owned()]);
    let firing = notification("firing", &[("a", "firing")]);
    let resolved = notification("resolved", &[("a", "resolved")]);
    let row = |channel: &'static str| {
        let key = firing.group_key.clone();
        async move { s.alert_group(&key, channel).await.unwrap().unwrap() }
    };
    s.record_notification(&firing, &first, six_hours, t(0))
        .await
        .unwrap();
    let recorded = s
        .record_notification(&resolved, &now, six_hours, t(100))
        .await
        .unwrap();
    assert_eq!(
        recorded.changes,
        [GroupChange::Changed],
        "one per routed channel"
    );
    assert_eq!(recorded.unrouted, ["slack:C1"]);
    assert_eq!(row("slack:C1").await.resolved, Some(t(100)));
    s.record_notification(&firing, &now, six_hours, t(100 + 6 * 3600))
        .await
        .unwrap();
    let (old, new) = (row("slack:C1").await, row("slack:C2").await);
    assert_eq!((old.generation, old.resolved), (1, Some(t(100))));
    assert_eq!((new.generation, new.resolved), (2, None));
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

/// The audit record of an incident's opening.
fn opened(title: &str) -> AuditEntry {
    AuditEntry::new(AuditKind::Incident, "console")
        .actor("console:olive")
        .outcome("opened")
        .text(format!("opened: {title}"))
}

/// A timeline entry and its audit record are one commit: both, or (no key, no such incident)
/// neither. So are a new incident, its `opened` entry and its audit record.
async fn incident_timeline_entries_are_committed_with_their_audit_record(db: Db) {
    let new = new_incident("db slow", opsbot_policies::Severity::P2);
    let before = db.store.audit_count().await.unwrap();
    let inc = db
        .store
        .open_incident(new.clone(), "opened P2: db slow", opened("db slow"))
        .await
        .unwrap();
    assert_eq!(db.store.audit_count().await.unwrap(), before + 1);
    let record = db.store.tail(1).await.unwrap().pop().unwrap();
    assert_eq!(record.entry.outcome.as_deref(), Some("opened"));
    assert_eq!(record.entry.detail["incident"], inc.id());
    let timeline = db.store.timeline(inc.number).await.unwrap();
    assert_eq!(timeline[0].kind, "opened");
    let note = |incident: u64, text: &str| NewTimelineEntry {
        incident,
        at: t(5),
        actor: "console:olive".into(),
        kind: "note".into(),
        text: text.into(),
        detail: serde_json::json!({ "follow_up": false }),
    };
    let audit = AuditEntry::new(AuditKind::Incident, "console")
        .actor("console:olive")
        .outcome("note")
        .text("pool exhausted");
    let audited = db.store.audit_count().await.unwrap();
    let id = db
        .store
        .add_timeline(note(inc.number, "pool exhausted"), audit.clone())
        .await
        .unwrap();
    let timeline = db.store.timeline(inc.number).await.unwrap();
    let last = timeline.last().unwrap();
    assert_eq!(
        (last.id, last.kind.as_str(), last.text.as_str(), last.at),
        (id, "note", "pool exhausted", t(5))
    );
    assert_eq!(last.detail, serde_json::json!({ "follow_up": false }));
    assert_eq!(db.store.audit_count().await.unwrap(), audited + 1);
    let record = db.store.tail(1).await.unwrap().pop().unwrap();
    assert_eq!(record.entry.kind, AuditKind::Incident);
    assert_eq!(record.entry.text.as_deref(), Some("pool exhausted"));

    // No such incident: the entry breaks a constraint, and its audit record is not written.
    let err = db
        .store
        .add_timeline(note(999, "ghost"), audit.clone())
        .await;
    assert!(err.is_err(), "{err:?}");
    // Without the key: neither.
    let reader = Store::open(&db.url).await.unwrap();
    let err = reader.add_timeline(note(inc.number, "x"), audit).await;
    assert!(matches!(err, Err(StoreError::NoAuditKey)), "{err:?}");
    let err = reader
        .open_incident(new, "opened P2: db slow", opened("db slow"))
        .await;
    assert!(matches!(err, Err(StoreError::NoAuditKey)), "{err:?}");
    assert_eq!(db.store.audit_count().await.unwrap(), audited + 1);
    let all = db.store.list_incidents(false, None, 10).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(db.store.timeline(inc.number).await.unwrap(), timeline);
}

/// The pooled writes (approvals, votes, cards, heartbeats, the readiness probe) beside a
/// steady stream of the batching writer's commits: none is starved into an error. (On SQLite
/// a pooled write used to race the writer for the database lock and could lose every retry
/// until its busy timeout.)
async fn pooled_writes_succeed_beside_a_stream_of_appends(db: Db) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let mut appenders = Vec::new();
    for w in 0..64 {
        let (store, stop) = (db.store.clone(), stop.clone());
        appenders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                store.append(entry(w * 1_000_000 + n)).await?;
                n += 1;
            }
            Ok::<i64, StoreError>(n)
        }));
    }
    let s = &db.store;
    let card = MessageRef {
        platform: "slack".into(),
        channel: "C0OPS".into(),
        id: "1700000000.000100".into(),
    };
    for i in 0..40 {
        let a = s
            .create_approval(new_approval(Timestamp::now(), 900))
            .await
            .unwrap_or_else(|e| panic!("create_approval {i}: {e}"));
        s.set_card(&a.id, &card)
            .await
            .unwrap_or_else(|e| panic!("set_card {i}: {e}"));
        let vote = s
            .add_approval(&a.id, "slack:U2", &[])
            .await
            .unwrap_or_else(|e| panic!("add_approval {i}: {e}"));
        assert!(vote.added);
        s.heartbeat("me")
            .await
            .unwrap_or_else(|e| panic!("heartbeat {i}: {e}"));
        s.probe_write()
            .await
            .unwrap_or_else(|e| panic!("probe_write {i}: {e}"));
    }
    stop.store(true, Ordering::Relaxed);
    let mut appended = 0;
    for a in appenders {
        appended += a.await.unwrap().expect("append");
    }
    assert!(appended > 0);
    assert_eq!(
        s.approvals_in(ApprovalState::Pending).await.unwrap().len(),
        40
    );
    assert!(s.verify().await.unwrap().problems.is_empty());
}

/// Status, severity and role changes land only on an open incident: one racing a `close`
/// changes nothing (and says so).
async fn closed_incidents_take_no_status_severity_or_role(db: Db) {
    let new = new_incident("api down", opsbot_policies::Severity::P1);
    let inc = db
        .store
        .open_incident(new, "opened P1: api down", opened("api down"))
        .await
        .unwrap();
    let n = inc.number;
    let s = &db.store;
    assert!(
        s.set_incident_status(n, opsbot_commands::IncidentStatus::Identified, t(1))
            .await
            .unwrap()
    );
    assert!(s.close_incident(n, Some("fixed"), t(2)).await.unwrap());
    assert!(
        !s.set_incident_status(n, opsbot_commands::IncidentStatus::Investigating, t(3))
            .await
            .unwrap()
    );
    assert!(
        !s.set_incident_severity(n, opsbot_policies::Severity::P4)
            .await
            .unwrap()
    );
    assert!(
        !s.set_incident_role(n, opsbot_commands::Role::Commander, "console:mallory")
            .await
            .unwrap()
    );
    let after = s.incident(n).await.unwrap().unwrap();
    assert!(!after.open);
    assert_eq!(
        after.status,
        opsbot_commands::IncidentStatus::Resolved,
        "as closing left it"
    );
    assert_eq!(after.severity, opsbot_policies::Severity::P1);
    assert_eq!(after.commander, None);
}

/// An incident opened at `t(0)` by console:olive.
fn new_incident(title: &str, severity: opsbot_policies::Severity) -> NewIncident {
    NewIncident {
        title: title.into(),
        severity,
        service: None,
        commander: None,
        requester: "console:olive".into(),
        platform: "console".into(),
        origin_channel: "console".into(),
        opened: t(0),
    }
}
