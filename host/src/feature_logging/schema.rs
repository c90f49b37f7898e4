//! The Arrow schema of a feature service's logs, as Feast defines it
//! (`FeatureServiceLoggingSource.get_schema` in `feast/feature_logging.py`): per
//! projection, its join keys (renamed by `join_key_map`; for an on-demand view, its
//! request-data fields), then per feature `<view>__<feature>` (Feast's Arrow type),
//! `<view>__<feature>__timestamp` (timestamp[s, UTC]) and `<view>__<feature>__status`
//! (int32); then `__log_timestamp` (timestamp[us, UTC]), `__log_date` (date32) and
//! `__request_id` (string). A name seen twice keeps its first position and its last
//! type, as Python's dict does. Feast has no Arrow type for Map, Json, Struct, sets
//! and the newer types, so a service using them cannot be logged.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::registry::{DUMMY_ENTITY_ID, FeatureService, OdfvSource, Registry};
use crate::value::{ValueType, value_type_name};

/// `__log_timestamp`: when the request was served.
pub(super) const LOG_TIMESTAMP_FIELD: &str = "__log_timestamp";
/// `__log_date`: the UTC date of `__log_timestamp`.
pub(super) const LOG_DATE_FIELD: &str = "__log_date";
/// `__request_id`: one UUID per logged request.
pub(super) const REQUEST_ID_FIELD: &str = "__request_id";

/// Timezone of the timestamp columns Feast declares with `tz=UTC`.
pub(crate) const UTC: &str = "UTC";

/// Why a feature service's log schema cannot be built.
#[derive(Debug, thiserror::Error)]
pub(super) enum SchemaError {
    /// A projection names a view the registry does not have.
    #[error("feature service {service}: feature view {view} is not in the registry")]
    UnknownView {
        /// The service.
        service: String,
        /// The missing view.
        view: String,
    },
    /// A projection names a feature its view does not have.
    #[error("feature service {service}: feature view {view} has no feature {feature}")]
    UnknownFeature {
        /// The service.
        service: String,
        /// The view.
        view: String,
        /// The missing feature.
        feature: String,
    },
    /// A column's Feast type has no Arrow type in Feast's logging schema.
    #[error(
        "feature service {service}: column {column} has type {value_type}, which Feast's feature logging schema has no Arrow type for"
    )]
    UnsupportedType {
        /// The service.
        service: String,
        /// The column.
        column: String,
        /// The Feast type's name.
        value_type: String,
    },
}

/// Where a logged column's values come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// A join key, echoed in the response under this name.
    JoinKey(String),
    /// A request-data field, taken from the request.
    RequestData(String),
    /// An output of the service: response column `full` (full feature names) or
    /// `short` (plain feature names).
    Feature {
        /// `<view>__<feature>`.
        full: String,
        /// `<feature>`.
        short: String,
    },
}

/// The part of an input a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The values.
    Value,
    /// The event times (seconds).
    Timestamp,
    /// The field statuses.
    Status,
}

/// What one log column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// A part of `inputs[input]`.
    Input {
        /// Index into [`LogSchema::inputs`].
        input: usize,
        /// Which part.
        part: Part,
    },
    /// `__log_timestamp`.
    LogTimestamp,
    /// `__log_date`.
    LogDate,
    /// `__request_id`.
    RequestId,
}

/// A feature service's log schema and where each column comes from.
#[derive(Debug)]
pub(crate) struct LogSchema {
    /// The Arrow schema, in Feast's column order.
    pub arrow: SchemaRef,
    /// The schema as stored in Parquet: `arrow` with `timestamp[s]` as
    /// `timestamp[ms]` (Parquet has no seconds unit; pyarrow, which Feast writes its
    /// logs with, stores them the same way).
    pub storage: SchemaRef,
    /// Per column (parallel to `arrow`'s fields): what it holds.
    pub kinds: Vec<ColumnKind>,
    /// The distinct inputs the columns read.
    pub inputs: Vec<Input>,
}

impl LogSchema {
    /// Index of a column by name.
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.arrow.index_of(name).ok()
    }
}

