"""The demo's `transformed_conv_rate` and `transformed_conv_rate_fresh` on-demand feature
views in Python (the same answers as plugins/transformed-conv-rate in Rust and as
Feast's pandas function): conv_rate_plus_val1 = conv_rate + val_to_add and
conv_rate_plus_val2 = conv_rate + val_to_add_2, null when an input is null.

Build: componentize-py -d wit -w odfv-plugin componentize app \
           -p plugins/python/transformed_conv_rate -p guest-sdk/python -o conv_rate_py.wasm
"""
from feast_plugin import FLOAT32, FLOAT64, INT64, Plugin

plugin = Plugin("transformed-conv-rate-py", "0.1.0")


def plus(conv_rate, values):
    return [None if c is None or v is None else c + v for c, v in zip(conv_rate, values)]


def conv_rate_plus_vals(cols):
    return {
        "conv_rate_plus_val1": plus(cols["conv_rate"], cols["val_to_add"]),
        "conv_rate_plus_val2": plus(cols["conv_rate"], cols["val_to_add_2"]),
    }


for name in ("transformed_conv_rate", "transformed_conv_rate_fresh"):
    plugin.odfv(
        name,
        inputs={"conv_rate": FLOAT32, "val_to_add": INT64, "val_to_add_2": INT64},
        outputs={"conv_rate_plus_val1": FLOAT64, "conv_rate_plus_val2": FLOAT64},
    )(conv_rate_plus_vals)

WitWorld = plugin.world()
