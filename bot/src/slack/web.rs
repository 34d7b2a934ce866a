//! Slack's Web API through slack-morphism's client, with opsbot's delivery rules on top:
//! `ok:false` errors are logged with the method, HTTP 429 waits for `Retry-After`, transient
//! failures (network, 5xx, Slack's own transient error codes) are retried with exponential
//! backoff, and what still fails comes back as a [`DeliveryError`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slack_morphism::errors::*;
use slack_morphism::prelude::*;

use super::response_url::ResponseUrls;
use super::{RetryPolicy, SlackConfig};
use crate::chat::DeliveryError;

/// The HTTPS (or, for a local fake, plain HTTP) connector used for Slack's Web API.
pub type Connector = SlackClientHyperHttpsConnector;
/// The slack-morphism client opsbot uses.
pub type Client = SlackClient<Connector>;

/// Slack `ok:false` error codes that mean "try again later", not "no".
const TRANSIENT_API_ERRORS: [&str; 6] = [
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// A Web API client for one bot token.
#[derive(Clone)]
pub struct SlackWeb {
    client: Arc<Client>,
    token: SlackApiToken,
    retry: RetryPolicy,
    /// The slash commands' `response_url`s, shared with the dispatcher that remembers them.
    response_urls: ResponseUrls,
}

/// A message posted to a `response_url` (Slack's format: the message plus how to show it).
#[derive(serde::Serialize, Clone)]
struct ResponseUrlMessage {
    #[serde(flatten)]
    content: SlackMessageContent,
    response_type: &'static str,
    replace_original: bool,
}

impl std::fmt::Debug for SlackWeb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackWeb")
            .field("token", &"***")
            .field("retry", &self.retry)
            .finish()
    }
}

/// Builds slack-morphism's client against `api_url` (no trailing slash, e.g.
/// `https://slack.com/api`). Plain `http://` is allowed so tests can use a local fake.
pub fn client(api_url: &str) -> Client {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let connector =
        SlackClientHyperConnector::from(https).with_slack_api_url(api_url.trim_end_matches('/'));
    SlackClient::new(connector)
}

#[derive(serde::Deserialize)]
struct Posted {
    ts: String,
}

#[derive(serde::Deserialize)]
struct GroupsResponse {
    #[serde(default)]
    usergroups: Vec<Group>,
}

#[derive(serde::Deserialize)]
struct Group {
    id: String,
    #[serde(default)]
    users: Vec<String>,
    date_delete: Option<serde_json::Value>,
}

/// A Slack timestamp field that is set: a non-zero number (or numeric string).
fn is_set(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        serde_json::Value::String(s) => s.parse::<f64>().is_ok_and(|f| f != 0.0),
        _ => false,
    }
}

/// What one attempt at a Web API call turned into.
enum Attempt<T> {
    Done(T),
    Refused(String),
    /// `missing_scope`: the scope Slack says is needed.
    MissingScope(String),
    Retry {
        error: String,
        after: Option<Duration>,
    },
}

impl SlackWeb {
    pub fn new(cfg: &SlackConfig) -> Self {
        SlackWeb {
            client: Arc::new(client(&cfg.api_url)),
            token: SlackApiToken::new(cfg.bot_token.clone().into()),
            retry: cfg.retry.clone(),
            response_urls: ResponseUrls::new(
                cfg.response_url_ttl,
                super::response_url::MAX_USES,
                super::response_url::CAPACITY,
            ),
        }
    }

    /// The remembered `response_url`s (shared by every clone of this client).
    pub fn response_urls(&self) -> &ResponseUrls {
        &self.response_urls
    }

    /// Posts `content` for everyone in the channel through a slash command's `response_url`
    /// (no bearer token is sent there), replacing the message posted through it before when
    /// `replace_original`. Errors name the method `response_url`, never the URL.
    pub async fn post_response_url(
        &self,
        url: &str,
        content: SlackMessageContent,
        replace_original: bool,
    ) -> Result<(), DeliveryError> {
        self.respond(url, content, "in_channel", replace_original)
            .await
    }

    /// Shows `content` only to the person whose request `url` belongs to.
    pub async fn post_response_url_privately(
        &self,
        url: &str,
        content: SlackMessageContent,
    ) -> Result<(), DeliveryError> {
        self.respond(url, content, "ephemeral", false).await
    }

    async fn respond(
        &self,
        url: &str,
        content: SlackMessageContent,
        response_type: &'static str,
        replace_original: bool,
    ) -> Result<(), DeliveryError> {
        const METHOD: &str = "response_url";
        let refused = |error: &str| DeliveryError::Refused {
            method: METHOD.to_owned(),
            error: error.to_owned(),
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(refused("not an http(s) URL"));
        }
        let url: SlackResponseUrl = serde_json::from_value(serde_json::Value::String(url.into()))
            .map_err(|_| refused("not a valid URL"))?;
        let body = ResponseUrlMessage {
            content,
            response_type,
            replace_original,
        };
        let _: serde_json::Value = self
            .call(METHOD, |client, _token| {
                let url = url.0.clone();
                let body = body.clone();
                async move {
                    let span = tracing::debug_span!("Slack response_url");
                    let context = SlackClientApiCallContext {
                        rate_control_params: None,
                        token: None,
                        tracing_span: &span,
                        is_sensitive_url: true,
                    };
                    client
                        .http_api
                        .connector
                        .http_post_uri(url, &body, context)
                        .await
                }
            })
            .await?;
        Ok(())
    }

