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

    bench/bench.py                          # ours vs tuned Python (1 worker), SQLite
    bench/bench.py --servers ours,python,python-w2 --conns 8,32 --duration 15
    bench/bench.py --quick                  # a few seconds per case, dev build allowed
    bench/bench.py --rounds 3               # each case 3 times per server, interleaved; medians

Servers: ours (target/release/feast-server, built if missing), python (feast serve
--no-access-log --max-requests 0, 1 worker), python-w2 (the same with --workers 2),
floor (no server: the same store reads issued directly by the store's client library,
target/release/examples/store_floor), http-floor (target/release/examples/http_floor: our
HTTP stack on the same serving threads, loaded by the same wrk with the same request,
answering the bytes our server answered for the payload and doing nothing else; needs
ours), ours-grpc (our server with -t grpc, loaded by
target/release/examples/grpc_load, a tonic client with one HTTP/2 connection per
concurrent client; HTTP servers are loaded by wrk). The Python servers use the pinned Feast from
demo/feast_venv.sh. Stores: sqlite (the demo's online_store.db) and redis (a private
redis-server loaded with the exact bytes Feast wrote, tests/fixtures/redis_dump.json).
"""
import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "tests" / "python"))
from fixtures import RedisProcess, copy_demo_repo, free_port, write_store_config  # noqa: E402
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOADS = ["p1_1x3", "p10_10x5", "p100_100x3", "odfv_10x4"]


def http(method, url, body=None, timeout=5.0):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
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


class Server:
    """A server process started by this script and stopped by its PID."""

    def __init__(self, name, argv, cwd, port, env=None, health_url=None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
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


def run_wrk(url, payload, conns, duration, path="/get-online-features"):
    """wrk POSTing a payload to `path`, or GETting `path` when `payload` is None."""
    threads = 1 if conns < 2 else 2
    env = dict(os.environ)
    env.pop("BODY_FILE", None)
    if payload is not None:
        env["BODY_FILE"] = str(BENCH / "payloads" / f"{payload}.json")
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
         "-s", str(BENCH / "post.lua"), url + path],
        env=env, capture_output=True, text=True, check=False,
    ).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith("LUA_SUMMARY") or line.startswith("LUA_LATENCY_US"):
            for kv in line.split()[1:]:
                k, v = kv.split("=")
                res[k] = float(v)
    if "requests" not in res:
        raise RuntimeError("wrk output not understood:\n" + out)
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["errors"] = sum(res.get(k, 0) for k in
                        ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"))
    return res


def columns(body):
    d = json.loads(body)
    names = d["metadata"]["feature_names"]
    return {n: d["results"][i]["values"] for i, n in enumerate(names)}


def redis_repo(work: Path, sqlite_repo: Path, port: int) -> Path:
    repo = work / "feature_repo_redis"
    shutil.copytree(sqlite_repo, repo)
    write_store_config(repo, f"    type: redis\n    connection_string: \"127.0.0.1:{port}\"\n")
    return repo


def run_grpc_load(args, port, payload, conns, duration):
    load = args.server_bin.parent / "examples" / "grpc_load"
    out = subprocess.run([str(load), f"127.0.0.1:{port}", str(BENCH / "payloads" / f"{payload}.json"),
                          str(conns), str(duration)], capture_output=True, text=True, check=True).stdout
    res = dict(kv.split("=") for kv in out.split())
    return {"rps": float(res["rps"]), "p50": float(res["p50_us"]), "p99": float(res["p99_us"]),
            "errors": int(res["errors"])}


def run_floor(args, store, repo, redis_port, payload, conns, duration):
    floor = args.server_bin.parent / "examples" / "store_floor"
    target = f"127.0.0.1:{redis_port}" if store == "redis" else str(repo / "data" / "online_store.db")
    out = subprocess.run([str(floor), store, target, str(BENCH / "payloads" / f"{payload}.json"),
                          str(conns), str(duration)], capture_output=True, text=True, check=True).stdout
    res = dict(kv.split("=") for kv in out.split())
    return {"rps": float(res["rps"]), "p50": float(res["p50_us"]), "p99": float(res["p99_us"]), "errors": 0}


def start_http_floor(ours, payloads, args, work: Path):
    """The HTTP floor, replaying the responses `ours` gives to `payloads`."""
    responses = work / "http-floor-responses"
    responses.mkdir(exist_ok=True)
    for payload in payloads:
        body = (BENCH / "payloads" / f"{payload}.json").read_bytes()
        status, resp_body = http("POST", ours.url + "/get-online-features", body, timeout=30)
        if status == 200:
            (responses / f"{payload}.json").write_bytes(resp_body)
    port = free_port()
    return Server("http-floor", [str(args.server_bin.parent / "examples" / "http_floor"), str(port), str(responses)],
                  cwd=work, port=port)


def start_server(kind, repo, args):
    port = free_port()
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
    venv = subprocess.run([str(ROOT / "demo" / "feast_venv.sh")], capture_output=True,
                          text=True, check=True).stdout.strip()
    extra = ["--workers", "2"] if kind == "python-w2" else []
    return Server(kind, [f"{venv}/bin/feast", "-c", str(repo), "serve", "-p", str(port),
                         "--no-access-log", "--max-requests", "0", *extra],
                  cwd=repo, port=port,
                  env={"PYTHONHASHSEED": "0", "GUNICORN_CMD_ARGS": f"--control-socket {repo}/gunicorn.ctl"})


def cargo_target_dir():
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                                     capture_output=True, check=True).stdout)
    return Path(meta["target_directory"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="ours,python,floor")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--payloads", default="p1_1x3,p10_10x5,p100_100x3,odfv_10x4")
    ap.add_argument("--conns", default="8,32")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1,
                    help="loads per server and case, interleaved across servers (medians are reported)")
    ap.add_argument("--quick", action="store_true", help="2 s per case, 1 s warm-up, 8 connections only")
    ap.add_argument("--server-bin", type=Path, default=None,
                    help="feast-server binary (its directory must hold examples/store_floor and grpc_load)")
    ap.add_argument("--dev", action="store_true", help="use the dev build (quick checks; not for figures)")
    ap.add_argument("--plugins", type=Path, default=None, help="Wasm plugin directory (default: build the demo's)")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "latest")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.conns = 2, 1, "8"
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
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
    payloads = [p for p in args.payloads.split(",") if p]
    conns = [int(c) for c in args.conns.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

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
            repo = redis_repo(Path(tmp), sqlite_repo, redis.port) if redis else sqlite_repo
            try:
                rows += bench_store(store, repo, redis.port if redis else 0, args, servers, payloads, conns)
            finally:
                if redis:
                    redis.stop()

    write_results(rows, servers, args.out)


def row_of(kind, store, payload, conns, r, cpu, srv):
    return {
        "server": kind, "store": store, "payload": payload, "conns": conns,
        "rps": round(r["rps"], 1), "p50_ms": round(r["p50"] / 1000, 3),
        "p99_ms": round(r["p99"] / 1000, 3), "errors": int(r["errors"]),
        "cpu_pct": "" if cpu is None else round(cpu), "rss_mb": "" if srv is None else round(rss_mb(srv.proc.pid)),
        "startup_s": "" if srv is None else round(srv.startup_s, 3),
        "idle_rss_mb": "" if srv is None else round(srv.idle_rss_mb),
    }


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
    elif kind == "http-floor":
        r = run_wrk(srv.url, payload, c, args.duration, f"/replay/{payload}")
    else:
        r = run_wrk(srv.url, payload, c, args.duration)
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
            if kind not in ("floor", "http-floor"):
                running[kind] = start_server(kind, repo, args)
                print(f"# {kind}/{store}: healthy after {running[kind].startup_s:.2f} s, "
                      f"idle RSS {running[kind].idle_rss_mb:.0f} MB", file=sys.stderr)
        if "http-floor" in servers:
            if "ours" not in running:
                sys.exit("http-floor replays the answers of ours: add ours to --servers")
            running["http-floor"] = start_http_floor(running["ours"], payloads, args, repo.parent)
        for payload in payloads:
            kinds = [k for k in servers if not (k == "floor" and payload.startswith("odfv"))]
            reference = None
            for kind in list(kinds):
                srv = running.get(kind)
                if srv is None:
                    continue
                if kind == "ours-grpc":
                    run_grpc_load(args, srv.port, payload, conns[0], args.warmup)
                    continue
                if kind == "http-floor":
                    run_wrk(srv.url, payload, conns[0], args.warmup, f"/replay/{payload}")
                    continue
                body = (BENCH / "payloads" / f"{payload}.json").read_bytes()
                status, resp_body = http("POST", srv.url + "/get-online-features", body, timeout=30)
                if status != 200:
                    print(f"# {kind} {payload}: HTTP {status}: {resp_body[:300]!r}; skipped", file=sys.stderr)
                    kinds.remove(kind)
                    continue
                cols = columns(resp_body)
                if reference is not None and reference != cols:
                    print(f"# WARNING {kind}/{store} {payload}: answer differs from the first server", file=sys.stderr)
                reference = reference or cols
                run_wrk(srv.url, payload, conns[0], args.warmup)
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
                    if kind == "ours":
                        for other in ("python", "floor", "http-floor"):
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

    head = ["store", "payload", "conns", "server", "req/s", "p50 ms", "p99 ms", "CPU %", "RSS MB",
            "ours/python", "ours/floor", "ours/http-floor", "ours/bound", "bound/floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {s: i for i, s in enumerate(servers)}
    for r in sorted(rows, key=lambda r: (r["store"], r["payload"], r["conns"], order.get(r["server"], 99))):
        lines.append("| " + " | ".join([
            r["store"], r["payload"], str(r["conns"]), r["server"], f"{r['rps']:.0f}",
            f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["cpu_pct"]), str(r["rss_mb"]),
            ratio(r, "python"), ratio(r, "floor"), ratio(r, "http-floor"), ratio(r, "bound"),
            f"{r['bound/floor']:.2f}x" if r.get("bound/floor") else ""]) + " |")
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


COLORS = {"ours": "#1b7837", "ours-grpc": "#5aae61", "python": "#c51b7d", "python-w2": "#e9a3c9",
          "floor": "#4393c3", "http-floor": "#92c5de"}


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
