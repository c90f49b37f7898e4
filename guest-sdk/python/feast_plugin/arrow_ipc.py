"""Arrow IPC streams of flat batches in pure Python (no pyarrow in a component).

The plugin world exchanges one schema message and one record batch, uncompressed,
without dictionaries (`wit/types.wit`). This module reads and writes exactly that for
the column types the world declares: Int32, Int64, Float32, Float64, Boolean, Utf8,
Binary and Timestamp(Second, "UTC"), and List of each of them. A column is a Python
list with `None` for null; a value of a list column is a Python list of the item
type's values (a tuple is written too), an empty list being a value, not null.

List columns are Arrow `List` (int32 offsets) whose one child field is named `item`
and nullable, as pyarrow and arrow-rs make them. Items are never null in the plugin
world (a Feast list has no null items): writing a list holding `None` fails, and so
does reading one whose entries reference a null item (`IpcError`), rather than
handing the plugin a value its output could not carry back. Reading accepts a child
field of any name, with or without validity buffers, and offsets that do not start
at zero (a sliced child); LargeList, FixedSizeList and nested lists are refused.

The flatbuffer metadata is written front to back (each table's vtable just before
it, children after their parent), every scalar aligned to its size, so Arrow's
verifying readers accept it; reading checks every offset against the buffer.
"""

import math
import struct

INT32 = "int32"
INT64 = "int64"
FLOAT32 = "float32"
FLOAT64 = "float64"
BOOLEAN = "boolean"
UTF8 = "utf8"
BINARY = "binary"
TIMESTAMP_SECONDS = "timestamp-seconds"
INT32_LIST = "int32-list"
INT64_LIST = "int64-list"
FLOAT32_LIST = "float32-list"
FLOAT64_LIST = "float64-list"
BOOLEAN_LIST = "boolean-list"
UTF8_LIST = "utf8-list"
BINARY_LIST = "binary-list"
TIMESTAMP_SECONDS_LIST = "timestamp-seconds-list"

COLUMN_TYPES = (
    INT32,
    INT64,
    FLOAT32,
    FLOAT64,
    BOOLEAN,
    UTF8,
    BINARY,
    TIMESTAMP_SECONDS,
    INT32_LIST,
    INT64_LIST,
    FLOAT32_LIST,
    FLOAT64_LIST,
    BOOLEAN_LIST,
    UTF8_LIST,
    BINARY_LIST,
    TIMESTAMP_SECONDS_LIST,
)

_CONTINUATION = b"\xff\xff\xff\xff"
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_V5 = 4
_HEADER_SCHEMA = 1
_HEADER_RECORD_BATCH = 3
# Arrow's `Type` union tags.
_T_INT, _T_FLOAT, _T_BINARY, _T_UTF8, _T_BOOL, _T_TIMESTAMP, _T_LIST = 2, 3, 4, 5, 6, 10, 12
_FIXED = {INT32: "i", INT64: "q", FLOAT32: "f", FLOAT64: "d", TIMESTAMP_SECONDS: "q"}
_WIDTH = {"i": 4, "q": 8, "f": 4, "d": 8}
# A list column type -> its item type, and back.
_LIST_ITEM = {
    INT32_LIST: INT32,
    INT64_LIST: INT64,
    FLOAT32_LIST: FLOAT32,
    FLOAT64_LIST: FLOAT64,
    BOOLEAN_LIST: BOOLEAN,
    UTF8_LIST: UTF8,
    BINARY_LIST: BINARY,
    TIMESTAMP_SECONDS_LIST: TIMESTAMP_SECONDS,
}
_LIST_OF = {item: list_type for list_type, item in _LIST_ITEM.items()}
# The smallest magnitude a C cast of a double to float rounds to infinity: the
# midpoint between float32's largest finite value and 2**128.
_F32_OVERFLOW = 3.4028235677973366e38


class IpcError(ValueError):
    """The bytes are not an Arrow IPC stream this module reads."""


# ---------------------------------------------------------------- flatbuffers out


