#!/usr/bin/env bash
# The whole Pylon test suite, from a fresh clone on Debian with only the Rust
# toolchain: installs what the tests use, then checks formatting and lints,
# then runs every unit and integration test against the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-deps.sh

echo "== vendor/check.sh: vendored Pingora = pristine release + vendor/patches"
bash vendor/check.sh
echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --release --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --release --locked -- --test-threads=2
