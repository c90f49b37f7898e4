//! Why a plugin could not be loaded, or a call failed.

use std::time::Duration;

/// A plugin file that could not be loaded (the previous version, if any, keeps serving).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(String),
    /// Not a valid component.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component does not fit the `odfv-plugin` world or asks for more than WASI.
    #[error("cannot link the component: {0}")]
    Link(String),
    /// `describe` failed.
    #[error("describe failed: {0}")]
    Describe(String),
    /// What it describes does not match the registry.
    #[error("does not match the registry: {0}")]
    Mismatch(String),
    /// The trial call on one row failed.
    #[error("the trial call failed: {0}")]
    Smoke(String),
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    /// The call ran past its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The guest asked for more memory than allowed.
    #[error("{0}")]
    MemoryLimit(String),
    /// The guest's stack overflowed.
    #[error("stack overflow (unbounded recursion)")]
    StackOverflow,
    /// The guest panicked.
    #[error("panicked: {0}")]
    Panic(String),
    /// Another trap.
    #[error("trapped: {trap}{}", if stderr.is_empty() { String::new() } else { format!(" (stderr: {stderr})") })]
    Trap {
        /// The trap.
        trap: String,
        /// What the guest wrote to stderr during the call.
        stderr: String,
    },
    /// The guest returned a `plugin-error`.
    #[error("returned an error: {0}")]
    Guest(String),
    /// The input could not be built or is too large.
    #[error("{0}")]
    Input(String),
    /// The output is not what the registry declares.
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// A fresh instance could not be created.
    #[error("cannot start an instance: {0}")]
    Instantiate(String),
}

impl PluginFailure {
    /// A short name of the failure kind (for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFailure::Timeout(_) => "timeout",
            PluginFailure::MemoryLimit(_) => "memory",
            PluginFailure::StackOverflow => "stack_overflow",
            PluginFailure::Panic(_) => "panic",
            PluginFailure::Trap { .. } => "trap",
            PluginFailure::Guest(_) => "guest_error",
            PluginFailure::Input(_) => "input",
            PluginFailure::InvalidOutput(_) => "invalid_output",
            PluginFailure::Instantiate(_) => "instantiate",
        }
    }
}
