//! status, pods, logs and events, against kubesim through kube-rs.

mod ops_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::SignedDuration;
use ops_support::{Env, all_text, deployment, field, namespace, statefulset, time};
use opsbot_commands::{Op, OpError, PodSelector, Tone, Workload, WorkloadKind};
use serde_json::{Value, json};

fn seed() -> Vec<Value> {
    let mut multi = deployment("shop", "multi", "nginx:1.27", 1);
    multi["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "app", "image": "nginx:1.27"},
        {"name": "sidecar", "image": "envoy:1.30"},
    ]);
    vec![
        namespace("shop"),
        deployment("shop", "web", "nginx:1.27", 3),
        deployment("shop", "api", "ghcr.io/acme/api:2.0", 2),
        statefulset("shop", "db", "postgres:16", 2),
        multi,
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

/// The "Recent warning events" table of a `status` reply.
fn warnings_block(reply: &opsbot_commands::Reply) -> &opsbot_commands::Monospace {
    reply
        .blocks
        .iter()
        .find(|b| b.caption.as_deref() == Some("Recent warning events"))
        .expect("warnings block")
}

fn logs(name: &str) -> Op {
    Op::Logs {
        source: PodSelector::Name(name.into()),
        tail: None,
        since: None,
        grep: None,
        container: None,
        previous: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_complete_deployment() {
    let env = Env::start(seed()).await;
    let reply = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap();
    assert_eq!(reply.title, "deployment/web: complete");
    assert_eq!(reply.tone, Tone::Ok);
    assert_eq!(reply.text.as_deref(), Some("successfully rolled out"));
    assert_eq!(field(&reply, "Revision"), "1");
    assert_eq!(field(&reply, "Images"), "web=nginx:1.27");
    assert_eq!(
        field(&reply, "Replicas"),
        "desired 3 · current 3 · updated 3 · ready 3 · available 3"
    );
    let conditions = reply
        .blocks
        .iter()
        .find(|b| b.caption.as_deref() == Some("Conditions"))
        .expect("conditions block");
    assert!(conditions.body.starts_with("TYPE"), "{}", conditions.body);
    assert!(conditions.body.contains("Available"));
    assert!(conditions.body.contains("Progressing"));
    assert_eq!(
        reply.footer.as_deref(),
        Some("namespace shop · cluster sim")
    );

    let reply = env
        .run("shop", status(WorkloadKind::StatefulSet, "db"))
        .await
        .unwrap();
    assert_eq!(reply.title, "statefulset/db: complete", "{reply:#?}");
    assert_eq!(field(&reply, "Images"), "db=postgres:16");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_progressing_then_stalled_with_warnings() {
    let env = Env::start(seed()).await;
    env.sim.faults().stall_rollout("shop", "web");
    let mut d = env.get("apps/v1", "Deployment", "shop", "web");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:9.99");
    env.sim.put(d).unwrap();
    env.sim.advance(Duration::from_secs(5)).await;

    let reply = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap();
    assert_eq!(reply.title, "deployment/web: progressing", "{reply:#?}");
    assert_eq!(reply.tone, Tone::Info);
    assert_eq!(field(&reply, "Revision"), "2");
    assert_eq!(field(&reply, "Images"), "web=nginx:9.99");

    // Past the progress deadline (60s in the seed).
    env.sim.advance(Duration::from_secs(90)).await;
    let reply = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap();
    assert_eq!(reply.title, "deployment/web: stalled", "{reply:#?}");
    assert_eq!(reply.tone, Tone::Danger);
    assert!(
        reply
            .text
            .as_deref()
            .unwrap()
            .contains("exceeded its progress deadline")
    );
    let warnings = warnings_block(&reply);
    assert!(
        warnings.body.contains("ProgressDeadlineExceeded"),
        "{}",
        warnings.body
    );
    assert!(warnings.body.lines().skip(1).all(|l| l.contains("Warning")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_sorted_unhealthy_first() {
    let env = Env::start(seed()).await;
    env.sim.faults().stall_rollout("shop", "web");
    let mut d = env.get("apps/v1", "Deployment", "shop", "web");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:9.99");
    env.sim.put(d).unwrap();
    env.sim.advance(Duration::from_secs(10)).await;

    let reply = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Name("web".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "Pods of deployment/web");
    assert_eq!(reply.tone, Tone::Warning, "{reply:#?}");
    let table = &reply.blocks[0].body;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(lines[0].contains("STATUS") && lines[0].contains("NODE"));
    // The stuck new pod(s) come first, the healthy old ones after.
    let first_healthy = lines
        .iter()
        .position(|l| l.contains(" Running "))
        .expect("healthy pods");
    assert!(first_healthy > 1, "{table}");
    assert!(
        lines[1..first_healthy]
            .iter()
            .all(|l| !l.contains(" Running ")),
        "{table}"
    );
    assert!(
        lines[first_healthy..]
            .iter()
            .all(|l| l.contains(" Running ")),
        "{table}"
    );
    assert!(
        lines[1].contains("ImagePullBackOff") || lines[1].contains("Pending"),
        "{table}"
    );
    assert!(reply.text.unwrap().contains("unhealthy"));
}

/// A running pod as a kubelet reports it, with `restarts` restarts and `ready` readiness.
fn running_pod(name: &str, node: &str, restarts: i64, ready: bool) -> Value {
    let started = ops_support::ago(7200);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "flaky"},
            "creationTimestamp": started},
        "spec": {"nodeName": node, "containers": [
            {"name": "app", "image": "busybox"}, {"name": "sidecar", "image": "envoy:1.30"}]},
        "status": {"phase": "Running", "startTime": started,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [
                {"name": "app", "image": "busybox", "imageID": "", "ready": ready,
                 "restartCount": restarts, "state": {"running": {"startedAt": started}}},
                {"name": "sidecar", "image": "envoy:1.30", "imageID": "", "ready": true,
                 "restartCount": 1, "state": {"running": {"startedAt": started}}}]},
    })
}

/// Every column (name, status, ready, restarts, age, node), and among healthy pods the one
/// that restarts most comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_show_ready_restarts_age_and_node() {
    let env = Env::start(vec![
        namespace("shop"),
        running_pod("flaky-a", "node-a", 0, true),
        running_pod("flaky-b", "node-b", 6, true),
        running_pod("flaky-c", "node-c", 0, false),
    ])
    .await;
    let reply = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Labels("app=flaky".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.text.as_deref(), Some("3 pods, 1 unhealthy."));
    let mut rows: Vec<Vec<&str>> = reply.blocks[0]
        .body
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Created two hours ago (a slow run may add minutes: `2h1m`).
    for row in &mut rows[1..] {
        assert!(row[4].starts_with("2h"), "{}", reply.blocks[0].body);
        row[4] = "2h";
    }
    assert_eq!(
        rows,
        [
            ["NAME", "STATUS", "READY", "RESTARTS", "AGE", "NODE"],
            ["flaky-c", "Running", "1/2", "1", "2h", "node-c"],
            ["flaky-b", "Running", "2/2", "7", "2h", "node-b"],
            ["flaky-a", "Running", "2/2", "1", "2h", "node-a"],
        ],
        "{}",
        reply.blocks[0].body
    );
}

/// `pods` alone (kubectl's `get pods -n NS`) lists every pod of the namespace, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_alone_list_the_whole_namespace() {
    let mut objects = seed();
    objects.extend([
        namespace("other"),
        deployment("other", "elsewhere", "nginx:1.27", 2),
    ]);
    let env = Env::start(objects).await;
    let reply = env.run("shop", Op::Pods { selector: None }).await.unwrap();
    assert_eq!(reply.title, "Pods in shop");
    // web 3, api 2, db 2, multi 1.
    assert_eq!(reply.text.as_deref(), Some("8 pods, all healthy."));
    let body = &reply.blocks[0].body;
    for (prefix, n) in [
        ("web-", 3),
        ("api-", 2),
        ("db-", 2),
        ("multi-", 1),
        ("elsewhere-", 0),
    ] {
        assert_eq!(
            body.lines().filter(|l| l.starts_with(prefix)).count(),
            n,
            "{prefix}: {body}"
        );
    }

    let reply = env.run("other", Op::Pods { selector: None }).await.unwrap();
    assert_eq!(reply.text.as_deref(), Some("2 pods, all healthy."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_by_selector_and_by_pod_name() {
    let env = Env::start(seed()).await;
    let reply = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Labels("app in (api, db)".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.tone, Tone::Ok);
    assert_eq!(reply.text.as_deref(), Some("4 pods, all healthy."));
    let body = &reply.blocks[0].body;
    assert_eq!(body.lines().filter(|l| l.starts_with("api-")).count(), 2);
    assert_eq!(body.lines().filter(|l| l.starts_with("db-")).count(), 2);
    assert!(body.contains("kubesim-node-"), "{body}");

    let pod = body.lines().find(|l| l.starts_with("db-")).unwrap();
    let pod = pod.split_whitespace().next().unwrap().to_owned();
    let reply = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Name(pod.clone())),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, format!("Pod {pod}"));

    let reply = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Labels("app=nothing-here".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.text.as_deref(), Some("No pods."));

    let err = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Labels("app in api".into())),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OpError::Refused(_)), "{err:?}");
}

