#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: a real Apache Kafka on
# loopback (scripts/kafka.sh), every Go test against it with -race, then the
# broker fault tests, which start and break clusters of their own.
set -euo pipefail
cd "$(dirname "$0")/.."

suite_dir=.cache/kafka/run-suite
cleanup() {
  CONFGATE_KAFKA_RUN_DIR=$suite_dir scripts/kafka.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

if ! command -v haproxy >/dev/null; then
  echo "== installing haproxy from Debian (the failover tests' load balancer)" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "haproxy is missing and this is not root: apt-get install haproxy" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi

echo "== Apache Kafka (single node, 127.0.0.1:19092)" >&2
out=$(CONFGATE_KAFKA_RUN_DIR=$suite_dir scripts/kafka.sh up --port 19092)
eval "export $out"
echo "CONFGATE_KAFKA_BROKERS=$CONFGATE_KAFKA_BROKERS" >&2

echo "== go test -race ./... (integration tests on Apache Kafka)" >&2
go test -race -count=1 -timeout 20m ./...

echo "== failover: confgate processes behind HAProxy, chaos, history checker" >&2
go test -race -count=1 -timeout 20m -tags kafkafaults -v ./internal/failover

echo "== polyglot clients (Python grpcio, Node grpc-js, grpcurl)" >&2
./scripts/polyglot-test.sh

echo "== broker fault tests (their own single-node and three-node clusters)" >&2
go test -race -count=1 -timeout 20m -tags kafkafaults -v ./internal/brokerfaults
