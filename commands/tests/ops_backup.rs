//! backup status and backup run, against kubesim through kube-rs.

mod ops_support;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ops_support::{Env, all_text, cronjob, field, finished_job, namespace, time};
use opsbot_commands::{Op, OpError, Tone};
use serde_json::{Value, json};

const H: i64 = 3600;

/// A daily schedule twelve hours away from now (so kubesim's CronJob controller has nothing
/// due while a test runs), and its previous occurrence.
fn daily_far_from_now() -> (String, Timestamp) {
    let now = Timestamp::now();
    let hour_start = now.as_second() - now.as_second() % H;
    let prev = hour_start - 12 * H;
    let hour = (prev % 86_400) / H;
    (
        format!("0 {hour} * * *"),
        Timestamp::from_second(prev).unwrap(),
    )
}

fn backup_cronjob(name: &str, last_success_ago: Option<i64>, suspend: bool) -> Value {
    let (schedule, prev) = daily_far_from_now();
    let mut cj = cronjob("ops", name, &schedule);
    cj["spec"]["suspend"] = json!(suspend);
    cj["status"] = json!({"lastScheduleTime": time(prev)});
    if let Some(ago) = last_success_ago {
        cj["status"]["lastSuccessfulTime"] =
            json!(time(Timestamp::now() - SignedDuration::from_secs(ago)));
    }
    cj
}

fn seed() -> Vec<Value> {
    vec![
        namespace("ops"),
        namespace("empty"),
        // Healthy: succeeded 12h ago and 36h ago.
        backup_cronjob("db-backup", Some(12 * H - 90), false),
        finished_job("ops", "db-backup", "db-backup-1", 12 * H, 90, true),
        finished_job("ops", "db-backup", "db-backup-0", 36 * H, 80, true),
        // Failing: the last run failed.
        backup_cronjob("files-backup", Some(36 * H - 60), false),
        finished_job("ops", "files-backup", "files-backup-1", 12 * H, 45, false),
        finished_job("ops", "files-backup", "files-backup-0", 36 * H, 60, true),
        // Stale: last success three days ago.
        backup_cronjob("logs-backup", Some(72 * H + 60), false),
        finished_job(
            "ops",
            "logs-backup",
            "logs-backup-0",
            72 * H + 120,
            60,
            true,
        ),
        // Suspended.
        backup_cronjob("archive-backup", Some(200 * H), true),
        // Not a backup by name (and never succeeded: stale).
        backup_cronjob("report", None, false),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_status_of_all_backups() {
    let env = Env::start(seed()).await;
    let reply = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: None,
                all: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        reply.title,
        "Backups in ops: 1 failing, 1 stale, 1 suspended, 1 healthy"
    );
    assert_eq!(reply.tone, Tone::Danger);
    let summary = &reply.blocks[0].body;
    let rows: Vec<(&str, &str)> = summary
        .lines()
        .skip(1)
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap(), w.next().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("archive-backup", "suspended"),
            ("db-backup", "healthy"),
            ("files-backup", "failing"),
            ("logs-backup", "stale"),
        ]
    );
    assert!(!summary.contains("report"));
    // One block per CronJob with its recent jobs.
    let files = reply
        .blocks
        .iter()
        .find(|b| b.caption.as_deref() == Some("cronjob/files-backup"))
        .unwrap();
    assert!(
        files
            .body
            .starts_with("failing: the last job files-backup-1 failed (BackoffLimitExceeded)")
    );
    assert!(
        files.body.contains("files-backup-1  failed"),
        "{}",
        files.body
    );

    let reply = env
        .run(
            "empty",
            Op::BackupStatus {
                cronjob: None,
                all: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "No backups");
}

/// History limits keep failed Jobs longer than successful ones: a failure older than the last
/// success (`status.lastSuccessfulTime`) is history, not the current state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_failure_before_the_last_success_is_not_failing() {
    let env = Env::start(vec![
        namespace("ops"),
        // Succeeded 12h ago (its Job already removed); the one Job kept failed 36h ago.
        backup_cronjob("vault-backup", Some(12 * H - 60), false),
        finished_job("ops", "vault-backup", "vault-backup-0", 36 * H, 60, false),
    ])
    .await;
    let reply = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: Some("vault-backup".into()),
                all: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "cronjob/vault-backup: healthy", "{reply:#?}");
}

