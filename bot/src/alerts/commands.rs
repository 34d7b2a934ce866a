//! The alert commands (`alerts`, `silence list|add|expire`), answered through the engine's
//! [`Desk`] seam: they pass the pipeline like every command (policy `alert.show` /
//! `alert.silence`, audit), and only their execution is here. Alerts come from the store (every
//! alert received, also those only in a digest); silences from the configured Alertmanagers.

use std::fmt::Write as _;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use opsbot_commands::{AlertCmd, Command, Op, Reply};

use super::am::{AmClient, AmError};
use super::matcher::{self, MatchOp, Matcher};
use crate::config::AlertsConfig;
use crate::engine::{Caller, Desk, Facts};
use crate::store::Store;

/// Alerts listed at most (the footer says how many more there are).
const LIST_LIMIT: u32 = 50;

/// The alert commands' desk.
pub struct AlertCommands {
    store: Store,
    am: AmClient,
}

impl AlertCommands {
    pub fn new(store: Store, config: &AlertsConfig) -> AlertCommands {
        AlertCommands {
            store,
            am: AmClient::new(config.alertmanagers.clone()),
        }
    }

    async fn list(&self, severity: Option<&str>, namespace: Option<&str>) -> Result<Reply, Reply> {
        let alerts = self
            .store
            .list_alerts(severity, namespace, LIST_LIMIT + 1)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot list alerts");
                Reply::danger("Cannot read the alerts").text("opsbot's database did not answer.")
            })?;
        if alerts.is_empty() {
            return Ok(Reply::info("No alerts").text("None received that match."));
        }
        let more = alerts.len() > LIST_LIMIT as usize;
        let mut body = String::new();
        for a in alerts.iter().take(LIST_LIMIT as usize) {
            let since = a
                .starts_ms
                .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                .map_or_else(|| "—".to_owned(), |t| t.strftime("%m-%d %H:%M").to_string());
            let _ = writeln!(
                body,
                "{:<8} {:<9} {:<32} {:<20} {}  group {}",
                a.status,
                a.severity.as_deref().unwrap_or("—"),
                a.alertname.as_deref().unwrap_or("—"),
                a.namespace.as_deref().unwrap_or("—"),
                since,
                super::payload::group_id(&a.group_key),
            );
        }
        let firing = alerts.iter().filter(|a| a.status == "firing").count();
        let mut reply = Reply::info(format!("Alerts: {firing} firing")).block(None, body);
        if more {
            reply = reply.footer(format!(
                "the first {LIST_LIMIT}; filter with --severity or -n"
            ));
        }
        Ok(reply)
    }

    async fn silences(&self) -> Result<Reply, Reply> {
        let silences = self.am.silences().await.map_err(am_failed)?;
        let live: Vec<_> = silences
            .iter()
            .filter(|s| s.status.state == "active" || s.status.state == "pending")
            .collect();
        if live.is_empty() {
            return Ok(Reply::info("No silences").text("Nothing is silenced now."));
        }
        let mut reply = Reply::info(format!("Silences ({})", live.len()));
        for s in live {
            let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
            reply = reply.field(
                format!("{} · {}", s.id, s.status.state),
                format!(
                    "{}\nby {} until {}: {}",
                    matchers.join(", "),
                    s.created_by,
                    s.ends_at,
                    s.comment
                ),
            );
        }
        Ok(reply)
    }

    async fn add(
        &self,
        caller: &Caller,
        matchers: &str,
        duration: std::time::Duration,
        comment: &str,
    ) -> Result<Reply, Reply> {
        let parsed = parse_matchers(matchers).map_err(|r| *r)?;
        let until = Timestamp::now()
            .saturating_add(SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        let api: Vec<_> = parsed.iter().map(Matcher::to_api).collect();
        let id = self
            .am
            .create_silence(&api, until, caller.user.as_str(), comment)
            .await
            .map_err(am_failed)?;
        let shown: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        Ok(Reply::ok(format!(
            "Silenced until {}",
            until.strftime("%Y-%m-%d %H:%M UTC")
        ))
        .field("Matchers", shown.join(", "))
        .field("Silence", id.clone())
        .field("Comment", comment.to_owned())
        .footer(format!("`silence expire {id}` ends it")))
    }

    async fn expire(&self, id: &str) -> Result<Reply, Reply> {
        self.am.expire_silence(id).await.map_err(am_failed)?;
        Ok(Reply::ok(format!("Silence {id} expired")))
    }
}

