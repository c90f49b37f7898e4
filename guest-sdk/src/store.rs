//! Custom online stores as WebAssembly components (the `online-store` world of
//! `wit/online-store.wit`).
//!
//! A store implements [`OnlineStore`] on plain Rust types and is exported with
//! [`export_store!`](crate::export_store); the SDK converts the Arrow IPC buffers of
//! the WIT contract to and from those types ([`codec`], which the server uses too, so
//! both ends share one codec) and turns panics into messages the server reports.
//!
//! ```
//! use feast_plugin_sdk::store::*;
//!
//! /// Holds nothing: every key is "not found".
//! struct Empty;
//!
//! impl OnlineStore for Empty {
//!     const NAME: &'static str = "empty";
//!     const VERSION: &'static str = "0.1.0";
//!     fn open(_: StoreConfig) -> Result<Self, StoreError> {
//!         Ok(Empty)
//!     }
//!     fn read(&mut self, views: Vec<ViewRead>) -> Result<Vec<Vec<StoredRow>>, StoreError> {
//!         Ok(views.iter().map(|v| vec![StoredRow::default(); v.keys.len()]).collect())
//!     }
//!     fn write(&mut self, _: Vec<ViewWrite>) -> Result<WriteOutcome, StoreError> {
//!         Err(StoreError::Failed("read-only".into()))
//!     }
//!     fn ping(&mut self) -> Result<(), StoreError> {
//!         Ok(())
//!     }
//! }
//!
//! feast_plugin_sdk::export_store!(Empty);
//! ```

use std::net::SocketAddr;

/// A point in time: seconds and nanoseconds since the Unix epoch (a
/// `google.protobuf.Timestamp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds.
    pub seconds: i64,
    /// Nanoseconds within the second (0..1e9).
    pub nanos: i32,
}

impl Timestamp {
    /// From nanoseconds since the epoch.
    pub fn from_nanos(ns: i64) -> Self {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Nanoseconds since the epoch; `None` outside the years 1677-2262.
    pub fn to_nanos(self) -> Option<i64> {
        self.seconds
            .checked_mul(1_000_000_000)?
            .checked_add(i64::from(self.nanos))
    }
}

/// The reads of one view: which features, for which entity keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewRead {
    /// The name the store knows the view by.
    pub view: String,
    /// Features to read, in answer order.
    pub features: Vec<String>,
    /// Serialized entity keys, each once.
    pub keys: Vec<Vec<u8>>,
}

/// What the store holds for one key of a [`ViewRead`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredRow {
    /// The row's event time; `None` when the store holds nothing for the key.
    pub event_ts: Option<Timestamp>,
    /// Per requested feature, the serialized `feast.types.Value`; `None` when missing.
    /// Empty for a key not found.
    pub values: Vec<Option<Vec<u8>>>,
}

/// The rows of one view to write.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewWrite {
    /// The name the store knows the view by.
    pub view: String,
    /// Features, in the order of each row's values.
    pub features: Vec<String>,
    /// At most one row per entity key.
    pub rows: Vec<WriteRow>,
}

/// One entity's row to write.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteRow {
    /// The serialized entity key.
    pub entity_key: Vec<u8>,
    /// Its event time.
    pub event_ts: Timestamp,
    /// Its created time, when the source has one.
    pub created_ts: Option<Timestamp>,
    /// Per feature, the serialized `feast.types.Value` (empty for a null).
    pub values: Vec<Vec<u8>>,
}

/// What a write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows written.
    pub written: u64,
    /// Rows left out because the store held a newer row for their entity.
    pub skipped: u64,
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time (the client gets 503).
    Unavailable(String),
    /// The backend refused (500).
    Failed(String),
    /// A stored value is malformed (500).
    Corrupt(String),
    /// The configuration is invalid (`open` only).
    InvalidConfig(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "unavailable: {m}"),
            StoreError::Failed(m) => write!(f, "failed: {m}"),
            StoreError::Corrupt(m) => write!(f, "corrupt: {m}"),
            StoreError::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The store's configuration: the `config:` mapping of `feature_store.yaml`'s