class _Writer:
    """A flatbuffer written front to back: a table's offset fields are patched when
    the child they point to is written after it."""

    def __init__(self):
        self.buf = bytearray(4)  # the root offset, patched by `root`

    def _pad(self, align, extra=0):
        while (len(self.buf) + extra) % align:
            self.buf.append(0)

    def root(self, write_table):
        pos = write_table()
        struct.pack_into("<I", self.buf, 0, pos)
        self._pad(8)
        return bytes(self.buf)

    def table(self, fields):
        """Writes a table; `fields` lists per slot None (absent) or (format, value)
        with format a struct code, or ("off", writer) for a child written after."""
        layout, size = [], 4
        for slot, field in enumerate(fields):
            if field is None:
                continue
            fmt = field[0]
            width = 4 if fmt == "off" else struct.calcsize("<" + fmt)
            size += -size % width
            layout.append((slot, size, field))
            size += width
        size += -size % 4
        vtable = struct.pack("<HH", 4 + 2 * len(fields), size)
        offsets = [0] * len(fields)
        for slot, at, _ in layout:
            offsets[slot] = at
        vtable += struct.pack("<%dH" % len(fields), *offsets)
        self._pad(8, len(vtable))
        vtable_pos = len(self.buf)
        self.buf += vtable
        table_pos = len(self.buf)
        self.buf += bytes(size)
        struct.pack_into("<i", self.buf, table_pos, table_pos - vtable_pos)
        children = []
        for _, at, (fmt, value) in layout:
            if fmt == "off":
                children.append((table_pos + at, value))
            else:
                struct.pack_into("<" + fmt, self.buf, table_pos + at, value)
        for at, write_child in children:
            self._patch(at, write_child())
        return table_pos

    def _patch(self, at, target):
        struct.pack_into("<I", self.buf, at, target - at)

    def string(self, text):
        data = text.encode("utf-8")
        self._pad(4)
        pos = len(self.buf)
        self.buf += struct.pack("<I", len(data)) + data + b"\x00"
        return pos

    def tables(self, writers):
        """A vector of tables."""
        self._pad(4)
        pos = len(self.buf)
        self.buf += struct.pack("<I", len(writers)) + bytes(4 * len(writers))
        for i, write_table in enumerate(writers):
            self._patch(pos + 4 + 4 * i, write_table())
        return pos

    def structs(self, pairs):
        """A vector of 16-byte structs of two int64 (FieldNode, Buffer)."""
        self._pad(8, 4)
        pos = len(self.buf)
        self.buf += struct.pack("<I", len(pairs))
        for a, b in pairs:
            self.buf += struct.pack("<qq", a, b)
        return pos


def _type_table(w, column_type):
    """(union tag, writer of the type table) of a column type."""
    if column_type in (INT32, INT64):
        bits = 32 if column_type == INT32 else 64
        return _T_INT, lambda: w.table([("i", bits), ("B", 1)])
    if column_type in (FLOAT32, FLOAT64):
        precision = 1 if column_type == FLOAT32 else 2
        return _T_FLOAT, lambda: w.table([("h", precision)])
    if column_type == BOOLEAN:
        return _T_BOOL, lambda: w.table([])
    if column_type == UTF8:
        return _T_UTF8, lambda: w.table([])
    if column_type == BINARY:
        return _T_BINARY, lambda: w.table([])
    if column_type == TIMESTAMP_SECONDS:
        return _T_TIMESTAMP, lambda: w.table([("h", 0), ("off", lambda: w.string("UTC"))])
    raise IpcError("unknown column type %r" % (column_type,))


def _field_table(w, name, column_type):
    item_type = _LIST_ITEM.get(column_type)
    if item_type is None:
        tag, type_writer = _type_table(w, column_type)
        children = []
    else:
        # List: an empty type table and one nullable child field `item`.
        tag, type_writer = _T_LIST, lambda: w.table([])
        children = [_field_table(w, "item", item_type)]
    return lambda: w.table(
        [
            ("off", lambda: w.string(name)),
            ("B", 1),
            ("B", tag),
            ("off", type_writer),
            None,
            ("off", lambda: w.tables(children)),
        ]
    )


def _message(header_tag, header_writer_factory, body_length):
    w = _Writer()
    return w.root(
        lambda: w.table(
            [
                ("h", _V5),
                ("B", header_tag),
                ("off", header_writer_factory(w)),
                ("q", body_length),
            ]
        )
    )


def _frame(metadata):
    pad = -(len(metadata) + 8) % 8
    return _CONTINUATION + struct.pack("<i", len(metadata) + pad) + metadata + bytes(pad)


def _schema_message(schema):
    def header(w):
        fields = [_field_table(w, name, t) for name, t in schema]
        return lambda: w.table([("h", 0), ("off", lambda: w.tables(fields))])

    return _frame(_message(_HEADER_SCHEMA, header, 0))


