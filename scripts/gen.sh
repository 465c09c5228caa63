#!/usr/bin/env bash
# Regenerates the Go code for proto/ with pinned tools, or with --check fails
# when the committed generated code differs from what the tools produce.
set -euo pipefail
cd "$(dirname "$0")/.."

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
export PATH="$bin:$PATH"

buf lint
if [[ "${1:-}" == "--check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  buf generate -o "$tmp"
  if ! diff -r "$tmp/proto" proto -x '*.proto' >/dev/null; then
    diff -r "$tmp/proto" proto -x '*.proto' || true
    echo "generated code is out of date: run scripts/gen.sh and commit" >&2
    exit 1
  fi
  echo "generated code up to date"
else
  buf generate
fi