/// `online_store` section, the Feast project and the addresses the store may
/// connect to.
#[derive(Clone, Debug, Default)]
pub struct StoreConfig {
    /// The Feast project.
    pub project: String,
    /// The addresses of the `allow` list, resolved by the server; connecting anywhere
    /// else fails.
    pub allow: Vec<SocketAddr>,
    /// Each `allow` entry as written (`host:port`) and the addresses it resolved to.
    pub resolved: Vec<(String, Vec<SocketAddr>)>,
    /// The `config:` mapping.
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl StoreConfig {
    /// Parses what the server passes to `open`.
    pub fn parse(json: &str) -> Result<Self, StoreError> {
        let invalid = |m: String| StoreError::InvalidConfig(m);
        let mut root: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| invalid(format!("not a JSON object: {e}")))?;
        let project = match root.remove("project") {
            Some(serde_json::Value::String(p)) => p,
            _ => return Err(invalid("`project` is missing".into())),
        };
        let allow = match root.remove("allow") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| invalid(format!("`allow` entry {v} is not ip:port")))
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
            Some(other) => return Err(invalid(format!("`allow` is not a list: {other}"))),
        };
        let resolved = match root.remove("resolved") {
            Some(serde_json::Value::Object(m)) => m
                .into_iter()
                .map(|(entry, addrs)| {
                    let addrs = addrs
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
                        .unwrap_or_default();
                    (entry, addrs)
                })
                .collect(),
            _ => Vec::new(),
        };
        let options = match root.remove("config") {
            Some(serde_json::Value::Object(m)) => m,
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(other) => return Err(invalid(format!("`config` is not a mapping: {other}"))),
        };
        Ok(StoreConfig {
            project,
            allow,
            resolved,
            options,
        })
    }

    /// The addresses to connect to for `host:port`: the address itself when `host`
    /// is an IP address, else what the server resolved the `allow` entry
    /// `host:port` to (a component cannot resolve names). An error names the allow
    /// list when there is no such entry.
    pub fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, StoreError> {
        let host = host.trim_matches(['[', ']']);
        let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => self
                .resolved
                .iter()
                .filter(|(entry, _)| {
                    entry
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| h.eq_ignore_ascii_case(host) && p.parse() == Ok(port))
                })
                .flat_map(|(_, addrs)| addrs.iter().copied())
                .collect(),
        };
        if addrs.is_empty() {
            return Err(StoreError::InvalidConfig(format!(
                "{host}:{port} is not among the allowed addresses {:?}",
                self.allow
            )));
        }
        Ok(addrs)
    }

    /// A text option.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.options.get(key).and_then(|v| v.as_str())
    }

    /// An integer option (also given as text).
    pub fn int(&self, key: &str) -> Result<Option<i64>, StoreError> {
        match self.options.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                StoreError::InvalidConfig(format!("`{key}` is not an integer: {n}"))
            }),
            Some(serde_json::Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                StoreError::InvalidConfig(format!("`{key}` is not an integer: {s:?}"))
            }),
            Some(other) => Err(StoreError::InvalidConfig(format!(
                "`{key}` is not an integer: {other}"
            ))),
        }
    }

    /// A boolean option.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, StoreError> {
        match self.options.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(StoreError::InvalidConfig(format!(
                "`{key}` is not a boolean: {other}"
            ))),
        }
    }
}

/// An online store. One value lives in each instance the server keeps; it may hold
/// connections between calls.
pub trait OnlineStore: Sized + 'static {
    /// Store name.
    const NAME: &'static str;
    /// Store version.
    const VERSION: &'static str;

    /// Opens the store (first call of an instance).
    fn open(config: StoreConfig) -> Result<Self, StoreError>;

    /// Reads every view; one `Vec` per view, one row per key, in the order given.
    fn read(&mut self, views: Vec<ViewRead>) -> Result<Vec<Vec<StoredRow>>, StoreError>;

    /// Writes every view.
    fn write(&mut self, views: Vec<ViewWrite>) -> Result<WriteOutcome, StoreError>;

    /// Checks that the backend answers.
    fn ping(&mut self) -> Result<(), StoreError>;
}

/// A connection whose reads ask for about as many bytes as recent reads returned
/// (512 B to 64 KiB, growing fourfold when a read fills what it asked for, halving
/// when reads return much less). On WASI every read allocates and zeroes a host
/// buffer of the size asked for, even when no byte has arrived yet: a store whose
/// answers are small should not ask for large buffers. Writes pass through.
#[derive(Debug)]
pub struct FittedReads<S> {
    inner: S,
    size: usize,
}

