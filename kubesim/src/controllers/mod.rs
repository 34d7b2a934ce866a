//! Simulated controllers, driven by a work queue like the real ones. A pass looks only at the
//! objects that changed since the last one (and at their owners: a pod's change is its
//! ReplicaSet's business), plus those whose wake-up time on the sim clock has come; each
//! reconcile of one object is idempotent, so looking at an object more often than needed is
//! harmless, and a full pass (every object dirty) is available as a resync.
//!
//! Every controller whose work depends on the clock alone (a pod getting ready, a job finishing,
//! a rollout's deadline, a CronJob's next run, an event expiring) asks for its object to be looked
//! at again at that instant with [`Ctx::wake_at`]. The background loop skips passes while the
//! store, the faults and the clock give no reason to run (see `Shared::reconcile_if_due`), so an
//! idle kubesim with thousands of objects costs nearly nothing, and a change costs what it
//! touches, not what the cluster holds.

pub(crate) mod cronjob;
mod deployment;
mod hpa;
mod job;
mod kubelet;
mod replicaset;
mod statefulset;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use serde_json::{Value, json};

use crate::clock::{fmt_time, parse_time};
use crate::faults::Faults;
use crate::resources::{self, ResourceDef};
use crate::store::{Key, Store, meta_str, name_of, ns_of};

/// What a controller pass sees.
pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub faults: &'a Faults,
    pub now: Timestamp,
    /// Objects that asked to be looked at again, and when.
    wakes: RefCell<Vec<(Key, Timestamp)>>,
    /// Objects this pass updated, with the resourceVersion each write gave them.
    written: RefCell<Vec<(Key, u64)>>,
}

/// What a finished pass leaves for deciding whether the next one is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    /// The store's resourceVersion after the pass.
    pub rv: u64,
    /// The faults' generation the pass saw.
    pub faults: u64,
    /// When the clock alone will give a controller work; `None`: only a write will.
    pub wake: Option<Timestamp>,
}

/// The controllers' work queue, kept between passes.
#[derive(Default)]
pub(crate) struct Queue {
    /// Objects to look at, by (storage, namespace, name).
    dirty: BTreeSet<Key>,
    /// Wake-ups on the sim clock: (when, object), earliest first; at most one per object.
    timers: BTreeSet<(Timestamp, Key)>,
    timer_of: HashMap<Key, Timestamp>,
    /// The faults' generation of the last pass (a change of faults makes every object dirty).
    faults: Option<u64>,
    /// What the last pass left (`None` before the first).
    pub settled: Option<Settled>,
}

/// The kinds (apps/v1) an HPA can scale.
const HPA_TARGETS: [&str; 3] = ["Deployment", "StatefulSet", "ReplicaSet"];

