//! Feast's Redis online store.
//!
//! Layout (as `feast materialize` writes it): one hash per entity key per project,
//! key = serialized entity key + project name; field = MurmurHash3 x86_32 (seed 0) of
//! `<view>:<feature>` as 4 little-endian bytes, value = serialized `feast.types.Value`;
//! plus `_ts:<view>` = serialized `google.protobuf.Timestamp` of the row.
//!
//! A request is one round trip on a standalone server: one pipeline with one `HMGET`
//! per distinct entity key, asking for the fields of every view read for that key and
//! their `_ts` fields together. On a cluster the commands are grouped by hash slot and
//! the groups sent concurrently. Each serving thread (see [`crate::threads`]) has its
//! own connection, so a request's round trip never leaves its thread.

mod connection;
mod options;

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use self::connection::{Connection, is_connection_error, slot_of, tls_certificates};
use self::options::{RedisConfig, RedisOptions};
use super::{
    Cell, OnlineStore, OpenError, ReadBatch, StoreError, StoreSettings, ViewRows, ViewTarget,
    WriteBatch, WriteOutcome,
};
use crate::config::{ConfigError, RepoConfig};
use crate::threads::PerThread;
use crate::value::{EventTime, decode_stored};

const STORE: &str = "redis";

/// Opens the store `online_store` configures (connections are made on first use).
pub(super) fn open(
    config: &RepoConfig,
    settings: &StoreSettings,
) -> Result<Arc<dyn OnlineStore>, OpenError> {
    let cfg: RedisConfig = config.parse_section("online_store", config.online_store.raw.clone())?;
    let opts = RedisOptions::from_config(&cfg)
        .map_err(|e| ConfigError::Parse {
            path: config.source.clone(),
            message: e.to_string(),
        })?
        .with_files_under(&config.repo_dir);
    if opts.tls {
        crate::tls::install_crypto_provider();
    }
    let writes = WriteSettings {
        key_ttl_seconds: cfg.key_ttl_seconds.filter(|t| *t != 0),
        skip_dedup: cfg.skip_dedup.unwrap_or(false),
    };
    let store = RedisStore::new(opts, writes, &config.project, settings.connections)?;
    Ok(Arc::new(store))
}

/// What a read of one view needs: its hash fields.
struct Target {
    /// The hash field of each feature, in slot order.
    fields: Vec<[u8; 4]>,
    /// The hash field of the view's event time (`_ts:<online_name>`).
    ts_field: Vec<u8>,
}

/// A Redis (standalone, cluster or sentinel) reader of Feast's layout.
#[derive(Clone)]
pub(crate) struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Slot 0 for threads other than serving threads, then one per serving thread.
    conns: PerThread<Connection>,
    project: Vec<u8>,
    opts: Arc<RedisOptions>,
    writes: WriteSettings,
}

/// How rows are written (`online_store` settings of Feast's Redis store).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriteSettings {
    /// `key_ttl_seconds`: each written hash expires after it (none for 0 or unset).
    pub(crate) key_ttl_seconds: Option<i64>,
    /// `skip_dedup`: write every row without reading the stored event times.
    pub(crate) skip_dedup: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("topology", &self.inner.opts.topology)
            .field("nodes", &self.inner.opts.nodes)
            .finish()
    }
}

/// The hash field of a feature: MurmurHash3 x86_32 of `<view>:<feature>`, little endian.
#[expect(
    clippy::expect_used,
    reason = "hashing reads from an in-memory cursor, which cannot fail"
)]
pub fn feature_field(view: &str, feature: &str) -> [u8; 4] {
    let mut input = Vec::with_capacity(view.len() + feature.len() + 1);
    input.extend_from_slice(view.as_bytes());
    input.push(b':');
    input.extend_from_slice(feature.as_bytes());
    murmur3::murmur3_32(&mut std::io::Cursor::new(&input), 0)
        .expect("reading from memory cannot fail")
        .to_le_bytes()
}

/// The hash field holding a view's event time.
pub fn timestamp_field(view: &str) -> Vec<u8> {
    format!("_ts:{view}").into_bytes()
}

