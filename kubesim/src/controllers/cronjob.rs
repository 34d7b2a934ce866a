//! The CronJob controller: creates Jobs on schedule, tracks active jobs, keeps history limits.

use std::str::FromStr;

use croner::Cron;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::job::{finished, succeeded};
use super::{Ctx, children, owner_ref, time_of};
use crate::clock::fmt_time;
use crate::resources::{cronjobs, jobs};
use crate::store::{meta_str, name_of, ns_of};

pub(super) fn reconcile(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    for cj in ctx.objects(cronjobs(), &keys) {
        reconcile_one(ctx, cj);
    }
}

/// The first schedule time after `after`.
fn next_run(schedule: &str, tz: Option<&str>, after: Timestamp) -> Option<Timestamp> {
    let cron = Cron::from_str(schedule).ok()?;
    let tz = tz
        .and_then(|t| TimeZone::get(t).ok())
        .unwrap_or(TimeZone::UTC);
    cron.find_next_occurrence(&after.to_zoned(tz), false)
        .ok()
        .map(|z| z.timestamp())
}

/// The most recent schedule time in (after, now], if any.
pub(crate) fn due(
    schedule: &str,
    tz: Option<&str>,
    after: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    if next_run(schedule, tz, after)? > now {
        return None;
    }
    let cron = Cron::from_str(schedule).ok()?;
    let tz = tz
        .and_then(|t| TimeZone::get(t).ok())
        .unwrap_or(TimeZone::UTC);
    let prev = cron
        .find_previous_occurrence(&now.to_zoned(tz), true)
        .ok()?;
    Some(prev.timestamp())
}

/// The job a cronjob creates for a scheduled time (also used for the seed's history).
pub(crate) fn job_for(cj: &Value, scheduled: Timestamp) -> Value {
    let name = format!("{}-{}", name_of(cj), scheduled.as_second() / 60);
    let tpl = &cj["spec"]["jobTemplate"];
    let mut labels = tpl["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    let mut annotations = tpl["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] = json!(fmt_time(scheduled));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns_of(cj), "labels": labels, "annotations": annotations, "ownerReferences": [owner_ref(cj)]},
        "spec": tpl["spec"],
    })
}

fn job_ref(j: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": name_of(j), "namespace": ns_of(j), "uid": j["metadata"]["uid"], "resourceVersion": j["metadata"]["resourceVersion"]})
}

fn reconcile_one(ctx: &Ctx<'_>, cj: Value) {
    let mut status = cj["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let mut owned = children(ctx, jobs(), &cj);

    // Finished jobs: note the last success, report them once.
    let was_active: Vec<String> = status["active"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for j in owned.iter().filter(|j| finished(j)) {
        if was_active.iter().any(|n| n == name_of(j)) {
            let st = if succeeded(j) { "Complete" } else { "Failed" };
            ctx.event(
                &cj,
                "Normal",
                "SawCompletedJob",
                &format!("Saw completed job: {}, status: {st}", name_of(j)),
                "cronjob-controller",
            );
        }
        if succeeded(j)
            && let Some(done) = time_of(&j["status"]["completionTime"])
            && time_of(&status["lastSuccessfulTime"]).is_none_or(|t| t < done)
        {
            status["lastSuccessfulTime"] = json!(fmt_time(done));
        }
    }

    // Schedule.
    if cj["spec"]["suspend"] != true {
        let base = time_of(&status["lastScheduleTime"])
            .or_else(|| time_of(&cj["metadata"]["creationTimestamp"]));
        let sched = cj["spec"]["schedule"].as_str().unwrap_or_default();
        if let Some(base) = base
            && let Some(at) = due(sched, cj["spec"]["timeZone"].as_str(), base, ctx.now)
        {
            let active: Vec<&Value> = owned.iter().filter(|j| !finished(j)).collect();
            let policy = cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow");
            if policy == "Forbid" && !active.is_empty() {
                ctx.event(&cj, "Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid", "cronjob-controller");
            } else {
                if policy == "Replace" {
                    for j in active {
                        ctx.delete(jobs(), j);
                        ctx.event(
                            &cj,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted job {}", name_of(j)),
                            "cronjob-controller",
                        );
                    }
                }
                if let Some(j) = ctx.create(jobs(), job_for(&cj, at)) {
                    ctx.event(
                        &cj,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created job {}", name_of(&j)),
                        "cronjob-controller",
                    );
                    owned.push(Value::clone(&j));
                }
                status["lastScheduleTime"] = json!(fmt_time(at));
            }
        }
        if let Some(next) = next_run(sched, cj["spec"]["timeZone"].as_str(), ctx.now) {
            ctx.wake_at(&cj, next);
        }
    }

    // History limits.
    owned.sort_by(|a, b| {
        meta_str(a, "creationTimestamp")
            .cmp(meta_str(b, "creationTimestamp"))
            .then(name_of(a).cmp(name_of(b)))
    });
    for (keep, ok) in [
        (
            cj["spec"]["successfulJobsHistoryLimit"]
                .as_i64()
                .unwrap_or(3),
            true,
        ),
        (
            cj["spec"]["failedJobsHistoryLimit"].as_i64().unwrap_or(1),
            false,
        ),
    ] {
        let done: Vec<&Value> = owned
            .iter()
            .filter(|j| finished(j) && succeeded(j) == ok)
            .collect();
        let excess = done.len().saturating_sub(keep.max(0) as usize);
        for j in done.into_iter().take(excess) {
            ctx.delete(jobs(), j);
            ctx.event(
                &cj,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted job {}", name_of(j)),
                "cronjob-controller",
            );
        }
    }
    let active: Vec<Value> = owned
        .iter()
        .filter(|j| !finished(j) && ctx.store.get(jobs(), ns_of(j), name_of(j)).is_some())
        .map(job_ref)
        .collect();
    if active.is_empty() {
        if let Some(m) = status.as_object_mut() {
            m.remove("active");
        }
    } else {
        status["active"] = json!(active);
    }
    ctx.set_status(cronjobs(), &cj, status);
}
