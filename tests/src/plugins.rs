//! The Wasm plugins of `plugins/`, built for wasm32-wasip2 once per test run (in
//! their own target directory, so a build started from a running test never waits
//! on the test build's lock), and plugin directories for test servers.
//!
//! Both versions of `transformed-conv-rate` build in the same target directory (the
//! dependencies are shared; only the plugin crate differs), each copied out under
//! its own name before the other overwrites it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::workspace_root;

/// The built components.
#[derive(Debug, Clone)]
pub struct BuiltPlugins {
    /// `transformed-conv-rate` (the demo's two ODFVs).
    pub conv_rate: PathBuf,
    /// The same built with `--features v2` (outputs shifted by 1000, version 0.2.0).
    pub conv_rate_v2: PathBuf,
    /// The misbehaving test plugin.
    pub evil: PathBuf,
    /// The Redis-layout online store component.
    pub redis_store: PathBuf,
    /// The misbehaving test store component.
    pub evil_store: PathBuf,
    /// The PostgreSQL-layout online store component.
    pub postgres_store: PathBuf,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build(target: &Path, packages: &[&str], features: &[&str]) {
    let mut cmd = crate::cargo();
    cmd.args([
        "build",
        "--profile",
        "plugin",
        "--target",
        "wasm32-wasip2",
        "--target-dir",
    ])
    .arg(target);
    for p in packages {
        cmd.args(["-p", p]);
    }
    for f in features {
        cmd.args(["--features", f]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building plugins failed (is the wasm32-wasip2 target installed? tests/prereqs.sh adds it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the plugins (once per process) and returns their paths.
pub fn built_plugins() -> &'static BuiltPlugins {
    static BUILT: OnceLock<BuiltPlugins> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = target_dir().join("plugins");
        let built = target.join("wasm32-wasip2/plugin");
        let out = target.join("for-tests");
        std::fs::create_dir_all(&out).expect("plugin output dir");
        let keep = |name: &str, as_name: &str| {
            let dest = out.join(as_name);
            std::fs::copy(built.join(name), &dest).expect("copy built plugin");
            dest
        };
        build(
            &target,
            &[
                "transformed-conv-rate",
                "evil-plugin",
                "redis-store",
                "evil-store",
                "postgres-store",
            ],
            &[],
        );
        let conv_rate = keep("transformed_conv_rate.wasm", "transformed_conv_rate.wasm");
        let evil = keep("evil_plugin.wasm", "evil_plugin.wasm");
        let redis_store = keep("redis_store.wasm", "redis_store.wasm");
        let evil_store = keep("evil_store.wasm", "evil_store.wasm");
        let postgres_store = keep("postgres_store.wasm", "postgres_store.wasm");
        build(
            &target,
            &["transformed-conv-rate"],
            &["transformed-conv-rate/v2"],
        );
        let conv_rate_v2 = keep(
            "transformed_conv_rate.wasm",
            "transformed_conv_rate_v2.wasm",
        );
        BuiltPlugins {
            conv_rate,
            conv_rate_v2,
            evil,
            redis_store,
            evil_store,
            postgres_store,
        }
    })
}

/// A shared cache of compiled components for tests (compiling once per run).
pub fn wasm_cache_dir() -> PathBuf {
    target_dir().join("wasm-cache")
}

/// A temporary plugin directory.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    /// An empty directory.
    pub fn empty() -> Self {
        PluginDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A directory holding `files` (source path, name in the directory).
    pub fn with(files: &[(&Path, &str)]) -> Self {
        let d = Self::empty();
        for (src, name) in files {
            d.install(src, name);
        }
        d
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Puts `src` in place as `name` atomically (write a temporary file, rename).
    pub fn install(&self, src: &Path, name: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::copy(src, &tmp).expect("copy plugin");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename plugin");
    }

    /// Puts raw bytes in place as `name` atomically.
    pub fn install_bytes(&self, bytes: &[u8], name: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename");
    }
}

/// `wasm_plugins:` YAML for a directory, with the shared compile cache and fast polling.
pub fn wasm_plugins_yaml(dir: &Path, extra: &str) -> String {
    format!(
        "wasm_plugins:\n    directory: {}\n    cache_dir: {}\n    poll_interval_ms: 50\n{extra}",
        dir.display(),
        wasm_cache_dir().display()
    )
}

/// Held by the tests that build and load Python or JavaScript components: each build
/// and first compile of such a component takes both cores for seconds, and several at
/// once starve the timing-sensitive tests running beside them (a hot swap waiting on a
/// compile, deadlines of calls).
pub async fn heavy_plugin_test() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// The componentize-py executable: `COMPONENTIZE_PY`, else the pinned one of
/// `guest-sdk/python/componentize_py.sh` (a cached venv, made on first use).
pub fn componentize_py() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("COMPONENTIZE_PY") {
            return PathBuf::from(p);
        }
        let script = workspace_root().join("guest-sdk/python/componentize_py.sh");
        let out = std::process::Command::new(&script)
            .output()
            .expect("run componentize_py.sh");
        assert!(
            out.status.success(),
            "componentize_py.sh failed (python3 with venv and PyPI access are needed):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// The Python plugins of `plugins/python/`, built with componentize-py (once per
/// process): (the demo's ODFVs, the misbehaving plugin).
pub fn built_python_plugins() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = target_dir().join("plugins/for-tests/python");
        std::fs::create_dir_all(&out).expect("plugin output dir");
        let build = |app: &str| {
            let dest = out.join(format!("{app}.wasm"));
            let root = workspace_root();
            componentize_python(
                &root,
                &[
                    &root.join("plugins/python").join(app),
                    &root.join("guest-sdk/python"),
                ],
                &dest,
            );
            dest
        };
        (build("transformed_conv_rate"), build("evil"))
    })
}

/// The componentize-js command: `COMPONENTIZE_JS`, else the pinned one of
/// `guest-sdk/js/componentize_js.sh` (installed with npm on first use).
pub fn componentize_js() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("COMPONENTIZE_JS") {
            return PathBuf::from(p);
        }
        let script = workspace_root().join("guest-sdk/js/componentize_js.sh");
        let out = std::process::Command::new(&script)
            .output()
            .expect("run componentize_js.sh");
        assert!(
            out.status.success(),
            "componentize_js.sh failed (node and npm are needed):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// The JavaScript plugins of `plugins/js/`, built with componentize-js (once per
/// process, without HTTP, which plugins are not granted): (the demo's ODFVs, the
/// misbehaving plugin).
pub fn built_js_plugins() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = target_dir().join("plugins/for-tests/js");
        std::fs::create_dir_all(&out).expect("plugin output dir");
        let build = |app: &str| {
            let dest = out.join(format!("{app}.wasm"));
            let root = workspace_root();
            componentize_javascript(
                &root,
                &root.join("plugins/js").join(app).join("app.js"),
                &dest,
            );
            dest
        };
        (build("transformed_conv_rate"), build("evil"))
    })
}

