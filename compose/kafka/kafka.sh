#!/usr/bin/env bash
# Local Apache Kafka (KRaft) from Maven Central jars; no Docker needed.
#
#   compose/kafka/kafka.sh fetch            resolve the jars into .cache/kafka-jars
#   compose/kafka/kafka.sh start [NODES]    format and start 1 (default) or 3 nodes, wait until up
#   compose/kafka/kafka.sh stop [NODE]      stop every node, or one (for fault tests)
#   compose/kafka/kafka.sh restart-node N   start one stopped node again, keeping its data
#   compose/kafka/kafka.sh status           list running nodes
#
# Node N (1-based) listens for clients on $KAFKA_LISTEN_HOST (default 127.0.0.1, advertised as
# 127.0.0.1) port $((KAFKA_BASE_PORT + 2*(N-1))) and
# for the controller quorum on the next port. Data and logs live under $FLOWSIGHT_VAR/kafka.
# With KAFKA_SASL_PLAIN_USERS=user=password,... it also takes SASL_PLAINTEXT (PLAIN) logins on port
# $((KAFKA_BASE_PORT + 2*(N-1) + 1000)).
# Needs only Java 17 and Maven.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
var=${FLOWSIGHT_VAR:-$root/var}
jars=${KAFKA_JARS:-$root/.cache/kafka-jars}
base_port=${KAFKA_BASE_PORT:-9092}
# Kafka's own default heap is 1 GiB; the JVM's direct memory limit follows it. The broker reads a produce
# request through a direct buffer of the request's whole size on each network thread, and a request can
# carry an 8 MiB chunk for every partition: 512 MiB ran out.
heap=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
kdir=$var/kafka

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_tools() {
  command -v java >/dev/null || die "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
}

fetch() {
  need_tools
  if [ -f "$jars/.complete" ] && [ "$jars/.complete" -nt "$here/pom.xml" ]; then return 0; fi
  echo "kafka.sh: resolving Apache Kafka jars from Maven Central into $jars" >&2
  rm -rf "$jars"; mkdir -p "$jars"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$jars" -DincludeScope=runtime >&2 \
    || die "mvn could not resolve the Kafka jars (see the output above)"
  ls "$jars"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar after mvn"
  touch "$jars/.complete"
}

client_port() { echo $((base_port + 2 * ($1 - 1))); }
ctrl_port() { echo $((base_port + 2 * ($1 - 1) + 1)); }
sasl_port() { echo $((base_port + 2 * ($1 - 1) + 1000)); }

