//! Per-kind semantics: defaulting and validation, the way the API server does it before storing.

use std::str::FromStr;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::resources::ResourceDef;
use crate::selector::LabelSelector;

fn set_default(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        if i + 1 == path.len() {
            if cur.get(*seg).is_none_or(Value::is_null) {
                cur[*seg] = value;
            }
            return;
        }
        if cur.get(*seg).is_none_or(Value::is_null) {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
}

fn default_pod_spec(spec: &mut Value, restart: &str) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, &["restartPolicy"], json!(restart));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    set_default(spec, &["securityContext"], json!({}));
    if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs {
            if c.is_object() {
                set_default(c, &["imagePullPolicy"], json!("IfNotPresent"));
                set_default(
                    c,
                    &["terminationMessagePath"],
                    json!("/dev/termination-log"),
                );
                set_default(c, &["terminationMessagePolicy"], json!("File"));
                set_default(c, &["resources"], json!({}));
            }
        }
    }
}

/// Drop `null` fields, as decoding into the API server's typed structs does.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn pod_spec_at(obj: &mut Value, pointer: &str, restart: &str) {
    if let Some(spec) = obj.pointer_mut(pointer) {
        default_pod_spec(spec, restart);
    }
}

/// Fill in the defaults the real API server would.
pub fn apply_defaults(def: &ResourceDef, obj: &mut Value) {
    strip_nulls(obj);
    match def.kind {
        "Namespace" => {
            let name = obj.pointer("/metadata/name").cloned().unwrap_or_default();
            set_default(
                obj,
                &["metadata", "labels", "kubernetes.io/metadata.name"],
                name,
            );
            set_default(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            set_default(obj, &["status", "phase"], json!("Active"));
        }
        "Deployment" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            set_default(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxSurge"],
                    json!("25%"),
                );
                set_default(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                    json!("25%"),
                );
            }
            pod_spec_at(obj, "/spec/template/spec", "Always");
        }
        "ReplicaSet" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            pod_spec_at(obj, "/spec/template/spec", "Always");
        }
        "StatefulSet" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            set_default(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(
                obj,
                &["spec", "updateStrategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            pod_spec_at(obj, "/spec/template/spec", "Always");
        }
        "Job" => {
            set_default(obj, &["spec", "backoffLimit"], json!(6));
            set_default(obj, &["spec", "completions"], json!(1));
            set_default(obj, &["spec", "parallelism"], json!(1));
            set_default(obj, &["spec", "completionMode"], json!("NonIndexed"));
            set_default(obj, &["spec", "suspend"], json!(false));
            pod_spec_at(obj, "/spec/template/spec", "Never");
        }
        "CronJob" => {
            set_default(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
            set_default(obj, &["spec", "suspend"], json!(false));
            set_default(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
            set_default(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
            set_default(
                obj,
                &["spec", "jobTemplate", "spec", "backoffLimit"],
                json!(6),
            );
            pod_spec_at(obj, "/spec/jobTemplate/spec/template/spec", "Never");
        }
        "Pod" => {
            pod_spec_at(obj, "/spec", "Always");
            set_default(obj, &["status", "phase"], json!("Pending"));
        }
        "HorizontalPodAutoscaler" => {
            set_default(obj, &["spec", "minReplicas"], json!(1));
        }
        _ => {}
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_pod_spec(spec: &Value, field: &str, causes: &mut Vec<(String, String)>) {
    match spec.get("containers").and_then(Value::as_array) {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push((
                        format!("{field}.containers[{i}].name"),
                        "Required value".into(),
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push((
                        format!("{field}.containers[{i}].image"),
                        "Required value".into(),
                    ));
                }
            }
        }
        _ => causes.push((format!("{field}.containers"), "Required value".into())),
    }
}

fn check_replicas(obj: &Value, field: &str, causes: &mut Vec<(String, String)>) {
    if let Some(r) = obj.pointer(&format!("/{}", field.replace('.', "/")))
        && !r.is_null()
        && r.as_i64().is_none_or(|n| n < 0)
    {
        causes.push((
            field.into(),
            format!("Invalid value: {r}: must be greater than or equal to 0"),
        ));
    }
}

fn check_template(obj: &Value, causes: &mut Vec<(String, String)>) {
    let sel = &obj["spec"]["selector"];
    if !sel.is_object()
        || (sel.get("matchLabels").is_none() && sel.get("matchExpressions").is_none())
    {
        causes.push(("spec.selector".into(), "Required value".into()));
    } else {
        let labels = obj
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object);
        if !LabelSelector::from_json(sel).matches_labels(labels) {
            causes.push((
                "spec.template.metadata.labels".into(),
                format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    labels.map(|l| Value::Object(l.clone())).unwrap_or_default()
                ),
            ));
        }
    }
    check_pod_spec(
        &obj["spec"]["template"]["spec"],
        "spec.template.spec",
        causes,
    );
}

/// Check that `obj` decodes as the kind's k8s-openapi type, as the API server's typed decoding would.
/// Every shape error (a string where an object belongs, a bad timestamp, ...) is a 400 here, so the
/// controllers can rely on shapes.
pub fn check_shape(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    roundtrip(def, obj).map(|_| ()).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            def.kind,
            def.api_version(),
            def.kind
        ))
    })
}

