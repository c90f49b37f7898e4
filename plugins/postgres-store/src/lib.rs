//! Feast's PostgreSQL online store as an `online-store` component: the tables `feast
//! apply` creates and `feast materialize` fills, read and written over PostgreSQL's
//! wire protocol on a TCP connection the component keeps open between calls.
//!
//! Layout (feast 0.67 `postgres_online_store`): one table per feature view, named
//! `<project>_<view>` (the view name carries `_v<N>` when versioned), in the schema
//! `db_schema`; one row per entity key and feature: `entity_key` (the serialized
//! entity key), `feature_name`, `value` (the serialized `feast.types.Value`),
//! `value_text`, `value_num` (only when the table has it), `vector_value`,
//! `event_ts`, `created_ts`; primary key (`entity_key`, `feature_name`).
//!
//! Reads: one prepared `SELECT ... WHERE entity_key = ANY($1) AND feature_name =
//! ANY($2)` per view, every view of a call (one request's, or several sharing the
//! call) in one round trip. Writes: per view one prepared `INSERT ... SELECT FROM
//! unnest(...) ON CONFLICT DO UPDATE` (Feast's upsert: a row replaces what is stored
//! whatever its event time), every view in one round trip and one transaction. Event
//! and created times are sent as `timestamp` (UTC, without zone) as Feast's psycopg
//! does, so the server's session time zone reads them as Feast's writes are read.
//!
//! Configuration (`online_store.config`): Feast's keys `host`, `port` (5432),
//! `database`, `db_schema` (`public`), `user`, `password`, `sslmode` (Feast's default
//! is `require`); the pool keys (`conn_type`, `min_conn`, `max_conn`) and
//! `keepalives_idle` are accepted and unused (each instance keeps one connection).
//! No TLS yet: `sslmode` must be `disable`, `allow` or `prefer` (then plain TCP). No
//! pgvector (`vector_enabled`).

mod value_text;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::{BufMut, BytesMut};
use feast_plugin_sdk::store::{
    OnlineStore, StoreConfig, StoreError, StoredRow, Timestamp, ViewRead, ViewWrite, WriteOutcome,
};
use postgres_protocol::types::{ArrayDimension, array_to_sql};
use postgres_protocol::{IsNull, Oid};
use wire::{Connection, Execution, PgError, Startup, Statement, columns};

const TEXT: Oid = 25;
const BYTEA: Oid = 17;
const FLOAT8: Oid = 701;
const TIMESTAMP: Oid = 1114;
const TEXT_ARRAY: Oid = 1009;
const BYTEA_ARRAY: Oid = 1001;
const FLOAT8_ARRAY: Oid = 1022;
const TIMESTAMP_ARRAY: Oid = 1115;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_SECONDS: i64 = 946_684_800;

/// Where and as whom to connect.
struct Settings {
    addrs: Vec<SocketAddr>,
    user: String,
    password: String,
    database: String,
    /// `db_schema`, or the user when empty (Feast's `db_schema or user`).
    schema: String,
    /// The `options` startup parameter: Feast's search path.
    options: String,
}

/// The connection of one instance, made when first needed and dropped when it breaks.
struct Session {
    settings: Settings,
    conn: Option<Connection>,
}

