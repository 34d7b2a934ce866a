//! One declaration per command.
//!
//! [`COMMANDS`] is the single table every command is declared in: name, aliases, positional
//! arguments and flags with their types, defaults, policy action, risk, help text and examples.
//! The text parser ([`crate::grammar::parse`]), `help` ([`crate::help`]), the usage line in
//! errors, the platform-neutral application-command schema ([`app_commands`]) and the generated
//! command reference (`docs/commands.md`) are all driven by it.
//!
//! Adding a command (e.g. the `incident` commands) means: a variant in [`Op`], an entry here with
//! its `build` and `render` functions, and (for a new group such as `incident open`) an entry in
//! [`GROUPS`].

use std::collections::BTreeMap;
use std::time::Duration;

use opsbot_policies::Action;
use serde::{Deserialize, Serialize};

use crate::alert::AlertCmd;
use crate::command::{Op, PodSelector, Workload};
use crate::grammar::ParseError;
use crate::incident::{IncidentCmd, IncidentOp, IncidentStatus, Role};
use opsbot_policies::Severity;

/// How much a command can hurt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Only reads.
    Read,
    /// Changes the cluster in a routine, easily reverted way.
    Change,
    /// Changes the cluster in a way that can take a service down.
    Risky,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Change => "change",
            Risk::Risky => "risky",
        }
    }
}

/// The type of an argument or flag value, with its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// A Kubernetes DNS-1123 label: namespaces, container names.
    DnsLabel,
    /// A Kubernetes DNS-1123 subdomain (resource names). kubectl-style `KIND/` prefixes listed in
    /// `prefixes` are accepted and dropped (`pod/x`, `cj/x`).
    Name { prefixes: &'static [&'static str] },
    /// `deploy/x`, `deployment/x`, `sts/x`, `statefulset/x` or `x` (a deployment).
    Workload,
    /// What `logs` reads: a workload as in [`ValueType::Workload`], or `pod/x` (`po/`, `pods/`).
    /// Kept as typed, canonically: `x` (a deployment), `statefulset/x` or `pod/x`, so the
    /// policy sees the kind that is read.
    LogSource,
    /// An integer in `min..=max`.
    Int { min: u64, max: u64 },
    /// `30s`, `15m`, `1h`, `2d`, or combinations such as `1h30m`; at most `max_secs`.
    Duration { max_secs: u64 },
    /// One line of free text, at most `max_chars` characters.
    Text { max_chars: usize },
    /// Free text of several words, at most `max_chars` characters: as a positional argument the
    /// rest of the line, as a flag's value every word up to the next flag.
    Words { max_chars: usize },
    /// A person: a chat mention (`<@U123>`, `<@123>`), a console `@name`, or `me`.
    Person,
    /// An incident: `INC-42` or `42`.
    IncidentId,
    /// A Kubernetes label selector such as `app=web,tier!=cache`.
    Selector,
    /// One of a fixed set of words (case-insensitive), e.g. an incident severity.
    Choice(&'static [&'static str]),
    /// A cluster (kubeconfig context) name.
    Cluster,
    /// A command name, for `help` (the rest of the line).
    Topic,
    /// A flag without a value.
    Bool,
}

impl ValueType {
    /// The primitive type of the value in the application-command schema.
    pub fn option_kind(self) -> OptionKind {
        match self {
            ValueType::Int { .. } => OptionKind::Integer,
            ValueType::Bool => OptionKind::Boolean,
            _ => OptionKind::String,
        }
    }
}

/// A parsed argument or flag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Workload(Workload),
    Int(u64),
    Duration(Duration),
    Bool(bool),
}

/// A positional argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSpec {
    /// The argument's name in the schema and in [`Matches`].
    pub name: &'static str,
    /// How usage lines show it, e.g. `NAME`, `[deployment/|statefulset/]NAME`.
    pub placeholder: &'static str,
    pub ty: ValueType,
    pub required: bool,
    /// The argument may also be given as this flag (kubectl's `--replicas=5`).
    pub flag: Option<&'static str>,
    pub help: &'static str,
}

/// A `--flag` (with or without a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagSpec {
    /// The long name without `--`; also the option's name in the schema.
    pub name: &'static str,
    pub short: Option<char>,
    /// Other long names accepted for it.
    pub aliases: &'static [&'static str],
    /// How usage lines show its value, e.g. `N`; empty for [`ValueType::Bool`].
    pub placeholder: &'static str,
    pub ty: ValueType,
    /// What applies when the flag is not given (documentation only).
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl FlagSpec {
    /// `--tail N`, `--previous`, `-l SELECTOR`.
    pub fn usage(&self) -> String {
        let name = format!("--{}", self.name);
        if self.placeholder.is_empty() {
            name
        } else {
            format!("{name} {}", self.placeholder)
        }
    }

    /// Every spelling: `-c, --container C`.
    pub fn spellings(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        if let Some(c) = self.short {
            names.push(format!("-{c}"));
        }
        names.push(format!("--{}", self.name));
        names.extend(self.aliases.iter().map(|a| format!("--{a}")));
        let names = names.join(", ");
        if self.placeholder.is_empty() {
            names
        } else {
            format!("{names} {}", self.placeholder)
        }
    }

    pub(crate) fn matches(&self, flag: &str) -> bool {
        if let Some(long) = flag.strip_prefix("--") {
            long == self.name || self.aliases.contains(&long)
        } else if let Some(short) = flag.strip_prefix('-') {
            let mut cs = short.chars();
            matches!((cs.next(), cs.next(), self.short), (Some(c), None, Some(s)) if c == s)
        } else {
            false
        }
    }
}

/// An example invocation and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example {
    pub text: &'static str,
    pub explains: &'static str,
}

/// A group of subcommands, e.g. `backup status` and `backup run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
}

/// The values parsed for one command, by argument/flag name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    values: BTreeMap<&'static str, Value>,
}

impl Matches {
    pub fn insert(&mut self, name: &'static str, value: Value) {
        self.values.insert(name, value);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn string(&mut self, name: &str) -> Option<String> {
        match self.values.remove(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<u64> {
        match self.values.get(name) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.values.get(name) {
            Some(Value::Duration(d)) => Some(*d),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    pub fn workload(&mut self, name: &str) -> Option<Workload> {
        match self.values.remove(name) {
            Some(Value::Workload(w)) => Some(w),
            _ => None,
        }
    }
}

/// The values of a command, by argument/flag name, in declaration order.
pub type Rendered = Vec<(&'static str, Value)>;

/// One command's declaration.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// `scale`, or `backup run` for a command in a [`Group`].
    pub name: &'static str,
    /// Other names for the (last word of the) command.
    pub aliases: &'static [&'static str],
    /// The policy actions the command needs (`hpa` shows or sets).
    pub actions: &'static [Action],
    pub risk: Risk,
    pub args: &'static [ArgSpec],
    pub flags: &'static [FlagSpec],
    /// A usage line to show instead of the generated one (alternatives such as `NAME | -l SEL`).
    pub usage: Option<&'static str>,
    /// One line, at most 100 characters.
    pub summary: &'static str,
    pub description: &'static str,
    pub examples: &'static [Example],
    /// Turns the parsed values into the operation; checks relations between values.
    pub build: fn(&mut Matches) -> Result<Op, ParseError>,
    /// The values that `build` turns into `op`, or `None` when `op` is not this command's.
    pub render: fn(&Op) -> Option<Rendered>,
}

impl PartialEq for CommandSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CommandSpec {}

impl CommandSpec {
    /// The usage line, e.g. `scale [deployment/|statefulset/]NAME REPLICAS [--dry-run]`.
    pub fn usage(&self) -> String {
        if let Some(u) = self.usage {
            return u.to_owned();
        }
        let mut parts = vec![self.name.to_owned()];
        for a in self.args {
            parts.push(if a.required {
                a.placeholder.to_owned()
            } else {
                format!("[{}]", a.placeholder)
            });
        }
        for f in self.flags {
            parts.push(format!("[{}]", f.usage()));
        }
        parts.join(" ")
    }

    /// The group (first word) of a grouped command.
    pub fn group(&self) -> Option<&'static str> {
        self.name.split_once(' ').map(|(g, _)| g)
    }

    /// The word that selects the command (its last word).
    pub fn word(&self) -> &'static str {
        self.name.rsplit(' ').next().unwrap_or(self.name)
    }

    pub(crate) fn find_flag(&self, flag: &str) -> Option<&'static FlagSpec> {
        self.flags.iter().find(|f| f.matches(flag))
    }

    pub(crate) fn find_arg_flag(&self, flag: &str) -> Option<&'static ArgSpec> {
        let long = flag.strip_prefix("--")?;
        self.args.iter().find(|a| a.flag == Some(long))
    }

