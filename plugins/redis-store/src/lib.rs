//! Feast's Redis online store as an `online-store` component: the layout `feast
//! materialize` writes and the server's native Redis store reads and writes, over a
//! plain TCP connection the component keeps open between calls.
//!
//! Layout: one hash per entity key per project (key = serialized entity key +
//! project); field = MurmurHash3 x86_32 (seed 0) of `<view>:<feature>`, 4 bytes little
//! endian; value = serialized `feast.types.Value`; `_ts:<view>` = the row's
//! serialized `google.protobuf.Timestamp`.
//!
//! Reads: one pipeline with one `HMGET` per distinct entity key (every view's fields
//! and `_ts` fields together). Writes, as Feast's `online_write_batch`: unless
//! `skip_dedup`, the stored `_ts:<view>` are read first (one pipeline) and a row not
//! newer is left out; then one MULTI/EXEC pipeline of `HSET` (and `EXPIRE` with
//! `key_ttl_seconds`).
//!
//! Configuration (`online_store.config`): `connection_string` (`host:port`, then
//! optional `,password=...`, `,db=N`, as Feast's), `key_ttl_seconds`, `skip_dedup`.
//! The component cannot resolve names: a host name is looked up among the addresses
//! the server resolved from the `allow` list (same port). A standalone server only
//! (no cluster, no sentinel, no TLS).

mod resp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;

use feast_plugin_sdk::store::{
    OnlineStore, StoreConfig, StoreError, StoredRow, Timestamp, ViewRead, ViewWrite, WriteOutcome,
    read_varint,
};
use resp::{Command, Connection, Pipeline, Reply, RespError};

/// The store of one instance.
pub struct RedisStore {
    addrs: Vec<SocketAddr>,
    password: Option<String>,
    db: Option<i64>,
    project: Vec<u8>,
    key_ttl_seconds: Option<i64>,
    skip_dedup: bool,
    conn: Option<Connection>,
    /// Hash fields computed so far, per view.
    fields: foldhash::HashMap<String, ViewFields>,
    /// The commands of a read (the buffer is reused).
    pipeline: Pipeline,
}

/// A view's hash fields: `_ts:<view>` and, per list of features read lately, their
/// MurmurHash3 fields.
struct ViewFields {
    ts: Rc<[u8]>,
    lists: Vec<(Vec<String>, FeatureFields)>,
}

/// The MurmurHash3 fields of a list of features.
type FeatureFields = Rc<[[u8; 4]]>;

/// The hash fields of one view read: its features' and its `_ts`.
struct ReadFields {
    features: FeatureFields,
    ts: Rc<[u8]>,
}

/// Feature lists whose fields are kept per view.
const LISTS_KEPT: usize = 16;

/// One `HMGET`: an entity key and where its (view, key index) pairs start in the
/// parts of a read ([`lookups`]).
type Lookup<'a> = (&'a [u8], usize);

/// The `HMGET`s of a read, one per distinct entity key in first-read order, and the
/// (view, key index) pairs each answers, grouped by lookup (in view order).
fn lookups(views: &[ViewRead]) -> (Vec<Lookup<'_>>, Vec<(usize, usize)>) {
    if let [view] = views {
        // One view: its keys are distinct.
        let lookups = view
            .keys
            .iter()
            .enumerate()
            .map(|(k, key)| (key.as_slice(), k))
            .collect();
        return (lookups, (0..view.keys.len()).map(|k| (0, k)).collect());
    }
    let mut by_key: foldhash::HashMap<&[u8], usize> = foldhash::HashMap::default();
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut of_pair: Vec<usize> = Vec::new();
    for view in views {
        for key in &view.keys {
            let i = *by_key.entry(key.as_slice()).or_insert_with(|| {
                keys.push(key.as_slice());
                counts.push(0);
                keys.len() - 1
            });
            counts[i] += 1;
            of_pair.push(i);
        }
    }
    // Each lookup's pairs, placed by counting.
    let mut next: Vec<usize> = counts
        .iter()
        .scan(0, |start, &n| {
            let s = *start;
            *start += n;
            Some(s)
        })
        .collect();
    let lookups = keys.into_iter().zip(next.iter().copied()).collect();
    let mut parts = vec![(0, 0); of_pair.len()];
    let pairs = views
        .iter()
        .enumerate()
        .flat_map(|(v, view)| (0..view.keys.len()).map(move |k| (v, k)));
    for (pair, i) in pairs.zip(of_pair) {
        parts[next[i]] = pair;
        next[i] += 1;
    }
    (lookups, parts)
}

