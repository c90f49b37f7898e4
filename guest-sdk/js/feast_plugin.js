// Write Feast on-demand feature views (ODFVs) in JavaScript and ship them as
// WebAssembly components (componentize-js) that feast-server loads, sandboxes and
// hot-swaps: the `odfv-plugin` world of `wit/`, the same Arrow IPC contract as the
// Rust and Python SDKs.
//
//   import { Plugin, FLOAT32, INT64, FLOAT64 } from "./feast_plugin.js";
//   const plugin = new Plugin("conv-rate", "0.1.0");
//   plugin.odfv("transformed_conv_rate",
//     { conv_rate: FLOAT32, val_to_add: INT64 }, { conv_rate_plus_val1: FLOAT64 },
//     (cols) => ({ conv_rate_plus_val1: cols.conv_rate.map((c, i) =>
//       c === null || cols.val_to_add[i] === null ? null : c + cols.val_to_add[i]) }));
//   export const { describe, transform } = plugin.world();
//
// A column is an array with `null` for null: numbers (Int32, Float32, Float64; Int64
// and Timestamp seconds too, as BigInt beyond 2^53), booleans, strings, Uint8Arrays.
// A list column (INT32_LIST ... TIMESTAMP_SECONDS_LIST, Arrow List<T>) has, per row,
// `null` or an array of the values its scalar type has (an empty array is a value);
// rows are read as plain arrays and written from arrays or typed arrays (a Float32Array
// for FLOAT32_LIST, a BigInt64Array for INT64_LIST, ...). Feast lists have no null
// items: reading a row with a null item, or writing one, throws an IpcError.
// Everything here also runs in Node, so plugins are unit-tested with `plugin.call`.

export const INT32 = "int32";
export const INT64 = "int64";
export const FLOAT32 = "float32";
export const FLOAT64 = "float64";
export const BOOLEAN = "boolean";
export const UTF8 = "utf8";
export const BINARY = "binary";
export const TIMESTAMP_SECONDS = "timestamp-seconds";
export const INT32_LIST = "int32-list";
export const INT64_LIST = "int64-list";
export const FLOAT32_LIST = "float32-list";
export const FLOAT64_LIST = "float64-list";
export const BOOLEAN_LIST = "boolean-list";
export const UTF8_LIST = "utf8-list";
export const BINARY_LIST = "binary-list";
export const TIMESTAMP_SECONDS_LIST = "timestamp-seconds-list";
const COLUMN_TYPES = [
  INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, UTF8, BINARY, TIMESTAMP_SECONDS,
  INT32_LIST, INT64_LIST, FLOAT32_LIST, FLOAT64_LIST, BOOLEAN_LIST, UTF8_LIST, BINARY_LIST, TIMESTAMP_SECONDS_LIST,
];
// A list type's item type, and back (scalar types are not keys of ITEM_TYPE).
const ITEM_TYPE = {
  [INT32_LIST]: INT32, [INT64_LIST]: INT64, [FLOAT32_LIST]: FLOAT32, [FLOAT64_LIST]: FLOAT64,
  [BOOLEAN_LIST]: BOOLEAN, [UTF8_LIST]: UTF8, [BINARY_LIST]: BINARY, [TIMESTAMP_SECONDS_LIST]: TIMESTAMP_SECONDS,
};
const LIST_OF = {};
for (const t in ITEM_TYPE) LIST_OF[ITEM_TYPE[t]] = t;

/** A failed transformation; `kind`: "internal", "invalid-input" or "unsupported". */
export class PluginError extends Error {
  constructor(message, kind = "internal") {
    super(message);
    this.kind = kind;
  }
}

/** The input is not what the ODFV declared. */
export class InvalidInput extends PluginError {
  constructor(message) {
    super(message, "invalid-input");
  }
}

export class IpcError extends Error {}

const TWO_32 = 4294967296;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** An int64 as a Number when a safe integer (|x| < 2^53, as `setI64` takes them back),
 * else a BigInt; no BigInt is made for the common case. */
function getI64(view, at) {
  const lo = view.getUint32(at, true);
  const hi = view.getInt32(at + 4, true);
  if (hi > -0x200000 ? hi < 0x200000 : hi === -0x200000 && lo !== 0) return hi * TWO_32 + lo;
  return view.getBigInt64(at, true);
}

/** Writes an int64 given as a safe-integer Number or a BigInt. */
function setI64(view, at, v) {
  if (typeof v === "bigint") {
    view.setBigInt64(at, v, true);
    return;
  }
  const hi = Math.floor(v / TWO_32);
  view.setUint32(at, v - hi * TWO_32, true);
  view.setInt32(at + 4, hi, true);
}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