    /// The underlying client (Socket Mode runs on it).
    pub fn client(&self) -> Arc<Client> {
        self.client.clone()
    }

    /// `chat.postMessage`; returns the message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        content: SlackMessageContent,
    ) -> Result<String, DeliveryError> {
        let req = SlackApiChatPostMessageRequest::new(channel.to_owned().into(), content);
        // Only `ts` is needed from the answer; it is read leniently so an answer whose other
        // fields do not match slack-morphism's model still counts as delivered.
        let res: Posted = self
            .call("chat.postMessage", |client, token| {
                let req = req.clone();
                async move {
                    client
                        .open_session(&token)
                        .http_session_api
                        .http_post("chat.postMessage", &req, None)
                        .await
                }
            })
            .await?;
        Ok(res.ts)
    }

    /// `chat.postEphemeral`: `content` in `channel`, visible to `user` (a Slack user id) only.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        content: SlackMessageContent,
    ) -> Result<(), DeliveryError> {
        let req = SlackApiChatPostEphemeralRequest::new(
            channel.to_owned().into(),
            user.to_owned().into(),
            content,
        );
        let _: serde_json::Value = self
            .call("chat.postEphemeral", |client, token| {
                let req = req.clone();
                async move {
                    client
                        .open_session(&token)
                        .http_session_api
                        .http_post("chat.postEphemeral", &req, None)
                        .await
                }
            })
            .await?;
        Ok(())
    }

    /// `chat.update` of the message `ts` in `channel`.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        content: SlackMessageContent,
    ) -> Result<(), DeliveryError> {
        let req = SlackApiChatUpdateRequest::new(
            channel.to_owned().into(),
            content,
            ts.to_owned().into(),
        );
        let _: serde_json::Value = self
            .call("chat.update", |client, token| {
                let req = req.clone();
                async move {
                    client
                        .open_session(&token)
                        .http_session_api
                        .http_post("chat.update", &req, None)
                        .await
                }
            })
            .await?;
        Ok(())
    }

    /// `usergroups.list` with `include_users=true`: every enabled user group with its members,
    /// as (group id, user ids). Parsed leniently (only the fields opsbot uses), since Slack's
    /// answer carries many fields whose types vary (`date_delete` is `0` for live groups).
    pub async fn user_groups(&self) -> Result<Vec<(String, Vec<String>)>, DeliveryError> {
        let res: GroupsResponse = self
            .call("usergroups.list", |client, token| async move {
                let params = vec![("include_users", Some("true"))];
                client
                    .open_session(&token)
                    .http_session_api
                    .http_get("usergroups.list", &params, None)
                    .await
            })
            .await?;
        Ok(res
            .usergroups
            .into_iter()
            .filter(|g| !g.date_delete.as_ref().is_some_and(is_set))
            .map(|g| (g.id, g.users))
            .collect())
    }

    /// Any Web API method with a JSON body, answered as JSON (channel automation).
    pub async fn api(
        &self,
        method: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, DeliveryError> {
        let method_name = method.to_owned();
        self.call(method, |client, token| {
            let (body, method) = (body.clone(), method_name.clone());
            async move {
                client
                    .open_session(&token)
                    .http_session_api
                    .http_post(&method, &body, None)
                    .await
            }
        })
        .await
    }

    /// The members of a user group (`usergroups.users.list`).
    pub async fn group_members(&self, group: &str) -> Result<Vec<String>, DeliveryError> {
        let group = group.to_owned();
        let res: serde_json::Value = self
            .call("usergroups.users.list", |client, token| {
                let group = group.clone();
                async move {
                    let params = vec![("usergroup", Some(group.as_str()))];
                    client
                        .open_session(&token)
                        .http_session_api
                        .http_get("usergroups.users.list", &params, None)
                        .await
                }
            })
            .await?;
        Ok(res["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Runs one Web API method with the retry policy.
    async fn call<T, F, Fut>(&self, method: &str, f: F) -> Result<T, DeliveryError>
    where
        F: Fn(Arc<Client>, SlackApiToken) -> Fut,
        Fut: Future<Output = ClientResult<T>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let call = f(self.client.clone(), self.token.clone());
            let outcome = match tokio::time::timeout(self.retry.attempt_timeout, call).await {
                Ok(result) => classify(result),
                Err(_) => Attempt::Retry {
                    error: format!(
                        "no answer within {} ms",
                        self.retry.attempt_timeout.as_millis()
                    ),
                    after: None,
                },
            };
            match outcome {
                Attempt::Done(v) => return Ok(v),
                Attempt::Refused(error) => {
                    tracing::warn!(method, error = %error, "Slack Web API refused the call");
                    return Err(DeliveryError::Refused {
                        method: method.to_owned(),
                        error,
                    });
                }
                Attempt::MissingScope(needed) => {
                    tracing::warn!(method, needed = %needed, "the Slack app lacks a scope");
                    return Err(DeliveryError::NotPermitted {
                        method: method.to_owned(),
                        grant: format!("the Slack scope `{needed}`"),
                    });
                }
                Attempt::Retry { error, after } => {
                    if attempt >= self.retry.max_attempts {
                        tracing::warn!(method, attempt, error = %error, "Slack Web API call failed, giving up");
                        return Err(DeliveryError::Failed {
                            method: method.to_owned(),
                            error,
                        });
                    }
                    let wait = match after {
                        Some(after) => after.min(self.retry.max_retry_after),
                        None => self.retry.backoff(attempt),
                    };
                    tracing::info!(method, attempt, error = %error, wait_ms = wait.as_millis() as u64, "Slack Web API call failed, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

fn classify<T>(result: ClientResult<T>) -> Attempt<T> {
    match result {
        Ok(v) => Attempt::Done(v),
        Err(SlackClientError::ApiError(e)) => {
            if e.code == "missing_scope" {
                let needed = e
                    .http_response_body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                    .and_then(|b| b.get("needed").and_then(|n| n.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "a scope it lacks".to_owned());
                Attempt::MissingScope(needed)
            } else if TRANSIENT_API_ERRORS.contains(&e.code.as_str()) {
                Attempt::Retry {
                    error: e.code,
                    after: None,
                }
            } else {
                Attempt::Refused(e.code)
            }
        }
        Err(SlackClientError::RateLimitError(e)) => Attempt::Retry {
            error: "HTTP 429 rate limited".to_owned(),
            // A 429 without Retry-After still waits at least a second.
            after: Some(e.retry_after.unwrap_or(Duration::from_secs(1))),
        },
        Err(SlackClientError::HttpError(e)) => {
            let status = e.status_code;
            if status.is_server_error() || status == http::StatusCode::REQUEST_TIMEOUT {
                Attempt::Retry {
                    error: format!("HTTP {status}"),
                    after: None,
                }
            } else {
                Attempt::Refused(format!("HTTP {status}"))
            }
        }
        Err(SlackClientError::ProtocolError(e)) => {
            // Slack answered something that is not the expected JSON: not worth retrying.
            Attempt::Refused(format!("unexpected response: {}", e.json_error))
        }
        Err(e @ SlackClientError::HttpProtocolError(_))
        | Err(e @ SlackClientError::EndOfStream(_))
        | Err(e @ SlackClientError::SystemError(_))
        | Err(e @ SlackClientError::SocketModeProtocolError(_)) => Attempt::Retry {
            error: short(&e.to_string()),
            after: None,
        },
    }
}

/// Error texts from the HTTP stack can be long; keep the start.
fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): exponential, capped, with jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        // Up to 25 % jitter, so replicas do not retry in lockstep.
        let jitter = capped.mul_f64(rand::random::<f64>() * 0.25);
        capped + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        let b1 = p.backoff(1);
        assert!(b1 >= Duration::from_millis(100) && b1 <= Duration::from_millis(125));
        let b3 = p.backoff(3);
        assert!(b3 >= Duration::from_millis(400) && b3 <= Duration::from_millis(500));
        let b30 = p.backoff(30);
        assert!(b30 >= Duration::from_secs(1) && b30 <= Duration::from_millis(1250));
    }

    #[test]
    fn errors_are_classified() {
        let api = |code: &str| -> ClientResult<()> {
            Err(SlackClientError::ApiError(SlackClientApiError::new(
                code.to_owned(),
            )))
        };
        assert!(
            matches!(classify(api("channel_not_found")), Attempt::Refused(e) if e == "channel_not_found")
        );
        assert!(matches!(
            classify(api("internal_error")),
            Attempt::Retry { .. }
        ));
        let rl: ClientResult<()> = Err(SlackClientError::RateLimitError(
            SlackRateLimitError::new().with_retry_after(Duration::from_secs(7)),
        ));
        assert!(
            matches!(classify(rl), Attempt::Retry { after: Some(d), .. } if d == Duration::from_secs(7))
        );
        let http = |s: u16| -> ClientResult<()> {
            Err(SlackClientError::HttpError(SlackClientHttpError::new(
                http::StatusCode::from_u16(s).unwrap(),
            )))
        };
        assert!(matches!(classify(http(503)), Attempt::Retry { .. }));
        assert!(matches!(classify(http(404)), Attempt::Refused(_)));
    }

    #[test]
    fn debug_hides_the_token() {
        let cfg = SlackConfig::new("xoxb-very-secret", "sig");
        let web = SlackWeb::new(&cfg);
        assert!(!format!("{web:?}").contains("very-secret"));
    }
}
