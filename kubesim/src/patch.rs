//! The four patch flavours: JSON patch, merge patch, strategic merge patch and server-side apply.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Which patch a request carries, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Parse a request body as JSON, or YAML for apply.
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(e) if kind == PatchKind::Apply => {
            let s = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(s).map_err(|ye| {
                ApiError::bad_request(format!("error decoding YAML: {ye} (as JSON: {e})"))
            })
        }
        Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// Apply a patch of the given kind to `doc`.
pub fn apply_patch(kind: PatchKind, doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut out = doc.clone();
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the server rejected our request due to an error in our request: invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            json_patch::merge(&mut out, patch);
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge(&mut out, patch, true)?;
        }
        PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("apply patch must be an object"));
            }
            strategic_merge(&mut out, patch, false)?;
        }
    }
    Ok(out)
}

/// The merge key of a list field, as in the Kubernetes `patchMergeKey` tags for the fields kubectl and kube-rs touch.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "resourceClaims" => "name",
        "metrics" => "type",
        _ => return None,
    })
}

/// Primitive lists merged as sets.
fn is_set_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Strategic merge `patch` into `doc`. `nulls_delete` is true for SMP and false for apply (where null is a value).
fn strategic_merge(doc: &mut Value, patch: &Value, nulls_delete: bool) -> Result<(), ApiError> {
    let Value::Object(pm) = patch else {
        *doc = patch.clone();
        return Ok(());
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = pm.clone();
            p.remove("$patch");
            *doc = Value::Object(p);
            return Ok(());
        }
        Some("delete") => {
            *doc = Value::Null;
            return Ok(());
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch directive {other:?}"
            )));
        }
        None => {}
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let dm = doc.as_object_mut().expect("just made an object");
    if let Some(keys) = pm.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        dm.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in pm {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" {
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (dm.get_mut(list), pv.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() && nulls_delete {
            dm.remove(k);
            continue;
        }
        match pv {
            Value::Object(_) => {
                let entry = dm.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(entry, pv, nulls_delete)?;
                if entry.is_null() && nulls_delete {
                    dm.remove(k);
                }
            }
            Value::Array(items) => {
                let cur = dm
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let merged =
                    if let Some(mk) = merge_key(k).filter(|_| items.iter().all(Value::is_object)) {
                        merge_list(cur, items, mk, nulls_delete)?
                    } else if is_set_list(k) {
                        let mut out = cur;
                        for i in items {
                            if !out.contains(i) {
                                out.push(i.clone());
                            }
                        }
                        out
                    } else {
                        items.clone()
                    };
                dm.insert(k.clone(), Value::Array(merged));
            }
            _ => {
                dm.insert(k.clone(), pv.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(
    mut cur: Vec<Value>,
    items: &[Value],
    key: &str,
    nulls_delete: bool,
) -> Result<Vec<Value>, ApiError> {
    for item in items {
        let id = item.get(key).cloned().unwrap_or(Value::Null);
        let directive = item.get("$patch").and_then(Value::as_str);
        let pos = cur.iter().position(|c| c.get(key) == Some(&id));
        match (directive, pos) {
            (Some("delete"), Some(i)) => {
                cur.remove(i);
            }
            (Some("delete"), None) => {}
            (Some("replace"), _) => {
                let mut it = item.clone();
                if let Some(m) = it.as_object_mut() {
                    m.remove("$patch");
                }
                match pos {
                    Some(i) => cur[i] = it,
                    None => cur.push(it),
                }
            }
            (_, Some(i)) => strategic_merge(&mut cur[i], item, nulls_delete)?,
            (_, None) => {
                let mut fresh = Value::Object(Map::new());
                strategic_merge(&mut fresh, item, nulls_delete)?;
                cur.push(fresh);
            }
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        let p = json!({"spec": {"template": {"metadata": {"annotations": {"r": "1"}}, "spec": {"containers": [
            {"name": "app", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
            {"name": "side", "$patch": "delete"}
        ]}}}});
        let out = apply_patch(PatchKind::Strategic, &doc, &p).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().unwrap().len(), 1);
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["template"]["metadata"]["annotations"]["r"], "1");
    }

    #[test]
    fn merge_and_json_patch() {
        let doc = json!({"a": 1, "b": {"c": 2}});
        assert_eq!(
            apply_patch(PatchKind::Merge, &doc, &json!({"b": null})).unwrap(),
            json!({"a": 1})
        );
        let out = apply_patch(
            PatchKind::Json,
            &doc,
            &json!([{"op": "replace", "path": "/a", "value": 5}]),
        )
        .unwrap();
        assert_eq!(out["a"], 5);
        assert!(
            apply_patch(
                PatchKind::Json,
                &doc,
                &json!([{"op": "remove", "path": "/zz"}])
            )
            .is_err()
        );
        assert!(apply_patch(PatchKind::Json, &doc, &json!({"op": 1})).is_err());
    }
}