// ------------------------------------------------------------ flatbuffers out

const V5 = 4;
const HEADER_SCHEMA = 1;
const HEADER_RECORD_BATCH = 3;
const T_INT = 2, T_FLOAT = 3, T_BINARY = 4, T_UTF8 = 5, T_BOOL = 6, T_TIMESTAMP = 10, T_LIST = 12;
const WIDTH = { i8: 1, u8: 1, i16: 2, i32: 4, u32: 4, i64: 8 };

/** A growable little-endian byte buffer. */
class Bytes {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  pad(align, extra = 0) {
    const n = (align - ((this.len + extra) % align)) % align;
    this.zeros(n);
  }
  zeros(n) {
    this.reserve(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
  }
  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  put(kind, at, value) {
    const v = this.view;
    switch (kind) {
      case "i8": v.setInt8(at, value); break;
      case "u8": v.setUint8(at, value); break;
      case "i16": v.setInt16(at, value, true); break;
      case "i32": v.setInt32(at, value, true); break;
      case "u32": v.setUint32(at, value, true); break;
      case "i64": setI64(v, at, value); break;
      default: throw new IpcError("unknown scalar " + kind);
    }
  }
  push(kind, value) {
    const at = this.len;
    this.zeros(WIDTH[kind]);
    this.put(kind, at, value);
  }
  finish() {
    return this.buf.slice(0, this.len);
  }
}

/** A flatbuffer written front to back (vtable, table, then children). */
class Writer {
  constructor() {
    this.out = new Bytes();
    this.out.zeros(4);
  }
  root(writeTable) {
    const pos = writeTable();
    this.out.put("u32", 0, pos);
    this.out.pad(8);
    return this.out.finish();
  }
  // fields: per slot null, [kind, value] or ["off", writer].
  table(fields) {
    const layout = [];
    let size = 4;
    fields.forEach((f, slot) => {
      if (f === null) return;
      const width = f[0] === "off" ? 4 : WIDTH[f[0]];
      size += (width - (size % width)) % width;
      layout.push([slot, size, f]);
      size += width;
    });
    size += (4 - (size % 4)) % 4;
    const vtableLen = 4 + 2 * fields.length;
    this.out.pad(8, vtableLen);
    const vtable = this.out.len;
    this.out.push("i16", vtableLen);
    this.out.push("i16", size);
    const offsets = new Array(fields.length).fill(0);
    for (const [slot, at] of layout) offsets[slot] = at;
    for (const o of offsets) this.out.push("i16", o);
    const table = this.out.len;
    this.out.zeros(size);
    this.out.put("i32", table, table - vtable);
    const children = [];
    for (const [, at, [kind, value]] of layout) {
      if (kind === "off") children.push([table + at, value]);
      else this.out.put(kind, table + at, value);
    }
    for (const [at, write] of children) this.patch(at, write());
    return table;
  }
  patch(at, target) {
    this.out.put("u32", at, target - at);
  }
  string(text) {
    const data = ENCODER.encode(text);
    this.out.pad(4);
    const pos = this.out.len;
    this.out.push("u32", data.length);
    this.out.bytes(data);
    this.out.zeros(1);
    return pos;
  }
  tables(writers) {
    this.out.pad(4);
    const pos = this.out.len;
    this.out.push("u32", writers.length);
    this.out.zeros(4 * writers.length);
    writers.forEach((w, i) => this.patch(pos + 4 + 4 * i, w()));
    return pos;
  }
  structs(pairs) {
    this.out.pad(8, 4);
    const pos = this.out.len;
    this.out.push("u32", pairs.length);
    for (const [a, b] of pairs) {
      this.out.push("i64", a);
      this.out.push("i64", b);
    }
    return pos;
  }
}

function typeTable(w, t) {
  switch (t) {
    case INT32: case INT64:
      return [T_INT, () => w.table([["i32", t === INT32 ? 32 : 64], ["u8", 1]])];
    case FLOAT32: case FLOAT64:
      return [T_FLOAT, () => w.table([["i16", t === FLOAT32 ? 1 : 2]])];
    case BOOLEAN: return [T_BOOL, () => w.table([])];
    case UTF8: return [T_UTF8, () => w.table([])];
    case BINARY: return [T_BINARY, () => w.table([])];
    case TIMESTAMP_SECONDS:
      return [T_TIMESTAMP, () => w.table([["i16", 0], ["off", () => w.string("UTC")]])];
    default: throw new IpcError("unknown column type " + t);
  }
}

function message(tag, header, bodyLength) {
  const w = new Writer();
  return w.root(() => w.table([["i16", V5], ["u8", tag], ["off", header(w)], ["i64", bodyLength]]));
}

function frame(out, metadata) {
  const pad = (8 - ((metadata.length + 8) % 8)) % 8;
  out.push("u32", 0xffffffff);
  out.push("i32", metadata.length + pad);
  out.bytes(metadata);
  out.zeros(pad);
}

// Loops here are indexed: without a JIT, iterators and callbacks cost a call each.
function validity(values) {
  const n = values.length;
  let nulls = 0;
  for (let i = 0; i < n; i++) if (values[i] == null) nulls++;
  if (nulls === 0) return [EMPTY, 0];
  const bits = new Uint8Array((n + 7) >> 3);
  for (let i = 0; i < n; i++) if (values[i] != null) bits[i >> 3] |= 1 << (i & 7);
  return [bits, nulls];
}

const EMPTY = new Uint8Array(0);

function columnBuffers(name, t, values) {
  const [valid, nulls] = validity(values);
  const n = values.length;
  const isNull = (v) => v === null || v === undefined;
  let parts;
  if (t === INT32 || t === FLOAT32 || t === FLOAT64) {
    if (t === INT32) {
      for (const v of values) {
        if (!isNull(v) && !(Number.isInteger(Number(v)) && v >= -2147483648 && v <= 2147483647)) {
          throw new IpcError(`column ${name}: ${v} does not fit int32`);
        }
      }
    }
    // Typed arrays convert natively (a null becomes 0 under its cleared validity bit).
    const Typed = t === INT32 ? Int32Array : t === FLOAT32 ? Float32Array : Float64Array;
    const data = Typed.from(values);
    parts = [valid, new Uint8Array(data.buffer)];
  } else if (t === INT64 || t === TIMESTAMP_SECONDS) {
    const data = new ArrayBuffer(8 * n);
    const view = new DataView(data);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (isNull(v)) continue;
      if (typeof v === "bigint" ? v < I64_MIN || v > I64_MAX : !Number.isSafeInteger(v)) {
        throw new IpcError(`column ${name}: ${v} is not an int64 (beyond 2^53, give a BigInt)`);
      }
      setI64(view, 8 * i, v);
    }
    parts = [valid, new Uint8Array(data)];
  } else if (t === BOOLEAN) {
    const bits = new Uint8Array((n + 7) >> 3);
    values.forEach((v, i) => {
      if (v) bits[i >> 3] |= 1 << (i & 7);
    });
    parts = [valid, bits];
  } else if (t === UTF8 || t === BINARY) {
    const chunks = [];
    const offsets = new Int32Array(n + 1);
    let end = 0;
    values.forEach((v, i) => {
      if (!isNull(v)) {
        const b = t === UTF8 ? ENCODER.encode(String(v)) : v instanceof Uint8Array ? v : Uint8Array.from(v);
        chunks.push(b);
        end += b.length;
      }
      offsets[i + 1] = end;
    });
    const data = new Uint8Array(end);
    let at = 0;
    for (const c of chunks) {
      data.set(c, at);
      at += c.length;
    }
    parts = [valid, new Uint8Array(offsets.buffer), data];
  } else {
    throw new IpcError("unknown column type " + t);
  }
  return [nulls, parts];
}

