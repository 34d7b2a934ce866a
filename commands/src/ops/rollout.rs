//! `restart`, `rollback`, and following a rollout after a change.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Resource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::errors::{Res, call, retry};
use super::selector::Selector;
use super::status::{REVISION, RolloutState, Verdict, WorkloadObj, get_workload, without_hash};
use super::util::{fmt_duration, images, owned_by};
use super::{Ctx, OpError};
use crate::command::{Workload, WorkloadKind};
use crate::reply::{Progress, Reply, Tone};

/// The annotation `kubectl rollout restart` sets on the pod template.
pub(crate) const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Annotations a rollback does not copy from the ReplicaSet (as kubectl).
const SKIPPED_ANNOTATIONS: [&str; 5] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
];

/// How following a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Complete,
    /// `ProgressDeadlineExceeded`.
    Stalled,
    TimedOut,
    /// The workload could not be read any more (deleted, forbidden, API down).
    Lost(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Followed {
    pub outcome: Outcome,
    /// The last state seen (None if it was never read).
    pub state: Option<RolloutState>,
    pub obj: Option<WorkloadObj>,
}

impl Followed {
    pub fn tone(&self) -> Tone {
        match self.outcome {
            Outcome::Complete => Tone::Ok,
            Outcome::Stalled | Outcome::Lost(_) => Tone::Danger,
            Outcome::TimedOut => Tone::Warning,
        }
    }

    /// `complete (3/3 updated, 3 ready)`.
    pub fn summary(&self, timeout: Duration) -> String {
        let progress = self
            .state
            .as_ref()
            .map(|s| format!(" ({})", s.progress_text()))
            .unwrap_or_default();
        match &self.outcome {
            Outcome::Complete => format!("complete{progress}"),
            Outcome::Stalled => format!(
                "stalled{progress}: {}",
                self.state
                    .as_ref()
                    .map(|s| s.detail.as_str())
                    .unwrap_or("progress deadline exceeded")
            ),
            Outcome::TimedOut => format!(
                "still rolling out after {}{progress}: {}",
                fmt_duration(timeout),
                self.state
                    .as_ref()
                    .map(|s| s.detail.as_str())
                    .unwrap_or("no status yet")
            ),
            Outcome::Lost(why) => format!("could not follow the rollout: {why}"),
        }
    }

    /// Adds the rollout verdict and a hint to `reply`, and sets its tone.
    pub fn annotate(&self, mut reply: Reply, w: &Workload, timeout: Duration) -> Reply {
        reply.tone = self.tone();
        reply = reply.field("Rollout", self.summary(timeout));
        match self.outcome {
            Outcome::Stalled => reply.footer(format!(
                "Check `events {}` and `pods {}`; `rollback {}` returns to the previous revision.",
                w.name, w.name, w.name
            )),
            Outcome::TimedOut => reply.footer(format!(
                "The change is in place; check again with `status {}`.",
                w.resource()
            )),
            _ => reply,
        }
    }
}

/// What changed, so progress is counted toward what the change is after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new pod template (restart, rollback): replicas *updated* to it, counted from 0.
    Template,
    /// A new replica count: replicas *ready* toward `to`, and those still terminating.
    Scale { from: u32, to: u32 },
}

impl Change {
    /// The progress shown for `state`: `2/5 updated, 4 ready` for a new template,
    /// `3/5 ready` or `4/4 ready, 1 terminating` for a new replica count. Never more than the
    /// target; the bar is full only when the change is done.
    pub fn progress(self, state: &RolloutState) -> Progress {
        let n = |v: i32| u32::try_from(v.max(0)).unwrap_or(0);
        match self {
            Change::Template => {
                let desired = n(state.desired);
                // Until the new spec is observed, no replica is of the new template yet.
                let updated = if state.observed {
                    n(state.updated).min(desired)
                } else {
                    0
                };
                Progress {
                    text: format!("{updated}/{desired} updated, {} ready", n(state.ready)),
                    done: updated.min(n(state.available)),
                    total: desired,
                }
            }
            Change::Scale { from, to } => {
                let ready = n(state.ready).min(to);
                let current = n(state.current);
                let terminating = current.saturating_sub(to);
                let text = if terminating > 0 {
                    format!("{ready}/{to} ready, {terminating} terminating")
                } else {
                    format!("{ready}/{to} ready")
                };
                // Scaling down, each replica gone is a step too.
                let total = from.max(to);
                Progress {
                    text,
                    done: (ready + from.saturating_sub(current.max(to))).min(total),
                    total,
                }
            }
        }
    }
}

