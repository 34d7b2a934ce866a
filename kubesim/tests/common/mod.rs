#![allow(dead_code)]
//! Shared helpers for the kubesim integration tests.

use k8s_openapi::api::apps::v1::Deployment;
use kubesim::{KubeSim, Seed};
use serde_json::json;

pub async fn sim(seed: Seed) -> KubeSim {
    KubeSim::start(seed).await.expect("kubesim starts")
}

pub fn client(sim: &KubeSim) -> kube::Client {
    let config = kube::Config::new(sim.url().parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

/// An empty kubesim with a namespace `demo`, its clock paused.
pub async fn empty() -> (KubeSim, kube::Client) {
    let sim = sim(Seed::empty()).await;
    sim.clock().pause();
    sim.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}))
        .unwrap();
    let c = client(&sim);
    (sim, c)
}

pub fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }))
    .unwrap()
}

/// The API status code of a kube error.
pub fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}
