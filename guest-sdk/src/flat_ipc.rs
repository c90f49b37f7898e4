//! Arrow IPC streams of flat batches (Binary and Timestamp columns, no nesting, no
//! dictionaries), written and read straight from and into their buffers, without
//! building arrays: the store world's buffers are small and made on every call, where
//! arrow's general writer and reader cost more than the data.
//!
//! Writing: the schema message is made once per schema by arrow's own writer and
//! reused; the record batch message is built with arrow's generated flatbuffer types;
//! buffers are 8-byte aligned, and a column without nulls has an empty validity buffer
//! (as the IPC format allows). Reading: a stream whose schema message is byte for byte
//! the one this module writes for the expected schema is read here, checking every
//! offset and length against the body; any other stream (another writer, another
//! language) is left to arrow's reader by the caller.

use arrow_ipc::{
    FieldNode, MessageBuilder, MessageHeader, MetadataVersion, RecordBatchBuilder, root_as_message,
};
use arrow_schema::{ArrowError, SchemaRef};
use flatbuffers::FlatBufferBuilder;
use std::cell::RefCell;

const CONTINUATION: [u8; 4] = [0xff; 4];
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

fn invalid(m: impl Into<String>) -> ArrowError {
    ArrowError::IpcError(m.into())
}

/// The schema message of `schema` as arrow's stream writer frames it.
pub(crate) fn schema_message(schema: &SchemaRef) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    arrow_ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    Ok(out)
}

/// The body and metadata of a record batch being written, column by column.
pub(crate) struct BatchWriter {
    rows: usize,
    body: Vec<u8>,
    nodes: Vec<FieldNode>,
    buffers: Vec<arrow_ipc::Buffer>,
}

thread_local! {
    /// The flatbuffer builder of batch messages, reused (reset) by every batch.
    static BUILDER: RefCell<FlatBufferBuilder<'static>> =
        RefCell::new(FlatBufferBuilder::with_capacity(256));
}

impl BatchWriter {
    /// A batch of `rows` rows in `columns` columns; `body_hint` bytes of body expected.
    pub(crate) fn new(rows: usize, columns: usize, body_hint: usize) -> Self {
        BatchWriter {
            rows,
            body: Vec::with_capacity(body_hint + 64),
            nodes: Vec::with_capacity(columns),
            // A Binary column has three buffers (validity, offsets, data).
            buffers: Vec::with_capacity(3 * columns),
        }
    }

    /// Appends a buffer (padded to 8 bytes).
    fn buffer(&mut self, bytes: impl FnOnce(&mut Vec<u8>)) {
        let start = self.body.len();
        bytes(&mut self.body);
        let len = self.body.len() - start;
        self.body.resize(start + len.next_multiple_of(8), 0);
        self.buffers
            .push(arrow_ipc::Buffer::new(start as i64, len as i64));
    }

    /// The validity buffer of a column with `nulls` nulls, one flag per row in order.
    fn validity_of(&mut self, nulls: usize, valid: impl Iterator<Item = bool>) {
        let rows = self.rows;
        self.buffer(|b| {
            if nulls > 0 {
                let start = b.len();
                b.resize(start + rows.div_ceil(8), 0);
                for (i, _) in valid.enumerate().filter(|(_, v)| *v) {
                    b[start + i / 8] |= 1 << (i % 8);
                }
            }
        });
        self.nodes.push(FieldNode::new(rows as i64, nulls as i64));
    }

    /// A Timestamp (or any 64-bit) column; `value(i)` for each row `i`.
    pub(crate) fn int64(&mut self, value: impl Fn(usize) -> Option<i64>) {
        let rows = self.rows;
        let nulls = (0..rows).filter(|&i| value(i).is_none()).count();
        self.validity_of(nulls, (0..rows).map(|i| value(i).is_some()));
        self.buffer(|b| {
            for i in 0..rows {
                b.extend_from_slice(&value(i).unwrap_or(0).to_le_bytes());
            }
        });
    }

