//! The text grammar: what users type after `/ops`, parsed as the declarations in
//! [`crate::spec::COMMANDS`] say.
//!
//! Words are split like a shell does (quotes and backslashes work). `-n/--namespace` and
//! `--cluster` are accepted anywhere, flags as `--flag value` or `--flag=value`, and kubectl forms
//! such as `deploy/x`, `sts/x` and `--replicas=5`. Nothing here panics, whatever the input.

use std::time::Duration;

use crate::command::{Command, Workload, WorkloadKind};
use crate::kubectl;
use crate::spec::{
    self, ArgSpec, CommandSpec, GLOBAL_FLAGS, Matches, SELECTOR_MAX, Value, ValueType,
};

/// Why a command line did not parse: names the bad token, shows the usage line and suggests the
/// nearest command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    /// The token that is wrong, as the user typed it.
    pub token: Option<String>,
    /// The usage line of the command (or of the suggested command).
    pub usage: Option<String>,
    /// What the user probably meant: a command name, a flag, or a corrected value.
    pub suggestion: Option<String>,
}

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
            token: None,
            usage: None,
            suggestion: None,
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn with_usage(mut self, usage: impl Into<String>) -> Self {
        self.usage = Some(usage.into());
        self
    }

    pub fn with_suggestion(mut self, suggestion: Option<String>) -> Self {
        self.suggestion = suggestion;
        self
    }
}

/// Longest command line accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 8 * 1024;

/// Parses what a user typed after `/ops`. An empty line is `help`.
pub fn parse(text: &str) -> Result<Command, ParseError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(ParseError::new(format!(
            "the command is too long ({} bytes; at most {MAX_INPUT_BYTES})",
            text.len()
        )));
    }
    let text = normalize(text);
    let tokens = shell_words::split(&text).map_err(|_| {
        ParseError::new("a quote is not closed: close it, or escape it with a backslash")
    })?;
    parse_tokens(&tokens)
}

/// Chat clients "smarten" quotes and insert non-breaking spaces. When the line has no ASCII
/// quotes or backslashes at all, those are read as their ASCII counterparts. ([`Command::to_text`]
/// quotes every value that is not plain ASCII, so canonical text is never changed by this.)
fn normalize(text: &str) -> String {
    if text.contains(['\'', '"', '\\']) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut word_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Curly single quotes are left alone: they are apostrophes more often than quotes.
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' => out.push('"'),
            '\u{00A0}' | '\u{2007}' | '\u{202F}' | '\u{2000}'..='\u{200A}' | '\u{3000}' => {
                out.push(' ')
            }
            // Phones turn `--tail` into `—tail`; a dash on its own is punctuation ("rolled
            // back — all good"), not the end of the options.
            '\u{2014}' | '\u{2013}'
                if word_start && chars.peek().is_some_and(|n| n.is_alphabetic()) =>
            {
                out.push_str("--")
            }
            c => out.push(c),
        }
        word_start = out.ends_with([' ', '\t', '\n']);
    }
    out
}

pub(crate) fn is_flag(tok: &str) -> bool {
    tok.len() > 1 && tok.starts_with('-')
}

/// `--tail=5` → (`--tail`, `Some("5")`); `-n=prod` and `-nprod` → (`-n`, `Some("prod")`).
pub(crate) fn split_flag(tok: &str) -> (&str, Option<&str>) {
    if tok.starts_with("--") {
        return match tok.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (tok, None),
        };
    }
    let Some(c) = tok.chars().nth(1) else {
        return (tok, None);
    };
    let end = 1 + c.len_utf8();
    match tok.get(end..) {
        Some("") | None => (tok, None),
        Some(rest) => (&tok[..end], Some(rest.strip_prefix('=').unwrap_or(rest))),
    }
}

/// `-n=prod` → (`-n`, `Some("prod")`); `None` when `tok` is not an option.
pub(crate) fn split_option(tok: &str) -> Option<(&str, Option<&str>)> {
    is_flag(tok).then(|| split_flag(tok))
}

/// Parses already split words (e.g. from [`spec::invocation_tokens`]). A runbook's kubectl line
/// is read as the command it means (`kubectl::rewrite`).
pub fn parse_tokens<S: AsRef<str>>(tokens: &[S]) -> Result<Command, ParseError> {
    let tokens: Vec<&str> = tokens.iter().map(AsRef::as_ref).collect();
    match kubectl::rewrite(&tokens)? {
        Some(line) => read(&line.iter().map(String::as_str).collect::<Vec<_>>()),
        None => read(&tokens),
    }
}