/// `--all` (kubectl's `get cronjobs`): every CronJob of the namespace, whatever its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_status_all_shows_every_cronjob() {
    let env = Env::start(seed()).await;
    let all = Op::BackupStatus {
        cronjob: None,
        all: true,
    };
    let reply = env.run("ops", all.clone()).await.unwrap();
    assert_eq!(
        reply.title,
        "CronJobs in ops: 1 failing, 2 stale, 1 suspended, 1 healthy"
    );
    let names: Vec<&str> = reply.blocks[0]
        .body
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "archive-backup",
            "db-backup",
            "files-backup",
            "logs-backup",
            "report"
        ]
    );

    let reply = env.run("empty", all).await.unwrap();
    assert_eq!(reply.title, "No CronJobs");
    assert!(all_text(&reply).contains("No CronJob in namespace empty."));
}

/// Stale means no success within 1.5 × the schedule's interval: for a daily schedule 30h is
/// still healthy (stale at 1×) and 40h is stale (healthy at 2×).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_stale_after_one_and_a_half_intervals() {
    let env = Env::start(vec![
        namespace("ops"),
        backup_cronjob("late-backup", Some(30 * H), false),
        backup_cronjob("lost-backup", Some(40 * H), false),
    ])
    .await;
    let verdict = |name: &'static str| {
        let env = &env;
        async move {
            env.run(
                "ops",
                Op::BackupStatus {
                    cronjob: Some(name.into()),
                    all: false,
                },
            )
            .await
            .unwrap()
        }
    };
    let late = verdict("late-backup").await;
    assert_eq!(late.title, "cronjob/late-backup: healthy", "{late:#?}");
    assert_eq!(late.tone, Tone::Ok);
    let lost = verdict("lost-backup").await;
    assert_eq!(lost.title, "cronjob/lost-backup: stale", "{lost:#?}");
    assert!(
        lost.text
            .as_deref()
            .unwrap()
            .starts_with("no success in 1d16h (runs every 1d, allowed 1d12h)"),
        "{lost:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_status_of_one_cronjob() {
    let env = Env::start(seed()).await;
    let reply = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: Some("db-backup".into()),
                all: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "cronjob/db-backup: healthy");
    assert_eq!(reply.tone, Tone::Ok);
    assert!(
        reply.text.as_deref().unwrap().contains("runs every 1d"),
        "{reply:#?}"
    );
    let (schedule, _) = daily_far_from_now();
    assert_eq!(field(&reply, "Schedule"), schedule);
    assert_eq!(field(&reply, "Suspended"), "no");
    assert_eq!(field(&reply, "Active jobs"), "0");
    assert!(field(&reply, "Last success").ends_with("ago)"));
    let jobs = &reply.blocks[0];
    assert_eq!(jobs.caption.as_deref(), Some("Recent jobs"));
    let lines: Vec<&str> = jobs.body.lines().collect();
    assert!(lines[0].starts_with("JOB"));
    assert!(lines[1].starts_with("db-backup-1") && lines[1].contains("succeeded"));
    assert!(
        lines[1].contains("1m30s") && lines[1].contains("scheduled"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("db-backup-0"));

    let reply = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: Some("logs-backup".into()),
                all: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "cronjob/logs-backup: stale");
    assert_eq!(reply.tone, Tone::Warning);
    assert!(
        reply
            .text
            .as_deref()
            .unwrap()
            .starts_with("no success in 3d (runs every 1d, allowed 1d12h)"),
        "{reply:#?}"
    );

    let reply = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: Some("archive-backup".into()),
                all: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "cronjob/archive-backup: suspended");
    assert_eq!(field(&reply, "Suspended"), "yes");

    // A CronJob that is not named "backup" can still be asked for by name.
    let reply = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: Some("report".into()),
                all: false,
            },
        )
        .await
        .unwrap();
    // Created a month ago and never succeeded: stale.
    assert_eq!(reply.title, "cronjob/report: stale", "{reply:#?}");
    assert!(
        reply
            .text
            .as_deref()
            .unwrap()
            .starts_with("never succeeded in 30d")
    );
    assert_eq!(field(&reply, "Last success"), "never");

    let err = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: Some("db-bakup".into()),
                all: false,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::NotFound { suggestions, .. } if suggestions.first().map(String::as_str) == Some("db-backup")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_creates_a_manual_job_and_follows_it() {
    let env = Env::start(seed()).await;
    let (out, progress) = env
        .drive(
            "ops",
            Op::BackupRun {
                cronjob: "db-backup".into(),
                job: None,
            },
        )
        .await;
    let reply = out.expect("backup run");
    assert_eq!(reply.title, "Backup db-backup succeeded", "{reply:#?}");
    assert_eq!(reply.tone, Tone::Ok);
    let job_name = field(&reply, "Job").to_owned();
    assert!(job_name.starts_with("db-backup-manual-"), "{job_name}");
    assert!(
        reply.text.as_deref().unwrap().contains("completed in 30s"),
        "{reply:#?}"
    );
    assert!(progress.len() >= 2, "{progress:?}");
    let last = progress.last().unwrap();
    assert!(
        last.text.starts_with("succeeded: 1/1 succeeded"),
        "{last:?}"
    );
    assert_eq!((last.done, last.total), (1, 1));

    // The Job is what `kubectl create job --from=cronjob/db-backup` makes.
    let job = env.get("batch/v1", "Job", "ops", &job_name);
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "CronJob");
    assert_eq!(owner["name"], "db-backup");
    assert_eq!(owner["uid"], "uid-ops-db-backup");
    assert_eq!(owner["controller"], true);
    // Not set, as kubectl does not: it would need update on cronjobs/finalizers.
    assert!(owner.get("blockOwnerDeletion").is_none(), "{owner}");
    assert_eq!(job["metadata"]["labels"]["app"], "db-backup");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "postgres:16"
    );

    // backup status shows it, as a manual run.
    let reply = env
        .run(
            "ops",
            Op::BackupStatus {
                cronjob: Some("db-backup".into()),
                all: false,
            },
        )
        .await
        .unwrap();
    let first = reply.blocks[0].body.lines().nth(1).unwrap().to_owned();
    assert!(
        first.starts_with(&job_name) && first.contains("manual"),
        "{first}"
    );
}

