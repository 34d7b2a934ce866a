//! `backup status [CRONJOB]` and `backup run CRONJOB`.

use std::collections::BTreeMap;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{ListParams, LogParams, PostParams};
use rand::Rng;

use super::errors::{FailKind, Res, call, not_found, retry};
use super::mask::mask_secrets;
use super::rollout::wait_change;
use super::util::{fmt_duration, owned_by, short_duration, signed_secs, table, when};
use super::{Ctx, OpError};
use crate::reply::{Reply, Tone};

/// The annotation `kubectl create job --from=cronjob/…` puts on the Job.
pub(crate) const INSTANTIATE: &str = "cronjob.kubernetes.io/instantiate";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BackupVerdict {
    Healthy,
    Suspended,
    Stale,
    Failing,
}

impl BackupVerdict {
    fn as_str(self) -> &'static str {
        match self {
            BackupVerdict::Healthy => "healthy",
            BackupVerdict::Suspended => "suspended",
            BackupVerdict::Stale => "stale",
            BackupVerdict::Failing => "failing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobResult {
    Succeeded,
    Failed,
    Running,
    Pending,
}

impl JobResult {
    fn as_str(self) -> &'static str {
        match self {
            JobResult::Succeeded => "succeeded",
            JobResult::Failed => "failed",
            JobResult::Running => "running",
            JobResult::Pending => "pending",
        }
    }
}

fn condition<'a>(job: &'a Job, ty: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty && c.status == "True")
}

pub(crate) fn job_result(job: &Job) -> JobResult {
    if condition(job, "Complete").is_some() || condition(job, "SuccessCriteriaMet").is_some() {
        JobResult::Succeeded
    } else if condition(job, "Failed").is_some() || condition(job, "FailureTarget").is_some() {
        JobResult::Failed
    } else if job.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0
        || job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_some()
    {
        JobResult::Running
    } else {
        JobResult::Pending
    }
}

/// When a job finished (completion time, or the time its Failed condition appeared).
fn finished_at(job: &Job) -> Option<jiff::Timestamp> {
    let st = job.status.as_ref()?;
    st.completion_time.as_ref().map(|t| t.0).or_else(|| {
        condition(job, "Failed")
            .or_else(|| condition(job, "Complete"))
            .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
    })
}

fn started_at(job: &Job) -> Option<jiff::Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref().map(|t| t.0))
        .or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn job_duration(job: &Job, now: jiff::Timestamp) -> String {
    let Some(start) = started_at(job) else {
        return "-".into();
    };
    let end = finished_at(job).unwrap_or(now);
    short_duration(signed_secs(end, start))
}

/// The cron expression without a `CRON_TZ=` / `TZ=` prefix, and that zone.
fn split_tz(schedule: &str) -> (&str, Option<&str>) {
    let s = schedule.trim();
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = s.strip_prefix(prefix)
            && let Some((tz, expr)) = rest.split_once(char::is_whitespace)
        {
            return (expr.trim(), Some(tz));
        }
    }
    (s, None)
}

/// The interval of a schedule around `now`: the longest gap between the occurrences just
/// before and just after `now` (so weekday-only schedules tolerate weekends).
pub(crate) fn schedule_interval(
    schedule: &str,
    time_zone: Option<&str>,
    now: jiff::Timestamp,
) -> Result<Duration, String> {
    let (expr, prefixed_tz) = split_tz(schedule);
    // What Kubernetes' parser (robfig/cron's standard one) takes beyond croner's macros.
    if let Some(every) = expr.strip_prefix("@every ") {
        return crate::grammar::parse_duration(every.trim())
            .map_err(|e| format!("cannot parse schedule `{schedule}`: `{every}` {e}"));
    }
    let expr = if expr == "@midnight" {
        "0 0 * * *"
    } else {
        expr
    };
    let cron: Cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| format!("cannot parse schedule `{schedule}`: {e}"))?;
    let tz = match time_zone.or(prefixed_tz) {
        Some(name) => {
            jiff::tz::TimeZone::get(name).map_err(|e| format!("unknown time zone `{name}`: {e}"))?
        }
        None => jiff::tz::TimeZone::UTC,
    };
    let now = now.to_zoned(tz);
    let err = |e: croner::errors::CronError| format!("schedule `{schedule}`: {e}");
    let prev1 = cron.find_previous_occurrence(&now, true).map_err(err)?;
    let prev2 = cron.find_previous_occurrence(&prev1, false).map_err(err)?;
    let next = cron.find_next_occurrence(&now, false).map_err(err)?;
    let gap = |a: &jiff::Zoned, b: &jiff::Zoned| {
        let s = b.timestamp().as_second() - a.timestamp().as_second();
        Duration::from_secs(u64::try_from(s).unwrap_or(0))
    };
    Ok(gap(&prev2, &prev1).max(gap(&prev1, &next)))
}

