//! Hostile input: every path shape × method × content type × body must answer, never panic.

mod common;

use std::time::Duration;

use http::Method;
use kubesim::{KubeSim, Seed};

const BODIES: &[&str] = &[
    "",
    "null",
    "[]",
    "42",
    "\"x\"",
    "{",
    "{}",
    r#"{"metadata":"x"}"#,
    r#"{"metadata":{"name":5}}"#,
    r#"{"metadata":{"name":"x","labels":"y"},"spec":"z"}"#,
    r#"{"metadata":{"name":"api","resourceVersion":"1"},"spec":{"replicas":-3}}"#,
    r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
    r#"{"metadata":{"name":"api"},"spec":{"template":{"spec":{"containers":"no"}}}}"#,
    r#"{"spec":{"replicas":"many"}}"#,
    r#"{"status":{"replicas":"x","conditions":"y"}}"#,
    r#"[{"op":"replace","path":"/spec","value":null}]"#,
    r#"[{"op":"add","path":"/metadata/labels/a","value":1}]"#,
    r#"[{"op":"move","from":"/spec","path":"/status"}]"#,
    r#"{"$patch":"delete"}"#,
    r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"delete"}]}}}}"#,
    r#"{"spec":{"$patch":"replace"}}"#,
    r#"{"$retainKeys":["metadata"]}"#,
    "k8s\u{0}\u{a}\u{2}\u{a}\u{0}",
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec: {replicas: [1]}\n",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
];

