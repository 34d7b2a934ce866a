//! Requests refused at the door (a forged signature, a stale timestamp, an oversized or broken
//! body, wrong webhook credentials, a replay) come from whoever can reach the endpoints, at
//! whatever rate they like. Each one counts in `opsbot_rejections_total`; the audit log and the
//! log get the first [`PER_MINUTE`] of each platform and kind a minute one by one, and the rest
//! as one summary record per platform and kind at the engine's next sweep. The records grow
//! with time, not with an attacker's rate.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};

use governor::{DefaultKeyedRateLimiter, Quota};
use jiff::Timestamp;

use super::RejectionKind;

/// Rejections of one platform and kind recorded one by one, a minute (all of them at once
/// after a quiet minute).
pub(super) const PER_MINUTE: NonZeroU32 = NonZeroU32::new(10).unwrap();

type Key = (String, RejectionKind);

pub(super) struct RejectionLog {
    quota: DefaultKeyedRateLimiter<Key>,
    held: Mutex<BTreeMap<Key, Held>>,
}

/// Rejections not recorded one by one, since the last summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    pub count: u64,
    /// When the first of them came.
    pub since: Timestamp,
}

impl Default for RejectionLog {
    fn default() -> Self {
        RejectionLog {
            quota: governor::RateLimiter::keyed(Quota::per_minute(PER_MINUTE)),
            held: Mutex::default(),
        }
    }
}

impl RejectionLog {
    /// Whether this rejection is recorded on its own; when not, it is counted for the next
    /// summary.
    pub(super) fn admit(&self, platform: &str, kind: RejectionKind) -> bool {
        let key = (platform.to_owned(), kind);
        if self.quota.check_key(&key).is_ok() {
            return true;
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.entry(key)
            .or_insert(Held {
                count: 0,
                since: Timestamp::now(),
            })
            .count += 1;
        false
    }

    /// Holds `held` again (its summary could not be written), added to what came since.
    pub(super) fn hold_again(&self, platform: String, kind: RejectionKind, held: Held) {
        let mut all = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = all.entry((platform, kind)).or_insert(Held {
            count: 0,
            since: held.since,
        });
        entry.count += held.count;
        entry.since = entry.since.min(held.since);
    }

    /// The rejections held back since the last call, per platform and kind; and forgets
    /// quotas that are full again.
    pub(super) fn take_held(&self) -> Vec<(String, RejectionKind, Held)> {
        self.quota.retain_recent();
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        held.into_iter()
            .map(|((platform, kind), h)| (platform, kind, h))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_recorded_up_to_the_quota_then_held_for_a_summary() {
        let log = RejectionLog::default();
        let admitted = (0..1000)
            .filter(|_| log.admit("slack", RejectionKind::BadSignature))
            .count();
        assert_eq!(admitted, PER_MINUTE.get() as usize);
        // Another kind, and another platform, have quotas of their own.
        assert!(log.admit("slack", RejectionKind::TooLarge));
        assert!(log.admit("discord", RejectionKind::BadSignature));

        let held = log.take_held();
        assert_eq!(held.len(), 1, "{held:?}");
        let (platform, kind, h) = &held[0];
        assert_eq!(
            (platform.as_str(), *kind),
            ("slack", RejectionKind::BadSignature)
        );
        assert_eq!(h.count, 1000 - PER_MINUTE.get() as u64);
        // Told once.
        assert!(log.take_held().is_empty());
        // Unless the summary could not be written: then told with the next ones.
        log.hold_again(platform.clone(), *kind, *h);
        assert!(!log.admit("slack", RejectionKind::BadSignature));
        let again = log.take_held();
        assert_eq!(again[0].2.count, h.count + 1);
        assert_eq!(again[0].2.since, h.since);
    }
}
