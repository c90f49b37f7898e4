#!/usr/bin/env python3
"""Side-by-side load test of feast-server and the Python `feast serve` (stdlib only).

Every server runs on this machine, in this run, over a private copy of the demo feature
repository (event times moved to now), and is loaded with wrk (a real HTTP load
generator) on the same payloads. All servers of a store run at once and each case loads
them one after the other (in rotating order over `--rounds`), so a ratio compares loads
taken seconds apart: this machine's speed drifts by tens of percent over minutes.
Results: a table on stdout, plus results.csv and table.md in the output directory.
With both floors in the run, ours/bound compares ours with 1 / (1/http-floor + 1/floor):
the rate of a server whose only costs were the HTTP exchange and the store reads; bound/floor
is that server's rate against the store floor (the most any HTTP server could reach of it).
With http-store-floor, ours/http-store-floor compares ours with that server itself, measured:
the HTTP floor making the store reads too, so that it pays what the two cost together under
load (waking the load generator, caches shared with the kernel's network work).

    bench/bench.py                          # ours vs tuned Python (1 worker), SQLite
    bench/bench.py --servers ours,python,python-w2 --conns 8,32 --duration 15
    bench/bench.py --quick                  # a few seconds per case, dev build allowed
    bench/bench.py --rounds 3               # each case 3 times per server, interleaved; medians
    bench/bench.py --pin --servers ours,http-floor,http-store-floor   # servers on CPU 0, wrk on CPU 1
    bench/bench.py --servers ours,python,python-w2 --payloads push_1,push_100   # write path
    bench/bench.py --reads-while-pushing    # p99 of reads with and without 1,000 pushed rows/s
    bench/bench.py --stores postgres --rounds 3   # PostgreSQL: ours (component), python, pgbench
    bench/bench.py --servers ours,floor,http-floor --other 'peer=/path/to/server -c {repo} serve -p {port}'

Servers: ours (target/release/feast-server, built if missing: the release profile links
the server and each tool below with fat LTO; the server alone took 13.6 min from scratch
on 2 cores; --server-bin skips the build), python (feast serve
--no-access-log --max-requests 0, 1 worker), python-w2 (the same with --workers 2),
floor (no server: the same store reads issued directly by the store's client library,
target/release/examples/store_floor; on postgres, PostgreSQL's own pgbench, below; not for
ODFV or feature-service payloads), http-floor (target/release/examples/http_floor: our
HTTP stack on the same serving threads, loaded by the same wrk with the same request,
answering the bytes our server answered for the payload and doing nothing else; needs
ours), http-store-floor (the same program given the store: before answering, each request
makes the payload's store reads on its serving thread as ours does, with that thread's own
SQLite connection and held read transaction, or one Redis pipeline on that thread's own
connection; sqlite and redis, the payloads the floor applies to; needs ours), ours-oidc
(our server with `auth: {type: oidc}` trusting the tests' OIDC issuer,
target/release/test_oidc_issuer, and one permission in the registry that the token's
role passes; wrk sends a fresh bearer token; its rows carry oidc/no_auth against ours),
wasm-redis (our server with `online_store: {type: wasm}` serving the Redis store
through the component plugins/redis-store, built for wasm32-wasip2; redis only; its rows
carry wasm/native, its req/s against ours, and added_us_p50, its p50 latency minus ours),
--other NAME=COMMAND (another server of Feast's HTTP API, e.g. another implementation,
started by COMMAND on the same repository, {repo}, {yaml} and {port} filled in, and loaded
like ours; its rows give ours/NAME), ours-grpc (our server with -t grpc, loaded by
target/release/examples/grpc_load, a tonic client with one HTTP/2 connection per
concurrent client; HTTP servers are loaded by wrk). The Python servers use the pinned Feast from
demo/feast_venv.sh. Stores: sqlite (the demo's online_store.db), redis (a private
redis-server loaded with the exact bytes Feast wrote, tests/fixtures/redis_dump.json) and
postgres (a private PostgreSQL, tests/python/fixtures.py's PostgresServer, with a database
`feast` owned by the login role `feast`, loaded with the tables Feast wrote,
tests/fixtures/postgres_dump.sql, event times moved to now - 1 h; every server connects
over TCP as `feast` with its password). On postgres, ours (and ours-oidc, ours-grpc) serve
Feast's layout through the component plugins/postgres-store (`online_store: {type: wasm}`,
Feast's keys under `config`; built for wasm32-wasip2), python uses Feast's `type:
postgres`, and floor is pgbench -M prepared running, per transaction, the component's
reads of one request: per view one SELECT ... WHERE entity_key = ANY(...) AND
feature_name = ANY(...) of the payload's unique keys (serialized by the Feast venv's
serialize_entity_key, version 3) and the view's features as literal arrays, several views
in one \\startpipeline/\\endpipeline (one round trip); its p50/p99 come from the
per-transaction latencies it logs (--log), its req/s is its tps (each SELECT is run once
first and must find every key and feature). Before the loads, each server's answer to
each payload is compared with the first server's (each column's values, whatever the
column order: Feast's within a view depends on PYTHONHASHSEED); differences are printed,
and again at the end of the run. CPU µs/req is the server's CPU time (user + system, its
process tree, from /proc) over the requests it answered. No server gets RUST_BACKTRACE or
RUST_LIB_BACKTRACE from the environment. Payloads p10u_10x3 and p100u_100x3 ask for 10 and
100 distinct drivers (the demo has 5: the others are NOT_FOUND), for servers that answer a
repeated entity only once.

Push payloads (push_1, push_10, push_100: POST /push of 1, 10 or 100 rows to the push
source driver_stats_push_source, view driver_hourly_stats_fresh; ours, python and
python-w2 only) are templates, bench/payloads/push_*.tmpl, that bench/push.lua fills per
request with fresh, increasing event times and its own block of entity ids, so that
Redis (which leaves out rows not newer than the stored ones), SQLite and PostgreSQL
write every row of every request. Their rows add rows/s (2xx requests x rows) and
`written`: on Redis, the HSET calls the server made during the load (INFO commandstats)
over the rows of its 2xx answers; on SQLite and PostgreSQL, the entities whose stored
event time is this load's over the entities the load sent. Non-2xx answers are errors.
The floor columns do not apply.

--reads-while-pushing: the p99 latency of the read payload (p1_1x3, 8 connections) on
each server (ours by default) without and with a concurrent push load (--push-rate
requests/s of --push-payload, default 100 x 10 rows = 1,000 rows/s, paced by
--push-threads Python threads on keep-alive connections), the two conditions
alternating over --rounds; per round the two p99s and their ratio, and the medians
(reads_while_pushing.csv and .md).
"""
import argparse
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import re
import tempfile
import threading
import time
from http.client import HTTPConnection, HTTPException
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "tests" / "python"))
from fixtures import (PostgresServer, RedisProcess, copy_demo_repo, free_port, postgres_bin,  # noqa: E402
                      write_store_config)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOADS = ["p1_1x3", "p10_10x5", "p100_100x3", "odfv_10x4"]
STORES = ("sqlite", "redis", "postgres")
PUSH_SERVERS = ("ours", "python", "python-w2")
HTTP_FLOORS = ("http-floor", "http-store-floor")  # replay ours' answers at /replay/<payload>
STORE_FLOORS = ("floor", "http-store-floor")      # make a payload's view reads (floor_applies)
FLOORS = ("floor", *HTTP_FLOORS)                  # not feature servers: started by bench_store
PUSH_ID_BASE = 5_000_000      # driver ids of the push payloads (push.lua's blocks)
PUSH_BLOCKS = 64              # entity blocks per wrk thread (> requests in flight per thread)
PUSHER_ID_BASE = 9_000_000    # driver ids of the background pusher (--reads-while-pushing)
PUSHER_BLOCKS = 50            # entity blocks per pusher thread
FRESH_TABLE = "repo_driver_hourly_stats_fresh"


def is_push(payload):
    return payload.startswith("push_")


