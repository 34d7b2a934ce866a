//! The resource table: every kind kubesim serves is one line here.

/// One served resource (a group/version/plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources beyond the object itself: "status", "scale", "log".
    pub subresources: &'static [&'static str],
    /// Where the objects live in the store; two defs with the same storage are views of the same objects.
    pub storage: &'static str,
}

impl ResourceDef {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group, as used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether this resource's apiVersion is `api_version` (without building the string).
    pub fn is_api_version(&self, api_version: &str) -> bool {
        match api_version.split_once('/') {
            Some((group, version)) => self.group == group && self.version == version,
            None => self.group.is_empty() && self.version == api_version,
        }
    }

    pub fn has(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether a spec change bumps `metadata.generation`.
    pub fn has_generation(&self) -> bool {
        !matches!(self.kind, "Event" | "Namespace")
    }
}

#[allow(clippy::too_many_arguments)]
const fn def(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
    storage: &'static str,
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        subresources,
        storage,
    }
}

/// Every resource kubesim serves.
pub static RESOURCES: &[ResourceDef] = &[
    def(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &["status"],
        "namespaces",
    ),
    def(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["status", "log"],
        "pods",
    ),
    def(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        "events",
    ),
    def(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["status", "scale"],
        "apps/deployments",
    ),
    def(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["status", "scale"],
        "apps/replicasets",
    ),
    def(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        &["status", "scale"],
        "apps/statefulsets",
    ),
    def(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        &[],
        &["status"],
        "batch/jobs",
    ),
    def(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
        &["status"],
        "batch/cronjobs",
    ),
    def(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
        &["status"],
        "autoscaling/horizontalpodautoscalers",
    ),
    def(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        "events",
    ),
];

/// Groups in discovery order with their versions (preferred first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version)
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// Look a resource up by group, version and plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look a resource up by apiVersion and kind (for seeds and the direct store API).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.is_api_version(api_version))
}

/// The def that owns a storage key natively (the first one listed).
pub fn by_storage(storage: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.storage == storage)
}

pub fn namespaces() -> &'static ResourceDef {
    by_kind("v1", "Namespace").expect("table")
}
pub fn pods() -> &'static ResourceDef {
    by_kind("v1", "Pod").expect("table")
}
pub fn events() -> &'static ResourceDef {
    by_kind("v1", "Event").expect("table")
}
pub fn deployments() -> &'static ResourceDef {
    by_kind("apps/v1", "Deployment").expect("table")
}
pub fn replicasets() -> &'static ResourceDef {
    by_kind("apps/v1", "ReplicaSet").expect("table")
}
pub fn statefulsets() -> &'static ResourceDef {
    by_kind("apps/v1", "StatefulSet").expect("table")
}
pub fn jobs() -> &'static ResourceDef {
    by_kind("batch/v1", "Job").expect("table")
}
pub fn cronjobs() -> &'static ResourceDef {
    by_kind("batch/v1", "CronJob").expect("table")
}
pub fn hpas() -> &'static ResourceDef {
    by_kind("autoscaling/v2", "HorizontalPodAutoscaler").expect("table")
}
