//! The transport-agnostic `get_online_features` engine. The recipe of a request:
//!
//! 1. resolve the request shape to a cached [`plan::Plan`] (views to read, outputs,
//!    echoed join keys), and check the caller may read what it covers;
//! 2. turn the request's entity columns into each view's unique entity keys
//!    ([`keys`]);
//! 3. read every view from the online store in one batched call;
//! 4. compute the on-demand views with their plugins ([`crate::plugin`]);
//! 5. assemble Feast's columnar response with statuses and event times
//!    ([`assemble`]).

mod assemble;
mod keys;
mod plan;

use std::sync::Arc;

use self::assemble::feature_column;
use self::keys::{EntityInputs, request_data, row_count};
use self::plan::{EchoColumn, OdfvInput, OutputSource, Plan, PlanCache, Selection};
use crate::api::{FeatureColumn, OnlineFeaturesRequest, OnlineFeaturesResponse, RowKeys};
use crate::auth::Caller;
use crate::clock::Clock;
use crate::error::Error;
use crate::online_store::{ReadBatch, Store, ViewRows};
use crate::plugin::{OdfvError, PluginRuntime};
use crate::registry::{Action, RegistryHandle, SnapshotCache};
use crate::value::Value;

/// The feature server's core: registry, online store, clock and plugins.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    registry: Arc<RegistryHandle>,
    store: Store,
    clock: Clock,
    max_entities: usize,
    plugins: Option<Arc<PluginRuntime>>,
    /// Request plans of the registry served now.
    plans: Arc<SnapshotCache<PlanCache>>,
}

impl Engine {
    /// Wires a registry and a store.
    pub(crate) fn new(registry: Arc<RegistryHandle>, store: Store, clock: Clock) -> Self {
        Engine {
            plans: Arc::new(SnapshotCache::new(
                registry.snapshot(),
                PlanCache::default(),
            )),
            registry,
            store,
            clock,
            max_entities: usize::MAX,
            plugins: None,
        }
    }

    /// Computes on-demand feature views with the plugins of `runtime`.
    pub(crate) fn with_plugins(mut self, runtime: Arc<PluginRuntime>) -> Self {
        self.plugins = Some(runtime);
        self
    }

    /// The plugin runtime, when plugins are configured.
    pub(crate) fn plugins(&self) -> Option<&Arc<PluginRuntime>> {
        self.plugins.as_ref()
    }

    /// Refuses requests with more than `max` entity rows.
    pub(crate) fn with_max_entities(mut self, max: usize) -> Self {
        self.max_entities = max;
        self
    }