/// One `HMGET`: a hash key and, for each view read for it, where its replies go.
struct Lookup {
    key: Vec<u8>,
    /// (batch index, key index in that batch)
    parts: Vec<(usize, usize)>,
}

impl RedisStore {
    /// Prepares the store for `project` with `connections` connections, one per
    /// thread slot (see [`PerThread`]), each made on first use.
    pub(crate) fn new(
        opts: RedisOptions,
        writes: WriteSettings,
        project: &str,
        connections: usize,
    ) -> Result<Self, StoreError> {
        let opts = Arc::new(opts);
        let invalid = |e: redis::RedisError| StoreError::Failed {
            store: STORE,
            reason: format!("invalid connection settings: {e}"),
        };
        // Certificate files are read once for all the connections.
        let certs = tls_certificates(&opts).map_err(invalid)?;
        let conns =
            PerThread::try_new(connections, || Connection::new(opts.clone(), certs.clone()))
                .map_err(invalid)?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conns,
                project: project.as_bytes().to_vec(),
                opts,
                writes,
            }),
        })
    }

    /// The connection of the calling thread.
    fn conn(&self) -> &Connection {
        self.inner.conns.mine().1
    }
}

#[async_trait::async_trait]
impl OnlineStore for RedisStore {
    fn type_name(&self) -> &'static str {
        STORE
    }

    fn prepare(
        &self,
        online_name: &str,
        features: &[String],
    ) -> Box<dyn std::any::Any + Send + Sync> {
        Box::new(Target {
            fields: features
                .iter()
                .map(|f| feature_field(online_name, f))
                .collect(),
            ts_field: timestamp_field(online_name),
        })
    }

    /// Reads every batch: one `HMGET` per distinct entity key, pipelined.
    async fn read(&self, batches: Vec<ReadBatch>) -> Result<Vec<ViewRows>, StoreError> {
        let lookups = self.plan_lookups(&batches);
        let replies = self.run(&batches, &lookups).await?;
        let mut rows: Vec<ViewRows> = batches
            .iter()
            .map(|b| ViewRows::empty(b.keys.len(), b.target.features.len()))
            .collect();
        for (lookup, reply) in lookups.iter().zip(replies) {
            let fields = match reply {
                redis::Value::Array(items) => items,
                redis::Value::ServerError(e) => {
                    return Err(StoreError::Failed {
                        store: STORE,
                        reason: format!("HMGET failed: {e:?}"),
                    });
                }
                other => {
                    return Err(StoreError::Failed {
                        store: STORE,
                        reason: format!("unexpected HMGET reply {other:?}"),
                    });
                }
            };
            let mut offset = 0;
            for &(b, k) in &lookup.parts {
                let target = &batches[b].target;
                let n = target.features.len();
                let Some(values) = fields.get(offset..offset + n + 1) else {
                    return Err(StoreError::Failed {
                        store: STORE,
                        reason: "HMGET returned fewer fields than asked".into(),
                    });
                };
                offset += n + 1;
                decode_entity(target, &values[..n], &values[n], &mut rows[b], k)?;
            }
        }
        Ok(rows)
    }

    /// Writes as Feast's `online_write_batch` does: rows not newer than the stored
    /// `_ts:<view>` of their hash (or than an earlier row of the call) are left out
    /// (unless `skip_dedup`); the others are one `HSET` of `_ts:<view>` and the
    /// features, then `EXPIRE` with `key_ttl_seconds`. The writes go as one MULTI/EXEC
    /// transaction (one per hash slot on a cluster).
    async fn write(&self, batches: Vec<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        let settings = &self.inner.writes;
        let keyed: Vec<(usize, Vec<u8>)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| {
                batch
                    .rows
                    .iter()
                    .map(move |row| (b, self.hash_key(&row.entity_key)))
            })
            .collect();
        let stored = if settings.skip_dedup {
            HashMap::new()
        } else {
            self.stored_times(&keyed, &batches).await?
        };
        let mut newest: HashMap<&(usize, Vec<u8>), i128> = HashMap::new();
        let mut cmds = Vec::new();
        let mut outcome = WriteOutcome::default();
        let rows = batches.iter().flat_map(|b| b.rows.iter());
        for ((b, row), at) in keyed.iter().map(|(b, _)| *b).zip(rows).zip(&keyed) {
            let target = batches[b].target.prepared::<Target>();
            if !settings.skip_dedup {
                let new = nanos(row.event_time);
                let latest = stored
                    .get(at)
                    .copied()
                    .unwrap_or(0)
                    .max(newest.get(at).copied().unwrap_or(0));
                if latest != 0 && new <= latest {
                    outcome.skipped += 1;
                    continue;
                }
                newest.insert(at, new);
            }
            let key = at.1.as_slice();
            let mut hset = redis::cmd("HSET");
            hset.arg(key)
                .arg(&target.ts_field)
                .arg(row.event_time.to_proto().encode_to_vec());
            for (field, value) in target.fields.iter().zip(&row.values) {
                hset.arg(&field[..]).arg(&value.bytes);
            }
            cmds.push((key, hset));
            if let Some(ttl) = settings.key_ttl_seconds {
                let mut expire = redis::cmd("EXPIRE");
                expire.arg(key).arg(ttl);
                cmds.push((key, expire));
            }
            outcome.written += 1;
        }
        if !cmds.is_empty() {
            self.send(cmds, true).await?;
        }
        Ok(outcome)
    }

    /// As Feast: `SCAN` for `<prefix>*<project>` (every primary of a cluster), each
    /// key once, the project's name cut off.
    async fn entity_keys(&self, prefix: &[u8]) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let project = &self.inner.project;
        let mut pattern = Vec::with_capacity(prefix.len() + 1 + project.len());
        pattern.extend_from_slice(prefix);
        pattern.push(b'*');
        pattern.extend_from_slice(project);
        let found = self
            .conn()
            .scan(&pattern, self.inner.opts.response_timeout)
            .await
            .map_err(|e| classify(&e))?;
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        let keys = found
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .filter_map(|mut k| {
                let len = k.len().checked_sub(project.len())?;
                k.truncate(len);
                Some(k)
            })
            .collect();
        Ok(Some(keys))
    }

    /// Checks that Redis answers a PING.
    async fn ping(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        let opts = &self.inner.opts;
        let deadline = opts.response_timeout + opts.connect_timeout;
        let ping = self.conn().query_slot(&pipe, opts.response_timeout);
        match crate::timeout::within_running_time(deadline, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(StoreError::Unavailable {
                store: STORE,
                reason: format!("no answer within {deadline:?}"),
            }),
        }
    }
}

