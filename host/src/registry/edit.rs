//! Recording a materialization in `registry.db` as Feast's
//! `Registry.apply_materialization` does: the interval appended to the view's
//! `meta.materialization_intervals`, `meta.last_updated_timestamp` set, `meta.state`
//! AVAILABLE_ONLINE, the view moved to the end of its list, and the registry's
//! `version_id` and `last_updated` renewed.
//!
//! The bytes are edited at the protobuf wire level: every field this server does not
//! model (and Feast's own fields it does not know) is kept exactly as written, so
//! Feast reads the file as if it had written it. The file is replaced atomically
//! (written beside it, then renamed), so a reader never sees it half-written.

use std::path::Path;

use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};

use crate::value::EventTime;

/// `Registry.feature_views`.
const FEATURE_VIEWS: u32 = 6;
/// `Registry.stream_feature_views`.
const STREAM_FEATURE_VIEWS: u32 = 14;
/// `Registry.version_id`.
const VERSION_ID: u32 = 4;
/// `Registry.last_updated`.
const LAST_UPDATED: u32 = 5;
/// `FeatureView.spec` / `StreamFeatureView.spec`.
const SPEC: u32 = 1;
/// `FeatureView.meta` / `StreamFeatureView.meta`.
const META: u32 = 2;
/// `*Spec.name`, `*Spec.project`.
const NAME: u32 = 1;
const PROJECT: u32 = 2;
/// `FeatureViewMeta` fields.
const META_LAST_UPDATED: u32 = 2;
const META_INTERVALS: u32 = 3;
const META_STATE: u32 = 6;
/// `FeatureViewState.AVAILABLE_ONLINE`.
const AVAILABLE_ONLINE: u64 = 4;

/// Why the registry could not be updated.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EditError {
    /// The bytes are not a protobuf message.
    #[error("the registry is not a valid protobuf message: {0}")]
    Malformed(String),
    /// No view of that name in the project.
    #[error("feature view {0} is not in the registry file")]
    NoSuchView(String),
    /// The file could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// One field of a message: its number, wire type and complete bytes (key included).
#[derive(Debug, Clone, Copy)]
struct RawField<'a> {
    number: u32,
    wire_type: WireType,
    /// The whole field, key included.
    bytes: &'a [u8],
    /// The payload of a length-delimited field.
    payload: &'a [u8],
}

/// Splits a message into its fields, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<RawField<'_>>, EditError> {
    let bad = |e: prost::DecodeError| EditError::Malformed(e.to_string());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let start = buf;
        let (number, wire_type) = decode_key(&mut buf).map_err(bad)?;
        let payload: &[u8] = match wire_type {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(bad)?;
                &[]
            }
            WireType::SixtyFourBit => {
                buf = buf
                    .get(8..)
                    .ok_or_else(|| EditError::Malformed("truncated".into()))?;
                &[]
            }
            WireType::ThirtyTwoBit => {
                buf = buf
                    .get(4..)
                    .ok_or_else(|| EditError::Malformed("truncated".into()))?;
                &[]
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).map_err(bad)?)
                    .map_err(|_| EditError::Malformed("a field is too long".into()))?;
                let payload = buf
                    .get(..len)
                    .ok_or_else(|| EditError::Malformed("truncated".into()))?;
                buf = &buf[len..];
                payload
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(EditError::Malformed("groups are not used by Feast".into()));
            }
        };
        let used = start.len() - buf.len();
        out.push(RawField {
            number,
            wire_type,
            bytes: &start[..used],
            payload,
        });
    }
    Ok(out)
}

