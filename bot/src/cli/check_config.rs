//! `opsbot check-config`: validates the configuration and the policy it names, together, and
//! prints what opsbot would run with (secrets masked).
//!
//! Exit codes: 0 when both are valid, 2 with every error found otherwise.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::engine::PolicyFile;

const EXIT_ERRORS: u8 = 2;

pub fn run(config: Option<&Path>) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            let n = errors.0.len();
            eprintln!("configuration: {n} error{}", if n == 1 { "" } else { "s" });
            return ExitCode::from(EXIT_ERRORS);
        }
    };
    print!("{}", config.summary());
    // The same checks `opsbot serve` makes at start-up for the chat adapters.
    let slack = crate::slack::SlackConfig::from_config(&config.slack).map(|s| s.validate());
    if let Some(Err(e)) = slack {
        eprintln!("slack: {e}");
        return ExitCode::from(EXIT_ERRORS);
    }
    let discord = crate::discord::DiscordConfig::from_config(&config.discord).map(|d| d.validate());
    if let Some(Err(e)) = discord {
        eprintln!("discord: {e}");
        return ExitCode::from(EXIT_ERRORS);
    }
    // Loaded as `serve` loads it, so both say the same about a missing or broken file.
    match PolicyFile::load_with_default_ttl(&config.policy, config.approvals.default_ttl) {
        Ok(policy) => {
            println!("policy check:    {}", policy.current().summary());
            println!("OK");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            let n = errors.0.len();
            eprintln!(
                "policy {}: {n} error{}",
                config.policy.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_ERRORS)
        }
    }
}
