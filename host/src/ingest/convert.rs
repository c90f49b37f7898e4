//! The cells of a written dataframe as Feast stores them: a feature value in its
//! view's declared type (the rules of the read side's coercion, which follow Feast's
//! `python_values_to_proto_values`), serialized, with the text Feast's SQLite store
//! keeps beside it; event and created times.

use prost::Message;
use serde_json::Value as Json;

use crate::entity_key::{coerce, python_float_str};
use crate::online_store::WriteValue;
use crate::value::{EventTime, Val, Value, ValueType, from_json, value_type_name};

/// A feature cell in the declared type `value_type`, ready to write.
pub(crate) fn feature_value(cell: &Json, value_type: i32) -> Result<WriteValue, String> {
    Ok(write_value(&typed(cell, value_type)?))
}

/// A value as it is written: serialized, with its text.
pub(crate) fn write_value(value: &Value) -> WriteValue {
    WriteValue {
        text: value_text(value),
        bytes: value.encode_to_vec(),
    }
}

/// A cell as a Feast `Value` of the declared type (null stays null).
pub(crate) fn typed(cell: &Json, value_type: i32) -> Result<Value, String> {
    if cell.is_null() {
        return Ok(Value::default());
    }
    let vt = ValueType::try_from(value_type)
        .ok()
        .filter(|t| *t != ValueType::Invalid)
        .ok_or_else(|| {
            format!(
                "the declared type {} cannot be written",
                value_type_name(value_type)
            )
        })?;
    let val = match (vt, cell) {
        // JSON text is kept as written; other JSON values are written as Python's
        // `json.dumps` writes them.
        (ValueType::Json, Json::String(s)) => {
            serde_json::from_str::<serde::de::IgnoredAny>(s)
                .map_err(|e| format!("{s:?} is not valid JSON: {e}"))?;
            Val::JsonVal(s.clone())
        }
        (ValueType::Json, other) => Val::JsonVal(python_json(other)),
        (ValueType::UnixTimestamp, Json::String(s)) if parse_time(s).is_some() => {
            Val::UnixTimestampVal(parse_time(s).map_or(0, |t| t.seconds))
        }
        // Maps and structs also come as JSON text (Feast's remote client sends them
        // so), which Feast parses.
        (ValueType::Map | ValueType::Struct, Json::String(s)) => {
            let parsed: Json =
                serde_json::from_str(s).map_err(|e| format!("{s:?} is not a JSON object: {e}"))?;
            if !parsed.is_object() {
                return Err(format!("{s:?} is not a JSON object"));
            }
            return coerce(&from_json(&parsed), vt).map_err(|e| e.to_string());
        }
        _ => return coerce(&from_json(cell), vt).map_err(|e| e.to_string()),
    };
    Ok(Value { val: Some(val) })
}

/// What Feast's SQLite store writes in `value_text`: `str()` of a string, number or
/// boolean (FLOAT widened to a double first), nothing for other types.
pub(crate) fn value_text(v: &Value) -> Option<String> {
    Some(match v.val.as_ref()? {
        Val::StringVal(s) => s.clone(),
        Val::Int64Val(i) => i.to_string(),
        Val::Int32Val(i) => i.to_string(),
        Val::DoubleVal(f) => python_float_str(*f),
        Val::FloatVal(f) => python_float_str(f64::from(*f)),
        Val::BoolVal(b) => if *b { "True" } else { "False" }.to_string(),
        _ => return None,
    })
}

/// An event or created time cell: an ISO 8601 date and time (UTC when it has no
/// offset), a date, or seconds since the epoch; null (or Feast's `"NaT"`) for none.
/// Kept to the microsecond, as Feast keeps it.
pub(crate) fn time_value(cell: &Json) -> Result<Option<EventTime>, String> {
    let t = match cell {
        Json::Null => return Ok(None),
        Json::String(s) if s == "NaT" => return Ok(None),
        Json::String(s) => parse_time(s).ok_or_else(|| {
            format!("{s:?} is not a date and time (ISO 8601, e.g. \"2026-12-01T10:00:00Z\")")
        })?,
        Json::Number(n) => match n.as_i64() {
            Some(secs) => EventTime::from_secs(secs),
            None => EventTime::from_secs_f64(n.as_f64().unwrap_or(f64::NAN)),
        },
        other => {
            return Err(format!(
                "{other} is not a date and time (an ISO 8601 string or seconds since the epoch)"
            ));
        }
    };
    Ok(Some(to_micros(t)))
}

/// Microseconds are all Feast keeps of an event time.
fn to_micros(t: EventTime) -> EventTime {
    EventTime {
        seconds: t.seconds,
        nanos: t.nanos - t.nanos % 1000,
    }
}