/// Reads opsbot's own words.
fn read(tokens: &[&str]) -> Result<Command, ParseError> {
    let mut cluster: Option<String> = None;
    let mut namespace: Option<String> = None;
    let mut group: Option<&'static spec::Group> = None;
    let mut cmd: Option<&'static CommandSpec> = None;
    let mut matches = Matches::default();
    // Where each value came from, for "given twice" errors.
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut positionals: Vec<&str> = Vec::new();
    let mut only_positional = false;
    let mut i = 0;

    while i < tokens.len() {
        let tok = tokens[i];
        i += 1;
        if !only_positional && tok == "--" {
            only_positional = true;
            continue;
        }
        // In free text (a title, a note), `-50%` or `-200ms` is a word, not an option.
        let takes_words = cmd.is_some_and(|c| {
            c.args
                .iter()
                .any(|a| matches!(a.ty, ValueType::Words { .. }))
        });
        if !only_positional
            && takes_words
            && tok.starts_with('-')
            && tok[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            positionals.push(tok);
            continue;
        }
        if !only_positional && is_flag(tok) {
            let usage = cmd.map(CommandSpec::usage);
            if tok[1..].bytes().all(|b| b.is_ascii_digit()) {
                let e = ParseError::new(format!(
                    "`{}`: numbers here are never negative",
                    quoted(tok)
                ))
                .with_token(tok);
                return Err(match usage {
                    Some(u) => e.with_usage(u),
                    None => e,
                });
            }
            if tok == "--help" || tok == "-h" {
                // kubectl habit: `scale --help`.
                let topic = cmd.map(|c| c.name).or(group.map(|g| g.name));
                return Ok(Command {
                    cluster: None,
                    namespace: None,
                    op: crate::command::Op::Help {
                        command: topic.map(str::to_owned),
                    },
                });
            }
            let (flag, inline) = split_flag(tok);
            let with_usage = |e: ParseError| match &usage {
                Some(u) => e.with_usage(u.clone()),
                None => e,
            };
            if let Some(g) = GLOBAL_FLAGS.iter().find(|f| f.matches(flag)) {
                let raw = take_value(g.ty, g.placeholder, flag, inline, tokens, &mut i)
                    .map_err(with_usage)?;
                let value = parse_value(g.ty, g.placeholder, raw).map_err(with_usage)?;
                let Value::Str(value) = value else {
                    continue;
                };
                let slot = if g.name == "namespace" {
                    &mut namespace
                } else {
                    &mut cluster
                };
                if slot.is_some() {
                    return Err(with_usage(
                        ParseError::new(format!("--{} is given twice", g.name)).with_token(tok),
                    ));
                }
                *slot = Some(value);
                continue;
            }
            let Some(c) = cmd else {
                return Err(match group {
                    Some(g) => missing_subcommand(g),
                    None => ParseError::new(format!(
                        "unknown option `{flag}`: only -n/--namespace and --cluster may come \
                         before the command"
                    ))
                    .with_token(tok),
                });
            };
            let (name, ty, placeholder) = if let Some(f) = c.find_flag(flag) {
                (f.name, f.ty, f.placeholder)
            } else if let Some(a) = c.find_arg_flag(flag) {
                (a.name, a.ty, a.placeholder)
            } else if spec::kubectl_layout_flag(c.name, flag, inline.or(tokens.get(i).copied())) {
                // Runbook lines as written: kubectl's layout options change nothing opsbot
                // answers, so they are taken and dropped (with their value).
                if inline.is_none() {
                    i += 1;
                }
                continue;
            } else {
                let why = spec::kubectl_only_flag(c.name, flag);
                let suggestion = nearest(flag, c.flag_names().iter().map(String::as_str))
                    .filter(|_| why.is_none());
                let hint = match (why, &suggestion) {
                    (Some(why), _) => format!(": {why}"),
                    (None, Some(s)) => format!("; did you mean `{s}`?"),
                    (None, None) => String::new(),
                };
                return Err(with_usage(
                    ParseError::new(format!(
                        "`{}` has no option `{}`{hint}",
                        c.name,
                        quoted(flag)
                    ))
                    .with_token(tok)
                    .with_suggestion(suggestion),
                ));
            };
            let mut raw = take_value(ty, placeholder, flag, inline, tokens, &mut i)
                .map_err(with_usage)?
                .to_owned();
            if let ValueType::Words { .. } = ty {
                while let Some(next) = tokens.get(i).filter(|t| !is_flag(t)) {
                    raw.push(' ');
                    raw.push_str(next);
                    i += 1;
                }
            }
            let value = parse_value(ty, placeholder, &raw).map_err(with_usage)?;
            // As typed, with its value: `--min 3`, `--min=3`, `--force`.
            let typed = if inline.is_some() || ty == ValueType::Bool {
                tok.to_owned()
            } else {
                format!("{tok} {raw}")
            };
            if let Some((_, first)) = given.iter().find(|(n, _)| *n == name) {
                return Err(with_usage(
                    ParseError::new(format!(
                        "{placeholder_or_name} is given twice (`{}` and `{}`)",
                        quoted(first),
                        quoted(&typed),
                        placeholder_or_name = display_name(name, placeholder)
                    ))
                    .with_token(tok),
                ));
            }
            given.push((name, typed));
            matches.insert(name, value);
            continue;
        }
        match (cmd, group) {
            (Some(_), _) => positionals.push(tok),
            (None, Some(g)) => match spec::find_command(Some(g.name), tok) {
                Some(c) => cmd = Some(c),
                None => {
                    let names: Vec<&str> = spec::group_commands(g.name)
                        .flat_map(|c| std::iter::once(c.word()).chain(c.aliases.iter().copied()))
                        .collect();
                    let suggestion = nearest(tok, names.iter().copied())
                        .and_then(|w| spec::find_command(Some(g.name), &w))
                        .map(|c| c.name.to_owned());
                    return Err(unknown_command(
                        &format!("{} {tok}", g.name),
                        tok,
                        suggestion,
                    ));
                }
            },
            (None, None) => {
                if let Some(c) = spec::find_command(None, tok) {
                    cmd = Some(c);
                } else if let Some(g) = spec::find_group(tok) {
                    group = Some(g);
                } else {
                    let suggestion = nearest(tok, spec::top_level_names().into_iter())
                        .and_then(|w| spec::resolve_topic(&[w.as_str()]));
                    return Err(unknown_command(tok, tok, suggestion));
                }
            }
        }
    }

    let Some(c) = cmd else {
        if let Some(g) = group {
            return Err(missing_subcommand(g));
        }
        if namespace.is_none() && cluster.is_none() {
            return Ok(Command {
                cluster,
                namespace,
                op: crate::command::Op::Help { command: None },
            });
        }
        return Err(ParseError::new("missing command: try `help`"));
    };
    let usage = c.usage();

    // Positional arguments, in declaration order.
    let mut rest = positionals.into_iter().peekable();
    for a in c.args {
        let Some(tok) = rest.next() else { break };
        if a.ty == ValueType::Topic {
            let mut words = vec![tok];
            words.extend(rest.by_ref());
            let value = parse_topic(&words).map_err(|e| e.with_usage(usage.clone()))?;
            matches.insert(a.name, value);
            continue;
        }
        if let ValueType::Words { .. } = a.ty {
            let mut words = vec![tok];
            words.extend(rest.by_ref());
            let value = parse_value(a.ty, a.placeholder, &words.join(" "))
                .map_err(|e| e.with_usage(usage.clone()))?;
            matches.insert(a.name, value);
            continue;
        }
        if let Some((_, first)) = given.iter().find(|(n, _)| *n == a.name) {
            return Err(ParseError::new(format!(
                "{} is given twice (`{first}` and `{tok}`)",
                a.placeholder
            ))
            .with_token(tok)
            .with_usage(usage));
        }
        // kubectl's `KIND NAME` (`rollout restart deployment envoy`) is `KIND/NAME`; a kind
        // on its own names nothing (kubectl would take every object of the kind).
        let joined;
        let tok = match rest.peek() {
            Some(name) if !tok.contains('/') && is_kind_word(a.ty, tok) => {
                joined = format!("{tok}/{name}");
                rest.next();
                joined.as_str()
            }
            None if !tok.contains('/') && is_kind_word(a.ty, tok) => {
                return Err(ParseError::new(format!(
                    "`{}` is a kind, not a name (in kubectl it would mean every one): name one, \
                     as in `{} {tok}/NAME`",
                    quoted(tok),
                    c.name
                ))
                .with_token(tok)
                .with_usage(usage));
            }
            _ => tok,
        };
        let value =
            parse_value(a.ty, a.placeholder, tok).map_err(|e| e.with_usage(usage.clone()))?;
        given.push((a.name, tok.to_owned()));
        matches.insert(a.name, value);
    }
    if let Some(extra) = rest.next() {
        return Err(ParseError::new(format!(
            "unexpected argument `{extra}`: `{}` takes {}",
            c.name,
            describe_args(c.args)
        ))
        .with_token(extra)
        .with_usage(usage));
    }
    if let Some(a) = c
        .args
        .iter()
        .find(|a| a.required && !matches.contains(a.name))
    {
        return Err(ParseError::new(format!("missing {}", a.placeholder)).with_usage(usage));
    }
    let op = (c.build)(&mut matches).map_err(|e| e.with_usage(usage))?;
    Ok(Command {
        cluster,
        namespace,
        op,
    })
}

