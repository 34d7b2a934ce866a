//! The deployment controller: ReplicaSets per template, revisions, rolling updates, status and conditions.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Ctx, children_shared, int, owner_ref, set_condition, stable_hash, time_of};
use crate::resources::{deployments, replicasets};
use crate::store::{name_of, ns_of};

const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether two pod templates are the same but for the label the controller adds (compared in
/// place: this runs for every ReplicaSet of every deployment looked at).
fn same_template(a: &Value, b: &Value) -> bool {
    /// `None`: not both mappings; `Some(None)`: they differ outside `key`; else what `key` holds.
    type Rest<'a> = Option<Option<(&'a Value, &'a Value)>>;
    fn eq_but<'a>(a: &'a Value, b: &'a Value, key: &str) -> Rest<'a> {
        let (a, b) = (a.as_object()?, b.as_object()?);
        let kept = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != key).count();
        let same = kept(a) == kept(b) && a.iter().all(|(k, v)| k == key || b.get(k) == Some(v));
        let null = &Value::Null;
        Some(same.then(|| (a.get(key).unwrap_or(null), b.get(key).unwrap_or(null))))
    }
    let fast = eq_but(a, b, "metadata").and_then(|rest| match rest {
        None => Some(false),
        Some((ma, mb)) => eq_but(ma, mb, "labels").and_then(|rest| match rest {
            None => Some(false),
            Some((la, lb)) => eq_but(la, lb, "pod-template-hash").map(|r| r.is_some()),
        }),
    });
    fast.unwrap_or_else(|| bare_template(a) == bare_template(b))
}

/// The template without the label the controller adds, for comparing.
fn bare_template(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
    }
    t
}

/// Resolve an int-or-percent against `total`.
fn resolve(v: &Value, total: i64, round_up: bool, default_pct: i64) -> i64 {
    let pct = |p: i64| {
        let x = total * p;
        if round_up { (x + 99) / 100 } else { x / 100 }
    };
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s
            .trim_end_matches('%')
            .parse::<i64>()
            .map(pct)
            .unwrap_or_else(|_| pct(default_pct)),
        _ => pct(default_pct),
    }
}

pub(super) fn reconcile(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    for d in ctx.shared_objects(deployments(), &keys) {
        reconcile_one(ctx, d);
    }
}

fn scale_rs(ctx: &Ctx<'_>, d: &Value, rs: &mut Arc<Value>, to: i64) -> bool {
    let from = int(&rs["spec"]["replicas"]);
    if from == to {
        return false;
    }
    let mut new = Value::clone(rs);
    new["spec"]["replicas"] = json!(to);
    new["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
        json!(int(&d["spec"]["replicas"]).to_string());
    match ctx.update(replicasets(), new) {
        Some(updated) => {
            let dir = if to > from { "up" } else { "down" };
            ctx.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                &format!(
                    "Scaled {dir} replica set {} from {from} to {to}",
                    name_of(rs)
                ),
                "deployment-controller",
            );
            *rs = updated;
            true
        }
        None => false,
    }
}

