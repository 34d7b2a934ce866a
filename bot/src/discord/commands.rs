//! The `/ops` application command, generated from the one declaration table
//! (`opsbot_commands::spec`), its registration, the install URL, and autocomplete.
//!
//! Every command becomes a subcommand with typed options (integers with their bounds, choices
//! for fixed sets, autocomplete for names of deployments, statefulsets, cronjobs, namespaces and
//! clusters); a group such as `backup` becomes a subcommand group. `/ops run command:"…"` takes
//! the text form, so Slack habits carry over. Both forms are parsed by the same grammar
//! ([`invocation_text`]), so they yield the same `Command`.
//!
//! Autocomplete answers from the cluster within Discord's 3 seconds: one list call with a
//! short timeout, results cached briefly per (kind, cluster, namespace) and cut to 25.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use opsbot_commands::Operator;
use opsbot_commands::spec::{self, AppCommand, AppOption, OptionKind, OptionValue, ValueType};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::channels::bits as channels;
use super::rest::{Auth, Call, DiscordRest};
use crate::chat::DeliveryError;

/// The root command's name.
pub const ROOT: &str = "ops";
/// The free-text subcommand and its option.
pub const RUN: &str = "run";
pub const RUN_OPTION: &str = "command";
/// Discord's cap on choices and autocomplete answers.
pub const MAX_CHOICES: usize = 25;
/// Largest integer Discord accepts as an option bound.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// The bot's permissions, exactly what the REST calls need:
/// - View Channel, Send Messages, Embed Links: answers, approval cards, progress (embeds);
/// - Manage Channels: incident channels — create them, set their topic, move them to the
///   archive category (`discord::channels`);
/// - Manage Roles (Manage Permissions on a channel): invite responders to an incident channel
///   and make it read-only when it is archived (permission overwrites);
/// - Pin Messages: pin the incident card (since February 2026 Manage Messages no longer lets
///   a bot pin, and opsbot deletes nobody's messages, so it does not ask for Manage Messages).
pub const PERMISSIONS: u64 = channels::VIEW_CHANNEL
    | channels::SEND_MESSAGES
    | channels::EMBED_LINKS
    | channels::MANAGE_CHANNELS
    | channels::MANAGE_ROLES
    | channels::PIN_MESSAGES;

/// What a name option is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// Deployments, and statefulsets as `sts/NAME`.
    Workload,
    Deployment,
    CronJob,
    Namespace,
    Cluster,
}

/// The kind of names an option of command `path` takes, if it is autocompleted.
pub fn name_kind(path: &[&str], option: &str) -> Option<NameKind> {
    let command = spec::find(&path.join(" "))?;
    let ty = command
        .args
        .iter()
        .find(|a| a.name == option)
        .map(|a| a.ty)
        .or_else(|| {
            command
                .flags
                .iter()
                .chain(spec::GLOBAL_FLAGS)
                .find(|f| f.name == option)
                .map(|f| f.ty)
        })?;
    match ty {
        ValueType::Workload => Some(NameKind::Workload),
        ValueType::Cluster => Some(NameKind::Cluster),
        ValueType::DnsLabel if option == "namespace" => Some(NameKind::Namespace),
        ValueType::Name { prefixes } => match prefixes.first() {
            Some(&"deploy") => Some(NameKind::Deployment),
            Some(&"cj") => Some(NameKind::CronJob),
            _ => None,
        },
        _ => None,
    }
}