# ---------------------------------------------------------------- columns out


def _validity(values):
    nulls = sum(1 for v in values if v is None)
    if nulls == 0:
        return b"", 0
    bits = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v is not None:
            bits[i >> 3] |= 1 << (i & 7)
    return bytes(bits), nulls


def _f32(x):
    """A Python float as a float32 stores it (out of range: infinity, as C casts)."""
    if math.isfinite(x) and abs(x) >= _F32_OVERFLOW:
        return math.copysign(math.inf, x)
    return x


def _column_buffers(name, column_type, values):
    validity, nulls = _validity(values)
    if column_type in _FIXED:
        code = _FIXED[column_type]
        zero = 0.0 if code in "fd" else 0
        plain = [zero if v is None else v for v in values]
        if code == "f":
            plain = [_f32(v) for v in plain]
        try:
            data = struct.pack("<%d%s" % (len(plain), code), *plain)
        except struct.error as e:
            raise IpcError("column %s: a value does not fit %s: %s" % (name, column_type, e))
        return nulls, [validity, data]
    if column_type == BOOLEAN:
        bits = bytearray((len(values) + 7) // 8)
        for i, v in enumerate(values):
            if v:
                bits[i >> 3] |= 1 << (i & 7)
        return nulls, [validity, bytes(bits)]
    if column_type in (UTF8, BINARY):
        chunks, offsets, end = [], [0], 0
        for v in values:
            if v is not None:
                b = v.encode("utf-8") if column_type == UTF8 else bytes(v)
                chunks.append(b)
                end += len(b)
            offsets.append(end)
        if end > 0x7FFFFFFF:
            raise IpcError("column %s holds more than 2 GiB" % name)
        return nulls, [validity, struct.pack("<%di" % len(offsets), *offsets), b"".join(chunks)]
    raise IpcError("unknown column type %r" % (column_type,))


def _list_buffers(name, item_type, values, nodes):
    """The buffers of a list column (validity, offsets, then its items' buffers);
    appends its two field nodes (the list's, its items') to `nodes`."""
    validity, nulls = _validity(values)
    items, offsets, end = [], [0], 0
    for v in values:
        if v is not None:
            if not isinstance(v, (list, tuple)):
                raise IpcError(
                    "column %s: a value of a list column is a %s, not a list" % (name, type(v).__name__)
                )
            items.extend(v)
            end += len(v)
        offsets.append(end)
    if end > 0x7FFFFFFF:
        raise IpcError("column %s holds more than 2**31 list items" % name)
    item_nulls, parts = _column_buffers(name, item_type, items)
    if item_nulls:
        raise IpcError("column %s: a list holds None (list items cannot be null)" % name)
    nodes.append((len(values), nulls))
    nodes.append((end, 0))
    return [validity, struct.pack("<%di" % len(offsets), *offsets)] + parts


def write_stream(schema, columns):
    """An IPC stream of one batch. `schema`: list of (name, column type);
    `columns`: one list of values per schema entry, all of one length."""
    rows = len(columns[0]) if columns else 0
    if len(columns) != len(schema):
        raise IpcError("%d columns for a schema of %d" % (len(columns), len(schema)))
    # (the schema message, whether a column is a list): a schema of scalars only writes
    # its columns without looking for lists.
    schema_message, has_lists = _cached(
        _SCHEMA_MESSAGES,
        tuple(schema),
        lambda: (_schema_message(schema), any(t in _LIST_ITEM for _, t in schema)),
    )
    nodes, buffers, body = [], [], bytearray()
    for (name, column_type), values in zip(schema, columns):
        if len(values) != rows:
            raise IpcError("column %s has %d rows, not %d" % (name, len(values), rows))
        if has_lists and column_type in _LIST_ITEM:
            parts = _list_buffers(name, _LIST_ITEM[column_type], values, nodes)
        else:
            nulls, parts = _column_buffers(name, column_type, values)
            nodes.append((rows, nulls))
        for part in parts:
            buffers.append((len(body), len(part)))
            body += part
            body += bytes(-len(body) % 8)

    template = _cached(
        _BATCH_MESSAGES, (len(nodes), len(buffers)), lambda: _BatchTemplate(len(nodes), len(buffers))
    )
    message = bytearray(template.frame)
    struct.pack_into("<q", message, template.body_length, len(body))
    struct.pack_into("<q", message, template.rows, rows)
    struct.pack_into("<%dq" % (2 * len(nodes)), message, template.nodes, *[x for node in nodes for x in node])
    struct.pack_into(
        "<%dq" % (2 * len(buffers)), message, template.buffers, *[x for buf in buffers for x in buf]
    )
    return schema_message + bytes(message) + bytes(body) + _END_OF_STREAM


# Building a flatbuffer costs more than the data of a small batch: schema messages are
# made once per schema, record batch messages from a template per shape whose numbers
# are patched in place (`_BatchTemplate`), and schemas read are parsed once per
# schema message (`read_stream`).
_SCHEMA_MESSAGES = {}
_BATCH_MESSAGES = {}
_SCHEMAS_READ = {}


def _cached(cache, key, make):
    value = cache.get(key)
    if value is None:
        if len(cache) >= 16:
            cache.clear()
        value = cache[key] = make()
    return value


class _BatchTemplate:
    """A framed record batch message, every number zero, and where the numbers are."""

    __slots__ = ("frame", "body_length", "rows", "nodes", "buffers")

    def __init__(self, columns, buffers):
        def header(w):
            return lambda: w.table(
                [
                    ("q", 0),
                    ("off", lambda: w.structs([(0, 0)] * columns)),
                    ("off", lambda: w.structs([(0, 0)] * buffers)),
                ]
            )

        meta = _message(_HEADER_RECORD_BATCH, header, 0)
        root = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
        batch = root.table(2)
        at = 8  # the continuation marker and the length precede the metadata
        self.frame = _frame(meta)
        self.body_length = at + root.at(3)
        self.rows = at + batch.at(0)
        self.nodes = at + batch.vector(1)[0]
        self.buffers = at + batch.vector(2)[0]


# ---------------------------------------------------------------- flatbuffers in


class _Table:
    """A flatbuffer table at `pos` of `buf`, fields read by slot."""

    __slots__ = ("buf", "pos", "vtable", "vsize")

    def __init__(self, buf, pos):
        self.buf = buf
        _check(buf, pos, 4)
        self.pos = pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        _check(buf, self.vtable, 4)
        self.vsize = struct.unpack_from("<H", buf, self.vtable)[0]
        _check(buf, self.vtable, self.vsize)

    def at(self, slot):
        entry = 4 + 2 * slot
        if entry + 2 > self.vsize:
            return 0
        off = struct.unpack_from("<H", self.buf, self.vtable + entry)[0]
        return self.pos + off if off else 0

    def scalar(self, slot, fmt, default=0):
        at = self.at(slot)
        if not at:
            return default
        _check(self.buf, at, struct.calcsize("<" + fmt))
        return struct.unpack_from("<" + fmt, self.buf, at)[0]

    def _target(self, slot):
        at = self.at(slot)
        if not at:
            return 0
        _check(self.buf, at, 4)
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, slot):
        target = self._target(slot)
        return _Table(self.buf, target) if target else None

    def string(self, slot):
        target = self._target(slot)
        if not target:
            return None
        _check(self.buf, target, 4)
        n = struct.unpack_from("<I", self.buf, target)[0]
        _check(self.buf, target + 4, n)
        return bytes(self.buf[target + 4 : target + 4 + n]).decode("utf-8")

    def vector(self, slot):
        """(position of the first element, length) of a vector; (0, 0) if absent."""
        target = self._target(slot)
        if not target:
            return 0, 0
        _check(self.buf, target, 4)
        return target + 4, struct.unpack_from("<I", self.buf, target)[0]

    def tables(self, slot):
        start, n = self.vector(slot)
        _check(self.buf, start, 4 * n)
        out = []
        for i in range(n):
            at = start + 4 * i
            out.append(_Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0]))
        return out

    def structs(self, slot):
        start, n = self.vector(slot)
        _check(self.buf, start, 16 * n)
        return [struct.unpack_from("<qq", self.buf, start + 16 * i) for i in range(n)]


