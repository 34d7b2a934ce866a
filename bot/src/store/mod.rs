//! The durable store: audit log, approvals and delivery dedupe, on SQLite or PostgreSQL (sqlx).
//!
//! [`Store::open`] picks the backend from the URL scheme (`sqlite:` / `postgres:` /
//! `postgresql:`), connects, and runs the migrations in `bot/migrations/<backend>/`. SQLite is
//! the embedded default: one file, created if missing, in WAL mode.
//!
//! Invariants:
//! - The audit log is append-only and hash-chained under a key kept outside the database
//!   (`audit.rs`, [`anchor`]), with signed checkpoints of its head in a file. Appends are
//!   serialised in the database (SQLite `BEGIN IMMEDIATE`, PostgreSQL `LOCK TABLE … IN EXCLUSIVE
//!   MODE`), so the chain stays linear also with several processes on one database (which must
//!   share the key). A store opened without the key ([`Store::open`]) reads but cannot append.
//! - Approval state changes are conditional updates (`… WHERE state = <from>`), so among any
//!   number of concurrent callers, on any number of replicas, exactly one makes a transition.
//! - A request is acknowledged only once [`Store::receive`] has committed it to the inbox
//!   (`inbox.rs`); its `(platform, delivery_id)` is unique, so a delivery is handled at most once.
//! - Audit, inbox and incident timeline writes go through one batching writer (`writer.rs`):
//!   group commits, the audit head read once per batch. On SQLite the WAL is checkpointed beside
//!   the commits, never inside one.
//! - On SQLite every writing transaction of the process (the writer's batches and the pooled
//!   writes, which use `on_pool_writing!`) first takes the store's write turn, a fair queue:
//!   no write waits out the busy timeout behind a stream of others.
//!
//! Every query is written once with `$N` placeholders, which both backends accept, and run on
//! whichever pool the store holds (the `on_pool!` macro). Times are stored as milliseconds since
//! the Unix epoch.

mod alerts;
pub mod anchor;
mod approvals;
mod audit;
mod inbox;
mod incidents;
pub mod testing;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};

pub use alerts::{AlertGroup, GroupChange, MessageTarget, Recorded, StoredAlert};
pub use anchor::{Anchor, AnchorError, AnchorFile, AuditKey, Checkpoint, Checkpoints, Head};
pub use approvals::{
    Approval, ApprovalRequirement, ApprovalState, Approver, NewApproval, VoteOutcome,
};
pub use audit::{
    AuditEntry, AuditKind, AuditRecord, GENESIS_HASH, HeadSeal, Problem, VerifyReport,
};
pub use inbox::{InboxEntry, InboxKind, InboxState, NewInboxEntry, Receipt};
pub use incidents::{Incident, NewIncident, NewTimelineEntry, TimelineEntry, Timer, TimerKind};
pub use writer::{Write, Written};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long a SQLite connection waits for another writer (also in another process). Short: the
/// acknowledgement of a request waits on its inbox write, and a database that cannot take a
/// write within this is unavailable to opsbot for now.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a caller waits for a pooled connection. Short, so that a database outage is reported
/// at once (and a request refused, not queued); with `test_before_acquire`, broken connections
/// are replaced, so the pool recovers within seconds of the database returning.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// What can go wrong in the store. Messages never contain the database URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL scheme {scheme:?}: use sqlite:PATH or postgres://…")]
    UnsupportedUrl { scheme: String },
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    // The causes are part of the messages and deliberately not `source()`s, so that printing
    // the error chain (`{:#}`) does not repeat them.
    #[error("could not create the database directory {path}: {error}")]
    CreateDir { path: String, error: std::io::Error },
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("approval {0} not found")]
    NotFound(String),
    #[error("approval state cannot go from {from} to {to}")]
    InvalidTransition {
        from: ApprovalState,
        to: ApprovalState,
    },
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("there is no database at {0}")]
    Missing(String),
    #[error("could not find a free approval id")]
    IdsExhausted,
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the database file {path} cannot be written: {error}")]
    NotWritable { path: String, error: std::io::Error },
    #[error("the store was opened without the audit key, which writing and verifying the log need")]
    NoAuditKey,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The body is compiled once