fn option_json(path: &[&str], o: &AppOption) -> Value {
    let kind = match o.kind {
        OptionKind::String => 3,
        OptionKind::Integer => 4,
        OptionKind::Boolean => 5,
    };
    let mut v = json!({
        "type": kind,
        "name": o.name,
        "description": o.description,
        "required": o.required,
    });
    if let Some(min) = o.min {
        v["min_value"] = min.min(MAX_SAFE_INTEGER).into();
    }
    if let Some(max) = o.max {
        v["max_value"] = max.min(MAX_SAFE_INTEGER).into();
    }
    if let Some(n) = o.max_length {
        v["max_length"] = n.min(6000).into();
    }
    if !o.choices.is_empty() && o.choices.len() <= MAX_CHOICES {
        v["choices"] = o
            .choices
            .iter()
            .map(|c| json!({ "name": c, "value": c }))
            .collect();
    } else if name_kind(path, &o.name).is_some() {
        v["autocomplete"] = true.into();
    }
    v
}

fn subcommand_json(path: &[&str], c: &AppCommand) -> Value {
    let mut path = path.to_vec();
    path.push(&c.name);
    if c.subcommands.is_empty() {
        json!({
            "type": 1,
            "name": c.name,
            "description": c.description,
            "options": c.options.iter().map(|o| option_json(&path, o)).collect::<Vec<_>>(),
        })
    } else {
        json!({
            "type": 2,
            "name": c.name,
            "description": c.description,
            "options": c.subcommands.iter().map(|s| subcommand_json(&path, s)).collect::<Vec<_>>(),
        })
    }
}

/// The `/ops` chat-input command as Discord's application-command JSON (guild-only).
pub fn ops_command() -> Value {
    let root = spec::app_commands();
    let mut options: Vec<Value> = root
        .subcommands
        .iter()
        .map(|s| subcommand_json(&[], s))
        .collect();
    options.push(json!({
        "type": 1,
        "name": RUN,
        "description": "Type a command as text, e.g. scale conea-api 5 -n production",
        "options": [{
            "type": 3,
            "name": RUN_OPTION,
            "description": "The command line, as after /ops in Slack",
            "required": true,
            "max_length": 2000,
        }],
    }));
    json!({
        "type": 1,
        "name": ROOT,
        "description": root.description,
        "contexts": [0],
        "integration_types": [0],
        "options": options,
    })
}

/// An option of an interaction's command data (subcommands nest their options).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CommandOption {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub options: Vec<CommandOption>,
    #[serde(default)]
    pub focused: bool,
}

/// The subcommand path (`["backup", "run"]`) and the leaf options of an invocation.
pub fn flatten(options: &[CommandOption]) -> (Vec<&str>, &[CommandOption]) {
    let mut path = Vec::new();
    let mut leaf = options;
    while let [only] = leaf {
        if only.kind != 1 && only.kind != 2 {
            break;
        }
        path.push(only.name.as_str());
        leaf = &only.options;
    }
    (path, leaf)
}

fn option_value(v: &Value) -> Option<OptionValue> {
    match v {
        Value::Bool(b) => Some(OptionValue::Boolean(*b)),
        Value::Number(n) => n.as_i64().map(OptionValue::Integer),
        Value::String(s) => Some(OptionValue::String(s.clone())),
        _ => None,
    }
}

/// The command line an invocation stands for, parsed by the same grammar as typed text:
/// `/ops run command:"…"` is that text; typed options become the canonical text of the command
/// they parse to (or, when they do not parse, the words themselves, so the engine reports the
/// same error as for typed text).
pub fn invocation_text(options: &[CommandOption]) -> String {
    let (path, leaf) = flatten(options);
    if path == [RUN] {
        return leaf
            .iter()
            .find(|o| o.name == RUN_OPTION)
            .and_then(|o| o.value.as_ref()?.as_str())
            .unwrap_or("")
            .trim()
            .to_owned();
    }
    let values: Vec<(&str, OptionValue)> = leaf
        .iter()
        .filter_map(|o| Some((o.name.as_str(), option_value(o.value.as_ref()?)?)))
        .collect();
    let tokens = spec::invocation_tokens(&path, &values);
    match opsbot_commands::parse_tokens(&tokens) {
        Ok(cmd) => cmd.to_text(),
        Err(_) => shell_words::join(&tokens),
    }
}

