// A misbehaving JavaScript plugin for the sandbox tests (the counterpart of
// plugins/evil and plugins/python/evil): every `evil_*` ODFV but `evil_ok` misbehaves
// in one way, and each must fail only its own request. A function that gets past the
// sandbox answers "SANDBOX ESCAPE", which the tests look for.
import { FLOAT32, FLOAT64, INT64, InvalidInput, Plugin } from "../../../guest-sdk/js/feast_plugin.js";

const plugin = new Plugin("evil-js", "0.1.0");
const INPUTS = { conv_rate: FLOAT32, val_to_add: INT64, val_to_add_2: INT64 };
const OUTPUTS = { conv_rate_plus_val1: FLOAT64, conv_rate_plus_val2: FLOAT64 };
const ones = (cols) => {
  const n = cols.conv_rate.length;
  return { conv_rate_plus_val1: new Array(n).fill(1.0), conv_rate_plus_val2: new Array(n).fill(1.0) };
};
const odfv = (name, fn) => plugin.odfv(name, INPUTS, OUTPUTS, fn);

odfv("evil_ok", ones);
odfv("evil_loop", () => {
  for (;;) {}
});
odfv("evil_memory", () => {
  const hoard = [];
  for (;;) hoard.push(new Uint8Array(8 << 20).fill(1));
});
odfv("evil_recursion", () => {
  const down = (n) => down(n + 1) + 1;
  return down(0);
});
odfv("evil_panic", () => {
  throw new Error("evil js plugin throws on purpose");
});
odfv("evil_file", () => {
  if (typeof require === "function") {
    throw new Error("SANDBOX ESCAPE: " + require("fs").readFileSync("/etc/passwd", "utf8"));
  }
  throw new Error("denied: no file API");
});
odfv("evil_socket", () => {
  if (typeof fetch === "function") {
    fetch("http://127.0.0.1:22/");
  }
  throw new Error("denied: no socket");
});
odfv("evil_env", () => {
  if (typeof process !== "undefined" && process.env && Object.keys(process.env).length) {
    throw new Error("SANDBOX ESCAPE: " + JSON.stringify(process.env));
  }
  throw new Error("denied: the environment is empty");
});
odfv("evil_rows", (cols) => {
  const out = ones(cols);
  return { conv_rate_plus_val1: [...out.conv_rate_plus_val1, 1.0], conv_rate_plus_val2: [...out.conv_rate_plus_val2, 1.0] };
});
odfv("evil_error", () => {
  throw new InvalidInput("evil js plugin rejects its input");
});

export const { describe, transform } = plugin.world();