/// The object decoded as its k8s-openapi type and encoded again (`None` for kinds without one).
fn roundtrip(def: &ResourceDef, obj: &Value) -> Result<Option<Value>, String> {
    use k8s_openapi::api::{apps, autoscaling, batch, core};
    fn via<T: serde::de::DeserializeOwned + serde::Serialize>(
        v: Value,
    ) -> Result<Option<Value>, String> {
        let t = serde_json::from_value::<T>(v).map_err(|e| e.to_string())?;
        serde_json::to_value(t).map(Some).map_err(|e| e.to_string())
    }
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(def.api_version()));
        m.insert("kind".into(), json!(def.kind));
    }
    match (def.group, def.kind) {
        ("", "Namespace") => via::<core::v1::Namespace>(v),
        ("", "Pod") => via::<core::v1::Pod>(v),
        ("", "Event") => via::<core::v1::Event>(v),
        ("apps", "Deployment") => via::<apps::v1::Deployment>(v),
        ("apps", "ReplicaSet") => via::<apps::v1::ReplicaSet>(v),
        ("apps", "StatefulSet") => via::<apps::v1::StatefulSet>(v),
        ("batch", "Job") => via::<batch::v1::Job>(v),
        ("batch", "CronJob") => via::<batch::v1::CronJob>(v),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            via::<autoscaling::v2::HorizontalPodAutoscaler>(v)
        }
        ("events.k8s.io", "Event") => via::<k8s_openapi::api::events::v1::Event>(v),
        _ => Ok(None),
    }
}

/// Drop the fields the kind's type does not have, as decoding into the API server's types does.
pub fn drop_unknown(def: &ResourceDef, obj: &mut Value) {
    fn prune(input: &mut Value, known: &Value) {
        match (input, known) {
            (Value::Object(i), Value::Object(k)) => {
                i.retain(|key, _| k.contains_key(key));
                for (key, v) in i.iter_mut() {
                    if let Some(kv) = k.get(key) {
                        prune(v, kv);
                    }
                }
            }
            (Value::Array(i), Value::Array(k)) if i.len() == k.len() => {
                for (iv, kv) in i.iter_mut().zip(k) {
                    prune(iv, kv);
                }
            }
            _ => {}
        }
    }
    if let Ok(Some(known)) = roundtrip(def, obj) {
        prune(obj, &known);
    }
}

