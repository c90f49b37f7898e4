#!/usr/bin/env python3
"""Parity of feast-server's write path with the real Feast SDK (0.67.0).

Two private copies of the demo repository start with the same online store (SQLite, or a
private Redis / Redis Cluster per copy loaded with the bytes Feast wrote, or a database
per copy of one private PostgreSQL loaded with the tables Feast wrote); the same
writes are made to copy A by Feast in-process and to copy B by feast-server, and the
stores are compared byte for byte (Map and Struct values: as decoded `Value` messages,
since Feast writes map entries in an order that changes between processes and
feast-server writes them sorted by key). Checks:

  1. same bytes: /write-to-online-store and /push (every value type of the demo views,
     nulls, new and overwritten entities, an older overwrite, the label view) against
     FeatureStore.write_to_online_store / push; Redis with key_ttl_seconds (TTLs too);
  2. read back: Feast's local SDK on our store copy, and our /get-online-features (through
     Feast's remote client) on Feast's copy, return what Feast returns on its own copy;
  3. Feast's SDK with `online_store: {type: remote}` writes, pushes and materializes
     (SDK and `feast materialize` CLI) through feast-server;
  4. `feast-server materialize` / `materialize-incremental` against `feast materialize` and
     Feast's materialize_incremental on emptied stores: store contents and the registry's
     materialization intervals and states; with a feature service with
     `precompute_online` in both registries, the same PrecomputedFeatureVectors (Redis;
     compared decoded, `precomputed_at` aside) and Feast's local SDK reads the service
     from our store as from its own (Feast reads such a service only from its vectors).

    python write_parity.py --binary /work/target/debug/feast-server --store sqlite|redis|redis-cluster
    python write_parity.py --binary ... --store wasm-redis --component redis_store.wasm
    python write_parity.py --binary ... --store wasm-postgres --component postgres_store.wasm

Run with the venv from demo/feast_venv.sh. One line per check; exit status 1 on any failure.
"""
import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import (ROOT, PostgresServer, RedisClusterProcess, RedisServer,  # noqa: E402
                      ServerProcess, _timestamp_proto, copy_demo_repo, write_store_config)
from parity import compare  # noqa: E402

warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
import pandas as pd  # noqa: E402
import psycopg  # noqa: E402
import redis as redispy  # noqa: E402
from feast import FeatureStore  # noqa: E402
from feast.infra.online_stores.helpers import _mmh3  # noqa: E402
from feast.protos.feast.core.Registry_pb2 import Registry  # noqa: E402
from feast.protos.feast.types.Value_pb2 import Value  # noqa: E402

PROJECT = "repo"
STATS, FRESH, LABELS = "driver_hourly_stats", "driver_hourly_stats_fresh", "driver_quality_labels"
PUSH_STATS, PUSH_LABELS = "driver_stats_push_source", "driver_quality_labels_push"
FEATURES = ["conv_rate", "acc_rate", "avg_daily_trips", "driver_metadata", "driver_config", "driver_profile"]
LABEL_FEATURES = ["is_reliable", "quality_score", "reviewer_notes", "labeler"]
# Map and Struct features: compared as decoded Value messages (known map-order difference).
COMPLEX = {(v, f) for v in (STATS, FRESH) for f in ("driver_metadata", "driver_profile")}
FIELD_NAMES = {_mmh3(f"{v}:{f}"): f"{v}:{f}" for v in (STATS, FRESH) for f in FEATURES}
FIELD_NAMES.update({_mmh3(f"{LABELS}:{f}"): f"{LABELS}:{f}" for f in LABEL_FEATURES})
COMPLEX_FIELDS = {_mmh3(f"{v}:{f}") for v, f in COMPLEX}
# A service with precompute_online added to the registries of the materialize checks: its
# vectors hold when they were computed, so they are compared decoded, that time aside.
VECTORS = "driver_vectors"
VECTOR_FIELD = _mmh3(f"__precomputed__{VECTORS}:vector")
VECTOR_TS = f"_ts:__precomputed__{VECTORS}".encode()
FIELD_NAMES[VECTOR_FIELD] = f"__precomputed__{VECTORS}:vector"
FEAST = os.path.join(os.path.dirname(sys.executable), "feast")
# Stores of rows (table, entity_key, feature_name), compared row by row and column by column.
ROW_KINDS = ("sqlite", "postgres")
MAX_DIFF_LINES = int(os.environ.get("WRITE_PARITY_MAX_DIFF_LINES", "40"))


# ----------------------------------------------------------------------------- output

class Report:
    def __init__(self):
        self.failed = []

    def check(self, name: str, diffs: list, note: str = ""):
        if diffs:
            self.failed.append(name)
            print(f"FAIL {name}: {len(diffs)} difference(s)", flush=True)
            for d in diffs[:MAX_DIFF_LINES]:
                print(f"     {d}", flush=True)
            if len(diffs) > MAX_DIFF_LINES:
                print(f"     ... {len(diffs) - MAX_DIFF_LINES} more", flush=True)
        else:
            print(f"PASS {name}{' (' + note + ')' if note else ''}", flush=True)

    @contextlib.contextmanager
    def guard(self, name: str):
        """A check whose setup may raise: the exception is its failure."""
        try:
            yield
        except Exception as e:  # noqa: BLE001
            self.check(name, [f"{type(e).__name__}: {e}"] + traceback.format_exc().splitlines()[-6:])


@contextlib.contextmanager
def quiet():
    """Feast prints progress bars and banners; keep the report to one line per check."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def hx(b) -> str:
    if b is None:
        return "NULL"
    return b.hex() if isinstance(b, (bytes, bytearray)) else repr(b)


# ----------------------------------------------------------------------------- stores

class PgDatabase:
    """A database of the private PostgreSQL server, owned by a login role of the same name."""

    def __init__(self, server: PostgresServer, name: str):
        self.server, self.name, self.password = server, name, os.urandom(8).hex()
        server.create_db(name, name, self.password)

    def config(self, indent: str) -> str:
        """Feast's PostgreSQLConfig keys (the postgres-store component takes them unchanged)."""
        keys = [("host", "127.0.0.1"), ("port", self.server.port), ("database", self.name),
                ("db_schema", "public"), ("user", self.name), ("password", self.password),
                ("sslmode", "disable")]
        return "".join(f"{indent}{k}: {v}\n" for k, v in keys)

    def connect(self):
        # lock_timeout: a writer holding a lock fails the check instead of hanging it.
        return psycopg.connect(host="127.0.0.1", port=self.server.port, dbname=self.name, user=self.name,
                               password=self.password, sslmode="disable", options="-c lock_timeout=30000")


def pg_tables(con) -> list:
    return [t for (t,) in con.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]


