//! The HTTP endpoints Slack calls: `POST /slack/commands`, `/slack/interactions`,
//! `/slack/events`. Every request is size-checked and signature-checked on its raw bytes before
//! anything in it is parsed; refusals answer 400 / 401 / 413, are audited, and run nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde::Deserialize;

use super::dispatch::{Dispatcher, Interaction, SlashCommand};
use super::verify::{
    MAX_BODY_BYTES, SIGNATURE_HEADER, TIMESTAMP_HEADER, Verifier, VerifyError, unix_now,
};
use crate::engine::RejectionKind;

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
    let (parts, body) = req.into_parts();
    let refuse = |e: VerifyError| {
        s.dispatcher
            .reject(e.kind(), format!("POST {endpoint}: {e}"));
        (e.status(), e.to_string()).into_response()
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(refuse(VerifyError::TooLarge));
    }
    let bytes = match read_limited(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return Err(refuse(VerifyError::TooLarge)),
        Err(ReadError::Broken) => {
            return Err((StatusCode::BAD_REQUEST, "unreadable body").into_response());
        }
    };
    let header_str = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    s.verifier
        .verify(
            header_str(SIGNATURE_HEADER),
            header_str(TIMESTAMP_HEADER),
            &bytes,
            unix_now(),
        )
        .map_err(refuse)?;
    Ok((parts.headers, bytes))
}

enum ReadError {
    TooLarge,
    Broken,
}

async fn read_limited(body: Body, max: usize) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ReadError::Broken)?;
        if buf.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
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
            // opsbot subscribes to no events yet; acknowledge (also Slack's retries, marked by
            // X-Slack-Retry-Num) so Slack does not keep retrying.
            if let Some(n) = headers.get("x-slack-retry-num") {
                tracing::debug!(retry = ?n, "Slack event retry acknowledged");
            }
            StatusCode::OK.into_response()
        }
    }
}
