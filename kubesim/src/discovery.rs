//! Discovery: /version, /api, /apis, resource lists, and a 404 for OpenAPI.

use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};

use crate::Shared;
use crate::api::{error_response, json_response};
use crate::error::ApiError;
use crate::resources::{self, RESOURCES, ResourceDef};

fn verbs(def: &ResourceDef) -> Vec<&'static str> {
    if def.kind == "Namespace" {
        return vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
    }
    vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for d in defs {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": verbs(d),
            "storageVersionHash": "",
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !matches!(d.kind, "Event" | "Namespace") {
            r["categories"] = json!(["all"]);
        }
        list.push(r);
        for sub in d.subresources {
            let mut s = json!({
                "name": format!("{}/{}", d.plural, sub),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["get", "patch", "update"],
            });
            match *sub {
                "scale" => {
                    s["group"] = json!("autoscaling");
                    s["version"] = json!("v1");
                    s["kind"] = json!("Scale");
                }
                "log" => s["verbs"] = json!(["get"]),
                _ => {}
            }
            list.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }),
    )
}

fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({ "name": g, "versions": versions, "preferredVersion": versions[0] })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// Answer discovery paths; `None` for everything else.
pub(crate) fn handle(shared: &Shared, method: &Method, path: &str) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body = match segs.as_slice() {
        ["version"] => json!({
            "major": "1",
            "minor": "35",
            "gitVersion": "v1.35.0-kubesim",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.25.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
        ["healthz"] | ["livez"] | ["readyz"] => {
            return Some(
                Response::builder()
                    .header("content-type", "text/plain")
                    .body(axum::body::Body::from("ok"))
                    .unwrap_or_default(),
            );
        }
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
        }),
        ["apis"] => group_list(),
        ["api", v] => match resource_list("", v) {
            Some(l) => l,
            None => return Some(error_response(&ApiError::not_found_path(path))),
        },
        ["apis", g] => match resources::groups().into_iter().find(|(n, _)| n == g) {
            Some((g, vs)) => {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions[0]})
            }
            None => return Some(error_response(&ApiError::not_found_path(path))),
        },
        ["apis", g, v] => match resource_list(g, v) {
            Some(l) => l,
            None => return Some(error_response(&ApiError::not_found_path(path))),
        },
        ["openapi", ..] | ["swagger.json"] | ["swaggerapi", ..] => {
            return Some(error_response(&ApiError::not_found_path(path)));
        }
        _ => return None,
    };
    Some(json_response(200, &body))
}
