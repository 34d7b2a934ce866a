#![allow(dead_code)]
//! Shared helpers for the kubesim integration tests.

use kubesim::{KubeSim, Seed};

pub async fn sim(seed: Seed) -> KubeSim {
    KubeSim::start(seed).await.expect("kubesim starts")
}

pub fn client(sim: &KubeSim) -> kube::Client {
    let config = kube::Config::new(sim.url().parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}
