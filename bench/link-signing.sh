#!/usr/bin/env bash
# Instructions per signed host:port link: making a token (Signer::sign_url
# on a WebHDFS redirect path, once per signed redirect or page link) and
# checking one (the segment split and Keys::verify, once per signed
# request). Counted under callgrind for two round counts, whose difference
# removes start-up, so the figures hold on a busy machine. Valgrind hides
# the CPU's SHA extensions, so ring's SHA-256 runs its AVX code there: the
# counts are an upper bound for a CPU with SHA-NI.
#
#   bench/link-signing.sh [N1 N2]    (default 1000 11000)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "bench/link-signing.sh: needs valgrind" >&2; exit 1; }
n1=${1:-1000}
n2=${2:-11000}
cargo build --release --locked --quiet --example link-signing-cost
bin=target/release/examples/link-signing-cost
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
count() {
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg" "$bin" "$1" "$2" >/dev/null 2>"$dir/log"
    awk '/^summary:/ { print $2 }' "$dir/cg"
}
for mode in sign verify both; do
    i1=$(count "$n1" "$mode")
    i2=$(count "$n2" "$mode")
    echo "$mode: $(( (i2 - i1) / (n2 - n1) )) instructions per round"
done
for mode in sign verify both; do "$bin" 200000 "$mode"; done
