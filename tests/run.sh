#!/usr/bin/env bash
# Run every test of the project:
#   1. unit tests and end-to-end tests (the real server on loopback ports, real SQLite
#      files and redis-server processes, compared with answers captured from Feast);
#   2. checks with the real Feast's own Python code (pinned pip feast in a venv made by
#      demo/feast_venv.sh): Feast's gRPC stubs against our gRPC server.
# SKIP_PYTHON=1 skips step 2. Extra arguments go to `cargo test`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/tests/prereqs.sh"
cargo test --workspace "$@"
if [[ ${SKIP_PYTHON:-0} == 1 ]]; then
  echo "SKIP_PYTHON=1: skipping the checks with Feast's Python code"
  exit 0
fi
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build -p feast-server
VENV=$("$ROOT/demo/feast_venv.sh")
"$VENV/bin/python" "$ROOT/tests/python/grpc_parity.py" --binary "$TARGET/debug/feast-server"
(cd "$ROOT/tests/python" && "$VENV/bin/python" -m unittest -q test_parity)
for store in sqlite redis; do
  "$VENV/bin/python" "$ROOT/tests/python/sdk_parity.py" --binary "$TARGET/debug/feast-server" --store "$store"
done
