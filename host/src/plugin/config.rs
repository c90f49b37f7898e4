//! Where plugins come from and the limits they run under: the `wasm_plugins:` key of
//! `feature_store.yaml` (a top-level key Feast itself accepts and ignores, so the
//! same file still works with `feast apply` and `feast serve`).
//!
//! ```yaml
//! wasm_plugins:
//!   directory: plugins        # relative to the repo; `feast-server serve --plugins DIR` overrides
//!   timeout_ms: 100           # per call
//!   max_memory_mb: 64         # per instance
//!   max_input_mb: 16          # Arrow IPC bytes sent to a plugin
//!   max_output_mb: 16         # Arrow IPC bytes accepted from a plugin
//!   max_idle_instances: 16    # ready instances kept per plugin
//!   cache_dir: ~/.cache/feast-server/wasm   # compiled artifacts (default shown)
//!   poll_interval_ms: 1000    # how often the directory is checked for changes (0: never, SIGHUP only)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, RepoConfig};

/// Plugin settings with their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfig {
    /// Directory scanned for `*.wasm` components (none: no plugins).
    pub directory: Option<PathBuf>,
    /// Longest time one `transform` call may run.
    pub timeout: Duration,
    /// Largest linear memory of one instance.
    pub max_memory_bytes: usize,
    /// Largest Arrow IPC input sent to a plugin.
    pub max_input_bytes: usize,
    /// Largest Arrow IPC output accepted from a plugin.
    pub max_output_bytes: usize,
    /// Ready instances kept per plugin for reuse.
    pub max_idle_instances: usize,
    /// Where compiled components are cached (none: compile at every start).
    pub cache_dir: Option<PathBuf>,
    /// How often the directory is checked for new or changed files.
    pub poll_interval: Duration,
    /// An executable that compiles a component out of process (`feast-server` itself,
    /// see [`compile_to_file`](super::compile_to_file)), so the compiler's memory is
    /// returned to the system when it exits. None, or no `cache_dir`: compile in process.
    pub compiler: Option<PathBuf>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            directory: None,
            timeout: Duration::from_millis(100),
            max_memory_bytes: 64 << 20,
            max_input_bytes: 16 << 20,
            max_output_bytes: 16 << 20,
            max_idle_instances: 16,
            cache_dir: default_cache_dir(),
            compiler: None,
            poll_interval: Duration::from_secs(1),
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("feast-server").join("wasm"))
}

impl PluginConfig {
    /// The `wasm_plugins:` section of a repository configuration (defaults without
    /// one); `directory` overrides the section's directory (`serve --plugins DIR`).
    /// The directory must exist.
    pub fn from_repo(config: &RepoConfig, directory: Option<PathBuf>) -> Result<Self, ConfigError> {
        let raw: RawPluginConfig = match &config.wasm_plugins {
            Some(raw) => config.parse_section("wasm_plugins", raw.clone())?,
            None => RawPluginConfig::default(),
        };
        let mut plugins = raw.resolve(&|p: &str| config.resolve_path(p));
        if directory.is_some() {
            plugins.directory = directory;
        }
        if let Some(d) = &plugins.directory
            && !d.is_dir()
        {
            return Err(ConfigError::MissingFile {
                path: config.source.clone(),
                key: "wasm_plugins.directory",
                file: d.clone(),
            });
        }
        Ok(plugins)
    }
}

/// `wasm_plugins:` as written in YAML.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginConfig {
    directory: Option<String>,
    timeout_ms: Option<u64>,
    max_memory_mb: Option<usize>,
    max_input_mb: Option<usize>,
    max_output_mb: Option<usize>,
    max_idle_instances: Option<usize>,
    cache_dir: Option<String>,
    poll_interval_ms: Option<u64>,
}

impl RawPluginConfig {
    /// Applies the YAML values over the defaults; `resolve` anchors relative paths.
    fn resolve(&self, resolve: &dyn Fn(&str) -> PathBuf) -> PluginConfig {
        let d = PluginConfig::default();
        PluginConfig {
            directory: self.directory.as_deref().map(resolve),
            timeout: self.timeout_ms.map_or(d.timeout, Duration::from_millis),
            max_memory_bytes: self.max_memory_mb.map_or(d.max_memory_bytes, |m| m << 20),
            max_input_bytes: self.max_input_mb.map_or(d.max_input_bytes, |m| m << 20),
            max_output_bytes: self.max_output_mb.map_or(d.max_output_bytes, |m| m << 20),
            max_idle_instances: self.max_idle_instances.unwrap_or(d.max_idle_instances),
            cache_dir: match self.cache_dir.as_deref() {
                Some(p) => Some(resolve(&shellexpand_home(p))),
                None => d.cache_dir,
            },
            poll_interval: self
                .poll_interval_ms
                .map_or(d.poll_interval, Duration::from_millis),
            compiler: d.compiler,
        }
    }
}

fn shellexpand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn repo(text: &str) -> RepoConfig {
        RepoConfig::parse(
            text,
            Path::new("/repo"),
            Path::new("/repo/feature_store.yaml"),
        )
        .expect("parses")
    }

    #[test]
    fn the_section_is_read_with_its_defaults_and_typos_refused() {
        let cfg = repo(
            "project: p\nregistry: r.db\nwasm_plugins:\n  timeout_ms: 50\n  max_memory_mb: 32\n",
        );
        let plugins = PluginConfig::from_repo(&cfg, None).expect("valid");
        assert_eq!(plugins.directory, None);
        assert_eq!(plugins.timeout, Duration::from_millis(50));
        assert_eq!(plugins.max_memory_bytes, 32 << 20);
        assert_eq!(
            plugins.max_idle_instances,
            PluginConfig::default().max_idle_instances
        );
        let err = PluginConfig::from_repo(
            &repo("project: p\nregistry: r.db\nwasm_plugins:\n  timeout: 5\n"),
            None,
        )
        .expect_err("typo");
        assert!(err.to_string().contains("wasm_plugins.timeout"), "{err}");
        let err = PluginConfig::from_repo(
            &repo("project: p\nregistry: r.db\nwasm_plugins:\n  directory: plugins\n"),
            None,
        )
        .expect_err("no such directory");
        assert!(err.to_string().contains("/repo/plugins"), "{err}");
        let dir = std::env::temp_dir();
        let plugins =
            PluginConfig::from_repo(&cfg, Some(dir.clone())).expect("an existing directory");
        assert_eq!(plugins.directory, Some(dir));
    }
}