/** A list cell (an array or a typed array; not a string, not a DataView). */
function isList(v) {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

/**
 * A list column (items of type `item`): [nulls, its buffers (validity, offsets), its
 * number of items, their buffers]. Items are never null.
 */
function listBuffers(name, item, values) {
  const [valid, nulls] = validity(values);
  const n = values.length;
  const offsets = new Int32Array(n + 1);
  let end = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v != null) {
      if (!isList(v)) throw new IpcError(`column ${name}: row ${i} is ${typeof v}, not an array (or null)`);
      end += v.length;
      if (end > 2147483647) throw new IpcError(`column ${name}: more than 2^31 - 1 list items`);
    }
    offsets[i + 1] = end;
  }
  const parts = [valid, new Uint8Array(offsets.buffer)];
  const nullItem = (i) => new IpcError(`column ${name}: row ${i} has a null item (Feast lists have no null items)`);
  if (item === FLOAT32 || item === FLOAT64) {
    // Floats (embeddings, mostly) are copied natively, a row at a time.
    const data = item === FLOAT32 ? new Float32Array(end) : new Float64Array(end);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v == null) continue;
      if (Array.isArray(v) && (v.includes(null) || v.includes(undefined))) throw nullItem(i);
      data.set(v, offsets[i]);
    }
    return [nulls, parts, end, [EMPTY, new Uint8Array(data.buffer)]];
  }
  const items = new Array(end);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v == null) continue;
    const m = v.length;
    for (let j = 0; j < m; j++) {
      const x = v[j];
      if (x == null) throw nullItem(i);
      items[k++] = x;
    }
  }
  return [nulls, parts, end, columnBuffers(`${name} (list items)`, item, items)[1]];
}

