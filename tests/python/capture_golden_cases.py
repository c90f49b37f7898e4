#!/usr/bin/env python3
"""Capture golden request/response pairs from a running feature server (stdlib only).

Unlike capture_golden.py (which replays the requests already in a golden directory),
this one takes the cases from a JSON list and writes one golden file per case:

    python capture_golden_cases.py BASE_URL CASES_JSON OUT_DIR

CASES_JSON: [{"name", "description", "method", "path", "content_type", "body_raw"}, ...]
Output, OUT_DIR/<name>.json (the format of tests/golden/README.md):
    {"name", "description",
     "request":  {"method", "path", "content_type", "body_raw", "body_json"},
     "response": {"status", "content_type", "headers", "body_raw", "body_json"}}
"""
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path


def parse(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def send(base, method, path, content_type, body_raw):
    data = body_raw.encode() if body_raw or method == "POST" else None
    r = urllib.request.Request(base + path, data=data, method=method)
    if content_type:
        r.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    base = sys.argv[1].rstrip("/")
    cases = json.loads(Path(sys.argv[2]).read_text())
    out = Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    names = [c["name"] for c in cases]
    if len(set(names)) != len(names):
        sys.exit("duplicate case names")
    for c in cases:
        method = c.get("method", "POST")
        path = c.get("path", "/get-online-features")
        ctype = c.get("content_type", "application/json")
        body_raw = c.get("body_raw", "")
        status, headers, raw = send(base, method, path, ctype, body_raw)
        lower = {k.lower(): v for k, v in headers.items()}
        golden = {
            "name": c["name"],
            "description": c.get("description", ""),
            "request": {
                "method": method,
                "path": path,
                "content_type": ctype,
                "body_raw": body_raw,
                "body_json": parse(body_raw),
            },
            "response": {
                "status": status,
                "content_type": lower.get("content-type", ""),
                "headers": {k: lower[k] for k in ("server", "allow", "content-length", "content-type") if k in lower},
                "body_raw": raw,
                "body_json": parse(raw),
            },
        }
        (out / f"{c['name']}.json").write_text(json.dumps(golden, indent=2) + "\n")
        print(f"{c['name']}: {status}")


if __name__ == "__main__":
    main()
