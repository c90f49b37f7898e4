//! The write path against real stores: pushes and writes are validated whole and
//! change nothing when invalid; written rows are read back; Redis keeps the newer row
//! and sets the TTL; an outage is a 503 and writes resume; materialization writes the
//! window and records it in the registry; offline pushes land in the Parquet source.
//! (Byte-for-byte equality with the real Feast is `tests/python/write_parity.py`.)

use std::path::Path;
use std::time::Duration;

use feast_server::proto::feast::core::Registry;
use feast_server_e2e::redis_server::{RedisServer, redis_feature_store_yaml};
use feast_server_e2e::{RepoCopy, TestServer, test_options};
use prost::Message;
use serde_json::{Value as Json, json};

/// Event times inside the demo views' 1-day ttl at the pinned clock (2026-11-23).
const T1: &str = "2026-11-22T20:00:00Z";
const T2: &str = "2026-11-22T21:00:00.250Z";

/// A dataframe for the demo's push source (view driver_hourly_stats_fresh).
fn push_df(ids: &[i64], conv: &[Json], at: &str) -> Json {
    let n = ids.len();
    json!({
        "driver_id": ids,
        "event_timestamp": vec![at; n],
        "created": vec![at; n],
        "conv_rate": conv,
        "acc_rate": vec![0.5; n],
        "avg_daily_trips": vec![10; n],
        "driver_metadata": vec![json!({"vehicle_type": "suv", "rating": "4.9"}); n],
        "driver_config": vec![json!("{\"max_distance_km\": 10}"); n],
        "driver_profile": vec![json!({"name": "pushed", "age": "30"}); n],
    })
}