/// Everything `backup status` says about one CronJob.
struct Health {
    name: String,
    verdict: BackupVerdict,
    why: String,
    schedule: String,
    suspended: bool,
    last_schedule: Option<Time>,
    last_success: Option<Time>,
    active: usize,
    jobs: Vec<Job>,
}

fn assess(cj: &CronJob, mut jobs: Vec<Job>, now: jiff::Timestamp) -> Health {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let st = cj.status.clone().unwrap_or_default();
    jobs.sort_by(|a, b| {
        started_at(b)
            .cmp(&started_at(a))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    let newest_success = jobs
        .iter()
        .filter(|j| job_result(j) == JobResult::Succeeded)
        .filter_map(finished_at)
        .max();
    let last_success = match (
        st.last_successful_time.as_ref().map(|t| t.0),
        newest_success,
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
    .map(Time);
    let last_finished = jobs
        .iter()
        .find(|j| matches!(job_result(j), JobResult::Succeeded | JobResult::Failed));
    let suspended = spec.suspend == Some(true);
    let active = st.active.as_ref().map_or(0, Vec::len).max(
        jobs.iter()
            .filter(|j| job_result(j) == JobResult::Running)
            .count(),
    );
    let interval = schedule_interval(&spec.schedule, spec.time_zone.as_deref(), now);
    let (verdict, why) = if suspended {
        (
            BackupVerdict::Suspended,
            "the CronJob is suspended".to_owned(),
        )
    } else if let Some(j) = last_finished.filter(|j| {
        // Failing while the newest finished Job failed after the last success (Jobs that
        // succeeded since may be gone: history limits keep failed ones longer).
        job_result(j) == JobResult::Failed
            && match (finished_at(j), &last_success) {
                (Some(failed), Some(ok)) => failed > ok.0,
                _ => true,
            }
    }) {
        let reason = condition(j, "Failed")
            .and_then(|c| c.reason.clone().or_else(|| c.message.clone()))
            .unwrap_or_else(|| "failed".into());
        (
            BackupVerdict::Failing,
            format!(
                "the last job {} failed ({reason})",
                j.metadata.name.as_deref().unwrap_or("?")
            ),
        )
    } else {
        match interval {
            Err(e) => (BackupVerdict::Stale, e),
            Ok(interval) => {
                let allowed = interval.mul_f64(1.5);
                let since = last_success
                    .as_ref()
                    .map(|t| t.0)
                    .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
                    .map(|t| Duration::from_secs(signed_secs(now, t)));
                match since {
                    Some(s) if s > allowed => (
                        BackupVerdict::Stale,
                        format!(
                            "{} in {} (runs every {}, allowed {})",
                            if last_success.is_some() {
                                "no success"
                            } else {
                                "never succeeded"
                            },
                            fmt_duration(s),
                            fmt_duration(interval),
                            fmt_duration(allowed)
                        ),
                    ),
                    _ => (
                        BackupVerdict::Healthy,
                        match &last_success {
                            Some(_) => format!(
                                "last success within {} (runs every {})",
                                fmt_duration(allowed),
                                fmt_duration(interval)
                            ),
                            None => "no run due yet".to_owned(),
                        },
                    ),
                }
            }
        }
    };
    Health {
        name,
        verdict,
        why,
        schedule: match &spec.time_zone {
            Some(tz) => format!("{} ({tz})", spec.schedule),
            None => spec.schedule.clone(),
        },
        suspended,
        last_schedule: st.last_schedule_time,
        last_success,
        active,
        jobs,
    }
}

fn jobs_table(jobs: &[Job], now: jiff::Timestamp, max: usize) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .take(max)
        .map(|j| {
            let manual = j
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(INSTANTIATE))
                .is_some_and(|v| v == "manual");
            vec![
                j.metadata.name.clone().unwrap_or_default(),
                job_result(j).as_str().to_owned(),
                started_at(j)
                    .map(|t| format!("{} ago", short_duration(signed_secs(now, t))))
                    .unwrap_or_else(|| "-".into()),
                job_duration(j, now),
                if manual { "manual" } else { "scheduled" }.to_owned(),
            ]
        })
        .collect();
    table(&["JOB", "RESULT", "STARTED", "DURATION", "TRIGGER"], &rows)
}

/// `backup status [CRONJOB | --all]`: one CronJob, those whose name contains `backup`, or
/// (`all`) every one.
pub(crate) async fn status(ctx: &Ctx<'_>, name: Option<&str>, all: bool) -> Result<Reply, OpError> {
    let cronjobs: Vec<CronJob> = match name {
        Some(n) => vec![ctx.get::<CronJob>(Res::CronJobs, n).await?],
        None => {
            let listed: Vec<CronJob> = ctx.list(Res::CronJobs, &ListParams::default()).await?;
            let mut b: Vec<CronJob> = listed
                .into_iter()
                .filter(|c| {
                    all || c
                        .metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains("backup"))
                })
                .collect();
            b.sort_by(|x, y| x.metadata.name.cmp(&y.metadata.name));
            b
        }
    };
    if cronjobs.is_empty() {
        let which = if all {
            "No CronJob"
        } else {
            "No CronJob whose name contains `backup`"
        };
        return Ok(Reply::info(if all { "No CronJobs" } else { "No backups" })
            .text(format!("{which} in namespace {}.", ctx.ns))
            .footer(ctx.place()));
    }
    let jobs: Vec<Job> = ctx.list(Res::Jobs, &ListParams::default()).await?;
    let now = ctx.now();
    let health: Vec<Health> = cronjobs
        .iter()
        .map(|cj| {
            let n = cj.metadata.name.as_deref().unwrap_or_default();
            let uid = cj.metadata.uid.as_deref();
            let owned: Vec<Job> = jobs
                .iter()
                .filter(|j| owned_by(&j.metadata, "CronJob", n, uid))
                .cloned()
                .collect();
            assess(cj, owned, now)
        })
        .collect();
    let worst = health
        .iter()
        .map(|h| h.verdict)
        .max()
        .unwrap_or(BackupVerdict::Healthy);
    let tone = match worst {
        BackupVerdict::Healthy => Tone::Ok,
        BackupVerdict::Suspended => Tone::Info,
        BackupVerdict::Stale => Tone::Warning,
        BackupVerdict::Failing => Tone::Danger,
    };
    let max_jobs = ctx.opts.backup_jobs;
    if let [h] = health.as_slice() {
        let mut reply = Reply::new(tone, format!("cronjob/{}: {}", h.name, h.verdict.as_str()))
            .text(h.why.clone())
            .field("Schedule", h.schedule.clone())
            .field("Suspended", if h.suspended { "yes" } else { "no" })
            .field("Last schedule", when(now, h.last_schedule.as_ref()))
            .field("Last success", when(now, h.last_success.as_ref()))
            .field("Active jobs", h.active.to_string());
        if !h.jobs.is_empty() {
            reply = reply.block(
                Some("Recent jobs".into()),
                jobs_table(&h.jobs, now, max_jobs),
            );
        }
        return Ok(reply.footer(ctx.place()));
    }
    let mut counts: BTreeMap<BackupVerdict, usize> = BTreeMap::new();
    for h in &health {
        *counts.entry(h.verdict).or_default() += 1;
    }
    let summary: Vec<String> = counts
        .iter()
        .rev()
        .map(|(v, n)| format!("{n} {}", v.as_str()))
        .collect();
    let rows: Vec<Vec<String>> = health
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.verdict.as_str().to_owned(),
                h.schedule.clone(),
                when(now, h.last_success.as_ref()),
                h.active.to_string(),
            ]
        })
        .collect();
    let mut reply = Reply::new(
        tone,
        format!(
            "{} in {}: {}",
            if all { "CronJobs" } else { "Backups" },
            ctx.ns,
            summary.join(", ")
        ),
    )
    .block(
        None,
        table(
            &["CRONJOB", "VERDICT", "SCHEDULE", "LAST SUCCESS", "ACTIVE"],
            &rows,
        ),
    );
    for h in &health {
        let mut body = format!("{}: {}", h.verdict.as_str(), h.why);
        if !h.jobs.is_empty() {
            body = format!("{body}\n{}", jobs_table(&h.jobs, now, max_jobs));
        }
        reply = reply.block(Some(format!("cronjob/{}", h.name)), body);
    }
    Ok(reply.footer(ctx.place()))
}

