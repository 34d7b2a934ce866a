//! Discord's REST API: a small client on hyper with Discord's rate limits done in-process.
//!
//! Why not serenity's `Http`: it takes another base URL (a fake in tests) only with its own
//! ratelimiter switched off, so the code that paces and retries in production would not be the
//! code the tests run. This client is the one path for both:
//!
//! - **Buckets**: every answer's `X-RateLimit-Bucket`, `-Remaining` and `-Reset-After` are
//!   remembered per route (method + path with its major parameter); a request on a route whose
//!   bucket is empty waits for the reset instead of earning a 429.
//! - **Global**: a 429 with `global: true` (or `X-RateLimit-Global`) holds every request.
//! - **429**: waits `retry_after` (seconds, fractional; capped) and tries again.
//! - **Transient failures** (network, timeouts, 5xx) are retried with exponential backoff, and
//!   so is a 404 `10008 Unknown Message` / `10015 Unknown Webhook` when a deferred response is
//!   filled or removed (`fill_deferred_response`, `delete_original`): the answer can reach
//!   Discord before the deferral does (over HTTP the deferral is the response body, which
//!   Discord takes on its own time). Other calls on a message that is gone are refused at once.
//! - Anything else is a refusal carrying Discord's JSON error code (`10062 Unknown
//!   interaction`, `50001 Missing Access`), logged with the call's name — never its path, which
//!   may hold an interaction token. A call made with [`DiscordRest::call_needing`] turns a 403
//!   `50013 Missing Permissions` into [`DeliveryError::NotPermitted`] naming the permission it
//!   needs, and `50001 Missing Access` into one naming View Channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;

use crate::chat::DeliveryError;
use crate::slack::RetryPolicy;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// How long one HTTP exchange may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Routes remembered before idle buckets are forgotten.
const MAX_ROUTES: usize = 4096;

/// Whether a call carries the bot token. Interaction and webhook-token routes are authorised by
/// the token in their path and get none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Bot,
    None,
}

/// One REST call: what to log, where it goes, and which rate-limit route it counts against.
#[derive(Debug, Clone)]
pub struct Call {
    /// A name for logs and errors, e.g. `edit_original` (never the path).
    pub name: &'static str,
    pub method: Method,
    /// The path under the API base, e.g. `/channels/123/messages`.
    pub path: String,
    /// Discord's rate-limit route: method, path template and the major parameter.
    pub route: String,
    pub auth: Auth,
    pub body: Option<Value>,
}

/// A REST client for one application and bot token.
#[derive(Clone)]
pub struct DiscordRest {
    http: Client<Https, Full<Bytes>>,
    base: String,
    token: Arc<str>,
    retry: RetryPolicy,
    limits: Arc<Mutex<Limits>>,
}

impl std::fmt::Debug for DiscordRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordRest")
            .field("base", &self.base)
            .field("token", &"***")
            .field("retry", &self.retry)
            .finish()
    }
}

#[derive(Default)]
struct Limits {
    /// Route → Discord's bucket id.
    routes: HashMap<String, String>,
    /// Bucket id + major parameter → state.
    buckets: HashMap<String, Bucket>,
    /// Every request waits until then (a global 429).
    global_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    remaining: u64,
    reset: Instant,
}

impl Limits {
    fn bucket_key(&self, route: &str) -> Option<String> {
        self.routes.get(route).map(|b| format!("{b}|{route}"))
    }

    /// When the next request on `route` may go; takes one from its bucket if it may go now.
    /// The global limit holds only calls with the bot token (`bot`): interaction callbacks
    /// and webhooks (with the interaction's token) are not under it.
    fn take(&mut self, route: &str, bot: bool, now: Instant) -> Option<Instant> {
        if let Some(until) = self.global_until {
            if until <= now {
                self.global_until = None;
            } else if bot {
                return Some(until);
            }
        }
        let key = self.bucket_key(route)?;
        let bucket = self.buckets.get_mut(&key)?;
        if bucket.reset <= now {
            return None;
        }
        if bucket.remaining == 0 {
            return Some(bucket.reset);
        }
        bucket.remaining -= 1;
        None
    }

    fn learn(&mut self, route: &str, headers: &HeaderMap, now: Instant) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(bucket) = header("x-ratelimit-bucket") else {
            return;
        };
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(seconds);
        if self.routes.len() >= MAX_ROUTES {
            self.buckets.retain(|_, b| b.reset > now);
            self.routes.clear();
        }
        self.routes.insert(route.to_owned(), bucket.to_owned());
        if let (Some(remaining), Some(after)) = (remaining, reset_after) {
            let key = format!("{bucket}|{route}");
            self.buckets.insert(
                key,
                Bucket {
                    remaining,
                    reset: now + after,
                },
            );
        }
    }
}

