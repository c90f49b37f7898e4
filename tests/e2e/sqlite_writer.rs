//! Reads wait out a writer holding SQLite's lock (as `feast materialize` does) instead
//! of failing, and see what it committed.

use std::time::Duration;

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