impl Change {
    /// The progress shown once Kubernetes says the rollout is complete: a full bar (a replica
    /// still terminating after a scale down no longer holds the change up).
    fn completed(self, state: &RolloutState) -> Progress {
        let mut p = self.progress(state);
        if let Change::Scale { to, .. } = self {
            p.text = format!("{to}/{to} ready");
        }
        p.done = p.total;
        p
    }
}

/// Follows the rollout of `w` after `change` until it completes, stalls or `rollout_timeout`
/// passes, streaming progress (see [`Change::progress`]); the bar never goes back.
pub(crate) async fn follow(ctx: &Ctx<'_>, w: &Workload, change: Change) -> Followed {
    let deadline = tokio::time::Instant::now() + ctx.opts.rollout_timeout;
    let mut last = Followed {
        outcome: Outcome::TimedOut,
        state: None,
        obj: None,
    };
    let mut last_sent: Option<Progress> = None;
    loop {
        let obj = match tokio::time::timeout_at(deadline, get_workload(ctx, w)).await {
            Err(_) => return last,
            Ok(Err(e)) => {
                last.outcome = Outcome::Lost(e.to_string());
                return last;
            }
            Ok(Ok(o)) => o,
        };
        let state = obj.state();
        let mut progress = match state.verdict {
            Verdict::Complete => change.completed(&state),
            _ => change.progress(&state),
        };
        if let Some(prev) = &last_sent {
            progress.done = progress.done.max(prev.done.min(progress.total));
        }
        if last_sent.as_ref() != Some(&progress) {
            ctx.progress(progress.text.clone(), progress.done, progress.total);
            last_sent = Some(progress);
        }
        let verdict = state.verdict;
        let rv = match &obj {
            WorkloadObj::Deployment(d) => d.metadata.resource_version.clone(),
            WorkloadObj::StatefulSet(s) => s.metadata.resource_version.clone(),
        };
        last.state = Some(state);
        last.obj = Some(obj);
        match verdict {
            Verdict::Complete => {
                last.outcome = Outcome::Complete;
                return last;
            }
            Verdict::Stalled => {
                last.outcome = Outcome::Stalled;
                return last;
            }
            Verdict::Progressing => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return last;
        }
        let until = deadline.min(tokio::time::Instant::now() + ctx.opts.poll_interval);
        match w.kind {
            WorkloadKind::Deployment => {
                wait_change(ctx.api::<Deployment>(), &w.name, rv, until).await;
            }
            WorkloadKind::StatefulSet => {
                wait_change(
                    ctx.api::<k8s_openapi::api::apps::v1::StatefulSet>(),
                    &w.name,
                    rv,
                    until,
                )
                .await;
            }
        }
    }
}

/// Waits until `name` changes after resource version `rv` (by watching it), or `until`.
pub(crate) async fn wait_change<K>(
    api: Api<K>,
    name: &str,
    rv: Option<String>,
    until: tokio::time::Instant,
) where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let secs = until
        .saturating_duration_since(tokio::time::Instant::now())
        .as_secs()
        .clamp(1, 290);
    let wp = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(u32::try_from(secs).unwrap_or(290));
    let rv = rv.unwrap_or_else(|| "0".to_owned());
    let watched = async {
        match api.watch(&wp, &rv).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(
                            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o),
                        ) if o.meta().name.as_deref() == Some(name) => {
                            return;
                        }
                        Ok(WatchEvent::Error(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                // The watch ended early: fall back to polling.
                tokio::time::sleep_until(until).await;
            }
            Err(_) => tokio::time::sleep_until(until).await,
        }
    };
    let _ = tokio::time::timeout_at(until, watched).await;
}