def _check(buf, pos, size):
    if pos < 0 or size < 0 or pos + size > len(buf):
        raise IpcError("a flatbuffer offset points outside the message")


def _column_type(field):
    tag = field.scalar(2, "B")
    t = field.table(3)
    if tag == _T_INT and t is not None:
        bits, signed = t.scalar(0, "i"), t.scalar(1, "B")
        if signed and bits in (32, 64):
            return INT32 if bits == 32 else INT64
    elif tag == _T_FLOAT and t is not None:
        precision = t.scalar(0, "h")
        if precision in (1, 2):
            return FLOAT32 if precision == 1 else FLOAT64
    elif tag == _T_BOOL:
        return BOOLEAN
    elif tag == _T_UTF8:
        return UTF8
    elif tag == _T_BINARY:
        return BINARY
    elif tag == _T_TIMESTAMP and t is not None and t.scalar(0, "h") == 0:
        return TIMESTAMP_SECONDS
    elif tag == _T_LIST:
        children = field.tables(5)
        if len(children) != 1:
            raise IpcError(
                "column %s: a list field has %d child fields, not 1" % (field.string(0), len(children))
            )
        try:
            list_type = _LIST_OF.get(_column_type(children[0]))
        except IpcError:
            list_type = None
        if list_type is None:
            raise IpcError(
                "column %s is a list of an Arrow type the plugin world does not carry (tag %d)"
                % (field.string(0), children[0].scalar(2, "B"))
            )
        return list_type
    raise IpcError("column %s has an Arrow type (tag %d) the plugin world does not carry" % (field.string(0), tag))


