//! The real kubectl against a running kubesim.
//!
//! Uses `$KUBECTL` or `/usr/bin/kubectl`.

mod common;

use std::path::PathBuf;

use kubesim::{KubeSim, Seed};

struct Kubectl {
    sim: KubeSim,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    async fn start() -> Kubectl {
        let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
        // Rollouts finish in a couple of real seconds.
        sim.clock().set_speed(5.0);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig_yaml()).unwrap();
        Kubectl {
            sim,
            _dir: dir,
            kubeconfig,
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
        let out = tokio::process::Command::new(&bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self._dir.path())
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {bin}: {e}"));
        let o = Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        };
        eprintln!("$ kubectl {}\n{}{}", args.join(" "), o.stdout, o.stderr);
        o
    }

    /// Run, expect success, return stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {args:?} failed: {}", o.stderr);
        o.stdout
    }

    /// Run, expect kubectl's usual NotFound error.
    async fn not_found(&self, args: &[&str], what: &str) {
        let o = self.run(args).await;
        assert!(!o.ok, "kubectl {args:?} should fail");
        // kubectl words it per command: "Error from server (NotFound): ...", `logs` says
        // "error: error from server (NotFound): ... in namespace", `scale` says "no objects passed to scale ...".
        let want = format!("{what} not found");
        assert!(
            o.stderr.contains(&want),
            "kubectl {args:?}: wanted {want:?} in {:?}",
            o.stderr
        );
        if args[0] != "scale" {
            assert!(
                o.stderr
                    .to_lowercase()
                    .contains("error from server (notfound): "),
                "kubectl {args:?}: {:?}",
                o.stderr
            );
        }
    }
}

