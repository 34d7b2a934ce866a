//! A fake Slack: the Web API (as an axum server on 127.0.0.1:0) that records every call, and
//! helpers to sign requests exactly as Slack does.
//!
//! The Web API fake speaks Slack's format: `https://slack.com/api/{method}` becomes
//! `{api_url}/{method}`, bodies may be JSON or forms (and GET query strings), the bearer token is
//! checked (`invalid_auth` otherwise), answers are `{"ok":true,...}`, and failures can be
//! scripted per method: `ok:false` errors, HTTP 429 with `Retry-After`, or bare HTTP statuses.
//!
//! It also serves slash commands' response URLs (`POST {base}/response/{id}`, handed out by
//! [`SlackFake::response_url`]), as Slack does: JSON messages, `replace_original`, at most five
//! uses each. They are recorded as calls of the method `response_url`. Channels can be made to
//! refuse the bot (`not_in_channel`, as for a DM or a private channel it is not in).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

/// One recorded Web API call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The bearer token (or `token` parameter) sent.
    pub token: Option<String>,
    /// Query, form and JSON parameters merged (form values that are JSON, like `blocks`, are
    /// decoded).
    pub params: Value,
    /// What the fake answered: the HTTP status and the `error` (if any).
    pub status: u16,
    pub error: Option<String>,
    pub at: Instant,
    /// For `response_url` calls: the id of the response URL posted to.
    pub response_id: Option<String>,
}

impl Call {
    /// The value of the first button of the posted message's first actions block (an approval
    /// card's approval id).
    pub fn first_button_value(&self) -> Option<String> {
        self.params["blocks"]
            .as_array()?
            .iter()
            .find(|b| b["type"] == "actions")?["elements"][0]["value"]
            .as_str()
            .map(str::to_owned)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    /// All texts in the message (fallback `text` and every `text` inside `blocks`), joined.
    pub fn all_text(&self) -> String {
        let mut out = Vec::new();
        if let Some(t) = self.param("text") {
            out.push(t.to_owned());
        }
        collect_texts(self.params.get("blocks").unwrap_or(&Value::Null), &mut out);
        out.join("\n")
    }
}

fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(t)) = m.get("text") {
                out.push(t.clone());
            }
            for (k, x) in m {
                if let (true, Value::String(s)) = (k == "value", x) {
                    out.push(s.clone());
                }
                collect_texts(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_texts(x, out)),
        _ => {}
    }
}

/// A scripted failure for the next call of a method.
#[derive(Debug, Clone)]
pub enum Failure {
    /// HTTP 200 with `{"ok":false,"error":…}`.
    Error(String),
    /// HTTP 429 with `Retry-After: secs`.
    RateLimited { retry_after_secs: u64 },
    /// A bare HTTP status (e.g. 500, 503).
    Status(u16),
    /// No answer for this long (then the call goes on as usual): a Slack that hangs.
    Hang(std::time::Duration),
}

/// A message as it stands in the fake's channels (after updates).
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub params: Value,
    /// How many times it was updated.
    pub updates: usize,
    /// The response URL id it was posted through (`None`: `chat.postMessage`).
    pub response_id: Option<String>,
}

/// Slack accepts this many posts per response URL.
pub const RESPONSE_URL_USES: u32 = 5;

/// A response URL the fake handed out.
#[derive(Debug, Clone, Default)]
struct ResponseTarget {
    channel: String,
    uses: u32,
    /// The message last posted through it (what `replace_original` replaces).
    last_ts: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Socket Mode: the app-level token `apps.connections.open` accepts, and the WebSocket URL
    /// it hands out.
    app_token: Option<String>,
    ws_url: Option<String>,
    /// Socket Mode: senders to the open WebSocket connections, newest last.
    sockets: Vec<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Socket Mode: acknowledgements received, by envelope id.
    acks: HashMap<String, Value>,
    next_envelope: u64,
    calls: Vec<Call>,
    /// Calls per method, however many the history keeps.
    counts: HashMap<String, usize>,
    /// At most this many recent calls and messages are kept (see [`SlackFake::keep_recent`]).
    keep: Option<usize>,
    failures: HashMap<String, VecDeque<Failure>>,
    messages: Vec<Message>,
    groups: Vec<(String, Vec<String>)>,
    /// Groups Slack still lists, with `date_delete` set (deleted groups).
    deleted_groups: Vec<(String, Vec<String>)>,
    next_ts: u64,
    /// Channels where `chat.postMessage` / `chat.update` answer this error (bot not a member).
    refused_channels: HashMap<String, String>,
    responses: HashMap<String, ResponseTarget>,
    next_response: u64,
    /// Channels created through `conversations.create`.
    channels: Vec<Channel>,
    /// Methods answered with `missing_scope`, with the scope Slack says is `needed`.
    denied_scopes: HashMap<String, String>,
}

