//! The HTTP front: routing real Kubernetes paths onto the store.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::Shared;
use crate::error::ApiError;
use crate::faults::Injected;
use crate::objects::{apply_defaults, event_from_new, event_to_new, validate};
use crate::patch::{PatchKind, apply_patch, parse_body};
use crate::resources::{self, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{WatchEvent, name_of, ns_of, rv_of};
use crate::{discovery, logs, table};

/// A parsed resource path.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub def: &'static ResourceDef,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

type Query = HashMap<String, String>;

fn parse_query(uri: &Uri) -> Query {
    let mut q = HashMap::new();
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        q.insert(percent_decode(k), percent_decode(v));
    }
    q
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
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

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .unwrap_or_default()
}

pub(crate) fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Parse `/api/v1/...` and `/apis/{g}/{v}/...` resource paths.
pub(crate) fn parse_target(path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let (group, version, rest) = match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 3 => ("", segs[1].as_str(), &segs[2..]),
        Some("apis") if segs.len() >= 4 => (segs[1].as_str(), segs[2].as_str(), &segs[3..]),
        _ => return Ok(None),
    };
    let not_found = || ApiError::not_found_path(path);
    // /namespaces/{ns}/{plural}/...
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(def) = resources::lookup(group, version, &rest[2]).filter(|d| d.namespaced)
    {
        if rest.len() > 5 {
            return Err(not_found());
        }
        return Ok(Some(Target {
            def,
            ns: Some(rest[1].clone()),
            name: rest.get(3).cloned(),
            sub: rest.get(4).cloned(),
        }));
    }
    let def = resources::lookup(group, version, &rest[0]).ok_or_else(not_found)?;
    if rest.len() > 3 || (def.namespaced && rest.len() > 1) {
        return Err(not_found());
    }
    Ok(Some(Target {
        def,
        ns: None,
        name: rest.get(1).cloned(),
        sub: rest.get(2).cloned(),
    }))
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> &'static str {
    let watch = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    match (method.as_str(), t.name.is_some()) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// The one request handler.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path().starts_with("/kubesim/") {
        return crate::control::handle(&shared, &method, &uri).await;
    }
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = uri.path().to_string();
    match shared.faults.take_failure(&path) {
        Some(Injected::ServerError) => {
            return error_response(&ApiError::internal(
                "an error on the server (\"injected fault\") has prevented the request from succeeding",
            ));
        }
        Some(Injected::TooManyRequests) => return error_response(&ApiError::too_many_requests(1)),
        None => {}
    }
    match route(&shared, &method, &uri, &headers, &body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path();
    if let Some(r) = discovery::handle(shared, method, path) {
        return Ok(r);
    }
    let Some(t) = parse_target(path)? else {
        return Err(ApiError::not_found_path(path));
    };
    let q = parse_query(uri);
    let verb = verb_of(method, &t, &q);
    let resource = match &t.sub {
        Some(s) => format!("{}/{}", t.def.plural, s),
        None => t.def.plural.to_string(),
    };
    if shared.faults.is_forbidden(verb, &resource)
        || shared.faults.is_forbidden(verb, t.def.plural) && t.sub.is_none()
    {
        return Err(ApiError::forbidden(
            t.def,
            t.name.as_deref().unwrap_or(""),
            verb,
            t.ns.as_deref(),
        ));
    }
    if let Some(sub) = &t.sub
        && !t.def.has(sub)
    {
        return Err(ApiError::not_found_path(path));
    }
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let ctx = Req {
        shared,
        t: &t,
        q: &q,
        headers,
        dry_run,
    };
    match (method.as_str(), t.name.is_some(), t.sub.as_deref()) {
        ("GET", false, _) if verb == "watch" => ctx.watch(),
        ("GET", false, _) => ctx.list(),
        ("GET", true, Some("log")) => ctx.log(),
        ("GET", true, Some("scale")) => ctx.get_scale().map(|v| json_response(200, &v)),
        ("GET", true, _) => ctx.get(),
        ("POST", false, _) => ctx.create(body),
        ("PUT", true, Some("scale")) => ctx.put_scale(body),
        ("PUT", true, _) => ctx.replace(body),
        ("PATCH", true, _) => ctx.patch(body),
        ("DELETE", true, None) => ctx.delete(body),
        ("DELETE", false, None) if t.def.kind != "Namespace" => ctx.delete_collection(),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        ))),
    }
}