class Store:
    """The online store of one repository copy: its config, its contents, emptying it."""

    def __init__(self, kind: str, repo: Path, redis=None, ttl=None, component=None, pg=None):
        self.kind, self.repo, self.redis, self.ttl, self.pg = kind, repo, redis, ttl, pg
        self.component = component  # a store component serving this Redis or database (ours only)

    def config(self, ttl=None) -> str:
        if self.kind == "sqlite":
            return "    type: sqlite\n    path: data/online_store.db\n"
        if self.kind == "postgres" and self.component:
            return (f"    type: wasm\n    component: {self.component}\n"
                    f"    allow: [\"127.0.0.1:{self.pg.server.port}\"]\n    config:\n{self.pg.config(' ' * 8)}")
        if self.kind == "postgres":
            return "    type: postgres\n" + self.pg.config(" " * 4)
        if self.component:
            addr = f"127.0.0.1:{self.redis.port}"
            out = (f"    type: wasm\n    component: {self.component}\n    allow: [\"{addr}\"]\n"
                   f"    config:\n        connection_string: \"{addr}\"\n")
            if ttl:
                out += f"        key_ttl_seconds: {ttl}\n"
            return out
        out = "    type: redis\n"
        if self.kind == "redis-cluster":
            out += "    redis_type: redis_cluster\n"
        out += f"    connection_string: \"{self.redis.connection_string}\"\n"
        if ttl:
            out += f"    key_ttl_seconds: {ttl}\n"
        return out

    def use_in(self, repo: Path, ttl=None):
        """Points `repo` (this copy, or a later copy taking over this store) at this store."""
        write_store_config(repo, self.config(ttl))
        self.repo, self.ttl = repo, ttl

    def client(self):
        if self.kind == "redis-cluster":
            nodes = [redispy.cluster.ClusterNode("127.0.0.1", p) for p in self.redis.ports]
            return redispy.RedisCluster(startup_nodes=nodes)
        return redispy.Redis(host="127.0.0.1", port=self.redis.port)

    def load_feast_dump(self, ts_seconds: int):
        """The bytes Feast wrote (tests/fixtures/redis_dump.json), `_ts:` fields at ts_seconds;
        PostgreSQL: the tables Feast wrote (tests/fixtures/postgres_dump.sql, loaded by the
        database's owner), event and created times moved together so the newest event is
        at ts_seconds."""
        if self.kind == "postgres":
            self.pg.server.psql(self.pg.name, file=ROOT / "tests" / "fixtures" / "postgres_dump.sql",
                                user=self.pg.name)
            with self.pg.connect() as con:
                tables = pg_tables(con)
                newest = max(filter(None, (con.execute(f'SELECT max(event_ts) FROM "{t}"').fetchone()[0]
                                           for t in tables)))
                shift = ts_seconds - int(newest.timestamp())
                for t in tables:
                    con.execute(f'UPDATE "{t}" SET event_ts = event_ts + make_interval(secs => %s), '
                                'created_ts = created_ts + make_interval(secs => %s)', (shift, shift))
            return
        dump = json.loads((ROOT / "tests" / "fixtures" / "redis_dump.json").read_text())
        ts = _timestamp_proto(ts_seconds)
        c = self.client()
        for k in dump["keys"]:
            mapping = {}
            for f in k["fields"]:
                field = bytes.fromhex(f["field_hex"])
                mapping[field] = ts if field.startswith(b"_ts:") else bytes.fromhex(f["value_hex"])
            c.hset(bytes.fromhex(k["key_hex"]), mapping=mapping)
        c.close()

    def db(self) -> Path:
        return self.repo / "data" / "online_store.db"

    def dump(self):
        if self.kind == "sqlite":
            con = sqlite3.connect(self.db())
            try:
                schema = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
                rows = {}
                for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").fetchall():
                    cols = [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')]
                    for row in con.execute(f'SELECT * FROM "{t}"'):
                        d = dict(zip(cols, row))
                        rows[(t, d["entity_key"], d["feature_name"])] = d
                return {"schema": schema, "rows": rows}
            finally:
                con.close()
        if self.kind == "postgres":
            with self.pg.connect() as con:
                schema = con.execute(
                    "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default "
                    "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2").fetchall()
                schema += con.execute("SELECT tablename, indexname, indexdef FROM pg_indexes "
                                      "WHERE schemaname = 'public' ORDER BY 1, 2").fetchall()
                rows = {}
                for t in pg_tables(con):
                    cur = con.execute(f'SELECT * FROM "{t}"')
                    cols = [c.name for c in cur.description]
                    for row in cur:
                        d = {c: bytes(v) if isinstance(v, memoryview) else v for c, v in zip(cols, row)}
                        rows[(t, d["entity_key"], d["feature_name"])] = d
                return {"schema": schema, "rows": rows}
        fields, ttls = {}, {}
        for port in self.redis.ports:
            c = redispy.Redis(host="127.0.0.1", port=port)
            for key in c.scan_iter(count=1000):
                for field, value in c.hgetall(key).items():
                    fields[(key, field)] = value
                ttls[key] = c.ttl(key)
            c.close()
        return {"fields": fields, "ttl": ttls}

    def empty(self):
        if self.kind == "sqlite":
            con = sqlite3.connect(self.db())
            for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                con.execute(f'DELETE FROM "{t}"')
            con.commit()
            con.close()
        elif self.kind == "postgres":
            with self.pg.connect() as con:
                con.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in pg_tables(con)))
        else:
            for port in self.redis.ports:
                c = redispy.Redis(host="127.0.0.1", port=port)
                c.flushall()
                c.close()


def same_value(complex_: bool, feast: bytes, ours: bytes):
    """(equal?, our bytes are the known sorted-map encoding of an equal message?)."""
    if feast == ours:
        return True, False
    if complex_ and feast is not None and ours is not None:
        a, b = Value.FromString(feast), Value.FromString(ours)
        if a == b:
            return True, True
    return False, False


def same_vector(feast: bytes, ours: bytes) -> bool:
    """Two stored PrecomputedFeatureVectors are equal but for when they were computed."""
    from feast.protos.feast.core.PrecomputedFeatureVector_pb2 import PrecomputedFeatureVector
    vectors = []
    for b in (feast, ours):
        v = PrecomputedFeatureVector.FromString(Value.FromString(b).bytes_val)
        if not v.HasField("precomputed_at"):
            return False
        v.ClearField("precomputed_at")
        vectors.append(v)
    return vectors[0] == vectors[1]


