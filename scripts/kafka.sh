#!/usr/bin/env bash
# Run a real Apache Kafka (KRaft mode, no ZooKeeper, no Docker) for confgate's
# tests and CI. Kafka itself comes from Maven Central through scripts/kafka/pom.xml
# and is cached in .cache/kafka/<version>/libs; only java (17+) and mvn are needed.
#
# Usage: scripts/kafka.sh COMMAND [options]
#   up [--nodes 1|3] [--port P|auto] [--timeout S]
#                       fetch Kafka if needed, kill a cluster still running
#                       from .cache/kafka/run and wipe it, format and start a
#                       fresh cluster, wait until every broker is registered
#                       and unfenced, then print ONE line to stdout:
#                         CONFGATE_KAFKA_BROKERS=127.0.0.1:P[,127.0.0.1:P+10,...]
#                       Node n listens on 127.0.0.1:P+10*(n-1) (PLAINTEXT) and
#                       on the next port (CONTROLLER). The default, auto,
#                       picks a random P whose ports all bind on 127.0.0.1
#                       now, in 10000 up to the start of the kernel's
#                       ephemeral range (ip_local_port_range: clients' own
#                       sockets take ports from it), and picks again (up to
#                       5 times) when a broker still loses a port to another
#                       process before it binds. A fixed P fails if a port is
#                       taken. The cluster keeps its ports: start-node
#                       restarts a node on the same ones.
#                       Progress goes to stderr. Use it as:
#                         out=$(scripts/kafka.sh up --nodes 3) && eval "export $out"
#   down                stop every node (SIGTERM, 30 s, then SIGKILL); idempotent
#   status              one line per node; exit 0 only if every node runs
#   env                 print the CONFGATE_KAFKA_BROKERS line of the current cluster
#   logs [N] [-f] [-n LINES]
#                       tail the server.log of node N (default: all nodes)
#   stop-node N         SIGTERM node N (controlled shutdown), wait for it to exit
#   kill-node N         SIGKILL node N
#   start-node N [--timeout S]
#                       restart node N on its existing data, wait until it is
#                       registered again
#   fetch               only download Kafka into the cache
#   tool CLASS [ARGS]   run a Kafka CLI class with the cached classpath, e.g.
#                         scripts/kafka.sh tool TopicCommand --bootstrap-server "$CONFGATE_KAFKA_BROKERS" --list
#                       (a CLASS without a dot means org.apache.kafka.tools.CLASS)
#
# Environment: CONFGATE_KAFKA_PORT (default for --port, auto if unset),
# CONFGATE_KAFKA_TIMEOUT (default 90 s), CONFGATE_KAFKA_PROPS (extra "key=value"
# broker settings, separated by whitespace, appended to every node's
# server.properties), CONFGATE_KAFKA_JVM_OPTS (extra JVM flags for the brokers),
# CONFGATE_KAFKA_RUN_DIR (default .cache/kafka/run; one cluster per run
# directory, so another one lets a second cluster run), JAVA_HOME.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