/// `logs -l SELECTOR` (as the runbooks' `kubectl logs -l app=envoy`) reads the pods with the
/// labels, and only them; a broken selector is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_by_label_read_the_matching_pods() {
    let env = Env::start(seed()).await;
    env.sim.advance(Duration::from_secs(600)).await;
    let logs = |selector: &str| Op::Logs {
        source: PodSelector::Labels(selector.into()),
        tail: Some(30),
        since: None,
        grep: None,
        container: None,
        previous: false,
    };
    let reply = env.run("shop", logs("app=api")).await.unwrap();
    assert_eq!(reply.title, "Logs of pods matching app=api");
    let block = &reply.blocks[0];
    assert_eq!(block.caption.as_deref(), Some("2 pods matching app=api"));
    assert!(
        block.body.lines().all(|l| l.starts_with("[api-")),
        "only the pods with the label: {}",
        block.body
    );

    let reply = env.run("shop", logs("app=nothing-has-this")).await.unwrap();
    assert_eq!(reply.text.as_deref(), Some("No pods to read logs from."));

    let err = env.run("shop", logs("app in api")).await.unwrap_err();
    assert!(matches!(err, OpError::Refused(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_all_pods_are_prefixed_and_bounded() {
    let env = Env::start(seed()).await;
    env.sim.advance(Duration::from_secs(600)).await;
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("web".into()),
                tail: Some(12),
                since: None,
                grep: None,
                container: None,
                previous: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "Logs of deployment/web");
    let block = &reply.blocks[0];
    assert_eq!(block.caption.as_deref(), Some("3 pods of deployment/web"));
    let lines: Vec<&str> = block.body.lines().collect();
    assert_eq!(lines.len(), 12);
    assert!(
        lines.iter().all(|l| l.starts_with("[web-")),
        "{}",
        block.body
    );
    let pods: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l.split(']').next().unwrap()).collect();
    assert_eq!(pods.len(), 3, "lines of every pod, merged by time");
    // Merged by time: the kubesim lines carry their own timestamps after the prefix.
    let stamps: Vec<&str> = lines
        .iter()
        .map(|l| l.split("] ").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted);
    assert_eq!(reply.text.as_deref(), Some("Last 12 lines."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_the_newest_pod_only() {
    let env = Env::start_with(seed(), |_| None, |o| o.logs_all_pods = false).await;
    env.sim.advance(Duration::from_secs(300)).await;
    let reply = env.run("shop", logs("api")).await.unwrap();
    let block = &reply.blocks[0];
    let caption = block.caption.clone().unwrap();
    assert!(caption.starts_with("api-"), "{caption}");
    assert!(!block.body.starts_with('['), "no prefix for one pod");
    assert_eq!(field(&reply, "Note"), "1 older pods not shown");
    // Default tail.
    assert!(block.body.lines().count() <= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_grep_since_and_containers() {
    let env = Env::start(seed()).await;
    env.sim.advance(Duration::from_secs(3600)).await;

    // --grep is case-insensitive and scans more than --tail lines.
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("api".into()),
                tail: Some(5),
                since: None,
                grep: Some("status=500".into()),
                container: None,
                previous: false,
            },
        )
        .await
        .unwrap();
    if let Some(block) = reply.blocks.first() {
        assert!(block.body.lines().count() <= 5);
        assert!(
            block.body.lines().all(|l| l.contains("status=500")),
            "{}",
            block.body
        );
    } else {
        assert!(reply.text.unwrap().starts_with("No log lines matching"));
    }
    // A pattern on about one line in six, in capitals: five matches need more than the
    // five newest lines of each pod, and matching ignores case.
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("api".into()),
                tail: Some(5),
                since: None,
                grep: Some("PATH=/METRICS STATUS=200".into()),
                container: None,
                previous: false,
            },
        )
        .await
        .unwrap();
    let body = &reply.blocks.first().expect("matching lines").body;
    assert_eq!(body.lines().count(), 5, "{body}");
    assert!(
        body.lines().all(|l| l.contains("path=/metrics status=200")),
        "{body}"
    );

    // --since bounds the window: 30s at one line per 5s.
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("web".into()),
                tail: Some(500),
                since: Some(Duration::from_secs(30)),
                grep: None,
                container: None,
                previous: false,
            },
        )
        .await
        .unwrap();
    let n = reply.blocks[0].body.lines().count();
    assert!((3..=3 * 7).contains(&n), "{n} lines");
    assert!(reply.text.unwrap().contains("since 30s ago"));

    // Two containers: the first is picked, and the reply says so.
    let reply = env.run("shop", logs("multi")).await.unwrap();
    assert!(
        field(&reply, "Note").contains("container `app` of 2 (others: sidecar; use --container)")
    );
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("multi".into()),
                tail: Some(3),
                since: None,
                grep: None,
                container: Some("sidecar".into()),
                previous: false,
            },
        )
        .await
        .unwrap();
    assert!(
        reply.blocks[0]
            .caption
            .as_deref()
            .unwrap()
            .ends_with("(sidecar)")
    );
    let err = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("multi".into()),
                tail: None,
                since: None,
                grep: None,
                container: Some("nope".into()),
                previous: false,
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no container `nope`; its containers: app, sidecar"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_byte_bounded_and_masked() {
    let mut objs = seed();
    // kubesim's first log line of a container names its image: make it look like a secret.
    objs.push(deployment(
        "shop",
        "leaky",
        "registry.example/app:1.0,password=hunter2",
        1,
    ));
    let env = Env::start_with(objs, |_| None, |o| o.max_log_bytes = 1024).await;
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("leaky".into()),
                tail: Some(500),
                since: None,
                grep: Some("starting".into()),
                container: None,
                previous: false,
            },
        )
        .await
        .unwrap();
    let text = all_text(&reply);
    assert!(text.contains("password=****"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // `--grep` reads what is shown: it cannot tell a secret's first letters.
    let grep = |text: &str, pod: &str| Op::Logs {
        source: PodSelector::Name(pod.into()),
        tail: Some(500),
        since: None,
        grep: Some(text.into()),
        container: None,
        previous: false,
    };
    for probe in ["password=h", "hunter"] {
        let reply = env.run("shop", grep(probe, "leaky")).await.unwrap();
        let text = all_text(&reply);
        assert!(!text.contains("starting"), "{probe}: {text}");
    }

    env.sim.advance(Duration::from_secs(3600)).await;
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("web".into()),
                tail: Some(500),
                since: None,
                grep: None,
                container: None,
                previous: false,
            },
        )
        .await
        .unwrap();
    assert!(reply.blocks[0].body.len() <= 1024);
    assert!(
        reply
            .fields
            .iter()
            .any(|f| f.value.contains("output reached the 1 KiB limit")),
        "{reply:#?}"
    );
}