async fn post(server: &TestServer, path: &str, body: &Json) -> feast_server_e2e::Response {
    server
        .send(
            "POST",
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .await
}

async fn conv_rates(server: &TestServer, view: &str, ids: &[i64]) -> (Json, Json) {
    let resp = server
        .get_online_features(
            &json!({"features": [format!("{view}:conv_rate")], "entities": {"driver_id": ids}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let col = resp.column("conv_rate");
    (col["values"].clone(), col["statuses"].clone())
}

/// Every row of a SQLite online table.
fn table(repo: &Path, name: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(repo.join("data/online_store.db")).expect("open");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT hex(entity_key), feature_name, hex(value), value_text, event_ts, created_ts FROM \"{name}\" ORDER BY 1, 2"
        ))
        .expect("select");
    stmt.query_map([], |r| {
        (0..6)
            .map(|i| r.get_ref(i).map(|v| format!("{v:?}")))
            .collect::<Result<Vec<_>, _>>()
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[tokio::test]
async fn pushes_are_checked_whole_and_an_invalid_one_writes_nothing() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let before = table(repo.path(), "repo_driver_hourly_stats_fresh");
    let mut df = push_df(
        &[9001, 9002, 9003],
        &[json!(0.1), json!(0.2), json!(0.3)],
        T1,
    );
    df["avg_daily_trips"] = json!([1, "many", 3]);
    let cases = [
        (
            json!({"push_source_name": "driver_stats_push_source", "df": df}),
            400,
            "FeastError",
            "`df.avg_daily_trips[1]`",
        ),
        (
            json!({"push_source_name": "nope", "df": push_df(&[1], &[json!(0.1)], T1)}),
            404,
            "PushSourceNotFoundException",
            "nope",
        ),
        (
            json!({"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1, 2], "conv_rate": [0.1]}}),
            400,
            "FeastError",
            "same length",
        ),
        (
            json!({"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1], "conv_rate": [0.1]}}),
            400,
            "FeastError",
            "acc_rate",
        ),
        (
            json!({"push_source_name": "driver_stats_push_source", "df": push_df(&[1], &[json!(0.1)], "yesterday")}),
            400,
            "FeastError",
            "`df.event_timestamp[0]`",
        ),
        (
            json!({"push_source_name": "driver_stats_push_source", "to": "elsewhere", "df": {}}),
            400,
            "FeastError",
            "`to`",
        ),
        (
            json!({"feature_view_name": "nope", "df": {}}),
            404,
            "FeastObjectNotFoundException",
            "nope",
        ),
    ];
    for (body, status, class, words) in cases {
        let path = if body.get("feature_view_name").is_some() {
            "/write-to-online-store"
        } else {
            "/push"
        };
        let resp = post(&server, path, &body).await;
        let (got, message) = resp.feast_error();
        assert_eq!(resp.status, status, "{body}: {message}");
        assert_eq!(got, class, "{message}");
        assert!(message.contains(words), "{message} should name {words}");
    }
    assert_eq!(
        before,
        table(repo.path(), "repo_driver_hourly_stats_fresh"),
        "nothing was written"
    );
    server.stop().await;
}

#[tokio::test]
async fn pushed_and_written_rows_are_served() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let push = post(
        &server,
        "/push",
        &json!({"push_source_name": "driver_stats_push_source",
                "df": push_df(&[9001, 1001], &[json!(0.25), json!(0.75)], T2)}),
    )
    .await;
    assert_eq!(
        (push.status, push.body.len()),
        (200, 0),
        "Feast's empty 200"
    );
    let (values, statuses) = conv_rates(&server, "driver_hourly_stats_fresh", &[9001, 1001]).await;
    assert_eq!(values, json!([0.25, 0.75]));
    assert_eq!(statuses, json!(["PRESENT", "PRESENT"]));
    // The push source feeds only the fresh view.
    let (values, _) = conv_rates(&server, "driver_hourly_stats", &[9001]).await;
    assert_eq!(values, json!([null]));

    let write = post(
        &server,
        "/write-to-online-store",
        &json!({"feature_view_name": "driver_hourly_stats",
                "df": push_df(&[9001], &[json!(0.5)], T1)}),
    )
    .await;
    assert_eq!(
        write.status,
        200,
        "{}",
        String::from_utf8_lossy(&write.body)
    );
    assert_eq!(write.body, b"null");
    let (values, _) = conv_rates(&server, "driver_hourly_stats", &[9001]).await;
    assert_eq!(values, json!([0.5]));
    // Two rows of one entity: the latest is kept, wherever it is in the dataframe.
    let mut df = push_df(&[9002, 9002], &[json!(0.125), json!(0.5)], T2);
    df["event_timestamp"] = json!([T2, T1]);
    let push = post(
        &server,
        "/push",
        &json!({"push_source_name": "driver_stats_push_source", "df": df}),
    )
    .await;
    assert_eq!(push.status, 200);
    let (values, _) = conv_rates(&server, "driver_hourly_stats_fresh", &[9002]).await;
    assert_eq!(values, json!([0.125]));
    server.stop().await;
}

#[tokio::test]
async fn redis_keeps_the_newer_row_sets_the_ttl_and_recovers_from_an_outage() {
    let mut redis = RedisServer::start();
    let repo = RepoCopy::demo();
    let yaml = redis_feature_store_yaml(&format!("127.0.0.1:{}", redis.port), "redis").replace(
        "    connection_string:",
        "    key_ttl_seconds: 3600\n    connection_string:",
    );
    repo.write_config(&yaml);
    let server = TestServer::start(repo.config(), test_options()).await;
    let body = |conv: f64, at: &str| json!({"push_source_name": "driver_stats_push_source", "df": push_df(&[9001], &[json!(conv)], at)});
    assert_eq!(post(&server, "/push", &body(0.25, T2)).await.status, 200);
    // Older than what is stored: left out, as Feast leaves it out.
    assert_eq!(post(&server, "/push", &body(0.75, T1)).await.status, 200);
    let (values, _) = conv_rates(&server, "driver_hourly_stats_fresh", &[9001]).await;
    assert_eq!(values, json!([0.25]));
    let mut conn = redis.connection();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).expect("keys");
    let key = keys
        .iter()
        .find(|k| k.windows(2).any(|w| w == [0x29, 0x23]))
        .expect("the pushed entity's hash");
    let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).expect("ttl");
    assert!((3500..=3600).contains(&ttl), "key_ttl_seconds: {ttl}");

    redis.stop();
    let down = post(&server, "/push", &body(0.5, "2026-11-22T22:00:00Z")).await;
    assert_eq!(down.status, 503, "{}", String::from_utf8_lossy(&down.body));
    redis.restart();
    let mut ok = 0;
    for _ in 0..50 {
        ok = post(&server, "/push", &body(0.5, "2026-11-22T22:00:00Z"))
            .await
            .status;
        if ok == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ok, 200, "writes resume without a restart");
    server.stop().await;
}

/// The materialization intervals the registry records for `view`: (start, end) seconds.
fn intervals(repo: &Path, view: &str) -> (Vec<(i64, i64)>, i32, String) {
    let bytes = std::fs::read(repo.join("data/registry.db")).expect("registry");
    let registry = Registry::decode(bytes.as_slice()).expect("decodes");
    let fv = registry
        .feature_views
        .iter()
        .find(|v| v.spec.as_ref().is_some_and(|s| s.name == view))
        .expect("the view");
    let meta = fv.meta.clone().unwrap_or_default();
    let list = meta
        .materialization_intervals
        .iter()
        .map(|i| {
            (
                i.start_time.as_ref().map_or(0, |t| t.seconds),
                i.end_time.as_ref().map_or(0, |t| t.seconds),
            )
        })
        .collect();
    (list, meta.state, registry.version_id)
}

#[tokio::test]
async fn materialization_writes_the_window_and_records_it_in_the_registry() {
    let repo = RepoCopy::demo();
    {
        let conn =
            rusqlite::Connection::open(repo.path().join("data/online_store.db")).expect("open");
        conn.execute_batch(
            "DELETE FROM repo_driver_hourly_stats; DELETE FROM repo_driver_hourly_stats_fresh;",
        )
        .expect("emptied");
    }
    let (before, _, version) = intervals(repo.path(), "driver_hourly_stats");
    let server = TestServer::demo(&repo).await;
    let (values, _) = conv_rates(&server, "driver_hourly_stats", &[1001, 1002]).await;
    assert_eq!(values, json!([null, null]), "emptied");
    let resp = post(
        &server,
        "/materialize",
        &json!({"start_ts": "2026-11-20T00:00:00Z", "end_ts": "2026-11-23T00:00:00Z", "feature_views": ["driver_hourly_stats"]}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.body, b"null");
    let (values, statuses) = conv_rates(&server, "driver_hourly_stats", &[1001, 1002]).await;
    assert!(
        values
            .as_array()
            .is_some_and(|v| v.iter().all(Json::is_number)),
        "{values}"
    );
    assert_eq!(statuses, json!(["PRESENT", "PRESENT"]));
    let (after, state, new_version) = intervals(repo.path(), "driver_hourly_stats");
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after.last(), Some(&(1_795_132_800, 1_795_392_000)));
    assert_eq!(state, 4, "AVAILABLE_ONLINE");
    assert_ne!(new_version, version);
    // The other views are untouched.
    let (values, _) = conv_rates(&server, "driver_hourly_stats_fresh", &[1001]).await;
    assert_eq!(values, json!([null]));

    // Incremental: from the recorded end; nothing new to write, the interval recorded.
    let table_before = table(repo.path(), "repo_driver_hourly_stats");
    let resp = post(
        &server,
        "/materialize-incremental",
        &json!({"end_ts": "2026-11-23T00:00:00Z", "feature_views": ["driver_hourly_stats"]}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(table_before, table(repo.path(), "repo_driver_hourly_stats"));
    let (after2, ..) = intervals(repo.path(), "driver_hourly_stats");
    assert_eq!(after2.last(), Some(&(1_795_392_000, 1_795_392_000)));

    // Asynchronously: 202, then the rows are there.
    let resp = server
        .send(
            "POST",
            "/materialize?async=true",
            Some("application/json"),
            json!({"start_ts": "2026-11-20T00:00:00Z", "end_ts": "2026-11-23T00:00:00Z", "feature_views": ["driver_hourly_stats_fresh"]})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(resp.status, 202);
    assert_eq!(
        resp.json(),
        json!({"status": "accepted", "feature_views": ["driver_hourly_stats_fresh"]})
    );
    feast_server_e2e::wait_until(
        Duration::from_secs(10),
        "the asynchronous materialization",
        || async {
            conv_rates(&server, "driver_hourly_stats_fresh", &[1001])
                .await
                .0
                != json!([null])
        },
    )
    .await;

    for (body, status, words) in [
        (
            json!({"start_ts": "2026-11-20T00:00:00Z", "end_ts": "2026-11-23T00:00:00Z", "feature_views": ["nope"]}),
            404,
            "nope",
        ),
        (json!({"end_ts": "2026-11-23T00:00:00Z"}), 400, "start_ts"),
        (
            json!({"start_ts": "soon", "end_ts": "2026-11-23T00:00:00Z"}),
            400,
            "start_ts",
        ),
        (
            json!({"start_ts": "2026-11-20T00:00:00Z", "end_ts": "2026-11-23T00:00:00Z", "feature_views": ["driver_quality_labels"]}),
            400,
            "label view",
        ),
    ] {
        let resp = post(&server, "/materialize", &body).await;
        let (_, message) = resp.feast_error();
        assert_eq!(resp.status, status, "{body}: {message}");
        assert!(message.contains(words), "{message}");
    }
    server.stop().await;
}

#[tokio::test]
async fn offline_pushes_land_first_in_the_parquet_source() {
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let source = repo.path().join("data/driver_stats.parquet");
    let rows = |path: &Path| -> (usize, Vec<i64>) {
        let file = std::fs::File::open(path).expect("parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("reader")
            .build()
            .expect("batches");
        let mut n = 0;
        let mut ids = Vec::new();
        for b in reader {
            let b = b.expect("batch");
            n += b.num_rows();
            let col = b
                .column_by_name("driver_id")
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow_array::Int64Array>()
                        .cloned()
                })
                .expect("driver_id");
            ids.extend(col.iter().flatten());
        }
        (n, ids)
    };
    let (before, _) = rows(&source);
    // The dataframe's columns must be the file's.
    let bad = post(
        &server,
        "/push",
        &json!({"push_source_name": "driver_stats_push_source", "to": "offline",
                "df": {"driver_id": [1], "conv_rate": [0.1]}}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.feast_error().1);
    assert_eq!(rows(&source).0, before, "unchanged");
    let resp = post(
        &server,
        "/push",
        &json!({"push_source_name": "driver_stats_push_source", "to": "online_and_offline",
                "df": push_df(&[9101, 9102], &[json!(0.375), json!(0.625)], T2)}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.feast_error().1);
    let (after, ids) = rows(&source);
    assert_eq!(after, before + 2);
    assert_eq!(
        ids[..2],
        [9101, 9102],
        "new rows first, as Feast writes them"
    );
    let (values, _) = conv_rates(&server, "driver_hourly_stats_fresh", &[9101]).await;
    assert_eq!(values, json!([0.375]), "and online");
    server.stop().await;
}

/// Marks the demo's `transformed_conv_rate` as written to the online store, keyed by
/// `driver` (as `write_to_online_store=True, entities=[driver]` registers it).
fn write_odfv_to_store(repo: &RepoCopy) {
    use feast_server::proto::feast::core::FeatureSpecV2;
    let path = repo.path().join("data/registry.db");
    let mut registry =
        Registry::decode(std::fs::read(&path).expect("registry").as_slice()).expect("decodes");
    let odfv = registry
        .on_demand_feature_views
        .iter_mut()
        .filter_map(|o| o.spec.as_mut())
        .find(|s| s.name == "transformed_conv_rate")
        .expect("the demo's ODFV");
    odfv.write_to_online_store = true;
    odfv.entities = vec!["driver".into()];
    odfv.entity_columns = vec![FeatureSpecV2 {
        name: "driver_id".into(),
        value_type: 4,
        ..Default::default()
    }];
    std::fs::write(&path, registry.encode_to_vec()).expect("write registry");
}

#[tokio::test]
async fn on_demand_views_written_to_the_store_are_transformed_on_write() {
    let (repo, _plugins) = RepoCopy::demo_with_plugins();
    write_odfv_to_store(&repo);
    let server = TestServer::demo(&repo).await;
    let outputs = |ids: &[i64]| {
        let body = json!({"features": ["transformed_conv_rate:conv_rate_plus_val1",
                                       "transformed_conv_rate:conv_rate_plus_val2"],
                          "entities": {"driver_id": ids}});
        let server = &server;
        async move {
            let resp = server.get_online_features(&body).await;
            assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
            (
                resp.column("conv_rate_plus_val1")["values"].clone(),
                resp.column("conv_rate_plus_val2")["values"].clone(),
            )
        }
    };
    // Served from the store: nothing written yet.
    assert_eq!(outputs(&[1001]).await.0, json!([null]));
    let resp = post(
        &server,
        "/write-to-online-store",
        &json!({"feature_view_name": "transformed_conv_rate",
                "df": {"driver_id": [1001, 1002], "conv_rate": [0.5, 0.25],
                       "val_to_add": [1, "2"], "val_to_add_2": [10, 20]}}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.feast_error().1);
    assert_eq!(
        outputs(&[1001, 1002]).await,
        (json!([1.5, 2.25]), json!([10.5, 20.25]))
    );

    let missing = post(
        &server,
        "/write-to-online-store",
        &json!({"feature_view_name": "transformed_conv_rate",
                "df": {"driver_id": [1001], "conv_rate": [0.5], "val_to_add": [1]}}),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert!(
        missing.feast_error().1.contains("val_to_add_2"),
        "{}",
        missing.feast_error().1
    );

    // Without the transformation, the dataframe carries the outputs.
    let resp = post(
        &server,
        "/write-to-online-store",
        &json!({"feature_view_name": "transformed_conv_rate", "transform_on_write": false,
                "df": {"driver_id": [1003], "conv_rate_plus_val1": [7.5], "conv_rate_plus_val2": [8.5]}}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.feast_error().1);
    assert_eq!(outputs(&[1003]).await, (json!([7.5]), json!([8.5])));
    server.stop().await;
}