impl Inner {
    /// Records `call`, and forgets the oldest calls and messages beyond what is kept.
    fn push_call(&mut self, call: Call) {
        *self.counts.entry(call.method.clone()).or_default() += 1;
        self.calls.push(call);
        if let Some(keep) = self.keep {
            if self.calls.len() > 2 * keep {
                self.calls.drain(..self.calls.len() - keep);
            }
            if self.messages.len() > 2 * keep {
                self.messages.drain(..self.messages.len() - keep);
            }
        }
    }
}

/// A channel created in the fake (`conversations.create`) and what was done to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub topic: String,
    pub members: Vec<String>,
    pub pins: Vec<String>,
    pub archived: bool,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    changed: Notify,
}

/// The fake Web API. Dropping it stops the server.
pub struct SlackFake {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for SlackFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl SlackFake {
    /// Starts the fake on 127.0.0.1:0, accepting `bot_token` only.
    pub async fn start(bot_token: &str) -> SlackFake {
        let shared = Arc::new(Shared {
            token: bot_token.to_owned(),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        });
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/response/{id}", any(response_url))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Slack");
        let addr = listener.local_addr().expect("fake Slack address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackFake {
            addr,
            shared,
            server,
        }
    }

    /// The Web API base URL to configure opsbot with (`slack.api_url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new response URL for a slash command in `channel` (as Slack puts in every command).
    pub fn response_url(&self, channel: &str) -> String {
        self.hand_out_response_url(channel, None)
    }

    /// A fresh response URL for the message `ts` in `channel`, as Slack hands one out with every
    /// click on that message's buttons: `replace_original` replaces that message.
    pub fn message_response_url(&self, channel: &str, ts: &str) -> String {
        self.hand_out_response_url(channel, Some(ts))
    }

    /// A new response URL in `channel`, replacing the message `ts` (if any) when used with
    /// `replace_original`.
    fn hand_out_response_url(&self, channel: &str, ts: Option<&str>) -> String {
        let mut inner = self.inner();
        inner.next_response += 1;
        let id = format!("r{}", inner.next_response);
        inner.responses.insert(
            id.clone(),
            ResponseTarget {
                channel: channel.to_owned(),
                last_ts: ts.map(str::to_owned),
                ..ResponseTarget::default()
            },
        );
        format!("http://{}/response/{id}", self.addr)
    }

    /// A signed slash command carrying a fresh response URL of this fake.
    pub fn slash_command(
        &self,
        secret: &str,
        command: &str,
        text: &str,
        user: &str,
        channel: &str,
        trigger_id: &str,
    ) -> SignedRequest {
        let url = self.response_url(channel);
        slash_command_with_response_url(secret, command, text, user, channel, trigger_id, &url)
    }

    /// From now on `chat.postMessage` and `chat.update` in `channel` answer `ok:false` with
    /// `error` (`not_in_channel`, `channel_not_found`): the bot is not a member there.
    pub fn refuse_channel(&self, channel: &str, error: &str) {
        self.inner()
            .refused_channels
            .insert(channel.to_owned(), error.to_owned());
    }

    /// `method` answers `missing_scope` (needing `needed`) until [`SlackFake::clear_failures`].
    pub fn deny_scope(&self, method: &str, needed: &str) {
        self.inner()
            .denied_scopes
            .insert(method.to_owned(), needed.to_owned());
    }

    /// A channel that exists already (so creating one of that name is `name_taken`).
    pub fn add_channel(&self, id: &str, name: &str) {
        self.inner().channels.push(Channel {
            id: id.to_owned(),
            name: name.to_owned(),
            ..Channel::default()
        });
    }

    /// The channels created so far, oldest first.
    pub fn channels(&self) -> Vec<Channel> {
        self.inner().channels.clone()
    }

    /// Forgets every scripted failure: calls succeed again.
    pub fn clear_failures(&self) {
        let mut inner = self.inner();
        inner.failures.clear();
        inner.denied_scopes.clear();
    }