/// A private key logged across lines is masked whole (masking reads each pod's text, not line
/// by line), and `--grep` finds only what is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_mask_private_keys_across_lines() {
    let mut objs = seed();
    // kubesim's first log line of a container names its image: put a key in it.
    objs.push(deployment(
        "shop",
        "keyed",
        "app:1.0\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nc2VjcmV0Ym9keQ==\n\
         -----END RSA PRIVATE KEY-----",
        1,
    ));
    let env = Env::start(objs).await;
    let logs = |grep: &str| Op::Logs {
        source: PodSelector::Name("keyed".into()),
        tail: Some(500),
        since: None,
        grep: Some(grep.into()),
        container: None,
        previous: false,
    };
    let reply = env.run("shop", logs("PRIVATE KEY")).await.unwrap();
    let text = all_text(&reply);
    assert!(text.contains("-----PRIVATE KEY ****-----"), "{text}");
    // The key's lines are not there to be found (the reply echoes only what was asked).
    for grep in ["MIIEowIBAAK", "c2VjcmV0Ym9keQ", "END RSA"] {
        let reply = env.run("shop", logs(grep)).await.unwrap();
        assert!(
            reply.blocks.iter().all(|b| !b.body.contains(grep)),
            "{grep}: {reply:#?}"
        );
    }
}

