#!/usr/bin/env bash
# Tests the monitoring that confgate ships (docs/alerts.md):
#
#   scripts/alerts-test.sh
#
#   1. installs Debian's prometheus package when promtool is missing (as
#      root; otherwise it stops and says what to install), without starting
#      the Prometheus service the package brings, and prints promtool's
#      version: the tests were written for Debian 12's 2.42.0 and keep
#      clear of what Prometheus 3 changed (docs/alerts.md, promtool
#      versions);
#   2. `promtool check rules` on deploy/prometheus/confgate-alerts.yaml;
#   3. `promtool test rules` on its unit tests,
#      deploy/prometheus/confgate-alerts_test.yaml;
#   4. vet and the Go tests of deploy/monitoringcheck (a module of its own,
#      so Prometheus's and Grafana's modules stay out of confgate's go.mod):
#      the dashboard JSON (deploy/grafana/confgate.json) decoded strictly
#      against Grafana's dashboard schema, with unique panel IDs, a
#      datasource and queries on every panel; every metric, label and
#      label value that the dashboard, the rules and the rules' tests use
#      checked against what an exercised gateway really exports; every
#      alert with a runbook section and a firing and a quiet unit test.
#
# Needs Go and Debian's package archive only: no Prometheus or Grafana
# server runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "== $*" >&2; }

if ! command -v promtool >/dev/null; then
  step "installing promtool (Debian's prometheus package)"
  if [[ $(id -u) -ne 0 ]]; then
    echo "promtool missing and this is not root: apt-get install prometheus" >&2
    exit 1
  fi
  # The package installs and would start a Prometheus service; a
  # policy-rc.d that refuses every start keeps it stopped (many container
  # images have one already: it is left as it is).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1 >&2

rules=deploy/prometheus/confgate-alerts.yaml
step "promtool check rules $rules"
promtool check rules "$rules"

step "promtool test rules ${rules%.yaml}_test.yaml"
promtool test rules "${rules%.yaml}_test.yaml"

step "deploy/monitoringcheck: the dashboard, and every metric, label and label value the dashboard and the alerts use"
(cd deploy/monitoringcheck && go vet ./... && go test -race -count=1 -timeout 10m ./...)
