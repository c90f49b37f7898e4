//! `feast-server`: a Feast-compatible online feature server.
//!
//! It reads what real Feast writes (`feature_store.yaml`, the protobuf registry, the
//! online data that `feast materialize` wrote) and answers Feast's
//! `get-online-features` API.
//!
//! # Layout
//!
//! | module | its one job |
//! |---|---|
//! | [`config`] | parse `feature_store.yaml` (Feast 0.67 keys, `${ENV}` expansion, paths) |
//! | [`proto`] | Rust types generated from the project's own Feast `.proto` files |
//! | [`registry`] | decode `registry.db` into a typed, serving-ready model; reload it |
//! | [`value`] | Feast value types, field statuses and timestamps |
//! | [`entity_key`] | coerce request values to entity types; Feast's entity-key bytes (v2, v3) |
//! | [`engine`] | the transport-agnostic `get_online_features` engine (plans, reads, assembly) |
//! | [`feature_logging`] | served features of logged feature services to Parquet files (Feast's schema) |
//! | [`online_store`] | online store backends (SQLite, Redis) behind one batched read |
//! | [`plugin`] | on-demand feature views as sandboxed Wasm components: load, limits, hot swap |
//! | [`frontend`] | what HTTP and gRPC share: admission (concurrency limit, timeout) and request metrics |
//! | [`http`] | the HTTP API (axum): Feast's JSON request/response and error shapes, health, metrics |
//! | [`grpc`] | the gRPC API (tonic): Feast's `ServingService` and the standard health service |
//! | [`metrics`] | Prometheus metrics owned by each app |
//! | [`threads`] | serving threads: one single-threaded runtime per core, connections pinned to one |
//! | [`tls`] | TLS certificate and key for HTTPS and gRPC |
//! | [`clock`] | the injectable "now" used for TTL checks |
//! | [`error`] | the engine's typed errors, each with a Feast class and a status kind |
//! | [`server`] | builds the app from a repo directory and serves it until shutdown |
//! | [`cli`] | the `feast-server` command line, shaped like `feast` |
//!
//! HTTP and gRPC are thin layers over [`engine::FeatureStore::get_online_features`].

// The gRPC handler's future (engine + store + plugin calls) nests deeply.
#![recursion_limit = "256"]

pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod entity_key;
pub mod error;
pub mod feature_logging;
pub mod frontend;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod online_store;
pub mod plugin;
pub mod proto;
pub mod registry;
pub mod server;
pub mod threads;
pub mod tls;
pub mod value;