/**
 * An IPC stream of one batch: `schema` is a list of [name, column type], `columns`
 * one array per schema entry, all of one length.
 */
export function writeStream(schema, columns) {
  if (columns.length !== schema.length) {
    throw new IpcError(`${columns.length} columns for a schema of ${schema.length}`);
  }
  const rows = columns.length ? columns[0].length : 0;
  const nodes = [];
  const buffers = [];
  const body = new Bytes();
  const emit = (parts) => {
    for (const part of parts) {
      buffers.push([body.len, part.length]);
      body.bytes(part);
      body.pad(8);
    }
  };
  schema.forEach(([name, t], c) => {
    const values = columns[c];
    if (values.length !== rows) throw new IpcError(`column ${name} has ${values.length} rows, not ${rows}`);
    const item = ITEM_TYPE[t];
    if (item === undefined) {
      const [nulls, parts] = columnBuffers(name, t, values);
      nodes.push([rows, nulls]);
      emit(parts);
    } else {
      // A list: its node and buffers (validity, offsets), then its items' (no nulls).
      const [nulls, parts, count, itemParts] = listBuffers(name, item, values);
      nodes.push([rows, nulls]);
      emit(parts);
      nodes.push([count, 0]);
      emit(itemParts);
    }
  });
  const out = new Bytes();
  let schemaBytes = SCHEMA_BY_ARRAY.get(schema);
  if (schemaBytes === undefined) {
    schemaBytes = cached(SCHEMA_MESSAGES, schemaKey(schema), () => schemaMessage(schema));
    SCHEMA_BY_ARRAY.set(schema, schemaBytes);
  }
  out.bytes(schemaBytes);
  const tpl = cached(BATCH_MESSAGES, `${nodes.length}/${buffers.length}`, () => batchTemplate(nodes.length, buffers.length));
  const meta = tpl.bytes.slice();
  const view = new DataView(meta.buffer);
  setI64(view, tpl.bodyLength, body.len);
  setI64(view, tpl.rows, rows);
  nodes.forEach(([length, nulls], i) => {
    setI64(view, tpl.nodes + 16 * i, length);
    setI64(view, tpl.nodes + 16 * i + 8, nulls);
  });
  buffers.forEach(([offset, length], i) => {
    setI64(view, tpl.buffers + 16 * i, offset);
    setI64(view, tpl.buffers + 16 * i + 8, length);
  });
  out.bytes(meta);
  out.bytes(body.finish());
  out.push("u32", 0xffffffff);
  out.push("u32", 0);
  return out.finish();
}

// Building a flatbuffer costs far more than the data of a small batch in an
// interpreter: schema messages are made once per schema, and record batch messages
// from a template per shape, whose numbers are patched in place.
const SCHEMA_MESSAGES = new Map();
// The same schema array (an ODFV's declared outputs) is written at every call.
const SCHEMA_BY_ARRAY = new WeakMap();
const SCHEMAS_READ = new Map();
const BATCH_MESSAGES = new Map();

function cached(map, key, make) {
  let v = map.get(key);
  if (v === undefined) {
    if (map.size >= 16) map.clear();
    v = make();
    map.set(key, v);
  }
  return v;
}

function schemaKey(schema) {
  return schema.map(([n, t]) => `${t}:${n}`).join("\n");
}

function framed(metadata) {
  const out = new Bytes();
  frame(out, metadata);
  return out.finish();
}

function schemaMessage(schema) {
  // A list's one child is its nullable `item` field, as Arrow writers make it.
  const field = (w, name, t) => {
    const item = ITEM_TYPE[t];
    const [tag, type] = item === undefined ? typeTable(w, t) : [T_LIST, () => w.table([])];
    const children = item === undefined ? [] : [field(w, "item", item)];
    return () => w.table([["off", () => w.string(name)], ["u8", 1], ["u8", tag], ["off", type], null, ["off", () => w.tables(children)]]);
  };
  return framed(message(HEADER_SCHEMA, (w) => () => w.table([["i16", 0], ["off", () => w.tables(schema.map(([n, t]) => field(w, n, t)))]]), 0));
}

/** A framed record batch message of `columns` nodes and `buffers` buffers, all
 * numbers zero, with where each number is (byte positions in the frame). */