    /// The next call of `method` fails as scripted (queued: call several times for several).
    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.inner()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back(failure);
    }

    /// The user groups `usergroups.list` reports: (group id, member user ids).
    pub fn set_user_groups(&self, groups: &[(&str, &[&str])]) {
        self.inner().groups = groups
            .iter()
            .map(|(g, users)| (g.to_string(), users.iter().map(|u| u.to_string()).collect()))
            .collect();
    }

    /// Turns on Socket Mode: `apps.connections.open` with `app_token` hands out the URL of a
    /// WebSocket server the fake runs, which greets every connection with `hello`.
    pub async fn enable_socket_mode(&self, app_token: &str) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Socket Mode");
        let addr = listener.local_addr().expect("fake Socket Mode address");
        {
            let mut inner = self.inner();
            inner.app_token = Some(app_token.to_owned());
            inner.ws_url = Some(format!("ws://{addr}/link/?ticket=fake"));
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(socket_connection(shared.clone(), stream));
            }
        });
    }

    /// Waits until a Socket Mode client is connected (fails the test after `limit`).
    pub async fn wait_for_socket(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            if !self.inner().sockets.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                assert!(
                    !self.inner().sockets.is_empty(),
                    "no Socket Mode client connected within {limit:?}; calls: {:#?}",
                    self.calls()
                );
                return;
            }
        }
    }

    /// Sends an envelope (`type` and `payload`, as Slack does) over the newest Socket Mode
    /// connection; returns its envelope id.
    pub fn socket_send(&self, kind: &str, payload: Value) -> String {
        let mut inner = self.inner();
        inner.next_envelope += 1;
        let id = format!("env-{}", inner.next_envelope);
        let frame = json!({
            "envelope_id": id, "type": kind, "accepts_response_payload": kind != "events_api",
            "payload": payload,
        });
        let tx = inner
            .sockets
            .last()
            .expect("a Socket Mode connection")
            .clone();
        tx.send(frame.to_string()).expect("socket open");
        id
    }

    /// Waits for the client's acknowledgement of `envelope_id` (fails the test after `limit`).
    pub async fn socket_ack(&self, envelope_id: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(ack) = self.inner().acks.get(envelope_id) {
                return ack.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let ack = self.inner().acks.get(envelope_id).cloned();
                return ack.unwrap_or_else(|| {
                    panic!("envelope {envelope_id} not acknowledged within {limit:?}")
                });
            }
        }
    }

    /// Deleted user groups `usergroups.list` still reports (with `date_delete` set).
    pub fn set_deleted_user_groups(&self, groups: &[(&str, &[&str])]) {
        self.inner().deleted_groups = groups
            .iter()
            .map(|(g, users)| (g.to_string(), users.iter().map(|u| u.to_string()).collect()))
            .collect();
    }

    /// For benchmarks: keeps only the latest `n` calls and messages (and a count of every call,
    /// [`SlackFake::count_of`]), so the fake's memory stays flat however many requests a run
    /// sends, and the process's memory is the bot's.
    pub fn keep_recent(&self, n: usize) {
        self.inner().keep = Some(n.max(1));
    }

    /// How many calls of `method` there were, also those no longer kept.
    pub fn count_of(&self, method: &str) -> usize {
        self.inner().counts.get(method).copied().unwrap_or(0)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    /// Every call of `method` so far.
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.inner()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// The messages in the fake's channels, in posting order, as they stand now.
    /// A message a person wrote in `channel` (so it can be reacted to); returns its `ts`.
    pub fn human_message(&self, channel: &str, user: &str, text: &str) -> String {
        let mut inner = self.inner();
        inner.next_ts += 1;
        let ts = format!("1700000000.{:06}", inner.next_ts);
        inner.messages.push(Message {
            channel: channel.to_owned(),
            ts: ts.clone(),
            params: json!({ "channel": channel, "text": text, "user": user }),
            updates: 0,
            response_id: None,
        });
        ts
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner().messages.clone()
    }

    /// Waits until `pred` holds for the recorded calls and returns them (for the test's further
    /// assertions). Fails the test if `limit` passes first: a wait is itself an assertion.
    pub async fn wait_until(&self, limit: Duration, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            {
                let inner = self.inner();
                if pred(&inner.calls) {
                    return inner.calls.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let calls = self.calls();
                assert!(
                    pred(&calls),
                    "the fake Slack did not see what the test waits for within {limit:?}; \
                     calls: {calls:#?}"
                );
                return calls;
            }
        }
    }

    /// Waits until `method` was called successfully `n` times (fails the test after `limit`).
    pub async fn wait_for_ok(&self, method: &str, n: usize, limit: Duration) -> Vec<Call> {
        let method = method.to_owned();
        self.wait_until(limit, |calls| {
            calls
                .iter()
                .filter(|c| c.method == method && c.status == 200 && c.error.is_none())
                .count()
                >= n
        })
        .await
        .into_iter()
        .filter(|c| c.method == method)
        .collect()
    }
}

