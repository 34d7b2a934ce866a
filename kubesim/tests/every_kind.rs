//! Every verb on every served kind, through kube-rs's dynamic API over HTTP.

mod common;

use std::time::Duration;

use common::{code, empty};
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};

fn kinds(now: &str) -> Vec<(&'static str, &'static str, &'static str, bool, Value)> {
    let template = json!({"metadata": {"labels": {"app": "t"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let selector = json!({"matchLabels": {"app": "t"}});
    vec![
        ("", "v1", "Namespace", false, json!({})),
        (
            "",
            "v1",
            "Pod",
            true,
            json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        ),
        (
            "",
            "v1",
            "Event",
            true,
            json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "demo"}, "reason": "Test", "message": "m", "type": "Normal", "lastTimestamp": now, "firstTimestamp": now, "count": 1}),
        ),
        (
            "apps",
            "v1",
            "Deployment",
            true,
            json!({"spec": {"replicas": 1, "selector": selector, "template": template}}),
        ),
        (
            "apps",
            "v1",
            "ReplicaSet",
            true,
            json!({"spec": {"replicas": 1, "selector": selector, "template": template}}),
        ),
        (
            "apps",
            "v1",
            "StatefulSet",
            true,
            json!({"spec": {"replicas": 1, "serviceName": "t", "selector": selector, "template": template}}),
        ),
        (
            "batch",
            "v1",
            "Job",
            true,
            json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
        ),
        (
            "batch",
            "v1",
            "CronJob",
            true,
            json!({"spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
        ),
        (
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            true,
            json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "t"}, "minReplicas": 1, "maxReplicas": 3}}),
        ),
        (
            "events.k8s.io",
            "v1",
            "Event",
            true,
            json!({"eventTime": format!("{}.000000Z", now.trim_end_matches('Z')), "reportingController": "opsbot", "reportingInstance": "opsbot-0", "action": "Test", "reason": "Test", "note": "n", "type": "Normal", "regarding": {"kind": "Pod", "name": "p", "namespace": "demo"}}),
        ),
    ]
}

fn labels(o: &DynamicObject) -> std::collections::BTreeMap<String, String> {
    o.metadata.labels.clone().unwrap_or_default()
}

#[tokio::test]
async fn every_verb_on_every_kind() {
    let (sim, c) = empty().await;
    let now = kubesim::clock::fmt_time(sim.clock().now());
    for (group, version, kind, namespaced, body) in kinds(&now) {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, _) = kube::discovery::pinned_kind(&c, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let ar: ApiResource = ar;
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(c.clone(), "demo", &ar)
        } else {
            Api::all_with(c.clone(), &ar)
        };
        let name = format!("t-{}", kind.to_lowercase());
        let mut obj = body.clone();
        obj["apiVersion"] = json!(ar.api_version);
        obj["kind"] = json!(kind);
        obj["metadata"] = json!({"name": name, "labels": {"suite": "verbs"}});
        let obj: DynamicObject = serde_json::from_value(obj).unwrap();
        let ctx = |what: &str| format!("{group}/{version} {kind}: {what}");

        // create, and again
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", ctx("create")));
        assert!(
            created.metadata.uid.is_some() && created.metadata.resource_version.is_some(),
            "{}",
            ctx("create")
        );
        assert_eq!(
            code(api.create(&PostParams::default(), &obj).await.unwrap_err()),
            (409, "AlreadyExists".into()),
            "{}",
            ctx("create twice")
        );
        // get, list with a label selector
        assert_eq!(
            api.get(&name).await.unwrap().metadata.uid,
            created.metadata.uid,
            "{}",
            ctx("get")
        );
        let listed = api
            .list(&ListParams::default().labels("suite=verbs"))
            .await
            .unwrap();
        assert!(
            listed
                .items
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some(name.as_str())),
            "{}",
            ctx("list")
        );
        assert_eq!(
            code(api.get("missing").await.unwrap_err()),
            (404, "NotFound".into()),
            "{}",
            ctx("get missing")
        );
        // replace with the current version (retrying races with controllers), then with a stale one
        let stale = api.get(&name).await.unwrap();
        let mut tries = 0;
        loop {
            let mut cur = api.get(&name).await.unwrap();
            cur.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("replaced".into(), "yes".into());
            match api.replace(&name, &PostParams::default(), &cur).await {
                Ok(r) => {
                    assert_eq!(
                        labels(&r).get("replaced").map(String::as_str),
                        Some("yes"),
                        "{}",
                        ctx("replace")
                    );
                    break;
                }
                Err(e) if tries < 20 => {
                    assert_eq!(code(e).0, 409, "{}", ctx("replace"));
                    tries += 1;
                }
                Err(e) => panic!("{}: {e}", ctx("replace")),
            }
        }
        assert_eq!(
            code(
                api.replace(&name, &PostParams::default(), &stale)
                    .await
                    .unwrap_err()
            )
            .1,
            "Conflict",
            "{}",
            ctx("stale replace")
        );
        // watch from here while patching with all four patch types
        let rv = api
            .get(&name)
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let mut watch = api
            .watch(
                &WatchParams::default()
                    .fields(&format!("metadata.name={name}"))
                    .timeout(10),
                &rv,
            )
            .await
            .unwrap()
            .boxed();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"merge": "1"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", ctx("merge patch")));
        let json_patch: json_patch::Patch = serde_json::from_value(
            json!([{"op": "add", "path": "/metadata/annotations", "value": {"json": "1"}}]),
        )
        .unwrap();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::<()>::Json(json_patch),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", ctx("json patch")));
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"smp": "1"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", ctx("strategic patch")));
        let apply = json!({"apiVersion": ar.api_version, "kind": kind, "metadata": {"name": name, "labels": {"apply": "1"}}});
        let applied = api
            .patch(
                &name,
                &PatchParams::apply("verbs").force(),
                &Patch::Apply(apply),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", ctx("apply")));
        let l = labels(&applied);
        for k in ["suite", "merge", "smp", "apply"] {
            assert!(l.contains_key(k), "{}: label {k} in {l:?}", ctx("patches"));
        }
        assert_eq!(
            applied
                .metadata
                .annotations
                .unwrap_or_default()
                .get("json")
                .map(String::as_str),
            Some("1"),
            "{}",
            ctx("json patch")
        );
        let mut saw = 0;
        while saw < 4 {
            match tokio::time::timeout(Duration::from_secs(10), watch.try_next())
                .await
                .unwrap()
                .unwrap()
            {
                Some(WatchEvent::Modified(o)) if labels(&o).contains_key("merge") => saw += 1,
                Some(_) => {}
                None => break,
            }
        }
        assert!(saw >= 1, "{}", ctx("watch"));
        // dry runs change nothing
        let dry = api
            .patch(
                &name,
                &PatchParams::default().dry_run(),
                &Patch::Merge(json!({"metadata": {"labels": {"dry": "1"}}})),
            )
            .await
            .unwrap();
        assert!(labels(&dry).contains_key("dry"));
        assert!(
            !labels(&api.get(&name).await.unwrap()).contains_key("dry"),
            "{}",
            ctx("dry run")
        );
        // delete, and again
        api.delete(&name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", ctx("delete")));
        assert_eq!(
            code(api.get(&name).await.unwrap_err()).0,
            404,
            "{}",
            ctx("deleted")
        );
        assert_eq!(
            code(
                api.delete(&name, &DeleteParams::default())
                    .await
                    .unwrap_err()
            )
            .0,
            404,
            "{}",
            ctx("delete twice")
        );
    }
}
