#!/usr/bin/env python3
"""Soak test of feast-server: a bounded run of mixed traffic while, every interval, the
Wasm plugin is hot-swapped, the registry file is replaced and Redis is killed for a few
seconds; passes only if nothing fails outside the Redis outages, RSS does not grow and
open file descriptors stay flat. See tests/soak/README.md.

    VENV=$(demo/feast_venv.sh)
    $VENV/bin/python tests/soak/soak.py                          # 30 min, release build
    $VENV/bin/python tests/soak/soak.py --dev --minutes 2 --every 30   # CI

Run it with the Feast venv's python (grpcio and Feast's gRPC stubs); everything else is
the standard library. Exit status: 0 pass, 1 fail, 2 setup error, 130 interrupted.
"""
import argparse
import csv
import hashlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.client import HTTPConnection, HTTPException
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from fixtures import _resp, _spawn_redis, _timestamp_proto, copy_demo_repo, free_port  # noqa: E402

try:
    import grpc
    from feast.protos.feast.serving import ServingService_pb2_grpc as pb_grpc
    from grpc_parity import grpc_request  # the request the gRPC parity check sends
except ImportError as e:  # pragma: no cover
    sys.exit(f"{e}: run with the Feast venv's python: $(demo/feast_venv.sh)/bin/python {sys.argv[0]}")

PAYLOADS = ROOT / "bench" / "payloads"
READS = ["p1_1x3", "p10_10x5", "p100_100x3", "odfv_10x4"]
PUSH = "push_10"
PLUGIN_FILE = "transformed_conv_rate.wasm"
REQUEST_TIMEOUT = 10.0
PUSH_ID_BASE = 7_000_000   # driver ids written by the pushes (bench.py uses 5M and 9M)
PUSH_BLOCKS = 8            # id blocks per push thread: the stores do not grow
# (name, protocol, store). Redis-backed servers may answer 503 / UNAVAILABLE while Redis
# is down (plus a grace period); nothing else may fail, ever.
SERVERS = [("http-sqlite", "http", "sqlite"), ("http-redis", "http", "redis"), ("grpc-redis", "grpc", "redis")]
TOLERATED = ("HTTP 503", "gRPC UNAVAILABLE")
# A status the server sent carries Feast's class first ("FeastError: ..."); grpcio's own
# (connection refused or reset, client deadline) does not, and is marked client-side.
SERVER_STATUS = re.compile(r"^[A-Za-z_][\w.]*: ")
COLORS = {"http-sqlite": "#1b7837", "http-redis": "#2166ac", "grpc-redis": "#b2182b"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def utc(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"


# ---------------------------------------------------------------- payloads and bytes

def iso_us(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)) + f".{us % 1_000_000:06d}Z"


def render_push(template: str, first_id: int, ts_us: int) -> bytes:
    """A push body (as bench.py's render_push): row k's driver_id first_id + k, every time ts_us."""
    body = re.sub(r"__ID(\d+)__", lambda m: str(first_id + int(m.group(1))), template)
    return body.replace("__TS__", iso_us(ts_us)).encode()


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(component: bytes, name: bytes, payload: bytes) -> bytes:
    """The component with a custom section (id 0) appended at the top level: valid, and
    other bytes, so a different SHA-256 the server must load."""
    if not component.startswith(b"\0asm"):
        raise ValueError("not a Wasm binary")
    body = leb128(len(name)) + name + payload
    return component + b"\x00" + leb128(len(body)) + body


def _top_fields(buf: bytes):
    """(field number, raw bytes) of a protobuf message's top-level fields."""
    i, out = 0, []
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = _varint(buf, i)
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire} at {start}")
        out.append((key >> 3, buf[start:i]))
    if i != len(buf):
        raise ValueError("truncated registry")
    return out


def _varint(buf: bytes, i: int):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def renewed_registry(registry: bytes, version_id: str, now: float) -> bytes:
    """The registry as Feast rewrites it on an update: every object kept, a new
    `version_id` (field 4) and `last_updated` (field 5, a Timestamp)."""
    kept = [raw for num, raw in _top_fields(registry) if num not in (4, 5)]
    vid = version_id.encode()
    ts = b"\x08" + leb128(int(now)) + b"\x10" + leb128(int(now % 1 * 1e9))
    return b"".join(kept) + b"\x22" + leb128(len(vid)) + vid + b"\x2a" + leb128(len(ts)) + ts


