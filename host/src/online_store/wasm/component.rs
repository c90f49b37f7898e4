//! One loaded version of a store component: compiled, linked, and the instances that
//! serve calls (each opened once with the store's configuration, reused, dropped
//! after a trap or a call past its deadline). At most `instances` exist at once; a
//! call waits for a free one within its deadline.
//!
//! Idle instances are kept per thread (as the native Redis store keeps a connection
//! per serving thread): an instance's sockets belong to the I/O driver of the thread
//! that opened them, so an instance is only reused on that thread, and a request's
//! round trip to the backend never leaves its thread.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use wasmtime::Store;

use super::batch::ReadQueues;
use super::config::{AllowList, WasmStoreConfig};
use crate::online_store::StoreError;
use crate::plugin::sandbox::{self, Limits, Network, SandboxState};
use crate::plugin::{CompiledBy, WasmEngine};
use crate::threads::PerThread;

mod bindings {
    wasmtime::component::bindgen!({
        world: "online-store",
        path: "../wit",
        exports: { default: async },
    });
}

/// The world as released in `feast:plugin@0.1.0`: the same functions and types, exported
/// under the interface name of that version.
mod bindings_0_1 {
    wasmtime::component::bindgen!({
        world: "online-store",
        path: "wit-compat/0.1.0",
        exports: { default: async },
    });
}

pub(super) use bindings::exports::feast::plugin::store::{
    StoreError as WitError, StoreInfo, ViewRead, ViewWrite, WriteOutcome,
};
use bindings_0_1::exports::feast::plugin::store as store_0_1;

/// The component linked as the version of the world it implements.
#[derive(Clone)]
enum Pre {
    Current(bindings::OnlineStorePre<SandboxState>),
    V0_1(bindings_0_1::OnlineStorePre<SandboxState>),
}

impl Pre {
    /// Links `pre` as the current world, or else as an earlier version of it.
    fn new(pre: wasmtime::component::InstancePre<SandboxState>) -> Result<Self, String> {
        bindings::OnlineStorePre::new(pre.clone())
            .map(Pre::Current)
            .or_else(|current| {
                bindings_0_1::OnlineStorePre::new(pre)
                    .map(Pre::V0_1)
                    .map_err(|_| format!("{current:#}"))
            })
    }

