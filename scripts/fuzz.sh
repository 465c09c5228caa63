#!/usr/bin/env bash
# Runs every Go fuzz target of the module, each for SECONDS (default 10).
#
#   scripts/fuzz.sh [SECONDS]
#
# Targets are discovered, not listed: every package's `go test -list
# '^Fuzz'`, so a new FuzzXxx anywhere is picked up. Each runs alone with
# `go test -run '^$' -fuzz '^Name$' -fuzztime Ns PKG` (go test fuzzes one
# target at a time). A failure leaves the failing input under the package's
# testdata/fuzz/Name/ (commit it with the fix: it becomes a regression test)
# and makes the script exit non-zero after running the other targets.
# Exits non-zero as well when no target is found.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
[[ "$secs" =~ ^[0-9]+$ && "$secs" -gt 0 ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }

mapfile -t pkgs < <(go list ./...)
targets=() failed=()
for pkg in "${pkgs[@]}"; do
  dir="$(go list -f '{{.Dir}}' "$pkg")"
  compgen -G "$dir/*_test.go" >/dev/null || continue
  # -list prints matching names, then "ok <pkg> <time>"; a build failure
  # is a failure, not "no targets".
  if ! out="$(go test -list '^Fuzz' "$pkg" 2>&1)"; then
    echo "fuzz: listing $pkg failed:" >&2
    echo "$out" >&2
    failed+=("$pkg (list)")
    continue
  fi
  while read -r name; do
    [[ "$name" =~ ^Fuzz[A-Za-z0-9_]*$ ]] && targets+=("$pkg $name")
  done <<<"$out"
done

((${#targets[@]} > 0)) || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
echo "fuzz: ${#targets[@]} targets, ${secs}s each"

for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "== $name ($pkg)"
  # The time limit covers building and the seed corpus too; fuzzing itself
  # stops after -fuzztime.
  if ! timeout $((secs + 300)) go test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" "$pkg"; then
    failed+=("$name ($pkg)")
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
