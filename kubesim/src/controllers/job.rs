//! The Job controller: one pod per job that succeeds (or fails) after a set duration.
//!
//! The duration is the `kubesim.io/duration-seconds` annotation (default 20s); a job fails when a
//! fault says so ([`crate::Faults::fail_jobs`]) or it carries `kubesim.io/fail: "true"`.

use jiff::SignedDuration;
use serde_json::{Value, json};

use super::replicaset::pod_from_template;
use super::{Ctx, children, random_suffix, time_of, uid_of};
use crate::clock::fmt_time;
use crate::resources::{jobs, pods};
use crate::store::{name_of, ns_of};

const DEFAULT_DURATION: i64 = 20;

pub(crate) fn finished(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
    })
}

pub(crate) fn succeeded(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    })
}

pub(super) fn reconcile(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    let js = ctx.objects_where(jobs(), &keys, |j| {
        !finished(j) && j["spec"]["suspend"] != true
    });
    for j in js {
        reconcile_one(ctx, j);
    }
}

fn annotation<'a>(job: &'a Value, key: &str) -> Option<&'a str> {
    job["metadata"]["annotations"][key]
        .as_str()
        .or_else(|| job["spec"]["template"]["metadata"]["annotations"][key].as_str())
}

fn reconcile_one(ctx: &Ctx<'_>, job: Value) {
    let name = name_of(&job).to_string();
    let now = ctx.now_str();
    let mut status = job["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let start = match time_of(&status["startTime"]) {
        Some(t) => t,
        None => {
            status["startTime"] = json!(now);
            ctx.now
        }
    };
    let mut owned = children(ctx, pods(), &job);
    if owned.is_empty() {
        let pname = format!("{name}-{}", random_suffix());
        let pod = pod_from_template(
            &job,
            &pname,
            &job["spec"]["template"],
            json!({"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": uid_of(&job), "batch.kubernetes.io/controller-uid": uid_of(&job)}),
        );
        if let Some(p) = ctx.create(pods(), pod) {
            ctx.event(
                &job,
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {pname}"),
                "job-controller",
            );
            owned.push(Value::clone(&p));
        }
    }
    let duration = annotation(&job, "kubesim.io/duration-seconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(DEFAULT_DURATION);
    let fails = ctx.faults.job_fails(ns_of(&job), &name)
        || annotation(&job, "kubesim.io/fail") == Some("true");
    // A duration past the end of time means the job never finishes.
    let done_at = start
        .checked_add(SignedDuration::from_secs(duration))
        .unwrap_or(jiff::Timestamp::MAX);
    if ctx.now < done_at {
        if done_at < jiff::Timestamp::MAX {
            ctx.wake_at(&job, done_at);
        }
        status["active"] = json!(owned.len());
        status["ready"] = json!(owned.iter().filter(|p| super::pod_ready(p)).count());
        status["terminating"] = json!(0);
        ctx.set_status(jobs(), &job, status);
        return;
    }
    let done = fmt_time(done_at);
    for p in &owned {
        let mut p = p.clone();
        let started = p["status"]["startTime"]
            .as_str()
            .unwrap_or(&now)
            .to_string();
        p["status"]["phase"] = json!(if fails { "Failed" } else { "Succeeded" });
        let statuses: Vec<Value> = p["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                json!({"name": c["name"], "image": c["image"], "ready": false, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": if fails { 1 } else { 0 }, "reason": if fails { "Error" } else { "Completed" }, "startedAt": started, "finishedAt": done}}})
            })
            .collect();
        p["status"]["containerStatuses"] = json!(statuses);
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": done}]);
        ctx.update(pods(), p);
    }
    status["active"] = json!(0);
    status["ready"] = json!(0);
    status["terminating"] = json!(0);
    if fails {
        status["failed"] = json!(1);
        status["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": done, "lastTransitionTime": done},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": done, "lastTransitionTime": done},
        ]);
        ctx.event(
            &job,
            "Warning",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            "job-controller",
        );
    } else {
        status["succeeded"] = json!(1);
        status["completionTime"] = json!(done);
        status["conditions"] = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": done, "lastTransitionTime": done},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": done, "lastTransitionTime": done},
        ]);
        ctx.event(
            &job,
            "Normal",
            "Completed",
            "Job completed",
            "job-controller",
        );
    }
    ctx.set_status(jobs(), &job, status);
}