fn reconcile_one(ctx: &Ctx<'_>, d: Arc<Value>) {
    let ns = ns_of(&d).to_string();
    let name = name_of(&d).to_string();
    let mut rss = children_shared(ctx, replicasets(), &d);
    let template = &d["spec"]["template"];
    let max_rev = rss.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let mut progressed = false;
    let mut created_new = false;

    // Find or create the ReplicaSet for the current template.
    let new_idx = match rss
        .iter()
        .position(|rs| same_template(&rs["spec"]["template"], template))
    {
        Some(i) => {
            if revision(&rss[i]) < max_rev {
                // A rollback to an old template: the old ReplicaSet becomes the newest revision.
                let mut rs = Value::clone(&rss[i]);
                let old_rev = revision(&rs);
                rs["metadata"]["annotations"][REVISION] = json!((max_rev + 1).to_string());
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] =
                    json!(old_rev.to_string());
                match ctx.update(replicasets(), rs) {
                    Some(u) => rss[i] = u,
                    None => return,
                }
                progressed = true;
            }
            i
        }
        None => {
            let template = bare_template(template);
            let hash = stable_hash(&template);
            let mut tpl = template.clone();
            tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut labels = tpl["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let mut annotations = json!({
                REVISION: (max_rev + 1).to_string(),
                "deployment.kubernetes.io/desired-replicas": int(&d["spec"]["replicas"]).to_string(),
                "deployment.kubernetes.io/max-replicas": (int(&d["spec"]["replicas"]) + 1).to_string(),
            });
            if let Some(cc) = d["metadata"]["annotations"]["kubernetes.io/change-cause"].as_str() {
                annotations["kubernetes.io/change-cause"] = json!(cc);
            }
            let rs = json!({
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "namespace": ns,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [owner_ref(&d)],
                },
                "spec": {"replicas": 0, "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0), "selector": selector, "template": tpl},
            });
            let Some(rs) = ctx.create(replicasets(), rs) else {
                return;
            };
            created_new = true;
            progressed = true;
            rss.push(rs);
            rss.len() - 1
        }
    };
    let new_name = name_of(&rss[new_idx]).to_string();
    let new_rev = revision(&rss[new_idx]);

    // Keep the deployment's revision annotation in step.
    let mut d = d;
    if d["metadata"]["annotations"][REVISION].as_str() != Some(new_rev.to_string().as_str()) {
        let mut nd = Value::clone(&d);
        if !nd["metadata"]["annotations"].is_object() {
            nd["metadata"]["annotations"] = json!({});
        }
        nd["metadata"]["annotations"][REVISION] = json!(new_rev.to_string());
        match ctx.update(deployments(), nd) {
            Some(u) => d = u,
            None => return,
        }
    }

    let desired = int(&d["spec"]["replicas"]);
    let paused = d["spec"]["paused"] == true;
    if !paused {
        progressed |= roll(ctx, &d, &mut rss, new_idx, desired);
    }
    cleanup_history(ctx, &d, &rss, new_idx);

    // Status.
    let sum = |f: &dyn Fn(&Value) -> i64| rss.iter().map(|r| f(r)).sum::<i64>();
    let replicas = sum(&|r| int(&r["status"]["replicas"]));
    let ready = sum(&|r| int(&r["status"]["readyReplicas"]));
    let available = sum(&|r| int(&r["status"]["availableReplicas"]));
    let spec_total = sum(&|r| int(&r["spec"]["replicas"]));
    let updated = int(&rss[new_idx]["status"]["replicas"]);
    let max_unavailable = resolve(
        &d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        desired,
        false,
        25,
    );
    let old = &d["status"];
    progressed |= int(&old["updatedReplicas"]) != updated
        || int(&old["readyReplicas"]) != ready
        || int(&old["availableReplicas"]) != available
        || int(&old["replicas"]) != replicas;
    let mut conds: Vec<Value> = old["conditions"].as_array().cloned().unwrap_or_default();
    let now = ctx.now_str();
    if available >= desired - max_unavailable {
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &now,
            true,
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now,
            true,
        );
    }
    let complete =
        updated == desired && replicas == desired && available == desired && spec_total == desired;
    if !complete {
        // The progress deadline runs on the clock.
        ctx.wake_soon(&d);
    }
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    let prog = conds.iter().find(|c| c["type"] == "Progressing").cloned();
    if complete {
        set_condition(
            &mut conds,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            &now,
            true,
        );
    } else if created_new {
        set_condition(
            &mut conds,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{new_name}\""),
            &now,
            true,
        );
    } else if progressed || prog.is_none() {
        set_condition(
            &mut conds,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{new_name}\" is progressing."),
            &now,
            true,
        );
        if let Some(c) = conds.iter_mut().find(|c| c["type"] == "Progressing") {
            c["lastUpdateTime"] = json!(now);
        }
    } else if let Some(p) = prog
        && p["reason"] != "ProgressDeadlineExceeded"
        && !paused
        && time_of(&p["lastUpdateTime"])
            .is_some_and(|t| ctx.now.duration_since(t).as_secs() > deadline)
    {
        set_condition(
            &mut conds,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
            &now,
            true,
        );
        // The real controller only sets the condition; this Warning event is a kubesim liberty that
        // opsbot's tests rely on (a rollout failure visible in `get events`).
        ctx.event(
            &d,
            "Warning",
            "ProgressDeadlineExceeded",
            &format!("Deployment {name} has timed out progressing"),
            "deployment-controller",
        );
    }
    // Put Available before Progressing like the real controller does.
    conds.sort_by_key(|c| if c["type"] == "Available" { 0 } else { 1 });
    let mut status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": conds,
    });
    let unavailable = (spec_total.max(desired) - available).max(0);
    if unavailable > 0 {
        status["unavailableReplicas"] = json!(unavailable);
    }
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            !(matches!(
                k.as_str(),
                "readyReplicas" | "availableReplicas" | "updatedReplicas" | "replicas"
            ) && v == 0)
        });
    }
    let unchanged = ctx.store.read_with(deployments(), &ns, &name, |cur| {
        cur["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]
    });
    if unchanged == Some(true) {
        ctx.set_status(deployments(), &d, status);
    }
}

