//! Shared helpers for the end-to-end tests.
pub mod slack_fake;
pub mod bot;