// ---------------------------------------------------------------------------------------------
// Autocomplete
// ---------------------------------------------------------------------------------------------

/// Where autocomplete finds names.
#[async_trait]
pub trait NameSource: Send + Sync + 'static {
    /// Names of `kind` in `cluster` (default when `None`) and `namespace` (the cluster's default
    /// when `None`), in any order.
    async fn names(
        &self,
        kind: NameKind,
        cluster: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Vec<String>, String>;
}

/// The autocomplete answer for `typed`: names starting with it first, then containing it,
/// at most 25.
pub fn choices(names: &[String], typed: &str) -> Vec<Value> {
    let typed = typed.trim().to_lowercase();
    let mut starts: Vec<&String> = names.iter().filter(|n| n.starts_with(&typed)).collect();
    let mut contains: Vec<&String> = names
        .iter()
        .filter(|n| !n.starts_with(&typed) && n.contains(&typed))
        .collect();
    starts.sort();
    contains.sort();
    starts
        .into_iter()
        .chain(contains)
        .take(MAX_CHOICES)
        .map(|n| json!({ "name": n, "value": n }))
        .collect()
}

/// Names from the clusters the engine operates, cached for [`CACHE_TTL`].
pub struct ClusterNames {
    operator: Operator,
    timeout: Duration,
    cache: Mutex<HashMap<CacheKey, (Instant, Vec<String>)>>,
}

/// (kind, cluster, namespace).
type CacheKey = (NameKind, String, String);

/// How long names are reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most.
const CACHE_MAX: usize = 512;
/// Objects listed at most per call.
const LIST_LIMIT: u32 = 500;

impl ClusterNames {
    pub fn new(operator: Operator, timeout: Duration) -> Self {
        ClusterNames {
            operator,
            timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The names of (at most [`LIST_LIMIT`]) objects `api` lists.
    async fn names_in<K>(api: kube::Api<K>) -> Result<Vec<String>, String>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let list = api
            .list_metadata(&kube::api::ListParams::default().limit(LIST_LIMIT))
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect())
    }
}

#[async_trait]
impl NameSource for ClusterNames {
    async fn names(
        &self,
        kind: NameKind,
        cluster: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Vec<String>, String> {
        use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
        use k8s_openapi::api::batch::v1::CronJob;
        use k8s_openapi::api::core::v1::Namespace;
        use kube::Api;

        let clusters = &self.operator.clusters;
        if kind == NameKind::Cluster {
            return Ok(clusters.names().map(str::to_owned).collect());
        }
        let (client, default_ns) = clusters
            .get(cluster)
            .ok_or_else(|| "no such cluster".to_owned())?;
        let ns = namespace.unwrap_or(default_ns).to_owned();
        let key = (kind, cluster.unwrap_or("").to_owned(), ns.clone());
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, names)) = cache.get(&key)
                && at.elapsed() < CACHE_TTL
            {
                return Ok(names.clone());
            }
        }
        let (c, ns) = (client.clone(), ns.as_str());
        let work = async {
            match kind {
                NameKind::Deployment => Self::names_in(Api::<Deployment>::namespaced(c, ns)).await,
                NameKind::CronJob => Self::names_in(Api::<CronJob>::namespaced(c, ns)).await,
                NameKind::Workload => {
                    let mut names =
                        Self::names_in(Api::<Deployment>::namespaced(c.clone(), ns)).await?;
                    let sts = Self::names_in(Api::<StatefulSet>::namespaced(c, ns)).await?;
                    names.extend(sts.into_iter().map(|n| format!("sts/{n}")));
                    Ok(names)
                }
                NameKind::Namespace => Self::names_in(Api::<Namespace>::all(c)).await,
                NameKind::Cluster => Ok(Vec::new()),
            }
        };
        let names = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| "the cluster did not answer in time".to_owned())??;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), names.clone()));
        Ok(names)
    }
}

// ---------------------------------------------------------------------------------------------
// Registration and installation
// ---------------------------------------------------------------------------------------------