def _messages(data):
    """(flatbuffer, body) of each message of a stream, up to end of stream."""
    pos, n = 0, len(data)
    while pos < n:
        if data[pos : pos + 4] == _CONTINUATION:
            pos += 4
        if pos + 4 > n:
            raise IpcError("the stream ends inside a message length")
        length = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        if length == 0:
            return
        if length < 0 or pos + length > n:
            raise IpcError("a message length runs past the end of the stream")
        meta = data[pos : pos + length]
        pos += length
        root = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
        body_length = root.scalar(3, "q")
        if body_length < 0 or pos + body_length > n:
            raise IpcError("a message body runs past the end of the stream")
        yield root, data[pos : pos + body_length]
        pos += body_length


def read_stream(data):
    """Reads a stream of one batch: (schema, columns) as `write_stream` takes them."""
    data = memoryview(data)
    schema, columns = None, None
    for message, body in _messages(data):
        tag = message.scalar(1, "B")
        header = message.table(2)
        if header is None:
            raise IpcError("a message has no header")
        if tag == _HEADER_SCHEMA:
            # Repeated calls send the same schema message: parsed once, found by its bytes.
            schema, node_count = _cached(_SCHEMAS_READ, bytes(message.buf), lambda: _read_schema(header))
        elif tag == _HEADER_RECORD_BATCH:
            if schema is None:
                raise IpcError("a record batch comes before the schema")
            if columns is not None:
                raise IpcError("the stream holds more than one record batch")
            if header.table(3) is not None:
                raise IpcError("compressed record batches are not supported")
            columns = _read_batch(schema, node_count, header, body)
        else:
            raise IpcError("unsupported message type %d (dictionaries are not supported)" % tag)
    if schema is None:
        raise IpcError("the stream has no schema")
    if columns is None:
        columns = [[] for _ in schema]
    return list(schema), columns


def _read_schema(header):
    """(the (name, column type) of each field, how many field nodes a batch has)."""
    schema = tuple((f.string(0), _column_type(f)) for f in header.tables(1))
    return schema, len(schema) + sum(1 for _, t in schema if t in _LIST_ITEM)