def payload_path(payload):
    return BENCH / "payloads" / (f"{payload}.tmpl" if is_push(payload) else f"{payload}.json")


def template_rows(template: str) -> int:
    return len(re.findall(r"__ID\d+__", template))


def iso_us(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)) + f".{us % 1_000_000:06d}Z"


def render_push(template: str, first_id: int, ts_us: int) -> bytes:
    """A push body from a template: row k's driver_id first_id + k, every time ts_us."""
    body = re.sub(r"__ID(\d+)__", lambda m: str(first_id + int(m.group(1))), template)
    return body.replace("__TS__", iso_us(ts_us)).encode()


# Every event time written by this run so far is below _ts_floor_us; each load starts
# at the next whole second above it, so a load's rows are always newer than any earlier
# one (Redis writes them) and its own rows are those stored with an event time (whole
# seconds on SQLite) at or after its start.
_ts_floor_us = 0


def next_ts_base() -> int:
    global _ts_floor_us
    base = max((int(time.time()) + 1) * 1_000_000, (_ts_floor_us // 1_000_000 + 1) * 1_000_000)
    _ts_floor_us = base
    return base


def note_ts(us: int):
    global _ts_floor_us
    _ts_floor_us = max(_ts_floor_us, us + 1)


def redis_hset_calls(port: int) -> int:
    """HSET calls the redis-server has served (INFO commandstats)."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"INFO commandstats\r\n")
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(4096)
        head, rest = buf.split(b"\r\n", 1)
        need = int(head[1:]) + 2
        while len(rest) < need:
            rest += s.recv(65536)
    m = re.search(rb"cmdstat_hset:calls=(\d+)", rest)
    return int(m.group(1)) if m else 0


def sqlite_fresh_entities_since(repo: Path, since_s: int) -> int:
    """Entities of driver_hourly_stats_fresh stored with an event time >= since_s."""
    import sqlite3
    con = sqlite3.connect(f"file:{repo / 'data' / 'online_store.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(f'SELECT count(DISTINCT entity_key) FROM "{FRESH_TABLE}" WHERE event_ts >= ?',
                           (since_s,)).fetchone()[0]
    finally:
        con.close()


def write_snapshot(store, redis_port):
    return redis_hset_calls(redis_port) if store == "redis" else None


def written_check(store, repo, redis_port, before, since_us, acked_rows, sent_entities, pg=None):
    """(written, expected, unit): what the store shows was written by a load."""
    time.sleep(0.3)  # requests still in flight when the load generator stopped
    if store == "redis":
        return redis_hset_calls(redis_port) - before, acked_rows, "rows"
    if store == "postgres":
        return pg.fresh_entities_since(since_us), sent_entities, "entities"
    return sqlite_fresh_entities_since(repo, since_us // 1_000_000), sent_entities, "entities"


def http(method, url, body=None, timeout=5.0, headers=()):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for h in headers:
        name, value = h.split(": ", 1)
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def proc_tree(pid):
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            children = []
        todo.extend(int(c) for c in children)
    return out


def cpu_ticks(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def rss_mb(pid):
    kb = 0
    for p in proc_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
        except OSError:
            pass
    return kb / 1024


# Left out of every server's environment: with them set, Rust servers capture a
# backtrace for every error value they create.
NO_SERVER_ENV = ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")


# --pin: the CPUs (taskset lists) of the servers and of wrk, or None.
PIN = None


def pinned(argv, cpus):
    """`argv` run on `cpus` when --pin is given (taskset execs it: the PID stays)."""
    return ["taskset", "-c", cpus, *argv] if PIN else argv


class Server:
    """A server process started by this script and stopped by its PID."""

    def __init__(self, name, argv, cwd, port, env=None, health_url=None):
        argv = pinned(argv, PIN and PIN[0])
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
            env={**{k: v for k, v in os.environ.items() if k not in NO_SERVER_ENV}, **(env or {})},
            start_new_session=True,
        )
        self.startup_s = None
        deadline = t0 + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: see {self.log.name}")
            try:
                if http("GET", health_url or (self.url + "/health"), timeout=1)[0] == 200:
                    self.startup_s = time.monotonic() - t0
                    break
            except OSError:
                pass
            time.sleep(0.02)
        if self.startup_s is None:
            self.stop()
            raise RuntimeError(f"{name} did not become healthy: see {self.log.name}")
        self.idle_rss_mb = rss_mb(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def run_wrk(url, payload, conns, duration, path="/get-online-features", headers=()):
    """wrk POSTing a payload to `path`, or GETting `path` when `payload` is None; a push
    payload is POSTed to /push by push.lua, with fresh event times."""
    threads = 1 if conns < 2 or PIN else 2
    env = dict(os.environ)
    env.pop("BODY_FILE", None)
    script = BENCH / "post.lua"
    push_base = None
    if payload is not None and is_push(payload):
        script, path, push_base = BENCH / "push.lua", "/push", next_ts_base()
        env.update(PUSH_TEMPLATE=str(payload_path(payload)), WRK_THREADS=str(threads),
                   PUSH_BLOCKS=str(PUSH_BLOCKS), PUSH_ID_BASE=str(PUSH_ID_BASE), PUSH_TS_BASE_US=str(push_base))
    elif payload is not None:
        env["BODY_FILE"] = str(BENCH / "payloads" / f"{payload}.json")
    proc = subprocess.run(
        pinned(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
                *[a for h in headers for a in ("-H", h)], "-s", str(script), url + path], PIN and PIN[1]),
        env=env, capture_output=True, text=True, check=False,
    )
    out = proc.stdout
    res = {}
    for line in out.splitlines():
        if line.startswith(("LUA_SUMMARY", "LUA_LATENCY_US", "LUA_PUSH")):
            for kv in line.split()[1:]:
                k, v = kv.split("=")
                res[k] = float(v)
    if "requests" not in res:
        raise RuntimeError("wrk output not understood:\n" + out + proc.stderr)
    if proc.stderr.strip():  # a Lua error leaves wrk running with its default request
        raise RuntimeError("wrk: " + proc.stderr)
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["errors"] = sum(res.get(k, 0) for k in
                        ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"))
    if push_base is not None:
        if "built" not in res:
            raise RuntimeError("push.lua output not understood:\n" + out)
        res["ts_base_us"] = push_base
        note_ts(push_base + int(res["built"]) + threads)
    return res


def columns(body):
    d = json.loads(body)
    names = d["metadata"]["feature_names"]
    return {n: d["results"][i]["values"] for i, n in enumerate(names)}


def column_diff(ref, cols, limit=4):
    """How an answer's columns differ from the reference's: names, and each differing
    column's first differing value."""
    out = [f"missing {n}" for n in ref if n not in cols] + [f"extra {n}" for n in cols if n not in ref]
    for n, want in ref.items():
        got = cols.get(n)
        if got is None or got == want:
            continue
        if len(got) != len(want):
            out.append(f"{n}: {len(got)} values, not {len(want)}")
            continue
        i = next(i for i, (a, b) in enumerate(zip(want, got)) if a != b)
        out.append(f"{n}[{i}]: {got[i]!r}, not {want[i]!r}")
    return "; ".join(out[:limit]) + (f"; {len(out) - limit} more" if len(out) > limit else "")


def redis_repo(work: Path, sqlite_repo: Path, port: int) -> Path:
    repo = work / "feature_repo_redis"
    shutil.copytree(sqlite_repo, repo)
    write_store_config(repo, f"    type: redis\n    connection_string: \"127.0.0.1:{port}\"\n")
    return repo


class FeastPostgres:
    """A private PostgreSQL (fixtures.PostgresServer) with a database `feast` owned by the
    login role `feast` (a random password), holding the tables `feast materialize` wrote
    (tests/fixtures/postgres_dump.sql, loaded as `feast`), their event and created times
    moved together, one UPDATE per table, so the newest event is now - seconds_ago (as
    copy_demo_repo does on SQLite); until stop()."""

    def __init__(self, work: Path, seconds_ago: int = 3600):
        self.server = PostgresServer(work / "postgres")
        self.port, self.database, self.user = self.server.port, "feast", "feast"
        self.password = os.urandom(12).hex()
        self.scripts = {}
        try:
            self.server.create_db(self.database, self.user, self.password)
            self.server.psql(self.database, file=ROOT / "tests" / "fixtures" / "postgres_dump.sql", user=self.user)
            tables = self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
            newest = int(self.sql("SELECT coalesce(extract(epoch FROM max(event_ts))::bigint, 0) FROM ("
                                  + " UNION ALL ".join(f'SELECT event_ts FROM "{t}"' for t in tables) + ") t"))
            shift = int(time.time()) - seconds_ago - newest
            self.sql("; ".join(f'UPDATE "{t}" SET event_ts = event_ts + make_interval(secs => {shift}), '
                               f'created_ts = created_ts + make_interval(secs => {shift})' for t in tables))
        except BaseException:
            self.server.stop()
            raise

    def sql(self, text: str) -> str:
        """psql as `feast` on the server's Unix socket; the rows, unaligned."""
        return self.server.psql(self.database, text, user=self.user).strip()

    def feast_config(self) -> str:
        """Feast's PostgreSQLConfig keys (the postgres-store component takes them unchanged)."""
        keys = [("host", "127.0.0.1"), ("port", self.port), ("database", self.database), ("db_schema", "public"),
                ("user", self.user), ("password", self.password), ("sslmode", "disable")]
        return "".join(f"    {k}: {v}\n" for k, v in keys)

    def fresh_entities_since(self, since_us: int) -> int:
        """Entities of driver_hourly_stats_fresh stored with an event time >= since_us."""
        return int(self.sql(f'SELECT count(DISTINCT entity_key) FROM "{FRESH_TABLE}" '
                            f"WHERE event_ts >= to_timestamp({since_us} / 1e6)"))

    def script(self, repo: Path, payload: str) -> Path:
        """The pgbench script of a read payload (made once, checked against the data)."""
        if payload not in self.scripts:
            self.scripts[payload] = pgbench_script(self, repo, payload)
        return self.scripts[payload]

    def stop(self):
        self.server.stop()


def postgres_repo(work: Path, sqlite_repo: Path, pg: FeastPostgres) -> Path:
    """A copy of the repo whose online store is Feast's `type: postgres` on pg's database
    (feast serve reads it so; start_server gives ours postgres_component_repo of it)."""
    repo = work / "feature_repo_postgres"
    shutil.copytree(sqlite_repo, repo)
    write_store_config(repo, "    type: postgres\n" + pg.feast_config())
    return repo


PG_KEYS = ("host", "port", "database", "db_schema", "user", "password", "sslmode")


def is_postgres_repo(repo: Path) -> bool:
    return re.search(r"(?m)^    type: postgres$", (repo / "feature_store.yaml").read_text()) is not None


def postgres_component_repo(repo: Path, args) -> Path:
    """A copy of the PostgreSQL repo whose online store is the postgres-store component,
    Feast's keys under `config` (feast-server reads PostgreSQL only through it)."""
    dest = repo.parent / "feature_repo_postgres_wasm"
    if not dest.exists():
        shutil.copytree(repo, dest, ignore=shutil.ignore_patterns("gunicorn.ctl"))
        yaml = (repo / "feature_store.yaml").read_text()
        keys = {k: re.search(rf"(?m)^    {k}: (.*)$", yaml).group(1) for k in PG_KEYS}
        write_store_config(dest, f"    type: wasm\n    component: {args.postgres_store}\n"
                                 f"    allow: [\"{keys['host']}:{keys['port']}\"]\n    config:\n"
                                 + "".join(f"        {k}: {v}\n" for k, v in keys.items()))
    return dest


def feast_venv() -> str:
    """The pinned Feast's venv (demo/feast_venv.sh creates it once)."""
    return subprocess.run([str(ROOT / "demo" / "feast_venv.sh")], capture_output=True,
                          text=True, check=True).stdout.strip()


# Feast's serialize_entity_key (version 3) of each entity row of a payload, as its
# online read does; ints are Int64 values, strings String values.
SERIALIZE_KEYS = """
import json, sys
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
entities = json.load(sys.stdin)
names = list(entities)
value = lambda v: Value(string_val=v) if isinstance(v, str) else Value(int64_val=v)
for row in zip(*entities.values()):
    print(serialize_entity_key(EntityKey(join_keys=names, entity_values=[value(v) for v in row]), 3).hex())
"""


def floor_applies(payload: str) -> bool:
    """The floors issue a payload's view reads: not for ODFVs or feature services."""
    if payload.startswith("odfv") or is_push(payload):
        return False
    return "features" in json.loads((BENCH / "payloads" / f"{payload}.json").read_text())


def pgbench_script(pg: FeastPostgres, repo: Path, payload: str) -> Path:
    """The store reads of one request of `payload`, as the postgres-store component issues
    them: per view (features grouped by view, in the payload's order) one `SELECT entity_key,
    feature_name, value, event_ts FROM "<project>_<view>" WHERE entity_key = ANY(...) AND
    feature_name = ANY(...)` of the payload's unique entity keys (Feast's bytes, every entity
    column a join key of every view) and the view's features, as literal arrays; several
    views in one pipeline (one round trip). Each SELECT is run once first: it must find
    every key and feature (the demo stores all of them)."""
    body = json.loads((BENCH / "payloads" / f"{payload}.json").read_text())
    project = re.search(r"(?m)^project: (\S+)", (repo / "feature_store.yaml").read_text()).group(1)
    out = subprocess.run([f"{feast_venv()}/bin/python", "-c", SERIALIZE_KEYS], input=json.dumps(body["entities"]),
                         capture_output=True, text=True, check=True).stdout.split()
    keys = list(dict.fromkeys(out))
    views = {}
    for ref in body["features"]:
        view, feature = ref.split(":", 1)
        views.setdefault(view, [])
        if feature not in views[view]:
            views[view].append(feature)
    key_array = "ARRAY[" + ",".join(f"'\\x{k}'" for k in keys) + "]::bytea[]"
    selects = []
    for view, features in views.items():
        feature_array = "ARRAY[" + ",".join("'" + f.replace("'", "''") + "'" for f in features) + "]::text[]"
        select = (f'SELECT entity_key, feature_name, value, event_ts FROM "{project}_{view}" '
                  f"WHERE entity_key = ANY({key_array}) AND feature_name = ANY({feature_array})")
        found = int(pg.sql(f"SELECT count(*) FROM ({select}) q"))
        if found != len(keys) * len(features):
            print(f"# WARNING floor/postgres {payload}: {view} has {found} rows of {len(keys)} keys x "
                  f"{len(features)} features", file=sys.stderr)
        selects.append(select + ";")
    lines = ["\\startpipeline", *selects, "\\endpipeline"] if len(selects) > 1 else selects
    path = pg.server.dir / f"pgbench-{payload}.sql"
    path.write_text("\n".join(lines) + "\n")
    print(f"# floor/postgres {payload}: {len(selects)} SELECT(s) of {len(keys)} unique keys per transaction",
          file=sys.stderr)
    return path


def run_pgbench(pg: FeastPostgres, script: Path, conns, duration):
    """pgbench (prepared statements, over TCP as `feast`, as the servers connect) running
    `script` from `conns` clients for `duration` s; p50/p99 of the per-transaction
    latencies it logs (--log), req/s its tps without the initial connection time."""
    threads = 1 if conns < 2 else 2
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as logs:
        proc = subprocess.run(
            [postgres_bin("pgbench"), "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-M", "prepared",
             "-c", str(conns), "-j", str(threads), "-T", str(duration), "-f", str(script), "--log",
             f"--log-prefix={logs}/tx", pg.database],
            env={**os.environ, "PGPASSWORD": pg.password, "PGSSLMODE": "disable"},
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench exited {proc.returncode}:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        lat, failed = [], 0
        for f in Path(logs).iterdir():
            for line in f.read_text().splitlines():
                # client_id transaction_no time(us) script_no time_epoch time_us
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    lat.append(int(fields[2]))
                else:
                    failed += 1
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", proc.stdout, re.M)
    reported = re.search(r"^number of failed transactions: (\d+)", proc.stdout, re.M)
    if tps is None or not lat:
        raise RuntimeError("pgbench output not understood:\n" + proc.stdout + proc.stderr)
    lat.sort()
    pct = lambda p: lat[int((len(lat) - 1) * p)]  # noqa: E731 - as store_floor computes them
    return {"rps": float(tps.group(1)), "p50": pct(0.5), "p99": pct(0.99),
            "errors": max(failed, int(reported.group(1)) if reported else 0)}


def run_grpc_load(args, port, payload, conns, duration):
    load = args.server_bin.parent / "examples" / "grpc_load"
    out = subprocess.run([str(load), f"127.0.0.1:{port}", str(BENCH / "payloads" / f"{payload}.json"),
                          str(conns), str(duration)], capture_output=True, text=True, check=True).stdout
    res = dict(kv.split("=") for kv in out.split())
    return {"rps": float(res["rps"]), "p50": float(res["p50_us"]), "p99": float(res["p99_us"]),
            "errors": int(res["errors"])}


def run_floor(args, store, repo, redis_port, payload, conns, duration):
    if store == "postgres":
        return run_pgbench(args.pg, args.pg.script(repo, payload), conns, duration)
    floor = args.server_bin.parent / "examples" / "store_floor"
    target = f"127.0.0.1:{redis_port}" if store == "redis" else str(repo / "data" / "online_store.db")
    out = subprocess.run([str(floor), store, target, str(BENCH / "payloads" / f"{payload}.json"),
                          str(conns), str(duration)], capture_output=True, text=True, check=True).stdout
    res = dict(kv.split("=") for kv in out.split())
    return {"rps": float(res["rps"]), "p50": float(res["p50_us"]), "p99": float(res["p99_us"]), "errors": 0}


def start_http_floor(ours, payloads, args, work: Path, store=None, target=None):
    """The HTTP floor, replaying the responses `ours` gives to `payloads`; given a store
    (sqlite or redis) and its target, the HTTP-and-store floor, which also makes each
    payload's store reads before answering."""
    responses = work / "http-floor-responses"
    responses.mkdir(exist_ok=True)
    for payload in payloads:
        if is_push(payload) or (responses / f"{payload}.json").exists():
            continue
        body = (BENCH / "payloads" / f"{payload}.json").read_bytes()
        status, resp_body = http("POST", ours.url + "/get-online-features", body, timeout=30)
        if status == 200:
            (responses / f"{payload}.json").write_bytes(resp_body)
    port = free_port()
    argv = [str(args.server_bin.parent / "examples" / "http_floor"), str(port), str(responses)]
    if store is None:
        return Server("http-floor", argv, cwd=work, port=port)
    return Server("http-store-floor", [*argv, store, target, str(BENCH / "payloads")], cwd=work, port=port)


class OidcIssuer:
    """The tests' OIDC issuer (HTTPS on a free port), until stop()."""

    def __init__(self, binary: Path):
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.info = json.loads(self.proc.stdout.readline())

    def token(self, user="alice") -> str:
        """A fresh token from the password grant (valid 5 minutes)."""
        import ssl
        import urllib.parse
        ctx = ssl.create_default_context(cafile=self.info["ca_cert"])
        token_url = self.info["discovery_url"].rsplit("/.well-known", 1)[0] + "/token"
        form = urllib.parse.urlencode({"grant_type": "password", "client_id": self.info["client_id"],
                                       "client_secret": self.info["client_secret"], "username": user,
                                       "password": f"{user}pw"}).encode()
        with urllib.request.urlopen(token_url, data=form, context=ctx, timeout=10) as resp:
            return json.loads(resp.read())["access_token"]

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def auth_headers(kind, args):
    """The headers a load of `kind` sends: a fresh bearer token for ours-oidc."""
    return (f"Authorization: Bearer {args.issuer.token()}",) if kind == "ours-oidc" else ()


def oidc_repo(repo: Path, issuer: OidcIssuer) -> Path:
    """A copy of `repo` whose server trusts the issuer and whose registry holds one
    permission (feature views, READ_ONLINE, role `reader`, which the issuer gives alice)."""
    dest = repo.parent / f"{repo.name}_oidc"
    if not dest.exists():
        shutil.copytree(repo, dest, ignore=shutil.ignore_patterns("gunicorn.ctl"))
        # Registry field 16 (permissions): Permission{spec: PermissionSpec{name, project,
        # types [FEATURE_VIEW], actions [READ_ONLINE], policy: {role_based_policy: {roles: [reader]}}}}.
        def field(num, payload: bytes) -> bytes:
            return bytes([num << 3 | 2, len(payload)]) + payload
        policy = field(3, field(1, b"reader"))
        spec = field(1, b"readers") + field(2, b"repo") + field(3, b"\x00") + field(6, b"\x04") + field(7, policy)
        registry = (dest / "data" / "registry.db").read_bytes()
        record = field(1, spec)
        (dest / "data" / "registry.db").write_bytes(registry + bytes([0x82, 0x01, len(record)]) + record)
        yaml = (dest / "feature_store.yaml").read_text()
        yaml = re.sub(r"(?m)^auth:\n(?:[ \t]+.*\n?)*", "", yaml)
        (dest / "feature_store.yaml").write_text(
            yaml.rstrip("\n") + "\nauth:\n  type: oidc\n  client_id: {client_id}\n  auth_discovery_url: {discovery_url}\n"
            "  ca_cert_path: {ca_cert}\n".format(**issuer.info))
    return dest


def wasm_store_repo(repo: Path, args) -> Path:
    """A copy of the Redis repo whose online store is the redis-store component."""
    dest = repo.parent / "feature_repo_wasm_redis"
    if not dest.exists():
        shutil.copytree(repo, dest)
        addr = re.search(r'connection_string: "([^"]+)"', (repo / "feature_store.yaml").read_text()).group(1)
        write_store_config(dest, f"    type: wasm\n    component: {args.redis_store}\n    allow: [\"{addr}\"]\n"
                                 f"    config:\n        connection_string: \"{addr}\"\n")
    return dest


def start_server(kind, repo, args):
    port = free_port()
    if kind.startswith("ours") and is_postgres_repo(repo):
        repo = postgres_component_repo(repo, args)
    if kind == "wasm-redis":
        repo = wasm_store_repo(repo, args)
        kind = "ours"
    if kind == "ours-oidc":
        repo = oidc_repo(repo, args.issuer)
        kind = "ours"
    if kind in args.others:
        argv = [a.format(repo=repo, yaml=repo / "feature_store.yaml", port=port)
                for a in shlex.split(args.others[kind])]
        return Server(kind, argv, cwd=repo, port=port, env={"RUST_LOG": "warn"})
    if kind == "ours":
        return Server(kind, [str(args.server_bin), "-c", str(repo), "serve", "-p", str(port),
                               "--plugins", str(args.plugins)],
                      cwd=repo, port=port, env={"RUST_LOG": "warn"})
    if kind == "ours-grpc":
        # Started once its metrics listener answers (gRPC mode serves no HTTP API).
        metrics_port = free_port()
        return Server("ours-grpc", [str(args.server_bin), "-c", str(repo), "serve", "-p", str(port), "-t", "grpc",
                                    "--metrics-port", str(metrics_port), "--plugins", str(args.plugins)],
                      cwd=repo, port=port, env={"RUST_LOG": "warn"}, health_url=f"http://127.0.0.1:{metrics_port}/metrics")
    venv = feast_venv()
    extra = ["--workers", "2"] if kind == "python-w2" else []
    return Server(kind, [f"{venv}/bin/feast", "-c", str(repo), "serve", "-p", str(port),
                         "--no-access-log", "--max-requests", "0", *extra],
                  cwd=repo, port=port,
                  env={"PYTHONHASHSEED": "0", "GUNICORN_CMD_ARGS": f"--control-socket {repo}/gunicorn.ctl"})


def build_store_component(package: str) -> Path:
    """A store component (plugins/<package>), built for wasm32-wasip2 as the server loads
    it, and copied out at once: the server hot-swaps a component whose file changes, and
    the tests build other versions into the same target directory."""
    target = cargo_target_dir() / "plugins"
    subprocess.run(["cargo", "build", "--profile", "plugin", "--target", "wasm32-wasip2", "-p", package,
                    "--target-dir", str(target)], cwd=ROOT, check=True)
    name = f"{package.replace('-', '_')}.wasm"
    dest = Path(tempfile.mkdtemp(prefix="bench-components-")) / name
    shutil.copy(target / "wasm32-wasip2" / "plugin" / name, dest)
    return dest


def cargo_target_dir():
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                                     capture_output=True, check=True).stdout)
    return Path(meta["target_directory"])


def main():
    global PIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=None,
                    help="default: ours,python,floor (--reads-while-pushing: ours)")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--payloads", default=None,
                    help="default: p1_1x3,p10_10x5,p100_100x3,odfv_10x4; write path: push_1,push_10,push_100 "
                         "(--reads-while-pushing: the read payload, p1_1x3)")
    ap.add_argument("--conns", default=None, help="default: 8,32 (--reads-while-pushing: 8)")
    ap.add_argument("--reads-while-pushing", action="store_true",
                    help="p99 of reads without and with a concurrent push load, alternating over --rounds")
    ap.add_argument("--push-rate", type=float, default=100, help="--reads-while-pushing: push requests/s")
    ap.add_argument("--push-payload", default="push_10", help="--reads-while-pushing: push template")
    ap.add_argument("--push-threads", type=int, default=2,
                    help="--reads-while-pushing: pushing threads (one keep-alive connection each)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1,
                    help="loads per server and case, interleaved across servers (medians are reported)")
    ap.add_argument("--quick", action="store_true", help="2 s per case, 1 s warm-up, 8 connections only")
    ap.add_argument("--pin", action="store_true",
                    help="servers on CPU 0 (so one serving thread), wrk with one thread on CPU 1: "
                         "the server's cost without the load generator on its cores")
    ap.add_argument("--server-bin", type=Path, default=None,
                    help="feast-server binary (its directory must hold examples/store_floor and grpc_load)")
    ap.add_argument("--dev", action="store_true", help="use the dev build (quick checks; not for figures)")
    ap.add_argument("--plugins", type=Path, default=None, help="Wasm plugin directory (default: build the demo's)")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "latest")
    ap.add_argument("--other", action="append", default=[], metavar="NAME=COMMAND",
                    help="another server of Feast's HTTP API, loaded like the others: COMMAND "
                         "starts it ({repo}: the feature repository, {yaml}: its feature_store.yaml, "
                         "{port}: its port; it must answer GET /health); repeatable")
    args = ap.parse_args()
    args.others = {}
    for spec in args.other:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command or name in COLORS:
            sys.exit(f"--other {spec!r}: expected NAME=COMMAND with a new NAME")
        args.others[name] = command
    rwp = args.reads_while_pushing
    args.servers = args.servers or ("ours" if rwp else "ours,python,floor")
    args.servers = ",".join([*args.servers.split(","), *(n for n in args.others if n not in args.servers.split(","))])
    args.payloads = args.payloads or ("p1_1x3" if rwp else ",".join(PAYLOADS))
    args.conns = args.conns or ("8" if rwp else "8,32")
    if args.quick:
        args.duration, args.warmup, args.conns = 2, 1, "8"
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None:
            sys.exit("--pin needs 2 CPUs and taskset (util-linux)")
        PIN = ("0", "1")
    if args.server_bin is None:
        # Always build (a no-op when up to date), so a stale binary is never measured.
        profile = "dev" if args.dev else "release"
        # The workspace's features, as the test build resolves them: after tests/run.sh
        # the dev binaries are up to date and nothing is compiled again.
        subprocess.run(["cargo", "build", "--profile", profile, "--workspace", "--bins", "--examples"],
                       cwd=ROOT, check=True)
        args.server_bin = cargo_target_dir() / ("debug" if args.dev else "release") / "feast-server"
    if args.plugins is None:
        # The demo's on-demand feature views run as this Wasm plugin.
        target = cargo_target_dir() / "plugins"
        subprocess.run(["cargo", "build", "--profile", "plugin", "--target", "wasm32-wasip2", "-p",
                        "transformed-conv-rate", "--target-dir", str(target)], cwd=ROOT, check=True)
        args.plugins = Path(tempfile.mkdtemp(prefix="bench-plugins-"))
        shutil.copy(target / "wasm32-wasip2" / "plugin" / "transformed_conv_rate.wasm", args.plugins)
    servers = args.servers.split(",")
    stores = args.stores.split(",")
    if any(s not in STORES for s in stores):
        sys.exit(f"unknown store in {args.stores}: the stores are {', '.join(STORES)}")
    if "wasm-redis" in servers:
        # The Redis-layout store component, as the server loads it.
        args.redis_store = build_store_component("redis-store")
    if "postgres" in stores and any(s.startswith("ours") or s == "http-floor" for s in servers):
        # Feast's PostgreSQL layout: feast-server reads PostgreSQL through this component.
        args.postgres_store = build_store_component("postgres-store")
    payloads = [p for p in args.payloads.split(",") if p]
    conns = [int(c) for c in args.conns.split(",")]
    for payload in payloads + ([args.push_payload] if rwp else []):
        if not payload_path(payload).exists():
            sys.exit(f"unknown payload {payload}: no {payload_path(payload)}")
    if rwp:
        servers = [s for s in servers if s in PUSH_SERVERS]
        if not servers or any(is_push(p) for p in payloads) or not is_push(args.push_payload):
            sys.exit("--reads-while-pushing needs HTTP servers (ours, python, python-w2), read --payloads "
                     "and a push --push-payload")
    args.out.mkdir(parents=True, exist_ok=True)
    args.issuer = OidcIssuer(args.server_bin.parent / "test_oidc_issuer") if "ours-oidc" in servers else None
    args.answer_diffs = []

    rows = []
    with tempfile.TemporaryDirectory(prefix="feast-bench-") as tmp:
        sqlite_repo = copy_demo_repo(Path(tmp) / "feature_repo")
        if any(k.startswith("ours") for k in servers):
            # The first start compiles the plugin into the on-disk cache (a second or two of
            # Cranelift); the figures below are for normal restarts.
            warm = start_server("ours", sqlite_repo, args)
            print(f"# ours: first start (plugin compiled) healthy after {warm.startup_s:.2f} s, "
                  f"idle RSS {warm.idle_rss_mb:.0f} MB", file=sys.stderr)
            warm.stop()
        for store in stores:
            redis = RedisProcess(Path(tmp)) if store == "redis" else None
            args.pg = FeastPostgres(Path(tmp)) if store == "postgres" else None
            if redis:
                repo = redis_repo(Path(tmp), sqlite_repo, redis.port)
            elif args.pg:
                repo = postgres_repo(Path(tmp), sqlite_repo, args.pg)
            else:
                repo = sqlite_repo
            try:
                if args.pg and any(k.startswith("ours") for k in servers):
                    # The same for the store component, on its first start.
                    warm = start_server("ours", repo, args)
                    print(f"# ours/postgres: first start (store component compiled) healthy after "
                          f"{warm.startup_s:.2f} s", file=sys.stderr)
                    warm.stop()
                if rwp:
                    rows += reads_while_pushing(store, repo, redis.port if redis else 0, args, servers,
                                                payloads[0], conns)
                else:
                    rows += bench_store(store, repo, redis.port if redis else 0, args, servers, payloads, conns)
            finally:
                if redis:
                    redis.stop()
                if args.pg:
                    args.pg.stop()

    if args.issuer:
        args.issuer.stop()
    if rwp:
        write_rwp_results(rows, args.out)
    else:
        write_results(rows, servers, args.out)
    for diff in args.answer_diffs:
        print(f"# WARNING answers differ: {diff}", file=sys.stderr)


