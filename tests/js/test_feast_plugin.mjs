// The JavaScript guest SDK (guest-sdk/js/feast_plugin.js) on its own and against a
// real Arrow implementation, pyarrow (through tests/js/arrow_check.py):
//   1. its own streams read back, list cells from arrays and typed arrays, values it
//      must refuse to write, ODFVs with list columns run through `plugin.call`;
//   2. streams pyarrow writes (every scalar and list type: nulls, empty lists, slices,
//      a non-zero first offset, validity bitmaps without nulls as arrow-rs writes them)
//      read by the SDK as pyarrow reads them, or refused (null list items, list types
//      the plugin world does not carry);
//   3. those streams written again by the SDK, and streams it makes from JS values,
//      read by pyarrow: the SDK's Arrow schema (a list's item field `item`, nullable)
//      and the same values.
//
// Run: node tests/js/test_feast_plugin.mjs [--python PYTHON]
// PYTHON has pyarrow (default: $FEAST_VENV/bin/python, else the venv demo/feast_venv.sh
// makes). Exits non-zero on a failure; leaves no files behind.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as sdk from "../../guest-sdk/js/feast_plugin.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const {
  INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, UTF8, BINARY, TIMESTAMP_SECONDS,
  INT32_LIST, INT64_LIST, FLOAT32_LIST, FLOAT64_LIST, BOOLEAN_LIST, UTF8_LIST, BINARY_LIST, TIMESTAMP_SECONDS_LIST,
  IpcError, InvalidInput, Plugin, readStream, writeStream,
} = sdk;

let passed = 0;
const failures = [];
function test(name, fn) {
  try {
    fn();
    passed++;
  } catch (e) {
    failures.push(`${name}: ${e && e.stack ? e.stack : e}`);
  }
}

// ------------------------------------------------------------ values as JSON

const bytes = (hex) => Uint8Array.from(Buffer.from(hex, "hex"));

/** A JSON value of arrow_check.py as the SDK holds it. */
function dec(v) {
  if (v === null) return null;
  if (Array.isArray(v)) return v.map(dec);
  if (typeof v === "object") {
    if ("$big" in v) return BigInt(v.$big);
    if ("$f" in v) return Number(v.$f);
    if ("$bytes" in v) return bytes(v.$bytes);
  }
  return v;
}

/** What a value of column type `t` given to the SDK is once written (as JSON). */
function enc(v, t) {
  if (v === null || v === undefined) return null;
  if (t.endsWith("-list")) return Array.from(v, (x) => enc(x, t.slice(0, -"-list".length)));
  switch (t) {
    case INT64: case TIMESTAMP_SECONDS: {
      const b = BigInt(v);
      return b > -(2n ** 53n) && b < 2n ** 53n ? Number(b) : { $big: b.toString() };
    }
    case FLOAT32: case FLOAT64: {
      const x = t === FLOAT32 ? Math.fround(v) : v;
      if (Number.isNaN(x) || !Number.isFinite(x) || Object.is(x, -0)) return { $f: String(Object.is(x, -0) ? "-0" : x) };
      return x;
    }
    case BINARY: return { $bytes: Buffer.from(v).toString("hex") };
    default: return v;
  }
}

/** The same bytes at an odd address (typed array views of them cannot be made). */
function unaligned(data) {
  const buf = new Uint8Array(data.length + 1);
  buf.set(data, 1);
  return buf.subarray(1);
}

/** As the SDK reads what it wrote: list cells plain arrays, int64s normalised. */
const normalised = (schema, columns) => columns.map((col, c) => col.map((v) => dec(enc(v, schema[c][1]))));

// ------------------------------------------------------------ 1. on its own

const LISTS = [
  ["i32", INT32_LIST], ["i64", INT64_LIST], ["f32", FLOAT32_LIST], ["f64", FLOAT64_LIST],
  ["b", BOOLEAN_LIST], ["s", UTF8_LIST], ["bin", BINARY_LIST], ["ts", TIMESTAMP_SECONDS_LIST],
];
const LIST_VALUES = [
  [[1, -(2 ** 31), 2 ** 31 - 1], null, [], Int32Array.of(7, 8)],
  [[2n ** 62n, -1, 0], [], null, BigInt64Array.of(-(2n ** 63n), 5n)],
  [Float32Array.of(0.5, NaN), null, [0.1, -0], []],
  [[Infinity, -0, 1e-300], Float64Array.of(2.5), [], null],
  [[true, false], [], null, [false]],
  [["é€😀", ""], null, [], ["x"]],
  [[bytes("00ff"), new Uint8Array(0)], [], null, [bytes("01")]],
  [[0, -1, 1700000000], null, [], [2n ** 62n]],
];

