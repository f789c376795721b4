#!/usr/bin/env bash
# Redis with failover on loopback: a primary, one replica and three Sentinels (redis-server runs
# a Sentinel itself with --sentinel; nothing else to install).
#
#   scripts/sentinel.sh start          idempotent; returns once the Sentinels agree on a primary
#   scripts/sentinel.sh stop           stops the five processes
#   scripts/sentinel.sh primary        prints host:port of the current primary
#   scripts/sentinel.sh kill-primary   SIGKILL of the current primary (a crash; a replica is promoted)
#   scripts/sentinel.sh restart NODE   starts r1 or r2 again (it rejoins as a replica)
#
# Environment: YADTQ_SENTINEL_REDIS_PORT (16501: primary r1; the replica r2 takes the next port),
# YADTQ_SENTINEL_PORT (26501: sentinels s1-s3 take it and the next two), YADTQ_SENTINEL_SERVICE
# (yadtq), YADTQ_STATE_DIR (.local/services). The Sentinels rewrite their files on a failover, so
# the files are written once, on the first start, and kept (a rewrite would undo a failover).
# Use it with YADTQ_REDIS_SENTINELS=127.0.0.1:26501,127.0.0.1:26502,127.0.0.1:26503.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RPORT="${YADTQ_SENTINEL_REDIS_PORT:-16501}"
SPORT="${YADTQ_SENTINEL_PORT:-26501}"
SERVICE="${YADTQ_SENTINEL_SERVICE:-yadtq}"
BASE="${YADTQ_STATE_DIR:-$ROOT/.local/services}/sentinel-$RPORT"

log() { echo "sentinel: $*" >&2; }
die() { log "$*"; exit 1; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]; }

common() {  # common DIR -> the lines every instance's file has
  printf 'bind 127.0.0.1\nprotected-mode yes\ndaemonize yes\ndir %s\npidfile %s/pid\nlogfile %s/log\n' "$1" "$1" "$1"
}

write_configs() {
  local n dir
  for n in 1 2; do
    dir="$BASE/r$n"
    [ -f "$dir/redis.conf" ] && continue
    mkdir -p "$dir"
    { common "$dir"; printf 'port %s\nsave ""\nappendonly yes\nappendfsync everysec\n' "$((RPORT + n - 1))"
      [ "$n" = 2 ] && printf 'replicaof 127.0.0.1 %s\n' "$RPORT"; } > "$dir/redis.conf"
  done
  for n in 1 2 3; do
    dir="$BASE/s$n"
    [ -f "$dir/sentinel.conf" ] && continue
    mkdir -p "$dir"
    { common "$dir"; printf 'port %s\n' "$((SPORT + n - 1))"
      printf 'sentinel monitor %s 127.0.0.1 %s 2\n' "$SERVICE" "$RPORT"
      printf 'sentinel down-after-milliseconds %s 1000\n' "$SERVICE"
      printf 'sentinel failover-timeout %s 5000\n' "$SERVICE"
      printf 'sentinel parallel-syncs %s 1\n' "$SERVICE"; } > "$dir/sentinel.conf"
  done
}

start_node() {  # start_node r1|r2
  local dir="$BASE/$1" port
  port=$(awk '$1 == "port" {print $2}' "$dir/redis.conf")
  if ping "$port"; then return 0; fi
  redis-server "$dir/redis.conf"
  for _ in $(seq 1 100); do ping "$port" && return 0; sleep 0.1; done
  die "$1 did not answer on $port within 10 s; see $dir/log"
}

primary() {
  redis-cli -h 127.0.0.1 -p "$SPORT" sentinel get-master-addr-by-name "$SERVICE" 2>/dev/null | paste -sd: -
}

start() {
  command -v redis-server >/dev/null || die "redis-server is not installed (make services installs it)"
  write_configs
  start_node r1
  start_node r2
  local n
  for n in 1 2 3; do
    ping "$((SPORT + n - 1))" || redis-server "$BASE/s$n/sentinel.conf" --sentinel
  done
  for _ in $(seq 1 150); do
    if redis-cli -h 127.0.0.1 -p "$SPORT" sentinel ckquorum "$SERVICE" 2>/dev/null | grep -q '^OK 3'; then
      log "ready: primary $(primary), Sentinels on 127.0.0.1:$SPORT-$((SPORT + 2)), service $SERVICE"
      return 0
    fi
    sleep 0.2
  done
  die "the Sentinels did not agree within 30 s; see $BASE/s1/log"
}

stop() {
  local d
  for d in "$BASE"/s1 "$BASE"/s2 "$BASE"/s3 "$BASE"/r1 "$BASE"/r2; do
    if pid_alive "$d/pid"; then
      kill "$(cat "$d/pid")" || true
      for _ in $(seq 1 50); do pid_alive "$d/pid" || break; sleep 0.1; done
    fi
  done
  log "stopped"
}

kill_primary() {
  local port n
  port=$(primary | cut -d: -f2)
  for n in 1 2; do
    if [ "$(awk '$1 == "port" {print $2}' "$BASE/r$n/redis.conf")" = "$port" ]; then
      kill -9 "$(cat "$BASE/r$n/pid")"
      rm -f "$BASE/r$n/pid"
      echo "r$n"
      return 0
    fi
  done
  die "no local node has the primary's port $port"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  primary) primary ;;
  kill-primary) kill_primary ;;
  restart) [ "${2:-}" = r1 ] || [ "${2:-}" = r2 ] || die "restart r1|r2"; start_node "$2" ;;
  *) echo "usage: $0 start|stop|primary|kill-primary|restart r1|r2" >&2; exit 2 ;;
esac
