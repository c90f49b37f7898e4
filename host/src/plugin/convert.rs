//! Feast values to Arrow columns (plugin inputs) and back (plugin outputs).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampSecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampSecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};

use super::instance::ColumnType;
use crate::value::{Val, Value, ValueType, integer, number};

/// The Arrow type of a plugin column.
pub(super) fn data_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Binary => DataType::Binary,
        ColumnType::TimestampSeconds => DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
    }
}

/// The plugin column type that carries a Feast value type, when there is one.
pub(super) fn column_type_for(value_type: i32) -> Option<ColumnType> {
    Some(match ValueType::try_from(value_type).ok()? {
        ValueType::Int32 => ColumnType::Int32,
        ValueType::Int64 => ColumnType::Int64,
        ValueType::Float => ColumnType::Float32,
        ValueType::Double => ColumnType::Float64,
        ValueType::Bool => ColumnType::Boolean,
        ValueType::String | ValueType::Json => ColumnType::Utf8,
        ValueType::Bytes => ColumnType::Binary,
        ValueType::UnixTimestamp => ColumnType::TimestampSeconds,
        _ => return None,
    })
}

fn bad(v: &Value, t: ColumnType) -> String {
    format!(
        "a value {} cannot be passed as {t:?}",
        crate::entity_key::describe(v)
    )
}

/// One Arrow column of type `t` from Feast values (`None` or a null value: null).
pub(super) fn to_array<'a>(
    values: impl ExactSizeIterator<Item = Option<&'a Value>>,
    t: ColumnType,
) -> Result<ArrayRef, String> {
    let n = values.len();
    macro_rules! build {
        ($builder:expr, $conv:expr) => {{
            let mut b = $builder;
            for v in values {
                match v.and_then(|v| v.val.as_ref().map(|val| (v, val))) {
                    None | Some((_, Val::NullVal(_))) => b.append_null(),
                    Some((v, val)) => b.append_value($conv(val).ok_or_else(|| bad(v, t))?),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match t {
        ColumnType::Int32 => build!(Int32Builder::with_capacity(n), |v: &Val| match v {
            Val::Int32Val(i) => Some(*i),
            Val::Int64Val(i) => i32::try_from(*i).ok(),
            _ => None,
        }),
        ColumnType::Int64 => build!(Int64Builder::with_capacity(n), integer),
        ColumnType::Float32 => build!(Float32Builder::with_capacity(n), |v: &Val| number(v)
            .map(|f| f as f32)),
        ColumnType::Float64 => build!(Float64Builder::with_capacity(n), number),
        ColumnType::Boolean => build!(BooleanBuilder::with_capacity(n), |v: &Val| match v {
            Val::BoolVal(b) => Some(*b),
            _ => None,
        }),
        ColumnType::Utf8 => build!(StringBuilder::with_capacity(n, n * 16), |v: &Val| match v {
            Val::StringVal(s) | Val::JsonVal(s) => Some(s.clone()),
            _ => None,
        }),
        ColumnType::Binary => build!(BinaryBuilder::with_capacity(n, n * 16), |v: &Val| match v {
            Val::BytesVal(b) => Some(b.clone()),
            _ => None,
        }),
        ColumnType::TimestampSeconds => {
            let a = build!(
                TimestampSecondBuilder::with_capacity(n),
                |v: &Val| match v {
                    Val::UnixTimestampVal(i) | Val::Int64Val(i) => Some(*i),
                    _ => None,
                }
            );
            let a = a
                .as_primitive::<TimestampSecondType>()
                .clone()
                .with_timezone("UTC");
            Arc::new(a) as ArrayRef
        }
    })
}

/// Feast values of a plugin output column, typed as the registry declares the
/// feature (`column` must already have the column type of `value_type`).
pub(super) fn from_array(column: &dyn Array, value_type: i32) -> Result<Vec<Value>, String> {
    let json = value_type == ValueType::Json as i32;
    let wrap = |v: Option<Val>| Value { val: v };
    let n = column.len();
    let out: Vec<Value> = match column.data_type() {
        DataType::Int32 => column
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| wrap(v.map(Val::Int32Val)))
            .collect(),
        DataType::Int64 => column
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| wrap(v.map(Val::Int64Val)))
            .collect(),
        DataType::Float32 => column
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| wrap(v.map(Val::FloatVal)))
            .collect(),
        DataType::Float64 => column
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| wrap(v.map(Val::DoubleVal)))
            .collect(),
        DataType::Boolean => column
            .as_boolean()
            .iter()
            .map(|v| wrap(v.map(Val::BoolVal)))
            .collect(),
        DataType::Utf8 => column
            .as_string::<i32>()
            .iter()
            .map(|v| {
                wrap(v.map(|s| {
                    if json {
                        Val::JsonVal(s.to_string())
                    } else {
                        Val::StringVal(s.to_string())
                    }
                }))
            })
            .collect(),
        DataType::Binary => column
            .as_binary::<i32>()
            .iter()
            .map(|v| wrap(v.map(|b| Val::BytesVal(b.to_vec()))))
            .collect(),
        DataType::Timestamp(TimeUnit::Second, _) => column
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| wrap(v.map(Val::UnixTimestampVal)))
            .collect(),
        other => return Err(format!("column type {other} is not a plugin column type")),
    };
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(val: Val) -> Value {
        Value { val: Some(val) }
    }

    #[test]
    fn values_round_trip_through_arrow() {
        let vals = [
            v(Val::FloatVal(0.5)),
            Value::default(),
            v(Val::DoubleVal(2.0)),
        ];
        let arr = to_array(vals.iter().map(Some), ColumnType::Float32).expect("array");
        assert_eq!(arr.data_type(), &DataType::Float32);
        assert_eq!(arr.null_count(), 1);
        let back = from_array(arr.as_ref(), ValueType::Float as i32).expect("values");
        assert_eq!(back[0], v(Val::FloatVal(0.5)));
        assert_eq!(back[1], Value::default());
        let strs = [v(Val::JsonVal("{}".into()))];
        let arr = to_array(strs.iter().map(Some), ColumnType::Utf8).expect("array");
        assert_eq!(
            from_array(arr.as_ref(), ValueType::Json as i32).expect("json")[0],
            v(Val::JsonVal("{}".into()))
        );
        let ts = [v(Val::UnixTimestampVal(7))];
        let arr = to_array(ts.iter().map(Some), ColumnType::TimestampSeconds).expect("array");
        assert_eq!(arr.data_type(), &data_type(ColumnType::TimestampSeconds));
    }

    #[test]
    fn mismatched_values_are_refused() {
        let vals = [v(Val::StringVal("x".into()))];
        assert!(to_array(vals.iter().map(Some), ColumnType::Int64).is_err());
        assert_eq!(column_type_for(ValueType::Map as i32), None);
        assert_eq!(
            column_type_for(ValueType::Int64 as i32),
            Some(ColumnType::Int64)
        );
    }
}
