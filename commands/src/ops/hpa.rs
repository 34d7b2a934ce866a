//! `hpa [NAME] [--min N] [--max N]`: list the namespace's HorizontalPodAutoscalers, show one,
//! or set its bounds.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use super::errors::{Res, call, not_found, retry};
use super::mask::mask_secrets;
use super::util::{nearest, table, table_within};
use super::{Ctx, OpError};
use crate::reply::Reply;

/// Finds the HPA by its name, or else (`by_workload`) the HPA that scales a workload of that
/// name. A change names the autoscaler itself (the engine names it so before the policy
/// decides: [`workload_hpa`]), so the object the policy judged is the one that changes.
async fn find(
    ctx: &Ctx<'_>,
    name: &str,
    by_workload: bool,
) -> Result<HorizontalPodAutoscaler, OpError> {
    if let Some(h) = ctx
        .get_opt::<HorizontalPodAutoscaler>(Res::Hpas, name)
        .await?
    {
        return Ok(h);
    }
    let all: Vec<HorizontalPodAutoscaler> = ctx.list(Res::Hpas, &ListParams::default()).await?;
    if let Some(h) = all.iter().find(|h| {
        h.spec
            .as_ref()
            .is_some_and(|s| s.scale_target_ref.name == name)
    }) {
        if by_workload {
            return Ok(h.clone());
        }
        return Err(OpError::NotFound {
            kind: "horizontalpodautoscaler".into(),
            name: name.to_owned(),
            namespace: ctx.ns.clone(),
            suggestions: h.metadata.name.clone().into_iter().collect(),
        });
    }
    if all.is_empty() {
        return Err(not_found(ctx, Res::Hpas, name).await);
    }
    let mut names: Vec<String> = all.iter().filter_map(|h| h.metadata.name.clone()).collect();
    names.extend(
        all.iter()
            .filter_map(|h| h.spec.as_ref().map(|s| s.scale_target_ref.name.clone())),
    );
    Err(OpError::NotFound {
        kind: "horizontalpodautoscaler".into(),
        name: name.to_owned(),
        namespace: ctx.ns.clone(),
        suggestions: nearest(name, names.iter().map(String::as_str)),
    })
}

/// Finds the autoscaler `hpa --min/--max` would change and checks the new bounds, before
/// anything changes (and before anyone is asked to approve the change).
pub(crate) async fn check_change(
    ctx: &Ctx<'_>,
    name: &str,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), OpError> {
    new_bounds(&find(ctx, name, false).await?, min, max).map(drop)
}

/// The name of the autoscaler that scales workload `name`, when `name` is not an autoscaler
/// itself and one does.
pub(crate) async fn workload_hpa(ctx: &Ctx<'_>, name: &str) -> Result<Option<String>, OpError> {
    let h = find(ctx, name, true).await?;
    Ok(h.metadata.name.filter(|n| n != name))
}

