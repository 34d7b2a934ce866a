//! `scale [deployment/|statefulset/]NAME REPLICAS [--dry-run]` through the `scale` subresource.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use super::errors::{KubeFail, Res, call, retry};
use super::rollout::{Change, follow};
use super::status::get_workload;
use super::{Ctx, OpError};
use crate::command::{Workload, WorkloadKind};
use crate::reply::Reply;

fn replicas(s: &Scale) -> i32 {
    s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

async fn get_scale(ctx: &Ctx<'_>, w: &Workload, res: Res) -> Result<Scale, KubeFail> {
    retry(&ctx.opts.retry, || async move {
        match w.kind {
            WorkloadKind::Deployment => {
                let api = ctx.api::<Deployment>();
                call(
                    ctx,
                    "get",
                    res,
                    Some("scale"),
                    Some(&w.name),
                    api.get_scale(&w.name),
                )
                .await
            }
            WorkloadKind::StatefulSet => {
                let api = ctx.api::<StatefulSet>();
                call(
                    ctx,
                    "get",
                    res,
                    Some("scale"),
                    Some(&w.name),
                    api.get_scale(&w.name),
                )
                .await
            }
        }
    })
    .await
}

async fn patch_scale(
    ctx: &Ctx<'_>,
    w: &Workload,
    res: Res,
    target: u32,
    dry_run: bool,
) -> Result<Scale, KubeFail> {
    let patch = json!({"spec": {"replicas": target}});
    let pp = PatchParams {
        dry_run,
        ..PatchParams::default()
    };
    let (pp, patch) = (&pp, &patch);
    retry(&ctx.opts.retry, || async move {
        match w.kind {
            WorkloadKind::Deployment => {
                let api = ctx.api::<Deployment>();
                call(
                    ctx,
                    "patch",
                    res,
                    Some("scale"),
                    Some(&w.name),
                    api.patch_scale(&w.name, pp, &Patch::Merge(&patch)),
                )
                .await
            }
            WorkloadKind::StatefulSet => {
                let api = ctx.api::<StatefulSet>();
                call(
                    ctx,
                    "patch",
                    res,
                    Some("scale"),
                    Some(&w.name),
                    api.patch_scale(&w.name, pp, &Patch::Merge(&patch)),
                )
                .await
            }
        }
    })
    .await
}

/// An HPA that scales `w`, if any (best effort: listing HPAs may not be allowed).
async fn autoscaler(ctx: &Ctx<'_>, w: &Workload) -> Option<HorizontalPodAutoscaler> {
    let kind = match w.kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
    };
    let hpas: Vec<HorizontalPodAutoscaler> =
        ctx.list(Res::Hpas, &ListParams::default()).await.ok()?;
    hpas.into_iter().find(|h| {
        h.spec
            .as_ref()
            .is_some_and(|s| s.scale_target_ref.kind == kind && s.scale_target_ref.name == w.name)
    })
}

/// `scale`: shows before → after; `--dry-run` asks the server to validate without changing
/// anything; otherwise follows the rollout.
pub(crate) async fn scale(
    ctx: &Ctx<'_>,
    w: &Workload,
    target: u32,
    dry_run: bool,
) -> Result<Reply, OpError> {
    let res = match w.kind {
        WorkloadKind::Deployment => Res::Deployments,
        WorkloadKind::StatefulSet => Res::StatefulSets,
    };
    let before = match get_scale(ctx, w, res).await {
        Ok(s) => replicas(&s),
        // Not found: read the workload itself for a reply with suggestions.
        Err(f) if f.is_not_found() => {
            get_workload(ctx, w).await?;
            return Err(ctx.fail(f).await);
        }
        Err(f) => return Err(ctx.fail(f).await),
    };
    let hpa = autoscaler(ctx, w).await;
    let hpa_note = hpa.as_ref().map(|h| {
        let spec = h.spec.clone().unwrap_or_default();
        format!(
            "horizontalpodautoscaler/{} manages {} (min {}, max {}); it may change the replicas again",
            h.metadata.name.as_deref().unwrap_or("?"),
            w.resource(),
            spec.min_replicas.unwrap_or(1),
            spec.max_replicas
        )
    });
    let change = format!("{before} → {target}");

    if dry_run {
        let after = match patch_scale(ctx, w, res, target, true).await {
            Ok(s) => replicas(&s),
            Err(f) => return Err(ctx.fail(f).await),
        };
        let mut reply = Reply::info(format!(
            "Dry run: scale {} {before} → {after}",
            w.resource()
        ))
        .text("The API server accepted the change; nothing was changed (server-side dry run).")
        .field("Replicas", format!("{before} → {after}"));
        if let Some(note) = hpa_note {
            reply = reply.field("Autoscaler", note);
        }
        return Ok(reply.footer(ctx.place()));
    }

    if i64::from(before) == i64::from(target) {
        let mut reply = Reply::info(format!("{} already has {target} replicas", w.resource()))
            .text("Nothing to change.")
            .field("Replicas", change);
        if let Some(note) = hpa_note {
            reply = reply.field("Autoscaler", note);
        }
        return Ok(reply.footer(ctx.place()));
    }

    let after = match patch_scale(ctx, w, res, target, false).await {
        Ok(s) => replicas(&s),
        Err(f) => return Err(ctx.fail(f).await),
    };
    let followed = follow(
        ctx,
        w,
        Change::Scale {
            from: u32::try_from(before.max(0)).unwrap_or(0),
            to: u32::try_from(after.max(0)).unwrap_or(0),
        },
    )
    .await;
    let mut reply = Reply::ok(format!("Scaled {} {before} → {after}", w.resource()))
        .field("Replicas", format!("{before} → {after}"));
    if target == 0 {
        reply = reply.text("All pods of this workload are being stopped.");
    }
    if let Some(note) = hpa_note {
        reply = reply.field("Autoscaler", note);
    }
    reply = followed.annotate(reply, w, ctx.opts.rollout_timeout);
    // The rollout followed is of whatever the spec says by then: when something (an
    // autoscaler) set other replicas meanwhile, the scale did not hold, and the reply says so.
    if let Some(now) = followed.state.as_ref().map(|s| s.desired)
        && now != after
    {
        reply.tone = crate::reply::Tone::Warning;
        reply = reply.field("Replicas now", now.to_string()).text(format!(
            "{} now wants {now} replicas, not {after}: something changed them after the \
                 scale{}.",
            w.resource(),
            if hpa.is_some() {
                " (its autoscaler: set its bounds with `hpa NAME --min N --max N`)"
            } else {
                ""
            }
        ));
    }
    if reply.footer.is_none() {
        reply = reply.footer(ctx.place());
    }
    Ok(reply)
}
