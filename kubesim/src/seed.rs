//! Seeds: the objects a kubesim starts with.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::clock::fmt_time;
use crate::controllers::{cronjob, stable_hash};
use crate::error::Error;

/// The objects a kubesim starts with. Controllers fill in ReplicaSets, pods and statuses.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    pub objects: Vec<Value>,
    /// How much simulated history to run before serving (pods get ready, events and logs accumulate).
    pub warm_up: std::time::Duration,
}

impl Seed {
    /// Only the `default`, `kube-system` and `kube-public` namespaces.
    pub fn empty() -> Seed {
        Seed::default()
    }

    /// Parse multi-document YAML (or JSON) of Kubernetes objects; `kind: List` documents are flattened.
    pub fn from_yaml(text: &str) -> Result<Seed, Error> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(text).map_err(|e| Error::Seed(e.to_string()))?;
        let mut objects = Vec::new();
        for d in docs {
            if d.is_null() {
                continue;
            }
            if d["kind"] == "List" || d["items"].is_array() {
                objects.extend(d["items"].as_array().cloned().unwrap_or_default());
            } else {
                objects.push(d);
            }
        }
        for o in &objects {
            if o["apiVersion"].as_str().is_none()
                || o["kind"].as_str().is_none()
                || o["metadata"]["name"].as_str().is_none()
            {
                return Err(Error::Seed(format!(
                    "object without apiVersion, kind or metadata.name: {o}"
                )));
            }
        }
        Ok(Seed {
            objects,
            warm_up: std::time::Duration::from_secs(300),
        })
    }

    /// Read a seed file (YAML or JSON).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Seed, Error> {
        Seed::from_yaml(&std::fs::read_to_string(path)?)
    }

    /// `n` deployments `svc-0` … of `replicas` nginx pods each in namespace `ns`, with a minute
    /// of simulated history: the load of the scale benchmarks.
    pub fn deployments(ns: &str, n: usize, replicas: u32) -> Seed {
        let mut objects =
            vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
        objects.extend((0..n).map(|i| {
            let name = format!("svc-{i}");
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
                    }
                }
            })
        }));
        Seed {
            objects,
            warm_up: std::time::Duration::from_secs(60),
        }
    }

    /// The default seed, modelled on the runbooks in `shared/seeds/` (see the crate docs for the list).
    pub fn default_seed() -> Seed {
        let now = Timestamp::now();
        let mut b = Builder {
            objects: Vec::new(),
            now,
        };
        for ns in [
            "api",
            "production",
            "controller",
            "ingress",
            "data-services",
            "gc-storage",
            "shiojiri-rainbow-seeker",
        ] {
            b.namespace(ns);
        }
        b.deployment(
            "api",
            "rust-webapi",
            "ghcr.io/opsbot-demo/rust-webapi",
            &["v1.4.0", "v1.4.1", "v1.4.2"],
            3,
            8080,
        );
        b.hpa("api", "rust-webapi-hpa", "rust-webapi", 2, 10, 70);
        b.cronjob(
            "api",
            "database-backup",
            "0 2 * * *",
            "postgres:16-alpine",
            false,
        );

        b.deployment(
            "production",
            "conea-api",
            "registry.conea.example/conea-api",
            &["v2.7.9", "v2.8.0", "v2.8.1"],
            3,
            8080,
        );
        b.hpa("production", "conea-api-hpa", "conea-api", 3, 30, 70);
        b.deployment("production", "redis", "redis", &["7.2-alpine"], 1, 6379);
        b.cronjob(
            "production",
            "database-backup",
            "0 2 * * *",
            "postgres:14",
            false,
        );

        b.deployment(
            "controller",
            "rust-controller",
            "ghcr.io/lambda-microservice/rust-controller",
            &["v0.9.2", "v0.9.3"],
            3,
            8080,
        );
        b.hpa(
            "controller",
            "rust-controller-hpa",
            "rust-controller",
            3,
            10,
            75,
        );
        b.deployment(
            "ingress",
            "envoy",
            "envoyproxy/envoy",
            &["v1.31.2"],
            3,
            8080,
        );
        b.hpa("ingress", "envoy-hpa", "envoy", 3, 10, 75);
        b.cronjob(
            "data-services",
            "postgres-backup",
            "0 1 * * *",
            "bitnami/postgresql:latest",
            false,
        );

        b.deployment(
            "gc-storage",
            "api",
            "ghcr.io/gc-storage/api",
            &["v3.1.0", "v3.2.0"],
            3,
            8080,
        );
        b.hpa("gc-storage", "api-hpa", "api", 2, 10, 70);
        b.statefulset("gc-storage", "postgres-replica", "postgres:16-alpine", 3);
        b.cronjob(
            "gc-storage",
            "postgres-backup",
            "0 2 * * *",
            "postgres:16-alpine",
            true,
        );

        b.deployment(
            "shiojiri-rainbow-seeker",
            "backend",
            "ghcr.io/shiojiri/rainbow-seeker-backend",
            &["v1.2.0", "v1.3.0"],
            2,
            3000,
        );
        b.hpa(
            "shiojiri-rainbow-seeker",
            "backend-hpa",
            "backend",
            2,
            10,
            70,
        );
        b.deployment(
            "shiojiri-rainbow-seeker",
            "frontend",
            "ghcr.io/shiojiri/rainbow-seeker-frontend",
            &["v1.3.0"],
            2,
            80,
        );
        b.hpa(
            "shiojiri-rainbow-seeker",
            "frontend-hpa",
            "frontend",
            2,
            6,
            70,
        );
        b.cronjob(
            "shiojiri-rainbow-seeker",
            "database-backup",
            "30 3 * * *",
            "postgres:16-alpine",
            false,
        );
        b.cronjob(
            "shiojiri-rainbow-seeker",
            "ml-model-retrain",
            "0 4 * * 0",
            "ghcr.io/shiojiri/ml-retrain:v0.4.0",
            false,
        );
        Seed {
            objects: b.objects,
            warm_up: std::time::Duration::from_secs(600),
        }
    }
}