impl RedisStore {
    /// Groups the batches' keys by Redis hash key (views sharing an entity live in the
    /// same hash).
    fn plan_lookups(&self, batches: &[ReadBatch]) -> Vec<Lookup> {
        let hash_key = |entity_key: &[u8]| self.hash_key(entity_key);
        if let [batch] = batches {
            // A batch's keys are already distinct.
            return batch
                .keys
                .iter()
                .enumerate()
                .map(|(k, entity_key)| Lookup {
                    key: hash_key(entity_key),
                    parts: vec![(0, k)],
                })
                .collect();
        }
        let mut lookups: Vec<Lookup> = Vec::new();
        let mut by_key: HashMap<&[u8], usize> = HashMap::new();
        for (b, batch) in batches.iter().enumerate() {
            for (k, entity_key) in batch.keys.iter().enumerate() {
                let idx = *by_key.entry(entity_key.as_slice()).or_insert_with(|| {
                    lookups.push(Lookup {
                        key: hash_key(entity_key),
                        parts: Vec::new(),
                    });
                    lookups.len() - 1
                });
                lookups[idx].parts.push((b, k));
            }
        }
        lookups
    }

    /// Sends the lookups (one `HMGET` each); replies come back in lookup order.
    async fn run(
        &self,
        batches: &[ReadBatch],
        lookups: &[Lookup],
    ) -> Result<Vec<redis::Value>, StoreError> {
        let hmget = |l: &Lookup| {
            let (mut args, mut bytes) = (2, "HMGET".len() + l.key.len());
            for &(b, _) in &l.parts {
                let target = batches[b].target.prepared::<Target>();
                args += target.fields.len() + 1;
                bytes += target.fields.len() * 4 + target.ts_field.len();
            }
            let mut cmd = redis::Cmd::with_capacity(args, bytes);
            cmd.arg("HMGET").arg(&l.key);
            for &(b, _) in &l.parts {
                let target = batches[b].target.prepared::<Target>();
                for f in &target.fields {
                    cmd.arg(&f[..]);
                }
                cmd.arg(&target.ts_field);
            }
            cmd
        };
        let cmds = lookups
            .iter()
            .map(|l| (l.key.as_slice(), hmget(l)))
            .collect();
        self.send(cmds, false).await
    }

