//! Feast's `get-online-features` JSON request, parsed straight into the engine's
//! request (no intermediate JSON tree), with errors that name the offending field.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::api::OnlineFeaturesRequest;
use crate::error::Error;
use crate::proto::feast::types::Map;
use crate::value::{Val, Value, narrow_list};

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    feature_service: Option<String>,
    #[serde(default)]
    entities: Option<Columns>,
    #[serde(default)]
    request_context: Option<Columns>,
    #[serde(default)]
    full_feature_names: LaxBool,
    #[serde(default)]
    include_feature_view_version_metadata: LaxBool,
}

/// A request flag, read as pydantic's lax mode reads a `bool` (Feast's request model):
/// `true`/`false`, `1`/`0` (also `1.0`/`0.0`) and the strings `true`, `t`, `yes`,
/// `y`, `on`, `1` and `false`, `f`, `no`, `n`, `off`, `0` in any case. Anything
/// else, `null` included, is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LaxBool(pub(crate) bool);

impl<'de> Deserialize<'de> for LaxBool {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LaxBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean (true, false, 1, 0, \"yes\", \"no\", \"on\", \"off\"...)")
            }
            fn visit_bool<E>(self, v: bool) -> Result<LaxBool, E> {
                Ok(LaxBool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LaxBool, E> {
                match v {
                    0 | 1 => Ok(LaxBool(v == 1)),
                    _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LaxBool, E> {
                match v {
                    0 | 1 => Ok(LaxBool(v == 1)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LaxBool, E> {
                if v == 0.0 || v == 1.0 {
                    Ok(LaxBool(v == 1.0))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LaxBool, E> {
                const TRUE: [&str; 6] = ["true", "t", "yes", "y", "on", "1"];
                const FALSE: [&str; 6] = ["false", "f", "no", "n", "off", "0"];
                if TRUE.iter().any(|t| t.eq_ignore_ascii_case(v)) {
                    Ok(LaxBool(true))
                } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(v)) {
                    Ok(LaxBool(false))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a request body. Any content type is accepted as long as the body is JSON.
pub fn parse_request(body: &[u8]) -> Result<OnlineFeaturesRequest, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::InvalidRequest(
            "the request body is empty: send a JSON object with `features` (or `feature_service`) and `entities`".into(),
        ));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidRequest(
            "the request body must be a JSON object with `features` (or `feature_service`) and `entities`".into(),
        ));
    }
    // Tracking the path costs allocations for every key: only a body that fails
    // is parsed again to say where.
    let raw: RawRequest = serde_json::from_slice(body).map_err(|_| explain_invalid(body))?;
    let entities = raw.entities.ok_or_else(|| {
        Error::InvalidRequest(
            "the request body has no `entities`: give the join keys (and request data) as lists, e.g. {\"driver_id\": [1001]}".into(),
        )
    })?;
    Ok(OnlineFeaturesRequest {
        features: raw.features.unwrap_or_default(),
        feature_service: raw.feature_service,
        entities: entities.0,
        request_context: raw.request_context.map(|c| c.0).unwrap_or_default(),
        full_feature_names: raw.full_feature_names.0,
        include_feature_view_version_metadata: raw.include_feature_view_version_metadata.0,
    })
}

/// The error for a body that does not parse, naming the offending field.
fn explain_invalid(body: &[u8]) -> Error {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<RawRequest, _> = serde_path_to_error::deserialize(&mut de);
    let message = match parsed {
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let what = if inner.is_syntax() || inner.is_eof() {
                "the request body is not valid JSON".to_string()
            } else {
                format!("invalid `{path}` in the request body")
            };
            format!("{what}: {inner}")
        }
        Ok(_) => match de.end() {
            Err(e) => format!("the request body is not valid JSON: {e}"),
            Ok(()) => "the request body is not valid JSON".to_string(),
        },
    };
    Error::InvalidRequest(message)
}

/// `{"name": [values...], ...}` in document order.
struct Columns(Vec<(String, Vec<Value>)>);

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Columns;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping each join key to a list of values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Columns, A::Error> {
                let mut out: Vec<(String, Vec<Value>)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let values = map.next_value::<ColumnValues>()?.0;
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = values,
                        None => out.push((key, values)),
                    }
                }
                Ok(Columns(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A list of entity (or request-data) values. A list of integers, the usual entity
/// column, is read by [`int_list`]; any other list by [`AnyValues`].
struct ColumnValues(Vec<Value>);

impl<'de> Deserialize<'de> for ColumnValues {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The list's text, its JSON syntax checked by the deserializer.
        let raw = <&'de RawValue>::deserialize(d)?;
        if let Some(values) = int_list(raw.get().as_bytes()) {
            return Ok(ColumnValues(values));
        }
        let mut de = serde_json::Deserializer::from_str(raw.get());
        match AnyValues::deserialize(&mut de) {
            Ok(AnyValues(values)) => Ok(ColumnValues(values)),
            // The deserializer of the whole body adds where in it the list is.
            Err(e) => Err(de::Error::custom(without_position(&e))),
        }
    }
}

/// The values of a JSON list whose items are all integers that serde_json reads as
/// `i64` (at most 18 digits, not `-0`), as [`ValueSeed`] reads them; `None` for any
/// other text. `raw` is syntactically valid JSON. Item by item through serde such a
/// list cost about 19 ns an item on p100_100x3, the syntax check and this scan about
/// 12 together (`perf` shares of the request).
fn int_list(raw: &[u8]) -> Option<Vec<Value>> {
    let items = raw.strip_prefix(b"[")?.strip_suffix(b"]")?;
    if items.trim_ascii().is_empty() {
        return Some(Vec::new());
    }
    let count = items.iter().filter(|&&b| b == b',').count() + 1;
    // The integers are gathered first, on the stack when there are few, then made
    // into values in place: pushed one by one, each value would be built aside and
    // copied, a store-forwarding stall per item.
    let mut few = [0_i64; 32];
    let mut many = Vec::new();
    let ints: &mut [i64] = if count <= few.len() {
        &mut few[..count]
    } else {
        many.resize(count, 0);
        &mut many
    };
    for (item, int) in items.split(|&b| b == b',').zip(ints.iter_mut()) {
        *int = int_item(item.trim_ascii())?;
    }
    Some(ints.iter().map(|&v| some(Val::Int64Val(v))).collect())
}

/// One item of an integer list, as serde_json reads it to an `i64` (see [`int_list`]).
fn int_item(item: &[u8]) -> Option<i64> {
    let (negative, digits) = match item.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, item),
    };
    let leading_zero = digits.len() > 1 && digits[0] == b'0';
    if digits.is_empty() || digits.len() > 18 || leading_zero {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    match (negative, v) {
        (true, 0) => None, // serde_json reads -0 as a float
        (true, v) => Some(-v),
        (false, v) => Some(v),
    }
}

/// A serde_json error's message without the line and column it appends.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// A list of values of any JSON type, each read by [`ValueSeed`].
struct AnyValues(Vec<Value>);

impl<'de> Deserialize<'de> for AnyValues {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of values, one per entity row")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValues, A::Error> {
                // JSON gives no length: room for a batch of rows, grown past that.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while let Some(v) = seq.next_element_seed(ValueSeed)? {
                    out.push(v);
                }
                Ok(AnyValues(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Deserializes one JSON value as a Feast `Value`: integers as INT64, other numbers
/// as DOUBLE, strings, booleans, null as a missing value, arrays as typed lists
/// (or nested `list_val` when mixed) and objects as maps.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

fn some(v: Val) -> Value {
    Value { val: Some(v) }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(some(Val::BoolVal(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(some(Val::Int64Val(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(some(match i64::try_from(v) {
            Ok(i) => Val::Int64Val(i),
            Err(_) => Val::DoubleVal(v as f64),
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(some(Val::DoubleVal(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(some(Val::StringVal(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(some(Val::StringVal(v)))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::default())
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            items.push(v);
        }
        Ok(some(narrow_list(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::default();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(ValueSeed)?;
            out.val.insert(k, v);
        }
        Ok(some(Val::MapVal(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::feast::types::Int64List;

    #[test]
    fn request_flags_are_read_as_pydantic_reads_a_bool() {
        let flag = |v: &str| {
            let body = format!(r#"{{"entities":{{"k":[1]}},"full_feature_names":{v}}}"#);
            parse_request(body.as_bytes()).map(|r| r.full_feature_names)
        };
        let yes = [
            "true", "1", "1.0", "\"true\"", "\"TRUE\"", "\"yes\"", "\"On\"", "\"1\"", "\"t\"",
            "\"y\"",
        ];
        for v in yes {
            assert_eq!(flag(v).ok(), Some(true), "{v}");
        }
        let no = [
            "false",
            "0",
            "0.0",
            "\"false\"",
            "\"no\"",
            "\"OFF\"",
            "\"0\"",
            "\"f\"",
            "\"n\"",
        ];
        for v in no {
            assert_eq!(flag(v).ok(), Some(false), "{v}");
        }
        let bad = [
            "null",
            "2",
            "\"2\"",
            "\"\"",
            "\" true\"",
            "\"maybe\"",
            "[]",
            "{}",
        ];
        for v in bad {
            let err = flag(v).expect_err(v);
            assert!(err.to_string().contains("full_feature_names"), "{v}: {err}");
        }
        let meta = parse_request(
            br#"{"entities":{"k":[1]},"include_feature_view_version_metadata":"yes"}"#,
        )
        .expect("parses");
        assert!(meta.include_feature_view_version_metadata);
    }

    fn err(body: &str) -> String {
        match parse_request(body.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn parses_feast_requests() {
        let r = parse_request(
            br#"{"features":["v:a","v:b"],"entities":{"driver_id":[1001,"1002",1003.0,null],"val":[[1,2],["x"]]},"full_feature_names":true,"bogus":1}"#,
        )
        .expect("parses");
        assert_eq!(r.features, ["v:a", "v:b"]);
        assert!(r.full_feature_names);
        assert_eq!(r.entities[0].0, "driver_id");
        assert_eq!(
            r.entities[0].1,
            vec![
                some(Val::Int64Val(1001)),
                some(Val::StringVal("1002".into())),
                some(Val::DoubleVal(1003.0)),
                Value::default()
            ]
        );
        assert_eq!(
            r.entities[1].1[0],
            some(Val::Int64ListVal(Int64List { val: vec![1, 2] }))
        );
    }

    #[test]
    fn floats_parse_exactly() {
        // serde_json's default float parser can be off by one ulp; request data must
        // match what Python's json (correctly rounded) reads.
        let r = parse_request(br#"{"entities":{"x":[1001.2965355813503, 0.1]}}"#).expect("parses");
        assert_eq!(
            r.entities[0].1[0],
            some(Val::DoubleVal(1_001.296_535_581_350_3))
        );
        assert_eq!(r.entities[0].1[1], some(Val::DoubleVal(0.1)));
    }

    /// Every list `int_list` reads, it reads as serde does; every other it leaves.
    #[test]
    fn integer_lists_read_without_serde_match_serde() {
        let by_serde = |text: &str| {
            serde_json::from_str::<AnyValues>(text)
                .expect("valid JSON")
                .0
        };
        let read = [
            "[]",
            "[ ]",
            "[0]",
            "[1001,1002,1003]",
            "[ 1 , -2 ,\n3\t]",
            "[-1]",
            "[999999999999999999]",
            "[-999999999999999999]",
        ];
        for text in read {
            assert_eq!(int_list(text.as_bytes()), Some(by_serde(text)), "{text}");
        }
        let left = [
            "[-0]",
            "[1.0]",
            "[1e3]",
            "[1000000000000000000]",
            "[\"1\"]",
            "[null]",
            "[true]",
            "[[1]]",
            "[1,\"a,b\"]",
            "{}",
            "1",
        ];
        for text in left {
            assert_eq!(int_list(text.as_bytes()), None, "{text}");
        }
        // Random lists of integers around the limits, with and without spaces.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut read_here = 0;
        for _ in 0..4_000 {
            // Short lists, and lists around the 32 integers gathered on the stack.
            let len = (next() % 6 + (next() % 2) * 28) as usize;
            let items: Vec<String> = (0..len)
                .map(|_| {
                    // Mostly within the 18 digits read here, sometimes past them.
                    let digits = 1
                        + (if next() % 32 == 0 {
                            18 + next() % 2
                        } else {
                            next() % 18
                        }) as u32;
                    let v = (next() % 10_u64.pow(digits.min(19))) as i128;
                    let v = if next() % 2 == 0 { -v } else { v };
                    let pad = if next() % 3 == 0 { " " } else { "" };
                    format!("{pad}{v}{pad}")
                })
                .collect();
            let text = format!("[{}]", items.join(","));
            if let Some(values) = int_list(text.as_bytes()) {
                assert_eq!(values, by_serde(&text), "{text}");
                read_here += 1;
            }
        }
        assert!(read_here > 1_000, "{read_here}");
    }

    #[test]
    fn entity_columns_of_any_values_parse_and_name_their_errors() {
        let r = parse_request(
            br#"{"entities":{"id":[1, 2],"name":["a", -0, 1.5, 99999999999999999999]}}"#,
        )
        .expect("parses");
        assert_eq!(
            r.entities[0].1,
            vec![some(Val::Int64Val(1)), some(Val::Int64Val(2))]
        );
        assert_eq!(
            r.entities[1].1,
            vec![
                some(Val::StringVal("a".into())),
                some(Val::DoubleVal(-0.0)),
                some(Val::DoubleVal(1.5)),
                some(Val::DoubleVal(1e20)),
            ]
        );
        let e = err(r#"{"entities":{"id":7}}"#);
        assert!(e.contains("invalid `entities.id`"), "{e}");
        assert!(
            e.contains("expected a list of values, one per entity row"),
            "{e}"
        );
        assert_eq!(e.matches(" at line ").count(), 1, "{e}");
        let e = err(r#"{"entities":{"id":[1, 2}}"#);
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        assert!(err("").contains("empty"));
        assert!(
            err(r#"{"features":["v:a"],"entities":{"driver_id":[1001]"#).contains("not valid JSON")
        );
        assert!(err(r#"{"features":["v:a"]}"#).contains("no `entities`"));
        assert!(err(r#"{"features":"v:a","entities":{}}"#).contains("`features`"));
        assert!(
            err(r#"{"features":["v:a"],"entities":{"driver_id":1001}}"#)
                .contains("`entities.driver_id`")
        );
        assert!(err(r#"[1,2]"#).contains("JSON object"));
        assert!(err(r#"{"entities":{}} trailing"#).contains("not valid JSON"));
    }
}
