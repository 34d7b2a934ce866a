//! The object store: JSON objects keyed by (storage key, namespace, name), with a global
//! resourceVersion counter and a watch event stream.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::clock::fmt_time;
use crate::error::ApiError;
use crate::resources::{self, ResourceDef};

/// How many past events a watch can resume from.
const HISTORY: usize = 20_000;

/// One change, as sent to watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub storage: &'static str,
    pub event_type: &'static str,
    pub object: Arc<Value>,
    pub rv: u64,
    /// For MODIFIED: the object before, so selector watches can turn it into ADDED/DELETED.
    pub prev: Option<Arc<Value>>,
}

/// Where an object is stored: (storage key, namespace, name).
pub(crate) type Key = (&'static str, String, String);

/// An entry of the field index: (storage, dotted path, value).
type FieldKey = (&'static str, &'static str, String);

#[derive(Default)]
struct Inner {
    rv: u64,
    /// Shared with the watch history: a write copies nothing for its watchers.
    objects: HashMap<&'static str, BTreeMap<(String, String), Arc<Value>>>,
    history: VecDeque<WatchEvent>,
    /// Owner uid → the objects whose ownerReferences name it. Kept in step with `objects` on
    /// every write, so controllers find an object's children without scanning its namespace.
    owned: HashMap<String, BTreeSet<Key>>,
    /// (storage, field, value) → the objects holding that value in that field, for the fields
    /// of [`INDEXED_FIELDS`]: a list with a field selector on one of them costs what it returns.
    fields: HashMap<FieldKey, BTreeSet<(String, String)>>,
    /// What was written since the controllers last looked (see [`Store::take_changes`]); `None`
    /// while nobody asked for it.
    changed: Option<BTreeSet<Key>>,
}

/// The uids an object's ownerReferences name.
fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

/// The fields field selectors are answered from an index for: (storage, dotted path). Those
/// clients select on in a busy namespace (`status` asks for the `Warning` events, `kubectl
/// describe` for an object's events); every write of such an object keeps them up to date.
const INDEXED_FIELDS: &[(&str, &str)] = &[("events", "type"), ("events", "involvedObject.name")];

/// Whether field selectors on `path` of objects stored under `storage` use an index.
pub fn field_indexed(storage: &str, path: &str) -> bool {
    INDEXED_FIELDS
        .iter()
        .any(|(s, p)| *s == storage && *p == path)
}

/// A field's value as field selectors compare it: a string as is, nothing as `""`, anything else
/// as JSON.
pub fn field_value<'a>(obj: &'a Value, path: &str) -> std::borrow::Cow<'a, str> {
    let mut cur = obj;
    for seg in path.split('.') {
        cur = cur.get(seg).unwrap_or(&Value::Null);
    }
    match cur {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        Value::Null => std::borrow::Cow::Borrowed(""),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// Where the owners an object's ownerReferences name are stored (same namespace as the object
/// for a namespaced owner kind).
fn owner_keys<'a>(ns: &'a str, obj: &'a Value) -> impl Iterator<Item = Key> + 'a {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |r| {
            let def = resources::by_kind(r["apiVersion"].as_str()?, r["kind"].as_str()?)?;
            let ns = if def.namespaced { ns } else { "" };
            Some((def.storage, ns.to_owned(), r["name"].as_str()?.to_owned()))
        })
}

impl Inner {
    /// Notes a write of the object at `key` (before: `old`, after: `new`) for the controllers:
    /// the object changed, and so did what its owners see of their children.
    fn note_change(&mut self, key: &Key, old: Option<&Value>, new: Option<&Value>) {
        let Some(changed) = self.changed.as_mut() else {
            return;
        };
        changed.insert(key.clone());
        for obj in old.into_iter().chain(new) {
            changed.extend(owner_keys(&key.1, obj));
        }
    }

