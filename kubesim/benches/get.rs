//! Get latency with 10,000 objects: direct store access, the in-process handler, and HTTP (kube-rs).
//!
//! `cargo bench -p kubesim --bench get` (a plain `main`, `harness = false`); it prints figures and
//! asserts nothing about time.

use std::time::{Duration, Instant};

use kubesim::{KubeSim, Seed};
use serde_json::json;

const NAMESPACES: usize = 10;
const PER_NAMESPACE: usize = 1_000;
const SAMPLES: usize = 5_000;

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let pct = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)];
    println!(
        "{what:<28} n={:<6} p50={:>8.1?} p90={:>8.1?} p99={:>8.1?} max={:>8.1?}",
        d.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        d[d.len() - 1]
    );
}

/// A cheap deterministic sequence of (namespace, pod) picks.
fn picks(n: usize) -> Vec<(usize, usize)> {
    let mut x: u64 = 0x2545F4914F6CDD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (
                (x % NAMESPACES as u64) as usize,
                ((x >> 20) % PER_NAMESPACE as u64) as usize,
            )
        })
        .collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = KubeSim::start(Seed::empty()).await.expect("start");
        sim.clock().pause();
        let t = Instant::now();
        for n in 0..NAMESPACES {
            let ns = format!("bench-{n}");
            sim.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).expect("namespace");
            for i in 0..PER_NAMESPACE {
                sim.put(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("pod-{i}"), "namespace": ns, "labels": {"app": format!("app-{}", i % 20)}},
                    "spec": {"nodeName": "kubesim-node-a", "containers": [{"name": "app", "image": "ghcr.io/opsbot-demo/app:v1"}]},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                }))
                .expect("pod");
            }
        }
        let total = NAMESPACES * PER_NAMESPACE;
        println!("loaded {total} pods in {:.2?} ({} objects stored)", t.elapsed(), sim.list("v1", "Pod", None).len());

        let keys = picks(SAMPLES);
        let mut direct = Vec::with_capacity(SAMPLES);
        for (n, i) in &keys {
            let (ns, name) = (format!("bench-{n}"), format!("pod-{i}"));
            let t = Instant::now();
            let o = sim.get("v1", "Pod", &ns, &name);
            direct.push(t.elapsed());
            assert!(o.is_some());
        }
        report("get, direct (store)", direct);

        let mut handler = Vec::with_capacity(SAMPLES);
        for (n, i) in &keys {
            let path = format!("/api/v1/namespaces/bench-{n}/pods/pod-{i}");
            let t = Instant::now();
            let r = sim.request(http::Method::GET, &path, Vec::new()).await;
            let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.expect("body");
            handler.push(t.elapsed());
            assert!(body.len() > 100);
        }
        report("get, in-process handler", handler);

        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().expect("url"))).expect("client");
        let mut http_times = Vec::with_capacity(SAMPLES);
        for (n, i) in &keys {
            let req = http::Request::get(format!("/api/v1/namespaces/bench-{n}/pods/pod-{i}")).body(Vec::new()).expect("request");
            let t = Instant::now();
            let resp = client.send(req.map(kube::client::Body::from)).await.expect("send");
            let body = resp.into_body().collect_bytes().await.expect("body");
            http_times.push(t.elapsed());
            assert!(body.len() > 100);
        }
        report("get, HTTP (kube-rs client)", http_times);

        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), "bench-3");
        let mut typed = Vec::with_capacity(SAMPLES / 5);
        for (_, i) in keys.iter().take(SAMPLES / 5) {
            let t = Instant::now();
            pods.get(&format!("pod-{i}")).await.expect("get");
            typed.push(t.elapsed());
        }
        report("get, HTTP typed Api<Pod>", typed);

        let mut lists = Vec::new();
        for n in 0..50 {
            let t = Instant::now();
            let l = pods.list(&kube::api::ListParams::default().labels(&format!("app=app-{}", n % 20))).await.expect("list");
            lists.push(t.elapsed());
            assert_eq!(l.items.len(), PER_NAMESPACE / 20);
        }
        report("list 50 of 1000 by label", lists);
    });
}
