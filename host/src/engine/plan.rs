//! Request plans: what a feature list or feature service resolves to against one
//! registry (views to read with which features and join keys, output columns and
//! names, which request columns are echoed). Built once per request shape and cached
//! per registry snapshot, so the hot path never walks the registry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, RwLock};

use crate::api::{FeatureViewMetadata, OnlineFeaturesRequest};
use crate::auth::{Resource, ResourceKind};
use crate::error::Error;
use crate::online_store::{Store, ViewTarget};
use crate::registry::{
    FeatureService, FeatureView, OdfvSource, OnDemandFeatureView, Projection, Registry,
};
use crate::value::is_known_value_type;

/// Plans kept per registry snapshot before the cache stops growing.
const MAX_CACHED_PLANS: usize = 4096;

/// Bytes of request shapes (cache keys) kept per registry snapshot before the cache
/// stops growing: valid selections can be long (every feature of a large registry, in
/// any order), and clients choose them.
const MAX_CACHED_KEY_BYTES: usize = 16 << 20;

/// A join key the request must provide.
#[derive(Debug, Clone)]
pub(super) struct PlanJoinKey {
    /// Name in the request (the join key, or its `join_key_map` rename).
    pub name: String,
    /// Entity names also accepted in its place (Feast's deprecated form).
    pub aliases: Vec<String>,
    /// Type the response echoes the values with (0 = as sent).
    pub value_type: i32,
}

/// One view read by the plan.
#[derive(Debug)]
pub(super) struct ViewRead {
    /// The view.
    pub view: Arc<FeatureView>,
    /// What the store reads.
    pub target: Arc<ViewTarget>,
    /// For each of the view's join keys (declared order), its index in `Plan::join_keys`.
    pub key_columns: Vec<usize>,
}

/// Where an output column's values come from.
#[derive(Debug, Clone, Copy)]
pub(super) enum OutputSource {
    /// A feature read from a view: `reads[read]`, slot `slot` of its target.
    Feature {
        /// Index into `Plan::reads`.
        read: usize,
        /// Slot in that read's target.
        slot: usize,
    },
    /// An output of an on-demand feature view.
    Odfv {
        /// Index into `Plan::odfvs`.
        step: usize,
        /// Index into that ODFV's features.
        feature: usize,
    },
}

/// Where an ODFV input comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum OdfvInput {
    /// A feature of a source view: `reads[read]`, slot `slot`.
    Feature {
        /// Index into `Plan::reads`.
        read: usize,
        /// Slot in that read's target.
        slot: usize,
    },
    /// A request data field: `Plan::request_fields[field]`.
    Request {
        /// Index into `Plan::request_fields`.
        field: usize,
    },
}

/// An on-demand feature view the request needs computed.
#[derive(Debug)]
pub(super) struct OdfvStep {
    /// The ODFV.
    pub odfv: Arc<OnDemandFeatureView>,
    /// Every input its sources define, by name.
    pub inputs: Vec<(String, OdfvInput)>,
}

/// A request data field an ODFV needs.
#[derive(Debug, Clone)]
pub(super) struct RequestField {
    /// Field name (a key of `entities` or `request_context`).
    pub name: String,
    /// Declared value type.
    pub value_type: i32,
}

/// A request column the response echoes: a join key of some entity of the registry
/// (or an entity's name, standing for its join key), as Feast echoes every join key
/// a request gives, whether or not a requested view uses it.
#[derive(Debug, Clone)]
pub(super) struct Echo {
    /// The column's name in the response (the join key).
    pub name: String,
    /// The index in `Plan::join_keys` when a read view uses it (its values are then
    /// the ones read with, in the key's type); `None`: echoed as sent.
    pub join_key: Option<usize>,
}

/// Which request columns a response echoes, for one order of request columns.
#[derive(Debug)]
pub(super) struct EchoLayout {
    /// Response column names: the echoed join keys in request order, then features.
    pub names: Arc<[String]>,
    /// Per echoed column: where it comes from.
    pub columns: Vec<EchoColumn>,
}