struct Req<'a> {
    shared: &'a Arc<Shared>,
    t: &'a Target,
    q: &'a Query,
    headers: &'a HeaderMap,
    dry_run: bool,
}

/// Convert a stored object to the view of the requested resource (events.k8s.io/v1 is a view of core events).
pub(crate) fn to_view(def: &ResourceDef, obj: Value) -> Value {
    if def.group == "events.k8s.io" {
        event_to_new(&obj)
    } else {
        obj
    }
}

fn from_view(def: &ResourceDef, obj: Value) -> Value {
    if def.group == "events.k8s.io" {
        event_from_new(&obj)
    } else {
        obj
    }
}

/// The def the objects are stored under (core events for events.k8s.io).
fn storage_def(def: &'static ResourceDef) -> &'static ResourceDef {
    resources::by_storage(def.storage).unwrap_or(def)
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

impl Req<'_> {
    fn ns(&self) -> &str {
        self.t.ns.as_deref().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.t.name.as_deref().unwrap_or("")
    }

    fn sdef(&self) -> &'static ResourceDef {
        storage_def(self.t.def)
    }

    fn now(&self) -> jiff::Timestamp {
        self.shared.clock.now()
    }

    fn current(&self) -> Result<Value, ApiError> {
        self.shared
            .store
            .get(self.sdef(), self.ns(), self.name())
            .ok_or_else(|| ApiError::not_found(self.t.def, self.name()))
    }

    fn respond(&self, code: u16, obj: Value) -> Result<Response, ApiError> {
        let v = to_view(self.t.def, obj);
        if wants_table(self.headers) {
            return Ok(json_response(
                code,
                &table::table(self.t.def, std::slice::from_ref(&v), None, self.now()),
            ));
        }
        Ok(json_response(code, &v))
    }

    fn get(&self) -> Result<Response, ApiError> {
        let obj = self.current()?;
        self.respond(200, obj)
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let ls = LabelSelector::parse(
            self.q
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or(""),
        )?;
        let fs = FieldSelector::parse(
            self.q
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or(""),
        )?;
        Ok((ls, fs))
    }

    /// The stored objects in the request's namespace (or all) matching both selectors, sorted
    /// by (namespace, name), and the list resourceVersion. A field selector's `path=value` term
    /// on an indexed field is answered from the index.
    fn select(&self, ls: &LabelSelector, fs: &FieldSelector) -> (Vec<Value>, u64) {
        let def = self.t.def;
        // Field selectors see the served view of an object; only the stored one is indexed.
        let same_view = def.group != "events.k8s.io";
        let keep = |o: &Value| {
            ls.matches(o)
                && (fs.is_empty_sel()
                    || if same_view {
                        fs.matches(o)
                    } else {
                        fs.matches(&to_view(def, o.clone()))
                    })
        };
        let store = &self.shared.store;
        let ns = self.t.ns.as_deref();
        let indexed = fs
            .equalities()
            .filter(|_| same_view)
            .find_map(|(path, value)| store.list_by_field(self.sdef(), ns, path, value, keep));
        match indexed {
            Some(found) => found,
            None => store.list_filtered(self.sdef(), ns, keep),
        }
    }

    fn list(&self) -> Result<Response, ApiError> {
        let (ls, fs) = self.selectors()?;
        let def = self.t.def;
        let (items, rv) = self.select(&ls, &fs);
        let mut items: Vec<Value> = items.into_iter().map(|o| to_view(def, o)).collect();
        let start = match self.q.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let (ns, name) = decode_continue(token)
                    .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
                items
                    .iter()
                    .position(|o| (ns_of(o), name_of(o)) > (ns.as_str(), name.as_str()))
                    .unwrap_or(items.len())
            }
            None => 0,
        };
        items.drain(..start);
        let limit = self
            .q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if let Some(limit) = limit
            && items.len() > limit
        {
            let remaining = items.len() - limit;
            items.truncate(limit);
            let last = items.last().expect("limit > 0");
            meta["continue"] = json!(encode_continue(ns_of(last), name_of(last)));
            meta["remainingItemCount"] = json!(remaining);
        }
        if wants_table(self.headers) {
            return Ok(json_response(
                200,
                &table::table(def, &items, Some(meta), self.now()),
            ));
        }
        Ok(json_response(
            200,
            &json!({
                "kind": format!("{}List", def.kind),
                "apiVersion": def.api_version(),
                "metadata": meta,
                "items": items,
            }),
        ))
    }

    fn watch(&self) -> Result<Response, ApiError> {
        let (ls, fs) = self.selectors()?;
        let def = self.t.def;
        let since = self
            .q
            .get("resourceVersion")
            .filter(|v| !v.is_empty() && *v != "0");
        // Streaming lists: the current state as ADDED events, then a bookmark marking its end.
        let initial = self.q.get("sendInitialEvents").is_some_and(|v| v == "true");
        let since = since.filter(|_| !initial);
        let (backlog, rx): (VecDeque<WatchEvent>, broadcast::Receiver<WatchEvent>) = match since {
            Some(rv) => {
                let rv: u64 = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {rv:?}"))
                })?;
                let (b, rx) = self.shared.store.watch(Some(rv))?;
                (b.into(), rx)
            }
            None => {
                let (items, rv, rx) = self
                    .shared
                    .store
                    .list_and_watch(self.sdef(), self.t.ns.as_deref());
                let b = items
                    .into_iter()
                    .map(|o| WatchEvent {
                        storage: def.storage,
                        event_type: "ADDED",
                        object: Arc::new(o),
                        rv,
                        prev: None,
                    })
                    .collect::<VecDeque<_>>();
                let mut b = b;
                if initial {
                    b.push_back(WatchEvent {
                        storage: def.storage,
                        event_type: "BOOKMARK",
                        object: Arc::new(json!({
                            "kind": def.kind,
                            "apiVersion": def.api_version(),
                            "metadata": {
                                "resourceVersion": rv.to_string(),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        })),
                        rv,
                        prev: None,
                    });
                }
                (b, rx)
            }
        };
        let timeout = self
            .q
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(1800);
        let st = WatchState {
            backlog,
            rx,
            // A timeout past what `Instant` can hold means no timeout worth the name.
            deadline: {
                let now = tokio::time::Instant::now();
                now.checked_add(std::time::Duration::from_secs(timeout))
                    .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 86_400))
            },
            def,
            ns: self.t.ns.clone(),
            ls,
            fs,
            table: wants_table(self.headers),
            shared: self.shared.clone(),
        };
        let stream = futures::stream::unfold(st, |mut st| async move {
            loop {
                if let Some(ev) = st.backlog.pop_front() {
                    if let Some(line) = st.render(&ev) {
                        return Some((Ok::<Bytes, Infallible>(Bytes::from(line)), st));
                    }
                    continue;
                }
                match tokio::time::timeout_at(st.deadline, st.rx.recv()).await {
                    Ok(Ok(ev)) => st.backlog.push_back(ev),
                    _ => return None,
                }
            }
        });
        Ok(Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(Body::from_stream(stream))
            .unwrap_or_default())
    }

    fn parse_object(&self, body: &[u8]) -> Result<Value, ApiError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let v: Value = if crate::protobuf::is_protobuf(ct) {
            crate::protobuf::decode_object(body)?
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the object provided is unrecognized or malformed: {e}"
                ))
            })?
        };
        if !v.is_object() {
            return Err(ApiError::bad_request(
                "the object provided is not a JSON object",
            ));
        }
        if let Some(k) = v.get("kind").and_then(Value::as_str)
            && k != self.t.def.kind
            && self.t.sub.is_none()
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({k}) does not match the kind of the resource ({})",
                self.t.def.kind
            )));
        }
        Ok(v)
    }

    fn check_namespace(&self, obj: &mut Value) -> Result<(), ApiError> {
        if !self.t.def.namespaced {
            return Ok(());
        }
        let url_ns = self.ns();
        if url_ns.is_empty() {
            return Err(ApiError::bad_request(
                "namespace is required for a namespaced resource",
            ));
        }
        let body_ns = ns_of(obj);
        if !body_ns.is_empty() && body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(url_ns);
        if self
            .shared
            .store
            .get(resources::namespaces(), "", url_ns)
            .is_none()
        {
            return Err(ApiError::not_found(resources::namespaces(), url_ns));
        }
        Ok(())
    }

    fn create(&self, body: &[u8]) -> Result<Response, ApiError> {
        if self.t.sub.is_some() {
            return Err(ApiError::method_not_allowed(
                "create is not supported on this subresource",
            ));
        }
        let mut obj = self.parse_object(body)?;
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        self.check_namespace(&mut obj)?;
        if name_of(&obj).is_empty()
            && let Some(g) = obj["metadata"]["generateName"]
                .as_str()
                .filter(|g| !g.is_empty())
        {
            obj["metadata"]["name"] = json!(format!("{g}{}", crate::controllers::random_suffix()));
        }
        let mut obj = from_view(self.t.def, obj);
        if self.sdef().has("status")
            && self.t.def.kind != "Namespace"
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove(k);
            }
        }
        if !self.sdef().namespaced
            && let Some(m) = obj["metadata"].as_object_mut()
        {
            m.remove("namespace");
        }
        crate::objects::check_shape(self.sdef(), &obj)?;
        self.strict_fields(&obj)?;
        crate::objects::drop_unknown(self.sdef(), &mut obj);
        apply_defaults(self.sdef(), &mut obj);
        validate(self.sdef(), &obj, None)?;
        let created = self
            .shared
            .store
            .create(self.sdef(), obj, self.now(), self.dry_run)?;
        if !self.dry_run {
            self.shared.kick.notify_one();
        }
        self.respond(201, created)
    }

    /// `fieldValidation=Strict` (kubectl's default): unknown fields are a 400 like the API server's.
    fn strict_fields(&self, obj: &Value) -> Result<(), ApiError> {
        if self.q.get("fieldValidation").map(String::as_str) != Some("Strict") {
            return Ok(());
        }
        let unknown = crate::objects::unknown_fields(self.sdef(), obj);
        if unknown.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            self.sdef().kind,
            self.sdef().api_version(),
            self.sdef().kind,
            list.join(", ")
        )))
    }

    fn check_name(&self, obj: &Value) -> Result<(), ApiError> {
        let n = name_of(obj);
        if !n.is_empty() && n != self.name() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                self.name()
            )));
        }
        Ok(())
    }

    /// Store `new` in place of `old`, honouring the status subresource split.
    fn commit(&self, old: &Value, mut new: Value) -> Result<Value, ApiError> {
        let sdef = self.sdef();
        new["metadata"]["name"] = json!(self.name());
        if sdef.namespaced {
            new["metadata"]["namespace"] = json!(self.ns());
        }
        match self.t.sub.as_deref() {
            Some("status") => {
                let mut o = old.clone();
                o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                o["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
                new = o;
            }
            _ if sdef.has("status") => {
                if let Some(s) = old.get("status") {
                    new["status"] = s.clone();
                } else if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
            _ => {}
        }
        crate::objects::check_shape(sdef, &new)?;
        self.strict_fields(&new)?;
        crate::objects::drop_unknown(sdef, &mut new);
        if self.t.sub.is_none() {
            apply_defaults(sdef, &mut new);
            validate(sdef, &new, Some(old))?;
        }
        let out = self.shared.store.update(sdef, new, true, self.dry_run)?;
        if !self.dry_run {
            self.shared.kick.notify_one();
        }
        Ok(out)
    }

    fn replace(&self, body: &[u8]) -> Result<Response, ApiError> {
        let obj = self.parse_object(body)?;
        self.check_name(&obj)?;
        let old = self.current()?;
        let mut obj = from_view(self.t.def, obj);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let ns = ns_of(&obj);
        if self.t.def.namespaced && !ns.is_empty() && ns != self.ns() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let out = self.commit(&old, obj)?;
        self.respond(200, out)
    }

    fn patch(&self, body: &[u8]) -> Result<Response, ApiError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let kind =
            PatchKind::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
        let patch = parse_body(kind, body)?;
        // Like the API server, a patch that does not pin a resourceVersion is retried when a
        // controller wrote in between.
        let pinned = patch.to_string().contains("resourceVersion");
        let mut attempt = 0;
        loop {
            match self.patch_once(kind, &patch) {
                Err(e) if e.reason == "Conflict" && !pinned && attempt < 5 => attempt += 1,
                r => return r,
            }
        }
    }

    fn patch_once(&self, kind: PatchKind, patch: &Value) -> Result<Response, ApiError> {
        let patch = patch.clone();
        if kind == PatchKind::Apply && !patch.is_object() {
            return Err(ApiError::bad_request("apply patch must be an object"));
        }
        if self.t.sub.as_deref() == Some("scale") {
            let scale = self.get_scale()?;
            let patched = apply_patch(kind, &scale, &patch)?;
            return self.write_scale(patched);
        }
        let old = match self.current() {
            Ok(o) => o,
            // Server-side apply creates what does not exist yet.
            Err(_) if kind == PatchKind::Apply && self.t.sub.is_none() => {
                let mut obj = patch;
                if !obj.get("metadata").is_some_and(Value::is_object) {
                    obj["metadata"] = json!({});
                }
                self.check_name(&obj)?;
                obj["metadata"]["name"] = json!(self.name());
                return self.create(&serde_json::to_vec(&obj).unwrap_or_default());
            }
            Err(e) => return Err(e),
        };
        if kind == PatchKind::Apply {
            self.check_name(&patch)?;
        }
        let view = to_view(self.t.def, old.clone());
        let patched = apply_patch(kind, &view, &patch)?;
        if !patched.is_object() {
            return Err(ApiError::bad_request("patch result is not an object"));
        }
        if name_of(&patched) != self.name() {
            return Err(ApiError::invalid(
                self.t.def,
                self.name(),
                &[(
                    "metadata.name".into(),
                    "Invalid value: field is immutable".into(),
                )],
            ));
        }
        let sent_rv = rv_of(&patched);
        if !sent_rv.is_empty() && sent_rv != rv_of(&old) {
            return Err(ApiError::conflict(self.t.def, self.name()));
        }
        let mut patched = from_view(self.t.def, patched);
        patched["metadata"]["resourceVersion"] = json!(rv_of(&old));
        let out = self.commit(&old, patched)?;
        self.respond(200, out)
    }

    fn delete(&self, body: &[u8]) -> Result<Response, ApiError> {
        let sdef = self.sdef();
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let opts = if crate::protobuf::is_protobuf(ct) {
            crate::protobuf::decode_object(body).unwrap_or(Value::Null)
        } else {
            serde_json::from_slice::<Value>(body).unwrap_or(Value::Null)
        };
        if let Some(pre) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && pre != rv_of(&self.current()?)
        {
            return Err(ApiError::conflict(self.t.def, self.name()));
        }
        let dry_run = self.dry_run
            || opts["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        let orphan = self.q.get("propagationPolicy").map(String::as_str) == Some("Orphan")
            || opts["propagationPolicy"] == "Orphan"
            || opts["orphanDependents"] == true;
        if orphan && !dry_run {
            self.orphan_dependents(&self.current()?);
        }
        let gone = self
            .shared
            .store
            .delete(sdef, self.ns(), self.name(), dry_run)?;
        if sdef.kind == "Namespace" && !dry_run {
            for def in resources::RESOURCES
                .iter()
                .filter(|d| d.namespaced && resources::by_storage(d.storage) == Some(*d))
            {
                let (items, _) = self.shared.store.list(def, Some(self.name()));
                for o in items {
                    let _ = self
                        .shared
                        .store
                        .delete(def, self.name(), name_of(&o), false);
                }
            }
        }
        if !dry_run {
            self.shared.kick.notify_one();
        }
        self.respond(200, gone)
    }

    /// `propagationPolicy=Orphan`: dependents lose their ownerReference to `owner` and stay.
    fn orphan_dependents(&self, owner: &Value) {
        let uid = owner["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let owned = |o: &Value| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["uid"] == uid.as_str()))
        };
        for def in resources::RESOURCES
            .iter()
            .filter(|d| resources::by_storage(d.storage) == Some(*d))
        {
            let (deps, _) = self.shared.store.list_filtered(def, None, owned);
            for mut d in deps {
                if let Some(rs) = d["metadata"]["ownerReferences"].as_array_mut() {
                    rs.retain(|r| r["uid"] != uid.as_str());
                }
                let _ = self.shared.store.update(def, d, false, false);
            }
        }
    }

    fn delete_collection(&self) -> Result<Response, ApiError> {
        let (ls, fs) = self.selectors()?;
        let def = self.t.def;
        let (items, rv) = self.select(&ls, &fs);
        let mut out = Vec::new();
        for o in items {
            if let Ok(g) =
                self.shared
                    .store
                    .delete(self.sdef(), ns_of(&o), name_of(&o), self.dry_run)
            {
                out.push(to_view(def, g));
            }
        }
        self.shared.kick.notify_one();
        Ok(json_response(
            200,
            &json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": out}),
        ))
    }

    fn get_scale(&self) -> Result<Value, ApiError> {
        let obj = self.current()?;
        Ok(scale_of(&obj))
    }

    fn put_scale(&self, body: &[u8]) -> Result<Response, ApiError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid Scale: {e}")))?;
        self.write_scale(v)
    }

    fn write_scale(&self, scale: Value) -> Result<Response, ApiError> {
        let old = self.current()?;
        serde_json::from_value::<k8s_openapi::api::autoscaling::v1::Scale>(scale.clone())
            .map_err(|e| ApiError::bad_request(format!("Scale cannot be handled: {e}")))?;
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                self.t.def,
                self.name(),
                &[(
                    "spec.replicas".into(),
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                )],
            ));
        }
        let rv = rv_of(&scale);
        if !rv.is_empty() && rv != rv_of(&old) {
            return Err(ApiError::conflict(self.t.def, self.name()));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        let out = self
            .shared
            .store
            .update(self.sdef(), new, false, self.dry_run)?;
        if !self.dry_run {
            self.shared.kick.notify_one();
        }
        Ok(json_response(200, &scale_of(&out)))
    }

    fn log(&self) -> Result<Response, ApiError> {
        let pod = self.current()?;
        let (text, next) = logs::render_from(&pod, self.q, self.now(), None)?;
        if self.q.get("follow").is_some_and(|v| v == "true") {
            return Ok(self.follow_log(text, next));
        }
        Ok(Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(text))
            .unwrap_or_default())
    }
}

