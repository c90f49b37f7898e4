#!/usr/bin/env bash
# Run every test of the project: unit tests and the end-to-end tests (real server on
# loopback ports, real SQLite files and Redis servers, real compiled Wasm plugins,
# compared with answers captured from the real Feast).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/tests/prereqs.sh"
cargo test --workspace "$@"
