#!/usr/bin/env bash
# Install (once) the pinned componentize-js, which builds JavaScript plugins
# (componentize-js APP.js --wit wit -n odfv-plugin -o PLUGIN.wasm). Prints the path
# of its command. Needs node (>= 20) and npm.
# Env: COMPONENTIZE_JS_VERSION=0.23.0
#      COMPONENTIZE_JS_DIR=~/.cache/feast-server/componentize-js-$COMPONENTIZE_JS_VERSION
set -euo pipefail
VERSION="${COMPONENTIZE_JS_VERSION:-0.23.0}"
DIR="${COMPONENTIZE_JS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/feast-server/componentize-js-$VERSION}"
if [[ ! -x "$DIR/node_modules/.bin/componentize-js" ]]; then
  mkdir -p "$DIR"
  (cd "$DIR" && npm init -y >/dev/null && npm install -q --no-audit --no-fund "@bytecodealliance/componentize-js@$VERSION" >&2)
fi
echo "$DIR/node_modules/.bin/componentize-js"