impl Session {
    fn run(
        &mut self,
        executions: &[Execution<'_>],
    ) -> Result<Vec<Vec<postgres_protocol::message::backend::DataRowBody>>, StoreError> {
        self.call(|c| c.run(executions))
    }

    /// `op` on the connection; on a kept connection the server had closed, once more
    /// on a new one (reads repeat safely and writes are upserts).
    fn call<T>(
        &mut self,
        op: impl Fn(&mut Connection) -> Result<T, PgError>,
    ) -> Result<T, StoreError> {
        let reused = self.conn.is_some();
        let mut result = self.connection().and_then(&op);
        if reused && result.as_ref().is_err_and(PgError::stale_connection) {
            self.conn = None;
            result = self.connection().and_then(&op);
        }
        result.map_err(|e| self.fail(e))
    }

    fn connection(&mut self) -> Result<&mut Connection, PgError> {
        if self.conn.is_none() {
            let s = &self.settings;
            let startup = Startup {
                user: &s.user,
                password: &s.password,
                database: &s.database,
                options: &s.options,
            };
            self.conn = Some(Connection::connect(&s.addrs, &startup)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| PgError::Protocol("no connection".into()))
    }

    /// Maps an error (dropping a connection it broke) to the store's error.
    fn fail(&mut self, e: PgError) -> StoreError {
        if e.breaks_connection() {
            self.conn = None;
        }
        let s = &self.settings;
        match &e {
            PgError::Io(_) => StoreError::Unavailable(format!(
                "PostgreSQL at {:?} cannot be reached: {e}",
                s.addrs
            )),
            PgError::Server { code, .. } if code.starts_with("28") => {
                self.conn = None;
                StoreError::Unavailable(format!(
                    "PostgreSQL refused the authentication of user {:?} to database {:?}: {e}",
                    s.user, s.database
                ))
            }
            // Connection exceptions, insufficient resources (too many connections),
            // a server shutting down or starting up.
            PgError::Server { code, .. }
                if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") =>
            {
                self.conn = None;
                StoreError::Unavailable(format!("PostgreSQL is not available: {e}"))
            }
            PgError::Server { code, .. } if code == "42P01" => StoreError::Failed(format!(
                "{e}; `feast apply` creates the tables of the feature views"
            )),
            PgError::Server { .. } | PgError::Protocol(_) | PgError::Encoding(_) => {
                StoreError::Failed(format!("PostgreSQL: {e}"))
            }
        }
    }
}

/// The prepared upsert of one table.
struct Upsert {
    statement: Statement,
    /// Whether the table has Feast's optional `value_num` column.
    value_num: bool,
}

/// The store of one instance.
pub struct PostgresStore {
    session: Session,
    project: String,
    /// The read statement of each view.
    reads: HashMap<String, Statement>,
    /// The upsert of each view.
    upserts: HashMap<String, Upsert>,
}

/// A quoted SQL identifier (as psycopg's `sql.Identifier`).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A one-dimensional binary array of `items` (`None`: a NULL element).
fn array<T>(
    element: Oid,
    items: &[T],
    mut put: impl FnMut(&T, &mut BytesMut) -> IsNull,
) -> Result<BytesMut, StoreError> {
    let mut buf = BytesMut::with_capacity(20 + items.len() * 16);
    let len = i32::try_from(items.len())
        .map_err(|_| StoreError::Failed("too many values for one statement".into()))?;
    array_to_sql(
        [ArrayDimension {
            len,
            lower_bound: 1,
        }],
        element,
        items,
        |item, buf| Ok(put(item, buf)),
        &mut buf,
    )
    .map_err(|e| StoreError::Failed(format!("encoding an array: {e}")))?;
    Ok(buf)
}

fn bytes_of(v: &[u8], buf: &mut BytesMut) -> IsNull {
    buf.put_slice(v);
    IsNull::No
}

fn int8(v: &i64, buf: &mut BytesMut) -> IsNull {
    buf.put_i64(*v);
    IsNull::No
}

fn float8(v: &f64, buf: &mut BytesMut) -> IsNull {
    buf.put_f64(*v);
    IsNull::No
}

/// `put` for a present element, NULL for a missing one.
fn or_null<T>(
    put: impl Fn(&T, &mut BytesMut) -> IsNull,
) -> impl Fn(&Option<T>, &mut BytesMut) -> IsNull {
    move |v, buf| v.as_ref().map_or(IsNull::Yes, |v| put(v, buf))
}

/// Microseconds since 2000-01-01 (PostgreSQL's `timestamp`), truncated as Python's
/// datetime truncates nanoseconds.
fn pg_micros(t: Timestamp) -> i64 {
    (t.seconds - PG_EPOCH_SECONDS)
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos.div_euclid(1_000)))
}

/// A `timestamp`/`timestamptz` column (microseconds since 2000-01-01) as a time;
/// `None` for the infinities.
fn from_pg_micros(b: &[u8]) -> Option<Timestamp> {
    let micros = i64::from_be_bytes(b.try_into().ok()?);
    if micros == i64::MAX || micros == i64::MIN {
        return None;
    }
    Some(Timestamp {
        seconds: micros.div_euclid(1_000_000) + PG_EPOCH_SECONDS,
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    })
}

