//! Shared helpers for the end-to-end tests.
pub mod alertmanager;
pub mod bench;
pub mod bot;
pub mod discord_fake;
pub mod pipeline;
pub mod slack_fake;
