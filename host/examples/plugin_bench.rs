//! Plugin costs, measured: first load (compile) and cached load of a component, and
//! the per-call overhead of an ODFV call for 1/10/100/1000 rows as the engine makes
//! it (Arrow input built from Feast values, IPC-encoded, the guest called, its output
//! decoded and checked against the registry, converted to Feast values), with reused
//! instances (what the server does) and with a fresh instance per call.
//!
//! ```text
//! cargo build --profile plugin --target wasm32-wasip2 -p transformed-conv-rate
//! cargo run --release --example plugin_bench -- demo/feature_repo target/wasm32-wasip2/plugin/transformed_conv_rate.wasm
//! ```

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use feast_server::value::{Val, Value};
use feast_server::{
    Metrics, PluginConfig, PluginRuntime, RegistryHandle, RegistrySource, RepoConfig,
};

/// The demo ODFV's inputs for `rows` rows.
fn input(rows: usize) -> Vec<(&'static str, Vec<Value>)> {
    let col = |v: Val| vec![Value { val: Some(v) }; rows];
    vec![
        ("conv_rate", col(Val::FloatVal(0.5))),
        ("val_to_add", col(Val::Int64Val(1))),
        ("val_to_add_2", col(Val::Int64Val(2))),
    ]
}

async fn runtime(
    repo: &std::path::Path,
    dir: &std::path::Path,
    cache: &std::path::Path,
    idle: usize,
) -> (Arc<PluginRuntime>, Duration) {
    let config = RepoConfig::load(repo, &repo.join("feature_store.yaml")).expect("config");
    let registry = Arc::new(RegistryHandle::load(RegistrySource::of(&config)).expect("registry"));
    let plugins = PluginConfig {
        directory: Some(dir.to_path_buf()),
        cache_dir: Some(cache.to_path_buf()),
        max_idle_instances: idle,
        ..PluginConfig::default()
    };
    let t0 = Instant::now();
    let rt = PluginRuntime::start(plugins, registry.clone(), &mut Metrics::default())
        .await
        .expect("runtime");
    (rt, t0.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: plugin_bench FEATURE_REPO PLUGIN.wasm");
        std::process::exit(2);
    }
    let repo = std::path::PathBuf::from(&args[1]);
    let dir = tempfile::tempdir().expect("dir");
    let cache = tempfile::tempdir().expect("cache");
    std::fs::copy(&args[2], dir.path().join("p.wasm")).expect("copy plugin");

    let (_, first) = runtime(&repo, dir.path(), cache.path(), 16).await;
    let (_, cached) = runtime(&repo, dir.path(), cache.path(), 16).await;
    let size = std::fs::metadata(&args[2]).map(|m| m.len()).unwrap_or(0);
    println!("component: {:.2} MB", size as f64 / 1e6);
    println!(
        "first load (compile + describe + trial call): {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    println!(
        "cached load (deserialize + describe + trial call): {:.1} ms",
        cached.as_secs_f64() * 1e3
    );

    let odfv = "transformed_conv_rate";
    println!("\n| rows | reused instance (median) | fresh instance per call (median) |");
    println!("|---:|---:|---:|");
    for rows in [1usize, 10, 100, 1000] {
        let columns = input(rows);
        let inputs: Vec<_> = columns
            .iter()
            .map(|(name, values)| (*name, values.iter().map(Some).collect()))
            .collect();
        let mut results = Vec::new();
        for idle in [16usize, 0] {
            let (rt, _) = runtime(&repo, dir.path(), cache.path(), idle).await;
            for _ in 0..200 {
                rt.compute_by_name(odfv, &inputs, rows)
                    .await
                    .expect("warm-up");
            }
            let mut times = Vec::with_capacity(2000);
            for _ in 0..2000 {
                let t0 = Instant::now();
                let out = rt.compute_by_name(odfv, &inputs, rows).await.expect("call");
                times.push(t0.elapsed());
                std::hint::black_box(out);
            }
            results.push(median(times));
        }
        println!(
            "| {rows} | {:.1} us | {:.1} us |",
            results[0].as_secs_f64() * 1e6,
            results[1].as_secs_f64() * 1e6
        );
    }
}
