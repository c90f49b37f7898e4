//! Custom online stores as sandboxed WebAssembly components (`online_store: {type:
//! wasm}`, the `online-store` world of `wit/online-store.wit`).
//!
//! The component is compiled once (cached on disk like the ODFV plugins), linked
//! with WASI, and run in the sandbox of [`crate::plugin::sandbox`] with one
//! capability more than an ODFV: outgoing TCP to the addresses of its `allow` list
//! (names resolved by the server at load; every connect checked; the component
//! cannot look names up). Its instances live long (they keep their connections
//! between calls), idle ones kept per serving thread: at most `instances` (default: 4
//! per serving thread, plus 4), each serving one call at a time.
//!
//! A request's reads are one `read` call with one Arrow IPC buffer per view (the
//! concurrent reads of a serving thread share a call, see `batch`); writes one `write`
//! call. The answer is checked against the contract (columns, types,
//! row counts, size); a call past `timeout_ms` is a 503 and its instance is dropped,
//! as is an instance that trapped.
//!
//! Hot swap: the file is polled; a new version is compiled, opened and pinged
//! before it replaces the old one, which finishes the calls it started; a version
//! that fails to load is refused (logged) and the old one keeps serving.
//!
//! | module | its one job |
//! |---|---|
//! | `config` | the `online_store` section: component, `config`, `allow`, limits |
//! | `component` | one loaded version: its instances and calls under the limits |
//! | `batch` | concurrent reads of a serving thread carried by one call |

mod batch;
mod component;
mod config;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use feast_plugin_sdk::store::{Timestamp, codec};

use self::component::{Loaded, ViewRead, ViewWrite};
use self::config::WasmStoreConfig;
use super::{
    Cell, OnlineStore, OpenError, ReadBatch, StoreError, StoreSettings, ViewRows, WriteBatch,
    WriteOutcome,
};
use crate::config::{ConfigError, RepoConfig};
use crate::file_watch::{Settling, Stamp, poll_timer, stamp, tick};
use crate::plugin::WasmEngine;
use crate::value::{EventTime, decode_stored};

const STORE: &str = "wasm";

/// Largest answer accepted from the component, over all views of a call.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Opens the store: the component is loaded and one instance opened before the
/// server starts serving.
pub(super) async fn open(
    config: &RepoConfig,
    settings: &StoreSettings,
) -> Result<Arc<dyn OnlineStore>, OpenError> {
    let cfg = WasmStoreConfig::from_repo(config, settings.connections)?;
    let cache_dir = crate::plugin::PluginConfig::from_repo(config, None)
        .map(|p| p.cache_dir)
        .unwrap_or_default();
    let engine = WasmEngine::new(cfg.max_memory_bytes, cache_dir, settings.compiler.clone())
        .map_err(|e| StoreError::Failed {
            store: STORE,
            reason: format!("cannot start the WebAssembly engine: {e:#}"),
        })?;
    let stamp_now = stamp(&cfg.component);
    let loaded = Loaded::load(&engine, &cfg.component, &cfg, cfg.resolve_allow().await)
        .await
        .map_err(|e| {
            OpenError::Config(ConfigError::Parse {
                path: config.source.clone(),
                message: format!("online_store.component {}: {e}", cfg.component.display()),
            })
        })?;
    tracing::info!(
        component = %cfg.component.display(),
        name = %loaded.info.name,
        version = %loaded.info.version,
        compiled_by = ?loaded.compiled_by,
        took = ?loaded.compile_time,
        "loaded the online store component"
    );
    let store = Arc::new(WasmStore {
        current: Arc::new(ArcSwap::from_pointee(loaded)),
        load_error: Arc::default(),
        file: cfg.component.clone(),
    });
    spawn_watch(
        Arc::downgrade(&store.current),
        store.load_error.clone(),
        engine,
        Arc::new(cfg),
        stamp_now,
    );
    Ok(store)
}

/// Polls the component file and swaps in each new version that loads.
fn spawn_watch(
    current: Weak<ArcSwap<Loaded>>,
    load_error: Arc<Mutex<Option<String>>>,
    engine: WasmEngine,
    cfg: Arc<WasmStoreConfig>,
    mut loaded_stamp: Stamp,
) {
    let mut timer = poll_timer(cfg.poll_interval);
    if timer.is_none() {
        return; // polling off
    }
    tokio::spawn(async move {
        let mut settling = Settling::<Stamp>::default();
        loop {
            tick(&mut timer).await;
            let Some(current) = current.upgrade() else {
                return; // the store was dropped
            };
            let now = stamp(&cfg.component);
            if now.is_none() || !settling.settled(now, &loaded_stamp) {
                continue;
            }
            loaded_stamp = now;
            let refused = match Loaded::load(
                &engine,
                &cfg.component,
                &cfg,
                cfg.resolve_allow().await,
            )
            .await
            {
                Ok(new) => {
                    let new = Arc::new(new);
                    // A new version must answer before it serves.
                    match new.call("ping", async |i| i.ping().await).await {
                        Ok(()) => {
                            tracing::info!(
                                component = %cfg.component.display(),
                                name = %new.info.name,
                                version = %new.info.version,
                                hash = %new.content_hash,
                                "swapped in a new version of the online store component"
                            );
                            current.store(new);
                            None
                        }
                        Err(e) => Some(format!("its ping failed: {e}")),
                    }
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = &refused {
                tracing::error!(
                    component = %cfg.component.display(),
                    error = %e,
                    "the new version of the online store component was refused; the previous one keeps serving"
                );
            }
            if let Ok(mut last) = load_error.lock() {
                *last = refused;
            }
        }
    });
}

/// A store served by a component.
pub(crate) struct WasmStore {
    current: Arc<ArcSwap<Loaded>>,
    /// Why the file's latest version was refused (the current one keeps serving).
    load_error: Arc<Mutex<Option<String>>>,
    file: std::path::PathBuf,
}

impl std::fmt::Debug for WasmStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmStore")
            .field("component", &self.current.load().info.name)
            .finish()
    }
}