java_run() {  # java_run NODE MAINCLASS ARGS...
  local n=$1; shift
  # shellcheck disable=SC2086
  java $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$kdir/node$n" \
    -cp "$jars/*" "$@"
}

write_props() {  # write_props NODE NODES
  local n=$1 nodes=$2 voters="" i rf=1 isr=1
  for ((i = 1; i <= nodes; i++)); do voters+="${voters:+,}$i@127.0.0.1:$(ctrl_port $i)"; done
  if [ "$nodes" -ge 3 ]; then rf=3; isr=2; fi
  local listeners="PLAINTEXT://${KAFKA_LISTEN_HOST:-127.0.0.1}:$(client_port $n)"
  local advertised="PLAINTEXT://127.0.0.1:$(client_port $n)" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  local sasl="" users="" u
  if [ -n "${KAFKA_SASL_PLAIN_USERS:-}" ]; then  # user=password,...: a SASL_PLAINTEXT listener beside PLAINTEXT
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$(sasl_port $n)"
    advertised+=",SASL_PLAINTEXT://127.0.0.1:$(sasl_port $n)"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
    for u in ${KAFKA_SASL_PLAIN_USERS//,/ }; do users+=" user_${u%%=*}=\"${u#*=}\""; done
    sasl="sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;"
  fi
  mkdir -p "$kdir/node$n"
  cat >"$kdir/node$n/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://127.0.0.1:$(ctrl_port $n)
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
$sasl
inter.broker.listener.name=PLAINTEXT
log.dirs=$kdir/node$n/data
num.partitions=8
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=${KAFKA_MESSAGE_MAX_BYTES:-16777216}
replica.fetch.max.bytes=${KAFKA_MESSAGE_MAX_BYTES:-16777216}
log.retention.hours=-1
log.segment.bytes=268435456
unclean.leader.election.enable=false
PROPS
}

pidfile() { echo "$kdir/node$1/pid"; }
alive() { local p; p=$(cat "$(pidfile "$1")" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

launch() {  # launch NODE
  local n=$1
  alive "$n" && return 0
  # shellcheck disable=SC2086
  # a session of its own: a signal to the caller's process group (Ctrl-C on `make run`) must not stop the
  # broker before the worker (the worker would retry a dead broker for a minute); kafka.sh stop stops it
  setsid nohup java $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$kdir/node$n" \
    -cp "$jars/*" kafka.Kafka "$kdir/node$n/server.properties" \
    >"$kdir/node$n/console.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$n")"
}

wait_up() {  # wait_up NODE
  local n=$1 port i
  port=$(client_port "$n")
  for ((i = 0; i < 120; i++)); do
    alive "$n" || { tail -20 "$kdir/node$n/console.log" >&2; die "node $n exited during start-up (log: $kdir/node$n/)"; }
    if port_open "$port" && grep -q 'Kafka Server started\|\[KafkaRaftServer nodeId=.*\] Kafka Server started' "$kdir/node$n/server.log" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  die "node $n did not answer on 127.0.0.1:$port within 60 s (log: $kdir/node$n/server.log)"
}

start() {
  local nodes=${1:-1} n cid
  [ "$nodes" = 1 ] || [ "$nodes" = 3 ] || die "start takes 1 or 3 nodes, not '$nodes'"
  fetch
  if [ -f "$kdir/nodes" ] && [ "$(cat "$kdir/nodes")" != "$nodes" ]; then
    stop; rm -rf "$kdir"
  fi
  mkdir -p "$kdir"
  echo "$nodes" >"$kdir/nodes"
  if [ ! -f "$kdir/cluster.id" ]; then
    cid=$(java_run 1 kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    [ -n "$cid" ] || die "could not make a cluster id"
    echo "$cid" >"$kdir/cluster.id"
  fi
  cid=$(cat "$kdir/cluster.id")
  for ((n = 1; n <= nodes; n++)); do
    write_props "$n" "$nodes"
    if [ ! -f "$kdir/node$n/data/meta.properties" ]; then
      java_run "$n" kafka.tools.StorageTool format -t "$cid" -c "$kdir/node$n/server.properties" --ignore-formatted >/dev/null \
        || die "could not format storage for node $n"
    fi
    launch "$n"
  done
  for ((n = 1; n <= nodes; n++)); do wait_up "$n"; done
  echo "kafka.sh: $nodes node(s) up: $(bootstrap "$nodes")" >&2
}

bootstrap() {
  local nodes=${1:-$(cat "$kdir/nodes" 2>/dev/null || echo 1)} n s=""
  for ((n = 1; n <= nodes; n++)); do s+="${s:+,}127.0.0.1:$(client_port $n)"; done
  echo "$s"
}

stop_node() {
  local n=$1 p i
  p=$(cat "$(pidfile "$n")" 2>/dev/null) || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$n")"
}

stop() {
  local n
  if [ -n "${1:-}" ]; then stop_node "$1"; return; fi
  for n in 1 2 3; do stop_node "$n"; done
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:-1}" ;;
  stop) stop "${2:-}" ;;
  kill-node) p=$(cat "$(pidfile "$2")") && kill -KILL "$p" && rm -f "$(pidfile "$2")" ;;
  restart-node) launch "$2"; wait_up "$2" ;;
  wipe) stop; rm -rf "$kdir" ;;
  bootstrap) bootstrap ;;
  status) for n in 1 2 3; do alive "$n" && echo "node $n up on 127.0.0.1:$(client_port $n)"; done; true ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
