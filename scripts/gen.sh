#!/usr/bin/env bash
# Regenerates the code for proto/ with pinned tools, or with --check fails
# when the committed generated code differs from what the tools produce, or
# when the proto changed incompatibly (buf breaking).
#
# Generated, committed code (buf.gen.yaml says which plugin writes what):
#   proto/confgate/v1/*.pb.go             Go (protoc-gen-go, protoc-gen-go-grpc)
#   clients/python/src/confgate/v1/       Python (grpcio-tools)
#   clients/node/src/gen/                 TypeScript for @grpc/grpc-js (ts-proto)
#
# Tools are installed into a git-ignored cache ($CONFGATE_TOOLBIN, default
# .cache/toolbin) and reinstalled when their pins change:
#   Go:     the versions below (buf itself: tools/go.mod)
#   Python: clients/python/requirements-codegen.txt, in a venv
#   Node:   clients/node/package-lock.json (npm ci into clients/node/node_modules)
#
# --check also runs `buf breaking` against the proto of the main branch
# (and of the newest v* release tag, when there is one); set
# CONFGATE_BREAKING_AGAINST to a buf input to compare with something else,
# or to "none" to skip.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

bin="${CONFGATE_TOOLBIN:-$PWD/.cache/toolbin}"
mkdir -p "$bin"
if [[ ! -x "$bin/buf" ]]; then
  (cd tools && go build -o "$bin/buf" github.com/bufbuild/buf/cmd/buf)
fi
if [[ ! -x "$bin/protoc-gen-go" ]]; then
  GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi
if [[ ! -x "$bin/protoc-gen-go-grpc" ]]; then
  GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
fi

sha() { sha256sum "$@" | sha256sum | cut -c1-16; }

# Python: grpcio-tools in a venv. Its protoc is a Python extension module,
# so buf reaches it through two small executables on PATH:
#   grpc_tools_protoc       `python -m grpc_tools.protoc`, the protoc_path of
#                           the built-in python and pyi generators
#   protoc-gen-grpc_python  a protoc plugin that runs grpcio-tools' gRPC
#                           generator (clients/python/codegen/)
pyreq=clients/python/requirements-codegen.txt
pyvenv="$bin/pyvenv-codegen"
pystamp="$(sha "$pyreq")"
if [[ "$(cat "$pyvenv/.stamp" 2>/dev/null)" != "$pystamp" ]]; then
  rm -rf "$pyvenv"
  python3 -m venv "$pyvenv"
  "$pyvenv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$pyreq"
  echo "$pystamp" >"$pyvenv/.stamp"
fi
cat >"$bin/grpc_tools_protoc" <<EOF
#!/bin/sh
exec "$pyvenv/bin/python" -m grpc_tools.protoc "\$@"
EOF
cat >"$bin/protoc-gen-grpc_python" <<EOF
#!/bin/sh
exec "$pyvenv/bin/python" "$root/clients/python/codegen/protoc_gen_grpc_python.py" "\$@"
EOF
chmod +x "$bin/grpc_tools_protoc" "$bin/protoc-gen-grpc_python"

# Node: ts-proto from the client's lockfile.
nodestamp="$(sha clients/node/package-lock.json)"
if [[ "$(cat clients/node/node_modules/.confgate-stamp 2>/dev/null)" != "$nodestamp" ]]; then
  (cd clients/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$nodestamp" >clients/node/node_modules/.confgate-stamp
fi

export PATH="$bin:$PATH"

# Directories that hold generated code only (besides proto/, where the
# .proto files live next to the Go code).
gen_dirs=(clients/python/src/confgate/v1 clients/node/src/gen)

# breaking_check compares the working tree's proto with the main branch's
# and the newest release tag's, when they exist.
breaking_check() {
  local against=()
  if [[ -n "${CONFGATE_BREAKING_AGAINST:-}" ]]; then
    [[ "$CONFGATE_BREAKING_AGAINST" == none ]] && { echo "buf breaking: skipped (CONFGATE_BREAKING_AGAINST=none)"; return; }
    against+=("$CONFGATE_BREAKING_AGAINST")
  elif ! git rev-parse --git-dir >/dev/null 2>&1; then
    echo "buf breaking: skipped, not a git checkout" >&2
    return
  else
    if git rev-parse --verify --quiet refs/heads/main >/dev/null; then
      against+=(".git#branch=main")
    elif git rev-parse --verify --quiet refs/remotes/origin/main >/dev/null; then
      against+=(".git#ref=refs/remotes/origin/main")
    else
      echo "buf breaking: no main branch here to compare with" >&2
    fi
    local tag
    tag="$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)"
    [[ -n "$tag" ]] && against+=(".git#tag=$tag")
  fi
  local a
  for a in "${against[@]}"; do
    buf breaking --against "$a"
    echo "buf breaking: compatible with $a"
  done
}

buf lint
if [[ "${1:-}" == "--check" ]]; then
  breaking_check
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  buf generate -o "$tmp"
  failed=0
  if ! diff -r "$tmp/proto" proto -x '*.proto' >/dev/null; then
    diff -r "$tmp/proto" proto -x '*.proto' || true
    failed=1
  fi
  for d in "${gen_dirs[@]}"; do
    mkdir -p "$tmp/$d"
    if ! diff -r -x __pycache__ "$tmp/$d" "$d" >/dev/null 2>&1; then
      diff -r -x __pycache__ "$tmp/$d" "$d" || true
      failed=1
    fi
  done
  if ((failed)); then
    echo "generated code is out of date: run scripts/gen.sh and commit" >&2
    exit 1
  fi
  echo "generated code up to date (Go, Python, Node)"
else
  # Remove what an earlier proto generated, so no stale module survives.
  for d in "${gen_dirs[@]}"; do
    rm -rf "$d"
  done
  buf generate
fi
