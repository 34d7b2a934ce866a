//! `POST /alertmanager` and `/alertmanager/{receiver}`: the webhook Alertmanager calls.
//!
//! Answers chosen for what Alertmanager does with them: 200 once stored, 401 for missing or
//! wrong credentials, 413 past 4 MiB, 400 for a payload it should drop, 503 when the database
//! is down (it retries 5xx). Credentials are compared in constant time and never logged.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::payload::Notification;
use super::{Alerts, PLATFORM};
use crate::config::AlertsConfig;
use crate::engine::RejectionKind;
use crate::inbound::Unread;
use crate::server::BodyTooSlow;

/// Largest accepted body.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone)]
struct Webhook {
    alerts: Alerts,
    /// The `Authorization` header values accepted (bearer and / or basic).
    accepted: Vec<String>,
}

/// The webhook routes, to merge into the server.
pub fn router(alerts: Alerts) -> Router {
    let accepted = accepted_headers(alerts.config());
    let state = Webhook { alerts, accepted };
    Router::new()
        .route("/alertmanager", post(webhook))
        .route("/alertmanager/{receiver}", post(webhook_for))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn accepted_headers(config: &AlertsConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = &config.webhook_token {
        out.push(format!("Bearer {}", t.expose()));
    }
    if let Some(b) = &config.webhook_basic_auth {
        let raw = format!("{}:{}", b.username, b.password.expose());
        out.push(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ));
    }
    out
}

/// Whether the request carries one of the accepted credentials (constant time per candidate).
fn authorized(headers: &HeaderMap, accepted: &[String]) -> bool {
    let Some(given) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let given = given.as_bytes();
    accepted
        .iter()
        .fold(false, |ok, a| ok | bool::from(a.as_bytes().ct_eq(given)))
}

async fn webhook(State(w): State<Webhook>, req: Request) -> Response {
    handle(w, None, req).await
}

async fn webhook_for(
    State(w): State<Webhook>,
    Path(receiver): Path<String>,
    req: Request,
) -> Response {
    handle(w, Some(receiver), req).await
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "status": message }))).into_response()
}

/// Checks the credentials before it reads the body: without them, not a byte of it is read.
async fn handle(w: Webhook, receiver: Option<String>, req: Request) -> Response {
    let engine = &w.alerts.inner.engine;
    let headers = req.headers();
    if !authorized(headers, &w.accepted) {
        let why = if headers.contains_key(header::AUTHORIZATION) {
            "wrong webhook credentials"
        } else {
            "no webhook credentials"
        };
        engine
            .reject(PLATFORM, RejectionKind::Unauthorized, why)
            .await;
        return answer(StatusCode::UNAUTHORIZED, why);
    }
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let why = format!("body over {MAX_BODY} bytes");
            engine.reject(PLATFORM, RejectionKind::TooLarge, &why).await;
            return answer(StatusCode::PAYLOAD_TOO_LARGE, &why);
        }
        Err(e) if BodyTooSlow::caused(&e) => return Unread::TooSlow.into_response(),
        Err(e) => {
            engine
                .reject(PLATFORM, RejectionKind::Malformed, &e.body_text())
                .await;
            return answer(e.status(), "unreadable body");
        }
    };
    let mut n = match Notification::parse(&body) {
        Ok(n) => n,
        Err(e) => {
            let why = e.to_string();
            engine
                .reject(PLATFORM, RejectionKind::Malformed, &why)
                .await;
            return answer(StatusCode::BAD_REQUEST, &why);
        }
    };
    if n.receiver.is_empty()
        && let Some(r) = receiver
    {
        n.receiver = r;
    }
    match w.alerts.intake(&n).await {
        Ok(intake) => answer(
            StatusCode::OK,
            if intake.changed {
                "stored"
            } else {
                "unchanged"
            },
        ),
        Err(e) => {
            tracing::error!(error = %e, group = %n.group_key, "alert notification not taken");
            answer(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}
