//! The live registry: loaded at start, re-read every `cache_ttl_seconds` and whenever
//! the file changes; a failed reload keeps the last good registry and logs why.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::watch;

use super::decode::DecodeOptions;
use super::{Registry, RegistryError, decode_registry};
use crate::config::RepoConfig;
use crate::file_watch::{Settling, Stamp, poll_timer, stamp, tick};
use crate::metrics::{Metrics, encode_counters};

/// Which registry to serve: the file, the project and how to decode it.
#[derive(Clone, Debug)]
pub struct RegistrySource {
    /// The registry file.
    pub path: PathBuf,
    /// The project served.
    pub project: String,
    /// Decoding options.
    pub opts: DecodeOptions,
}

impl RegistrySource {
    /// The registry a repository configuration names.
    pub fn of(config: &RepoConfig) -> Self {
        RegistrySource {
            path: config.registry.path.clone(),
            project: config.project.clone(),
            opts: DecodeOptions {
                key_version: config.entity_key_serialization_version,
                versioning: config.registry.enable_online_feature_view_versioning,
            },
        }
    }
}

/// One loaded registry. What others derive from it is cached per snapshot with a
/// [`SnapshotCache`], so a reload starts those caches over.
#[derive(Debug)]
pub(crate) struct RegistrySnapshot {
    /// The serving model.
    pub registry: Registry,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    fingerprint: u64,
}

/// The registry currently served, swapped atomically on reload.
#[derive(Debug)]
pub struct RegistryHandle {
    current: ArcSwap<RegistrySnapshot>,
    source: RegistrySource,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A different registry is now served.
    Swapped,
    /// The file holds the registry already served.
    Unchanged,
}

