//! Feast values to Arrow columns (plugin inputs) and back (plugin outputs).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampSecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampSecondType};
use arrow_array::{Array, ArrayRef, GenericListArray};
use arrow_schema::{DataType, TimeUnit};

use super::instance::ColumnType;
use crate::proto::feast::types::{
    BoolList, BytesList, DoubleList, FloatList, Int32List, Int64List, StringList,
};
use crate::value::{Val, Value, ValueType, integer, number};

/// The Arrow type of a plugin column (as the arrays [`to_array`] builds have it).
#[cfg(test)]
fn data_type(t: ColumnType) -> DataType {
    if let Some(item) = list_item(t) {
        let item = arrow_schema::Field::new("item", data_type(item), true);
        return DataType::List(Arc::new(item));
    }
    match t {
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Binary => DataType::Binary,
        _ => DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
    }
}

/// The item type of a list column type (`None`: a scalar type).
fn list_item(t: ColumnType) -> Option<ColumnType> {
    Some(match t {
        ColumnType::Int32List => ColumnType::Int32,
        ColumnType::Int64List => ColumnType::Int64,
        ColumnType::Float32List => ColumnType::Float32,
        ColumnType::Float64List => ColumnType::Float64,
        ColumnType::BooleanList => ColumnType::Boolean,
        ColumnType::Utf8List => ColumnType::Utf8,
        ColumnType::BinaryList => ColumnType::Binary,
        ColumnType::TimestampSecondsList => ColumnType::TimestampSeconds,
        _ => return None,
    })
}

/// Whether a column of Arrow type `got` carries column type `t`: a list's item field
/// may have any name and nullability (writers differ there). Builds no `DataType`: it
/// runs for every output column of every call.
pub(super) fn is_column_of(t: ColumnType, got: &DataType) -> bool {
    let scalar = |t: ColumnType, got: &DataType| match (t, got) {
        (ColumnType::Int32, DataType::Int32)
        | (ColumnType::Int64, DataType::Int64)
        | (ColumnType::Float32, DataType::Float32)
        | (ColumnType::Float64, DataType::Float64)
        | (ColumnType::Boolean, DataType::Boolean)
        | (ColumnType::Utf8, DataType::Utf8)
        | (ColumnType::Binary, DataType::Binary) => true,
        (ColumnType::TimestampSeconds, DataType::Timestamp(TimeUnit::Second, Some(tz))) => {
            tz.as_ref() == "UTC"
        }
        _ => false,
    };
    match (list_item(t), got) {
        (Some(item), DataType::List(field)) => scalar(item, field.data_type()),
        (Some(_), _) => false,
        (None, got) => scalar(t, got),
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
        ValueType::Int32List => ColumnType::Int32List,
        ValueType::Int64List => ColumnType::Int64List,
        ValueType::FloatList => ColumnType::Float32List,
        ValueType::DoubleList => ColumnType::Float64List,
        ValueType::BoolList => ColumnType::BooleanList,
        ValueType::StringList | ValueType::JsonList => ColumnType::Utf8List,
        ValueType::BytesList => ColumnType::BinaryList,
        ValueType::UnixTimestampList => ColumnType::TimestampSecondsList,
        _ => return None,
    })
}

/// A column type as the WIT names it.
pub(super) fn column_type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Int32 => "int32",
        ColumnType::Int64 => "int64",
        ColumnType::Float32 => "float32",
        ColumnType::Float64 => "float64",
        ColumnType::Boolean => "boolean",
        ColumnType::Utf8 => "utf8",
        ColumnType::Binary => "binary",
        ColumnType::TimestampSeconds => "timestamp-seconds",
        ColumnType::Int32List => "int32-list",
        ColumnType::Int64List => "int64-list",
        ColumnType::Float32List => "float32-list",
        ColumnType::Float64List => "float64-list",
        ColumnType::BooleanList => "boolean-list",
        ColumnType::Utf8List => "utf8-list",
        ColumnType::BinaryList => "binary-list",
        ColumnType::TimestampSecondsList => "timestamp-seconds-list",
    }
}

