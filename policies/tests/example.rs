//! The shipped example policy loads and says what its comments promise.

use std::path::Path;

use opsbot_policies::{Action, Decision, Policy, Request, Severity, Subject};

fn example() -> Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policy.example.yaml");
    match Policy::load(&path) {
        Ok(p) => p,
        Err(e) => panic!("example policy must load:\n{e}"),
    }
}

fn s(x: &str) -> Subject {
    Subject::parse(x).expect("subject")
}

fn ask(
    user: &str,
    action: Action,
    ns: Option<&str>,
    res: Option<&str>,
    replicas: Option<i64>,
) -> Decision {
    let mut r = Request::new(s(user), action);
    r.namespace = ns.map(Into::into);
    r.resource = res.map(Into::into);
    r.replicas = replicas;
    r.channel = Some("console".into());
    example().evaluate(&r).decision
}

#[test]
fn loads_with_the_runbook_roles() {
    let p = example();
    assert_eq!(
        p.role_names(),
        [
            "dba",
            "oncall",
            "platform-engineer",
            "security-engineer",
            "sre-lead"
        ]
    );
    assert!(p.summary().contains("5 roles"), "{}", p.summary());
}

#[test]
fn bob_asks_to_scale_production_and_alice_approves() {
    let d = ask(
        "console:bob",
        Action::Scale,
        Some("production"),
        Some("deployment/conea-api"),
        Some(5),
    );
    let Decision::Approval { rule, requirement } = d else {
        panic!("wanted approval, got {d:?}")
    };
    assert_eq!(rule, "scale-production");
    assert_eq!(requirement.roles, ["sre-lead"]);
    assert_eq!(requirement.count, 1);
    assert!(!requirement.allow_self);
    let p = example();
    let (bob, alice) = (s("console:bob"), s("console:alice"));
    assert_eq!(p.may_approve(&requirement, &bob, &alice, &[], &[]), Ok(()));
    assert!(p.may_approve(&requirement, &bob, &bob, &[], &[]).is_err());
    assert!(
        p.may_approve(&requirement, &bob, &s("console:olive"), &[], &[])
            .is_err()
    );
    // The SRE lead's own production scaling also waits for another SRE lead.
    let d = ask(
        "console:alice",
        Action::Scale,
        Some("gc-storage"),
        Some("deployment/api"),
        Some(4),
    );
    let Decision::Approval { requirement, .. } = d else {
        panic!("wanted approval, got {d:?}")
    };
    assert!(
        p.may_approve(&requirement, &alice, &alice, &[], &[])
            .is_err()
    );
    assert_eq!(
        p.may_approve(&requirement, &alice, &s("slack:U01SRELEAD"), &[], &[]),
        Ok(())
    );
}

#[test]
fn guard_rails_and_read_only() {
    for who in ["console:alice", "console:bob", "slack:UANYONE"] {
        let d = ask(
            who,
            Action::Scale,
            Some("gc-storage"),
            Some("deployment/api"),
            Some(0),
        );
        assert!(
            matches!(&d, Decision::Deny { rule: Some(r), .. } if r == "no-scale-to-zero"),
            "{who}: {d:?}"
        );
        assert!(matches!(
            ask(who, Action::Status, Some("api"), None, None),
            Decision::Allow { .. }
        ));
    }
    assert!(matches!(
        ask(
            "slack:UANYONE",
            Action::Restart,
            Some("api"),
            Some("deployment/api"),
            None
        ),
        Decision::Deny { rule: None, .. }
    ));
    assert!(matches!(
        ask(
            "console:bob",
            Action::Restart,
            Some("api"),
            Some("deployment/api"),
            None
        ),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        ask(
            "console:dana",
            Action::BackupRun,
            Some("gc-storage"),
            Some("cronjob/postgres-backup"),
            None
        ),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        ask(
            "console:bob",
            Action::BackupRun,
            Some("gc-storage"),
            Some("cronjob/postgres-backup"),
            None
        ),
        Decision::Deny { rule: Some(_), .. }
    ));
    let mut r = Request::new(s("console:olive"), Action::IncidentClose);
    r.severity = Some(Severity::P1);
    assert!(matches!(
        example().evaluate(&r).decision,
        Decision::Approval { .. }
    ));
    r.severity = Some(Severity::P4);
    assert!(matches!(
        example().evaluate(&r).decision,
        Decision::Allow { .. }
    ));
}
