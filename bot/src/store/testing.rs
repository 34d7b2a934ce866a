//! Helpers for tests that run against both backends (also used by the end-to-end tests).
//!
//! PostgreSQL comes from `OPSBOT_TEST_POSTGRES_URL` (set by `scripts/test.sh`). Each call of
//! [`fresh_postgres_url`] creates a new, empty database on that server, so tests never collide.
//! When the variable is unset the PostgreSQL half is skipped with a message on stderr, except
//! under `CI=true`, where that is an error: CI must test both backends.

use std::io::Write as _;
use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The environment variable naming the test PostgreSQL server.
pub const POSTGRES_URL_VAR: &str = "OPSBOT_TEST_POSTGRES_URL";

#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    #[error(
        "{POSTGRES_URL_VAR} is not set but CI=true: the PostgreSQL tests must run in CI \
         (run them through scripts/test.sh, which starts a PostgreSQL)"
    )]
    MissingInCi,
    #[error("{POSTGRES_URL_VAR} is not a PostgreSQL URL: {0}")]
    BadUrl(String),
    #[error("could not create a test database: {0}")]
    Db(#[from] sqlx::Error),
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// A URL to a new, empty database on the test server; `Ok(None)` (after printing why) when the
/// PostgreSQL tests are to be skipped; `Err` when they may not be skipped (CI).
/// `test` names the caller in the skip message.
pub async fn fresh_postgres_url(test: &str) -> Result<Option<String>, TestDbError> {
    let base = match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            if in_ci() {
                return Err(TestDbError::MissingInCi);
            }
            // Straight to stderr, not `eprintln!`: the test harness would swallow that.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (PostgreSQL half of {test}): {POSTGRES_URL_VAR} is not set; \
                 run scripts/test.sh to test PostgreSQL too"
            );
            return Ok(None);
        }
    };
    // Validates the URL (and keeps its parse errors free of the password).
    PgConnectOptions::from_str(&base).map_err(|e| TestDbError::BadUrl(e.to_string()))?;
    let name = format!("opsbot_test_{}", uuid_like());
    let mut conn = PgConnection::connect(&base).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(Some(with_database(&base, &name)))
}

/// `base` with its database (path) replaced by `name`, keeping the query string.
fn with_database(base: &str, name: &str) -> String {
    let (url, query) = match base.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (base, None),
    };
    let authority_start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match url[authority_start..].find('/') {
        Some(i) => &url[..authority_start + i],
        None => url,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// 16 random lowercase hex digits (valid in an unquoted identifier).
fn uuid_like() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
