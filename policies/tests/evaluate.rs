//! Table-driven tests: every rule key and every decision path.

use std::time::Duration;

use opsbot_policies::{
    Action, BUILTIN_RULE, Decision, Policy, Request, Requirement, Severity, Subject,
};

const POLICY: &str = r##"version: 1
roles:
  sre-lead:          { members: ["slack:U01SRE", "discord:4242", "slack-group:S0SRE", "discord-role:77"] }
  platform-engineer: { members: ["slack-group:S0PLAT", "console:bob"] }
  oncall:            { members: ["slack-group:S0ONCALL"] }
  dba:               { members: ["slack:UDBA"] }
  security:          { members: ["discord:999"] }
rules:
  - name: read-anything
    roles: ["*"]
    actions: [status, pods, events, "backup.status", "incident.show"]
  - name: no-scale-to-zero
    roles: ["*"]
    actions: [scale]
    when: { replicas: { max: 0 } }
    effect: deny
    reason: "scaling to zero is done by a DBA during a restore, by hand"
  - name: scale-production
    roles: [platform-engineer, oncall]
    actions: [scale]
    namespaces: [production, "gc-*"]
    resources: ["deployment/*"]
    when: { replicas: { min: 1, max: 30 } }
    approval: { roles: [sre-lead], count: 1, ttl: 15m, allow_self: false }
  - name: scale-staging
    roles: [platform-engineer]
    actions: [scale, restart]
    namespaces: [staging]
  - name: logs-short
    roles: [oncall, platform-engineer]
    actions: [logs]
    when: { tail_lines: { max: 500 } }
  - name: incidents-p1-p2
    roles: [oncall]
    actions: ["incident.*"]
    when: { severity: [P1, P2] }
    channels: ["C0INC*", "C0OPS"]
  - name: dba-backups
    roles: [dba]
    actions: ["backup.run"]
    clusters: ["prod-*"]
  - name: dba-two-person
    roles: [dba]
    actions: [rollback]
    approval: { roles: [sre-lead, dba], count: 2, ttl: 1h, allow_self: true }
  - name: security-no-rollback-in-kube-system
    roles: [security]
    actions: ["*"]
    namespaces: [kube-system]
    effect: deny
    reason: "kube-system is changed by the platform team only"
  - name: security-all
    roles: [security]
    actions: ["*"]
"##;

fn policy() -> Policy {
    match Policy::from_yaml(POLICY, "test.yaml") {
        Ok(p) => p,
        Err(e) => panic!("test policy must load:\n{e}"),
    }
}

fn s(x: &str) -> Subject {
    Subject::parse(x).expect("valid subject")
}

/// A compact request description: `user [groups..] action key=value...`.
fn req(spec: &str) -> Request {
    let mut words = spec.split_whitespace();
    let user = s(words.next().expect("user"));
    let mut groups = Vec::new();
    let mut action = None;
    let mut r = Request::new(user, Action::Help);
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            match k {
                "ns" => r.namespace = Some(v.into()),
                "res" => r.resource = Some(v.into()),
                "cluster" => r.cluster = Some(v.into()),
                "chan" => r.channel = Some(v.into()),
                "replicas" => r.replicas = Some(v.parse().expect("int")),
                "tail" => r.tail_lines = Some(v.parse().expect("int")),
                "sev" => r.severity = Some(v.parse().expect("severity")),
                other => panic!("bad key {other}"),
            }
        } else if w.contains(':') {
            groups.push(s(w));
        } else {
            action = Some(w.parse::<Action>().expect("action"));
        }
    }
    r.groups = groups;
    r.action = action.expect("action");
    r
}

