#!/usr/bin/env python3
"""Capture golden request/response pairs from a running feature server (stdlib only).

The cases are the requests already in the golden directory (each file's "request"
half: method, path, content type, exact body bytes); every one is replayed against
BASE_URL and its file rewritten with the server's answer (status, content type, body).

    python capture_golden.py http://127.0.0.1:6566 tests/golden/sqlite
"""
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path


def send(base, req):
    body = req["body_raw"].encode() if req["body_raw"] or req["method"] == "POST" else None
    r = urllib.request.Request(base + req["path"], data=body, method=req["method"])
    if req.get("content_type"):
        r.add_header("Content-Type", req["content_type"])
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def parse(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def main():
    base, directory = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    for path in sorted(directory.glob("*.json")):
        case = json.loads(path.read_text())
        status, headers, raw = send(base, case["request"])
        lower = {k.lower(): v for k, v in headers.items()}
        case["response"] = {
            "status": status,
            "content_type": lower.get("content-type", ""),
            "headers": {k: lower[k] for k in ("server", "allow", "content-length", "content-type") if k in lower},
            "body_raw": raw,
            "body_json": parse(raw),
        }
        path.write_text(json.dumps(case, indent=2) + "\n")
        print(f"{case['name']}: {status}")


if __name__ == "__main__":
    main()
