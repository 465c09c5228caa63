#!/usr/bin/env bash
# Tests the Helm chart (deploy/helm/confgate):
#
#   scripts/deploy-test.sh
#
#   1. installs a pinned helm from the Go module proxy into .cache/bin
#      (git-ignored), once per version;
#   2. builds confgate, whose `serve --help` is the list of real flags;
#   3. `helm lint --strict` with the chart's defaults plus every value set
#      under deploy/helm/test/testdata/values;
#   4. the Go tests of deploy/helm/test (a module of its own, so the
#      Kubernetes API types never enter the main go.mod): `helm template`
#      for each value set, every document decoded strictly into its
#      Kubernetes (or prometheus-operator) type, and the wiring checked;
#      bad value sets must fail with their message.
#
# Needs Go and the Go module proxy only: no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

# helm, and the Kubernetes minor version its API modules are (helm's own
# Makefile stamps the same in: the default kube version of `helm template`
# and of lint's deprecation checks; without it helm assumes 1.20).
HELM_VERSION=v3.22.0
HELM_KUBE_MINOR=37

bin="$root/.cache/bin"
work="$root/.cache/deploy-test"
mkdir -p "$bin" "$work"

step() { echo "== $*"; }

step "helm $HELM_VERSION"
helm="$bin/helm"
want="$HELM_VERSION kube1.$HELM_KUBE_MINOR"
if [[ "$(cat "$bin/.helm-version" 2>/dev/null)" != "$want" || ! -x "$helm" ]]; then
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in pkg/chartutil pkg/lint/rules; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_KUBE_MINOR"
  done
  GOBIN="$bin" timeout 900 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$want" >"$bin/.helm-version"
fi
"$helm" version --short

step "build confgate (its serve --help lists the flags the chart may use)"
timeout 600 go build -o "$work/confgate" ./cmd/confgate

chart=deploy/helm/confgate
step "helm lint --strict $chart, defaults and every value set"
# lint renders with the chart's `fail` checks turned into INFO lines, so a
# value set that trips one is caught here by its "Fail:" line.
lint() {
  local out
  out="$("$helm" lint --strict "$chart" "$@" 2>&1)" || { echo "$out" >&2; return 1; }
  if grep -q 'Fail:' <<<"$out"; then
    echo "$out" >&2
    echo "deploy-test: helm lint $*: a check of the chart failed" >&2
    return 1
  fi
  echo "ok: helm lint $*"
}
# The defaults need the two required values.
lint --set 'kafka.brokers={kafka:9092}' --set kafka.topic=config
for f in deploy/helm/test/testdata/values/*.yaml; do
  lint -f "$f"
done

step "helm template: strict decoding and wiring (deploy/helm/test)"
(cd deploy/helm/test && CONFGATE_HELM="$helm" CONFGATE_BIN="$work/confgate" \
  timeout 900 go test -count=1 ./...)
