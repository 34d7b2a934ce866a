//! `Accept: application/json;as=Table` answers, with kubectl's usual columns.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::clock::parse_time;
use crate::resources::ResourceDef;

/// kubectl's short human duration ("45s", "5m", "3h", "2d").
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age(t: &Value, now: Timestamp) -> String {
    match t.as_str().and_then(parse_time) {
        Some(ts) => human_duration(now.duration_since(ts).as_secs()),
        None => "<unknown>".into(),
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn columns(def: &ResourceDef) -> Vec<(&'static str, &'static str)> {
    match def.kind {
        "Namespace" => vec![("Name", "string"), ("Status", "string"), ("Age", "string")],
        "Pod" => vec![
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
            ("IP", "string"),
            ("Node", "string"),
        ],
        "Deployment" => vec![
            ("Name", "string"),
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
        ],
        "ReplicaSet" => vec![
            ("Name", "string"),
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
            ("Age", "string"),
        ],
        "StatefulSet" => vec![("Name", "string"), ("Ready", "string"), ("Age", "string")],
        "Job" => vec![
            ("Name", "string"),
            ("Status", "string"),
            ("Completions", "string"),
            ("Duration", "string"),
            ("Age", "string"),
        ],
        "CronJob" => vec![
            ("Name", "string"),
            ("Schedule", "string"),
            ("Timezone", "string"),
            ("Suspend", "boolean"),
            ("Active", "integer"),
            ("Last Schedule", "string"),
            ("Age", "string"),
        ],
        "HorizontalPodAutoscaler" => vec![
            ("Name", "string"),
            ("Reference", "string"),
            ("Targets", "string"),
            ("MinPods", "string"),
            ("MaxPods", "integer"),
            ("Replicas", "integer"),
            ("Age", "string"),
        ],
        "Event" if def.group.is_empty() => {
            vec![
                ("Last Seen", "string"),
                ("Type", "string"),
                ("Reason", "string"),
                ("Object", "string"),
                ("Message", "string"),
            ]
        }
        _ => vec![("Name", "string"), ("Age", "string")],
    }
}

fn cells(def: &ResourceDef, o: &Value, now: Timestamp) -> Vec<Value> {
    let name = o["metadata"]["name"].clone();
    let created = age(&o["metadata"]["creationTimestamp"], now);
    let st = &o["status"];
    match def.kind {
        "Namespace" => vec![
            name,
            json!(st["phase"].as_str().unwrap_or("Active")),
            json!(created),
        ],
        "Pod" => {
            let cs = st["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = cs.iter().map(|c| int(&c["restartCount"])).sum();
            let reason = cs
                .iter()
                .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str))
                .or_else(|| st["reason"].as_str())
                .or_else(|| st["phase"].as_str())
                .unwrap_or("Pending");
            let reason = if o["metadata"]["deletionTimestamp"].is_string() {
                "Terminating"
            } else {
                reason
            };
            let reason = match (reason, st["phase"].as_str()) {
                ("Succeeded", _) => "Completed",
                ("Failed", _) => "Error",
                (r, _) => r,
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(reason),
                json!(restarts.to_string()),
                json!(created),
                json!(st["podIP"].as_str().unwrap_or("<none>")),
                json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
            ]
        }
        "Deployment" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(&st["readyReplicas"]),
                int(&o["spec"]["replicas"])
            )),
            json!(int(&st["updatedReplicas"])),
            json!(int(&st["availableReplicas"])),
            json!(created),
        ],
        "ReplicaSet" => vec![
            name,
            json!(int(&o["spec"]["replicas"])),
            json!(int(&st["replicas"])),
            json!(int(&st["readyReplicas"])),
            json!(created),
        ],
        "StatefulSet" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(&st["readyReplicas"]),
                int(&o["spec"]["replicas"])
            )),
            json!(created),
        ],
        "Job" => {
            let conds = st["conditions"].as_array().cloned().unwrap_or_default();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if o["spec"]["suspend"] == true {
                "Suspended"
            } else {
                "Running"
            };
            let dur = match (
                st["startTime"].as_str().and_then(parse_time),
                st["completionTime"]
                    .as_str()
                    .and_then(parse_time)
                    .or_else(|| {
                        // A failed job ends when it is marked Failed.
                        conds
                            .iter()
                            .find(|c| c["type"] == "Failed" && c["status"] == "True")
                            .and_then(|c| c["lastTransitionTime"].as_str())
                            .and_then(parse_time)
                    }),
            ) {
                (Some(s), Some(e)) => human_duration(e.duration_since(s).as_secs()),
                (Some(s), None) => human_duration(now.duration_since(s).as_secs()),
                _ => String::new(),
            };
            vec![
                name,
                json!(status),
                json!(format!(
                    "{}/{}",
                    int(&st["succeeded"]),
                    o["spec"]["completions"].as_i64().unwrap_or(1)
                )),
                json!(dur),
                json!(created),
            ]
        }
        "CronJob" => vec![
            name,
            o["spec"]["schedule"].clone(),
            json!(o["spec"]["timeZone"].as_str().unwrap_or("<none>")),
            json!(o["spec"]["suspend"].as_bool().unwrap_or(false)),
            json!(st["active"].as_array().map_or(0, Vec::len)),
            json!(if st["lastScheduleTime"].is_string() {
                age(&st["lastScheduleTime"], now)
            } else {
                "<none>".into()
            }),
            json!(created),
        ],
        "HorizontalPodAutoscaler" => {
            let r = &o["spec"]["scaleTargetRef"];
            let cur = st["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64();
            let target =
                o["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"].as_i64();
            let targets = match (cur, target) {
                (Some(c), Some(t)) => format!("cpu: {c}%/{t}%"),
                (None, Some(t)) => format!("cpu: <unknown>/{t}%"),
                _ => "<none>".into(),
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                )),
                json!(targets),
                json!(o["spec"]["minReplicas"].as_i64().unwrap_or(1).to_string()),
                json!(int(&o["spec"]["maxReplicas"])),
                json!(int(&st["currentReplicas"])),
                json!(created),
            ]
        }
        "Event" if def.group.is_empty() => {
            let last = if o["lastTimestamp"].is_string() {
                &o["lastTimestamp"]
            } else {
                &o["eventTime"]
            };
            let io = &o["involvedObject"];
            vec![
                json!(age(last, now)),
                o["type"].clone(),
                o["reason"].clone(),
                json!(format!(
                    "{}/{}",
                    io["kind"].as_str().unwrap_or("").to_lowercase(),
                    io["name"].as_str().unwrap_or("")
                )),
                o["message"].clone(),
            ]
        }
        _ => vec![name, json!(created)],
    }
}

/// A meta.k8s.io/v1 Table of `items`, each row carrying its full object.
pub fn table(
    def: &ResourceDef,
    items: &[Value],
    list_meta: Option<Value>,
    now: Timestamp,
) -> Value {
    let cols: Vec<Value> = columns(def)
        .into_iter()
        .map(|(n, t)| {
            // Priority 1 columns only show with `-o wide`.
            let priority = i32::from(matches!(n, "IP" | "Node"));
            json!({"name": n, "type": t, "format": if n == "Name" { "name" } else { "" }, "description": "", "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(def, o, now), "object": o}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": cols,
        "rows": rows,
    })
}
