#!/usr/bin/env bash
# Pylon on 127.0.0.1:8080 in front of local stand-ins for the eight cluster
# services, for trying Pylon where no cluster is at hand. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cmake >/dev/null; then
  echo "installing cmake (needed to build Pingora's zlib-ng)..."
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq cmake >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq cmake >/dev/null
  fi
fi

cargo build --release --locked --bin pylon --example stand-in

PORT=${PYLON_DEMO_PORT:-8080}
declare -A SERVICES=(
  [rest-server]=19186 [kubernetes]=19443 [webhdfs]=19070 [prometheus]=19091
  [kubernetes-dashboard]=19090 [yarn]=19088 [grafana]=19300 [portal]=19286
)
args=()
for name in "${!SERVICES[@]}"; do args+=("$name=${SERVICES[$name]}"); done
target/release/examples/stand-in "${args[@]}" &
stand_in=$!
trap 'kill $stand_in 2>/dev/null' EXIT

export REST_SERVER_URI=http://127.0.0.1:${SERVICES[rest-server]}
export K8S_API_SERVER_URI=http://127.0.0.1:${SERVICES[kubernetes]}
export WEBHDFS_URI=http://127.0.0.1:${SERVICES[webhdfs]}
export PROMETHEUS_URI=http://127.0.0.1:${SERVICES[prometheus]}/prometheus
export K8S_DASHBOARD_URI=http://127.0.0.1:${SERVICES[kubernetes-dashboard]}
export YARN_WEB_PORTAL_URI=http://127.0.0.1:${SERVICES[yarn]}
export GRAFANA_URI=http://127.0.0.1:${SERVICES[grafana]}
export PAI_WEB_PORTAL_URI=http://127.0.0.1:${SERVICES[portal]}

conf=$(mktemp -t pylon-demo.XXXXXX.yaml)
cat > "$conf" <<YAML
version: 1
threads: 2
pid_file: /tmp/pylon-demo.pid
upgrade_sock: /tmp/pylon-demo-upgrade.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
pylon:
  listen: ["127.0.0.1:$PORT"]
YAML

base=http://127.0.0.1:$PORT
cat <<TXT

Pylon demo: $base (stand-ins answer with what they received)
  curl -i $base/rest-server/api/v1/jobs
  curl -i $base/kubernetes/api/v1/nodes
  curl -i '$base/webhdfs/api/v1/?op=LISTSTATUS'
  curl -i '$base/prometheus/api/v1/query?query=up'
  curl -i $base/kubernetes-dashboard/
  curl -i $base/yarn/
  curl -i $base/webhdfs/
  curl -i $base/grafana          (301 to /grafana/)
  curl -i $base/
  curl -i $base/healthz
Ctrl-C stops the demo.

TXT
target/release/pylon -c "$conf"