impl RegistryHandle {
    /// Loads the registry.
    pub fn load(source: RegistrySource) -> Result<Self, RegistryError> {
        let snapshot = read_snapshot(&source)?;
        log_warnings(&snapshot.registry);
        Ok(RegistryHandle {
            current: ArcSwap::from_pointee(snapshot),
            source,
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// The registry served now.
    pub(crate) fn snapshot(&self) -> Arc<RegistrySnapshot> {
        self.current.load_full()
    }

    /// The registry file.
    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// Reports the registry's age and reload counts in `metrics`.
    pub(crate) fn register_metrics(self: &Arc<Self>, metrics: &mut Metrics) {
        metrics.register_collector(Box::new(RegistryCollector(self.clone())));
    }

    /// Successful reloads that swapped the registry.
    pub fn reload_count(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads that failed (the previous registry kept serving).
    pub fn reload_failure_count(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Reads the file again and swaps it in if it differs from the one served.
    pub fn reload(&self) -> Result<ReloadOutcome, RegistryError> {
        match read_snapshot(&self.source) {
            Ok(snapshot) => {
                if snapshot.fingerprint == self.current.load().fingerprint {
                    return Ok(ReloadOutcome::Unchanged);
                }
                log_warnings(&snapshot.registry);
                tracing::info!(
                    path = %self.source.path.display(),
                    version_id = %snapshot.registry.version_id,
                    views = snapshot.registry.views.len(),
                    odfvs = snapshot.registry.odfvs.len(),
                    services = snapshot.registry.services.len(),
                    "registry reloaded"
                );
                self.current.store(Arc::new(snapshot));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(ReloadOutcome::Swapped)
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "registry reload failed; still serving the last good registry");
                Err(e)
            }
        }
    }

    /// Keeps the registry fresh until `shutdown` flips: reloads every `ttl` (zero =
    /// never, as Feast's `cache_ttl_seconds: 0`) and whenever the file's modification
    /// time or size changes (checked every `poll`; a change is picked up once the file
    /// has stopped changing for one poll). A file that failed to load is not read
    /// again until it changes or the TTL is due.
    pub fn spawn_refresh(
        self: Arc<Self>,
        ttl: Duration,
        poll: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let path = self.source.path.clone();
            // The file as last read, whether it loaded or not.
            let mut tried = stamp(&path);
            // Feast rewrites the registry in place, and a truncated protobuf can still
            // decode (to a registry missing objects): wait for the file to settle.
            let mut settling = Settling::<Stamp>::default();
            let mut last_full = tokio::time::Instant::now();
            let mut timer = poll_timer(poll);
            loop {
                tokio::select! {
                    () = tick(&mut timer) => {}
                    _ = shutdown.changed() => return,
                }
                let now = stamp(&path);
                let due = !ttl.is_zero() && last_full.elapsed() >= ttl;
                // A missing file never settles: the last good registry keeps serving.
                if !due && (now.is_none() || !settling.settled(now, &tried)) {
                    continue;
                }
                settling = Settling::default();
                let handle = self.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || handle.reload()).await {
                    tracing::error!(error = %e, "the registry reload task failed");
                }
                tried = now;
                last_full = tokio::time::Instant::now();
            }
        })
    }
}

fn read_snapshot(source: &RegistrySource) -> Result<RegistrySnapshot, RegistryError> {
    let path = &source.path;
    // Feast rewrites the file in place: only accept bytes read while the file did not
    // change, so a half-written registry is never served.
    for _ in 0..5 {
        let before = stamp(path);
        let bytes = std::fs::read(path).map_err(|source| RegistryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if stamp(path) != before {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let registry = decode_registry(&bytes, &source.project, source.opts).map_err(|source| {
            RegistryError::Decode {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if registry.version_id.is_empty() {
            return Err(RegistryError::Incomplete {
                path: path.to_path_buf(),
            });
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        return Ok(RegistrySnapshot {
            registry,
            loaded_at: SystemTime::now(),
            fingerprint: h.finish(),
        });
    }
    Err(RegistryError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::other("the file kept changing while it was read"),
    })
}

fn log_warnings(registry: &Registry) {
    for w in &registry.warnings {
        tracing::warn!("registry: {w}");
    }
}

/// A value derived from the registry served now (request plans, logged services),
/// built again when a reload swaps the registry.
#[derive(Debug)]
pub(crate) struct SnapshotCache<T> {
    current: ArcSwap<(Arc<RegistrySnapshot>, Arc<T>)>,
}

impl<T> SnapshotCache<T> {
    /// A cache for `snapshot`, starting from `value`.
    pub(crate) fn new(snapshot: Arc<RegistrySnapshot>, value: T) -> Self {
        SnapshotCache {
            current: ArcSwap::from_pointee((snapshot, Arc::new(value))),
        }
    }

    /// The value for `snapshot`: the cached one, or `fresh()` when the snapshot
    /// changed (one lock-free load and a pointer comparison otherwise).
    pub(crate) fn get(
        &self,
        snapshot: &Arc<RegistrySnapshot>,
        fresh: impl FnOnce() -> T,
    ) -> Arc<T> {
        let current = self.current.load();
        if Arc::ptr_eq(&current.0, snapshot) {
            return current.1.clone();
        }
        let value = Arc::new(fresh());
        self.current
            .store(Arc::new((snapshot.clone(), value.clone())));
        value
    }
}

/// Registry freshness and reload counts, read from the live registry handle.
#[derive(Debug)]
struct RegistryCollector(Arc<RegistryHandle>);

impl Collector for RegistryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let age = SystemTime::now()
            .duration_since(self.0.snapshot().loaded_at)
            .unwrap_or_default()
            .as_secs_f64();
        let gauge = ConstGauge::new(age);
        gauge.encode(encoder.encode_descriptor(
            "registry_age_seconds",
            "Seconds since the registry served now was loaded",
            None,
            gauge.metric_type(),
        )?)?;
        encode_counters(
            &mut encoder,
            &[
                (
                    "registry_reloads",
                    "Registry reloads that swapped in a new registry",
                    self.0.reload_count(),
                ),
                (
                    "registry_reload_failures",
                    "Registry reloads that failed (the last good registry kept serving)",
                    self.0.reload_failure_count(),
                ),
            ],
        )
    }
}
