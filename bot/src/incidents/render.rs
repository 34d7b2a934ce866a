//! What incidents look like in chat: the card, the topic, lists, the timeline, statistics, and
//! the Markdown postmortem draft. Platform-neutral [`Reply`]s; people are written with the
//! platform's mention (`who`), so the same code serves Slack, Discord and the console.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use opsbot_commands::{ButtonStyle, IncidentStatus, Reply};
use opsbot_policies::Severity;

use crate::config::SeverityPlan;
use crate::engine::cards::at_second;
use crate::store::{Incident, TimelineEntry};

/// Writes a subject (`slack:U123`) so the platform shows (and notifies) the person.
pub type Who<'a> = &'a (dyn Fn(&str) -> String + Sync);

/// The button on an open, unacknowledged incident's card. Its action id and value together
/// are the command it runs, typed by whoever clicks (`incident` + ` ack --id INC-7`).
pub const COMMAND_BUTTON: &str = "incident";

/// `checkout returns 500!` → `checkout-returns-500`; at most 40 characters, never empty.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "incident".to_owned()
    } else {
        out
    }
}

/// `2h 5m`, `45s`.
pub fn elapsed(from: Timestamp, to: Timestamp) -> String {
    let secs = to.duration_since(from).as_secs().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn tone_title(inc: &Incident) -> Reply {
    let title = format!(
        "{} · {} · {}{}",
        inc.id(),
        inc.severity,
        inc.status,
        if inc.open { "" } else { " · closed" }
    );
    match (inc.open, inc.severity) {
        (false, _) => Reply::ok(title),
        (true, Severity::P1 | Severity::P2) => Reply::danger(title),
        (true, _) => Reply::warning(title),
    }
}

fn person(who: Who<'_>, subject: &Option<String>) -> String {
    subject.as_deref().map_or_else(|| "—".to_owned(), who)
}

/// The incident card, pinned in its channel and edited on every change.
pub fn card(inc: &Incident, plan: &SeverityPlan, now: Timestamp, who: Who<'_>) -> Reply {
    let mut reply = tone_title(inc)
        .text(inc.title.clone())
        .field(
            "Severity",
            format!("{} — {}", inc.severity, plan.description),
        )
        .field("Status", inc.status.as_str())
        .field("Commander", person(who, &inc.commander))
        .field("Scribe", person(who, &inc.scribe))
        .field("Comms", person(who, &inc.comms));
    if let Some(service) = &inc.service {
        reply = reply.field("Service", service.clone());
    }
    reply = reply.field("Started", at_second(inc.opened));
    let end = inc.closed.unwrap_or(now);
    reply = reply.field(
        if inc.open { "Elapsed" } else { "Lasted" },
        elapsed(inc.opened, end),
    );
    match (inc.acked, &inc.acked_by) {
        (Some(at), Some(by)) => {
            reply = reply.field(
                "Acknowledged",
                format!("{} after {}", who(by), elapsed(inc.opened, at)),
            )
        }
        _ if inc.open => {
            let due = inc
                .opened
                .saturating_add(jiff::SignedDuration::try_from(plan.ack_within).unwrap_or_default())
                .unwrap_or(inc.opened);
            reply = reply.field("Acknowledged", format!("not yet (due {})", at_second(due)))
        }
        _ => {}
    }
    if let Some(r) = &inc.resolution {
        reply = reply.field("Resolution", r.clone());
    }
    reply = reply.field("Timeline", format!("`incident timeline --id {}`", inc.id()));
    if inc.open && inc.acked.is_none() {
        reply = reply.button(
            COMMAND_BUTTON,
            "Take command",
            ButtonStyle::Primary,
            format!("ack --id {}", inc.id()),
        );
    }
    reply
}

/// The channel topic: severity, status, title and commander at a glance.
pub fn topic(inc: &Incident, who: Who<'_>) -> String {
    let commander = inc.commander.as_deref().map_or_else(
        || "no commander yet".to_owned(),
        |c| format!("IC {}", who(c)),
    );
    let mut t = format!(
        "{} {} · {} · {} · {commander}",
        inc.id(),
        inc.severity,
        inc.status,
        inc.title
    );
    if !inc.open {
        t.push_str(" · closed");
    }
    // Slack and Discord both take 250 characters or more; keep well inside.
    opsbot_commands::reply::cut_chars(&t, 250)
}

/// The announcement in the incidents channel, edited as the incident changes.
pub fn announcement(inc: &Incident, link: &str, notify: &[String], who: Who<'_>) -> Reply {
    let mut reply = tone_title(inc).text(format!("{} — {link}", inc.title));
    if !notify.is_empty() {
        let names: Vec<String> = notify.iter().map(|s| who(s)).collect();
        reply = reply.field("Responders", names.join(" "));
        for n in notify {
            reply = reply.notify(n.clone());
        }
    }
    reply
        .field("Commander", person(who, &inc.commander))
        .field("Opened by", who(&inc.requester))
}

/// `incident list`.
pub fn list(incidents: &[Incident], now: Timestamp, who: Who<'_>) -> Reply {
    if incidents.is_empty() {
        return Reply::info("No incidents").text("None match.");
    }
    let mut body = String::new();
    for inc in incidents {
        let channel = inc
            .channel
            .as_ref()
            .map_or_else(String::new, |c| format!(" #{}", c.name));
        let _ = writeln!(
            body,
            "{:<8} {} {:<13} {:<6} {:>7}  {}{}  IC {}",
            inc.id(),
            inc.severity,
            inc.status.as_str(),
            if inc.open { "open" } else { "closed" },
            elapsed(inc.opened, inc.closed.unwrap_or(now)),
            inc.title,
            channel,
            inc.commander.as_deref().map_or_else(|| "—".to_owned(), who),
        );
    }
    Reply::info(format!("Incidents ({})", incidents.len())).block(None, body)
}

/// One timeline line: `10:15:03  alice  status  identified: pool exhausted`.
fn timeline_line(e: &TimelineEntry, who: Who<'_>) -> String {
    format!(
        "{}  {}  {:<10} {}",
        e.at.strftime("%m-%d %H:%M:%S"),
        short_actor(&e.actor, who),
        e.kind,
        e.text
    )
}

fn short_actor(actor: &str, who: Who<'_>) -> String {
    if actor == "opsbot" {
        "opsbot".to_owned()
    } else {
        who(actor)
    }
}

/// `incident timeline`.
pub fn timeline(inc: &Incident, entries: &[TimelineEntry], who: Who<'_>) -> Reply {
    let body: Vec<String> = entries.iter().map(|e| timeline_line(e, who)).collect();
    Reply::info(format!("Timeline of {} · {}", inc.id(), inc.title))
        .block(None, body.join("\n"))
        .footer(format!("{} entries", entries.len()))
}

/// `incident export`: the postmortem draft.
pub fn export(
    inc: &Incident,
    plan: &SeverityPlan,
    entries: &[TimelineEntry],
    now: Timestamp,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {} — {}\n", inc.id(), inc.title);
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(md, "- Severity: {} ({})", inc.severity, plan.description);
    let _ = writeln!(
        md,
        "- Status: {}{}",
        inc.status,
        if inc.open { " (open)" } else { " (closed)" }
    );
    let _ = writeln!(
        md,
        "- Opened: {} by {}",
        at_second(inc.opened),
        inc.requester
    );
    if let Some(at) = inc.acked {
        let _ = writeln!(
            md,
            "- Acknowledged: {} (after {})",
            at_second(at),
            elapsed(inc.opened, at)
        );
    }
    if let Some(at) = inc.resolved {
        let _ = writeln!(
            md,
            "- Resolved: {} (after {})",
            at_second(at),
            elapsed(inc.opened, at)
        );
    }
    if let Some(at) = inc.closed {
        let _ = writeln!(md, "- Closed: {}", at_second(at));
    }
    let _ = writeln!(
        md,
        "- Duration: {}",
        elapsed(inc.opened, inc.resolved.or(inc.closed).unwrap_or(now))
    );
    if let Some(r) = &inc.resolution {
        let _ = writeln!(md, "- Resolution: {r}");
    }
    let _ = writeln!(md, "\n## Impact\n");
    let _ = writeln!(
        md,
        "- Service: {}",
        inc.service.as_deref().unwrap_or("(not recorded)")
    );
    let _ = writeln!(md, "- {}: {}", inc.severity, plan.description);
    let _ = writeln!(md, "\n## Severity history\n");
    let _ = writeln!(md, "| time | severity |\n|---|---|");
    for e in entries
        .iter()
        .filter(|e| e.kind == "severity" || e.kind == "opened")
    {
        let sev = e
            .detail
            .get("severity")
            .and_then(|v| v.as_str())
            .map_or_else(|| e.text.clone(), str::to_owned);
        let _ = writeln!(md, "| {} | {} |", at_second(e.at), sev);
    }
    let _ = writeln!(md, "\n## People and roles\n");
    for (role, who) in [
        ("Commander", &inc.commander),
        ("Scribe", &inc.scribe),
        ("Comms", &inc.comms),
    ] {
        let _ = writeln!(md, "- {role}: {}", who.as_deref().unwrap_or("—"));
    }
    let mut actors: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.actor != "opsbot") {
        *actors.entry(e.actor.as_str()).or_default() += 1;
    }
    let involved: Vec<String> = actors.iter().map(|(a, n)| format!("{a} ({n})")).collect();
    let _ = writeln!(md, "- Involved (timeline entries): {}", involved.join(", "));
    let _ = writeln!(md, "\n## Timeline\n");
    let _ = writeln!(md, "| time (UTC) | who | what | |\n|---|---|---|---|");
    for e in entries {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            at_second(e.at),
            e.actor,
            e.kind,
            e.text.replace('|', "\\|")
        );
    }
    // Commands run: typed and allowed at once, or run once approved.
    let ran = |e: &TimelineEntry| {
        e.kind == "command"
            || e.kind == "approval"
                && matches!(
                    e.detail.get("outcome").and_then(|o| o.as_str()),
                    Some("executed" | "failed")
                )
    };
    let _ = writeln!(md, "\n## opsbot commands run in the incident channel\n");
    let mut any = false;
    for e in entries.iter().filter(|e| ran(e)) {
        any = true;
        let _ = writeln!(md, "- {} {}: {}", at_second(e.at), e.actor, e.text);
    }
    if !any {
        let _ = writeln!(md, "- none");
    }
    section(&mut md, "Approvals", entries, "approval");
    section(&mut md, "Linked alerts", entries, "alert");
    section(&mut md, "Pinned messages", entries, "pinned");
    section(&mut md, "Open follow-ups", entries, "follow_up");
    md
}

