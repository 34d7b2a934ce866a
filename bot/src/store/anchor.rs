//! What keeps the audit log honest from outside the database: the chain key and the checkpoints.
//!
//! - [`AuditKey`]: 32 random bytes, hex in a file (`audit.key_file`, default `DATA_DIR/audit.key`)
//!   created with mode 0600 on first start when absent. Every record's hash is an HMAC-SHA256
//!   under it, so whoever can write the database but not read the key cannot re-hash the chain.
//!   The key is never logged or printed (`Debug` shows `***`).
//! - [`Checkpoint`]: the head of the log (`id`, `hash`, `time` of the last record) with an
//!   HMAC-SHA256 `signature` over them under the same key. [`AnchorFile`] keeps them as JSON lines
//!   appended to `audit.anchor_file` (default `DATA_DIR/audit.anchors`), each written with one
//!   `write` and fsynced. A torn last line (a crash mid-write) is reported and ignored: the
//!   checkpoint before it counts, and the writer cuts the torn tail off before appending.
//! - [`Anchor`]: the checkpoint writer. The append path calls [`Anchor::observe`] with each new
//!   head id (cheap: it only wakes the writer after `checkpoint_every_records` records);
//!   [`Anchor::run`] writes a checkpoint when woken or every `checkpoint_every`, if the head moved.
//!   It checkpoints the head it reads from the database after making committed records durable
//!   ([`Store::make_durable`]), so a checkpoint never names a record a power loss could take.
//!   [`Anchor::subscribe`] hands out each checkpoint written (`serve` posts them in
//!   `audit.channel` when one is configured).
//!
//! Invariant: a checkpoint only ever names a committed, durable head, so a log shorter than its
//! latest checkpoint, or one whose record at a checkpoint's id has another hash, was tampered
//! with. `Store::verify` reports both, and `serve` refuses to start on them.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};

/// What can go wrong with the key or the checkpoint file. Messages never contain the key.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("cannot read the audit key {path}: {error}")]
    ReadKey { path: String, error: std::io::Error },
    #[error("the audit key {path} is not 64 hexadecimal characters (32 bytes)")]
    BadKey { path: String },
    #[error("cannot create the audit key {path}: {error}")]
    CreateKey { path: String, error: std::io::Error },
    #[error("cannot use the audit checkpoint file {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "the audit log ends at record {head} but the checkpoint of {time} (in {file}) names \
         record {checkpoint}: records {}..{checkpoint} are missing; refusing to start \
         (run `opsbot audit verify`)", head + 1
    )]
    Truncated {
        head: i64,
        checkpoint: i64,
        time: Timestamp,
        file: String,
    },
    #[error(
        "record {id} of the audit log differs from the checkpoint of {time} (in {file}): the \
         log was rewritten; refusing to start (run `opsbot audit verify`)"
    )]
    Rewritten {
        id: i64,
        time: Timestamp,
        file: String,
    },
    #[error(
        "the audit log's newest record ({id}) was not sealed with this audit key: the key file \
         (audit.key_file) was replaced, or lost and made anew, or the record was altered; \
         refusing to start (restore the key, then run `opsbot audit verify`)"
    )]
    OtherKey { id: i64 },
    #[error(
        "the audit log's newest record ({id}) is hashed without a key (opsbot-audit-v1) and no \
         checkpoint pins it: a log from before keyed hashing, or one rewritten by someone \
         without the key; refusing to start (run `opsbot audit verify`; a log that predates \
         keyed hashing is checked with `opsbot audit export` and pinned once with `opsbot \
         audit adopt`)"
    )]
    Unpinned { id: i64 },
}

type HmacSha256 = Hmac<Sha256>;

/// The key the audit chain and its checkpoints are signed with. Never printed.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

impl AuditKey {
    /// A new random key.
    pub fn generate() -> AuditKey {
        AuditKey(rand::random())
    }

