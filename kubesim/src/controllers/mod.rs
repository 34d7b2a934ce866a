//! Simulated controllers. Each pass reads the store, compares with the sim clock and writes back;
//! a pass is idempotent, so passes can run as often as wanted.
//!
//! A pass also says when it must run again if nothing is written meanwhile ([`Settled::wake`]):
//! every controller whose work depends on the clock alone (a pod getting ready, a job finishing,
//! a rollout's deadline, a CronJob's next run, an event expiring) registers that instant with
//! [`Ctx::wake_at`]. The background loop skips passes while the store, the faults and the clock
//! give no reason to run (see `Shared::reconcile_if_due`), so an idle kubesim with thousands of
//! objects costs nearly nothing.

pub(crate) mod cronjob;
mod deployment;
mod hpa;
mod job;
mod kubelet;
mod replicaset;
mod statefulset;

use std::cell::Cell;

use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use serde_json::{Value, json};

use crate::clock::{fmt_time, parse_time};
use crate::faults::Faults;
use crate::resources::{self, ResourceDef};
use crate::store::{Store, meta_str, name_of, ns_of};

/// What a controller pass sees.
pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub faults: &'a Faults,
    pub now: Timestamp,
    /// The earliest instant a controller asked to be run again at.
    wake: Cell<Option<Timestamp>>,
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

impl<'a> Ctx<'a> {
    pub fn new(store: &'a Store, faults: &'a Faults, now: Timestamp) -> Self {
        Ctx {
            store,
            faults,
            now,
            wake: Cell::new(None),
        }
    }

    /// Run the controllers again at `at` even if nothing is written before.
    pub fn wake_at(&self, at: Timestamp) {
        let at = at.max(self.now);
        if self.wake.get().is_none_or(|w| at < w) {
            self.wake.set(Some(at));
        }
    }

    /// Run the controllers again in a simulated second (for work that advances step by step).
    pub fn wake_soon(&self) {
        self.wake_at(self.now + SignedDuration::from_secs(1));
    }
}

/// Run every controller until nothing changes (at most a few rounds), so one call settles what
/// can be settled at this instant: a new deployment gets its ReplicaSet, pods and status at once.
pub(crate) fn reconcile_all(ctx: &Ctx<'_>) -> Settled {
    let faults = ctx.faults.generation();
    let mut still_changing = true;
    for _ in 0..4 {
        let before = ctx.store.resource_version();
        ctx.wake.set(None);
        reconcile_round(ctx);
        if ctx.store.resource_version() == before {
            still_changing = false;
            break;
        }
    }
    if still_changing {
        // Not settled within the rounds: the next pass is due at once.
        ctx.wake_at(ctx.now);
    }
    Settled {
        rv: ctx.store.resource_version(),
        faults,
        wake: ctx.wake.get(),
    }
}

fn reconcile_round(ctx: &Ctx<'_>) {
    deployment::reconcile(ctx);
    replicaset::reconcile(ctx);
    statefulset::reconcile(ctx);
    cronjob::reconcile(ctx);
    job::reconcile(ctx);
    kubelet::reconcile(ctx);
    hpa::reconcile(ctx);
    garbage_collect(ctx);
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

    pub fn create(&self, def: &'static ResourceDef, obj: Value) -> Option<Value> {
        let mut obj = obj;
        crate::objects::apply_defaults(def, &mut obj);
        self.store.create(def, obj, self.now, false).ok()
    }

    /// Write an object back; a conflict means someone else wrote first and the next pass retries.
    pub fn update(&self, def: &'static ResourceDef, obj: Value) -> Option<Value> {
        self.store.update(def, obj, true, false).ok()
    }

    /// Set `status` on the stored object (if it has not changed since `obj` was read).
    pub fn set_status(
        &self,
        def: &'static ResourceDef,
        obj: &Value,
        status: Value,
    ) -> Option<Value> {
        if obj["status"] == status {
            return Some(obj.clone());
        }
        let mut o = obj.clone();
        o["status"] = status;
        self.update(def, o)
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
    if let Some(mut ev) = store.get(def, ns, &name) {
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

/// Delete objects whose owners are all gone, and events older than an hour.
fn garbage_collect(ctx: &Ctx<'_>) {
    for (storage, ns, name) in ctx.store.orphans() {
        if let Some(def) = resources::by_storage(storage) {
            let _ = ctx.store.delete(def, &ns, &name, false);
        }
    }
    let keep_for = SignedDuration::from_hours(1);
    let cutoff = ctx.now - keep_for;
    let (old, _) = ctx.store.list_filtered(resources::events(), None, |e| {
        let seen = time_of(&e["lastTimestamp"]);
        if let Some(t) = seen.filter(|t| *t >= cutoff) {
            ctx.wake_at(t + keep_for);
        }
        seen.is_some_and(|t| t < cutoff)
    });
    for e in old {
        ctx.delete(resources::events(), &e);
    }
}