fn section(md: &mut String, title: &str, entries: &[TimelineEntry], kind: &str) {
    let _ = writeln!(md, "\n## {title}\n");
    let mut any = false;
    for e in entries.iter().filter(|e| e.kind == kind) {
        any = true;
        let _ = writeln!(md, "- {} {}: {}", at_second(e.at), e.actor, e.text);
    }
    if !any {
        let _ = writeln!(md, "- none");
    }
}

/// `incident stats`: counts, MTTA and MTTR per severity.
pub fn stats(incidents: &[Incident], since: &str) -> Reply {
    let mut body = String::from("sev  count  open  MTTA      MTTR\n");
    for sev in Severity::ALL {
        let of: Vec<&Incident> = incidents.iter().filter(|i| i.severity == sev).collect();
        let open = of.iter().filter(|i| i.open).count();
        let mean = |pairs: Vec<(Timestamp, Timestamp)>| -> String {
            if pairs.is_empty() {
                return "—".to_owned();
            }
            let total: i64 = pairs
                .iter()
                .map(|(a, b)| b.duration_since(*a).as_secs().max(0))
                .sum();
            let n = i64::try_from(pairs.len()).unwrap_or(1);
            let avg = Timestamp::UNIX_EPOCH
                .saturating_add(jiff::SignedDuration::from_secs(total / n))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            elapsed(Timestamp::UNIX_EPOCH, avg)
        };
        let mtta = mean(
            of.iter()
                .filter_map(|i| Some((i.opened, i.acked?)))
                .collect(),
        );
        let mttr = mean(
            of.iter()
                .filter_map(|i| Some((i.opened, i.resolved?)))
                .collect(),
        );
        let _ = writeln!(
            body,
            "{sev}   {:>5}  {:>4}  {mtta:<8}  {mttr}",
            of.len(),
            open
        );
    }
    Reply::info(format!("Incident statistics, last {since}"))
        .block(None, body)
        .footer("MTTA: mean time to acknowledge; MTTR: mean time to resolve")
}

/// A status change, posted in the incident channel.
pub fn status_post(inc: &Incident, status: IncidentStatus, message: Option<&str>) -> Reply {
    let mut reply = Reply::info(format!("{} is {status}", inc.id()));
    if let Some(m) = message {
        reply = reply.text(m.to_owned());
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_channel_safe() {
        assert_eq!(slug("Checkout returns 500!"), "checkout-returns-500");
        assert_eq!(slug("  DB   down  "), "db-down");
        assert_eq!(slug("データベース"), "incident");
        let long = slug(&"x".repeat(100));
        assert!(long.len() <= 40);
    }

    #[test]
    fn elapsed_reads_like_a_person_would_say_it() {
        let t0 = Timestamp::UNIX_EPOCH;
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        assert_eq!(elapsed(t0, at(45)), "45s");
        assert_eq!(elapsed(t0, at(300)), "5m");
        assert_eq!(elapsed(t0, at(7500)), "2h 5m");
        assert_eq!(elapsed(t0, at(90_000)), "1d 1h");
    }
}
