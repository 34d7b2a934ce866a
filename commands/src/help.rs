//! `help` and the command reference, built from the declarations in [`crate::spec`].

use crate::grammar::{ParseError, int_range};
use crate::reply::Reply;
use crate::spec::{self, COMMANDS, CommandSpec, GLOBAL_FLAGS, GROUPS, ValueType};

const GLOBAL_NOTE: &str = "Every command takes `-n/--namespace NAMESPACE` and `--cluster CLUSTER`; \
    without them it acts in the channel's namespace, else the cluster's default.";

/// The reply to `help` (no topic) or `help TOPIC`, where the topic is a command name (`scale`,
/// `backup run`), a group (`backup`) or an alias.
pub fn help_reply(topic: Option<&str>) -> Reply {
    let Some(topic) = topic else {
        return overview();
    };
    let words: Vec<&str> = topic.split_whitespace().collect();
    match spec::resolve_topic(&words) {
        Some(name) => match spec::find(&name) {
            Some(c) => command_help(c),
            None => group_help(&name),
        },
        None => Reply::warning("Unknown command")
            .text(format!("There is no command `{topic}`."))
            .footer("`help` lists the commands"),
    }
}

fn table(specs: &[&CommandSpec]) -> String {
    let rows: Vec<(String, &str)> = specs.iter().map(|c| (c.usage(), c.summary)).collect();
    let width = rows
        .iter()
        .map(|(u, _)| u.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    rows.iter()
        .map(|(u, s)| {
            if u.chars().count() > width {
                format!("{u}\n{:width$}  {s}", "")
            } else {
                format!("{u:width$}  {s}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn overview() -> Reply {
    let all: Vec<&CommandSpec> = COMMANDS.iter().collect();
    Reply::info("opsbot commands")
        .text(format!(
            "Type a command after `/ops`. {GLOBAL_NOTE} Runbook lines work too: \
             `rollout restart deployment api` is `restart api`, `get pods` is `pods`. \
             `help COMMAND` explains one command."
        ))
        .block(None, table(&all))
        .footer("read-only commands are always safe; changes may need an approval")
}

fn group_help(group: &str) -> Reply {
    let specs: Vec<&CommandSpec> = spec::group_commands(group).collect();
    let summary = GROUPS
        .iter()
        .find(|g| g.name == group)
        .map_or("", |g| g.summary);
    Reply::info(format!("help: {group}"))
        .text(format!("{summary} {GLOBAL_NOTE}"))
        .block(None, table(&specs))
        .footer(format!("`help {group} COMMAND` explains one of them"))
}

/// One line per argument and flag: spelling, help, default.
fn option_lines(c: &CommandSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in c.args {
        let mut help = a.help.to_owned();
        if !a.required {
            help.push_str(" (optional)");
        }
        out.push((a.placeholder.to_owned(), help));
    }
    for f in c.flags.iter().chain(GLOBAL_FLAGS) {
        let mut help = f.help.to_owned();
        if let Some(d) = f.default {
            help.push_str(&format!(" Default: {d}."));
        }
        out.push((f.spellings(), help));
    }
    out
}

fn command_help(c: &CommandSpec) -> Reply {
    let lines = option_lines(c);
    let width = lines
        .iter()
        .map(|(s, _)| s.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    let options = lines
        .iter()
        .map(|(s, h)| format!("{s:width$}  {h}"))
        .collect::<Vec<_>>()
        .join("\n");
    let examples = c
        .examples
        .iter()
        .map(|e| format!("{}    # {}", e.text, e.explains))
        .collect::<Vec<_>>()
        .join("\n");
    let mut r = Reply::info(format!("help: {}", c.name))
        .text(format!("{}\n{}", c.summary, c.description))
        .block(Some("Usage".to_owned()), c.usage())
        .block(Some("Arguments and options".to_owned()), options);
    if !examples.is_empty() {
        r = r.block(Some("Examples".to_owned()), examples);
    }
    r = r
        .field("Policy action", actions(c))
        .field("Risk", c.risk.as_str());
    if !c.aliases.is_empty() {
        r = r.field("Aliases", c.aliases.join(", "));
    }
    let kubectl = crate::kubectl::spellings(c.name);
    if !kubectl.is_empty() {
        r = r.field("As kubectl", kubectl.join(", "));
    }
    r
}

fn actions(c: &CommandSpec) -> String {
    c.actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ParseError {
    /// The reply that tells the user what was wrong and how to type it.
    pub fn to_reply(&self) -> Reply {
        let mut r = Reply::warning("I didn't understand that").text(self.message.clone());
        if let Some(u) = &self.usage {
            r = r.block(Some("Usage".to_owned()), u.clone());
        }
        if let Some(s) = &self.suggestion {
            r = r.field("Did you mean", format!("`{s}`"));
        }
        r.footer("`help` lists the commands")
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn anchor(name: &str) -> String {
    name.replace(' ', "-")
}

/// The table of commands, each linked to its section at `link_base` + anchor.
fn command_table(link_base: &str) -> String {
    let mut md =
        String::from("| Command | What it does | Policy action | Risk |\n|---|---|---|---|\n");
    for c in COMMANDS {
        md.push_str(&format!(
            "| [`{}`]({link_base}{}) | {} | `{}` | {} |\n",
            c.name,
            anchor(c.name),
            cell(c.summary),
            actions(c).replace(", ", "`, `"),
            c.risk.as_str()
        ));
    }
    md
}

/// The command table for README.md, linking into `docs/commands.md`.
pub fn readme_summary_markdown() -> String {
    command_table("docs/commands.md#")
}

/// The command reference in Markdown (committed as `docs/commands.md`).
pub fn reference_markdown() -> String {
    let mut md = String::new();
    md.push_str("# Command reference\n\n");
    md.push_str(
        "<!-- Generated from commands/src/spec.rs; do not edit. Regenerate with:\n     \
         UPDATE_DOCS=1 cargo test -p opsbot-commands --test docs -->\n\n",
    );
    md.push_str(&format!(
        "Type these after `/ops` (Slack, Discord) or at the console. {GLOBAL_NOTE} Arguments can \
         be quoted like in a shell, flags can be written `--flag value` or `--flag=value`, and \
         kubectl forms such as `deploy/api`, `deployment api`, `sts/db` and `--replicas=5` work. \
         So do runbook lines, with or without a leading `kubectl`: `rollout restart|status|undo`, \
         `get pods|events|deployments|statefulsets|cronjobs|jobs|hpa`, `create job \
         --from=cronjob/CRONJOB [NAME]` and `patch hpa NAME -p '{{\"spec\":{{\"minReplicas\":N}}}}'` \
         are the commands each command's *as kubectl* names, and `logs … | grep TEXT | tail -N` \
         is `logs … --grep TEXT --tail N`; `describe`, `top`, `exec`, `apply`, `delete` and \
         other verbs opsbot does not run are refused with why.\n\n"
    ));
    md.push_str(&command_table("#"));
    md.push_str(
        "\n## Options every command takes\n\n| Option | Description | Default |\n|---|---|---|\n",
    );
    for f in GLOBAL_FLAGS {
        md.push_str(&format!(
            "| `{}` | {} | {} |\n",
            cell(&f.spellings()),
            cell(f.help),
            cell(f.default.unwrap_or(""))
        ));
    }
    md.push_str(
        "\nNames of namespaces and resources are Kubernetes DNS names (lowercase letters, digits, \
         `-`, and `.` in resource names). Durations are written `30s`, `15m`, `1h`, `2d` or \
         combined, e.g. `1h30m`.\n",
    );
    for c in COMMANDS {
        md.push_str(&format!("\n## {}\n\n{}\n\n", c.name, c.summary));
        md.push_str(&format!("```\n{}\n```\n\n{}\n\n", c.usage(), c.description));
        if !c.args.is_empty() || !c.flags.is_empty() {
            md.push_str("| Argument / option | Description | Default / range |\n|---|---|---|\n");
            for a in c.args {
                let mut help = a.help.to_owned();
                if !a.required {
                    help.push_str(" Optional.");
                }
                md.push_str(&format!(
                    "| `{}` | {} | {} |\n",
                    cell(a.placeholder),
                    cell(&help),
                    bounds(a.ty)
                ));
            }
            for f in c.flags {
                let default = match (f.default, bounds(f.ty).as_str()) {
                    (Some(d), "") => d.to_owned(),
                    (Some(d), b) => format!("{d} ({b})"),
                    (None, b) => b.to_owned(),
                };
                md.push_str(&format!(
                    "| `{}` | {} | {} |\n",
                    cell(&f.spellings()),
                    cell(f.help),
                    cell(&default)
                ));
            }
            md.push('\n');
        }
        md.push_str(&format!(
            "Policy action: `{}` · risk: {}",
            actions(c).replace(", ", "`, `"),
            c.risk.as_str()
        ));
        if !c.aliases.is_empty() {
            md.push_str(&format!(
                " · aliases: {}",
                c.aliases
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let kubectl = crate::kubectl::spellings(c.name);
        if !kubectl.is_empty() {
            md.push_str(&format!(
                " · as kubectl: {}",
                kubectl
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        md.push_str("\n\n");
        if !c.examples.is_empty() {
            md.push_str("Examples:\n\n");
            for e in c.examples {
                md.push_str(&format!("- `{}`: {}\n", e.text, e.explains));
            }
        }
    }
    md
}

fn bounds(ty: ValueType) -> String {
    match ty {
        ValueType::Int { min, max } => int_range(min, max),
        ValueType::Choice(words) => format!("one of {}", words.join(", ")),
        _ => String::new(),
    }
}
