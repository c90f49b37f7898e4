#!/usr/bin/env python3
"""Materialization: `feast materialize` (Feast 0.67.0, the venv of demo/feast_venv.sh)
against `feast-server materialize`, on the same Parquet source and window.

    bench/materialize_bench.py                              # 10,000 entities x 10 rows, 3 rounds
    bench/materialize_bench.py --entities 1000 --rows-per-entity 5 --rounds 1 --stores sqlite
    bench/materialize_bench.py --server-bin target/debug/feast-server ...  # no build

A Parquet file with the schema of demo/feature_repo/data/driver_stats.parquet is
generated: --entities driver ids (1001, 1002, ...) with --rows-per-entity rows each,
event times spread over [--start, --end), created = event time + 5 min. Per store, two
private copies of the demo repository (one per tool) read it: the demo registry names the
source of driver_hourly_stats by a path relative to the repository
(data/driver_stats.parquet), so the file takes that place in each copy (an absolute path
would be rewritten in the copy's registry). Each timed run starts from the copy's
pristine registry and an empty online store (SQLite: the demo's tables emptied; Redis: a
private redis-server started for the run), then runs

    feast -c REPO materialize START END -v driver_hourly_stats
    feast-server -c REPO materialize START END -v driver_hourly_stats

as processes (wall time: start-up and the whole command, as a user sees it), the two
tools alternating in order over --rounds. Reported per run: wall time, input rows/s (rows
in the window / wall), written rows/s (entities written, the latest row of each, /
wall), the entities and feature values the store holds afterwards (both tools must end
with the same counts), and per round feast wall / ours wall; then the medians. An
"empty" run per tool and store (a window without rows) shows the fixed cost. Results:
materialize.csv and materialize.md in --out. Runs in the Feast venv (re-executes itself
there); needs redis-server for --stores redis.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def feast_venv() -> Path:
    return Path(subprocess.run([str(ROOT / "demo" / "feast_venv.sh")], capture_output=True, text=True,
                               check=True).stdout.strip())


if __name__ == "__main__":
    _venv = feast_venv()
    if Path(sys.prefix).resolve() != _venv.resolve() and not os.environ.get("MATERIALIZE_BENCH_REEXEC"):
        os.environ["MATERIALIZE_BENCH_REEXEC"] = "1"
        os.execv(str(_venv / "bin" / "python"), [str(_venv / "bin" / "python"), __file__, *sys.argv[1:]])

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
from fixtures import RedisServer, copy_demo_repo, write_store_config  # noqa: E402

VIEW = "driver_hourly_stats"
TABLE = f"repo_{VIEW}"
FIRST_ID = 1001
DEMO_PARQUET = ROOT / "demo" / "feature_repo" / "data" / "driver_stats.parquet"


def parse_ts(s: str) -> datetime:
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def generate(path: Path, entities: int, rows_per_entity: int, start: datetime, end: datetime, seed: int = 7) -> int:
    """The Parquet source: the demo file's schema, `entities` x `rows_per_entity` rows."""
    schema = pq.read_schema(DEMO_PARQUET).remove_metadata()
    rnd = random.Random(seed)
    start_ns = int(start.timestamp()) * 10**9
    step_s = (end - start).total_seconds() / rows_per_entity
    cols = {f.name: [] for f in schema}
    for e in range(entities):
        offset = (e * 7919) % max(1, int(step_s))  # spread the entities inside each slot
        for k in range(rows_per_entity):
            t = start_ns + (int(k * step_s) + offset) * 10**9
            cols["event_timestamp"].append(t)
            cols["driver_id"].append(FIRST_ID + e)
            cols["conv_rate"].append(rnd.random())
            cols["acc_rate"].append(rnd.random())
            cols["avg_daily_trips"].append(rnd.randrange(1, 1000))
            cols["created"].append(t + 300 * 10**9)
            cols["driver_metadata"].append({"vehicle_type": rnd.choice(["sedan", "suv", "van"]),
                                            "rating": f"{rnd.uniform(3, 5):.1f}"})
            cols["driver_config"].append(json.dumps({"max_distance_km": rnd.randrange(10, 200),
                                                     "preferred_zones": rnd.sample(["north", "south", "east",
                                                                                    "west"], 2)}))
            cols["driver_profile"].append({"name": f"driver_{FIRST_ID + e}", "age": str(rnd.randrange(21, 65))})
    table = pa.Table.from_arrays([pa.array(cols[f.name], type=f.type) for f in schema], schema=schema)
    pq.write_table(table, path)
    return table.num_rows


