//! `feature_store.yaml`, as Feast 0.67 writes and reads it.
//!
//! Keys this server does not use are ignored, as Feast ignores them. `${VAR}` and
//! `$VAR` are expanded from the environment before parsing (unset variables are left
//! as they are, like Python's `os.path.expandvars`). Relative paths resolve against
//! the repo directory (the directory holding `feature_store.yaml`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration problem found at start-up; every variant names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or a key has the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key path.
        message: String,
    },
    /// A required key is missing.
    #[error("{path}: `{key}` is required")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
    },
    /// A key has a value this server does not support.
    #[error("{path}: `{key}` = {value:?} is not supported: {hint}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The value found.
        value: String,
        /// What is supported instead.
        hint: String,
    },
    /// A file named by the configuration does not exist.
    #[error("{path}: `{key}` names {file}, which does not exist")]
    MissingFile {
        /// The YAML file.
        path: PathBuf,
        /// The key naming the file.
        key: &'static str,
        /// The missing file.
        file: PathBuf,
    },
}

/// The parsed repository configuration.
#[derive(Clone, Debug)]
pub struct RepoConfig {
    /// Directory holding `feature_store.yaml`; relative paths resolve against it.
    pub repo_dir: PathBuf,
    /// The YAML file this came from.
    pub source: PathBuf,
    /// `project`.
    pub project: String,
    /// `provider` (informational).
    pub provider: String,
    /// `registry`.
    pub registry: RegistryConfig,
    /// `online_store`.
    pub online_store: OnlineStoreConfig,
    /// `entity_key_serialization_version` (2 or 3; default 3).
    pub entity_key_serialization_version: u32,
    /// `feature_server`.
    pub feature_server: FeatureServerConfig,
    /// `wasm_plugins` (this server's own key; Feast ignores it).
    pub plugins: crate::plugin::PluginConfig,
}

/// `registry:` (a path string or an object).
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Absolute path of the registry file.
    pub path: PathBuf,
    /// How long a loaded registry is used before it is read again; zero = never.
    pub cache_ttl: Duration,
    /// `enable_online_feature_view_versioning`: versioned online tables (`<view>_v<N>`).
    pub enable_online_feature_view_versioning: bool,
}

/// `online_store:`.
#[derive(Clone, Debug)]
pub enum OnlineStoreConfig {
    /// `type: sqlite`.
    Sqlite(SqliteConfig),
    /// `type: redis`.
    Redis(RedisConfig),
}

impl OnlineStoreConfig {
    /// The store's `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            OnlineStoreConfig::Sqlite(_) => "sqlite",
            OnlineStoreConfig::Redis(_) => "redis",
        }
    }
}

/// `online_store: {type: sqlite, ...}`.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Absolute path of the database file.
    pub path: PathBuf,
}

/// `online_store: {type: redis, ...}` as Feast configures it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `type` (already checked).
    #[serde(rename = "type")]
    pub store_type: String,
    /// `redis_type`: `redis`, `redis_cluster` or `redis_sentinel`.
    #[serde(default = "default_redis_type")]
    pub redis_type: String,
    /// `connection_string`: `host:port[,host:port...][,key=value...]`.
    #[serde(default = "default_connection_string")]
    pub connection_string: String,
    /// `sentinel_master`, for `redis_sentinel`.
    #[serde(default = "default_sentinel_master")]
    pub sentinel_master: String,
    /// `key_ttl_seconds` (a write-side setting; parsed and reported).
    #[serde(default)]
    pub key_ttl_seconds: Option<u64>,
    /// `full_scan_for_deletion` (a write-side setting).
    #[serde(default)]
    pub full_scan_for_deletion: Option<bool>,
    /// `skip_dedup` (a write-side setting).
    #[serde(default)]
    pub skip_dedup: Option<bool>,
}

fn default_redis_type() -> String {
    "redis".into()
}
fn default_connection_string() -> String {
    "localhost:6379".into()
}
fn default_sentinel_master() -> String {
    "mymaster".into()
}

/// `feature_server:`.
#[derive(Clone, Debug, Default)]
pub struct FeatureServerConfig {
    /// `feature_server.feature_logging`.
    pub feature_logging: FeatureLoggingConfig,
}

/// `feature_server.feature_logging`, with Feast's defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct FeatureLoggingConfig {
    /// Whether served features are logged.
    pub enabled: bool,
    /// Seconds between flushes to the offline destination.
    pub flush_interval_secs: u64,
    /// Seconds between writes of buffered rows to disk.
    pub write_to_disk_interval_secs: u64,
    /// Longest wait to enqueue a log row, in microseconds.
    pub emit_timeout_micro_secs: u64,
    /// Rows the queue holds before rows are dropped.
    pub queue_capacity: usize,
}

