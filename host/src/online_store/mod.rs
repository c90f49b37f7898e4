//! Online stores: the [`OnlineStore`] trait every backend implements, the factory
//! that opens the backend `online_store.type` names ([`open`]), and the [`Store`]
//! handle the engine reads through (it also records the store metrics).
//!
//! Each request hands the store every (view, unique entity keys, features) it needs
//! at once, so a store can answer in as few round trips as its layout allows (one
//! query per view for SQLite, one pipeline for Redis). What a backend derives from a
//! view's names (a table name, hash fields) is computed once per request plan
//! ([`Store::target`]) and kept in the [`ViewTarget`].

mod redis;
mod sqlite;
mod wasm;

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

pub use self::redis::{feature_field, timestamp_field};
pub(crate) use sqlite::SqliteOptions;

use crate::config::{ConfigError, RepoConfig};
use crate::metrics::{Metrics, latency_histogram};
use crate::value::{EventTime, Value};

/// What a backend needs to know to open, beyond its `online_store` section.
#[derive(Clone, Debug)]
pub(crate) struct StoreSettings {
    /// Connections for stores that keep one per serving thread: the serving
    /// threads, plus one for every other thread.
    pub connections: usize,
    /// SQLite reader tuning.
    pub sqlite: SqliteOptions,
    /// An executable that compiles components out of process (`feast-server`
    /// itself), for a store component.
    pub compiler: Option<std::path::PathBuf>,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its `online_store` section is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store itself refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What opening a backend gives.
type Opened = Result<Arc<dyn OnlineStore>, OpenError>;

/// Opens a backend from its configuration.
type Opener = for<'a> fn(
    &'a RepoConfig,
    &'a StoreSettings,
) -> std::pin::Pin<Box<dyn Future<Output = Opened> + Send + 'a>>;

/// The backends, by the `type` values that select them (Feast's short names and
/// class paths, and `wasm` for a store component).
const BACKENDS: &[(&[&str], Opener)] = &[
    (
        &[
            "sqlite",
            "feast.infra.online_stores.sqlite.SqliteOnlineStore",
        ],
        |c, s| Box::pin(std::future::ready(sqlite::open(c, s))),
    ),
    (
        &["redis", "feast.infra.online_stores.redis.RedisOnlineStore"],
        |c, s| Box::pin(std::future::ready(redis::open(c, s))),
    ),
    (&["wasm"], |c, s| Box::pin(wasm::open(c, s))),
];

/// Opens the store `online_store.type` names, with its metrics registered in `metrics`.
pub(crate) async fn open(
    config: &RepoConfig,
    settings: &StoreSettings,
    metrics: &mut Metrics,
) -> Result<Store, OpenError> {
    let type_name = config.online_store.type_name.as_str();
    let Some((_, opener)) = BACKENDS
        .iter()
        .find(|(names, _)| names.contains(&type_name))
    else {
        let mut hint = "supported online stores are sqlite, redis and wasm (a store component, \
                        see docs/online-store-components.md); Feast's Python store classes \
                        cannot be loaded"
            .to_string();
        if type_name == "postgres" || type_name.contains("postgres_online_store") {
            hint.push_str(
                "; Feast's PostgreSQL store is the component plugins/postgres-store: \
                 `type: wasm`, `component: postgres_store.wasm`, Feast's keys under \
                 `config:` and `allow: [\"host:port\"]`",
            );
        }
        return Err(ConfigError::Unsupported {
            path: config.source.clone(),
            key: "online_store.type",
            value: type_name.into(),
            hint,
        }
        .into());
    };
    let backend = opener(config, settings).await?;
    Ok(Store {
        metrics: StoreMetrics::register(metrics, backend.type_name()),
        backend,
    })
}

/// An online store backend.
#[async_trait::async_trait]
pub(crate) trait OnlineStore: Send + Sync + std::fmt::Debug + 'static {
    /// The store type (for messages and metrics).
    fn type_name(&self) -> &'static str;

    /// What the backend derives, once per request plan, for reading `features` of the
    /// view stored as `online_name`; handed back in [`ViewTarget::prepared`].
    fn prepare(&self, online_name: &str, features: &[String]) -> Box<dyn Any + Send + Sync>;

    /// Reads every batch; the result is parallel to `batches`.
    async fn read(&self, batches: Vec<ReadBatch>) -> Result<Vec<ViewRows>, StoreError>;

    /// Writes every batch as Feast's `online_write_batch` does for this store. Either
    /// everything is written or (on an error) nothing is, within what the store can
    /// promise (see each backend).
    async fn write(&self, batches: Vec<WriteBatch>) -> Result<WriteOutcome, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The stored entity keys (without any store-specific suffix) that Feast's
    /// `precompute_feature_service` finds for a key `prefix`; `None` for a store Feast
    /// cannot list (all but Redis).
    async fn entity_keys(&self, _prefix: &[u8]) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(None)
    }

    /// For a store served by a component: its entry of `GET /plugins`.
    fn component_status(&self) -> Option<crate::plugin::PluginStatus> {
        None
    }
}