function batchTemplate(columns, buffers) {
  const zeros = (n) => new Array(n).fill([0, 0]);
  const meta = message(HEADER_RECORD_BATCH, (w) => () => w.table([["i64", 0], ["off", () => w.structs(zeros(columns))], ["off", () => w.structs(zeros(buffers))]]), 0);
  const view = new DataView(meta.buffer, meta.byteOffset, meta.byteLength);
  const root = new Table(view, view.getUint32(0, true));
  const header = root.table(2);
  const FRAME = 8; // continuation marker and length
  return {
    bytes: framed(meta),
    bodyLength: FRAME + root.at(3),
    rows: FRAME + header.at(0),
    nodes: FRAME + header.vector(1)[0],
    buffers: FRAME + header.vector(2)[0],
  };
}

// ------------------------------------------------------------ flatbuffers in

function check(buf, pos, size) {
  if (pos < 0 || size < 0 || pos + size > buf.byteLength) {
    throw new IpcError("a flatbuffer offset points outside the message");
  }
}

/** A flatbuffer table at `pos` of the DataView `view`. */
class Table {
  constructor(view, pos) {
    check(view, pos, 4);
    this.view = view;
    this.pos = pos;
    this.vtable = pos - view.getInt32(pos, true);
    check(view, this.vtable, 4);
    this.vsize = view.getUint16(this.vtable, true);
    check(view, this.vtable, this.vsize);
  }
  at(slot) {
    const entry = 4 + 2 * slot;
    if (entry + 2 > this.vsize) return 0;
    const off = this.view.getUint16(this.vtable + entry, true);
    return off ? this.pos + off : 0;
  }
  scalar(slot, kind, fallback = 0) {
    const at = this.at(slot);
    if (!at) return fallback;
    check(this.view, at, WIDTH[kind]);
    const v = this.view;
    switch (kind) {
      case "u8": return v.getUint8(at);
      case "i16": return v.getInt16(at, true);
      case "i32": return v.getInt32(at, true);
      case "i64": return Number(getI64(v, at));
      default: throw new IpcError("unknown scalar " + kind);
    }
  }
  target(slot) {
    const at = this.at(slot);
    if (!at) return 0;
    check(this.view, at, 4);
    return at + this.view.getUint32(at, true);
  }
  table(slot) {
    const t = this.target(slot);
    return t ? new Table(this.view, t) : null;
  }
  string(slot) {
    const t = this.target(slot);
    if (!t) return null;
    check(this.view, t, 4);
    const n = this.view.getUint32(t, true);
    check(this.view, t + 4, n);
    return DECODER.decode(new Uint8Array(this.view.buffer, this.view.byteOffset + t + 4, n));
  }
  vector(slot) {
    const t = this.target(slot);
    if (!t) return [0, 0];
    check(this.view, t, 4);
    return [t + 4, this.view.getUint32(t, true)];
  }
  tables(slot) {
    const [start, n] = this.vector(slot);
    check(this.view, start, 4 * n);
    const out = [];
    for (let i = 0; i < n; i++) {
      const at = start + 4 * i;
      out.push(new Table(this.view, at + this.view.getUint32(at, true)));
    }
    return out;
  }
  structs(slot) {
    const [start, n] = this.vector(slot);
    check(this.view, start, 16 * n);
    const out = [];
    for (let i = 0; i < n; i++) {
      out.push([Number(getI64(this.view, start + 16 * i)), Number(getI64(this.view, start + 16 * i + 8))]);
    }
    return out;
  }
}

/** A field's scalar column type, or null. */
function scalarType(field, tag) {
  const t = field.table(3);
  if (tag === T_INT && t) {
    const bits = t.scalar(0, "i32");
    if (t.scalar(1, "u8") && (bits === 32 || bits === 64)) return bits === 32 ? INT32 : INT64;
  } else if (tag === T_FLOAT && t) {
    const p = t.scalar(0, "i16");
    if (p === 1 || p === 2) return p === 1 ? FLOAT32 : FLOAT64;
  } else if (tag === T_BOOL) return BOOLEAN;
  else if (tag === T_UTF8) return UTF8;
  else if (tag === T_BINARY) return BINARY;
  else if (tag === T_TIMESTAMP && t && t.scalar(0, "i16") === 0) return TIMESTAMP_SECONDS;
  return null;
}