/// Builds the Python ODFV plugin whose module `app` is on `paths` (run in `cwd`,
/// where `wit/` is) into `out`.
pub fn componentize_python(cwd: &Path, paths: &[&Path], out: &Path) {
    let mut cmd = std::process::Command::new(componentize_py());
    cmd.current_dir(cwd)
        .args(["-d", "wit", "-w", "odfv-plugin", "componentize", "app"]);
    for p in paths {
        cmd.arg("-p").arg(p);
    }
    run_build(cmd.arg("-o").arg(out), "componentize-py");
}

/// Builds the JavaScript ODFV plugin `app_js` (run in `cwd`, where `wit/` is) into
/// `out`, without HTTP (which no plugin is granted).
pub fn componentize_javascript(cwd: &Path, app_js: &Path, out: &Path) {
    let mut cmd = std::process::Command::new(componentize_js());
    cmd.current_dir(cwd).arg(app_js).args([
        "--wit",
        "wit",
        "-n",
        "odfv-plugin",
        "-d",
        "http",
        "fetch-event",
        "-o",
    ]);
    run_build(cmd.arg(out), "componentize-js");
}

fn run_build(cmd: &mut std::process::Command, what: &str) {
    let run = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        run.status.success(),
        "{what} failed ({cmd:?}):\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Runs `feast-server plugins build` on `repo`, writing `python-odfvs.wasm` into
/// `dir`; returns its standard output (what was built and skipped).
pub fn build_python_plugin(repo: &Path, dir: &Path) -> String {
    let out = std::process::Command::new(crate::logging::feast_server_binary())
        .arg("-c")
        .arg(repo)
        .args(["plugins", "build", "-o"])
        .arg(dir)
        .arg("--componentize-py")
        .arg(componentize_py())
        .output()
        .expect("run feast-server plugins build");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "plugins build failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
