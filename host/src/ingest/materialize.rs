//! Materialization: a view's rows read from its Parquet file source, those whose
//! event time is in `[start, end]` (both ends included, as Feast's file offline store
//! filters), the latest row per entity key kept (latest event time, then latest
//! created time), written to the online store in batches; then the interval is
//! recorded in the registry as Feast records it, so `feast` itself sees it.
//! `materialize-incremental` starts each view where its last interval ended (or at
//! `end - ttl`, or 52 weeks before `end` for a view without a ttl, as Feast does).
//!
//! One materialization of a view runs at a time: a second one that needs a view in
//! progress is refused (409).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value as Json;

use super::Ingest;
use super::convert::{feature_value, typed, write_value};
use super::offline::source_file;
use crate::auth::Caller;
use crate::error::Error;
use crate::online_store::{WriteBatch, WriteRow};
use crate::registry::{
    Action, FeatureView, RegistrySnapshot, ViewKind, record_materialization_in_file,
};
use crate::value::{EventTime, Val, Value, ValueType};

/// Rows per store write.
const WRITE_BATCH_ROWS: usize = 5_000;

/// Feast's start for a view never materialized and without a ttl.
const DEFAULT_LOOKBACK: Duration = Duration::from_secs(52 * 7 * 86_400);

/// What to materialize.
#[derive(Debug, Clone)]
pub(crate) struct MaterializeRequest {
    /// The window's start; `None` for `materialize-incremental`.
    pub(crate) start: Option<EventTime>,
    /// The window's end.
    pub(crate) end: EventTime,
    /// The views (all views written to the online store when `None`).
    pub(crate) views: Option<Vec<String>>,
}

/// What a materialization wrote.
#[derive(Debug, Clone, Default)]
pub(crate) struct Materialized {
    /// Per view: its name, the window and the rows written.
    pub(crate) views: Vec<(String, EventTime, EventTime, usize)>,
    /// Rows written over all views.
    pub(crate) rows: usize,
    /// How long it took.
    pub(crate) took: Duration,
}

/// Reports progress (the command line draws a bar with it).
pub(crate) trait Progress: Send + Sync {
    /// A view starts: `rows` rows to write.
    fn start_view(&self, view: &str, rows: usize);
    /// `rows` more rows were written.
    fn advance(&self, rows: usize);
}

/// No progress reporting (the HTTP endpoints).
impl Progress for () {
    fn start_view(&self, _: &str, _: usize) {}
    fn advance(&self, _: usize) {}
}

/// Views being materialized.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    running: Mutex<HashSet<String>>,
}

/// The views of one materialization, released when it ends.
#[derive(Debug)]
pub(crate) struct Claim {
    jobs: Arc<Jobs>,
    views: Vec<String>,
}

impl Jobs {
    /// Claims `views`, or names those already being materialized.
    fn claim(self: &Arc<Self>, views: &[String]) -> Result<Claim, Error> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| Error::WriteFailed("the materialization table was poisoned".into()))?;
        let busy: Vec<String> = views
            .iter()
            .filter(|v| running.contains(*v))
            .cloned()
            .collect();
        if !busy.is_empty() {
            return Err(Error::MaterializationRunning(busy));
        }
        running.extend(views.iter().cloned());
        Ok(Claim {
            jobs: self.clone(),
            views: views.to_vec(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut running) = self.jobs.running.lock() {
            for v in &self.views {
                running.remove(v);
            }
        }
    }
}

impl Ingest {
    /// The views a request materializes, checked, and claimed for it.
    pub(crate) fn plan_materialization(
        &self,
        req: &MaterializeRequest,
        caller: &Caller,
    ) -> Result<(Vec<Arc<FeatureView>>, Claim), Error> {
        let snapshot = self.registry.snapshot();
        let views = views_to_materialize(&snapshot, req.views.as_deref())?;
        super::authorize(caller, &snapshot.registry, &views, &[Action::WriteOnline])?;
        let names: Vec<String> = views.iter().map(|v| v.name.clone()).collect();
        let claim = self.jobs.claim(&names)?;
        Ok((views, claim))
    }