/// The configured store, as the engine uses it.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    backend: Arc<dyn OnlineStore>,
    metrics: StoreMetrics,
}

impl Store {
    /// The store type name.
    pub(crate) fn type_name(&self) -> &'static str {
        self.backend.type_name()
    }

    /// A target reading `features` of the view `view` stored as `online_name`.
    pub(crate) fn target(
        &self,
        view: &str,
        online_name: &str,
        features: Vec<String>,
    ) -> ViewTarget {
        ViewTarget {
            prepared: self.backend.prepare(online_name, &features),
            slot_by_name: features
                .iter()
                .enumerate()
                .map(|(i, f)| (f.as_bytes().into(), i))
                .collect(),
            view: view.to_string(),
            online_name: online_name.to_string(),
            features,
        }
    }

    /// Reads every batch (timed, failures counted by kind).
    pub(crate) async fn read(&self, batches: Vec<ReadBatch>) -> Result<Vec<ViewRows>, StoreError> {
        let started = Instant::now();
        let result = self.backend.read(batches).await;
        self.metrics
            .observe("read", started.elapsed(), result.as_ref().err());
        result
    }

    /// Writes every batch (timed, rows and failures counted).
    pub(crate) async fn write(&self, batches: Vec<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        if batches.iter().all(|b| b.rows.is_empty()) {
            return Ok(WriteOutcome::default());
        }
        let started = Instant::now();
        let result = self.backend.write(batches).await;
        self.metrics
            .observe("write", started.elapsed(), result.as_ref().err());
        if let Ok(outcome) = &result {
            self.metrics.count_written(outcome);
        }
        result
    }

    /// Checks that the store answers.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }

    /// The store component's entry of `GET /plugins`, if the store is one.
    pub(crate) fn component_status(&self) -> Option<crate::plugin::PluginStatus> {
        self.backend.component_status()
    }

    /// The stored entity keys starting with `prefix`, if the store can list them.
    pub(crate) async fn entity_keys(
        &self,
        prefix: &[u8],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.backend.entity_keys(prefix).await
    }
}

/// Store read and write durations, failures and written rows.
#[derive(Clone, Debug)]
struct StoreMetrics {
    store: &'static str,
    reads: Family<StoreLabels, Histogram, fn() -> Histogram>,
    writes: Family<StoreLabels, Histogram, fn() -> Histogram>,
    /// This store's series of `reads` and `writes`, taken from the families at the
    /// first read or write (a lock and a hash each time otherwise).
    read_series: OnceLock<Histogram>,
    write_series: OnceLock<Histogram>,
    errors: Family<StoreErrorLabels, Counter>,
    rows_written: Family<StoreLabels, Counter>,
    rows_skipped: Family<StoreLabels, Counter>,
}

/// Labels of an online store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

/// Labels of an online store failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StoreErrorLabels {
    store: &'static str,
    /// `read` or `write`.
    op: &'static str,
    /// `unavailable`, `failed` or `corrupt`.
    kind: &'static str,
}

impl StoreMetrics {
    fn register(metrics: &mut Metrics, store: &'static str) -> Self {
        let m = StoreMetrics {
            store,
            reads: Family::new_with_constructor(latency_histogram),
            writes: Family::new_with_constructor(latency_histogram),
            read_series: OnceLock::new(),
            write_series: OnceLock::new(),
            errors: Family::default(),
            rows_written: Family::default(),
            rows_skipped: Family::default(),
        };
        metrics.register(
            "online_store_read_duration_seconds",
            "Time of one batched online store read",
            m.reads.clone(),
        );
        metrics.register(
            "online_store_write_duration_seconds",
            "Time of one batched online store write",
            m.writes.clone(),
        );
        metrics.register(
            "online_store_errors",
            "Failed online store reads and writes",
            m.errors.clone(),
        );
        metrics.register(
            "online_store_written_rows",
            "Rows written to the online store",
            m.rows_written.clone(),
        );
        metrics.register(
            "online_store_skipped_rows",
            "Rows not written because the store held newer ones for their entity (Redis)",
            m.rows_skipped.clone(),
        );
        m
    }

