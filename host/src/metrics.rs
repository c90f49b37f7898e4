//! The Prometheus registry of one server (no global state: each app owns its
//! registry, so several servers in one process, as in tests, count separately).
//! Each component registers the collectors of what it counts, next to that code:
//!
//! | metric | type | labels | registered by |
//! |---|---|---|---|
//! | `feast_server_requests_total` | counter | `endpoint`, `status` | `service` |
//! | `feast_server_request_duration_seconds` | histogram | `endpoint`, `status` | `service` |
//! | `feast_server_in_flight_requests` | gauge | | `service` |
//! | `feast_server_online_store_read_duration_seconds` | histogram | `store` | `online_store` |
//! | `feast_server_online_store_errors_total` | counter | `store`, `kind` | `online_store` |
//! | `feast_server_registry_age_seconds` | gauge | | `registry` |
//! | `feast_server_registry_reloads_total` | counter | | `registry` |
//! | `feast_server_registry_reload_failures_total` | counter | | `registry` |
//! | `feast_server_plugin_call_duration_seconds` | histogram | `plugin` | `plugin` |
//! | `feast_server_plugin_errors_total` | counter | `plugin`, `kind` | `plugin` |
//! | `feast_server_feature_logging_{enqueued,dropped,written,failed}_rows_total` | counter | | `feature_logging` |
//! | `feast_server_feature_logging_published_files_total` | counter | | `feature_logging` |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// Latency buckets, in seconds (100 us .. 10 s).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram with the latency buckets every duration metric uses.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics of one server: filled while it is built, then only rendered.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            registry: Registry::with_prefix("feast_server"),
        }
    }
}

impl Metrics {
    /// Registers a metric (its name gets the `feast_server_` prefix).
    pub(crate) fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// Registers a collector that reports values owned elsewhere at scrape time.
    pub(crate) fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The Prometheus text exposition of every metric.
    #[expect(clippy::expect_used, reason = "writing into a String cannot fail")]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String");
        out
    }
}

/// Writes counters read at scrape time: `(name, help, value)` each.
pub(crate) fn encode_counters(
    encoder: &mut DescriptorEncoder<'_>,
    counters: &[(&str, &str, u64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in counters {
        let c = ConstCounter::new(value);
        c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
    }
    Ok(())
}
