#!/usr/bin/env bash
# Fuzzes Pylon's pure modules with cargo-fuzz (libFuzzer), SECONDS per target
# (default 60), and prints the executions and findings of each target.
#
#   fuzz/run.sh [SECONDS]            all targets
#   TARGETS="redirect" fuzz/run.sh   some of them
#
# libFuzzer needs a nightly toolchain. Without one, the checked-in corpora
# are replayed through the same checks under `cargo test` instead, which is
# also what the ordinary test suite does on every run.
#
# New inputs go to fuzz/target/run/corpus/<target> (not committed); a
# finding is written to fuzz/artifacts/<target>/. Once it is fixed, copy the
# file into fuzz/corpus/<target>/ so that `cargo test` keeps replaying it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
read -r -a targets <<<"${TARGETS:-path_normalise route redirect rewrite_chunks link_signing}"
# The targets are safe Rust over byte slices: AddressSanitizer would only
# halve the executions. FUZZ_SANITIZER=address turns it on.
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: no nightly toolchain (cargo +nightly), so libFuzzer cannot run;" >&2
    echo "fuzz/run.sh: replaying fuzz/corpus through the same checks under cargo test" >&2
    exec cargo test --release --lib fuzzing::
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build -s "$sanitizer"
work=fuzz/target/run
failed=0
printf '%-16s %12s %10s %8s  %s\n' target executions exec/s corpus findings
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "fuzz/artifacts/$t"
    log="$work/$t.log"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    dict=()
    [[ -f "fuzz/dict/$t.dict" ]] && dict=("-dict=fuzz/dict/$t.dict")
    set +e
    cargo +nightly fuzz run -s "$sanitizer" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corpus=$(find "$work/corpus/$t" -type f | wc -l)
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    found=$((after - before))
    if [[ $rc -ne 0 || $found -ne 0 ]]; then
        failed=1
        findings="$found new in fuzz/artifacts/$t (exit $rc; log $log)"
    else
        findings=none
    fi
    printf '%-16s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$findings"
done
exit "$failed"