function columnType(field) {
  const tag = field.scalar(2, "u8");
  const scalar = scalarType(field, tag);
  if (scalar !== null) return scalar;
  if (tag === T_LIST) {
    // Whatever the item field's name and nullability (writers differ).
    const children = field.tables(5);
    const item = children.length === 1 ? scalarType(children[0], children[0].scalar(2, "u8")) : null;
    if (item !== null) return LIST_OF[item];
    throw new IpcError(`column ${field.string(0)} is a list of an Arrow type the plugin world does not carry`);
  }
  throw new IpcError(`column ${field.string(0)} has an Arrow type (tag ${tag}) the plugin world does not carry`);
}

/** Reads a stream of one batch: [schema, columns] as `writeStream` takes them. */
export function readStream(bytes) {
  // The host's buffer may come from another realm, where `instanceof Uint8Array` is false:
  // view it in place rather than copying it element by element.
  const data = ArrayBuffer.isView(bytes)
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : Uint8Array.from(bytes);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  let schema = null;
  let columns = null;
  while (pos < data.length) {
    if (pos + 4 <= data.length && view.getUint32(pos, true) === 0xffffffff) pos += 4;
    if (pos + 4 > data.length) throw new IpcError("the stream ends inside a message length");
    const length = view.getInt32(pos, true);
    pos += 4;
    if (length === 0) break;
    if (length < 0 || pos + length > data.length) throw new IpcError("a message length runs past the end of the stream");
    const meta = new DataView(data.buffer, data.byteOffset + pos, length);
    pos += length;
    check(meta, 0, 4);
    const root = new Table(meta, meta.getUint32(0, true));
    const bodyLength = root.scalar(3, "i64");
    if (bodyLength < 0 || pos + bodyLength > data.length) throw new IpcError("a message body runs past the end of the stream");
    const body = new DataView(data.buffer, data.byteOffset + pos, bodyLength);
    pos += bodyLength;
    const tag = root.scalar(1, "u8");
    const header = root.table(2);
    if (!header) throw new IpcError("a message has no header");
    if (tag === HEADER_SCHEMA) {
      const parse = () => header.tables(1).map((f) => [f.string(0), columnType(f)]);
      // Repeated calls send the same schema message: parsed once, found by its bytes.
      schema = length > 4096
        ? parse()
        : cached(SCHEMAS_READ, String.fromCharCode.apply(null, new Uint8Array(meta.buffer, meta.byteOffset, length)), parse);
    } else if (tag === HEADER_RECORD_BATCH) {
      if (!schema) throw new IpcError("a record batch comes before the schema");
      if (columns) throw new IpcError("the stream holds more than one record batch");
      if (header.table(3)) throw new IpcError("compressed record batches are not supported");
      columns = readBatch(schema, header, body);
    } else {
      throw new IpcError(`unsupported message type ${tag} (dictionaries are not supported)`);
    }
  }
  if (!schema) throw new IpcError("the stream has no schema");
  return [schema, columns || schema.map(() => [])];
}

function readBatch(schema, header, body) {
  const rows = header.scalar(0, "i64");
  const nodes = header.structs(1);
  const buffers = header.structs(2);
  let fields = schema.length;
  for (let c = 0; c < schema.length; c++) if (ITEM_TYPE[schema[c][1]] !== undefined) fields++;
  if (nodes.length !== fields) {
    throw new IpcError(fields === schema.length
      ? `${nodes.length} field nodes for ${schema.length} columns`
      : `${nodes.length} field nodes for ${schema.length} columns and their ${fields - schema.length} list item fields`);
  }
  let b = 0;
  const buffer = () => {
    const i = b++;
    if (i >= buffers.length) throw new IpcError("the batch has too few buffers");
    const [off, len] = buffers[i];
    if (off < 0 || len < 0 || off + len > body.byteLength) throw new IpcError("a buffer runs past the end of the body");
    return new DataView(body.buffer, body.byteOffset + off, len);
  };
  const columns = [];
  let n = 0;
  for (let c = 0; c < schema.length; c++) {
    const [name, t] = schema[c];
    const [length, nulls] = nodes[n++];
    if (length !== rows) throw new IpcError(`column ${name} has ${length} rows, the batch ${rows}`);
    const item = ITEM_TYPE[t];
    if (item === undefined) {
      columns.push(readValues(name, t, rows, nulls, buffer));
      continue;
    }
    // A list: validity, offsets, then its item field's node and buffers.
    const valid = buffer();
    if (nulls && valid.byteLength * 8 < rows) throw new IpcError(`column ${name}: validity buffer too short`);
    const offsets = buffer();
    if (rows && offsets.byteLength < 4 * (rows + 1)) throw new IpcError(`column ${name}: offset buffer too short`);
    const [count, itemNulls] = nodes[n++];
    if (count < 0) throw new IpcError(`column ${name}: a negative number of list items`);
    // Numbers without nulls (as the host sends them) are copied natively: in SpiderMonkey,
    // Array.from of a typed array is interpreted JS (1000 floats: 1.3 ms, this 0.09 ms).
    const Typed = itemNulls ? undefined : NUMBERS[item];
    const items = Typed ? SLICE.call(typedItems(name, Typed, count, buffer)) : readValues(`${name} (list items)`, item, count, itemNulls, buffer);
    const values = new Array(rows);
    const aligned = offsets.byteOffset % 4 === 0;
    const words = aligned ? new Int32Array(offsets.buffer, offsets.byteOffset, rows ? rows + 1 : 0) : null;
    for (let i = 0; i < rows; i++) {
      if (nulls && !((valid.getUint8(i >> 3) >> (i & 7)) & 1)) {
        values[i] = null;
        continue;
      }
      // Offsets index the items, whatever the first (a slice need not start at 0).
      const start = aligned ? words[i] : offsets.getInt32(4 * i, true);
      const end = aligned ? words[i + 1] : offsets.getInt32(4 * i + 4, true);
      if (start < 0 || end < start || end > count) throw new IpcError(`column ${name}: an offset is out of range`);
      const row = items.slice(start, end);
      if (itemNulls) {
        for (let j = 0; j < row.length; j++) {
          if (row[j] === null) throw new IpcError(`column ${name}: row ${i} has a null item (Feast lists have no null items)`);
        }
      }
      values[i] = row;
    }
    columns.push(values);
  }
  return columns;
}

