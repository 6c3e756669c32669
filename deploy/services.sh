#!/usr/bin/env bash
# Install, start and stop the real services kpiwatch develops and tests against:
# a single-node Apache Kafka broker (KRaft, run from Maven Central jars, since no
# Kafka package or Docker exists on our machines) and a Redis server; optionally
# Debian's Prometheus and Alertmanager with our configs from deploy/prometheus and
# deploy/alertmanager (not part of `all`: only the sink tests need them).
#
#   deploy/services.sh {install|start|stop|status|env} [kafka|redis|all|alertmanager|prometheus]
#
# Everything binds 127.0.0.1. State (pid files, logs, data) lives in
# $KPIWATCH_SERVICES_DIR (default deploy/.run); Kafka jars are cached in
# deploy/.cache/kafka-libs. Ports: KPIWATCH_KAFKA_PORT (19092),
# KPIWATCH_KAFKA_CONTROLLER_PORT (19093), KPIWATCH_REDIS_PORT (16379),
# KPIWATCH_ALERTMANAGER_PORT (19094), KPIWATCH_PROMETHEUS_PORT (19090).
# Kafka starts empty each time unless KPIWATCH_KAFKA_KEEP_DATA=1.
# Typical use:  deploy/services.sh start && eval "$(deploy/services.sh env)"
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN_DIR=${KPIWATCH_SERVICES_DIR:-$DEPLOY_DIR/.run}
KAFKA_LIBS=$DEPLOY_DIR/.cache/kafka-libs
KAFKA_POM=$DEPLOY_DIR/kafka/pom.xml
KAFKA_LOG4J=$DEPLOY_DIR/kafka/log4j.properties

HOST=127.0.0.1
KAFKA_PORT=${KPIWATCH_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KPIWATCH_KAFKA_CONTROLLER_PORT:-19093}
REDIS_PORT=${KPIWATCH_REDIS_PORT:-16379}
ALERTMANAGER_PORT=${KPIWATCH_ALERTMANAGER_PORT:-19094}
PROMETHEUS_PORT=${KPIWATCH_PROMETHEUS_PORT:-19090}

KAFKA_READY_TIMEOUT=90
REDIS_READY_TIMEOUT=20
STOP_TIMEOUT=30

# ---------------------------------------------------------------- helpers

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Kafka needs absolute paths in its config, and a relative
# KPIWATCH_SERVICES_DIR would otherwise depend on the caller's cwd.
init_run_dir() {
  mkdir -p "$RUN_DIR"
  RUN_DIR=$(cd "$RUN_DIR" && pwd)
}

# Parallel test workers may all call `start` at once: serialize, so the later
# ones find the service running instead of formatting the same data dir.
take_lock() {
  exec 9>"$RUN_DIR/.lock"
  flock -w 300 9 || die "another $0 has held $RUN_DIR/.lock for 5 minutes"
}

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$RUN_DIR/$1.log"; }

# What identifies a process as one of ours, in /proc/<pid>/cmdline. Kafka's
# includes our own config path, so another checkout's broker never matches.
# Redis rewrites its cmdline to "redis-server <host>:<port>": the name must do.
marker() {
  case $1 in
    kafka) echo "kafka.Kafka $RUN_DIR/kafka.properties" ;;
    redis) echo redis-server ;;
    alertmanager) echo "--config.file=$DEPLOY_DIR/alertmanager/alertmanager.yml" ;;
    prometheus) echo "--config.file=$RUN_DIR/prometheus.yml" ;;
  esac
}

# Alive and not a zombie: a reaped-late child of init still has /proc/<pid>.
pid_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Prints the PID from our pid file if that process is alive and is really the
# service we started (guards against PID reuse after a reboot or crash).
running_pid() {
  local name=$1 file pid cmdline
  file=$(pid_file "$name")
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
  # A variable, not a pipe into grep -q: with pipefail an early grep exit
  # could turn a match into a failure.
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$(marker "$name")"* ]] || return 1
  echo "$pid"
}

# True if something accepts connections on 127.0.0.1:<port> (also catches
# listeners bound to 0.0.0.0). Uses bash's /dev/tcp: no extra tools needed.
port_in_use() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

