//! Feast's `get-online-features` JSON request, parsed straight into the engine's
//! request (no intermediate JSON tree), with errors that name the offending field.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

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

/// A list of entity (or request-data) values, each read as [`ValueSeed`] reads it.
/// Integers, the usual entity column, are gathered as integers first (on the stack
/// while there are few) and made into values at the end: each value pushed as it is
/// read would be built aside and copied, a store-forwarding stall per item.
struct ColumnValues(Vec<Value>);

impl<'de> Deserialize<'de> for ColumnValues {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ColumnValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of values, one per entity row")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ColumnValues, A::Error> {
                let mut ints = Ints::default();
                let first_other = loop {
                    match seq.next_element_seed(IntOrValueSeed)? {
                        None => break None,
                        Some(IntOrValue::Int(int)) => ints.push(int),
                        Some(IntOrValue::Other(v)) => break Some(v),
                    }
                };
                let ints = ints.as_slice().iter().map(|&v| some(Val::Int64Val(v)));
                let Some(first_other) = first_other else {
                    return Ok(ColumnValues(ints.collect()));
                };
                // JSON gives no length: room for a batch of rows, grown past that.
                let mut out = Vec::with_capacity(ints.len() + 16);
                out.extend(ints);
                out.push(first_other);
                while let Some(v) = seq.next_element_seed(ValueSeed)? {
                    out.push(v);
                }
                Ok(ColumnValues(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The integers read so far from a list: on the stack up to 32, then on the heap.
#[derive(Default)]
struct Ints {
    few: [i64; 32],
    many: Vec<i64>,
    count: usize,
}

impl Ints {
    fn push(&mut self, int: i64) {
        match self.few.get_mut(self.count) {
            Some(slot) => *slot = int,
            None => {
                if self.many.is_empty() {
                    self.many.reserve(self.few.len() * 4);
                    self.many.extend_from_slice(&self.few);
                }
                self.many.push(int);
            }
        }
        self.count += 1;
    }

    fn as_slice(&self) -> &[i64] {
        match self.few.get(..self.count) {
            Some(few) => few,
            None => &self.many,
        }
    }
}

/// One item of an entity list: an integer that fits `i64`, or any other value as
/// [`ValueSeed`] reads it.
enum IntOrValue {
    Int(i64),
    Other(Value),
}

struct IntOrValueSeed;

impl<'de> DeserializeSeed<'de> for IntOrValueSeed {
    type Value = IntOrValue;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<IntOrValue, D::Error> {
        d.deserialize_any(IntOrValueSeed)
    }
}

impl<'de> Visitor<'de> for IntOrValueSeed {
    type Value = IntOrValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ValueVisitor.expecting(f)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrValue, E> {
        Ok(IntOrValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrValue, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => IntOrValue::Int(i),
            Err(_) => IntOrValue::Other(ValueVisitor.visit_u64(v)?),
        })
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<IntOrValue, E> {
        ValueVisitor.visit_bool(v).map(IntOrValue::Other)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<IntOrValue, E> {
        ValueVisitor.visit_f64(v).map(IntOrValue::Other)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrValue, E> {
        ValueVisitor.visit_str(v).map(IntOrValue::Other)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<IntOrValue, E> {
        ValueVisitor.visit_string(v).map(IntOrValue::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<IntOrValue, E> {
        ValueVisitor.visit_unit().map(IntOrValue::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<IntOrValue, E> {
        ValueVisitor.visit_none().map(IntOrValue::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<IntOrValue, A::Error> {
        ValueVisitor.visit_seq(seq).map(IntOrValue::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IntOrValue, A::Error> {
        ValueVisitor.visit_map(map).map(IntOrValue::Other)
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

    /// An entity list reads as its items read one by one, whatever mix of integers
    /// and other values it holds.
    #[test]
    fn entity_lists_read_as_their_items_alone() {
        let item_by_item = |text: &str| -> Vec<Value> {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).expect("a JSON list");
            items
                .iter()
                .map(|raw| {
                    let mut de = serde_json::Deserializer::from_str(raw.get());
                    ValueSeed.deserialize(&mut de).expect("a value")
                })
                .collect()
        };
        let column = |text: &str| {
            serde_json::from_str::<ColumnValues>(text)
                .expect("a list")
                .0
        };
        let ints_then = |n: usize, last: &str| {
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("[{},{last}]", items.join(","))
        };
        let mut cases: Vec<String> = [
            "[]",
            "[ ]",
            "[0]",
            "[1001,1002,1003]",
            "[ 1 , -2 ,\n3\t]",
            "[-1]",
            "[999999999999999999]",
            "[9223372036854775807, -9223372036854775808]",
            "[9223372036854775808, 1]",
            "[18446744073709551615]",
            "[-0, 1]",
            "[1, 1.0, 1e3, 2]",
            "[1, \"a\", 2]",
            "[null, 1, true]",
            "[[1], 2]",
            "[{\"a\": 1}, 3]",
            "[1, [], [1.5, 2]]",
        ]
        .map(String::from)
        .to_vec();
        for n in [31, 32, 33, 100] {
            cases.push(ints_then(n, "7"));
            cases.push(ints_then(n, "\"x\""));
            cases.push(ints_then(n, "0.5"));
        }
        for text in &cases {
            assert_eq!(column(text), item_by_item(text), "{text}");
        }
        // Random lists of integers around the limits of i64, with spaces and
        // sometimes another value partway.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..4_000 {
            let len = rng.usize(0..6) + [0, 28, 64][rng.usize(0..3)];
            let items: Vec<String> = (0..len)
                .map(|_| {
                    let v: i128 = match rng.u8(0..8) {
                        0 => i128::from(rng.i64(..)),
                        1 => i128::from(rng.u64(..)),
                        _ => i128::from(rng.i64(-100_000..100_000)),
                    };
                    let pad = if rng.u8(0..3) == 0 { " " } else { "" };
                    match rng.u8(0..64) {
                        0 => "\"s\"".to_string(),
                        1 => format!("{v}.5"),
                        2 => "null".to_string(),
                        _ => format!("{pad}{v}{pad}"),
                    }
                })
                .collect();
            let text = format!("[{}]", items.join(","));
            assert_eq!(column(&text), item_by_item(&text), "{text}");
        }
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
