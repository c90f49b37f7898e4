//! The runtime: the plugin directory, what is loaded from it, and hot swaps.
//!
//! Every `*.wasm` of the directory is compiled (off the request path, cached on
//! disk), described, checked against the registry and tried once on one row, then
//! swapped atomically into the table requests read. A changed or new file (polled),
//! or SIGHUP, loads again; a broken new version is refused with a logged reason and
//! the previous one keeps serving; calls in flight finish on the version they
//! started with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::call::{call_odfv, trial_batch};
use super::config::PluginConfig;
use super::engine::WasmEngine;
use super::error::LoadError;
use super::instance::LoadedPlugin;
use super::status::PluginMetrics;
use super::validate::validate;
use crate::file_watch::{Settling, Stamp, poll_timer, stamp, tick};
use crate::metrics::Metrics;
use crate::registry::RegistryHandle;

/// The `*.wasm` files of the directory with their stamps, sorted.
type Listing = Vec<(PathBuf, Stamp)>;

/// The WebAssembly engine could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// A file of the plugin directory as last seen.
#[derive(Debug, Clone)]
pub(super) struct FileState {
    stamp: Stamp,
    pub(super) plugin: Option<Arc<LoadedPlugin>>,
    pub(super) error: Option<String>,
}

/// What is loaded now.
#[derive(Debug, Default)]
pub(super) struct PluginTable {
    pub(super) files: BTreeMap<PathBuf, FileState>,
    pub(super) by_odfv: HashMap<String, Arc<LoadedPlugin>>,
}

impl PluginTable {
    fn index(files: BTreeMap<PathBuf, FileState>, previous: &PluginTable) -> Self {
        let mut by_odfv: HashMap<String, Arc<LoadedPlugin>> = HashMap::new();
        // A plugin already serving an ODFV keeps it; otherwise files in name order.
        for (odfv, p) in &previous.by_odfv {
            if files
                .get(&p.file)
                .and_then(|f| f.plugin.as_ref())
                .is_some_and(|cur| Arc::ptr_eq(cur, p))
            {
                by_odfv.insert(odfv.clone(), p.clone());
            }
        }
        for f in files.values() {
            let Some(p) = &f.plugin else { continue };
            for spec in &p.info.odfvs {
                match by_odfv.get(&spec.name) {
                    Some(other) if other.file != p.file => tracing::warn!(
                        odfv = %spec.name,
                        serving = %other.file.display(),
                        ignored = %p.file.display(),
                        "two plugins implement the same on-demand feature view; the first keeps it"
                    ),
                    _ => {
                        by_odfv.insert(spec.name.clone(), p.clone());
                    }
                }
            }
        }
        PluginTable { files, by_odfv }
    }
}

/// The plugin runtime: the engine, the directory and what is loaded from it.
pub struct PluginRuntime {
    engine: WasmEngine,
    pub(super) config: PluginConfig,
    pub(super) registry: Arc<RegistryHandle>,
    pub(super) table: ArcSwap<PluginTable>,
    pub(super) metrics: PluginMetrics,
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("directory", &self.config.directory)
            .field("plugins", &self.table.load().files.len())
            .finish()
    }
}

impl PluginRuntime {
    /// Builds the engine and loads the plugin directory once.
    pub async fn start(
        config: PluginConfig,
        registry: Arc<RegistryHandle>,
        metrics: &mut Metrics,
    ) -> Result<Arc<Self>, EngineError> {
        let engine = WasmEngine::new(
            config.max_memory_bytes,
            config.cache_dir.clone(),
            config.compiler.clone(),
        )
        .map_err(|e| EngineError(format!("{e:#}")))?;
        let rt = Arc::new(PluginRuntime {
            engine,
            config,
            registry,
            metrics: PluginMetrics::register(metrics),
            table: ArcSwap::from_pointee(PluginTable::default()),
            reloading: tokio::sync::Mutex::new(()),
        });
        rt.reload(false).await;
        Ok(rt)
    }

    /// The settings in force.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// The plugin serving an ODFV.
    pub fn for_odfv(&self, odfv: &str) -> Option<Arc<LoadedPlugin>> {
        self.table.load().by_odfv.get(odfv).cloned()
    }