async fn socket_connection(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;

    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut write, mut read) = ws.split();
    let hello = json!({
        "type": "hello", "num_connections": 1,
        "connection_info": {"app_id": "A0FAKE"},
        "debug_info": {"host": "fake-socket", "approximate_connection_time": 18060}
    });
    if write.send(Frame::text(hello.to_string())).await.is_err() {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    shared
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sockets
        .push(tx);
    shared.changed.notify_waiters();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => {
                    if write.send(Frame::text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            incoming = read.next() => match incoming {
                Some(Ok(Frame::Text(text))) => {
                    if let Ok(ack) = serde_json::from_str::<Value>(text.as_str())
                        && let Some(id) = ack.get("envelope_id").and_then(Value::as_str)
                    {
                        shared
                            .inner
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .acks
                            .insert(id.to_owned(), ack.clone());
                        shared.changed.notify_waiters();
                    }
                }
                Some(Ok(Frame::Ping(data))) => {
                    let _ = write.send(Frame::Pong(data)).await;
                }
                Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A Socket Mode `slash_commands` payload.
pub fn socket_slash_command(
    command: &str,
    text: &str,
    user: &str,
    channel: &str,
    trigger_id: &str,
) -> Value {
    json!({
        "token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0FAKE", "team_domain": "example",
        "channel_id": channel, "channel_name": "ops", "user_id": user,
        "user_name": user.to_lowercase(), "command": command, "text": text,
        "api_app_id": "A0FAKE", "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.com/commands/T0FAKE/1/abc", "trigger_id": trigger_id
    })
}

/// A Socket Mode `interactive` payload: a `block_actions` click.
pub fn socket_button_click(
    action_id: &str,
    value: &str,
    user: &str,
    channel: &str,
    message_ts: &str,
    action_ts: &str,
) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "token": "gIkuvaNzQIHg97ATvDxqgjtO",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": format!("{action_ts}.trigger"),
        "team": {"id": "T0FAKE", "domain": "example"},
        "channel": {"id": channel, "name": "ops"},
        "response_url": "https://hooks.slack.com/actions/T0FAKE/1/abc",
        "actions": [{
            "action_id": action_id, "block_id": "b1", "type": "button", "value": value,
            "text": {"type": "plain_text", "text": action_id}, "action_ts": action_ts
        }]
    })
}

fn slack_error(error: &str) -> Response {
    axum::Json(json!({ "ok": false, "error": error })).into_response()
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = serde_json::Map::new();
    if let Some(q) = query {
        for (k, v) in form_pairs(q.as_bytes()) {
            params.insert(k, v);
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => params.extend(m),
            _ => return record(&shared, &method, None, params, 200, Some("invalid_json")),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in form_pairs(&body) {
            params.insert(k, v);
        }
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| {
            params
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let expected = if method == "apps.connections.open" {
        shared
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .app_token
            .clone()
            .unwrap_or_default()
    } else {
        shared.token.clone()
    };
    if token.as_deref() != Some(expected.as_str()) || expected.is_empty() {
        let error = if token.is_none() {
            "not_authed"
        } else {
            "invalid_auth"
        };
        return record(&shared, &method, token, params, 200, Some(error));
    }

    let mut failure = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .failures
            .get_mut(&method)
            .and_then(VecDeque::pop_front)
    };
    if let Some(Failure::Hang(d)) = failure {
        tokio::time::sleep(d).await;
        failure = None;
    }
    match failure {
        Some(Failure::Error(e)) => return record(&shared, &method, token, params, 200, Some(&e)),
        Some(Failure::RateLimited { retry_after_secs }) => {
            record(&shared, &method, token, params, 429, Some("ratelimited"));
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                axum::Json(json!({ "ok": false, "error": "ratelimited" })),
            )
                .into_response();
        }
        Some(Failure::Status(s)) => {
            record(&shared, &method, token, params, s, None);
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "upstream trouble").into_response();
        }
        Some(Failure::Hang(_)) | None => {}
    }

    let denied = {
        let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.denied_scopes.get(&method).cloned()
    };
    if let Some(needed) = denied {
        record(&shared, &method, token, params, 200, Some("missing_scope"));
        return axum::Json(json!({
            "ok": false, "error": "missing_scope", "needed": needed,
            "provided": "commands,chat:write,usergroups:read"
        }))
        .into_response();
    }
    let answer = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        answer(&mut inner, &method, &params)
    };
    match answer {
        Ok(body) => {
            record(&shared, &method, token, params, 200, None);
            axum::Json(body).into_response()
        }
        Err(e) => record(&shared, &method, token, params, 200, Some(e)),
    }
}

