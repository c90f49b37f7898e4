//! The transport-agnostic `get_online_features` engine: resolve the request to a
//! cached [`Plan`], turn entity columns into each view's entity keys (deduplicated),
//! read every view from the online store in one batched call, and assemble Feast's
//! columnar response with statuses and event timestamps.

mod plan;

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use plan::{
    OdfvInput, OdfvStep, OutputSource, Plan, PlanCache, PlanJoinKey, RequestField, Selection,
    ViewRead,
};

use crate::clock::Clock;
use crate::entity_key::coerce;
use crate::error::Error;
use crate::feature_logging::FeatureLogger;
use crate::metrics::Metrics;
use crate::online_store::{Cell, OnlineStore, ReadBatch, ViewRows};
use crate::plugin::{PluginRuntime, batch_of, call_odfv, to_array};
use crate::registry::RegistryHandle;
use crate::value::{EventTime, FieldStatus, Value, ValueType, is_null};

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
    /// Column names: join keys first, then features.
    pub feature_names: Arc<[String]>,
    /// Columns, parallel to `feature_names`.
    pub columns: Vec<FeatureColumn>,
    /// Present when the request asked for version metadata.
    pub feature_view_metadata: Option<Vec<FeatureViewMetadata>>,
}

/// The feature server's core: registry, online store, clock and feature logger.
#[derive(Debug, Clone)]
pub struct FeatureStore {
    registry: Arc<RegistryHandle>,
    store: OnlineStore,
    clock: Clock,
    metrics: Option<Arc<Metrics>>,
    max_entities: usize,
    plugins: Option<Arc<PluginRuntime>>,
    logger: Option<Arc<FeatureLogger>>,
}

impl FeatureStore {
    /// Wires a registry and a store.
    pub fn new(registry: Arc<RegistryHandle>, store: OnlineStore, clock: Clock) -> Self {
        FeatureStore {
            registry,
            store,
            clock,
            metrics: None,
            max_entities: usize::MAX,
            plugins: None,
            logger: None,
        }
    }

    /// Logs the requests served through logged feature services with `logger`.
    pub fn with_logger(mut self, logger: Arc<FeatureLogger>) -> Self {
        self.logger = Some(logger);
        self
    }

    /// The feature logger, when feature logging is on.
    pub fn logger(&self) -> Option<&Arc<FeatureLogger>> {
        self.logger.as_ref()
    }

    /// Computes on-demand feature views with the plugins of `runtime`.
    pub fn with_plugins(mut self, runtime: Arc<PluginRuntime>) -> Self {
        self.plugins = Some(runtime);
        self
    }

    /// The plugin runtime, when plugins are configured.
    pub fn plugins(&self) -> Option<&Arc<PluginRuntime>> {
        self.plugins.as_ref()
    }

    /// Records store reads in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Refuses requests with more than `max` entity rows.
    pub fn with_max_entities(mut self, max: usize) -> Self {
        self.max_entities = max;
        self
    }

    /// The live registry.
    pub fn registry(&self) -> &Arc<RegistryHandle> {
        &self.registry
    }

    /// The online store.
    pub fn store(&self) -> &OnlineStore {
        &self.store
    }