impl Default for FeatureLoggingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            flush_interval_secs: 600,
            write_to_disk_interval_secs: 30,
            emit_timeout_micro_secs: 10_000,
            queue_capacity: 100_000,
        }
    }
}

#[derive(Deserialize)]
struct RawRepoConfig {
    project: Option<String>,
    registry: Option<RawRegistry>,
    provider: Option<String>,
    online_store: Option<serde_yaml::Value>,
    entity_key_serialization_version: Option<u32>,
    feature_server: Option<RawFeatureServer>,
    wasm_plugins: Option<crate::plugin::RawPluginConfig>,
    // Accepted for old scripts (Feast itself ignores them since 0.30).
    #[serde(rename = "go_feature_serving")]
    _go_feature_serving: Option<serde_yaml::Value>,
    #[serde(rename = "go_feature_retrieval")]
    _go_feature_retrieval: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRegistry {
    Path(String),
    Object(RawRegistryObject),
}

#[derive(Deserialize)]
struct RawRegistryObject {
    #[serde(default)]
    path: String,
    #[serde(default)]
    registry_type: Option<String>,
    #[serde(default)]
    registry_store_type: Option<String>,
    #[serde(default)]
    cache_ttl_seconds: Option<i64>,
    #[serde(default)]
    enable_online_feature_view_versioning: bool,
}

#[derive(Deserialize)]
struct RawFeatureServer {
    #[serde(default)]
    feature_logging: Option<FeatureLoggingConfig>,
}

#[derive(Deserialize)]
struct RawSqlite {
    #[serde(default = "default_sqlite_path")]
    path: String,
}

fn default_sqlite_path() -> String {
    "data/online.db".into()
}

/// Default registry cache TTL (Feast's `cache_ttl_seconds` default).
pub const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(600);

impl RepoConfig {
    /// Loads a `feature_store.yaml`; relative paths inside it resolve against
    /// `repo_dir`, as `feast -c REPO -f FILE` does.
    pub fn load(repo_dir: &Path, yaml_path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(yaml_path).map_err(|source| ConfigError::Read {
            path: yaml_path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, repo_dir, yaml_path)
    }

    /// Parses YAML text; `repo_dir` anchors relative paths, `source` names the file in errors.
    pub fn parse(text: &str, repo_dir: &Path, source: &Path) -> Result<Self, ConfigError> {
        let expanded = expand_env_vars(text);
        let de = serde_yaml::Deserializer::from_str(&expanded);
        let raw: RawRepoConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
                path: source.to_path_buf(),
                message: describe_path_error(&e),
            })?;
        let path = || source.to_path_buf();
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                repo_dir.join(p)
            }
        };

        let project = raw.project.ok_or(ConfigError::Missing {
            path: path(),
            key: "project",
        })?;
        let registry = match raw.registry.ok_or(ConfigError::Missing {
            path: path(),
            key: "registry",
        })? {
            RawRegistry::Path(p) => RegistryConfig {
                path: resolve(&check_registry_uri(&p, source)?),
                cache_ttl: DEFAULT_REGISTRY_TTL,
                enable_online_feature_view_versioning: false,
            },
            RawRegistry::Object(o) => {
                if let Some(t) = o.registry_type.as_deref()
                    && t != "file"
                {
                    return Err(ConfigError::Unsupported {
                        path: path(),
                        key: "registry.registry_type",
                        value: t.into(),
                        hint: "only the file registry (`registry_type: file`) is served".into(),
                    });
                }
                if let Some(t) = o.registry_store_type.as_deref()
                    && !matches!(
                        t,
                        "file" | "local" | "FileRegistryStore" | "LocalRegistryStore"
                    )
                {
                    return Err(ConfigError::Unsupported {
                        path: path(),
                        key: "registry.registry_store_type",
                        value: t.into(),
                        hint: "only local registry files are served".into(),
                    });
                }
                if o.path.is_empty() {
                    return Err(ConfigError::Missing {
                        path: path(),
                        key: "registry.path",
                    });
                }
                let ttl = o.cache_ttl_seconds.unwrap_or(600).max(0);
                RegistryConfig {
                    path: resolve(&check_registry_uri(&o.path, source)?),
                    cache_ttl: Duration::from_secs(ttl.unsigned_abs()),
                    enable_online_feature_view_versioning: o.enable_online_feature_view_versioning,
                }
            }
        };

        let online_store = parse_online_store(raw.online_store, source, &resolve)?;

        let entity_key_serialization_version = raw.entity_key_serialization_version.unwrap_or(3);
        if !matches!(entity_key_serialization_version, 2 | 3) {
            return Err(ConfigError::Unsupported {
                path: path(),
                key: "entity_key_serialization_version",
                value: entity_key_serialization_version.to_string(),
                hint: "versions 2 and 3 are supported (3 is Feast's default since 0.50)".into(),
            });
        }

        let feature_server = FeatureServerConfig {
            feature_logging: raw
                .feature_server
                .and_then(|f| f.feature_logging)
                .unwrap_or_default(),
        };

        let plugins = raw
            .wasm_plugins
            .unwrap_or_default()
            .resolve(&|p: &str| resolve(p));

        Ok(RepoConfig {
            plugins,
            repo_dir: repo_dir.to_path_buf(),
            source: source.to_path_buf(),
            project,
            provider: raw.provider.unwrap_or_else(|| "local".into()),
            registry,
            online_store,
            entity_key_serialization_version,
            feature_server,
        })
    }

    /// Checks that the files the configuration names exist (the registry, and the
    /// SQLite database when that is the store).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let missing = |key: &'static str, file: &Path| ConfigError::MissingFile {
            path: self.source.clone(),
            key,
            file: file.to_path_buf(),
        };
        if !self.registry.path.is_file() {
            return Err(missing("registry", &self.registry.path));
        }
        if let OnlineStoreConfig::Sqlite(s) = &self.online_store
            && !s.path.is_file()
        {
            return Err(missing("online_store.path", &s.path));
        }
        if let Some(d) = &self.plugins.directory
            && !d.is_dir()
        {
            return Err(missing("wasm_plugins.directory", d));
        }
        Ok(())
    }
}

