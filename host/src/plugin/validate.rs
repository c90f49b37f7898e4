//! A plugin's description checked against the registry: every ODFV it claims must
//! have the registry's outputs, and inputs the ODFV's sources define, in the column
//! types the registry's value types map to.

use super::convert::{column_type_for, column_type_name};
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

/// What a column of registry type `value_type` must be, in words.
fn carried_as(value_type: i32) -> String {
    let name = crate::value::value_type_name(value_type);
    match column_type_for(value_type) {
        Some(t) => format!(
            "its registry type {name} is carried as {}",
            column_type_name(t)
        ),
        None => format!("its registry type {name} is not a plugin column type yet"),
    }
}

/// Checks a plugin's description against the registry; returns the ODFVs it can
/// serve. Every problem of every ODFV is reported at once, in words.
pub(super) fn validate(info: &PluginInfo, registry: &Registry) -> Result<Vec<String>, LoadError> {
    let mut served = Vec::new();
    let mut problems = Vec::new();
    for spec in &info.odfvs {
        let Some(odfv) = registry.odfvs.get(&spec.name) else {
            tracing::info!(plugin = %info.name, odfv = %spec.name, "the plugin implements an on-demand feature view this registry does not have");
            continue;
        };
        let before = problems.len();
        let mut problem = |m: String| problems.push(format!("{}: {m}", spec.name));
        let missing: Vec<&str> = odfv
            .features
            .iter()
            .filter(|f| !spec.outputs.iter().any(|o| o.name == f.name))
            .map(|f| f.name.as_str())
            .collect();
        if !missing.is_empty() {
            problem(format!(
                "it does not return the registry's feature(s) {}",
                missing.join(", ")
            ));
        }
        for out in &spec.outputs {
            let Some(feature) = odfv.feature(&out.name).map(|i| &odfv.features[i]) else {
                problem(format!(
                    "it returns {}, which is not a feature of the ODFV in the registry",
                    out.name
                ));
                continue;
            };
            if column_type_for(feature.value_type) != Some(out.column_type) {
                problem(format!(
                    "output {} is a {} column, but {}",
                    out.name,
                    column_type_name(out.column_type),
                    carried_as(feature.value_type)
                ));
            }
        }
        for input in &spec.inputs {
            let Some(vt) = input_type(odfv, registry, &input.name) else {
                problem(format!(
                    "input {} is neither a feature of its source views nor a request data field",
                    input.name
                ));
                continue;
            };
            if column_type_for(vt) != Some(input.column_type) {
                problem(format!(
                    "input {} is a {} column, but {}",
                    input.name,
                    column_type_name(input.column_type),
                    carried_as(vt)
                ));
            }
        }
        if problems.len() == before {
            served.push(spec.name.clone());
        }
    }
    if problems.is_empty() {
        Ok(served)
    } else {
        Err(LoadError::Mismatch(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::instance::{ColumnType, Field, OdfvSpec};

    fn field(name: &str, column_type: ColumnType) -> Field {
        Field {
            name: name.into(),
            column_type,
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_in_words() {
        let registry = crate::registry::demo_registry();
        let info = PluginInfo {
            name: "p".into(),
            version: "1".into(),
            odfvs: vec![OdfvSpec {
                name: "transformed_conv_rate".into(),
                inputs: vec![
                    field("conv_rate", ColumnType::Float64),
                    field("nope", ColumnType::Int64),
                ],
                outputs: vec![
                    field("conv_rate_plus_val1", ColumnType::Float32),
                    field("extra", ColumnType::Utf8),
                ],
            }],
        };
        let Err(LoadError::Mismatch(message)) = validate(&info, &registry) else {
            panic!("a mismatch");
        };
        for words in [
            "transformed_conv_rate: it does not return the registry's feature(s) conv_rate_plus_val2",
            "it returns extra, which is not a feature of the ODFV in the registry",
            "output conv_rate_plus_val1 is a float32 column, but its registry type DOUBLE is carried as float64",
            "input conv_rate is a float64 column, but its registry type FLOAT is carried as float32",
            "input nope is neither a feature of its source views nor a request data field",
        ] {
            assert!(message.contains(words), "{message:?} lacks {words:?}");
        }
        assert!(
            !message.contains("Float32"),
            "no Rust Debug names: {message}"
        );
    }
}
