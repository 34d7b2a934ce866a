//! The durable store: audit log, approvals and delivery dedupe, on SQLite or PostgreSQL (sqlx).
//!
//! [`Store::open`] picks the backend from the URL scheme (`sqlite:` / `postgres:` /
//! `postgresql:`), connects, and runs the migrations in `bot/migrations/<backend>/`. SQLite is
//! the embedded default: one file, created if missing, in WAL mode.
//!
//! Invariants:
//! - The audit log is append-only and hash-chained ([`audit`]). Appends are serialised in the
//!   database (SQLite `BEGIN IMMEDIATE`, PostgreSQL `LOCK TABLE … IN EXCLUSIVE MODE`), so the chain
//!   stays linear also with several processes on one database.
//! - Approval state changes are conditional updates (`… WHERE state = <from>`), so among any
//!   number of concurrent callers, on any number of replicas, exactly one makes a transition.
//! - [`Store::seen_delivery`] is an insert-if-absent, so a delivery is handled at most once.
//!
//! Every query is written once with `$N` placeholders, which both backends accept, and run on
//! whichever pool the store holds (the `on_pool!` macro). Times are stored as milliseconds since
//! the Unix epoch.

mod alerts;
mod approvals;
mod audit;
pub mod testing;

use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use alerts::{AlertGroup, GroupChange, MessageTarget, StoredAlert};
pub use approvals::{
    Approval, ApprovalRequirement, ApprovalState, Approver, NewApproval, VoteOutcome,
};
pub use audit::{AuditEntry, AuditKind, AuditRecord, GENESIS_HASH, VerifyReport};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long a SQLite connection waits for another writer (also in another process).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The store. Cheap to clone (the pool is shared); safe to use from many tasks at once.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
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
            let in_memory = file.as_os_str().is_empty() || file.as_os_str() == ":memory:";
            if !in_memory && !file.exists() {
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
        let in_memory = file.as_os_str().is_empty() || file.as_os_str() == ":memory:";
        if !in_memory
            && let Some(dir) = file.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|error| StoreError::CreateDir {
                path: dir.display().to_string(),
                error,
            })?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            // An in-memory database exists once per connection: keep exactly one.
            .max_connections(if in_memory { 1 } else { 4 })
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    async fn open_postgres(options: PgConnectOptions) -> Result<Store> {
        // One plain connection first: if the server is unreachable or refuses us, say why at
        // once, rather than "pool timed out" after the acquire timeout.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        Ok(Store {
            pool: Pool::Postgres(pool),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }

    /// Records that `platform` delivered `delivery_id`. Returns `true` when it had been seen
    /// before (by this process or any other on the same database): the caller drops it.
    pub async fn seen_delivery(&self, platform: &str, delivery_id: &str) -> Result<bool> {
        let now = Timestamp::now().as_millisecond();
        let inserted = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO deliveries (platform, delivery_id, seen_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (platform, delivery_id) DO NOTHING",
            )
            .bind(platform)
            .bind(delivery_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(inserted == 0)
    }

    /// Forgets deliveries seen before `before` (platforms retry for minutes, not days).
    /// Returns how many were removed.
    pub async fn prune_deliveries(&self, before: Timestamp) -> Result<u64> {
        let removed = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM deliveries WHERE seen_ms < $1")
                .bind(before.as_millisecond())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed)
    }
}

fn timestamp(table: &'static str, ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt {
        table,
        message: format!("bad time {ms}: {e}"),
    })
}
