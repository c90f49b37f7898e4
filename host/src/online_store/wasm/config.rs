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

    /// The allow list resolved now (names resolved by the server); an entry that does
    /// not resolve is logged and left out.
    pub(crate) async fn resolve_allow(&self) -> AllowList {
        let mut entries = Vec::new();
        for entry in &self.allow {
            match tokio::net::lookup_host(entry.as_str()).await {
                Ok(addrs) => {
                    let mut addrs: Vec<SocketAddr> = addrs
                        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
                        .collect();
                    addrs.sort();
                    addrs.dedup();
                    entries.push((entry.clone(), addrs));
                }
                Err(e) => tracing::warn!(
                    entry = %entry,
                    error = %e,
                    "an allowed address of the store component does not resolve"
                ),
            }
        }
        AllowList { entries }
    }

    /// What the component's `open` gets: `{"project", "allow": ["ip:port"...],
    /// "resolved": {"<entry>": ["ip:port"...]}, "config"}`.
    pub(crate) fn open_argument(&self, allow: &AllowList) -> String {
        let mut addrs: Vec<String> = allow
            .addresses()
            .iter()
            .map(SocketAddr::to_string)
            .collect();
        addrs.sort();
        let resolved: serde_json::Map<String, serde_json::Value> = allow
            .entries
            .iter()
            .map(|(entry, addrs)| {
                let list = addrs
                    .iter()
                    .map(|a| serde_json::Value::String(a.to_string()));
                (entry.clone(), serde_json::Value::Array(list.collect()))
            })
            .collect();
        serde_json::json!({
            "project": self.project,
            "allow": addrs,
            "resolved": resolved,
            "config": self.options,
        })
        .to_string()
    }
}

/// The `allow` entries and the addresses each resolved to.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowList {
    entries: Vec<(String, Vec<SocketAddr>)>,
}

impl AllowList {
    /// Every allowed address.
    pub(crate) fn addresses(&self) -> HashSet<SocketAddr> {
        self.entries
            .iter()
            .flat_map(|(_, a)| a.iter().copied())
            .collect()
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

    #[tokio::test]
    async fn open_gets_each_entry_with_its_addresses() {
        let cfg = WasmStoreConfig {
            component: PathBuf::from("store.wasm"),
            options: serde_json::json!({}),
            allow: vec!["localhost:5432".into(), "127.0.0.1:6379".into()],
            timeout: Duration::from_secs(1),
            max_memory_bytes: 1 << 20,
            instances: 1,
            thread_slots: 1,
            poll_interval: Duration::from_secs(1),
            project: "p".into(),
        };
        let allow = cfg.resolve_allow().await;
        let arg: serde_json::Value =
            serde_json::from_str(&cfg.open_argument(&allow)).expect("JSON");
        assert_eq!(
            arg["resolved"]["127.0.0.1:6379"],
            serde_json::json!(["127.0.0.1:6379"])
        );
        let local = arg["resolved"]["localhost:5432"]
            .as_array()
            .expect("resolved");
        assert!(
            local
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.ends_with(":5432")))
        );
        assert!(
            arg["allow"].as_array().is_some_and(|a| a.len() >= 2),
            "{arg}"
        );
    }

    #[test]
    fn allow_entries_are_host_and_port() {
        assert_eq!(split_host_port("redis:6379"), Some(("redis", 6379)));
        assert_eq!(split_host_port("[::1]:6379"), Some(("[::1]", 6379)));
        assert_eq!(split_host_port("redis"), None);
        assert_eq!(split_host_port(":1"), None);
        assert_eq!(split_host_port("h:99999"), None);
    }
}