/// Fractional seconds (`"1.337"`) as a duration; negative, huge or garbage values are none.
fn seconds(v: &str) -> Option<Duration> {
    let s: f64 = v.trim().parse().ok()?;
    (s.is_finite() && (0.0..1e7).contains(&s)).then(|| Duration::from_secs_f64(s))
}

/// Discord's JSON error code for a permission the bot lacks.
pub const MISSING_PERMISSIONS: u64 = 50013;
/// Discord's JSON error code for a channel or server the bot cannot see.
pub const MISSING_ACCESS: u64 = 50001;
/// `10008 Unknown Message`.
const UNKNOWN_MESSAGE: u64 = 10008;
/// `10015 Unknown Webhook`.
const UNKNOWN_WEBHOOK: u64 = 10015;
/// What a 403 `50001 Missing Access` asks for.
pub const VIEW_CHANNEL_GRANT: &str = "the View Channel permission";

/// What one attempt turned into.
enum Attempt {
    Done(Value),
    Refused {
        status: StatusCode,
        code: Option<u64>,
        error: String,
    },
    Retry {
        error: String,
        after: Option<Duration>,
    },
}

impl DiscordRest {
    /// A client against `base` (e.g. `https://discord.com/api/v10`; plain `http://` for a local
    /// fake) with the bot token.
    pub fn new(base: &str, token: &str, retry: RetryPolicy) -> Self {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        DiscordRest {
            http: Client::builder(TokioExecutor::new()).build(https),
            base: base.trim_end_matches('/').to_owned(),
            token: token.into(),
            retry,
            limits: Arc::new(Mutex::new(Limits::default())),
        }
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `call`, waiting for its bucket and retrying as the module docs say. Answers with
    /// no body (204) come back as `Value::Null`.
    pub async fn call(&self, call: &Call) -> Result<Value, DeliveryError> {
        self.run(call, None).await
    }

    /// As [`DiscordRest::call`], for a call that needs a permission: Discord's 403 `50013
    /// Missing Permissions` comes back as [`DeliveryError::NotPermitted`] with `grant` (e.g.
    /// "the Manage Channels permission"), and 403 `50001 Missing Access` as one naming View
    /// Channel.
    pub async fn call_needing(&self, call: &Call, grant: &str) -> Result<Value, DeliveryError> {
        self.run(call, Some(grant)).await
    }

    async fn run(&self, call: &Call, grant: Option<&str>) -> Result<Value, DeliveryError> {
        let mut last_error = String::new();
        for attempt in 0..self.retry.max_attempts.max(1) {
            loop {
                let bot = matches!(call.auth, Auth::Bot);
                let wait = self.limits().take(&call.route, bot, Instant::now());
                match wait {
                    Some(until) => {
                        tracing::debug!(call = call.name, "waiting for the rate-limit bucket");
                        tokio::time::sleep_until(until).await;
                    }
                    None => break,
                }
            }
            match self.attempt(call).await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Refused {
                    status,
                    code,
                    error,
                } => {
                    tracing::warn!(call = call.name, error = %error, "Discord refused a call");
                    let method = call.name.to_owned();
                    return Err(match (grant, status, code) {
                        (Some(grant), StatusCode::FORBIDDEN, Some(MISSING_PERMISSIONS)) => {
                            DeliveryError::NotPermitted {
                                method,
                                grant: grant.to_owned(),
                            }
                        }
                        (Some(_), StatusCode::FORBIDDEN, Some(MISSING_ACCESS)) => {
                            DeliveryError::NotPermitted {
                                method,
                                grant: VIEW_CHANNEL_GRANT.to_owned(),
                            }
                        }
                        _ => DeliveryError::Refused { method, error },
                    });
                }
                Attempt::Retry { error, after } => {
                    let backoff = self
                        .retry
                        .base_backoff
                        .saturating_mul(1 << attempt.min(16))
                        .min(self.retry.max_backoff);
                    let wait = after
                        .map(|a| a.min(self.retry.max_retry_after))
                        .unwrap_or(backoff);
                    tracing::info!(call = call.name, attempt, error = %error, wait_ms = wait.as_millis() as u64, "Discord call failed; retrying");
                    last_error = error;
                    if attempt + 1 < self.retry.max_attempts {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Err(DeliveryError::Failed {
            method: call.name.to_owned(),
            error: last_error,
        })
    }

    async fn attempt(&self, call: &Call) -> Attempt {
        let body = call
            .body
            .as_ref()
            .map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default()))
            .unwrap_or_default();
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{}", self.base, call.path))
            .header(
                http::header::USER_AGENT,
                "DiscordBot (https://github.com/opsbot, 0.1)",
            );
        if call.body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        if call.auth == Auth::Bot {
            req = req.header(http::header::AUTHORIZATION, format!("Bot {}", self.token));
        }
        let Ok(req) = req.body(Full::new(body)) else {
            return Attempt::Refused {
                status: StatusCode::BAD_REQUEST,
                code: None,
                error: "the request could not be built".to_owned(),
            };
        };
        let res = match tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                return Attempt::Retry {
                    error: format!("network: {}", error_chain(&e)),
                    after: None,
                };
            }
            Err(_) => {
                return Attempt::Retry {
                    error: "timed out".to_owned(),
                    after: None,
                };
            }
        };
        let status = res.status();
        let headers = res.headers().clone();
        self.limits().learn(&call.route, &headers, Instant::now());
        let bytes = match http_body_util::Limited::new(res.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Attempt::Retry {
                    error: format!("HTTP {}: unreadable answer", status.as_u16()),
                    after: None,
                };
            }
        };
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let after = json["retry_after"]
                .as_f64()
                .map(|s| s.to_string())
                .as_deref()
                .and_then(seconds)
                .or_else(|| {
                    headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(seconds)
                })
                .unwrap_or(Duration::from_secs(1));
            let global = json["global"].as_bool() == Some(true)
                || headers.contains_key("x-ratelimit-global");
            if global {
                // Capped as every wait is: a huge `retry_after` must not stall every call.
                let hold = after.min(self.retry.max_retry_after);
                self.limits().global_until = Some(Instant::now() + hold);
            }
            return Attempt::Retry {
                error: format!(
                    "HTTP 429 ({}rate limited for {:.3}s)",
                    if global { "globally " } else { "" },
                    after.as_secs_f64()
                ),
                after: Some(after),
            };
        }
        if status.is_server_error() {
            return Attempt::Retry {
                error: format!("HTTP {}", status.as_u16()),
                after: None,
            };
        }
        let deferral_not_there_yet = status == StatusCode::NOT_FOUND
            && matches!(call.name, "delete_original" | super::sink::FILL_DEFERRED)
            && matches!(
                json["code"].as_u64(),
                Some(UNKNOWN_MESSAGE | UNKNOWN_WEBHOOK)
            );
        if deferral_not_there_yet {
            return Attempt::Retry {
                error: describe_error(status, &json),
                after: None,
            };
        }
        if !status.is_success() {
            return Attempt::Refused {
                status,
                code: json["code"].as_u64(),
                error: describe_error(status, &json),
            };
        }
        Attempt::Done(json)
    }
}

