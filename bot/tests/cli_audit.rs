//! `opsbot audit verify|tail|export` and `opsbot check-config`, run as the real binary against a
//! SQLite database in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jiff::{SignedDuration, Timestamp};
use opsbot::config::Config;
use opsbot::store::{AuditEntry, AuditKey, AuditKind, Checkpoint, Head};
use sqlx::Connection;

mod support;

fn opsbot(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("OPSBOT_DATABASE_URL")
        .env_remove("OPSBOT_DATA_DIR")
        .env_remove("OPSBOT_POLICY")
        .env_remove("OPSBOT_CONFIG")
        .output()
        .expect("run opsbot")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db_url: String,
    data: PathBuf,
}

impl Setup {
    /// Runs SQL on the database behind opsbot's back.
    async fn tamper(&self, sql: &'static str) {
        let mut c = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }

    fn append_checkpoint_line(&self, line: &str) {
        let path = self.data.join("audit.anchors");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(line);
        std::fs::write(&path, text).unwrap();
    }
}

/// A config whose data_dir is the temp dir, and a log of 5 records, 2 from two days ago, 3 now,
/// written as `serve` writes it (keyed, the head checkpointed at the end).
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("opsbot.yaml");
    std::fs::write(&config, "data_dir: data\n").unwrap();
    let db_url = format!("sqlite://{}/data/opsbot.db", dir.path().display());
    let loaded = Config::load_with_env(Some(&config), &std::collections::BTreeMap::new()).unwrap();
    let store = opsbot::app::audited_store(&loaded).await.unwrap();
    let old = Timestamp::now() - SignedDuration::from_hours(48);
    for (i, time) in [
        old,
        old,
        Timestamp::now(),
        Timestamp::now(),
        Timestamp::now(),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .append(
                AuditEntry::new(AuditKind::Request, "console")
                    .at(time)
                    .channel("#ops")
                    .actor("console:alice")
                    .text(format!("scale api {i} -n production\u{1b}[2J"))
                    .outcome("allow"),
            )
            .await
            .unwrap();
    }
    opsbot::app::finish_audit(&store).await;
    store.close().await;
    Setup {
        data: dir.path().join("data"),
        _dir: dir,
        config,
        db_url,
    }
}

#[tokio::test]
async fn verify_reports_ok_then_the_tampered_record() {
    let s = setup().await;
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("chain OK, 5 records; checkpoint of "),
        "{text}"
    );
    assert!(text.trim_end().ends_with("at record 5 matches"), "{text}");
    let key = std::fs::read_to_string(s.data.join("audit.key")).unwrap();
    assert!(!text.contains(key.trim()) && !stderr(&out).contains(key.trim()));

    s.tamper("UPDATE audit_log SET outcome = 'deny' WHERE id = 3")
        .await;
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("chain broken at record 3: "), "{text}");
}

#[tokio::test]
async fn verify_reports_records_deleted_at_the_end() {
    let s = setup().await;
    s.tamper("DELETE FROM audit_log WHERE id > 3").await;
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("the log ends at record 3 but the checkpoint of "),
        "{text}"
    );
    assert!(text.contains("records 4..5 are missing"), "{text}");
}

#[tokio::test]
async fn verify_reports_a_database_replaced_by_an_empty_one() {
    let s = setup().await;
    for file in ["opsbot.db", "opsbot.db-wal", "opsbot.db-shm"] {
        let _ = std::fs::remove_file(s.data.join(file));
    }
    std::fs::write(s.data.join("opsbot.db"), "").unwrap();
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("records 1..5 are missing"), "{text}");
    assert!(text.contains("emptied or replaced"), "{text}");
}

#[tokio::test]
async fn verify_reports_a_forged_checkpoint_and_ignores_a_torn_one() {
    let s = setup().await;
    let head = Head {
        id: 6,
        hash: "ab".repeat(32),
        time: Timestamp::now(),
    };
    let forged = Checkpoint::sign(&head, &AuditKey::generate());
    s.append_checkpoint_line(&format!("{}\n", serde_json::to_string(&forged).unwrap()));
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("checkpoint line 2 (record 6) has a signature that does not verify"),
        "{text}"
    );
    assert!(
        !text.contains("missing"),
        "a forgery does not count: {text}"
    );

    // A crash while writing a checkpoint leaves a torn last line: noted, not an error.
    let s = setup().await;
    s.append_checkpoint_line("{\"id\":6,\"hash\":\"ab");
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("at record 5 matches"), "{text}");
    assert!(text.contains("note: checkpoint line 2 is torn"), "{text}");
}

