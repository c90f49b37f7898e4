//! Stored values: the serialized `feast.types.Value` Feast writes to an online store.
//! A scalar feature (a JSON text included) is stored as a message of exactly one
//! field, decoded here directly, without prost's generic loop over fields; any other
//! message goes to prost, which decodes it or says why it cannot.

use prost::Message;

use super::{Val, Value};

/// Decodes a stored value: exactly what `Value::decode` gives, for every input.
pub fn decode_stored(bytes: &[u8]) -> Result<Value, prost::DecodeError> {
    match scalar(bytes) {
        Some(val) => Ok(Value { val: Some(val) }),
        None => Value::decode(bytes),
    }
}

/// The value of a message made of one scalar field and nothing else, or `None`.
fn scalar(bytes: &[u8]) -> Option<Val> {
    // The key bytes of `Value`'s scalar fields: field number << 3 | wire type.
    const BYTES: u8 = 1 << 3 | 2;
    const STRING: u8 = 2 << 3 | 2;
    const INT32: u8 = 3 << 3;
    const INT64: u8 = 4 << 3;
    const DOUBLE: u8 = 5 << 3 | 1;
    const FLOAT: u8 = 6 << 3 | 5;
    const BOOL: u8 = 7 << 3;
    const UNIX_TIMESTAMP: u8 = 8 << 3;
    // Field 32 (json_val, length-delimited) takes two key bytes.
    const JSON_KEY: u16 = 32 << 3 | 2;
    const JSON: [u8; 2] = [0x80 | (JSON_KEY & 0x7f) as u8, (JSON_KEY >> 7) as u8];
    if let Some(rest) = bytes.strip_prefix(&JSON) {
        let text = std::str::from_utf8(length_delimited(rest)?).ok()?;
        return Some(Val::JsonVal(text.to_owned()));
    }
    let (&key, rest) = bytes.split_first()?;
    Some(match key {
        BYTES => Val::BytesVal(length_delimited(rest)?.to_vec()),
        STRING => Val::StringVal(
            std::str::from_utf8(length_delimited(rest)?)
                .ok()?
                .to_owned(),
        ),
        // prost's truncation of a varint to an int32, as the wire format defines it.
        INT32 => Val::Int32Val(whole_varint(rest)? as i32),
        INT64 => Val::Int64Val(whole_varint(rest)? as i64),
        DOUBLE => Val::DoubleVal(f64::from_le_bytes(rest.try_into().ok()?)),
        FLOAT => Val::FloatVal(f32::from_le_bytes(rest.try_into().ok()?)),
        BOOL => Val::BoolVal(whole_varint(rest)? != 0),
        UNIX_TIMESTAMP => Val::UnixTimestampVal(whole_varint(rest)? as i64),
        _ => return None,
    })
}

/// The payload of a length-delimited field when it ends exactly at the end of `bytes`.
fn length_delimited(bytes: &[u8]) -> Option<&[u8]> {
    let (len, payload) = varint(bytes)?;
    (usize::try_from(len).ok()? == payload.len()).then_some(payload)
}

/// A varint that is all of `bytes`.
fn whole_varint(bytes: &[u8]) -> Option<u64> {
    match varint(bytes)? {
        (v, []) => Some(v),
        _ => None,
    }
}

/// A varint at the start of `bytes` and what follows it; `None` when it is cut short
/// or does not fit 64 bits (prost's error cases).
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::feast::types::{DoubleList, Null};

    fn same_as_prost(bytes: &[u8]) {
        let ours = decode_stored(bytes);
        let prost = Value::decode(bytes);
        match (&ours, &prost) {
            // Compared as bytes: a NaN is not equal to itself.
            (Ok(a), Ok(b)) => assert_eq!(a.encode_to_vec(), b.encode_to_vec(), "{bytes:02x?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{bytes:02x?}: ours {ours:?}, prost {prost:?}"),
        }
    }

    fn scalars() -> Vec<Val> {
        let mut vals = vec![
            Val::BytesVal(vec![]),
            Val::BytesVal(vec![0, 1, 0xff]),
            Val::StringVal(String::new()),
            Val::StringVal("{\"zones\": [\"north\"]} é ✓".into()),
            Val::StringVal("x".repeat(300)),
            Val::JsonVal("{\"max_distance_km\": 36}".into()),
            Val::JsonVal(String::new()),
            Val::DoubleVal(0.1),
            Val::DoubleVal(f64::NAN),
            Val::DoubleVal(-0.0),
            Val::FloatVal(1.5),
            Val::FloatVal(f32::INFINITY),
            Val::BoolVal(true),
            Val::BoolVal(false),
        ];
        for i in [0, 1, -1, 127, 128, 1001, i64::MAX, i64::MIN] {
            vals.push(Val::Int64Val(i));
            vals.push(Val::UnixTimestampVal(i));
        }
        for i in [0, 1, -1, 300, i32::MAX, i32::MIN] {
            vals.push(Val::Int32Val(i));
        }
        vals.push(Val::NullVal(Null::Null as i32));
        vals.push(Val::DoubleListVal(DoubleList {
            val: vec![1.0, 2.5],
        }));
        vals
    }

    #[test]
    fn every_scalar_decodes_as_prost_decodes_it() {
        same_as_prost(&[]);
        for val in scalars() {
            let bytes = Value { val: Some(val) }.encode_to_vec();
            same_as_prost(&bytes);
            // Cut short, with a byte too many, or followed by another field.
            for cut in 0..bytes.len() {
                same_as_prost(&bytes[..cut]);
            }
            let mut longer = bytes.clone();
            longer.push(0);
            same_as_prost(&longer);
            let mut two = bytes.clone();
            two.extend_from_slice(
                &Value {
                    val: Some(Val::Int64Val(7)),
                }
                .encode_to_vec(),
            );
            same_as_prost(&two);
        }
    }

    #[test]
    fn malformed_scalars_fail_as_prost_fails() {
        same_as_prost(&[0x12, 0x02, 0xc3, 0x28]); // a string that is not UTF-8
        same_as_prost(&[
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ]);
        same_as_prost(&[
            0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        same_as_prost(&[
            0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
        ]);
        same_as_prost(&[0x20, 0x80, 0x00]); // a varint with a redundant byte
        same_as_prost(&[0x12, 0x05, b'a']); // a length past the end
        same_as_prost(&[0x38, 0x02]); // a bool of 2
        same_as_prost(&[0x82, 0x02, 0x02, 0xc3, 0x28]); // JSON text that is not UTF-8
        same_as_prost(&[0x82, 0x02]); // a JSON key and nothing after it
    }

    #[test]
    fn random_bytes_decode_as_prost_decodes_them() {
        let mut rng = fastrand::Rng::with_seed(22);
        let keys = [0x0a, 0x12, 0x18, 0x20, 0x29, 0x35, 0x38, 0x40, 0x82];
        for _ in 0..20_000 {
            let len = rng.usize(0..14);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if let Some(first) = bytes.first_mut() {
                *first = keys[rng.usize(..keys.len())];
            }
            if bytes.len() > 1 && bytes[0] == 0x82 && rng.bool() {
                bytes[1] = 0x02; // the key of a JSON text
            }
            same_as_prost(&bytes);
        }
    }
}