/// `HTTP 404: 10062 Unknown interaction` from Discord's error body.
fn describe_error(status: StatusCode, json: &Value) -> String {
    let code = json["code"].as_u64();
    let message: String = json["message"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    match code {
        Some(code) => format!("HTTP {}: {code} {message}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_empty_bucket_holds_its_route_until_the_reset() {
        let mut l = Limits::default();
        let now = Instant::now();
        assert_eq!(l.take("POST /channels/1/messages", true, now), None);
        l.learn(
            "POST /channels/1/messages",
            &headers(&[
                ("x-ratelimit-bucket", "abcd"),
                ("x-ratelimit-remaining", "1"),
                ("x-ratelimit-reset-after", "2.5"),
            ]),
            now,
        );
        // One left: it goes and empties the bucket; the next waits 2.5s; another channel (a
        // different major parameter) does not.
        assert_eq!(l.take("POST /channels/1/messages", true, now), None);
        assert_eq!(
            l.take("POST /channels/1/messages", true, now),
            Some(now + Duration::from_millis(2500))
        );
        assert_eq!(l.take("POST /channels/2/messages", true, now), None);
        // After the reset it goes again.
        let later = now + Duration::from_secs(3);
        assert_eq!(l.take("POST /channels/1/messages", true, later), None);
    }

    #[test]
    fn a_global_limit_holds_every_bot_route_and_no_interaction_route() {
        let mut l = Limits::default();
        let now = Instant::now();
        l.global_until = Some(now + Duration::from_secs(1));
        assert_eq!(l.take("any", true, now), Some(now + Duration::from_secs(1)));
        // Interaction callbacks and webhooks (their own token) are not under it.
        assert_eq!(l.take("POST /interactions/1/t/callback", false, now), None);
        assert_eq!(l.take("any", true, now + Duration::from_secs(2)), None);
        assert!(l.global_until.is_none());
    }

    #[test]
    fn seconds_are_fractional_and_sane() {
        assert_eq!(seconds("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("NaN"), None);
        assert_eq!(seconds("1e30"), None);
        assert_eq!(seconds("x"), None);
    }

    #[test]
    fn errors_name_discords_code() {
        let json = serde_json::json!({"code": 10062, "message": "Unknown interaction"});
        assert_eq!(
            describe_error(StatusCode::NOT_FOUND, &json),
            "HTTP 404: 10062 Unknown interaction"
        );
        assert_eq!(
            describe_error(StatusCode::FORBIDDEN, &Value::Null),
            "HTTP 403"
        );
    }
}
