//! hpa show and set, against kubesim through kube-rs.

mod ops_support;

use ops_support::{Env, deployment, field, hpa, namespace};
use opsbot_commands::{Op, OpError, Tone};

fn seed() -> Vec<serde_json::Value> {
    vec![
        namespace("shop"),
        deployment("shop", "web", "nginx:1.27", 2),
        hpa("shop", "web-hpa", "web", 2, 6),
    ]
}

fn show(name: &str) -> Op {
    Op::Hpa {
        name: name.into(),
        min: None,
        max: None,
    }
}

fn set(min: Option<u32>, max: Option<u32>) -> Op {
    Op::Hpa {
        name: "web-hpa".into(),
        min,
        max,
    }
}

fn bounds(env: &Env) -> (i64, i64) {
    let h = env.get(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "shop",
        "web-hpa",
    );
    (
        h["spec"]["minReplicas"].as_i64().unwrap(),
        h["spec"]["maxReplicas"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_show_by_name_or_target() {
    let env = Env::start(seed()).await;
    for name in ["web-hpa", "web"] {
        let reply = env.run("shop", show(name)).await.unwrap();
        assert_eq!(reply.title, "horizontalpodautoscaler/web-hpa");
        assert_eq!(reply.tone, Tone::Info);
        assert_eq!(field(&reply, "Target"), "deployment/web");
        assert_eq!(field(&reply, "Min / max"), "2 / 6");
        assert!(field(&reply, "Current / desired").contains(" / "));
        let metrics = reply
            .blocks
            .iter()
            .find(|b| b.caption.as_deref() == Some("Metrics"))
            .unwrap();
        assert!(metrics.body.contains("resource cpu"), "{}", metrics.body);
        assert!(metrics.body.contains("70% avg utilization"));
    }
    let err = env.run("shop", show("wbe-hpa")).await.unwrap_err();
    assert!(
        matches!(&err, OpError::NotFound { kind, suggestions, .. }
            if kind == "horizontalpodautoscaler" && suggestions.first().map(String::as_str) == Some("web-hpa")),
        "{err:?}"
    );
}

/// `hpa` alone (kubectl's `get hpa -n NS`) lists the namespace's autoscalers, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_alone_lists_the_namespace_autoscalers() {
    let mut objects = seed();
    objects.extend([
        deployment("shop", "api", "ghcr.io/acme/api:2.0", 3),
        hpa("shop", "api-hpa", "api", 3, 10),
        namespace("other"),
        deployment("other", "x", "nginx:1.27", 1),
        hpa("other", "x-hpa", "x", 1, 2),
        namespace("empty"),
    ]);
    let env = Env::start(objects).await;
    let reply = env.run("shop", Op::HpaList).await.unwrap();
    assert_eq!(reply.title, "Autoscalers in shop");
    assert_eq!(reply.text.as_deref(), Some("2 autoscalers."));
    let rows: Vec<Vec<&str>> = reply.blocks[0]
        .body
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(4).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["api-hpa", "deployment/api", "3", "10"],
            ["web-hpa", "deployment/web", "2", "6"],
        ],
        "{}",
        reply.blocks[0].body
    );

    let reply = env.run("empty", Op::HpaList).await.unwrap();
    assert_eq!(reply.text.as_deref(), Some("No autoscalers."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_set_bounds() {
    let env = Env::start(seed()).await;
    let reply = env.run("shop", set(Some(3), None)).await.unwrap();
    assert_eq!(reply.title, "Updated horizontalpodautoscaler/web-hpa");
    assert_eq!(reply.tone, Tone::Ok);
    assert_eq!(reply.text.as_deref(), Some("min 2 → 3, max 6 → 6"));
    assert_eq!(bounds(&env), (3, 6));

    let reply = env.run("shop", set(None, Some(10))).await.unwrap();
    assert_eq!(reply.text.as_deref(), Some("min 3 → 3, max 6 → 10"));
    assert_eq!(bounds(&env), (3, 10));

    let reply = env.run("shop", set(Some(1), Some(4))).await.unwrap();
    assert_eq!(field(&reply, "Min / max"), "1 / 4");
    assert_eq!(bounds(&env), (1, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_min_above_max_is_refused_before_the_call() {
    let env = Env::start(seed()).await;
    // Every write to the HPA would be forbidden: a refusal proves no call was made.
    env.sim.faults().forbid("patch", "horizontalpodautoscalers");
    let cases = [
        (
            set(Some(8), None),
            "--min 8 is greater than the current max 6; give --max too",
        ),
        (
            set(None, Some(1)),
            "--max 1 is less than the current min 2; give --min too",
        ),
        (set(Some(5), Some(4)), "--min 5 is greater than --max 4"),
        (set(Some(0), None), "--min must be at least 1"),
        (set(None, Some(0)), "--max must be at least 1"),
    ];
    for (op, want) in cases {
        let err = env.run("shop", op).await.unwrap_err();
        assert!(matches!(err, OpError::Refused(_)), "{err:?}");
        assert!(err.to_string().starts_with(want), "{err}");
    }
    assert_eq!(bounds(&env), (2, 6));

    // A valid change does reach the API, and RBAC answers.
    let err = env.run("shop", set(Some(3), None)).await.unwrap_err();
    assert!(
        matches!(&err, OpError::Forbidden { verb, resource, group, .. }
            if verb == "patch" && resource == "horizontalpodautoscalers" && group == "autoscaling"),
        "{err:?}"
    );
}

/// A change names the autoscaler it changes: the engine renames `hpa WORKLOAD --max N` to the
/// autoscaler before the policy judges it (`Operator::canonical`), and the operation itself
/// changes only an autoscaler of the name it is given, so the object the policy judged is the
/// one that changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_names_the_autoscaler_itself() {
    let env = Env::start(seed()).await;
    let by_workload = Env::cmd(
        "shop",
        Op::Hpa {
            name: "web".into(),
            min: None,
            max: Some(9),
        },
    );
    let err = env
        .op
        .execute(&by_workload, opsbot_commands::ProgressSender::none())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::NotFound { suggestions, .. } if suggestions == &["web-hpa"]),
        "{err:?}"
    );
    assert_eq!(bounds(&env), (2, 6));
    let canonical = env.op.canonical(by_workload.clone()).await;
    assert_eq!(canonical.to_text(), "hpa web-hpa --max 9 -n shop");
    env.op
        .execute(&canonical, opsbot_commands::ProgressSender::none())
        .await
        .unwrap();
    assert_eq!(bounds(&env), (2, 9));
    // Showing one by its workload's name still works; and what is not an autoscaler's
    // workload stays as typed.
    assert!(env.run("shop", show("web")).await.is_ok());
    let other = Env::cmd("shop", show("web"));
    assert_eq!(env.op.canonical(other.clone()).await, other);
}
