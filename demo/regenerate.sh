#!/usr/bin/env bash
# Rebuild every artifact written by the real Feast, from scratch, with pip Feast:
#
#   1. a venv with feast[redis]==$FEAST_VERSION (demo/feast_venv.sh, cached)
#   2. `feast init` (the driver-stats template; its feature_definitions.py is Feast's
#      own file and is not kept in this repository)
#   3. data/driver_stats.parquet rewritten deterministically with Feast's own helper
#      (feast.driver_test_data.create_driver_hourly_stats_df) and a fixed seed, end date
#      and `created`, because `feast init` uses unseeded random data and now()
#   4. `feast apply` and `feast materialize $MAT_START $MAT_END` into SQLite
#      -> demo/feature_repo/data/{registry.db,online_store.db,*.parquet}
#   5. the same repository applied and materialized into a private redis-server
#      -> tests/fixtures/redis_dump.json (every key and field, tests/python/dump_redis.py)
#   6. the same repository applied and materialized into a private PostgreSQL (database,
#      user and password `feast`, the server's TimeZone UTC) -> tests/fixtures/postgres_dump.sql
#      (pg_dump of the project's tables, plain SQL without owners or privileges, rows
#      sorted; checked by loading it into an empty database owned by another role)
#   7. `feast serve` on each store of $GOLDEN_STORES, and every golden request replayed
#      against it -> tests/golden/{sqlite,redis,postgres}/*.json (tests/python/capture_golden.py)
#
# Env: FEAST_VERSION=0.67.0 FEAST_VENV=~/.cache/feast-server/venv-feast-$FEAST_VERSION
#      SEED=42 END_DATE=2026-11-23T00:00:00 DAYS=15 MAT_START=2021-01-01T00:00:00
#      STEPS="sqlite redis postgres golden" GOLDEN_STORES="sqlite redis postgres"
#      KEEP_WORK=0 (keep the scratch repositories)
# Between runs only the protobuf map order inside Map/Struct values and the registry's
# ids and timestamps differ; every served answer is the same. Tests pin "now" one hour
# after END_DATE's newest event (tests/src/lib.rs PINNED_NOW): change both together.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FEAST_VERSION="${FEAST_VERSION:-0.67.0}"
export FEAST_VERSION
SEED="${SEED:-42}"
END_DATE="${END_DATE:-2026-11-23T00:00:00}"
DAYS="${DAYS:-15}"
MAT_START="${MAT_START:-2021-01-01T00:00:00}"
MAT_END="${MAT_END:-$END_DATE}"
STEPS="${STEPS:-sqlite redis postgres golden}"
GOLDEN_STORES="${GOLDEN_STORES:-sqlite redis postgres}"

VENV=$("$ROOT/demo/feast_venv.sh")
export PATH="$VENV/bin:$PATH" PYTHONHASHSEED=0
WORK=$(mktemp -d)
PIDS=()
PGDIR=
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [[ -n $PGDIR ]]; then
    as_postgres "$(pg_bin pg_ctl)" -D "$PGDIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
  fi
  [[ ${KEEP_WORK:-0} == 1 ]] && echo "scratch repositories kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 1 240); do curl -s -o /dev/null -m 1 "$1" && return 0; sleep 0.5; done
  echo "timeout waiting for $1" >&2; return 1
}
has_step() { [[ " $STEPS " == *" $1 "* ]]; }
golden_for() { has_step golden && [[ " $GOLDEN_STORES " == *" $1 "* ]]; }
# PostgreSQL's programs: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin (newest).
pg_bin() { command -v "$1" 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/"$1" | sort -V | tail -n 1; }
# initdb refuses root: as root, the server runs as the postgres user.
as_postgres() { if [[ $(id -u) == 0 ]]; then (cd "$PGDIR" && runuser -u postgres -- "$@"); else "$@"; fi; }

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
# Redis and PostgreSQL copies of the repository, before anything is applied.
cp -r "$FR" "$WORK/redis_repo"
cp -r "$FR" "$WORK/postgres_repo"

(cd "$FR" && feast apply && feast materialize "$MAT_START" "$MAT_END")
if has_step sqlite; then
  DEST="$ROOT/demo/feature_repo"
  cp "$FR/feature_store.yaml" "$DEST/"
  cp "$FR"/data/{registry.db,online_store.db,driver_stats.parquet,driver_quality_labels.parquet} "$DEST/data/"
  echo "demo repository regenerated in $DEST"
fi

