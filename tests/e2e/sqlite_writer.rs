//! Reads wait out a writer holding SQLite's lock (as `feast materialize` does) instead
//! of failing, and see what it committed; writers commit while reads go on without
//! pause (a serving thread holds its read transaction open for a millisecond).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use feast_server_e2e::{RepoCopy, TestServer, wait_until};
use serde_json::json;

#[tokio::test]
async fn reads_wait_for_a_writer_and_see_its_commit() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let body = json!({"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}});
    assert_eq!(
        server
            .get_online_features(&body)
            .await
            .column("avg_daily_trips")["values"],
        json!([545])
    );

    let db_path = repo.path().join("data/online_store.db");
    let writer = std::thread::spawn(move || {
        let mut db = rusqlite::Connection::open(db_path).expect("open");
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .expect("exclusive lock");
        // int64 777 as a serialized feast.types.Value: field 4, varint.
        tx.execute(
            "UPDATE repo_driver_hourly_stats SET value = x'208906' WHERE feature_name = 'avg_daily_trips'",
            [],
        )
        .expect("update");
        std::thread::sleep(Duration::from_millis(400));
        tx.commit().expect("commit");
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = server.get_online_features(&body).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.column("avg_daily_trips")["values"], json!([777]));
    writer.join().expect("writer");
    server.stop().await;
}

#[tokio::test]
async fn a_database_file_replaced_under_the_server_is_read_from_then_on() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let body = json!({"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}});
    let served =
        |resp: &feast_server_e2e::Response| resp.column("avg_daily_trips")["values"].clone();
    assert_eq!(
        served(&server.get_online_features(&body).await),
        json!([545])
    );

    // A new file renamed over the old path (as a rebuilt store would be), 777 in it.
    let db_path = repo.path().join("data/online_store.db");
    let next = repo.path().join("data/online_store.db.next");
    std::fs::copy(&db_path, &next).expect("copy");
    rusqlite::Connection::open(&next)
        .expect("open")
        .execute(
            "UPDATE repo_driver_hourly_stats SET value = x'208906' WHERE feature_name = 'avg_daily_trips'",
            [],
        )
        .expect("update");
    std::fs::rename(&next, &db_path).expect("rename");

    wait_until(Duration::from_secs(10), "the new file is read", || async {
        let resp = server.get_online_features(&body).await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        served(&resp) == json!([777])
    })
    .await;
    server.stop().await;
}

/// `value` as a serialized `feast.types.Value` of int64 (field 4, varint).
fn int64_value(mut value: u64) -> Vec<u8> {
    let mut out = vec![0x20];
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_commit_while_reads_never_pause_and_each_read_after_a_commit_sees_it() {
    let repo = RepoCopy::demo();
    let db_path = repo.path().join("data/online_store.db");
    let mode: String = rusqlite::Connection::open(&db_path)
        .expect("open")
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(
        mode, "delete",
        "the file as Feast wrote it: rollback journal"
    );
    let server = Arc::new(TestServer::demo(&repo).await);
    let body = json!({"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}});

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop, body) = (server.clone(), stop.clone(), body.clone());
            tokio::spawn(async move {
                let mut reads = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let resp = server.get_online_features(&body).await;
                    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    for value in 1001..1021u64 {
        let path = db_path.clone();
        let started = Instant::now();
        // Feast's writer: Python's sqlite3 waits up to 5 s for locks, as rusqlite does.
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.execute(
                "UPDATE repo_driver_hourly_stats SET value = ?1 WHERE feature_name = 'avg_daily_trips'",
                [int64_value(value)],
            )
            .expect("a commit while the server reads");
        })
        .await
        .expect("writer");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "a commit took {took:?}");
        let resp = server.get_online_features(&body).await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(
            resp.column("avg_daily_trips")["values"],
            json!([value]),
            "a read after the commit of {value}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.expect("reader") > 0);
    }
    // Once reads stop, no transaction is left open: a writer that does not wait at
    // all for locks commits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let path = db_path.clone();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.busy_timeout(Duration::ZERO).expect("no waiting");
        conn.execute(
            "UPDATE repo_driver_hourly_stats SET value = ?1 WHERE feature_name = 'avg_daily_trips'",
            [int64_value(545)],
        )
        .expect("a commit with no read transaction left open");
    })
    .await
    .expect("writer");
    let mode: String = rusqlite::Connection::open(&db_path)
        .expect("open")
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "delete");
    Arc::into_inner(server).expect("readers done").stop().await;
}