def changed_keys(before, after) -> set:
    """The rows (SQLite) or (key, field)s (Redis) that differ between two dumps of a store."""
    part = "rows" if "rows" in after else "fields"
    a, b = before[part], after[part]
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def sorted_map_problems(kind, before, after) -> list:
    """Known difference 1, asserted: the Map/Struct bytes we wrote are the message
    serialized with sorted map keys (protobuf's deterministic serialization)."""
    out, values = [], []
    for k in sorted(changed_keys(before, after)):
        if kind in ROW_KINDS:
            t, ek, fname = k
            row = after["rows"].get(k)
            if row and (t[len(PROJECT) + 1:], fname) in COMPLEX and row["value"]:
                values.append((f"{t} {ek.hex()} {fname}", row["value"]))
        else:
            key, field = k
            value = after["fields"].get(k)
            if field in COMPLEX_FIELDS and value:
                values.append((f"{key.hex()} {FIELD_NAMES[field]}", value))
    for where, v in values:
        canonical = Value.FromString(v).SerializeToString(deterministic=True)
        if canonical != v:
            out.append(f"{where}: ours {v.hex()} is not sorted by key (sorted: {canonical.hex()})")
    return out


def size(dump) -> str:
    return f"{len(dump['rows'])} rows" if "rows" in dump else f"{len(dump['fields'])} fields"


def diff_dumps(kind: str, feast, ours, ttl=None, only=None) -> tuple:
    """Differences between two store dumps (Feast's first), restricted to the rows / (key,
    field)s in `only` when given, and how many Map/Struct values were equal only once
    decoded (known difference 1)."""
    diffs, reordered = [], 0
    if kind in ROW_KINDS:
        if feast["schema"] != ours["schema"]:
            diffs.append(f"schema differs: feast {feast['schema']} ours {ours['schema']}")
        fr, orr = feast["rows"], ours["rows"]
        for k in sorted(only if only is not None else set(fr) | set(orr)):
            t, ek, fname = k
            where = f"{t} entity_key={ek.hex()} feature={fname}"
            if k not in orr and k not in fr:
                continue
            if k not in orr:
                diffs.append(f"{where}: only Feast has the row {_row(fr[k])}")
                continue
            if k not in fr:
                diffs.append(f"{where}: only ours has the row {_row(orr[k])}")
                continue
            a, b = fr[k], orr[k]
            for col in sorted(set(a) | set(b)):
                if col == "value":
                    eq, re = same_value((t[len(PROJECT) + 1:], fname) in COMPLEX, a.get(col), b.get(col))
                    reordered += re
                else:
                    eq = a.get(col) == b.get(col) and type(a.get(col)) is type(b.get(col))
                if not eq:
                    diffs.append(f"{where} column {col}: feast {hx(a.get(col))} ours {hx(b.get(col))}")
        return diffs, reordered
    fa, fb = feast["fields"], ours["fields"]
    keys = only if only is not None else set(fa) | set(fb)
    for key, field in sorted(keys):
        name = FIELD_NAMES.get(field, field.decode(errors="replace"))
        where = f"key {key.hex()} field {field.hex()} ({name})"
        if (key, field) not in fb and (key, field) not in fa:
            continue
        if (key, field) not in fb:
            diffs.append(f"{where}: only Feast has it = {hx(fa[key, field])}")
        elif (key, field) not in fa:
            diffs.append(f"{where}: only ours has it = {hx(fb[key, field])}")
        else:
            if field == VECTOR_FIELD:
                eq, re = same_vector(fa[key, field], fb[key, field]), 0
            elif field == VECTOR_TS:
                eq, re = True, 0  # when each copy computed its vector
            else:
                eq, re = same_value(field in COMPLEX_FIELDS, fa[key, field], fb[key, field])
            reordered += re
            if not eq:
                diffs.append(f"{where}: feast {hx(fa[key, field])} ours {hx(fb[key, field])}")
    for key in sorted({k for k, _ in keys}):
        ta, tb = feast["ttl"].get(key, -2), ours["ttl"].get(key, -2)
        # Remaining TTLs: both without expiry (-1) or both absent (-2), or both set (to at
        # most key_ttl_seconds) and a few seconds apart (the copies are written one after
        # the other).
        if (ta < 0 or tb < 0) and ta != tb or (ta >= 0 and tb >= 0 and (
                abs(ta - tb) > 60 or (ttl and max(ta, tb) > ttl))):
            diffs.append(f"key {key.hex()}: TTL feast {ta} ours {tb} (key_ttl_seconds {ttl})")
    return diffs, reordered


def _row(d):
    return {k: hx(v) if isinstance(v, bytes) else v for k, v in d.items()}


def _same_read(local, remote) -> bool:
    if local == remote:
        return True
    # A Json feature reaches Feast's remote client as its text (as Feast's own server
    # sends it), which the client keeps as a string; the local store parses it.
    if isinstance(remote, str):
        try:
            return json.loads(remote) == local
        except ValueError:
            return False
    return False


def compare_reads(local: dict, remote: dict) -> list:
    """Differences between two to_dict() results (parity.compare, any Json text)."""
    return [d for d in compare(local, remote) if not _diff_is_json_text(d, local, remote)]


def _diff_is_json_text(diff: str, local: dict, remote: dict) -> bool:
    name, _, rest = diff.partition("[")
    if name not in local or not rest.split("]")[0].isdigit():
        return False
    i = int(rest.split("]")[0])
    return _same_read(local[name][i], remote[name][i])


def registry_views(repo: Path) -> dict:
    r = Registry()
    r.ParseFromString((repo / "data" / "registry.db").read_bytes())
    out = {}
    for i, fv in enumerate(r.feature_views):
        out[fv.spec.name] = {
            "position": i,
            "state": fv.meta.state,
            "intervals": [(iv.start_time.ToJsonString(), iv.end_time.ToJsonString())
                          for iv in fv.meta.materialization_intervals],
        }
    return out


def diff_registries(feast_repo: Path, our_repo: Path) -> list:
    a, b = registry_views(feast_repo), registry_views(our_repo)
    diffs = []
    if set(a) != set(b):
        return [f"feature views: feast {sorted(a)} ours {sorted(b)}"]
    for name in sorted(a):
        for what in ("state", "intervals"):
            if a[name][what] != b[name][what]:
                diffs.append(f"{name} meta.{what}: feast {a[name][what]} ours {b[name][what]}")
    return diffs


def registry_order_diff(feast_repo: Path, our_repo: Path) -> list:
    a, b = registry_views(feast_repo), registry_views(our_repo)
    oa, ob = sorted(a, key=lambda n: a[n]["position"]), sorted(b, key=lambda n: b[n]["position"])
    return [] if oa == ob else [f"Registry.feature_views order: feast {oa} ours {ob}"]