    /// Keeps the field indexes in step with a write.
    fn reindex_fields(&mut self, key: &Key, old: Option<&Value>, new: Option<&Value>) {
        for (storage, path) in INDEXED_FIELDS {
            if *storage != key.0 {
                continue;
            }
            let before = old.map(|o| field_value(o, path));
            let after = new.map(|o| field_value(o, path));
            if before == after {
                continue;
            }
            let at = (key.1.clone(), key.2.clone());
            if let Some(v) = before {
                let ix = (key.0, *path, v.into_owned());
                if let Some(set) = self.fields.get_mut(&ix) {
                    set.remove(&at);
                    if set.is_empty() {
                        self.fields.remove(&ix);
                    }
                }
            }
            if let Some(v) = after {
                self.fields
                    .entry((key.0, *path, v.into_owned()))
                    .or_default()
                    .insert(at);
            }
        }
    }

    /// Records that the object at `key` changed from `old` to `new` (either may be absent).
    fn reindex_owners(&mut self, key: &Key, old: Option<&Value>, new: Option<&Value>) {
        self.note_change(key, old, new);
        self.reindex_fields(key, old, new);
        for uid in old.into_iter().flat_map(owner_uids) {
            if let Some(set) = self.owned.get_mut(uid) {
                set.remove(key);
                if set.is_empty() {
                    self.owned.remove(uid);
                }
            }
        }
        for uid in new.into_iter().flat_map(owner_uids) {
            self.owned
                .entry(uid.to_owned())
                .or_default()
                .insert(key.clone());
        }
    }
}

/// The in-memory store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: RwLock<Inner>,
    /// Deletions so far, and as of the last garbage collection (GC only runs after a delete).
    deletes: AtomicU64,
    gc_seen: AtomicU64,
    tx: broadcast::Sender<WatchEvent>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Small accessors for object metadata.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name")
}

