"""pyarrow's side of tests/js/test_feast_plugin.mjs (the JavaScript guest SDK against a
real Arrow implementation); the node test runs it, with a python that has pyarrow:

  python arrow_check.py write DIR   Arrow IPC streams pyarrow writes, every scalar and
                                    list column type (nulls, empty lists, slices, a
                                    non-zero first offset, validity bitmaps without
                                    nulls as arrow-rs writes them), DIR/<case>.arrows,
                                    with DIR/manifest.json: per case its column types
                                    and values as the SDK should read them, or the
                                    error the SDK should read it with.
  python arrow_check.py check DIR   pyarrow reads back what the SDK wrote:
                                    DIR/<case>.out.arrows (the case read and written
                                    again by the SDK) must hold the case's values, and
                                    DIR/js_<name>.arrows (made by the SDK from JS
                                    values) the values of DIR/js_<name>.json; both in
                                    the SDK's canonical Arrow schema.

Values in JSON as the SDK holds them: numbers; int64 and timestamp seconds (as int64)
not safe integers (|x| >= 2^53) as {"$big": "digits"}; NaN, infinities and -0 as {"$f": "NaN"}; bytes as
{"$bytes": "hex"}; lists as arrays; null for null.
"""
import json
import math
import random
import struct
import sys
from pathlib import Path

import pyarrow as pa

SCALARS = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "boolean": pa.bool_(),
    "utf8": pa.string(),
    "binary": pa.binary(),
    "timestamp-seconds": pa.timestamp("s", tz="UTC"),
}
# The SDK's Arrow types: a list's item field is `item`, nullable.
CANONICAL = dict(SCALARS)
CANONICAL.update({t + "-list": pa.list_(pa.field("item", a, nullable=True)) for t, a in SCALARS.items()})

# Per scalar type: edge values, then ordinary ones (for lists of any length).
EDGES = {
    "int32": [-(2**31), 2**31 - 1, 0, -1],
    "int64": [2**62, -(2**63), 2**63 - 1, 2**53, -(2**53), -(2**53) - 1, -(2**53) + 1, 2**53 - 1, -1, 0, 2**32, -(2**32) - 7],
    "float32": [0.5, -1.25, float("nan"), float("inf"), float("-inf"), -0.0, 3.4028234663852886e38, 1e-45],
    "float64": [0.1, -0.0, float("nan"), float("-inf"), 1.7976931348623157e308, 5e-324],
    "boolean": [True, False, False, True],
    "utf8": ["", "x", "é€😀", "a\x00b", "long " * 20],
    "binary": [b"", b"\x00", b"\xff\xfe\x00\x01", bytes(range(256))],
    "timestamp-seconds": [0, -1, 1700000000, 2**40, 2**53, -(2**62), 2**62],
}


def ordinary(t, i):
    return {
        "int32": lambda: (i * 7919) % 100003 - 50000,
        "int64": lambda: (i * 2654435761) % (2**40) - 2**39,
        "float32": lambda: struct.unpack("<f", struct.pack("<f", i / 3))[0],
        "float64": lambda: i / 7 - 3,
        "boolean": lambda: i % 3 == 0,
        "utf8": lambda: "s%d" % i * (i % 4),
        "binary": lambda: bytes([i % 256]) * (i % 5),
        "timestamp-seconds": lambda: 1600000000 + 86400 * i,
    }[t]()


