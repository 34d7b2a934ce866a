//! The HTTP server of `opsbot serve`: health, readiness and metrics, plus the routes of the chat
//! adapters (Slack, later Discord and Alertmanager), with graceful shutdown.
//!
//! `/readyz` answers 503 (not ready) when the database does not answer or does not take writes
//! (probed on a new connection), a cluster's API server is unreachable, or the [`Backlog`] is
//! over its cap; it answers 200 with `"degraded": true` when the connection pool is saturated or
//! a policy reload was refused (the previous policy is in force; `policy_refused` says why).
//! `problems` lists every reason in words.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

/// How long `/readyz` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Work accepted but not yet handled (the inbox), as `/readyz` sees it: whoever owns the queue
/// sets its length; over the cap the bot is not ready. Cheap to clone; unbounded by default.
#[derive(Debug, Clone)]
pub struct Backlog {
    len: Arc<AtomicUsize>,
    cap: Arc<AtomicUsize>,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog::new(usize::MAX)
    }
}

impl Backlog {
    pub fn new(cap: usize) -> Backlog {
        Backlog {
            len: Arc::new(AtomicUsize::new(0)),
            cap: Arc::new(AtomicUsize::new(cap)),
        }
    }

    pub fn set(&self, len: usize) {
        self.len.store(len, Ordering::Relaxed);
    }

    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    fn json(&self) -> (serde_json::Value, bool) {
        let (len, cap) = (
            self.len.load(Ordering::Relaxed),
            self.cap.load(Ordering::Relaxed),
        );
        let cap_json = (cap != usize::MAX).then_some(cap);
        (json!({ "len": len, "cap": cap_json }), len > cap)
    }
}

#[derive(Clone)]
struct Health {
    engine: Engine,
    backlog: Backlog,
}

/// The routes opsbot always serves, with an unbounded backlog.
pub fn base_router(engine: Engine) -> Router {
    base_router_with(engine, Backlog::default())
}

/// The routes opsbot always serves; `/readyz` watches `backlog`.
pub fn base_router_with(engine: Engine, backlog: Backlog) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Health { engine, backlog })
}

/// Whether `check` finished in time without an error; the error (or the timeout) otherwise.
async fn within<F, E>(check: F) -> Result<(), String>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(READY_TIMEOUT)
        )),
    }
}

async fn readyz(State(Health { engine, backlog }): State<Health>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let store = engine.store();
    let database = match within(store.ping()).await {
        Ok(()) => within(store.probe_write())
            .await
            .map_err(|e| format!("the database does not take writes: {e}")),
        Err(e) => Err(format!("the database does not answer: {e}")),
    };
    let database_ok = database.is_ok();
    problems.extend(database.err());
    let mut clusters = serde_json::Map::new();
    for name in engine.operator().clusters.names() {
        let reachable = match engine.operator().clusters.get(Some(name)) {
            Some((client, _)) => matches!(
                tokio::time::timeout(READY_TIMEOUT, client.apiserver_version()).await,
                Ok(Ok(_))
            ),
            None => false,
        };
        if !reachable {
            problems.push(format!("cluster {name}: the API server is unreachable"));
        }
        clusters.insert(name.to_owned(), reachable.into());
    }
    let (backlog, over_cap) = backlog.json();
    if over_cap {
        problems.push(format!("the backlog is over its cap: {backlog}"));
    }
    let ready = problems.is_empty();
    let pool = store.pool_status();
    if pool.saturated {
        problems.push(format!(
            "the database pool is saturated: all {} connections in use",
            pool.max
        ));
    }
    let policy_refused = engine.policy().refused();
    if let Some(error) = &policy_refused {
        problems.push(format!(
            "the policy file was refused, the previous policy stays in force: {error}"
        ));
    }
    let degraded = ready && !problems.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "degraded": degraded,
        "problems": problems,
        "database": database_ok,
        "pool": pool,
        "backlog": backlog,
        "policy": engine.policy().current().summary(),
        "policy_refused": policy_refused,
        "clusters": clusters,
    });
    (status, axum::Json(body))
}

async fn metrics(State(Health { engine, .. }): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        engine.metrics().render(),
    )
}

/// A running HTTP server.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Binds `listen` (port 0 picks a free port) and serves `router` until [`RunningServer::stop`].
    pub async fn start(listen: SocketAddr, router: Router) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await
        });
        tracing::info!(%addr, "listening");
        Ok(RunningServer { addr, stop, task })
    }

    /// Stops accepting connections, lets open requests finish, and returns.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.cancel();
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
