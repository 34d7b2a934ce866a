//! Alert groups and channel digests as platform-neutral [`Reply`]s.
//!
//! The output depends only on the stored state (no "now"), so rendering the same state twice
//! gives the same reply and the same [`reply_hash`]: a message is edited only when what it
//! shows changes.

use jiff::Timestamp;
use opsbot_commands::reply::ButtonStyle;
use opsbot_commands::{Reply, Tone};
use sha2::{Digest, Sha256};

use super::payload::{Labels, Notification, Status, severity_rank};
use crate::store::AlertGroup;

/// Alerts listed one by one in a group message; the rest are counted.
const MAX_LISTED: usize = 15;
/// Distinguishing labels shown per alert; the rest are counted.
const MAX_OWN_LABELS: usize = 8;
/// Groups listed in a digest; the rest are counted.
const DIGEST_TOP: usize = 10;

/// Button action ids (the Slack and Discord adapters hand them to [`super::Alerts::record`]).
pub const SILENCE_1H: &str = "alert_silence_1h";
pub const SILENCE_4H: &str = "alert_silence_4h";
pub const ACK: &str = "alert_ack";
pub const EXPIRE: &str = "alert_expire";
pub const ACTIONS: [&str; 4] = [SILENCE_1H, SILENCE_4H, ACK, EXPIRE];

/// A stable hash of what a reply shows.
pub fn reply_hash(reply: &Reply) -> String {
    let json = serde_json::to_vec(reply).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..16])
}

fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

fn span(from: Timestamp, to: Timestamp) -> String {
    let secs = to.duration_since(from).as_secs().max(0).unsigned_abs();
    let rounded = std::time::Duration::from_secs(if secs >= 3600 { secs / 60 * 60 } else { secs });
    humantime::format_duration(rounded).to_string()
}

fn pairs(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command the Open incident button runs as the person who clicks it (through the whole
/// pipeline: policy `incident.open` with this severity): the severity from the `severity`
/// label (critical → P1, error → P2, warning → P3, else P4), the alertname as the title, the
/// group linked.
pub fn open_incident_command(g: &AlertGroup) -> String {
    let n = &g.notification;
    let severity = match super::payload::severity_rank(n.severity().unwrap_or("")) {
        4 => "P1",
        3 => "P2",
        2 => "P3",
        _ => "P4",
    };
    let title: String = n
        .common("alertname")
        .unwrap_or("alert")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
        // Discord's custom_id holds 100 characters: `incident:open P1 ` + this + ` --alert …`.
        .take(50)
        .collect();
    let title = if title.is_empty() {
        "alert".to_owned()
    } else {
        title
    };
    format!("open {severity} {title} --alert {}", g.group_id)
}

/// The message of one group in one channel. `silences` says whether Alertmanagers are
/// configured (else there are no silence buttons).
pub fn group_reply(g: &AlertGroup, silences: bool) -> Reply {
    let n = &g.notification;
    let alertname = n.common("alertname").unwrap_or("alerts");
    let severity = n.severity().unwrap_or("none");
    let (firing, resolved) = (n.count(Status::Firing), n.count(Status::Resolved));
    let (tone, title) = match g.status {
        Status::Firing => (
            if severity_rank(severity) >= 4 {
                Tone::Danger
            } else {
                Tone::Warning
            },
            format!("FIRING {firing} · {severity} · {alertname}"),
        ),
        Status::Resolved => (Tone::Ok, format!("RESOLVED · {severity} · {alertname}")),
    };
    let mut reply = Reply::new(tone, title);
    if let Some(text) = summary(n) {
        reply = reply.text(text);
    }
    let mut counts = format!("{firing} firing, {resolved} resolved");
    if n.truncated_alerts > 0 {
        counts.push_str(&format!(
            " (+{} more not sent by Alertmanager)",
            n.truncated_alerts
        ));
    }
    reply = reply.field("Alerts", counts);
    let since = n.started().unwrap_or(g.firing);
    reply = reply.field(
        "Age",
        match (g.status, n.ended().or(g.resolved)) {
            (Status::Resolved, Some(end)) => format!(
                "all resolved at {}; fired for {}",
                when(end),
                span(since, end)
            ),
            _ => format!("firing since {}", when(since)),
        },
    );
    if !n.common_labels.is_empty() {
        reply = reply.field("Labels", pairs(&n.common_labels));
    }
    if let Some(url) = annotation(n, "runbook_url") {
        reply = reply.field("Runbook", url);
    }
    if let Some(who) = &g.acked_by {
        reply = reply.field("Acknowledged", format!("{who} is looking"));
    }
    if let (Some(by), Some(until)) = (&g.silenced_by, g.silenced_until) {
        reply = reply.field("Silenced", format!("by {by} until {}", when(until)));
    }
    let mut links = Vec::new();
    if let Some(url) = n
        .alerts
        .iter()
        .map(|a| &a.generator_url)
        .find(|u| !u.is_empty())
    {
        links.push(format!("source {url}"));
    }
    if !n.external_url.is_empty() {
        links.push(format!("Alertmanager {}", n.external_url));
    }
    if !links.is_empty() {
        reply = reply.field("Links", links.join(" · "));
    }
    reply = reply.block(Some("alerts".into()), alert_lines(n));
    if g.status == Status::Firing {
        if silences && g.silence_id.is_none() {
            reply = reply
                .button(SILENCE_1H, "Silence 1h", ButtonStyle::Default, &g.group_id)
                .button(SILENCE_4H, "Silence 4h", ButtonStyle::Default, &g.group_id);
        }
        if g.acked_by.is_none() {
            reply = reply.button(ACK, "Ack", ButtonStyle::Primary, &g.group_id);
        }
        reply = reply.button(
            crate::incidents::render::COMMAND_BUTTON,
            "Open incident",
            ButtonStyle::Danger,
            open_incident_command(g),
        );
    }
    if silences && g.silence_id.is_some() {
        reply = reply.button(EXPIRE, "Expire silence", ButtonStyle::Danger, &g.group_id);
    }
    reply.footer(format!(
        "alert group {} · receiver {}",
        g.group_id, n.receiver
    ))
}

/// Common summary / description, else the first alert's.
fn summary(n: &Notification) -> Option<String> {
    let pick = |labels: &Labels| {
        let parts: Vec<&str> = ["summary", "description", "message"]
            .iter()
            .filter_map(|k| labels.get(*k).map(String::as_str))
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    };
    pick(&n.common_annotations).or_else(|| n.alerts.iter().find_map(|a| pick(&a.annotations)))
}

fn annotation<'a>(n: &'a Notification, key: &str) -> Option<&'a str> {
    n.common_annotations
        .get(key)
        .or_else(|| n.alerts.iter().find_map(|a| a.annotations.get(key)))
        .map(String::as_str)
}

