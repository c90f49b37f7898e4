//! `registry.db` bytes (a serialized `feast.core.Registry`) to the serving model.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::{
    Action, DUMMY_ENTITY_ID, DUMMY_ENTITY_NAME, DataSource, Entity, FeatureService, FeatureView,
    Field, JoinKey, LoggingConfig, LoggingDestination, OdfvSource, OnDemandFeatureView, Permission,
    Policy, Projection, Registry, ResourceType, SourceKind, Udf, ViewKind,
};
use crate::entity_key::KeyLayout;
use crate::proto::feast::core as pb;
use crate::value::{EventTime, ValueType};

/// Why a registry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("cannot read registry {path}: {source}")]
    Read {
        /// The registry file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a `feast.core.Registry`.
    #[error("registry {path} is not a Feast registry: {source}")]
    Decode {
        /// The registry file.
        path: PathBuf,
        /// Protobuf decoding error.
        source: prost::DecodeError,
    },
    /// The bytes decode but lack what every Feast write sets (an empty or truncated
    /// file, e.g. read while Feast was rewriting it).
    #[error(
        "registry {path} is incomplete (no version_id): it may be in the middle of being written"
    )]
    Incomplete {
        /// The registry file.
        path: PathBuf,
    },
}

/// Options that shape the model.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Entity key serialization version (2 or 3).
    pub key_version: u32,
    /// `registry.enable_online_feature_view_versioning`.
    pub versioning: bool,
}

/// Decodes registry bytes and keeps the objects of `project`.
pub(crate) fn decode_registry(
    bytes: &[u8],
    project: &str,
    opts: DecodeOptions,
) -> Result<Registry, prost::DecodeError> {
    let raw = pb::Registry::decode(bytes)?;
    Ok(build(raw, project, opts))
}

fn in_project(object_project: &str, project: &str) -> bool {
    object_project.is_empty() || object_project == project
}

