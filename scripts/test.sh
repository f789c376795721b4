#!/usr/bin/env bash
# `make test`: fresh Kafka + Redis on their own ports (not the `make run` ones), the whole suite,
# then stop what was started. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"

# tools the suite drives (installed if missing and we are root)
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)  # tests/tui/test_web.py (Playwright drives it)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "test: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
  fi
fi

export YADTQ_KAFKA_PORT="${YADTQ_TEST_KAFKA_PORT:-29092}"
export YADTQ_KAFKA_CONTROLLER_PORT=$((YADTQ_KAFKA_PORT + 1))
export YADTQ_REDIS_PORT="${YADTQ_TEST_REDIS_PORT:-26379}"
# one state directory per Kafka port: a run on other ports (YADTQ_TEST_KAFKA_PORT) never stops
# the services of another run
export YADTQ_STATE_DIR="$ROOT/.local/test-services-$YADTQ_KAFKA_PORT"
export YADTQ_KAFKA_BOOTSTRAP="127.0.0.1:$YADTQ_KAFKA_PORT"
export YADTQ_REDIS_URL="redis://127.0.0.1:$YADTQ_REDIS_PORT/0"
export YADTQ_TEST_DIR="$ROOT/.local/test-tmp-$YADTQ_KAFKA_PORT"
export PYTHON="$PY"

# tests/cluster starts its own 3-node Kafka cluster (and stops it); this stops one left behind
stop_test_cluster() {
  YADTQ_CLUSTER_PORT="${YADTQ_TEST_CLUSTER_PORT:-39100}" YADTQ_CLUSTER_DIR="$ROOT/.local/test-cluster" \
    scripts/cluster.sh stop || true
}
cleanup() { scripts/services.sh stop || true; stop_test_cluster; }
trap cleanup EXIT
scripts/services.sh stop >/dev/null 2>&1 || true
stop_test_cluster >/dev/null 2>&1
rm -rf "$YADTQ_STATE_DIR" "$YADTQ_TEST_DIR"
mkdir -p "$YADTQ_TEST_DIR"
scripts/services.sh start
"$PY" -m pytest -q -p no:cacheprovider "$@"