/// `alertname=X, namespace=prod`, also without commas between matchers (chat splits words).
fn parse_matchers(text: &str) -> Result<Vec<Matcher>, Box<Reply>> {
    let joined = words_outside_quotes(text)
        .into_iter()
        .map(|w| w.trim_end_matches(','))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    matcher::parse(&joined).map_err(|e| {
        let hint = "Write e.g. `alertname=\"X\", namespace=\"production\"`.";
        Box::new(Reply::warning("Not a matcher list").text(format!("{e}. {hint}")))
    })
}

/// `text` split at whitespace outside double quotes (`job="node exporter"` is one word; a
/// `\"` inside quotes does not end them).
fn words_outside_quotes(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let (mut start, mut quoted, mut escaped) = (None, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    words.push(&text[s..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    words.extend(start.map(|s| &text[s..]));
    words
}

/// The namespace a silence acts in, for the policy: its `namespace=` equality matcher.
fn namespace_of(matchers: &[Matcher]) -> Option<String> {
    matchers
        .iter()
        .find(|m| m.name == "namespace" && m.op == MatchOp::Equal)
        .map(|m| m.value.clone())
}

/// A silence id as Alertmanager makes them (a UUID); anything else never reaches its URL.
fn valid_silence_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn am_failed(e: AmError) -> Reply {
    Reply::danger("Alertmanager did not do it").text(e.to_string())
}

#[async_trait]
impl Desk for AlertCommands {
    async fn prepare(&self, _caller: &Caller, cmd: &Command) -> Result<Facts, Reply> {
        let namespace = match &cmd.op {
            Op::Alert(AlertCmd::SilenceAdd { matchers, .. }) => {
                namespace_of(&parse_matchers(matchers).map_err(|r| *r)?)
            }
            Op::Alert(AlertCmd::SilenceExpire { id }) => {
                if !valid_silence_id(id) {
                    return Err(Reply::warning(format!("`{id}` is not a silence id"))
                        .text("`silence list` shows the ids."));
                }
                let silence = self.am.silence(id).await.map_err(am_failed)?;
                silence
                    .matchers
                    .iter()
                    .find(|m| m.name == "namespace" && m.is_equal && !m.is_regex)
                    .map(|m| m.value.clone())
            }
            _ => None,
        };
        Ok(Facts {
            severity: None,
            namespace,
        })
    }

    async fn execute(&self, caller: &Caller, cmd: &Command) -> Result<Reply, Reply> {
        match &cmd.op {
            Op::Alert(AlertCmd::List { severity }) => {
                self.list(severity.as_deref(), cmd.namespace.as_deref())
                    .await
            }
            Op::Alert(AlertCmd::SilenceList) => self.silences().await,
            Op::Alert(AlertCmd::SilenceAdd {
                matchers,
                duration,
                comment,
            }) => self.add(caller, matchers, *duration, comment).await,
            Op::Alert(AlertCmd::SilenceExpire { id }) => self.expire(id).await,
            _ => Err(Reply::warning("Not an alert command")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_read_with_or_without_commas_and_name_their_namespace() {
        let m = parse_matchers("alertname=KubePodCrashLooping namespace=\"production\"").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(namespace_of(&m).as_deref(), Some("production"));
        let m = parse_matchers("alertname=X, namespace=~\"prod.*\"").unwrap();
        assert_eq!(namespace_of(&m), None, "a regex names no one namespace");
        assert!(parse_matchers("=oops").is_err());
    }

    #[test]
    fn quoted_values_keep_their_spaces() {
        let m = parse_matchers(r#"job="node exporter" instance="a \" b""#).unwrap();
        let shown: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(shown, [r#"job="node exporter""#, r#"instance="a \" b""#]);
        assert_eq!(
            words_outside_quotes("  a=\"x y\",  b=z "),
            ["a=\"x y\",", "b=z"]
        );
    }

    #[test]
    fn only_uuid_like_ids_reach_alertmanager() {
        assert!(valid_silence_id("7d1c0e52-5a38-4ad3-9f58-2a1f0c3f9f4e"));
        for bad in ["", "../silences", "a/b", "x?y=1", &"a".repeat(65)] {
            assert!(!valid_silence_id(bad), "{bad}");
        }
    }
}