struct Builder {
    objects: Vec<Value>,
    now: Timestamp,
}

fn uid(kind: &str, ns: &str, name: &str) -> String {
    let h = stable_hash(&json!([kind, ns, name]));
    let h2 = stable_hash(&json!([name, ns, kind]));
    let hex: String = format!("{h}{h2}")
        .bytes()
        .map(|b| format!("{:x}", b % 16))
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..15],
        &hex[15..18],
        &format!("{hex}{hex}")[18..30]
    )
}

impl Builder {
    fn ago(&self, days: i64, hours: i64) -> Timestamp {
        self.now - SignedDuration::from_hours(days * 24 + hours)
    }

    fn namespace(&mut self, name: &str) {
        self.objects.push(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "creationTimestamp": fmt_time(self.ago(120, 0)), "labels": {"kubernetes.io/metadata.name": name}},
        }));
    }

    fn pod_template(name: &str, image: &str, port: i64) -> Value {
        json!({
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{
                "name": name,
                "image": image,
                "ports": [{"containerPort": port, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
            }]},
        })
    }

    /// A deployment whose `tags` are its image history, oldest first (the last is current).
    fn deployment(
        &mut self,
        ns: &str,
        name: &str,
        image: &str,
        tags: &[&str],
        replicas: i64,
        port: i64,
    ) {
        let duid = uid("Deployment", ns, name);
        let current = tags.last().copied().unwrap_or("latest");
        let cause = |tag: &str| format!("kubectl set image deployment/{name} {name}={image}:{tag}");
        self.objects.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": name, "namespace": ns, "uid": duid,
                "creationTimestamp": fmt_time(self.ago(60, 0)),
                "labels": {"app": name},
                "annotations": {"kubernetes.io/change-cause": cause(current)},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": Self::pod_template(name, &format!("{image}:{current}"), port),
            },
        }));
        let owner = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": duid, "controller": true, "blockOwnerDeletion": true});
        let n = tags.len();
        for (i, tag) in tags.iter().take(n.saturating_sub(1)).enumerate() {
            let tpl = Self::pod_template(name, &format!("{image}:{tag}"), port);
            let mut d = json!({"spec": {"template": tpl}});
            crate::objects::apply_defaults(crate::resources::replicasets(), &mut d);
            let tpl = d["spec"]["template"].clone();
            let hash = stable_hash(&tpl);
            let mut labeled = tpl.clone();
            labeled["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            self.objects.push(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{name}-{hash}"), "namespace": ns,
                    "creationTimestamp": fmt_time(self.ago(40 - 10 * i as i64, 0)),
                    "labels": {"app": name, "pod-template-hash": hash},
                    "annotations": {
                        "deployment.kubernetes.io/revision": (i + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                        "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(),
                        "kubernetes.io/change-cause": cause(tag),
                    },
                    "ownerReferences": [owner],
                },
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name, "pod-template-hash": hash}}, "template": labeled},
                "status": {"replicas": 0, "observedGeneration": 1},
            }));
        }
    }

    fn hpa(&mut self, ns: &str, name: &str, target: &str, min: i64, max: i64, cpu: i64) {
        self.objects.push(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": fmt_time(self.ago(60, 0))},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": min, "maxReplicas": max,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}],
            },
        }));
    }

    fn statefulset(&mut self, ns: &str, name: &str, image: &str, replicas: i64) {
        self.objects.push(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": fmt_time(self.ago(90, 0)), "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "template": Self::pod_template(name, image, 5432),
            },
        }));
    }

    /// A cronjob with a history: the last four runs, the second oldest of which failed.
    fn cronjob(&mut self, ns: &str, name: &str, schedule: &str, image: &str, forbid: bool) {
        let cuid = uid("CronJob", ns, name);
        let mut cj = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": ns, "uid": cuid, "creationTimestamp": fmt_time(self.ago(90, 0))},
            "spec": {
                "schedule": schedule,
                "concurrencyPolicy": if forbid { "Forbid" } else { "Allow" },
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": name, "image": image, "command": ["/bin/sh", "-c", "pg_dump \"$DATABASE_URL\" | gzip > /backup/dump.sql.gz"]}],
                }}}},
            },
        });
        // The last four schedule times before now.
        let cron: croner::Cron = match schedule.parse() {
            Ok(c) => c,
            Err(_) => return,
        };
        let mut times = Vec::new();
        let mut t = self.now.to_zoned(jiff::tz::TimeZone::UTC);
        for _ in 0..4 {
            match cron.find_previous_occurrence(&t, false) {
                Ok(p) => {
                    times.push(p.timestamp());
                    t = p;
                }
                Err(_) => break,
            }
        }
        times.reverse();
        let mut last_ok = None;
        for (i, at) in times.iter().enumerate() {
            let fail = i == 1;
            let mut job = cronjob::job_for(&cj, *at);
            job["metadata"]["creationTimestamp"] = json!(fmt_time(*at));
            job["metadata"]["ownerReferences"][0]["uid"] = json!(cuid);
            job["metadata"]["ownerReferences"][0]["apiVersion"] = json!("batch/v1");
            job["metadata"]["ownerReferences"][0]["kind"] = json!("CronJob");
            let start = fmt_time(*at + SignedDuration::from_secs(1));
            let end_t =
                *at + SignedDuration::from_secs(if fail { 95 } else { 140 + 13 * i as i64 });
            let end = fmt_time(end_t);
            job["status"] = if fail {
                json!({"startTime": start, "failed": 3, "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": end, "lastTransitionTime": end},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": end, "lastTransitionTime": end}]})
            } else {
                last_ok = Some(end.clone());
                json!({"startTime": start, "completionTime": end, "succeeded": 1, "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": end, "lastTransitionTime": end},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": end, "lastTransitionTime": end}]})
            };
            self.objects.push(job);
        }
        if let Some(last) = times.last() {
            cj["status"] = json!({"lastScheduleTime": fmt_time(*last)});
            if let Some(ok) = last_ok {
                cj["status"]["lastSuccessfulTime"] = json!(ok);
            }
        }
        self.objects.insert(0, cj);
    }
}
