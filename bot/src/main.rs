//! The `opsbot` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use opsbot::cli;

#[derive(Parser)]
#[command(name = "opsbot", version, about = "Guarded Kubernetes operations from chat")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with policy files.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy(cmd) => cli::policy::run(cmd),
    }
}
