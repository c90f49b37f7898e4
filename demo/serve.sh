#!/usr/bin/env bash
# Serve the demo feature repository on http://127.0.0.1:6566: SQLite online store, and
# its on-demand feature views computed by the Wasm plugin plugins/transformed-conv-rate.
#
# The repository is copied to target/demo/ with its event times moved to now, so the
# demo answers PRESENT whenever it runs (its views have a 1-day ttl). Extra arguments
# go to `feast-server serve` (e.g. -p 7000). PROFILE=release for an optimized server.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK="$ROOT/target/demo"
PROFILE="${PROFILE:-dev}"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cd "$ROOT"
# The plugin: a WebAssembly component built from plugins/transformed-conv-rate.
cargo build --profile plugin --target wasm32-wasip2 -p transformed-conv-rate --target-dir "$WORK/plugin-build"
rm -rf "$WORK/feature_repo" "$WORK/plugins"
mkdir -p "$WORK/plugins"
cp "$WORK/plugin-build/wasm32-wasip2/plugin/transformed_conv_rate.wasm" "$WORK/plugins/"
cp -r "$ROOT/demo/feature_repo" "$WORK/"
python3 "$ROOT/demo/refresh_timestamps.py" "$WORK/feature_repo/data/online_store.db"
exec cargo run --profile "$PROFILE" -p feast-server -- -c "$WORK/feature_repo" serve --plugins "$WORK/plugins" "$@"
