//! Feature logging: requests served through logged feature services end up as
//! Parquet files in Feast's schema, with nothing lost on graceful shutdown, drops
//! counted (never failing a request) when the queue is full, and only whole files
//! on disk after a `kill -9`.
//!
//! With `FEAST_VENV` pointing at a venv with the pinned Feast (`demo/feast_venv.sh`
//! prints one), the files are also checked by `tests/feature_logging_check.py`:
//! Feast's own `FeatureServiceLoggingSource.get_schema` and Feast's log retrieval.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use feast_server::App;
use feast_server::value::EventTime;
use feast_server_e2e::logging::{
    LoggedService, add_service, count_rows, enable_logging, feast_server_binary, log_files,
    read_log_file, vt,
};
use feast_server_e2e::{PINNED_NOW, RepoCopy, TestServer, column, test_options, workspace_root};
use serde_json::{Value as Json, json};

/// The entity rows of the logged requests: one is not stored, one repeats a key.
const LOGGED_IDS: [i64; 4] = [1001, 1002, 9999, 1001];

const STATS_FEATURES: [(&str, i32); 3] = [
    ("conv_rate", vt::FLOAT),
    ("acc_rate", vt::FLOAT),
    ("avg_daily_trips", vt::INT64),
];

fn stats_service<'a>(name: &'a str, dest: &'a Path) -> LoggedService<'a> {
    LoggedService {
        name,
        projections: vec![("driver_hourly_stats", STATS_FEATURES.to_vec())],
        sample_rate: 1.0,
        file_path: Some(dest),
        partition_by: vec![],
    }
}