POM=$ROOT/scripts/kafka/pom.xml
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
CACHE=$ROOT/.cache/kafka
LIBS=$CACHE/$KAFKA_VERSION/libs
RUN=${CONFGATE_KAFKA_RUN_DIR:-$CACHE/run}
STATE=$RUN/cluster.env
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
MAIN=kafka.Kafka

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
since() { # since START_MS -> "12.3s"
  local ms=$(($(now_ms) - $1))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

usage() {
  sed -n '2,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# Serialize the commands that start or stop nodes (fd 9, closed for the brokers).
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$RUN")"
  exec 9>"$RUN.lock"
  flock -w 300 9 || die "another scripts/kafka.sh still holds $RUN.lock"
}

# ---------------------------------------------------------------- fetch

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+ on PATH or JAVA_HOME)"
  local v major
  v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  major=${v%%.*}
  is_uint "${major:-x}" || die "cannot parse java version from: $("$JAVA" -version 2>&1 | head -n1)"
  ((major >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17+, found $v"
}

fetch() {
  local want
  want=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $LIBS/.complete && $(cat "$LIBS/.complete") == "$want" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH (needed once to fetch Kafka)"
  log "fetching Kafka $KAFKA_VERSION from Maven Central into ${LIBS#"$ROOT"/} ..."
  local t0 tmp
  t0=$(now_ms)
  tmp=$LIBS.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # (Debian's Maven 3.8 prints bare ANSI resets even in batch mode: strip them)
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 </dev/null |
    sed -e $'s/\x1b\\[[0-9;]*m//g' >&2; then
    rm -rf "$tmp"
    die "mvn could not fetch Kafka $KAFKA_VERSION (see the output above)"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "fetch did not produce kafka_2.13-$KAFKA_VERSION.jar"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  echo "$want" >"$LIBS/.complete"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(since "$t0")"
}

# ---------------------------------------------------------------- layout

# Set by load_state / up: NODES PORT HEAP JVM_OPTS CLUSTER_ID
load_state() {
  [[ -f $STATE ]] || return 1
  # shellcheck source=/dev/null
  source "$STATE"
}

need_state() {
  load_state || die "no cluster: run 'scripts/kafka.sh up' first"
}

node_dir() { echo "$RUN/node$1"; }
broker_port() { echo $((PORT + ($1 - 1) * 10)); }
controller_port() { echo $((PORT + ($1 - 1) * 10 + 1)); }

brokers() {
  local n out=""
  for ((n = 1; n <= NODES; n++)); do
    out+="${out:+,}127.0.0.1:$(broker_port "$n")"
  done
  echo "$out"
}

check_node_arg() {
  if ! is_uint "${1:-x}" || (($1 < 1 || $1 > NODES)); then
    die "node must be 1..$NODES, got '${1:-}'"
  fi
}

# ---------------------------------------------------------------- processes

node_pid() { # prints the PID of node N if it is running
  local dir pid cmd
  dir=$(node_dir "$1")
  [[ -f $dir/pid ]] || return 1
  pid=$(<"$dir/pid")
  is_uint "$pid" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # guard against a recycled PID (and zombies, whose cmdline is empty)
  if [[ -r /proc/$pid/cmdline ]]; then
    cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || true
  else
    cmd=$(ps -p "$pid" -o args= 2>/dev/null || true)
  fi
  [[ $cmd == *"$dir/server.properties"* ]] || return 1
  echo "$pid"
}

start_node() {
  local n=$1 dir
  dir=$(node_dir "$n")
  rm -f "$dir/pid"
  server_starts "$n" >"$dir/starts-before"
  local -a opts heap extra
  read -r -a heap <<<"$HEAP"
  read -r -a extra <<<"${JVM_OPTS:-}"
  # C1 only (TieredStopAtLevel=1): a broker then needs ~40% less CPU to start,
  # which matters with 3 JVMs on 2 cores; test traffic does not need C2.
  # JVM_OPTS (CONFGATE_KAFKA_JVM_OPTS) come last, so they can override these.
  opts=(
    -server "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.xml" -Dkafka.logs.dir="$dir"
    "${extra[@]}"
    -cp "$LIBS/*" "$MAIN" "$dir/server.properties"
  )
  # The inner shell writes its own PID, then execs java under it, so the PID file
  # names the java process whether or not setsid had to fork.
  # shellcheck disable=SC2016
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-node "$dir/pid" \
    "$JAVA" "${opts[@]}" >>"$dir/console.log" 2>&1 </dev/null 9>&- &
  disown "$!" 2>/dev/null || true # no "Killed" job notice from this shell
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $dir/pid ]] && return 0
    sleep 0.05
  done
  die "node $n did not start (no PID file)"
}

