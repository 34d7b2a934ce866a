//! kubectl's spellings of opsbot's commands, as the runbooks write them.
//!
//! Operators paste runbook lines: `kubectl rollout restart deployment envoy -n ingress`,
//! `kubectl get pods -l app=envoy`, `kubectl create job --from=cronjob/db-backup`,
//! `kubectl logs deployment/api | grep ERROR`. `rewrite` turns such a line into the opsbot
//! command it means before the grammar reads it, and refuses what opsbot does not do with why
//! and what to use instead. Only kubectl verbs that are not
//! opsbot commands are rewritten (`scale`, `logs` and `events` need nothing), so a rewritten
//! line is read exactly as if the opsbot form had been typed: the same checks, the same errors.
//! kubectl's `KIND NAME` pairs and options opsbot does not take are the grammar's business
//! ([`crate::spec::kubectl_only_flag`]).

use serde::Deserialize;

use crate::grammar::ParseError;
use crate::spec::{self, CommandSpec, GLOBAL_FLAGS, ValueType};

/// kubectl's `rollout` verbs that opsbot takes, and the commands they are.
pub const ROLLOUT_VERBS: &[(&str, &str)] = &[
    ("restart", "restart"),
    ("status", "status"),
    ("undo", "rollback"),
];

/// What `get RESOURCE [NAME]` is.
struct Get {
    /// kubectl's names of the resource.
    words: &'static [&'static str],
    /// The opsbot command that shows it.
    command: &'static str,
    name: GetName,
    /// Added without a NAME, where kubectl lists more than the command does by default
    /// (`get cronjobs` is every CronJob: `backup status --all`).
    unnamed: Option<&'static str>,
}