def add_precomputed_service(repo: Path):
    """Adds the service VECTORS with precompute_online: all of driver_hourly_stats, and two
    features of driver_hourly_stats_fresh under an alias."""
    path = repo / "data" / "registry.db"
    r = Registry()
    r.ParseFromString(path.read_bytes())
    by_name = {s.spec.name: s for s in r.feature_services}
    svc = r.feature_services.add()
    svc.CopyFrom(by_name["driver_activity_v2"])
    svc.spec.name = VECTORS
    svc.spec.precompute_online = True
    del svc.spec.features[:]
    stats = next(p for p in by_name["driver_activity_v2"].spec.features if p.feature_view_name == STATS)
    svc.spec.features.add().CopyFrom(stats)
    fresh = svc.spec.features.add()
    fresh.CopyFrom(next(p for p in by_name["driver_activity_v3"].spec.features if p.feature_view_name == FRESH))
    fresh.feature_view_name_alias = "fresh"
    keep = [c for c in fresh.feature_columns if c.name in ("conv_rate", "driver_profile")]
    del fresh.feature_columns[:]
    fresh.feature_columns.extend(keep)
    path.write_bytes(r.SerializeToString(deterministic=True))


def vector_entities(dump) -> list:
    """The driver ids with a stored vector."""
    from feast.infra.key_encoding_utils import deserialize_entity_key
    keys = {k for (k, f) in dump.get("fields", {}) if f == VECTOR_FIELD}
    return sorted(deserialize_entity_key(k[:-len(PROJECT)]).entity_values[0].int64_val for k in keys)


def strip_intervals(repo: Path):
    """A registry whose views were never materialized (same bytes in every copy)."""
    path = repo / "data" / "registry.db"
    r = Registry()
    r.ParseFromString(path.read_bytes())
    for fv in r.feature_views:
        del fv.meta.materialization_intervals[:]
    path.write_bytes(r.SerializeToString(deterministic=True))


# ----------------------------------------------------------------------------- writers

def post(url: str, path: str, body: dict):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def feast_op(fs: FeatureStore, op):
    kind, name, df = op
    frame = pd.DataFrame(json.loads(json.dumps(df)))  # as feast serve builds it from the JSON body
    try:
        with quiet():
            if kind == "push":
                fs.push(name, frame)
            else:
                fs.write_to_online_store(name, frame)
        return "ok"
    except Exception as e:  # noqa: BLE001
        return f"error {type(e).__name__}: {e}"


def our_op(url: str, op):
    kind, name, df = op
    if kind == "push":
        status, body = post(url, "/push", {"push_source_name": name, "df": df, "to": "online"})
    else:
        status, body = post(url, "/write-to-online-store", {"feature_view_name": name, "df": df})
    if status == 200:
        return "ok"
    try:  # Feast's error body: a JSON string holding {"module", "class", "message"}
        detail = json.loads(body)
        body = json.loads(detail)["message"] if isinstance(detail, str) else detail
    except (ValueError, TypeError, KeyError):
        pass
    return f"error {status}: {body}"


def apply_ops(report, label, ops, feast_fs, our_url) -> list:
    """Runs each op on both sides; the ops whose outcomes differ."""
    diffs = []
    for i, op in enumerate(ops):
        a, b = feast_op(feast_fs, op), our_op(our_url, op)
        if a != "ok":
            diffs.append(f"op {i} {op[0]} {op[1]}: Feast itself rejects this test request: {a[:300]}")
        elif b != "ok":
            diffs.append(f"op {i} {op[0]} {op[1]}: Feast {a[:300]} / ours {b[:300]}")
    report.check(f"{label}: every request succeeds as in Feast ({len(ops)} requests)", diffs)
    return diffs


# ----------------------------------------------------------------------------- data

class Clock:
    def __init__(self):
        self.now = int(time.time())

    def dt(self, ago: float) -> datetime:
        return datetime.fromtimestamp(self.now - ago, tz=timezone.utc)

    def z(self, ago: float, micros=False) -> str:
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micros else "%Y-%m-%dT%H:%M:%SZ"
        return self.dt(ago).strftime(fmt)

    def offset(self, ago: float) -> str:
        return self.dt(ago).astimezone(timezone(timedelta(hours=2))).isoformat()

    def naive(self, ago: float) -> str:
        return self.dt(ago).strftime("%Y-%m-%d %H:%M:%S")