    async fn instantiate(&self, store: &mut Store<SandboxState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::Current(pre) => Bindings::Current(pre.instantiate_async(store).await?),
            Pre::V0_1(pre) => Bindings::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance's exports, of the version of the world it implements.
enum Bindings {
    Current(bindings::OnlineStore),
    V0_1(bindings_0_1::OnlineStore),
}

fn from_0_1_error(e: store_0_1::StoreError) -> WitError {
    match e {
        store_0_1::StoreError::Unavailable(m) => WitError::Unavailable(m),
        store_0_1::StoreError::Failed(m) => WitError::Failed(m),
        store_0_1::StoreError::Corrupt(m) => WitError::Corrupt(m),
        store_0_1::StoreError::InvalidConfig(m) => WitError::InvalidConfig(m),
    }
}

const STORE: &str = "wasm";

/// How much longer than its deadline a call's timer waits (a few epoch ticks).
pub(super) const TIMER_SLACK: Duration = Duration::from_millis(50);

/// An instance and its bindings.
pub(super) struct Instance {
    store: Store<SandboxState>,
    bindings: Bindings,
}

impl Instance {
    /// The guest's `open`.
    async fn open(&mut self, config: &str) -> wasmtime::Result<Result<StoreInfo, WitError>> {
        Ok(match &self.bindings {
            Bindings::Current(b) => {
                b.feast_plugin_store()
                    .call_open(&mut self.store, config)
                    .await?
            }
            Bindings::V0_1(b) => b
                .feast_plugin_store()
                .call_open(&mut self.store, config)
                .await?
                .map(|i| StoreInfo {
                    name: i.name,
                    version: i.version,
                })
                .map_err(from_0_1_error),
        })
    }

    /// The guest's `read`.
    pub(super) async fn read(
        &mut self,
        views: &[ViewRead],
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, WitError>> {
        Ok(match &self.bindings {
            Bindings::Current(b) => {
                b.feast_plugin_store()
                    .call_read(&mut self.store, views)
                    .await?
            }
            Bindings::V0_1(b) => {
                let views: Vec<_> = views
                    .iter()
                    .map(|v| store_0_1::ViewRead {
                        view: v.view.clone(),
                        features: v.features.clone(),
                        keys: v.keys.clone(),
                    })
                    .collect();
                b.feast_plugin_store()
                    .call_read(&mut self.store, &views)
                    .await?
                    .map_err(from_0_1_error)
            }
        })
    }

    /// The guest's `write`.
    pub(super) async fn write(
        &mut self,
        views: &[ViewWrite],
    ) -> wasmtime::Result<Result<WriteOutcome, WitError>> {
        Ok(match &self.bindings {
            Bindings::Current(b) => {
                b.feast_plugin_store()
                    .call_write(&mut self.store, views)
                    .await?
            }
            Bindings::V0_1(b) => {
                let views: Vec<_> = views
                    .iter()
                    .map(|v| store_0_1::ViewWrite {
                        view: v.view.clone(),
                        features: v.features.clone(),
                        rows: v.rows.clone(),
                    })
                    .collect();
                b.feast_plugin_store()
                    .call_write(&mut self.store, &views)
                    .await?
                    .map(|o| WriteOutcome {
                        written: o.written,
                        skipped: o.skipped,
                    })
                    .map_err(from_0_1_error)
            }
        })
    }

    /// The guest's `ping`.
    pub(super) async fn ping(&mut self) -> wasmtime::Result<Result<(), WitError>> {
        Ok(match &self.bindings {
            Bindings::Current(b) => b.feast_plugin_store().call_ping(&mut self.store).await?,
            Bindings::V0_1(b) => b
                .feast_plugin_store()
                .call_ping(&mut self.store)
                .await?
                .map_err(from_0_1_error),
        })
    }
}

/// Counters of one loaded version.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Calls made.
    pub(crate) calls: AtomicU64,
    /// Calls that failed.
    pub(crate) errors: AtomicU64,
    /// Instances created.
    pub(crate) instances: AtomicU64,
    /// The last failure.
    pub(crate) last_error: Mutex<Option<String>>,
}

/// A compiled and linked version of the component.
pub(crate) struct Loaded {
    /// What the component says it is (from its first `open`).
    pub(crate) info: StoreInfo,
    /// SHA-256 of the file.
    pub(crate) content_hash: String,
    /// When it was loaded.
    pub(crate) loaded_at: SystemTime,
    /// Where its machine code came from.
    pub(crate) compiled_by: CompiledBy,
    /// How long compiling (or loading from the cache) took.
    pub(crate) compile_time: Duration,
    /// Counters.
    pub(crate) stats: Stats,
    engine: WasmEngine,
    pre: Pre,
    limits: Limits,
    network: Network,
    open_argument: String,
    /// Idle instances per thread slot ([`PerThread`]).
    idle: PerThread<Mutex<Vec<Instance>>>,
    permits: Semaphore,
    /// Reads waiting for a call of their serving thread.
    pub(super) reads: ReadQueues,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .field("content_hash", &self.content_hash)
            .finish()
    }
}

/// Why a version could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The file could not be read.
    #[error("cannot read {0}")]
    Read(String),
    /// Not a valid component, or not of the `online-store` world.
    #[error("{0}")]
    Component(String),
    /// Its `open` or `ping` failed.
    #[error("{0}")]
    Open(StoreError),
}

