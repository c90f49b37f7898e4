//! One loaded plugin: its compiled component ready to instantiate, a pool of idle
//! instances that are reused (an instance that trapped is dropped), and calls under
//! the limits: an epoch deadline, a memory limit, stderr captured, and only the
//! capabilities listed in the module documentation of [`super`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use wasmtime::Store;

use super::config::PluginConfig;
use super::engine::{CompiledBy, WasmEngine};
use super::error::{LoadError, PluginFailure};
use super::sandbox::{self, Limits, Network, SandboxState};

mod bindings {
    wasmtime::component::bindgen!({
        world: "odfv-plugin",
        path: "../wit",
        exports: { default: async },
    });
}

/// The world as released in `feast:plugin@0.1.0` (no list column types).
mod bindings_0_1 {
    wasmtime::component::bindgen!({
        world: "odfv-plugin",
        path: "wit-compat/0.1.0",
        exports: { default: async },
    });
}

pub(super) use bindings::feast::plugin::types::Field;
use bindings::feast::plugin::types::PluginError;
pub(super) use bindings::feast::plugin::types::{ColumnType, OdfvSpec, PluginInfo};
use bindings_0_1::feast::plugin::types as types_0_1;

/// The component linked as the version of the world it implements.
enum Pre {
    Current(bindings::OdfvPluginPre<SandboxState>),
    V0_1(bindings_0_1::OdfvPluginPre<SandboxState>),
}

impl Pre {
    /// Links `pre` as the current world, or else as an earlier version of it.
    fn new(pre: wasmtime::component::InstancePre<SandboxState>) -> Result<Self, String> {
        bindings::OdfvPluginPre::new(pre.clone())
            .map(Pre::Current)
            .or_else(|current| {
                bindings_0_1::OdfvPluginPre::new(pre)
                    .map(Pre::V0_1)
                    .map_err(|_| format!("{current:#}"))
            })
    }
}

/// An instance's exports, of the version of the world it implements.
enum Bindings {
    Current(bindings::OdfvPlugin),
    V0_1(bindings_0_1::OdfvPlugin),
}

struct Instance {
    store: Store<SandboxState>,
    bindings: Bindings,
}

impl Instance {
    async fn describe(&mut self) -> wasmtime::Result<PluginInfo> {
        Ok(match &self.bindings {
            Bindings::Current(b) => b.call_describe(&mut self.store).await?,
            Bindings::V0_1(b) => from_0_1_info(b.call_describe(&mut self.store).await?),
        })
    }

    async fn transform(
        &mut self,
        odfv: &str,
        input: &Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        Ok(match &self.bindings {
            Bindings::Current(b) => b.call_transform(&mut self.store, odfv, input).await?,
            Bindings::V0_1(b) => b
                .call_transform(&mut self.store, odfv, input)
                .await?
                .map_err(|e| match e {
                    types_0_1::PluginError::InvalidInput(m) => PluginError::InvalidInput(m),
                    types_0_1::PluginError::Unsupported(m) => PluginError::Unsupported(m),
                    types_0_1::PluginError::Internal(m) => PluginError::Internal(m),
                }),
        })
    }
}

/// A 0.1.0 description in the current types (its column types are a subset).
fn from_0_1_info(info: types_0_1::PluginInfo) -> PluginInfo {
    let column_type = |t| match t {
        types_0_1::ColumnType::Int32 => ColumnType::Int32,
        types_0_1::ColumnType::Int64 => ColumnType::Int64,
        types_0_1::ColumnType::Float32 => ColumnType::Float32,
        types_0_1::ColumnType::Float64 => ColumnType::Float64,
        types_0_1::ColumnType::Boolean => ColumnType::Boolean,
        types_0_1::ColumnType::Utf8 => ColumnType::Utf8,
        types_0_1::ColumnType::Binary => ColumnType::Binary,
        types_0_1::ColumnType::TimestampSeconds => ColumnType::TimestampSeconds,
    };
    let fields = |fields: Vec<types_0_1::Field>| {
        fields
            .into_iter()
            .map(|f| Field {
                name: f.name,
                column_type: column_type(f.column_type),
            })
            .collect()
    };
    PluginInfo {
        name: info.name,
        version: info.version,
        odfvs: info
            .odfvs
            .into_iter()
            .map(|o| OdfvSpec {
                name: o.name,
                inputs: fields(o.inputs),
                outputs: fields(o.outputs),
            })
            .collect(),
    }
}

/// Counters of one loaded plugin.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed.
    pub errors: AtomicU64,
    /// Instances created.
    pub instances: AtomicU64,
    /// The last failure.
    pub last_error: Mutex<Option<String>>,
}

/// A plugin file compiled, described and validated, ready to serve.
pub struct LoadedPlugin {
    /// What the plugin says it is.
    pub info: PluginInfo,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// SHA-256 of the file.
    pub content_hash: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Where the compiled component came from.
    pub compiled_by: CompiledBy,
    /// How long compiling (or loading from the cache) took.
    pub compile_time: Duration,
    /// Counters.
    pub stats: PluginStats,
    engine: WasmEngine,
    pre: Pre,
    idle: Mutex<Vec<Instance>>,
    config: PluginConfig,
    /// Whether the retirement of an instance for its memory was logged (once).
    memory_warned: AtomicBool,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .field("file", &self.file)
            .finish()
    }
}

