//! Load errors: every problem is reported, each at an exact `FILE:LINE:COL` with a hint.

use opsbot_policies::{Policy, PolicyErrors};

fn errors(src: &str) -> PolicyErrors {
    match Policy::from_yaml(src, "p.yaml") {
        Ok(p) => panic!("expected errors, loaded: {}", p.summary()),
        Err(e) => e,
    }
}

/// `(location, message fragment, hint fragment)` for each error, in order.
fn assert_errors(src: &str, want: &[(&str, &str, &str)]) {
    let errs = errors(src);
    let got: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.0.len(), want.len(), "errors:\n{}", got.join("\n"));
    for (e, (loc, msg, hint)) in errs.0.iter().zip(want) {
        let line = e.to_string();
        assert!(
            line.starts_with(&format!("{loc}: ")),
            "want {loc}, got {line}"
        );
        assert!(e.message.contains(msg), "want message `{msg}` in {line}");
        let Some(h) = e.hint.as_deref() else {
            panic!("every error has a hint: {line}")
        };
        assert!(h.contains(hint), "want hint `{hint}` in {line}");
    }
}

const HEADER: &str = "version: 1\nroles:\n  sre-lead: { members: [\"slack:U1\"] }\n  oncall: { members: [\"slack-group:S1\"] }\nrules:\n";

#[test]
fn many_kinds_of_error_each_at_its_place() {
    let src = format!(
        "{HEADER}{}",
        r#"  - name: a
    roles: [sre-led]
    actions: [scael, "foo.*"]
    namespaces: ["prod{"]
    approval: { roles: [sre-lead], count: 0, ttl: 15 parsecs }
    colour: blue
  - name: a
    roles: [oncall]
    actions: [status]
    effect: deny
"#
    );
    assert_errors(
        &src,
        &[
            (
                "p.yaml:7:13",
                "role `sre-led` used but not defined",
                "did you mean `sre-lead`?",
            ),
            (
                "p.yaml:8:15",
                "unknown action `scael`",
                "did you mean `scale`?",
            ),
            (
                "p.yaml:8:22",
                "action pattern `foo.*` matches no action",
                "actions are: status",
            ),
            ("p.yaml:9:18", "bad glob `prod{`", "globs use"),
            (
                "p.yaml:10:43",
                "`count` is 0, below 1",
                "distinct approvers",
            ),
            ("p.yaml:10:51", "bad duration `15 parsecs`", "`15m`"),
            (
                "p.yaml:11:5",
                "unknown key `colour` in rule #1",
                "valid keys: name, roles, actions",
            ),
            (
                "p.yaml:12:11",
                "duplicate rule name `a`",
                "first used at p.yaml:6:11",
            ),
            (
                "p.yaml:15:13",
                "deny rule `a` has no `reason`",
                "add `reason",
            ),
        ],
    );
}

#[test]
fn unknown_keys_everywhere_with_nearest_name() {
    let src = r#"version: 1
rolse: {}
roles:
  lead: { members: ["console:a"], membrs: [] }
rules:
  - name: r
    roles: [lead]
    actions: [status]
    when: { replica: { max: 3 }, tail_lines: { max: 5, mix: 1 } }
    approval: { roles: [lead], allow_slef: true }
    effect: deny
    reason: x
"#;
    assert_errors(
        src,
        &[
            (
                "p.yaml:2:1",
                "unknown key `rolse` in the policy",
                "did you mean `roles`?",
            ),
            (
                "p.yaml:4:35",
                "unknown key `membrs` in role `lead`",
                "did you mean `members`?",
            ),
            (
                "p.yaml:9:13",
                "unknown key `replica` in `when`",
                "did you mean `replicas`?",
            ),
            (
                "p.yaml:9:56",
                "unknown key `mix` in `tail_lines`",
                "did you mean `max`?",
            ),
            (
                "p.yaml:10:5",
                "deny rule `r` cannot have an `approval`",
                "allow rules",
            ),
        ],
    );
}

#[test]
fn version_must_be_one() {
    assert_errors(
        "version: 2\nrules: []\n",
        &[("p.yaml:1:10", "unsupported version 2", "`version: 1`")],
    );
    assert_errors(
        "version: \"1\"\nrules: []\n",
        &[("p.yaml:1:10", "unsupported version 1", "`version: 1`")],
    );
    assert_errors(
        "rules: []\n",
        &[("p.yaml:1:1", "missing `version`", "version: 1")],
    );
}

#[test]
fn subjects_and_role_names() {
    let src = "version: 1\nroles:\n  a: { members: [\"slak:U1\", \"U2\", \"slack:\"] }\n  \"*\": { members: [] }\nrules: []\n";
    assert_errors(
        src,
        &[
            (
                "p.yaml:3:18",
                "`slak:U1` is not a subject",
                "did you mean `slack`?",
            ),
            ("p.yaml:3:29", "`U2` is not a subject", "`slack:U2`"),
            (
                "p.yaml:3:35",
                "`slack:` is not a subject",
                "must be non-empty",
            ),
            ("p.yaml:4:3", "`*` cannot be a role name", "reserved"),
        ],
    );
}

