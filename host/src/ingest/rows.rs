//! A written dataframe as one view's rows: the view's join keys, features, event time
//! and created time found among the columns (through the source's field mapping, as
//! Feast renames source columns to feature names), every cell converted, and one row
//! per entity key kept: the latest (by event time, then created time, then position).

use std::collections::HashMap;

use serde_json::Value as Json;

use prost::Message;

use super::convert::{feature_value, time_value, typed, value_text};
use crate::api::DataFrame;
use crate::error::Error;
use crate::online_store::{WriteRow, WriteValue};
use crate::registry::{DUMMY_ENTITY_ID, FeatureView};
use crate::value::{EventTime, Val, Value};

/// Column names Feast's remote online store client always sends its times as,
/// whatever the view's source calls them.
const REMOTE_EVENT_COLUMN: &str = "event_timestamp";
const REMOTE_CREATED_COLUMN: &str = "created";

/// A dataframe whose columns all have the same number of rows.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    columns: &'a DataFrame,
    rows: usize,
}

impl<'a> Frame<'a> {
    /// Checks that every column has the same length.
    pub(crate) fn new(columns: &'a DataFrame) -> Result<Self, Error> {
        let rows = columns.first().map_or(0, |(_, c)| c.len());
        if let Some((name, col)) = columns.iter().find(|(_, c)| c.len() != rows) {
            return Err(Error::InvalidWrite(format!(
                "all columns of `df` must have the same length: `{}` has {rows} values but `{name}` has {}",
                columns[0].0,
                col.len()
            )));
        }
        Ok(Frame { columns, rows })
    }

    /// Rows in the frame.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Column names, in request order.
    pub(crate) fn names(&self) -> Vec<&'a str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The cell of column `name` in `row`.
    pub(crate) fn cell(&self, name: &str, row: usize) -> Option<&'a Json> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, values)| values.get(row))
    }

    /// The column that holds `name` for `view`: a column renamed to it by the view's
    /// source field mapping, or a column of that name.
    pub(crate) fn column(&self, view: &FeatureView, name: &str) -> Option<&'a [Json]> {
        let mapping = view
            .batch_source
            .as_ref()
            .map(|s| s.field_mapping.as_slice())
            .unwrap_or_default();
        self.columns
            .iter()
            .find(|(col, _)| renamed(mapping, col) == name)
            .map(|(_, values)| values.as_slice())
    }
}

/// A source column's name as a feature (or join key) name: renamed by the source's
/// field mapping, or as it is.
pub(crate) fn renamed<'a>(mapping: &'a [(String, String)], column: &'a str) -> &'a str {
    mapping
        .iter()
        .find(|(from, _)| from == column)
        .map_or(column, |(_, to)| to.as_str())
}

