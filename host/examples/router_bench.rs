//! What one `get-online-features` request costs in-process: the payload sent N times
//! through the server's HTTP service (request observation, JSON in, engine, store
//! read, JSON out) on one thread, with no socket and no load generator. Prints the
//! time per request of each of 3 rounds; compare builds by alternating runs.
//!
//! ```text
//! cargo run --release --example router_bench -- demo/feature_repo bench/payloads/p100_100x3.json 20000
//! ```

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

use std::path::PathBuf;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use feast_server::App;
use feast_server::RepoConfig;
use tower::ServiceExt;

/// The server's allocator, so that allocation costs what it costs in `feast-server`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo, payload, count] = args.as_slice() else {
        eprintln!("usage: router_bench REPO PAYLOAD REQUESTS");
        std::process::exit(2);
    };
    let repo = PathBuf::from(repo);
    let body = axum::body::Bytes::from(std::fs::read(payload)?);
    let count: usize = count.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = RepoConfig::load(&repo, &repo.join("feature_store.yaml"))?;
        let app = App::build(config, Default::default()).await?;
        let router = app.router();
        for round in 1..=3 {
            let start = Instant::now();
            let mut size = 0;
            for _ in 0..count {
                let req = Request::post("/get-online-features")
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))?;
                let resp = router.clone().oneshot(req).await?;
                anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
                size = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await?
                    .len();
            }
            let per = start.elapsed().as_secs_f64() * 1e6 / count as f64;
            println!("round {round}: {per:.2} us/request ({size} response bytes)");
        }
        app.stop().await;
        Ok(())
    })
}