/// `restart`: patches the pod template like `kubectl rollout restart`, then follows.
pub(crate) async fn restart(ctx: &Ctx<'_>, w: &Workload) -> Result<Reply, OpError> {
    let before = get_workload(ctx, w).await?;
    if let Some(why) = cannot_restart(&before, w) {
        return Err(why);
    }
    let now = ctx.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}
    });
    let pp = PatchParams::default();
    let res = match w.kind {
        WorkloadKind::Deployment => Res::Deployments,
        WorkloadKind::StatefulSet => Res::StatefulSets,
    };
    let (pp, patch) = (&pp, &patch);
    let patched = retry(&ctx.opts.retry, || async move {
        match w.kind {
            WorkloadKind::Deployment => {
                let api = ctx.api::<Deployment>();
                call(
                    ctx,
                    "patch",
                    res,
                    None,
                    Some(&w.name),
                    api.patch(&w.name, pp, &Patch::Merge(&patch)),
                )
                .await
                .map(|_| ())
            }
            WorkloadKind::StatefulSet => {
                let api = ctx.api::<k8s_openapi::api::apps::v1::StatefulSet>();
                call(
                    ctx,
                    "patch",
                    res,
                    None,
                    Some(&w.name),
                    api.patch(&w.name, pp, &Patch::Merge(&patch)),
                )
                .await
                .map(|_| ())
            }
        }
    })
    .await;
    if let Err(f) = patched {
        return Err(ctx.fail(f).await);
    }
    let followed = follow(ctx, w, Change::Template).await;
    let mut reply = Reply::ok(format!("Restarted {}", w.resource()))
        .text(format!(
            "Pods are being replaced one by one (restartedAt {now})."
        ))
        .field("Images", before.images());
    if let Some(rev) = followed.obj.as_ref().and_then(WorkloadObj::revision) {
        reply = reply.field("Revision", rev);
    }
    reply = followed.annotate(reply, w, ctx.opts.rollout_timeout);
    if reply.footer.is_none() {
        reply = reply.footer(ctx.place());
    }
    Ok(reply)
}

/// Why `restart` would not restart `obj`'s pods: a paused deployment rolls nothing out, and a
/// statefulset updated `OnDelete` replaces a pod only when someone deletes it.
pub(crate) fn cannot_restart(obj: &WorkloadObj, w: &Workload) -> Option<OpError> {
    let on_delete = matches!(obj, WorkloadObj::StatefulSet(s) if s
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete"));
    if is_paused(obj) {
        Some(OpError::Refused(format!(
            "{} is paused; resume it (kubectl rollout resume) before restarting",
            w.resource()
        )))
    } else if on_delete {
        Some(OpError::Refused(format!(
            "{} is updated OnDelete: a restart would replace no pod until each is deleted by \
             hand, which opsbot does not do",
            w.resource()
        )))
    } else {
        None
    }
}

fn is_paused(obj: &WorkloadObj) -> bool {
    matches!(obj, WorkloadObj::Deployment(d) if d.spec.as_ref().and_then(|s| s.paused) == Some(true))
}

fn revision_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<u64> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.trim().parse().ok())
}

/// A pod template as it is compared and copied back (no `pod-template-hash`).
fn clean_template(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(meta) = t.metadata.as_mut() {
        meta.labels = without_hash(meta.labels.take());
    }
    t
}

fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let norm = |t: &PodTemplateSpec| {
        let mut v = serde_json::to_value(clean_template(t)).unwrap_or_default();
        // An empty label/annotation map equals a missing one.
        if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.retain(|_, v| !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty())));
        }
        v
    };
    norm(a) == norm(b)
}

/// What a rollback will do, found before anything changes: the revision it returns to, that
/// revision's pod template and annotations, and the revision it leaves.
pub(crate) struct RollbackPlan {
    current: String,
    target_rev: u64,
    template: PodTemplateSpec,
    rs_annotations: BTreeMap<String, String>,
}

