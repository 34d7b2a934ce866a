//! The opsbot library behind the `opsbot` binary: chat adapters, engine, store, HTTP server.
//!
//! The binary (`main.rs`) only parses the command line and calls into here, so the end-to-end
//! tests in `tests/` can start the whole bot in-process on port 0.

pub mod alerts;
pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod console;
pub mod discord;
pub mod engine;
pub mod inbound;
pub mod incidents;
#[cfg(test)]
pub(crate) mod log_capture;
pub mod metrics;
pub mod pacing;
pub mod server;
pub mod slack;
pub mod store;
