//! Prometheus metrics of one server (no global state: each app owns its registry, so
//! several servers in one process, as in tests, count separately).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `feast_server_requests_total` | counter | `endpoint`, `status` |
//! | `feast_server_request_duration_seconds` | histogram | `endpoint`, `status` |
//! | `feast_server_in_flight_requests` | gauge | |
//! | `feast_server_online_store_read_duration_seconds` | histogram | `store` |
//! | `feast_server_online_store_errors_total` | counter | `store`, `kind` |
//! | `feast_server_registry_age_seconds` | gauge | |
//! | `feast_server_registry_reloads_total` | counter | |
//! | `feast_server_registry_reload_failures_total` | counter | |
//! | `feast_server_plugin_call_duration_seconds` | histogram | `plugin` |
//! | `feast_server_plugin_errors_total` | counter | `plugin`, `kind` |
//! | `feast_server_feature_logging_{enqueued,dropped,written,failed}_rows_total` | counter | |
//! | `feast_server_feature_logging_published_files_total` | counter | |

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::registry::RegistryHandle;

/// Latency buckets, in seconds (100 us .. 10 s).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `http:/get-online-features`, `grpc:GetOnlineFeatures`, ...
    pub endpoint: &'static str,
    /// HTTP status code or gRPC code name.
    pub status: String,
}

/// Labels of an online store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// Store type.
    pub store: &'static str,
}

/// Labels of an online store failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    /// Store type.
    pub store: &'static str,
    /// `unavailable`, `failed` or `corrupt`.
    pub kind: &'static str,
}

/// Labels of a plugin call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin name.
    pub plugin: String,
}

/// Labels of a failed plugin call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginErrorLabels {
    /// Plugin name.
    pub plugin: String,
    /// `timeout`, `memory`, `panic`, `trap`, `invalid_output`, ...
    pub kind: &'static str,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    store_reads: Family<StoreLabels, Histogram, fn() -> Histogram>,
    store_errors: Family<StoreErrorLabels, Counter>,
    plugin_calls: Family<PluginLabels, Histogram, fn() -> Histogram>,
    plugin_errors: Family<PluginErrorLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics; values read from `registry` are taken at scrape time.
    pub fn new(registry: Option<Arc<RegistryHandle>>) -> Self {
        let mut reg = Registry::with_prefix("feast_server");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let in_flight = Gauge::default();
        let store_reads = Family::<StoreLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let store_errors = Family::<StoreErrorLabels, Counter>::default();
        let plugin_calls =
            Family::<PluginLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let plugin_errors = Family::<PluginErrorLabels, Counter>::default();
        reg.register(
            "plugin_call_duration_seconds",
            "Time of one on-demand feature view plugin call",
            plugin_calls.clone(),
        );
        reg.register(
            "plugin_errors",
            "Failed plugin calls",
            plugin_errors.clone(),
        );
        reg.register("requests", "Requests served", requests.clone());
        reg.register(
            "request_duration_seconds",
            "Time to answer a request",
            request_duration.clone(),
        );
        reg.register(
            "in_flight_requests",
            "Requests being served",
            in_flight.clone(),
        );
        reg.register(
            "online_store_read_duration_seconds",
            "Time of one batched online store read",
            store_reads.clone(),
        );
        reg.register(
            "online_store_errors",
            "Failed online store reads",
            store_errors.clone(),
        );
        if let Some(handle) = registry {
            reg.register_collector(Box::new(RegistryCollector(handle)));
        }
        Metrics {
            registry: reg,
            requests,
            request_duration,
            in_flight,
            store_reads,
            store_errors,
            plugin_calls,
            plugin_errors,
        }
    }

    /// Records one plugin call and, if it failed, its failure kind.
    pub fn observe_plugin_call(&self, plugin: &str, took: Duration, failed: Option<&'static str>) {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        self.plugin_calls
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(kind) = failed {
            self.plugin_errors
                .get_or_create(&PluginErrorLabels {
                    plugin: labels.plugin,
                    kind,
                })
                .inc();
        }
    }

    /// Registers a collector that reports values owned elsewhere at scrape time.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// Counts a served request and its duration.
    pub fn observe_request(&self, endpoint: &'static str, status: String, took: Duration) {
        let labels = RequestLabels { endpoint, status };
        self.request_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    /// The in-flight requests gauge.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Records one online store read.
    pub fn observe_store_read(&self, store: &'static str, took: Duration) {
        self.store_reads
            .get_or_create(&StoreLabels { store })
            .observe(took.as_secs_f64());
    }

    /// Counts a failed online store read.
    pub fn count_store_error(&self, store: &'static str, kind: &'static str) {
        self.store_errors
            .get_or_create(&StoreErrorLabels { store, kind })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Feature logging counters, read from the logger at scrape time.
#[derive(Debug)]
pub struct LoggingCollector(pub Arc<crate::feature_logging::FeatureLogger>);

impl Collector for LoggingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        for (name, help, value) in [
            (
                "feature_logging_enqueued_rows",
                "Log rows queued for writing",
                s.enqueued_rows,
            ),
            (
                "feature_logging_dropped_rows",
                "Log rows dropped because the queue was full (requests were served)",
                s.dropped_rows,
            ),
            (
                "feature_logging_written_rows",
                "Log rows written to staged files",
                s.written_rows,
            ),
            (
                "feature_logging_failed_rows",
                "Log rows lost to encoding or write errors",
                s.failed_rows,
            ),
            (
                "feature_logging_published_files",
                "Parquet log files published into destinations",
                s.published_files,
            ),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// Registry freshness and reload counts, read from the live registry handle.
#[derive(Debug)]
struct RegistryCollector(Arc<RegistryHandle>);

impl Collector for RegistryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let loaded_at = self.0.snapshot().loaded_at;
        let age = SystemTime::now()
            .duration_since(loaded_at)
            .unwrap_or_default()
            .as_secs_f64();
        let gauge = ConstGauge::new(age);
        gauge.encode(encoder.encode_descriptor(
            "registry_age_seconds",
            "Seconds since the registry served now was loaded",
            None,
            gauge.metric_type(),
        )?)?;
        let reloads = ConstCounter::new(self.0.reload_count());
        reloads.encode(encoder.encode_descriptor(
            "registry_reloads",
            "Registry reloads that swapped in a new registry",
            None,
            reloads.metric_type(),
        )?)?;
        let failures = ConstCounter::new(self.0.reload_failure_count());
        failures.encode(encoder.encode_descriptor(
            "registry_reload_failures",
            "Registry reloads that failed (the last good registry kept serving)",
            None,
            failures.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(None);
        m.observe_request(
            "http:/get-online-features",
            "200".into(),
            Duration::from_millis(2),
        );
        m.observe_store_read("sqlite", Duration::from_micros(50));
        m.count_store_error("redis", "unavailable");
        let text = m.render();
        assert!(
            text.contains(
                "feast_server_requests_total{endpoint=\"http:/get-online-features\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("feast_server_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(
                "feast_server_online_store_errors_total{store=\"redis\",kind=\"unavailable\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("feast_server_in_flight_requests 0"), "{text}");
    }
}
