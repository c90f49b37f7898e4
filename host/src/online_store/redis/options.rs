//! Feast's Redis `connection_string`: comma-separated parts; `host:port` parts are
//! nodes (the first for a single server, all of them for a cluster or the sentinels),
//! `key=value` parts are options named as redis-py names them (Feast passes them to
//! redis-py as keyword arguments), values JSON-decoded when possible.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `online_store: {type: redis, ...}`: the keys Feast 0.67's Redis config knows (it
/// rejects others).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisConfig {
    /// `type` (already matched by the store factory).
    #[serde(rename = "type", default)]
    pub(crate) _type: Option<String>,
    /// `redis_type`: `redis`, `redis_cluster` or `redis_sentinel`.
    #[serde(default = "default_redis_type")]
    pub(crate) redis_type: String,
    /// `connection_string`: `host:port[,host:port...][,key=value...]`.
    #[serde(default = "default_connection_string")]
    pub(crate) connection_string: String,
    /// `sentinel_master`, for `redis_sentinel`.
    #[serde(default = "default_sentinel_master")]
    pub(crate) sentinel_master: String,
    /// `key_ttl_seconds`: how long written entity hashes live (a write-side setting).
    #[serde(default)]
    pub(crate) key_ttl_seconds: Option<i64>,
    /// `full_scan_for_deletion` (a write-side setting of `feast apply`).
    #[serde(rename = "full_scan_for_deletion", default)]
    pub(crate) _full_scan_for_deletion: Option<bool>,
    /// `skip_dedup` (a write-side setting).
    #[serde(default)]
    pub(crate) skip_dedup: Option<bool>,
    /// `client`: which Python client Feast reads with (`redis` or `glide`); no
    /// difference here.
    #[serde(rename = "client", default)]
    pub(crate) _client: Option<String>,
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

/// Options of Feast's connection string this server understands (see the README's
/// Redis section for what each does); the last four are accepted and have no effect.
const SUPPORTED_OPTIONS: &[&str] = &[
    "password",
    "username",
    "db",
    "ssl",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "socket_timeout",
    "socket_connect_timeout",
    "skip_full_coverage_check",
    "health_check_interval",
    "socket_keepalive",
    "decode_responses",
];

/// Which Redis deployment to talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server.
    Standalone,
    /// A Redis Cluster; nodes are seeds.
    Cluster,
    /// Sentinels that name the master of `master`.
    Sentinel {
        /// `sentinel_master`.
        master: String,
    },
}

/// Parsed connection settings.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RedisOptions {
    /// Deployment kind.
    pub topology: Topology,
    /// `(host, port)` of each node.
    pub nodes: Vec<(String, u16)>,
    /// AUTH password.
    pub password: Option<String>,
    /// ACL user.
    pub username: Option<String>,
    /// Database number.
    pub db: i64,
    /// Connect with TLS.
    pub tls: bool,
    /// Skip certificate verification.
    pub tls_insecure: bool,
    /// PEM file of the CAs to trust instead of the system's roots (`ssl_ca_certs`).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM files of a client certificate and its key (`ssl_certfile`, `ssl_keyfile`).
    pub tls_client_files: Option<(PathBuf, PathBuf)>,
    /// Reply timeout.
    pub response_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// A problem with the Redis settings, naming the key and the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("online_store.{key}: {message}")]
pub(crate) struct OptionsError {
    key: &'static str,
    message: String,
}

/// A problem with the connection string.
fn conn_error(message: String) -> OptionsError {
    OptionsError {
        key: "connection_string",
        message,
    }
}

