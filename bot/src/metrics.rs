//! Prometheus metrics, served as text on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub platform: String,
    pub action: String,
    pub decision: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub platform: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

/// Every metric opsbot exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<ActionLabels, Histogram>,
    pub pending_approvals: Gauge,
    pub rate_limited: Counter,
    pub rejections: Family<RejectionLabels, Counter>,
    pub undelivered: Counter,
    pub open_incidents: Family<SeverityLabels, Gauge>,
    pub time_to_ack: Family<SeverityLabels, Histogram>,
    pub time_to_resolve: Family<SeverityLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("opsbot");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by platform, action, decision and outcome",
            requests.clone(),
        );
        let duration = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time from invocation to final reply, by action",
            duration.clone(),
        );
        let pending_approvals = Gauge::default();
        registry.register(
            "pending_approvals",
            "Approval requests waiting for a decision",
            pending_approvals.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit",
            rate_limited.clone(),
        );
        let open_incidents = Family::<SeverityLabels, Gauge>::default();
        registry.register(
            "open_incidents",
            "Incidents not closed, by severity",
            open_incidents.clone(),
        );
        // 30 s to ~34 h.
        let incident_buckets = || Histogram::new(exponential_buckets(30.0, 2.0, 13));
        let time_to_ack = Family::<SeverityLabels, Histogram>::new_with_constructor(
            incident_buckets as fn() -> Histogram,
        );
        registry.register(
            "incident_time_to_ack_seconds",
            "From opening an incident to its acknowledgement, by severity",
            time_to_ack.clone(),
        );
        let time_to_resolve = Family::<SeverityLabels, Histogram>::new_with_constructor(
            incident_buckets as fn() -> Histogram,
        );
        registry.register(
            "incident_time_to_resolve_seconds",
            "From opening an incident to its resolution, by severity",
            time_to_resolve.clone(),
        );
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "rejections",
            "Inbound requests refused before parsing (signature, size, replay, …)",
            rejections.clone(),
        );
        let undelivered = Counter::default();
        registry.register(
            "undelivered",
            "Replies that could not be delivered after retries",
            undelivered.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            pending_approvals,
            rate_limited,
            rejections,
            undelivered,
            open_incidents,
            time_to_ack,
            time_to_resolve,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn count_request(&self, platform: &str, action: &str, decision: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                platform: platform.to_owned(),
                action: action.to_owned(),
                decision: decision.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn count_rejection(&self, platform: &str, kind: &str) {
        self.rejections
            .get_or_create(&RejectionLabels {
                platform: platform.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn observe_duration(&self, action: &str, seconds: f64) {
        self.duration
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.count_request("console", "scale", "allow", "ok");
        m.count_rejection("slack", "bad_signature");
        m.pending_approvals.set(3);
        m.observe_duration("scale", 0.25);
        let text = m.render();
        assert!(
            text.contains(
                r#"opsbot_requests_total{platform="console",action="scale",decision="allow",outcome="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"opsbot_rejections_total{platform="slack",kind="bad_signature"} 1"#),
            "{text}"
        );
        assert!(text.contains("opsbot_pending_approvals 3"), "{text}");
        assert!(
            text.contains(r#"opsbot_request_duration_seconds_count{action="scale"} 1"#),
            "{text}"
        );
    }
}