#[derive(Debug)]
enum Want {
    Allow(&'static str),
    Approval(&'static str),
    DenyBy(&'static str),
    DenyNoRule,
}

#[test]
fn decisions_table() {
    use Want::*;
    let p = policy();
    let cases: &[(&str, Want)] = &[
        // roles: "*" matches anyone, even a subject no role knows
        ("slack:UNKNOWN status", Allow("read-anything")),
        ("console:stranger pods ns=anything", Allow("read-anything")),
        // help / whoami always allowed, even with no rule
        ("slack:UNKNOWN help", Allow(BUILTIN_RULE)),
        ("discord:1 whoami", Allow(BUILTIN_RULE)),
        // actions: not listed -> deny with a reason
        (
            "slack:UNKNOWN restart ns=production res=deployment/api",
            DenyNoRule,
        ),
        // namespaces + resources + when.replicas + approval
        (
            "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api replicas=5",
            Approval("scale-production"),
        ),
        (
            "slack:U9 slack-group:S0ONCALL scale ns=gc-storage res=deployment/api replicas=30",
            Approval("scale-production"),
        ),
        // namespace glob does not match
        (
            "slack:U9 slack-group:S0PLAT scale ns=api res=deployment/api replicas=5",
            DenyNoRule,
        ),
        // resource glob does not match (statefulset)
        (
            "slack:U9 slack-group:S0PLAT scale ns=production res=statefulset/db replicas=5",
            DenyNoRule,
        ),
        // replicas above max
        (
            "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api replicas=31",
            DenyNoRule,
        ),
        // when bounds the request does not carry do not match
        (
            "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api",
            DenyNoRule,
        ),
        // deny beats approval and allow; first deny in file order gives the reason
        (
            "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api replicas=0",
            DenyBy("no-scale-to-zero"),
        ),
        (
            "console:bob scale ns=staging replicas=0",
            DenyBy("no-scale-to-zero"),
        ),
        // allow without approval beats approval
        (
            "console:bob scale ns=staging replicas=3",
            Allow("scale-staging"),
        ),
        // namespaces key stated but the request names none: no match
        ("console:bob restart", DenyNoRule),
        // role via group vs. not holding the role
        (
            "slack:U9 slack-group:S0OTHER scale ns=staging replicas=3",
            DenyNoRule,
        ),
        // a user-kind subject passed as a group does not count as a group
        (
            "slack:U9 console:bob scale ns=staging replicas=3",
            DenyNoRule,
        ),
        // tail_lines
        (
            "slack:U9 slack-group:S0ONCALL logs tail=500",
            Allow("logs-short"),
        ),
        ("slack:U9 slack-group:S0ONCALL logs tail=501", DenyNoRule),
        ("slack:U9 slack-group:S0ONCALL logs", DenyNoRule),
        // severity + channels + action glob
        (
            "slack:U9 slack-group:S0ONCALL incident.open sev=P1 chan=C0OPS",
            Allow("incidents-p1-p2"),
        ),
        (
            "slack:U9 slack-group:S0ONCALL incident.close sev=P2 chan=C0INC42",
            Allow("incidents-p1-p2"),
        ),
        (
            "slack:U9 slack-group:S0ONCALL incident.open sev=P3 chan=C0OPS",
            DenyNoRule,
        ),
        (
            "slack:U9 slack-group:S0ONCALL incident.open sev=P1 chan=C0RANDOM",
            DenyNoRule,
        ),
        (
            "slack:U9 slack-group:S0ONCALL incident.open chan=C0OPS",
            DenyNoRule,
        ),
        (
            "slack:U9 slack-group:S0ONCALL incident.open sev=P1",
            DenyNoRule,
        ),
        // glob action does not cover other families
        (
            "slack:U9 slack-group:S0ONCALL alert.ack sev=P1 chan=C0OPS",
            DenyNoRule,
        ),
        // clusters
        (
            "slack:UDBA backup.run cluster=prod-tokyo",
            Allow("dba-backups"),
        ),
        ("slack:UDBA backup.run cluster=staging", DenyNoRule),
        ("slack:UDBA backup.run", DenyNoRule),
        // approval with several roles
        ("slack:UDBA rollback ns=api", Approval("dba-two-person")),
        // a deny rule matching `*` actions in one namespace, allow elsewhere
        (
            "discord:999 rollback ns=kube-system",
            DenyBy("security-no-rollback-in-kube-system"),
        ),
        ("discord:999 rollback ns=api", Allow("security-all")),
        // help is allowed even where a deny rule matches every action
        ("discord:999 help ns=kube-system", Allow(BUILTIN_RULE)),
    ];
    for (spec, want) in cases {
        let eval = p.evaluate(&req(spec));
        let ok = match (want, &eval.decision) {
            (Allow(r), Decision::Allow { rule }) => rule == r,
            (Approval(r), Decision::Approval { rule, .. }) => rule == r,
            (
                DenyBy(r),
                Decision::Deny {
                    rule: Some(rule), ..
                },
            ) => rule == r,
            (DenyNoRule, Decision::Deny { rule: None, reason }) => {
                reason.starts_with("no rule allows")
            }
            _ => false,
        };
        assert!(ok, "{spec}: wanted {want:?}, got {:?}", eval.decision);
        assert_eq!(eval.evaluated.len(), 10, "{spec}: every rule is traced");
    }
}

#[test]
fn deny_reason_comes_from_the_rule() {
    let eval = policy().evaluate(&req("console:bob scale ns=staging replicas=0"));
    assert_eq!(
        eval.decision,
        Decision::Deny {
            rule: Some("no-scale-to-zero".into()),
            reason: "scaling to zero is done by a DBA during a restore, by hand".into(),
        }
    );
}

#[test]
fn deny_reason_when_nothing_allows_says_what() {
    let eval = policy().evaluate(&req("slack:U1 scale ns=production res=deployment/api"));
    assert_eq!(
        eval.decision,
        Decision::Deny {
            rule: None,
            reason: "no rule allows `scale` on deployment/api in namespace production for slack:U1"
                .into(),
        }
    );
}

#[test]
fn approval_carries_the_requirement() {
    let eval = policy().evaluate(&req(
        "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api replicas=5",
    ));
    assert_eq!(
        eval.decision,
        Decision::Approval {
            rule: "scale-production".into(),
            requirement: Requirement {
                roles: vec!["sre-lead".into()],
                count: 1,
                ttl: Duration::from_secs(900),
                allow_self: false,
            },
        }
    );
    let eval = policy().evaluate(&req("slack:UDBA rollback"));
    let Decision::Approval { requirement, .. } = eval.decision else {
        panic!("wanted approval, got {:?}", eval.decision)
    };
    assert_eq!(
        requirement.roles,
        vec!["sre-lead".to_string(), "dba".into()]
    );
    assert_eq!(requirement.count, 2);
    assert_eq!(requirement.ttl, Duration::from_secs(3600));
    assert!(requirement.allow_self);
}

#[test]
fn traces_say_why() {
    let eval = policy().evaluate(&req(
        "slack:U9 slack-group:S0PLAT scale ns=api res=deployment/api replicas=5",
    ));
    let t = |name: &str| {
        eval.evaluated
            .iter()
            .find(|t| t.rule == name)
            .unwrap_or_else(|| panic!("no trace for {name}"))
    };
    assert!(!t("scale-production").matched);
    assert!(
        t("scale-production")
            .why
            .contains("namespace api matches none of `production`, `gc-*`"),
        "{}",
        t("scale-production").why
    );
    assert!(!t("read-anything").matched);
    assert!(
        t("read-anything").why.contains("action scale is not in"),
        "{}",
        t("read-anything").why
    );
    assert!(!t("no-scale-to-zero").matched);
    assert!(
        t("no-scale-to-zero")
            .why
            .contains("replicas 5 is not at most 0")
    );
    let order: Vec<&str> = eval.evaluated.iter().map(|t| t.rule.as_str()).collect();
    assert_eq!(
        &order[..3],
        ["read-anything", "no-scale-to-zero", "scale-production"]
    );

    let eval = policy().evaluate(&req(
        "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api replicas=5",
    ));
    let tr = eval
        .evaluated
        .iter()
        .find(|t| t.rule == "scale-production")
        .expect("trace");
    assert!(tr.matched);
    assert!(
        tr.why
            .contains("slack:U9 is platform-engineer via slack-group:S0PLAT"),
        "{}",
        tr.why
    );
}

#[test]
fn may_approve_rules() {
    let p = policy();
    let req_ = Requirement {
        roles: vec!["sre-lead".into()],
        count: 2,
        ttl: Duration::from_secs(900),
        allow_self: false,
    };
    let bob = s("console:bob");
    let sre = s("slack:U01SRE");
    let sre2 = s("discord:4242");
    let stranger = s("slack:U77");
    // direct member
    assert_eq!(p.may_approve(&req_, &bob, &sre, &[], &[]), Ok(()));
    // via a group subject
    assert_eq!(
        p.may_approve(&req_, &bob, &stranger, &[s("slack-group:S0SRE")], &[]),
        Ok(())
    );
    assert_eq!(
        p.may_approve(&req_, &bob, &stranger, &[s("discord-role:77")], &[]),
        Ok(())
    );
    // not holding the role
    let err = p.may_approve(&req_, &bob, &stranger, &[s("slack-group:S0PLAT")], &[]);
    assert!(
        err.as_ref()
            .is_err_and(|e| e.contains("holds none of the approval roles sre-lead")),
        "{err:?}"
    );
    // a user subject smuggled in as a group does not count
    assert!(
        p.may_approve(&req_, &bob, &stranger, std::slice::from_ref(&sre), &[])
            .is_err()
    );
    // distinct from earlier approvers
    let err = p.may_approve(&req_, &bob, &sre, &[], std::slice::from_ref(&sre));
    assert!(
        err.as_ref().is_err_and(|e| e.contains("already approved")),
        "{err:?}"
    );
    assert_eq!(
        p.may_approve(&req_, &bob, &sre2, &[], std::slice::from_ref(&sre)),
        Ok(())
    );
    // not the requester...
    let err = p.may_approve(&req_, &sre, &sre, &[], &[]);
    assert!(
        err.as_ref().is_err_and(|e| e.contains("may not approve")),
        "{err:?}"
    );
    // ...unless allow_self
    let selfish = Requirement {
        allow_self: true,
        ..req_.clone()
    };
    assert_eq!(p.may_approve(&selfish, &sre, &sre, &[], &[]), Ok(()));
    // allow_self does not grant the role
    assert!(
        p.may_approve(&selfish, &stranger, &stranger, &[], &[])
            .is_err()
    );
    // an approval role that does not exist in the policy never matches
    let ghost = Requirement {
        roles: vec!["ghost".into()],
        ..req_
    };
    assert!(p.may_approve(&ghost, &bob, &sre, &[], &[]).is_err());
}

#[test]
fn roles_of_direct_and_via_groups() {
    let p = policy();
    assert_eq!(
        p.roles_of(&s("slack:U01SRE"), &[]),
        vec!["sre-lead".to_string()]
    );
    assert_eq!(
        p.roles_of(
            &s("slack:U5"),
            &[s("slack-group:S0PLAT"), s("slack-group:S0ONCALL")]
        ),
        vec!["oncall".to_string(), "platform-engineer".into()]
    );
    assert_eq!(
        p.roles_of(&s("console:bob"), &[]),
        vec!["platform-engineer".to_string()]
    );
    assert!(
        p.roles_of(&s("slack:NOBODY"), &[s("slack-group:NONE")])
            .is_empty()
    );
}

#[test]
fn summary_and_accessors() {
    let p = policy();
    assert_eq!(
        p.summary(),
        "test.yaml: ok, 5 roles, 10 rules (2 deny, 2 with approval)"
    );
    assert_eq!(p.rule_names().len(), 10);
    assert_eq!(p.rule_names()[0], "read-anything");
    assert_eq!(
        p.role_names(),
        ["dba", "oncall", "platform-engineer", "security", "sre-lead"]
    );
    assert_eq!(
        p.role_members("platform-engineer").map(<[Subject]>::to_vec),
        Some(vec![s("slack-group:S0PLAT"), s("console:bob")])
    );
}

#[test]
fn approval_defaults() {
    let p = Policy::from_yaml(
        "version: 1\nroles: {lead: {members: [\"console:a\"]}}\nrules:\n  - {name: r, roles: [\"*\"], actions: [restart], approval: {roles: [lead]}}\n",
        "d.yaml",
    )
    .expect("loads");
    let eval = p.evaluate(&Request::new(s("console:z"), Action::Restart));
    assert_eq!(
        eval.decision,
        Decision::Approval {
            rule: "r".into(),
            requirement: Requirement {
                roles: vec!["lead".into()],
                count: 1,
                ttl: Duration::from_secs(15 * 60),
                allow_self: false,
            },
        }
    );
}

#[test]
fn first_matching_rule_in_file_order_wins_within_a_kind() {
    let p = Policy::from_yaml(
        r#"version: 1
roles: {a: {members: ["console:a"]}, b: {members: ["console:b"]}}
rules:
  - {name: appr-1, roles: ["*"], actions: [restart], approval: {roles: [a], ttl: 5m}}
  - {name: appr-2, roles: ["*"], actions: [restart], approval: {roles: [b], ttl: 1h}}
  - {name: deny-1, roles: ["*"], actions: [rollback], effect: deny, reason: first}
  - {name: deny-2, roles: ["*"], actions: [rollback], effect: deny, reason: second}
  - {name: allow-1, roles: ["*"], actions: [status]}
  - {name: allow-2, roles: ["*"], actions: [status]}
"#,
        "o.yaml",
    )
    .expect("loads");
    let user = s("console:x");
    let d = |a| p.evaluate(&Request::new(user.clone(), a)).decision;
    assert!(
        matches!(d(Action::Restart), Decision::Approval { rule, requirement } if rule == "appr-1" && requirement.roles == ["a"])
    );
    assert_eq!(
        d(Action::Rollback),
        Decision::Deny {
            rule: Some("deny-1".into()),
            reason: "first".into()
        }
    );
    assert_eq!(
        d(Action::Status),
        Decision::Allow {
            rule: "allow-1".into()
        }
    );
}

#[test]
fn severity_and_action_parsing() {
    assert_eq!("p3".parse::<Severity>(), Ok(Severity::P3));
    assert!("P5".parse::<Severity>().is_err());
    assert_eq!("hpa.set".parse::<Action>(), Ok(Action::HpaSet));
    let err = "scael".parse::<Action>().expect_err("typo");
    assert!(err.contains("did you mean `scale`?"), "{err}");
    assert!(s("slack-group:S1").is_group());
    assert!(s("discord-role:1").is_group());
    assert!(!s("console:a").is_group());
    assert_eq!(s("slack:U1").kind(), "slack");
    assert_eq!(s("slack:U1").id(), "U1");
}

#[test]
fn explain_json_shape() {
    let p = policy();
    let v = p
        .evaluate(&req(
            "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api replicas=5",
        ))
        .to_json();
    assert_eq!(v["decision"], "approval");
    assert_eq!(v["rule"], "scale-production");
    assert_eq!(
        v["approval"],
        serde_json::json!({"roles": ["sre-lead"], "count": 1, "ttl_seconds": 900, "allow_self": false})
    );
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("1 approval from sre-lead within 15m"))
    );
    let ev = v["evaluated"].as_array().expect("array");
    assert_eq!(ev.len(), 10);
    assert_eq!(ev[2]["rule"], "scale-production");
    assert_eq!(ev[2]["matched"], true);
    assert!(ev[0]["why"].is_string());
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 5);

