//! `opsbot demo`, the README's first command, driven by a script on stdin as a newcomer would
//! pipe it: a read-only command, a request that needs approval, and its approval by someone else.

use std::io::Write;
use std::process::{Command, Stdio};

fn demo(script: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .arg("demo")
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
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn demo_runs_a_scripted_session_end_to_end() {
    // First pass: ask, to learn the approval id.
    let out = demo("status conea-api\nscale conea-api 5\n");
    assert!(
        out.contains("Try:"),
        "the intro names commands to try: {out}"
    );
    assert!(out.contains("deployment/conea-api: complete"), "{out}");
    assert!(out.contains("Approval needed"), "{out}");
    assert!(out.contains("[Approve] type: approve "), "{out}");
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
