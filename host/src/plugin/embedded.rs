//! Files this binary carries so that it can build and scaffold plugins anywhere: the
//! WIT package and the Python and JavaScript guest SDKs, as (relative path, text).

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
