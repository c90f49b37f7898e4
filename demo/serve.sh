#!/usr/bin/env bash
# Serve the demo feature repository (SQLite) on http://127.0.0.1:6566.
#
# The repository is copied to target/demo/ with its event times moved to "now", so the
# demo answers PRESENT whenever it runs (its views have a 1-day ttl). Extra arguments go
# to `feast-server serve` (e.g. -p 7000). Set PROFILE=release for an optimized build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK="$ROOT/target/demo"
PROFILE="${PROFILE:-dev}"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
rm -rf "$WORK/feature_repo"
mkdir -p "$WORK"
cp -r "$ROOT/demo/feature_repo" "$WORK/"
python3 "$ROOT/demo/refresh_timestamps.py" "$WORK/feature_repo/data/online_store.db"
cd "$ROOT"
exec cargo run --profile "$PROFILE" -p feast-server -- -c "$WORK/feature_repo" serve "$@"
