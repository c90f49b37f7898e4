//! The columns a plugin implementing an ODFV reads and writes, derived from the
//! registry: what `plugins build` and `plugins scaffold` declare for it.

use std::collections::HashSet;

use super::convert::column_type_for;
use super::instance::ColumnType;
use crate::registry::{OdfvSource, OnDemandFeatureView, Registry};
use crate::value::ValueType;

/// One column of an ODFV's plugin.
#[derive(Clone, Debug)]
pub(super) struct OdfvColumn {
    /// The column (feature or request field) name.
    pub(super) name: String,
    /// Its Feast value type name (`FLOAT`, `UNIX_TIMESTAMP`, ...).
    pub(super) feast_type: &'static str,
    /// The plugin column type carrying it.
    pub(super) column_type: ColumnType,
    /// Other names Feast's own functions know an input by (`view__feature`).
    pub(super) aliases: Vec<String>,
}

/// The inputs and outputs of an ODFV's plugin.
#[derive(Clone, Debug)]
pub(super) struct OdfvColumns {
    /// Source features, then request data fields, in registry order, each once.
    pub(super) inputs: Vec<OdfvColumn>,
    /// The ODFV's features.
    pub(super) outputs: Vec<OdfvColumn>,
}

/// A Feast value type's name.
pub(super) fn type_name(value_type: i32) -> &'static str {
    ValueType::try_from(value_type).map_or("UNKNOWN", |v| v.as_str_name())
}

fn column(name: &str, value_type: i32, aliases: Vec<String>) -> Option<OdfvColumn> {
    Some(OdfvColumn {
        name: name.to_string(),
        feast_type: type_name(value_type),
        column_type: column_type_for(value_type)?,
        aliases,
    })
}

/// The columns of `odfv`'s plugin, or why it cannot have one (an output of a type
/// plugins do not carry). Inputs that cannot be carried are left out, with a warning.
pub(super) fn odfv_columns(
    registry: &Registry,
    odfv: &OnDemandFeatureView,
    warnings: &mut Vec<String>,
) -> Result<OdfvColumns, String> {
    let mut outputs = Vec::new();
    for f in &odfv.features {
        outputs.push(column(&f.name, f.value_type, Vec::new()).ok_or_else(|| {
            format!(
                "feature {} has type {}, which plugins do not carry yet",
                f.name,
                type_name(f.value_type)
            )
        })?);
    }
    let mut inputs = Vec::new();
    let mut seen = HashSet::new();
    let mut input =
        |name: &str, value_type: i32, aliases: Vec<String>| match column(name, value_type, aliases)
        {
            Some(c) if seen.insert(name.to_string()) => inputs.push(c),
            Some(_) => warnings.push(format!(
                "{}: input {name} is defined by two sources; the plugin gets the first",
                odfv.name
            )),
            None => warnings.push(format!(
                "{}: input {name} has type {}, which plugins do not carry yet: it is left out",
                odfv.name,
                type_name(value_type)
            )),
        };
    for source in &odfv.sources {
        match source {
            OdfvSource::View(p) => {
                let view = registry
                    .views
                    .get(&p.view_name)
                    .ok_or_else(|| format!("its source view {} is not served", p.view_name))?;
                for f in &view.features {
                    if !p.features.is_empty() && !p.features.contains(&f.name) {
                        continue;
                    }
                    // Feast's functions see a source feature under its short name and
                    // as `<view>__<feature>` (with the projection's alias too).
                    let mut aliases = vec![format!("{}__{}", p.view_name, f.name)];
                    if p.name_to_use() != p.view_name {
                        aliases.push(format!("{}__{}", p.name_to_use(), f.name));
                    }
                    input(&f.name, f.value_type, aliases);
                }
            }
            OdfvSource::Request { fields } => {
                for f in fields {
                    input(&f.name, f.value_type, Vec::new());
                }
            }
        }
    }
    Ok(OdfvColumns { inputs, outputs })
}
