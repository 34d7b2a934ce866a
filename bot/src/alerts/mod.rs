//! Alertmanager intake: opsbot as Alertmanager's webhook receiver, one chat message per alert
//! group and channel, edited in place as the group changes.
//!
//! ```text
//! POST /alertmanager ─► http.rs (auth, 4 MiB, parse) ─► Alerts::intake
//!     route (config matchers) ─► store (one transaction) ─► audit ─► 200
//!     └─► writer.rs, one task per channel: claim, post / edit through the engine's sinks,
//!         ≤ 1 write/s, digest past the new-message limit
//! ```
//!
//! Invariants:
//! - Alertmanager gets a 2xx only after the notification is stored and audited; a database
//!   failure answers 503 (Alertmanager retries), a malformed payload 400 (it drops it).
//! - Messages are rendered from the database, never from the request, so any replica (and a
//!   retry) shows the newest stored state; repeats of an unchanged state write nothing.
//! - The engine stays the pipeline of chat requests; alerts use only its sinks, store and
//!   audit log ([`Engine::post_in`], [`Engine::edit`]).

mod actions;
pub mod am;
pub mod commands;
pub mod http;
pub mod matcher;
pub mod payload;
pub mod render;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertChannel, AlertsConfig};
use crate::engine::Engine;
use crate::store::{AuditEntry, AuditKind, GroupChange, StoreError};

/// How far back a restart looks for alert groups whose last change may not have reached chat
/// (a write waiting out pacing or a chat outage when the process stopped).
const RESUME_HOURS: i64 = 24;
use payload::{Labels, Notification, Status};
use writer::{Pacing, Writer};

/// The platform name alert intake uses in the audit log.
pub const PLATFORM: &str = "alertmanager";

/// Why a notification was not taken (the webhook answers 503: Alertmanager retries).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the alert could not be stored: {0}")]
    Store(#[from] StoreError),
    #[error("the notification could not be recorded in the audit log")]
    Audit,
}

/// What a notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    /// The channels the group is shown in.
    pub channels: Vec<AlertChannel>,
    /// Whether anything changed (false for a repeat of the same state).
    pub changed: bool,
}

/// The alert service, cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: AlertsConfig,
    pacing: Pacing,
    /// This process's name in message claims.
    owner: String,
    writers: Mutex<HashMap<AlertChannel, mpsc::UnboundedSender<String>>>,
    stop: CancellationToken,
    am: am::AmClient,
}

impl Alerts {
    pub fn new(engine: Engine, config: AlertsConfig) -> Alerts {
        let pacing = Pacing {
            interval: Duration::from_secs(1),
            max_new_per_minute: config.max_new_messages_per_minute,
            retry_claimed: Duration::from_secs(2),
        };
        Alerts::with_pacing(engine, config, pacing)
    }

    fn with_pacing(engine: Engine, config: AlertsConfig, pacing: Pacing) -> Alerts {
        let owner = format!("opsbot-{:016x}", rand::random::<u64>());
        Alerts {
            inner: Arc::new(Inner {
                engine,
                pacing,
                owner,
                writers: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
                am: am::AmClient::new(config.alertmanagers.clone()),
                config,
            }),
        }
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.inner.config
    }

