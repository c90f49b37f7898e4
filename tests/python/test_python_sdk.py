"""The Python guest SDK (guest-sdk/python) against Feast's and Arrow's own code:
its Arrow IPC streams read and written by pyarrow, its conversions of python-mode
ODFV inputs and outputs equal to Feast 0.67's `feast_value_type_to_python_type` and
`python_values_to_proto_values`, and its decorator stripping equal to Feast's.

Run with the Feast venv (demo/feast_venv.sh): python -m unittest -q test_python_sdk
"""
import copy
import logging
import math
import struct
import sys
import unittest
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from feast.protos.feast.types.Value_pb2 import (
    BoolList,
    BytesList,
    DoubleList,
    FloatList,
    Int32List,
    Int64List,
    StringList,
)
from feast.protos.feast.types.Value_pb2 import Value as ProtoValue
from feast.transformation.udf_rehydrate import _strip_leading_decorators
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-sdk" / "python"))
# Feast logs the int lists its type check refuses (expected here).
logging.getLogger("feast.type_map").setLevel(logging.CRITICAL)

from feast_plugin import Plugin, PluginError, arrow_ipc as ipc  # noqa: E402
from feast_plugin.feast_python import (  # noqa: E402
    COLUMN_TYPE,
    FeastOdfv,
    load_function,
    strip_decorators,
    to_feast,
    to_python,
)

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


LIST_SCHEMA = [
    ("i32s", ipc.INT32_LIST),
    ("i64s", ipc.INT64_LIST),
    ("f32s", ipc.FLOAT32_LIST),
    ("f64s", ipc.FLOAT64_LIST),
    ("bs", ipc.BOOLEAN_LIST),
    ("ss", ipc.UTF8_LIST),
    ("bins", ipc.BINARY_LIST),
    ("tss", ipc.TIMESTAMP_SECONDS_LIST),
]
# Per column: a null, an empty list, lists of several items, a one-item list.
LIST_COLUMNS = [
    [[1, -(2**31)], None, [], [2**31 - 1, 0, 7], [5]],
    [[], [2**62, -1], None, [0], [1, 2, 3, 4, 5, 6, 7, 8, 9]],
    [[0.5, -1.25, float("inf")], [], None, [0.0], [3.0]],
    [None, [2.25, -0.0, 1e300], [], [float("-inf")], [0.1]],
    [[True, False, True, True, False, False, True, False, True], [], None, [False], [True]],
    [["x", "", "žluť"], None, [], [""], ["a", "b"]],
    [[b"\x00\x01", b""], [], None, [b"z"], [b"", b""]],
    [[0, 1700000000], None, [-1], [], [2**40]],
]
LIST_ARROW_TYPES = [pa.list_(t) for t in ARROW_TYPES]


def from_pyarrow_list(column, column_type):
    """A pyarrow list column as the SDK holds it (timestamps as int seconds)."""
    if column_type == ipc.TIMESTAMP_SECONDS_LIST:
        column = column.cast(pa.list_(pa.int64()))
    return column.to_pylist()


