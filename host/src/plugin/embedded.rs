//! Files this binary carries so that it can build and scaffold plugins anywhere: the
//! WIT package and the Rust, Python and JavaScript guest SDKs, as (relative path, text).

/// `wit/`.
pub(super) const WIT: &[(&str, &str)] = &[
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    (
        "wit/transformation.wit",
        include_str!("../../../wit/transformation.wit"),
    ),
    (
        "wit/online-store.wit",
        include_str!("../../../wit/online-store.wit"),
    ),
];

/// The Rust guest SDK (`guest-sdk/`, its macro crate included), which builds beside a
/// `wit/` directory.
pub(super) const RUST_SDK: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../guest-sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("src/ipc.rs", include_str!("../../../guest-sdk/src/ipc.rs")),
    (
        "src/flat_ipc.rs",
        include_str!("../../../guest-sdk/src/flat_ipc.rs"),
    ),
    ("src/row.rs", include_str!("../../../guest-sdk/src/row.rs")),
    (
        "src/store.rs",
        include_str!("../../../guest-sdk/src/store.rs"),
    ),
    (
        "macros/Cargo.toml",
        include_str!("../../../guest-sdk/macros/Cargo.toml"),
    ),
    (
        "macros/src/lib.rs",
        include_str!("../../../guest-sdk/macros/src/lib.rs"),
    ),
];

/// `guest-sdk/python/feast_plugin`.
pub(super) const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "feast_plugin/__init__.py",
        include_str!("../../../guest-sdk/python/feast_plugin/__init__.py"),
    ),
    (
        "feast_plugin/arrow_ipc.py",
        include_str!("../../../guest-sdk/python/feast_plugin/arrow_ipc.py"),
    ),
    (
        "feast_plugin/feast_python.py",
        include_str!("../../../guest-sdk/python/feast_plugin/feast_python.py"),
    ),
];

/// `guest-sdk/js/feast_plugin.js`.
pub(super) const JS_SDK: &[(&str, &str)] = &[(
    "feast_plugin.js",
    include_str!("../../../guest-sdk/js/feast_plugin.js"),
)];

/// Writes `files` under `dir` (`prefix` joined before each path).
pub(super) fn write_files(
    dir: &std::path::Path,
    prefix: &str,
    files: &[(&str, &str)],
) -> std::io::Result<()> {
    for (file, text) in files {
        let path = dir.join(prefix).join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    Ok(())
}
