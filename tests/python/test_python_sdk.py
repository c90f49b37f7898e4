"""The Python guest SDK (guest-sdk/python) against Feast's and Arrow's own code:
its Arrow IPC streams read and written by pyarrow, its conversions of python-mode
ODFV inputs and outputs equal to Feast 0.67's `feast_value_type_to_python_type` and
`python_values_to_proto_values`, and its decorator stripping equal to Feast's.

Run with the Feast venv (demo/feast_venv.sh): python -m unittest -q test_python_sdk
"""
import math
import struct
import sys
import unittest
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from feast.protos.feast.types.Value_pb2 import Value as ProtoValue
from feast.transformation.udf_rehydrate import _strip_leading_decorators
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-sdk" / "python"))
from feast_plugin import PluginError, arrow_ipc as ipc  # noqa: E402
from feast_plugin.feast_python import load_function, strip_decorators, to_feast, to_python  # noqa: E402

SCHEMA = [
    ("i32", ipc.INT32),
    ("i64", ipc.INT64),
    ("f32", ipc.FLOAT32),
    ("f64", ipc.FLOAT64),
    ("b", ipc.BOOLEAN),
    ("s", ipc.UTF8),
    ("bin", ipc.BINARY),
    ("ts", ipc.TIMESTAMP_SECONDS),
]
COLUMNS = [
    [1, None, -(2**31)],
    [2**62, 5, None],
    [0.5, None, -1.25],
    [None, 2.25, -0.0],
    [True, None, False],
    ["x", "", None],
    [b"\x00\x01", None, b""],
    [0, None, 1700000000],
]
ARROW_TYPES = [
    pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.bool_(), pa.string(), pa.binary(),
    pa.timestamp("s", tz="UTC"),
]


def arrow_stream(table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


class ArrowIpc(unittest.TestCase):
    def test_pyarrow_reads_what_the_sdk_writes(self):
        table = pa.ipc.open_stream(ipc.write_stream(SCHEMA, COLUMNS)).read_all()
        self.assertEqual(table.schema.names, [n for n, _ in SCHEMA])
        self.assertEqual(table.schema.types, ARROW_TYPES)
        table.validate(full=True)
        for (name, t), col in zip(SCHEMA, COLUMNS):
            got = table.column(name).cast(pa.int64()).to_pylist() if t == ipc.TIMESTAMP_SECONDS else table.column(name).to_pylist()
            self.assertEqual(got, col, name)

    def test_the_sdk_reads_what_pyarrow_writes(self):
        arrays = [pa.array(c, type=t) for c, t in zip(COLUMNS, ARROW_TYPES)]
        table = pa.Table.from_arrays(arrays, names=[n for n, _ in SCHEMA])
        for data in (arrow_stream(table), arrow_stream(table.slice(1, 2)), arrow_stream(table.slice(0, 0))):
            schema, columns = ipc.read_stream(data)
            self.assertEqual(schema, SCHEMA)
            rows = pa.ipc.open_stream(data).read_all()
            self.assertEqual(columns, [c[: rows.num_rows] if rows.num_rows == 3 else c[1 : 1 + rows.num_rows] for c in COLUMNS])

    def test_broken_streams_are_refused(self):
        good = ipc.write_stream(SCHEMA, COLUMNS)
        for bad in (good[:20], good[:-40], b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x00" * 16, b""):
            with self.assertRaises(ipc.IpcError):
                ipc.read_stream(bad)


def proto_to_column(value, feast_type):
    """A Feast proto value as the SDK's output column holds it."""
    which = value.WhichOneof("val")
    if which is None:
        return None
    v = getattr(value, which)
    if feast_type == ValueType.FLOAT:
        return struct.unpack("<f", struct.pack("<f", v))[0]
    return v


VALUES = [
    [1, 2, None],
    [0, 1.5, None],
    [1.5, float("nan"), 3],
    [True, False, None],
    ["a", "", None],
    [b"x", b"", None],
    [b"", b""],
    [None, None],
    [[1, 2], 3, 4],
    [0.0, 2, 5.5],
    [2, True],
    [datetime(2026, 11, 20, 10, tzinfo=timezone.utc), datetime(2026, 11, 20, 10), None, 1700000000],
    [{"a": 1}, [1, "x"], "{\"k\": 2}", None],
    ["not json"],
    [2**40],
    [1e39],
]
TYPES = ["INT32", "INT64", "FLOAT", "DOUBLE", "BOOL", "STRING", "BYTES", "UNIX_TIMESTAMP", "JSON"]


class FeastConversions(unittest.TestCase):
    def test_outputs_convert_as_feast_converts_them(self):
        compared = 0
        for values in VALUES:
            for name in TYPES:
                feast_type = ValueType[name]
                try:
                    want = [proto_to_column(v, feast_type) for v in python_values_to_proto_values(list(values), feast_type)]
                except Exception:
                    want = "error"
                try:
                    got = to_feast(list(values), name, "f")
                    if name == "FLOAT":
                        got = [None if v is None else struct.unpack("<f", struct.pack("<f", v if abs(v) < 3.5e38 or math.isinf(v) else math.copysign(math.inf, v)))[0] for v in got]
                except PluginError:
                    got = "error"
                self.assertEqual(got, want, "%s as %s" % (values, name))
                compared += 1
        self.assertGreater(compared, 100)

    def test_inputs_arrive_as_feast_hands_them_over(self):
        cases = [
            (ProtoValue(float_val=0.1), "FLOAT", 0.1),
            (ProtoValue(unix_timestamp_val=1700000000), "UNIX_TIMESTAMP", 1700000000),
            (ProtoValue(unix_timestamp_val=-9223372036854775808), "UNIX_TIMESTAMP", -9223372036854775808),
            (ProtoValue(json_val='{"a": [1, 2]}'), "JSON", '{"a": [1, 2]}'),
            (ProtoValue(json_val="not json"), "JSON", "not json"),
            (ProtoValue(string_val=""), "STRING", ""),
            (ProtoValue(), "INT64", None),
        ]
        for proto, name, column_value in cases:
            if name == "FLOAT":
                column_value = struct.unpack("<f", struct.pack("<f", column_value))[0]
            self.assertEqual(to_python(column_value, name), feast_value_type_to_python_type(proto), name)


SOURCES = [
    '@on_demand_feature_view(\n    sources=[a, b],\n    schema=[Field(name="x", dtype=Float64)],  # ) tricky\n    mode="python",\n)\ndef f(inputs: dict[str, Any]) -> dict[str, Any]:\n    return {"x": inputs["a"]}\n',
    '@decorator\n@other.attr(")(")\ndef f(inputs):\n    return inputs\n',
    'def f(inputs):\n    return inputs\n',
    '    @on_demand_feature_view(sources=[s], schema=[], mode="python")\n    def f(inputs):\n        return inputs\n',
]


class Decorators(unittest.TestCase):
    def test_functions_come_out_as_feast_rebuilds_them(self):
        # Where Feast's scan and ours differ (a ")" in a comment inside a decorator,
        # an indented definition), Feast falls back to the pickled function; there is
        # none here, so ours must get the function right.
        for source in SOURCES:
            ours = strip_decorators(source)
            self.assertTrue(ours.startswith("def f("), ours)
            if "tricky" not in source and not source.startswith(" "):
                self.assertEqual(ours, _strip_leading_decorators(source))
            self.assertTrue(callable(load_function(source, "f")))


if __name__ == "__main__":
    unittest.main()
