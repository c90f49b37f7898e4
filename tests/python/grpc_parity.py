#!/usr/bin/env python3
"""Independent gRPC client check: Feast's own Python stubs (shipped inside the pip
`feast` package, `feast.protos.feast.serving.ServingService_pb2_grpc`) with grpcio
against feast-server in gRPC mode, compared with the same server's HTTP answers for
every golden success case; errors must come back as proper gRPC codes.

    python grpc_parity.py --binary target/debug/feast-server

Run with the venv from demo/feast_venv.sh. Exit status 1 on any mismatch.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from feast.feature_server_utils import convert_response_to_dict
from feast.protos.feast.serving import ServingService_pb2 as pb
from feast.protos.feast.serving import ServingService_pb2_grpc as pb_grpc
from feast.protos.feast.types.Value_pb2 import RepeatedValue, Value

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_value(v):
    if v is None:
        return Value()
    if isinstance(v, bool):
        return Value(bool_val=v)
    if isinstance(v, int):
        return Value(int64_val=v)
    if isinstance(v, float):
        return Value(double_val=v)
    return Value(string_val=str(v))


def grpc_request(body):
    req = pb.GetOnlineFeaturesRequest(
        full_feature_names=bool(body.get("full_feature_names", False)),
        include_feature_view_version_metadata=bool(body.get("include_feature_view_version_metadata", False)),
    )
    if body.get("feature_service"):
        req.feature_service = body["feature_service"]
    else:
        req.features.val.extend(body.get("features", []))
    for k, vals in body.get("entities", {}).items():
        req.entities[k].CopyFrom(RepeatedValue(val=[to_value(v) for v in vals]))
    return req


def columns(d):
    names = d["metadata"]["feature_names"]
    return {n: {k: d["results"][i].get(k) for k in ("values", "statuses", "event_timestamps")}
            for i, n in enumerate(names)}


def start(binary, repo, args, port):
    proc = subprocess.Popen([binary, "-c", str(repo), "serve", "-p", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc


def wait(check, what):
    for _ in range(300):
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--golden", default=str(ROOT / "tests" / "golden" / "sqlite"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="grpc-parity-"))
    procs = []
    try:
        repo = tmp / "feature_repo"
        shutil.copytree(ROOT / "demo" / "feature_repo", repo)
        subprocess.run([sys.executable, str(ROOT / "demo" / "refresh_timestamps.py"),
                        str(repo / "data" / "online_store.db")], check=True, capture_output=True)
        http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        procs.append(start(args.binary, repo, [], http_port))
        procs.append(start(args.binary, repo, ["-t", "grpc", "--metrics-port", str(metrics_port)], grpc_port))
        base = f"http://127.0.0.1:{http_port}"
        wait(lambda: urllib.request.urlopen(base + "/health", timeout=1).status == 200, "HTTP server")
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = pb_grpc.ServingServiceStub(channel)
        wait(lambda: stub.GetFeastServingInfo(pb.GetFeastServingInfoRequest(), timeout=1).version, "gRPC server")

        compared, failures = 0, []
        for path in sorted(Path(args.golden).glob("*.json")):
            case = json.loads(path.read_text())
            req = case["request"]
            if req["path"] != "/get-online-features" or req["method"] != "POST" or case["response"]["status"] != 200:
                continue
            body = json.loads(req["body_raw"])
            http_req = urllib.request.Request(base + "/get-online-features", data=req["body_raw"].encode(),
                                              headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(http_req, timeout=10) as r:
                    http_body = json.loads(r.read())
            except urllib.error.HTTPError as e:
                http_body = None
                http_status = e.code
            try:
                resp = stub.GetOnlineFeatures(grpc_request(body), timeout=10)
                grpc_body = convert_response_to_dict(resp)
            except grpc.RpcError as e:
                grpc_body = None
                grpc_code = e.code()
            if http_body is None and grpc_body is None:
                continue  # both refuse (e.g. on-demand views without a plugin)
            if http_body is None or grpc_body is None:
                failures.append(f"{case['name']}: HTTP {'ok' if http_body else http_status} vs gRPC "
                                f"{'ok' if grpc_body else grpc_code}")
                continue
            compared += 1
            if columns(http_body) != columns(grpc_body):
                failures.append(f"{case['name']}: gRPC answer differs from HTTP")

        for features, code in [(["nope:conv_rate"], grpc.StatusCode.NOT_FOUND),
                               (["conv_rate"], grpc.StatusCode.INVALID_ARGUMENT)]:
            try:
                stub.GetOnlineFeatures(grpc_request({"features": features, "entities": {"driver_id": [1001]}}))
                failures.append(f"{features}: no error")
            except grpc.RpcError as e:
                if e.code() != code:
                    failures.append(f"{features}: {e.code()} != {code}")
        print(f"gRPC (Feast's Python stubs) vs HTTP: {compared} golden cases compared, {len(failures)} failures")
        for f in failures:
            print("FAIL", f)
        sys.exit(1 if failures or compared < 15 else 0)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
