//! The HTTP floor of a benchmark payload: our HTTP stack (the server's accept loop,
//! hyper and axum on the serving threads) receiving the payload's request
//! and answering with the bytes our server answered for it, doing nothing else: no
//! store read, no JSON, no middleware. Loaded with the same wrk as the servers, it
//! measures what the HTTP exchange of a case costs on this machine by itself.
//!
//! `RESPONSES` holds one `<payload>.json` response body per payload;
//! `POST /replay/<payload>` answers it, `GET /health` answers 200.
//!
//! ```text
//! cargo run --release --example http_floor -- 6570 /tmp/responses
//! ```

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use feast_server::{PlainHttp, serve_on_threads};

type Bodies = Arc<HashMap<String, Bytes>>;

fn load(dir: &std::path::Path) -> std::io::Result<Bodies> {
    let mut bodies = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
            bodies.insert(name.to_string(), Bytes::from(std::fs::read(&path)?));
        }
    }
    Ok(Arc::new(bodies))
}

async fn replay(State(bodies): State<Bodies>, Path(name): Path<String>, _body: Bytes) -> Response {
    match bodies.get(&name) {
        Some(b) => ([(header::CONTENT_TYPE, "application/json")], b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, dir] = args.as_slice() else {
        eprintln!("usage: http_floor PORT RESPONSES_DIR");
        std::process::exit(2);
    };
    let port: u16 = port
        .parse()
        .map_err(|_| std::io::Error::other("PORT must be a number"))?;
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/replay/{name}", post(replay))
        .with_state(load(std::path::Path::new(dir))?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        serve_on_threads(
            listener,
            router,
            PlainHttp::default(),
            std::future::pending(),
        )
        .await
        .map_err(std::io::Error::other)
    })
}