fn build(raw: pb::Registry, project: &str, opts: DecodeOptions) -> Registry {
    let mut reg = Registry {
        project: project.to_string(),
        versioning: opts.versioning,
        version_id: raw.version_id.clone(),
        ..Registry::default()
    };
    let mut other_projects = std::collections::BTreeSet::new();
    let mut keep = |p: &str| {
        let ok = in_project(p, project);
        if !ok {
            other_projects.insert(p.to_string());
        }
        ok
    };

    for e in raw.entities.into_iter().filter_map(|e| e.spec) {
        if keep(&e.project) {
            reg.entities.insert(
                e.name.clone(),
                Entity {
                    name: e.name,
                    join_key: e.join_key,
                    value_type: e.value_type,
                },
            );
        }
    }

    let mut views = Vec::new();
    for fv in raw.feature_views {
        let meta = fv.meta.unwrap_or_default();
        if let Some(s) = fv.spec
            && keep(&s.project)
        {
            views.push(RawView {
                name: s.name,
                kind: ViewKind::Batch,
                entities: s.entities,
                entity_columns: s.entity_columns,
                features: s.features,
                ttl: s.ttl,
                disabled: s.disabled,
                version: meta.current_version_number,
                push_source: s.stream_source.as_ref().and_then(push_source_name),
                batch_source: s.batch_source,
                online: s.online,
                meta,
                tags: s.tags.into_iter().collect(),
            });
        }
    }
    for sfv in raw.stream_feature_views {
        let meta = sfv.meta.unwrap_or_default();
        if let Some(s) = sfv.spec
            && keep(&s.project)
        {
            views.push(RawView {
                name: s.name,
                kind: ViewKind::Stream,
                entities: s.entities,
                entity_columns: s.entity_columns,
                features: s.features,
                ttl: s.ttl,
                disabled: s.disabled,
                version: meta.current_version_number,
                push_source: s.stream_source.as_ref().and_then(push_source_name),
                batch_source: s.batch_source,
                online: s.online,
                meta,
                tags: s.tags.into_iter().collect(),
            });
        }
    }
    for lv in raw.label_views {
        if let Some(s) = lv.spec
            && keep(&s.project)
        {
            views.push(RawView {
                name: s.name,
                kind: ViewKind::Label,
                entities: s.entities,
                entity_columns: s.entity_columns,
                features: s.features,
                ttl: s.ttl,
                disabled: false,
                version: 0,
                push_source: s.source.as_ref().and_then(push_source_name),
                batch_source: s.source,
                online: s.online,
                meta: pb::FeatureViewMeta::default(),
                tags: s.tags.into_iter().collect(),
            });
        }
    }
    for odfv in raw.on_demand_feature_views {
        let meta = odfv.meta.unwrap_or_default();
        let Some(s) = odfv.spec else { continue };
        if !keep(&s.project) {
            continue;
        }
        if s.write_to_online_store {
            views.push(RawView {
                name: s.name.clone(),
                kind: ViewKind::WrittenOnDemand,
                entities: s.entities.clone(),
                entity_columns: s.entity_columns.clone(),
                features: s.features.clone(),
                ttl: None,
                disabled: s.disabled,
                version: meta.current_version_number,
                push_source: None,
                batch_source: None,
                online: true,
                meta: pb::FeatureViewMeta {
                    state: meta.state,
                    ..Default::default()
                },
                tags: s.tags.clone().into_iter().collect(),
            });
        }
        // A view written to the store is read from it; its transformation is also
        // kept, for writes that transform.
        let odfv = build_odfv(s);
        reg.odfvs.insert(odfv.name.clone(), Arc::new(odfv));
    }

    for v in views {
        if let Some(push) = &v.push_source {
            reg.push_sources
                .entry(push.clone())
                .or_default()
                .push(v.name.clone());
        }
        let view = build_view(v, &reg.entities, opts);
        if let Some(p) = &view.problem {
            reg.warnings
                .push(format!("feature view {}: {p}", view.name));
        }
        reg.views.insert(view.name.clone(), Arc::new(view));
    }

    for fs in raw.feature_services.into_iter().filter_map(|f| f.spec) {
        if !keep(&fs.project) {
            continue;
        }
        let logging = fs.logging_config.map(|l| LoggingConfig {
            sample_rate: l.sample_rate,
            destination: match l.destination {
                Some(pb::logging_config::Destination::FileDestination(f)) => {
                    LoggingDestination::File {
                        path: f.path,
                        partition_by: f.partition_by,
                    }
                }
                Some(other) => LoggingDestination::Unsupported(
                    match other {
                        pb::logging_config::Destination::BigqueryDestination(_) => "bigquery",
                        pb::logging_config::Destination::RedshiftDestination(_) => "redshift",
                        pb::logging_config::Destination::SnowflakeDestination(_) => "snowflake",
                        pb::logging_config::Destination::CustomDestination(_) => "custom",
                        pb::logging_config::Destination::AthenaDestination(_) => "athena",
                        pb::logging_config::Destination::FileDestination(_) => "file",
                    }
                    .to_string(),
                ),
                None => LoggingDestination::None,
            },
        });
        reg.services.insert(
            fs.name.clone(),
            Arc::new(FeatureService {
                name: fs.name,
                projections: fs.features.into_iter().map(projection).collect(),
                logging,
                tags: fs.tags.into_iter().collect(),
                precompute_online: fs.precompute_online,
            }),
        );
    }

    for p in raw.permissions.into_iter().filter_map(|p| p.spec) {
        if !keep(&p.project) {
            continue;
        }
        let (permission, problem) = permission(p);
        reg.warnings.extend(problem);
        reg.permissions.push(Arc::new(permission));
    }

    if reg.views.is_empty() && reg.odfvs.is_empty() && !other_projects.is_empty() {
        reg.warnings.push(format!(
            "the registry has no objects for project {project:?}; it holds projects {other_projects:?}"
        ));
    }
    reg
}

struct RawView {
    name: String,
    kind: ViewKind,
    entities: Vec<String>,
    entity_columns: Vec<pb::FeatureSpecV2>,
    features: Vec<pb::FeatureSpecV2>,
    ttl: Option<prost_types::Duration>,
    disabled: bool,
    version: i32,
    batch_source: Option<pb::DataSource>,
    /// The push source feeding the view, when there is one.
    push_source: Option<String>,
    online: bool,
    meta: pb::FeatureViewMeta,
    tags: std::collections::BTreeMap<String, String>,
}

/// The name of a push source, `None` for a source of another type.
fn push_source_name(s: &pb::DataSource) -> Option<String> {
    (s.r#type == pb::data_source::SourceType::PushSource as i32
        || matches!(s.options, Some(pb::data_source::Options::PushOptions(_))))
    .then(|| s.name.clone())
}