/// The Job `kubectl create job --from=cronjob/NAME` would create.
fn job_from(cj: &CronJob, job_name: &str) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(INSTANTIATE.into(), "manual".into());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name.to_owned()),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.metadata.name.clone().unwrap_or_default(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                // As kubectl: `blockOwnerDeletion` would need update on cronjobs/finalizers,
                // which clusters enforcing owner-reference permissions check.
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// `NAME-manual-xxxxx`, at most 63 characters (Job names end up in a label).
fn manual_job_name(cronjob: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let tail = format!("-manual-{suffix}");
    let keep = 63 - tail.len();
    let base: String = cronjob.chars().take(keep).collect();
    format!("{}{tail}", base.trim_end_matches('-'))
}

fn already_exists(f: &super::errors::KubeFail) -> bool {
    matches!(&f.kind, FailKind::Kube(kube::Error::Api(s)) if s.reason == "AlreadyExists")
}

/// Why a Job cannot be created under the name given with `--job`.
fn job_exists(ctx: &Ctx<'_>, job_name: &str) -> OpError {
    OpError::Refused(format!(
        "job/{job_name} already exists in namespace `{}`: name the new Job differently with \
         `--job`, or leave `--job` out",
        ctx.ns
    ))
}

/// `backup run`'s precheck: the CronJob exists and the Job's name (when given) is free.
pub(crate) async fn check_run(
    ctx: &Ctx<'_>,
    name: &str,
    job_name: Option<&str>,
) -> Result<(), OpError> {
    ctx.get::<CronJob>(Res::CronJobs, name).await?;
    match job_name {
        Some(j) if ctx.get_opt::<Job>(Res::Jobs, j).await?.is_some() => Err(job_exists(ctx, j)),
        _ => Ok(()),
    }
}

/// `backup run CRONJOB [--job NAME]`: creates a Job from the CronJob's template, then follows
/// it.
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    name: &str,
    job_name: Option<&str>,
) -> Result<Reply, OpError> {
    let cj: CronJob = ctx.get(Res::CronJobs, name).await?;
    let job_name = job_name.map_or_else(|| manual_job_name(name), str::to_owned);
    let job = job_from(&cj, &job_name);
    let api = ctx.api::<Job>();
    let attempts = &std::sync::atomic::AtomicU32::new(0);
    let (api, job, job_name) = (&api, &job, job_name.as_str());
    let created = retry(&ctx.opts.retry, || async move {
        let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let pp = PostParams::default();
        let res = call(
            ctx,
            "create",
            Res::Jobs,
            None,
            Some(job_name),
            api.create(&pp, job),
        )
        .await;
        match res {
            // A retried create whose first try went through.
            Err(f) if attempt > 1 && already_exists(&f) => {
                call(
                    ctx,
                    "get",
                    Res::Jobs,
                    None,
                    Some(job_name),
                    api.get(job_name),
                )
                .await
            }
            other => other,
        }
    })
    .await;
    let created = match created {
        Ok(j) => j,
        Err(f) if f.is_not_found() => return Err(not_found(ctx, Res::CronJobs, name).await),
        Err(f) if already_exists(&f) => return Err(job_exists(ctx, job_name)),
        Err(f) => return Err(ctx.fail(f).await),
    };
    let completions = created
        .spec
        .as_ref()
        .and_then(|s| s.completions)
        .unwrap_or(1)
        .max(1);
    let suspended = cj.spec.as_ref().and_then(|s| s.suspend) == Some(true);

    // Follow the Job.
    let deadline = tokio::time::Instant::now() + ctx.opts.job_timeout;
    let mut last = created;
    let mut last_text = String::new();
    let outcome = loop {
        let got = tokio::time::timeout_at(deadline, ctx.get_raw::<Job>(Res::Jobs, job_name)).await;
        match got {
            Err(_) => break None,
            Ok(Err(f)) => return Err(ctx.fail(f).await),
            Ok(Ok(j)) => last = j,
        }
        let st = last.status.clone().unwrap_or_default();
        let result = job_result(&last);
        let text = format!(
            "{}: {}/{completions} succeeded, {} active, {} failed",
            result.as_str(),
            st.succeeded.unwrap_or(0),
            st.active.unwrap_or(0),
            st.failed.unwrap_or(0)
        );
        if text != last_text {
            ctx.progress(
                text.clone(),
                u32::try_from(st.succeeded.unwrap_or(0).max(0)).unwrap_or(0),
                u32::try_from(completions).unwrap_or(1),
            );
            last_text = text;
        }
        if matches!(result, JobResult::Succeeded | JobResult::Failed) {
            break Some(result);
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        let until = deadline.min(tokio::time::Instant::now() + ctx.opts.poll_interval);
        wait_change(
            api.clone(),
            job_name,
            last.metadata.resource_version.clone(),
            until,
        )
        .await;
    };

    let now = ctx.now();
    let mut reply = match outcome {
        Some(JobResult::Succeeded) => Reply::ok(format!("Backup {name} succeeded")).text(format!(
            "job/{job_name} completed in {}.",
            job_duration(&last, now)
        )),
        Some(_) => {
            let c = condition(&last, "Failed");
            let mut r = Reply::danger(format!("Backup {name} failed")).text(format!(
                "job/{job_name} failed after {}{}.",
                job_duration(&last, now),
                c.and_then(|c| c.reason.as_deref())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
            if let Some(m) = c.and_then(|c| c.message.as_deref()) {
                r = r.field("Reason", mask_secrets(m));
            }
            if let Some(logs) = failed_pod_logs(ctx, job_name).await {
                r = r.block(Some("Last log lines".into()), logs);
            }
            r
        }
        None => Reply::warning(format!("Backup {name} still running")).text(format!(
            "job/{job_name} did not finish within {}; check with `backup status {name}`.",
            fmt_duration(ctx.opts.job_timeout)
        )),
    };
    reply = reply.field("Job", job_name);
    if suspended {
        reply = reply.field("Note", format!("cronjob/{name} itself is suspended"));
    }
    Ok(reply.footer(ctx.place()))
}

/// The last lines of the newest pod of a failed job, masked (best effort).
async fn failed_pod_logs(ctx: &Ctx<'_>, job_name: &str) -> Option<String> {
    let lp = ListParams::default().labels(&format!("job-name={job_name}"));
    let mut pods: Vec<Pod> = ctx.list(Res::Pods, &lp).await.ok()?;
    pods.retain(|p| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("job-name"))
            .is_some_and(|n| n == job_name)
            || owned_by(&p.metadata, "Job", job_name, None)
    });
    pods.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    let pod = pods.first()?.metadata.name.clone()?;
    let lp = LogParams {
        tail_lines: Some(20),
        limit_bytes: Some(16 * 1024),
        ..LogParams::default()
    };
    let text = tokio::time::timeout(
        ctx.opts.retry.request_timeout,
        ctx.api::<Pod>().logs(&pod, &lp),
    )
    .await
    .ok()?
    .ok()?;
    let text = mask_secrets(text.trim_end());
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn intervals_from_cron() {
        let now = ts("2026-11-25T14:40:00Z"); // a Wednesday
        assert_eq!(
            schedule_interval("0 2 * * *", None, now).unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            schedule_interval("*/15 * * * *", None, now).unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            schedule_interval("@hourly", None, now).unwrap(),
            Duration::from_secs(3600)
        );
        // Weekdays only, seen on a Saturday: the weekend gap counts.
        let sat = ts("2026-11-28T12:00:00Z");
        assert_eq!(
            schedule_interval("0 9 * * 1-5", None, sat).unwrap(),
            Duration::from_secs(3 * 86_400)
        );
        // Kubernetes' parser also takes these.
        assert_eq!(
            schedule_interval("@midnight", None, now).unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            schedule_interval("@every 1h30m", None, now).unwrap(),
            Duration::from_secs(5400)
        );
        assert!(schedule_interval("@every soon", None, now).is_err());
        assert!(schedule_interval("not a cron", None, now).is_err());
        assert!(schedule_interval("0 2 * * *", Some("Mars/Base"), now).is_err());
    }

    #[test]
    fn job_names_fit_labels() {
        let n = manual_job_name(&"x".repeat(80));
        assert!(n.len() <= 63, "{n}");
        assert!(n.contains("-manual-"));
        let n = manual_job_name("db-backup");
        assert!(n.starts_with("db-backup-manual-") && n.len() == "db-backup-manual-".len() + 5);
    }

    proptest::proptest! {
        #[test]
        fn schedules_never_panic(s in "\\PC{0,40}", tz in proptest::option::of("\\PC{0,20}")) {
            let _ = schedule_interval(&s, tz.as_deref(), ts("2026-11-25T14:40:00Z"));
        }

        #[test]
        fn cron_like_schedules_never_panic(
            m in "(\\*|[0-9]{1,2}|\\*/[0-9]{1,2})",
            h in "(\\*|[0-9]{1,2}|[0-9]-[0-9]{1,2})",
            dom in "(\\*|[0-9]{1,2}|L)",
            mon in "(\\*|[0-9]{1,2})",
            dow in "(\\*|[0-7]|MON-FRI)",
        ) {
            let s = format!("{m} {h} {dom} {mon} {dow}");
            if let Ok(d) = schedule_interval(&s, None, ts("2026-11-25T14:40:00Z")) {
                proptest::prop_assert!(d.as_secs() > 0, "{}", s);
            }
        }
    }
}