/// Where a feature's values come from.
enum FeatureCells<'a> {
    /// A column of the dataframe.
    Column(&'a [Json]),
    /// Values computed for every row (an on-demand view's outputs).
    Computed(&'a [Value]),
}

/// The rows of `view` in `frame`; `now` is the event and created time of views
/// without a source (on-demand views written to the store), as Feast writes them.
/// A feature named in `computed` takes those values instead of a column.
pub(crate) fn view_rows(
    view: &FeatureView,
    frame: &Frame<'_>,
    now: EventTime,
    computed: &[(String, Vec<Value>)],
) -> Result<Vec<WriteRow>, Error> {
    if frame.rows() == 0 {
        return Ok(Vec::new());
    }
    let missing = |what: &str, name: &str| {
        Error::InvalidWrite(format!(
            "`df` has no column `{name}`, the {what} of feature view {}",
            view.name
        ))
    };
    let keys: Vec<&[Json]> = view
        .join_keys
        .iter()
        .map(|k| {
            frame
                .column(view, &k.name)
                .ok_or_else(|| missing("join key", &k.name))
        })
        .collect::<Result<_, _>>()?;
    let features: Vec<FeatureCells<'_>> = view
        .features
        .iter()
        .map(|f| match computed.iter().find(|(n, _)| *n == f.name) {
            Some((_, values)) => Ok(FeatureCells::Computed(values)),
            None => frame
                .column(view, &f.name)
                .map(FeatureCells::Column)
                .ok_or_else(|| missing("feature", &f.name)),
        })
        .collect::<Result<_, _>>()?;
    // As Feast: a dataframe whose features are all null writes nothing.
    let all_null = features.iter().all(|c| match c {
        FeatureCells::Column(c) => c.iter().all(Json::is_null),
        FeatureCells::Computed(v) => v.iter().all(|v| v.val.is_none()),
    });
    if all_null {
        tracing::warn!(view = %view.name, "every feature value of the dataframe is null; nothing is written");
        return Ok(Vec::new());
    }
    let (event, created) = match &view.batch_source {
        Some(source) => {
            let event = frame
                .column(view, &source.timestamp_field)
                .or_else(|| frame.column(view, REMOTE_EVENT_COLUMN))
                .ok_or_else(|| missing("event timestamp", &source.timestamp_field))?;
            let created = source.created_timestamp_column.as_deref().and_then(|c| {
                frame
                    .column(view, c)
                    .or_else(|| frame.column(view, REMOTE_CREATED_COLUMN))
            });
            (Some(event), created)
        }
        None => (None, None),
    };
    let at = |column: &str, row: usize, e: String| {
        Error::InvalidWrite(format!("`df.{column}[{row}]`: {e}"))
    };
    let dummy = [Value {
        val: Some(Val::StringVal(String::new())),
    }];
    let mut out: Vec<WriteRow> = Vec::with_capacity(frame.rows());
    let mut index: HashMap<Vec<u8>, usize> = HashMap::with_capacity(frame.rows());
    let mut key_values: Vec<Value> = Vec::with_capacity(keys.len());
    for row in 0..frame.rows() {
        key_values.clear();
        for (k, column) in view.join_keys.iter().zip(&keys) {
            key_values.push(typed(&column[row], k.value_type).map_err(|e| at(&k.name, row, e))?);
        }
        let parts: Vec<&Value> = if view.is_entityless() {
            dummy.iter().collect()
        } else {
            key_values.iter().collect()
        };
        let mut entity_key = Vec::with_capacity(64);
        view.key_layout
            .serialize(&parts, &mut entity_key)
            .map_err(|e| {
                let name = view
                    .join_keys
                    .first()
                    .map_or(DUMMY_ENTITY_ID, |k| k.name.as_str());
                at(name, row, e.to_string())
            })?;
        let values = view
            .features
            .iter()
            .zip(&features)
            .map(|(f, cells)| match cells {
                FeatureCells::Column(column) => {
                    feature_value(&column[row], f.value_type).map_err(|e| at(&f.name, row, e))
                }
                FeatureCells::Computed(values) => Ok(WriteValue {
                    bytes: values[row].encode_to_vec(),
                    text: value_text(&values[row]),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (event_time, created) = match (event, &view.batch_source) {
            (Some(column), Some(source)) => {
                let name = &source.timestamp_field;
                let event_time = time_value(&column[row])
                    .map_err(|e| at(name, row, e))?
                    .ok_or_else(|| at(name, row, "the event time is null".into()))?;
                let created = match created {
                    Some(c) => time_value(&c[row]).map_err(|e| {
                        at(
                            source
                                .created_timestamp_column
                                .as_deref()
                                .unwrap_or_default(),
                            row,
                            e,
                        )
                    })?,
                    None => None,
                };
                (event_time, created)
            }
            _ => (now, Some(now)),
        };
        let candidate = WriteRow {
            entity_key,
            values,
            event_time,
            created,
        };
        // The latest row of an entity wins (a later row wins a tie).
        match index.get(&candidate.entity_key) {
            Some(&i) => {
                let kept = &out[i];
                if (candidate.event_time, candidate.created) >= (kept.event_time, kept.created) {
                    out[i] = candidate;
                }
            }
            None => {
                index.insert(candidate.entity_key.clone(), out.len());
                out.push(candidate);
            }
        }
    }
    Ok(out)
}
