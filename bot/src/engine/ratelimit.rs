//! Per-user, per-channel and global quotas (governor's GCRA), checked before anything is parsed.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::config::{self, RateLimits};

fn quota(q: config::Quota) -> Quota {
    Quota::per_minute(q.per_minute).allow_burst(q.burst)
}

/// Which quota a request ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Channel,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Channel => "channel",
            Scope::Global => "global",
        }
    }
}

/// Over quota: which one, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
}

/// The three limiters.
pub struct RateLimiter {
    user: DefaultKeyedRateLimiter<String>,
    channel: DefaultKeyedRateLimiter<String>,
    global: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl RateLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        RateLimiter {
            user: governor::RateLimiter::keyed(quota(limits.per_user)),
            channel: governor::RateLimiter::keyed(quota(limits.per_channel)),
            global: governor::RateLimiter::direct(quota(limits.global)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from each quota, narrowest first; the first quota that is exhausted
    /// answers. (A request refused by the channel quota has already used a user token: that
    /// errs on the side of fewer executions.)
    pub fn check(&self, user: &str, channel: &str) -> Result<(), Limited> {
        let now = self.clock.now();
        let limited = |scope| {
            move |n: governor::NotUntil<_>| Limited {
                scope,
                retry_after: n.wait_time_from(now),
            }
        };
        self.user
            .check_key(&user.to_owned())
            .map_err(limited(Scope::User))?;
        self.channel
            .check_key(&channel.to_owned())
            .map_err(limited(Scope::Channel))?;
        self.global.check().map_err(limited(Scope::Global))?;
        Ok(())
    }

    /// Forgets keys whose quota is full again, so the maps do not grow without bound.
    pub fn retain_recent(&self) {
        self.user.retain_recent();
        self.channel.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn q(per_minute: u32, burst: u32) -> config::Quota {
        config::Quota {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    fn limits(user: config::Quota, channel: config::Quota, global: config::Quota) -> RateLimits {
        RateLimits {
            per_user: user,
            per_channel: channel,
            global,
        }
    }

    const WIDE: u32 = 1_000_000;

    #[test]
    fn user_quota_refuses_the_burst_plus_one_and_says_when() {
        let rl = RateLimiter::new(&limits(q(6, 2), q(WIDE, WIDE), q(WIDE, WIDE)));
        assert!(rl.check("slack:U1", "C1").is_ok());
        assert!(rl.check("slack:U1", "C1").is_ok());
        let limited = rl.check("slack:U1", "C1").unwrap_err();
        assert_eq!(limited.scope, Scope::User);
        assert!(limited.retry_after > Duration::from_secs(5), "{limited:?}");
        assert!(
            limited.retry_after <= Duration::from_secs(10),
            "{limited:?}"
        );
        // Another user is not affected.
        assert!(rl.check("slack:U2", "C1").is_ok());
    }

    #[test]
    fn channel_and_global_quotas() {
        let rl = RateLimiter::new(&limits(q(WIDE, WIDE), q(1, 1), q(WIDE, WIDE)));
        assert!(rl.check("a", "C1").is_ok());
        assert_eq!(rl.check("b", "C1").unwrap_err().scope, Scope::Channel);
        assert!(rl.check("b", "C2").is_ok());

        let rl = RateLimiter::new(&limits(q(WIDE, WIDE), q(WIDE, WIDE), q(1, 1)));
        assert!(rl.check("a", "C1").is_ok());
        assert_eq!(rl.check("b", "C2").unwrap_err().scope, Scope::Global);
    }
}
