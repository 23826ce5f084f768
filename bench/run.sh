#!/usr/bin/env bash
# Pylon benchmark, one command: direct vs nginx vs HAProxy vs Pylon, one
# proxy worker pinned to core 1, backend and load on core 0.
#
#   bench/run.sh [--rounds N] [--secs S] [--open-secs S] [--no-profile] [--no-docs] [--keep]
#
# Installs what is missing (Debian packages), builds Pylon and the load
# helper, runs every measurement (about 8 minutes), prints the table and
# rewrites the results section of docs/benchmarks.md and docs/benchmarks.svg.
# See docs/benchmarks.md for the method.
set -euo pipefail

started=$(date +%s)
cd "$(dirname "$0")/.."
command_line="bench/run.sh${*:+ $*}"

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: run as root: it installs packages, pins processes and raises open-file limits" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "bench/run.sh: needs 2 cores (the proxy on one, backend and load generator on the other)" >&2
    exit 1
fi
if ! command -v cargo >/dev/null; then
    echo "bench/run.sh: needs the Rust toolchain (https://rustup.rs), as for building Pylon" >&2
    exit 1
fi

want_profile=1
for a in "$@"; do [ "$a" = "--no-profile" ] && want_profile=0; done

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v cmake >/dev/null || missing+=(cmake)
command -v python3 >/dev/null || missing+=(python3)
command -v taskset >/dev/null || missing+=(util-linux)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$want_profile" = 1 ] && ! command -v perf >/dev/null; then
    # Only for the profile section; the benchmark runs without it.
    echo "== installing linux-perf (profile only)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 \
        || echo "   linux-perf not available; the profile is skipped"
fi
for module in http_sub_module http_dav_module; do
    if ! nginx -V 2>&1 | grep -q "$module"; then
        echo "bench/run.sh: this nginx lacks $module (sub_filter on the proxy, PUT sink on the backend)" >&2
        exit 1
    fi
done

# The tree as built is what gets measured; record it before building.
PYLON_BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null \
    || PYLON_BENCH_COMMIT="$PYLON_BENCH_COMMIT with uncommitted changes"
export PYLON_BENCH_COMMIT
echo "== building Pylon $PYLON_BENCH_COMMIT (cargo build --release --locked)"
cargo build --release --locked
echo "== building the load helper"
cargo build --release --locked --quiet --manifest-path bench/loadgen/Cargo.toml

# 1,000 held connections through a proxy need well over 1024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    echo "bench/run.sh: open-file limit $(ulimit -n) is below 4096" >&2
    exit 1
fi

echo "== measuring"
exec python3 bench/bench.py --started "$started" --command "$command_line" "$@"
