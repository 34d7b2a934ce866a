//! `POST /discord/interactions`: where Discord delivers interactions in HTTP mode. The body is
//! size-checked and signature-checked on its raw bytes before anything in it is parsed;
//! refusals answer 401 / 413 (400 for a verified body that is not an interaction), are audited,
//! and run nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::dispatch::{Dispatcher, Interaction};
use super::verify::{Verifier, VerifyError};
use crate::engine::RejectionKind;
use crate::inbound::{self, Refusal};

/// The interactions endpoint path.
pub const PATH: &str = "/discord/interactions";

#[derive(Clone)]
struct Shared {
    dispatcher: Arc<Dispatcher>,
    verifier: Verifier,
}

/// The Discord route, ready to merge into the server's router.
pub fn routes(dispatcher: Arc<Dispatcher>, verifier: Verifier) -> Router {
    Router::new()
        .route(PATH, post(interactions))
        .with_state(Shared {
            dispatcher,
            verifier,
        })
}

async fn interactions(State(s): State<Shared>, req: Request) -> Response {
    let body = match verified(&s, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(interaction) = serde_json::from_slice::<Interaction>(&body) else {
        return malformed(&s, "body is not an interaction");
    };
    match s.dispatcher.interaction(interaction).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => malformed(&s, &e.0),
    }
}

/// Reads and verifies a request; on refusal, audits it and returns the response to send:
/// 401 for every failed check (what Discord expects), 413 for an oversized body.
async fn verified(s: &Shared, req: Request) -> Result<Bytes, Response> {
    match inbound::verified_body(req, &s.verifier).await {
        Ok((_, body)) => Ok(body),
        Err(Refusal::Verify(e)) => {
            s.dispatcher.reject(e.kind(), format!("POST {PATH}: {e}"));
            let status = match e {
                VerifyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNAUTHORIZED,
            };
            Err((status, e.to_string()).into_response())
        }
        Err(Refusal::Unread(unread)) => Err(unread.into_response()),
    }
}

fn malformed(s: &Shared, why: &str) -> Response {
    s.dispatcher
        .reject(RejectionKind::Malformed, format!("POST {PATH}: {why}"));
    (StatusCode::BAD_REQUEST, "malformed interaction").into_response()
}
