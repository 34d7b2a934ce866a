//! `opsbot policy check|explain`, end to end through the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const POLICY: &str = r#"version: 1
roles:
  sre-lead:          { members: ["slack:U01SRE", "console:alice"] }
  platform-engineer: { members: ["slack-group:S0PLAT", "console:bob"] }
rules:
  - name: read-anything
    roles: ["*"]
    actions: [status, pods]
  - name: no-scale-to-zero
    roles: ["*"]
    actions: [scale]
    when: { replicas: { max: 0 } }
    effect: deny
    reason: "scaling to zero is done by hand"
  - name: scale-production
    roles: [platform-engineer]
    actions: [scale]
    namespaces: [production]
    resources: ["deployment/*"]
    when: { replicas: { min: 1, max: 30 } }
    approval: { roles: [sre-lead], count: 1, ttl: 15m, allow_self: false }
"#;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d =
            std::env::temp_dir().join(format!("opsbot-policy-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write fixture");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opsbot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(args)
        .output()
        .expect("run opsbot")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn check_ok_prints_one_line_summary() {
    let d = Dir::new("check-ok");
    let f = d.file("p.yaml", POLICY);
    let out = opsbot(&["policy", "check", "--policy", path(&f)]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: ok, 2 roles, 3 rules (1 deny, 1 with approval)\n",
            f.display()
        )
    );
}

#[test]
fn check_lists_every_error_and_exits_2() {
    let d = Dir::new("check-bad");
    let f = d.file(
        "bad.yaml",
        "version: 1\nroles:\n  lead: { members: [\"console:a\"] }\nrules:\n  - name: x\n    roles: [leed]\n    actions: [scael]\n    approval: { roles: [lead], count: 0 }\n",
    );
    let out = opsbot(&["policy", "check", "--policy", path(&f)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let file = f.display().to_string();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with(&format!("{file}:6:13: role `leed` used but not defined")),
        "{err}"
    );
    assert!(lines[0].contains("did you mean `lead`?"), "{err}");
    assert!(
        lines[1].starts_with(&format!("{file}:7:15: unknown action `scael`")),
        "{err}"
    );
    assert!(lines[1].contains("did you mean `scale`?"), "{err}");
    assert!(
        lines[2].starts_with(&format!("{file}:8:39: `count` is 0, below 1")),
        "{err}"
    );
    assert_eq!(lines[3], "3 errors");
}

#[test]
fn check_missing_file_exits_2() {
    let d = Dir::new("check-missing");
    let f = d.0.join("nope.yaml");
    let out = opsbot(&["policy", "check", "--policy", path(&f)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with(&format!("{}: cannot read", f.display())));
}

#[test]
fn example_policy_passes_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policy.example.yaml");
    let out = opsbot(&["policy", "check", "--policy", path(&example)]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(": ok, 5 roles, "),
        "{}",
        text(&out.stdout)
    );
}

fn explain_json(policy: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "policy",
        "explain",
        "--policy",
        path(policy),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = opsbot(&args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    serde_json::from_str(&stdout).expect("valid JSON")
}

#[test]
fn explain_json_approval() {
    let d = Dir::new("explain-approval");
    let f = d.file("p.yaml", POLICY);
    let v = explain_json(
        &f,
        &[
            "--subject",
            "slack:U9",
            "--subject",
            "slack-group:S0PLAT",
            "--action",
            "scale",
            "--namespace",
            "production",
            "--resource",
            "deployment/api",
            "--replicas",
            "5",
            "--channel",
            "#ops",
            "--cluster",
            "prod-1",
        ],
    );
    assert_eq!(
        v,
        serde_json::json!({
            "decision": "approval",
            "rule": "scale-production",
            "reason": "rule `scale-production` allows this after 1 approval from sre-lead within 15m (not by the requester)",
            "approval": {"roles": ["sre-lead"], "count": 1, "ttl_seconds": 900, "allow_self": false},
            "evaluated": [
                {"rule": "read-anything", "matched": false, "why": v["evaluated"][0]["why"]},
                {"rule": "no-scale-to-zero", "matched": false, "why": v["evaluated"][1]["why"]},
                {"rule": "scale-production", "matched": true, "why": v["evaluated"][2]["why"]},
            ],
        })
    );
    assert!(
        v["evaluated"][0]["why"]
            .as_str()
            .is_some_and(|w| w.contains("action scale is not in [status, pods]"))
    );
    assert!(
        v["evaluated"][1]["why"]
            .as_str()
            .is_some_and(|w| w.contains("replicas 5 is not at most 0"))
    );
    assert!(
        v["evaluated"][2]["why"]
            .as_str()
            .is_some_and(|w| w.contains("via slack-group:S0PLAT"))
    );
}

#[test]
fn explain_json_deny_and_allow() {
    let d = Dir::new("explain-deny");
    let f = d.file("p.yaml", POLICY);
    let v = explain_json(
        &f,
        &[
            "--subject",
            "slack:U1",
            "--action",
            "scale",
            "--namespace",
            "production",
            "--resource",
            "deployment/api",
        ],
    );
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], serde_json::Value::Null);
    assert_eq!(v["approval"], serde_json::Value::Null);
    assert_eq!(
        v["reason"],
        "no rule allows `scale` on deployment/api in namespace production for slack:U1"
    );

    let v = explain_json(
        &f,
        &[
            "--subject",
            "console:bob",
            "--action",
            "scale",
            "--replicas",
            "0",
        ],
    );
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "no-scale-to-zero");
    assert_eq!(v["reason"], "scaling to zero is done by hand");

    let v = explain_json(&f, &["--subject", "discord:1", "--action", "status"]);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["rule"], "read-anything");
    assert_eq!(v["evaluated"].as_array().map(Vec::len), Some(3));
}