/// per backend, so it must only use what both sqlx drivers offer (it does: `$N` binds, `i64`,
/// `String`, `Option<String>`).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// [`on_pool!`] for statements that write. SQLite takes one writing transaction at a time, and
/// a connection that finds the database locked sleeps and retries until its busy timeout: under
/// a steady stream of the batching writer's commits it could lose every retry and fail. So on
/// SQLite the body first takes this process's write turn ([`Store`]'s `turn`), which the writer
/// takes for each batch too: writers queue first come, first served, and a pooled write waits
/// for at most the batches queued before it.
macro_rules! on_pool_writing {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => {
                let _turn = $store.turn.lock().await;
                $body
            }
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool_writing;

/// The store. Cheap to clone (the pool and the writer are shared); safe to use from many tasks
/// at once. Writes of the audit log, the inbox and incident timelines go through one batching
/// writer task (`writer.rs`); reads and the other tables use the pool directly.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    audit: AuditSeal,
    writer: writer::Writer,
    /// SQLite: the write turn every writing transaction of this process takes first
    /// (`on_pool_writing!`); a fair queue, so no writer is starved. Unused on PostgreSQL,
    /// which has row locks.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// What the audit log is sealed with: the chain key, and the checkpoint writer told about new
/// heads ([`anchor`]).
#[derive(Debug, Clone, Default)]
struct AuditSeal {
    key: Option<Arc<AuditKey>>,
    anchor: Option<Arc<Anchor>>,
}

/// The connection pool's occupancy (for `/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// Connections open.
    pub size: u32,
    /// Of those, not in use.
    pub idle: usize,
    pub max: u32,
    /// Every connection is open and in use: the next query waits.
    pub saturated: bool,
}