/// Where an echoed column's values come from.
#[derive(Debug, Clone, Copy)]
pub(super) enum EchoColumn {
    /// A join key read with: `Plan::join_keys[idx]`.
    JoinKey(usize),
    /// `entities[idx]` of the request, as sent.
    Sent(usize),
}

/// Echo layouts kept per plan (one per order of request columns seen).
const MAX_ECHO_LAYOUTS: usize = 8;

/// Echo layouts by the request's column names, in request order.
type EchoLayouts = Vec<(Box<[String]>, Arc<EchoLayout>)>;

/// Everything a request shape needs, resolved against one registry.
#[derive(Debug)]
pub(super) struct Plan {
    /// Join keys to take from the request, in the order views need them.
    pub join_keys: Vec<PlanJoinKey>,
    /// Names of the output features, in output order.
    pub feature_names: Vec<String>,
    /// Request columns the response echoes, by request name.
    pub echo: HashMap<String, Echo>,
    layouts: RwLock<EchoLayouts>,
    /// Views to read.
    pub reads: Vec<ViewRead>,
    /// On-demand feature views to compute.
    pub odfvs: Vec<OdfvStep>,
    /// Request data the ODFVs need.
    pub request_fields: Vec<RequestField>,
    /// Feature outputs, parallel to `feature_names`.
    pub outputs: Vec<OutputSource>,
    /// `feature_view_metadata` for `include_feature_view_version_metadata`.
    pub view_metadata: Vec<FeatureViewMetadata>,
    /// The feature service asked for, when the request names one.
    pub service: Option<Arc<FeatureService>>,
}

