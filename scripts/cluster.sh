#!/usr/bin/env bash
# A 3-node Apache Kafka cluster (KRaft) on loopback, from the same Maven-fetched jars as
# scripts/services.sh: three combined broker + controller nodes, a static quorum of 3 voters
# (survives one dead node), topics replicated 3 times with min.insync.replicas=2.
#
#   scripts/cluster.sh start         idempotent; returns once all three nodes are up
#   scripts/cluster.sh stop          SIGTERM (controlled shutdown) to every node
#   scripts/cluster.sh status        exit 0 when all three answer
#   scripts/cluster.sh bootstrap     print the bootstrap list (host:port,host:port,host:port)
#   scripts/cluster.sh kill N        SIGKILL node N (a crash); start-node N / stop-node N
#
# Environment: YADTQ_CLUSTER_PORT (19100: node N's broker listens on +N, its controller on
# +100+N, so 19101-19103 and 19201-19203), YADTQ_CLUSTER_HOSTS (the three nodes' addresses,
# "127.0.0.1 127.0.0.1 127.0.0.1"; on Linux any 127.x.y.z works without set-up),
# YADTQ_CLUSTER_DIR (.local/cluster under the project), YADTQ_CLUSTER_BROKER_SESSION_MS (3000:
# how soon the controller fences a silent broker; Kafka's default is 9000).
# Failure detection is tuned for tests (broker session 3 s, raft election 0.5 s; Kafka's
# defaults are 9 s and 1 s): a killed partition leader stalls acks=all writes for ~3-5 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_PORT="${YADTQ_CLUSTER_PORT:-19100}"
read -r -a HOSTS <<< "${YADTQ_CLUSTER_HOSTS:-127.0.0.1 127.0.0.1 127.0.0.1}"
[ "${#HOSTS[@]}" = 3 ] || { echo "cluster: YADTQ_CLUSTER_HOSTS needs three addresses" >&2; exit 2; }
STATE="${YADTQ_CLUSTER_DIR:-$ROOT/.local/cluster}"
BROKER_SESSION_MS="${YADTQ_CLUSTER_BROKER_SESSION_MS:-3000}"
LIBS="$ROOT/scripts/kafka/target/libs"
PY="${PYTHON:-python3}"
NODES=(1 2 3)

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

host_of() { echo "${HOSTS[$(($1 - 1))]}"; }
port_of() { echo $((BASE_PORT + $1)); }
cport_of() { echo $((BASE_PORT + 100 + $1)); }
dir_of() { echo "$STATE/node$1"; }

port_open() {  # port_open HOST PORT -> 0 when something accepts there
  "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PYEOF
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_ready() {
  port_open "$(host_of "$1")" "$(port_of "$1")" \
    && grep -q "Kafka Server started" "$(dir_of "$1")/server.log" 2>/dev/null
}

bootstrap() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("$(host_of "$n"):$(port_of "$n")"); done
  (IFS=,; echo "${out[*]}")
}

voters() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("$n@$(host_of "$n"):$(cport_of "$n")"); done
  (IFS=,; echo "${out[*]}")
}

ensure_jars() {
  [ -f "$LIBS/.complete" ] && return 0
  command -v java >/dev/null || die "java (17+) is not installed (Debian: 'apt-get install openjdk-17-jre-headless')"
  command -v mvn >/dev/null || die "mvn is not installed (Debian: 'apt-get install maven')"
  log "fetching Apache Kafka jars from Maven Central (first run only)"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" clean package >&2 || die "maven could not fetch the Kafka jars"
  touch "$LIBS/.complete"
}

write_config() {  # write_config N
  local n=$1 dir host
  dir="$(dir_of "$n")"; host="$(host_of "$n")"
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://$host:$(port_of "$n"),CONTROLLER://$host:$(cport_of "$n")
advertised.listeners=PLAINTEXT://$host:$(port_of "$n"),CONTROLLER://$host:$(cport_of "$n")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.cleaner.dedupe.buffer.size=2097152
log.retention.hours=24
broker.session.timeout.ms=$BROKER_SESSION_MS
broker.heartbeat.interval.ms=500
controller.quorum.fetch.timeout.ms=1000
controller.quorum.election.timeout.ms=500
PROPS
  cat > "$dir/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $dir/server.log
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
PROPS
}

JAVA_OPTS=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1)

