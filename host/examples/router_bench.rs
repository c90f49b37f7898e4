//! What one `get-online-features` request costs in-process: the payload sent N times
//! through the server's HTTP service (request observation, JSON in, engine, store
//! read, JSON out) on one thread, with no socket and no load generator. Prints the
//! time and the heap allocations per request of each of 3 rounds (the request and
//! response bodies of the loop itself included); compare builds by alternating runs.
//!
//! ```text
//! cargo run --release --example router_bench -- demo/feature_repo bench/payloads/p100_100x3.json 20000
//! ```

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

use std::alloc::{GlobalAlloc, Layout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use feast_server::App;
use feast_server::RepoConfig;
use tower::ServiceExt;

/// The server's allocator, so that allocation costs what it costs in `feast-server`,
/// with its allocations counted.
#[global_allocator]
static GLOBAL: Counting = Counting(mimalloc::MiMalloc);

/// Allocations (a reallocation counts as one) since the start.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting(mimalloc::MiMalloc);

#[expect(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; every call is passed on unchanged"
)]
// SAFETY: mimalloc upholds `GlobalAlloc`'s contract; counting does not touch memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.0.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

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
            let allocations = ALLOCATIONS.load(Ordering::Relaxed);
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
            let allocs = (ALLOCATIONS.load(Ordering::Relaxed) - allocations) as f64 / count as f64;
            println!(
                "round {round}: {per:.2} us/request, {allocs:.1} allocations/request ({size} response bytes)"
            );
        }
        app.stop().await;
        Ok(())
    })
}
