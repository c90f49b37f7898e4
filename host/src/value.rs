//! Feast value types, field statuses and event timestamps.

pub use crate::proto::feast::serving::FieldStatus;
pub use crate::proto::feast::types::value::Val;
pub use crate::proto::feast::types::value_type::Enum as ValueType;
pub use crate::proto::feast::types::{RepeatedValue, Value};
pub use stored::decode_stored;

mod stored;

/// A feature's event time as Feast stores it: seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds within the second (0..1e9).
    pub nanos: i32,
}

impl EventTime {
    /// The epoch, Feast's "no timestamp".
    pub const EPOCH: EventTime = EventTime {
        seconds: 0,
        nanos: 0,
    };

    /// An event time of whole seconds.
    pub const fn from_secs(seconds: i64) -> Self {
        EventTime { seconds, nanos: 0 }
    }

    /// An event time from fractional seconds.
    pub fn from_secs_f64(secs: f64) -> Self {
        let whole = secs.floor();
        EventTime {
            seconds: whole as i64,
            nanos: ((secs - whole) * 1e9).round().min(999_999_999.0) as i32,
        }
    }

    /// Parses the datetime text older Feast versions stored in SQLite:
    /// `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]` (UTC when no offset).
    pub fn parse_datetime(s: &str) -> Option<Self> {
        let b = s.trim().as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            if part.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(part).ok()?.parse().ok()
            } else {
                None
            }
        };
        if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos: i64 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let frac = &b[start..i];
            for k in 0..9 {
                nanos = nanos * 10 + frac.get(k).map_or(0, |c| i64::from(c - b'0'));
            }
        }
        let offset_secs = match b.get(i) {
            None => 0,
            Some(b'Z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) => {
                let oh = num(i + 1..i + 3)?;
                let om = match b.get(i + 3) {
                    Some(b':') => num(i + 4..i + 6)?,
                    _ => num(i + 3..i + 5)?,
                };
                let o = oh * 3600 + om * 60;
                if *sign == b'+' { o } else { -o }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        Some(EventTime {
            seconds: days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs,
            nanos: nanos as i32,
        })
    }

    /// Whole seconds, truncated toward zero (Python's `int(datetime.timestamp())`,
    /// which Feast's SQLite store writes).
    pub fn seconds_toward_zero(self) -> i64 {
        if self.seconds < 0 && self.nanos > 0 {
            self.seconds + 1
        } else {
            self.seconds
        }
    }

    /// The time as Feast's Redis reader hands it on: fractional seconds in a float,
    /// then a Python `datetime`, which keeps microseconds (rounded half to even).
    pub fn through_python_datetime(self) -> Self {
        let secs = self.seconds as f64 + f64::from(self.nanos) / 1e9;
        let whole = secs.trunc();
        let mut micros = ((secs - whole) * 1e6).round_ties_even();
        let mut seconds = whole;
        if micros >= 1e6 {
            micros -= 1e6;
            seconds += 1.0;
        } else if micros < 0.0 {
            micros += 1e6;
            seconds -= 1.0;
        }
        EventTime {
            seconds: seconds as i64,
            nanos: micros as i32 * 1000,
        }
    }

    /// As a protobuf `Timestamp`.
    pub fn to_proto(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.seconds,
            nanos: self.nanos,
        }
    }

    /// Appends the RFC 3339 form Feast prints: UTC with `Z` and 0, 3, 6 or 9
    /// fractional digits (the fewest that keep the value).
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let days = self.seconds.div_euclid(86_400);
        let secs_of_day = self.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
        if (0..=9999).contains(&y) {
            push_digits(out, y as u64, 4);
        } else {
            out.extend_from_slice(y.to_string().as_bytes());
        }
        out.push(b'-');
        push_digits(out, u64::from(m), 2);
        out.push(b'-');
        push_digits(out, u64::from(d), 2);
        out.push(b'T');
        push_digits(out, hh as u64, 2);
        out.push(b':');
        push_digits(out, mm as u64, 2);
        out.push(b':');
        push_digits(out, ss as u64, 2);
        let nanos = self.nanos.clamp(0, 999_999_999) as u64;
        if nanos != 0 {
            out.push(b'.');
            if nanos.is_multiple_of(1_000_000) {
                push_digits(out, nanos / 1_000_000, 3);
            } else if nanos.is_multiple_of(1_000) {
                push_digits(out, nanos / 1_000, 6);
            } else {
                push_digits(out, nanos, 9);
            }
        }
        out.push(b'Z');
    }

    /// The RFC 3339 form as a `String`.
    #[expect(clippy::expect_used, reason = "write_rfc3339 writes ASCII only")]
    pub fn to_rfc3339(self) -> String {
        let mut out = Vec::with_capacity(30);
        self.write_rfc3339(&mut out);
        String::from_utf8(out).expect("RFC 3339 text is ASCII")
    }
}