/// Feast's Arrow type for a value type (`FEAST_TYPE_TO_ARROW_TYPE`), if it has one.
pub(super) fn arrow_type(value_type: i32) -> Option<DataType> {
    let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
    let t = match ValueType::try_from(value_type).ok()? {
        ValueType::Int32 => DataType::Int32,
        ValueType::Int64 => DataType::Int64,
        ValueType::Float => DataType::Float32,
        ValueType::Double => DataType::Float64,
        ValueType::String => DataType::Utf8,
        ValueType::Bytes => DataType::Binary,
        ValueType::Bool => DataType::Boolean,
        ValueType::UnixTimestamp => DataType::Timestamp(TimeUnit::Second, None),
        ValueType::Int32List => list(DataType::Int32),
        ValueType::Int64List => list(DataType::Int64),
        ValueType::FloatList => list(DataType::Float32),
        ValueType::DoubleList => list(DataType::Float64),
        ValueType::StringList => list(DataType::Utf8),
        ValueType::BytesList => list(DataType::Binary),
        ValueType::BoolList => list(DataType::Boolean),
        ValueType::UnixTimestampList => list(DataType::Timestamp(TimeUnit::Second, None)),
        _ => return None,
    };
    Some(t)
}

/// How a log column's type is stored in Parquet (seconds become milliseconds).
pub(super) fn storage_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            DataType::Timestamp(TimeUnit::Millisecond, tz.clone())
        }
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(storage_type(item.data_type())),
        )),
        other => other.clone(),
    }
}

/// Builds the columns in order, with Python dict semantics for repeated names.
struct Builder<'a> {
    service: &'a str,
    names: Vec<String>,
    types: Vec<DataType>,
    kinds: Vec<ColumnKind>,
    inputs: Vec<Input>,
}

impl Builder<'_> {
    fn input(&mut self, input: Input) -> usize {
        match self.inputs.iter().position(|i| *i == input) {
            Some(i) => i,
            None => {
                self.inputs.push(input);
                self.inputs.len() - 1
            }
        }
    }

    fn push(&mut self, name: String, data_type: DataType, kind: ColumnKind) {
        match self.names.iter().position(|n| *n == name) {
            Some(i) => {
                self.types[i] = data_type;
                self.kinds[i] = kind;
            }
            None => {
                self.names.push(name);
                self.types.push(data_type);
                self.kinds.push(kind);
            }
        }
    }

    fn typed(&self, column: &str, value_type: i32) -> Result<DataType, SchemaError> {
        arrow_type(value_type).ok_or_else(|| SchemaError::UnsupportedType {
            service: self.service.to_string(),
            column: column.to_string(),
            value_type: value_type_name(value_type),
        })
    }

    fn value_column(
        &mut self,
        name: String,
        value_type: i32,
        input: Input,
    ) -> Result<(), SchemaError> {
        let t = self.typed(&name, value_type)?;
        let input = self.input(input);
        self.push(
            name,
            t,
            ColumnKind::Input {
                input,
                part: Part::Value,
            },
        );
        Ok(())
    }

    fn feature(&mut self, prefix: &str, feature: &str, value_type: i32) -> Result<(), SchemaError> {
        let full = format!("{prefix}__{feature}");
        let input = Input::Feature {
            full: full.clone(),
            short: feature.to_string(),
        };
        self.value_column(full.clone(), value_type, input.clone())?;
        let input = self.input(input);
        self.push(
            format!("{full}__timestamp"),
            DataType::Timestamp(TimeUnit::Second, Some(UTC.into())),
            ColumnKind::Input {
                input,
                part: Part::Timestamp,
            },
        );
        self.push(
            format!("{full}__status"),
            DataType::Int32,
            ColumnKind::Input {
                input,
                part: Part::Status,
            },
        );
        Ok(())
    }
}