    /// Reads the key at `path` (64 hex characters; surrounding whitespace is ignored).
    pub fn load(path: &Path) -> Result<AuditKey, AnchorError> {
        let text = std::fs::read_to_string(path).map_err(|error| AnchorError::ReadKey {
            path: path.display().to_string(),
            error,
        })?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| AnchorError::BadKey {
            path: path.display().to_string(),
        })?;
        Ok(AuditKey(key))
    }

    /// Reads the key at `path`, or, when there is no file, creates one (mode 0600, written
    /// whole or not at all) with a new random key.
    pub fn load_or_create(path: &Path) -> Result<AuditKey, AnchorError> {
        match AuditKey::load(path) {
            Err(AnchorError::ReadKey { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let key = AuditKey::generate();
        let create = |error| AnchorError::CreateKey {
            path: path.display().to_string(),
            error,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(create)?;
        // A temporary file is created with mode 0600, then moved into place only if nothing is
        // there yet: a crash never leaves half a key, and two processes agree on one key.
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(create)?;
        writeln!(file, "{}", hex::encode(key.0)).map_err(create)?;
        file.as_file().sync_all().map_err(create)?;
        match file.persist_noclobber(path) {
            Ok(_) => {
                tracing::info!(path = %path.display(), "created a new audit key");
                Ok(key)
            }
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => AuditKey::load(path),
            Err(e) => Err(create(e.error)),
        }
    }

    fn mac(&self, message: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes cannot be refused.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(message);
        mac
    }

    /// Lowercase hex HMAC-SHA256 of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.mac(message).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is the HMAC of `message`, compared in constant time.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(message).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// The last record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub id: i64,
    pub hash: String,
    pub time: Timestamp,
}

/// A signed statement that the log had `id` records, the last with `hash` and `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub id: i64,
    pub hash: String,
    pub time: Timestamp,
    /// Hex HMAC-SHA256 of `["opsbot-audit-checkpoint-v1", id, hash, time_ms]`.
    pub signature: String,
}

impl Checkpoint {
    fn message(id: i64, hash: &str, time: Timestamp) -> Vec<u8> {
        serde_json::json!([
            "opsbot-audit-checkpoint-v1",
            id,
            hash,
            time.as_millisecond()
        ])
        .to_string()
        .into_bytes()
    }

    pub fn sign(head: &Head, key: &AuditKey) -> Checkpoint {
        Checkpoint {
            id: head.id,
            hash: head.hash.clone(),
            time: head.time,
            signature: key.sign(&Checkpoint::message(head.id, &head.hash, head.time)),
        }
    }

    pub fn verifies(&self, key: &AuditKey) -> bool {
        key.verifies(
            &Checkpoint::message(self.id, &self.hash, self.time),
            &self.signature,
        )
    }
}

/// What the checkpoint file says, as far as it can be trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoints {
    /// Every checkpoint whose signature verifies, in file order.
    pub valid: Vec<Checkpoint>,
    /// Lines that are not valid checkpoints (bad signature, not a checkpoint before the last
    /// line): each means the file was tampered with.
    pub problems: Vec<String>,
    /// Things worth saying that are not tampering (a torn last line, no file yet).
    pub notes: Vec<String>,
}

impl Checkpoints {
    /// The checkpoint naming the longest log.
    pub fn latest(&self) -> Option<&Checkpoint> {
        self.valid.iter().max_by_key(|c| c.id)
    }
}

/// The append-only checkpoint file.
#[derive(Debug, Clone)]
pub struct AnchorFile {
    path: PathBuf,
}

impl AnchorFile {
    pub fn new(path: impl Into<PathBuf>) -> AnchorFile {
        AnchorFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, error: std::io::Error) -> AnchorError {
        AnchorError::File {
            path: self.path.display().to_string(),
            error,
        }
    }

    /// Reads and checks every line. No file yet means no checkpoints (and says so in `notes`).
    pub fn read(&self, key: &AuditKey) -> Result<Checkpoints, AnchorError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Checkpoints {
                    notes: vec![format!(
                        "no checkpoint file at {}: records missing from the end cannot be seen",
                        self.path.display()
                    )],
                    ..Checkpoints::default()
                });
            }
            Err(e) => return Err(self.error(e)),
        };
        Ok(parse(&bytes, key))
    }

    /// Cuts off a torn last line (no newline: a crash mid-write), so the next line starts
    /// clean. Returns what was cut, for the log.
    fn repair(&self) -> Result<Option<String>, AnchorError> {
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| self.error(e))?;
        if bytes.is_empty() || bytes.ends_with(b"\n") {
            return Ok(None);
        }
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        file.set_len(keep as u64).map_err(|e| self.error(e))?;
        file.sync_all().map_err(|e| self.error(e))?;
        Ok(Some(String::from_utf8_lossy(&bytes[keep..]).into_owned()))
    }

    /// Appends `checkpoint` as one line with a single write, and syncs it to disk.
    fn append(&self, checkpoint: &Checkpoint) -> Result<(), AnchorError> {
        let mut line =
            serde_json::to_string(checkpoint).map_err(|e| self.error(std::io::Error::other(e)))?;
        line.push('\n');
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.error(e))?;
        file.write_all(line.as_bytes()).map_err(|e| self.error(e))?;
        file.sync_data().map_err(|e| self.error(e))
    }
}

