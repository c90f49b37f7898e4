//! The Feast registry as serving needs it: entities, feature views (batch, stream,
//! label, and ODFVs written to the online store), on-demand feature views and feature
//! services of one project, decoded from `registry.db` into a typed model with what
//! each request needs precomputed (join keys, key layouts, online names).
//!
//! Decoding is lenient: value types newer than this server are kept as numbers and
//! only the features using them fail, with an error naming them.

mod decode;
mod edit;
mod reload;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use decode::decode_registry;

/// The demo repository's registry (project `repo`, key version 3), for unit tests.
#[cfg(test)]
pub(crate) fn demo_registry() -> Registry {
    let bytes = include_bytes!("../../../demo/feature_repo/data/registry.db");
    let opts = DecodeOptions {
        key_version: 3,
        versioning: false,
    };
    decode_registry(bytes, "repo", opts).expect("demo registry")
}
pub use decode::{DecodeOptions, RegistryError};
pub(crate) use edit::record_materialization_in_file;
pub use reload::{RegistryHandle, RegistrySource};
pub(crate) use reload::{RegistrySnapshot, SnapshotCache};

use crate::entity_key::KeyLayout;
use crate::value::EventTime;

/// Feast's entity name for views without entities.
pub(crate) const DUMMY_ENTITY_NAME: &str = "__dummy";
/// Join key of the dummy entity.
pub(crate) const DUMMY_ENTITY_ID: &str = "__dummy_id";

/// One project's serving model.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// The project served.
    pub project: String,
    /// `version_id` written by Feast at the last `apply`.
    pub version_id: String,
    /// Entities by name.
    pub entities: HashMap<String, Entity>,
    /// Views served from the online store, by name.
    pub views: HashMap<String, Arc<FeatureView>>,
    /// On-demand feature views transformed at request time, by name.
    pub odfvs: HashMap<String, Arc<OnDemandFeatureView>>,
    /// Feature services by name.
    pub services: HashMap<String, Arc<FeatureService>>,
    /// The views each push source feeds, by push source name (in registry order).
    pub push_sources: HashMap<String, Vec<String>>,
    /// The project's permissions, in registry order.
    pub permissions: Vec<Arc<Permission>>,
    /// `enable_online_feature_view_versioning`: `view@vN:feature` refs are served.
    pub versioning: bool,
    /// Objects skipped while decoding, with why (logged once per load).
    pub warnings: Vec<String>,
}

/// An entity: a name and the join key that identifies it.
#[derive(Clone, Debug)]
pub(crate) struct Entity {
    /// Entity name.
    pub name: String,
    /// Join key column.
    pub join_key: String,
    /// Declared value type (0 when the definition gave none).
    pub value_type: i32,
}

/// What kind of registry object a served view came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ViewKind {
    /// `FeatureView`.
    Batch,
    /// `StreamFeatureView`.
    Stream,
    /// `LabelView`.
    Label,
    /// `OnDemandFeatureView` with `write_to_online_store=True`.
    WrittenOnDemand,
}

/// A join key of a view, with the type its entity-key bytes use.
#[derive(Clone, Debug)]
pub(crate) struct JoinKey {
    /// Column name.
    pub name: String,
    /// Declared value type (0 = unknown: infer from the request).
    pub value_type: i32,
}

/// A feature (or request field): a name and a declared value type.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// Name.
    pub name: String,
    /// Declared value type, as Feast's enum number.
    pub value_type: i32,
}

/// A view whose rows `feast materialize` wrote to the online store.
#[derive(Clone, Debug)]
pub(crate) struct FeatureView {
    /// View name.
    pub name: String,
    /// Where it came from.
    pub kind: ViewKind,
    /// Join keys in declared order; empty for views without entities.
    pub join_keys: Vec<JoinKey>,
    /// Entity names in declared order (parallel to `join_keys`).
    pub entity_names: Vec<String>,
    /// Features in declared order.
    pub features: Vec<Field>,
    feature_index: HashMap<String, usize>,
    /// Values older than this are `OUTSIDE_MAX_AGE`; `None` = never expire.
    pub ttl: Option<Duration>,
    /// `disabled` in the registry.
    pub disabled: bool,
    /// `meta.current_version_number` (online versioning).
    pub current_version: i32,
    /// Name the online store knows this view by (`<view>` or `<view>_v<N>`).
    pub online_name: String,
    /// Entity-key layout for `join_keys` (or the dummy key when there are none).
    pub key_layout: KeyLayout,
    /// Why this view cannot be served, when the registry is inconsistent.
    pub problem: Option<String>,
    /// Where `feast materialize` reads its rows (a push source's batch source).
    pub batch_source: Option<Arc<DataSource>>,
    /// `online`: written to the online store.
    pub online: bool,
    /// The end of the latest materialization interval, when the view has one.
    pub materialized_until: Option<EventTime>,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
}

/// A data source, as far as writes need it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DataSource {
    /// Source name.
    pub name: String,
    /// The event time column.
    pub timestamp_field: String,
    /// The created time column, when the source has one.
    pub created_timestamp_column: Option<String>,
    /// Source column -> feature name renames.
    pub field_mapping: Vec<(String, String)>,
    /// Where its rows are.
    pub kind: SourceKind,
}

/// Where a data source's rows are.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SourceKind {
    /// A file source: the path (or URI) as the registry holds it, and whether it is
    /// Parquet (`false`: Delta or another format).
    File {
        /// `file_options.uri`.
        path: String,
        /// Parquet (the default format).
        parquet: bool,
    },
    /// A source of another type, named for messages (`BATCH_BIGQUERY`, ...).
    Other(String),
}

