//! `feature_store.yaml`, as Feast 0.67 writes and reads it.
//!
//! Strictness follows Feast's own models: top-level keys and `registry:` keys this
//! server does not use are ignored (Feast's `extra="allow"`), while the sections
//! Feast checks strictly (`online_store`, `feature_server`,
//! `feature_server.feature_logging`, all `extra="forbid"` there) reject a key Feast
//! does not know, naming it; `wasm_plugins` (this server's own key) rejects unknown
//! keys too. The `online_store` section is kept as written and parsed by the store
//! its `type` names ([`crate::online_store`]); `wasm_plugins` by the plugin runtime.
//!
//! `${VAR}` and `$VAR` are expanded from the environment before parsing (unset
//! variables are left as they are, like Python's `os.path.expandvars`). Relative
//! paths resolve against the repo directory (the directory holding
//! `feature_store.yaml`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

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
    pub online_store: StoreSection,
    /// `entity_key_serialization_version` (2 or 3; default 3).
    pub entity_key_serialization_version: u32,
    /// `feature_server`.
    pub feature_server: FeatureServerConfig,
    /// `wasm_plugins` as written (this server's own key; Feast ignores it).
    pub wasm_plugins: Option<serde_yaml::Value>,
    /// `auth`.
    pub auth: AuthSection,
}

/// `auth:` as written: its `type` (checked against Feast's) and the whole section,
/// which the authenticator of that type parses.
#[derive(Clone, Debug)]
pub struct AuthSection {
    /// `type`: `no_auth` (also when `auth` is absent), `oidc` or `kubernetes`.
    pub type_name: String,
    /// The section (a null value when `auth` is absent).
    pub raw: serde_yaml::Value,
}

/// The `auth.type` values Feast 0.67 accepts.
const AUTH_TYPES: [&str; 3] = ["no_auth", "kubernetes", "oidc"];

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

/// `online_store:` as written: its `type` (Feast's default, `sqlite`, when absent)
/// and the whole section, which the store of that type parses.
#[derive(Clone, Debug)]
pub struct StoreSection {
    /// `type`.
    pub type_name: String,
    /// The section (a null value when `online_store` is absent).
    pub raw: serde_yaml::Value,
}

/// `feature_server:`.
#[derive(Clone, Debug, Default)]
pub struct FeatureServerConfig {
    /// `feature_server.feature_logging`.
    pub feature_logging: FeatureLoggingConfig,
}

/// `feature_server.feature_logging`, with Feast's defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
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
    wasm_plugins: Option<serde_yaml::Value>,
    auth: Option<serde_yaml::Value>,
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

/// `feature_server:` with every key Feast 0.67's local feature server config knows
/// (`extra="forbid"` there); only `feature_logging` is used.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeatureServer {
    #[serde(default)]
    feature_logging: Option<FeatureLoggingConfig>,
    #[serde(rename = "type", default)]
    _type: Option<String>,
    #[serde(rename = "enabled", default)]
    _enabled: Option<bool>,
    #[serde(rename = "metrics", default)]
    _metrics: Option<serde_yaml::Value>,
    #[serde(rename = "audit_logging", default)]
    _audit_logging: Option<serde_yaml::Value>,
    #[serde(rename = "offline_push_batching_enabled", default)]
    _offline_push_batching_enabled: Option<bool>,
    #[serde(rename = "offline_push_batching_batch_size", default)]
    _offline_push_batching_batch_size: Option<i64>,
    #[serde(rename = "offline_push_batching_batch_interval_seconds", default)]
    _offline_push_batching_batch_interval_seconds: Option<i64>,
    #[serde(rename = "transformation_service_endpoint", default)]
    _transformation_service_endpoint: Option<String>,
}

/// Default registry cache TTL (Feast's `cache_ttl_seconds` default).
pub(crate) const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(600);

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
        let resolve = |p: &str| resolve_in(repo_dir, p);

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

        let online_store = match raw.online_store {
            None => StoreSection {
                type_name: "sqlite".into(),
                raw: serde_yaml::Value::Null,
            },
            Some(raw) => StoreSection {
                type_name: raw
                    .get("type")
                    .and_then(serde_yaml::Value::as_str)
                    .unwrap_or("sqlite")
                    .to_string(),
                raw,
            },
        };

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

        let auth = auth_section(raw.auth, source)?;

        Ok(RepoConfig {
            auth,
            wasm_plugins: raw.wasm_plugins,
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

    /// Checks that the registry file exists.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        if !self.registry.path.is_file() {
            return Err(ConfigError::MissingFile {
                path: self.source.clone(),
                key: "registry",
                file: self.registry.path.clone(),
            });
        }
        Ok(())
    }

    /// A path from the configuration: relative ones are taken from the repo directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        resolve_in(&self.repo_dir, p)
    }

    /// Parses a section of this file (found at `key`, e.g. `online_store`) into `T`;
    /// errors name the file and the key path.
    pub fn parse_section<T: DeserializeOwned>(
        &self,
        key: &str,
        raw: serde_yaml::Value,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(raw).map_err(|e| ConfigError::Parse {
            path: self.source.clone(),
            message: format!("{key}.{}", describe_path_error(&e)),
        })
    }
}

