//! kubesim: an in-memory Kubernetes API server for opsbot's tests, benchmarks and demo.
//!
//! It speaks the real wire protocol (JSON over HTTP/1.1, real paths and object shapes), so kube-rs and
//! kubectl talk to it as to a cluster. Objects live in a generic [`Store`] keyed by resource, namespace
//! and name; the kinds served are listed in [`resources::RESOURCES`]; simulated controllers (deployments,
//! replicasets, statefulsets, jobs, cronjobs, HPAs and a pretend kubelet) run on a [`SimClock`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), kubesim::Error> {
//! let sim = kubesim::KubeSim::start(kubesim::Seed::default_seed()).await?;
//! println!("{}", sim.url());
//! sim.faults().fail_next("/apis/apps/v1", 2, 429);
//! sim.advance(std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

mod api;
pub mod clock;
mod control;
mod controllers;
mod discovery;
pub mod error;
pub mod faults;
mod logs;
mod objects;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod seed;
pub mod selector;
pub mod store;
mod table;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::Value;
use tokio::task::JoinHandle;

pub use clock::SimClock;
pub use error::{ApiError, Error};
pub use faults::Faults;
pub use seed::Seed;
pub use store::Store;

/// State shared by the server, the controllers and the handle.
pub(crate) struct Shared {
    pub store: Store,
    pub clock: SimClock,
    pub faults: Faults,
    pub addr: SocketAddr,
    /// Wakes the controllers after a write.
    pub kick: tokio::sync::Notify,
    /// One controller pass at a time; the controllers' work queue and what the last pass left.
    pub reconciling: Mutex<controllers::Queue>,
}

/// The background loop runs a full pass (every object looked at, like an informer's resync) at
/// least this often (real time), whatever the queue says: a safety net should a controller ever
/// miss registering a wake-up.
const FULL_PASS_EVERY: Duration = Duration::from_secs(60);

impl Shared {
    async fn advance(&self, by: Duration) {
        let step = if by <= Duration::from_secs(600) {
            Duration::from_secs(1)
        } else {
            by / 600
        };
        let mut left = by;
        while !left.is_zero() {
            let s = step.min(left);
            self.clock.advance(s);
            self.reconcile(false);
            left -= s;
            tokio::task::yield_now().await;
        }
    }

    /// Runs a controller pass now: over what changed and what is due, or (`full`) everything.
    fn reconcile(&self, full: bool) {
        let mut queue = self.reconciling.lock().unwrap_or_else(|e| e.into_inner());
        let ctx = controllers::Ctx::new(&self.store, &self.faults, self.clock.now());
        controllers::reconcile_all(&ctx, &mut queue, full);
    }

    /// Runs a controller pass unless the last one left nothing to do: no write since, no
    /// change of faults, and no wake-up due on the sim clock. Returns whether it ran.
    fn reconcile_if_due(&self) -> bool {
        let due = match self
            .reconciling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settled
        {
            None => true,
            Some(s) => {
                s.rv != self.store.resource_version()
                    || s.faults != self.faults.generation()
                    || s.wake.is_some_and(|w| self.clock.now() >= w)
            }
        };
        if due {
            self.reconcile(false);
        }
        due
    }
}

/// Options for [`KubeSim::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// How often controllers run in real time (they also run right after every write).
    pub tick: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tick: Duration::from_millis(200),
        }
    }
}

/// A running kubesim. Dropping it stops the server and the controllers.
pub struct KubeSim {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Create one seed object through the normal defaulting, keeping uid, times and status it carries.
fn load_object(store: &Store, now: jiff::Timestamp, mut obj: Value) -> Result<(), Error> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let def = resources::by_kind(&api_version, &kind)
        .ok_or_else(|| Error::Seed(format!("kubesim does not serve {api_version} {kind}")))?;
    let def = resources::by_storage(def.storage).unwrap_or(def);
    if def.namespaced && store::ns_of(&obj).is_empty() {
        obj["metadata"]["namespace"] = serde_json::json!("default");
    }
    objects::apply_defaults(def, &mut obj);
    objects::validate(def, &obj, None)?;
    store.create(def, obj, now, false)?;
    Ok(())
}

impl KubeSim {
    /// Start on 127.0.0.1 with a free port.
    pub async fn start(seed: Seed) -> Result<KubeSim, Error> {
        Self::start_with(seed, Options::default()).await
    }