#[tokio::test]
async fn verify_needs_the_key_and_never_creates_one() {
    let s = setup().await;
    let key = s.data.join("audit.key");
    std::fs::remove_file(&key).unwrap();
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("audit key"), "{}", stderr(&out));
    assert!(!key.exists(), "verify must not create a key");
}

#[tokio::test]
async fn tail_shows_the_last_records_oldest_first() {
    let s = setup().await;
    let out = opsbot(&s.config, &["audit", "tail", "-n", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("#4 "), "{text}");
    assert!(lines[1].starts_with("#5 "), "{text}");
    assert!(lines[1].contains("console:alice"), "{text}");
    assert!(lines[1].contains("scale api 4 -n production"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "control characters reach the terminal: {text:?}"
    );

    let out = opsbot(&s.config, &["audit", "tail"]);
    assert_eq!(stdout(&out).lines().count(), 5);
}

#[tokio::test]
async fn export_writes_jsonl_since_a_time() {
    let s = setup().await;
    let out = opsbot(
        &s.config,
        &["audit", "export", "--since", "24h", "--format", "jsonl"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(
        records
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(records[0]["kind"], "request");
    assert_eq!(records[0]["actor"], "console:alice");
    assert_eq!(records[1]["prev_hash"], records[0]["hash"]);

    let out = opsbot(&s.config, &["audit", "export", "--since", "3d"]);
    assert_eq!(stdout(&out).lines().count(), 5);
    let out = opsbot(
        &s.config,
        &["audit", "export", "--since", "2000-01-01T00:00:00Z"],
    );
    assert_eq!(stdout(&out).lines().count(), 5);

    let out = opsbot(&s.config, &["audit", "export", "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("neither a duration"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn audit_fails_cleanly_on_a_bad_config() {
    let s = setup().await;
    std::fs::write(&s.config, "data_dir: data\nbogus: 1\n").unwrap();
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "{}:2:1: unknown field `bogus`",
            s.config.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn audit_refuses_a_database_that_does_not_exist() {
    let s = setup().await;
    let dir = s.config.parent().unwrap().to_path_buf();
    let missing = dir.join("typo.db");
    std::fs::write(
        &s.config,
        format!("database:\n  url: sqlite://{}\n", missing.display()),
    )
    .unwrap();
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("there is no database at"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists(), "a reader must not create the database");
}

const POLICY: &str = r#"version: 1
roles:
  sre-lead: { members: ["slack:U01SRE"] }
rules:
  - name: read-anything
    roles: ["*"]
    actions: [status, pods]
"#;

#[test]
fn check_config_validates_config_and_policy_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("opsbot.yaml");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("signing"), "very-secret-signing\n").unwrap();
    std::fs::write(
        &config,
        "database: { url: 'postgres://bot:db-password@db:5432/opsbot' }\n\
         slack: { bot_token: xoxb-secret-token, signing_secret_file: signing }\n\
         clusters: [{ name: prod, context: prod-eu }]\n\
         channels: { C0OPS: { cluster: prod, namespace: production } }\n",
    )
    .unwrap();
    let out = opsbot(&config, &["check-config"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}{}", text, stderr(&out));
    for secret in ["db-password", "xoxb-secret-token", "very-secret-signing"] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
        assert!(!stderr(&out).contains(secret));
    }
    assert!(
        text.contains("database:        postgres://bot@db:5432/opsbot\n"),
        "{text}"
    );
    assert!(
        text.contains("prod: kubeconfig (default) context prod-eu"),
        "{text}"
    );
    assert!(
        text.contains("C0OPS: namespace production, cluster prod"),
        "{text}"
    );
    assert!(text.contains("policy check:"), "{text}");
    assert!(text.trim_end().ends_with("OK"), "{text}");

    // A Slack section serve would refuse (no signing secret for HTTP mode) fails here too.
    std::fs::write(&config, "slack: { bot_token: xoxb-secret-token }\n").unwrap();
    let out = opsbot(&config, &["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("slack: "), "{}", stderr(&out));
    assert!(stderr(&out).contains("signing"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("xoxb-secret-token"));
    std::fs::write(
        &config,
        "database: { url: 'postgres://bot:db-password@db:5432/opsbot' }\n\
         slack: { bot_token: xoxb-secret-token, signing_secret_file: signing }\n",
    )
    .unwrap();

    // A password in the query is not printed either, nor are the other options.
    std::fs::write(
        &config,
        "database: { url: 'postgres://db/opsbot?user=bot&password=db-password&sslmode=require' }\n",
    )
    .unwrap();
    let out = opsbot(&config, &["check-config"]);
    let text = stdout(&out);
    assert!(!text.contains("db-password"), "{text}");
    assert!(
        text.contains("database:        postgres://bot@db/opsbot\n"),
        "{text}"
    );
    std::fs::write(
        &config,
        "database: { url: 'postgres://bot:db-password@db:5432/opsbot' }\n\
         slack: { bot_token: xoxb-secret-token, signing_secret_file: signing }\n",
    )
    .unwrap();

    // A broken policy fails check-config with its location.
    std::fs::write(dir.path().join("policy.yaml"), "version: 1\nrules: 5\n").unwrap();
    let out = opsbot(&config, &["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("policy.yaml:2:"), "{}", stderr(&out));

    // A broken config fails before the policy is looked at.
    std::fs::write(&config, "listen: [1]\n").unwrap();
    let out = opsbot(&config, &["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{}:1:", config.display())),
        "{}",
        stderr(&out)
    );
}

/// An empty `opsbot.yaml` is valid, but there is no policy next to it: `check-config` and
/// `console` say so once, with where to start from.
#[test]
fn an_empty_config_says_once_that_the_policy_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("opsbot.yaml");
    std::fs::write(&config, "").unwrap();
    for args in [&["check-config"][..], &["console"][..]] {
        let out = opsbot(&config, args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(
            err.matches("there is no policy file here").count(),
            1,
            "{args:?}: {err}"
        );
        assert!(
            err.contains("start from deploy/policy.example.yaml: copy it to "),
            "{args:?}: {err}"
        );
        assert!(!err.contains("cannot read"), "{args:?}: {err}");
    }
}

/// A log whose every record is hashed without a key (as opsbot wrote them before keyed
/// hashing, or as anyone who can write the database can) and no checkpoint: `serve` refuses it
/// and `verify` reports it until `audit adopt` pins it; a log that does not verify is not
/// adopted.
#[tokio::test]
async fn adopt_pins_an_unkeyed_log_which_serve_refuses_until_then() {
    let s = setup().await;
    let store = opsbot::store::Store::open_existing(&s.db_url)
        .await
        .unwrap();
    let records = store.tail(100).await.unwrap();
    store.close().await;
    let mut c = sqlx::SqliteConnection::connect(&s.db_url).await.unwrap();
    let mut prev = opsbot::store::GENESIS_HASH.to_owned();
    for r in &records {
        let time_ms = r.entry.time.as_millisecond();
        let hash = support::unkeyed_hash("opsbot-audit-v1", r, time_ms, &prev);
        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(r.id)
            .execute(&mut c)
            .await
            .unwrap();
        prev = hash;
    }
    c.close().await.unwrap();
    std::fs::remove_file(s.data.join("audit.anchors")).unwrap();

    let loaded =
        Config::load_with_env(Some(&s.config), &std::collections::BTreeMap::new()).unwrap();
    let refused = opsbot::app::audited_store(&loaded).await.err();
    let refused = refused
        .expect("serve refuses an unpinned unkeyed log")
        .to_string();
    assert!(
        refused.contains("newest record (5) is hashed without a key") && refused.contains("adopt"),
        "{refused}"
    );
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no checkpoint pins them"),
        "{}",
        stdout(&out)
    );

    let out = opsbot(&s.config, &["audit", "adopt"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("adopted: records 1..5"),
        "{}",
        stdout(&out)
    );
    let out = opsbot(&s.config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("chain OK, 5 records (5 before keyed hashing); checkpoint of"),
        "{}",
        stdout(&out)
    );
    let out = opsbot(&s.config, &["audit", "adopt"]);
    assert!(
        stdout(&out).starts_with("nothing to adopt"),
        "{}",
        stdout(&out)
    );
    let store = opsbot::app::audited_store(&loaded).await.unwrap();
    opsbot::app::finish_audit(&store).await;
    store.close().await;

    // Edited after it was adopted: it does not verify, and is not adopted again.
    s.tamper("UPDATE audit_log SET outcome = 'deny' WHERE id = 2")
        .await;
    let out = opsbot(&s.config, &["audit", "adopt"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("not adopted"), "{}", stdout(&out));
}
