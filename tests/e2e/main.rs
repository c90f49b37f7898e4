//! End-to-end tests: the real server on a loopback port, over real copies of the
//! feature repository Feast wrote, compared with Feast's own answers.

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

mod auth;
mod composite;
mod feature_logging;
mod golden;
mod grpc;
mod invalid_input;
mod odfv_languages;
mod operations;
mod plugin_hot_swap;
mod plugin_sandbox;
mod postgres_store;
mod redis_faults;
mod registry_reload;
mod sqlite_writer;
mod store_component;
mod ttl;
mod write;