    /// Start with explicit options.
    pub async fn start_with(seed: Seed, opts: Options) -> Result<KubeSim, Error> {
        let listener = tokio::net::TcpListener::bind(opts.addr).await?;
        let addr = listener.local_addr()?;
        let real_now = jiff::Timestamp::now();
        let start = real_now - jiff::SignedDuration::try_from(seed.warm_up).unwrap_or_default();
        let shared = Arc::new(Shared {
            store: Store::new(),
            clock: SimClock::new(start),
            faults: Faults::default(),
            addr,
            kick: tokio::sync::Notify::new(),
            reconciling: Mutex::new(controllers::Queue::default()),
        });
        shared.store.track_changes();
        // Namespaces first, then everything else in seed order.
        let mut objs = seed.objects;
        for ns in ["default", "kube-system", "kube-public"] {
            if !objs
                .iter()
                .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == ns)
            {
                objs.push(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
            }
        }
        objs.sort_by_key(|o| if o["kind"] == "Namespace" { 0 } else { 1 });
        for o in objs {
            load_object(&shared.store, shared.clock.now(), o)?;
        }
        // Warm up: run the controllers through the simulated past up to now.
        shared.clock.pause();
        loop {
            let now = shared.clock.now();
            if now >= real_now {
                break;
            }
            let step = real_now
                .duration_since(now)
                .min(jiff::SignedDuration::from_secs(5));
            shared.clock.advance(step.unsigned_abs());
            shared.reconcile_if_due();
        }
        shared.reconcile_if_due();
        shared.clock.resume();

        let mut tasks = Vec::new();
        let s = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { api::handle(s, method, uri, headers, body).await }
            },
        );
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        let s = shared.clone();
        let tick = opts.tick;
        tasks.push(tokio::spawn(async move {
            let mut last_pass = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = s.kick.notified() => {}
                    _ = s.clock.changed.notified() => {}
                }
                let s2 = s.clone();
                let full = last_pass.elapsed() >= FULL_PASS_EVERY;
                let ran = tokio::task::spawn_blocking(move || {
                    if full {
                        s2.reconcile(true);
                        true
                    } else {
                        s2.reconcile_if_due()
                    }
                })
                .await;
                if ran.unwrap_or(false) {
                    last_pass = tokio::time::Instant::now();
                }
            }
        }));
        Ok(KubeSim { shared, tasks })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A kubeconfig with one context, `kubesim`, pointing at this server over plain HTTP.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_for(&self.url())
    }

    pub fn clock(&self) -> &SimClock {
        &self.shared.clock
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The raw store (core/v1 events hold the events.k8s.io/v1 ones too).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Run every controller once, now, on every object (a resync).
    pub fn reconcile(&self) {
        self.shared.reconcile(true);
    }

    /// Move simulated time forward in small steps, running the controllers after each, so rollouts,
    /// statefulset scaling, jobs and cronjobs progress as they would over that time.
    /// Steps are 1s up to 10 minutes, coarser beyond (1/600 of the span).
    pub async fn advance(&self, by: Duration) {
        self.shared.advance(by).await;
    }

    fn def(api_version: &str, kind: &str) -> Result<&'static resources::ResourceDef, ApiError> {
        let def = resources::by_kind(api_version, kind)
            .ok_or_else(|| ApiError::not_found_path(&format!("{api_version} {kind}")))?;
        Ok(resources::by_storage(def.storage).unwrap_or(def))
    }

    /// Read an object directly (no HTTP). `ns` is ignored for cluster-scoped kinds.
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let def = Self::def(api_version, kind).ok()?;
        self.shared.store.get(def, ns, name)
    }

    /// List objects directly, in one namespace or all (`None`).
    pub fn list(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
        match Self::def(api_version, kind) {
            Ok(def) => self.shared.store.list(def, ns).0,
            Err(_) => Vec::new(),
        }
    }

    /// Create or replace an object directly (no HTTP, no resourceVersion check). The object's
    /// `apiVersion`, `kind`, `metadata.name` (and `metadata.namespace`) say where it goes.
    pub fn put(&self, obj: Value) -> Result<Value, ApiError> {
        let def = Self::def(
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        )?;
        let mut obj = obj;
        if def.namespaced && store::ns_of(&obj).is_empty() {
            obj["metadata"]["namespace"] = serde_json::json!("default");
        }
        objects::apply_defaults(def, &mut obj);
        objects::check_shape(def, &obj)?;
        let exists = self
            .shared
            .store
            .get(def, store::ns_of(&obj), store::name_of(&obj))
            .is_some();
        let out = if exists {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            self.shared.store.update(def, obj, false, false)
        } else {
            self.shared
                .store
                .create(def, obj, self.shared.clock.now(), false)
        };
        self.shared.kick.notify_one();
        out
    }

    /// Delete an object directly.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let def = Self::def(api_version, kind)?;
        let out = self.shared.store.delete(def, ns, name, false);
        self.shared.kick.notify_one();
        out
    }

    /// Answer one request in-process, bypassing TCP (used by the benchmark to separate costs).
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> axum::response::Response {
        self.request_typed(method, path_and_query, None, body).await
    }

    /// [`KubeSim::request`] with a Content-Type.
    pub async fn request_typed(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> axum::response::Response {
        let uri: Uri = path_and_query
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type.and_then(|c| axum::http::HeaderValue::from_str(c).ok()) {
            headers.insert(axum::http::header::CONTENT_TYPE, ct);
        }
        api::handle(self.shared.clone(), method, uri, headers, Bytes::from(body)).await
    }
}

/// A kubeconfig for a kubesim at `url`.
pub fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {url}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim
    namespace: default
current-context: kubesim
preferences: {{}}
users:
- name: kubesim
  user: {{}}
"
    )
}