    /// Answers a request: Feast's `get_online_features`.
    pub async fn get_online_features(
        &self,
        req: &OnlineFeaturesRequest,
    ) -> Result<OnlineFeaturesResponse, Error> {
        let rows = row_count(req)?;
        if rows > self.max_entities {
            return Err(Error::TooManyEntities {
                rows,
                max: self.max_entities,
            });
        }
        let snapshot = self.registry.snapshot();
        let selection = match &req.feature_service {
            Some(s) => Selection::Service(s),
            None => Selection::Refs(&req.features),
        };
        let plan = snapshot
            .plans
            .get(&snapshot.registry, selection, req.full_feature_names)?;
        let inputs = EntityInputs::resolve(&plan, req)?;
        let request_data = request_data(&plan, req)?;

        let mut batches = Vec::with_capacity(plan.reads.len());
        let mut row_to_key = Vec::with_capacity(plan.reads.len());
        for read in &plan.reads {
            let (keys, mapping) = inputs.keys_for(read, rows)?;
            batches.push(ReadBatch {
                target: read.target.clone(),
                keys,
            });
            row_to_key.push(mapping);
        }
        let mut results = if batches.is_empty() {
            Vec::new()
        } else {
            self.read_store(batches).await?
        };

        // ODFVs read the stored values before the output columns take them.
        let mut odfv_outputs = self
            .run_odfvs(&plan, &results, &row_to_key, &request_data, rows)
            .await?;

        let now = self.clock.now_unix_secs();
        let repeats: Vec<_> = row_to_key.iter().map(|r| r.repeats(rows)).collect();
        let mut columns = Vec::with_capacity(plan.names.len());
        for (i, jk) in plan.join_keys.iter().enumerate() {
            columns.push(inputs.join_key_column(i, jk, rows)?);
        }
        for output in &plan.outputs {
            columns.push(match *output {
                OutputSource::Feature { read, slot } => feature_column(
                    &mut results[read],
                    &row_to_key[read],
                    slot,
                    plan.reads[read].view.ttl,
                    now,
                    repeats[read].clone(),
                ),
                // ODFV outputs are PRESENT (even when null) with the epoch as event
                // time, as Feast reports them.
                OutputSource::Odfv { step, feature } => FeatureColumn {
                    values: std::mem::take(&mut odfv_outputs[step][feature]),
                    statuses: vec![FieldStatus::Present; rows],
                    event_timestamps: vec![EventTime::EPOCH; rows],
                    first_row_of: None,
                },
            });
        }
        let response = OnlineFeaturesResponse {
            feature_names: plan.names.clone(),
            columns,
            feature_view_metadata: req
                .include_feature_view_version_metadata
                .then(|| plan.view_metadata.clone()),
        };
        Ok(response)
    }

    /// Whether a response to `req` may have to be logged (see [`Self::log_served`]).
    pub fn may_log(&self, req: &OnlineFeaturesRequest) -> bool {
        self.logger.is_some() && FeatureLogger::may_log(req)
    }

    /// Logs a served response when its feature service is logged. Transports call it
    /// once the response is encoded, so its columns move into the log uncopied.
    pub async fn log_served(&self, req: &OnlineFeaturesRequest, response: OnlineFeaturesResponse) {
        if let Some(logger) = &self.logger {
            logger.log(&self.registry.snapshot(), req, response).await;
        }
    }
}

