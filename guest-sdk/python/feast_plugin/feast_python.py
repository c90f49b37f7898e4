"""Feast's python-mode on-demand feature views, run as Feast 0.67 runs them.

`FeastOdfv` takes the function's source as the registry keeps it (`body_text`), and
gives the function what Feast's feature server gives it and converts what it returns
as Feast converts it:

- inputs: a dict of lists, one entry per source feature under both its short name
  (`conv_rate`) and its full name (`driver_hourly_stats__conv_rate`), and one per
  request data field; values as Feast's `feast_value_type_to_python_type` makes them
  (`None` for a missing value, a FLOAT widened to a Python float, UNIX_TIMESTAMP as
  a UTC `datetime`, JSON parsed); a list feature as a Python list (`[]` when empty),
  its items as the scalar type's (FLOAT_LIST items widened floats), except that
  UNIX_TIMESTAMP_LIST items are UTC `datetime`s (Feast's null timestamp: `None`) and
  JSON_LIST items are parsed (a text that is not JSON stays a string);
- `singleton=True`: the function is called once per row with one value per key (Feast
  itself calls it only for the first row of a request); as Feast does with what it
  returns (`feast/utils.py:_augment_response_with_on_demand_transforms`), a returned
  list is taken for the output column itself, so it must hold exactly one value, the
  row's (a list feature's value is returned as `[[1, 2]]`, and `[x]` is `x`);
- outputs: each declared feature converted to its declared Feast type as Feast's
  `python_values_to_proto_values` does: `None`, NaN and list-like values become null,
  INT32/INT64 take `int(x)`, FLOAT `float(x)`, STRING `str(x)`, JSON `json.dumps(x)`
  (a string must already be JSON), UNIX_TIMESTAMP a `datetime` (naive = UTC) or an
  int; the first non-null value of a DOUBLE, BOOL or BYTES column must have the type
  Feast checks for (`float`/`int`, `bool`/`int`, `bytes`);
- list outputs as Feast's `_convert_list_values_to_proto`: `None` is null and `[]` an
  empty list; any other value must be iterable (a NaN or a number fails the call; a
  tuple, a set, a string are iterated); a `None` item of a `list` becomes the type's
  default (0, 0.0, False, "", b"", Feast's null timestamp); the items of the first
  non-empty value must have exactly the types Feast lists (`int` for INT32_LIST and
  INT64_LIST, `float` for FLOAT_LIST and DOUBLE_LIST, `bool`, `str`, `bytes`, `int`
  or `datetime` for UNIX_TIMESTAMP_LIST), and every item is then converted as the
  protobuf field takes it: ints (not bools, not floats) in range for the int lists,
  any real number for the float lists (NaN kept), `bool(x)` for BOOL_LIST, `str` or
  UTF-8 `bytes` for STRING_LIST, `bytes` only for BYTES_LIST, and for
  UNIX_TIMESTAMP_LIST a `datetime` (naive = UTC), a float as Feast's null timestamp,
  anything else `int(x)`. A first non-empty value that is `bytes` is JSON: every value
  is parsed as a JSON array (BYTES_LIST refuses it). JSON_LIST items are kept when
  they are JSON texts and `json.dumps`ed otherwise.

The function runs with the globals Feast gives it when it rebuilds a function from
source, minus pandas and numpy, which a component does not carry: a function using
`pd` or `np` fails its calls with a NameError naming them.
"""

import __future__
import json
import math
import operator
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
    "INT32_LIST": arrow_ipc.INT32_LIST,
    "INT64_LIST": arrow_ipc.INT64_LIST,
    "FLOAT_LIST": arrow_ipc.FLOAT32_LIST,
    "DOUBLE_LIST": arrow_ipc.FLOAT64_LIST,
    "BOOL_LIST": arrow_ipc.BOOLEAN_LIST,
    "STRING_LIST": arrow_ipc.UTF8_LIST,
    "JSON_LIST": arrow_ipc.UTF8_LIST,
    "BYTES_LIST": arrow_ipc.BINARY_LIST,
    "UNIX_TIMESTAMP_LIST": arrow_ipc.TIMESTAMP_SECONDS_LIST,
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
            missing = [n for n, _ in self.feast_outputs if any(n not in r for r in results)]
            if not missing:
                out = {
                    name: [_singleton_value(r[name], name) for r in results]
                    for name, _ in self.feast_outputs
                }
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


def _singleton_value(value, name):
    """A singleton function's output for one feature of one row: Feast takes a list
    for the column (one value per item), another value for a column of one value."""
    if not isinstance(value, list):
        return value
    if len(value) != 1:
        raise PluginError(
            "feature %s: the singleton function returned a list of %d values for one row"
            " (Feast takes a returned list for the output column, one value per row:"
            " return a list value wrapped, as [[...]])" % (name, len(value))
        )
    return value[0]


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
    if feast_type == "UNIX_TIMESTAMP_LIST":
        return [None if v == NULL_TIMESTAMP else datetime.fromtimestamp(v, tz=timezone.utc) for v in value]
    if feast_type == "JSON_LIST":
        out = []
        for v in value:
            try:
                out.append(json.loads(v))
            except (ValueError, TypeError):
                out.append(v)
        return out
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
    if feast_type == "JSON_LIST":
        return [_json_list(v, name) for v in values]
    if feast_type in _LISTS:
        return _to_feast_lists(values, feast_type, name)
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


