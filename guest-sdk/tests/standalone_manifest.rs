//! The SDK's manifests inherit nothing from the workspace (so a copy of `guest-sdk/`
//! beside `wit/` builds alone), yet spell out the workspace's dependency versions and
//! lints: this keeps them equal.

use std::path::Path;

/// `name = spec` lines of the `[section]` of a manifest, trimmed.
fn section(manifest: &str, header: &str) -> Vec<String> {
    manifest
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn manifests_spell_out_the_workspace_versions_and_lints() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = sdk.join("../Cargo.toml");
    if !root.is_file() {
        return; // a stand-alone copy: nothing to compare with
    }
    let workspace = read(&root);
    let shared = section(&workspace, "[workspace.dependencies]");
    for manifest in [sdk.join("Cargo.toml"), sdk.join("macros/Cargo.toml")] {
        let text = read(&manifest);
        assert!(
            !text.contains(".workspace") && !text.contains("workspace = true"),
            "{} inherits from the workspace",
            manifest.display()
        );
        for header in [
            "[dependencies]",
            "[target.'cfg(target_arch = \"wasm32\")'.dependencies]",
        ] {
            for dep in section(&text, header)
                .iter()
                .filter(|d| !d.contains("path ="))
            {
                assert!(
                    shared.contains(dep),
                    "{}: `{dep}` differs from [workspace.dependencies]",
                    manifest.display()
                );
            }
        }
        for (ours, theirs) in [
            ("[lints.rust]", "[workspace.lints.rust]"),
            ("[lints.clippy]", "[workspace.lints.clippy]"),
        ] {
            assert_eq!(
                section(&text, ours),
                section(&workspace, theirs),
                "{}: {ours}",
                manifest.display()
            );
        }
        let package = section(&text, "[package]");
        for key in section(&workspace, "[workspace.package]") {
            assert!(
                package.contains(&key),
                "{}: [package] lacks `{key}`",
                manifest.display()
            );
        }
    }
}
