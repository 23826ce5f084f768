#!/usr/bin/env bash
# Instructions and syscalls per request, Pylon and nginx, counted rather than
# timed, so the figures hold on a busy machine:
#
#   bench/count.sh [--n N1 N2] [--only pylon|nginx] [--no-strace] [--keep DIR]
#
# Each proxy (one worker; Pylon with bench.py's configuration, nginx with
# bench.py's configuration and master_process off) runs under
# `valgrind --tool=callgrind` and then under `strace -c -f` while a client
# outside sends N sequential 100 B keep-alive GETs through it to an nginx
# backend; two values of N (default 2,000 and 4,000) subtract start-up and
# shutdown. Prints a table: per request, Pylon, nginx, Pylon/nginx.
# --keep DIR keeps the callgrind files, e.g. for
#   callgrind_annotate --inclusive=yes DIR/pylon.callgrind.4000.out
# About 6 minutes on a 2-core machine with other work running.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in valgrind strace nginx python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/count.sh: needs ${missing[*]} (Debian: apt-get install valgrind strace nginx python3)" >&2
    exit 1
fi
cargo build --release --locked --quiet
exec python3 bench/count.py "$@"
