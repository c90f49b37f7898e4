//! Which feature services are logged and where: a service's `logging_config`
//! resolved against one registry into a [`ServiceTarget`] (schema, sample rate,
//! destination directory, partition columns), cached per registry snapshot so the
//! request path does one map lookup.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;

use super::schema::{ColumnKind, Input, LogSchema, SchemaError, build_schema};
use crate::registry::{
    FeatureService, LoggingDestination, Registry, RegistrySnapshot, SnapshotCache,
};

/// Directory, inside a destination, where rows wait between write and flush.
/// Readers (pyarrow, dask) skip names starting with a dot.
pub(super) const STAGING_DIR: &str = ".feast-server-logging";

/// Why a service with a `logging_config` is not logged.
#[derive(Debug, thiserror::Error)]
pub(super) enum TargetError {
    /// The destination is not a file destination.
    #[error(
        "feature service {service}: logging destination {kind} is not supported by this server (only file destinations are); its requests are not logged"
    )]
    UnsupportedDestination {
        /// The service.
        service: String,
        /// The destination kind.
        kind: String,
    },
    /// The logging config has no destination.
    #[error(
        "feature service {service}: logging_config has no destination; its requests are not logged"
    )]
    NoDestination {
        /// The service.
        service: String,
    },
    /// The log schema cannot be built.
    #[error("{0}; its requests are not logged")]
    Schema(#[from] SchemaError),
    /// `partition_by` names a column that is not in the schema or cannot name a directory.
    #[error(
        "feature service {service}: partition_by column {column} is not a logged join key, request-data field, __log_date or __request_id; its requests are not logged"
    )]
    BadPartitionColumn {
        /// The service.
        service: String,
        /// The column.
        column: String,
    },
}

/// A logged feature service, resolved against one registry.
#[derive(Debug)]
pub(crate) struct ServiceTarget {
    /// The service name.
    pub service: String,
    /// The log schema.
    pub schema: LogSchema,
    /// Fraction of requests logged.
    pub sample_rate: f32,
    /// The destination directory (absolute).
    pub destination: PathBuf,
    /// Columns (indices into the schema) the files are partitioned by, in order.
    pub partition_by: Vec<usize>,
    /// This service's staging directory inside the destination.
    pub staging: PathBuf,
}

impl ServiceTarget {
    /// Whether this request is logged (`sample_rate` applied per request).
    pub(crate) fn sampled(&self) -> bool {
        self.sample_rate >= 1.0 || (self.sample_rate > 0.0 && fastrand::f32() < self.sample_rate)
    }
}