/// The controllers in the order a round runs them: the resource each looks after, and its step.
type Step = fn(&Ctx<'_>, Vec<(String, String)>);
fn controllers() -> [(&'static ResourceDef, Step); 8] {
    [
        (resources::deployments(), deployment::reconcile),
        (resources::replicasets(), replicaset::reconcile),
        (resources::statefulsets(), statefulset::reconcile),
        (resources::cronjobs(), cronjob::reconcile),
        (resources::jobs(), job::reconcile),
        (resources::pods(), kubelet::reconcile),
        (resources::hpas(), hpa::reconcile),
        (resources::events(), expire_events),
    ]
}

impl Queue {
    /// Takes the store's changes into the queue. HPAs read their targets' scale, so a change of
    /// a possible target makes every HPA dirty (a cluster has few).
    fn absorb(&mut self, store: &Store) {
        let changes = store.take_changes();
        if changes.is_empty() {
            return;
        }
        let targets = HPA_TARGETS.map(|kind| {
            resources::by_kind("apps/v1", kind)
                .expect("apps/v1 kind")
                .storage
        });
        if changes.iter().any(|(s, _, _)| targets.contains(s)) {
            self.mark_all(store, resources::hpas());
        }
        self.dirty.extend(changes);
    }

    fn mark_all(&mut self, store: &Store, def: &'static ResourceDef) {
        self.dirty.extend(
            store
                .keys(def)
                .into_iter()
                .map(|(ns, name)| (def.storage, ns, name)),
        );
    }

    /// Moves the objects whose wake-up time has come into the dirty set.
    fn fire_due(&mut self, now: Timestamp) {
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let (_, key) = self.timers.pop_first().expect("not empty");
            self.timer_of.remove(&key);
            self.dirty.insert(key);
        }
    }

    /// Takes the dirty objects of one resource; their pending wake-ups go too (looking at an
    /// object registers again whatever it still waits for).
    fn take(&mut self, def: &ResourceDef) -> Vec<(String, String)> {
        let from = (def.storage, String::new(), String::new());
        let keys: Vec<Key> = self
            .dirty
            .range(from..)
            .take_while(|(s, _, _)| *s == def.storage)
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            self.dirty.remove(&key);
            if let Some(at) = self.timer_of.remove(&key) {
                self.timers.remove(&(at, key.clone()));
            }
            out.push((key.1, key.2));
        }
        out
    }

    /// Registers the wake-ups asked for during a step (the earliest per object wins).
    fn schedule(&mut self, wakes: Vec<(Key, Timestamp)>) {
        for (key, at) in wakes {
            match self.timer_of.get(&key) {
                Some(t) if *t <= at => continue,
                Some(t) => {
                    self.timers.remove(&(*t, key.clone()));
                }
                None => {}
            }
            self.timer_of.insert(key.clone(), at);
            self.timers.insert((at, key));
        }
    }
}

impl<'a> Ctx<'a> {
    pub fn new(store: &'a Store, faults: &'a Faults, now: Timestamp) -> Self {
        Ctx {
            store,
            faults,
            now,
            wakes: RefCell::new(Vec::new()),
            written: RefCell::new(Vec::new()),
        }
    }

    /// Look at `obj` again at `at` even if nothing is written before.
    pub fn wake_at(&self, obj: &Value, at: Timestamp) {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let Some(def) = resources::by_kind(obj["apiVersion"].as_str().unwrap_or_default(), kind)
        else {
            return;
        };
        let def = resources::by_storage(def.storage).unwrap_or(def);
        let ns = if def.namespaced { ns_of(obj) } else { "" };
        let key = (def.storage, ns.to_owned(), name_of(obj).to_owned());
        self.wakes.borrow_mut().push((key, at.max(self.now)));
    }

    /// Look at `obj` again in a simulated second (for work that advances step by step).
    pub fn wake_soon(&self, obj: &Value) {
        self.wake_at(obj, self.now + SignedDuration::from_secs(1));
    }

    /// The stored objects of `def` at `keys` (those still there).
    pub fn objects(&self, def: &ResourceDef, keys: &[(String, String)]) -> Vec<Value> {
        self.objects_where(def, keys, |_| true)
    }

    /// The stored objects of `def` at `keys`, shared with the store (read without copying).
    pub fn shared_objects(&self, def: &ResourceDef, keys: &[(String, String)]) -> Vec<Arc<Value>> {
        keys.iter()
            .filter_map(|(ns, name)| self.store.get_shared(def, ns, name))
            .collect()
    }

    /// The stored objects of `def` at `keys` for which `keep` holds (the others are not copied).
    pub fn objects_where(
        &self,
        def: &ResourceDef,
        keys: &[(String, String)],
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        keys.iter()
            .filter_map(|(ns, name)| {
                self.store
                    .read_with(def, ns, name, |o| keep(o).then(|| o.clone()))
                    .flatten()
            })
            .collect()
    }
}

/// Run the controllers on what the queue holds until nothing changes (at most a few rounds), so
/// one call settles what can be settled at this instant: a new deployment gets its ReplicaSet,
/// pods and status at once. With `full`, every object is looked at (a resync).
pub(crate) fn reconcile_all(ctx: &Ctx<'_>, queue: &mut Queue, full: bool) -> Settled {
    let faults = ctx.faults.generation();
    if full || queue.faults != Some(faults) {
        for (def, _) in controllers() {
            queue.mark_all(ctx.store, def);
        }
    }
    queue.faults = Some(faults);
    queue.fire_due(ctx.now);
    let mut still_changing = true;
    for _ in 0..4 {
        let before = ctx.store.resource_version();
        reconcile_round(ctx, queue);
        if ctx.store.resource_version() == before && queue.dirty.is_empty() {
            still_changing = false;
            break;
        }
    }
    let mut wake = queue.timers.first().map(|(at, _)| *at);
    if still_changing {
        // Not settled within the rounds: the next pass is due at once.
        wake = Some(ctx.now);
    }
    let settled = Settled {
        rv: ctx.store.resource_version(),
        faults,
        wake,
    };
    queue.settled = Some(settled);
    settled
}

