//! `status`: a rollout verdict like `kubectl rollout status`, plus the useful parts of
//! `kubectl describe`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::errors::{Res, not_found};
use super::mask::mask_secrets;
use super::util::{age, images, table_within};
use super::{Ctx, OpError, events};
use crate::command::{Workload, WorkloadKind};
use crate::reply::{Reply, Tone};

/// The annotation holding a Deployment's (and its ReplicaSets') revision.
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";

/// A deployment or a statefulset, as read from the cluster.
#[derive(Debug, Clone)]
pub(crate) enum WorkloadObj {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
}

impl WorkloadObj {
    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            WorkloadObj::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            WorkloadObj::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
        }
    }

    pub fn images(&self) -> String {
        images(self.template().and_then(|t| t.spec.as_ref()))
    }

    /// The revision: a Deployment's revision number, a StatefulSet's update revision.
    pub fn revision(&self) -> Option<String> {
        match self {
            WorkloadObj::Deployment(d) => d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned(),
            WorkloadObj::StatefulSet(s) => s.status.as_ref().and_then(|st| {
                st.update_revision
                    .clone()
                    .or_else(|| st.current_revision.clone())
            }),
        }
    }

    /// The status conditions as rows of TYPE, STATUS, REASON, AGE and MESSAGE (secrets masked).
    pub fn condition_rows(&self, now: jiff::Timestamp) -> Vec<Vec<String>> {
        // The two kinds' condition types are distinct but have the same fields.
        macro_rules! rows {
            ($status:expr) => {
                $status
                    .iter()
                    .flat_map(|s| s.conditions.iter().flatten())
                    .map(|c| {
                        vec![
                            c.type_.clone(),
                            c.status.clone(),
                            c.reason.clone().unwrap_or_default(),
                            age(now, c.last_transition_time.as_ref()),
                            mask_secrets(c.message.as_deref().unwrap_or_default()),
                        ]
                    })
                    .collect()
            };
        }
        match self {
            WorkloadObj::Deployment(d) => rows!(d.status),
            WorkloadObj::StatefulSet(s) => rows!(s.status),
        }
    }

    pub fn state(&self) -> RolloutState {
        match self {
            WorkloadObj::Deployment(d) => deployment_state(d),
            WorkloadObj::StatefulSet(s) => statefulset_state(s),
        }
    }
}