fn all_rows(files: &[std::path::PathBuf]) -> Vec<RecordBatch> {
    files
        .iter()
        .flat_map(|f| read_log_file(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

fn schema_of(batches: &[RecordBatch]) -> Vec<(String, DataType)> {
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

fn ts(unit: TimeUnit, utc: bool) -> DataType {
    DataType::Timestamp(unit, utc.then(|| "UTC".into()))
}

/// Runs the Python check when `FEAST_VENV` is set.
fn python_check(repo: &Path, service: &str, logs: &Path, rows: usize) {
    let Ok(venv) = std::env::var("FEAST_VENV") else {
        eprintln!("FEAST_VENV is not set: skipping the check with Feast's own schema and reader");
        return;
    };
    let script = workspace_root().join("tests/feature_logging_check.py");
    let out = Command::new(Path::new(&venv).join("bin/python"))
        .arg(script)
        .arg("--repo")
        .arg(repo)
        .args(["--service", service])
        .arg("--logs")
        .arg(logs)
        .args(["--rows", &rows.to_string()])
        .output()
        .expect("run the python check");
    assert!(
        out.status.success(),
        "feature_logging_check.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn served_rows_are_written_in_feasts_schema() {
    const N: usize = 12;
    let repo = RepoCopy::demo();
    let flat = tempfile::tempdir().expect("dir");
    let dated = tempfile::tempdir().expect("dir");
    let unsampled = tempfile::tempdir().expect("dir");
    add_service(&repo, &stats_service("driver_stats_logged", flat.path()));
    add_service(
        &repo,
        &LoggedService {
            name: "driver_stats_by_date",
            projections: vec![
                ("driver_hourly_stats", vec![("conv_rate", vt::FLOAT)]),
                ("driver_hourly_stats_fresh", vec![("acc_rate", vt::FLOAT)]),
            ],
            sample_rate: 1.0,
            file_path: Some(dated.path()),
            partition_by: vec!["__log_date"],
        },
    );
    let mut never = stats_service("driver_stats_unsampled", unsampled.path());
    never.sample_rate = 0.0;
    add_service(&repo, &never);
    let mut bigquery = stats_service("driver_stats_bigquery", unsampled.path());
    bigquery.file_path = None;
    add_service(&repo, &bigquery);
    enable_logging(&repo, 600, 600, 100_000, 10_000);

    let server = TestServer::demo(&repo).await;
    let mut responses = Vec::new();
    for i in 0..N {
        let resp = server
            .get_online_features(&json!({
                "feature_service": "driver_stats_logged",
                "entities": {"driver_id": LOGGED_IDS},
                "full_feature_names": i % 2 == 0,
            }))
            .await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        responses.push(resp.json());
    }
    for service in [
        "driver_stats_by_date",
        "driver_stats_unsampled",
        "driver_stats_bigquery",
    ] {
        for _ in 0..5 {
            let resp = server
                .get_online_features(&json!({
                    "feature_service": service,
                    "entities": {"driver_id": [1001, 1002]},
                    "full_feature_names": true,
                }))
                .await;
            assert_eq!(resp.status, 200, "{service}");
        }
    }
    let logger = server.feature_logger.clone().expect("logging is on");
    server.stop().await;

    let stats = logger.stats();
    let logged = (N * LOGGED_IDS.len() + 5 * 2) as u64;
    assert_eq!(stats.enqueued_rows, logged, "{stats:?}");
    assert_eq!(stats.dropped_rows, 0, "{stats:?}");
    assert_eq!(stats.written_rows, logged, "{stats:?}");
    assert_eq!(stats.published_rows, logged, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");

    // Flat destination: Feast's `<uuid hex>-<i>.parquet` files, nothing left staged.
    let files = log_files(flat.path(), false);
    assert!(!files.is_empty());
    assert_eq!(files, log_files(flat.path(), true), "staged files left");
    for f in &files {
        assert_eq!(f.parent(), Some(flat.path()));
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let (id, rest) = name.split_once('-').expect("uuid-i.parquet");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert!(
            rest.trim_end_matches(".parquet").parse::<u32>().is_ok(),
            "{name}"
        );
    }
    let batches = all_rows(&files);
    let mut want = vec![("driver_id".to_string(), DataType::Int64)];
    for (f, t) in [
        ("conv_rate", DataType::Float32),
        ("acc_rate", DataType::Float32),
        ("avg_daily_trips", DataType::Int64),
    ] {
        let full = format!("driver_hourly_stats__{f}");
        want.push((full.clone(), t));
        // timestamp[s] is stored as timestamp[ms], as pyarrow stores it.
        want.push((
            format!("{full}__timestamp"),
            ts(TimeUnit::Millisecond, true),
        ));
        want.push((format!("{full}__status"), DataType::Int32));
    }
    want.push(("__log_timestamp".into(), ts(TimeUnit::Microsecond, true)));
    want.push(("__log_date".into(), DataType::Date32));
    want.push(("__request_id".into(), DataType::Utf8));
    assert_eq!(schema_of(&batches), want);
    check_values(&batches, &responses);
    python_check(
        repo.path(),
        "driver_stats_logged",
        flat.path(),
        N * LOGGED_IDS.len(),
    );

    // Partitioned by __log_date: `<dest>/2026-11-23/<uuid>-0.parquet`, the partition
    // column kept in the directory name only (as pyarrow writes it).
    let files = log_files(dated.path(), false);
    assert!(!files.is_empty());
    for f in &files {
        assert_eq!(
            f.parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str()),
            Some("2026-11-23")
        );
    }
    let batches = all_rows(&files);
    let names: Vec<String> = schema_of(&batches).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "driver_id",
            "driver_hourly_stats__conv_rate",
            "driver_hourly_stats__conv_rate__timestamp",
            "driver_hourly_stats__conv_rate__status",
            "driver_hourly_stats_fresh__acc_rate",
            "driver_hourly_stats_fresh__acc_rate__timestamp",
            "driver_hourly_stats_fresh__acc_rate__status",
            "__log_timestamp",
            "__request_id",
        ]
    );
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 10);
    python_check(repo.path(), "driver_stats_by_date", dated.path(), 10);

    assert!(log_files(unsampled.path(), true).is_empty());
}

/// Every logged row against the HTTP response it was served in.
fn check_values(batches: &[RecordBatch], responses: &[Json]) {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push((b, r));
        }
    }
    let per = LOGGED_IDS.len();
    assert_eq!(rows.len(), responses.len() * per);
    let day = i32::try_from(PINNED_NOW / 86_400).expect("day");
    let mut ids = std::collections::BTreeSet::new();
    for (i, body) in responses.iter().enumerate() {
        let full = i % 2 == 0;
        let request_id = {
            let (b, r) = rows[i * per];
            b.column_by_name("__request_id")
                .expect("id")
                .as_string::<i32>()
                .value(r)
                .to_string()
        };
        assert_eq!(request_id.len(), 36);
        assert_eq!(request_id.as_bytes()[14], b'4', "{request_id}");
        assert!(ids.insert(request_id.clone()), "request ids are unique");
        for (j, &id) in LOGGED_IDS.iter().enumerate() {
            let (b, r) = rows[i * per + j];
            let col = |n: &str| b.column_by_name(n).unwrap_or_else(|| panic!("no {n}"));
            assert_eq!(col("driver_id").as_primitive::<Int64Type>().value(r), id);
            for f in ["conv_rate", "acc_rate", "avg_daily_trips"] {
                let logged = format!("driver_hourly_stats__{f}");
                let served = column(body, &if full { logged.clone() } else { f.to_string() });
                let value = col(&logged);
                match &served["values"][j] {
                    Json::Null => assert!(value.is_null(r), "{logged}[{i},{j}]"),
                    v if f == "avg_daily_trips" => {
                        assert_eq!(Some(value.as_primitive::<Int64Type>().value(r)), v.as_i64())
                    }
                    v => {
                        let got = f64::from(value.as_primitive::<Float32Type>().value(r));
                        let want = v.as_f64().expect("number");
                        assert!((got - want).abs() < 1e-6, "{logged}: {got} vs {want}");
                    }
                }
                let status = col(&format!("{logged}__status"))
                    .as_primitive::<Int32Type>()
                    .value(r);
                let want_status = match served["statuses"][j].as_str() {
                    Some("PRESENT") => 1,
                    Some("NULL_VALUE") => 2,
                    Some("NOT_FOUND") => 3,
                    Some("OUTSIDE_MAX_AGE") => 4,
                    other => panic!("status {other:?}"),
                };
                assert_eq!(status, want_status, "{logged}[{i},{j}]");
                let event = col(&format!("{logged}__timestamp"))
                    .as_primitive::<TimestampMillisecondType>()
                    .value(r);
                let want_event = served["event_timestamps"][j]
                    .as_str()
                    .and_then(EventTime::parse_datetime)
                    .expect("timestamp");
                assert_eq!(event, want_event.seconds * 1000, "{logged}[{i},{j}]");
            }
            assert_eq!(
                col("__log_timestamp")
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(r),
                PINNED_NOW as i64 * 1_000_000
            );
            assert_eq!(col("__log_date").as_primitive::<Date32Type>().value(r), day);
            assert_eq!(
                col("__request_id").as_string::<i32>().value(r),
                request_id,
                "one request id per request"
            );
        }
    }
}

