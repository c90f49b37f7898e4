//! Statuses with a pinned clock: PRESENT inside the ttl, OUTSIDE_MAX_AGE (value kept)
//! past it, NOT_FOUND for missing entities, NULL_VALUE for stored nulls, and views
//! with ttl 0 never expire.

use feast_server::Clock;
use feast_server_e2e::{PINNED_NOW, RepoCopy, TestServer, test_options};
use serde_json::json;

const NEWEST_EVENT: u64 = 1_795_388_400; // 2026-11-22T23:00:00Z
const DAY: u64 = 86_400;

async fn server_at(repo: &RepoCopy, now: u64) -> TestServer {
    let mut opts = test_options();
    opts.clock = Clock::fixed_unix(now);
    TestServer::start(repo.config(), opts).await
}

fn request() -> serde_json::Value {
    json!({"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:avg_daily_trips"],
           "entities": {"driver_id": [1001, 9999]}})
}

#[tokio::test]
async fn values_expire_after_the_view_ttl_but_are_still_returned() {
    let repo = RepoCopy::demo();
    for (now, status) in [
        (PINNED_NOW, "PRESENT"),
        (NEWEST_EVENT + DAY, "PRESENT"),
        (NEWEST_EVENT + DAY + 1, "OUTSIDE_MAX_AGE"),
    ] {
        let server = server_at(&repo, now).await;
        let resp = server.get_online_features(&request()).await;
        assert_eq!(resp.status, 200);
        let col = resp.column("avg_daily_trips");
        assert_eq!(col["values"], json!([545, null]), "now={now}");
        assert_eq!(col["statuses"], json!([status, "NOT_FOUND"]), "now={now}");
        assert_eq!(
            col["event_timestamps"],
            json!(["2026-11-22T23:00:00Z", "1970-01-01T00:00:00Z"])
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn stored_nulls_are_null_value_and_ttl_zero_never_expires() {
    let repo = RepoCopy::demo();
    let db = rusqlite::Connection::open(repo.path().join("data/online_store.db")).expect("db");
    // An empty Value is how Feast stores a null; 1001's avg_daily_trips becomes null.
    db.execute(
        "UPDATE repo_driver_hourly_stats SET value = x'' WHERE feature_name = 'avg_daily_trips' AND entity_key = ?1",
        [hex_key(1001)],
    )
    .expect("update");
    // A label-view row long in the past: the label view has ttl 0.
    db.execute(
        "INSERT INTO repo_driver_quality_labels (entity_key, feature_name, value, event_ts) VALUES (?1, 'quality_score', x'350000803f', 1000)",
        [string_key("1001")],
    )
    .expect("insert");
    drop(db);
    let server = server_at(&repo, PINNED_NOW + 365 * DAY).await;
    let resp = server.get_online_features(&request()).await;
    let col = resp.column("avg_daily_trips");
    assert_eq!(col["values"], json!([null, null]));
    assert_eq!(col["statuses"], json!(["NULL_VALUE", "NOT_FOUND"]));

    let labels = server
        .get_online_features(&json!({"features": ["driver_quality_labels:quality_score"], "entities": {"driver_id": [1001]}}))
        .await;
    assert_eq!(labels.status, 200);
    // The label view's join key is a STRING: 1001 is echoed and looked up as "1001".
    assert_eq!(labels.column("driver_id")["values"], json!(["1001"]));
    let q = labels.column("quality_score");
    assert_eq!(q["values"], json!([1.0]));
    assert_eq!(q["statuses"], json!(["PRESENT"]));
    assert_eq!(q["event_timestamps"], json!(["1970-01-01T00:16:40Z"]));
    server.stop().await;
}

#[tokio::test]
async fn an_unreadable_event_time_fails_only_the_requests_that_read_it() {
    let repo = RepoCopy::demo();
    let db = rusqlite::Connection::open(repo.path().join("data/online_store.db")).expect("db");
    db.execute(
        "UPDATE repo_driver_hourly_stats SET event_ts = '2024/01/02 03:04:05' WHERE feature_name = 'avg_daily_trips' AND entity_key = ?1",
        [hex_key(1001)],
    )
    .expect("update");
    drop(db);
    let server = server_at(&repo, PINNED_NOW).await;
    let bad = server.get_online_features(&request()).await;
    assert_eq!(bad.status, 500);
    let (_, message) = bad.feast_error();
    assert!(
        message.contains("driver_hourly_stats:avg_daily_trips"),
        "{message}"
    );
    assert!(message.contains("event_ts"), "{message}");
    let other = server
        .get_online_features(&json!({"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1002]}}))
        .await;
    assert_eq!(other.status, 200);
    server.stop().await;
}

fn hex_key(id: i64) -> Vec<u8> {
    let mut k = vec![1, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0];
    k.extend_from_slice(b"driver_id");
    k.extend_from_slice(&[4, 0, 0, 0, 8, 0, 0, 0]);
    k.extend_from_slice(&id.to_le_bytes());
    k
}

fn string_key(id: &str) -> Vec<u8> {
    let mut k = vec![1, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0];
    k.extend_from_slice(b"driver_id");
    k.extend_from_slice(&[2, 0, 0, 0]);
    k.extend_from_slice(&(id.len() as u32).to_le_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}
