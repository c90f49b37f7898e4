//! The value types of row-wise on-demand feature views ([`odfv`](crate::odfv)): which
//! column type each Rust type reads and writes.
//!
//! | Rust | column type | Feast value type |
//! |---|---|---|
//! | `i32` | Int32 | INT32 |
//! | `i64` | Int64 | INT64 |
//! | `f32` | Float32 | FLOAT |
//! | `f64` | Float64 | DOUBLE |
//! | `bool` | Boolean | BOOL |
//! | `String` | Utf8 | STRING, JSON |
//! | `Vec<u8>` | Binary | BYTES |
//! | [`Timestamp`] | Timestamp(Second, UTC) | UNIX_TIMESTAMP |
//! | `Vec<T>`, `T` above (but `u8`) | List<T's type> | T's `_LIST` type |
//!
//! A list value is never `Some` with a null item (Feast lists have none): an input
//! list holding a null item is refused as invalid input.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampSecondType};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, TimestampSecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};

use crate::{ColumnType, PluginError};

/// A UNIX_TIMESTAMP value: seconds since the epoch, UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A Rust type a row-wise ODFV takes or returns.
pub trait RowValue: Sized {
    /// The column type carrying it.
    const COLUMN_TYPE: ColumnType;
    /// Column `name` of `batch`, one value per row (`None` for null).
    fn read(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Self::values(find(batch, name, Self::COLUMN_TYPE)?, name)
    }
    /// The values of column `name`, of type [`Self::COLUMN_TYPE`] (`None` for null).
    fn values(column: &dyn Array, name: &str) -> Result<Vec<Option<Self>>, PluginError>;
    /// An output column of these values.
    fn column(values: Vec<Option<Self>>) -> ArrayRef;
}

/// A type whose `Vec` is a list value: the scalar types but `u8` (`Vec<u8>` is BYTES).
pub trait ListItem: RowValue {
    /// The column type of a list of it.
    const LIST_TYPE: ColumnType;
}

macro_rules! list_item {
    ($($rust:ty => $list:expr),* $(,)?) => {
        $(impl ListItem for $rust {
            const LIST_TYPE: ColumnType = $list;
        })*
    };
}

list_item!(
    i32 => ColumnType::Int32List,
    i64 => ColumnType::Int64List,
    f32 => ColumnType::Float32List,
    f64 => ColumnType::Float64List,
    bool => ColumnType::BooleanList,
    String => ColumnType::Utf8List,
    Vec<u8> => ColumnType::BinaryList,
    Timestamp => ColumnType::TimestampSecondsList,
);

impl<T: ListItem> RowValue for Vec<T> {
    const COLUMN_TYPE: ColumnType = T::LIST_TYPE;

    fn values(column: &dyn Array, name: &str) -> Result<Vec<Option<Self>>, PluginError> {
        let list = column.as_list::<i32>();
        let offsets = list.value_offsets();
        let first = offsets.first().map_or(0, |o| *o as usize);
        let mut items = T::values(list.values().as_ref(), name)?
            .into_iter()
            .skip(first);
        (0..list.len())
            .map(|row| {
                let taken = items
                    .by_ref()
                    .take((offsets[row + 1] - offsets[row]) as usize);
                if list.is_null(row) {
                    taken.for_each(drop);
                    return Ok(None);
                }
                taken.collect::<Option<Vec<T>>>().map(Some).ok_or_else(|| {
                    PluginError::InvalidInput(format!(
                        "input column {name} has a null item in row {row}"
                    ))
                })
            })
            .collect()
    }

    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        let nulls = NullBuffer::from_iter(values.iter().map(Option::is_some));
        let lengths = values.iter().map(|v| v.as_ref().map_or(0, Vec::len));
        let offsets = OffsetBuffer::from_lengths(lengths);
        let items = T::column(values.into_iter().flatten().flatten().map(Some).collect());
        Arc::new(ListArray::new(
            Arc::new(T::COLUMN_TYPE.item_field()),
            offsets,
            items,
            Some(nulls).filter(|n| n.null_count() > 0),
        ))
    }
}

fn find<'a>(
    batch: &'a RecordBatch,
    name: &str,
    t: ColumnType,
) -> Result<&'a ArrayRef, PluginError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| PluginError::InvalidInput(format!("input column {name} is missing")))?;
    if !t.matches(col.data_type()) {
        return Err(PluginError::InvalidInput(format!(
            "input column {name} is {}, not {}",
            col.data_type(),
            t.data_type()
        )));
    }
    Ok(col)
}

macro_rules! primitive {
    ($rust:ty, $column:expr, $arrow:ty, $array:ty) => {
        impl RowValue for $rust {
            const COLUMN_TYPE: ColumnType = $column;
            fn values(column: &dyn Array, _: &str) -> Result<Vec<Option<Self>>, PluginError> {
                Ok(column.as_primitive::<$arrow>().iter().collect())
            }
            fn column(values: Vec<Option<Self>>) -> ArrayRef {
                Arc::new(<$array>::from(values))
            }
        }
    };
}

primitive!(i32, ColumnType::Int32, Int32Type, Int32Array);
primitive!(i64, ColumnType::Int64, Int64Type, Int64Array);
primitive!(f32, ColumnType::Float32, Float32Type, Float32Array);
primitive!(f64, ColumnType::Float64, Float64Type, Float64Array);

impl RowValue for bool {
    const COLUMN_TYPE: ColumnType = ColumnType::Boolean;
    fn values(column: &dyn Array, _: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(column.as_boolean().iter().collect())
    }
    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(BooleanArray::from(values))
    }
}

impl RowValue for String {
    const COLUMN_TYPE: ColumnType = ColumnType::Utf8;
    fn values(column: &dyn Array, _: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(column
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }
    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(StringArray::from(values))
    }
}

impl RowValue for Vec<u8> {
    const COLUMN_TYPE: ColumnType = ColumnType::Binary;
    fn values(column: &dyn Array, _: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(column
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map(<[u8]>::to_vec))
            .collect())
    }
    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(BinaryArray::from_iter(values))
    }
}

impl RowValue for Timestamp {
    const COLUMN_TYPE: ColumnType = ColumnType::TimestampSeconds;
    fn values(column: &dyn Array, _: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(column
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| v.map(Timestamp))
            .collect())
    }
    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        let seconds: Vec<Option<i64>> = values.into_iter().map(|v| v.map(|t| t.0)).collect();
        Arc::new(TimestampSecondArray::from(seconds).with_timezone("UTC"))
    }
}
