//! The subcommands of the `opsbot` binary, one module each.

pub mod audit;
pub mod check_config;
pub mod discord;
pub mod logging;
pub mod policy;
