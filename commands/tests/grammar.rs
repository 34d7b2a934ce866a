//! The command grammar: table-driven accepted/rejected inputs, and property tests (no input
//! panics; rendering a parsed command and parsing it again gives the same command).

use std::time::Duration;

use opsbot_commands::spec::{self, COMMANDS, OptionKind, OptionValue, invocation_tokens};
use opsbot_commands::{
    Command, DEFAULT_TAIL, Op, PodSelector, Tone, Workload, WorkloadKind, app_commands, help_reply,
    parse, parse_tokens,
};
use opsbot_policies::{Action, Subject};
use proptest::prelude::*;

fn cmd(op: Op) -> Command {
    Command {
        cluster: None,
        namespace: None,
        op,
    }
}

fn in_ns(ns: &str, op: Op) -> Command {
    Command {
        cluster: None,
        namespace: Some(ns.to_owned()),
        op,
    }
}

fn deploy(name: &str) -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        name: name.to_owned(),
    }
}

fn sts(name: &str) -> Workload {
    Workload {
        kind: WorkloadKind::StatefulSet,
        name: name.to_owned(),
    }
}

fn logs(name: &str) -> Op {
    L::default().on(name)
}

fn scale(w: Workload, replicas: u32, dry_run: bool) -> Op {
    Op::Scale {
        workload: w,
        replicas,
        dry_run,
    }
}

/// The fields of `Op::Logs` besides the name.
#[derive(Default)]
struct L {
    tail: Option<u32>,
    since: Option<Duration>,
    grep: Option<&'static str>,
    container: Option<&'static str>,
    previous: bool,
}

impl L {
    fn on(self, name: &str) -> Op {
        Op::Logs {
            source: PodSelector::Name(name.to_owned()),
            tail: self.tail,
            since: self.since,
            grep: self.grep.map(str::to_owned),
            container: self.container.map(str::to_owned),
            previous: self.previous,
        }
    }
}

fn mins(m: u64) -> Option<Duration> {
    Some(Duration::from_secs(m * 60))
}