fn read_sql(table: &str) -> String {
    format!(
        "SELECT entity_key, feature_name, value, event_ts FROM {} \
         WHERE entity_key = ANY($1) AND feature_name = ANY($2)",
        ident(table)
    )
}

fn upsert_sql(table: &str, value_num: bool) -> String {
    let (num_col, num_param, num_set) = if value_num {
        (
            ", value_num",
            ", $5::float8[]",
            " value_num = EXCLUDED.value_num,",
        )
    } else {
        ("", "", "")
    };
    let (ts, created) = if value_num {
        ("$6", "$7")
    } else {
        ("$5", "$6")
    };
    format!(
        "INSERT INTO {table} (entity_key, feature_name, value, value_text{num_col}, event_ts, created_ts) \
         SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::text[]{num_param}, \
         {ts}::timestamp[], {created}::timestamp[]) \
         ON CONFLICT (entity_key, feature_name) DO UPDATE SET value = EXCLUDED.value, \
         value_text = EXCLUDED.value_text,{num_set} vector_value = NULL, \
         event_ts = EXCLUDED.event_ts, created_ts = EXCLUDED.created_ts",
        table = ident(table)
    )
}

impl PostgresStore {
    fn table(&self, view: &str) -> String {
        format!("{}_{view}", self.project)
    }

    /// Prepares the upserts of views not seen yet (one round trip to learn which of
    /// their tables have `value_num`, as Feast checks `information_schema`).
    fn prepare_upserts(&mut self, views: &[ViewWrite]) -> Result<(), StoreError> {
        let mut new: Vec<&str> = views
            .iter()
            .map(|v| v.view.as_str())
            .filter(|v| !self.upserts.contains_key(*v))
            .collect();
        new.sort_unstable();
        new.dedup();
        if new.is_empty() {
            return Ok(());
        }
        let probe = Statement {
            sql: "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 \
                  AND table_name = $2 AND column_name = 'value_num'"
                .into(),
            param_types: vec![TEXT, TEXT],
        };
        let text = |s: &str| Some(BytesMut::from(s.as_bytes()));
        let tables: Vec<String> = new.iter().map(|v| self.table(v)).collect();
        let executions: Vec<Execution<'_>> = tables
            .iter()
            .map(|t| Execution {
                statement: &probe,
                params: vec![text(&self.session.settings.schema), text(t)],
            })
            .collect();
        let found = self.session.run(&executions)?;
        for ((view, table), rows) in new.iter().zip(&tables).zip(found) {
            let value_num = !rows.is_empty();
            let mut param_types = vec![BYTEA_ARRAY, TEXT_ARRAY, BYTEA_ARRAY, TEXT_ARRAY];
            if value_num {
                param_types.push(FLOAT8_ARRAY);
            }
            param_types.extend([TIMESTAMP_ARRAY, TIMESTAMP_ARRAY]);
            self.upserts.insert(
                view.to_string(),
                Upsert {
                    statement: Statement {
                        sql: upsert_sql(table, value_num),
                        param_types,
                    },
                    value_num,
                },
            );
        }
        Ok(())
    }
}

/// The parameters of one view's upsert: one element per (row, feature).
fn upsert_params(view: &ViewWrite, value_num: bool) -> Result<Vec<Option<BytesMut>>, StoreError> {
    let n = view.rows.len() * view.features.len();
    let (mut keys, mut names, mut values, mut texts, mut nums, mut events, mut created) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in &view.rows {
        for (feature, value) in view.features.iter().zip(&row.values) {
            let (text, num) = value_text::text_and_num(value);
            keys.push(row.entity_key.as_slice());
            names.push(feature.as_str());
            values.push(value.as_slice());
            texts.push(text);
            nums.push(num);
            events.push(pg_micros(row.event_ts));
            created.push(row.created_ts.map(pg_micros));
        }
    }
    let mut params = vec![
        Some(array(BYTEA, &keys, |k, b| bytes_of(k, b))?),
        Some(array(TEXT, &names, |s, b| bytes_of(s.as_bytes(), b))?),
        Some(array(BYTEA, &values, |v, b| bytes_of(v, b))?),
        Some(array(
            TEXT,
            &texts,
            or_null(|t: &String, b| bytes_of(t.as_bytes(), b)),
        )?),
    ];
    if value_num {
        params.push(Some(array(FLOAT8, &nums, or_null(float8))?));
    }
    params.push(Some(array(TIMESTAMP, &events, int8)?));
    params.push(Some(array(TIMESTAMP, &created, or_null(int8))?));
    Ok(params)
}