fn check_registry_uri(p: &str, source: &Path) -> Result<String, ConfigError> {
    if let Some((scheme, _)) = p.split_once("://")
        && scheme != "file"
    {
        return Err(ConfigError::Unsupported {
            path: source.to_path_buf(),
            key: "registry.path",
            value: p.into(),
            hint: "only local registry files are served (copy the registry locally)".into(),
        });
    }
    Ok(p.strip_prefix("file://").unwrap_or(p).to_string())
}

fn parse_online_store(
    raw: Option<serde_yaml::Value>,
    source: &Path,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<OnlineStoreConfig, ConfigError> {
    let Some(value) = raw else {
        return Ok(OnlineStoreConfig::Sqlite(SqliteConfig {
            path: resolve(&default_sqlite_path()),
        }));
    };
    let store_type = value
        .get("type")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("sqlite")
        .to_string();
    let parse_err = |e: serde_path_to_error::Error<serde_yaml::Error>| ConfigError::Parse {
        path: source.to_path_buf(),
        message: format!("online_store.{}", describe_path_error(&e)),
    };
    match store_type.as_str() {
        "sqlite" | "feast.infra.online_stores.sqlite.SqliteOnlineStore" => {
            let raw: RawSqlite = serde_path_to_error::deserialize(value).map_err(parse_err)?;
            Ok(OnlineStoreConfig::Sqlite(SqliteConfig {
                path: resolve(&raw.path),
            }))
        }
        "redis" | "feast.infra.online_stores.redis.RedisOnlineStore" => {
            let cfg: RedisConfig = serde_path_to_error::deserialize(value).map_err(parse_err)?;
            if !matches!(
                cfg.redis_type.as_str(),
                "redis" | "redis_cluster" | "redis_sentinel"
            ) {
                return Err(ConfigError::Unsupported {
                    path: source.to_path_buf(),
                    key: "online_store.redis_type",
                    value: cfg.redis_type,
                    hint: "use redis, redis_cluster or redis_sentinel".into(),
                });
            }
            Ok(OnlineStoreConfig::Redis(cfg))
        }
        other => Err(ConfigError::Unsupported {
            path: source.to_path_buf(),
            key: "online_store.type",
            value: other.into(),
            hint: "supported online stores are sqlite and redis".into(),
        }),
    }
}

fn describe_path_error<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path == "." || path.is_empty() {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

/// Expands `$NAME` and `${NAME}` from the environment; unknown names stay as written.
pub fn expand_env_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (!name.is_empty())
            .then(|| std::env::var(name).ok())
            .flatten()
        {
            Some(v) => {
                out.push_str(&v);
                rest = &after[consumed..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RepoConfig, ConfigError> {
        RepoConfig::parse(
            text,
            Path::new("/repo"),
            Path::new("/repo/feature_store.yaml"),
        )
    }

    #[test]
    fn parses_the_feast_demo_config() {
        let cfg = parse(
            "project: repo\nregistry: data/registry.db\nprovider: local\nonline_store:\n    type: sqlite\n    path: data/online_store.db\nentity_key_serialization_version: 3\nauth:\n    type: no_auth\n",
        )
        .expect("demo config parses");
        assert_eq!(cfg.project, "repo");
        assert_eq!(cfg.registry.path, Path::new("/repo/data/registry.db"));
        assert_eq!(cfg.registry.cache_ttl, DEFAULT_REGISTRY_TTL);
        match cfg.online_store {
            OnlineStoreConfig::Sqlite(s) => {
                assert_eq!(s.path, Path::new("/repo/data/online_store.db"))
            }
            other => panic!("unexpected store {other:?}"),
        }
        assert_eq!(cfg.entity_key_serialization_version, 3);
        assert_eq!(
            cfg.feature_server.feature_logging,
            FeatureLoggingConfig::default()
        );
    }

    #[test]
    fn registry_object_form_and_logging_knobs() {
        let cfg = parse(
            "project: p\nregistry:\n  registry_type: file\n  path: /abs/reg.db\n  cache_ttl_seconds: 5\nfeature_server:\n  type: local\n  feature_logging:\n    enabled: true\n    queue_capacity: 7\ngo_feature_serving: true\nsomething_new: {a: 1}\n",
        )
        .expect("parses");
        assert_eq!(cfg.registry.path, Path::new("/abs/reg.db"));
        assert_eq!(cfg.registry.cache_ttl, Duration::from_secs(5));
        let fl = &cfg.feature_server.feature_logging;
        assert!(fl.enabled);
        assert_eq!(fl.queue_capacity, 7);
        assert_eq!(fl.flush_interval_secs, 600);
        // No online_store: Feast's sqlite default.
        match cfg.online_store {
            OnlineStoreConfig::Sqlite(s) => assert_eq!(s.path, Path::new("/repo/data/online.db")),
            other => panic!("unexpected store {other:?}"),
        }
    }

    #[test]
    fn wasm_plugins_key() {
        let cfg = parse("project: p\nregistry: r.db\nwasm_plugins:\n  directory: plugins\n  timeout_ms: 50\n  max_memory_mb: 32\n")
            .expect("parses");
        assert_eq!(
            cfg.plugins.directory.as_deref(),
            Some(Path::new("/repo/plugins"))
        );
        assert_eq!(cfg.plugins.timeout, Duration::from_millis(50));
        assert_eq!(cfg.plugins.max_memory_bytes, 32 << 20);
        let err =
            parse("project: p\nregistry: r.db\nwasm_plugins:\n  timeout: 5\n").expect_err("typo");
        assert!(err.to_string().contains("wasm_plugins"), "{err}");
    }

    #[test]
    fn redis_config_is_parsed_and_unknown_keys_rejected() {
        let cfg = parse(
            "project: p\nregistry: r.db\nonline_store:\n  type: redis\n  connection_string: \"127.0.0.1:6379,db=1\"\n  redis_type: redis_cluster\n  key_ttl_seconds: 60\n",
        )
        .expect("parses");
        match cfg.online_store {
            OnlineStoreConfig::Redis(r) => {
                assert_eq!(r.redis_type, "redis_cluster");
                assert_eq!(r.key_ttl_seconds, Some(60));
            }
            other => panic!("unexpected store {other:?}"),
        }
        let err = parse(
            "project: p\nregistry: r.db\nonline_store:\n  type: redis\n  conection_string: x\n",
        )
        .expect_err("typo is an error");
        assert!(err.to_string().contains("conection_string"), "{err}");
    }

    #[test]
    fn unsupported_values_name_the_key() {
        let err = parse("project: p\nregistry: r.db\nonline_store:\n  type: dynamodb\n")
            .expect_err("unsupported");
        assert!(err.to_string().contains("online_store.type"), "{err}");
        let err = parse("project: p\nregistry: s3://bucket/registry.db\n").expect_err("s3");
        assert!(err.to_string().contains("registry.path"), "{err}");
        let err =
            parse("project: p\nregistry:\n  registry_type: sql\n  path: x\n").expect_err("sql");
        assert!(err.to_string().contains("registry.registry_type"), "{err}");
        let err = parse("registry: r.db\n").expect_err("no project");
        assert!(err.to_string().contains("`project`"), "{err}");
        let err = parse("project: p\nregistry: r.db\nentity_key_serialization_version: 1\n")
            .expect_err("v1");
        assert!(
            err.to_string().contains("entity_key_serialization_version"),
            "{err}"
        );
    }

    #[test]
    fn env_vars_expand_like_python() {
        let path = std::env::var("PATH").expect("PATH is set for tests");
        assert_eq!(
            expand_env_vars("a ${PATH} $PATH $NOPE_NOT_SET_FEAST ${X"),
            format!("a {path} {path} $NOPE_NOT_SET_FEAST ${{X")
        );
    }
}
