#!/usr/bin/env python3
"""Shift the event times of a Feast SQLite online store so the newest row is recent.

The demo data was materialized once (newest event 2026-11-22T23:00:00Z) and its views
have a 1-day ttl, so without this the demo would answer OUTSIDE_MAX_AGE a day later.
Usage: refresh_timestamps.py ONLINE_STORE_DB [SECONDS_AGO]   (stdlib only)
"""
import sqlite3
import sys
import time


def main() -> None:
    db = sys.argv[1]
    ago = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    target = int(time.time()) - ago
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    newest = 0
    for t in tables:
        row = con.execute(f'SELECT max(event_ts) FROM "{t}" WHERE typeof(event_ts) = \'integer\'').fetchone()
        newest = max(newest, row[0] or 0)
    shift = target - newest
    for t in tables:
        con.execute(
            f'UPDATE "{t}" SET event_ts = event_ts + ?, created_ts = created_ts + ? '
            "WHERE typeof(event_ts) = 'integer'",
            (shift, shift),
        )
    con.commit()
    print(f"shifted event times by {shift} s in {len(tables)} tables of {db}")


if __name__ == "__main__":
    main()
