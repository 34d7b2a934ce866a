//! `logs NAME | -l SELECTOR [--tail N] [--since 1h] [--grep TEXT] [--container C] [--previous]`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;

use super::errors::not_found;
use super::errors::{Res, call, retry};
use super::mask::mask_secrets;
use super::pods::{PodSource, as_kind, label_selector, pods_matching, resolve};
use super::util::{short_duration, without_escapes as clean};
use super::{Ctx, OpError};
use crate::command::{DEFAULT_TAIL, PodSelector};
use crate::reply::Reply;

/// The arguments of `logs`.
#[derive(Debug, Clone)]
pub(crate) struct LogQuery<'a> {
    pub source: &'a PodSelector,
    pub tail: Option<u32>,
    pub since: Option<Duration>,
    pub grep: Option<&'a str>,
    pub container: Option<&'a str>,
    pub previous: bool,
}

/// With `--grep`, how many times `--tail` lines are scanned for matches.
const GREP_SCAN_FACTOR: u32 = 20;

struct Line {
    /// The line's time (carried over from the line before when it has none).
    ts: jiff::Timestamp,
    pod: usize,
    text: String,
}

/// The container to read: the one asked for, the pod's default-container annotation, or
/// the first. The note says which was picked when there was a choice.
fn pick_container(pod: &Pod, asked: Option<&str>) -> Result<(String, Option<String>), OpError> {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
    if let Some(c) = asked {
        let init: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        if names.iter().chain(init.iter()).any(|n| n == c) {
            return Ok((c.to_owned(), None));
        }
        return Err(OpError::Refused(format!(
            "pod {pod_name} has no container `{c}`; its containers: {}",
            names.join(", ")
        )));
    }
    let default = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .filter(|d| names.contains(d))
        .cloned();
    let Some(first) = default.or_else(|| names.first().cloned()) else {
        return Err(OpError::Refused(format!(
            "pod {pod_name} has no containers"
        )));
    };
    let note = (names.len() > 1).then(|| {
        format!(
            "container `{first}` of {} (others: {}; use --container)",
            names.len(),
            names
                .iter()
                .filter(|n| **n != first)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok((first, note))
}

/// What `logs NAME` reads, as the policy saw it: `pod/x`, `statefulset/x`, or `x`, a
/// deployment. When there is none, the same name of another kind is suggested first.
async fn source(ctx: &Ctx<'_>, name: &str) -> Result<PodSource, OpError> {
    let (res, bare) = match name.split_once('/') {
        Some(("pod", bare)) => (Res::Pods, bare),
        Some((_, bare)) => (Res::StatefulSets, bare),
        None => (Res::Deployments, name),
    };
    if let Some(found) = as_kind(ctx, res, bare).await? {
        return Ok(found);
    }
    let mut err = not_found(ctx, res, bare).await;
    if let OpError::NotFound {
        kind, suggestions, ..
    } = &mut err
        && kind == res.kind()
        && let Ok(other) = resolve(ctx, bare).await
    {
        suggestions.insert(
            0,
            match other {
                PodSource::Workload(what, _) => what,
                PodSource::Pod(_) => format!("pod/{bare}"),
            },
        );
    }
    Err(err)
}

/// `logs`: the newest pod of a workload or label selector (or all its pods, prefixed),
/// bounded, grepped and with secrets masked.
pub(crate) async fn logs(ctx: &Ctx<'_>, q: &LogQuery<'_>) -> Result<Reply, OpError> {
    let (what, mut pods) = match q.source {
        PodSelector::Name(name) => match source(ctx, name).await? {
            PodSource::Pod(p) => (name.to_owned(), vec![*p]),
            PodSource::Workload(w, sel) => (w, pods_matching(ctx, &sel).await?),
        },
        PodSelector::Labels(s) => (
            format!("pods matching {s}"),
            pods_matching(ctx, &label_selector(s)?).await?,
        ),
    };
    if pods.is_empty() {
        return Ok(Reply::info(format!("Logs of {what}"))
            .text("No pods to read logs from.")
            .footer(ctx.place()));
    }
    // Newest first.
    pods.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let limit = if ctx.opts.logs_all_pods {
        ctx.opts.max_log_pods.max(1)
    } else {
        1
    };
    let skipped_pods = pods.len().saturating_sub(limit);
    pods.truncate(limit);
    let multi = pods.len() > 1;

    let tail = q
        .tail
        .unwrap_or(DEFAULT_TAIL)
        .clamp(1, ctx.opts.max_log_lines.max(1));
    let fetch_lines = if q.grep.is_some() {
        tail.saturating_mul(GREP_SCAN_FACTOR)
    } else {
        tail
    };
    let max_bytes = ctx.opts.max_log_bytes.max(1024);

    let mut lines: Vec<Line> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut hit_byte_limit = false;
    let mut names = Vec::new();
    for pod in &pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let (container, note) = pick_container(pod, q.container)?;
        if let Some(n) = note {
            notes.push(format!("{pod_name}: {n}"));
        }
        let lp = LogParams {
            container: Some(container.clone()),
            previous: q.previous,
            since_seconds: q
                .since
                .map(|s| i64::try_from(s.as_secs().max(1)).unwrap_or(i64::MAX)),
            tail_lines: Some(i64::from(fetch_lines)),
            limit_bytes: Some(max_bytes),
            timestamps: multi,
            ..LogParams::default()
        };
        let api = ctx.api::<Pod>();
        let (api, lp, pod_ref) = (&api, &lp, pod_name.as_str());
        let text = match retry(&ctx.opts.retry, || async move {
            call(
                ctx,
                "get",
                Res::Pods,
                Some("log"),
                Some(pod_ref),
                api.logs(pod_ref, lp),
            )
            .await
        })
        .await
        {
            Ok(t) => t,
            // With several pods, one that cannot show logs (not started yet, ...) is noted.
            Err(f) if multi && f.is_bad_request() => {
                let why = ctx.fail(f).await;
                notes.push(format!("{pod_name}: no logs: {why}"));
                continue;
            }
            Err(f) => return Err(ctx.fail(f).await),
        };
        let i = names.len();
        let mut last_ts = jiff::Timestamp::MIN;
        if i64::try_from(text.len()).unwrap_or(i64::MAX) >= max_bytes {
            hit_byte_limit = true;
        }
        // Masked as a whole before anything reads it: a private key spans lines, and `--grep`
        // must not find what is not shown (else it would tell a secret's prefix by prefix).
        let text = mask_secrets(&text);
        for raw in text.lines() {
            let (ts, body) = if multi {
                match raw.split_once(' ') {
                    Some((t, rest)) => match t.parse::<jiff::Timestamp>() {
                        Ok(ts) => (ts, rest),
                        Err(_) => (last_ts, raw),
                    },
                    None => (last_ts, raw),
                }
            } else {
                (last_ts, raw)
            };
            last_ts = ts;
            lines.push(Line {
                ts,
                pod: i,
                text: clean(body),
            });
        }
        names.push(pod_name);
    }
    if names.is_empty() {
        let mut reply = Reply::info(format!("Logs of {what}")).text("No pod could show logs.");
        for n in notes {
            reply = reply.field("Note", n);
        }
        return Ok(reply.footer(ctx.place()));
    }
    let multi = names.len() > 1;
    if multi {
        // Merge by time (a stable sort keeps each pod's order among equal times).
        lines.sort_by_key(|l| l.ts);
    }
    if let Some(g) = q.grep {
        let g = g.to_lowercase();
        lines.retain(|l| l.text.to_lowercase().contains(&g));
    }
    let total = lines.len();
    let keep_from = total.saturating_sub(tail as usize);
    let mut body: Vec<String> = lines[keep_from..]
        .iter()
        .map(|l| {
            if multi {
                format!("[{}] {}", names[l.pod], l.text)
            } else {
                l.text.clone()
            }
        })
        .collect();
    // Bound the bytes of what we show too, keeping the newest lines.
    let budget = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut used = 0usize;
    let mut start = body.len();
    while start > 0 && used + body[start - 1].len() < budget {
        used += body[start - 1].len() + 1;
        start -= 1;
    }
    if start > 0 {
        hit_byte_limit = true;
        body.drain(..start);
    }

    let mut caption = match (multi, q.container) {
        (true, _) => match q.source {
            PodSelector::Labels(s) => format!("{} pods matching {s}", names.len()),
            PodSelector::Name(_) => format!("{} pods of {what}", names.len()),
        },
        (false, Some(c)) => format!("{} ({c})", names[0]),
        (false, None) => names[0].clone(),
    };
    if q.previous {
        caption.push_str(", previous container");
    }
    let mut desc = vec![format!("Last {} lines", body.len())];
    if let Some(g) = q.grep {
        desc.push(format!("matching “{}”", mask_secrets(g)));
    }
    if let Some(s) = q.since {
        desc.push(format!("since {} ago", short_duration(s.as_secs())));
    }
    let title = format!("Logs of {what}");
    let mut reply = if body.is_empty() {
        Reply::info(title).text(match q.grep {
            Some(_) => format!("No log lines {}.", desc[1..].join(", ")),
            None => "No log lines.".to_owned(),
        })
    } else {
        Reply::info(title)
            // What the lines are; the block's caption says whose they are.
            .text(format!("{}.", desc.join(", ")))
            .block(Some(caption), body.join("\n"))
    };
    if q.grep.is_some() && total > 0 && keep_from > 0 {
        notes.push(format!("{keep_from} earlier matching lines not shown"));
    }
    if hit_byte_limit {
        notes.push(format!(
            "output reached the {} KiB limit; narrow it with --since, --tail or --grep",
            max_bytes / 1024
        ));
    }
    if skipped_pods > 0 {
        notes.push(format!("{skipped_pods} older pods not shown"));
    }
    for n in notes {
        reply = reply.field("Note", n);
    }
    Ok(reply.footer(ctx.place()))
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn cleans_escapes() {
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m\tok\u{7}"), "red\tok");
    }
}
