//! The HTTP floor of a benchmark payload: our HTTP stack (the server's accept loop,
//! hyper and axum on the serving threads) receiving the payload's request
//! and answering with the bytes our server answered for it, doing nothing else: no
//! store read, no JSON, no middleware. Loaded with the same wrk as the servers, it
//! measures what the HTTP exchange of a case costs on this machine by itself.
//!
//! Given a store, it is the HTTP-and-store floor: before answering, each request makes
//! the payload's store reads (prepared once, see `support/floor_reads.rs`) on its
//! serving thread, as our server does: SQLite with that thread's own read-only
//! connection and held read transaction, Redis with one pipeline on that thread's own
//! connection. That is a server whose only costs are the HTTP exchange and the store
//! reads, measured rather than added up from the two floors: it pays what they pay
//! together under load (waking the load generator, caches shared with the kernel's
//! network work).
//!
//! `RESPONSES` holds one `<payload>.json` response body per payload;
//! `POST /replay/<payload>` answers it, `GET /health` answers 200. With a store,
//! `PAYLOADS` holds the request bodies the reads are made from.
//!
//! ```text
//! cargo run --release --example http_floor -- 6570 /tmp/responses
//! cargo run --release --example http_floor -- 6570 /tmp/responses sqlite data/online_store.db bench/payloads
//! cargo run --release --example http_floor -- 6570 /tmp/responses redis 127.0.0.1:6379 bench/payloads
//! ```

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use feast_server::{PlainHttp, serve_on_threads};

#[path = "support/floor_reads.rs"]
mod floor_reads;

use floor_reads::{SqliteReader, reads, redis_pipeline, sqlite_queries};

/// What a replayed request reads before it is answered.
enum StoreReads {
    None,
    Sqlite {
        queries: Vec<String>,
        keys: Vec<Vec<u8>>,
    },
    Redis(redis::Pipeline),
}

/// The store the reads go to.
enum Store {
    None,
    Sqlite(PathBuf),
    Redis(Box<redis::Client>),
}

struct Replay {
    body: Bytes,
    reads: StoreReads,
}

struct Floor {
    store: Store,
    payloads: HashMap<String, Replay>,
}

thread_local! {
    /// This serving thread's SQLite connection.
    static SQLITE: RefCell<Option<SqliteReader>> = const { RefCell::new(None) };
    /// This serving thread's Redis connection (its driver runs on this thread).
    static REDIS: RefCell<Option<redis::aio::MultiplexedConnection>> = const { RefCell::new(None) };
}

fn load(dir: &FsPath, store: Store, payloads: Option<&FsPath>) -> std::io::Result<Floor> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let body = Bytes::from(std::fs::read(&path)?);
        let reads = match (&store, payloads) {
            (Store::None, _) | (_, None) => StoreReads::None,
            (store, Some(dir)) => {
                let request = dir.join(format!("{name}.json"));
                // Only a payload of views has reads to make (not an ODFV-only or a
                // feature-service request): the others are not replayed with a store.
                if !floor_reads::has_view_reads(&request) {
                    continue;
                }
                let r = reads(&request);
                match store {
                    Store::Sqlite(_) => StoreReads::Sqlite {
                        queries: sqlite_queries(&r),
                        keys: r.keys,
                    },
                    _ => StoreReads::Redis(redis_pipeline(&r)),
                }
            }
        };
        out.insert(name.to_string(), Replay { body, reads });
    }
    Ok(Floor {
        store,
        payloads: out,
    })
}

async fn read(floor: &Floor, reads: &StoreReads) {
    match (reads, &floor.store) {
        (StoreReads::Sqlite { queries, keys }, Store::Sqlite(db)) => SQLITE.with_borrow_mut(|r| {
            r.get_or_insert_with(|| SqliteReader::open(db))
                .read(queries, keys);
        }),
        (StoreReads::Redis(pipe), Store::Redis(client)) => {
            let conn = REDIS.with_borrow(Clone::clone);
            let mut conn = match conn {
                Some(c) => c,
                None => {
                    let c = client
                        .get_multiplexed_async_connection()
                        .await
                        .expect("connect");
                    REDIS.with_borrow_mut(|slot| *slot = Some(c.clone()));
                    c
                }
            };
            let _: Vec<redis::Value> = pipe.query_async(&mut conn).await.expect("pipeline");
        }
        _ => {}
    }
}

async fn replay(
    State(floor): State<Arc<Floor>>,
    Path(name): Path<String>,
    _body: Bytes,
) -> Response {
    match floor.payloads.get(&name) {
        Some(r) => {
            read(&floor, &r.reads).await;
            ([(header::CONTENT_TYPE, "application/json")], r.body.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn usage() -> ! {
    eprintln!("usage: http_floor PORT RESPONSES_DIR [sqlite DB | redis ADDR] [PAYLOADS_DIR]");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (port, dir, store, payloads) = match args.as_slice() {
        [_, port, dir] => (port, dir, Store::None, None),
        [_, port, dir, kind, target, payloads] => {
            let store = match kind.as_str() {
                "sqlite" => Store::Sqlite(PathBuf::from(target)),
                "redis" => Store::Redis(Box::new(
                    redis::Client::open(format!("redis://{target}")).expect("redis address"),
                )),
                _ => usage(),
            };
            (port, dir, store, Some(FsPath::new(payloads)))
        }
        _ => usage(),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| std::io::Error::other("PORT must be a number"))?;
    let floor = load(FsPath::new(dir), store, payloads)?;
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/replay/{name}", post(replay))
        .with_state(Arc::new(floor));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        // SIGTERM (how bench.py stops a server) ends the process through `main`, so a
        // build instrumented for PGO writes its profile (see bench/pgo-build.sh).
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        serve_on_threads(listener, router, PlainHttp::default(), async move {
            terminate.recv().await;
        })
        .await
        .map_err(std::io::Error::other)
    })
}