impl Plan {
    /// What a permission check covers (Feast's `feature_server.py`): the feature
    /// service alone when one is asked for; otherwise every view read (sources of
    /// on-demand views included), then every on-demand view computed.
    pub(super) fn resources(&self) -> Vec<Resource<'_>> {
        if let Some(s) = &self.service {
            return vec![Resource {
                kind: ResourceKind::FeatureService,
                name: &s.name,
                tags: &s.tags,
            }];
        }
        let mut out: Vec<Resource<'_>> = Vec::with_capacity(self.reads.len() + self.odfvs.len());
        for read in &self.reads {
            if !out.iter().any(|r| r.name == read.view.name) {
                out.push(Resource::view(&read.view));
            }
        }
        for step in &self.odfvs {
            out.push(Resource {
                kind: ResourceKind::OnDemandFeatureView,
                name: &step.odfv.name,
                tags: &step.odfv.tags,
            });
        }
        out
    }

    /// Which of the request's columns the response echoes, and the response's
    /// column names: cached per order of request columns.
    pub(super) fn echo_layout(&self, req: &OnlineFeaturesRequest) -> Arc<EchoLayout> {
        let same = |names: &[String]| {
            names.len() == req.entities.len()
                && names.iter().zip(&req.entities).all(|(a, (b, _))| a == b)
        };
        if let Ok(layouts) = self.layouts.read()
            && let Some((_, layout)) = layouts.iter().find(|(names, _)| same(names))
        {
            return layout.clone();
        }
        let layout = Arc::new(self.build_echo_layout(req));
        if let Ok(mut layouts) = self.layouts.write()
            && layouts.len() < MAX_ECHO_LAYOUTS
            && !layouts.iter().any(|(names, _)| same(names))
        {
            let names = req.entities.iter().map(|(n, _)| n.clone()).collect();
            layouts.push((names, layout.clone()));
        }
        layout
    }

    fn build_echo_layout(&self, req: &OnlineFeaturesRequest) -> EchoLayout {
        let mut names: Vec<String> = Vec::new();
        let mut columns = Vec::new();
        for (idx, (name, _)) in req.entities.iter().enumerate() {
            // Request data is not echoed, even when it is named like a join key.
            if self.request_fields.iter().any(|f| f.name == *name) {
                continue;
            }
            let Some(echo) = self.echo.get(name) else {
                continue;
            };
            // A join key given twice (by name and by entity name) is echoed once.
            if names.contains(&echo.name) {
                continue;
            }
            names.push(echo.name.clone());
            columns.push(match echo.join_key {
                Some(k) => EchoColumn::JoinKey(k),
                None => EchoColumn::Sent(idx),
            });
        }
        names.extend(self.feature_names.iter().cloned());
        EchoLayout {
            names: names.into(),
            columns,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Selection<'a> {
    /// `view:feature` references.
    Refs(&'a [String]),
    /// A feature service by name.
    Service(&'a str),
}

/// Plans built against one registry snapshot, by request shape.
#[derive(Debug, Default)]
pub(super) struct PlanCache {
    plans: RwLock<CachedPlans>,
}

#[derive(Debug, Default)]
struct CachedPlans {
    by_shape: HashMap<Box<[u8]>, Arc<Plan>>,
    key_bytes: usize,
}

thread_local! {
    /// The shape key of the request being planned, built without allocating.
    static SHAPE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl PlanCache {
    /// The plan for a selection, from the cache or built now (reading from `store`).
    pub(super) fn get(
        &self,
        registry: &Registry,
        store: &Store,
        selection: Selection<'_>,
        full_feature_names: bool,
    ) -> Result<Arc<Plan>, Error> {
        SHAPE.with_borrow_mut(|key| {
            shape_key(selection, full_feature_names, key);
            if let Some(plan) = self
                .plans
                .read()
                .ok()
                .and_then(|m| m.by_shape.get(key.as_slice()).cloned())
            {
                return Ok(plan);
            }
            let plan = Arc::new(build_plan(registry, store, selection, full_feature_names)?);
            if let Ok(mut guard) = self.plans.write() {
                let cached = &mut *guard;
                let len = key.len();
                if cached.by_shape.len() < MAX_CACHED_PLANS
                    && cached.key_bytes + len <= MAX_CACHED_KEY_BYTES
                    && let Entry::Vacant(slot) = cached.by_shape.entry(key.as_slice().into())
                {
                    slot.insert(plan.clone());
                    cached.key_bytes += len;
                }
            }
            Ok(plan)
        })
    }

    /// Plans cached now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.plans.read().map(|m| m.by_shape.len()).unwrap_or(0)
    }
}

/// Writes the key of a request shape into `key`: every part length-prefixed, so no
/// two different selections share a key whatever bytes their names hold.
fn shape_key(selection: Selection<'_>, full: bool, key: &mut Vec<u8>) {
    key.clear();
    key.push(u8::from(full));
    let mut part = |s: &str| {
        key.extend_from_slice(&(s.len() as u64).to_le_bytes());
        key.extend_from_slice(s.as_bytes());
    };
    match selection {
        Selection::Service(s) => {
            part("@");
            part(s);
        }
        Selection::Refs(refs) => {
            part(":");
            for r in refs {
                part(r);
            }
        }
    }
}

/// What makes two projections one read: the same view under the same name and
/// version, keyed by the same request columns.
#[derive(Debug, PartialEq, Eq)]
struct ReadKey {
    view: String,
    name: String,
    version: Option<i32>,
    join_key_map: std::collections::BTreeMap<String, String>,
}

/// A parsed `view[@version]:feature` reference.
#[derive(Debug, PartialEq, Eq)]
struct FeatureRef<'a> {
    view: &'a str,
    version: Option<i32>,
    feature: &'a str,
}

fn parse_ref(r: &str) -> Result<FeatureRef<'_>, Error> {
    let invalid = || {
        Error::InvalidFeatureRef(format!(
            "Invalid feature reference '{r}'. Expected format: '<feature_view>:<feature>' or '<feature_view>@<version>:<feature>'"
        ))
    };
    let (view, feature) = r.split_once(':').ok_or_else(invalid)?;
    if view.is_empty() || feature.is_empty() {
        return Err(invalid());
    }
    let (view, version) = match view.split_once('@') {
        None => (view, None),
        Some((v, "latest")) => (v, None),
        Some((v, tag)) => {
            let n = tag
                .strip_prefix('v')
                .or_else(|| tag.strip_prefix('V'))
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(invalid)?;
            (v, Some(n))
        }
    };
    Ok(FeatureRef {
        view,
        version,
        feature,
    })
}

/// A projection being resolved: a view selection with requested features.
struct Pick {
    projection: Projection,
    features: Vec<String>,
}

#[expect(
    clippy::expect_used,
    reason = "a pick is pushed right before it is taken"
)]
fn picks_from_refs(refs: &[String]) -> Result<Vec<Pick>, Error> {
    if refs.is_empty() {
        return Err(Error::InvalidRequest(
            "No features specified for retrieval: give `features` (a list of \"view:feature\") or `feature_service`".into(),
        ));
    }
    let mut picks: Vec<Pick> = Vec::new();
    for r in refs {
        let fr = parse_ref(r)?;
        let pick = match picks
            .iter_mut()
            .find(|p| p.projection.view_name == fr.view && p.projection.version_tag == fr.version)
        {
            Some(p) => p,
            None => {
                picks.push(Pick {
                    projection: Projection {
                        view_name: fr.view.to_string(),
                        alias: None,
                        features: Vec::new(),
                        join_key_map: Default::default(),
                        version_tag: fr.version,
                    },
                    features: Vec::new(),
                });
                picks.last_mut().expect("the pick just pushed")
            }
        };
        // A feature asked twice stays twice: the plan rejects it as a name collision,
        // as Feast does.
        pick.features.push(fr.feature.to_string());
    }
    Ok(picks)
}