    /// Every flag spelling this command accepts (for suggestions).
    pub(crate) fn flag_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.flags.iter().chain(GLOBAL_FLAGS) {
            out.push(format!("--{}", f.name));
            out.extend(f.aliases.iter().map(|a| format!("--{a}")));
        }
        out.extend(
            self.args
                .iter()
                .filter_map(|a| a.flag.map(|f| format!("--{f}"))),
        );
        out
    }
}

/// Flags every command accepts.
pub static GLOBAL_FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "namespace",
        short: Some('n'),
        aliases: &[],
        placeholder: "NAMESPACE",
        ty: ValueType::DnsLabel,
        default: Some("the channel's namespace, else the cluster's"),
        help: "Namespace to act in.",
    },
    FlagSpec {
        name: "cluster",
        short: None,
        aliases: &["context"],
        placeholder: "CLUSTER",
        ty: ValueType::Cluster,
        default: Some("the default cluster"),
        help: "Cluster (kubeconfig context) to act on.",
    },
];

/// Command groups (commands whose name has two words).
pub static GROUPS: &[Group] = &[
    Group {
        name: "backup",
        aliases: &["backups"],
        summary: "Backup CronJobs: show their health or run one now.",
    },
    Group {
        name: "silence",
        aliases: &["silences"],
        summary: "Alertmanager silences: list, add, expire.",
    },
    Group {
        name: "incident",
        aliases: &["incidents", "inc"],
        summary: "Incidents: open, update and close them, with a channel and a timeline each.",
    },
];

const POD_PREFIXES: &[&str] = &[
    "pod",
    "pods",
    "po",
    "deploy",
    "deployment",
    "deployments",
    "sts",
    "statefulset",
    "statefulsets",
];
const OBJECT_PREFIXES: &[&str] = &[
    "pod",
    "pods",
    "po",
    "deploy",
    "deployment",
    "deployments",
    "sts",
    "statefulset",
    "statefulsets",
    "rs",
    "replicaset",
    "job",
    "jobs",
    "cj",
    "cronjob",
    "cronjobs",
    "hpa",
    "horizontalpodautoscaler",
    "svc",
    "service",
    "node",
    "no",
    "pvc",
    "persistentvolumeclaim",
];
const DEPLOY_PREFIXES: &[&str] = &["deploy", "deployment", "deployments"];
const HPA_PREFIXES: &[&str] = &["hpa", "horizontalpodautoscaler", "horizontalpodautoscalers"];
const CRONJOB_PREFIXES: &[&str] = &["cj", "cronjob", "cronjobs"];

/// `--since`: at most 30 days.
const SINCE_MAX_SECS: u64 = 30 * 24 * 3600;
/// `--to-revision`: Kubernetes revisions are int64.
const REVISION_MAX: u64 = i64::MAX as u64;
pub const REPLICAS_MAX: u64 = 1000;
pub const TAIL_MAX: u64 = 10_000;
pub const GREP_MAX_CHARS: usize = 200;

const WORKLOAD_ARG: ArgSpec = ArgSpec {
    name: "workload",
    placeholder: "[deployment/|statefulset/]NAME",
    ty: ValueType::Workload,
    required: true,
    flag: None,
    help: "The deployment or statefulset (`deploy/x`, `sts/x`; a bare name is a deployment).",
};

const SINCE_FLAG: FlagSpec = FlagSpec {
    name: "since",
    short: None,
    aliases: &[],
    placeholder: "DURATION",
    ty: ValueType::Duration {
        max_secs: SINCE_MAX_SECS,
    },
    default: None,
    help: "Only what happened within this long, e.g. `30s`, `15m`, `1h` (at most 30d).",
};

fn missing(what: &str) -> ParseError {
    ParseError::new(format!("missing {what}"))
}

/// `-l SELECTOR`: the pods a command reads, by label instead of by name (`pods`, `logs`).
const SELECTOR_FLAG: FlagSpec = FlagSpec {
    name: "selector",
    short: Some('l'),
    aliases: &[],
    placeholder: "SELECTOR",
    ty: ValueType::Selector,
    default: None,
    help: "A label selector such as `app=web,tier!=cache` instead of a name.",
};

/// The pods a command reads: its NAME or its `-l SELECTOR`, at most one of them.
fn pod_selector(m: &mut Matches) -> Result<Option<PodSelector>, ParseError> {
    match (m.string("name"), m.string("selector")) {
        (Some(name), None) => Ok(Some(PodSelector::Name(name))),
        (None, Some(sel)) => Ok(Some(PodSelector::Labels(sel))),
        (Some(_), Some(_)) => Err(ParseError::new("give NAME or -l SELECTOR, not both")),
        (None, None) => Ok(None),
    }
}

/// [`pod_selector`]'s inverse, for rendering.
fn render_pod_selector(s: &PodSelector) -> (&'static str, Value) {
    match s {
        PodSelector::Name(n) => ("name", Value::Str(n.clone())),
        PodSelector::Labels(l) => ("selector", Value::Str(l.clone())),
    }
}

