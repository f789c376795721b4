#!/usr/bin/env bash
# Start / stop the background workers of `make run`. Pids and logs in .local/run/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.local/run"
mkdir -p "$RUN"
case "${1:-}" in
  start)
    n="${2:-3}"
    "$0" stop >/dev/null 2>&1 || true
    for i in $(seq 1 "$n"); do
      nohup "$ROOT/.venv/bin/yadtq-worker" > "$RUN/worker-$i.log" 2>&1 < /dev/null &
      echo $! >> "$RUN/workers.pids"
    done
    echo "started $n workers (logs: .local/run/worker-N.log)" >&2 ;;
  stop)
    [ -f "$RUN/workers.pids" ] || exit 0
    pids=$(cat "$RUN/workers.pids")
    kill -TERM $pids 2>/dev/null || true
    echo "stopping the workers: each finishes its current task (up to 30 s)" >&2
    for _ in $(seq 1 300); do
      alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break; sleep 0.1
    done
    kill -KILL $pids 2>/dev/null || true
    rm -f "$RUN/workers.pids"
    echo "stopped the workers" >&2 ;;
  *) echo "usage: $0 start [N] | stop" >&2; exit 2 ;;
esac