/// Reads a workload; when it does not exist, suggests near names of that kind and the same
/// name of the other kind.
pub(crate) async fn get_workload(ctx: &Ctx<'_>, w: &Workload) -> Result<WorkloadObj, OpError> {
    let (res, other) = match w.kind {
        WorkloadKind::Deployment => (Res::Deployments, Res::StatefulSets),
        WorkloadKind::StatefulSet => (Res::StatefulSets, Res::Deployments),
    };
    let got = match w.kind {
        WorkloadKind::Deployment => ctx
            .get_raw::<Deployment>(res, &w.name)
            .await
            .map(|d| WorkloadObj::Deployment(Box::new(d))),
        WorkloadKind::StatefulSet => ctx
            .get_raw::<StatefulSet>(res, &w.name)
            .await
            .map(|s| WorkloadObj::StatefulSet(Box::new(s))),
    };
    match got {
        Ok(o) => Ok(o),
        Err(f) if f.is_not_found() => {
            let mut err = not_found(ctx, res, &w.name).await;
            if let OpError::NotFound {
                kind, suggestions, ..
            } = &mut err
                && kind == res.kind()
            {
                let exists = match other {
                    Res::Deployments => ctx
                        .get_opt::<Deployment>(other, &w.name)
                        .await
                        .ok()
                        .flatten()
                        .is_some(),
                    _ => ctx
                        .get_opt::<StatefulSet>(other, &w.name)
                        .await
                        .ok()
                        .flatten()
                        .is_some(),
                };
                if exists {
                    suggestions.insert(0, format!("{}/{}", other.kind(), w.name));
                }
            }
            Err(err)
        }
        Err(f) => Err(ctx.fail(f).await),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Complete,
    Progressing,
    Stalled,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Complete => "complete",
            Verdict::Progressing => "progressing",
            Verdict::Stalled => "stalled",
        }
    }

    pub fn tone(self) -> Tone {
        match self {
            Verdict::Complete => Tone::Ok,
            Verdict::Progressing => Tone::Info,
            Verdict::Stalled => Tone::Danger,
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RolloutState {
    pub verdict: Verdict,
    /// kubectl-style explanation, e.g. `2 of 3 updated replicas are available`.
    pub detail: String,
    pub desired: i32,
    pub current: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    /// Whether the controller has seen the latest spec: until then the counts are those of
    /// the previous spec (its `updated` replicas are not of the new template).
    pub observed: bool,
}

impl RolloutState {
    /// `3/6 updated, 2 ready`.
    pub fn progress_text(&self) -> String {
        format!(
            "{}/{} updated, {} ready",
            self.updated, self.desired, self.ready
        )
    }

    pub fn counts(&self) -> String {
        format!(
            "desired {} · current {} · updated {} · ready {} · available {}",
            self.desired, self.current, self.updated, self.ready, self.available
        )
    }
}

/// `kubectl rollout status` for a Deployment.
pub(crate) fn deployment_state(d: &Deployment) -> RolloutState {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let current = st.replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let ready = st.ready_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = st.observed_generation.unwrap_or(0);
    let state = |verdict, detail: String| RolloutState {
        verdict,
        detail,
        desired,
        current,
        updated,
        ready,
        available,
        observed: generation <= observed,
    };
    if generation > observed {
        return state(
            Verdict::Progressing,
            "waiting for the deployment spec update to be observed".into(),
        );
    }
    let progressing = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    if let Some(c) = progressing
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return state(
            Verdict::Stalled,
            format!(
                "exceeded its progress deadline{}",
                c.message
                    .as_deref()
                    .map(|m| format!(": {}", mask_secrets(m)))
                    .unwrap_or_default()
            ),
        );
    }
    if updated < desired {
        return state(
            Verdict::Progressing,
            format!("{updated} of {desired} new replicas have been updated"),
        );
    }
    if current > updated {
        return state(
            Verdict::Progressing,
            format!("{} old replicas are pending termination", current - updated),
        );
    }
    if available < updated {
        return state(
            Verdict::Progressing,
            format!("{available} of {updated} updated replicas are available"),
        );
    }
    state(Verdict::Complete, "successfully rolled out".into())
}

/// `kubectl rollout status` for a StatefulSet.
pub(crate) fn statefulset_state(s: &StatefulSet) -> RolloutState {
    let spec = s.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    let current = st.replicas;
    let updated = st.updated_replicas.unwrap_or(0);
    let ready = st.ready_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(ready);
    let generation = s.metadata.generation.unwrap_or(0);
    let observed = st.observed_generation.unwrap_or(0);
    let state = |verdict, detail: String| RolloutState {
        verdict,
        detail,
        desired,
        current,
        updated,
        ready,
        available,
        observed: generation <= observed,
    };
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if generation > observed {
        return state(
            Verdict::Progressing,
            "waiting for the statefulset spec update to be observed".into(),
        );
    }
    if ready < desired {
        return state(
            Verdict::Progressing,
            format!("{ready} of {desired} pods are ready"),
        );
    }
    if strategy
        .type_
        .as_deref()
        .is_some_and(|t| t != "RollingUpdate")
    {
        // Scaling still waits for the pods to be ready (above); template changes wait for
        // someone to delete the pods.
        return state(
            Verdict::Complete,
            format!(
                "{ready} of {desired} pods are ready; update strategy is not RollingUpdate: \
                 pods change only when deleted"
            ),
        );
    }
    let partition = strategy
        .rolling_update
        .and_then(|r| r.partition)
        .unwrap_or(0);
    if partition > 0 {
        let want = desired.saturating_sub(partition);
        if updated < want {
            return state(
                Verdict::Progressing,
                format!("partitioned roll out: {updated} of {want} new pods have been updated"),
            );
        }
        return state(
            Verdict::Complete,
            format!("partitioned roll out complete: {updated} new pods have been updated"),
        );
    }
    if st.update_revision.is_some() && st.update_revision != st.current_revision {
        return state(
            Verdict::Progressing,
            format!(
                "{updated} of {desired} pods are at revision {}",
                st.update_revision.as_deref().unwrap_or("?")
            ),
        );
    }
    state(Verdict::Complete, "rolling update complete".into())
}

/// `status [deployment/|statefulset/]NAME`.
pub(crate) async fn status(ctx: &Ctx<'_>, w: &Workload) -> Result<Reply, OpError> {
    let obj = get_workload(ctx, w).await?;
    let state = obj.state();
    let now = ctx.now();
    let mut reply = Reply::new(
        state.verdict.tone(),
        format!("{}: {}", w.resource(), state.verdict.as_str()),
    )
    .text(state.detail.clone())
    .field("Revision", obj.revision().unwrap_or_else(|| "-".into()))
    .field("Images", obj.images())
    .field("Replicas", state.counts());

    let conditions = obj.condition_rows(now);
    if let WorkloadObj::Deployment(d) = &obj
        && d.spec.as_ref().and_then(|s| s.paused) == Some(true)
    {
        reply = reply.field("Paused", "yes: rollouts are paused");
    }
    if !conditions.is_empty() {
        reply = reply.block(
            Some("Conditions".into()),
            table_within(
                &["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"],
                &conditions,
                ctx.opts.table_chars,
            )
            .0,
        );
    }

    // Only warnings are shown, so only warnings are fetched: a busy namespace's other events
    // would cost every `status` time and memory, for nothing.
    match events::related(ctx, &w.name, None, events::Kinds::Warnings).await {
        Ok(evs) => {
            let warnings: Vec<_> = evs.into_iter().take(ctx.opts.status_warnings).collect();
            if !warnings.is_empty() {
                reply = reply.block(
                    Some("Recent warning events".into()),
                    events::render(now, &warnings, ctx.opts.table_chars).0,
                );
            }
        }
        Err(e) => {
            reply = reply.field("Events", format!("not available: {e}"));
        }
    }
    Ok(reply.footer(ctx.place()))
}

/// Labels of a pod template without `pod-template-hash` (what a rollback copies back).
pub(crate) fn without_hash(
    labels: Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    labels.map(|mut l| {
        l.remove("pod-template-hash");
        l
    })
}
