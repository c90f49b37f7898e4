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

use std::time::{Duration, Instant};

#[path = "support/floor_reads.rs"]
mod floor_reads;

use floor_reads::{Reads, SqliteReader, has_view_reads, reads, redis_pipeline, sqlite_queries};

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
        let pipe = redis_pipeline(&r);
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

fn sqlite_floor(db: &str, r: Reads, conns: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let queries = std::sync::Arc::new(sqlite_queries(&r));
    let r = std::sync::Arc::new(r);
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (r, queries) = (r.clone(), queries.clone());
            let db = db.to_string();
            std::thread::spawn(move || {
                let mut reader = SqliteReader::open(std::path::Path::new(&db));
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    reader.read(&queries, &r.keys);
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
    let payload = std::path::Path::new(&args[3]);
    if !has_view_reads(payload) {
        eprintln!(
            "{}: no `features` to read (a feature-service request?)",
            args[3]
        );
        std::process::exit(2);
    }
    let r = reads(payload);
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