impl Req<'_> {
    /// Stream the log: what there is, then new lines as simulated time passes, until the pod is gone,
    /// stops running, or an hour of real time passes.
    fn follow_log(&self, first: String, next: i64) -> Response {
        let shared = self.shared.clone();
        let (ns, name, q) = (
            self.ns().to_string(),
            self.name().to_string(),
            self.q.clone(),
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let state = (Some(first), next, shared, ns, name, q);
        let stream = futures::stream::unfold(
            state,
            move |(first, next, shared, ns, name, q)| async move {
                if let Some(text) = first {
                    return Some((
                        Ok::<Bytes, Infallible>(Bytes::from(text)),
                        (None, next, shared, ns, name, q),
                    ));
                }
                loop {
                    if tokio::time::Instant::now() > deadline {
                        return None;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let pod = shared.store.get(resources::pods(), &ns, &name)?;
                    let running = pod["status"]["phase"] == "Running";
                    let (text, n) =
                        logs::render_from(&pod, &q, shared.clock.now(), Some(next)).ok()?;
                    if !text.is_empty() {
                        return Some((Ok(Bytes::from(text)), (None, n, shared, ns, name, q)));
                    }
                    if !running {
                        return None;
                    }
                }
            },
        );
        Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from_stream(stream))
            .unwrap_or_default()
    }
}

