//! `feast-server plugins scaffold`: a plugin project for one on-demand feature view of
//! the registry, in Rust, Python or JavaScript, whose inputs and outputs are the
//! ODFV's as the registry declares them; only the computation is left to write.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::columns::{OdfvColumn, OdfvColumns, odfv_columns};
use super::embedded::{self, JS_SDK, PYTHON_SDK, RUST_SDK, WIT};
use super::instance::ColumnType;
use crate::registry::Registry;

/// The language of a scaffolded plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Language {
    /// A Rust crate with `#[odfv]` (built with cargo for wasm32-wasip2).
    Rust,
    /// A Python application (built with componentize-py).
    Python,
    /// A JavaScript module (built with componentize-js).
    JavaScript,
}

/// What to scaffold.
#[derive(Debug)]
pub(crate) struct Scaffold<'a> {
    /// The ODFV.
    pub(crate) odfv: &'a str,
    /// The language.
    pub(crate) language: Language,
    /// The directory written (must not exist or be empty).
    pub(crate) dir: PathBuf,
    /// Rust: the `guest-sdk` directory the crate depends on; `None`: a copy of the SDK
    /// (and `wit/`) written into the project.
    pub(crate) sdk: Option<PathBuf>,
}

/// Writes the project; returns the files written and how to build the plugin.
pub(crate) fn scaffold(
    registry: &Registry,
    s: &Scaffold<'_>,
) -> Result<(Vec<PathBuf>, String), String> {
    let odfv = registry.odfvs.get(s.odfv).ok_or_else(|| {
        let mut known: Vec<&String> = registry.odfvs.keys().collect();
        known.sort();
        format!(
            "the registry has no on-demand feature view {} (it has: {})",
            s.odfv,
            known
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut warnings = Vec::new();
    let columns = odfv_columns(registry, odfv, &mut warnings)?;
    if s.dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} exists and is not empty", s.dir.display()));
    }
    let write = |files: &[(&str, &str)], prefix: &str| {
        embedded::write_files(&s.dir, prefix, files)
            .map_err(|e| format!("cannot write {}: {e}", s.dir.display()))
    };
    let name = s.odfv;
    let crate_name = name.replace('_', "-");
    let (files, build): (Vec<(String, String)>, String) = match s.language {
        Language::Rust => {
            let sdk = match &s.sdk {
                Some(dir) => {
                    let sdk = std::path::absolute(dir)
                        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
                    if !sdk.join("Cargo.toml").is_file() {
                        return Err(format!(
                            "{} is not the guest SDK (guest-sdk/ of a feast-server checkout)",
                            sdk.display()
                        ));
                    }
                    sdk
                }
                None => {
                    write(WIT, "")?;
                    write(RUST_SDK, "feast-plugin-sdk")?;
                    PathBuf::from("feast-plugin-sdk")
                }
            };
            (
                vec![
                    ("Cargo.toml".into(), cargo_toml(&crate_name, &sdk)),
                    ("src/lib.rs".into(), rust_lib(registry, name, &columns)),
                ],
                format!(
                    "cargo build --profile plugin --target wasm32-wasip2   # -> target/wasm32-wasip2/plugin/{}.wasm",
                    crate_name.replace('-', "_")
                ),
            )
        }
        Language::Python => {
            write(WIT, "")?;
            write(PYTHON_SDK, "")?;
            (
                vec![("app.py".into(), python_app(registry, name, &columns))],
                format!(
                    "componentize-py -d wit -w odfv-plugin componentize app -p . -o {name}.wasm"
                ),
            )
        }
        Language::JavaScript => {
            write(WIT, "")?;
            write(JS_SDK, "")?;
            (
                vec![("app.js".into(), js_app(registry, name, &columns))],
                format!(
                    "componentize-js app.js --wit wit -n odfv-plugin -d http fetch-event -o {name}.wasm"
                ),
            )
        }
    };
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    write(&borrowed, "")?;
    if s.language == Language::Rust {
        // Laid out as rustfmt lays it out, when rustfmt is there.
        let lib = s.dir.join("src/lib.rs");
        if let Some(text) = std::fs::read_to_string(&lib)
            .ok()
            .and_then(|t| formatted(&t))
        {
            let _ = std::fs::write(&lib, text);
        }
    }
    let written = files.iter().map(|(p, _)| s.dir.join(p)).collect();
    let mut how = format!("cd {} && {build}", s.dir.display());
    for w in warnings {
        let _ = write!(how, "\nwarning: {w}");
    }
    Ok((written, how))
}

/// `source` as rustfmt (edition 2024) formats it, or None without rustfmt.
fn formatted(source: &str) -> Option<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(source.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Rust type of a column type (`row::RowValue`).
fn rust_type(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Int32 => "i32",
        ColumnType::Int64 => "i64",
        ColumnType::Float32 => "f32",
        ColumnType::Float64 => "f64",
        ColumnType::Boolean => "bool",
        ColumnType::Utf8 => "String",
        ColumnType::Binary => "Vec<u8>",
        ColumnType::TimestampSeconds => "Timestamp",
        ColumnType::Int32List => "Vec<i32>",
        ColumnType::Int64List => "Vec<i64>",
        ColumnType::Float32List => "Vec<f32>",
        ColumnType::Float64List => "Vec<f64>",
        ColumnType::BooleanList => "Vec<bool>",
        ColumnType::Utf8List => "Vec<String>",
        ColumnType::BinaryList => "Vec<Vec<u8>>",
        ColumnType::TimestampSecondsList => "Vec<Timestamp>",
    }
}

/// The SDK constant of a column type (Python and JavaScript).
fn sdk_constant(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Int32 => "INT32",
        ColumnType::Int64 => "INT64",
        ColumnType::Float32 => "FLOAT32",
        ColumnType::Float64 => "FLOAT64",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Utf8 => "UTF8",
        ColumnType::Binary => "BINARY",
        ColumnType::TimestampSeconds => "TIMESTAMP_SECONDS",
        ColumnType::Int32List => "INT32_LIST",
        ColumnType::Int64List => "INT64_LIST",
        ColumnType::Float32List => "FLOAT32_LIST",
        ColumnType::Float64List => "FLOAT64_LIST",
        ColumnType::BooleanList => "BOOLEAN_LIST",
        ColumnType::Utf8List => "UTF8_LIST",
        ColumnType::BinaryList => "BINARY_LIST",
        ColumnType::TimestampSecondsList => "TIMESTAMP_SECONDS_LIST",
    }
}

