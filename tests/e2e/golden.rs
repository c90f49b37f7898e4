//! Every golden case captured from `feast serve` 0.67.0, replayed against our server on
//! each store: success cases must give the same columns (matched by name), error cases
//! our documented status and Feast error class.

use feast_server_e2e::plugins::{
    PluginDir, built_js_plugins, built_plugins, built_python_plugins, heavy_plugin_test,
    wasm_plugins_yaml,
};
use feast_server_e2e::postgres_server::{PostgresServer, wasm_postgres_feature_store_yaml};
use feast_server_e2e::redis_server::{
    RedisCluster, RedisServer, load_feast_dump, redis_feature_store_yaml,
    wasm_redis_feature_store_yaml,
};
use feast_server_e2e::{
    GoldenCase, RepoCopy, TestServer, compare_columns, golden_cases, workspace_root,
};
use serde_json::{Value as Json, json};

/// Error cases where this server deliberately answers differently from Feast's
/// Python server (which gives 500 or 422): (case, status, Feast error class).
/// `None` as class means a non-Feast body (FastAPI's `{"detail": ...}`).
const OUR_ERRORS: &[(&str, u16, Option<&str>)] = &[
    ("a5_two_views_fresh", 400, Some("FeatureNameCollisionError")),
    (
        "b4_feature_service_missing_request_data",
        400,
        Some("RequestDataNotFoundInEntityRowsException"),
    ),
    (
        "c3_odfv_missing_request_data",
        400,
        Some("RequestDataNotFoundInEntityRowsException"),
    ),
    (
        "b5_unknown_feature_service",
        404,
        Some("FeatureServiceNotFoundException"),
    ),
    ("d3_empty_entity_list", 400, Some("FeastError")),
    ("e1_bad_json", 400, Some("FeastError")),
    (
        "e2_unknown_feature",
        404,
        Some("FeastObjectNotFoundException"),
    ),
    ("e3_unknown_view", 404, Some("FeatureViewNotFoundException")),
    ("e4_missing_entity_key", 400, Some("FeastError")),
    ("e6_no_entities_field", 400, Some("FeastError")),
    ("e7_no_features", 400, Some("FeastError")),
    (
        "e8_feature_without_view",
        400,
        Some("InvalidFeaturesParameterType"),
    ),
    ("e9_ragged_entities", 400, Some("FeastError")),
    ("e10_entities_not_list", 400, Some("FeastError")),
    ("e12_get_method", 405, None),
    ("e13_empty_body", 400, Some("FeastError")),
    ("e14_unknown_path", 404, None),
    ("e15_features_wrong_type", 400, Some("FeastError")),
    ("e17_entity_non_numeric_string", 400, Some("FeastError")),
    ("e18_entity_null", 400, Some("FeastError")),
];

/// Cases Feast rejects that this server serves (any content type carrying JSON is
/// accepted), with the golden case holding the same request Feast did answer.
const ACCEPTED_BY_US: &[(&str, &str)] = &[("e11_text_plain", "e19_extra_unknown_field")];

/// Outputs of the demo's on-demand feature views (Feast reports them PRESENT even when null).
const ODFV_OUTPUTS: &[&str] = &["conv_rate_plus_val1", "conv_rate_plus_val2"];