    /// After a restart, queues every group whose message may not show its stored state (never
    /// posted, or changed within the last `RESUME_HOURS`), in the background. Each writer
    /// renders the group and writes only what differs from what the message shows.
    pub fn resume(&self) {
        let alerts = self.clone();
        tokio::spawn(async move {
            let since = Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_hours(RESUME_HOURS))
                .unwrap_or(Timestamp::MIN);
            match alerts
                .inner
                .engine
                .store()
                .alert_groups_to_show(since)
                .await
            {
                Ok(groups) => {
                    for (group_key, channel) in groups {
                        alerts.notify_stored(&channel, &group_key);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot look for alert groups to show"),
            }
        });
    }

    /// What the engine hands alert-message clicks to (held weakly: no reference cycle).
    pub fn actions(&self) -> Arc<dyn crate::chat::AlertActions> {
        Arc::new(actions::Handle(Arc::downgrade(&self.inner)))
    }

    /// Has a stored group's message in its channel brought up to date.
    fn refresh(&self, g: &crate::store::AlertGroup) {
        self.notify_stored(&g.channel, &g.group_key);
    }

    /// [`Alerts::notify`] for a channel as stored (`platform:channel`).
    fn notify_stored(&self, channel: &str, group_key: &str) {
        match AlertChannel::parse(channel) {
            Ok(c) => self.notify(&c, group_key),
            Err(e) => tracing::error!(error = %e, "stored alert group with a bad channel"),
        }
    }

    /// Stops the channel writers (what they have not written stays in the database).
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// Stores one notification, audits it, and has its channels' messages brought up to date.
    pub async fn intake(&self, n: &Notification) -> Result<Intake, IntakeError> {
        let channels = route(&self.inner.config, &n.common_labels);
        let keys: Vec<String> = channels.iter().map(ToString::to_string).collect();
        let store = self.inner.engine.store();
        let recorded = store
            .record_notification(n, &keys, self.inner.config.regroup_after, Timestamp::now())
            .await?;
        let changed = recorded.changes.contains(&GroupChange::Changed);
        // Also on a repeat: the writer renders from the database and writes only a difference,
        // so a message missed before (a crash between store and post) is caught up.
        for channel in &channels {
            self.notify(channel, &n.group_key);
        }
        // Channels the group was shown in before its labels (or the routes) sent it elsewhere:
        // their messages follow it too (to resolved), so none stays firing for ever.
        for channel in &recorded.unrouted {
            self.notify_stored(channel, &n.group_key);
        }
        let entry = AuditEntry::new(AuditKind::Request, PLATFORM)
            .actor(format!("alertmanager:{}", n.receiver))
            .text(&n.group_key)
            .outcome(if changed { "stored" } else { "unchanged" })
            .detail(json!({
                "status": n.status.as_str(),
                "firing": n.count(Status::Firing),
                "resolved": n.count(Status::Resolved),
                "truncated": n.truncated_alerts,
                "channels": keys,
            }));
        if let Err(e) = store.append(entry).await {
            tracing::error!(error = %e, "cannot audit an alert notification");
            return Err(IntakeError::Audit);
        }
        Ok(Intake { channels, changed })
    }

    /// Queues `group_key` for the writer of `channel`, starting the writer on first use.
    fn notify(&self, channel: &AlertChannel, group_key: &str) {
        let mut writers = self.inner.writers.lock().unwrap_or_else(|e| e.into_inner());
        let tx = writers.entry(channel.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let writer = Writer {
                engine: self.inner.engine.clone(),
                channel: channel.clone(),
                owner: self.inner.owner.clone(),
                pacing: self.inner.pacing.clone(),
                silences: !self.inner.config.alertmanagers.is_empty(),
                stop: self.inner.stop.clone(),
            };
            tokio::spawn(writer.run(rx));
            tx
        });
        let _ = tx.send(group_key.to_owned());
    }
}

/// The channels a group with these labels goes to: the routes in order (the first match ends
/// the search unless it says `continue`), else the default channel.
pub fn route(config: &AlertsConfig, labels: &Labels) -> Vec<AlertChannel> {
    let mut out: Vec<AlertChannel> = Vec::new();
    for r in &config.routes {
        if matcher::all_match(&r.matchers, labels) {
            if !out.contains(&r.channel) {
                out.push(r.channel.clone());
            }
            if !r.continue_matching {
                return out;
            }
        }
    }
    if out.is_empty()
        && let Some(c) = &config.default_channel
    {
        out.push(c.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertRoute;

    fn route_to(matchers: &str, channel: &str, continue_matching: bool) -> AlertRoute {
        AlertRoute {
            matchers: matcher::parse(matchers).unwrap(),
            channel: AlertChannel::parse(channel).unwrap(),
            continue_matching,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(channels: Vec<AlertChannel>) -> Vec<String> {
        channels.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn routes_in_order_with_continue_and_a_default() {
        let config = AlertsConfig {
            routes: vec![
                route_to(r#"namespace=~"prod.*""#, "slack:CPROD", true),
                route_to(r#"severity="critical""#, "slack:CEMERG", false),
                route_to(r#"team="db""#, "discord:42", false),
            ],
            default_channel: Some(AlertChannel::parse("slack:CALERTS").unwrap()),
            ..AlertsConfig::default()
        };
        let r = |pairs: &[(&str, &str)]| names(route(&config, &labels(pairs)));
        assert_eq!(
            r(&[
                ("namespace", "production"),
                ("severity", "critical"),
                ("team", "db")
            ]),
            ["slack:CPROD", "slack:CEMERG"],
            "continue goes on; the first match without it stops"
        );
        assert_eq!(
            r(&[("namespace", "production")]),
            ["slack:CPROD"],
            "a continue match is a match"
        );
        assert_eq!(r(&[("team", "db")]), ["discord:42"]);
        assert_eq!(r(&[("severity", "warning")]), ["slack:CALERTS"]);
        let no_default = AlertsConfig::default();
        assert!(route(&no_default, &labels(&[("a", "b")])).is_empty());
    }
}
