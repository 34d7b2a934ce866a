//! What the audit tests share: the canonical form of a record, as `bot/src/store/audit.rs`
//! hashes it, to forge records as someone with database access (and no key) could.

use opsbot::store::AuditRecord;
use sha2::{Digest, Sha256};

/// The canonical form of `r` under `tag` (`opsbot-audit-v1`, `opsbot-audit-v2`), with `time_ms`
/// and `prev_hash` in place of its own.
pub fn canonical(tag: &str, r: &AuditRecord, time_ms: i64, prev_hash: &str) -> String {
    let e = &r.entry;
    serde_json::json!([
        tag,
        r.id,
        time_ms,
        e.kind.as_str(),
        e.platform,
        e.channel,
        e.actor,
        e.text,
        e.command,
        e.rule,
        e.outcome,
        e.detail.to_string(),
        e.duration_ms,
        e.approval_id,
        prev_hash,
    ])
    .to_string()
}

/// Plain SHA-256 (hex) of [`canonical`]: a hash anyone can compute.
pub fn unkeyed_hash(tag: &str, r: &AuditRecord, time_ms: i64, prev_hash: &str) -> String {
    hex::encode(Sha256::digest(canonical(tag, r, time_ms, prev_hash)))
}