/// A data source as writes need it (a push source stands for its batch source).
fn data_source(s: pb::DataSource) -> DataSource {
    if push_source_name(&s).is_some()
        && let Some(batch) = s.batch_source
    {
        return data_source(*batch);
    }
    let kind = match s.options {
        Some(pb::data_source::Options::FileOptions(f)) => SourceKind::File {
            path: f.uri,
            parquet: !matches!(
                f.file_format.and_then(|f| f.format),
                Some(pb::file_format::Format::DeltaFormat(_))
            ),
        },
        _ => SourceKind::Other(pb::data_source::SourceType::try_from(s.r#type).map_or_else(
            |_| format!("type {}", s.r#type),
            |t| t.as_str_name().to_string(),
        )),
    };
    DataSource {
        name: s.name,
        timestamp_field: s.timestamp_field,
        created_timestamp_column: Some(s.created_timestamp_column).filter(|c| !c.is_empty()),
        field_mapping: s.field_mapping.into_iter().collect(),
        kind,
    }
}

fn event_time(t: &prost_types::Timestamp) -> EventTime {
    EventTime {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

fn field(f: pb::FeatureSpecV2) -> Field {
    Field {
        name: f.name,
        value_type: f.value_type,
    }
}

fn index_of(fields: &[Field]) -> HashMap<String, usize> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.clone(), i))
        .collect()
}

fn build_view(v: RawView, entities: &HashMap<String, Entity>, opts: DecodeOptions) -> FeatureView {
    let mut problem = None;
    let mut join_keys = Vec::new();
    let mut entity_names = Vec::new();
    let entityless =
        v.entities.is_empty() || (v.entities.len() == 1 && v.entities[0] == DUMMY_ENTITY_NAME);
    if !entityless {
        for name in &v.entities {
            let (join_key, entity_type) = match entities.get(name) {
                Some(e) => (e.join_key.clone(), e.value_type),
                None => {
                    problem = Some(format!("entity {name} is not in the registry"));
                    (name.clone(), 0)
                }
            };
            // The view's entity column carries the type the key bytes were written with.
            let value_type = v
                .entity_columns
                .iter()
                .find(|c| c.name == join_key)
                .map(|c| c.value_type)
                .filter(|t| *t != ValueType::Invalid as i32)
                .unwrap_or(entity_type);
            join_keys.push(JoinKey {
                name: join_key,
                value_type,
            });
            entity_names.push(name.clone());
        }
    }
    let key_layout = if entityless {
        KeyLayout::new(&[DUMMY_ENTITY_ID], opts.key_version)
    } else {
        let names: Vec<&str> = join_keys.iter().map(|k| k.name.as_str()).collect();
        KeyLayout::new(&names, opts.key_version)
    };
    let features: Vec<Field> = v.features.into_iter().map(field).collect();
    let online_name = if opts.versioning && v.version > 0 {
        format!("{}_v{}", v.name, v.version)
    } else {
        v.name.clone()
    };
    let materialized_until = v
        .meta
        .materialization_intervals
        .iter()
        .filter_map(|i| i.end_time.as_ref().map(event_time))
        .max();
    FeatureView {
        tags: v.tags,
        batch_source: v.batch_source.map(|s| Arc::new(data_source(s))),
        online: v.online,
        materialized_until,
        feature_index: index_of(&features),
        name: v.name,
        kind: v.kind,
        join_keys,
        entity_names,
        features,
        ttl: v.ttl.and_then(duration).filter(|d| !d.is_zero()),
        disabled: v.disabled,
        current_version: v.version,
        online_name,
        key_layout,
        problem,
    }
}

fn duration(d: prost_types::Duration) -> Option<Duration> {
    if d.seconds < 0 || d.nanos < 0 {
        return None;
    }
    Some(Duration::new(
        d.seconds.unsigned_abs(),
        d.nanos.unsigned_abs(),
    ))
}

fn projection(p: pb::FeatureViewProjection) -> Projection {
    Projection {
        view_name: p.feature_view_name,
        alias: Some(p.feature_view_name_alias).filter(|a| !a.is_empty()),
        features: p.feature_columns.into_iter().map(|c| c.name).collect(),
        join_key_map: p.join_key_map,
        version_tag: p.version_tag,
    }
}

