//! The live registry: loaded at start, re-read every `cache_ttl_seconds` and whenever
//! the file changes; a failed reload keeps the last good registry and logs why.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::decode::DecodeOptions;
use super::{Registry, RegistryError, decode_registry};
use crate::config::RepoConfig;
use crate::engine::PlanCache;

/// One loaded registry plus what is derived from it (request plans are cached per
/// snapshot, so a reload starts with a fresh cache).
#[derive(Debug)]
pub struct RegistrySnapshot {
    /// The serving model.
    pub registry: Registry,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Request plans built against this registry.
    pub plans: PlanCache,
    fingerprint: u64,
}

/// The registry currently served, swapped atomically on reload.
#[derive(Debug)]
pub struct RegistryHandle {
    current: ArcSwap<RegistrySnapshot>,
    path: PathBuf,
    project: String,
    opts: DecodeOptions,
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

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl RegistryHandle {
    /// Loads the registry named by the configuration.
    pub fn load(config: &RepoConfig) -> Result<Self, RegistryError> {
        let opts = DecodeOptions {
            key_version: config.entity_key_serialization_version,
            versioning: config.registry.enable_online_feature_view_versioning,
        };
        let path = config.registry.path.clone();
        let snapshot = read_snapshot(&path, &config.project, opts)?;
        log_warnings(&snapshot.registry);
        Ok(RegistryHandle {
            current: ArcSwap::from_pointee(snapshot),
            path,
            project: config.project.clone(),
            opts,
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// The registry served now.
    pub fn snapshot(&self) -> Arc<RegistrySnapshot> {
        self.current.load_full()
    }

    /// The registry file.
    pub fn path(&self) -> &Path {
        &self.path
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
        match read_snapshot(&self.path, &self.project, self.opts) {
            Ok(snapshot) => {
                if snapshot.fingerprint == self.current.load().fingerprint {
                    return Ok(ReloadOutcome::Unchanged);
                }
                log_warnings(&snapshot.registry);
                tracing::info!(
                    path = %self.path.display(),
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
            // The file as last read, whether it loaded or not.
            let mut tried = file_stamp(&self.path);
            // A changed file is reloaded once it has looked the same on two checks in a
            // row: Feast rewrites the registry in place, and a truncated protobuf can
            // still decode (to a registry missing objects).
            let mut settling: Option<(SystemTime, u64)> = None;
            let mut last_full = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let now_stamp = file_stamp(&self.path);
                let due = !ttl.is_zero() && last_full.elapsed() >= ttl;
                if !due {
                    if now_stamp == tried {
                        settling = None;
                        continue;
                    }
                    // Changing, or gone (the last good registry keeps serving).
                    if now_stamp.is_none() || now_stamp != settling {
                        settling = now_stamp;
                        continue;
                    }
                }
                settling = None;
                let handle = self.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || handle.reload()).await {
                    tracing::error!(error = %e, "the registry reload task failed");
                }
                tried = now_stamp;
                last_full = tokio::time::Instant::now();
            }
        })
    }
}

fn read_snapshot(
    path: &Path,
    project: &str,
    opts: DecodeOptions,
) -> Result<RegistrySnapshot, RegistryError> {
    // Feast rewrites the file in place: only accept bytes read while the file did not
    // change, so a half-written registry is never served.
    for _ in 0..5 {
        let before = file_stamp(path);
        let bytes = std::fs::read(path).map_err(|source| RegistryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if file_stamp(path) != before {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let registry =
            decode_registry(&bytes, project, opts).map_err(|source| RegistryError::Decode {
                path: path.to_path_buf(),
                source,
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
            plans: PlanCache::default(),
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