def atomic_write(path: Path, data: bytes):
    """Written beside `path` (a name the server does not scan), then renamed over it."""
    tmp = path.with_name(f".{path.name}.soak-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def http_get(url: str, timeout=3.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(text: str, name: str) -> float:
    """Sum of a metric's samples in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- processes

class Redis:
    """A private redis-server loaded with the bytes Feast wrote (as fixtures.RedisProcess),
    restartable on the same port."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.dump = json.loads((ROOT / "tests" / "fixtures" / "redis_dump.json").read_text())

    def start(self):
        self.proc, sock = _spawn_redis(self.port, self.workdir)
        with sock:
            ts = _timestamp_proto(int(time.time()) - 3600)
            for k in self.dump["keys"]:
                args = [b"HSET", bytes.fromhex(k["key_hex"])]
                for f in k["fields"]:
                    field = bytes.fromhex(f["field_hex"])
                    args += [field, ts if field.startswith(b"_ts:") else bytes.fromhex(f["value_hex"])]
                _resp(sock, *args)

    def kill(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None


class LogWatch:
    """Counts lines containing given markers in a growing log file."""

    def __init__(self, path: Path, markers):
        self.path, self.offset, self.rest = path, 0, b""
        self.counts = {m: 0 for m in markers}

    def poll(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            for m in self.counts:
                if m.encode() in line:
                    self.counts[m] += 1
        return self.counts


# A separate process (no GIL shared with the workers) PINGs Redis every 50 ms on its own
# connection and prints, per second, "unix-second max-RTT-ms errors": when a Redis-backed
# server reports Redis timing out, this says whether Redis itself was slow.
REDIS_PROBE = r"""
import socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
out, s, cur, mx, errs = open(path, "w", buffering=1), None, None, 0.0, 0
while True:
    t = time.time()
    try:
        if s is None:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"PING\r\n")
        buf = b""
        while not buf.endswith(b"\r\n"):
            d = s.recv(64)
            if not d:
                raise OSError("closed")
            buf += d
        rtt = time.time() - t
    except OSError:
        errs, rtt = errs + 1, None
        if s is not None:
            s.close()
        s = None
    if int(t) != cur:
        if cur is not None:
            out.write(f"{cur} {mx * 1000:.2f} {errs}\n")
        cur, mx, errs = int(t), 0.0, 0
    if rtt is not None:
        mx = max(mx, rtt)
    time.sleep(0.05)
"""


class Server:
    def __init__(self, name, protocol, store, binary: Path, repo: Path, plugins: Path, log_path: Path):
        self.name, self.protocol, self.store = name, protocol, store
        self.binary, self.repo, self.plugins, self.log_path = binary, repo, plugins, log_path
        self.proc = None
        self.exit_code = None
        self.exited_at = None
        self.shutdown_s = None

    def start(self, timeout=300):
        self.port = free_port()
        argv = [str(self.binary), "-c", str(self.repo), "serve", "-p", str(self.port), "--plugins", str(self.plugins)]
        if self.protocol == "grpc":
            self.metrics_port = free_port()
            argv += ["-t", "grpc", "--metrics-port", str(self.metrics_port)]
        else:
            self.metrics_port = self.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(argv, cwd=self.repo, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.logwatch = LogWatch(self.log_path, ["plugin loaded", "plugin refused"])
        t0 = time.monotonic()
        health = self.metrics_url if self.protocol == "grpc" else self.url + "/health"
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: see {self.log_path}")
            try:
                if http_get(health, timeout=1)[0] == 200:
                    log(f"# {self.name}: serving on port {self.port} after {time.monotonic() - t0:.1f} s "
                        f"(pid {self.proc.pid})")
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout} s: see {self.log_path}")

    def alive(self):
        if self.proc is None:
            return False
        if self.proc.poll() is not None and self.exit_code is None:
            self.exit_code, self.exited_at = self.proc.returncode, time.monotonic()
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM to the server (graceful drain), SIGKILL after 35 s; then SIGKILL to its
        process group (a plugin compile child still running)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            t0 = time.monotonic()
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=35)
                self.shutdown_s = time.monotonic() - t0
            except subprocess.TimeoutExpired:
                log(f"# {self.name}: still running 35 s after SIGTERM: SIGKILL")
            except ProcessLookupError:
                pass
            if self.exit_code is None and self.proc.poll() is not None:
                self.exit_code = self.proc.returncode
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its compile children, if any
        except ProcessLookupError:
            pass
        self.proc.wait()

    def plugin_status(self):
        status, body = http_get(self.url + "/plugins")
        if status != 200:
            return None
        for p in json.loads(body):
            if p["file"].endswith(PLUGIN_FILE):
                return p
        return None

    def registry_counters(self):
        _, body = http_get(self.metrics_url)
        text = body.decode()
        return (metric(text, "feast_server_registry_reloads_total"),
                metric(text, "feast_server_registry_reload_failures_total"))

    def sample(self):
        """(RSS kB, open fds, threads) of the server process, or None once it is gone."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return None
        rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
        threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
        return rss, fds, threads


# ---------------------------------------------------------------- traffic

class Worker(threading.Thread):
    """One connection (keep-alive HTTP, or one gRPC channel of its own) in a closed loop."""

    def __init__(self, server: Server, kind: str, index: int, stop: threading.Event, t0: float):
        super().__init__(daemon=True, name=f"{server.name}/{kind}/{index}")
        self.server, self.kind, self.index, self.stop, self.t0 = server, kind, index, stop, t0
        self.lock = threading.Lock()
        self.counts = {}   # (second, outcome) -> requests
        self.latency = {}  # second -> [requests, total s, max s]
        self.hist = [0] * LAT_BUCKETS
        self.nonok = []    # (start, end, outcome, detail), monotonic times
        self.total = 0

    def record(self, start, end, outcome, ok, detail=""):
        sec = int(end - self.t0)
        key = (sec, outcome)
        took = end - start
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            lat = self.latency.setdefault(sec, [0, 0.0, 0.0])
            lat[0] += 1
            lat[1] += took
            lat[2] = max(lat[2], took)
            self.hist[lat_bucket(took)] += 1
            self.total += 1
            if not ok:
                self.nonok.append((start, end, outcome, detail))

    def run(self):
        try:
            if self.server.protocol == "grpc":
                self.run_grpc()
            else:
                self.run_http()
        except BaseException as e:  # a bug here must not pass silently
            now = time.monotonic()
            self.record(now, now, f"worker crashed: {type(e).__name__}", False, repr(e))

    def bodies(self):
        if self.kind == PUSH:
            template = (PAYLOADS / f"{PUSH}.tmpl").read_text()
            rows = len(re.findall(r"__ID\d+__", template))
            first_block = self.index * PUSH_BLOCKS  # blocks of its own
            last, i = 0, 0
            while True:
                # Increasing event times per entity, so Redis writes every row.
                last = max(time.time_ns() // 1000, last + 1)
                yield render_push(template, PUSH_ID_BASE + (first_block + i % PUSH_BLOCKS) * rows, last)
                i += 1
        body = (PAYLOADS / f"{self.kind}.json").read_bytes()
        while True:
            yield body

    def run_http(self):
        path = "/push" if self.kind == PUSH else "/get-online-features"
        conn = None
        for body in self.bodies():
            if self.stop.is_set():
                break
            start = time.monotonic()
            error = False
            try:
                if conn is None:
                    conn = HTTPConnection("127.0.0.1", self.server.port, timeout=REQUEST_TIMEOUT)
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                ok = 200 <= resp.status < 300
                outcome, detail = f"HTTP {resp.status}", "" if ok else data[:300].decode("utf-8", "replace")
            except (OSError, HTTPException) as e:
                ok, error = False, True
                outcome, detail = type(e).__name__, str(e)[:300]
                if conn is not None:
                    conn.close()
                conn = None
            self.record(start, time.monotonic(), outcome, ok, detail)
            if error:
                self.stop.wait(0.05)  # no hot loop on a refused connection
        if conn is not None:
            conn.close()

    def run_grpc(self):
        # A local subchannel pool: one HTTP/2 connection per worker, not one shared.
        channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}",
                                        options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            stub = pb_grpc.ServingServiceStub(channel)
            req = grpc_request(json.loads((PAYLOADS / f"{self.kind}.json").read_text()))
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    stub.GetOnlineFeatures(req, timeout=REQUEST_TIMEOUT)
                    self.record(start, time.monotonic(), "gRPC OK", True)
                except grpc.RpcError as e:
                    code = e.code().name if e.code() is not None else "UNKNOWN"
                    details = e.details() or ""
                    outcome = f"gRPC {code}" + ("" if SERVER_STATUS.match(details) else " (client-side)")
                    self.record(start, time.monotonic(), outcome, False, details[:300])
                    if "client-side" in outcome:
                        self.stop.wait(0.05)
        finally:
            channel.close()


LAT_BUCKETS = 160  # latency histogram: 8 buckets per doubling from 0.1 ms (to ~100 s)


def lat_bucket(seconds: float) -> int:
    if seconds <= 1e-4:
        return 0
    return min(LAT_BUCKETS - 1, int(8 * math.log2(seconds / 1e-4)) + 1)


def lat_quantile(hist, q: float) -> float:
    """Upper bound (s) of the bucket holding quantile q."""
    n = sum(hist)
    if not n:
        return 0.0
    acc = 0
    for i, c in enumerate(hist):
        acc += c
        if acc >= q * n:
            return 1e-4 * 2 ** (i / 8)
    return 1e-4 * 2 ** ((LAT_BUCKETS - 1) / 8)


def assign(servers, conns):
    """(server, kind) of each of `conns` workers: round robin over the gRPC reads first,
    then the HTTP reads and pushes (32 -> 3 per gRPC payload, 2 per HTTP kind)."""
    pairs = [(s, k) for s in servers if s.protocol == "grpc" for k in READS]
    pairs += [(s, k) for s in servers if s.protocol == "http" for k in READS + [PUSH]]
    return [pairs[i % len(pairs)] for i in range(conns)]


def smoke(server: Server, kind: str):
    """One request of each kind must succeed before the soak starts."""
    if server.protocol == "grpc":
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            req = grpc_request(json.loads((PAYLOADS / f"{kind}.json").read_text()))
            pb_grpc.ServingServiceStub(ch).GetOnlineFeatures(req, timeout=30)
        return
    if kind == PUSH:
        body, path = render_push((PAYLOADS / f"{PUSH}.tmpl").read_text(), PUSH_ID_BASE, time.time_ns() // 1000), "/push"
    else:
        body, path = (PAYLOADS / f"{kind}.json").read_bytes(), "/get-online-features"
    req = urllib.request.Request(server.url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{server.name} {kind}: HTTP {e.code}: {e.read()[:300]!r}") from None


# ---------------------------------------------------------------- the run

class Soak:
    def __init__(self, args, binary: Path, plugin: Path, work: Path):
        self.args, self.binary, self.work = args, binary, work
        self.out = args.out
        self.duration = args.minutes * 60
        self.plugin_bytes = plugin.read_bytes()
        self.registry_bytes = (ROOT / "demo" / "feature_repo" / "data" / "registry.db").read_bytes()
        _top_fields(self.registry_bytes)  # parses
        self.redis = Redis(work / "redis")
        self.redis_timeout = args.redis_timeout or (5.0 if args.dev else 1.0)
        self.servers = []
        self.workers = []
        self.samples = []      # (t, server, rss kB, fds, threads)
        self.windows = []      # [start, end] monotonic, Redis outages plus the grace
        self.ticks = []        # dicts
        self.problems = []     # failed checks (swap not seen, reload not seen, server exited)
        self.stop = threading.Event()
        self.swapper = None    # the thread doing the swaps
        self.swap_lock = threading.Lock()
        self.pending = None    # (tick, record) of a swap waiting for the current one
        self.swaps = 0         # swaps started
        self.probe = None      # the Redis PING probe process
        self.t0 = None
        self.interrupted = False

    # -- setup
    def setup(self):
        cache = self.work / "wasm-cache"  # shared by the servers, as ~/.cache would be
        cache.mkdir(mode=0o700)
        self.redis.start()
        log(f"# redis-server on port {self.redis.port}")
        self.probe = subprocess.Popen([sys.executable, "-c", REDIS_PROBE, str(self.redis.port),
                                       str(self.out / "redis-ping.txt")], start_new_session=True)
        for name, protocol, store in SERVERS:
            repo = copy_demo_repo(self.work / f"repo-{name}")
            online = ("    type: sqlite\n    path: data/online_store.db\n" if store == "sqlite" else
                      f"    type: redis\n    connection_string: \"127.0.0.1:{self.redis.port}"
                      f",socket_timeout={self.redis_timeout:g}\"\n")
            (repo / "feature_store.yaml").write_text(
                "project: repo\nregistry: data/registry.db\nprovider: local\n"
                f"online_store:\n{online}entity_key_serialization_version: 3\n"
                f"wasm_plugins:\n    cache_dir: {json.dumps(str(cache))}\n")
            plugins = self.work / f"plugins-{name}"
            plugins.mkdir()
            (plugins / PLUGIN_FILE).write_bytes(self.plugin_bytes)
            self.servers.append(Server(name, protocol, store, self.binary, repo, plugins,
                                       self.out / f"server-{name}.log"))
        # The first start compiles the plugin into the shared cache; the others load it.
        for s in self.servers:
            s.start()
        for s in self.servers:
            for kind in (READS if s.protocol == "grpc" else READS + [PUSH]):
                smoke(s, kind)
            s.logwatch.poll()
        self.loaded_base = {s.name: s.logwatch.counts["plugin loaded"] for s in self.servers}

    # -- sampling
    def sampler(self):
        while True:
            t = time.monotonic() - self.t0
            for s in self.servers:
                got = s.sample() if s.alive() else None
                if got:
                    self.samples.append((t, s.name, *got))
            if self.stop.wait(self.args.sample):
                return

    # -- one interval's events
    def wait_until(self, cond, timeout):
        """Polls cond() until true or timeout / the end of the run; (result, seconds). A
        check that cannot reach its server counts as not yet."""
        t0 = time.monotonic()
        deadline = min(t0 + timeout, self.t0 + self.duration)
        while True:
            try:
                r = cond()
            except (OSError, ValueError):
                r = None
            if r:
                return r, time.monotonic() - t0
            if time.monotonic() >= deadline or self.over():
                return None, time.monotonic() - t0
            time.sleep(0.1)

    def swap_seen(self, s: Server, digest: str, swaps: int, refused_base: dict):
        """True once `s` serves the new file; a string when it refused it."""
        if s.protocol == "http":
            p = s.plugin_status()
            if p and p.get("content_hash") == digest:
                return True
            if p and p.get("load_error"):
                return f"refused: {p['load_error']}"
            return None
        # gRPC mode has no GET /plugins: its log says when a file loaded or was refused.
        c = s.logwatch.poll()
        if c["plugin refused"] > refused_base[s.name]:
            return "refused (see its log)"
        return True if c["plugin loaded"] >= self.loaded_base[s.name] + swaps else None

    def tick(self, k: int):
        """One interval's events, all starting now: the plugin swap (in the background: a
        compile can take longer than an outage), the registry replaced, Redis killed and
        restarted after --outage seconds; then the registry reloads are checked."""
        t = time.monotonic()
        rec = {"tick": k, "t_s": round(t - self.t0, 1), "time_utc": utc(self.wall(t)), "swap": {}, "registry": {}}
        self.ticks.append(rec)
        # 1. Hot swap: one at a time; if the previous one is still loading, this one
        # starts as soon as it is done (a newer tick replaces a waiting one).
        rec["plugin_sha256"] = "-"
        with self.swap_lock:
            if self.swapper is not None and self.swapper.is_alive():
                if self.pending is not None:
                    self.pending[1]["swap"] = {s.name: "skipped (a newer one was due)" for s in self.servers}
                self.pending = (k, rec)
                rec["swap"] = {s.name: "waited for the previous swap" for s in self.servers}
                log(f"# tick {k}: the previous plugin swap is still loading; this one waits for it")
            else:
                self.swapper = threading.Thread(target=self.swap_loop, args=(k, rec), daemon=True, name="swapper")
                self.swapper.start()
        # 2. Registry: a new version (new version_id and last_updated) renamed over each
        # server's data/registry.db; its reload counter must move.
        before = {s.name: self.counters(s) for s in self.servers}
        vid = f"soak-{k}-{uuid.uuid4().hex[:12]}"
        rec["registry_version_id"] = vid
        data = renewed_registry(self.registry_bytes, vid, time.time())
        for s in self.servers:
            atomic_write(s.repo / "data" / "registry.db", data)
        # 3. Redis: killed, down for --outage seconds, restarted on the same port with the
        # fixture data; the window lasts until --grace seconds after it is back.
        window = [time.monotonic(), None]
        self.windows.append(window)
        rec["window"] = window
        self.redis.kill()
        time.sleep(max(0.0, min(self.args.outage, self.time_left())))
        self.redis.start()
        back = time.monotonic()
        rec["redis_back"] = back
        rec["redis_back_s"] = round(back - window[0], 2)
        window[1] = back + self.args.grace
        for s in self.servers:
            if before[s.name] is None:
                rec["registry"][s.name] = "no metrics before the swap"
                self.problem(f"tick {k}: {s.name}: GET /metrics did not answer")
                continue
            got, secs = self.wait_until(lambda s=s: s.registry_counters()[0] > before[s.name][0],
                                        self.args.check_timeout)
            failures = (self.counters(s) or before[s.name])[1] - before[s.name][1]
            if got:
                rec["registry"][s.name] = "reloaded"
            elif self.over():
                rec["registry"][s.name] = "not checked (run ended)"
            else:
                rec["registry"][s.name] = f"not reloaded within {self.args.check_timeout:.0f} s"
                self.problem(f"tick {k}: registry on {s.name}: not reloaded")
            if failures:
                self.problem(f"tick {k}: registry on {s.name}: {failures:.0f} reload failure(s)")
        log(f"# tick {k} at {rec['t_s']:.0f} s: registry {vid} ("
            + ", ".join(f"{n} {v}" for n, v in rec["registry"].items())
            + f"); Redis down {rec['redis_back_s']:.1f} s")

    def swap_loop(self, k: int, rec: dict):
        while True:
            self.swap(k, rec)
            with self.swap_lock:
                if self.pending is None:
                    return
                k, rec = self.pending
                self.pending = None
                if self.over():
                    rec["swap"] = {s.name: "not started (run ended)" for s in self.servers}
                    return

    def swap(self, k: int, rec: dict):
        """Swap k: one server (each in turn) gets the new file first and compiles it (in
        its compile child); then the others get it and load it from the shared cache."""
        rec["swap"] = {}
        rec["swap_started_s"] = round(time.monotonic() - self.t0, 1)
        refused_base = {s.name: s.logwatch.poll()["plugin refused"] for s in self.servers if s.protocol == "grpc"}
        new = with_custom_section(self.plugin_bytes, b"feast-soak", f"swap {k} {uuid.uuid4().hex}".encode())
        digest = hashlib.sha256(new).hexdigest()
        rec["plugin_sha256"] = digest
        self.swaps += 1
        leader = self.servers[(self.swaps - 1) % len(self.servers)]
        followers = [s for s in self.servers if s is not leader]
        for group in ([leader], followers):
            if self.over():
                for s in group:
                    rec["swap"][s.name] = "not started (run ended)"
                continue
            for s in group:
                atomic_write(s.plugins / PLUGIN_FILE, new)
            for s in group:
                got, secs = self.wait_until(lambda s=s: self.swap_seen(s, digest, self.swaps, refused_base),
                                            self.args.check_timeout)
                role = "compiled" if s is leader else "from cache"
                if got is True:
                    rec["swap"][s.name] = f"{secs:.1f} s ({role})"
                elif self.over():
                    rec["swap"][s.name] = "not checked (run ended)"
                else:
                    why = got if isinstance(got, str) else f"not seen within {self.args.check_timeout:.0f} s"
                    rec["swap"][s.name] = why
                    self.problem(f"swap {k}: plugin on {s.name}: {why}")
        log(f"# swap {k}: plugin {digest[:12]} " + ", ".join(f"{n} {v}" for n, v in rec["swap"].items()))

    # -- helpers
    def wall(self, mono: float) -> float:
        return self.t0_wall + (mono - self.t0)

    def time_left(self):
        return self.t0 + self.duration - time.monotonic()

    def crashed(self):
        return any(not s.alive() for s in self.servers)

    def counters(self, s: Server):
        """Registry reloads and reload failures so far (None while /metrics does not answer)."""
        try:
            return s.registry_counters()
        except (OSError, ValueError):
            return None

    def over(self):
        """The run ended, was interrupted, or a server exited."""
        return self.time_left() <= 0 or self.stop.is_set() or self.crashed()

    def problem(self, msg):
        log(f"# PROBLEM {msg}")
        self.problems.append(msg)

    def progress(self, last):
        now = time.monotonic()
        totals = {}
        for w in self.workers:
            with w.lock:
                totals[w.server.name] = totals.get(w.server.name, 0) + w.total
                totals["nonok"] = totals.get("nonok", 0) + len(w.nonok)
        rate = {n: (totals.get(n, 0) - last[0].get(n, 0)) / (now - last[1]) for n in totals}
        latest = {}
        for t, name, rss, fds, _ in self.samples[-len(self.servers):]:
            latest[name] = f"{rss / 1024:.0f} MB/{fds} fds"
        log(f"t={now - self.t0:5.0f} s  " + "  ".join(
            f"{s.name} {rate.get(s.name, 0):.0f} req/s {latest.get(s.name, '')}" for s in self.servers)
            + f"  non-OK so far {totals.get('nonok', 0)}")
        return totals, now

    def idle_until(self, until: float, last):
        """Waits until `until` (or the end, or a crash), printing progress every 10 s."""
        while True:
            now = time.monotonic()
            if now >= until or self.over():
                return last
            if now - last[1] >= 10:
                last = self.progress(last)
            time.sleep(min(0.5, until - now))

    def run(self):
        self.t0, self.t0_wall = time.monotonic(), time.time()
        sampler = threading.Thread(target=self.sampler, daemon=True, name="sampler")
        sampler.start()
        for i, (s, kind) in enumerate(assign(self.servers, self.args.conns)):
            w = Worker(s, kind, i, self.stop, self.t0)
            self.workers.append(w)
            w.start()
        log(f"# {len(self.workers)} workers; {self.duration:.0f} s; events every {self.args.every:.0f} s")
        last = ({}, self.t0)
        k = 1
        try:
            # An interval's events start at k * every, while an outage still fits.
            while k * self.args.every + self.args.outage + self.args.grace < self.duration:
                last = self.idle_until(self.t0 + k * self.args.every, last)
                if self.over():
                    break
                self.tick(k)
                k += 1
            self.idle_until(self.t0 + self.duration, last)
        finally:
            self.t_end = min(time.monotonic(), self.t0 + self.duration)
            for w in self.windows:
                if w[1] is None:
                    w[1] = time.monotonic()
            with self.swap_lock:
                if self.pending is not None:
                    self.pending[1]["swap"] = {s.name: "not started (run ended)" for s in self.servers}
                    self.pending = None
            self.stop.set()
            for w in self.workers:
                w.join(timeout=REQUEST_TIMEOUT + 5)
            sampler.join(timeout=5)
            if self.swapper is not None:
                self.swapper.join(timeout=5)
        for s in self.servers:
            if not s.alive():
                self.problem(f"{s.name} exited with status {s.exit_code} at "
                             f"{s.exited_at - self.t0:.0f} s (see {s.log_path.name})")

    def cleanup(self):
        for s in self.servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"# stopping {s.name}: {e}")
        self.redis.kill()
        if self.probe is not None:
            os.killpg(self.probe.pid, signal.SIGKILL)
            self.probe.wait()


# ---------------------------------------------------------------- analysis and outputs

def median(xs):
    return statistics.median(xs) if xs else None


class Results:
    def __init__(self, soak: Soak):
        self.soak = soak
        a = soak.args
        self.D = soak.t_end - soak.t0
        self.windows = [(w0 - soak.t0, w1 - soak.t0) for w0, w1 in soak.windows]
        redis_backed = {s.name for s in soak.servers if s.store == "redis"}
        self.names = [s.name for s in soak.servers]
        # Totals and per-second counts.
        self.totals = {}         # (server, kind, outcome) -> n
        self.per_sec = {}        # (second, server) -> requests
        self.per_sec_nonok = {}  # (second, label) -> n
        self.nonok = []          # dicts
        self.lat = {}            # (second, server) -> [requests, total s, max s]
        self.hist = {n: [0] * LAT_BUCKETS for n in self.names}
        for w in soak.workers:
            for sec, (n, tot, mx) in w.latency.items():
                cur = self.lat.setdefault((sec, w.server.name), [0, 0.0, 0.0])
                cur[0] += n
                cur[1] += tot
                cur[2] = max(cur[2], mx)
            for i, c in enumerate(w.hist):
                self.hist[w.server.name][i] += c
            for (sec, outcome), n in w.counts.items():
                key = (w.server.name, w.kind, outcome)
                self.totals[key] = self.totals.get(key, 0) + n
                self.per_sec[(sec, w.server.name)] = self.per_sec.get((sec, w.server.name), 0) + n
            for start, end, outcome, detail in w.nonok:
                s, e = start - soak.t0, end - soak.t0
                inside = any(s <= w1 and e >= w0 for w0, w1 in self.windows)
                tolerated = inside and w.server.name in redis_backed and outcome in TOLERATED
                self.nonok.append({"start_s": s, "end_s": e, "time_utc": utc(soak.wall(end)), "server": w.server.name,
                                   "kind": w.kind, "outcome": outcome, "tolerated": tolerated, "detail": detail})
                label = f"{w.server.name} {outcome}" + (" (tolerated)" if tolerated else "")
                self.per_sec_nonok[(int(e), label)] = self.per_sec_nonok.get((int(e), label), 0) + 1
        self.nonok.sort(key=lambda r: r["end_s"])
        # The Redis probe, per second of the run: (max PING ms, errors).
        self.ping = {}
        try:
            for line in (soak.out / "redis-ping.txt").read_text().splitlines():
                sec, ms, errs = line.split()
                self.ping[int(sec) - int(soak.t0_wall)] = (float(ms), int(errs))
        except (OSError, ValueError):
            pass
        for r in self.nonok:
            secs = [self.ping[x] for x in range(int(r["start_s"]), int(r["end_s"]) + 1) if x in self.ping]
            r["redis_ping_max_ms"] = f"{max(ms for ms, _ in secs):.1f}" if secs else ""
            r["redis_ping_errors"] = sum(e for _, e in secs) if secs else ""
        self.failures = [r for r in self.nonok if not r["tolerated"]]
        # RSS and fds: the first 10 % after the warm-up against the last 10 %.
        self.warmup = min(0.2 * self.D, 300.0)
        tenth = 0.1 * self.D
        self.first_win = (self.warmup, self.warmup + tenth)
        self.last_win = (self.D - tenth, self.D)
        self.mem = {}
        for n in self.names:
            ss = [x for x in soak.samples if x[1] == n]
            first = [x for x in ss if self.first_win[0] <= x[0] <= self.first_win[1]]
            last = [x for x in ss if self.last_win[0] <= x[0] <= self.last_win[1]]
            m = {"rss_first_mb": median([x[2] / 1024 for x in first]), "rss_last_mb": median([x[2] / 1024 for x in last]),
                 "fds_first": median([x[3] for x in first]), "fds_last": median([x[3] for x in last]),
                 "rss_max_mb": max((x[2] / 1024 for x in ss), default=None), "samples": (len(first), len(last))}
            m["rss_growth_pct"] = (100 * (m["rss_last_mb"] - m["rss_first_mb"]) / m["rss_first_mb"]
                                   if m["rss_first_mb"] and m["rss_last_mb"] is not None else None)
            m["fds_delta"] = (m["fds_last"] - m["fds_first"]) if m["fds_first"] is not None and m["fds_last"] is not None else None
            self.mem[n] = m
        # The verdict.
        self.reasons = []
        if self.failures:
            kinds = {}
            for r in self.failures:
                kinds[f"{r['server']} {r['outcome']}"] = kinds.get(f"{r['server']} {r['outcome']}", 0) + 1
            self.reasons.append(f"{len(self.failures)} failed requests: " +
                                ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())))
        for n, m in self.mem.items():
            if m["rss_growth_pct"] is None or m["fds_delta"] is None:
                self.reasons.append(f"{n}: no RSS / fd samples to compare")
                continue
            if m["rss_growth_pct"] >= a.max_rss_growth:
                self.reasons.append(f"{n}: RSS grew {m['rss_growth_pct']:.1f} % after warm-up "
                                    f"({m['rss_first_mb']:.1f} -> {m['rss_last_mb']:.1f} MB; limit {a.max_rss_growth:g} %)")
            if abs(m["fds_delta"]) > a.fd_tolerance:
                self.reasons.append(f"{n}: open fds {m['fds_first']:g} -> {m['fds_last']:g} "
                                    f"(limit +-{a.fd_tolerance})")
        self.reasons += soak.problems
        if soak.interrupted:
            self.reasons.append("interrupted")
        self.passed = not self.reasons

    # -- stdout
    def summary(self):
        lines = [f"{'server':<12} {'requests':>9} {'req/s':>7} {'p99 ms':>7} {'tolerated':>9} {'failures':>8} "
                 f"{'RSS MB first->last':>19} {'growth':>7} {'fds first->last':>16}"]
        for n in self.names:
            req = sum(v for (s, _, _), v in self.totals.items() if s == n)
            tol = sum(1 for r in self.nonok if r["server"] == n and r["tolerated"])
            fail = sum(1 for r in self.failures if r["server"] == n)
            m = self.mem[n]
            rss = f"{m['rss_first_mb'] or 0:.1f} -> {m['rss_last_mb'] or 0:.1f}"
            growth = f"{m['rss_growth_pct']:+.1f}%" if m["rss_growth_pct"] is not None else "-"
            fds = f"{m['fds_first'] or 0:g} -> {m['fds_last'] or 0:g}"
            p99 = 1000 * lat_quantile(self.hist[n], 0.99)
            lines.append(f"{n:<12} {req:>9} {req / self.D:>7.0f} {p99:>7.1f} {tol:>9} {fail:>8} {rss:>19} {growth:>7} "
                         f"{fds:>16}")
        lines.append("")
        lines.append(("PASS" if self.passed else "FAIL") + f": {self.D:.0f} s, {len(self.soak.ticks)} swap/registry/"
                     f"Redis events, {len(self.windows)} outage windows")
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)

    # -- soak.csv
    def write_csv(self, path: Path):
        labels = sorted({label for (_, label) in self.per_sec_nonok})
        samples = {}
        for t, n, rss, fds, threads in self.soak.samples:
            samples[(int(t), n)] = (rss, fds, threads)
        head = ["t_s", "time_utc", "outage"] + [f"req_{n}" for n in self.names] + \
               [f"{m}_{n}" for n in self.names for m in ("lat_mean_ms", "lat_max_ms")] + \
               ["redis_ping_max_ms", "redis_ping_errors"] + \
               [f"nonok {lb}" for lb in labels] + \
               [f"{m}_{n}" for n in self.names for m in ("rss_mb", "fds", "threads")]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            for sec in range(int(self.D) + 1):
                row = [sec, utc(self.soak.t0_wall + sec),
                       int(any(w0 <= sec + 1 and sec <= w1 for w0, w1 in self.windows))]
                row += [self.per_sec.get((sec, n), 0) for n in self.names]
                for n in self.names:
                    cnt, tot, mx = self.lat.get((sec, n), (0, 0.0, 0.0))
                    row += [f"{1000 * tot / cnt:.1f}", f"{1000 * mx:.1f}"] if cnt else ["", ""]
                ping = self.ping.get(sec)
                row += [f"{ping[0]:.1f}", ping[1]] if ping else ["", ""]
                row += [self.per_sec_nonok.get((sec, lb), 0) for lb in labels]
                for n in self.names:
                    smp = samples.get((sec, n))
                    row += [f"{smp[0] / 1024:.1f}", smp[1], smp[2]] if smp else ["", "", ""]
                w.writerow(row)
        with open(path.with_name("nonok.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["start_s", "end_s", "time_utc", "server", "kind", "outcome",
                                              "tolerated", "detail", "redis_ping_max_ms", "redis_ping_errors"])
            w.writeheader()
            for r in self.nonok:
                w.writerow({**r, "start_s": f"{r['start_s']:.3f}", "end_s": f"{r['end_s']:.3f}"})

    # -- report.md
    def write_report(self, path: Path, cmdline: str):
        s, a = self.soak, self.soak.args
        L = [f"# Soak: {'PASS' if self.passed else 'FAIL'}", ""]
        L += [f"- command: `{cmdline}`",
              f"- binary: `{s.binary}`",
              f"- started {utc(s.t0_wall)}, {self.D:.0f} s of traffic, {a.conns} connections, events every "
              f"{a.every:g} s (Redis down {a.outage:g} s + {a.grace:g} s grace)",
              f"- warm-up: first {self.warmup:.0f} s; RSS/fd medians over [{self.first_win[0]:.0f}, "
              f"{self.first_win[1]:.0f}] s against [{self.last_win[0]:.0f}, {self.last_win[1]:.0f}] s",
              f"- server logs: {', '.join(f'`server-{n}.log`' for n in self.names)}; every non-OK request: "
              "`nonok.csv`; per second: `soak.csv`; plot: `soak.svg`", ""]
        if self.reasons:
            L += ["## Why it failed", ""] + [f"- {r}" for r in self.reasons] + [""]
        L += ["## Servers", "", "| server | requests | req/s | tolerated | failures | RSS MB first | RSS MB last | "
              "growth | RSS max MB | fds first | fds last | shutdown |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for srv in s.servers:
            n = srv.name
            m = self.mem[n]
            req = sum(v for (x, _, _), v in self.totals.items() if x == n)
            tol = sum(1 for r in self.nonok if r["server"] == n and r["tolerated"])
            fail = sum(1 for r in self.failures if r["server"] == n)
            f = lambda v, fmt="{:.1f}": "-" if v is None else fmt.format(v)  # noqa: E731
            shut = (f"exit {srv.exit_code}" + (f" after {srv.shutdown_s:.1f} s" if srv.shutdown_s is not None else "")
                    if srv.exit_code is not None else "-")
            L.append(f"| {n} | {req} | {req / self.D:.0f} | {tol} | {fail} | {f(m['rss_first_mb'])} | {f(m['rss_last_mb'])} | "
                     f"{f(m['rss_growth_pct'], '{:+.1f} %')} | {f(m['rss_max_mb'])} | {f(m['fds_first'], '{:g}')} | "
                     f"{f(m['fds_last'], '{:g}')} | {shut} |")
        L += ["", "Latency (all requests, client side, from a histogram of 8 buckets per doubling): " + "; ".join(
            f"{n} p50 {1000 * lat_quantile(self.hist[n], 0.5):.1f} ms, p99 {1000 * lat_quantile(self.hist[n], 0.99):.1f} ms, "
            f"max {1000 * max((v[2] for (sec, x), v in self.lat.items() if x == n), default=0):.0f} ms"
            for n in self.names) + "."]
        L += ["", "## Requests by server, kind and outcome", "", "| server | kind | outcome | requests |", "|---|---|---|---:|"]
        for (n, kind, outcome), v in sorted(self.totals.items()):
            L.append(f"| {n} | {kind} | {outcome} | {v} |")
        if self.nonok:
            L += ["", "## Non-OK requests by server, outcome and window", "",
                  "| server | outcome | tolerated | requests | first | last |", "|---|---|---|---:|---|---|"]
            groups = {}
            for r in self.nonok:
                groups.setdefault((r["server"], r["outcome"], r["tolerated"]), []).append(r)
            for (n, outcome, tol), rs in sorted(groups.items()):
                L.append(f"| {n} | {outcome} | {'yes' if tol else '**no**'} | {len(rs)} | {rs[0]['time_utc']} "
                         f"({rs[0]['end_s']:.1f} s) | {rs[-1]['time_utc']} ({rs[-1]['end_s']:.1f} s) |")
        if self.failures:
            L += ["", "## Failures (first 30)", "", "Took: the request's duration. Redis PING: the slowest answer "
                  "(and errors) of the independent probe (`redis-ping.txt`) in the seconds the request spanned.", "",
                  "| end | time | server | kind | outcome | took | Redis PING | detail |", "|---:|---|---|---|---|---:|---|---|"]
            for r in self.failures[:30]:
                detail = r["detail"].replace("|", "\\|").replace("\n", " ")[:160]
                ping = f"{r['redis_ping_max_ms']} ms, {r['redis_ping_errors']} errors" if r["redis_ping_max_ms"] else ""
                L.append(f"| {r['end_s']:.2f} s | {r['time_utc']} | {r['server']} | {r['kind']} | {r['outcome']} | "
                         f"{r['end_s'] - r['start_s']:.2f} s | {ping} | {detail} |")
        L += ["", "## Events", "",
              "Every interval: the plugin file replaced (one server compiles the new version, the others then "
              "load it from the shared cache; seen = `GET /plugins` shows its SHA-256, or for gRPC the log says "
              "`plugin loaded`, this long after its file was written), a new registry version renamed over "
              "`data/registry.db` (reloaded = `feast_server_registry_reloads_total` moved), Redis killed and "
              "restarted on the same port. Non-OK = the tolerated answers of the Redis-backed servers: the first "
              "after the kill, the last after Redis was back.", "",
              "| # | at | plugin sha256 (swap started) | swap seen: " + " / ".join(self.names) + " | registry: " +
              " / ".join(self.names) + " | Redis outage window (with grace) | non-OK first / last |",
              "|---:|---|---|---|---|---|---|"]
        for t in s.ticks:
            win = recovery = ""
            if t.get("window"):
                w0, w1 = t["window"][0] - s.t0, t["window"][1] - s.t0
                win = f"{w0:.1f}-{w1:.1f} s ({utc(s.t0_wall + w0)} - {utc(s.t0_wall + w1)})"
                inside = [r["end_s"] for r in self.nonok if r["tolerated"] and w0 <= r["end_s"] <= w1]
                if inside and "redis_back" in t:
                    back = t["redis_back"] - s.t0
                    recovery = f"+{min(inside) - w0:.2f} s / {max(inside) - back:+.2f} s"
            started = f" ({t['swap_started_s']:.0f} s)" if "swap_started_s" in t else ""
            L.append(f"| {t['tick']} | {t['t_s']:.0f} s | {t['plugin_sha256'][:12]}{started} | "
                     + " / ".join(t["swap"].get(n, "-") for n in self.names) + " | "
                     + " / ".join(t["registry"].get(n, "-") for n in self.names) + f" | {win} | {recovery} |")
        L += ["", "Tolerated: HTTP 503 or gRPC UNAVAILABLE (sent by the server) from a Redis-backed server, "
              "for a request overlapping an outage window. Everything else that is not 2xx / OK is a failure."]
        path.write_text("\n".join(L) + "\n")

    # -- soak.svg
    def write_svg(self, path: Path):
        D = max(self.D, 1.0)
        W, left, right, ph, gap, top = 1180, 70, 300, 170, 70, 40
        pw = W - left - right
        X = lambda t: left + pw * min(max(t, 0), D) / D  # noqa: E731
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{top + 4 * (ph + gap)}" '
               'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>',
               f'<text x="{left}" y="18" font-size="14" font-weight="bold">feast-server soak: '
               f'{"PASS" if self.passed else "FAIL"}, {D:.0f} s, {self.soak.args.conns} connections, '
               f'events every {self.soak.args.every:g} s (red: Redis outage + grace; dotted: events)</text>']
        step = nice_step(D / 8)
        idx = {n: i for i, n in enumerate(self.names)}

        def panel(i, title, series, bands=()):
            y0 = top + i * (ph + gap) + 20
            ymax = max([y for _, _, _, pts in series for _, y in pts] + [1e-9])
            ys = nice_step(ymax / 4)
            ymax = ys * (int(ymax / ys) + 1)
            Y = lambda v: y0 + ph - ph * v / ymax  # noqa: E731
            out.append(f'<text x="{left}" y="{y0 - 8}" font-size="12" font-weight="bold">{title}</text>')
            for w0, w1 in self.windows:
                out.append(f'<rect x="{X(w0):.1f}" y="{y0}" width="{max(X(w1) - X(w0), 1):.1f}" height="{ph}" '
                           'fill="#f4a582" fill-opacity="0.35"/>')
            for b0, b1, color in bands:
                out.append(f'<rect x="{X(b0):.1f}" y="{y0}" width="{X(b1) - X(b0):.1f}" height="{ph}" fill="{color}" '
                           'fill-opacity="0.5"/>')
            for t in self.soak.ticks:
                out.append(f'<line x1="{X(t["t_s"]):.1f}" x2="{X(t["t_s"]):.1f}" y1="{y0}" y2="{y0 + ph}" '
                           'stroke="#888" stroke-dasharray="2,3"/>')
            v = 0.0
            while v <= ymax + 1e-9:
                out.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#e5e5e5"/>')
                out.append(f'<text x="{left - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
                v += ys
            t = 0.0
            while t <= D + 1e-9:
                out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{y0 + ph}" y2="{y0 + ph + 4}" stroke="#333"/>')
                out.append(f'<text x="{X(t):.1f}" y="{y0 + ph + 16}" text-anchor="middle">{fmt_t(t)}</text>')
                t += step
            out.append(f'<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
            for j, (label, color, dash, pts) in enumerate(series):
                if pts:
                    d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
                    out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.3"'
                               + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
                ly = y0 + 10 + j * 15
                out.append(f'<line x1="{left + pw + 12}" x2="{left + pw + 32}" y1="{ly - 4}" y2="{ly - 4}" '
                           f'stroke="{color}" stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
                out.append(f'<text x="{left + pw + 36}" y="{ly}">{esc(label)}</text>')
            if not series:
                out.append(f'<text x="{left + pw / 2}" y="{y0 + ph / 2}" text-anchor="middle" fill="#1b7837">none</text>')

        secs = range(int(self.D) + 1)
        panel(0, "requests / s per server", [
            (n, COLORS.get(n, "#555"), "", [(s + 0.5, self.per_sec.get((s, n), 0)) for s in secs]) for n in self.names])
        labels = sorted({lb for (_, lb) in self.per_sec_nonok})
        palette = ["#d73027", "#4575b4", "#fc8d59", "#91bfdb", "#7b3294", "#1a9850", "#e08214", "#542788"]
        fser = []
        for j, lb in enumerate(labels):
            fser.append((lb, palette[j % len(palette)], "4,2" if lb.endswith("(tolerated)") else "",
                         [(s + 0.5, self.per_sec_nonok.get((s, lb), 0)) for s in secs]))
        panel(1, "non-OK requests / s by server and outcome (dashed: tolerated, inside an outage window)", fser)
        bands = [(0, self.warmup, "#eeeeee"), (*self.first_win, "#d9f0d3"), (*self.last_win, "#d9f0d3")]
        for i, (metric, title) in enumerate([(2, "RSS MB per server (grey: warm-up; green: compared windows)"),
                                             (3, "open file descriptors per server")]):
            ser = []
            for n in self.names:
                pts = [(x[0], x[2] / 1024 if metric == 2 else x[3]) for x in self.soak.samples if x[1] == n]
                ser.append((n, COLORS.get(n, "#555"), "", pts))
            panel(2 + i, title, ser, bands)
        out.append("</svg>")
        path.write_text("\n".join(out) + "\n")


def nice_step(x: float) -> float:
    if x <= 0:
        return 1.0
    mag = 10 ** int(f"{x:e}".split("e")[1])
    for m in (1, 2, 5, 10):
        if x <= m * mag:
            return m * mag
    return 10 * mag


def fmt_t(t: float) -> str:
    return f"{t:.0f}s" if t < 120 else f"{t / 60:g}m"


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- main

def cargo_target_dir() -> Path:
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                                     capture_output=True, check=True).stdout)
    return Path(meta["target_directory"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30, help="traffic duration (default 30)")
    ap.add_argument("--every", type=float, default=60, help="seconds between swap/registry/Redis events (60)")
    ap.add_argument("--dev", action="store_true", help="use the dev build (target/debug/feast-server)")
    ap.add_argument("--binary", type=Path, help="feast-server binary (overrides --dev)")
    ap.add_argument("--plugin", type=Path, help="the demo plugin component (default: build it)")
    ap.add_argument("--out", type=Path, help="output directory (default bench/results/soak-<minutes>m)")
    ap.add_argument("--conns", type=int, default=32, help="concurrent connections / worker threads (32)")
    ap.add_argument("--outage", type=float, default=5, help="seconds Redis stays down (5)")
    ap.add_argument("--grace", type=float, default=5, help="seconds after Redis is back still tolerated (5)")
    ap.add_argument("--sample", type=float, default=2, help="seconds between RSS / fd samples (2)")
    ap.add_argument("--check-timeout", type=float, default=60,
                    help="seconds a server has to show a swapped plugin or a reloaded registry (60)")
    ap.add_argument("--max-rss-growth", type=float, default=10, help="percent (10)")
    ap.add_argument("--fd-tolerance", type=int, default=4, help="open fds difference allowed (4)")
    ap.add_argument("--redis-timeout", type=float, default=None,
                    help="the servers' Redis socket_timeout in seconds (default 1, the server's own; "
                         "--dev: 5, as an unoptimized build on a saturated machine can be busy for a long "
                         "while before it gets back to a reply it was sent)")
    args = ap.parse_args()
    args.out = args.out or ROOT / "bench" / "results" / f"soak-{args.minutes:g}m"
    if args.minutes <= 0 or args.every <= 0:
        sys.exit("--minutes and --every must be positive")
    args.out.mkdir(parents=True, exist_ok=True)
    for f in args.out.glob("server-*.log"):
        f.unlink()

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    try:
        target = None
        if args.binary is None:
            target = cargo_target_dir()
            args.binary = target / ("debug" if args.dev else "release") / "feast-server"
            if not args.binary.exists():
                subprocess.run(["cargo", "build", *([] if args.dev else ["--release"]), "-p", "feast-server",
                                "--bins"], cwd=ROOT, check=True)
        if not args.binary.exists():
            sys.exit(f"no binary at {args.binary}")
        if args.plugin is None:
            target = target or cargo_target_dir()
            subprocess.run(["cargo", "build", "--profile", "plugin", "--target", "wasm32-wasip2", "-p",
                            "transformed-conv-rate", "--target-dir", str(target / "plugins")], cwd=ROOT, check=True)
            args.plugin = target / "plugins" / "wasm32-wasip2" / "plugin" / PLUGIN_FILE
    except (subprocess.CalledProcessError, KeyboardInterrupt) as e:
        log(f"# setup failed: {e}")
        return 2
    if shutil.which("redis-server") is None:
        log("# redis-server is required (tests/prereqs.sh installs it)")
        return 2

    cmdline = " ".join([Path(sys.executable).name, *sys.argv])
    work = Path(tempfile.mkdtemp(prefix="feast-soak-"))
    soak = Soak(args, args.binary.resolve(), args.plugin, work)
    started = False
    try:
        try:
            soak.setup()
        except (RuntimeError, OSError, grpc.RpcError) as e:
            log(f"# setup failed: {e}")
            return 2
        started = True
        try:
            soak.run()
        except KeyboardInterrupt:
            soak.interrupted = True
            log("# interrupted: stopping")
        except Exception as e:  # the soak's own failure (e.g. Redis would not restart): still report
            import traceback
            traceback.print_exc()
            soak.problem(f"the soak itself failed: {e!r}")
    except KeyboardInterrupt:
        soak.interrupted = True
        log("# interrupted: stopping")
        return 130
    finally:
        # Servers and Redis stop whatever happened (SIGTERM to each process group, then SIGKILL).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        soak.stop.set()
        soak.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not started:
        return 2
    res = Results(soak)
    res.write_csv(args.out / "soak.csv")
    res.write_report(args.out / "report.md", cmdline)
    res.write_svg(args.out / "soak.svg")
    print(res.summary())
    print(f"\nresults: {args.out}/report.md, soak.csv, nonok.csv, soak.svg, server-*.log")
    if soak.interrupted:
        return 130
    return 0 if res.passed else 1


if __name__ == "__main__":
    sys.exit(main())
