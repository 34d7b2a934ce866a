//! Fault injection: failing requests, latency, RBAC-like denials, stalled rollouts and failing jobs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
struct FailRule {
    path: String,
    remaining: u32,
    code: u16,
}

#[derive(Debug, Default)]
struct State {
    fail: Vec<FailRule>,
    latency: Duration,
    forbidden: Vec<(String, String)>,
    stalled: Vec<(String, String)>,
    failing_jobs: Vec<(String, String)>,
}

/// Faults to inject; shared by the server and the controllers.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
    /// Bumped by every change the controllers see (stalled rollouts, failing jobs), so an idle
    /// controller loop knows to run again.
    generation: AtomicU64,
}

/// What the server should do with a request before handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer 500 InternalError.
    ServerError,
    /// Answer 429 TooManyRequests with `Retry-After: 1`.
    TooManyRequests,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Faults::lock`] for a change the controllers see.
    fn change(&self) -> std::sync::MutexGuard<'_, State> {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.lock()
    }

    /// How many controller-visible changes were made so far.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The next `n` requests whose path contains `path` answer `code` (500 or 429; 429 carries `Retry-After`).
    pub fn fail_next(&self, path: &str, n: u32, code: u16) {
        self.lock().fail.push(FailRule {
            path: path.to_string(),
            remaining: n,
            code,
        });
    }

    /// Add this much latency to every request.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Deny `verb` (get, list, watch, create, update, patch, delete, deletecollection, or "*") on `resource`
    /// (a plural such as "deployments", or a subresource such as "deployments/scale" or "pods/log"; "*" for all)
    /// with 403 Forbidden, like RBAC would.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.lock()
            .forbidden
            .push((verb.to_string(), resource.to_string()));
    }

    /// Lift every `forbid`.
    pub fn allow_all(&self) {
        self.lock().forbidden.clear();
    }

    /// New pods of this deployment never become ready, so its rollout stalls and ends in ProgressDeadlineExceeded.
    pub fn stall_rollout(&self, namespace: &str, deployment: &str) {
        self.change()
            .stalled
            .push((namespace.to_string(), deployment.to_string()));
    }

    pub fn unstall_rollout(&self, namespace: &str, deployment: &str) {
        self.change()
            .stalled
            .retain(|(n, d)| !(n == namespace && d == deployment));
    }

    pub fn is_stalled(&self, namespace: &str, deployment: &str) -> bool {
        self.lock()
            .stalled
            .iter()
            .any(|(n, d)| n == namespace && d == deployment)
    }

    /// Jobs in `namespace` whose name starts with `name_prefix` fail (e.g. "postgres-backup" for the cronjob's jobs).
    pub fn fail_jobs(&self, namespace: &str, name_prefix: &str) {
        self.change()
            .failing_jobs
            .push((namespace.to_string(), name_prefix.to_string()));
    }

    pub fn job_fails(&self, namespace: &str, name: &str) -> bool {
        self.lock()
            .failing_jobs
            .iter()
            .any(|(n, p)| n == namespace && name.starts_with(p.as_str()))
    }

    /// Remove every fault.
    pub fn clear(&self) {
        *self.change() = State::default();
    }

    /// Consume a fail_next rule matching this path, if any.
    pub(crate) fn take_failure(&self, path: &str) -> Option<Injected> {
        let mut s = self.lock();
        let rule = s
            .fail
            .iter_mut()
            .find(|r| r.remaining > 0 && path.contains(&r.path))?;
        rule.remaining -= 1;
        let code = rule.code;
        s.fail.retain(|r| r.remaining > 0);
        Some(if code == 429 {
            Injected::TooManyRequests
        } else {
            Injected::ServerError
        })
    }

    pub(crate) fn is_forbidden(&self, verb: &str, resource: &str) -> bool {
        self.lock()
            .forbidden
            .iter()
            .any(|(v, r)| (v == "*" || v == verb) && (r == "*" || r == resource))
    }
}
