//! The HTTP endpoints Slack calls: `POST /slack/commands`, `/slack/interactions`,
//! `/slack/events`. Every request is size-checked and signature-checked on its raw bytes before
//! anything in it is parsed; refusals answer 400 / 401 / 413, are audited, and run nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::dispatch::{Dispatcher, Interaction, SlashCommand};
use super::verify::Verifier;
use crate::engine::RejectionKind;
use crate::inbound::{self, Refusal};

#[derive(Clone)]
struct Shared {
    dispatcher: Arc<Dispatcher>,
    verifier: Verifier,
}

/// The Slack routes, ready to merge into the server's router.
pub fn routes(dispatcher: Arc<Dispatcher>, verifier: Verifier) -> Router {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .with_state(Shared {
            dispatcher,
            verifier,
        })
}

/// Reads and verifies a request; on refusal, audits it and returns the response to send.
async fn verified(
    s: &Shared,
    endpoint: &str,
    req: Request,
) -> Result<(HeaderMap, Bytes), Response> {
    inbound::verified_body(req, &s.verifier)
        .await
        .map_err(|refusal| match refusal {
            Refusal::Verify(e) => {
                s.dispatcher
                    .reject(e.kind(), format!("POST {endpoint}: {e}"));
                (e.status(), e.to_string()).into_response()
            }
            Refusal::Unread(unread) => unread.into_response(),
        })
}

fn malformed(s: &Shared, endpoint: &str, why: &str) -> Response {
    s.dispatcher
        .reject(RejectionKind::Malformed, format!("POST {endpoint}: {why}"));
    (StatusCode::BAD_REQUEST, "malformed request").into_response()
}

async fn commands(State(s): State<Shared>, req: Request) -> Response {
    const EP: &str = "/slack/commands";
    let (_, body) = match verified(&s, EP, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(cmd) = serde_urlencoded::from_bytes::<SlashCommand>(&body) else {
        return malformed(&s, EP, "body is not a slash command form");
    };
    if cmd.ssl_check.as_deref() == Some("1") {
        // Slack checking the endpoint's certificate: nothing to run.
        return StatusCode::OK.into_response();
    }
    match s.dispatcher.command(cmd).await {
        Ok(ack) => axum::Json(ack.to_json()).into_response(),
        Err(e) => malformed(&s, EP, &e.0),
    }
}

#[derive(Deserialize)]
struct PayloadForm {
    payload: String,
}

async fn interactions(State(s): State<Shared>, req: Request) -> Response {
    const EP: &str = "/slack/interactions";
    let (_, body) = match verified(&s, EP, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(form) = serde_urlencoded::from_bytes::<PayloadForm>(&body) else {
        return malformed(&s, EP, "body has no payload field");
    };
    let Ok(ev) = serde_json::from_str::<Interaction>(&form.payload) else {
        return malformed(&s, EP, "payload is not an interaction");
    };
    match s.dispatcher.interaction(ev).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => malformed(&s, EP, &e.0),
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
}

async fn events(State(s): State<Shared>, req: Request) -> Response {
    const EP: &str = "/slack/events";
    let (headers, body) = match verified(&s, EP, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(ev) = serde_json::from_slice::<Event>(&body) else {
        return malformed(&s, EP, "body is not an event");
    };
    match (ev.kind.as_str(), ev.challenge) {
        ("url_verification", Some(challenge)) => {
            axum::Json(serde_json::json!({ "challenge": challenge })).into_response()
        }
        _ => {
            // Retries (X-Slack-Retry-Num) are handled too: Slack retries an event whose first
            // delivery failed (opsbot was restarting, say). One handled before is recognised
            // by its `event_id`.
            if let Some(n) = headers.get("x-slack-retry-num") {
                tracing::debug!(retry = ?n, "Slack event retry");
            }
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) {
                s.dispatcher.event(&body);
            }
            StatusCode::OK.into_response()
        }
    }
}
