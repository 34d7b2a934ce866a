//! Shared helpers for the `ops_*` tests: a kubesim with a small seed, an `Operator` talking to it
//! through the real kube-rs client, and a driver that moves kubesim's clock while an operation
//! runs (so rollouts and jobs progress without any real waiting).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::client::{Body, ClientBuilder};
use kubesim::{KubeSim, Seed};
use opsbot_commands::ops::{OpOptions, RetryPolicy};
use opsbot_commands::{Clusters, Command, Op, OpError, Operator, Progress, ProgressSender, Reply};
use serde_json::{Value, json};

/// Something the test's HTTP layer runs before each request reaches kubesim.
pub type Hook = Arc<dyn Fn(&http::Request<Body>) + Send + Sync>;

pub struct Env {
    pub sim: Arc<KubeSim>,
    pub op: Operator,
}

pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn ago(secs: i64) -> String {
    time(Timestamp::now() - SignedDuration::from_secs(secs))
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn deployment(ns: &str, name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 60,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    })
}

pub fn statefulset(ns: &str, name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    })
}

pub fn hpa(ns: &str, name: &str, target: &str, min: i64, max: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min, "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    })
}

pub fn cronjob(ns: &str, name: &str, schedule: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "creationTimestamp": ago(30 * 86_400)},
        "spec": {
            "schedule": schedule,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"backoffLimit": 0, "template": {
                    "metadata": {"annotations": {"kubesim.io/duration-seconds": "30"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "backup", "image": "postgres:16", "command": ["pg_dump"]}],
                    },
                }},
            },
        },
    })
}

/// A finished job of cronjob `cj`, started `secs_ago`, that took `took` seconds.
pub fn finished_job(ns: &str, cj: &str, name: &str, secs_ago: i64, took: i64, ok: bool) -> Value {
    let start = Timestamp::now() - SignedDuration::from_secs(secs_ago);
    let end = time(start + SignedDuration::from_secs(took));
    let status = if ok {
        json!({"startTime": time(start), "completionTime": end, "succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": end}]})
    } else {
        json!({"startTime": time(start), "failed": 1, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit", "lastTransitionTime": end}]})
    };
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "namespace": ns, "creationTimestamp": time(start),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj,
                                 "uid": format!("uid-{ns}-{cj}"), "controller": true}],
        },
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "backup", "image": "postgres:16"}]}}},
        "status": status,
    })
}

/// Options for tests: quick retries, quick polling, kubesim's clock.
pub fn options(sim: &Arc<KubeSim>) -> OpOptions {
    let s = sim.clone();
    OpOptions {
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(5),
            request_timeout: Duration::from_secs(10),
        },
        rollout_timeout: Duration::from_secs(30),
        job_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        clock: Arc::new(move || s.clock().now()),
        ..OpOptions::default()
    }
}

/// A kube-rs client for `sim`, with `hook` run before every request.
pub fn client(sim: &KubeSim, hook: Option<Hook>) -> kube::Client {
    let mut config = kube::Config::new(sim.url().parse().expect("kubesim url"));
    // As `Clusters::add_config` does: opsbot's retry policy is the only one.
    config.default_retry = false;
    let builder = ClientBuilder::try_from(config).expect("client");
    match hook {
        None => builder.build(),
        Some(hook) => builder
            .with_layer(&tower::layer::layer_fn(move |svc| {
                let hook = hook.clone();
                tower::ServiceExt::map_request(svc, move |req: http::Request<Body>| {
                    hook(&req);
                    req
                })
            }))
            .build(),
    }
}

impl Env {
    /// kubesim with `objects` (after a short warm-up, so pods are ready), its clock paused.
    pub async fn start(objects: Vec<Value>) -> Env {
        Self::start_with(objects, |_| None, |_| {}).await
    }

