//! On-demand feature views as sandboxed WebAssembly components (`wit/feast-plugin.wit`).
//!
//! The runtime loads every `*.wasm` of the plugin directory: compile (off the request
//! path, cached on disk), `describe`, check what it declares against the registry,
//! one trial call, then an atomic swap into the table the engine reads. A changed or
//! new file (polled), or SIGHUP, loads again; a broken new version is refused with a
//! logged reason and the previous one keeps serving; calls in flight finish on the
//! version they started with.

mod config;
mod convert;
mod engine;
mod error;
mod instance;
mod ipc;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field as ArrowField, Schema};
use serde::Serialize;
use tokio::sync::watch;

pub use config::{PluginConfig, RawPluginConfig};
pub use convert::{column_type_for, data_type, from_array, to_array};
pub use engine::{CompiledBy, WasmEngine, compile_to_file};
pub use error::{LoadError, PluginFailure};
pub use instance::{ColumnType, Field, LoadedPlugin, OdfvSpec, PluginInfo};

use crate::registry::{OdfvSource, OnDemandFeatureView, Registry, RegistryHandle};
use crate::value::{EventTime, Val, Value};

/// A file's modification time and size.
type Stamp = Option<(SystemTime, u64)>;
/// The `*.wasm` files of the directory with their stamps, sorted.
type Listing = Vec<(PathBuf, Stamp)>;

/// A file of the plugin directory as last seen.
#[derive(Debug, Clone)]
struct FileState {
    stamp: Stamp,
    plugin: Option<Arc<LoadedPlugin>>,
    error: Option<String>,
}

