//! Every verb on every kind, through kube-rs over HTTP.

mod common;

use std::time::Duration;

use common::{code, deployment, empty};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::json;

#[tokio::test]
async fn namespaces_create_get_list_delete() {
    let (_sim, c) = empty().await;
    let api: Api<Namespace> = Api::all(c.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
    let created = api.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"team-a".to_string()) && names.contains(&"default".to_string()));
    assert_eq!(
        code(api.create(&PostParams::default(), &ns).await.unwrap_err()),
        (409, "AlreadyExists".into())
    );
    // Objects in a deleted namespace go with it.
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "team-a");
    deploys
        .create(&PostParams::default(), &deployment("web", 1, "nginx:1"))
        .await
        .unwrap();
    api.delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(api.get("team-a").await.unwrap_err()).0, 404);
    assert_eq!(code(deploys.get("web").await.unwrap_err()).0, 404);
    // Creating into a missing namespace is NotFound.
    let err = deploys
        .create(&PostParams::default(), &deployment("web", 1, "nginx:1"))
        .await
        .unwrap_err();
    assert_eq!(code(err), (404, "NotFound".into()));
}

#[tokio::test]
async fn deployment_crud_with_every_patch_type() {
    let (sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    let d = api
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1.25"))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.clone().unwrap();
    assert_eq!(
        spec.revision_history_limit,
        Some(10),
        "defaults are applied"
    );
    assert_eq!(spec.progress_deadline_seconds, Some(600));

    // get / list with label selectors (equality and set-based) and field selectors.
    assert_eq!(api.get("web").await.unwrap().metadata.uid, d.metadata.uid);
    api.create(&PostParams::default(), &deployment("db", 1, "postgres:16"))
        .await
        .unwrap();
    let l = |s: &str| ListParams::default().labels(s);
    assert_eq!(api.list(&l("app=web")).await.unwrap().items.len(), 1);
    assert_eq!(
        api.list(&l("app in (web,db)")).await.unwrap().items.len(),
        2
    );
    assert_eq!(
        api.list(&l("app notin (web)")).await.unwrap().items.len(),
        1
    );
    assert_eq!(api.list(&l("app!=web")).await.unwrap().items.len(), 1);
    assert_eq!(
        api.list(&ListParams::default().fields("metadata.name=db"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        api.list(&ListParams::default().fields("metadata.namespace=other"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );

    // merge patch
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["team"], "a");
    // JSON patch
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().replicas, Some(3));
    // strategic merge patch: merges containers by name
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}})),
        )
        .await
        .unwrap();
    let containers = p.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.26"));
    assert_eq!(
        p.metadata.generation,
        Some(3),
        "spec changes bump generation"
    );
    // server-side apply (also creates)
    let applied = api
        .patch(
            "api",
            &PatchParams::apply("test").force(),
            &Patch::Apply(serde_json::to_value(deployment("api", 1, "api:1")).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.unwrap().replicas, Some(1));
    let applied = api
        .patch("api", &PatchParams::apply("test").force(), &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}, "spec": {"replicas": 4}})))
        .await
        .unwrap();
    assert_eq!(applied.spec.unwrap().replicas, Some(4));

    // replace with the current resourceVersion works; a stale one is a 409 Conflict.
    // (Controllers may write the status in between, a legitimate 409: retry like a client would.)
    let (cur, replaced) = {
        let mut tries = 0;
        loop {
            let cur = api.get("web").await.unwrap();
            let mut next = cur.clone();
            next.spec.as_mut().unwrap().replicas = Some(1);
            match api.replace("web", &PostParams::default(), &next).await {
                Ok(r) => break (cur, r),
                Err(e) if tries < 20 => {
                    assert_eq!(code(e).0, 409);
                    tries += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(replaced.spec.unwrap().replicas, Some(1));
    assert_ne!(
        replaced.metadata.resource_version,
        cur.metadata.resource_version
    );
    assert_eq!(
        code(
            api.replace("web", &PostParams::default(), &cur)
                .await
                .unwrap_err()
        ),
        (409, "Conflict".into())
    );
    // a merge patch carrying a stale resourceVersion is a conflict too
    let stale = json!({"metadata": {"resourceVersion": cur.metadata.resource_version}, "spec": {"replicas": 2}});
    assert_eq!(
        code(
            api.patch("web", &PatchParams::default(), &Patch::Merge(stale))
                .await
                .unwrap_err()
        )
        .0,
        409
    );

    // dryRun=All changes nothing.
    let before = api.get("web").await.unwrap();
    let dry = api
        .patch(
            "web",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(dry.spec.unwrap().replicas, Some(9));
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        before.spec.unwrap().replicas
    );
    let dry_create = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &deployment("ghost", 1, "x:1"),
        )
        .await
        .unwrap();
    assert_eq!(dry_create.metadata.name.as_deref(), Some("ghost"));
    assert_eq!(code(api.get("ghost").await.unwrap_err()).0, 404);
    api.delete(
        "web",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get("web").await.is_ok());

    // Invalid objects.
    let mut bad = deployment("bad", 1, "x:1");
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap()
        .labels = Some([("app".to_string(), "other".to_string())].into());
    assert_eq!(
        code(api.create(&PostParams::default(), &bad).await.unwrap_err()),
        (422, "Invalid".into())
    );
    let bad_name = deployment("Bad_Name", 1, "x:1");
    assert_eq!(
        code(
            api.create(&PostParams::default(), &bad_name)
                .await
                .unwrap_err()
        )
        .1,
        "Invalid"
    );
    let neg = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(neg).0, 422);

    // delete, delete again, delete collection.
    api.delete("db", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        code(
            api.delete("db", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        (404, "NotFound".into())
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=api"),
    )
    .await
    .unwrap();
    assert_eq!(code(api.get("api").await.unwrap_err()).0, 404);
    assert!(sim.get("apps/v1", "Deployment", "demo", "web").is_some());
}

#[tokio::test]
async fn scale_and_status_subresources() {
    let (sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    api.create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    let s = api.get_scale("web").await.unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(2));
    assert_eq!(s.status.unwrap().selector.as_deref(), Some("app=web"));
    let s = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(4));
    // Scaling adds pods (and later removes them), all ready, in the one ReplicaSet.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    let running = || async {
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .count()
    };
    sim.advance(Duration::from_secs(30)).await;
    assert_eq!(running().await, 4);
    assert_eq!(
        api.get_scale("web").await.unwrap().status.unwrap().replicas,
        4
    );
    let mut s = api.get_scale("web").await.unwrap();
    s.spec.as_mut().unwrap().replicas = Some(1);
    // Controllers keep writing the status (and so the resourceVersion) of a young deployment;
    // an unconditional replace avoids a legitimate but racy 409 here.
    s.metadata.resource_version = None;
    let s = api
        .replace_scale("web", &PostParams::default(), &s)
        .await
        .unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(1));
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(1)
    );
    sim.advance(Duration::from_secs(60)).await;
    assert_eq!(running().await, 1);
    assert_eq!(
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len(),
        1,
        "scaled-down pods are gone after terminating"
    );
    assert_eq!(
        api.get("web").await.unwrap().status.unwrap().ready_replicas,
        Some(1)
    );

    // Status writes go through /status only; the main resource ignores status.
    let p = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 42}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().observed_generation, Some(42));
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 7}})),
        )
        .await
        .unwrap();
    assert_ne!(p.status.unwrap().observed_generation, Some(7));

    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), "demo");
    let mut s: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "pg"},
        "spec": {"replicas": 1, "serviceName": "pg", "selector": {"matchLabels": {"app": "pg"}},
            "template": {"metadata": {"labels": {"app": "pg"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
    }))
    .unwrap();
    s = sts.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(
        s.spec.unwrap().pod_management_policy.as_deref(),
        Some("OrderedReady")
    );
    let sc = sts
        .patch_scale(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(3));
    sim.advance(Duration::from_secs(20)).await;
    let st = sts.get("pg").await.unwrap().status.unwrap();
    assert_eq!(st.ready_replicas, Some(3));
    let rs: Api<ReplicaSet> = Api::namespaced(c.clone(), "demo");
    let sc = rs
        .get_scale(
            &rs.list(&ListParams::default()).await.unwrap().items[0]
                .metadata
                .name
                .clone()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(1));
}