/// Checks `auth.type` as Feast does (`repo_config.py`): present, and one Feast knows.
fn auth_section(raw: Option<serde_yaml::Value>, source: &Path) -> Result<AuthSection, ConfigError> {
    let Some(raw) = raw.filter(|v| !v.is_null()) else {
        return Ok(AuthSection {
            type_name: "no_auth".into(),
            raw: serde_yaml::Value::Null,
        });
    };
    let possible = format!(
        "Possible values=[{}]",
        AUTH_TYPES.map(|t| format!("'{t}'")).join(", ")
    );
    let type_name = match raw.get("type") {
        None => {
            return Err(ConfigError::Parse {
                path: source.to_path_buf(),
                message: format!("auth configuration is missing authentication type. {possible}"),
            });
        }
        Some(t) => t.as_str().unwrap_or_default().to_string(),
    };
    if !AUTH_TYPES.contains(&type_name.as_str()) {
        return Err(ConfigError::Parse {
            path: source.to_path_buf(),
            message: format!(
                "auth configuration has invalid authentication type={}. {possible}",
                display_yaml(raw.get("type"))
            ),
        });
    }
    Ok(AuthSection { type_name, raw })
}

/// A YAML scalar as written (for messages).
fn display_yaml(v: Option<&serde_yaml::Value>) -> String {
    match v {
        Some(serde_yaml::Value::String(s)) => s.clone(),
        Some(other) => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
        None => String::new(),
    }
}

fn resolve_in(repo_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        repo_dir.join(p)
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

fn describe_path_error<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path == "." || path.is_empty() {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

/// Expands `$NAME` and `${NAME}` from the environment; unknown names stay as written.
pub(crate) fn expand_env_vars(text: &str) -> String {
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
        assert_eq!(cfg.online_store.type_name, "sqlite");
        assert_eq!(
            cfg.online_store.raw.get("path").and_then(|p| p.as_str()),
            Some("data/online_store.db")
        );
        assert_eq!(cfg.entity_key_serialization_version, 3);
        assert_eq!(
            cfg.feature_server.feature_logging,
            FeatureLoggingConfig::default()
        );
    }

    #[test]
    fn registry_object_form_and_logging_knobs() {
        let cfg = parse(
            "project: p\nregistry:\n  registry_type: file\n  path: /abs/reg.db\n  cache_ttl_seconds: 5\n  cache_mode: thread\nfeature_server:\n  type: local\n  feature_logging:\n    enabled: true\n    queue_capacity: 7\ngo_feature_serving: true\nsomething_new: {a: 1}\n",
        )
        .expect("parses");
        assert_eq!(cfg.registry.path, Path::new("/abs/reg.db"));
        assert_eq!(cfg.registry.cache_ttl, Duration::from_secs(5));
        let fl = &cfg.feature_server.feature_logging;
        assert!(fl.enabled);
        assert_eq!(fl.queue_capacity, 7);
        assert_eq!(fl.flush_interval_secs, 600);
        // No online_store: Feast's sqlite default.
        assert_eq!(cfg.online_store.type_name, "sqlite");
        assert!(cfg.online_store.raw.is_null());
    }

    #[test]
    fn strict_sections_reject_keys_feast_does_not_know() {
        // Top level and registry: ignored, as Feast's extra="allow".
        parse("project: p\nregistry:\n  path: r.db\n  future_knob: 1\nnew_top_level: x\n")
            .expect("lenient where Feast is");
        // feature_server and feature_logging: extra="forbid" in Feast.
        let err = parse("project: p\nregistry: r.db\nfeature_server:\n  feature_loging: {}\n")
            .expect_err("typo");
        assert!(err.to_string().contains("feature_loging"), "{err}");
        let err = parse(
            "project: p\nregistry: r.db\nfeature_server:\n  feature_logging:\n    enabeld: true\n",
        )
        .expect_err("typo");
        assert!(err.to_string().contains("enabeld"), "{err}");
    }

    #[test]
    fn sections_are_parsed_with_the_key_path_in_errors() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[expect(dead_code, reason = "only parsed")]
        struct Section {
            port: u16,
        }
        let cfg = parse("project: p\nregistry: r.db\nonline_store:\n  type: x\n  port: high\n")
            .expect("parses");
        assert_eq!(cfg.online_store.type_name, "x");
        let mut raw = cfg.online_store.raw.clone();
        if let Some(m) = raw.as_mapping_mut() {
            m.remove("type");
        }
        let err = cfg
            .parse_section::<Section>("online_store", raw)
            .expect_err("not a port");
        let text = err.to_string();
        assert!(text.contains("online_store.port"), "{text}");
        assert!(text.contains("/repo/feature_store.yaml"), "{text}");
        assert_eq!(cfg.resolve_path("data/x"), Path::new("/repo/data/x"));
        assert_eq!(cfg.resolve_path("/abs"), Path::new("/abs"));
    }

    #[test]
    fn unsupported_values_name_the_key() {
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
