#!/usr/bin/env python3
"""Checks feature logs written by feast-server with Feast itself (pinned pip Feast).

    $FEAST_VENV/bin/python tests/feature_logging_check.py \
        --repo REPO --service NAME --logs DIR --rows N

1. Every Parquet file under DIR (dot directories excluded, as Feast's readers skip
   them) has exactly the schema `FeatureServiceLoggingSource(service).get_schema()`
   gives (names, order and types) as pyarrow stores it (timestamp[s] as
   timestamp[ms]: Parquet has no seconds unit), less the `partition_by` columns,
   which pyarrow keeps in directory names.
2. Feast reads the logs back through its own path
   (`provider.retrieve_feature_service_logs`, i.e. the offline store reading the
   file destination) and gets N rows.

The Rust e2e test `feature_logging::served_rows_are_written_in_feasts_schema` runs
this when FEAST_VENV is set (`demo/feast_venv.sh` prints the venv path).
"""
import argparse
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore
from feast.feature_logging import FeatureServiceLoggingSource


def parquet_files(root: Path):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [Path(dirpath) / f for f in filenames if f.endswith(".parquet") and not f.startswith(".")]
    return sorted(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--rows", type=int, required=True)
    args = ap.parse_args()

    store = FeatureStore(repo_path=args.repo)
    service = store.get_feature_service(args.service)
    expected = FeatureServiceLoggingSource(service, store.project).get_schema(store.registry)
    expected = as_stored(expected)
    partition_by = list(service.logging_config.destination.partition_by or [])
    if partition_by:
        expected = pa_schema_without(expected, partition_by)

    files = parquet_files(Path(args.logs))
    if not files:
        print(f"no parquet files under {args.logs}")
        return 1
    failures = 0
    rows = 0
    for f in files:
        got = pq.read_schema(f).remove_metadata()
        if not got.equals(expected, check_metadata=False):
            failures += 1
            print(f"{f}: schema differs from Feast's get_schema\n  got:      {got}\n  expected: {expected}")
        rows += pq.read_metadata(f).num_rows
    if rows != args.rows:
        failures += 1
        print(f"{args.logs}: {rows} rows in files, expected {args.rows}")

    if not partition_by:
        # Feast's own reader (the offline store over the file destination).
        now = datetime.now(timezone.utc)
        start, end = datetime(1970, 1, 2, tzinfo=timezone.utc), now + timedelta(days=3650)
        table = (
            store._get_provider()
            .retrieve_feature_service_logs(
                feature_service=service,
                start_date=start,
                end_date=end,
                config=store.config,
                registry=store.registry,
            )
            .to_arrow()
        )
        if table.num_rows != args.rows:
            failures += 1
            print(f"Feast read back {table.num_rows} rows, expected {args.rows}")
        missing = set(expected.names) - set(table.column_names)
        if missing:
            failures += 1
            print(f"Feast's read-back lacks columns {sorted(missing)}")

    checks = len(files) + 1 + (0 if partition_by else 2)
    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


def as_stored(schema):
    """The schema as pyarrow stores it in Parquet (what Feast's own writer produces):
    Parquet has no seconds unit, so timestamp[s] becomes timestamp[ms]."""
    def stored(t):
        if pa.types.is_timestamp(t) and t.unit == "s":
            return pa.timestamp("ms", tz=t.tz)
        if pa.types.is_list(t):
            return pa.list_(stored(t.value_type))
        return t
    return pa.schema([pa.field(f.name, stored(f.type)) for f in schema])


def pa_schema_without(schema, names):
    for n in names:
        schema = schema.remove(schema.get_field_index(n))
    return schema


if __name__ == "__main__":
    sys.exit(main())
