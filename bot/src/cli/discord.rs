//! `opsbot discord register|invite-url`: set up the Discord application from the configuration.
//!
//! `register` bulk-overwrites the application's commands with `/ops` as generated from the
//! command declarations (in one guild with `--guild`, where changes show at once; globally
//! otherwise) and prints what changed; running it again changes nothing. `invite-url` prints
//! the URL that installs the bot with the `bot applications.commands` scopes and only the
//! permissions opsbot uses.
//!
//! Exit codes: 0 on success, 2 when the configuration is unusable or Discord refuses.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::discord::commands::{invite_url, register};
use crate::discord::rest::DiscordRest;
use crate::discord::{DiscordConfig, is_snowflake};

const EXIT_ERRORS: u8 = 2;

#[derive(clap::Subcommand)]
pub enum DiscordCmd {
    /// Registers `/ops` (bulk overwrite, idempotent) and prints what changed.
    Register {
        /// Register in this guild only (changes show at once) instead of globally.
        #[arg(long, value_name = "ID")]
        guild: Option<String>,
    },
    /// Prints the URL that installs the bot in a server.
    InviteUrl,
}

pub fn run(config: Option<&Path>, cmd: DiscordCmd) -> ExitCode {
    match execute(config, cmd) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERRORS)
        }
    }
}

/// What the command prints, line by line.
pub fn execute(config: Option<&Path>, cmd: DiscordCmd) -> anyhow::Result<Vec<String>> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let discord = DiscordConfig::from_config(&config.discord)
        .ok_or_else(|| anyhow::anyhow!("Discord is not configured (discord.token)"))?;
    if !is_snowflake(&discord.application_id) {
        anyhow::bail!("Discord is configured without discord.application_id");
    }
    match cmd {
        DiscordCmd::InviteUrl => Ok(vec![invite_url(&discord.application_id)]),
        DiscordCmd::Register { guild } => {
            if let Some(g) = &guild
                && !is_snowflake(g)
            {
                anyhow::bail!("--guild {g:?} is not a guild id (a number)");
            }
            if discord.token.trim().is_empty() {
                anyhow::bail!("Discord is configured without discord.token");
            }
            let rest = DiscordRest::new(&discord.api_url, &discord.token, discord.retry.clone());
            let runtime = tokio::runtime::Runtime::new()?;
            let changes =
                runtime.block_on(register(&rest, &discord.application_id, guild.as_deref()))?;
            let scope = guild.map_or("globally".to_owned(), |g| format!("in guild {g}"));
            Ok(changes.iter().map(|c| format!("{c} ({scope})")).collect())
        }
    }
}
