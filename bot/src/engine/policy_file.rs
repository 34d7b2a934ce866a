//! The policy in force, and its hot reload: a changed file is loaded and swapped in; a broken one
//! is refused and logged, and the old policy stays in force.
//!
//! Readers never wait: the policy in force sits in an [`ArcSwap`], so [`PolicyFile::current`] is
//! a lock-free load, however large the policy and however often the file changes. A reload
//! reads and parses the file first (on a blocking thread when run by [`PolicyFile::watch`]),
//! then swaps the new policy in with one atomic store. Only reloads take the mutex over the
//! file hashes, and readers never touch it. Until the file loads again (or is
//! back to the content in force), [`PolicyFile::refused`] says why it was refused (`/readyz`
//! reports the bot as degraded).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use opsbot_policies::{Policy, PolicyErrors};
use sha2::{Digest, Sha256};

/// A policy loaded from a file, reloadable.
pub struct PolicyFile {
    path: Option<PathBuf>,
    /// Expiry of approvals whose rule gives no `ttl` (configuration `approvals.default_ttl`).
    default_ttl: Duration,
    policy: ArcSwap<Policy>,
    hashes: Mutex<Hashes>,
}

struct Hashes {
    /// Hash of the file content the policy in force was loaded from.
    loaded: [u8; 32],
    /// Hash of what the last look found (content, or the read error), so an unchanged file, or
    /// one already refused, is neither reloaded nor reported again.
    seen: [u8; 32],
    /// Why the file as it is now was refused; `None` when it is what is in force.
    refused: Option<String>,
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
        Self::load_with_default_ttl(path, opsbot_policies::DEFAULT_APPROVAL_TTL)
    }

    /// [`PolicyFile::load`], with approvals whose rule gives no `ttl` expiring after
    /// `default_ttl`; reloads keep that default.
    pub fn load_with_default_ttl(path: &Path, default_ttl: Duration) -> Result<Self, PolicyErrors> {
        let bytes = read(path)?;
        let policy = parse(path, &bytes, default_ttl)?;
        Ok(PolicyFile {
            path: Some(path.to_owned()),
            default_ttl,
            policy: ArcSwap::from_pointee(policy),
            hashes: Mutex::new(Hashes {
                loaded: Sha256::digest(&bytes).into(),
                seen: Sha256::digest(&bytes).into(),
                refused: None,
            }),
        })
    }

    /// A fixed policy that is never reloaded (tests, embedded demo policy).
    pub fn fixed(policy: Policy) -> Self {
        PolicyFile {
            path: None,
            default_ttl: opsbot_policies::DEFAULT_APPROVAL_TTL,
            policy: ArcSwap::from_pointee(policy),
            hashes: Mutex::new(Hashes {
                loaded: [0; 32],
                seen: [0; 32],
                refused: None,
            }),
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Why the file's current content was refused, while the previous policy stays in force
    /// (for `/readyz`; it waits for a reload in progress).
    pub fn refused(&self) -> Option<String> {
        self.hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refused
            .clone()
    }

    /// Loads the file again if its content changed since the last look. Blocks on the file
    /// and the parse (never on readers): call it off the async workers.
    pub fn reload(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let (hash, content) = match read(path) {
            Ok(bytes) => (Sha256::digest(&bytes).into(), Ok(bytes)),
            Err(e) => {
                let error = e.to_string();
                (Sha256::digest(error.as_bytes()).into(), Err(error))
            }
        };
        // Held across the parse so two reloads cannot swap in out of order; readers never
        // take it. A poisoned lock only means a reload panicked; the hashes are still whole.
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if hashes.seen == hash {
            return Reload::Unchanged;
        }
        hashes.seen = hash;
        let bytes = match content {
            Ok(bytes) => bytes,
            Err(error) => {
                hashes.refused = Some(error.clone());
                return Reload::Refused(error);
            }
        };
        if hashes.loaded == hash {
            // Back to the content in force (e.g. after a broken edit was reverted).
            hashes.refused = None;
            return Reload::Unchanged;
        }
        match parse(path, &bytes, self.default_ttl) {
            Ok(policy) => {
                self.policy.store(Arc::new(policy));
                hashes.loaded = hash;
                hashes.refused = None;
                Reload::Loaded
            }
            Err(e) => {
                hashes.refused = Some(e.to_string());
                Reload::Refused(e.to_string())
            }
        }
    }

    /// Polls the file every `interval` until the task is dropped, logging what changed.
    /// (Polling rather than inotify: it also sees Kubernetes ConfigMap symlink swaps.)
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let this = self.clone();
            let outcome = match tokio::task::spawn_blocking(move || this.reload()).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(error = %e, "policy reload did not finish");
                    continue;
                }
            };
            match outcome {
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

/// Where a newcomer starts a policy from.
pub const EXAMPLE_POLICY_PATH: &str = "deploy/policy.example.yaml";

fn read(path: &Path) -> Result<Vec<u8>, PolicyErrors> {
    std::fs::read(path).map_err(|e| {
        let (message, hint) = if e.kind() == std::io::ErrorKind::NotFound {
            (
                "there is no policy file here; opsbot needs one to decide who may do what"
                    .to_owned(),
                format!(
                    "start from {EXAMPLE_POLICY_PATH}: copy it to {} and edit it, or point \
                     `policy:` in opsbot.yaml (or OPSBOT_POLICY) at your policy",
                    path.display()
                ),
            )
        } else {
            (
                format!("cannot read the policy file: {e}"),
                format!("check its permissions, or start from {EXAMPLE_POLICY_PATH}"),
            )
        };
        PolicyErrors(vec![opsbot_policies::PolicyError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message,
            hint: Some(hint),
        }])
    })
}