fn build_plan(
    registry: &Registry,
    store: &Store,
    selection: Selection<'_>,
    full_feature_names: bool,
) -> Result<Plan, Error> {
    let mut service = None;
    let picks = match selection {
        Selection::Refs(refs) => picks_from_refs(refs)?,
        Selection::Service(name) => {
            let found =
                registry
                    .services
                    .get(name)
                    .ok_or_else(|| Error::FeatureServiceNotFound {
                        name: name.to_string(),
                        project: registry.project.clone(),
                    })?;
            let picks = found
                .projections
                .iter()
                .map(|p| Pick {
                    projection: p.clone(),
                    features: p.features.clone(),
                })
                .collect();
            service = Some(found.clone());
            picks
        }
    };

    let mut builder = PlanBuilder {
        registry,
        full_feature_names,
        join_keys: Vec::new(),
        reads: Vec::new(),
        read_keys: Vec::new(),
        read_features: Vec::new(),
        outputs: Vec::new(),
        names: Vec::new(),
        view_metadata: Vec::new(),
        odfvs: Vec::new(),
        request_fields: Vec::new(),
    };
    for pick in picks {
        builder.add(pick)?;
    }
    let mut plan = builder.finish(store)?;
    plan.service = service;
    Ok(plan)
}

struct PlanBuilder<'r> {
    registry: &'r Registry,
    full_feature_names: bool,
    join_keys: Vec<PlanJoinKey>,
    reads: Vec<(Arc<FeatureView>, Projection, Vec<usize>)>,
    /// Dedup key of each read: projection name to use + version.
    read_keys: Vec<ReadKey>,
    /// Feature names read per read, in slot order.
    read_features: Vec<Vec<String>>,
    outputs: Vec<OutputSource>,
    names: Vec<String>,
    view_metadata: Vec<FeatureViewMetadata>,
    odfvs: Vec<OdfvStep>,
    request_fields: Vec<RequestField>,
}

