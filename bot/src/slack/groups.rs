//! Slack user groups as policy subjects (`slack-group:S…`), from `usergroups.list` with
//! `include_users=true`, cached for a TTL. One lookup runs at a time; everyone else waits for it
//! and shares the answer. When Slack cannot be reached the last known membership is used; with
//! none (no lookup has succeeded yet, e.g. the app lacks `usergroups:read`), or one older than
//! three TTLs (15 minutes at least), the membership is unknown ([`Membership::unknown`]): the
//! policy then decides on what is known, keeping in force any deny rule a group could bring in
//! (someone added to a banned group during a long outage is not let through).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opsbot_policies::Subject;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::web::SlackWeb;
use crate::chat::{DeliveryError, Membership};

/// Where group memberships come from (the Web API; a fixed table in tests).
#[async_trait]
pub trait GroupSource: Send + Sync {
    /// Every group id with its member user ids.
    async fn memberships(&self) -> Result<Vec<(String, Vec<String>)>, DeliveryError>;
}

#[async_trait]
impl GroupSource for SlackWeb {
    async fn memberships(&self) -> Result<Vec<(String, Vec<String>)>, DeliveryError> {
        self.user_groups().await
    }
}

/// After a failed lookup, wait at least this long before asking Slack again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Resolves users to their group subjects, with a TTL cache.
pub struct GroupResolver {
    source: Arc<dyn GroupSource>,
    ttl: Duration,
    state: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// user id → group subjects.
    by_user: HashMap<String, Vec<Subject>>,
    /// When to ask Slack again (`None`: never asked).
    refresh_at: Option<Instant>,
    /// When a lookup last succeeded.
    loaded: Option<Instant>,
}

impl GroupResolver {
    pub fn new(source: Arc<dyn GroupSource>, ttl: Duration) -> Self {
        GroupResolver {
            source,
            ttl,
            state: Mutex::new(Cache::default()),
        }
    }

    /// The `slack-group:` subjects of Slack user `user_id`.
    pub async fn groups_of(&self, user_id: &str) -> Membership {
        let mut cache = self.state.lock().await;
        let due = cache.refresh_at.is_none_or(|at| Instant::now() >= at);
        if due {
            match self.source.memberships().await {
                Ok(groups) => {
                    let mut by_user: HashMap<String, Vec<Subject>> = HashMap::new();
                    for (group, users) in groups {
                        let Ok(subject) = Subject::parse(&format!("slack-group:{group}")) else {
                            continue;
                        };
                        for user in users {
                            by_user.entry(user).or_default().push(subject.clone());
                        }
                    }
                    cache.by_user = by_user;
                    cache.refresh_at = Some(Instant::now() + self.ttl);
                    cache.loaded = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not load Slack user groups; using the last known membership");
                    cache.refresh_at = Some(Instant::now() + RETRY_AFTER_FAILURE.min(self.ttl));
                }
            }
        }
        let stale_after = self.stale_after();
        Membership {
            groups: cache.by_user.get(user_id).cloned().unwrap_or_default(),
            unknown: cache.loaded.is_none_or(|at| at.elapsed() > stale_after),
        }
    }

    /// How old the last known membership may get before it counts as unknown: three TTLs, at
    /// least 15 minutes.
    fn stale_after(&self) -> Duration {
        (self.ttl * 3).max(Duration::from_secs(15 * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Table {
        calls: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl GroupSource for Table {
        async fn memberships(&self) -> Result<Vec<(String, Vec<String>)>, DeliveryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(DeliveryError::Failed {
                    method: "usergroups.list".into(),
                    error: "down".into(),
                });
            }
            Ok(vec![
                ("S1".into(), vec!["U1".into(), "U2".into()]),
                ("S2".into(), vec!["U2".into()]),
                ("bad id".into(), vec!["U1".into()]),
            ])
        }
    }

    /// A table of groups whose lookups fail when `fail` says so.
    fn table(fail: bool) -> Arc<Table> {
        Arc::new(Table {
            calls: AtomicUsize::new(0),
            fail: fail.into(),
        })
    }

    /// The group names of a membership the resolver knows.
    fn names(m: &Membership) -> Vec<&str> {
        assert!(!m.unknown, "{m:?}");
        m.groups.iter().map(|s| s.as_str()).collect()
    }

    #[tokio::test]
    async fn groups_are_cached_for_the_ttl() {
        let table = table(false);
        let r = GroupResolver::new(table.clone(), Duration::from_secs(300));
        assert_eq!(
            names(&r.groups_of("U2").await),
            ["slack-group:S1", "slack-group:S2"]
        );
        assert_eq!(names(&r.groups_of("U1").await), ["slack-group:S1"]);
        assert!(names(&r.groups_of("U9").await).is_empty());
        assert_eq!(table.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn last_known_groups_survive_a_failed_refresh() {
        let table = table(false);
        // A zero TTL refreshes on every lookup.
        let r = GroupResolver::new(table.clone(), Duration::ZERO);
        assert_eq!(names(&r.groups_of("U1").await), ["slack-group:S1"]);
        table.fail.store(true, Ordering::SeqCst);
        assert_eq!(names(&r.groups_of("U1").await), ["slack-group:S1"]);
        assert_eq!(table.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn last_known_groups_grow_stale_after_three_ttls() {
        let table = table(false);
        let r = GroupResolver::new(table.clone(), Duration::ZERO);
        assert_eq!(names(&r.groups_of("U1").await), ["slack-group:S1"]);
        table.fail.store(true, Ordering::SeqCst);
        // The last success, long ago; Slack failing since.
        let long_ago = Instant::now().checked_sub(r.stale_after() + Duration::from_secs(1));
        r.state.lock().await.loaded = long_ago;
        let m = r.groups_of("U1").await;
        assert!(m.unknown, "{m:?}");
        assert_eq!(
            m.groups[0].as_str(),
            "slack-group:S1",
            "still what was last known"
        );
    }

    #[tokio::test]
    async fn groups_are_unknown_until_slack_was_reachable() {
        let table = table(true);
        let r = GroupResolver::new(table.clone(), Duration::from_secs(300));
        let unknown = Membership {
            groups: Vec::new(),
            unknown: true,
        };
        assert_eq!(r.groups_of("U1").await, unknown);
        // The failure is not retried on every request.
        assert_eq!(r.groups_of("U1").await, unknown);
        assert_eq!(table.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_call() {
        let table = table(false);
        let r = Arc::new(GroupResolver::new(table.clone(), Duration::from_secs(300)));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.groups_of("U1").await })
            })
            .collect();
        for t in tasks {
            assert_eq!(names(&t.await.unwrap()), ["slack-group:S1"]);
        }
        assert_eq!(table.calls.load(Ordering::SeqCst), 1);
    }
}
