//! Feast's `get-online-features` JSON response, written straight into a byte buffer
//! with the Python server's encoding: compact separators, `results` then `metadata`,
//! int64 as numbers, FLOAT widened to double and printed like Python's `repr`,
//! NaN/Infinity as strings, bytes as base64, Json as its text, Map/Struct as objects,
//! timestamps as RFC 3339 with `Z`.

use std::sync::Arc;

use base64::Engine as _;

use crate::api::{OnlineFeaturesResponse, RowKeys};
use crate::proto::feast::types::ZonedTimestamp;
use crate::value::{EventTime, Val, Value, status_name, write_python_float};

/// The epoch as a JSON string, the event time of every value a request supplied.
const EPOCH_JSON: &[u8] = b"\"1970-01-01T00:00:00Z\"";

/// Serializes a response.
pub fn write_response(resp: &OnlineFeaturesResponse, out: &mut Vec<u8>) {
    // Where each step of the list being written went, for rows that repeat entity keys.
    let mut marks: Vec<Mark> = Vec::with_capacity(16);
    // The steps of the last rows that repeat keys: the columns of one view share them.
    let mut shared_steps: Option<(&Arc<RowKeys>, Vec<Step>)> = None;
    // The last event time written (columns of one view mostly share it) and its bytes.
    let mut last_time: Option<(EventTime, std::ops::Range<usize>)> = None;
    out.extend_from_slice(b"{\"results\":[");
    for (i, col) in resp.columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(keys) = col.repeats()
            && !shared_steps
                .as_ref()
                .is_some_and(|(shared, _)| Arc::ptr_eq(shared, keys))
        {
            shared_steps = Some((keys, row_steps(keys)));
        }
        let steps = col
            .repeats()
            .and(shared_steps.as_ref())
            .map(|(_, s)| s.as_slice());
        // Lists of the column's length follow its steps (a list may be empty).
        let steps_for = |len: usize| steps.filter(|_| len == col.rows());
        out.extend_from_slice(b"{\"values\":[");
        write_rows(
            steps_for(col.rows()),
            col.rows(),
            &mut marks,
            out,
            |j, out| match col.value(j) {
                Some(v) => write_value(v, out),
                None => out.extend_from_slice(b"null"),
            },
        );
        out.extend_from_slice(b"],\"statuses\":[");
        // A column without statuses has no event times either (a logged join key).
        let listed = if col.has_statuses() { col.rows() } else { 0 };
        write_rows(
            steps_for(listed),
            listed,
            &mut marks,
            out,
            |j, out| match col.status(j) {
                Some(status) => {
                    out.push(b'"');
                    out.extend_from_slice(status_name(status).as_bytes());
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            },
        );
        out.push(b']');
        if listed > 0 {
            out.extend_from_slice(b",\"event_timestamps\":[");
            // Rows mostly share one event time (request data has the epoch): each is
            // formatted once and copied after.
            write_rows(steps_for(listed), listed, &mut marks, out, |j, out| {
                let Some(t) = col.event_time(j) else {
                    out.extend_from_slice(b"null");
                    return;
                };
                match &last_time {
                    _ if t == EventTime::EPOCH => out.extend_from_slice(EPOCH_JSON),
                    Some((prev, range)) if *prev == t => {
                        out.extend_from_within(range.clone());
                    }
                    _ => {
                        let start = out.len();
                        out.push(b'"');
                        t.write_rfc3339(out);
                        out.push(b'"');
                        last_time = Some((t, start..out.len()));
                    }
                }
            });
            out.push(b']');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"metadata\":{\"feature_names\":[");
    for (i, n) in resp.feature_names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(n, out);
    }
    out.push(b']');
    if let Some(meta) = &resp.feature_view_metadata
        && !meta.is_empty()
    {
        out.extend_from_slice(b",\"feature_view_metadata\":[");
        for (i, m) in meta.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let mut first = true;
            if !m.name.is_empty() {
                out.extend_from_slice(b"\"name\":");
                write_str(&m.name, out);
                first = false;
            }
            if m.version != 0 {
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"version\":");
                write_int(i64::from(m.version), out);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}");
}

/// One step of writing a list whose rows repeat entity keys: write the next row, or
/// copy the bytes of the `rows` rows from row `from`, which the next rows repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Write,
    Copy { from: u32, rows: u32 },
}

