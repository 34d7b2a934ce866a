//! The simulated clock every controller reads.
//!
//! Simulated time runs at `speed` times real time from a base point; tests can jump it forward with
//! [`SimClock::advance`] or freeze it with [`SimClock::pause`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// The fastest the clock runs: a million simulated seconds (11.5 days) per real second, so
/// simulated time stays within what timestamps can hold.
pub const MAX_SPEED: f64 = 1e6;

#[derive(Debug)]
struct State {
    base_sim: Timestamp,
    base_real: Instant,
    speed: f64,
}

/// A controllable clock: `now()` = base + (real time elapsed × speed) + every `advance`.
#[derive(Debug)]
pub struct SimClock {
    state: Mutex<State>,
    pub(crate) changed: tokio::sync::Notify,
}

impl SimClock {
    /// A clock starting at `start`, running at real speed.
    pub fn new(start: Timestamp) -> Self {
        SimClock {
            state: Mutex::new(State {
                base_sim: start,
                base_real: Instant::now(),
                speed: 1.0,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_locked(s: &State) -> Timestamp {
        let real = s.base_real.elapsed().as_secs_f64() * s.speed;
        SignedDuration::try_from_secs_f64(real)
            .ok()
            .and_then(|d| s.base_sim.checked_add(d).ok())
            .unwrap_or(s.base_sim)
    }

    /// The current simulated time.
    pub fn now(&self) -> Timestamp {
        Self::now_locked(&self.lock())
    }

    /// Jump simulated time forward. Controllers notice at once.
    ///
    /// To let controllers act step by step across a long span use [`crate::KubeSim::advance`].
    pub fn advance(&self, by: Duration) {
        {
            let mut s = self.lock();
            let now = Self::now_locked(&s);
            s.base_sim = now
                .checked_add(SignedDuration::try_from(by).unwrap_or_default())
                .unwrap_or(now);
            s.base_real = Instant::now();
        }
        self.changed.notify_waiters();
    }

    /// Set how fast simulated time runs relative to real time (1.0 = real time, 0.0 = frozen).
    /// Capped at [`MAX_SPEED`].
    pub fn set_speed(&self, speed: f64) {
        {
            let mut s = self.lock();
            let now = Self::now_locked(&s);
            s.base_sim = now;
            s.base_real = Instant::now();
            s.speed = if speed.is_finite() && speed >= 0.0 {
                speed.min(MAX_SPEED)
            } else {
                1.0
            };
        }
        self.changed.notify_waiters();
    }

    /// The current speed factor.
    pub fn speed(&self) -> f64 {
        self.lock().speed
    }

    /// Freeze simulated time (speed 0); only `advance` moves it.
    pub fn pause(&self) {
        self.set_speed(0.0);
    }

    /// Run at real speed again.
    pub fn resume(&self) {
        self.set_speed(1.0);
    }
}

/// RFC 3339 with second precision, the way the API server writes times.
pub fn fmt_time(t: Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Parse an RFC 3339 time as written in objects.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}
