//! Feature logging: the features served through a feature service are written, one
//! row per entity row, as Parquet files into the service's file destination, in the
//! schema Feast defines for it ([`schema`]), so Feast (`feast validate`, the offline
//! store) reads them back.
//!
//! On when `feature_server.feature_logging.enabled` is true and the service has a
//! `logging_config` with a file destination (other destinations are warned about
//! once per registry load and not logged); `sample_rate` is applied per request.
//!
//! Path of a row: the service (`crate::service`) asks [`FeatureLogger::sample`]
//! whether a request is logged, encodes the response for the client, then hands it
//! to [`FeatureLogger::log`], which moves its columns into a log entry (request data
//! and join keys as served: in the types the views declare) and enqueues it ([`queue`]: at most `queue_capacity` rows, waiting
//! at most `emit_timeout_micro_secs` for room, else the rows are dropped and counted).
//! One writer thread ([`writer`]) buffers rows in memory as Arrow batches, **writes**
//! them every `write_to_disk_interval_secs` to staged Arrow IPC files inside the
//! destination (`.feast-server-logging/`, invisible to readers), and **flushes**
//! every `flush_interval_secs`: the staged files of each partition are merged into one
//! Parquet file in the destination, where Feast reads them ([`files`]), on a second
//! thread so that encoding never keeps the queue undrained. Shutdown
//! writes and flushes everything. After a crash, staged files are kept and published
//! at the next start, so a `kill -9` loses at most the rows not yet written (those of
//! the last write interval).

mod batch;
mod entry;
mod files;
mod queue;
mod schema;
mod target;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::{oneshot, watch};

use crate::api::{OnlineFeaturesRequest, OnlineFeaturesResponse};
use crate::clock::Clock;
use crate::config::FeatureLoggingConfig;
use crate::metrics::{Metrics, encode_counters};
use crate::registry::{Registry, RegistryHandle};
use entry::LogEntry;
use queue::{Counters, Msg, RowQueue};
use target::{ServiceLog, TargetCache};

/// How often the registry is checked for services that cannot be logged.
const REGISTRY_CHECK: Duration = Duration::from_secs(1);

/// Why feature logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The writer thread could not be started.
    #[error("cannot start the feature logging writer: {0}")]
    Spawn(std::io::Error),
}

/// The feature logger's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoggingStats {
    /// Rows accepted into the queue.
    pub enqueued_rows: u64,
    /// Rows dropped because the queue was full (the requests were served).
    pub dropped_rows: u64,
    /// Rows written to staged files.
    pub written_rows: u64,
    /// Rows lost because they could not be encoded or written.
    pub failed_rows: u64,
    /// Parquet files published into destinations.
    pub published_files: u64,
    /// Rows in the published files.
    pub published_rows: u64,
    /// Failed write or flush attempts.
    pub errors: u64,
}