impl PlanBuilder<'_> {
    fn add(&mut self, pick: Pick) -> Result<(), Error> {
        let name = &pick.projection.view_name;
        if let Some(view) = self.registry.views.get(name) {
            return self.add_view_features(view.clone(), pick);
        }
        if let Some(odfv) = self.registry.odfvs.get(name) {
            return self.add_odfv_features(odfv.clone(), pick);
        }
        Err(Error::FeatureViewNotFound {
            name: name.clone(),
            project: self.registry.project.clone(),
        })
    }

    fn add_view_features(&mut self, view: Arc<FeatureView>, pick: Pick) -> Result<(), Error> {
        if let Some(v) = pick.projection.version_tag
            && !self.registry.versioning
        {
            return Err(Error::InvalidFeatureRef(format!(
                "Version-qualified ref '{}@v{v}' not supported: online versioning is disabled. Set 'enable_online_feature_view_versioning: true' under 'registry' in feature_store.yaml.",
                view.name
            )));
        }
        let features = if pick.features.is_empty() {
            view.features.iter().map(|f| f.name.clone()).collect()
        } else {
            pick.features
        };
        for f in &features {
            let idx = view.feature(f).ok_or_else(|| Error::FeatureNotFound {
                view: view.name.clone(),
                feature: f.clone(),
            })?;
            let vt = view.features[idx].value_type;
            if !is_known_value_type(vt) {
                return Err(Error::UnsupportedValueType {
                    view: view.name.clone(),
                    feature: f.clone(),
                    value_type: vt,
                });
            }
        }
        let read = self.read_for(&view, &pick.projection)?;
        let prefix = match pick.projection.version_tag {
            Some(v) => format!("{}@v{v}", pick.projection.name_to_use()),
            None => pick.projection.name_to_use().to_string(),
        };
        for f in features {
            let slot = match self.read_features[read].iter().position(|x| *x == f) {
                Some(s) => s,
                None => {
                    self.read_features[read].push(f.clone());
                    self.read_features[read].len() - 1
                }
            };
            self.outputs.push(OutputSource::Feature { read, slot });
            self.names.push(if self.full_feature_names {
                format!("{prefix}__{f}")
            } else {
                f
            });
        }
        let meta_name = pick.projection.name_to_use().to_string();
        if !self.view_metadata.iter().any(|m| m.name == meta_name) {
            self.view_metadata.push(FeatureViewMetadata {
                name: meta_name,
                version: pick.projection.version_tag.unwrap_or(view.current_version),
            });
        }
        Ok(())
    }

    fn add_odfv_features(
        &mut self,
        odfv: Arc<OnDemandFeatureView>,
        pick: Pick,
    ) -> Result<(), Error> {
        if odfv.disabled {
            return Err(Error::ViewNotServable(format!(
                "On demand feature view '{}' is disabled and cannot serve features",
                odfv.name
            )));
        }
        let features = if pick.features.is_empty() {
            odfv.features.iter().map(|f| f.name.clone()).collect()
        } else {
            pick.features
        };
        let mut indices = Vec::with_capacity(features.len());
        for f in &features {
            indices.push(odfv.feature(f).ok_or_else(|| Error::FeatureNotFound {
                view: odfv.name.clone(),
                feature: f.clone(),
            })?);
        }
        let step = match self.odfvs.iter().position(|s| s.odfv.name == odfv.name) {
            Some(s) => s,
            None => {
                let inputs = self.odfv_inputs(&odfv)?;
                self.odfvs.push(OdfvStep {
                    odfv: odfv.clone(),
                    inputs,
                });
                self.odfvs.len() - 1
            }
        };
        let prefix = pick.projection.name_to_use().to_string();
        for (f, idx) in features.into_iter().zip(indices) {
            self.outputs.push(OutputSource::Odfv { step, feature: idx });
            self.names.push(if self.full_feature_names {
                format!("{prefix}__{f}")
            } else {
                f
            });
        }
        Ok(())
    }

    /// Reads every source feature of an ODFV (even if not requested) and collects
    /// its request fields.
    fn odfv_inputs(
        &mut self,
        odfv: &OnDemandFeatureView,
    ) -> Result<Vec<(String, OdfvInput)>, Error> {
        let mut inputs = Vec::new();
        for source in &odfv.sources {
            match source {
                OdfvSource::View(projection) => {
                    let view = self.registry.views.get(&projection.view_name).ok_or_else(|| {
                        Error::ViewNotServable(format!(
                            "on-demand feature view {} reads feature view {}, which is not in the registry",
                            odfv.name, projection.view_name
                        ))
                    })?;
                    let view = view.clone();
                    let read = self.read_for(&view, projection)?;
                    let features: Vec<String> = if projection.features.is_empty() {
                        view.features.iter().map(|f| f.name.clone()).collect()
                    } else {
                        projection.features.clone()
                    };
                    for f in features {
                        if view.feature(&f).is_none() {
                            continue;
                        }
                        let slot = match self.read_features[read].iter().position(|x| *x == f) {
                            Some(s) => s,
                            None => {
                                self.read_features[read].push(f.clone());
                                self.read_features[read].len() - 1
                            }
                        };
                        inputs.push((f, OdfvInput::Feature { read, slot }));
                    }
                }
                OdfvSource::Request { fields, .. } => {
                    for field in fields {
                        let idx = match self
                            .request_fields
                            .iter()
                            .position(|r| r.name == field.name)
                        {
                            Some(i) => i,
                            None => {
                                self.request_fields.push(RequestField {
                                    name: field.name.clone(),
                                    value_type: field.value_type,
                                });
                                self.request_fields.len() - 1
                            }
                        };
                        inputs.push((field.name.clone(), OdfvInput::Request { field: idx }));
                    }
                }
            }
        }
        Ok(inputs)
    }

    /// The read for a view projection (requested, or a source of an ODFV), shared when
    /// the same projection of the same view appears twice.
    fn read_for(
        &mut self,
        view: &Arc<FeatureView>,
        projection: &Projection,
    ) -> Result<usize, Error> {
        if view.disabled {
            return Err(Error::ViewNotServable(format!(
                "Feature view '{}' is disabled and cannot serve features",
                view.name
            )));
        }
        if let Some(problem) = &view.problem {
            return Err(Error::ViewNotServable(format!(
                "feature view {} cannot be served: {problem}",
                view.name
            )));
        }
        let dedup = ReadKey {
            view: view.name.clone(),
            name: projection.name_to_use().to_string(),
            version: projection.version_tag,
            join_key_map: projection.join_key_map.clone(),
        };
        if let Some(i) = self.read_keys.iter().position(|k| *k == dedup) {
            return Ok(i);
        }
        let mut key_columns = Vec::with_capacity(view.join_keys.len());
        for (jk, entity) in view.join_keys.iter().zip(&view.entity_names) {
            let renamed = projection.join_key_map.get(&jk.name);
            let request_name = renamed.cloned().unwrap_or_else(|| jk.name.clone());
            let idx = match self.join_keys.iter().position(|k| k.name == request_name) {
                Some(i) => i,
                None => {
                    self.join_keys.push(PlanJoinKey {
                        name: request_name,
                        aliases: Vec::new(),
                        value_type: jk.value_type,
                    });
                    self.join_keys.len() - 1
                }
            };
            // The entity name may stand for its join key when the key is not renamed.
            if renamed.is_none()
                && *entity != self.join_keys[idx].name
                && !self.join_keys[idx].aliases.contains(entity)
            {
                self.join_keys[idx].aliases.push(entity.clone());
            }
            key_columns.push(idx);
        }
        self.reads
            .push((view.clone(), projection.clone(), key_columns));
        self.read_keys.push(dedup);
        self.read_features.push(Vec::new());
        Ok(self.reads.len() - 1)
    }

    fn finish(self, store: &Store) -> Result<Plan, Error> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut dups: Vec<String> = Vec::new();
        for n in &self.names {
            let c = seen.entry(n.as_str()).or_default();
            *c += 1;
            if *c == 2 {
                dups.push(n.clone());
            }
        }
        if !dups.is_empty() {
            let names = dups.join(", ");
            return Err(Error::FeatureNameCollision(if self.full_feature_names {
                format!(
                    "Duplicate features named {names} found.\nTo resolve this collision, please ensure that the feature views or their own features have different names. If you're intentionally joining the same feature view twice on different sets of entities, please rename one of the feature views with '.with_name'."
                )
            } else {
                format!(
                    "Duplicate features named {names} found.\nTo resolve this collision, either use the full feature name by setting 'full_feature_names=True', or ensure that the features in question have different names."
                )
            }));
        }
        let reads = self
            .reads
            .into_iter()
            .zip(self.read_features)
            .map(|((view, projection, key_columns), features)| {
                let online_name = match projection.version_tag {
                    Some(v) if v > 0 => format!("{}_v{v}", view.name),
                    Some(_) => view.name.clone(),
                    None => view.online_name.clone(),
                };
                ViewRead {
                    target: Arc::new(store.target(&view.name, &online_name, features)),
                    view,
                    key_columns,
                }
            })
            .collect();
        let echo = echoed_columns(self.registry, &self.join_keys);
        Ok(Plan {
            feature_names: self.names,
            echo,
            layouts: RwLock::default(),
            join_keys: self.join_keys,
            reads,
            odfvs: self.odfvs,
            request_fields: self.request_fields,
            outputs: self.outputs,
            view_metadata: self.view_metadata,
            service: None,
        })
    }
}