/// The SDK constants a project's columns use, sorted, each once.
fn sdk_constants(columns: &OdfvColumns) -> Vec<&'static str> {
    let mut constants: Vec<&str> = columns
        .inputs
        .iter()
        .chain(&columns.outputs)
        .map(|c| sdk_constant(c.column_type))
        .collect();
    constants.sort_unstable();
    constants.dedup();
    constants
}

/// `name: TYPE` pairs (`"name": TYPE` with `quote`), comma-separated.
fn typed_columns(cs: &[OdfvColumn], quote: &str) -> String {
    cs.iter()
        .map(|c| format!("{quote}{}{quote}: {}", c.name, sdk_constant(c.column_type)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn described(c: &OdfvColumn) -> String {
    format!("{} ({})", c.name, c.feast_type)
}

fn header(registry: &Registry, name: &str, columns: &OdfvColumns) -> Vec<String> {
    let list = |cs: &[OdfvColumn]| cs.iter().map(described).collect::<Vec<_>>().join(", ");
    vec![
        format!(
            "The on-demand feature view `{name}` of Feast project `{}`, scaffolded by",
            registry.project
        ),
        "`feast-server plugins scaffold` from the registry.".into(),
        format!("Inputs: {}.", list(&columns.inputs)),
        format!("Outputs: {}.", list(&columns.outputs)),
    ]
}

fn cargo_toml(crate_name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
feast-plugin-sdk = {{ path = "{sdk}" }}

# Its own workspace, wherever it is.
[workspace]

# What the project's plugins are built with: small, with the Arrow code they call per
# request optimized for speed.
[profile.plugin]
inherits = "release"
opt-level = "s"
lto = true
strip = true
codegen-units = 1
debug = false

[profile.plugin.package."*"]
opt-level = 3
"#,
        sdk = sdk.display()
    )
}

fn rust_lib(registry: &Registry, name: &str, columns: &OdfvColumns) -> String {
    let mut out = String::new();
    for line in header(registry, name, columns) {
        let _ = writeln!(out, "//! {line}");
    }
    out.push_str(
        "\nuse feast_plugin_sdk::row::Timestamp;\nuse feast_plugin_sdk::{Plugin, odfv};\n\n",
    );
    let args: Vec<String> = columns
        .inputs
        .iter()
        .map(|c| format!("{}: Option<{}>", c.name, rust_type(c.column_type)))
        .collect();
    let results: Vec<String> = columns
        .outputs
        .iter()
        .map(|c| format!("Option<{}>", rust_type(c.column_type)))
        .collect();
    let outputs: Vec<&str> = columns.outputs.iter().map(|c| c.name.as_str()).collect();
    let (result_type, nulls) = if results.len() == 1 {
        (results[0].clone(), "None".to_string())
    } else {
        (
            format!("({})", results.join(", ")),
            format!("({})", vec!["None"; results.len()].join(", ")),
        )
    };
    let _ = writeln!(
        out,
        "/// One row of `{name}`: every input may be null (`None`).\n#[odfv(name = \"{name}\", outputs = \"{}\")]",
        outputs.join(", ")
    );
    // One argument per line, as rustfmt lays out a long signature.
    let _ = writeln!(out, "fn {name}(");
    for a in &args {
        let _ = writeln!(out, "    {a},");
    }
    let _ = writeln!(out, ") -> {result_type} {{");
    let unused: Vec<String> = columns.inputs.iter().map(|c| c.name.clone()).collect();
    if !unused.is_empty() {
        let _ = writeln!(
            out,
            "    // Compute the outputs from the inputs here.\n    let _ = ({});",
            unused.join(", ")
        );
    }
    let _ = writeln!(out, "    {nulls}\n}}\n");
    let _ = writeln!(
        out,
        "/// The plugin: the ODFV above.\npub fn plugin() -> Plugin {{\n    Plugin::new(\"{name}\", \"0.1.0\").odfv({name}_odfv())\n}}\n\nfeast_plugin_sdk::export_plugin!(plugin);"
    );
    if !columns.inputs.iter().chain(&columns.outputs).any(|c| {
        matches!(
            c.column_type,
            ColumnType::TimestampSeconds | ColumnType::TimestampSecondsList
        )
    }) {
        out = out.replace("use feast_plugin_sdk::row::Timestamp;\n", "");
    }
    out
}

fn python_app(registry: &Registry, name: &str, columns: &OdfvColumns) -> String {
    let mut out = String::from("\"\"\"");
    out.push_str(&header(registry, name, columns).join("\n"));
    out.push_str("\n\nBuild: componentize-py -d wit -w odfv-plugin componentize app -p . -o PLUGIN.wasm\n\"\"\"\n");
    let constants = sdk_constants(columns);
    let _ = writeln!(
        out,
        "from feast_plugin import {}, Plugin\n\nplugin = Plugin(\"{name}\", \"0.1.0\")\n",
        constants.join(", ")
    );
    let _ = writeln!(
        out,
        "\n@plugin.odfv(\n    \"{name}\",\n    inputs={{{}}},\n    outputs={{{}}},\n)",
        typed_columns(&columns.inputs, "\""),
        typed_columns(&columns.outputs, "\"")
    );
    let _ = writeln!(
        out,
        "def {name}(cols):\n    \"\"\"Input columns (lists, None for null) to output columns of the same length.\"\"\"\n    rows = len(next(iter(cols.values()), []))"
    );
    let outs: Vec<String> = columns
        .outputs
        .iter()
        .map(|c| format!("\"{}\": [None] * rows", c.name))
        .collect();
    let _ = writeln!(
        out,
        "    # Compute the outputs from the inputs here.\n    return {{{}}}\n\n\nWitWorld = plugin.world()",
        outs.join(", ")
    );
    out
}

fn js_app(registry: &Registry, name: &str, columns: &OdfvColumns) -> String {
    let mut out = String::new();
    for line in header(registry, name, columns) {
        let _ = writeln!(out, "// {line}");
    }
    out.push_str("//\n// Build: componentize-js app.js --wit wit -n odfv-plugin -d http fetch-event -o PLUGIN.wasm\n");
    let constants = sdk_constants(columns);
    let _ = writeln!(
        out,
        "import {{ {}, Plugin }} from \"./feast_plugin.js\";\n\nconst plugin = new Plugin(\"{name}\", \"0.1.0\");\n",
        constants.join(", ")
    );
    let outs: Vec<String> = columns
        .outputs
        .iter()
        .map(|c| format!("{}: new Array(rows).fill(null)", c.name))
        .collect();
    let _ = writeln!(
        out,
        "plugin.odfv(\n  \"{name}\",\n  {{ {} }},\n  {{ {} }},\n  // Input columns (arrays, null for null) to output columns of the same length.\n  (cols, rows) => {{\n    // Compute the outputs from the inputs here.\n    return {{ {} }};\n  }},\n);\n\nexport const {{ describe, transform }} = plugin.world();",
        typed_columns(&columns.inputs, ""),
        typed_columns(&columns.outputs, ""),
        outs.join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rustfmt(source: &str) -> String {
        formatted(source).expect("rustfmt runs (rustup component add rustfmt)")
    }

    /// `plugins/scaffold-example` is what the scaffold writes for the demo's ODFV, and
    /// the workspace compiles it (and lints it): the generator must still write it.
    #[test]
    fn the_rust_scaffold_is_the_compiled_example() {
        let registry = crate::registry::demo_registry();
        let odfv = &registry.odfvs["transformed_conv_rate"];
        let columns = odfv_columns(&registry, odfv, &mut Vec::new()).expect("columns");
        assert_eq!(
            rustfmt(&rust_lib(&registry, "transformed_conv_rate", &columns)),
            include_str!("../../../plugins/scaffold-example/src/lib.rs"),
            "regenerate plugins/scaffold-example/src/lib.rs with `feast-server -c demo/feature_repo plugins scaffold --odfv transformed_conv_rate`"
        );
    }

    /// A Rust project carries a copy of the SDK and `wit/` that matches `guest-sdk/`,
    /// and depends on it (a cold build of such a project is timed in docs/plugins.md).
    #[test]
    fn a_rust_project_carries_the_sdk_it_depends_on() {
        let registry = crate::registry::demo_registry();
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = Scaffold {
            odfv: "transformed_conv_rate",
            language: Language::Rust,
            dir: dir.path().join("p"),
            sdk: None,
        };
        scaffold(&registry, &spec).expect("scaffold");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (file, text) in RUST_SDK {
            let copied = std::fs::read_to_string(spec.dir.join("feast-plugin-sdk").join(file))
                .expect("copied SDK file");
            assert_eq!(&copied, text, "{file}");
            let source =
                std::fs::read_to_string(root.join("guest-sdk").join(file)).expect("SDK file");
            assert_eq!(&source, text, "{file}");
        }
        for sub in ["src", "macros/src"] {
            for entry in std::fs::read_dir(root.join("guest-sdk").join(sub)).expect("SDK dir") {
                let name = format!(
                    "{sub}/{}",
                    entry.expect("entry").file_name().to_string_lossy()
                );
                assert!(
                    RUST_SDK.iter().any(|(f, _)| *f == name),
                    "{name} is not carried (embedded::RUST_SDK)"
                );
            }
        }
        assert!(spec.dir.join("wit/types.wit").is_file());
        let manifest = std::fs::read_to_string(spec.dir.join("Cargo.toml")).expect("manifest");
        assert!(
            manifest.contains(r#"feast-plugin-sdk = { path = "feast-plugin-sdk" }"#),
            "{manifest}"
        );
    }
}
