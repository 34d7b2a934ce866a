//! The incidents' clock: real time, optionally moved ahead (tests) or sped up (the demo), so
//! escalations that take minutes can be watched in seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// Cheap to clone; clones share the offset.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Added to real time, in milliseconds ([`Clock::advance`]).
    offset_ms: AtomicI64,
    /// Real time runs this many times faster from `start` on.
    speed: u32,
    start: (Instant, Timestamp),
}

impl Default for Clock {
    fn default() -> Self {
        Clock::sped_up(1)
    }
}

impl Clock {
    /// Real time.
    pub fn real() -> Clock {
        Clock::default()
    }

    /// Time that runs `speed` times faster than real time from now on.
    pub fn sped_up(speed: u32) -> Clock {
        Clock {
            inner: Arc::new(Inner {
                offset_ms: AtomicI64::new(0),
                speed: speed.max(1),
                start: (Instant::now(), Timestamp::now()),
            }),
        }
    }

    pub fn now(&self) -> Timestamp {
        let (instant, at) = self.inner.start;
        let elapsed = instant.elapsed().saturating_mul(self.inner.speed);
        let offset = SignedDuration::from_millis(self.inner.offset_ms.load(Ordering::Relaxed));
        let elapsed = SignedDuration::try_from(elapsed).unwrap_or(SignedDuration::MAX);
        at.saturating_add(elapsed)
            .and_then(|t| t.saturating_add(offset))
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves the clock ahead by `by` (tests: an escalation's delay passes at once).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.inner.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// How much real time `d` of this clock's time takes.
    pub fn real_duration(&self, d: Duration) -> Duration {
        d / self.inner.speed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_ahead() {
        let clock = Clock::real();
        let before = clock.now();
        clock.advance(Duration::from_secs(600));
        let moved = clock.now().duration_since(before).as_secs();
        assert!((600..605).contains(&moved), "{moved}");
        // Clones share the offset.
        let other = clock.clone();
        other.advance(Duration::from_secs(60));
        assert!(clock.now().duration_since(before).as_secs() >= 660);
    }

    #[test]
    fn a_sped_up_clock_runs_faster() {
        let clock = Clock::sped_up(60);
        assert_eq!(
            clock.real_duration(Duration::from_secs(300)),
            Duration::from_secs(5)
        );
    }
}