def write_groups(c: Clock) -> list:
    """Check 1's requests, in groups compared one at a time: (name, requests, entities
    read back in check 2)."""
    typed = [
        ("write", STATS, {  # Map/Struct as JSON objects, Json as JSON text; 1001 overwritten, 2001 new
            "driver_id": [1001, 2001],
            "conv_rate": [0.5, 0.2], "acc_rate": [0.75, 0.1], "avg_daily_trips": [10, 20],
            "driver_metadata": [{"vehicle_type": "van", "rating": "4.5"}, {"vehicle_type": "bike", "rating": "3.9"}],
            "driver_config": ['{"max_distance_km": 50, "preferred_zones": ["north", "east"]}', '{"a":1,"b":[1,2]}'],
            "driver_profile": [{"name": "driver_1001", "age": "41"}, {"name": "new_2001", "age": "30"}],
            "event_timestamp": [c.z(1800), c.z(1800)], "created": [c.z(1700), c.z(1750)],
        }),
        ("write", STATS, {  # nulls everywhere, Json as JSON objects (keys not sorted), +02:00 offsets,
            # naive created times, typed values inside a Map, an extra column
            "driver_id": [1002, 2002, 2003],
            "conv_rate": [0.1, None, 0.3], "acc_rate": [None, 0.2, 0.7], "avg_daily_trips": [None, 7, 8],
            "driver_metadata": [{"vehicle_type": "truck", "seats": 3, "load": 1.5, "electric": True}, None,
                                {"vehicle_type": "car", "seats": 5, "load": 0.25, "electric": False}],
            "driver_config": [{"zone": "east", "max_distance_km": 10, "ratio": 0.5, "ok": True},
                              {"zone": "west", "max_distance_km": 20, "ratio": 1.25, "ok": False}, None],
            "driver_profile": [{"name": "driver_1002", "age": "50"}, None, {"name": "new_2003", "age": "22"}],
            "event_timestamp": [c.offset(1700), c.offset(1700), c.offset(1690)],
            "created": [c.naive(1600), c.naive(1600), c.naive(1600)],
            "extra_column": ["ignored", "ignored", "ignored"],
        }),
        ("push", PUSH_STATS, {  # -> driver_hourly_stats_fresh; microseconds
            "driver_id": [1003, 2001],
            "conv_rate": [0.875, 0.0625], "acc_rate": [0.5, 1.0], "avg_daily_trips": [300, 0],
            "driver_metadata": [{"vehicle_type": "suv", "rating": "4.9"}, {"vehicle_type": "", "rating": "1"}],
            "driver_config": ['{"max_distance_km": 5}', '{}'],
            "driver_profile": [{"name": "driver_1003", "age": "60"}, {"name": "", "age": "0"}],
            "event_timestamp": [c.z(1500.123456, True), c.z(1400.5, True)],
            "created": [c.z(1400, True), c.z(1400, True)],
        }),
        ("push", PUSH_LABELS, {  # label view: STRING driver_id key, no created column
            "driver_id": [1001, 9002],
            "is_reliable": [1, 0], "quality_score": [0.9, 0.45], "reviewer_notes": ["ok", None],
            "labeler": ["alice", "bob"], "event_timestamp": [c.z(1300), c.z(1300)],
        }),
        ("write", STATS, {  # 2001 older than its first write (SQLite, PostgreSQL overwrite, Redis skips); 1004 all null
            "driver_id": [2001, 1004],
            "conv_rate": [0.9, None], "acc_rate": [0.9, None], "avg_daily_trips": [99, None],
            "driver_metadata": [{"vehicle_type": "old"}, None], "driver_config": ['"old"', None],
            "driver_profile": [{"name": "old", "age": "1"}, None],
            "event_timestamp": [c.z(2400), c.z(1200)], "created": [c.z(2400), c.z(1200)],
        }),
        ("write", FRESH, {  # JSON ints into Float32, integral floats into Int64, Json list and null text
            "driver_id": [1005, 2002],
            "conv_rate": [1, 0], "acc_rate": [2, 3], "avg_daily_trips": [12.0, 13.0],
            "driver_metadata": [{"n": 1, "x": 2.5, "b": False}, {"n": 3, "x": 0.5, "b": True}],
            "driver_config": ['[1, 2, 3]', 'null'],
            "driver_profile": [{"name": "driver_1005", "age": "44"}, {"name": "new_2002", "age": "19"}],
            "event_timestamp": [c.z(1000), c.z(1000)], "created": [c.z(1000), c.z(1000)],
        }),
    ]
    json_text = [
        ("write", STATS, {  # Map given as JSON text (Feast json.loads it)
            "driver_id": [4001, 4002],
            "conv_rate": [0.5, 0.5], "acc_rate": [0.5, 0.5], "avg_daily_trips": [1, 2],
            "driver_metadata": ['{"vehicle_type": "truck", "rating": "5.0"}', '{"vehicle_type": "car", "rating": "1"}'],
            "driver_config": ['{"k": 1}', '{"k": 2}'],
            "driver_profile": [{"name": "driver_4001", "age": "50"}, {"name": "driver_4002", "age": "51"}],
            "event_timestamp": [c.z(900), c.z(900)], "created": [c.z(900), c.z(900)],
        }),
        ("push", PUSH_STATS, {  # Struct given as JSON text (Feast json.loads it)
            "driver_id": [4003],
            "conv_rate": [0.5], "acc_rate": [0.5], "avg_daily_trips": [3],
            "driver_metadata": [{"vehicle_type": "bike", "rating": "2"}],
            "driver_config": ['{"k": 3}'],
            "driver_profile": ['{"name": "driver_4003", "age": "52"}'],
            "event_timestamp": [c.z(900)], "created": [c.z(900)],
        }),
    ]
    return [
        ("every value type, nulls, new and overwritten entities, label view", typed,
         [1001, 1002, 1003, 1004, 1005, 2001, 2002, 2003, 9999]),
        ("Map or Struct given as JSON text", json_text, []),
    ]


def known_difference_ops(c: Clock) -> dict:
    """Requests where this server deliberately differs from Feast (docs/write-path.md)."""
    return {
        # Feast goes through a pandas/Arrow struct column: every row gets the union of the
        # rows' keys. Ours writes each object as given.
        "differing_keys": ("push", PUSH_STATS, {
            "driver_id": [5001, 5002],
            "conv_rate": [0.3, 0.4], "acc_rate": [0.3, 0.4], "avg_daily_trips": [1, 2],
            "driver_metadata": [{"vehicle_type": "van"}, {"rating": "4.0", "color": "red"}],
            "driver_config": [{"a": 1}, {"b": "x"}],
            "driver_profile": [{"name": "n1"}, {"name": "n2", "age": "33"}],
            "event_timestamp": [c.z(800), c.z(800)], "created": [c.z(800), c.z(800)],
        }),
        # Feast writes int(13.7) == 13; ours refuses the cell.
        "fractional": ("write", FRESH, {
            "driver_id": [7001], "conv_rate": [0.5], "acc_rate": [0.5], "avg_daily_trips": [13.7],
            "driver_metadata": [None], "driver_config": [None], "driver_profile": [None],
            "event_timestamp": [c.z(800)], "created": [c.z(800)],
        }),
    }


def remote_ops(c: Clock) -> list:
    """Check 3's writes, made by Feast's SDK through `online_store: {type: remote}` (the
    client sends Map/Struct values to /write-to-online-store as JSON text)."""
    return [
        ("write", STATS, {
            "driver_id": [6001, 6002],
            "conv_rate": [0.15, 0.25], "acc_rate": [0.35, None], "avg_daily_trips": [4, 5],
            "driver_metadata": [{"vehicle_type": "van", "rating": "2.5"}, {"vehicle_type": "car", "rating": "3.5"}],
            "driver_config": ['{"max_distance_km": 7, "preferred_zones": ["south"]}', '{"k": "v"}'],
            "driver_profile": [{"name": "driver_6001", "age": "33"}, {"name": "new_6002", "age": "34"}],
            "event_timestamp": [c.z(700), c.z(700)], "created": [c.z(690), c.z(690)],
        }),
        ("push", PUSH_STATS, {
            "driver_id": [6003, 6004],
            "conv_rate": [0.45, 0.55], "acc_rate": [0.65, 0.75], "avg_daily_trips": [6, 7],
            "driver_metadata": [{"vehicle_type": "bus", "rating": "1.5"}, {"vehicle_type": "cab", "rating": "5"}],
            "driver_config": ['{"max_distance_km": 8}', '{"x": [1]}'],
            "driver_profile": [{"name": "driver_6003", "age": "35"}, {"name": "new_6004", "age": "36"}],
            "event_timestamp": [c.z(600.25, True), c.z(600.25, True)], "created": [c.z(600, True), c.z(600, True)],
        }),
    ]


READ_FEATURES = [f"{v}:{f}" for v in (STATS, FRESH) for f in FEATURES]
READ_LABELS = [f"{LABELS}:{f}" for f in LABEL_FEATURES]


def read_all(fs: FeatureStore, entities, labels=(1001, 9002)) -> dict:
    with quiet():
        out = fs.get_online_features(features=READ_FEATURES, entity_rows=[{"driver_id": i} for i in entities],
                                     full_feature_names=True).to_dict()
        if labels:
            got = fs.get_online_features(features=READ_LABELS, entity_rows=[{"driver_id": i} for i in labels],
                                         full_feature_names=True).to_dict()
            out.update({f"labels.{k}": v for k, v in got.items()})
    return out


