#!/usr/bin/env python3
"""Throughput of feast-server with feature logging on vs off, in the same run (stdlib only).

    bench/logging_bench.py                       # 11 rounds x 6 s per mode, 8 connections
    bench/logging_bench.py --rounds 5 --duration 15 --conns 8,32

Two copies of the demo repository (event times moved to now) get a feature service
`driver_activity_logged` (driver_hourly_stats: conv_rate, acc_rate, avg_daily_trips;
driver_hourly_stats_fresh: conv_rate, acc_rate) with a file logging destination; one
server runs with `feature_server.feature_logging.enabled: true` (Feast's default knobs),
the other without. wrk posts bench/payloads/logged_10x5.json (10 entities x 5
features, full feature names) to each in alternating rounds. Release build.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SERVICE = "driver_activity_logged"
FLOAT, INT64 = 6, 4
PROJECTIONS = [
    ("driver_hourly_stats", [("conv_rate", FLOAT), ("acc_rate", FLOAT), ("avg_daily_trips", INT64)]),
    ("driver_hourly_stats_fresh", [("conv_rate", FLOAT), ("acc_rate", FLOAT)]),
]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(num: int, payload: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def service_entry(path: str) -> bytes:
    """`Registry.feature_services` entry (field 7) for the logged service."""
    projections = b"".join(
        ld(3, ld(1, view.encode()) + b"".join(ld(2, ld(1, f.encode()) + varint(2 << 3) + varint(t)) for f, t in feats))
        for view, feats in PROJECTIONS
    )
    logging = varint(1 << 3 | 5) + struct.pack("<f", 1.0) + ld(3, ld(1, path.encode()))
    spec = ld(1, SERVICE.encode()) + ld(2, b"repo") + projections + ld(7, logging)
    return ld(7, ld(1, spec))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(base: Path, name: str, logging: bool) -> Path:
    repo = base / name
    shutil.copytree(ROOT / "demo" / "feature_repo", repo)
    subprocess.run([sys.executable, str(ROOT / "demo" / "refresh_timestamps.py"), str(repo / "data" / "online_store.db")], check=True)
    with open(repo / "data" / "registry.db", "ab") as f:
        f.write(service_entry("logs"))
    if logging:
        with open(repo / "feature_store.yaml", "a") as f:
            f.write("\nfeature_server:\n  type: local\n  feature_logging:\n    enabled: true\n")
    return repo


def start(binary: Path, repo: Path, log: Path):
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-c", str(repo), "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"server did not start, see {log}")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_cpu(stat: str) -> tuple[str, float]:
    """Name and user + system CPU seconds of a /proc `stat` line (process or thread)."""
    name, rest = stat.split("(", 1)[1].rsplit(")", 1)
    fields = rest.split()
    return name, (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """CPU time of a process so far (all its threads, the writer included)."""
    return stat_cpu(Path(f"/proc/{pid}/stat").read_text())[1]


def thread_cpu_seconds(pid: int, name: str) -> float:
    """CPU time so far of the process's threads called `name`."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm, seconds = stat_cpu((task / "stat").read_text())
        except OSError:
            continue
        if comm == name:
            total += seconds
    return total