/// The range of `parts` that lookup `i` answers.
fn part_range(lookups: &[Lookup<'_>], parts: &[(usize, usize)], i: usize) -> Range<usize> {
    lookups[i].1..lookups.get(i + 1).map_or(parts.len(), |l| l.1)
}

/// Reads the `HMGET` replies of `lookups` into `out` (rows not found left default).
/// Every reply is read even after one is found wrong, so the connection stays in step;
/// the first wrong one is returned.
fn read_rows(
    conn: &mut Connection,
    views: &[ViewRead],
    fields: &[ReadFields],
    lookups: &[Lookup<'_>],
    parts: &[(usize, usize)],
    out: &mut [Vec<StoredRow>],
) -> Result<Option<StoreError>, RespError> {
    let mut failure = None;
    for i in 0..lookups.len() {
        let answers = &parts[part_range(lookups, parts, i)];
        let n = match conn.array()? {
            Ok(n) => n,
            Err(reply) => {
                failure.get_or_insert(match reply {
                    Reply::Error(e) => StoreError::Failed(format!("HMGET failed: {e}")),
                    other => StoreError::Failed(format!("unexpected HMGET reply {other:?}")),
                });
                continue;
            }
        };
        let asked: usize = answers
            .iter()
            .map(|&(v, _)| fields[v].features.len() + 1)
            .sum();
        if n < asked {
            for _ in 0..n {
                conn.bulk(|_| ())?;
            }
            failure.get_or_insert(StoreError::Failed(
                "HMGET returned fewer fields than asked".into(),
            ));
            continue;
        }
        for &(v, k) in answers {
            let values = (0..fields[v].features.len())
                .map(|_| conn.bulk(|b| b.map(<[u8]>::to_vec)))
                .collect::<Result<Vec<_>, _>>()?;
            let ts = conn.bulk(|b| b.map(|b| stored_timestamp(b, &views[v].view)))?;
            let ts = match ts.transpose() {
                Ok(ts) => ts,
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            };
            if ts.is_none() && values.iter().all(Option::is_none) {
                continue; // not found
            }
            out[v][k] = StoredRow {
                event_ts: Some(ts.unwrap_or_default()),
                values,
            };
        }
        // Fields beyond those asked for are left out.
        for _ in asked..n {
            conn.bulk(|_| ())?;
        }
    }
    Ok(failure)
}

/// A stored `_ts:<view>` value.
fn stored_timestamp(b: &[u8], view: &str) -> Result<Timestamp, StoreError> {
    let t = decode_timestamp(b)
        .ok_or_else(|| StoreError::Corrupt(format!("_ts:{view} does not decode")))?;
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(StoreError::Corrupt(format!(
            "_ts:{view}: nanos {} is outside 0..1e9",
            t.nanos
        )));
    }
    Ok(t)
}

/// The hash field of a feature.
pub fn feature_field(view: &str, feature: &str) -> [u8; 4] {
    let input = format!("{view}:{feature}");
    murmur3::murmur3_32(&mut std::io::Cursor::new(input.as_bytes()), 0)
        .unwrap_or_default()
        .to_le_bytes()
}

/// The hash field of a view's event time.
pub fn timestamp_field(view: &str) -> Vec<u8> {
    format!("_ts:{view}").into_bytes()
}

/// A serialized `google.protobuf.Timestamp` (fields at their defaults left out).
pub fn encode_timestamp(t: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    if t.seconds != 0 {
        out.push(0x08);
        varint(t.seconds as u64, &mut out);
    }
    if t.nanos != 0 {
        out.push(0x10);
        varint(i64::from(t.nanos) as u64, &mut out);
    }
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a serialized `google.protobuf.Timestamp` (unknown fields skipped).
pub fn decode_timestamp(b: &[u8]) -> Option<Timestamp> {
    let mut t = Timestamp::default();
    let mut rest = b;
    while !rest.is_empty() {
        let key = read_varint(&mut rest)?;
        match (key >> 3, key & 7) {
            (1, 0) => t.seconds = read_varint(&mut rest)? as i64,
            (2, 0) => t.nanos = read_varint(&mut rest)? as i64 as i32,
            (_, 0) => {
                read_varint(&mut rest)?;
            }
            (_, 1) => rest = rest.get(8..)?,
            (_, 2) => {
                let n = usize::try_from(read_varint(&mut rest)?).ok()?;
                rest = rest.get(n..)?;
            }
            (_, 5) => rest = rest.get(4..)?,
            _ => return None,
        }
    }
    Some(t)
}

fn nanos(t: Timestamp) -> i128 {
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

fn unavailable(e: RespError) -> StoreError {
    match e {
        RespError::Io(e) => StoreError::Unavailable(e.to_string()),
        RespError::Protocol(m) => StoreError::Failed(m),
    }
}

fn bulk(r: &Reply) -> Option<&[u8]> {
    match r {
        Reply::Bulk(Some(b)) => Some(b),
        _ => None,
    }
}

impl RedisStore {
    /// The fields of `features` of `view` and its `_ts` field (computed once per list
    /// of features, the last [`LISTS_KEPT`] lists of a view kept).
    fn fields_of(&mut self, view: &str, features: &[String]) -> ReadFields {
        if !self.fields.contains_key(view) {
            self.fields.insert(
                view.to_string(),
                ViewFields {
                    ts: timestamp_field(view).into(),
                    lists: Vec::new(),
                },
            );
        }
        let Some(v) = self.fields.get_mut(view) else {
            return ReadFields {
                features: Rc::from([]),
                ts: Rc::from([]),
            };
        };
        let ts = v.ts.clone();
        if let Some((_, hashed)) = v.lists.iter().find(|(l, _)| l.as_slice() == features) {
            return ReadFields {
                features: hashed.clone(),
                ts,
            };
        }
        let hashed: FeatureFields = features.iter().map(|f| feature_field(view, f)).collect();
        if v.lists.len() >= LISTS_KEPT {
            v.lists.remove(0);
        }
        v.lists.push((features.to_vec(), hashed.clone()));
        ReadFields {
            features: hashed,
            ts,
        }
    }

    fn hash_key(&self, entity_key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(entity_key.len() + self.project.len());
        k.extend_from_slice(entity_key);
        k.extend_from_slice(&self.project);
        k
    }

    /// The open connection, made (and set up) first when there is none.
    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let mut conn = Connection::connect(&self.addrs).map_err(unavailable)?;
            let mut setup = Vec::new();
            if let Some(p) = &self.password {
                setup.push(Command::new("AUTH").arg(p));
            }
            if let Some(db) = self.db {
                setup.push(Command::new("SELECT").arg(db.to_string()));
            }
            for reply in conn.pipeline(&setup).map_err(unavailable)? {
                if let Reply::Error(e) = reply {
                    return Err(StoreError::Failed(format!(
                        "Redis refused the connection setup: {e}"
                    )));
                }
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    /// Runs a pipeline on the open connection (made first when there is none); the
    /// connection is dropped when it fails, so the next call starts over.
    fn run(&mut self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        match self.connection()?.pipeline(commands) {
            Ok(replies) => Ok(replies),
            Err(e) => {
                self.conn = None;
                Err(unavailable(e))
            }
        }
    }
}

/// Parses `host:port[,password=...][,db=N][,...]` into the host, port and options.
fn parse_connection_string(
    s: &str,
) -> Result<(String, u16, Option<String>, Option<i64>), StoreError> {
    let invalid = |m: String| StoreError::InvalidConfig(m);
    let mut parts = s.split(',').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let (host, port) = first
        .rsplit_once(':')
        .ok_or_else(|| invalid(format!("connection_string {first:?} is not host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("connection_string port {port:?} is not a port")))?;
    let (mut password, mut db) = (None, None);
    for p in parts.filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("password", v)) => password = Some(v.to_string()),
            Some(("db", v)) => {
                db = Some(
                    v.parse()
                        .map_err(|_| invalid(format!("db {v:?} is not a number")))?,
                )
            }
            Some(("ssl", v)) if v.eq_ignore_ascii_case("true") => {
                return Err(invalid(
                    "TLS (ssl=true) is not supported by this component".into(),
                ));
            }
            _ => {}
        }
    }
    Ok((
        host.trim_matches(['[', ']']).to_string(),
        port,
        password,
        db,
    ))
}

impl OnlineStore for RedisStore {
    const NAME: &'static str = "redis-store";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let cs = config.str("connection_string").unwrap_or("localhost:6379");
        let (host, port, password, db) = parse_connection_string(cs)?;
        let addrs = config.addresses(&host, port)?;
        Ok(RedisStore {
            addrs,
            password,
            db,
            project: config.project.as_bytes().to_vec(),
            key_ttl_seconds: config.int("key_ttl_seconds")?.filter(|t| *t != 0),
            skip_dedup: config.bool("skip_dedup")?.unwrap_or(false),
            conn: None,
            fields: foldhash::HashMap::default(),
            pipeline: Pipeline::default(),
        })
    }

    fn read(&mut self, views: Vec<ViewRead>) -> Result<Vec<Vec<StoredRow>>, StoreError> {
        let fields: Vec<ReadFields> = views
            .iter()
            .map(|v| self.fields_of(&v.view, &v.features))
            .collect();
        let (lookups, parts) = lookups(&views);
        if lookups.is_empty() {
            return Ok(views.iter().map(|_| Vec::new()).collect());
        }
        // One HMGET per distinct entity key: its hash, then every view's fields and `_ts`.
        let mut pipeline = std::mem::take(&mut self.pipeline);
        pipeline.clear();
        for (i, &(key, _)) in lookups.iter().enumerate() {
            let answers = &parts[part_range(&lookups, &parts, i)];
            let args: usize = answers
                .iter()
                .map(|&(v, _)| fields[v].features.len() + 1)
                .sum();
            pipeline.command(2 + args);
            pipeline.arg(b"HMGET");
            pipeline.arg_of(&[key, &self.project]);
            for &(v, _) in answers {
                for f in fields[v].features.iter() {
                    pipeline.arg(f);
                }
                pipeline.arg(&fields[v].ts);
            }
        }
        let conn = self.connection()?;
        let sent = conn.send(&pipeline);
        self.pipeline = pipeline;
        let mut out: Vec<Vec<StoredRow>> = views
            .iter()
            .map(|v| vec![StoredRow::default(); v.keys.len()])
            .collect();
        let read = sent.and_then(|()| {
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| RespError::Io(std::io::Error::other("the connection went away")))?;
            read_rows(conn, &views, &fields, &lookups, &parts, &mut out)
        });
        match read {
            Ok(None) => Ok(out),
            Ok(Some(failure)) => Err(failure),
            Err(e) => {
                self.conn = None;
                Err(unavailable(e))
            }
        }
    }

    fn write(&mut self, views: Vec<ViewWrite>) -> Result<WriteOutcome, StoreError> {
        let mut outcome = WriteOutcome::default();
        let rows: Vec<(usize, usize, Vec<u8>)> = views
            .iter()
            .enumerate()
            .flat_map(|(v, view)| {
                view.rows
                    .iter()
                    .enumerate()
                    .map(move |(r, row)| (v, r, row.entity_key.clone()))
            })
            .map(|(v, r, k)| (v, r, self.hash_key(&k)))
            .collect();
        if rows.is_empty() {
            return Ok(outcome);
        }
        let ts_fields: Vec<Vec<u8>> = views.iter().map(|v| timestamp_field(&v.view)).collect();
        // Feast's rule for a row not newer than what is stored.
        let mut latest: HashMap<(usize, Vec<u8>), i128> = HashMap::new();
        if !self.skip_dedup {
            let mut distinct: Vec<(usize, Vec<u8>)> = Vec::new();
            for (v, _, key) in &rows {
                if let std::collections::hash_map::Entry::Vacant(e) =
                    latest.entry((*v, key.clone()))
                {
                    e.insert(0);
                    distinct.push((*v, key.clone()));
                }
            }
            let commands: Vec<Command> = distinct
                .iter()
                .map(|(v, key)| Command::new("HMGET").arg(key).arg(&ts_fields[*v]))
                .collect();
            for ((v, key), reply) in distinct.into_iter().zip(self.run(&commands)?) {
                let stored = match &reply {
                    Reply::Array(Some(items)) => items
                        .first()
                        .and_then(bulk)
                        .and_then(decode_timestamp)
                        .map_or(0, nanos),
                    _ => 0,
                };
                latest.insert((v, key), stored);
            }
        }
        let mut commands = vec![Command::new("MULTI")];
        for (v, r, key) in &rows {
            let view = &views[*v];
            let row = &view.rows[*r];
            if !self.skip_dedup {
                let new = nanos(row.event_ts);
                let entry = latest.entry((*v, key.clone())).or_insert(0);
                if *entry != 0 && new <= *entry {
                    outcome.skipped += 1;
                    continue;
                }
                *entry = new;
            }
            let mut hset = Command::new("HSET")
                .arg(key)
                .arg(&ts_fields[*v])
                .arg(encode_timestamp(row.event_ts));
            for (feature, value) in view.features.iter().zip(&row.values) {
                hset.push(feature_field(&view.view, feature));
                hset.push(value);
            }
            commands.push(hset);
            if let Some(ttl) = self.key_ttl_seconds {
                commands.push(Command::new("EXPIRE").arg(key).arg(ttl.to_string()));
            }
            outcome.written += 1;
        }
        if commands.len() == 1 {
            return Ok(outcome);
        }
        commands.push(Command::new("EXEC"));
        let replies = self.run(&commands)?;
        match replies.last() {
            Some(Reply::Array(Some(results))) => {
                if let Some(Reply::Error(e)) = results.iter().find(|r| matches!(r, Reply::Error(_)))
                {
                    return Err(StoreError::Failed(format!("Redis refused a command: {e}")));
                }
            }
            Some(Reply::Error(e)) => {
                return Err(StoreError::Failed(format!("the transaction failed: {e}")));
            }
            other => {
                return Err(StoreError::Failed(format!(
                    "the transaction was not applied: {other:?}"
                )));
            }
        }
        if let Some(Reply::Error(e)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            return Err(StoreError::Failed(format!("Redis refused a command: {e}")));
        }
        Ok(outcome)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        match self.run(&[Command::new("PING")])?.first() {
            Some(Reply::Simple(s)) if s == "PONG" => Ok(()),
            other => Err(StoreError::Failed(format!(
                "unexpected PING reply {other:?}"
            ))),
        }
    }
}

feast_plugin_sdk::export_store!(RedisStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_as_protobuf() {
        for t in [
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
            Timestamp {
                seconds: 1_732_233_600,
                nanos: 123_456_000,
            },
            Timestamp {
                seconds: -5,
                nanos: 7,
            },
        ] {
            assert_eq!(decode_timestamp(&encode_timestamp(t)), Some(t));
        }
        // What prost writes for 1732233600 s.
        assert_eq!(
            encode_timestamp(Timestamp {
                seconds: 1_732_233_600,
                nanos: 0
            }),
            vec![0x08, 0x80, 0x93, 0xff, 0xb9, 0x06]
        );
    }

    #[test]
    fn fields_hash_as_feast_does() {
        // From the Redis dump of the demo (feast 0.67 materialize).
        assert_eq!(
            feature_field("driver_hourly_stats", "conv_rate"),
            [0x61, 0x60, 0xe3, 0xda]
        );
        assert_eq!(
            feature_field("driver_hourly_stats_fresh", "driver_profile"),
            [0xbf, 0x80, 0x53, 0x93]
        );
        assert_eq!(timestamp_field("v"), b"_ts:v".to_vec());
    }

    fn view(name: &str, keys: &[&[u8]]) -> ViewRead {
        ViewRead {
            view: name.into(),
            features: vec!["f".into()],
            keys: keys.iter().map(|k| k.to_vec()).collect(),
        }
    }

    #[test]
    fn lookups_read_each_key_once_for_every_view_that_needs_it() {
        // One view: one lookup per key, in order.
        assert!(lookups(&[]).0.is_empty());
        let views = [view("a", &[b"k1", b"k2"])];
        let (found, parts) = lookups(&views);
        assert_eq!(found, vec![(&b"k1"[..], 0), (&b"k2"[..], 1)]);
        assert_eq!(parts, vec![(0, 0), (0, 1)]);

        // Views sharing keys: one lookup per distinct key (first-read order), its
        // (view, key index) pairs grouped, in view order.
        let views = [
            view("a", &[b"k1", b"k2"]),
            view("b", &[b"k2", b"k3", b"k1"]),
        ];
        let (found, parts) = lookups(&views);
        let keys: Vec<&[u8]> = found.iter().map(|l| l.0).collect();
        assert_eq!(keys, vec![&b"k1"[..], b"k2", b"k3"]);
        let grouped: Vec<&[(usize, usize)]> = (0..found.len())
            .map(|i| &parts[part_range(&found, &parts, i)])
            .collect();
        assert_eq!(
            grouped,
            vec![&[(0, 0), (1, 2)][..], &[(0, 1), (1, 0)], &[(1, 1)]]
        );
    }

    #[test]
    fn pipelines_encode_as_commands_do() {
        let mut p = Pipeline::default();
        p.command(3);
        p.arg(b"HMGET");
        p.arg_of(&[b"k\x00", b"proj"]);
        p.arg(b"f");
        let mut c = Pipeline::default();
        c.push(&Command::new("HMGET").arg(b"k\x00proj").arg("f"));
        assert_eq!(p.encoded(), c.encoded());
    }

    #[test]
    fn connection_strings_parse_as_feast_writes_them() {
        let (h, p, pw, db) = parse_connection_string("redis.local:6380,password=s,db=2").unwrap();
        assert_eq!(
            (h.as_str(), p, pw.as_deref(), db),
            ("redis.local", 6380, Some("s"), Some(2))
        );
        assert!(parse_connection_string("nohost").is_err());
        assert!(parse_connection_string("h:1,ssl=true").is_err());
    }
}
