//! The pipeline every chat platform uses: rate limit → parse → policy → execute / approval / deny,
//! with every step audited. (Interface laid down first; the coordinator fills it in.)

use std::sync::Arc;

use crate::chat::{ApprovalClick, ChatSink, Invocation, Platform};

/// Why an inbound request was refused before it reached the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    BadSignature,
    StaleTimestamp,
    TooLarge,
    Malformed,
    Replay,
}

impl RejectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::BadSignature => "bad_signature",
            RejectionKind::StaleTimestamp => "stale_timestamp",
            RejectionKind::TooLarge => "too_large",
            RejectionKind::Malformed => "malformed",
            RejectionKind::Replay => "replay",
        }
    }
}

/// The engine, cheap to clone and share between adapters.
#[derive(Clone)]
pub struct Engine {
    _inner: Arc<()>,
}

impl Engine {
    /// Registers how to talk back to `platform`. Replies for invocations from that platform, and
    /// updates of approval cards posted there, go through `sink`.
    pub fn register_sink(&self, _platform: Platform, _sink: Arc<dyn ChatSink>) {
        unimplemented!("engine work in progress")
    }

    /// Runs one invocation to the end: every reply (result, approval card, denial, error,
    /// progress edits) is posted through the platform's sink. Never fails: problems become replies
    /// and audit records. Repeated deliveries (same `delivery_id`) are dropped.
    pub async fn handle(&self, _invocation: Invocation) {
        unimplemented!("engine work in progress")
    }

    /// An Approve / Deny click; updates the approval card through the platform's sink.
    pub async fn click(&self, _click: ApprovalClick) {
        unimplemented!("engine work in progress")
    }

    /// Records an inbound request refused before parsing (bad signature, stale, too large, …).
    pub async fn reject(&self, _platform: Platform, _kind: RejectionKind, _detail: &str) {
        unimplemented!("engine work in progress")
    }
}
