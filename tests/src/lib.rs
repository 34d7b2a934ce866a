//! Shared helpers for the end-to-end tests.
pub mod alertmanager;
pub mod bot;
pub mod pipeline;
pub mod slack_fake;
