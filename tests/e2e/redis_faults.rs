//! Redis faults: a server that went away or hangs gives a clear 503 within the
//! configured timeout, `/health` says so, and serving recovers by itself when Redis
//! returns; malformed stored bytes fail only the requests that read them; a cluster
//! keeps serving across a master failover; a stop waits for a hung request no longer
//! than the shutdown grace period; `ssl=true` reaches a TLS-only port, and a certificate
//! that is not trusted is a clean 503.

use std::time::{Duration, Instant};

use feast_server::parse_request;
use feast_server::proto::feast::serving::serving_service_client::ServingServiceClient;
use feast_server::to_proto_request;
use feast_server_e2e::redis_server::{
    RedisCluster, RedisServer, feast_redis_dump, free_port, load_feast_dump,
    redis_feature_store_yaml,
};
use feast_server_e2e::{Api, RepoCopy, SelfSigned, TestServer, test_options};
use serde_json::json;

const TIMEOUTS: &str = "socket_timeout=0.3,socket_connect_timeout=0.3";

fn body(id: i64) -> serde_json::Value {
    json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [id]}})
}

async fn serve_redis(conn: &str, redis_type: &str) -> (RepoCopy, TestServer) {
    let repo = RepoCopy::demo();
    repo.write_config(&redis_feature_store_yaml(conn, redis_type));
    let server = TestServer::demo(&repo).await;
    (repo, server)
}

