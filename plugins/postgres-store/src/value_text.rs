//! The `value_text` and `value_num` columns Feast's PostgreSQL store writes beside
//! each value (`extract_text_and_num` of feast 0.67): for a string its text; for an
//! int32, int64, float or double Python's `str()` of the number (a float is widened to
//! a double first, as protobuf hands it to Python) and the number as a double; for a
//! bool `True`/`False` and 1.0/0.0; for every other type (and a null) nothing.

use feast_plugin_sdk::store::read_varint;

/// The scalar a serialized `feast.types.Value` holds, as far as these columns care.
#[derive(Debug, PartialEq)]
enum Scalar<'a> {
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Other,
}

/// `(value_text, value_num)` of a serialized value.
pub(crate) fn text_and_num(value: &[u8]) -> (Option<String>, Option<f64>) {
    match scalar(value) {
        Scalar::Text(s) => (Some(s.to_string()), None),
        Scalar::Int(i) => (Some(i.to_string()), Some(i as f64)),
        Scalar::Float(f) => (Some(python_repr(f)), Some(f)),
        Scalar::Bool(b) => (
            Some(if b { "True" } else { "False" }.to_string()),
            Some(if b { 1.0 } else { 0.0 }),
        ),
        Scalar::Other => (None, None),
    }
}

/// The last `val` oneof member set in the message (as protobuf decodes a oneof);
/// `Other` for anything not decodable.
fn scalar(mut b: &[u8]) -> Scalar<'_> {
    let mut out = Scalar::Other;
    while !b.is_empty() {
        let Some(key) = read_varint(&mut b) else {
            return Scalar::Other;
        };
        let (field, wire) = (key >> 3, key & 7);
        out = match (field, wire) {
            (2, 2) => match length_delimited(&mut b).map(std::str::from_utf8) {
                Some(Ok(s)) => Scalar::Text(s),
                _ => return Scalar::Other,
            },
            // int32 is sign-extended to 64 bits on the wire.
            (3, 0) | (4, 0) => match read_varint(&mut b) {
                Some(v) if field == 3 => Scalar::Int(i64::from(v as i32)),
                Some(v) => Scalar::Int(v as i64),
                None => return Scalar::Other,
            },
            (5, 1) => match take::<8>(&mut b) {
                Some(x) => Scalar::Float(f64::from_le_bytes(x)),
                None => return Scalar::Other,
            },
            (6, 5) => match take::<4>(&mut b) {
                Some(x) => Scalar::Float(f64::from(f32::from_le_bytes(x))),
                None => return Scalar::Other,
            },
            (7, 0) => match read_varint(&mut b) {
                Some(v) => Scalar::Bool(v != 0),
                None => return Scalar::Other,
            },
            (_, w) => {
                if skip(&mut b, w).is_none() {
                    return Scalar::Other;
                }
                Scalar::Other
            }
        };
    }
    out
}

fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = b.split_first_chunk::<N>()?;
    *b = rest;
    Some(*head)
}

fn length_delimited<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(read_varint(b)?).ok()?;
    let (head, rest) = (b.get(..n)?, b.get(n..)?);
    *b = rest;
    Some(head)
}

fn skip(b: &mut &[u8], wire: u64) -> Option<()> {
    match wire {
        0 => read_varint(b).map(drop),
        1 => take::<8>(b).map(drop),
        2 => length_delimited(b).map(drop),
        5 => take::<4>(b).map(drop),
        _ => None,
    }
}

/// Python's `repr()` (and `str()`) of a float: the shortest digits that round-trip,
/// in positional notation when the decimal point falls within 16 digits, else in
/// exponent notation with at least two exponent digits; `.0` on integral values.
pub(crate) fn python_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` prints the same shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // The value is 0.<digits> x 10^decpt.
    let decpt = exp + 1;
    let body = if !(-3..=16).contains(&decpt) {
        let m = match digits.split_at(1) {
            (first, "") => first.to_string(),
            (first, rest) => format!("{first}.{rest}"),
        };
        format!(
            "{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        )
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat(decpt.unsigned_abs() as usize))
    } else {
        let point = decpt as usize;
        if point >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_prints_them() {
        // Each pair checked with CPython 3: repr(float(x)).
        for (x, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (-2.5e-300, "-2.5e-300"),
            (f64::from(0.1f32), "0.10000000149011612"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(python_repr(x), want, "{x}");
        }
    }

    #[test]
    fn columns_follow_the_value_type() {
        // Serialized values as Feast writes them.
        assert_eq!(text_and_num(b"\x12\x03abc"), (Some("abc".into()), None));
        assert_eq!(text_and_num(b"\x20\x2a"), (Some("42".into()), Some(42.0)));
        let minus_one_int32 = b"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
        assert_eq!(
            text_and_num(minus_one_int32),
            (Some("-1".into()), Some(-1.0))
        );
        let mut double = vec![0x29];
        double.extend_from_slice(&0.5f64.to_le_bytes());
        assert_eq!(text_and_num(&double), (Some("0.5".into()), Some(0.5)));
        let mut float = vec![0x35];
        float.extend_from_slice(&0.1f32.to_le_bytes());
        assert_eq!(
            text_and_num(&float).0.as_deref(),
            Some("0.10000000149011612")
        );
        assert_eq!(text_and_num(b"\x38\x01"), (Some("True".into()), Some(1.0)));
        assert_eq!(text_and_num(b"\x38\x00"), (Some("False".into()), Some(0.0)));
        // A null (empty message), bytes, a list: nothing.
        assert_eq!(text_and_num(b""), (None, None));
        assert_eq!(text_and_num(b"\x0a\x01x"), (None, None));
        assert_eq!(text_and_num(b"\x72\x02\x08\x01"), (None, None));
        // A Unix timestamp (int64 on the wire, field 8) is not a number here.
        assert_eq!(text_and_num(b"\x40\x01"), (None, None));
    }
}