test("list columns read back as written (typed array cells as arrays)", () => {
  const data = writeStream(LISTS, LIST_VALUES);
  const [schema, columns] = readStream(data);
  assert.deepEqual(schema, LISTS);
  assert.deepEqual(columns, normalised(LISTS, LIST_VALUES));
  assert.deepEqual(readStream(unaligned(data))[1], columns);
  assert.equal(columns[1][0][0], 2n ** 62n);
  assert.ok(Array.isArray(columns[0][3]));
});

test("scalar and list columns together, 0 and 1000 rows", () => {
  const schema = [["a", INT64], ["l", INT64_LIST], ["s", UTF8], ["ls", UTF8_LIST], ["t", TIMESTAMP_SECONDS_LIST]];
  for (const rows of [0, 1, 1000]) {
    const columns = [
      Array.from({ length: rows }, (_, i) => (i % 3 ? i * 1e9 : null)),
      Array.from({ length: rows }, (_, i) => (i % 5 === 1 ? null : Array.from({ length: i % 4 }, (_, j) => BigInt(i) << BigInt(j * 20)))),
      Array.from({ length: rows }, (_, i) => (i % 4 ? "r" + i : null)),
      Array.from({ length: rows }, (_, i) => (i % 6 === 2 ? null : Array.from({ length: i % 3 }, (_, j) => "x".repeat(j)))),
      Array.from({ length: rows }, (_, i) => (i % 2 ? [i, i + 1] : [])),
    ];
    const [, read] = readStream(writeStream(schema, columns));
    assert.deepEqual(read, normalised(schema, columns));
  }
});

test("null items, non-array cells and out-of-range items are refused", () => {
  const refused = (t, cell, message) => assert.throws(() => writeStream([["c", t]], [[[1], cell]]), (e) => e instanceof IpcError && message.test(e.message), `${t} ${cell}`);
  refused(INT32_LIST, [1, null], /column c: row 1 has a null item/);
  refused(UTF8_LIST, ["a", undefined], /row 1 has a null item/);
  refused(FLOAT32_LIST, [0.5, null], /column c: row 1 has a null item/);
  refused(FLOAT64_LIST, [undefined], /row 1 has a null item/);
  refused(FLOAT64_LIST, [1, , 2], /row 1 has a null item/); // eslint-disable-line no-sparse-arrays
  refused(BOOLEAN_LIST, [true, null], /row 1 has a null item/);
  refused(INT32_LIST, "12", /column c: row 1 is string, not an array/);
  refused(INT64_LIST, 5, /row 1 is number, not an array/);
  refused(INT32_LIST, [2 ** 31], /column c \(list items\): 2147483648 does not fit int32/);
  refused(INT64_LIST, [2 ** 60], /column c \(list items\): .* is not an int64/);
  refused(TIMESTAMP_SECONDS_LIST, [1.5], /is not an int64/);
});

const listPlugin = () => new Plugin("lists", "0.1.0").odfv(
  "lengths",
  { tags: UTF8_LIST, scores: FLOAT32_LIST, ids: INT64_LIST },
  { n_tags: INT32, tags_upper: UTF8_LIST, best: FLOAT64, ids_doubled: INT64_LIST, flags: BOOLEAN_LIST },
  (cols, rows) => ({
    n_tags: cols.tags.map((t) => (t === null ? null : t.length)),
    tags_upper: cols.tags.map((t) => (t === null ? null : t.map((s) => s.toUpperCase()))),
    best: cols.scores.map((s) => (s === null || s.length === 0 ? null : Math.max(...s))),
    ids_doubled: cols.ids.map((l) => (l === null ? null : l.map((x) => BigInt.asIntN(64, BigInt(x) * 2n)))),
    flags: Array.from({ length: rows }, (_, i) => (i % 2 ? [true] : [])),
  }),
);

test("an ODFV with list inputs and outputs", () => {
  const plugin = listPlugin();
  const input = writeStream([["ids", INT64_LIST], ["tags", UTF8_LIST], ["scores", FLOAT32_LIST]], [
    [[1, 2], null, [2 ** 52]],
    [["a", "bc"], [], null],
    [[0.5, 2.5], null, []],
  ]);
  const [schema, columns] = readStream(plugin.call("lengths", input));
  assert.deepEqual(schema, [["n_tags", INT32], ["tags_upper", UTF8_LIST], ["best", FLOAT64], ["ids_doubled", INT64_LIST], ["flags", BOOLEAN_LIST]]);
  assert.deepEqual(columns, [[2, 0, null], [["A", "BC"], [], null], [2.5, null, null], [[2, 4], null, [2n ** 53n]], [[], [true], []]]);
  assert.deepEqual(plugin.world().describe().odfvs[0].inputs[0], { name: "tags", columnType: "utf8-list" });
});

