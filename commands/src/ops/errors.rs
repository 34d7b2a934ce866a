//! Failed Kubernetes calls: retrying them, and explaining them to a person.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, ListParams};
use rand::Rng;

use super::mask::mask_secrets;
use super::util::nearest;
use super::{Ctx, RetryPolicy};
use crate::reply::Reply;

/// The resources the operations touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Res {
    Deployments,
    StatefulSets,
    ReplicaSets,
    Pods,
    Events,
    Hpas,
    CronJobs,
    Jobs,
    Namespaces,
}

impl Res {
    /// The plural resource name RBAC rules use.
    pub fn plural(self) -> &'static str {
        match self {
            Res::Deployments => "deployments",
            Res::StatefulSets => "statefulsets",
            Res::ReplicaSets => "replicasets",
            Res::Pods => "pods",
            Res::Events => "events",
            Res::Hpas => "horizontalpodautoscalers",
            Res::CronJobs => "cronjobs",
            Res::Jobs => "jobs",
            Res::Namespaces => "namespaces",
        }
    }

    /// The kind as users write it (`deployment/x`).
    pub fn kind(self) -> &'static str {
        match self {
            Res::Deployments => "deployment",
            Res::StatefulSets => "statefulset",
            Res::ReplicaSets => "replicaset",
            Res::Pods => "pod",
            Res::Events => "event",
            Res::Hpas => "horizontalpodautoscaler",
            Res::CronJobs => "cronjob",
            Res::Jobs => "job",
            Res::Namespaces => "namespace",
        }
    }

    /// The API group, for RBAC messages.
    pub fn group(self) -> &'static str {
        match self {
            Res::Deployments | Res::StatefulSets | Res::ReplicaSets => "apps",
            Res::Hpas => "autoscaling",
            Res::CronJobs | Res::Jobs => "batch",
            Res::Pods | Res::Events | Res::Namespaces => "",
        }
    }
}

/// What went wrong with one call.
#[derive(Debug)]
pub(crate) enum FailKind {
    Kube(kube::Error),
    TimedOut,
}

/// A failed Kubernetes call and what it was trying to do.
#[derive(Debug)]
pub(crate) struct KubeFail {
    pub kind: FailKind,
    pub verb: &'static str,
    pub res: Res,
    pub sub: Option<&'static str>,
    pub name: Option<String>,
    /// Attempts made, filled in by [`retry`].
    pub attempts: u32,
}

impl KubeFail {
    fn status(&self) -> Option<&kube::core::Status> {
        match &self.kind {
            FailKind::Kube(kube::Error::Api(s)) => Some(s),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status().is_some_and(|s| s.code == 404)
    }

    /// A 400: the request cannot work as asked (e.g. logs of a pod that has not started).
    pub fn is_bad_request(&self) -> bool {
        self.status().is_some_and(|s| s.code == 400)
    }

    fn class(&self) -> Class {
        match &self.kind {
            FailKind::TimedOut => Class::Transient,
            FailKind::Kube(kube::Error::Api(s)) => {
                let reason = s.reason.as_str();
                if reason == "Conflict" || (s.code == 409 && reason != "AlreadyExists") {
                    Class::Conflict
                } else if s.code >= 500
                    || s.code == 429
                    || matches!(
                        reason,
                        "ServerTimeout"
                            | "Timeout"
                            | "TooManyRequests"
                            | "InternalError"
                            | "ServiceUnavailable"
                    )
                {
                    Class::Transient
                } else {
                    Class::Permanent
                }
            }
            FailKind::Kube(
                kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_),
            ) => Class::Transient,
            FailKind::Kube(_) => Class::Permanent,
        }
    }

