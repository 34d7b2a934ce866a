//! `opsbot policy check|explain`. (Stub laid down by the workspace skeleton.)

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// Validates a policy file.
    Check,
}

pub fn run(_cmd: PolicyCmd) -> ExitCode {
    ExitCode::FAILURE
}