/// `service`'s target, `Ok(None)` when it has no `logging_config`.
pub(super) fn resolve(
    registry: &Registry,
    service: &FeatureService,
    repo_dir: &Path,
) -> Result<Option<ServiceTarget>, TargetError> {
    let Some(logging) = &service.logging else {
        return Ok(None);
    };
    let (path, partition_by) = match &logging.destination {
        LoggingDestination::File { path, partition_by } => (path, partition_by),
        LoggingDestination::Unsupported(kind) => {
            return Err(TargetError::UnsupportedDestination {
                service: service.name.clone(),
                kind: kind.clone(),
            });
        }
        LoggingDestination::None => {
            return Err(TargetError::NoDestination {
                service: service.name.clone(),
            });
        }
    };
    let schema = build_schema(registry, service)?;
    let partition_by = partition_by
        .iter()
        .map(|c| {
            let bad = || TargetError::BadPartitionColumn {
                service: service.name.clone(),
                column: c.clone(),
            };
            let idx = schema.column(c).ok_or_else(bad)?;
            match schema.kinds[idx] {
                ColumnKind::LogDate | ColumnKind::RequestId => Ok(idx),
                ColumnKind::Input { input, .. }
                    if !matches!(schema.inputs[input], Input::Feature { .. }) =>
                {
                    Ok(idx)
                }
                _ => Err(bad()),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let destination = repo_dir.join(path);
    let staging = destination.join(STAGING_DIR).join(sanitize(&service.name));
    Ok(Some(ServiceTarget {
        service: service.name.clone(),
        schema,
        sample_rate: logging.sample_rate,
        destination,
        partition_by,
        staging,
    }))
}

/// A service name usable as one directory name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// Every logged service of a registry: targets, and why the others are not logged.
pub(super) fn resolve_all(
    registry: &Registry,
    repo_dir: &Path,
) -> (Vec<Arc<ServiceTarget>>, Vec<TargetError>) {
    let mut names: Vec<&String> = registry.services.keys().collect();
    names.sort();
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        if let Some(service) = registry.services.get(name) {
            match resolve(registry, service, repo_dir) {
                Ok(Some(t)) => targets.push(Arc::new(t)),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    (targets, errors)
}

/// Where each input of a target is found for one response shape.
#[derive(Debug)]
pub(crate) struct Binding {
    /// The response's column names this binding was made for.
    pub names: Arc<[String]>,
    /// Per input: the response column, or `None` for request data (taken from the
    /// request) and for inputs the response lacks (logged as nulls).
    pub columns: Vec<Option<usize>>,
}

impl Binding {
    fn new(schema: &LogSchema, names: &Arc<[String]>, full: bool) -> Self {
        let find = |n: &str| names.iter().position(|x| x == n);
        let columns = schema
            .inputs
            .iter()
            .map(|input| match input {
                Input::JoinKey(n) => find(n),
                Input::RequestData(_) => None,
                Input::Feature { full: f, short: s } => {
                    let (first, second) = if full { (f, s) } else { (s, f) };
                    find(first).or_else(|| find(second))
                }
            })
            .collect();
        Binding {
            names: names.clone(),
            columns,
        }
    }
}

/// A logged service as requests see it: its target and the binding of the last
/// response shape seen.
#[derive(Debug)]
pub(crate) struct ServiceLog {
    /// The target.
    pub target: Arc<ServiceTarget>,
    full_feature_names: bool,
    binding: ArcSwapOption<Binding>,
}

impl ServiceLog {
    /// The binding for a response with these column names (rebuilt when they change).
    pub(crate) fn binding(&self, names: &Arc<[String]>) -> Arc<Binding> {
        if let Some(b) = self.binding.load_full()
            && (Arc::ptr_eq(&b.names, names) || *b.names == **names)
        {
            return b;
        }
        let b = Arc::new(Binding::new(
            &self.target.schema,
            names,
            self.full_feature_names,
        ));
        self.binding.store(Some(b.clone()));
        b
    }
}

/// Resolved services of one registry snapshot: by service name, `[short names,
/// full names]`.
type Resolved = RwLock<HashMap<String, [Option<Arc<ServiceLog>>; 2]>>;

/// Resolved services per registry snapshot.
#[derive(Debug)]
pub(super) struct TargetCache {
    repo_dir: PathBuf,
    services: SnapshotCache<Resolved>,
}

impl TargetCache {
    /// An empty cache resolving destinations against `repo_dir`.
    pub(super) fn new(repo_dir: PathBuf, snapshot: Arc<RegistrySnapshot>) -> Self {
        TargetCache {
            repo_dir,
            services: SnapshotCache::new(snapshot, Resolved::default()),
        }
    }

    /// The logged service behind a request, `None` when it is not logged.
    pub(super) fn get(
        &self,
        snapshot: &Arc<RegistrySnapshot>,
        service: &str,
        full_feature_names: bool,
    ) -> Option<Arc<ServiceLog>> {
        let slot = usize::from(full_feature_names);
        let services = self.services.get(snapshot, Resolved::default);
        if let Ok(known) = services.read()
            && let Some(entry) = known.get(service)
        {
            return entry[slot].clone();
        }
        let target = snapshot
            .registry
            .services
            .get(service)
            .and_then(|s| {
                resolve(&snapshot.registry, s, &self.repo_dir)
                    .ok()
                    .flatten()
            })
            .map(Arc::new);
        let log = |full: bool| {
            target.as_ref().map(|t| {
                Arc::new(ServiceLog {
                    target: t.clone(),
                    full_feature_names: full,
                    binding: ArcSwapOption::empty(),
                })
            })
        };
        let entry = [log(false), log(true)];
        let found = entry[slot].clone();
        if let Ok(mut known) = services.write() {
            known.entry(service.to_string()).or_insert(entry);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn service_names_become_single_safe_directories() {
        assert_eq!(sanitize("driver_activity_v1"), "driver_activity_v1");
        assert_eq!(sanitize("a/b c"), "a_b_c");
        assert_eq!(sanitize(".."), "_..");
        assert_eq!(sanitize(""), "_");
    }
}
