#!/usr/bin/env bash
# Takes docs/status.png: Pylon's status page in headless Chromium while the
# demo stand-ins serve load through it (one endpoint of the portal route is
# down on purpose, so every state shows). Needs Debian's chromium and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in chromium wrk; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium wrk >/dev/null; break; }
done
cargo build --release --locked --bin pylon --example stand-in

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT

target/release/examples/stand-in rest-server=19186 kubernetes=19443 webhdfs=19070 \
  prometheus=19091 grafana=19300 yarn=19088 portal=19286 >/dev/null &
pids+=($!)
cat > "$work/pylon.yaml" <<YAML
version: 1
threads: 2
pid_file: $work/pylon.pid
upgrade_sock: $work/upgrade.sock
pylon:
  listen: ["127.0.0.1:28080"]
  admin_listen: 127.0.0.1:29191
  access_log: off
  routes:
    rest-server: {upstream: "http://127.0.0.1:19186", health_check: {interval: 1s}}
    kubernetes: {upstream: "http://127.0.0.1:19443", health_check: {interval: 1s}}
    webhdfs-api: {upstream: "http://127.0.0.1:19070/webhdfs", health_check: {interval: 1s}}
    webhdfs: {upstream: "http://127.0.0.1:19070", health_check: {interval: 1s}}
    prometheus: {upstream: "http://127.0.0.1:19091/prometheus", health_check: {interval: 1s}}
    grafana: {upstream: "http://127.0.0.1:19300", health_check: {interval: 1s}}
    yarn: {upstream: "http://127.0.0.1:19088", health_check: {enabled: false}}
    # The second endpoint is down: the route shows as degraded.
    portal: {upstream: ["http://127.0.0.1:19286", "http://127.0.0.1:19287"], health_check: {interval: 1s}}
YAML
target/release/pylon -c "$work/pylon.yaml" 2>"$work/pylon.log" &
pylon=$!
pids+=($pylon)
sleep 2
kill -0 "$pylon" 2>/dev/null || { cat "$work/pylon.log" >&2; exit 1; }

# Load for a little over a minute, so the one-minute window is full.
wrk -t1 -c8 -d70s http://127.0.0.1:28080/rest-server/api/v1/jobs >/dev/null &
pids+=($!)
wrk -t1 -c2 -d70s http://127.0.0.1:28080/grafana/api/dashboards >/dev/null &
pids+=($!)
wrk -t1 -c2 -d70s http://127.0.0.1:28080/ >/dev/null &
pids+=($!)
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:28080/kubernetes/api/v1/nodes; done
sleep 65

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --hide-scrollbars --window-size=1280,620 \
  --screenshot=docs/status.png http://127.0.0.1:29191/status 2>/dev/null
echo "wrote docs/status.png"
