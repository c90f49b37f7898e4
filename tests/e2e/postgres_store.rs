//! The PostgreSQL store component (`plugins/postgres-store`) beyond the golden cases
//! (`golden.rs`) and the bytes Feast writes (`tests/python/write_parity.py --store
//! wasm-postgres`): writes land in Feast's layout and read back; PostgreSQL stopped is
//! a 503 within the deadline, then 200 without a restart (and restarted while idle,
//! no failed request); a wrong password is a 503
//! naming the authentication; a connection outside the allow list reaches nothing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use feast_server_e2e::plugins::{PluginDir, built_plugins, wasm_plugins_yaml};
use feast_server_e2e::postgres_server::{PostgresServer, wasm_postgres_feature_store_yaml};
use feast_server_e2e::{RepoCopy, Response, TestServer, silent_listener};
use serde_json::json;

const PASSWORD: &str = "feast-pw";

fn body(id: i64) -> serde_json::Value {
    json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [id]}})
}

fn present(resp: &Response) -> bool {
    resp.status == 200 && resp.column("conv_rate")["statuses"] == json!(["PRESENT"])
}

/// A PostgreSQL server holding Feast's tables in database `feast` (user `feast`).
fn postgres_with_feast_data() -> PostgresServer {
    let pg = PostgresServer::start();
    pg.create_database("feast", "feast", PASSWORD);
    pg.load_feast_dump("feast", "feast");
    pg
}

/// A demo repo served through the component, with `extra` in the store block and
/// the given port and password in its config.
async fn serve(port: u16, password: &str, extra: &str) -> (TestServer, RepoCopy, PluginDir) {
    let repo = RepoCopy::demo();
    repo.write_config(&wasm_postgres_feature_store_yaml(
        &built_plugins().postgres_store,
        port,
        "feast",
        "feast",
        password,
        extra,
    ));
    let plugins = PluginDir::empty();
    repo.append_config(&wasm_plugins_yaml(plugins.path(), ""));
    let server = TestServer::demo(&repo).await;
    (server, repo, plugins)
}

#[tokio::test]
async fn writes_through_the_postgres_component_land_in_feasts_layout() {
    let pg = postgres_with_feast_data();
    let (server, _repo, _plugins) = serve(pg.port, PASSWORD, "").await;
    assert!(present(&server.get_online_features(&body(1001)).await));

    let push = json!({
        "push_source_name": "driver_stats_push_source",
        "df": {
            "driver_id": [4242],
            "conv_rate": [0.25],
            "acc_rate": [0.5],
            "avg_daily_trips": [7],
            "driver_metadata": [{"vehicle_type": "suv"}],
            "driver_config": ["{\"max_distance_km\": 10}"],
            "driver_profile": [{"name": "pushed"}],
            "event_timestamp": ["2026-11-22T10:00:00Z"],
            "created": ["2026-11-22T10:00:01Z"]
        },
        "to": "online"
    });
    let resp = server
        .send(
            "POST",
            "/push",
            Some("application/json"),
            push.to_string().as_bytes(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let read = server
        .get_online_features(&json!({
            "features": ["driver_hourly_stats_fresh:conv_rate", "driver_hourly_stats_fresh:avg_daily_trips"],
            "entities": {"driver_id": [4242]}
        }))
        .await;
    assert_eq!(read.column("conv_rate")["values"], json!([0.25]));
    assert_eq!(read.column("avg_daily_trips")["values"], json!([7]));

    // The rows as Feast's store writes them: value_text as Python prints the value,
    // the event time, the created time.
    let rows = pg.psql(
        "feast",
        &[
            "-c",
            "SELECT feature_name, value_text, event_ts AT TIME ZONE 'UTC', created_ts AT TIME ZONE 'UTC', vector_value IS NULL \
             FROM repo_driver_hourly_stats_fresh WHERE feature_name IN ('conv_rate', 'avg_daily_trips') \
             AND entity_key = (SELECT entity_key FROM repo_driver_hourly_stats_fresh WHERE value_text = '0.25') \
             ORDER BY feature_name",
        ],
    );
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        [
            "avg_daily_trips|7|2026-11-22 10:00:00|2026-11-22 10:00:01|t",
            "conv_rate|0.25|2026-11-22 10:00:00|2026-11-22 10:00:01|t",
        ],
        "{rows}"
    );
    server.stop().await;
}

#[tokio::test]
async fn postgres_going_away_is_a_503_then_it_recovers() {
    let mut pg = postgres_with_feast_data();
    let (server, _repo, _plugins) = serve(pg.port, PASSWORD, "    timeout_ms: 1000\n").await;
    assert!(present(&server.get_online_features(&body(1001)).await));

    pg.stop();
    let t0 = Instant::now();
    let resp = server.get_online_features(&body(1001)).await;
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let (_, message) = resp.feast_error();
    assert!(message.contains("PostgreSQL"), "{message}");
    assert_eq!(server.send("GET", "/health", None, b"").await.status, 503);

    pg.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !present(&server.get_online_features(&body(1001)).await) {
        assert!(Instant::now() < deadline, "not recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.send("GET", "/health", None, b"").await.status, 200);

    // Restarted while idle: the kept connections are stale; the next calls connect
    // again at once, no request fails.
    pg.stop();
    pg.restart();
    for _ in 0..8 {
        let resp = server.get_online_features(&body(1001)).await;
        assert!(present(&resp), "{}", String::from_utf8_lossy(&resp.body));
    }
    assert_eq!(server.send("GET", "/health", None, b"").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_a_503_naming_the_authentication() {
    let pg = postgres_with_feast_data();
    let (server, _repo, _plugins) = serve(pg.port, "not-the-password", "").await;
    let resp = server.get_online_features(&body(1001)).await;
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    let (_, message) = resp.feast_error();
    assert!(
        message.contains("authentication") && message.contains("\"feast\""),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_outside_the_allow_list_reaches_nothing() {
    let pg = postgres_with_feast_data();
    // The config points at a port that is not on the allow list (which holds only
    // PostgreSQL's port): the sandbox refuses the connect.
    let (other, accepted) = silent_listener();
    let repo = RepoCopy::demo();
    let yaml = wasm_postgres_feature_store_yaml(
        &built_plugins().postgres_store,
        other,
        "feast",
        "feast",
        PASSWORD,
        "",
    )
    .replace(
        &format!("allow: [\"127.0.0.1:{other}\"]"),
        &format!("allow: [\"127.0.0.1:{}\"]", pg.port),
    );
    repo.write_config(&yaml);
    let plugins = PluginDir::empty();
    repo.append_config(&wasm_plugins_yaml(plugins.path(), ""));
    let server = TestServer::demo(&repo).await;
    let resp = server.get_online_features(&body(1001)).await;
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    let (_, message) = resp.feast_error();
    assert!(message.contains("cannot be reached"), "{message}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the connect reached the port"
    );
    server.stop().await;
}