/// `POST /response/{id}`: a slash command's response URL.
async fn response_url(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let params = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (status, error) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        let failure = inner
            .failures
            .get_mut("response_url")
            .and_then(VecDeque::pop_front);
        match failure {
            Some(Failure::Error(e)) => (200, Some(e)),
            Some(Failure::Status(s)) => (s, Some(format!("HTTP {s}"))),
            Some(Failure::RateLimited { .. }) => (429, Some("ratelimited".to_owned())),
            // Hangs are for Web API methods only.
            Some(Failure::Hang(_)) | None => respond(&mut inner, &id, &params),
        }
    };
    {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.push_call(Call {
            method: "response_url".to_owned(),
            token,
            params: Value::Object(params),
            status,
            error: error.clone(),
            at: Instant::now(),
            response_id: Some(id),
        });
    }
    shared.changed.notify_waiters();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match error {
        None => axum::Json(json!({"ok": true})).into_response(),
        Some(e) if status == StatusCode::OK => slack_error(&e),
        Some(e) => (status, e).into_response(),
    }
}

/// What Slack does with a post to response URL `id`: (status, error).
fn respond(
    inner: &mut Inner,
    id: &str,
    params: &serde_json::Map<String, Value>,
) -> (u16, Option<String>) {
    let Some(target) = inner.responses.get(id).cloned() else {
        return (404, Some("no_such_url".to_owned()));
    };
    if target.uses >= RESPONSE_URL_USES {
        return (404, Some("used_url".to_owned()));
    }
    if params.get("text").is_none() && params.get("blocks").is_none() {
        return (200, Some("no_text".to_owned()));
    }
    let replace = params.get("replace_original") == Some(&json!(true));
    let existing = target.last_ts.clone().filter(|_| replace).and_then(|ts| {
        inner
            .messages
            .iter()
            .position(|m| m.channel == target.channel && m.ts == ts)
    });
    let ts = match existing {
        Some(i) => {
            let m = &mut inner.messages[i];
            m.params = Value::Object(params.clone());
            m.updates += 1;
            m.ts.clone()
        }
        None => {
            inner.next_ts += 1;
            let ts = format!("1700000000.{:06}", inner.next_ts);
            inner.messages.push(Message {
                channel: target.channel.clone(),
                ts: ts.clone(),
                params: Value::Object(params.clone()),
                updates: 0,
                response_id: Some(id.to_owned()),
            });
            ts
        }
    };
    if let Some(t) = inner.responses.get_mut(id) {
        t.uses += 1;
        t.last_ts = Some(ts);
    }
    (200, None)
}