/// What is loaded now.
#[derive(Debug, Default)]
struct PluginTable {
    files: BTreeMap<PathBuf, FileState>,
    by_odfv: HashMap<String, Arc<LoadedPlugin>>,
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
    config: PluginConfig,
    registry: Arc<RegistryHandle>,
    table: ArcSwap<PluginTable>,
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

/// `GET /plugins`: one entry per file of the plugin directory.
#[derive(Debug, Serialize)]
pub struct PluginStatus {
    /// The file.
    pub file: String,
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

fn file_stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl PluginRuntime {
    /// Builds the engine and loads the plugin directory once.
    pub async fn start(
        config: PluginConfig,
        registry: Arc<RegistryHandle>,
    ) -> Result<Arc<Self>, String> {
        let engine = WasmEngine::new(
            config.max_memory_bytes,
            config.cache_dir.clone(),
            config.compiler.clone(),
        )
        .map_err(|e| format!("cannot start the WebAssembly engine: {e:#}"))?;
        let rt = Arc::new(PluginRuntime {
            engine,
            config,
            registry,
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
            let stamp = file_stamp(&path);
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
            let mut tick = (!self.config.poll_interval.is_zero()).then(|| {
                let mut t = tokio::time::interval(self.config.poll_interval);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
            let mut settling: Option<Listing> = None;
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
                    _ = async {
                        match tick.as_mut() {
                            Some(t) => {
                                t.tick().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    } => {}
                }
                // Reload once the directory looked the same on two polls in a row, so a
                // file being copied in is not loaded half-written.
                let now = self.scan();
                if now == self.known() {
                    settling = None;
                    continue;
                }
                if settling.as_ref() == Some(&now) {
                    settling = None;
                    self.reload(false).await;
                } else {
                    settling = Some(now);
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
                        let s = file_stamp(&p);
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

fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    EventTime {
        seconds: d.as_secs() as i64,
        nanos: 0,
    }
    .to_rfc3339()
}

/// The registry type of an ODFV input: a feature of a source view or a request field.
fn input_type(odfv: &OnDemandFeatureView, registry: &Registry, name: &str) -> Option<i32> {
    odfv.sources.iter().find_map(|s| match s {
        OdfvSource::Request { fields, .. } => {
            fields.iter().find(|f| f.name == name).map(|f| f.value_type)
        }
        OdfvSource::View(p) => {
            let view = registry.views.get(&p.view_name)?;
            if !p.features.is_empty() && !p.features.iter().any(|f| f == name) {
                return None;
            }
            view.feature(name).map(|i| view.features[i].value_type)
        }
    })
}

/// Checks a plugin's description against the registry; returns the ODFVs it can serve.
pub fn validate(info: &PluginInfo, registry: &Registry) -> Result<Vec<String>, LoadError> {
    let mut served = Vec::new();
    for spec in &info.odfvs {
        let Some(odfv) = registry.odfvs.get(&spec.name) else {
            tracing::info!(plugin = %info.name, odfv = %spec.name, "the plugin implements an on-demand feature view this registry does not have");
            continue;
        };
        let mismatch = |m: String| LoadError::Mismatch(format!("{}: {m}", spec.name));
        let mut outputs: Vec<&str> = spec.outputs.iter().map(|f| f.name.as_str()).collect();
        let mut expected: Vec<&str> = odfv.features.iter().map(|f| f.name.as_str()).collect();
        outputs.sort_unstable();
        expected.sort_unstable();
        if outputs != expected {
            return Err(mismatch(format!(
                "outputs {outputs:?} but the registry declares {expected:?}"
            )));
        }
        for out in &spec.outputs {
            let feature = odfv.feature(&out.name).map(|i| &odfv.features[i]);
            let want = feature.and_then(|f| column_type_for(f.value_type));
            if want != Some(out.column_type) {
                return Err(mismatch(format!(
                    "output {} is {:?} but the registry type {} needs {want:?}",
                    out.name,
                    out.column_type,
                    feature
                        .map_or_else(String::new, |f| crate::value::value_type_name(f.value_type))
                )));
            }
        }
        for input in &spec.inputs {
            let Some(vt) = input_type(odfv, registry, &input.name) else {
                return Err(mismatch(format!(
                    "input {} is neither a source feature nor a request field",
                    input.name
                )));
            };
            if column_type_for(vt) != Some(input.column_type) {
                return Err(mismatch(format!(
                    "input {} is {:?} but the registry type {} needs {:?}",
                    input.name,
                    input.column_type,
                    crate::value::value_type_name(vt),
                    column_type_for(vt)
                )));
            }
        }
        served.push(spec.name.clone());
    }
    Ok(served)
}

/// One row of zero values for the declared inputs (the trial call).
fn trial_batch(spec: &OdfvSpec) -> Result<RecordBatch, String> {
    let columns: Vec<(String, ArrayRef)> = spec
        .inputs
        .iter()
        .map(|f| {
            let v = Value {
                val: Some(match f.column_type {
                    ColumnType::Int32 => Val::Int32Val(0),
                    ColumnType::Int64 => Val::Int64Val(0),
                    ColumnType::Float32 => Val::FloatVal(0.0),
                    ColumnType::Float64 => Val::DoubleVal(0.0),
                    ColumnType::Boolean => Val::BoolVal(false),
                    ColumnType::Utf8 => Val::StringVal(String::new()),
                    ColumnType::Binary => Val::BytesVal(Vec::new()),
                    ColumnType::TimestampSeconds => Val::UnixTimestampVal(0),
                }),
            };
            to_array(std::iter::once(Some(&v)), f.column_type).map(|a| (f.name.clone(), a))
        })
        .collect::<Result<_, _>>()?;
    batch_of(columns, 1)
}

/// A record batch from named columns.
pub fn batch_of(columns: Vec<(String, ArrayRef)>, rows: usize) -> Result<RecordBatch, String> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, a)| ArrowField::new(n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new_with_options(
        Arc::new(schema),
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| e.to_string())
}

/// Calls an ODFV on a batch and returns its output columns as Feast values, in the
/// order of `odfv.features`, after checking them against the registry.
pub async fn call_odfv(
    plugin: &LoadedPlugin,
    spec: &OdfvSpec,
    odfv: &OnDemandFeatureView,
    input: &RecordBatch,
    config: &PluginConfig,
) -> Result<Vec<Vec<Value>>, PluginFailure> {
    let bytes = ipc::encode(input, config.max_input_bytes)
        .map_err(|e| PluginFailure::Input(e.to_string()))?;
    let raw = plugin.transform(&spec.name, &bytes).await?;
    let result = check_output(raw, odfv, input.num_rows(), config);
    if let Err(e) = &result {
        plugin.record_error(e);
    }
    result
}

fn check_output(
    raw: Vec<u8>,
    odfv: &OnDemandFeatureView,
    rows: usize,
    config: &PluginConfig,
) -> Result<Vec<Vec<Value>>, PluginFailure> {
    let bad = |m: String| PluginFailure::InvalidOutput(m);
    let out = ipc::decode(raw, config.max_output_bytes).map_err(|e| bad(e.to_string()))?;
    if out.num_rows() != rows {
        return Err(bad(format!(
            "{} rows for {rows} input rows",
            out.num_rows()
        )));
    }
    odfv.features
        .iter()
        .map(|f| {
            let col = out
                .column_by_name(&f.name)
                .ok_or_else(|| bad(format!("no column {}", f.name)))?;
            let want = column_type_for(f.value_type).map(data_type);
            if want.as_ref() != Some(col.data_type()) {
                return Err(bad(format!(
                    "column {} is {} but the registry declares {}",
                    f.name,
                    col.data_type(),
                    crate::value::value_type_name(f.value_type)
                )));
            }
            from_array(col.as_ref(), f.value_type).map_err(bad)
        })
        .collect()
}