pub fn ns_of(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

pub fn rv_of(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

/// Whether two objects are equal in all top-level fields but those in `skip` (compared in place,
/// without copies: objects are large and written often).
fn eq_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let kept = |m: &'_ serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .count()
            };
            kept(a) == kept(b)
                && a.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Whether a change from `old` to `new` changes anything but metadata and status: a spec change.
fn spec_changed(old: &Value, new: &Value) -> bool {
    !eq_except(old, new, &["metadata", "status"])
}

/// Whether `new` equals `old` but for `metadata.resourceVersion`.
fn same_but_rv(old: &Value, new: &Value) -> bool {
    eq_except(old, new, &["metadata"])
        && eq_except(&old["metadata"], &new["metadata"], &["resourceVersion"])
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(8192);
        Store {
            inner: RwLock::new(Inner::default()),
            deletes: AtomicU64::new(0),
            gc_seen: AtomicU64::new(0),
            tx,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, note every write for [`Store::take_changes`] (the controllers' work queue).
    pub(crate) fn track_changes(&self) {
        let mut inner = self.write();
        if inner.changed.is_none() {
            inner.changed = Some(BTreeSet::new());
        }
    }

    /// (storage, namespace, name) of every object written since the last call, and of the owners
    /// its ownerReferences name (before and after the write), sorted; deleted ones included.
    pub(crate) fn take_changes(&self) -> BTreeSet<Key> {
        let mut inner = self.write();
        match inner.changed.as_mut() {
            Some(c) if !c.is_empty() => std::mem::take(c),
            _ => BTreeSet::new(),
        }
    }

    /// Drops the noted change of the object at `key` if the object is still at resourceVersion
    /// `rv` (the controllers' own write, which they need not look at again); the changes it
    /// noted for the object's owners stay. Returns whether it was dropped.
    pub(crate) fn forget_change(&self, key: &Key, rv: u64) -> bool {
        let mut inner = self.write();
        let current = inner
            .objects
            .get(key.0)
            .and_then(|m| m.get(&(key.1.clone(), key.2.clone())))
            .is_some_and(|o| rv_of(o).parse() == Ok(rv));
        current && inner.changed.as_mut().is_some_and(|c| c.remove(key))
    }

    /// (namespace, name) of every object of a resource.
    pub(crate) fn keys(&self, def: &ResourceDef) -> Vec<(String, String)> {
        self.read()
            .objects
            .get(def.storage)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.read().rv
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<Value> {
        let key = (
            if def.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        self.read()
            .objects
            .get(def.storage)
            .and_then(|m| m.get(&key))
            .map(|v| Value::clone(v))
    }

    /// An object, shared with the store (no copy; a later write replaces it, never changes it).
    pub fn get_shared(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<Arc<Value>> {
        let ns = if def.namespaced { ns } else { "" };
        let inner = self.read();
        let m = inner.objects.get(def.storage)?;
        m.get(&(ns.to_owned(), name.to_owned())).cloned()
    }

    /// Reads an object in place (no copy): `f`'s answer, `None` when there is no such object.
    pub fn read_with<R>(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        f: impl FnOnce(&Value) -> R,
    ) -> Option<R> {
        let ns = if def.namespaced { ns } else { "" };
        let inner = self.read();
        let m = inner.objects.get(def.storage)?;
        m.get(&(ns.to_owned(), name.to_owned())).map(|v| f(v))
    }

    /// Objects of a resource, in one namespace or all, sorted by (namespace, name), plus the list resourceVersion.
    pub fn list(&self, def: &ResourceDef, ns: Option<&str>) -> (Vec<Value>, u64) {
        self.list_filtered(def, ns, |_| true)
    }

    pub fn list_filtered(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, u64) {
        let inner = self.read();
        let items = match inner.objects.get(def.storage) {
            None => Vec::new(),
            Some(m) => match ns.filter(|_| def.namespaced) {
                Some(ns) => m
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v)
                    .filter(|v| keep(v))
                    .map(|v| Value::clone(v))
                    .collect(),
                None => m
                    .values()
                    .filter(|v| keep(v))
                    .map(|v| Value::clone(v))
                    .collect(),
            },
        };
        (items, inner.rv)
    }

    /// [`Store::list_filtered`] of the objects whose field `path` (see [`field_indexed`]) holds
    /// `value`, from the index: costs what matches, not what the namespace holds. `None` when
    /// the field has no index.
    pub fn list_by_field(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        path: &str,
        value: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> Option<(Vec<Value>, u64)> {
        let (storage, path) = INDEXED_FIELDS
            .iter()
            .find(|(s, p)| *s == def.storage && *p == path)?;
        let inner = self.read();
        let objects = inner.objects.get(storage);
        let keys = inner.fields.get(&(*storage, *path, value.to_owned()));
        let items = match (objects, keys) {
            (Some(objects), Some(keys)) => {
                let at = |k: &(String, String)| objects.get(k).filter(|v| keep(v));
                match ns.filter(|_| def.namespaced) {
                    Some(ns) => keys
                        .range((ns.to_owned(), String::new())..)
                        .take_while(|(n, _)| n == ns)
                        .filter_map(at)
                        .map(|v| Value::clone(v))
                        .collect(),
                    None => keys
                        .iter()
                        .filter_map(at)
                        .map(|v| Value::clone(v))
                        .collect(),
                }
            }
            _ => Vec::new(),
        };
        Some((items, inner.rv))
    }

    /// Objects of `def` whose ownerReferences name the owner with uid `owner`, sorted by
    /// (namespace, name). Costs what it returns, not what the namespace holds.
    pub fn owned_by(&self, def: &ResourceDef, owner: &str) -> Vec<Value> {
        self.owned_by_shared(def, owner)
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// [`Store::owned_by`], shared with the store (no copies).
    pub fn owned_by_shared(&self, def: &ResourceDef, owner: &str) -> Vec<Arc<Value>> {
        let inner = self.read();
        let Some(keys) = inner.owned.get(owner) else {
            return Vec::new();
        };
        let Some(objects) = inner.objects.get(def.storage) else {
            return Vec::new();
        };
        keys.iter()
            .filter(|(storage, _, _)| *storage == def.storage)
            .filter_map(|(_, ns, name)| objects.get(&(ns.clone(), name.clone())))
            .cloned()
            .collect()
    }

    /// Number of objects stored for a resource.
    pub fn count(&self, def: &ResourceDef) -> usize {
        self.read()
            .objects
            .get(def.storage)
            .map_or(0, BTreeMap::len)
    }

    fn emit(
        &self,
        inner: &mut Inner,
        storage: &'static str,
        event_type: &'static str,
        object: Arc<Value>,
        rv: u64,
        prev: Option<Arc<Value>>,
    ) {
        let ev = WatchEvent {
            storage,
            event_type,
            object,
            rv,
            prev,
        };
        inner.history.push_back(ev.clone());
        if inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
        let _ = self.tx.send(ev);
    }

    /// Create an object: assigns uid, resourceVersion, creationTimestamp and generation.
    pub fn create(
        &self,
        def: &'static ResourceDef,
        obj: Value,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.create_shared(def, obj, now, dry_run)
            .map(Arc::unwrap_or_clone)
    }

    /// [`Store::create`], answering the stored object shared with the store (no copy).
    pub fn create_shared(
        &self,
        def: &'static ResourceDef,
        mut obj: Value,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let name = name_of(&obj).to_string();
        let ns = if def.namespaced {
            ns_of(&obj).to_string()
        } else {
            String::new()
        };
        let mut inner = self.write();
        let exists = inner
            .objects
            .get(def.storage)
            .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())));
        if exists {
            return Err(ApiError::already_exists(def, &name));
        }
        let rv = inner.rv + 1;
        {
            let m = obj
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("object must be a JSON object"))?;
            m.insert("apiVersion".into(), json!(def.api_version()));
            m.insert("kind".into(), json!(def.kind));
            let meta = m.entry("metadata").or_insert_with(|| json!({}));
            if !meta.is_object() {
                *meta = json!({});
            }
            if meta
                .get("uid")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
            }
            if meta
                .get("creationTimestamp")
                .and_then(Value::as_str)
                .is_none()
            {
                meta["creationTimestamp"] = json!(fmt_time(now));
            }
            meta["resourceVersion"] = json!(rv.to_string());
            if def.has_generation() {
                meta["generation"] = json!(1);
            }
            if !def.namespaced
                && let Some(mm) = meta.as_object_mut()
            {
                mm.remove("namespace");
            }
            if let Some(mm) = meta.as_object_mut() {
                mm.remove("deletionTimestamp");
            }
        }
        if !dry_run {
            inner.rv = rv;
            inner.reindex_owners(&(def.storage, ns.clone(), name.clone()), None, Some(&obj));
            let shared = Arc::new(obj);
            inner
                .objects
                .entry(def.storage)
                .or_default()
                .insert((ns, name), shared.clone());
            self.emit(&mut inner, def.storage, "ADDED", shared.clone(), rv, None);
            return Ok(shared);
        }
        Ok(Arc::new(obj))
    }

    /// Replace an object. With `check_rv`, a resourceVersion in `obj` that is not the current one is a 409.
    /// uid and creationTimestamp are kept; generation moves on a spec change.
    pub fn update(
        &self,
        def: &'static ResourceDef,
        obj: Value,
        check_rv: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.update_shared(def, obj, check_rv, dry_run)
            .map(Arc::unwrap_or_clone)
    }

    /// [`Store::update`], answering the stored object shared with the store (no copy).
    pub fn update_shared(
        &self,
        def: &'static ResourceDef,
        mut obj: Value,
        check_rv: bool,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let name = name_of(&obj).to_string();
        let ns = if def.namespaced {
            ns_of(&obj).to_string()
        } else {
            String::new()
        };
        let mut inner = self.write();
        let old = inner
            .objects
            .get(def.storage)
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .ok_or_else(|| ApiError::not_found(def, &name))?;
        let sent_rv = rv_of(&obj);
        if check_rv && !sent_rv.is_empty() && sent_rv != rv_of(old) {
            return Err(ApiError::conflict(def, &name));
        }
        if obj == **old {
            return Ok(Arc::new(obj));
        }
        let rv = inner.rv + 1;
        {
            let m = obj
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("object must be a JSON object"))?;
            m.insert("apiVersion".into(), json!(def.api_version()));
            m.insert("kind".into(), json!(def.kind));
            if !m.get("metadata").is_some_and(Value::is_object) {
                m.insert("metadata".into(), json!({}));
            }
        }
        for keep in ["uid", "creationTimestamp"] {
            obj["metadata"][keep] = old["metadata"][keep].clone();
        }
        if def.has_generation() {
            let gen_old = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let gen_new = if spec_changed(old, &obj) {
                gen_old + 1
            } else {
                gen_old
            };
            obj["metadata"]["generation"] = json!(gen_new);
        }
        if same_but_rv(old, &obj) {
            return Ok(old.clone());
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if !dry_run {
            inner.rv = rv;
            let key = (def.storage, ns.clone(), name.clone());
            let shared = Arc::new(obj);
            let prev = inner
                .objects
                .entry(def.storage)
                .or_default()
                .insert((ns, name), shared.clone());
            inner.reindex_owners(&key, prev.as_deref(), Some(&shared));
            self.emit(
                &mut inner,
                def.storage,
                "MODIFIED",
                shared.clone(),
                rv,
                prev,
            );
            return Ok(shared);
        }
        Ok(Arc::new(obj))
    }

    /// Delete an object and return it as it was last seen (with a new resourceVersion).
    pub fn delete(
        &self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = (
            if def.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        let mut inner = self.write();
        let exists = inner
            .objects
            .get(def.storage)
            .is_some_and(|m| m.contains_key(&key));
        if !exists {
            return Err(ApiError::not_found(def, name));
        }
        if dry_run {
            return Ok(Value::clone(&inner.objects[def.storage][&key]));
        }
        let mut obj = inner
            .objects
            .get_mut(def.storage)
            .and_then(|m| m.remove(&key))
            .map(Arc::unwrap_or_clone)
            .unwrap_or(Value::Null);
        inner.reindex_owners(&(def.storage, key.0, key.1), Some(&obj), None);
        self.deletes.fetch_add(1, Ordering::Relaxed);
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Arc::new(obj);
        self.emit(&mut inner, def.storage, "DELETED", obj.clone(), rv, None);
        let obj = Arc::unwrap_or_clone(obj);
        Ok(obj)
    }

    /// Subscribe to changes. With `since`, also returns the buffered events after that resourceVersion
    /// (or `Err` with 410 Gone if they are no longer kept).
    pub fn watch(
        &self,
        since: Option<u64>,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), ApiError> {
        let inner = self.read();
        let rx = self.tx.subscribe();
        let backlog = match since {
            None => Vec::new(),
            Some(rv) => {
                if rv < inner.rv {
                    let oldest = inner.history.front().map_or(inner.rv + 1, |e| e.rv);
                    if rv + 1 < oldest {
                        return Err(ApiError::gone(format!(
                            "too old resource version: {rv} ({})",
                            oldest - 1
                        )));
                    }
                }
                inner
                    .history
                    .iter()
                    .filter(|e| e.rv > rv)
                    .cloned()
                    .collect()
            }
        };
        Ok((backlog, rx))
    }

    /// A snapshot of the objects plus a subscription, taken atomically (for watches without a resourceVersion).
    pub fn list_and_watch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
    ) -> (Vec<Value>, u64, broadcast::Receiver<WatchEvent>) {
        let inner = self.read();
        let rx = self.tx.subscribe();
        let items = match inner.objects.get(def.storage) {
            None => Vec::new(),
            Some(m) => m
                .iter()
                .filter(|((n, _), _)| ns.is_none_or(|ns| !def.namespaced || n == ns))
                .map(|(_, v)| Value::clone(v))
                .collect(),
        };
        (items, inner.rv, rx)
    }

    /// Every uid currently stored (for garbage collection).
    pub fn all_uids(&self) -> std::collections::HashSet<String> {
        let inner = self.read();
        inner
            .objects
            .values()
            .flat_map(|m| m.values())
            .map(|v| meta_str(v, "uid").to_string())
            .collect()
    }

    /// (storage, namespace, name) of objects whose owners are all gone.
    /// Empty (and cheap) when nothing was deleted since the last call.
    pub fn orphans(&self) -> Vec<(&'static str, String, String)> {
        let deletes = self.deletes.load(Ordering::Relaxed);
        if self.gc_seen.swap(deletes, Ordering::Relaxed) == deletes {
            return Vec::new();
        }
        let uids = self.all_uids();
        let inner = self.read();
        let mut out = Vec::new();
        for (storage, m) in &inner.objects {
            for ((ns, name), v) in m {
                if let Some(owners) = v
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    && !owners.is_empty()
                    && owners
                        .iter()
                        .all(|o| !uids.contains(o["uid"].as_str().unwrap_or("")))
                {
                    out.push((*storage, ns.clone(), name.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod owner_index_tests {
    use super::*;
    use crate::resources;

    fn pod(name: &str, owner: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {}});
        if let Some(uid) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"uid": uid, "kind": "ReplicaSet", "name": "rs"}]);
        }
        p
    }

    fn names(store: &Store, owner: &str) -> Vec<String> {
        store
            .owned_by(resources::pods(), owner)
            .iter()
            .map(|p| name_of(p).to_owned())
            .collect()
    }

    #[test]
    fn the_owner_index_follows_creates_updates_and_deletes() {
        let store = Store::new();
        let now = Timestamp::now();
        let pods = resources::pods();
        store
            .create(pods, pod("b", Some("u1")), now, false)
            .unwrap();
        store
            .create(pods, pod("a", Some("u1")), now, false)
            .unwrap();
        store
            .create(pods, pod("c", Some("u2")), now, false)
            .unwrap();
        store.create(pods, pod("d", None), now, false).unwrap();
        store.create(pods, pod("e", Some("u1")), now, true).unwrap(); // dry run
        assert_eq!(names(&store, "u1"), ["a", "b"]);
        assert_eq!(names(&store, "u2"), ["c"]);
        // Another resource's objects are not the pods'.
        assert!(store.owned_by(resources::replicasets(), "u1").is_empty());

        // Re-owned: moves from u1 to u2.
        let mut b = store.get(pods, "ns", "b").unwrap();
        b["metadata"]["ownerReferences"][0]["uid"] = json!("u2");
        store.update(pods, b, false, false).unwrap();
        assert_eq!(names(&store, "u1"), ["a"]);
        assert_eq!(names(&store, "u2"), ["b", "c"]);

        store.delete(pods, "ns", "a", false).unwrap();
        assert!(names(&store, "u1").is_empty());
        assert_eq!(names(&store, "u2"), ["b", "c"]);
    }

    #[test]
    fn the_field_index_follows_writes_and_answers_like_a_scan() {
        let store = Store::new();
        let now = Timestamp::now();
        let events = resources::events();
        let ev = |ns: &str, name: &str, ty: &str| json!({"metadata": {"name": name, "namespace": ns}, "type": ty, "involvedObject": {"name": "web"}});
        store
            .create(events, ev("a", "e2", "Warning"), now, false)
            .unwrap();
        store
            .create(events, ev("a", "e1", "Warning"), now, false)
            .unwrap();
        store
            .create(events, ev("a", "e3", "Normal"), now, false)
            .unwrap();
        store
            .create(events, ev("b", "e1", "Warning"), now, false)
            .unwrap();
        store
            .create(events, ev("a", "e9", "Warning"), now, true)
            .unwrap(); // dry run
        let by_type = |ns: Option<&str>, ty: &str| -> Vec<String> {
            let (items, _) = store
                .list_by_field(events, ns, "type", ty, |_| true)
                .expect("indexed");
            let (scan, _) = store.list_filtered(events, ns, |e| e["type"] == ty);
            assert_eq!(items, scan);
            items
                .iter()
                .map(|e| format!("{}/{}", ns_of(e), name_of(e)))
                .collect()
        };
        assert_eq!(by_type(Some("a"), "Warning"), ["a/e1", "a/e2"]);
        assert_eq!(by_type(None, "Warning"), ["a/e1", "a/e2", "b/e1"]);
        assert!(by_type(Some("c"), "Warning").is_empty());

        let mut e1 = store.get(events, "a", "e1").unwrap();
        e1["type"] = json!("Normal");
        store.update(events, e1, false, false).unwrap();
        store.delete(events, "a", "e2", false).unwrap();
        assert!(by_type(Some("a"), "Warning").is_empty());
        assert_eq!(by_type(Some("a"), "Normal"), ["a/e1", "a/e3"]);
        assert!(
            store
                .list_by_field(events, None, "reason", "x", |_| true)
                .is_none()
        );
    }
}