def nan_free(values):
    """`values` with every NaN replaced by a marker, so that lists compare equal."""
    if isinstance(values, list):
        return [nan_free(v) for v in values]
    if isinstance(values, float) and math.isnan(values):
        return "NaN"
    return values


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

    def test_pyarrow_reads_the_lists_the_sdk_writes(self):
        schema, columns = SCHEMA + LIST_SCHEMA, COLUMNS + [c[:3] for c in LIST_COLUMNS]
        for rows in (3, 1, 0):
            table = pa.ipc.open_stream(ipc.write_stream(schema, [c[:rows] for c in columns])).read_all()
            table.validate(full=True)
            self.assertEqual(table.schema.types, ARROW_TYPES + LIST_ARROW_TYPES)
            for (name, t), col in zip(LIST_SCHEMA, LIST_COLUMNS):
                field = table.schema.field(name).type.value_field
                self.assertEqual((field.name, field.nullable), ("item", True))
                self.assertEqual(from_pyarrow_list(table.column(name), t), col[:rows], name)
            for (name, t), col in zip(SCHEMA, COLUMNS):
                got = table.column(name).cast(pa.int64()) if t == ipc.TIMESTAMP_SECONDS else table.column(name)
                self.assertEqual(got.to_pylist(), col[:rows], name)

    def test_the_sdk_reads_the_lists_pyarrow_writes(self):
        arrays = [pa.array(c, type=t) for c, t in zip(LIST_COLUMNS, LIST_ARROW_TYPES)]
        arrays += [pa.array(c + [None, c[0]], type=t) for c, t in zip(COLUMNS, ARROW_TYPES)]
        table = pa.Table.from_arrays(arrays, names=[n for n, _ in LIST_SCHEMA + SCHEMA])
        rows = len(LIST_COLUMNS[0])
        for start, length in ((0, rows), (1, 3), (2, 2), (4, 1), (3, 0), (0, 0)):
            schema, columns = ipc.read_stream(arrow_stream(table.slice(start, length)))
            self.assertEqual(schema, LIST_SCHEMA + SCHEMA)
            want = [c[start : start + length] for c in LIST_COLUMNS] + [
                (c + [None, c[0]])[start : start + length] for c in COLUMNS
            ]
            self.assertEqual(nan_free(columns), nan_free(want), (start, length))

    def test_list_items_under_another_name_and_non_nullable_are_read(self):
        t = pa.list_(pa.field("element", pa.int64(), nullable=False))
        data = arrow_stream(pa.table({"l": pa.array([[1, 2], None, []], type=t)}))
        self.assertEqual(ipc.read_stream(data), ([("l", ipc.INT64_LIST)], [[[1, 2], None, []]]))

    def test_validity_bitmaps_of_lists_without_nulls_are_read(self):
        # arrow-rs writes a validity bitmap for every array, nulls or not; pyarrow writes
        # one only with nulls: its null count made 0, the bitmap is there and unused.
        table = pa.table({
            "l": pa.array([[1, 2], None, [3]], type=pa.list_(pa.int64())),
            "s": pa.array([["a"], [], ["b", "c"]], type=pa.list_(pa.string())),
        })
        data = arrow_stream(table)
        node = struct.pack("<qq", 3, 1)
        self.assertEqual(data.count(node), 1)
        data = data.replace(node, struct.pack("<qq", 3, 0))
        self.assertEqual(ipc.read_stream(data)[1], [[[1, 2], [], [3]], [["a"], [], ["b", "c"]]])

    def test_list_offsets_that_do_not_start_at_zero_are_read(self):
        # pyarrow and arrow-rs rebase the offsets of a sliced list; other writers need not.
        data = ipc.write_stream([("l", ipc.UTF8_LIST)], [[["junk", "x"], ["a", "b"], ["c"]]])
        offsets = struct.pack("<4i", 0, 2, 4, 5)
        self.assertEqual(data.count(offsets), 1)
        data = data.replace(offsets, struct.pack("<4i", 1, 2, 4, 5))
        self.assertEqual(ipc.read_stream(data)[1], [[["x"], ["a", "b"], ["c"]]])
        data = data.replace(struct.pack("<4i", 1, 2, 4, 5), struct.pack("<4i", 1, 2, 4, 6))
        with self.assertRaises(ipc.IpcError):
            ipc.read_stream(data)

    def test_null_items_and_other_list_types_are_refused(self):
        refused = [
            pa.array([[1, None]], type=pa.list_(pa.int64())),
            pa.array([["a"], [None, "b"]], type=pa.list_(pa.string())),
            pa.array([[1]], type=pa.list_(pa.int8())),
            pa.array([[1]], type=pa.large_list(pa.int64())),
            pa.array([[1]], type=pa.list_(pa.int64(), 1)),
            pa.array([[[1]]], type=pa.list_(pa.list_(pa.int64()))),
            pa.array([[1]], type=pa.list_(pa.timestamp("ms", tz="UTC"))),
        ]
        for array in refused:
            with self.assertRaises(ipc.IpcError, msg=str(array.type)):
                ipc.read_stream(arrow_stream(pa.table({"l": array})))
        # A null item outside the entries a slice references is no null of the batch.
        array = pa.array([[1, None], [2, 3]], type=pa.list_(pa.int64()))
        self.assertEqual(ipc.read_stream(arrow_stream(pa.table({"l": array}).slice(1)))[1], [[[2, 3]]])

    def test_lists_the_sdk_cannot_write_are_refused(self):
        for column_type, values in (
            (ipc.INT64_LIST, [[1, None]]),
            (ipc.UTF8_LIST, [["a"], [None]]),
            (ipc.INT64_LIST, [5]),
            (ipc.UTF8_LIST, ["abc"]),
            (ipc.INT32_LIST, [[2**31]]),
            (ipc.INT64_LIST, [[1.5]]),
        ):
            with self.assertRaises(ipc.IpcError, msg=repr(values)):
                ipc.write_stream([("l", column_type)], [values])
        data = ipc.write_stream([("l", ipc.INT64_LIST)], [[(1, 2), None]])
        self.assertEqual(ipc.read_stream(data)[1], [[[1, 2], None]])

    def test_floats_out_of_float32_range_are_written_as_a_c_cast_stores_them(self):
        big = 3.4028234663852886e38
        values = [big, math.nextafter(big, math.inf), 3.4028235677973362e38, 3.4028235677973366e38, 1e39, -1e39]
        with np.errstate(over="ignore"):
            want = [float(np.float32(v)) for v in values]
        data = ipc.write_stream([("f", ipc.FLOAT32), ("l", ipc.FLOAT32_LIST)], [values, [values] * 6])
        table = pa.ipc.open_stream(data).read_all()
        self.assertEqual(table.column("f").to_pylist(), want)
        self.assertEqual(table.column("l").to_pylist(), [want] * 6)

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


