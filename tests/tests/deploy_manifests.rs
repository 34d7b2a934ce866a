//! `deploy/`: what an operator applies to run opsbot in a cluster.
//!
//! - every manifest parses into its k8s-openapi type, with no field k8s-openapi does not know;
//! - the RBAC grants exactly the (apiGroup, resource, verb) set the commands need, written down
//!   below, and the commands, run against kubesim with everything else forbidden, use exactly
//!   that set: every one of them succeeds, and every permission granted is used by one;
//! - the ConfigMap's `opsbot.yaml` loads as opsbot's configuration, reading its secrets from
//!   files named like the Secret's keys under the Secret's mount, and its policy loads;
//! - the Deployment's probes, ports, volumes and security settings agree with the config;
//! - `kubectl kustomize` builds the default and the SQLite variant (when kubectl is installed).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PersistentVolumeClaim, PodSpec, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::client::{Body, ClientBuilder};
use kubesim::{KubeSim, Seed};
use opsbot::config::{ClusterSource, Config};
use opsbot_commands::ops::{OpOptions, RetryPolicy};
use opsbot_commands::{
    Clusters, Command, Op, OpError, Operator, PodSelector, ProgressSender, Reply, Workload,
    WorkloadKind,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The permissions
// ---------------------------------------------------------------------------------------------

/// Every (apiGroup, resource, verb) opsbot's commands need (commands/src/ops/*.rs), and the
/// operation that needs it. `""` is the core group.
const NEEDED: &[(&str, &str, &str)] = &[
    // status, pods, logs (is the name a deployment?), scale/restart/rollback (read before,
    // follow the rollout after), rollback (re-read before the update)
    ("apps", "deployments", "get"),
    // "did you mean …?" suggestions when a deployment is not found
    ("apps", "deployments", "list"),
    // following a rollout after scale/restart/rollback (wait for the next change)
    ("apps", "deployments", "watch"),
    // restart: the kubectl.kubernetes.io/restartedAt pod-template annotation
    ("apps", "deployments", "patch"),
    // rollback: the old ReplicaSet's pod template put back (like `kubectl rollout undo`)
    ("apps", "deployments", "update"),
    // scale deployment: replicas before
    ("apps", "deployments/scale", "get"),
    // scale deployment (also --dry-run, a server-side dry-run patch)
    ("apps", "deployments/scale", "patch"),
    // status/scale/restart of a statefulset, pods/logs (is the name a statefulset?)
    ("apps", "statefulsets", "get"),
    // suggestions when a statefulset is not found
    ("apps", "statefulsets", "list"),
    // following a statefulset's rollout
    ("apps", "statefulsets", "watch"),
    // restart statefulset
    ("apps", "statefulsets", "patch"),
    // scale statefulset: replicas before
    ("apps", "statefulsets/scale", "get"),
    // scale statefulset
    ("apps", "statefulsets/scale", "patch"),
    // rollback: the revision history (the deployment's ReplicaSets)
    ("apps", "replicasets", "list"),
    // pods/logs given a pod's name
    ("", "pods", "get"),
    // pods, logs (the pods of a workload), backup run (the failed job's pod)
    ("", "pods", "list"),
    // logs; backup run (last lines of a failed backup)
    ("", "pods/log", "get"),
    // events; status (recent warnings)
    ("", "events", "list"),
    // hpa NAME (show and set)
    ("autoscaling", "horizontalpodautoscalers", "get"),
    // hpa WORKLOAD (the HPA that scales it); scale (warns about an HPA)
    ("autoscaling", "horizontalpodautoscalers", "list"),
    // hpa NAME --min/--max
    ("autoscaling", "horizontalpodautoscalers", "patch"),
    // backup status CRONJOB; backup run (the job template)
    ("batch", "cronjobs", "get"),
    // backup status (every CronJob named *backup*)
    ("batch", "cronjobs", "list"),
    // backup run: a Job from the CronJob (like `kubectl create job --from=cronjob/…`)
    ("batch", "jobs", "create"),
    // backup run: follow the Job
    ("batch", "jobs", "get"),
    // backup run: wait for the Job to change
    ("batch", "jobs", "watch"),
    // backup status: recent runs
    ("batch", "jobs", "list"),
    // a mistyped namespace: does it exist? (clusterrole-namespaces.yaml, optional)
    ("", "namespaces", "get"),
    // … and the nearest existing namespaces
    ("", "namespaces", "list"),
];

type Perm = (String, String, String);

fn needed() -> BTreeSet<Perm> {
    let set: BTreeSet<Perm> = NEEDED
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    assert_eq!(set.len(), NEEDED.len(), "NEEDED has duplicates");
    set
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn k8s_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn read(rel: &str) -> String {
    let path = k8s_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str::<Value>(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `value` without null fields and empty maps/lists (what a serializer may leave out).
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| {
                    !(v.is_null()
                        || v.as_object().is_some_and(|o| o.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty()))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// Parses `value` as `K`, and checks that `K` keeps every field: a misspelt or misplaced key
/// (which Kubernetes would reject or silently drop) fails here.
fn typed_value<K: DeserializeOwned + Serialize>(what: &str, value: &Value) -> K {
    let k: K = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what}: not a {}: {e}", std::any::type_name::<K>()));
    let back = serde_json::to_value(&k).expect("serializes");
    assert_eq!(
        normalized(&back),
        normalized(value),
        "{what}: some fields are not part of {}",
        std::any::type_name::<K>()
    );
    k
}

fn typed<K: DeserializeOwned + Serialize>(rel: &str) -> K {
    typed_value(rel, &yaml(rel))
}

/// Every `*.yaml` under deploy/kubernetes, relative to it.
fn manifest_files() -> BTreeSet<String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("readable directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let rel = path.strip_prefix(base).expect("under base");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&k8s_dir(), &k8s_dir(), &mut out);
    out
}

fn deployment() -> Deployment {
    typed("deployment.yaml")
}

fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
}

fn container(d: &Deployment) -> &Container {
    let spec = pod_spec(d);
    assert_eq!(spec.containers.len(), 1, "one container");
    &spec.containers[0]
}

fn config_map_key(rel: &str, key: &str) -> String {
    let cm: ConfigMap = typed(rel);
    cm.data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("{rel} has no data.{key}"))
        .clone()
}

/// Where the pod mounts volume `name`.
fn mount_path(c: &Container, name: &str) -> String {
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let m = mounts
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no mount of volume {name}"));
    assert!(
        m.sub_path.is_none() && m.sub_path_expr.is_none(),
        "{name} is mounted with subPath: the kubelet would never update it"
    );
    m.mount_path.clone()
}

/// The keys of the example Secret.
fn secret_keys() -> BTreeMap<String, String> {
    let s: Secret = typed("secret.example.yaml");
    s.string_data.expect("stringData")
}

const SECRET_MOUNT: &str = "/var/run/secrets/opsbot/";

/// Loads `opsbot.yaml` text from a ConfigMap as opsbot does, with an empty environment, after
/// pointing the Secret's mount at `dir`, where every key of the example Secret is a file.
fn load_config(text: &str, dir: &Path) -> Config {
    for (key, value) in secret_keys() {
        std::fs::write(dir.join(&key), format!("{value}\n")).expect("write secret file");
    }
    let dir = format!("{}/", dir.display());
    let text = text.replace(SECRET_MOUNT, &dir);
    Config::from_yaml_with_env(&text, None, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("opsbot.yaml does not load:\n{e}"))
}

// ---------------------------------------------------------------------------------------------
// (a) every manifest has its type
// ---------------------------------------------------------------------------------------------

#[test]
fn every_manifest_parses_as_its_kubernetes_type() {
    let ns: Namespace = typed("namespace.yaml");
    assert_eq!(ns.metadata.name.as_deref(), Some("opsbot"));
    let sa: ServiceAccount = typed("serviceaccount.yaml");
    assert_eq!(sa.metadata.name.as_deref(), Some("opsbot"));
    let _: ClusterRole = typed("clusterrole.yaml");
    let _: ClusterRole = typed("clusterrole-namespaces.yaml");
    let _: ClusterRoleBinding = typed("clusterrolebinding.yaml");
    let _: ClusterRoleBinding = typed("clusterrolebinding-namespaces.yaml");
    let _: RoleBinding = typed("rolebinding.example.yaml");
    let _: ConfigMap = typed("configmap.yaml");
    let _: ConfigMap = typed("policy-configmap.yaml");
    let _: Deployment = typed("deployment.yaml");
    let _: Service = typed("service.yaml");
    let _: Secret = typed("secret.example.yaml");
    let _: PersistentVolumeClaim = typed("sqlite/pvc.yaml");
    let _: ConfigMap = typed("sqlite/configmap-patch.yaml");
    // A strategic-merge patch: `null` deletes a field, so only parse it.
    let patch: Deployment = serde_json::from_value(yaml("sqlite/deployment-patch.yaml"))
        .expect("sqlite/deployment-patch.yaml is a Deployment patch");
    assert_eq!(patch.metadata.name.as_deref(), Some("opsbot"));

    let kinds = [
        ("kustomization.yaml", "Kustomization"),
        ("sqlite/kustomization.yaml", "Component"),
    ];
    for (file, kind) in kinds {
        let k = yaml(file);
        assert_eq!(k["kind"], kind, "{file}");
        assert!(
            k["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("kustomize.config.k8s.io/")),
            "{file}"
        );
    }

    // Every file is checked above (a new manifest must be added here).
    let checked: BTreeSet<String> = [
        "namespace.yaml",
        "serviceaccount.yaml",
        "clusterrole.yaml",
        "clusterrole-namespaces.yaml",
        "clusterrolebinding.yaml",
        "clusterrolebinding-namespaces.yaml",
        "rolebinding.example.yaml",
        "configmap.yaml",
        "policy-configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "secret.example.yaml",
        "kustomization.yaml",
        "sqlite/kustomization.yaml",
        "sqlite/pvc.yaml",
        "sqlite/configmap-patch.yaml",
        "sqlite/deployment-patch.yaml",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(manifest_files(), checked);

    // Namespaced objects live in `opsbot`; cluster-scoped ones have no namespace.
    for file in manifest_files() {
        let v = yaml(&file);
        let kind = v["kind"].as_str().unwrap_or_default();
        let ns = v["metadata"]["namespace"].as_str();
        match kind {
            "Kustomization" | "Component" => {}
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" => assert_eq!(ns, None, "{file}"),
            // The example binds in a namespace opsbot manages.
            "RoleBinding" => assert_eq!(ns, Some("production"), "{file}"),
            _ => assert_eq!(ns, Some("opsbot"), "{file}"),
        }
    }
}

#[test]
fn kustomization_applies_every_manifest_but_the_examples() {
    let k = yaml("kustomization.yaml");
    let resources: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path").to_owned())
        .collect();
    let expected: BTreeSet<String> = manifest_files()
        .into_iter()
        .filter(|f| !f.contains('/') && f != "kustomization.yaml" && !f.contains(".example."))
        .collect();
    assert_eq!(resources, expected);
    // The secret template is never applied (re-applying would overwrite the real values).
    assert!(!resources.contains("secret.example.yaml"));

    // The image set in kustomization.yaml is the Deployment's.
    let image = container(&deployment()).image.clone().expect("an image");
    let name = image.split(':').next().unwrap_or_default();
    let images = k["images"].as_array().expect("images");
    assert!(
        images.iter().any(|i| i["name"] == name),
        "kustomization.yaml sets no image named {name}"
    );

    let c = yaml("sqlite/kustomization.yaml");
    assert_eq!(c["resources"], json!(["pvc.yaml"]));
    let patches: Vec<&str> = c["patches"]
        .as_array()
        .expect("patches")
        .iter()
        .map(|p| p["path"].as_str().expect("a path"))
        .collect();
    assert_eq!(patches, ["deployment-patch.yaml", "configmap-patch.yaml"]);
    assert!(
        read("kustomization.yaml").contains("# components:\n#   - sqlite"),
        "kustomization.yaml shows how to switch to SQLite"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) RBAC: exactly what the commands need
// ---------------------------------------------------------------------------------------------

fn perms_of(role: &ClusterRole, file: &str) -> BTreeSet<Perm> {
    let mut out = BTreeSet::new();
    for rule in role.rules.as_deref().unwrap_or_default() {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{file}: resourceNames / nonResourceURLs are not used"
        );
        let groups = rule.api_groups.as_deref().unwrap_or_default();
        let resources = rule.resources.as_deref().unwrap_or_default();
        assert!(!groups.is_empty() && !resources.is_empty() && !rule.verbs.is_empty());
        for g in groups {
            for r in resources {
                for v in &rule.verbs {
                    for s in [g, r, v] {
                        assert!(!s.contains('*'), "{file}: wildcard {s:?}");
                    }
                    assert!(
                        out.insert((g.clone(), r.clone(), v.clone())),
                        "{file}: ({g:?}, {r}, {v}) granted twice"
                    );
                }
            }
        }
    }
    out
}

fn granted() -> BTreeSet<Perm> {
    let main: ClusterRole = typed("clusterrole.yaml");
    let ns: ClusterRole = typed("clusterrole-namespaces.yaml");
    assert_eq!(main.metadata.name.as_deref(), Some("opsbot"));
    assert_eq!(ns.metadata.name.as_deref(), Some("opsbot-namespaces"));
    assert!(main.aggregation_rule.is_none() && ns.aggregation_rule.is_none());
    let a = perms_of(&main, "clusterrole.yaml");
    let b = perms_of(&ns, "clusterrole-namespaces.yaml");
    // The optional role holds the cluster-scoped namespaces only, the main one everything else.
    assert!(b.iter().all(|(g, r, _)| g.is_empty() && r == "namespaces"));
    assert!(a.iter().all(|(_, r, _)| r != "namespaces"));
    a.union(&b).cloned().collect()
}

#[test]
fn rbac_grants_exactly_what_the_commands_need() {
    let granted = granted();
    let needed = needed();
    let extra: Vec<_> = granted.difference(&needed).collect();
    let missing: Vec<_> = needed.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "granted but not needed: {extra:?}\nneeded but not granted: {missing:?}"
    );
    // Spelled out: nothing opsbot must never be able to do.
    for (g, r, v) in &granted {
        assert!(
            !matches!(
                r.as_str(),
                "secrets"
                    | "configmaps"
                    | "pods/exec"
                    | "pods/attach"
                    | "pods/portforward"
                    | "pods/eviction"
                    | "serviceaccounts/token"
                    | "nodes"
                    | "roles"
                    | "rolebindings"
                    | "clusterroles"
                    | "clusterrolebindings"
            ),
            "({g:?}, {r}, {v})"
        );
        assert!(
            !matches!(
                v.as_str(),
                "delete" | "deletecollection" | "escalate" | "bind" | "impersonate"
            ),
            "({g:?}, {r}, {v})"
        );
        if v == "create" {
            assert_eq!((g.as_str(), r.as_str()), ("batch", "jobs"));
        }
    }
}

#[test]
fn bindings_give_the_roles_to_opsbots_service_account() {
    let sa: ServiceAccount = typed("serviceaccount.yaml");
    let want = Subject {
        kind: "ServiceAccount".into(),
        name: sa.metadata.name.clone().expect("a name"),
        namespace: sa.metadata.namespace.clone(),
        api_group: None,
    };
    assert_eq!(
        pod_spec(&deployment()).service_account_name.as_deref(),
        Some(want.name.as_str())
    );
    for (file, role) in [
        ("clusterrolebinding.yaml", "opsbot"),
        ("clusterrolebinding-namespaces.yaml", "opsbot-namespaces"),
    ] {
        let b: ClusterRoleBinding = typed(file);
        assert_eq!(b.role_ref.kind, "ClusterRole", "{file}");
        assert_eq!(b.role_ref.name, role, "{file}");
        assert_eq!(b.subjects.as_deref(), Some(&[want.clone()][..]), "{file}");
    }
    // The per-namespace alternative binds the same ClusterRole to the same account.
    let rb: RoleBinding = typed("rolebinding.example.yaml");
    assert_eq!(rb.role_ref.kind, "ClusterRole");
    assert_eq!(rb.role_ref.name, "opsbot");
    assert_eq!(rb.subjects.as_deref(), Some(&[want][..]));
}

// ---------------------------------------------------------------------------------------------
// (b, behaviour) the commands against kubesim, everything outside the RBAC forbidden
// ---------------------------------------------------------------------------------------------

/// (group, resource[/subresource], verb) of a request to the API server, as RBAC sees it.
fn perm_of(method: &http::Method, path: &str, query: Option<&str>) -> Perm {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource request: {method} {path}"),
    };
    let (resource, name, sub) = match rest {
        ["namespaces", _ns, resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [] => panic!("no resource in {path}"),
    };
    let watch = query
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => panic!("unexpected method {m} {path}"),
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    (group.to_owned(), resource, verb.to_owned())
}

#[test]
fn request_paths_map_to_rbac_permissions() {
    let get = http::Method::GET;
    let p = |g: &str, r: &str, v: &str| (g.to_owned(), r.to_owned(), v.to_owned());
    assert_eq!(
        perm_of(
            &get,
            "/apis/apps/v1/namespaces/shop/deployments/web/scale",
            None
        ),
        p("apps", "deployments/scale", "get")
    );
    assert_eq!(
        perm_of(
            &get,
            "/apis/apps/v1/namespaces/shop/deployments",
            Some("watch=true&fieldSelector=metadata.name%3Dweb")
        ),
        p("apps", "deployments", "watch")
    );
    assert_eq!(
        perm_of(
            &get,
            "/api/v1/namespaces/shop/pods/web-1/log",
            Some("tailLines=10")
        ),
        p("", "pods/log", "get")
    );
    assert_eq!(
        perm_of(&get, "/api/v1/namespaces/shpo", None),
        p("", "namespaces", "get")
    );
    assert_eq!(
        perm_of(&get, "/api/v1/namespaces", None),
        p("", "namespaces", "list")
    );
    assert_eq!(
        perm_of(
            &http::Method::POST,
            "/apis/batch/v1/namespaces/ops/jobs",
            None
        ),
        p("batch", "jobs", "create")
    );
}

type Seen = Arc<Mutex<BTreeSet<Perm>>>;

fn recording_client(sim: &KubeSim, seen: Seen) -> kube::Client {
    let config = kube::Config::new(sim.url().parse().expect("kubesim url"));
    ClientBuilder::try_from(config)
        .expect("client")
        .with_layer(&tower::layer::layer_fn(move |svc| {
            let seen = seen.clone();
            tower::ServiceExt::map_request(svc, move |req: http::Request<Body>| {
                let perm = perm_of(req.method(), req.uri().path(), req.uri().query());
                seen.lock().unwrap_or_else(|e| e.into_inner()).insert(perm);
                req
            })
        }))
        .build()
}

fn seed_objects() -> Vec<Value> {
    let deployment = |name: &str, image: &str, replicas: i64| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "progressDeadlineSeconds": 60,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": name, "image": image}]},
                },
            },
        })
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        deployment("web", "nginx:1.27", 2),
        deployment("api", "api:1.0", 2),
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "db"}},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
                },
            },
        }),
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "minReplicas": 2, "maxReplicas": 6,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}}],
            },
        }),
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "db-backup", "namespace": "shop"},
            "spec": {
                "schedule": "0 1 * * *",
                "jobTemplate": {"spec": {"backoffLimit": 0, "template": {
                    "metadata": {"annotations": {"kubesim.io/duration-seconds": "20"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "backup", "image": "postgres:16",
                                        "command": ["pg_dump"]}],
                    },
                }}},
            },
        }),
    ]
}

