//! The `get-online-features` request and response as the engine, the feature logger
//! and both transports share them, whatever the wire format.

use std::sync::Arc;

use crate::value::{EventTime, FieldStatus, Value, copy_value};

/// A `get-online-features` request, whatever transport it came from.
#[derive(Debug, Clone, Default)]
pub struct OnlineFeaturesRequest {
    /// `view:feature` references (ignored when `feature_service` is set).
    pub features: Vec<String>,
    /// A feature service name.
    pub feature_service: Option<String>,
    /// Entity columns by join key (or entity name), plus request data, in request order.
    pub entities: Vec<(String, Vec<Value>)>,
    /// Request data columns (the Go server's `request_context`).
    pub request_context: Vec<(String, Vec<Value>)>,
    /// Name outputs `<view>__<feature>`.
    pub full_feature_names: bool,
    /// Add `feature_view_metadata` to the response.
    pub include_feature_view_version_metadata: bool,
}

impl OnlineFeaturesRequest {
    /// The request data column `name`: from `request_context` when it is there (it
    /// holds nothing else), else from `entities` (where Feast's Python server takes
    /// request data from).
    pub fn request_data(&self, name: &str) -> Option<&[Value]> {
        self.request_context
            .iter()
            .chain(&self.entities)
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// One output column: a value, a status and an event time per entity row.
///
/// When rows repeat an entity key, the column holds one value, status and event time
/// per key, shared by the rows with that key ([`RowKeys`]); [`FeatureColumn::value`],
/// [`FeatureColumn::status`] and [`FeatureColumn::event_time`] read any row's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureColumn {
    /// One value per row, or one per key when rows repeat keys.
    values: Vec<Value>,
    /// One status per value (none for a logged join key or request data column).
    statuses: Vec<FieldStatus>,
    /// One event time per value (none for a logged join key or request data column).
    event_timestamps: Vec<EventTime>,
    /// When rows repeat an entity key: which key each row has.
    repeats: Option<Arc<RowKeys>>,
}

/// How request rows map to the unique entity keys of a view read; the columns of one
/// read share it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RowKeys {
    /// For each request row, the index of its unique key.
    pub(crate) key_of_row: Vec<u32>,
    /// For each unique key, the first row that uses it.
    pub(crate) first_row: Vec<u32>,
}

impl RowKeys {
    /// Whether some row repeats an earlier row's key.
    pub(crate) fn repeat(&self) -> bool {
        self.first_row.len() < self.key_of_row.len()
    }

    /// The first row with row `row`'s key.
    pub(crate) fn first_row_of(&self, row: usize) -> usize {
        self.first_row[self.key_of_row[row] as usize] as usize
    }
}

impl FeatureColumn {
    /// A column with a value, a status and an event time for each row (or values
    /// only: no statuses and no event times).
    pub fn new(
        values: Vec<Value>,
        statuses: Vec<FieldStatus>,
        event_timestamps: Vec<EventTime>,
    ) -> Self {
        debug_assert!(
            (statuses.is_empty() || statuses.len() == values.len())
                && event_timestamps.len() == statuses.len()
        );
        FeatureColumn {
            values,
            statuses,
            event_timestamps,
            repeats: None,
        }
    }

    /// A column of values the request supplied: `PRESENT`, with the epoch as event time.
    pub fn supplied(values: Vec<Value>) -> Self {
        let rows = values.len();
        FeatureColumn::new(
            values,
            vec![FieldStatus::Present; rows],
            vec![EventTime::EPOCH; rows],
        )
    }

    /// A column whose rows repeat keys: `values`, `statuses` and `event_timestamps`
    /// hold one item per key of `repeats`.
    pub(crate) fn with_repeats(
        values: Vec<Value>,
        statuses: Vec<FieldStatus>,
        event_timestamps: Vec<EventTime>,
        repeats: Arc<RowKeys>,
    ) -> Self {
        let keys = repeats.first_row.len();
        debug_assert!(
            values.len() == keys
                && statuses.len() == keys
                && event_timestamps.len() == keys
                && (0..repeats.key_of_row.len()).all(|i| repeats.first_row_of(i) <= i)
        );
        FeatureColumn {
            values,
            statuses,
            event_timestamps,
            repeats: Some(repeats),
        }
    }

    /// A column of values the request supplied (see [`FeatureColumn::supplied`])
    /// whose rows repeat keys: `values` holds one value per key of `repeats`.
    pub(crate) fn supplied_repeating(values: Vec<Value>, repeats: Arc<RowKeys>) -> Self {
        let keys = values.len();
        FeatureColumn::with_repeats(
            values,
            vec![FieldStatus::Present; keys],
            vec![EventTime::EPOCH; keys],
            repeats,
        )
    }

    /// Rows in the column.
    pub fn rows(&self) -> usize {
        match &self.repeats {
            Some(r) => r.key_of_row.len(),
            None => self.values.len(),
        }
    }

