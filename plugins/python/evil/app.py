"""A misbehaving Python plugin for the sandbox tests (the Python counterpart of
plugins/evil): every `evil_*` ODFV but `evil_ok` misbehaves in one way, and each must
fail only its own request. A function that gets past the sandbox answers
"SANDBOX ESCAPE", which the tests look for.
"""
from feast_plugin import FLOAT32, FLOAT64, INT64, InvalidInput, Plugin

plugin = Plugin("evil-py", "0.1.0")
INPUTS = {"conv_rate": FLOAT32, "val_to_add": INT64, "val_to_add_2": INT64}
OUTPUTS = {"conv_rate_plus_val1": FLOAT64, "conv_rate_plus_val2": FLOAT64}


def odfv(name):
    return plugin.odfv(name, inputs=INPUTS, outputs=OUTPUTS)


def ones(cols):
    n = len(cols["conv_rate"])
    return {"conv_rate_plus_val1": [1.0] * n, "conv_rate_plus_val2": [1.0] * n}


@odfv("evil_ok")
def ok(cols):
    return ones(cols)


@odfv("evil_loop")
def loop(cols):
    while True:
        pass


@odfv("evil_memory")
def memory(cols):
    hoard = []
    while True:
        hoard.append(bytearray(8 << 20))


@odfv("evil_recursion")
def recursion(cols):
    import sys

    sys.setrecursionlimit(10**9)

    def down(n):
        return down(n + 1) + 1

    return down(0)


@odfv("evil_panic")
def panic(cols):
    raise RuntimeError("evil python plugin raises on purpose")


def escape(cols, what):
    raise RuntimeError("SANDBOX ESCAPE: " + what)


@odfv("evil_file")
def read_file(cols):
    with open("/etc/passwd") as f:
        escape(cols, f.read(20))


@odfv("evil_socket")
def open_socket(cols):
    import socket

    s = socket.create_connection(("127.0.0.1", 22), timeout=1)
    escape(cols, repr(s))


@odfv("evil_env")
def read_env(cols):
    import os

    if os.environ:
        escape(cols, repr(dict(os.environ)))
    raise RuntimeError("denied: the environment is empty")


@odfv("evil_rows")
def wrong_rows(cols):
    out = ones(cols)
    return {k: v + [1.0] for k, v in out.items()}


LEAKED = []


@odfv("evil_leak")
def leak(cols):
    # Well-behaved per call, but keeps 4 MiB per call forever: the server must retire
    # the instance before the memory limit makes a call fail.
    LEAKED.append(bytearray(4 << 20))
    return ones(cols)


@odfv("evil_error")
def error(cols):
    raise InvalidInput("evil python plugin rejects its input")


WitWorld = plugin.world()
