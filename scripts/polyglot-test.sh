#!/usr/bin/env bash
# Tests the Python and Node clients (clients/python, clients/node) with real
# grpcio and @grpc/grpc-js against a running gateway, plus reflection and
# health with a pinned grpcurl.
#
#   scripts/polyglot-test.sh
#
# Needs Go, CPython 3.10 and 3.13 with venv and pip (pyenv's, or python3.10
# and python3.13 on PATH; CONFGATE_PY_OLDEST and CONFGATE_PY_NEWEST name
# others), Node 20+ with npm, and access to the Go module proxy, PyPI and
# npm. Everything it installs goes under .cache/ (git-ignored) and
# clients/node/node_modules; every version is pinned
# (clients/python/requirements-test*.txt, clients/node/package-lock.json,
# GRPCURL_VERSION below).
#
# The Python client is tested twice: on the oldest CPython it supports with
# the lowest versions of its dependencies (requirements-test-min.txt), and
# on the newest with the newest pins (requirements-test.txt), where mypy
# --strict also checks src/confgate.
#
# The gateway is clients/testgateway: franz-go's in-process Kafka broker, a
# store and a gateway, plus a TCP proxy the tests cut to simulate a lost
# connection, all on 127.0.0.1 ports the kernel picks. Every step is bounded
# in time; the gateway is stopped on exit, whatever happens. Exits non-zero
# on any failure, including a test runner that ran no test.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

GRPCURL_VERSION=v1.9.4

cache="$root/.cache"
bin="$cache/bin"
work="$(mktemp -d "${TMPDIR:-/tmp}/confgate-polyglot.XXXXXX")"
gw_pid=""