fn paths() -> Vec<String> {
    let mut out = vec![
        "/".to_string(),
        "/api".into(),
        "/apis".into(),
        "/apis/apps".into(),
        "/apis/nope/v1".into(),
        "/api/v1/namespaces".into(),
        "/api/v1/namespaces/gc-storage".into(),
        "/api/v1/namespaces/gc-storage/status".into(),
        "/openapi/v3".into(),
        "/api/v1/pods?watch=true&timeoutSeconds=0".into(),
        "/api/v1/namespaces/gc-storage/pods?labelSelector=%28%28&fieldSelector=%3D%3D".into(),
        "/api/v1/namespaces/gc-storage/pods?limit=-1&continue=zz".into(),
        "/api/v1/namespaces/gc-storage/pods/x/log?tailLines=-5&sinceSeconds=abc&follow=false"
            .into(),
        "/kubesim/clock/advance?seconds=1e999".into(),
        "/kubesim/faults/forbid?verb=".into(),
    ];
    for base in [
        "/apis/apps/v1/namespaces/gc-storage/deployments",
        "/apis/apps/v1/namespaces/gc-storage/statefulsets",
        "/apis/batch/v1/namespaces/gc-storage/cronjobs",
        "/apis/autoscaling/v2/namespaces/gc-storage/horizontalpodautoscalers",
        "/apis/events.k8s.io/v1/namespaces/gc-storage/events",
        "/api/v1/namespaces/gc-storage/events",
    ] {
        out.push(base.to_string());
        for name in [
            "api",
            "postgres-replica",
            "postgres-backup",
            "api-hpa",
            "missing",
            "%00",
            "..",
        ] {
            out.push(format!("{base}/{name}"));
            for sub in ["status", "scale", "log", "bogus", "scale/extra"] {
                out.push(format!("{base}/{name}/{sub}"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_answers() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    sim.clock().pause();
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let mut answered = 0usize;
    for path in paths() {
        for method in &methods {
            let combos: Vec<(&str, &str)> = if *method == Method::GET {
                vec![("application/json", "")]
            } else {
                CONTENT_TYPES
                    .iter()
                    .flat_map(|ct| BODIES.iter().map(move |b| (*ct, *b)))
                    .collect()
            };
            for (ct, body) in combos {
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    sim.request_typed(method.clone(), &path, Some(ct), body.as_bytes().to_vec()),
                )
                .await
                .unwrap_or_else(|_| panic!("{method} {path} {ct} {body:?} hung"));
                let code = r.status().as_u16();
                assert!((200..600).contains(&code), "{method} {path}: {code}");
                if code >= 400 && !path.starts_with("/kubesim") && !path.contains("/log") {
                    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        panic!("{method} {path} {ct} {body:?}: not JSON ({e})")
                    });
                    assert_eq!(v["kind"], "Status", "{method} {path} {ct} {body:?}: {v}");
                    assert_eq!(v["code"].as_u64(), Some(u64::from(code)));
                }
                answered += 1;
            }
        }
        // Controllers keep working on whatever was accepted.
        sim.advance(Duration::from_secs(1)).await;
    }
    assert!(answered > 10_000, "{answered}");
    sim.advance(Duration::from_secs(60)).await;
    // Still serving, and the deletecollection of namespaces above was refused.
    assert!(sim.get("v1", "Namespace", "", "default").is_some());
    let r = sim
        .request(Method::GET, "/api/v1/namespaces", Vec::new())
        .await;
    assert_eq!(r.status(), 200);
}

/// Numbers at the ends of their types, in query parameters and in objects the controllers read,
/// are answered or ignored, never a panic (jiff and `Instant` arithmetic panic on overflow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_numbers_do_not_panic() {
    let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
    sim.clock().pause();
    let log = "/api/v1/namespaces/gc-storage/pods/postgres-replica-0/log";
    for query in [
        "sinceSeconds=9223372036854775807",
        "sinceSeconds=-9223372036854775808",
        "tailLines=-9223372036854775808",
        "tailLines=9223372036854775807",
        "sinceTime=9999-12-31T23:59:59Z",
        "sinceTime=-009999-01-01T00:00:00Z",
    ] {
        let r = sim
            .request(Method::GET, &format!("{log}?{query}"), Vec::new())
            .await;
        assert!(r.status().as_u16() < 500, "{query}: {}", r.status());
    }
    // Without an overflow, all lines are within a huge sinceSeconds, and tailLines bounds them.
    let text = |q: &'static str| {
        let sim = &sim;
        async move {
            let r = sim
                .request(Method::GET, &format!("{log}?{q}"), Vec::new())
                .await;
            assert_eq!(r.status(), 200, "{q}");
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        }
    };
    let all = text("sinceSeconds=9223372036854775807").await;
    assert_eq!(all, text("timestamps=false").await);
    assert_eq!(text("tailLines=9223372036854775807").await, all);
    assert_eq!(text("tailLines=2").await.lines().count(), 2);

    let r = tokio::time::timeout(
        Duration::from_secs(5),
        sim.request(
            Method::GET,
            "/api/v1/pods?watch=true&timeoutSeconds=18446744073709551615",
            Vec::new(),
        ),
    )
    .await
    .expect("watch answers");
    assert_eq!(r.status(), 200);
    drop(r);

    // A job whose simulated duration is out of range runs, and the controllers keep going.
    for (name, secs) in [("forever", "9223372036854775807"), ("quick", "5")] {
        let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "annotations": {"kubesim.io/duration-seconds": secs}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "x", "image": "busybox"}]}}}});
        let r = sim
            .request_typed(
                Method::POST,
                "/apis/batch/v1/namespaces/gc-storage/jobs",
                Some("application/json"),
                job.to_string().into_bytes(),
            )
            .await;
        assert_eq!(r.status(), 201, "{name}");
    }
    sim.advance(Duration::from_secs(30)).await;
    let status = |name| sim.get("batch/v1", "Job", "gc-storage", name).unwrap()["status"].clone();
    assert_eq!(status("quick")["succeeded"], 1);
    assert_eq!(status("forever")["active"], 1);
}

/// A huge clock speed through the control API is clamped; the clock keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_clock_speed_does_not_panic() {
    let sim = KubeSim::start(Seed::empty()).await.unwrap();
    let r = sim
        .request(
            Method::POST,
            "/kubesim/clock/speed?factor=1e300",
            Vec::new(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let before = sim.clock().now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = sim
        .request(Method::GET, "/api/v1/namespaces/default", Vec::new())
        .await;
    assert_eq!(r.status(), 200);
    let after = sim.clock().now();
    assert!(after > before, "{before} → {after}");
    assert!(sim.clock().speed() < 1e300, "{}", sim.clock().speed());
}
