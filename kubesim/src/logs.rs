//! Plausible container logs, generated on demand from the pod's name and age.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::clock::parse_time;
use crate::error::ApiError;

/// Seconds between two log lines.
const PERIOD: i64 = 5;
/// Lines kept (like a rotated log file).
const MAX_LINES: i64 = 2000;

fn hash(s: &str, i: i64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes().chain(i.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn line_for(pod: &str, container: &str, image: &str, i: i64) -> String {
    let h = hash(pod, i);
    let path = [
        "/api/v1/items",
        "/api/v1/users",
        "/healthz",
        "/api/v1/orders",
        "/metrics",
        "/api/v1/search",
    ][(h % 6) as usize];
    let ms = 3 + (h >> 8) % 180;
    let is_db = image.contains("postgres") || container.contains("postgres");
    match (h >> 20) % 100 {
        0..=2 => {
            if is_db {
                "ERROR: could not serialize access due to concurrent update".to_string()
            } else {
                format!(
                    "ERROR request failed method=GET path={path} status=500 error=\"upstream connect timeout\" latency_ms={}",
                    1000 + ms * 10
                )
            }
        }
        3..=9 => {
            if is_db {
                format!(
                    "WARNING: checkpoints are occurring too frequently ({} seconds apart)",
                    10 + ms % 20
                )
            } else {
                format!(
                    "WARN slow request method=GET path={path} status=200 latency_ms={}",
                    500 + ms * 5
                )
            }
        }
        10..=14 if i % 12 == 0 => format!(
            "INFO pool stats active={} idle={} waiting=0",
            2 + h % 8,
            4 + (h >> 4) % 8
        ),
        _ => {
            if is_db {
                format!(
                    "LOG:  checkpoint complete: wrote {} buffers; {} WAL file(s) added",
                    ms,
                    h % 3
                )
            } else {
                format!("INFO request completed method=GET path={path} status=200 latency_ms={ms}")
            }
        }
    }
}

/// The log text for a pod, honouring `container`, `tailLines`, `sinceSeconds`, `sinceTime`,
/// `timestamps`; with `resume`, only the lines from that index on (for `follow`).
/// Also returns the index of the next line to come.
pub fn render_from(
    pod: &Value,
    q: &HashMap<String, String>,
    now: Timestamp,
    resume: Option<i64>,
) -> Result<(String, i64), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => containers
            .iter()
            .find(|x| x["name"] == c.as_str())
            .copied()
            .ok_or_else(|| {
                ApiError::bad_request(format!("container {c} is not valid for pod {name}"))
            })?,
        None if containers.len() == 1 => containers[0],
        None => {
            let names: Vec<&str> = containers
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            if names.is_empty() {
                return Ok((String::new(), 0));
            }
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    let Some(start) = pod["status"]["startTime"].as_str().and_then(parse_time) else {
        if phase == "Pending" {
            return Err(ApiError::bad_request(format!(
                "container \"{}\" in pod \"{name}\" is waiting to start: ContainerCreating",
                container["name"].as_str().unwrap_or("")
            )));
        }
        return Ok((String::new(), 0));
    };
    let end = match pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
        .as_str()
        .and_then(parse_time)
    {
        Some(f) if f < now => f,
        _ => now,
    };
    let cname = container["name"].as_str().unwrap_or("");
    let image = container["image"].as_str().unwrap_or("");
    let total = (end.duration_since(start).as_secs() / PERIOD).max(0) + 1;
    let mut first = (total - MAX_LINES).max(0);
    // Out of the time range (a huge sinceSeconds) means no bound.
    if let Some(since) = q
        .get("sinceSeconds")
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| now.checked_sub(SignedDuration::from_secs(s)).ok())
    {
        first = first.max(
            since
                .duration_since(start)
                .as_secs()
                .div_euclid(PERIOD)
                .max(0),
        );
    }
    if let Some(t) = q.get("sinceTime").and_then(|s| parse_time(s)) {
        first = first.max(t.duration_since(start).as_secs().div_euclid(PERIOD).max(0));
    }
    if let Some(n) = q.get("tailLines").and_then(|s| s.parse::<i64>().ok()) {
        first = first.max(total - n.max(0));
    }
    if let Some(r) = resume {
        first = r;
    }
    let stamps = q.get("timestamps").is_some_and(|v| v == "true");
    let mut out = String::new();
    for i in first..total {
        let t = start + SignedDuration::from_secs(i * PERIOD);
        let ts = t.strftime("%Y-%m-%dT%H:%M:%S.000000000Z").to_string();
        let mut line = if i == 0 {
            format!("INFO starting {} image={image}", cname)
        } else if i == 1 {
            "INFO listening on 0.0.0.0:8080".to_string()
        } else {
            line_for(name, cname, image, i)
        };
        if image.contains("backup")
            || cname.contains("backup")
            || pod["metadata"]["labels"]["job-name"].is_string()
        {
            line = match i {
                0 => "INFO starting backup".to_string(),
                1 => "INFO pg_dump: dumping contents of database".to_string(),
                _ if phase == "Failed" && i + 1 == total => "ERROR pg_dump: error: connection to server failed: FATAL: password authentication failed".to_string(),
                _ if phase == "Succeeded" && i + 1 == total => "INFO backup uploaded, finished successfully".to_string(),
                _ => format!("INFO pg_dump: dumping table public.t{}", i),
            };
        }
        let app = format!("{}Z {line}", &ts[..19]);
        if stamps {
            out.push_str(&format!("{ts} {app}\n"));
        } else {
            out.push_str(&app);
            out.push('\n');
        }
    }
    Ok((out, total.max(first)))
}
