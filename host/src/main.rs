//! `feast-server`: serve Feast online features from a feature repository.

use std::process::ExitCode;

/// mimalloc: the serving path allocates many small, short-lived buffers across
/// threads, where it measured faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    feast_server::cli::run()
}