fn put_bytes(number: u32, payload: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn put_varint(number: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(number, WireType::Varint, out);
    encode_varint(value, out);
}

fn timestamp(t: EventTime) -> Vec<u8> {
    t.to_proto().encode_to_vec()
}

/// The last string value of field `number` (proto3: the last one wins).
fn string_field(msg: &[u8], number: u32) -> Result<String, EditError> {
    Ok(fields(msg)?
        .iter()
        .rev()
        .find(|f| f.number == number && f.wire_type == WireType::LengthDelimited)
        .map(|f| String::from_utf8_lossy(f.payload).into_owned())
        .unwrap_or_default())
}

/// Whether a `FeatureView`/`StreamFeatureView` message is `view` of `project` (an
/// object without a project belongs to every project, as when decoding).
fn is_view(msg: &[u8], view: &str, project: &str) -> Result<bool, EditError> {
    let Some(spec) = fields(msg)?
        .iter()
        .rev()
        .find(|f| f.number == SPEC)
        .map(|f| f.payload)
    else {
        return Ok(false);
    };
    let p = string_field(spec, PROJECT)?;
    Ok(string_field(spec, NAME)? == view && (p.is_empty() || p == project))
}

/// The view message with the interval recorded in its meta.
fn with_interval(
    msg: &[u8],
    start: EventTime,
    end: EventTime,
    now: EventTime,
) -> Result<Vec<u8>, EditError> {
    let parts = fields(msg)?;
    let old_meta: Vec<u8> = parts
        .iter()
        .filter(|f| f.number == META)
        .flat_map(|f| f.payload.iter().copied())
        .collect();
    let mut meta = Vec::with_capacity(old_meta.len() + 48);
    for f in fields(&old_meta)? {
        if !matches!(f.number, META_LAST_UPDATED | META_STATE) {
            meta.extend_from_slice(f.bytes);
        }
    }
    put_bytes(META_LAST_UPDATED, &timestamp(now), &mut meta);
    let mut interval = Vec::with_capacity(32);
    put_bytes(1, &timestamp(start), &mut interval);
    put_bytes(2, &timestamp(end), &mut interval);
    put_bytes(META_INTERVALS, &interval, &mut meta);
    put_varint(META_STATE, AVAILABLE_ONLINE, &mut meta);
    let mut out = Vec::with_capacity(msg.len() + 64);
    for f in &parts {
        if f.number != META {
            out.extend_from_slice(f.bytes);
        }
    }
    put_bytes(META, &meta, &mut out);
    Ok(out)
}

/// Registry bytes with a materialization of `view` over `[start, end]` recorded at
/// `now`, and a new `version_id`.
pub(crate) fn record_materialization(
    registry: &[u8],
    project: &str,
    view: &str,
    start: EventTime,
    end: EventTime,
    now: EventTime,
    version_id: &str,
) -> Result<Vec<u8>, EditError> {
    let parts = fields(registry)?;
    let mut found = None;
    for (i, f) in parts.iter().enumerate() {
        if matches!(f.number, FEATURE_VIEWS | STREAM_FEATURE_VIEWS)
            && is_view(f.payload, view, project)?
        {
            found = Some(i);
        }
    }
    let found = found.ok_or_else(|| EditError::NoSuchView(view.to_string()))?;
    let mut out = Vec::with_capacity(registry.len() + 128);
    for (i, f) in parts.iter().enumerate() {
        if i != found && !matches!(f.number, VERSION_ID | LAST_UPDATED) {
            out.extend_from_slice(f.bytes);
        }
    }
    // Feast moves the view to the end of its list.
    let moved = &parts[found];
    put_bytes(
        moved.number,
        &with_interval(moved.payload, start, end, now)?,
        &mut out,
    );
    put_bytes(VERSION_ID, version_id.as_bytes(), &mut out);
    put_bytes(LAST_UPDATED, &timestamp(now), &mut out);
    Ok(out)
}

/// Reads the registry file, records the materialization and replaces the file.
pub(crate) fn record_materialization_in_file(
    path: &Path,
    project: &str,
    view: &str,
    window: (EventTime, EventTime),
    now: EventTime,
) -> Result<(), EditError> {
    let io = |e: std::io::Error| EditError::Io(format!("{}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(io)?;
    let version_id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .hyphenated()
        .to_string();
    let edited =
        record_materialization(&bytes, project, view, window.0, window.1, now, &version_id)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&edited)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::feast::core as pb;

    fn demo() -> Vec<u8> {
        include_bytes!("../../../demo/feature_repo/data/registry.db").to_vec()
    }

    #[test]
    fn an_interval_is_recorded_and_every_other_byte_kept() {
        let before = demo();
        let (start, end, now) = (
            EventTime::from_secs(1_795_000_000),
            EventTime::from_secs(1_795_300_000),
            EventTime {
                seconds: 1_795_400_000,
                nanos: 123_000,
            },
        );
        let after = record_materialization(
            &before,
            "repo",
            "driver_hourly_stats",
            start,
            end,
            now,
            "v-1",
        )
        .expect("recorded");
        let old = pb::Registry::decode(before.as_slice()).expect("decodes");
        let new = pb::Registry::decode(after.as_slice()).expect("decodes");
        assert_eq!(new.version_id, "v-1");
        assert_eq!(new.last_updated.map(|t| t.seconds), Some(now.seconds));
        assert_eq!(new.feature_views.len(), old.feature_views.len());
        let last = new.feature_views.last().expect("a view");
        let spec = last.spec.as_ref().expect("spec");
        assert_eq!(spec.name, "driver_hourly_stats", "moved to the end");
        let meta = last.meta.as_ref().expect("meta");
        assert_eq!(meta.state, 4);
        let interval = meta.materialization_intervals.last().expect("an interval");
        assert_eq!(
            interval.start_time.as_ref().map(|t| t.seconds),
            Some(start.seconds)
        );
        assert_eq!(
            interval.end_time.as_ref().map(|t| t.seconds),
            Some(end.seconds)
        );
        // Every field of every other top-level object is kept byte for byte.
        let unchanged = |b: &[u8]| -> Vec<Vec<u8>> {
            fields(b)
                .expect("fields")
                .iter()
                .filter(|f| {
                    !matches!(f.number, VERSION_ID | LAST_UPDATED)
                        && !is_view(f.payload, "driver_hourly_stats", "repo").unwrap_or(false)
                })
                .map(|f| f.bytes.to_vec())
                .collect()
        };
        assert_eq!(unchanged(&before), unchanged(&after));
        let err = record_materialization(&before, "repo", "nope", start, end, now, "v")
            .expect_err("no such view");
        assert!(matches!(err, EditError::NoSuchView(_)));
    }
}
