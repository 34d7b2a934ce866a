//! scale, restart, rollback and following the rollout, against kubesim through kube-rs.

mod ops_support;

use std::time::Duration;

use ops_support::{Env, all_text, deployment, field, namespace, rolled_out, statefulset};
use opsbot_commands::{Op, OpError, Progress, Tone, Workload, WorkloadKind};
use serde_json::json;

fn deploy(name: &str) -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        name: name.into(),
    }
}

fn sts(name: &str) -> Workload {
    Workload {
        kind: WorkloadKind::StatefulSet,
        name: name.into(),
    }
}

fn seed() -> Vec<serde_json::Value> {
    vec![
        namespace("shop"),
        deployment("shop", "web", "nginx:1.27", 3),
        statefulset("shop", "db", "postgres:16", 2),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_deployment_follows_rollout_to_complete() {
    let env = Env::start(seed()).await;
    let (out, progress) = env
        .drive(
            "shop",
            Op::Scale {
                workload: deploy("web"),
                replicas: 5,
                dry_run: false,
            },
        )
        .await;
    let reply = out.expect("scale succeeds");
    assert_eq!(reply.tone, Tone::Ok, "{reply:#?}");
    assert_eq!(reply.title, "Scaled deployment/web 3 → 5");
    assert_eq!(field(&reply, "Replicas"), "3 → 5");
    assert!(field(&reply, "Rollout").starts_with("complete (5/5 updated, 5 ready)"));
    // Progress went through intermediate states and ended complete.
    assert_honest(&progress);
    let last = progress.last().unwrap();
    assert_eq!(last.text, "5/5 ready");
    assert_eq!((last.done, last.total), (5, 5));
    let d = env.get("apps/v1", "Deployment", "shop", "web");
    assert_eq!(d["spec"]["replicas"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_dry_run_changes_nothing() {
    let env = Env::start(seed()).await;
    let reply = env
        .run(
            "shop",
            Op::Scale {
                workload: deploy("web"),
                replicas: 7,
                dry_run: true,
            },
        )
        .await
        .expect("dry run succeeds");
    assert_eq!(reply.tone, Tone::Info);
    assert_eq!(reply.title, "Dry run: scale deployment/web 3 → 7");
    assert!(all_text(&reply).contains("nothing was changed"));
    let d = env.get("apps/v1", "Deployment", "shop", "web");
    assert_eq!(d["spec"]["replicas"], 3);
    // The dry run is the server's: the patch is sent, so RBAC on the scale subresource applies.
    env.sim.faults().forbid("patch", "deployments/scale");
    let err = env
        .run(
            "shop",
            Op::Scale {
                workload: deploy("web"),
                replicas: 7,
                dry_run: true,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::Forbidden { verb, resource, .. }
            if verb == "patch" && resource == "deployments/scale"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_statefulset_and_noop() {
    let env = Env::start(seed()).await;
    let (out, progress) = env
        .drive(
            "shop",
            Op::Scale {
                workload: sts("db"),
                replicas: 3,
                dry_run: false,
            },
        )
        .await;
    let reply = out.expect("scale sts");
    assert_eq!(reply.title, "Scaled statefulset/db 2 → 3");
    assert_eq!(reply.tone, Tone::Ok, "{reply:#?}");
    assert_eq!(progress.last().unwrap().text, "3/3 ready");
    let s = env.get("apps/v1", "StatefulSet", "shop", "db");
    assert_eq!(s["spec"]["replicas"], 3);

    // Same count again: nothing to do.
    let reply = env
        .run(
            "shop",
            Op::Scale {
                workload: sts("db"),
                replicas: 3,
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "statefulset/db already has 3 replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_mentions_an_autoscaler() {
    let mut objs = seed();
    objs.push(ops_support::hpa("shop", "web-hpa", "web", 2, 6));
    let env = Env::start(objs).await;
    let reply = env
        .run(
            "shop",
            Op::Scale {
                workload: deploy("web"),
                replicas: 4,
                dry_run: true,
            },
        )
        .await
        .unwrap();
    let note = field(&reply, "Autoscaler");
    assert!(note.contains("horizontalpodautoscaler/web-hpa"), "{note}");
    assert!(note.contains("min 2, max 6"), "{note}");
}

/// Scaling past an autoscaler's bounds: the autoscaler sets the replicas back while opsbot
/// follows, and the reply says the scale did not hold (not "10/10 ready").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_an_autoscaler_undoes_is_reported_as_such() {
    let mut objs = seed();
    objs.push(ops_support::hpa("shop", "web-hpa", "web", 2, 6));
    let env = Env::start(objs).await;
    let (out, _) = env
        .drive(
            "shop",
            Op::Scale {
                workload: deploy("web"),
                replicas: 10,
                dry_run: false,
            },
        )
        .await;
    let reply = out.expect("scale");
    assert_eq!(reply.tone, Tone::Warning, "{reply:#?}");
    assert_eq!(field(&reply, "Replicas now"), "6");
    let text = reply.text.clone().unwrap_or_default();
    assert!(text.contains("now wants 6 replicas, not 10"), "{text}");
    assert!(text.contains("hpa NAME --min N --max N"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_sets_restarted_at_and_rolls_pods() {
    let env = Env::start(seed()).await;
    let before = env.get("apps/v1", "Deployment", "shop", "web");
    let (out, progress) = env
        .drive(
            "shop",
            Op::Restart {
                workload: deploy("web"),
            },
        )
        .await;
    let reply = out.expect("restart");
    assert_eq!(reply.title, "Restarted deployment/web");
    assert_eq!(reply.tone, Tone::Ok, "{reply:#?}");
    assert!(field(&reply, "Rollout").starts_with("complete"));
    assert_eq!(field(&reply, "Images"), "web=nginx:1.27");
    let after = env.get("apps/v1", "Deployment", "shop", "web");
    let at =
        after["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .expect("restartedAt annotation");
    assert!(at.parse::<jiff::Timestamp>().is_ok(), "RFC 3339: {at}");
    assert!(
        at.ends_with('Z') && !at.contains('.'),
        "second precision: {at}"
    );
    // A new revision, like `kubectl rollout restart`.
    let rev = |d: &serde_json::Value| {
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(rev(&after), rev(&before) + 1);
    assert_eq!(field(&reply, "Revision"), rev(&after).to_string());
    assert!(progress.len() >= 2, "{progress:?}");
    assert_honest(&progress);
    assert_eq!(progress.last().unwrap().text, "3/3 updated, 3 ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_statefulset() {
    let env = Env::start(seed()).await;
    let (out, _) = env
        .drive(
            "shop",
            Op::Restart {
                workload: sts("db"),
            },
        )
        .await;
    let reply = out.expect("restart sts");
    assert_eq!(reply.title, "Restarted statefulset/db");
    assert!(
        field(&reply, "Rollout").starts_with("complete"),
        "{reply:#?}"
    );
    let s = env.get("apps/v1", "StatefulSet", "shop", "db");
    assert!(
        s["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
}

/// Changes web's image through kubesim and waits for the rollout: revision 2.
async fn second_revision(env: &Env) {
    let mut d = env.get("apps/v1", "Deployment", "shop", "web");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    env.sim.put(d).unwrap();
    env.advance_until(120, |s| rolled_out(s, "shop", "web"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_previous_revision() {
    let env = Env::start(seed()).await;
    second_revision(&env).await;
    let (out, progress) = env
        .drive(
            "shop",
            Op::Rollback {
                name: "web".into(),
                to_revision: None,
            },
        )
        .await;
    let reply = out.expect("rollback");
    assert_eq!(reply.title, "Rolled back deployment/web to revision 1");
    assert_eq!(reply.tone, Tone::Ok, "{reply:#?}");
    assert_eq!(field(&reply, "From revision"), "2");
    assert_eq!(field(&reply, "To revision"), "1");
    assert_eq!(field(&reply, "Images"), "web=nginx:1.27");
    assert_eq!(field(&reply, "New revision"), "3");
    assert!(field(&reply, "Rollout").starts_with("complete"));
    assert_honest(&progress);
    let d = env.get("apps/v1", "Deployment", "shop", "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert!(
        d["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_named_revision_and_refusals() {
    let env = Env::start(seed()).await;

    // Only one revision: nothing to roll back to.
    let err = env
        .run(
            "shop",
            Op::Rollback {
                name: "web".into(),
                to_revision: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OpError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("nothing to roll back to"), "{err}");
    assert_eq!(err.to_reply().title, "Refused");

    second_revision(&env).await;

    // A revision that does not exist.
    let err = env
        .run(
            "shop",
            Op::Rollback {
                name: "web".into(),
                to_revision: Some(9),
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no revision 9; revisions to roll back to: 1"),
        "{err}"
    );

    // The current revision.
    let err = env
        .run(
            "shop",
            Op::Rollback {
                name: "web".into(),
                to_revision: Some(2),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already at revision 2"), "{err}");

    let (out, _) = env
        .drive(
            "shop",
            Op::Rollback {
                name: "web".into(),
                to_revision: Some(1),
            },
        )
        .await;
    let reply = out.expect("rollback to 1");
    assert_eq!(field(&reply, "Images"), "web=nginx:1.27");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_rollout_is_reported() {
    let env = Env::start(seed()).await;
    env.sim.faults().stall_rollout("shop", "web");
    let (out, progress) = env
        .drive(
            "shop",
            Op::Restart {
                workload: deploy("web"),
            },
        )
        .await;
    let reply = out.expect("the restart itself succeeds");
    assert_eq!(reply.tone, Tone::Danger, "{reply:#?}");
    let rollout = field(&reply, "Rollout");
    assert!(rollout.starts_with("stalled"), "{rollout}");
    assert!(rollout.contains("progress deadline"), "{rollout}");
    assert!(reply.footer.as_deref().unwrap().contains("rollback web"));
    assert!(!progress.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_follow_times_out() {
    let env = Env::start_with(
        seed(),
        |_| None,
        |o| {
            o.rollout_timeout = Duration::from_millis(300);
        },
    )
    .await;
    // The clock stays paused: the new pods never get ready, the deadline is never reached.
    let reply = env
        .run(
            "shop",
            Op::Scale {
                workload: deploy("web"),
                replicas: 6,
                dry_run: false,
            },
        )
        .await
        .expect("scale succeeds");
    assert_eq!(reply.tone, Tone::Warning, "{reply:#?}");
    let rollout = field(&reply, "Rollout");
    assert!(rollout.starts_with("still rolling out after"), "{rollout}");
    assert!(
        reply
            .footer
            .as_deref()
            .unwrap()
            .contains("status deployment/web")
    );
    // The change is in place.
    assert_eq!(
        env.get("apps/v1", "Deployment", "shop", "web")["spec"]["replicas"],
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployments_are_not_restarted_or_rolled_back() {
    let env = Env::start(seed()).await;
    second_revision(&env).await;
    let mut d = env.get("apps/v1", "Deployment", "shop", "web");
    d["spec"]["paused"] = json!(true);
    env.sim.put(d).unwrap();
    for op in [
        Op::Restart {
            workload: deploy("web"),
        },
        Op::Rollback {
            name: "web".into(),
            to_revision: None,
        },
    ] {
        // Refused before anyone is asked to approve it, and when run.
        let err = env
            .op
            .precheck(&Env::cmd("shop", op.clone()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("deployment/web is paused"),
            "{err}"
        );
        let err = env.run("shop", op).await.unwrap_err();
        assert!(matches!(err, OpError::Refused(_)), "{err:?}");
        assert!(
            err.to_string().contains("deployment/web is paused"),
            "{err}"
        );
    }
    let d = env.get("apps/v1", "Deployment", "shop", "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
}

/// A statefulset updated `OnDelete` replaces no pod on a restart: refused (before approval
/// too). Scaling it still waits for the new pods to be ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_statefulsets_are_not_restarted_and_scaling_waits_for_ready() {
    let mut objs = seed();
    let mut ledger = statefulset("shop", "ledger", "postgres:16", 1);
    ledger["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    objs.push(ledger);
    let env = Env::start(objs).await;
    let restart = Op::Restart {
        workload: sts("ledger"),
    };
    let err = env
        .op
        .precheck(&Env::cmd("shop", restart.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is updated OnDelete"), "{err}");
    let err = env.run("shop", restart).await.unwrap_err();
    assert!(matches!(err, OpError::Refused(_)), "{err:?}");
    let ledger = env.get("apps/v1", "StatefulSet", "shop", "ledger");
    assert!(
        ledger["spec"]["template"]["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/restartedAt")
            .is_none(),
        "{ledger}"
    );

    let (out, _) = env
        .drive(
            "shop",
            Op::Scale {
                workload: sts("ledger"),
                replicas: 3,
                dry_run: false,
            },
        )
        .await;
    let reply = out.expect("scale sts");
    let rollout = field(&reply, "Rollout");
    assert!(rollout.starts_with("complete"), "{reply:#?}");
    assert!(rollout.contains("3 ready"), "{rollout}");
    let ledger = env.get("apps/v1", "StatefulSet", "shop", "ledger");
    assert_eq!(ledger["status"]["readyReplicas"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_lost_when_the_workload_disappears() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    // Right after the restart's patch, someone deletes the deployment.
    let patched = Arc::new(AtomicBool::new(false));
    let env = Env::start_with(
        seed(),
        move |sim| {
            let hook: ops_support::Hook =
                Arc::new(move |req: &http::Request<kube::client::Body>| {
                    let path = req.uri().path();
                    if path == "/apis/apps/v1/namespaces/shop/deployments/web" {
                        if req.method() == http::Method::PATCH {
                            patched.store(true, Ordering::SeqCst);
                        } else if req.method() == http::Method::GET
                            && patched.load(Ordering::SeqCst)
                        {
                            let _ = sim.delete("apps/v1", "Deployment", "shop", "web");
                        }
                    }
                });
            Some(hook)
        },
        |_| {},
    )
    .await;
    let reply = env
        .run(
            "shop",
            Op::Restart {
                workload: deploy("web"),
            },
        )
        .await
        .expect("the restart happened");
    assert_eq!(reply.tone, Tone::Danger, "{reply:#?}");
    let rollout = field(&reply, "Rollout");
    assert!(
        rollout.starts_with("could not follow the rollout: deployment `web` not found"),
        "{rollout}"
    );
}

/// A bar never goes back and never shows more than its target, nor does its text.
fn assert_honest(progress: &[Progress]) {
    assert!(!progress.is_empty());
    for p in progress {
        assert!(p.done <= p.total, "{progress:#?}");
        let (a, b) = p.text.split_once(' ').unwrap().0.split_once('/').unwrap();
        let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
        assert!(a <= b, "{} in {progress:#?}", p.text);
    }
    assert!(
        progress.windows(2).all(|w| w[0].done <= w[1].done),
        "{progress:#?}"
    );
    let last = progress.last().unwrap();
    assert_eq!(last.done, last.total, "{progress:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_progress_is_honest() {
    let env = Env::start(seed()).await;
    // `2/2 ready`, never `3/2`.
    let (out, progress) = env
        .drive(
            "shop",
            Op::Scale {
                workload: deploy("web"),
                replicas: 2,
                dry_run: false,
            },
        )
        .await;
    out.expect("scale down");
    assert_honest(&progress);
    assert_eq!(progress.last().unwrap().text, "2/2 ready");
}
