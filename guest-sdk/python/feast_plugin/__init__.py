"""Write Feast on-demand feature views (ODFVs) in Python and ship them as WebAssembly
components that feast-server loads, sandboxes and hot-swaps.

A plugin is a set of batch functions, each from a dict of input columns (lists, `None`
for null) to a dict of output columns, described with `Plugin.odfv` and built into a
component with componentize-py against the `odfv-plugin` world (`wit/`):

    from feast_plugin import Plugin, FLOAT32, INT64, FLOAT64

    plugin = Plugin("conv-rate", "0.1.0")

    @plugin.odfv("transformed_conv_rate",
                 inputs={"conv_rate": FLOAT32, "val_to_add": INT64},
                 outputs={"conv_rate_plus_val1": FLOAT64})
    def transformed_conv_rate(cols):
        return {"conv_rate_plus_val1": [
            None if c is None or v is None else c + v
            for c, v in zip(cols["conv_rate"], cols["val_to_add"])]}

    WitWorld = plugin.world()

Column values are plain Python values: `int` (Int32, Int64, and Timestamp seconds),
`float`, `bool`, `str`, `bytes`; a value of a list column (`INT64_LIST`, ...) is a
Python list of them (`[]` is a value, `None` null; items are never `None`). Feast's
own python-mode ODFV functions run unchanged through `feast_plugin.feast_python`
(what `feast-server plugins build` generates).
Data crosses as Arrow IPC streams, read and written by `feast_plugin.arrow_ipc`, so
the contract is the same as for Rust plugins. Everything here also runs in a plain
CPython, so plugins are unit-tested with `Plugin.call`.
"""

import sys
import traceback

from . import arrow_ipc
from .arrow_ipc import (
    BINARY,
    BINARY_LIST,
    BOOLEAN,
    BOOLEAN_LIST,
    FLOAT32,
    FLOAT32_LIST,
    FLOAT64,
    FLOAT64_LIST,
    INT32,
    INT32_LIST,
    INT64,
    INT64_LIST,
    TIMESTAMP_SECONDS,
    TIMESTAMP_SECONDS_LIST,
    UTF8,
    UTF8_LIST,
    IpcError,
)

__all__ = [
    "Plugin",
    "PluginError",
    "InvalidInput",
    "Unsupported",
    "INT32",
    "INT64",
    "FLOAT32",
    "FLOAT64",
    "BOOLEAN",
    "UTF8",
    "BINARY",
    "TIMESTAMP_SECONDS",
    "INT32_LIST",
    "INT64_LIST",
    "FLOAT32_LIST",
    "FLOAT64_LIST",
    "BOOLEAN_LIST",
    "UTF8_LIST",
    "BINARY_LIST",
    "TIMESTAMP_SECONDS_LIST",
]


class PluginError(Exception):
    """A transformation failed; the message is shown to the caller (`internal`)."""

    kind = "internal"


class InvalidInput(PluginError):
    """The input batch is not what the ODFV declared."""

    kind = "invalid-input"


class Unsupported(PluginError):
    """The plugin does not implement the ODFV asked for."""

    kind = "unsupported"


class Odfv:
    """One ODFV: its declared columns and its batch function."""

    def __init__(self, name, inputs, outputs, function):
        self.name = name
        self.inputs = _columns(name, "input", inputs)
        self.outputs = _columns(name, "output", outputs)
        self.function = function

    def run(self, schema, columns):
        """The output columns (lists, in declared order) for the input columns."""
        rows = len(columns[0]) if columns else 0
        by_name = dict(zip((n for n, _ in schema), columns))
        types = dict(schema)
        for name, column_type in self.inputs:
            if name not in by_name:
                raise InvalidInput("input column %s is missing" % name)
            if types[name] != column_type:
                raise InvalidInput(
                    "input column %s is %s, declared %s" % (name, types[name], column_type)
                )
        result = self.compute(by_name, rows)
        if not isinstance(result, dict):
            raise PluginError(
                "%s returned %s, not a dict of output columns" % (self.name, type(result).__name__)
            )
        out = []
        for name, _ in self.outputs:
            if name not in result:
                raise PluginError("%s returned no column %s" % (self.name, name))
            column = list(result[name])
            if len(column) != rows:
                raise PluginError(
                    "%s returned %d values for %s, the input has %d rows"
                    % (self.name, len(column), name, rows)
                )
            out.append(column)
        return out

    def compute(self, columns, rows):
        """The output dict for the input columns (`rows` values each)."""
        return self.function(columns)