/// Plans rolling deployment `name` back (to `to_revision`, else the previous revision); refuses
/// what cannot be done (no such deployment or revision, paused, nothing to roll back).
pub(crate) async fn plan_rollback(
    ctx: &Ctx<'_>,
    name: &str,
    to_revision: Option<u64>,
) -> Result<RollbackPlan, OpError> {
    let w = Workload {
        kind: WorkloadKind::Deployment,
        name: name.to_owned(),
    };
    let WorkloadObj::Deployment(d) = get_workload(ctx, &w).await? else {
        return Err(OpError::Other("expected a deployment".into()));
    };
    if is_paused(&WorkloadObj::Deployment(d.clone())) {
        return Err(OpError::Refused(format!(
            "deployment/{name} is paused; resume it (kubectl rollout resume) before rolling back"
        )));
    }
    let uid = d.metadata.uid.clone();
    let selector = d
        .spec
        .as_ref()
        .map(|s| Selector::from_label_selector(&s.selector))
        .unwrap_or_default();
    let mut lp = ListParams::default();
    if !selector.is_empty() {
        lp = lp.labels(&selector.to_query());
    }
    let rss: Vec<ReplicaSet> = ctx.list(Res::ReplicaSets, &lp).await?;
    let mut history: BTreeMap<u64, ReplicaSet> = BTreeMap::new();
    for rs in rss {
        if !owned_by(&rs.metadata, "Deployment", name, uid.as_deref()) {
            continue;
        }
        if let Some(rev) = revision_of(&rs.metadata) {
            history.insert(rev, rs);
        }
    }
    let current = revision_of(&d.metadata).or_else(|| history.keys().max().copied());
    let current_txt = current.map_or_else(|| "?".to_owned(), |c| c.to_string());
    let available = || {
        let revs: Vec<String> = history
            .keys()
            .filter(|r| Some(**r) != current)
            .map(u64::to_string)
            .collect();
        if revs.is_empty() {
            "none".to_owned()
        } else {
            revs.join(", ")
        }
    };
    let (target_rev, target) = match to_revision {
        Some(0) | None => {
            let prev = history
                .iter()
                .rev()
                .find(|(rev, _)| current.is_none_or(|c| **rev < c));
            match prev {
                Some((rev, rs)) => (*rev, rs.clone()),
                None => {
                    return Err(OpError::Refused(format!(
                        "nothing to roll back to: deployment/{name} has no revision before {current_txt} \
                         (its old ReplicaSets are gone, or revisionHistoryLimit is 0)"
                    )));
                }
            }
        }
        Some(n) if Some(n) == current => {
            return Err(OpError::Refused(format!(
                "deployment/{name} is already at revision {n}; revisions to roll back to: {}",
                available()
            )));
        }
        Some(n) => match history.get(&n) {
            Some(rs) => (n, rs.clone()),
            None => {
                return Err(OpError::Refused(format!(
                    "deployment/{name} has no revision {n}; revisions to roll back to: {}",
                    available()
                )));
            }
        },
    };
    let Some(template) = target.spec.as_ref().and_then(|s| s.template.clone()) else {
        return Err(OpError::Refused(format!(
            "revision {target_rev} of deployment/{name} has no pod template"
        )));
    };
    let template = clean_template(&template);
    if let Some(cur) = d.spec.as_ref().map(|s| &s.template)
        && same_template(cur, &template)
    {
        return Err(OpError::Refused(format!(
            "nothing to roll back: deployment/{name}'s current template already matches revision {target_rev}"
        )));
    }
    let rs_annotations: BTreeMap<String, String> = target
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    Ok(RollbackPlan {
        current: current_txt,
        target_rev,
        template,
        rs_annotations,
    })
}

