//! Operations: Prometheus metrics that count what was served, TLS for HTTP and gRPC,
//! request limits with clear errors, request ids.

use std::time::{Duration, Instant};

use feast_server::Limits;
use feast_server::proto::feast::serving::GetFeastServingInfoRequest;
use feast_server::proto::feast::serving::serving_service_client::ServingServiceClient;
use feast_server_e2e::redis_server::{RedisServer, load_feast_dump, redis_feature_store_yaml};
use feast_server_e2e::{Api, RepoCopy, SelfSigned, TestServer, test_options};
use serde_json::json;

fn good() -> serde_json::Value {
    json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001]}})
}

/// The value of a sample line `name{labels} value` in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_what_was_served() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    for _ in 0..7 {
        assert_eq!(server.get_online_features(&good()).await.status, 200);
    }
    let unknown = json!({"features": ["nope:x"], "entities": {"driver_id": [1]}});
    for _ in 0..3 {
        assert_eq!(server.get_online_features(&unknown).await.status, 404);
    }
    let resp = server.send("GET", "/metrics", None, b"").await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("text/plain")
    );
    let text = String::from_utf8(resp.body).expect("utf8");
    let ep = r#"endpoint="http:/get-online-features""#;
    assert_eq!(
        sample(
            &text,
            &format!(r#"feast_server_requests_total{{{ep},status="200"}}"#)
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"feast_server_requests_total{{{ep},status="404"}}"#)
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"feast_server_request_duration_seconds_count{{{ep},status="200"}}"#)
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"feast_server_online_store_read_duration_seconds_count{store="sqlite"}"#
        ),
        Some(7.0)
    );
    // The scrape itself is the one request in flight.
    assert_eq!(sample(&text, "feast_server_in_flight_requests"), Some(1.0));
    assert!(
        sample(&text, "feast_server_registry_age_seconds").is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "feast_server_registry_reload_failures_total"),
        Some(0.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn https_and_grpc_over_tls_work_and_plain_requests_fail_cleanly() {
    let cert = SelfSigned::generate();
    let repo = RepoCopy::demo();
    let https = TestServer::start_with(repo.config(), test_options(), Api::Http, Some(&cert)).await;
    let resp = https.get_online_features(&good()).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.column("conv_rate")["statuses"], json!(["PRESENT"]));

    // Plain HTTP to the TLS port: the connection fails, the server keeps serving.
    let plain = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/get-online-features",
            https.port
        ))
        .body(good().to_string())
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    assert_eq!(https.get_online_features(&good()).await.status, 200);
    https.stop().await;

    let grpcs = TestServer::start_with(repo.config(), test_options(), Api::Grpc, Some(&cert)).await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert.cert_pem))
        .domain_name("localhost");
    let channel =
        tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{}", grpcs.port))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("TLS connect");
    let info = ServingServiceClient::new(channel)
        .get_feast_serving_info(GetFeastServingInfoRequest {})
        .await
        .expect("info over TLS");
    assert!(!info.into_inner().version.is_empty());
    // A plaintext gRPC client cannot talk to the TLS port.
    let plain = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", grpcs.port))
        .expect("uri")
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(
            ServingServiceClient::new(ch)
                .get_feast_serving_info(GetFeastServingInfoRequest {})
                .await
                .is_err()
        );
    }
    grpcs.stop().await;
}

