//! `feast-server plugins build`: one component that implements every python-mode
//! on-demand feature view of a registry, from the source Feast recorded for it
//! (`body_text`), so Feast's own Python functions are served without a rewrite.
//!
//! The component is a Python application (`app.py`, generated here) over the Python
//! guest SDK (`guest-sdk/python/feast_plugin`, embedded in this binary, as is `wit/`:
//! see `embedded`),
//! built by componentize-py, which bundles CPython. The SDK runs each function as
//! Feast's feature server does (`feast_plugin.feast_python`).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::columns::odfv_columns;
use super::embedded::{self, PYTHON_SDK, WIT};
use crate::registry::{OnDemandFeatureView, Registry};

/// The componentize-py release the SDK is built and tested with.
pub(crate) const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// What `plugins build` does.
#[derive(Debug)]
pub(crate) struct PythonBuild {
    /// The component written (`<dir>/<name>.wasm`).
    pub(crate) output: PathBuf,
    /// The componentize-py executable.
    pub(crate) componentize_py: PathBuf,
    /// The plugin's name (`describe`).
    pub(crate) name: String,
}

/// What a build made.
#[derive(Debug, Default)]
pub(crate) struct BuildReport {
    /// ODFVs the component implements.
    pub(crate) built: Vec<String>,
    /// ODFVs left out, with why.
    pub(crate) skipped: Vec<(String, String)>,
    /// Inputs left out of an ODFV (its function cannot read them), with why.
    pub(crate) warnings: Vec<String>,
    /// Size of the component in bytes (0: nothing built).
    pub(crate) size: u64,
    /// Time componentize-py took.
    pub(crate) took: Duration,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// componentize-py is not installed where we look.
    #[error(
        "componentize-py not found ({path}): install it with `pip install componentize-py=={COMPONENTIZE_PY_VERSION}` and pass --componentize-py PATH if it is not on PATH"
    )]
    NoComponentizePy {
        /// What was run.
        path: String,
    },
    /// componentize-py failed (its output says why, e.g. a function that does not
    /// compile).
    #[error("componentize-py failed ({status}):\n{output}")]
    Componentize {
        /// Its exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// Reading or writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + use<> {
    let path = path.to_path_buf();
    move |source| BuildError::Io { what, path, source }
}

/// Builds the component of `registry`'s python-mode ODFVs. Nothing is written when
/// the registry has none (the report says why each ODFV was left out).
pub(crate) fn build_python_odfvs(
    registry: &Registry,
    build: &PythonBuild,
) -> Result<BuildReport, BuildError> {
    let mut report = BuildReport::default();
    let mut odfvs = Vec::new();
    let mut names: Vec<&String> = registry.odfvs.keys().collect();
    names.sort();
    for name in names {
        let odfv = &registry.odfvs[name];
        match spec(registry, odfv, &mut report.warnings) {
            Ok(s) => {
                odfvs.push(s);
                report.built.push(name.clone());
            }
            Err(why) => report.skipped.push((name.clone(), why)),
        }
    }
    if odfvs.is_empty() {
        return Ok(report);
    }
    let spec = json!({
        "name": build.name,
        "version": format!("{} registry {}", registry.project, registry.version_id),
        "odfvs": odfvs,
    });
    let dir = tempfile::Builder::new()
        .prefix("feast-plugin-build")
        .tempdir()
        .map_err(io(
            "cannot create a build directory in",
            &std::env::temp_dir(),
        ))?;
    embedded::write_files(dir.path(), "", WIT)
        .and_then(|()| embedded::write_files(dir.path(), "sdk", PYTHON_SDK))
        .map_err(io("cannot write the build directory", dir.path()))?;
    let app = dir.path().join("app/feast_odfvs_app.py");
    std::fs::create_dir_all(dir.path().join("app")).map_err(io("cannot create", dir.path()))?;
    std::fs::write(&app, app_source(registry, &spec)).map_err(io("cannot write", &app))?;

    let out_dir = build.output.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir).map_err(io("cannot create", out_dir))?;
    // Written beside the target, then renamed: a server watching the directory never
    // sees a partial file (and skips names not ending in `.wasm`).
    // componentize-py runs in the build directory: the path must not be relative.
    let output = std::path::absolute(&build.output).map_err(io("cannot resolve", &build.output))?;
    let partial = output.with_extension("wasm.partial");
    let started = Instant::now();
    let run = Command::new(&build.componentize_py)
        .current_dir(dir.path())
        .env_remove("VIRTUAL_ENV")
        .args(["-d", "wit", "-w", "odfv-plugin", "componentize"])
        .args(["-p", "app", "-p", "sdk", "-o"])
        .arg(&partial)
        .arg("feast_odfvs_app")
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::PermissionDenied => BuildError::NoComponentizePy {
                path: build.componentize_py.display().to_string(),
            },
            _ => BuildError::Io {
                what: "cannot run",
                path: build.componentize_py.clone(),
                source: e,
            },
        })?;
    report.took = started.elapsed();
    if !run.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(BuildError::Componentize {
            status: run.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ),
        });
    }
    std::fs::rename(&partial, &output).map_err(io("cannot write", &output))?;
    report.size = std::fs::metadata(&output)
        .map_err(io("cannot read", &output))?
        .len();
    Ok(report)
}

/// The generated application: the specification as JSON, handed to the SDK.
fn app_source(registry: &Registry, spec: &serde_json::Value) -> String {
    // A JSON string literal is a Python string literal with the same value.
    let literal = serde_json::Value::String(spec.to_string()).to_string();
    format!(
        r#""""The python-mode on-demand feature views of Feast project {project}, generated by
`feast-server plugins build` from its registry: regenerate rather than edit."""
import json

from feast_plugin import Plugin
from feast_plugin.feast_python import FeastOdfv

SPEC = json.loads({literal})
plugin = Plugin(SPEC["name"], SPEC["version"])
for odfv in SPEC["odfvs"]:
    plugin.add(
        FeastOdfv(
            odfv["name"],
            odfv["source"],
            odfv["function"],
            odfv["singleton"],
            odfv["inputs"],
            odfv["outputs"],
        )
    )
WitWorld = plugin.world()
"#,
        project = registry.project.replace('"', "'"),
    )
}

/// The SDK's description of one ODFV, or why it cannot be built.
fn spec(
    registry: &Registry,
    odfv: &OnDemandFeatureView,
    warnings: &mut Vec<String>,
) -> Result<serde_json::Value, String> {
    if odfv.mode != "python" {
        return Err(format!(
            "mode {:?}: only python-mode functions are built",
            odfv.mode
        ));
    }
    let udf = odfv
        .udf
        .as_ref()
        .ok_or("the registry holds no source for its function")?;
    let columns = odfv_columns(registry, odfv, warnings)?;
    Ok(json!({
        "name": odfv.name,
        "function": udf.name,
        "source": udf.source,
        "singleton": odfv.singleton,
        "inputs": columns
            .inputs
            .iter()
            .map(|c| json!([c.name, c.feast_type, c.aliases]))
            .collect::<Vec<_>>(),
        "outputs": columns
            .outputs
            .iter()
            .map(|c| json!([c.name, c.feast_type]))
            .collect::<Vec<_>>(),
    }))
}