/// `events` of the whole namespace.
fn all_events() -> Op {
    Op::Events {
        name: None,
        since: None,
        warnings: false,
    }
}

fn event(ns: &str, name: &str, obj: &str, ty: &str, reason: &str, msg: &str, at: String) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Deployment", "namespace": ns, "name": obj},
        "type": ty, "reason": reason, "message": msg,
        "firstTimestamp": at, "lastTimestamp": at, "count": 1,
        "source": {"component": "test"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sorted_filtered_and_masked() {
    let env = Env::start(vec![
        namespace("quiet"),
        namespace("shop"),
        deployment("shop", "web", "nginx:1.27", 1),
    ])
    .await;
    let now = env.sim.clock().now();
    let at = |secs: i64| time(now - SignedDuration::from_secs(secs));
    for e in [
        event("quiet", "e1", "web", "Normal", "Newest", "newest", at(10)),
        event(
            "quiet",
            "e2",
            "web",
            "Warning",
            "Oldish",
            "token=abc123 leaked",
            at(300),
        ),
        event(
            "quiet",
            "e3",
            "other",
            "Normal",
            "Middle",
            "middle",
            at(100),
        ),
        event(
            "quiet",
            "e4",
            "web-7c9f5d8b4-x2k4p",
            "Warning",
            "Child",
            "pod of web",
            at(50),
        ),
        event(
            "quiet",
            "e5",
            "web",
            "Normal",
            "Ancient",
            "ancient",
            at(3000),
        ),
    ] {
        env.sim.put(e).unwrap();
    }

    // The namespace, newest first.
    let reply = env
        .run(
            "quiet",
            Op::Events {
                name: None,
                since: None,
                warnings: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "Events in quiet");
    assert_eq!(reply.tone, Tone::Warning);
    let reasons: Vec<&str> = reply.blocks[0]
        .body
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(reasons, ["Newest", "Child", "Middle", "Oldish", "Ancient"]);
    assert!(reply.blocks[0].body.contains("token=****"));
    assert!(!all_text(&reply).contains("abc123"));

    // One object (and its children), only warnings, within 40 minutes.
    let reply = env
        .run(
            "quiet",
            Op::Events {
                name: Some("web".into()),
                since: Some(Duration::from_secs(2400)),
                warnings: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "Warnings for web");
    let reasons: Vec<&str> = reply.blocks[0]
        .body
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(reasons, ["Child", "Oldish"]);
    assert_eq!(
        reply.text.as_deref(),
        Some("2 warnings in the last 40m (of 3 events).")
    );

    // Only warnings, and there are none.
    let reply = env
        .run(
            "quiet",
            Op::Events {
                name: Some("other".into()),
                since: None,
                warnings: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.title, "Warnings for other");
    assert_eq!(reply.text.as_deref(), Some("No warnings (1 other events)."));

    // Nothing in the window.
    let reply = env
        .run(
            "shop",
            Op::Events {
                name: Some("nothing".into()),
                since: Some(Duration::from_secs(60)),
                warnings: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.text.as_deref(), Some("No events in the last 1m."));
}

/// A message longer than the whole table's room is cut in its cell; the table keeps its rows
/// (it used to come back empty: "showing 0 of N"), in `events` and in `status`'s warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_event_message_is_cut_not_the_table() {
    let env = Env::start_with(
        vec![
            namespace("shop"),
            deployment("shop", "web", "nginx:1.27", 1),
        ],
        |_| None,
        |o| o.table_chars = 600,
    )
    .await;
    let now = env.sim.clock().now();
    let at = |secs: i64| time(now - SignedDuration::from_secs(secs));
    let huge = format!("Back-off pulling image: {}", "x".repeat(5000));
    for (i, msg) in [huge.as_str(), "short one", "another"]
        .into_iter()
        .enumerate()
    {
        let reason = format!("R{i}");
        env.sim
            .put(event(
                "shop",
                &format!("e{i}"),
                "web",
                "Warning",
                &reason,
                msg,
                at(10 * i as i64 + 5),
            ))
            .unwrap();
    }
    let reply = env.run("shop", all_events()).await.unwrap();
    let table = &reply.blocks[0].body;
    assert!(table.chars().count() <= 600, "{table}");
    // Newest first: ours, then the pod's own events from kubesim.
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert!(rows.len() >= 3, "{table}");
    assert!(rows[0].contains("R0") && rows[0].contains("Back-off pulling image: xxx"));
    assert!(rows[0].ends_with('…'), "{}", rows[0]);
    assert!(rows[1].ends_with("short one"), "{table}");
    assert!(rows[2].ends_with("another"), "{table}");

    let reply = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap();
    let warnings = reply
        .blocks
        .iter()
        .find(|b| b.caption.as_deref() == Some("Recent warning events"))
        .unwrap_or_else(|| panic!("warnings block in {reply:#?}"));
    assert_eq!(warnings.body.lines().count(), 4, "{}", warnings.body);
    assert!(warnings.body.chars().count() <= 600);
}

/// Control characters and escape sequences in a cell would push the columns after it out of
/// line: they are dropped, and wide characters count as two columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_columns_stay_aligned() {
    let env = Env::start(vec![namespace("shop")]).await;
    let now = env.sim.clock().now();
    let at = |secs: i64| time(now - SignedDuration::from_secs(secs));
    for (i, reason) in ["Tab\tbed", "\u{1b}[31mRed\u{1b}[0m", "日本語", "Plain"]
        .into_iter()
        .enumerate()
    {
        env.sim
            .put(event(
                "shop",
                &format!("e{i}"),
                "web",
                "Normal",
                reason,
                "m",
                at(5),
            ))
            .unwrap();
    }
    let reply = env.run("shop", all_events()).await.unwrap();
    let table = &reply.blocks[0].body;
    assert!(
        !table.contains('\t') && !table.contains('\u{1b}'),
        "{table:?}"
    );
    // OBJECT starts in the same terminal column on every line.
    let columns: Vec<usize> = table
        .lines()
        .map(|l| {
            let at = l
                .find("OBJECT")
                .or_else(|| l.find("deployment/web"))
                .unwrap();
            unicode_width(&l[..at])
        })
        .collect();
    assert!(
        columns.windows(2).all(|w| w[0] == w[1]),
        "{table}\n{columns:?}"
    );
}

/// Terminal columns of `s` (East Asian wide characters take two).
fn unicode_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if ('\u{3000}'..='\u{9fff}').contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_capped() {
    let env = Env::start_with(vec![namespace("busy")], |_| None, |o| o.max_events = 3).await;
    let now = env.sim.clock().now();
    for i in 0..6 {
        env.sim
            .put(event(
                "busy",
                &format!("e{i}"),
                "web",
                "Normal",
                &format!("R{i}"),
                "m",
                time(now - SignedDuration::from_secs(i * 10)),
            ))
            .unwrap();
    }
    let reply = env
        .run(
            "busy",
            Op::Events {
                name: None,
                since: None,
                warnings: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.blocks[0].body.lines().count(), 4);
    assert!(reply.footer.unwrap().ends_with("showing 3 of 6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_the_previous_container_say_so() {
    let env = Env::start(seed()).await;
    let reply = env
        .run(
            "shop",
            Op::Logs {
                source: PodSelector::Name("multi".into()),
                tail: Some(2),
                since: None,
                grep: None,
                container: Some("app".into()),
                previous: true,
            },
        )
        .await
        .unwrap();
    let caption = reply.blocks[0].caption.clone().unwrap();
    assert!(caption.ends_with("(app), previous container"), "{caption}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_skip_a_pod_that_has_not_started() {
    let env = Env::start(seed()).await;
    env.sim
        .put(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "api-late", "namespace": "shop", "labels": {"app": "api"}},
            "spec": {"containers": [{"name": "api", "image": "ghcr.io/acme/api:2.0"}]},
        }))
        .unwrap();
    let reply = env.run("shop", logs("api")).await.unwrap();
    let note = field(&reply, "Note");
    assert!(note.starts_with("api-late: no logs:"), "{note}");
    assert!(note.contains("waiting to start"), "{note}");
    let block = &reply.blocks[0];
    assert_eq!(block.caption.as_deref(), Some("2 pods of deployment/api"));
    assert!(!block.body.contains("api-late"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_tables_keep_the_rows_that_matter() {
    let env = Env::start_with(seed(), |_| None, |o| o.table_chars = 260).await;
    env.sim.faults().stall_rollout("shop", "web");
    let mut d = env.get("apps/v1", "Deployment", "shop", "web");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:9.99");
    env.sim.put(d).unwrap();
    env.sim.advance(Duration::from_secs(10)).await;

    let reply = env
        .run(
            "shop",
            Op::Pods {
                selector: Some(PodSelector::Name("web".into())),
            },
        )
        .await
        .unwrap();
    let table = &reply.blocks[0].body;
    assert!(table.chars().count() <= 260, "{table}");
    let shown = table.lines().count() - 1;
    let total: usize = reply
        .text
        .as_deref()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(shown < total, "{table}");
    // The unhealthy pod made it; healthy ones were left out.
    assert!(
        !table.lines().nth(1).unwrap().contains(" Running "),
        "{table}"
    );
    assert!(
        reply
            .footer
            .as_deref()
            .unwrap()
            .ends_with(&format!("{} more pods not shown", total - shown)),
        "{reply:#?}"
    );

    let reply = env.run("shop", all_events()).await.unwrap();
    let table = &reply.blocks[0].body;
    assert!(table.chars().count() <= 260, "{table}");
    assert!(table.lines().count() > 1, "{table}");
    assert!(
        reply.footer.as_deref().unwrap().contains("· showing "),
        "{reply:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_fetches_only_warning_events_and_shows_those_of_its_pods() {
    let queries = Arc::new(Mutex::new(Vec::new()));
    let seen = queries.clone();
    let hook: ops_support::Hook = Arc::new(move |req: &http::Request<kube::client::Body>| {
        if req.uri().path().ends_with("/events") {
            seen.lock()
                .unwrap()
                .push(req.uri().query().unwrap_or("").to_owned());
        }
    });
    let mut objects = seed();
    let now = time(jiff::Timestamp::now());
    objects.push(event(
        "shop",
        "e1",
        "web-7d9c5f8b6-bcdfg",
        "Warning",
        "BackOff",
        "back-off pulling",
        now.clone(),
    ));
    objects.push(event(
        "shop",
        "e2",
        "web",
        "Normal",
        "ScalingReplicaSet",
        "scaled up",
        now.clone(),
    ));
    objects.push(event(
        "shop",
        "e3",
        "api",
        "Warning",
        "Failed",
        "api is broken",
        now,
    ));
    let env = Env::start_with(objects, |_| Some(hook), |_| {}).await;

    let reply = env
        .run("shop", status(WorkloadKind::Deployment, "web"))
        .await
        .unwrap();
    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(
        queries[0].contains("fieldSelector=type%3DWarning"),
        "{queries:?}"
    );
    let warnings = warnings_block(&reply);
    assert!(
        warnings.body.contains("back-off pulling"),
        "{}",
        warnings.body
    );
    assert!(
        !warnings.body.contains("api is broken"),
        "{}",
        warnings.body
    );
    assert!(!warnings.body.contains("scaled up"), "{}", warnings.body);
}
