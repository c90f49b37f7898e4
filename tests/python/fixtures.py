"""Shared helpers for the Python checks and the benchmark (stdlib only): a private copy
of the demo feature repository with event times moved to now, a private redis-server
loaded with the exact bytes Feast wrote (tests/fixtures/redis_dump.json), a private
PostgreSQL server, free ports, and starting/stopping feast-server processes."""
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_demo_repo(dest: Path, seconds_ago: int = 3600) -> Path:
    """demo/feature_repo copied to dest, its SQLite event times moved to now - seconds_ago."""
    shutil.copytree(ROOT / "demo" / "feature_repo", dest)
    subprocess.run([sys.executable, str(ROOT / "demo" / "refresh_timestamps.py"),
                    str(dest / "data" / "online_store.db"), str(seconds_ago)], check=True, capture_output=True)
    return dest


def write_store_config(repo: Path, online_store: str) -> None:
    """Rewrites feature_store.yaml with the given `online_store:` block (indented YAML)."""
    (repo / "feature_store.yaml").write_text(
        "project: repo\nregistry: data/registry.db\nprovider: local\n"
        f"online_store:\n{online_store}entity_key_serialization_version: 3\n")


def _resp(sock, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += sock.recv(1)
    if reply.startswith(b"-"):
        raise RuntimeError(reply.decode())
    return reply


def _timestamp_proto(seconds: int) -> bytes:
    varint = bytearray()
    while True:
        b, seconds = seconds & 0x7F, seconds >> 7
        varint.append(b | (0x80 if seconds else 0))
        if not seconds:
            return b"\x08" + bytes(varint)


def _spawn_redis(port: int, workdir: Path, *extra: str):
    """redis-server on 127.0.0.1:port (no persistence), and a socket connected to it."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(250):
        try:
            return proc, socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise RuntimeError(f"redis-server did not start on port {port}")


class RedisServer:
    """An empty private redis-server on a free port, until stop()."""

    def __init__(self, workdir: Path):
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.ports = [self.port]
        self.connection_string = f"127.0.0.1:{self.port}"
        self.proc, self.sock = _spawn_redis(self.port, workdir)

    def stop(self):
        self.sock.close()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _free_cluster_port(taken) -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535 or port in taken:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


class RedisClusterProcess:
    """An empty private Redis Cluster of `masters` masters (no replicas) on free ports,
    until stop(). Feast's config: `redis_type: redis_cluster`, `connection_string:
    "127.0.0.1:p1,127.0.0.1:p2,..."` (self.connection_string)."""

    def __init__(self, workdir: Path, masters: int = 3):
        self.ports, self.procs = [], []
        try:
            for _ in range(masters):
                port = _free_cluster_port(self.ports)
                node_dir = Path(workdir) / f"redis-cluster-{port}"
                node_dir.mkdir(parents=True)
                proc, sock = _spawn_redis(port, node_dir, "--cluster-enabled", "yes",
                                          "--cluster-config-file", "nodes.conf")
                sock.close()
                self.ports.append(port)
                self.procs.append(proc)
            subprocess.run(["redis-cli", "--cluster", "create",
                            *[f"127.0.0.1:{p}" for p in self.ports],
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            for _ in range(500):
                states = [subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"],
                                         capture_output=True, text=True).stdout for p in self.ports]
                if all("cluster_state:ok" in s for s in states):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("the Redis cluster did not reach cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        self.connection_string = ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs = []


class RedisProcess:
    """A private redis-server on a free port, loaded with the bytes Feast wrote; the
    `_ts:` fields are moved to now - seconds_ago."""

    def __init__(self, workdir: Path, seconds_ago: int = 3600):
        self.port = free_port()
        self.proc, self.sock = _spawn_redis(self.port, workdir)
        dump = json.loads((ROOT / "tests" / "fixtures" / "redis_dump.json").read_text())
        ts = _timestamp_proto(int(time.time()) - seconds_ago)
        for k in dump["keys"]:
            args = [b"HSET", bytes.fromhex(k["key_hex"])]
            for f in k["fields"]:
                field = bytes.fromhex(f["field_hex"])
                args += [field, ts if field.startswith(b"_ts:") else bytes.fromhex(f["value_hex"])]
            _resp(self.sock, *args)

    def stop(self):
        self.sock.close()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def postgres_bin(name: str) -> str:
    """A PostgreSQL program from PATH, else from the newest /usr/lib/postgresql/<version>/bin
    (where Debian's `postgresql` package puts them)."""
    found = shutil.which(name)
    if found:
        return found
    version = lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)]  # noqa: E731
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True):
        if (d / name).is_file():
            return str(d / name)
    raise RuntimeError(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin (tests/prereqs.sh installs it)")


class PostgresServer:
    """A private PostgreSQL cluster on a free 127.0.0.1 port, until stop(): superuser
    `postgres` (password self.password over TCP, trusted on its Unix socket), session
    TimeZone UTC. As root the server runs as the `postgres` OS user (initdb refuses root),
    in a directory of its own under the system temp dir, since that user cannot enter
    root's private temporary directories."""

    def __init__(self, workdir: Path, timezone: str = "UTC"):
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            self.dir = Path(tempfile.mkdtemp(prefix="feast-postgres-"))
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        else:
            self.dir = Path(workdir)
            self.dir.mkdir(parents=True, exist_ok=True)
        self.data, self.log = self.dir / "data", self.dir / "postgres.log"
        self.port, self.password = free_port(), os.urandom(12).hex()
        self.running = False
        try:
            pwfile = self.dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self.as_root:
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            self._run([postgres_bin("initdb"), "-D", self.data, "-U", "postgres", f"--pwfile={pwfile}",
                       "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C",
                       "--no-sync"], timeout=120)
            pwfile.unlink()
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                           f"unix_socket_directories = '{self.data}'\ntimezone = '{timezone}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
            self._pg_ctl("start", "-l", self.log)
            self.running = True
        except BaseException:
            self.stop()
            raise

    def _run(self, cmd, timeout=60, **kw):
        user = {"user": "postgres", "group": "postgres", "extra_groups": []} if self.as_root else {}
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                           cwd=self.dir, **user, **kw)
        if p.returncode != 0:
            raise RuntimeError(f"{Path(str(cmd[0])).name} {cmd[1:4]} exited {p.returncode}: "
                               f"{(p.stdout + p.stderr)[-1500:]}")
        return p.stdout

    def _pg_ctl(self, *args):
        self._run([postgres_bin("pg_ctl"), "-D", self.data, "-w", "-t", "60", *args], timeout=90)

    def psql(self, db: str, sql: str = None, file=None, user: str = "postgres") -> str:
        """psql as `user` on the Unix socket (trusted): one SQL text or `-f file`; stops at
        the first error. Returns the rows, unaligned, without headers."""
        cmd = [postgres_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.data),
               "-p", str(self.port), "-U", user, "-d", db]
        cmd += ["-f", str(file)] if file is not None else ["-c", sql]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"psql on {db} as {user} exited {p.returncode}: {p.stderr[-1500:]}")
        return p.stdout

    def create_db(self, name: str, user: str, password: str):
        """A login role `user` with a SCRAM password and a database `name` it owns."""
        quoted = password.replace("'", "''")
        self.psql("postgres", f"SET password_encryption = 'scram-sha-256'; "
                              f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{quoted}'")
        self.psql("postgres", f'CREATE DATABASE "{name}" OWNER "{user}"')

    def restart(self):
        self._pg_ctl("restart", "-m", "fast", "-l", self.log)

    def stop(self):
        if self.running:
            try:
                self._pg_ctl("stop", "-m", "fast")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._pg_ctl("stop", "-m", "immediate")
            self.running = False
        if self.as_root:
            shutil.rmtree(self.dir, ignore_errors=True)


def wait_healthy(url: str, proc: subprocess.Popen, what: str, within_s: float):
    """Returns once `url`/health answers 200; fails when `proc` exits or `within_s` passes."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/health", timeout=1).status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become healthy")


class ServerProcess:
    """feast-server serving `repo` on a free port, until stop()."""

    def __init__(self, binary, repo: Path, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(binary), "-c", str(repo), "serve", "-p", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_healthy(self.url, self.proc, "feast-server", within_s=20)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