impl Loaded {
    /// Compiles (on the blocking pool), links and opens one instance of the
    /// component at `file`; the instance is kept for the first call.
    pub(crate) async fn load(
        engine: &WasmEngine,
        file: &Path,
        config: &WasmStoreConfig,
        allow: AllowList,
    ) -> Result<Self, LoadError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| LoadError::Read(format!("{}: {e}", file.display())))?;
        let prepared = sandbox::prepare(engine, bytes).await.map_err(|e| match e {
            sandbox::PrepareError::Compile(m) => {
                LoadError::Component(format!("not a valid component: {m}"))
            }
            sandbox::PrepareError::Link(m) => LoadError::Component(format!("cannot link it: {m}")),
        })?;
        let pre = Pre::new(prepared.pre).map_err(|e| {
            LoadError::Component(format!(
                "it does not implement feast:plugin/online-store@0.2.0 (nor 0.1.0): {e}"
            ))
        })?;
        let open_argument = config.open_argument(&allow);
        let allowed = allow.addresses();
        let mut loaded = Loaded {
            info: StoreInfo {
                name: String::new(),
                version: String::new(),
            },
            content_hash: prepared.content_hash,
            loaded_at: SystemTime::now(),
            compiled_by: prepared.compiled_by,
            compile_time: prepared.compile_time,
            stats: Stats::default(),
            engine: engine.clone(),
            pre,
            limits: Limits {
                timeout: config.timeout,
                max_memory_bytes: config.max_memory_bytes,
            },
            network: Network::TcpTo(Arc::new(allowed)),
            open_argument,
            idle: PerThread::new(config.thread_slots, || Mutex::new(Vec::new())),
            permits: Semaphore::new(config.instances),
            reads: ReadQueues::new(config.thread_slots),
        };
        let (inst, info) = loaded.instantiate().await.map_err(LoadError::Open)?;
        loaded.info = info;
        loaded.checkin(inst);
        Ok(loaded)
    }

    /// A new instance, opened.
    async fn instantiate(&self) -> Result<(Instance, StoreInfo), StoreError> {
        let mut store = sandbox::new_store(&self.engine, &self.limits, &self.network);
        self.stats.instances.fetch_add(1, Ordering::Relaxed);
        let mark = sandbox::arm(&mut store, &self.limits);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .await
            .map_err(|e| failed(format!("cannot start an instance: {e:#}")))?;
        let mut inst = Instance { store, bindings };
        let opened =
            tokio::time::timeout(self.limits.timeout, inst.open(&self.open_argument)).await;
        match opened {
            Err(_) => Err(StoreError::Unavailable {
                store: STORE,
                reason: format!(
                    "the component's open did not return within {:?}",
                    self.limits.timeout
                ),
            }),
            Ok(Err(trap)) => Err(failed(format!(
                "the component's open {}",
                sandbox::classify(&trap, &inst.store, mark, self.limits.timeout)
            ))),
            Ok(Ok(Err(e))) => Err(from_wit(e)),
            Ok(Ok(Ok(info))) => Ok((inst, info)),
        }
    }

    /// This thread's idle instances.
    fn idle_here(&self) -> &Mutex<Vec<Instance>> {
        self.idle.mine().1
    }

    fn checkin(&self, inst: Instance) {
        if sandbox::worn_out(&inst.store) {
            return;
        }
        if let Ok(mut idle) = self.idle_here().lock() {
            idle.push(inst);
        }
    }

    /// Runs `call` on an instance (an idle one, or a new one) under the deadline.
    pub(super) async fn call<R>(
        &self,
        op: &'static str,
        call: impl AsyncFnOnce(&mut Instance) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, StoreError> {
        self.call_since(op, Instant::now(), call).await
    }

    /// [`Loaded::call`] for a call whose deadline runs from `since`.
    pub(super) async fn call_since<R>(
        &self,
        op: &'static str,
        since: Instant,
        call: impl AsyncFnOnce(&mut Instance) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, StoreError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call_inner(op, since, call).await;
        if let Err(e) = &result {
            self.record_failure(e);
        }
        result
    }

    /// The per-call deadline.
    pub(super) fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// Counts a failed call (also an answer found to break the contract afterwards).
    pub(super) fn record_failure(&self, e: &StoreError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    async fn call_inner<R>(
        &self,
        op: &'static str,
        started: Instant,
        call: impl AsyncFnOnce(&mut Instance) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, StoreError> {
        let deadline = self.limits.timeout;
        let waiting = deadline.saturating_sub(started.elapsed());
        let _permit = tokio::time::timeout(waiting, self.permits.acquire())
            .await
            .map_err(|_| StoreError::Unavailable {
                store: STORE,
                reason: format!("every instance of the component stayed busy for {deadline:?}"),
            })?
            .map_err(|_| failed("the component is closed".into()))?;
        let idle = self.idle_here().lock().ok().and_then(|mut v| v.pop());
        let mut inst = match idle {
            Some(i) => i,
            None => self.instantiate().await?.0,
        };
        let mark = sandbox::arm(&mut inst.store, &self.limits);
        // The timer gets a little longer than the epoch deadline: a guest computing past
        // its deadline is stopped (and reported) by the epoch; the timer catches a call
        // waiting outside the guest (on a silent backend).
        let left = deadline.saturating_sub(started.elapsed()) + TIMER_SLACK;
        let outcome = tokio::time::timeout(left, call(&mut inst)).await;
        let refused = sandbox::refused(&inst.store);
        if !refused.is_empty() {
            tracing::warn!(op, refused = ?refused, "the store component tried to connect outside its allow list");
        }
        match outcome {
            // The instance is dropped: it may be in the middle of anything.
            Err(_) => Err(StoreError::Unavailable {
                store: STORE,
                reason: format!("the component's {op} did not return within {deadline:?}"),
            }),
            Ok(Err(trap)) => {
                let failure = sandbox::classify(&trap, &inst.store, mark, deadline);
                if matches!(failure, crate::plugin::ComponentFailure::Timeout(_)) {
                    return Err(StoreError::Unavailable {
                        store: STORE,
                        reason: format!("the component's {op} {failure}"),
                    });
                }
                Err(failed(format!("the component's {op} {failure}")))
            }
            Ok(Ok(result)) => {
                self.checkin(inst);
                result.map_err(from_wit)
            }
        }
    }
}

fn failed(reason: String) -> StoreError {
    StoreError::Failed {
        store: STORE,
        reason,
    }
}

/// The component's own error, as the native stores report theirs.
fn from_wit(e: WitError) -> StoreError {
    match e {
        WitError::Unavailable(reason) => StoreError::Unavailable {
            store: STORE,
            reason,
        },
        WitError::Failed(reason) => failed(reason),
        WitError::Corrupt(reason) => StoreError::Corrupt {
            store: STORE,
            view: "*".into(),
            feature: "*".into(),
            reason,
        },
        WitError::InvalidConfig(reason) => failed(format!("invalid configuration: {reason}")),
    }
}
