//! The sandbox, one misbehaviour at a time (plugins/evil): each bad call gets a clear
//! error for that request only, and the next request succeeds. Plus: on-demand views
//! without a plugin answer 501, and `GET /plugins` reports what is loaded.

use std::time::{Duration, Instant};

use feast_server::proto::feast::core::Registry;
use feast_server_e2e::plugins::{PluginDir, built_plugins, wasm_plugins_yaml};
use feast_server_e2e::{RepoCopy, TestServer};
use prost::Message;
use serde_json::json;

const EVIL: &[&str] = &[
    "evil_ok",
    "evil_loop",
    "evil_memory",
    "evil_recursion",
    "evil_panic",
    "evil_file",
    "evil_socket",
    "evil_env",
    "evil_garbage",
    "evil_schema",
    "evil_oversized",
    "evil_rows",
    "evil_error",
    // Only the Python evil plugin implements it.
    "evil_leak",
];

/// The demo registry plus copies of `transformed_conv_rate` named `evil_*`.
pub(crate) fn add_evil_odfvs(repo: &RepoCopy) {
    let path = repo.path().join("data/registry.db");
    let mut reg =
        Registry::decode(std::fs::read(&path).expect("registry").as_slice()).expect("decode");
    let template = reg
        .on_demand_feature_views
        .iter()
        .find(|o| {
            o.spec
                .as_ref()
                .is_some_and(|s| s.name == "transformed_conv_rate")
        })
        .cloned()
        .expect("template ODFV");
    for name in EVIL {
        let mut o = template.clone();
        if let Some(spec) = o.spec.as_mut() {
            spec.name = (*name).to_string();
        }
        reg.on_demand_feature_views.push(o);
    }
    std::fs::write(path, reg.encode_to_vec()).expect("write registry");
}

pub(crate) fn request(odfv: &str) -> serde_json::Value {
    json!({"features": [format!("{odfv}:conv_rate_plus_val1")],
           "entities": {"driver_id": [1001, 1002], "val_to_add": [1, 2], "val_to_add_2": [3, 4]}})
}