def _columns(odfv, what, declared):
    items = list(declared.items()) if isinstance(declared, dict) else list(declared)
    for name, column_type in items:
        if column_type not in arrow_ipc.COLUMN_TYPES:
            raise ValueError(
                "%s: %s %s has type %r; one of %s" % (odfv, what, name, column_type, ", ".join(arrow_ipc.COLUMN_TYPES))
            )
    return items


class Plugin:
    """A plugin: a name, a version and the ODFVs it implements."""

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.odfvs = {}

    def add(self, odfv):
        """Adds an `Odfv` (each name once)."""
        if odfv.name in self.odfvs:
            raise ValueError("ODFV %s is defined twice" % odfv.name)
        self.odfvs[odfv.name] = odfv
        return odfv

    def odfv(self, name, inputs, outputs):
        """Decorator: the function computes ODFV `name`.

        `inputs` and `outputs` map column names to column types (or are lists of
        (name, type) pairs); the function takes a dict of the input columns and
        returns a dict with (at least) every output column, one value per input row.
        """

        def register(function):
            self.add(Odfv(name, inputs, outputs, function))
            return function

        return register

    def call(self, odfv, input_ipc):
        """Runs ODFV `odfv` on Arrow IPC stream bytes, as the server does; returns the
        output stream bytes or raises `PluginError`."""
        implementation = self.odfvs.get(odfv)
        if implementation is None:
            raise Unsupported("this plugin does not implement %s" % odfv)
        try:
            schema, columns = arrow_ipc.read_stream(input_ipc)
        except IpcError as e:
            raise InvalidInput("the input is not an Arrow IPC stream this plugin reads: %s" % e)
        output = implementation.run(schema, columns)
        try:
            return arrow_ipc.write_stream(implementation.outputs, output)
        except IpcError as e:
            raise PluginError(str(e))

    def world(self):
        """The class componentize-py exports as the `odfv-plugin` world: assign it to
        `WitWorld` in the application module."""
        plugin = self

        class WitWorld:
            def describe(self):
                return _describe(plugin)

            def transform(self, odfv, input):
                return _transform(plugin, odfv, input)

        return WitWorld


def _describe(plugin):
    from wit_world.imports import types

    kinds = {
        INT32: types.ColumnType.INT32,
        INT64: types.ColumnType.INT64,
        FLOAT32: types.ColumnType.FLOAT32,
        FLOAT64: types.ColumnType.FLOAT64,
        BOOLEAN: types.ColumnType.BOOLEAN,
        UTF8: types.ColumnType.UTF8,
        BINARY: types.ColumnType.BINARY,
        TIMESTAMP_SECONDS: types.ColumnType.TIMESTAMP_SECONDS,
        INT32_LIST: types.ColumnType.INT32_LIST,
        INT64_LIST: types.ColumnType.INT64_LIST,
        FLOAT32_LIST: types.ColumnType.FLOAT32_LIST,
        FLOAT64_LIST: types.ColumnType.FLOAT64_LIST,
        BOOLEAN_LIST: types.ColumnType.BOOLEAN_LIST,
        UTF8_LIST: types.ColumnType.UTF8_LIST,
        BINARY_LIST: types.ColumnType.BINARY_LIST,
        TIMESTAMP_SECONDS_LIST: types.ColumnType.TIMESTAMP_SECONDS_LIST,
    }

    def fields(columns):
        return [types.Field(name, kinds[t]) for name, t in columns]

    return types.PluginInfo(
        plugin.name,
        plugin.version,
        [types.OdfvSpec(o.name, fields(o.inputs), fields(o.outputs)) for o in plugin.odfvs.values()],
    )


def _transform(plugin, odfv, input):
    from componentize_py_types import Err
    from wit_world.imports import types

    try:
        return plugin.call(odfv, input)
    except PluginError as e:
        error = {
            "invalid-input": types.PluginError_InvalidInput,
            "unsupported": types.PluginError_Unsupported,
        }.get(e.kind, types.PluginError_Internal)
        raise Err(error(str(e)))
    except Exception as e:
        # The traceback goes to stderr, which the server shows when a call fails.
        traceback.print_exc(file=sys.stderr)
        raise Err(types.PluginError_Internal("%s: %s" % (type(e).__name__, e)))