fn answer(
    inner: &mut Inner,
    method: &str,
    params: &serde_json::Map<String, Value>,
) -> Result<Value, &'static str> {
    let str_param = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
    if matches!(
        method,
        "chat.postMessage" | "chat.update" | "chat.postEphemeral"
    ) {
        let refused = str_param("channel").and_then(|c| inner.refused_channels.get(&c).cloned());
        if let Some(error) = refused {
            return Err(match error.as_str() {
                "not_in_channel" => "not_in_channel",
                "channel_not_found" => "channel_not_found",
                _ => "restricted_action",
            });
        }
    }
    match method {
        "apps.connections.open" => {
            let url = inner.ws_url.clone().ok_or("not_allowed_token_type")?;
            Ok(json!({"ok": true, "url": url}))
        }
        "auth.test" => {
            Ok(json!({"ok": true, "team_id": "T0FAKE", "user_id": "UBOT", "bot_id": "BFAKE"}))
        }
        "chat.postMessage" => {
            let channel = str_param("channel")
                .filter(|c| !c.is_empty())
                .ok_or("channel_not_found")?;
            if str_param("text").is_none() && params.get("blocks").is_none() {
                return Err("no_text");
            }
            inner.next_ts += 1;
            let ts = format!("1700000000.{:06}", inner.next_ts);
            inner.messages.push(Message {
                channel: channel.clone(),
                ts: ts.clone(),
                params: Value::Object(params.clone()),
                updates: 0,
                response_id: None,
            });
            let mut message = params.clone();
            message.remove("channel");
            message.insert("ts".into(), json!(ts));
            message.insert("type".into(), json!("message"));
            message.insert("bot_id".into(), json!("BFAKE"));
            Ok(json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
        }
        "chat.postEphemeral" => {
            // Shown to `user` only: recorded as a call, never as a message in the channel.
            str_param("channel")
                .filter(|c| !c.is_empty())
                .ok_or("channel_not_found")?;
            str_param("user")
                .filter(|u| !u.is_empty())
                .ok_or("user_not_in_channel")?;
            if str_param("text").is_none() && params.get("blocks").is_none() {
                return Err("no_text");
            }
            inner.next_ts += 1;
            Ok(json!({"ok": true, "message_ts": format!("1700000000.{:06}", inner.next_ts)}))
        }
        "chat.update" => {
            let channel = str_param("channel").ok_or("channel_not_found")?;
            let ts = str_param("ts").ok_or("message_not_found")?;
            let msg = inner
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
                .ok_or("message_not_found")?;
            msg.params = Value::Object(params.clone());
            msg.updates += 1;
            let mut message = params.clone();
            message.remove("channel");
            message.remove("ts");
            Ok(
                json!({"ok": true, "channel": channel, "ts": ts, "text": params.get("text"), "message": message}),
            )
        }
        "usergroups.list" => {
            let include_users = str_param("include_users").as_deref() == Some("true")
                || params.get("include_users") == Some(&json!(true));
            let live = inner.groups.iter().map(|g| (g, 0));
            let deleted = inner.deleted_groups.iter().map(|g| (g, 1_650_000_000));
            let groups: Vec<Value> = live
                .chain(deleted)
                .map(|((id, users), date_delete)| {
                    let mut g = json!({
                        "id": id, "team_id": "T0FAKE", "is_usergroup": true, "name": id,
                        "handle": id.to_lowercase(), "is_external": false, "date_create": 1_600_000_000,
                        "date_update": 1_600_000_100, "date_delete": date_delete, "auto_type": null,
                        "description": "", "updated_by": "U0ADMIN", "deleted_by": null,
                        "created_by": "U0ADMIN", "prefs": {"channels": [], "groups": []},
                        "user_count": users.len(),
                    });
                    if include_users {
                        g["users"] = json!(users);
                    }
                    g
                })
                .collect();
            Ok(json!({"ok": true, "usergroups": groups}))
        }
        "conversations.create" => {
            let name = str_param("name").ok_or("invalid_name_required")?;
            let valid = !name.is_empty()
                && name.len() <= 80
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
            if !valid {
                return Err("invalid_name_specials");
            }
            if inner.channels.iter().any(|c| c.name == name) {
                return Err("name_taken");
            }
            let id = format!("C0INC{:04}", inner.channels.len() + 1);
            inner.channels.push(Channel {
                id: id.clone(),
                name: name.clone(),
                members: vec!["UBOT".to_owned()],
                ..Channel::default()
            });
            Ok(json!({"ok": true, "channel": {
                "id": id, "name": name, "is_channel": true, "is_private": false,
                "is_archived": false, "creator": "UBOT", "created": 1_700_000_000,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0}
            }}))
        }
        "conversations.setTopic"
        | "conversations.invite"
        | "conversations.archive"
        | "pins.add" => {
            let channel_id = str_param("channel").ok_or("channel_not_found")?;
            let channel = inner
                .channels
                .iter_mut()
                .find(|c| c.id == channel_id)
                .ok_or("channel_not_found")?;
            if channel.archived {
                return Err("is_archived");
            }
            match method {
                "conversations.setTopic" => {
                    let topic = str_param("topic").unwrap_or_default();
                    if topic.chars().count() > 250 {
                        return Err("too_long");
                    }
                    channel.topic = topic;
                }
                "conversations.invite" => {
                    let users = str_param("users").ok_or("no_user")?;
                    let mut added = false;
                    for u in users.split(',').filter(|u| !u.is_empty()) {
                        if !channel.members.iter().any(|m| m == u) {
                            channel.members.push(u.to_owned());
                            added = true;
                        }
                    }
                    if !added {
                        return Err("already_in_channel");
                    }
                }
                "conversations.archive" => channel.archived = true,
                _ => {
                    let ts = str_param("timestamp").ok_or("no_item_specified")?;
                    if channel.pins.contains(&ts) {
                        return Err("already_pinned");
                    }
                    channel.pins.push(ts);
                }
            }
            Ok(json!({"ok": true}))
        }
        "reactions.get" => {
            let channel = str_param("channel").ok_or("channel_not_found")?;
            let ts = str_param("timestamp").ok_or("no_item_specified")?;
            let msg = inner
                .messages
                .iter()
                .find(|m| m.channel == channel && m.ts == ts)
                .ok_or("message_not_found")?;
            let text = msg.params.get("text").cloned().unwrap_or(json!(""));
            Ok(
                json!({"ok": true, "type": "message", "channel": channel, "message": {
                    "type": "message", "ts": ts, "text": text,
                    "reactions": [{"name": "pushpin", "count": 1, "users": ["U0ALICE"]}]
                }}),
            )
        }
        "usergroups.users.list" => {
            let id = str_param("usergroup").ok_or("no_such_subteam")?;
            let users = inner
                .groups
                .iter()
                .find(|(g, _)| *g == id)
                .map(|(_, u)| u.clone())
                .ok_or("no_such_subteam")?;
            Ok(json!({"ok": true, "users": users}))
        }
        _ => Err("unknown_method"),
    }
}

