//! Online stores as Wasm components, beyond the golden cases (`golden.rs`) and the
//! write-path bytes (`tests/python/write_parity.py --store wasm-redis`): a component
//! that misbehaves fails only its request (a connect outside its allow list fails
//! inside it and reaches nothing; a loop or a silent backend is a 503 within the
//! deadline); a component swapped under load fails no request, and a broken new
//! version is refused; Redis going away and coming back is a 503, then 200, without a
//! restart, as with the native store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use feast_server_e2e::plugins::{PluginDir, built_plugins, wasm_plugins_yaml};
use feast_server_e2e::redis_server::{RedisServer, load_feast_dump, wasm_redis_feature_store_yaml};
use feast_server_e2e::{RepoCopy, TestServer, silent_listener};
use serde_json::json;

fn body(id: i64) -> serde_json::Value {
    json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [id]}})
}

/// A repository whose store is the component `component` (copied into the repo as
/// `store.wasm`), with the shared compile cache.
fn repo_with_component(component: &Path, redis_addr: &str, extra: &str) -> (RepoCopy, PluginDir) {
    let repo = RepoCopy::demo();
    std::fs::copy(component, repo.path().join("store.wasm")).expect("copy the component");
    repo.write_config(&wasm_redis_feature_store_yaml(
        Path::new("store.wasm"),
        redis_addr,
        extra,
    ));
    let plugins = PluginDir::empty();
    repo.append_config(&wasm_plugins_yaml(plugins.path(), ""));
    (repo, plugins)
}

