//! A wire-level fake of Discord's REST API, and interactions signed exactly as Discord signs
//! them.
//!
//! It speaks Discord's format: the real paths (`/interactions/{id}/{token}/callback`,
//! `/webhooks/{app}/{token}/messages/@original`, follow-ups, `/channels/{id}/messages`,
//! application commands), `Authorization: Bot …` checked on bot routes (401 otherwise),
//! JSON errors with Discord's codes (`10062 Unknown interaction`, `10015 Unknown Webhook`,
//! `50001 Missing Access`, `10008 Unknown Message`, `50027 Invalid Webhook Token`),
//! `X-RateLimit-*` bucket headers on every answer, and 429s with `retry_after` on demand.
//! Interactions the test sends are registered here first (as Discord would know them), so
//! their tokens work on the webhook routes.
//!
//! Servers and their channels (incident automation): `GET`/`POST /guilds/{guild}/channels`
//! (text channel names kept in lower case, duplicates allowed as on Discord),
//! `GET`/`PATCH /channels/{id}`, `PUT /channels/{id}/permissions/{overwrite}`,
//! `PUT /channels/{id}/messages/pins/{message}` and `GET /users/@me`, answering with Discord's
//! channel objects; a permission taken away with [`DiscordFake::deny`] makes the calls that need
//! it fail as Discord does (403 `{"message": "Missing Permissions", "code": 50013}`), a server
//! the bot is not in or a channel it cannot see answers 403 `50001 Missing Access`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use opsbot::discord::verify::TestSigner;
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// A name for the route: `callback`, `edit_original`, `delete_original`, `followup`,
    /// `edit_webhook_message`, `create_message`, `edit_message`, `get_commands`, `put_commands`,
    /// `get_guild_channels`, `create_channel`, `get_channel`, `modify_channel`,
    /// `edit_permissions`, `pin`, `get_current_user`.
    pub route: &'static str,
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
    pub at: Instant,
    /// The message created or edited, if any.
    pub message: Option<String>,
}

/// A message as Discord holds it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub channel: String,
    pub body: Value,
    /// Only the interaction's user sees it (flags 64).
    pub ephemeral: bool,
    pub deleted: bool,
    pub edits: usize,
}

impl Message {
    /// Every text of the message (content, embed title, description, fields, footer), joined.
    pub fn text(&self) -> String {
        all_text(&self.body)
    }

    /// The `custom_id`s of its buttons.
    pub fn custom_ids(&self) -> Vec<String> {
        self.body["components"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["custom_id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Every text in a message body.
pub fn all_text(body: &Value) -> String {
    let mut out = String::new();
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str() {
            out.push_str(s);
            out.push('\n');
        }
    };
    push(&body["content"]);
    for e in body["embeds"].as_array().into_iter().flatten() {
        push(&e["title"]);
        push(&e["description"]);
        for f in e["fields"].as_array().into_iter().flatten() {
            push(&f["name"]);
            push(&f["value"]);
        }
        push(&e["footer"]["text"]);
    }
    out
}

#[derive(Debug, Clone)]
struct Interaction {
    channel: String,
    /// The deferred response's message, once it exists; `None` while deferred.
    original: Option<String>,
    expired: bool,
}

/// A Discord permission the bot can be denied in the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Create channels, change their topic or category.
    ManageChannels,
    /// Permission overwrites (Manage Permissions on a channel).
    ManageRoles,
    /// Pin messages.
    PinMessages,
}

/// A permission overwrite as Discord returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overwrite {
    /// 0 role, 1 member.
    pub kind: u8,
    pub allow: u64,
    pub deny: u64,
}

/// A guild channel as Discord holds it.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub guild: String,
    pub name: String,
    /// 0 text, 4 category.
    pub kind: u64,
    pub parent: Option<String>,
    pub topic: Option<String>,
    /// Overwrite id (user or role) → overwrite.
    pub overwrites: BTreeMap<String, Overwrite>,
    /// Pinned message ids, newest last.
    pub pins: Vec<String>,
}

impl Channel {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "guild_id": self.guild,
            "name": self.name,
            "position": 0,
            "permission_overwrites": self.overwrites.iter().map(|(id, o)| json!({
                "id": id, "type": o.kind,
                "allow": o.allow.to_string(), "deny": o.deny.to_string(),
            })).collect::<Vec<_>>(),
            "parent_id": self.parent,
            "topic": self.topic,
            "nsfw": false,
            "rate_limit_per_user": 0,
            "last_message_id": null,
            "flags": 0,
        })
    }
}

/// A failure to answer the next call to a route with.
#[derive(Debug, Clone)]
pub enum Failure {
    /// 429 with `retry_after` (seconds) and the bucket headers; `global` as Discord sets it.
    RateLimited {
        retry_after: f64,
        global: bool,
    },
    ServerError,
    /// A JSON error such as 403 `50001 Missing Access`.
    Error {
        status: u16,
        code: u64,
        message: &'static str,
    },
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    messages: BTreeMap<String, Message>,
    interactions: HashMap<String, Interaction>,
    refused_channels: HashSet<String>,
    failures: HashMap<&'static str, Vec<Failure>>,
    commands: HashMap<String, Value>,
    guilds: HashSet<String>,
    channels: BTreeMap<String, Channel>,
    denied: HashSet<Permission>,
    /// Routes whose next successful answer says the bucket is empty, and for how long.
    exhausted: HashMap<&'static str, f64>,
    next_id: u64,
}

