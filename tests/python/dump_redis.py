#!/usr/bin/env python3
"""Write every key and hash field of a Feast Redis online store as JSON (hex bytes plus a
readable description), the format of tests/fixtures/redis_dump.json.

    python dump_redis.py --port 6390 --repo path/to/feature_repo --out redis_dump.json

Run with the pinned Feast venv (redis-py and Feast's protos and registry are used).
"""
import argparse
import json
import struct

import redis
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from feast import FeatureStore
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.Value_pb2 import Value


def field_names(store: FeatureStore) -> dict:
    """Hash field bytes -> what they hold, for every served view of the project."""
    names = {}
    views = list(store.list_feature_views()) + list(store.list_stream_feature_views())
    views += [v for v in store.list_on_demand_feature_views() if getattr(v, "write_to_online_store", False)]
    for view in views:
        names[f"_ts:{view.name}".encode()] = f"_ts:{view.name}"
        for f in view.features:
            names[_mmh3(f"{view.name}:{f.name}")] = f"murmur3({view.name}:{f.name})"
    return names


def entity_key(key: bytes) -> dict:
    """Decodes a v3 serialized entity key (what precedes the project name in a Redis key)."""
    u32 = lambda at: struct.unpack_from("<I", key, at)[0]  # noqa: E731
    at, n = 4, u32(0)
    names, values = [], []
    for _ in range(n):
        name_type, length = u32(at), u32(at + 4)
        names.append({"name_value_type": name_type, "name": key[at + 8:at + 8 + length].decode()})
        at += 8 + length
    for _ in range(n):
        value_type, length = u32(at), u32(at + 4)
        raw = key[at + 8:at + 8 + length]
        if value_type == 4:
            value = struct.unpack("<q", raw)[0]
        elif value_type == 3:
            value = struct.unpack("<i", raw)[0]
        elif value_type == 2:
            value = raw.decode()
        else:
            value = raw.hex()
        values.append({"value_type": value_type, "len": length, "value": value})
        at += 8 + length
    return {"num_keys": n, "keys": names, "values": values, "consumed": at, "suffix": key[at:].decode()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    r = redis.Redis(host=args.host, port=args.port)
    names = field_names(FeatureStore(repo_path=args.repo))
    keys = []
    for key in sorted(r.keys("*")):
        fields = []
        for field, value in sorted(r.hgetall(key).items()):
            what = names.get(field, "unknown")
            if what.startswith("_ts:"):
                ts = Timestamp()
                ts.ParseFromString(value)
                decoded = {"seconds": ts.seconds, "nanos": ts.nanos, "iso": ts.ToJsonString()}
            else:
                v = Value()
                v.ParseFromString(value)
                decoded = MessageToDict(v)
            fields.append({"field_hex": field.hex(), "value_hex": value.hex(), "field": what, "decoded": decoded})
        keys.append({"key_hex": key.hex(), "key_len": len(key), "type": r.type(key).decode(),
                     "ttl": r.ttl(key), "entity_key": entity_key(key), "fields": fields})
    with open(args.out, "w") as f:
        json.dump({"dbsize": r.dbsize(), "keys": keys}, f, indent=1)
        f.write("\n")
    print(f"{len(keys)} keys written to {args.out}")


if __name__ == "__main__":
    main()