/// The steps for rows where row `i` repeats the first row with its key (itself when
/// it is that row). A run of rows whose first rows are those of a run already
/// written is copied as one block, so a periodic list is copied in doubling blocks.
/// Made once for every list of every column with these rows.
fn row_steps(keys: &RowKeys) -> Vec<Step> {
    let rows = keys.key_of_row.len();
    let first_of = |row: usize| keys.first_row_of(row);
    let mut steps = Vec::with_capacity(rows.min(16));
    let mut j = 0;
    while j < rows {
        let f = first_of(j);
        if f < j {
            let mut k = 1;
            while j + k < rows && f + k < j && first_of(j + k) == first_of(f + k) {
                k += 1;
            }
            steps.push(Step::Copy {
                from: f as u32,
                rows: k as u32,
            });
            j += k;
        } else {
            steps.push(Step::Write);
            j += 1;
        }
    }
    steps
}

/// Where the rows of one step of a list went: its first row, the offset in the output
/// of that row, and for a copy how far its bytes lie past those it copied.
#[derive(Clone, Copy, Debug)]
struct Mark {
    row: usize,
    start: usize,
    shift: usize,
}

/// Writes one item for each of `rows` rows (`write(j, out)` for row `j`),
/// comma-separated, following `steps` when the rows repeat keys. `marks` keeps where
/// each step went, one entry per step rather than per row: a copy of rows that were
/// themselves copied is found through the steps that copied them.
fn write_rows(
    steps: Option<&[Step]>,
    rows: usize,
    marks: &mut Vec<Mark>,
    out: &mut Vec<u8>,
    mut write: impl FnMut(usize, &mut Vec<u8>),
) {
    let Some(steps) = steps else {
        for j in 0..rows {
            if j > 0 {
                out.push(b',');
            }
            write(j, out);
        }
        return;
    };
    marks.clear();
    let mut j = 0;
    for step in steps {
        if j > 0 {
            out.push(b',');
        }
        let start = out.len();
        match *step {
            Step::Write => {
                write(j, out);
                marks.push(Mark {
                    row: j,
                    start,
                    shift: 0,
                });
                j += 1;
            }
            Step::Copy { from, rows } => {
                let (f, k) = (from as usize, rows as usize);
                let from = row_start(steps, marks, f);
                // The copied rows end where the row after them starts, less its comma.
                let end = if f + k < j {
                    row_start(steps, marks, f + k) - 1
                } else {
                    out.len() - 1
                };
                out.extend_from_within(from..end);
                marks.push(Mark {
                    row: j,
                    start,
                    shift: start - from,
                });
                j += k;
            }
        }
    }
}

/// Where row `row` of a list written by [`write_rows`] starts in the output.
fn row_start(steps: &[Step], marks: &[Mark], row: usize) -> usize {
    let (mut row, mut shift) = (row, 0);
    loop {
        let s = marks.partition_point(|m| m.row <= row) - 1;
        let mark = marks[s];
        match steps[s] {
            // A written step is one row.
            Step::Write => return mark.start + shift,
            Step::Copy { from, .. } => {
                shift += mark.shift;
                row = from as usize + (row - mark.row);
            }
        }
    }
}

/// Writes one value as Feast's Python server does (`convert_response_to_dict`).
pub(super) fn write_value(v: &Value, out: &mut Vec<u8>) {
    let Some(val) = &v.val else {
        out.extend_from_slice(b"null");
        return;
    };
    match val {
        Val::NullVal(_) | Val::ScalarMapVal(_) => out.extend_from_slice(b"null"),
        Val::BytesVal(b) => write_base64(b, out),
        Val::StringVal(s)
        | Val::JsonVal(s)
        | Val::UuidVal(s)
        | Val::TimeUuidVal(s)
        | Val::DecimalVal(s) => write_str(s, out),
        Val::Int32Val(i) => write_int(i64::from(*i), out),
        Val::Int64Val(i) | Val::UnixTimestampVal(i) => write_int(*i, out),
        Val::DoubleVal(f) => write_float(*f, out),
        Val::FloatVal(f) => write_float(f64::from(*f), out),
        Val::BoolVal(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Val::BytesListVal(l) | Val::BytesSetVal(l) => {
            write_list(&l.val, out, |b, o| write_base64(b, o))
        }
        Val::StringListVal(l)
        | Val::StringSetVal(l)
        | Val::JsonListVal(l)
        | Val::UuidListVal(l)
        | Val::TimeUuidListVal(l)
        | Val::UuidSetVal(l)
        | Val::TimeUuidSetVal(l)
        | Val::DecimalListVal(l)
        | Val::DecimalSetVal(l) => write_list(&l.val, out, |s, o| write_str(s, o)),
        Val::Int32ListVal(l) | Val::Int32SetVal(l) => {
            write_list(&l.val, out, |i, o| write_int(i64::from(*i), o))
        }
        Val::Int64ListVal(l)
        | Val::Int64SetVal(l)
        | Val::UnixTimestampListVal(l)
        | Val::UnixTimestampSetVal(l) => write_list(&l.val, out, |i, o| write_int(*i, o)),
        Val::DoubleListVal(l) | Val::DoubleSetVal(l) => {
            write_list(&l.val, out, |f, o| write_float(*f, o))
        }
        Val::FloatListVal(l) | Val::FloatSetVal(l) => {
            write_list(&l.val, out, |f, o| write_float(f64::from(*f), o))
        }
        Val::BoolListVal(l) | Val::BoolSetVal(l) => write_list(&l.val, out, |b, o| {
            o.extend_from_slice(if *b { b"true" } else { b"false" })
        }),
        Val::MapVal(m) | Val::StructVal(m) => write_map(m, out),
        Val::MapListVal(l) | Val::StructListVal(l) => write_list(&l.val, out, write_map),
        Val::ListVal(l) | Val::SetVal(l) => write_list(&l.val, out, write_value),
        Val::ZonedTimestampVal(z) => write_zoned(z, out),
    }
}

fn write_list<T>(items: &[T], out: &mut Vec<u8>, f: impl Fn(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        f(x, out);
    }
    out.push(b']');
}

fn write_map(m: &crate::proto::feast::types::Map, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in m.val.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write_value(v, out);
    }
    out.push(b'}');
}

