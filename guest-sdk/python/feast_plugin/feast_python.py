"""Feast's python-mode on-demand feature views, run as Feast 0.67 runs them.

`FeastOdfv` takes the function's source as the registry keeps it (`body_text`), and
gives the function what Feast's feature server gives it and converts what it returns
as Feast converts it:

- inputs: a dict of lists, one entry per source feature under both its short name
  (`conv_rate`) and its full name (`driver_hourly_stats__conv_rate`), and one per
  request data field; values as Feast's `feast_value_type_to_python_type` makes them
  (`None` for a missing value, a FLOAT widened to a Python float, UNIX_TIMESTAMP as
  a UTC `datetime`, JSON parsed);
- `singleton=True`: the function is called once per row with one value per key (Feast
  itself calls it only for the first row of a request);
- outputs: each declared feature converted to its declared Feast type as Feast's
  `python_values_to_proto_values` does: `None`, NaN and list-like values become null,
  INT32/INT64 take `int(x)`, FLOAT `float(x)`, STRING `str(x)`, JSON `json.dumps(x)`
  (a string must already be JSON), UNIX_TIMESTAMP a `datetime` (naive = UTC) or an
  int; the first non-null value of a DOUBLE, BOOL or BYTES column must have the type
  Feast checks for (`float`/`int`, `bool`/`int`, `bytes`).

The function runs with the globals Feast gives it when it rebuilds a function from
source, minus pandas and numpy, which a component does not carry: a function using
`pd` or `np` fails its calls with a NameError naming them.
"""

import __future__
import json
import math
import textwrap
from datetime import datetime, timezone

from . import Odfv, PluginError
from . import arrow_ipc

# Feast's null timestamp (numpy's NaT as int64 nanoseconds).
NULL_TIMESTAMP = -9223372036854775808

# Feast value type name -> the plugin column type carrying it.
COLUMN_TYPE = {
    "INT32": arrow_ipc.INT32,
    "INT64": arrow_ipc.INT64,
    "FLOAT": arrow_ipc.FLOAT32,
    "DOUBLE": arrow_ipc.FLOAT64,
    "BOOL": arrow_ipc.BOOLEAN,
    "STRING": arrow_ipc.UTF8,
    "JSON": arrow_ipc.UTF8,
    "BYTES": arrow_ipc.BINARY,
    "UNIX_TIMESTAMP": arrow_ipc.TIMESTAMP_SECONDS,
}


def strip_decorators(source):
    """The function definition of `source` without its leading decorators (which
    may span lines, e.g. `@on_demand_feature_view(sources=[...], ...)`)."""
    text = textwrap.dedent(source).lstrip()
    lines = text.split("\n")
    i, depth = 0, 0
    while i < len(lines):
        line = lines[i].strip()
        if depth == 0:
            if line.startswith("def ") or line.startswith("async def "):
                break
            if not (line.startswith("@") or line.startswith("#") or not line):
                break
        depth += _paren_balance(lines[i])
        i += 1
    rest = "\n".join(lines[i:])
    return rest if rest.strip() else text


def _paren_balance(line):
    """Opened minus closed brackets on a line, outside strings and comments."""
    depth, quote, j = 0, None, 0
    while j < len(line):
        ch = line[j]
        if quote:
            if ch == "\\":
                j += 1
            elif line.startswith(quote, j):
                j += len(quote) - 1
                quote = None
        elif ch == "#":
            break
        elif line.startswith('"""', j) or line.startswith("'''", j):
            quote = line[j : j + 3]
            j += 2
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        j += 1
    return depth


def load_function(source, name):
    """The function `name` defined by `source` (the registry's `body_text`)."""
    namespace = {"__name__": "feast_udf_" + name}
    # Annotations are not evaluated (`dict[str, Any]` needs no import of `Any`).
    flags = __future__.annotations.compiler_flag
    exec(compile(strip_decorators(source), "<odfv %s>" % name, "exec", flags), namespace)
    function = namespace.get(name)
    if not callable(function):
        candidates = [v for v in namespace.values() if callable(v) and getattr(v, "__name__", "") == name]
        if not candidates:
            raise ValueError("the source of %s defines no function %s" % (name, name))
        function = candidates[0]
    return function