LIST_VALUES = [
    [[1, 2], [], None],
    [[1, None], [3], [None]],
    [[0.5, 1.5], [2, float("nan"), True], None],
    [[1, 2], [0.5]],
    [[0.0], [1]],
    [[True, False], [1, 0, "x", 0.0, None]],
    [["a", ""], [b"b"], None],
    [["a"], [b"\xff"]],
    [["\ud800"]],
    [[b"x", b""], [], None],
    [[b"x"], ["s"]],
    [[b"x"], [bytearray(b"y")]],
    [[datetime(2026, 11, 20, 10, tzinfo=timezone.utc), datetime(2026, 11, 20, 10), None], [1700000000, 1.5, "12", True], None],
    [[datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc)]],
    [[None, None]],
    [[], []],
    [None, None],
    [float("nan")],
    [[1], float("nan")],
    [5],
    [[1], 5],
    [(1, 2), [3]],
    [[3], (1, None)],
    ["ab", None],
    ["", [1]],
    [[1], {"a": 1}],
    [b"", [1]],
    [[1], b"\x01\x02"],
    [b"[1, 2]", b"[3]"],
    [b"[1, 2]", None],
    [b"[true, 0]", "[1.5]"],
    [b'["a", "b"]', "[]"],
    [b"{}"],
    [b"not json"],
    [[True], [2]],
    [[2**31], [1]],
    [[1], [2**31]],
    [[1], [2**63]],
    [[1e39, -1e39, 3.4028235e38], [0.1]],
    [[1.5], [2**2000]],
    [[1.5], ["1"]],
    [[{"a": 1}, [1, "x"], '{"k": 2}', None, "1", 2.5], []],
    [["not json"]],
    [[float("nan")]],
    [[set()]],
]
LIST_TYPES = [
    "INT32_LIST", "INT64_LIST", "FLOAT_LIST", "DOUBLE_LIST", "BOOL_LIST", "STRING_LIST", "BYTES_LIST",
    "UNIX_TIMESTAMP_LIST", "JSON_LIST",
]


