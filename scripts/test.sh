#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: a real Apache Kafka on
# loopback (scripts/kafka.sh), every Go test with -race (those that take their
# broker from testkit.StartKafka on that Kafka), then the broker fault tests,
# which start and break clusters of their own.
set -euo pipefail
cd "$(dirname "$0")/.."

# One run directory per suite (named by this shell's PID), so suites run at
# the same time in this tree never stop each other's Kafka.
suite_dir=.cache/kafka/run-suite-$$
cleanup() {
  local rc=$?
  CONFGATE_KAFKA_RUN_DIR=$suite_dir scripts/kafka.sh down >/dev/null 2>&1 || true
  if ((rc == 0)); then
    rm -rf "$suite_dir" "$suite_dir.lock"
  elif [[ -d $suite_dir ]]; then
    echo "Kafka's logs are kept in $suite_dir" >&2
  fi
}
trap cleanup EXIT

# A suite killed before its cleanup ran leaves its brokers running (they run
# under setsid): stop those of suites whose process is gone.
for d in .cache/kafka/run-suite-*; do
  pid=${d##*-}
  [[ -d $d && $pid =~ ^[0-9]+$ ]] || continue
  ps -p "$pid" >/dev/null 2>&1 && continue
  echo "== stopping what is left of an earlier suite's Kafka ($d)" >&2
  CONFGATE_KAFKA_RUN_DIR=$d scripts/kafka.sh down >&2 || true
  rm -rf "$d" "$d.lock"
done

# Debian packages the suite runs: haproxy (the failover tests' load
# balancer), redis-server (the load tool's Redis peer) and chromium (the
# console's tests drive it headless; they must not skip here).
# scripts/alerts-test.sh installs prometheus (for promtool) itself.
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
if ((${#missing[@]})); then
  echo "== installing ${missing[*]} from Debian" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "${missing[*]} missing and this is not root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Free ports, picked by kafka.sh: other Kafkas and gateways may run here.
echo "== Apache Kafka (single node, on free loopback ports)" >&2
out=$(CONFGATE_KAFKA_RUN_DIR=$suite_dir scripts/kafka.sh up --port auto)
eval "export $out"
export CONFGATE_REQUIRE_BROWSER=1
echo "CONFGATE_KAFKA_BROKERS=$CONFGATE_KAFKA_BROKERS" >&2

echo "== go test -race ./... (integration tests on Apache Kafka)" >&2
go test -race -count=1 -timeout 20m ./...

echo "== fuzz: every fuzz target for a few seconds (make fuzz runs them longer)" >&2
./scripts/fuzz.sh 3

echo "== failover: confgate processes behind HAProxy, chaos, history checker" >&2
go test -race -count=1 -timeout 20m -tags kafkafaults -v ./internal/failover

echo "== polyglot clients (Python grpcio, Node grpc-js, grpcurl)" >&2
./scripts/polyglot-test.sh

echo "== deploy: the Helm chart (helm lint, helm template decoded strictly into Kubernetes types)" >&2
./scripts/deploy-test.sh

echo "== monitoring: promtool check and test the alert rules; the dashboard's and rules' queries against the gateway's real metrics" >&2
./scripts/alerts-test.sh

echo "== bench/peers: the load tool's etcd, NATS, Redis and confgate targets (a module of its own)" >&2
(cd bench/peers && go test -count=1 -timeout 10m ./...)

echo "== broker fault tests (their own single-node and three-node clusters)" >&2
go test -race -count=1 -timeout 20m -tags kafkafaults -v ./internal/brokerfaults