/// Runs `op` in `ns` while moving kubesim's clock, so rollouts and jobs progress.
async fn drive(
    sim: &Arc<KubeSim>,
    operator: &Operator,
    ns: &str,
    op: Op,
) -> Result<Reply, OpError> {
    let cmd = Command {
        cluster: None,
        namespace: Some(ns.to_owned()),
        op,
    };
    let operator = operator.clone();
    let task = tokio::spawn(async move { operator.execute(&cmd, ProgressSender::none()).await });
    while !task.is_finished() {
        sim.advance(Duration::from_secs(1)).await;
        // Slowly enough that a follow sees the rollout in progress (and watches it).
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    task.await.expect("operation task")
}

fn workload(kind: WorkloadKind, name: &str) -> Workload {
    Workload {
        kind,
        name: name.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_use_exactly_the_granted_permissions() {
    let seed = Seed {
        objects: seed_objects(),
        warm_up: Duration::from_secs(60),
    };
    let sim = Arc::new(KubeSim::start(seed).await.expect("kubesim starts"));
    sim.clock().pause();

    // Everything the RBAC does not grant answers 403, as it would in a cluster. (kubesim's
    // denials ignore the API group, so a resource+verb granted in one group stays allowed in
    // all; the recording below still sees the group.)
    let granted = granted();
    let granted_any_group: BTreeSet<(&str, &str)> = granted
        .iter()
        .map(|(_, r, v)| (r.as_str(), v.as_str()))
        .collect();
    let verbs = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    for def in kubesim::resources::RESOURCES {
        let resources = std::iter::once(def.plural.to_owned()).chain(
            def.subresources
                .iter()
                .map(|s| format!("{}/{s}", def.plural)),
        );
        for resource in resources {
            for verb in verbs {
                if !granted_any_group.contains(&(resource.as_str(), verb)) {
                    sim.faults().forbid(verb, &resource);
                }
            }
        }
    }

    let seen: Seen = Arc::default();
    let mut clusters = Clusters::new();
    clusters.add("sim", recording_client(&sim, seen.clone()), "shop");
    let clock = sim.clone();
    let options = OpOptions {
        retry: RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(5),
            request_timeout: Duration::from_secs(10),
        },
        rollout_timeout: Duration::from_secs(60),
        job_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(500),
        clock: Arc::new(move || clock.clock().now()),
        ..OpOptions::default()
    };
    let operator = Operator::with_options(clusters, options);
    let d = WorkloadKind::Deployment;
    let s = WorkloadKind::StatefulSet;

    // A second revision of web, for rollback.
    let mut web = sim
        .get("apps/v1", "Deployment", "shop", "web")
        .expect("web");
    web["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    sim.put(web).expect("new image");
    for _ in 0..120 {
        sim.advance(Duration::from_secs(1)).await;
    }
    let pod = sim
        .list("v1", "Pod", Some("shop"))
        .into_iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .find(|n| n.starts_with("db-"))
        .expect("a pod of db");

    let ops = vec![
        Op::Status {
            workload: workload(d, "web"),
        },
        Op::Status {
            workload: workload(s, "db"),
        },
        Op::Pods {
            selector: Some(PodSelector::Name("web".into())),
        },
        Op::Logs {
            source: PodSelector::Name("web".into()),
            tail: Some(20),
            since: None,
            grep: None,
            container: None,
            previous: false,
        },
        // A pod by name.
        Op::Logs {
            source: PodSelector::Name(format!("pod/{pod}")),
            tail: Some(20),
            since: None,
            grep: None,
            container: None,
            previous: false,
        },
        Op::Events {
            name: Some("web".into()),
            since: None,
            warnings: false,
        },
        Op::Scale {
            workload: workload(d, "web"),
            replicas: 3,
            dry_run: true,
        },
        Op::Scale {
            workload: workload(d, "web"),
            replicas: 3,
            dry_run: false,
        },
        Op::Scale {
            workload: workload(s, "db"),
            replicas: 2,
            dry_run: false,
        },
        Op::Restart {
            workload: workload(d, "web"),
        },
        Op::Restart {
            workload: workload(s, "db"),
        },
        Op::Rollback {
            name: "web".into(),
            to_revision: Some(1),
        },
        Op::Hpa {
            name: "api".into(),
            min: None,
            max: None,
        },
        Op::Hpa {
            name: "api".into(),
            min: Some(3),
            max: Some(8),
        },
        Op::BackupStatus {
            cronjob: None,
            all: false,
        },
        Op::BackupRun {
            cronjob: "db-backup".into(),
            job: None,
        },
    ];
    for op in ops {
        let reply = drive(&sim, &operator, "shop", op.clone())
            .await
            .unwrap_or_else(|e| panic!("{op:?} failed: {e}"));
        assert!(
            !matches!(reply.tone, opsbot_commands::Tone::Danger),
            "{op:?}: {reply:#?}"
        );
    }
    // Mistyped names: the nearest names, from lists (of deployments, statefulsets, namespaces).
    let mistyped = [
        ("shop", workload(d, "wbe"), "deployment", "web"),
        ("shop", workload(s, "dv"), "statefulset", "db"),
        ("shpo", workload(d, "web"), "namespace", "shop"),
    ];
    for (ns, w, want_kind, suggested) in mistyped {
        match drive(&sim, &operator, ns, Op::Status { workload: w }).await {
            Err(OpError::NotFound {
                kind, suggestions, ..
            }) => {
                assert_eq!(kind, want_kind);
                assert!(
                    suggestions.iter().any(|s| s == suggested),
                    "{kind}: {suggestions:?}"
                );
            }
            other => panic!("expected {want_kind} not found in {ns}, got {other:?}"),
        }
    }

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let needed = needed();
    let not_granted: Vec<_> = seen.difference(&granted).collect();
    assert!(
        not_granted.is_empty(),
        "used but not granted: {not_granted:?}"
    );
    let unused: Vec<_> = needed.difference(&seen).collect();
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
}

// ---------------------------------------------------------------------------------------------
// (c) the configuration and the policy
// ---------------------------------------------------------------------------------------------

#[test]
fn config_map_loads_as_opsbots_configuration() {
    let d = deployment();
    let c = container(&d);
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config_map_key("configmap.yaml", "opsbot.yaml");
    let config = load_config(&text, dir.path());
    let secrets = secret_keys();

    // The file opsbot is told to read is this ConfigMap's key, where the pod mounts it.
    let env: BTreeMap<String, String> = c
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env.get("OPSBOT_CONFIG").map(String::as_str),
        Some(format!("{}/opsbot.yaml", mount_path(c, "config")).as_str())
    );
    assert_eq!(c.args.as_deref(), Some(&["serve".to_owned()][..]));

    assert_eq!(config.listen, "0.0.0.0:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(config.clusters.len(), 1);
    assert_eq!(config.clusters[0].source, ClusterSource::InCluster);
    assert_eq!(config.data_dir, PathBuf::from(mount_path(c, "data")));
    assert_eq!(
        config.policy,
        PathBuf::from(format!("{}/policy.yaml", mount_path(c, "policy")))
    );
    // PostgreSQL by default, from the Secret's file.
    assert_eq!(config.database_url.expose(), secrets["database-url"]);
    assert!(config.database_url.expose().starts_with("postgres://"));
    assert_eq!(
        config.slack.bot_token.as_ref().map(|s| s.expose()),
        Some(secrets["slack-bot-token"].as_str())
    );
    assert_eq!(
        config.slack.signing_secret.as_ref().map(|s| s.expose()),
        Some(secrets["slack-signing-secret"].as_str())
    );
    assert!(!config.slack.socket_mode);
    assert_eq!(config.slack.app_token, None);
    // The audit key comes from the Secret (shared by replicas); checkpoints go to data_dir.
    assert_eq!(config.audit.key_file, dir.path().join("audit-key"));
    assert!(secrets.contains_key("audit-key"));
    assert_eq!(
        config.audit.anchor_file,
        config.data_dir.join("audit.anchors")
    );
    // Secrets only by file: no secret value is written in the ConfigMap.
    for key in ["url:", "bot_token:", "signing_secret:", "app_token:"] {
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with(key) && !l.trim_start().starts_with('#')),
            "{key} inline in the ConfigMap"
        );
    }

    // The secret files are where the Secret is mounted.
    assert_eq!(format!("{}/", mount_path(c, "secrets")), SECRET_MOUNT);
    let volumes = pod_spec(&d).volumes.as_deref().unwrap_or_default();
    let secret_volume = volumes
        .iter()
        .find(|v| v.name == "secrets")
        .and_then(|v| v.secret.as_ref())
        .expect("a secret volume");
    let secret: Secret = typed("secret.example.yaml");
    assert_eq!(secret_volume.secret_name, secret.metadata.name);
    assert!(secret_volume.items.is_none(), "every key is mounted");
    let volume_of = |name: &str| {
        volumes
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    let config_cm: ConfigMap = typed("configmap.yaml");
    let policy_cm: ConfigMap = typed("policy-configmap.yaml");
    assert_eq!(
        volume_of("config").config_map.as_ref().map(|c| &c.name),
        config_cm.metadata.name.as_ref()
    );
    assert_eq!(
        volume_of("policy").config_map.as_ref().map(|c| &c.name),
        policy_cm.metadata.name.as_ref()
    );

    // Socket Mode, as the comments say: uncomment two lines, add slack-app-token to the Secret.
    let socket = text
        .replace("  # app_token_file: ", "  app_token_file: ")
        .replace("  # socket_mode: true", "  socket_mode: true");
    assert_ne!(socket, text, "the Socket Mode lines are in the ConfigMap");
    std::fs::write(dir.path().join("slack-app-token"), "xapp-1-test\n").expect("write");
    let socket = load_config(&socket, dir.path());
    assert!(socket.slack.socket_mode);
    assert_eq!(
        socket.slack.app_token.as_ref().map(|s| s.expose()),
        Some("xapp-1-test")
    );
}

#[test]
fn sqlite_variant_config_keeps_the_database_in_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = load_config(&config_map_key("configmap.yaml", "opsbot.yaml"), dir.path());
    let sqlite = load_config(
        &config_map_key("sqlite/configmap-patch.yaml", "opsbot.yaml"),
        dir.path(),
    );
    assert_eq!(
        sqlite.database_url.expose(),
        format!("sqlite://{}/opsbot.db", base.data_dir.display())
    );
    // Everything else is the same.
    let mut expected = base;
    expected.database_url = sqlite.database_url.clone();
    assert_eq!(sqlite, expected);

    let patch = yaml("sqlite/deployment-patch.yaml");
    assert_eq!(patch["spec"]["replicas"], 1);
    assert_eq!(patch["spec"]["strategy"]["type"], "Recreate");
    let data = &patch["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(data["name"], "data");
    let pvc: PersistentVolumeClaim = typed("sqlite/pvc.yaml");
    assert_eq!(
        data["persistentVolumeClaim"]["claimName"].as_str(),
        pvc.metadata.name.as_deref()
    );
}

#[test]
fn policy_config_map_is_a_valid_policy() {
    let text = config_map_key("policy-configmap.yaml", "policy.yaml");
    let policy = opsbot_policies::Policy::from_yaml(&text, "policy.yaml")
        .unwrap_or_else(|e| panic!("the policy does not load:\n{e}"));
    assert_eq!(
        policy.summary(),
        "policy.yaml: ok, 3 roles, 9 rules (1 deny, 2 with approval)"
    );
    // Anyone may read, incidents and alert groups too (the README says so); nobody may change
    // anything until people are put in the roles.
    let anyone = opsbot_policies::Subject::parse("slack:UANYONE").unwrap();
    for (action, allowed) in [
        ("status", true),
        ("incident.show", true),
        ("alert.show", true),
        ("incident.open", false),
        ("alert.silence", false),
        ("scale", false),
    ] {
        let action = opsbot_policies::Action::parse(action).unwrap();
        let request = opsbot_policies::Request::new(anyone.clone(), action);
        let decision = policy.decide(&request);
        assert_eq!(
            matches!(decision, opsbot_policies::Decision::Allow { .. }),
            allowed,
            "{action}: {decision:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (d) the Deployment
// ---------------------------------------------------------------------------------------------

fn port_number(c: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            c.ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

#[test]
fn deployment_probes_ports_and_security() {
    let d = deployment();
    let c = container(&d);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = load_config(&config_map_key("configmap.yaml", "opsbot.yaml"), dir.path());
    let listen = i32::from(config.listen.port());

    let probe = |p: Option<&k8s_openapi::api::core::v1::Probe>, what: &str| {
        let get = p
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{what}: an HTTP probe"));
        (
            get.path.clone().unwrap_or_default(),
            port_number(c, &get.port),
        )
    };
    assert_eq!(
        probe(c.readiness_probe.as_ref(), "readiness"),
        ("/readyz".to_owned(), listen)
    );
    assert_eq!(
        probe(c.liveness_probe.as_ref(), "liveness"),
        ("/healthz".to_owned(), listen)
    );

    // The Service reaches the same port, on the pods of this Deployment.
    let svc: Service = typed("service.yaml");
    let spec = svc.spec.expect("a spec");
    let ports = spec.ports.expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        port_number(c, ports[0].target_port.as_ref().expect("targetPort")),
        listen
    );
    let labels = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    let selector = spec.selector.expect("a selector");
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));

    // One replica by default (PostgreSQL allows two; see the comment in deployment.yaml).
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(1));

    let pod = pod_spec(&d);
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u != 0));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, None);
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(caps.add, None);
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    // With a read-only root, data_dir and /tmp are emptyDirs.
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    for (name, path) in [
        ("data", config.data_dir.display().to_string()),
        ("tmp", "/tmp".into()),
    ] {
        assert_eq!(mount_path(c, name), path);
        let v = volumes.iter().find(|v| v.name == name).expect("volume");
        assert!(v.empty_dir.is_some(), "{name} is an emptyDir");
    }
    for name in ["config", "policy", "secrets"] {
        let m = c
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| m.name == name)
            .expect("mount");
        assert_eq!(m.read_only, Some(true), "{name} is mounted read-only");
    }
    let resources = c.resources.as_ref().expect("resources");
    assert!(
        resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("cpu"))
    );
    assert!(
        resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("memory"))
    );
    assert!(
        resources
            .limits
            .as_ref()
            .is_some_and(|r| r.contains_key("memory"))
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.host_network, None);
}