async fn eventually_ok(server: &TestServer, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let resp = server.get_online_features(&body(1001)).await;
        if resp.status == 200 {
            assert_eq!(resp.column("conv_rate")["statuses"], json!(["PRESENT"]));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_unavailable(server: &TestServer, limit: Duration) {
    let t0 = Instant::now();
    let resp = server.get_online_features(&body(1001)).await;
    let took = t0.elapsed();
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    let (class, message) = resp.feast_error();
    assert_eq!(class, "FeastError");
    assert!(message.contains("redis"), "{message}");
    assert!(took < limit, "503 took {took:?}");
    let health = server.send("GET", "/health", None, b"").await;
    assert_eq!(health.status, 503);
}

/// A server on `conn` answers 200 within `within` (then it is stopped).
async fn assert_serves(conn: &str, redis_type: &str, within: Duration) {
    let (_repo, server) = serve_redis(conn, redis_type).await;
    eventually_ok(&server, within).await;
    server.stop().await;
}

/// A server on `conn` answers 503 (then it is stopped).
async fn assert_refused(conn: &str, redis_type: &str) {
    let (_repo, server) = serve_redis(conn, redis_type).await;
    assert_unavailable(&server, Duration::from_secs(3)).await;
    server.stop().await;
}

#[tokio::test]
async fn redis_going_away_gives_503_and_serving_recovers_without_restart() {
    let mut redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    let (_repo, server) =
        serve_redis(&format!("127.0.0.1:{},{TIMEOUTS}", redis.port), "redis").await;
    eventually_ok(&server, Duration::from_secs(1)).await;

    redis.stop();
    assert_unavailable(&server, Duration::from_secs(2)).await;
    assert_unavailable(&server, Duration::from_secs(2)).await;

    redis.restart();
    load_feast_dump(&mut redis.connection());
    eventually_ok(&server, Duration::from_secs(10)).await;
    assert_eq!(server.send("GET", "/health", None, b"").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_hung_redis_times_out_instead_of_hanging_requests() {
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    let (_repo, server) =
        serve_redis(&format!("127.0.0.1:{},{TIMEOUTS}", redis.port), "redis").await;
    eventually_ok(&server, Duration::from_secs(1)).await;

    redis.freeze();
    assert_unavailable(&server, Duration::from_secs(2)).await;
    redis.thaw();
    eventually_ok(&server, Duration::from_secs(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn the_server_starts_while_redis_is_down_and_serves_once_it_is_up() {
    let port = free_port(false);
    let (_repo, server) = serve_redis(&format!("127.0.0.1:{port},{TIMEOUTS}"), "redis").await;
    assert_unavailable(&server, Duration::from_secs(2)).await;
    let redis = RedisServer::start_on(port, false);
    load_feast_dump(&mut redis.connection());
    eventually_ok(&server, Duration::from_secs(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_stored_bytes_fail_only_the_requests_that_read_them() {
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    // Overwrite driver 1001's conv_rate with bytes that are not a feast.types.Value.
    let key_1001 = feast_redis_dump()
        .into_iter()
        .find(|h| h.key.windows(8).any(|w| w == 1001i64.to_le_bytes()))
        .expect("1001 in the dump")
        .key;
    let conv_rate_field = feast_server::feature_field("driver_hourly_stats", "conv_rate");
    redis::cmd("HSET")
        .arg(&key_1001)
        .arg(&conv_rate_field[..])
        .arg(&b"\xff\xff\xff\xff"[..])
        .query::<i64>(&mut redis.connection())
        .expect("HSET");
    let (_repo, server) = serve_redis(&format!("127.0.0.1:{}", redis.port), "redis").await;

    let bad = server.get_online_features(&body(1001)).await;
    assert_eq!(bad.status, 500);
    let (class, message) = bad.feast_error();
    assert_eq!(class, "FeastError");
    assert!(
        message.contains("driver_hourly_stats:conv_rate"),
        "{message}"
    );
    let good = server.get_online_features(&body(1002)).await;
    assert_eq!(good.status, 200);
    assert_eq!(good.column("conv_rate")["statuses"], json!(["PRESENT"]));

    // An event time that decodes but is not a valid google.protobuf.Timestamp
    // (seconds 1, nanos -5).
    let key_1003 = feast_redis_dump()
        .into_iter()
        .find(|h| h.key.windows(8).any(|w| w == 1003i64.to_le_bytes()))
        .expect("1003 in the dump")
        .key;
    redis::cmd("HSET")
        .arg(&key_1003)
        .arg(feast_server::timestamp_field("driver_hourly_stats"))
        .arg(&b"\x08\x01\x10\xfb\xff\xff\xff\xff\xff\xff\xff\xff\x01"[..])
        .query::<i64>(&mut redis.connection())
        .expect("HSET");
    let bad = server.get_online_features(&body(1003)).await;
    assert_eq!(bad.status, 500);
    let (_, message) = bad.feast_error();
    assert!(message.contains("_ts:driver_hourly_stats"), "{message}");
    assert!(message.contains("nanos -5"), "{message}");
    assert_eq!(server.get_online_features(&body(1002)).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_sentinel_names_the_master_to_read_from() {
    let master = RedisServer::start();
    load_feast_dump(&mut master.connection());
    let sentinel = RedisServer::start_sentinel(master.port, None);
    let (_repo, server) = serve_redis(
        &format!("127.0.0.1:{},{TIMEOUTS}", sentinel.port),
        "redis_sentinel",
    )
    .await;
    eventually_ok(&server, Duration::from_secs(10)).await;
    assert_eq!(server.send("GET", "/health", None, b"").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_sentinel_managed_master_is_read_over_tls_with_ssl_true() {
    let cert = SelfSigned::generate();
    let master = RedisServer::start_with_tls(&cert, false);
    load_feast_dump(&mut master.connection());
    // The sentinel knows the master by its TLS port only.
    let tls_port = master.tls_port.expect("TLS port");
    let sentinel = RedisServer::start_sentinel(tls_port, Some(&cert));
    let ca = cert.files.cert.display();
    let conn = format!(
        "127.0.0.1:{},ssl=true,ssl_ca_certs={ca},{TIMEOUTS}",
        sentinel.port
    );
    assert_serves(&conn, "redis_sentinel", Duration::from_secs(10)).await;
    // Without ssl=true the master's TLS port is not understood: a 503.
    let plain = format!("127.0.0.1:{},{TIMEOUTS}", sentinel.port);
    assert_refused(&plain, "redis_sentinel").await;
}

#[tokio::test]
async fn a_cluster_keeps_serving_across_a_master_failover() {
    let mut cluster = RedisCluster::start(3, 1);
    load_feast_dump(&mut cluster.connection());
    let (_repo, server) = serve_redis(&cluster.connection_string(), "redis_cluster").await;
    eventually_ok(&server, Duration::from_secs(2)).await;

    // Wait for the replicas to have the data, then kill the master holding driver 1001.
    cluster.wait_replicas_synced(Duration::from_secs(30));
    let key_1001 = feast_redis_dump()
        .into_iter()
        .find(|h| h.key.windows(8).any(|w| w == 1001i64.to_le_bytes()))
        .expect("1001 in the dump")
        .key;
    let port = cluster
        .master_port_for(&key_1001)
        .expect("a master holds 1001");
    cluster.node_mut(port).stop();
    let promoted = cluster.wait_failover(&key_1001, port, Duration::from_secs(30));
    assert_ne!(promoted, port);

    eventually_ok(&server, Duration::from_secs(30)).await;
    let all = server
        .get_online_features(&json!({"features": ["driver_hourly_stats:avg_daily_trips"],
                                      "entities": {"driver_id": [1001, 1002, 1003, 1004, 1005]}}))
        .await;
    assert_eq!(all.status, 200);
    assert_eq!(
        all.column("avg_daily_trips")["statuses"],
        json!(["PRESENT", "PRESENT", "PRESENT", "PRESENT", "PRESENT"])
    );
    server.stop().await;
}

/// One `get-online-features` call for driver 1001 over `api`: whether it succeeded.
async fn call(api: Api, port: u16) -> bool {
    match api {
        Api::Http => reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/get-online-features"))
            .body(body(1001).to_string())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200),
        Api::Grpc => {
            let Ok(mut client) =
                ServingServiceClient::connect(format!("http://127.0.0.1:{port}")).await
            else {
                return false;
            };
            let req = parse_request(body(1001).to_string().as_bytes()).expect("request parses");
            client
                .get_online_features(to_proto_request(req))
                .await
                .is_ok()
        }
    }
}

#[tokio::test]
async fn a_stop_waits_for_a_request_on_a_frozen_redis_only_the_grace_period() {
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    let repo = RepoCopy::demo();
    let conn = format!(
        "127.0.0.1:{},socket_timeout=60,socket_connect_timeout=60",
        redis.port
    );
    repo.write_config(&redis_feature_store_yaml(&conn, "redis"));
    let mut opts = test_options();
    opts.shutdown_grace = Duration::from_millis(500);
    opts.limits.request_timeout = Duration::from_secs(60);
    for api in [Api::Http, Api::Grpc] {
        let server = TestServer::start_with(repo.config(), opts.clone(), api.clone(), None).await;
        assert!(call(api.clone(), server.port).await, "{api:?} serves");
        redis.freeze();
        let hung = tokio::spawn(call(api.clone(), server.port));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!hung.is_finished(), "{api:?}: the request waits on Redis");
        let t0 = Instant::now();
        server.stop().await;
        let took = t0.elapsed();
        redis.thaw();
        hung.abort();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(10),
            "{api:?}: stopped after {took:?}"
        );
    }
}

#[tokio::test]
async fn ssl_true_reads_over_tls_and_an_untrusted_certificate_is_a_503() {
    let cert = SelfSigned::generate();
    let redis = RedisServer::start_with_tls(&cert, false);
    let tls_port = redis.tls_port.expect("TLS port");
    load_feast_dump(&mut redis.connection());

    // The self-signed certificate accepted as Feast's `ssl_cert_reqs=none` does.
    let insecure = format!("127.0.0.1:{tls_port},ssl=true,ssl_cert_reqs=none,{TIMEOUTS}");
    let (_repo, server) = serve_redis(&insecure, "redis").await;
    eventually_ok(&server, Duration::from_secs(5)).await;
    assert_eq!(server.send("GET", "/health", None, b"").await.status, 200);
    server.stop().await;

    // Verified against the system's roots (the default): refused, cleanly.
    assert_refused(
        &format!("127.0.0.1:{tls_port},ssl=true,{TIMEOUTS}"),
        "redis",
    )
    .await;
    // Plain text to the TLS port: no answer it understands, also a 503.
    assert_refused(&format!("127.0.0.1:{tls_port},{TIMEOUTS}"), "redis").await;

    // Verified against the CA named by `ssl_ca_certs` (relative to the repository).
    let repo = RepoCopy::demo();
    std::fs::copy(&cert.files.cert, repo.path().join("redis-ca.pem")).expect("copy CA");
    let trusted = format!("localhost:{tls_port},ssl=true,ssl_ca_certs=redis-ca.pem,{TIMEOUTS}");
    repo.write_config(&redis_feature_store_yaml(&trusted, "redis"));
    let server = TestServer::demo(&repo).await;
    eventually_ok(&server, Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_redis_that_asks_for_a_client_certificate_gets_the_one_configured() {
    let cert = SelfSigned::generate();
    let redis = RedisServer::start_with_tls(&cert, true);
    let tls_port = redis.tls_port.expect("TLS port");
    load_feast_dump(&mut redis.connection());
    let ca = cert.files.cert.display();
    let key = cert.files.key.display();
    let with_cert = format!(
        "localhost:{tls_port},ssl=true,ssl_ca_certs={ca},ssl_certfile={ca},ssl_keyfile={key},{TIMEOUTS}"
    );
    assert_serves(&with_cert, "redis", Duration::from_secs(5)).await;
    let without = format!("localhost:{tls_port},ssl=true,ssl_ca_certs={ca},{TIMEOUTS}");
    assert_refused(&without, "redis").await;
}

#[tokio::test]
async fn a_cluster_is_read_over_tls_with_ssl_true() {
    let cert = SelfSigned::generate();
    let cluster = RedisCluster::start_with_tls(3, &cert);
    load_feast_dump(&mut cluster.connection());
    let ca = cert.files.cert.display();
    let conn = format!(
        "{},ssl=true,ssl_ca_certs={ca},{TIMEOUTS}",
        cluster.tls_connection_string()
    );
    let (_repo, server) = serve_redis(&conn, "redis_cluster").await;
    eventually_ok(&server, Duration::from_secs(10)).await;
    // Every driver, whichever node holds it.
    let all = json!({"features": ["driver_hourly_stats:conv_rate"],
                     "entities": {"driver_id": [1001, 1002, 1003, 1004, 1005]}});
    let resp = server.get_online_features(&all).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.column("conv_rate")["statuses"],
        json!(vec!["PRESENT"; 5])
    );
    server.stop().await;
}