/// What becomes of `get RESOURCE NAME`'s NAME.
enum GetName {
    /// It gets the resource's kind (`get pods x` is `pods pod/x`: a pod, not a workload).
    Kind(&'static str),
    /// It is passed on as it is.
    AsIs,
    /// The command takes none, for this reason.
    Refused(&'static str),
}

const GETS: &[Get] = &[
    Get {
        words: &["pods", "pod", "po"],
        command: "pods",
        name: GetName::Kind("pod"),
        unnamed: None,
    },
    Get {
        words: &["events", "event", "ev"],
        command: "events",
        name: GetName::AsIs,
        unnamed: None,
    },
    Get {
        words: &["deployments", "deployment", "deploy"],
        command: "status",
        name: GetName::Kind("deployment"),
        unnamed: None,
    },
    Get {
        words: &["statefulsets", "statefulset", "sts"],
        command: "status",
        name: GetName::Kind("statefulset"),
        unnamed: None,
    },
    Get {
        words: &["cronjobs", "cronjob", "cj"],
        command: "backup status",
        name: GetName::Kind("cronjob"),
        unnamed: Some("--all"),
    },
    Get {
        words: &["jobs", "job"],
        command: "backup status",
        name: GetName::Refused(
            "opsbot shows Jobs under their CronJob: `backup status CRONJOB` (or `get cronjobs \
             CRONJOB`)",
        ),
        unnamed: Some("--all"),
    },
    Get {
        words: &["hpa", "horizontalpodautoscalers", "horizontalpodautoscaler"],
        command: "hpa",
        name: GetName::AsIs,
        unnamed: None,
    },
];

/// The changes opsbot makes, for refusals of the ones it does not.
const CHANGES: &str = "opsbot makes only the changes it has commands for: scale, restart, rollback, hpa and backup run";

/// kubectl verbs opsbot does not run, and why (with what to use instead).
const REFUSED_VERBS: &[(&[&str], &str)] = &[
    (
        &["describe"],
        "`status NAME` shows a rollout as describe would, `pods NAME` its pods, `events NAME` \
         what happened to an object",
    ),
    (
        &["top"],
        "opsbot reads no metrics; `pods NAME` shows readiness and restarts",
    ),
    (
        &["exec", "attach", "cp", "port-forward", "proxy", "debug"],
        "opsbot opens no shell or connection into the cluster; that stays with kubectl and your \
         own credentials",
    ),
    (
        &[
            "apply",
            "edit",
            "delete",
            "replace",
            "set",
            "label",
            "annotate",
            "expose",
            "run",
            "autoscale",
        ],
        CHANGES,
    ),
    (
        &["drain", "cordon", "uncordon", "taint"],
        "opsbot does not manage nodes",
    ),
];

/// The first words of commands that take free text (titles, notes, comments).
const FREE_TEXT: [&str; 3] = ["incident", "silence", "silences"];

/// The opsbot command a runbook line means, as words, when `tokens` start (after `kubectl`
/// and any `-n`/`--cluster`) with a kubectl verb that is not an opsbot command; `None` for
/// everything else. Refuses the kubectl forms opsbot does not do.
pub(crate) fn rewrite(tokens: &[&str]) -> Result<Option<Vec<String>>, ParseError> {
    // A `|` is a shell pipeline in a runbook line; in an incident's or a silence's free text
    // ("db | cache down") it is just a character.
    let free_text = tokens
        .get(after_global_flags(tokens))
        .is_some_and(|w| FREE_TEXT.iter().any(|f| w.eq_ignore_ascii_case(f)));
    if !free_text && let Some(bar) = tokens.iter().position(|t| *t == "|") {
        return piped(&tokens[..bar], &tokens[bar..]).map(Some);
    }
    // `kubectl` (again) where the verb goes is dropped, however often it is repeated (in a
    // loop: a line of thousands of them must not take a stack frame each).
    let mut line = tokens.to_vec();
    let mut dropped = false;
    let start = loop {
        let start = after_global_flags(&line);
        match line.get(start) {
            Some(word) if word.eq_ignore_ascii_case("kubectl") => {
                line.remove(start);
                dropped = true;
            }
            _ => break start,
        }
    };
    let Some(&verb) = line.get(start) else {
        return Ok(dropped.then(|| owned(&line)));
    };
    let lead = owned(&line[..start]);
    let rest = &line[start + 1..];
    let command = match verb.to_ascii_lowercase().as_str() {
        "rollout" => rollout(rest)?,
        "get" => get(rest)?,
        "create" => create(rest)?,
        "patch" => patch(rest)?,
        v => match REFUSED_VERBS.iter().find(|(verbs, _)| verbs.contains(&v)) {
            Some((_, why)) => {
                return Err(
                    ParseError::new(format!("opsbot does not run `kubectl {v}`: {why}"))
                        .with_token(verb),
                );
            }
            None => return Ok(dropped.then(|| owned(&line))),
        },
    };
    Ok(Some(lead.into_iter().chain(command).collect()))
}

/// `logs … | grep TEXT | tail -N` is `logs … --grep TEXT --tail N`, and the runbooks' backup
/// check `get jobs | grep backup` (or `get cronjobs | grep backup`) is `backup status`, which
/// shows the CronJobs named `backup` with their Jobs; no other pipeline is taken.
fn piped(line: &[&str], pipeline: &[&str]) -> Result<Vec<String>, ParseError> {
    let rewritten = rewrite(line)?;
    let translated = rewritten.is_some();
    let mut out = rewritten.unwrap_or_else(|| owned(line));
    let is_logs = out
        .get(after_global_flags(&borrowed(&out)))
        .and_then(|word| spec::find_command(None, word))
        .is_some_and(|c| c.name == "logs");
    let is_all_backups = translated && out.iter().any(|w| w == "--all");
    if is_all_backups
        && let ["|", "grep", word] = pipeline
        && word.eq_ignore_ascii_case("backup")
    {
        out.retain(|w| w != "--all");
        return Ok(out);
    }
    if !is_logs {
        let without = if translated {
            format!("; without the pipeline, the line is `{}`", out.join(" "))
        } else {
            String::new()
        };
        return Err(ParseError::new(format!(
            "opsbot runs no shell pipelines: only `logs … | grep TEXT | tail -N` is taken (as \
             `logs … --grep TEXT --tail N`){without}"
        ))
        .with_token("|"));
    }
    for stage in pipeline.split(|t| *t == "|").skip(1) {
        out.extend(pipe_stage(stage)?);
    }
    Ok(out)
}

/// One `| grep TEXT` or `| tail -N` after `logs`, as its option.
fn pipe_stage(stage: &[&str]) -> Result<[String; 2], ParseError> {
    let count = |n: &str| {
        n.parse::<u64>()
            .ok()
            .map(|_| ["--tail".to_owned(), n.to_owned()])
    };
    let taken = match stage {
        ["grep", text] if !text.starts_with('-') => {
            if text.contains(['\\', '|', '*', '[', '^', '$']) {
                return Err(ParseError::new(format!(
                    "`--grep` finds plain text, not the pattern `{text}`: ask once for each text"
                ))
                .with_token(*text));
            }
            Some(["--grep".to_owned(), (*text).to_owned()])
        }
        ["tail", n] => n.strip_prefix("-n").or(n.strip_prefix('-')).and_then(count),
        ["tail", "-n", n] => count(n),
        _ => None,
    };
    taken.ok_or_else(|| {
        let typed = stage.join(" ");
        ParseError::new(format!(
            "`| {typed}`: after `logs`, opsbot takes `| grep TEXT` and `| tail -N` (as `--grep \
             TEXT` and `--tail N`)"
        ))
        .with_token(typed)
    })
}

/// The command `rollout VERB` is (`rollout undo` is `rollback`).
pub fn rollout_command(verb: &str) -> Option<&'static CommandSpec> {
    let (_, name) = ROLLOUT_VERBS
        .iter()
        .find(|(v, _)| v.eq_ignore_ascii_case(verb))?;
    spec::find(name)
}

/// The command `get RESOURCE` is (`get cronjobs` is `backup status`).
pub fn get_command(resource: &str) -> Option<&'static CommandSpec> {
    find_get(resource).and_then(|g| spec::find(g.command))
}