const NUMBERS = { [INT32]: Int32Array, [FLOAT32]: Float32Array, [FLOAT64]: Float64Array };
const SLICE = Array.prototype.slice;

/** `count` list items of a `Typed` type without nulls from the next buffers, as a
 * typed array (over the body when aligned, else a copy). */
function typedItems(name, Typed, count, buffer) {
  buffer(); // validity, unused without nulls
  const data = buffer();
  const size = count * Typed.BYTES_PER_ELEMENT;
  if (data.byteLength < size) throw new IpcError(`column ${name} (list items): value buffer too short`);
  return data.byteOffset % Typed.BYTES_PER_ELEMENT === 0
    ? new Typed(data.buffer, data.byteOffset, count)
    : new Typed(data.buffer.slice(data.byteOffset, data.byteOffset + size));
}

/** `rows` values of scalar type `t` from the next buffers (`buffer()`), null where
 * not valid. */
function readValues(name, t, rows, nulls, buffer) {
  const valid = buffer();
  if (nulls && valid.byteLength * 8 < rows) throw new IpcError(`column ${name}: validity buffer too short`);
  let values = new Array(rows);
  if (t === UTF8 || t === BINARY) {
    const offsets = buffer();
    const data = buffer();
    if (rows && offsets.byteLength < 4 * (rows + 1)) throw new IpcError(`column ${name}: offset buffer too short`);
    for (let i = 0; i < rows; i++) {
      const start = offsets.getInt32(4 * i, true);
      const end = offsets.getInt32(4 * i + 4, true);
      if (start < 0 || end < start || end > data.byteLength) throw new IpcError(`column ${name}: an offset is out of range`);
      const chunk = new Uint8Array(data.buffer, data.byteOffset + start, end - start);
      values[i] = t === UTF8 ? DECODER.decode(chunk) : chunk.slice();
    }
  } else {
    const data = buffer();
    const width = { [INT32]: 4, [FLOAT32]: 4, [FLOAT64]: 8, [INT64]: 8, [TIMESTAMP_SECONDS]: 8, [BOOLEAN]: 0 }[t];
    if (t === BOOLEAN ? data.byteLength * 8 < rows : data.byteLength < rows * width) {
      throw new IpcError(`column ${name}: value buffer too short`);
    }
    const Typed = NUMBERS[t];
    if (Typed && (data.byteOffset % Typed.BYTES_PER_ELEMENT) === 0) {
      // Aligned: read through a typed array, copied natively (see the list items above).
      values = SLICE.call(new Typed(data.buffer, data.byteOffset, rows));
    } else if ((t === INT64 || t === TIMESTAMP_SECONDS) && data.byteOffset % 4 === 0) {
      // Two 32-bit halves per value, indexed rather than called.
      const words = new Int32Array(data.buffer, data.byteOffset, 2 * rows);
      for (let i = 0; i < rows; i++) {
        const hi = words[2 * i + 1];
        values[i] = hi > -0x200000 && hi < 0x200000 ? hi * TWO_32 + (words[2 * i] >>> 0) : getI64(data, 8 * i);
      }
    } else {
      for (let i = 0; i < rows; i++) {
        switch (t) {
          case INT32: values[i] = data.getInt32(4 * i, true); break;
          case FLOAT32: values[i] = data.getFloat32(4 * i, true); break;
          case FLOAT64: values[i] = data.getFloat64(8 * i, true); break;
          case BOOLEAN: values[i] = ((data.getUint8(i >> 3) >> (i & 7)) & 1) === 1; break;
          default: values[i] = getI64(data, 8 * i);
        }
      }
    }
  }
  if (nulls) {
    for (let i = 0; i < rows; i++) {
      if (!((valid.getUint8(i >> 3) >> (i & 7)) & 1)) values[i] = null;
    }
  }
  return values;
}