/// Replaces the repo's component atomically.
fn swap_component(repo: &RepoCopy, bytes: &[u8]) {
    let tmp = repo.path().join(".store.wasm.tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, repo.path().join("store.wasm")).expect("rename");
}

async fn store_status(server: &TestServer) -> serde_json::Value {
    let list = server.send("GET", "/plugins", None, b"").await.json();
    list.as_array()
        .and_then(|l| l.iter().find(|p| p["world"] == "online-store").cloned())
        .unwrap_or_else(|| panic!("no online-store entry in {list}"))
}

#[tokio::test]
async fn a_misbehaving_store_component_fails_only_its_request() {
    let (silent, _) = silent_listener();
    let (forbidden, forbidden_hits) = silent_listener();
    let allowed = format!("127.0.0.1:{silent}");
    let extra = format!(
        "    timeout_ms: 500\n    max_memory_mb: 64\n    instances: 2\n    config:\n        forbidden: \"127.0.0.1:{forbidden}\"\n        silent: \"{allowed}\"\n"
    );
    // The evil store's own `config` replaces the redis-store one of the helper.
    let repo = RepoCopy::demo();
    std::fs::copy(&built_plugins().evil_store, repo.path().join("store.wasm")).expect("copy");
    repo.write_config(&format!(
        "project: repo\nregistry: data/registry.db\nprovider: local\nonline_store:\n    type: wasm\n    component: store.wasm\n    allow: [\"{allowed}\"]\n{extra}entity_key_serialization_version: 3\n"
    ));
    let plugins = PluginDir::empty();
    repo.append_config(&wasm_plugins_yaml(plugins.path(), ""));
    let server = TestServer::demo(&repo).await;

    let ok = server.get_online_features(&body(1001)).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.column("conv_rate")["statuses"], json!(["NOT_FOUND"]));

    for (id, status, says) in [
        (1666, 503, "read timed out after 500ms"), // stopped by the epoch deadline
        (1667, 500, "panicked: the evil store panics on purpose"),
        (1668, 500, "cannot connect to 127.0.0.1"),
        (1669, 500, "broke the online-store contract"),
        (1670, 503, "did not return within 500ms"), // waiting on the network: the timer
        (1671, 500, "memory limit of 64 MiB exceeded"),
        (1672, 500, "broke the online-store contract"),
    ] {
        let t0 = Instant::now();
        let resp = server.get_online_features(&body(id)).await;
        let took = t0.elapsed();
        assert_eq!(
            resp.status,
            status,
            "driver {id}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let (_, message) = resp.feast_error();
        assert!(message.contains(says), "driver {id}: {message}");
        assert!(took < Duration::from_secs(5), "driver {id} took {took:?}");
        // The next request is served.
        let next = server.get_online_features(&body(1001)).await;
        assert_eq!(next.status, 200, "after driver {id}");
    }
    assert_eq!(
        forbidden_hits.load(Ordering::SeqCst),
        0,
        "a connection outside the allow list reached its port"
    );
    let status = store_status(&server).await;
    assert_eq!(status["name"], "evil-store");
    assert!(status["errors"].as_u64() >= Some(7), "{status}");
    server.stop().await;
}

#[tokio::test]
async fn reads_sharing_a_call_still_fail_only_their_own_request() {
    // While a read waits on a silent backend, concurrent reads queue behind it and
    // share the next call; one of them makes the component panic: that call fails,
    // each read is made again alone, and only the hostile one fails.
    let (silent, _) = silent_listener();
    let allowed = format!("127.0.0.1:{silent}");
    let repo = RepoCopy::demo();
    std::fs::copy(&built_plugins().evil_store, repo.path().join("store.wasm")).expect("copy");
    repo.write_config(&format!(
        "project: repo\nregistry: data/registry.db\nprovider: local\nonline_store:\n    type: wasm\n    component: store.wasm\n    allow: [\"{allowed}\"]\n    timeout_ms: 700\n    config:\n        silent: \"{allowed}\"\n        forbidden: \"127.0.0.1:9\"\nentity_key_serialization_version: 3\n"
    ));
    let plugins = PluginDir::empty();
    repo.append_config(&wasm_plugins_yaml(plugins.path(), ""));
    let server = Arc::new(TestServer::demo(&repo).await);
    for _ in 0..3 {
        let t0 = Instant::now();
        let hung = {
            let server = server.clone();
            tokio::spawn(async move { server.get_online_features(&body(1670)).await.status })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut reads = Vec::new();
        for id in [1001, 1002, 1667, 1003, 1004, 1005, 1667, 1001] {
            let server = server.clone();
            reads.push((
                id,
                tokio::spawn(async move {
                    let resp = server.get_online_features(&body(id)).await;
                    let message = if resp.status == 200 {
                        String::new()
                    } else {
                        resp.feast_error().1
                    };
                    (resp.status, message)
                }),
            ));
        }
        for (id, read) in reads {
            let (status, message) = read.await.expect("read");
            if id == 1667 {
                assert_eq!(status, 500, "{message}");
                assert!(message.contains("panicked"), "{message}");
            } else {
                assert_eq!(status, 200, "driver {id}: {message}");
            }
        }
        assert_eq!(hung.await.expect("hung read"), 503);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
    Arc::into_inner(server)
        .expect("reads are done")
        .stop()
        .await;
}

#[tokio::test]
async fn a_store_component_is_swapped_under_load_without_a_failed_request() {
    let redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    let addr = format!("127.0.0.1:{}", redis.port);
    let (repo, _plugins) = repo_with_component(
        &built_plugins().redis_store,
        &addr,
        "    poll_interval_ms: 100\n",
    );
    let server = Arc::new(TestServer::demo(&repo).await);
    assert_eq!(store_status(&server).await["name"], "redis-store");

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (server, stop, served) = (server.clone(), stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let resp = server.get_online_features(&body(1001)).await;
                if resp.status != 200 {
                    failures.push(format!(
                        "{} {}",
                        resp.status,
                        String::from_utf8_lossy(&resp.body)
                    ));
                }
                served.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }
    let wait_for = |name: &'static str| {
        let server = server.clone();
        async move {
            // A new component is compiled first: with a cold compiled-code cache, while
            // other tests compile theirs, that alone can take tens of seconds.
            let deadline = Instant::now() + Duration::from_secs(120);
            while store_status(&server).await["name"] != name {
                assert!(Instant::now() < deadline, "{name} was not swapped in");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // To another component and back, then a file that is not a component.
    swap_component(
        &repo,
        &std::fs::read(&built_plugins().evil_store).expect("read"),
    );
    wait_for("evil-store").await;
    swap_component(
        &repo,
        &std::fs::read(&built_plugins().redis_store).expect("read"),
    );
    wait_for("redis-store").await;
    swap_component(&repo, b"not a component");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = store_status(&server).await;
        if status["load_error"].is_string() {
            assert_eq!(
                status["name"], "redis-store",
                "the old version keeps serving"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken file was not noticed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = server.get_online_features(&body(1001)).await;
    assert_eq!(resp.column("conv_rate")["statuses"], json!(["PRESENT"]));

    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.expect("client"));
    }
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(served.load(Ordering::SeqCst) > 20, "too few requests");
    Arc::into_inner(server)
        .expect("clients are done")
        .stop()
        .await;
}

#[tokio::test]
async fn redis_going_away_behind_a_store_component_is_a_503_then_it_recovers() {
    let mut redis = RedisServer::start();
    load_feast_dump(&mut redis.connection());
    let addr = format!("127.0.0.1:{}", redis.port);
    let (repo, _plugins) =
        repo_with_component(&built_plugins().redis_store, &addr, "    timeout_ms: 500\n");
    let server = TestServer::demo(&repo).await;
    let present = |resp: &feast_server_e2e::Response| {
        resp.status == 200 && resp.column("conv_rate")["statuses"] == json!(["PRESENT"])
    };
    assert!(present(&server.get_online_features(&body(1001)).await));

    for outage in ["stopped", "frozen"] {
        if outage == "stopped" {
            redis.stop();
        } else {
            redis.freeze();
        }
        let t0 = Instant::now();
        let resp = server.get_online_features(&body(1001)).await;
        assert_eq!(
            resp.status,
            503,
            "{outage}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{outage}: {:?}",
            t0.elapsed()
        );
        assert_eq!(server.send("GET", "/health", None, b"").await.status, 503);
        if outage == "stopped" {
            redis.restart();
            load_feast_dump(&mut redis.connection());
        } else {
            redis.thaw();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !present(&server.get_online_features(&body(1001)).await) {
            assert!(Instant::now() < deadline, "{outage}: not recovered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    server.stop().await;
}
