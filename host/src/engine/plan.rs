//! Request plans: what a feature list or feature service resolves to against one
//! registry (views to read with which features and join keys, output columns and
//! names). Built once per request shape and cached per registry snapshot, so the hot
//! path never walks the registry.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, RwLock};

use super::FeatureViewMetadata;
use crate::error::Error;
use crate::online_store::ReadTarget;
use crate::registry::{FeatureView, OdfvSource, OnDemandFeatureView, Projection, Registry};
use crate::value::is_known_value_type;

/// Plans kept per registry snapshot before the cache stops growing.
const MAX_CACHED_PLANS: usize = 4096;

/// Bytes of request shapes (cache keys) kept per registry snapshot before the cache
/// stops growing: valid selections can be long (every feature of a large registry, in
/// any order), and clients choose them.
const MAX_CACHED_KEY_BYTES: usize = 16 << 20;

/// A join key the request must provide.
#[derive(Debug, Clone)]
pub struct PlanJoinKey {
    /// Name in the request (the join key, or its `join_key_map` rename).
    pub name: String,
    /// Entity names also accepted in its place (Feast's deprecated form).
    pub aliases: Vec<String>,
    /// Type the response echoes the values with (0 = as sent).
    pub value_type: i32,
}

/// One view read by the plan.
#[derive(Debug)]
pub struct ViewRead {
    /// The view.
    pub view: Arc<FeatureView>,
    /// What the store reads.
    pub target: Arc<ReadTarget>,
    /// For each of the view's join keys (declared order), its index in `Plan::join_keys`.
    pub key_columns: Vec<usize>,
}

