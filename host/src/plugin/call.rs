//! Calling an on-demand view's plugin: the request's input columns as one Arrow
//! batch, the call, and its output checked against the registry and converted to
//! Feast values.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field as ArrowField, Schema};

use super::config::PluginConfig;
use super::convert::{column_type_for, from_array, is_column_of, to_array};
use super::error::PluginFailure;
use super::instance::{LoadedPlugin, OdfvSpec};
use super::ipc;
use super::runtime::PluginRuntime;
use crate::registry::OnDemandFeatureView;
use crate::value::Value;

/// One input column of an on-demand view: its name (a source feature or a request
/// data field) and its value in every entity row (`None` when the store has none).
pub type OdfvInput<'a> = (&'a str, Vec<Option<&'a Value>>);

/// Why an on-demand view could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum OdfvError {
    /// No plugin implements it (or none can be loaded).
    #[error("{0}")]
    Unavailable(String),
    /// Its plugin failed.
    #[error("plugin {plugin} failed on on-demand feature view {odfv}: {failure}")]
    Failed {
        /// The plugin.
        plugin: String,
        /// The ODFV.
        odfv: String,
        /// What went wrong.
        failure: PluginFailure,
    },
}

impl PluginRuntime {
    /// Why no plugin serves `odfv`: what to do, and every plugin file that was
    /// refused (one of them may be meant to serve it).
    fn no_plugin_for(&self, odfv: &str) -> String {
        let dir = self.config.directory.as_deref().map_or_else(
            || "the plugin directory".into(),
            |d| d.display().to_string(),
        );
        let mut message = format!(
            "no plugin in {dir} implements on-demand feature view {odfv}: add a .wasm component whose describe() declares it"
        );
        let table = self.table.load();
        for (file, state) in &table.files {
            if let Some(why) = &state.error {
                let _ = write!(message, "; {} was refused: {why}", file.display());
            }
        }
        message
    }

    /// The inputs the plugin serving `odfv` declares, when one serves it.
    pub(crate) fn declared_inputs(&self, odfv: &str) -> Option<Vec<String>> {
        let plugin = self.for_odfv(odfv)?;
        let spec = plugin.info.odfvs.iter().find(|s| s.name == odfv)?;
        Some(spec.inputs.iter().map(|f| f.name.clone()).collect())
    }