#[derive(Clone)]
struct Shared {
    token: String,
    app: String,
    inner: Arc<Mutex<Inner>>,
    gateway: Arc<Mutex<Gateway>>,
}

/// The fake gateway's state: what clients sent, and the open connection's outbox.
#[derive(Default)]
struct Gateway {
    url: Option<String>,
    /// Every Identify (op 2) and Resume (op 6) payload received, in order.
    received: Vec<Value>,
    heartbeats: usize,
    connections: usize,
    seq: u64,
    current: Option<tokio::sync::mpsc::UnboundedSender<GatewayCmd>>,
}

enum GatewayCmd {
    Send(Value),
    Drop,
}

/// The fake, listening on a local port.
#[derive(Clone)]
pub struct DiscordFake {
    pub addr: std::net::SocketAddr,
    shared: Shared,
}

fn error(status: StatusCode, code: u64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

impl DiscordFake {
    pub async fn start(bot_token: &str, application_id: &str) -> DiscordFake {
        let shared = Shared {
            token: bot_token.to_owned(),
            app: application_id.to_owned(),
            inner: Arc::new(Mutex::new(Inner {
                next_id: 900_000_000_000_000_000,
                ..Inner::default()
            })),
            gateway: Arc::new(Mutex::new(Gateway::default())),
        };
        let app = Router::new()
            .route(
                "/api/v10/interactions/{id}/{token}/callback",
                post(callback),
            )
            .route("/api/v10/gateway/bot", axum::routing::get(gateway_bot))
            .route("/api/v10/webhooks/{app}/{token}", post(followup))
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/{message}",
                any(webhook_message),
            )
            .route("/api/v10/channels/{channel}/messages", post(create_message))
            .route(
                "/api/v10/channels/{channel}/messages/{message}",
                any(edit_message),
            )
            .route("/api/v10/guilds/{guild}/channels", any(guild_channels))
            .route("/api/v10/channels/{channel}", any(channel))
            .route(
                "/api/v10/channels/{channel}/permissions/{overwrite}",
                any(edit_permissions),
            )
            .route(
                "/api/v10/channels/{channel}/messages/pins/{message}",
                any(pin),
            )
            .route("/api/v10/users/@me", axum::routing::get(me))
            .route("/api/v10/applications/{app}/commands", any(commands))
            .route(
                "/api/v10/applications/{app}/guilds/{guild}/commands",
                any(guild_commands),
            )
            .fallback(|| async { error(StatusCode::NOT_FOUND, 0, "404: Not Found") })
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        DiscordFake { addr, shared }
    }

    /// The REST base URL to configure (`discord.api_url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10", self.addr)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    /// Starts the fake gateway (`GET /gateway/bot` points at it): Hello with a 300 ms
    /// heartbeat, READY for an Identify with the bot token and intents, RESUMED for a Resume of
    /// its session, ACKs for heartbeats.
    pub async fn enable_gateway(&self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        self.shared.gateway.lock().unwrap().url = Some(url.clone());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(gateway_connection(shared.clone(), url.clone(), stream));
            }
        });
    }

    /// Identify and Resume payloads received so far.
    pub fn gateway_received(&self) -> Vec<Value> {
        self.shared.gateway.lock().unwrap().received.clone()
    }

    /// Heartbeats received so far, and connections accepted.
    pub fn gateway_counts(&self) -> (usize, usize) {
        let g = self.shared.gateway.lock().unwrap();
        (g.heartbeats, g.connections)
    }

    /// Sends a dispatch (op 0) with the next sequence number on the open connection.
    pub fn gateway_dispatch(&self, event: &str, d: Value) -> bool {
        let mut g = self.shared.gateway.lock().unwrap();
        g.seq += 1;
        let frame = json!({"op": 0, "t": event, "s": g.seq, "d": d});
        g.current
            .as_ref()
            .is_some_and(|tx| tx.send(GatewayCmd::Send(frame)).is_ok())
    }

    /// Drops the open connection without a close frame (a network failure).
    pub fn gateway_drop(&self) {
        if let Some(tx) = self.shared.gateway.lock().unwrap().current.take() {
            let _ = tx.send(GatewayCmd::Drop);
        }
    }

    /// Waits until `pred` holds for the Identify / Resume payloads (fails the test after
    /// `limit`).
    pub async fn wait_for_gateway(&self, limit: Duration, pred: impl Fn(&[Value]) -> bool) {
        crate::eventually(
            limit,
            "the gateway payloads (Identify / Resume) to show it",
            || async { self.gateway_received() },
            |received| pred(received),
        )
        .await;
    }

    /// Registers an application command interaction Discord is about to deliver.
    pub fn expect_command(&self, token: &str, channel: &str) {
        self.inner().interactions.insert(
            token.to_owned(),
            Interaction {
                channel: channel.to_owned(),
                original: None,
                expired: false,
            },
        );
    }

    /// Registers a button click on `message`.
    pub fn expect_click(&self, token: &str, channel: &str, message: &str) {
        self.inner().interactions.insert(
            token.to_owned(),
            Interaction {
                channel: channel.to_owned(),
                // A click's original is the message with the buttons.
                original: Some(message.to_owned()),
                expired: false,
            },
        );
    }

    /// From now on the interaction's token is refused, as after 15 minutes.
    pub fn expire(&self, token: &str) {
        if let Some(i) = self.inner().interactions.get_mut(token) {
            i.expired = true;
        }
    }

    /// The bot is a member of `guild` (its channel routes answer; others say Missing Access).
    pub fn add_guild(&self, guild: &str) {
        self.inner().guilds.insert(guild.to_owned());
    }

    /// A channel that exists already (`kind` 0 text, 4 category); returns its id.
    pub fn add_channel(&self, guild: &str, name: &str, kind: u64, parent: Option<&str>) -> String {
        let mut inner = self.inner();
        inner.guilds.insert(guild.to_owned());
        inner.next_id += 1;
        let id = inner.next_id.to_string();
        inner.channels.insert(
            id.clone(),
            Channel {
                id: id.clone(),
                guild: guild.to_owned(),
                name: name.to_owned(),
                kind,
                parent: parent.map(str::to_owned),
                topic: None,
                overwrites: BTreeMap::new(),
                pins: Vec::new(),
            },
        );
        id
    }

    pub fn channel(&self, id: &str) -> Option<Channel> {
        self.inner().channels.get(id).cloned()
    }

    pub fn channels(&self) -> Vec<Channel> {
        self.inner().channels.values().cloned().collect()
    }

    /// Takes `permission` away from the bot: calls that need it fail with 403 50013.
    pub fn deny(&self, permission: Permission) {
        self.inner().denied.insert(permission);
    }

    /// Gives `permission` back.
    pub fn grant(&self, permission: Permission) {
        self.inner().denied.remove(&permission);
    }

    /// Bot messages in `channel` (and its channel routes) are refused with 50001 Missing Access.
    pub fn refuse_channel(&self, channel: &str) {
        self.inner().refused_channels.insert(channel.to_owned());
    }

    /// The next successful answer on `route` says its bucket is empty for `reset_after`
    /// seconds (`X-RateLimit-Remaining: 0`): a client that honours buckets waits, without a 429.
    pub fn exhaust_bucket(&self, route: &'static str, reset_after: f64) {
        self.inner().exhausted.insert(route, reset_after);
    }

    /// The next call to `route` fails so.
    pub fn fail_next(&self, route: &'static str, failure: Failure) {
        self.inner()
            .failures
            .entry(route)
            .or_default()
            .push(failure);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner().messages.values().cloned().collect()
    }

    pub fn message(&self, id: &str) -> Option<Message> {
        self.inner().messages.get(id).cloned()
    }

    /// What is registered as the application's commands (global: `guild` `None`).
    pub fn registered(&self, guild: Option<&str>) -> Option<Value> {
        self.inner().commands.get(guild.unwrap_or("")).cloned()
    }

    /// Waits until `pred` holds for the messages and returns them (for the test's further
    /// assertions). Fails the test if `limit` passes first: a wait is itself an assertion.
    pub async fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        crate::eventually(
            limit,
            "the fake Discord's messages to show it",
            || async { self.messages() },
            |ms| pred(ms),
        )
        .await
    }

    /// Waits for a visible (not deleted) message whose text contains `needle` (fails the test
    /// after `limit`).
    pub async fn wait_for_text(&self, limit: Duration, needle: &str) -> Message {
        let found = |ms: &[Message]| {
            ms.iter()
                .find(|m| !m.deleted && m.text().contains(needle))
                .cloned()
        };
        found(&self.wait_for(limit, |ms| found(ms).is_some()).await)
            .expect("wait_for returns once a message matches")
    }
}

