#!/usr/bin/env bash
# Create (once) a venv with the pinned real Feast, for fixture regeneration, parity
# tests and side-by-side benchmarks. Prints the venv path.
# Env: FEAST_VERSION=0.67.0 FEAST_VENV=~/.cache/feast-server/venv-feast-$FEAST_VERSION
set -euo pipefail
FEAST_VERSION="${FEAST_VERSION:-0.67.0}"
FEAST_VENV="${FEAST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/feast-server/venv-feast-$FEAST_VERSION}"
if [[ ! -x "$FEAST_VENV/bin/feast" ]]; then
  mkdir -p "$(dirname "$FEAST_VENV")"
  python3 -m venv "$FEAST_VENV"
  "$FEAST_VENV/bin/pip" install -q --upgrade pip >&2
  "$FEAST_VENV/bin/pip" install -q "feast[redis,postgres]==$FEAST_VERSION" grpcio cryptography >&2
fi
# The PostgreSQL store (parity with the postgres-store component) needs psycopg.
if ! "$FEAST_VENV/bin/python" -c "import psycopg, psycopg_pool" 2>/dev/null; then
  "$FEAST_VENV/bin/pip" install -q "feast[postgres]==$FEAST_VERSION" >&2
fi
# RS256 tokens (feast serve with OIDC, for the auth goldens) need cryptography.
if ! "$FEAST_VENV/bin/python" -c "import cryptography" 2>/dev/null; then
  "$FEAST_VENV/bin/pip" install -q cryptography >&2
fi
echo "$FEAST_VENV"