/// Checks every line of a checkpoint file.
fn parse(bytes: &[u8], key: &AuditKey) -> Checkpoints {
    let mut out = Checkpoints::default();
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let torn_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
    for (i, line) in lines.iter().enumerate() {
        let number = i + 1;
        let last = number == lines.len();
        match serde_json::from_str::<Checkpoint>(line) {
            Ok(c) if c.verifies(key) => out.valid.push(c),
            Ok(c) => out.problems.push(format!(
                "checkpoint line {number} (record {}) has a signature that does not verify: \
                 forged, or written under another key",
                c.id
            )),
            Err(_) if last && torn_tail => out.notes.push(format!(
                "checkpoint line {number} is torn (a crash while writing it); ignored, the \
                 checkpoint before it counts"
            )),
            Err(e) => out.problems.push(format!(
                "checkpoint line {number} is not a checkpoint ({e}): the file was edited"
            )),
        }
    }
    out
}

/// Settings of the checkpoint writer.
#[derive(Debug, Clone)]
pub struct AnchorOptions {
    pub file: PathBuf,
    /// Checkpoint at the latest after this many new records.
    pub every_records: u64,
    /// … and at the latest this long after the head moved.
    pub every: Duration,
}

/// The checkpoint writer; see the module docs.
pub struct Anchor {
    file: AnchorFile,
    key: Arc<AuditKey>,
    options: AnchorOptions,
    /// Id of the head named by the last checkpoint (0: none).
    checkpointed: AtomicI64,
    /// Serialises writing checkpoints.
    writing: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
    stop: CancellationToken,
    /// The last checkpoint written, for [`Anchor::subscribe`].
    written: tokio::sync::watch::Sender<Option<Checkpoint>>,
}

