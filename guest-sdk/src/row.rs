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

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampSecondType};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampSecondArray,
};

use crate::{ColumnType, PluginError};

/// A UNIX_TIMESTAMP value: seconds since the epoch, UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A Rust type a row-wise ODFV takes or returns.
pub trait RowValue: Sized {
    /// The column type carrying it.
    const COLUMN_TYPE: ColumnType;
    /// Column `name` of `batch`, one value per row (`None` for null).
    fn read(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Self>>, PluginError>;
    /// An output column of these values.
    fn column(values: Vec<Option<Self>>) -> ArrayRef;
}

fn find<'a>(
    batch: &'a RecordBatch,
    name: &str,
    t: ColumnType,
) -> Result<&'a ArrayRef, PluginError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| PluginError::InvalidInput(format!("input column {name} is missing")))?;
    if col.data_type() != &t.data_type() {
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
            fn read(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Self>>, PluginError> {
                Ok(find(batch, name, Self::COLUMN_TYPE)?
                    .as_primitive::<$arrow>()
                    .iter()
                    .collect())
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
    fn read(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(find(batch, name, Self::COLUMN_TYPE)?
            .as_boolean()
            .iter()
            .collect())
    }
    fn column(values: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(BooleanArray::from(values))
    }
}

impl RowValue for String {
    const COLUMN_TYPE: ColumnType = ColumnType::Utf8;
    fn read(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(find(batch, name, Self::COLUMN_TYPE)?
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
    fn read(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(find(batch, name, Self::COLUMN_TYPE)?
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
    fn read(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Self>>, PluginError> {
        Ok(find(batch, name, Self::COLUMN_TYPE)?
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