fn display_name(name: &str, placeholder: &str) -> String {
    if placeholder.is_empty() {
        format!("--{name}")
    } else {
        format!("--{name} {placeholder}")
    }
}

fn describe_args(args: &[ArgSpec]) -> String {
    match args.len() {
        0 => "no arguments".to_owned(),
        _ => args
            .iter()
            .map(|a| a.placeholder)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn missing_subcommand(g: &spec::Group) -> ParseError {
    let subs: Vec<&str> = spec::group_commands(g.name).map(|c| c.word()).collect();
    let usage: Vec<String> = spec::group_commands(g.name).map(|c| c.usage()).collect();
    ParseError::new(format!(
        "`{}` needs a subcommand: {}",
        g.name,
        subs.join(" or ")
    ))
    .with_token(g.name)
    .with_usage(usage.join("\n"))
}

fn unknown_command(what: &str, tok: &str, suggestion: Option<String>) -> ParseError {
    let hint = match &suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => "; `help` lists the commands".to_owned(),
    };
    let usage = suggestion
        .as_deref()
        .and_then(spec::find)
        .map(|c| c.usage());
    let mut e = ParseError::new(format!("unknown command `{}`{hint}", quoted(what)))
        .with_token(tok)
        .with_suggestion(suggestion);
    e.usage = usage;
    e
}

/// The value of a flag: inline (`--tail=5`), the next token, or `true` for a bool flag.
fn take_value<'a>(
    ty: ValueType,
    placeholder: &str,
    typed: &str,
    inline: Option<&'a str>,
    tokens: &[&'a str],
    i: &mut usize,
) -> Result<&'a str, ParseError> {
    if ty == ValueType::Bool {
        return Ok(inline.unwrap_or("true"));
    }
    if let Some(v) = inline {
        return Ok(v);
    }
    match tokens.get(*i) {
        // `--comment --for 2h`: the next option is no value (`--for` was given, not missing).
        Some(v) if v.len() > 2 && v.starts_with("--") => Err(ParseError::new(format!(
            "`{typed}` needs a value before `{}`: {typed} {placeholder}",
            quoted(v)
        ))
        .with_token(typed)),
        Some(v) => {
            *i += 1;
            Ok(v)
        }
        None => Err(
            ParseError::new(format!("`{typed}` needs a value: {typed} {placeholder}"))
                .with_token(typed),
        ),
    }
}