def row_of(kind, store, payload, conns, r, cpu, srv):
    row = {
        "server": kind, "store": store, "payload": payload, "kind": "push" if is_push(payload) else "read",
        "conns": conns, "rps": round(r["rps"], 1), "p50_ms": round(r["p50"] / 1000, 3),
        "p99_ms": round(r["p99"] / 1000, 3), "errors": int(r["errors"]),
        "cpu_pct": "" if cpu is None else round(cpu), "rss_mb": "" if srv is None else round(rss_mb(srv.proc.pid)),
        "startup_s": "" if srv is None else round(srv.startup_s, 3),
        "idle_rss_mb": "" if srv is None else round(srv.idle_rss_mb),
    }
    if "rows_per_request" in r:
        row.update(rows_per_request=r["rows_per_request"], rows_s=round(r["rows_s"], 1),
                   written=r["written"], expected=r["expected"], written_unit=r["written_unit"],
                   written_pct=round(100 * r["written"] / r["expected"], 1) if r["expected"] else "")
    return row


def measure_push(srv, store, repo, redis_port, args, payload, c):
    """One push load, and what the store shows it wrote."""
    rows = template_rows(payload_path(payload).read_text())
    before = write_snapshot(store, redis_port)
    r = run_wrk(srv.url, payload, c, args.duration)
    acked = int(r["requests"] - r.get("errors_status", 0))
    r["rows_per_request"] = rows
    r["rows_s"] = acked * rows / (r["duration_us"] / 1e6)
    r["written"], r["expected"], r["written_unit"] = written_check(
        store, repo, redis_port, before, r["ts_base_us"], acked * rows, int(r["blocks_used"]) * rows, pg=args.pg)
    if r["written"] < r["expected"]:
        print(f"# WARNING {srv.name}/{store} {payload}: the store shows {r['written']} {r['written_unit']} "
              f"written of {r['expected']}", file=sys.stderr)
    return r


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def measure(kind, srv, store, repo, redis_port, args, payload, c):
    """One timed load of one server (or of the store floor) on one case."""
    if kind == "floor":
        return row_of(kind, store, payload, c, run_floor(args, store, repo, redis_port, payload, c, args.duration),
                      None, None)
    t0, c0 = time.monotonic(), cpu_ticks(srv.proc.pid)
    if kind == "ours-grpc":
        r = run_grpc_load(args, srv.port, payload, c, args.duration)
    elif is_push(payload):
        r = measure_push(srv, store, repo, redis_port, args, payload, c)
    elif kind in HTTP_FLOORS:
        r = run_wrk(srv.url, payload, c, args.duration, f"/replay/{payload}")
    else:
        r = run_wrk(srv.url, payload, c, args.duration, headers=auth_headers(kind, args))
    cpu = (cpu_ticks(srv.proc.pid) - c0) / CLK_TCK / (time.monotonic() - t0) * 100
    return row_of(kind, store, payload, c, r, cpu, srv)