// ---------------------------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------------------------

#[test]
fn dockerfile_builds_the_binary_and_runs_it_unprivileged() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // The builder's Rust is the workspace's rust-version.
    let workspace = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let rust_version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    assert_eq!(
        lines.first().copied(),
        Some(format!("FROM rust:{rust_version}-bookworm AS build").as_str())
    );
    assert!(text.contains("cargo build --release --locked -p opsbot"));
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a runtime stage");
    let runtime = &lines[last_from..];
    assert!(runtime[0].contains("distroless/cc-debian12"));
    assert!(runtime.contains(&"USER 65532:65532"));
    assert!(runtime.contains(&"EXPOSE 8080"));
    assert_eq!(
        runtime[runtime.len() - 2..],
        [
            r#"ENTRYPOINT ["/usr/local/bin/opsbot"]"#,
            r#"CMD ["serve"]"#
        ]
    );
    // The Deployment runs as the image's user.
    let d = deployment();
    let psc = pod_spec(&d)
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_eq!(psc.run_as_user, Some(65532));

    // The build context keeps what the binary embeds (deploy/*.yaml).
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for line in ignore.lines().map(str::trim) {
        assert!(
            !(line.starts_with("deploy") || line == "*.yaml" || line == "**/*.yaml"),
            ".dockerignore drops embedded files: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// kubectl kustomize
// ---------------------------------------------------------------------------------------------

/// `kubectl kustomize DIR`, or `None` when kubectl is not installed.
fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    let out = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("kubectl: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    Some(serde_saphyr::from_multiple::<Value>(&text).expect("kustomize output is YAML"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[test]
fn kubectl_kustomize_builds_both_variants() {
    let Some(objects) = kustomize(&k8s_dir()) else {
        assert!(
            !opsbot_tests::in_ci(),
            "kubectl is not installed (CI needs it)"
        );
        eprintln!("SKIPPED: kubectl is not installed; `kubectl kustomize` was not checked");
        return;
    };
    let kinds: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("Namespace", "opsbot"),
        ("ServiceAccount", "opsbot"),
        ("ClusterRole", "opsbot"),
        ("ClusterRole", "opsbot-namespaces"),
        ("ClusterRoleBinding", "opsbot"),
        ("ClusterRoleBinding", "opsbot-namespaces"),
        ("ConfigMap", "opsbot-config"),
        ("ConfigMap", "opsbot-policy"),
        ("Deployment", "opsbot"),
        ("Service", "opsbot"),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n.to_owned()))
    .collect();
    assert_eq!(kinds, want);
    let d: Deployment = typed_value("built Deployment", find(&objects, "Deployment", "opsbot"));
    assert_eq!(
        container(&d).image.as_deref(),
        Some("registry.example.com/opsbot:0.1.0")
    );
    let _: ClusterRole = typed_value("built ClusterRole", find(&objects, "ClusterRole", "opsbot"));

    // The SQLite variant: the component switched on in a copy of the directory.
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&k8s_dir(), dir.path());
    let k = dir.path().join("kustomization.yaml");
    let text = std::fs::read_to_string(&k).expect("kustomization.yaml");
    let text = text.replace("# components:\n#   - sqlite", "components:\n  - sqlite");
    std::fs::write(&k, text).expect("write");
    let objects = kustomize(dir.path()).expect("kubectl was there a moment ago");
    let d: Deployment = typed_value(
        "built SQLite Deployment",
        find(&objects, "Deployment", "opsbot"),
    );
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let strategy = spec.strategy.as_ref().expect("strategy");
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    assert!(strategy.rolling_update.is_none());
    let data = pod_spec(&d)
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == "data")
        .expect("the data volume");
    assert!(data.empty_dir.is_none());
    assert_eq!(
        data.persistent_volume_claim
            .as_ref()
            .map(|p| p.claim_name.as_str()),
        Some("opsbot-data")
    );
    let _: PersistentVolumeClaim = typed_value(
        "built PVC",
        find(&objects, "PersistentVolumeClaim", "opsbot-data"),
    );
    let cm: ConfigMap = typed_value(
        "built SQLite ConfigMap",
        find(&objects, "ConfigMap", "opsbot-config"),
    );
    let text = cm.data.expect("data")["opsbot.yaml"].clone();
    let config = load_config(&text, dir.path());
    assert!(config.database_url.expose().starts_with("sqlite://"));
}
