//! kubesim with many deployments: start-up time (seed load and the simulated warm-up), the
//! CPU its controllers use while nothing changes, and one full resync pass (every object looked
//! at, which the background loop does once a minute whatever happens: add resync / 60 s to the
//! idle figure for the long-run average).
//!
//! `cargo bench -p kubesim --bench scale [-- N ...]` (default 200 and 2,000 deployments of two
//! replicas each, in one namespace). A plain `main` (`harness = false`): it prints figures and
//! asserts nothing about time.

use std::time::{Duration, Instant};

use kubesim::{KubeSim, Seed};

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may contain spaces) start at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![200, 2_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:>12} {:>10} {:>8} {:>12} {:>12} {:>12}",
        "deployments", "start", "pods", "idle CPU", "resync", "start CPU"
    );
    for n in sizes {
        rt.block_on(async {
            let t = Instant::now();
            let cpu_before = cpu_time();
            let sim = KubeSim::start(Seed::deployments("bench", n, 2))
                .await
                .expect("kubesim starts");
            let start = t.elapsed();
            // CPU time as well as wall time: on a busy machine the wall time waits for others.
            let start_cpu = match (cpu_before, cpu_time()) {
                (Some(a), Some(b)) => format!("{:.2} s", (b - a).as_secs_f64()),
                _ => "n/a".to_owned(),
            };
            let pods = sim.list("v1", "Pod", Some("bench")).len();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let window = Duration::from_secs(3);
            let before = cpu_time();
            tokio::time::sleep(window).await;
            let idle = match (before, cpu_time()) {
                (Some(a), Some(b)) => {
                    format!(
                        "{:.1} %",
                        (b - a).as_secs_f64() / window.as_secs_f64() * 100.0
                    )
                }
                _ => "n/a".to_owned(),
            };
            let t = Instant::now();
            sim.reconcile();
            let resync = t.elapsed();
            println!(
                "{n:>12} {:>8.2} s {pods:>8} {idle:>12} {:>9.1} ms {start_cpu:>12}",
                start.as_secs_f64(),
                resync.as_secs_f64() * 1e3
            );
        });
    }
}