def _read_batch(schema, node_count, header, body):
    rows = header.scalar(0, "q")
    nodes = header.structs(1)
    buffers = header.structs(2)
    if len(nodes) != node_count:
        raise IpcError("%d field nodes for %d columns" % (len(nodes), len(schema)))

    def buffer(i):
        if i >= len(buffers):
            raise IpcError("the batch has too few buffers")
        off, length = buffers[i]
        if off < 0 or length < 0 or off + length > len(body):
            raise IpcError("a buffer runs past the end of the body")
        return body[off : off + length]

    columns, b = [], 0
    # A list column has two field nodes, its own and its items' (taken in the loop).
    node_iter = iter(nodes)
    for (name, column_type), (length, nulls) in zip(schema, node_iter):
        if length != rows:
            raise IpcError("column %s has %d rows, the batch %d" % (name, length, rows))
        valid = buffer(b)
        if nulls and len(valid) * 8 < rows:
            raise IpcError("column %s: validity buffer too short" % name)
        if column_type in _FIXED:
            code = _FIXED[column_type]
            data = buffer(b + 1)
            if len(data) < rows * _WIDTH[code]:
                raise IpcError("column %s: value buffer too short" % name)
            values = list(struct.unpack_from("<%d%s" % (rows, code), data, 0))
            b += 2
        elif column_type == BOOLEAN:
            data = buffer(b + 1)
            if len(data) * 8 < rows:
                raise IpcError("column %s: value buffer too short" % name)
            values = [bool(data[i >> 3] >> (i & 7) & 1) for i in range(rows)]
            b += 2
        elif column_type in (UTF8, BINARY):
            raw_offsets, data = buffer(b + 1), buffer(b + 2)
            if len(raw_offsets) < 4 * (rows + 1) and rows:
                raise IpcError("column %s: offset buffer too short" % name)
            offsets = struct.unpack_from("<%di" % (rows + 1), raw_offsets, 0) if rows else (0,)
            values = []
            for i in range(rows):
                start, end = offsets[i], offsets[i + 1]
                if start < 0 or end < start or end > len(data):
                    raise IpcError("column %s: an offset is out of range" % name)
                chunk = bytes(data[start:end])
                values.append(chunk.decode("utf-8") if column_type == UTF8 else chunk)
            b += 3
        else:
            values, b = _read_list(name, _LIST_ITEM[column_type], rows, next(node_iter), buffer, b)
        if nulls:
            for i in range(rows):
                if not valid[i >> 3] >> (i & 7) & 1:
                    values[i] = None
        columns.append(values)
    return columns


def _read_varlen(name, column_type, start, count, raw_offsets, data):
    """Values `start` to `start + count` of a Utf8 or Binary array (list items; the
    batch's own Utf8 and Binary columns are read inline, as fast as before)."""
    if len(raw_offsets) < 4 * (start + count + 1) and count:
        raise IpcError("column %s: offset buffer too short" % name)
    offsets = struct.unpack_from("<%di" % (count + 1), raw_offsets, 4 * start) if count else (0,)
    values = []
    for i in range(count):
        begin, end = offsets[i], offsets[i + 1]
        if begin < 0 or end < begin or end > len(data):
            raise IpcError("column %s: an offset is out of range" % name)
        chunk = bytes(data[begin:end])
        values.append(chunk.decode("utf-8") if column_type == UTF8 else chunk)
    return values


def _read_list(name, item_type, rows, item_node, buffer, b):
    """(the values of the list column whose buffers start at `b`, the index of the
    buffer after its items'); null entries are left to the caller."""
    raw_offsets = buffer(b + 1)
    if len(raw_offsets) < 4 * (rows + 1) and rows:
        raise IpcError("column %s: offset buffer too short" % name)
    offsets = struct.unpack_from("<%di" % (rows + 1), raw_offsets, 0) if rows else (0,)
    item_count, item_nulls = item_node
    first, last = offsets[0], offsets[-1]
    if first < 0 or last < first or last > item_count:
        raise IpcError("column %s: an offset is out of range" % name)
    count = last - first
    item_valid = buffer(b + 2)
    if item_nulls:
        # Only the items the entries reference matter (a sliced child may hold others).
        if len(item_valid) * 8 < last:
            raise IpcError("column %s: item validity buffer too short" % name)
        for i in range(first, last):
            if not item_valid[i >> 3] >> (i & 7) & 1:
                raise IpcError("column %s: a list item is null (list items cannot be null)" % name)
    if item_type in _FIXED:
        code = _FIXED[item_type]
        data = buffer(b + 3)
        width = _WIDTH[code]
        if len(data) < last * width:
            raise IpcError("column %s: item buffer too short" % name)
        items = struct.unpack_from("<%d%s" % (count, code), data, first * width)
        b += 4
    elif item_type == BOOLEAN:
        data = buffer(b + 3)
        if len(data) * 8 < last:
            raise IpcError("column %s: item buffer too short" % name)
        items = [bool(data[i >> 3] >> (i & 7) & 1) for i in range(first, last)]
        b += 4
    else:
        items = _read_varlen(name, item_type, first, count, buffer(b + 3), buffer(b + 4))
        b += 5
    values = []
    for i in range(rows):
        begin, end = offsets[i], offsets[i + 1]
        if end < begin or end > last or begin < first:
            raise IpcError("column %s: an offset is out of range" % name)
        values.append(list(items[begin - first : end - first]))
    return values, b
