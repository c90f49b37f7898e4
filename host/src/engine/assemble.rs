//! Response columns from what the store returned: each stored cell with Feast's
//! status (TTL applied), copied into every row that repeats its key.

use std::sync::Arc;
use std::time::Duration;

use super::keys::RowKeys;
use crate::api::FeatureColumn;
use crate::online_store::{Cell, ViewRows};
use crate::value::{EventTime, FieldStatus, Value, is_null};

/// One output column: each stored value moves into its row when no entity key
/// repeats, and is copied into every row of its key otherwise. Statuses follow Feast's Go server: NOT_FOUND when nothing
/// is stored, NULL_VALUE for a stored null, OUTSIDE_MAX_AGE (value kept) when older
/// than the view's ttl.
pub(super) fn feature_column(
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

/// Whether a value written at `event` is older than `ttl` at `now_secs`
/// (strictly: a value exactly `ttl` old is still fresh).
pub(super) fn is_expired(event: EventTime, ttl: Option<Duration>, now_secs: i64) -> bool {
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
}
