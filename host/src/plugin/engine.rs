//! The one wasmtime engine of the process: component model, async calls (a guest that
//! runs long yields to the runtime between epoch ticks), epoch interruption for
//! per-call deadlines (a ticker thread advances the epoch every [`TICK`]), the
//! pooling allocator when the machine allows it, and an on-disk cache of compiled
//! components ([`super::cache`]: trusted directories only, keyed by content hash and
//! engine). With a cache and a compiler
//! executable, components are compiled in a child process that writes the cache entry:
//! Cranelift's working memory (over 100 MB for a 1.6 MB component) then leaves with the
//! child instead of staying in this process's allocator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Component;

use super::cache::{self, CompileCache};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// Epoch tick: the granularity of plugin deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Where a loaded component's machine code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompiledBy {
    /// Loaded from the on-disk cache.
    Cache,
    /// Compiled by a child process (then loaded from the cache entry it wrote).
    ChildProcess,
    /// Compiled in this process.
    InProcess,
}

/// The engine and its ticker.
#[derive(Clone)]
pub(crate) struct WasmEngine {
    engine: Engine,
    cache: Option<CompileCache>,
    compiler: Option<PathBuf>,
    max_memory_bytes: usize,
    /// Shared by every clone: the thread stops when the last clone is dropped.
    _ticker: Arc<Ticker>,
    /// Whether instances come from the pooling allocator.
    pub(crate) pooling: bool,
}

/// The thread that advances the engine's epoch every [`TICK`], stopped and joined
/// when dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    std::thread::park_timeout(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("pooling", &self.pooling)
            .field("cache", &self.cache)
            .finish()
    }
}

/// Set to `1`, guest functions are named in `perf` profiles (wasmtime writes
/// `/tmp/perf-<pid>.map`); for profiling only.
const PERFMAP_ENV: &str = "FEAST_SERVER_WASM_PERFMAP";

fn base_config() -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .max_wasm_stack(512 << 10);
    if std::env::var_os(PERFMAP_ENV).is_some_and(|v| v == "1") {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    c
}

impl WasmEngine {
    /// Builds the engine; instances get at most `max_memory_bytes` of linear memory.
    /// `compiler` (used only with a `cache_dir`) compiles out of process; see
    /// [`compile_to_file`].
    pub(crate) fn new(
        max_memory_bytes: usize,
        cache_dir: Option<PathBuf>,
        compiler: Option<PathBuf>,
    ) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(512)
            .total_stacks(256)
            .max_memories_per_component(8)
            .max_memory_size(max_memory_bytes);
        let mut pooled = base_config();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let (engine, pooling) = match Engine::new(&pooled) {
            Ok(e) => (e, true),
            Err(e) => {
                tracing::warn!(error = %e, "the pooling allocator is unavailable here; instances are allocated on demand");
                (Engine::new(&base_config())?, false)
            }
        };
        let ticker = Ticker::start(engine.clone())
            .map_err(|e| wasmtime::format_err!("cannot start the epoch thread: {e}"))?;
        let cache = cache_dir.and_then(|dir| CompileCache::open(dir, &engine));
        Ok(WasmEngine {
            engine,
            cache,
            compiler,
            max_memory_bytes,
            _ticker: Arc::new(ticker),
            pooling,
        })
    }

    /// The wasmtime engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component, or loads it from the cache when this engine compiled the
    /// same bytes before. Returns the component and where it came from.
    pub(crate) fn compile(&self, bytes: &[u8]) -> wasmtime::Result<(Component, CompiledBy)> {
        let Some(cache) = &self.cache else {
            return Ok((Component::new(&self.engine, bytes)?, CompiledBy::InProcess));
        };
        let path = cache.path(bytes);
        match cache.load(&self.engine, &path) {
            Ok(Some(c)) => return Ok((c, CompiledBy::Cache)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable cached component")
            }
        }
        let mut child_failure = None;
        if let Some(exe) = &self.compiler {
            match self.compile_in_child(exe, bytes, &path) {
                Ok(()) => match cache.load(&self.engine, &path) {
                    Ok(Some(c)) => return Ok((c, CompiledBy::ChildProcess)),
                    Ok(None) => child_failure = Some("it wrote nothing".to_string()),
                    Err(e) => child_failure = Some(format!("cannot load what it wrote: {e}")),
                },
                Err(e) => child_failure = Some(e.to_string()),
            }
        }
        // An invalid component fails here too, and this error says why.
        let component = Component::new(&self.engine, bytes)?;
        if let Some(reason) = child_failure {
            // The component is fine, so the child itself failed: worth an operator's look.
            tracing::warn!(reason = %reason, "compiling plugins out of process failed; compiled in process");
        }
        if let Err(e) = cache::store(&component, &path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled component");
        }
        Ok((component, CompiledBy::InProcess))
    }

    /// Runs `exe compile-plugin PATH --max-memory-bytes N` with the component on stdin.
    fn compile_in_child(&self, exe: &Path, bytes: &[u8], path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(exe)
            .arg("compile-plugin")
            .arg(path)
            .arg("--max-memory-bytes")
            .arg(self.max_memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // Closing stdin ends the input; the child is always waited for, even when it
        // stopped reading early.
        let written = child
            .stdin
            .take()
            .map_or(Ok(()), |mut stdin| stdin.write_all(bytes));
        let out = child.wait_with_output()?;
        if out.status.success() {
            written
        } else {
            Err(std::io::Error::other(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// Compiles a component for an engine built with `max_memory_bytes` and writes it where
/// that engine's cache expects it: what `feast-server compile-plugin` does for a server.
pub(crate) fn compile_to_file(
    max_memory_bytes: usize,
    bytes: &[u8],
    path: &Path,
) -> Result<(), String> {
    let engine = WasmEngine::new(max_memory_bytes, None, None).map_err(|e| format!("{e:#}"))?;
    let component = Component::new(&engine.engine, bytes).map_err(|e| format!("{e:#}"))?;
    cache::store(&component, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_thread_stops_with_the_last_clone() {
        let engine = WasmEngine::new(1 << 20, None, None).expect("engine");
        let stop = engine._ticker.stop.clone();
        let clones: Vec<WasmEngine> = (0..4).map(|_| engine.clone()).collect();
        drop(engine);
        assert!(!stop.load(Ordering::Acquire), "clones still hold it");
        // The last clones dropped together, from two threads.
        let (a, b): (Vec<_>, Vec<_>) = clones
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let t = std::thread::spawn(move || drop(a));
        drop(b);
        t.join().expect("joined");
        assert!(stop.load(Ordering::Acquire), "the thread was told to stop");
    }
}