    /// Whether the column has statuses and event times (a logged join key or request
    /// data column has none).
    pub fn has_statuses(&self) -> bool {
        !self.statuses.is_empty()
    }

    /// The status of row `row`.
    pub fn status(&self, row: usize) -> Option<FieldStatus> {
        self.statuses.get(self.index_of(row)?).copied()
    }

    /// The event time of row `row`.
    pub fn event_time(&self, row: usize) -> Option<EventTime> {
        self.event_timestamps.get(self.index_of(row)?).copied()
    }

    /// Where row `row`'s value, status and event time are: its key's when rows
    /// repeat keys.
    fn index_of(&self, row: usize) -> Option<usize> {
        match &self.repeats {
            Some(r) => r.key_of_row.get(row).map(|&k| k as usize),
            None => Some(row),
        }
    }

    /// The earlier row whose value row `row` repeats.
    pub fn repeated_row(&self, row: usize) -> Option<usize> {
        let repeats = self.repeats.as_deref()?;
        (row < repeats.key_of_row.len())
            .then(|| repeats.first_row_of(row))
            .filter(|&first| first < row)
    }

    /// How rows map to keys, when rows repeat keys.
    pub(crate) fn repeats(&self) -> Option<&Arc<RowKeys>> {
        self.repeats.as_ref()
    }

    /// The value of row `row`.
    pub fn value(&self, row: usize) -> Option<&Value> {
        self.values.get(self.index_of(row)?)
    }

    /// Every row's value, repeated rows copied from their first row.
    pub fn into_values(mut self) -> Vec<Value> {
        let Some(repeats) = self.repeats.take() else {
            return self.values;
        };
        let mut out: Vec<Value> = Vec::with_capacity(repeats.key_of_row.len());
        for (row, &key) in repeats.key_of_row.iter().enumerate() {
            let first = repeats.first_row_of(row);
            let value = if first < row {
                copy_value(&out[first])
            } else {
                std::mem::take(&mut self.values[key as usize])
            };
            out.push(value);
        }
        out
    }

    /// The column without statuses and event times (a logged join key).
    pub(crate) fn values_only(self) -> Self {
        FeatureColumn {
            values: self.values,
            repeats: self.repeats,
            ..FeatureColumn::default()
        }
    }
}

/// A view named in `feature_view_metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureViewMetadata {
    /// View name (or projection alias).
    pub name: String,
    /// Version number (0 when versioning is off).
    pub version: i32,
}

/// Feast's columnar answer.
#[derive(Debug, Clone)]
pub struct OnlineFeaturesResponse {
    /// Column names: the request's join keys (in request order), then features.
    pub feature_names: Arc<[String]>,
    /// Columns, parallel to `feature_names`.
    pub columns: Vec<FeatureColumn>,
    /// Present when the request asked for version metadata.
    pub feature_view_metadata: Option<Vec<FeatureViewMetadata>>,
    /// The request data the on-demand views were computed from, by field name, in the
    /// types the views declare (not sent to the client; logged with the response).
    pub request_data: Vec<(String, Vec<Value>)>,
}

impl OnlineFeaturesResponse {
    /// Entity rows answered.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, FeatureColumn::rows)
    }
}

/// A dataframe as Feast's write endpoints take it: columns by name, in request order,
/// each a list of JSON values (one per row).
pub(crate) type DataFrame = Vec<(String, Vec<serde_json::Value>)>;

/// Where `POST /push` writes (`to`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PushMode {
    /// The online store.
    #[default]
    Online,
    /// The views' offline (file) sources.
    Offline,
    /// Both.
    OnlineAndOffline,
}

impl PushMode {
    /// Whether the online store is written.
    pub(crate) fn online(self) -> bool {
        matches!(self, PushMode::Online | PushMode::OnlineAndOffline)
    }

    /// Whether the offline sources are written.
    pub(crate) fn offline(self) -> bool {
        matches!(self, PushMode::Offline | PushMode::OnlineAndOffline)
    }
}

/// `POST /push`: rows for every view a push source feeds.
#[derive(Debug, Clone)]
pub(crate) struct PushRequest {
    /// The push source.
    pub(crate) push_source_name: String,
    /// The rows.
    pub(crate) df: DataFrame,
    /// Where they go.
    pub(crate) to: PushMode,
    /// `false`: read the registry file again first.
    pub(crate) allow_registry_cache: bool,
}

/// `POST /write-to-online-store`: rows for one view.
#[derive(Debug, Clone)]
pub(crate) struct WriteRequest {
    /// The view (a feature view, stream view, label view, or an on-demand view written
    /// to the online store).
    pub(crate) feature_view_name: String,
    /// The rows.
    pub(crate) df: DataFrame,
    /// `false`: read the registry file again first.
    pub(crate) allow_registry_cache: bool,
    /// Compute an on-demand view's outputs from its inputs (else the rows carry them).
    pub(crate) transform_on_write: bool,
}
