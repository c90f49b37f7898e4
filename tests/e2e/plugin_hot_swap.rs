//! Hot swap under load: while clients send thousands of requests, the plugin file
//! is replaced v1 -> v2 -> broken -> v1 ... : no request fails, answers switch
//! between the versions' semantics, and the broken version never serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use feast_server_e2e::plugins::{PluginDir, built_plugins, wasm_plugins_yaml};
use feast_server_e2e::{RepoCopy, TestServer, wait_until};
use serde_json::json;

const V1: f64 = 1.2965355813503265; // conv_rate(1001) + 1
const V2: f64 = V1 + 1000.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapping_plugins_under_load_fails_no_request() {
    let built = built_plugins();
    let repo = RepoCopy::demo();
    let dir = PluginDir::with(&[(built.conv_rate.as_path(), "conv.wasm")]);
    repo.append_config(&wasm_plugins_yaml(dir.path(), ""));
    let server = Arc::new(TestServer::demo(&repo).await);
    let body = json!({"features": ["transformed_conv_rate:conv_rate_plus_val1"],
                      "entities": {"driver_id": [1001], "val_to_add": [1], "val_to_add_2": [2]}});

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, v1, v2, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (server, body, stop) = (server.clone(), body.clone(), stop.clone());
        let (ok, v1, v2, failed) = (ok.clone(), v1.clone(), v2.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let resp = server.get_online_features(&body).await;
                if resp.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.push(String::from_utf8_lossy(&resp.body).into_owned());
                    continue;
                }
                let value = resp.column("conv_rate_plus_val1")["values"][0].as_f64();
                match value {
                    Some(v) if v == V1 => v1.fetch_add(1, Ordering::Relaxed),
                    Some(v) if v == V2 => v2.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.push(format!("unexpected value {other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                ok.fetch_add(1, Ordering::Relaxed);
            }
            errors
        }));
    }

    let wait_for = |want: f64| {
        let server = server.clone();
        let body = body.clone();
        async move {
            // The first swap compiles the new version (seconds, more when other tests
            // compile at the same time); later ones hit the cache.
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                let resp = server.get_online_features(&body).await;
                if resp.status == 200
                    && resp.column("conv_rate_plus_val1")["values"][0].as_f64() == Some(want)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let status = server.send("GET", "/plugins", None, b"").await.json();
            let last = server.get_online_features(&body).await;
            panic!(
                "the swap to {want} never happened: {status} {}",
                String::from_utf8_lossy(&last.body)
            );
        }
    };
    for _ in 0..3 {
        dir.install(&built.conv_rate_v2, "conv.wasm");
        wait_for(V2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A broken version: refused, v2 keeps serving.
        dir.install_bytes(b"\0asm this is not a component", "conv.wasm");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let status = server.send("GET", "/plugins", None, b"").await.json();
        assert_eq!(status[0]["version"], "0.2.0", "{status}");
        assert!(status[0]["load_error"].is_string(), "{status}");
        dir.install(&built.conv_rate, "conv.wasm");
        wait_for(V1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.expect("client"));
    }
    let (ok, v1, v2) = (
        ok.load(Ordering::Relaxed),
        v1.load(Ordering::Relaxed),
        v2.load(Ordering::Relaxed),
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failures: {errors:?}");
    assert!(ok >= 1000, "only {ok} requests");
    assert!(v1 > 0 && v2 > 0, "v1 {v1} v2 {v2}");
    assert_eq!(ok, v1 + v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_polling_off_plugins_change_on_sighup_only() {
    let built = built_plugins();
    let repo = RepoCopy::demo();
    let dir = PluginDir::with(&[(built.conv_rate.as_path(), "conv.wasm")]);
    let yaml =
        wasm_plugins_yaml(dir.path(), "").replace("poll_interval_ms: 50", "poll_interval_ms: 0");
    repo.append_config(&yaml);
    let server = TestServer::demo(&repo).await;
    let body = json!({"features": ["transformed_conv_rate:conv_rate_plus_val1"],
                      "entities": {"driver_id": [1001], "val_to_add": [1], "val_to_add_2": [2]}});
    let served = |resp: &feast_server_e2e::Response| {
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        resp.column("conv_rate_plus_val1")["values"][0].as_f64()
    };
    assert_eq!(served(&server.get_online_features(&body).await), Some(V1));

    dir.install(&built.conv_rate_v2, "conv.wasm");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        served(&server.get_online_features(&body).await),
        Some(V1),
        "no polling: the new file is not looked at"
    );

    let hup = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());
    // The first load of v2 compiles it (seconds).
    wait_until(Duration::from_secs(120), "SIGHUP loads v2", || async {
        served(&server.get_online_features(&body).await) == Some(V2)
    })
    .await;
    server.stop().await;
}