#[test]
fn explain_text_for_a_person() {
    let d = Dir::new("explain-text");
    let f = d.file("p.yaml", POLICY);
    let out = opsbot(&[
        "policy",
        "explain",
        "--policy",
        path(&f),
        "--subject",
        "console:bob",
        "--action",
        "scale",
        "--namespace",
        "production",
        "--resource",
        "deployment/api",
        "--replicas",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.starts_with("decision: approval\nrule:     scale-production\n"),
        "{t}"
    );
    assert!(
        t.contains("approval: 1 of sre-lead within 15m (900s), the requester may not approve\n"),
        "{t}"
    );
    assert!(
        t.contains("  [match] scale-production: matched: console:bob is platform-engineer"),
        "{t}"
    );
    assert!(t.contains("  [no   ] read-anything: "), "{t}");
}

#[test]
fn explain_rejects_bad_arguments_with_exit_2() {
    let d = Dir::new("explain-args");
    let f = d.file("p.yaml", POLICY);
    for bad in [
        vec!["--subject", "bob", "--action", "status"],
        vec!["--subject", "console:bob", "--action", "scael"],
        vec![
            "--subject",
            "console:bob",
            "--action",
            "logs",
            "--resource",
            "api",
        ],
        vec![
            "--subject",
            "console:bob",
            "--action",
            "logs",
            "--severity",
            "P7",
        ],
        vec!["--action", "status"],
    ] {
        let mut args = vec!["policy", "explain", "--policy", path(&f)];
        args.extend(bad.iter().copied());
        let out = opsbot(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "", "{bad:?}");
    }
    let out = opsbot(&[
        "policy",
        "explain",
        "--policy",
        path(&f),
        "--subject",
        "console:bob",
        "--action",
        "scael",
    ]);
    assert!(
        text(&out.stderr).contains("did you mean `scale`?"),
        "{}",
        text(&out.stderr)
    );
    // a broken policy file: the errors, exit 2
    let bad = d.file("bad.yaml", "version: 3\nrules: []\n");
    let out = opsbot(&[
        "policy",
        "explain",
        "--policy",
        path(&bad),
        "--subject",
        "console:bob",
        "--action",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.yaml:1:10: unsupported version 3"),
        "{}",
        text(&out.stderr)
    );
}
