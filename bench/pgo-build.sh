#!/usr/bin/env bash
# Builds feast-server with profile-guided optimization (PGO): an instrumented build
# serves the benchmark's read payloads (1, 10 and 100 entities, SQLite and Redis) for
# a few seconds each under bench/bench.py, and the final build is optimized with the
# profile it recorded (which branches are taken, which functions are hot, and so how
# code is laid out). The HTTP floor (examples/http_floor) is built and trained the
# same way beside it, so that a benchmark compares builds made alike.
# See docs/performance.md, "Profile-guided optimization".
#
#   bench/pgo-build.sh [PROFILE]    # release (default) or profiling (with symbols)
#
# Writes $CARGO_TARGET_DIR/<host triple>/PROFILE/feast-server and
# .../examples/http_floor ($CARGO_TARGET_DIR is target/ by default); the training
# run's results go to $CARGO_TARGET_DIR/pgo/train; the instrumented build to
# $PGO_GEN_TARGET_DIR ($CARGO_TARGET_DIR/pgo-gen by default). Needs what bench/bench.py needs
# (redis-server, wrk) and rustup's llvm-tools (added when missing).
set -euo pipefail

profile=${1:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    rustup component add llvm-tools
fi
gen=${PGO_GEN_TARGET_DIR:-$target/pgo-gen}
artifacts=(-p feast-server --bin feast-server --example http_floor)

data="$target/pgo"
rm -rf "$data"
mkdir -p "$data/raw" "$data/no-plugins"
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

# --target keeps the flags off build scripts and procedural macros.
step "instrumented build"
# Where the profiles go is set when the servers run (LLVM_PROFILE_FILE, which they
# inherit from bench.py), so the flags, and the build, do not depend on it.
CARGO_TARGET_DIR="$gen" RUSTFLAGS="-Cprofile-generate" \
    cargo build --profile "$profile" --target "$host" "${artifacts[@]}"

step "training run"
# With --server-bin and --plugins given, bench.py builds nothing itself.
LLVM_PROFILE_FILE="$data/raw/%m_%p.profraw" python3 bench/bench.py --server-bin "$gen/$host/$profile/feast-server" \
    --plugins "$data/no-plugins" --servers ours,http-store-floor \
    --stores sqlite,redis --payloads p1_1x3,p10_10x5,p100_100x3 \
    --conns 8 --rounds 1 --warmup 1 --duration 3 --out "$data/train"

step "merging $(find "$data/raw" -name '*.profraw' | wc -l) profile files"
"$profdata" merge -o "$data/merged.profdata" "$data/raw"
# Named by its content: cargo rebuilds when the flags change, not the file.
mkdir -p "$target/pgo-profiles"
profile_file="$target/pgo-profiles/$(sha256sum "$data/merged.profdata" | cut -c1-16).profdata"
cp "$data/merged.profdata" "$profile_file"

step "optimized build"
RUSTFLAGS="-Cprofile-use=$profile_file" \
    cargo build --profile "$profile" --target "$host" "${artifacts[@]}"
ls -l "$target/$host/$profile/feast-server" "$target/$host/$profile/examples/http_floor"