def proto_list_to_column(value, feast_type):
    """A Feast proto list value as the SDK's output column holds it."""
    which = value.WhichOneof("val")
    if which is None:
        return None
    items = list(getattr(value, which).val)
    if feast_type == "FLOAT_LIST":
        return [struct.unpack("<f", struct.pack("<f", x))[0] for x in items]
    return items


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

    def test_list_outputs_convert_as_feast_converts_them(self):
        compared = errors = 0
        for values in LIST_VALUES:
            for name in LIST_TYPES:
                try:
                    protos = python_values_to_proto_values(copy.deepcopy(values), ValueType[name])
                    want = [proto_list_to_column(v, name) for v in protos]
                except Exception:
                    want = "error"
                try:
                    got = to_feast(copy.deepcopy(values), name, "f")
                except PluginError:
                    got = "error"
                if got != "error":
                    # What the host reads: the column through the SDK's writer and pyarrow.
                    column_type = COLUMN_TYPE[name]
                    table = pa.ipc.open_stream(ipc.write_stream([("f", column_type)], [got])).read_all()
                    got = from_pyarrow_list(table.column("f"), column_type)
                self.assertEqual(nan_free(got), nan_free(want), "%r as %s" % (values, name))
                compared += 1
                errors += want == "error"
        self.assertGreater(compared, 300)
        self.assertGreater(errors, 50)
        self.assertLess(errors, compared - 50)

    def test_list_inputs_arrive_as_feast_hands_them_over(self):
        cases = [
            (ProtoValue(int32_list_val=Int32List(val=[1, -2])), "INT32_LIST", [1, -2]),
            (ProtoValue(int64_list_val=Int64List(val=[])), "INT64_LIST", []),
            (ProtoValue(float_list_val=FloatList(val=[0.1, 2.5])), "FLOAT_LIST", [0.1, 2.5]),
            (ProtoValue(double_list_val=DoubleList(val=[0.1])), "DOUBLE_LIST", [0.1]),
            (ProtoValue(bool_list_val=BoolList(val=[True, False])), "BOOL_LIST", [True, False]),
            (ProtoValue(string_list_val=StringList(val=["a", ""])), "STRING_LIST", ["a", ""]),
            (ProtoValue(bytes_list_val=BytesList(val=[b"\x00", b""])), "BYTES_LIST", [b"\x00", b""]),
            (
                ProtoValue(unix_timestamp_list_val=Int64List(val=[1700000000, -9223372036854775808, 0])),
                "UNIX_TIMESTAMP_LIST",
                [1700000000, -9223372036854775808, 0],
            ),
            (ProtoValue(unix_timestamp_list_val=Int64List(val=[])), "UNIX_TIMESTAMP_LIST", []),
            (
                ProtoValue(json_list_val=StringList(val=['{"a": [1]}', "not json", "3", "null"])),
                "JSON_LIST",
                ['{"a": [1]}', "not json", "3", "null"],
            ),
            (ProtoValue(), "STRING_LIST", None),
            (ProtoValue(), "UNIX_TIMESTAMP_LIST", None),
            (ProtoValue(), "JSON_LIST", None),
        ]
        for proto, name, column_value in cases:
            if name == "FLOAT_LIST":
                column_value = [struct.unpack("<f", struct.pack("<f", x))[0] for x in column_value]
            self.assertEqual(to_python(column_value, name), feast_value_type_to_python_type(proto), name)

    def test_a_singleton_function_returns_a_list_for_the_column(self):
        # Feast (utils.py, _augment_response_with_on_demand_transforms) converts a list
        # a singleton function returns as the output column, another value as a column
        # of one: for one row, [[1, 2]] is the list [1, 2], [x] is x, and x is x.
        source = (
            "def f(inputs):\n"
            "    v = inputs['v']\n"
            "    n = len(v or [])\n"
            "    return {'wrapped': None if v is None else [[x * 2 for x in v]], 'one': [n], 'bare_n': n,\n"
            "            'bare': v}\n"
        )
        outputs = [("wrapped", "INT64_LIST"), ("one", "INT64"), ("bare_n", "INT64")]
        odfv = FeastOdfv("o", source, "f", True, [("v", "INT64_LIST", [])], outputs)
        self.assertEqual(
            odfv.compute({"v": [[1, 2], None, []]}, 3),
            {"wrapped": [[2, 4], None, []], "one": [2, 0, 0], "bare_n": [2, 0, 0]},
        )
        for v in ([1, 2], None, []):
            got = odfv.compute({"v": [v]}, 1)
            returned = odfv.function({"v": v})
            for name, feast_type in outputs:
                value = returned[name]
                protos = python_values_to_proto_values(
                    value if isinstance(value, list) else [value], ValueType[feast_type]
                )
                if feast_type == "INT64_LIST":
                    want = [proto_list_to_column(p, feast_type) for p in protos]
                else:
                    want = [proto_to_column(p, ValueType[feast_type]) for p in protos]
                self.assertEqual(got[name], want, (v, name))
        # Feast answers as many values as the list has items for the one row: refused.
        bare = FeastOdfv("o", source, "f", True, [("v", "INT64_LIST", [])], [("bare", "INT64_LIST")])
        for v in ([1, 2], []):
            with self.assertRaises(PluginError):
                bare.compute({"v": [v]}, 1)

    def test_a_feast_function_over_lists_runs_through_the_plugin(self):
        source = (
            "@on_demand_feature_view(sources=[s], schema=[], mode='python')\n"
            "def f(inputs):\n"
            "    return {\n"
            "        'next_day': [None if t is None else [int(d.timestamp()) + 86400 for d in t] for t in inputs['s__ts']],\n"
            "        'halves': [None if x is None else [i / 2 for i in x] for x in inputs['xs']],\n"
            "        'keys': [None if j is None else [sorted(o) for o in j] for j in inputs['js']],\n"
            "    }\n"
        )
        plugin = Plugin("p", "1")
        plugin.add(FeastOdfv(
            "o", source, "f", False,
            [("ts", "UNIX_TIMESTAMP_LIST", ["s__ts"]), ("xs", "FLOAT_LIST", []), ("js", "JSON_LIST", [])],
            [("next_day", "UNIX_TIMESTAMP_LIST"), ("halves", "DOUBLE_LIST"), ("keys", "JSON_LIST")],
        ))
        table = pa.table({
            "ts": pa.array([[0, 86400], None, []], type=pa.list_(pa.timestamp("s", tz="UTC"))),
            "xs": pa.array([[1.5], [], None], type=pa.list_(pa.float32())),
            "js": pa.array([['{"b": 1, "a": 2}'], None, []], type=pa.list_(pa.string())),
        })
        out = pa.ipc.open_stream(plugin.call("o", arrow_stream(table))).read_all()
        self.assertEqual(out.schema.types, [pa.list_(pa.timestamp("s", tz="UTC")), pa.list_(pa.float64()), pa.list_(pa.string())])
        self.assertEqual(from_pyarrow_list(out.column("next_day"), ipc.TIMESTAMP_SECONDS_LIST), [[86400, 172800], None, []])
        self.assertEqual(out.column("halves").to_pylist(), [[0.75], [], None])
        self.assertEqual(out.column("keys").to_pylist(), [['["a", "b"]'], None, []])

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
