//! Alertmanager's API v2, for silences: `POST /api/v2/silences`, `DELETE
//! /api/v2/silence/{id}`. The configured Alertmanagers are one HA cluster (silences gossip
//! between members), so each call is tried on them in order until one answers.

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::matcher::ApiMatcher;
use crate::config::AlertmanagerApi;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AmError {
    #[error("no Alertmanager is configured (alerts.alertmanagers)")]
    NoneConfigured,
    #[error("no Alertmanager answered: {0}")]
    Unreachable(String),
    #[error("Alertmanager refused: {0}")]
    Refused(String),
}

/// A client for the configured Alertmanagers.
#[derive(Clone)]
pub struct AmClient {
    apis: Vec<AlertmanagerApi>,
    http: reqwest::Client,
}

/// A silence as Alertmanager's API v2 lists it (`gettableSilence`); unknown fields ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<ApiMatcher>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "createdBy", default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
    pub status: SilenceStatus,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SilenceStatus {
    /// `active`, `pending` or `expired`.
    pub state: String,
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

impl AmClient {
    pub fn new(apis: Vec<AlertmanagerApi>) -> AmClient {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        AmClient { apis, http }
    }

    fn request(
        &self,
        api: &AlertmanagerApi,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", api.url));
        match (&api.bearer_token, &api.basic_auth) {
            (Some(t), _) => req.bearer_auth(t.expose()),
            (None, Some(b)) => req.basic_auth(&b.username, Some(b.password.expose())),
            (None, None) => req,
        }
    }

    /// Sends the request built by `build` to each Alertmanager until one answers; a 4xx is a
    /// refusal (the others would say the same), a network error or 5xx tries the next one.
    async fn first_answer(
        &self,
        build: impl Fn(&AlertmanagerApi) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AmError> {
        if self.apis.is_empty() {
            return Err(AmError::NoneConfigured);
        }
        let mut last = String::new();
        for api in &self.apis {
            match build(api).send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    let body: String = body.chars().take(300).collect();
                    return Err(AmError::Refused(format!("{status}: {}", body.trim())));
                }
                Ok(r) => {
                    last = format!("{}: HTTP {}", crate::config::mask_url(&api.url), r.status())
                }
                Err(e) => {
                    last = format!("{}: {}", crate::config::mask_url(&api.url), e.without_url())
                }
            }
        }
        Err(AmError::Unreachable(last))
    }

    /// Creates a silence and returns its id.
    pub async fn create_silence(
        &self,
        matchers: &[ApiMatcher],
        until: Timestamp,
        created_by: &str,
        comment: &str,
    ) -> Result<String, AmError> {
        let body = json!({
            "matchers": matchers,
            "startsAt": Timestamp::now().to_string(),
            "endsAt": until.to_string(),
            "createdBy": created_by,
            "comment": comment,
        });
        let r = self
            .first_answer(|api| {
                self.request(api, reqwest::Method::POST, "/api/v2/silences")
                    .json(&body)
            })
            .await?;
        let created: Created = r
            .json()
            .await
            .map_err(|e| AmError::Refused(format!("unexpected answer: {e}")))?;
        Ok(created.silence_id)
    }

    /// Every silence Alertmanager knows (`GET /api/v2/silences`), also expired ones.
    pub async fn silences(&self) -> Result<Vec<Silence>, AmError> {
        let r = self
            .first_answer(|api| self.request(api, reqwest::Method::GET, "/api/v2/silences"))
            .await?;
        r.json()
            .await
            .map_err(|e| AmError::Refused(format!("unexpected answer: {e}")))
    }

    /// One silence (`GET /api/v2/silence/{id}`).
    pub async fn silence(&self, id: &str) -> Result<Silence, AmError> {
        let path = format!("/api/v2/silence/{id}");
        let r = self
            .first_answer(|api| self.request(api, reqwest::Method::GET, &path))
            .await?;
        r.json()
            .await
            .map_err(|e| AmError::Refused(format!("unexpected answer: {e}")))
    }

    /// Expires a silence.
    pub async fn expire_silence(&self, id: &str) -> Result<(), AmError> {
        let path = format!("/api/v2/silence/{id}");
        self.first_answer(|api| self.request(api, reqwest::Method::DELETE, &path))
            .await?;
        Ok(())
    }
}
