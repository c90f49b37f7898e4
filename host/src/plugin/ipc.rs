//! Arrow IPC stream bytes to and from plugins, with the codec the guest SDK uses
//! (`feast_plugin_sdk::ipc`: schema messages of repeated calls are neither rebuilt
//! nor re-parsed). Plugin output is untrusted: it is size-capped, must be one
//! uncompressed batch (compressed buffers cannot even be read: the decoder is built
//! without codecs), without trailing messages, and is fully validated by the Arrow
//! reader.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use feast_plugin_sdk::ipc::{read_stream, write_stream};

/// Why IPC bytes were refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IpcError {
    /// Encoding failed.
    #[error("cannot encode the input batch: {0}")]
    Encode(String),
    /// Bytes beyond the cap.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Input or output.
        what: &'static str,
        /// Bytes.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Not a valid Arrow IPC stream of one batch.
    #[error("the output is not an Arrow IPC stream of one record batch: {0}")]
    Invalid(String),
}

/// Encodes one batch as an IPC stream, refusing more than `limit` bytes.
pub(crate) fn encode(batch: &RecordBatch, limit: usize) -> Result<Vec<u8>, IpcError> {
    let out = write_stream(batch).map_err(|e| IpcError::Encode(e.to_string()))?;
    if out.len() > limit {
        return Err(IpcError::TooLarge {
            what: "the plugin input",
            size: out.len(),
            limit,
        });
    }
    Ok(out)
}

/// Decodes untrusted plugin output: at most `limit` bytes, exactly one batch.
pub(crate) fn decode(bytes: Vec<u8>, limit: usize) -> Result<RecordBatch, IpcError> {
    if bytes.len() > limit {
        return Err(IpcError::TooLarge {
            what: "the plugin output",
            size: bytes.len(),
            limit,
        });
    }
    read_stream(Buffer::from_vec(bytes)).map_err(|e| IpcError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_ipc::writer::StreamWriter;

    use arrow_array::{ArrayRef, Float64Array, Int64Array};

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([(
            "x",
            Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
        )])
        .expect("batch")
    }

    #[test]
    fn round_trips_one_batch() {
        let bytes = encode(&batch(), usize::MAX).expect("encode");
        assert_eq!(decode(bytes.clone(), usize::MAX).expect("decode"), batch());
    }

    #[test]
    fn refuses_untrusted_bytes() {
        assert!(matches!(decode(Vec::new(), 100), Err(IpcError::Invalid(_))));
        assert!(matches!(
            decode(b"\xde\xad\xbe\xef garbage".to_vec(), 100),
            Err(IpcError::Invalid(_))
        ));
        let bytes = encode(&batch(), usize::MAX).expect("encode");
        assert!(matches!(
            decode(bytes.clone(), 10),
            Err(IpcError::TooLarge { .. })
        ));
        assert!(matches!(
            encode(&batch(), 10),
            Err(IpcError::TooLarge { .. })
        ));
        // Truncated stream.
        assert!(decode(bytes[..bytes.len() / 2].to_vec(), usize::MAX).is_err());
        // Two batches in one stream.
        let mut two = Vec::new();
        let mut w = StreamWriter::try_new(&mut two, &batch().schema()).expect("writer");
        w.write(&batch()).expect("write");
        w.write(&batch()).expect("write");
        w.finish().expect("finish");
        drop(w);
        assert!(
            matches!(decode(two, usize::MAX), Err(IpcError::Invalid(m)) if m.contains("more than one"))
        );
        // A stream whose schema says Int64 but holds a valid batch is fine; types are
        // checked against the registry by the caller.
        let ints =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
                .expect("batch");
        assert!(decode(encode(&ints, usize::MAX).expect("encode"), usize::MAX).is_ok());
    }
}
