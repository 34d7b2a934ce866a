//! Alertmanager's webhook payload, version 4, and its normalised form as opsbot stores it.
//!
//! Unknown fields are ignored (newer Alertmanagers add some). `endsAt` of
//! `0001-01-01T00:00:00Z` (Go's zero time: "not ended") becomes `None`. A missing fingerprint is
//! computed from the labels, so every alert has one. [`Notification::content_hash`] is the same
//! for two deliveries that show the same thing, whatever order the alerts came in.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Label or annotation names to values.
pub type Labels = BTreeMap<String, String>;

/// Why a payload was refused (answered with 400: Alertmanager drops it and does not retry).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON for an Alertmanager webhook: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported webhook payload version {0:?} (opsbot reads version 4)")]
    Version(String),
    #[error("groupKey is empty")]
    NoGroupKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One webhook notification: the state of one alert group, as Alertmanager sees it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(default, skip_serializing)]
    pub version: Option<String>,
    #[serde(rename = "groupKey")]
    pub group_key: String,
    #[serde(default)]
    pub receiver: String,
    pub status: Status,
    #[serde(rename = "truncatedAlerts", default)]
    pub truncated_alerts: u64,
    #[serde(rename = "groupLabels", default)]
    pub group_labels: Labels,
    #[serde(rename = "commonLabels", default)]
    pub common_labels: Labels,
    #[serde(rename = "commonAnnotations", default)]
    pub common_annotations: Labels,
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// One alert of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub status: Status,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(rename = "startsAt", default, deserialize_with = "de_time")]
    pub starts_at: Option<Timestamp>,
    #[serde(rename = "endsAt", default, deserialize_with = "de_time")]
    pub ends_at: Option<Timestamp>,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// An RFC 3339 time; Go's zero time (year 1) and `null` are "no time".
fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let Some(t) = Option::<Timestamp>::deserialize(d)? else {
        return Ok(None);
    };
    let year = t.to_zoned(jiff::tz::TimeZone::UTC).year();
    Ok((year > 1).then_some(t))
}

impl Notification {
    /// Parses and normalises a webhook body: alerts sorted by fingerprint, fingerprints filled in.
    pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
        let mut n: Notification = serde_json::from_slice(body)?;
        if let Some(v) = &n.version
            && v != "4"
        {
            return Err(PayloadError::Version(v.chars().take(20).collect()));
        }
        if n.group_key.is_empty() {
            return Err(PayloadError::NoGroupKey);
        }
        for a in &mut n.alerts {
            if a.fingerprint.is_empty() {
                a.fingerprint = fingerprint(&a.labels);
            }
        }
        n.alerts.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        n.alerts.dedup_by(|a, b| a.fingerprint == b.fingerprint);
        Ok(n)
    }

    /// A hash of what the notification shows; equal for repeated deliveries of the same state.
    pub fn content_hash(&self) -> String {
        self.stored().1
    }

    /// The normalised notification as stored (JSON) and its content hash, serialised once.
    pub fn stored(&self) -> (String, String) {
        let json = serde_json::to_string(self).unwrap_or_default();
        let hash = hex::encode(&Sha256::digest(json.as_bytes())[..16]);
        (json, hash)
    }

    /// A label common to the whole group (`severity`, `namespace`, `alertname`).
    pub fn common(&self, name: &str) -> Option<&str> {
        self.common_labels.get(name).map(String::as_str)
    }

    /// The most severe `severity` among the alerts still firing (else among all alerts).
    pub fn severity(&self) -> Option<&str> {
        if let Some(s) = self.common("severity") {
            return Some(s);
        }
        let most_severe = |firing_only: bool| {
            self.alerts
                .iter()
                .filter(|a| !firing_only || a.status == Status::Firing)
                .filter_map(|a| a.labels.get("severity").map(String::as_str))
                .max_by_key(|s| severity_rank(s))
        };
        most_severe(true).or_else(|| most_severe(false))
    }

    pub fn count(&self, status: Status) -> usize {
        self.alerts.iter().filter(|a| a.status == status).count()
    }

    /// When the last alert of the group ended (for a resolved group).
    pub fn ended(&self) -> Option<Timestamp> {
        self.alerts.iter().filter_map(|a| a.ends_at).max()
    }

    /// When the earliest alert of the group started.
    pub fn started(&self) -> Option<Timestamp> {
        self.alerts.iter().filter_map(|a| a.starts_at).min()
    }
}

