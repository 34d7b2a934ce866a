//! The StatefulSet controller: ordered pods `name-0..n-1`, created and removed one at a time.

use serde_json::{Value, json};

use super::replicaset::pod_from_template;
use super::{Ctx, children, int, pod_ready, stable_hash};
use crate::resources::{pods, statefulsets};
use crate::store::name_of;

pub(super) fn reconcile(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    for s in ctx.objects(statefulsets(), &keys) {
        reconcile_one(ctx, s);
    }
}

fn ordinal(sts: &str, pod: &Value) -> Option<i64> {
    name_of(pod)
        .strip_prefix(sts)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn reconcile_one(ctx: &Ctx<'_>, sts: Value) {
    let name = name_of(&sts).to_string();
    let revision = format!("{name}-{}", &stable_hash(&sts["spec"]["template"])[..10]);
    let mut owned: Vec<(i64, Value)> = children(ctx, pods(), &sts)
        .into_iter()
        .filter_map(|p| ordinal(&name, &p).map(|o| (o, p)))
        .collect();
    owned.sort_by_key(|(o, _)| *o);
    let want = int(&sts["spec"]["replicas"]);
    // Pods still terminating count as not ready: the next step waits for them.
    let all_ready = owned
        .iter()
        .all(|(_, p)| pod_ready(p) && p["metadata"]["deletionTimestamp"].is_null());
    let parallel = sts["spec"]["podManagementPolicy"] == "Parallel";
    let rev_of = |p: &Value| {
        p["metadata"]["labels"]["controller-revision-hash"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // Scale up: the lowest missing ordinal, once every pod before it is ready.
    let mut acted = false;
    for i in 0..want {
        match owned.iter().find(|(o, _)| *o == i) {
            Some((_, p)) if !pod_ready(p) && !parallel => {
                acted = true;
                break;
            }
            Some(_) => {}
            None => {
                let pname = format!("{name}-{i}");
                let pod = pod_from_template(
                    &sts,
                    &pname,
                    &sts["spec"]["template"],
                    json!({"controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": pname, "apps.kubernetes.io/pod-index": i.to_string()}),
                );
                if ctx.create(pods(), pod).is_some() {
                    ctx.event(
                        &sts,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("create Pod {pname} in StatefulSet {name} successful"),
                        "statefulset-controller",
                    );
                }
                acted = true;
                if !parallel {
                    break;
                }
            }
        }
    }
    // Scale down: the highest ordinal first, one at a time, when the rest are ready.
    if !acted
        && all_ready
        && let Some((o, p)) = owned.iter().rev().find(|(o, _)| *o >= want).cloned()
    {
        super::kubelet::terminate(ctx, &p);
        ctx.event(
            &sts,
            "Normal",
            "SuccessfulDelete",
            &format!(
                "delete Pod {} in StatefulSet {name} successful",
                name_of(&p)
            ),
            "statefulset-controller",
        );
        owned.retain(|(x, _)| *x != o);
        acted = true;
    }
    // Rolling update: replace the highest pod on an old revision.
    if !acted
        && all_ready
        && let Some((o, p)) = owned
            .iter()
            .rev()
            .find(|(o, p)| *o < want && rev_of(p) != revision)
            .cloned()
    {
        super::kubelet::terminate(ctx, &p);
        ctx.event(
            &sts,
            "Normal",
            "SuccessfulDelete",
            &format!(
                "delete Pod {} in StatefulSet {name} successful",
                name_of(&p)
            ),
            "statefulset-controller",
        );
        owned.retain(|(x, _)| *x != o);
    }
    owned.retain(|(_, p)| p["metadata"]["deletionTimestamp"].is_null());
    let ready = owned.iter().filter(|(_, p)| pod_ready(p)).count();
    let updated = owned.iter().filter(|(_, p)| rev_of(p) == revision).count();
    let current_rev = if updated == owned.len() {
        revision.clone()
    } else {
        sts["status"]["currentRevision"]
            .as_str()
            .unwrap_or(&revision)
            .to_string()
    };
    let status = json!({
        "observedGeneration": sts["metadata"]["generation"],
        "replicas": owned.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": if current_rev == revision { updated } else { owned.len() - updated },
        "updatedReplicas": updated,
        "currentRevision": current_rev,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    ctx.set_status(statefulsets(), &sts, status);
}