    /// Materializes the planned views (the claim is released at the end).
    pub(crate) async fn materialize(
        &self,
        req: &MaterializeRequest,
        views: Vec<Arc<FeatureView>>,
        claim: Claim,
        progress: &dyn Progress,
    ) -> Result<Materialized, Error> {
        let started = Instant::now();
        let mut done = Materialized::default();
        for view in views {
            let end = req.end;
            let start = match req.start {
                Some(s) => s,
                None => incremental_start(&view, end),
            };
            if start > end {
                return Err(Error::InvalidWrite(format!(
                    "the window of feature view {} starts ({}) after it ends ({})",
                    view.name,
                    start.to_rfc3339(),
                    end.to_rfc3339()
                )));
            }
            let path = source_file(&view, &self.repo_dir)?;
            let reader_view = view.clone();
            let rows =
                tokio::task::spawn_blocking(move || read_window(&reader_view, &path, start, end))
                    .await
                    .map_err(|e| Error::WriteFailed(format!("the source reader failed: {e}")))??;
            progress.start_view(&view.name, rows.len());
            let snapshot = self.registry.snapshot();
            let target = self.target(&snapshot, &view);
            let count = rows.len();
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<WriteRow> = rows.by_ref().take(WRITE_BATCH_ROWS).collect();
                let n = chunk.len();
                self.store
                    .write(vec![WriteBatch {
                        target: target.clone(),
                        rows: chunk,
                    }])
                    .await?;
                progress.advance(n);
            }
            self.record(&view, start, end).await?;
            done.views.push((view.name.clone(), start, end, count));
            done.rows += count;
        }
        // As Feast: the vectors of the services using these views, after all of them.
        let names: Vec<String> = done.views.iter().map(|v| v.0.clone()).collect();
        self.precompute_services_of(&names).await;
        drop(claim);
        done.took = started.elapsed();
        Ok(done)
    }

    /// Records a view's interval in the registry file, then reloads it.
    async fn record(
        &self,
        view: &FeatureView,
        start: EventTime,
        end: EventTime,
    ) -> Result<(), Error> {
        let registry = self.registry.clone();
        let name = view.name.clone();
        let project = registry.snapshot().registry.project.clone();
        let now = self.clock.event_time();
        tokio::task::spawn_blocking(move || {
            record_materialization_in_file(registry.path(), &project, &name, (start, end), now)
                .map_err(|e| {
                    Error::WriteFailed(format!(
                        "cannot record the materialization of {name} in the registry: {e}"
                    ))
                })?;
            // The registry served now includes the interval (for the next incremental run).
            registry
                .reload()
                .map(|_| ())
                .map_err(|e| Error::WriteFailed(format!("cannot read the registry back: {e}")))
        })
        .await
        .map_err(|e| Error::WriteFailed(format!("the registry writer failed: {e}")))?
    }
}

/// Where `materialize-incremental` starts a view.
fn incremental_start(view: &FeatureView, end: EventTime) -> EventTime {
    if let Some(t) = view.materialized_until {
        return t;
    }
    let back = view.ttl.unwrap_or(DEFAULT_LOOKBACK);
    EventTime {
        seconds: end.seconds - i64::try_from(back.as_secs()).unwrap_or(i64::MAX / 2),
        nanos: end.nanos,
    }
}

/// The views named (all views written to the online store by default).
fn views_to_materialize(
    snapshot: &RegistrySnapshot,
    names: Option<&[String]>,
) -> Result<Vec<Arc<FeatureView>>, Error> {
    let registry = &snapshot.registry;
    let materializable = |v: &FeatureView| {
        matches!(v.kind, ViewKind::Batch | ViewKind::Stream) && v.online && !v.disabled
    };
    let Some(names) = names else {
        let mut all: Vec<Arc<FeatureView>> = registry
            .views
            .values()
            .filter(|v| materializable(v))
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(all);
    };
    names
        .iter()
        .map(|name| {
            let view = registry
                .views
                .get(name)
                .ok_or_else(|| Error::FeatureViewNotFound {
                    name: name.clone(),
                    project: registry.project.clone(),
                })?;
            match view.kind {
                ViewKind::WrittenOnDemand => Err(Error::WriteUnsupported(format!(
                    "on-demand feature view {name} is materialized by computing it over historical features, which this server does not do"
                ))),
                ViewKind::Label => Err(Error::InvalidWrite(format!(
                    "{name} is a label view: label views are not materialized"
                ))),
                _ if view.disabled => Err(Error::InvalidWrite(format!("feature view {name} is disabled"))),
                _ if !view.online => Err(Error::InvalidWrite(format!(
                    "feature view {name} is not online (online=False): it is not materialized"
                ))),
                _ => Ok(view.clone()),
            }
        })
        .collect()
}

