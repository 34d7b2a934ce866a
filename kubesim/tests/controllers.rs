//! Simulated controllers and faults, driven by the sim clock.

mod common;

use std::time::Duration;

use common::{code, deployment, empty};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn condition(d: &Deployment, ty: &str) -> (String, String) {
    let c = d
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap();
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

fn revision(rs: &ReplicaSet) -> String {
    rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone()
}

#[tokio::test]
async fn rolling_update_moves_pods_step_by_step() {
    let (sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    api.create(&PostParams::default(), &deployment("web", 4, "nginx:1.25"))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(10)).await;
    let d = api.get("web").await.unwrap();
    let st = d.status.clone().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.available_replicas,
            st.updated_replicas
        ),
        (Some(4), Some(4), Some(4), Some(4))
    );
    assert_eq!(st.observed_generation, d.metadata.generation);
    assert_eq!(
        condition(&d, "Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        condition(&d, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );

    // A new image: a second ReplicaSet, and pods roll over in steps (never all at once).
    api.patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}})))
        .await
        .unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.clone(), "demo");
    let mut max_total = 0;
    let mut saw_mixed = false;
    for _ in 0..30 {
        sim.advance(Duration::from_secs(1)).await;
        let rss = rs_api
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items;
        let counts: Vec<i32> = rss
            .iter()
            .map(|r| r.spec.as_ref().unwrap().replicas.unwrap_or(0))
            .collect();
        max_total = max_total.max(counts.iter().sum::<i32>());
        saw_mixed |= counts.iter().filter(|c| **c > 0).count() == 2;
    }
    assert!(
        saw_mixed,
        "old and new ReplicaSets had pods at the same time"
    );
    assert!(
        max_total <= 5,
        "maxSurge 25% of 4 is 1: at most 5 pods, saw {max_total}"
    );
    let rss = rs_api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(rss.len(), 2);
    let new = rss.iter().find(|r| revision(r) == "2").unwrap();
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(4));
    let hash = &new.metadata.labels.as_ref().unwrap()["pod-template-hash"];
    assert!(new.metadata.name.as_ref().unwrap().ends_with(hash.as_str()));
    let d = api.get("web").await.unwrap();
    assert_eq!(condition(&d, "Progressing").1, "NewReplicaSetAvailable");
    assert_eq!(d.status.unwrap().updated_replicas, Some(4));
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    let ps = pods
        .list(&ListParams::default().labels(&format!("pod-template-hash={hash}")))
        .await
        .unwrap()
        .items;
    assert_eq!(ps.len(), 4);

    // Rolling back to the first template reuses the old ReplicaSet as revision 3.
    let old = rss.iter().find(|r| revision(r) == "1").unwrap();
    let mut tpl = serde_json::to_value(&old.spec.as_ref().unwrap().template).unwrap();
    tpl["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::<()>::Json(
            serde_json::from_value(
                json!([{"op": "replace", "path": "/spec/template", "value": tpl}]),
            )
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    sim.advance(Duration::from_secs(30)).await;
    let rss = rs_api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(rss.len(), 2, "no third ReplicaSet");
    let back = rss
        .iter()
        .find(|r| r.metadata.name == old.metadata.name)
        .unwrap();
    assert_eq!(revision(back), "3");
    assert_eq!(back.spec.as_ref().unwrap().replicas, Some(4));
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), "demo");
    let msgs: Vec<String> = events
        .list(&ListParams::default().fields("involvedObject.name=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("Scaled up replica set web-")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("Scaled down replica set web-")),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn stalled_rollout_ends_in_progress_deadline_exceeded() {
    let (sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    let mut d = deployment("web", 2, "nginx:1");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    api.create(&PostParams::default(), &d).await.unwrap();
    sim.advance(Duration::from_secs(5)).await;
    sim.faults().stall_rollout("demo", "web");
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}})))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(30)).await;
    let d = api.get("web").await.unwrap();
    assert_eq!(condition(&d, "Progressing").0, "True");
    assert_eq!(
        d.status.as_ref().unwrap().available_replicas,
        Some(2),
        "old pods keep serving"
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    let stuck: Vec<Pod> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Pending"))
        .collect();
    assert_eq!(stuck.len(), 1);
    let waiting = stuck[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .waiting
        .clone()
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));
    sim.advance(Duration::from_secs(60)).await;
    let d = api.get("web").await.unwrap();
    assert_eq!(
        condition(&d, "Progressing"),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
    // Lifting the fault lets it finish.
    sim.faults().unstall_rollout("demo", "web");
    for p in stuck {
        pods.delete(p.metadata.name.as_deref().unwrap(), &Default::default())
            .await
            .unwrap();
    }
    sim.advance(Duration::from_secs(30)).await;
    assert_eq!(
        condition(&api.get("web").await.unwrap(), "Progressing").1,
        "NewReplicaSetAvailable"
    );
}