/// Parses Feast's `PostgreSQLConfig` keys.
fn settings(config: &StoreConfig) -> Result<Settings, StoreError> {
    let invalid = StoreError::InvalidConfig;
    let required = |key: &str| {
        config.str(key).map(str::to_string).ok_or_else(|| {
            invalid(format!(
                "`{key}` is required (as in Feast's PostgreSQL store)"
            ))
        })
    };
    let host = required("host")?;
    let port = match config.int("port")? {
        None => 5432,
        Some(p) => u16::try_from(p).map_err(|_| invalid(format!("`port` {p} is not a port")))?,
    };
    let (user, password, database) = (
        required("user")?,
        required("password")?,
        required("database")?,
    );
    let db_schema = config.str("db_schema").unwrap_or("public");
    let schema = if db_schema.is_empty() {
        user.clone()
    } else {
        db_schema.to_string()
    };
    let mut search_path = schema.trim().to_string();
    if search_path != "public" {
        search_path.push_str(",public");
    }
    match config.str("sslmode").unwrap_or("require") {
        "disable" | "allow" | "prefer" => {}
        mode => {
            return Err(invalid(format!(
                "sslmode {mode:?} needs TLS, which this component does not support yet \
                 (Feast's default is \"require\"): set sslmode: disable, allow or prefer \
                 (plain TCP)"
            )));
        }
    }
    if config.bool("vector_enabled")?.unwrap_or(false) {
        return Err(invalid(
            "vector_enabled (pgvector) is not supported by this component".into(),
        ));
    }
    Ok(Settings {
        addrs: config.addresses(&host, port)?,
        user,
        password,
        database,
        schema,
        options: format!("-c search_path={search_path}"),
    })
}

impl OnlineStore for PostgresStore {
    const NAME: &'static str = "postgres-store";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn open(config: StoreConfig) -> Result<Self, StoreError> {
        Ok(PostgresStore {
            session: Session {
                settings: settings(&config)?,
                conn: None,
            },
            project: config.project.clone(),
            reads: HashMap::new(),
            upserts: HashMap::new(),
        })
    }

    fn read(&mut self, views: Vec<ViewRead>) -> Result<Vec<Vec<StoredRow>>, StoreError> {
        for v in &views {
            if !self.reads.contains_key(&v.view) {
                let statement = Statement {
                    sql: read_sql(&self.table(&v.view)),
                    param_types: vec![BYTEA_ARRAY, TEXT_ARRAY],
                };
                self.reads.insert(v.view.clone(), statement);
            }
        }
        let mut out: Vec<Vec<StoredRow>> = views
            .iter()
            .map(|v| vec![StoredRow::default(); v.keys.len()])
            .collect();
        // Views with keys and features to read (others have nothing to find).
        let asked: Vec<usize> = (0..views.len())
            .filter(|&i| !views[i].keys.is_empty() && !views[i].features.is_empty())
            .collect();
        if asked.is_empty() {
            return Ok(out);
        }
        let mut executions = Vec::with_capacity(asked.len());
        for &i in &asked {
            let v = &views[i];
            executions.push(Execution {
                statement: self
                    .reads
                    .get(&v.view)
                    .ok_or_else(|| StoreError::Failed("no read statement".into()))?,
                params: vec![
                    Some(array(BYTEA, &v.keys, |k, b| bytes_of(k, b))?),
                    Some(array(TEXT, &v.features, |f, b| bytes_of(f.as_bytes(), b))?),
                ],
            });
        }
        let results = self.session.run(&executions)?;
        let corrupt = |view: &str, m: &str| StoreError::Corrupt(format!("{view}: {m}"));
        for (&i, rows) in asked.iter().zip(&results) {
            let v = &views[i];
            let keys: foldhash::HashMap<&[u8], usize> = v
                .keys
                .iter()
                .enumerate()
                .map(|(k, key)| (key.as_slice(), k))
                .collect();
            let features: foldhash::HashMap<&str, usize> = v
                .features
                .iter()
                .enumerate()
                .map(|(f, name)| (name.as_str(), f))
                .collect();
            for row in rows {
                let cols = columns::<4>(row).map_err(|e| corrupt(&v.view, &e.to_string()))?;
                let [Some(key), Some(name), value, ts] = cols else {
                    return Err(corrupt(&v.view, "a row without entity_key or feature_name"));
                };
                let (Some(&k), Some(&f)) = (
                    keys.get(key),
                    std::str::from_utf8(name).ok().and_then(|n| features.get(n)),
                ) else {
                    continue;
                };
                let event_ts = match ts {
                    Some(b) => from_pg_micros(b)
                        .ok_or_else(|| corrupt(&v.view, "event_ts is not a finite time"))?,
                    None => Timestamp::default(),
                };
                let stored = &mut out[i][k];
                if stored.values.is_empty() {
                    stored.values = vec![None; v.features.len()];
                }
                // A NULL value column reads as a stored null.
                stored.values[f] = Some(value.unwrap_or_default().to_vec());
                stored.event_ts = Some(stored.event_ts.map_or(event_ts, |t| t.max(event_ts)));
            }
        }
        Ok(out)
    }

    fn write(&mut self, views: Vec<ViewWrite>) -> Result<WriteOutcome, StoreError> {
        let views: Vec<ViewWrite> = views.into_iter().filter(|v| !v.rows.is_empty()).collect();
        if views.is_empty() {
            return Ok(WriteOutcome::default());
        }
        self.prepare_upserts(&views)?;
        let mut executions = Vec::with_capacity(views.len());
        for v in &views {
            let upsert = self
                .upserts
                .get(&v.view)
                .ok_or_else(|| StoreError::Failed("no upsert statement".into()))?;
            executions.push(Execution {
                statement: &upsert.statement,
                params: upsert_params(v, upsert.value_num)?,
            });
        }
        self.session.run(&executions)?;
        Ok(WriteOutcome {
            written: views.iter().map(|v| v.rows.len() as u64).sum(),
            skipped: 0,
        })
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.session.call(Connection::ping)
    }
}