def source_uri(repo: Path) -> str:
    from feast.protos.feast.core.Registry_pb2 import Registry
    r = Registry()
    r.ParseFromString((repo / "data" / "registry.db").read_bytes())
    for fv in r.feature_views:
        if fv.spec.name == VIEW:
            return fv.spec.batch_source.file_options.uri
    raise SystemExit(f"no feature view {VIEW} in the demo registry")


def use_parquet(repo: Path, parquet: Path):
    """Makes the copy's registry read `parquet` as the source of VIEW."""
    uri = source_uri(repo)
    if not os.path.isabs(uri) and "://" not in uri:
        shutil.copy(parquet, repo / uri)  # relative to the repository: the file takes its place
        return
    from feast.protos.feast.core.Registry_pb2 import Registry
    path = repo / "data" / "registry.db"
    r = Registry()
    r.ParseFromString(path.read_bytes())
    target = repo / "data" / "materialize_source.parquet"
    shutil.copy(parquet, target)
    for ds in r.data_sources:
        if ds.file_options.uri == uri:
            ds.file_options.uri = str(target)
    for fv in r.feature_views:
        if fv.spec.batch_source.file_options.uri == uri:
            fv.spec.batch_source.file_options.uri = str(target)
    path.write_bytes(r.SerializeToString())


def empty_sqlite(db: Path):
    con = sqlite3.connect(db)
    for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        con.execute(f'DELETE FROM "{t}"')
    con.commit()
    con.execute("VACUUM")
    con.close()


class Copy:
    """One tool's private repository for one store: pristine registry and online store,
    restored before every run."""

    def __init__(self, tmp: Path, name: str, store: str, parquet: Path):
        self.repo = copy_demo_repo(tmp / name)
        self.store = store
        use_parquet(self.repo, parquet)
        data = self.repo / "data"
        empty_sqlite(data / "online_store.db")
        self.pristine = tmp / f"{name}-pristine"
        self.pristine.mkdir()
        for f in ("registry.db", "online_store.db"):
            shutil.copy(data / f, self.pristine / f)
        self.redis = None

    def reset(self, tmp: Path):
        data = self.repo / "data"
        for f in ("registry.db", "online_store.db"):
            shutil.copy(self.pristine / f, data / f)
        for f in ("online_store.db-wal", "online_store.db-shm"):
            (data / f).unlink(missing_ok=True)
        if self.store == "redis":
            self.redis = RedisServer(tmp / f"redis-{time.monotonic_ns()}")
            write_store_config(self.repo, f"    type: redis\n    connection_string: \"127.0.0.1:{self.redis.port}\"\n")

    def counts(self):
        """(entities, feature values) of VIEW in the online store."""
        if self.store == "sqlite":
            con = sqlite3.connect(self.repo / "data" / "online_store.db")
            try:
                values, entities = con.execute(
                    f'SELECT count(*), count(DISTINCT entity_key) FROM "{TABLE}"').fetchone()
            finally:
                con.close()
            return entities, values
        import redis
        c = redis.Redis(host="127.0.0.1", port=self.redis.port)
        keys = list(c.scan_iter(count=1000))
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.hkeys(k)
        entities = values = 0
        ts_field = f"_ts:{VIEW}".encode()
        for fields in pipe.execute():
            if ts_field in fields:
                entities += 1
                values += len([f for f in fields if not f.startswith(b"_ts:")])
        c.close()
        return entities, values

    def done(self):
        if self.redis:
            self.redis.stop()
            self.redis = None