    /// Sends commands that each touch one hash key: one pipeline, or one per hash slot
    /// on a cluster (sent concurrently). `atomic` wraps each pipeline in MULTI/EXEC.
    /// Replies come back in command order; a command's error fails the whole call.
    async fn send(
        &self,
        cmds: Vec<(&[u8], redis::Cmd)>,
        atomic: bool,
    ) -> Result<Vec<redis::Value>, StoreError> {
        let opts = &self.inner.opts;
        // Large writes (materialization batches) get a response timeout per 10,000
        // commands; making a connection first may take its own timeout more. Both
        // count this thread's running time only (see `crate::timeout`).
        let budget =
            opts.response_timeout * (1 + u32::try_from(cmds.len() / 10_000).unwrap_or(u32::MAX));
        let deadline = opts.connect_timeout + budget;
        let count = cmds.len();
        let pipeline = |atomic: bool, capacity: usize| {
            let mut pipe = redis::Pipeline::with_capacity(capacity);
            if atomic {
                pipe.atomic();
            }
            pipe
        };
        let work = async {
            if !self.conn().is_cluster() || count == 1 {
                let mut pipe = pipeline(atomic, count);
                for (_, cmd) in cmds {
                    pipe.add_command(cmd);
                }
                return self.conn().query_slot(&pipe, budget).await;
            }
            let mut by_slot: HashMap<redis::cluster_routing::Slot, (redis::Pipeline, Vec<usize>)> =
                HashMap::new();
            for (i, (key, cmd)) in cmds.into_iter().enumerate() {
                let entry = by_slot
                    .entry(slot_of(key))
                    .or_insert_with(|| (pipeline(atomic, 4), Vec::new()));
                entry.0.add_command(cmd);
                entry.1.push(i);
            }
            let groups: Vec<(redis::Pipeline, Vec<usize>)> = by_slot.into_values().collect();
            let results = futures_util::future::join_all(
                groups
                    .iter()
                    .map(|(pipe, _)| self.conn().query_slot(pipe, budget)),
            )
            .await;
            let mut out = vec![redis::Value::Nil; count];
            for ((_, idx), result) in groups.iter().zip(results) {
                for (i, v) in idx.iter().zip(result?) {
                    out[*i] = v;
                }
            }
            Ok(out)
        };
        let replies = match crate::timeout::within_running_time(deadline, work).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(classify(&e)),
            Err(_) => {
                return Err(StoreError::Unavailable {
                    store: STORE,
                    reason: format!("no answer within {deadline:?}"),
                });
            }
        };
        if let Some(redis::Value::ServerError(e)) = replies
            .iter()
            .find(|v| matches!(v, redis::Value::ServerError(_)))
        {
            return Err(StoreError::Failed {
                store: STORE,
                reason: format!("Redis refused a command: {e:?}"),
            });
        }
        Ok(replies)
    }

    /// The hash of an entity: its serialized key, then the project's name.
    fn hash_key(&self, entity_key: &[u8]) -> Vec<u8> {
        let project = &self.inner.project;
        let mut key = Vec::with_capacity(entity_key.len() + project.len());
        key.extend_from_slice(entity_key);
        key.extend_from_slice(project);
        key
    }

    /// Feast's rule for a row older than what is stored: the event time each written
    /// row would replace (0 when none), read with one `HMGET` of `_ts:<view>` per
    /// distinct (hash, view).
    async fn stored_times(
        &self,
        rows: &[(usize, Vec<u8>)],
        batches: &[WriteBatch],
    ) -> Result<HashMap<(usize, Vec<u8>), i128>, StoreError> {
        let mut distinct: Vec<&(usize, Vec<u8>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in rows {
            if seen.insert(r) {
                distinct.push(r);
            }
        }
        let cmds = distinct
            .iter()
            .map(|(b, key)| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(key)
                    .arg(&batches[*b].target.prepared::<Target>().ts_field);
                (key.as_slice(), cmd)
            })
            .collect();
        let replies = self.send(cmds, false).await?;
        let mut stored = HashMap::with_capacity(distinct.len());
        for (r, reply) in distinct.into_iter().zip(replies) {
            let ns = match &reply {
                redis::Value::Array(items) => match items.first().and_then(bytes_of) {
                    // A timestamp that does not decode blocks nothing, as in Feast.
                    Some(b) => prost_types::Timestamp::decode(b).map_or(0, |t| {
                        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
                    }),
                    None => 0,
                },
                _ => 0,
            };
            stored.insert(r.clone(), ns);
        }
        Ok(stored)
    }
}