impl Shared {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    fn record(
        &self,
        route: &'static str,
        method: &Method,
        path: String,
        body: &Value,
        status: StatusCode,
        message: Option<String>,
    ) {
        self.inner().calls.push(Call {
            route,
            method: method.to_string(),
            path,
            body: body.clone(),
            status: status.as_u16(),
            at: Instant::now(),
            message,
        });
    }

    /// An injected failure for this route, if one is queued.
    fn injected(&self, route: &'static str) -> Option<Response> {
        let failure = {
            let mut inner = self.inner();
            let queue = inner.failures.get_mut(route)?;
            if queue.is_empty() {
                return None;
            }
            queue.remove(0)
        };
        Some(match failure {
            Failure::RateLimited {
                retry_after,
                global,
            } => {
                let mut res = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({
                        "message": "You are being rate limited.",
                        "retry_after": retry_after,
                        "global": global,
                        "code": 0,
                    })),
                )
                    .into_response();
                let h = res.headers_mut();
                h.insert("x-ratelimit-bucket", route.parse().unwrap());
                h.insert("x-ratelimit-limit", "5".parse().unwrap());
                h.insert("x-ratelimit-remaining", "0".parse().unwrap());
                h.insert(
                    "x-ratelimit-reset-after",
                    format!("{retry_after:.3}").parse().unwrap(),
                );
                h.insert(
                    "retry-after",
                    format!("{}", retry_after.ceil()).parse().unwrap(),
                );
                if global {
                    h.insert("x-ratelimit-global", "true".parse().unwrap());
                }
                h.insert(
                    "x-ratelimit-scope",
                    if global { "global" } else { "user" }.parse().unwrap(),
                );
                res
            }
            Failure::Error {
                status,
                code,
                message,
            } => error(StatusCode::from_u16(status).unwrap(), code, message),
            Failure::ServerError => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                0,
                "500: Internal Server Error",
            ),
        })
    }

    fn bot_authorised(&self, headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bot {}", self.token))
    }

    fn new_message(&self, channel: &str, body: &Value) -> Message {
        let mut inner = self.inner();
        inner.next_id += 1;
        let id = inner.next_id.to_string();
        let m = Message {
            id: id.clone(),
            channel: channel.to_owned(),
            body: body.clone(),
            ephemeral: body["flags"].as_u64().is_some_and(|f| f & 64 != 0),
            deleted: false,
            edits: 0,
        };
        inner.messages.insert(id, m.clone());
        m
    }

    fn edit(&self, id: &str, body: &Value) -> Option<Message> {
        let mut inner = self.inner();
        let m = inner.messages.get_mut(id).filter(|m| !m.deleted)?;
        for key in ["content", "embeds", "components", "allowed_mentions"] {
            if let Some(v) = body.get(key) {
                m.body[key] = v.clone();
            }
        }
        m.edits += 1;
        Some(m.clone())
    }
}