fn reconcile_round(ctx: &Ctx<'_>, queue: &mut Queue) {
    for (def, step) in controllers() {
        // What the steps before wrote is this step's work in the same round.
        queue.absorb(ctx.store);
        let keys = queue.take(def);
        if def.storage == resources::events().storage {
            garbage_collect(ctx);
        }
        let looked_at: BTreeSet<(String, String)> = keys.iter().cloned().collect();
        if !keys.is_empty() {
            step(ctx, keys);
        }
        queue.schedule(std::mem::take(&mut *ctx.wakes.borrow_mut()));
        // A controller's own write to the object it looked at needs no second look by it (the
        // look was idempotent and saw that write); unless someone else wrote the object since.
        // Its owners and any HPA still hear of it.
        for (key, rv) in std::mem::take(&mut *ctx.written.borrow_mut()) {
            if key.0 == def.storage
                && looked_at.contains(&(key.1.clone(), key.2.clone()))
                && ctx.store.forget_change(&key, rv)
                && HPA_TARGETS.contains(&def.kind)
            {
                queue.mark_all(ctx.store, resources::hpas());
            }
        }
    }
}

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five characters like the ones Kubernetes appends to generated names.
pub(crate) fn random_suffix() -> String {
    let mut r = rand::rng();
    (0..5)
        .map(|_| SAFE[r.random_range(0..SAFE.len())] as char)
        .collect()
}

/// A stable hash of a JSON value, rendered with Kubernetes' safe alphabet (like pod-template-hash).
pub(crate) fn stable_hash(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let mut out = String::new();
    for _ in 0..10 {
        out.push(SAFE[(h % SAFE.len() as u64) as usize] as char);
        h /= SAFE.len() as u64;
    }
    out
}

pub(crate) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub(crate) fn time_of(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(parse_time)
}

/// A controller ownerReference to `owner`.
pub(crate) fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

pub(crate) fn uid_of(obj: &Value) -> &str {
    meta_str(obj, "uid")
}

/// [`children`], shared with the store (read without copying).
pub(crate) fn children_shared(ctx: &Ctx<'_>, def: &ResourceDef, owner: &Value) -> Vec<Arc<Value>> {
    let ns = ns_of(owner);
    let mut owned = ctx.store.owned_by_shared(def, uid_of(owner));
    owned.retain(|o| ns_of(o) == ns);
    owned
}

/// Objects of `def` in `owner`'s namespace owned by `owner` (from the store's owner index).
pub(crate) fn children(ctx: &Ctx<'_>, def: &ResourceDef, owner: &Value) -> Vec<Value> {
    let ns = ns_of(owner);
    let mut owned = ctx.store.owned_by(def, uid_of(owner));
    owned.retain(|o| ns_of(o) == ns);
    owned
}

pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Set a condition in a status conditions list; `lastTransitionTime` moves only when `status` changes.
pub(crate) fn set_condition(
    conds: &mut Vec<Value>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    with_update_time: bool,
) {
    let pos = conds.iter().position(|c| c["type"] == ty);
    let mut c = json!({"type": ty, "status": status, "reason": reason, "message": message, "lastTransitionTime": now});
    if with_update_time {
        c["lastUpdateTime"] = json!(now);
    }
    match pos {
        Some(i) => {
            let old = &conds[i];
            if old["status"] == status {
                c["lastTransitionTime"] = old["lastTransitionTime"].clone();
                if with_update_time && old["reason"] == reason && old["message"] == message {
                    c["lastUpdateTime"] = old["lastUpdateTime"].clone();
                }
            }
            conds[i] = c;
        }
        None => conds.push(c),
    }
}