impl FeatureStore {
    /// Computes every ODFV of the plan: one plugin call per ODFV with all rows.
    async fn run_odfvs(
        &self,
        plan: &Plan,
        results: &[ViewRows],
        row_keys: &[RowKeys],
        request_data: &[Vec<Value>],
        rows: usize,
    ) -> Result<Vec<Vec<Vec<Value>>>, Error> {
        let mut outputs = Vec::with_capacity(plan.odfvs.len());
        for step in &plan.odfvs {
            let name = &step.odfv.name;
            let runtime = self.plugins.as_ref().ok_or_else(|| {
                Error::TransformationUnavailable(format!(
                    "on-demand feature view {name} is computed by a Wasm plugin, and no plugin directory is configured: set wasm_plugins.directory in feature_store.yaml or start with --plugins DIR"
                ))
            })?;
            let plugin = runtime.for_odfv(name).ok_or_else(|| {
                Error::TransformationUnavailable(format!(
                    "no plugin in {} implements on-demand feature view {name}: add a .wasm component whose describe() declares it",
                    runtime
                        .config()
                        .directory
                        .as_deref()
                        .map_or_else(|| "the plugin directory".into(), |d| d.display().to_string())
                ))
            })?;
            let plugin_error = |failure| Error::Plugin {
                plugin: plugin.info.name.clone(),
                odfv: name.clone(),
                failure,
            };
            let spec = plugin
                .info
                .odfvs
                .iter()
                .find(|s| s.name == *name)
                .ok_or_else(|| {
                    plugin_error(crate::plugin::PluginFailure::Input(
                        "describe does not declare it".into(),
                    ))
                })?;
            let mut columns = Vec::with_capacity(spec.inputs.len());
            for input in &spec.inputs {
                let source = step
                    .inputs
                    .iter()
                    .find(|(n, _)| *n == input.name)
                    .map(|(_, s)| *s)
                    .ok_or_else(|| {
                        plugin_error(crate::plugin::PluginFailure::Input(format!(
                            "it declares input {}, which the ODFV's sources do not have",
                            input.name
                        )))
                    })?;
                let array = match source {
                    OdfvInput::Feature { read, slot } => to_array(
                        row_keys[read]
                            .key_of_row
                            .iter()
                            .map(|&k| results[read].get(k as usize, slot).map(|c| &c.value)),
                        input.column_type,
                    ),
                    OdfvInput::Request { field } => {
                        to_array(request_data[field].iter().map(Some), input.column_type)
                    }
                }
                .map_err(|e| {
                    plugin_error(crate::plugin::PluginFailure::Input(format!(
                        "input {}: {e}",
                        input.name
                    )))
                })?;
                columns.push((input.name.clone(), array));
            }
            let batch = batch_of(columns, rows)
                .map_err(|e| plugin_error(crate::plugin::PluginFailure::Input(e)))?;
            let started = std::time::Instant::now();
            let result = call_odfv(&plugin, spec, &step.odfv, &batch, runtime.config()).await;
            if let Some(m) = &self.metrics {
                m.observe_plugin_call(
                    &plugin.info.name,
                    started.elapsed(),
                    result.as_ref().err().map(|e| e.kind()),
                );
            }
            outputs.push(result.map_err(plugin_error)?);
        }
        Ok(outputs)
    }

    async fn read_store(&self, batches: Vec<ReadBatch>) -> Result<Vec<ViewRows>, Error> {
        let started = std::time::Instant::now();
        let result = self.store.read(batches).await;
        if let Some(m) = &self.metrics {
            let store = self.store.type_name();
            m.observe_store_read(store, started.elapsed());
            if let Err(e) = &result {
                m.count_store_error(store, e.kind_name());
            }
        }
        Ok(result?)
    }
}