    /// Like [`Env::start`]; `hook` may build a request hook that uses the sim, `tune` adjusts
    /// the options.
    pub async fn start_with(
        objects: Vec<Value>,
        hook: impl FnOnce(Arc<KubeSim>) -> Option<Hook>,
        tune: impl FnOnce(&mut OpOptions),
    ) -> Env {
        let seed = Seed {
            objects,
            warm_up: Duration::from_secs(60),
        };
        let sim = Arc::new(KubeSim::start(seed).await.expect("kubesim starts"));
        sim.clock().pause();
        let mut clusters = Clusters::new();
        clusters.add("sim", client(&sim, hook(sim.clone())), "default");
        let mut opts = options(&sim);
        tune(&mut opts);
        Env {
            op: Operator::with_options(clusters, opts),
            sim,
        }
    }

    pub fn cmd(ns: &str, op: Op) -> Command {
        Command {
            cluster: None,
            namespace: Some(ns.to_owned()),
            op,
        }
    }

    /// Runs `op` in `ns` without moving the clock.
    pub async fn run(&self, ns: &str, op: Op) -> Result<Reply, OpError> {
        self.op
            .execute(&Self::cmd(ns, op), ProgressSender::none())
            .await
    }

    /// Runs `op` in `ns` while moving kubesim's clock one second at a time; returns the
    /// result and the progress updates sent.
    pub async fn drive(&self, ns: &str, op: Op) -> (Result<Reply, OpError>, Vec<Progress>) {
        self.drive_cmd(Self::cmd(ns, op)).await
    }

    pub async fn drive_cmd(&self, cmd: Command) -> (Result<Reply, OpError>, Vec<Progress>) {
        let (tx, mut rx) = ProgressSender::channel();
        let op = self.op.clone();
        let task = tokio::spawn(async move { op.execute(&cmd, tx).await });
        while !task.is_finished() {
            self.sim.advance(Duration::from_secs(1)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let out = task.await.expect("operation task");
        let mut progress = Vec::new();
        while let Ok(p) = rx.try_recv() {
            progress.push(p);
        }
        (out, progress)
    }

    /// Moves the clock until `done` says so (at most `max` simulated seconds).
    pub async fn advance_until(&self, max: u64, done: impl Fn(&KubeSim) -> bool) {
        for _ in 0..max {
            if done(&self.sim) {
                return;
            }
            self.sim.advance(Duration::from_secs(1)).await;
        }
        assert!(
            done(&self.sim),
            "condition not reached in {max} simulated seconds"
        );
    }

    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Value {
        self.sim
            .get(api_version, kind, ns, name)
            .unwrap_or_else(|| panic!("{kind} {ns}/{name} exists"))
    }
}

/// The value of the reply field `name`.
pub fn field<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.value.as_str())
        .unwrap_or_else(|| panic!("no field {name} in {r:#?}"))
}

/// All the text of a reply, for "contains" checks.
pub fn all_text(r: &Reply) -> String {
    let mut s = format!("{}\n{}\n", r.title, r.text.clone().unwrap_or_default());
    for f in &r.fields {
        s.push_str(&format!("{}: {}\n", f.name, f.value));
    }
    for b in &r.blocks {
        s.push_str(&format!(
            "{}\n{}\n",
            b.caption.clone().unwrap_or_default(),
            b.body
        ));
    }
    s.push_str(&r.footer.clone().unwrap_or_default());
    s
}

/// A deployment is rolled out in kubesim (generation observed, all replicas updated and available).
pub fn rolled_out(sim: &KubeSim, ns: &str, name: &str) -> bool {
    let Some(d) = sim.get("apps/v1", "Deployment", ns, name) else {
        return false;
    };
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    d["status"]["observedGeneration"] == d["metadata"]["generation"]
        && d["status"]["updatedReplicas"].as_i64().unwrap_or(0) == want
        && d["status"]["availableReplicas"].as_i64().unwrap_or(0) == want
        && d["status"]["replicas"].as_i64().unwrap_or(0) == want
}