/// The log schema of `service` against `registry`.
pub(super) fn build_schema(
    registry: &Registry,
    service: &FeatureService,
) -> Result<LogSchema, SchemaError> {
    let mut b = Builder {
        service: &service.name,
        names: Vec::new(),
        types: Vec::new(),
        kinds: Vec::new(),
        inputs: Vec::new(),
    };
    for projection in &service.projections {
        let prefix = projection.name_to_use();
        if let Some(view) = registry.views.get(&projection.view_name) {
            for jk in &view.join_keys {
                if jk.name == DUMMY_ENTITY_ID {
                    continue;
                }
                let name = projection
                    .join_key_map
                    .get(&jk.name)
                    .cloned()
                    .unwrap_or_else(|| jk.name.clone());
                b.value_column(name.clone(), jk.value_type, Input::JoinKey(name))?;
            }
            let all: Vec<String>;
            let features = if projection.features.is_empty() {
                all = view.features.iter().map(|f| f.name.clone()).collect();
                &all
            } else {
                &projection.features
            };
            for f in features {
                let idx = view.feature(f).ok_or_else(|| SchemaError::UnknownFeature {
                    service: service.name.clone(),
                    view: view.name.clone(),
                    feature: f.clone(),
                })?;
                b.feature(prefix, f, view.features[idx].value_type)?;
            }
        } else if let Some(odfv) = registry.odfvs.get(&projection.view_name) {
            for source in &odfv.sources {
                if let OdfvSource::Request { fields, .. } = source {
                    for field in fields {
                        b.value_column(
                            field.name.clone(),
                            field.value_type,
                            Input::RequestData(field.name.clone()),
                        )?;
                    }
                }
            }
            let all: Vec<String>;
            let features = if projection.features.is_empty() {
                all = odfv.features.iter().map(|f| f.name.clone()).collect();
                &all
            } else {
                &projection.features
            };
            for f in features {
                let idx = odfv.feature(f).ok_or_else(|| SchemaError::UnknownFeature {
                    service: service.name.clone(),
                    view: odfv.name.clone(),
                    feature: f.clone(),
                })?;
                b.feature(prefix, f, odfv.features[idx].value_type)?;
            }
        } else {
            return Err(SchemaError::UnknownView {
                service: service.name.clone(),
                view: projection.view_name.clone(),
            });
        }
    }
    b.push(
        LOG_TIMESTAMP_FIELD.into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        ColumnKind::LogTimestamp,
    );
    b.push(LOG_DATE_FIELD.into(), DataType::Date32, ColumnKind::LogDate);
    b.push(
        REQUEST_ID_FIELD.into(),
        DataType::Utf8,
        ColumnKind::RequestId,
    );
    let fields: Vec<Field> = b
        .names
        .iter()
        .zip(&b.types)
        .map(|(n, t)| Field::new(n, t.clone(), true))
        .collect();
    let storage: Vec<Field> = fields
        .iter()
        .map(|f| f.clone().with_data_type(storage_type(f.data_type())))
        .collect();
    Ok(LogSchema {
        arrow: Arc::new(Schema::new(fields)),
        storage: Arc::new(Schema::new(storage)),
        kinds: b.kinds,
        inputs: b.inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feast_arrow_types_and_their_parquet_storage() {
        assert_eq!(arrow_type(ValueType::Float as i32), Some(DataType::Float32));
        assert_eq!(arrow_type(ValueType::Int64 as i32), Some(DataType::Int64));
        assert_eq!(
            arrow_type(ValueType::UnixTimestamp as i32),
            Some(DataType::Timestamp(TimeUnit::Second, None))
        );
        for unsupported in [
            ValueType::Json,
            ValueType::Map,
            ValueType::Struct,
            ValueType::Int64Set,
        ] {
            assert_eq!(arrow_type(unsupported as i32), None, "{unsupported:?}");
        }
        let list = arrow_type(ValueType::UnixTimestampList as i32).expect("list");
        let DataType::List(item) = storage_type(&list) else {
            panic!("not a list")
        };
        assert_eq!(item.name(), "item");
        assert_eq!(
            item.data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert_eq!(
            storage_type(&DataType::Timestamp(TimeUnit::Second, Some(UTC.into()))),
            DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
        );
    }
}
