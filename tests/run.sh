#!/usr/bin/env bash
# Run every test of the project:
#   1. unit tests and end-to-end tests (the real server on loopback ports, real SQLite
#      files and redis-server processes, compared with answers captured from Feast);
#   2. checks with the real Feast's own Python code (pinned pip feast in a venv made by
#      demo/feast_venv.sh): Feast's gRPC stubs against our gRPC server, the Feast SDK's
#      remote online store against our HTTP server (SQLite and Redis, ODFVs included),
#      writes compared byte for byte with the real Feast SDK's (SQLite, Redis, and the
#      Redis and PostgreSQL store components), the SDK logging in with
#      OIDC and refused as feast serve refuses it, and feature logs read back with
#      pyarrow and Feast.
# SKIP_PYTHON=1 skips step 2. Extra arguments go to `cargo test`. Prints the time of
# each step.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
start=$(date +%s)
step() {
  local name=$1 t0
  shift
  t0=$(date +%s)
  echo "-- $name"
  "$@"
  echo "-- $name: $(($(date +%s) - t0)) s"
}
"$ROOT/tests/prereqs.sh"
# The end-to-end tests mostly wait (for servers, timeouts, Redis failovers): four at a
# time on two cores take a quarter of the time of two at a time.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}
# One build of every target (tests, examples, the server binary), so that nothing
# below compiles again: the Python checks use this build's binary.
step "build (all targets, dev profile)" cargo build --workspace --all-targets
step "unit and end-to-end tests" cargo test --workspace "$@"
if [[ ${SKIP_PYTHON:-0} == 1 ]]; then
  echo "SKIP_PYTHON=1: skipping the checks with Feast's Python code"
  exit 0
fi
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET/debug/feast-server"
VENV=$("$ROOT/demo/feast_venv.sh")
step "gRPC parity (Feast's stubs)" "$VENV/bin/python" "$ROOT/tests/python/grpc_parity.py" --binary "$BIN"
step "Python guest SDK against Feast and pyarrow" bash -c "cd '$ROOT/tests/python' && '$VENV/bin/python' -m unittest -q test_python_sdk"
step "JavaScript guest SDK against pyarrow" node "$ROOT/tests/js/test_feast_plugin.mjs" --python "$VENV/bin/python"
step "HTTP parity (golden files)" bash -c "cd '$ROOT/tests/python' && '$VENV/bin/python' -m unittest -q test_parity"
# The SDK parity calls include on-demand feature views: serve them with the demo plugin
# (built by the end-to-end tests already).
cargo build --profile plugin --target wasm32-wasip2 -p transformed-conv-rate --target-dir "$TARGET/plugins"
PLUGINS=$(mktemp -d)
trap 'rm -rf "$PLUGINS"' EXIT
cp "$TARGET/plugins/wasm32-wasip2/plugin/transformed_conv_rate.wasm" "$PLUGINS/"
for store in sqlite redis; do
  step "Feast SDK remote reads ($store)" "$VENV/bin/python" "$ROOT/tests/python/sdk_parity.py" --binary "$BIN" --store "$store" --plugins "$PLUGINS"
done
# Writes: the same bytes as the real Feast SDK writes, read back both ways, the SDK's
# remote online store and feast materialize against this server (SQLite, Redis, Cluster).
for store in sqlite redis redis-cluster; do
  step "writes as Feast writes them ($store)" "$VENV/bin/python" "$ROOT/tests/python/write_parity.py" --binary "$BIN" --store "$store"
done
# The same through the Redis-layout store component (built by the end-to-end tests).
step "writes as Feast writes them (wasm-redis component)" "$VENV/bin/python" "$ROOT/tests/python/write_parity.py" --binary "$BIN" --store wasm-redis --component "$TARGET/plugins/for-tests/redis_store.wasm"
# And through the PostgreSQL store component, against Feast's own PostgreSQL store.
step "writes as Feast writes them (wasm-postgres component)" "$VENV/bin/python" "$ROOT/tests/python/write_parity.py" --binary "$BIN" --store wasm-postgres --component "$TARGET/plugins/for-tests/postgres_store.wasm"
# OIDC and permissions: the Feast SDK logging in to a test issuer gets, from this
# server, what it got from feast serve (tests/golden/auth/sdk.json).
step "Feast SDK with OIDC and permissions" "$VENV/bin/python" "$ROOT/tests/python/auth_parity.py" --binary "$BIN" --issuer "$TARGET/debug/test_oidc_issuer"
# Feature logs written by the server, read back with pyarrow and Feast (schema and rows).
step "feature logs read back by Feast" env FEAST_VENV="$VENV" cargo test --workspace served_rows_are_written_in_feasts_schema
echo "tests/run.sh passed in $(($(date +%s) - start)) s"