/// Orders severities: critical > error > warning > info > anything else.
pub fn severity_rank(s: &str) -> u8 {
    match s.to_ascii_lowercase().as_str() {
        "critical" | "page" | "emergency" => 4,
        "error" | "high" => 3,
        "warning" | "warn" | "medium" => 2,
        "info" | "low" | "none" => 1,
        _ => 0,
    }
}

/// A stable fingerprint of a label set, for alerts that came without one.
pub fn fingerprint(labels: &Labels) -> String {
    let json = serde_json::to_vec(labels).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}

/// The short id of a group used on buttons and in commands (the group key may be long).
pub fn group_id(group_key: &str) -> String {
    hex::encode(&Sha256::digest(group_key.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}",
      "truncatedAlerts": 2, "status": "firing", "receiver": "opsbot",
      "groupLabels": {"alertname": "KubePodCrashLooping"},
      "commonLabels": {"alertname": "KubePodCrashLooping", "severity": "warning"},
      "commonAnnotations": {}, "externalURL": "http://am:9093", "newField": [1, 2],
      "alerts": [
        {"status": "resolved", "labels": {"pod": "b"}, "annotations": {},
         "startsAt": "2026-01-01T10:00:00Z", "endsAt": "2026-01-01T11:00:00Z",
         "generatorURL": "http://prom/graph", "fingerprint": "bbb"},
        {"status": "firing", "labels": {"pod": "a"}, "annotations": {"summary": "crash"},
         "startsAt": "2026-01-01T10:05:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "", "fingerprint": "aaa"}
      ]
    }"#;

    #[test]
    fn reads_version_4_ignoring_unknown_fields_and_zero_end_times() {
        let n = Notification::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(n.truncated_alerts, 2);
        assert_eq!(n.alerts[0].fingerprint, "aaa", "sorted by fingerprint");
        assert_eq!(n.alerts[0].ends_at, None, "Go's zero time is no end");
        assert!(n.alerts[1].ends_at.is_some());
        assert_eq!(n.severity(), Some("warning"));
        assert_eq!(n.count(Status::Firing), 1);
        assert_eq!(n.count(Status::Resolved), 1);
    }

    #[test]
    fn the_content_hash_ignores_alert_order() {
        let n = Notification::parse(SAMPLE.as_bytes()).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        v["alerts"].as_array_mut().unwrap().reverse();
        let m = Notification::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(n.content_hash(), m.content_hash());
        v["alerts"][0]["status"] = "resolved".into();
        let changed = Notification::parse(v.to_string().as_bytes()).unwrap();
        assert_ne!(n.content_hash(), changed.content_hash());
    }

    #[test]
    fn refuses_other_versions_empty_group_keys_and_garbage() {
        let v = SAMPLE.replace(r#""version": "4""#, r#""version": "3""#);
        assert!(matches!(
            Notification::parse(v.as_bytes()),
            Err(PayloadError::Version(_))
        ));
        let v = SAMPLE.replace(
            r#""groupKey": "{}:{alertname=\"KubePodCrashLooping\"}""#,
            r#""groupKey": """#,
        );
        assert!(matches!(
            Notification::parse(v.as_bytes()),
            Err(PayloadError::NoGroupKey)
        ));
        for bad in [&b"\xff\xfe{"[..], b"{}", b"[1]", b"{\"groupKey\": 5}", b""] {
            assert!(Notification::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_fingerprint_is_computed_from_the_labels() {
        let v = SAMPLE.replace(r#""fingerprint": "aaa""#, r#""other": 1"#);
        let n = Notification::parse(v.as_bytes()).unwrap();
        let a = n.alerts.iter().find(|a| a.labels["pod"] == "a").unwrap();
        assert_eq!(a.fingerprint, fingerprint(&a.labels));
    }
}
