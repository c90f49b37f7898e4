//! The `get-online-features` request and response as the engine, the feature logger
//! and both transports share them, whatever the wire format.

use std::sync::Arc;

use crate::value::{EventTime, FieldStatus, Value};

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

/// One output column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureColumn {
    /// One value per entity row.
    pub values: Vec<Value>,
    /// One status per entity row.
    pub statuses: Vec<FieldStatus>,
    /// One event time per entity row.
    pub event_timestamps: Vec<EventTime>,
    /// When rows repeat an entity key: for each row, the first row with the same key
    /// (whose cell this row repeats), so encoders can reuse what they wrote for it.
    pub first_row_of: Option<Arc<[u32]>>,
}

impl FeatureColumn {
    /// A column of values the request supplied: `PRESENT`, with the epoch as event time.
    pub fn supplied(values: Vec<Value>) -> Self {
        let rows = values.len();
        FeatureColumn {
            values,
            statuses: vec![FieldStatus::Present; rows],
            event_timestamps: vec![EventTime::EPOCH; rows],
            first_row_of: None,
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
        self.columns.first().map_or(0, |c| c.values.len())
    }
}