    fn resource(&self) -> String {
        match self.sub {
            Some(sub) => format!("{}/{sub}", self.res.plural()),
            None => self.res.plural().to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Conflict,
    Transient,
    Permanent,
}

/// An operation that failed, in terms a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// No cluster is configured at all.
    #[error("no Kubernetes cluster is configured")]
    NoCluster,
    /// `--cluster` names a cluster opsbot does not know.
    #[error("unknown cluster `{name}`")]
    UnknownCluster {
        name: String,
        known: Vec<String>,
        suggestions: Vec<String>,
    },
    /// The object (or its namespace: then `kind` is `namespace`) does not exist; `suggestions`
    /// are the nearest names that do.
    #[error("{}", not_found_text(kind, name, namespace))]
    NotFound {
        kind: String,
        name: String,
        namespace: String,
        suggestions: Vec<String>,
    },
    /// RBAC said no: opsbot's service account may not `verb` `resource` (e.g.
    /// `deployments/scale`) in `group` in `namespace`.
    #[error("opsbot's service account may not {verb} {resource} in namespace `{namespace}`")]
    Forbidden {
        verb: String,
        resource: String,
        group: String,
        namespace: String,
        message: String,
    },
    /// The object kept changing under us (after one retry).
    #[error("{resource} `{name}` was changed by someone else at the same time")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    /// The API server did not answer in time, even after retries.
    #[error("the Kubernetes API did not answer in time ({verb} {resource}, {attempts} attempts)")]
    Timeout {
        verb: String,
        resource: String,
        attempts: u32,
    },
    /// The API server failed (5xx, 429 or a broken connection), even after retries.
    #[error("the Kubernetes API is failing ({verb} {resource}, {attempts} attempts): {message}")]
    Unavailable {
        verb: String,
        resource: String,
        code: u16,
        message: String,
        attempts: u32,
    },
    /// The API server rejected the request (400, 422, other 4xx).
    #[error("Kubernetes rejected {verb} {resource}: {message}")]
    Rejected {
        verb: String,
        resource: String,
        code: u16,
        message: String,
    },
    /// opsbot refuses to do it, and says why (nothing to roll back to, min > max, ...).
    #[error("{0}")]
    Refused(String),
    /// The command is answered elsewhere (`whoami` by the engine).
    #[error("`{0}` is answered by the engine, not by the operations")]
    NotAnOperation(String),
    #[error("{0}")]
    Other(String),
}

impl OpError {
    /// The reply that tells the user what went wrong and what to do.
    pub fn to_reply(&self) -> Reply {
        let text = mask_secrets(&self.to_string());
        match self {
            OpError::NoCluster => Reply::danger("No cluster configured")
                .text(text)
                .footer("Add a cluster to opsbot's configuration."),
            OpError::UnknownCluster {
                known, suggestions, ..
            } => {
                let mut r = Reply::warning("Unknown cluster").text(text);
                if !suggestions.is_empty() {
                    r = r.field("Did you mean", suggestions.join(", "));
                }
                r.field(
                    "Known clusters",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                )
            }
            OpError::NotFound {
                kind, suggestions, ..
            } => {
                let r = Reply::warning("Not found").text(text);
                match (suggestions.is_empty(), kind == "namespace") {
                    (true, false) => r.footer("Check the name and the namespace (-n)."),
                    (true, true) => r.footer("Check the namespace given with -n."),
                    (false, false) => r.field("Did you mean", suggestions.join(", ")),
                    (false, true) => r.field(
                        "Did you mean",
                        suggestions
                            .iter()
                            .map(|s| format!("-n {s}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                }
            }
            OpError::Forbidden {
                verb,
                resource,
                group,
                namespace,
                message,
            } => {
                let group = if group.is_empty() {
                    "core".to_owned()
                } else {
                    group.clone()
                };
                Reply::danger("Forbidden")
                    .text(text)
                    .field("Missing permission", format!("{verb} {resource} ({group} API group)"))
                    .field("Namespace", namespace.clone())
                    .field("Kubernetes said", mask_secrets(message))
                    .footer("Ask a cluster admin to grant this to opsbot's service account (Role / RoleBinding).")
            }
            OpError::Conflict { message, .. } => Reply::warning("Conflict")
                .text(text)
                .field("Kubernetes said", mask_secrets(message))
                .footer("opsbot retried once; run the command again."),
            OpError::Timeout { .. } => Reply::warning("Kubernetes API timeout")
                .text(text)
                .footer("The cluster may be overloaded; try again in a minute."),
            OpError::Unavailable { code, .. } => {
                let r = Reply::danger("Kubernetes API error").text(text);
                let r = if *code > 0 {
                    r.field("HTTP status", code.to_string())
                } else {
                    r
                };
                r.footer("opsbot retried with backoff; try again later or check the API server.")
            }
            OpError::Rejected { .. } => Reply::danger("Request rejected").text(text),
            OpError::Refused(_) => Reply::warning("Refused").text(text),
            OpError::NotAnOperation(_) => Reply::info("Not an operation").text(text),
            OpError::Other(_) => Reply::danger("Command failed").text(text),
        }
    }
}

/// "deployment `web` not found in namespace `shop`"; "namespace `prod` does not exist".
fn not_found_text(kind: &str, name: &str, namespace: &str) -> String {
    if kind == "namespace" {
        format!("namespace `{name}` does not exist")
    } else {
        format!("{kind} `{name}` not found in namespace `{namespace}`")
    }
}

/// Runs `fut` as one Kubernetes call bounded by the request timeout, labelling its failure.
pub(crate) async fn call<T>(
    ctx: &Ctx<'_>,
    verb: &'static str,
    res: Res,
    sub: Option<&'static str>,
    name: Option<&str>,
    fut: impl Future<Output = kube::Result<T>>,
) -> Result<T, KubeFail> {
    let limit = ctx.opts.retry.request_timeout;
    let kind = match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => FailKind::Kube(e),
        Err(_) => FailKind::TimedOut,
    };
    Err(KubeFail {
        kind,
        verb,
        res,
        sub,
        name: name.map(str::to_owned),
        attempts: 1,
    })
}

/// Runs `f` until it succeeds or fails for good: a conflict is retried once (so `f` should
/// re-read what it modifies), timeouts, 429 and 5xx up to `policy.attempts` times in all, with
/// exponential backoff.
pub(crate) async fn retry<T, F, Fut>(policy: &RetryPolicy, mut f: F) -> Result<T, KubeFail>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KubeFail>>,
{
    let mut conflicts = 0u32;
    let mut transient = 0u32;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let mut fail = match f().await {
            Ok(v) => return Ok(v),
            Err(fail) => fail,
        };
        fail.attempts = attempts;
        match fail.class() {
            Class::Conflict if conflicts == 0 => {
                conflicts += 1;
                tracing::debug!(verb = fail.verb, resource = %fail.resource(), "conflict, retrying once");
            }
            Class::Transient if transient + 1 < policy.attempts.max(1) => {
                let delay = policy.base_delay.saturating_mul(1 << transient.min(16));
                let jitter = rand::rng().random_range(0.0..0.5);
                let delay = delay.mul_f64(1.0 + jitter);
                transient += 1;
                tracing::debug!(verb = fail.verb, resource = %fail.resource(), ?delay, "transient failure, retrying");
                tokio::time::sleep(delay).await;
            }
            _ => return Err(fail),
        }
    }
}

/// Turns a failed call into an [`OpError`], looking up the nearest existing names when
/// something was not found.
pub(crate) async fn explain(ctx: &Ctx<'_>, fail: KubeFail) -> OpError {
    let verb = fail.verb.to_owned();
    let resource = fail.resource();
    let attempts = fail.attempts;
    let status = match &fail.kind {
        FailKind::TimedOut => {
            return OpError::Timeout {
                verb,
                resource,
                attempts,
            };
        }
        FailKind::Kube(kube::Error::Api(s)) => s.as_ref().clone(),
        FailKind::Kube(e) => {
            return match fail.class() {
                Class::Transient => OpError::Unavailable {
                    verb,
                    resource,
                    code: 0,
                    message: e.to_string(),
                    attempts,
                },
                _ => OpError::Other(format!("{verb} {resource}: {e}")),
            };
        }
    };
    let message = if status.message.is_empty() {
        status.reason.clone()
    } else {
        status.message.clone()
    };
    if status.code == 404 {
        let name = fail.name.clone().unwrap_or_default();
        return not_found(ctx, fail.res, &name).await;
    }
    if status.code == 403 || status.reason == "Forbidden" {
        return OpError::Forbidden {
            verb,
            resource,
            group: fail.res.group().to_owned(),
            namespace: ctx.ns.clone(),
            message,
        };
    }
    match fail.class() {
        Class::Conflict => OpError::Conflict {
            resource: fail.res.kind().to_owned(),
            name: fail.name.unwrap_or_default(),
            message,
        },
        Class::Transient if status.code == 504 || status.reason.contains("Timeout") => {
            OpError::Timeout {
                verb,
                resource,
                attempts,
            }
        }
        Class::Transient => OpError::Unavailable {
            verb,
            resource,
            code: status.code,
            message,
            attempts,
        },
        Class::Permanent => OpError::Rejected {
            verb,
            resource,
            code: status.code,
            message,
        },
    }
}

/// "`kind` `name` not found", with the nearest names of that kind in the namespace (or, when
/// the namespace itself does not exist, the nearest namespaces).
pub(crate) async fn not_found(ctx: &Ctx<'_>, res: Res, name: &str) -> OpError {
    let names = list_names(ctx, res).await;
    if names.is_empty() {
        // Maybe the namespace is the problem.
        let ns_api: Api<Namespace> = Api::all(ctx.client.clone());
        if let Ok(Err(kube::Error::Api(s))) =
            tokio::time::timeout(ctx.opts.retry.request_timeout, ns_api.get(&ctx.ns)).await
            && s.code == 404
        {
            let all = list_names(ctx, Res::Namespaces).await;
            return OpError::NotFound {
                kind: "namespace".into(),
                name: ctx.ns.clone(),
                namespace: ctx.ns.clone(),
                suggestions: nearest(&ctx.ns, all.iter().map(String::as_str)),
            };
        }
    }
    OpError::NotFound {
        kind: res.kind().to_owned(),
        name: name.to_owned(),
        namespace: ctx.ns.clone(),
        suggestions: nearest(name, names.iter().map(String::as_str)),
    }
}

/// Names of `res` in the namespace; empty when they cannot be listed.
pub(crate) async fn list_names(ctx: &Ctx<'_>, res: Res) -> Vec<String> {
    async fn names<K>(api: Api<K>, limit: Duration) -> Vec<String>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match tokio::time::timeout(limit, api.list(&ListParams::default())).await {
            Ok(Ok(list)) => list
                .items
                .iter()
                .filter_map(|o| o.meta().name.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
    let c = ctx.client.clone();
    let ns = ctx.ns.as_str();
    let t = ctx.opts.retry.request_timeout;
    match res {
        Res::Deployments => names(Api::<Deployment>::namespaced(c, ns), t).await,
        Res::StatefulSets => names(Api::<StatefulSet>::namespaced(c, ns), t).await,
        Res::ReplicaSets => names(Api::<ReplicaSet>::namespaced(c, ns), t).await,
        Res::Pods => names(Api::<Pod>::namespaced(c, ns), t).await,
        Res::Events => names(Api::<Event>::namespaced(c, ns), t).await,
        Res::Hpas => names(Api::<HorizontalPodAutoscaler>::namespaced(c, ns), t).await,
        Res::CronJobs => names(Api::<CronJob>::namespaced(c, ns), t).await,
        Res::Jobs => names(Api::<Job>::namespaced(c, ns), t).await,
        Res::Namespaces => names(Api::<Namespace>::all(c), t).await,
    }
}
