//! The `kubesim` binary: `--port 0 --seed FILE --kubeconfig OUT`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary and return (process, URL printed on stdout).
fn start(args: &[&str]) -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kubesim");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read url");
    (Kill(child), line.trim().to_string())
}

const SEED: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: List
items:
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: nightly, namespace: shop}
  spec:
    schedule: "0 3 * * *"
    jobTemplate:
      spec:
        template:
          spec:
            restartPolicy: Never
            containers: [{name: job, image: busybox}]
"#;

#[tokio::test]
async fn binary_serves_a_seed_file_and_writes_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let (_proc, url) = start(&[
        "--port",
        "0",
        "--seed",
        seed.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        kc.contains(&url) && kc.contains("current-context: kubesim"),
        "{kc}"
    );

    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&kc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let d = Api::<Deployment>::namespaced(client.clone(), "shop")
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        d.status.unwrap().ready_replicas,
        Some(2),
        "the seed is warmed up before serving"
    );
    let cj = Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(client, "shop")
        .get("nightly")
        .await
        .unwrap();
    assert_eq!(cj.spec.unwrap().schedule, "0 3 * * *");
}

#[tokio::test]
async fn binary_defaults_to_the_default_seed() {
    let (_proc, url) = start(&["--port", "0"]);
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let d = Api::<Deployment>::namespaced(client, "production")
        .get("conea-api")
        .await
        .unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("conea-api"));
}

#[test]
fn bad_seeds_are_errors() {
    assert!(
        kubesim::Seed::from_yaml("kind: Deployment\nmetadata: {name: x}\n").is_err(),
        "no apiVersion"
    );
    assert!(kubesim::Seed::from_yaml(": : :\n- [").is_err());
    let out = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["--seed", "/nonexistent/seed.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("seed"));
}

#[tokio::test]
async fn control_endpoints() {
    let sim = kubesim::KubeSim::start(kubesim::Seed::empty())
        .await
        .unwrap();
    sim.clock().pause();
    let before = sim.clock().now();
    let call = |method: http::Method, path: &'static str| sim.request(method, path, Vec::new());
    let r = call(http::Method::POST, "/kubesim/clock/advance?seconds=90").await;
    assert_eq!(r.status(), 200);
    assert_eq!(sim.clock().now().duration_since(before).as_secs(), 90);
    assert_eq!(
        call(
            http::Method::POST,
            "/kubesim/faults/forbid?verb=list&resource=pods"
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        call(http::Method::GET, "/api/v1/namespaces/default/pods")
            .await
            .status(),
        403
    );
    assert_eq!(
        call(http::Method::POST, "/kubesim/faults/clear")
            .await
            .status(),
        200
    );
    assert_eq!(
        call(http::Method::GET, "/api/v1/namespaces/default/pods")
            .await
            .status(),
        200
    );
    assert_eq!(
        call(
            http::Method::POST,
            "/kubesim/faults/fail-next?path=/pods&count=1&code=429"
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        call(http::Method::GET, "/api/v1/namespaces/default/pods")
            .await
            .status(),
        429
    );
    assert_eq!(
        call(
            http::Method::POST,
            "/kubesim/faults/fail-next?path=/pods&count=1&code=418"
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        call(http::Method::POST, "/kubesim/clock/advance?seconds=-5")
            .await
            .status(),
        400
    );
    assert_eq!(
        call(http::Method::POST, "/kubesim/nope").await.status(),
        404
    );
    assert_eq!(
        call(http::Method::POST, "/kubesim/clock/speed?factor=2")
            .await
            .status(),
        200
    );
    assert_eq!(sim.clock().speed(), 2.0);
}