impl Ctx<'_> {
    pub fn now_str(&self) -> String {
        fmt_time(self.now)
    }

    pub fn create(&self, def: &'static ResourceDef, obj: Value) -> Option<Arc<Value>> {
        let mut obj = obj;
        crate::objects::apply_defaults(def, &mut obj);
        self.store.create_shared(def, obj, self.now, false).ok()
    }

    /// Write an object back; a conflict means someone else wrote first and the next pass retries.
    pub fn update(&self, def: &'static ResourceDef, obj: Value) -> Option<Arc<Value>> {
        let out = self.store.update_shared(def, obj, true, false).ok()?;
        let rv = meta_str(&out, "resourceVersion").parse().unwrap_or(0);
        let ns = if def.namespaced { ns_of(&out) } else { "" };
        let key = (def.storage, ns.to_owned(), name_of(&out).to_owned());
        self.written.borrow_mut().push((key, rv));
        Some(out)
    }

    /// Set `status` on the stored object (if it has not changed since `obj` was read).
    pub fn set_status(&self, def: &'static ResourceDef, obj: &Value, status: Value) {
        if obj["status"] == status {
            return;
        }
        let mut o = obj.clone();
        o["status"] = status;
        self.update(def, o);
    }

    pub fn delete(&self, def: &'static ResourceDef, obj: &Value) {
        let _ = self.store.delete(def, ns_of(obj), name_of(obj), false);
    }

    /// Record a core/v1 Event about `involved`, aggregating repeats like the real event recorder.
    pub fn event(&self, involved: &Value, ty: &str, reason: &str, message: &str, component: &str) {
        record_event(
            self.store, self.now, involved, ty, reason, message, component,
        );
    }
}

/// Record (or bump the count of) an Event.
pub(crate) fn record_event(
    store: &Store,
    now: Timestamp,
    involved: &Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let def = resources::events();
    let ns = match ns_of(involved) {
        "" => "default",
        ns => ns,
    };
    let key = stable_hash(&json!([uid_of(involved), reason, message]));
    let name = format!("{}.{}", name_of(involved), key);
    let now_s = fmt_time(now);
    if let Some(ev) = store.get_shared(def, ns, &name) {
        let mut ev = Value::clone(&ev);
        ev["count"] = json!(int(&ev["count"]) + 1);
        ev["lastTimestamp"] = json!(now_s);
        let _ = store.update(def, ev, false, false);
        return;
    }
    let ev = json!({
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "kind": involved["kind"],
            "namespace": involved["metadata"]["namespace"],
            "name": involved["metadata"]["name"],
            "uid": involved["metadata"]["uid"],
            "apiVersion": involved["apiVersion"],
            "resourceVersion": involved["metadata"]["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": now_s,
        "lastTimestamp": now_s,
        "count": 1,
        "type": ty,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    let _ = store.create(def, ev, now, false);
}

/// Delete objects whose owners are all gone (only looked for after a delete).
fn garbage_collect(ctx: &Ctx<'_>) {
    for (storage, ns, name) in ctx.store.orphans() {
        if let Some(def) = resources::by_storage(storage) {
            let _ = ctx.store.delete(def, &ns, &name, false);
        }
    }
}

/// How long an event is kept after it was last seen.
const KEEP_EVENTS_FOR: SignedDuration = SignedDuration::from_hours(1);

/// Delete the events among `keys` last seen over an hour ago; wake at the expiry of the others.
fn expire_events(ctx: &Ctx<'_>, keys: Vec<(String, String)>) {
    let def = resources::events();
    let cutoff = ctx.now - KEEP_EVENTS_FOR;
    for (ns, name) in keys {
        let seen = ctx
            .store
            .read_with(def, &ns, &name, |e| time_of(&e["lastTimestamp"]))
            .flatten();
        match seen {
            Some(t) if t < cutoff => {
                let _ = ctx.store.delete(def, &ns, &name, false);
            }
            Some(t) => {
                let key = (def.storage, ns, name);
                let at = (t + KEEP_EVENTS_FOR).max(ctx.now);
                ctx.wakes.borrow_mut().push((key, at));
            }
            None => {}
        }
    }
}