#[tokio::test]
async fn a_full_queue_drops_rows_and_counts_them_but_serves_every_request() {
    let repo = RepoCopy::demo();
    let plain_repo = RepoCopy::demo();
    let dest = tempfile::tempdir().expect("dir");
    for r in [&repo, &plain_repo] {
        add_service(r, &stats_service("driver_stats_logged", dest.path()));
    }
    // Three rows of room, no waiting for room.
    enable_logging(&repo, 600, 600, 3, 0);
    let server = Arc::new(TestServer::demo(&repo).await);
    let plain = TestServer::demo(&plain_repo).await;
    assert!(plain.feature_logger.is_none());

    let small =
        json!({"feature_service": "driver_stats_logged", "entities": {"driver_id": [1001, 1002]}});
    let big = json!({"feature_service": "driver_stats_logged", "entities": {"driver_id": [1001, 1002, 1003, 1004]}});
    let (small_want, big_want) = (
        plain.get_online_features(&small).await.json(),
        plain.get_online_features(&big).await.json(),
    );
    let mut attempted = 0;
    for _ in 0..10 {
        for (body, want, rows) in [(&small, &small_want, 2), (&big, &big_want, 4)] {
            let resp = server.get_online_features(body).await;
            assert_eq!(resp.status, 200);
            assert_eq!(&resp.json(), want, "logging changes nothing in the answer");
            attempted += rows;
        }
    }
    // A concurrent burst: some rows may find the queue full.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let server = server.clone();
        let (small, want) = (small.clone(), small_want.clone());
        tasks.spawn(async move {
            for _ in 0..10 {
                let resp = server.get_online_features(&small).await;
                assert_eq!(resp.status, 200);
                assert_eq!(resp.json(), want);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("burst task");
    }
    attempted += 16 * 10 * 2;
    let logger = server.feature_logger.clone().expect("logging is on");
    let server = Arc::into_inner(server).expect("one owner");
    server.stop().await;
    plain.stop().await;

    let stats = logger.stats();
    assert!(stats.dropped_rows >= 10 * 4, "{stats:?}");
    assert_eq!(
        stats.enqueued_rows + stats.dropped_rows,
        attempted,
        "{stats:?}"
    );
    assert_eq!(stats.written_rows, stats.enqueued_rows, "{stats:?}");
    assert_eq!(stats.published_rows, stats.enqueued_rows, "{stats:?}");
    assert_eq!(count_rows(dest.path(), true) as u64, stats.enqueued_rows);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn kill_9_leaves_only_whole_files_and_loses_at_most_the_last_write_interval() {
    let bin = tokio::task::spawn_blocking(feast_server_binary)
        .await
        .expect("build");
    let repo = RepoCopy::demo();
    let dest = tempfile::tempdir().expect("dir");
    add_service(&repo, &stats_service("driver_stats_logged", dest.path()));
    // Write every second; never flush during the run.
    enable_logging(&repo, 1, 600, 100_000, 10_000);
    let port = free_port();
    let mut child = Command::new(&bin)
        .arg("-c")
        .arg(repo.path())
        .args(["serve", "-h", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn feast-server");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let up = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = json!({"feature_service": "driver_stats_logged", "entities": {"driver_id": [1001, 1002, 9999]}})
        .to_string();
    let start = Instant::now();
    let mut served = Vec::new();
    while start.elapsed() < Duration::from_millis(3500) {
        let r = client
            .post(format!("{base}/get-online-features"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        served.push(Instant::now());
    }
    child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = child.wait();

    // Every file on disk, published Parquet or staged Arrow IPC, is whole.
    let files = log_files(dest.path(), true);
    assert!(
        !files.is_empty(),
        "rows older than the write interval are on disk"
    );
    let on_disk = count_rows(dest.path(), true);
    // Rows served more than the write interval (1 s) plus 1 s of slack before the
    // kill must be on disk; later ones may be lost.
    let must = served
        .iter()
        .filter(|t| killed.duration_since(**t) > Duration::from_secs(2))
        .count()
        * 3;
    assert!(
        on_disk >= must && on_disk <= served.len() * 3 && on_disk.is_multiple_of(3),
        "on disk {on_disk}, served {} rows, {must} older than 2 s",
        served.len() * 3
    );

    // The next start publishes what was staged, exactly once.
    let app = App::build(repo.config(), test_options())
        .await
        .expect("restart");
    app.stop().await;
    assert_eq!(count_rows(dest.path(), false), on_disk);
    assert_eq!(
        log_files(dest.path(), true),
        log_files(dest.path(), false),
        "nothing left staged"
    );
}

/// Requests served over gRPC are logged like HTTP ones, with the same values.
#[tokio::test]
async fn grpc_requests_are_logged_too() {
    use feast_server::parse_request;
    use feast_server::proto::feast::serving::serving_service_client::ServingServiceClient;
    use feast_server::to_proto_request;
    use feast_server_e2e::Api;

    let repo = RepoCopy::demo();
    let dest = tempfile::tempdir().expect("dir");
    add_service(&repo, &stats_service("driver_stats_logged", dest.path()));
    enable_logging(&repo, 600, 600, 10_000, 1_000_000);
    let server = TestServer::start_with(repo.config(), test_options(), Api::Grpc, None).await;
    let mut client = ServingServiceClient::connect(format!("http://127.0.0.1:{}", server.port))
        .await
        .expect("gRPC connect");
    let body = br#"{"feature_service": "driver_stats_logged", "entities": {"driver_id": [1001, 1002, 1003]}}"#;
    for _ in 0..4 {
        let req = to_proto_request(parse_request(body).expect("parses"));
        let resp = client.get_online_features(req).await.expect("served");
        assert_eq!(resp.into_inner().results.len(), 1 + STATS_FEATURES.len());
    }
    let logger = server.feature_logger.clone().expect("logging is on");
    server.stop().await;
    let stats = logger.stats();
    assert_eq!(stats.enqueued_rows, 4 * 3, "{stats:?}");
    assert_eq!(stats.published_rows, 4 * 3, "{stats:?}");
    let batches = all_rows(&log_files(dest.path(), false));
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 4 * 3);
    let conv = batches[0]
        .column_by_name("driver_hourly_stats__conv_rate")
        .expect("conv_rate column");
    assert_eq!(conv.null_count(), 0, "values were logged, not nulls");
}

#[tokio::test]
async fn request_data_is_logged_as_the_on_demand_view_got_it() {
    let (repo, _plugins) = RepoCopy::demo_with_plugins();
    let dest = tempfile::tempdir().expect("dir");
    add_service(
        &repo,
        &LoggedService {
            name: "odfv_logged",
            projections: vec![(
                "transformed_conv_rate",
                vec![("conv_rate_plus_val1", vt::DOUBLE)],
            )],
            sample_rate: 1.0,
            file_path: Some(dest.path()),
            partition_by: Vec::new(),
        },
    );
    enable_logging(&repo, 600, 600, 100_000, 10_000);
    let server = TestServer::demo(&repo).await;
    // `val_to_add` is both in `entities` and in `request_context`: request data is
    // taken from `request_context`, and "5" (a string) is served as the INT64 5.
    let resp = server
        .get_online_features(&json!({
            "feature_service": "odfv_logged",
            "entities": {"driver_id": [1001, 1002], "val_to_add": [100, 200], "val_to_add_2": [1, 2]},
            "request_context": {"val_to_add": ["5", 6]},
        }))
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let served = resp.column("conv_rate_plus_val1")["values"].clone();
    server.stop().await;

    let batches = all_rows(&log_files(dest.path(), false));
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    let b = &batches[0];
    let ints = |name: &str| -> Vec<Option<i64>> {
        let col = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no {name}"));
        let col = col
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap_or_else(|| panic!("{name} is {}", col.data_type()));
        col.iter().collect()
    };
    assert_eq!(ints("val_to_add"), [Some(5), Some(6)], "as served, coerced");
    assert_eq!(ints("val_to_add_2"), [Some(1), Some(2)]);
    let logged = b
        .column_by_name("transformed_conv_rate__conv_rate_plus_val1")
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow_array::Float64Array>()
                .cloned()
        })
        .expect("the output, as DOUBLE");
    let logged: Vec<Json> = logged.iter().map(|v| json!(v)).collect();
    assert_eq!(Json::Array(logged), served);
}
