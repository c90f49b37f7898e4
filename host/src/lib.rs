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
//! | [`online_store`] | online store backends (SQLite) behind one read interface |
//! | [`http`] | the HTTP API (axum): Feast's JSON request/response and error shapes |
//! | [`clock`] | the injectable "now" used for TTL checks |
//! | [`error`] | the engine's typed errors, each with a Feast class and a status kind |
//! | [`server`] | builds the app from a repo directory and serves it until shutdown |
//! | [`cli`] | the `feast-server` command line, shaped like `feast` |
//!
//! HTTP (and gRPC) are thin layers over [`engine::FeatureStore::get_online_features`].

pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod entity_key;
pub mod error;
pub mod feature_logging;
pub mod http;
pub mod online_store;
pub mod proto;
pub mod registry;
pub mod server;
pub mod value;
