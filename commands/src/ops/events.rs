//! `events [NAME] [--since 1h] [--warnings]`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;

use super::errors::Res;
use super::mask::mask_secrets;
use super::util::{short_duration, signed_secs, table_within};
use super::{Ctx, OpError};
use crate::reply::Reply;

/// When an event last happened.
pub(crate) fn last_seen(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| t.0)
        })
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn is_warning(e: &Event) -> bool {
    e.type_.as_deref() == Some("Warning")
}

/// Which events of the namespace to ask the API server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kinds {
    All,
    /// Only `type=Warning` (a field selector: the server filters, the namespace's other
    /// events are never sent).
    Warnings,
}

/// Events about `name` and the objects Kubernetes named after it (its ReplicaSets and pods,
/// a StatefulSet's or a CronJob's), newest first, optionally only those seen within `since`.
pub(crate) async fn related(
    ctx: &Ctx<'_>,
    name: &str,
    since: Option<Duration>,
    kinds: Kinds,
) -> Result<Vec<Event>, OpError> {
    let mut evs: Vec<Event> = list(ctx, since, kinds)
        .await?
        .into_iter()
        .filter(|e| named_after(name, e.involved_object.name.as_deref().unwrap_or_default()))
        .collect();
    sort_newest_first(&mut evs);
    Ok(evs)
}

/// Whether `object` is `name` or a name Kubernetes generates from it: `name-HASH` (a
/// ReplicaSet; the hash in Kubernetes' alphabet without vowels), `name-HASH-xxxxx` (its pods),
/// `name-N` (a StatefulSet's pod, a CronJob's Job) and `name-N-xxxxx` (that Job's pod). Not
/// `api-gateway` for `api`: another workload's name is not a generated suffix.
pub(crate) fn named_after(name: &str, object: &str) -> bool {
    const SAFE: &str = "bcdfghjklmnpqrstvwxz2456789";
    let Some(rest) = object.strip_prefix(name) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix('-') else {
        return rest.is_empty();
    };
    let safe = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.chars().all(|c| SAFE.contains(c))
    };
    let ordinal = |s: &str| !s.is_empty() && s.len() <= 12 && s.chars().all(|c| c.is_ascii_digit());
    let generated = |s: &str| ordinal(s) || safe(s, 6..=10);
    match rest.split_once('-') {
        None => generated(rest),
        Some((owner, pod)) => generated(owner) && safe(pod, 5..=5),
    }
}

async fn list(ctx: &Ctx<'_>, since: Option<Duration>, kinds: Kinds) -> Result<Vec<Event>, OpError> {
    let now = ctx.now();
    let params = match kinds {
        Kinds::All => ListParams::default(),
        Kinds::Warnings => ListParams::default().fields("type=Warning"),
    };
    let evs: Vec<Event> = ctx.list(Res::Events, &params).await?;
    Ok(match since {
        Some(since) => evs
            .into_iter()
            .filter(|e| last_seen(e).is_some_and(|t| signed_secs(now, t) <= since.as_secs()))
            .collect(),
        None => evs,
    })
}

fn sort_newest_first(evs: &mut [Event]) {
    evs.sort_by(|a, b| {
        last_seen(b)
            .cmp(&last_seen(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// A table of events: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, within `max_chars`; also
/// how many rows it shows.
pub(crate) fn render(now: jiff::Timestamp, evs: &[Event], max_chars: usize) -> (String, usize) {
    let rows: Vec<Vec<String>> = evs
        .iter()
        .map(|e| {
            let seen = last_seen(e)
                .map(|t| short_duration(signed_secs(now, t)))
                .unwrap_or_else(|| "-".into());
            let count = e.count.unwrap_or(1);
            let seen = if count > 1 {
                format!("{seen} (x{count})")
            } else {
                seen
            };
            let obj = format!(
                "{}/{}",
                e.involved_object
                    .kind
                    .as_deref()
                    .unwrap_or("object")
                    .to_lowercase(),
                e.involved_object.name.as_deref().unwrap_or("?")
            );
            vec![
                seen,
                e.type_.clone().unwrap_or_else(|| "Normal".into()),
                e.reason.clone().unwrap_or_default(),
                obj,
                mask_secrets(&e.message.clone().unwrap_or_default().replace('\n', " ")),
            ]
        })
        .collect();
    let (t, cut) = table_within(
        &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        &rows,
        max_chars,
    );
    (t, rows.len() - cut)
}

/// `events`: for an object (and the objects named after it) or the whole namespace, newest
/// first; with `--warnings`, only warnings.
pub(crate) async fn events(
    ctx: &Ctx<'_>,
    name: Option<&str>,
    since: Option<Duration>,
    only_warnings: bool,
) -> Result<Reply, OpError> {
    let mut evs = match name {
        Some(n) => related(ctx, n, since, Kinds::All).await?,
        None => {
            let mut e = list(ctx, since, Kinds::All).await?;
            sort_newest_first(&mut e);
            e
        }
    };
    let all = evs.len();
    if only_warnings {
        evs.retain(is_warning);
    }
    let what = match (name, only_warnings) {
        (Some(n), false) => format!("Events for {n}"),
        (Some(n), true) => format!("Warnings for {n}"),
        (None, false) => format!("Events in {}", ctx.ns),
        (None, true) => format!("Warnings in {}", ctx.ns),
    };
    let window = since
        .map(|s| format!(" in the last {}", short_duration(s.as_secs())))
        .unwrap_or_default();
    if evs.is_empty() {
        let text = if only_warnings {
            format!("No warnings{window} ({all} other events).")
        } else {
            format!("No events{window}.")
        };
        return Ok(Reply::info(what).text(text).footer(ctx.place()));
    }
    let total = evs.len();
    let warnings = evs.iter().filter(|e| is_warning(e)).count();
    evs.truncate(ctx.opts.max_events);
    let text = if only_warnings {
        format!("{total} warnings{window} (of {all} events).")
    } else {
        format!("{total} events{window}, {warnings} warnings.")
    };
    let reply = if warnings > 0 {
        Reply::warning(what)
    } else {
        Reply::info(what)
    };
    let (table, shown) = render(ctx.now(), &evs, ctx.opts.table_chars);
    let mut footer = ctx.place();
    if total > shown {
        footer = format!("{footer} · showing {shown} of {total}");
    }
    Ok(reply.text(text).block(None, table).footer(footer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_only() {
        for (object, related) in [
            ("api", true),
            ("api-7c9dbf6d5", true),
            ("api-7c9dbf6d5-x2k4p", true),
            ("api-0", true),
            ("api-29391840", true),
            ("api-29391840-qx2vz", true),
            ("api-gateway", false),
            ("api-worker-7c9dbf6d5", false),
            ("api-gateway-7c9dbf6d5-x2k4p", false),
            ("apis", false),
            ("web", false),
        ] {
            assert_eq!(named_after("api", object), related, "{object}");
        }
    }
}
