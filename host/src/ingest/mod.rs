//! The write path: `POST /push`, `POST /write-to-online-store` and materialization,
//! writing what Feast writes, where Feast writes it.
//!
//! A request is validated whole before anything is written: every row of every view
//! it touches is converted (entity keys serialized, values in the declared types,
//! event times parsed), and the first problem is a 400 naming the column and the
//! row. Then the rows go to the store in one call ([`crate::online_store::Store::write`]):
//! one transaction on SQLite, one MULTI/EXEC pipeline (per hash slot) on Redis. A
//! store failure is an error for the whole request.
//!
//! | module | its one job |
//! |---|---|
//! | `convert` | JSON cells to Feast values in the declared types; event times |
//! | `rows` | a dataframe to one view's rows (columns found through the source's field mapping) |
//! | `materialize` | a view's Parquet file source to the store, over a time window; registry bookkeeping |
//! | `offline` | pushed rows appended to a view's Parquet file source |
//! | `precompute` | the vectors of feature services with `precompute_online`, after a materialization |

mod convert;
mod materialize;
mod offline;
mod precompute;
mod rows;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use convert::parse_time;
pub(crate) use materialize::{MaterializeRequest, Progress};

use crate::api::{PushRequest, WriteRequest};
use crate::auth::{Caller, Resource};
use crate::clock::Clock;
use crate::error::Error;
use crate::online_store::{Store, ViewTarget, WriteBatch};
use crate::plugin::{OdfvError, OdfvInput, PluginRuntime};
use crate::registry::{
    Action, FeatureView, OdfvSource, OnDemandFeatureView, Registry, RegistryHandle,
    RegistrySnapshot, SnapshotCache, ViewKind,
};
use crate::value::Value;

/// Write targets of the registry served now: one per view, reading all its features.
type Targets = std::sync::RwLock<HashMap<String, Arc<ViewTarget>>>;

/// The write path of one server.
#[derive(Debug, Clone)]
pub(crate) struct Ingest {
    registry: Arc<RegistryHandle>,
    store: Store,
    clock: Clock,
    repo_dir: PathBuf,
    max_rows: usize,
    targets: Arc<SnapshotCache<Targets>>,
    jobs: Arc<materialize::Jobs>,
    plugins: Option<Arc<PluginRuntime>>,
}

impl Ingest {
    /// Writes to `store` the views of `registry`; `repo_dir` anchors relative source
    /// paths; a request carries at most `max_rows` rows.
    pub(crate) fn new(
        registry: Arc<RegistryHandle>,
        store: Store,
        clock: Clock,
        repo_dir: PathBuf,
        max_rows: usize,
    ) -> Self {
        Ingest {
            targets: Arc::new(SnapshotCache::new(registry.snapshot(), Targets::default())),
            registry,
            store,
            clock,
            repo_dir,
            max_rows,
            jobs: Arc::default(),
            plugins: None,
        }
    }

    /// Transforms on-demand views written to the store with the plugins of `runtime`.
    pub(crate) fn with_plugins(mut self, runtime: Arc<PluginRuntime>) -> Self {
        self.plugins = Some(runtime);
        self
    }

    /// "Now", as the server's clock has it.
    pub(crate) fn now(&self) -> crate::value::EventTime {
        self.clock.event_time()
    }

    /// The registry to write against: the one served now, or (with
    /// `allow_registry_cache: false`) the file read again first.
    async fn snapshot(&self, allow_cache: bool) -> Arc<RegistrySnapshot> {
        if !allow_cache {
            let registry = self.registry.clone();
            // A failed reload keeps the registry served now (and is logged).
            let _ = tokio::task::spawn_blocking(move || registry.reload()).await;
        }
        self.registry.snapshot()
    }

    /// The target writing every feature of `view`.
    fn target(&self, snapshot: &Arc<RegistrySnapshot>, view: &FeatureView) -> Arc<ViewTarget> {
        let targets = self.targets.get(snapshot, Targets::default);
        if let Ok(known) = targets.read()
            && let Some(t) = known.get(&view.name)
        {
            return t.clone();
        }
        let features = view.features.iter().map(|f| f.name.clone()).collect();
        let target = Arc::new(self.store.target(&view.name, &view.online_name, features));
        if let Ok(mut known) = targets.write() {
            known.insert(view.name.clone(), target.clone());
        }
        target
    }

    fn check_rows(&self, rows: usize) -> Result<(), Error> {
        if rows > self.max_rows {
            return Err(Error::InvalidWrite(format!(
                "the dataframe has {rows} rows; this server writes at most {} per request (--max-write-rows)",
                self.max_rows
            )));
        }
        Ok(())
    }

    /// `POST /push`: the rows go to every view the push source feeds.
    pub(crate) async fn push(&self, req: &PushRequest, caller: &Caller) -> Result<(), Error> {
        let snapshot = self.snapshot(req.allow_registry_cache).await;
        let registry = &snapshot.registry;
        let names = registry
            .push_sources
            .get(&req.push_source_name)
            .ok_or_else(|| Error::PushSourceNotFound {
                name: req.push_source_name.clone(),
            })?;
        let views = views_named(registry, names)?;
        let actions: &[Action] = match (req.to.online(), req.to.offline()) {
            (true, true) => &[Action::WriteOffline, Action::WriteOnline],
            (false, true) => &[Action::WriteOffline],
            _ => &[Action::WriteOnline],
        };
        authorize(caller, registry, &views, actions)?;
        let frame = rows::Frame::new(&req.df)?;
        self.check_rows(frame.rows())?;
        let now = self.clock.event_time();
        let mut batches = Vec::new();
        let mut offline = Vec::new();
        for view in &views {
            if req.to.online() {
                let rows = rows::view_rows(view, &frame, now, &[])?;
                batches.push(WriteBatch {
                    target: self.target(&snapshot, view),
                    rows,
                });
            }
            if req.to.offline() {
                offline.push(offline::prepare(view, &frame, &self.repo_dir)?);
            }
        }
        // Offline files are written aside first and moved into place only once the
        // online write succeeded, so a failure leaves both as they were.
        let staged = offline::stage(offline).await?;
        if let Err(e) = self.store.write(batches).await {
            offline::discard(staged);
            return Err(e.into());
        }
        offline::commit(staged).await
    }