require_free_port() {
  local name=$1 port=$2 var=$3
  if [[ ! $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    die "$name: $var=$port is not a TCP port number"
  fi
  if port_in_use "$port"; then
    die "$name: port $port on $HOST is already in use by another process (not started by this script); stop it or set $var to another port"
  fi
}

# Start a service detached from the caller: setsid gives it its own session, so
# Ctrl-C or a CI step killing the caller's process group does not take it down.
# The inner shell writes its own PID and then execs the service, so the pid
# file holds the service's real PID even if setsid had to fork. fd 9 (our lock)
# is closed so that a running service does not hold the lock forever.
spawn() {
  local pidfile=$1 logfile=$2 i
  shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  for ((i = 0; i < 50; i++)); do
    [[ -s $pidfile ]] && return 0
    sleep 0.1
  done
  die "could not start: $*"
}

show_log_tail() {
  log "---- last 40 lines of $1 ----"
  tail -n 40 "$1" >&2 || true
  log "----"
}

# apt-get as root, or through sudo; Debian's own service start is blocked with
# a temporary policy-rc.d (only if the machine has none) because we run our own
# processes with our own config and do not want a stray daemon on 6379.
apt_install() {
  local sudo=() policy=/usr/sbin/policy-rc.d made_policy=
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null ||
      die "need root or sudo to apt-get install $*; install it yourself and re-run"
    sudo=(sudo)
  fi
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    made_policy=1
  fi
  # dpkg chatters even with -qq: keep it in a file, show it only on failure.
  local rc=0 apt_log=$RUN_DIR/apt.log
  {
    "${sudo[@]}" apt-get update -qq &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  } >"$apt_log" 2>&1 || rc=$?
  if [[ -n $made_policy ]]; then "${sudo[@]}" rm -f "$policy"; fi
  if ((rc != 0)); then
    cat "$apt_log" >&2
    die "apt-get install $* failed (exit $rc)"
  fi
}

# Wait until <probe> succeeds, or the process dies, or <timeout> seconds pass.
# A service that never got ready is stopped again, so that the next `start`
# begins afresh instead of calling the half-started one "already running".
wait_ready() {
  local name=$1 pid=$2 timeout=$3 probe=$4 deadline=$((SECONDS + $3))
  until "$probe"; do
    if ! pid_alive "$pid"; then
      show_log_tail "$(log_file "$name")"
      rm -f "$(pid_file "$name")"
      die "$name: process $pid exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail "$(log_file "$name")"
      stop_service "$name"
      die "$name: not ready after $timeout s"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- kafka

# Kafka's command-line tools (StorageTool, BrokerApiVersionsCommand): a small
# heap, their log lines on stderr so that stdout stays parseable, and a time
# limit because an admin client retries for a minute when nobody answers.
kafka_tool() {
  timeout 30 java -Xmx256m -Djava.awt.headless=true \
    -Dkpiwatch.log.level=WARN -Dkpiwatch.log.target=System.err \
    "-Dlog4j.configuration=file:$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" "$@"
}

install_kafka() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  local stamp=$KAFKA_LIBS/.resolved hash
  hash=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
  # The stamp is written only after a complete copy, so a half-finished or
  # older-pom folder is never mistaken for a usable classpath.
  if [[ -f $stamp && $(<"$stamp") == "$hash" ]]; then
    log "kafka: using cached jars in $KAFKA_LIBS"
    return 0
  fi
  command -v mvn >/dev/null || apt_install maven
  log "kafka: resolving jars (first run downloads ~50 MB into ~/.m2)..."
  local start tmp mvn_log
  start=$(now)
  tmp=$KAFKA_LIBS.tmp.$$
  mvn_log=$DEPLOY_DIR/.cache/mvn.log
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Output goes to a file and is shown only on failure (Maven 3.8 also prints
  # stray ANSI resets in batch mode that no flag removes).
  if ! mvn -q -B -f "$KAFKA_POM" \
    dependency:copy-dependencies -DincludeScope=runtime \
    "-DoutputDirectory=$tmp" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -rf "$tmp"
    die "kafka: maven could not resolve the broker jars (see above)"
  fi
  echo "$hash" >"$tmp/.resolved"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  log "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars ready in $(since "$start") s"
}

write_kafka_config() {
  cat >"$RUN_DIR/kafka.properties" <<EOF
# Generated by deploy/services.sh on each start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN_DIR/kafka-data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# The offsets topic has no min-ISR key of its own; this broker default covers it.
min.insync.replicas=1
# Without this every consumer group join waits 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
}

# A dev/test broker starts empty every time: wipe, then format with a new id.
# Output goes to the (fresh) broker log, where a failure can be read.
# KPIWATCH_KAFKA_KEEP_DATA=1 keeps formatted storage (a broker restart that keeps
# its topics, as the fault suite's broker-restart test needs).
format_kafka_storage() {
  local id logfile
  logfile=$(log_file kafka)
  if [[ ${KPIWATCH_KAFKA_KEEP_DATA:-} == 1 && -f $RUN_DIR/kafka-data/meta.properties ]]; then
    : >"$logfile"
    return 0
  fi
  rm -rf "$RUN_DIR/kafka-data"
  : >"$logfile"
  if ! id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$logfile") ||
    ! kafka_tool kafka.tools.StorageTool format -t "$id" \
      -c "$RUN_DIR/kafka.properties" >>"$logfile" 2>&1; then
    show_log_tail "$logfile"
    die "kafka: formatting $RUN_DIR/kafka-data failed"
  fi
}

# Ready = the broker logged its start in our fresh log AND answers real
# requests (metadata, then ApiVersions) on its port. BrokerApiVersionsCommand
# is used because it is one of the few admin tools that is still fully inside
# the broker jar in 3.9 (kafka.tools.ClusterTool & co. are stubs that need the
# separate kafka-tools artifact).
kafka_probe() {
  grep -q 'Kafka Server started' "$(log_file kafka)" || return 1
  local out
  out=$(kafka_tool kafka.admin.BrokerApiVersionsCommand \
    --bootstrap-server "$HOST:$KAFKA_PORT" 2>/dev/null) || return 1
  [[ $out == *"$HOST:$KAFKA_PORT (id: 1 "* ]]
}

start_kafka() {
  local pid start
  if pid=$(running_pid kafka); then
    log "kafka: already running (pid $pid, port $KAFKA_PORT), nothing to do"
    return 0
  fi
  require_free_port kafka "$KAFKA_PORT" KPIWATCH_KAFKA_PORT
  require_free_port kafka "$KAFKA_CONTROLLER_PORT" KPIWATCH_KAFKA_CONTROLLER_PORT
  install_kafka
  start=$(now)
  log "kafka: starting on $HOST:$KAFKA_PORT..."
  write_kafka_config
  format_kafka_storage
  # Same JVM flags as Kafka's own kafka-server-start.sh, with a fixed 512 MiB
  # heap (less can fail: the log cleaner allocates a 128 MiB buffer at start).
  spawn "$(pid_file kafka)" "$(log_file kafka)" \
    java -Xms512m -Xmx512m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true "-Dlog4j.configuration=file:$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$RUN_DIR/kafka.properties"
  pid=$(<"$(pid_file kafka)")
  wait_ready kafka "$pid" "$KAFKA_READY_TIMEOUT" kafka_probe
  log "kafka: started pid $pid in $(since "$start") s (bootstrap $HOST:$KAFKA_PORT)"
}

# ---------------------------------------------------------------- redis

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  log "redis: installing Debian's redis-server package..."
  local start
  start=$(now)
  apt_install redis-server
  log "redis: installed in $(since "$start") s"
}

redis_probe() {
  [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

start_redis() {
  local pid start
  if pid=$(running_pid redis); then
    log "redis: already running (pid $pid, port $REDIS_PORT), nothing to do"
    return 0
  fi
  require_free_port redis "$REDIS_PORT" KPIWATCH_REDIS_PORT
  install_redis
  start=$(now)
  mkdir -p "$RUN_DIR/redis-data"
  : >"$(log_file redis)"
  # No config file on purpose: Debian's /etc/redis/redis.conf belongs to its
  # own service; ours is in-memory only and dies with the process.
  spawn "$(pid_file redis)" "$(log_file redis)" \
    redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' \
    --appendonly no --daemonize no --dir "$RUN_DIR/redis-data"
  pid=$(<"$(pid_file redis)")
  wait_ready redis "$pid" "$REDIS_READY_TIMEOUT" redis_probe
  log "redis: started pid $pid in $(since "$start") s (port $REDIS_PORT)"
}

# ------------------------------------------------- alertmanager, prometheus

# Debian's packages; their own systemd services are kept from starting (see
# apt_install): we run our own processes, with our config, on 127.0.0.1 only.
install_alertmanager() {
  command -v prometheus-alertmanager >/dev/null || apt_install prometheus-alertmanager
}

install_prometheus() {
  command -v prometheus >/dev/null || apt_install prometheus
}

http_ready() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1 && printf 'GET /-/ready HTTP/1.0\r\n\r\n' >&3 && head -1 <&3" 2>/dev/null | grep -q ' 200 '
}
alertmanager_probe() { http_ready "$ALERTMANAGER_PORT"; }
prometheus_probe() { http_ready "$PROMETHEUS_PORT"; }

start_alertmanager() {
  local pid start
  if pid=$(running_pid alertmanager); then
    log "alertmanager: already running (pid $pid, port $ALERTMANAGER_PORT), nothing to do"
    return 0
  fi
  require_free_port alertmanager "$ALERTMANAGER_PORT" KPIWATCH_ALERTMANAGER_PORT
  install_alertmanager
  start=$(now)
  rm -rf "$RUN_DIR/alertmanager-data"
  : >"$(log_file alertmanager)"
  # An empty cluster address turns gossip off: a single node needs no 9094.
  spawn "$(pid_file alertmanager)" "$(log_file alertmanager)" \
    prometheus-alertmanager "$(marker alertmanager)" \
    "--storage.path=$RUN_DIR/alertmanager-data" \
    "--web.listen-address=$HOST:$ALERTMANAGER_PORT" --cluster.listen-address=
  pid=$(<"$(pid_file alertmanager)")
  wait_ready alertmanager "$pid" "$REDIS_READY_TIMEOUT" alertmanager_probe
  log "alertmanager: started pid $pid in $(since "$start") s (http://$HOST:$ALERTMANAGER_PORT)"
}

start_prometheus() {
  local pid start
  if pid=$(running_pid prometheus); then
    log "prometheus: already running (pid $pid, port $PROMETHEUS_PORT), nothing to do"
    return 0
  fi
  require_free_port prometheus "$PROMETHEUS_PORT" KPIWATCH_PROMETHEUS_PORT
  install_prometheus
  start=$(now)
  rm -rf "$RUN_DIR/prometheus-data"
  mkdir -p "$RUN_DIR/prometheus-targets"
  sed "s|@RUN_DIR@|$RUN_DIR|g" "$DEPLOY_DIR/prometheus/prometheus.yml" >"$RUN_DIR/prometheus.yml"
  : >"$(log_file prometheus)"
  spawn "$(pid_file prometheus)" "$(log_file prometheus)" \
    prometheus "$(marker prometheus)" "--storage.tsdb.path=$RUN_DIR/prometheus-data" \
    "--web.listen-address=$HOST:$PROMETHEUS_PORT"
  pid=$(<"$(pid_file prometheus)")
  wait_ready prometheus "$pid" "$REDIS_READY_TIMEOUT" prometheus_probe
  log "prometheus: started pid $pid in $(since "$start") s (http://$HOST:$PROMETHEUS_PORT)"
}

# ---------------------------------------------------------------- common

# Only ever signals the PID from our own pid file, never a name match: other
# Kafka/Redis processes on the machine (a developer's, another checkout's) are
# none of our business.
stop_service() {
  local name=$1 pid start deadline
  if ! pid=$(running_pid "$name"); then
    rm -f "$(pid_file "$name")"
    log "$name: not running"
    return 0
  fi
  start=$(now)
  deadline=$((SECONDS + STOP_TIMEOUT))
  log "$name: stopping pid $pid..."
  kill -TERM "$pid" 2>/dev/null || true
  while pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "$name: still alive after $STOP_TIMEOUT s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while pid_alive "$pid"; do sleep 0.1; done
      break
    fi
    sleep 0.2
  done
  rm -f "$(pid_file "$name")"
  log "$name: stopped in $(since "$start") s"
}

status_service() {
  local name=$1 pid port
  case $name in
    kafka) port=$KAFKA_PORT ;;
    redis) port=$REDIS_PORT ;;
    alertmanager) port=$ALERTMANAGER_PORT ;;
    prometheus) port=$PROMETHEUS_PORT ;;
  esac
  if pid=$(running_pid "$name"); then
    echo "$name: running (pid $pid, port $port)"
  else
    echo "$name: stopped"
  fi
}