/// Discord keeps text channel names in lower case, with dashes for spaces.
fn channel_name(name: &str) -> String {
    name.trim().to_lowercase().replace(' ', "-")
}

fn missing_permissions() -> Response {
    error(StatusCode::FORBIDDEN, 50013, "Missing Permissions")
}

fn missing_access() -> Response {
    error(StatusCode::FORBIDDEN, 50001, "Missing Access")
}

fn invalid_form(what: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": { what: { "_errors": [{ "code": "BASE_TYPE_INVALID", "message": "Invalid value" }] } },
        })),
    )
        .into_response()
}

impl Shared {
    /// Records a call to a channel route and answers it: 401 without the bot token, an
    /// injected failure, or what `handle` says (with bucket headers when it succeeded).
    fn channel_call(
        &self,
        route: &'static str,
        method: &Method,
        path: String,
        headers: &HeaderMap,
        body: &Value,
        handle: impl FnOnce(&mut Inner) -> Response,
    ) -> Response {
        let res = if !self.bot_authorised(headers) {
            error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
        } else if let Some(r) = self.injected(route) {
            r
        } else {
            let res = handle(&mut self.inner());
            if res.status().is_success() {
                self.with_bucket(route, res)
            } else {
                res
            }
        };
        self.record(route, method, path, body, res.status(), None);
        res
    }
}

impl Inner {
    fn denies(&self, p: Permission) -> bool {
        self.denied.contains(&p)
    }

