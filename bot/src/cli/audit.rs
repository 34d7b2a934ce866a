//! `opsbot audit verify|tail|export|adopt`: read the audit log of the configured database.
//!
//! `verify` needs the audit key (`audit.key_file`) and reads the checkpoints
//! (`audit.anchor_file`) of the configuration; it never creates either. `adopt` pins a log
//! written before keyed hashing with a checkpoint (creating the key when absent, as `serve`
//! does), once the chain verifies.
//!
//! Exit codes: 0 when the command did its job, 1 when `verify` finds the log or its checkpoints
//! tampered with, 2 when the configuration, the key or the database cannot be used or the
//! arguments are wrong.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use jiff::Timestamp;

use crate::config::Config;
use crate::store::{Anchor, AnchorFile, AuditKey, AuditRecord, Problem, Store};

#[derive(clap::Subcommand)]
pub enum AuditCmd {
    /// Checks the keyed hash chain against the latest checkpoint: "chain OK, N records", or
    /// every problem found (exit 1): the first broken link, records missing from the end, a
    /// replaced database, forged checkpoints.
    Verify,
    /// Shows the last records, oldest first.
    Tail {
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Pins a log written before keyed hashing (every record `opsbot-audit-v1`), which `serve`
    /// refuses until then: checks the chain, then writes a checkpoint of its head. Check the
    /// records first (`audit export`): anyone who could write the database could have written
    /// an unkeyed log.
    Adopt,
    /// Writes every record since a time, oldest first.
    Export {
        /// How far back (`24h`, `7d`, `90m`) or since when (`2026-11-24T08:00:00Z`).
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Timestamp,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line per record, for people.
    Text,
    /// One JSON object per line, every field (including hashes).
    Jsonl,
}

const EXIT_BROKEN: u8 = 1;
const EXIT_ERROR: u8 = 2;

/// `24h` (that long ago) or an RFC 3339 time.
fn parse_since(s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("`{s}` is neither a duration (24h, 7d) nor a time (2026-11-24T08:00:00Z): {e}")
    })?;
    let d = jiff::SignedDuration::try_from(d).map_err(|e| format!("`{s}`: {e}"))?;
    Timestamp::now()
        .checked_sub(d)
        .map_err(|e| format!("`{s}` is too far back: {e}"))
}

/// Runs an audit subcommand against the database of the configuration at `config`.
pub fn run(config: Option<&Path>, cmd: AuditCmd) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run_async(config, cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run_async(config: Option<&Path>, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::open_existing(config.database_url.expose())
        .await
        .context("cannot open the database")?;
    let mut out = std::io::stdout().lock();
    let code = match cmd {
        AuditCmd::Verify => {
            let key = std::sync::Arc::new(
                AuditKey::load(&config.audit.key_file)
                    .context("verify needs the audit key that `serve` uses (audit.key_file)")?,
            );
            let checkpoints = AnchorFile::new(&config.audit.anchor_file).read(&key)?;
            let store = store.clone().with_audit(key, None);
            let report = store
                .verify_against(&checkpoints)
                .await
                .context("cannot read the audit log")?;
            writeln!(out, "{report}")?;
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_BROKEN)
            }
        }
        AuditCmd::Adopt => adopt(&config, &store, &mut out).await?,
        AuditCmd::Tail { lines, format } => {
            let records = store
                .tail(lines)
                .await
                .context("cannot read the audit log")?;
            write_records(&mut out, &records, format)?;
            ExitCode::SUCCESS
        }
        AuditCmd::Export { since, format } => {
            let records = store
                .since(since)
                .await
                .context("cannot read the audit log")?;
            write_records(&mut out, &records, format)?;
            ExitCode::SUCCESS
        }
    };
    out.flush()?;
    store.close().await;
    Ok(code)
}

/// `opsbot audit adopt`.
async fn adopt(config: &Config, store: &Store, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let key = std::sync::Arc::new(AuditKey::load_or_create(&config.audit.key_file)?);
    let (anchor, checkpoints) = Anchor::open(crate::app::anchor_options(config), key.clone())?;
    let store = store.clone().with_audit(key, None);
    let report = store
        .verify_against(&checkpoints)
        .await
        .context("cannot read the audit log")?;
    let (unpinned, other): (Vec<_>, Vec<_>) = report
        .problems
        .iter()
        .partition(|p| matches!(p, Problem::Unpinned { .. }));
    if !other.is_empty() {
        writeln!(out, "{report}")?;
        writeln!(out, "not adopted: the log does not verify")?;
        return Ok(ExitCode::from(EXIT_BROKEN));
    }
    let Some(Problem::Unpinned { head }) = unpinned.first() else {
        writeln!(out, "nothing to adopt: {report}")?;
        return Ok(ExitCode::SUCCESS);
    };
    // Pins only what was checked: a record appended since (another process) is not adopted.
    let now = store.audit_head().await?.map_or(0, |h| h.id);
    if now != *head {
        writeln!(
            out,
            "not adopted: the log grew from record {head} to {now} while it was checked; stop \
             every opsbot process on this database and run `opsbot audit adopt` again"
        )?;
        return Ok(ExitCode::from(EXIT_BROKEN));
    }
    anchor
        .checkpoint(&store)
        .await
        .context("cannot write the checkpoint")?;
    writeln!(
        out,
        "adopted: records 1..{head} (hashed without a key) are pinned by a checkpoint in {}",
        config.audit.anchor_file.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn write_records(
    out: &mut impl Write,
    records: &[AuditRecord],
    format: Format,
) -> anyhow::Result<()> {
    for r in records {
        match format {
            Format::Jsonl => {
                serde_json::to_writer(&mut *out, r)?;
                writeln!(out)?;
            }
            Format::Text => writeln!(out, "{}", text_line(r))?,
        }
    }
    Ok(())
}

/// `#12 2026-11-25T10:00:00.123Z request slack #ops slack:U1 "scale api 5" [rule] → outcome`
fn text_line(r: &AuditRecord) -> String {
    let e = &r.entry;
    let mut line = format!("#{} {} {:<9} {}", r.id, e.time, e.kind, e.platform);
    // Control characters would let a recorded text rewrite the terminal.
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    for part in [&e.channel, &e.actor].into_iter().flatten() {
        line.push(' ');
        line.push_str(&clean(part));
    }
    if let Some(text) = &e.text {
        line.push_str(&format!(" {:?}", clean(text)));
    }
    if let Some(command) = &e.command {
        line.push_str(&format!(" ({})", clean(command)));
    }
    if let Some(rule) = &e.rule {
        line.push_str(&format!(" [{}]", clean(rule)));
    }
    if let Some(outcome) = &e.outcome {
        line.push_str(&format!(" -> {}", clean(outcome)));
    }
    if let Some(ms) = e.duration_ms {
        line.push_str(&format!(" {ms}ms"));
    }
    if let Some(id) = &e.approval_id {
        line.push_str(&format!(" approval {}", clean(id)));
    }
    line
}