class FeastOdfv(Odfv):
    """A Feast python-mode ODFV built from its registry entry.

    `inputs`: (column name, Feast value type name, [other names the function may use
    for it, e.g. `view__feature`]); `outputs`: (feature name, Feast value type name).
    """

    def __init__(self, name, source, function_name, singleton, inputs, outputs):
        self.function_name = function_name
        self.singleton = singleton
        self.feast_inputs = [(n, t, list(aliases)) for n, t, aliases in inputs]
        self.feast_outputs = list(outputs)
        super().__init__(
            name,
            [(n, COLUMN_TYPE[t]) for n, t, _ in self.feast_inputs],
            [(n, COLUMN_TYPE[t]) for n, t in self.feast_outputs],
            load_function(source, function_name),
        )

    def compute(self, columns, rows):
        values = {}
        for name, feast_type, aliases in self.feast_inputs:
            converted = [to_python(v, feast_type) for v in columns[name]]
            values[name] = converted
            for alias in aliases:
                values[alias] = converted
        if self.singleton:
            results = []
            for i in range(rows):
                row = {k: v[i] for k, v in values.items()}
                results.append({**row, **self._call(row)})
            out = {name: [r.get(name) for r in results] for name, _ in self.feast_outputs}
            missing = [n for n, _ in self.feast_outputs if any(n not in r for r in results)]
        else:
            result = {**values, **self._call(values)}
            out = {name: _as_column(result.get(name)) for name, _ in self.feast_outputs}
            missing = [n for n, _ in self.feast_outputs if n not in result]
        if missing:
            raise PluginError(
                "%s returned no value for %s" % (self.function_name, ", ".join(missing))
            )
        return {name: to_feast(out[name], t, name) for name, t in self.feast_outputs}

    def _call(self, arguments):
        result = self.function(arguments)
        if not isinstance(result, dict):
            raise PluginError(
                "%s returned %s, not a dict" % (self.function_name, type(result).__name__)
            )
        return result


def _as_column(value):
    """A batch function's output for one feature: a list, or one value (Feast wraps a
    value that is not a list)."""
    return value if isinstance(value, list) else [value]


def to_python(value, feast_type):
    """An input value as Feast hands it to a python-mode function."""
    if value is None:
        return None
    if feast_type == "UNIX_TIMESTAMP":
        if value == NULL_TIMESTAMP:
            return None
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if feast_type == "JSON":
        try:
            return json.loads(value)
        except (ValueError, TypeError):
            return value
    return value


def _non_empty(value):
    return value is not None and (not hasattr(value, "__len__") or len(value) > 0 or isinstance(value, str))


def _array_like(value):
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))


def _is_null(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


# Feast's type check of the first non-empty value, per value type.
_CHECKED = {
    "DOUBLE": ({float, int}, "{<class 'float'>, <class 'int'>}"),
    "BYTES": ({bytes}, "{<class 'bytes'>}"),
    "BOOL": ({bool, int}, "{<class 'bool'>, <class 'int'>}"),
}


def to_feast(values, feast_type, name):
    """Output values converted to the column of declared Feast type `feast_type`."""
    if feast_type == "JSON":
        return [_json(v, name) for v in values]
    sample = next((v for v in values if _non_empty(v) and not _array_like(v)), None)
    if sample is None:
        return [None] * len(values)
    if feast_type == "UNIX_TIMESTAMP":
        convert = _timestamp
    else:
        convert = _CONVERT[feast_type]
        _check_sample(sample, feast_type, name)
    # A NaN timestamp is not null to Feast but its null sentinel (see `_timestamp`).
    nan_is_null = feast_type != "UNIX_TIMESTAMP"
    out = []
    for v in values:
        if v is None or _array_like(v) or (nan_is_null and _is_null(v)):
            out.append(None)
            continue
        try:
            out.append(convert(v))
        except (ValueError, TypeError, OverflowError) as e:
            raise PluginError("feature %s: cannot convert %r to %s: %s" % (name, v, feast_type, e))
    return out


def _check_sample(sample, feast_type, name):
    """Feast's type check of the first non-empty value of a column."""
    checked = _CHECKED.get(feast_type)
    if checked is not None:
        allowed, shown = checked
        try:
            is_zero = sample == 0 or sample == 0.0
        except (ValueError, TypeError):
            is_zero = False
        if is_zero and feast_type != "BOOL":
            allowed, shown = {int, float}, "{<class 'int'>, <class 'float'>}"
        if type(sample) not in allowed:
            raise PluginError("feature %s: Type `%s` not in %s" % (name, type(sample), shown))


def _int32(x):
    x = int(x)
    if not -(2**31) <= x < 2**31:
        raise ValueError("Value out of range: %d" % x)
    return x


def _int64(x):
    x = int(x)
    if not -(2**63) <= x < 2**63:
        raise ValueError("Value out of range: %d" % x)
    return x


def _double(x):
    # A protobuf double field takes numbers (bools included), nothing else.
    if not isinstance(x, (int, float)):
        raise TypeError("expected a number, got %s" % type(x).__name__)
    return float(x)


def _bool(x):
    # A protobuf bool field takes ints (any non-zero is true), not floats or strings.
    if not isinstance(x, int):
        raise TypeError("'%s' object cannot be interpreted as an integer" % type(x).__name__)
    return bool(x)


def _bytes(x):
    if not isinstance(x, (bytes, bytearray)):
        raise TypeError("expected bytes, %s found" % type(x).__name__)
    return bytes(x)


_CONVERT = {
    "INT32": _int32,
    "INT64": _int64,
    "FLOAT": float,
    "DOUBLE": _double,
    "STRING": str,
    "BYTES": _bytes,
    "BOOL": _bool,
}


def _timestamp(value):
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp())
    if isinstance(value, float):
        return NULL_TIMESTAMP
    return int(value)


def _json(value, name):
    if value is None:
        return None
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError as e:
            raise PluginError("feature %s: Invalid JSON string for JSON type: %s" % (name, e))
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise PluginError("feature %s: %s" % (name, e))