def run_tool(tool: str, copy: Copy, window, args, tmp: Path):
    copy.reset(tmp)
    try:
        if tool == "feast":
            cmd = [str(args.venv / "bin" / "feast"), "-c", str(copy.repo), "materialize", *window, "-v", VIEW]
        else:
            cmd = [str(args.server_bin), "-c", str(copy.repo), "materialize", *window, "-v", VIEW]
        t0 = time.monotonic()
        p = subprocess.run(cmd, cwd=copy.repo, capture_output=True, text=True,
                           env={**os.environ, "RUST_LOG": "warn"})
        wall = time.monotonic() - t0
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}:\n{(p.stdout + p.stderr)[-2000:]}")
        entities, values = copy.counts()
        return wall, entities, values
    finally:
        copy.done()


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", type=int, default=10000)
    ap.add_argument("--rows-per-entity", type=int, default=10)
    ap.add_argument("--start", default="2026-11-01T00:00:00Z", help="window start (event times from here)")
    ap.add_argument("--end", default="2026-11-21T00:00:00Z", help="window end (event times before it)")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--rounds", type=int, default=3, help="runs per tool and store, alternating the order")
    ap.add_argument("--no-empty-run", action="store_true", help="skip the run on a window without rows")
    ap.add_argument("--server-bin", type=Path, default=None, help="feast-server binary (default: build release)")
    ap.add_argument("--dev", action="store_true", help="build and use the dev binary (checks only)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest" / "materialize")
    args = ap.parse_args()
    args.venv = feast_venv()
    if args.server_bin is None:
        from bench import cargo_target_dir
        profile = "dev" if args.dev else "release"
        subprocess.run(["cargo", "build", "--profile", profile, "--workspace", "--bins", "--examples"],
                       cwd=ROOT, check=True)
        args.server_bin = cargo_target_dir() / ("debug" if args.dev else "release") / "feast-server"
    args.server_bin = args.server_bin.resolve()
    start, end = parse_ts(args.start), parse_ts(args.end)
    window = (args.start, args.end)
    empty_window = ((start - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    (start - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="feast-materialize-bench-") as tmp:
        tmp = Path(tmp)
        parquet = tmp / "driver_stats.parquet"
        t0 = time.monotonic()
        input_rows = generate(parquet, args.entities, args.rows_per_entity, start, end)
        print(f"# {input_rows} rows ({args.entities} entities) in {parquet.stat().st_size / 1e6:.1f} MB, "
              f"generated in {time.monotonic() - t0:.1f} s; window {window[0]} .. {window[1]}", file=sys.stderr)
        for store in args.stores.split(","):
            copies = {tool: Copy(tmp, f"{store}-{tool}", store, parquet) for tool in ("feast", "ours")}
            if not args.no_empty_run:
                for tool in ("feast", "ours"):
                    wall, entities, values = run_tool(tool, copies[tool], empty_window, args, tmp)
                    row = {"store": store, "tool": tool, "round": "empty", "wall_s": round(wall, 3),
                           "input_rows": 0, "entities": entities, "values": values}
                    print("  ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
                    rows.append(row)
            per_round = []
            for rnd in range(args.rounds):
                got = {}
                for tool in (("feast", "ours") if rnd % 2 == 0 else ("ours", "feast")):
                    wall, entities, values = run_tool(tool, copies[tool], window, args, tmp)
                    got[tool] = row = {
                        "store": store, "tool": tool, "round": rnd, "wall_s": round(wall, 3),
                        "input_rows": input_rows, "entities": entities, "values": values,
                        "input_rows_s": round(input_rows / wall), "written_rows_s": round(entities / wall),
                    }
                    print("  ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
                    rows.append(row)
                f, o = got["feast"], got["ours"]
                o["feast/ours_wall"] = round(f["wall_s"] / o["wall_s"], 2)
                same = (f["entities"], f["values"]) == (o["entities"], o["values"])
                o["same_counts"] = f["same_counts"] = "yes" if same else "NO"
                if not same:
                    print(f"# WARNING {store} round {rnd}: feast wrote {f['entities']} entities / {f['values']} "
                          f"values, ours {o['entities']} / {o['values']}", file=sys.stderr)
                if f["entities"] != args.entities:
                    print(f"# WARNING {store}: {f['entities']} entities written of {args.entities}", file=sys.stderr)
                per_round.append(got)
            for tool in ("feast", "ours"):
                rs = [g[tool] for g in per_round]
                med = {"store": store, "tool": tool, "round": "median",
                       "wall_s": round(median([r["wall_s"] for r in rs]), 3), "input_rows": input_rows,
                       "entities": rs[-1]["entities"], "values": rs[-1]["values"],
                       "input_rows_s": round(median([r["input_rows_s"] for r in rs])),
                       "written_rows_s": round(median([r["written_rows_s"] for r in rs])),
                       "same_counts": "yes" if all(r["same_counts"] == "yes" for r in rs) else "NO"}
                if tool == "ours":
                    med["feast/ours_wall"] = round(median([r["feast/ours_wall"] for r in rs]), 2)
                rows.append(med)
    write_results(rows, args)


def write_results(rows, args):
    with open(args.out / "materialize.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    head = ["store", "tool", "round", "wall s", "input rows/s", "written rows/s", "entities", "feature values",
            "same counts", "feast wall / ours wall"]
    lines = [f"{args.entities} entities x {args.rows_per_entity} rows, window {args.start} .. {args.end}, "
             f"view {VIEW}; `empty`: a window without rows (fixed cost).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in [
            r["store"], r["tool"], r["round"], f"{r['wall_s']:.2f}", r.get("input_rows_s", ""),
            r.get("written_rows_s", ""), r["entities"], r["values"], r.get("same_counts", ""),
            f"{r['feast/ours_wall']:.2f}x" if r.get("feast/ours_wall") else ""]) + " |")
    table = "\n".join(lines)
    (args.out / "materialize.md").write_text(table + "\n")
    print(table)
    print(f"\nresults: {args.out}/materialize.csv, {args.out}/materialize.md", file=sys.stderr)


if __name__ == "__main__":
    main()