# stop_nodes SIGNAL N... : signal the nodes, wait up to 30 s, then SIGKILL.
stop_nodes() {
  local sig=$1 n pid i
  shift
  local -a pids=()
  for n in "$@"; do
    if pid=$(node_pid "$n"); then
      kill "-$sig" "$pid" 2>/dev/null || true
      pids+=("$n:$pid")
    fi
  done
  ((${#pids[@]})) || return 0
  local alive
  for ((i = 0; i < 300; i++)); do
    alive=0
    for n in "$@"; do node_pid "$n" >/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for n in "$@"; do
    if pid=$(node_pid "$n"); then
      log "node $n (pid $pid) still running after 30s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for n in "$@"; do node_pid "$n" >/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for n in "$@"; do rm -f "$(node_dir "$n")/pid"; done
}

all_node_numbers() { # every nodeN directory present under the run dir
  local d
  for d in "$RUN"/node*; do
    [[ -d $d && ${d##*/node} =~ ^[0-9]+$ ]] && echo "${d##*/node}"
  done
  return 0
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# server_starts N: how often node N's server.log says it started (its
# listeners are bound by then); node_started N: once more than before the
# last start_node.
server_starts() {
  local c
  c=$(grep -cs 'Kafka Server started' "$(node_dir "$1")/server.log") || true
  echo "${c:-0}"
}
node_started() {
  local before
  before=$(cat "$(node_dir "$1")/starts-before" 2>/dev/null) || before=0
  (($(server_starts "$1") > before))
}

# ---------------------------------------------------------------- ports

# bind_ports NODES LO HI TRIES: prints a base port P in LO..HI for which the
# ports of every node (P+10*(n-1) and the next; all within LO..HI) bind on
# 127.0.0.1 together right now, trying up to TRIES random P; reports each
# taken port on stderr ("taken N") and fails if no P fits. The sockets set
# SO_REUSEADDR like Kafka's own listeners, so a port whose old connections
# linger in TIME_WAIT (a node just stopped) counts as free, as it does for
# Kafka. A connect test would miss ports that are bound but not listening,
# or held by another program's client socket. Java, because the brokers
# need it anyway (bash cannot bind); a single-file source run takes ~0.7 s.
bind_ports() {
  local src=$RUN/BindPorts.java
  mkdir -p "$RUN"
  cat >"$src" <<'EOF'
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

public class BindPorts {
  public static void main(String[] a) throws IOException {
    int nodes = Integer.parseInt(a[0]), lo = Integer.parseInt(a[1]), hi = Integer.parseInt(a[2]);
    int tries = Integer.parseInt(a[3]), span = 10 * (nodes - 1) + 1;
    if (hi - span < lo) {
      System.err.println("no room for " + nodes + " node(s) in ports " + lo + ".." + hi);
      System.exit(1);
    }
    InetAddress lb = InetAddress.getByName("127.0.0.1");
    for (int i = 0; i < tries; i++) {
      int p = ThreadLocalRandom.current().nextInt(lo, hi - span + 1);
      List<ServerSocket> held = new ArrayList<>();
      int taken = -1;
      try {
        for (int q = p; q <= p + span && taken < 0; q += (q - p) % 10 == 0 ? 1 : 9) {
          ServerSocket s = new ServerSocket();
          held.add(s);
          s.setReuseAddress(true);
          try {
            s.bind(new InetSocketAddress(lb, q));
          } catch (IOException e) {
            taken = q;
          }
        }
      } finally {
        for (ServerSocket s : held) s.close();
      }
      if (taken < 0) {
        System.out.println(p);
        return;
      }
      System.err.println("taken " + taken);
    }
    System.exit(1);
  }
}
EOF
  "$JAVA" -Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true "$src" "$@"
}

# auto_port_range: prints "LO HI", the ports auto may use: from 10000 (clear
# of the usual services' ports) up to the start of the kernel's ephemeral
# range, from which every client socket on this machine draws its local
# port; a broker that finds its port held by one cannot start. Above the
# range when the range starts too low.
auto_port_range() {
  local elo=32768 ehi=60999
  if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
    read -r elo ehi </proc/sys/net/ipv4/ip_local_port_range
  fi
  if ((elo - 1 >= 10000 + 1000)); then
    echo "10000 $((elo - 1))"
  elif ((ehi + 1 <= 65535 - 1000)); then
    echo "$((ehi + 1)) 65535"
  else
    die "the ephemeral port range $elo..$ehi leaves no room for --port auto: pass --port P"
  fi
}

# bind_failed: a node of this run dir exited because a port was taken.
bind_failed() {
  grep -qs -e 'Address already in use' -e 'BindException' "$RUN"/node*/server.log "$RUN"/node*/console.log
}

# ---------------------------------------------------------------- tools

# tool_cmd CLASS: sets TOOL to the command line that runs a Kafka CLI main class
tool_cmd() {
  local cls=$1
  [[ $cls == *.* ]] || cls=org.apache.kafka.tools.$cls
  TOOL=("$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true
    -Dlog4j2.shutdownHookEnabled=false
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/tools-log4j2.xml"
    -cp "$LIBS/*" "$cls")
}

tool_java() { # tool_java CLASS ARGS...
  tool_cmd "$1"
  shift
  "${TOOL[@]}" "$@"
}

# Prints the ids of the brokers that answer and are unfenced, one per line.
# BrokerApiVersionsCommand asks the cluster for its metadata and then sends an
# ApiVersions request to each broker listed there.
registered_brokers() { # registered_brokers BOOTSTRAP TIMEOUT_S
  local out
  tool_cmd BrokerApiVersionsCommand
  out=$(timeout "$2" "${TOOL[@]}" --bootstrap-server "$1" \
    --command-config "$ROOT/scripts/kafka/tools.properties" 2>&1) || true
  echo "$out" >"$RUN/last-check.log"
  sed -n 's/^127\.0\.0\.1:[0-9]* (id: \([0-9]*\) .*isFenced: false) -> (.*/\1/p' <<<"$out" | sort
}

print_failure() {
  local n dir
  for n in $(all_node_numbers); do
    dir=$(node_dir "$n")
    if [[ -s $dir/console.log ]]; then
      log "---- node $n console.log (last 20 lines)"
      tail -n 20 "$dir/console.log" >&2
    fi
    if [[ -f $dir/server.log ]]; then
      log "---- node $n server.log (last 40 lines)"
      tail -n 40 "$dir/server.log" >&2
    fi
  done
  if [[ -s $RUN/last-check.log ]]; then
    log "---- last readiness check output (last 20 lines)"
    tail -n 20 "$RUN/last-check.log" >&2
  fi
}

# wait_ready DEADLINE_S WANT_IDS... : wait until each node in WANT_IDS runs and
# is a registered, unfenced broker.
wait_ready() {
  local timeout_s=$1 t0 n got="" want
  shift
  want=$(printf '%s\n' "$@" | sort)
  t0=$(now_ms)
  while true; do
    for n in "$@"; do
      node_pid "$n" >/dev/null || {
        log "node $n exited during startup"
        return 1
      }
    done
    # Only a node that logged its start holds its ports: until then another
    # process may answer on them (another Kafka even, which would then pass
    # the registration check below).
    local all_open=1
    for n in "$@"; do
      node_started "$n" && port_open "$(broker_port "$n")" || all_open=0
    done
    if ((all_open)); then
      local left=$((timeout_s - ($(now_ms) - t0) / 1000))
      got=$(registered_brokers "$(brokers)" $((left < 5 ? 5 : left)))
      # every wanted id must be present
      if [[ -z $(comm -23 <(echo "$want") <(echo "$got")) ]]; then
        return 0
      fi
    fi
    if (($(now_ms) - t0 > timeout_s * 1000)); then
      got=$(paste -sd' ' <<<"$got")
      log "timed out after ${timeout_s}s (registered brokers: ${got:-none}, wanted: $*)"
      return 1
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- config

rand_uuid() { # a Kafka Uuid: 16 random bytes, base64url without padding
  local u
  while true; do
    u=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $u == -* ]] || break # the CLI would read a leading '-' as an option
  done
  echo "$u"
}

write_node_config() {
  local n=$1 dir rf isr voters="" m
  dir=$(node_dir "$n")
  for ((m = 1; m <= NODES; m++)); do
    voters+="${voters:+,}127.0.0.1:$(controller_port "$m")"
  done
  if ((NODES == 1)); then rf=1 isr=1; else rf=3 isr=2; fi
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# generated by scripts/kafka.sh up --nodes $NODES --port $PORT
process.roles=broker,controller
node.id=$n
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$voters
log.dirs=$dir/data

num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=4
num.partitions=1
default.replication.factor=$rf
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
log.cleaner.backoff.ms=1000
EOF
  local kv
  for kv in ${CONFGATE_KAFKA_PROPS:-}; do
    [[ $kv == *=* ]] || die "CONFGATE_KAFKA_PROPS: '$kv' is not key=value"
    echo "$kv" >>"$dir/server.properties"
  done
  cat >"$dir/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- shutdownHook="disable": keep logging until Kafka's own shutdown is done -->
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName="$dir/server.log" filePattern="$dir/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="100MB"/>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
EOF
}

format_nodes() {
  local n dir pids=() failed=0
  local -a quorum
  if ((NODES == 1)); then
    quorum=(--standalone)
  else
    local ctl=""
    for ((n = 1; n <= NODES; n++)); do
      ctl+="${ctl:+,}$n@127.0.0.1:$(controller_port "$n"):$(rand_uuid)"
    done
    quorum=(--initial-controllers "$ctl")
  fi
  for ((n = 1; n <= NODES; n++)); do
    dir=$(node_dir "$n")
    tool_java kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" \
      --config "$dir/server.properties" "${quorum[@]}" >"$dir/format.log" 2>&1 &
    pids+=($!)
  done
  for ((n = 1; n <= NODES; n++)); do
    if ! wait "${pids[n - 1]}"; then
      log "formatting node $n failed:"
      cat "$(node_dir "$n")/format.log" >&2
      failed=1
    fi
  done
  ((failed == 0)) || die "storage format failed"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local nodes=1 port=${CONFGATE_KAFKA_PORT:-auto} timeout_s=${CONFGATE_KAFKA_TIMEOUT:-90}
  while (($#)); do
    case $1 in
      --nodes) nodes=${2:-}; shift 2 || usage ;;
      --nodes=*) nodes=${1#*=}; shift ;;
      --port) port=${2:-}; shift 2 || usage ;;
      --port=*) port=${1#*=}; shift ;;
      --timeout) timeout_s=${2:-}; shift 2 || usage ;;
      --timeout=*) timeout_s=${1#*=}; shift ;;
      *) usage ;;
    esac
  done
  [[ $nodes == 1 || $nodes == 3 ]] || die "--nodes must be 1 or 3"
  if [[ $port != auto ]] && { ! is_uint "$port" || ((port < 1024 || port > 65500)); }; then
    die "--port must be auto or 1024..65500"
  fi
  is_uint "$timeout_s" || die "--timeout must be seconds"

  check_java
  fetch
  # a fresh cluster every time: kill whatever still runs from this run dir (its
  # data is wiped next, so a clean shutdown would only cost time), wipe it
  local old n running=""
  old=$(all_node_numbers)
  for n in $old; do node_pid "$n" >/dev/null && running+=" $n"; done
  if [[ -n $running ]]; then
    log "killing node(s)$running of the previous cluster"
    # shellcheck disable=SC2086
    stop_nodes KILL $running
  fi
  local t0
  t0=$(now_ms)
  NODES=$nodes
  if ((NODES == 1)); then HEAP="-Xmx512m -Xms256m"; else HEAP="-Xmx384m -Xms192m"; fi
  JVM_OPTS=${CONFGATE_KAFKA_JVM_OPTS:-}
  local lo hi attempt attempts=1 ids
  ids=$(seq 1 "$NODES")
  if [[ $port == auto ]]; then
    read -r lo hi <<<"$(auto_port_range)"
    attempts=5
  else
    lo=$port hi=$((port + 10 * (NODES - 1) + 1))
  fi
  for ((attempt = 1; ; attempt++)); do
    rm -rf "$RUN"
    mkdir -p "$RUN"
    if [[ $port == auto ]]; then
      PORT=$(bind_ports "$NODES" "$lo" "$hi" 100 2>"$RUN/ports.log") ||
        die "no free ports for $NODES node(s) in $lo..$hi after 100 tries: $(tail -n 3 "$RUN/ports.log")"
    else
      PORT=$(bind_ports "$NODES" "$lo" "$hi" 1 2>"$RUN/ports.log") ||
        die "port $(sed -n 's/^taken //p' "$RUN/ports.log") is already in use on 127.0.0.1 (another Kafka? try --port auto) $(grep -v '^taken' "$RUN/ports.log")"
    fi
    CLUSTER_ID=$(rand_uuid)
    {
      printf 'NODES=%q\n' "$NODES"
      printf 'PORT=%q\n' "$PORT"
      printf 'HEAP=%q\n' "$HEAP"
      printf 'JVM_OPTS=%q\n' "$JVM_OPTS"
      printf 'CLUSTER_ID=%q\n' "$CLUSTER_ID"
      printf 'KAFKA_VERSION=%q\n' "$KAFKA_VERSION"
    } >"$STATE"
    for ((n = 1; n <= NODES; n++)); do write_node_config "$n"; done
    log "formatting $NODES node(s), cluster id $CLUSTER_ID"
    format_nodes
    log "starting Kafka $KAFKA_VERSION: $NODES node(s) on $(brokers)"
    for ((n = 1; n <= NODES; n++)); do start_node "$n"; done
    # shellcheck disable=SC2086
    wait_ready "$timeout_s" $ids && break
    # Another process took a port between the check and the broker's bind:
    # with auto, start over on other ports.
    if [[ $port == auto ]] && ((attempt < attempts)) && bind_failed; then
      log "a port of $(brokers) was taken before the broker bound it; picking other ports ($attempt/$attempts)"
      # shellcheck disable=SC2086
      stop_nodes KILL $ids
      continue
    fi
    print_failure
    # shellcheck disable=SC2086
    stop_nodes KILL $ids
    die "Kafka did not come up (logs kept in ${RUN#"$ROOT"/})"
  done
  log "cluster up in $(since "$t0") ($NODES node(s), all brokers registered)"
  echo "CONFGATE_KAFKA_BROKERS=$(brokers)"
}

cmd_down() {
  (($# == 0)) || usage
  local nodes
  nodes=$(all_node_numbers)
  [[ -n $nodes ]] || return 0
  local t0 n running=""
  t0=$(now_ms)
  for n in $nodes; do node_pid "$n" >/dev/null && running+=" $n"; done
  # shellcheck disable=SC2086
  stop_nodes TERM $nodes
  if [[ -n $running ]]; then log "stopped node(s)$running in $(since "$t0")"; fi
}

cmd_status() {
  (($# == 0)) || usage
  if ! load_state; then
    echo "no cluster (run: scripts/kafka.sh up)"
    return 1
  fi
  local n pid up=0
  for ((n = 1; n <= NODES; n++)); do
    if pid=$(node_pid "$n"); then
      echo "node $n: running  pid $pid  127.0.0.1:$(broker_port "$n")"
      up=$((up + 1))
    else
      echo "node $n: stopped  127.0.0.1:$(broker_port "$n")"
    fi
  done
  echo "$up/$NODES node(s) running; CONFGATE_KAFKA_BROKERS=$(brokers)"
  ((up == NODES))
}

cmd_env() {
  (($# == 0)) || usage
  need_state
  echo "CONFGATE_KAFKA_BROKERS=$(brokers)"
}

cmd_logs() {
  local follow=0 lines=100 node=""
  while (($#)); do
    case $1 in
      -f | --follow) follow=1; shift ;;
      -n | --lines) lines=${2:-}; shift 2 || usage ;;
      *) node=$1; shift ;;
    esac
  done
  is_uint "$lines" || die "-n needs a number"
  need_state
  local -a files=()
  if [[ -n $node ]]; then
    check_node_arg "$node"
    files=("$(node_dir "$node")/server.log")
  else
    local n
    for ((n = 1; n <= NODES; n++)); do files+=("$(node_dir "$n")/server.log"); done
  fi
  if ((follow)); then
    exec tail -n "$lines" -F "${files[@]}"
  fi
  tail -n "$lines" "${files[@]}"
}

cmd_stop_node() { # SIGNAL N
  local sig=$1
  shift
  (($# == 1)) || usage
  need_state
  check_node_arg "$1"
  local t0
  t0=$(now_ms)
  node_pid "$1" >/dev/null || {
    log "node $1 is not running"
    return 0
  }
  stop_nodes "$sig" "$1"
  log "node $1 stopped (SIG$sig) in $(since "$t0")"
}

cmd_start_node() {
  local n="" timeout_s=${CONFGATE_KAFKA_TIMEOUT:-90}
  while (($#)); do
    case $1 in
      --timeout) timeout_s=${2:-}; shift 2 || usage ;;
      --timeout=*) timeout_s=${1#*=}; shift ;;
      *) [[ -z $n ]] || usage; n=$1; shift ;;
    esac
  done
  is_uint "$timeout_s" || die "--timeout must be seconds"
  need_state
  check_node_arg "$n"
  [[ -f $(node_dir "$n")/data/meta.properties ]] || die "node $n has no formatted data; run 'up' first"
  if node_pid "$n" >/dev/null; then
    log "node $n is already running"
    return 0
  fi
  check_java
  local t0
  t0=$(now_ms)
  # The node's ports were free when the cluster started; another process
  # may hold one now, and then the node cannot come back on them.
  bind_ports 1 "$(broker_port "$n")" "$(controller_port "$n")" 1 >/dev/null 2>"$RUN/ports.log" ||
    die "node $n cannot restart: port $(sed -n 's/^taken //p' "$RUN/ports.log") of 127.0.0.1:$(broker_port "$n") is now held by another process"
  start_node "$n"
  if ! wait_ready "$timeout_s" "$n"; then
    log "---- node $n server.log (last 40 lines)"
    tail -n 40 "$(node_dir "$n")/server.log" >&2 || true
    die "node $n did not come back"
  fi
  log "node $n up and registered in $(since "$t0")"
}

cmd_tool() {
  (($# >= 1)) || usage
  check_java
  fetch
  tool_java "$@"
}

main() {
  (($# >= 1)) || usage
  local cmd=$1
  shift
  case $cmd in
    up) lock; cmd_up "$@" ;;
    down) lock; cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    logs) cmd_logs "$@" ;;
    stop-node) lock; cmd_stop_node TERM "$@" ;;
    kill-node) lock; cmd_stop_node KILL "$@" ;;
    start-node) lock; cmd_start_node "$@" ;;
    fetch) (($# == 0)) || usage; check_java; fetch ;;
    tool) cmd_tool "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
