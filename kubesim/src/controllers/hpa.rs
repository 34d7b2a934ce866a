//! The HPA controller: keeps the target within minReplicas..maxReplicas and reports a steady CPU figure.

use serde_json::{Value, json};

use super::{Ctx, int, set_condition, stable_hash};
use crate::resources::{self, hpas};
use crate::store::name_of;

pub(super) fn reconcile(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    for h in ctx.objects(hpas(), &keys) {
        reconcile_one(ctx, h);
    }
}

fn reconcile_one(ctx: &Ctx<'_>, h: Value) {
    let ns = h["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = &h["spec"]["scaleTargetRef"];
    let def = match r["kind"].as_str() {
        Some("StatefulSet") => resources::statefulsets(),
        Some("ReplicaSet") => resources::replicasets(),
        _ => resources::deployments(),
    };
    let now = ctx.now_str();
    let mut status = h["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let mut conds: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let target_name = r["name"].as_str().unwrap_or_default();
    let Some(target) = ctx.store.get(def, &ns, target_name) else {
        set_condition(
            &mut conds,
            "AbleToScale",
            "False",
            "FailedGetScale",
            &format!(
                "the HPA controller was unable to get the target's current scale: {} \"{target_name}\" not found",
                def.qualified()
            ),
            &now,
            false,
        );
        status["conditions"] = json!(conds);
        status["currentReplicas"] = json!(0);
        status["desiredReplicas"] = json!(0);
        ctx.set_status(hpas(), &h, status);
        return;
    };
    let min = h["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = int(&h["spec"]["maxReplicas"]);
    let spec_replicas = int(&target["spec"]["replicas"]);
    let current = target["status"]["replicas"].as_i64().unwrap_or(0);
    let util = 30
        + (stable_hash(&json!(name_of(&h)))
            .bytes()
            .map(u64::from)
            .sum::<u64>()
            % 40) as i64;
    status["currentReplicas"] = json!(current);
    if spec_replicas == 0 {
        set_condition(
            &mut conds,
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            &now,
            false,
        );
        set_condition(
            &mut conds,
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            &now,
            false,
        );
        status["desiredReplicas"] = json!(0);
    } else {
        let desired = spec_replicas.clamp(min, max.max(min));
        if desired != spec_replicas {
            let mut t = target.clone();
            t["spec"]["replicas"] = json!(desired);
            if ctx.update(def, t).is_some() {
                let why = if desired > spec_replicas {
                    "Current number of replicas below Spec.MinReplicas"
                } else {
                    "Current number of replicas above Spec.MaxReplicas"
                };
                ctx.event(
                    &h,
                    "Normal",
                    "SuccessfulRescale",
                    &format!("New size: {desired}; reason: {why}"),
                    "horizontal-pod-autoscaler",
                );
                status["lastScaleTime"] = json!(now);
            }
            set_condition(
                &mut conds,
                "AbleToScale",
                "True",
                "SucceededRescale",
                &format!("the HPA controller was able to update the target scale to {desired}"),
                &now,
                false,
            );
        } else {
            set_condition(
                &mut conds,
                "AbleToScale",
                "True",
                "ReadyForNewScale",
                "recommended size matches current size",
                &now,
                false,
            );
        }
        set_condition(
            &mut conds,
            "ScalingActive",
            "True",
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)",
            &now,
            false,
        );
        if spec_replicas <= min && desired == min {
            set_condition(
                &mut conds,
                "ScalingLimited",
                "True",
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
                &now,
                false,
            );
        } else if spec_replicas >= max && desired == max {
            set_condition(
                &mut conds,
                "ScalingLimited",
                "True",
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
                &now,
                false,
            );
        } else {
            set_condition(
                &mut conds,
                "ScalingLimited",
                "False",
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
                &now,
                false,
            );
        }
        status["desiredReplicas"] = json!(desired);
        status["currentMetrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": util, "averageValue": format!("{}m", util * 5)}}}]);
    }
    status["conditions"] = json!(conds);
    status["observedGeneration"] = h["metadata"]["generation"].clone();
    ctx.set_status(hpas(), &h, status);
}