impl RedisOptions {
    /// Parses the store configuration.
    pub(crate) fn from_config(cfg: &RedisConfig) -> Result<Self, OptionsError> {
        let topology = match cfg.redis_type.as_str() {
            "redis" => Topology::Standalone,
            "redis_cluster" => Topology::Cluster,
            "redis_sentinel" => Topology::Sentinel {
                master: cfg.sentinel_master.clone(),
            },
            other => {
                return Err(OptionsError {
                    key: "redis_type",
                    message: format!(
                        "{other:?} is not supported: use redis, redis_cluster or redis_sentinel"
                    ),
                });
            }
        };
        let mut opts = RedisOptions {
            topology,
            nodes: Vec::new(),
            password: None,
            username: None,
            db: 0,
            tls: false,
            tls_insecure: false,
            tls_ca_file: None,
            tls_client_files: None,
            response_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        };
        let (mut certfile, mut keyfile) = (None, None);
        for part in cfg
            .connection_string
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match part.split_once('=') {
                None => opts.nodes.push(parse_node(part)?),
                Some((k, v)) => match (k.trim(), unquote(v.trim())) {
                    ("ssl_certfile", v) => certfile = Some(PathBuf::from(v)),
                    ("ssl_keyfile", v) => keyfile = Some(PathBuf::from(v)),
                    (k, v) => opts.set(k, v)?,
                },
            }
        }
        if opts.nodes.is_empty() {
            return Err(conn_error(format!(
                "{:?} names no host:port",
                cfg.connection_string
            )));
        }
        opts.tls_client_files = match (certfile, keyfile) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(conn_error(
                    "ssl_certfile and ssl_keyfile go together (a client certificate and its key)"
                        .into(),
                ));
            }
        };
        Ok(opts)
    }

    /// Resolves relative certificate paths against `dir` (the feature repository).
    pub(crate) fn with_files_under(mut self, dir: &Path) -> Self {
        let under = |p: &mut PathBuf| *p = dir.join(&*p);
        if let Some(ca) = &mut self.tls_ca_file {
            under(ca);
        }
        if let Some((cert, key)) = &mut self.tls_client_files {
            under(cert);
            under(key);
        }
        self
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), OptionsError> {
        let bad = |what: &str| conn_error(format!("{key}={value:?}: {what}"));
        match key {
            "password" => self.password = Some(value.to_string()),
            "username" => self.username = Some(value.to_string()),
            "db" => self.db = value.parse().map_err(|_| bad("expected an integer"))?,
            "ssl" => self.tls = parse_bool(value).ok_or_else(|| bad("expected true or false"))?,
            "ssl_cert_reqs" => {
                self.tls_insecure = match value.to_ascii_lowercase().as_str() {
                    "none" | "cert_none" => true,
                    "required" | "cert_required" | "optional" | "cert_optional" => false,
                    _ => return Err(bad("expected none or required")),
                }
            }
            "ssl_ca_certs" => self.tls_ca_file = Some(PathBuf::from(value)),
            "socket_timeout" => {
                self.response_timeout = parse_secs(value).ok_or_else(|| bad("expected seconds"))?
            }
            "socket_connect_timeout" => {
                self.connect_timeout = parse_secs(value).ok_or_else(|| bad("expected seconds"))?
            }
            k if SUPPORTED_OPTIONS.contains(&k) => {}
            _ => {
                return Err(conn_error(format!(
                    "unknown option {key:?}; supported: {}",
                    SUPPORTED_OPTIONS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn parse_secs(v: &str) -> Option<Duration> {
    let s: f64 = v.parse().ok()?;
    (s.is_finite() && s > 0.0).then(|| Duration::from_secs_f64(s))
}

fn parse_node(part: &str) -> Result<(String, u16), OptionsError> {
    let part = part
        .strip_prefix("redis://")
        .or_else(|| part.strip_prefix("rediss://"))
        .unwrap_or(part);
    let (host, port) = match part.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| conn_error(format!("{part:?}: the port is not a number")))?,
        ),
        None => (part, 6379),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(conn_error(format!("{part:?}: no host")));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(conn: &str, redis_type: &str) -> RedisConfig {
        serde_yaml::from_str(&format!(
            "{{type: redis, redis_type: {redis_type}, connection_string: {conn:?}}}"
        ))
        .expect("a Redis section")
    }

    #[tokio::test]
    async fn ipv6_hosts_make_connection_settings() {
        for redis_type in ["redis", "redis_cluster", "redis_sentinel"] {
            let opts =
                RedisOptions::from_config(&cfg("[::1]:6390,ssl=true", redis_type)).expect("parses");
            assert_eq!(opts.nodes, vec![("::1".to_string(), 6390)]);
            super::super::RedisStore::new(opts, Default::default(), "p", 2).expect(redis_type);
        }
    }

    #[test]
    fn parses_feast_connection_strings() {
        let o = RedisOptions::from_config(&cfg(
            "127.0.0.1:6390,ssl=true,password=s3cret,db=2,socket_timeout=0.25",
            "redis",
        ))
        .expect("parses");
        assert_eq!(o.nodes, vec![("127.0.0.1".to_string(), 6390)]);
        assert!(o.tls);
        assert_eq!(o.password.as_deref(), Some("s3cret"));
        assert_eq!(o.db, 2);
        assert_eq!(o.response_timeout, Duration::from_millis(250));
        let c =
            RedisOptions::from_config(&cfg("a:7000, b:7001,c", "redis_cluster")).expect("parses");
        assert_eq!(c.topology, Topology::Cluster);
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[2], ("c".to_string(), 6379));
        let s = RedisOptions::from_config(&cfg("s1:26379", "redis_sentinel")).expect("parses");
        assert_eq!(
            s.topology,
            Topology::Sentinel {
                master: "mymaster".into()
            }
        );
    }

    #[test]
    fn certificate_files_resolve_under_the_repository() {
        let o = RedisOptions::from_config(&cfg(
            "h:1,ssl=true,ssl_ca_certs=ca.pem,ssl_certfile=/etc/c.pem,ssl_keyfile=k.pem",
            "redis",
        ))
        .expect("parses")
        .with_files_under(Path::new("/repo"));
        assert_eq!(o.tls_ca_file, Some(PathBuf::from("/repo/ca.pem")));
        assert_eq!(
            o.tls_client_files,
            Some((PathBuf::from("/etc/c.pem"), PathBuf::from("/repo/k.pem")))
        );
        let e = RedisOptions::from_config(&cfg("h:1,ssl=true,ssl_certfile=c.pem", "redis"))
            .expect_err("a certificate without its key");
        assert!(e.to_string().contains("go together"), "{e}");
    }

    #[test]
    fn rejects_unknown_or_bad_options() {
        let e = RedisOptions::from_config(&cfg("h:1,pasword=x", "redis")).expect_err("typo");
        assert!(e.to_string().contains("unknown option \"pasword\""), "{e}");
        assert!(RedisOptions::from_config(&cfg("h:x", "redis")).is_err());
        assert!(RedisOptions::from_config(&cfg("db=1", "redis")).is_err());
        assert!(RedisOptions::from_config(&cfg("h:1,db=one", "redis")).is_err());
        assert!(RedisOptions::from_config(&cfg("h:1,ssl=maybe", "redis")).is_err());
        let e = RedisOptions::from_config(&cfg("h:1", "redis_clustr")).expect_err("typo");
        assert!(e.to_string().starts_with("online_store.redis_type"), "{e}");
    }

    #[test]
    fn the_section_has_feasts_keys_only() {
        let parse = |text: &str| serde_yaml::from_str::<RedisConfig>(text);
        let cfg = parse("{type: redis, connection_string: 'h:1', key_ttl_seconds: 60, client: glide, skip_dedup: true}")
            .expect("Feast's keys");
        assert_eq!(cfg.key_ttl_seconds, Some(60));
        let e = parse("{type: redis, conection_string: 'h:1'}").expect_err("typo");
        assert!(e.to_string().contains("conection_string"), "{e}");
    }
}
