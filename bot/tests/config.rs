//! Configuration: defaults, a full file, environment overrides, secrets from files, masking,
//! and `FILE:LINE:COL` errors. The environment is a map here, never the process's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opsbot::config::{ClusterSource, Config, ConfigErrors, Secret, describe_database_url};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(yaml: &str) -> Result<Config, ConfigErrors> {
    Config::from_yaml_with_env(yaml, Some(Path::new("conf/opsbot.yaml")), &env(&[]))
}

fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn an_empty_file_is_valid_and_has_defaults() {
    for yaml in ["", "\n# nothing\n", "---\n"] {
        let c = parse(yaml).expect("empty is valid");
        assert_eq!(c.data_dir, PathBuf::from("conf/data"));
        assert_eq!(c.database_url.expose(), "sqlite://conf/data/opsbot.db");
        assert_eq!(c.policy, PathBuf::from("conf/policy.yaml"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.body_timeout, Duration::from_secs(10));
        assert_eq!(c.http.max_connections, 512);
        assert!(c.clusters.is_empty());
        assert!(c.channels.is_empty());
        assert_eq!(c.rate_limits.per_user.per_minute.get(), 20);
        assert_eq!(c.approvals.default_ttl, Duration::from_secs(900));
        assert_eq!(c.approvals.sweep_interval, Duration::from_secs(30));
        assert!(!c.slack.is_configured());
        assert_eq!(c.slack.api_url, "https://slack.com/api");
        assert!(!c.discord.is_configured());
    }
    let d = Config::default();
    assert_eq!(d.data_dir, PathBuf::from("data"));
    assert_eq!(d.database_url.expose(), "sqlite://data/opsbot.db");
}

const FULL: &str = r##"
data_dir: /var/lib/opsbot
database:
  url: postgres://opsbot:s3cret-pw@db.internal:5432/opsbot
policy: /etc/opsbot/policy.yaml
listen: 0.0.0.0:9090
http: { header_timeout: 5s, body_timeout: 20s, max_connections: 100 }
clusters:
  - name: prod
    context: prod-eu
    kubeconfig: kube/config
    default_namespace: production
  - name: local
    in_cluster: true
channels:
  C0OPS: { namespace: production, cluster: prod }
  "#dev": { namespace: dev }
rate_limits:
  per_user: { per_minute: 10, burst: 3 }
  global: { per_minute: 100, burst: 20 }
approvals:
  default_ttl: 10m
  sweep_interval: 5s
slack:
  bot_token: xoxb-inline-token
  signing_secret: inline-signing-secret
  socket_mode: true
  api_url: http://127.0.0.1:9999/api
discord:
  application_id: "1234"
alerts: {}
"##;

#[test]
fn a_full_file_is_read() {
    let c = parse(FULL).expect("valid");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/opsbot"));
    assert_eq!(
        c.database_url.expose(),
        "postgres://opsbot:s3cret-pw@db.internal:5432/opsbot"
    );
    assert_eq!(c.policy, PathBuf::from("/etc/opsbot/policy.yaml"));
    assert_eq!(c.listen.to_string(), "0.0.0.0:9090");
    assert_eq!(c.http.header_timeout, Duration::from_secs(5));
    assert_eq!(c.http.body_timeout, Duration::from_secs(20));
    assert_eq!(c.http.max_connections, 100);
    assert_eq!(c.clusters.len(), 2);
    assert_eq!(c.clusters[0].name, "prod");
    assert_eq!(
        c.clusters[0].source,
        ClusterSource::Kubeconfig {
            path: Some(PathBuf::from("conf/kube/config")),
            context: Some("prod-eu".into())
        }
    );
    assert_eq!(c.clusters[0].default_namespace, "production");
    assert_eq!(c.cluster("local").unwrap().source, ClusterSource::InCluster);
    assert_eq!(c.cluster("local").unwrap().default_namespace, "default");
    assert_eq!(c.channels["C0OPS"].cluster.as_deref(), Some("prod"));
    assert_eq!(c.channels["#dev"].namespace.as_deref(), Some("dev"));
    assert_eq!(c.channels["#dev"].cluster, None);
    assert_eq!(c.rate_limits.per_user.per_minute.get(), 10);
    assert_eq!(c.rate_limits.per_user.burst.get(), 3);
    assert_eq!(
        c.rate_limits.per_channel.per_minute.get(),
        60,
        "default kept"
    );
    assert_eq!(c.rate_limits.global.burst.get(), 20);
    assert_eq!(c.approvals.default_ttl, Duration::from_secs(600));
    assert_eq!(c.approvals.sweep_interval, Duration::from_secs(5));
    assert_eq!(
        c.slack.bot_token.as_ref().unwrap().expose(),
        "xoxb-inline-token"
    );
    assert!(c.slack.socket_mode);
    assert_eq!(c.slack.api_url, "http://127.0.0.1:9999/api");
    assert_eq!(c.discord.application_id.as_deref(), Some("1234"));
}

#[test]
fn secrets_never_show_in_debug_or_summary() {
    let c = parse(FULL).unwrap();
    let debug = format!("{c:?}");
    let summary = c.summary();
    for secret in ["s3cret-pw", "xoxb-inline-token", "inline-signing-secret"] {
        assert!(!debug.contains(secret), "{secret} in Debug: {debug}");
        assert!(!summary.contains(secret), "{secret} in summary: {summary}");
    }
    assert!(
        summary.contains("postgres://opsbot@db.internal:5432/opsbot"),
        "{summary}"
    );
    assert!(
        summary.contains("prod: kubeconfig conf/kube/config context prod-eu"),
        "{summary}"
    );
    assert!(summary.contains("bot_token *** (set)"), "{summary}");
    assert!(summary.contains("app_token (not set)"), "{summary}");
    assert_eq!(format!("{}", Secret::new("x")), "***");
    assert_eq!(format!("{:?}", Secret::new("x")), "***");
}

/// Only scheme, user, host, port and database are shown, whatever else the URL holds.
#[test]
fn database_urls_show_only_where_they_point() {
    let cases = [
        ("postgres://u:pw@h/db", "postgres://u@h/db"),
        ("postgresql://u:pw@h:5433/db", "postgresql://u@h:5433/db"),
        ("postgres://u@h/db?password=pw", "postgres://u@h/db"),
        (
            "postgres://u@h/db?sslpassword=pw&sslmode=verify-full",
            "postgres://u@h/db",
        ),
        (
            "postgres://u@h/db?sslmode=require&password=pw",
            "postgres://u@h/db",
        ),
        (
            "postgres://u@h/db?application_name=x&password=pw&sslmode=require",
            "postgres://u@h/db",
        ),
        ("postgres://u:p%40w%3Ard@h/db", "postgres://u@h/db"),
        ("postgres://u:p@ss@h/db", "postgres://u@h/db"),
        (
            "postgres://?user=u&password=pw&host=h&port=5432&dbname=db",
            "postgres://u@h:5432/db",
        ),
        (
            "postgres:///db?host=/run/postgresql&user=u&password=pw",
            "postgres://u@/run/postgresql/db",
        ),
        ("postgres://h/db", "postgres://h/db"),
        ("sqlite://data/opsbot.db", "sqlite://data/opsbot.db"),
        ("sqlite:/tmp/x.db?mode=rwc&password=pw", "sqlite:/tmp/x.db"),
        ("sqlite::memory:", "sqlite::memory:"),
        (
            "postgres://u:pw@h:notaport/db",
            "<unparseable database URL>",
        ),
        ("not a url, pw", "<unparseable database URL>"),
    ];
    for (url, shown) in cases {
        assert_eq!(describe_database_url(url), shown, "{url}");
        assert!(!describe_database_url(url).contains("pw"), "{url}");
    }
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("app-token");
    std::fs::write(&token_file, "xapp-from-file\n").unwrap();
    let e = env(&[
        ("OPSBOT_DATABASE_URL", "sqlite:/tmp/x.db"),
        ("OPSBOT_POLICY", "p.yaml"),
        ("OPSBOT_LISTEN", "127.0.0.1:0"),
        ("OPSBOT_DATA_DIR", "/srv/opsbot"),
        ("OPSBOT_SLACK_BOT_TOKEN", "xoxb-env"),
        ("OPSBOT_SLACK_SIGNING_SECRET", "signing-env"),
        ("OPSBOT_SLACK_APP_TOKEN_FILE", token_file.to_str().unwrap()),
        ("OPSBOT_DISCORD_TOKEN", "discord-env"),
    ]);
    let c = Config::from_yaml_with_env(FULL, Some(Path::new("opsbot.yaml")), &e).unwrap();
    assert_eq!(c.database_url.expose(), "sqlite:/tmp/x.db");
    assert_eq!(c.policy, PathBuf::from("p.yaml"));
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.data_dir, PathBuf::from("/srv/opsbot"));
    assert_eq!(c.slack.bot_token.unwrap().expose(), "xoxb-env");
    assert_eq!(c.slack.signing_secret.unwrap().expose(), "signing-env");
    assert_eq!(c.slack.app_token.unwrap().expose(), "xapp-from-file");
    assert_eq!(c.discord.token.unwrap().expose(), "discord-env");

    // The default database follows OPSBOT_DATA_DIR.
    let c = Config::from_yaml_with_env("", None, &env(&[("OPSBOT_DATA_DIR", "/d")])).unwrap();
    assert_eq!(c.database_url.expose(), "sqlite:///d/opsbot.db");

    let err = Config::from_yaml_with_env("", None, &env(&[("OPSBOT_LISTEN", "nope")]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("OPSBOT_LISTEN: invalid address"), "{err}");
    let err = Config::from_yaml_with_env(
        "",
        None,
        &env(&[("OPSBOT_DATABASE_URL", "mysql://u:hunter2@h/db")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("OPSBOT_DATABASE_URL: "), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn secrets_come_from_files_next_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signing"), "from-file-secret\n").unwrap();
    std::fs::write(dir.path().join("db-url"), "postgres://u:pw@h/db\n").unwrap();
    let file = dir.path().join("opsbot.yaml");
    std::fs::write(
        &file,
        "slack:\n  signing_secret_file: signing\ndatabase:\n  url_file: db-url\n",
    )
    .unwrap();
    let c = Config::load_with_env(Some(&file), &env(&[])).unwrap();
    assert_eq!(c.slack.signing_secret.unwrap().expose(), "from-file-secret");
    assert_eq!(c.database_url.expose(), "postgres://u:pw@h/db");
    assert_eq!(c.source.as_deref(), Some(file.as_path()));

    // OPSBOT_CONFIG names the file when no path is given.
    let c =
        Config::load_with_env(None, &env(&[("OPSBOT_CONFIG", file.to_str().unwrap())])).unwrap();
    assert_eq!(c.source.as_deref(), Some(file.as_path()));

    std::fs::write(&file, "slack:\n  bot_token_file: missing\n").unwrap();
    let err = Config::load_with_env(Some(&file), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&format!("{}:2:", file.display())), "{err}");
    assert!(err.contains("bot_token_file: cannot read"), "{err}");

    std::fs::write(&file, "slack:\n  bot_token: x\n  bot_token_file: f\n").unwrap();
    let err = Config::load_with_env(Some(&file), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("either slack.bot_token or slack.bot_token_file"),
        "{err}"
    );

    let err = Config::load_with_env(Some(&dir.path().join("nope.yaml")), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.yaml: cannot read the configuration file"),
        "{err}"
    );
}

#[test]
fn bad_files_fail_with_file_line_col() {
    let e = errors("listen: 127.0.0.1:8080\nslak:\n  bot_token: x\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("conf/opsbot.yaml:2:1: "), "{e:?}");
    assert!(e[0].contains("slak"), "{e:?}");

    let e = errors("clusters:\n  - name: a\n    contxt: x\n");
    assert!(e[0].starts_with("conf/opsbot.yaml:3:5: "), "{e:?}");

    let e = errors("approvals:\n  default_ttl: soon\n");
    assert!(e[0].starts_with("conf/opsbot.yaml:2:16: "), "{e:?}");
    assert!(e[0].contains("invalid duration"), "{e:?}");

    let e = errors("rate_limits:\n  per_user: { per_minute: 0, burst: 1 }\n");
    assert!(e[0].starts_with("conf/opsbot.yaml:2:"), "{e:?}");

    let e = errors("listen: not-an-address\n");
    assert!(e[0].starts_with("conf/opsbot.yaml:1:9: "), "{e:?}");

    let e = errors("data_dir: [unclosed\n");
    assert!(e[0].starts_with("conf/opsbot.yaml:"), "{e:?}");

    // Semantic problems are all reported, each where it is.
    let e = errors(
        "clusters:\n  - name: a\n    in_cluster: true\n    context: c\n  - name: a\n\
         channels:\n  C1: { cluster: b }\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.starts_with("conf/opsbot.yaml:2:5: ") && m.contains("in_cluster")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with("conf/opsbot.yaml:5:11: ")
            && m.contains("duplicate cluster name \"a\"")),
        "{e:?}"
    );
    assert!(
        e.iter().any(
            |m| m.starts_with("conf/opsbot.yaml:7:18: ") && m.contains("unknown cluster \"b\"")
        ),
        "{e:?}"
    );
}

#[test]
fn hostile_input_never_panics() {
    for yaml in [
        "\0",
        ":",
        "- - - -",
        "data_dir: !!binary AAAA",
        "clusters: 5",
        "channels: [1, 2]",
        "rate_limits: { per_user: { per_minute: 99999999999999999999, burst: 1 } }",
        "&a [*a]",
        "a: &x b\nc: *x\n",
        "approvals: { default_ttl: 99999999999999999999999h }",
    ] {
        let _ = parse(yaml);
    }
}

/// Every configuration shown to users (README, Kubernetes ConfigMaps) is valid. Secrets come
/// from the environment here, so the `*_file` paths they name need not exist.
#[test]
fn documented_configurations_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let secrets = env(&[
        ("OPSBOT_DATABASE_URL", "postgres://opsbot:pw@db/opsbot"),
        ("OPSBOT_SLACK_BOT_TOKEN", "xoxb-test"),
        ("OPSBOT_SLACK_SIGNING_SECRET", "signing"),
        ("OPSBOT_SLACK_APP_TOKEN", "xapp-test"),
        ("OPSBOT_ALERTS_WEBHOOK_TOKEN", "am-webhook-test"),
        ("OPSBOT_DISCORD_TOKEN", "discord-test"),
    ]);
    let mut checked = 0;

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    if let Some(section) = readme.split("\n## Configuration").nth(1) {
        let block = section
            .split("```yaml\n")
            .nth(1)
            .and_then(|b| b.split("\n```").next())
            .expect("a yaml block in README's Configuration section");
        Config::from_yaml_with_env(block, Some(Path::new("README.md")), &secrets)
            .unwrap_or_else(|e| panic!("README configuration:\n{e}"));
        checked += 1;
    }

    for cm in [
        "deploy/kubernetes/configmap.yaml",
        "deploy/kubernetes/sqlite/configmap-patch.yaml",
    ] {
        let Ok(text) = std::fs::read_to_string(root.join(cm)) else {
            continue;
        };
        let body: String = text
            .split("  opsbot.yaml: |\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{cm}: no opsbot.yaml key"))
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
            .collect();
        let c = Config::from_yaml_with_env(&body, Some(Path::new(cm)), &secrets)
            .unwrap_or_else(|e| panic!("{cm}:\n{e}"));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/opsbot"), "{cm}");
        checked += 1;
    }
    assert!(checked >= 1, "no documented configuration found");
}

#[test]
fn the_audit_section_defaults_to_data_dir_and_checks_its_channel() {
    let c = parse("data_dir: state\n").unwrap();
    assert_eq!(c.audit.key_file, PathBuf::from("conf/state/audit.key"));
    assert_eq!(
        c.audit.anchor_file,
        PathBuf::from("conf/state/audit.anchors")
    );
    assert_eq!(c.audit.checkpoint_every_records, 100);
    assert_eq!(c.audit.checkpoint_every, Duration::from_secs(10));
    assert_eq!(c.audit.channel, None);

    let c = parse(
        "audit:\n  key_file: /run/secrets/audit-key\n  anchor_file: anchors\n  \
         checkpoint_every_records: 5\n  checkpoint_every: 2s\n  channel: slack:C0AUDIT\n",
    )
    .unwrap();
    assert_eq!(c.audit.key_file, PathBuf::from("/run/secrets/audit-key"));
    assert_eq!(c.audit.anchor_file, PathBuf::from("conf/anchors"));
    assert_eq!(c.audit.checkpoint_every_records, 5);
    assert_eq!(c.audit.checkpoint_every, Duration::from_secs(2));
    let channel = c.audit.channel.as_ref().unwrap();
    assert_eq!(
        (&*channel.platform, &*channel.channel),
        ("slack", "C0AUDIT")
    );
    assert!(
        c.summary().contains("posted to slack:C0AUDIT"),
        "{}",
        c.summary()
    );

    let with_env =
        Config::from_yaml_with_env("", None, &env(&[("OPSBOT_AUDIT_KEY_FILE", "/keys/audit")]))
            .unwrap();
    assert_eq!(with_env.audit.key_file, PathBuf::from("/keys/audit"));

    for (yaml, expected) in [
        (
            "audit:\n  channel: C0AUDIT\n",
            "conf/opsbot.yaml:2:12: audit.channel \"C0AUDIT\" is not PLATFORM:CHANNEL",
        ),
        (
            "audit:\n  checkpoint_every_records: 0\n",
            "conf/opsbot.yaml:2:",
        ),
        ("audit:\n  checkpoint_every: 0s\n", "above zero"),
    ] {
        let errors = errors(yaml);
        assert!(errors[0].contains(expected), "{yaml}: {errors:?}");
    }
}

#[test]
fn alerts_are_read_validated_and_masked() {
    let yaml = "alerts:\n  webhook_token: am-token-xyz\n  routes:\n    - matchers: ['severity=\"critical\"', 'namespace=~\"prod.*\"']\n      channel: slack:C0EMERG\n      continue: true\n  default_channel: slack:C0ALERTS\n  regroup_after: 2h\n  max_new_messages_per_minute: 5\n  alertmanagers:\n    - url: http://am-0:9093/\n      basic_auth: {username: opsbot, password: am-pass-123}\n";
    let c = parse(yaml).unwrap();
    let a = &c.alerts;
    assert_eq!(
        a.webhook_token.as_ref().map(Secret::expose),
        Some("am-token-xyz")
    );
    assert_eq!(a.routes.len(), 1);
    assert_eq!(a.routes[0].matchers.len(), 2);
    assert!(a.routes[0].continue_matching);
    assert_eq!(a.routes[0].channel.to_string(), "slack:C0EMERG");
    assert_eq!(a.default_channel.as_ref().unwrap().channel, "C0ALERTS");
    assert_eq!(a.regroup_after, Duration::from_secs(7200));
    assert_eq!(a.max_new_messages_per_minute, 5);
    assert_eq!(a.alertmanagers[0].url, "http://am-0:9093");
    let summary = c.summary();
    assert!(
        summary.contains(
            r#"route {severity="critical", namespace=~"prod.*"} -> slack:C0EMERG (continue)"#
        ),
        "{summary}"
    );
    assert!(
        summary.contains("alertmanager http://am-0:9093 (basic opsbot / ***)"),
        "{summary}"
    );
    for secret in ["am-token-xyz", "am-pass-123"] {
        assert!(!summary.contains(secret) && !format!("{c:?}").contains(secret));
    }
    // The environment gives the webhook token too.
    let c = Config::from_yaml_with_env("", None, &env(&[("OPSBOT_ALERTS_WEBHOOK_TOKEN", "t0k")]))
        .unwrap();
    assert!(c.alerts.is_configured());
    assert_eq!(
        Config::default().alerts.regroup_after,
        Duration::from_secs(6 * 3600)
    );
}

#[test]
fn bad_alert_settings_say_where_and_why() {
    let errs = errors(
        "alerts:\n  webhook_token: t\n  routes:\n    - matchers: ['severity=critical\"']\n      channel: slack:C1\n    - matchers: ['a=~(']\n      channel: teams:C2\n  default_channel: C0ALERTS\n  max_new_messages_per_minute: 0\n  alertmanagers:\n    - url: am:9093\n",
    );
    let all = errs.join("\n");
    for needle in [
        "conf/opsbot.yaml:6:",
        "invalid regex",
        "unknown platform \"teams\"",
        "must name its platform",
        "max_new_messages_per_minute must be above zero",
        "must start with http:// or https://",
    ] {
        assert!(all.contains(needle), "{needle} not in:\n{all}");
    }
    let errs = errors("alerts:\n  default_channel: slack:C0ALERTS\n");
    assert!(
        errs[0].contains("routes need webhook credentials"),
        "{errs:?}"
    );
    let errs = errors("alerts:\n  webhook_basic_auth: {username: am}\n");
    assert!(
        errs[0].contains("alerts.webhook_basic_auth.password"),
        "{errs:?}"
    );
}

#[test]
fn discord_mode_and_guilds_from_the_file_or_the_environment() {
    let yaml = "discord:\n  token: bot-secret-token\n  public_key: aabb\n  application_id: \"11\"\n  mode: http\n  guilds: [\"21\", \"22\"]\n";
    let c = parse(yaml).unwrap();
    assert_eq!(c.discord.mode, opsbot::config::DiscordMode::Http);
    assert_eq!(c.discord.guilds, ["21", "22"]);
    let summary = c.summary();
    assert!(
        summary.contains("application_id 11, mode http, guilds 21, 22"),
        "{summary}"
    );
    assert!(
        !summary.contains("bot-secret-token") && !summary.contains("aabb"),
        "{summary}"
    );

    let e = env(&[
        ("OPSBOT_DISCORD_MODE", "gateway"),
        ("OPSBOT_DISCORD_GUILDS", "31, 32,"),
        ("OPSBOT_DISCORD_APPLICATION_ID", "12"),
    ]);
    let c = Config::from_yaml_with_env(yaml, None, &e).unwrap();
    assert_eq!(c.discord.mode, opsbot::config::DiscordMode::Gateway);
    assert_eq!(c.discord.guilds, ["31", "32"]);
    assert_eq!(c.discord.application_id.as_deref(), Some("12"));

    let err = Config::from_yaml_with_env("", None, &env(&[("OPSBOT_DISCORD_MODE", "socket")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("OPSBOT_DISCORD_MODE: unknown mode"), "{err}");
    let errs = errors("discord:\n  mode: websocket\n");
    assert!(errs[0].contains("conf/opsbot.yaml:2:"), "{errs:?}");
}

#[test]
fn the_incidents_section_has_runbook_defaults_and_checks_its_values() {
    use opsbot_policies::Severity;
    let c = parse("data_dir: state\n").unwrap();
    let p1 = &c.incidents.severities[&Severity::P1];
    assert_eq!(p1.ack_within, Duration::from_secs(300));
    assert!(p1.responders.is_empty() && p1.escalation.is_empty());
    assert_eq!(c.incidents.severities.len(), 4);
    assert_eq!(c.incidents.announce_channel, None);

    let c = parse(
        "incidents:\n  announce_channel: slack:C0INC\n  severities:\n    P2:\n      \
         responders: [slack-group:S0ONCALL]\n      ack_within: 10m\n      escalation:\n        \
         - notify: [slack-group:S0ONCALL]\n          page: true\n        - after: 30m\n          \
         notify: [slack:U0LEAD]\n  pagerduty:\n    routing_key: R0KEY\n",
    )
    .unwrap();
    let p2 = &c.incidents.severities[&Severity::P2];
    assert_eq!(p2.ack_within, Duration::from_secs(600));
    assert_eq!(p2.escalation.len(), 2);
    assert_eq!(p2.escalation[0].after, Duration::ZERO);
    assert!(p2.escalation[0].page);
    assert_eq!(p2.escalation[1].after, Duration::from_secs(1800));
    assert_eq!(p2.escalation[1].notify[0].as_str(), "slack:U0LEAD");
    // Untouched severities keep their defaults.
    assert_eq!(
        c.incidents.severities[&Severity::P4].remind_every,
        Duration::from_secs(24 * 3600)
    );
    let pd = c.incidents.pagerduty.as_ref().unwrap();
    assert_eq!(pd.url, "https://events.pagerduty.com/v2/enqueue");
    assert!(
        !format!("{c:?}").contains("R0KEY"),
        "the routing key never prints"
    );

    for (yaml, says) in [
        (
            "incidents:\n  severities:\n    P9: {}\n",
            "unknown severity",
        ),
        (
            "incidents:\n  severities:\n    P1:\n      responders: [oncall]\n",
            "responders",
        ),
        (
            "incidents:\n  severities:\n    P1:\n      escalation:\n        - page: true\n",
            "pagerduty",
        ),
        (
            "incidents:\n  announce_channel: C0INC\n",
            "announce_channel",
        ),
        (
            "incidents:\n  severities:\n    P1:\n      ack_within: soon\n",
            "invalid duration",
        ),
    ] {
        let e = parse(yaml).unwrap_err().to_string();
        assert!(e.contains(says), "{yaml}: {e}");
    }
}

/// A misspelt key is named at its place, with the nearest key it could be; one too far from
/// any gets the list alone.
#[test]
fn a_misspelt_key_gets_the_nearest_one() {
    let errs = errors("slak:\n  bot_token: x\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("conf/opsbot.yaml:1:1: "), "{errs:?}");
    assert!(
        errs[0].contains("unknown field `slak` (did you mean `slack`?), expected one of"),
        "{errs:?}"
    );
    let errs = errors("engine:\n  max_inflight: 3\n");
    assert!(
        errs[0].contains("(did you mean `max_in_flight`?)"),
        "{errs:?}"
    );
    let errs = errors("zzzzzz: 1\n");
    assert!(!errs[0].contains("did you mean"), "{errs:?}");
    assert!(errs[0].contains("expected one of"), "{errs:?}");
}

/// HTTP limits that would leave the server unbounded or unusable are refused where written.
#[test]
fn http_limits_must_bound_something() {
    let errs = errors("http:\n  max_connections: 0\n");
    assert!(errs[0].starts_with("conf/opsbot.yaml:2:"), "{errs:?}");
    assert!(errs[0].contains("nonzero"), "{errs:?}");
    let errs = errors("http:\n  header_timeout: 0s\n");
    assert!(errs[0].contains("duration must be above zero"), "{errs:?}");
    let errs = errors("http:\n  body_timeout: soon\n");
    assert!(errs[0].contains("invalid duration"), "{errs:?}");
    let errs = errors("http:\n  header_timeout: 100000000000s\n");
    assert!(errs[0].contains("at most 1h"), "{errs:?}");
    let errs = errors("http:\n  max_connections: 10000000000000000000\n");
    assert!(errs[0].contains("at most 100000"), "{errs:?}");
}

/// A default namespace Kubernetes could not have is refused where it is written.
#[test]
fn default_namespaces_must_be_kubernetes_names() {
    let errs = errors(
        "clusters:\n  - name: prod\n    default_namespace: Prod_NS\n\
         channels:\n  C1: { namespace: \"shop/api\" }\n  C2: { namespace: payments }\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "conf/opsbot.yaml:2:5: cluster \"prod\": `Prod_NS` is not a valid namespace"
        ),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(
            "conf/opsbot.yaml:5:7: channel \"C1\": `shop/api` is not a valid namespace"
        ),
        "{errs:?}"
    );
}
