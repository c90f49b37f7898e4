//! Arrow IPC stream encoding and decoding of one record batch.

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;

use crate::PluginError;

/// Encodes one batch as an Arrow IPC stream (schema + batch, uncompressed).
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, PluginError> {
    let mut out = Vec::with_capacity(1024);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// Decodes an Arrow IPC stream holding exactly one batch.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, PluginError> {
    let mut reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let batch = reader
        .next()
        .ok_or_else(|| PluginError::InvalidInput("the stream holds no record batch".into()))??;
    if reader.next().is_some() {
        return Err(PluginError::InvalidInput(
            "the stream holds more than one record batch".into(),
        ));
    }
    Ok(batch)
}
