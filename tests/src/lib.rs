//! Shared helpers for the end-to-end tests.
pub mod alertmanager;
pub mod bench;
pub mod bot;
pub mod discord_fake;
pub mod pipeline;
pub mod process;
pub mod slack_fake;

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