impl<S> FittedReads<S> {
    const MIN: usize = 512;
    const MAX: usize = 64 << 10;

    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        FittedReads {
            inner,
            size: Self::MIN,
        }
    }

    /// How many bytes the next read asks for (at most).
    pub fn next_read(&self) -> usize {
        self.size
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: std::io::Read> std::io::Read for FittedReads<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.size);
        let n = self.inner.read(&mut buf[..want])?;
        if n == want && want == self.size {
            self.size = (self.size * 4).min(Self::MAX);
        } else if n < self.size / 4 {
            self.size = (self.size / 2).max(Self::MIN);
        }
        Ok(n)
    }
}

impl<S: std::io::Write> std::io::Write for FittedReads<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a protobuf varint from the front of `b` (advancing it); `None` when `b` ends
/// first or the varint is longer than ten bytes.
pub fn read_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

pub mod codec {
    //! The Arrow IPC buffers of the `online-store` world, to and from the store types.
    //! Decoding checks everything the contract says (column names, types, nulls,
    //! row counts) and names what is wrong.

    use std::cell::RefCell;
    use std::sync::Arc;

    use arrow_array::builder::TimestampNanosecondBuilder;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampNanosecondType;
    use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch};
    use arrow_buffer::Buffer;
    use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

    use std::rc::Rc;

    use super::{StoredRow, Timestamp, WriteRow};
    use crate::flat_ipc::{self, BatchWriter};
    use crate::ipc::{read_stream, write_stream};

    const KEY: &str = "entity_key";
    const EVENT_TS: &str = "event_ts";
    const CREATED_TS: &str = "created_ts";

    fn invalid(m: String) -> ArrowError {
        ArrowError::InvalidArgumentError(m)
    }

    fn ts_type() -> DataType {
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    }

    fn nanos(t: Timestamp) -> Result<i64, ArrowError> {
        t.to_nanos()
            .ok_or_else(|| invalid(format!("{t:?} is outside the years 1677-2262")))
    }

    thread_local! {
        /// Schemas built lately, by their columns (name, type, nullable): a repeated
        /// shape reuses its schema, which the IPC writer then recognizes at once.
        static SCHEMAS: RefCell<Vec<SchemaRef>> = const { RefCell::new(Vec::new()) };
    }

    /// Schemas kept per thread.
    const SCHEMAS_KEPT: usize = 16;

    /// The schema of `columns`, reused when one of the same shape was built lately.
    fn schema_of(columns: &[(String, ArrayRef, bool)]) -> SchemaRef {
        let same = |schema: &SchemaRef| {
            schema.fields().len() == columns.len()
                && schema
                    .fields()
                    .iter()
                    .zip(columns)
                    .all(|(f, (n, a, nullable))| {
                        f.name() == n
                            && f.data_type() == a.data_type()
                            && f.is_nullable() == *nullable
                    })
        };
        if let Some(found) = SCHEMAS.with_borrow(|s| s.iter().find(|s| same(s)).cloned()) {
            return found;
        }
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a, nullable)| Field::new(n, a.data_type().clone(), *nullable))
                .collect::<Vec<Field>>(),
        ));
        SCHEMAS.with_borrow_mut(|s| {
            if s.len() >= SCHEMAS_KEPT {
                s.remove(0);
            }
            s.push(schema.clone());
        });
        schema
    }

    fn batch(columns: Vec<(String, ArrayRef, bool)>) -> Result<Vec<u8>, ArrowError> {
        let schema = schema_of(&columns);
        let arrays = columns.into_iter().map(|(_, a, _)| a).collect();
        write_stream(&RecordBatch::try_new(schema, arrays)?)
    }

    fn binary_column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a BinaryArray, ArrowError> {
        let col = b
            .column_by_name(name)
            .ok_or_else(|| invalid(format!("column {name} is missing")))?;
        col.as_binary_opt::<i32>()
            .ok_or_else(|| invalid(format!("column {name} is {}, not Binary", col.data_type())))
    }

    fn ts_column<'a>(
        b: &'a RecordBatch,
        name: &str,
    ) -> Result<&'a arrow_array::PrimitiveArray<TimestampNanosecondType>, ArrowError> {
        let col = b
            .column_by_name(name)
            .ok_or_else(|| invalid(format!("column {name} is missing")))?;
        if col.data_type() != &ts_type() {
            return Err(invalid(format!(
                "column {name} is {}, not Timestamp(ns, UTC)",
                col.data_type()
            )));
        }
        Ok(col.as_primitive::<TimestampNanosecondType>())
    }

    fn expect_columns(b: &RecordBatch, names: &[&str]) -> Result<(), ArrowError> {
        let got: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if got != names {
            return Err(invalid(format!("columns {got:?}, expected {names:?}")));
        }
        Ok(())
    }

    thread_local! {
        /// The schema message of the `keys` buffers.
        static KEYS_SCHEMA: Vec<u8> = keys_schema();
        /// Schema messages of answers made lately, by their features.
        static ROWS_SCHEMAS: RefCell<Vec<FeaturesSchema>> = const { RefCell::new(Vec::new()) };
    }

    /// Features and the schema message of their answers.
    type FeaturesSchema = (Vec<String>, Rc<[u8]>);

    /// The schema message of the `keys` buffers (empty if arrow could not write it:
    /// then no stream matches it and every one takes arrow's reader).
    fn keys_schema() -> Vec<u8> {
        let schema = Schema::new(vec![Field::new(KEY, DataType::Binary, false)]);
        flat_ipc::schema_message(&Arc::new(schema)).unwrap_or_default()
    }

    /// The schema message of an answer with `features`: `event_ts`, then one
    /// nullable Binary column per feature.
    fn rows_schema(features: &[String]) -> Result<Rc<[u8]>, ArrowError> {
        if let Some(found) = ROWS_SCHEMAS.with_borrow(|s| {
            s.iter()
                .find(|(f, _)| f.as_slice() == features)
                .map(|(_, m)| m.clone())
        }) {
            return Ok(found);
        }
        let mut fields = vec![Field::new(EVENT_TS, ts_type(), true)];
        fields.extend(
            features
                .iter()
                .map(|f| Field::new(f, DataType::Binary, true)),
        );
        let message: Rc<[u8]> = flat_ipc::schema_message(&Arc::new(Schema::new(fields)))?.into();
        ROWS_SCHEMAS.with_borrow_mut(|s| {
            if s.len() >= SCHEMAS_KEPT {
                s.remove(0);
            }
            s.push((features.to_vec(), message.clone()));
        });
        Ok(message)
    }

    /// The `keys` buffer of a view read.
    pub fn encode_keys(keys: &[Vec<u8>]) -> Result<Vec<u8>, ArrowError> {
        let size: usize = keys.iter().map(Vec::len).sum();
        let mut w = BatchWriter::new(keys.len(), 1, size + 4 * keys.len() + 16);
        w.binary(keys.iter().map(|k| Some(k.as_slice())))?;
        Ok(KEYS_SCHEMA.with(|schema| w.finish(schema)))
    }

    /// Reads the `keys` buffer of a view read.
    pub fn decode_keys(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ArrowError> {
        if let Some(b) = KEYS_SCHEMA.with(|schema| flat_ipc::read(bytes, schema, &[3]))? {
            return b
                .binary(0)?
                .into_iter()
                .map(|k| {
                    k.map(<[u8]>::to_vec)
                        .ok_or_else(|| invalid("a null entity key".into()))
                })
                .collect();
        }
        let b = read_stream(Buffer::from(bytes))?;
        expect_columns(&b, &[KEY])?;
        let keys = binary_column(&b, KEY)?;
        if keys.null_count() > 0 {
            return Err(invalid("a null entity key".into()));
        }
        Ok(keys
            .iter()
            .map(|k| k.unwrap_or_default().to_vec())
            .collect())
    }

    /// The answer for one view: `event_ts` then one Binary column per feature.
    pub fn encode_rows(features: &[String], rows: &[StoredRow]) -> Result<Vec<u8>, ArrowError> {
        encode_rows_as(&AnswerSchema::of(features)?, rows)
    }

    /// The schema of the answers for a list of features (made once per list, kept).
    pub struct AnswerSchema {
        message: Rc<[u8]>,
        features: usize,
    }

    impl AnswerSchema {
        /// The schema of the answers for `features`.
        pub fn of(features: &[String]) -> Result<Self, ArrowError> {
            Ok(AnswerSchema {
                message: rows_schema(features)?,
                features: features.len(),
            })
        }
    }

    /// [`encode_rows`] for the features of `schema`.
    pub fn encode_rows_as(
        schema: &AnswerSchema,
        rows: &[StoredRow],
    ) -> Result<Vec<u8>, ArrowError> {
        let features = schema.features;
        let size: usize = rows
            .iter()
            .flat_map(|r| r.values.iter().flatten().map(Vec::len))
            .sum();
        let mut w = BatchWriter::new(
            rows.len(),
            1 + features,
            size + rows.len() * (8 + 4 * features) + 64,
        );
        for t in rows.iter().filter_map(|r| r.event_ts) {
            nanos(t)?;
        }
        w.int64(|i| rows[i].event_ts.and_then(Timestamp::to_nanos));
        for i in 0..features {
            w.binary(
                rows.iter()
                    .map(|r| r.values.get(i).and_then(|v| v.as_deref())),
            )?;
        }
        Ok(w.finish(&schema.message))
    }

    /// [`encode_rows`] with arrow's general writer (tests compare the two).
    #[cfg(test)]
    fn encode_rows_with_arrow(
        features: &[String],
        rows: &[StoredRow],
    ) -> Result<Vec<u8>, ArrowError> {
        let mut ts = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        for r in rows {
            ts.append_option(r.event_ts.map(nanos).transpose()?);
        }
        let mut columns: Vec<(String, ArrayRef, bool)> =
            vec![(EVENT_TS.into(), Arc::new(ts.finish()), true)];
        for (i, f) in features.iter().enumerate() {
            let mut b =
                arrow_array::builder::BinaryBuilder::with_capacity(rows.len(), rows.len() * 16);
            for r in rows {
                b.append_option(r.values.get(i).and_then(|v| v.as_deref()));
            }
            columns.push((f.clone(), Arc::new(b.finish()), true));
        }
        batch(columns)
    }

    /// Reads the answer for one view, which must have `keys` rows and the columns of
    /// `features`.
    pub fn decode_rows(
        bytes: &[u8],
        features: &[String],
        keys: usize,
    ) -> Result<Vec<StoredRow>, ArrowError> {
        let schema = rows_schema(features)?;
        let mut per_column = vec![3; features.len() + 1];
        per_column[0] = 2;
        if let Some(b) = flat_ipc::read(bytes, &schema, &per_column)? {
            if b.rows() != keys {
                return Err(invalid(format!("{} rows for {keys} entity keys", b.rows())));
            }
            let ts = b.int64(0)?;
            let values = (1..=features.len())
                .map(|c| b.binary(c))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((0..keys)
                .map(|i| StoredRow {
                    event_ts: ts[i].map(Timestamp::from_nanos),
                    values: values
                        .iter()
                        .map(|col| col[i].map(<[u8]>::to_vec))
                        .collect(),
                })
                .collect());
        }
        let b = read_stream(Buffer::from(bytes))?;
        let mut names = vec![EVENT_TS];
        names.extend(features.iter().map(String::as_str));
        expect_columns(&b, &names)?;
        if b.num_rows() != keys {
            return Err(invalid(format!(
                "{} rows for {keys} entity keys",
                b.num_rows()
            )));
        }
        let ts = ts_column(&b, EVENT_TS)?;
        let values: Vec<&BinaryArray> = features
            .iter()
            .map(|f| binary_column(&b, f))
            .collect::<Result<_, _>>()?;
        Ok((0..keys)
            .map(|i| StoredRow {
                event_ts: ts.is_valid(i).then(|| Timestamp::from_nanos(ts.value(i))),
                values: values
                    .iter()
                    .map(|a| a.is_valid(i).then(|| a.value(i).to_vec()))
                    .collect(),
            })
            .collect())
    }

    /// The `rows` buffer of a view write.
    pub fn encode_writes(features: &[String], rows: &[WriteRow]) -> Result<Vec<u8>, ArrowError> {
        let keys: BinaryArray = rows.iter().map(|r| Some(r.entity_key.as_slice())).collect();
        let mut event = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        let mut created =
            TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        for r in rows {
            event.append_value(nanos(r.event_ts)?);
            created.append_option(r.created_ts.map(nanos).transpose()?);
        }
        let mut columns: Vec<(String, ArrayRef, bool)> = vec![
            (KEY.into(), Arc::new(keys), false),
            (EVENT_TS.into(), Arc::new(event.finish()), false),
            (CREATED_TS.into(), Arc::new(created.finish()), true),
        ];
        for (i, f) in features.iter().enumerate() {
            let array: BinaryArray = rows
                .iter()
                .map(|r| Some(r.values.get(i).map_or(&[][..], Vec::as_slice)))
                .collect();
            columns.push((f.clone(), Arc::new(array), false));
        }
        batch(columns)
    }

    /// Reads the `rows` buffer of a view write with the columns of `features`.
    pub fn decode_writes(bytes: &[u8], features: &[String]) -> Result<Vec<WriteRow>, ArrowError> {
        let b = read_stream(Buffer::from(bytes))?;
        let mut names = vec![KEY, EVENT_TS, CREATED_TS];
        names.extend(features.iter().map(String::as_str));
        expect_columns(&b, &names)?;
        let keys = binary_column(&b, KEY)?;
        let event = ts_column(&b, EVENT_TS)?;
        let created = ts_column(&b, CREATED_TS)?;
        let values: Vec<&BinaryArray> = features
            .iter()
            .map(|f| binary_column(&b, f))
            .collect::<Result<_, _>>()?;
        (0..b.num_rows())
            .map(|i| {
                if keys.is_null(i) || event.is_null(i) {
                    return Err(invalid(format!("row {i}: a null entity key or event_ts")));
                }
                Ok(WriteRow {
                    entity_key: keys.value(i).to_vec(),
                    event_ts: Timestamp::from_nanos(event.value(i)),
                    created_ts: created
                        .is_valid(i)
                        .then(|| Timestamp::from_nanos(created.value(i))),
                    values: values
                        .iter()
                        .map(|a| {
                            if a.is_valid(i) {
                                a.value(i).to_vec()
                            } else {
                                Vec::new()
                            }
                        })
                        .collect(),
                })
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn host_names_take_the_addresses_of_their_own_entry() {
            let config = super::super::StoreConfig::parse(
                r#"{"project": "p", "allow": ["10.0.0.1:5432", "10.0.0.2:5432"],
                    "resolved": {"pg-primary:5432": ["10.0.0.1:5432"], "pg-replica:5432": ["10.0.0.2:5432"]}}"#,
            )
            .unwrap();
            let primary: Vec<std::net::SocketAddr> = vec!["10.0.0.1:5432".parse().unwrap()];
            assert_eq!(config.addresses("pg-primary", 5432).unwrap(), primary);
            assert_eq!(config.addresses("PG-PRIMARY", 5432).unwrap(), primary);
            assert!(config.addresses("pg-other", 5432).is_err());
            assert!(config.addresses("pg-primary", 5433).is_err());
            assert_eq!(
                config.addresses("127.0.0.1", 1).unwrap(),
                vec!["127.0.0.1:1".parse().unwrap()]
            );
        }

        #[test]
        fn buffers_round_trip() {
            let keys = vec![b"k1".to_vec(), b"".to_vec()];
            assert_eq!(decode_keys(&encode_keys(&keys).unwrap()).unwrap(), keys);

            let features = vec!["a".to_string(), "b".to_string()];
            let rows = vec![
                StoredRow {
                    event_ts: Some(Timestamp::from_nanos(1_700_000_000_123_456_789)),
                    values: vec![Some(b"\x08\x01".to_vec()), None],
                },
                StoredRow {
                    event_ts: None,
                    values: vec![None, None],
                },
            ];
            let bytes = encode_rows(&features, &rows).unwrap();
            assert_eq!(decode_rows(&bytes, &features, 2).unwrap(), rows);
            assert!(
                decode_rows(&bytes, &features, 3).is_err(),
                "row count checked"
            );
            assert!(
                decode_rows(&bytes, &features[..1], 2).is_err(),
                "columns checked"
            );

            let writes = vec![WriteRow {
                entity_key: b"k".to_vec(),
                event_ts: Timestamp {
                    seconds: 1,
                    nanos: 5,
                },
                created_ts: None,
                values: vec![b"x".to_vec(), Vec::new()],
            }];
            let bytes = encode_writes(&features, &writes).unwrap();
            assert_eq!(decode_writes(&bytes, &features).unwrap(), writes);
        }

        fn sample() -> (Vec<String>, Vec<StoredRow>) {
            let features = vec!["conv_rate".to_string(), "b".to_string(), "c".to_string()];
            let rows = (0..11)
                .map(|i| StoredRow {
                    event_ts: (i % 4 != 0).then(|| Timestamp::from_nanos(i * 1_000_000_007)),
                    values: (0..3)
                        .map(|f| ((i + f) % 3 != 0).then(|| vec![i as u8; (f * i) as usize]))
                        .collect(),
                })
                .collect();
            (features, rows)
        }

        #[test]
        fn flat_streams_are_arrow_streams() {
            let (features, rows) = sample();
            // Ours read by arrow's reader, arrow's writer read by ours (and by arrow's).
            let ours = encode_rows(&features, &rows).unwrap();
            let b = read_stream(Buffer::from(ours.as_slice())).unwrap();
            assert_eq!(b.num_rows(), 11);
            assert_eq!(b.column(0).null_count(), 3);
            let theirs = encode_rows_with_arrow(&features, &rows).unwrap();
            assert_eq!(decode_rows(&theirs, &features, 11).unwrap(), rows);
            assert_eq!(decode_rows(&ours, &features, 11).unwrap(), rows);
            let keys: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; i as usize]).collect();
            let array: BinaryArray = keys.iter().map(|k| Some(k.as_slice())).collect();
            let theirs = batch(vec![(KEY.into(), Arc::new(array), false)]).unwrap();
            assert_eq!(decode_keys(&theirs).unwrap(), keys);
            let ours = encode_keys(&keys).unwrap();
            assert_eq!(
                read_stream(Buffer::from(ours.as_slice()))
                    .unwrap()
                    .num_rows(),
                5
            );
            assert_eq!(decode_keys(&ours).unwrap(), keys);
            assert_eq!(
                decode_keys(&encode_keys(&[]).unwrap()).unwrap(),
                Vec::<Vec<u8>>::new()
            );
        }

        #[test]
        fn damaged_flat_streams_are_errors_not_panics() {
            let (features, rows) = sample();
            let good = encode_rows(&features, &rows).unwrap();
            let schema_len = rows_schema(&features).unwrap().len();
            let mut refused = 0;
            for at in schema_len..good.len() {
                for bits in [0x01, 0x80, 0xff] {
                    let mut bad = good.clone();
                    bad[at] ^= bits;
                    if decode_rows(&bad, &features, 11).is_err() {
                        refused += 1;
                    }
                }
                if decode_rows(&good[..at], &features, 11).is_err() {
                    refused += 1;
                }
            }
            // Flipped data bytes decode (to other values); frames, offsets and
            // lengths are caught.
            assert!(refused > (good.len() - schema_len), "{refused}");
        }
    }
}