/// A column of the file, found by its feature (or join key) name through the
/// source's field mapping.
fn column_index(view: &FeatureView, schema: &arrow_schema::Schema, name: &str) -> Option<usize> {
    let mapping = view
        .batch_source
        .as_ref()
        .map(|s| s.field_mapping.as_slice())
        .unwrap_or_default();
    schema
        .fields()
        .iter()
        .position(|f| super::rows::renamed(mapping, f.name()) == name)
}

/// The latest row per entity key with an event time in `[start, end]`.
fn read_window(
    view: &FeatureView,
    path: &Path,
    start: EventTime,
    end: EventTime,
) -> Result<Vec<WriteRow>, Error> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::WriteFailed(format!(
            "cannot read {} (the source of feature view {}): {e}",
            path.display(),
            view.name
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| failed(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| failed(&e))?
        .build()
        .map_err(|e| failed(&e))?;
    let source = view.batch_source.as_ref().ok_or_else(|| {
        Error::WriteUnsupported(format!("feature view {} has no batch source", view.name))
    })?;
    let mut latest: HashMap<Vec<u8>, WriteRow> = HashMap::new();
    let mut order: Vec<Vec<u8>> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| failed(&e))?;
        let schema = batch.schema();
        let missing = |what: &str, name: &str| {
            Error::InvalidWrite(format!(
                "{} has no column {name}, the {what} of feature view {}",
                path.display(),
                view.name
            ))
        };
        let event_col = column_index(view, &schema, &source.timestamp_field)
            .ok_or_else(|| missing("event timestamp", &source.timestamp_field))?;
        let created_col = source
            .created_timestamp_column
            .as_deref()
            .and_then(|c| column_index(view, &schema, c));
        let key_cols: Vec<usize> = view
            .join_keys
            .iter()
            .map(|k| {
                column_index(view, &schema, &k.name).ok_or_else(|| missing("join key", &k.name))
            })
            .collect::<Result<_, _>>()?;
        let feature_cols: Vec<usize> = view
            .features
            .iter()
            .map(|f| {
                column_index(view, &schema, &f.name).ok_or_else(|| missing("feature", &f.name))
            })
            .collect::<Result<_, _>>()?;
        let times = |col: usize| -> Result<Vec<Option<EventTime>>, Error> {
            event_times(batch.column(col).as_ref()).ok_or_else(|| {
                Error::WriteUnsupported(format!(
                    "column {} of {} is {}, not a timestamp",
                    schema.field(col).name(),
                    path.display(),
                    batch.column(col).data_type()
                ))
            })
        };
        let events = times(event_col)?;
        let created = created_col.map(times).transpose()?;
        let at = |name: &str, row: usize, e: String| {
            Error::InvalidWrite(format!("{} row {row}, column {name}: {e}", path.display()))
        };
        for (row, event) in events.iter().enumerate() {
            let Some(event) = *event else { continue };
            if event < start || event > end {
                continue;
            }
            let created = created.as_ref().and_then(|c| c[row]);
            let mut keys = Vec::with_capacity(key_cols.len());
            for (k, &col) in view.join_keys.iter().zip(&key_cols) {
                let cell = cell_json(batch.column(col).as_ref(), row);
                keys.push(typed(&cell, k.value_type).map_err(|e| at(&k.name, row, e))?);
            }
            let dummy = [Value {
                val: Some(Val::StringVal(String::new())),
            }];
            let parts: Vec<&Value> = if view.is_entityless() {
                dummy.iter().collect()
            } else {
                keys.iter().collect()
            };
            let mut entity_key = Vec::with_capacity(64);
            view.key_layout
                .serialize(&parts, &mut entity_key)
                .map_err(|e| at("join keys", row, e.to_string()))?;
            if let Some(kept) = latest.get(&entity_key)
                && (kept.event_time, kept.created) >= (event, created)
            {
                continue;
            }
            let values = view
                .features
                .iter()
                .zip(&feature_cols)
                .map(|(f, &col)| {
                    let column = batch.column(col);
                    if let Some(v) = null_timestamp(column.as_ref(), row, f.value_type) {
                        return Ok(write_value(&v));
                    }
                    if let Some(v) = list_cell(column.as_ref(), row, f.value_type) {
                        return v.map(|v| write_value(&v)).map_err(|e| at(&f.name, row, e));
                    }
                    feature_value(&cell_json(column.as_ref(), row), f.value_type)
                        .map_err(|e| at(&f.name, row, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !latest.contains_key(&entity_key) {
                order.push(entity_key.clone());
            }
            latest.insert(
                entity_key.clone(),
                WriteRow {
                    entity_key,
                    values,
                    event_time: event,
                    created,
                },
            );
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| latest.remove(&k))
        .collect())
}

/// A timestamp column's values (naive timestamps are UTC), to the microsecond.
fn event_times(array: &dyn Array) -> Option<Vec<Option<EventTime>>> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let raw: Vec<Option<i64>> = match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().iter().collect(),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect(),
        TimeUnit::Microsecond => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .collect(),
    };
    Some(
        raw.into_iter()
            .map(|v| {
                v.map(|v| {
                    let nanos = v.rem_euclid(per_second) * (1_000_000_000 / per_second);
                    EventTime {
                        seconds: v.div_euclid(per_second),
                        nanos: (nanos - nanos % 1000) as i32,
                    }
                })
            })
            .collect(),
    )
}

/// A null cell of a timestamp column read as a UNIX_TIMESTAMP feature: `feast
/// materialize` converts it through pandas as NaT and stores NaT's int64 (i64::MIN),
/// not an empty value; so does this server, so that both write the same bytes.
fn null_timestamp(array: &dyn Array, row: usize, value_type: i32) -> Option<Value> {
    (value_type == ValueType::UnixTimestamp as i32
        && array.is_null(row)
        && matches!(array.data_type(), DataType::Timestamp(..)))
    .then_some(Value {
        val: Some(Val::UnixTimestampVal(i64::MIN)),
    })
}

/// A cell of a list column read as a list feature of the same item type, as `feast
/// materialize` stores it after pandas: a null item of a BOOL, STRING, BYTES, FLOAT or
/// DOUBLE list becomes false, "", b"" or NaN, of a timestamp list NaT's int64; an int
/// list holding a null item cannot be written (pandas made it a float list, which
/// Feast refuses). `None`: not such a cell (the JSON conversion takes it).
fn list_cell(array: &dyn Array, row: usize, value_type: i32) -> Option<Result<Value, String>> {
    use crate::proto::feast::types::{
        BoolList, BytesList, DoubleList, FloatList, Int32List, Int64List, StringList,
    };
    let DataType::List(item) = array.data_type() else {
        return None;
    };
    let vt = ValueType::try_from(value_type).ok()?;
    let matching = matches!(
        (vt, item.data_type()),
        (ValueType::Int32List, DataType::Int32)
            | (ValueType::Int64List, DataType::Int64)
            | (ValueType::FloatList, DataType::Float32)
            | (ValueType::DoubleList, DataType::Float64)
            | (ValueType::BoolList, DataType::Boolean)
            | (ValueType::StringList, DataType::Utf8)
            | (ValueType::BytesList, DataType::Binary)
            | (ValueType::UnixTimestampList, DataType::Timestamp(..))
    );
    if !matching {
        return None;
    }
    if array.is_null(row) {
        return Some(Ok(Value::default()));
    }
    let items = array.as_list::<i32>().value(row);
    let items = items.as_ref();
    if matches!(vt, ValueType::Int32List | ValueType::Int64List) && items.null_count() > 0 {
        return Some(Err(format!(
            "an {} with a null item cannot be written (feast materialize fails on it too)",
            vt.as_str_name()
        )));
    }
    let val = match vt {
        ValueType::Int32List => Val::Int32ListVal(Int32List {
            val: items.as_primitive::<Int32Type>().values().to_vec(),
        }),
        ValueType::Int64List => Val::Int64ListVal(Int64List {
            val: items.as_primitive::<Int64Type>().values().to_vec(),
        }),
        ValueType::FloatList => Val::FloatListVal(FloatList {
            val: items
                .as_primitive::<Float32Type>()
                .iter()
                .map(|f| f.unwrap_or(f32::NAN))
                .collect(),
        }),
        ValueType::DoubleList => Val::DoubleListVal(DoubleList {
            val: items
                .as_primitive::<Float64Type>()
                .iter()
                .map(|f| f.unwrap_or(f64::NAN))
                .collect(),
        }),
        ValueType::BoolList => Val::BoolListVal(BoolList {
            val: items
                .as_boolean()
                .iter()
                .map(|b| b.unwrap_or(false))
                .collect(),
        }),
        ValueType::StringList => Val::StringListVal(StringList {
            val: items
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect(),
        }),
        ValueType::BytesList => Val::BytesListVal(BytesList {
            val: items
                .as_binary::<i32>()
                .iter()
                .map(|b| b.unwrap_or_default().to_vec())
                .collect(),
        }),
        ValueType::UnixTimestampList => Val::UnixTimestampListVal(Int64List {
            val: event_times(items)?
                .into_iter()
                .map(|t| t.map_or(i64::MIN, |t| t.seconds))
                .collect(),
        }),
        _ => return None,
    };
    Some(Ok(Value { val: Some(val) }))
}

/// One cell of a Parquet column as the JSON value a dataframe would carry for it
/// (structs as objects, lists as arrays, binary as base64, timestamps as ISO text),
/// so file rows and pushed rows go through the same conversion.
fn cell_json(array: &dyn Array, row: usize) -> Json {
    if array.is_null(row) {
        return Json::Null;
    }
    macro_rules! num {
        ($t:ty) => {
            Json::from(array.as_primitive::<$t>().value(row))
        };
    }
    match array.data_type() {
        DataType::Boolean => Json::Bool(array.as_boolean().value(row)),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => {
            // The shortest text of the float32 reads back as the same float32.
            let f = array.as_primitive::<Float32Type>().value(row);
            f.to_string().parse::<f64>().map_or(Json::Null, Json::from)
        }
        DataType::Float64 => Json::from(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Json::from(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Json::from(array.as_string::<i64>().value(row)),
        DataType::Binary => Json::from(base64_of(array.as_binary::<i32>().value(row))),
        DataType::LargeBinary => Json::from(base64_of(array.as_binary::<i64>().value(row))),
        DataType::Timestamp(..) => event_times(&array.slice(row, 1))
            .and_then(|t| t.first().copied().flatten())
            .map_or(Json::Null, |t| Json::from(t.to_rfc3339())),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Json::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), cell_json(c.as_ref(), row)))
                    .collect(),
            )
        }
        DataType::List(_) => {
            let item = array.as_list::<i32>().value(row);
            Json::Array(
                (0..item.len())
                    .map(|i| cell_json(item.as_ref(), i))
                    .collect(),
            )
        }
        DataType::LargeList(_) => {
            let item = array.as_list::<i64>().value(row);
            Json::Array(
                (0..item.len())
                    .map(|i| cell_json(item.as_ref(), i))
                    .collect(),
            )
        }
        DataType::Map(..) => {
            let m = array.as_map();
            let entries = m.value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            Json::Object(
                (0..entries.len())
                    .map(|i| {
                        let k = match cell_json(keys.as_ref(), i) {
                            Json::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, cell_json(values.as_ref(), i))
                    })
                    .collect(),
            )
        }
        other => Json::from(format!("<{other}>")),
    }
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_windows_start_where_feast_starts_them() {
        let registry = crate::registry::demo_registry();
        let view = registry.views["driver_hourly_stats"].clone();
        let end = EventTime::from_secs(1_795_392_000);
        // `feast materialize` recorded the demo's window: it ended at 2026-11-23.
        assert_eq!(
            incremental_start(&view, end),
            EventTime::from_secs(1_795_392_000)
        );
        // Never materialized: end - ttl (1 day).
        let mut fresh = (*view).clone();
        fresh.materialized_until = None;
        assert_eq!(
            incremental_start(&fresh, end),
            EventTime::from_secs(1_795_392_000 - 86_400)
        );
        let mut no_ttl = fresh.clone();
        no_ttl.ttl = None;
        assert_eq!(
            incremental_start(&no_ttl, end).seconds,
            1_795_392_000 - 52 * 7 * 86_400
        );
        no_ttl.materialized_until = Some(EventTime::from_secs(5));
        assert_eq!(incremental_start(&no_ttl, end), EventTime::from_secs(5));
    }

    /// What `feast materialize` stored for the `python_odfv` fixture's user 5 (null
    /// items) and users 3 and 4 (empty and null lists), read from its SQLite file.
    #[test]
    fn list_cells_are_written_as_feast_materialize_writes_them() {
        use crate::proto::feast::types::{BoolList, DoubleList, Int64List, StringList};
        use arrow_array::builder::{
            BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
            TimestampMicrosecondBuilder,
        };
        let mut b = ListBuilder::new(BooleanBuilder::new());
        b.values().extend([None, Some(true)]);
        b.append(true);
        b.append(true);
        b.append_null();
        let bools = b.finish();
        let cell = |row| list_cell(&bools, row, ValueType::BoolList as i32);
        let vals = |v: Vec<bool>| Value {
            val: Some(Val::BoolListVal(BoolList { val: v })),
        };
        assert_eq!(cell(0), Some(Ok(vals(vec![false, true]))));
        assert_eq!(cell(1), Some(Ok(vals(vec![]))));
        assert_eq!(cell(2), Some(Ok(Value::default())));

        let mut d = ListBuilder::new(Float64Builder::new());
        d.values().extend([Some(1.0), None]);
        d.append(true);
        let got = list_cell(&d.finish(), 0, ValueType::DoubleList as i32);
        let Some(Ok(Value {
            val: Some(Val::DoubleListVal(DoubleList { val })),
        })) = got
        else {
            panic!("{got:?}")
        };
        assert_eq!(val[0], 1.0);
        assert!(val[1].is_nan());

        let mut t = ListBuilder::new(TimestampMicrosecondBuilder::new());
        t.values().extend([None, Some(1_795_373_130_500_000)]);
        t.append(true);
        assert_eq!(
            list_cell(&t.finish(), 0, ValueType::UnixTimestampList as i32),
            Some(Ok(Value {
                val: Some(Val::UnixTimestampListVal(Int64List {
                    val: vec![i64::MIN, 1_795_373_130]
                }))
            }))
        );

        let mut s = ListBuilder::new(StringBuilder::new());
        s.values().extend([Some("x"), None]);
        s.append(true);
        assert_eq!(
            list_cell(&s.finish(), 0, ValueType::StringList as i32),
            Some(Ok(Value {
                val: Some(Val::StringListVal(StringList {
                    val: vec!["x".into(), String::new()]
                }))
            }))
        );

        let mut i = ListBuilder::new(Int64Builder::new());
        i.values().extend([Some(1), None]);
        i.append(true);
        let ints = i.finish();
        let err = list_cell(&ints, 0, ValueType::Int64List as i32);
        assert!(
            matches!(&err, Some(Err(e)) if e.contains("null item")),
            "{err:?}"
        );
        // Another declared type: left to the JSON conversion.
        assert_eq!(list_cell(&ints, 0, ValueType::DoubleList as i32), None);
    }

    #[test]
    fn only_one_materialization_of_a_view_runs() {
        let jobs = Arc::new(Jobs::default());
        let a = jobs.claim(&["v1".into(), "v2".into()]).expect("free");
        let err = jobs
            .claim(&["v2".into(), "v3".into()])
            .expect_err("v2 is running");
        assert!(matches!(&err, Error::MaterializationRunning(v) if v == &["v2".to_string()]));
        jobs.claim(&["v3".into()]).expect("v3 is free");
        drop(a);
        jobs.claim(&["v2".into()]).expect("released");
    }
}
