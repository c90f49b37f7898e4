#!/usr/bin/env python3
"""Do reads wait on this server's writes, or on the machine? Reads (wrk, p1_1x3, 8
connections) on server A with no pushes, with 1,000 rows/s (100 x push_10) pushed to A,
and with the same pushes sent to a second server B on the same Redis; the three
conditions alternate over --rounds; medians of the p99s.

    python3 bench/reads_while_pushing_elsewhere.py [--rounds 5] [--duration 8]

Release build (target/release/feast-server, built if missing by bench.py's rules); the
demo plugin from bench.py's build.
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from fixtures import RedisProcess, copy_demo_repo  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--server-bin", type=Path, default=None)
    args = ap.parse_args()
    target = bench.cargo_target_dir()
    if args.server_bin is None:
        subprocess.run(["cargo", "build", "--release", "-p", "feast-server", "--bin", "feast-server"],
                       cwd=bench.ROOT, check=True)
        args.server_bin = target / "release" / "feast-server"
    subprocess.run(["cargo", "build", "--profile", "plugin", "--target", "wasm32-wasip2", "-p",
                    "transformed-conv-rate", "--target-dir", str(target / "plugins")], cwd=bench.ROOT, check=True)
    args.plugins = Path(tempfile.mkdtemp(prefix="bench-plugins-"))
    shutil.copy(target / "plugins" / "wasm32-wasip2" / "plugin" / "transformed_conv_rate.wasm", args.plugins)
    with tempfile.TemporaryDirectory(prefix="feast-bench-") as tmp:
        redis = RedisProcess(Path(tmp))
        repo = bench.redis_repo(Path(tmp), copy_demo_repo(Path(tmp) / "feature_repo"), redis.port)
        a, b = bench.start_server("ours", repo, args), bench.start_server("ours", repo, args)
        p99 = {"no pushes": [], "pushes to A": [], "pushes to B": []}
        try:
            bench.run_wrk(a.url, "p1_1x3", 8, 2)
            for rnd in range(args.rounds):
                order = list(p99)[rnd % 3:] + list(p99)[:rnd % 3]
                for cond in order:
                    pusher = None
                    if cond != "no pushes":
                        pusher = bench.Pusher((a if cond == "pushes to A" else b).port, "push_10", 100, 2).start()
                        time.sleep(0.5)
                    r = bench.run_wrk(a.url, "p1_1x3", 8, args.duration)
                    if pusher:
                        pusher.stop()
                    p99[cond].append(r["p99"] / 1000)
                    print(f"round={rnd} {cond}: p99 {r['p99'] / 1000:.3f} ms, p50 {r['p50'] / 1000:.3f} ms, "
                          f"{r['rps']:.0f} req/s", flush=True)
        finally:
            a.stop()
            b.stop()
            redis.stop()
        base = statistics.median(p99["no pushes"])
        for cond, v in p99.items():
            m = statistics.median(v)
            print(f"{cond}: median p99 {m:.3f} ms ({m / base:.2f}x)")


if __name__ == "__main__":
    main()
