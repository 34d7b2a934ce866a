//! Requests refused as busy, logged at most once a second. Under an overload every refused
//! request would otherwise be a WARN line of its own, thousands a second; the metric
//! `opsbot_requests_total{decision="busy"}` still counts each one.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a line at most.
const EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct BusyLog(Mutex<Option<Window>>);

/// Since the last line: when it was written, and how many refusals it has not told yet.
struct Window {
    logged: Instant,
    untold: u64,
}

impl BusyLog {
    /// Counts one refusal. The first after a quiet second is logged at once; the ones within a
    /// second of a line are told by the next line, with their count.
    pub(super) fn refused(&self, platform: &str) {
        let now = Instant::now();
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = window.as_mut()
            && now.duration_since(w.logged) < EVERY
        {
            w.untold += 1;
            return;
        }
        let refused = window.take().map_or(0, |w| w.untold) + 1;
        tracing::warn!(
            platform,
            refused,
            "busy: requests refused (nothing run) since the last such line"
        );
        *window = Some(Window {
            logged: now,
            untold: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_one_line_with_its_count() {
        let log = BusyLog::default();
        let ((), logs) = crate::log_capture::capture(|| {
            for _ in 0..1000 {
                log.refused("slack");
            }
        });
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains("busy")).collect();
        assert_eq!(lines.len(), 1, "{logs}");
        assert!(lines[0].contains("refused=1"), "{logs}");

        // A second later, the next refusal tells the 999 held back, and itself.
        log.0.lock().unwrap().as_mut().unwrap().logged -= EVERY;
        let ((), logs) = crate::log_capture::capture(|| log.refused("discord"));
        assert!(logs.contains("refused=1000"), "{logs}");
        assert!(logs.contains("platform=\"discord\""), "{logs}");
    }
}
