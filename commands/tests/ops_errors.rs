//! Every error path of the operations, against kubesim through kube-rs: not found (with nearest
//! names), forbidden, conflicts, 5xx / 429 / timeouts with retries, rejected requests, and the
//! cluster set-up.

mod ops_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ops_support::{Env, Hook, all_text, deployment, field, namespace, statefulset};
use opsbot_commands::ops::KubeconfigCluster;
use opsbot_commands::{
    Clusters, Command, Op, OpError, Operator, PodSelector, ProgressSender, Tone, Workload,
    WorkloadKind,
};
use serde_json::json;

fn seed() -> Vec<serde_json::Value> {
    vec![
        namespace("shop"),
        deployment("shop", "web", "nginx:1.27", 2),
        deployment("shop", "worker", "busybox:1.36", 1),
        statefulset("shop", "db", "postgres:16", 1),
        ops_support::cronjob("shop", "nightly-backup", "0 2 * * *"),
    ]
}

fn status(kind: WorkloadKind, name: &str) -> Op {
    Op::Status {
        workload: Workload {
            kind,
            name: name.into(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_suggests_nearest_names() {
    let env = Env::start(seed()).await;
    let err = env
        .run("shop", status(WorkloadKind::Deployment, "wbe"))
        .await
        .unwrap_err();
    let OpError::NotFound {
        kind,
        name,
        namespace,
        suggestions,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind.as_str(), name.as_str(), namespace.as_str()),
        ("deployment", "wbe", "shop")
    );
    assert_eq!(suggestions, &["web"]);
    let reply = err.to_reply();
    assert_eq!(reply.title, "Not found");
    assert_eq!(field(&reply, "Did you mean"), "web");

    // The same name exists as the other kind.
    let err = env
        .run("shop", status(WorkloadKind::Deployment, "db"))
        .await
        .unwrap_err();
    let OpError::NotFound { suggestions, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        suggestions.first().map(String::as_str),
        Some("statefulset/db")
    );

    // pods / logs look at deployments, statefulsets and pods.
    let err = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Name("workr".into())),
            },
        )
        .await
        .unwrap_err();
    let OpError::NotFound {
        kind, suggestions, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(kind, "deployment, statefulset or pod");
    assert_eq!(suggestions.first().map(String::as_str), Some("worker"));

    // A CronJob.
    let err = env
        .run(
            "shop",
            Op::BackupRun {
                cronjob: "nightly-bakup".into(),
                job: None,
            },
        )
        .await
        .unwrap_err();
    let OpError::NotFound {
        kind, suggestions, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(kind, "cronjob");
    assert_eq!(suggestions, &["nightly-backup"]);

    // Nothing close: no suggestions, a hint instead.
    let err = env
        .run("shop", status(WorkloadKind::StatefulSet, "zzzzzz"))
        .await
        .unwrap_err();
    let reply = err.to_reply();
    assert!(reply.fields.is_empty(), "{reply:#?}");
    assert!(reply.footer.unwrap().contains("namespace"));
}

/// Every operation that names a workload says what is missing and what is near, the writes
/// included (scale reads through the scale subresource first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_named_operation_reports_not_found_with_suggestions() {
    let env = Env::start(seed()).await;
    let web = || Workload {
        kind: WorkloadKind::Deployment,
        name: "wbe".into(),
    };
    let cases = [
        (
            Op::Scale {
                workload: web(),
                replicas: 3,
                dry_run: false,
            },
            "deployment",
            "web",
        ),
        (
            Op::Scale {
                workload: Workload {
                    kind: WorkloadKind::StatefulSet,
                    name: "dbb".into(),
                },
                replicas: 2,
                dry_run: true,
            },
            "statefulset",
            "db",
        ),
        (Op::Restart { workload: web() }, "deployment", "web"),
        (
            Op::Rollback {
                name: "wbe".into(),
                to_revision: None,
            },
            "deployment",
            "web",
        ),
        (
            Op::Logs {
                source: PodSelector::Name("wokrer".into()),
                tail: None,
                since: None,
                grep: None,
                container: None,
                previous: false,
            },
            "deployment",
            "worker",
        ),
        (
            Op::BackupStatus {
                cronjob: Some("nightly-bakup".into()),
                all: false,
            },
            "cronjob",
            "nightly-backup",
        ),
    ];
    for (op, want_kind, want_suggestion) in cases {
        let what = format!("{op:?}");
        let err = env.run("shop", op).await.unwrap_err();
        let OpError::NotFound {
            kind,
            namespace,
            suggestions,
            ..
        } = &err
        else {
            panic!("{what}: {err:?}")
        };
        assert_eq!(
            (kind.as_str(), namespace.as_str()),
            (want_kind, "shop"),
            "{what}"
        );
        assert_eq!(
            suggestions.first().map(String::as_str),
            Some(want_suggestion),
            "{what}"
        );
        assert_eq!(
            field(&err.to_reply(), "Did you mean"),
            want_suggestion,
            "{what}"
        );
    }
    // Nothing was written.
    let web = env.get("apps/v1", "Deployment", "shop", "web");
    assert_eq!(web["spec"]["replicas"], 2);
    assert!(
        web["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_null()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_namespace_suggests_namespaces() {
    let env = Env::start(seed()).await;
    let err = env
        .run("shpo", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap_err();
    let OpError::NotFound {
        kind,
        name,
        suggestions,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((kind.as_str(), name.as_str()), ("namespace", "shpo"));
    assert_eq!(suggestions, &["shop"]);
    // Said once, as what it is: a namespace that does not exist, and the nearest to use.
    let reply = err.to_reply();
    assert_eq!(
        reply.text.as_deref(),
        Some("namespace `shpo` does not exist"),
        "{reply:#?}"
    );
    assert_eq!(field(&reply, "Did you mean"), "-n shop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_names_the_missing_permission() {
    let env = Env::start(seed()).await;
    env.sim.faults().forbid("patch", "deployments/scale");
    let err = env
        .run(
            "shop",
            Op::Scale {
                workload: Workload {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                },
                replicas: 3,
                dry_run: false,
            },
        )
        .await
        .unwrap_err();
    let OpError::Forbidden {
        verb,
        resource,
        group,
        namespace,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (
            verb.as_str(),
            resource.as_str(),
            group.as_str(),
            namespace.as_str()
        ),
        ("patch", "deployments/scale", "apps", "shop")
    );
    assert!(message.contains("forbidden"), "{message}");
    let reply = err.to_reply();
    assert_eq!(reply.tone, Tone::Danger);
    assert_eq!(
        field(&reply, "Missing permission"),
        "patch deployments/scale (apps API group)"
    );
    assert!(err.to_string().contains("may not patch deployments/scale"));
    // Nothing changed.
    assert_eq!(
        env.get("apps/v1", "Deployment", "shop", "web")["spec"]["replicas"],
        2
    );

    // Logs need pods/log.
    env.sim.faults().forbid("get", "pods/log");
    let err = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("web".into()),
                tail: None,
                since: None,
                grep: None,
                container: None,
                previous: false,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::Forbidden { verb, resource, group, .. }
            if verb == "get" && resource == "pods/log" && group.is_empty()),
        "{err:?}"
    );
    assert_eq!(
        field(&err.to_reply(), "Missing permission"),
        "get pods/log (core API group)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_survives_forbidden_events() {
    let env = Env::start(seed()).await;
    env.sim.faults().forbid("list", "events");
    let reply = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .expect("status without events");
    assert!(
        field(&reply, "Events").contains("may not list events"),
        "{reply:#?}"
    );
}

/// A hook that changes web behind opsbot's back before each of the first `n` updates of it,
/// so kubesim answers those updates with a real 409 Conflict.
fn conflict_hook(
    n: u32,
    seen: Arc<AtomicU32>,
) -> impl FnOnce(Arc<kubesim::KubeSim>) -> Option<Hook> {
    move |sim| {
        let hook: Hook = Arc::new(move |req: &http::Request<kube::client::Body>| {
            if req.method() == http::Method::PUT
                && req.uri().path() == "/apis/apps/v1/namespaces/shop/deployments/web"
            {
                let i = seen.fetch_add(1, Ordering::SeqCst);
                if i < n {
                    let mut d = sim
                        .get("apps/v1", "Deployment", "shop", "web")
                        .expect("web");
                    d["metadata"]["annotations"]["touched-by-someone-else"] = json!(i.to_string());
                    sim.put(d).expect("concurrent write");
                }
            }
        });
        Some(hook)
    }
}

/// web at revision 2, so there is something to roll back to.
async fn with_history(env: &Env) {
    let mut d = env.get("apps/v1", "Deployment", "shop", "web");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    env.sim.put(d).unwrap();
    env.advance_until(120, |s| ops_support::rolled_out(s, "shop", "web"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_is_retried_once() {
    let seen = Arc::new(AtomicU32::new(0));
    let env = Env::start_with(seed(), conflict_hook(1, seen.clone()), |_| {}).await;
    with_history(&env).await;
    let (out, _) = env
        .drive(
            "shop",
            Op::Rollback {
                name: "web".into(),
                to_revision: None,
            },
        )
        .await;
    let reply = out.expect("the retry succeeds");
    assert_eq!(field(&reply, "To revision"), "1");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one conflict, one retry");
    let d = env.get("apps/v1", "Deployment", "shop", "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_conflict_is_reported() {
    let seen = Arc::new(AtomicU32::new(0));
    let env = Env::start_with(seed(), conflict_hook(5, seen.clone()), |_| {}).await;
    with_history(&env).await;
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
    assert!(
        matches!(&err, OpError::Conflict { resource, name, .. } if resource == "deployment" && name == "web"),
        "{err:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2, "retried exactly once");
    let reply = err.to_reply();
    assert_eq!(reply.title, "Conflict");
    assert!(reply.footer.unwrap().contains("retried once"));
    // Still at nginx:1.28.
    let d = env.get("apps/v1", "Deployment", "shop", "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff() {
    let env = Env::start(seed()).await;
    // Two failures, then success: the third attempt gets through.
    env.sim
        .faults()
        .fail_next("/apis/apps/v1/namespaces/shop/deployments/web", 2, 500);
    let reply = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .expect("retried");
    assert_eq!(reply.title, "deployment/web: complete");

    // 429 too.
    env.sim
        .faults()
        .fail_next("/apis/apps/v1/namespaces/shop/deployments/web", 2, 429);
    env.run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .expect("retried after 429");
    env.sim
        .faults()
        .fail_next("/apis/apps/v1/namespaces/shop/deployments/web", 3, 429);
    let err = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            OpError::Unavailable {
                code: 429,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );

    // Failing for longer than the attempts: reported.
    env.sim
        .faults()
        .fail_next("/apis/apps/v1/namespaces/shop/deployments/web", 3, 500);
    let err = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap_err();
    let OpError::Unavailable {
        verb,
        resource,
        code,
        attempts,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (verb.as_str(), resource.as_str(), *code, *attempts),
        ("get", "deployments", 500, 3)
    );
    let reply = err.to_reply();
    assert_eq!(reply.title, "Kubernetes API error");
    assert_eq!(field(&reply, "HTTP status"), "500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_api_times_out_after_retries() {
    let env = Env::start_with(
        seed(),
        |_| None,
        |o| {
            o.retry.request_timeout = Duration::from_millis(150);
        },
    )
    .await;
    env.sim.faults().set_latency(Duration::from_secs(2));
    let err = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::Timeout { verb, resource, attempts }
            if verb == "get" && resource == "deployments" && *attempts == 3),
        "{err:?}"
    );
    assert_eq!(err.to_reply().title, "Kubernetes API timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_say_why() {
    let env = Env::start(seed()).await;
    // A pod that has not started yet: the API server refuses its logs (400).
    env.sim
        .put(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "fresh", "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        }))
        .unwrap();
    let logs = |name: &str| Op::Logs {
        source: PodSelector::Name(name.into()),
        tail: Some(10),
        since: None,
        grep: None,
        container: None,
        previous: false,
    };
    // A bare name is a deployment (the policy ruled on `deployment/fresh`): the pod of that
    // name is suggested, not read.
    let err = env.run("shop", logs("fresh")).await.unwrap_err();
    let OpError::NotFound {
        kind, suggestions, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind.as_str(), suggestions[0].as_str()),
        ("deployment", "pod/fresh")
    );
    let err = env.run("shop", logs("pod/fresh")).await.unwrap_err();
    let OpError::Rejected { code, message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*code, 400);
    assert!(message.contains("waiting to start"), "{message}");
    assert_eq!(err.to_reply().title, "Request rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_unknown_missing_and_from_kubeconfig() {
    let env = Env::start(seed()).await;
    // Unknown cluster, with a suggestion.
    let cmd = Command {
        cluster: Some("sym".into()),
        namespace: Some("shop".into()),
        op: status(WorkloadKind::Deployment, "web"),
    };
    let err = env
        .op
        .execute(&cmd, ProgressSender::none())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::UnknownCluster { name, known, suggestions }
            if name == "sym" && known == &["sim"] && suggestions == &["sim"]),
        "{err:?}"
    );

    // No cluster at all.
    let none = Operator::new(Clusters::new());
    let err = none
        .execute(&cmd, ProgressSender::none())
        .await
        .unwrap_err();
    assert!(matches!(err, OpError::NoCluster), "{err:?}");

    // A cluster from a kubeconfig context; its namespace defaults to the context's.
    let path = std::env::temp_dir().join(format!("opsbot-ops-kubeconfig-{}", std::process::id()));
    std::fs::write(&path, env.sim.kubeconfig_yaml()).unwrap();
    let clusters = Clusters::from_kubeconfig(
        Some(&path),
        &[
            KubeconfigCluster {
                name: "dev".into(),
                context: Some("kubesim".into()),
                default_namespace: Some("shop".into()),
            },
            KubeconfigCluster {
                name: "plain".into(),
                context: None,
                default_namespace: None,
            },
        ],
    )
    .await
    .expect("kubeconfig loads");
    std::fs::remove_file(&path).ok();
    assert_eq!(clusters.default_name(), Some("dev"));
    assert_eq!(clusters.get(Some("plain")).unwrap().1, "default");
    let op = Operator::with_options(clusters, ops_support::options(&env.sim));
    let reply = op
        .execute(
            &Command {
                cluster: None,
                namespace: None,
                op: status(WorkloadKind::Deployment, "web"),
            },
            ProgressSender::none(),
        )
        .await
        .expect("status through the kubeconfig cluster");
    assert!(all_text(&reply).contains("namespace shop · cluster dev"));

    // A context that does not exist.
    let path = std::env::temp_dir().join(format!("opsbot-ops-kubeconfig2-{}", std::process::id()));
    std::fs::write(&path, env.sim.kubeconfig_yaml()).unwrap();
    let err = Clusters::from_kubeconfig(
        Some(&path),
        &[KubeconfigCluster {
            name: "x".into(),
            context: Some("nope".into()),
            default_namespace: None,
        }],
    )
    .await
    .unwrap_err();
    std::fs::remove_file(&path).ok();
    assert!(
        err.to_string().starts_with("cluster `x`: kubeconfig"),
        "{err}"
    );

    // Not in a cluster here.
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        assert!(Clusters::in_cluster("here", None).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_and_help_are_not_cluster_operations() {
    let env = Env::start(seed()).await;
    let err = env.run("shop", Op::Whoami).await.unwrap_err();
    assert!(matches!(&err, OpError::NotAnOperation(c) if c == "whoami"));
    assert_eq!(err.to_reply().tone, Tone::Info);
    let reply = env
        .run(
            "shop",
            Op::Help {
                command: Some("scale".into()),
            },
        )
        .await
        .expect("help");
    assert!(all_text(&reply).contains("scale"), "{reply:#?}");
}