/// The bounds `h` gets with `min` and/or `max` set; refused when they make no sense.
fn new_bounds(
    h: &HorizontalPodAutoscaler,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(i64, i64), OpError> {
    let hpa_name = h.metadata.name.as_deref().unwrap_or_default();
    let (cur_min, cur_max) = bounds(h);
    let new_min = min.map_or(i64::from(cur_min), i64::from);
    let new_max = max.map_or(i64::from(cur_max), i64::from);
    if min == Some(0) {
        return Err(OpError::Refused("--min must be at least 1".into()));
    }
    if max == Some(0) {
        return Err(OpError::Refused("--max must be at least 1".into()));
    }
    if new_min > new_max {
        let why = match (min, max) {
            (Some(_), Some(_)) => format!("--min {new_min} is greater than --max {new_max}"),
            (Some(_), None) => {
                format!("--min {new_min} is greater than the current max {cur_max}; give --max too")
            }
            _ => format!("--max {new_max} is less than the current min {cur_min}; give --min too"),
        };
        return Err(OpError::Refused(format!(
            "{why} (horizontalpodautoscaler/{hpa_name})"
        )));
    }
    Ok((new_min, new_max))
}

fn bounds(h: &HorizontalPodAutoscaler) -> (i32, i32) {
    let spec = h.spec.clone().unwrap_or_default();
    (spec.min_replicas.unwrap_or(1), spec.max_replicas)
}

fn describe(h: &HorizontalPodAutoscaler, reply: Reply) -> Reply {
    let spec = h.spec.clone().unwrap_or_default();
    let st = h.status.clone().unwrap_or_default();
    let (min, max) = bounds(h);
    let mut reply = reply
        .field(
            "Target",
            format!(
                "{}/{}",
                spec.scale_target_ref.kind.to_lowercase(),
                spec.scale_target_ref.name
            ),
        )
        .field("Min / max", format!("{min} / {max}"))
        .field(
            "Current / desired",
            format!(
                "{} / {}",
                st.current_replicas.unwrap_or(0),
                st.desired_replicas
            ),
        );
    let metrics: Vec<Vec<String>> = spec
        .metrics
        .iter()
        .flatten()
        .map(|m| {
            let (what, target) = match (
                &m.resource,
                &m.container_resource,
                &m.pods,
                &m.external,
                &m.object,
            ) {
                (Some(r), ..) => (
                    format!("resource {}", r.name),
                    r.target
                        .average_utilization
                        .map(|u| format!("{u}% avg utilization"))
                        .or_else(|| {
                            r.target
                                .average_value
                                .as_ref()
                                .map(|v| format!("{} avg", v.0))
                        })
                        .or_else(|| r.target.value.as_ref().map(|v| v.0.clone()))
                        .unwrap_or_default(),
                ),
                (_, Some(c), ..) => (
                    format!("container {} {}", c.container, c.name),
                    c.target
                        .average_utilization
                        .map(|u| format!("{u}% avg utilization"))
                        .unwrap_or_default(),
                ),
                (_, _, Some(p), ..) => (format!("pods {}", p.metric.name), String::new()),
                (_, _, _, Some(e), _) => (format!("external {}", e.metric.name), String::new()),
                (_, _, _, _, Some(o)) => (format!("object {}", o.metric.name), String::new()),
                _ => (m.type_.clone(), String::new()),
            };
            vec![what, target]
        })
        .collect();
    if !metrics.is_empty() {
        reply = reply.block(
            Some("Metrics".into()),
            table(&["METRIC", "TARGET"], &metrics),
        );
    }
    let conditions: Vec<Vec<String>> = st
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                mask_secrets(c.message.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    if !conditions.is_empty() {
        reply = reply.block(
            Some("Conditions".into()),
            table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &conditions),
        );
    }
    reply
}

/// `hpa` alone: every autoscaler of the namespace with its target, bounds and replicas (as
/// kubectl's `get hpa`).
pub(crate) async fn list(ctx: &Ctx<'_>) -> Result<Reply, OpError> {
    let mut all: Vec<HorizontalPodAutoscaler> = ctx.list(Res::Hpas, &ListParams::default()).await?;
    let title = format!("Autoscalers in {}", ctx.ns);
    if all.is_empty() {
        return Ok(Reply::info(title)
            .text("No autoscalers.")
            .footer(ctx.place()));
    }
    all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|h| {
            let spec = h.spec.clone().unwrap_or_default();
            let st = h.status.clone().unwrap_or_default();
            let (min, max) = bounds(h);
            vec![
                h.metadata.name.clone().unwrap_or_default(),
                format!(
                    "{}/{}",
                    spec.scale_target_ref.kind.to_lowercase(),
                    spec.scale_target_ref.name
                ),
                min.to_string(),
                max.to_string(),
                format!(
                    "{} / {}",
                    st.current_replicas.unwrap_or(0),
                    st.desired_replicas
                ),
            ]
        })
        .collect();
    let (body, cut) = table_within(
        &["NAME", "TARGET", "MIN", "MAX", "CURRENT / DESIRED"],
        &rows,
        ctx.opts.table_chars,
    );
    let mut footer = ctx.place();
    if cut > 0 {
        footer = format!("{footer} · {cut} more autoscalers not shown");
    }
    Ok(Reply::info(title)
        .text(format!("{} autoscalers.", all.len()))
        .block(None, body)
        .footer(footer))
}

/// `hpa`: show, or set min and/or max (min ≤ max checked before the call, against the
/// current value of the bound not given).
pub(crate) async fn hpa(
    ctx: &Ctx<'_>,
    name: &str,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<Reply, OpError> {
    let h = find(ctx, name, min.is_none() && max.is_none()).await?;
    let hpa_name = h.metadata.name.clone().unwrap_or_else(|| name.to_owned());
    let title = format!("horizontalpodautoscaler/{hpa_name}");
    if min.is_none() && max.is_none() {
        return Ok(describe(&h, Reply::info(title)).footer(ctx.place()));
    }
    let (cur_min, cur_max) = bounds(&h);
    let (new_min, new_max) = new_bounds(&h, min, max)?;
    let i32_of = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
    let mut spec = serde_json::Map::new();
    if min.is_some() {
        spec.insert("minReplicas".into(), json!(i32_of(new_min)));
    }
    if max.is_some() {
        spec.insert("maxReplicas".into(), json!(i32_of(new_max)));
    }
    let patch = json!({ "spec": spec });
    let api = ctx.api::<HorizontalPodAutoscaler>();
    let pp = PatchParams::default();
    let (api, pp, patch, hpa_name) = (&api, &pp, &patch, hpa_name.as_str());
    let updated = match retry(&ctx.opts.retry, || async move {
        call(
            ctx,
            "patch",
            Res::Hpas,
            None,
            Some(hpa_name),
            api.patch(hpa_name, pp, &Patch::Merge(&patch)),
        )
        .await
    })
    .await
    {
        Ok(h) => h,
        Err(f) => return Err(ctx.fail(f).await),
    };
    let (got_min, got_max) = bounds(&updated);
    let reply = Reply::ok(format!("Updated {title}")).text(format!(
        "min {cur_min} → {got_min}, max {cur_max} → {got_max}"
    ));
    Ok(describe(&updated, reply).footer(ctx.place()))
}
