#!/usr/bin/env bash
# Create (once) a venv with the pinned componentize-py, which builds Python plugins
# (`feast-server plugins build --componentize-py ...`). Prints the executable's path.
# Env: COMPONENTIZE_PY_VERSION=0.25.1
#      COMPONENTIZE_PY_VENV=~/.cache/feast-server/venv-componentize-py-$COMPONENTIZE_PY_VERSION
set -euo pipefail
VERSION="${COMPONENTIZE_PY_VERSION:-0.25.1}"
VENV="${COMPONENTIZE_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/feast-server/venv-componentize-py-$VERSION}"
if [[ ! -x "$VENV/bin/componentize-py" ]]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "componentize-py==$VERSION" >&2
fi
echo "$VENV/bin/componentize-py"
