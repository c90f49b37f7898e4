//! The store floor of a benchmark payload: the same online-store reads one request
//! needs (the payload's unique entity keys, its features), issued directly with the
//! store's client library and no HTTP, JSON or serving logic, from N concurrent
//! clients for a fixed time. Prints `rps=... p50_us=... p99_us=...`.
//!
//! ```text
//! cargo run --release --example store_floor -- redis 127.0.0.1:6379 bench/payloads/p1_1x3.json 8 10
//! cargo run --release --example store_floor -- sqlite data/online_store.db bench/payloads/p1_1x3.json 8 10
//! ```

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use feast_server::KeyLayout;
use feast_server::value::{Val, Value};
use feast_server::{feature_field, timestamp_field};

/// Per view: feature names; and the unique entity keys.
struct Reads {
    views: BTreeMap<String, Vec<String>>,
    keys: Vec<Vec<u8>>,
}

fn reads(payload: &std::path::Path) -> Reads {
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

fn report(mut lat: Vec<Duration>, elapsed: Duration) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .map_or(0, |d| d.as_micros())
    };
    println!(
        "requests={} rps={:.1} p50_us={} p99_us={}",
        lat.len(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
}

fn redis_floor(addr: &str, r: Reads, conns: usize, secs: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = redis::Client::open(format!("redis://{addr}")).expect("client");
        // One HMGET per unique key with every view's fields and _ts fields, one pipeline.
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
        let pipe = std::sync::Arc::new(pipe);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let pipe = pipe.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let _: Vec<redis::Value> = pipe.query_async(&mut conn).await.expect("pipeline");
                    lat.push(t0.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        report(all, start.elapsed());
    });
}

/// How long a read transaction serves the reads that follow it (as the server's).
const HOLD: Duration = Duration::from_millis(1);

fn sqlite_floor(db: &str, r: Reads, conns: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let r = std::sync::Arc::new(r);
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let r = r.clone();
            let db = db.to_string();
            std::thread::spawn(move || {
                let conn = rusqlite::Connection::open_with_flags(
                    db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .expect("open");
                let placeholders = vec!["?"; r.keys.len()].join(",");
                let queries: Vec<String> = r
                    .views
                    .keys()
                    .map(|view| {
                        format!(
                            "SELECT entity_key, feature_name, value, event_ts FROM \"repo_{view}\" WHERE entity_key IN ({placeholders})"
                        )
                    })
                    .collect();
                // As the server reads in Feast's rollback-journal mode: one read
                // transaction serves the reads of a millisecond.
                let mut held: Option<Instant> = None;
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if held.is_some_and(|t| t.elapsed() >= HOLD) {
                        conn.prepare_cached("COMMIT").expect("commit").execute([]).expect("commit");
                        held = None;
                    }
                    if held.is_none() {
                        conn.prepare_cached("BEGIN").expect("begin").execute([]).expect("begin");
                        held = Some(t0);
                    }
                    for sql in &queries {
                        let mut stmt = conn.prepare_cached(sql).expect("prepare");
                        let mut rows = stmt
                            .query(rusqlite::params_from_iter(r.keys.iter()))
                            .expect("query");
                        while let Some(row) = rows.next().expect("row") {
                            let _ = (row.get_ref(0), row.get_ref(1), row.get_ref(2), row.get_ref(3));
                        }
                    }
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("thread"));
    }
    report(all, start.elapsed());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: store_floor redis|sqlite ADDR|DB PAYLOAD CONNS SECONDS");
        std::process::exit(2);
    }
    let r = reads(std::path::Path::new(&args[3]));
    let conns: usize = args[4].parse().expect("conns");
    let secs: u64 = args[5].parse().expect("seconds");
    match args[1].as_str() {
        "redis" => redis_floor(&args[2], r, conns, secs),
        "sqlite" => sqlite_floor(&args[2], r, conns, secs),
        other => {
            eprintln!("unknown store {other}");
            std::process::exit(2);
        }
    }
}
