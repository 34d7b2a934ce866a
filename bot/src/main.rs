//! The `opsbot` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use opsbot::cli;
use opsbot::config::Config;

#[derive(Parser)]
#[command(
    name = "opsbot",
    version,
    about = "Guarded Kubernetes operations from chat"
)]
struct Cli {
    /// The configuration file (default: $OPSBOT_CONFIG, else ./opsbot.yaml if it exists).
    #[arg(long, global = true, env = "OPSBOT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot: HTTP server (health, metrics, chat adapters) until SIGTERM.
    Serve,
    /// Chat with opsbot in the terminal, against the configured clusters and database.
    Console {
        /// Who you are (`console:NAME` in policies); switch later by typing `as NAME`.
        #[arg(long = "as", default_value = "me")]
        speaker: String,
    },
    /// Try opsbot with nothing installed: a simulated cluster, SQLite in a temp dir, the example
    /// policy and the console.
    Demo {
        #[arg(long = "as", default_value = "bob")]
        speaker: String,
        /// Keep the demo's database (and an `opsbot.yaml` to read it with) in this directory,
        /// e.g. for `opsbot --config DIR/opsbot.yaml audit verify`.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Work with policy files.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCmd),
    /// Read and check the audit log.
    #[command(subcommand)]
    Audit(cli::audit::AuditCmd),
    /// Validate the configuration and its policy together; print what would run (secrets masked).
    CheckConfig,
    /// Set up the Discord application: register `/ops`, print the install URL.
    #[command(subcommand)]
    Discord(cli::discord::DiscordCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy(cmd) => cli::policy::run(cmd),
        Command::Audit(cmd) => cli::audit::run(cli.config.as_deref(), cmd),
        Command::CheckConfig => cli::check_config::run(cli.config.as_deref()),
        Command::Discord(cmd) => cli::discord::run(cli.config.as_deref(), cmd),
        Command::Serve => run(cli::logging::Mode::Server, async move {
            opsbot::app::serve(load_config(cli.config.as_deref())?).await
        }),
        Command::Console { speaker } => run(cli::logging::Mode::Interactive, async move {
            opsbot::app::console(load_config(cli.config.as_deref())?, &speaker).await
        }),
        Command::Demo { speaker, keep } => run(cli::logging::Mode::Interactive, async move {
            // The demo brings its own configuration; say so rather than ignore one given.
            if let Some(config) = &cli.config {
                anyhow::bail!(
                    "opsbot demo runs on its own built-in configuration and does not read {} \
                     (given with --config or OPSBOT_CONFIG); unset it, or run `opsbot console` \
                     to chat against your configuration",
                    config.display()
                );
            }
            opsbot::app::demo(&speaker, keep.as_deref()).await
        }),
    }
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs an async command on a multi-threaded runtime; errors go to stderr with exit code 1.
fn run(mode: cli::logging::Mode, fut: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    cli::logging::init(mode);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
