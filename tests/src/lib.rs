//! Shared helpers for the end-to-end tests.
pub mod alertmanager;
pub mod bench;
pub mod bot;
pub mod discord_fake;
pub mod pipeline;
pub mod process;
pub mod slack_fake;

/// Whether the tests run in CI (`CI=true`): there, a peer that is missing (PostgreSQL,
/// Alertmanager, kubectl) fails the test instead of skipping it.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Runs `$body` (an async fn taking a [`bot::Db`] and a database name) as two tests in a module
/// named `$name`: `sqlite` and `postgres`. `$prefix` keeps the PostgreSQL database names of
/// different test binaries apart (each test gets a fresh database of that name).
#[macro_export]
macro_rules! both_databases {
    ($prefix:literal, $name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let body = $body;
                body(
                    $crate::bot::Db::Sqlite,
                    concat!($prefix, stringify!($name), "_sqlite"),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let body = $body;
                body(
                    $crate::bot::Db::Postgres,
                    concat!($prefix, stringify!($name)),
                )
                .await;
            }
        }
    };
}

/// Polls `probe` until `done` holds for what it returns, and returns that. Fails the test with
/// `what` and the last value seen when `limit` passes first: a wait is itself an assertion.
pub async fn eventually<T, F>(
    limit: std::time::Duration,
    what: &str,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: std::fmt::Debug,
    F: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}; last seen: {value:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::eventually;

    #[tokio::test]
    async fn eventually_returns_the_first_value_that_is_done() {
        let polls = AtomicU32::new(0);
        let probe = || async { polls.fetch_add(1, Ordering::SeqCst) + 1 };
        let got = eventually(Duration::from_secs(5), "three polls", probe, |n| *n >= 3).await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "not within 50ms: a value that never comes; last seen: 0")]
    async fn eventually_fails_the_test_at_its_limit() {
        let probe = || async { 0 };
        eventually(
            Duration::from_millis(50),
            "a value that never comes",
            probe,
            |n| *n > 0,
        )
        .await;
    }
}