/// `rollback NAME [--to-revision N]`: like `kubectl rollout undo`.
pub(crate) async fn rollback(
    ctx: &Ctx<'_>,
    name: &str,
    to_revision: Option<u64>,
) -> Result<Reply, OpError> {
    let RollbackPlan {
        current: current_txt,
        target_rev,
        template,
        rs_annotations,
    } = plan_rollback(ctx, name, to_revision).await?;
    let w = Workload {
        kind: WorkloadKind::Deployment,
        name: name.to_owned(),
    };
    let api = &ctx.api::<Deployment>();
    let (template, rs_annotations) = (&template, &rs_annotations);
    let replaced = retry(&ctx.opts.retry, || async move {
        let mut d = call(
            ctx,
            "get",
            Res::Deployments,
            None,
            Some(name),
            api.get(name),
        )
        .await?;
        if let Some(spec) = d.spec.as_mut() {
            spec.template = template.clone();
        }
        let mut ann: BTreeMap<String, String> = d
            .metadata
            .annotations
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| SKIPPED_ANNOTATIONS.contains(&k.as_str()))
            .collect();
        ann.extend(rs_annotations.clone());
        d.metadata.annotations = Some(ann);
        call(
            ctx,
            "update",
            Res::Deployments,
            None,
            Some(name),
            api.replace(name, &PostParams::default(), &d),
        )
        .await
    })
    .await;
    if let Err(f) = replaced {
        return Err(ctx.fail(f).await);
    }

    let followed = follow(ctx, &w, Change::Template).await;
    let mut reply = Reply::ok(format!(
        "Rolled back deployment/{name} to revision {target_rev}"
    ))
    .text(format!(
        "deployment/{name} goes from revision {current_txt} back to the pod template of revision {target_rev}."
    ))
    .field("From revision", current_txt.clone())
    .field("To revision", target_rev.to_string())
    .field("Images", images(template.spec.as_ref()));
    if let Some(new_rev) = followed.obj.as_ref().and_then(WorkloadObj::revision) {
        reply = reply.field("New revision", new_rev);
    }
    reply = followed.annotate(reply, &w, ctx.opts.rollout_timeout);
    if reply.footer.is_none() {
        reply = reply.footer(ctx.place());
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::status::Verdict;

    /// A deployment's state: `desired`, then status `current`, `updated`, `ready` (all
    /// available), and whether the latest spec was observed.
    fn state(desired: i32, current: i32, updated: i32, ready: i32, observed: bool) -> RolloutState {
        RolloutState {
            verdict: Verdict::Progressing,
            detail: String::new(),
            desired,
            current,
            updated,
            ready,
            available: ready,
            observed,
        }
    }

    fn shown(p: &Progress) -> (&str, u32, u32) {
        (p.text.as_str(), p.done, p.total)
    }

    #[test]
    fn a_new_template_counts_updated_replicas_from_zero() {
        // Right after the patch the status still counts the old replicas as updated (it used
        // to show `5/5` and then drop to `1/5`).
        let p = Change::Template.progress(&state(5, 5, 5, 5, false));
        assert_eq!(shown(&p), ("0/5 updated, 5 ready", 0, 5));
        let p = Change::Template.progress(&state(5, 6, 1, 5, true));
        assert_eq!(shown(&p), ("1/5 updated, 5 ready", 1, 5));
        let p = Change::Template.progress(&state(5, 5, 5, 5, true));
        assert_eq!(shown(&p), ("5/5 updated, 5 ready", 5, 5));
    }

    #[test]
    fn scaling_counts_toward_the_target() {
        let down = Change::Scale { from: 5, to: 4 };
        // It used to show a full bar at `5/4 updated`.
        let p = down.progress(&state(4, 5, 5, 5, false));
        assert_eq!(shown(&p), ("4/4 ready, 1 terminating", 4, 5));
        let p = down.progress(&state(4, 4, 4, 4, true));
        assert_eq!(shown(&p), ("4/4 ready", 5, 5));

        let up = Change::Scale { from: 2, to: 5 };
        let p = up.progress(&state(5, 2, 2, 2, false));
        assert_eq!(shown(&p), ("2/5 ready", 2, 5));
        let p = up.progress(&state(5, 5, 5, 4, true));
        assert_eq!(shown(&p), ("4/5 ready", 4, 5));

        let to_zero = Change::Scale { from: 3, to: 0 };
        let p = to_zero.progress(&state(0, 2, 2, 2, true));
        assert_eq!(shown(&p), ("0/0 ready, 2 terminating", 1, 3));
    }
}
