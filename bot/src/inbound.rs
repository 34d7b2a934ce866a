//! What every signed inbound endpoint (Slack, Discord) does before anything in a request is
//! parsed: the body is read within [`MAX_BODY_BYTES`] (a larger `Content-Length` is refused
//! without reading), the signature is checked on the raw bytes, and the signed timestamp must
//! be within [`MAX_SKEW_SECS`] of now. Each platform brings its own [`Signature`] scheme.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::engine::RejectionKind;
use crate::server::BodyTooSlow;

/// How far a request timestamp may be from now, either way.
pub const MAX_SKEW_SECS: i64 = 5 * 60;
/// Largest body accepted (the platforms' own payloads are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a request was refused. Never carries the expected signature or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed timestamp")]
    BadTimestamp,
    #[error("timestamp {age}s away from now (limit {MAX_SKEW_SECS}s)")]
    Stale { age: i64 },
    #[error("signature does not match")]
    BadSignature,
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

impl VerifyError {
    /// The audit category of this rejection.
    pub fn kind(&self) -> RejectionKind {
        match self {
            VerifyError::MissingHeader(_) | VerifyError::BadTimestamp => RejectionKind::Malformed,
            VerifyError::Stale { .. } => RejectionKind::StaleTimestamp,
            VerifyError::BadSignature => RejectionKind::BadSignature,
            VerifyError::TooLarge => RejectionKind::TooLarge,
        }
    }

    /// The HTTP status to answer with: 400 for malformed requests, 401 for failed
    /// authentication, 413 for oversized bodies.
    pub fn status(&self) -> StatusCode {
        match self {
            VerifyError::MissingHeader(_) | VerifyError::BadTimestamp => StatusCode::BAD_REQUEST,
            VerifyError::Stale { .. } | VerifyError::BadSignature => StatusCode::UNAUTHORIZED,
            VerifyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// The timestamp header's value as unix seconds (at most 12 decimal digits).
pub fn parse_timestamp(timestamp: &str) -> Result<i64, VerifyError> {
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(VerifyError::BadTimestamp);
    }
    timestamp.parse().map_err(|_| VerifyError::BadTimestamp)
}

/// Refuses a (verified) timestamp more than [`MAX_SKEW_SECS`] away from `now`.
pub fn check_fresh(timestamp: i64, now: i64) -> Result<(), VerifyError> {
    let age = now - timestamp;
    if age.abs() > MAX_SKEW_SECS {
        return Err(VerifyError::Stale { age });
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A platform's request-signing scheme: its headers and how a signature is checked. The
/// checks around it are the same for every platform ([`Signature::verify`]).
pub trait Signature {
    const SIGNATURE_HEADER: &'static str;
    const TIMESTAMP_HEADER: &'static str;

    /// Whether `signature` (the header's value, as sent) signs `timestamp` and `body`.
    fn signs(&self, signature: &str, timestamp: &str, body: &[u8]) -> bool;

    /// Verifies `body` against the header values, at `now` (unix seconds): the size, both
    /// headers, a well-formed timestamp, the signature, then the timestamp's age. The signature
    /// is checked before the age, so a forged request learns nothing about the clock.
    fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(VerifyError::TooLarge);
        }
        let timestamp = timestamp.ok_or(VerifyError::MissingHeader(Self::TIMESTAMP_HEADER))?;
        let signature = signature.ok_or(VerifyError::MissingHeader(Self::SIGNATURE_HEADER))?;
        let ts = parse_timestamp(timestamp)?;
        if !self.signs(signature, timestamp, body) {
            return Err(VerifyError::BadSignature);
        }
        check_fresh(ts, now)
    }
}

/// Why a request did not get past the door.
#[derive(Debug)]
pub enum Refusal {
    Verify(VerifyError),
    /// The body was not read whole (not audited: nobody sent a request, and a flood of broken
    /// or trickling connections must not fill the audit log).
    Unread(Unread),
}

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum Unread {
    #[error("unreadable body")]
    Broken,
    #[error("the request body did not arrive in time")]
    TooSlow,
}

impl IntoResponse for Unread {
    /// 400 for a broken body, 408 for one that came too slowly.
    fn into_response(self) -> Response {
        let status = match self {
            Unread::Broken => StatusCode::BAD_REQUEST,
            Unread::TooSlow => StatusCode::REQUEST_TIMEOUT,
        };
        (status, self.to_string()).into_response()
    }
}

/// Reads `req`'s body within the limit and verifies it with `scheme`.
pub async fn verified_body<S: Signature>(
    req: Request,
    scheme: &S,
) -> Result<(HeaderMap, Bytes), Refusal> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Refusal::Verify(VerifyError::TooLarge));
    }
    let bytes = read_limited(body).await?;
    let header_str = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    scheme
        .verify(
            header_str(S::SIGNATURE_HEADER),
            header_str(S::TIMESTAMP_HEADER),
            &bytes,
            unix_now(),
        )
        .map_err(Refusal::Verify)?;
    Ok((parts.headers, bytes))
}

async fn read_limited(body: Body) -> Result<Bytes, Refusal> {
    match http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Refusal::Verify(VerifyError::TooLarge))
        }
        Err(e) if BodyTooSlow::caused(&*e) => Err(Refusal::Unread(Unread::TooSlow)),
        Err(_) => Err(Refusal::Unread(Unread::Broken)),
    }
}
