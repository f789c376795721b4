#!/usr/bin/env bash
# Start / stop / check the local stack: a real Apache Kafka broker (KRaft, one node,
# jars from Maven Central) and a real Redis server, both on loopback.
#
#   scripts/services.sh start    idempotent; returns once both answer
#   scripts/services.sh stop     stops what start started
#   scripts/services.sh status   exit 0 when both answer
#
# Environment: YADTQ_KAFKA_PORT (9092), YADTQ_KAFKA_CONTROLLER_PORT (kafka port + 1),
# YADTQ_REDIS_PORT (6379), YADTQ_STATE_DIR (.local/services under the project),
# YADTQ_REDIS_PASSWORD (optional: redis-server runs with requirepass).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_PORT="${YADTQ_KAFKA_PORT:-9092}"
KAFKA_CPORT="${YADTQ_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
REDIS_PORT="${YADTQ_REDIS_PORT:-6379}"
STATE="${YADTQ_STATE_DIR:-$ROOT/.local/services}"
LIBS="$ROOT/scripts/kafka/target/libs"
KAFKA_DIR="$STATE/kafka-$KAFKA_PORT"
REDIS_DIR="$STATE/redis-$REDIS_PORT"
PY="${PYTHON:-python3}"

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }

port_open() {  # port_open PORT -> 0 when something accepts on 127.0.0.1:PORT
  "$PY" - "$1" <<'PYEOF'
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PYEOF
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------------------------------------------------------------- Redis
redis_ping() {
  local auth=()
  [ -n "${YADTQ_REDIS_PASSWORD:-}" ] && auth=(--no-auth-warning -a "$YADTQ_REDIS_PASSWORD")
  [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "${auth[@]}" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis_installed() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing redis-server from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    die "redis-server is not installed. Install it (Debian/Ubuntu: 'sudo apt-get install redis-server', macOS: 'brew install redis') and run again."
  fi
}

start_redis() {
  if redis_ping; then log "redis already answering on 127.0.0.1:$REDIS_PORT"; return 0; fi
  ensure_redis_installed
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by something that is not our Redis; set YADTQ_REDIS_PORT"
  mkdir -p "$REDIS_DIR"
  local args=(--bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --daemonize yes
              --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
              --save "" --appendonly yes --appendfsync everysec --protected-mode yes
              --hash-max-listpack-value 512)  # a task hash stays compact: README "Memory"
  [ -n "${YADTQ_REDIS_PASSWORD:-}" ] && args+=(--requirepass "$YADTQ_REDIS_PASSWORD")
  redis-server "${args[@]}"
  for _ in $(seq 1 100); do redis_ping && { log "redis ready on 127.0.0.1:$REDIS_PORT"; return 0; }; sleep 0.1; done
  die "redis did not answer within 10 s; see $REDIS_DIR/redis.log"
}

stop_redis() {
  if pid_alive "$REDIS_DIR/redis.pid"; then
    kill "$(cat "$REDIS_DIR/redis.pid")" || true
    for _ in $(seq 1 50); do pid_alive "$REDIS_DIR/redis.pid" || break; sleep 0.1; done
    log "redis stopped"
  fi
}

# ---------------------------------------------------------------- Kafka
kafka_ready() { port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_DIR/server.log" 2>/dev/null; }

ensure_kafka_jars() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  command -v java >/dev/null || die "java (17+) is not installed: install OpenJDK 17 (Debian: 'apt-get install openjdk-17-jre-headless')"
  command -v mvn >/dev/null || die "mvn is not installed: install Maven (Debian: 'apt-get install maven')"
  log "fetching Apache Kafka jars from Maven Central (first run only)"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" clean package >&2 || die "maven could not fetch the Kafka jars"
  touch "$LIBS/.complete"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat > "$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CPORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CPORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.cleaner.dedupe.buffer.size=2097152
log.retention.hours=24
PROPS
  cat > "$KAFKA_DIR/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $KAFKA_DIR/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
PROPS
}

start_kafka() {
  if kafka_ready; then log "kafka already answering on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    log "kafka is starting (pid $(cat "$KAFKA_DIR/kafka.pid")); waiting"
  else
    port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by something that is not our Kafka; set YADTQ_KAFKA_PORT"
    ensure_kafka_jars
    write_kafka_config
    local java_opts=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
                     "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties")
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
      local cluster_id
      cluster_id="$("$PY" "$ROOT/scripts/kafka_cluster_id.py")"
      java "${java_opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format --standalone --ignore-formatted \
        -t "$cluster_id" -c "$KAFKA_DIR/server.properties" > "$KAFKA_DIR/format.log" 2>&1 \
        || die "formatting the Kafka log dir failed; see $KAFKA_DIR/format.log"
    fi
    : > "$KAFKA_DIR/server.log"
    nohup java "${java_opts[@]}" -cp "$LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
      > "$KAFKA_DIR/stdout.log" 2>&1 < /dev/null &
    echo $! > "$KAFKA_DIR/kafka.pid"
  fi
  for _ in $(seq 1 1200); do
    kafka_ready && { log "kafka ready on 127.0.0.1:$KAFKA_PORT"; return 0; }
    pid_alive "$KAFKA_DIR/kafka.pid" || die "kafka exited while starting; see $KAFKA_DIR/server.log and stdout.log"
    sleep 0.1
  done
  die "kafka did not start within 120 s; see $KAFKA_DIR/server.log"
}

stop_kafka() {
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    local pid; pid="$(cat "$KAFKA_DIR/kafka.pid")"
    kill "$pid" || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$KAFKA_DIR/kafka.pid"
    log "kafka stopped"
  fi
}

kill_redis() {  # SIGKILL, as a crash: AOF (appendfsync everysec) may lose its last second
  if pid_alive "$REDIS_DIR/redis.pid"; then
    kill -9 "$(cat "$REDIS_DIR/redis.pid")" || true
    for _ in $(seq 1 50); do pid_alive "$REDIS_DIR/redis.pid" || break; sleep 0.1; done
    rm -f "$REDIS_DIR/redis.pid"
    log "redis killed (SIGKILL)"
  fi
}

case "${1:-}" in
  start) start_redis; start_kafka ;;
  stop) stop_kafka; stop_redis ;;
  status) redis_ping && kafka_ready ;;
  start-redis) start_redis ;;
  stop-redis) stop_redis ;;
  kill-redis) kill_redis ;;
  start-kafka) start_kafka ;;
  stop-kafka) stop_kafka ;;
  *) echo "usage: $0 start|stop|status|start-redis|stop-redis|kill-redis|start-kafka|stop-kafka" >&2; exit 2 ;;
esac