def stream(table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def as_table(columns):
    """columns: [(name, column type, python values)] in canonical types."""
    arrays = []
    for name, t, values in columns:
        at = CANONICAL[t]
        if t.startswith("timestamp-seconds"):
            # Seconds as integers (datetimes cannot hold them all).
            ints = pa.array(values, type=pa.list_(pa.int64()) if t.endswith("-list") else pa.int64())
            arrays.append(ints.cast(at))
        else:
            arrays.append(pa.array(values, type=at))
    return pa.Table.from_arrays(arrays, names=[n for n, _, _ in columns])


def scalar_columns():
    cols = []
    for t in SCALARS:
        e = EDGES[t]
        values = [e[i % len(e)] if i % 5 != 3 else None for i in range(len(e) + 4)]
        cols.append(("s_" + t.replace("-", "_"), t, values))
    rows = max(len(v) for _, _, v in cols)
    return [(n, t, (v * 2)[:rows]) for n, t, v in cols]


def list_columns(rows, seed, nulls=True):
    rng = random.Random(seed)
    cols = []
    for t in SCALARS:
        e = EDGES[t]
        values = []
        for i in range(rows):
            r = rng.random()
            if nulls and r < 0.15:
                values.append(None)
            elif r < 0.3:
                values.append([])
            elif i == 0:
                values.append(list(e))
            else:
                values.append([ordinary(t, rng.randrange(1000)) if rng.random() < 0.8 else rng.choice(e) for _ in range(rng.randrange(1, 6))])
        cols.append(("l_" + t.replace("-", "_"), t + "-list", values))
    return cols


def enc(v, t):
    """A value as the SDK holds it, in JSON."""
    if v is None:
        return None
    if t.endswith("-list"):
        return [enc(x, t[: -len("-list")]) for x in v]
    if t in ("int64", "timestamp-seconds"):
        return v if -(2**53) < v < 2**53 else {"$big": str(v)}
    if t in ("float32", "float64"):
        if math.isnan(v):
            return {"$f": "NaN"}
        if math.isinf(v):
            return {"$f": "Infinity" if v > 0 else "-Infinity"}
        if v == 0 and math.copysign(1, v) < 0:
            return {"$f": "-0"}
        return float(v)
    if t == "binary":
        return {"$bytes": bytes(v).hex()}
    return v


def column_type(at):
    """The SDK's column type of an Arrow type (whatever its item field's name)."""
    if pa.types.is_list(at):
        return column_type(at.value_type) + "-list"
    if pa.types.is_timestamp(at) and at.unit == "s":
        return "timestamp-seconds"
    for t, a in SCALARS.items():
        if a == at:
            return t
    raise ValueError("no column type for %s" % at)


def values_of(table):
    """[(name, column type, JSON values)] of a table pyarrow read."""
    out = []
    for field, col in zip(table.schema, table.columns):
        t = column_type(field.type)
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if t.startswith("timestamp-seconds"):
            arr = arr.cast(pa.list_(pa.int64()) if t.endswith("-list") else pa.int64())
        out.append((field.name, t, [enc(v, t) for v in arr.to_pylist()]))
    return out


def patch(data, old, new, count):
    """Replaces `count` occurrences of the bytes `old` (no more, no fewer)."""
    if data.count(old) != count:
        raise AssertionError("patch: %d occurrences of %s, expected %d" % (data.count(old), old.hex(), count))
    return data.replace(old, new)


def cases():
    """(name, stream bytes, error or None)."""
    scal = as_table(scalar_columns())
    n = scal.num_rows
    lists = as_table(list_columns(9, 1))
    big = as_table(
        list_columns(1000, 2) + [("s_" + t.replace("-", "_"), t, [ordinary(t, i) if i % 7 else None for i in range(1000)]) for t in SCALARS]
    )
    yield "scalars", stream(scal), None
    yield "scalars_sliced", stream(scal.slice(3, 9)), None
    yield "lists", stream(lists), None
    yield "lists_sliced", stream(lists.slice(3, 5)), None
    yield "lists_sliced_to_one_row", stream(lists.slice(4, 1)), None
    yield "lists_without_nulls", stream(as_table(list_columns(20, 3, nulls=False))), None
    yield "lists_1000_rows_sliced", stream(big.slice(13, 977)), None
    yield "no_rows", stream(as_table(scalar_columns() + list_columns(n, 4)).slice(0, 0)), None
    yield "scalars_and_lists", stream(as_table(list_columns(n, 5)[:4] + scalar_columns()[:4] + list_columns(n, 6)[4:]).slice(1, 9)), None
    all_empty = as_table([("l_" + t.replace("-", "_"), t + "-list", [[], [], []]) for t in SCALARS])
    yield "all_lists_empty", stream(all_empty), None
    yield "all_lists_null", stream(as_table([("l_" + t.replace("-", "_"), t + "-list", [None] * 3) for t in SCALARS])), None
    yield "utf8_list_small", stream(as_table([("l", "utf8-list", [["x", "y"], None, [], ["z"]])])), None

    # Other writers' names and nullability: an item field named `element`, not
    # nullable; timestamps without a time zone.
    other = pa.Table.from_arrays(
        [
            pa.array([[1, 2], None, []], type=pa.list_(pa.field("element", pa.int32(), nullable=False))),
            pa.array([[0, 5], [], None], type=pa.list_(pa.field("element", pa.timestamp("s"), nullable=False))),
            pa.array([1, None, 2], type=pa.timestamp("s")),
        ],
        names=["l_int32", "l_ts", "ts"],
    )
    yield "other_item_names", stream(other), None

    # A non-zero first offset (pyarrow rebases the offsets of slices, arrow-rs need
    # not): offsets [0, 5, 6, 7] patched to [5, 5, 6, 7], so row 0 is empty and the
    # first five items, one of them null, belong to no row.
    rows = []
    for t in SCALARS:
        e, o = EDGES[t], [ordinary(t, i) for i in range(1, 8)]
        rows.append(("l_" + t.replace("-", "_"), t + "-list", [[None, e[0], e[1], o[0], o[1]], [o[2]], [e[-1]]]))
    data = stream(as_table(rows))
    yield "first_offset_not_zero", patch(data, struct.pack("<4i", 0, 5, 6, 7), struct.pack("<4i", 5, 5, 6, 7), len(SCALARS)), None

    # Validity bitmaps present with a null count of 0 (arrow-rs writes one for every
    # array): every column has 3 rows, one null, the items of every list 12, one null;
    # patching the null counts to 0 makes every bit meaningless.
    rows = []
    for t in SCALARS:
        e, o = EDGES[t], [ordinary(t, i) for i in range(1, 12)]
        rows.append(("s_" + t.replace("-", "_"), t, [e[0], None, e[1]]))
        rows.append(("l_" + t.replace("-", "_"), t + "-list", [o[:5] + [None] + o[5:10], None, [e[2]]]))
    data = stream(as_table(rows))
    data = patch(data, struct.pack("<qq", 3, 1), struct.pack("<qq", 3, 0), 2 * len(SCALARS))
    data = patch(data, struct.pack("<qq", 12, 1), struct.pack("<qq", 12, 0), len(SCALARS))
    yield "validity_without_nulls", data, None

    # Refused: null items (Feast lists have none), list types the world does not carry.
    for t in SCALARS:
        e = EDGES[t]
        yield "null_item_" + t.replace("-", "_"), stream(as_table([("l", t + "-list", [[e[0]], [e[1], None], None])])), "row 1 has a null item"
    yield "large_list", stream(pa.table({"l": pa.array([[1]], type=pa.large_list(pa.int32()))})), "does not carry"
    yield "list_of_lists", stream(pa.table({"l": pa.array([[[1]]], type=pa.list_(pa.list_(pa.int32())))})), "is a list of an Arrow type"
    yield "list_of_int16", stream(pa.table({"l": pa.array([[1]], type=pa.list_(pa.int16()))})), "is a list of an Arrow type"
    yield "fixed_size_list", stream(pa.table({"l": pa.array([[1]], type=pa.list_(pa.int32(), 1))})), "does not carry"


def write(out):
    manifest = []
    for name, data, error in cases():
        (out / (name + ".arrows")).write_bytes(data)
        entry = {"name": name, "error": error}
        if error is None:
            table = pa.ipc.open_stream(data).read_all()
            table.validate(full=True)
            cols = values_of(table)
            entry["schema"] = [[n, t] for n, t, _ in cols]
            entry["columns"] = [v for _, _, v in cols]
        manifest.append(entry)
    (out / "manifest.json").write_text(json.dumps(manifest))
    print("pyarrow %s wrote %d streams" % (pa.__version__, len(manifest)))


def same(a, b):
    """JSON values equal, booleans apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def read_sdk_stream(path, schema, columns, failures):
    """pyarrow reads a stream the SDK wrote: schema [[name, type]] and JSON columns."""
    try:
        reader = pa.ipc.open_stream(path.read_bytes())
        batches = list(reader)
        if len(batches) != 1:
            raise AssertionError("%d record batches" % len(batches))
        table = pa.Table.from_batches(batches, schema=reader.schema)
        table.validate(full=True)
        want = pa.schema([pa.field(n, CANONICAL[t], nullable=True) for n, t in schema])
        if not table.schema.equals(want, check_metadata=True):
            raise AssertionError("schema\n%s\nnot\n%s" % (table.schema, want))
        for (name, t, got), expected in zip(values_of(table), columns):
            if not same(got, expected):
                raise AssertionError("column %s (%s): %s, expected %s" % (name, t, json.dumps(got)[:300], json.dumps(expected)[:300]))
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failures.append("%s: %s: %s" % (path.name, type(e).__name__, e))


def check(out):
    failures = []
    n = 0
    for entry in json.loads((out / "manifest.json").read_text()):
        if entry["error"] is None:
            n += 1
            read_sdk_stream(out / (entry["name"] + ".out.arrows"), entry["schema"], entry["columns"], failures)
    for expected in sorted(out.glob("js_*.json")):
        n += 1
        e = json.loads(expected.read_text())
        read_sdk_stream(expected.with_suffix(".arrows"), e["schema"], e["columns"], failures)
    for f in failures:
        print("FAIL " + f)
    print("pyarrow %s read %d streams the SDK wrote: %s" % (pa.__version__, n, "%d failed" % len(failures) if failures else "all as expected"))
    return 1 if failures or n == 0 else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    d = Path(sys.argv[2])
    sys.exit(write(d) if sys.argv[1] == "write" else check(d))