    /// Discord's refusal when the bot cannot see the channel (or it does not exist).
    fn invisible(&self, id: &str) -> Option<Response> {
        if self.refused_channels.contains(id) {
            return Some(missing_access());
        }
        (!self.channels.contains_key(id))
            .then(|| error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"))
    }

    /// `parent_id` must be a category of the same guild (or null).
    fn check_parent(&self, guild: &str, parent: &Value) -> Result<Option<String>, Box<Response>> {
        match parent {
            Value::Null => Ok(None),
            Value::String(p) => match self.channels.get(p) {
                Some(c) if c.kind == 4 && c.guild == guild => Ok(Some(p.clone())),
                _ => Err(Box::new(invalid_form("parent_id"))),
            },
            _ => Err(Box::new(invalid_form("parent_id"))),
        }
    }
}

async fn guild_channels(
    State(s): State<Shared>,
    Path(guild): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let route = if method == Method::POST {
        "create_channel"
    } else {
        "get_guild_channels"
    };
    let path = format!("/guilds/{guild}/channels");
    s.channel_call(route, &method, path, &headers, &body, |inner| {
        if !inner.guilds.contains(&guild) {
            return missing_access();
        }
        match method {
            Method::GET => {
                let list: Vec<Value> = inner
                    .channels
                    .values()
                    .filter(|c| c.guild == guild)
                    .map(Channel::json)
                    .collect();
                axum::Json(json!(list)).into_response()
            }
            Method::POST => {
                if inner.denies(Permission::ManageChannels) {
                    return missing_permissions();
                }
                let kind = body["type"].as_u64().unwrap_or(0);
                let name = match body["name"].as_str() {
                    Some(n) if (1..=100).contains(&n.chars().count()) => n,
                    _ => return invalid_form("name"),
                };
                let name = if kind == 0 {
                    channel_name(name)
                } else {
                    name.to_owned()
                };
                let parent = match inner.check_parent(&guild, &body["parent_id"]) {
                    Ok(p) => p,
                    Err(r) => return *r,
                };
                inner.next_id += 1;
                let id = inner.next_id.to_string();
                let c = Channel {
                    id: id.clone(),
                    guild: guild.clone(),
                    name,
                    kind,
                    parent,
                    topic: body["topic"].as_str().map(str::to_owned),
                    overwrites: BTreeMap::new(),
                    pins: Vec::new(),
                };
                let answer = c.json();
                inner.channels.insert(id, c);
                (StatusCode::CREATED, axum::Json(answer)).into_response()
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed"),
        }
    })
}

async fn channel(
    State(s): State<Shared>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let route = if method == Method::PATCH {
        "modify_channel"
    } else {
        "get_channel"
    };
    let path = format!("/channels/{id}");
    s.channel_call(route, &method, path, &headers, &body, |inner| {
        if let Some(r) = inner.invisible(&id) {
            return r;
        }
        match method {
            Method::GET => axum::Json(inner.channels[&id].json()).into_response(),
            Method::PATCH => {
                let Some(fields) = body.as_object() else {
                    return invalid_form("body");
                };
                if inner.denies(Permission::ManageChannels)
                    || (fields.contains_key("permission_overwrites")
                        && inner.denies(Permission::ManageRoles))
                {
                    return missing_permissions();
                }
                let guild = inner.channels[&id].guild.clone();
                let parent = match fields.get("parent_id") {
                    Some(p) => match inner.check_parent(&guild, p) {
                        Ok(p) => Some(p),
                        Err(r) => return *r,
                    },
                    None => None,
                };
                let c = inner.channels.get_mut(&id).unwrap();
                if let Some(p) = parent {
                    c.parent = p;
                }
                if let Some(t) = fields.get("topic") {
                    match t {
                        Value::Null => c.topic = None,
                        Value::String(t) if t.chars().count() <= 1024 => c.topic = Some(t.clone()),
                        _ => return invalid_form("topic"),
                    }
                }
                if let Some(n) = fields.get("name").and_then(Value::as_str) {
                    c.name = channel_name(n);
                }
                axum::Json(c.json()).into_response()
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed"),
        }
    })
}

async fn edit_permissions(
    State(s): State<Shared>,
    Path((id, overwrite)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let path = format!("/channels/{id}/permissions/{overwrite}");
    s.channel_call(
        "edit_permissions",
        &method,
        path,
        &headers,
        &body,
        |inner| {
            if method != Method::PUT {
                return error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed");
            }
            if let Some(r) = inner.invisible(&id) {
                return r;
            }
            if inner.denies(Permission::ManageRoles) {
                return missing_permissions();
            }
            let kind = match body["type"].as_u64() {
                Some(k @ (0 | 1)) => k as u8,
                _ => return invalid_form("type"),
            };
            let bits = |k: &str| match &body[k] {
                Value::Null => Some(0),
                Value::String(v) => v.parse::<u64>().ok(),
                _ => None,
            };
            let (Some(allow), Some(deny)) = (bits("allow"), bits("deny")) else {
                return invalid_form("allow");
            };
            let c = inner.channels.get_mut(&id).unwrap();
            c.overwrites
                .insert(overwrite.clone(), Overwrite { kind, allow, deny });
            StatusCode::NO_CONTENT.into_response()
        },
    )
}

async fn pin(
    State(s): State<Shared>,
    Path((id, message)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let path = format!("/channels/{id}/messages/pins/{message}");
    s.channel_call("pin", &method, path, &headers, &body, |inner| {
        if method != Method::PUT {
            return error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed");
        }
        if let Some(r) = inner.invisible(&id) {
            return r;
        }
        if inner.denies(Permission::PinMessages) {
            return missing_permissions();
        }
        let exists = inner
            .messages
            .get(&message)
            .is_some_and(|m| m.channel == id && !m.deleted);
        if !exists {
            return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
        }
        let c = inner.channels.get_mut(&id).unwrap();
        if !c.pins.contains(&message) {
            if c.pins.len() >= 250 {
                return error(
                    StatusCode::BAD_REQUEST,
                    30003,
                    "Maximum number of pins reached (250)",
                );
            }
            c.pins.push(message.clone());
        }
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn me(State(s): State<Shared>, method: Method, headers: HeaderMap) -> Response {
    let app = s.app.clone();
    s.channel_call(
        "get_current_user",
        &method,
        "/users/@me".into(),
        &headers,
        &Value::Null,
        |_| {
            axum::Json(json!({
                "id": app, "username": "opsbot", "discriminator": "0",
                "global_name": null, "avatar": null, "bot": true,
            }))
            .into_response()
        },
    )
}

fn message_json(m: &Message) -> Value {
    let mut v = m.body.clone();
    v["id"] = m.id.clone().into();
    v["channel_id"] = m.channel.clone().into();
    v["type"] = 0.into();
    v
}

impl Shared {
    /// Bucket headers, as Discord sends on every answer.
    fn with_bucket(&self, route: &'static str, res: Response) -> Response {
        let exhausted = self.inner().exhausted.remove(route);
        let (remaining, reset_after) = match exhausted {
            Some(after) => (0, after),
            None => (4, 1.0),
        };
        let mut res = res;
        let h = res.headers_mut();
        h.insert("x-ratelimit-bucket", route.parse().unwrap());
        h.insert("x-ratelimit-limit", "5".parse().unwrap());
        h.insert("x-ratelimit-remaining", remaining.into());
        h.insert(
            "x-ratelimit-reset-after",
            format!("{reset_after:.3}").parse().unwrap(),
        );
        res
    }
}

fn parse(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

async fn callback(
    State(s): State<Shared>,
    Path((_id, token)): Path<(String, String)>,
    method: Method,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let known = s.inner().interactions.contains_key(&token);
    let status = if known {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    };
    s.record(
        "callback",
        &method,
        "/interactions/…/callback".into(),
        &body,
        status,
        None,
    );
    if known {
        status.into_response()
    } else {
        error(status, 10062, "Unknown interaction")
    }
}

async fn gateway_bot(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !s.bot_authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    match s.gateway.lock().unwrap().url.clone() {
        Some(url) => axum::Json(json!({
            "url": url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }))
        .into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, 0, "gateway not enabled"),
    }
}

/// One gateway connection, as Discord's gateway speaks it.
async fn gateway_connection(s: Shared, url: String, stream: tokio::net::TcpStream) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let mut g = s.gateway.lock().unwrap();
        g.connections += 1;
        g.current = Some(tx.clone());
    }
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 300}});
    if ws.send(Frame::text(hello.to_string())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(Frame::Text(text))) = frame else { return };
                let Ok(msg) = serde_json::from_str::<Value>(&text) else { continue };
                let mut auth_failed = false;
                let reply = {
                    let mut g = s.gateway.lock().unwrap();
                    match msg["op"].as_u64() {
                        Some(1) => {
                            g.heartbeats += 1;
                            Some(json!({"op": 11}))
                        }
                        Some(2) => {
                            g.received.push(msg["d"].clone());
                            if msg["d"]["token"] != s.token.as_str() {
                                auth_failed = true;
                                None
                            } else {
                            g.seq += 1;
                            Some(json!({"op": 0, "t": "READY", "s": g.seq, "d": {
                                "v": 10, "session_id": "fake-session", "resume_gateway_url": url,
                                "user": {"id": "1", "username": "opsbot", "bot": true},
                                "guilds": [], "application": {"id": s.app, "flags": 0}}}))
                            }
                        }
                        Some(6) => {
                            g.received.push(msg["d"].clone());
                            if msg["d"]["session_id"] == "fake-session" {
                                g.seq += 1;
                                Some(json!({"op": 0, "t": "RESUMED", "s": g.seq, "d": null}))
                            } else {
                                Some(json!({"op": 9, "d": false}))
                            }
                        }
                        _ => None,
                    }
                };
                if auth_failed {
                    let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: 4004.into(),
                        reason: "Authentication failed.".into(),
                    };
                    let _ = ws.close(Some(close)).await;
                    return;
                }
                if let Some(r) = reply
                    && ws.send(Frame::text(r.to_string())).await.is_err()
                {
                    return;
                }
            }
            cmd = rx.recv() => match cmd {
                Some(GatewayCmd::Send(v)) => {
                    if ws.send(Frame::text(v.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(GatewayCmd::Drop) | None => return,
            },
        }
    }
}

/// The interaction behind a webhook token, or Discord's error for it.
fn interaction(s: &Shared, app: &str, token: &str) -> Result<Interaction, Box<Response>> {
    let refuse = |status, code, message| Err(Box::new(error(status, code, message)));
    if app != s.app {
        return refuse(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
    }
    match s.inner().interactions.get(token) {
        None => refuse(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
        Some(i) if i.expired => refuse(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token"),
        Some(i) => Ok(i.clone()),
    }
}

async fn followup(
    State(s): State<Shared>,
    Path((app, token)): Path<(String, String)>,
    method: Method,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    if let Some(r) = s.injected("followup") {
        s.record(
            "followup",
            &method,
            "/webhooks/…".into(),
            &body,
            r.status(),
            None,
        );
        return r;
    }
    let i = match interaction(&s, &app, &token) {
        Ok(i) => i,
        Err(r) => {
            s.record(
                "followup",
                &method,
                "/webhooks/…".into(),
                &body,
                r.status(),
                None,
            );
            return *r;
        }
    };
    // As Discord: the first follow-up to a still-deferred response becomes that response, with
    // the deferral's visibility (opsbot defers publicly): its own ephemeral flag is ignored.
    let m = if i.original.is_none() {
        let mut public = body.clone();
        if let Some(flags) = public.get_mut("flags") {
            *flags = json!(flags.as_u64().unwrap_or(0) & !64);
        }
        let m = s.new_message(&i.channel, &public);
        if let Some(entry) = s.inner().interactions.get_mut(&token) {
            entry.original = Some(m.id.clone());
        }
        m
    } else {
        s.new_message(&i.channel, &body)
    };
    s.record(
        "followup",
        &method,
        "/webhooks/…".into(),
        &body,
        StatusCode::OK,
        Some(m.id.clone()),
    );
    s.with_bucket("followup", axum::Json(message_json(&m)).into_response())
}

async fn webhook_message(
    State(s): State<Shared>,
    Path((app, token, message)): Path<(String, String, String)>,
    method: Method,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let route: &'static str = match (&method, message.as_str()) {
        (&Method::PATCH, "@original") => "edit_original",
        (&Method::DELETE, "@original") => "delete_original",
        (&Method::PATCH, _) => "edit_webhook_message",
        _ => return error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed"),
    };
    let path = format!("/webhooks/…/messages/{message}");
    if let Some(r) = s.injected(route) {
        s.record(route, &method, path, &body, r.status(), None);
        return r;
    }
    let i = match interaction(&s, &app, &token) {
        Ok(i) => i,
        Err(r) => {
            s.record(route, &method, path, &body, r.status(), None);
            return *r;
        }
    };
    let res = match route {
        "delete_original" => {
            let mut inner = s.inner();
            if let Some(id) = &i.original
                && let Some(m) = inner.messages.get_mut(id)
            {
                m.deleted = true;
            }
            if let Some(entry) = inner.interactions.get_mut(&token) {
                // Deleting a deferred response settles it; there is no original any more.
                entry.original.get_or_insert_with(String::new);
            }
            drop(inner);
            s.record(
                route,
                &method,
                path,
                &body,
                StatusCode::NO_CONTENT,
                i.original,
            );
            return s.with_bucket(route, StatusCode::NO_CONTENT.into_response());
        }
        "edit_original" => match i.original.as_deref() {
            // The deferred response becomes a message.
            None => {
                let m = s.new_message(&i.channel, &body);
                if let Some(entry) = s.inner().interactions.get_mut(&token) {
                    entry.original = Some(m.id.clone());
                }
                Some(m)
            }
            Some(id) => s.edit(id, &body),
        },
        _ => s.edit(&message, &body),
    };
    match res {
        Some(m) => {
            s.record(
                route,
                &method,
                path,
                &body,
                StatusCode::OK,
                Some(m.id.clone()),
            );
            s.with_bucket(route, axum::Json(message_json(&m)).into_response())
        }
        None => {
            s.record(route, &method, path, &body, StatusCode::NOT_FOUND, None);
            error(StatusCode::NOT_FOUND, 10008, "Unknown Message")
        }
    }
}

async fn create_message(
    State(s): State<Shared>,
    Path(channel): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let path = format!("/channels/{channel}/messages");
    if !s.bot_authorised(&headers) {
        s.record(
            "create_message",
            &method,
            path,
            &body,
            StatusCode::UNAUTHORIZED,
            None,
        );
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    if let Some(r) = s.injected("create_message") {
        s.record("create_message", &method, path, &body, r.status(), None);
        return r;
    }
    if s.inner().refused_channels.contains(&channel) {
        s.record(
            "create_message",
            &method,
            path,
            &body,
            StatusCode::FORBIDDEN,
            None,
        );
        return error(StatusCode::FORBIDDEN, 50001, "Missing Access");
    }
    let m = s.new_message(&channel, &body);
    s.record(
        "create_message",
        &method,
        path,
        &body,
        StatusCode::OK,
        Some(m.id.clone()),
    );
    s.with_bucket(
        "create_message",
        axum::Json(message_json(&m)).into_response(),
    )
}

async fn edit_message(
    State(s): State<Shared>,
    Path((channel, message)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let path = format!("/channels/{channel}/messages/{message}");
    if !s.bot_authorised(&headers) {
        s.record(
            "edit_message",
            &method,
            path,
            &body,
            StatusCode::UNAUTHORIZED,
            None,
        );
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    if method != Method::PATCH {
        return error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed");
    }
    if let Some(r) = s.injected("edit_message") {
        s.record("edit_message", &method, path, &body, r.status(), None);
        return r;
    }
    let exists = s
        .inner()
        .messages
        .get(&message)
        .is_some_and(|m| m.channel == channel && !m.deleted);
    match exists.then(|| s.edit(&message, &body)).flatten() {
        Some(m) => {
            s.record(
                "edit_message",
                &method,
                path,
                &body,
                StatusCode::OK,
                Some(m.id.clone()),
            );
            s.with_bucket("edit_message", axum::Json(message_json(&m)).into_response())
        }
        None => {
            s.record(
                "edit_message",
                &method,
                path,
                &body,
                StatusCode::NOT_FOUND,
                None,
            );
            error(StatusCode::NOT_FOUND, 10008, "Unknown Message")
        }
    }
}

async fn commands(
    State(s): State<Shared>,
    Path(app): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    command_list(&s, &app, "", method, &headers, body)
}

async fn guild_commands(
    State(s): State<Shared>,
    Path((app, guild)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    command_list(&s, &app, &guild, method, &headers, body)
}

fn command_list(
    s: &Shared,
    app: &str,
    guild: &str,
    method: Method,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse(&body);
    let route = if method == Method::PUT {
        "put_commands"
    } else {
        "get_commands"
    };
    let path = format!("/applications/{app}/…/commands");
    if !s.bot_authorised(headers) {
        s.record(route, &method, path, &body, StatusCode::UNAUTHORIZED, None);
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    if app != s.app {
        s.record(route, &method, path, &body, StatusCode::FORBIDDEN, None);
        return error(StatusCode::FORBIDDEN, 50001, "Missing Access");
    }
    let answer = match method {
        Method::GET => s.inner().commands.get(guild).cloned().unwrap_or(json!([])),
        Method::PUT => {
            let Some(list) = body.as_array() else {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            };
            // Discord answers with the commands as stored: ids added, echoing what was sent.
            let stored: Vec<Value> = list
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    let mut c = c.clone();
                    c["id"] = format!("77{n}").into();
                    c["application_id"] = app.into();
                    c["version"] = "1".into();
                    c
                })
                .collect();
            s.inner().commands.insert(guild.to_owned(), json!(stored));
            json!(stored)
        }
        _ => return error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed"),
    };
    s.record(route, &method, path, &body, StatusCode::OK, None);
    s.with_bucket(route, axum::Json(answer).into_response())
}

// ---------------------------------------------------------------------------------------------
// Interactions, signed as Discord signs them
// ---------------------------------------------------------------------------------------------

/// The test application's signing key (Discord holds the private half; opsbot gets the public).
pub fn signer() -> TestSigner {
    TestSigner::from_seed([42; 32])
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The member who acts: a user id and role ids.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: String,
    pub roles: Vec<String>,
}

impl Member {
    pub fn new(user: &str, roles: &[&str]) -> Member {
        Member {
            user: user.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "user": { "id": self.user, "username": format!("user{}", self.user), "global_name": null },
            "roles": self.roles,
            "permissions": "2147483647",
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
        })
    }
}

/// An application command interaction (`/ops …`) as Discord sends it.
pub fn command(
    id: &str,
    token: &str,
    guild: Option<&str>,
    channel: &str,
    member: &Member,
    options: Value,
) -> Value {
    let mut v = json!({
        "id": id,
        "application_id": "1",
        "type": 2,
        "token": token,
        "version": 1,
        "channel_id": channel,
        "channel": { "id": channel, "type": 0 },
        "locale": "en-US",
        "data": { "id": "771", "name": "ops", "type": 1, "options": options },
        "app_permissions": "0",
        "entitlements": [],
        "authorizing_integration_owners": { "0": guild.unwrap_or("0") },
        "context": if guild.is_some() { 0 } else { 1 },
    });
    match guild {
        Some(g) => {
            v["guild_id"] = g.into();
            v["member"] = member.json();
        }
        None => v["user"] = member.json()["user"].clone(),
    }
    v
}

/// `/ops run command:"…"`.
pub fn run(
    id: &str,
    token: &str,
    guild: &str,
    channel: &str,
    member: &Member,
    text: &str,
) -> Value {
    command(
        id,
        token,
        Some(guild),
        channel,
        member,
        json!([{ "type": 1, "name": "run", "options": [{ "type": 3, "name": "command", "value": text }] }]),
    )
}

/// A click on a button (`custom_id`) of `message`.
pub fn click(
    id: &str,
    token: &str,
    guild: &str,
    channel: &str,
    member: &Member,
    message: &str,
    custom_id: &str,
) -> Value {
    json!({
        "id": id,
        "application_id": "1",
        "type": 3,
        "token": token,
        "version": 1,
        "guild_id": guild,
        "channel_id": channel,
        "channel": { "id": channel, "type": 0 },
        "member": member.json(),
        "message": { "id": message, "channel_id": channel, "type": 0, "content": "" },
        "data": { "custom_id": custom_id, "component_type": 2 },
    })
}

/// Posts `body` to the bot's interactions endpoint, signed at `timestamp` by `signer`.
pub async fn deliver_signed(
    http: &reqwest::Client,
    base: &str,
    signer: &TestSigner,
    timestamp: i64,
    body: &[u8],
) -> reqwest::Response {
    let ts = timestamp.to_string();
    http.post(format!("{base}/discord/interactions"))
        .header("content-type", "application/json")
        .header("x-signature-ed25519", signer.sign(&ts, body))
        .header("x-signature-timestamp", ts)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Delivers an interaction as Discord does: signed now with the test key.
pub async fn deliver(http: &reqwest::Client, base: &str, interaction: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(interaction).unwrap();
    deliver_signed(http, base, &signer(), now_secs(), &body).await
}
