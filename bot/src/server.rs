//! The HTTP server of `opsbot serve`: health, readiness and metrics, plus the routes of the chat
//! adapters (Slack, later Discord and Alertmanager), with graceful shutdown.

use std::net::SocketAddr;
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

/// The routes opsbot always serves.
pub fn base_router(engine: Engine) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(engine)
}

async fn readyz(State(engine): State<Engine>) -> impl IntoResponse {
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, engine.store().ping()).await,
        Ok(Ok(()))
    );
    let mut clusters = serde_json::Map::new();
    for name in engine.operator().clusters.names() {
        let reachable = match engine.operator().clusters.get(Some(name)) {
            Some((client, _)) => matches!(
                tokio::time::timeout(READY_TIMEOUT, client.apiserver_version()).await,
                Ok(Ok(_))
            ),
            None => false,
        };
        clusters.insert(name.to_owned(), reachable.into());
    }
    let policy = engine.policy().current().summary();
    let ready = database
        && clusters
            .values()
            .all(|v| v == &serde_json::Value::Bool(true));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "database": database,
        "policy": policy,
        "clusters": clusters,
    });
    (status, axum::Json(body))
}

async fn metrics(State(engine): State<Engine>) -> impl IntoResponse {
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