    /// `POST /write-to-online-store`: the rows go to one view.
    pub(crate) async fn write_to_online_store(
        &self,
        req: &WriteRequest,
        caller: &Caller,
    ) -> Result<(), Error> {
        let snapshot = self.snapshot(req.allow_registry_cache).await;
        let view = snapshot
            .registry
            .views
            .get(&req.feature_view_name)
            .cloned()
            .ok_or_else(|| Error::ObjectNotFound(req.feature_view_name.clone()))?;
        authorize(
            caller,
            &snapshot.registry,
            std::slice::from_ref(&view),
            &[Action::WriteOnline],
        )?;
        let frame = rows::Frame::new(&req.df)?;
        self.check_rows(frame.rows())?;
        let computed = if view.kind == ViewKind::WrittenOnDemand && req.transform_on_write {
            self.transform(&snapshot, &view, &frame).await?
        } else {
            Vec::new()
        };
        let rows = rows::view_rows(&view, &frame, self.clock.event_time(), &computed)?;
        self.store
            .write(vec![WriteBatch {
                target: self.target(&snapshot, &view),
                rows,
            }])
            .await?;
        Ok(())
    }
}

impl Ingest {
    /// An on-demand view's outputs for the rows of `frame`, computed by its plugin
    /// from the inputs the dataframe carries (source features and request data, in
    /// their declared types), as Feast transforms on write.
    async fn transform(
        &self,
        snapshot: &RegistrySnapshot,
        view: &FeatureView,
        frame: &rows::Frame<'_>,
    ) -> Result<Vec<(String, Vec<Value>)>, Error> {
        let registry = &snapshot.registry;
        let odfv = registry.odfvs.get(&view.name).ok_or_else(|| {
            Error::ViewNotServable(format!(
                "on-demand feature view {} has no transformation in the registry",
                view.name
            ))
        })?;
        let runtime = self.plugins.as_ref().ok_or_else(|| {
            OdfvError::Unavailable(format!(
                "on-demand feature view {} is transformed on write by a Wasm plugin, and no plugin directory is configured: set wasm_plugins.directory or start with --plugins DIR (or write its outputs with transform_on_write=false)",
                view.name
            ))
        })?;
        // Every input the view's sources define, typed as declared.
        let mut inputs: Vec<(String, Vec<Value>)> = Vec::new();
        for (name, value_type) in odfv_input_types(odfv, registry) {
            let Some(column) = frame.column(view, &name) else {
                continue;
            };
            let values = column
                .iter()
                .enumerate()
                .map(|(row, cell)| {
                    convert::typed(cell, value_type)
                        .map_err(|e| Error::InvalidWrite(format!("`df.{name}[{row}]`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            inputs.push((name, values));
        }
        if let Some(missing) = runtime
            .declared_inputs(&view.name)
            .into_iter()
            .flatten()
            .find(|n| !inputs.iter().any(|(i, _)| i == n))
        {
            return Err(Error::InvalidWrite(format!(
                "`df` has no column `{missing}`, an input of on-demand feature view {}",
                view.name
            )));
        }
        let borrowed: Vec<OdfvInput<'_>> = inputs
            .iter()
            .map(|(n, v)| (n.as_str(), v.iter().map(Some).collect()))
            .collect();
        let outputs = runtime.compute(odfv, &borrowed, frame.rows()).await?;
        Ok(odfv
            .features
            .iter()
            .map(|f| f.name.clone())
            .zip(outputs)
            .collect())
    }
}

/// The inputs an on-demand view's sources define: source features and request data
/// fields, with their declared types.
fn odfv_input_types(odfv: &OnDemandFeatureView, registry: &Registry) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for source in &odfv.sources {
        match source {
            OdfvSource::View(p) => {
                if let Some(view) = registry.views.get(&p.view_name) {
                    for f in &view.features {
                        if p.features.is_empty() || p.features.contains(&f.name) {
                            out.push((f.name.clone(), f.value_type));
                        }
                    }
                }
            }
            OdfvSource::Request { fields } => {
                out.extend(fields.iter().map(|f| (f.name.clone(), f.value_type)));
            }
        }
    }
    out
}

/// Whether `caller` may do `actions` on every one of `views`.
fn authorize(
    caller: &Caller,
    registry: &Registry,
    views: &[Arc<FeatureView>],
    actions: &[Action],
) -> Result<(), Error> {
    if let Caller::User(_) = caller {
        let resources: Vec<Resource<'_>> = views.iter().map(|v| Resource::view(v)).collect();
        caller.authorize(&registry.permissions, &resources, actions)?;
    }
    Ok(())
}

/// The views behind names, each written to the online store.
fn views_named(registry: &Registry, names: &[String]) -> Result<Vec<Arc<FeatureView>>, Error> {
    names
        .iter()
        .map(|n| {
            registry
                .views
                .get(n)
                .cloned()
                .ok_or_else(|| Error::ObjectNotFound(n.clone()))
        })
        .collect()
}