def bench_store(store, repo, redis_port, args, servers, payloads, conns):
    """Every server of one store runs at once; each case loads them one after the other,
    `--rounds` times in rotating order, so servers compared in a case were measured
    minutes apart at most. A case's row is its median round; its ratios are the medians
    of the ratios within each round."""
    running = {}
    rows = []
    try:
        for kind in servers:
            if kind == "wasm-redis" and store != "redis":
                continue
            if kind not in FLOORS:
                running[kind] = start_server(kind, repo, args)
                print(f"# {kind}/{store}: healthy after {running[kind].startup_s:.2f} s, "
                      f"idle RSS {running[kind].idle_rss_mb:.0f} MB", file=sys.stderr)
        if "http-floor" in servers:
            if "ours" not in running:
                sys.exit("http-floor replays the answers of ours: add ours to --servers")
            running["http-floor"] = start_http_floor(running["ours"], payloads, args, repo.parent)
        if "http-store-floor" in servers and store in ("sqlite", "redis"):
            if "ours" not in running:
                sys.exit("http-store-floor replays the answers of ours: add ours to --servers")
            target = f"127.0.0.1:{redis_port}" if store == "redis" else str(repo / "data" / "online_store.db")
            running["http-store-floor"] = start_http_floor(running["ours"], payloads, args, repo.parent,
                                                           store, target)
        for payload in payloads:
            # Servers not started on this store (wasm-redis off Redis) have no rows.
            # The store floors make a payload's view reads: not for ODFVs or feature services.
            started = [k for k in servers if k == "floor" or k in running]
            kinds = [k for k in started if k not in STORE_FLOORS or floor_applies(payload)]
            if is_push(payload):
                kinds = [k for k in kinds if k in PUSH_SERVERS]
            reference = reference_kind = None
            for kind in list(kinds):
                srv = running.get(kind)
                if srv is None:
                    continue
                if is_push(payload):
                    # One push of the load's first block: it must be accepted.
                    ts = next_ts_base()
                    body = render_push(payload_path(payload).read_text(), PUSH_ID_BASE, ts)
                    note_ts(ts)
                    status, resp_body = http("POST", srv.url + "/push", body, timeout=30)
                    if not 200 <= status < 300:
                        print(f"# {kind} {payload}: HTTP {status}: {resp_body[:300]!r}; skipped", file=sys.stderr)
                        kinds.remove(kind)
                        continue
                    run_wrk(srv.url, payload, conns[0], args.warmup)
                    continue
                if kind == "ours-grpc":
                    run_grpc_load(args, srv.port, payload, conns[0], args.warmup)
                    continue
                if kind in HTTP_FLOORS:
                    run_wrk(srv.url, payload, conns[0], args.warmup, f"/replay/{payload}")
                    continue
                body = (BENCH / "payloads" / f"{payload}.json").read_bytes()
                status, resp_body = http("POST", srv.url + "/get-online-features", body, timeout=30,
                                         headers=auth_headers(kind, args))
                if status != 200:
                    print(f"# {kind} {payload}: HTTP {status}: {resp_body[:300]!r}; skipped", file=sys.stderr)
                    kinds.remove(kind)
                    continue
                cols = columns(resp_body)
                if reference is not None and reference != cols:
                    diff = f"{kind}/{store} {payload}: against {reference_kind}: {column_diff(reference, cols)}"
                    print(f"# WARNING answer differs: {diff}", file=sys.stderr)
                    args.answer_diffs.append(diff)
                if reference is None:
                    reference, reference_kind = cols, kind
                run_wrk(srv.url, payload, conns[0], args.warmup, headers=auth_headers(kind, args))
            if "ours" not in kinds:
                # The HTTP floors replay ours' answer: there is none to replay.
                kinds = [k for k in kinds if k not in HTTP_FLOORS]
            if not kinds:
                continue
            for c in conns:
                samples = {k: [] for k in kinds}
                for rnd in range(args.rounds):
                    order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
                    for kind in order:
                        row = measure(kind, running.get(kind), store, repo, redis_port, args, payload, c)
                        samples[kind].append(row)
                        print(f"round={rnd} " + "  ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
                for kind, rs in samples.items():
                    mid = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
                    row = dict(mid, rounds=len(rs))
                    if kind == "wasm-redis" and samples.get("ours"):
                        row["wasm/native"] = round(median(
                            [o["rps"] / p["rps"] for o, p in zip(rs, samples["ours"]) if p["rps"]]), 3)
                        row["added_us_p50"] = round(median(
                            [(o["p50_ms"] - p["p50_ms"]) * 1000 for o, p in zip(rs, samples["ours"])]), 1)
                    if kind == "ours-oidc" and samples.get("ours"):
                        row["oidc/no_auth"] = round(median(
                            [o["rps"] / p["rps"] for o, p in zip(rs, samples["ours"]) if p["rps"]]), 3)
                    if kind == "ours":
                        for other in ("python", *FLOORS, *args.others):
                            if samples.get(other):
                                row[f"ours/{other}"] = round(median(
                                    [o["rps"] / p["rps"] for o, p in zip(rs, samples[other]) if p["rps"]]), 2)
                        if samples.get("floor") and samples.get("http-floor"):
                            # What a server doing nothing but the HTTP exchange and the
                            # store reads would reach if their costs simply added up.
                            row["ours/bound"] = round(median(
                                [o["rps"] * (1 / h["rps"] + 1 / f["rps"])
                                 for o, h, f in zip(rs, samples["http-floor"], samples["floor"])
                                 if h["rps"] and f["rps"]]), 2)
                            # That server against the store floor: the most any server
                            # could reach of the floor here.
                            row["bound/floor"] = round(median(
                                [h["rps"] / (h["rps"] + f["rps"])
                                 for h, f in zip(samples["http-floor"], samples["floor"])
                                 if h["rps"] and f["rps"]]), 2)
                    rows.append(row)
    finally:
        for srv in running.values():
            srv.stop()
    return rows


class Pusher:
    """A background push load: `threads` threads, each on its own keep-alive connection,
    sending `rate / threads` push requests per second (paced on a fixed schedule; a late
    thread catches up within a second, then drops the backlog). Each thread writes its
    own entity blocks with increasing event times above next_ts_base()."""

    def __init__(self, port, payload, rate, threads):
        self.port, self.rate, self.nthreads = port, rate, threads
        self.template = payload_path(payload).read_text()
        self.rows = template_rows(self.template)
        self.base_us = next_ts_base()
        self.stop_event = threading.Event()
        self.sent, self.ok, self.errors, self.latencies = 0, 0, 0, []
        self.blocks_used, self.last_ts = 0, self.base_us
        self.lock = threading.Lock()
        self.failure = None
        self.threads = [threading.Thread(target=self._guarded, args=(t,), daemon=True) for t in range(threads)]

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def _guarded(self, tid):
        try:
            self._run(tid)
        except BaseException as e:  # noqa: BLE001 - re-raised by stop()
            self.failure = e
            self.stop_event.set()

    def _run(self, tid):
        interval = self.nthreads / self.rate
        conn, last, i, lat, blocks = None, self.base_us, 0, [], set()
        next_t = time.monotonic() + tid * interval / self.nthreads
        while not self.stop_event.is_set():
            delay = next_t - time.monotonic()
            if delay > 0:
                if self.stop_event.wait(delay):
                    break
            elif delay < -1:
                next_t = time.monotonic()
            next_t += interval
            ts = max(time.time_ns() // 1000, last + 1)
            last = ts
            block = tid + self.nthreads * (i % PUSHER_BLOCKS)
            blocks.add(block)
            body = render_push(self.template, PUSHER_ID_BASE + block * self.rows, ts)
            i += 1
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/push", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                good = 200 <= resp.status < 300
            except (OSError, HTTPException):
                good = False
                if conn is not None:
                    conn.close()
                conn = None
            lat.append(time.monotonic() - t0)
            with self.lock:
                self.sent += 1
                self.ok += good
                self.errors += not good
        if conn is not None:
            conn.close()
        with self.lock:
            self.latencies += lat
            self.blocks_used += len(blocks)
            self.last_ts = max(self.last_ts, last)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join()
        elapsed = time.monotonic() - self.t0
        note_ts(self.last_ts)
        if self.failure is not None:
            raise RuntimeError("push load failed") from self.failure
        if self.sent < 0.9 * self.rate * elapsed:
            print(f"# WARNING the push load reached {self.sent / elapsed:.0f} of {self.rate:.0f} requests/s",
                  file=sys.stderr)
        lat = sorted(self.latencies) or [0.0]
        return {"push_req_s": self.sent / elapsed, "push_rows_s": self.ok * self.rows / elapsed,
                "push_errors": self.errors, "push_p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
                "acked_rows": self.ok * self.rows, "sent_entities": self.blocks_used * self.rows}


def reads_while_pushing(store, repo, redis_port, args, servers, payload, conns):
    """For each server and connection count: the read payload's latency without and with
    the Pusher's load, the two conditions alternating (one order, then the other) over
    --rounds; one row per round and a median row."""
    rows = []
    for kind in servers:
        srv = start_server(kind, repo, args)
        print(f"# {kind}/{store}: healthy after {srv.startup_s:.2f} s", file=sys.stderr)
        try:
            body = (BENCH / "payloads" / f"{payload}.json").read_bytes()
            status, resp_body = http("POST", srv.url + "/get-online-features", body, timeout=30)
            if status != 200:
                print(f"# {kind} {payload}: HTTP {status}: {resp_body[:300]!r}; skipped", file=sys.stderr)
                continue
            for c in conns:
                # Warm-up with the pushes on: the first write also puts SQLite in WAL mode,
                # so both conditions read the same kind of database.
                pusher = Pusher(srv.port, args.push_payload, args.push_rate, args.push_threads).start()
                run_wrk(srv.url, payload, c, args.warmup)
                warm = pusher.stop()
                if warm["push_errors"]:
                    print(f"# WARNING {kind}/{store}: {warm['push_errors']} push errors in the warm-up",
                          file=sys.stderr)
                rounds = []
                for rnd in range(args.rounds):
                    got = {}
                    for cond in (("without", "with") if rnd % 2 == 0 else ("with", "without")):
                        if cond == "without":
                            got[cond] = run_wrk(srv.url, payload, c, args.duration)
                            continue
                        before = write_snapshot(store, redis_port)
                        pusher = Pusher(srv.port, args.push_payload, args.push_rate, args.push_threads).start()
                        time.sleep(0.5)  # the push load in its stride before the reads start
                        r = run_wrk(srv.url, payload, c, args.duration)
                        r.update(pusher.stop())
                        r["written"], r["expected"], r["written_unit"] = written_check(
                            store, repo, redis_port, before, pusher.base_us, r["acked_rows"], r["sent_entities"],
                            pg=args.pg)
                        if r["written"] < r["expected"]:
                            print(f"# WARNING {kind}/{store}: the store shows {r['written']} {r['written_unit']} "
                                  f"written of {r['expected']}", file=sys.stderr)
                        got[cond] = r
                    wo, w = got["without"], got["with"]
                    row = {
                        "server": kind, "store": store, "payload": payload, "conns": c, "round": rnd,
                        "p99_without_ms": round(wo["p99"] / 1000, 3), "p99_with_ms": round(w["p99"] / 1000, 3),
                        "p99_ratio": round(w["p99"] / wo["p99"], 2) if wo["p99"] else "",
                        "p50_without_ms": round(wo["p50"] / 1000, 3), "p50_with_ms": round(w["p50"] / 1000, 3),
                        "rps_without": round(wo["rps"], 1), "rps_with": round(w["rps"], 1),
                        "read_errors": int(wo["errors"] + w["errors"]),
                        "push_rows_s": round(w["push_rows_s"], 1), "push_errors": w["push_errors"],
                        "push_p99_ms": round(w["push_p99_ms"], 2),
                        "written": w["written"], "expected": w["expected"], "written_unit": w["written_unit"],
                    }
                    print("  ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
                    rounds.append(row)
                    rows.append(row)
                med = {k: median([r[k] for r in rounds]) for k in
                       ("p99_without_ms", "p99_with_ms", "p99_ratio", "p50_without_ms", "p50_with_ms",
                        "rps_without", "rps_with", "push_rows_s", "push_p99_ms")
                       if all(r[k] != "" for r in rounds)}
                rows.append({"server": kind, "store": store, "payload": payload, "conns": c, "round": "median",
                             **{k: round(v, 3) for k, v in med.items()},
                             "read_errors": sum(r["read_errors"] for r in rounds),
                             "push_errors": sum(r["push_errors"] for r in rounds),
                             "written": sum(r["written"] for r in rounds), "expected": sum(r["expected"] for r in rounds),
                             "written_unit": rounds[0]["written_unit"]})
        finally:
            srv.stop()
    return rows


def write_rwp_results(rows, out: Path):
    """reads_while_pushing.csv and reads_while_pushing.md."""
    with open(out / "reads_while_pushing.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r)) or ["server"]
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    head = ["store", "server", "payload", "conns", "round", "p99 without ms", "p99 with ms", "with/without",
            "p50 without ms", "p50 with ms", "req/s without", "req/s with", "pushed rows/s", "push p99 ms",
            "errors (reads, pushes)", "written"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in [
            r["store"], r["server"], r["payload"], r["conns"], r["round"],
            r.get("p99_without_ms", ""), r.get("p99_with_ms", ""),
            f"{r['p99_ratio']:.2f}x" if r.get("p99_ratio", "") != "" else "",
            r.get("p50_without_ms", ""), r.get("p50_with_ms", ""),
            f"{r['rps_without']:.0f}" if "rps_without" in r else "", f"{r['rps_with']:.0f}" if "rps_with" in r else "",
            f"{r['push_rows_s']:.0f}" if "push_rows_s" in r else "", r.get("push_p99_ms", ""),
            f"{r['read_errors']}, {r['push_errors']}",
            f"{r['written']}/{r['expected']} {r['written_unit']}"]) + " |")
    lines += ["", "Reads: wrk, closed loop. Pushes: the background load of the `with` condition. with/without: the "
              "p99 ratio (target: below 2x). written: Redis HSET calls during the `with` loads over the rows "
              "acknowledged, or SQLite/PostgreSQL entities stored with their event times over the entities "
              "pushed."]
    table = "\n".join(lines)
    (out / "reads_while_pushing.md").write_text(table + "\n")
    print(table)
    print(f"\nresults: {out}/reads_while_pushing.csv, {out}/reads_while_pushing.md", file=sys.stderr)


def write_results(rows, servers, out: Path):
    """results.csv, table.md (one table) and chart.svg."""
    with open(out / "results.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r)) or ["server"]
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    by_key = {(r["server"], r["store"], r["payload"], r["conns"]): r for r in rows}

    def ratio(r, other):
        if r["server"] != "ours":
            return ""
        # Ratios below 1 (against a floor) need two decimals to be read.
        def fmt(x):
            return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"
        if r.get(f"ours/{other}"):
            return fmt(r[f"ours/{other}"])
        o = by_key.get((other, r["store"], r["payload"], r["conns"]))
        return fmt(r["rps"] / o["rps"]) if o and o["rps"] else ""

    others = [s for s in servers if s not in COLORS]
    head = ["store", "payload", "conns", "server", "req/s", "rows/s", "p50 ms", "p99 ms", "errors", "CPU %",
            "CPU µs/req", "RSS MB", "written", "ours/python", "ours/floor", "ours/http-floor", "ours/bound",
            "ours/http-store-floor",
            "bound/floor", "oidc/no_auth", "wasm/native", "added µs p50", *(f"ours/{o}" for o in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {s: i for i, s in enumerate(servers)}
    # Reads first, then the pushes (POST /push), each group by store, payload, conns.
    for r in sorted(rows, key=lambda r: (is_push(r["payload"]), r["store"], r["payload"], r["conns"],
                                         order.get(r["server"], 99))):
        written = f"{r['written_pct']}% of {r['expected']} {r['written_unit']}" if r.get("written_unit") else ""
        lines.append("| " + " | ".join([
            r["store"], r["payload"], str(r["conns"]), r["server"], f"{r['rps']:.0f}",
            f"{r['rows_s']:.0f}" if r.get("rows_s", "") != "" else "",
            f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["errors"]), str(r["cpu_pct"]),
            f"{r['cpu_pct'] * 1e4 / r['rps']:.0f}" if r.get("cpu_pct", "") != "" and r["rps"] else "",
            str(r["rss_mb"]),
            written, ratio(r, "python"), ratio(r, "floor"), ratio(r, "http-floor"), ratio(r, "bound"),
            ratio(r, "http-store-floor"),
            f"{r['bound/floor']:.2f}x" if r.get("bound/floor") else "",
            f"{r['oidc/no_auth']:.3f}" if r.get("oidc/no_auth") else "",
            f"{r['wasm/native']:.3f}" if r.get("wasm/native") else "",
            f"{r['added_us_p50']:.0f}" if r.get("added_us_p50", "") != "" else "",
            *(ratio(r, o) for o in others)]) + " |")
    if any(is_push(r["payload"]) for r in rows):
        lines += ["", "push_N: POST /push of N rows with fresh event times; rows/s = 2xx answers x N; errors "
                  "include non-2xx answers; written: Redis HSET calls during the load over the rows "
                  "acknowledged, or SQLite/PostgreSQL entities stored with this load's event times over the "
                  "entities it sent."]
    lines += ["", "| server | start-up to first 200 | idle RSS MB | max RSS under load MB |", "|---|---|---|---|"]
    for s in servers:
        rs = [r for r in rows if r["server"] == s and r["startup_s"] != ""]
        if rs:
            lines.append(f"| {s} | {rs[0]['startup_s']:.2f} s | {rs[0]['idle_rss_mb']} | "
                         f"{max(r['rss_mb'] for r in rs)} |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    (out / "chart.svg").write_text(svg_chart(rows, servers))
    print(table)
    print(f"\nresults: {out}/results.csv, {out}/table.md, {out}/chart.svg", file=sys.stderr)


COLORS = {"wasm-redis": "#80cdc1", "ours": "#1b7837", "ours-grpc": "#5aae61", "ours-oidc": "#a6dba0", "python": "#c51b7d", "python-w2": "#e9a3c9",
          "floor": "#4393c3", "http-floor": "#92c5de", "http-store-floor": "#d1e5f0"}


def svg_chart(rows, servers):
    """Two log-scale bar charts (req/s, p99 ms): one group per case, one bar per server."""
    import math
    cases = sorted({(r["store"], r["payload"], r["conns"]) for r in rows})
    by_key = {(r["server"], r["store"], r["payload"], r["conns"]): r for r in rows}
    bar, gap, left, top, height = 10, 18, 70, 40, 220
    width = left + len(cases) * (len(servers) * bar + gap) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{2 * (height + 110) + 40}" '
           'font-family="sans-serif" font-size="11">']

    def panel(y0, metric, title, unit):
        vals = [r[metric] for r in rows if r[metric] and r[metric] > 0]
        if not vals:
            return
        lo = 10 ** math.floor(math.log10(min(vals)))
        hi = 10 ** math.ceil(math.log10(max(vals)))
        scale = lambda v: y0 + height - (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * height
        out.append(f'<text x="{left}" y="{y0 - 12}" font-size="13" font-weight="bold">{title} ({unit}, log scale)</text>')
        d = lo
        while d <= hi * 1.0001:
            y = scale(d)
            out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{d:g}</text>')
            d *= 10
        for i, (store, payload, conns) in enumerate(cases):
            x0 = left + i * (len(servers) * bar + gap) + gap / 2
            for j, s in enumerate(servers):
                r = by_key.get((s, store, payload, conns))
                if not r or not r[metric]:
                    continue
                y = scale(r[metric])
                out.append(f'<rect x="{x0 + j * bar:.1f}" y="{y:.1f}" width="{bar - 1}" height="{y0 + height - y:.1f}" '
                           f'fill="{COLORS.get(s, "#999")}"><title>{s} {store} {payload} c{conns}: {r[metric]}</title></rect>')
            cx = x0 + len(servers) * bar / 2
            out.append(f'<text x="{cx:.1f}" y="{y0 + height + 12}" text-anchor="end" '
                       f'transform="rotate(-40 {cx:.1f} {y0 + height + 12})">{store} {payload} c{conns}</text>')

    panel(top, "rps", "Throughput", "req/s")
    panel(top + height + 110, "p99_ms", "p99 latency", "ms")
    ly = 2 * (height + 110) + 25
    for j, s in enumerate(servers):
        out.append(f'<rect x="{left + j * 110}" y="{ly - 9}" width="10" height="10" fill="{COLORS.get(s, "#999")}"/>')
        out.append(f'<text x="{left + j * 110 + 14}" y="{ly}">{s}</text>')
    out.append("</svg>")
    return "\n".join(out)


if __name__ == "__main__":
    main()