    /// Records one `op` (`read` or `write`) and, if it failed, its failure kind.
    fn observe(&self, op: &'static str, took: Duration, failure: Option<&StoreError>) {
        let store = self.store;
        let (family, series) = if op == "write" {
            (&self.writes, &self.write_series)
        } else {
            (&self.reads, &self.read_series)
        };
        series
            .get_or_init(|| family.get_or_create(&StoreLabels { store }).clone())
            .observe(took.as_secs_f64());
        if let Some(e) = failure {
            self.errors
                .get_or_create(&StoreErrorLabels {
                    store,
                    op,
                    kind: e.kind_name(),
                })
                .inc();
        }
    }

    fn count_written(&self, outcome: &WriteOutcome) {
        let labels = StoreLabels { store: self.store };
        self.rows_written
            .get_or_create(&labels)
            .inc_by(outcome.written as u64);
        self.rows_skipped
            .get_or_create(&labels)
            .inc_by(outcome.skipped as u64);
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("online store {store} is unavailable: {reason}")]
    Unavailable {
        /// Store type.
        store: &'static str,
        /// Why.
        reason: String,
    },
    /// The store answered with an error.
    #[error("online store {store} failed: {reason}")]
    Failed {
        /// Store type.
        store: &'static str,
        /// Why.
        reason: String,
    },
    /// A stored value is not what Feast writes.
    #[error("online store {store} holds a malformed value for {view}:{feature}: {reason}")]
    Corrupt {
        /// Store type.
        store: &'static str,
        /// The view.
        view: String,
        /// The feature.
        feature: String,
        /// Why it could not be decoded.
        reason: String,
    },
}

impl StoreError {
    /// Whether the failure is the store being unreachable (a 503, retried by clients).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// A short name of the failure kind (for metrics).
    pub fn kind_name(&self) -> &'static str {
        match self {
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Failed { .. } => "failed",
            StoreError::Corrupt { .. } => "corrupt",
        }
    }
}

/// What a plan reads from one view: its online name, the features (in slot order)
/// and what the store derived from them, computed once per plan.
#[derive(Debug)]
pub(crate) struct ViewTarget {
    /// Registry name of the view (for messages).
    pub view: String,
    /// Name the online store knows the view by (`<view>` or `<view>_v<N>`).
    pub online_name: String,
    /// Feature names, in slot order.
    pub features: Vec<String>,
    /// Slot by feature name, as a store returns it (bytes, not yet known to be text).
    slot_by_name: HashMap<Box<[u8]>, usize>,
    prepared: Box<dyn Any + Send + Sync>,
}

impl ViewTarget {
    /// The slot of a feature name as a store returns it, if it is read (a name that is
    /// not UTF-8 is no feature's).
    pub(crate) fn slot(&self, feature: &[u8]) -> Option<usize> {
        self.slot_by_name.get(feature).copied()
    }

    /// What the store's [`OnlineStore::prepare`] derived for this target.
    #[expect(
        clippy::expect_used,
        reason = "a target is made by the store that reads it"
    )]
    pub(crate) fn prepared<T: 'static>(&self) -> &T {
        self.prepared
            .downcast_ref()
            .expect("a read target is prepared by the store that reads it")
    }
}

/// One view's read: which target and which unique, serialized entity keys.
#[derive(Debug)]
pub(crate) struct ReadBatch {
    /// What to read.
    pub target: Arc<ViewTarget>,
    /// Unique serialized entity keys (without any store-specific suffix).
    pub keys: Vec<Vec<u8>>,
}

/// A feature value to write: Feast's serialized `feast.types.Value` (empty for a
/// null), and the text Feast's SQLite store keeps beside it (`value_text`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WriteValue {
    /// The serialized `Value`.
    pub(crate) bytes: Vec<u8>,
    /// `str()` of a scalar, as Feast's `value_text` holds it; `None` otherwise.
    pub(crate) text: Option<String>,
}

/// One entity's row of a view to write.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WriteRow {
    /// The serialized entity key (without any store-specific suffix).
    pub(crate) entity_key: Vec<u8>,
    /// One value per feature of the target, in its slot order.
    pub(crate) values: Vec<WriteValue>,
    /// The row's event time.
    pub(crate) event_time: EventTime,
    /// The row's created time, when its source has one.
    pub(crate) created: Option<EventTime>,
}