fn bad(v: &Value, t: ColumnType) -> String {
    format!(
        "a value {} cannot be passed as a {} column",
        crate::entity_key::describe(v),
        column_type_name(t)
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
    // A list column: `$append` appends a value's items to the child builder `$b` and
    // says whether the value was of a carried type (no copy of the items first).
    macro_rules! build_list {
        ($child:expr, |$val:ident, $b:ident| $append:expr) => {{
            let mut list = ListBuilder::with_capacity($child, n);
            for v in values {
                match v.and_then(|v| v.val.as_ref().map(|val| (v, val))) {
                    None | Some((_, Val::NullVal(_))) => list.append_null(),
                    Some((v, $val)) => {
                        let $b = list.values();
                        if !$append {
                            return Err(bad(v, t));
                        }
                        list.append(true);
                    }
                }
            }
            Arc::new(list.finish()) as ArrayRef
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
        ColumnType::Int32List => build_list!(Int32Builder::new(), |val, b| match val {
            Val::Int32ListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            Val::Int64ListVal(l) => l
                .val
                .iter()
                .all(|i| { i32::try_from(*i).map(|i| b.append_value(i)).is_ok() }),
            _ => false,
        }),
        ColumnType::Int64List => build_list!(Int64Builder::new(), |val, b| match val {
            Val::Int64ListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            Val::Int32ListVal(l) => {
                l.val.iter().for_each(|i| b.append_value(i64::from(*i)));
                true
            }
            _ => false,
        }),
        ColumnType::Float32List => build_list!(Float32Builder::new(), |val, b| match val {
            Val::FloatListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            Val::DoubleListVal(l) => {
                l.val.iter().for_each(|f| b.append_value(*f as f32));
                true
            }
            _ => false,
        }),
        ColumnType::Float64List => build_list!(Float64Builder::new(), |val, b| match val {
            Val::DoubleListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            Val::FloatListVal(l) => {
                l.val.iter().for_each(|f| b.append_value(f64::from(*f)));
                true
            }
            _ => false,
        }),
        ColumnType::BooleanList => build_list!(BooleanBuilder::new(), |val, b| match val {
            Val::BoolListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            _ => false,
        }),
        ColumnType::Utf8List => build_list!(StringBuilder::new(), |val, b| match val {
            Val::StringListVal(l) | Val::JsonListVal(l) => {
                l.val.iter().for_each(|s| b.append_value(s));
                true
            }
            _ => false,
        }),
        ColumnType::BinaryList => build_list!(BinaryBuilder::new(), |val, b| match val {
            Val::BytesListVal(l) => {
                l.val.iter().for_each(|s| b.append_value(s));
                true
            }
            _ => false,
        }),
        ColumnType::TimestampSecondsList => build_list!(
            TimestampSecondBuilder::new().with_timezone("UTC"),
            |val, b| match val {
                Val::UnixTimestampListVal(l) | Val::Int64ListVal(l) => {
                    b.append_slice(&l.val);
                    true
                }
                _ => false,
            }
        ),
    })
}

/// The items of each row of a list column (`item(i)`: child item `i`) as `make` wraps
/// them (`None`: a null row); an item that is null is refused (a Feast list has none).
fn list_values<T>(
    list: &GenericListArray<i32>,
    item: impl Fn(usize) -> T,
    make: impl Fn(Vec<T>) -> Val,
) -> Result<Vec<Value>, String> {
    let child = list.values();
    let offsets = list.value_offsets();
    (0..list.len())
        .map(|row| {
            if list.is_null(row) {
                return Ok(Value { val: None });
            }
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            if child.null_count() > 0 && (start..end).any(|i| child.is_null(i)) {
                return Err(format!(
                    "row {row} of a list column has a null item (Feast lists have none)"
                ));
            }
            let values = (start..end).map(&item).collect();
            Ok(Value {
                val: Some(make(values)),
            })
        })
        .collect()
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
        DataType::List(item) => {
            let list = column.as_list::<i32>();
            let items = list.values();
            let json_list = value_type == ValueType::JsonList as i32;
            // Each arm downcasts the items once, then reads them by index.
            match item.data_type() {
                DataType::Int32 => {
                    let items = items.as_primitive::<Int32Type>();
                    list_values(
                        list,
                        |i| items.value(i),
                        |val| Val::Int32ListVal(Int32List { val }),
                    )?
                }
                DataType::Int64 => {
                    let items = items.as_primitive::<Int64Type>();
                    list_values(
                        list,
                        |i| items.value(i),
                        |val| Val::Int64ListVal(Int64List { val }),
                    )?
                }
                DataType::Float32 => {
                    let items = items.as_primitive::<Float32Type>();
                    list_values(
                        list,
                        |i| items.value(i),
                        |val| Val::FloatListVal(FloatList { val }),
                    )?
                }
                DataType::Float64 => {
                    let items = items.as_primitive::<Float64Type>();
                    list_values(
                        list,
                        |i| items.value(i),
                        |val| Val::DoubleListVal(DoubleList { val }),
                    )?
                }
                DataType::Boolean => {
                    let items = items.as_boolean();
                    list_values(
                        list,
                        |i| items.value(i),
                        |val| Val::BoolListVal(BoolList { val }),
                    )?
                }
                DataType::Utf8 => {
                    let items = items.as_string::<i32>();
                    list_values(
                        list,
                        |i| items.value(i).to_string(),
                        |val| {
                            if json_list {
                                Val::JsonListVal(StringList { val })
                            } else {
                                Val::StringListVal(StringList { val })
                            }
                        },
                    )?
                }
                DataType::Binary => {
                    let items = items.as_binary::<i32>();
                    list_values(
                        list,
                        |i| items.value(i).to_vec(),
                        |val| Val::BytesListVal(BytesList { val }),
                    )?
                }
                DataType::Timestamp(TimeUnit::Second, _) => {
                    let items = items.as_primitive::<TimestampSecondType>();
                    list_values(
                        list,
                        |i| items.value(i),
                        |val| Val::UnixTimestampListVal(Int64List { val }),
                    )?
                }
                other => {
                    return Err(format!("a list of {other} is not a plugin column type"));
                }
            }
        }
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

    #[test]
    fn lists_round_trip_through_arrow_with_nulls_and_empty_lists() {
        let cases: Vec<(ValueType, ColumnType, Val, Val)> = vec![
            (
                ValueType::Int32List,
                ColumnType::Int32List,
                Val::Int32ListVal(Int32List { val: vec![1, -2] }),
                Val::Int32ListVal(Int32List { val: vec![] }),
            ),
            (
                ValueType::Int64List,
                ColumnType::Int64List,
                Val::Int64ListVal(Int64List {
                    val: vec![i64::MAX],
                }),
                Val::Int64ListVal(Int64List { val: vec![] }),
            ),
            (
                ValueType::FloatList,
                ColumnType::Float32List,
                Val::FloatListVal(FloatList { val: vec![0.5] }),
                Val::FloatListVal(FloatList { val: vec![] }),
            ),
            (
                ValueType::DoubleList,
                ColumnType::Float64List,
                Val::DoubleListVal(DoubleList {
                    val: vec![1e300, 0.25],
                }),
                Val::DoubleListVal(DoubleList { val: vec![] }),
            ),
            (
                ValueType::BoolList,
                ColumnType::BooleanList,
                Val::BoolListVal(BoolList {
                    val: vec![true, false],
                }),
                Val::BoolListVal(BoolList { val: vec![] }),
            ),
            (
                ValueType::StringList,
                ColumnType::Utf8List,
                Val::StringListVal(StringList {
                    val: vec!["a".into(), String::new()],
                }),
                Val::StringListVal(StringList { val: vec![] }),
            ),
            (
                ValueType::JsonList,
                ColumnType::Utf8List,
                Val::JsonListVal(StringList {
                    val: vec!["{\"a\":1}".into()],
                }),
                Val::JsonListVal(StringList { val: vec![] }),
            ),
            (
                ValueType::BytesList,
                ColumnType::BinaryList,
                Val::BytesListVal(BytesList {
                    val: vec![vec![0, 255], vec![]],
                }),
                Val::BytesListVal(BytesList { val: vec![] }),
            ),
            (
                ValueType::UnixTimestampList,
                ColumnType::TimestampSecondsList,
                Val::UnixTimestampListVal(Int64List {
                    val: vec![1_795_392_000],
                }),
                Val::UnixTimestampListVal(Int64List { val: vec![] }),
            ),
        ];
        for (value_type, column_type, full, empty) in cases {
            assert_eq!(column_type_for(value_type as i32), Some(column_type));
            let vals = [v(full), Value { val: None }, v(empty)];
            let arr = to_array(vals.iter().map(Some), column_type).expect("array");
            assert_eq!(arr.data_type(), &data_type(column_type));
            assert!(is_column_of(column_type, arr.data_type()));
            assert_eq!(arr.null_count(), 1);
            let back = from_array(arr.as_ref(), value_type as i32).expect("values");
            assert_eq!(back, vals, "{value_type:?}");
        }
    }

    #[test]
    fn a_null_item_in_an_output_list_is_refused() {
        let mut b = ListBuilder::new(Int64Builder::new());
        b.values().append_value(1);
        b.values().append_null();
        b.append(true);
        let err = from_array(&b.finish(), ValueType::Int64List as i32).expect_err("null item");
        assert!(err.contains("row 0") && err.contains("null item"), "{err}");
    }

    #[test]
    fn list_item_fields_may_have_any_name() {
        let element = DataType::List(Arc::new(arrow_schema::Field::new(
            "element",
            DataType::Int64,
            false,
        )));
        assert!(is_column_of(ColumnType::Int64List, &element));
        assert!(!is_column_of(ColumnType::Int32List, &element));
        assert!(!is_column_of(ColumnType::Int64, &element));
        for t in [
            ColumnType::Float32,
            ColumnType::TimestampSeconds,
            ColumnType::Utf8List,
        ] {
            assert!(is_column_of(t, &data_type(t)), "{t:?}");
        }
        let local = DataType::Timestamp(TimeUnit::Second, None);
        assert!(!is_column_of(ColumnType::TimestampSeconds, &local));
    }
}
