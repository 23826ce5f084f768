#!/usr/bin/env bash
# Pylon carries a few changes to Pingora as patches on top of the released
# crates. This script proves that each crate under vendor/ is exactly its
# pristine crates.io release plus vendor/patches/*.patch, applied in name
# order, and nothing else.
#
#   vendor/check.sh          verify (run by tests/run-all.sh); exit 1 on any difference
#   vendor/check.sh diff     print the changes in vendor/ that no patch records yet,
#                            as a patch: the body of the next vendor/patches/ file
#                            (write it outside vendor/patches/, add the header, then
#                            move it in: a half-written patch there breaks the diff)
#   vendor/check.sh rebuild  rewrite vendor/<crate> from pristine + patches
#                            (after editing or re-ordering a patch file)
#   vendor/check.sh add NAME put the pristine release of crate NAME under vendor/
#                            (NAME must be listed in vendor/PRISTINE)
#
# vendor/PRISTINE pins each crate's version and the sha256 of its .crate file,
# so a verification never trusts whatever happens to be in a local cache.
# A patch file is an upstream-style pull request: free text first (problem,
# change, measured effect, how to reproduce), then a `git diff` whose paths
# are relative to vendor/ (a/pingora-core/src/…). `git apply` ignores the text.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-check}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name version sha256, for every crate that may be vendored.
pinned() {
    awk -v n="$1" '$1 == n { print $2, $3 }' "$here/PRISTINE"
}

vendored_crates() {
    for d in "$here"/*/; do
        d=${d%/}
        [ "$(basename "$d")" = patches ] && continue
        [ -f "$d/Cargo.toml" ] && basename "$d"
    done
}

# Finds (or downloads through cargo, which checks the registry index) the
# .crate file of NAME VERSION and prints its path.
crate_file() {
    local name=$1 version=$2 f
    for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate"; do
        [ -f "$f" ] && { echo "$f"; return; }
    done
    local p="$work/fetch-$name"
    mkdir -p "$p/src"
    : >"$p/src/lib.rs"
    printf '[package]\nname = "fetch-pristine"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n[workspace]\n' \
        "$name" "$version" >"$p/Cargo.toml"
    (cd "$p" && cargo fetch -q) >&2
    for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate"; do
        [ -f "$f" ] && { echo "$f"; return; }
    done
    echo "vendor: cannot fetch $name $version" >&2
    exit 1
}

# Unpacks the verified pristine release of NAME into DIR/NAME.
unpack() {
    local name=$1 dir=$2 version sum f
    read -r version sum <<<"$(pinned "$name")"
    if [ -z "$version" ]; then
        echo "vendor: $name is not listed in vendor/PRISTINE" >&2
        exit 1
    fi
    f=$(crate_file "$name" "$version")
    if [ "$(sha256sum "$f" | cut -d' ' -f1)" != "$sum" ]; then
        echo "vendor: $f does not have the sha256 pinned in vendor/PRISTINE" >&2
        exit 1
    fi
    mkdir -p "$dir"
    tar -xzf "$f" -C "$dir"
    mv "$dir/$name-$version" "$dir/$name"
}

# Builds DIR/<crate> for every vendored crate: pristine, then every patch.
expected() {
    local dir=$1 c p
    for c in $(vendored_crates); do unpack "$c" "$dir"; done
    for p in "$here"/patches/*.patch; do
        [ -f "$p" ] || continue
        if ! (cd "$dir" && git apply --whitespace=nowarn "$p"); then
            echo "vendor: $(basename "$p") does not apply on top of the patches before it" >&2
            exit 1
        fi
    done
}

case "$cmd" in
check)
    expected "$work/expected"
    status=0
    for c in $(vendored_crates); do
        if ! diff -r "$work/expected/$c" "$here/$c" >"$work/diff" 2>&1; then
            echo "vendor: vendor/$c differs from pristine + patches:" >&2
            head -n 40 "$work/diff" >&2
            status=1
        fi
    done
    for p in "$here"/patches/*.patch; do
        [ -f "$p" ] || continue
        for c in $(grep -oE '^\+\+\+ b/[^/]+' "$p" | cut -d/ -f2 | sort -u); do
            if [ ! -d "$here/$c" ]; then
                echo "vendor: $(basename "$p") patches $c, which is not vendored" >&2
                status=1
            fi
        done
    done
    n=0
    for p in "$here"/patches/*.patch; do [ -f "$p" ] && n=$((n + 1)); done
    [ "$status" -eq 0 ] && echo "vendor: $(vendored_crates | tr '\n' ' ')= pristine + $n patches"
    exit "$status"
    ;;
diff)
    expected "$work/expected"
    mkdir -p "$work/current"
    cd "$work"
    for c in $(vendored_crates); do
        cp -a "$here/$c" "current/$c"
        git diff --no-index "expected/$c" "current/$c" |
            sed -e 's#\([ab]\)/expected/#\1/#g; s#\([ab]\)/current/#\1/#g' || true
    done
    ;;
rebuild)
    expected "$work/expected"
    for c in $(vendored_crates); do
        rm -rf "${here:?}/$c"
        cp -a "$work/expected/$c" "$here/$c"
    done
    echo "vendor: rebuilt $(vendored_crates | tr '\n' ' ')"
    ;;
add)
    name=${2:?usage: vendor/check.sh add NAME}
    [ -e "$here/$name" ] && { echo "vendor: $name is already vendored" >&2; exit 1; }
    unpack "$name" "$work/new"
    cp -a "$work/new/$name" "$here/$name"
    echo "vendor: added pristine $name; wire it in Cargo.toml [patch.crates-io]"
    ;;
*)
    echo "usage: vendor/check.sh [check|diff|rebuild|add NAME]" >&2
    exit 2
    ;;
esac
