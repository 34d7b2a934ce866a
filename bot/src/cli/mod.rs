//! The subcommands of the `opsbot` binary, one module each.

pub mod policy;
