// The demo's `transformed_conv_rate` and `transformed_conv_rate_fresh` on-demand
// feature views in JavaScript (the same answers as plugins/transformed-conv-rate in Rust
// and plugins/python/transformed_conv_rate): conv_rate_plus_val1 = conv_rate +
// val_to_add, conv_rate_plus_val2 = conv_rate + val_to_add_2, null when an input is null.
//
// Build: componentize-js plugins/js/transformed_conv_rate/app.js --wit wit \
//            -n odfv-plugin -o conv_rate_js.wasm
import { FLOAT32, FLOAT64, INT64, Plugin } from "../../../guest-sdk/js/feast_plugin.js";

const plugin = new Plugin("transformed-conv-rate-js", "0.1.0");

const plus = (conv, vals) => conv.map((c, i) => (c === null || vals[i] === null ? null : c + Number(vals[i])));

for (const name of ["transformed_conv_rate", "transformed_conv_rate_fresh"]) {
  plugin.odfv(
    name,
    { conv_rate: FLOAT32, val_to_add: INT64, val_to_add_2: INT64 },
    { conv_rate_plus_val1: FLOAT64, conv_rate_plus_val2: FLOAT64 },
    (cols) => ({
      conv_rate_plus_val1: plus(cols.conv_rate, cols.val_to_add),
      conv_rate_plus_val2: plus(cols.conv_rate, cols.val_to_add_2),
    }),
  );
}

export const { describe, transform } = plugin.world();