#[tokio::test]
async fn pods_and_logs() {
    let (sim, c) = empty().await;
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(120)).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    let pod = &list.items[0];
    let name = pod.metadata.name.clone().unwrap();
    assert!(name.starts_with("web-"));
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert!(
        pod.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("pod-template-hash")
    );
    assert_eq!(
        pod.metadata.owner_references.as_ref().unwrap()[0].kind,
        "ReplicaSet"
    );

    let all = pods.logs(&name, &LogParams::default()).await.unwrap();
    assert!(all.lines().count() > 10);
    let tail = pods
        .logs(
            &name,
            &LogParams {
                tail_lines: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.lines().count(), 5);
    assert!(
        tail.lines()
            .all(|l| l.contains(" INFO ") || l.contains(" WARN ") || l.contains(" ERROR ")),
        "{tail}"
    );
    let since = pods
        .logs(
            &name,
            &LogParams {
                since_seconds: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(since.lines().count() <= 5 && !since.is_empty());
    let stamped = pods
        .logs(
            &name,
            &LogParams {
                tail_lines: Some(1),
                timestamps: true,
                container: Some("web".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        stamped.starts_with("20") && stamped.contains(".000000000Z "),
        "{stamped}"
    );
    let err = pods
        .logs(
            &name,
            &LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(err).0, 400);
    assert_eq!(
        code(
            pods.logs("missing", &LogParams::default())
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    // Pods can be created and deleted directly too; deleting an RS pod gets it replaced.
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    sim.advance(Duration::from_secs(5)).await;
    assert_eq!(
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let bare: Pod = serde_json::from_value(json!({"metadata": {"generateName": "debug-"}, "spec": {"containers": [{"name": "sh", "image": "busybox"}]}})).unwrap();
    let p = pods.create(&PostParams::default(), &bare).await.unwrap();
    assert!(p.metadata.name.unwrap().starts_with("debug-"));
}

#[tokio::test]
async fn events_in_both_apis() {
    let (sim, c) = empty().await;
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(10)).await;
    let events: Api<Event> = Api::namespaced(c.clone(), "demo");
    let for_web = events
        .list(&ListParams::default().fields("involvedObject.name=web"))
        .await
        .unwrap();
    let reasons: Vec<String> = for_web
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(
        reasons.contains(&"ScalingReplicaSet".to_string()),
        "{reasons:?}"
    );
    let all = events.list(&ListParams::default()).await.unwrap();
    let reasons: Vec<String> = all.items.iter().filter_map(|e| e.reason.clone()).collect();
    for r in [
        "SuccessfulCreate",
        "Scheduled",
        "Pulled",
        "Created",
        "Started",
    ] {
        assert!(
            reasons.contains(&r.to_string()),
            "{r} missing in {reasons:?}"
        );
    }
    // events.k8s.io/v1 sees the same events, and can create them.
    let new_api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "demo");
    let list = new_api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), all.items.len());
    assert!(
        list.items
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web"))
    );
    let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "manual.1"},
        "eventTime": sim.clock().now().strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string(),
        "reason": "OpsbotAction", "note": "scaled by opsbot", "type": "Normal", "action": "Scale",
        "reportingController": "opsbot", "reportingInstance": "opsbot-0",
        "regarding": {"kind": "Deployment", "name": "web", "namespace": "demo"},
    }))
    .unwrap();
    new_api.create(&PostParams::default(), &ev).await.unwrap();
    let core = events.get("manual.1").await.unwrap();
    assert_eq!(core.message.as_deref(), Some("scaled by opsbot"));
    assert_eq!(core.involved_object.name.as_deref(), Some("web"));
}