/// A date and time, or a date (midnight UTC).
pub(crate) fn parse_time(s: &str) -> Option<EventTime> {
    EventTime::parse_datetime(s).or_else(|| {
        let s = s.trim();
        (s.len() == 10)
            .then(|| EventTime::parse_datetime(&format!("{s}T00:00:00Z")))
            .flatten()
    })
}

/// JSON text as Python's `json.dumps` writes it by default: `", "` and `": "`
/// separators, non-ASCII escaped, floats as `repr` prints them, keys in order.
pub(crate) fn python_json(v: &Json) -> String {
    let mut out = String::new();
    write_python_json(v, &mut out);
    out
}

fn write_python_json(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            (None, None) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match python_float_str(f).as_str() {
                    "inf" => out.push_str("Infinity"),
                    "-inf" => out.push_str("-Infinity"),
                    "nan" => out.push_str("NaN"),
                    text => out.push_str(text),
                }
            }
        },
        Json::String(s) => write_python_str(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(item, out);
            }
            out.push(']');
        }
        Json::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_str(k, out);
                out.push_str(": ");
                write_python_json(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string with Python's `ensure_ascii` escapes.
fn write_python_str(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(v: &WriteValue) -> String {
        v.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn values_serialize_as_feast_writes_them() {
        // Value bytes printed by feast 0.67's python_values_to_proto_values.
        let cases: [(Json, ValueType, &str, Option<&str>); 11] = [
            (json!(7), ValueType::Int64, "2007", Some("7")),
            (json!(5), ValueType::Int32, "1805", Some("5")),
            (json!(0.5), ValueType::Float, "350000003f", Some("0.5")),
            (
                json!(0.5),
                ValueType::Double,
                "29000000000000e03f",
                Some("0.5"),
            ),
            (json!("x"), ValueType::String, "120178", Some("x")),
            (json!(true), ValueType::Bool, "3801", Some("True")),
            (
                json!(1767225600),
                ValueType::UnixTimestamp,
                "4080f2d6ca06",
                None,
            ),
            (json!([1, 2]), ValueType::Int64List, "72040a020102", None),
            (
                json!({"k": 1}),
                ValueType::Json,
                "8202087b226b223a20317d",
                None,
            ),
            (json!(null), ValueType::Int64, "", None),
            (
                json!("{\"vehicle_type\": \"truck\"}"),
                ValueType::Map,
                "a201190a170a0c76656869636c655f7479706512071205747275636b",
                None,
            ),
        ];
        for (cell, vt, bytes, text) in cases {
            let v = feature_value(&cell, vt as i32).expect("converts");
            assert_eq!(hex(&v), bytes, "{cell} as {vt:?}");
            assert_eq!(v.text.as_deref(), text, "{cell} as {vt:?}");
        }
        let f = feature_value(&json!(0.2), ValueType::Float as i32).expect("float");
        assert_eq!(f.text.as_deref(), Some("0.20000000298023224"), "widened");
    }

    #[test]
    fn bad_cells_say_why() {
        for (cell, vt) in [
            (json!("abc"), ValueType::Int64),
            (json!(8.7), ValueType::Int64),
            (json!(1u64 << 40), ValueType::Int32),
            (json!("{not json"), ValueType::Json),
            (json!([1, "a"]), ValueType::Int64List),
        ] {
            assert!(feature_value(&cell, vt as i32).is_err(), "{cell} as {vt:?}");
        }
    }

    #[test]
    fn times_are_iso_text_dates_or_epoch_seconds() {
        let t = |c: Json| time_value(&c).expect("a time").expect("not null");
        assert_eq!(t(json!("2026-12-01T10:00:00Z")).seconds, 1_796_119_200);
        assert_eq!(t(json!("2026-12-01 12:00:00+02:00")).seconds, 1_796_119_200);
        assert_eq!(t(json!("2026-12-01T10:00:00")).seconds, 1_796_119_200);
        assert_eq!(t(json!("2026-12-01")).seconds, 1_796_083_200);
        assert_eq!(t(json!(1_796_119_200)).seconds, 1_796_119_200);
        let frac = t(json!("2026-12-01T10:00:00.123456789Z"));
        assert_eq!(frac.nanos, 123_456_000, "microseconds kept");
        assert_eq!(time_value(&json!(null)), Ok(None));
        assert_eq!(time_value(&json!("NaT")), Ok(None));
        assert!(time_value(&json!("yesterday")).is_err());
        assert!(time_value(&json!([1])).is_err());
    }

    #[test]
    fn json_is_dumped_like_python() {
        assert_eq!(
            python_json(&json!({"b": [1, 2.5, true, null], "a": {"é": "x\n"}})),
            r#"{"b": [1, 2.5, true, null], "a": {"\u00e9": "x\n"}}"#
        );
    }
}