/// Nanoseconds since the epoch.
fn nanos(t: EventTime) -> i128 {
    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
}

fn classify(e: &redis::RedisError) -> StoreError {
    if is_connection_error(e) {
        StoreError::Unavailable {
            store: STORE,
            reason: e.to_string(),
        }
    } else {
        StoreError::Failed {
            store: STORE,
            reason: e.to_string(),
        }
    }
}

fn bytes_of(v: &redis::Value) -> Option<&[u8]> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// Fills one entity's cells of a view from its `HMGET` replies. An entity with no
/// field at all (not even `_ts`) stays not found.
fn decode_entity(
    target: &ViewTarget,
    values: &[redis::Value],
    ts: &redis::Value,
    rows: &mut ViewRows,
    key: usize,
) -> Result<(), StoreError> {
    let corrupt = |feature: &str, reason: String| StoreError::Corrupt {
        store: STORE,
        view: target.view.clone(),
        feature: feature.to_string(),
        reason,
    };
    let event_time = match bytes_of(ts) {
        Some(b) => {
            let ts_field = || format!("_ts:{}", target.online_name);
            let t = prost_types::Timestamp::decode(b)
                .map_err(|e| corrupt(&ts_field(), e.to_string()))?;
            if !(0..1_000_000_000).contains(&t.nanos) {
                return Err(corrupt(
                    &ts_field(),
                    format!("nanos {} is outside 0..1e9", t.nanos),
                ));
            }
            EventTime {
                seconds: t.seconds,
                nanos: t.nanos,
            }
        }
        None => EventTime::EPOCH,
    };
    for (slot, v) in values.iter().enumerate() {
        if let Some(b) = bytes_of(v) {
            let value =
                decode_stored(b).map_err(|e| corrupt(&target.features[slot], e.to_string()))?;
            rows.set(key, slot, Cell { value, event_time });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn field_hashes_match_what_feast_wrote() {
        // From the Redis dump of the demo (feast 0.67 materialize).
        for (view, feature, field) in [
            ("driver_hourly_stats", "conv_rate", "6160e3da"),
            ("driver_hourly_stats", "acc_rate", "fa5e58ad"),
            ("driver_hourly_stats", "avg_daily_trips", "18a5e5a3"),
            ("driver_hourly_stats", "driver_metadata", "2c2f0633"),
            ("driver_hourly_stats", "driver_config", "3cfb50f4"),
            ("driver_hourly_stats", "driver_profile", "1117428e"),
            ("driver_hourly_stats_fresh", "conv_rate", "03ed1046"),
            ("driver_hourly_stats_fresh", "driver_profile", "bf805393"),
        ] {
            assert_eq!(
                hex(&feature_field(view, feature)),
                field,
                "{view}:{feature}"
            );
        }
        assert_eq!(timestamp_field("v"), b"_ts:v");
    }
}