/// The nearest of `candidates` to what the user typed, if any is near enough.
pub fn nearest<'a>(typed: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let typed = typed.to_lowercase();
    if typed.is_empty() || typed.chars().count() > 64 {
        return None;
    }
    let bare = typed.trim_start_matches('-');
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let cbare = c.trim_start_matches('-');
        let d = if !bare.is_empty() && cbare.starts_with(bare) {
            // A prefix (`rest` for `restart`, `--dry` for `--dry-run`) is as good as one typo.
            1
        } else {
            strsim::damerau_levenshtein(bare, cbare)
        };
        let limit = (cbare.chars().count() / 3).max(1) + 1;
        if d > 0 && d <= limit.min(3) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

fn parse_topic(words: &[&str]) -> Result<Value, ParseError> {
    let words: Vec<&str> = words.iter().flat_map(|w| w.split_whitespace()).collect();
    if let Some(t) = spec::resolve_topic(&words) {
        return Ok(Value::Str(t));
    }
    let typed = words.join(" ");
    // Suggest on the word that went wrong.
    let suggestion = match words.as_slice() {
        [group, sub, ..] if spec::find_group(group).is_some() => {
            let g = spec::find_group(group).map_or("", |g| g.name);
            let names: Vec<&str> = spec::group_commands(g).map(|c| c.word()).collect();
            nearest(sub, names.into_iter()).map(|w| format!("{g} {w}"))
        }
        [first, ..] => nearest(first, spec::top_level_names().into_iter())
            .and_then(|w| spec::resolve_topic(&[w.as_str()])),
        [] => None,
    };
    let hint = match &suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => "; `help` lists the commands".to_owned(),
    };
    Err(
        ParseError::new(format!("there is no command `{}`{hint}", quoted(&typed)))
            .with_token(typed)
            .with_suggestion(suggestion),
    )
}