/// The request data the plan's ODFVs need, coerced to the declared types, parallel
/// to `plan.request_fields`; all missing fields are named at once.
fn request_data(plan: &Plan, req: &OnlineFeaturesRequest) -> Result<Vec<Vec<Value>>, Error> {
    let mut missing = Vec::new();
    let mut out = Vec::with_capacity(plan.request_fields.len());
    for field in &plan.request_fields {
        let found = req
            .entities
            .iter()
            .chain(&req.request_context)
            .find(|(n, _)| *n == field.name);
        match found {
            None => missing.push(field.name.clone()),
            Some((_, values)) => {
                let target = ValueType::try_from(field.value_type).unwrap_or(ValueType::Invalid);
                out.push(
                    values
                        .iter()
                        .enumerate()
                        .map(|(row, v)| {
                            coerce(v, target).map_err(|e| {
                                Error::InvalidRequest(format!(
                                    "entities.{}[{row}]: {e}",
                                    field.name
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::RequestDataNotFound(missing));
    }
    Ok(out)
}

/// The number of entity rows; every column must have it and it must not be zero.
fn row_count(req: &OnlineFeaturesRequest) -> Result<usize, Error> {
    let mut columns = req.entities.iter().chain(&req.request_context);
    let Some((first_name, first)) = columns.next() else {
        return Err(Error::InvalidRequest(
            "`entities` is empty: give at least one join key with a list of values, e.g. {\"driver_id\": [1001]}".into(),
        ));
    };
    let n = first.len();
    for (name, col) in columns {
        if col.len() != n {
            return Err(Error::InvalidRequest(format!(
                "All entity rows must have the same columns: `{first_name}` has {n} values but `{name}` has {}",
                col.len()
            )));
        }
    }
    if n == 0 {
        return Err(Error::InvalidRequest(format!(
            "`entities.{first_name}` is empty: give at least one entity row"
        )));
    }
    Ok(n)
}

/// A join-key column coerced to one type: ((join key index, value type), values).
type CoercedColumn = ((usize, i32), Arc<Vec<Value>>);

/// The request's join-key columns, found by name or entity name, with coerced copies
/// cached per (join key, type).
struct EntityInputs<'a> {
    columns: Vec<&'a [Value]>,
    coerced: std::cell::RefCell<Vec<CoercedColumn>>,
}

impl<'a> EntityInputs<'a> {
    fn resolve(plan: &Plan, req: &'a OnlineFeaturesRequest) -> Result<Self, Error> {
        let mut columns = Vec::with_capacity(plan.join_keys.len());
        for jk in &plan.join_keys {
            let found = req
                .entities
                .iter()
                .find(|(n, _)| *n == jk.name)
                .or_else(|| {
                    req.entities
                        .iter()
                        .find(|(n, _)| jk.aliases.iter().any(|a| a == n))
                });
            match found {
                Some((_, values)) => columns.push(values.as_slice()),
                None => {
                    let users: Vec<&str> = plan
                        .reads
                        .iter()
                        .filter(|r| {
                            r.key_columns
                                .iter()
                                .any(|&k| plan.join_keys[k].name == jk.name)
                        })
                        .map(|r| r.view.name.as_str())
                        .collect();
                    return Err(Error::MissingJoinKey(format!(
                        "`entities` has no values for join key '{}', which feature view {} needs",
                        jk.name,
                        users.join(", ")
                    )));
                }
            }
        }
        Ok(EntityInputs {
            columns,
            coerced: Default::default(),
        })
    }

    /// The values of join key `idx` coerced to `value_type` (cached).
    fn coerced(&self, idx: usize, name: &str, value_type: i32) -> Result<Arc<Vec<Value>>, Error> {
        if let Some((_, v)) = self
            .coerced
            .borrow()
            .iter()
            .find(|(k, _)| *k == (idx, value_type))
        {
            return Ok(v.clone());
        }
        let target = ValueType::try_from(value_type).unwrap_or(ValueType::Invalid);
        let column = self.columns[idx];
        let mut values = Vec::with_capacity(column.len());
        for (row, v) in column.iter().enumerate() {
            match coerce(v, target) {
                Ok(v) => values.push(v),
                Err(e) => {
                    return Err(Error::InvalidRequest(format!(
                        "entities.{name}[{row}]: {e}"
                    )));
                }
            }
        }
        let values = Arc::new(values);
        self.coerced
            .borrow_mut()
            .push(((idx, value_type), values.clone()));
        Ok(values)
    }

    /// Unique serialized keys of a view and how request rows map to them.
    fn keys_for(&self, read: &ViewRead, rows: usize) -> Result<(Vec<Vec<u8>>, RowKeys), Error> {
        let view = &read.view;
        if view.is_entityless() {
            let mut key = Vec::new();
            let dummy = Value {
                val: Some(crate::value::Val::StringVal(String::new())),
            };
            view.key_layout
                .serialize(&[&dummy], &mut key)
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
            return Ok((
                vec![key],
                RowKeys {
                    key_of_row: vec![0; rows],
                    first_row: vec![0],
                },
            ));
        }
        let cols = read
            .key_columns
            .iter()
            .zip(&view.join_keys)
            .map(|(&idx, jk)| self.coerced(idx, &jk.name, jk.value_type))
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = KeySet::default();
        let mut row_keys = RowKeys {
            key_of_row: Vec::with_capacity(rows),
            first_row: Vec::new(),
        };
        let mut row_values: Vec<&Value> = Vec::with_capacity(cols.len());
        let mut buf = Vec::with_capacity(64);
        for row in 0..rows {
            row_values.clear();
            row_values.extend(cols.iter().map(|c| &c[row]));
            buf.clear();
            view.key_layout
                .serialize(&row_values, &mut buf)
                .map_err(|e| {
                    Error::InvalidRequest(format!(
                        "entity row {row} for feature view {}: {e}",
                        view.name
                    ))
                })?;
            let (k, new) = keys.insert(&buf);
            if new {
                row_keys.first_row.push(row as u32);
            }
            row_keys.key_of_row.push(k);
        }
        Ok((keys.into_keys(), row_keys))
    }

    /// The echoed join-key column: the request's values in the key's declared type.
    fn join_key_column(
        &self,
        idx: usize,
        jk: &PlanJoinKey,
        rows: usize,
    ) -> Result<FeatureColumn, Error> {
        let values = self.coerced(idx, &jk.name, jk.value_type)?;
        Ok(FeatureColumn {
            values: values.as_ref().clone(),
            statuses: vec![FieldStatus::Present; rows],
            event_timestamps: vec![EventTime::EPOCH; rows],
            first_row_of: None,
        })
    }
}

/// How request rows map to a view's unique keys.
struct RowKeys {
    /// For each request row, the index of its unique key.
    key_of_row: Vec<u32>,
    /// For each unique key, the first row that uses it.
    first_row: Vec<u32>,
}

impl RowKeys {
    /// For each row, the first row with its key; `None` when no key repeats.
    fn repeats(&self, rows: usize) -> Option<Arc<[u32]>> {
        (self.first_row.len() < rows).then(|| {
            self.key_of_row
                .iter()
                .map(|&k| self.first_row[k as usize])
                .collect()
        })
    }
}

/// One output column: each stored value moves into its row when no entity key
/// repeats, and is copied into every row of its key otherwise. Statuses follow Feast's Go server: NOT_FOUND when nothing
/// is stored, NULL_VALUE for a stored null, OUTSIDE_MAX_AGE (value kept) when older
/// than the view's ttl.
fn feature_column(
    rows: &mut ViewRows,
    row_keys: &RowKeys,
    slot: usize,
    ttl: Option<Duration>,
    now_secs: i64,
    first_row_of: Option<Arc<[u32]>>,
) -> FeatureColumn {
    let n = row_keys.key_of_row.len();
    let cells =
        (0..row_keys.first_row.len()).map(|key| output_cell(rows.take(key, slot), ttl, now_secs));
    if row_keys.first_row.len() == n {
        // No key repeats: row i is key i, and each cell moves into its row.
        let mut col = FeatureColumn {
            values: Vec::with_capacity(n),
            statuses: Vec::with_capacity(n),
            event_timestamps: Vec::with_capacity(n),
            first_row_of,
        };
        for (value, status, time) in cells {
            col.values.push(value);
            col.statuses.push(status);
            col.event_timestamps.push(time);
        }
        return col;
    }
    let cells: Vec<_> = cells.collect();
    let of_row = || row_keys.key_of_row.iter().map(|&k| &cells[k as usize]);
    FeatureColumn {
        values: of_row().map(|c| copy_value(&c.0)).collect(),
        statuses: of_row().map(|c| c.1).collect(),
        event_timestamps: of_row().map(|c| c.2).collect(),
        first_row_of,
    }
}

/// A stored cell as an output value, status and event time.
fn output_cell(
    cell: Option<Cell>,
    ttl: Option<Duration>,
    now_secs: i64,
) -> (Value, FieldStatus, EventTime) {
    match cell {
        None => (Value::default(), FieldStatus::NotFound, EventTime::EPOCH),
        Some(cell) => {
            let status = if is_null(&cell.value) {
                FieldStatus::NullValue
            } else if is_expired(cell.event_time, ttl, now_secs) {
                FieldStatus::OutsideMaxAge
            } else {
                FieldStatus::Present
            };
            (cell.value, status, cell.event_time)
        }
    }
}

/// A copy of `v`, with scalars copied inline: repeated rows copy many of them, and
/// the derived `clone` goes through a call and a stack round trip for each.
fn copy_value(v: &Value) -> Value {
    use crate::value::Val;
    let val = match &v.val {
        Some(Val::Int64Val(x)) => Some(Val::Int64Val(*x)),
        Some(Val::DoubleVal(x)) => Some(Val::DoubleVal(*x)),
        Some(Val::FloatVal(x)) => Some(Val::FloatVal(*x)),
        Some(Val::Int32Val(x)) => Some(Val::Int32Val(*x)),
        Some(Val::BoolVal(x)) => Some(Val::BoolVal(*x)),
        Some(Val::UnixTimestampVal(x)) => Some(Val::UnixTimestampVal(*x)),
        None => None,
        other => other.clone(),
    };
    Value { val }
}

/// Whether two serialized keys are equal, comparing their last bytes first: keys of
/// one view share their prefix (the join key names) and differ in the values at the end.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let tail = a.len().saturating_sub(8);
    a.len() == b.len() && a[tail..] == b[tail..] && a[..tail] == b[..tail]
}

/// Unique entity keys in first-seen order: a linear scan while there are few (the
/// common case), a hash index beyond that.
#[derive(Default)]
struct KeySet {
    keys: Vec<Vec<u8>>,
    index: Option<HashMap<Vec<u8>, u32>>,
}

impl KeySet {
    const LINEAR_MAX: usize = 16;

    /// The index of `key`, and whether it was new.
    fn insert(&mut self, key: &[u8]) -> (u32, bool) {
        let found = match &self.index {
            Some(ix) => ix.get(key).copied(),
            None => self
                .keys
                .iter()
                .position(|k| same_key(k, key))
                .map(|i| i as u32),
        };
        if let Some(i) = found {
            return (i, false);
        }
        let i = self.keys.len() as u32;
        self.keys.push(key.to_vec());
        if let Some(ix) = &mut self.index {
            ix.insert(key.to_vec(), i);
        } else if self.keys.len() > Self::LINEAR_MAX {
            self.index = Some(
                self.keys
                    .iter()
                    .enumerate()
                    .map(|(j, k)| (k.clone(), j as u32))
                    .collect(),
            );
        }
        (i, true)
    }

    fn into_keys(self) -> Vec<Vec<u8>> {
        self.keys
    }
}

/// Whether a value written at `event` is older than `ttl` at `now_secs`
/// (strictly: a value exactly `ttl` old is still fresh).
pub fn is_expired(event: EventTime, ttl: Option<Duration>, now_secs: i64) -> bool {
    let Some(ttl) = ttl else { return false };
    let event_ns = i128::from(event.seconds) * 1_000_000_000 + i128::from(event.nanos);
    let now_ns = i128::from(now_secs) * 1_000_000_000;
    now_ns - event_ns > ttl.as_nanos() as i128
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Val;

    #[test]
    fn ttl_edges() {
        let day = Some(Duration::from_secs(86_400));
        let ev = EventTime::from_secs(1_000_000);
        assert!(!is_expired(ev, day, 1_000_000));
        assert!(
            !is_expired(ev, day, 1_000_000 + 86_400),
            "exactly ttl old is fresh"
        );
        assert!(is_expired(ev, day, 1_000_000 + 86_401));
        assert!(!is_expired(ev, None, i64::MAX), "no ttl never expires");
        assert!(!is_expired(ev, day, 0), "future values are fresh");
        let with_nanos = EventTime {
            seconds: 1_000_000,
            nanos: 500_000_000,
        };
        assert!(!is_expired(with_nanos, day, 1_000_000 + 86_400));
    }

    #[test]
    fn ragged_and_empty_entities_are_rejected() {
        let v = |n: usize| vec![Value::default(); n];
        let req = OnlineFeaturesRequest {
            entities: vec![("a".into(), v(2)), ("b".into(), v(1))],
            ..Default::default()
        };
        assert!(
            matches!(row_count(&req), Err(Error::InvalidRequest(m)) if m.contains("same columns"))
        );
        let req = OnlineFeaturesRequest {
            entities: vec![("a".into(), v(0))],
            ..Default::default()
        };
        assert!(matches!(row_count(&req), Err(Error::InvalidRequest(_))));
        let req = OnlineFeaturesRequest::default();
        assert!(matches!(row_count(&req), Err(Error::InvalidRequest(_))));
        let req = OnlineFeaturesRequest {
            entities: vec![("a".into(), v(3))],
            request_context: vec![("r".into(), v(3))],
            ..Default::default()
        };
        assert_eq!(row_count(&req).ok(), Some(3));
    }

    fn cell(val: Val, seconds: i64) -> Cell {
        Cell {
            value: Value { val: Some(val) },
            event_time: EventTime::from_secs(seconds),
        }
    }

    /// Keys 0..3 with slot 0 stored: key 0 fresh, key 1 expired, key 2 missing.
    fn stored() -> ViewRows {
        let mut rows = ViewRows::empty(3, 1);
        rows.set(0, 0, cell(Val::DoubleVal(0.5), 1_000));
        rows.set(1, 0, cell(Val::StringVal("old".into()), 10));
        rows
    }

    #[test]
    fn columns_with_and_without_repeated_keys_carry_every_row() {
        let ttl = Some(Duration::from_secs(100));
        let unique = RowKeys {
            key_of_row: vec![0, 1, 2],
            first_row: vec![0, 1, 2],
        };
        let col = feature_column(&mut stored(), &unique, 0, ttl, 1_050, None);
        let statuses = [
            FieldStatus::Present,
            FieldStatus::OutsideMaxAge,
            FieldStatus::NotFound,
        ];
        assert_eq!(col.statuses, statuses);
        assert_eq!(col.values[0].val, Some(Val::DoubleVal(0.5)));
        assert_eq!(col.values[1].val, Some(Val::StringVal("old".into())));
        assert_eq!(col.values[2], Value::default());
        assert_eq!(col.event_timestamps[2], EventTime::EPOCH);

        // Rows 0..6 use keys 1, 0, 1, 2, 0, 2.
        let repeated = RowKeys {
            key_of_row: vec![1, 0, 1, 2, 0, 2],
            first_row: vec![1, 0, 3],
        };
        let first_row_of = repeated.repeats(6);
        assert_eq!(first_row_of.as_deref(), Some(&[0, 1, 0, 3, 1, 3][..]));
        let col = feature_column(&mut stored(), &repeated, 0, ttl, 1_050, first_row_of);
        for (row, &key) in repeated.key_of_row.iter().enumerate() {
            let k = key as usize;
            assert_eq!(col.statuses[row], statuses[k], "row {row}");
            let expected = [
                Some(Val::DoubleVal(0.5)),
                Some(Val::StringVal("old".into())),
                None,
            ];
            assert_eq!(col.values[row].val, expected[k], "row {row}");
            let times = [1_000, 10, 0];
            assert_eq!(col.event_timestamps[row], EventTime::from_secs(times[k]));
        }
    }

    #[test]
    fn copied_values_equal_their_clones() {
        let values = [
            Val::Int64Val(-7),
            Val::Int32Val(3),
            Val::DoubleVal(1.5),
            Val::FloatVal(2.5),
            Val::BoolVal(true),
            Val::UnixTimestampVal(1_700_000_000),
            Val::StringVal("s".into()),
            Val::NullVal(0),
        ];
        for v in values {
            let v = Value { val: Some(v) };
            assert_eq!(copy_value(&v), v.clone());
        }
        assert_eq!(copy_value(&Value::default()), Value::default());
    }

    #[test]
    fn keys_are_equal_only_when_every_byte_is() {
        assert!(same_key(b"prefix-1001", b"prefix-1001"));
        assert!(!same_key(b"prefix-1001", b"prefix-1002"));
        assert!(!same_key(b"prefiy-1001", b"prefix-1001"), "prefix differs");
        assert!(!same_key(b"prefix-1001", b"prefix-10010"));
        assert!(same_key(b"ab", b"ab"), "shorter than the tail");
        assert!(!same_key(b"ab", b"ac"));
        assert!(same_key(b"", b""));
    }
}
