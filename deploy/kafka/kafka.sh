#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, combined broker + controller) for development and tests.
#
#   deploy/kafka/kafka.sh install   resolve the broker jars from Maven Central (once)
#   deploy/kafka/kafka.sh start     format storage if needed, start on 127.0.0.1, wait until it answers
#   deploy/kafka/kafka.sh stop      stop the broker this script started (and only that one)
#   deploy/kafka/kafka.sh status    exit 0 when our broker is up, non-zero otherwise
#   deploy/kafka/kafka.sh logs      print the tail of the broker log
#
# Environment:
#   KAFKA_PORT                  client port (default 9092); the controller listens on KAFKA_PORT + 1
#   KAFKA_HOME                  where data, config, log and pid live (default <repo>/.local/kafka)
#   KAFKA_LIBS                  where the jars live (default <repo>/.local/kafka/libs)
#   KAFKA_HEAP                  JVM heap (default 512m)
#   KAFKA_START_TIMEOUT         seconds to wait for the broker to answer (default 90)
#
# One node of a multi-node KRaft cluster (every node is broker + controller; tests use it for a
# three-node cluster on one machine):
#   KAFKA_NODE_ID               node.id (default 1)
#   KAFKA_CONTROLLER_PORT       controller port (default KAFKA_PORT + 1)
#   KAFKA_QUORUM                controller.quorum.voters, e.g. 1@127.0.0.1:9193,2@127.0.0.1:9195,...
#                               (default: this node alone)
#   KAFKA_CLUSTER_ID            cluster id to format storage with; every node of a cluster needs the
#                               same one (default: a random one, fine for a single node)
#   KAFKA_REPLICATION           replication factor of internal topics and the default for new topics
#                               (default 1)
#   KAFKA_MIN_ISR               min.insync.replicas (default 1)
#   CHURNWATCH_KAFKA_BOOTSTRAP  when set, an existing cluster is used and nothing is started or stopped
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
controller_port="$((port + 1))"
home="${KAFKA_HOME:-$repo/.local/kafka}"
libs="${KAFKA_LIBS:-$repo/.local/kafka/libs}"
data="$home/data-$port"
conf="$home/server-$port.properties"
log="$home/broker-$port.log"
pidfile="$home/broker-$port.pid"
heap="${KAFKA_HEAP:-512m}"
timeout_s="${KAFKA_START_TIMEOUT:-90}"
node_id="${KAFKA_NODE_ID:-1}"
controller_port="${KAFKA_CONTROLLER_PORT:-$controller_port}"
quorum="${KAFKA_QUORUM:-$node_id@127.0.0.1:$controller_port}"
replication="${KAFKA_REPLICATION:-1}"
min_isr="${KAFKA_MIN_ISR:-1}"

say() { echo "kafka: $*" >&2; }

external() {
  if [[ -n "${CHURNWATCH_KAFKA_BOOTSTRAP:-}" ]]; then
    say "CHURNWATCH_KAFKA_BOOTSTRAP=$CHURNWATCH_KAFKA_BOOTSTRAP names an existing cluster; nothing to $1"
    return 0
  fi
  return 1
}

java_cmd() {
  local main="$1"
  shift
  java -Xms64m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$home/log4j2.properties" \
    -cp "$libs/*" "$main" "$@"
}

install() {
  if [[ -f "$libs/.complete" ]] && [[ "$libs/.complete" -nt "$here/pom.xml" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || { say "Maven (mvn) is required to resolve the broker jars"; exit 1; }
  command -v java >/dev/null || { say "a Java runtime (17+) is required"; exit 1; }
  say "resolving Apache Kafka jars from Maven Central into $libs"
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs"
  touch "$libs/.complete"
  say "installed $(find "$libs" -name '*.jar' | wc -l) jars"
}

our_pid() {
  # Prints the pid of the broker this script started, if it is still that process.
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must be a JVM running kafka.Kafka with our config.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $conf" || return 1
  echo "$pid"
}

answers() {
  # A metadata request (list topics) through the admin client.
  java -Xmx128m -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$libs/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1
}

port_taken() {
  # Something already listens on 127.0.0.1:$1.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_config() {
  mkdir -p "$home"
  cat >"$home/log4j2.properties" <<EOF
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
logger.quiet.name = org.apache.kafka.clients
logger.quiet.level = WARN
EOF
  cat >"$conf" <<EOF
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$quorum
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=1
default.replication.factor=$replication
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=104857600
log.cleaner.dedupe.buffer.size=16777216
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
EOF
}

start() {
  external start && return 0
  if our_pid >/dev/null; then
    say "already running (pid $(our_pid)) on 127.0.0.1:$port"
    return 0
  fi
  # A broker that is not ours (another checkout's, a system one) would answer in our place: the
  # caller would then use it and never stop it. Refuse, and say what to do instead.
  local p
  for p in "$port" "$controller_port"; do
    if port_taken "$p"; then
      say "127.0.0.1:$p is already in use by a process this script did not start from $home."
      say "Stop it, choose other ports with KAFKA_PORT=..., or use it as it is with CHURNWATCH_KAFKA_BOOTSTRAP=127.0.0.1:$port."
      exit 1
    fi
  done
  install
  write_config
  if [[ ! -f "$data/meta.properties" ]]; then
    local cluster_id="${KAFKA_CLUSTER_ID:-}"
    [[ -n "$cluster_id" ]] || cluster_id="$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    say "formatting KRaft storage in $data (cluster id $cluster_id)"
    # --cluster-id=…: an id may begin with "-", which argparse would take for an option.
    java_cmd kafka.tools.StorageTool format --cluster-id="$cluster_id" --config="$conf" >>"$log" 2>&1 ||
      { say "storage format failed"; tail -n 40 "$log" >&2; exit 1; }
  fi
  say "starting broker on 127.0.0.1:$port (heap $heap, log $log)"
  # setsid: the broker outlives the shell that started it and ignores its terminal's signals.
  setsid nohup java -Xms256m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$home/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$conf" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local started=$SECONDS
  until answers; do
    if ! our_pid >/dev/null; then
      say "broker exited during start-up; last lines of $log:"
      tail -n 40 "$log" >&2
      rm -f "$pidfile"
      exit 1
    fi
    if ((SECONDS - started > timeout_s)); then
      say "broker did not answer within ${timeout_s}s; last lines of $log:"
      tail -n 40 "$log" >&2
      stop
      exit 1
    fi
    sleep 1
  done
  say "up on 127.0.0.1:$port after $((SECONDS - started))s ($(grep -o 'Kafka version: [^ ]*' "$log" | tail -n 1))"
}

stop() {
  external stop && return 0
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$pidfile"
    say "not running (no broker of ours on port $port)"
    return 0
  fi
  say "stopping broker (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "broker did not stop within 30s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

status() {
  if [[ -n "${CHURNWATCH_KAFKA_BOOTSTRAP:-}" ]]; then
    say "using existing cluster $CHURNWATCH_KAFKA_BOOTSTRAP"
    return 0
  fi
  local pid
  if pid="$(our_pid)" && answers; then
    say "up (pid $pid) on 127.0.0.1:$port"
    return 0
  fi
  say "down on 127.0.0.1:$port"
  return 1
}

logs() {
  if [[ -f "$log" ]]; then tail -n "${LINES:-100}" "$log"; else say "no log at $log"; fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  logs) logs ;;
  *)
    echo "usage: $0 install|start|stop|status|logs" >&2
    exit 2
    ;;
esac
