//! A pretend kubelet: schedules pods, starts their containers, marks them ready.
//! A pod of a deployment whose rollout is stalled (fault) sits in ImagePullBackOff.

use jiff::SignedDuration;
use serde_json::{Value, json};

use super::{Ctx, int, time_of};
use crate::resources::{pods, replicasets};
use crate::store::{name_of, ns_of};

/// Seconds from creation to scheduled, and to running and ready.
const SCHEDULE_AFTER: i64 = 1;
const READY_AFTER: i64 = 2;

const NODES: [&str; 3] = ["kubesim-node-a", "kubesim-node-b", "kubesim-node-c"];

/// Seconds a terminating pod lingers before it is gone.
const TERMINATE_AFTER: i64 = 1;

/// The kubelet's `Killing` events for a pod going away.
pub(super) fn killing(ctx: &Ctx<'_>, pod: &Value) {
    if pod["status"]["phase"] != "Running" {
        return;
    }
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default();
        ctx.event(
            pod,
            "Normal",
            "Killing",
            &format!("Stopping container {name}"),
            "kubelet",
        );
    }
}

/// Start a graceful delete: the pod shows as Terminating and disappears a moment later.
pub(super) fn terminate(ctx: &Ctx<'_>, pod: &Value) {
    killing(ctx, pod);
    let mut p = pod.clone();
    p["metadata"]["deletionTimestamp"] = json!(ctx.now_str());
    p["metadata"]["deletionGracePeriodSeconds"] = json!(TERMINATE_AFTER);
    ctx.update(pods(), p);
}

pub(super) fn reconcile(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    let terminating = ctx.objects_where(pods(), &keys, |p| {
        p["metadata"]["deletionTimestamp"].is_string()
    });
    for p in terminating {
        let Some(since) = time_of(&p["metadata"]["deletionTimestamp"]) else {
            continue;
        };
        if ctx.now.duration_since(since).as_secs() >= TERMINATE_AFTER {
            ctx.delete(pods(), &p);
        } else {
            ctx.wake_at(&p, since + SignedDuration::from_secs(TERMINATE_AFTER));
        }
    }
    let pending = ctx.objects_where(pods(), &keys, |p| {
        matches!(p["status"]["phase"].as_str(), Some("Pending") | None)
    });
    for pod in pending {
        // A pending pod moves on with the clock (scheduled, started, ready).
        ctx.wake_soon(&pod);
        reconcile_one(ctx, pod);
    }
}

/// The deployment a pod belongs to, through its ReplicaSet.
fn deployment_of(ctx: &Ctx<'_>, pod: &Value) -> Option<String> {
    let owner = pod.pointer("/metadata/ownerReferences/0")?;
    if owner["kind"] != "ReplicaSet" {
        return None;
    }
    let rs = ctx
        .store
        .get(replicasets(), ns_of(pod), owner["name"].as_str()?)?;
    rs.pointer("/metadata/ownerReferences/0/name")
        .and_then(Value::as_str)
        .map(String::from)
}

fn reconcile_one(ctx: &Ctx<'_>, pod: Value) {
    let Some(created) = time_of(&pod["metadata"]["creationTimestamp"]) else {
        return;
    };
    let age = ctx.now.duration_since(created).as_secs();
    let now = ctx.now_str();
    let mut p = pod.clone();
    let containers: Vec<Value> = p["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if p["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        if age < SCHEDULE_AFTER {
            return;
        }
        let node = NODES[(name_of(&pod).len()
            + name_of(&pod).bytes().map(usize::from).sum::<usize>())
            % NODES.len()];
        p["spec"]["nodeName"] = json!(node);
        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": now, "lastProbeTime": null}]);
        p["status"]["hostIP"] = json!("10.0.0.1");
        ctx.event(
            &pod,
            "Normal",
            "Scheduled",
            &format!(
                "Successfully assigned {}/{} to {node}",
                ns_of(&pod),
                name_of(&pod)
            ),
            "default-scheduler",
        );
    }
    let stalled = deployment_of(ctx, &pod).is_some_and(|d| ctx.faults.is_stalled(ns_of(&pod), &d));
    if stalled {
        let already =
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff";
        if !already {
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| {
                    json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{}\"", c["image"].as_str().unwrap_or(""))}}})
                })
                .collect();
            p["status"]["containerStatuses"] = json!(statuses);
            let image = containers
                .first()
                .and_then(|c| c["image"].as_str())
                .unwrap_or("");
            ctx.event(&pod, "Warning", "Failed", &format!("Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"), "kubelet");
            ctx.event(
                &pod,
                "Normal",
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
                "kubelet",
            );
        }
        ctx.update(pods(), p);
        return;
    }
    if age < READY_AFTER {
        if p != pod {
            ctx.update(pods(), p);
        }
        return;
    }
    let started = created + SignedDuration::from_secs(READY_AFTER);
    let started_s = crate::clock::fmt_time(started);
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": format!("{}@sha256:{}", c["image"].as_str().unwrap_or(""), super::stable_hash(&c["image"])),
            "containerID": format!("containerd://{}", super::stable_hash(&json!([name_of(&pod), c["name"]]))),
            "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": started_s}}})
        })
        .collect();
    for c in &containers {
        let image = c["image"].as_str().unwrap_or("");
        let cname = c["name"].as_str().unwrap_or("");
        ctx.event(
            &pod,
            "Normal",
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
            "kubelet",
        );
        ctx.event(
            &pod,
            "Normal",
            "Created",
            &format!("Created container: {cname}"),
            "kubelet",
        );
        ctx.event(
            &pod,
            "Normal",
            "Started",
            &format!("Started container {cname}"),
            "kubelet",
        );
    }
    let ip = format!(
        "10.244.{}.{}",
        int(&json!(name_of(&pod).len())) % 3,
        2 + name_of(&pod).bytes().map(u32::from).sum::<u32>() % 250
    );
    p["status"] = json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started_s, "lastProbeTime": null},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now, "lastProbeTime": null},
            {"type": "Ready", "status": "True", "lastTransitionTime": started_s, "lastProbeTime": null},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": started_s, "lastProbeTime": null},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now, "lastProbeTime": null},
        ],
        "hostIP": "10.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started_s,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    });
    ctx.update(pods(), p);
}
