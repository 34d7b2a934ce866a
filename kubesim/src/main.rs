//! `kubesim --port 0 --seed FILE --kubeconfig OUT`

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use kubesim::{KubeSim, Options, Seed};

/// An in-memory Kubernetes API server with simulated controllers.
#[derive(Parser, Debug)]
#[command(name = "kubesim", version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Seed file (multi-document YAML of Kubernetes objects); the built-in default seed if absent.
    #[arg(long)]
    seed: Option<std::path::PathBuf>,
    /// Start with nothing but the default namespaces.
    #[arg(long, conflicts_with = "seed")]
    empty: bool,
    /// Write a kubeconfig (context "kubesim") here.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Simulated clock speed (1.0 = real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let seed = match (&args.seed, args.empty) {
        (Some(p), _) => {
            Seed::from_file(p).with_context(|| format!("reading seed {}", p.display()))?
        }
        (None, true) => Seed::empty(),
        (None, false) => Seed::default_seed(),
    };
    let opts = Options {
        addr: SocketAddr::new(args.host, args.port),
        ..Options::default()
    };
    let sim = KubeSim::start_with(seed, opts)
        .await
        .context("starting kubesim")?;
    sim.clock().set_speed(args.speed);
    if let Some(path) = &args.kubeconfig {
        std::fs::write(path, sim.kubeconfig_yaml())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", sim.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}