/// The values an integer may take, as help and errors say it: `1 to 1000`, or `1 or more` when
/// the bound is one nobody types (a revision's is 2^63 - 1).
pub fn int_range(min: u64, max: u64) -> String {
    match max >= i64::MAX as u64 {
        true => format!("{min} or more"),
        false => format!("{min} to {max}"),
    }
}

/// Parses one value of type `ty`; `what` is its placeholder (`NAME`, `N`).
pub fn parse_value(ty: ValueType, what: &str, raw: &str) -> Result<Value, ParseError> {
    let err = |msg: String| ParseError::new(msg).with_token(raw);
    let shown = quoted(raw);
    match ty {
        ValueType::DnsLabel => check_dns(raw, what, false).map(Value::Str),
        ValueType::Name { prefixes } => {
            let name = strip_prefix(raw, prefixes, what)?;
            check_dns(name, what, true).map(Value::Str)
        }
        ValueType::Workload => parse_workload(raw).map(Value::Workload),
        ValueType::LogSource => parse_log_source(raw).map(Value::Str),
        ValueType::Int { min, max } => {
            let range = int_range(min, max);
            let n: u64 = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
                raw.parse()
                    .map_err(|_| err(format!("`{shown}` is too large: {what} is {range}")))?
            } else {
                return Err(err(format!(
                    "`{shown}` is not a number: {what} is a whole number, {range}"
                )));
            };
            // Above a bound too large to name ("1 or more"): say so, not "out of range".
            if n > max && max >= i64::MAX as u64 {
                return Err(err(format!(
                    "`{shown}` is too large: {what} is at most {max}"
                )));
            }
            if n < min || n > max {
                return Err(err(format!("`{shown}` is out of range: {what} is {range}")));
            }
            Ok(Value::Int(n))
        }
        ValueType::Duration { max_secs } => {
            let d = parse_duration(raw).map_err(|m| err(format!("`{shown}` {m}")))?;
            if d.as_secs() > max_secs {
                return Err(err(format!(
                    "`{shown}` is too long: at most {}",
                    format_duration(Duration::from_secs(max_secs))
                )));
            }
            Ok(Value::Duration(d))
        }
        ValueType::Person => crate::incident::parse_person(raw)
            .map(Value::Str)
            .ok_or_else(|| {
                err(format!(
                    "`{shown}` is not a person: mention them (@name), or write `me`"
                ))
            }),
        ValueType::IncidentId => crate::incident::parse_incident_id(raw)
            .map(Value::Int)
            .ok_or_else(|| err(format!("`{shown}` is not an incident: write e.g. INC-42"))),
        ValueType::Text { max_chars } | ValueType::Words { max_chars } => {
            if raw.trim().is_empty() {
                return Err(err(format!("{what} is empty")));
            }
            if raw.chars().any(char::is_control) {
                return Err(err(format!(
                    "{what} must be one line without control characters"
                )));
            }
            let n = raw.chars().count();
            if n > max_chars {
                return Err(err(format!(
                    "{what} is too long ({n} characters; at most {max_chars})"
                )));
            }
            Ok(Value::Str(raw.to_owned()))
        }
        ValueType::Selector => {
            let ok = |c: char| c.is_ascii_alphanumeric() || "-_./=!,() ".contains(c);
            if raw.trim().is_empty() {
                return Err(err("the label selector is empty".to_owned()));
            }
            if raw.len() > SELECTOR_MAX {
                return Err(err(format!(
                    "the label selector is too long (at most {SELECTOR_MAX} characters)"
                )));
            }
            if let Some(bad) = raw.chars().find(|c| !ok(*c)) {
                return Err(err(format!(
                    "`{shown}` is not a label selector: `{bad}` is not allowed (e.g. app=web,tier!=cache)"
                )));
            }
            // As the API server parses it: a malformed one is the typist's parse error, not a
            // refusal after the policy.
            if crate::ops::selector::Selector::parse(raw).is_none() {
                return Err(err(format!(
                    "`{shown}` is not a label selector: requirements are KEY, !KEY, KEY=VALUE, \
                     KEY!=VALUE, KEY in (V, …) or KEY notin (V, …), separated by commas (e.g. \
                     app=web,tier!=cache)"
                )));
            }
            Ok(Value::Str(raw.to_owned()))
        }
        ValueType::Cluster => {
            let ok = |c: char| c.is_ascii_alphanumeric() || "-_.:@/".contains(c);
            if raw.is_empty() || raw.len() > 253 || raw.starts_with('-') || !raw.chars().all(ok) {
                return Err(err(format!(
                    "`{shown}` is not a cluster name: use letters, digits and `-_.:@/`"
                )));
            }
            Ok(Value::Str(raw.to_owned()))
        }
        ValueType::Choice(words) => match words.iter().find(|w| w.eq_ignore_ascii_case(raw)) {
            Some(w) => Ok(Value::Str((*w).to_owned())),
            None => Err(err(format!(
                "`{shown}` is not a valid {what}: use {}",
                words.join(", ")
            ))
            .with_suggestion(nearest(raw, words.iter().copied()))),
        },
        ValueType::Topic => parse_topic(&[raw]),
        ValueType::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(err(format!("`{shown}` is not true or false"))),
        },
    }
}

