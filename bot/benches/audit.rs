//! Audit appends per second on SQLite: `Store::append`, next to raw sqlx doing the same
//! transaction (BEGIN IMMEDIATE, select the last id and hash, insert the next row, COMMIT) on
//! the same schema and connection settings (WAL, synchronous=NORMAL, 4 connections), with one
//! and with 8 concurrent writers.
//!
//! `cargo bench -p opsbot --bench audit`. A plain `main` (`harness = false`): it prints figures
//! and asserts nothing about time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opsbot::store::{AuditEntry, AuditKey, AuditKind, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const RUN: Duration = Duration::from_secs(3);

/// Runs `writers` tasks calling `append` until `RUN` is over; appends per second.
async fn rate<F, Fut>(writers: usize, append: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let append = Arc::new(append);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let append = append.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < RUN {
                    append().await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn raw_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    // The schema comes from the store's own migrations.
    Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("store")
        .close()
        .await;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("raw pool")
}

async fn raw_append(pool: &sqlx::SqlitePool) {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .expect("select");
    let (id, prev) = last.unwrap_or((0, "0".repeat(64)));
    sqlx::query(
        "INSERT INTO audit_log (id, time_ms, kind, platform, channel, actor, text, command, rule, \
         outcome, detail, duration_ms, approval_id, prev_hash, hash) \
         VALUES ($1, $2, 'request', 'slack', 'C0BENCH', 'slack:UBENCH', 'status api', NULL, NULL, \
         NULL, '{}', NULL, NULL, $3, $4)",
    )
    .bind(id + 1)
    .bind(id)
    .bind(&prev)
    .bind(format!("{:064x}", id + 1))
    .execute(&mut *tx)
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        println!(
            "{:>8} {:>16} {:>16} {:>7}",
            "writers", "Store::append", "raw sqlx", "ratio"
        );
        for writers in [1, 8] {
            let path = dir.path().join(format!("store-{writers}.db"));
            let store = Arc::new(
                Store::open(&format!("sqlite://{}", path.display()))
                    .await
                    .expect("store")
                    .with_audit(Arc::new(AuditKey::generate()), None),
            );
            let store_rate = rate(writers, move || {
                let store = store.clone();
                async move {
                    let entry = AuditEntry::new(AuditKind::Request, "slack")
                        .channel("C0BENCH")
                        .actor("slack:UBENCH")
                        .text("status api");
                    store.append(entry).await.expect("append");
                }
            })
            .await;
            let pool = raw_pool(&dir.path().join(format!("raw-{writers}.db"))).await;
            let raw_rate = rate(writers, move || {
                let pool = pool.clone();
                async move { raw_append(&pool).await }
            })
            .await;
            println!(
                "{writers:>8} {store_rate:>14.0}/s {raw_rate:>14.0}/s {:>7.2}",
                store_rate / raw_rate
            );
        }
    });
}
