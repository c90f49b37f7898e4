#!/usr/bin/env bash
# Install what the tests need and a fresh machine may lack: redis-server and
# redis-cli (Debian packages), PostgreSQL (the `postgresql` package, unless initdb is on
# PATH or in /usr/lib/postgresql/*/bin), wrk (load generator for the benchmark), node and
# npm (JavaScript plugins are built with componentize-js), and the wasm32-wasip2 Rust
# target (plugins). Safe to run repeatedly.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v wrk >/dev/null || need+=(wrk)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if ((${#need[@]})); then
  if [[ $(id -u) == 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  echo "installing ${need[*]}" >&2
  "${SUDO[@]}" apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