/// Logs served features of logged feature services.
#[derive(Debug)]
pub struct FeatureLogger {
    clock: Clock,
    registry: Arc<RegistryHandle>,
    queue: RowQueue,
    targets: TargetCache,
    counters: Arc<Counters>,
    config: FeatureLoggingConfig,
    repo_dir: PathBuf,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl FeatureLogger {
    /// Starts the writer thread (which first publishes files staged before a crash)
    /// and warns about services that cannot be logged.
    pub fn start(
        config: &FeatureLoggingConfig,
        repo_dir: PathBuf,
        registry: Arc<RegistryHandle>,
        clock: Clock,
    ) -> Result<Arc<Self>, LoggingError> {
        let counters = Arc::new(Counters::default());
        let (queue, receiver) = queue::row_queue(
            config.queue_capacity,
            Duration::from_micros(config.emit_timeout_micro_secs),
            counters.clone(),
        );
        let snapshot = registry.snapshot();
        let targets = check_services(&snapshot.registry, &repo_dir);
        let writer = writer::Writer::new(receiver, counters.clone(), &targets);
        let handle = std::thread::Builder::new()
            .name("feature-logging".into())
            .spawn(move || writer.run())
            .map_err(LoggingError::Spawn)?;
        tracing::info!(
            services = targets.len(),
            write_to_disk_interval_secs = config.write_to_disk_interval_secs,
            flush_interval_secs = config.flush_interval_secs,
            queue_capacity = config.queue_capacity,
            "feature logging on"
        );
        Ok(Arc::new(FeatureLogger {
            clock,
            targets: TargetCache::new(repo_dir.clone(), snapshot),
            registry,
            queue,
            counters,
            config: config.clone(),
            repo_dir,
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// Sends the write and flush ticks, and checks reloaded registries for services
    /// that cannot be logged, until `shutdown` flips.
    pub fn spawn_ticker(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let every = |secs: u64| {
            let period = Duration::from_secs(secs.max(1));
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        };
        let mut write = every(self.config.write_to_disk_interval_secs);
        let mut flush = every(self.config.flush_interval_secs);
        let mut check = every(REGISTRY_CHECK.as_secs());
        tokio::spawn(async move {
            let registry = this.registry.clone();
            let mut seen = registry.snapshot();
            loop {
                tokio::select! {
                    _ = write.tick() => { this.queue.control(Msg::Write); }
                    _ = flush.tick() => { this.queue.control(Msg::Flush); }
                    _ = check.tick() => {
                        let now = registry.snapshot();
                        if !Arc::ptr_eq(&now, &seen) {
                            check_services(&now.registry, &this.repo_dir);
                            seen = now;
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    /// Whether `req` is logged: its feature service is logged, and this request is
    /// sampled in (`sample_rate`).
    pub(crate) fn sample(&self, req: &OnlineFeaturesRequest) -> Option<Arc<ServiceLog>> {
        let service = req.feature_service.as_deref()?;
        let snapshot = self.registry.snapshot();
        let log = self
            .targets
            .get(&snapshot, service, req.full_feature_names)?;
        log.target.sampled().then_some(log)
    }

    /// Logs a served response of a request [`Self::sample`] chose. Never fails the
    /// request: rows that find no room are dropped and counted.
    pub(crate) async fn log(&self, log: &ServiceLog, resp: OnlineFeaturesResponse) {
        let rows = resp.rows();
        if rows == 0 {
            return;
        }
        let now_us = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let entry = LogEntry::capture(log, resp, rows, now_us);
        self.queue.push(entry).await;
    }

    /// Reports the logger's counters in `metrics`.
    pub(crate) fn register_metrics(self: &Arc<Self>, metrics: &mut Metrics) {
        metrics.register_collector(Box::new(LoggingCollector(self.clone())));
    }

    /// The counters now.
    pub fn stats(&self) -> LoggingStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LoggingStats {
            enqueued_rows: get(&c.enqueued_rows),
            dropped_rows: get(&c.dropped_rows),
            written_rows: get(&c.written_rows),
            failed_rows: get(&c.failed_rows),
            published_files: get(&c.published_files),
            published_rows: get(&c.published_rows),
            errors: get(&c.errors),
        }
    }

    /// Writes and flushes every queued row, then stops the writer. Rows logged
    /// after this are dropped.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.control(Msg::Shutdown(done)) {
            let _ = wait.await;
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        let s = self.stats();
        tracing::info!(
            written_rows = s.written_rows,
            published_files = s.published_files,
            dropped_rows = s.dropped_rows,
            failed_rows = s.failed_rows,
            "feature logging stopped"
        );
    }
}

/// Logs (once per registry load) every service whose `logging_config` cannot be
/// honoured; returns the logged services.
fn check_services(
    registry: &Registry,
    repo_dir: &std::path::Path,
) -> Vec<Arc<target::ServiceTarget>> {
    let (targets, errors) = target::resolve_all(registry, repo_dir);
    for e in errors {
        tracing::warn!("feature logging: {e}");
    }
    for t in &targets {
        tracing::info!(service = %t.service, destination = %t.destination.display(), sample_rate = t.sample_rate, "feature logging: service logged");
    }
    targets
}

/// Feature logging counters, read from the logger at scrape time.
#[derive(Debug)]
struct LoggingCollector(Arc<FeatureLogger>);

impl Collector for LoggingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        encode_counters(
            &mut encoder,
            &[
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
            ],
        )
    }
}
