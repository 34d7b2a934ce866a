//! `/kubesim/...`: the clock and fault controls over HTTP, for the binary (demos, other processes).
//!
//! | request | effect |
//! |---|---|
//! | `GET /kubesim/clock` | `{"now": ..., "speed": ...}` |
//! | `POST /kubesim/clock/advance?seconds=N` | step the clock N seconds, controllers running |
//! | `POST /kubesim/clock/speed?factor=F` | simulated seconds per real second |
//! | `POST /kubesim/faults/fail-next?path=P&count=N&code=500\|429` | next N requests whose path contains P fail |
//! | `POST /kubesim/faults/latency?ms=N` | added latency on every request |
//! | `POST /kubesim/faults/forbid?verb=V&resource=R` | 403 like RBAC (`*` for any) |
//! | `POST /kubesim/faults/stall-rollout?namespace=NS&deployment=D` | new pods never get ready |
//! | `POST /kubesim/faults/fail-jobs?namespace=NS&prefix=P` | those jobs fail |
//! | `POST /kubesim/faults/clear` | lift every fault |

use std::time::Duration;

use axum::http::{Method, Uri};
use axum::response::Response;
use serde_json::json;

use crate::Shared;
use crate::api::{error_response, json_response};
use crate::error::ApiError;

pub(crate) async fn handle(shared: &Shared, method: &Method, uri: &Uri) -> Response {
    match run(shared, method, uri).await {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e),
    }
}

async fn run(shared: &Shared, method: &Method, uri: &Uri) -> Result<serde_json::Value, ApiError> {
    let q: std::collections::HashMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.replace("%2F", "/")
                    .replace("%2f", "/")
                    .replace("%2A", "*"),
            )
        })
        .collect();
    let arg = |k: &str| {
        q.get(k)
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("missing query parameter {k}")))
    };
    let num = |k: &str| -> Result<f64, ApiError> {
        arg(k)?
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| ApiError::bad_request(format!("{k} must be a non-negative number")))
    };
    let clock = || json!({"now": crate::clock::fmt_time(shared.clock.now()), "speed": shared.clock.speed()});
    match (method.as_str(), uri.path()) {
        ("GET", "/kubesim/clock") => Ok(clock()),
        ("POST", "/kubesim/clock/advance") => {
            let secs = num("seconds")?.min(366.0 * 86400.0);
            shared.advance(Duration::from_secs_f64(secs)).await;
            Ok(clock())
        }
        ("POST", "/kubesim/clock/speed") => {
            shared.clock.set_speed(num("factor")?);
            Ok(clock())
        }
        ("POST", "/kubesim/faults/fail-next") => {
            let code = num("code")? as u16;
            if code != 500 && code != 429 {
                return Err(ApiError::bad_request("code must be 500 or 429"));
            }
            shared
                .faults
                .fail_next(&arg("path")?, num("count")? as u32, code);
            Ok(json!({"ok": true}))
        }
        ("POST", "/kubesim/faults/latency") => {
            shared
                .faults
                .set_latency(Duration::from_millis(num("ms")? as u64));
            Ok(json!({"ok": true}))
        }
        ("POST", "/kubesim/faults/forbid") => {
            shared.faults.forbid(&arg("verb")?, &arg("resource")?);
            Ok(json!({"ok": true}))
        }
        ("POST", "/kubesim/faults/stall-rollout") => {
            shared
                .faults
                .stall_rollout(&arg("namespace")?, &arg("deployment")?);
            Ok(json!({"ok": true}))
        }
        ("POST", "/kubesim/faults/fail-jobs") => {
            shared.faults.fail_jobs(&arg("namespace")?, &arg("prefix")?);
            Ok(json!({"ok": true}))
        }
        ("POST", "/kubesim/faults/clear") => {
            shared.faults.clear();
            Ok(json!({"ok": true}))
        }
        _ => Err(ApiError::not_found_path(uri.path())),
    }
}
