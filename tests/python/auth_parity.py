#!/usr/bin/env python3
"""The Feast SDK against a server with OIDC on: the same results and the same
exceptions as against `feast serve` configured the same way.

The client is Feast's own: `online_store: {type: remote}` and `auth: {type: oidc,
client_id, client_secret, username, password, auth_discovery_url, ca_cert_path}`, so the
SDK logs in to the test OIDC issuer (the tests crate's `test_oidc_issuer`, HTTPS, real
RSA keys) with the password grant and sends the token it gets. Users whose tokens the
issuer breaks (expired, bad signature, wrong audience) and a client without auth show
what a refused request raises.

    python auth_parity.py --binary target/debug/feast-server --issuer target/debug/test_oidc_issuer
    python auth_parity.py --issuer ... --capture   # run against feast serve, write the goldens

Run with the venv from demo/feast_venv.sh. Exit status 1 on any difference.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import ROOT, ServerProcess, free_port, wait_healthy  # noqa: E402

warnings.simplefilter("ignore")
import pandas as pd  # noqa: E402
from feast import FeatureStore, RepoConfig  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "auth" / "feature_repo"
GOLDEN = ROOT / "tests" / "golden" / "auth" / "sdk.json"
ROWS = [{"driver_id": 1001}, {"driver_id": 1002}]


def write_df():
    return pd.DataFrame({
        "driver_id": [1003], "conv_rate": [0.3], "acc_rate": [0.4],
        "event_timestamp": [pd.Timestamp("2026-11-22", tz="UTC")],
    })


# (name, user (None: a client without auth), password, what the client does)
CASES = [
    ("alice reads driver_stats", "alice", None, ("read", ["driver_stats:conv_rate", "driver_stats:acc_rate"])),
    ("alice reads the public service", "alice", None, ("service", "svc_public")),
    ("alice reads secret_stats", "alice", None, ("read", ["secret_stats:secret"])),
    ("alice reads the on-demand view", "alice", None, ("read", ["conv_odfv:conv_x2"])),
    ("alice reads the secret service", "alice", None, ("service", "svc_secret")),
    ("carol reads driver_stats", "carol", None, ("read", ["driver_stats:conv_rate"])),
    ("erin reads secret_stats", "erin", None, ("read", ["secret_stats:secret"])),
    ("admin reads secret_stats", "admin", None, ("read", ["secret_stats:secret"])),
    ("an expired token", "expired", None, ("read", ["driver_stats:conv_rate"])),
    ("a bad signature", "badsig", None, ("read", ["driver_stats:conv_rate"])),
    ("a wrong audience", "wrongaud", None, ("read", ["driver_stats:conv_rate"])),
    ("an ES256 token", "es256", None, ("read", ["driver_stats:conv_rate"])),
    ("a wrong password", "alice", "nope", ("read", ["driver_stats:conv_rate"])),
    ("a client without auth", None, None, ("read", ["driver_stats:conv_rate"])),
    ("bob writes driver_stats", "bob", None, ("write", "driver_stats")),
    ("carol writes driver_stats", "carol", None, ("write", "driver_stats")),
]


class Issuer:
    """test_oidc_issuer, until stop()."""

    def __init__(self, binary: str):
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class FeastServe:
    """`feast serve` on a free port, until stop()."""

    def __init__(self, repo: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, GUNICORN_CMD_ARGS=f"--control-socket {workdir}/gunicorn.ctl")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "feast"), "-c", str(repo), "serve", "-h", "127.0.0.1",
             "-p", str(self.port), "--no-access-log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
        wait_healthy(self.url, self.proc, "feast serve", within_s=60)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def client(registry: Path, url: str, issuer: dict, user, password) -> FeatureStore:
    auth = {"type": "no_auth"}
    if user is not None:
        auth = {"type": "oidc", "client_id": issuer["client_id"], "client_secret": issuer["client_secret"],
                "auth_discovery_url": issuer["discovery_url"], "ca_cert_path": issuer["ca_cert"],
                "username": user, "password": password or f"{user}pw"}
    return FeatureStore(config=RepoConfig(
        project="authproj", registry=str(registry), provider="local",
        online_store={"type": "remote", "path": url}, entity_key_serialization_version=3, auth=auth))


def outcome(store: FeatureStore, action, server_url: str, issuer_url: str):
    kind, what = action
    try:
        if kind == "read":
            result = store.get_online_features(features=what, entity_rows=ROWS).to_dict()
        elif kind == "service":
            result = store.get_online_features(features=store.get_feature_service(what), entity_rows=ROWS).to_dict()
        else:
            store.write_to_online_store(what, write_df())
            result = None
        return {"result": result}
    except Exception as e:  # the exception is the outcome
        text = str(e).replace(server_url, "<server>").replace(issuer_url, "<issuer>")
        return {"raises": f"{type(e).__module__}.{type(e).__name__}", "message": text}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", help="feast-server to check")
    ap.add_argument("--issuer", required=True, help="the test_oidc_issuer binary")
    ap.add_argument("--capture", action="store_true", help="run against feast serve and write the goldens")
    args = ap.parse_args()
    issuer = Issuer(args.issuer)
    info = issuer.info
    issuer_url = info["discovery_url"].rsplit("/.well-known", 1)[0]
    work = Path(tempfile.mkdtemp())
    server = None
    try:
        repo = work / "repo"
        shutil.copytree(FIXTURE, repo)
        with open(repo / "feature_store.yaml", "a") as f:
            f.write("auth:\n  type: oidc\n  client_id: {client_id}\n  auth_discovery_url: {discovery_url}\n"
                    "  ca_cert_path: {ca_cert}\n  audience: {audience}\n".format(**info))
        server = FeastServe(repo, work) if args.capture else ServerProcess(args.binary, repo)
        got = {}
        for name, user, password, action in CASES:
            store = client(repo / "data" / "registry.db", server.url, info, user, password)
            got[name] = outcome(store, action, server.url, issuer_url)
        if args.capture:
            GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
            print(f"{len(got)} outcomes of the Feast SDK against feast serve written to {GOLDEN}")
            return 0
        want = json.loads(GOLDEN.read_text())
        failures = [f"{name}:\n  feast serve: {want.get(name)}\n  feast-server: {got[name]}"
                    for name in got if got[name] != want.get(name)]
        for f in failures:
            print(f)
        print(f"{len(got) - len(failures)}/{len(got)} SDK outcomes as against feast serve")
        return 1 if failures else 0
    finally:
        if server is not None:
            server.stop()
        issuer.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
