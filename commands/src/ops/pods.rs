//! `pods NAME | -l SELECTOR`: name, phase, ready, restarts, age, node; unhealthy first.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;

use super::errors::{Res, list_names};
use super::selector::Selector;
use super::util::{age, nearest, table_within};
use super::{Ctx, OpError};
use crate::command::PodSelector;
use crate::reply::Reply;

/// What a name given to `pods` / `logs` turned out to be.
pub(crate) enum PodSource {
    /// A deployment or statefulset (`kind/name`) and its pod selector.
    Workload(String, Selector),
    /// A single pod.
    Pod(Box<Pod>),
}

/// `name` as one kind (`Deployments`, `StatefulSets` or `Pods`): a workload and its pod
/// selector, or one pod; `None` when there is none of that kind.
pub(crate) async fn as_kind(
    ctx: &Ctx<'_>,
    res: Res,
    name: &str,
) -> Result<Option<PodSource>, OpError> {
    let workload = |kind: &str, sel: Option<LabelSelector>| {
        let sel = sel
            .map(|s| Selector::from_label_selector(&s))
            .unwrap_or_default();
        PodSource::Workload(format!("{kind}/{name}"), sel)
    };
    Ok(match res {
        Res::Deployments => ctx
            .get_opt::<Deployment>(res, name)
            .await?
            .map(|d| workload("deployment", d.spec.map(|s| s.selector))),
        Res::StatefulSets => ctx
            .get_opt::<StatefulSet>(res, name)
            .await?
            .map(|s| workload("statefulset", s.spec.map(|s| s.selector))),
        _ => ctx
            .get_opt::<Pod>(Res::Pods, name)
            .await?
            .map(|p| PodSource::Pod(Box::new(p))),
    })
}

/// Resolves `name` as a deployment, a statefulset or a pod, in that order.
pub(crate) async fn resolve(ctx: &Ctx<'_>, name: &str) -> Result<PodSource, OpError> {
    for res in [Res::Deployments, Res::StatefulSets, Res::Pods] {
        if let Some(source) = as_kind(ctx, res, name).await? {
            return Ok(source);
        }
    }
    let mut names = list_names(ctx, Res::Deployments).await;
    names.extend(list_names(ctx, Res::StatefulSets).await);
    names.extend(list_names(ctx, Res::Pods).await);
    if names.is_empty() {
        // Lets the namespace check in `not_found` speak.
        return Err(super::errors::not_found(ctx, Res::Pods, name).await);
    }
    Err(OpError::NotFound {
        kind: "deployment, statefulset or pod".into(),
        name: name.to_owned(),
        namespace: ctx.ns.clone(),
        suggestions: nearest(name, names.iter().map(String::as_str)),
    })
}

/// Pods matching `sel` (also filtered here, in case the server ignores the selector).
pub(crate) async fn pods_matching(ctx: &Ctx<'_>, sel: &Selector) -> Result<Vec<Pod>, OpError> {
    let mut lp = ListParams::default();
    if !sel.is_empty() {
        lp = lp.labels(&sel.to_query());
    }
    let pods: Vec<Pod> = ctx.list(Res::Pods, &lp).await?;
    Ok(pods
        .into_iter()
        .filter(|p| sel.matches(p.metadata.labels.as_ref()))
        .collect())
}

/// `(ready, total)` containers.
fn ready(p: &Pod) -> (usize, usize) {
    let total = p.spec.as_ref().map_or(0, |s| s.containers.len());
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().filter(|c| c.ready).count());
    (ready, total)
}

pub(crate) fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// kubectl's STATUS column: a waiting / terminated reason, `Terminating`, or the phase.
pub(crate) fn display_status(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let st = p.status.as_ref();
    for c in st
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(state) = &c.state {
            if let Some(w) = &state.waiting
                && let Some(r) = &w.reason
            {
                return r.clone();
            }
            if let Some(t) = &state.terminated
                && let Some(r) = &t.reason
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded")
            {
                return r.clone();
            }
        }
    }
    st.and_then(|s| s.reason.clone())
        .or_else(|| st.and_then(|s| s.phase.clone()))
        .unwrap_or_else(|| "Unknown".into())
}

pub(crate) fn is_healthy(p: &Pod) -> bool {
    if p.metadata.deletion_timestamp.is_some() {
        return false;
    }
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => true,
        Some("Running") => {
            let (r, t) = ready(p);
            r == t && display_status(p) == "Running"
        }
        _ => false,
    }
}

/// `-l SELECTOR` as a selector, or why it is not one.
pub(crate) fn label_selector(s: &str) -> Result<Selector, OpError> {
    Selector::parse(s).ok_or_else(|| {
        OpError::Refused(format!(
            "`{s}` is not a label selector (try `-l app=api` or `-l 'tier in (web,api)'`)"
        ))
    })
}

/// `pods`: of a workload, a pod, a label selector, or (`None`) the whole namespace.
pub(crate) async fn pods(ctx: &Ctx<'_>, selector: Option<&PodSelector>) -> Result<Reply, OpError> {
    let (what, mut pods) = match selector {
        None => (
            format!("Pods in {}", ctx.ns),
            pods_matching(ctx, &Selector::default()).await?,
        ),
        Some(PodSelector::Labels(s)) => (
            format!("Pods matching {s}"),
            pods_matching(ctx, &label_selector(s)?).await?,
        ),
        Some(PodSelector::Name(name)) => match resolve(ctx, name).await? {
            PodSource::Workload(w, sel) => {
                (format!("Pods of {w}"), pods_matching(ctx, &sel).await?)
            }
            PodSource::Pod(p) => (format!("Pod {name}"), vec![*p]),
        },
    };
    if pods.is_empty() {
        return Ok(Reply::info(what).text("No pods.").footer(ctx.place()));
    }
    pods.sort_by(|a, b| {
        is_healthy(a)
            .cmp(&is_healthy(b))
            .then_with(|| restarts(b).cmp(&restarts(a)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let now = ctx.now();
    let unhealthy = pods.iter().filter(|p| !is_healthy(p)).count();
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let (r, t) = ready(p);
            vec![
                p.metadata.name.clone().unwrap_or_default(),
                display_status(p),
                format!("{r}/{t}"),
                restarts(p).to_string(),
                age(now, p.metadata.creation_timestamp.as_ref()),
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let reply = if unhealthy > 0 {
        Reply::warning(what).text(format!("{} pods, {unhealthy} unhealthy.", pods.len()))
    } else {
        Reply::ok(what).text(format!("{} pods, all healthy.", pods.len()))
    };
    let (table, cut) = table_within(
        &["NAME", "STATUS", "READY", "RESTARTS", "AGE", "NODE"],
        &rows,
        ctx.opts.table_chars,
    );
    let mut footer = ctx.place();
    if cut > 0 {
        footer = format!("{footer} · {cut} more pods not shown");
    }
    Ok(reply.block(None, table).footer(footer))
}