/// What a registration changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created(String),
    Updated(String),
    Unchanged(String),
    Removed(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Created(n) => write!(f, "created /{n}"),
            Change::Updated(n) => write!(f, "updated /{n}"),
            Change::Unchanged(n) => write!(f, "unchanged /{n}"),
            Change::Removed(n) => write!(f, "removed /{n}"),
        }
    }
}

/// The fields Discord echoes back that opsbot sets, for comparing with what is registered.
fn comparable(c: &Value) -> Value {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, v)| {
                        matches!(
                            k.as_str(),
                            "type"
                                | "name"
                                | "description"
                                | "required"
                                | "min_value"
                                | "max_value"
                                | "max_length"
                                | "choices"
                                | "autocomplete"
                                | "options"
                                | "value"
                        ) && !(k.as_str() == "required" && v == &&Value::Bool(false))
                            && !(k.as_str() == "autocomplete" && v == &&Value::Bool(false))
                            && !(k.as_str() == "options" && v.as_array().is_some_and(Vec::is_empty))
                    })
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(c)
}

/// Bulk-overwrites the application's commands (in `guild`, or globally) with `/ops`, and says
/// what changed compared with what was registered. Idempotent.
pub async fn register(
    rest: &DiscordRest,
    application_id: &str,
    guild: Option<&str>,
) -> Result<Vec<Change>, DeliveryError> {
    let path = match guild {
        Some(g) => format!("/applications/{application_id}/guilds/{g}/commands"),
        None => format!("/applications/{application_id}/commands"),
    };
    let route = |m: &str| format!("{m} {path}");
    let before = rest
        .call(&Call {
            name: "get_commands",
            method: Method::GET,
            path: path.clone(),
            route: route("GET"),
            auth: Auth::Bot,
            body: None,
        })
        .await?;
    let wanted = ops_command();
    let before = before.as_array().cloned().unwrap_or_default();
    let mut changes: Vec<Change> = Vec::new();
    match before.iter().find(|c| c["name"] == ROOT) {
        None => changes.push(Change::Created(ROOT.to_owned())),
        Some(old) if comparable(old) == comparable(&wanted) => {
            changes.push(Change::Unchanged(ROOT.to_owned()))
        }
        Some(_) => changes.push(Change::Updated(ROOT.to_owned())),
    }
    for old in &before {
        if let Some(name) = old["name"].as_str()
            && name != ROOT
        {
            changes.push(Change::Removed(name.to_owned()));
        }
    }
    rest.call(&Call {
        name: "bulk_overwrite_commands",
        method: Method::PUT,
        path: path.clone(),
        route: route("PUT"),
        auth: Auth::Bot,
        body: Some(json!([wanted])),
    })
    .await?;
    Ok(changes)
}