fn strip_prefix<'a>(raw: &'a str, prefixes: &[&str], what: &str) -> Result<&'a str, ParseError> {
    match raw.split_once('/') {
        None => Ok(raw),
        Some((kind, name)) => {
            if prefixes.iter().any(|p| p.eq_ignore_ascii_case(kind)) {
                Ok(name)
            } else {
                let hint = match prefixes.first() {
                    Some(p) => format!(
                        "write {what}, or {p}/{what} (also {})",
                        prefixes[1..]
                            .iter()
                            .map(|p| format!("{p}/"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => format!("write {what} without a kind"),
                };
                Err(
                    ParseError::new(format!("`{kind}/` is not accepted here: {hint}"))
                        .with_token(raw),
                )
            }
        }
    }
}

/// How a deployment's kind is written before its name (`deploy/api`, `deployment api`).
const DEPLOYMENT_WORDS: &[&str] = &["deploy", "deployment", "deployments", "deployment.apps"];
/// How a statefulset's kind is written before its name.
const STATEFULSET_WORDS: &[&str] = &["sts", "statefulset", "statefulsets", "statefulset.apps"];
/// How a pod's kind is written before its name.
const POD_WORDS: &[&str] = &["pod", "pods", "po"];

fn is_one_of(word: &str, words: &[&str]) -> bool {
    words.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether `word` is a kind that a value of type `ty` may be prefixed with (`KIND/NAME`).
pub(crate) fn is_kind_word(ty: ValueType, word: &str) -> bool {
    let workload = || is_one_of(word, DEPLOYMENT_WORDS) || is_one_of(word, STATEFULSET_WORDS);
    match ty {
        ValueType::Workload => workload(),
        ValueType::LogSource => workload() || is_one_of(word, POD_WORDS),
        ValueType::Name { prefixes } => is_one_of(word, prefixes),
        _ => false,
    }
}

fn parse_workload(raw: &str) -> Result<Workload, ParseError> {
    let (kind, name) = match raw.split_once('/') {
        None => (WorkloadKind::Deployment, raw),
        Some((k, name)) => {
            let kind = if is_one_of(k, DEPLOYMENT_WORDS) {
                WorkloadKind::Deployment
            } else if is_one_of(k, STATEFULSET_WORDS) {
                WorkloadKind::StatefulSet
            } else {
                return Err(ParseError::new(format!(
                    "`{raw}` is not a deployment or statefulset: use deploy/NAME, sts/NAME or NAME"
                ))
                .with_token(raw));
            };
            (kind, name)
        }
    };
    let name = check_dns(name, "NAME", true)?;
    Ok(Workload { kind, name })
}

/// `logs`' NAME, canonical: `x` (a deployment), `statefulset/x` or `pod/x`.
fn parse_log_source(raw: &str) -> Result<String, ParseError> {
    if let Some((kind, name)) = raw.split_once('/') {
        if is_one_of(kind, POD_WORDS) {
            return check_dns(name, "NAME", true).map(|name| format!("pod/{name}"));
        }
        if !is_kind_word(ValueType::Workload, kind) {
            return Err(ParseError::new(format!(
                "`{raw}` is not a deployment, statefulset or pod: use NAME (a deployment), \
                 sts/NAME or pod/NAME"
            ))
            .with_token(raw));
        }
    }
    let w = parse_workload(raw)?;
    Ok(match w.kind {
        WorkloadKind::Deployment => w.name,
        WorkloadKind::StatefulSet => w.resource(),
    })
}

/// What someone typed, as an error quotes it: secrets masked, control and direction-changing
/// characters shown as escapes (an answer must not carry a terminal escape or turn text
/// around), then at most 80 characters (a long token is elided with `…`, so an answer never
/// repeats a pasted wall of text). Masked first: a secret cut short no longer looks like one.
fn quoted(typed: &str) -> String {
    let masked: String = crate::ops::mask_secrets(typed)
        .chars()
        .flat_map(|c| {
            let hidden = c.is_control()
                || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            let shown: Vec<char> = if hidden {
                c.escape_unicode().collect()
            } else {
                vec![c]
            };
            shown
        })
        .collect();
    match masked.char_indices().nth(77) {
        Some((cut, _)) if masked.chars().count() > 80 => format!("{}…", &masked[..cut]),
        _ => masked,
    }
}

/// Checks a Kubernetes DNS-1123 label (`subdomain == false`: namespaces, containers) or
/// subdomain (resource names).
pub fn check_dns(s: &str, what: &str, subdomain: bool) -> Result<String, ParseError> {
    fn label_ok(l: &str) -> bool {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    }
    let ok = if subdomain {
        s.len() <= 253 && s.split('.').all(label_ok)
    } else {
        label_ok(s)
    };
    if ok {
        return Ok(s.to_owned());
    }
    let kind = if subdomain {
        "lowercase letters, digits, `-` and `.`, at most 253 characters"
    } else {
        "lowercase letters, digits and `-`, at most 63 characters"
    };
    let lower = s.to_lowercase();
    let suggestion =
        (lower != s && check_dns(&lower, what, subdomain).is_ok()).then_some(lower.clone());
    let shown = quoted(s);
    let hint = match &suggestion {
        Some(l) => format!(" (did you mean `{l}`?)"),
        None => String::new(),
    };
    Err(ParseError::new(format!(
        "`{shown}` is not a valid {what}: Kubernetes names are {kind}, starting and ending with \
         a letter or digit{hint}"
    ))
    .with_token(s)
    .with_suggestion(suggestion))
}

/// Parses `30s`, `15m`, `1h`, `2d` or combinations such as `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    if s.is_empty() {
        return Err("is not a duration: use e.g. 30s, 15m, 1h");
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d)))
                .ok_or("is too long")?;
            num = Some(n);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err("is not a duration: use a number and s, m, h or d, e.g. 30s, 15m, 1h"),
        };
        let n = num
            .take()
            .ok_or("is not a duration: use e.g. 30s, 15m, 1h")?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or("is too long")?;
    }
    if num.is_some() {
        return Err("needs a unit: e.g. 30s, 15m, 1h");
    }
    if total == 0 {
        return Err("is zero: use e.g. 30s, 15m, 1h");
    }
    Ok(Duration::from_secs(total))
}

