//! `feast-server`: a Feast-compatible online feature server.
//!
//! It reads what real Feast writes (`feature_store.yaml`, the protobuf registry, the
//! online data that `feast materialize` wrote) and answers Feast's
//! `get-online-features` API over HTTP and gRPC. On-demand feature views run as
//! sandboxed WebAssembly components.
//!
//! # Layout
//!
//! Modules in layers: each uses only the layers above it (no import cycles).
//!
//! | layer | module | its one job |
//! |---|---|---|
//! | foundations | [`value`], `entity_key`, `clock`, [`proto`], `tls`, `threads`, `timeout`, `file_watch` | Feast values and key bytes, "now", generated protos, TLS files, serving threads, timeouts on running time, noticing changed files |
//! | configuration | `config` | parse `feature_store.yaml` (Feast 0.67 keys, `${ENV}` expansion, paths) |
//! | model | `registry` | decode `registry.db` into a typed model; reload it; caches per snapshot |
//! | shared types | `api`, `metrics` | request and response types; the registry of Prometheus collectors |
//! | backends | `online_store`, `plugin` | stores behind one trait (SQLite, Redis); ODFVs as Wasm components |
//! | access | `auth` | who is asking (bearer tokens: OIDC, Kubernetes) and what they may do (Feast's permissions) |
//! | errors | `error` | the engine's typed errors, each with a Feast class and a status kind |
//! | engine | `engine` | `get_online_features`: plans, keys, reads, ODFVs, assembly |
//! | write path | `ingest` | push, write-to-online-store, materialize: rows checked whole, then written as Feast writes them |
//! | logging | `feature_logging` | served features of logged feature services to Parquet (Feast's schema) |
//! | service | `service` | what HTTP and gRPC share: admission, timeouts, serve then log, request metrics |
//! | transports | `http`, `grpc` | Feast's JSON and gRPC APIs as thin skins over the service |
//! | process | `server`, [`cli`] | build the app from a repo and serve it; the command line |
//!
//! The crate root re-exports what the binary, embedders, tests and benchmarks use.

// The gRPC handler's future (engine + store + plugin calls) nests deeply.
#![recursion_limit = "256"]

mod api;
mod auth;
pub mod cli;
mod clock;
mod config;
mod engine;
mod entity_key;
mod error;
mod feature_logging;
mod file_watch;
mod grpc;
mod http;
mod ingest;
mod metrics;
mod online_store;
mod plugin;
pub mod proto;
mod registry;
mod server;
mod service;
mod threads;
mod timeout;
mod tls;
pub mod value;

pub use api::{FeatureColumn, FeatureViewMetadata, OnlineFeaturesRequest, OnlineFeaturesResponse};
pub use auth::{AuthError, AuthSetupError, Denied};
pub use clock::Clock;
pub use config::{ConfigError, RepoConfig};
pub use entity_key::KeyLayout;
pub use error::{Error, ErrorKind};
pub use feature_logging::{FeatureLogger, LoggingError, LoggingStats};
pub use grpc::to_proto_request;
pub use http::{HttpService, parse_request, write_response};
pub use metrics::Metrics;
pub use online_store::{OpenError, StoreError, feature_field, timestamp_field};
pub use plugin::{EngineError, OdfvError, OdfvInput, PluginConfig, PluginRuntime};
pub use registry::{DecodeOptions, RegistryError, RegistryHandle, RegistrySource};
pub use server::{App, PlainHttp, ServeError, ServerOptions, StartError, serve_on_threads};
pub use service::Limits;
pub use tls::{TlsError, TlsFiles, install_crypto_provider};