format_all() {  # one cluster id for the three nodes; static quorum: no --standalone
  local cluster_id n
  cluster_id="$("$PY" "$ROOT/scripts/kafka_cluster_id.py")"
  for n in "${NODES[@]}"; do
    java "${JAVA_OPTS[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format --ignore-formatted \
      -t "$cluster_id" -c "$(dir_of "$n")/server.properties" > "$(dir_of "$n")/format.log" 2>&1 &
  done
  local failed=0
  for n in "${NODES[@]}"; do wait -n || failed=1; done
  [ "$failed" = 0 ] || die "formatting failed; see $STATE/node*/format.log"
}

launch() {  # launch N: start node N's JVM in the background (its dir must be formatted)
  local n=$1 dir
  dir="$(dir_of "$n")"
  if pid_alive "$dir/kafka.pid"; then return 0; fi
  port_open "$(host_of "$n")" "$(port_of "$n")" \
    && die "$(host_of "$n"):$(port_of "$n") is taken by something that is not node $n; set YADTQ_CLUSTER_PORT"
  : > "$dir/server.log"
  nohup java "${JAVA_OPTS[@]}" "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$LIBS/*" \
    kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/kafka.pid"
}

wait_ready() {  # wait_ready N...: until each named node logged "Kafka Server started"
  local n pending
  for _ in $(seq 1 1200); do
    pending=0
    for n in "$@"; do
      node_ready "$n" && continue
      pending=1
      pid_alive "$(dir_of "$n")/kafka.pid" || die "node $n exited while starting; see $(dir_of "$n")/server.log and stdout.log"
    done
    [ "$pending" = 0 ] && return 0
    sleep 0.1
  done
  die "the cluster did not start within 120 s; see $STATE/node*/server.log"
}

start() {
  local n all_ready=1
  for n in "${NODES[@]}"; do node_ready "$n" || all_ready=0; done
  if [ "$all_ready" = 1 ]; then log "already running: $(bootstrap)"; return 0; fi
  ensure_jars
  local formatted=1
  for n in "${NODES[@]}"; do [ -f "$(dir_of "$n")/data/meta.properties" ] || formatted=0; done
  if [ "$formatted" = 0 ]; then
    for n in "${NODES[@]}"; do pid_alive "$(dir_of "$n")/kafka.pid" && die "node $n runs unformatted?"; done
    rm -rf "$STATE"
    for n in "${NODES[@]}"; do write_config "$n"; done
    format_all
  else
    for n in "${NODES[@]}"; do write_config "$n"; done
  fi
  for n in "${NODES[@]}"; do launch "$n"; done
  wait_ready "${NODES[@]}"
  log "ready: $(bootstrap) (3 brokers + controllers, replication 3, min ISR 2)"
}

stop_node() {  # stop_node N [SIGNAL]
  local dir pid
  dir="$(dir_of "$1")"
  pid_alive "$dir/kafka.pid" || { rm -f "$dir/kafka.pid"; return 0; }
  pid="$(cat "$dir/kafka.pid")"
  kill "-${2:-TERM}" "$pid" || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/kafka.pid"
  log "node $1 stopped (SIG${2:-TERM})"
}

stop() {
  local n pids=()
  for n in "${NODES[@]}"; do
    pid_alive "$(dir_of "$n")/kafka.pid" && pids+=("$n")
  done
  [ "${#pids[@]}" = 0 ] && return 0
  # all at once: a node stopping alone would wait for a controlled shutdown the others must ack
  for n in "${pids[@]}"; do stop_node "$n" & done
  wait
}

check_node() { case "${1:-}" in 1|2|3) ;; *) die "node must be 1, 2 or 3" ;; esac; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) for n in "${NODES[@]}"; do node_ready "$n" || exit 1; done ;;
  bootstrap) bootstrap ;;
  kill) check_node "${2:-}"; stop_node "$2" KILL ;;
  stop-node) check_node "${2:-}"; stop_node "$2" TERM ;;
  start-node) check_node "${2:-}"; [ -f "$(dir_of "$2")/data/meta.properties" ] || die "node $2 is not formatted: run start"
              launch "$2"; wait_ready "$2"; log "node $2 ready" ;;
  *) echo "usage: $0 start|stop|status|bootstrap|kill N|stop-node N|start-node N" >&2; exit 2 ;;
esac