/// The rows of one view to write.
#[derive(Debug)]
pub(crate) struct WriteBatch {
    /// What to write (the target's features are the row values' slots).
    pub(crate) target: Arc<ViewTarget>,
    /// The rows, in the order they are written.
    pub(crate) rows: Vec<WriteRow>,
}

/// What a write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteOutcome {
    /// Rows written.
    pub(crate) written: usize,
    /// Rows left out because the store held a newer row for their entity (Redis).
    pub(crate) skipped: usize,
}

/// A stored feature value and its event time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cell {
    /// The value (an empty `Value` when Feast stored a null).
    pub value: Value,
    /// The row's event time.
    pub event_time: EventTime,
}

/// The answer for one [`ReadBatch`]: a grid of keys x feature slots.
#[derive(Debug)]
pub(crate) struct ViewRows {
    slots: usize,
    cells: Vec<Option<Cell>>,
}

impl ViewRows {
    /// An all-missing grid.
    pub(crate) fn empty(keys: usize, slots: usize) -> Self {
        ViewRows {
            slots,
            cells: vec![None; keys * slots],
        }
    }

    /// Where a key's slot is in `cells`; `None` for a slot out of range (which would
    /// otherwise name the next key's cell).
    fn index(&self, key: usize, slot: usize) -> Option<usize> {
        (slot < self.slots).then(|| key * self.slots + slot)
    }

    /// The cell of a key and slot; `None` when the store has no value for it.
    pub(crate) fn get(&self, key: usize, slot: usize) -> Option<&Cell> {
        self.cells.get(self.index(key, slot)?)?.as_ref()
    }

    /// Moves a cell out (leaving it missing).
    pub(crate) fn take(&mut self, key: usize, slot: usize) -> Option<Cell> {
        let i = self.index(key, slot)?;
        self.cells.get_mut(i)?.take()
    }

    /// Stores a cell (nowhere for a key or slot out of range).
    pub(crate) fn set(&mut self, key: usize, slot: usize, cell: Cell) {
        if let Some(c) = self.index(key, slot).and_then(|i| self.cells.get_mut(i)) {
            *c = Some(cell);
        }
    }
}

/// The demo repository's SQLite store, for unit tests.
#[cfg(test)]
pub(crate) fn demo_sqlite() -> Store {
    sqlite_at(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../demo/feature_repo/data/online_store.db"),
    )
}

/// The SQLite store of project `repo` at `path` (an existing file), for unit tests.
#[cfg(test)]
pub(crate) fn sqlite_at(path: &std::path::Path) -> Store {
    let store = sqlite::SqliteStore::open(path, "repo", SqliteOptions::default(), 2)
        .expect("the store opens");
    Store {
        metrics: StoreMetrics::register(&mut Metrics::default(), "sqlite"),
        backend: Arc::new(store),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(online_store: &str) -> RepoConfig {
        RepoConfig::parse(
            &format!(
                "project: repo\nregistry: data/registry.db\nprovider: local\nonline_store:\n{online_store}entity_key_serialization_version: 3\n"
            ),
            std::path::Path::new("/nonexistent-repo"),
            std::path::Path::new("/nonexistent-repo/feature_store.yaml"),
        )
        .expect("the configuration parses")
    }

    async fn open_error(online_store: &str) -> String {
        let settings = StoreSettings {
            connections: 2,
            sqlite: SqliteOptions::default(),
            compiler: None,
        };
        match open(&config(online_store), &settings, &mut Metrics::default()).await {
            Ok(store) => panic!("{} opened", store.type_name()),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_python_store_class_is_refused_naming_what_is_supported() {
        let e = open_error("    type: my_company.stores.KvOnlineStore\n").await;
        assert!(e.contains("online_store.type"), "{e}");
        assert!(e.contains("sqlite, redis and wasm"), "{e}");
        assert!(e.contains("Python store classes"), "{e}");
        let e = open_error("    type: postgres\n    host: db\n").await;
        assert!(e.contains("plugins/postgres-store"), "{e}");
    }

    #[tokio::test]
    async fn a_store_component_needs_its_file_and_valid_settings() {
        let e = open_error("    type: wasm\n    component: store.wasm\n").await;
        assert!(e.contains("online_store.component"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        let e = open_error("    type: wasm\n").await;
        assert!(e.contains("component"), "{e}");
        let e = open_error("    type: wasm\n    component: s.wasm\n    allow: [\"redis\"]\n").await;
        assert!(e.contains("not host:port"), "{e}");
        let e = open_error("    type: wasm\n    component: s.wasm\n    sockets: all\n").await;
        assert!(e.contains("sockets"), "{e}");
    }
}
