//! Arrow IPC streams of one record batch: what the WIT `transform` exchanges, in
//! both directions. The server uses these functions too, so both ends share one codec.
//!
//! Calls of one ODFV repeat the same schema, and for small batches building or
//! parsing the schema message is a large part of the cost. So each thread keeps
//! the last few schemas it wrote (with their encoded message) and read (with a
//! decoder that has already parsed it): a stream whose schema message is
//! byte-for-byte one of those skips straight to its record batch. The bytes written
//! are the ones arrow's `StreamWriter` writes; everything read is validated as
//! arrow's `StreamReader` would.

use std::cell::RefCell;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::MessageHeader;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, StreamWriter,
    write_message,
};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};

use crate::PluginError;

/// Schemas remembered per thread and direction.
const SCHEMAS_KEPT: usize = 8;
/// Marks the start of a message's length (IPC format 0.15 and later).
const CONTINUATION: [u8; 4] = [0xff; 4];
/// The end-of-stream marker `StreamWriter::finish` writes.
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

thread_local! {
    /// Schemas written lately and their encoded schema message.
    static WRITTEN: RefCell<Vec<(SchemaRef, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    /// Schema messages read lately and a decoder that has parsed that message.
    static READ: RefCell<Vec<(Buffer, StreamDecoder)>> = const { RefCell::new(Vec::new()) };
}

fn invalid(m: &str) -> ArrowError {
    ArrowError::IpcError(m.to_string())
}

/// Adds an entry to a per-thread list, dropping the oldest beyond the limit.
fn remember<T>(list: &mut Vec<T>, entry: T) {
    if list.len() >= SCHEMAS_KEPT {
        list.remove(0);
    }
    list.push(entry);
}

/// Whether a decoder of this schema can be reused: no dictionaries (a reused
/// decoder would keep the previous stream's) and, to keep that check simple, no
/// nested types.
fn reusable(schema: &Schema) -> bool {
    schema.fields().iter().all(|f| {
        let t = f.data_type();
        !t.is_nested() && !matches!(t, DataType::Dictionary(..))
    })
}

/// Writes `batch` as an IPC stream: schema, batch, end of stream.
pub fn write_stream(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let schema = batch.schema();
    let mut out = Vec::with_capacity(1024 + batch.get_array_memory_size());
    let known = WRITTEN.with_borrow(|written| {
        written
            .iter()
            .find(|(s, _)| Arc::ptr_eq(s, &schema) || **s == *schema)
            .map(|(_, message)| out.extend_from_slice(message))
            .is_some()
    });
    if !known {
        // `StreamWriter::try_new` writes exactly the schema message.
        StreamWriter::try_new(&mut out, &schema)?;
        let message = out.clone();
        WRITTEN.with_borrow_mut(|written| remember(written, (schema, message)));
    }
    let options = IpcWriteOptions::default();
    let (dictionaries, message) = IpcDataGenerator::default().encode(
        batch,
        &mut DictionaryTracker::new(false),
        &options,
        &mut IpcWriteContext::default(),
    )?;
    for dictionary in dictionaries {
        write_message(&mut out, dictionary, &options)?;
    }
    write_message(&mut out, message, &options)?;
    out.extend_from_slice(&END_OF_STREAM);
    Ok(out)
}

/// Bytes before a message's metadata: continuation marker (when present) and length.
fn framing(message: &[u8]) -> usize {
    if message.starts_with(&CONTINUATION) {
        8
    } else {
        4
    }
}

/// Length of the stream's first message (its framing and metadata; a schema
/// message has no body).
fn first_message_len(bytes: &[u8]) -> Result<usize, ArrowError> {
    let word = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b))
    };
    let framing = framing(bytes);
    let len = word(framing - 4).ok_or_else(|| invalid("the stream is empty or truncated"))?;
    let end = framing + len as usize;
    if len == 0 || end > bytes.len() {
        return Err(invalid(
            "the stream does not start with a whole schema message",
        ));
    }
    Ok(end)
}

