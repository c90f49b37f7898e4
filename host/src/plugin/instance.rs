//! One loaded plugin: its compiled component ready to instantiate, a pool of idle
//! instances that are reused (an instance that trapped is dropped), and calls under
//! the limits: an epoch deadline, a memory limit, stderr captured, and only the
//! capabilities listed in the module documentation of [`super`].

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::config::PluginConfig;
use super::engine::{CompiledBy, TICK, WasmEngine};
use super::error::{LoadError, PluginFailure};

mod bindings {
    wasmtime::component::bindgen!({
        world: "odfv-plugin",
        path: "../wit",
        exports: { default: async },
    });
}

use bindings::feast::plugin::types::PluginError;
pub(super) use bindings::feast::plugin::types::{ColumnType, OdfvSpec, PluginInfo};
use bindings::{OdfvPlugin, OdfvPluginPre};

/// Guest stderr kept per instance (panic messages, logs); beyond it output is dropped.
const STDERR_CAPACITY: usize = 64 << 10;
/// Prefix the guest SDK's panic hook writes.
const PANIC_PREFIX: &str = "feast-plugin panicked: ";

/// Guest stderr: an in-memory buffer that keeps the first bytes and silently drops
/// the rest, so a chatty plugin never fails on a full pipe.
#[derive(Clone, Default)]
struct StderrBuffer(Arc<Mutex<Vec<u8>>>);

impl StderrBuffer {
    fn len(&self) -> usize {
        self.0.lock().map_or(0, |b| b.len())
    }

    fn since(&self, mark: usize) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(b.get(mark..).unwrap_or_default()).into_owned())
            .unwrap_or_default()
    }
}

impl IsTerminal for StderrBuffer {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrBuffer {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Ok(mut b) = self.0.lock() {
            let room = STDERR_CAPACITY.saturating_sub(b.len());
            b.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Refuses memory growth beyond the limit, remembering that it did.
struct MemoryLimiter {
    max: usize,
    exceeded: Option<String>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            let msg = format!(
                "memory limit of {} MiB exceeded (the plugin asked for {} MiB)",
                self.max >> 20,
                desired >> 20
            );
            self.exceeded = Some(msg.clone());
            return Err(wasmtime::format_err!(msg));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// Per-instance host state: a WASI context without capabilities.
struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: StderrBuffer,
    ticks: u64,
    budget: u64,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct Instance {
    store: Store<PluginState>,
    bindings: OdfvPlugin,
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
    pre: OdfvPluginPre<PluginState>,
    idle: Mutex<Vec<Instance>>,
    config: PluginConfig,
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
        let started = std::time::Instant::now();
        let content_hash = super::cache::content_hash(&bytes);
        // Compiling takes seconds of CPU: keep it off the async workers.
        let compiler = engine.clone();
        let (component, compiled_by) =
            tokio::task::spawn_blocking(move || compiler.compile(&bytes))
                .await
                .map_err(|e| LoadError::Compile(e.to_string()))?
                .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let compile_time = started.elapsed();
        let mut linker: Linker<PluginState> = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = OdfvPluginPre::new(pre).map_err(|e| {
            LoadError::Link(format!(
                "the component does not implement feast:plugin/odfv-plugin@0.1.0: {e:#}"
            ))
        })?;
        let mut plugin = LoadedPlugin {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                odfvs: Vec::new(),
            },
            file,
            content_hash,
            loaded_at: SystemTime::now(),
            compiled_by,
            compile_time,
            stats: PluginStats::default(),
            engine: engine.clone(),
            pre,
            idle: Mutex::new(Vec::new()),
            config: config.clone(),
        };
        let mut inst = plugin
            .instantiate()
            .await
            .map_err(|e| LoadError::Describe(e.to_string()))?;
        plugin.arm(&mut inst);
        plugin.info = inst
            .bindings
            .call_describe(&mut inst.store)
            .await
            .map_err(|e| LoadError::Describe(plugin.classify(e, &inst, 0).to_string()))?;
        plugin.checkin(inst);
        Ok(plugin)
    }

    fn budget(&self) -> u64 {
        (self.config.timeout.as_nanos().div_ceil(TICK.as_nanos())).max(1) as u64
    }

    /// Resets the deadline for one call.
    fn arm(&self, inst: &mut Instance) {
        let budget = self.budget();
        let state = inst.store.data_mut();
        state.ticks = 0;
        state.budget = budget;
        inst.store.set_epoch_deadline(1);
    }

    async fn instantiate(&self) -> Result<Instance, PluginFailure> {
        let stderr = StderrBuffer::default();
        // No preopened directories, no environment, no arguments, no sockets (denied
        // by default); stdout is discarded. The wall and monotonic clocks and random
        // bytes are WASI's defaults, kept on purpose (see the module documentation).
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let mut store = Store::new(
            self.engine.engine(),
            PluginState {
                wasi,
                table: ResourceTable::new(),
                limiter: MemoryLimiter {
                    max: self.config.max_memory_bytes,
                    exceeded: None,
                },
                stderr,
                ticks: 0,
                budget: self.budget(),
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            s.ticks += 1;
            if s.ticks >= s.budget {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other requests run on this thread between ticks.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        self.stats.instances.fetch_add(1, Ordering::Relaxed);
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| PluginFailure::Instantiate(format!("{e:#}")))?;
        Ok(Instance { store, bindings })
    }

    fn checkout(&self) -> Option<Instance> {
        self.idle.lock().ok().and_then(|mut v| v.pop())
    }

    fn checkin(&self, inst: Instance) {
        // An instance whose stderr is filling up is retired, so output is never lost
        // when it later panics.
        if inst.store.data().stderr.len() > STDERR_CAPACITY / 2 {
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
        self.arm(&mut inst);
        let mark = inst.store.data().stderr.len();
        match inst
            .bindings
            .call_transform(&mut inst.store, odfv, input)
            .await
        {
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
            Err(e) => Err(self.classify(e, &inst, mark)),
        }
    }

    /// Records a failure seen by the caller (also output validation failures).
    pub fn record_error(&self, e: &PluginFailure) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    fn classify(&self, e: wasmtime::Error, inst: &Instance, mark: usize) -> PluginFailure {
        let state = inst.store.data();
        if let Some(m) = &state.limiter.exceeded {
            return PluginFailure::MemoryLimit(m.clone());
        }
        let stderr = state.stderr.since(mark);
        if let Some(line) = stderr.lines().find_map(|l| l.strip_prefix(PANIC_PREFIX)) {
            return PluginFailure::Panic(line.to_string());
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginFailure::Timeout(self.config.timeout),
            Some(Trap::StackOverflow) => PluginFailure::StackOverflow,
            _ => PluginFailure::Trap {
                trap: format!("{e:#}"),
                stderr: tail(&stderr, 512),
            },
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.len() <= n {
        return s.to_string();
    }
    let start = s.len() - n;
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(start);
    format!("...{}", &s[start..])
}