impl std::fmt::Debug for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchor")
            .field("file", &self.file)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Anchor {
    /// Opens the checkpoint file (cutting off a torn last line) and remembers its latest
    /// checkpoint. Returns the anchor and what the file says.
    pub fn open(
        options: AnchorOptions,
        key: Arc<AuditKey>,
    ) -> Result<(Anchor, Checkpoints), AnchorError> {
        let file = AnchorFile::new(&options.file);
        if let Some(torn) = file.repair()? {
            tracing::warn!(
                path = %file.path().display(),
                torn_bytes = torn.len(),
                "cut off a torn last line of the audit checkpoint file"
            );
        }
        let checkpoints = file.read(&key)?;
        for problem in &checkpoints.problems {
            tracing::error!(path = %file.path().display(), problem, "audit checkpoint file");
        }
        let checkpointed = checkpoints.latest().map_or(0, |c| c.id);
        let anchor = Anchor {
            file,
            key,
            options,
            checkpointed: AtomicI64::new(checkpointed),
            writing: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            stop: CancellationToken::new(),
            written: tokio::sync::watch::Sender::new(None),
        };
        Ok((anchor, checkpoints))
    }

    /// Refuses a log whose newest record this key did not seal, one shorter than the latest
    /// checkpoint, or one whose record at that id has another hash (start-up check of `serve`).
    pub async fn check_log(
        &self,
        store: &Store,
        checkpoints: &Checkpoints,
    ) -> Result<(), AnchorError> {
        let seal = store.head_sealed_here().await?;
        if let super::HeadSeal::Other { id } = seal {
            return Err(AnchorError::OtherKey { id });
        }
        let head = store.audit_head().await?.map_or(0, |h| h.id);
        // Unkeyed records after a keyed one do not verify; an unkeyed head means an unkeyed log.
        if seal == super::HeadSeal::Unkeyed && checkpoints.latest().is_none_or(|c| c.id < head) {
            return Err(AnchorError::Unpinned { id: head });
        }
        let Some(latest) = checkpoints.latest() else {
            return Ok(());
        };
        let file = self.file.path().display().to_string();
        if head < latest.id {
            return Err(AnchorError::Truncated {
                head,
                checkpoint: latest.id,
                time: latest.time,
                file,
            });
        }
        if store.audit_hash(latest.id).await?.as_deref() != Some(latest.hash.as_str()) {
            return Err(AnchorError::Rewritten {
                id: latest.id,
                time: latest.time,
                file,
            });
        }
        Ok(())
    }

    /// Called with the id of each newly committed head: wakes the writer once
    /// `every_records` records have been appended since the last checkpoint.
    pub fn observe(&self, id: i64) {
        let since = id.saturating_sub(self.checkpointed.load(Ordering::Relaxed));
        if u64::try_from(since).is_ok_and(|n| n >= self.options.every_records) {
            self.wake.notify_one();
        }
    }

    /// Writes a checkpoint of the durable head of `store` if it moved since the last one.
    /// Returns the checkpoint written.
    pub async fn checkpoint(&self, store: &Store) -> Result<Option<Checkpoint>, AnchorError> {
        let _writing = self.writing.lock().await;
        store.make_durable().await?;
        let Some(head) = store.audit_head().await? else {
            return Ok(None);
        };
        if head.id <= self.checkpointed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let checkpoint = Checkpoint::sign(&head, &self.key);
        let (file, line) = (self.file.clone(), checkpoint.clone());
        tokio::task::spawn_blocking(move || file.append(&line))
            .await
            .map_err(|e| self.file.error(std::io::Error::other(e)))??;
        self.checkpointed.store(head.id, Ordering::Relaxed);
        self.written.send_replace(Some(checkpoint.clone()));
        Ok(Some(checkpoint))
    }

    /// Each checkpoint as it is written (e.g. to post it in an audit channel, `audit.channel`).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Checkpoint>> {
        self.written.subscribe()
    }

    /// Writes checkpoints until [`Anchor::finish`]: when [`Anchor::observe`] wakes it, and every
    /// `every`. Errors are logged and retried on the next round.
    pub async fn run(self: Arc<Self>, store: Store) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.options.every) => {}
            }
            if let Err(e) = self.checkpoint(&store).await {
                tracing::error!(error = %e, "cannot write an audit checkpoint");
            }
        }
    }

    /// Stops [`Anchor::run`] and writes a last checkpoint (at shutdown).
    pub async fn finish(&self, store: &Store) -> Result<Option<Checkpoint>, AnchorError> {
        self.stop.cancel();
        self.checkpoint(store).await
    }

    pub fn file(&self) -> &AnchorFile {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: i64) -> Head {
        Head {
            id,
            hash: format!("{id:064x}"),
            time: Timestamp::from_second(1_800_000_000 + id).unwrap(),
        }
    }

    #[test]
    fn checkpoints_verify_only_under_their_key_and_unchanged() {
        let key = AuditKey::generate();
        let c = Checkpoint::sign(&head(7), &key);
        assert!(c.verifies(&key));
        assert!(!c.verifies(&AuditKey::generate()));
        let moved = Checkpoint { id: 8, ..c.clone() };
        assert!(!moved.verifies(&key));
        let garbage = Checkpoint {
            signature: "zz".into(),
            ..c
        };
        assert!(!garbage.verifies(&key));
    }

    #[test]
    fn a_torn_last_line_is_a_note_a_torn_middle_line_a_problem() {
        let key = AuditKey::generate();
        let line = |id| serde_json::to_string(&Checkpoint::sign(&head(id), &key)).unwrap();
        let torn = format!("{}\n{}\n{{\"id\":3,\"ha", line(1), line(2));
        let read = parse(torn.as_bytes(), &key);
        assert_eq!(read.latest().map(|c| c.id), Some(2));
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        assert!(read.notes[0].contains("line 3 is torn"), "{:?}", read.notes);

        let edited = format!("{}\n{{\"id\":3,\"ha\n{}\n", line(1), line(2));
        let read = parse(edited.as_bytes(), &key);
        assert!(read.problems[0].contains("line 2 is not a checkpoint"));
    }

    #[test]
    fn the_key_file_is_created_private_once_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.key");
        let key = AuditKey::load_or_create(&path).unwrap();
        let again = AuditKey::load_or_create(&path).unwrap();
        assert_eq!(key.0, again.0, "an existing key is kept");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(!format!("{key:?}").contains(text.trim()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex\n").unwrap();
        let err = AuditKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("not 64 hexadecimal"), "{err}");
        assert!(!err.contains("not hex"), "{err}");
    }

    #[test]
    fn repair_cuts_only_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let file = AnchorFile::new(dir.path().join("a"));
        assert_eq!(file.repair().unwrap(), None, "no file yet");
        std::fs::write(file.path(), "one\ntw").unwrap();
        assert_eq!(file.repair().unwrap().as_deref(), Some("tw"));
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "one\n");
        assert_eq!(file.repair().unwrap(), None);
    }
}
