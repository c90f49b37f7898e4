//! Response columns from what the store returned: each stored cell with Feast's
//! status (TTL applied), shared by every row that repeats its key.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{FeatureColumn, RowKeys};
use crate::online_store::{Cell, ViewRows};
use crate::value::{EventTime, FieldStatus, Value, is_null};

/// One output column of `rows` rows: each stored cell becomes the value, status and
/// event time of its key, which the rows that repeat the key share (`repeats`, `None`
/// when row `i` is key `i`). Statuses follow Feast's Go server: NOT_FOUND when nothing
/// is stored, NULL_VALUE for a stored null, OUTSIDE_MAX_AGE (value kept) when older
/// than the view's ttl.
pub(super) fn feature_column(
    stored: &mut ViewRows,
    rows: usize,
    repeats: Option<&Arc<RowKeys>>,
    slot: usize,
    ttl: Option<Duration>,
    now_secs: i64,
) -> FeatureColumn {
    let keys = repeats.map_or(rows, |r| r.first_row.len());
    let mut values = Vec::with_capacity(keys);
    let mut statuses = Vec::with_capacity(keys);
    let mut event_timestamps = Vec::with_capacity(keys);
    for key in 0..keys {
        let (value, status, time) = output_cell(stored.take(key, slot), ttl, now_secs);
        values.push(value);
        statuses.push(status);
        event_timestamps.push(time);
    }
    match repeats {
        None => FeatureColumn::new(values, statuses, event_timestamps),
        Some(repeats) => {
            FeatureColumn::with_repeats(values, statuses, event_timestamps, repeats.clone())
        }
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
        let col = feature_column(&mut stored(), 3, None, 0, ttl, 1_050);
        let statuses = [
            FieldStatus::Present,
            FieldStatus::OutsideMaxAge,
            FieldStatus::NotFound,
        ];
        let by_row: Vec<_> = (0..3).filter_map(|row| col.status(row)).collect();
        assert_eq!(by_row, statuses);
        let value = |row| col.value(row).and_then(|v| v.val.clone());
        assert_eq!(value(0), Some(Val::DoubleVal(0.5)));
        assert_eq!(value(1), Some(Val::StringVal("old".into())));
        assert_eq!(value(2), None);
        assert_eq!(col.event_time(2), Some(EventTime::EPOCH));

        // Rows 0..6 use keys 1, 0, 1, 2, 0, 2.
        let repeated = Arc::new(RowKeys {
            key_of_row: vec![1, 0, 1, 2, 0, 2],
            first_row: vec![1, 0, 3],
        });
        assert!(repeated.repeat());
        let first_row_of: Vec<_> = (0..6).map(|row| repeated.first_row_of(row)).collect();
        assert_eq!(first_row_of, [0, 1, 0, 3, 1, 3]);
        let col = feature_column(&mut stored(), 6, Some(&repeated), 0, ttl, 1_050);
        let expected = [
            Some(Val::DoubleVal(0.5)),
            Some(Val::StringVal("old".into())),
            None,
        ];
        for (row, &key) in repeated.key_of_row.iter().enumerate() {
            let k = key as usize;
            assert_eq!(col.status(row), Some(statuses[k]), "row {row}");
            assert_eq!(
                col.value(row).map(|v| &v.val),
                Some(&expected[k]),
                "row {row}"
            );
            let times = [1_000, 10, 0];
            assert_eq!(col.event_time(row), Some(EventTime::from_secs(times[k])));
        }
        // Rows that repeat a key share its first row's value; owned values copy it.
        assert_eq!(col.repeated_row(2), Some(0));
        assert_eq!(col.repeated_row(0), None);
        let owned: Vec<_> = col.into_values().into_iter().map(|v| v.val).collect();
        let by_row: Vec<_> = repeated
            .key_of_row
            .iter()
            .map(|&k| expected[k as usize].clone())
            .collect();
        assert_eq!(owned, by_row);
    }
}