# ---------------------------------------------------------------- list outputs
#
# Feast 0.67 `feast/type_map.py`: `_python_value_to_proto_value` (JSON_LIST) and
# `_convert_list_values_to_proto` (the others), with `_sanitize_list_value`,
# `_validate_collection_item_types`, `_convert_timestamp_collection_to_proto`,
# `_convert_bool_collection_to_proto`; each item then goes through the protobuf
# (upb) repeated field, whose checks the converters below repeat.


def _pb_int(bits):
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)

    def convert(x):
        if isinstance(x, bool):
            raise TypeError("Expected an int, got a boolean")
        x = operator.index(x)
        if not low <= x < high:
            raise ValueError("Value out of range: %d" % x)
        return x

    return convert


def _pb_float(x):
    # PyFloat_AsDouble: numbers and what has __float__ or __index__, not strings.
    if isinstance(x, float):
        return x
    if isinstance(x, (str, bytes, bytearray)) or not (hasattr(x, "__float__") or hasattr(x, "__index__")):
        raise TypeError("must be real number, not %s" % type(x).__name__)
    return float(x)


def _pb_string(x):
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, str):
        x.encode("utf-8")  # lone surrogates fail, as protobuf fails them
        return x
    raise TypeError("bad argument type for built-in operation")


def _pb_bytes(x):
    if not isinstance(x, bytes):
        raise TypeError("expected bytes, %s found" % type(x).__name__)
    return x


_pb_int64 = _pb_int(64)


def _list_timestamp(x):
    # `_python_datetime_to_int_timestamp`, then the Int64List field.
    if isinstance(x, datetime):
        if x.utcoffset() is None:
            x = x.replace(tzinfo=timezone.utc)
        return _pb_int64(int(x.timestamp()))
    if isinstance(x, float):
        return NULL_TIMESTAMP
    return _pb_int64(int(x))


# Feast type -> (item converter, the item types Feast's check of the first non-empty
# value allows (exact types), the default of a None item, the item converter of a
# value parsed from JSON bytes (the field `PYTHON_LIST_VALUE_TYPE_TO_PROTO_VALUE`
# names)).
_LISTS = {
    "INT32_LIST": (_pb_int(32), (int,), 0, _pb_int(32)),
    "INT64_LIST": (_pb_int64, (int,), 0, _pb_int64),
    "FLOAT_LIST": (_pb_float, (float,), 0.0, _pb_float),
    "DOUBLE_LIST": (_pb_float, (float,), 0.0, _pb_float),
    "BOOL_LIST": (bool, (bool,), False, bool),
    "STRING_LIST": (_pb_string, (str,), "", _pb_string),
    "BYTES_LIST": (_pb_bytes, (bytes,), b"", _pb_bytes),
    "UNIX_TIMESTAMP_LIST": (_list_timestamp, (int, datetime), NULL_TIMESTAMP, _pb_int64),
}


def _to_feast_lists(values, feast_type, name):
    try:
        convert, allowed, default, json_convert = _LISTS[feast_type]
        # `_sanitize_list_value`: a None item of a list takes the type's default.
        values = [
            [default if x is None else x for x in v] if isinstance(v, list) else v for v in values
        ]
        sample = next((v for v in values if _non_empty(v)), None)
        if isinstance(sample, (bytes, bytearray)):
            if feast_type == "BYTES_LIST":
                raise TypeError('Value "%s" is of type %s not of type BYTES_LIST' % (sample, type(sample)))
            if not isinstance(json.loads(sample), list):
                raise TypeError("a bytes value is JSON but not an array")
            parsed = [json.loads(v) for v in values]
            return [[json_convert(x) for x in v] for v in parsed]
        if sample is not None:
            for item in sample:
                if item is not None and type(item) not in allowed:
                    raise TypeError(
                        'Value "%s" is of type %s not of type %s' % (item, type(item), allowed[0])
                    )
        return [None if v is None else [convert(x) for x in v] for v in values]
    except (ValueError, TypeError, OverflowError) as e:
        raise PluginError(
            "feature %s: cannot convert to %s: %s: %s" % (name, feast_type, type(e).__name__, e)
        )


def _json_list(value, name):
    """A JSON_LIST value (`_python_value_to_proto_value`): each item kept if it is a
    JSON text, `json.dumps`ed if it is not a string."""
    if value is None:
        return None
    out = []
    try:
        for x in value:
            if isinstance(x, str):
                try:
                    json.loads(x)
                except ValueError as e:
                    raise ValueError("Invalid JSON string in JSON_LIST: %s" % e)
                out.append(x)
            else:
                out.append(json.dumps(x))
    except (ValueError, TypeError, OverflowError) as e:
        raise PluginError(
            "feature %s: cannot convert to JSON_LIST: %s: %s" % (name, type(e).__name__, e)
        )
    return out