/// `backup run --job NAME` (kubectl's `create job --from=cronjob/X NAME`) names the Job; a
/// name that is taken is refused before anyone approves (precheck) and at execution, and no
/// second Job is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_names_the_job_when_asked_and_refuses_a_taken_name() {
    let env = Env::start(seed()).await;
    let named = Op::BackupRun {
        cronjob: "db-backup".into(),
        job: Some("before-upgrade".into()),
    };
    let env = &env;
    let precheck = |op: Op| async move { env.op.precheck(&Env::cmd("ops", op)).await };
    precheck(named.clone()).await.expect("the name is free");
    let reply = env.drive("ops", named.clone()).await.0.expect("backup run");
    assert_eq!(reply.title, "Backup db-backup succeeded", "{reply:#?}");
    assert_eq!(field(&reply, "Job"), "before-upgrade");
    let job = env.get("batch/v1", "Job", "ops", "before-upgrade");
    assert_eq!(job["metadata"]["ownerReferences"][0]["name"], "db-backup");

    let jobs = || env.sim.list("batch/v1", "Job", Some("ops")).len();
    let jobs_before = jobs();
    for err in [
        precheck(named.clone()).await.unwrap_err(),
        env.run("ops", named).await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, OpError::Refused(m) if m.contains("job/before-upgrade already exists in namespace `ops`")),
            "{err:?}"
        );
    }
    assert_eq!(jobs(), jobs_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_that_fails_shows_why() {
    let env = Env::start(seed()).await;
    env.sim.faults().fail_jobs("ops", "files-backup");
    let (out, _) = env
        .drive(
            "ops",
            Op::BackupRun {
                cronjob: "files-backup".into(),
                job: None,
            },
        )
        .await;
    let reply = out.expect("the run itself is an answer, not an error");
    assert_eq!(reply.title, "Backup files-backup failed", "{reply:#?}");
    assert_eq!(reply.tone, Tone::Danger);
    let text = all_text(&reply);
    assert!(text.contains("failed after"), "{text}");
    let logs = reply
        .blocks
        .iter()
        .find(|b| b.caption.as_deref() == Some("Last log lines"))
        .expect("the failed pod's last log lines");
    assert!(logs.body.contains("ERROR pg_dump"), "{}", logs.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_that_takes_too_long() {
    let env = Env::start_with(
        seed(),
        |_| None,
        |o| {
            o.job_timeout = Duration::from_millis(300);
        },
    )
    .await;
    // The clock is paused: the job never finishes.
    let reply = env
        .run(
            "ops",
            Op::BackupRun {
                cronjob: "archive-backup".into(),
                job: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "Backup archive-backup still running");
    assert_eq!(reply.tone, Tone::Warning);
    assert!(
        reply
            .text
            .as_deref()
            .unwrap()
            .contains("backup status archive-backup")
    );
    assert_eq!(
        field(&reply, "Note"),
        "cronjob/archive-backup itself is suspended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_forbidden() {
    let env = Env::start(seed()).await;
    env.sim.faults().forbid("create", "jobs");
    let err = env
        .run(
            "ops",
            Op::BackupRun {
                cronjob: "db-backup".into(),
                job: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::Forbidden { verb, resource, group, .. }
            if verb == "create" && resource == "jobs" && group == "batch"),
        "{err:?}"
    );
}