/// How runbooks write `command` in kubectl's words, for `help`.
pub fn spellings(command: &str) -> Vec<String> {
    let rollout = ROLLOUT_VERBS
        .iter()
        .filter(|(_, c)| *c == command)
        .map(|(verb, _)| format!("rollout {verb}"));
    let get = GETS
        .iter()
        .filter(|g| g.command == command)
        .map(|g| format!("get {}", g.words[0]));
    let other = match command {
        "backup run" => Some("create job --from=cronjob/CRONJOB [NAME]"),
        "hpa" => Some("patch hpa NAME -p '{\"spec\":{\"minReplicas\":N,\"maxReplicas\":N}}'"),
        _ => None,
    };
    rollout.chain(get).chain(other.map(str::to_owned)).collect()
}

fn find_get(resource: &str) -> Option<&'static Get> {
    GETS.iter()
        .find(|g| g.words.iter().any(|w| w.eq_ignore_ascii_case(resource)))
}

/// `rollout restart|status|undo …`.
fn rollout(rest: &[&str]) -> Result<Vec<String>, ParseError> {
    let verb = rest.first().copied().unwrap_or_default();
    let Some(c) = rollout_command(verb) else {
        let not = match verb {
            "" => String::new(),
            v => format!("; not `{v}`"),
        };
        return Err(ParseError::new(format!(
            "`rollout` is followed by restart, status or undo, as in kubectl (`rollout restart \
             NAME` is `restart NAME`){not}"
        ))
        .with_token(if verb.is_empty() { "rollout" } else { verb }));
    };
    Ok(words(c).chain(owned(&rest[1..])).collect())
}

/// `get RESOURCE [NAME] …` and `get RESOURCE/NAME …`; for events also
/// `--field-selector involvedObject.name=NAME`.
/// Drops kubectl's layout options (`-o wide`, `--sort-by=…`) from `args` of `command`, before
/// their values could be taken for a name ([`spec::kubectl_layout_flag`]).
fn drop_layout_flags(command: &str, args: &mut Vec<String>) {
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = crate::grammar::split_flag(&args[i]);
        let value = inline.or(args.get(i + 1).map(String::as_str));
        if crate::grammar::is_flag(flag) && spec::kubectl_layout_flag(command, flag, value) {
            let with_value = usize::from(inline.is_none());
            args.drain(i..=i + with_value);
        } else {
            i += 1;
        }
    }
}

fn get(rest: &[&str]) -> Result<Vec<String>, ParseError> {
    let Some(&first) = rest.first() else {
        return Err(ParseError::new(format!(
            "`get` needs a resource, as in kubectl: {}",
            resource_list()
        ))
        .with_token("get"));
    };
    let (resource, inline_name) = match first.split_once('/') {
        Some((r, n)) => (r, Some(n)),
        None => (first, None),
    };
    let Some(g) = find_get(resource) else {
        return Err(ParseError::new(format!(
            "opsbot does not read `{resource}`; `get` reads {}",
            resource_list()
        ))
        .with_token(first));
    };
    let c = declared(g.command);
    let mut args: Vec<String> = inline_name.map(str::to_owned).into_iter().collect();
    args.extend(owned(&rest[1..]));
    drop_layout_flags(c.name, &mut args);
    if g.command == "events" {
        from_field_selector(&mut args)?;
    }
    match (first_positional(c, &args), &g.name) {
        (None, _) => args.extend(g.unnamed.map(str::to_owned)),
        (Some(i), GetName::Kind(kind)) if !args[i].contains('/') => {
            args[i] = format!("{kind}/{}", args[i]);
        }
        (Some(_), GetName::Kind(_) | GetName::AsIs) => {}
        (Some(i), GetName::Refused(why)) => {
            return Err(
                ParseError::new(format!("`get {resource}` takes no name here: {why}"))
                    .with_token(args[i].clone()),
            );
        }
    }
    Ok(words(c).chain(args).collect())
}

