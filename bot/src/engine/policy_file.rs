//! The policy in force, and its hot reload: a changed file is loaded and swapped in; a broken one
//! is refused and logged, and the old policy stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opsbot_policies::{Policy, PolicyErrors};
use sha2::{Digest, Sha256};

/// A policy loaded from a file, reloadable.
pub struct PolicyFile {
    path: Option<PathBuf>,
    state: RwLock<State>,
}

struct State {
    policy: Arc<Policy>,
    /// Hash of the file content the policy was loaded from (or last refused), so an unchanged or
    /// already-refused file is not reloaded or reported again.
    seen: [u8; 32],
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Loaded,
    Refused(String),
}

impl PolicyFile {
    /// Loads the policy at `path`; fails with every error located as `FILE:LINE:COL`.
    pub fn load(path: &Path) -> Result<Self, PolicyErrors> {
        let bytes = read(path)?;
        let policy = parse(path, &bytes)?;
        Ok(PolicyFile {
            path: Some(path.to_owned()),
            state: RwLock::new(State {
                policy: Arc::new(policy),
                seen: Sha256::digest(&bytes).into(),
            }),
        })
    }

    /// A fixed policy that is never reloaded (tests, embedded demo policy).
    pub fn fixed(policy: Policy) -> Self {
        PolicyFile {
            path: None,
            state: RwLock::new(State {
                policy: Arc::new(policy),
                seen: [0; 32],
            }),
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        // A poisoned lock only means a reader panicked; the policy inside is still whole.
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .policy
            .clone()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Loads the file again if its content changed since the last look.
    pub fn reload(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let bytes = match read(path) {
            Ok(b) => b,
            Err(e) => return Reload::Refused(e.to_string()),
        };
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.seen == hash {
            return Reload::Unchanged;
        }
        state.seen = hash;
        match parse(path, &bytes) {
            Ok(policy) => {
                state.policy = Arc::new(policy);
                Reload::Loaded
            }
            Err(e) => Reload::Refused(e.to_string()),
        }
    }

    /// Polls the file every `interval` until the task is dropped, logging what changed.
    /// (Polling rather than inotify: it also sees Kubernetes ConfigMap symlink swaps.)
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.reload() {
                Reload::Unchanged => {}
                Reload::Loaded => {
                    tracing::info!(path = ?self.path, summary = %self.current().summary(), "policy reloaded")
                }
                Reload::Refused(errors) => tracing::error!(
                    path = ?self.path,
                    %errors,
                    "new policy refused; the previous policy stays in force"
                ),
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PolicyErrors> {
    std::fs::read(path).map_err(|e| {
        PolicyErrors(vec![opsbot_policies::PolicyError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read policy file: {e}"),
            hint: None,
        }])
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyErrors> {
    let file = path.display().to_string();
    match std::str::from_utf8(bytes) {
        Ok(src) => Policy::from_yaml(src, &file),
        Err(e) => Err(PolicyErrors(vec![opsbot_policies::PolicyError {
            file,
            line: 0,
            column: 0,
            message: format!("policy file is not UTF-8: {e}"),
            hint: None,
        }])),
    }
}