fn contract(what: String) -> StoreError {
    StoreError::Failed {
        store: STORE,
        reason: format!("the component broke the online-store contract: {what}"),
    }
}

fn event_time(t: Timestamp) -> EventTime {
    EventTime {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

fn timestamp(t: EventTime) -> Timestamp {
    Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

/// The component's answers to a read, checked against the contract.
fn decode_answers(batches: &[ReadBatch], answers: &[Vec<u8>]) -> Result<Vec<ViewRows>, StoreError> {
    if answers.len() != batches.len() {
        return Err(contract(format!(
            "{} answers for {} views",
            answers.len(),
            batches.len()
        )));
    }
    let size: usize = answers.iter().map(Vec::len).sum();
    if size > MAX_ANSWER_BYTES {
        return Err(contract(format!(
            "an answer of {size} bytes (at most {MAX_ANSWER_BYTES})"
        )));
    }
    batches
        .iter()
        .zip(answers)
        .map(|(batch, bytes)| {
            let target = &batch.target;
            let rows = codec::decode_rows(bytes, &target.features, batch.keys.len())
                .map_err(|e| contract(format!("view {}: {e}", target.view)))?;
            let mut grid = ViewRows::empty(batch.keys.len(), target.features.len());
            for (k, row) in rows.into_iter().enumerate() {
                let Some(ts) = row.event_ts else { continue };
                let event_time = event_time(ts);
                for (slot, value) in row.values.into_iter().enumerate() {
                    let Some(bytes) = value else { continue };
                    let value =
                        decode_stored(bytes.as_slice()).map_err(|e| StoreError::Corrupt {
                            store: STORE,
                            view: target.view.clone(),
                            feature: target.features[slot].clone(),
                            reason: e.to_string(),
                        })?;
                    grid.set(k, slot, Cell { value, event_time });
                }
            }
            Ok(grid)
        })
        .collect()
}

#[async_trait::async_trait]
impl OnlineStore for WasmStore {
    fn type_name(&self) -> &'static str {
        STORE
    }

    fn prepare(&self, _: &str, _: &[String]) -> Box<dyn std::any::Any + Send + Sync> {
        Box::new(())
    }

    async fn read(&self, batches: Vec<ReadBatch>) -> Result<Vec<ViewRows>, StoreError> {
        let views = batches
            .iter()
            .map(|b| {
                Ok(ViewRead {
                    view: b.target.online_name.clone(),
                    features: b.target.features.clone(),
                    keys: codec::encode_keys(&b.keys).map_err(|e| StoreError::Failed {
                        store: STORE,
                        reason: format!("cannot encode the keys: {e}"),
                    })?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let loaded = self.current.load_full();
        let answers = loaded.reads.read(&loaded, views).await?;
        let decoded = decode_answers(&batches, &answers);
        if let Err(e) = &decoded {
            loaded.record_failure(e);
        }
        decoded
    }

    async fn write(&self, batches: Vec<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        let views = batches
            .iter()
            .map(|b| {
                let rows: Vec<feast_plugin_sdk::store::WriteRow> = b
                    .rows
                    .iter()
                    .map(|r| feast_plugin_sdk::store::WriteRow {
                        entity_key: r.entity_key.clone(),
                        event_ts: timestamp(r.event_time),
                        created_ts: r.created.map(timestamp),
                        values: r.values.iter().map(|v| v.bytes.clone()).collect(),
                    })
                    .collect();
                Ok(ViewWrite {
                    view: b.target.online_name.clone(),
                    features: b.target.features.clone(),
                    rows: codec::encode_writes(&b.target.features, &rows).map_err(|e| {
                        StoreError::Failed {
                            store: STORE,
                            reason: format!("cannot encode the rows: {e}"),
                        }
                    })?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows: usize = batches.iter().map(|b| b.rows.len()).sum();
        let loaded = self.current.load_full();
        let outcome = loaded
            .call("write", async |i| i.write(&views).await)
            .await?;
        let (written, skipped) = (outcome.written, outcome.skipped);
        if written + skipped != rows as u64 {
            return Err(contract(format!(
                "{written} rows written and {skipped} skipped of {rows}"
            )));
        }
        Ok(WriteOutcome {
            written: written as usize,
            skipped: skipped as usize,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let loaded = self.current.load_full();
        loaded.call("ping", async |i| i.ping().await).await
    }

    fn component_status(&self) -> Option<crate::plugin::PluginStatus> {
        let l = self.current.load();
        Some(crate::plugin::PluginStatus {
            file: self.file.display().to_string(),
            world: "online-store",
            name: Some(l.info.name.clone()),
            version: Some(l.info.version.clone()),
            content_hash: Some(l.content_hash.clone()),
            loaded_at: Some(crate::plugin::rfc3339(l.loaded_at)),
            odfvs: Vec::new(),
            calls: l.stats.calls.load(Ordering::Relaxed),
            errors: l.stats.errors.load(Ordering::Relaxed),
            instances: l.stats.instances.load(Ordering::Relaxed),
            last_error: l.stats.last_error.lock().ok().and_then(|e| e.clone()),
            load_error: self.load_error.lock().ok().and_then(|e| e.clone()),
            compile_ms: Some(l.compile_time.as_secs_f64() * 1e3),
            from_cache: Some(l.compiled_by == crate::plugin::CompiledBy::Cache),
            compiled_by: Some(l.compiled_by),
        })
    }
}