/// `--field-selector involvedObject.name=NAME` (how kubectl lists one object's events) becomes
/// the NAME `events` takes; other field selectors are left for the grammar to refuse.
fn from_field_selector(args: &mut Vec<String>) -> Result<(), ParseError> {
    let Some((at, value, len)) = flag_value(args, &["--field-selector"]) else {
        return Ok(());
    };
    if let Some(name) = value.strip_prefix("involvedObject.name=") {
        if name.contains(',') {
            return Err(ParseError::new(
                "`--field-selector` takes only `involvedObject.name=NAME` here: `events NAME` \
                 lists one object's events",
            )
            .with_token(value.clone()));
        }
        let name = name.to_owned();
        args.splice(at..at + len, [name]);
    }
    Ok(())
}

/// `create job --from=cronjob/CRONJOB [NAME]` is `backup run CRONJOB [--job NAME]`.
fn create(rest: &[&str]) -> Result<Vec<String>, ParseError> {
    let usage = "`create job --from=cronjob/CRONJOB [NAME]` (that is `backup run CRONJOB`)";
    match rest.first() {
        Some(kind) if kind.eq_ignore_ascii_case("job") => {}
        other => {
            return Err(ParseError::new(format!(
                "opsbot creates only Jobs from a CronJob, with {usage}; {CHANGES}"
            ))
            .with_token(other.copied().unwrap_or("create")));
        }
    }
    let mut args = owned(&rest[1..]);
    let Some((at, from, len)) = flag_value(&args, &["--from"]) else {
        return Err(ParseError::new(format!(
            "`create job` needs `--from=cronjob/CRONJOB`: opsbot creates Jobs only from a \
             CronJob, with {usage}"
        ))
        .with_token("job"));
    };
    let run = declared("backup run");
    let cronjob = match from.split_once('/') {
        Some((kind, name)) if takes_kind(run, kind) => name.to_owned(),
        _ => {
            return Err(ParseError::new(format!(
                "`--from` names the CronJob to run: `--from=cronjob/NAME`, not `{from}`"
            ))
            .with_token(from.clone()));
        }
    };
    args.drain(at..at + len);
    if let Some(i) = first_positional(run, &args) {
        let job = args.remove(i);
        args.extend(["--job".to_owned(), job]);
    }
    Ok(words(run).chain([cronjob]).chain(args).collect())
}

/// The part of an HPA that `patch hpa NAME -p JSON` may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HpaPatch {
    spec: HpaBounds,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HpaBounds {
    min_replicas: Option<u64>,
    max_replicas: Option<u64>,
}

/// `patch hpa NAME -p '{"spec":{"minReplicas":N,"maxReplicas":M}}'` is
/// `hpa NAME --min N --max M`.
fn patch(rest: &[&str]) -> Result<Vec<String>, ParseError> {
    let usage = "`patch hpa NAME -p '{\"spec\":{\"minReplicas\":N,\"maxReplicas\":M}}'` (that is \
                 `hpa NAME --min N --max M`)";
    let hpa = declared("hpa");
    let first = rest.first().copied().unwrap_or("patch");
    let (resource, inline_name) = match first.split_once('/') {
        Some((r, n)) => (r, Some(n)),
        None => (first, None),
    };
    if !takes_kind(hpa, resource) {
        return Err(ParseError::new(format!(
            "opsbot patches only an autoscaler's replica bounds, with {usage}; {CHANGES}"
        ))
        .with_token(first));
    }
    let mut args: Vec<String> = inline_name.map(str::to_owned).into_iter().collect();
    args.extend(owned(&rest[1..]));
    // kubectl's patch types all mean the same for this patch, except a JSON patch (a list).
    if let Some((at, kind, len)) = flag_value(&args, &["--type"]) {
        if !matches!(kind.as_str(), "merge" | "strategic") {
            return Err(ParseError::new(format!(
                "`--type {kind}` is not taken: give the bounds as a merge patch, {usage}"
            ))
            .with_token(kind.clone()));
        }
        args.drain(at..at + len);
    }
    let Some((at, json, len)) = flag_value(&args, &["-p", "--patch"]) else {
        return Err(
            ParseError::new(format!("`patch hpa` needs `-p` with the bounds: {usage}"))
                .with_token(first),
        );
    };
    let bounds = match serde_json::from_str::<HpaPatch>(&json) {
        Ok(HpaPatch { spec }) if spec.min_replicas.is_some() || spec.max_replicas.is_some() => spec,
        Ok(_) => {
            return Err(ParseError::new(format!(
                "the patch sets neither minReplicas nor maxReplicas: {usage}"
            ))
            .with_token(json.clone()));
        }
        Err(e) => {
            return Err(ParseError::new(format!(
                "opsbot patches only `spec.minReplicas` and `spec.maxReplicas` of an autoscaler \
                 ({e}): {usage}"
            ))
            .with_token(json.clone()));
        }
    };
    let mut flags = Vec::new();
    for (flag, n) in [
        ("--min", bounds.min_replicas),
        ("--max", bounds.max_replicas),
    ] {
        if let Some(n) = n {
            flags.extend([flag.to_owned(), n.to_string()]);
        }
    }
    args.splice(at..at + len, flags);
    Ok(words(hpa).chain(args).collect())
}

