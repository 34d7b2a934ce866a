//! The subcommands of the `opsbot` binary, one module each.

pub mod policy;
pub mod logging;
pub mod audit;
pub mod check_config;