/// Where an output column's values come from.
#[derive(Debug, Clone, Copy)]
pub enum OutputSource {
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
pub enum OdfvInput {
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
pub struct OdfvStep {
    /// The ODFV.
    pub odfv: Arc<OnDemandFeatureView>,
    /// Every input its sources define, by name.
    pub inputs: Vec<(String, OdfvInput)>,
}

/// A request data field an ODFV needs.
#[derive(Debug, Clone)]
pub struct RequestField {
    /// Field name (a key of `entities` or `request_context`).
    pub name: String,
    /// Declared value type.
    pub value_type: i32,
}

/// Everything a request shape needs, resolved against one registry.
#[derive(Debug)]
pub struct Plan {
    /// Output column names: join keys first, then features.
    pub names: Arc<[String]>,
    /// Join keys to take from the request, in output order.
    pub join_keys: Vec<PlanJoinKey>,
    /// Views to read.
    pub reads: Vec<ViewRead>,
    /// On-demand feature views to compute.
    pub odfvs: Vec<OdfvStep>,
    /// Request data the ODFVs need.
    pub request_fields: Vec<RequestField>,
    /// Feature outputs, parallel to `names[join_keys.len()..]`.
    pub outputs: Vec<OutputSource>,
    /// `feature_view_metadata` for `include_feature_view_version_metadata`.
    pub view_metadata: Vec<FeatureViewMetadata>,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// `view:feature` references.
    Refs(&'a [String]),
    /// A feature service by name.
    Service(&'a str),
}

/// Plans built against one registry snapshot, by request shape.
#[derive(Debug, Default)]
pub struct PlanCache {
    plans: RwLock<CachedPlans>,
}

#[derive(Debug, Default)]
struct CachedPlans {
    by_shape: HashMap<String, Arc<Plan>>,
    key_bytes: usize,
}

impl PlanCache {
    /// The plan for a selection, from the cache or built now.
    pub fn get(
        &self,
        registry: &Registry,
        selection: Selection<'_>,
        full_feature_names: bool,
    ) -> Result<Arc<Plan>, Error> {
        let key = cache_key(selection, full_feature_names);
        if let Some(plan) = self
            .plans
            .read()
            .ok()
            .and_then(|m| m.by_shape.get(&key).cloned())
        {
            return Ok(plan);
        }
        let plan = Arc::new(build_plan(registry, selection, full_feature_names)?);
        if let Ok(mut guard) = self.plans.write() {
            let cached = &mut *guard;
            let len = key.len();
            if cached.by_shape.len() < MAX_CACHED_PLANS
                && cached.key_bytes + len <= MAX_CACHED_KEY_BYTES
                && let Entry::Vacant(slot) = cached.by_shape.entry(key)
            {
                slot.insert(plan.clone());
                cached.key_bytes += len;
            }
        }
        Ok(plan)
    }

    /// Plans cached now.
    pub fn len(&self) -> usize {
        self.plans.read().map(|m| m.by_shape.len()).unwrap_or(0)
    }

    /// Whether no plan is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn cache_key(selection: Selection<'_>, full: bool) -> String {
    let mut key = String::with_capacity(64);
    key.push(if full { 'F' } else { 'S' });
    match selection {
        Selection::Service(s) => {
            key.push('@');
            key.push_str(s);
        }
        Selection::Refs(refs) => {
            for r in refs {
                key.push('\n');
                key.push_str(r);
            }
        }
    }
    key
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
                picks
                    .last_mut()
                    .ok_or_else(|| Error::InvalidRequest("empty".into()))?
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
    selection: Selection<'_>,
    full_feature_names: bool,
) -> Result<Plan, Error> {
    let picks = match selection {
        Selection::Refs(refs) => picks_from_refs(refs)?,
        Selection::Service(name) => {
            let service =
                registry
                    .services
                    .get(name)
                    .ok_or_else(|| Error::FeatureServiceNotFound {
                        name: name.to_string(),
                        project: registry.project.clone(),
                    })?;
            service
                .projections
                .iter()
                .map(|p| Pick {
                    projection: p.clone(),
                    features: p.features.clone(),
                })
                .collect()
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
    builder.finish()
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

    fn finish(self) -> Result<Plan, Error> {
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
        let project = &self.registry.project;
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
                    target: Arc::new(ReadTarget::new(project, &view, &online_name, features)),
                    view,
                    key_columns,
                }
            })
            .collect();
        let mut names: Vec<String> = self.join_keys.iter().map(|k| k.name.clone()).collect();
        names.extend(self.names);
        Ok(Plan {
            names: names.into(),
            join_keys: self.join_keys,
            reads,
            odfvs: self.odfvs,
            request_fields: self.request_fields,
            outputs: self.outputs,
            view_metadata: self.view_metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_registry() -> Registry {
        let bytes = include_bytes!("../../../demo/feature_repo/data/registry.db");
        let opts = crate::registry::DecodeOptions {
            key_version: 3,
            versioning: false,
        };
        crate::registry::decode_registry(bytes, "repo", opts).expect("demo registry")
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
                .get(&registry, Selection::Refs(&refs), full)
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
            .get(&registry, Selection::Refs(&refs), false)
            .expect_err("not servable");
        assert!(
            matches!(&err, Error::ViewNotServable(m) if m.contains("driver_hourly_stats")),
            "{err:?}"
        );
    }

    #[test]
    fn cached_request_shapes_are_bounded_in_bytes() {
        let registry = demo_registry();
        let cache = PlanCache::default();
        let features = ["conv_rate", "acc_rate", "avg_daily_trips"];
        let shape: Vec<String> = features
            .iter()
            .map(|f| format!("driver_hourly_stats:{f}"))
            .collect();
        cache
            .get(&registry, Selection::Refs(&shape), false)
            .expect("plan");
        assert_eq!(cache.len(), 1);
        let shape_bytes = cache.plans.read().expect("lock").key_bytes;
        assert_eq!(shape_bytes, cache_key(Selection::Refs(&shape), false).len());
        // The same shape again is not counted twice.
        cache
            .get(&registry, Selection::Refs(&shape), false)
            .expect("plan");
        assert_eq!(cache.plans.read().expect("lock").key_bytes, shape_bytes);
        // Once the byte budget is spent, new shapes are planned but not kept.
        cache.plans.write().expect("lock").key_bytes = MAX_CACHED_KEY_BYTES;
        let other = vec!["driver_hourly_stats:acc_rate".to_string()];
        cache
            .get(&registry, Selection::Refs(&other), false)
            .expect("plan");
        assert_eq!(cache.len(), 1);
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