/// The autoscaling/v1 Scale of a workload.
pub(crate) fn scale_of(obj: &Value) -> Value {
    let sel = LabelSelector::from_json(&obj["spec"]["selector"]).to_string_form();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": { "replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0) },
        "status": { "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel },
    })
}

fn encode_continue(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let (ns, name) = s.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

struct WatchState {
    backlog: VecDeque<WatchEvent>,
    rx: broadcast::Receiver<WatchEvent>,
    deadline: tokio::time::Instant,
    def: &'static ResourceDef,
    ns: Option<String>,
    ls: LabelSelector,
    fs: FieldSelector,
    table: bool,
    shared: Arc<Shared>,
}

impl WatchState {
    fn render(&self, ev: &WatchEvent) -> Option<String> {
        if ev.storage != self.def.storage {
            return None;
        }
        let obj = &*ev.object;
        if ev.event_type == "BOOKMARK" {
            let mut line =
                serde_json::to_string(&json!({"type": "BOOKMARK", "object": obj})).ok()?;
            line.push('\n');
            return Some(line);
        }
        if let Some(ns) = &self.ns
            && self.def.namespaced
            && ns_of(obj) != ns
        {
            return None;
        }
        let selected = |o: &Value| {
            self.ls.matches(o)
                && (self.fs.is_empty_sel() || self.fs.matches(&to_view(self.def, o.clone())))
        };
        // With selectors, an object that starts (stops) matching is ADDED (DELETED) for this watch.
        let event_type = match (
            ev.event_type,
            selected(obj),
            ev.prev.as_deref().map(selected),
        ) {
            (_, false, None | Some(false)) => return None,
            ("MODIFIED", true, Some(false)) => "ADDED",
            ("MODIFIED", false, Some(true)) => "DELETED",
            (t, _, _) => t,
        };
        let view = to_view(self.def, obj.clone());
        let view = if self.table {
            table::table(self.def, &[view], None, self.shared.clock.now())
        } else {
            view
        };
        let mut line = serde_json::to_string(&json!({"type": event_type, "object": view})).ok()?;
        line.push('\n');
        Some(line)
    }
}