RR="$WORK/redis_repo"
if has_step redis || golden_for redis; then
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
  PIDS+=($!)
  cat >"$RR/feature_store.yaml" <<EOF
project: repo
registry: data/registry.db
provider: local
online_store:
    type: redis
    connection_string: "127.0.0.1:$REDIS_PORT"
entity_key_serialization_version: 3
auth:
    type: no_auth
EOF
  (cd "$RR" && feast apply && feast materialize "$MAT_START" "$MAT_END")
fi
if has_step redis; then
  python "$ROOT/tests/python/dump_redis.py" --port "$REDIS_PORT" --repo "$RR" --out "$ROOT/tests/fixtures/redis_dump.json"
fi

PR="$WORK/postgres_repo"
if has_step postgres || golden_for postgres; then
  # In a directory of its own: the postgres user cannot enter root's private $WORK.
  PGDIR=$(mktemp -d -t feast-postgres-XXXXXX)
  [[ $(id -u) == 0 ]] && chown postgres: "$PGDIR"
  PG_PORT=$(free_port)
  od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$PGDIR/pwfile"
  as_postgres "$(pg_bin initdb)" -D "$PGDIR/data" -U postgres --pwfile="$PGDIR/pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C --no-sync >/dev/null
  printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\ntimezone = 'UTC'\nfsync = off\n" \
    "$PG_PORT" "$PGDIR/data" >>"$PGDIR/data/postgresql.conf"
  as_postgres "$(pg_bin pg_ctl)" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 start >/dev/null
  psql_as() { "$(pg_bin psql)" -X -q -v ON_ERROR_STOP=1 -h "$PGDIR/data" -p "$PG_PORT" -U "$@"; }
  psql_as postgres -d postgres -c "CREATE ROLE feast LOGIN PASSWORD 'feast'" -c "CREATE DATABASE feast OWNER feast"
  cat >"$PR/feature_store.yaml" <<EOF
project: repo
registry: data/registry.db
provider: local
online_store:
    type: postgres
    host: 127.0.0.1
    port: $PG_PORT
    database: feast
    db_schema: public
    user: feast
    password: feast
    sslmode: disable
entity_key_serialization_version: 3
auth:
    type: no_auth
EOF
  (cd "$PR" && feast apply && feast materialize "$MAT_START" "$MAT_END")
fi
# The project's tables as plain SQL, deterministic: each table's rows sorted, pg_dump's
# per-run \restrict key left out, timestamps in UTC.
pg_dump_sorted() {
  PGTZ=UTC "$(pg_bin pg_dump)" -h "$PGDIR/data" -p "$PG_PORT" -U "$1" -d "$1" --no-owner --no-privileges \
    --table='public.repo_*' | python -c '
import sys
out, rows = [], None
for line in sys.stdin:
    if line.startswith(("\\restrict ", "\\unrestrict ")):
        continue
    if rows is not None and line != "\\.\n":
        rows.append(line)
        continue
    if rows is not None:
        out += sorted(rows)
        rows = None
    elif line.startswith("COPY ") and line.rstrip().endswith("FROM stdin;"):
        rows = []
    out.append(line)
sys.stdout.write("".join(out))'
}
if has_step postgres; then
  DUMP="$ROOT/tests/fixtures/postgres_dump.sql"
  pg_dump_sorted feast >"$DUMP"
  psql_as postgres -d postgres -c "CREATE ROLE load_check LOGIN" -c "CREATE DATABASE load_check OWNER load_check"
  psql_as load_check -d load_check -f "$DUMP" >/dev/null
  pg_dump_sorted load_check | cmp -s - "$DUMP" || { echo "$DUMP does not load back as dumped" >&2; exit 1; }
  echo "$(grep -c '^COPY ' "$DUMP") tables dumped to $DUMP, loaded back as another role"
fi

if has_step golden; then
  for store in $GOLDEN_STORES; do
    case $store in sqlite) repo=$FR ;; redis) repo=$RR ;; postgres) repo=$PR ;; esac
    port=$(free_port)
    GUNICORN_CMD_ARGS="--control-socket $WORK/gunicorn-$store.ctl" \
      feast -c "$repo" serve -p "$port" --no-access-log --max-requests 0 >"$WORK/serve-$store.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$port/health"
    python "$ROOT/tests/python/capture_golden.py" "http://127.0.0.1:$port" "$ROOT/tests/golden/$store" >/dev/null
    echo "golden responses captured from feast serve ($store)"
  done
fi
echo "done (feast $FEAST_VERSION)"