fn push_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for i in (0..width).rev() {
        out[start + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// A proleptic Gregorian date to days since the epoch.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since the epoch to a proleptic Gregorian (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An integer value (INT32, INT64, UNIX_TIMESTAMP) as an i64.
pub fn integer(v: &Val) -> Option<i64> {
    match v {
        Val::Int64Val(i) | Val::UnixTimestampVal(i) => Some(*i),
        Val::Int32Val(i) => Some(i64::from(*i)),
        _ => None,
    }
}

/// A numeric value (DOUBLE, FLOAT, INT32, INT64) as an f64.
pub fn number(v: &Val) -> Option<f64> {
    match v {
        Val::DoubleVal(f) => Some(*f),
        Val::FloatVal(f) => Some(f64::from(*f)),
        Val::Int64Val(i) => Some(*i as f64),
        Val::Int32Val(i) => Some(f64::from(*i)),
        _ => None,
    }
}

/// A copy of `v`, with scalars copied inline: repeated rows of a column copy many of them, and
/// the derived `clone` goes through a call and a stack round trip for each.
pub(crate) fn copy_value(v: &Value) -> Value {
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

/// Whether a value is missing: no oneof set, or Feast's explicit `null_val`.
pub fn is_null(v: &Value) -> bool {
    matches!(v.val, None | Some(Val::NullVal(_)))
}

/// Feast's name for a value type number (e.g. `INT64`), or `UNKNOWN(<n>)` for a
/// type newer than this server knows.
pub fn value_type_name(value_type: i32) -> String {
    match ValueType::try_from(value_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("UNKNOWN({value_type})"),
    }
}

/// Whether this server knows a value type number.
pub fn is_known_value_type(value_type: i32) -> bool {
    ValueType::try_from(value_type).is_ok()
}

/// Feast's status name (`PRESENT`, `NOT_FOUND`, ...).
pub fn status_name(status: FieldStatus) -> &'static str {
    status.as_str_name()
}

/// Appends a float the way Python's `repr(float)` prints it: the shortest digits that
/// round-trip, fixed notation for decimal exponents -4..16 (with `.0` when integral),
/// otherwise `d.ddde+XX`. Non-finite values print as `nan`, `inf`, `-inf`.
pub fn write_python_float(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(b"nan");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    if f == 0.0 {
        out.extend_from_slice(if f.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    let mut buf = ryu::Buffer::new();
    let ryu_text = buf.format_finite(f).as_bytes();
    // ryu prints fixed notation, the same shortest digits and `.0` for integral
    // values, for decimal exponents -5..16: Python's fixed range -4..16 is inside it.
    // A shortest round-trip form cannot cross a power of ten the double is not at,
    // so every other value has a decimal exponent below -4 or from 16 on.
    if (1e-4..1e16).contains(&f.abs()) {
        out.extend_from_slice(ryu_text);
        return;
    }
    let (negative, text) = match ryu_text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, ryu_text),
    };
    let (mantissa, exp) = match text.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => (
            &text[..i],
            std::str::from_utf8(&text[i + 1..])
                .ok()
                .and_then(|e| e.parse::<i32>().ok())
                .unwrap_or(0),
        ),
        None => (text, 0),
    };
    let int_len = mantissa
        .iter()
        .position(|&c| c == b'.')
        .unwrap_or(mantissa.len());
    // ryu prints at most 17 significant digits, after at most 5 zeros (fixed
    // notation below 1e-4 switches to an exponent), so 24 bytes always suffice.
    let mut digit_buf = [0u8; 24];
    let mut len = 0;
    for &c in mantissa.iter().filter(|c| c.is_ascii_digit()) {
        if let Some(slot) = digit_buf.get_mut(len) {
            *slot = c;
            len += 1;
        }
    }
    // value = 0.DIGITS x 10^point
    let mut point = int_len as i32 + exp;
    let leading = digit_buf[..len].iter().take_while(|&&c| c == b'0').count();
    let mut digits = &digit_buf[leading..len];
    point -= leading as i32;
    while let Some((b'0', rest)) = digits.split_last() {
        digits = rest;
    }
    // Python's exponent form: `d[.ddd]e-XX` or `d[.ddd]e+XX`, at least two digits.
    let Some((first, rest)) = digits.split_first() else {
        // Not reached (zero is printed above); ryu's text is still a valid number.
        out.extend_from_slice(ryu_text);
        return;
    };
    if negative {
        out.push(b'-');
    }
    out.push(*first);
    if !rest.is_empty() {
        out.push(b'.');
        out.extend_from_slice(rest);
    }
    let x = point - 1;
    out.push(b'e');
    out.push(if x < 0 { b'-' } else { b'+' });
    // Decimal exponents of an f64 have at most three digits.
    let ax = x.unsigned_abs().min(999);
    if ax >= 100 {
        out.push(b'0' + (ax / 100) as u8);
    }
    out.push(b'0' + (ax / 10 % 10) as u8);
    out.push(b'0' + (ax % 10) as u8);
}

/// A typed list when every item has the same scalar type (ints and floats mix as
/// DOUBLE), else a `list_val` of the items.
pub(crate) fn narrow_list(items: Vec<Value>) -> Val {
    let all = |f: fn(&Val) -> bool| items.iter().all(|v| v.val.as_ref().is_some_and(f));
    if all(|v| matches!(v, Val::Int64Val(_))) {
        return Val::Int64ListVal(crate::proto::feast::types::Int64List {
            val: items
                .iter()
                .filter_map(|v| match v.val {
                    Some(Val::Int64Val(i)) => Some(i),
                    _ => None,
                })
                .collect(),
        });
    }
    if all(|v| matches!(v, Val::Int64Val(_) | Val::DoubleVal(_))) {
        return Val::DoubleListVal(crate::proto::feast::types::DoubleList {
            val: items
                .iter()
                .filter_map(|v| match v.val {
                    Some(Val::Int64Val(i)) => Some(i as f64),
                    Some(Val::DoubleVal(f)) => Some(f),
                    _ => None,
                })
                .collect(),
        });
    }
    if all(|v| matches!(v, Val::BoolVal(_))) {
        return Val::BoolListVal(crate::proto::feast::types::BoolList {
            val: items
                .iter()
                .filter_map(|v| match v.val {
                    Some(Val::BoolVal(b)) => Some(b),
                    _ => None,
                })
                .collect(),
        });
    }
    if all(|v| matches!(v, Val::StringVal(_))) {
        return Val::StringListVal(crate::proto::feast::types::StringList {
            val: items
                .into_iter()
                .filter_map(|v| match v.val {
                    Some(Val::StringVal(s)) => Some(s),
                    _ => None,
                })
                .collect(),
        });
    }
    Val::ListVal(RepeatedValue { val: items })
}

/// A JSON value as Feast's JSON APIs take it: integers as INT64, other numbers as
/// DOUBLE, strings, booleans, null as a missing value, arrays as typed lists (or a
/// `list_val` when mixed) and objects as maps.
pub(crate) fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    let val = match v {
        Json::Null => return Value::default(),
        Json::Bool(b) => Val::BoolVal(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Val::Int64Val(i),
            None => Val::DoubleVal(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Val::StringVal(s.clone()),
        Json::Array(items) => narrow_list(items.iter().map(from_json).collect()),
        Json::Object(m) => Val::MapVal(crate::proto::feast::types::Map {
            val: m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
        }),
    };
    Value { val: Some(val) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_go_through_a_python_datetime_as_feast_reads_them_back() {
        let t = |seconds, nanos| EventTime { seconds, nanos };
        for (before, after) in [
            (t(1_732_233_600, 123_456_789), t(1_732_233_600, 123_457_000)),
            (t(1_732_233_600, 999_999_700), t(1_732_233_601, 0)),
            (t(1_700_000_000, 500), t(1_700_000_000, 0)),
            (t(0, 0), t(0, 0)),
            (t(-1, 999_999_999), t(0, 0)),
        ] {
            assert_eq!(before.through_python_datetime(), after, "{before:?}");
        }
    }

    #[test]
    fn rfc3339_matches_feast() {
        assert_eq!(EventTime::EPOCH.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            EventTime::from_secs(1_795_388_400).to_rfc3339(),
            "2026-11-22T23:00:00Z"
        );
        let t = |nanos| {
            EventTime {
                seconds: 1_618_225_200,
                nanos,
            }
            .to_rfc3339()
        };
        assert_eq!(t(500_000_000), "2021-04-12T11:00:00.500Z");
        assert_eq!(t(123_456_000), "2021-04-12T11:00:00.123456Z");
        assert_eq!(t(1), "2021-04-12T11:00:00.000000001Z");
        assert_eq!(
            EventTime::from_secs(-1).to_rfc3339(),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            EventTime::from_secs(951_782_400).to_rfc3339(),
            "2000-02-29T00:00:00Z"
        );
    }

    fn py(f: f64) -> String {
        let mut out = Vec::new();
        write_python_float(f, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn floats_print_like_python_repr() {
        assert_eq!(py(f64::from(0.296_535_58_f32)), "0.29653558135032654");
        assert_eq!(py(1.2965355813503265), "1.2965355813503265");
        assert_eq!(py(1000.2965355813503), "1000.2965355813503");
        assert_eq!(py(1001.0), "1001.0");
        assert_eq!(py(0.0), "0.0");
        assert_eq!(py(-0.0), "-0.0");
        assert_eq!(py(1e16), "1e+16");
        assert_eq!(py(1e15), "1000000000000000.0");
        assert_eq!(py(1.5e-5), "1.5e-05");
        assert_eq!(py(0.0001), "0.0001");
        assert_eq!(py(123456789012345680.0), "1.2345678901234568e+17");
        assert_eq!(py(-2.5e-300), "-2.5e-300");
        assert_eq!(py(5e-324), "5e-324");
        assert_eq!(py(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(py(0.1), "0.1");
        assert_eq!(py(-123.5), "-123.5");
        assert_eq!(py(9999999999999998.0), "9999999999999998.0");
        assert_eq!(py(0.00012), "0.00012");
        assert_eq!(py(0.000099), "9.9e-05");
        assert_eq!(py(f64::NAN), "nan");
    }

    /// Distinct finite doubles to check printing on: the neighbours of every power of
    /// ten (where the notation switches), random bit patterns (every class, both
    /// signs), widened f32s, and random values scaled across 1e-6..1e18.
    fn sample_doubles(random: usize) -> Vec<f64> {
        let mut values = Vec::new();
        for e in -324..=308 {
            let Ok(p) = format!("1e{e}").parse::<f64>() else {
                continue;
            };
            for k in 0..4u64 {
                for bits in [p.to_bits().wrapping_add(k), p.to_bits().wrapping_sub(k)] {
                    values.push(f64::from_bits(bits));
                    values.push(-f64::from_bits(bits));
                }
            }
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..random {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x));
            values.push(f64::from(f32::from_bits(x as u32)));
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            values.extend((-6..19).map(|e| unit * 10f64.powi(e)));
        }
        values.retain(|f| f.is_finite());
        values.sort_unstable_by_key(|f| f.to_bits());
        values.dedup_by_key(|f| f.to_bits());
        values
    }

    #[test]
    fn printed_floats_read_back_exactly() {
        for f in sample_doubles(20_000) {
            let text = py(f);
            assert_eq!(text.parse::<f64>().ok(), Some(f), "{text}");
            assert!(text.contains('.') || text.contains('e'), "{text}");
        }
        assert_eq!(py(0.000_123_456_789_012_345_67), "0.00012345678901234567");
    }

    /// CPython is the reference for `repr(float)`: the same text on a sample of doubles.
    #[test]
    fn floats_print_like_cpython() {
        let values = sample_doubles(4_000);
        let input: String = values
            .iter()
            .map(|f| format!("{:016x}\n", f.to_bits()))
            .collect();
        let script = "import struct,sys\n\
            print('\\n'.join(repr(struct.unpack('<d', struct.pack('<Q', int(h, 16)))[0]) \
            for h in sys.stdin.read().split()))";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (the reference for repr(float)) must be installed");
        // Python reads all of its input before it writes anything.
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
            .expect("write to python3");
        let output = child.wait_with_output().expect("python3 output");
        assert!(output.status.success(), "python3 failed");
        let expected = String::from_utf8(output.stdout).expect("utf8");
        let expected: Vec<&str> = expected.lines().collect();
        assert_eq!(expected.len(), values.len());
        let wrong: Vec<String> = values
            .iter()
            .zip(&expected)
            .filter(|(f, want)| py(**f) != **want)
            .take(10)
            .map(|(f, want)| format!("{:016x}: {} != {want}", f.to_bits(), py(*f)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn parses_old_feast_sqlite_timestamps() {
        let t = |s| EventTime::parse_datetime(s);
        assert_eq!(
            t("2026-11-22 23:00:00"),
            Some(EventTime::from_secs(1_795_388_400))
        );
        assert_eq!(
            t("2026-11-22T23:00:00Z"),
            Some(EventTime::from_secs(1_795_388_400))
        );
        assert_eq!(
            t("2026-11-22 23:00:00.25"),
            Some(EventTime {
                seconds: 1_795_388_400,
                nanos: 250_000_000
            })
        );
        assert_eq!(
            t("2026-11-23 01:00:00+02:00"),
            Some(EventTime::from_secs(1_795_388_400))
        );
        assert_eq!(t("1969-12-31 23:59:59"), Some(EventTime::from_secs(-1)));
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2026-13-01 00:00:00"), None);
    }

    #[test]
    fn type_names() {
        assert_eq!(value_type_name(4), "INT64");
        assert_eq!(value_type_name(20), "MAP");
        assert_eq!(value_type_name(99), "UNKNOWN(99)");
        assert!(is_known_value_type(48));
        assert!(!is_known_value_type(30));
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
