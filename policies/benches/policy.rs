//! Policy load, decision and explanation at 10 / 1,000 / 10,000 rules. Prints figures; asserts
//! nothing about speed. `cargo bench -p opsbot-policies --bench policy` (release build);
//! `-- --write-policies DIR` writes the generated policies instead.
//!
//! The generated policy looks like a large organisation's: one role per team (a few members
//! and a group each), and per team a read rule, a scale rule with an approval, a deny rule in a
//! protected namespace and a logs rule, limited by literal, prefix and brace globs. The request
//! is a team member's `scale` in that team's namespace, which most rules name by action.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use opsbot_policies::{Action, Policy, Request, Subject};

/// Policy YAML with `rules` rules (four per team).
fn policy_yaml(rules: usize) -> String {
    let teams = rules.div_ceil(4);
    let mut s = String::from("version: 1\nroles:\n  sre-lead: { members: [\"slack:ULEAD\"] }\n");
    for t in 0..teams {
        let _ = writeln!(
            s,
            "  team-{t}: {{ members: [\"slack:U{t}A\", \"slack:U{t}B\", \"slack-group:S{t}\"] }}"
        );
    }
    s.push_str("rules:\n");
    let mut written = 0;
    'teams: for t in 0..teams {
        let team_rules = [
            format!(
                "  - {{ name: read-{t}, roles: [team-{t}], actions: [status, pods, events, logs], namespaces: [\"team-{t}\", \"team-{t}-*\"] }}\n"
            ),
            format!(
                "  - {{ name: scale-{t}, roles: [team-{t}], actions: [scale, restart], namespaces: [\"team-{t}\"], resources: [\"deployment/svc-{t}-*\", \"statefulset/{{db,cache}}-{t}\"], when: {{ replicas: {{ min: 1, max: 20 }} }}, approval: {{ roles: [sre-lead] }} }}\n"
            ),
            format!(
                "  - {{ name: protect-{t}, roles: [\"*\"], actions: [\"*\"], namespaces: [\"team-{t}-system\"], effect: deny, reason: \"team {t}'s system namespace\" }}\n"
            ),
            format!(
                "  - {{ name: incidents-{t}, roles: [team-{t}], actions: [\"incident.*\"], channels: [\"C0TEAM{t}X*\"], when: {{ severity: [P1, P2] }} }}\n"
            ),
        ];
        for rule in team_rules {
            if written == rules {
                break 'teams;
            }
            s.push_str(&rule);
            written += 1;
        }
    }
    s
}

/// The last team's member asking to scale its service: every scale rule is looked at.
fn request(rules: usize) -> Request {
    let t = rules.div_ceil(4) - 1;
    let mut r = Request::new(
        Subject::parse(&format!("slack:U{t}A")).expect("subject"),
        Action::Scale,
    );
    r.namespace = Some(format!("team-{t}"));
    r.resource = Some(format!("deployment/svc-{t}-api"));
    r.cluster = Some("prod".into());
    r.channel = Some("C0OPS".into());
    r.replicas = Some(5);
    r
}

/// Mean time of `f` over enough runs to fill about `budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 3 || start.elapsed() < budget {
        f();
        runs += 1;
    }
    start.elapsed() / runs
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn main() {
    // `-- --write-policies DIR`: only write the generated policies (`DIR/policy-N.yaml`), for
    // scripts/bench.sh to time the whole `opsbot policy explain` command on them.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--write-policies") {
        let dir = std::path::Path::new(args.get(at + 1).expect("--write-policies DIR"));
        for rules in [10, 1_000, 10_000] {
            let path = dir.join(format!("policy-{rules}.yaml"));
            std::fs::write(&path, policy_yaml(rules)).expect("write the policy");
        }
        return;
    }
    let budget = Duration::from_millis(700);
    println!(
        "{:>7} {:>12} {:>12} {:>14} {:>14}",
        "rules", "load", "decide", "evaluate", "explain (text)"
    );
    for rules in [10, 1_000, 10_000] {
        let yaml = policy_yaml(rules);
        let policy = Policy::from_yaml(&yaml, "bench.yaml").expect("generated policy loads");
        let req = request(rules);
        let load = time(budget, || {
            black_box(Policy::from_yaml(black_box(&yaml), "bench.yaml").ok());
        });
        let decide = time(budget, || {
            black_box(policy.decide(black_box(&req)));
        });
        let evaluate = time(budget, || {
            black_box(policy.evaluate(black_box(&req)));
        });
        let explain = time(budget, || {
            black_box(policy.evaluate(black_box(&req)).to_text());
        });
        println!(
            "{rules:>7} {:>12} {:>12} {:>14} {:>14}",
            show(load),
            show(decide),
            show(evaluate),
            show(explain)
        );
    }
}
