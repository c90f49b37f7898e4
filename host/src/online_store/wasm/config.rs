//! `online_store: {type: wasm, ...}`: which component, its own configuration, where
//! it may connect, and the limits it runs under.
//!
//! ```yaml
//! online_store:
//!   type: wasm
//!   component: plugins/redis_store.wasm   # relative to the repository
//!   config:                               # passed to the component's `open` (as JSON)
//!     connection_string: "127.0.0.1:6379"
//!   allow: ["127.0.0.1:6379"]             # host:port the component may connect to
//!   timeout_ms: 1000                      # per call (a hung backend: 503 within it)
//!   max_memory_mb: 64                     # per instance
//!   instances: 12                         # at most this many at once (default: 4 per serving thread + 4)
//!   poll_interval_ms: 1000                # how often the file is checked for a new version (0: never)
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, RepoConfig};

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWasmStoreConfig {
    #[serde(rename = "type")]
    _type: String,
    component: PathBuf,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_memory_mb: Option<u64>,
    #[serde(default)]
    instances: Option<usize>,
    #[serde(default)]
    poll_interval_ms: Option<u64>,
}

/// A component store's settings.
#[derive(Clone, Debug)]
pub(crate) struct WasmStoreConfig {
    /// The component file.
    pub(crate) component: PathBuf,
    /// The `config:` mapping (an empty object when absent).
    pub(crate) options: serde_json::Value,
    /// The `allow` entries as written (`host:port`).
    pub(crate) allow: Vec<String>,
    /// Longest time one call may take.
    pub(crate) timeout: Duration,
    /// Largest linear memory of one instance.
    pub(crate) max_memory_bytes: usize,
    /// Instances at most (each serves one call at a time).
    pub(crate) instances: usize,
    /// Thread slots idle instances are kept in (serving threads + 1).
    pub(crate) thread_slots: usize,
    /// How often the component file is checked for a new version.
    pub(crate) poll_interval: Duration,
    /// The Feast project.
    pub(crate) project: String,
}

impl WasmStoreConfig {
    /// Reads the `online_store` section; `connections` is the number of thread slots
    /// (serving threads + 1), and `instances` defaults to 4 per slot.
    pub(crate) fn from_repo(config: &RepoConfig, connections: usize) -> Result<Self, ConfigError> {
        let raw: RawWasmStoreConfig =
            config.parse_section("online_store", config.online_store.raw.clone())?;
        let invalid = |message: String| ConfigError::Parse {
            path: config.source.clone(),
            message,
        };
        let options = match raw.config {
            None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(other) => {
                return Err(invalid(format!(
                    "online_store.config: expected a mapping, found {other}"
                )));
            }
        };
        for a in &raw.allow {
            if split_host_port(a).is_none() {
                return Err(invalid(format!(
                    "online_store.allow: {a:?} is not host:port"
                )));
            }
        }
        let component = config.repo_dir.join(&raw.component);
        if !component.is_file() {
            return Err(ConfigError::MissingFile {
                path: config.source.clone(),
                key: "online_store.component",
                file: component,
            });
        }
        let timeout = Duration::from_millis(raw.timeout_ms.unwrap_or(1000));
        if timeout.is_zero() {
            return Err(invalid("online_store.timeout_ms: must be above 0".into()));
        }
        let instances = raw.instances.unwrap_or(4 * connections.max(1));
        if instances == 0 {
            return Err(invalid("online_store.instances: must be above 0".into()));
        }
        Ok(WasmStoreConfig {
            component,
            options,
            allow: raw.allow,
            timeout,
            max_memory_bytes: usize::try_from(raw.max_memory_mb.unwrap_or(64) << 20)
                .unwrap_or(usize::MAX),
            instances,
            thread_slots: connections.max(1),
            poll_interval: Duration::from_millis(raw.poll_interval_ms.unwrap_or(1000)),
            project: config.project.clone(),
        })
    }

    /// The addresses of the allow list now (names resolved by the server, off the
    /// async workers); an entry that does not resolve is logged and left out.
    pub(crate) async fn resolve_allow(&self) -> HashSet<SocketAddr> {
        let mut out = HashSet::new();
        for entry in &self.allow {
            match tokio::net::lookup_host(entry.as_str()).await {
                Ok(addrs) => {
                    out.extend(addrs.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port())))
                }
                Err(e) => tracing::warn!(
                    entry = %entry,
                    error = %e,
                    "an allowed address of the store component does not resolve"
                ),
            }
        }
        out
    }

    /// What the component's `open` gets: `{"project", "allow": ["ip:port"...], "config"}`.
    pub(crate) fn open_argument(&self, allowed: &HashSet<SocketAddr>) -> String {
        let mut allow: Vec<String> = allowed.iter().map(SocketAddr::to_string).collect();
        allow.sort();
        serde_json::json!({
            "project": self.project,
            "allow": allow,
            "config": self.options,
        })
        .to_string()
    }
}

fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries_are_host_and_port() {
        assert_eq!(split_host_port("redis:6379"), Some(("redis", 6379)));
        assert_eq!(split_host_port("[::1]:6379"), Some(("[::1]", 6379)));
        assert_eq!(split_host_port("redis"), None);
        assert_eq!(split_host_port(":1"), None);
        assert_eq!(split_host_port("h:99999"), None);
    }
}