/// Pool settings both backends share: fail fast, check connections, log no slow acquires (an
/// outage would otherwise log one warning per waiting request).
fn pool_options<DB: sqlx::Database>(max_connections: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(true)
        .acquire_slow_level(log::LevelFilter::Off)
        .acquire_time_level(log::LevelFilter::Off)
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs the migrations.
    ///
    /// `url` is `sqlite:PATH`, `sqlite://PATH` (the file and its directory are created if
    /// missing) or `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`).
    pub async fn open(url: &str) -> Result<Store> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
                Store::open_sqlite(options).await
            }
            "postgres" | "postgresql" => {
                refuse_unknown_postgres_parameters(url)?;
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
                Store::open_postgres(options).await
            }
            other => Err(StoreError::UnsupportedUrl {
                scheme: other.to_owned(),
            }),
        }
    }

    /// Like [`Store::open`], but refuses a SQLite database file that does not exist yet, so a
    /// reader (`opsbot audit …`) with a mistyped path gets an error, not a new empty log.
    pub async fn open_existing(url: &str) -> Result<Store> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
            let file = options.get_filename();
            if !in_memory(file) && !file.exists() {
                return Err(StoreError::Missing(file.display().to_string()));
            }
        }
        Store::open(url).await
    }

    /// Opens (creating if missing) the SQLite file at `path`, in WAL mode.
    pub async fn open_sqlite_file(path: &std::path::Path) -> Result<Store> {
        Store::open_sqlite(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open_sqlite(options: SqliteConnectOptions) -> Result<Store> {
        let file = options.get_filename().to_path_buf();
        let in_memory = in_memory(&file);
        if !in_memory
            && let Some(dir) = file.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|error| StoreError::CreateDir {
                path: dir.display().to_string(),
                error,
            })?;
        }
        if !in_memory {
            // Created here, once: the pool's connections never create the file, so a database
            // deleted under the running store fails its next connection instead of being made
            // anew, empty and without tables.
            SqliteConnection::connect_with(&options.clone().create_if_missing(true))
                .await?
                .close()
                .await?;
        }
        let options = options
            .create_if_missing(in_memory)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            // Commits never checkpoint: the writer's checkpoint task does, beside them.
            .pragma("wal_autocheckpoint", "0");
        // An in-memory database exists once per connection: keep exactly one.
        let pool = pool_options::<sqlx::Sqlite>(if in_memory { 1 } else { 4 })
            .connect_with(options)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        Ok(Store::with_pool(Pool::Sqlite(pool)))
    }

    async fn open_postgres(options: PgConnectOptions) -> Result<Store> {
        // One plain connection first: if the server is unreachable or refuses us, say why at
        // once, rather than "pool timed out" after the acquire timeout.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = pool_options::<sqlx::Postgres>(8)
            .connect_with(options)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        Ok(Store::with_pool(Pool::Postgres(pool)))
    }

    fn with_pool(pool: Pool) -> Store {
        let audit = AuditSeal::default();
        let turn = Arc::default();
        Store {
            writer: writer::Writer::start(pool.clone(), audit.clone(), Arc::clone(&turn)),
            audit,
            pool,
            turn,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// This store, appending with keyed hashes under `key` and telling `anchor` (if any) about
    /// each new head.
    pub fn with_audit(mut self, key: Arc<AuditKey>, anchor: Option<Arc<Anchor>>) -> Store {
        self.audit = AuditSeal {
            key: Some(key),
            anchor,
        };
        // The writer seals what it appends: a new one with the key.
        self.writer = writer::Writer::start(
            self.pool.clone(),
            self.audit.clone(),
            Arc::clone(&self.turn),
        );
        self
    }

    fn audit_key(&self) -> Result<&AuditKey> {
        self.audit.key.as_deref().ok_or(StoreError::NoAuditKey)
    }

    /// The checkpoint writer of the audit log, if the store has one.
    pub fn anchor(&self) -> Option<&Arc<Anchor>> {
        self.audit.anchor.as_ref()
    }

    /// Makes every committed transaction durable against power loss. (SQLite in WAL mode with
    /// `synchronous = NORMAL` syncs the WAL only at checkpoints: run a passive one. PostgreSQL
    /// commits are durable already.) Called before an audit checkpoint names the head.
    pub async fn make_durable(&self) -> Result<()> {
        if let Pool::Sqlite(pool) = &self.pool {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Whether the database takes writes now (for `/readyz`): on a new connection (so a
    /// deleted SQLite file, or a server turned read-only, shows), inserts a row in a
    /// transaction and rolls it back. For SQLite, first opens the file for writing: SQLite
    /// reuses the descriptors its closed connections leave open in this process, so only the
    /// file system says whether the file became read-only.
    pub async fn probe_write(&self) -> Result<()> {
        macro_rules! probe {
            ($conn:ident) => {{
                let mut tx = $conn.begin().await?;
                sqlx::query(
                    "INSERT INTO instances (id, started_ms, heartbeat_ms) VALUES ($1, $2, $2)",
                )
                .bind(format!("readyz-probe-{}", rand::random::<u64>()))
                .bind(Timestamp::now().as_millisecond())
                .execute(&mut *tx)
                .await?;
                tx.rollback().await?;
                $conn.close().await?;
            }};
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                let options = (*pool.connect_options()).clone().create_if_missing(false);
                let file = options.get_filename();
                if !in_memory(file) {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(file)
                        .map_err(|error| StoreError::NotWritable {
                            path: file.display().to_string(),
                            error,
                        })?;
                }
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
                let _turn = self.turn.lock().await;
                probe!(conn);
            }
            Pool::Postgres(pool) => {
                let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
                probe!(conn);
            }
        }
        Ok(())
    }

    /// How busy the connection pool is.
    pub fn pool_status(&self) -> PoolStatus {
        let (size, idle, max) = on_pool!(self, |pool| (
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections()
        ));
        PoolStatus {
            size,
            idle,
            max,
            saturated: size >= max && idle == 0,
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// The `VALUES` list of a multi-row insert of `rows` rows of `columns` parameters each:
/// `(?, ?), (?, ?)` when `anonymous`, else `($1, $2), ($3, $4)`.
///
/// Multi-row inserts take anonymous `?` parameters on SQLite: sqlx asks SQLite for the name of
/// every parameter it binds, and SQLite finds a name by a linear scan, so `$N` parameters cost
/// O(n²) per statement (with 4,800 in one alert insert, binding was 43 % of the intake's CPU).
/// PostgreSQL has no anonymous parameters.
fn values_list(rows: usize, columns: usize, anonymous: bool) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 1..=columns {
            if c > 1 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&(r * columns + c).to_string());
            }
        }
        sql.push(')');
    }
    sql
}

/// `rows` cut into chunks for multi-row inserts of at most `max` rows: as many of `max` as fit,
/// then the rest in sizes of 64, 16, 4 and 1. Each size is its own statement, prepared once and
/// cached by the connection; cutting to a few sizes keeps those statements few (a cache of
/// every length up to `max` would hold hundreds of large statements per connection).
fn insert_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = [max, 64, 16, 4, 1]
            .into_iter()
            .find(|&size| size <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// Whether a SQLite file name means an in-memory database.
/// The query parameters sqlx reads from a PostgreSQL URL.
const POSTGRES_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Refuses a query parameter sqlx would ignore: it would log its value (an `sslpassword`, say)
/// and connect without it. The error names the parameter, never its value.
fn refuse_unknown_postgres_parameters(url: &str) -> Result<()> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(()); // sqlx reports what is wrong with it
    };
    match parsed
        .query_pairs()
        .find(|(key, _)| !POSTGRES_PARAMETERS.contains(&key.as_ref()))
    {
        Some((key, _)) => Err(StoreError::InvalidUrl(format!(
            "opsbot does not support the parameter `{key}` in a PostgreSQL URL (it takes {})",
            POSTGRES_PARAMETERS.join(", ")
        ))),
        None => Ok(()),
    }
}

fn in_memory(file: &std::path::Path) -> bool {
    file.as_os_str().is_empty() || file.as_os_str() == ":memory:"
}

fn timestamp(table: &'static str, ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt {
        table,
        message: format!("bad time {ms}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::{insert_chunks, refuse_unknown_postgres_parameters, values_list};

    #[test]
    fn insert_chunks_cover_the_rows_in_order_in_few_sizes() {
        for n in [0, 1, 3, 4, 63, 64, 255, 256, 257, 700] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = insert_chunks(&rows, 256).collect();
            assert_eq!(chunks.concat(), rows, "{n} rows, in order");
            assert!(
                chunks
                    .iter()
                    .all(|c| [256, 64, 16, 4, 1].contains(&c.len())),
                "{n} rows: {:?}",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
            assert!(
                chunks.len() <= n / 256 + 12,
                "{n} rows in {} chunks",
                chunks.len()
            );
        }
        let sizes: Vec<usize> = insert_chunks(&[(); 37], 256).map(<[()]>::len).collect();
        assert_eq!(sizes, [16, 16, 4, 1]);
        let sizes: Vec<usize> = insert_chunks(&[(); 900], 400).map(<[()]>::len).collect();
        assert_eq!(sizes, [400, 400, 64, 16, 16, 4]);
    }

    #[test]
    fn unknown_postgres_parameters_are_refused_without_their_value() {
        let url = "postgres://u:p@db/opsbot?sslmode=require&sslpassword=s3cr3t";
        let err = refuse_unknown_postgres_parameters(url)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sslpassword`"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(refuse_unknown_postgres_parameters("postgres://u:p@db/x?sslmode=require").is_ok());
    }

    #[test]
    fn values_lists_number_parameters_across_rows() {
        assert_eq!(values_list(2, 3, true), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(values_list(2, 2, false), "($1, $2), ($3, $4)");
        assert_eq!(values_list(1, 1, false), "($1)");
    }
}