/// Reads an IPC stream that holds exactly one record batch (and no dictionaries
/// or further batches after it).
pub fn read_stream(bytes: Buffer) -> Result<RecordBatch, ArrowError> {
    let head_len = first_message_len(&bytes)?;
    let head = bytes.slice_with_length(0, head_len);
    let known = READ.with_borrow_mut(|read| {
        read.iter()
            .position(|(message, _)| message.as_slice() == head.as_slice())
            .map(|i| read.remove(i).1)
    });
    // A known schema message is skipped; otherwise a new decoder reads it.
    let (mut decoder, mut rest, fresh) = match known {
        Some(decoder) => (decoder, bytes.slice(head_len), false),
        None => (StreamDecoder::new(), bytes, true),
    };
    let batch = decoder
        .decode(&mut rest)?
        .ok_or_else(|| invalid("the stream holds no whole record batch"))?;
    match rest.as_slice() {
        [] | [0, 0, 0, 0] => {}
        end if end == END_OF_STREAM => {}
        _ => return Err(invalid("the stream holds more than one record batch")),
    }
    // Only a decoder that read nothing but this schema message before the batch
    // can stand in for it next time.
    if reusable(&batch.schema()) && (!fresh || is_bare_schema_message(&head)) {
        // A copy: a slice would keep the whole input alive.
        let head = Buffer::from(head.as_slice());
        READ.with_borrow_mut(|read| remember(read, (head, decoder)));
    }
    Ok(batch)
}

/// Whether a stream's first message is a schema message without a body.
fn is_bare_schema_message(head: &[u8]) -> bool {
    head.get(framing(head)..)
        .and_then(|m| arrow_ipc::root_as_message(m).ok())
        .is_some_and(|m| m.header_type() == MessageHeader::Schema && m.bodyLength() == 0)
}

/// Encodes one batch as an Arrow IPC stream (schema + batch, uncompressed).
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, PluginError> {
    Ok(write_stream(batch)?)
}

/// Decodes an Arrow IPC stream holding exactly one batch.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, PluginError> {
    read_stream(Buffer::from(bytes)).map_err(|e| PluginError::InvalidInput(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};

    fn batch(offset: i64) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int64Array::from(vec![offset, offset + 1])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(Float64Array::from(vec![0.5, 1.5])) as ArrayRef,
            ),
        ])
        .expect("batch")
    }

    fn arrow_writer_bytes(b: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new(&mut out, &b.schema()).expect("writer");
        w.write(b).expect("write");
        w.finish().expect("finish");
        drop(w);
        out
    }

    #[test]
    fn writes_what_arrow_writes_and_reads_it_back_repeatedly() {
        for i in 0..3 {
            let b = batch(i);
            let bytes = write_stream(&b).expect("encode");
            assert_eq!(bytes, arrow_writer_bytes(&b), "call {i}");
            assert_eq!(read_stream(Buffer::from(bytes)).expect("decode"), b);
        }
        assert_eq!(
            WRITTEN.with_borrow(Vec::len),
            1,
            "one schema written, remembered"
        );
        assert_eq!(READ.with_borrow(Vec::len), 1, "one schema read, remembered");
    }

    #[test]
    fn a_changed_schema_is_parsed_again() {
        let other = RecordBatch::try_from_iter([(
            "s",
            Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef,
        )])
        .expect("batch");
        for b in [batch(1), other.clone(), batch(2), other] {
            let decoded = read_stream(Buffer::from(write_stream(&b).expect("encode")));
            assert_eq!(decoded.expect("decode"), b);
        }
    }

    #[test]
    fn refuses_broken_streams_and_recovers() {
        let good = write_stream(&batch(0)).expect("encode");
        let schema_len = first_message_len(&good).expect("len");
        let two = [&good[..good.len() - 8], &good[schema_len..]].concat();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("schema only", good[..schema_len].to_vec()),
            ("truncated batch", good[..good.len() - 20].to_vec()),
            ("two batches", two),
            ("trailing bytes", [&good[..], &[1, 2, 3]].concat()),
            (
                "garbage",
                vec![0xff, 0xff, 0xff, 0xff, 16, 0, 0, 0, 1, 2, 3],
            ),
        ];
        for (what, bytes) in cases {
            assert!(read_stream(Buffer::from(bytes)).is_err(), "{what}");
            // A failed read never leaves a broken decoder behind.
            let again = read_stream(Buffer::from(good.clone())).expect("good after bad");
            assert_eq!(again, batch(0), "after {what}");
        }
    }
}
