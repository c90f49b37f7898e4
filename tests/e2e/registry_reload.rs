//! The registry is re-read when the file changes; a broken file keeps the last good
//! registry serving.

use std::time::Duration;

use feast_server::proto::feast::core::Registry;
use feast_server_e2e::{RepoCopy, TestServer, test_options};
use prost::Message;
use serde_json::json;

async fn status_of(server: &TestServer, view: &str) -> u16 {
    server
        .get_online_features(
            &json!({"features": [format!("{view}:conv_rate")], "entities": {"driver_id": [1001]}}),
        )
        .await
        .status
}

async fn eventually(server: &TestServer, view: &str, want: u16) {
    for _ in 0..100 {
        if status_of(server, view).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{view} never answered {want}");
}

/// The registry bytes `original` without the feature view `name`.
fn without_view(original: &[u8], name: &str) -> Vec<u8> {
    let mut reg = Registry::decode(original).expect("decode");
    reg.feature_views
        .retain(|v| v.spec.as_ref().is_some_and(|s| s.name != name));
    reg.encode_to_vec()
}

async fn reload_failures(server: &TestServer) -> u64 {
    let text = server.send("GET", "/metrics", None, b"").await.body;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|l| l.strip_prefix("feast_server_registry_reload_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the reload failure counter")
}

#[tokio::test]
async fn a_zero_ttl_still_follows_file_changes() {
    let repo = RepoCopy::demo();
    let path = repo.path().join("data/registry.db");
    let original = std::fs::read(&path).expect("registry");
    let mut opts = test_options();
    opts.registry_ttl = Some(Duration::ZERO);
    let server = TestServer::start(repo.config(), opts).await;
    assert_eq!(status_of(&server, "driver_hourly_stats_fresh").await, 200);
    std::fs::write(&path, without_view(&original, "driver_hourly_stats_fresh")).expect("write");
    eventually(&server, "driver_hourly_stats_fresh", 404).await;
    server.stop().await;
}

#[tokio::test]
async fn reloads_on_change_and_survives_a_broken_file() {
    let repo = RepoCopy::demo();
    let path = repo.path().join("data/registry.db");
    let original = std::fs::read(&path).expect("registry");
    let server = TestServer::start(repo.config(), test_options()).await;
    assert_eq!(status_of(&server, "driver_hourly_stats_fresh").await, 200);

    // A corrupt file, then an empty one (what a reader sees between Feast's truncate
    // and write): the last good registry keeps serving, and a broken file is read
    // once, not again on every poll.
    for (n, broken) in [&b"\xff\xff\xff not a registry"[..], b""]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&path, broken).expect("write");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(status_of(&server, "driver_hourly_stats_fresh").await, 200);
        assert_eq!(status_of(&server, "driver_hourly_stats").await, 200);
        assert_eq!(reload_failures(&server).await, n as u64 + 1);
    }

    // A new registry without one view: it disappears, the others stay.
    std::fs::write(&path, without_view(&original, "driver_hourly_stats_fresh")).expect("write");
    eventually(&server, "driver_hourly_stats_fresh", 404).await;
    assert_eq!(status_of(&server, "driver_hourly_stats").await, 200);

    // And back.
    std::fs::write(&path, &original).expect("write");
    eventually(&server, "driver_hourly_stats_fresh", 200).await;
    server.stop().await;
}