#[tokio::test]
async fn every_misbehaviour_fails_only_its_request() {
    let repo = RepoCopy::demo();
    add_evil_odfvs(&repo);
    let plugins = PluginDir::with(&[(built_plugins().evil.as_path(), "evil.wasm")]);
    repo.append_config(&wasm_plugins_yaml(
        plugins.path(),
        "    timeout_ms: 200\n    max_memory_mb: 64\n    max_output_mb: 1\n",
    ));
    let server = TestServer::demo(&repo).await;
    let ok = server.get_online_features(&request("evil_ok")).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(
        ok.column("conv_rate_plus_val1")["values"],
        json!([1.0, 1.0])
    );

    // (ODFV, words the error must contain)
    let cases = [
        ("evil_loop", "timed out after 200ms"),
        ("evil_memory", "memory limit of 64 MiB exceeded"),
        ("evil_recursion", "stack overflow"),
        ("evil_panic", "panicked: evil plugin panics on purpose"),
        ("evil_file", "denied: read /etc/passwd"),
        ("evil_socket", "denied: connect to 127.0.0.1:22"),
        ("evil_env", "denied: read the environment"),
        ("evil_garbage", "not an Arrow IPC stream"),
        ("evil_schema", "invalid output"),
        ("evil_oversized", "exceeds the limit of 1048576 bytes"),
        ("evil_rows", "3 rows for 2 input rows"),
        ("evil_error", "evil plugin rejects its input"),
    ];
    for (odfv, words) in cases {
        let t0 = Instant::now();
        let resp = server.get_online_features(&request(odfv)).await;
        let took = t0.elapsed();
        assert_eq!(
            resp.status,
            500,
            "{odfv}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let (class, message) = resp.feast_error();
        assert_eq!(class, "FeastError");
        assert!(
            message.contains("plugin evil failed on on-demand feature view"),
            "{odfv}: {message}"
        );
        assert!(
            message.contains(words),
            "{odfv}: {message:?} lacks {words:?}"
        );
        assert!(!message.contains("SANDBOX ESCAPE"), "{odfv}: {message}");
        if odfv == "evil_loop" {
            assert!(
                took < Duration::from_millis(1500),
                "the loop was stopped after {took:?}"
            );
        }
        let after = server.get_online_features(&request("evil_ok")).await;
        assert_eq!(after.status, 200, "after {odfv}");
    }

    let status = server.send("GET", "/plugins", None, b"").await;
    let list = status.json();
    let evil = &list[0];
    assert_eq!(evil["name"], "evil");
    assert_eq!(evil["odfvs"].as_array().map(Vec::len), Some(EVIL.len() - 1));
    assert!(evil["errors"].as_u64().unwrap_or(0) >= 12, "{evil}");
    assert!(evil["last_error"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn odfvs_without_a_plugin_answer_501_and_plugins_are_listed() {
    let body = json!({"features": ["transformed_conv_rate:conv_rate_plus_val1"],
                      "entities": {"driver_id": [1001], "val_to_add": [1], "val_to_add_2": [2]}});
    // No plugin directory at all.
    let repo = RepoCopy::demo();
    let server = TestServer::demo(&repo).await;
    let resp = server.get_online_features(&body).await;
    assert_eq!(resp.status, 501);
    assert!(resp.feast_error().1.contains("--plugins DIR"));
    server.stop().await;

    // A directory without a plugin for it.
    let repo = RepoCopy::demo();
    let empty = PluginDir::empty();
    repo.append_config(&wasm_plugins_yaml(empty.path(), ""));
    let server = TestServer::demo(&repo).await;
    let resp = server.get_online_features(&body).await;
    assert_eq!(resp.status, 501);
    assert!(resp.feast_error().1.contains("describe() declares it"));
    assert_eq!(
        server.send("GET", "/plugins", None, b"").await.json(),
        json!([])
    );
    server.stop().await;

    // A directory whose plugin file was refused: the 501 names the file and why.
    let repo = RepoCopy::demo();
    let broken = PluginDir::empty();
    broken.install_bytes(b"not a component", "conv_rate.wasm");
    repo.append_config(&wasm_plugins_yaml(broken.path(), ""));
    let server = TestServer::demo(&repo).await;
    let resp = server.get_online_features(&body).await;
    assert_eq!(resp.status, 501);
    let message = resp.feast_error().1;
    assert!(
        message.contains("conv_rate.wasm was refused: not a valid WebAssembly component"),
        "{message}"
    );
    server.stop().await;

    // The demo's plugin.
    let (repo, _dir) = RepoCopy::demo_with_plugins();
    let server = TestServer::demo(&repo).await;
    let resp = server.get_online_features(&body).await;
    assert_eq!(resp.status, 200);
    let list = server.send("GET", "/plugins", None, b"").await.json();
    let p = &list[0];
    assert_eq!(p["name"], "transformed-conv-rate");
    assert_eq!(p["version"], "0.1.0");
    assert_eq!(p["content_hash"].as_str().map(str::len), Some(64));
    assert_eq!(
        p["calls"], 1,
        "this request only, not the trial call made at load: {p}"
    );
    assert_eq!(p["errors"], 0);
    let mut odfvs: Vec<String> = serde_json::from_value(p["odfvs"].clone()).expect("odfvs");
    odfvs.sort();
    assert_eq!(
        odfvs,
        ["transformed_conv_rate", "transformed_conv_rate_fresh"]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_server_binary_compiles_plugins_in_a_child_process() {
    let plugins = PluginDir::with(&[(&built_plugins().conv_rate, "conv_rate.wasm")]);
    plugins.install_bytes(b"\0asm not really", "broken.wasm");
    let cache = tempfile::tempdir().expect("cache dir");
    let repo = RepoCopy::demo();
    repo.append_config(&format!(
        "wasm_plugins:\n    directory: {}\n    cache_dir: {}\n",
        plugins.path().display(),
        cache.path().display()
    ));
    let opts = feast_server::ServerOptions {
        plugin_compiler: Some(feast_server_e2e::logging::feast_server_binary()),
        ..feast_server_e2e::test_options()
    };
    let server = TestServer::start(repo.config(), opts).await;
    let resp = server
        .get_online_features(&json!({"features": ["transformed_conv_rate:conv_rate_plus_val1"],
                                     "entities": {"driver_id": [1001], "val_to_add": [1], "val_to_add_2": [2]}}))
        .await;
    assert_eq!(resp.status, 200);
    // The child wrote the cache entry the server then loaded.
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "one compiled component in the cache");
    let list = server.send("GET", "/plugins", None, b"").await.json();
    let entry = |file: &str| {
        list.as_array()
            .and_then(|l| {
                l.iter()
                    .find(|p| p["file"].as_str().is_some_and(|f| f.ends_with(file)))
            })
            .cloned()
            .unwrap_or_else(|| panic!("{file} not listed: {list}"))
    };
    assert_eq!(entry("conv_rate.wasm")["compiled_by"], "child_process");
    // A component the compiler refuses is reported with wasmtime's reason.
    let broken = entry("broken.wasm");
    assert!(
        broken["load_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{broken}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let plugins = PluginDir::with(&[(&built_plugins().conv_rate, "conv_rate.wasm")]);
    let cache = tempfile::tempdir().expect("cache dir");
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let repo = RepoCopy::demo();
    repo.append_config(&format!(
        "wasm_plugins:\n    directory: {}\n    cache_dir: {}\n",
        plugins.path().display(),
        cache.path().display()
    ));
    let server = TestServer::start(repo.config(), feast_server_e2e::test_options()).await;
    let resp = server
        .get_online_features(&json!({"features": ["transformed_conv_rate:conv_rate_plus_val1"],
                                     "entities": {"driver_id": [1001], "val_to_add": [1], "val_to_add_2": [2]}}))
        .await;
    assert_eq!(
        resp.status, 200,
        "the plugin is compiled in memory and serves"
    );
    let entries = std::fs::read_dir(cache.path()).expect("cache dir").count();
    assert_eq!(
        entries, 0,
        "nothing is written to (or read from) an untrusted cache"
    );
    let list = server.send("GET", "/plugins", None, b"").await.json();
    assert_eq!(list[0]["compiled_by"], "in_process", "{list}");
    server.stop().await;
}