def wrk(url: str, conns: int, duration: int) -> dict:
    env = dict(os.environ, BODY_FILE=str(BENCH / "payloads" / "logged_10x5.json"))
    out = subprocess.run(
        ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
         "-s", str(BENCH / "post.lua"), url + "/get-online-features"],
        env=env, capture_output=True, text=True, check=True).stdout
    s = dict(re.findall(r"(\w+)=([\d.]+)", out.split("LUA_SUMMARY", 1)[1]))
    errors = sum(int(s[k]) for k in s if k.startswith("errors"))
    if errors:
        sys.exit(f"wrk saw {errors} errors:\n{out}")
    return {"requests": int(s["requests"]), "rps": int(s["requests"]) / (int(s["duration_us"]) / 1e6),
            "p50": float(s["p50"]) / 1000, "p99": float(s["p99"]) / 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--conns", default="8")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "feast-server"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "release" / "feast-server"

    base = Path(tempfile.mkdtemp(prefix="logging-bench-"))
    servers = {}
    try:
        for mode, on in (("off", False), ("on", True)):
            repo = prepare(base, mode, on)
            proc, url = start(binary, repo, base / f"{mode}.log")
            servers[mode] = (proc, url, repo)
        results = {}
        for conns in [int(c) for c in args.conns.split(",")]:
            for mode in ("off", "on"):
                wrk(servers[mode][1], conns, args.warmup)
            for r in range(args.rounds):
                for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    pid = servers[mode][0].pid
                    cpu0, writer0 = cpu_seconds(pid), thread_cpu_seconds(pid, "feature-logging")
                    res = wrk(servers[mode][1], conns, args.duration)
                    res["cpu_us"] = (cpu_seconds(pid) - cpu0) * 1e6 / res["requests"]
                    res["writer_us"] = (thread_cpu_seconds(pid, "feature-logging") - writer0) * 1e6 / res["requests"]
                    results.setdefault((conns, mode), []).append(res)
                    print(f"conns={conns} round={r} logging={mode}: {res['rps']:,.0f} req/s "
                          f"p50 {res['p50']:.2f} ms p99 {res['p99']:.2f} ms, server CPU {res['cpu_us']:.1f} us/req "
                          f"(writer thread {res['writer_us']:.1f})", flush=True)
    finally:
        for proc, _, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _, _ in servers.values():
            proc.wait(timeout=120)

    print("\n| conns | logging | req/s (mean of rounds) | p50 ms | p99 ms | server CPU us/req | of which writer thread |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for (conns, mode), rs in results.items():
        mean = lambda k: sum(x[k] for x in rs) / len(rs)
        print(f"| {conns} | {mode} | {mean('rps'):,.0f} | {mean('p50'):.2f} | {mean('p99'):.2f} | {mean('cpu_us'):.1f} "
              f"| {mean('writer_us'):.1f} |")
    for conns in sorted({c for c, _ in results}):
        off = sum(x["rps"] for x in results[(conns, "off")]) / args.rounds
        on = sum(x["rps"] for x in results[(conns, "on")]) / args.rounds
        cpu_off = sum(x["cpu_us"] for x in results[(conns, "off")]) / args.rounds
        cpu_on = sum(x["cpu_us"] for x in results[(conns, "on")]) / args.rounds
        writer_on = sum(x["writer_us"] for x in results[(conns, "on")]) / args.rounds
        # Each round loads both servers back to back: the ratio within a round is the
        # least affected by this machine's drifting speed; report the median one.
        pairs = sorted(o["rps"] / f["rps"] for o, f in zip(results[(conns, "on")], results[(conns, "off")]))
        mid = pairs[len(pairs) // 2] if len(pairs) % 2 else (pairs[len(pairs) // 2 - 1] + pairs[len(pairs) // 2]) / 2
        print(f"conns={conns}: logging costs {100 * (1 - mid):.1f} % of throughput (median of {len(pairs)} "
              f"rounds; {100 * (1 - on / off):.1f} % by mean req/s), "
              f"{cpu_on - cpu_off:.1f} us of server CPU per request (+{100 * (cpu_on / cpu_off - 1):.1f} %), "
              f"of which the writer thread {writer_on:.1f} us ({100 * writer_on / cpu_on:.1f} % of the server's CPU)")
    log = (base / "on.log").read_text()
    stopped = re.findall(r"feature logging stopped.*", log)
    print("logging server at shutdown:", stopped[-1] if stopped else "(no summary in log)")
    files = list((servers["on"][2] / "logs").glob("*.parquet"))
    print(f"{len(files)} Parquet file(s), {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {servers['on'][2] / 'logs'}")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