fn write_int(i: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

fn write_float(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        write_python_float(f, out);
    }
}

fn write_base64(b: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + b.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(b, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

/// A zoned timestamp as Python's `datetime.isoformat()` in its zone (fixed offsets
/// and `UTC` are honoured; other zone names are printed in UTC).
fn write_zoned(z: &ZonedTimestamp, out: &mut Vec<u8>) {
    if z.unix_timestamp == i64::MIN {
        out.extend_from_slice(b"null");
        return;
    }
    let offset = fixed_offset_secs(&z.zone).unwrap_or(0);
    let mut text = Vec::with_capacity(32);
    EventTime::from_secs(z.unix_timestamp + offset).write_rfc3339(&mut text);
    text.pop(); // the `Z`
    let sign = if offset < 0 { b'-' } else { b'+' };
    let a = offset.unsigned_abs();
    text.push(sign);
    text.extend_from_slice(format!("{:02}:{:02}", a / 3600, a / 60 % 60).as_bytes());
    out.push(b'"');
    out.extend_from_slice(&text);
    out.push(b'"');
}

/// `UTC`, `GMT`, `+05:30`, `UTC-07:00`, `+0530` as seconds east of UTC.
fn fixed_offset_secs(zone: &str) -> Option<i64> {
    let z = zone.trim();
    if z.is_empty() || z == "UTC" || z == "GMT" {
        return Some(0);
    }
    let rest = z
        .strip_prefix("UTC")
        .or_else(|| z.strip_prefix("GMT"))
        .unwrap_or(z);
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

/// For each byte, how a JSON string escapes it: 0 not at all, `u` as `\u00XX`, else
/// the character that follows the backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes a JSON string (UTF-8 kept as is, quotes, backslashes and control characters
/// escaped): the runs between escapes are copied whole.
pub(super) fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FeatureColumn;
    use crate::proto::feast::types::{DoubleList, FloatList, Map, StringList};
    use crate::value::FieldStatus;

    #[test]
    fn the_epoch_constant_is_the_epoch_formatted() {
        let mut out = vec![b'"'];
        EventTime::EPOCH.write_rfc3339(&mut out);
        out.push(b'"');
        assert_eq!(out, EPOCH_JSON);
    }

    fn json(v: Val) -> String {
        let mut out = Vec::new();
        write_value(&Value { val: Some(v) }, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    /// Two columns whose rows use keys `key_of_row` (each key's value `key * 0.5`):
    /// one holding every row's cell, one holding each key's value once.
    fn keyed_column(key_of_row: &[u32]) -> (FeatureColumn, FeatureColumn) {
        let v = |k: u32| Value {
            val: Some(Val::DoubleVal(f64::from(k) * 0.5)),
        };
        let status = |k: u32| match k % 3 {
            0 => FieldStatus::Present,
            1 => FieldStatus::NotFound,
            _ => FieldStatus::OutsideMaxAge,
        };
        let time = |k: u32| EventTime::from_secs(1_700_000_000 + i64::from(k % 2));
        let plain = FeatureColumn::new(
            key_of_row.iter().map(|&k| v(k)).collect(),
            key_of_row.iter().map(|&k| status(k)).collect(),
            key_of_row.iter().map(|&k| time(k)).collect(),
        );
        // The distinct keys in the order rows first use them.
        let mut distinct: Vec<u32> = Vec::new();
        let mut keys = RowKeys::default();
        for (j, &k) in key_of_row.iter().enumerate() {
            let index = distinct.iter().position(|&d| d == k).unwrap_or_else(|| {
                distinct.push(k);
                keys.first_row.push(j as u32);
                distinct.len() - 1
            });
            keys.key_of_row.push(index as u32);
        }
        let shared = FeatureColumn::with_repeats(
            distinct.iter().map(|&k| v(k)).collect(),
            distinct.iter().map(|&k| status(k)).collect(),
            distinct.iter().map(|&k| time(k)).collect(),
            Arc::new(keys),
        );
        (plain, shared)
    }

    fn response_of(col: FeatureColumn) -> String {
        let resp = OnlineFeaturesResponse {
            feature_names: vec!["f".to_string()].into(),
            columns: vec![col],
            feature_view_metadata: None,
            request_data: Vec::new(),
        };
        let mut out = Vec::new();
        write_response(&resp, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn each_row_has_its_own_event_time_whatever_the_columns_before_wrote() {
        let t = |s: i64| EventTime::from_secs(s);
        let times: [&[EventTime]; 4] = [
            &[EventTime::EPOCH, EventTime::EPOCH],
            &[t(1_700_000_000), t(1_700_000_000)],
            &[t(1_700_000_001), EventTime::EPOCH],
            &[t(1_700_000_000), t(1_700_000_001)],
        ];
        let columns = times
            .iter()
            .map(|ts| {
                let rows = ts.len();
                FeatureColumn::new(
                    vec![Value::default(); rows],
                    vec![FieldStatus::Present; rows],
                    ts.to_vec(),
                )
            })
            .collect();
        let resp = OnlineFeaturesResponse {
            feature_names: vec!["a".into(), "b".into(), "c".into(), "d".into()].into(),
            columns,
            feature_view_metadata: None,
            request_data: Vec::new(),
        };
        let mut out = Vec::new();
        write_response(&resp, &mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        for (i, ts) in times.iter().enumerate() {
            let written = &parsed["results"][i]["event_timestamps"];
            let expected: Vec<String> = ts
                .iter()
                .map(|t| {
                    let mut s = Vec::new();
                    t.write_rfc3339(&mut s);
                    String::from_utf8(s).expect("utf8")
                })
                .collect();
            assert_eq!(written, &serde_json::json!(expected), "column {i}");
        }
    }

    #[test]
    fn repeated_rows_write_what_their_first_row_wrote() {
        let cases: [&[u32]; 7] = [
            &[0, 1, 0, 0, 1],
            &[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4],
            &[0, 1, 2, 2, 1, 0, 1, 2, 0, 0, 0],
            &[3, 3, 3, 3],
            &[0, 1, 2, 1, 2, 3, 1, 2, 3, 4],
            &[5],
            &[],
        ];
        // Periodic lists (copied in doubling blocks), one with a new key partway.
        let periodic: Vec<u32> = (0..100).map(|i| i % 5).collect();
        let broken: Vec<u32> = (0..40).map(|i| if i == 17 { 9 } else { i % 3 }).collect();
        for key_of_row in cases.into_iter().chain([&periodic[..], &broken[..]]) {
            let (plain, shared) = keyed_column(key_of_row);
            let expected = response_of(plain);
            assert_eq!(response_of(shared), expected, "{key_of_row:?}");
        }
        // Random rows, often periodic with breaks, so copies start and end mid-step.
        let mut rng = fastrand::Rng::with_seed(22);
        for _ in 0..3000 {
            let distinct = rng.u32(1..30);
            let period = rng.u32(1..8);
            let key_of_row: Vec<u32> = (0..rng.u32(0..80))
                .map(|j| {
                    if rng.u8(..) < 40 {
                        rng.u32(0..distinct)
                    } else {
                        j % period
                    }
                })
                .collect();
            let (plain, shared) = keyed_column(&key_of_row);
            let expected = response_of(plain);
            assert_eq!(response_of(shared), expected, "{key_of_row:?}");
        }
        let (plain, _) = keyed_column(&[0, 1, 0]);
        assert_eq!(
            response_of(plain),
            r#"{"results":[{"values":[0.0,0.5,0.0],"statuses":["PRESENT","NOT_FOUND","PRESENT"],"event_timestamps":["2023-11-14T22:13:20Z","2023-11-14T22:13:21Z","2023-11-14T22:13:20Z"]}],"metadata":{"feature_names":["f"]}}"#
        );
    }

    #[test]
    fn columns_with_the_same_rows_follow_the_same_steps() {
        let by_4: Vec<u32> = (0..30).map(|i| i % 4).collect();
        let by_7: Vec<u32> = (0..30).map(|i| (i * i) % 7).collect();
        let (plain_4, shared_4) = keyed_column(&by_4);
        let (plain_7, shared_7) = keyed_column(&by_7);
        let response = |columns: Vec<FeatureColumn>| {
            let resp = OnlineFeaturesResponse {
                feature_names: vec!["f".to_string(); columns.len()].into(),
                columns,
                feature_view_metadata: None,
                request_data: Vec::new(),
            };
            let mut out = Vec::new();
            write_response(&resp, &mut out);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(
            response(vec![
                shared_4.clone(),
                shared_4.clone(),
                shared_7,
                plain_4.clone(),
                shared_4
            ]),
            response(vec![
                plain_4.clone(),
                plain_4.clone(),
                plain_7,
                plain_4.clone(),
                plain_4
            ])
        );
        assert_eq!(
            row_steps(&RowKeys {
                key_of_row: vec![0, 1, 0, 1, 0, 1, 0],
                first_row: vec![0, 1],
            }),
            [
                Step::Write,
                Step::Write,
                Step::Copy { from: 0, rows: 2 },
                Step::Copy { from: 0, rows: 3 }
            ]
        );
    }

    #[test]
    fn values_encode_like_feast() {
        assert_eq!(json(Val::FloatVal(0.296_535_58)), "0.29653558135032654");
        assert_eq!(json(Val::Int64Val(545)), "545");
        assert_eq!(json(Val::Int64Val(i64::MAX)), "9223372036854775807");
        assert_eq!(json(Val::DoubleVal(f64::NAN)), "\"NaN\"");
        assert_eq!(json(Val::DoubleVal(f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(
            json(Val::BytesVal(vec![0xde, 0xad, 0xbe, 0xef])),
            "\"3q2+7w==\""
        );
        assert_eq!(
            json(Val::JsonVal(r#"{"a": [1, 2]}"#.into())),
            r#""{\"a\": [1, 2]}""#
        );
        assert_eq!(json(Val::BoolVal(true)), "true");
        assert_eq!(json(Val::UnixTimestampVal(1_795_388_400)), "1795388400");
        assert_eq!(
            json(Val::StringListVal(StringList {
                val: vec!["a\"b".into(), "é\n".into()]
            })),
            "[\"a\\\"b\",\"é\\n\"]"
        );
        assert_eq!(
            json(Val::FloatListVal(FloatList {
                val: vec![0.5, f32::INFINITY]
            })),
            "[0.5,\"Infinity\"]"
        );
        assert_eq!(json(Val::DoubleListVal(DoubleList { val: vec![] })), "[]");
        let mut m = Map::default();
        m.val.insert(
            "name".into(),
            Value {
                val: Some(Val::StringVal("driver_1001".into())),
            },
        );
        m.val.insert("age".into(), Value::default());
        assert_eq!(
            json(Val::StructVal(m)),
            r#"{"age":null,"name":"driver_1001"}"#
        );
        assert_eq!(json(Val::NullVal(0)), "null");
        assert_eq!(
            json(Val::ZonedTimestampVal(ZonedTimestamp {
                unix_timestamp: 1_795_388_400,
                zone: "-05:00".into()
            })),
            "\"2026-11-22T18:00:00-05:00\""
        );
        assert_eq!(
            json(Val::ZonedTimestampVal(ZonedTimestamp {
                unix_timestamp: 0,
                zone: String::new()
            })),
            "\"1970-01-01T00:00:00+00:00\""
        );
        assert_eq!(json(Val::StringVal("\u{1}".into())), "\"\\u0001\"");
    }

    /// Strings are escaped as Python's `json.dumps` (and serde_json) escapes them.
    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        for s in [
            every_ascii.as_str(),
            "",
            "plain",
            "{\"max_distance_km\": 36, \"zones\": [\"north\"]}",
            "tab\tend\\",
            "\u{1f}é\u{7f}\u{2028}日本",
        ] {
            let mut out = Vec::new();
            write_str(s, &mut out);
            let expected = serde_json::to_string(s).expect("a string");
            assert_eq!(String::from_utf8(out).expect("UTF-8"), expected, "{s:?}");
        }
    }
}