// ------------------------------------------------------------ plugins

function declared(odfv, what, columns) {
  const list = Array.isArray(columns) ? columns : Object.entries(columns);
  for (const [name, t] of list) {
    if (!COLUMN_TYPES.includes(t)) {
      throw new Error(`${odfv}: ${what} ${name} has type ${t}; one of ${COLUMN_TYPES.join(", ")}`);
    }
  }
  return list;
}

/** A plugin: a name, a version and the ODFVs it implements. */
export class Plugin {
  constructor(name, version) {
    this.name = name;
    this.version = version;
    this.odfvs = new Map();
  }

  /**
   * Registers ODFV `name`: `inputs` and `outputs` map column names to column types
   * (or are lists of [name, type]); `fn(cols, rows)` takes an object of input columns
   * and returns one with (at least) every output column, one value per input row.
   */
  odfv(name, inputs, outputs, fn) {
    if (this.odfvs.has(name)) throw new Error(`ODFV ${name} is defined twice`);
    this.odfvs.set(name, {
      name,
      inputs: declared(name, "input", inputs),
      outputs: declared(name, "output", outputs),
      fn,
      checked: null,
    });
    return this;
  }

  /** Runs ODFV `odfv` on Arrow IPC stream bytes as the server does. */
  call(odfv, input) {
    const spec = this.odfvs.get(odfv);
    if (!spec) throw new PluginError(`this plugin does not implement ${odfv}`, "unsupported");
    let schema, columns;
    try {
      [schema, columns] = readStream(input);
    } catch (e) {
      throw new InvalidInput(`the input is not an Arrow IPC stream this plugin reads: ${e.message}`);
    }
    const rows = columns.length ? columns[0].length : 0;
    const cols = {};
    for (let i = 0; i < schema.length; i++) cols[schema[i][0]] = columns[i];
    // Read schemas are cached arrays: each is checked against the ODFV once.
    if (spec.checked !== schema) {
      for (const [n, t] of spec.inputs) {
        const got = schema.find(([s]) => s === n);
        if (!got) throw new InvalidInput(`input column ${n} is missing`);
        if (got[1] !== t) throw new InvalidInput(`input column ${n} is ${got[1]}, declared ${t}`);
      }
      spec.checked = schema;
    }
    const result = spec.fn(cols, rows);
    if (result === null || typeof result !== "object") {
      throw new PluginError(`${odfv} returned ${typeof result}, not an object of output columns`);
    }
    const out = spec.outputs.map(([n]) => {
      if (!(n in result)) throw new PluginError(`${odfv} returned no column ${n}`);
      const column = Array.isArray(result[n]) ? result[n] : Array.from(result[n]);
      if (column.length !== rows) {
        throw new PluginError(`${odfv} returned ${column.length} values for ${n}, the input has ${rows} rows`);
      }
      return column;
    });
    try {
      return writeStream(spec.outputs, out);
    } catch (e) {
      throw new PluginError(e.message);
    }
  }

  /** The world's exports: `export const { describe, transform } = plugin.world();` */
  world() {
    const describe = () => ({
      name: this.name,
      version: this.version,
      odfvs: [...this.odfvs.values()].map((o) => ({
        name: o.name,
        inputs: o.inputs.map(([name, columnType]) => ({ name, columnType })),
        outputs: o.outputs.map(([name, columnType]) => ({ name, columnType })),
      })),
    });
    const transform = (odfv, input) => {
      try {
        return this.call(odfv, input);
      } catch (e) {
        if (e instanceof PluginError) throw { tag: e.kind, val: e.message };
        // The stack goes to stderr, which the server shows when a call fails.
        console.error(e && e.stack ? e.stack : String(e));
        const name = e && e.constructor ? e.constructor.name : "Error";
        throw { tag: "internal", val: `${name}: ${e && e.message !== undefined ? e.message : String(e)}` };
      }
    };
    return { describe, transform };
  }
}