/// The declaration of a command this module names (a unit test checks each exists).
fn declared(name: &str) -> &'static CommandSpec {
    spec::find(name).unwrap_or_else(|| panic!("`{name}` is not a declared command"))
}

/// The words that select `c` (`backup status` is two).
fn words(c: &CommandSpec) -> impl Iterator<Item = String> {
    c.name.split(' ').map(str::to_owned)
}

fn owned(tokens: &[&str]) -> Vec<String> {
    tokens.iter().map(|t| (*t).to_owned()).collect()
}

fn borrowed(tokens: &[String]) -> Vec<&str> {
    tokens.iter().map(String::as_str).collect()
}

/// Whether `kind` is a kind `c`'s first argument may be prefixed with (`cronjob/`).
fn takes_kind(c: &CommandSpec, kind: &str) -> bool {
    c.args
        .first()
        .is_some_and(|a| crate::grammar::is_kind_word(a.ty, kind))
}

fn resource_list() -> String {
    let names: Vec<&str> = GETS.iter().map(|g| g.words[0]).collect();
    names.join(", ")
}

/// Where the leading `-n NAMESPACE` / `--cluster CLUSTER` options end.
fn after_global_flags(tokens: &[&str]) -> usize {
    let mut i = 0;
    while let Some(tok) = tokens.get(i) {
        let Some((flag, inline)) = crate::grammar::split_option(tok) else {
            break;
        };
        if !GLOBAL_FLAGS.iter().any(|g| g.matches(flag)) {
            break;
        }
        i += if inline.is_some() { 1 } else { 2 };
    }
    i.min(tokens.len())
}

/// Where `c`'s first positional argument is among `args`: the first word that is neither an
/// option nor the value of an option that takes one (as the grammar will read them).
fn first_positional(c: &CommandSpec, args: &[String]) -> Option<usize> {
    let mut i = 0;
    while let Some(tok) = args.get(i) {
        let Some((flag, inline)) = crate::grammar::split_option(tok) else {
            return Some(i);
        };
        let ty = GLOBAL_FLAGS
            .iter()
            .chain(c.flags)
            .find(|f| f.matches(flag))
            .map(|f| f.ty)
            .or_else(|| c.find_arg_flag(flag).map(|a| a.ty));
        let takes_value = inline.is_none() && ty.is_some_and(|t| t != ValueType::Bool);
        i += if takes_value { 2 } else { 1 };
    }
    None
}

/// The value of the first of `spellings` among `args` (`--from=x`, `--from x`, `-px`): its
/// index, the value, and how many words the option and its value take.
fn flag_value(args: &[String], spellings: &[&str]) -> Option<(usize, String, usize)> {
    args.iter().enumerate().find_map(|(i, tok)| {
        let (flag, inline) = crate::grammar::split_option(tok)?;
        if !spellings.contains(&flag) {
            return None;
        }
        match inline {
            Some(v) => Some((i, v.to_owned(), 1)),
            None => Some((i, args.get(i + 1).cloned().unwrap_or_default(), 2)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubectl verb that is also an opsbot command or group would never reach opsbot's own
    /// reading of it.
    #[test]
    fn rewritten_verbs_are_not_opsbot_commands() {
        let names = spec::top_level_names();
        let verbs = ["kubectl", "rollout", "get", "create", "patch"]
            .into_iter()
            .chain(REFUSED_VERBS.iter().flat_map(|(v, _)| v.iter().copied()));
        for verb in verbs {
            assert!(!names.contains(&verb), "{verb}");
        }
    }

    #[test]
    fn every_command_named_here_is_declared() {
        for name in GETS.iter().map(|g| g.command).chain(["backup run", "hpa"]) {
            assert!(spec::find(name).is_some(), "{name}");
        }
        for (verb, _) in ROLLOUT_VERBS {
            assert!(rollout_command(verb).is_some(), "{verb}");
        }
    }
}