fn image(sim: &KubeSim, ns: &str, name: &str) -> String {
    sim.get("apps/v1", "Deployment", ns, name).unwrap()["spec"]["template"]["spec"]["containers"][0]
        ["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_scale_patch_logs_events_jobs() {
    let k = Kubectl::start().await;
    let out = k
        .ok(&["get", "deploy,sts,cronjobs,jobs", "-n", "gc-storage"])
        .await;
    for want in [
        "deployment.apps/api",
        "3/3",
        "statefulset.apps/postgres-replica",
        "cronjob.batch/postgres-backup",
        "0 2 * * *",
        "job.batch/postgres-backup-",
        "Failed",
        "Complete",
    ] {
        assert!(out.contains(want), "{want:?} missing in\n{out}");
    }
    let out = k.ok(&["get", "pods", "-n", "api"]).await;
    assert!(
        out.contains("Running") && out.contains("rust-webapi-"),
        "{out}"
    );

    assert!(
        k.ok(&[
            "scale",
            "deployment/api",
            "--replicas=5",
            "-n",
            "gc-storage"
        ])
        .await
        .contains("deployment.apps/api scaled")
    );
    assert_eq!(
        k.sim
            .get("apps/v1", "Deployment", "gc-storage", "api")
            .unwrap()["spec"]["replicas"],
        5
    );
    assert!(
        k.ok(&[
            "scale",
            "statefulset/postgres-replica",
            "--replicas=2",
            "-n",
            "gc-storage"
        ])
        .await
        .contains("statefulset.apps/postgres-replica scaled")
    );
    assert_eq!(
        k.sim
            .get("apps/v1", "StatefulSet", "gc-storage", "postgres-replica")
            .unwrap()["spec"]["replicas"],
        2
    );

    let out = k
        .ok(&[
            "patch",
            "hpa",
            "api-hpa",
            "-n",
            "gc-storage",
            "-p",
            r#"{"spec":{"minReplicas":5,"maxReplicas":5}}"#,
        ])
        .await;
    assert!(
        out.contains("horizontalpodautoscaler.autoscaling/api-hpa patched"),
        "{out}"
    );
    let hpa = k
        .sim
        .get(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "gc-storage",
            "api-hpa",
        )
        .unwrap();
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].as_i64(),
            hpa["spec"]["maxReplicas"].as_i64()
        ),
        (Some(5), Some(5))
    );

    let out = k
        .ok(&["logs", "deploy/conea-api", "-n", "production", "--tail=20"])
        .await;
    assert_eq!(out.lines().count(), 20, "{out}");
    assert!(
        out.lines()
            .all(|l| l.contains("INFO") || l.contains("WARN") || l.contains("ERROR"))
    );
    let out = k
        .ok(&["logs", "deploy/conea-api", "-n", "production", "--since=1h"])
        .await;
    assert!(out.lines().count() > 20);

    let out = k
        .ok(&[
            "get",
            "events",
            "-n",
            "gc-storage",
            "--sort-by=.lastTimestamp",
        ])
        .await;
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("LAST SEEN") && header.contains("REASON"),
        "{out}"
    );
    // Sorted oldest first: the seed's scale-up, then the scaling done above, with the
    // controllers' reasons.
    let at = |what: &str| {
        out.lines()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what:?} missing in\n{out}"))
    };
    let first = at("from 0 to 3");
    let scaled = at("from 3 to 5");
    let sts_down = at("delete Pod postgres-replica-2 in StatefulSet postgres-replica");
    assert!(first < scaled && first < sts_down, "{out}");
    assert!(
        out.lines()
            .nth(scaled)
            .unwrap()
            .contains("ScalingReplicaSet")
            && out
                .lines()
                .nth(sts_down)
                .unwrap()
                .contains("SuccessfulDelete"),
        "{out}"
    );

    let out = k
        .ok(&[
            "create",
            "job",
            "--from=cronjob/postgres-backup",
            "manual-1",
            "-n",
            "gc-storage",
        ])
        .await;
    assert!(out.contains("job.batch/manual-1 created"), "{out}");
    let job = k
        .sim
        .get("batch/v1", "Job", "gc-storage", "manual-1")
        .unwrap();
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["name"],
        "postgres-backup"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "postgres:16-alpine"
    );
    let out = k.ok(&["get", "jobs", "-n", "gc-storage"]).await;
    assert!(out.contains("manual-1"), "{out}");
    // kubectl apply (client-side, then server-side), with kubectl's default validation.
    let manifest = k._dir.path().join("web.yaml");
    let yaml = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: production}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: 'nginx:1.27'}}]}}\n"
        )
    };
    std::fs::write(&manifest, yaml(1)).unwrap();
    let path = manifest.to_str().unwrap();
    assert!(
        k.ok(&["apply", "-f", path])
            .await
            .contains("deployment.apps/web created")
    );
    std::fs::write(&manifest, yaml(2)).unwrap();
    assert!(
        k.ok(&["apply", "-f", path])
            .await
            .contains("deployment.apps/web configured")
    );
    assert_eq!(
        k.sim
            .get("apps/v1", "Deployment", "production", "web")
            .unwrap()["spec"]["replicas"],
        2
    );
    assert!(
        k.ok(&["apply", "--server-side", "-f", path])
            .await
            .contains("serverside-applied")
    );
    let out = k
        .ok(&["get", "cronjobs", "-n", "shiojiri-rainbow-seeker"])
        .await;
    assert!(
        out.contains("ml-model-retrain") && out.contains("database-backup"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollouts() {
    let k = Kubectl::start().await;
    let ns = "shiojiri-rainbow-seeker";
    assert!(
        k.ok(&["rollout", "restart", "deployment/backend", "-n", ns])
            .await
            .contains("deployment.apps/backend restarted")
    );
    let d = k.sim.get("apps/v1", "Deployment", ns, "backend").unwrap();
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    let out = k
        .ok(&[
            "rollout",
            "status",
            "deployment/backend",
            "-n",
            ns,
            "--timeout=60s",
        ])
        .await;
    assert!(
        out.contains("deployment \"backend\" successfully rolled out"),
        "{out}"
    );

    let out = k
        .ok(&["rollout", "history", "deployment/rust-webapi", "-n", "api"])
        .await;
    for rev in ["1 ", "2 ", "3 "] {
        assert!(
            out.lines().any(|l| l.starts_with(rev)),
            "revision {rev} in\n{out}"
        );
    }
    assert!(out.contains("rust-webapi:v1.4.2"));
    assert_eq!(
        image(&k.sim, "api", "rust-webapi"),
        "ghcr.io/opsbot-demo/rust-webapi:v1.4.2"
    );
    assert!(
        k.ok(&["rollout", "undo", "deployment/rust-webapi", "-n", "api"])
            .await
            .contains("deployment.apps/rust-webapi rolled back")
    );
    assert_eq!(
        image(&k.sim, "api", "rust-webapi"),
        "ghcr.io/opsbot-demo/rust-webapi:v1.4.1"
    );
    let out = k
        .ok(&[
            "rollout",
            "status",
            "deployment/rust-webapi",
            "-n",
            "api",
            "--timeout=60s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    // The undo reused revision 2's ReplicaSet, which is now revision 4.
    let out = k
        .ok(&["rollout", "history", "deployment/rust-webapi", "-n", "api"])
        .await;
    assert!(
        out.lines().any(|l| l.starts_with("4 ")) && !out.lines().any(|l| l.starts_with("2 ")),
        "{out}"
    );

    assert!(
        k.ok(&[
            "rollout",
            "undo",
            "deployment/rust-webapi",
            "-n",
            "api",
            "--to-revision=1"
        ])
        .await
        .contains("rolled back")
    );
    assert_eq!(
        image(&k.sim, "api", "rust-webapi"),
        "ghcr.io/opsbot-demo/rust-webapi:v1.4.0"
    );
    let out = k
        .ok(&[
            "rollout",
            "status",
            "deployment/rust-webapi",
            "-n",
            "api",
            "--timeout=60s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let o = k
        .run(&[
            "rollout",
            "undo",
            "deployment/rust-webapi",
            "-n",
            "api",
            "--to-revision=42",
        ])
        .await;
    assert!(
        !o.ok && o.stderr.contains("unable to find specified revision"),
        "{}",
        o.stderr
    );

    // A stalled rollout: rollout status reports the deadline.
    k.sim.faults().stall_rollout("ingress", "envoy");
    let patch = r#"{"spec":{"progressDeadlineSeconds":10}}"#;
    k.ok(&["patch", "deployment", "envoy", "-n", "ingress", "-p", patch])
        .await;
    k.ok(&["rollout", "restart", "deployment/envoy", "-n", "ingress"])
        .await;
    let o = k
        .run(&[
            "rollout",
            "status",
            "deployment/envoy",
            "-n",
            "ingress",
            "--timeout=60s",
        ])
        .await;
    assert!(
        !o.ok && o.stderr.contains("exceeded its progress deadline"),
        "{}",
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_not_found_errors() {
    let k = Kubectl::start().await;
    let ns = ["-n", "gc-storage"];
    let with =
        |args: &[&'static str]| -> Vec<&'static str> { args.iter().copied().chain(ns).collect() };
    let deploy = "deployments.apps \"nope\"";
    k.not_found(&with(&["get", "deploy", "nope"]), deploy).await;
    k.not_found(&with(&["scale", "deployment/nope", "--replicas=5"]), deploy)
        .await;
    k.not_found(
        &with(&["scale", "statefulset/nope", "--replicas=2"]),
        "statefulsets.apps \"nope\"",
    )
    .await;
    k.not_found(&with(&["rollout", "restart", "deployment/nope"]), deploy)
        .await;
    k.not_found(
        &with(&["rollout", "status", "deployment/nope", "--timeout=60s"]),
        deploy,
    )
    .await;
    k.not_found(&with(&["rollout", "history", "deployment/nope"]), deploy)
        .await;
    k.not_found(&with(&["rollout", "undo", "deployment/nope"]), deploy)
        .await;
    k.not_found(
        &with(&["rollout", "undo", "deployment/nope", "--to-revision=1"]),
        deploy,
    )
    .await;
    k.not_found(&with(&["logs", "deploy/nope", "--tail=20"]), deploy)
        .await;
    k.not_found(
        &with(&["create", "job", "--from=cronjob/nope", "manual-1"]),
        "cronjobs.batch \"nope\"",
    )
    .await;
    k.not_found(
        &with(&[
            "patch",
            "hpa",
            "nope",
            "-p",
            r#"{"spec":{"minReplicas":5,"maxReplicas":5}}"#,
        ]),
        "horizontalpodautoscalers.autoscaling \"nope\"",
    )
    .await;
    k.not_found(
        &with(&["get", "cronjob", "nope"]),
        "cronjobs.batch \"nope\"",
    )
    .await;
    k.not_found(&with(&["get", "job", "nope"]), "jobs.batch \"nope\"")
        .await;
    k.not_found(&with(&["get", "sts", "nope"]), "statefulsets.apps \"nope\"")
        .await;
    k.not_found(&with(&["get", "pod", "nope"]), "pods \"nope\"")
        .await;
    k.not_found(&with(&["logs", "nope"]), "pods \"nope\"").await;
    // kubectl looks the namespace up after a 404 and reports that instead.
    k.not_found(
        &["get", "deploy", "x", "-n", "no-such-ns"],
        "namespaces \"no-such-ns\"",
    )
    .await;
    // An empty namespace is not an error.
    let o = k
        .run(&["get", "events", "-n", "default", "--sort-by=.lastTimestamp"])
        .await;
    assert!(o.ok, "{}", o.stderr);
    // Forbidden like RBAC.
    k.sim.faults().forbid("patch", "deployments/scale");
    let o = k
        .run(&[
            "scale",
            "deployment/api",
            "--replicas=1",
            "-n",
            "gc-storage",
        ])
        .await;
    assert!(
        !o.ok && o.stderr.contains("Error from server (Forbidden)"),
        "{}",
        o.stderr
    );
}