#[doc(hidden)]
pub mod export {
    //! Glue used by [`export_store!`](crate::export_store); not part of the API.

    use std::any::Any;
    use std::cell::RefCell;

    use super::{OnlineStore, StoreError, codec};

    thread_local! {
        /// The instance's opened store.
        static STORE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn with_store<T: OnlineStore, R>(
        f: impl FnOnce(&mut T) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        STORE.with_borrow_mut(|s| match s.as_mut().and_then(|b| b.downcast_mut::<T>()) {
            Some(store) => f(store),
            None => Err(StoreError::Failed("the store was not opened".into())),
        })
    }

    fn arrow(e: arrow_schema::ArrowError) -> StoreError {
        StoreError::Failed(format!("invalid request buffer: {e}"))
    }

    /// The WIT `open`: parses the configuration and keeps the opened store.
    pub fn open<T: OnlineStore>(config: &str) -> Result<(String, String), StoreError> {
        crate::export::install_panic_hook();
        let store = T::open(super::StoreConfig::parse(config)?)?;
        STORE.with_borrow_mut(|s| *s = Some(Box::new(store)));
        Ok((T::NAME.to_string(), T::VERSION.to_string()))
    }

    /// The WIT `read`, on decoded views.
    pub fn read<T: OnlineStore>(
        views: impl ExactSizeIterator<Item = (String, Vec<String>, Vec<u8>)>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut reads = Vec::with_capacity(views.len());
        for (view, features, keys) in views {
            reads.push(super::ViewRead {
                view,
                features,
                keys: codec::decode_keys(&keys).map_err(arrow)?,
            });
        }
        let schemas = reads
            .iter()
            .map(|r| codec::AnswerSchema::of(&r.features))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Failed(format!("cannot encode the answer: {e}")))?;
        let answers = with_store::<T, _>(|s| s.read(reads))?;
        if answers.len() != schemas.len() {
            return Err(StoreError::Failed(format!(
                "the store answered {} views for {}",
                answers.len(),
                schemas.len()
            )));
        }
        answers
            .iter()
            .zip(&schemas)
            .map(|(rows, schema)| {
                codec::encode_rows_as(schema, rows)
                    .map_err(|e| StoreError::Failed(format!("cannot encode the answer: {e}")))
            })
            .collect()
    }