/// The canonical text of a duration: `1h30m`, `45s`, `2d`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// Quotes a word for the command line when it is not plain ASCII.
fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:@,+=".contains(c);
    if !s.is_empty() && s.chars().all(plain) && !s.starts_with('-') {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => quote(s),
        Value::Workload(w) => w.resource(),
        Value::Int(n) => n.to_string(),
        Value::Duration(d) => format_duration(*d),
        Value::Bool(b) => b.to_string(),
    }
}

impl Command {
    /// The canonical text of this command; `parse(&cmd.to_text()) == Ok(cmd)` for every command
    /// `parse` can produce.
    pub fn to_text(&self) -> String {
        let Some(spec) = spec::spec_of(&self.op) else {
            return String::new();
        };
        let values = (spec.render)(&self.op).unwrap_or_default();
        let mut words: Vec<String> = vec![spec.name.to_owned()];
        for a in spec.args {
            if let Some((_, v)) = values.iter().find(|(n, _)| *n == a.name) {
                match (a.ty, v) {
                    // A help topic is one or two command words.
                    (ValueType::Topic, Value::Str(s)) => words.push(s.clone()),
                    _ => words.push(value_text(v)),
                }
            }
        }
        for f in spec.flags {
            match values.iter().find(|(n, _)| *n == f.name) {
                Some((_, Value::Bool(true))) => words.push(format!("--{}", f.name)),
                Some((_, Value::Bool(false))) | None => {}
                Some((_, v)) => {
                    words.push(format!("--{}", f.name));
                    words.push(value_text(v));
                }
            }
        }
        if let Some(ns) = &self.namespace {
            words.push("-n".to_owned());
            words.push(quote(ns));
        }
        if let Some(c) = &self.cluster {
            words.push("--cluster".to_owned());
            words.push(quote(c));
        }
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("2d"), Ok(172_800));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("90m"), Ok(5400));
        assert!(secs("").is_err());
        assert!(secs("30").is_err());
        assert!(secs("h").is_err());
        assert!(secs("1w").is_err());
        assert!(secs("-1h").is_err());
        assert!(secs("0m").is_err());
        assert!(secs("99999999999999999999d").is_err());
        assert!(secs("999999999999999999d").is_err());
        for s in [
            1, 59, 60, 61, 3599, 3600, 5400, 86_399, 86_400, 90_061, 2_592_000,
        ] {
            let d = Duration::from_secs(s);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(90_061)), "1d1h1m1s");
    }

    #[test]
    fn dns_names() {
        assert!(check_dns("api", "NAME", false).is_ok());
        assert!(check_dns("a-1", "NAME", false).is_ok());
        assert!(check_dns(&"a".repeat(63), "NAME", false).is_ok());
        assert!(check_dns(&"a".repeat(64), "NAME", false).is_err());
        assert!(check_dns("a.b", "NAME", false).is_err());
        assert!(check_dns("a.b", "NAME", true).is_ok());
        assert!(check_dns("a..b", "NAME", true).is_err());
        assert!(check_dns(".a", "NAME", true).is_err());
        assert!(check_dns("-a", "NAME", true).is_err());
        assert!(check_dns("", "NAME", true).is_err());
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(check_dns(&long, "NAME", true).is_err());
        assert_eq!(
            check_dns("Api", "NAME", true).unwrap_err().suggestion,
            Some("api".to_owned())
        );
    }

    #[test]
    fn quoting() {
        for s in [
            "a", "a b", "it's", "-x", "", "#x", "ü", "\"", "\\", "$(x)", "a=b",
        ] {
            assert_eq!(shell_words::split(&quote(s)), Ok(vec![s.to_owned()]), "{s}");
        }
    }

    #[test]
    fn choices() {
        let ty = ValueType::Choice(&["sev1", "sev2"]);
        assert_eq!(
            parse_value(ty, "SEVERITY", "SEV1"),
            Ok(Value::Str("sev1".into()))
        );
        let e = parse_value(ty, "SEVERITY", "sev3").unwrap_err();
        assert_eq!(e.message, "`sev3` is not a valid SEVERITY: use sev1, sev2");
        assert_eq!(e.suggestion.as_deref(), Some("sev1"));
    }

    #[test]
    fn suggestions() {
        let names = ["status", "scale", "restart", "rollback"];
        assert_eq!(
            nearest("restrat", names.into_iter()).as_deref(),
            Some("restart")
        );
        assert_eq!(
            nearest("rest", names.into_iter()).as_deref(),
            Some("restart")
        );
        // Flags are case-sensitive: `--Tail` is suggested `--tail`.
        assert_eq!(
            nearest("SCALE", names.into_iter()).as_deref(),
            Some("scale")
        );
        assert_eq!(
            nearest("--Tail", ["--tail"].into_iter()).as_deref(),
            Some("--tail")
        );
        assert_eq!(nearest("kubectl", names.into_iter()), None);
        assert_eq!(nearest("", names.into_iter()), None);
    }
}