def remote_repo(dest: Path, registry_from: Path, url: str) -> Path:
    (dest / "data").mkdir(parents=True)
    shutil.copy(registry_from / "data" / "registry.db", dest / "data" / "registry.db")
    write_store_config(dest, f"    type: remote\n    path: {url}\n")
    return dest


def run(cmd, cwd=None):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {p.returncode}: {(p.stdout + p.stderr)[-1500:]}")
    return p.stdout


def our_cli(binary, repo, *args):
    """feast-server's materialize commands (waiting while the binary is being rebuilt)."""
    for _ in range(20):
        if Path(binary).exists():
            return run([binary, "-c", repo, *args])
        time.sleep(3)
    raise RuntimeError(f"{binary} does not exist")


def start_server(binary, repo):
    for attempt in range(20):
        try:
            return ServerProcess(binary, repo)
        except (RuntimeError, FileNotFoundError):
            if attempt == 19:
                raise
            time.sleep(3)


# ----------------------------------------------------------------------------- checks

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--store", choices=["sqlite", "redis", "redis-cluster", "wasm-redis", "wasm-postgres"],
                    default="sqlite")
    ap.add_argument("--component", help="with --store wasm-redis or wasm-postgres: the store component "
                                        "feast-server serves its copy's store with (Feast's copy uses Feast's "
                                        "own Redis or PostgreSQL store)")
    args = ap.parse_args()
    binary = Path(args.binary).resolve()
    # wasm-redis, wasm-postgres: our copy's store is the component (plugins/redis-store,
    # plugins/postgres-store), Feast's copy uses Feast's store of the same kind.
    wasm = {"wasm-redis": "redis", "wasm-postgres": "postgres"}
    component = Path(args.component).resolve() if args.store in wasm and args.component else None
    if args.store in wasm and (component is None or not component.is_file()):
        ap.error(f"--store {args.store} needs --component PATH (plugins/{wasm[args.store]}-store built for "
                 "wasm32-wasip2)")
    kind = wasm.get(args.store, args.store)
    tag = args.store
    report = Report()
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="write-parity-"))
    stoppable = []

    def stop(p):
        if p in stoppable:
            stoppable.remove(p)
            p.stop()

    try:
        clock = Clock()
        base = copy_demo_repo(tmp / "base", seconds_ago=3600)
        repo_a, repo_b = tmp / "feast", tmp / "ours"
        shutil.copytree(base, repo_a)
        shutil.copytree(base, repo_b)
        ttl = 86400 if kind in ("redis", "redis-cluster") else None
        redis_a = redis_b = pg_a = pg_b = None
        if kind in ("redis", "redis-cluster"):
            make = RedisClusterProcess if kind == "redis-cluster" else RedisServer
            redis_a = make(tmp / "redis-feast")
            stoppable.append(redis_a)
            redis_b = make(tmp / "redis-ours")
            stoppable.append(redis_b)
        if kind == "postgres":
            pg = PostgresServer(tmp / "postgres")
            stoppable.append(pg)
            pg_a, pg_b = PgDatabase(pg, "feast_a"), PgDatabase(pg, "feast_b")
        store_a = Store(kind, repo_a, redis_a, pg=pg_a)
        store_b = Store(kind, repo_b, redis_b, component=component, pg=pg_b)

        def twin(name: str, repo: Path, store: Store) -> str:
            """A repository reading `repo`'s registry, its store configured as `store`'s."""
            path = tmp / name
            if not path.exists():
                path.mkdir()
                (path / "data").symlink_to(repo / "data", target_is_directory=True)
            write_store_config(path, store.config())
            return str(path)

        def feast_b() -> str:
            """Copy B as Feast's SDK can open it: itself, or (store component) a twin
            reading the same registry and store with Feast's store of that kind."""
            return twin("ours-as-feast", repo_b, Store(kind, repo_b, redis_b, pg=pg_b)) if component else str(repo_b)

        def ours_a() -> str:
            """Copy A as feast-server can serve it: itself, or (PostgreSQL, which feast-server
            reaches only through the component) a twin reading it through the component."""
            if kind != "postgres":
                return str(repo_a)
            return twin("feast-as-ours", repo_a, Store(kind, repo_a, component=component, pg=pg_a))
        for store in (store_a, store_b):
            store.use_in(store.repo, ttl)  # Redis: key_ttl_seconds, so EXPIRE is covered
            if kind != "sqlite":
                store.load_feast_dump(clock.now - 3600)
        report.check(f"[{tag}] both copies start from the same store",
                     diff_dumps(kind, store_a.dump(), store_b.dump(), ttl=ttl)[0])

        # ---- 1. same bytes as Feast
        fs_a = FeatureStore(repo_path=str(repo_a))
        server_b = start_server(binary, repo_b)
        stoppable.append(server_b)
        read_entities = []
        for gi, (group, ops, entities) in enumerate(write_groups(clock)):
            label = f"[{tag}] 1{'abcdefg'[gi]}. {group}"
            before_a, before_b = store_a.dump(), store_b.dump()
            apply_ops(report, label, ops, fs_a, server_b.url)
            after_a, after_b = store_a.dump(), store_b.dump()
            touched = changed_keys(before_a, after_a) | changed_keys(before_b, after_b)
            diffs, reordered = diff_dumps(kind, after_a, after_b, ttl=ttl, only=touched)
            report.check(f"{label}: store is Feast's, byte for byte", diffs,
                         f"{len(touched)} {'rows' if kind in ROW_KINDS else 'fields'} written, "
                         f"{reordered} Map/Struct values equal once decoded, bytes in another map order")
            if not touched:
                report.check(f"{label}: the writes changed the store", ["nothing changed"])
            if gi == 0:
                report.check(f"{label}: known difference: our Map/Struct entries are sorted by key",
                             sorted_map_problems(kind, before_b, after_b))
            read_entities += entities

        # ---- 2. read back
        with report.guard(f"[{tag}] 2. read back"):
            fs_b = FeatureStore(repo_path=feast_b())
            want = read_all(fs_a, read_entities)
            report.check(f"[{tag}] 2. Feast's local SDK reads our writes as it reads its own",
                         compare_reads(want, read_all(fs_b, read_entities)))
            server_a = start_server(binary, ours_a())
            stoppable.append(server_a)
            client_a = FeatureStore(repo_path=str(remote_repo(tmp / "client-a", repo_a, server_a.url)))
            report.check(f"[{tag}] 2. our /get-online-features reads Feast's writes as Feast does",
                         compare_reads(want, read_all(client_a, read_entities)))
            stop(server_a)

        # ---- known difference 2: two rows for one entity in one request
        with report.guard(f"[{tag}] known difference: two rows for one entity"):
            dup = ("push", PUSH_STATS, {
                "driver_id": [3001, 3001], "conv_rate": [0.25, 0.75], "acc_rate": [0.25, 0.75],
                "avg_daily_trips": [1, 2], "driver_metadata": [None, None], "driver_config": [None, None],
                "driver_profile": [None, None],
                "event_timestamp": [clock.z(600), clock.z(700)], "created": [clock.z(600), clock.z(700)]})
            apply_ops(report, f"[{tag}] known difference: two rows for one entity", [dup], fs_a, server_b.url)
            with quiet():
                got_a = fs_a.get_online_features(features=[f"{FRESH}:conv_rate"],
                                                 entity_rows=[{"driver_id": 3001}]).to_dict()["conv_rate"][0]
                got_b = FeatureStore(repo_path=feast_b()).get_online_features(
                    features=[f"{FRESH}:conv_rate"], entity_rows=[{"driver_id": 3001}]).to_dict()["conv_rate"][0]
            # Ours keeps the row with the latest event time (0.25); Feast's SQLite store keeps
            # the last row (0.75), as its PostgreSQL store does (one upsert per row, in order,
            # each overwriting), its Redis store the latest (0.25).
            want_a = 0.75 if kind in ROW_KINDS else 0.25
            report.check(f"[{tag}] known difference: two rows for one entity in one request: ours keeps the "
                         f"latest event, Feast {'the last row' if kind in ROW_KINDS else 'the latest too'}",
                         [] if (got_a, got_b) == (want_a, 0.25) else [f"Feast kept {got_a}, ours kept {got_b}"])

        # ---- known difference 3: objects whose keys differ between rows, and
        # ---- known difference 4: a non-integral number for an Int64 feature
        with report.guard(f"[{tag}] known differences 3 and 4"):
            ops = known_difference_ops(clock)
            with quiet():
                read = lambda fs, ids: fs.get_online_features(  # noqa: E731
                    features=[f"{FRESH}:driver_config", f"{FRESH}:driver_metadata", f"{FRESH}:avg_daily_trips"],
                    entity_rows=[{"driver_id": i} for i in ids]).to_dict()
            problems = []
            if feast_op(fs_a, ops["differing_keys"]) != "ok" or our_op(server_b.url, ops["differing_keys"]) != "ok":
                problems.append("the push with differing keys failed on one side")
            with quiet():
                got_a = read(fs_a, [5001, 5002])
                got_b = read(FeatureStore(repo_path=feast_b()), [5001, 5002])
            want_b = {"driver_config": ['{"a": 1}', '{"b": "x"}'],
                      "driver_metadata": [{"vehicle_type": "van"}, {"rating": "4.0", "color": "red"}]}
            for f, want in want_b.items():
                if [json.loads(v) if isinstance(v, str) else v for v in got_b[f]] != \
                        [json.loads(v) if isinstance(v, str) else v for v in want]:
                    problems.append(f"ours {f} = {got_b[f]}, expected each object as given: {want}")
            cfg_a = got_a["driver_config"][0]
            if (json.loads(cfg_a) if isinstance(cfg_a, str) else cfg_a) != {"a": 1.0, "b": None}:
                problems.append(f"Feast no longer unions the keys: {got_a['driver_config']}")
            report.check(f"[{tag}] known difference: objects whose keys differ between rows are written "
                         "as given (Feast unions every row's keys)", problems)
            problems = []
            ours = our_op(server_b.url, ops["fractional"])
            if not (ours.startswith("error 400") and "df.avg_daily_trips[0]" in ours):
                problems.append(f"ours answered {ours}")
            if feast_op(fs_a, ops["fractional"]) != "ok":
                problems.append("Feast no longer accepts 13.7 for an Int64")
            with quiet():
                if read(FeatureStore(repo_path=feast_b()), [7001])["avg_daily_trips"] != [None]:
                    problems.append("ours wrote entity 7001")
                if read(fs_a, [7001])["avg_daily_trips"] != [13]:
                    problems.append("Feast no longer truncates 13.7 to 13")
            report.check(f"[{tag}] known difference: a non-integral number for an Int64 feature is a 400 "
                         "naming the cell (Feast truncates it)", problems)

        # ---- 3. Feast's SDK with a remote online store pointing at feast-server
        with report.guard(f"[{tag}] 3. Feast SDK through feast-server"):
            client_b_repo = remote_repo(tmp / "client-b", repo_b, server_b.url)
            client_b = FeatureStore(repo_path=str(client_b_repo))
            w1 = (datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc), datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc))
            w2 = ("2026-11-21T00:00:00", "2026-11-21T12:00:00")
            before_a, before_b = store_a.dump(), store_b.dump()
            diffs = []
            for i, (op_kind, name, df) in enumerate(remote_ops(clock)):
                a = feast_op(fs_a, (op_kind, name, df))
                b = feast_op(client_b, (op_kind, name, df))
                if a != "ok" or b != "ok":
                    diffs.append(f"SDK {'push' if op_kind == 'push' else 'write_to_online_store'}({name}) "
                                 f"[{i}]: Feast local {a[:300]} / through ours {b[:300]}")
            try:
                with quiet():
                    client_b.materialize(start_date=w1[0], end_date=w1[1])
                    fs_a.materialize(start_date=w1[0], end_date=w1[1])
            except Exception as e:  # noqa: BLE001
                diffs.append(f"store.materialize{w1}: {type(e).__name__}: {e}")
            # Feast's own server answers 404 to /write-to-online-store for a label view, so
            # Feast's remote client cannot push to a label view's push source through it;
            # what feast-server writes instead must still be Feast's bytes.
            label = ("push", PUSH_LABELS, {"driver_id": [9003], "is_reliable": [1], "quality_score": [0.5],
                                           "reviewer_notes": ["r"], "labeler": ["l"],
                                           "event_timestamp": [clock.z(700)]})
            a, b = feast_op(fs_a, label), feast_op(client_b, label)
            print(f"INFO [{tag}] 3. remote client push to the label view's push source through "
                  f"feast-server: {b[:200]} (Feast local: {a[:100]}; Feast's own server answers 404)", flush=True)
            try:
                run([FEAST, "-c", client_b_repo, "materialize", *w2], cwd=client_b_repo)
                with quiet():
                    FeatureStore(repo_path=str(repo_a)).materialize(
                        start_date=datetime.fromisoformat(w2[0]).replace(tzinfo=timezone.utc),
                        end_date=datetime.fromisoformat(w2[1]).replace(tzinfo=timezone.utc))
            except Exception as e:  # noqa: BLE001
                diffs.append(f"feast materialize {w2}: {e}")
            incremental_end = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
            try:
                with quiet():
                    client_b.materialize_incremental(end_date=incremental_end)
                    FeatureStore(repo_path=str(repo_a)).materialize_incremental(end_date=incremental_end)
            except Exception as e:  # noqa: BLE001
                diffs.append(f"store.materialize_incremental({incremental_end}): {type(e).__name__}: {e}")
            report.check(f"[{tag}] 3. remote write_to_online_store, push, materialize, `feast materialize` "
                         "and materialize_incremental succeed", diffs)
            after_a, after_b = store_a.dump(), store_b.dump()
            touched = changed_keys(before_a, after_a) | changed_keys(before_b, after_b)
            d, reordered = diff_dumps(kind, after_a, after_b, ttl=ttl, only=touched)
            report.check(f"[{tag}] 3. store after the remote client's writes and materializations is Feast's", d,
                         f"{len(touched)} {'rows' if kind in ROW_KINDS else 'fields'} written, "
                         f"{reordered} Map/Struct values equal once decoded")
            report.check(f"[{tag}] 3. registry intervals/states after remote materialize are Feast's",
                         diff_registries(repo_a, repo_b))
            fs_a = FeatureStore(repo_path=str(repo_a))
            entities = [1001, 1002, 1003, 6001, 6002, 6003, 6004]
            report.check(f"[{tag}] 3. the remote client reads back through feast-server what Feast reads",
                         compare_reads(read_all(fs_a, entities, ()), read_all(client_b, entities, ())))
        stop(server_b)

        # ---- 4. materialize
        with report.guard(f"[{tag}] 4. materialize"):
            mat_a, mat_b = tmp / "mat-feast", tmp / "mat-ours"
            for repo, store in ((mat_a, store_a), (mat_b, store_b)):
                shutil.copytree(base, repo)
                strip_intervals(repo)
                if not component:  # a store component cannot list its keys (no vectors)
                    add_precomputed_service(repo)
                store.use_in(repo)  # no key_ttl_seconds here: keys without expiry
                store.empty()
            window = ("2026-11-22T00:00:00Z", "2026-11-22T12:00:00Z")
            run([FEAST, "-c", mat_a, "materialize", *window], cwd=mat_a)
            our_cli(binary, mat_b, "materialize", *window)
            dump_a = store_a.dump()
            d, reordered = diff_dumps(kind, dump_a, store_b.dump())
            report.check(f"[{tag}] 4. `materialize {window[0]} {window[1]}`: store is Feast's", d,
                         f"{size(dump_a)}, {reordered} Map/Struct values equal once decoded")
            report.check(f"[{tag}] 4. materialize: registry intervals and states are Feast's",
                         diff_registries(mat_a, mat_b))
            if kind in ("redis", "redis-cluster") and not component:  # Feast pre-computes only on Redis
                with_vectors = vector_entities(dump_a)
                d = [] if with_vectors else ["Feast wrote no vector"]
                if with_vectors != vector_entities(store_b.dump()):
                    d.append(f"vectors for drivers {vector_entities(store_b.dump())}, Feast's {with_vectors}")
                if with_vectors:
                    reads = []
                    for repo in (mat_a, mat_b):
                        with quiet():
                            fs = FeatureStore(repo_path=str(repo))
                            reads.append(fs.get_online_features(
                                features=fs.get_feature_service(VECTORS),
                                entity_rows=[{"driver_id": i} for i in with_vectors],
                                full_feature_names=True).to_dict())
                    d += compare_reads(*reads)
                report.check(f"[{tag}] 4. materialize: Feast reads the precompute_online service from our "
                             "vectors as from its own", d, f"{len(with_vectors)} vectors")
            for d in registry_order_diff(mat_a, mat_b):
                print(f"INFO [{tag}] 4. materialize: {d} (no reader depends on it)", flush=True)

            older = ("2026-11-20T00:00:00", "2026-11-21T00:00:00")  # naive = UTC; Redis skips, SQL stores overwrite
            with quiet():
                FeatureStore(repo_path=str(mat_a)).materialize(
                    feature_views=[STATS],
                    start_date=datetime.fromisoformat(older[0]).replace(tzinfo=timezone.utc),
                    end_date=datetime.fromisoformat(older[1]).replace(tzinfo=timezone.utc))
            our_cli(binary, mat_b, "materialize", *older, "-v", STATS)
            dump_a = store_a.dump()
            d, reordered = diff_dumps(kind, dump_a, store_b.dump())
            report.check(f"[{tag}] 4. `materialize {older[0]} {older[1]} -v {STATS}` (older rows): "
                         "store is Feast's", d, f"{size(dump_a)}, {reordered} Map/Struct values equal once decoded")
            report.check(f"[{tag}] 4. older materialize: registry intervals and states are Feast's",
                         diff_registries(mat_a, mat_b))

            end = "2026-11-22T23:00:00Z"
            with quiet():
                FeatureStore(repo_path=str(mat_a)).materialize_incremental(
                    end_date=datetime.fromisoformat(end))
            our_cli(binary, mat_b, "materialize-incremental", end)
            after_first, dump_a = store_b.dump(), store_a.dump()
            d, reordered = diff_dumps(kind, dump_a, after_first)
            report.check(f"[{tag}] 4. `materialize-incremental {end}`: store is Feast's", d,
                         f"{size(dump_a)}, {reordered} Map/Struct values equal once decoded")
            report.check(f"[{tag}] 4. materialize-incremental: registry intervals and states are Feast's",
                         diff_registries(mat_a, mat_b))
            with quiet():
                FeatureStore(repo_path=str(mat_a)).materialize_incremental(
                    end_date=datetime.fromisoformat(end))
            our_cli(binary, mat_b, "materialize-incremental", end)
            d, _ = diff_dumps(kind, after_first, store_b.dump())
            report.check(f"[{tag}] 4. second `materialize-incremental {end}` leaves our store unchanged", d)
            d, _ = diff_dumps(kind, store_a.dump(), store_b.dump())
            report.check(f"[{tag}] 4. second materialize-incremental: store is Feast's", d)
            report.check(f"[{tag}] 4. second materialize-incremental: registry intervals and states are Feast's",
                         diff_registries(mat_a, mat_b))
    except Exception as e:  # noqa: BLE001
        report.check(f"[{tag}] setup", [f"{type(e).__name__}: {e}"] + traceback.format_exc().splitlines()[-8:])
    finally:
        for p in reversed(list(stoppable)):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001
                print(f"cleanup: {type(e).__name__}: {e}")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"write parity ({tag}): {len(report.failed)} failed check(s) in {time.time() - started:.0f} s")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
