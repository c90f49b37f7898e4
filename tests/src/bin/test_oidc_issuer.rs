//! The test OIDC issuer of `feast_server_e2e::oidc` as a process, for the Python
//! checks (the Feast SDK logging in, `feast serve` verifying the same tokens).
//! Prints one JSON line (`discovery_url`, `ca_cert`, `client_id`, `client_secret`,
//! `audience`) and serves until its standard input closes.

#![allow(
    clippy::expect_used,
    reason = "a test tool: a failed step ends the run"
)]

use std::io::Read as _;

use feast_server_e2e::oidc::{AUDIENCE, CLIENT_ID, CLIENT_SECRET, TestIssuer};

#[tokio::main]
async fn main() {
    let issuer = TestIssuer::start().await;
    println!(
        "{}",
        serde_json::json!({
            "discovery_url": issuer.discovery_url,
            "ca_cert": issuer.ca_cert(),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "audience": AUDIENCE,
        })
    );
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .expect("stdin watcher");
    drop(issuer);
}
