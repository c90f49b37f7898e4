//! Online store backends behind one batched read: each request hands the store every
//! (view, unique entity keys, features) it needs at once, so a store can answer in as
//! few round trips as its layout allows (one query per view for SQLite).

mod redis;
mod sqlite;

use foldhash::HashMap;
use std::sync::Arc;

pub use self::redis::{RedisOptions, RedisStore, feature_field, timestamp_field};
pub use sqlite::{SqliteOptions, SqliteStore};

use crate::registry::FeatureView;
use crate::value::{EventTime, Value};

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

/// What a plan reads from one view: its online name, the features (in slot order) and
/// what stores derive from them, computed once per plan.
#[derive(Debug)]
pub struct ReadTarget {
    /// Registry name of the view (for messages).
    pub view: String,
    /// Name the online store knows the view by (`<view>` or `<view>_v<N>`).
    pub online_name: String,
    /// SQLite table: `<project>_<online_name>`.
    pub table: String,
    /// Feature names, in slot order.
    pub features: Vec<String>,
    /// Redis hash fields of the features, in slot order.
    pub redis_fields: Vec<[u8; 4]>,
    /// Redis hash field of the view's event time (`_ts:<online_name>`).
    pub redis_ts_field: Vec<u8>,
    slot_by_name: HashMap<String, usize>,
}

impl ReadTarget {
    /// A target reading `features` (names of `view`'s features) of the view stored as
    /// `online_name` in `project`; field hashes come from the registry when the online
    /// name is the view's own.
    pub fn new(
        project: &str,
        view: &FeatureView,
        online_name: &str,
        features: Vec<String>,
    ) -> Self {
        let slot_by_name = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        let redis_fields = features
            .iter()
            .map(|f| match view.feature(f) {
                Some(i) if online_name == view.online_name => view.redis_fields[i],
                _ => feature_field(online_name, f),
            })
            .collect();
        ReadTarget {
            view: view.name.clone(),
            online_name: online_name.to_string(),
            table: format!("{project}_{online_name}"),
            redis_ts_field: timestamp_field(online_name),
            redis_fields,
            features,
            slot_by_name,
        }
    }

    /// The slot of a feature name, if it is read.
    pub fn slot(&self, feature: &str) -> Option<usize> {
        self.slot_by_name.get(feature).copied()
    }
}

/// One view's read: which target and which unique, serialized entity keys.
#[derive(Debug)]
pub struct ReadBatch {
    /// What to read.
    pub target: Arc<ReadTarget>,
    /// Unique serialized entity keys (without any store-specific suffix).
    pub keys: Vec<Vec<u8>>,
}

/// A stored feature value and its event time.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The value (an empty `Value` when Feast stored a null).
    pub value: Value,
    /// The row's event time.
    pub event_time: EventTime,
}

/// The answer for one [`ReadBatch`]: a grid of keys x feature slots.
#[derive(Debug)]
pub struct ViewRows {
    slots: usize,
    cells: Vec<Option<Cell>>,
}

impl ViewRows {
    /// An all-missing grid.
    pub fn empty(keys: usize, slots: usize) -> Self {
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
    pub fn get(&self, key: usize, slot: usize) -> Option<&Cell> {
        self.cells.get(self.index(key, slot)?)?.as_ref()
    }

    /// Moves a cell out (leaving it missing).
    pub fn take(&mut self, key: usize, slot: usize) -> Option<Cell> {
        let i = self.index(key, slot)?;
        self.cells.get_mut(i)?.take()
    }

    /// Stores a cell (nowhere for a key or slot out of range).
    pub fn set(&mut self, key: usize, slot: usize, cell: Cell) {
        if let Some(c) = self.index(key, slot).and_then(|i| self.cells.get_mut(i)) {
            *c = Some(cell);
        }
    }
}

/// The configured online store.
#[derive(Debug, Clone)]
pub enum OnlineStore {
    /// Feast's SQLite layout.
    Sqlite(SqliteStore),
    /// Feast's Redis layout (standalone, cluster or sentinel).
    Redis(RedisStore),
}

impl OnlineStore {
    /// The store type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            OnlineStore::Sqlite(_) => "sqlite",
            OnlineStore::Redis(_) => "redis",
        }
    }

    /// Reads every batch; the result is parallel to `batches`.
    pub async fn read(&self, batches: Vec<ReadBatch>) -> Result<Vec<ViewRows>, StoreError> {
        match self {
            OnlineStore::Sqlite(s) => s.read(batches).await,
            OnlineStore::Redis(s) => s.read(batches).await,
        }
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            OnlineStore::Sqlite(s) => s.ping().await,
            OnlineStore::Redis(s) => s.ping().await,
        }
    }
}