    /// Computes the registry's on-demand view `name` as [`Self::compute`] does (for
    /// embedders and benchmarks, which do not hold the registry's model).
    pub async fn compute_by_name(
        &self,
        name: &str,
        inputs: &[OdfvInput<'_>],
        rows: usize,
    ) -> Result<Vec<Vec<Value>>, OdfvError> {
        let snapshot = self.registry.snapshot();
        let odfv = snapshot.registry.odfvs.get(name).ok_or_else(|| {
            OdfvError::Unavailable(format!("the registry has no on-demand feature view {name}"))
        })?;
        self.compute(odfv, inputs, rows).await
    }

    /// Computes `odfv` for `rows` entity rows from its input columns (every input its
    /// sources define; the plugin takes those it declares). Returns the output
    /// columns in the order of `odfv.features`. The call is counted and timed.
    pub(crate) async fn compute(
        &self,
        odfv: &OnDemandFeatureView,
        inputs: &[OdfvInput<'_>],
        rows: usize,
    ) -> Result<Vec<Vec<Value>>, OdfvError> {
        let name = &odfv.name;
        let plugin = self
            .for_odfv(name)
            .ok_or_else(|| OdfvError::Unavailable(self.no_plugin_for(name)))?;
        let started = Instant::now();
        plugin.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call(&plugin, odfv, inputs, rows).await;
        if let Err(e) = &result {
            plugin.record_error(e);
        }
        self.metrics.observe(
            &plugin.info.name,
            started.elapsed(),
            result.as_ref().err().map(PluginFailure::kind),
        );
        result.map_err(|failure| OdfvError::Failed {
            plugin: plugin.info.name.clone(),
            odfv: name.clone(),
            failure,
        })
    }

    async fn call(
        &self,
        plugin: &LoadedPlugin,
        odfv: &OnDemandFeatureView,
        inputs: &[OdfvInput<'_>],
        rows: usize,
    ) -> Result<Vec<Vec<Value>>, PluginFailure> {
        let spec = plugin
            .info
            .odfvs
            .iter()
            .find(|s| s.name == odfv.name)
            .ok_or_else(|| PluginFailure::Input("describe does not declare it".into()))?;
        let mut columns = Vec::with_capacity(spec.inputs.len());
        for input in &spec.inputs {
            let (_, values) = inputs
                .iter()
                .find(|(n, _)| *n == input.name)
                .ok_or_else(|| {
                    PluginFailure::Input(format!(
                        "it declares input {}, which the ODFV's sources do not have",
                        input.name
                    ))
                })?;
            let array = to_array(values.iter().copied(), input.column_type)
                .map_err(|e| PluginFailure::Input(format!("input {}: {e}", input.name)))?;
            columns.push((input.name.clone(), array));
        }
        let batch = batch_of(columns, rows).map_err(PluginFailure::Input)?;
        call_odfv(plugin, spec, odfv, &batch, &self.config).await
    }
}

/// An empty batch of the declared inputs (the trial call): it proves that an instance
/// starts, reads the input and answers the declared columns, without inventing values
/// a function might rightly refuse (a Feast function dividing by a feature that is
/// never zero in real rows).
pub(super) fn trial_batch(spec: &OdfvSpec) -> Result<RecordBatch, String> {
    let columns: Vec<(String, ArrayRef)> = spec
        .inputs
        .iter()
        .map(|f| to_array(std::iter::empty(), f.column_type).map(|a| (f.name.clone(), a)))
        .collect::<Result<_, _>>()?;
    batch_of(columns, 0)
}

/// A record batch from named columns.
pub(super) fn batch_of(
    columns: Vec<(String, ArrayRef)>,
    rows: usize,
) -> Result<RecordBatch, String> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, a)| ArrowField::new(n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new_with_options(
        Arc::new(schema),
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| e.to_string())
}

/// Calls an ODFV on a batch and returns its output columns as Feast values, in the
/// order of `odfv.features`, after checking them against the registry.
pub(super) async fn call_odfv(
    plugin: &LoadedPlugin,
    spec: &OdfvSpec,
    odfv: &OnDemandFeatureView,
    input: &RecordBatch,
    config: &PluginConfig,
) -> Result<Vec<Vec<Value>>, PluginFailure> {
    let bytes = ipc::encode(input, config.max_input_bytes)
        .map_err(|e| PluginFailure::Input(e.to_string()))?;
    let raw = plugin.transform(&spec.name, &bytes).await?;
    check_output(raw, odfv, input.num_rows(), config)
}

fn check_output(
    raw: Vec<u8>,
    odfv: &OnDemandFeatureView,
    rows: usize,
    config: &PluginConfig,
) -> Result<Vec<Vec<Value>>, PluginFailure> {
    let bad = |m: String| PluginFailure::InvalidOutput(m);
    let out = ipc::decode(raw, config.max_output_bytes).map_err(|e| bad(e.to_string()))?;
    if out.num_rows() != rows {
        return Err(bad(format!(
            "{} rows for {rows} input rows",
            out.num_rows()
        )));
    }
    odfv.features
        .iter()
        .map(|f| {
            let col = out
                .column_by_name(&f.name)
                .ok_or_else(|| bad(format!("no column {}", f.name)))?;
            if !column_type_for(f.value_type).is_some_and(|t| is_column_of(t, col.data_type())) {
                return Err(bad(format!(
                    "column {} is {} but the registry declares {}",
                    f.name,
                    col.data_type(),
                    crate::value::value_type_name(f.value_type)
                )));
            }
            from_array(col.as_ref(), f.value_type).map_err(bad)
        })
        .collect()
}
