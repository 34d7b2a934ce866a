//! The opsbot library behind the `opsbot` binary: chat adapters, engine, store, HTTP server.
//!
//! The binary (`main.rs`) only parses the command line and calls into here, so the end-to-end
//! tests in `tests/` can start the whole bot in-process on port 0.

pub mod chat;
pub mod cli;
pub mod engine;
pub mod store;
pub mod config;
pub mod slack;
pub mod console;
pub mod metrics;
pub mod app;
pub mod server;
