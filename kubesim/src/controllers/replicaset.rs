//! The ReplicaSet controller: keeps the number of pods and the status counts.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Ctx, children_shared, int, owner_ref, pod_ready, random_suffix};
use crate::resources::{pods, replicasets};
use crate::store::{meta_str, name_of, ns_of};

pub(super) fn reconcile(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    for rs in ctx.shared_objects(replicasets(), &keys) {
        reconcile_one(ctx, rs);
    }
}

/// A new pod from a template, owned by `owner`.
pub(crate) fn pod_from_template(
    owner: &Value,
    name: &str,
    template: &Value,
    extra_labels: Value,
) -> Value {
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    if let Some(extra) = extra_labels.as_object() {
        for (k, v) in extra {
            labels[k] = v.clone();
        }
    }
    let mut meta = json!({
        "name": name,
        "namespace": ns_of(owner),
        "labels": labels,
        "ownerReferences": [owner_ref(owner)],
    });
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        meta["annotations"] = Value::Object(a.clone());
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"], "status": {"phase": "Pending", "qosClass": "BestEffort"} })
}

fn reconcile_one(ctx: &Ctx<'_>, rs: Arc<Value>) {
    let mut owned = children_shared(ctx, pods(), &rs);
    let want = int(&rs["spec"]["replicas"]);
    let have = owned.len() as i64;
    if have < want {
        for _ in 0..(want - have) {
            let name = format!("{}-{}", name_of(&rs), random_suffix());
            let pod = pod_from_template(&rs, &name, &rs["spec"]["template"], json!({}));
            if let Some(p) = ctx.create(pods(), pod) {
                ctx.event(
                    &rs,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {name}"),
                    "replicaset-controller",
                );
                owned.push(p);
            }
        }
    } else if have > want {
        // Not-ready pods go first, then the newest.
        owned.sort_by(|a, b| {
            pod_ready(a).cmp(&pod_ready(b)).then_with(|| {
                meta_str(b, "creationTimestamp").cmp(meta_str(a, "creationTimestamp"))
            })
        });
        let excess = (have - want) as usize;
        for p in owned.drain(..excess) {
            super::kubelet::killing(ctx, &p);
            ctx.delete(pods(), &p);
            ctx.event(
                &rs,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", name_of(&p)),
                "replicaset-controller",
            );
        }
    }
    let ready = owned.iter().filter(|p| pod_ready(p)).count() as i64;
    let mut status = json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": owned.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"]["generation"],
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            !(matches!(
                k.as_str(),
                "readyReplicas" | "availableReplicas" | "fullyLabeledReplicas"
            ) && v == 0)
        });
    }
    ctx.set_status(replicasets(), &rs, status);
}