impl FeatureView {
    /// Index of a feature by name.
    pub(crate) fn feature(&self, name: &str) -> Option<usize> {
        self.feature_index.get(name).copied()
    }

    /// Whether the view has no entities (keyed by Feast's dummy key).
    pub(crate) fn is_entityless(&self) -> bool {
        self.join_keys.is_empty()
    }
}

/// Where an ODFV takes an input from.
#[derive(Clone, Debug)]
pub(crate) enum OdfvSource {
    /// Features of a feature view (read even if not requested).
    View(Projection),
    /// Fields the request must carry (a `RequestSource`).
    Request {
        /// The fields and their types.
        fields: Vec<Field>,
    },
}

/// An on-demand feature view, computed at request time by a plugin.
#[derive(Debug)]
pub(crate) struct OnDemandFeatureView {
    /// ODFV name.
    pub name: String,
    /// Output features in declared order.
    pub features: Vec<Field>,
    feature_index: HashMap<String, usize>,
    /// Inputs, in registry order.
    pub sources: Vec<OdfvSource>,
    /// `disabled` in the registry.
    pub disabled: bool,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
    /// `mode`: how Feast runs its function (`python`, `pandas`, `substrait`).
    pub mode: String,
    /// `singleton`: a python-mode function takes one row at a time.
    pub singleton: bool,
    /// Its function as Feast recorded it, when it did.
    pub udf: Option<Udf>,
}

/// An ODFV's user-defined function: its name and source (`body_text`).
#[derive(Clone, Debug)]
pub(crate) struct Udf {
    /// The function's name.
    pub name: String,
    /// Its source, decorators included, as `inspect.getsource` gave it to Feast.
    pub source: String,
}

impl OnDemandFeatureView {
    /// Index of an output feature by name.
    pub(crate) fn feature(&self, name: &str) -> Option<usize> {
        self.feature_index.get(name).copied()
    }
}

/// A selection of a view's features, as feature services and ODFV sources hold it.
#[derive(Clone, Debug)]
pub(crate) struct Projection {
    /// The view (or ODFV) name.
    pub view_name: String,
    /// `feature_view_name_alias`, used in full feature names.
    pub alias: Option<String>,
    /// Selected feature names in order (empty = all).
    pub features: Vec<String>,
    /// Join key renames: view join key -> name used in the request.
    pub join_key_map: BTreeMap<String, String>,
    /// `version_tag` (online versioning).
    pub version_tag: Option<i32>,
}

impl Projection {
    /// The name used for full feature names: the alias, else the view name.
    pub(crate) fn name_to_use(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.view_name)
    }
}

/// Where a feature service's logs go (`logging_config`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LoggingConfig {
    /// Fraction of requests logged.
    pub sample_rate: f32,
    /// Where the rows are written.
    pub destination: LoggingDestination,
}

/// A feature service's logging destination.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LoggingDestination {
    /// Parquet files under a path.
    File {
        /// Directory (relative to the repo when not absolute).
        path: String,
        /// Partition columns.
        partition_by: Vec<String>,
    },
    /// A destination this server cannot write to (named for messages).
    Unsupported(String),
    /// No destination set.
    None,
}

/// A named list of projections.
#[derive(Debug)]
pub(crate) struct FeatureService {
    /// Service name.
    pub name: String,
    /// Projections in declaration order.
    pub projections: Vec<Projection>,
    /// `logging_config`, when set.
    pub logging: Option<LoggingConfig>,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
    /// `precompute_online`: materialization also stores one vector per entity of
    /// all its features (on stores that can list their entity keys).
    pub precompute_online: bool,
}

/// A permission (Feast's `Permission`): which resources it covers, for which
/// actions, and who it lets in.
#[derive(Debug)]
pub(crate) struct Permission {
    /// Its name (in denial messages).
    pub name: String,
    /// The resource types it covers (all of them when Feast stored none).
    pub types: Vec<ResourceType>,
    /// Name patterns, each matching a whole name (none: every name).
    pub name_patterns: Vec<regex::Regex>,
    /// A pattern could not be compiled: the permission covers no resource.
    pub covers_nothing: bool,
    /// Tags a resource must carry to be covered.
    pub required_tags: BTreeMap<String, String>,
    /// The actions it covers.
    pub actions: Vec<Action>,
    /// Who it lets in.
    pub policy: Policy,
}

/// Resource types of Feast's permissions (`PermissionSpec.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResourceType {
    /// `FeatureView` (also covers batch and stream feature views, its subclasses).
    FeatureView,
    /// `OnDemandFeatureView`.
    OnDemandFeatureView,
    /// `BatchFeatureView`.
    BatchFeatureView,
    /// `StreamFeatureView`.
    StreamFeatureView,
    /// `FeatureService`.
    FeatureService,
    /// `LabelView`.
    LabelView,
    /// Any other type Feast knows (entities, data sources, projects...).
    Other,
}

/// Actions of Feast's permissions (`AuthzedAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    /// `CREATE`.
    Create,
    /// `DESCRIBE`.
    Describe,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `READ_ONLINE`.
    ReadOnline,
    /// `READ_OFFLINE`.
    ReadOffline,
    /// `WRITE_ONLINE`.
    WriteOnline,
    /// `WRITE_OFFLINE`.
    WriteOffline,
}

/// Who a permission lets in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Everyone (a permission stored without a policy).
    AllowAll,
    /// Users with any of these roles.
    Roles(Vec<String>),
    /// Users in any of these groups.
    Groups(Vec<String>),
    /// Users in any of these namespaces.
    Namespaces(Vec<String>),
    /// Users in any of these groups or namespaces.
    GroupsOrNamespaces(Vec<String>, Vec<String>),
}