/// Fields of `obj` its type does not have (`spec.replicaz`), for `fieldValidation=Strict`.
pub fn unknown_fields(def: &ResourceDef, obj: &Value) -> Vec<String> {
    fn walk(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
        match (input, known) {
            (Value::Object(i), Value::Object(k)) => {
                for (key, v) in i {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match k.get(key) {
                        Some(kv) => walk(v, kv, &p, out),
                        None if !v.is_null() => out.push(p),
                        None => {}
                    }
                }
            }
            (Value::Array(i), Value::Array(k)) => {
                for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                    walk(iv, kv, &format!("{path}[{n}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(Some(known)) = roundtrip(def, obj) {
        walk(obj, &known, "", &mut out);
    }
    out
}

/// Validate an object; `old` is the stored version on updates (for immutable fields).
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    check_shape(def, obj)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let mut causes: Vec<(String, String)> = Vec::new();
    if name.is_empty() {
        causes.push((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
    } else if !is_dns_subdomain(name) {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    match def.kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            check_replicas(obj, "spec.replicas", &mut causes);
            check_template(obj, &mut causes);
            if let Some(old) = old
                && old["spec"]["selector"] != obj["spec"]["selector"]
            {
                causes.push((
                    "spec.selector".into(),
                    format!(
                        "Invalid value: {}: field is immutable",
                        obj["spec"]["selector"]
                    ),
                ));
            }
        }
        "Pod" => check_pod_spec(&obj["spec"], "spec", &mut causes),
        "Job" => check_pod_spec(
            &obj["spec"]["template"]["spec"],
            "spec.template.spec",
            &mut causes,
        ),
        "CronJob" => {
            let sched = obj["spec"]["schedule"].as_str().unwrap_or_default();
            if sched.is_empty() {
                causes.push(("spec.schedule".into(), "Required value".into()));
            } else if croner::Cron::from_str(sched).is_err() {
                causes.push((
                    "spec.schedule".into(),
                    format!("Invalid value: {sched:?}: unparseable schedule"),
                ));
            }
            check_pod_spec(
                &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
        }
        "HorizontalPodAutoscaler" => {
            let min = obj["spec"]["minReplicas"].as_i64().unwrap_or(1);
            let max = obj["spec"]["maxReplicas"].as_i64();
            match max {
                None => causes.push(("spec.maxReplicas".into(), "Required value".into())),
                Some(max) if max < min => causes.push((
                    "spec.maxReplicas".into(),
                    format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
                )),
                Some(_) => {}
            }
            if min < 1 {
                causes.push((
                    "spec.minReplicas".into(),
                    format!("Invalid value: {min}: must be greater than or equal to 1"),
                ));
            }
            if obj["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                causes.push(("spec.scaleTargetRef.name".into(), "Required value".into()));
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(def, name, &causes))
    }
}

/// events.k8s.io/v1 view of a core v1 Event.
pub fn event_to_new(core: &Value) -> Value {
    let mut o = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": core["metadata"],
    });
    let map = [
        ("involvedObject", "regarding"),
        ("message", "note"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("related", "related"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("eventTime", "eventTime"),
        ("series", "series"),
    ];
    for (from, to) in map {
        if let Some(v) = core.get(from).filter(|v| !v.is_null()) {
            o[to] = v.clone();
        }
    }
    if o.get("reportingController").is_none()
        && let Some(c) = core.pointer("/source/component")
    {
        o["reportingController"] = c.clone();
    }
    if o.get("eventTime").is_none() {
        o["eventTime"] = core.get("lastTimestamp").cloned().unwrap_or(Value::Null);
    }
    o
}

/// core v1 Event from an events.k8s.io/v1 one.
pub fn event_from_new(new: &Value) -> Value {
    let mut o = json!({ "apiVersion": "v1", "kind": "Event", "metadata": new["metadata"] });
    let map = [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("eventTime", "eventTime"),
        ("series", "series"),
    ];
    for (from, to) in map {
        if let Some(v) = new.get(from).filter(|v| !v.is_null()) {
            o[to] = v.clone();
        }
    }
    if o.get("lastTimestamp").is_none() {
        o["lastTimestamp"] = new.get("eventTime").cloned().unwrap_or(Value::Null);
    }
    o
}
