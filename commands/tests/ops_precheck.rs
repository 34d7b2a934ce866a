//! `Operator::precheck`, asked before anyone approves a change: it fails as execution would on
//! the same cluster state, and changes nothing. Against kubesim through kube-rs.

mod ops_support;

use ops_support::{Env, cronjob, deployment, hpa, namespace};
use opsbot_commands::{Op, OpError, Workload, WorkloadKind};

fn seed() -> Vec<serde_json::Value> {
    vec![
        namespace("shop"),
        deployment("shop", "web", "nginx:1.27", 2),
        hpa("shop", "web-hpa", "web", 2, 6),
        cronjob("shop", "nightly", "0 2 * * *"),
    ]
}

fn workload(kind: WorkloadKind, name: &str) -> Workload {
    Workload {
        kind,
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precheck_refuses_what_could_not_run_and_changes_nothing() {
    let env = Env::start(seed()).await;
    // Every write is forbidden: a precheck that passes made none (execution would be refused).
    for (verb, resource) in [
        ("patch", "deployments"),
        ("patch", "deployments/scale"),
        ("update", "deployments"),
        ("patch", "horizontalpodautoscalers"),
        ("create", "jobs"),
    ] {
        env.sim.faults().forbid(verb, resource);
    }
    let precheck = |op: Op| {
        let op_ = env.op.clone();
        async move { op_.precheck(&Env::cmd("shop", op)).await }
    };

    let could_run = [
        Op::Scale {
            workload: workload(WorkloadKind::Deployment, "web"),
            replicas: 5,
            dry_run: false,
        },
        Op::Restart {
            workload: workload(WorkloadKind::Deployment, "web"),
        },
        Op::Hpa {
            name: "web-hpa".into(),
            min: Some(3),
            max: None,
        },
        Op::BackupRun {
            cronjob: "nightly".into(),
            job: None,
        },
        // Reads are not checked: they run at once.
        Op::Status {
            workload: workload(WorkloadKind::Deployment, "nope"),
        },
    ];
    for op in could_run {
        let what = format!("{op:?}");
        assert!(precheck(op).await.is_ok(), "{what}");
    }

    let cases = [
        (
            Op::Scale {
                workload: workload(WorkloadKind::Deployment, "wbe"),
                replicas: 5,
                dry_run: false,
            },
            "deployment `wbe` not found in namespace `shop`",
        ),
        (
            Op::Restart {
                workload: workload(WorkloadKind::StatefulSet, "web"),
            },
            "statefulset `web` not found",
        ),
        (
            Op::Rollback {
                name: "web".into(),
                to_revision: Some(9),
            },
            "deployment/web has no revision 9",
        ),
        (
            Op::Rollback {
                name: "web".into(),
                to_revision: None,
            },
            "nothing to roll back to",
        ),
        (
            Op::Hpa {
                name: "web-hpa".into(),
                min: Some(8),
                max: None,
            },
            "--min 8 is greater than the current max 6",
        ),
        (
            Op::BackupRun {
                cronjob: "nighty".into(),
                job: None,
            },
            "`nighty` not found",
        ),
    ];
    for (op, says) in cases {
        let what = format!("{op:?}");
        let err = precheck(op).await.expect_err(&what);
        assert!(
            matches!(err, OpError::NotFound { .. } | OpError::Refused(_)),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{what}: {err}");
    }
    assert_eq!(
        env.get("apps/v1", "Deployment", "shop", "web")["spec"]["replicas"],
        2
    );
}