    /// A Binary column; `values` yields one entry per row.
    pub(crate) fn binary<'a>(
        &mut self,
        values: impl Iterator<Item = Option<&'a [u8]>> + Clone,
    ) -> Result<(), ArrowError> {
        let nulls = values.clone().filter(Option::is_none).count();
        self.validity_of(nulls, values.clone().map(|v| v.is_some()));
        let mut end = 0usize;
        let mut too_long = false;
        let lens = values.clone();
        self.buffer(|b| {
            b.extend_from_slice(&0i32.to_le_bytes());
            for v in lens {
                end += v.map_or(0, <[u8]>::len);
                let offset = i32::try_from(end).unwrap_or_else(|_| {
                    too_long = true;
                    i32::MAX
                });
                b.extend_from_slice(&offset.to_le_bytes());
            }
        });
        if too_long {
            return Err(invalid("a Binary column of more than 2 GiB"));
        }
        self.buffer(|b| {
            for v in values.flatten() {
                b.extend_from_slice(v);
            }
        });
        Ok(())
    }

    /// The whole stream: `schema` (a framed schema message), the batch, the end.
    pub(crate) fn finish(self, schema: &[u8]) -> Vec<u8> {
        BUILDER.with_borrow_mut(|fbb| {
            fbb.reset();
            self.finish_with(fbb, schema)
        })
    }

    fn finish_with(self, fbb: &mut FlatBufferBuilder<'static>, schema: &[u8]) -> Vec<u8> {
        let nodes = fbb.create_vector(&self.nodes);
        let buffers = fbb.create_vector(&self.buffers);
        let mut batch = RecordBatchBuilder::new(fbb);
        batch.add_length(self.rows as i64);
        batch.add_nodes(nodes);
        batch.add_buffers(buffers);
        let batch = batch.finish().as_union_value();
        let mut message = MessageBuilder::new(fbb);
        message.add_version(MetadataVersion::V5);
        message.add_header_type(MessageHeader::RecordBatch);
        message.add_header(batch);
        message.add_bodyLength(self.body.len() as i64);
        let message = message.finish();
        fbb.finish(message, None);
        let meta = fbb.finished_data();
        let padded = (meta.len() + 8).next_multiple_of(8) - 8;
        let mut out =
            Vec::with_capacity(schema.len() + 8 + padded + self.body.len() + END_OF_STREAM.len());
        out.extend_from_slice(schema);
        out.extend_from_slice(&CONTINUATION);
        out.extend_from_slice(&(padded as i32).to_le_bytes());
        out.extend_from_slice(meta);
        out.resize(out.len() + padded - meta.len(), 0);
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&END_OF_STREAM);
        out
    }
}

/// A record batch read from a stream: its row count and, per column, its buffers.
pub(crate) struct BatchReader<'a> {
    rows: usize,
    /// Per column: (null count, buffers).
    columns: Vec<(usize, Vec<&'a [u8]>)>,
}

/// Reads a stream that starts with exactly `schema` (a framed schema message) and
/// holds one record batch of `buffers_per_column[i]` buffers per column; `Ok(None)`
/// when the stream starts with another schema message.
pub(crate) fn read<'a>(
    stream: &'a [u8],
    schema: &[u8],
    buffers_per_column: &[usize],
) -> Result<Option<BatchReader<'a>>, ArrowError> {
    let Some(rest) = stream.strip_prefix(schema) else {
        return Ok(None);
    };
    let truncated = || invalid("the stream ends inside its record batch");
    let rest = rest.strip_prefix(&CONTINUATION).ok_or_else(truncated)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
    let len = usize::try_from(i32::from_le_bytes(*len)).map_err(|_| truncated())?;
    let meta = rest.get(..len).ok_or_else(truncated)?;
    let message =
        root_as_message(meta).map_err(|e| invalid(format!("a malformed message: {e}")))?;
    let batch = message
        .header_as_record_batch()
        .ok_or_else(|| invalid("the second message is not a record batch"))?;
    if batch.compression().is_some() {
        return Err(invalid("compressed record batches are not accepted"));
    }
    let body_len = usize::try_from(message.bodyLength()).map_err(|_| truncated())?;
    let end = len.checked_add(body_len).ok_or_else(truncated)?;
    let body = rest.get(len..end).ok_or_else(truncated)?;
    match rest.get(end..).unwrap_or_default() {
        [] | [0, 0, 0, 0] => {}
        end if end == END_OF_STREAM => {}
        _ => return Err(invalid("the stream holds more than one record batch")),
    }
    let rows = usize::try_from(batch.length())
        .map_err(|_| invalid(format!("a row count of {}", batch.length())))?;
    let nodes = batch.nodes().ok_or_else(|| invalid("no field nodes"))?;
    let buffers = batch.buffers().ok_or_else(|| invalid("no buffers"))?;
    if nodes.len() != buffers_per_column.len()
        || buffers.len() != buffers_per_column.iter().sum::<usize>()
    {
        return Err(invalid(format!(
            "{} columns and {} buffers, expected {} and {}",
            nodes.len(),
            buffers.len(),
            buffers_per_column.len(),
            buffers_per_column.iter().sum::<usize>()
        )));
    }
    let mut all = buffers.iter().map(|b| {
        let (offset, len) = (usize::try_from(b.offset()), usize::try_from(b.length()));
        match (offset, len) {
            (Ok(o), Ok(l)) => body
                .get(o..o.saturating_add(l))
                .ok_or_else(|| invalid("a buffer outside the body")),
            _ => Err(invalid("a negative buffer offset or length")),
        }
    });
    let mut columns = Vec::with_capacity(nodes.len());
    for (node, &n) in nodes.iter().zip(buffers_per_column) {
        if usize::try_from(node.length()) != Ok(rows) {
            return Err(invalid("a column whose length is not the batch's"));
        }
        let nulls =
            usize::try_from(node.null_count()).map_err(|_| invalid("a negative null count"))?;
        let bufs = (&mut all).take(n).collect::<Result<Vec<_>, _>>()?;
        columns.push((nulls, bufs));
    }
    Ok(Some(BatchReader { rows, columns }))
}