cleanup() {
  local rc=$?
  if [[ -n "$gw_pid" ]] && kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  if ((rc != 0)) && [[ -s "$work/gateway.log" ]]; then
    echo "== gateway log (last 40 lines)" >&2
    tail -n 40 "$work/gateway.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { echo "== $*"; }
die() { echo "polyglot-test: $*" >&2; exit 1; }
stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
((node_major >= 20)) || die "Node 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))"

step "build the test gateway and the CLI"
mkdir -p "$bin"
timeout 600 go build -o "$bin/testgateway" ./clients/testgateway
timeout 600 go build -o "$bin/confgate" ./cmd/confgate

step "grpcurl $GRPCURL_VERSION"
if [[ "$(cat "$bin/.grpcurl-version" 2>/dev/null)" != "$GRPCURL_VERSION" || ! -x "$bin/grpcurl" ]]; then
  GOBIN="$bin" timeout 600 go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  echo "$GRPCURL_VERSION" >"$bin/.grpcurl-version"
fi

step "python: install the client and the test tools"
# find_python 3.10: pyenv's newest 3.10.x, else python3.10 on PATH.
find_python() {
  local p
  for p in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".* 2>/dev/null | sort -V -r) ; do
    [[ -x "$p/bin/python3" ]] && { echo "$p/bin/python3"; return 0; }
  done
  command -v "python$1"
}
py_oldest="${CONFGATE_PY_OLDEST:-$(find_python 3.10 || true)}"
py_newest="${CONFGATE_PY_NEWEST:-$(find_python 3.13 || true)}"
[[ -n "$py_oldest" ]] || die "CPython 3.10 not found (pyenv or python3.10 on PATH; or set CONFGATE_PY_OLDEST)"
[[ -n "$py_newest" ]] || die "CPython 3.13 not found (pyenv or python3.13 on PATH; or set CONFGATE_PY_NEWEST)"
# py_venv DIR PYTHON REQUIREMENTS: a venv with exactly the pinned packages,
# rebuilt when the pins or the interpreter change.
py_venv() {
  local dir=$1 py=$2 req=$3 want
  want="$(stamp "$req") $("$py" -c 'import sys; print(sys.version.split()[0])')"
  if [[ "$(cat "$dir/.stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$dir"
    "$py" -m venv "$dir"
    timeout 600 "$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$req"
    echo "$want" >"$dir/.stamp"
  fi
}
pyvenv_min="$cache/polyglot/py-oldest-min"
pyvenv="$cache/polyglot/py-newest"
py_venv "$pyvenv_min" "$py_oldest" clients/python/requirements-test-min.txt
py_venv "$pyvenv" "$py_newest" clients/python/requirements-test.txt
# The package itself, as a user installs it (a wheel built by the pinned
# hatchling), rebuilt every run so the tests see the working tree.
timeout 600 "$pyvenv/bin/pip" wheel --quiet --disable-pip-version-check --no-deps -w "$work/wheel" ./clients/python
for v in "$pyvenv_min" "$pyvenv"; do
  timeout 600 "$v/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$work"/wheel/confgate_client-*.whl
  "$v/bin/pip" check --disable-pip-version-check >/dev/null || die "python dependencies are inconsistent in $v: $("$v/bin/pip" check)"
done
echo "oldest: $("$pyvenv_min/bin/python" --version) with the lowest dependency versions; newest: $("$pyvenv/bin/python" --version)"

step "python: mypy --strict src/confgate"
(cd clients/python && timeout 300 "$pyvenv/bin/python" -m mypy --strict --cache-dir "$cache/polyglot/mypy-cache") ||
  die "mypy --strict found errors in clients/python/src/confgate"

step "node: install and build the client"
nodestamp="$(stamp clients/node/package-lock.json)"
if [[ "$(cat clients/node/node_modules/.confgate-stamp 2>/dev/null)" != "$nodestamp" ]]; then
  (cd clients/node && timeout 600 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$nodestamp" >clients/node/node_modules/.confgate-stamp
fi
(cd clients/node && rm -rf dist && timeout 300 npm run --silent build)
# The Node suite also packs the client and installs the tarball in a
# project of its own with `npm ci --prefer-offline`, from the cache the
# install above filled (test/package.test.js).
# The Go client as a reader and writer of state files (clients/gostatefile),
# for the Python and Node tests that check the clients read each other's
# (test_statefile_go.py, test/crosslang.test.js).
timeout 600 go build -o "$bin/gostatefile" ./clients/gostatefile
export CONFGATE_GOSTATEFILE="$bin/gostatefile"

step "start the test gateway"
"$bin/testgateway" -addr-file "$work/addrs.json" >"$work/gateway.out" 2>"$work/gateway.log" &
gw_pid=$!
for _ in $(seq 600); do
  [[ -s "$work/addrs.json" ]] && break
  kill -0 "$gw_pid" 2>/dev/null || die "the test gateway exited before it was ready"
  sleep 0.1
done
[[ -s "$work/addrs.json" ]] || die "the test gateway was not ready within 60s"
addr_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/addrs.json" "$1"; }
export CONFGATE_ADDR CONFGATE_PROXY_ADDR CONFGATE_CONTROL_URL CONFGATE_BIN="$bin/confgate"
CONFGATE_ADDR="$(addr_of grpc)"
CONFGATE_PROXY_ADDR="$(addr_of proxy)"
CONFGATE_CONTROL_URL="$(addr_of control)"
echo "gateway $CONFGATE_ADDR, proxy $CONFGATE_PROXY_ADDR"

step "grpcurl: reflection and health"
grpcurl() { timeout 30 "$bin/grpcurl" -plaintext -max-time 10 "$@"; }
services="$(grpcurl "$CONFGATE_ADDR" list)"
echo "$services"
grep -qx 'confgate.v1.ConfigService' <<<"$services" || die "reflection does not list confgate.v1.ConfigService"
desc="$(grpcurl "$CONFGATE_ADDR" describe confgate.v1.ConfigService)"
echo "$desc"
for m in Subscribe GetSnapshot Get Put Delete; do
  grep -q "rpc $m " <<<"$desc" || die "reflection does not describe rpc $m"
done
grep -q 'returns ( stream .confgate.v1.SubscribeResponse )' <<<"$desc" || die "reflection: Subscribe is not server-streaming"
grpcurl "$CONFGATE_ADDR" describe confgate.v1.SnapshotEnd | grep -q 'bytes digest = 5;' || die "reflection does not describe messages"
for svc in "" confgate.v1.ConfigService; do
  h="$(grpcurl -d "{\"service\":\"$svc\"}" "$CONFGATE_ADDR" grpc.health.v1.Health/Check)"
  grep -q '"status": "SERVING"' <<<"$h" || die "health of \"$svc\" is not SERVING: $h"
done
echo "reflection lists and describes confgate.v1.ConfigService; health: SERVING"

failed=0
py_pass=0 py_fail=0 node_pass=0 node_fail=0

# run_pytest LABEL VENV: the Python suite (docs/clients.md's examples
# included) in one venv; adds to py_pass and py_fail.
py_summaries=()
run_pytest() {
  local label=$1 venv=$2 rc summary pass fail
  step "python ($label): pytest"
  set +e
  (cd clients/python && timeout 600 "$venv/bin/python" -m pytest -p no:cacheprovider -ra -q tests) | tee "$work/pytest-$label.out"
  rc=${PIPESTATUS[0]}
  set -e
  summary="$(grep -E '^=*\s*[0-9]+ (passed|failed)|^=*\s*no tests ran' "$work/pytest-$label.out" | tail -n 1 || true)"
  pass="$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
  fail="$({ grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" || true; } | awk '{n += $1} END {print n + 0}')"
  py_pass=$((py_pass + pass)) py_fail=$((py_fail + fail))
  py_summaries+=("python $label (pytest): ${summary:-no summary line}")
  case $rc in
    0) ((pass > 0)) || { echo "pytest passed but reported no passed test" >&2; failed=1; } ;;
    5) echo "pytest collected no tests (exit 5): that is a failure here" >&2; failed=1 ;;
    124) echo "pytest timed out" >&2; failed=1 ;;
    *) echo "pytest failed (exit $rc)" >&2; failed=1 ;;
  esac
}
run_pytest "$("$pyvenv_min/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), lowest dependencies" "$pyvenv_min"
run_pytest "$("$pyvenv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), newest pins" "$pyvenv"

step "node: node --test"
set +e
(cd clients/node && timeout 600 node --test --test-reporter=spec test/*.test.js) 2>&1 | tee "$work/node.out"
rc=${PIPESTATUS[0]}
set -e
node_tests="$(grep -oE '^ℹ tests [0-9]+' "$work/node.out" | grep -oE '[0-9]+' | tail -n 1 || echo 0)"
node_pass="$(grep -oE '^ℹ pass [0-9]+' "$work/node.out" | grep -oE '[0-9]+' | tail -n 1 || echo 0)"
node_fail="$(grep -oE '^ℹ fail [0-9]+' "$work/node.out" | grep -oE '[0-9]+' | tail -n 1 || echo 0)"
case $rc in
  0) ((node_tests > 0 && node_pass > 0)) || { echo "node --test ran no test" >&2; failed=1; } ;;
  124) echo "node --test timed out" >&2; failed=1 ;;
  *) echo "node --test failed (exit $rc)" >&2; failed=1 ;;
esac

echo "== summary"
printf '%s\n' "${py_summaries[@]}"
echo "node (node --test): $node_pass passed, $node_fail failed of $node_tests"
((failed == 0)) || die "FAILED"
echo "polyglot: $((py_pass + node_pass)) passed, $((py_fail + node_fail)) failed"