/// Feast's Redis store answers PRESENT + null (epoch timestamp) for a missing entity;
/// this server answers NOT_FOUND on every store (as Feast's SQLite store and Go server do).
fn with_our_missing_entity_semantics(mut body: Json) -> Json {
    let names: Vec<String> = body["metadata"]["feature_names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let join_keys = ["driver_id"];
    for (i, name) in names.iter().enumerate() {
        let short = name.rsplit("__").next().unwrap_or(name);
        if join_keys.contains(&name.as_str()) || ODFV_OUTPUTS.contains(&short) {
            continue;
        }
        let col = &mut body["results"][i];
        let n = col["values"].as_array().map_or(0, Vec::len);
        for row in 0..n {
            if col["values"][row].is_null() && col["statuses"][row] == "PRESENT" {
                col["statuses"][row] = json!("NOT_FOUND");
            }
        }
    }
    body
}

/// Replays every case of `store`'s golden directory; returns the mismatches.
async fn replay(server: &TestServer, store: &str) -> Vec<String> {
    let cases = golden_cases(store);
    assert_eq!(cases.len(), 45, "all captured cases are present");
    let mut failures = Vec::new();
    let (mut same, mut errors) = (0, 0);
    for case in &cases {
        let resp = server.send_case(case).await;
        let name = case.name.as_str();
        if let Some(&(_, status, class)) = OUR_ERRORS.iter().find(|(n, ..)| *n == name) {
            errors += 1;
            if resp.status != status {
                failures.push(format!(
                    "{name}: status {} (expected {status}): {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                ));
            } else if let Some(class) = class {
                let (got, message) = resp.feast_error();
                if got != class || message.is_empty() {
                    failures.push(format!("{name}: class {got} (expected {class}): {message}"));
                }
            }
            continue;
        }
        let accepted = ACCEPTED_BY_US.iter().find(|(n, _)| *n == name);
        if case.status != 200 && accepted.is_none() {
            failures.push(format!(
                "{name}: Feast answered {} and this case is not classified",
                case.status
            ));
            continue;
        }
        same += 1;
        if resp.status != 200 {
            failures.push(format!(
                "{name}: status {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
            continue;
        }
        if resp.content_type.as_deref() != Some("application/json") && !resp.body.is_empty() {
            failures.push(format!("{name}: content type {:?}", resp.content_type));
        }
        let expected = match accepted {
            Some((_, same_request)) => find(&cases, same_request).and_then(|c| c.response.clone()),
            None => case.response.clone(),
        };
        match expected {
            Some(expected) => {
                let expected = with_our_missing_entity_semantics(expected);
                for d in compare_columns(&expected, &resp.json()) {
                    failures.push(format!("{name}: {d}"));
                }
            }
            None if !resp.body.is_empty() => {
                failures.push(format!("{name}: expected an empty body"))
            }
            None => {}
        }
    }
    assert_eq!((same, errors), (25, 20), "case counts");
    failures
}

fn find<'a>(cases: &'a [GoldenCase], name: &str) -> Option<&'a GoldenCase> {
    cases.iter().find(|c| c.name == name)
}

fn conv_rate_plugin() -> PluginDir {
    PluginDir::with(&[(
        built_plugins().conv_rate.as_path(),
        "transformed_conv_rate.wasm",
    )])
}

#[tokio::test]
async fn sqlite_golden_cases() {
    let (repo, _plugins) = RepoCopy::demo_with_plugins();
    let server = TestServer::demo(&repo).await;
    let failures = replay(&server, "sqlite").await;
    server.stop().await;
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

/// The golden cases with the demo's ODFVs computed by another plugin (`file`,
/// named `name`): the answers of the Rust plugin and Feast.
async fn replay_with_plugin(file: &std::path::Path, name: &str) {
    let repo = RepoCopy::demo();
    let plugins = PluginDir::with(&[(file, "conv_rate.wasm")]);
    repo.append_config(&wasm_plugins_yaml(plugins.path(), ""));
    let server = TestServer::demo(&repo).await;
    let failures = replay(&server, "sqlite").await;
    let listed = server.send("GET", "/plugins", None, b"").await.json();
    server.stop().await;
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
    assert_eq!(listed[0]["name"], name, "{listed}");
    assert!(listed[0]["calls"].as_u64().unwrap_or(0) >= 5, "{listed}");
}

/// Through the Python plugin (`plugins/python/transformed_conv_rate`).
#[tokio::test]
async fn sqlite_golden_cases_with_the_python_plugin() {
    let _heavy = heavy_plugin_test().await;
    replay_with_plugin(&built_python_plugins().0, "transformed-conv-rate-py").await;
}

/// Through the JavaScript plugin (`plugins/js/transformed_conv_rate`).
#[tokio::test]
async fn sqlite_golden_cases_with_the_javascript_plugin() {
    let _heavy = heavy_plugin_test().await;
    replay_with_plugin(&built_js_plugins().0, "transformed-conv-rate-js").await;
}

/// Replays the Redis golden cases on a server of the demo repository whose
/// `online_store` section is `store_yaml` (the demo's ODFV plugin loaded).
async fn replay_redis(store_yaml: &str) {
    replay_store(store_yaml, "redis").await;
}

/// Replays the golden cases of `golden` on a demo repo whose store is `store_yaml`.
async fn replay_store(store_yaml: &str, golden: &str) {
    replay_store_with_plugin(store_yaml, golden, conv_rate_plugin()).await;
}

/// [`replay_store`] with the demo's ODFVs computed by the plugins of `plugins`.
async fn replay_store_with_plugin(store_yaml: &str, golden: &str, plugins: PluginDir) {
    let repo = RepoCopy::demo();
    repo.write_config(store_yaml);
    repo.append_config(&wasm_plugins_yaml(plugins.path(), ""));
    let server = TestServer::demo(&repo).await;
    let failures = replay(&server, golden).await;
    server.stop().await;
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn redis_standalone_golden_cases() {
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    replay_redis(&redis_feature_store_yaml(
        &format!("127.0.0.1:{}", redis.port),
        "redis",
    ))
    .await;
}

#[tokio::test]
async fn redis_cluster_golden_cases() {
    let cluster = RedisCluster::start(3, 0);
    load_feast_dump(&mut cluster.connection());
    replay_redis(&redis_feature_store_yaml(
        &cluster.connection_string(),
        "redis_cluster",
    ))
    .await;
}

/// The Redis golden cases through the store component `plugins/redis-store` (Feast's
/// Redis layout over the component's own TCP connection): the same answers as the
/// native store.
#[tokio::test]
async fn redis_store_component_golden_cases() {
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    replay_redis(&wasm_redis_feature_store_yaml(
        &built_plugins().redis_store,
        &format!("127.0.0.1:{}", redis.port),
        "",
    ))
    .await;
}

/// Components built against `feast:plugin@0.1.0` (before the list column types;
/// `tests/fixtures/components-0.1.0`) keep loading and serving: the Redis golden cases
/// through the 0.1.0 store component, the demo's ODFVs computed by the 0.1.0 plugin.
#[tokio::test]
async fn components_of_wit_0_1_0_answer_the_redis_golden_cases() {
    let old = workspace_root().join("tests/fixtures/components-0.1.0");
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    replay_store_with_plugin(
        &wasm_redis_feature_store_yaml(
            &old.join("redis_store.wasm"),
            &format!("127.0.0.1:{}", redis.port),
            "",
        ),
        "redis",
        PluginDir::with(&[(&old.join("transformed_conv_rate.wasm"), "conv_rate.wasm")]),
    )
    .await;
}

/// The golden cases through the store component `plugins/postgres-store` (Feast's
/// PostgreSQL layout over PostgreSQL's wire protocol, from inside the sandbox), on the
/// tables `feast materialize` wrote: the same answers as the native stores.
#[tokio::test]
async fn postgres_store_component_golden_cases() {
    let pg = PostgresServer::start();
    pg.create_database("feast", "feast", "feast-pw");
    pg.load_feast_dump("feast", "feast");
    replay_store(
        &wasm_postgres_feature_store_yaml(
            &built_plugins().postgres_store,
            pg.port,
            "feast",
            "feast",
            "feast-pw",
            "",
        ),
        "postgres",
    )
    .await;
}
