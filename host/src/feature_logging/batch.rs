//! Log rows to Arrow: a record batch in a service's log schema from rows of
//! [`LogEntry`]s, and the partition (directory) each row belongs to.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, ListBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow_schema::{ArrowError, DataType, TimeUnit};

use super::entry::LogEntry;
use super::schema::{ColumnKind, Part, UTC};
use super::target::ServiceTarget;
use crate::api::FeatureColumn;
use crate::value::Val;

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// One log row: an entry and a row of it.
pub(super) type Row<'a> = (&'a LogEntry, usize);

/// `__log_date` of a log time: days since the epoch.
pub(super) fn log_date(log_time_us: i64) -> i32 {
    log_time_us.div_euclid(DAY_US) as i32
}

/// `__request_id` text (lower-case hyphenated UUID).
pub(super) fn request_id_text(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

fn value(col: &FeatureColumn, row: usize) -> Option<&Val> {
    col.value(row).and_then(|v| v.val.as_ref())
}

/// Milliseconds of whole seconds (`timestamp[s]` columns are stored in ms).
const MS: i64 = 1000;

/// The record batch of `rows`, all of `target`, in the storage schema.
pub(super) fn build_batch<'a>(
    target: &ServiceTarget,
    rows: &[Row<'a>],
) -> Result<RecordBatch, ArrowError> {
    let schema = &target.schema;
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.kinds.len());
    for (field, kind) in schema.storage.fields().iter().zip(&schema.kinds) {
        let array: ArrayRef = match *kind {
            ColumnKind::Input { input, part } => {
                let col = |&(e, r): &Row<'a>| (&e.columns[input], r);
                match part {
                    Part::Value => values_array(
                        field.data_type(),
                        rows.iter().map(|row| {
                            let (c, r) = col(row);
                            value(c, r)
                        }),
                    )?,
                    Part::Timestamp => Arc::new(
                        rows.iter()
                            .map(|row| {
                                let (c, r) = col(row);
                                c.event_time(r).map(|t| t.seconds.saturating_mul(MS))
                            })
                            .collect::<TimestampMillisecondArray>()
                            .with_timezone(UTC),
                    ),
                    Part::Status => Arc::new(
                        rows.iter()
                            .map(|row| {
                                let (c, r) = col(row);
                                c.status(r).map(|s| s as i32)
                            })
                            .collect::<Int32Array>(),
                    ),
                }
            }
            ColumnKind::LogTimestamp => Arc::new(
                rows.iter()
                    .map(|(e, _)| Some(e.log_time_us))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone(UTC),
            ),
            ColumnKind::LogDate => Arc::new(
                rows.iter()
                    .map(|(e, _)| Some(log_date(e.log_time_us)))
                    .collect::<Date32Array>(),
            ),
            ColumnKind::RequestId => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 36);
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                for (e, _) in rows {
                    b.append_value(
                        uuid::Uuid::from_u128(e.request_id)
                            .hyphenated()
                            .encode_lower(&mut buf),
                    );
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema.storage.clone(), arrays)
}

use crate::value::{integer as as_i64, number as as_f64};

/// A value column; a value of another type than the column's is logged as null.
fn values_array<'v>(
    data_type: &DataType,
    vals: impl Iterator<Item = Option<&'v Val>>,
) -> Result<ArrayRef, ArrowError> {
    let array: ArrayRef = match data_type {
        DataType::Int32 => Arc::new(
            vals.map(|v| v.and_then(as_i64).and_then(|i| i32::try_from(i).ok()))
                .collect::<Int32Array>(),
        ),
        DataType::Int64 => Arc::new(vals.map(|v| v.and_then(as_i64)).collect::<Int64Array>()),
        DataType::Float32 => Arc::new(
            vals.map(|v| match v {
                Some(Val::FloatVal(f)) => Some(*f),
                Some(other) => as_f64(other).map(|f| f as f32),
                None => None,
            })
            .collect::<Float32Array>(),
        ),
        DataType::Float64 => Arc::new(vals.map(|v| v.and_then(as_f64)).collect::<Float64Array>()),
        DataType::Boolean => Arc::new(
            vals.map(|v| match v {
                Some(Val::BoolVal(b)) => Some(*b),
                _ => None,
            })
            .collect::<BooleanArray>(),
        ),
        DataType::Utf8 => Arc::new(
            vals.map(|v| match v {
                Some(Val::StringVal(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect::<StringArray>(),
        ),
        DataType::Binary => Arc::new(
            vals.map(|v| match v {
                Some(Val::BytesVal(b)) => Some(b.as_slice()),
                _ => None,
            })
            .collect::<BinaryArray>(),
        ),
        DataType::Timestamp(TimeUnit::Millisecond, tz) => Arc::new(
            vals.map(|v| v.and_then(as_i64).map(|s| s.saturating_mul(MS)))
                .collect::<TimestampMillisecondArray>()
                .with_timezone_opt(tz.clone()),
        ),
        DataType::List(item) => list_array(item.data_type(), vals)?,
        other => {
            return Err(ArrowError::NotYetImplemented(format!(
                "feature logging has no writer for Arrow type {other}"
            )));
        }
    };
    Ok(array)
}

/// Appends each value's list (or a null list) with `push`, which returns false when
/// the value is not a list of this kind.
fn list_of<'v, B: ArrayBuilder>(
    values: B,
    vals: impl Iterator<Item = Option<&'v Val>>,
    mut push: impl FnMut(&mut B, &Val) -> bool,
) -> ArrayRef {
    let mut b = ListBuilder::new(values);
    for v in vals {
        let ok = match v {
            Some(v) => push(b.values(), v),
            None => false,
        };
        b.append(ok);
    }
    Arc::new(b.finish())
}

fn list_array<'v>(
    item: &DataType,
    vals: impl Iterator<Item = Option<&'v Val>>,
) -> Result<ArrayRef, ArrowError> {
    let array = match item {
        DataType::Int32 => list_of(Int32Builder::new(), vals, |b, v| match v {
            Val::Int32ListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            _ => false,
        }),
        DataType::Int64 => list_of(Int64Builder::new(), vals, |b, v| match v {
            Val::Int64ListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            _ => false,
        }),
        DataType::Float32 => list_of(Float32Builder::new(), vals, |b, v| match v {
            Val::FloatListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            _ => false,
        }),
        DataType::Float64 => list_of(Float64Builder::new(), vals, |b, v| match v {
            Val::DoubleListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            _ => false,
        }),
        DataType::Boolean => list_of(BooleanBuilder::new(), vals, |b, v| match v {
            Val::BoolListVal(l) => {
                b.append_slice(&l.val);
                true
            }
            _ => false,
        }),
        DataType::Utf8 => list_of(StringBuilder::new(), vals, |b, v| match v {
            Val::StringListVal(l) => {
                for s in &l.val {
                    b.append_value(s);
                }
                true
            }
            _ => false,
        }),
        DataType::Binary => list_of(BinaryBuilder::new(), vals, |b, v| match v {
            Val::BytesListVal(l) => {
                for s in &l.val {
                    b.append_value(s);
                }
                true
            }
            _ => false,
        }),
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            list_of(TimestampMillisecondBuilder::new(), vals, |b, v| match v {
                Val::UnixTimestampListVal(l) => {
                    for s in &l.val {
                        b.append_value(s.saturating_mul(MS));
                    }
                    true
                }
                _ => false,
            })
        }
        other => {
            return Err(ArrowError::NotYetImplemented(format!(
                "feature logging has no writer for lists of {other}"
            )));
        }
    };
    Ok(array)
}

/// The partition directory of a row (`""` when the service is not partitioned):
/// one path segment per `partition_by` column, holding the value as pyarrow's
/// directory partitioning writes it (`2026-11-23`, `1001`, the string itself);
/// a null value adds no segment. Separators and `.`/`..` are escaped so a value
/// can never leave the destination.
pub(super) fn partition_of(target: &ServiceTarget, row: Row<'_>) -> String {
    let (entry, r) = row;
    let mut out = String::new();
    for &col in &target.partition_by {
        let segment = match target.schema.kinds[col] {
            ColumnKind::LogDate => Some(date_text(log_date(entry.log_time_us))),
            ColumnKind::RequestId => Some(request_id_text(entry.request_id)),
            ColumnKind::LogTimestamp => Some(entry.log_time_us.to_string()),
            ColumnKind::Input { input, .. } => {
                value(&entry.columns[input], r).and_then(scalar_text)
            }
        };
        if let Some(s) = segment {
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(&escape_segment(&s));
        }
    }
    out
}

fn scalar_text(v: &Val) -> Option<String> {
    Some(match v {
        Val::Int64Val(i) | Val::UnixTimestampVal(i) => i.to_string(),
        Val::Int32Val(i) => i.to_string(),
        Val::StringVal(s) => s.clone(),
        Val::BoolVal(b) => b.to_string(),
        Val::DoubleVal(f) => f.to_string(),
        Val::FloatVal(f) => f.to_string(),
        _ => return None,
    })
}

/// Longest directory name a partition value becomes (file systems allow 255 bytes).
const MAX_SEGMENT_BYTES: usize = 200;

/// A partition value as one directory name: `%`, `/`, `\`, control characters and
/// a leading `.` (a hidden directory, which readers skip) are percent-encoded, and a
/// name longer than [`MAX_SEGMENT_BYTES`] is cut and ends with a hash of the whole
/// value, so distinct values stay in distinct directories.
fn escape_segment(s: &str) -> String {
    match s {
        "" => return "%00".into(),
        ".." => return "%2E%2E".into(),
        _ => {}
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if matches!(c, '%' | '/' | '\\') || c.is_control() || (i == 0 && c == '.') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.len() > MAX_SEGMENT_BYTES {
        let hash = murmur3::murmur3_x64_128(&mut std::io::Cursor::new(s.as_bytes()), 0)
            .unwrap_or_default();
        let mut cut = MAX_SEGMENT_BYTES - 33;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&format!("~{hash:032x}"));
    }
    out
}

/// `YYYY-MM-DD` of a day number.
pub(super) fn date_text(days: i32) -> String {
    let (y, m, d) = crate::value::civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_dates_and_segments() {
        // 2026-11-23T00:00:00Z and one microsecond before it.
        let us = 1_795_392_000_i64 * 1_000_000;
        assert_eq!(date_text(log_date(us)), "2026-11-23");
        assert_eq!(date_text(log_date(us - 1)), "2026-11-22");
        assert_eq!(date_text(log_date(-1)), "1969-12-31");
        assert_eq!(escape_segment("a/b"), "a%2Fb");
        assert_eq!(escape_segment(".."), "%2E%2E");
        assert_eq!(escape_segment("."), "%2E");
        assert_eq!(escape_segment(".x"), "%2Ex");
        assert_eq!(escape_segment("a.b"), "a.b");
        assert_eq!(escape_segment("a\0b\n"), "a%00b%0A");
        assert_eq!(escape_segment("1001"), "1001");
        assert_eq!(escape_segment("ä%"), "ä%25");
        let long = "é".repeat(300);
        let (a, b) = (escape_segment(&long), escape_segment(&format!("{long}x")));
        assert!(a.len() <= MAX_SEGMENT_BYTES, "{}", a.len());
        assert_ne!(a, b, "long values stay distinct");
        assert!(a.starts_with("éé"));
    }

    #[test]
    fn request_ids_are_uuid_v4_text() {
        let t = request_id_text(0x0123_4567_89ab_4def_8123_4567_89ab_cdef);
        assert_eq!(t, "01234567-89ab-4def-8123-456789abcdef");
    }
}
