#!/usr/bin/env python3
"""Parity with the real Feast Python SDK.

Feast's `online_store: {type: remote, path: http://HOST:PORT}` makes
`FeatureStore.get_online_features(...)` call a feature server over HTTP. This script
serves the demo repository with feast-server, then runs the same SDK calls twice:
through the remote store (our server) and directly against the local online store
(SQLite, or the same Redis), and compares `to_dict()` (and, for bad requests, the
exception class the SDK raises).

    python sdk_parity.py --binary target/debug/feast-server --store sqlite|redis

Run with the venv from demo/feast_venv.sh. Exit status 1 on any difference.
"""
import argparse
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import RedisProcess, ServerProcess, copy_demo_repo, write_store_config  # noqa: E402
from parity import compare  # noqa: E402

warnings.simplefilter("ignore")
from feast import FeatureStore  # noqa: E402

PLAIN = ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate", "driver_hourly_stats:avg_daily_trips"]
COMPLEX = ["driver_hourly_stats:driver_metadata", "driver_hourly_stats:driver_config",
           "driver_hourly_stats:driver_profile"]
ODFV = ["driver_hourly_stats:conv_rate", "transformed_conv_rate:conv_rate_plus_val1",
        "transformed_conv_rate:conv_rate_plus_val2"]


def calls(with_odfv: bool):
    """(name, kwargs for get_online_features; `features` may name a service)."""
    rows3 = [{"driver_id": i} for i in (1001, 1002, 1003)]
    out = [
        ("plain features, 3 drivers", dict(features=PLAIN, entity_rows=rows3)),
        ("plain features, full names", dict(features=PLAIN, entity_rows=rows3, full_feature_names=True)),
        ("Map/Json/Struct features", dict(features=COMPLEX, entity_rows=rows3)),
        ("two views, full names", dict(features=["driver_hourly_stats:conv_rate", "driver_hourly_stats_fresh:conv_rate"],
                                       entity_rows=[{"driver_id": 1001}, {"driver_id": 1004}], full_feature_names=True)),
        ("missing entity", dict(features=PLAIN, entity_rows=[{"driver_id": 1001}, {"driver_id": 9999}])),
        ("all missing", dict(features=PLAIN + COMPLEX, entity_rows=[{"driver_id": 9999}])),
        ("duplicate entities", dict(features=PLAIN, entity_rows=[{"driver_id": 1001}, {"driver_id": 1001}])),
        ("columnar entities", dict(features=PLAIN, entity_rows={"driver_id": [1001, 1005]})),
        ("label view", dict(features=["driver_quality_labels:is_reliable"], entity_rows=[{"driver_id": 1001}])),
    ]
    if with_odfv:
        vals = [{"driver_id": 1001, "val_to_add": 1, "val_to_add_2": 10},
                {"driver_id": 1002, "val_to_add": 2, "val_to_add_2": 20},
                {"driver_id": 9999, "val_to_add": 3, "val_to_add_2": 30}]
        out += [
            ("ODFV with request data", dict(features=ODFV, entity_rows=vals)),
            ("ODFV, full names", dict(features=ODFV, entity_rows=vals, full_feature_names=True)),
            ("feature service v1", dict(features="driver_activity_v1", entity_rows=vals)),
            ("feature service v2", dict(features="driver_activity_v2", entity_rows=vals[:2])),
            ("feature service v3", dict(features="driver_activity_v3", entity_rows=vals[:1])),
        ]
    return out


ERRORS = [
    ("unknown feature view", dict(features=["no_such_view:conv_rate"], entity_rows=[{"driver_id": 1001}])),
    ("unknown feature service", dict(features="no_such_service", entity_rows=[{"driver_id": 1001}])),
]


def run(store: FeatureStore, kwargs: dict):
    kwargs = dict(kwargs)
    if isinstance(kwargs["features"], str):
        kwargs["features"] = store.get_feature_service(kwargs["features"])
    return store.get_online_features(**kwargs).to_dict()


def outcome(store: FeatureStore, kwargs: dict):
    try:
        run(store, kwargs)
        return "no error"
    except Exception as e:  # the class the SDK raises is what users catch
        return type(e).__name__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    ap.add_argument("--plugins", help="plugin directory for on-demand feature views")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sdk-parity-"))
    redis = server = None
    try:
        local_repo = copy_demo_repo(tmp / "local")
        if args.store == "redis":
            redis = RedisProcess(tmp)
            write_store_config(local_repo, f"    type: redis\n    connection_string: \"127.0.0.1:{redis.port}\"\n")
        extra = ["--plugins", args.plugins] if args.plugins else []
        server = ServerProcess(args.binary, local_repo, *extra)
        remote_repo = tmp / "remote"
        (remote_repo / "data").mkdir(parents=True)
        shutil.copy(local_repo / "data" / "registry.db", remote_repo / "data" / "registry.db")
        write_store_config(remote_repo, f"    type: remote\n    path: {server.url}\n")

        local, remote = FeatureStore(repo_path=str(local_repo)), FeatureStore(repo_path=str(remote_repo))
        failures, compared = [], 0
        for name, kwargs in calls(with_odfv=bool(args.plugins)):
            try:
                want, got = run(local, kwargs), run(remote, kwargs)
            except Exception as e:
                failures.append(f"{name}: {type(e).__name__}: {e}")
                continue
            compared += 1
            failures += [f"{name}: {d}" for d in compare(want, got)]
        for name, kwargs in ERRORS:
            want, got = outcome(local, kwargs), outcome(remote, kwargs)
            compared += 1
            if want != got:
                failures.append(f"{name}: the SDK raised {want} locally and {got} through feast-server")
        print(f"Feast SDK remote vs local ({args.store}): {compared} calls compared, {len(failures)} differences")
        for f in failures:
            print("FAIL", f)
        sys.exit(1 if failures else 0)
    finally:
        if server:
            server.stop()
        if redis:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