/// Move replicas from old ReplicaSets to the new one. Returns whether anything was scaled.
fn roll(ctx: &Ctx<'_>, d: &Value, rss: &mut [Arc<Value>], new_idx: usize, desired: i64) -> bool {
    let mut changed = false;
    let strategy = d["spec"]["strategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate");
    let old_idx: Vec<usize> = (0..rss.len()).filter(|i| *i != new_idx).collect();
    let old_active = old_idx
        .iter()
        .any(|i| int(&rss[*i]["spec"]["replicas"]) > 0 || int(&rss[*i]["status"]["replicas"]) > 0);
    if !old_active {
        let mut rs = rss[new_idx].clone();
        changed |= scale_rs(ctx, d, &mut rs, desired);
        rss[new_idx] = rs;
        return changed;
    }
    if strategy == "Recreate" {
        for i in &old_idx {
            let mut rs = rss[*i].clone();
            changed |= scale_rs(ctx, d, &mut rs, 0);
            rss[*i] = rs;
        }
        return changed;
    }
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = resolve(&ru["maxSurge"], desired, true, 25);
    let mut unavail = resolve(&ru["maxUnavailable"], desired, false, 25);
    if surge == 0 && unavail == 0 {
        unavail = 1;
    }
    // Scale up the new ReplicaSet within the surge.
    let total: i64 = rss.iter().map(|r| int(&r["spec"]["replicas"])).sum();
    let new_spec = int(&rss[new_idx]["spec"]["replicas"]);
    if new_spec < desired {
        let room = (desired + surge - total).min(desired - new_spec);
        if room > 0 {
            let mut rs = rss[new_idx].clone();
            changed |= scale_rs(ctx, d, &mut rs, new_spec + room);
            rss[new_idx] = rs;
        }
    } else if new_spec > desired {
        let mut rs = rss[new_idx].clone();
        changed |= scale_rs(ctx, d, &mut rs, desired);
        rss[new_idx] = rs;
    }
    // Scale down old ReplicaSets as far as availability allows; unhealthy old pods go first.
    let all: i64 = rss.iter().map(|r| int(&r["spec"]["replicas"])).sum();
    let new_unavailable = (int(&rss[new_idx]["spec"]["replicas"])
        - int(&rss[new_idx]["status"]["availableReplicas"]))
    .max(0);
    let mut max_down = all - (desired - unavail) - new_unavailable;
    for i in &old_idx {
        let rs = &rss[*i];
        let spec = int(&rs["spec"]["replicas"]);
        let unhealthy = (spec - int(&rs["status"]["availableReplicas"])).max(0);
        if unhealthy > 0 {
            let mut rs = rs.clone();
            changed |= scale_rs(ctx, d, &mut rs, spec - unhealthy);
            rss[*i] = rs;
        }
    }
    for i in &old_idx {
        if max_down <= 0 {
            break;
        }
        let spec = int(&rss[*i]["spec"]["replicas"]);
        if spec == 0 {
            continue;
        }
        let by = spec.min(max_down);
        let mut rs = rss[*i].clone();
        changed |= scale_rs(ctx, d, &mut rs, spec - by);
        rss[*i] = rs;
        max_down -= by;
    }
    changed
}

/// Delete the oldest unused ReplicaSets beyond revisionHistoryLimit.
fn cleanup_history(ctx: &Ctx<'_>, d: &Value, rss: &[Arc<Value>], new_idx: usize) {
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&Value> = rss
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            *i != new_idx && int(&r["spec"]["replicas"]) == 0 && int(&r["status"]["replicas"]) == 0
        })
        .map(|(_, r)| &**r)
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|r| revision(r));
    let excess = idle.len() - limit;
    for r in idle.into_iter().take(excess) {
        ctx.delete(replicasets(), r);
    }
}
