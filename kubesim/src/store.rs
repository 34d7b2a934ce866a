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
use crate::resources::ResourceDef;

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
type Key = (&'static str, String, String);

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: HashMap<&'static str, BTreeMap<(String, String), Value>>,
    history: VecDeque<WatchEvent>,
    /// Owner uid → the objects whose ownerReferences name it. Kept in step with `objects` on
    /// every write, so controllers find an object's children without scanning its namespace.
    owned: HashMap<String, BTreeSet<Key>>,
}

/// The uids an object's ownerReferences name.
fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

impl Inner {
    /// Records that the object at `key` changed from `old` to `new` (either may be absent).
    fn reindex_owners(&mut self, key: &Key, old: Option<&Value>, new: Option<&Value>) {
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

/// Everything but metadata and status: a change here is a spec change.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
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
            .cloned()
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
                    .cloned()
                    .collect(),
                None => m.values().filter(|v| keep(v)).cloned().collect(),
            },
        };
        (items, inner.rv)
    }

    /// Objects of `def` whose ownerReferences name the owner with uid `owner`, sorted by
    /// (namespace, name). Costs what it returns, not what the namespace holds.
    pub fn owned_by(&self, def: &ResourceDef, owner: &str) -> Vec<Value> {
        let inner = self.read();
        let Some(keys) = inner.owned.get(owner) else {
            return Vec::new();
        };
        let Some(objects) = inner.objects.get(def.storage) else {
            return Vec::new();
        };
        keys.iter()
            .filter(|(storage, _, _)| *storage == def.storage)
            .filter_map(|(_, ns, name)| objects.get(&(ns.clone(), name.clone())).cloned())
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
        object: Value,
        rv: u64,
        prev: Option<Value>,
    ) {
        let ev = WatchEvent {
            storage,
            event_type,
            object: Arc::new(object),
            rv,
            prev: prev.map(Arc::new),
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
        mut obj: Value,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
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
            inner
                .objects
                .entry(def.storage)
                .or_default()
                .insert((ns, name), obj.clone());
            self.emit(&mut inner, def.storage, "ADDED", obj.clone(), rv, None);
        }
        Ok(obj)
    }

    /// Replace an object. With `check_rv`, a resourceVersion in `obj` that is not the current one is a 409.
    /// uid and creationTimestamp are kept; generation moves on a spec change.
    pub fn update(
        &self,
        def: &'static ResourceDef,
        mut obj: Value,
        check_rv: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
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
        if obj == *old {
            return Ok(obj);
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
            let gen_new = if spec_part(&obj) != spec_part(old) {
                gen_old + 1
            } else {
                gen_old
            };
            obj["metadata"]["generation"] = json!(gen_new);
        }
        let unchanged_but_rv = {
            let mut a = obj.clone();
            a["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            a == *old
        };
        if unchanged_but_rv {
            return Ok(old.clone());
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if !dry_run {
            inner.rv = rv;
            let key = (def.storage, ns.clone(), name.clone());
            let prev = inner
                .objects
                .entry(def.storage)
                .or_default()
                .insert((ns, name), obj.clone());
            inner.reindex_owners(&key, prev.as_ref(), Some(&obj));
            self.emit(&mut inner, def.storage, "MODIFIED", obj.clone(), rv, prev);
        }
        Ok(obj)
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
            return Ok(inner.objects[def.storage][&key].clone());
        }
        let mut obj = inner
            .objects
            .get_mut(def.storage)
            .and_then(|m| m.remove(&key))
            .unwrap_or(Value::Null);
        inner.reindex_owners(&(def.storage, key.0, key.1), Some(&obj), None);
        self.deletes.fetch_add(1, Ordering::Relaxed);
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(&mut inner, def.storage, "DELETED", obj.clone(), rv, None);
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
                .map(|(_, v)| v.clone())
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
}