    /// The WIT `write`, on decoded views.
    pub fn write<T: OnlineStore>(
        views: Vec<(String, Vec<String>, Vec<u8>)>,
    ) -> Result<super::WriteOutcome, StoreError> {
        let mut writes = Vec::with_capacity(views.len());
        for (view, features, rows) in views {
            let rows = codec::decode_writes(&rows, &features).map_err(arrow)?;
            writes.push(super::ViewWrite {
                view,
                features,
                rows,
            });
        }
        with_store::<T, _>(|s| s.write(writes))
    }

    /// The WIT `ping`.
    pub fn ping<T: OnlineStore>() -> Result<(), StoreError> {
        with_store::<T, _>(|s| s.ping())
    }
}

/// Exports a type implementing [`OnlineStore`] as the `online-store` world. On
/// `wasm32` this implements the world; natively it expands to nothing, so the crate
/// can be tested with `cargo test`.
#[macro_export]
macro_rules! export_store {
    ($store:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::store_bindings::exports::feast::plugin::store as wit;

            struct FeastStoreComponent;

            fn wit_error(e: $crate::store::StoreError) -> wit::StoreError {
                match e {
                    $crate::store::StoreError::Unavailable(m) => wit::StoreError::Unavailable(m),
                    $crate::store::StoreError::Failed(m) => wit::StoreError::Failed(m),
                    $crate::store::StoreError::Corrupt(m) => wit::StoreError::Corrupt(m),
                    $crate::store::StoreError::InvalidConfig(m) => {
                        wit::StoreError::InvalidConfig(m)
                    }
                }
            }

            impl wit::Guest for FeastStoreComponent {
                fn open(
                    config: ::std::string::String,
                ) -> ::std::result::Result<wit::StoreInfo, wit::StoreError> {
                    $crate::store::export::open::<$store>(&config)
                        .map(|(name, version)| wit::StoreInfo { name, version })
                        .map_err(wit_error)
                }

                fn read(
                    views: ::std::vec::Vec<wit::ViewRead>,
                ) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, wit::StoreError>
                {
                    $crate::store::export::read::<$store>(
                        views.into_iter().map(|v| (v.view, v.features, v.keys)),
                    )
                    .map_err(wit_error)
                }

                fn write(
                    views: ::std::vec::Vec<wit::ViewWrite>,
                ) -> ::std::result::Result<wit::WriteOutcome, wit::StoreError> {
                    $crate::store::export::write::<$store>(
                        views
                            .into_iter()
                            .map(|v| (v.view, v.features, v.rows))
                            .collect(),
                    )
                    .map(|o| wit::WriteOutcome {
                        written: o.written,
                        skipped: o.skipped,
                    })
                    .map_err(wit_error)
                }

                fn ping() -> ::std::result::Result<(), wit::StoreError> {
                    $crate::store::export::ping::<$store>().map_err(wit_error)
                }
            }

            $crate::store_bindings::export!(FeastStoreComponent with_types_in $crate::store_bindings);
        };
    };
}
