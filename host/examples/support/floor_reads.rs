//! The online-store reads of one benchmark payload, prepared once and issued directly
//! with the store's client library: what `store_floor` times by itself and what
//! `http_floor` adds to each replayed answer when given a store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use feast_server::KeyLayout;
use feast_server::value::{Val, Value};
use feast_server::{feature_field, timestamp_field};

/// Per view: feature names; and the unique entity keys.
pub(crate) struct Reads {
    pub(crate) views: BTreeMap<String, Vec<String>>,
    pub(crate) keys: Vec<Vec<u8>>,
}

/// The reads of the payload at `payload` (a `get-online-features` request body).
pub(crate) fn reads(payload: &Path) -> Reads {
    let body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(payload).expect("payload")).expect("json");
    let mut views: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in body["features"].as_array().expect("features") {
        let (view, feature) = f
            .as_str()
            .and_then(|s| s.split_once(':'))
            .expect("view:feature");
        if view.starts_with("transformed_conv_rate") {
            // The ODFV reads its source view's features.
            let source = views.entry("driver_hourly_stats".into()).or_default();
            for needed in ["conv_rate"] {
                if !source.iter().any(|x| x == needed) {
                    source.push(needed.into());
                }
            }
            continue;
        }
        let list = views.entry(view.to_string()).or_default();
        if !list.iter().any(|x| x == feature) {
            list.push(feature.to_string());
        }
    }
    let layout = KeyLayout::new(&["driver_id"], 3);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for id in body["entities"]["driver_id"].as_array().expect("driver_id") {
        let v = Value {
            val: Some(Val::Int64Val(id.as_i64().expect("int id"))),
        };
        let mut k = Vec::new();
        layout.serialize(&[&v], &mut k).expect("key");
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    Reads { views, keys }
}

/// Whether the request body at `payload` names features (rather than a feature
/// service) and so has view reads to prepare.
pub(crate) fn has_view_reads(payload: &Path) -> bool {
    std::fs::read(payload)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|body| body["features"].is_array())
}

/// One Redis round trip for the payload: one `HMGET` per unique key with every view's
/// fields and `_ts` fields, in one pipeline (project `repo`).
pub(crate) fn redis_pipeline(r: &Reads) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for k in &r.keys {
        let mut key = k.clone();
        key.extend_from_slice(b"repo");
        let cmd = pipe.cmd("HMGET").arg(key);
        for (view, features) in &r.views {
            for f in features {
                cmd.arg(&feature_field(view, f)[..]);
            }
            cmd.arg(timestamp_field(view));
        }
    }
    pipe
}

/// How long a read transaction serves the reads that follow it (as the server's).
const HOLD: Duration = Duration::from_millis(1);

/// A read-only SQLite connection that reads as the server's serving threads do: in
/// Feast's rollback-journal mode, one read transaction serves the reads of a
/// millisecond.
pub(crate) struct SqliteReader {
    conn: rusqlite::Connection,
    held: Option<Instant>,
}

impl SqliteReader {
    pub(crate) fn open(db: &Path) -> Self {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open");
        SqliteReader { conn, held: None }
    }

    /// The payload's reads (`queries` from [`sqlite_queries`]), every column of every
    /// returned row looked at.
    pub(crate) fn read(&mut self, queries: &[String], keys: &[Vec<u8>]) {
        let now = Instant::now();
        if self.held.is_some_and(|t| now.duration_since(t) >= HOLD) {
            self.run("COMMIT");
            self.held = None;
        }
        if self.held.is_none() {
            self.run("BEGIN");
            self.held = Some(now);
        }
        for sql in queries {
            let mut stmt = self.conn.prepare_cached(sql).expect("prepare");
            let mut rows = stmt
                .query(rusqlite::params_from_iter(keys.iter()))
                .expect("query");
            while let Some(row) = rows.next().expect("row") {
                let _ = (
                    row.get_ref(0),
                    row.get_ref(1),
                    row.get_ref(2),
                    row.get_ref(3),
                );
            }
        }
    }

    fn run(&self, sql: &str) {
        self.conn
            .prepare_cached(sql)
            .expect(sql)
            .execute([])
            .expect(sql);
    }
}

/// One query per view (project `repo`), all of the payload's unique keys in it.
pub(crate) fn sqlite_queries(r: &Reads) -> Vec<String> {
    let placeholders = vec!["?"; r.keys.len()].join(",");
    r.views
        .keys()
        .map(|view| {
            format!(
                "SELECT entity_key, feature_name, value, event_ts FROM \"repo_{view}\" WHERE entity_key IN ({placeholders})"
            )
        })
        .collect()
}
