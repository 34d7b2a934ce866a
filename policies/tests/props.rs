//! Property tests: evaluation is deterministic, adding a deny rule never loosens a decision,
//! the engine's fast decision always equals the explained one, globs match as globset's own
//! matcher says, and neither loading nor evaluating panics on any input.

use opsbot_policies::{Action, Decision, Policy, Request, Severity, Subject};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const ROLES: [&str; 3] = ["lead", "eng", "oncall"];
const MEMBERS: [&str; 6] = [
    "slack:U1",
    "slack:U2",
    "slack-group:G1",
    "discord:D1",
    "discord-role:R1",
    "console:alice",
];
const USERS: [&str; 5] = [
    "slack:U1",
    "slack:U2",
    "discord:D1",
    "console:alice",
    "slack:U9",
];
const GROUPS: [&str; 3] = ["slack-group:G1", "discord-role:R1", "slack-group:G9"];
const ACTIONS: [&str; 7] = [
    "status",
    "scale",
    "restart",
    "logs",
    "incident.*",
    "*",
    "hpa.set",
];
const NAMESPACES: [&str; 4] = ["production", "gc-*", "api", "*"];
const RESOURCES: [&str; 3] = ["deployment/*", "statefulset/db", "*/api"];
const CLUSTERS: [&str; 2] = ["prod-*", "staging"];
const CHANNELS: [&str; 2] = ["C0OPS", "C0INC*"];

#[derive(Debug, Clone)]
struct RuleModel {
    roles: Vec<&'static str>,
    actions: Vec<&'static str>,
    namespaces: Option<Vec<&'static str>>,
    resources: Option<Vec<&'static str>>,
    clusters: Option<Vec<&'static str>>,
    channels: Option<Vec<&'static str>>,
    replicas: Option<(Option<i64>, Option<i64>)>,
    tail_max: Option<i64>,
    severity: Option<Vec<&'static str>>,
    deny: bool,
    approval: Option<(Vec<&'static str>, u32, bool)>,
}

fn list(items: &[&str]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(", "))
}

impl RuleModel {
    fn yaml(&self, name: &str) -> String {
        let mut s = format!(
            "  - name: {name}\n    roles: {}\n    actions: {}\n",
            list(&self.roles),
            list(&self.actions)
        );
        for (key, v) in [
            ("namespaces", &self.namespaces),
            ("resources", &self.resources),
            ("clusters", &self.clusters),
            ("channels", &self.channels),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("    {key}: {}\n", list(v)));
            }
        }
        let mut when = Vec::new();
        if let Some((min, max)) = self.replicas {
            let mut b = Vec::new();
            if let Some(m) = min {
                b.push(format!("min: {m}"));
            }
            if let Some(m) = max {
                b.push(format!("max: {m}"));
            }
            when.push(format!("replicas: {{ {} }}", b.join(", ")));
        }
        if let Some(m) = self.tail_max {
            when.push(format!("tail_lines: {{ max: {m} }}"));
        }
        if let Some(sev) = &self.severity {
            when.push(format!("severity: {}", list(sev)));
        }
        if !when.is_empty() {
            s.push_str(&format!("    when: {{ {} }}\n", when.join(", ")));
        }
        if self.deny {
            s.push_str("    effect: deny\n    reason: \"denied by test\"\n");
        } else if let Some((roles, count, allow_self)) = &self.approval {
            s.push_str(&format!(
                "    approval: {{ roles: {}, count: {count}, ttl: 10m, allow_self: {allow_self} }}\n",
                list(roles)
            ));
        }
        s
    }
}

fn nonempty<const N: usize>(pool: [&'static str; N]) -> impl Strategy<Value = Vec<&'static str>> {
    subsequence(pool.to_vec(), 1..=N)
}

fn rule_model(force_deny: bool) -> impl Strategy<Value = RuleModel> {
    let bounds = (option::of(0i64..5), option::of(0i64..40))
        .prop_filter("some bound", |(a, b)| a.is_some() || b.is_some())
        .prop_map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if a > b => (Some(b), Some(a)),
            other => other,
        });
    (
        prop_oneof![Just(vec!["*"]), nonempty(ROLES)],
        nonempty(ACTIONS),
        option::of(nonempty(NAMESPACES)),
        option::of(nonempty(RESOURCES)),
        option::of(nonempty(CLUSTERS)),
        option::of(nonempty(CHANNELS)),
        option::of(bounds),
        option::of(0i64..1000),
        option::of(nonempty(["P1", "P2", "P3", "P4"])),
        any::<bool>(),
        option::of((nonempty(ROLES), 1u32..3, any::<bool>())),
    )
        .prop_map(
            move |(
                roles,
                actions,
                namespaces,
                resources,
                clusters,
                channels,
                replicas,
                tail_max,
                severity,
                deny,
                approval,
            )| RuleModel {
                roles,
                actions,
                namespaces,
                resources,
                clusters,
                channels,
                replicas,
                tail_max,
                severity,
                deny: deny || force_deny,
                approval,
            },
        )
}