/// One line per alert: its status and the labels that tell it apart from the others.
fn alert_lines(n: &Notification) -> String {
    let mut lines: Vec<String> = n
        .alerts
        .iter()
        .take(MAX_LISTED)
        .map(|a| {
            let own: Labels = a
                .labels
                .iter()
                .filter(|(k, _)| !n.common_labels.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mark = match a.status {
                Status::Firing => "firing  ",
                Status::Resolved => "resolved",
            };
            let own = if own.is_empty() {
                a.fingerprint.clone()
            } else if own.len() > MAX_OWN_LABELS {
                let more = own.len() - MAX_OWN_LABELS;
                let shown: Labels = own.into_iter().take(MAX_OWN_LABELS).collect();
                format!("{} (+{more} more labels)", pairs(&shown))
            } else {
                pairs(&own)
            };
            match a
                .annotations
                .get("summary")
                .filter(|_| !n.common_annotations.contains_key("summary"))
            {
                Some(s) => format!("{mark} {own} — {s}"),
                None => format!("{mark} {own}"),
            }
        })
        .collect();
    let more = n.alerts.len().saturating_sub(MAX_LISTED) as u64 + n.truncated_alerts;
    if more > 0 {
        lines.push(format!("… and {more} more (`alerts` lists every one)"));
    }
    lines.join("\n")
}

/// The channel's digest of groups that came in past the new-message limit.
pub fn digest_reply(groups: &[AlertGroup]) -> Reply {
    let mut by_severity: Vec<(String, usize)> = Vec::new();
    for g in groups {
        let s = g.notification.severity().unwrap_or("none").to_owned();
        match by_severity.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => by_severity.push((s, 1)),
        }
    }
    by_severity.sort_by(|a, b| {
        severity_rank(&b.0)
            .cmp(&severity_rank(&a.0))
            .then(a.0.cmp(&b.0))
    });
    let counts: Vec<String> = by_severity
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let tone = if by_severity
        .first()
        .is_some_and(|(s, _)| severity_rank(s) >= 4)
    {
        Tone::Danger
    } else if groups.is_empty() {
        Tone::Ok
    } else {
        Tone::Warning
    };
    let title = format!("{} groups firing: {}", groups.len(), counts.join(", "));
    let mut top: Vec<&AlertGroup> = groups.iter().collect();
    top.sort_by_key(|g| std::cmp::Reverse(severity_rank(g.notification.severity().unwrap_or(""))));
    let lines: Vec<String> = top
        .iter()
        .take(DIGEST_TOP)
        .map(|g| {
            let n = &g.notification;
            format!(
                "{:<9} {} {} ({} firing) · group {}",
                n.severity().unwrap_or("none"),
                n.common("alertname").unwrap_or("alerts"),
                n.common("namespace")
                    .map(|ns| format!("in {ns}"))
                    .unwrap_or_default(),
                n.count(Status::Firing),
                g.group_id
            )
        })
        .collect();
    let mut reply = Reply::new(tone, if groups.is_empty() { "No groups in the digest are firing".to_owned() } else { title })
        .text("Too many new alert groups for one message each: they are summed up here. `alerts` lists every alert.");
    if !lines.is_empty() {
        reply = reply.block(Some(format!("top {}", lines.len())), lines.join("\n"));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(status: Status, silenced: bool, acked: bool) -> AlertGroup {
        let body = serde_json::json!({
            "version": "4", "groupKey": "g", "status": status.as_str(), "receiver": "opsbot",
            "commonLabels": {"alertname": "Crash", "severity": "critical", "namespace": "prod"},
            "commonAnnotations": {"runbook_url": "https://runbooks.example/crash"},
            "externalURL": "http://am",
            "alerts": [
                {"status": status.as_str(), "labels": {"alertname": "Crash", "severity": "critical", "namespace": "prod", "pod": "a"},
                 "annotations": {"summary": "a crashes"}, "startsAt": "2026-01-01T10:00:00Z",
                 "endsAt": "2026-01-01T10:45:00Z", "fingerprint": "1"}
            ]
        });
        let notification =
            super::super::payload::Notification::parse(body.to_string().as_bytes()).unwrap();
        let t: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        AlertGroup {
            group_key: "g".into(),
            channel: "slack:C1".into(),
            group_id: "abc123".into(),
            generation: 1,
            status,
            notification,
            firing: t,
            resolved: None,
            message_id: None,
            rendered_hash: None,
            digested: false,
            acked_by: acked.then(|| "slack:U1".into()),
            silence_id: silenced.then(|| "s-1".into()),
            silenced_by: silenced.then(|| "slack:U2".into()),
            silenced_until: silenced.then_some(t),
        }
    }

    fn actions(r: &Reply) -> Vec<&str> {
        r.buttons.iter().map(|b| b.action_id.as_str()).collect()
    }

    #[test]
    fn buttons_follow_the_state_and_rendering_is_stable() {
        let firing = group_reply(&group(Status::Firing, false, false), true);
        let incident = crate::incidents::render::COMMAND_BUTTON;
        assert_eq!(actions(&firing), [SILENCE_1H, SILENCE_4H, ACK, incident]);
        assert!(firing.buttons[..3].iter().all(|b| b.value == "abc123"));
        // Open incident runs `incident open …` as the clicker, linking this group.
        let open = &firing.buttons[3].value;
        let cmd = opsbot_commands::parse(&format!("{incident} {open}")).unwrap();
        match cmd.op {
            opsbot_commands::Op::Incident(opsbot_commands::IncidentCmd {
                op: opsbot_commands::IncidentOp::Open { alert, .. },
                ..
            }) => assert_eq!(alert.as_deref(), Some("abc123")),
            other => panic!("{other:?}"),
        }
        assert_eq!(firing.tone, Tone::Danger);
        assert_eq!(
            reply_hash(&firing),
            reply_hash(&group_reply(&group(Status::Firing, false, false), true))
        );
        let handled = group_reply(&group(Status::Firing, true, true), true);
        assert_eq!(actions(&handled), [incident, EXPIRE]);
        assert_ne!(reply_hash(&firing), reply_hash(&handled));
        let shown: Vec<String> = handled
            .fields
            .iter()
            .map(|f| format!("{}: {}", f.name, f.value))
            .collect();
        assert!(
            shown.contains(&"Acknowledged: slack:U1 is looking".to_owned()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"Silenced: by slack:U2 until 2026-01-01 10:00 UTC".to_owned()),
            "{shown:?}"
        );
        assert!(shown.contains(&"Runbook: https://runbooks.example/crash".to_owned()));
        let no_am = group_reply(&group(Status::Firing, false, false), false);
        assert_eq!(
            actions(&no_am),
            [ACK, incident],
            "no silence buttons without Alertmanagers"
        );
        let resolved = group_reply(&group(Status::Resolved, false, false), true);
        assert!(resolved.buttons.is_empty());
        assert_eq!(resolved.tone, Tone::Ok);
        assert!(
            resolved
                .fields
                .iter()
                .any(|f| f.value.contains("fired for 45m"))
        );
    }

    #[test]
    fn the_digest_counts_by_severity_most_severe_first() {
        let mut warning = group(Status::Firing, false, false);
        warning
            .notification
            .common_labels
            .insert("severity".into(), "warning".into());
        let groups = vec![
            warning.clone(),
            group(Status::Firing, false, false),
            warning,
        ];
        let d = digest_reply(&groups);
        assert_eq!(d.title, "3 groups firing: 1 critical, 2 warning");
        assert_eq!(d.tone, Tone::Danger);
        assert!(d.blocks[0].body.starts_with("critical"));
        assert_eq!(digest_reply(&[]).tone, Tone::Ok);
    }
}