test("list input type mismatches and null outputs items are reported", () => {
  const plugin = listPlugin();
  const wrong = writeStream([["ids", INT32_LIST], ["tags", UTF8_LIST], ["scores", FLOAT32_LIST]], [[[1]], [["a"]], [[1]]]);
  assert.throws(() => plugin.call("lengths", wrong), (e) => e instanceof InvalidInput && /input column ids is int32-list, declared int64-list/.test(e.message));
  const bad = new Plugin("bad", "0").odfv("o", { x: INT32 }, { y: INT32_LIST }, () => ({ y: [[1, null]] }));
  assert.throws(() => bad.world().transform("o", writeStream([["x", INT32]], [[1]])), (e) => e.tag === "internal" && /row 0 has a null item/.test(e.val));
  assert.throws(() => new Plugin("p", "0").odfv("o", { x: "int16-list" }, {}, () => ({})), /x has type int16-list/);
});

// ------------------------------------------------------------ 2 and 3. pyarrow

function pythonPath() {
  const i = process.argv.indexOf("--python");
  if (i > 0 && process.argv[i + 1]) return process.argv[i + 1];
  if (process.env.FEAST_VENV) return path.join(process.env.FEAST_VENV, "bin", "python");
  return path.join(os.homedir(), ".cache", "feast-server", "venv-feast-0.67.0", "bin", "python");
}

function python(...args) {
  const r = spawnSync(pythonPath(), [path.join(HERE, "arrow_check.py"), ...args], { encoding: "utf8", timeout: 60000 });
  if (r.error) throw new Error(`${pythonPath()} (a python with pyarrow: --python PATH; demo/feast_venv.sh makes one): ${r.error.message}`);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  return r.status;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "feast-js-sdk-"));
try {
  if (python("write", dir) !== 0) throw new Error("arrow_check.py write failed");
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  for (const c of manifest) {
    test(`pyarrow stream ${c.name}`, () => {
      const data = fs.readFileSync(path.join(dir, `${c.name}.arrows`));
      if (c.error !== null) {
        assert.throws(() => readStream(data), (e) => e instanceof IpcError && e.message.includes(c.error), `refused with "${c.error}"`);
        return;
      }
      const [schema, columns] = readStream(data);
      assert.deepEqual(schema, c.schema);
      const want = c.columns.map(dec);
      for (let i = 0; i < want.length; i++) assert.deepEqual(columns[i], want[i], `column ${schema[i][0]}`);
      assert.deepEqual(readStream(unaligned(data))[1], want, "read at an odd address");
      const out = writeStream(schema, columns);
      assert.deepEqual(readStream(out)[1], want);
      fs.writeFileSync(path.join(dir, `${c.name}.out.arrows`), out);
    });
  }
  // Streams made from JS values, for pyarrow to read.
  const made = (name, schema, columns, data = writeStream(schema, columns)) => {
    fs.writeFileSync(path.join(dir, `js_${name}.arrows`), data);
    const expected = { schema, columns: columns.map((col, c) => col.map((v) => enc(v, schema[c][1]))) };
    fs.writeFileSync(path.join(dir, `js_${name}.json`), JSON.stringify(expected));
  };
  test("streams made from JS values", () => {
    made("lists", LISTS, LIST_VALUES);
    made("one_row", LISTS, LIST_VALUES.map((col) => [col[0]]));
    made("no_rows", LISTS, LIST_VALUES.map(() => []));
    const scalars = [["i32", INT32], ["i64", INT64], ["f32", FLOAT32], ["f64", FLOAT64], ["b", BOOLEAN], ["s", UTF8], ["bin", BINARY], ["ts", TIMESTAMP_SECONDS]];
    made("scalars", scalars, [[1, null, -5], [2n ** 62n, 3, null], [0.1, null, -0], [NaN, 1, null], [true, false, null], ["é", null, ""], [bytes("00"), null, bytes("")], [0, null, 2 ** 40]]);
    const plugin = listPlugin();
    const lists = fs.readFileSync(path.join(dir, "lists.arrows"));
    const [, cols] = readStream(lists);
    const ins = manifest.find((c) => c.name === "lists").schema.map(([n]) => n);
    const input = writeStream(
      [["tags", UTF8_LIST], ["scores", FLOAT32_LIST], ["ids", INT64_LIST]],
      [cols[ins.indexOf("l_utf8")], cols[ins.indexOf("l_float32")], cols[ins.indexOf("l_int64")]],
    );
    const output = plugin.call("lengths", input);
    const [schema, out] = readStream(output);
    made("odfv_output", schema, out, output);
  });
  if (failures.length === 0 && python("check", dir) !== 0) failures.push("pyarrow read the SDK's streams otherwise (above)");
} catch (e) {
  failures.push(e && e.stack ? e.stack : String(e));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

for (const f of failures) console.log(`FAIL ${f}`);
console.log(`JavaScript guest SDK: ${passed} tests passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