fn parse(path: &Path, bytes: &[u8], default_ttl: Duration) -> Result<Policy, PolicyErrors> {
    let file = path.display().to_string();
    match std::str::from_utf8(bytes) {
        Ok(src) => Policy::from_yaml_with_default_ttl(src, &file, default_ttl),
        Err(e) => Err(PolicyErrors(vec![opsbot_policies::PolicyError {
            file,
            line: 0,
            column: 0,
            message: format!("policy file is not UTF-8: {e}"),
            hint: None,
        }])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_policies::{Action, Decision, Request, Subject};

    const POLICY: &str = "version: 1\nroles:\n  lead: { members: [\"console:alice\"] }\nrules:\n  \
        - name: scale\n    roles: [\"*\"]\n    actions: [scale]\n    approval: { roles: [lead] }\n";

    fn approval_ttl(policy: &Policy) -> Duration {
        let mut request = Request::new(Subject::parse("console:bob").unwrap(), Action::Scale);
        request.replicas = Some(3);
        match policy.evaluate(&request).decision {
            Decision::Approval { requirement, .. } => requirement.ttl,
            other => panic!("expected an approval, got {other:?}"),
        }
    }

    #[test]
    fn the_configured_default_ttl_applies_and_survives_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, POLICY).unwrap();
        let two_hours = Duration::from_secs(7200);
        let file = PolicyFile::load_with_default_ttl(&path, two_hours).unwrap();
        assert_eq!(approval_ttl(&file.current()), two_hours);
        std::fs::write(
            &path,
            POLICY.replace("scale\n    roles", "scaling\n    roles"),
        )
        .unwrap();
        assert_eq!(file.reload(), Reload::Loaded);
        assert_eq!(approval_ttl(&file.current()), two_hours);
        // A rule's own ttl wins.
        std::fs::write(&path, POLICY.replace("[lead] }", "[lead], ttl: 5m }")).unwrap();
        assert_eq!(file.reload(), Reload::Loaded);
        assert_eq!(approval_ttl(&file.current()), Duration::from_secs(300));
        // Without configuration: 15 minutes.
        std::fs::write(&path, POLICY).unwrap();
        let plain = PolicyFile::load(&path).unwrap();
        assert_eq!(approval_ttl(&plain.current()), Duration::from_secs(900));
    }

    #[test]
    fn an_unreadable_file_is_reported_once_not_every_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, POLICY).unwrap();
        let file = PolicyFile::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(file.reload(), Reload::Refused(_)));
        assert_eq!(file.reload(), Reload::Unchanged);
        assert!(
            file.refused()
                .unwrap()
                .contains("there is no policy file here")
        );
        std::fs::write(&path, POLICY).unwrap();
        assert_eq!(file.reload(), Reload::Unchanged, "same content as in force");
        assert_eq!(file.refused(), None);
    }

    #[test]
    fn a_refused_reload_is_remembered_until_a_good_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, POLICY).unwrap();
        let file = PolicyFile::load(&path).unwrap();
        assert_eq!(file.refused(), None);
        std::fs::write(&path, "version: 1\nrules: [oops\n").unwrap();
        assert!(matches!(file.reload(), Reload::Refused(_)));
        let refused = file.refused().expect("the refusal is remembered");
        assert!(refused.contains("policy.yaml:"), "{refused}");
        assert_eq!(file.reload(), Reload::Unchanged);
        assert_eq!(file.refused().as_ref(), Some(&refused), "still refused");
        std::fs::write(&path, POLICY.replace("name: scale", "name: scaling")).unwrap();
        assert_eq!(file.reload(), Reload::Loaded);
        assert_eq!(file.refused(), None);
    }
}