/// The URL that installs the bot in a server with the `bot applications.commands` scopes and
/// only the permissions opsbot uses.
pub fn invite_url(application_id: &str) -> String {
    format!(
        "https://discord.com/oauth2/authorize?client_id={application_id}&scope=bot%20applications.commands&permissions={PERMISSIONS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: Value) -> Vec<CommandOption> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn typed_options_and_free_text_yield_the_same_command() {
        let typed = opts(json!([{"type": 1, "name": "scale", "options": [
            {"type": 3, "name": "workload", "value": "conea-api"},
            {"type": 4, "name": "replicas", "value": 5},
            {"type": 3, "name": "namespace", "value": "production"},
        ]}]));
        let text = opts(json!([{"type": 1, "name": "run", "options": [
            {"type": 3, "name": "command", "value": " scale conea-api 5 -n production "},
        ]}]));
        let a = opsbot_commands::parse(&invocation_text(&typed)).unwrap();
        let b = opsbot_commands::parse(&invocation_text(&text)).unwrap();
        assert_eq!(a, b);
        assert_eq!(invocation_text(&typed), a.to_text());
    }

    #[test]
    fn grouped_subcommands_and_bad_values_go_through_the_grammar() {
        let backup = opts(json!([{"type": 2, "name": "backup", "options": [
            {"type": 1, "name": "run", "options": [
                {"type": 3, "name": "cronjob", "value": "postgres-backup"},
                {"type": 3, "name": "namespace", "value": "data-services"}]}]}]));
        let cmd = opsbot_commands::parse(&invocation_text(&backup)).unwrap();
        assert_eq!(cmd.to_text(), invocation_text(&backup));
        assert!(cmd.to_text().starts_with("backup run"), "{}", cmd.to_text());
        // An invalid name: the words go to the engine, whose parser names the problem.
        let bad = opts(json!([{"type": 1, "name": "scale", "options": [
            {"type": 3, "name": "workload", "value": "Bad Name!"},
            {"type": 4, "name": "replicas", "value": 5}]}]));
        let text = invocation_text(&bad);
        assert!(opsbot_commands::parse(&text).is_err(), "{text}");
    }

    #[test]
    fn the_schema_fits_discords_rules() {
        let c = ops_command();
        assert_eq!(c["name"], ROOT);
        let subs = c["options"].as_array().unwrap();
        assert!(subs.len() <= 25);
        assert!(subs.iter().any(|s| s["name"] == RUN));
        let scale = subs.iter().find(|s| s["name"] == "scale").unwrap();
        assert_eq!(scale["type"], 1);
        let o = |n: &str| {
            scale["options"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == n)
                .unwrap()
                .clone()
        };
        assert_eq!(o("replicas")["type"], 4);
        assert_eq!(o("workload")["autocomplete"], true);
        assert_eq!(o("namespace")["autocomplete"], true);
        assert_eq!(o("cluster")["autocomplete"], true);
        fn walk(v: &Value, depth: usize) {
            for o in v["options"].as_array().into_iter().flatten() {
                let name = o["name"].as_str().unwrap();
                assert!(
                    !name.is_empty()
                        && name.len() <= 32
                        && name.chars().all(|c| c.is_ascii_lowercase()
                            || c.is_ascii_digit()
                            || c == '-'
                            || c == '_'),
                    "{name}"
                );
                let d = o["description"].as_str().unwrap();
                assert!(!d.is_empty() && d.chars().count() <= 100, "{d}");
                assert!(o["options"].as_array().is_none_or(|a| a.len() <= 25));
                assert!(!(o.get("choices").is_some() && o.get("autocomplete").is_some()));
                // Required options come first.
                let req: Vec<bool> = o["options"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|x| x["type"].as_u64().unwrap() > 2)
                    .map(|x| x["required"] == true)
                    .collect();
                assert!(req.windows(2).all(|w| w[0] >= w[1]), "{name}");
                assert!(depth < 3);
                walk(o, depth + 1);
            }
        }
        walk(&c, 0);
    }

    #[test]
    fn choices_prefer_prefixes_and_stop_at_25() {
        let names: Vec<String> = ["api", "conea-api", "backend", "apiserver"]
            .map(String::from)
            .to_vec();
        let got: Vec<&str> = choices(&names, "API")
            .iter()
            .map(|c| c["value"].as_str().unwrap())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|s| names.iter().find(|n| *n == s).unwrap().as_str())
            .collect();
        assert_eq!(got, ["api", "apiserver", "conea-api"]);
        let many: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
        assert_eq!(choices(&many, "").len(), MAX_CHOICES);
    }

    #[test]
    fn the_invite_asks_for_no_more_than_is_used() {
        let url = invite_url("1100");
        assert!(url.contains("client_id=1100"));
        assert!(url.contains("scope=bot%20applications.commands"));
        // View Channel, Send Messages, Embed Links, Manage Channels, Manage Roles, Pin Messages.
        assert!(url.ends_with("permissions=2251800082140176"), "{url}");
    }
}
