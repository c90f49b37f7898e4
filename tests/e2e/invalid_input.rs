//! Bad input gets a clear 4xx in Feast's error format, and the server keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use feast_server_e2e::{RepoCopy, TestServer};
use serde_json::json;

/// (what, body, status, Feast class, words the message must contain)
fn cases() -> Vec<(&'static str, String, u16, &'static str, &'static str)> {
    let ok_features = json!(["driver_hourly_stats:conv_rate"]);
    vec![
        ("malformed JSON", "{\"features\": [".into(), 400, "FeastError", "not valid JSON"),
        ("not an object", "[1, 2]".into(), 400, "FeastError", "JSON object"),
        ("empty body", String::new(), 400, "FeastError", "empty"),
        (
            "features not a list",
            json!({"features": "driver_hourly_stats:conv_rate", "entities": {"driver_id": [1]}}).to_string(),
            400, "FeastError", "`features`",
        ),
        (
            "entity values not a list",
            json!({"features": ok_features, "entities": {"driver_id": 1001}}).to_string(),
            400, "FeastError", "entities.driver_id",
        ),
        (
            "entities not an object",
            json!({"features": ok_features, "entities": [1001]}).to_string(),
            400, "FeastError", "`entities`",
        ),
        (
            "ragged entity lists",
            json!({"features": ok_features, "entities": {"driver_id": [1001, 1002], "other": [1]}}).to_string(),
            400, "FeastError", "same columns",
        ),
        (
            "empty entity list",
            json!({"features": ok_features, "entities": {"driver_id": []}}).to_string(),
            400, "FeastError", "empty",
        ),
        (
            "join key absent, other keys given",
            json!({"features": ok_features, "entities": {"customer_id": [1]}}).to_string(),
            400, "FeastError", "driver_id",
        ),
        (
            "wrong entity type",
            json!({"features": ok_features, "entities": {"driver_id": ["abc"]}}).to_string(),
            400, "FeastError", "INT64",
        ),
        (
            "fractional id",
            json!({"features": ok_features, "entities": {"driver_id": [1001.5]}}).to_string(),
            400, "FeastError", "1001.5",
        ),
        (
            "null id",
            json!({"features": ok_features, "entities": {"driver_id": [null]}}).to_string(),
            400, "FeastError", "null",
        ),
        (
            "nested id",
            json!({"features": ok_features, "entities": {"driver_id": [[1001]]}}).to_string(),
            400, "FeastError", "driver_id",
        ),
        (
            "no features",
            json!({"entities": {"driver_id": [1001]}}).to_string(),
            400, "FeastError", "No features",
        ),
        (
            "feature ref without view",
            json!({"features": ["conv_rate"], "entities": {"driver_id": [1001]}}).to_string(),
            400, "InvalidFeaturesParameterType", "conv_rate",
        ),
        (
            "versioned ref without versioning",
            json!({"features": ["driver_hourly_stats@v2:conv_rate"], "entities": {"driver_id": [1001]}}).to_string(),
            400, "InvalidFeaturesParameterType", "versioning",
        ),
        (
            "unknown view",
            json!({"features": ["nope:conv_rate"], "entities": {"driver_id": [1001]}}).to_string(),
            404, "FeatureViewNotFoundException", "nope",
        ),
        (
            "unknown feature",
            json!({"features": ["driver_hourly_stats:nope"], "entities": {"driver_id": [1001]}}).to_string(),
            404, "FeastObjectNotFoundException", "nope",
        ),
        (
            "unknown feature service",
            json!({"feature_service": "nope", "entities": {"driver_id": [1001]}}).to_string(),
            404, "FeatureServiceNotFoundException", "nope",
        ),
        (
            "name collision",
            json!({"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats_fresh:conv_rate"], "entities": {"driver_id": [1001]}}).to_string(),
            400, "FeatureNameCollisionError", "full_feature_names",
        ),
        (
            "the same feature twice",
            json!({"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001]}}).to_string(),
            400, "FeatureNameCollisionError", "Duplicate features named conv_rate",
        ),
        (
            "ODFV without a plugin",
            json!({"features": ["transformed_conv_rate:conv_rate_plus_val1"], "entities": {"driver_id": [1001], "val_to_add": [1], "val_to_add_2": [2]}}).to_string(),
            501, "FeastError", "transformed_conv_rate",
        ),
    ]
}

#[tokio::test]
async fn every_bad_request_gets_a_clear_error_and_the_server_keeps_serving() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let good =
        json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001]}});
    for (what, body, status, class, words) in cases() {
        let resp = server
            .send(
                "POST",
                "/get-online-features",
                Some("application/json"),
                body.as_bytes(),
            )
            .await;
        assert_eq!(
            resp.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(
            resp.content_type.as_deref(),
            Some("application/json"),
            "{what}"
        );
        let (got_class, message) = resp.feast_error();
        assert_eq!(got_class, class, "{what}: {message}");
        assert!(
            message.contains(words),
            "{what}: {message:?} lacks {words:?}"
        );
        let after = server.get_online_features(&good).await;
        assert_eq!(after.status, 200, "after {what}");
    }
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    // Several times the 2 MiB limit, so the server answers long before the
    // client has sent the body: the client must still read the 413.
    let ids: Vec<u64> = (0..2_000_000).collect();
    let body =
        json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": ids}});
    for _ in 0..3 {
        let resp = server.get_online_features(&body).await;
        assert_eq!(resp.status, 413);
        // The unread rest of the body makes the connection unusable: the
        // client must not send its next request on it.
        assert_eq!(resp.headers["connection"], "close");
    }
    let good =
        json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001]}});
    assert_eq!(server.get_online_features(&good).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_client_sending_an_oversized_body_still_reads_the_413() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let port = server.port;
    // 8 MiB (4 times the limit) sent over about 4 seconds: the server answers
    // at once and keeps draining until the client is done, so the response
    // is not destroyed by a reset.
    let reply = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        const CHUNK: usize = 512 * 1024;
        const CHUNKS: usize = 16;
        let head = format!(
            "POST /get-online-features HTTP/1.1\r\nhost: 127.0.0.1\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            CHUNK * CHUNKS
        );
        conn.write_all(head.as_bytes()).expect("head sent");
        let chunk = vec![b' '; CHUNK];
        for _ in 0..CHUNKS {
            std::thread::sleep(Duration::from_millis(250));
            conn.write_all(&chunk)
                .expect("the server keeps reading the body");
        }
        let mut reply = String::new();
        conn.read_to_string(&mut reply)
            .expect("the response, then a clean close");
        reply
    })
    .await
    .expect("client thread");
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert!(reply.contains("\r\nconnection: close\r\n"), "{reply}");
    assert!(reply.contains("larger than this server's limit"), "{reply}");
    server.stop().await;
}