    /// Rescans the directory: new and changed files are loaded (all of them with
    /// `force`), removed ones dropped. Returns the number of files (re)loaded.
    pub async fn reload(&self, force: bool) -> usize {
        let Some(dir) = self.config.directory.clone() else {
            return 0;
        };
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.table.load_full();
        let mut files = BTreeMap::new();
        let mut loaded = 0;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugin directory");
                return 0;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let stamp = stamp(&path);
            let previous = current.files.get(&path);
            if !force && previous.is_some_and(|f| f.stamp == stamp) {
                if let Some(f) = previous {
                    files.insert(path, f.clone());
                }
                continue;
            }
            loaded += 1;
            let state = match self.load_file(&path).await {
                Ok(p) => {
                    tracing::info!(
                        file = %path.display(),
                        plugin = %p.info.name,
                        version = %p.info.version,
                        odfvs = ?p.info.odfvs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
                        compile_ms = p.compile_time.as_secs_f64() * 1e3,
                        compiled_by = ?p.compiled_by,
                        "plugin loaded"
                    );
                    FileState {
                        stamp,
                        plugin: Some(Arc::new(p)),
                        error: None,
                    }
                }
                Err(e) => {
                    let keeps = previous.and_then(|f| f.plugin.clone());
                    tracing::warn!(
                        file = %path.display(),
                        error = %e,
                        still_serving = keeps.as_ref().map(|p| p.info.version.as_str()),
                        "plugin refused"
                    );
                    FileState {
                        stamp,
                        plugin: keeps,
                        error: Some(e.to_string()),
                    }
                }
            };
            files.insert(path, state);
        }
        for gone in current.files.keys().filter(|p| !files.contains_key(*p)) {
            tracing::info!(file = %gone.display(), "plugin file removed; its on-demand feature views are no longer served");
        }
        self.table
            .store(Arc::new(PluginTable::index(files, &current)));
        loaded
    }

    async fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read(e.to_string()))?;
        let plugin =
            LoadedPlugin::load(&self.engine, path.to_path_buf(), bytes, &self.config).await?;
        let snapshot = self.registry.snapshot();
        let served = validate(&plugin.info, &snapshot.registry)?;
        let Some(smoke) = served.first() else {
            return Err(LoadError::Mismatch(
                "it declares no on-demand feature view of this registry".into(),
            ));
        };
        let odfv = &snapshot.registry.odfvs[smoke];
        let spec = plugin
            .info
            .odfvs
            .iter()
            .find(|s| &s.name == smoke)
            .ok_or_else(|| LoadError::Mismatch("describe changed".into()))?;
        // The trial call is not counted as a call of the plugin.
        let input = trial_batch(spec).map_err(LoadError::Smoke)?;
        call_odfv(&plugin, spec, odfv, &input, &self.config)
            .await
            .map_err(|e| LoadError::Smoke(e.to_string()))?;
        Ok(plugin)
    }

    /// Keeps the plugins in step with the directory until `shutdown` flips: polls
    /// every `poll_interval` (never for zero), reloads everything on SIGHUP.
    pub fn spawn_watch(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.config.directory.as_ref()?;
        Some(tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            // A zero interval turns polling off: plugins then change on SIGHUP only.
            let mut timer = poll_timer(self.config.poll_interval);
            // A file being copied in is loaded once the directory has settled.
            let mut settling = Settling::<Listing>::default();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = hangup => {
                        tracing::info!("SIGHUP: reloading every plugin");
                        self.reload(true).await;
                        continue;
                    }
                    () = tick(&mut timer) => {}
                }
                if settling.settled(self.scan(), &self.known()) {
                    self.reload(false).await;
                }
            }
        }))
    }

    fn scan(&self) -> Listing {
        let Some(dir) = &self.config.directory else {
            return Vec::new();
        };
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
                    .map(|p| {
                        let s = stamp(&p);
                        (p, s)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn known(&self) -> Listing {
        self.table
            .load()
            .files
            .iter()
            .map(|(p, f)| (p.clone(), f.stamp))
            .collect()
    }
}