#[tokio::test]
async fn too_many_entities_is_a_400_and_a_huge_body_a_413() {
    let repo = RepoCopy::demo();
    let mut opts = test_options();
    opts.limits = Limits {
        max_entities: 100,
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let server = TestServer::start(repo.config(), opts).await;
    let ids: Vec<i64> = (0..101).collect();
    let resp = server
        .get_online_features(
            &json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": ids}}),
        )
        .await;
    assert_eq!(resp.status, 400);
    assert!(resp.feast_error().1.contains("at most 100"));
    let ids: Vec<i64> = (0..20_000).collect();
    let resp = server
        .get_online_features(
            &json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": ids}}),
        )
        .await;
    assert_eq!(resp.status, 413);
    assert!(resp.feast_error().1.contains("65536 bytes"));
    assert_eq!(resp.headers["connection"], "close");
    assert_eq!(server.get_online_features(&good()).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_concurrency_limit_answers_503_at_once_and_slow_requests_time_out() {
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    let repo = RepoCopy::demo();
    repo.write_config(&redis_feature_store_yaml(
        &format!(
            "127.0.0.1:{},socket_timeout=5,socket_connect_timeout=5",
            redis.port
        ),
        "redis",
    ));
    let mut opts = test_options();
    opts.limits = Limits {
        max_concurrent_requests: 1,
        request_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let server = std::sync::Arc::new(TestServer::start(repo.config(), opts).await);
    assert_eq!(server.get_online_features(&good()).await.status, 200);

    redis.freeze();
    let slow = {
        let s = server.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = s.get_online_features(&good()).await;
            (r, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t0 = Instant::now();
    let busy = server.get_online_features(&good()).await;
    assert_eq!(busy.status, 503);
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "busy answer took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        busy.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(busy.feast_error().1.contains("limit of 1 concurrent"));

    let (slow, took) = slow.await.expect("slow request");
    assert_eq!(slow.status, 503);
    assert!(
        slow.feast_error()
            .1
            .contains("longer than the server's limit")
    );
    assert!(took < Duration::from_secs(2), "timed out after {took:?}");

    redis.thaw();
    let mut ok = false;
    for _ in 0..50 {
        if server.get_online_features(&good()).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "server healthy again");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_liveness_differs_from_readiness() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let resp = server
        .send_with_headers(
            "POST",
            "/get-online-features",
            Some("application/json"),
            good().to_string().as_bytes(),
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(
        resp.headers.get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"abc-123"[..])
    );
    let a = server.get_online_features(&good()).await;
    let b = server.get_online_features(&good()).await;
    let id = |r: &feast_server_e2e::Response| r.headers.get("x-request-id").cloned();
    assert!(id(&a).is_some());
    assert_ne!(id(&a), id(&b));
    assert_eq!(
        server.send("GET", "/health/live", None, b"").await.status,
        200
    );
    assert_eq!(
        server.send("GET", "/health/ready", None, b"").await.status,
        200
    );
    server.stop().await;
}

/// Sends `head` (and no more) on a raw connection and returns everything the server
/// answers until it closes, with how long that took.
async fn raw_exchange(port: u16, head: String) -> (String, Duration) {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let t0 = Instant::now();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        conn.write_all(head.as_bytes()).expect("head sent");
        let mut reply = String::new();
        conn.read_to_string(&mut reply)
            .expect("the response, then a clean close");
        (reply, t0.elapsed())
    })
    .await
    .expect("client thread")
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408_and_a_declared_oversize_a_413_at_once() {
    let repo = RepoCopy::demo();
    let mut opts = test_options();
    opts.limits = Limits {
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = TestServer::start(repo.config(), opts).await;

    // 100 bytes announced, 10 sent, then silence.
    let stalled = "POST /get-online-features HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                   content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"feature"
        .to_string();
    let (reply, took) = raw_exchange(server.port, stalled).await;
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert!(reply.contains("\r\nconnection: close\r\n"), "{reply}");
    assert!(reply.contains("did not arrive within 500 ms"), "{reply}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");

    // A length over the limit is refused before any of the body is sent.
    let oversized = format!(
        "POST /get-online-features HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    let (reply, _) = raw_exchange(server.port, oversized).await;
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert!(reply.contains("larger than this server's limit"), "{reply}");

    assert_eq!(server.get_online_features(&good()).await.status, 200);
    server.stop().await;
}

/// Connects to `port` over TLS trusting the DER certificate `cert`, sends `head`
/// (possibly nothing) and reads until the server closes: what it answered, and when it
/// closed counted from the end of the handshake. Panics when the server leaves the
/// connection open for 20 s.
async fn silent_tls_client(port: u16, head: &'static str, cert: Vec<u8>) -> (String, Duration) {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.into()).expect("trusted certificate");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("TLS");
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).expect("TLS handshake");
        }
        let t0 = Instant::now();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(head.as_bytes()).expect("head sent");
        let mut reply = String::new();
        match tls.read_to_string(&mut reply) {
            Ok(_) => {}
            // A close without TLS close_notify is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
        (reply, t0.elapsed())
    })
    .await
    .expect("client thread")
}

#[tokio::test]
async fn silent_and_slow_clients_are_disconnected_after_the_header_timeout() {
    let cert = SelfSigned::generate();
    let repo = RepoCopy::demo();
    let mut opts = test_options();
    opts.limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let http = TestServer::start(repo.config(), opts.clone()).await;
    let https = TestServer::start_with(repo.config(), opts, Api::Http, Some(&cert)).await;
    let partial = "GET /health HTTP/1.1\r\nhost: 127.0.0";
    let answered_then_idle = "GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    for (port, tls) in [(http.port, None), (https.port, Some(cert.cert_der.clone()))] {
        // Nothing sent, a head cut short, and a keep-alive connection left idle
        // after its answer: each is closed after the timeout.
        for head in ["", partial, answered_then_idle] {
            let (reply, took) = match &tls {
                None => raw_exchange(port, head.to_string()).await,
                Some(cert) => silent_tls_client(port, head, cert.clone()).await,
            };
            if head == answered_then_idle {
                assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
            } else {
                assert!(!reply.contains(" 200 "), "{reply}");
            }
            let tls = tls.is_some();
            assert!(
                took >= Duration::from_millis(250) && took < Duration::from_secs(10),
                "closed after {took:?} (tls: {tls}, sent {head:?})"
            );
        }
    }
    assert_eq!(http.get_online_features(&good()).await.status, 200);
    assert_eq!(https.get_online_features(&good()).await.status, 200);
    http.stop().await;
    https.stop().await;
}