#[test]
fn accepted_inputs() {
    let cases: Vec<(&str, Command)> = vec![
        // status
        (
            "status api",
            cmd(Op::Status {
                workload: deploy("api"),
            }),
        ),
        (
            "status deploy/api",
            cmd(Op::Status {
                workload: deploy("api"),
            }),
        ),
        (
            "status deployment/api",
            cmd(Op::Status {
                workload: deploy("api"),
            }),
        ),
        (
            "status sts/db",
            cmd(Op::Status {
                workload: sts("db"),
            }),
        ),
        (
            "status statefulset/db",
            cmd(Op::Status {
                workload: sts("db"),
            }),
        ),
        (
            "status StatefulSet/db",
            cmd(Op::Status {
                workload: sts("db"),
            }),
        ),
        (
            "st api.v2",
            cmd(Op::Status {
                workload: deploy("api.v2"),
            }),
        ),
        (
            "STATUS api",
            cmd(Op::Status {
                workload: deploy("api"),
            }),
        ),
        (
            "  status   api  ",
            cmd(Op::Status {
                workload: deploy("api"),
            }),
        ),
        (
            "status api -n shop",
            in_ns(
                "shop",
                Op::Status {
                    workload: deploy("api"),
                },
            ),
        ),
        (
            "-n shop status api",
            in_ns(
                "shop",
                Op::Status {
                    workload: deploy("api"),
                },
            ),
        ),
        (
            "status -n=shop api",
            in_ns(
                "shop",
                Op::Status {
                    workload: deploy("api"),
                },
            ),
        ),
        (
            "status --namespace shop api",
            in_ns(
                "shop",
                Op::Status {
                    workload: deploy("api"),
                },
            ),
        ),
        (
            "status --namespace=shop api",
            in_ns(
                "shop",
                Op::Status {
                    workload: deploy("api"),
                },
            ),
        ),
        (
            "status api --cluster prod-eu -n shop",
            Command {
                cluster: Some("prod-eu".into()),
                namespace: Some("shop".into()),
                op: Op::Status {
                    workload: deploy("api"),
                },
            },
        ),
        (
            "--cluster=gke_proj_europe-west1_main status api",
            Command {
                cluster: Some("gke_proj_europe-west1_main".into()),
                namespace: None,
                op: Op::Status {
                    workload: deploy("api"),
                },
            },
        ),
        (
            "status 'api'",
            cmd(Op::Status {
                workload: deploy("api"),
            }),
        ),
        (
            "status \"sts/db\"",
            cmd(Op::Status {
                workload: sts("db"),
            }),
        ),
        // pods
        (
            "pods api",
            cmd(Op::Pods {
                selector: Some(PodSelector::Name("api".into())),
            }),
        ),
        (
            "po pod/api-7d9f",
            cmd(Op::Pods {
                selector: Some(PodSelector::Name("api-7d9f".into())),
            }),
        ),
        (
            "pods deploy/api",
            cmd(Op::Pods {
                selector: Some(PodSelector::Name("api".into())),
            }),
        ),
        (
            "pods -l app=web",
            cmd(Op::Pods {
                selector: Some(PodSelector::Labels("app=web".into())),
            }),
        ),
        (
            "pods -l=app=web,tier!=cache",
            cmd(Op::Pods {
                selector: Some(PodSelector::Labels("app=web,tier!=cache".into())),
            }),
        ),
        (
            "pods --selector 'env in (prod, staging)' -n shop",
            in_ns(
                "shop",
                Op::Pods {
                    selector: Some(PodSelector::Labels("env in (prod, staging)".into())),
                },
            ),
        ),
        // logs
        ("logs api", cmd(logs("api"))),
        ("log pod/api-1", cmd(logs("pod/api-1"))),
        ("logs po/api-1", cmd(logs("pod/api-1"))),
        ("logs deploy/api", cmd(logs("api"))),
        ("logs sts/db", cmd(logs("statefulset/db"))),
        (
            "logs api --tail 50 --since 15m",
            cmd(L {
                tail: Some(50),
                since: mins(15),
                ..L::default()
            }
            .on("api")),
        ),
        (
            "logs api --tail=10000 --since=1h30m",
            cmd(L {
                tail: Some(10000),
                since: mins(90),
                ..L::default()
            }
            .on("api")),
        ),
        (
            "logs api --grep \"status=500 error\" -c app -p",
            cmd(L {
                grep: Some("status=500 error"),
                container: Some("app"),
                previous: true,
                ..L::default()
            }
            .on("api")),
        ),
        (
            "logs api --grep=-v --container=side-car --previous",
            cmd(L {
                grep: Some("-v"),
                container: Some("side-car"),
                previous: true,
                ..L::default()
            }
            .on("api")),
        ),
        (
            "logs api --grep 'it'\\''s' --previous=false",
            cmd(L {
                grep: Some("it's"),
                ..L::default()
            }
            .on("api")),
        ),
        (
            "logs api --grep 'ошибка ✗'",
            cmd(L {
                grep: Some("ошибка ✗"),
                ..L::default()
            }
            .on("api")),
        ),
        // Smartened quotes and a phone's em dash.
        (
            "logs api —grep “timed out”",
            cmd(L {
                grep: Some("timed out"),
                ..L::default()
            }
            .on("api")),
        ),
        ("logs\u{a0}api", cmd(logs("api"))),
        // events
        (
            "events",
            cmd(Op::Events {
                name: None,
                since: None,
                warnings: false,
            }),
        ),
        (
            "events api --since 2d --warnings",
            cmd(Op::Events {
                name: Some("api".into()),
                since: Some(Duration::from_secs(2 * 86400)),
                warnings: true,
            }),
        ),
        (
            "ev cj/nightly -n db",
            in_ns(
                "db",
                Op::Events {
                    name: Some("nightly".into()),
                    since: None,
                    warnings: false,
                },
            ),
        ),
        // scale
        ("scale api 5", cmd(scale(deploy("api"), 5, false))),
        ("scale api 0", cmd(scale(deploy("api"), 0, false))),
        ("scale api 1000", cmd(scale(deploy("api"), 1000, false))),
        (
            "scale deploy/api --replicas=5",
            cmd(scale(deploy("api"), 5, false)),
        ),
        ("scale --replicas 3 sts/db", cmd(scale(sts("db"), 3, false))),
        ("scale sts/db 3 --dry-run", cmd(scale(sts("db"), 3, true))),
        (
            "scale api 3 --dry-run=true",
            cmd(scale(deploy("api"), 3, true)),
        ),
        (
            "scale api 3 --dry-run=false",
            cmd(scale(deploy("api"), 3, false)),
        ),
        ("scale api 007", cmd(scale(deploy("api"), 7, false))),
        ("scale -- api 3", cmd(scale(deploy("api"), 3, false))),
        // restart
        (
            "restart api",
            cmd(Op::Restart {
                workload: deploy("api"),
            }),
        ),
        (
            "restart sts/db -n data",
            in_ns(
                "data",
                Op::Restart {
                    workload: sts("db"),
                },
            ),
        ),
        // rollback
        (
            "rollback api",
            cmd(Op::Rollback {
                name: "api".into(),
                to_revision: None,
            }),
        ),
        (
            "undo deploy/api",
            cmd(Op::Rollback {
                name: "api".into(),
                to_revision: None,
            }),
        ),
        (
            "rollback api --to-revision 12",
            cmd(Op::Rollback {
                name: "api".into(),
                to_revision: Some(12),
            }),
        ),
        (
            "rollback api --revision=3",
            cmd(Op::Rollback {
                name: "api".into(),
                to_revision: Some(3),
            }),
        ),
        // hpa
        (
            "hpa api",
            cmd(Op::Hpa {
                name: "api".into(),
                min: None,
                max: None,
            }),
        ),
        (
            "hpa hpa/api --min 2",
            cmd(Op::Hpa {
                name: "api".into(),
                min: Some(2),
                max: None,
            }),
        ),
        (
            "hpa api --max=10",
            cmd(Op::Hpa {
                name: "api".into(),
                min: None,
                max: Some(10),
            }),
        ),
        (
            "hpa api --min 3 --max 3",
            cmd(Op::Hpa {
                name: "api".into(),
                min: Some(3),
                max: Some(3),
            }),
        ),
        // backup
        (
            "backup status",
            cmd(Op::BackupStatus {
                cronjob: None,
                all: false,
            }),
        ),
        (
            "backups status -n db",
            in_ns(
                "db",
                Op::BackupStatus {
                    cronjob: None,
                    all: false,
                },
            ),
        ),
        (
            "backup status pg-backup",
            cmd(Op::BackupStatus {
                cronjob: Some("pg-backup".into()),
                all: false,
            }),
        ),
        (
            "backup status cronjob/pg-backup",
            cmd(Op::BackupStatus {
                cronjob: Some("pg-backup".into()),
                all: false,
            }),
        ),
        (
            "backup status --all -n ml",
            in_ns(
                "ml",
                Op::BackupStatus {
                    cronjob: None,
                    all: true,
                },
            ),
        ),
        (
            "-n db backup run pg-backup",
            in_ns(
                "db",
                Op::BackupRun {
                    cronjob: "pg-backup".into(),
                    job: None,
                },
            ),
        ),
        (
            "backup -n db run cj/pg-backup",
            in_ns(
                "db",
                Op::BackupRun {
                    cronjob: "pg-backup".into(),
                    job: None,
                },
            ),
        ),
        // help, whoami
        ("", cmd(Op::Help { command: None })),
        ("   ", cmd(Op::Help { command: None })),
        ("help", cmd(Op::Help { command: None })),
        (
            "help scale",
            cmd(Op::Help {
                command: Some("scale".into()),
            }),
        ),
        (
            "help po",
            cmd(Op::Help {
                command: Some("pods".into()),
            }),
        ),
        (
            "help backup",
            cmd(Op::Help {
                command: Some("backup".into()),
            }),
        ),
        (
            "help backup run",
            cmd(Op::Help {
                command: Some("backup run".into()),
            }),
        ),
        (
            "help 'backup status'",
            cmd(Op::Help {
                command: Some("backup status".into()),
            }),
        ),
        ("whoami", cmd(Op::Whoami)),
        // Short flags with attached values, as kubectl (pflag) allows.
        (
            "-nshop status api",
            in_ns(
                "shop",
                Op::Status {
                    workload: deploy("api"),
                },
            ),
        ),
        (
            "logs api -capp",
            cmd(L {
                container: Some("app"),
                ..L::default()
            }
            .on("api")),
        ),
        (
            "pods -lapp=web",
            cmd(Op::Pods {
                selector: Some(PodSelector::Labels("app=web".into())),
            }),
        ),
        // `--help` anywhere asks for help on what came before it.
        (
            "scale --help",
            cmd(Op::Help {
                command: Some("scale".into()),
            }),
        ),
        (
            "backup -h",
            cmd(Op::Help {
                command: Some("backup".into()),
            }),
        ),
        ("--help", cmd(Op::Help { command: None })),
        // Dashes and apostrophes inside words are text, not flags or quotes.
        (
            "logs api —grep a—b",
            cmd(L {
                grep: Some("a—b"),
                ..L::default()
            }
            .on("api")),
        ),
        (
            "logs api --grep don’t",
            cmd(L {
                grep: Some("don’t"),
                ..L::default()
            }
            .on("api")),
        ),
    ];
    let mut failures = Vec::new();
    for (input, expected) in &cases {
        match parse(input) {
            Ok(got) if &got == expected => {}
            other => failures.push(format!("{input:?}: expected {expected:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A rejected input: the expected token, a part of the message, the suggestion, and whether
/// the error shows a usage line.
struct Rejected {
    input: &'static str,
    token: Option<&'static str>,
    message: &'static str,
    suggestion: Option<&'static str>,
    usage: Option<&'static str>,
}

const fn rej(
    input: &'static str,
    token: Option<&'static str>,
    message: &'static str,
    suggestion: Option<&'static str>,
    usage: Option<&'static str>,
) -> Rejected {
    Rejected {
        input,
        token,
        message,
        suggestion,
        usage,
    }
}

/// Lines copied from the runbooks (kubectl's `rollout VERB`, `get`, `create job --from`,
/// `patch hpa` and `KIND NAME`) are the commands they would be written as here; kubectl verbs
/// and options opsbot does not take are refused with why.
#[test]
fn runbook_kubectl_lines_are_the_commands_they_mean() {
    let same = [
        // `get RESOURCE [NAME]`: a NAME is of that kind.
        ("get pods -n gc-storage", "pods -n gc-storage"),
        (
            "kubectl get pods -n ingress -l app=envoy",
            "pods -l app=envoy -n ingress",
        ),
        ("get po api-7c9d-x2", "pods pod/api-7c9d-x2"),
        ("get pod/api-7c9d-x2", "pods pod/api-7c9d-x2"),
        (
            "get events -n shiojiri-rainbow-seeker",
            "events -n shiojiri-rainbow-seeker",
        ),
        (
            "get events --field-selector involvedObject.name=backend-x -n prod",
            "events backend-x -n prod",
        ),
        (
            "get ev --field-selector=involvedObject.name=backend-x",
            "events backend-x",
        ),
        (
            "get deploy conea-api -n production",
            "status conea-api -n production",
        ),
        ("get sts postgres-replica", "status sts/postgres-replica"),
        (
            "get cronjobs -n shiojiri-rainbow-seeker",
            "backup status --all -n shiojiri-rainbow-seeker",
        ),
        (
            "get cj -n db postgres-backup",
            "backup status postgres-backup -n db",
        ),
        ("get jobs -n db", "backup status --all -n db"),
        // The runbooks' backup check: the CronJobs named `backup`, with their Jobs.
        (
            "kubectl get jobs -n shiojiri-rainbow-seeker | grep backup",
            "backup status -n shiojiri-rainbow-seeker",
        ),
        ("get cronjobs | grep backup", "backup status"),
        ("get hpa api-hpa", "hpa api-hpa"),
        // kubectl's layout options are dropped: opsbot lays out its own answers.
        (
            "kubectl get events -n production --sort-by='.lastTimestamp'",
            "events -n production",
        ),
        ("get pods -n production -o wide", "pods -n production"),
        ("pods -l app=envoy -owide", "pods -l app=envoy"),
        ("get pods --output=wide", "pods"),
        (
            "get hpa -n shiojiri-rainbow-seeker",
            "hpa -n shiojiri-rainbow-seeker",
        ),
        // `create job --from=cronjob/CRONJOB [NAME]` is `backup run`, naming the Job.
        (
            "kubectl create job --from=cronjob/ml-model-retrain manual-retrain -n shiojiri-rainbow-seeker",
            "backup run ml-model-retrain --job manual-retrain -n shiojiri-rainbow-seeker",
        ),
        (
            "create job -n db nightly-now --from cronjob/pg-backup",
            "backup run pg-backup --job nightly-now -n db",
        ),
        ("create job --from=cj/pg-backup", "backup run pg-backup"),
        // `patch hpa NAME -p JSON` sets the bounds the patch sets.
        (
            r#"patch hpa api-hpa -n gc-storage -p '{"spec":{"minReplicas":5,"maxReplicas":5}}'"#,
            "hpa api-hpa --min 5 --max 5 -n gc-storage",
        ),
        (
            r#"patch horizontalpodautoscaler/api --type merge --patch='{"spec":{"maxReplicas":12}}'"#,
            "hpa api --max 12",
        ),
        // `logs … | grep TEXT | tail -N` are its --grep and --tail.
        (
            "kubectl logs deployment/conea-api -n production --since=1h | grep ERROR",
            "logs conea-api -n production --since 1h --grep ERROR",
        ),
        (
            r#"logs deployment/backend | grep "POST /api/sightings" | tail -100"#,
            r#"logs backend --grep "POST /api/sightings" --tail 100"#,
        ),
        ("logs api | tail -n 20", "logs api --tail 20"),
        ("logs api | tail -n20", "logs api --tail 20"),
        // A leading `kubectl`, and options before the verb.
        (
            "kubectl scale deployment/api --replicas=0 -n gc-storage",
            "scale api 0 -n gc-storage",
        ),
        ("-n ingress kubectl get pods", "pods -n ingress"),
        (
            "rollout restart deployment envoy -n ingress",
            "restart deploy/envoy -n ingress",
        ),
        (
            "rollout restart deployment/conea-api -n production",
            "restart conea-api -n production",
        ),
        ("ROLLOUT Status sts db", "status statefulset/db"),
        (
            "rollout status deployment/rust-webapi -n api",
            "status rust-webapi -n api",
        ),
        (
            "rollout undo deployment/conea-api -n production --to-revision=3",
            "rollback conea-api -n production --to-revision 3",
        ),
        (
            "-n production rollout undo conea-api",
            "rollback conea-api -n production",
        ),
        (
            "scale statefulset postgres-replica 3",
            "scale sts/postgres-replica 3",
        ),
        ("scale deployment api --replicas=0", "scale api 0"),
        (
            "logs pod api-7c9d-x2 --tail 5",
            "logs pod/api-7c9d-x2 --tail 5",
        ),
        ("logs statefulset db", "logs sts/db"),
        ("events deployment api", "events deploy/api"),
        (
            "logs -n ingress -l app=envoy --tail=100",
            "logs --selector app=envoy --tail 100 -n ingress",
        ),
        ("hpa hpa api --max 10", "hpa api --max 10"),
        (
            "backup run cronjob postgres-backup",
            "backup run postgres-backup",
        ),
        ("help rollout undo", "help rollback"),
        ("help rollout status", "help status"),
    ];
    for (kubectl, ours) in same {
        assert_eq!(
            parse(kubectl).unwrap_or_else(|e| panic!("{kubectl}: {}", e.message)),
            parse(ours).unwrap(),
            "{kubectl}"
        );
    }

    // `help` names the kubectl forms of a command.
    for (command, forms) in [
        ("rollback", "rollout undo"),
        (
            "status",
            "rollout status, get deployments, get statefulsets",
        ),
        ("restart", "rollout restart"),
        ("backup status", "get cronjobs, get jobs"),
        ("backup run", "create job --from=cronjob/CRONJOB [NAME]"),
        ("logs", ""),
    ] {
        let help = help_reply(Some(command));
        let field = help.fields.iter().find(|f| f.name == "As kubectl");
        assert_eq!(field.map_or("", |f| f.value.as_str()), forms, "{command}");
    }
    assert_eq!(
        parse("help get cj").unwrap(),
        parse("help backup status").unwrap()
    );

    let refused = [
        (
            "rollout",
            "`rollout` is followed by restart, status or undo",
            "rollout",
        ),
        (
            "rollout pause api",
            "`rollout` is followed by restart, status or undo, as in kubectl (`rollout restart NAME` is `restart NAME`); not `pause`",
            "pause",
        ),
        ("rollout history api", "not `history`", "history"),
        // kubectl options runbooks carry are refused with why, and what to do instead.
        (
            "logs -f deployment/conea-api -n production",
            "`logs` has no option `-f`: a chat answer cannot follow a stream",
            "-f",
        ),
        // A kind with no name after it names nothing (kubectl would take every one).
        (
            "kubectl rollout restart deployment -n api",
            "`deployment` is a kind, not a name (in kubectl it would mean every one): name one, \
             as in `restart deployment/NAME`",
            "deployment",
        ),
        (
            "status deployment",
            "as in `status deployment/NAME`",
            "deployment",
        ),
        (
            "pods -l app=envoy -o yaml",
            "opsbot lays out its answers itself",
            "-o",
        ),
        // Only a kind the command takes is read as one; other words stay names.
        ("scale pod api 3", "`api` is not a number", "api"),
        ("rollback statefulset db", "unexpected argument `db`", "db"),
        // kubectl verbs and forms opsbot does not do say why, and what to use instead.
        (
            "describe pod api-x",
            "opsbot does not run `kubectl describe`: `status NAME` shows a rollout",
            "describe",
        ),
        ("kubectl top pods -n production", "reads no metrics", "top"),
        (
            "exec -it postgres-pod -- psql",
            "opens no shell or connection",
            "exec",
        ),
        (
            "delete pod --field-selector=status.phase=Succeeded",
            "only the changes it has commands for",
            "delete",
        ),
        ("drain node-1", "does not manage nodes", "drain"),
        ("get", "`get` needs a resource", "get"),
        (
            "get svc -n production",
            "opsbot does not read `svc`; `get` reads pods, events",
            "svc",
        ),
        (
            "get configmap,secret -n api -o yaml",
            "does not read `configmap,secret`",
            "configmap,secret",
        ),
        (
            "get jobs db-backup-123",
            "`get jobs` takes no name here",
            "db-backup-123",
        ),
        (
            "kubectl get jobs -n db | grep nightly",
            "no shell pipelines: only `logs … | grep TEXT | tail -N` is taken (as `logs … --grep \
             TEXT --tail N`); without the pipeline, the line is `backup status -n db --all`",
            "|",
        ),
        (
            "backup status pg-backup --all",
            "`--all` shows every CronJob; leave it out to see `pg-backup` alone",
            "--all",
        ),
        (
            "get events --field-selector type=Warning",
            "`events NAME` lists the events of one object",
            "--field-selector",
        ),
        ("get pods -A", "one namespace at a time", "-A"),
        ("get pods -w", "cannot watch", "-w"),
        (
            "create deployment x --image=y",
            "opsbot creates only Jobs from a CronJob",
            "deployment",
        ),
        (
            "create job x",
            "`create job` needs `--from=cronjob/CRONJOB`",
            "job",
        ),
        (
            "create job --from=deployment/api x",
            "`--from` names the CronJob to run",
            "deployment/api",
        ),
        (
            r#"patch deployment backend -p '{"spec":{}}'"#,
            "opsbot patches only an autoscaler's replica bounds",
            "deployment",
        ),
        ("patch hpa api", "`patch hpa` needs `-p`", "hpa"),
        (
            r#"patch hpa api -p '{"spec":{"replicas":5}}'"#,
            "unknown field `replicas`",
            r#"{"spec":{"replicas":5}}"#,
        ),
        (
            r#"patch hpa api -p '{"spec":{}}'"#,
            "sets neither minReplicas nor maxReplicas",
            r#"{"spec":{}}"#,
        ),
        (
            r#"patch hpa api -p '{"spec":{"minReplicas":-1}}'"#,
            "opsbot patches only `spec.minReplicas`",
            r#"{"spec":{"minReplicas":-1}}"#,
        ),
        (
            r#"patch hpa api --type json -p '[{"op":"replace"}]'"#,
            "`--type json` is not taken",
            "json",
        ),
        (
            "get pods -n shiojiri-rainbow-seeker | grep prometheus",
            "opsbot runs no shell pipelines: only `logs … | grep TEXT | tail -N`",
            "|",
        ),
        (
            r#"logs deployment/backend | grep "401\|403" | tail -50"#,
            "`--grep` finds plain text, not the pattern `401\\|403`",
            "401\\|403",
        ),
        (
            "logs api | grep -v healthz",
            "`| grep -v healthz`: after `logs`, opsbot takes `| grep TEXT` and `| tail -N`",
            "grep -v healthz",
        ),
        ("logs api | wc -l", "`| wc -l`", "wc -l"),
        ("logs api | tail -n", "`| tail -n`", "tail -n"),
        ("logs api |", "`| `", ""),
        (
            "logs api | grep a | grep b",
            "--grep TEXT is given twice",
            "--grep",
        ),
        // What the rewritten command refuses, it refuses as it would typed directly.
        (
            r#"patch hpa api -p '{"spec":{"minReplicas":5,"maxReplicas":3}}'"#,
            "--min 5 is greater than --max 3",
            "--min 5",
        ),
        (
            r#"patch hpa api -p '{"spec":{"maxReplicas":5000}}'"#,
            "5000",
            "5000",
        ),
        (
            "create job --from=cronjob/pg Bad_Name",
            "not a valid",
            "Bad_Name",
        ),
    ];
    for (input, message, token) in refused {
        let e = parse(input).expect_err(input);
        assert!(e.message.contains(message), "{input}: {}", e.message);
        assert_eq!(e.token.as_deref(), Some(token), "{input}");
    }
}

const SCALE_USAGE: &str = "scale [deployment/|statefulset/]NAME REPLICAS [--dry-run]";
const LOGS_USAGE: &str = "logs NAME | -l SELECTOR [--tail N] [--since DURATION] [--grep TEXT] \
     [--container CONTAINER] [--previous]";
const HPA_USAGE: &str = "hpa [NAME] [--min N] [--max N]";

#[test]
fn rejected_inputs() {
    let cases = [
        // Unknown commands, with the nearest one suggested and its usage shown.
        rej(
            "restrat api",
            Some("restrat"),
            "unknown command `restrat`",
            Some("restart"),
            Some("restart [deployment/|statefulset/]NAME"),
        ),
        rej(
            "sclae api 3",
            Some("sclae"),
            "did you mean `scale`?",
            Some("scale"),
            Some(SCALE_USAGE),
        ),
        rej(
            "stauts api",
            Some("stauts"),
            "unknown command",
            Some("status"),
            None,
        ),
        rej(
            "lgos api",
            Some("lgos"),
            "unknown command",
            Some("logs"),
            Some(LOGS_USAGE),
        ),
        rej(
            "rest api",
            Some("rest"),
            "unknown command",
            Some("restart"),
            None,
        ),
        rej(
            "backpu status",
            Some("backpu"),
            "unknown command",
            Some("backup"),
            None,
        ),
        rej(
            "kubectl frobnicate pods",
            Some("frobnicate"),
            "`help` lists the commands",
            None,
            None,
        ),
        rej(
            "backup stats",
            Some("stats"),
            "unknown command `backup stats`",
            Some("backup status"),
            None,
        ),
        rej(
            "backup",
            Some("backup"),
            "`backup` needs a subcommand: status or run",
            None,
            None,
        ),
        rej(
            "help sclae",
            Some("sclae"),
            "there is no command `sclae`",
            Some("scale"),
            Some("help [COMMAND]"),
        ),
        rej(
            "help backup rnu",
            Some("backup rnu"),
            "no command",
            Some("backup run"),
            None,
        ),
        // Unknown flags, with the nearest flag suggested.
        rej(
            "logs api --tial 5",
            Some("--tial"),
            "`logs` has no option `--tial`",
            Some("--tail"),
            Some(LOGS_USAGE),
        ),
        rej(
            "scale api 3 --dryrun",
            Some("--dryrun"),
            "has no option",
            Some("--dry-run"),
            Some(SCALE_USAGE),
        ),
        rej(
            "status api --namespcae x",
            Some("--namespcae"),
            "has no option",
            Some("--namespace"),
            None,
        ),
        rej(
            "logs api --Tail 5",
            Some("--Tail"),
            "has no option `--Tail`",
            Some("--tail"),
            Some(LOGS_USAGE),
        ),
        rej(
            "status api --force",
            Some("--force"),
            "`status` has no option `--force`",
            None,
            None,
        ),
        rej(
            "--tail 5 logs api",
            Some("--tail"),
            "only -n/--namespace and --cluster may come before",
            None,
            None,
        ),
        // Missing and extra arguments.
        rej(
            "status",
            None,
            "missing [deployment/|statefulset/]NAME",
            None,
            Some("status [deployment/|statefulset/]NAME"),
        ),
        rej(
            "scale api",
            None,
            "missing REPLICAS",
            None,
            Some(SCALE_USAGE),
        ),
        rej(
            "scale api 3 4",
            Some("4"),
            "unexpected argument `4`",
            None,
            Some(SCALE_USAGE),
        ),
        rej(
            "scale api 3 --replicas 4",
            Some("3"),
            "REPLICAS is given twice",
            None,
            Some(SCALE_USAGE),
        ),
        rej(
            "whoami now",
            Some("now"),
            "`whoami` takes no arguments",
            None,
            Some("whoami"),
        ),
        rej(
            "logs --tail 5",
            None,
            "missing NAME or -l SELECTOR",
            None,
            Some(LOGS_USAGE),
        ),
        rej(
            "pods api -l app=web",
            None,
            "not both",
            None,
            Some("pods [NAME | -l SELECTOR]"),
        ),
        rej(
            "logs api --tail",
            Some("--tail"),
            "`--tail` needs a value",
            None,
            Some(LOGS_USAGE),
        ),
        rej(
            "logs api --tail 5 --tail 6",
            Some("--tail"),
            "--tail N is given twice",
            None,
            Some(LOGS_USAGE),
        ),
        rej(
            "status api -n a -n b",
            Some("-n"),
            "--namespace is given twice",
            None,
            None,
        ),
        rej("-n shop", None, "missing command", None, None),
        // Bounded integers.
        rej(
            "scale api 1001",
            Some("1001"),
            "out of range: REPLICAS is 0 to 1000",
            None,
            Some(SCALE_USAGE),
        ),
        rej(
            "scale api -1",
            Some("-1"),
            "numbers here are never negative",
            None,
            Some(SCALE_USAGE),
        ),
        rej(
            "scale api three",
            Some("three"),
            "not a number",
            None,
            Some(SCALE_USAGE),
        ),
        rej(
            "scale api 99999999999999999999999",
            Some("99999999999999999999999"),
            "too large",
            None,
            None,
        ),
        rej(
            "scale api --replicas=",
            Some(""),
            "not a number",
            None,
            None,
        ),
        rej(
            "logs api --tail 0",
            Some("0"),
            "out of range: N is 1 to 10000",
            None,
            None,
        ),
        rej(
            "logs api --tail 10001",
            Some("10001"),
            "out of range",
            None,
            None,
        ),
        rej(
            "rollback api --to-revision 0",
            Some("0"),
            "out of range: N is 1 or more",
            None,
            None,
        ),
        rej(
            "rollback api --to-revision abc",
            Some("abc"),
            "not a number: N is a whole number, 1 or more",
            None,
            None,
        ),
        rej(
            "hpa --min 3 -n shop",
            None,
            "missing NAME: --min and --max set one autoscaler",
            None,
            Some(HPA_USAGE),
        ),
        rej(
            "hpa api --min 0",
            Some("0"),
            "out of range",
            None,
            Some(HPA_USAGE),
        ),
        // min > max is caught at parse time.
        rej(
            "hpa api --min 5 --max 3",
            Some("--min 5"),
            "--min 5 is greater than --max 3",
            None,
            Some(HPA_USAGE),
        ),
        // Durations.
        rej(
            "logs api --since 30",
            Some("30"),
            "needs a unit",
            None,
            None,
        ),
        rej(
            "logs api --since 5y",
            Some("5y"),
            "not a duration",
            None,
            None,
        ),
        rej("logs api --since 0s", Some("0s"), "is zero", None, None),
        rej(
            "logs api --since 31d",
            Some("31d"),
            "too long: at most 30d",
            None,
            None,
        ),
        rej("events --since h", Some("h"), "not a duration", None, None),
        rej(
            "events --since 99999999999999999999s",
            Some("99999999999999999999s"),
            "too long",
            None,
            None,
        ),
        // Kubernetes names.
        rej(
            "status Api",
            Some("Api"),
            "not a valid NAME",
            Some("api"),
            None,
        ),
        rej(
            "status -n Shop api",
            Some("Shop"),
            "not a valid NAMESPACE",
            Some("shop"),
            None,
        ),
        rej(
            "status api -n my.ns",
            Some("my.ns"),
            "not a valid NAMESPACE",
            None,
            None,
        ),
        rej(
            "status api_v2",
            Some("api_v2"),
            "not a valid NAME",
            None,
            None,
        ),
        rej("status api-", Some("api-"), "not a valid NAME", None, None),
        rej(
            "status svc/api",
            Some("svc/api"),
            "not a deployment or statefulset",
            None,
            None,
        ),
        rej(
            "rollback sts/db",
            Some("sts/db"),
            "`sts/` is not accepted here: write NAME, or deploy/NAME",
            None,
            None,
        ),
        rej(
            "logs api -c Side_Car",
            Some("Side_Car"),
            "not a valid CONTAINER",
            None,
            None,
        ),
        rej(
            "status ünïcödé",
            Some("ünïcödé"),
            "not a valid NAME",
            None,
            None,
        ),
        // Free text and selectors.
        rej("logs api --grep ''", Some(""), "TEXT is empty", None, None),
        rej(
            "logs api --grep 'a\nb'",
            Some("a\nb"),
            "one line",
            None,
            None,
        ),
        rej(
            "pods -l 'app=$(rm -rf /)'",
            Some("app=$(rm -rf /)"),
            "not a label selector",
            None,
            None,
        ),
        rej(
            "status api --cluster 'a b'",
            Some("a b"),
            "not a cluster name",
            None,
            None,
        ),
        // Quoting.
        rej(
            "logs api --grep 'oops",
            None,
            "quote is not closed",
            None,
            None,
        ),
        rej(
            "scale api 3 --dry-run=maybe",
            Some("maybe"),
            "not true or false",
            None,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        match parse(c.input) {
            Ok(cmd) => failures.push(format!("{:?}: accepted as {cmd:?}", c.input)),
            Err(e) => {
                let mut bad = Vec::new();
                if e.token.as_deref() != c.token {
                    bad.push(format!("token {:?} (expected {:?})", e.token, c.token));
                }
                if !e.message.contains(c.message) {
                    bad.push(format!(
                        "message {:?} (expected to contain {:?})",
                        e.message, c.message
                    ));
                }
                if e.suggestion.as_deref() != c.suggestion {
                    bad.push(format!(
                        "suggestion {:?} (expected {:?})",
                        e.suggestion, c.suggestion
                    ));
                }
                if let Some(u) = c.usage
                    && e.usage.as_deref() != Some(u)
                {
                    bad.push(format!("usage {:?} (expected {u:?})", e.usage));
                }
                if !bad.is_empty() {
                    failures.push(format!("{:?}: {}", c.input, bad.join("; ")));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn huge_input_is_refused_without_panicking() {
    let huge = format!("logs api --grep '{}'", "x".repeat(1 << 20));
    let e = parse(&huge).unwrap_err();
    assert!(e.message.contains("too long"), "{e:?}");
    let long_name = format!("status {}", "a".repeat(300));
    let e = parse(&long_name).unwrap_err();
    assert!(e.message.contains("not a valid NAME"), "{e:?}");
    // The message does not echo the whole token back.
    assert!(e.message.chars().count() < 300, "{}", e.message);
    let grep = format!("logs api --grep '{}'", "é".repeat(201));
    assert!(parse(&grep).unwrap_err().message.contains("too long"));
}

#[test]
fn errors_render_as_replies() {
    let e = parse("sclae api 3").unwrap_err();
    let r = e.to_reply();
    assert_eq!(r.tone, Tone::Warning);
    assert_eq!(r.text.as_deref(), Some(e.message.as_str()));
    assert_eq!(r.blocks[0].body, SCALE_USAGE);
    assert_eq!(r.fields[0].value, "`scale`");
}

#[test]
fn actions_and_resources_follow_the_parse() {
    let c = parse("hpa api").unwrap();
    assert_eq!(c.action(), Action::HpaShow);
    let c = parse("hpa api --max 4").unwrap();
    assert_eq!(c.action(), Action::HpaSet);
    let c = parse("scale sts/db 2 -n data").unwrap();
    assert_eq!(c.resource().as_deref(), Some("statefulset/db"));
    assert!(c.is_mutating());
    assert!(!parse("scale sts/db 2 --dry-run").unwrap().is_mutating());
    // Every command's declared actions contain the action its parse asks the policy for.
    for spec in COMMANDS {
        for ex in spec.examples {
            let c = parse(ex.text).unwrap_or_else(|e| panic!("example {:?}: {e:?}", ex.text));
            assert!(spec.actions.contains(&c.action()), "{}", ex.text);
            assert_eq!(spec::spec_of(&c.op).map(|s| s.name), Some(spec.name));
        }
    }
}

/// The policy sees what it rules on: the target replicas of a scale (dry run or not), the
/// lines `logs` will show, and where and to what the command applies.
#[test]
fn policy_requests_carry_what_the_policy_needs() {
    let user = Subject::parse("slack:U1").unwrap();
    let groups = [Subject::parse("slack-group:S9").unwrap()];
    let req = |text: &str| {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
            .with_defaults(Some("dev"), Some("default"))
            .policy_request(&user, &groups, Some("C42"))
    };
    let r = req("scale deploy/api --replicas=5 -n production --cluster prod");
    assert_eq!(r.action, Action::Scale);
    assert_eq!(r.replicas, Some(5));
    assert_eq!(r.tail_lines, None);
    assert_eq!(r.resource.as_deref(), Some("deployment/api"));
    assert_eq!(
        (r.cluster.as_deref(), r.namespace.as_deref()),
        (Some("prod"), Some("production"))
    );
    assert_eq!((r.user.as_str(), r.groups.len()), ("slack:U1", 1));
    assert_eq!(r.channel.as_deref(), Some("C42"));
    assert_eq!(req("scale sts/db 0 --dry-run").replicas, Some(0));
    let r = req("scale sts/db 3");
    assert_eq!(
        (
            r.resource.as_deref(),
            r.cluster.as_deref(),
            r.namespace.as_deref()
        ),
        (Some("statefulset/db"), Some("dev"), Some("default"))
    );
    assert_eq!(req("logs api --tail 20").tail_lines, Some(20));
    assert_eq!(req("logs api").tail_lines, Some(i64::from(DEFAULT_TAIL)));
    // `logs` of a workload is ruled on as that workload, not as a pod.
    for (text, resource) in [
        ("logs conea-api", "deployment/conea-api"),
        ("logs deployment/conea-api", "deployment/conea-api"),
        ("logs sts/postgres", "statefulset/postgres"),
        ("logs pod/conea-api-7d9f-x2x", "pod/conea-api-7d9f-x2x"),
    ] {
        assert_eq!(req(text).resource.as_deref(), Some(resource), "{text}");
    }
    let r = req("status api");
    assert_eq!((r.replicas, r.tail_lines), (None, None));
    // An autoscaler's new bounds are ruled on as the most replicas they allow.
    for (text, replicas) in [
        ("hpa api --min 2 --max 40", Some(40)),
        ("hpa api --max 12", Some(12)),
        ("hpa api --min 3", Some(3)),
        ("hpa api", None),
    ] {
        assert_eq!(req(text).replicas, replicas, "{text}");
    }
}

#[test]
fn declared_defaults_match_the_code() {
    let logs = spec::find("logs").unwrap();
    let tail = logs.flags.iter().find(|f| f.name == "tail").unwrap();
    assert_eq!(tail.default, Some(DEFAULT_TAIL.to_string().as_str()));
}

#[test]
fn canonical_text() {
    let cases = [
        ("status api", "status deployment/api"),
        (
            "st sts/db -n data --cluster prod",
            "status statefulset/db -n data --cluster prod",
        ),
        (
            "scale api --replicas=5 --dry-run",
            "scale deployment/api 5 --dry-run",
        ),
        (
            "logs api -p --since 90m --grep 'a b' -c app --tail 5",
            "logs api --tail 5 --since 1h30m --grep 'a b' --container app --previous",
        ),
        ("pods -l 'env in (a,b)'", "pods --selector 'env in (a,b)'"),
        ("help backups run", "help backup run"),
        ("", "help"),
        ("events --since 3600s", "events --since 1h"),
    ];
    for (input, canonical) in cases {
        let c = parse(input).unwrap();
        assert_eq!(c.to_text(), canonical, "{input}");
        assert_eq!(parse(canonical), Ok(c));
    }
}

#[test]
fn help_replies_come_from_the_declarations() {
    let all = help_reply(None);
    assert_eq!(all.title, "opsbot commands");
    for c in COMMANDS {
        assert!(all.blocks[0].body.contains(&c.usage()), "{}", c.name);
        assert!(all.blocks[0].body.contains(c.summary), "{}", c.name);
    }
    let scale = help_reply(Some("scale"));
    assert_eq!(scale.title, "help: scale");
    assert_eq!(scale.blocks[0].body, SCALE_USAGE);
    assert!(scale.blocks[1].body.contains("--dry-run"));
    assert!(scale.blocks[1].body.contains("-n, --namespace NAMESPACE"));
    assert!(scale.blocks[2].body.contains("scale api 5 -n shop"));
    assert!(
        scale
            .fields
            .iter()
            .any(|f| f.name == "Risk" && f.value == "risky")
    );
    assert!(
        scale
            .fields
            .iter()
            .any(|f| f.name == "Policy action" && f.value == "scale")
    );
    let hpa = help_reply(Some("hpa"));
    assert!(hpa.fields.iter().any(|f| f.value == "hpa.show, hpa.set"));
    let backup = help_reply(Some("backup"));
    assert!(
        backup.blocks[0]
            .body
            .contains("backup status [CRONJOB | --all]")
    );
    assert!(backup.blocks[0].body.contains("backup run CRONJOB"));
    assert_eq!(help_reply(Some("po")).title, "help: pods");
    assert_eq!(help_reply(Some("nope")).tone, Tone::Warning);
    // What `help X` parses to is what help_reply explains.
    let Op::Help { command } = parse("help backups run").unwrap().op else {
        panic!()
    };
    assert_eq!(help_reply(command.as_deref()).title, "help: backup run");
}

#[test]
fn incident_commands_parse_and_print_back() {
    use opsbot_commands::{IncidentCmd, IncidentOp, IncidentStatus, Role};
    use opsbot_policies::{Action, Severity};
    let inc = |text: &str| match parse(text) {
        Ok(Command {
            op: Op::Incident(c),
            ..
        }) => c,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        inc(
            "incident open p1 checkout returns 500 --service conea-api --commander <@U0ALICE|alice>"
        ),
        IncidentCmd {
            id: None,
            op: IncidentOp::Open {
                severity: Severity::P1,
                title: "checkout returns 500".into(),
                service: Some("conea-api".into()),
                commander: Some("<@U0ALICE>".into()),
                alert: None,
            }
        }
    );
    assert_eq!(
        inc("inc status identified pool exhausted --id INC-7").op,
        IncidentOp::Status {
            status: IncidentStatus::Identified,
            message: Some("pool exhausted".into())
        }
    );
    assert_eq!(inc("incident status monitoring --id 7").id, Some(7));
    assert_eq!(
        inc("incident assign scribe me").op,
        IncidentOp::Assign {
            role: Role::Scribe,
            person: "me".into()
        }
    );
    assert_eq!(
        inc("incident close --resolution rolled back the deploy --id INC-3"),
        IncidentCmd {
            id: Some(3),
            op: IncidentOp::Close {
                resolution: Some("rolled back the deploy".into())
            }
        }
    );
    assert_eq!(
        inc("incident note --follow-up add an alert on pool size").op,
        IncidentOp::Note {
            text: "add an alert on pool size".into(),
            follow_up: true
        }
    );
    assert_eq!(inc("incident show INC-42").id, Some(42));
    assert_eq!(inc("incidents timeline").op, IncidentOp::Timeline);
    // Policy actions and the severity the policy sees.
    let open = parse("incident open P1 db down").unwrap();
    assert_eq!(open.action(), Action::IncidentOpen);
    assert_eq!(open.severity(), Some(Severity::P1));
    assert_eq!(
        parse("incident sev P3").unwrap().severity(),
        Some(Severity::P3)
    );
    assert_eq!(
        parse("incident note x").unwrap().action(),
        Action::IncidentUpdate
    );
    assert_eq!(
        parse("incident reopen 4").unwrap().action(),
        Action::IncidentClose
    );
    assert_eq!(
        parse("incident export").unwrap().action(),
        Action::IncidentShow
    );
    assert!(!open.needs_cluster());
    // Canonical text parses back to the same command.
    for text in [
        "incident open P2 'it''s slow' --service api",
        "incident open P1 db down --commander me",
        "incident open P2 KubePodCrashLooping --alert 3fa2b1c4d5e6",
        "incident status resolved all good now --id 9",
        "incident close --resolution fixed it",
        "incident list --open --sev P1",
        "incident stats --since 7d",
        "incident note --follow-up add a runbook",
        "incident assign comms @bob --id 12",
    ] {
        let cmd = parse(text).unwrap();
        assert_eq!(
            parse(&cmd.to_text()).unwrap(),
            cmd,
            "{text} → {}",
            cmd.to_text()
        );
    }
    // Bad input: clear errors.
    for (text, says) in [
        ("incident open P5 x", "not a valid P1..P4"),
        ("incident open P1", "missing TITLE"),
        ("incident assign commander bob", "not a person"),
        ("incident status fixed", "not a valid STATUS"),
        ("incident show INC-x", "not an incident"),
        ("incident frobnicate", "unknown command"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.message.contains(says), "{text}: {}", e.message);
    }
}

#[test]
fn schema_describes_every_command() {
    let root = app_commands();
    assert_eq!(root.name, "ops");
    let names: Vec<&str> = root.subcommands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "status", "pods", "logs", "events", "scale", "restart", "rollback", "hpa", "backup",
            "alerts", "silence", "incident", "help", "whoami"
        ]
    );
    let backup = root
        .subcommands
        .iter()
        .find(|c| c.name == "backup")
        .unwrap();
    let subs: Vec<&str> = backup.subcommands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(subs, ["status", "run"]);
    let scale = root.subcommands.iter().find(|c| c.name == "scale").unwrap();
    let replicas = scale.options.iter().find(|o| o.name == "replicas").unwrap();
    assert_eq!(
        (replicas.kind, replicas.required, replicas.min, replicas.max),
        (OptionKind::Integer, true, Some(0), Some(1000))
    );
    let dry = scale.options.iter().find(|o| o.name == "dry-run").unwrap();
    assert_eq!(dry.kind, OptionKind::Boolean);
    assert!(scale.options.iter().any(|o| o.name == "namespace"));
    let help = root.subcommands.iter().find(|c| c.name == "help").unwrap();
    let topics = &help.options[0].choices;
    for t in ["scale", "backup", "incident", "silence", "alerts"] {
        assert!(topics.contains(&t.to_owned()), "{t} not in {topics:?}");
    }

    // Platform limits the adapters rely on: names are lowercase, at most 32 characters;
    // descriptions are 1 to 100 characters; required options come first; at most 25 of each.
    fn check(c: &opsbot_commands::AppCommand) {
        let name_ok = |n: &str| {
            !n.is_empty() && n.len() <= 32 && n.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        };
        assert!(name_ok(&c.name), "{}", c.name);
        assert!(
            (1..=100).contains(&c.description.chars().count()),
            "{}",
            c.name
        );
        assert!(c.options.len() <= 25 && c.subcommands.len() <= 25);
        let mut seen_optional = false;
        for o in &c.options {
            assert!(name_ok(&o.name), "{}", o.name);
            assert!(
                (1..=100).contains(&o.description.chars().count()),
                "{}",
                o.name
            );
            assert!(o.choices.len() <= 25);
            assert!(
                !(seen_optional && o.required),
                "{}: required after optional",
                c.name
            );
            seen_optional |= !o.required;
        }
        c.subcommands.iter().for_each(check);
    }
    check(&root);
    // It serializes (adapters turn the JSON of this into their own).
    let json = serde_json::to_value(&root).unwrap();
    assert_eq!(json["subcommands"][4]["options"][1]["kind"], "integer");
}

#[test]
fn invocations_parse_like_text() {
    let tokens = invocation_tokens(
        &["scale"],
        &[
            ("replicas", OptionValue::Integer(4)),
            ("workload", OptionValue::String("sts/db".into())),
            ("dry-run", OptionValue::Boolean(true)),
            ("namespace", OptionValue::String("data".into())),
        ],
    );
    assert_eq!(
        parse_tokens(&tokens),
        Ok(in_ns("data", scale(sts("db"), 4, true)))
    );
    let tokens = invocation_tokens(
        &["backup", "run"],
        &[("cronjob", OptionValue::String("pg".into()))],
    );
    assert_eq!(
        parse_tokens(&tokens),
        Ok(cmd(Op::BackupRun {
            cronjob: "pg".into(),
            job: None,
        }))
    );
    let tokens = invocation_tokens(
        &["help"],
        &[("command", OptionValue::String("backup run".into()))],
    );
    assert_eq!(
        parse_tokens(&tokens),
        Ok(cmd(Op::Help {
            command: Some("backup run".into())
        }))
    );
    let tokens = invocation_tokens(
        &["logs"],
        &[
            ("name", OptionValue::String("api".into())),
            ("grep", OptionValue::String("-x y".into())),
            ("previous", OptionValue::Boolean(false)),
        ],
    );
    assert_eq!(
        parse_tokens(&tokens),
        Ok(cmd(L {
            grep: Some("-x y"),
            ..L::default()
        }
        .on("api")))
    );
    // Validated the same way as text.
    let tokens = invocation_tokens(
        &["scale"],
        &[
            ("workload", OptionValue::String("api".into())),
            ("replicas", OptionValue::Integer(-3)),
        ],
    );
    assert!(
        parse_tokens(&tokens)
            .unwrap_err()
            .message
            .contains("not a number")
    );
}

// ---- property tests ----

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn dns_name() -> impl Strategy<Value = String> {
    prop::collection::vec(dns_label(), 1..3).prop_map(|v| v.join("."))
}

fn workload() -> impl Strategy<Value = Workload> {
    (prop::bool::ANY, dns_name()).prop_map(|(sts, name)| Workload {
        kind: if sts {
            WorkloadKind::StatefulSet
        } else {
            WorkloadKind::Deployment
        },
        name,
    })
}

fn duration() -> impl Strategy<Value = Duration> {
    (1u64..=30 * 86400).prop_map(Duration::from_secs)
}

fn text() -> impl Strategy<Value = String> {
    // Any one-line text, including quotes, backslashes, `#`, dashes and unicode.
    "[^\\p{Cc}]{1,60}".prop_filter("one line", |s| !s.chars().any(char::is_control))
}

fn selector() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            // Keys as Kubernetes takes them: NAME, or PREFIX/NAME with a DNS prefix.
            "[a-z]([a-z0-9_.-]{0,6}[a-z0-9])?=[a-z0-9]{1,5}",
            "[a-z]{1,4}(\\.[a-z]{1,4}){0,2}/[a-z]([a-z0-9-]{0,4}[a-z0-9])?=[a-z0-9]{1,5}",
            "[a-z]{1,6}!=[a-z0-9]{1,5}",
            "[a-z]{1,6} in \\([a-z]{1,4}(, ?[a-z]{1,4}){0,2}\\)",
            "!?[a-z]{1,6}",
        ],
        1..4,
    )
    .prop_map(|v| v.join(","))
}

fn topic() -> impl Strategy<Value = String> {
    let mut topics: Vec<String> = COMMANDS.iter().map(|c| c.name.to_owned()).collect();
    topics.push("backup".to_owned());
    prop::sample::select(topics)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        workload().prop_map(|workload| Op::Status { workload }),
        prop::option::of(prop_oneof![
            dns_name().prop_map(PodSelector::Name),
            selector().prop_map(PodSelector::Labels)
        ])
        .prop_map(|selector| Op::Pods { selector }),
        (
            prop_oneof![
                dns_name().prop_map(PodSelector::Name),
                selector().prop_map(PodSelector::Labels)
            ],
            prop::option::of(1u32..=10000),
            prop::option::of(duration()),
            prop::option::of(text()),
            prop::option::of(dns_label()),
            prop::bool::ANY
        )
            .prop_map(
                |(source, tail, since, grep, container, previous)| Op::Logs {
                    source,
                    tail,
                    since,
                    grep,
                    container,
                    previous
                }
            ),
        (
            prop::option::of(dns_name()),
            prop::option::of(duration()),
            prop::bool::ANY
        )
            .prop_map(|(name, since, warnings)| Op::Events {
                name,
                since,
                warnings
            }),
        (workload(), 0u32..=1000, prop::bool::ANY).prop_map(|(workload, replicas, dry_run)| {
            Op::Scale {
                workload,
                replicas,
                dry_run,
            }
        }),
        workload().prop_map(|workload| Op::Restart { workload }),
        (dns_name(), prop::option::of(1u64..=i64::MAX as u64))
            .prop_map(|(name, to_revision)| Op::Rollback { name, to_revision }),
        (
            dns_name(),
            prop::option::of(1u32..=1000),
            prop::option::of(1u32..=1000)
        )
            .prop_filter("min <= max", |(_, min, max)| match (min, max) {
                (Some(a), Some(b)) => a <= b,
                _ => true,
            })
            .prop_map(|(name, min, max)| Op::Hpa { name, min, max }),
        Just(Op::HpaList),
        (prop::option::of(dns_name()), any::<bool>()).prop_map(|(cronjob, all)| {
            Op::BackupStatus {
                all: all && cronjob.is_none(),
                cronjob,
            }
        }),
        (dns_name(), prop::option::of(dns_label()))
            .prop_map(|(cronjob, job)| Op::BackupRun { cronjob, job }),
        prop::option::of(topic()).prop_map(|command| Op::Help { command }),
        Just(Op::Whoami),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    (
        prop::option::of("[a-zA-Z0-9][a-zA-Z0-9_.:@/-]{0,30}"),
        prop::option::of(dns_label()),
        op(),
    )
        .prop_map(|(cluster, namespace, op)| Command {
            cluster,
            namespace,
            op,
        })
}

/// Words users (and fuzzers) type: commands, flags, values, quotes and odd characters.
fn wordy_line() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "status",
            "pods",
            "logs",
            "events",
            "scale",
            "restart",
            "rollback",
            "hpa",
            "backup",
            "run",
            "help",
            "whoami",
            "-n",
            "--namespace",
            "--cluster",
            "--tail",
            "--since",
            "--grep",
            "-c",
            "-p",
            "-l",
            "--replicas=5",
            "--dry-run",
            "--min",
            "--max",
            "--to-revision",
            "--",
            "-",
            "deploy/api",
            "sts/db",
            "svc/x",
            "5",
            "0",
            "1001",
            "1h",
            "30",
            "'",
            "\"",
            "\\",
            "“",
            "—tail",
            "=",
            "#",
            "app=web",
            "Api",
            "ünï",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9./=-]{1,12}",
        "\\PC{1,8}",
        any::<String>(),
    ];
    prop::collection::vec(word, 0..8).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rendering_and_parsing_again_gives_the_same_command(c in command()) {
        let text = c.to_text();
        prop_assert_eq!(parse(&text), Ok(c), "text: {}", text);
    }

    #[test]
    fn no_input_panics(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn no_line_of_words_panics_and_what_parses_round_trips(s in wordy_line()) {
        if let Ok(c) = parse(&s) {
            let text = c.to_text();
            prop_assert_eq!(parse(&text), Ok(c), "input: {:?}, text: {}", s, text);
        }
    }

    #[test]
    fn no_token_list_panics(tokens in prop::collection::vec(any::<String>(), 0..6)) {
        let _ = parse_tokens(&tokens);
    }
}

/// Guards the table as commands are added (e.g. the incident commands).
#[test]
fn declarations_are_consistent() {
    use std::collections::HashSet;
    let mut names = HashSet::new();
    for c in COMMANDS {
        assert!(names.insert(c.name), "{} declared twice", c.name);
        assert!(!c.actions.is_empty(), "{}", c.name);
        assert!(
            c.summary.chars().count() <= 100,
            "{}: summary too long",
            c.name
        );
        assert!(
            !c.description.is_empty() && !c.examples.is_empty(),
            "{}",
            c.name
        );
        if let Some(g) = c.group() {
            assert!(
                spec::GROUPS.iter().any(|x| x.name == g),
                "{}: undeclared group",
                c.name
            );
        }
        // Required positionals come before optional ones, and a help topic comes last.
        let mut optional = false;
        for (i, a) in c.args.iter().enumerate() {
            assert!(
                !(optional && a.required),
                "{}: {} after an optional",
                c.name,
                a.name
            );
            optional |= !a.required;
            if a.ty == spec::ValueType::Topic {
                assert_eq!(i, c.args.len() - 1, "{}", c.name);
            }
        }
        // Every spelling of every flag is unique within the command (globals included).
        let mut spellings = HashSet::new();
        for f in c.flags.iter().chain(spec::GLOBAL_FLAGS) {
            let mut all = vec![format!("--{}", f.name)];
            all.extend(f.aliases.iter().map(|a| format!("--{a}")));
            all.extend(f.short.map(|s| format!("-{s}")));
            for s in all {
                assert!(
                    spellings.insert(s.clone()),
                    "{}: {s} declared twice",
                    c.name
                );
            }
        }
        for a in c.args {
            if let Some(f) = a.flag {
                assert!(
                    spellings.insert(format!("--{f}")),
                    "{}: --{f} twice",
                    c.name
                );
            }
            assert!(
                c.flags.iter().all(|f| f.name != a.name),
                "{}: {} is both an argument and a flag",
                c.name,
                a.name
            );
        }
        // Names and aliases select exactly this command.
        for w in std::iter::once(c.word()).chain(c.aliases.iter().copied()) {
            assert_eq!(
                spec::find_command(c.group(), w).map(|x| x.name),
                Some(c.name)
            );
        }
        // `render` only names declared arguments and flags.
        for ex in c.examples {
            let op = parse(ex.text).unwrap().op;
            for (name, _) in (c.render)(&op).unwrap() {
                assert!(
                    c.args.iter().any(|a| a.name == name) || c.flags.iter().any(|f| f.name == name),
                    "{}: render names undeclared {name}",
                    c.name
                );
            }
        }
    }
    // Aliases of different top-level commands and groups do not collide.
    let mut top = HashSet::new();
    for c in COMMANDS.iter().filter(|c| c.group().is_none()) {
        for w in std::iter::once(c.name).chain(c.aliases.iter().copied()) {
            assert!(top.insert(w), "{w} names two commands");
        }
    }
    for g in spec::GROUPS {
        for w in std::iter::once(g.name).chain(g.aliases.iter().copied()) {
            assert!(top.insert(w), "{w} names two commands");
        }
    }
}

/// Other ways to write the same command: flags in another order, `--flag=value`, kubectl's
/// `deploy/`/`sts/`, `--replicas=N`, and the namespace and cluster before the command.
fn respell(c: &Command, seed: u64) -> String {
    let canonical = shell_words::split(&c.to_text()).unwrap();
    let spec = spec::spec_of(&c.op).unwrap();
    let head = spec.name.split(' ').count();
    let mut rng = seed;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let (words, rest) = canonical.split_at(head);
    let mut positionals = Vec::new();
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let t = &rest[i];
        if t.starts_with('-') {
            let is_bool = spec
                .flags
                .iter()
                .any(|f| format!("--{}", f.name) == *t && f.ty == spec::ValueType::Bool);
            if is_bool {
                groups.push(vec![t.clone()]);
                i += 1;
            } else {
                let v = rest[i + 1].clone();
                if next() % 2 == 0 {
                    groups.push(vec![format!("{t}={v}")]);
                } else {
                    groups.push(vec![t.clone(), v]);
                }
                i += 2;
            }
        } else {
            let t = match t.split_once('/') {
                Some(("deployment", n)) if next() % 2 == 0 => format!("deploy/{n}"),
                Some(("deployment", n)) if next() % 2 == 0 => n.to_owned(),
                Some(("statefulset", n)) if next() % 2 == 0 => format!("sts/{n}"),
                _ => t.clone(),
            };
            positionals.push(t);
            i += 1;
        }
    }
    // scale's REPLICAS as kubectl's --replicas=N.
    if spec.name == "scale" && next() % 2 == 0 {
        let n = positionals.pop().unwrap();
        groups.push(vec![format!("--replicas={n}")]);
    }
    // Shuffle the flag groups.
    for k in (1..groups.len()).rev() {
        let j = (next() as usize) % (k + 1);
        groups.swap(k, j);
    }
    // The namespace and cluster may come first.
    let mut front = Vec::new();
    groups.retain(|g| {
        let global = g[0].starts_with("-n") || g[0].starts_with("--cluster");
        if global && next() % 2 == 0 {
            front.push(g.clone());
            false
        } else {
            true
        }
    });
    let mut out: Vec<String> = front.into_iter().flatten().collect();
    out.extend(words.iter().cloned());
    out.extend(positionals);
    out.extend(groups.into_iter().flatten());
    out.iter()
        .map(|w| {
            // Quote like a user would, whatever the word.
            if w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn other_spellings_parse_to_the_same_command(c in command(), seed in any::<u64>()) {
        let text = respell(&c, seed);
        prop_assert_eq!(parse(&text), Ok(c), "text: {}", text);
    }
}

/// An error quotes what was typed, but never a pasted wall of text: past 80 characters the
/// token is cut to 77 and `…` (characters, not bytes).
#[test]
fn errors_quote_long_tokens_elided() {
    let long = "ü".repeat(1000);
    for text in [
        long.clone(),
        format!("scale api {long}"),
        format!("logs api --{long}"),
        format!("logs api --since {long}"),
    ] {
        let e = parse(&text).unwrap_err();
        assert!(e.message.chars().count() < 300, "{}", e.message);
        assert!(e.message.contains("üü…`"), "{}", e.message);
    }
    let e = parse(&long).unwrap_err();
    let quoted = format!("`{}…`", "ü".repeat(77));
    assert!(e.message.contains(&quoted), "{}", e.message);
    // 80 characters are quoted whole.
    let e = parse(&"q".repeat(80)).unwrap_err();
    assert!(
        e.message.contains(&format!("`{}`", "q".repeat(80))),
        "{}",
        e.message
    );
}

/// A line may repeat a word up to the length limit: parsing it takes no stack per word (600
/// `kubectl`s before `get pods` overflowed a runtime thread's stack and aborted the bot).
#[test]
fn repeated_words_up_to_the_length_limit_parse_on_a_small_stack() {
    for word in [
        "kubectl", "-n api", "| grep x", "rollout", "--", "get", "'", "\"", "—", "x=y", "|",
    ] {
        let times = 8000 / (word.len() + 1);
        let line = format!("{}get pods -n api", format!("{word} ").repeat(times));
        let parsed = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse(&line).map(|c| c.to_text()))
            .unwrap()
            .join();
        assert!(parsed.is_ok(), "{word}");
    }
    assert_eq!(
        parse(&format!("{}get pods -n api", "kubectl ".repeat(900))),
        parse("pods -n api")
    );
}

/// A secret in a long token is masked before the error shortens the quote: cut short, it would
/// no longer look like a secret and would be echoed (and audited) in part.
#[test]
fn a_long_quoted_token_is_masked_before_it_is_shortened() {
    let token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    for (secret, leak) in [(token, "ghp_abc"), (jwt, "eyJhbGciOiJIUzI1NiIsInR5cCI6")] {
        let line = format!("status {},{secret} -n api", "x".repeat(64));
        let err = parse(&line).expect_err("not a name");
        assert!(!err.message.contains(leak), "{}", err.message);
        assert!(err.message.contains("****"), "{}", err.message);
    }
}

/// A dash on its own is punctuation in free text; only a dash a phone put before a word
/// (`—tail`) is an option's `--`.
#[test]
fn a_dash_on_its_own_is_text_not_the_end_of_options() {
    assert_eq!(
        parse("incident note rolled back — all good --id INC-1"),
        parse(r#"incident note --id INC-1 "rolled back — all good""#)
    );
    assert_eq!(
        parse("incident open P3 checkout – payments slow"),
        parse(r#"incident open P3 "checkout – payments slow""#)
    );
    assert_eq!(
        parse("logs rust-webapi —tail 5 -n api"),
        parse("logs rust-webapi --tail 5 -n api")
    );
}

/// A `|` in an incident's or a silence's free text is a character, not a shell pipeline.
#[test]
fn a_bar_in_free_text_is_text() {
    assert_eq!(
        parse("incident open P1 db | cache down"),
        parse(r#"incident open P1 "db | cache down""#)
    );
    assert!(parse("incident note failover done | watching --id INC-3").is_ok());
    // Elsewhere it is still a pipeline opsbot does not run.
    let err = parse("get pods -n api | wc -l").unwrap_err();
    assert!(
        err.message.contains("no shell pipelines"),
        "{}",
        err.message
    );
}

/// An option whose value is missing is told so, not given the next option as its value.
#[test]
fn an_option_is_not_the_value_of_the_one_before() {
    let err = parse("silence add alertname=X --comment --for 2h").unwrap_err();
    assert!(
        err.message
            .starts_with("`--comment` needs a value before `--for`"),
        "{}",
        err.message
    );
    assert!(
        parse("logs api --grep -v -n api").is_ok(),
        "a short dash word may be a value"
    );
}

/// In free text a number with a minus sign is a word: "error rate -50%" is a title.
#[test]
fn a_negative_number_in_free_text_is_a_word() {
    assert_eq!(
        parse("incident open P1 error rate -50% on checkout"),
        parse(r#"incident open P1 "error rate -50% on checkout""#)
    );
    assert!(parse("incident note latency -200ms after fix --id INC-1").is_ok());
    // Elsewhere a negative number is still refused.
    let err = parse("scale api -3").unwrap_err();
    assert!(err.message.contains("never negative"), "{}", err.message);
}

/// An error quotes control and direction-changing characters as escapes: an answer carries no
/// terminal escape and does not turn its text around.
#[test]
fn control_and_bidi_characters_are_quoted_as_escapes() {
    for (typed, shown) in [
        ("status rust\u{1b}[31m -n api", "rust\\u{1b}[31m"),
        ("status api\u{202e}gnp -n api", "api\\u{202e}gnp"),
    ] {
        let err = parse(typed).unwrap_err();
        assert!(err.message.contains(shown), "{}", err.message);
        assert!(
            !err.message.contains(['\u{1b}', '\u{202e}']),
            "{}",
            err.message
        );
    }
}

/// `silence add` needs both `--for` and `--comment`, and its usage says so.
#[test]
fn silence_add_usage_shows_its_required_options() {
    let err = parse("silence add alertname=X --comment deploying").unwrap_err();
    assert_eq!(
        err.usage.as_deref(),
        Some("silence add MATCHERS… --for DURATION --comment TEXT…")
    );
}

/// "Given twice" quotes both as typed, with their values.
#[test]
fn given_twice_quotes_both_values() {
    let err = parse("hpa x --min 3 --min 4").unwrap_err();
    assert!(
        err.message.contains("(`--min 3` and `--min 4`)"),
        "{}",
        err.message
    );
    let err = parse("logs api --tail=5 --tail 6").unwrap_err();
    assert!(
        err.message.contains("(`--tail=5` and `--tail 6`)"),
        "{}",
        err.message
    );
}

/// A number above an unbounded range is "too large", not "out of range: 1 or more".
#[test]
fn a_number_above_an_unbounded_range_is_too_large() {
    let err = parse("rollback api --to-revision 9223372036854775808").unwrap_err();
    assert!(
        err.message
            .contains("is too large: N is at most 9223372036854775807"),
        "{}",
        err.message
    );
}

/// A malformed label selector is the typist's parse error (it reached the API server, after
/// the policy, and was refused there in the channel); every form Kubernetes takes parses.
#[test]
fn label_selectors_are_checked_as_kubernetes_parses_them() {
    for bad in [
        "==,,!",
        "(((",
        "a b c",
        "app=web,",
        "-app=web",
        "app=-x",
        "env in prod",
    ] {
        let err = parse(&format!("pods -l '{bad}' -n ingress")).unwrap_err();
        assert!(
            err.message.contains("is not a label selector"),
            "{bad}: {}",
            err.message
        );
    }
    for good in [
        "app=web",
        "app==web,tier!=cache",
        "env in (prod, staging)",
        "tier notin (cache)",
        "!canary",
        "app",
        "app.kubernetes.io/name=envoy",
        "version=",
    ] {
        assert!(parse(&format!("pods -l '{good}'")).is_ok(), "{good}");
    }
}