    let line = p.evaluate(&req("slack:U1 status")).to_json_string();
    assert!(
        line.starts_with(r#"{"decision":"allow","rule":"read-anything","reason":"allowed by rule `read-anything`","approval":null,"evaluated":[{"rule":"read-anything","matched":true,"why":"#),
        "{line}"
    );
    assert!(!line.contains('\n'));

    let v = p.evaluate(&req("slack:U1 restart")).to_json();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], serde_json::Value::Null);
    assert_eq!(v["approval"], serde_json::Value::Null);
    assert_eq!(v["reason"], "no rule allows `restart` for slack:U1");

    let v = p.evaluate(&req("slack:U1 status")).to_json();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["rule"], "read-anything");
    assert_eq!(v["reason"], "allowed by rule `read-anything`");
}

#[test]
fn explain_text() {
    let p = policy();
    let t = p
        .evaluate(&req(
            "slack:U9 slack-group:S0PLAT scale ns=production res=deployment/api replicas=5",
        ))
        .to_text();
    assert!(
        t.starts_with("decision: approval\nrule:     scale-production\n"),
        "{t}"
    );
    assert!(
        t.contains("approval: 1 of sre-lead within 15m (900s), the requester may not approve"),
        "{t}"
    );
    assert!(t.contains("  [match] scale-production: matched: "), "{t}");
    assert!(
        t.contains("  [no   ] read-anything: action scale is not in"),
        "{t}"
    );
}