fn build_odfv(s: pb::OnDemandFeatureViewSpec) -> OnDemandFeatureView {
    let mut sources = Vec::new();
    for src in s.sources.into_values() {
        match src.source {
            Some(pb::on_demand_source::Source::FeatureViewProjection(p)) => {
                sources.push(OdfvSource::View(projection(p)))
            }
            Some(pb::on_demand_source::Source::FeatureView(fv)) => {
                let spec = fv.spec.unwrap_or_default();
                sources.push(OdfvSource::View(Projection {
                    view_name: spec.name,
                    alias: None,
                    features: spec.features.into_iter().map(|f| f.name).collect(),
                    join_key_map: Default::default(),
                    version_tag: None,
                }))
            }
            Some(pb::on_demand_source::Source::RequestDataSource(ds)) => {
                let fields = match ds.options {
                    Some(pb::data_source::Options::RequestDataOptions(o)) => {
                        if o.schema.is_empty() {
                            o.deprecated_schema
                                .into_iter()
                                .map(|(name, value_type)| Field { name, value_type })
                                .collect()
                        } else {
                            o.schema.into_iter().map(field).collect()
                        }
                    }
                    _ => Vec::new(),
                };
                sources.push(OdfvSource::Request { fields });
            }
            None => {}
        }
    }
    let features: Vec<Field> = s.features.into_iter().map(field).collect();
    let udf = s
        .feature_transformation
        .and_then(|t| t.transformation)
        .map(
            |pb::feature_transformation_v2::Transformation::UserDefinedFunction(f)| Udf {
                name: f.name,
                source: f.body_text,
            },
        )
        .filter(|u| !u.source.trim().is_empty());
    OnDemandFeatureView {
        mode: s.mode,
        singleton: s.singleton,
        udf,
        feature_index: index_of(&features),
        name: s.name,
        features,
        sources,
        disabled: s.disabled,
        tags: s.tags.into_iter().collect(),
    }
}

/// A permission, its patterns compiled to whole-name matches (Python's
/// `re.fullmatch`). A pattern that does not compile makes the permission cover
/// nothing (it still counts as one: the project keeps refusing what no other
/// permission grants); the reason comes back as a load warning.
fn permission(p: pb::PermissionSpec) -> (Permission, Option<String>) {
    use pb::permission_spec::{AuthzedAction as A, Type as T};
    let types = p
        .types
        .iter()
        .filter_map(|t| T::try_from(*t).ok())
        .map(|t| match t {
            T::FeatureView => ResourceType::FeatureView,
            T::OnDemandFeatureView => ResourceType::OnDemandFeatureView,
            T::BatchFeatureView => ResourceType::BatchFeatureView,
            T::StreamFeatureView => ResourceType::StreamFeatureView,
            T::FeatureService => ResourceType::FeatureService,
            T::LabelView => ResourceType::LabelView,
            _ => ResourceType::Other,
        })
        .collect();
    let mut name_patterns = Vec::new();
    let mut problem = None;
    for pattern in &p.name_patterns {
        let pattern = pattern.trim();
        match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(r) => name_patterns.push(r),
            Err(e) => {
                problem = Some(format!(
                    "permission {}: name pattern {pattern:?} is not a regular expression this server reads ({e}); the permission covers nothing",
                    p.name
                ));
            }
        }
    }
    let actions = p
        .actions
        .iter()
        .filter_map(|a| A::try_from(*a).ok())
        .map(|a| match a {
            A::Create => Action::Create,
            A::Describe => Action::Describe,
            A::Update => Action::Update,
            A::Delete => Action::Delete,
            A::ReadOnline => Action::ReadOnline,
            A::ReadOffline => Action::ReadOffline,
            A::WriteOnline => Action::WriteOnline,
            A::WriteOffline => Action::WriteOffline,
        })
        .collect();
    use pb::policy::PolicyType as P;
    let policy = match p.policy.and_then(|p| p.policy_type) {
        None => Policy::AllowAll,
        Some(P::RoleBasedPolicy(r)) => Policy::Roles(r.roles),
        Some(P::GroupBasedPolicy(g)) => Policy::Groups(g.groups),
        Some(P::NamespaceBasedPolicy(n)) => Policy::Namespaces(n.namespaces),
        Some(P::CombinedGroupNamespacePolicy(c)) => {
            Policy::GroupsOrNamespaces(c.groups, c.namespaces)
        }
    };
    let permission = Permission {
        name: p.name,
        types,
        covers_nothing: problem.is_some(),
        name_patterns,
        required_tags: p
            .required_tags
            .into_iter()
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
        actions,
        policy,
    };
    (permission, problem)
}
