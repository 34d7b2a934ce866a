//! The HTTP server of `opsbot serve`: health, readiness and metrics, beside the routes of the
//! chat adapters (Slack, Discord) and the Alertmanager webhook. [`RunningServer`] serves them
//! with limits on slow clients and open connections ([`crate::config::HttpLimits`]), and stops
//! gracefully.
//!
//! `/readyz` answers 503 (not ready) when the database does not answer or does not take writes
//! (probed on a new connection) or the requests in flight are at the engine's cap (new ones are
//! refused as busy); it answers 200 with `"degraded": true` when a cluster's API server is
//! unreachable, the connection pool is saturated, an adapter reports trouble with its
//! connection ([`Engine::set_trouble`]: Slack Socket Mode not open) or a policy reload was
//! refused (the previous policy is in force; `policy_refused` says why). `problems` lists every
//! reason in words.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::engine::Engine;

mod conn;

pub use conn::{BodyTooSlow, RunningServer};

/// How long `/readyz` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Health {
    engine: Engine,
}

/// The routes opsbot always serves.
pub fn base_router(engine: Engine) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Health { engine })
}

/// What `check` answered in time; the error (or the timeout) otherwise.
async fn within<F, T, E>(check: F) -> Result<T, String>
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(READY_TIMEOUT)
        )),
    }
}

async fn readyz(State(Health { engine }): State<Health>) -> impl IntoResponse {
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
    // Requests taken and not answered; at the cap, new ones are refused as busy.
    let (in_flight, cap) = engine.in_flight();
    let open = within(store.open_inbox_count()).await.ok();
    let backlog = json!({ "len": in_flight, "cap": cap, "open_in_inbox": open });
    if in_flight >= cap {
        problems.push(format!(
            "the backlog is at its cap: {in_flight} requests in flight, new ones are refused as busy"
        ));
    }
    let ready = problems.is_empty();
    // An unreachable API server degrades, it does not take the pod out of the Service: every
    // replica would go at once, and with them the alert webhook and incidents, when an outage
    // needs them most.
    // Probed at once: however many hang, the answer comes within the probe's timeout.
    let operator = engine.operator();
    let names: Vec<&str> = operator.clusters.names().collect();
    let reachable = futures::future::join_all(names.iter().map(|name| async move {
        match operator.clusters.get(Some(name)) {
            Some((client, _)) => matches!(
                tokio::time::timeout(READY_TIMEOUT, client.apiserver_version()).await,
                Ok(Ok(_))
            ),
            None => false,
        }
    }))
    .await;
    let mut clusters = serde_json::Map::new();
    for (name, reachable) in names.into_iter().zip(reachable) {
        if !reachable {
            problems.push(format!("cluster {name}: the API server is unreachable"));
        }
        clusters.insert(name.to_owned(), reachable.into());
    }
    let pool = store.pool_status();
    if pool.saturated {
        problems.push(format!(
            "the database pool is saturated: all {} connections in use",
            pool.max
        ));
    }
    problems.extend(engine.troubles());
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