/// The request columns a response echoes: every entity's join key (and its name,
/// standing for it), and the plan's join keys under the names the request uses.
fn echoed_columns(registry: &Registry, join_keys: &[PlanJoinKey]) -> HashMap<String, Echo> {
    let mut echo = HashMap::new();
    let plan_key = |name: &str| join_keys.iter().position(|k| k.name == name);
    for entity in registry.entities.values() {
        let e = Echo {
            name: entity.join_key.clone(),
            join_key: plan_key(&entity.join_key),
        };
        echo.entry(entity.name.clone()).or_insert_with(|| e.clone());
        echo.insert(entity.join_key.clone(), e);
    }
    for (i, k) in join_keys.iter().enumerate() {
        let e = Echo {
            name: k.name.clone(),
            join_key: Some(i),
        };
        for alias in &k.aliases {
            echo.insert(alias.clone(), e.clone());
        }
        echo.insert(k.name.clone(), e);
    }
    echo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        crate::online_store::demo_sqlite()
    }

    fn demo_registry() -> Registry {
        crate::registry::demo_registry()
    }

    #[test]
    fn a_feature_asked_twice_is_a_name_collision() {
        let registry = demo_registry();
        for full in [false, true] {
            let refs = [
                "driver_hourly_stats:conv_rate".to_string(),
                "driver_hourly_stats:conv_rate".to_string(),
            ];
            let err = PlanCache::default()
                .get(&registry, &store(), Selection::Refs(&refs), full)
                .expect_err("a collision");
            assert!(matches!(err, Error::FeatureNameCollision(_)), "{err:?}");
        }
    }

    #[test]
    fn an_odfv_reading_a_disabled_view_is_not_servable() {
        let mut registry = demo_registry();
        let view = registry
            .views
            .get_mut("driver_hourly_stats")
            .expect("the demo view");
        Arc::make_mut(view).disabled = true;
        let refs = ["transformed_conv_rate:conv_rate_plus_val1".to_string()];
        let err = PlanCache::default()
            .get(&registry, &store(), Selection::Refs(&refs), false)
            .expect_err("not servable");
        assert!(
            matches!(&err, Error::ViewNotServable(m) if m.contains("driver_hourly_stats")),
            "{err:?}"
        );
    }

    #[test]
    fn cached_request_shapes_are_bounded_in_bytes() {
        let registry = demo_registry();
        let store = store();
        let cache = PlanCache::default();
        let features = ["conv_rate", "acc_rate", "avg_daily_trips"];
        let shape: Vec<String> = features
            .iter()
            .map(|f| format!("driver_hourly_stats:{f}"))
            .collect();
        cache
            .get(&registry, &store, Selection::Refs(&shape), false)
            .expect("plan");
        assert_eq!(cache.len(), 1);
        let shape_bytes = cache.plans.read().expect("lock").key_bytes;
        let mut key = Vec::new();
        shape_key(Selection::Refs(&shape), false, &mut key);
        assert_eq!(shape_bytes, key.len());
        // The same shape again is not counted twice.
        cache
            .get(&registry, &store, Selection::Refs(&shape), false)
            .expect("plan");
        assert_eq!(cache.plans.read().expect("lock").key_bytes, shape_bytes);
        // Once the byte budget is spent, new shapes are planned but not kept.
        cache.plans.write().expect("lock").key_bytes = MAX_CACHED_KEY_BYTES;
        let other = vec!["driver_hourly_stats:acc_rate".to_string()];
        cache
            .get(&registry, &store, Selection::Refs(&other), false)
            .expect("plan");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn shapes_whose_names_hold_separators_do_not_share_a_key() {
        let key = |sel: Selection<'_>, full: bool| {
            let mut k = Vec::new();
            shape_key(sel, full, &mut k);
            k
        };
        let one = ["v:a\nv:b".to_string()];
        let two = ["v:a".to_string(), "v:b".to_string()];
        assert_ne!(
            key(Selection::Refs(&one), false),
            key(Selection::Refs(&two), false)
        );
        assert_ne!(
            key(Selection::Refs(&two), false),
            key(Selection::Refs(&two), true)
        );
        assert_ne!(
            key(Selection::Service("s"), false),
            key(Selection::Refs(&["s".to_string()]), false)
        );
        // And the cache keeps them apart: the malformed one is refused every time.
        let registry = demo_registry();
        let store = store();
        let cache = PlanCache::default();
        let good = [
            "driver_hourly_stats:conv_rate".to_string(),
            "driver_hourly_stats:acc_rate".to_string(),
        ];
        cache
            .get(&registry, &store, Selection::Refs(&good), false)
            .expect("plan");
        let joined = [good.join("\n")];
        for _ in 0..2 {
            let err = cache
                .get(&registry, &store, Selection::Refs(&joined), false)
                .expect_err("not a feature of the view");
            assert!(matches!(err, Error::FeatureNotFound { .. }), "{err:?}");
        }
    }

    #[test]
    fn every_join_key_and_entity_name_is_echoed_in_request_order() {
        let registry = demo_registry();
        let refs = ["driver_hourly_stats:conv_rate".to_string()];
        let plan = PlanCache::default()
            .get(&registry, &store(), Selection::Refs(&refs), false)
            .expect("plan");
        let req = |cols: &[&str]| OnlineFeaturesRequest {
            entities: cols.iter().map(|c| (c.to_string(), Vec::new())).collect(),
            ..Default::default()
        };
        let layout = plan.echo_layout(&req(&["unknown", "driver_id"]));
        assert_eq!(&*layout.names, ["driver_id", "conv_rate"]);
        assert!(matches!(layout.columns[..], [EchoColumn::JoinKey(0)]));
        // The entity name stands for its join key.
        let layout = plan.echo_layout(&req(&["driver"]));
        assert_eq!(&*layout.names, ["driver_id", "conv_rate"]);
        // Cached per order of request columns.
        assert!(Arc::ptr_eq(
            &plan.echo_layout(&req(&["driver"])),
            &plan.echo_layout(&req(&["driver"]))
        ));
    }

    #[test]
    fn parses_feature_refs() {
        assert_eq!(
            parse_ref("v:f").ok(),
            Some(FeatureRef {
                view: "v",
                version: None,
                feature: "f"
            })
        );
        assert_eq!(
            parse_ref("v@v2:f").ok(),
            Some(FeatureRef {
                view: "v",
                version: Some(2),
                feature: "f"
            })
        );
        assert_eq!(
            parse_ref("v@latest:f").ok(),
            Some(FeatureRef {
                view: "v",
                version: None,
                feature: "f"
            })
        );
        for bad in ["conv_rate", ":f", "v:", "v@x:f", "v@v-1:f"] {
            assert!(
                matches!(parse_ref(bad), Err(Error::InvalidFeatureRef(_))),
                "{bad}"
            );
        }
    }
}