/// Every command, in the order `help` lists them.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "status",
        aliases: &["st"],
        actions: &[Action::Status],
        risk: Risk::Read,
        args: &[WORKLOAD_ARG],
        flags: &[],
        usage: None,
        summary: "Rollout status of a deployment or statefulset, with a verdict.",
        description: "Shows what `kubectl rollout status` and `kubectl describe` would: revision, \
            images, desired / updated / ready / available replicas, conditions, the last few \
            warning events, and a verdict: complete, progressing or stalled.",
        examples: &[
            Example {
                text: "status api -n shop",
                explains: "the rollout of deployment `api` in namespace `shop`",
            },
            Example {
                text: "status sts/postgres",
                explains: "the rollout of statefulset `postgres`",
            },
        ],
        build: |m| {
            Ok(Op::Status {
                workload: m.workload("workload").ok_or_else(|| missing("NAME"))?,
            })
        },
        render: |op| match op {
            Op::Status { workload } => Some(vec![("workload", Value::Workload(workload.clone()))]),
            _ => None,
        },
    },
    CommandSpec {
        name: "pods",
        aliases: &["pod", "po"],
        actions: &[Action::Pods],
        risk: Risk::Read,
        args: &[ArgSpec {
            name: "name",
            placeholder: "NAME",
            ty: ValueType::Name {
                prefixes: POD_PREFIXES,
            },
            required: false,
            flag: None,
            help: "A deployment, statefulset or pod name.",
        }],
        flags: &[SELECTOR_FLAG],
        usage: Some("pods [NAME | -l SELECTOR]"),
        summary: "Pods of a workload, a label selector or the namespace, unhealthy first.",
        description: "Lists pods with phase, ready containers, restarts, age and node, sorted \
            with unhealthy pods first. Give a workload (or pod) name, a label selector, or \
            neither for every pod of the namespace. The policy sees `pod/NAME` for a name; for a \
            selector or the whole namespace it sees no resource, so only rules without \
            `resources` allow it.",
        examples: &[
            Example {
                text: "pods api",
                explains: "the pods of deployment `api`",
            },
            Example {
                text: "pods -l app=web,tier=frontend -n shop",
                explains: "pods matching a label selector",
            },
            Example {
                text: "pods -n shop",
                explains: "every pod of namespace `shop`",
            },
        ],
        build: |m| {
            Ok(Op::Pods {
                selector: pod_selector(m)?,
            })
        },
        render: |op| match op {
            Op::Pods { selector } => Some(selector.iter().map(render_pod_selector).collect()),
            _ => None,
        },
    },
    CommandSpec {
        name: "logs",
        aliases: &["log"],
        actions: &[Action::Logs],
        risk: Risk::Read,
        args: &[ArgSpec {
            name: "name",
            placeholder: "NAME",
            ty: ValueType::LogSource,
            required: false,
            flag: None,
            help: "A deployment (a bare name), `statefulset/NAME` (all its pods, prefixed) or \
                   `pod/NAME`.",
        }],
        flags: &[
            SELECTOR_FLAG,
            FlagSpec {
                name: "tail",
                short: None,
                aliases: &[],
                placeholder: "N",
                ty: ValueType::Int {
                    min: 1,
                    max: TAIL_MAX,
                },
                default: Some("100"),
                help: "How many of the newest lines to show (1 to 10000).",
            },
            SINCE_FLAG,
            FlagSpec {
                name: "grep",
                short: None,
                aliases: &[],
                placeholder: "TEXT",
                ty: ValueType::Text {
                    max_chars: GREP_MAX_CHARS,
                },
                default: None,
                help: "Only lines containing this text (quote it when it has spaces).",
            },
            FlagSpec {
                name: "container",
                short: Some('c'),
                aliases: &[],
                placeholder: "CONTAINER",
                ty: ValueType::DnsLabel,
                default: Some("the pod's first container"),
                help: "The container to read.",
            },
            FlagSpec {
                name: "previous",
                short: Some('p'),
                aliases: &[],
                placeholder: "",
                ty: ValueType::Bool,
                default: None,
                help: "Logs of the previous (crashed) container instance.",
            },
        ],
        usage: Some(
            "logs NAME | -l SELECTOR [--tail N] [--since DURATION] [--grep TEXT] \
             [--container CONTAINER] [--previous]",
        ),
        summary: "The newest log lines of a pod or workload, secrets masked.",
        description: "Shows the newest lines of every pod of a workload (each line prefixed \
            with its pod), of one pod, or of the pods matching `-l SELECTOR`. The policy sees \
            what is read: `deployment/NAME`, `statefulset/NAME` or `pod/NAME`; with `-l` it sees \
            no resource, so only rules without `resources` allow it. Output is bounded in lines \
            and bytes, and values that look like secrets (tokens, passwords, `Authorization:` \
            headers) are masked.",
        examples: &[
            Example {
                text: "logs -l app=envoy --tail 100 -n ingress",
                explains: "the pods labelled `app=envoy`",
            },
            Example {
                text: "logs api --tail 50 --since 15m",
                explains: "the last 50 lines of the last 15 minutes",
            },
            Example {
                text: "logs api --grep \"status=500\" -c app",
                explains: "lines with `status=500` in container `app`",
            },
            Example {
                text: "logs pod/api-7d9f-x2x -p",
                explains: "the crashed instance of a pod",
            },
        ],
        build: |m| {
            Ok(Op::Logs {
                tail: m.int("tail").and_then(|n| u32::try_from(n).ok()),
                since: m.duration("since"),
                grep: m.string("grep"),
                container: m.string("container"),
                previous: m.flag("previous"),
                source: pod_selector(m)?.ok_or_else(|| missing("NAME or -l SELECTOR"))?,
            })
        },
        render: |op| match op {
            Op::Logs {
                source,
                tail,
                since,
                grep,
                container,
                previous,
            } => {
                let mut v = vec![render_pod_selector(source)];
                if let Some(t) = tail {
                    v.push(("tail", Value::Int(u64::from(*t))));
                }
                if let Some(s) = since {
                    v.push(("since", Value::Duration(*s)));
                }
                if let Some(g) = grep {
                    v.push(("grep", Value::Str(g.clone())));
                }
                if let Some(c) = container {
                    v.push(("container", Value::Str(c.clone())));
                }
                v.push(("previous", Value::Bool(*previous)));
                Some(v)
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "events",
        aliases: &["event", "ev"],
        actions: &[Action::Events],
        risk: Risk::Read,
        args: &[ArgSpec {
            name: "name",
            placeholder: "NAME",
            ty: ValueType::Name {
                prefixes: OBJECT_PREFIXES,
            },
            required: false,
            flag: None,
            help: "Only events about this object.",
        }],
        flags: &[
            SINCE_FLAG,
            FlagSpec {
                name: "warnings",
                short: None,
                aliases: &["warning"],
                placeholder: "",
                ty: ValueType::Bool,
                default: None,
                help: "Only warnings.",
            },
        ],
        usage: None,
        summary: "Events of an object or of the whole namespace, newest first.",
        description: "Lists events sorted by their last timestamp, for one object or for the \
            namespace; `--warnings` lists only warnings.",
        examples: &[
            Example {
                text: "events api --since 1h",
                explains: "what happened to `api` in the last hour",
            },
            Example {
                text: "events --warnings -n shop",
                explains: "the namespace's warnings",
            },
        ],
        build: |m| {
            Ok(Op::Events {
                name: m.string("name"),
                since: m.duration("since"),
                warnings: m.flag("warnings"),
            })
        },
        render: |op| match op {
            Op::Events {
                name,
                since,
                warnings,
            } => {
                let mut v = Vec::new();
                if let Some(n) = name {
                    v.push(("name", Value::Str(n.clone())));
                }
                if let Some(s) = since {
                    v.push(("since", Value::Duration(*s)));
                }
                v.push(("warnings", Value::Bool(*warnings)));
                Some(v)
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "scale",
        aliases: &[],
        actions: &[Action::Scale],
        risk: Risk::Risky,
        args: &[
            WORKLOAD_ARG,
            ArgSpec {
                name: "replicas",
                placeholder: "REPLICAS",
                ty: ValueType::Int {
                    min: 0,
                    max: REPLICAS_MAX,
                },
                required: true,
                flag: Some("replicas"),
                help: "The number of replicas to scale to (0 to 1000; `--replicas=N` works too).",
            },
        ],
        flags: &[FlagSpec {
            name: "dry-run",
            short: None,
            aliases: &["dry"],
            placeholder: "",
            ty: ValueType::Bool,
            default: None,
            help: "Ask the API server to validate the change without making it.",
        }],
        usage: None,
        summary: "Scale a deployment or statefulset to a number of replicas.",
        description: "Scales through the `scale` subresource and shows the replicas before and \
            after, then follows the rollout until it completes, stalls or times out. \
            `--dry-run` uses a server-side dry run. The policy sees the target replicas.",
        examples: &[
            Example {
                text: "scale api 5 -n shop",
                explains: "scale deployment `api` to 5 replicas",
            },
            Example {
                text: "scale sts/postgres --replicas=3 --dry-run",
                explains: "check scaling a statefulset without doing it",
            },
        ],
        build: |m| {
            let replicas = m
                .int("replicas")
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| missing("REPLICAS"))?;
            Ok(Op::Scale {
                workload: m.workload("workload").ok_or_else(|| missing("NAME"))?,
                replicas,
                dry_run: m.flag("dry-run"),
            })
        },
        render: |op| match op {
            Op::Scale {
                workload,
                replicas,
                dry_run,
            } => Some(vec![
                ("workload", Value::Workload(workload.clone())),
                ("replicas", Value::Int(u64::from(*replicas))),
                ("dry-run", Value::Bool(*dry_run)),
            ]),
            _ => None,
        },
    },
    CommandSpec {
        name: "restart",
        aliases: &[],
        actions: &[Action::Restart],
        risk: Risk::Change,
        args: &[WORKLOAD_ARG],
        flags: &[],
        usage: None,
        summary: "Rolling restart of a deployment or statefulset.",
        description: "Restarts the way `kubectl rollout restart` does (so `kubectl rollout \
            history` shows it), then follows the rollout until it completes, stalls or times out.",
        examples: &[Example {
            text: "restart deploy/api -n shop",
            explains: "a rolling restart of deployment `api`",
        }],
        build: |m| {
            Ok(Op::Restart {
                workload: m.workload("workload").ok_or_else(|| missing("NAME"))?,
            })
        },
        render: |op| match op {
            Op::Restart { workload } => Some(vec![("workload", Value::Workload(workload.clone()))]),
            _ => None,
        },
    },
    CommandSpec {
        name: "rollback",
        aliases: &["undo"],
        actions: &[Action::Rollback],
        risk: Risk::Risky,
        args: &[ArgSpec {
            name: "name",
            placeholder: "NAME",
            ty: ValueType::Name {
                prefixes: DEPLOY_PREFIXES,
            },
            required: true,
            flag: None,
            help: "The deployment to roll back.",
        }],
        flags: &[FlagSpec {
            name: "to-revision",
            short: None,
            aliases: &["revision"],
            placeholder: "N",
            ty: ValueType::Int {
                min: 1,
                max: REVISION_MAX,
            },
            default: Some("the previous revision"),
            help: "The revision to return to.",
        }],
        usage: None,
        summary: "Roll a deployment back to its previous (or a given) revision.",
        description: "Like `kubectl rollout undo`: returns to the previous revision, or to \
            `--to-revision N`, says which revision and images it returns to, then follows the \
            rollout. Refuses clearly when there is nothing to roll back to.",
        examples: &[
            Example {
                text: "rollback api",
                explains: "back to the previous revision",
            },
            Example {
                text: "rollback api --to-revision 12",
                explains: "back to revision 12",
            },
        ],
        build: |m| {
            Ok(Op::Rollback {
                to_revision: m.int("to-revision"),
                name: m.string("name").ok_or_else(|| missing("NAME"))?,
            })
        },
        render: |op| match op {
            Op::Rollback { name, to_revision } => {
                let mut v = vec![("name", Value::Str(name.clone()))];
                if let Some(r) = to_revision {
                    v.push(("to-revision", Value::Int(*r)));
                }
                Some(v)
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "hpa",
        aliases: &[],
        actions: &[Action::HpaShow, Action::HpaSet],
        risk: Risk::Change,
        args: &[ArgSpec {
            name: "name",
            placeholder: "NAME",
            ty: ValueType::Name {
                prefixes: HPA_PREFIXES,
            },
            required: false,
            flag: None,
            help: "The HorizontalPodAutoscaler (or the workload it scales); every autoscaler of \
                   the namespace when not given.",
        }],
        flags: &[
            FlagSpec {
                name: "min",
                short: None,
                aliases: &[],
                placeholder: "N",
                ty: ValueType::Int {
                    min: 1,
                    max: REPLICAS_MAX,
                },
                default: None,
                help: "Set the minimum replicas (1 to 1000, at most --max).",
            },
            FlagSpec {
                name: "max",
                short: None,
                aliases: &[],
                placeholder: "N",
                ty: ValueType::Int {
                    min: 1,
                    max: REPLICAS_MAX,
                },
                default: None,
                help: "Set the maximum replicas (1 to 1000, at least --min).",
            },
        ],
        usage: None,
        summary: "Show autoscalers, or set one's min and/or max replicas.",
        description: "Without flags, shows the HPA's min / max / current / desired replicas \
            (policy action `hpa.show`); without NAME, lists the namespace's autoscalers. With `--min` and/or `--max`, sets them \
            (policy action `hpa.set`); min must not exceed max.",
        examples: &[
            Example {
                text: "hpa api",
                explains: "show the autoscaler `api`",
            },
            Example {
                text: "hpa -n shop",
                explains: "every autoscaler of namespace `shop`",
            },
            Example {
                text: "hpa api --min 3 --max 10",
                explains: "let it scale between 3 and 10 replicas",
            },
        ],
        build: |m| {
            let bound = |m: &Matches, k: &str| m.int(k).and_then(|n| u32::try_from(n).ok());
            let (min, max) = (bound(m, "min"), bound(m, "max"));
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(
                    ParseError::new(format!("--min {lo} is greater than --max {hi}"))
                        .with_token(format!("--min {lo}")),
                );
            }
            match m.string("name") {
                Some(name) => Ok(Op::Hpa { name, min, max }),
                None if min.is_none() && max.is_none() => Ok(Op::HpaList),
                None => Err(missing("NAME: --min and --max set one autoscaler")),
            }
        },
        render: |op| match op {
            Op::Hpa { name, min, max } => {
                let mut v = vec![("name", Value::Str(name.clone()))];
                if let Some(n) = min {
                    v.push(("min", Value::Int(u64::from(*n))));
                }
                if let Some(n) = max {
                    v.push(("max", Value::Int(u64::from(*n))));
                }
                Some(v)
            }
            Op::HpaList => Some(Vec::new()),
            _ => None,
        },
    },
    CommandSpec {
        name: "backup status",
        aliases: &["st"],
        actions: &[Action::BackupStatus],
        risk: Risk::Read,
        args: &[ArgSpec {
            name: "cronjob",
            placeholder: "CRONJOB",
            ty: ValueType::Name {
                prefixes: CRONJOB_PREFIXES,
            },
            required: false,
            flag: None,
            help: "The backup CronJob; all whose name contains `backup` when not given.",
        }],
        flags: &[FlagSpec {
            name: "all",
            short: None,
            aliases: &[],
            placeholder: "",
            ty: ValueType::Bool,
            default: None,
            help: "Every CronJob of the namespace, not only those named `backup`.",
        }],
        usage: Some("backup status [CRONJOB | --all]"),
        summary: "Health of backup CronJobs: healthy, stale, failing or suspended.",
        description: "For the CronJob named, or every CronJob in the namespace whose name \
            contains `backup` (every CronJob with `--all`): schedule, suspended, last schedule, last success, active jobs, the \
            last few jobs with result and duration, and a verdict. A CronJob is stale when it has \
            not succeeded within 1.5 times its schedule's interval.",
        examples: &[
            Example {
                text: "backup status -n db",
                explains: "every backup CronJob in namespace `db`",
            },
            Example {
                text: "backup status pg-backup",
                explains: "one CronJob",
            },
            Example {
                text: "backup status --all -n ml",
                explains: "every CronJob in namespace `ml`, whatever its name",
            },
        ],
        build: |m| {
            let cronjob = m.string("cronjob");
            let all = m.flag("all");
            if all && let Some(name) = &cronjob {
                return Err(ParseError::new(format!(
                    "`--all` shows every CronJob; leave it out to see `{name}` alone"
                ))
                .with_token("--all"));
            }
            Ok(Op::BackupStatus { cronjob, all })
        },
        render: |op| match op {
            Op::BackupStatus { cronjob, all } => {
                let mut v: Vec<(&str, Value)> = cronjob
                    .iter()
                    .map(|c| ("cronjob", Value::Str(c.clone())))
                    .collect();
                if *all {
                    v.push(("all", Value::Bool(true)));
                }
                Some(v)
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "backup run",
        aliases: &[],
        actions: &[Action::BackupRun],
        risk: Risk::Change,
        args: &[ArgSpec {
            name: "cronjob",
            placeholder: "CRONJOB",
            ty: ValueType::Name {
                prefixes: CRONJOB_PREFIXES,
            },
            required: true,
            flag: None,
            help: "The backup CronJob to run now.",
        }],
        flags: &[FlagSpec {
            name: "job",
            short: None,
            aliases: &[],
            placeholder: "NAME",
            ty: ValueType::DnsLabel,
            default: Some("CRONJOB-manual-xxxxx"),
            help: "The new Job's name; refused when a Job of that name exists.",
        }],
        usage: None,
        summary: "Run a backup CronJob now and follow the job.",
        description: "Creates a Job from the CronJob's template the way `kubectl create job \
            --from=cronjob/` does, then follows it to success or failure.",
        examples: &[
            Example {
                text: "backup run pg-backup -n db",
                explains: "run the `pg-backup` CronJob now",
            },
            Example {
                text: "backup run pg-backup --job pg-before-upgrade",
                explains: "the same, naming the Job",
            },
        ],
        build: |m| {
            Ok(Op::BackupRun {
                cronjob: m.string("cronjob").ok_or_else(|| missing("CRONJOB"))?,
                job: m.string("job"),
            })
        },
        render: |op| match op {
            Op::BackupRun { cronjob, job } => {
                let mut v = vec![("cronjob", Value::Str(cronjob.clone()))];
                if let Some(j) = job {
                    v.push(("job", Value::Str(j.clone())));
                }
                Some(v)
            }
            _ => None,
        },
    },
    // ---- alerts (kept by the bot: `bot/src/alerts`; silences in Alertmanager) ----
    CommandSpec {
        name: "alerts",
        aliases: &["alert"],
        actions: &[Action::AlertShow],
        risk: Risk::Read,
        args: &[],
        flags: &[FlagSpec {
            name: "severity",
            short: None,
            aliases: &[],
            placeholder: "SEVERITY",
            ty: ValueType::DnsLabel,
            default: None,
            help: "Only alerts with this `severity` label, e.g. `critical`.",
        }],
        usage: None,
        summary: "Alerts Alertmanager sent, firing first; `-n` for one namespace.",
        description: "Every alert opsbot received (also those shown only in a digest), firing \
            first, then the newest: status, severity, alertname, namespace, since when, and \
            the alert group. `-n NAMESPACE` and `--severity` filter.",
        examples: &[Example {
            text: "alerts --severity critical -n production",
            explains: "critical alerts in production",
        }],
        build: |m| {
            Ok(Op::Alert(AlertCmd::List {
                severity: m.string("severity"),
            }))
        },
        render: |op| match op {
            Op::Alert(AlertCmd::List { severity }) => Some(
                severity
                    .iter()
                    .map(|s| ("severity", Value::Str(s.clone())))
                    .collect(),
            ),
            _ => None,
        },
    },
    CommandSpec {
        name: "silence list",
        aliases: &["ls"],
        actions: &[Action::AlertShow],
        risk: Risk::Read,
        args: &[],
        flags: &[],
        usage: None,
        summary: "Active and pending Alertmanager silences.",
        description: "Asks the configured Alertmanagers (`alerts.alertmanagers`) for their \
            silences and lists the active and pending ones: id, matchers, who, until when, why.",
        examples: &[Example {
            text: "silence list",
            explains: "what is silenced now",
        }],
        build: |_| Ok(Op::Alert(AlertCmd::SilenceList)),
        render: |op| match op {
            Op::Alert(AlertCmd::SilenceList) => Some(Vec::new()),
            _ => None,
        },
    },
    CommandSpec {
        name: "silence add",
        aliases: &["create", "new"],
        actions: &[Action::AlertSilence],
        risk: Risk::Change,
        args: &[ArgSpec {
            name: "matchers",
            placeholder: "MATCHERS…",
            ty: ValueType::Words { max_chars: 1000 },
            required: true,
            flag: None,
            help: "Alertmanager matchers, e.g. `alertname=\"X\", namespace=\"prod\"` (`=`, `!=`, `=~`, `!~`).",
        }],
        flags: &[
            FlagSpec {
                name: "for",
                short: None,
                aliases: &["duration"],
                placeholder: "DURATION",
                ty: ValueType::Duration {
                    max_secs: 30 * 24 * 3600,
                },
                default: None,
                help: "How long, e.g. `2h` (at most 30d). Required.",
            },
            FlagSpec {
                name: "comment",
                short: None,
                aliases: &[],
                placeholder: "TEXT…",
                ty: ValueType::Words { max_chars: 500 },
                default: None,
                help: "Why (every word up to the next flag). Required.",
            },
        ],
        // Both options are required: the generated usage would show them as optional.
        usage: Some("silence add MATCHERS… --for DURATION --comment TEXT…"),
        summary: "Silence alerts in Alertmanager for a while.",
        description: "Creates an Alertmanager silence with these matchers, created by you, with \
            your comment. The policy action is `alert.silence`, in the namespace of a \
            `namespace=` matcher.",
        examples: &[Example {
            text: "silence add alertname=KubePodCrashLooping, namespace=production --for 2h --comment deploy in progress",
            explains: "silence a crash-loop alert for two hours",
        }],
        build: |m| {
            Ok(Op::Alert(AlertCmd::SilenceAdd {
                matchers: m.string("matchers").ok_or_else(|| missing("MATCHERS"))?,
                duration: m.duration("for").ok_or_else(|| missing("--for DURATION"))?,
                comment: m
                    .string("comment")
                    .ok_or_else(|| missing("--comment TEXT"))?,
            }))
        },
        render: |op| match op {
            Op::Alert(AlertCmd::SilenceAdd {
                matchers,
                duration,
                comment,
            }) => Some(vec![
                ("matchers", Value::Str(matchers.clone())),
                ("for", Value::Duration(*duration)),
                ("comment", Value::Str(comment.clone())),
            ]),
            _ => None,
        },
    },
    CommandSpec {
        name: "silence expire",
        aliases: &["rm", "delete"],
        actions: &[Action::AlertSilence],
        risk: Risk::Change,
        args: &[ArgSpec {
            name: "id",
            placeholder: "ID",
            ty: ValueType::Text { max_chars: 64 },
            required: true,
            flag: None,
            help: "The silence's id (`silence list` shows them).",
        }],
        flags: &[],
        usage: None,
        summary: "End a silence now.",
        description: "Expires the Alertmanager silence. The policy action is `alert.silence`, \
            in the namespace of the silence's `namespace=` matcher.",
        examples: &[Example {
            text: "silence expire 7d1c0e52-5a38-4ad3-9f58-2a1f0c3f9f4e",
            explains: "end that silence",
        }],
        build: |m| {
            Ok(Op::Alert(AlertCmd::SilenceExpire {
                id: m.string("id").ok_or_else(|| missing("ID"))?,
            }))
        },
        render: |op| match op {
            Op::Alert(AlertCmd::SilenceExpire { id }) => Some(vec![("id", Value::Str(id.clone()))]),
            _ => None,
        },
    },
    // ---- incidents (kept by the bot: `bot/src/incidents`) ----
    CommandSpec {
        name: "incident open",
        aliases: &["new", "declare"],
        actions: &[Action::IncidentOpen],
        risk: Risk::Change,
        args: &[
            SEVERITY_ARG,
            ArgSpec {
                name: "title",
                placeholder: "TITLE…",
                ty: ValueType::Words {
                    max_chars: TITLE_MAX,
                },
                required: true,
                flag: None,
                help: "What is wrong, in a few words (the rest of the line).",
            },
        ],
        flags: &[
            FlagSpec {
                name: "service",
                short: None,
                aliases: &[],
                placeholder: "NAME",
                ty: ValueType::Text { max_chars: 63 },
                default: None,
                help: "The service that is affected.",
            },
            FlagSpec {
                name: "commander",
                short: None,
                aliases: &[],
                placeholder: "@PERSON",
                ty: ValueType::Person,
                default: Some("nobody until someone takes it (the escalation runs until then)"),
                help: "Who leads the response (`me` for yourself).",
            },
            FlagSpec {
                name: "alert",
                short: None,
                aliases: &[],
                placeholder: "GROUP",
                ty: ValueType::Name { prefixes: &[] },
                default: None,
                help: "The alert group it comes from (the alert message's Open incident button).",
            },
        ],
        usage: None,
        summary: "Open an incident: a channel, a pinned card, responders paged by severity.",
        description: "Records the incident (numbered INC-1, INC-2, …), creates its channel \
            `inc-<n>-<title>`, invites you, the commander and the severity's responders, pins \
            a card that follows every change, announces it in the incidents channel and starts \
            the severity's escalation until someone takes commander (`incident ack`).",
        examples: &[Example {
            text: "incident open P1 checkout returns 500 --service conea-api",
            explains: "a P1 for the checkout outage",
        }],
        build: |m| {
            Ok(incident(
                None,
                IncidentOp::Open {
                    severity: severity(m)?,
                    title: m.string("title").ok_or_else(|| missing("TITLE"))?,
                    service: m.string("service"),
                    commander: m.string("commander"),
                    alert: m.string("alert"),
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (
                _,
                IncidentOp::Open {
                    severity,
                    title,
                    service,
                    commander,
                    alert,
                },
            ) => {
                let mut v = vec![
                    ("severity", Value::Str(severity.to_string())),
                    ("title", Value::Str(title.clone())),
                ];
                if let Some(s) = service {
                    v.push(("service", Value::Str(s.clone())));
                }
                if let Some(c) = commander {
                    v.push(("commander", Value::Str(c.clone())));
                }
                if let Some(a) = alert {
                    v.push(("alert", Value::Str(a.clone())));
                }
                Some(v)
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "incident status",
        aliases: &["update"],
        actions: &[Action::IncidentUpdate],
        risk: Risk::Change,
        args: &[
            ArgSpec {
                name: "status",
                placeholder: "STATUS",
                ty: ValueType::Choice(IncidentStatus::WORDS),
                required: true,
                flag: None,
                help: "investigating, identified, monitoring or resolved.",
            },
            ArgSpec {
                name: "message",
                placeholder: "MESSAGE…",
                ty: ValueType::Words {
                    max_chars: NOTE_MAX,
                },
                required: false,
                flag: None,
                help: "What changed (the rest of the line).",
            },
        ],
        flags: &[ID_FLAG],
        usage: None,
        summary: "Report where the response stands: investigating → identified → monitoring → resolved.",
        description: "Sets the status, posts it in the channel, and resets the status-update \
            reminder. `resolved` stops the clock for time to resolve; the incident stays open \
            until `incident close`.",
        examples: &[Example {
            text: "incident status identified connection pool exhausted after the deploy",
            explains: "the cause is known",
        }],
        build: |m| {
            let status = m
                .string("status")
                .and_then(|s| IncidentStatus::parse(&s))
                .ok_or_else(|| missing("STATUS"))?;
            Ok(incident(
                id(m),
                IncidentOp::Status {
                    status,
                    message: m.string("message"),
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Status { status, message }) => {
                let mut v = vec![("status", Value::Str(status.as_str().to_owned()))];
                if let Some(msg) = message {
                    v.push(("message", Value::Str(msg.clone())));
                }
                Some(with_id(v, id))
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "incident sev",
        aliases: &["severity"],
        actions: &[Action::IncidentUpdate],
        risk: Risk::Change,
        args: &[SEVERITY_ARG],
        flags: &[ID_FLAG],
        usage: None,
        summary: "Change an incident's severity (and its escalation).",
        description: "Sets the severity, invites the new severity's responders, and restarts \
            the escalation with the new severity's chain if nobody has taken commander yet.",
        examples: &[Example {
            text: "incident sev P2",
            explains: "downgrade to P2",
        }],
        build: |m| {
            Ok(incident(
                id(m),
                IncidentOp::Sev {
                    severity: severity(m)?,
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Sev { severity }) => Some(with_id(
                vec![("severity", Value::Str(severity.to_string()))],
                id,
            )),
            _ => None,
        },
    },
    CommandSpec {
        name: "incident assign",
        aliases: &[],
        actions: &[Action::IncidentUpdate],
        risk: Risk::Change,
        args: &[
            ArgSpec {
                name: "role",
                placeholder: "ROLE",
                ty: ValueType::Choice(Role::WORDS),
                required: true,
                flag: None,
                help: "commander, scribe or comms.",
            },
            ArgSpec {
                name: "person",
                placeholder: "@PERSON",
                ty: ValueType::Person,
                required: true,
                flag: None,
                help: "Who takes the role (`me` for yourself).",
            },
        ],
        flags: &[ID_FLAG],
        usage: None,
        summary: "Give someone a role: commander, scribe or comms.",
        description: "Assigns the role and invites the person to the channel. A commander \
            acknowledges the incident: the escalation stops.",
        examples: &[Example {
            text: "incident assign commander @alice",
            explains: "alice leads the response",
        }],
        build: |m| {
            let role = m
                .string("role")
                .and_then(|s| Role::parse(&s))
                .ok_or_else(|| missing("ROLE"))?;
            Ok(incident(
                id(m),
                IncidentOp::Assign {
                    role,
                    person: m.string("person").ok_or_else(|| missing("@PERSON"))?,
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Assign { role, person }) => Some(with_id(
                vec![
                    ("role", Value::Str(role.as_str().to_owned())),
                    ("person", Value::Str(person.clone())),
                ],
                id,
            )),
            _ => None,
        },
    },
    CommandSpec {
        name: "incident note",
        aliases: &[],
        actions: &[Action::IncidentUpdate],
        risk: Risk::Read,
        args: &[ArgSpec {
            name: "text",
            placeholder: "TEXT…",
            ty: ValueType::Words {
                max_chars: NOTE_MAX,
            },
            required: true,
            flag: None,
            help: "The note (the rest of the line).",
        }],
        flags: &[
            FlagSpec {
                name: "follow-up",
                short: None,
                aliases: &["followup", "todo"],
                placeholder: "",
                ty: ValueType::Bool,
                default: None,
                help: "Something to do after the incident: listed under follow-ups in the export.",
            },
            ID_FLAG,
        ],
        usage: None,
        summary: "Add a note to the timeline.",
        description: "Adds the note to the incident's timeline, with your name and the time.",
        examples: &[Example {
            text: "incident note rolled back conea-api to revision 41",
            explains: "what was done",
        }],
        build: |m| {
            Ok(incident(
                id(m),
                IncidentOp::Note {
                    text: m.string("text").ok_or_else(|| missing("TEXT"))?,
                    follow_up: m.flag("follow-up"),
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Note { text, follow_up }) => {
                let mut v = vec![("text", Value::Str(text.clone()))];
                if *follow_up {
                    v.push(("follow-up", Value::Bool(true)));
                }
                Some(with_id(v, id))
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "incident ack",
        aliases: &["acknowledge"],
        actions: &[Action::IncidentUpdate],
        risk: Risk::Change,
        args: &[],
        flags: &[ID_FLAG],
        usage: None,
        summary: "Acknowledge: take commander if nobody has it, and stop the escalation.",
        description: "Records the acknowledgement (time to acknowledge counts to it), stops \
            the escalation, and makes you commander if the incident has none.",
        examples: &[Example {
            text: "incident ack",
            explains: "you are on it",
        }],
        build: |m| Ok(incident(id(m), IncidentOp::Ack)),
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Ack) => Some(with_id(Vec::new(), id)),
            _ => None,
        },
    },
    CommandSpec {
        name: "incident list",
        aliases: &["ls"],
        actions: &[Action::IncidentShow],
        risk: Risk::Read,
        args: &[],
        flags: &[
            FlagSpec {
                name: "open",
                short: None,
                aliases: &[],
                placeholder: "",
                ty: ValueType::Bool,
                default: None,
                help: "Only incidents not closed.",
            },
            FlagSpec {
                name: "sev",
                short: None,
                aliases: &["severity"],
                placeholder: "P1..P4",
                ty: ValueType::Choice(SEVERITIES),
                default: None,
                help: "Only incidents of this severity.",
            },
        ],
        usage: None,
        summary: "The latest incidents, newest first.",
        description: "Lists incidents with severity, status, commander, age and channel.",
        examples: &[Example {
            text: "incident list --open --sev P1",
            explains: "open P1 incidents",
        }],
        build: |m| {
            let sev = match m.string("sev") {
                Some(s) => {
                    Some(Severity::parse(&s).ok_or_else(|| missing("a severity (P1 to P4)"))?)
                }
                None => None,
            };
            Ok(incident(
                None,
                IncidentOp::List {
                    open: m.flag("open"),
                    sev,
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (_, IncidentOp::List { open, sev }) => {
                let mut v = Vec::new();
                if *open {
                    v.push(("open", Value::Bool(true)));
                }
                if let Some(s) = sev {
                    v.push(("sev", Value::Str(s.to_string())));
                }
                Some(v)
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "incident show",
        aliases: &["info"],
        actions: &[Action::IncidentShow],
        risk: Risk::Read,
        args: &[ID_ARG],
        flags: &[],
        usage: None,
        summary: "One incident: severity, status, roles, times, channel.",
        description: "Shows the incident's card.",
        examples: &[Example {
            text: "incident show INC-42",
            explains: "incident 42",
        }],
        build: |m| Ok(incident(id(m), IncidentOp::Show)),
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Show) => Some(id_arg(id)),
            _ => None,
        },
    },
    CommandSpec {
        name: "incident timeline",
        aliases: &["tl"],
        actions: &[Action::IncidentShow],
        risk: Risk::Read,
        args: &[ID_ARG],
        flags: &[],
        usage: None,
        summary: "Everything that happened in an incident, in order.",
        description: "The timeline: opened, severity, status and role changes, notes, \
            escalations and pages, commands run in the channel, approvals, linked alerts, \
            pinned messages, closed and reopened; each with time and who.",
        examples: &[Example {
            text: "incident timeline",
            explains: "the timeline of this channel's incident",
        }],
        build: |m| Ok(incident(id(m), IncidentOp::Timeline)),
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Timeline) => Some(id_arg(id)),
            _ => None,
        },
    },
    CommandSpec {
        name: "incident close",
        aliases: &[],
        actions: &[Action::IncidentClose],
        risk: Risk::Change,
        args: &[],
        flags: &[
            FlagSpec {
                name: "resolution",
                short: None,
                aliases: &[],
                placeholder: "TEXT…",
                ty: ValueType::Words {
                    max_chars: NOTE_MAX,
                },
                default: None,
                help: "How it was resolved (every word up to the next flag).",
            },
            ID_FLAG,
        ],
        usage: None,
        summary: "Close an incident: summary posted, channel archived, pages resolved.",
        description: "Closes the incident, stops its timers, resolves its pages, posts the \
            summary and how to get the postmortem draft, updates the announcement, and archives \
            the channel.",
        examples: &[Example {
            text: "incident close --resolution rolled back the bad deploy",
            explains: "close with a resolution",
        }],
        build: |m| {
            Ok(incident(
                id(m),
                IncidentOp::Close {
                    resolution: m.string("resolution"),
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Close { resolution }) => {
                let mut v = Vec::new();
                if let Some(r) = resolution {
                    v.push(("resolution", Value::Str(r.clone())));
                }
                Some(with_id(v, id))
            }
            _ => None,
        },
    },
    CommandSpec {
        name: "incident reopen",
        aliases: &[],
        actions: &[Action::IncidentClose],
        risk: Risk::Change,
        args: &[ID_ARG],
        flags: &[],
        usage: None,
        summary: "Reopen a closed incident.",
        description: "Reopens the incident; its timeline goes on where it stopped.",
        examples: &[Example {
            text: "incident reopen INC-42",
            explains: "it is back",
        }],
        build: |m| Ok(incident(id(m), IncidentOp::Reopen)),
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Reopen) => Some(id_arg(id)),
            _ => None,
        },
    },
    CommandSpec {
        name: "incident export",
        aliases: &["postmortem"],
        actions: &[Action::IncidentShow],
        risk: Risk::Read,
        args: &[ID_ARG],
        flags: &[],
        usage: None,
        summary: "A Markdown postmortem draft of an incident.",
        description: "Summary, severity history, impact, people and roles, the timeline, \
            every opsbot command run with its outcome, approvals, linked alerts and open \
            follow-ups, as Markdown to paste into the postmortem.",
        examples: &[Example {
            text: "incident export INC-42",
            explains: "the draft for incident 42",
        }],
        build: |m| Ok(incident(id(m), IncidentOp::Export)),
        render: |op| match incident_op(op)? {
            (id, IncidentOp::Export) => Some(id_arg(id)),
            _ => None,
        },
    },
    CommandSpec {
        name: "incident stats",
        aliases: &[],
        actions: &[Action::IncidentShow],
        risk: Risk::Read,
        args: &[],
        flags: &[FlagSpec {
            name: "since",
            short: None,
            aliases: &[],
            placeholder: "DURATION",
            ty: ValueType::Duration {
                max_secs: 366 * 24 * 3600,
            },
            default: Some("30d"),
            help: "Incidents opened within this long, e.g. `7d`, `30d`.",
        }],
        usage: None,
        summary: "Counts, time to acknowledge and time to resolve, per severity.",
        description: "For incidents opened within `--since`: how many per severity, mean time \
            to acknowledge (MTTA) and mean time to resolve (MTTR).",
        examples: &[Example {
            text: "incident stats --since 7d",
            explains: "the last week",
        }],
        build: |m| {
            Ok(incident(
                None,
                IncidentOp::Stats {
                    since: m.duration("since"),
                },
            ))
        },
        render: |op| match incident_op(op)? {
            (_, IncidentOp::Stats { since }) => Some(
                since
                    .iter()
                    .map(|d| ("since", Value::Duration(*d)))
                    .collect(),
            ),
            _ => None,
        },
    },
    CommandSpec {
        name: "help",
        aliases: &["?"],
        actions: &[Action::Help],
        risk: Risk::Read,
        args: &[ArgSpec {
            name: "command",
            placeholder: "COMMAND",
            ty: ValueType::Topic,
            required: false,
            flag: None,
            help: "The command to explain.",
        }],
        flags: &[],
        usage: None,
        summary: "Every command, or one command in detail.",
        description: "Without an argument, lists every command with its usage. With a command \
            name, explains it: arguments, flags, defaults, policy action, risk and examples.",
        examples: &[Example {
            text: "help scale",
            explains: "everything about `scale`",
        }],
        build: |m| {
            Ok(Op::Help {
                command: m.string("command"),
            })
        },
        render: |op| match op {
            Op::Help { command } => Some(
                command
                    .iter()
                    .map(|c| ("command", Value::Str(c.clone())))
                    .collect(),
            ),
            _ => None,
        },
    },
    CommandSpec {
        name: "whoami",
        aliases: &[],
        actions: &[Action::Whoami],
        risk: Risk::Read,
        args: &[],
        flags: &[],
        usage: None,
        summary: "Who opsbot thinks you are, and what you may do.",
        description: "Shows your identity, your groups and roles as the policy sees them, and \
            the channel's defaults.",
        examples: &[Example {
            text: "whoami",
            explains: "your identity and roles",
        }],
        build: |_| Ok(Op::Whoami),
        render: |op| match op {
            Op::Whoami => Some(Vec::new()),
            _ => None,
        },
    },
];

// ---- incident declarations' parts ----

/// Longest incident title, in characters (Slack channel names take a slug of it).
pub const TITLE_MAX: usize = 200;
/// Longest note, status message or resolution, in characters.
pub const NOTE_MAX: usize = 2000;
const SEVERITIES: &[&str] = &["P1", "P2", "P3", "P4"];

const SEVERITY_ARG: ArgSpec = ArgSpec {
    name: "severity",
    placeholder: "P1..P4",
    ty: ValueType::Choice(SEVERITIES),
    required: true,
    flag: None,
    help: "P1 (everything down) to P4 (planned, no impact).",
};

const ID_FLAG: FlagSpec = FlagSpec {
    name: "id",
    short: None,
    aliases: &[],
    placeholder: "INC-N",
    ty: ValueType::IncidentId,
    default: Some("the incident of the channel it is typed in"),
    help: "The incident, e.g. INC-42.",
};

const ID_ARG: ArgSpec = ArgSpec {
    name: "id",
    placeholder: "INC-N",
    ty: ValueType::IncidentId,
    required: false,
    flag: Some("id"),
    help: "The incident, e.g. INC-42; in an incident's channel, that one.",
};

fn incident(id: Option<u64>, op: IncidentOp) -> Op {
    Op::Incident(IncidentCmd { id, op })
}

fn incident_op(op: &Op) -> Option<(Option<u64>, &IncidentOp)> {
    match op {
        Op::Incident(c) => Some((c.id, &c.op)),
        _ => None,
    }
}

fn id(m: &Matches) -> Option<u64> {
    m.int("id")
}

fn severity(m: &mut Matches) -> Result<Severity, ParseError> {
    m.string("severity")
        .and_then(|s| Severity::parse(&s))
        .ok_or_else(|| missing("P1..P4"))
}

fn with_id(mut v: Rendered, id: Option<u64>) -> Rendered {
    if let Some(n) = id {
        v.push(("id", Value::Int(n)));
    }
    v
}

fn id_arg(id: Option<u64>) -> Rendered {
    id.map(|n| ("id", Value::Int(n))).into_iter().collect()
}

/// The declaration of the command named `name` (its full name, e.g. `backup run`).
pub fn find(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The declaration of the command that produced `op`.
pub fn spec_of(op: &Op) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| (c.render)(op).is_some())
}

/// The group named `word` (or one of its aliases), case-insensitively.
pub fn find_group(word: &str) -> Option<&'static Group> {
    let w = word.to_lowercase();
    GROUPS
        .iter()
        .find(|g| g.name == w || g.aliases.contains(&w.as_str()))
}

/// The commands of a group.
pub fn group_commands(group: &str) -> impl Iterator<Item = &'static CommandSpec> + '_ {
    COMMANDS.iter().filter(move |c| c.group() == Some(group))
}

/// The ungrouped command, or the command of `group`, selected by `word` (name or alias,
/// case-insensitively).
pub fn find_command(group: Option<&str>, word: &str) -> Option<&'static CommandSpec> {
    let w = word.to_lowercase();
    COMMANDS
        .iter()
        .filter(|c| c.group() == group)
        .find(|c| c.word() == w || c.aliases.contains(&w.as_str()))
}

/// kubectl options that runbook lines carry and opsbot does not take, with why (and what to
/// do instead): `(command, spellings, why)`; command `*` is every command.
/// Whether kubectl's option `flag` with `value`, given to `command`, only lays out kubectl's
/// answer (`-o wide`, `get events --sort-by=…`): opsbot lays out its own, so runbook lines
/// that carry them are taken as if they did not.
pub fn kubectl_layout_flag(command: &str, flag: &str, value: Option<&str>) -> bool {
    match (command, flag, value) {
        ("events", "--sort-by", Some(_)) => true,
        (_, "-o" | "--output", Some(v)) => v.eq_ignore_ascii_case("wide"),
        _ => false,
    }
}

const KUBECTL_ONLY_FLAGS: &[(&str, &[&str], &str)] = &[
    (
        "logs",
        &["-f", "--follow"],
        "a chat answer cannot follow a stream; `logs` shows the newest lines, ask again for newer ones",
    ),
    (
        "events",
        &["--field-selector"],
        "`events NAME` lists the events of one object",
    ),
    (
        "*",
        &["-o", "--output"],
        "opsbot lays out its answers itself",
    ),
    (
        "*",
        &["-A", "--all-namespaces"],
        "opsbot acts in one namespace at a time: give it with `-n NAMESPACE`",
    ),
    (
        "*",
        &["-w", "--watch"],
        "a chat answer cannot watch; ask again for the newest state",
    ),
];

/// Why `command` does not take kubectl's option `flag`, when that is one runbooks use.
pub fn kubectl_only_flag(command: &str, flag: &str) -> Option<&'static str> {
    KUBECTL_ONLY_FLAGS
        .iter()
        .find(|(c, spellings, _)| (*c == "*" || *c == command) && spellings.contains(&flag))
        .map(|(_, _, why)| *why)
}

/// Resolves a help topic (`scale`, `po`, `backup`, `backups run`, `rollout undo`, `get cj`) to its
/// canonical name.
pub fn resolve_topic(words: &[&str]) -> Option<String> {
    match words {
        [rollout, verb] if rollout.eq_ignore_ascii_case("rollout") => {
            crate::kubectl::rollout_command(verb).map(|c| c.name.to_owned())
        }
        [get, resource] if get.eq_ignore_ascii_case("get") => {
            crate::kubectl::get_command(resource).map(|c| c.name.to_owned())
        }
        [one] => {
            if let Some(c) = find_command(None, one) {
                Some(c.name.to_owned())
            } else {
                find_group(one).map(|g| g.name.to_owned())
            }
        }
        [group, sub] => {
            let g = find_group(group)?;
            find_command(Some(g.name), sub).map(|c| c.name.to_owned())
        }
        _ => None,
    }
}

/// Every name a user could mean at the start of a line (commands, aliases and groups).
pub(crate) fn top_level_names() -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in COMMANDS.iter().filter(|c| c.group().is_none()) {
        out.push(c.name);
        out.extend(c.aliases.iter().copied());
    }
    for g in GROUPS {
        out.push(g.name);
        out.extend(g.aliases.iter().copied());
    }
    out
}

/// The primitive type of an option in the application-command schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    String,
    Integer,
    Boolean,
}

/// A platform-neutral application command (a slash command or one of its subcommands).
///
/// The root is `ops`; its `subcommands` are the commands, and a group such as `backup` is a
/// subcommand with subcommands of its own. Adapters turn this into their platform's format (e.g.
/// Discord's application-command JSON) and the invocation back into text with
/// [`invocation_tokens`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCommand {
    pub name: String,
    /// One line, at most 100 characters.
    pub description: String,
    /// Present on commands (not on the root or groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// Required options first.
    pub options: Vec<AppOption>,
    pub subcommands: Vec<AppCommand>,
}

/// An option of an [`AppCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppOption {
    pub name: String,
    pub description: String,
    pub kind: OptionKind,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// When not empty, the only values allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

fn short_line(s: &str) -> String {
    // Schema descriptions are one line of at most 100 characters.
    let s: String = s.chars().filter(|c| *c != '`').collect();
    if s.chars().count() <= 100 {
        s
    } else {
        let mut out: String = s.chars().take(99).collect();
        out.push('…');
        out
    }
}

fn app_option(name: &str, help: &str, ty: ValueType, required: bool) -> AppOption {
    let (min, max) = match ty {
        ValueType::Int { min, max } => (Some(min), Some(max)),
        _ => (None, None),
    };
    let max_length = match ty {
        ValueType::DnsLabel => Some(63),
        ValueType::Name { .. }
        | ValueType::Workload
        | ValueType::LogSource
        | ValueType::Cluster => Some(253 + 20),
        ValueType::Text { max_chars } | ValueType::Words { max_chars } => Some(max_chars),
        ValueType::Person => Some(80),
        ValueType::IncidentId => Some(24),
        ValueType::Selector => Some(SELECTOR_MAX),
        ValueType::Duration { .. } => Some(20),
        _ => None,
    };
    let choices = match ty {
        // Commands and groups (a group's help lists its commands): within Discord's 25.
        ValueType::Topic => COMMANDS
            .iter()
            .filter(|c| c.group().is_none())
            .map(|c| c.name.to_owned())
            .chain(GROUPS.iter().map(|g| g.name.to_owned()))
            .collect(),
        ValueType::Choice(words) => words.iter().map(|w| (*w).to_owned()).collect(),
        _ => Vec::new(),
    };
    AppOption {
        name: name.to_owned(),
        description: short_line(help),
        kind: ty.option_kind(),
        required,
        min,
        max,
        max_length,
        choices,
    }
}

fn app_command(spec: &CommandSpec) -> AppCommand {
    let mut options: Vec<AppOption> = spec
        .args
        .iter()
        .map(|a| app_option(a.name, a.help, a.ty, a.required))
        .chain(
            spec.flags
                .iter()
                .chain(GLOBAL_FLAGS)
                .map(|f| app_option(f.name, f.help, f.ty, false)),
        )
        .collect();
    options.sort_by_key(|o| !o.required);
    AppCommand {
        name: spec.word().to_owned(),
        description: short_line(spec.summary),
        risk: Some(spec.risk),
        options,
        subcommands: Vec::new(),
    }
}

/// The application-command schema of every command, rooted at `ops`.
pub fn app_commands() -> AppCommand {
    let mut subcommands = Vec::new();
    for c in COMMANDS {
        match c.group() {
            None => subcommands.push(app_command(c)),
            Some(g) => {
                if subcommands.iter().any(|s: &AppCommand| s.name == g) {
                    continue;
                }
                let summary = GROUPS.iter().find(|x| x.name == g).map_or(g, |x| x.summary);
                subcommands.push(AppCommand {
                    name: g.to_owned(),
                    description: short_line(summary),
                    risk: None,
                    options: Vec::new(),
                    subcommands: group_commands(g).map(app_command).collect(),
                });
            }
        }
    }
    AppCommand {
        name: "ops".to_owned(),
        description: "Operate Kubernetes workloads from chat.".to_owned(),
        risk: None,
        options: Vec::new(),
        subcommands,
    }
}

/// A value an adapter received for an option of an application command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    Boolean(bool),
    Integer(i64),
    String(String),
}

/// The command-line tokens of an application-command invocation: `path` is the subcommand path
/// under `ops` (e.g. `["backup", "run"]`) and `options` the options the user filled in. Parse
/// them with [`crate::grammar::parse_tokens`], so invocations are validated exactly like text.
pub fn invocation_tokens(path: &[&str], options: &[(&str, OptionValue)]) -> Vec<String> {
    let mut tokens: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
    let spec = find(&path.join(" "));
    let mut positional: Vec<(usize, String)> = Vec::new();
    for (name, value) in options {
        let text = match value {
            OptionValue::Boolean(b) => b.to_string(),
            OptionValue::Integer(n) => n.to_string(),
            OptionValue::String(s) => s.clone(),
        };
        let arg = spec.and_then(|s| s.args.iter().position(|a| a.name == *name));
        match (arg, value) {
            (Some(i), _) => positional.push((i, text)),
            (None, OptionValue::Boolean(b)) => {
                if *b {
                    tokens.push(format!("--{name}"));
                }
            }
            (None, _) => {
                tokens.push(format!("--{name}"));
                tokens.push(text);
            }
        }
    }
    positional.sort_by_key(|(i, _)| *i);
    tokens.push("--".to_owned());
    for (_, text) in positional {
        // A help topic such as `backup run` is several words.
        tokens.extend(text.split_whitespace().map(str::to_owned));
    }
    tokens
}

/// Longest label selector accepted.
pub const SELECTOR_MAX: usize = 512;