fn policy_yaml(members: &[Vec<&'static str>], rules: &[RuleModel]) -> String {
    policy_yaml_with(members, rules, None)
}

/// The policy text; `extra` inserts one more rule, named `extra`, before rule `at`.
fn policy_yaml_with(
    members: &[Vec<&'static str>],
    rules: &[RuleModel],
    extra: Option<(usize, &RuleModel)>,
) -> String {
    let mut s = String::from("version: 1\nroles:\n");
    for (role, m) in ROLES.iter().zip(members) {
        s.push_str(&format!("  {role}: {{ members: {} }}\n", list(m)));
    }
    s.push_str("rules:\n");
    for i in 0..=rules.len() {
        if let Some((at, r)) = extra
            && at == i
        {
            s.push_str(&r.yaml("extra"));
        }
        if let Some(r) = rules.get(i) {
            s.push_str(&r.yaml(&format!("rule-{i}")));
        }
    }
    s
}

fn policy_models() -> impl Strategy<Value = (Vec<Vec<&'static str>>, Vec<RuleModel>)> {
    (
        vec(subsequence(MEMBERS.to_vec(), 0..=3), 3),
        vec(rule_model(false), 0..7),
    )
}

fn load(src: &str) -> Policy {
    match Policy::from_yaml(src, "gen.yaml") {
        Ok(p) => p,
        Err(e) => panic!("generated policy must load:\n{e}\n---\n{src}"),
    }
}

fn subject(s: &str) -> Subject {
    Subject::parse(s).expect("pool subjects are valid")
}

fn request() -> impl Strategy<Value = Request> {
    (
        select(USERS.to_vec()),
        subsequence(GROUPS.to_vec(), 0..=3),
        select(Action::ALL.to_vec()),
        option::of(select(vec![
            "production",
            "gc-storage",
            "api",
            "kube-system",
        ])),
        option::of(select(vec![
            "deployment/api",
            "statefulset/db",
            "cronjob/backup",
        ])),
        option::of(select(vec!["prod-1", "staging"])),
        option::of(select(vec!["C0OPS", "C0INC7", "C0RANDOM"])),
        option::of(prop_oneof![-2i64..45, any::<i64>()]),
        option::of(prop_oneof![0i64..1200, any::<i64>()]),
        option::of(select(Severity::ALL.to_vec())),
        any::<bool>(),
    )
        .prop_map(
            |(user, groups, action, ns, res, cluster, channel, replicas, tail, sev, unknown)| {
                Request {
                    user: subject(user),
                    groups: groups.into_iter().map(subject).collect(),
                    groups_unknown: unknown,
                    channel: channel.map(str::to_owned),
                    action,
                    cluster: cluster.map(str::to_owned),
                    namespace: ns.map(str::to_owned),
                    resource: res.map(str::to_owned),
                    replicas,
                    tail_lines: tail,
                    severity: sev,
                }
            },
        )
}

/// A request with arbitrary strings and numbers.
fn wild_request() -> impl Strategy<Value = Request> {
    (
        "[a-z-]{1,12}:[^\\s\\p{C}]{1,20}",
        vec("slack-group:[^\\s\\p{C}]{1,8}", 0..4),
        select(Action::ALL.to_vec()),
        option::of(any::<String>()),
        option::of(any::<String>()),
        option::of(any::<String>()),
        option::of(any::<String>()),
        option::of(any::<i64>()),
        option::of(any::<i64>()),
        option::of(select(Severity::ALL.to_vec())),
        any::<bool>(),
    )
        .prop_map(
            |(user, groups, action, ns, res, cluster, channel, replicas, tail, sev, unknown)| {
                Request {
                    user: Subject::parse(&user).unwrap_or_else(|_| subject("console:fallback")),
                    groups: groups
                        .iter()
                        .filter_map(|g| Subject::parse(g).ok())
                        .collect(),
                    groups_unknown: unknown,
                    channel,
                    action,
                    cluster,
                    namespace: ns,
                    resource: res,
                    replicas,
                    tail_lines: tail,
                    severity: sev,
                }
            },
        )
}

/// Rank of a decision's permissiveness: deny < approval < allow.
fn rank(d: &Decision) -> u8 {
    match d {
        Decision::Deny { .. } => 0,
        Decision::Approval { .. } => 1,
        Decision::Allow { .. } => 2,
    }
}

/// YAML-shaped text built from the policy vocabulary, to reach deep into validation.
fn yamlish() -> impl Strategy<Value = String> {
    let tokens = vec![
        "version",
        "roles",
        "rules",
        "members",
        "name",
        "actions",
        "namespaces",
        "resources",
        "clusters",
        "channels",
        "when",
        "replicas",
        "min",
        "max",
        "tail_lines",
        "severity",
        "effect",
        "deny",
        "allow",
        "reason",
        "approval",
        "count",
        "ttl",
        "allow_self",
        "15m",
        "0",
        "1",
        "-1",
        "99999999999999999999999",
        "true",
        "null",
        "~",
        "\"*\"",
        "slack:U1",
        "slack-group:G",
        "P1",
        "scale",
        "incident.*",
        "[",
        "]",
        "{",
        "}",
        ":",
        ": ",
        ", ",
        "- ",
        "\n",
        "\n  ",
        "\n    ",
        "&a ",
        "*a",
        "<<: ",
        "!!str ",
        "'",
        "\"",
        "#",
        "---\n",
        "[bad",
        "\t",
        "?",
        "|\n  x",
        ">-\n  y",
    ];
    vec(select(tokens), 0..80).prop_map(|t| t.concat())
}

const SEED: &str = include_str!("../../deploy/policy.example.yaml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_policies_load_and_evaluation_is_deterministic(
        (members, rules) in policy_models(),
        reqs in vec(request(), 1..8),
    ) {
        let src = policy_yaml(&members, &rules);
        let p = load(&src);
        let again = load(&src);
        for r in &reqs {
            let first = p.evaluate(r);
            prop_assert_eq!(&first, &p.evaluate(r));
            prop_assert_eq!(&first, &again.evaluate(r));
            prop_assert_eq!(&first, &p.clone().evaluate(r));
            prop_assert_eq!(first.evaluated.len(), rules.len());
        }
    }

    #[test]
    fn a_ban_a_group_could_bring_stands_while_groups_are_unknown(
        (mut members, rules) in policy_models(),
        ban in rule_model(true),
        at in any::<prop::sample::Index>(),
        reqs in vec(request(), 1..8),
    ) {
        // One more deny rule, on every action of a role a Slack group holds; and at the end an
        // allow for everyone, so that without the group most requests would be allowed.
        if !members[0].contains(&"slack-group:G1") {
            members[0].push("slack-group:G1");
        }
        let ban = RuleModel {
            roles: vec![ROLES[0]],
            actions: ACTIONS.to_vec(),
            namespaces: None,
            resources: None,
            clusters: None,
            channels: None,
            replicas: None,
            tail_max: None,
            severity: None,
            ..ban
        };
        let mut rules = rules;
        rules.push(RuleModel { roles: vec!["*"], deny: false, approval: None, ..ban.clone() });
        let p = load(&policy_yaml_with(&members, &rules, Some((at.index(rules.len()), &ban))));
        for r in &reqs {
            let known = Request { groups_unknown: false, ..r.clone() };
            let unknown = Request { groups_unknown: true, ..r.clone() };
            let decided = p.decide(&unknown);
            prop_assert!(rank(&decided) <= rank(&p.decide(&known)));
            // Were the person in any one group of their platform, and a rule denied it: they
            // might be, so it is denied.
            let platform_group = match r.user.kind() {
                "slack" => "slack-group",
                "discord" => "discord-role",
                _ => continue,
            };
            for g in MEMBERS.iter().filter(|m| m.starts_with(&format!("{platform_group}:"))) {
                let mut with = known.clone();
                with.groups.push(subject(g));
                if matches!(p.decide(&with), Decision::Deny { rule: Some(_), .. }) {
                    prop_assert!(
                        matches!(decided, Decision::Deny { .. }),
                        "in {} it is denied, with groups unknown {:?}", g, decided
                    );
                }
            }
        }
    }

    #[test]
    fn adding_a_deny_rule_never_loosens_a_decision(
        (members, rules) in policy_models(),
        extra in rule_model(true),
        at in any::<prop::sample::Index>(),
        reqs in vec(request(), 1..8),
    ) {
        let before = load(&policy_yaml(&members, &rules));
        let after = load(&policy_yaml_with(&members, &rules, Some((at.index(rules.len() + 1), &extra))));
        for r in &reqs {
            let b = before.evaluate(r).decision;
            let a = after.evaluate(r).decision;
            prop_assert!(rank(&a) <= rank(&b), "before {:?}, after {:?} for {:?}", b, a, r);
            // and when it stays an approval, it is the same rule's approval
            if let (Decision::Approval { rule: rb, .. }, Decision::Approval { rule: ra, .. }) = (&b, &a) {
                prop_assert_eq!(rb, ra);
            }
        }
    }

    #[test]
    fn random_text_never_panics_and_errors_are_located(src in any::<String>()) {
        if let Err(e) = Policy::from_yaml(&src, "r.yaml") {
            prop_assert!(!e.0.is_empty());
            prop_assert!(e.0.iter().all(|e| e.line >= 1 && e.column >= 1), "{}", e);
            prop_assert!(e.0.iter().all(|e| e.hint.is_some()), "{}", e);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        let src = String::from_utf8_lossy(&bytes);
        let _ = Policy::from_yaml(&src, "b.yaml");
    }

    #[test]
    fn yamlish_text_never_panics(src in yamlish()) {
        if let Err(e) = Policy::from_yaml(&src, "y.yaml") {
            prop_assert!(e.0.iter().all(|e| e.line >= 1 && e.column >= 1), "{}", e);
            prop_assert!(e.0.iter().all(|e| e.hint.is_some()), "{}", e);
        }
    }

    #[test]
    fn mutated_example_never_panics(
        cut in any::<prop::sample::Index>(),
        len in 0usize..40,
        insert in "[-:{}\\[\\]*a-z0-9 \n\"']{0,12}",
    ) {
        let chars: Vec<char> = SEED.chars().collect();
        let start = cut.index(chars.len() + 1);
        let end = (start + len).min(chars.len());
        let mut s: String = chars[..start].iter().collect();
        s.push_str(&insert);
        s.extend(&chars[end..]);
        if let Ok(p) = Policy::from_yaml(&s, "m.yaml") {
            let _ = p.evaluate(&Request::new(subject("console:bob"), Action::Scale));
        }
    }

    #[test]
    fn wild_requests_never_panic((members, rules) in policy_models(), reqs in vec(wild_request(), 1..6)) {
        let p = load(&policy_yaml(&members, &rules));
        let example = load(SEED);
        for r in &reqs {
            for pol in [&p, &example] {
                let e = pol.evaluate(r);
                let _ = e.to_json();
                let _ = e.to_text();
                if let Decision::Approval { requirement, .. } = &e.decision {
                    let _ = pol.may_approve(requirement, &r.user, &r.user, &r.groups, &r.groups);
                }
                let _ = pol.roles_of(&r.user, &r.groups);
            }
        }
    }

    #[test]
    fn decide_always_equals_the_explained_decision(
        (members, rules) in policy_models(),
        reqs in vec(request(), 1..8),
        wild in vec(wild_request(), 1..4),
    ) {
        let p = load(&policy_yaml(&members, &rules));
        let example = load(SEED);
        for r in reqs.iter().chain(&wild) {
            for pol in [&p, &example] {
                prop_assert_eq!(pol.decide(r), pol.evaluate(r).decision);
            }
        }
    }

    #[test]
    fn globs_match_as_globsets_matcher_says(
        patterns in subsequence(GLOBS.to_vec(), 1..6),
        value in prop_oneof![select(VALUES.to_vec()).prop_map(str::to_owned), "[a-z/.*{}-]{0,12}", any::<String>()],
    ) {
        // Single-quoted YAML: backslashes reach the glob as written.
        let quoted: Vec<String> = patterns.iter().map(|g| format!("'{g}'")).collect();
        let src = format!(
            "version: 1\nrules:\n  - {{ name: only, roles: [\"*\"], actions: [status], namespaces: [{}] }}\n",
            quoted.join(", ")
        );
        let p = load(&src);
        let mut req = Request::new(subject("console:bob"), Action::Status);
        req.namespace = Some(value.clone());
        let expected = patterns.iter().any(|g| {
            globset::GlobBuilder::new(g)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .expect("pool globs are valid")
                .compile_matcher()
                .is_match(&value)
        });
        let decision = p.decide(&req);
        prop_assert_eq!(matches!(decision, Decision::Allow { .. }), expected, "{:?} on {:?}", patterns, value);
        prop_assert_eq!(decision, p.evaluate(&req).decision);
    }
}

/// Globs of every shape globset treats differently (literal, prefix, suffix, basename,
/// extension, alternatives, classes, escapes, `**`).
const GLOBS: [&str; 16] = [
    "production",
    "gc-*",
    "*-prod",
    "*",
    "**",
    "**/x",
    "a/**",
    "*.d",
    "{api,web}-*",
    "[a-c]?",
    "team-[!0-9]*",
    "x\\*",
    "*/api",
    "?",
    "a*b*c",
    ".hidden",
];
const VALUES: [&str; 16] = [
    "production",
    "gc-storage",
    "eu-prod",
    "",
    "x",
    "a/b/x",
    "a/",
    "conf.d",
    "api-1",
    "b1",
    "team-x",
    "x*",
    "deployment/api",
    "abc",
    ".hidden",
    "a/.hidden",
];
