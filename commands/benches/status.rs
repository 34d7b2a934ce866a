//! `status` of one deployment while its namespace holds 10 / 200 / 2,000 deployments (each with
//! its ReplicaSet, pods and events), through kube-rs against kubesim.
//!
//! `cargo bench -p opsbot-commands --bench status [-- N ...]`. A plain `main` (`harness =
//! false`): it prints figures and asserts nothing about time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubesim::{KubeSim, Seed};
use opsbot_commands::ops::OpOptions;
use opsbot_commands::{Clusters, Command, Op, Operator, ProgressSender, Workload, WorkloadKind};

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 200, 2_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:>12} {:>8} {:>10} {:>10} {:>8}",
        "deployments", "events", "mean", "p90", "runs"
    );
    for n in sizes {
        rt.block_on(async {
            let sim = Arc::new(
                KubeSim::start(Seed::deployments("bench", n, 2))
                    .await
                    .expect("kubesim starts"),
            );
            let events = sim.list("v1", "Event", Some("bench")).len();
            let config = kube::Config::new(sim.url().parse().expect("kubesim url"));
            let client = kube::Client::try_from(config).expect("client");
            let mut clusters = Clusters::new();
            clusters.add("sim", client, "bench");
            let op = Operator::with_options(clusters, OpOptions::default());
            let cmd = Command {
                cluster: None,
                namespace: Some("bench".into()),
                op: Op::Status {
                    workload: Workload {
                        kind: WorkloadKind::Deployment,
                        name: format!("svc-{}", n / 2),
                    },
                },
            };
            op.execute(&cmd, ProgressSender::none())
                .await
                .expect("status answers");
            let mut times = Vec::new();
            let start = Instant::now();
            while times.len() < 5 || (start.elapsed() < Duration::from_secs(2) && times.len() < 500)
            {
                let t = Instant::now();
                op.execute(&cmd, ProgressSender::none())
                    .await
                    .expect("status answers");
                times.push(t.elapsed());
            }
            let runs = times.len();
            let mean = times.iter().sum::<Duration>() / runs as u32;
            times.sort();
            let p90 = times[(runs * 9 / 10).min(runs - 1)];
            println!(
                "{n:>12} {events:>8} {:>7.2} ms {:>7.2} ms {runs:>8}",
                mean.as_secs_f64() * 1e3,
                p90.as_secs_f64() * 1e3
            );
        });
    }
}