#[test]
fn rule_shape_errors() {
    let src = r##"version: 1
roles: { lead: { members: ["console:a"] } }
rules:
  - roles: []
    actions: status
    resources: [api]
    when: { replicas: { min: 5, max: 1 }, severity: [P9] }
    effect: maybe
  - name: b
    roles: [lead]
    actions: [restart]
    approval: { roles: ["*"], ttl: 900, count: 1.5, allow_self: "yes" }
    reason: because
    channels: ["#ops", "C0OPS"]
"##;
    assert_errors(
        src,
        &[
            ("p.yaml:4:5", "rule #1 has no `name`", "unique `name`"),
            ("p.yaml:4:12", "`roles` is an empty list", "at least one"),
            (
                "p.yaml:5:14",
                "`actions` must be a list, found a string",
                "`actions: [status]`",
            ),
            (
                "p.yaml:6:17",
                "resource pattern `api` has no `/`",
                "`deployment/api`",
            ),
            ("p.yaml:7:23", "`replicas` has min 5 above max 1", ""),
            ("p.yaml:7:54", "unknown severity `P9`", "P1, P2, P3 and P4"),
            (
                "p.yaml:8:13",
                "unknown effect `maybe`",
                "`allow` (the default) or `deny`",
            ),
            ("p.yaml:12:25", "`*` cannot approve", "lead"),
            (
                "p.yaml:12:36",
                "bad duration: `ttl` must be a duration, found an integer",
                "`900s`",
            ),
            ("p.yaml:12:48", "`count` must be an integer", ""),
            ("p.yaml:12:65", "`allow_self` must be true or false", ""),
            (
                "p.yaml:13:13",
                "`reason` on allow rule `b` is never shown",
                "comment",
            ),
            (
                "p.yaml:14:16",
                "channel pattern `#ops` is a name: channels match the channel's id",
                "Slack `C0123ABCD`",
            ),
        ],
    );
}

#[test]
fn yaml_syntax_errors_are_located() {
    assert_errors(
        "version: 1\nrules: [1, 2\n",
        &[("p.yaml:2:8", "invalid YAML", "syntax")],
    );
    let errs = errors("version: 1\nversion: 1\nrules: []\n");
    assert_eq!(
        errs.to_string(),
        "p.yaml:2:1: invalid YAML: duplicate mapping key: version (hint: fix the YAML syntax first)"
    );
    assert_errors("", &[("p.yaml:1:1", "the policy is empty", "version: 1")]);
    assert_errors(
        "- a\n",
        &[(
            "p.yaml:1:1",
            "must be a mapping, found a list",
            "valid keys",
        )],
    );
}

#[test]
fn unreadable_and_non_utf8_files() {
    let dir = std::env::temp_dir().join(format!("opsbot-policies-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let missing = dir.join("missing.yaml");
    let e = Policy::load(&missing).expect_err("missing file");
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, 0);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, b"version: 1\nrules: [\xff]\n").expect("write");
    let e = Policy::load(&bad).expect_err("not utf-8");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:9: the file is not UTF-8 (hint: save the policy as UTF-8 text)",
            bad.display()
        )
    );

    let good = dir.join("good.yaml");
    std::fs::write(&good, "version: 1\nrules: []\n").expect("write");
    let p = Policy::load(&good).expect("loads");
    assert_eq!(
        p.summary(),
        format!(
            "{}: ok, 0 roles, 0 rules (0 deny, 0 with approval)",
            good.display()
        )
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Runs `f` on a thread with a small stack, as tokio workers and test threads have.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic");
}

#[test]
fn hostile_inputs_fail_cleanly() {
    on_small_stack(hostile_inputs);
}

fn hostile_inputs() {
    // deep nesting
    let deep = format!(
        "version: 1\nrules: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(
        errors(&deep).to_string(),
        "p.yaml:2:24: the policy nests deeper than 16 levels (hint: a policy needs at most 6 levels: top, `rules`, a rule, `when`, `replicas`, a bound)"
    );
    let deep_block: String = (0..500)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    assert!(
        errors(&deep_block).0[0]
            .message
            .contains("nests deeper than 16 levels")
    );
    // alias expansion bomb ("billion laughs")
    let mut bomb = String::from("version: 1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb.push_str("rules: []\n");
    let e = errors(&bomb);
    assert!(
        e.0[0]
            .message
            .starts_with("the policy is too large to read"),
        "{e}"
    );
    // odd scalars where names are expected
    let odd = "version: 1\nroles: { ? [a]: {members: []} }\nrules:\n  - {name: ~, roles: [1.5], actions: [true]}\n";
    let e = errors(odd);
    assert!(e.0.len() >= 3, "{e}");
    // big numbers
    let big = "version: 1\nroles: {a: {members: []}}\nrules:\n  - {name: r, roles: [a], actions: [scale], when: {replicas: {max: 99999999999999999999999999}}, approval: {roles: [a], count: 99999999999}}\n";
    let e = errors(big);
    assert_eq!(e.0.len(), 2, "{e}");
}