impl LoadedPlugin {
    /// Compiles (or loads from the cache) the component in `bytes` (on the blocking
    /// pool) and asks it to describe itself.
    pub(crate) async fn load(
        engine: &WasmEngine,
        file: PathBuf,
        bytes: Vec<u8>,
        config: &PluginConfig,
    ) -> Result<Self, LoadError> {
        let prepared = sandbox::prepare(engine, bytes).await.map_err(|e| match e {
            sandbox::PrepareError::Compile(m) => LoadError::Compile(m),
            sandbox::PrepareError::Link(m) => LoadError::Link(m),
        })?;
        let pre = Pre::new(prepared.pre).map_err(|e| {
            LoadError::Link(format!(
                "the component does not implement feast:plugin/odfv-plugin@0.2.0 (nor 0.1.0): {e}"
            ))
        })?;
        let mut plugin = LoadedPlugin {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                odfvs: Vec::new(),
            },
            file,
            content_hash: prepared.content_hash,
            loaded_at: SystemTime::now(),
            compiled_by: prepared.compiled_by,
            compile_time: prepared.compile_time,
            stats: PluginStats::default(),
            engine: engine.clone(),
            pre,
            idle: Mutex::new(Vec::new()),
            memory_warned: AtomicBool::new(false),
            config: config.clone(),
        };
        let mut inst = plugin
            .instantiate()
            .await
            .map_err(|e| LoadError::Describe(e.to_string()))?;
        let mark = plugin.arm(&mut inst);
        plugin.info = inst
            .describe()
            .await
            .map_err(|e| LoadError::Describe(plugin.classify(&e, &inst, mark).to_string()))?;
        plugin.checkin(inst);
        Ok(plugin)
    }

    fn limits(&self) -> Limits {
        Limits {
            timeout: self.config.timeout,
            max_memory_bytes: self.config.max_memory_bytes,
        }
    }

    /// Resets the deadline for one call; returns the call's stderr mark.
    fn arm(&self, inst: &mut Instance) -> usize {
        sandbox::arm(&mut inst.store, &self.limits())
    }

    async fn instantiate(&self) -> Result<Instance, PluginFailure> {
        // An on-demand feature view gets no network.
        let mut store = sandbox::new_store(&self.engine, &self.limits(), &Network::None);
        self.stats.instances.fetch_add(1, Ordering::Relaxed);
        let bindings = match &self.pre {
            Pre::Current(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Current),
            Pre::V0_1(pre) => pre.instantiate_async(&mut store).await.map(Bindings::V0_1),
        }
        .map_err(|e| PluginFailure::Instantiate(format!("{e:#}")))?;
        Ok(Instance { store, bindings })
    }

    fn checkout(&self) -> Option<Instance> {
        self.idle.lock().ok().and_then(|mut v| v.pop())
    }

    fn checkin(&self, inst: Instance) {
        // An instance whose stderr is filling up is retired, so output is never lost
        // when it later panics; one whose memory neared the limit, so that no later
        // call fails on it.
        if let Some((grown, limit)) = sandbox::grown_past_three_quarters(&inst.store)
            && !self.memory_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                plugin = %self.info.name,
                memory_mib = grown >> 20,
                limit_mib = limit >> 20,
                "an instance's memory grew past 3/4 of max_memory_mb: such instances are replaced after their call (GET /plugins counts instances); if most calls need a new one, raise max_memory_mb"
            );
        }
        if sandbox::worn_out(&inst.store) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.config.max_idle_instances
        {
            idle.push(inst);
        }
    }

    /// Calls `transform` with Arrow IPC input; returns the guest's raw output. Not
    /// counted: the caller counts the calls it serves.
    pub(crate) async fn transform(
        &self,
        odfv: &str,
        input: &Vec<u8>,
    ) -> Result<Vec<u8>, PluginFailure> {
        let mut inst = match self.checkout() {
            Some(i) => i,
            None => self.instantiate().await?,
        };
        let mark = self.arm(&mut inst);
        match inst.transform(odfv, input).await {
            Ok(Ok(out)) => {
                self.checkin(inst);
                Ok(out)
            }
            Ok(Err(e)) => {
                self.checkin(inst);
                Err(PluginFailure::Guest(match e {
                    PluginError::InvalidInput(m) => format!("invalid input: {m}"),
                    PluginError::Unsupported(m) => format!("unsupported: {m}"),
                    PluginError::Internal(m) => m,
                }))
            }
            // The instance trapped: it cannot be entered again and is dropped here.
            Err(e) => Err(self.classify(&e, &inst, mark)),
        }
    }

    /// Records a failure seen by the caller (also output validation failures).
    pub fn record_error(&self, e: &PluginFailure) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    fn classify(&self, e: &wasmtime::Error, inst: &Instance, mark: usize) -> PluginFailure {
        sandbox::classify(e, &inst.store, mark, self.config.timeout)
    }
}