feast_plugin_sdk::export_store!(PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_to_postgres_microseconds() {
        let t = Timestamp {
            seconds: 1_732_233_600,
            nanos: 123_456_789,
        };
        let micros = pg_micros(t);
        assert_eq!(
            micros,
            (1_732_233_600 - PG_EPOCH_SECONDS) * 1_000_000 + 123_456
        );
        assert_eq!(
            from_pg_micros(&micros.to_be_bytes()),
            Some(Timestamp {
                seconds: 1_732_233_600,
                nanos: 123_456_000
            })
        );
        assert_eq!(from_pg_micros(&i64::MAX.to_be_bytes()), None);
        assert_eq!(from_pg_micros(&[0; 4]), None);
    }

    #[test]
    fn tables_are_quoted_as_psycopg_quotes_them() {
        assert_eq!(
            ident("repo_driver_hourly_stats"),
            "\"repo_driver_hourly_stats\""
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert!(upsert_sql("p_v", true).contains("value_num = EXCLUDED.value_num"));
        assert!(!upsert_sql("p_v", false).contains("value_num"));
    }

    #[test]
    fn configuration_takes_feasts_keys() {
        let config = |extra: &str| {
            StoreConfig::parse(&format!(
                r#"{{"project": "p", "config": {{"host": "127.0.0.1", "database": "d", "user": "u", "password": "pw"{extra}}}}}"#
            ))
            .unwrap()
        };
        let err = settings(&config("")).err().unwrap();
        assert!(err.to_string().contains("require"), "{err}");
        let s = settings(&config(r#", "sslmode": "disable", "port": "5433""#)).unwrap();
        assert_eq!(s.addrs, vec!["127.0.0.1:5433".parse().unwrap()]);
        assert_eq!(s.options, "-c search_path=public");
        let s = settings(&config(r#", "sslmode": "disable", "db_schema": "feast""#)).unwrap();
        assert_eq!(s.options, "-c search_path=feast,public");
        assert!(settings(&config(r#", "sslmode": "disable", "port": 70000"#)).is_err());
        let missing = StoreConfig::parse(r#"{"project": "p", "config": {"host": "h"}}"#).unwrap();
        assert!(settings(&missing).is_err());
    }
}