#[tokio::test]
async fn statefulset_scales_pod_by_pod() {
    let (sim, c) = empty().await;
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), "demo");
    let s: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "pg"},
        "spec": {"replicas": 3, "serviceName": "pg", "selector": {"matchLabels": {"app": "pg"}},
            "template": {"metadata": {"labels": {"app": "pg"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &s).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    let names = || async {
        pods.list(&ListParams::default().labels("app=pg"))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    sim.reconcile();
    assert_eq!(names().await, vec!["pg-0"], "one pod at a time");
    let ready = |n: &str| {
        sim.get("v1", "Pod", "demo", n).is_some_and(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    };
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..15 {
        sim.advance(Duration::from_secs(1)).await;
        let n = names().await;
        for i in 1..n.len() {
            // A pod is only created once the one before it is ready.
            assert!(
                ready(&n[i - 1]) || seen.contains(&n[i]),
                "{} before {} was ready",
                n[i],
                n[i - 1]
            );
        }
        seen = n;
    }
    assert_eq!(names().await, vec!["pg-0", "pg-1", "pg-2"]);
    api.patch_scale(
        "pg",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    sim.reconcile();
    let terminating = |n: &str| {
        sim.get("v1", "Pod", "demo", n)
            .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string())
    };
    assert!(
        terminating("pg-2") && !terminating("pg-1"),
        "highest ordinal goes first"
    );
    for _ in 0..10 {
        sim.advance(Duration::from_secs(1)).await;
        let n = names().await;
        assert!(
            !(n.contains(&"pg-2".to_string()) && terminating("pg-1")),
            "pg-1 waits for pg-2 to be gone: {n:?}"
        );
    }
    assert_eq!(names().await, vec!["pg-0"]);
    let st = api.get("pg").await.unwrap().status.unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (1, Some(1)));
    // Each pod created and deleted is recorded, like the statefulset controller does.
    let events: Api<Event> = Api::namespaced(c.clone(), "demo");
    let mut messages: Vec<String> = events
        .list(&ListParams::default().fields("involvedObject.name=pg"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "SuccessfulCreate create Pod pg-0 in StatefulSet pg successful",
            "SuccessfulCreate create Pod pg-1 in StatefulSet pg successful",
            "SuccessfulCreate create Pod pg-2 in StatefulSet pg successful",
            "SuccessfulDelete delete Pod pg-1 in StatefulSet pg successful",
            "SuccessfulDelete delete Pod pg-2 in StatefulSet pg successful",
        ]
    );
}

async fn raw(
    c: &kube::Client,
    method: &str,
    path: &str,
    ct: &str,
    body: &str,
) -> http::Response<kube::client::Body> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(body.as_bytes().to_vec())
        .unwrap();
    c.send(req.map(kube::client::Body::from)).await.unwrap()
}

async fn status_of(resp: http::Response<kube::client::Body>) -> serde_json::Value {
    let bytes = resp.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn bad_input_gets_status_errors() {
    let (sim, c) = empty().await;
    let base = "/apis/apps/v1/namespaces/demo/deployments";
    let r = raw(&c, "POST", base, "application/json", "{not json").await;
    assert_eq!(r.status(), 400);
    let s = status_of(r).await;
    assert_eq!(
        (s["kind"].as_str(), s["reason"].as_str(), s["code"].as_i64()),
        (Some("Status"), Some("BadRequest"), Some(400))
    );
    Api::<Deployment>::namespaced(c.clone(), "demo")
        .create(&PostParams::default(), &deployment("web", 1, "x:1"))
        .await
        .unwrap();
    let r = raw(
        &c,
        "PATCH",
        &format!("{base}/web"),
        "application/xml",
        "<x/>",
    )
    .await;
    assert_eq!(r.status(), 415);
    assert_eq!(status_of(r).await["reason"], "UnsupportedMediaType");
    let r = raw(
        &c,
        "PATCH",
        &format!("{base}/web"),
        "application/json-patch+json",
        r#"[{"op":"remove","path":"/nope"}]"#,
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = raw(
        &c,
        "PATCH",
        &format!("{base}/web"),
        "application/merge-patch+json",
        "[1,2]",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = raw(
        &c,
        "PUT",
        &format!("{base}/other"),
        "application/json",
        &serde_json::to_string(&deployment("web", 1, "x:1")).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 400, "name in body must match the URL");
    let r = raw(
        &c,
        "GET",
        "/apis/apps/v1/namespaces/demo/widgets",
        "application/json",
        "",
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = raw(
        &c,
        "GET",
        "/apis/apps/v1/namespaces/demo/deployments/web/bogus",
        "application/json",
        "",
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = raw(
        &c,
        "GET",
        &format!("{base}?labelSelector=a%20in%20b"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = raw(
        &c,
        "GET",
        &format!("{base}?watch=true&resourceVersion=abc"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = raw(&c, "GET", "/%ff%fe/../..", "application/json", "").await;
    assert_eq!(r.status(), 404);
    drop(sim);
}

#[tokio::test]
async fn injected_faults() {
    let (sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    api.create(&PostParams::default(), &deployment("web", 1, "x:1"))
        .await
        .unwrap();

    sim.faults().fail_next("/deployments/web", 2, 500);
    assert_eq!(
        code(api.get("web").await.unwrap_err()),
        (500, "InternalError".into())
    );
    assert_eq!(code(api.get("web").await.unwrap_err()).0, 500);
    assert!(api.get("web").await.is_ok(), "only the next two fail");

    // (kube-rs retries 429s by itself, so look at the raw answer in-process.)
    sim.faults().fail_next("/deployments", 1, 429);
    let r = sim
        .request(
            http::Method::GET,
            "/apis/apps/v1/namespaces/demo/deployments/web",
            vec![],
        )
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_i64()),
        (Some("TooManyRequests"), Some(429))
    );
    assert!(api.get("web").await.is_ok());

    sim.faults().forbid("patch", "deployments");
    let err = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap_err();
    let (code_, reason) = code(err);
    assert_eq!((code_, reason.as_str()), (403, "Forbidden"));
    assert!(api.get("web").await.is_ok(), "other verbs still allowed");
    sim.faults().forbid("*", "deployments/scale");
    assert_eq!(code(api.get_scale("web").await.unwrap_err()).0, 403);
    sim.faults().allow_all();
    assert!(api.get_scale("web").await.is_ok());

    sim.faults().set_latency(Duration::from_millis(50));
    assert_eq!(sim.faults().latency(), Duration::from_millis(50));
    assert!(api.get("web").await.is_ok());
    sim.faults().clear();
    assert_eq!(sim.faults().latency(), Duration::ZERO);
}

#[tokio::test]
async fn default_seed_has_the_runbook_objects() {
    let sim = common::sim(kubesim::Seed::default_seed()).await;
    for ns in [
        "api",
        "production",
        "controller",
        "ingress",
        "data-services",
        "gc-storage",
        "shiojiri-rainbow-seeker",
        "default",
    ] {
        assert!(sim.get("v1", "Namespace", "", ns).is_some(), "{ns}");
    }
    for (ns, d) in [
        ("api", "rust-webapi"),
        ("production", "conea-api"),
        ("controller", "rust-controller"),
        ("ingress", "envoy"),
        ("gc-storage", "api"),
        ("shiojiri-rainbow-seeker", "backend"),
        ("shiojiri-rainbow-seeker", "frontend"),
    ] {
        let dep = sim
            .get("apps/v1", "Deployment", ns, d)
            .unwrap_or_else(|| panic!("{ns}/{d}"));
        assert_eq!(
            dep["status"]["readyReplicas"], dep["spec"]["replicas"],
            "{ns}/{d} is rolled out"
        );
        assert!(
            sim.list("autoscaling/v2", "HorizontalPodAutoscaler", Some(ns))
                .iter()
                .any(|h| h["spec"]["scaleTargetRef"]["name"] == d),
            "{ns}/{d} has an HPA"
        );
    }
    assert!(
        sim.get(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "gc-storage",
            "api-hpa"
        )
        .is_some()
    );
    let sts = sim
        .get("apps/v1", "StatefulSet", "gc-storage", "postgres-replica")
        .unwrap();
    assert_eq!(sts["status"]["readyReplicas"], 3);
    for (ns, cj, sched) in [
        ("data-services", "postgres-backup", "0 1 * * *"),
        ("gc-storage", "postgres-backup", "0 2 * * *"),
        ("production", "database-backup", "0 2 * * *"),
    ] {
        let c = sim.get("batch/v1", "CronJob", ns, cj).unwrap();
        assert_eq!(c["spec"]["schedule"], sched);
        assert!(c["status"]["lastScheduleTime"].is_string());
        let jobs = sim.list("batch/v1", "Job", Some(ns));
        let failed = jobs
            .iter()
            .filter(|j| j["status"]["failed"].as_i64().unwrap_or(0) > 0)
            .count();
        let ok = jobs
            .iter()
            .filter(|j| j["status"]["succeeded"] == 1)
            .count();
        assert_eq!((failed, ok), (1, 3), "{ns}/{cj} history");
    }
    let rs = sim.list("apps/v1", "ReplicaSet", Some("api"));
    assert_eq!(rs.len(), 3, "rust-webapi has three revisions");
}

#[tokio::test]
async fn wrong_shapes_are_rejected_and_nothing_panics() {
    let (sim, c) = empty().await;
    let base = "/apis/apps/v1/namespaces/demo/deployments";
    let mut d = serde_json::to_value(deployment("web", 1, "x:1")).unwrap();
    d["spec"]["selector"]["matchLabels"] = json!("app=web");
    let r = raw(&c, "POST", base, "application/json", &d.to_string()).await;
    assert_eq!(r.status(), 400);
    Api::<Deployment>::namespaced(c.clone(), "demo")
        .create(&PostParams::default(), &deployment("web", 1, "x:1"))
        .await
        .unwrap();
    for (ct, body, sub) in [
        (
            "application/merge-patch+json",
            r#"{"metadata":{"labels":"x"}}"#,
            "",
        ),
        (
            "application/merge-patch+json",
            r#"{"spec":{"template":{"metadata":{"labels":[1]}}}}"#,
            "",
        ),
        (
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/spec","value":"x"}]"#,
            "",
        ),
        (
            "application/merge-patch+json",
            r#"{"status":"broken"}"#,
            "/status",
        ),
        (
            "application/merge-patch+json",
            r#"{"metadata":{"creationTimestamp":"yesterday"}}"#,
            "",
        ),
        (
            "application/strategic-merge-patch+json",
            r#"{"spec":{"replicas":"many"}}"#,
            "",
        ),
        (
            "application/merge-patch+json",
            r#"{"spec":{"replicas":"many"}}"#,
            "/scale",
        ),
    ] {
        let r = raw(&c, "PATCH", &format!("{base}/web{sub}"), ct, body).await;
        assert!(r.status().is_client_error(), "{body} -> {}", r.status());
    }
    let r = raw(
        &c,
        "POST",
        "/api/v1/namespaces/demo/pods",
        "application/vnd.kubernetes.protobuf",
        "k8s\0garbage",
    )
    .await;
    assert_eq!(r.status(), 400);
    sim.advance(Duration::from_secs(5)).await;
    let d = Api::<Deployment>::namespaced(c.clone(), "demo")
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        d.status.unwrap().ready_replicas,
        Some(1),
        "controllers still run"
    );
}

/// With the clock running and nothing written after the create, the background loop still runs
/// the passes the clock alone calls for (pods scheduled, started, ready; the rollout complete),
/// and then stays idle without losing a later write.
#[tokio::test]
async fn the_idle_loop_wakes_for_clock_driven_work_and_for_writes() {
    let (sim, c) = empty().await;
    sim.clock().set_speed(20.0);
    sim.clock().resume();
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    api.create(&PostParams::default(), &deployment("web", 2, "nginx:1.25"))
        .await
        .unwrap();
    let ready = |d: &Deployment| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(2);
    let mut waited = Duration::ZERO;
    while !ready(&api.get("web").await.unwrap()) {
        assert!(waited < Duration::from_secs(5), "pods never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    // Settled and idle; a write (scale) must still be acted on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c, "demo");
    let mut waited = Duration::ZERO;
    while pods.list(&ListParams::default()).await.unwrap().items.len() < 3 {
        assert!(waited < Duration::from_secs(5), "the scale-up never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
}
