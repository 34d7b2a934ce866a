//! `opsbot demo`, the README's first command, driven by a script on stdin as a newcomer would
//! pipe it: a read-only command, a request that needs approval, and its approval by someone else.

use std::io::Write;
use std::process::{Command, Stdio};

fn demo(script: &str) -> String {
    demo_with(&[], script)
}

/// `opsbot demo ARGS` with `script` on stdin; its output, once it succeeded.
fn demo_with(args: &[&str], script: &str) -> String {
    demo_and_logs(args, script).0
}

/// [`demo_with`], and what the demo logged (its stderr), for failure messages.
fn demo_and_logs(args: &[&str], script: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .arg("demo")
        .args(args)
        .env_remove("OPSBOT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start opsbot demo");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "demo failed: {stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn demo_runs_a_scripted_session_end_to_end() {
    // First pass: ask, to learn the approval id.
    let out = demo("status conea-api\nscale conea-api 5\nstatus conea-api -n prod\n");
    assert!(
        out.contains("Try:"),
        "the intro names commands to try: {out}"
    );
    assert!(out.contains("deployment/conea-api: complete"), "{out}");
    assert!(out.contains("Approval needed"), "{out}");
    assert!(out.contains("[Approve] type: approve "), "{out}");
    // A namespace that does not exist is said as such, with the nearest one.
    assert!(out.contains("namespace `prod` does not exist"), "{out}");
    assert!(out.contains("Did you mean  -n production"), "{out}");
}

#[test]
fn demo_approval_by_another_person_runs_the_command() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .arg("demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start opsbot demo");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "scale conea-api 5").unwrap();
    // Read until the card shows the id to approve.
    let mut seen = String::new();
    let id = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no card in: {seen}"
        );
        seen.push_str(&line);
        if let Some(id) = line.trim().strip_prefix("[Approve] type: approve ") {
            break id.trim().to_owned();
        }
    };
    // bob may not approve his own request; alice, an SRE lead, may.
    writeln!(
        stdin,
        "approve {id}
as alice
approve {id}
quit"
    )
    .unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest.contains(&format!("You cannot approve {id}")), "{rest}");
    assert!(
        rest.contains(&format!("Approved and executed · {id}")),
        "{rest}"
    );
    assert!(rest.contains("Scaled") || rest.contains("3 → 5"), "{rest}");
}

/// The script in README.md's "Try it", exactly as written there (comments and all).
fn readme_script() -> String {
    let readme = include_str!("../../README.md");
    let try_it = &readme[readme.find("## Try it").expect("a Try it section")..];
    let block = try_it
        .split("```")
        .nth(3)
        .expect("the second code block of Try it: the script");
    block.trim_start_matches('\n').to_owned()
}

#[test]
fn the_readme_script_works_as_written() {
    let script = readme_script();
    assert!(script.starts_with("status conea-api"), "{script}");
    let out = demo(&script);
    assert!(out.contains("deployment/conea-api: complete"), "{out}");
    assert!(out.contains("cronjob/postgres-backup"), "{out}");
    assert!(out.contains("Approval needed"), "{out}");
    assert!(out.contains("(now speaking as console:alice)"), "{out}");
    assert!(out.contains("Approved and executed"), "{out}");
    assert!(out.contains("Scaled deployment/conea-api 3 → 5"), "{out}");
    assert!(!out.to_lowercase().contains("rate limit"), "{out}");
    assert!(!out.contains("Slow down"), "{out}");
}

/// `approve` alone with nothing to approve, or with several, says so and lists them.
#[test]
fn approve_without_an_id_names_what_it_would_approve() {
    let out = demo("as alice\napprove\n");
    assert!(out.contains("Nothing to approve"), "{out}");
    let out = demo("scale conea-api 5\nscale conea-api 6\nas alice\napprove\n");
    assert!(out.contains("Which one?"), "{out}");
    assert_eq!(out.matches("type: approve ").count(), 4, "{out}");
    assert!(!out.contains("Approved and executed"), "{out}");
    // bob may not approve his own request: it is listed with why.
    let out = demo("scale conea-api 5\napprove\n");
    assert!(out.contains("Nothing to approve"), "{out}");
    assert!(out.contains("scale deployment/conea-api 5"), "{out}");
}

/// `deny` alone is never guessed: it asks for the id, and the request stays pending.
#[test]
fn deny_without_an_id_asks_for_it() {
    let out = demo("scale conea-api 5\nas alice\ndeny\napprove\n");
    assert!(out.contains("deny needs the request's id"), "{out}");
    assert!(!out.contains("unknown command"), "{out}");
    assert!(out.contains("Approved and executed"), "{out}");
}

/// A line is read as soon as the one before is answered: a long operation goes on while the
/// next line runs, and the demo waits for it before it exits.
#[test]
fn the_next_line_runs_while_a_long_operation_follows_its_rollout() {
    // platform-engineers restart in `api` without approval; the restart follows its rollout.
    let out = demo("restart rust-webapi -n api\nwhoami\n");
    let running = out.find("Running `restart").expect("the restart starts");
    let whoami = out.find("You are console:bob\n").expect("whoami answers");
    let done = out
        .rfind("Restarted deployment/rust-webapi")
        .expect("the restart ends");
    assert!(running < whoami && whoami < done, "{out}");
}

/// `--keep DIR` keeps the database, and `audit verify` can check it.
#[test]
fn demo_keep_leaves_a_database_audit_verify_can_check() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let out = demo_with(&["--keep", kept.to_str().unwrap()], "status conea-api\n");
    assert!(out.contains("The demo's database is kept in"), "{out}");
    let verify = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .arg("--config")
        .arg(kept.join("opsbot.yaml"))
        .args(["audit", "verify"])
        .env_remove("OPSBOT_DATABASE_URL")
        .env_remove("OPSBOT_DATA_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(text.contains("OK"), "{text}");
}

/// The demo brings its own configuration: `--config` is refused, not ignored.
#[test]
fn demo_refuses_a_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["--config", "opsbot.yaml", "demo"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not read opsbot.yaml"), "{err}");
}

/// The incident script in README.md's "Incidents" section, as written there.
#[test]
fn the_readme_incident_script_works_as_written() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Incidents").expect("an Incidents section")..];
    let script = section
        .split("```")
        .nth(1)
        .expect("the Incidents script")
        .trim_start_matches('\n');
    assert!(script.starts_with("as olive"), "{script}");
    let (out, logs) = demo_and_logs(&[], script);
    for needle in [
        "INC-1 opened · P1",
        "# created #inc-1-checkout-returns-500",
        "(now in #inc-1-checkout-returns-500)",
        "[#inc-1-checkout-returns-500]",
        "Timeline of INC-1",
        "pool exhausted since the 10:02 deploy",
        "status deployment/conea-api",
        "acknowledged",
        "INC-1 closed · P1",
        "# archived #inc-1-checkout-returns-500",
        "Postmortem draft · INC-1",
    ] {
        assert!(
            out.contains(needle),
            "{needle:?} missing: {out}\nlogs:\n{logs}"
        );
    }
    assert!(!out.contains("Not allowed"), "{out}");
}
