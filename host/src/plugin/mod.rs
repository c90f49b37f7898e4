//! On-demand feature views as sandboxed WebAssembly components (`wit/transformation.wit`).
//!
//! | module | its one job |
//! |---|---|
//! | `config` | `wasm_plugins:` of `feature_store.yaml`: directory and limits |
//! | `engine` | the wasmtime engine, its epoch ticker and the compiled-component cache |
//! | `sandbox` | the sandbox of any component: capabilities, limits, stderr, trap classification |
//! | `instance` | one loaded ODFV component: its instances, reused |
//! | `runtime` | the plugin directory, validation on load, hot swap |
//! | `validate` | a plugin's description checked against the registry |
//! | `call` | an ODFV computed: inputs to Arrow, the call, outputs checked and converted |
//! | `convert`, `ipc` | Feast values to Arrow and back; Arrow IPC with size limits |
//! | `status` | `GET /plugins` and the plugin metrics |
//! | `columns` | the columns of an ODFV's plugin, from the registry |
//! | `python_build` | `plugins build`: a component of the registry's python-mode ODFVs |
//! | `scaffold` | `plugins scaffold`: a plugin project for one ODFV (Rust, Python, JavaScript) |
//! | `embedded` | the WIT package and the Python and JavaScript SDKs this binary carries |
//!
//! What a plugin may do: it gets no filesystem, no network, no environment and no
//! arguments; it may read the wall clock and the monotonic clock (an ODFV may compute
//! ages) and get random bytes (language runtimes seed their hash maps with them).
//! Each call runs under a deadline (epoch interruption) and a memory limit.

mod cache;
mod call;
mod columns;
mod config;
mod convert;
mod embedded;
mod engine;
mod error;
mod instance;
mod ipc;
mod python_build;
mod runtime;
pub(crate) mod sandbox;
mod scaffold;
mod status;
mod validate;

pub use call::{OdfvError, OdfvInput};
pub use config::PluginConfig;
pub(crate) use engine::{CompiledBy, WasmEngine, compile_to_file};
pub(crate) use error::PluginFailure as ComponentFailure;
pub(crate) use python_build::{PythonBuild, build_python_odfvs};
pub use runtime::{EngineError, PluginRuntime};
pub(crate) use scaffold::{Language, Scaffold, scaffold};
pub(crate) use status::PluginStatus;
pub(crate) use status::rfc3339;
