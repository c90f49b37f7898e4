//! Feast's gRPC `ServingService` through a real tonic client: the same answers as
//! HTTP for every golden success case, errors as proper gRPC codes, and the standard
//! health service.

use std::time::Duration;

use feast_server::parse_request;
use feast_server::proto::feast::serving::serving_service_client::ServingServiceClient;
use feast_server::proto::feast::serving::{
    FieldStatus, GetFeastServingInfoRequest, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse,
};
use feast_server::to_proto_request;
use feast_server::value::{EventTime, RepeatedValue};
use feast_server::write_response;
use feast_server::{FeatureColumn, OnlineFeaturesResponse};
use feast_server_e2e::redis_server::{free_port, redis_feature_store_yaml};
use feast_server_e2e::{Api, RepoCopy, TestServer, compare_columns, golden_cases, test_options};
use serde_json::Value as Json;
use tonic::transport::Channel;

async fn client(port: u16) -> ServingServiceClient<Channel> {
    ServingServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("gRPC connect")
}

/// The gRPC request equivalent to an HTTP JSON body.
fn grpc_request(body: &str) -> GetOnlineFeaturesRequest {
    to_proto_request(parse_request(body.as_bytes()).expect("golden body parses"))
}

/// A gRPC answer rendered with the HTTP JSON writer, to compare with the HTTP answer.
fn as_json(resp: GetOnlineFeaturesResponse) -> Json {
    let meta = resp.metadata.unwrap_or_default();
    let names: Vec<String> = meta.feature_names.map(|f| f.val).unwrap_or_default();
    let r = OnlineFeaturesResponse {
        feature_names: names.into(),
        columns: resp
            .results
            .into_iter()
            .map(|v| {
                FeatureColumn::new(
                    v.values,
                    v.statuses
                        .into_iter()
                        .map(|s| FieldStatus::try_from(s).unwrap_or(FieldStatus::Invalid))
                        .collect(),
                    v.event_timestamps
                        .into_iter()
                        .map(|t| EventTime {
                            seconds: t.seconds,
                            nanos: t.nanos,
                        })
                        .collect(),
                )
            })
            .collect(),
        feature_view_metadata: None,
        request_data: Vec::new(),
    };
    let mut out = Vec::new();
    write_response(&r, &mut out);
    serde_json::from_slice(&out).expect("json")
}

#[tokio::test]
async fn grpc_answers_like_http_for_every_golden_success_case() {
    let repo = RepoCopy::demo();
    let http = TestServer::demo(&repo).await;
    let grpc = TestServer::start_with(repo.config(), test_options(), Api::Grpc, None).await;
    let mut c = client(grpc.port).await;
    let mut compared = 0;
    let mut failures = Vec::new();
    for case in golden_cases("sqlite") {
        let is_query = case.path == "/get-online-features" && case.method == "POST";
        if !is_query || case.status != 200 {
            continue;
        }
        let http_resp = http
            .send(
                "POST",
                "/get-online-features",
                Some("application/json"),
                case.body.as_bytes(),
            )
            .await;
        let grpc_resp = c.get_online_features(grpc_request(&case.body)).await;
        match (http_resp.status, grpc_resp) {
            (200, Ok(r)) => {
                compared += 1;
                for d in compare_columns(&http_resp.json(), &as_json(r.into_inner())) {
                    failures.push(format!("{}: {d}", case.name));
                }
            }
            (status, Ok(_)) => failures.push(format!("{}: HTTP {status} but gRPC OK", case.name)),
            (200, Err(e)) => failures.push(format!("{}: HTTP 200 but gRPC {e}", case.name)),
            (_, Err(_)) => {} // both refuse (pending ODFV cases)
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 15, "compared {compared} cases");
    let info = c
        .get_feast_serving_info(GetFeastServingInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert!(!info.version.is_empty());
    http.stop().await;
    grpc.stop().await;
}

#[tokio::test]
async fn grpc_errors_use_proper_codes() {
    let repo = RepoCopy::demo();
    let grpc = TestServer::start_with(repo.config(), test_options(), Api::Grpc, None).await;
    let mut c = client(grpc.port).await;
    let cases = [
        (
            r#"{"features":["nope:conv_rate"],"entities":{"driver_id":[1001]}}"#,
            tonic::Code::NotFound,
        ),
        (
            r#"{"features":["driver_hourly_stats:nope"],"entities":{"driver_id":[1001]}}"#,
            tonic::Code::NotFound,
        ),
        (
            r#"{"feature_service":"nope","entities":{"driver_id":[1001]}}"#,
            tonic::Code::NotFound,
        ),
        (
            r#"{"features":["driver_hourly_stats:conv_rate"],"entities":{"driver_id":["abc"]}}"#,
            tonic::Code::InvalidArgument,
        ),
        (
            r#"{"features":["driver_hourly_stats:conv_rate"],"entities":{"customer":[1]}}"#,
            tonic::Code::InvalidArgument,
        ),
        (
            r#"{"features":["conv_rate"],"entities":{"driver_id":[1]}}"#,
            tonic::Code::InvalidArgument,
        ),
    ];
    for (body, code) in cases {
        let err = c
            .get_online_features(grpc_request(body))
            .await
            .expect_err(body);
        assert_eq!(err.code(), code, "{body}: {}", err.message());
        assert!(!err.message().is_empty());
    }
    // Typed values arrive directly over gRPC: an INT32 value for the INT64 key works.
    let mut req = grpc_request(
        r#"{"features":["driver_hourly_stats:conv_rate"],"entities":{"driver_id":[1]}}"#,
    );
    req.entities.insert(
        "driver_id".into(),
        RepeatedValue {
            val: vec![feast_server::value::Value {
                val: Some(feast_server::value::Val::Int32Val(1001)),
            }],
        },
    );
    let ok = c
        .get_online_features(req)
        .await
        .expect("int32 key")
        .into_inner();
    assert_eq!(ok.results[1].statuses, vec![FieldStatus::Present as i32]);
    grpc.stop().await;
}

#[tokio::test]
async fn grpc_health_follows_the_store() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let repo = RepoCopy::demo();
    let grpc = TestServer::start_with(repo.config(), test_options(), Api::Grpc, None).await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", grpc.port))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let status = eventually_status(
        &mut health,
        "feast.serving.ServingService",
        ServingStatus::Serving,
    )
    .await;
    assert_eq!(status, ServingStatus::Serving);
    grpc.stop().await;

    // A Redis store that is not there: NOT_SERVING.
    let down = RepoCopy::demo();
    down.write_config(&redis_feature_store_yaml(
        &format!(
            "127.0.0.1:{},socket_connect_timeout=0.2,socket_timeout=0.2",
            free_port(false)
        ),
        "redis",
    ));
    let grpc = TestServer::start_with(down.config(), test_options(), Api::Grpc, None).await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", grpc.port))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let status = eventually_status(&mut health, "", ServingStatus::NotServing).await;
    assert_eq!(status, ServingStatus::NotServing);
    let _ = HealthCheckRequest::default();
    grpc.stop().await;
}

async fn eventually_status(
    health: &mut tonic_health::pb::health_client::HealthClient<Channel>,
    service: &str,
    want: tonic_health::pb::health_check_response::ServingStatus,
) -> tonic_health::pb::health_check_response::ServingStatus {
    let mut last = tonic_health::pb::health_check_response::ServingStatus::Unknown;
    for _ in 0..50 {
        if let Ok(r) = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
        {
            last = r.into_inner().status();
            if last == want {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}
