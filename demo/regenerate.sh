#!/usr/bin/env bash
# Rebuild the demo feature repository from scratch with the real Feast (pip).
#
#   1. a venv with feast[redis]==$FEAST_VERSION (cached in $FEAST_VENV)
#   2. `feast init` (the driver-stats template; its feature_definitions.py is Feast's
#      own file and is not kept in this repository)
#   3. data/driver_stats.parquet rewritten deterministically with Feast's own helper
#      (feast.driver_test_data.create_driver_hourly_stats_df) and a fixed seed, end date
#      and `created`, because `feast init` uses unseeded random data and now()
#   4. `feast apply` and `feast materialize $MAT_START $MAT_END` into SQLite
#   5. registry.db, online_store.db and the parquet files copied to demo/feature_repo/data
#
# Env: FEAST_VERSION=0.67.0 FEAST_VENV=~/.cache/feast-server/venv-feast-$FEAST_VERSION
#      SEED=42 END_DATE=2026-11-23T00:00:00 DAYS=15 MAT_START=2021-01-01T00:00:00
#      KEEP_WORK=0 (keep the scratch repo)
# Only the protobuf map order inside Map/Struct values and registry ids/timestamps differ
# between runs; every served answer is the same.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FEAST_VERSION="${FEAST_VERSION:-0.67.0}"
FEAST_VENV="${FEAST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/feast-server/venv-feast-$FEAST_VERSION}"
SEED="${SEED:-42}"
END_DATE="${END_DATE:-2026-11-23T00:00:00}"
DAYS="${DAYS:-15}"
MAT_START="${MAT_START:-2021-01-01T00:00:00}"
MAT_END="${MAT_END:-$END_DATE}"

"$ROOT/demo/feast_venv.sh" >/dev/null
export PATH="$FEAST_VENV/bin:$PATH" PYTHONHASHSEED=0
WORK=$(mktemp -d)
[[ ${KEEP_WORK:-0} == 1 ]] || trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
feast init repo >/dev/null
FR="$WORK/repo/feature_repo"

SEED=$SEED END_DATE=$END_DATE DAYS=$DAYS python - "$FR/data/driver_stats.parquet" <<'PY'
import os, sys
from datetime import datetime, timedelta
import numpy as np, pandas as pd
from feast.driver_test_data import create_driver_hourly_stats_df
np.random.seed(int(os.environ["SEED"]))
end = datetime.fromisoformat(os.environ["END_DATE"])
start = end - timedelta(days=int(os.environ["DAYS"]))
df = create_driver_hourly_stats_df([1001, 1002, 1003, 1004, 1005], start, end)
df["created"] = pd.to_datetime(pd.Timestamp(end) + pd.Timedelta(minutes=5)).round("ms")
df.to_parquet(path=sys.argv[1], allow_truncated_timestamps=True)
print(f"driver_stats.parquet: {len(df)} rows, {start} .. {end}")
PY

cd "$FR"
feast apply
feast materialize "$MAT_START" "$MAT_END"
DEST="$ROOT/demo/feature_repo"
cp feature_store.yaml "$DEST/"
cp data/registry.db data/online_store.db data/driver_stats.parquet data/driver_quality_labels.parquet "$DEST/data/"
echo "demo repository regenerated in $DEST (feast $FEAST_VERSION)"
[[ ${KEEP_WORK:-0} == 1 ]] && echo "scratch repo kept at $FR"