/// When Slack's user groups cannot be read, a deny rule that a group could bring in denies:
/// an outage of the lookup must not lift a ban on a group.
#[test]
fn unknown_groups_keep_group_bans_in_force() {
    let policy = Policy::from_yaml(
        r#"version: 1
roles:
  engineers:   { members: ["slack:U1", "discord:1"] }
  contractors: { members: ["slack-group:S0CONTRACT"] }
rules:
  - name: no-contractors-in-production
    roles: [contractors]
    actions: [scale]
    namespaces: [production]
    effect: deny
    reason: contractors do not change production
  - name: engineers-scale
    roles: [engineers]
    actions: [scale]
"#,
        "policy.yaml",
    )
    .unwrap();
    let scale = |user: &str, ns: &str, unknown: bool| Request {
        namespace: Some(ns.to_owned()),
        groups_unknown: unknown,
        ..Request::new(Subject::parse(user).unwrap(), Action::Scale)
    };

    // Groups read, not a contractor: allowed.
    assert!(matches!(
        policy.decide(&scale("slack:U1", "production", false)),
        Decision::Allow { .. }
    ));
    // Groups unknown: the contractors' ban could apply, so it does, saying why.
    let unknown = scale("slack:U1", "production", true);
    let Decision::Deny { rule, reason } = policy.decide(&unknown) else {
        panic!("denied while the groups are unknown");
    };
    assert_eq!(rule.as_deref(), Some("no-contractors-in-production"));
    assert_eq!(
        reason,
        "slack:U1's groups could not be read, and rule no-contractors-in-production denies \
         this to members of some groups; try again in a minute"
    );
    assert_eq!(policy.evaluate(&unknown).decision, policy.decide(&unknown));
    // Where no group's rule could deny, unknown groups change nothing.
    assert!(matches!(
        policy.decide(&scale("slack:U1", "staging", true)),
        Decision::Allow { .. }
    ));
    // Slack's groups say nothing about a Discord user.
    assert!(matches!(
        policy.decide(&scale("discord:1", "production", true)),
        Decision::Allow { .. }
    ));
}