fn record(
    shared: &Shared,
    method: &str,
    token: Option<String>,
    params: serde_json::Map<String, Value>,
    status: u16,
    error: Option<&str>,
) -> Response {
    {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.push_call(Call {
            method: method.to_owned(),
            token,
            params: Value::Object(params),
            status,
            error: error.map(str::to_owned),
            at: Instant::now(),
            response_id: None,
        });
    }
    shared.changed.notify_waiters();
    match error {
        Some(e) if status == 200 => slack_error(e),
        _ => StatusCode::OK.into_response(),
    }
}

/// Decodes `application/x-www-form-urlencoded`; values that are JSON arrays or objects (Slack
/// clients send `blocks` that way) are decoded too.
fn form_pairs(body: &[u8]) -> Vec<(String, Value)> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(body);
    pairs
        .into_iter()
        .map(|(k, v)| {
            let value = if v.starts_with('[') || v.starts_with('{') {
                serde_json::from_str(&v).unwrap_or(Value::String(v))
            } else {
                Value::String(v)
            };
            (k, value)
        })
        .collect()
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k = percent_decode(it.next().unwrap_or_default());
            let v = percent_decode(it.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a form value as Slack does.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `X-Slack-Signature` Slack sends for `body` at `timestamp`.
pub fn sign(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Seconds since the Unix epoch, as Slack's timestamp header carries them.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A request as Slack would send it to opsbot.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub timestamp: String,
    pub signature: String,
    pub retry_num: Option<u32>,
}

impl SignedRequest {
    /// Signs `body` with `secret` at the current time.
    pub fn new(
        path: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
        secret: &str,
    ) -> Self {
        let timestamp = now_secs().to_string();
        let signature = sign(secret, &timestamp, &body);
        SignedRequest {
            path,
            content_type,
            body,
            timestamp,
            signature,
            retry_num: None,
        }
    }

    /// Signs at `timestamp` instead of now.
    pub fn at(mut self, timestamp: i64, secret: &str) -> Self {
        self.timestamp = timestamp.to_string();
        self.signature = sign(secret, &self.timestamp, &self.body);
        self
    }

    /// Sends it to the bot at `base` (e.g. `http://127.0.0.1:PORT`).
    pub async fn send(&self, http: &reqwest::Client, base: &str) -> reqwest::Response {
        http.execute(self.build(http, base))
            .await
            .expect("send to opsbot")
    }

    /// The request, ready to send to the bot at `base`.
    pub fn build(&self, http: &reqwest::Client, base: &str) -> reqwest::Request {
        let mut req = http
            .post(format!("{base}{}", self.path))
            .header("content-type", self.content_type)
            .header("x-slack-request-timestamp", &self.timestamp)
            .header("x-slack-signature", &self.signature)
            .body(self.body.clone());
        if let Some(n) = self.retry_num {
            req = req
                .header("x-slack-retry-num", n.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        req.build().expect("a valid request")
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// A signed `/ops` (or other) slash command from `user` in `channel`, with a response URL on
/// Slack's host (never called in tests: use [`SlackFake::slash_command`] where replies may go
/// through the response URL).
pub fn slash_command(
    secret: &str,
    command: &str,
    text: &str,
    user: &str,
    channel: &str,
    trigger_id: &str,
) -> SignedRequest {
    slash_command_with_response_url(
        secret,
        command,
        text,
        user,
        channel,
        trigger_id,
        "https://hooks.slack.com/commands/T0FAKE/1/abc",
    )
}

/// A signed slash command whose `response_url` is `response_url` (e.g. one of
/// [`SlackFake::response_url`]).
pub fn slash_command_with_response_url(
    secret: &str,
    command: &str,
    text: &str,
    user: &str,
    channel: &str,
    trigger_id: &str,
    response_url: &str,
) -> SignedRequest {
    let body = form_encode(&[
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", "T0FAKE"),
        ("team_domain", "example"),
        ("channel_id", channel),
        ("channel_name", "ops"),
        ("user_id", user),
        ("user_name", &user.to_lowercase()),
        ("command", command),
        ("text", text),
        ("api_app_id", "A0FAKE"),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id),
    ]);
    SignedRequest::new("/slack/commands", FORM, body.into_bytes(), secret)
}

/// A signed `block_actions` click on button `action_id` (value `value`) of message `message_ts`.
pub fn button_click(
    secret: &str,
    action_id: &str,
    value: &str,
    user: &str,
    channel: &str,
    message_ts: &str,
    action_ts: &str,
) -> SignedRequest {
    let response_url = "https://hooks.slack.com/actions/T0FAKE/1/abc";
    button_click_with_response_url(
        secret,
        action_id,
        value,
        user,
        (channel, message_ts),
        action_ts,
        response_url,
    )
}

/// A signed button click on the message `(channel, ts)` whose `response_url` is `response_url`
/// (e.g. one of [`SlackFake::message_response_url`]).
pub fn button_click_with_response_url(
    secret: &str,
    action_id: &str,
    value: &str,
    user: &str,
    (channel, message_ts): (&str, &str),
    action_ts: &str,
    response_url: &str,
) -> SignedRequest {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "token": "gIkuvaNzQIHg97ATvDxqgjtO",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": format!("{action_ts}.trigger"),
        "team": {"id": "T0FAKE", "domain": "example"},
        "channel": {"id": channel, "name": "ops"},
        "message": {"type": "message", "ts": message_ts, "text": "approval"},
        "response_url": response_url,
        "actions": [{
            "action_id": action_id, "block_id": "b1", "type": "button", "value": value,
            "text": {"type": "plain_text", "text": action_id}, "action_ts": action_ts
        }]
    });
    let body = form_encode(&[("payload", &payload.to_string())]);
    SignedRequest::new("/slack/interactions", FORM, body.into_bytes(), secret)
}

/// A signed Events API `url_verification` request.
pub fn url_verification(secret: &str, challenge: &str) -> SignedRequest {
    let body = json!({"token": "x", "challenge": challenge, "type": "url_verification"});
    SignedRequest::new(
        "/slack/events",
        "application/json",
        body.to_string().into_bytes(),
        secret,
    )
}

/// An Events API `reaction_added` delivery, signed: `user` reacted with `reaction` to the
/// message `ts` in `channel`.
pub fn reaction_added(
    secret: &str,
    user: &str,
    channel: &str,
    ts: &str,
    reaction: &str,
) -> SignedRequest {
    let body = json!({
        "token": "x", "team_id": "T0FAKE", "api_app_id": "A0FAKE", "type": "event_callback",
        // One id per event (a retry of this request carries the same).
        "event_id": format!("Ev{}{user}{reaction}", ts.replace('.', "")), "event_time": now_secs(),
        "event": {
            "type": "reaction_added", "user": user, "reaction": reaction, "item_user": "U0BOB",
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": format!("{}.000100", now_secs()),
        }
    });
    SignedRequest::new(
        "/slack/events",
        "application/json",
        body.to_string().into_bytes(),
        secret,
    )
}
