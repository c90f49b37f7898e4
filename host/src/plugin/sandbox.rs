//! The sandbox every component runs in, whatever its world: a wasmtime store with a
//! WASI context that grants only what the world allows, a memory limit, a per-call
//! deadline (epoch ticks; between ticks the guest yields to other requests), stderr
//! captured in memory, and traps told apart (deadline, memory, stack, panic).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::{InstancePre, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::engine::{CompiledBy, TICK, WasmEngine};
use super::error::PluginFailure;

/// Guest stderr kept per instance (panic messages, logs); beyond it output is dropped.
const STDERR_CAPACITY: usize = 64 << 10;
/// Prefix the guest SDK's panic hook writes.
const PANIC_PREFIX: &str = "feast-plugin panicked: ";

/// The limits of one component's calls.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Longest time one call may run.
    pub(crate) timeout: Duration,
    /// Largest linear memory of one instance.
    pub(crate) max_memory_bytes: usize,
}

/// What a component may reach on the network.
#[derive(Clone, Debug, Default)]
pub(crate) enum Network {
    /// Nothing (on-demand feature views).
    #[default]
    None,
    /// Outgoing TCP connections to these addresses only (online stores); no name
    /// lookups, no UDP, no listening.
    TcpTo(Arc<HashSet<SocketAddr>>),
}

/// Guest stderr: an in-memory buffer that keeps the first bytes and silently drops
/// the rest, so a chatty component never fails on a full pipe.
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

/// Refuses memory growth beyond the limit, remembering that it did, and how large
/// the instance's memories have grown.
struct MemoryLimiter {
    max: usize,
    exceeded: Option<String>,
    /// The largest size a memory of the instance grew to.
    grown: usize,
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
                "memory limit of {} MiB exceeded (the component asked for {} MiB)",
                self.max >> 20,
                desired >> 20
            );
            self.exceeded = Some(msg.clone());
            return Err(wasmtime::format_err!(msg));
        }
        self.grown = self.grown.max(desired);
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

/// Per-instance host state.
pub(crate) struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: StderrBuffer,
    ticks: u64,
    budget: u64,
    /// Connections refused by the allow list since the last call began.
    refused: Arc<Mutex<Vec<SocketAddr>>>,
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A component compiled (or loaded from the cache) and linked with WASI, ready to
/// be instantiated in any world's bindings.
pub(crate) struct Prepared {
    /// The linked component.
    pub(crate) pre: InstancePre<SandboxState>,
    /// SHA-256 of its bytes.
    pub(crate) content_hash: String,
    /// Where its machine code came from.
    pub(crate) compiled_by: CompiledBy,
    /// How long compiling (or loading from the cache) took.
    pub(crate) compile_time: Duration,
}

/// Why a component could not be prepared.
#[derive(Debug)]
pub(crate) enum PrepareError {
    /// Not a valid component.
    Compile(String),
    /// It asks for imports WASI does not provide.
    Link(String),
}

