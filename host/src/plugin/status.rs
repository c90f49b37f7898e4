//! What the runtime reports: `GET /plugins` (one entry per file of the plugin
//! directory, with its counters) and the plugin call metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

use super::engine::CompiledBy;
use super::runtime::PluginRuntime;
use crate::metrics::{Metrics, latency_histogram};
use crate::value::EventTime;

/// `GET /plugins`: one entry per file of the plugin directory, and one for an
/// online store component.
#[derive(Debug, Serialize)]
pub struct PluginStatus {
    /// The file.
    pub file: String,
    /// The world it implements: `odfv-plugin` or `online-store`.
    pub world: &'static str,
    /// Plugin name (absent when the file failed to load).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Plugin version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the loaded file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// When it was loaded (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// The ODFVs it serves.
    pub odfvs: Vec<String>,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Instances created.
    pub instances: u64,
    /// The last call failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why the current file could not be loaded (an older version may still serve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
    /// Milliseconds spent compiling or loading from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_ms: Option<f64>,
    /// Whether the compiled component came from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_cache: Option<bool>,
    /// Where the compiled component came from: `cache`, `child_process`, `in_process`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiled_by: Option<CompiledBy>,
}

impl PluginRuntime {
    /// `GET /plugins`.
    pub fn status(&self) -> Vec<PluginStatus> {
        let table = self.table.load();
        table
            .files
            .iter()
            .map(|(file, f)| {
                let p = f.plugin.as_ref();
                PluginStatus {
                    file: file.display().to_string(),
                    world: "odfv-plugin",
                    name: p.map(|p| p.info.name.clone()),
                    version: p.map(|p| p.info.version.clone()),
                    content_hash: p.map(|p| p.content_hash.clone()),
                    loaded_at: p.map(|p| rfc3339(p.loaded_at)),
                    odfvs: table
                        .by_odfv
                        .iter()
                        .filter(|(_, q)| p.is_some_and(|p| Arc::ptr_eq(p, q)))
                        .map(|(o, _)| o.clone())
                        .collect(),
                    calls: p.map_or(0, |p| p.stats.calls.load(Ordering::Relaxed)),
                    errors: p.map_or(0, |p| p.stats.errors.load(Ordering::Relaxed)),
                    instances: p.map_or(0, |p| p.stats.instances.load(Ordering::Relaxed)),
                    last_error: p
                        .and_then(|p| p.stats.last_error.lock().ok().and_then(|e| e.clone())),
                    load_error: f.error.clone(),
                    compile_ms: p.map(|p| p.compile_time.as_secs_f64() * 1e3),
                    from_cache: p.map(|p| p.compiled_by == CompiledBy::Cache),
                    compiled_by: p.map(|p| p.compiled_by),
                }
            })
            .collect()
    }
}

/// A system time in RFC 3339, to the second.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    EventTime {
        seconds: d.as_secs() as i64,
        nanos: 0,
    }
    .to_rfc3339()
}

/// Labels of a plugin call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

/// Labels of a failed plugin call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PluginErrorLabels {
    plugin: String,
    /// `timeout`, `memory`, `panic`, `trap`, `invalid_output`, ...
    kind: &'static str,
}

/// Plugin call durations and failures.
#[derive(Clone, Debug)]
pub(super) struct PluginMetrics {
    calls: Family<PluginLabels, Histogram, fn() -> Histogram>,
    errors: Family<PluginErrorLabels, Counter>,
}

impl PluginMetrics {
    pub(super) fn register(metrics: &mut Metrics) -> Self {
        let m = PluginMetrics {
            calls: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        };
        metrics.register(
            "plugin_call_duration_seconds",
            "Time of one on-demand feature view plugin call",
            m.calls.clone(),
        );
        metrics.register("plugin_errors", "Failed plugin calls", m.errors.clone());
        m
    }

    /// Records one call and, if it failed, its failure kind.
    pub(super) fn observe(&self, plugin: &str, took: Duration, failed: Option<&'static str>) {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        self.calls
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(kind) = failed {
            self.errors
                .get_or_create(&PluginErrorLabels {
                    plugin: labels.plugin,
                    kind,
                })
                .inc();
        }
    }
}