#[tokio::test]
async fn jobs_and_cronjobs() {
    let (sim, c) = empty().await;
    let cjs: Api<CronJob> = Api::namespaced(c.clone(), "demo");
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "backup"},
        "spec": {"schedule": "*/10 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "backup", "image": "postgres:16"}]}}}}},
    }))
    .unwrap();
    let created = cjs.create(&PostParams::default(), &cj).await.unwrap();
    assert_eq!(
        created.spec.unwrap().concurrency_policy.as_deref(),
        Some("Allow")
    );
    let mut bad = cj.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.as_mut().unwrap().schedule = "not a schedule".into();
    assert_eq!(
        code(cjs.create(&PostParams::default(), &bad).await.unwrap_err()).1,
        "Invalid"
    );

    sim.advance(Duration::from_secs(11 * 60)).await;
    let jobs: Api<Job> = Api::namespaced(c.clone(), "demo");
    let list = jobs.list(&ListParams::default()).await.unwrap();
    // 11 minutes hold one or two */10 boundaries.
    assert!(
        (1..=2).contains(&list.items.len()),
        "scheduled runs: {}",
        list.items.len()
    );
    assert!(
        list.items
            .iter()
            .all(|j| j.metadata.name.as_deref().unwrap().starts_with("backup-"))
    );
    let job = list
        .items
        .iter()
        .min_by_key(|j| j.metadata.name.clone())
        .unwrap();
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].kind,
        "CronJob"
    );
    let st = cjs.get("backup").await.unwrap().status.unwrap();
    assert!(st.last_schedule_time.is_some());
    assert!(
        st.last_successful_time.is_some(),
        "the 20s job finished within the span"
    );
    let jst = job.status.as_ref().unwrap();
    assert_eq!(jst.succeeded, Some(1));
    assert!(
        jst.conditions
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    );

    // A job created by hand runs and completes; a failing one fails.
    let mk = |name: &str| -> Job {
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": {"kubesim.io/duration-seconds": "30"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "busybox"}]}}}}))
        .unwrap()
    };
    jobs.create(&PostParams::default(), &mk("manual-1"))
        .await
        .unwrap();
    sim.faults().fail_jobs("demo", "doomed");
    jobs.create(&PostParams::default(), &mk("doomed-1"))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(10)).await;
    assert_eq!(
        jobs.get("manual-1").await.unwrap().status.unwrap().active,
        Some(1)
    );
    sim.advance(Duration::from_secs(30)).await;
    let ok = jobs.get("manual-1").await.unwrap().status.unwrap();
    assert_eq!(ok.succeeded, Some(1));
    let failed = jobs.get("doomed-1").await.unwrap().status.unwrap();
    assert_eq!(failed.failed, Some(1));
    let cond = failed
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(cond.reason.as_deref(), Some("BackoffLimitExceeded"));
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    let pod = pods
        .list(&ListParams::default().labels("job-name=doomed-1"))
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Failed"));
    // The controllers record events like the real ones: job completion and failure, and the
    // cronjob's runs.
    let events: Api<Event> = Api::namespaced(c.clone(), "demo");
    let events_of = |name: &str| {
        let events = events.clone();
        let fs = format!("involvedObject.name={name}");
        async move {
            let mut out: Vec<(String, String)> = events
                .list(&ListParams::default().fields(&fs))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
                .collect();
            out.sort();
            out
        }
    };
    let manual = events_of("manual-1").await;
    assert!(
        manual.contains(&("Normal".into(), "Completed".into()))
            && manual.contains(&("Normal".into(), "SuccessfulCreate".into()))
            && !manual.iter().any(|(t, _)| t == "Warning"),
        "{manual:?}"
    );
    let doomed = events_of("doomed-1").await;
    assert!(
        doomed.contains(&("Warning".into(), "BackoffLimitExceeded".into()))
            && !doomed.iter().any(|(_, r)| r == "Completed"),
        "{doomed:?}"
    );
    let cron = events_of("backup").await;
    assert!(
        cron.contains(&("Normal".into(), "SuccessfulCreate".into()))
            && cron.contains(&("Normal".into(), "SawCompletedJob".into())),
        "{cron:?}"
    );
    jobs.delete("manual-1", &DeleteParams::background())
        .await
        .unwrap();
    sim.advance(Duration::from_secs(2)).await;
    assert!(
        pods.list(&ListParams::default().labels("job-name=manual-1"))
            .await
            .unwrap()
            .items
            .is_empty(),
        "owned pods are garbage collected"
    );
}