/// Compiles `bytes` off the async workers (seconds of CPU, or a cache hit) and links
/// the component with WASI (what it may actually use is decided per store).
pub(crate) async fn prepare(engine: &WasmEngine, bytes: Vec<u8>) -> Result<Prepared, PrepareError> {
    let started = std::time::Instant::now();
    let content_hash = super::cache::content_hash(&bytes);
    let compiler = engine.clone();
    let (component, compiled_by) = tokio::task::spawn_blocking(move || compiler.compile(&bytes))
        .await
        .map_err(|e| PrepareError::Compile(e.to_string()))?
        .map_err(|e| PrepareError::Compile(format!("{e:#}")))?;
    let compile_time = started.elapsed();
    refuse_ungranted_imports(engine, &component)?;
    let mut linker = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| PrepareError::Link(format!("{e:#}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| PrepareError::Link(format!("{e:#}")))?;
    Ok(Prepared {
        pre,
        content_hash,
        compiled_by,
        compile_time,
    })
}

/// WASI packages a component may import (each world then grants a subset of their
/// functions: see the module documentation), and the plugin package's own types.
const LINKABLE: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "feast:plugin/",
];

/// Names every import no plugin is granted (instead of the linker's first mismatch),
/// with how the usual toolchains leave it out.
fn refuse_ungranted_imports(
    engine: &WasmEngine,
    component: &wasmtime::component::Component,
) -> Result<(), PrepareError> {
    let refused: Vec<String> = component
        .component_type()
        .imports(engine.engine())
        .map(|(name, _)| name.to_string())
        .filter(|name| !LINKABLE.iter().any(|p| name.starts_with(p)))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let hint = if refused.iter().any(|n| n.starts_with("wasi:http/")) {
        " (componentize-js leaves HTTP out with `-d http fetch-event`)"
    } else {
        ""
    };
    Err(PrepareError::Link(format!(
        "the component imports {}, which plugins are not granted: plugins may import only WASI's cli, io, clocks, random, filesystem and sockets interfaces, of which they get what their world allows{hint}",
        refused.join(", ")
    )))
}

fn budget(limits: &Limits) -> u64 {
    (limits.timeout.as_nanos().div_ceil(TICK.as_nanos())).max(1) as u64
}

/// A store for one instance: no preopened directories, no environment, no
/// arguments; stdout discarded, stderr captured; the wall and monotonic clocks and
/// random bytes (WASI's defaults, kept on purpose: runtimes seed hash maps with
/// them); the network `network` grants.
pub(crate) fn new_store(
    engine: &WasmEngine,
    limits: &Limits,
    network: &Network,
) -> Store<SandboxState> {
    let stderr = StderrBuffer::default();
    let refused: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stderr(stderr.clone());
    if let Network::TcpTo(allowed) = network {
        let allowed = allowed.clone();
        let seen = refused.clone();
        wasi.allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, usage| {
                let ok = matches!(usage, SocketAddrUse::TcpConnect) && allowed.contains(&addr)
                    // The implicit bind before a connect, to an unspecified local address.
                    || matches!(usage, SocketAddrUse::TcpBind) && addr.ip().is_unspecified() && addr.port() == 0;
                if !ok && let Ok(mut r) = seen.lock() {
                    r.push(addr);
                }
                Box::pin(async move { ok })
            });
    }
    let mut store = Store::new(
        engine.engine(),
        SandboxState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max: limits.max_memory_bytes,
                exceeded: None,
                grown: 0,
            },
            stderr,
            ticks: 0,
            budget: budget(limits),
            refused,
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
    store
}

/// Resets the deadline for one call; returns the stderr mark of the call.
pub(crate) fn arm(store: &mut Store<SandboxState>, limits: &Limits) -> usize {
    let state = store.data_mut();
    state.ticks = 0;
    state.budget = budget(limits);
    if let Ok(mut r) = state.refused.lock() {
        r.clear();
    }
    let mark = state.stderr.len();
    store.set_epoch_deadline(1);
    mark
}

/// Whether an instance should be retired rather than reused: its stderr is filling
/// up, so output would be lost when it later panics; or its memory has grown past
/// three quarters of the limit (see [`grown_past_three_quarters`]).
pub(crate) fn worn_out(store: &Store<SandboxState>) -> bool {
    store.data().stderr.len() > STDERR_CAPACITY / 2 || grown_past_three_quarters(store).is_some()
}

/// (memory grown to, limit) when an instance's memory has grown past three quarters of
/// the limit, so a later call would likely fail on it: language runtimes with a
/// garbage-collected heap grow between collections and never give memory back, and a
/// fresh instance starts from the initial image again.
pub(crate) fn grown_past_three_quarters(store: &Store<SandboxState>) -> Option<(usize, usize)> {
    let limiter = &store.data().limiter;
    (limiter.grown > limiter.max / 4 * 3).then_some((limiter.grown, limiter.max))
}

/// The connections the allow list refused during the current call.
pub(crate) fn refused(store: &Store<SandboxState>) -> Vec<SocketAddr> {
    store
        .data()
        .refused
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default()
}

/// Why a call trapped, from the trap and what the guest wrote since `mark`.
pub(crate) fn classify(
    e: &wasmtime::Error,
    store: &Store<SandboxState>,
    mark: usize,
    timeout: Duration,
) -> PluginFailure {
    let state = store.data();
    if let Some(m) = &state.limiter.exceeded {
        return PluginFailure::MemoryLimit(m.clone());
    }
    let stderr = state.stderr.since(mark);
    if let Some(line) = stderr.lines().find_map(|l| l.strip_prefix(PANIC_PREFIX)) {
        return PluginFailure::Panic(line.to_string());
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginFailure::Timeout(timeout),
        Some(Trap::StackOverflow) => PluginFailure::StackOverflow,
        _ => PluginFailure::Trap {
            trap: format!("{e:#}"),
            stderr: tail(&stderr, 512),
        },
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