env_service() {
  case $1 in
    kafka) echo "export KPIWATCH_KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT" ;;
    redis) echo "export KPIWATCH_REDIS_URL=redis://$HOST:$REDIS_PORT/0" ;;
    alertmanager) echo "export KPIWATCH_ALERTMANAGER_URL=http://$HOST:$ALERTMANAGER_PORT" ;;
    prometheus)
      echo "export KPIWATCH_PROMETHEUS_URL=http://$HOST:$PROMETHEUS_PORT"
      echo "export KPIWATCH_PROMETHEUS_TARGETS=$RUN_DIR/prometheus-targets"
      ;;
  esac
}

usage() {
  log "usage: $0 {install|start|stop|status|env} [kafka|redis|all|alertmanager|prometheus]"
  exit 2
}

main() {
  local action=${1:-} target=${2:-all} services=() name
  case $target in
    all) services=(kafka redis) ;;
    kafka | redis | alertmanager | prometheus) services=("$target") ;;
    *) usage ;;
  esac
  case $action in
    install | start | stop) init_run_dir && take_lock ;;
    status) init_run_dir ;;
    env) ;;
    *) usage ;;
  esac
  for name in "${services[@]}"; do
    case $action in
      install) "install_$name" ;;
      start) "start_$name" ;;
      stop) stop_service "$name" ;;
      status) status_service "$name" ;;
      env) env_service "$name" ;;
    esac
  done
}

main "$@"