impl<'a> BatchReader<'a> {
    /// Rows in the batch.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    fn column(&self, c: usize) -> Result<&(usize, Vec<&'a [u8]>), ArrowError> {
        self.columns
            .get(c)
            .ok_or_else(|| invalid(format!("no column {c}")))
    }

    /// `valid(i)` of column `c` (checked against its null count).
    fn validity(&self, c: usize) -> Result<Option<&'a [u8]>, ArrowError> {
        let (nulls, bufs) = self.column(c)?;
        let bitmap = bufs.first().copied().unwrap_or_default();
        if bitmap.is_empty() {
            if *nulls > 0 {
                return Err(invalid(format!(
                    "column {c} has nulls and no validity buffer"
                )));
            }
            return Ok(None);
        }
        if bitmap.len() < self.rows.div_ceil(8) {
            return Err(invalid(format!("column {c}: a short validity buffer")));
        }
        let set: usize = (0..self.rows)
            .filter(|&i| bitmap[i / 8] & (1 << (i % 8)) != 0)
            .count();
        if self.rows - set != *nulls {
            return Err(invalid(format!(
                "column {c}: its null count is not its validity's"
            )));
        }
        Ok(Some(bitmap))
    }

    /// A 64-bit column (validity, values): `None` per null row.
    pub(crate) fn int64(&self, c: usize) -> Result<Vec<Option<i64>>, ArrowError> {
        let validity = self.validity(c)?;
        let values = self.column(c)?.1.get(1).copied().unwrap_or_default();
        if self.rows.checked_mul(8).is_none_or(|n| values.len() < n) {
            return Err(invalid(format!("column {c}: a short values buffer")));
        }
        Ok(values
            .chunks_exact(8)
            .take(self.rows)
            .enumerate()
            .map(|(i, v)| {
                let valid = validity.is_none_or(|b| b[i / 8] & (1 << (i % 8)) != 0);
                let bytes: [u8; 8] = v.try_into().unwrap_or_default();
                valid.then(|| i64::from_le_bytes(bytes))
            })
            .collect())
    }

    /// A Binary column (validity, offsets, data): `None` per null row.
    pub(crate) fn binary(&self, c: usize) -> Result<Vec<Option<&'a [u8]>>, ArrowError> {
        let validity = self.validity(c)?;
        let bufs = &self.column(c)?.1;
        let (offsets, data) = (
            bufs.get(1).copied().unwrap_or_default(),
            bufs.get(2).copied().unwrap_or_default(),
        );
        if self
            .rows
            .checked_add(1)
            .and_then(|n| n.checked_mul(4))
            .is_none_or(|n| offsets.len() < n)
        {
            return Err(invalid(format!("column {c}: a short offsets buffer")));
        }
        let offset = |i: usize| -> Result<usize, ArrowError> {
            let b: [u8; 4] = offsets[i * 4..i * 4 + 4].try_into().unwrap_or_default();
            usize::try_from(i32::from_le_bytes(b))
                .map_err(|_| invalid(format!("column {c}: a negative offset")))
        };
        let mut out = Vec::with_capacity(self.rows);
        let mut start = offset(0)?;
        for i in 0..self.rows {
            let end = offset(i + 1)?;
            let value = data
                .get(start..end)
                .ok_or_else(|| invalid(format!("column {c}: offsets outside its data")))?;
            let valid = validity.is_none_or(|b| b[i / 8] & (1 << (i % 8)) != 0);
            out.push(valid.then_some(value));
            start = end;
        }
        Ok(out)
    }
}
