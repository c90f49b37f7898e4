//! A plugin's description checked against the registry: every ODFV it claims must
//! have the registry's outputs, and inputs the ODFV's sources define, in the column
//! types the registry's value types map to.

use super::convert::column_type_for;
use super::error::LoadError;
use super::instance::PluginInfo;
use crate::registry::{OdfvSource, OnDemandFeatureView, Registry};

/// The registry type of an ODFV input: a feature of a source view or a request field.
fn input_type(odfv: &OnDemandFeatureView, registry: &Registry, name: &str) -> Option<i32> {
    odfv.sources.iter().find_map(|s| match s {
        OdfvSource::Request { fields, .. } => {
            fields.iter().find(|f| f.name == name).map(|f| f.value_type)
        }
        OdfvSource::View(p) => {
            let view = registry.views.get(&p.view_name)?;
            if !p.features.is_empty() && !p.features.iter().any(|f| f == name) {
                return None;
            }
            view.feature(name).map(|i| view.features[i].value_type)
        }
    })
}

/// Checks a plugin's description against the registry; returns the ODFVs it can serve.
pub(super) fn validate(info: &PluginInfo, registry: &Registry) -> Result<Vec<String>, LoadError> {
    let mut served = Vec::new();
    for spec in &info.odfvs {
        let Some(odfv) = registry.odfvs.get(&spec.name) else {
            tracing::info!(plugin = %info.name, odfv = %spec.name, "the plugin implements an on-demand feature view this registry does not have");
            continue;
        };
        let mismatch = |m: String| LoadError::Mismatch(format!("{}: {m}", spec.name));
        let mut outputs: Vec<&str> = spec.outputs.iter().map(|f| f.name.as_str()).collect();
        let mut expected: Vec<&str> = odfv.features.iter().map(|f| f.name.as_str()).collect();
        outputs.sort_unstable();
        expected.sort_unstable();
        if outputs != expected {
            return Err(mismatch(format!(
                "outputs {outputs:?} but the registry declares {expected:?}"
            )));
        }
        for out in &spec.outputs {
            let feature = odfv.feature(&out.name).map(|i| &odfv.features[i]);
            let want = feature.and_then(|f| column_type_for(f.value_type));
            if want != Some(out.column_type) {
                return Err(mismatch(format!(
                    "output {} is {:?} but the registry type {} needs {want:?}",
                    out.name,
                    out.column_type,
                    feature
                        .map_or_else(String::new, |f| crate::value::value_type_name(f.value_type))
                )));
            }
        }
        for input in &spec.inputs {
            let Some(vt) = input_type(odfv, registry, &input.name) else {
                return Err(mismatch(format!(
                    "input {} is neither a source feature nor a request field",
                    input.name
                )));
            };
            if column_type_for(vt) != Some(input.column_type) {
                return Err(mismatch(format!(
                    "input {} is {:?} but the registry type {} needs {:?}",
                    input.name,
                    input.column_type,
                    crate::value::value_type_name(vt),
                    column_type_for(vt)
                )));
            }
        }
        served.push(spec.name.clone());
    }
    Ok(served)
}