#[tokio::test]
async fn hpa_status_and_bounds() {
    let (sim, c) = empty().await;
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.clone(), "demo");
    let h: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web-hpa"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
    }))
    .unwrap();
    hpas.create(&PostParams::default(), &h).await.unwrap();
    sim.advance(Duration::from_secs(10)).await;
    let st = hpas.get("web-hpa").await.unwrap().status.unwrap();
    assert_eq!(st.current_replicas, Some(2));
    assert_eq!(st.desired_replicas, 2);
    assert!(st.current_metrics.is_some());
    // Raising minReplicas scales the target up, like the real HPA.
    hpas.patch(
        "web-hpa",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minReplicas": 5, "maxReplicas": 5}})),
    )
    .await
    .unwrap();
    sim.advance(Duration::from_secs(30)).await;
    assert_eq!(
        deploys.get("web").await.unwrap().spec.unwrap().replicas,
        Some(5)
    );
    let st = hpas.get("web-hpa").await.unwrap().status.unwrap();
    assert_eq!(st.desired_replicas, 5);
    assert_eq!(st.current_replicas, Some(5));
    let bad = hpas
        .patch(
            "web-hpa",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minReplicas": 6}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(bad), (422, "Invalid".into()));
}

#[tokio::test]
async fn watch_streams_changes() {
    let (sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    let d = api
        .create(&PostParams::default(), &deployment("web", 1, "nginx:1"))
        .await
        .unwrap();
    let rv = d.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default()
                .fields("metadata.name=web")
                .timeout(10),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    let mut saw_label = false;
    while let Some(ev) = stream.try_next().await.unwrap() {
        if let WatchEvent::Modified(d) = ev
            && d.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("x"))
        {
            saw_label = true;
            break;
        }
    }
    assert!(saw_label);
    // kube-runtime's watcher (list + watch) sees a delete.
    let w = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default());
    let mut w = w.boxed();
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let mut saw_delete = false;
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
            Ok(Some(Ok(kube::runtime::watcher::Event::Delete(_)))) => {
                saw_delete = true;
                break;
            }
            Ok(Some(Ok(kube::runtime::watcher::Event::InitDone))) => {
                if api.get_opt("web").await.unwrap().is_none() && !saw_delete {
                    // Deleted before the initial list: the list is the proof.
                    saw_delete = true;
                    break;
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(saw_delete);
    drop(sim);
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let (_sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    for i in 0..7 {
        api.create(
            &PostParams::default(),
            &deployment(&format!("d{i}"), 0, "x:1"),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().filter_map(|d| d.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("d{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn streaming_list_watch() {
    let (_sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    api.create(&PostParams::default(), &deployment("a", 0, "x:1"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &deployment("b", 0, "x:1"))
        .await
        .unwrap();
    let cfg = kube::runtime::watcher::Config::default().streaming_lists();
    let mut w = kube::runtime::watcher(api.clone(), cfg).boxed();
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("event")
            .expect("stream")
            .expect("ok")
        {
            kube::runtime::watcher::Event::InitApply(d) => names.push(d.metadata.name.unwrap()),
            kube::runtime::watcher::Event::InitDone => break,
            _ => {}
        }
    }
    names.sort();
    assert_eq!(names, vec!["a", "b"]);
}

#[tokio::test]
async fn follow_logs_stream_as_time_passes() {
    use futures::AsyncBufReadExt;
    let (sim, c) = empty().await;
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    deploys
        .create(&PostParams::default(), &deployment("web", 1, "nginx:1"))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(30)).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    let name = pods.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let params = LogParams {
        follow: true,
        tail_lines: Some(2),
        ..Default::default()
    };
    let mut lines = pods.log_stream(&name, &params).await.unwrap().lines();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(10), lines.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    sim.advance(Duration::from_secs(10)).await;
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(10), lines.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(got.len(), 4);
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, got, "new lines, in order, no repeats");
}

#[tokio::test]
async fn delete_orphan_keeps_dependents() {
    let (sim, c) = empty().await;
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    sim.advance(Duration::from_secs(5)).await;
    deploys
        .delete("web", &DeleteParams::orphan())
        .await
        .unwrap();
    sim.advance(Duration::from_secs(5)).await;
    let rs: Api<ReplicaSet> = Api::namespaced(c.clone(), "demo");
    let left = rs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 1, "the ReplicaSet stays");
    assert!(
        left[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|r| r.is_empty())
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), "demo");
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    // The default (background) deletes dependents.
    rs.delete(
        left[0].metadata.name.as_deref().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    sim.advance(Duration::from_secs(2)).await;
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn kube_rs_discovery_finds_every_kind() {
    let (_sim, c) = empty().await;
    let d = kube::discovery::Discovery::new(c.clone())
        .run()
        .await
        .unwrap();
    let mut kinds: Vec<String> = d
        .groups()
        .flat_map(|g| {
            g.recommended_resources()
                .into_iter()
                .map(|(ar, _)| format!("{}/{}", ar.api_version, ar.kind))
        })
        .collect();
    kinds.sort();
    for want in [
        "apps/v1/Deployment",
        "apps/v1/ReplicaSet",
        "apps/v1/StatefulSet",
        "autoscaling/v2/HorizontalPodAutoscaler",
        "batch/v1/CronJob",
        "batch/v1/Job",
        "events.k8s.io/v1/Event",
        "v1/Event",
        "v1/Namespace",
        "v1/Pod",
    ] {
        assert!(kinds.contains(&want.to_string()), "{want} not in {kinds:?}");
    }
    let v = c.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "35"));
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let (_sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    let d = api
        .create(&PostParams::default(), &deployment("web", 0, "nginx:1"))
        .await
        .unwrap();
    let rv = d.metadata.resource_version.clone().unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("tier=front").timeout(10),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let label = |v: Option<&str>| Patch::Merge(json!({"metadata": {"labels": {"tier": v}}}));
    api.patch("web", &PatchParams::default(), &label(Some("front")))
        .await
        .unwrap();
    api.patch("web", &PatchParams::default(), &label(None))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Added(_)) => seen.push("ADDED"),
            Some(WatchEvent::Deleted(_)) => seen.push("DELETED"),
            // (Status writes by the controllers while it matches are MODIFIED.)
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(seen, vec!["ADDED", "DELETED"]);
}

#[tokio::test]
async fn unknown_fields_are_dropped_or_rejected_when_strict() {
    let (_sim, c) = empty().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "demo");
    api.create(&PostParams::default(), &deployment("web", 1, "nginx:1"))
        .await
        .unwrap();
    let typo = json!({"spec": {"replicaz": 3}});
    // Default (like the API server without fieldValidation): accepted, the unknown field dropped.
    let p = api
        .patch("web", &PatchParams::default(), &Patch::Merge(typo.clone()))
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().replicas, Some(1));
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        c.clone(),
        "demo",
        &kube::api::ApiResource::erase::<Deployment>(&()),
    );
    assert!(
        raw.get("web").await.unwrap().data["spec"]
            .get("replicaz")
            .is_none()
    );
    // Strict: a 400 naming the field.
    let err = api
        .patch(
            "web",
            &PatchParams {
                field_validation: Some(kube::api::ValidationDirective::Strict),
                ..Default::default()
            },
            &Patch::Merge(typo),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert!(
                s.message.contains("unknown field \"spec.replicaz\""),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
}
