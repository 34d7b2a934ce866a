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
        ["openapi", "v3"] => openapi_v3_root(),
        ["openapi", "v3", "api", v] => match openapi_v3_gv("", v) {
            Some(doc) => doc,
            None => return Some(error_response(&ApiError::not_found_path(path))),
        },
        ["openapi", "v3", "apis", g, v] => match openapi_v3_gv(g, v) {
            Some(doc) => doc,
            None => return Some(error_response(&ApiError::not_found_path(path))),
        },
        ["openapi", ..] | ["swagger.json"] | ["swaggerapi", ..] => {
            return Some(error_response(&ApiError::not_found_path(path)));
        }
        _ => return None,
    };
    Some(json_response(200, &body))
}

/// `/openapi/v3`: one entry per group/version.
fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=kubesim"}),
    );
    for (g, vs) in resources::groups() {
        for v in vs {
            paths.insert(
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash=kubesim")}),
            );
        }
    }
    json!({ "paths": paths })
}

/// A skeleton OpenAPI v3 document for one group/version: paths with their GVK and the
/// `fieldValidation` parameter on PATCH, which is what kubectl checks to leave validation to the
/// server (so `kubectl apply` works). No schemas: kubectl falls back to its built-in types.
fn openapi_v3_gv(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ]);
    let mut paths = serde_json::Map::new();
    for d in defs {
        let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
        let item = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{prefix}/{}/{{name}}", d.plural)
        };
        let op = |id: &str| json!({"operationId": id, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": {"description": "OK"}}});
        paths.insert(item, json!({"get": op("read"), "put": op("replace"), "patch": op("patch"), "delete": op("delete")}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubesim)", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