    /// The online store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Answers a request for `caller`: Feast's `get_online_features`.
    pub(crate) async fn get_online_features(
        &self,
        req: &OnlineFeaturesRequest,
        caller: &Caller,
    ) -> Result<OnlineFeaturesResponse, Error> {
        let rows = row_count(req)?;
        if rows > self.max_entities {
            return Err(Error::TooManyEntities {
                rows,
                max: self.max_entities,
            });
        }
        let snapshot = self.registry.snapshot();
        let selection = match &req.feature_service {
            Some(s) => Selection::Service(s),
            None => Selection::Refs(&req.features),
        };
        let plan = self.plans.get(&snapshot, PlanCache::default).get(
            &snapshot.registry,
            &self.store,
            selection,
            req.full_feature_names,
        )?;
        if let Caller::User(_) = caller {
            caller.authorize(
                &snapshot.registry.permissions,
                &plan.resources(),
                &[Action::ReadOnline],
            )?;
        }
        let inputs = EntityInputs::resolve(&plan, req)?;
        let request_data = request_data(&plan, req)?;

        let mut batches = Vec::with_capacity(plan.reads.len());
        let mut row_keys = Vec::with_capacity(plan.reads.len());
        for read in &plan.reads {
            let (keys, mapping) = inputs.keys_for(read, rows)?;
            batches.push(ReadBatch {
                target: read.target.clone(),
                keys,
            });
            row_keys.push(mapping);
        }
        let mut results = if batches.is_empty() {
            Vec::new()
        } else {
            self.store.read(batches).await?
        };

        // ODFVs read the stored values before the output columns take them.
        let mut odfv_outputs = self
            .run_odfvs(&plan, &results, &row_keys, &request_data, rows)
            .await?;

        // A read whose rows repeat keys shares how they do with each of its columns.
        let repeats: Vec<_> = row_keys
            .into_iter()
            .map(|r| r.repeat().then(|| Arc::new(r)))
            .collect();
        let echo = plan.echo_layout(req);
        let mut columns = Vec::with_capacity(echo.names.len());
        for column in &echo.columns {
            columns.push(match *column {
                EchoColumn::JoinKey(k) => inputs.join_key_column(
                    k,
                    &plan.join_keys[k],
                    echo_repeats(&plan, k, &repeats),
                )?,
                EchoColumn::Sent(i) => FeatureColumn::supplied(req.entities[i].1.clone()),
            });
        }
        let now = self.clock.now_unix_secs();
        for output in &plan.outputs {
            columns.push(match *output {
                OutputSource::Feature { read, slot } => feature_column(
                    &mut results[read],
                    rows,
                    repeats[read].as_ref(),
                    slot,
                    plan.reads[read].view.ttl,
                    now,
                ),
                // ODFV outputs are PRESENT (even when null) with the epoch as event
                // time, as Feast reports them.
                OutputSource::Odfv { step, feature } => {
                    FeatureColumn::supplied(std::mem::take(&mut odfv_outputs[step][feature]))
                }
            });
        }
        Ok(OnlineFeaturesResponse {
            feature_names: echo.names.clone(),
            columns,
            feature_view_metadata: req
                .include_feature_view_version_metadata
                .then(|| plan.view_metadata.clone()),
            request_data: plan
                .request_fields
                .iter()
                .map(|f| f.name.clone())
                .zip(request_data)
                .collect(),
        })
    }

    /// Computes every ODFV of the plan: one plugin call per ODFV with all rows.
    async fn run_odfvs(
        &self,
        plan: &Plan,
        results: &[ViewRows],
        row_keys: &[RowKeys],
        request_data: &[Vec<Value>],
        rows: usize,
    ) -> Result<Vec<Vec<Vec<Value>>>, Error> {
        let mut outputs = Vec::with_capacity(plan.odfvs.len());
        for step in &plan.odfvs {
            let runtime = self.plugins.as_ref().ok_or_else(|| {
                OdfvError::Unavailable(format!(
                    "on-demand feature view {} is computed by a Wasm plugin, and no plugin directory is configured: set wasm_plugins.directory in feature_store.yaml or start with --plugins DIR",
                    step.odfv.name
                ))
            })?;
            let inputs: Vec<_> = step
                .inputs
                .iter()
                .map(|(name, source)| {
                    let values = match *source {
                        OdfvInput::Feature { read, slot } => row_keys[read]
                            .key_of_row
                            .iter()
                            .map(|&k| results[read].get(k as usize, slot).map(|c| &c.value))
                            .collect(),
                        OdfvInput::Request { field } => {
                            request_data[field].iter().map(Some).collect()
                        }
                    };
                    (name.as_str(), values)
                })
                .collect();
            outputs.push(runtime.compute(&step.odfv, &inputs, rows).await?);
        }
        Ok(outputs)
    }
}

/// How the echoed join key `k` repeats: as the rows of a read whose entity key
/// includes `k` in the type it is echoed in (equal keys hold equal values of it).
fn echo_repeats<'a>(
    plan: &Plan,
    k: usize,
    repeats: &'a [Option<Arc<RowKeys>>],
) -> Option<&'a Arc<RowKeys>> {
    let echoed = plan.join_keys[k].value_type;
    plan.reads.iter().zip(repeats).find_map(|(read, keys)| {
        let keys = keys.as_ref()?;
        read.key_columns
            .iter()
            .zip(&read.view.join_keys)
            .any(|(&idx, jk)| idx == k && jk.value_type == echoed)
            .then_some(keys)
    })
}
